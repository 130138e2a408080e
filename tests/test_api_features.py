"""Tests of the OGC API - Features face (api/features.py, pattogis/collections.py, api/errors.py).

Most tests use a hand-made GeoPackage with known features: a 20 x 20 grid of points 100 m apart
in EPSG:25832 (fid = 20 i + j + 1 for column i, row j), four parcels with known timestamps, an
empty layer and a layer_catalog. The last tests need the real layer set (``built_layers``): a
round trip of every collection through GDAL's OAPIF driver against a real uvicorn server, and
schemathesis against the app's OpenAPI document.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import parse_qs, urlsplit

import geopandas as gpd
import httpx
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import pytest
import shapely
from fastapi import FastAPI
from pydantic import BaseModel

from api.app import create_app
from api.errors import BadRequest, install
from pattogis.collections import Collection, CollectionRegistry
from pattogis.errors import (
    ConfigError,
    InfeasibleError,
    InputError,
    MissingDataError,
    NotFound,
    PermissionDenied,
)

with warnings.catch_warnings():  # starlette's notice about httpx2 is not about this code
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient

REPO = Path(__file__).resolve().parents[1]
CRS = "EPSG:25832"
X0, Y0, STEP, N = 680_000.0, 4_930_000.0, 100.0, 20
TO84 = pyproj.Transformer.from_crs(CRS, "OGC:CRS84", always_xy=True)
GRID_ATTRIBUTION = "Griglia di prova (CC0)"
STAMPS = ["2024-01-15T10:00:00Z", "2024-03-01T00:00:00Z", "2024-06-30T23:00:00Z", None]


def need(module: str) -> ModuleType:
    """Import a test dependency. Elsewhere a missing one skips; in CI (CI=true) it fails, so
    that a test never goes unrun without anyone noticing."""
    if os.environ.get("CI", "").strip().lower() == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def fid(i: int, j: int) -> int:
    return i * N + j + 1


def lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = TO84.transform(x, y)
    return float(lon), float(lat)


def write_toy(path: Path) -> Path:
    ii, jj = np.meshgrid(np.arange(N), np.arange(N), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()  # row order i-major: fid = 20 i + j + 1
    grid = gpd.GeoDataFrame(
        {"i": ii, "j": jj, "name": [f"Città {k}" for k in range(N * N)]},
        geometry=shapely.points(X0 + STEP * ii, Y0 + STEP * jj), crs=CRS)
    pyogrio.write_dataframe(grid, path, layer="grid_points")
    parcels = gpd.GeoDataFrame(
        {"code": ["P1", "P2", "P3", "P4"], "when": pd.to_datetime(STAMPS, utc=True)},
        geometry=[shapely.box(X0 + 10 * k, Y0, X0 + 10 * k + 5, Y0 + 5) for k in range(4)],
        crs=CRS)
    pyogrio.write_dataframe(parcels, path, layer="parcels")
    empty = gpd.GeoDataFrame({"a": pd.Series([], dtype="int64")},
                             geometry=gpd.GeoSeries([], crs=CRS))
    pyogrio.write_dataframe(empty, path, layer="vuoto", geometry_type="Polygon")
    catalog = pd.DataFrame({"name": ["grid_points", "parcels"],
                            "attribution": [GRID_ATTRIBUTION, "Particelle di prova"],
                            "licence": ["CC0", "CC0"], "notes": ["a 20 x 20 grid", ""],
                            "source": ["hand-made", "hand-made"],
                            "provenance": ["derived", "derived"]})
    pyogrio.write_dataframe(catalog, path, layer="layer_catalog")
    return path


@pytest.fixture(scope="module")
def toy_gpkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy(tmp_path_factory.mktemp("toy") / "toy.gpkg")


@pytest.fixture(scope="module")
def client(toy_gpkg: Path) -> TestClient:
    return TestClient(create_app(CollectionRegistry(gpkg=toy_gpkg), routers=None))


def links(doc: dict) -> dict[str, dict]:
    """Links by rel; the first of a rel (the JSON one) where several types share it."""
    return {ln["rel"]: ln for ln in reversed(doc["links"])}


def qs(href: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(href).query).items()}


# --------------------------------------------------------------------------- landing, conformance


def test_landing_links_resolve(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200
    ln = links(r.json())
    assert {"self", "service-desc", "conformance", "data"} <= ln.keys()
    assert ln["service-desc"]["href"].endswith("/openapi.json")
    assert ln["service-desc"]["type"] == "application/vnd.oai.openapi+json;version=3.0"
    assert ln["data"]["href"].endswith("/collections")
    for rel in ("self", "service-desc", "conformance", "data"):
        assert client.get(ln[rel]["href"]).status_code == 200, rel
    assert client.get("/?f=json").status_code == 200
    maps = [x for x in r.json()["links"] if x["rel"] == "related"]
    assert maps and maps[0]["href"].endswith("/maps/") and maps[0]["type"] == "text/html"


def test_conformance_classes(client: TestClient) -> None:
    conf = client.get("/conformance").json()["conformsTo"]
    base = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
    assert {base + c for c in ("core", "geojson", "oas30")} <= set(conf)


def test_openapi_is_valid_30(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.0")
    assert '"type": "null"' not in json.dumps(doc)
    validator = need("openapi_spec_validator")
    validator.validate(doc)
    params = {p["name"]: p for p in doc["paths"]["/collections/{collectionId}/items"]["get"]
              ["parameters"]}
    assert params["limit"]["schema"]["maximum"] == 10_000
    assert params["limit"]["schema"]["default"] == 100
    assert {"bbox", "datetime", "offset", "f"} <= params.keys()


# --------------------------------------------------------------------------- collections


def test_collections_metadata(client: TestClient) -> None:
    cols = {c["id"]: c for c in client.get("/collections").json()["collections"]}
    assert set(cols) == {"grid_points", "parcels", "vuoto"}  # layer_catalog is not spatial
    g = client.get("/collections/grid_points").json()
    assert g == cols["grid_points"]
    assert g["itemCount"] == N * N
    assert g["geometryType"] == "Point"
    assert g["attribution"] == GRID_ATTRIBUTION
    assert g["license"] == "CC0"
    # The extent holds every point and is tight to 1e-3 degrees (about 100 m).
    corners = np.array([lonlat(X0 + STEP * a, Y0 + STEP * b)
                        for a in (0, N - 1) for b in (0, N - 1)])
    exact = [corners[:, 0].min(), corners[:, 1].min(), corners[:, 0].max(), corners[:, 1].max()]
    got = g["extent"]["spatial"]["bbox"][0]
    assert got[0] <= exact[0] and got[1] <= exact[1] and got[2] >= exact[2] and got[3] >= exact[3]
    np.testing.assert_allclose(got, exact, atol=1e-3)
    assert g["extent"]["spatial"]["crs"].endswith("/OGC/1.3/CRS84")
    assert "temporal" not in g["extent"]
    ln = links(g)
    assert ln["items"]["type"] == "application/geo+json"
    assert ln["items"]["href"].endswith("/collections/grid_points/items")

    p = cols["parcels"]
    assert p["extent"]["temporal"]["interval"] == [[STAMPS[0], STAMPS[2]]]
    assert p["datetimeField"] == "when"
    v = cols["vuoto"]
    assert v["itemCount"] == 0 and "spatial" not in v["extent"]


# --------------------------------------------------------------------------- items and paging


def test_items_default_page(client: TestClient) -> None:
    r = client.get("/collections/grid_points/items")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    fc = r.json()
    assert fc["type"] == "FeatureCollection"
    assert fc["numberMatched"] == N * N and fc["numberReturned"] == 100
    assert [f["id"] for f in fc["features"]] == list(range(1, 101))
    assert fc["attribution"] == GRID_ATTRIBUTION
    assert "T" in fc["timeStamp"] and fc["timeStamp"].endswith("Z")
    ln = links(fc)
    assert qs(ln["next"]["href"]) == {"limit": "100", "offset": "100"}
    assert "prev" not in ln
    assert client.get("/collections/grid_points/items?f=json").status_code == 200


def test_paging_walk_follows_next_and_prev(client: TestClient) -> None:
    url, ids, sizes, pages = "/collections/grid_points/items?limit=150", [], [], []
    while url:
        fc = client.get(url).json()
        pages.append(fc)
        assert fc["numberMatched"] == N * N
        sizes.append(fc["numberReturned"])
        ids += [f["id"] for f in fc["features"]]
        url = links(fc).get("next", {}).get("href")
    assert sizes == [150, 150, 100]
    assert ids == list(range(1, N * N + 1))  # every feature once, in fid order
    assert qs(links(pages[2])["prev"]["href"])["offset"] == "150"
    assert qs(links(pages[1])["prev"]["href"])["offset"] == "0"
    # prev from a ragged offset never goes below 0
    fc = client.get("/collections/grid_points/items?limit=150&offset=50").json()
    assert qs(links(fc)["prev"]["href"])["offset"] == "0"
    assert [f["id"] for f in fc["features"]][:2] == [51, 52]


def test_offset_past_the_end(client: TestClient) -> None:
    fc = client.get("/collections/grid_points/items?offset=1000&limit=10").json()
    assert fc["numberMatched"] == N * N and fc["numberReturned"] == 0 and fc["features"] == []
    assert "next" not in links(fc)
    assert qs(links(fc)["prev"]["href"])["offset"] == str(N * N - 10)


def test_bbox_known_answer(client: TestClient) -> None:
    # Box from grid point (4.5, 4.5) to (9.5, 9.5): columns and rows 5..9, 25 points; grid
    # convergence (~1.6 degrees here) moves the box edges by < 13 m, far from the 50 m margin.
    a = lonlat(X0 + 450, Y0 + 450)
    b = lonlat(X0 + 950, Y0 + 950)
    bbox = f"{a[0]},{a[1]},{b[0]},{b[1]}"
    fc = client.get(f"/collections/grid_points/items?bbox={bbox}&limit=1000").json()
    expected = sorted(fid(i, j) for i in range(5, 10) for j in range(5, 10))
    assert fc["numberMatched"] == 25
    assert [f["id"] for f in fc["features"]] == expected
    for f in fc["features"]:
        i, j = f["properties"]["i"], f["properties"]["j"]
        assert f["id"] == fid(i, j)
        assert f["properties"]["name"] == f"Città {f['id'] - 1}"
        lon, lat = lonlat(X0 + STEP * i, Y0 + STEP * j)
        assert f["geometry"]["type"] == "Point"
        np.testing.assert_allclose(f["geometry"]["coordinates"], [lon, lat], atol=6e-8)
    # paging within a bbox keeps the bbox in the links
    page = client.get(f"/collections/grid_points/items?bbox={bbox}&limit=10").json()
    assert page["numberReturned"] == 10 and page["numberMatched"] == 25
    nxt = qs(links(page)["next"]["href"])
    assert nxt["bbox"] == bbox and nxt["offset"] == "10"
    # the same box with heights (6 numbers) gives the same answer; a far box gives nothing
    fc6 = client.get(f"/collections/grid_points/items?bbox={a[0]},{a[1]},0,{b[0]},{b[1]},10"
                     "&limit=1000").json()
    assert [f["id"] for f in fc6["features"]] == expected
    assert client.get("/collections/grid_points/items?bbox=0,0,1,1").json()["numberMatched"] == 0


def test_single_feature(client: TestClient) -> None:
    r = client.get("/collections/grid_points/items/42")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    f = r.json()
    assert f["type"] == "Feature" and f["id"] == 42
    assert (f["properties"]["i"], f["properties"]["j"]) == (2, 1)  # 42 = 20*2 + 1 + 1
    np.testing.assert_allclose(f["geometry"]["coordinates"], lonlat(X0 + 200, Y0 + 100),
                               atol=6e-8)
    assert f["attribution"] == GRID_ATTRIBUTION
    assert links(f)["self"]["href"].endswith("/collections/grid_points/items/42")
    assert links(f)["collection"]["href"].endswith("/collections/grid_points")


def test_empty_collection(client: TestClient) -> None:
    fc = client.get("/collections/vuoto/items").json()
    assert fc["numberMatched"] == 0 and fc["features"] == [] and "next" not in links(fc)


# --------------------------------------------------------------------------- Parts 2, 3, 5


def grid_source(toy_gpkg: Path) -> gpd.GeoDataFrame:
    return pyogrio.read_dataframe(toy_gpkg, layer="grid_points", fid_as_index=True)


def ids_of(client: TestClient, url: str, **params: object) -> list[int]:
    r = client.get(url, params={"limit": 10_000, **params})
    assert r.status_code == 200, r.text
    return [f["id"] for f in r.json()["features"]]


def test_queryables_and_schema_have_exact_types(client: TestClient) -> None:
    col = client.get("/collections/grid_points").json()
    ln = {x["rel"]: x for x in col["links"]}
    q = client.get(ln["http://www.opengis.net/def/rel/ogc/1.0/queryables"]["href"])
    assert q.status_code == 200 and q.headers["content-type"] == "application/schema+json"
    props = q.json()["properties"]
    assert props["i"] == {"title": "i", "type": "integer", "format": "int64"}
    assert props["name"]["type"] == "string"
    assert props["geometry"]["format"] == "geometry-point"
    schema = client.get(ln["describedby"]["href"]).json()
    assert schema["$schema"].startswith("https://json-schema.org/draft/2020-12")
    assert set(schema["properties"]) == {"i", "j", "name", "geometry"}
    # the GML application schema GDAL reads: 64-bit integers as xs:long
    xsd = client.get(ln["describedBy"]["href"])
    assert xsd.headers["content-type"].startswith("text/xml")
    assert '<xs:element name="i" type="xs:long"' in xsd.text
    assert 'type="gml:PointPropertyType"' in xsd.text
    assert "gml:PointPropertyType" not in client.get(
        "/collections/parcels/schema.xsd").text  # polygons: gml:SurfacePropertyType
    assert client.get("/collections/parcels/queryables").json()["properties"]["when"] == {
        "title": "when", "type": "string", "format": "date-time"}


def test_property_equality_filter(client: TestClient) -> None:
    assert ids_of(client, "/collections/grid_points/items", i=3) == [fid(3, j) for j in range(N)]
    assert ids_of(client, "/collections/grid_points/items", i=3, j=4) == [fid(3, 4)]
    assert ids_of(client, "/collections/grid_points/items", name="Città 7") == [8]
    fc = client.get("/collections/grid_points/items", params={"i": 3, "limit": 5}).json()
    assert fc["numberMatched"] == N and "i=3" in links(fc)["next"]["href"]


@pytest.mark.parametrize(("lang", "text"), [
    # pygeofilter's grammar wants identifiers of 2+ characters unquoted: "i" is quoted
    ("cql2-text", '"i" < 3 AND "j" >= 18'),
    ("cql2-text", '("i" BETWEEN 0 AND 2) AND "j" IN (18, 19)'),
    ("cql2-json", json.dumps({"op": "and", "args": [
        {"op": "<", "args": [{"property": "i"}, 3]},
        {"op": ">=", "args": [{"property": "j"}, 18]}]})),
    (None, '"i" * 10 + "j" < 40 AND "j" >= 18'),
])
def test_cql2_filter_known_answer(client: TestClient, lang: str | None, text: str) -> None:
    params = {"filter": text, **({"filter-lang": lang} if lang else {})}
    want = sorted(fid(i, j) for i in range(3) for j in (18, 19))
    assert sorted(ids_of(client, "/collections/grid_points/items", **params)) == want


def test_cql2_like_and_spatial_match_geopandas(client: TestClient, toy_gpkg: Path) -> None:
    src = grid_source(toy_gpkg)
    got = ids_of(client, "/collections/grid_points/items", filter="name LIKE 'Città 1%'")
    assert sorted(got) == sorted(src.index[src["name"].str.startswith("Città 1")])
    # a polygon in CRS84 covering part of the grid, against shapely on the reprojected source
    x0, y0 = lonlat(X0 + 250, Y0 + 250)
    x1, y1 = lonlat(X0 + 1050, Y0 + 650)
    poly = f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"
    ref = src.to_crs("OGC:CRS84")
    want = ref.index[ref.intersects(shapely.from_wkt(poly))]
    assert len(want) > 10
    got = ids_of(client, "/collections/grid_points/items",
                 filter=f'S_INTERSECTS(geometry, {poly}) AND "i" > 5')
    assert sorted(got) == sorted(want[ref.loc[want, "i"] > 5])
    # the same box in the storage CRS (filter-crs): exact against the source
    box = f"BBOX({X0 + 250},{Y0 + 250},{X0 + 1050},{Y0 + 650})"
    got = ids_of(client, "/collections/grid_points/items", filter=f"S_INTERSECTS(geometry,{box})",
                 **{"filter-crs": "http://www.opengis.net/def/crs/EPSG/0/25832"})
    assert sorted(got) == sorted(src.cx[X0 + 250:X0 + 1050, Y0 + 250:Y0 + 650].index)


def test_crs_part2(client: TestClient, toy_gpkg: Path) -> None:
    src = grid_source(toy_gpkg)
    utm = "http://www.opengis.net/def/crs/EPSG/0/25832"
    col = client.get("/collections/grid_points").json()
    assert col["storageCrs"] == utm and utm in col["crs"]
    assert col["crs"][0].endswith("/OGC/1.3/CRS84")
    r = client.get("/collections/grid_points/items", params={"crs": utm, "limit": 400})
    assert r.headers["content-crs"] == f"<{utm}>"
    got = {f["id"]: f["geometry"]["coordinates"] for f in r.json()["features"]}
    assert got == {k: [g.x, g.y] for k, g in src.geometry.items()}  # the stored values, exactly
    # EPSG:4326 in its axis order: latitude first
    f = client.get("/collections/grid_points/items/42",
                   params={"crs": "http://www.opengis.net/def/crs/EPSG/0/4326"}).json()
    lon, lat = lonlat(X0 + 200, Y0 + 100)
    np.testing.assert_allclose(f["geometry"]["coordinates"], [lat, lon], atol=2e-7)
    # bbox in the storage CRS: same features as geopandas on the source
    b = (X0 + 150, Y0 + 450, X0 + 520, Y0 + 1230)
    got_ids = ids_of(client, "/collections/grid_points/items", bbox=",".join(map(str, b)),
                     **{"bbox-crs": utm})
    assert sorted(got_ids) == sorted(src.cx[b[0]:b[2], b[1]:b[3]].index)
    assert len(got_ids) == 4 * 8


def test_sortby_and_properties(client: TestClient) -> None:
    fc = client.get("/collections/grid_points/items",
                    params={"sortby": "-i,+j", "limit": 3, "properties": "j,name"}).json()
    assert [f["id"] for f in fc["features"]] == [fid(19, 0), fid(19, 1), fid(19, 2)]
    assert fc["features"][0]["properties"] == {"j": 0, "name": f"Città {fid(19, 0) - 1}"}
    nxt = client.get(links(fc)["next"]["href"]).json()
    assert [f["id"] for f in nxt["features"]] == [fid(19, 3), fid(19, 4), fid(19, 5)]
    none = client.get("/collections/grid_points/items/5", params={"f": "json"}).json()
    assert none["properties"]["i"] == 0
    empty = client.get("/collections/grid_points/items", params={"properties": ""}).json()
    assert empty["features"][0]["properties"] == {}
    by_name = ids_of(client, "/collections/grid_points/items", sortby="name", filter='"i" = 0')
    assert by_name == sorted(by_name, key=lambda k: f"Città {k - 1}")


def test_html_pages_by_f_and_by_accept(client: TestClient) -> None:
    browser = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    for url in ("/", "/conformance", "/collections", "/collections/grid_points",
                "/collections/grid_points/items", "/collections/grid_points/items/42",
                "/collections/grid_points/queryables"):
        r = client.get(url, headers=browser)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), url
        assert r.text.startswith("<!doctype html>") and "<h1>" in r.text, url
        assert client.get(url, params={"f": "html"}).text == r.text, url
        assert client.get(url).headers["content-type"].startswith("application/"), url
    page = client.get("/collections/grid_points/items?f=html&limit=5&i=2").text
    assert "Features 1–5 of 20" in page and "i=2" in page and "Città 41" in page


def test_gzip_cors_head(client: TestClient) -> None:
    r = client.get("/collections/grid_points/items?limit=400",
                   headers={"accept-encoding": "gzip"})
    assert r.headers["content-encoding"] == "gzip" and len(r.json()["features"]) == 400
    r = client.get("/collections", headers={"origin": "https://mappe.example.it"})
    assert r.headers["access-control-allow-origin"] == "*"
    pre = client.options("/collections/grid_points/items", headers={
        "origin": "https://mappe.example.it", "access-control-request-method": "GET"})
    assert pre.status_code == 200
    h = client.head("/collections/grid_points/items?limit=3")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["content-type"] == "application/geo+json"
    assert client.head("/collections/nessuna").status_code == 404


def test_conformance_declares_what_is_served(client: TestClient) -> None:
    conf = set(client.get("/conformance").json()["conformsTo"])
    for c in ("ogcapi-features-2/1.0/conf/crs", "ogcapi-features-3/1.0/conf/filter",
              "ogcapi-features-3/1.0/conf/queryables", "cql2/1.0/conf/cql2-text",
              "cql2/1.0/conf/cql2-json", "ogcapi-features-1/1.0/conf/html"):
        assert f"http://www.opengis.net/spec/{c}" in conf
    # not claimed: temporal operators (pygeofilter's geopandas backend has none)
    assert not any("temporal-functions" in c for c in conf)
    r = client.get("/collections/parcels/items", params={"filter-lang": "cql2-json", "filter":
        json.dumps({"op": "t_after", "args": [{"property": "when"},
                                               {"timestamp": "2024-01-01T00:00:00Z"}]})})
    assert r.status_code == 400 and "temporal" in r.json()["detail"]


def test_cold_page_from_the_store_equals_the_loaded_page(toy_gpkg: Path) -> None:
    """The first request after start is answered from the GeoPackage while the layer loads in
    the background; the page is the same as once it is loaded."""
    reg = CollectionRegistry(gpkg=toy_gpkg)
    c = TestClient(create_app(reg, routers=None))
    url = "/collections/grid_points/items?limit=7&offset=390"
    assert reg.loaded("grid_points") is None or True  # starts the background load
    cold = reg.cold_page("grid_points", 390, 7)
    assert list(cold.ids) == [str(k) for k in range(391, 398)]
    first = c.get(url).json()
    reg.data("grid_points")  # loaded now
    assert reg.loaded("grid_points") is not None
    warm = c.get(url).json()
    for fc in (first, warm):
        fc.pop("timeStamp")
    assert first == warm
    assert first["numberMatched"] == N * N and len(first["features"]) == 7
    assert "next" in links(first) and links(first)["prev"]["href"].endswith("offset=383")


def test_vector_tiles_known_answer(client: TestClient, toy_gpkg: Path) -> None:
    morecantile = need("morecantile")
    mvt = need("mapbox_vector_tile")
    tms = morecantile.tms.get("WebMercatorQuad")
    lon, lat = lonlat(X0 + 1000, Y0 + 1000)  # middle of the grid
    z = 16  # a tile of ~400 m: part of the grid falls in it
    t = tms.tile(lon, lat, z)
    w, s_, e, n = tms.bounds(t)
    src = grid_source(toy_gpkg).to_crs("OGC:CRS84")
    inside = src.index[(src.geometry.x >= w) & (src.geometry.x <= e) & (src.geometry.y >= s_)
                       & (src.geometry.y <= n)]
    assert 0 < len(inside) < N * N
    r = client.get(f"/collections/grid_points/tiles/WebMercatorQuad/{z}/{t.y}/{t.x}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    layer = mvt.decode(r.content)["grid_points"]
    got = {f["id"]: f for f in layer["features"]}
    # the tile also carries the points of its 64/4096 buffer: every point inside is there
    assert set(inside) <= set(got)
    pad = (e - w) * 64 / 4096 * 1.01
    near = src.index[(src.geometry.x >= w - pad) & (src.geometry.x <= e + pad)
                     & (src.geometry.y >= s_ - pad) & (src.geometry.y <= n + pad)]
    assert set(got) <= set(near)
    k = inside[0]
    assert got[k]["properties"] == {"i": int(src.loc[k, "i"]), "j": int(src.loc[k, "j"]),
                                    "name": src.loc[k, "name"]}
    # position: the tile's integer grid (4096 a side, y up) within 1 unit of the exact point
    x_m, y_m = pyproj.Transformer.from_crs(CRS, "EPSG:3857", always_xy=True).transform(
        X0 + STEP * src.loc[k, "i"], Y0 + STEP * src.loc[k, "j"])
    xmin, ymin, xmax, ymax = tms.xy_bounds(t)
    gx, gy = got[k]["geometry"]["coordinates"]
    assert abs(gx - (x_m - xmin) / (xmax - xmin) * 4096) <= 1
    assert abs(gy - (y_m - ymin) / (ymax - ymin) * 4096) <= 1
    # metadata, an empty tile far away, and a tile outside the matrix
    ts = client.get("/collections/grid_points/tiles/WebMercatorQuad").json()
    item = next(x for x in ts["links"] if x["rel"] == "item")
    assert item["href"].endswith("/{tileMatrix}/{tileRow}/{tileCol}") and ts["minzoom"] == 0
    assert client.get("/collections/grid_points/tiles").json()["tilesets"][0]["dataType"] == \
        "vector"
    assert client.get("/tileMatrixSets/WebMercatorQuad").json()["id"] == "WebMercatorQuad"
    empty = client.get(f"/collections/grid_points/tiles/WebMercatorQuad/{z}/0/0")
    assert mvt.decode(empty.content).get("grid_points", {"features": []})["features"] == []
    assert client.get("/collections/grid_points/tiles/WebMercatorQuad/2/4/0").status_code == 404
    assert client.get("/collections/grid_points/tiles/Nessuno/2/0/0").status_code == 404
    conf = client.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt" in conf


# --------------------------------------------------------------------------- datetime


@pytest.mark.parametrize(("value", "codes"), [
    ("2024-03-01", ["P2"]),                                     # a date is its whole day
    ("2024-01-15T10:00:00Z", ["P1"]),                           # an exact instant
    ("2024-07-01T01:00:00+02:00", ["P3"]),                      # offsets converted to UTC
    ("2024-01-01T00:00:00Z/2024-03-01T00:00:00Z", ["P1", "P2"]),  # closed interval
    ("../2024-02-01", ["P1"]),
    ("2024-02-01/..", ["P2", "P3"]),
    ("2024-02-01/", ["P2", "P3"]),
    ("../..", ["P1", "P2", "P3"]),                               # undated P4 never matches
    ("2025-01-01", []),
])
def test_datetime_filter(client: TestClient, value: str, codes: list[str]) -> None:
    r = client.get("/collections/parcels/items", params={"datetime": value})
    assert r.status_code == 200, r.text
    fc = r.json()
    assert [f["properties"]["code"] for f in fc["features"]] == codes
    assert fc["numberMatched"] == len(codes)
    if codes:
        assert qs(links(fc)["self"]["href"])["datetime"] == value


def test_datetime_ignored_without_date_field(client: TestClient) -> None:
    fc = client.get("/collections/grid_points/items?datetime=2024-01-01").json()
    assert fc["numberMatched"] == N * N


def test_registered_collection_with_string_ids_and_dates(toy_gpkg: Path) -> None:
    reg = CollectionRegistry(gpkg=toy_gpkg)
    frame = gpd.GeoDataFrame(
        {"title": ["Piano A", "Piano B"], "date": ["2024-05-01", "2024-05-02"]},
        geometry=[shapely.box(X0, Y0, X0 + 50, Y0 + 50), shapely.box(X0, Y0, X0 + 20, Y0 + 20)],
        index=pd.Index(["a1", "b2"]), crs=CRS)
    reg.add(Collection(id="piani", title="Piani", provider=lambda: frame,
                       attribution="Comune di prova", datetime_field="date"))
    c = TestClient(create_app(reg, routers=None))
    assert "piani" in [x["id"] for x in c.get("/collections").json()["collections"]]
    meta = c.get("/collections/piani").json()
    assert meta["itemCount"] == 2 and meta["geometryType"] == "Polygon"
    assert meta["extent"]["temporal"]["interval"] == [["2024-05-01T00:00:00Z",
                                                       "2024-05-02T00:00:00Z"]]
    fc = c.get("/collections/piani/items?datetime=2024-05-01T12:00:00Z").json()
    assert [f["id"] for f in fc["features"]] == ["a1"]  # a date covers its day
    f = c.get("/collections/piani/items/b2").json()
    assert f["properties"] == {"title": "Piano B", "date": "2024-05-02"}
    ring = np.array(f["geometry"]["coordinates"][0])
    x, y = TO84.transform([X0, X0 + 20], [Y0, Y0 + 20])
    np.testing.assert_allclose(ring.min(axis=0), [min(x), min(y)], atol=2e-5)
    assert c.get("/collections/piani/items/zz").status_code == 404


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("url", "status", "words"), [
    ("/collections/nessuna", 404, ["nessuna", "grid_points"]),
    ("/collections/nessuna/items", 404, ["nessuna"]),
    ("/collections/grid_points/items/401", 404, ["401", "grid_points"]),
    ("/collections/grid_points/items/abc", 404, ["abc"]),
    ("/collections/grid_points/items?bbox=1,2,3", 400, ["bbox", "4 or 6"]),
    ("/collections/grid_points/items?bbox=a,b,c,d", 400, ["bbox", "numbers"]),
    ("/collections/grid_points/items?bbox=1,2,nan,4", 400, ["bbox", "finite"]),
    ("/collections/grid_points/items?bbox=1,95,2,96", 400, ["bbox", "latitude"]),
    ("/collections/grid_points/items?bbox=1,50,2,40", 400, ["bbox", "latitude"]),
    ("/collections/grid_points/items?limit=0", 400, ["limit", "1"]),
    ("/collections/grid_points/items?limit=10001", 400, ["limit", "10000"]),
    ("/collections/grid_points/items?limit=tanti", 400, ["limit", "integer"]),
    ("/collections/grid_points/items?crs=EPSG:3003", 400, ["crs", "25832"]),
    ("/collections/grid_points/items?bbox-crs=EPSG:25832", 400, ["bbox-crs"]),
    ("/collections/grid_points/items?filter=i%20%3E", 400, ["filter", "cql2-text"]),
    ("/collections/grid_points/items?filter=colour%3D1", 400, ["colour", "queryables"]),
    ("/collections/grid_points/items?filter=name%20%3E%203", 400, ["filter", "evaluated"]),
    ("/collections/grid_points/items?filter=%7B&filter-lang=cql2-json", 400, ["cql2-json"]),
    ("/collections/grid_points/items?sortby=colour", 400, ["sortby", "colour"]),
    ("/collections/grid_points/items?properties=i,colour", 400, ["properties", "colour"]),
    ("/collections/grid_points/items?i=uno", 400, ["i", "integer"]),
    ("/collections/grid_points/items?offset=-1", 400, ["offset"]),
    ("/collections/grid_points/items?datetime=ieri", 400, ["datetime", "RFC 3339"]),
    ("/collections/grid_points/items?datetime=2024-05-02/2024-05-01", 400, ["before"]),
    ("/collections/grid_points/items?datetime=2024-13-01", 400, ["datetime"]),
    ("/collections/grid_points/items?colour=red", 400, ["colour"]),
    ("/collections/grid_points/items?limit=1&limit=2", 400, ["limit", "more than once"]),
    ("/collections/grid_points/items?f=xml", 400, ["f", "geojson"]),
    ("/collections?f=xml", 400, ["f", "html"]),
])
def test_bad_input(client: TestClient, url: str, status: int, words: list[str]) -> None:
    r = client.get(url)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == status
    for w in words:
        assert w in body["detail"], (w, body["detail"])


def test_missing_layer_set_is_503_with_reason(tmp_path: Path) -> None:
    c = TestClient(create_app(CollectionRegistry(gpkg=tmp_path / "assente.gpkg"), routers=None))
    assert c.get("/").status_code == 200
    r = c.get("/collections")
    assert r.status_code == 503
    assert "pattogis data build" in r.json()["detail"]


# --------------------------------------------------------------------------- cache


def test_cache_reused_then_invalidated_when_the_gpkg_changes(toy_gpkg: Path,
                                                             tmp_path: Path) -> None:
    path = tmp_path / "copy.gpkg"
    shutil.copy(toy_gpkg, path)
    reg = CollectionRegistry(gpkg=path)
    c = TestClient(create_app(reg, routers=None))
    assert c.get("/collections/grid_points/items").json()["numberMatched"] == N * N
    first = reg.data("grid_points")
    assert reg.data("grid_points") is first  # served from memory while the file is unchanged
    extra = gpd.GeoDataFrame({"i": [99], "j": [99], "name": ["nuovo"]},
                             geometry=[shapely.Point(X0 - 500, Y0 - 500)], crs=CRS)
    pyogrio.write_dataframe(extra, path, layer="grid_points", append=True)
    fc = c.get("/collections/grid_points/items?offset=400").json()
    assert fc["numberMatched"] == N * N + 1
    assert fc["features"][0]["properties"]["name"] == "nuovo"
    assert c.get("/collections/grid_points").json()["itemCount"] == N * N + 1
    assert reg.data("grid_points") is not first


# --------------------------------------------------------------------------- error mapping


class _Body(BaseModel):
    n: int


def _error_app(max_body: int = 100) -> TestClient:
    from pattogis.store import ConflictError, Unauthenticated

    errors = {
        "bad": BadRequest("bbox is wrong", field="bbox"),
        "input": InputError("area must be positive", file="p.geojson", rows=[3], field="area"),
        "conflict": ConflictError("proposal withdrawn"),
        "unauth": Unauthenticated("missing API key"),
        "perm": PermissionDenied("comune:037006 cannot write 037011"),
        "notfound": NotFound("no such proposal"),
        "infeasible": InfeasibleError("budget below the cheapest project"),
        "missing": MissingDataError("layer set not built: run `pattogis data build`"),
        "config": ConfigError("law.yaml lacks quota"),
    }
    app = FastAPI()
    install(app, max_body_bytes=max_body)

    @app.get("/raise/{kind}")
    def raise_(kind: str) -> None:
        raise errors[kind]

    @app.post("/body")
    def body(b: _Body) -> dict[str, int]:
        return {"n": b.n}

    return TestClient(app)


@pytest.mark.parametrize(("kind", "status"), [
    ("bad", 400), ("input", 422), ("conflict", 409), ("unauth", 401), ("perm", 403),
    ("notfound", 404), ("infeasible", 422), ("missing", 503), ("config", 500),
])
def test_error_mapping(kind: str, status: int) -> None:
    r = _error_app().get(f"/raise/{kind}")
    assert r.status_code == status
    assert r.json()["status"] == status and r.json()["detail"]


def test_input_error_carries_where() -> None:
    body = _error_app().get("/raise/input").json()
    assert (body["file"], body["rows"], body["field"]) == ("p.geojson", [3], "area")
    assert "row 3" in body["detail"] and "area" in body["detail"]
    assert "build" in _error_app().get("/raise/missing").json()["detail"]


def test_bodies_malformed_invalid_and_too_large() -> None:
    c = _error_app(max_body=100)
    assert c.post("/body", json={"n": 1}).json() == {"n": 1}
    r = c.post("/body", content=b'{"n": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed" in r.json()["detail"]
    r = c.post("/body", json={"n": "uno"})
    assert r.status_code == 422 and "n" in r.json()["detail"]
    r = c.post("/body", content=b"x" * 101, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "100 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: caught while streaming
        for _ in range(10):
            yield b"{" * 30

    r = c.post("/body", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_router_factories_are_pluggable(toy_gpkg: Path) -> None:
    from fastapi import APIRouter

    from api.app import AppContext, optional_router

    def extra(ctx: AppContext) -> APIRouter:
        r = APIRouter()

        @r.get("/extra")
        def _e() -> dict[str, int]:
            return {"collections": len(ctx.registry.ids())}

        return r

    reg = CollectionRegistry(gpkg=toy_gpkg)
    missing = optional_router("api.non_esiste", "router")
    c = TestClient(create_app(reg, routers=[extra, missing]))
    assert c.get("/extra").json() == {"collections": 3}
    assert c.get("/collections").status_code == 404  # features router not in this list


# --------------------------------------------------------------------------- real layer set


@contextlib.contextmanager
def uvicorn_server(env: dict[str, str]) -> Iterator[str]:
    """A real uvicorn serving api.app:app in a subprocess (GDAL holds the GIL while reading, so
    a server thread in this process would deadlock), on a socket bound here to a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:app", "--fd", str(sock.fileno()),
         "--log-level", "warning"],
        pass_fds=[sock.fileno()], cwd=REPO, env={**os.environ, **env})
    sock.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/conformance", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start (exit code {proc.poll()})")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _same_values(got: pd.Series, ref: pd.Series, name: str) -> None:
    if pd.api.types.is_numeric_dtype(ref) or pd.api.types.is_bool_dtype(ref):
        np.testing.assert_allclose(got.astype(float), ref.astype(float), rtol=1e-9,
                                   equal_nan=True, err_msg=name)
    else:
        def norm(s: pd.Series) -> list[str | None]:
            return [None if pd.isna(v) else str(v) for v in s]

        assert norm(got) == norm(ref), name


@pytest.fixture(scope="module")
def server(built_layers: Path) -> Iterator[str]:
    """uvicorn serving the real layer set, warm."""
    env = {"PATTOGIS_LAYERS_DIR": str(built_layers), "PATTOGIS_API_WARM": "1"}
    with uvicorn_server(env) as url:
        yield url


def test_gdal_oapif_round_trip_every_collection(built_layers: Path, server: str) -> None:
    gpkg = built_layers / "bologna.gpkg"
    names = [str(n) for n, t in pyogrio.list_layers(gpkg) if t is not None]
    url = server
    src = f"OAPIF:{url}/"
    served = [str(n) for n, _ in pyogrio.list_layers(src)]
    assert set(names) <= set(served)
    # Collections registered by other modules (analysis results): GDAL reads them whole
    # and gets the count the server announces.
    for name in sorted(set(served) - set(names)):
        meta = httpx.get(f"{url}/collections/{name}", timeout=120).json()
        if meta["itemCount"] <= 10_000:
            got = pyogrio.read_dataframe(src, layer=name)
            assert len(got) == meta["itemCount"], name
    for name in names:
        n = pyogrio.read_info(gpkg, layer=name)["features"]
        assert pyogrio.read_info(src, layer=name)["features"] == n, name  # numberMatched
        if n > 10_000:
            continue  # checked through a bbox below: large layers are paged, never dumped
        # GDAL's default options: the field types come from the schema the server links,
        # not from a guess on the first page (which made 64-bit ids 32-bit)
        got = pyogrio.read_dataframe(src, layer=name, fid_as_index=True)
        ref = pyogrio.read_dataframe(gpkg, layer=name, fid_as_index=True)
        # GDAL >= 3.7 asks for the advertised storageCrs (the stored coordinates, exact);
        # older GDAL gets CRS84 rounded to 1e-7 degrees
        geographic = pyproj.CRS(got.crs).is_geographic
        if geographic:
            ref = ref.to_crs("OGC:CRS84")
        assert len(got) == n, name
        assert sorted(got.index) == sorted(ref.index), name
        got = got.loc[ref.index]
        for col in ref.columns.drop(ref.geometry.name):
            if pd.api.types.is_integer_dtype(ref[col]):  # exact, not through floats
                assert pd.api.types.is_integer_dtype(got[col]), f"{name}.{col}"
                assert (got[col].to_numpy() == ref[col].to_numpy()).all(), f"{name}.{col}"
            _same_values(got[col], ref[col], f"{name}.{col}")
        g, r = np.asarray(got.geometry.values), np.asarray(ref.geometry.values)
        assert (shapely.get_type_id(g) == shapely.get_type_id(r)).all(), name
        assert (shapely.get_num_coordinates(g) == shapely.get_num_coordinates(r)).all(), name
        # same vertices in the same order, to the 1e-7 degrees the server rounds to (or
        # exactly, in the storage CRS)
        np.testing.assert_allclose(shapely.get_coordinates(g), shapely.get_coordinates(r),
                                   atol=6e-8 if geographic else 1e-9, rtol=0, err_msg=name)

    # buildings: a bbox of ~2 x 2 km, paged by GDAL at 100 a page, against an independent
    # selection (GeoPackage read, intersected with the box by shapely).
    box = (11.30, 44.60, 11.33, 44.62)
    utm = pyproj.Transformer.from_crs("OGC:CRS84", CRS, always_xy=True)
    wide = utm.transform_bounds(*box, densify_pts=21)
    ref = pyogrio.read_dataframe(gpkg, layer="buildings", bbox=tuple(
        v + s * 50 for v, s in zip(wide, (-1, -1, 1, 1), strict=True)), fid_as_index=True)
    if not pyproj.CRS(pyogrio.read_info(src, layer="buildings")["crs"]).is_geographic:
        # GDAL in the storage CRS sends bbox with bbox-crs: the answer is exact
        got = pyogrio.read_dataframe(src, layer="buildings", bbox=wide, fid_as_index=True,
                                     PAGE_SIZE=100)
        assert 0 < len(got) < 10_000
        assert sorted(got.index) == sorted(ref.index[ref.intersects(shapely.box(*wide))])
        return
    got = pyogrio.read_dataframe(src, layer="buildings", bbox=box, fid_as_index=True,
                                 PAGE_SIZE=100)
    ref = ref.to_crs("OGC:CRS84")
    # distance in degrees on purpose: compared with the 1e-7 degree rounding of the server
    dist = pd.Series(shapely.distance(np.asarray(ref.geometry.values), shapely.box(*box)),
                     index=ref.index)
    assert 0 < len(got) < 10_000
    assert set(ref.index[dist == 0]) <= set(got.index)
    # Served coordinates are rounded to 1e-7 degrees: a building ending 5 mm short of the
    # box edge may touch it. Nothing farther than that may come back.
    assert dist.loc[sorted(set(got.index))].max() <= 1e-7


def test_ogr2ogr_keeps_64_bit_ids(server: str, tmp_path: Path) -> None:
    """The command a QGIS/GDAL user runs, with GDAL's own defaults (the issue's repro)."""
    ogr2ogr = shutil.which("ogr2ogr")
    if ogr2ogr is None:
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail("ogr2ogr missing: .ci/run installs gdal-bin")
        pytest.skip("ogr2ogr (gdal-bin) not installed")
    out = tmp_path / "x.gpkg"
    subprocess.run([ogr2ogr, "-f", "GPKG", str(out), f"OAPIF:{server}/", "roads_nodes"],
                   check=True, capture_output=True, timeout=300)
    got = pyogrio.read_dataframe(out, read_geometry=False)
    assert int(got["osmid"].max()) == 12_947_446_731


def test_owslib_reads_queryables(server: str) -> None:
    features = need("owslib.ogcapi.features").Features(server)
    q = features.collection_queryables("roads_nodes")
    assert q["properties"]["osmid"]["type"] == "integer"
    assert q["properties"]["osmid"]["format"] == "int64"
    items = features.collection_items("comuni", istat="037006", limit=5)
    assert [f["properties"]["name"] for f in items["features"]] == ["Bologna"]


@pytest.fixture(scope="module")
def real_app(built_layers: Path, tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The full app on the real layer set, with a throwaway proposals store and keys file."""
    from pattogis.store import open_store

    tmp = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATTOGIS_API_KEYS", str(tmp / "keys.json"))
        return create_app(CollectionRegistry(gpkg=built_layers / "bologna.gpkg"),
                          get_store=lambda: open_store(tmp / "proposals.gpkg"))


def test_real_cql2_and_crs_match_geopandas(real_app: FastAPI, built_layers: Path) -> None:
    c = TestClient(real_app)
    src = pyogrio.read_dataframe(built_layers / "bologna.gpkg", layer="buildings",
                                 fid_as_index=True)
    want = src.index[(src["area_m2"] > 3000) & (src["comune_istat"] == "037032")]
    r = c.get("/collections/buildings/items", params={
        "filter": "area_m2 > 3000 AND comune_istat = '037032'", "limit": 10_000})
    assert r.status_code == 200, r.text
    fc = r.json()
    assert 0 < fc["numberMatched"] == len(want) <= 10_000
    assert sorted(f["id"] for f in fc["features"]) == sorted(want)
    # a box in EPSG:25832, answered in EPSG:25832: the stored coordinates of the same features
    b = pyproj.Transformer.from_crs("OGC:CRS84", CRS, always_xy=True).transform_bounds(
        11.30, 44.60, 11.33, 44.62)
    utm = "http://www.opengis.net/def/crs/EPSG/0/25832"
    fc = c.get("/collections/buildings/items", params={
        "bbox": ",".join(map(str, b)), "bbox-crs": utm, "crs": utm, "limit": 10_000}).json()
    ref = src[src.intersects(shapely.box(*b))]
    assert 0 < len(ref) == fc["numberMatched"] < 10_000
    got = gpd.GeoDataFrame.from_features(fc["features"], crs=CRS)
    got.index = [f["id"] for f in fc["features"]]
    assert sorted(got.index) == sorted(ref.index)
    assert shapely.equals_exact(np.asarray(got.loc[ref.index].geometry.values),
                                np.asarray(ref.geometry.values), tolerance=1e-9).all()


def test_big_layer_pages_and_bbox(real_app: FastAPI) -> None:
    c = TestClient(real_app)
    fc = c.get("/collections/buildings/items?limit=10000&offset=220000").json()
    assert fc["numberMatched"] > 200_000 and fc["numberReturned"] == fc["numberMatched"] - 220_000
    assert c.get("/collections/buildings/items?limit=10001").status_code == 400
    assert len(c.get("/collections/buildings/items").json()["features"]) == 100


schemathesis = need("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def api_schema(real_app: FastAPI):  # noqa: ANN201 - schemathesis schema type
    # Every check runs. One setting: a request valid by the schema may still be refused with
    # 412/422/428 for what a schema cannot say (a polygon outside the metropolitan area, a
    # profile whose weights do not add up, a stale If-Match), so positive_data_acceptance
    # counts those as the documented refusals they are.
    config = schemathesis.config.SchemathesisConfig.from_str(
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "428"]\n'
        # OGC API Features answers 400 to a bbox whose positions are out of range
        # (longitude, latitude), which a schema for a comma-separated list cannot express
        "[[operations]]\n"
        'include-path-regex = "^/collections/[^/]+/items$"\n'
        "[operations.checks.positive_data_acceptance]\n"
        'expected-statuses = ["2xx", "400", "401", "403", "404", "409", "412", "422", "428"]\n')
    return schemathesis.openapi.from_asgi("/openapi.json", real_app, config=config)


lazy_schema = schemathesis.pytest.from_fixture("api_schema")


@lazy_schema.parametrize()
@lazy_schema.given(data=st.data())
@settings(max_examples=int(os.environ.get("PATTOGIS_SCHEMATHESIS_EXAMPLES", "40")), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_schemathesis_no_server_errors(case, data, built_layers: Path) -> None:  # noqa: ANN001
    # Half the time aim the generated request at a real collection and feature, so the checks
    # exercise the data paths, not only the 404s of random ids.
    if "collectionId" in (case.path_parameters or {}) and data.draw(st.booleans()):
        names = [str(n) for n, t in pyogrio.list_layers(built_layers / "bologna.gpkg") if t]
        case.path_parameters["collectionId"] = data.draw(st.sampled_from(names))
        if "featureId" in case.path_parameters:
            case.path_parameters["featureId"] = str(data.draw(st.integers(0, 300_000)))
        # (only in cases generated as valid: a negative case must stay negative for the
        # negative_data_rejection check)
        negative = case.meta is not None and case.meta.generation.mode.is_negative
        if case.operation.path.endswith("/items") and not negative:
            # valid parameters too, so that paging, bbox and datetime code runs on real data
            q: dict[str, object] = {"limit": data.draw(st.integers(1, 10_000)),
                                    "offset": data.draw(st.integers(0, 250_000))}
            if data.draw(st.booleans()):
                lon = data.draw(st.floats(10.5, 12.0))
                lat = data.draw(st.floats(44.0, 45.0))
                size = data.draw(st.floats(0.0, 0.5))
                q["bbox"] = f"{lon},{lat},{lon + size},{lat + size}"
            if data.draw(st.booleans()):
                q["datetime"] = data.draw(st.sampled_from(
                    ["2024-05-01", "../2030-01-01T00:00:00Z", "2020-01-01/..", "../.."]))
            case.query = q
    # every check schemathesis has (status codes, media types, bodies, headers, Allow, auth,
    # positive and negative data...), on every operation
    case.call_and_validate()
