"""The proposals store: roles, audit trail, withdraw, filters, concurrency — on both backends.

Every test that takes the ``store`` fixture runs on the GeoPackage backend and on PostGIS (a
throwaway cluster from pg_fixture; skipped with the reason when PostgreSQL is missing, failed
when CI=true). The comuni are hand-made squares in EPSG:25832 so that areas are known exactly.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import pytest
import shapely

from pattogis.errors import InputError, NotFound, PermissionDenied, PreconditionFailed
from pattogis.store import (
    ConflictError,
    KeyRing,
    Membership,
    Role,
    Unauthenticated,
    authenticate,
    create_key,
    list_keys,
    open_store,
    revoke_key,
)
from pattogis.store.gpkg import GpkgStore

try:  # tests/ is on sys.path under pytest's default import mode
    from pg_fixture import pg_cluster, postgis_url  # noqa: F401
except ImportError:  # pragma: no cover - when tests/ is a package
    from tests.pg_fixture import pg_cluster, postgis_url  # noqa: F401

CRS = "EPSG:25832"
UA = "Unione Terre d'Acqua"
UB = "Unione Reno Galliera"
# Three comuni, two Unioni, and one comune (Bologna) in no Unione: 10 km squares near Bologna.
COMUNI = gpd.GeoDataFrame(
    {"istat": ["037001", "037002", "037006"], "name": ["Alfa", "Beta", "Bologna"], "unione": [UA, UB, None]},
    geometry=[shapely.box(680_000, 4_920_000, 690_000, 4_930_000),
              shapely.box(690_000, 4_920_000, 700_000, 4_930_000),
              shapely.box(680_000, 4_930_000, 700_000, 4_940_000)],
    crs=CRS,
)
ORIGIN = {"037001": (681_000, 4_921_000), "037002": (691_000, 4_921_000), "037006": (681_000, 4_931_000)}
ROLE_OF = {"037001": f"unione:{UA}", "037002": f"unione:{UB}", "037006": "comune:037006"}


def square(comune: str, side: float, dx: float = 0.0, dy: float = 0.0) -> shapely.Polygon:
    x, y = ORIGIN[comune]
    return shapely.box(x + dx, y + dy, x + dx + side, y + dy + side)


def props(comune: str, **kw: object) -> dict:
    return {"scenario": "base", "comune_istat": comune, "ptype": "nuova_urbanizzazione",
            "pool": "locale", "title": f"area in {comune}", "date": "2025-03-01"} | kw


def one(comune: str, side: float = 100.0, geom: shapely.Geometry | None = None, **kw: object) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame([props(comune, **kw)], geometry=[square(comune, side) if geom is None else geom], crs=CRS)


@pytest.fixture(params=["gpkg", pytest.param("postgis", marks=pytest.mark.postgis)])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "gpkg":
        s = open_store(tmp_path / "proposals.gpkg", comuni=COMUNI)
    else:
        s = open_store(request.getfixturevalue("postgis_url"), comuni=COMUNI)
    yield s
    s.close()


def snapshot(store, pid: str) -> tuple[dict, bytes, list]:
    """Row, geometry and audit of a proposal as metro sees them, for before/after comparisons."""
    row = store.get(pid, role="metro")
    rec = row.drop(columns="geometry").iloc[0].to_dict()
    return rec, shapely.to_wkb(row.geometry.iloc[0]), store.audit(pid, role="metro").to_dict("records")


# --- create, read, roles ---------------------------------------------------------------------


def test_create_and_get_round_trip(store) -> None:
    out = store.create(one("037001", side=120.0, exemption="opere_pubbliche"), role=f"unione:{UA}")
    assert len(out) == 1
    pid = out["proposal_id"].iloc[0]
    assert len(pid) == 32 and int(pid, 16) >= 0
    got = store.get(pid, role=f"unione:{UA}")
    r = got.iloc[0]
    assert (r.scenario, r.comune_istat, r.ptype, r.pool, r.exemption, r.date, r.status) == (
        "base", "037001", "nuova_urbanizzazione", "locale", "opere_pubbliche", "2025-03-01", "bozza")
    assert r.owner == f"unione:{UA}"
    assert r.created_at == r.updated_at and r.created_at.endswith("Z")
    assert got.crs.to_epsg() == 25832
    assert r.geometry.geom_type == "MultiPolygon"  # a Polygon is stored as a one-part MultiPolygon
    assert r.geometry.area == pytest.approx(120.0 ** 2, abs=1e-6)
    assert r.geometry.equals(square("037001", 120.0))


def test_input_in_another_crs_is_reprojected(store) -> None:
    g = gpd.GeoSeries([square("037006", 200.0)], crs=CRS)
    wgs = gpd.GeoDataFrame([props("037006")], geometry=g.to_crs(4326).values, crs=4326)
    pid = store.create(wgs, role="comune:037006")["proposal_id"].iloc[0]
    geom = store.get(pid, role="metro").geometry.iloc[0]
    # a round trip through degrees moves vertices by far less than a millimetre
    assert geom.area == pytest.approx(40_000.0, rel=1e-6)
    assert shapely.hausdorff_distance(geom, square("037006", 200.0)) < 1e-3


@pytest.mark.parametrize(("role", "comune", "allowed"), [
    ("comune:037001", "037001", True),
    ("comune:037001", "037002", False),
    (f"unione:{UA}", "037001", True),
    (f"unione:{UA}", "037002", False),
    (f"unione:{UA}", "037006", False),  # Bologna is in no Unione
    (f"unione:{UB}", "037002", True),
    ("comune:037006", "037006", True),
    ("metro", "037001", True),
    ("metro", "037002", True),
    ("metro", "037006", True),
])
def test_who_may_create(store, role: str, comune: str, allowed: bool) -> None:
    if allowed:
        out = store.create(one(comune), role=role)
        assert store.get(out["proposal_id"].iloc[0], role="metro")["owner"].iloc[0] == Role.parse(role).id
    else:
        with pytest.raises(PermissionDenied, match=comune):
            store.create(one(comune), role=role)
        assert len(store.list(role="metro")) == 0  # refused: nothing stored


def test_refused_batch_stores_nothing(store) -> None:
    both = pd.concat([one("037001"), one("037002")], ignore_index=True)
    with pytest.raises(PermissionDenied):
        store.create(both, role=f"unione:{UA}")
    assert len(store.list(role="metro")) == 0
    assert len(store.create(both, role="metro")) == 2


def test_unione_cannot_modify_another_unione_proposal(store) -> None:
    pid = store.create(one("037001"), role=f"unione:{UA}")["proposal_id"].iloc[0]
    before = snapshot(store, pid)
    # a draft of another Unione does not exist for UB: not found, as an unknown id
    with pytest.raises(NotFound, match=f"unione:{UB}"):
        store.update(pid, {"title": "presa da altri"}, role=f"unione:{UB}")
    with pytest.raises(NotFound):
        store.withdraw(pid, role=f"unione:{UB}")
    assert snapshot(store, pid) == before  # row, geometry and audit untouched
    assert len(before[2]) == 1
    # submitted, it is public: readable by UB, still not writable
    store.update(pid, {"status": "presentata"}, role=f"unione:{UA}")
    before = snapshot(store, pid)
    assert store.get(pid, role=f"unione:{UB}")["status"].iloc[0] == "presentata"
    with pytest.raises(PermissionDenied, match=f"unione:{UB}"):
        store.update(pid, {"title": "presa da altri"}, role=f"unione:{UB}")
    with pytest.raises(PermissionDenied):
        store.update(pid, {"geometry": square("037001", 999.0)}, role="comune:037002")
    with pytest.raises(PermissionDenied):
        store.withdraw(pid, role=f"unione:{UB}")
    assert snapshot(store, pid) == before


def test_owner_cannot_move_a_proposal_out_of_its_scope(store) -> None:
    pid = store.create(one("037001"), role=f"unione:{UA}")["proposal_id"].iloc[0]
    before = snapshot(store, pid)
    with pytest.raises(PermissionDenied, match="037002"):
        store.update(pid, {"comune_istat": "037002", "geometry": square("037002", 100.0)},
                     role=f"unione:{UA}")
    assert snapshot(store, pid) == before
    # metro may move it
    moved = store.update(pid, {"comune_istat": "037002", "geometry": square("037002", 100.0)}, role="metro")
    assert moved["comune_istat"].iloc[0] == "037002"


def test_reads_are_scoped_to_the_role(store) -> None:
    ids = {c: store.create(one(c), role="metro")["proposal_id"].iloc[0] for c in ORIGIN}
    seen = {r: set(store.list(role=r)["proposal_id"]) for r in
            ("metro", f"unione:{UA}", f"unione:{UB}", "comune:037006", "comune:037002")}
    assert seen["metro"] == set(ids.values())
    assert seen[f"unione:{UA}"] == {ids["037001"]}
    assert seen[f"unione:{UB}"] == {ids["037002"]}
    assert seen["comune:037006"] == {ids["037006"]}
    assert seen["comune:037002"] == {ids["037002"]}
    assert len(store.list(role=None)) == 0  # drafts: nothing is public
    with pytest.raises(NotFound):
        store.get(ids["037006"], role=f"unione:{UA}")
    with pytest.raises(NotFound):
        store.get(ids["037006"], role=None)
    with pytest.raises(NotFound):
        store.audit(ids["037002"], role="comune:037001")
    with pytest.raises(NotFound):
        store.get("0" * 32, role="metro")
    # submitted: public, in every list; the audit trail stays with the writers
    store.update(ids["037006"], {"status": "presentata"}, role="metro")
    assert set(store.list(role=None)["proposal_id"]) == {ids["037006"]}
    assert set(store.list(role=f"unione:{UA}")["proposal_id"]) == {ids["037001"], ids["037006"]}
    assert store.get(ids["037006"], role=None)["status"].iloc[0] == "presentata"
    with pytest.raises(PermissionDenied):
        store.audit(ids["037006"], role=f"unione:{UA}")


# --- audit, update, withdraw -----------------------------------------------------------------


def test_audit_records_before_and_after(store) -> None:
    pid = store.create(one("037001", side=100.0), role="comune:037001")["proposal_id"].iloc[0]
    store.update(pid, {"title": "ampliata", "geometry": square("037001", 150.0)}, role=f"unione:{UA}")
    store.withdraw(pid, role="metro", note="rinuncia del comune")
    a = store.audit(pid, role="comune:037001")
    assert list(a["action"]) == ["create", "update", "withdraw"]
    assert list(a["role"]) == ["comune:037001", f"unione:{UA}", "metro"]
    assert list(a["note"]) == [None, None, "rinuncia del comune"]
    assert a["before"].iloc[0] is None
    created, updated, withdrawn = a["after"]
    assert a["before"].iloc[1] == created and a["before"].iloc[2] == updated  # a chain
    assert created["properties"]["title"] == "area in 037001"
    assert updated["properties"]["title"] == "ampliata"
    assert shapely.geometry.shape(created["geometry"]).area == pytest.approx(100.0 ** 2)
    assert shapely.geometry.shape(updated["geometry"]).area == pytest.approx(150.0 ** 2)
    assert withdrawn["properties"]["status"] == "ritirata"
    assert withdrawn["geometry"] == updated["geometry"]
    # 'at' is the UTC time of the change, the same instant as the row's updated_at
    assert list(a["at"]) == [created["properties"]["updated_at"], updated["properties"]["updated_at"],
                             withdrawn["properties"]["updated_at"]]
    assert list(a["at"]) == sorted(a["at"])
    assert store.get(pid, role="metro")["updated_at"].iloc[0] == a["at"].iloc[-1]


def test_withdraw_keeps_the_row(store) -> None:
    keep = store.create(one("037002"), role="metro")["proposal_id"].iloc[0]
    pid = store.create(one("037002", side=50.0), role=f"unione:{UB}")["proposal_id"].iloc[0]
    out = store.withdraw(pid, role="comune:037002")
    assert out["status"].iloc[0] == "ritirata"
    got = store.get(pid, role="metro")
    assert got["status"].iloc[0] == "ritirata"
    assert got.geometry.iloc[0].area == pytest.approx(2500.0)
    assert set(store.list(role="metro")["proposal_id"]) == {keep, pid}
    assert list(store.list(role="metro", status="bozza")["proposal_id"]) == [keep]
    assert list(store.list(role="metro", status="ritirata")["proposal_id"]) == [pid]
    before = snapshot(store, pid)
    with pytest.raises(ConflictError, match="already withdrawn"):
        store.withdraw(pid, role="metro")
    with pytest.raises(ConflictError, match="withdrawn"):
        store.update(pid, {"title": "x"}, role="metro")
    with pytest.raises(InputError, match="withdraw"):
        store.update(keep, {"status": "ritirata"}, role="metro")
    assert snapshot(store, pid) == before


def test_update_that_changes_nothing_is_not_recorded(store) -> None:
    pid = store.create(one("037006"), role="comune:037006")["proposal_id"].iloc[0]
    store.update(pid, {"title": "area in 037006"}, role="comune:037006")
    assert len(store.audit(pid, role="metro")) == 1
    store.update(pid, {"status": "presentata"}, role="comune:037006")
    assert list(store.audit(pid, role="metro")["action"]) == ["create", "update"]


def test_update_from_a_feature_frame(store) -> None:
    pid = store.create(one("037001"), role="metro")["proposal_id"].iloc[0]
    row = store.get(pid, role="metro")
    row["title"] = "dal GIS"
    row["owner"] = "comune:037002"  # read-only: ignored
    row["geometry"] = [square("037001", 300.0)]
    out = store.update(pid, row, role="comune:037001")
    assert (out["title"].iloc[0], out["owner"].iloc[0]) == ("dal GIS", "metro")
    assert out.geometry.iloc[0].area == pytest.approx(90_000.0)
    row["proposal_id"] = "f" * 32
    with pytest.raises(InputError, match="differs"):
        store.update(pid, row, role="metro")
    with pytest.raises(InputError, match="owner"):
        store.update(pid, {"owner": "metro"}, role="metro")


# --- bad input -------------------------------------------------------------------------------

BOWTIE = shapely.Polygon([(681_000, 4_921_000), (681_100, 4_921_100), (681_100, 4_921_000),
                          (681_000, 4_921_100), (681_000, 4_921_000)])


@pytest.mark.parametrize(("frame", "field", "message"), [
    (lambda: one("037001", geom=BOWTIE), "geometry", "invalid geometry"),
    (lambda: one("037001", geom=shapely.Polygon()), "geometry", "empty geometry"),
    (lambda: one("037001", geom=shapely.Point(681_000, 4_921_000)), "geometry", "Polygon or MultiPolygon"),
    (lambda: one("037001").set_crs(None, allow_override=True), "geometry", "no CRS"),
    (lambda: one("037001", ptype="cementificazione"), "ptype", "not a valid ptype"),
    (lambda: one("037001", pool="regionale"), "pool", "not a valid pool"),
    (lambda: one("037001", exemption="amici"), "exemption", "unknown exemption"),
    (lambda: one("037001", date="1 marzo 2025"), "date", "not an ISO date"),
    (lambda: one("037001", comune_istat="099999"), "comune_istat", "unknown comune"),
    (lambda: one("037001", status="ritirata"), "status", "not a valid status"),
    (lambda: one("037001", proposal_id="../etc"), "proposal_id", "not a valid id"),
    (lambda: one("037001", proposal_id="-x"), "proposal_id", "not a valid id"),
    (lambda: one("037001", proposal_id="a" * 65), "proposal_id", "not a valid id"),
    (lambda: one("037001", proposal_id=7), "proposal_id", "must be text"),
    (lambda: one("037001", title="x" * 201), "title", "longer than 200"),
    (lambda: one("037001", scenario=True), "scenario", "must be text"),
    (lambda: one("037001").drop(columns="ptype"), "ptype", "missing field"),
])
def test_bad_input_is_refused_and_stores_nothing(store, frame, field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as e:
        store.create(frame(), role="metro")
    assert e.value.field == field
    assert len(store.list(role="metro")) == 0


def test_errors_name_the_row(store) -> None:
    rows = pd.concat([one("037001"), one("037001", geom=BOWTIE), one("037002")], ignore_index=True)
    with pytest.raises(InputError) as e:
        store.create(rows, role="metro")
    assert e.value.rows == [2]  # 1-based feature number, as pattogis.proposals reports
    assert len(store.list(role="metro")) == 0


def test_duplicate_id_is_a_conflict(store) -> None:
    pid = "a" * 32
    store.create(one("037001", proposal_id=pid), role="metro")
    with pytest.raises(ConflictError, match="already exists"):
        store.create(pd.concat([one("037002"), one("037001", proposal_id=pid)], ignore_index=True), role="metro")
    assert len(store.list(role="metro")) == 1


def test_split_parts_get_their_own_ids(store) -> None:
    """pattogis.proposals gives the parts of a proposal across comuni the same id and a part
    number; the store keeps one comune per proposal, so later parts get fresh ids."""
    pid = "b" * 32
    parts = pd.concat([one("037001", proposal_id=pid, part=1), one("037002", proposal_id=pid, part=2)],
                      ignore_index=True)
    out = store.create(parts, role="metro")
    assert out["proposal_id"].iloc[0] == pid and out["proposal_id"].iloc[1] != pid
    assert out["proposal_id"].nunique() == 2


# --- list filters ----------------------------------------------------------------------------


def test_list_filters(store) -> None:
    a = store.create(one("037001", side=100.0), role="metro")["proposal_id"].iloc[0]
    b = store.create(one("037001", geom=square("037001", 100.0, dx=2_000), scenario="PUG 2026"),
                     role=f"unione:{UA}")["proposal_id"].iloc[0]
    # an L-shaped proposal whose envelope covers the point (681_900, 4_921_900) but not its shape
    ell = shapely.union(shapely.box(681_500, 4_921_500, 682_000, 4_921_600),
                        shapely.box(681_500, 4_921_500, 681_600, 4_922_000))
    c = store.create(one("037001", geom=ell), role="metro")["proposal_id"].iloc[0]
    d = store.create(one("037006"), role="metro")["proposal_id"].iloc[0]
    ids = lambda **kw: list(store.list(role="metro", **kw)["proposal_id"])  # noqa: E731
    assert ids() == [a, b, c, d]  # creation order
    assert ids(scenario="PUG 2026") == [b]
    assert ids(scenario=["base"]) == [a, c, d]
    assert ids(comune="037006") == [d]
    assert ids(owner=f"unione:{UA}") == [b]
    assert ids(comune=["037001"], scenario="base") == [a, c]
    assert ids(bbox=(681_050, 4_921_050, 681_060, 4_921_060)) == [a]
    assert ids(bbox=(681_880, 4_921_880, 681_950, 4_921_950)) == []  # in the L's envelope only
    assert ids(bbox=(681_550, 4_921_900, 681_560, 4_921_950)) == [c]
    assert ids(bbox=(680_000, 4_920_000, 700_000, 4_940_000)) == [a, b, c, d]
    # a role's filter cannot widen its scope
    assert list(store.list(role=f"unione:{UA}", comune="037006")["proposal_id"]) == []
    with pytest.raises(InputError, match="bbox"):
        store.list(role="metro", bbox=(10, 10, 0, 0))


# --- concurrency -----------------------------------------------------------------------------

N_CLIENTS = 50


def test_concurrent_creates_all_stored(store) -> None:
    """50 clients write at once, each its own proposal: all are stored, once, and the areas add
    up to the known total (sides 10..59 m)."""
    comuni = list(ORIGIN)
    start = threading.Barrier(N_CLIENTS)

    def client(i: int) -> str:
        c = comuni[i % 3]
        # side 10+i m, placed on a grid so that no two proposals overlap
        frame = one(c, geom=square(c, 10.0 + i, dx=(i // 3) * 100.0), title=f"client {i}")
        start.wait()
        return store.create(frame, role=ROLE_OF[c])["proposal_id"].iloc[0]

    with ThreadPoolExecutor(N_CLIENTS) as pool:
        ids = list(pool.map(client, range(N_CLIENTS)))
    assert len(set(ids)) == N_CLIENTS
    got = store.list(role="metro")
    assert len(got) == N_CLIENTS and set(got["proposal_id"]) == set(ids)
    assert got.geometry.area.sum() == pytest.approx(sum((10.0 + i) ** 2 for i in range(N_CLIENTS)), abs=1e-6)
    assert sorted(got["title"]) == sorted(f"client {i}" for i in range(N_CLIENTS))
    for pid in ids[:5] + ids[-5:]:
        assert list(store.audit(pid, role="metro")["action"]) == ["create"]


def test_concurrent_updates_of_one_proposal_serialise(store) -> None:
    """50 clients edit the same proposal at once: every edit is applied in turn, and each audit
    entry's 'before' is exactly the previous entry's 'after' (no lost or interleaved write)."""
    pid = store.create(one("037001"), role="metro")["proposal_id"].iloc[0]
    start = threading.Barrier(N_CLIENTS)

    def client(i: int) -> None:
        start.wait()
        store.update(pid, {"title": f"edit {i}", "geometry": square("037001", 20.0 + i)}, role=f"unione:{UA}")

    with ThreadPoolExecutor(N_CLIENTS) as pool:
        list(pool.map(client, range(N_CLIENTS)))
    a = store.audit(pid, role="metro")
    assert len(a) == N_CLIENTS + 1
    for k in range(1, len(a)):
        assert a["before"].iloc[k] == a["after"].iloc[k - 1]
    assert sorted(x["properties"]["title"] for x in a["after"].iloc[1:]) == sorted(f"edit {i}" for i in range(N_CLIENTS))
    final = store.get(pid, role="metro")
    last = a["after"].iloc[-1]
    assert final["title"].iloc[0] == last["properties"]["title"]
    i = int(last["properties"]["title"].split()[1])
    assert final.geometry.iloc[0].area == pytest.approx((20.0 + i) ** 2)


def test_versions_and_expected_version(store) -> None:
    """Every change adds 1 to the version; a change based on an older version is refused and
    changes nothing (PreconditionFailed, HTTP 412)."""
    pid = store.create(one("037001"), role="metro")["proposal_id"].iloc[0]
    assert store.get(pid, role="metro")["version"].iloc[0] == 1
    assert store.update(pid, {"title": "a"}, role="metro", expected_version=1)["version"].iloc[0] == 2
    before = snapshot(store, pid)
    with pytest.raises(PreconditionFailed, match="version 2.*version 1"):
        store.update(pid, {"title": "b"}, role="metro", expected_version=1)
    with pytest.raises(PreconditionFailed):
        store.withdraw(pid, role="metro", expected_version=1)
    assert snapshot(store, pid) == before
    assert store.withdraw(pid, role="metro", expected_version=2)["version"].iloc[0] == 3


def test_two_writers_of_different_fields_lose_nothing(store) -> None:
    """20 trials: two writers read version v and change different fields at once. One wins,
    the other gets PreconditionFailed, reads again and re-applies: both changes are kept."""
    lost = 0
    for trial in range(20):
        pid = store.create(one("037001", title=f"t{trial}"), role="metro")["proposal_id"].iloc[0]
        start = threading.Barrier(2)

        def writer(change: dict, pid: str = pid, start: threading.Barrier = start) -> str:
            v = int(store.get(pid, role="metro")["version"].iloc[0])
            start.wait()
            for _ in range(5):
                try:
                    store.update(pid, change, role="metro", expected_version=v)
                    return "ok"
                except PreconditionFailed:
                    v = int(store.get(pid, role="metro")["version"].iloc[0])
            return "gave up"

        with ThreadPoolExecutor(2) as pool:
            res = list(pool.map(writer, [{"title": "nuovo titolo"}, {"scenario": "PUG 2026"}]))
        assert res == ["ok", "ok"]
        got = store.get(pid, role="metro").iloc[0]
        lost += (got["title"] != "nuovo titolo") + (got["scenario"] != "PUG 2026")
        assert got["version"] == 3
    assert lost == 0


def test_only_metro_approves(store) -> None:
    pid = store.create(one("037001"), role=f"unione:{UA}")["proposal_id"].iloc[0]
    with pytest.raises(PermissionDenied, match="only the metropolitan office"):
        store.update(pid, {"status": "approvata"}, role=f"unione:{UA}")
    with pytest.raises(PermissionDenied, match="only the metropolitan office"):
        store.create(one("037001", status="approvata"), role="comune:037001")
    store.update(pid, {"status": "presentata"}, role="comune:037001")  # the owner submits
    store.update(pid, {"status": "approvata"}, role="metro")
    before = snapshot(store, pid)
    for change in ({"title": "cambiato"}, {"status": "bozza"}):
        with pytest.raises(PermissionDenied, match="approvata"):
            store.update(pid, change, role=f"unione:{UA}")
    with pytest.raises(PermissionDenied):
        store.withdraw(pid, role="comune:037001")
    assert snapshot(store, pid) == before
    assert store.update(pid, {"title": "rettifica"}, role="metro")["title"].iloc[0] == "rettifica"


def test_cli_style_ids_are_kept(store) -> None:
    out = store.create(one("037001", proposal_id="CAS-EXP-01"), role="metro")
    assert out["proposal_id"].iloc[0] == "CAS-EXP-01"
    assert store.get("CAS-EXP-01", role="metro")["comune_istat"].iloc[0] == "037001"


def test_permission_message_counts_rows_from_1(store) -> None:
    both = pd.concat([one("037001"), one("037002")], ignore_index=True)
    with pytest.raises(PermissionDenied, match=r"comune 037002 \(rows 2\)"):
        store.create(both, role=f"unione:{UA}")


def _process_client(path: str, worker: int, n: int) -> list[str]:
    s = GpkgStore(path, comuni=COMUNI)
    return [s.create(one("037006", geom=square("037006", 10.0 + worker * n + k, dx=(worker * n + k) * 100.0)),
                     role="comune:037006")["proposal_id"].iloc[0] for k in range(n)]


def test_gpkg_concurrent_processes(tmp_path: Path) -> None:
    """Writers in separate processes queue on SQLite's lock (BEGIN IMMEDIATE) and all commit."""
    path = str(tmp_path / "proposals.gpkg")
    GpkgStore(path, comuni=COMUNI)
    workers, n = 5, 10
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        ids = [i for chunk in pool.starmap(_process_client, [(path, w, n) for w in range(workers)]) for i in chunk]
    got = GpkgStore(path, comuni=COMUNI).list(role="metro")
    assert len(ids) == len(set(ids)) == len(got) == workers * n
    assert got.geometry.area.sum() == pytest.approx(sum((10.0 + j) ** 2 for j in range(workers * n)))


# --- GeoPackage file and store selection ------------------------------------------------------


def test_gpkg_file_is_a_geopackage_gdal_reads(tmp_path: Path) -> None:
    path = tmp_path / "p.gpkg"
    s = GpkgStore(path, comuni=COMUNI)
    a = s.create(one("037001", side=100.0), role="metro")["proposal_id"].iloc[0]
    s.create(one("037006", side=100.0), role="metro")
    s.update(a, {"geometry": square("037001", 100.0, dx=5_000)}, role="metro")
    layers = dict(pyogrio.list_layers(path))
    assert layers["proposals"] == "MultiPolygon" and "proposal_audit" in layers
    info = pyogrio.read_info(path, layer="proposals")
    assert info["crs"] == "EPSG:25832" and info["features"] == 2
    assert info["capabilities"]["fast_spatial_filter"]  # the R-tree index is registered
    # the R-tree follows the moved geometry: GDAL finds it at the new place only
    x, y = ORIGIN["037001"]
    moved = gpd.read_file(path, layer="proposals", bbox=(x + 5_010, y + 10, x + 5_020, y + 20))
    assert list(moved["proposal_id"]) == [a]
    assert len(gpd.read_file(path, layer="proposals", bbox=(x + 10, y + 10, x + 20, y + 20))) == 0
    audit = pyogrio.read_dataframe(path, layer="proposal_audit")
    assert list(audit["action"]) == ["create", "create", "update"]
    assert json.loads(audit["after"].iloc[2])["geometry"]["type"] == "MultiPolygon"


def test_open_store_picks_the_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATTOGIS_DATABASE_URL", raising=False)
    monkeypatch.setenv("PATTOGIS_STORE", str(tmp_path / "env.gpkg"))
    s = open_store(comuni=COMUNI)
    assert isinstance(s, GpkgStore) and s.path == tmp_path / "env.gpkg"


@pytest.mark.postgis
def test_open_store_uses_the_database_url(postgis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from pattogis.store.postgis import PostgisStore

    monkeypatch.setenv("PATTOGIS_DATABASE_URL", postgis_url)
    s = open_store(comuni=COMUNI)
    try:
        assert isinstance(s, PostgisStore)
        s.create(one("037001"), role="metro")
        import psycopg

        with psycopg.connect(postgis_url) as con:
            srid, kind = con.execute(
                "SELECT srid, type FROM geometry_columns WHERE f_table_name = 'proposals'").fetchone()
            n = con.execute("SELECT count(*) FROM proposal_audit").fetchone()[0]
        assert (srid, kind, n) == (25832, "MULTIPOLYGON", 1)
    finally:
        s.close()


# --- roles and keys --------------------------------------------------------------------------


def test_role_parsing() -> None:
    assert Role.parse("comune:037006") == Role("comune", "037006")
    assert Role.parse(f"unione:{UA}").id == f"unione:{UA}"
    assert Role.parse("metro").id == "metro"
    for bad in ("comune:37006", "unione:", "regione", "metro:x", ""):
        with pytest.raises(InputError):
            Role.parse(bad)


def test_membership_from_comuni() -> None:
    m = Membership.from_comuni(COMUNI)
    assert m.scope(Role.parse(f"unione:{UA}")) == {"037001"}
    assert m.scope(Role.parse("metro")) is None
    assert m.unioni() == {UA, UB}
    assert m.unione_of["037006"] is None
    with pytest.raises(InputError, match="unknown Unione"):
        m.check_role(Role.parse("unione:Unione Fantasma"))


def test_keys_are_stored_hashed(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    key = create_key("comune:037006", path=path, label="ufficio tecnico")
    text = path.read_text()
    assert key not in text and key.split("_")[2] not in text  # only the hash is on disk
    assert authenticate(key, path=path) == Role("comune", "037006")
    assert (path.stat().st_mode & 0o777) == 0o600
    keys = list_keys(path=path)
    assert list(keys["role"]) == ["comune:037006"] and "sha256" not in keys.columns
    with pytest.raises(Unauthenticated):
        authenticate(key + "x", path=path)
    with pytest.raises(Unauthenticated):
        authenticate(None, path=path)
    ring = KeyRing(path)
    assert ring.role_for(key).id == "comune:037006"
    revoke_key(keys["key_id"].iloc[0], path=path)
    with pytest.raises(Unauthenticated):
        ring.role_for(key)  # the ring sees the file change


def test_keys_file_from_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "keys.yaml"
    monkeypatch.setenv("PATTOGIS_API_KEYS", str(path))
    key = create_key(f"unione:{UA}", membership=Membership.from_comuni(COMUNI))
    assert "keys:" in path.read_text()
    assert authenticate(key).id == f"unione:{UA}"
    with pytest.raises(InputError, match="unknown comune"):
        create_key("comune:099999", membership=Membership.from_comuni(COMUNI))


def test_concurrent_key_creation_loses_none(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    with ThreadPoolExecutor(20) as pool:
        keys = list(pool.map(lambda i: create_key("metro", path=path, label=str(i)), range(20)))
    assert len(list_keys(path=path)) == 20
    ring = KeyRing(path)
    assert all(ring.role_for(k).id == "metro" for k in keys)


def test_a_store_made_before_versions_is_upgraded(store, tmp_path: Path) -> None:
    """Stores written before versions get the column, every proposal at version 1."""
    pid = store.create(one("037001"), role="metro")["proposal_id"].iloc[0]
    if isinstance(store, GpkgStore):
        import sqlite3

        with sqlite3.connect(store.path) as con:
            con.execute("ALTER TABLE proposals DROP COLUMN version")
        again = GpkgStore(store.path, comuni=COMUNI)
    else:
        import psycopg

        with psycopg.connect(store.url, autocommit=True) as con:
            con.execute("ALTER TABLE proposals DROP COLUMN version")
        again = open_store(store.url, comuni=COMUNI)
    try:
        assert again.get(pid, role="metro")["version"].iloc[0] == 1
        assert again.update(pid, {"title": "x"}, role="metro", expected_version=1)["version"].iloc[0] == 2
    finally:
        if again is not store:
            again.close()
