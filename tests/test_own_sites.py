"""A planner's own sites in: every format through the library, the CLI (a real process) and the
API (multipart uploads and GeoJSON bodies), errors by row counted from 1, sites outside the
metropolitan area flagged, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

from pattogis.criteria import flag_outside, read_candidates
from pattogis.errors import InputError

CASALECCHIO = "037011"


# --- known answers, no layers needed -------------------------------------------------------------


def test_flag_outside_known_shares(toy_territory):
    comuni = toy_territory["comuni"]  # x 0..4000, y 0..1000
    sites = gpd.GeoDataFrame({"site_id": ["in", "half", "out", "quarter"]}, geometry=[
        shapely.box(100, 100, 200, 200),            # inside Alfa
        shapely.box(3900, 100, 4100, 200),          # half beyond Beta's east edge
        shapely.box(5000, 0, 5100, 100),            # outside
        shapely.box(-100, 900, 100, 1100),          # a quarter inside Alfa's corner
    ], crs=comuni.crs)
    out = flag_outside(sites, comuni, min_share=0.999)
    assert out["inside_metro_share"].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.25])
    assert out["outside_metro"].tolist() == [False, True, True, True]
    # across the border between the two comuni the site is wholly inside the area
    across = gpd.GeoDataFrame(geometry=[shapely.box(1900, 100, 2100, 300)], crs=comuni.crs)
    assert flag_outside(across, comuni)["inside_metro_share"].iloc[0] == pytest.approx(1.0)


def test_points_become_circles_of_the_area_asked():
    csv = b"nome;lon;lat;area_ha\nPiazza;11,2500;44,4700;\nScalo;11,2600;44,4800;2,5\n"
    s = read_candidates(csv, label="siti.csv")
    assert s["from_point"].tolist() == [True, True]
    assert s.crs == "EPSG:25832"
    assert s.area.to_numpy() / 1e4 == pytest.approx([1.0, 2.5], rel=1e-12)
    assert s["site_id"].tolist() == ["SITO-001", "SITO-002"]  # generated
    assert s["name"].tolist() == ["Piazza", "Scalo"]
    assert s["row"].tolist() == [1, 2]
    # the circle is centred on the point given
    c = gpd.GeoSeries(s.centroid, crs=s.crs).to_crs(4326)
    assert c.x.iloc[1] == pytest.approx(11.26, abs=1e-7) and c.y.iloc[1] == pytest.approx(44.48, abs=1e-7)


def test_chosen_id_and_name_columns():
    csv = b"cod,denominazione,lon,lat\nA-1,Uno,11.25,44.47\nA-2,Due,11.26,44.48\n"
    s = read_candidates(csv, id_field="cod", name_field="denominazione")
    assert s["site_id"].tolist() == ["A-1", "A-2"] and s["name"].tolist() == ["Uno", "Due"]
    with pytest.raises(InputError) as e:
        read_candidates(csv, id_field="codice_sito")
    assert e.value.field == "codice_sito" and "cod" in str(e.value)
    dup = b"id,lon,lat\n7,11.25,44.47\n8,11.25,44.47\n7,11.26,44.48\n"
    with pytest.raises(InputError) as e:
        read_candidates(dup)
    assert e.value.rows == [1, 3] and e.value.field == "id"


BOWTIE = "POLYGON((11.2 44.48,11.21 44.49,11.21 44.48,11.2 44.49,11.2 44.48))"
GOOD = "POLYGON((11.2 44.48,11.21 44.48,11.21 44.49,11.2 44.48))"


def test_bad_geometry_reported_by_row_from_one():
    text = f'id,wkt\n1,"{GOOD}"\n2,"{BOWTIE}"\n3,"{GOOD}"\n4,"{BOWTIE}"\n'.encode()
    with pytest.raises(InputError) as e:
        read_candidates(text, label="siti.csv")
    assert e.value.rows == [2, 4] and e.value.field == "geometry" and e.value.file == "siti.csv"
    assert "Self-intersection" in str(e.value)
    broken = f'id,wkt\n1,"{GOOD}"\n2,"POLYGON((11.2 44.48"\n'.encode()
    with pytest.raises(InputError) as e:
        read_candidates(broken)
    assert e.value.rows == [2] and e.value.field == "wkt"
    notnum = b"id;lon;lat\n1;11,2;44,5\n2;undici;44,5\n"
    with pytest.raises(InputError) as e:
        read_candidates(notnum)
    assert e.value.rows == [2] and e.value.field == "lon"
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": json.loads(gpd.GeoSeries.from_wkt([GOOD]).to_json())
         ["features"][0]["geometry"]},
        {"type": "Feature", "properties": {}, "geometry": None}]}
    with pytest.raises(InputError) as e:
        read_candidates(fc)
    assert e.value.rows == [2]


def test_metres_without_a_crs_are_refused_and_declared_crs_is_used():
    sq = "POLYGON((680000 4926000,680100 4926000,680100 4926100,680000 4926100,680000 4926000))"
    text = f'id,wkt\nA,"{sq}"\n'.encode()
    with pytest.raises(InputError) as e:
        read_candidates(text)
    assert "metres" in str(e.value) and e.value.rows == [1]
    s = read_candidates(text, crs="EPSG:25832")
    assert s.geometry.iloc[0].equals_exact(shapely.from_wkt(sq), 1e-6)
    assert s.area.iloc[0] == pytest.approx(1e4)
    # GeoJSON with a legacy crs member naming EPSG:25832
    fc = {"type": "FeatureCollection",
          "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::25832"}},
          "features": [{"type": "Feature", "properties": {"id": "A"},
                        "geometry": shapely.geometry.mapping(shapely.from_wkt(sq))}]}
    assert read_candidates(fc).area.iloc[0] == pytest.approx(1e4)


def test_zip_without_one_shapefile_is_refused(tmp_path):
    z = tmp_path / "vuoto.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("leggimi.txt", "nulla")
    with pytest.raises(InputError) as e:
        read_candidates(z)
    assert "exactly one layer" in str(e.value) and "found 0" in str(e.value)
    with zipfile.ZipFile(z, "w") as f:  # a .shp without its .dbf: refused, not read bare
        f.writestr("siti.shp", b"\0" * 100)
        f.writestr("siti.shx", b"\0" * 100)
    with pytest.raises(InputError, match=r"siti.shp lacks .dbf"):
        read_candidates(z)


# --- every format, on the real layers, through both faces ----------------------------------------


def casalecchio_sites() -> gpd.GeoDataFrame:
    """Three own sites in Casalecchio di Reno (EPSG:25832): a 1 ha square deep inside the TU, a
    1 ha square well outside it, and a 4 ha square straddling the TU's edge."""
    from pattogis import layers

    com = layers.open_layer("comuni").set_index("istat").geometry[CASALECCHIO]
    tu = layers.open_layer("territorio_urbanizzato").set_index("comune_istat").geometry[CASALECCHIO]
    a = tu.buffer(-150).representative_point()
    b = com.difference(tu.buffer(250)).buffer(-80).representative_point()
    edge = shapely.get_point(shapely.get_exterior_ring(max(tu.geoms, key=lambda g: g.area)), 0)
    sq = lambda p, h: shapely.box(p.x - h, p.y - h, p.x + h, p.y + h)  # noqa: E731
    return gpd.GeoDataFrame({"codice": ["CAS-01", "CAS-02", "CAS-03"],
                             "nome": ["Ex scalo merci", "Prati di via Porrettana", "Bordo del TU"]},
                            geometry=[sq(a, 50), sq(b, 50), sq(edge, 100)], crs="EPSG:25832")


def write_formats(g: gpd.GeoDataFrame, d: Path) -> dict[str, Path]:
    """The same sites in every accepted format (and a declared non-default CRS in the Shapefile)."""
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    out["geojson"] = d / "siti.geojson"
    g.to_crs("OGC:CRS84").to_file(out["geojson"], driver="GeoJSON")
    out["gpkg"] = d / "siti.gpkg"
    g.to_file(out["gpkg"], driver="GPKG")
    shp = d / "shp"
    shp.mkdir(exist_ok=True)
    g.to_crs("EPSG:3003").to_file(shp / "siti.shp")  # Monte Mario / Italy zone 1, declared in .prj
    out["zip"] = d / "siti.zip"
    with zipfile.ZipFile(out["zip"], "w") as z:
        for f in shp.iterdir():
            z.write(f, f.name)
    out["parquet"] = d / "siti.parquet"
    g.to_parquet(out["parquet"])
    out["csv_wkt"] = d / "siti_wkt.csv"
    w = g.to_crs(4326)
    w.assign(wkt=shapely.to_wkt(w.geometry.to_numpy(), rounding_precision=12)).drop(columns="geometry").to_csv(out["csv_wkt"], index=False, sep=";")
    out["csv_lonlat"] = d / "siti_lonlat.csv"
    c = gpd.GeoSeries(g.centroid, crs=g.crs).to_crs(4326)
    lines = ["codice;nome;lon;lat"] + [f"{k};{n};{str(x).replace('.', ',')};{str(y).replace('.', ',')}"
                                       for k, n, x, y in zip(g["codice"], g["nome"], c.x, c.y, strict=True)]
    out["csv_lonlat"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def run_cli(*args: str, layers_dir: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PATTOGIS_LAYERS_DIR": str(layers_dir)}
    return subprocess.run([sys.executable, "-m", "pattogis.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def site_files(built_layers, tmp_path_factory) -> dict[str, Path]:
    return write_formats(casalecchio_sites(), tmp_path_factory.mktemp("siti"))


@pytest.mark.realdata
def test_every_format_through_the_cli_gives_the_same_scores(site_files, built_layers):
    got = {}
    for fmt, path in site_files.items():
        r = run_cli("score", "--candidates", str(path), "--json", "--draws", "50",
                    layers_dir=built_layers)
        assert r.returncode == 0, (fmt, r.stderr)
        sites = {s["site_id"]: s for s in json.loads(r.stdout)["sites"]}
        assert set(sites) == {"CAS-01", "CAS-02", "CAS-03"}, fmt
        assert all(s["host_istat"] == CASALECCHIO and not s["outside_metro"] for s in sites.values())
        assert all(s["motivazione"].startswith(k) for k, s in sites.items())
        got[fmt] = sites
    ref = got["gpkg"]
    for fmt in ("geojson", "zip", "parquet", "csv_wkt"):  # the same polygons, whatever the format
        for k in ref:
            assert got[fmt][k]["area_ha"] == pytest.approx(ref[k]["area_ha"], rel=1e-6), (fmt, k)
            assert got[fmt][k]["score"] == pytest.approx(ref[k]["score"], abs=1e-6), (fmt, k)
            assert got[fmt][k]["rank"] == ref[k]["rank"]
    # points: 1 ha circles around the centroids
    assert all(s["from_point"] and s["area_ha"] == pytest.approx(1.0) for s in got["csv_lonlat"].values())
    # the site inside the TU consumes nothing; the one outside consumes all of its hectare
    assert ref["CAS-01"]["land_take_ha"] == pytest.approx(0.0, abs=1e-9)
    assert ref["CAS-02"]["land_take_ha"] == pytest.approx(1.0, rel=1e-9)
    assert 0 < ref["CAS-03"]["share_inside_tu"] < 1


@pytest.mark.realdata
def test_cli_bad_file_names_the_row_and_writes_nothing(built_layers, tmp_path):
    bad = tmp_path / "siti.csv"
    bad.write_text(f'codice,wkt\nA,"{GOOD}"\nB,"{BOWTIE}"\n', encoding="utf-8")
    out = tmp_path / "punteggi.gpkg"
    out.write_bytes(b"previous")
    r = run_cli("score", "--candidates", str(bad), "--out", str(out), layers_dir=built_layers)
    assert r.returncode == 2
    assert "row 2" in r.stderr and "siti.csv" in r.stderr and "geometry" in r.stderr
    assert out.read_bytes() == b"previous"  # untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left
    ok = tmp_path / "ok.csv"
    ok.write_text(f'codice,wkt\nA,"{GOOD}"\n', encoding="utf-8")
    r = run_cli("score", "--candidates", str(ok), "--out", str(out), "--draws", "0",
                layers_dir=built_layers)
    assert r.returncode == 0, r.stderr
    assert gpd.read_file(out)["site_id"].tolist() == ["A"]


@pytest.fixture
def api(built_layers, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("PATTOGIS_API_KEYS", str(tmp_path / "keys.json"))
    from api.app import create_app
    from pattogis.collections import CollectionRegistry
    from pattogis.store import open_store

    store = open_store(tmp_path / "proposte.gpkg")
    with TestClient(create_app(CollectionRegistry(), get_store=lambda: store)) as c:
        yield c


@pytest.mark.realdata
def test_every_format_through_the_api(api, site_files):
    cli_ref = None
    for fmt, path in site_files.items():
        r = api.post("/analysis/score", files={"file": (path.name, path.read_bytes())},
                     data={"draws": "50"})
        assert r.status_code == 200, (fmt, r.text)
        body = r.json()
        sites = {s["site_id"]: s for s in body["sites"]}
        assert set(sites) == {"CAS-01", "CAS-02", "CAS-03"} and body["n_outside_metro"] == 0
        if fmt == "gpkg":
            cli_ref = sites
    fc = json.loads(site_files["geojson"].read_text())
    for payload in (fc, {"sites": fc, "draws": 50}):
        r = api.post("/analysis/score", json=payload)
        assert r.status_code == 200, r.text
        s = {x["site_id"]: x for x in r.json()["sites"]}
        for k in s:
            assert s[k]["score"] == pytest.approx(cli_ref[k]["score"], abs=1e-6)
    # a file instead of JSON: the scores as an Italian CSV
    r = api.post("/analysis/score", params={"format": "csv"}, json=fc)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    text = r.content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("site_id;") and "Fonti:" in text.splitlines()[-1]


@pytest.mark.realdata
def test_api_flags_sites_outside_and_reports_bad_rows(api):
    from pattogis import layers

    prov = shapely.union_all(layers.open_layer("comuni").geometry.to_numpy())
    # a 1 ha square centred on a vertex of the province's boundary: part of it lies outside
    v = shapely.get_point(shapely.get_exterior_ring(max(shapely.get_parts(prov), key=lambda g: g.area)), 0)
    sq = gpd.GeoSeries([shapely.box(v.x - 50, v.y - 50, v.x + 50, v.y + 50)], crs=25832).to_crs(4326)
    fc = json.loads(gpd.GeoDataFrame({"id": ["confine"]}, geometry=sq).to_json())
    r = api.post("/analysis/score", json=fc)
    assert r.status_code == 200, r.text
    s = r.json()["sites"][0]
    assert s["outside_metro"] is True and 0 < s["inside_metro_share"] < 1
    assert r.json()["n_outside_metro"] == 1 and "fuori dall'area metropolitana" in s["motivazione"]
    bad = f'id,wkt\n1,"{GOOD}"\n2,"{BOWTIE}"\n'.encode()
    r = api.post("/analysis/score", files={"file": ("siti.csv", bad)})
    assert r.status_code == 422 and "row 2" in r.json()["detail"] and "siti.csv" in r.json()["detail"]


@pytest.mark.realdata
def test_scheda_of_a_built_candidate_and_unknown_site(api):
    from pattogis import layers

    sid = str(layers.open_layer("candidates")["site_id"].iloc[0])
    r = api.post(f"/analysis/scheda/site/{sid}", params={"draws": 20})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f"Scheda del sito {sid}" in r.text and "Intervallo di posizione" in r.text
    assert "data:image/png;base64," in r.text and "Fonti:" in r.text
    assert api.post("/analysis/scheda/site/NESSUNO", params={"draws": 0}).status_code == 404
    assert api.post("/analysis/scheda/site/X", params={"doc": "docx"}).status_code == 422
