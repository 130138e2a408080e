"""Benchmark of the OGC API - Features items endpoint against reading the GeoPackage directly.

Run: ``python3 benchmarks/bench_api.py [--quick] [--requests N] [--out PATH]``; writes
``benchmarks/results/api.json``. Needs the built layer set (``$PATTOGIS_LAYERS_DIR`` or
``data/layers``).

A real uvicorn serves ``api.app:app`` in a subprocess; requests go over HTTP on 127.0.0.1 with a
keep-alive client, timed until the last byte of the body is received. The cache is loaded by a
first request (its time is reported as ``cache_load_s``), then, alternating sample by sample
between the API and its peers, on the ``buildings`` layer (221k polygons):

* ``items_1000_offset``: ``/collections/buildings/items?limit=1000&offset=R``, R random.
  Peer ``pyogrio``: ``pyogrio.read_dataframe(gpkg, skip_features=R, max_features=1000)``, the
  same 1,000 features as a GeoDataFrame in EPSG:25832 (no reprojection, no serialisation).
  Peer ``pyogrio+geojson``: the same read, ``to_crs('OGC:CRS84')`` and ``to_json()``: what a
  server without a cache would do per request.
* ``items_1000_bbox``: ``?bbox=...&limit=1000`` with a random 0.05 x 0.035 degree box (about
  4 x 4 km) around a random building (about 900 features on average); peers read the same
  box (its EPSG:25832 envelope, through the GeoPackage's R-tree) with ``max_features=1000``.

Headline: p95 of ``items_1000_offset`` (target < 50 ms); ratios are peer / API (above 1: the
API is faster). The features the API returns are checked to be the peer's (same fids).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyogrio
import pyproj

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

TARGET_P95_MS = 50.0


def pct(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000.0, q))


def stats(times: list[float]) -> dict[str, float]:
    """p50/p95/mean in milliseconds."""
    return {"p50_ms": round(pct(times, 50), 2), "p95_ms": round(pct(times, 95), 2),
            "mean_ms": round(statistics.fmean(times) * 1000, 2), "n": len(times)}


@contextmanager
def server(layers_dir: Path) -> Iterator[str]:
    """uvicorn serving api.app:app on a free 127.0.0.1 port (socket bound here, passed by fd)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    env = {**os.environ, "PATTOGIS_LAYERS_DIR": str(layers_dir),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:app", "--fd", str(sock.fileno()),
         "--log-level", "warning", "--no-access-log"],
        pass_fds=[sock.fileno()], cwd=REPO, env=env)
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
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests (60 per case)")
    ap.add_argument("--requests", type=int, default=None, help="requests per case (default 300)")
    ap.add_argument("--out", default=None, help="result file (default results/api.json)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_req = args.requests or (60 if args.quick else 300)

    from pattogis import layers

    gpkg = layers.gpkg_path()
    if not gpkg.exists():
        sys.exit(f"layer set not built at {gpkg}: run `pattogis data build`")
    layer = "buildings"
    count = int(pyogrio.read_info(gpkg, layer=layer)["features"])
    rng = np.random.default_rng(args.seed)
    to_utm = pyproj.Transformer.from_crs("OGC:CRS84", "EPSG:25832", always_xy=True)
    # Box centres: random buildings (centroids in CRS84), so boxes fall where the data are.
    sample = pyogrio.read_dataframe(gpkg, layer=layer, columns=[], max_features=count)
    cents = sample.geometry.centroid.to_crs("OGC:CRS84")
    centres = np.column_stack([cents.x, cents.y])[rng.choice(count, n_req, replace=False)]
    offsets = rng.integers(0, count - 1000, n_req)

    results: dict[str, Any] = {"layer": layer, "features": count, "requests_per_case": n_req,
                               "transport": "HTTP/1.1 keep-alive to uvicorn on 127.0.0.1"}
    with server(layers.layers_dir()) as url, httpx.Client(timeout=120) as client:
        items = f"{url}/collections/{layer}/items"
        load_s, r = timed(lambda: client.get(items, params={"limit": 1}))
        r.raise_for_status()
        results["cache_load_s"] = round(load_s, 2)

        # Same features on both sides (checked once, outside the timings).
        r = client.get(items, params={"limit": 1000, "offset": int(offsets[0])}).json()
        peer = pyogrio.read_dataframe(gpkg, layer=layer, skip_features=int(offsets[0]),
                                      max_features=1000, fid_as_index=True)
        results["same_features_offset"] = [f["id"] for f in r["features"]] == peer.index.tolist()

        cases: dict[str, dict[str, list[float]]] = {}
        returned: list[int] = []
        nbytes: dict[str, list[int]] = {"items_1000_offset": [], "items_1000_bbox": []}
        for k in range(n_req):
            off = int(offsets[k])
            lon, lat = centres[k]
            box = (lon - 0.025, lat - 0.0175, lon + 0.025, lat + 0.0175)
            utm_box = to_utm.transform_bounds(*box, densify_pts=21)
            bbox_param = ",".join(f"{v:.7f}" for v in box)
            plans: dict[str, dict[str, Callable[[], Any]]] = {
                "items_1000_offset": {
                    "api": lambda off=off: client.get(
                        items, params={"limit": 1000, "offset": off}),
                    "pyogrio": lambda off=off: pyogrio.read_dataframe(
                        gpkg, layer=layer, skip_features=off, max_features=1000),
                    "pyogrio+geojson": lambda off=off: pyogrio.read_dataframe(
                        gpkg, layer=layer, skip_features=off, max_features=1000,
                    ).to_crs("OGC:CRS84").to_json(),
                },
                "items_1000_bbox": {
                    "api": lambda p=bbox_param: client.get(
                        items, params={"limit": 1000, "bbox": p}),
                    "pyogrio": lambda b=utm_box: pyogrio.read_dataframe(
                        gpkg, layer=layer, bbox=b, max_features=1000),
                    "pyogrio+geojson": lambda b=utm_box: pyogrio.read_dataframe(
                        gpkg, layer=layer, bbox=b, max_features=1000,
                    ).to_crs("OGC:CRS84").to_json(),
                },
            }
            for cname, impls in plans.items():
                for impl, fn in impls.items():
                    t, out = timed(fn)
                    cases.setdefault(cname, {}).setdefault(impl, []).append(t)
                    if impl == "api":
                        out.raise_for_status()
                        nbytes[cname].append(len(out.content))
                        if cname == "items_1000_bbox":
                            returned.append(out.json()["numberReturned"])

    out_cases = []
    for cname, impls in cases.items():
        api = stats(impls["api"])
        row: dict[str, Any] = {"case": cname, "api": api,
                               "response_kib_mean": round(statistics.fmean(nbytes[cname]) / 1024,
                                                          1)}
        for peer_name in ("pyogrio", "pyogrio+geojson"):
            p = stats(impls[peer_name])
            row[peer_name] = p
            row[f"ratio_p50_{peer_name}_over_api"] = round(p["p50_ms"] / api["p50_ms"], 3)
            row[f"ratio_p95_{peer_name}_over_api"] = round(p["p95_ms"] / api["p95_ms"], 3)
        if cname == "items_1000_bbox":
            row["features_returned_mean"] = round(statistics.fmean(returned), 1)
        out_cases.append(row)
    results["cases"] = out_cases
    head = out_cases[0]
    results["summary"] = [{
        "metric": "items?limit=1000 p95 (buildings, random offset, HTTP)",
        "value": head["api"]["p95_ms"], "unit": "ms",
        "peer": "pyogrio.read_dataframe of the same 1,000 features",
        "peer_value": head["pyogrio"]["p95_ms"],
        "ratio": head["ratio_p95_pyogrio_over_api"],
        "target": f"< {TARGET_P95_MS:.0f} ms", "met": head["api"]["p95_ms"] < TARGET_P95_MS,
    }]

    try:
        from _common import write_result
    except ImportError:  # run_all.py absent: write the same shape here
        import json

        from pattogis.io import atomic_write_text

        def write_result(name: str, result: dict[str, Any], out: str | Path | None = None) -> Path:
            path = Path(out) if out else HERE / "results" / f"{name}.json"
            atomic_write_text(path, json.dumps({"benchmark": name, **result}, indent=2) + "\n")
            return path

    path = write_result("api", results, args.out)
    for row in out_cases:
        print(f"{row['case']}: api p50 {row['api']['p50_ms']} ms p95 {row['api']['p95_ms']} ms; "
              f"pyogrio p50 {row['pyogrio']['p50_ms']} ms (x{row['ratio_p50_pyogrio_over_api']}); "
              f"pyogrio+geojson p50 {row['pyogrio+geojson']['p50_ms']} ms "
              f"(x{row['ratio_p50_pyogrio+geojson_over_api']})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
