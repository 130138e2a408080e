"""The API as a careful attacker tries it: lost updates under concurrent PUTs over real HTTP
(GeoPackage and PostGIS), zip bombs, keys revoked from the CLI, a file path in a query, drafts
read without a key on the budget endpoint, the ledger collection and the budget map."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import geopandas as gpd
import httpx
import pytest
from fastapi.testclient import TestClient

from pattogis.errors import PayloadTooLarge
from pattogis.io import UploadLimits, safe_unzip
from pattogis.store import KeyRing, create_key, open_store

try:  # tests/ is on sys.path under pytest's default import mode
    from live import serve
    from pg_fixture import pg_cluster, postgis_url  # noqa: F401
    from test_api_proposals import Env, base_props, env, fc, feat, store  # noqa: F401 (fixtures)
    from test_store import square
except ImportError:  # pragma: no cover - when tests/ is a package
    from tests.live import serve
    from tests.pg_fixture import pg_cluster, postgis_url  # noqa: F401
    from tests.test_api_proposals import Env, base_props, env, fc, feat, store  # noqa: F401
    from tests.test_store import square

REPO = Path(__file__).resolve().parents[1]




# --- lost updates ------------------------------------------------------------------------------

TRIALS = 20


def test_concurrent_puts_lose_no_update_over_http(env: Env) -> None:
    """The attack of issue 14: two clients PUT different fields of one proposal at once, each
    from the version it read. Before: both 200 and one change lost in 20 of 20 trials. Now the
    one that comes second gets 412, reads again and re-sends: 0 lost updates in 20 trials."""
    h = env.h("metro")
    ids = [env.client.post("/proposals", json=fc(feat(square("037001", 10.0 + i, dx=50.0 * i),
                                                      **base_props(title=f"t{i}"))),
                           headers=h).json()["features"][0]["id"] for i in range(TRIALS)]
    stats = {"first_try_412": 0, "lost": 0}
    with serve(env.app) as url:

        def writer(pid: str, body: dict, start: threading.Barrier) -> list[int]:
            codes = []
            with httpx.Client(base_url=url, timeout=60) as c:
                tag = c.get(f"/proposals/{pid}", headers=h).headers["etag"]
                start.wait()
                for _ in range(5):
                    r = c.put(f"/proposals/{pid}", json=body, headers=h | {"If-Match": tag})
                    codes.append(r.status_code)
                    if r.status_code != 412:
                        break
                    tag = c.get(f"/proposals/{pid}", headers=h).headers["etag"]
            return codes

        for i, pid in enumerate(ids):
            start = threading.Barrier(2)
            geom = square("037001", 10.0 + i, dx=50.0 * i)
            a = fc(feat(geom, title=f"nuovo titolo {i}"))
            b = fc(feat(geom, scenario=f"PUG {i}"))
            with ThreadPoolExecutor(2) as pool:
                codes = list(pool.map(writer, [pid, pid], [a, b], [start, start]))
            assert all(c[-1] == 200 for c in codes), codes
            stats["first_try_412"] += sum(c[0] == 412 for c in codes)
            got = httpx.get(f"{url}/proposals/{pid}", headers=h).json()["properties"]
            stats["lost"] += (got["title"] != f"nuovo titolo {i}") + (got["scenario"] != f"PUG {i}")
            assert got["version"] == 3
    print(f"\nconcurrent PUT trials: {TRIALS}, lost updates: {stats['lost']}, "
          f"stale writes refused with 412 then retried: {stats['first_try_412']}")
    assert stats["lost"] == 0


def test_same_stale_etag_one_wins(env: Env) -> None:
    """20 clients PUT from the same version at once: exactly one 200, the rest 412."""
    h = env.h("metro")
    pid = env.client.post("/proposals", json=fc(feat(square("037006", 30.0), **base_props())),
                          headers=h).json()["features"][0]["id"]
    start = threading.Barrier(20)
    with serve(env.app) as url:

        def put(i: int) -> int:
            with httpx.Client(base_url=url, timeout=60) as c:
                start.wait()
                return c.put(f"/proposals/{pid}", json=fc(feat(square("037006", 30.0), title=f"c{i}")),
                             headers=h | {"If-Match": '"1"'}).status_code

        with ThreadPoolExecutor(20) as pool:
            codes = sorted(pool.map(put, range(20)))
    assert codes == [200] + [412] * 19
    assert len(env.store.audit(pid, role="metro")) == 2


# --- uploads bounded after decompression -------------------------------------------------------


def zip_bomb(inflated: int, entries: int = 1) -> bytes:
    """A real zip bomb: ``entries`` files of zeros, ``inflated`` bytes in all, deflated."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        each = inflated // entries
        for k in range(entries):
            with z.open(f"bomb{k}.geojson", "w", force_zip64=True) as f:
                chunk = b"\0" * (1 << 20)
                left = each
                while left > 0:
                    f.write(chunk[:min(left, len(chunk))])
                    left -= len(chunk)
    return buf.getvalue()


def test_zip_bomb_is_refused_at_the_limit(env: Env) -> None:
    bomb = zip_bomb(256 * 2**20)  # 256 MiB of zeros
    assert len(bomb) < 2**20  # under the 10 MB body limit by far
    t0 = time.perf_counter()
    r = env.client.post("/proposals", files={"file": ("bomb.zip", bomb, "application/zip")},
                        headers=env.h("metro"))
    took = time.perf_counter() - t0
    assert r.status_code == 413, r.text
    assert "inflates more than 100 times" in r.json()["detail"]
    assert took < 5.0  # stopped early, not after inflating 256 MiB
    assert env.count() == 0


def test_zip_limits_measured_while_inflating(tmp_path: Path) -> None:
    lim = UploadLimits(max_inflated_bytes=5 * 2**20, max_entries=10, max_ratio=1e9)
    p = tmp_path / "b.zip"
    p.write_bytes(zip_bomb(64 * 2**20))
    with pytest.raises(PayloadTooLarge, match="more than 5242880 bytes"):
        safe_unzip(p, tmp_path / "x1", lim)
    written = sum(f.stat().st_size for f in (tmp_path / "x1").iterdir())
    assert written <= 5 * 2**20  # nothing beyond the limit reached the disk
    p.write_bytes(zip_bomb(11 * 1024, entries=11))
    with pytest.raises(PayloadTooLarge, match="11 files"):
        safe_unzip(p, tmp_path / "x2", lim)
    # a header that lies about the size: the bytes are counted, not the header
    p.write_bytes(_lying_zip(b"\0" * (8 * 2**20), declared=100))
    (tmp_path / "x3").mkdir()
    with pytest.raises(Exception) as e:  # noqa: PT011 - refused either way, never inflated
        safe_unzip(p, tmp_path / "x3", UploadLimits(max_inflated_bytes=2**20, max_ratio=1e9))
    assert sum(f.stat().st_size for f in (tmp_path / "x3").iterdir()) <= 2**20
    assert e.value is not None


def _lying_zip(data: bytes, declared: int) -> bytes:
    """A zip whose headers declare ``declared`` bytes for an entry holding ``data``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.geojson", data)
    raw = bytearray(buf.getvalue())
    size = len(data).to_bytes(4, "little")
    new = declared.to_bytes(4, "little")
    # uncompressed size at offset 22 of the local header and 24 of the central header
    raw[22:26] = new
    cd = raw.rfind(b"PK\x01\x02")
    assert raw[cd + 24:cd + 28] == size
    raw[cd + 24:cd + 28] = new
    return bytes(raw)


def test_real_zipped_shapefile_still_accepted(env: Env, tmp_path: Path) -> None:
    gdf = gpd.GeoDataFrame([base_props(title="zip")], geometry=[square("037002", 50.0)], crs="EPSG:25832")
    (tmp_path / "shp").mkdir()
    gdf.to_file(tmp_path / "shp" / "up.shp")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in (tmp_path / "shp").iterdir():
            z.write(p, p.name)
    r = env.client.post("/proposals", files={"file": ("up.zip", buf.getvalue(), "application/zip")},
                        headers=env.h("metro"))
    assert r.status_code == 201, r.text
    assert zlib  # deflate is what the bombs use


# --- keys from the CLI -------------------------------------------------------------------------


def test_keys_list_and_revoke_from_the_cli(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    run = lambda *a: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "pattogis.cli", "keys", *a], capture_output=True, text=True,
        timeout=120, env=os.environ | {"PATTOGIS_API_KEYS": str(keys), "PYTHONPATH": str(REPO)})
    r = run("create", "--role", "comune:037006", "--label", "ufficio di piano")
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip().splitlines()[-1]
    ring = KeyRing(keys)
    assert ring.role_for(key).id == "comune:037006"
    listed = json.loads(run("list", "--json").stdout)
    assert [(k["role"], k["label"], k["revoked"]) for k in listed] == [
        ("comune:037006", "ufficio di piano", False)]
    human = run("list").stdout
    assert "attiva" in human and key not in human  # never the key itself
    r = run("revoke", listed[0]["key_id"])
    assert r.returncode == 0 and "revocata" in r.stdout
    with pytest.raises(Exception, match="revoked"):
        ring.role_for(key)
    r = run("revoke", "nope")
    assert r.returncode == 2 and "nope" in r.stderr


# --- the read rule in every face (real layer set) ----------------------------------------------


@pytest.fixture
def real_client(built_layers: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from api.app import create_app
    from pattogis.collections import CollectionRegistry

    monkeypatch.setenv("PATTOGIS_API_KEYS", str(tmp_path / "keys.json"))
    st = open_store(tmp_path / "proposals.gpkg")
    # the built layer set (PATTOGIS_LAYERS_DIR, set by built_layers): analyses are collections too
    app = create_app(CollectionRegistry(), get_store=lambda: st)
    keys = {r: create_key(r, path=tmp_path / "keys.json")
            for r in ("comune:037032", "comune:037006", "metro")}
    yield TestClient(app), st, keys
    st.close()


def _same_doc(a: httpx.Response, b: httpx.Response) -> bool:
    """Two answers equal but for the generation time a document prints."""
    import re

    def strip(r: httpx.Response) -> str:
        return re.sub(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2} UTC", "", r.text)
    return strip(a) == strip(b)


@pytest.mark.realdata
def test_drafts_are_not_public_in_any_face(real_client) -> None:  # noqa: ANN001
    client, st, keys = real_client
    comuni = st.comuni.set_index("istat")
    site = comuni.loc["037032"].geometry.representative_point().buffer(40, cap_style=3)
    draft = gpd.GeoDataFrame([{"scenario": "base", "ptype": "nuova_urbanizzazione",
                               "pool": "locale", "title": "BOZZA RISERVATA 7731"}],
                             geometry=[site], crs=st.crs)
    from pattogis.proposals import validate_proposals

    pid = st.create(validate_proposals(draft, st.comuni), role="comune:037032")["proposal_id"].iloc[0]

    def budget(key: str | None) -> dict:
        h = {"X-API-Key": keys[key]} if key else {}
        r = client.get("/analysis/budget", params={"comune": "037032"}, headers=h)
        assert r.status_code == 200, r.text
        return r.json()

    for who in (None, "comune:037006"):
        b = budget(who)
        assert b["n_proposals"] == 0 and "7731" not in json.dumps(b), who
    for who in ("comune:037032", "metro"):
        b = budget(who)
        assert b["n_proposals"] == 1 and b["proposals"][0]["title"] == "BOZZA RISERVATA 7731"
    assert client.get("/analysis/budget", headers={"X-API-Key": "ptg_bogus"}).status_code == 401
    assert client.get("/analysis/budget", params={"comunne": "1"}).status_code == 400
    page = client.get("/maps/budget", params={"comune": "037032"}).text
    assert "RISERVATA" not in page
    items = client.get("/collections/ledger_comuni/items", params={"limit": 100}).json()
    row = [f for f in items["features"] if f["properties"]["istat"] == "037032"][0]
    assert row["properties"]["n_proposals"] == 0
    assert client.get(f"/proposals/{pid}").status_code == 404
    # the documents and the monitoring follow the same rule (the draft's title, or its hectares)
    faces = [("/analysis/monitoring", {"comune": "037032"}),
             ("/analysis/scheda/comune/037032", {"format": "html"}),
             ("/analysis/export/ledger", {"format": "csv", "comune": "037032"})]
    for url, params in faces:
        hidden = client.get(url, params=params)
        shown = client.get(url, params=params, headers={"X-API-Key": keys["comune:037032"]})
        assert hidden.status_code == 200 and shown.status_code == 200, (url, hidden.text[:200])
        other = client.get(url, params=params, headers={"X-API-Key": keys["comune:037006"]})
        # the draft counts only for its owner; another comune sees what the public sees
        assert not _same_doc(hidden, shown) and _same_doc(hidden, other), url
        assert "RISERVATA" not in hidden.text, url
    assert "RISERVATA" in client.get("/analysis/scheda/comune/037032",
                                     headers={"X-API-Key": keys["metro"]}).text

    # submitted: public everywhere, the ledger collection included (it was loaded above with
    # the draft hidden: the cached collection must not outlive the change)
    st.update(pid, {"status": "presentata"}, role="comune:037032")
    assert budget(None)["n_proposals"] == 1
    items = client.get("/collections/ledger_comuni/items", params={"limit": 100}).json()
    row = [f for f in items["features"] if f["properties"]["istat"] == "037032"][0]
    assert row["properties"]["n_proposals"] == 1
    assert "RISERVATA" in client.get("/maps/budget", params={"comune": "037032"}).text
    assert client.get(f"/proposals/{pid}").status_code == 200


@pytest.mark.realdata
def test_fund_map_takes_call_ids_not_paths(real_client, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    client, _, _ = real_client
    from pattogis import config

    opened: list[str] = []
    real = config.call
    monkeypatch.setattr(config, "call", lambda name: opened.append(name) or real(name))
    for bad in ("/etc/passwd", "../pattogis/config/calls/bando_2023.yaml",
                str(REPO / "pattogis/config/calls/bando_2023.yaml"), "bando_2099"):
        t0 = time.perf_counter()
        r = client.get("/maps/fund", params={"call": bad})
        assert r.status_code == 404 and "bando_2023" in r.json()["detail"], (bad, r.text)
        assert time.perf_counter() - t0 < 1.0
    assert opened == []  # no file named by the request was opened


@pytest.mark.realdata
def test_every_upload_face_inflates_within_the_limits(real_client) -> None:  # noqa: ANN001
    """Own sites (/analysis/score) and fund applications (/fund/runs) read zips through the same
    bounded inflater as proposals: a zip bomb is a 413 naming the limit, not 1 GiB of work."""
    client, _, keys = real_client
    bomb = zip_bomb(256 * 2**20)
    r = client.post("/analysis/score", files={"file": ("siti.zip", bomb, "application/zip")})
    assert r.status_code == 413 and "zip bomb" in r.text, r.text
    r = client.post("/fund/runs", files={"file": ("domande.zip", bomb, "application/zip")},
                    headers={"X-API-Key": keys["metro"]})
    assert r.status_code == 413 and "zip bomb" in r.text, r.text
