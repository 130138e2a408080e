"""Robustness of a ranking to its weights: Monte Carlo (Dirichlet) perturbation, rank
intervals and the probability of being in the top k."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pattogis.errors import InputError
from pattogis.scoring.methods import _check_method, _ideals, _prepare, _ranks_desc, _score_arrays
from pattogis.scoring.normalise import Reference
from pattogis.scoring.profiles import Profile, load_profile


def draw_weights(
    weights: np.ndarray, concentration: float, draws: int, seed: int | np.random.Generator | None
) -> np.ndarray:
    """``draws`` weight vectors from Dirichlet(concentration * weights), shape (draws, k).

    Mean = ``weights``; variance of w_j = w_j (1 - w_j) / (concentration + 1). Criteria with
    weight 0 stay 0; ``concentration = inf`` returns the weights unchanged.
    """
    w = np.asarray(weights, dtype=float)
    out = np.zeros((draws, w.size))
    pos = w > 0
    if math.isinf(concentration):
        out[:, pos] = w[pos]
        return out
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out[:, pos] = rng.dirichlet(concentration * w[pos], size=draws)
    return out


def _quantile_from_buffers(low: np.ndarray, high: np.ndarray, q: float, draws: int) -> np.ndarray:
    """numpy's default (linear) percentile from the kept smallest / largest order statistics.

    ``low`` holds the ``b_lo`` smallest values per row (sorted), ``high`` the ``b_hi`` largest
    (sorted ascending, i.e. order statistics ``draws - b_hi`` .. ``draws - 1``).
    """
    h = q * (draws - 1)
    i = int(math.floor(h))
    frac = h - i
    j = min(i + 1, draws - 1)

    def stat(idx: int) -> np.ndarray:
        if idx < low.shape[1]:
            return low[:, idx].astype(float)
        return high[:, idx - (draws - high.shape[1])].astype(float)

    return stat(i) + frac * (stat(j) - stat(i))


def monte_carlo(
    data: pd.DataFrame,
    profile: str | Mapping[str, Any] | Profile,
    *,
    method: str | None = None,
    draws: int | None = None,
    concentration: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    quantiles: tuple[float, float] = (0.05, 0.95),
    memory_mb: float = 256.0,
    reference: Reference | None = None,
) -> pd.DataFrame:
    """Robustness of the ranking to the weights: Dirichlet perturbation around the profile.

    For each of ``draws`` weight vectors (Dirichlet with mean = profile weights and the given
    ``concentration``; larger = tighter) every eligible site is re-scored and re-ranked with the
    same normalised values, exclusions and missing-data handling as :func:`score`. Returns, per
    site (same index as ``data``): ``rank`` (deterministic), ``rank_mean``, ``rank_p5`` and
    ``rank_p95`` (numpy-linear percentiles, names follow ``quantiles``), ``rank_min``,
    ``rank_max`` and ``p_top_k`` (share of draws ranked <= ``top_k``); NaN for excluded sites.
    Defaults come from the profile's ``monte_carlo`` section. ``reference``: as for
    :func:`~pattogis.scoring.score` (ranks are always within the set scored).

    Memory: draws are processed in chunks whose working set (scores and ranks of every eligible
    site for the chunk's draws, ~56 bytes per draw and site) stays within ``memory_mb``; across
    chunks only exact order-statistic buffers are kept, about ``2 * (q_low + 1 - q_high) * draws``
    int32 per site (plus one chunk), never the full (sites x draws) rank matrix. Ranking is
    O(draws * n log n). Results depend only on ``seed``, not on the chunking.
    """
    p = load_profile(profile)
    method = _check_method(method or p.method)
    draws = p.mc_draws if draws is None else int(draws)
    conc = p.mc_concentration if concentration is None else float(concentration)
    top_k = p.mc_top_k if top_k is None else int(top_k)
    seed = p.mc_seed if seed is None else seed
    q_lo, q_hi = quantiles
    if draws < 1 or top_k < 1 or not conc > 0:
        raise InputError("monte_carlo needs draws >= 1, top_k >= 1 and concentration > 0")
    if not 0 <= q_lo <= 0.5 <= q_hi <= 1:
        raise InputError(f"quantiles must satisfy 0 <= low <= 0.5 <= high <= 1, got {quantiles}")

    prep = _prepare(data, p, reference=reference)
    elig = ~prep.excluded
    det_total = np.where(prep.excluded, np.nan, _score_arrays(prep, method, explain=False).total)
    det_rank = pd.array(_ranks_desc(det_total), dtype="Int64")
    det_rank[prep.excluded] = pd.NA
    nm = prep.norm[:, elig]  # (k, m)
    pres = prep.present[:, elig].astype(float)
    m = nm.shape[1]
    W = draw_weights(p.weights, conc, draws, seed)  # all draws up front: chunking-independent

    if method == "wsum":
        a = np.where(pres > 0, nm, 0.0)  # masked out by `pres` in the denominator

        def block(wc: np.ndarray) -> np.ndarray:
            num = wc @ a
            with np.errstate(invalid="ignore", divide="ignore"):
                num /= wc @ pres
            return num
    else:
        best, worst = _ideals(prep)
        # Per-site renormalisation scales d_pos and d_neg alike, so closeness ignores it.
        ap = np.where(pres > 0, (nm - best[:, None]) ** 2, 0.0)
        an = np.where(pres > 0, (nm - worst[:, None]) ** 2, 0.0)

        def block(wc: np.ndarray) -> np.ndarray:
            w2 = wc**2
            den = np.sqrt(w2 @ ap)  # d_pos, then d_pos + d_neg
            dn = np.sqrt(w2 @ an)
            den += dn
            flat = den == 0
            with np.errstate(invalid="ignore", divide="ignore"):
                dn /= den
            dn[flat] = 1.0  # same convention as score(): ideal = anti-ideal -> 1
            return dn

    b_lo = min(draws, int(math.floor(q_lo * (draws - 1))) + 2)
    b_hi = min(draws, draws - int(math.floor(q_hi * (draws - 1))))
    # Working set per (draw, site) in a chunk: ~2 float64 in block(), ~5 arrays in ranking.
    chunk = max(1, min(draws, int(memory_mb * 2**20 // (max(m, 1) * 8 * 7))))
    # Order-statistic buffers: the b smallest / largest ranks seen so far per site, plus room for
    # new draws; partitioned only when full, so each rank is partitioned O(1) times on average.
    cap_lo, cap_hi = b_lo + max(chunk, b_lo), b_hi + max(chunk, b_hi)
    low = np.empty((m, cap_lo), dtype=np.int32)
    high = np.empty((m, cap_hi), dtype=np.int32)
    f_lo = f_hi = 0
    rmin = np.full(m, np.iinfo(np.int32).max, dtype=np.int32)
    rmax = np.zeros(m, dtype=np.int32)
    rsum = np.zeros(m, dtype=np.float64)
    top = np.zeros(m, dtype=np.int64)
    for s in range(0, draws if m else 0, chunk):
        r = _ranks_desc(block(W[s : s + chunk]))  # (c, m)
        c = r.shape[0]
        np.minimum(rmin, r.min(axis=0), out=rmin)
        np.maximum(rmax, r.max(axis=0), out=rmax)
        rsum += r.sum(axis=0, dtype=np.float64)
        top += (r <= top_k).sum(axis=0)
        if f_lo + c > cap_lo:
            low[:, :f_lo].partition(b_lo - 1, axis=1)
            f_lo = b_lo
        low[:, f_lo : f_lo + c] = r.T
        f_lo += c
        if f_hi + c > cap_hi:
            high[:, :f_hi].partition(f_hi - b_hi, axis=1)
            high[:, :b_hi] = high[:, f_hi - b_hi : f_hi]
            f_hi = b_hi
        high[:, f_hi : f_hi + c] = r.T
        f_hi += c
        del r
    if f_lo > b_lo:
        low[:, :f_lo].partition(b_lo - 1, axis=1)
    if f_hi > b_hi:
        high[:, :f_hi].partition(f_hi - b_hi, axis=1)
        high[:, :b_hi] = high[:, f_hi - b_hi : f_hi]
    low = np.sort(low[:, :b_lo], axis=1)
    high = np.sort(high[:, :b_hi], axis=1)

    def spread(v: np.ndarray) -> np.ndarray:
        out = np.full(len(data), np.nan)
        out[elig] = v
        return out

    def qname(q: float) -> str:
        return f"rank_p{q * 100:g}".replace(".", "_")

    res = pd.DataFrame(
        {
            "rank": det_rank,
            "rank_mean": spread(rsum / draws if m else rsum),
            qname(q_lo): spread(_quantile_from_buffers(low, high, q_lo, draws) if m else rsum),
            qname(q_hi): spread(_quantile_from_buffers(low, high, q_hi, draws) if m else rsum),
            "rank_min": spread(rmin.astype(float)),
            "rank_max": spread(rmax.astype(float)),
            "p_top_k": spread(top / draws),
        },
        index=data.index,
    )
    res["rank"] = res["rank"].astype("Int64")
    res.attrs.update(
        {
            "top_k": top_k,
            "draws": draws,
            "concentration": conc,
            "seed": seed,
            "method": method,
            "profile": p.name,
            "chunk_draws": chunk,
        }
    )
    return res

