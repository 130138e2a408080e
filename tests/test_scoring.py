"""Tests of pattogis.scoring: hand-computed normalisations and scores, pymcdm TOPSIS parity,
contributions, exclusions, missing data, Monte Carlo limits and reproducibility."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point

from pattogis import scoring
from pattogis.errors import ConfigError, InputError, NotFound


def prof(criteria: dict, **kw) -> dict:
    """A posted-profile dict; ``criteria`` maps name -> (weight, direction[, normalise])."""
    crit = {}
    for name, spec in criteria.items():
        if isinstance(spec, dict):
            crit[name] = spec
        else:
            w, d, *rest = spec
            crit[name] = {"weight": w, "direction": d, "normalise": rest[0] if rest else "minmax"}
    return {"name": "t", "label_it": "Prova", "criteria": crit, **kw}


# --------------------------------------------------------------------------- normalisation


def test_minmax_hand_values_and_nan_kept():
    x = [2.0, 4.0, 6.0, np.nan, 10.0]
    np.testing.assert_allclose(scoring.minmax(x, "max"), [0, 0.25, 0.5, np.nan, 1])
    np.testing.assert_allclose(scoring.minmax(x, "min"), [1, 0.75, 0.5, np.nan, 0])
    # bounds from the reference subset only; outside it -> NaN
    among = [True, True, True, True, False]
    np.testing.assert_allclose(scoring.minmax(x, "max", among=among), [0, 0.5, 1, np.nan, np.nan])
    # constant column: pymcdm convention, every site equals the best
    np.testing.assert_allclose(scoring.minmax([3.0, 3.0, np.nan], "min"), [1, 1, np.nan])


def test_rank_hand_values_with_ties():
    x = [10.0, 30.0, 20.0, 20.0, np.nan]
    # mid-ranks ascending 1, 4, 2.5, 2.5 over n = 4 -> (r - 1) / 3
    np.testing.assert_allclose(scoring.rank_normalise(x, "max"), [0, 1, 0.5, 0.5, np.nan])
    np.testing.assert_allclose(scoring.rank_normalise(x, "min"), [1, 0, 0.5, 0.5, np.nan])
    np.testing.assert_allclose(scoring.rank_normalise([5.0, 5.0]), [0.5, 0.5])
    # only order matters: an outlier does not squash the others
    np.testing.assert_allclose(scoring.rank_normalise([1.0, 2.0, 1e9]), [0, 0.5, 1])


def test_target_hand_values():
    x = [0.0, 1.0, 3.0, 6.0, 9.0, np.nan]
    # range [2, 5]: distances 2, 1, 0, 1, 4; scaled by the farthest (4)
    np.testing.assert_allclose(scoring.target_normalise(x, [2, 5]), [0.5, 0.75, 1, 0.75, 0, np.nan])
    np.testing.assert_allclose(
        scoring.target_normalise(x, [2, 5], tolerance=2.0), [0, 0.5, 1, 0.5, 0, np.nan]
    )
    # point target 3, tolerance 4: distances 3, 2, 0, 3, 6
    np.testing.assert_allclose(
        scoring.target_normalise(x, 3.0, 4.0), [0.25, 0.5, 1, 0.25, 0, np.nan]
    )
    np.testing.assert_allclose(scoring.normalise(x[:3], "target", target=[0, 10]), [1, 1, 1])


# --------------------------------------------------------------------------- profiles


def test_shipped_profiles_load_and_weights_sum_to_one():
    names = scoring.list_profiles()
    assert {"pug_planner", "unione", "fondo"} <= set(names)
    for n in ("pug_planner", "unione", "fondo"):
        p = scoring.load_profile(n)
        assert math.isclose(p.weights.sum(), 1.0, abs_tol=1e-12)
        assert set(p.names) <= set(scoring.known_criteria())
        assert all(c.label_it for c in p.criteria)
        assert p.method in scoring.METHODS
        # to_dict round-trips through validation (weights up to float re-normalisation)
        back = scoring.load_profile(p.to_dict())
        np.testing.assert_allclose(back.weights, p.weights, rtol=1e-14)
        assert back.to_dict().keys() == p.to_dict().keys()
        assert [replace(c, weight=0) for c in back.criteria] == [
            replace(c, weight=0) for c in p.criteria
        ]
        assert back.exclusions == p.exclusions


def test_weights_are_normalised():
    p = scoring.load_profile(prof({"fragility": (3, "max"), "area_ha": (1, "min")}))
    np.testing.assert_allclose(p.weights, [0.75, 0.25])


def test_unknown_criterion_names_file_and_key(tmp_path: Path):
    f = tmp_path / "mio.yaml"
    f.write_text(
        "name: mio\ncriteria:\n  fragility: {weight: 1, direction: max}\n"
        "  pendenza: {weight: 1, direction: min}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as e:
        scoring.load_profile(str(f))
    assert str(f) in str(e.value) and "criteria.pendenza" in str(e.value)


@pytest.mark.parametrize(
    ("criteria", "extra", "needle"),
    [
        ({"fragility": (-1, "max")}, {}, "criteria.fragility.weight"),
        ({"fragility": (0, "max"), "area_ha": (0, "min")}, {}, "add up to 0"),
        ({"fragility": (1, "up")}, {}, "criteria.fragility.direction"),
        (
            {"fragility": {"weight": 1, "direction": "max", "unit": "%"}},
            {},
            "criteria.fragility.unit",
        ),
        ({"area_ha": {"weight": 1, "normalise": "target"}}, {}, "criteria.area_ha.target"),
        (
            {"fragility": (1, "max")},
            {"exclusions": [{"rule": "slope > 20", "reason_it": "x"}]},
            "exclusions[0].rule",
        ),
        (
            {"fragility": (1, "max")},
            {"exclusions": [{"rule": "slope_mean_deg >> 2", "reason_it": "x"}]},
            "exclusions[0].rule",
        ),
        ({"fragility": (1, "max")}, {"missing": {"policy": "zero"}}, "missing.policy"),
        ({"fragility": (1, "max")}, {"metodo": "wsum"}, "'metodo'"),
        ({"fragility": (1, "max")}, {"method": "ahp"}, "method"),
    ],
)
def test_posted_profile_validation(criteria, extra, needle):
    with pytest.raises(ConfigError) as e:
        scoring.load_profile(prof(criteria, **extra))
    assert needle in str(e.value)
    assert "<posted profile>" in str(e.value)


def test_with_weights():
    p = scoring.with_weights("unione", {"fragility": 2, "land_take_ha": 2})
    d = dict(zip(p.names, p.weights, strict=True))
    assert d["fragility"] == 0.5 and d["land_take_ha"] == 0.5 and d["rail_distance_m"] == 0.0
    with pytest.raises(ConfigError, match="heat_mean_c"):
        scoring.with_weights("unione", {"heat_mean_c": 1})
    with pytest.raises(ConfigError, match="weight"):
        scoring.with_weights("unione", {"fragility": -1})


# --------------------------------------------------------------------------- weighted sum


def small_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"fragility": [0.0, 5.0, 10.0], "rail_distance_m": [100.0, 300.0, 200.0]},
        index=pd.Index(["A", "B", "C"], name="site_id"),
    )


def test_wsum_hand_computed():
    p = prof({"fragility": (3, "max"), "rail_distance_m": (1, "min")})
    out = scoring.score(small_frame(), p)
    # norm fragility 0, .5, 1; norm rail 1, 0, .5; weights .75/.25
    np.testing.assert_allclose(out["norm_fragility"], [0, 0.5, 1])
    np.testing.assert_allclose(out["norm_rail_distance_m"], [1, 0, 0.5])
    np.testing.assert_allclose(out["contrib_fragility"], [0, 0.375, 0.75])
    np.testing.assert_allclose(out["contrib_rail_distance_m"], [0.25, 0, 0.125])
    np.testing.assert_allclose(out["score"], [0.25, 0.375, 0.875])
    assert out["rank"].tolist() == [3, 2, 1]
    assert not out["excluded"].any() and (out["missing"] == "").all()


def test_ties_share_the_lowest_rank():
    df = pd.DataFrame({"fragility": [1.0, 3.0, 3.0, 2.0, 0.1 + 0.2]})
    # competition ranking: 3, 3 share rank 1, then 3, 4, 5
    out = scoring.score(df, prof({"fragility": (1, "max")}))
    assert out["rank"].tolist() == [4, 1, 1, 3, 5]
    # 0.1 + 0.2 != 0.3 in floats: equal to 12 decimals, so a tie, not two ranks
    df2 = pd.DataFrame({"fragility": [0.3, 0.1 + 0.2, 0.0]})
    assert scoring.score(df2, prof({"fragility": (1, "max")}))["rank"].tolist() == [1, 1, 3]


def test_contributions_sum_to_score_both_methods():
    rng = np.random.default_rng(7)
    n = 300
    df = pd.DataFrame({c: rng.random(n) * 100 for c in scoring.known_criteria()})
    df.loc[rng.random(n) < 0.2, "heat_mean_c"] = np.nan
    df.loc[rng.random(n) < 0.1, "cycle_distance_m"] = np.nan
    for name in ("pug_planner", "unione", "fondo"):
        for method in ("wsum", "topsis"):
            out = scoring.score(df, name, method=method)
            ok = ~out["excluded"]
            contrib = out.filter(like="contrib_").to_numpy()[ok.to_numpy()]
            np.testing.assert_allclose(np.nansum(contrib, axis=1), out.loc[ok, "score"], atol=1e-12)
            assert (contrib[~np.isnan(contrib)] >= 0).all()


# --------------------------------------------------------------------------- TOPSIS


def test_topsis_equals_pymcdm():
    from pymcdm.methods import TOPSIS
    from pymcdm.normalizations import minmax_normalization

    rng = np.random.default_rng(42)
    names = ["land_take_ha", "rail_distance_m", "bus_access", "fragility", "compactness", "area_ha"]
    dirs = ["min", "min", "max", "max", "max", "min"]
    w = np.array([0.3, 0.2, 0.1, 0.2, 0.15, 0.05])
    X = rng.random((80, len(names))) * [10, 5000, 30, 1, 1, 50]
    X[:, 5] = 7.0  # a constant column: both sides must use pymcdm's "all ones" convention
    p = prof({n: (float(wi), d) for n, wi, d in zip(names, w, dirs, strict=True)}, method="topsis")
    ours = scoring.score(pd.DataFrame(X, columns=names), p)["score"].to_numpy()
    types = np.array([1 if d == "max" else -1 for d in dirs])
    ref = TOPSIS(minmax_normalization)(X, w, types, validation=False)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)
    # and a method override on a wsum profile gives the same
    p2 = {**p, "method": "wsum"}
    np.testing.assert_allclose(
        scoring.score(pd.DataFrame(X, columns=names), p2, method="topsis")["score"], ref, atol=1e-9
    )


def test_topsis_hand_computed_and_decomposition():
    # pymcdm's documented example: cost column [1, 2, 5], profit column [3000, 3750, 4500]
    df = pd.DataFrame({"land_take_ha": [1.0, 2.0, 5.0], "bus_access": [3000.0, 3750.0, 4500.0]})
    p = prof({"land_take_ha": (1, "min"), "bus_access": (1, "max")}, method="topsis")
    out = scoring.score(df, p)
    s2 = math.sqrt(0.203125) / (math.sqrt(0.203125) + math.sqrt(0.078125))
    np.testing.assert_allclose(out["score"], [0.5, s2, 0.5], atol=1e-15)
    np.testing.assert_allclose(out["d_neg"][1], math.sqrt(0.203125))
    np.testing.assert_allclose(out["d_pos"][1], math.sqrt(0.078125))
    np.testing.assert_allclose(
        out.loc[1, ["dneg_land_take_ha", "dneg_bus_access"]].to_numpy(float), [0.140625, 0.0625]
    )
    # decomposition: score shared by each criterion's part of the squared distance from the anti-ideal
    np.testing.assert_allclose(
        out.loc[1, ["contrib_land_take_ha", "contrib_bus_access"]].to_numpy(float),
        [s2 * 0.140625 / 0.203125, s2 * 0.0625 / 0.203125],
    )
    assert out["rank"].tolist() == [2, 1, 2]


def test_topsis_missing_uses_present_criteria_only():
    df = pd.DataFrame(
        {"fragility": [0.0, 5.0, 10.0, 5.0], "rail_distance_m": [100.0, 300.0, 200.0, np.nan]}
    )
    p = prof({"fragility": (3, "max"), "rail_distance_m": (1, "min")}, method="topsis")
    out = scoring.score(df, p)
    # site 3: only fragility (norm .5) between anti-ideal 0 and ideal 1 -> closeness .5
    assert out["score"][3] == pytest.approx(0.5, abs=1e-15)
    assert out["missing"][3] == "rail_distance_m"
    assert np.isnan(out["contrib_rail_distance_m"][3]) and np.isnan(out["dpos_rail_distance_m"][3])


# --------------------------------------------------------------------------- exclusions, missing


def test_exclusions_with_italian_reason_and_no_effect_on_bounds():
    df = pd.DataFrame(
        {
            "fragility": [0.0, 5.0, 10.0, 100.0, 2.0],
            "slope_mean_deg": [1.0, 2.0, 3.0, 25.0, np.nan],
        }
    )
    p = prof(
        {"fragility": (1, "max")},
        exclusions=[
            {"rule": "slope_mean_deg > 20", "reason_it": "Pendenza media superiore a 20°"},
        ],
    )
    out = scoring.score(df, p)
    assert out["excluded"].tolist() == [False, False, False, True, False]
    assert out["exclusion_reason"][3] == "Pendenza media superiore a 20°"
    assert np.isnan(out["score"][3]) and pd.isna(out["rank"][3])
    # the excluded outlier (100) does not stretch the min-max of the others
    np.testing.assert_allclose(out["norm_fragility"][[0, 1, 2, 4]], [0, 0.5, 1, 0.2])
    assert out["rank"].tolist()[:3] == [4, 2, 1]
    # if_missing: exclude -> the NaN slope cannot be checked, the site is excluded too
    p["exclusions"][0]["if_missing"] = "exclude"
    out2 = scoring.score(df, p)
    assert out2["excluded"][4]
    assert out2["exclusion_reason"][4].startswith("Dato mancante, non verificabile: Pendenza")


def test_missing_renormalised_and_reported_not_zeroed():
    df = pd.concat(
        [
            small_frame(),
            pd.DataFrame({"fragility": [np.nan], "rail_distance_m": [100.0]}, index=["D"]),
        ]
    )
    p = prof({"fragility": (3, "max"), "rail_distance_m": (1, "min")})
    out = scoring.score(df, p)
    # D has only rail (norm 1): renormalised score 1.0; zero-filling would have given 0.25
    assert out.loc["D", "score"] == pytest.approx(1.0)
    assert out.loc["D", "missing"] == "fragility"
    assert out.loc["D", "missing_weight"] == pytest.approx(0.75)
    assert np.isnan(out.loc["D", "norm_fragility"]) and np.isnan(out.loc["D", "contrib_fragility"])
    assert out.loc["D", "contrib_rail_distance_m"] == pytest.approx(1.0)
    # others unchanged by D
    np.testing.assert_allclose(out.loc[["A", "B", "C"], "score"], [0.25, 0.375, 0.875])

    # cap on the missing weight: 75% > 50% -> excluded with the labels in Italian
    out = scoring.score(df, {**p, "missing": {"policy": "renormalise", "max_missing_weight": 0.5}})
    assert out.loc["D", "excluded"]
    assert "75%" in out.loc["D", "exclusion_reason"]
    assert "Indice di fragilità del comune" in out.loc["D", "exclusion_reason"]

    out = scoring.score(df, {**p, "missing": {"policy": "exclude"}})
    assert out.loc["D", "exclusion_reason"] == "Dati mancanti: Indice di fragilità del comune"

    # "worst": explicit pessimistic value 0, still listed as missing
    out = scoring.score(df, {**p, "missing": {"policy": "worst"}})
    assert out.loc["D", "score"] == pytest.approx(0.25) and out.loc["D", "norm_fragility"] == 0
    assert out.loc["D", "missing"] == "fragility"


def test_site_with_no_criteria_is_excluded():
    df = pd.DataFrame({"fragility": [1.0, np.nan, 3.0]})
    out = scoring.score(df, prof({"fragility": (1, "max")}))
    assert out["excluded"].tolist() == [False, True, False]
    assert out["exclusion_reason"][1].startswith("Nessun criterio disponibile")


def test_bad_input_names_field_and_rows():
    df = small_frame().astype(object)
    df.loc["B", "fragility"] = "molto"
    p = prof({"fragility": (1, "max"), "rail_distance_m": (1, "min")})
    with pytest.raises(InputError) as e:
        scoring.score(df, p)
    assert e.value.field == "fragility" and e.value.rows == [1]
    with pytest.raises(InputError) as e:
        scoring.score(small_frame().drop(columns="fragility"), p)
    assert e.value.field == "fragility"
    df = small_frame()
    df.loc["A", "rail_distance_m"] = np.inf
    with pytest.raises(InputError, match="finite"):
        scoring.score(df, p)


def test_geodataframe_keeps_geometry_and_crs(tmp_path: Path):
    g = gpd.GeoDataFrame(small_frame(), geometry=[Point(0, 0), Point(1, 1), Point(2, 2)], crs=25832)
    out = scoring.score(g, prof({"fragility": (1, "max")}))
    assert isinstance(out, gpd.GeoDataFrame) and out.crs.to_epsg() == 25832
    assert out.geometry.iloc[2].equals(Point(2, 2))
    f = scoring.write_scores(out, tmp_path / "s.csv")
    back = pd.read_csv(f, index_col="site_id", keep_default_na=False)
    np.testing.assert_allclose(back["score"], out["score"])
    assert "geometry" not in back.columns
    scoring.write_scores(out, tmp_path / "s.gpkg")
    assert len(gpd.read_file(tmp_path / "s.gpkg")) == 3


# --------------------------------------------------------------------------- comparison


def test_compare_tidy_and_wide():
    df = small_frame()
    p = prof({"fragility": (3, "max"), "rail_distance_m": (1, "min")})
    out = scoring.score(df, p)
    t = scoring.compare(df, out, ["C", "A"])
    assert len(t) == 4 and t["site"].tolist() == ["C", "C", "A", "A"]
    row = t[(t.site == "C") & (t.criterion == "rail_distance_m")].iloc[0]
    assert row["raw"] == 200 and row["norm"] == 0.5 and row["contrib"] == 0.125
    assert (
        row["label_it"] == "Distanza dalla stazione ferroviaria (SFM) più vicina"
        and row["unit"] == "m"
    )
    assert row["rank"] == 1
    w = scoring.compare(df, out, ["C", "A"], wide=True)
    assert w.loc["Punteggio", ("C", "contrib")] == pytest.approx(0.875)
    assert w.loc["Posizione in graduatoria", ("A", "contrib")] == 3
    assert w.loc["Indice di fragilità del comune (0-1)", ("A", "raw")] == 0
    with pytest.raises(NotFound, match="Z"):
        scoring.compare(df, out, ["A", "Z"])


# --------------------------------------------------------------------------- Monte Carlo


def random_sites(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.random(n) * 10 for c in scoring.known_criteria()})
    df.loc[rng.random(n) < 0.15, "bus_access"] = np.nan
    df.loc[rng.random(n) < 0.1, "slope_mean_deg"] = 25.0  # some excluded
    return df


@pytest.mark.parametrize("method", ["wsum", "topsis"])
def test_mc_infinite_concentration_is_degenerate(method):
    df = random_sites(60)
    det = scoring.score(df, "unione", method=method)
    for conc in (1e14, math.inf):
        mc = scoring.monte_carlo(df, "unione", method=method, draws=50, concentration=conc, seed=1)
        ok = ~det["excluded"]
        r = det.loc[ok, "rank"].astype(float)
        for col in ("rank_p5", "rank_p95", "rank_min", "rank_max", "rank_mean"):
            np.testing.assert_array_equal(mc.loc[ok, col], r, err_msg=col)
        assert mc.loc[~ok, "rank_p5"].isna().all()
        np.testing.assert_array_equal(mc.loc[ok, "p_top_k"], (r <= 10).astype(float))


@pytest.mark.parametrize("method", ["wsum", "topsis"])
def test_mc_matches_brute_force_over_draws(method):
    """Chunked MC equals scoring each weight draw with score() and taking numpy percentiles."""
    df = random_sites(40, seed=11)
    p = scoring.load_profile("pug_planner")
    draws, conc, seed = 60, 20.0, 5
    mc = scoring.monte_carlo(
        df, p, method=method, draws=draws, concentration=conc, seed=seed, top_k=5, memory_mb=1e-6
    )  # forces one draw per chunk
    W = scoring.draw_weights(p.weights, conc, draws, seed)
    ranks = np.column_stack(
        [
            scoring.score(
                df, scoring.with_weights(p, dict(zip(p.names, w, strict=True))), method=method
            )["rank"].to_numpy(dtype=float, na_value=np.nan)
            for w in W
        ]
    )
    ok = ~np.isnan(ranks[:, 0])
    np.testing.assert_allclose(mc["rank_p5"][ok], np.percentile(ranks[ok], 5, axis=1))
    np.testing.assert_allclose(mc["rank_p95"][ok], np.percentile(ranks[ok], 95, axis=1))
    np.testing.assert_allclose(mc["rank_min"][ok], ranks[ok].min(axis=1))
    np.testing.assert_allclose(mc["rank_max"][ok], ranks[ok].max(axis=1))
    np.testing.assert_allclose(mc["rank_mean"][ok], ranks[ok].mean(axis=1))
    np.testing.assert_allclose(mc["p_top_k"][ok], (ranks[ok] <= 5).mean(axis=1))
    assert (mc["rank_min"][ok] < mc["rank_max"][ok]).any()  # the weights did move ranks


def test_mc_seed_reproducible_and_chunking_independent():
    df = random_sites(200)
    a = scoring.monte_carlo(df, "fondo", draws=120, seed=9)
    b = scoring.monte_carlo(df, "fondo", draws=120, seed=9, memory_mb=0.05)
    assert b.attrs["chunk_draws"] < a.attrs["chunk_draws"]
    pd.testing.assert_frame_equal(a, b)
    c = scoring.monte_carlo(df, "fondo", draws=120, seed=10)
    assert not a["rank_mean"].equals(c["rank_mean"])
    # profile seed used when none given
    d1 = scoring.monte_carlo(df, "fondo", draws=30)
    d2 = scoring.monte_carlo(df, "fondo", draws=30)
    pd.testing.assert_frame_equal(d1, d2)


def test_mc_concentration_controls_spread():
    df = random_sites(150)
    wide = scoring.monte_carlo(df, "pug_planner", draws=300, concentration=5, seed=2)
    tight = scoring.monte_carlo(df, "pug_planner", draws=300, concentration=5000, seed=2)
    w_span = (wide["rank_p95"] - wide["rank_p5"]).mean()
    t_span = (tight["rank_p95"] - tight["rank_p5"]).mean()
    assert t_span < w_span / 3


def test_draw_weights_moments():
    w = np.array([0.5, 0.3, 0.2, 0.0])
    W = scoring.draw_weights(w, 50.0, 20000, 0)
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    assert (W[:, 3] == 0).all()
    np.testing.assert_allclose(W.mean(axis=0), w, atol=3e-3)
    np.testing.assert_allclose(W[:, 0].var(), 0.5 * 0.5 / 51, rtol=0.05)


def test_topsis_degenerate_distances():
    # site 0 is worst on both criteria: d_neg = 0 -> score 0 and zero contributions
    df = pd.DataFrame({"fragility": [0.0, 1.0, 0.5], "bus_access": [0.0, 0.5, 1.0]})
    p = prof({"fragility": (1, "max"), "bus_access": (3, "max")}, method="topsis")
    out = scoring.score(df, p)
    assert out["score"][0] == 0 and out.loc[0, ["contrib_fragility", "contrib_bus_access"]].eq(0).all()
    # every criterion constant: each site is both ideal and anti-ideal -> score 1, shared by weight
    const = pd.DataFrame({"fragility": [0.3, 0.3], "bus_access": [2.0, 2.0]})
    out = scoring.score(const, p)
    np.testing.assert_allclose(out["score"], [1, 1])
    np.testing.assert_allclose(out["contrib_bus_access"], [0.75, 0.75])
    assert out["rank"].tolist() == [1, 1]


def test_direction_defaults_to_the_criteria_registry():
    p = scoring.load_profile(prof({"rail_distance_m": {"weight": 1}, "fragility": {"weight": 1}}))
    assert [c.direction for c in p.criteria] == ["min", "max"]
    # area_ha is a target criterion in the registry: no silent max/min for it
    with pytest.raises(ConfigError, match="normalise: target"):
        scoring.load_profile(prof({"area_ha": {"weight": 1}}))


def test_records_and_files_with_site_id_column(tmp_path: Path):
    df = small_frame()
    df.loc["B", "fragility"] = np.nan
    out = scoring.score(df, prof({"fragility": (3, "max"), "rail_distance_m": (1, "min")}))
    # the shape analysis.score_sites hands over: site_id as a column, nested reasons from criteria
    flat = out.reset_index()
    flat["reasons"] = [{}, {"fragility": "comune non trovato"}, {}]
    rec = scoring.to_records(flat)
    assert [r["site_id"] for r in rec] == ["A", "B", "C"]
    assert rec[1]["norm_fragility"] is None and rec[1]["missing"] == "fragility"
    assert rec[1]["reasons"] == '{"fragility": "comune non trovato"}'
    assert rec[2]["rank"] == 1
    for suffix in ("csv", "json", "parquet"):
        f = scoring.write_scores(flat, tmp_path / f"s.{suffix}")
        back = (
            pd.read_csv(f, keep_default_na=False, na_values=[""])
            if suffix == "csv"
            else pd.read_json(f)
            if suffix == "json"
            else pd.read_parquet(f)
        )
        assert back.columns.tolist().count("site_id") == 1
        np.testing.assert_allclose(back["score"].astype(float), out["score"].to_numpy())
    with pytest.raises(InputError, match="geometry"):
        scoring.write_scores(flat, tmp_path / "s.gpkg")
    with pytest.raises(InputError, match="format"):
        scoring.write_scores(flat, tmp_path / "s.xlsx")


# --------------------------------------------------------------------------- a score means the same


def reference_frame(n: int = 40, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "share_inside_tu": rng.uniform(0, 1, n),
            "land_take_ha": rng.uniform(0, 5, n),
            "rail_distance_m": rng.uniform(100, 8000, n),
            "fragility": rng.uniform(0, 1, n),
            "area_ha": rng.uniform(0.1, 30, n),
        },
        index=pd.Index([f"R{i}" for i in range(n)], name="site_id"),
    )


MIXED = prof(
    {
        "share_inside_tu": (3, "max"),
        "land_take_ha": (3, "min"),
        "rail_distance_m": (2, "min", "rank"),
        "fragility": (1, "max"),
        "area_ha": {"weight": 1, "normalise": "target", "target": [0.5, 10]},
    }
)


def test_reference_normalisation_hand_values():
    ref = [0.0, 10.0, 20.0, 20.0, 40.0]
    # min-max against [0, 40], clipped outside it
    np.testing.assert_allclose(scoring.minmax([10.0, 50.0, -5.0], "max", reference=ref), [0.25, 1, 0])
    # mid-rank among the reference: 20 is 3.5th of 5 -> 2.5 / 4; 15 sits between 10 and 20 -> 1.5/4
    np.testing.assert_allclose(
        scoring.rank_normalise([20.0, 15.0, 99.0, -1.0], "max", reference=ref),
        [0.625, 0.375, 1.0, 0.0],
    )
    np.testing.assert_allclose(
        scoring.rank_normalise([20.0, 15.0], "min", reference=ref), [0.375, 0.625]
    )
    # target [5, 10] without tolerance: the reference's farthest distance is 30 (at 40)
    np.testing.assert_allclose(
        scoring.target_normalise([7.0, 25.0, 70.0], [5, 10], reference=ref), [1, 0.5, 0]
    )


@pytest.mark.parametrize("method", ["wsum", "topsis"])
def test_reference_set_scored_against_itself_equals_within_set(method):
    """Rank and min-max normalisation against the reference set, applied to that very set, give
    the within-set values: the reference only changes what happens to the other sites."""
    df = reference_frame()
    p = prof({"land_take_ha": (1, "min"), "rail_distance_m": (2, "min", "rank")})
    ref = scoring.Reference.from_frame(df, source="test")
    a = scoring.score(df, p, method=method, reference=ref)
    b = scoring.score(df, p, method=method)
    for c in ("norm_land_take_ha", "norm_rail_distance_m"):
        np.testing.assert_allclose(a[c], b[c], atol=1e-12)
    assert a["rank"].tolist() == b["rank"].tolist()
    assert a.attrs["reference"] == "test" and b.attrs["reference"] == "within the set scored"


@settings(max_examples=60, deadline=None)
@given(
    keep=st.lists(st.booleans(), min_size=12, max_size=12),
    method=st.sampled_from(["wsum", "topsis"]),
    extra=st.lists(
        st.tuples(st.floats(0, 1), st.floats(0, 50), st.floats(1, 20_000), st.floats(0, 1),
                  st.floats(0.01, 200)),
        max_size=5,
    ),
)
def test_a_sites_score_does_not_depend_on_the_others(keep, method, extra):
    """Property: against a reference, a site's score and explanation are the same whatever other
    sites are added to or removed from the set scored; only its rank within the set moves."""
    ref = scoring.Reference.from_frame(reference_frame(), source="metro")
    sites = reference_frame(12, seed=11)
    sites.index = pd.Index([f"S{i}" for i in range(12)], name="site_id")
    full = scoring.score(sites, MIXED, method=method, reference=ref)
    sub = sites[np.array(keep)]
    if extra:
        more = pd.DataFrame(extra, columns=sites.columns,
                            index=pd.Index([f"X{i}" for i in range(len(extra))], name="site_id"))
        sub = pd.concat([sub, more])
    if sub.empty:
        return
    part = scoring.score(sub, MIXED, method=method, reference=ref)
    common = [s for s in part.index if s in full.index]
    cols = ["score"] + [c for c in full.columns if c.startswith(("norm_", "contrib_"))]
    np.testing.assert_allclose(part.loc[common, cols], full.loc[common, cols], atol=1e-12)


def test_site_mostly_outside_tu_cannot_top_by_set_relative_normalisation():
    """Three sites: within the set, a site 97% outside the TU ranks first (its land take is
    'best' among three large takes, its other values best); against the metropolitan reference
    its 3% inside the TU counts as what it is, and it does not."""
    p = prof({"share_inside_tu": (1, "max"), "land_take_ha": (1, "min"),
              "rail_distance_m": (1, "min")})
    sites = pd.DataFrame(
        {"share_inside_tu": [0.03, 0.10, 0.05], "land_take_ha": [0.2, 4.5, 4.8],
         "rail_distance_m": [900.0, 5000.0, 6000.0]},
        index=pd.Index(["fuori", "a", "b"], name="site_id"),
    )
    within = scoring.score(sites, p)
    assert within.loc["fuori", "rank"] == 1
    assert within.loc["fuori", "norm_share_inside_tu"] == 0.0  # "worst" only among these three
    metro = pd.DataFrame({"share_inside_tu": np.linspace(0, 1, 11),
                          "land_take_ha": np.linspace(0, 0.3, 11),
                          "rail_distance_m": np.linspace(200, 9000, 11)})
    ref = scoring.Reference.from_frame(metro, source="metro")
    inside = pd.DataFrame({"share_inside_tu": [1.0], "land_take_ha": [0.0],
                           "rail_distance_m": [2500.0]}, index=pd.Index(["dentro"], name="site_id"))
    both = scoring.score(pd.concat([sites, inside]), p, reference=ref)
    assert both.loc["fuori", "norm_share_inside_tu"] == pytest.approx(0.03)
    assert both.loc["dentro", "rank"] == 1 and both.loc["fuori", "rank"] > 1
    # and the outside site's score is the one it had alone against the reference
    alone = scoring.score(sites.loc[["fuori"]], p, reference=ref)
    assert alone.loc["fuori", "score"] == pytest.approx(both.loc["fuori", "score"], abs=1e-15)


def test_reference_lacking_a_criterion_is_named():
    ref = scoring.Reference.from_frame(reference_frame(), source="metro")
    with pytest.raises(InputError, match="slope_mean_deg"):
        scoring.score(pd.DataFrame({"slope_mean_deg": [1.0]}),
                      prof({"slope_mean_deg": (1, "min")}), reference=ref)


def test_profile_schema_is_typed():
    schema = scoring.ProfileSpec.model_json_schema()
    crit = schema["$defs"]["CriterionSpec"]["properties"]
    assert crit["weight"]["minimum"] == 0 and "normalise" in crit
    assert set(schema["required"]) == {"name", "criteria"}
    # a profile's own monte_carlo section is what monte_carlo uses by default
    p = scoring.load_profile(prof({"fragility": (1, "max"), "area_ha": (1, "min")},
                                  monte_carlo={"draws": 7, "top_k": 2, "seed": 5}))
    mc = scoring.monte_carlo(small_frame().rename(columns={"rail_distance_m": "area_ha"}), p)
    assert (mc.attrs["draws"], mc.attrs["top_k"], mc.attrs["seed"]) == (7, 2, 5)


@pytest.mark.parametrize("method", ["wsum", "topsis"])
def test_score_only_equals_the_explained_score_to_the_bit(method):
    """explain=False skips the per-criterion columns, not a single bit of the score or rank."""
    rng = np.random.default_rng(5)
    df = reference_frame(70_000, seed=9)  # more than one block of sites
    df.loc[df.index[rng.random(len(df)) < 0.1], "rail_distance_m"] = np.nan
    p = prof({"share_inside_tu": (3, "max"), "land_take_ha": (3, "min"),
              "rail_distance_m": (2, "min", "rank")},
             exclusions=[{"rule": "land_take_ha > 4.9", "reason_it": "Troppo suolo"}])
    full = scoring.score(df, p, method=method)
    fast = scoring.score(df, p, method=method, explain=False)
    assert list(fast.columns) == list(full.columns[:6])
    assert np.array_equal(full["score"].to_numpy(), fast["score"].to_numpy(), equal_nan=True)
    assert full["rank"].equals(fast["rank"]) and full["exclusion_reason"].equals(
        fast["exclusion_reason"])


def test_ranks_by_packed_keys_equal_ranks_by_argsort():
    rng = np.random.default_rng(2)
    s = np.round(rng.random((3, 5000)), 3)  # many ties
    s[0, ::7] = np.nan
    from pattogis.scoring.methods import _ranks_desc

    got = _ranks_desc(s)
    for row, r in zip(s, got, strict=True):
        want = pd.Series(-np.round(row, 12)).rank(method="min", na_option="bottom").to_numpy()
        np.testing.assert_array_equal(r, want)
    # outside [0, 1] the argsort path gives the same convention
    np.testing.assert_array_equal(_ranks_desc(np.array([5.0, -2.0, 5.0, np.nan])), [1, 3, 1, 4])


@pytest.mark.parametrize("method", ["wsum", "topsis"])
@pytest.mark.parametrize("with_reference", [False, True])
def test_blockwise_minmax_scores_equal_the_explained_ones(method, with_reference):
    """Min-max profiles score block by block without the normalised table: the same bits, with
    missing data, an exclusion, a constant criterion and values beyond the reference."""
    df = reference_frame(70_000, seed=4)
    df.loc[df.index[::13], "land_take_ha"] = np.nan
    df["fragility"] = 0.5  # constant: every site gets 1
    df.iloc[:50, 0] = 7.0  # share_inside_tu beyond any reference value: clipped
    p = prof({"share_inside_tu": (3, "max"), "land_take_ha": (3, "min"), "fragility": (1, "max")},
             exclusions=[{"rule": "rail_distance_m > 7900", "reason_it": "Lontano"}])
    ref = scoring.Reference.from_frame(reference_frame(), source="m") if with_reference else None
    full = scoring.score(df, p, method=method, reference=ref)
    fast = scoring.score(df, p, method=method, reference=ref, explain=False)
    assert full["excluded"].any() and full["missing"].ne("").any()
    assert np.array_equal(full["score"].to_numpy(), fast["score"].to_numpy(), equal_nan=True)
    assert full["rank"].equals(fast["rank"])
