"""The on-disk feature store (pattogis/feature_store.py) and the API pages cut from it.

Known answers from the hand-made GeoPackage of test_api_features (a 20 x 20 grid of points 100 m
apart, four parcels, an empty layer): every page and bbox query answered from the store equals
the one answered from the loaded layer (the path without a store), feature by feature, and the
store is not used once the GeoPackage changes or a file of it is damaged.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import shapely
from test_api_features import GRID_ATTRIBUTION, STEP, X0, Y0, N, fid, lonlat, write_toy

from api.app import create_app
from pattogis import feature_store
from pattogis.collections import CollectionRegistry, encode_features

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2.*")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy GeoPackage with its feature store beside it."""
    gpkg = write_toy(tmp_path_factory.mktemp("stored") / "toy.gpkg")
    feature_store.write_stores(gpkg, encode_features, log=lambda s: None)
    return gpkg


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same GeoPackage without a store: served from the loaded layer."""
    return write_toy(tmp_path_factory.mktemp("bare") / "toy.gpkg")


def client(gpkg: Path) -> TestClient:
    return TestClient(create_app(CollectionRegistry(gpkg=gpkg), routers=None))


def test_the_store_holds_every_layer_with_its_features(stored: Path) -> None:
    stores = feature_store.open_stores(stored)
    assert set(stores) == {"grid_points", "parcels", "vuoto"}
    grid = stores["grid_points"]
    assert grid.count == N * N and stores["vuoto"].count == 0
    assert list(grid.fids[:3]) == [1, 2, 3]
    # feature fid(3, 5) is the point at column 3, row 5: its text and envelope say so
    at = grid.position(fid(3, 5))
    f = json.loads(grid.page(at, at + 1))
    assert f["id"] == fid(3, 5) and f["properties"] == {"i": 3, "j": 5, "name": "Città 65"}
    lon, lat = lonlat(X0 + 3 * STEP, Y0 + 5 * STEP)
    assert f["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-7)
    assert list(grid.bounds[at]) == pytest.approx([lon, lat, lon, lat], abs=1e-7)
    assert grid.position(0) is None and grid.position(N * N + 1) is None
    # a page is the features' texts joined by commas: JSON once wrapped in brackets
    page = json.loads(b"[" + grid.page(395, 410) + b"]")
    assert [x["id"] for x in page] == [396, 397, 398, 399, 400]
    assert stores["vuoto"].page(0, 10) == b"" and grid.page(400, 500) == b""


def test_bbox_select_equals_the_loaded_layer(stored: Path) -> None:
    grid = feature_store.open_stores(stored)["grid_points"]
    parcels = feature_store.open_stores(stored)["parcels"]
    reg = CollectionRegistry(gpkg=stored)
    loaded, loaded_p = reg.data("grid_points"), reg.data("parcels")
    rng = np.random.default_rng(7)
    x0, y0, x1, y1 = loaded.bbox
    for _ in range(200):
        cx, cy = rng.uniform(x0 - 0.005, x1), rng.uniform(y0 - 0.005, y1)
        w, h = rng.uniform(0, 0.01), rng.uniform(0, 0.01)
        box = (cx, cy, cx + w, cy + h)
        assert np.array_equal(grid.select(box), loaded.select(box)), box
        assert np.array_equal(parcels.select(box), loaded_p.select(box)), box
    # a thin box in the 5 m gap between parcels 1 and 2 meets neither
    lon1, lat1 = lonlat(X0 + 5.1, Y0 + 1)
    assert list(parcels.select((lon1, lat1, lonlat(X0 + 9.9, Y0 + 2)[0], lat1 + 1e-6))) == []
    # crossing the antimeridian: the two halves, and nothing here
    assert len(grid.select((179.0, -90.0, -179.0, 90.0))) == 0


def test_edge_features_are_tested_on_their_geometry(tmp_path: Path) -> None:
    # an L-shaped polygon whose envelope covers a box that misses the polygon itself
    import geopandas as gpd

    ell = shapely.Polygon([(0, 0), (100, 0), (100, 10), (10, 10), (10, 100), (0, 100)])
    gdf = gpd.GeoDataFrame({"k": [1]}, geometry=[shapely.affinity.translate(ell, X0, Y0)],
                           crs="EPSG:25832")
    gpkg = tmp_path / "ell.gpkg"
    pyogrio.write_dataframe(gdf, gpkg, layer="ell")
    feature_store.write_stores(gpkg, encode_features, log=lambda s: None)
    s = feature_store.open_stores(gpkg)["ell"]
    a, b = lonlat(X0 + 50, Y0 + 50), lonlat(X0 + 60, Y0 + 60)
    assert list(s.select((*a, *b))) == []  # inside the envelope, outside the L
    c, d = lonlat(X0 + 50, Y0 + 5), lonlat(X0 + 60, Y0 + 60)
    assert list(s.select((*c, *d))) == [0]  # reaches the L's foot
    assert list(CollectionRegistry(gpkg=gpkg).data("ell").select((*a, *b))) == []


@pytest.mark.parametrize("query", [
    "limit=10", "limit=7&offset=390", "limit=100&offset=395", "offset=400", "limit=1&offset=0",
    "bbox={b}", "bbox={b}&limit=3&offset=2", "bbox={b}&bbox-crs=http://www.opengis.net/def/crs/OGC/1.3/CRS84",
    "limit=5&f=json",
])
def test_api_pages_from_the_store_equal_those_from_the_loaded_layer(
        stored: Path, bare: Path, query: str) -> None:
    lon0, lat0 = lonlat(X0 + 250, Y0 + 350)
    lon1, lat1 = lonlat(X0 + 750, Y0 + 950)
    q = query.format(b=f"{lon0},{lat0},{lon1},{lat1}")
    for layer in ("grid_points", "parcels", "vuoto"):
        a = client(stored).get(f"/collections/{layer}/items?{q}")
        b = client(bare).get(f"/collections/{layer}/items?{q}")
        assert a.status_code == b.status_code == 200, (a.text, b.text)
        ja, jb = a.json(), b.json()
        for doc in (ja, jb):
            doc.pop("timeStamp")
        assert ja == jb, (layer, q)
        assert a.headers["content-crs"] == b.headers["content-crs"]
    # the store answered: nothing of the layer was loaded to serve these pages
    reg = CollectionRegistry(gpkg=stored)
    r = TestClient(create_app(reg, routers=None)).get(f"/collections/grid_points/items?{q}")
    assert r.status_code == 200 and reg.store("grid_points") is not None
    entry = reg._entries.get("grid_points")
    assert entry is None or entry.data is None
    if query.startswith("bbox"):  # columns 3-7 x rows 4-9 of the grid, 50 m inside the box
        assert ja["numberMatched"] == 0  # the empty layer, asked last
        assert client(stored).get(f"/collections/grid_points/items?{q}").json()[
            "numberMatched"] == 30


def test_api_one_feature_from_the_store(stored: Path, bare: Path) -> None:
    for path in (f"/collections/grid_points/items/{fid(3, 5)}", "/collections/parcels/items/2"):
        a, b = client(stored).get(path), client(bare).get(path)
        assert a.status_code == b.status_code == 200
        assert a.json() == b.json()
        assert a.json()["attribution"] in (GRID_ATTRIBUTION, "Particelle di prova")
    for bad in ("0", "401", "007", "1.0", "abc", "-1"):
        a = client(stored).get(f"/collections/grid_points/items/{bad}")
        assert a.status_code == client(bare).get(
            f"/collections/grid_points/items/{bad}").status_code == 404, bad
    assert client(stored).get("/collections/grid_points/items?limit=0").status_code == 400
    assert client(stored).get("/collections/grid_points/items?bbox=1,2,3").status_code == 400
    assert client(stored).get("/collections/grid_points/items?bbox-crs=x").status_code == 400


def test_a_changed_or_damaged_store_is_not_used(stored: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(stored.parent, folder)
    gpkg = folder / stored.name
    assert set(feature_store.open_stores(gpkg)) == {"grid_points", "parcels", "vuoto"}
    # copying changes file times, not the content: the store stays valid (stamp from the
    # SQLite header and size); a write to the GeoPackage makes it stale
    import geopandas as gpd

    extra = gpd.GeoDataFrame({"i": [99], "j": [99], "name": ["nuovo"]},
                             geometry=[shapely.Point(X0, Y0)], crs="EPSG:25832")
    pyogrio.write_dataframe(extra, gpkg, layer="grid_points", append=True)
    assert feature_store.open_stores(gpkg) == {}
    r = client(gpkg).get("/collections/grid_points/items?limit=1&offset=400")
    assert r.json()["numberMatched"] == N * N + 1  # from the GeoPackage, not the stale store
    assert r.json()["features"][0]["properties"]["name"] == "nuovo"
    # a features file cut short: not used
    folder2 = tmp_path / "cut"
    shutil.copytree(stored.parent, folder2)
    f = folder2 / "features" / "grid_points.features"
    f.write_bytes(f.read_bytes()[:-10])
    assert feature_store.open_stores(folder2 / stored.name) == {}
    assert client(folder2 / stored.name).get(
        "/collections/grid_points/items?limit=1&offset=399").json()["features"][0]["id"] == 400


def test_tiles_from_the_store_equal_those_of_the_loaded_layer(stored: Path, bare: Path) -> None:
    import mapbox_vector_tile
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    lon, lat = lonlat(X0 + 1000, Y0 + 1000)
    seen = 0
    for z in (12, 15, 17):
        t = tms.tile(lon, lat, z)
        for layer in ("grid_points", "parcels"):
            url = f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{t.y}/{t.x}"
            a, b = client(stored).get(url), client(bare).get(url)
            assert a.status_code == b.status_code == 200
            da = mapbox_vector_tile.decode(a.content)
            db = mapbox_vector_tile.decode(b.content)
            fa = sorted(da.get(layer, {"features": []})["features"], key=lambda f: f["id"])
            fb = sorted(db.get(layer, {"features": []})["features"], key=lambda f: f["id"])
            assert [f["id"] for f in fa] == [f["id"] for f in fb]
            assert [f["properties"] for f in fa] == [f["properties"] for f in fb]
            for x, y in zip(fa, fb, strict=True):  # CRS84 rounded to 1 cm vs EPSG:25832
                ca = np.array(x["geometry"]["coordinates"], dtype=float).ravel()
                cb = np.array(y["geometry"]["coordinates"], dtype=float).ravel()
                assert np.abs(ca - cb).max() <= 1
            seen += len(fa)
    assert seen > 400  # the whole grid at zoom 12, a part of it closer
    reg = CollectionRegistry(gpkg=stored)
    TestClient(create_app(reg, routers=None)).get(
        f"/collections/grid_points/tiles/WebMercatorQuad/15/{t.y}/{t.x}")
    entry = reg._entries.get("grid_points")
    assert entry is None or entry.data is None  # tiles read from the store, no layer loaded


@pytest.mark.parametrize("query", [
    "limit=0", "limit=abc", "limit=%2B5", "limit=10001", "offset=-1", "limit=5&limit=6",
    "foo=1", "f=xml", "bbox=1,2,3", "bbox-crs=x", "f=html",
])
def test_the_fast_lane_leaves_what_it_does_not_answer_to_the_app(
        stored: Path, bare: Path, query: str) -> None:
    # the same status and error (or HTML page) with and without a store
    a = client(stored).get(f"/collections/grid_points/items?{query}")
    b = client(bare).get(f"/collections/grid_points/items?{query}")
    assert a.status_code == b.status_code, (query, a.text, b.text)
    assert a.headers["content-type"] == b.headers["content-type"]
    if a.status_code >= 400:
        assert a.json() == b.json()
    assert client(stored).get("/collections/nope/items?limit=1").status_code == 404


def test_fast_lane_pages_get_gzip_cors_and_head(stored: Path) -> None:
    c = client(stored)
    url = "/collections/grid_points/items?limit=400"
    full = c.get(url, headers={"Accept-Encoding": "gzip", "Origin": "https://example.org"})
    assert full.headers["content-encoding"] == "gzip" and len(full.json()["features"]) == 400
    assert full.headers["access-control-allow-origin"] in ("*", "https://example.org")
    head = c.head(url, headers={"Accept-Encoding": "identity"})
    assert head.status_code == 200 and head.content == b""
    plain = c.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert head.headers["content-length"] == plain.headers["content-length"]
    assert plain.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"


@pytest.mark.parametrize("query", [
    "filter=%22i%22%20%3C%203%20AND%20%22j%22%20%3E%2015&limit=5&offset=2", "sortby=-j,i&limit=7",
    "j=4&limit=3", "filter=%22i%22%20%3D%202&sortby=-j",
])
def test_filtered_and_sorted_pages_take_their_texts_from_the_store(
        stored: Path, bare: Path, query: str) -> None:
    reg = CollectionRegistry(gpkg=stored)
    a = TestClient(create_app(reg, routers=None)).get(f"/collections/grid_points/items?{query}")
    b = client(bare).get(f"/collections/grid_points/items?{query}")
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    ja, jb = a.json(), b.json()
    ja.pop("timeStamp"), jb.pop("timeStamp")
    assert ja == jb and ja["numberReturned"] > 0
    # the layer was loaded for the filter, but no feature text was made and kept
    assert reg._entries["grid_points"].data is not None
    assert all(t is None for t in reg._entries["grid_points"].data.features)
