"""Benchmark of pattogis.scoring: throughput at 10k / 100k / 1M candidate sites, linear growth,
the Monte-Carlo step, and pymcdm's TOPSIS timed on the same matrix as the peer.

Run: ``python3 benchmarks/bench_scoring.py [--quick]``; writes ``benchmarks/results/scoring.json``.
Synthetic sites (seeded) with the 12 criteria of pattogis.criteria; timings are the median of
``repeat`` runs after a warm-up call (wall clock, one process). Ratios > 1 mean pattogis is slower than the peer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pattogis import scoring  # noqa: E402
from pattogis.io import atomic_write_text  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved, summary_row  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "scoring.json"
# TOPSIS profile over twelve registered criteria, min-max everywhere: the matrix pymcdm gets too
# (a fixed set, so figures stay comparable when a criterion is added to the registry).
DIRS = {
    "land_take_ha": "min", "share_inside_tu": "max", "rail_distance_m": "min",
    "bus_access": "max", "cycle_distance_m": "min", "hub_distance_m": "min",
    "fragility": "max", "slope_mean_deg": "min", "elevation_mean_m": "max",
    "heat_mean_c": "max", "area_ha": "min", "compactness": "max",
}  # fmt: skip
CRITS = list(DIRS)
assert set(CRITS) <= set(scoring.known_criteria()), set(CRITS) - set(scoring.known_criteria())
WEIGHTS = np.array([0.15, 0.10, 0.12, 0.08, 0.05, 0.05, 0.12, 0.08, 0.05, 0.08, 0.04, 0.08])


def peer_profile(method: str) -> dict[str, Any]:
    return {
        "name": "bench",
        "method": method,
        "criteria": {
            c: {"weight": float(w), "direction": DIRS[c], "normalise": "minmax"}
            for c, w in zip(CRITS, WEIGHTS, strict=True)
        },
        "missing": {"policy": "renormalise"},
    }


def sites(n: int, seed: int = 0, missing: bool = False) -> pd.DataFrame:
    """Plausible synthetic criteria (units as pattogis.criteria)."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "land_take_ha": rng.exponential(0.5, n) * (rng.random(n) < 0.4),
            "share_inside_tu": rng.beta(5, 1, n),
            "rail_distance_m": rng.lognormal(7.5, 0.8, n),
            "bus_access": rng.poisson(6, n).astype(float),
            "cycle_distance_m": rng.lognormal(5.5, 1.0, n),
            "hub_distance_m": rng.lognormal(8.0, 0.7, n),
            "fragility": rng.random(n),
            "slope_mean_deg": rng.gamma(2.0, 3.0, n),
            "elevation_mean_m": rng.gamma(2.0, 120.0, n),
            "heat_mean_c": rng.normal(38, 3, n),
            "area_ha": rng.lognormal(0.3, 1.0, n),
            "compactness": rng.beta(4, 2, n),
        },
        index=pd.RangeIndex(n, name="site_id"),
    )
    # per-comune flood + landslide share (%), drawn last so the twelve columns above keep
    # their values from earlier runs; the default profiles weigh it, the TOPSIS matrix does not
    df["hazard_pct"] = 100 * rng.beta(0.6, 3.0, n)
    if missing:  # heat and cycle network exist for Bologna city only (~30% of sites)
        outside = rng.random(n) > 0.3
        df.loc[outside, ["heat_mean_c", "cycle_distance_m"]] = np.nan
    return df


def median_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median of ``repeat`` timed calls after one untimed warm-up call: every size is measured
    in the same (warm) state and with the same number of runs, so growth factors compare like
    with like."""
    out = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def bench_throughput(sizes: list[int], repeat: int) -> dict[str, Any]:
    from pymcdm.methods import TOPSIS
    from pymcdm.normalizations import minmax_normalization

    types = np.array([1 if DIRS[c] == "max" else -1 for c in CRITS])
    rows = []
    for n in sizes:
        df = sites(n)
        X = df[CRITS].to_numpy()
        r = repeat
        prof = scoring.load_profile(peer_profile("topsis"))
        # Turn by turn (peer, pattogis, peer, ...) after one warm-up call each, so both see the
        # same machine load: the score vector alone (what pymcdm returns, plus ranks and checks)
        # and the whole explained table (norm, contrib, dpos, dneg per criterion).
        fns = {
            "pymcdm": lambda X=X: TOPSIS(minmax_normalization)(X, WEIGHTS, types, validation=False),
            "score_only": lambda df=df, prof=prof: scoring.score(df, prof, explain=False),
            "explained": lambda df=df, prof=prof: scoring.score(df, prof),
        }
        for f in fns.values():
            f()
        times, last = interleaved(fns, r)
        t_peer, t_fast, t_top = (float(np.median(times[k]))
                                 for k in ("pymcdm", "score_only", "explained"))
        ref, fast, out = last["pymcdm"], last["score_only"], last["explained"]
        t_wsum, _ = median_of(lambda df=df: scoring.score(df, peer_profile("wsum")), r)
        dfm = sites(n, missing=True)
        t_pug, _ = median_of(lambda dfm=dfm: scoring.score(dfm, "pug_planner"), r)
        rows.append(
            {
                "n_sites": n,
                "n_criteria": len(CRITS),
                "pymcdm_topsis_s": t_peer,
                "pattogis_topsis_score_only_s": t_fast,
                "ratio_topsis_score_only_vs_pymcdm": t_fast / t_peer,
                "topsis_score_only_max_abs_diff_vs_pymcdm": float(
                    np.abs(fast["score"].to_numpy() - ref).max()),
                "pattogis_topsis_s": t_top,
                "pattogis_wsum_s": t_wsum,
                "pattogis_pug_planner_with_missing_s": t_pug,
                "ratio_topsis_vs_pymcdm": t_top / t_peer,
                "topsis_max_abs_diff_vs_pymcdm": float(np.abs(out["score"].to_numpy() - ref).max()),
                "pattogis_topsis_sites_per_s": n / t_top,
                "pattogis_wsum_sites_per_s": n / t_wsum,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    growth = []
    for a, b in zip(rows, rows[1:], strict=False):
        f = b["n_sites"] / a["n_sites"]
        growth.append(
            {
                "from": a["n_sites"],
                "to": b["n_sites"],
                "size_factor": f,
                # 1.0 = perfectly linear; rank normalisation is n log n, so slightly above 1
                "topsis_time_factor_per_size_factor": b["pattogis_topsis_s"]
                / a["pattogis_topsis_s"]
                / f,
                "wsum_time_factor_per_size_factor": b["pattogis_wsum_s"] / a["pattogis_wsum_s"] / f,
                "pug_planner_time_factor_per_size_factor": b["pattogis_pug_planner_with_missing_s"]
                / a["pattogis_pug_planner_with_missing_s"]
                / f,
                "pymcdm_time_factor_per_size_factor": b["pymcdm_topsis_s"]
                / a["pymcdm_topsis_s"]
                / f,
            }
        )
    return {"rows": rows, "growth": growth}


def bench_monte_carlo(sizes: list[int], draws: int, peer_draws: int) -> list[dict[str, Any]]:
    """MC step; the peer is the obvious loop with pymcdm: TOPSIS + ranking per weight draw."""
    from pymcdm.methods import TOPSIS
    from pymcdm.normalizations import minmax_normalization
    from scipy.stats import rankdata

    types = np.array([1 if DIRS[c] == "max" else -1 for c in CRITS])
    out = []
    for n in sizes:
        df = sites(n)
        X = df[CRITS].to_numpy()
        for method in ("wsum", "topsis"):
            p = peer_profile(method)
            t, res = median_of(
                lambda df=df, p=p: scoring.monte_carlo(
                    df, p, draws=draws, concentration=100, seed=1
                ),
                1,
            )
            mem = peak_mb(
                lambda df=df, p=p: scoring.monte_carlo(
                    df, p, draws=draws, concentration=100, seed=1
                )
            )
            row: dict[str, Any] = {
                "n_sites": n,
                "draws": draws,
                "method": method,
                "pattogis_s": t,
                "pattogis_ms_per_draw": 1000 * t / draws,
                "peak_traced_mb": mem,
                # what holding every draw at once would take (float64 scores + int32 ranks)
                "full_score_and_rank_matrices_would_be_mb": n * draws * 12 / 2**20,
                "memory_budget_mb": 256,
                "chunk_draws": res.attrs["chunk_draws"],
            }
            if method == "topsis":
                W = scoring.draw_weights(WEIGHTS, 100.0, peer_draws, 1)

                def peer(X: np.ndarray = X, W: np.ndarray = W) -> None:
                    for w in W:
                        rankdata(
                            -TOPSIS(minmax_normalization)(X, w, types, validation=False),
                            method="min",
                        )

                tp, _ = median_of(peer, 1)
                row["peer_pymcdm_loop_draws_timed"] = peer_draws
                row["peer_pymcdm_loop_ms_per_draw"] = 1000 * tp / peer_draws
                row["ratio_per_draw_vs_pymcdm_loop"] = (
                    row["pattogis_ms_per_draw"] / row["peer_pymcdm_loop_ms_per_draw"]
                )
            out.append(row)
            print(json.dumps(row), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--out", default=str(RESULTS))
    a = ap.parse_args()
    if a.quick:
        sizes, repeat, mc_sizes, draws, peer_draws = [1_000, 10_000], 2, [1_000], 100, 20
    else:
        sizes, repeat, mc_sizes, draws, peer_draws = (
            [10_000, 100_000, 1_000_000],
            5,
            [10_000, 100_000],
            1000,
            50,
        )
    from importlib.metadata import version

    import pymcdm  # noqa: F401  (fail early when the peer is missing)

    result = {
        "benchmark": "pattogis.scoring",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "pymcdm": version("pymcdm"),
            # shared machine: other jobs may run; ratios are measured in the same run
            "loadavg_1m_at_start": os.getloadavg()[0],
        },
        "notes": (
            "pattogis timings include input checks, exclusions, missing-data handling, "
            "normalisation and ranks; 'score_only' (score(..., explain=False)) returns what "
            "pymcdm returns (one score per site) plus ranks, the explained table adds "
            "per-criterion norm/contrib/dpos/dneg columns. Same matrix, same min-max "
            "normalisation. "
            "pug_planner runs use ~70% NaN in heat and cycle distance and rank normalisation. "
            "Monte Carlo memory is tracemalloc's peak for the whole call. Times: median of "
            "the same number of runs at every size, after a warm-up call. From 100k to 1M the "
            "criteria matrix (12 x 8 bytes per site, ~96 MB at 1M) no longer fits the CPU "
            "cache, so the time per site rises a little for pymcdm and pattogis alike."
        ),
        "throughput": (thr := bench_throughput(sizes, repeat)),
        "monte_carlo": bench_monte_carlo(mc_sizes, draws, peer_draws),
    }
    result["machine"]["loadavg_1m_at_end"] = os.getloadavg()[0]
    big = thr["rows"][-1]
    result["summary"] = [
        summary_row(f"TOPSIS, {big['n_sites']:,} sites x 12 criteria, score vector",
                    round(big["pattogis_topsis_score_only_s"], 4), "s",
                    peer="pymcdm TOPSIS (min-max), same matrix, same run",
                    peer_value=round(big["pymcdm_topsis_s"], 4), target="ratio <= 1",
                    met=big["ratio_topsis_score_only_vs_pymcdm"] <= 1.0,
                    note=f"max |diff| {big['topsis_score_only_max_abs_diff_vs_pymcdm']:.1e}; "
                         "pattogis adds ranks, exclusions and missing-data handling"),
        summary_row(f"TOPSIS, {big['n_sites']:,} sites, explained table",
                    round(big["pattogis_topsis_s"], 4), "s", peer="pymcdm TOPSIS",
                    peer_value=round(big["pymcdm_topsis_s"], 4),
                    note="plus norm, contrib, dpos, dneg per criterion (50 columns)"),
        summary_row(f"weighted sum, {big['n_sites']:,} sites", round(big["pattogis_wsum_s"], 4),
                    "s", note="explained table"),
    ]
    atomic_write_text(a.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
