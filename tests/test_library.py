"""The public API of ``import pattogis`` on the hand-made territory (conftest ``toy_territory``),
with NO built layer set: TU, ledger, criteria, score, robustness, fund; and the typed settings
and config files."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

import pattogis
from pattogis.errors import ConfigError, InputError

CRS = "EPSG:25832"


@pytest.fixture
def no_layers(tmp_path, monkeypatch):
    """A layers folder with nothing in it: any hidden read of the layer set would fail."""
    monkeypatch.setenv("PATTOGIS_LAYERS_DIR", str(tmp_path / "no-layers"))
    from pattogis import layers

    assert not layers.exists()


def test_public_api_is_listed_and_documented():
    for name in ("derive_tu", "compute_ledger", "ledger_table", "criteria_context",
                 "compute_criteria", "score", "robustness", "allocate_fund", "Workspace"):
        obj = getattr(pattogis, name)
        assert name in dir(pattogis) and name in pattogis.__all__
        assert obj.__doc__ and "Example" in obj.__doc__, name


def test_public_api_on_a_hand_made_territory(toy_territory, no_layers):
    comuni = toy_territory["comuni"]
    # 20 m buildings tiling the strip x 0..1000, y 0..200 of Alfa edge to edge: the closing
    # (out 40 m, in 30 m) grows it by 10 m on each side, clipped to the comune (x 0..2000,
    # y 0..1000): x 0..1010, y 0..210 = 21.21 ha.
    xs, ys = np.meshgrid(np.arange(0, 1000, 20.0), np.arange(0, 200, 20.0))
    boxes = shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + 20, ys.ravel() + 20)
    buildings = gpd.GeoDataFrame({"comune_istat": ["999001"] * len(boxes)}, geometry=boxes,
                                 crs=CRS)
    params = {"buffer_out_m": 40.0, "buffer_in_m": 30.0, "min_cluster_ha": 2.0,
              "min_buildings": 10, "fill_holes_below_ha": 1.0, "simplify_m": 0}
    from pattogis.urbanized import tu_params

    tu = pattogis.derive_tu(comuni, buildings, params=tu_params(params))
    area = tu.set_index("comune_istat")["area_ha"]
    assert area["999001"] == pytest.approx(21.21, abs=1e-6) and area["999002"] == 0.0
    assert tu.crs == comuni.crs

    # The ledger on the conftest TU (A 100 ha, B 50 ha): the quota is 3% of the TU.
    led = pattogis.compute_ledger(comuni, toy_territory["tu"])
    q = led.comuni.set_index("istat")["local_quota_ha"]
    assert q["999001"] + q["999002"] == pytest.approx(0.01 * 150)
    table = pattogis.ledger_table(comuni, toy_territory["tu"])
    assert isinstance(table, gpd.GeoDataFrame) and table.crs == comuni.crs and len(table) == 2

    # Criteria: a site half in A's TU (x 950..1050), one inside, one outside (areas in ha).
    sites = gpd.GeoDataFrame(
        {"site_id": ["meta", "dentro", "fuori"]},
        geometry=[shapely.box(950, 400, 1050, 500), shapely.box(100, 100, 200, 200),
                  shapely.box(1500, 500, 1600, 600)], crs=CRS)
    station = gpd.GeoDataFrame({"name": ["S"]}, geometry=[shapely.Point(150, 1150)], crs=CRS)
    ctx = pattogis.criteria_context(tu=toy_territory["tu"], comuni=comuni.assign(
        fragility_index=[0.2, 0.8]), rail_stations=station, crs=CRS)
    crit = pattogis.compute_criteria(sites, ctx, ["land_take_ha", "share_inside_tu",
                                                  "rail_distance_m", "area_ha"])
    crit = crit.set_index("site_id")
    assert crit["share_inside_tu"].tolist() == pytest.approx([0.5, 1.0, 0.0])
    assert crit["land_take_ha"].tolist() == pytest.approx([0.5, 0.0, 1.0])
    # no road graph: straight line times the detour factor of config/criteria.yaml (1.3)
    assert crit.loc["dentro", "rail_distance_m"] == pytest.approx(1.3 * np.hypot(0, 1150 - 150),
                                                                   rel=1e-9)

    profile = {"name": "prova", "criteria": {"share_inside_tu": {"weight": 1},
                                             "land_take_ha": {"weight": 1}}}
    scored = pattogis.score(crit, profile)
    assert scored.loc["dentro", "score"] == pytest.approx(1.0)
    assert scored.loc["fuori", "score"] == pytest.approx(0.0)
    assert scored.loc["meta", "score"] == pytest.approx(0.5)
    assert scored["rank"].tolist() == [2, 1, 3]
    assert isinstance(scored, gpd.GeoDataFrame) and scored.crs == CRS
    ref = pattogis.Reference.from_frame(crit, source="toy")
    alone = pattogis.score(crit.loc[["meta"]], profile, reference=ref)
    assert alone.loc["meta", "score"] == pytest.approx(0.5)  # not 1 for being alone

    rob = pattogis.robustness(crit, profile, draws=50, seed=1)
    assert rob.loc["dentro", "rank_p95"] == 1 and rob.loc["fuori", "rank_p5"] == 3

    projects = pd.DataFrame({
        "project_id": ["P1", "P2"], "title": ["Uno", "Due"], "applicant": ["U1", "Comune di Beta"],
        "applicant_type": ["unione", "comune"], "unione": ["U1", None],
        "comune_istat": ["999001", "999002"], "territorial_system": ["pianura", "pianura"],
        "fragile": [False, True], "fragility_index": [0.2, 0.8], "population": [1000, 500],
        "requested_eur": [100_000.0, 50_000.0], "merit": [0.9, 0.5], "inside_tu_share": [1.0, 1.0]})
    res = pattogis.allocate_fund(projects)
    granted = res.table.set_index("project_id")["granted_eur"]
    assert granted["P1"] == pytest.approx(100_000.0) and granted["P2"] == pytest.approx(50_000.0)


def test_settings_are_typed_and_name_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("PATTOGIS_LAYERS_DIR", str(tmp_path))
    monkeypatch.setenv("PATTOGIS_DEFAULT_CALL", "bando_2025")
    s = pattogis.get_settings()
    assert s.layers_dir == tmp_path and s.default_call == "bando_2025"
    from pattogis import layers

    assert layers.layers_dir() == tmp_path.resolve()
    monkeypatch.setenv("PATTOGIS_API_WARM", "forse")
    with pytest.raises(InputError, match="PATTOGIS_API_WARM='forse'"):
        pattogis.get_settings()


def test_config_files_are_checked_at_load_naming_file_and_key(tmp_path, monkeypatch):
    from pattogis import config

    for name in config.SCHEMAS:  # the shipped files are valid
        config.load(name)
    law = (config.PACKAGE_CONFIG / "law.yaml").read_text(encoding="utf-8")
    (tmp_path / "law.yaml").write_text(law.replace("share: 0.01", "share: 0.02"),
                                       encoding="utf-8")
    tu = (config.PACKAGE_CONFIG / "tu.yaml").read_text(encoding="utf-8")
    (tmp_path / "tu.yaml").write_text(tu.replace("min_buildings: 10", "min_buildings: dieci"),
                                      encoding="utf-8")
    monkeypatch.setenv("PATTOGIS_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        config.law()
    assert str(tmp_path / "law.yaml") in str(e.value) and "'pools'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        config.load("tu.yaml")
    assert str(tmp_path / "tu.yaml") in str(e.value) and "key 'min_buildings'" in str(e.value)


def test_pug_planner_names_no_symbol_that_does_not_exist():
    from pattogis import config

    text = (config.PACKAGE_CONFIG / "profiles" / "pug_planner.yaml").read_text(encoding="utf-8")
    assert "KNOWN_CRITERIA" not in text and "ProfileSpec" in text


def test_workspace_rebuilds_when_the_layer_set_changes(tmp_path, monkeypatch):
    """The workspace caches per layer set: another folder, or the GeoPackage rewritten, and the
    next call rereads it."""
    from pattogis.workspace import Workspace

    def gpkg(folder: Path, n: int) -> None:
        folder.mkdir(exist_ok=True)
        gpd.GeoDataFrame({"istat": [f"99900{i}" for i in range(n)]},
                         geometry=[shapely.box(i, 0, i + 1, 1) for i in range(n)],
                         crs=CRS).to_file(folder / "bologna.gpkg", layer="comuni")

    gpkg(tmp_path / "a", 2)
    gpkg(tmp_path / "b", 3)
    ws = Workspace()
    monkeypatch.setenv("PATTOGIS_LAYERS_DIR", str(tmp_path / "a"))
    first = ws.layer("comuni")
    assert len(first) == 2 and ws.layer("comuni") is first  # read once
    monkeypatch.setenv("PATTOGIS_LAYERS_DIR", str(tmp_path / "b"))
    assert len(ws.layer("comuni")) == 3
    monkeypatch.setenv("PATTOGIS_LAYERS_DIR", str(tmp_path / "a"))
    gpkg(tmp_path / "a", 4)  # rebuilt in place
    assert len(ws.layer("comuni")) == 4


def test_scoring_package_imports_nothing_from_the_faces():
    """scoring sits below analysis, maps, store and the API: none of its modules imports them."""
    root = Path(pattogis.__file__).parent / "scoring"
    for f in root.glob("*.py"):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        bad = {m for m in mods if m.startswith(("pattogis.analysis", "pattogis.workspace",
                                                "pattogis.maps", "pattogis.store", "api",
                                                "pattogis.fund", "pattogis.cli"))}
        assert not bad, (f.name, bad)
    assert "pattogis.scoring" in sys.modules


def test_a_profiles_monte_carlo_section_is_what_the_faces_use():
    """analysis.score_sites used to force 500 draws, top 10, seed 0 over every profile: now the
    profile's own monte_carlo section is the default (draws=7: p_top_k in sevenths; top_k=1)."""
    from pattogis.workspace import score_table

    rng = np.random.default_rng(1)
    crit = pd.DataFrame({"site_id": [f"S{i}" for i in range(30)],
                         "fragility": rng.random(30), "area_ha": rng.random(30)})
    prof = {"name": "p", "criteria": {"fragility": {"weight": 1}, "area_ha": {"weight": 1,
                                                                               "direction": "min"}},
            "monte_carlo": {"draws": 7, "top_k": 1, "seed": 3, "concentration": 5}}
    out = score_table(crit, prof)
    sevenths = out["p_top_k"].to_numpy() * 7
    np.testing.assert_allclose(sevenths, np.round(sevenths), atol=1e-9)
    assert out["p_top_k"].sum() == pytest.approx(1.0)  # top 1: one site per draw
    again = score_table(crit, prof)
    assert out["rank_p95"].equals(again["rank_p95"])  # the profile's seed: reproducible
    assert "rank_p5" not in score_table(crit, prof, draws=0).columns


def test_ledger_measures_a_tu_given_without_areas(toy_territory, no_layers):
    """A user's TU is geometry and a comune code: the ledger measures it (metric CRS), and a TU
    in degrees is refused with the reason instead of a KeyError."""
    import pattogis
    from pattogis.errors import InputError

    tu = toy_territory["tu"].drop(columns="area_ha")
    led = pattogis.compute_ledger(toy_territory["comuni"], tu, None)
    assert led.comuni.set_index("istat")["tu_ha"].to_dict() == {"999001": 100.0, "999002": 50.0}
    with pytest.raises(InputError, match="projected"):
        pattogis.compute_ledger(toy_territory["comuni"], tu.to_crs(4326), None)
    assert "annotations" not in dir(pattogis) and "derive_tu" in dir(pattogis)
