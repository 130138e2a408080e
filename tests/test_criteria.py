"""Criteria on a hand-made territory with known answers (EPSG:25832, metres).

Territory (conftest ``toy_territory``): comune A (999001, fragility 0.2) x 0..2000, comune B
(999002, fragility 0.8) x 2000..4000, both y 0..1000; TU of A = x 0..1000, TU of B = x 2000..2500.
Sites:
  half_tu  x 950..1050,  y 400..500  1 ha, half inside TU A
  border   x 1950..2100, y 0..100    1.5 ha: 0.5 ha in A (not TU), 1 ha in B (all TU)
  inside   x 100..200,   y 100..200  1 ha inside TU A
  away     x 10000..10100            1 ha, in no comune
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely

from pattogis import criteria
from pattogis.criteria import (
    REGISTRY,
    CriteriaContext,
    Outcome,
    compute_criteria,
    compute_local,
    criterion,
    register_engine,
)
from pattogis.errors import InputError

CRS = "EPSG:25832"
DETOUR = 1.3

SITES = {
    "half_tu": shapely.box(950, 400, 1050, 500),
    "border": shapely.box(1950, 0, 2100, 100),
    "inside": shapely.box(100, 100, 200, 200),
    "away": shapely.box(10000, 10000, 10100, 10100),
}


def sites(crs: str = CRS) -> gpd.GeoDataFrame:
    g = gpd.GeoDataFrame({"name": list(SITES)}, geometry=list(SITES.values()), crs=CRS,
                         index=pd.Index(list(SITES), name="site"))
    return g.to_crs(crs)


def _raster(path, arr, res, x0, y_top, nodata=-9999.0):
    prof = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1,
            "dtype": "float32", "crs": CRS, "transform": rasterio.Affine(res, 0, x0, 0, -res, y_top),
            "nodata": nodata}
    with rasterio.open(path, "w", **prof) as d:
        d.write(arr.astype("float32"), 1)
    return path


@pytest.fixture
def layers_toy(toy_territory, tmp_path) -> dict:
    # fragility and the ISPRA hazard shares (%) of the host comune (hazard_pct, issue 13)
    comuni = toy_territory["comuni"].assign(fragility_index=[0.2, 0.8],
                                            flood_medium_pct=[10.0, 50.0],
                                            landslide_p3p4_pct=[5.0, 0.0])
    # DEM: 100 m cells over x 0..2200, y 0..1000; column c holds 10 c.
    dem = np.tile(np.arange(22) * 10.0, (10, 1))
    # Slope: 5 degrees everywhere but nodata in column 20 (x 2000..2100).
    slope = np.full((10, 22), 5.0)
    slope[:, 20] = -9999.0
    heat = np.full((20, 20), 40.0)  # 50 m cells over x 0..1000, y 0..1000
    return {
        "comuni": comuni,
        "tu": toy_territory["tu"],
        "rail_stations": gpd.GeoDataFrame({"name": ["S"]}, geometry=[shapely.Point(150, 1150)],
                                          crs=CRS),
        "bus_stops": gpd.GeoDataFrame(
            {"stop_code": list("ABCDE"), "n_lines": [3, 2, 7, 1, 4]},
            geometry=shapely.points([(-200, 150), (150, -400), (-800, 150), (150, 150),
                                     (-300, 150)]), crs=CRS),
        "cycleways": gpd.GeoDataFrame({"codice": ["c1"]},
                                      geometry=[shapely.LineString([(100, 450), (200, 450)])],
                                      crs=CRS),
        "hubs": gpd.GeoDataFrame(
            {"hub_id": ["h1"]},
            geometry=[shapely.MultiPolygon([shapely.box(1200, 400, 1300, 500),
                                            shapely.box(2050, 50, 2200, 150)])], crs=CRS),
        "roads_nodes": gpd.GeoDataFrame({"osmid": [1, 2]},
                                        geometry=shapely.points([(150, 160), (150, 1160)]), crs=CRS),
        "roads_edges": gpd.GeoDataFrame({"u": [1], "v": [2], "length_m": [1000.0]},
                                        geometry=[shapely.LineString([(150, 160), (150, 1160)])],
                                        crs=CRS),
        "rasters": {
            "dem": _raster(tmp_path / "dem.tif", dem, 100.0, 0, 1000),
            "slope": _raster(tmp_path / "slope.tif", slope, 100.0, 0, 1000),
            "heat": _raster(tmp_path / "heat.tif", heat, 50.0, 0, 1000),
        },
    }


def make_ctx(layers_toy: dict, **drop: bool) -> CriteriaContext:
    kw = {k: v for k, v in layers_toy.items() if not drop.get(k)}
    return CriteriaContext.from_frames(
        **kw, crs=CRS, params={"layer_coverage": {"cycleways": ["999001"]}})


@pytest.fixture
def result(layers_toy) -> pd.DataFrame:
    return compute_criteria(sites(), make_ctx(layers_toy))


def test_land_take_and_share_inside_tu(result):
    r = result
    assert r.loc["half_tu", "land_take_ha"] == pytest.approx(0.5)
    assert r.loc["half_tu", "share_inside_tu"] == pytest.approx(0.5)
    assert r.loc["border", "land_take_ha"] == pytest.approx(0.5)
    assert r.loc["border", "share_inside_tu"] == pytest.approx(2 / 3)
    assert r.loc["inside", "land_take_ha"] == pytest.approx(0.0)
    assert r.loc["inside", "share_inside_tu"] == pytest.approx(1.0)
    assert r.loc["away", "land_take_ha"] == pytest.approx(1.0)
    assert r.loc["away", "share_inside_tu"] == pytest.approx(0.0)


def test_area_and_compactness(result):
    assert result["area_ha"].tolist() == pytest.approx([1.0, 1.5, 1.0, 1.0])
    assert result.loc["half_tu", "compactness"] == pytest.approx(math.pi / 4)
    # 150 x 100 rectangle: 4 pi 15000 / 500^2
    assert result.loc["border", "compactness"] == pytest.approx(4 * math.pi * 15000 / 500**2)


def test_fragility_of_the_host_comune(result):
    assert result.loc["half_tu", "fragility"] == pytest.approx(0.2)
    assert result.loc["border", "fragility"] == pytest.approx(0.8)  # 1 ha in B beats 0.5 in A
    assert result.loc["border", "host_istat"] == "999002"
    assert math.isnan(result.loc["away", "fragility"])
    assert "nessun comune" in result.loc["away", "missing"]["fragility"]


def test_rail_distance_network_and_detour(result):
    # inside: 10 m to node 1 + 1000 m of road + 10 m from node 2 to the station
    assert result.loc["inside", "rail_distance_m"] == pytest.approx(1020.0)
    assert result.loc["inside", "rail_distance_method"] == "network"
    # half_tu: its centroid (1000, 450) is 898 m from the road, beyond the 300 m threshold
    assert result.loc["half_tu", "rail_distance_m"] == pytest.approx(math.hypot(850, 700) * DETOUR)
    assert result.loc["half_tu", "rail_distance_method"] == "euclidean_detour"


def test_bus_access_bands_and_lines(result):
    # inside: A 300 m x 3 lines (1.0), B 500 m x 2 (0.5), C 900 m (out), D inside x 1,
    # E exactly 400 m x 4 (1.0): 3 + 1 + 0 + 1 + 4 = 9
    assert result.loc["inside", "bus_access"] == pytest.approx(9.0)
    assert result.loc["half_tu", "bus_access"] == 0.0  # a real zero, not missing
    assert "bus_access" not in result.loc["half_tu", "missing"]


def test_cycle_distance_only_where_the_layer_covers(result):
    assert result.loc["inside", "cycle_distance_m"] == pytest.approx(250.0)
    assert result.loc["half_tu", "cycle_distance_m"] == pytest.approx(750.0)
    assert math.isnan(result.loc["border", "cycle_distance_m"])  # its centroid is in B
    assert "copertura" in result.loc["border", "missing"]["cycle_distance_m"]


def test_hub_distance(result):
    assert result.loc["half_tu", "hub_distance_m"] == pytest.approx(150.0)
    assert result.loc["border", "hub_distance_m"] == 0.0  # overlaps the second part
    assert result.loc["inside", "hub_distance_m"] == pytest.approx(math.hypot(1000, 200))
    assert result.loc["away", "hub_distance_m"] == pytest.approx(math.hypot(7800, 9850))


def test_raster_means_and_coverage(result):
    r = result
    assert r.loc["inside", "elevation_mean_m"] == pytest.approx(10.0)
    assert r.loc["half_tu", "elevation_mean_m"] == pytest.approx(95.0)  # half col 9, half col 10
    assert r.loc["border", "elevation_mean_m"] == pytest.approx((50 * 190 + 100 * 200) / 150)
    assert r.loc["half_tu", "slope_mean_deg"] == pytest.approx(5.0)
    # border: slope is nodata on x 2000..2100, two thirds of the site
    assert math.isnan(r.loc["border", "slope_mean_deg"])
    assert "33%" in r.loc["border", "missing"]["slope_mean_deg"]
    assert r.loc["inside", "heat_mean_c"] == pytest.approx(40.0)
    assert math.isnan(r.loc["half_tu", "heat_mean_c"])  # heat covers x <= 1000: half the site
    assert "50%" in r.loc["half_tu", "missing"]["heat_mean_c"]
    assert "non copre" in r.loc["border", "missing"]["heat_mean_c"]
    assert "non copre" in r.loc["away", "missing"]["elevation_mean_m"]


def test_missing_is_explicit_and_complete(result):
    names = criteria.names()
    for site, row in result.iterrows():
        nan = {n for n in names if pd.isna(row[n])}
        assert nan == set(row["missing"]), site
        assert all(isinstance(v, str) and v for v in row["missing"].values())
    assert result.loc["inside", "missing"] == {}


def test_missing_layer_is_reported(layers_toy):
    ctx = make_ctx(layers_toy, tu=True, hubs=True)
    r = compute_criteria(sites(), ctx)
    for n in ("land_take_ha", "share_inside_tu", "hub_distance_m"):
        assert r[n].isna().all()
    reason = r.loc["inside", "missing"]["land_take_ha"]
    assert "territorio_urbanizzato" in reason
    assert "productive_hubs" in r.loc["inside", "missing"]["hub_distance_m"]
    assert r.loc["inside", "bus_access"] == pytest.approx(9.0)  # the rest is unaffected


def test_fragility_missing_when_index_absent(layers_toy):
    layers_toy["comuni"] = layers_toy["comuni"].drop(columns="fragility_index")
    r = compute_criteria(sites(), make_ctx(layers_toy), ["fragility"])
    assert r["fragility"].isna().all()
    assert "fragility" in r.loc["inside", "missing"]


def test_candidates_in_degrees_are_reprojected(layers_toy):
    ctx = make_ctx(layers_toy)
    r = compute_criteria(sites("EPSG:4326"), ctx, ["land_take_ha", "area_ha", "hub_distance_m"])
    assert r.crs == CRS
    assert r.loc["half_tu", "land_take_ha"] == pytest.approx(0.5, abs=1e-4)
    assert r.loc["half_tu", "hub_distance_m"] == pytest.approx(150.0, abs=1e-4)


def test_selected_columns_and_order(result, layers_toy):
    r = compute_criteria(sites(), make_ctx(layers_toy), ["area_ha", "rail_distance_m"])
    assert list(r.columns) == ["name", "geometry", "area_ha", "rail_distance_m",
                               "rail_distance_method", "missing"]
    assert list(r.index) == list(SITES)
    with pytest.raises(ValueError, match="unknown criteria"):
        compute_criteria(sites(), make_ctx(layers_toy), ["nope"])


def test_bad_candidates_are_named(layers_toy):
    ctx = make_ctx(layers_toy)
    g = sites()
    with pytest.raises(InputError, match="no CRS"):
        compute_criteria(g.set_crs(None, allow_override=True), ctx)
    bad = g.copy()
    bad.loc["border", "geometry"] = shapely.Point(0, 0)
    with pytest.raises(InputError, match=r"row 2.*geometry"):  # rows counted from 1
        compute_criteria(bad, ctx)
    bow = g.copy()
    bow.loc["away", "geometry"] = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    with pytest.raises(InputError, match=r"invalid.*row 4"):
        compute_criteria(bow, ctx)


def test_engine_seam(layers_toy):
    ctx = make_ctx(layers_toy)

    def halves(gdf, ctx, names):
        parts = [compute_local(gdf.iloc[:2], ctx, names), compute_local(gdf.iloc[2:], ctx, names)]
        return pd.concat(parts)

    register_engine("halves_for_test", halves)
    try:
        a = compute_criteria(sites(), ctx)
        b = compute_criteria(sites(), ctx, engine="halves_for_test")
    finally:
        criteria.ENGINES.pop("halves_for_test")
    pd.testing.assert_frame_equal(a.drop(columns="geometry"), b.drop(columns="geometry"))
    with pytest.raises(ValueError, match="unknown engine"):
        compute_criteria(sites(), ctx, engine="nope")


def test_timings_per_stage_leave_the_values_alone(layers_toy):
    ctx = make_ctx(layers_toy)
    t: dict[str, float] = {}
    a = compute_criteria(sites(), ctx)
    b = compute_criteria(sites(), ctx, timings=t)
    pd.testing.assert_frame_equal(a, b)
    assert set(t) == {"sites", *criteria.names()}
    assert all(isinstance(v, float) and v >= 0 for v in t.values())
    # compute_local alone records the same stages (engines call it per partition)
    t2: dict[str, float] = {}
    c = compute_local(criteria.prepare_sites(sites(), CRS), ctx, ["area_ha", "fragility"],
                      timings=t2)
    assert set(t2) == {"sites", "area_ha", "fragility"}
    pd.testing.assert_series_equal(c["fragility"], a["fragility"])


def test_adding_a_criterion_is_one_function(layers_toy):
    @criterion("perimeter_m_for_test", unit="m", direction="min", source="geometria",
               label_it="Perimetro")
    def perimeter(s):
        """Perimeter in metres."""
        return Outcome.of(shapely.length(s.geoms))

    try:
        r = compute_criteria(sites(), make_ctx(layers_toy), ["perimeter_m_for_test"])
        assert r.loc["border", "perimeter_m_for_test"] == pytest.approx(500.0)
        assert criteria.describe(["perimeter_m_for_test"]).loc[0, "description"] == \
            "Perimeter in metres."
    finally:
        REGISTRY.pop("perimeter_m_for_test")


def test_registry_holds_the_contract_columns():
    # pattogis.scoring reads exactly these columns and units (it takes them from the registry)
    want = {"land_take_ha": "ha", "share_inside_tu": "0-1", "rail_distance_m": "m",
            "bus_access": "fermate pesate", "cycle_distance_m": "m", "hub_distance_m": "m",
            "fragility": "0-1", "slope_mean_deg": "°", "elevation_mean_m": "m",
            "heat_mean_c": "°C", "area_ha": "ha", "compactness": "0-1",
            "hazard_pct": "%"}  # ISPRA per-comune hazard of the host comune (issue 13)
    assert {n: c.unit for n, c in REGISTRY.items()} == want
    for n, c in REGISTRY.items():
        assert c.source and c.label_it and c.description, n
        assert c.direction in ("max", "min", "target")
    assert criteria.output_columns(["rail_distance_m", "fragility"]) == [
        "rail_distance_m", "rail_distance_method", "fragility", "host_istat", "missing"]


def test_from_layers_tolerates_missing_derived_layers(layers_toy, tmp_path, monkeypatch):
    d = tmp_path / "layers"
    d.mkdir()
    gpkg = d / "bologna.gpkg"
    for name in ("rail_stations", "bus_stops", "cycleways", "roads_nodes", "roads_edges"):
        pyogrio.write_dataframe(layers_toy[name], gpkg, layer=name)
    pyogrio.write_dataframe(layers_toy["comuni"].drop(columns="fragility_index"), gpkg,
                            layer="comuni")
    monkeypatch.setenv("PATTOGIS_LAYERS_DIR", str(d))
    ctx = CriteriaContext.from_layers(params={"layer_coverage": {"cycleways": ["999001"]}})
    assert {"tu", "hubs", "fragility", "dem", "slope", "heat"} <= set(ctx.unavailable)
    assert ctx.graph is not None and ctx.graph.n_nodes == 2
    r = compute_criteria(sites(), ctx)
    miss = r.loc["inside", "missing"]
    assert "territorio_urbanizzato" in miss["land_take_ha"]
    assert "productive_hubs" in miss["hub_distance_m"]
    assert "comuni_indicators" in miss["fragility"]
    assert "raster 'heat'" in miss["heat_mean_c"]
    assert r.loc["inside", "rail_distance_m"] == pytest.approx(1020.0)
    assert r.loc["inside", "bus_access"] == pytest.approx(9.0)


@pytest.mark.realdata
def test_real_candidates(built_layers):
    from pattogis import layers

    ctx = CriteriaContext.from_layers()
    cand = layers.open_layer("candidates")
    r = compute_criteria(cand, ctx)
    assert len(r) == len(cand)
    assert r["share_inside_tu"].between(0, 1).all()
    assert (r["land_take_ha"] <= r["area_ha"] + 1e-9).all()
    in_bo = r["host_istat"] == "037006"
    # The road graph covers Bologna city only: mostly network distances there (a station just
    # beyond the city edge may be nearer by the detoured straight line), detours elsewhere
    # (a few sites on the city edge reach the graph).
    assert (r.loc[~in_bo, "rail_distance_method"] == "euclidean_detour").mean() > 0.95
    assert (r.loc[in_bo, "rail_distance_method"] == "network").mean() > 0.5
    assert r["rail_distance_m"].notna().all() and (r["rail_distance_m"] > 0).all()
    assert r.loc[~in_bo, "heat_mean_c"].isna().all()
    assert r.loc[in_bo, "heat_mean_c"].notna().mean() > 0.8
    assert r["elevation_mean_m"].notna().all()
    assert r["elevation_mean_m"].between(-10, 2000).all()
    for _, row in r.iterrows():
        assert {n for n in criteria.names() if pd.isna(row[n])} == set(row["missing"])
