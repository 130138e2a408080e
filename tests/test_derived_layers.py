"""Derived layers a planner can trust: productive hubs, stations, fragility, hazard, candidates.

Known answers on hand-made territories first, then checks of the real kit (marked realdata).
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from pattogis import config, layers, territory
from pattogis.criteria import CriteriaContext, compute_criteria
from pattogis.data import stations as stn

CRS = "EPSG:25832"
X0, Y0 = 600_000.0, 4_900_000.0
FER_FILE = Path(__file__).parent / "data" / "fer_stops.csv"


def sheds(x0: float, y0: float, nx: int, ny: int, w: float = 100.0, h: float = 100.0,
          gap: float = 20.0) -> list:
    """nx x ny sheds of w x h m, ``gap`` m apart, lower-left corner at (x0, y0)."""
    return [shapely.box(x0 + i * (w + gap), y0 + j * (h + gap),
                        x0 + i * (w + gap) + w, y0 + j * (h + gap) + h)
            for i in range(nx) for j in range(ny)]


def comuni_frame(boxes: dict[str, tuple[float, float, float, float]]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"istat": list(boxes), "name": [f"Comune {k}" for k in boxes]},
                            geometry=[shapely.box(*b) for b in boxes.values()], crs=CRS)


def buildings_frame(geoms: list, istat: str = "037001") -> gpd.GeoDataFrame:
    g = gpd.GeoDataFrame({"comune_istat": [istat] * len(geoms)}, geometry=geoms, crs=CRS)
    g["area_m2"] = g.geometry.area
    return g


HUB_PARAMS = {"min_building_m2": 1000.0, "buffer_out_m": 60.0, "buffer_in_m": 50.0,
              "neck_m": 60.0, "neck_steps_m": [90.0], "max_hub_ha": 400.0, "min_buildings": 5,
              "min_hub_ha": 5.0, "min_piece_ha": 0.5, "bologna_osm_landuse": ["industrial"]}


# --- productive hubs: known answers -----------------------------------------------------------


def test_two_areas_joined_by_a_rail_strip_stay_two_hubs():
    # Two estates of 3 x 2 sheds (100 m, 20 m apart): closing +60/-50 makes each a 360 x 240 m
    # rectangle (8.64 ha). Between them, 470 m of sheds 40 m deep along a railway, 10 m apart:
    # closed, a 60 m strip joining the two. Opening at 60 m (strips under 120 m) cuts it: two hubs
    # of exactly 8.64 ha each, and the strip is no hub.
    a = sheds(X0, Y0, 3, 2)
    b = sheds(X0 + 840, Y0, 3, 2)
    strip = [shapely.box(X0 + 340 + k * 60, Y0 + 90, X0 + 390 + k * 60, Y0 + 130) for k in range(8)]
    comuni = comuni_frame({"037001": (X0 - 1000, Y0 - 1000, X0 + 3000, Y0 + 1000)})
    hubs = territory.derive_hubs(comuni, buildings_frame(a + b + strip), None, params=HUB_PARAMS)
    assert len(hubs) == 2 and hubs["hub_id"].nunique() == 2
    assert hubs["hub_area_ha"].to_numpy() == pytest.approx([8.64, 8.64], rel=1e-3)
    assert (hubs["n_buildings"] == 6).all()
    # Control: with a narrow opening the strip survives and the three merge into one corridor.
    one = territory.derive_hubs(comuni, buildings_frame(a + b + strip), None,
                                params=HUB_PARAMS | {"neck_m": 20.0, "neck_steps_m": [30.0]})
    assert len(one) == 1 and one["hub_area_ha"].iloc[0] > 8.64 * 2


def test_hub_across_a_comune_border_is_labelled_in_both():
    # 4 x 2 sheds from x = 1770 to 2230 around a border at x = 2000: closed, 1760..2240 by
    # 240 m = 11.52 ha, 5.76 ha on each side. One hub, two rows, each with its comune and area.
    comuni = comuni_frame({"037001": (X0, Y0, X0 + 2000, Y0 + 1000),
                           "037002": (X0 + 2000, Y0, X0 + 4000, Y0 + 1000)})
    bld = buildings_frame(sheds(X0 + 1770, Y0 + 400, 4, 2))
    hubs = territory.derive_hubs(comuni, bld, None, params=HUB_PARAMS)
    assert len(hubs) == 2 and hubs["hub_id"].nunique() == 1
    assert sorted(hubs["comune_istat"]) == ["037001", "037002"]
    assert hubs["area_ha"].to_numpy() == pytest.approx([5.76, 5.76], rel=1e-3)
    assert hubs["hub_area_ha"].to_numpy() == pytest.approx([11.52, 11.52], rel=1e-3)
    assert (hubs["n_comuni"] == 2).all()
    # equal shares: the lower ISTAT code hosts (the one host rule), and names the hub
    assert hubs["hub_id"].iloc[0] == "HUB-037001-001"
    assert (hubs["host_istat"] == "037001").all()


def test_hub_over_the_maximum_is_opened_again():
    # Two 1,000 x 1,000 m productive blocks joined by a 200 m-wide neck: the first opening (60 m,
    # cuts under 120 m) keeps one 210 ha area, over a 150 ha maximum; the second radius (110 m,
    # cuts under 220 m) splits it into two 100 ha hubs.
    lu = gpd.GeoDataFrame({"landuse": ["industrial"] * 3}, geometry=[
        shapely.box(X0, Y0, X0 + 1000, Y0 + 1000),
        shapely.box(X0 + 1500, Y0, X0 + 2500, Y0 + 1000),
        shapely.box(X0 + 1000, Y0 + 400, X0 + 1500, Y0 + 600)], crs=CRS)
    comuni = comuni_frame({"037006": (X0 - 500, Y0 - 500, X0 + 3000, Y0 + 1500)})
    p = HUB_PARAMS | {"max_hub_ha": 150.0, "neck_steps_m": [110.0], "buffer_out_m": 0.0,
                      "buffer_in_m": 0.0}
    hubs = territory.derive_hubs(comuni, buildings_frame([]), lu, params=p)
    assert len(hubs) == 2
    assert hubs["hub_area_ha"].to_numpy() == pytest.approx([100.0, 100.0], rel=1e-3)
    assert not hubs["over_max"].any()
    once = territory.derive_hubs(comuni, buildings_frame([]), lu, params=p | {"max_hub_ha": 300.0})
    assert len(once) == 1 and once["hub_area_ha"].iloc[0] == pytest.approx(210.0, rel=1e-3)


def test_host_comune_is_the_largest_share():
    comuni = comuni_frame({"037001": (0, 0, 100, 100), "037002": (100, 0, 200, 100)})
    g = np.array([shapely.box(60, 0, 110, 10), shapely.box(90, 0, 190, 10),
                  shapely.box(500, 500, 510, 510)], dtype=object)
    h = territory.host_comune(g, comuni)
    assert list(h["istat"]) == ["037001", "037002", None]
    assert h["share"].to_numpy() == pytest.approx([0.8, 0.9, 0.0])


# --- stations: known answers ------------------------------------------------------------------


def pts(rows: list[tuple], source: str) -> gpd.GeoDataFrame:
    """(name, x, y[, lines]) rows in metres from (X0, Y0)."""
    return gpd.GeoDataFrame({"name": [r[0] for r in rows], "source": source,
                             "lines": [r[3] if len(r) > 3 else None for r in rows]},
                            geometry=[shapely.Point(X0 + r[1], Y0 + r[2]) for r in rows], crs=CRS)


def test_station_dedup():
    p = stn.station_params()
    rfi = pts([("Bologna Centrale", 0, 0, "NODO DI BOLOGNA"),
               ("BOLOGNA CENTRALE AV", 10, 0, "MILANO - BOLOGNA AV"),
               ("Bologna S.Vitale", 1500, -800, "NODO DI BOLOGNA"),
               ("Casalecchio di Reno", -5000, -2000), ("Casalecchio Garibaldi", -5000, -3000)], "RFI")
    city = pts([("Bologna San Vitale", 1500 + 1060, -800), ("Bologna Rimesse", 3000, -1000)],
               "Comune di Bologna")
    user = pts([("Bologna Centrale", 80, 60, "Bologna-Portomaggiore (FER)"),
                ("Budrio", 15000, 3000), ("Budrio Centro", 14300, 3000)], "file utente: fer.csv")
    out = stn.merge_stations([rfi, city, user], p)
    assert sorted(out["name"]) == ["Bologna Centrale", "Bologna Rimesse", "Bologna S.Vitale",
                                   "Budrio", "Budrio Centro", "Casalecchio Garibaldi",
                                   "Casalecchio di Reno"]
    c = out.set_index("name")
    # the RFI row is kept, the lines and sources of its twins join it
    assert c.loc["Bologna Centrale", "source"] == "RFI"
    assert c.loc["Bologna Centrale", "lines"] == ("NODO DI BOLOGNA; MILANO - BOLOGNA AV; "
                                                  "Bologna-Portomaggiore (FER)")
    assert c.loc["Bologna Centrale", "sources"] == "RFI; file utente: fer.csv"
    assert c.loc["Bologna S.Vitale", "sources"] == "RFI; Comune di Bologna"
    assert c.loc["Bologna Rimesse", "source"] == "Comune di Bologna"
    # Without the name rule, San Vitale (1.06 km apart) would be counted twice.
    twice = stn.merge_stations([rfi, city, user], p | {"name_match_m": 150.0})
    assert len(twice) == len(out) + 1


def test_station_names_and_keys():
    assert stn.nice_name("ANZOLA DELL'EMILIA") == "Anzola dell'Emilia"
    assert stn.nice_name("OZZANO DELL' EMILIA") == "Ozzano dell'Emilia"
    assert stn.name_key("Bologna S.Vitale") == stn.name_key("SAN VITALE")
    assert stn.name_key("Budrio") != stn.name_key("Budrio Centro")


def test_user_stations_file_errors(tmp_path: Path):
    from pattogis.errors import InputError

    f = tmp_path / "s.csv"
    f.write_text("name,lon,lat\nBudrio,44.53,11.54\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"row.*2.*swapped|swapped.*row"):
        stn.read_user_stations(f, crs=CRS, accept_box=(9.1, 43.6, 12.9, 45.2))
    f.write_text("nome,lon,lat\nBudrio,11.54,44.53\n", encoding="utf-8")
    with pytest.raises(InputError, match="name"):
        stn.read_user_stations(f, crs=CRS, accept_box=(9.1, 43.6, 12.9, 45.2))
    # any GIS format: a GeoPackage of points in another CRS
    g = gpd.GeoDataFrame({"name": ["Budrio"]}, geometry=[shapely.Point(11.54, 44.53)], crs=4326)
    g.to_crs(3857).to_file(tmp_path / "s.gpkg")
    r = stn.read_user_stations(tmp_path / "s.gpkg", crs=CRS, accept_box=(9.1, 43.6, 12.9, 45.2))
    assert r.crs == CRS and r["source"].iloc[0] == "file utente: s.gpkg"
    assert r.to_crs(4326).geometry.x.iloc[0] == pytest.approx(11.54)


# --- fragility: known answers -----------------------------------------------------------------


def test_fragility_orders_remote_mountain_above_first_ring():
    # Three comuni with official indicators: a ring comune next to the city, a plain comune and a
    # remote mountain comune. With the shipped weights the mountain one is the most fragile and
    # the ring one the least; each component is in the output and they add up to the index.
    params = config.load("fragility.yaml")
    ind = pd.DataFrame({
        "istat": ["R", "P", "M"],
        "ai_class_rank": [2.0, 3.0, 4.0], "ai_minutes_to_pole": [15.0, 30.0, 55.0],
        "income_per_taxpayer_eur": [27000.0, 22000.0, 19500.0],
        "old_age_index": [180.0, 190.0, 320.0], "pop_change_pct": [1.5, 0.5, -4.0],
        "landslide_p3p4_pct": [2.0, 0.0, 30.0], "flood_medium_pct": [40.0, 100.0, 1.0],
        "mean_elevation_m": [80.0, 20.0, 700.0]})
    idx, w, parts = territory.composite_index(ind, params, with_parts=True)
    assert idx.iloc[2] > idx.iloc[1] > idx.iloc[0]
    assert sum(parts.values()).to_numpy() == pytest.approx(idx.to_numpy())
    # the mountain comune is the worst on everything but flood: 1 - flood weight
    assert idx.iloc[2] == pytest.approx(1.0 - w["flood_medium_pct"])
    # income and population change count the other way round
    assert parts["income_per_taxpayer_eur"].iloc[0] == 0.0
    assert parts["pop_change_pct"].iloc[2] == pytest.approx(w["pop_change_pct"])


def test_fragility_refuses_a_gap():
    from pattogis.errors import InputError

    params = {"indicators": {"x": {"weight": 1.0}}}
    with pytest.raises(InputError, match="missing for comuni"):
        territory.composite_index(pd.DataFrame({"istat": ["a", "b"], "x": [1.0, np.nan]}), params)


def test_first_ring():
    c = comuni_frame({"037006": (0, 0, 100, 100), "A": (100, 0, 200, 100),
                      "B": (200, 0, 300, 100), "C": (0, 100, 100, 200)})
    assert territory.first_ring(c) == ["A", "C"]


# --- hazard criterion: known answer -----------------------------------------------------------


def test_hazard_criterion_is_the_host_comunes_value():
    comuni = comuni_frame({"037001": (X0, Y0, X0 + 1000, Y0 + 1000),
                           "037002": (X0 + 1000, Y0, X0 + 2000, Y0 + 1000)})
    comuni["flood_medium_pct"] = [90.0, 2.0]
    comuni["landslide_p3p4_pct"] = [0.0, 30.0]
    comuni["fragility_index"] = [0.2, 0.6]
    sites = gpd.GeoDataFrame({"site_id": ["a", "b", "out"]}, geometry=[
        shapely.box(X0 + 100, Y0 + 100, X0 + 300, Y0 + 300),
        shapely.box(X0 + 900, Y0 + 100, X0 + 1300, Y0 + 300),   # 75% in 037002: hosted there
        shapely.box(X0 + 5000, Y0, X0 + 5100, Y0 + 100)], crs=CRS)
    ctx = CriteriaContext.from_frames(comuni=comuni)
    r = compute_criteria(sites, ctx, ["hazard_pct", "fragility"])
    assert r["hazard_pct"].iloc[0] == pytest.approx(90.0)
    assert r["hazard_pct"].iloc[1] == pytest.approx(32.0)
    assert np.isnan(r["hazard_pct"].iloc[2])
    assert "nessun comune" in r["missing"].iloc[2]["hazard_pct"]
    assert r["hazard_basis"].iloc[0].startswith("valore comunale")
    assert list(r["host_istat"].iloc[:2]) == ["037001", "037002"]
    # without the ISPRA columns the criterion is missing with the reason, not zero
    r2 = compute_criteria(sites, CriteriaContext.from_frames(
        comuni=comuni.drop(columns=["flood_medium_pct", "landslide_p3p4_pct"])), ["hazard_pct"])
    assert r2["hazard_pct"].isna().all()


def test_default_profiles_penalise_hazard():
    for name in ("pug_planner", "unione", "fondo"):
        c = config.load(f"profiles/{name}.yaml")["criteria"]["hazard_pct"]
        assert c["direction"] == "min" and float(c["weight"]) > 0


# --- the real kit -----------------------------------------------------------------------------


@pytest.mark.realdata
def test_hubs_on_the_kit(built_layers):
    hubs = layers.open_layer("productive_hubs")
    p = territory.hub_params()
    whole = hubs.dissolve("hub_id", aggfunc="first")
    assert (whole["hub_area_ha"] <= float(p["max_hub_ha"])).all()
    assert not hubs["over_max"].any()
    # pieces add up to their hub, and each piece lies in its comune
    assert hubs.groupby("hub_id")["area_ha"].sum().to_numpy() == pytest.approx(
        whole["hub_area_ha"].to_numpy(), rel=0.02)
    # no corridor: no hub is more than 4 times longer than wide (the old 2,021 ha hub ran 20 km)
    r = whole.geometry.minimum_rotated_rectangle()
    sides = np.array([sorted(np.hypot(*np.diff(np.asarray(g.exterior.coords)[:3], axis=0).T))
                      for g in r])
    assert (sides[:, 1] / sides[:, 0]).max() < 4.0
    assert (sides[:, 1] < 5000).all()
    # the big known areas are hubs: Interporto (Bentivoglio), Roveri and CAAB (Bologna), Imola north
    known = {"Interporto": (11.384, 44.621, "037005"), "Roveri": (11.405, 44.500, "037006"),
             "CAAB": (11.407, 44.518, "037006"), "Imola nord": (11.730, 44.378, "037032")}
    for label, (lon, lat, istat) in known.items():
        pt = gpd.GeoSeries([shapely.Point(lon, lat)], crs=4326).to_crs(hubs.crs).iloc[0]
        near = hubs[hubs.distance(pt) < 300]
        assert len(near), label
        assert istat in set(near["comune_istat"]), label
    # a hub across a border is labelled in each comune
    multi = hubs[hubs["n_comuni"] > 1]
    assert len(multi) and (multi.groupby("hub_id")["comune_istat"].nunique() > 1).all()


@pytest.mark.realdata
def test_stations_on_the_kit(built_layers):
    st = layers.open_layer("rail_stations")
    prov = st[st["in_province"].astype(bool)]
    names = set(prov["name"])
    assert {"Calderara-Bargellino", "Anzola dell'Emilia", "San Lazzaro di Savena", "Borgonuovo",
            "Rastignano", "Bologna Centrale"} <= names
    assert not any("Ravone" in n or n == "Lavino" for n in st["name"])
    # one row per station: no repeated name, no two stations within the dedup distance
    assert not st["name"].duplicated().any()
    assert not prov["name"].map(stn.name_key).duplicated().any()
    d = st.geometry.to_numpy()
    i, j = shapely.STRtree(d).query(d, predicate="dwithin", distance=150.0)
    assert (i == j).all()
    # stations beyond the boundary are labelled and have no comune
    out = st[~st["in_province"].astype(bool)]
    assert len(out) and out["comune_istat"].isna().all()
    assert (out["ambito"] == "fuori provincia: solo per le distanze").all()
    assert prov["comune_istat"].notna().all()
    # lines and sources
    c = prov.set_index("name")
    assert "NODO DI BOLOGNA" in c.loc["Bologna Centrale", "lines"]
    assert c.loc["Calderara-Bargellino", "source"] == "RFI"
    cat = layers.catalog().set_index("name")
    assert "FER/TPER" in cat.loc["rail_stations", "notes"]


@pytest.mark.realdata
def test_user_stations_with_fer_stops_merge_without_duplicates(raw_dir, tmp_path):
    """The FER stops file (tests/data/fer_stops.csv; positions approximate, made for this test)
    holds 6 stops the kit already has (Bologna Centrale, San Vitale, Rimesse, Via Larga, Roveri,
    Casalecchio Garibaldi) and 12 it lacks: 12 stations are added, none twice."""
    from pattogis.data.build import Builder, build_stations

    comuni = layers.open_layer("comuni")
    runs = {}
    for key, files in (("kit", None), ("user", [FER_FILE])):
        out = tmp_path / key
        out.mkdir()
        b = Builder(raw_dir, out, CRS, lambda _m: None)
        build_stations(b, comuni, files)
        runs[key] = gpd.read_file(b.gpkg, layer="rail_stations")
    kit, user = runs["kit"], runs["user"]
    assert len(user) == len(kit) + 12
    assert not user["name"].duplicated().any()
    added = user[user["source"] == "file utente: fer_stops.csv"]
    assert set(added["name"]) == {"Villanova di Castenaso", "Castenaso", "Budrio Centro", "Budrio",
                                  "Mezzolara", "Molinella", "Casalecchio Ceretolo", "Riale",
                                  "Zola Predosa", "Ponte Ronca", "Crespellano", "Bazzano"}
    assert added["in_province"].all()
    c = user.set_index("name")
    assert "file utente: fer_stops.csv" in c.loc["Casalecchio Garibaldi", "sources"]
    assert "Casalecchio-Vignola (FER)" in c.loc["Casalecchio Garibaldi", "lines"]


@pytest.mark.realdata
def test_fragility_on_the_kit(built_layers):
    ci = layers.open_layer("comuni_indicators")
    ring = territory.first_ring(ci)
    assert len(ring) == 10
    snai = ci[ci["snai_area"] == "Appennino Bolognese"]
    assert len(snai) == 15
    f = ci.set_index("istat")["fragility_index"]
    assert snai["fragility_index"].median() > f[ring].max()
    # every component is in the layer and they add up to the index
    params = config.load("fragility.yaml")
    comp = [f"frag_{k}" for k in params["indicators"]]
    assert ci[comp].sum(axis=1).to_numpy() == pytest.approx(ci["fragility_index"].to_numpy())
    n = ci.set_index("name")
    # the counter-examples: Casalecchio and San Lazzaro less fragile than Galliera
    assert n.loc["Casalecchio di Reno", "fragility_index"] < n.loc["Galliera", "fragility_index"]
    assert n.loc["San Lazzaro di Savena", "fragility_index"] < n.loc["Malalbergo", "fragility_index"]
    # official values as published (SOURCES.md sections 14-16)
    assert n.loc["Castel d'Aiano", "ai_class"] == "F"
    assert n.loc["San Lazzaro di Savena", "income_per_taxpayer_eur"] == pytest.approx(28931.5, abs=1)
    assert n.loc["Bologna", "flood_medium_pct"] == pytest.approx(57.704)
    assert n.loc["Bologna", "landslide_p3p4_pct"] == pytest.approx(6.727)


@pytest.mark.realdata
def test_candidates_on_the_kit(built_layers):
    cand = layers.open_layer("candidates")
    later = layers.open_layer("candidates_in_corso")
    assert (cand["status"] == "candidato").all() and (later["status"] == "in corso").all()
    for name in ("Cantiere Terminal Michelino", "Tecnopolo di Bologna", "Hospice Pediatrico Seragnoli"):
        assert name not in set(cand["name"]) and name in set(later["name"])
    assert cand["name"].notna().all() and (cand["name"].str.len() > 0).all()
    assert not cand["name"].duplicated().any()
    der = cand[cand["provenance"] == "derived"]
    assert der["name"].str.startswith("Area produttiva di ").all()
    # one rule for the host comune: the layer's comune_istat is the criteria's host_istat
    ctx = CriteriaContext.from_frames(comuni=layers.open_layer("comuni"))
    r = compute_criteria(cand, ctx, ["hazard_pct"])
    from pattogis.criteria import Sites, prepare_sites

    s = Sites(prepare_sites(cand, CRS), ctx)
    assert (s.host["istat"].to_numpy() == cand["comune_istat"].to_numpy()).all()
    assert r["hazard_pct"].isna().all()  # the comuni layer alone has no hazard shares
    d = cand.set_index("site_id")
    assert d.loc["DER-037062-002", "comune_istat"] == "037062"


# --- the faces: CLI option, config files, catalog notes ----------------------------------------


def test_cli_passes_station_files_to_the_build(monkeypatch):
    from pattogis import cli
    from pattogis.data import build as B

    seen = {}
    monkeypatch.setattr(B, "build", lambda *a, **kw: seen.update(kw))
    cli.main(["data", "build", "--out", "/tmp/x", "--stations", "a.csv", "--stations", "b.gpkg"])
    assert seen["stations"] == ["a.csv", "b.gpkg"]


@pytest.mark.realdata
def test_stations_from_config_user_files(raw_dir, tmp_path, monkeypatch):
    """``user_files`` in a config override merges the same way as ``--stations``."""
    import yaml

    from pattogis.data.build import Builder, build_stations

    conf = tmp_path / "conf"
    conf.mkdir()
    spec = config.load("stations.yaml")
    spec = {k: v for k, v in spec.items() if not k.startswith("_")} | {"user_files": [str(FER_FILE)]}
    (conf / "stations.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    monkeypatch.setenv("PATTOGIS_CONFIG_DIR", str(conf))
    b = Builder(raw_dir, tmp_path, CRS, lambda _m: None)
    build_stations(b, layers.open_layer("comuni"))
    st = gpd.read_file(b.gpkg, layer="rail_stations")
    assert {"Budrio", "Molinella", "Bazzano"} <= set(st["name"])
    assert not st["name"].duplicated().any()


@pytest.mark.realdata
def test_layers_cli_prints_rules_and_limits(built_layers, capsys):
    from pattogis import cli

    cli.main(["layers"])
    out = capsys.readouterr().out
    assert "productive_hubs (derived):" in out and "opening 60 m" in out
    assert "documented maximum 400 ha" in out
    assert "comuni_indicators (derived): rule:" in out
    assert "candidates_in_corso (derived):" in out
    assert "FER/TPER" in out
