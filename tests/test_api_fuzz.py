"""No 5xx from any body: hypothesis generates GeoJSON bodies (valid and broken geometries, crs
members of every shape, ids and property values of every JSON type, NaN and infinities) and sends
them to POST, PUT and PATCH /proposals; every answer must be a documented 2xx or 4xx.

The number of cases is ``$PATTOGIS_FUZZ_EXAMPLES`` per operation (default 300); the counts of
the run are printed (pytest -s) and kept in ``COUNTS``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import geopandas as gpd
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pattogis import config
from pattogis.store import open_store

try:  # tests/ is on sys.path under pytest's default import mode
    from pg_fixture import pg_cluster  # noqa: F401
    from test_api_proposals import Env
    from test_store import COMUNI, ORIGIN, square
except ImportError:  # pragma: no cover - when tests/ is a package
    from tests.pg_fixture import pg_cluster  # noqa: F401
    from tests.test_api_proposals import Env
    from tests.test_store import COMUNI, ORIGIN, square

N = int(os.environ.get("PATTOGIS_FUZZ_EXAMPLES", "300"))
DOCUMENTED = {200, 201, 400, 401, 403, 404, 409, 412, 413, 415, 422, 428}
COUNTS: Counter[str] = Counter()
FUZZ = settings(max_examples=N, deadline=None, derandomize=True,
                suppress_health_check=list(HealthCheck))

LAW = config.law()
junk = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=8)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**30, 10**30)


def _geo(g: shapely.Geometry) -> dict:
    return json.loads(shapely.to_geojson(g))


@st.composite
def good_polygon(draw: st.DrawFn) -> tuple[dict, str | None]:
    """A square in a comune, in EPSG:25832 (with a crs member) or in lon/lat (without)."""
    c = draw(st.sampled_from(sorted(ORIGIN)))
    g = square(c, draw(st.floats(0.5, 3000)), draw(st.floats(-2000, 9000)), draw(st.floats(-2000, 9000)))
    if draw(st.booleans()):
        return _geo(g), "urn:ogc:def:crs:EPSG::25832"
    return _geo(gpd.GeoSeries([g], crs=25832).to_crs(4326).iloc[0]), None


ring = st.lists(st.lists(numbers | junk, min_size=0, max_size=4), min_size=0, max_size=6)
bad_geometry = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["Polygon", "MultiPolygon", "Point",
                                                    "LineString", "GeometryCollection", "Nope"]),
                           "coordinates": st.lists(ring, max_size=3) | junk}),
    st.fixed_dictionaries({"type": st.just("Polygon"), "coordinates": st.just(
        [[[0, 0], [1e308, 0], [1e308, 1e308], [0, 0]]])}),
    junk,
)
crs_member = st.one_of(
    st.text(max_size=30), st.integers(), junk,
    st.fixed_dictionaries({"type": st.just("name"), "properties": junk}),
    st.fixed_dictionaries({"type": st.just("name"), "properties": st.fixed_dictionaries({
        "name": st.one_of(st.text(max_size=40), st.integers(), junk,
                          st.integers(0, 1_000_000).map(lambda n: f"EPSG:{n}"),
                          st.integers(0, 1_000_000).map(lambda n: f"urn:ogc:def:crs:EPSG::{n}"),
                          st.sampled_from(["urn:ogc:def:crs:EPSG::25832", "EPSG:4326",
                                           "EPSG:3857", "OGC:CRS84", "EPSG:4978", "EPSG:5773",
                                           "+proj=longlat +over"]))})}),
)
ids = st.one_of(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", fullmatch=True),
                st.text(max_size=80), st.sampled_from([0, 1, True, False, "", "../etc/passwd",
                                                       "a" * 65, "CAS-EXP-01"]),
                st.floats(allow_nan=True, allow_infinity=True), junk)


def value(good: list[str]) -> st.SearchStrategy:
    return st.one_of(st.sampled_from(good), st.text(max_size=40), st.text(min_size=190, max_size=260),
                     numbers, st.booleans(), st.none(), junk)


props = st.fixed_dictionaries({}, optional={
    "proposal_id": ids,
    "scenario": value(["base", "PUG 2026"]),
    "ptype": value(list(LAW["proposal_types"])),
    "pool": value(list(LAW["pools"])),
    "exemption": value(list(LAW["exemptions"])),
    "status": value(["bozza", "presentata", "approvata", "ritirata"]),
    "title": value(["nuovo comparto"]),
    "date": value(["2025-03-01", "2025-13-45", "ieri"]),
    "comune_istat": value(sorted(ORIGIN)),
    "owner": value(["metro"]),
    "version": numbers | junk,
})


@st.composite
def feature(draw: st.DrawFn) -> tuple[dict, str | None]:
    # hypothesis leans to 0 when it draws integers: 0 is the common, well-formed case
    if draw(st.integers(0, 3)) != 3:
        geom, crs = draw(good_polygon())
    else:
        geom, crs = draw(bad_geometry), None
    # half the time a valid set of properties with some values drawn over it
    base = ({"ptype": "nuova_urbanizzazione", "pool": "locale", "scenario": "base",
             "title": "comparto"} if not draw(st.booleans()) else {})
    f = {"type": draw(st.sampled_from(["Feature"] * 6 + ["feature", "Point"])), "geometry": geom,
         "properties": base | draw(props) if draw(st.integers(0, 6)) != 6 else draw(junk)}
    return f, crs


@st.composite
def body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["collection", "feature", "collection", "geometry", "junk"]))
    if kind == "junk":
        obj = draw(junk)
    elif kind == "geometry":
        obj, crs = draw(good_polygon())
    else:
        feats = draw(st.lists(feature(), min_size=0 if kind == "collection" else 1,
                              max_size=3 if kind == "collection" else 1))
        crs = feats[0][1] if feats else None
        obj = ({"type": "FeatureCollection", "features": [f for f, _ in feats]}
               if kind == "collection" else feats[0][0])
        if crs:
            obj["crs"] = {"type": "name", "properties": {"name": crs}}
    if isinstance(obj, dict) and draw(st.integers(0, 4)) == 4:
        obj["crs"] = draw(crs_member)
    return json.dumps(obj, allow_nan=True).encode()


query_crs = st.one_of(st.none(), st.sampled_from(["EPSG:25832", "EPSG:4326", "nope", "EPSG:0",
                                                  "EPSG:4978"]), st.text(max_size=20))


@pytest.fixture(scope="module", params=["gpkg", pytest.param("postgis", marks=pytest.mark.postgis)])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Env:
    tmp = tmp_path_factory.mktemp("fuzz")
    if request.param == "gpkg":
        s = open_store(tmp / "p.gpkg", comuni=COMUNI)
    else:  # the same bodies against PostGIS (text with NUL, huge numbers...)
        s = open_store(request.getfixturevalue("pg_cluster").new_database(), comuni=COMUNI)
    e = Env(s, tmp / "keys.json")
    r = e.client.post("/proposals", json={"type": "Feature", "geometry": _geo(square("037006", 50.0)),
                                          "crs": {"type": "name", "properties": {"name": "EPSG:25832"}},
                                          "properties": {"ptype": "nuova_urbanizzazione",
                                                         "proposal_id": "FUZZ-1"}},
                      headers=e.h("metro"))
    assert r.status_code == 201, r.text
    COUNTS.clear()
    yield e
    s.close()
    print(f"\nfuzz counts ({request.param}): {dict(sorted(COUNTS.items()))}")


def _check(op: str, r) -> None:  # noqa: ANN001
    COUNTS[f"{op} cases"] += 1
    COUNTS[f"{op} {r.status_code // 100}xx"] += 1
    COUNTS[f"{op} {r.status_code}"] += 1
    assert r.status_code < 500, r.text
    assert r.status_code in DOCUMENTED, (r.status_code, r.text)
    if r.status_code >= 400:
        assert r.json()["detail"]


@FUZZ
@given(data=body(), body_crs=query_crs, media=st.sampled_from(["application/geo+json",
                                                               "application/json"]))
def test_post_never_5xx(env: Env, data: bytes, body_crs: str | None, media: str) -> None:
    params = {"body_crs": body_crs} if body_crs is not None else {}
    r = env.client.post("/proposals", content=data, params=params,
                        headers=env.h("metro") | {"Content-Type": media})
    _check("POST", r)


@FUZZ
@given(data=body(), pid=st.one_of(st.just("FUZZ-1"), ids.map(str).filter(bool)), star=st.booleans(),
       crs=query_crs, patch=st.booleans())
def test_put_and_patch_never_5xx(env: Env, data: bytes, pid: str, star: bool, crs: str | None,
                                 patch: bool) -> None:
    h = env.h("metro") | {"Content-Type": "application/json"}
    h["If-Match"] = "*" if star else env.client.get("/proposals/FUZZ-1", headers=h).headers["etag"]
    params = {"crs": crs} if crs is not None else {}
    url = f"/proposals/{quote(pid, safe='')}"
    r = (env.client.patch if patch else env.client.put)(url, content=data, params=params, headers=h)
    _check("PATCH" if patch else "PUT", r)


def test_counts_are_kept(env: Env) -> None:
    """Runs after the fuzz tests of this store: they did run, and none answered 5xx."""
    assert COUNTS["POST cases"] >= N and COUNTS["POST 5xx"] == 0
    assert COUNTS["PUT cases"] + COUNTS["PATCH cases"] >= N
    assert COUNTS["PUT 5xx"] == COUNTS["PATCH 5xx"] == 0
    assert COUNTS["POST 2xx"] > 0 and COUNTS["POST 4xx"] > 0  # both kinds were generated
    assert Path  # noqa: B018 - keep the import for tmp paths in type hints
