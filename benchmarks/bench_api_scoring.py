"""Latency of scoring with weights posted by a client: POST /analysis/score over HTTP.

Run: ``python3 benchmarks/bench_api_scoring.py [--quick] [--requests N]``; writes
``benchmarks/results/api_scoring.json``. Needs the built layer set.

A real uvicorn serves ``api.app:app`` in a subprocess on 127.0.0.1; each request posts a weight
profile with weights drawn at random (so no response can be cached), no Monte Carlo draws, and
asks for the top 50 sites. The peer is the same library call in-process
(``pattogis.scoring.score`` on the same criteria table), so the ratio is the cost of the API
face: validation, serialisation and HTTP. The criteria of the default candidates are computed on
the first request (reported as ``warm_s``) and cached until the layer set changes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _common import UVICORN, case, serve, summary_row, write_result  # noqa: E402

CRITERIA = ["land_take_ha", "share_inside_tu", "rail_distance_m", "bus_access", "fragility",
            "compactness"]


def profile(rng: np.random.Generator) -> dict:
    w = rng.dirichlet(np.ones(len(CRITERIA)))
    return {"name": "posted", "label_it": "Pesi inviati", "method": "wsum",
            "criteria": {c: {"weight": float(x)} for c, x in zip(CRITERIA, w, strict=True)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--requests", type=int, default=None)
    a = ap.parse_args()
    n = a.requests or (30 if a.quick else 100)
    env = {"PATTOGIS_STORE": str(REPO / "data" / "bench_store.gpkg")}
    with serve([*UVICORN, "api.app:app"], env) as (base, _):
        url = f"{base}/analysis/score"
        rng = np.random.default_rng(0)
        with httpx.Client(timeout=300) as c:
            t = time.perf_counter()
            r = c.post(url, json={"profile": profile(rng), "draws": 0, "top": 50})
            r.raise_for_status()
            warm = time.perf_counter() - t
            api_times = []
            for _ in range(n):
                body = {"profile": profile(rng), "draws": 0, "top": 50}
                t = time.perf_counter()
                r = c.post(url, json=body)
                r.raise_for_status()
                api_times.append(time.perf_counter() - t)
        # Peer: the library call in-process on the same table.
        from pattogis import analysis, scoring

        crit = analysis.criteria_for(None).set_index("site_id")
        lib_times = []
        for _ in range(n):
            p = profile(rng)
            t = time.perf_counter()
            scoring.score(crit, p)
            lib_times.append(time.perf_counter() - t)
    ms = lambda xs, q: float(np.percentile(np.asarray(xs) * 1000, q))  # noqa: E731
    res = {
        "title": "POST /analysis/score with posted weights (418 default candidates, top 50)",
        "params": {"requests": n, "criteria": CRITERIA, "sites": int(len(crit))},
        "warm_s": round(warm, 3),
        "cases": [case("score_posted", "api_http", api_times,
                       p50_ms=round(ms(api_times, 50), 2), p95_ms=round(ms(api_times, 95), 2)),
                  case("score_posted", "library_inprocess", lib_times,
                       p50_ms=round(ms(lib_times, 50), 2), p95_ms=round(ms(lib_times, 95), 2))],
        "summary": [
            summary_row("POST /analysis/score p50", round(ms(api_times, 50), 2), "ms",
                        peer="pattogis.scoring.score in-process", peer_value=round(ms(lib_times, 50), 2)),
            summary_row("POST /analysis/score p95", round(ms(api_times, 95), 2), "ms",
                        peer="pattogis.scoring.score in-process", peer_value=round(ms(lib_times, 95), 2)),
        ],
    }
    print(write_result("api_scoring", res))


if __name__ == "__main__":
    main()
