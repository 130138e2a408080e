"""The proposals API over HTTP: keys and roles, GeoJSON and file uploads, bad input, audit, and
50 parallel clients against a real uvicorn server — on the GeoPackage and PostGIS stores."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import httpx
import pytest
import shapely
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import install, status_of
from api.proposals import proposals_router
from pattogis.errors import (
    ConflictError,
    InputError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    PreconditionRequired,
    Unauthenticated,
)
from pattogis.store import create_key, open_store

try:  # tests/ is on sys.path under pytest's default import mode
    from pg_fixture import pg_cluster, postgis_url  # noqa: F401
    from test_store import COMUNI, ORIGIN, UA, UB, square
except ImportError:  # pragma: no cover - when tests/ is a package
    from tests.pg_fixture import pg_cluster, postgis_url  # noqa: F401
    from tests.test_store import COMUNI, ORIGIN, UA, UB, square

URN = "urn:ogc:def:crs:EPSG::25832"
ROLES = ("metro", f"unione:{UA}", f"unione:{UB}", "comune:037001", "comune:037006")


def feat(geom: shapely.Geometry, **props: object) -> dict:
    return {"type": "Feature", "geometry": json.loads(shapely.to_geojson(geom)), "properties": props}


def fc(*features: dict, crs: str | None = URN) -> dict:
    out: dict = {"type": "FeatureCollection", "features": list(features)}
    if crs:
        out["crs"] = {"type": "name", "properties": {"name": crs}}
    return out


def base_props(**kw: object) -> dict:
    return {"scenario": "base", "ptype": "nuova_urbanizzazione", "pool": "locale",
            "title": "nuovo comparto", "date": "2025-03-01"} | kw


class Env:
    """A store, a keys file with one key per role, and an app serving the router."""

    def __init__(self, store, keys_path: Path, max_body: int | None = -1) -> None:
        self.store = store
        self.keys = {r: create_key(r, path=keys_path) for r in ROLES}
        self.app = FastAPI()
        install(self.app, max_body_bytes=max_body)  # the app's one error handler and body limit
        self.app.include_router(proposals_router(lambda: store, keys=keys_path))
        self.client = TestClient(self.app)

    def h(self, role: str, pid: str | None = None) -> dict[str, str]:
        """The role's key; with ``pid`` also If-Match with the proposal's current ETag."""
        out = {"X-API-Key": self.keys[role]}
        if pid is not None:
            got = self.client.get(f"/proposals/{pid}", headers={"X-API-Key": self.keys["metro"]})
            out["If-Match"] = got.headers["etag"]
        return out

    def count(self) -> int:
        return len(self.store.list(role="metro"))


@pytest.fixture(params=["gpkg", pytest.param("postgis", marks=pytest.mark.postgis)])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    target = tmp_path / "p.gpkg" if request.param == "gpkg" else request.getfixturevalue("postgis_url")
    s = open_store(target, comuni=COMUNI)
    yield s
    s.close()


@pytest.fixture
def env(store, tmp_path: Path) -> Env:
    return Env(store, tmp_path / "keys.json")


def post_one(env: Env, role: str, comune: str, side: float = 100.0, **kw: object) -> dict:
    r = env.client.post("/proposals", json=fc(feat(square(comune, side), **base_props(**kw))), headers=env.h(role))
    assert r.status_code == 201, r.text
    return r.json()["features"][0]


# --- create and read -------------------------------------------------------------------------


def test_post_geojson_in_utm(env: Env) -> None:
    r = env.client.post("/proposals", json=fc(feat(square("037001", 120.0), **base_props())),
                        headers=env.h(f"unione:{UA}"))
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/geo+json"
    body = r.json()
    assert "crs" not in body  # answers are CRS84 (RFC 7946) unless a CRS is asked for
    f = body["features"][0]
    pid = f["id"]
    x, y = shapely.geometry.shape(f["geometry"]).centroid.coords[0]
    assert 10.5 < x < 12.0 and 44.0 < y < 45.0
    assert f["properties"]["proposal_id"] == pid and f["properties"]["version"] == 1
    # the comune comes from the geometry (pattogis.proposals), the owner from the key
    assert f["properties"]["comune_istat"] == "037001" and f["properties"]["owner"] == f"unione:{UA}"
    got = env.client.get(f"/proposals/{pid}", params={"crs": "EPSG:25832"},
                         headers=env.h("comune:037001"))
    assert got.headers["etag"] == '"1"'
    assert shapely.geometry.shape(got.json()["geometry"]).area == pytest.approx(14_400.0)
    assert got.json()["crs"]["properties"]["name"] == URN


def test_post_geojson_in_wgs84(env: Env) -> None:
    lonlat = gpd.GeoSeries([square("037006", 200.0)], crs="EPSG:25832").to_crs(4326).iloc[0]
    r = env.client.post("/proposals", json=fc(feat(lonlat, **base_props()), crs=None),
                        headers=env.h("comune:037006"))
    assert r.status_code == 201, r.text
    g = env.store.get(r.json()["features"][0]["id"], role="metro").geometry.iloc[0]
    assert g.area == pytest.approx(40_000.0, rel=1e-6)
    out = env.client.get("/proposals", params={"crs": "EPSG:4326"}, headers=env.h("metro")).json()
    assert "crs" not in out  # RFC 7946 WGS84
    x, y = shapely.geometry.shape(out["features"][0]["geometry"]).centroid.coords[0]
    assert 11.0 < x < 11.5 and 44.3 < y < 44.7


def test_keys_are_required(env: Env) -> None:
    r = env.client.post("/proposals", json=fc(feat(square("037001", 10.0), **base_props())))
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"] and env.count() == 0
    assert r.headers["www-authenticate"].startswith("ApiKey")
    assert env.client.get("/proposals", headers={"X-API-Key": "ptg_nope"}).status_code == 401
    # reading needs no key: the public sees the public proposals (none yet)
    r = env.client.get("/proposals")
    assert r.status_code == 200 and r.json()["features"] == []


def test_reads_are_scoped(env: Env) -> None:
    a = post_one(env, "metro", "037001")["id"]
    b = post_one(env, "metro", "037002")["id"]
    c = post_one(env, "metro", "037006")["id"]
    ids = lambda role, **p: [f["id"] for f in env.client.get("/proposals", params=p, headers=env.h(role)).json()["features"]]  # noqa: E731
    assert ids("metro") == [a, b, c]
    assert ids(f"unione:{UA}") == [a]
    assert ids("comune:037006") == [c]
    assert ids("metro", comune=["037001", "037006"]) == [a, c]
    # a draft of another Unione is not there for UA, as an unknown id
    assert env.client.get(f"/proposals/{b}", headers=env.h(f"unione:{UA}")).status_code == 404
    assert env.client.get(f"/proposals/{b}").status_code == 404
    assert env.client.get(f"/proposals/{'0' * 32}", headers=env.h("metro")).status_code == 404
    # bbox in lon/lat around comune 037006's proposal only
    x, y = ORIGIN["037006"]
    box = gpd.GeoSeries([shapely.box(x + 10, y + 10, x + 20, y + 20)], crs="EPSG:25832").to_crs(4326).total_bounds
    assert ids("metro", bbox=",".join(map(str, box)), bbox_crs="EPSG:4326") == [c]
    assert ids("metro", bbox=",".join(map(str, box))) == [c]  # CRS84 by default
    assert ids("metro", bbox=f"{x + 10},{y + 10},{x + 20},{y + 20}", bbox_crs="EPSG:25832") == [c]
    assert env.client.get("/proposals", params={"bbox": "1,2,3"}, headers=env.h("metro")).status_code == 422


def test_upload_geopackage_and_zipped_shapefile(env: Env, tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame([base_props(title="da file")], geometry=[square("037002", 50.0)], crs="EPSG:25832")
    gdf.to_file(tmp_path / "up.gpkg", layer="proposals")
    with open(tmp_path / "up.gpkg", "rb") as f:
        r = env.client.post("/proposals", files={"file": ("up.gpkg", f.read(), "application/geopackage+sqlite3")},
                            headers=env.h(f"unione:{UB}"))
    assert r.status_code == 201, r.text
    assert r.json()["features"][0]["properties"]["title"] == "da file"
    (tmp_path / "shp").mkdir()
    gdf.to_file(tmp_path / "shp" / "up.shp")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in (tmp_path / "shp").iterdir():
            z.write(p, p.name)
    r = env.client.post("/proposals", files={"file": ("up.zip", buf.getvalue(), "application/zip")},
                        headers=env.h(f"unione:{UB}"))
    assert r.status_code == 201, r.text
    areas = env.store.list(role="metro").geometry.area
    assert list(areas) == pytest.approx([2500.0, 2500.0])
    r = env.client.post("/proposals", files={"file": ("up.txt", b"hello", "text/plain")}, headers=env.h("metro"))
    assert r.status_code == 422 and ".txt" in r.json()["detail"]
    r = env.client.post("/proposals", files={"other": ("up.gpkg", b"x", "x")}, headers=env.h("metro"))
    assert r.status_code == 422 and "'file'" in r.json()["detail"]
    assert env.count() == 2


def test_proposal_across_comuni_is_split(env: Env) -> None:
    x, y = ORIGIN["037002"]
    across = shapely.box(x - 1_100, y, x - 900, y + 100)  # 100 m in 037001, 100 m in 037002
    body = fc(feat(across, **base_props()))
    r = env.client.post("/proposals", json=body, headers=env.h(f"unione:{UA}"))
    assert r.status_code == 403 and env.count() == 0  # half of it is in another Unione
    r = env.client.post("/proposals", params={"crs": "EPSG:25832"}, json=body, headers=env.h("metro"))
    assert r.status_code == 201, r.text
    feats = r.json()["features"]
    assert sorted(f["properties"]["comune_istat"] for f in feats) == ["037001", "037002"]
    assert len({f["id"] for f in feats}) == 2
    assert [shapely.geometry.shape(f["geometry"]).area for f in feats] == pytest.approx([10_000.0, 10_000.0])


# --- edit, withdraw, audit -------------------------------------------------------------------


def test_put_changes_what_is_sent_and_keeps_the_rest(env: Env) -> None:
    f = post_one(env, "comune:037001", "037001", scenario="PUG 2026", exemption="opere_pubbliche")
    pid = f["id"]
    r = env.client.put(f"/proposals/{pid}", json=fc(feat(square("037001", 300.0), title="ampliato")),
                       headers=env.h(f"unione:{UA}", pid))
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == '"2"'
    p = r.json()["properties"]
    assert (p["title"], p["scenario"], p["exemption"], p["owner"], p["version"]) == (
        "ampliato", "PUG 2026", "opere_pubbliche", "comune:037001", 2)
    got = env.client.get(f"/proposals/{pid}", params={"crs": "EPSG:25832"}, headers=env.h("metro"))
    assert shapely.geometry.shape(got.json()["geometry"]).area == pytest.approx(90_000.0)
    # a Feature read from the API (CRS84) can be edited and sent back with its ETag
    got = env.client.get(f"/proposals/{pid}", headers=env.h("metro"))
    body = got.json()
    body["properties"]["status"] = "presentata"
    r = env.client.put(f"/proposals/{pid}", json=body,
                       headers=env.h("comune:037001") | {"If-Match": got.headers["etag"]})
    assert r.status_code == 200, r.text
    assert r.json()["properties"]["status"] == "presentata"
    audit = env.client.get(f"/proposals/{pid}/audit", params={"crs": "EPSG:25832"},
                           headers=env.h("comune:037001")).json()
    assert audit["crs"] == "EPSG:25832"
    assert [e["action"] for e in audit["entries"]] == ["create", "update", "update"]
    assert [e["role"] for e in audit["entries"]] == ["comune:037001", f"unione:{UA}", "comune:037001"]
    e = audit["entries"][1]
    assert e["before"]["properties"]["title"] == "nuovo comparto"
    assert e["after"]["properties"]["title"] == "ampliato"
    assert shapely.geometry.shape(e["before"]["geometry"]).area == pytest.approx(10_000.0)
    assert shapely.geometry.shape(e["after"]["geometry"]).area == pytest.approx(90_000.0)
    lonlat = env.client.get(f"/proposals/{pid}/audit", headers=env.h("metro")).json()
    assert lonlat["crs"] == "OGC:CRS84"
    x, _ = shapely.geometry.shape(lonlat["entries"][0]["after"]["geometry"]).centroid.coords[0]
    assert 10.5 < x < 12.0


def test_patch_is_a_merge_patch(env: Env) -> None:
    pid = post_one(env, "comune:037006", "037006", exemption="opere_pubbliche")["id"]
    r = env.client.patch(f"/proposals/{pid}", json={"properties": {"exemption": None, "title": "b"}},
                         headers=env.h("comune:037006", pid) | {"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    p = r.json()["properties"]
    assert (p["exemption"], p["title"], p["ptype"], p["version"]) == (None, "b", "nuova_urbanizzazione", 2)
    lonlat = gpd.GeoSeries([square("037006", 50.0)], crs="EPSG:25832").to_crs(4326).iloc[0]
    r = env.client.patch(f"/proposals/{pid}", json={"geometry": json.loads(shapely.to_geojson(lonlat))},
                         headers=env.h("comune:037006", pid))
    assert r.status_code == 200, r.text
    assert env.store.get(pid, role="metro").geometry.iloc[0].area == pytest.approx(2_500.0, rel=1e-6)
    r = env.client.patch(f"/proposals/{pid}", json={"properties": {"owner": "metro"}},
                         headers=env.h("comune:037006", pid))
    assert r.status_code == 422 and "owner" in r.json()["detail"]


def test_if_match_is_required_and_checked(env: Env) -> None:
    pid = post_one(env, "metro", "037001")["id"]
    body = fc(feat(square("037001", 30.0), title="x"))
    r = env.client.put(f"/proposals/{pid}", json=body, headers=env.h("metro"))
    assert r.status_code == 428 and "If-Match" in r.json()["detail"]
    assert env.client.post(f"/proposals/{pid}/withdraw", headers=env.h("metro")).status_code == 428
    assert env.client.patch(f"/proposals/{pid}", json={"properties": {"title": "y"}},
                            headers=env.h("metro")).status_code == 428
    for stale in ('"7"', '"bogus"', 'W/"0"'):
        r = env.client.put(f"/proposals/{pid}", json=body, headers=env.h("metro") | {"If-Match": stale})
        assert r.status_code == 412, (stale, r.text)
    assert env.store.get(pid, role="metro")["version"].iloc[0] == 1  # nothing changed
    r = env.client.put(f"/proposals/{pid}", json=body, headers=env.h("metro") | {"If-Match": '"1"'})
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    r = env.client.put(f"/proposals/{pid}", json=body | {"features": [feat(square("037001", 31.0))]},
                       headers=env.h("metro") | {"If-Match": '"1"'})
    assert r.status_code == 412 and "version 2" in r.json()["detail"]


def test_other_unione_cannot_edit_and_nothing_changes(env: Env) -> None:
    pid = post_one(env, f"unione:{UA}", "037001")["id"]
    before = env.client.get(f"/proposals/{pid}", headers=env.h("metro")).json()
    trail = env.client.get(f"/proposals/{pid}/audit", headers=env.h("metro")).json()
    r = env.client.put(f"/proposals/{pid}", json=fc(feat(square("037001", 10.0), title="mia")),
                       headers=env.h(f"unione:{UB}", pid))
    assert r.status_code == 404  # UA's draft is not there for UB
    r = env.client.post(f"/proposals/{pid}/withdraw", headers=env.h(f"unione:{UB}", pid))
    assert r.status_code == 404
    assert env.client.get(f"/proposals/{pid}/audit", headers=env.h(f"unione:{UB}")).status_code == 404
    # submitted: UB reads it, still cannot write it or read its trail
    r = env.client.patch(f"/proposals/{pid}", json={"properties": {"status": "presentata"}},
                         headers=env.h(f"unione:{UA}", pid))
    assert r.status_code == 200, r.text
    before = env.client.get(f"/proposals/{pid}", headers=env.h("metro")).json()
    trail = env.client.get(f"/proposals/{pid}/audit", headers=env.h("metro")).json()
    assert env.client.get(f"/proposals/{pid}").json() == before  # public now
    r = env.client.put(f"/proposals/{pid}", json=fc(feat(square("037001", 10.0), title="mia")),
                       headers=env.h(f"unione:{UB}", pid))
    assert r.status_code == 403
    assert env.client.post(f"/proposals/{pid}/withdraw", headers=env.h(f"unione:{UB}", pid)).status_code == 403
    assert env.client.get(f"/proposals/{pid}/audit", headers=env.h(f"unione:{UB}")).status_code == 403
    assert env.client.get(f"/proposals/{pid}", headers=env.h("metro")).json() == before
    assert env.client.get(f"/proposals/{pid}/audit", headers=env.h("metro")).json() == trail


def test_only_metro_approves_over_http(env: Env) -> None:
    pid = post_one(env, "comune:037006", "037006", status="presentata")["id"]
    r = env.client.patch(f"/proposals/{pid}", json={"properties": {"status": "approvata"}},
                         headers=env.h("comune:037006", pid))
    assert r.status_code == 403 and "metro" in r.json()["detail"]
    r = env.client.patch(f"/proposals/{pid}", json={"properties": {"status": "approvata"}},
                         headers=env.h("metro", pid))
    assert r.status_code == 200 and r.json()["properties"]["status"] == "approvata"
    r = env.client.post(f"/proposals/{pid}/withdraw", headers=env.h("comune:037006", pid))
    assert r.status_code == 403


def test_withdraw_keeps_the_proposal(env: Env) -> None:
    pid = post_one(env, "comune:037006", "037006")["id"]
    r = env.client.post(f"/proposals/{pid}/withdraw", json={"note": "rinuncia"},
                        headers=env.h("comune:037006", pid))
    assert r.status_code == 200 and r.json()["properties"]["status"] == "ritirata"
    got = env.client.get(f"/proposals/{pid}", headers=env.h("comune:037006"))
    assert got.status_code == 200 and got.json()["properties"]["status"] == "ritirata"
    assert env.client.post(f"/proposals/{pid}/withdraw", headers=env.h("metro", pid)).status_code == 409
    r = env.client.put(f"/proposals/{pid}", json=fc(feat(square("037006", 10.0))), headers=env.h("metro", pid))
    assert r.status_code == 409
    r = env.client.post(f"/proposals/{pid}/withdraw", json={"note": "x" * 1001},
                        headers=env.h("metro", pid))
    assert r.status_code == 422 and "note" in r.json()["detail"]
    entries = env.client.get(f"/proposals/{pid}/audit", headers=env.h("metro")).json()["entries"]
    assert [(e["action"], e["note"]) for e in entries] == [("create", None), ("withdraw", "rinuncia")]


def test_put_errors(env: Env) -> None:
    pid = post_one(env, "metro", "037001")["id"]
    r = env.client.put(f"/proposals/{'0' * 32}", json=fc(feat(square("037001", 10.0))),
                       headers=env.h("metro") | {"If-Match": '"1"'})
    assert r.status_code == 404
    body = fc(feat(square("037001", 10.0), proposal_id="f" * 32))
    r = env.client.put(f"/proposals/{pid}", json=body, headers=env.h("metro", pid))
    assert r.status_code == 422 and "differs" in r.json()["detail"]
    two = fc(feat(square("037001", 10.0)), feat(square("037001", 20.0)))
    assert env.client.put(f"/proposals/{pid}", json=two, headers=env.h("metro", pid)).status_code == 422
    # moving it into another comune: the comune follows the geometry, the role must own both
    r = env.client.put(f"/proposals/{pid}", json=fc(feat(square("037002", 10.0))),
                       headers=env.h(f"unione:{UA}", pid))
    assert r.status_code == 403
    assert len(env.client.get(f"/proposals/{pid}/audit", headers=env.h("metro")).json()["entries"]) == 1


def test_cli_ids_work_through_the_api(env: Env) -> None:
    r = env.client.post("/proposals", json=fc(feat(square("037001", 40.0), **base_props(
        proposal_id="CAS-EXP-01"))), headers=env.h("metro"))
    assert r.status_code == 201, r.text
    assert r.json()["features"][0]["id"] == "CAS-EXP-01"
    r = env.client.patch("/proposals/CAS-EXP-01", json={"properties": {"title": "ok"}},
                         headers=env.h("metro", "CAS-EXP-01"))
    assert r.status_code == 200 and r.json()["id"] == "CAS-EXP-01"
    assert env.client.get("/proposals/..%2Fetc", headers=env.h("metro")).status_code in (400, 404)


def test_paging_and_unknown_parameters(env: Env) -> None:
    ids = [post_one(env, "metro", "037001", side=10.0 + i)["id"] for i in range(5)]
    h = env.h("metro")
    page = env.client.get("/proposals", params={"limit": 2, "offset": 1}, headers=h).json()
    assert [f["id"] for f in page["features"]] == ids[1:3]
    assert (page["numberMatched"], page["numberReturned"]) == (5, 2)
    nxt = [ln["href"] for ln in page["links"] if ln["rel"] == "next"][0]
    assert [f["id"] for f in env.client.get(nxt, headers=h).json()["features"]] == ids[3:5]
    assert env.client.get("/proposals", params={"limit": 0}, headers=h).status_code == 400
    r = env.client.get("/proposals", params={"comunne": "037001"}, headers=h)
    assert r.status_code == 400 and "comunne" in r.json()["detail"]
    assert env.client.get(f"/proposals/{ids[0]}", params={"x": 1}, headers=h).status_code == 400


# --- bad input -------------------------------------------------------------------------------

X, Y = ORIGIN["037001"]
LON, LAT = 11.27, 44.45


BAD_BODIES = {
    "malformed-json": (b'{"type": "FeatureCollection", "features": [', "malformed GeoJSON"),
    "not-geojson": (json.dumps({"type": "Topology"}).encode(), "not a Feature"),
    "bowtie": (json.dumps(fc(feat(shapely.Polygon([(X, Y), (X + 100, Y + 100), (X + 100, Y), (X, Y + 100), (X, Y)]),
                                  **base_props()))).encode(), "invalid geometry"),
    "empty-geometry": (json.dumps(fc({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": []},
                                      "properties": base_props()})).encode(), "empty geometry"),
    # metres without a crs member are read as degrees: refused, saying to declare the CRS
    "missing-crs": (json.dumps(fc(feat(square("037001", 100.0), **base_props()), crs=None)).encode(),
                    "declare the CRS"),
    # [lat, lon] instead of [lon, lat]
    "swapped": (json.dumps(fc(feat(shapely.box(LAT, LON, LAT + 0.001, LON + 0.001), **base_props()),
                              crs=None)).encode(), "swapped"),
    "bad-ptype": (json.dumps(fc(feat(square("037001", 100.0), **base_props(ptype="cemento")))).encode(), "ptype"),
    "bad-date": (json.dumps(fc(feat(square("037001", 100.0), **base_props(date="ieri")))).encode(), "date"),
    "partly-outside": (json.dumps(fc(feat(shapely.box(679_990, 4_921_000, 680_100, 4_921_100),
                                          **base_props()))).encode(), "outside the metropolitan area"),
    "outside": (json.dumps(fc(feat(shapely.box(0, 0, 10, 10), **base_props()))).encode(), "outside"),
    "empty-body": (b"", "empty body"),
    # the 500s of issue 14: crs members and ids of the wrong kind
    "crs-string": (json.dumps(fc(feat(square("037001", 100.0), **base_props())) | {"crs": "EPSG:25832"}).encode(),
                   "'crs' member"),
    "crs-unknown-epsg": (json.dumps(fc(feat(square("037001", 100.0), **base_props()),
                                       crs="urn:ogc:def:crs:EPSG::999999")).encode(), "unknown CRS"),
    "crs-properties-list": (json.dumps(fc(feat(square("037001", 100.0), **base_props())) | {
        "crs": {"type": "name", "properties": ["EPSG:25832"]}}).encode(), "'crs' member"),
    "id-zero": (json.dumps(fc(feat(square("037001", 100.0), **base_props(proposal_id=0)))).encode(),
                "must be text"),
    "id-true": (json.dumps(fc(feat(square("037001", 100.0), **base_props(proposal_id=True)))).encode(),
                "must be text"),
    "id-nan": (b'{"type": "Feature", "crs": {"type": "name", "properties": {"name": "EPSG:25832"}}, '
               b'"geometry": {"type": "Polygon", "coordinates": [[[681000, 4921000], [681100, 4921000], '
               b'[681100, 4921100], [681000, 4921000]]]}, "properties": {"proposal_id": NaN, '
               b'"ptype": "nuova_urbanizzazione"}}', "NaN is not a JSON number"),
    "coordinates-nan": (b'{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": '
                        b'[[[11.2, 44.4], [NaN, 44.4], [11.3, 44.5], [11.2, 44.4]]]}, '
                        b'"properties": {"ptype": "nuova_urbanizzazione"}}', "NaN is not a JSON number"),
    "title-nul": (json.dumps(fc(feat(square("037001", 100.0), **base_props(title="a\x00b")))).encode(),
                  "NUL character"),
    "title-1mb": (json.dumps(fc(feat(square("037001", 100.0), **base_props(title="x" * 2**20)))).encode(),
                  "longer than 200"),
}
@pytest.mark.parametrize(("body", "reason"), [
    pytest.param(*v, id=k) for k, v in BAD_BODIES.items()
])
def test_bad_input_is_refused_with_the_reason(env: Env, body: bytes, reason: str) -> None:
    r = env.client.post("/proposals", content=body, headers=env.h("metro") | {"Content-Type": "application/geo+json"})
    assert r.status_code == 422, r.text
    assert reason in r.json()["detail"]
    assert env.count() == 0


def test_unsupported_media_type(env: Env) -> None:
    r = env.client.post("/proposals", content=b"a,b\n1,2", headers=env.h("metro") | {"Content-Type": "text/csv"})
    assert r.status_code == 415 and "text/csv" in r.json()["detail"]


def test_body_over_the_limit(store, tmp_path: Path) -> None:
    env = Env(store, tmp_path / "keys.json", max_body=2_000)
    small = fc(feat(square("037001", 10.0), **base_props()))
    assert env.client.post("/proposals", json=small, headers=env.h("metro")).status_code == 201
    big = fc(*[feat(square("037001", 10.0, dx=20.0 * i), **base_props()) for i in range(30)])
    r = env.client.post("/proposals", json=big, headers=env.h("metro"))
    assert r.status_code == 413 and "2000 bytes" in r.json()["detail"]
    # streamed without a Content-Length: counted while reading
    data = json.dumps(big).encode()
    r = env.client.post("/proposals", content=iter([data[:1500], data[1500:]]),
                        headers=env.h("metro") | {"Content-Type": "application/geo+json"})
    assert r.status_code == 413
    assert env.count() == 1


def test_one_error_map() -> None:
    """Every error carries its status; the app has one handler reading it."""
    assert status_of(InputError("x")) == 422
    assert status_of(ConflictError("x")) == 409
    assert status_of(PermissionDenied("x")) == 403
    assert status_of(Unauthenticated("x")) == 401
    assert status_of(NotFound("x")) == 404
    assert status_of(PreconditionFailed("x")) == 412
    assert status_of(PreconditionRequired("x")) == 428
    assert status_of(PayloadTooLarge("x")) == 413
    assert status_of(ValueError("x")) == 500
    import api.proposals as mod

    assert not hasattr(mod, "ERROR_STATUS")  # no second table


def test_openapi_declares_the_key(env: Env) -> None:
    spec = env.app.openapi()
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert {"/proposals", "/proposals/{proposal_id}", "/proposals/{proposal_id}/withdraw",
            "/proposals/{proposal_id}/audit"} <= set(spec["paths"])


# --- 50 parallel clients over real HTTP ------------------------------------------------------


def test_50_parallel_clients_over_http(env: Env) -> None:
    """50 clients POST at once to a real uvicorn server: every proposal is stored once, the
    count and the sum of the areas are right, and every one has its 'create' audit entry."""
    from live import serve

    comuni = list(ORIGIN)
    role = {"037001": f"unione:{UA}", "037002": f"unione:{UB}", "037006": "comune:037006"}
    start = threading.Barrier(50)

    def client(i: int) -> tuple[int, str]:
        c = comuni[i % 3]
        body = fc(feat(square(c, 10.0 + i, dx=(i // 3) * 100.0), **base_props(title=f"client {i}")))
        with httpx.Client(base_url=url, timeout=120) as h:
            start.wait()
            r = h.post("/proposals", json=body, headers=env.h(role[c]))
        return r.status_code, r.text

    with serve(env.app) as url:
        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(client, range(50)))
        assert [s for s, _ in results] == [201] * 50, [t for s, t in results if s != 201][:3]
        with httpx.Client(base_url=url, timeout=60) as h:
            listed = h.get("/proposals", params={"crs": "EPSG:25832"},
                           headers=env.h("metro")).json()["features"]
    assert len(listed) == 50 and len({f["id"] for f in listed}) == 50
    total = sum(shapely.geometry.shape(f["geometry"]).area for f in listed)
    assert total == pytest.approx(sum((10.0 + i) ** 2 for i in range(50)), abs=1e-6)
    assert sorted(f["properties"]["title"] for f in listed) == sorted(f"client {i}" for i in range(50))
    assert all(list(env.store.audit(f["id"], role="metro")["action"]) == ["create"] for f in listed[::7])
