"""Scoring a planner's own sites uploaded as a file: POST /analysis/score (multipart) over HTTP.

Run: ``python3 benchmarks/bench_own_sites.py [--quick] [--requests N] [--port P] [--out F]``; writes
``benchmarks/results/own_sites.json``. Needs the built layer set.

1,000 own sites (seeded: squares of 0.5-5 ha at random points inside the 55 comuni, EPSG:25832)
are written once as a GeoPackage. A real uvicorn serves ``api.app:app`` in a subprocess on
127.0.0.1; each request uploads the file (multipart) and gets back every site's criteria, score,
contributions, Monte Carlo rank interval (200 draws, the endpoint's default) and Italian reason,
top 50 in the JSON. The context (layers, road graph, rasters) is warmed by a first request
(reported as ``warm_s``); the figure is p95 end to end (upload, read, checks, criteria, scoring,
JSON), goal under 2 s. The peer is the same work in-process (``pattogis.analysis.score_sites`` on
the same bytes, reasons included), so the ratio is the cost of the HTTP face.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _common import UVICORN, case, free_port, serve, summary_row, write_result  # noqa: E402

N_SITES = 1000
DRAWS = 200


def own_sites(n: int, seed: int = 0) -> bytes:
    """``n`` seeded square sites inside the comuni, as GeoPackage bytes (EPSG:25832)."""
    import geopandas as gpd
    import shapely

    from pattogis import layers

    comuni = layers.open_layer("comuni")
    area = shapely.union_all(comuni.geometry.to_numpy()).buffer(-200)
    shapely.prepare(area)
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = area.bounds
    pts: list[shapely.Point] = []
    while len(pts) < n:
        cand = shapely.points(rng.uniform(x0, x1, 4 * n), rng.uniform(y0, y1, 4 * n))
        pts += list(cand[shapely.contains(area, cand)])
    pts = pts[:n]
    half = np.sqrt(rng.uniform(0.5, 5.0, n) * 1e4) / 2
    xy = shapely.get_coordinates(np.asarray(pts))
    geoms = shapely.box(xy[:, 0] - half, xy[:, 1] - half, xy[:, 0] + half, xy[:, 1] + half)
    g = gpd.GeoDataFrame({"codice": [f"S{i:04d}" for i in range(n)],
                          "nome": [f"Sito {i}" for i in range(n)]}, geometry=geoms, crs="EPSG:25832")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "siti.gpkg"
        g.to_file(p, driver="GPKG")
        return p.read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=None)
    ap.add_argument("--port", type=int, default=None, help="port for the server (default: a free one)")
    ap.add_argument("--out", help="result file (default benchmarks/results/own_sites.json)")
    a = ap.parse_args()
    n = a.requests or (5 if a.quick else 20)
    data = own_sites(N_SITES)
    port = a.port or free_port()
    env = {"PATTOGIS_STORE": str(REPO / "data" / "bench_store.gpkg")}
    form = {"draws": str(DRAWS), "top": "50"}
    with serve([*UVICORN, "api.app:app"], env, port=port) as (base, _):
        url = f"{base}/analysis/score"
        with httpx.Client(timeout=300) as c:
            t = time.perf_counter()
            r = c.post(url, files={"file": ("siti.gpkg", data)}, data=form)
            r.raise_for_status()
            warm = time.perf_counter() - t
            body = r.json()
            assert body["n_sites"] == N_SITES, body["n_sites"]
            api_times = []
            for _ in range(n):
                t = time.perf_counter()
                r = c.post(url, files={"file": ("siti.gpkg", data)}, data=form)
                r.raise_for_status()
                api_times.append(time.perf_counter() - t)
        # Peer: the same work in-process on the same bytes (context warm too).
        from pattogis import analysis, reports

        analysis.score_sites(data, draws=DRAWS)
        lib_times = []
        for _ in range(n):
            t = time.perf_counter()
            s = analysis.score_sites(data, draws=DRAWS)
            reports.reasons_it(s)
            lib_times.append(time.perf_counter() - t)
    ms = lambda xs, q: float(np.percentile(np.asarray(xs) * 1000, q))  # noqa: E731
    p95 = ms(api_times, 95)
    res = {
        "title": f"POST /analysis/score with an uploaded GeoPackage of {N_SITES} own sites, "
                 f"{DRAWS} Monte Carlo draws, context warm",
        "params": {"requests": n, "sites": N_SITES, "draws": DRAWS, "upload_bytes": len(data)},
        "warm_s": round(warm, 3),
        "n_outside_metro": body["n_outside_metro"],
        "cases": [case("own_sites_upload", "api_http", api_times,
                       p50_ms=round(ms(api_times, 50), 1), p95_ms=round(p95, 1)),
                  case("own_sites_upload", "library_inprocess", lib_times,
                       p50_ms=round(ms(lib_times, 50), 1), p95_ms=round(ms(lib_times, 95), 1))],
        "summary": [
            summary_row(f"POST /analysis/score, {N_SITES} uploaded sites, p95", round(p95, 1), "ms",
                        peer="analysis.score_sites in-process", peer_value=round(ms(lib_times, 95), 1),
                        target="< 2000 ms", met=p95 < 2000),
            summary_row(f"POST /analysis/score, {N_SITES} uploaded sites, p50",
                        round(ms(api_times, 50), 1), "ms", peer="analysis.score_sites in-process",
                        peer_value=round(ms(lib_times, 50), 1)),
        ],
    }
    print(write_result("own_sites", res, a.out))


if __name__ == "__main__":
    main()
