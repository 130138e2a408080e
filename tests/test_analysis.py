"""The analysis facade on the real layers: scoring of the default candidates and the fund."""

from __future__ import annotations

import numpy as np
import pytest

from pattogis import analysis, layers


@pytest.fixture(scope="module")
def scored(built_layers):
    return analysis.score_sites(profile="unione", draws=100, seed=1)


@pytest.mark.realdata
def test_default_candidates_scored_with_all_parts(scored):
    assert len(scored) == len(layers.open_layer("candidates"))
    ok = scored[~scored["excluded"]]
    contrib = ok[[c for c in ok.columns if c.startswith("contrib_")]].sum(axis=1, min_count=1)
    np.testing.assert_allclose(contrib.to_numpy(), ok["score"].to_numpy(), atol=1e-12)
    assert {"rank_p5", "rank_p95", "p_top_k", "rail_distance_m", "land_take_ha"} <= set(scored.columns)
    assert (ok["rank_p5"] <= ok["rank"]).all() and (ok["rank"] <= ok["rank_p95"]).all()
    # The road graph covers the Comune di Bologna only: most Bologna sites are measured along it,
    # sites far from it are straight-line estimates and marked so.
    bo = scored["comune_istat"] == "037006"
    assert (scored.loc[bo, "rail_distance_method"] == "network").mean() > 0.5
    assert (scored.loc[~bo, "rail_distance_method"] == "euclidean_detour").mean() > 0.95
    assert set(scored["rail_distance_method"]) == {"network", "euclidean_detour"}


@pytest.mark.realdata
def test_unione_sites_only_members(built_layers):
    s = analysis.unione_sites("Unione Terre d'Acqua", draws=50)
    comuni = layers.open_layer("comuni")
    members = set(comuni.loc[comuni["unione"] == "Unione Terre d'Acqua", "istat"])
    assert len(s) > 0 and set(s["comune_istat"]) <= members


@pytest.mark.realdata
def test_demo_projects_tu_share_from_the_territory_pieces(built_layers):
    """The demonstration set takes its TU shares from the fund territory's cached TU pieces:
    the same shares as merging the TU layer afresh (fund.tu_share), site by site."""
    from pattogis.fund import tu_share

    proj = analysis.projects_from_sites(analysis.score_sites(profile="fondo", draws=0))
    _, tu = analysis.base_layers()
    np.testing.assert_allclose(proj["inside_tu_share"].to_numpy(float),
                               tu_share(proj.geometry, tu), atol=1e-9)
    assert (proj["inside_tu_share"] < 1).any() and (proj["inside_tu_share"] > 0.9).all()


@pytest.mark.realdata
def test_fund_on_demo_projects_follows_the_call(built_layers):
    f = analysis.fund_geo(demo=True)
    assert f.attrs["dimostrativo"] is True
    assert f.crs.to_epsg() == 25832 and f.geometry.notna().all()
    funded = f[f["granted_eur"] > 0]
    assert funded["granted_eur"].sum() <= 2_298_144.71 + 1e-6
    assert funded["granted_eur"].max() <= 229_814.47 + 1e-6
    # only sites entirely inside the TU are eligible
    # the demonstration applicants are real Unioni / comuni in none, in their own territory:
    # an exclusion can only come from the TU rule
    excl = f[f["status"] == "escluso"]
    assert (excl["reason"].str.contains("territorio urbanizzato")).all()
    assert f["applicant_known"].all()


@pytest.mark.realdata
def test_a_site_scores_the_same_on_the_unione_map_and_in_the_whole_set(scored):
    """Issue 12: DER-... read 0.771 on the Unione map and 0.630 in the CLI; now the score is
    normalised against the metropolitan reference, and only the rank is within the set."""
    u = analysis.unione_sites("Unione Terre d'Acqua", draws=0).set_index("site_id")
    full = scored.set_index("site_id")
    cols = ["score"] + [c for c in u.columns if c.startswith(("norm_", "contrib_"))]
    np.testing.assert_allclose(u[cols].to_numpy(float), full.loc[u.index, cols].to_numpy(float),
                               atol=1e-12)
    assert u["rank"].min() == 1 and u["rank"].max() <= len(u)  # rank within the Unione's sites
    assert (full.loc[u.index, "rank"] >= u["rank"]).all()
    assert "metropolitan candidate set" in scored.attrs["reference"]
