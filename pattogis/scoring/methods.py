"""Scoring methods: weighted sum and TOPSIS with per-criterion contributions, exclusions and
missing-data handling (formulas: the :mod:`pattogis.scoring` docstring)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pattogis.errors import InputError
from pattogis.scoring.normalise import DIRECTIONS, Reference, normalise
from pattogis.scoring.profiles import _OPS, METHODS, Profile, load_profile

_TIE_DECIMALS = 12  # scores equal to 12 decimals are ties (float noise must not split them)


@dataclass
class _Prepared:
    """Arrays are criteria-major, shape (k, n): each criterion is one contiguous row."""

    profile: Profile
    norm: np.ndarray  # (k, n) normalised, NaN where missing or excluded
    present: np.ndarray  # (k, n) bool: value usable for the score (eligible and not NaN)
    missing: pd.Categorical  # (n,) comma string of missing weighted criteria
    missing_weight: np.ndarray  # (n,) share of profile weight missing
    excluded: np.ndarray  # (n,) bool
    reason: pd.Categorical  # (n,) Italian reasons joined by "; ", "" if eligible
    reference: Reference | None = None  # normalised against it (fixed ideals) or within the set
    raw: dict[str, np.ndarray] | None = None  # the raw columns, when norm is left to the blocks


def _numeric_columns(data: pd.DataFrame, names: Iterable[str], src: str) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(names))
    absent = [c for c in names if c not in data.columns]
    if absent:
        raise InputError(
            f"criteria table lacks column{'s' if len(absent) > 1 else ''} {', '.join(absent)}"
            f" needed by {src}",
            field=absent[0],
            hint=f"columns present: {', '.join(map(str, data.columns))}",
        )
    out: dict[str, np.ndarray] = {}
    for c in names:
        s = data[c]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
            arr = s.to_numpy(dtype=float)  # fast path: already float, NaN = missing
            bad = np.isinf(arr)
        else:
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna().to_numpy() & s.notna().to_numpy()
            if s.dtype == bool:
                bad[:] = True  # a boolean is not a measurement
            arr = num.to_numpy(dtype=float, na_value=np.nan)
            bad |= np.isinf(arr)
        if bad.any():
            rows = np.flatnonzero(bad).tolist()
            raise InputError(
                f"criterion '{c}' must be a finite number or empty (NaN for missing)",
                rows=rows,
                field=c,
                hint=f"rows are 0-based positions; first bad value {s.iloc[rows[0]]!r}"
                f" at site {data.index[rows[0]]!r}",
            )
        out[c] = arr
    return out


def _pattern_strings(bits: np.ndarray, render: Any) -> pd.Categorical:
    """Per-row bit patterns -> categorical of strings, ``render(pattern)`` once per pattern."""
    if not bits.any():  # the common case at scale: no site missing or excluded anything
        return pd.Categorical.from_codes(np.zeros(bits.size, dtype=np.int8),
                                         categories=[render(0)])
    inv, uniq = pd.factorize(bits, sort=True)  # hashing: O(n), few distinct patterns
    labels = [render(int(u)) for u in uniq]
    cats, codes = np.unique(np.array(labels, dtype=object), return_inverse=True)
    return pd.Categorical.from_codes(codes.reshape(-1)[inv], categories=cats.tolist())


def _prepare(
    data: pd.DataFrame,
    p: Profile,
    norm_out: np.ndarray | None = None,
    reference: Reference | None = None,
    *,
    normalise_rows: bool = True,
) -> _Prepared:
    """Checks, exclusions, missing data and normalisation; ``norm_out`` (k, n) receives the
    normalised values when given (score() hands a slice of its output block). With
    ``reference`` every criterion is normalised against the reference's values."""
    if reference is not None:
        lacking = [c for c in p.names if reference.of(c) is None]
        if lacking:
            raise InputError(
                f"the reference '{reference.source}' has no values for {', '.join(lacking)}",
                field=lacking[0],
                hint="build the reference from a criteria table holding every profile criterion",
            )
    k = len(p.criteria)
    n = len(data)
    cols = _numeric_columns(data, p.names + [e.field for e in p.exclusions], p.source)
    w = p.weights

    # Hard exclusions, one bit per rule (and one more per rule for "cannot be checked").
    nbits = 2 * len(p.exclusions)
    excl_bits = np.zeros(n, dtype=np.int64)
    for i, e in enumerate(p.exclusions):
        v = cols[e.field]
        with np.errstate(invalid="ignore"):
            hit = _OPS[e.op](v, e.value) & ~np.isnan(v)
        excl_bits |= hit.astype(np.int64) << (2 * i)
        if e.if_missing == "exclude":
            excl_bits |= np.isnan(v).astype(np.int64) << (2 * i + 1)

    # Missing weighted criteria, one bit per criterion (weight-0 criteria cannot change a score).
    miss = np.zeros((k, n), dtype=bool)
    for j, c in enumerate(p.names):
        if w[j] > 0:
            np.isnan(cols[c], out=miss[j])
    miss_bits = np.zeros(n, dtype=np.int64)
    for j in range(k):
        miss_bits |= miss[j].astype(np.int64) << j
    missing_weight = w @ miss if miss.any() else np.zeros(n)  # w @ 0 is 0: same values

    def names_of(bits: int) -> list[int]:
        return [j for j in range(k) if bits >> j & 1]

    missing_str = _pattern_strings(miss_bits, lambda b: ",".join(p.names[j] for j in names_of(b)))

    # Missing-data exclusions depend only on the pattern of missing criteria.
    def miss_excluded(b: int) -> str:
        if b == 0:
            return ""
        labels = ", ".join(p.criteria[j].label_it for j in names_of(b))
        share = float(sum(w[j] for j in names_of(b)))
        if share >= 1.0 - 1e-12:
            return f"Nessun criterio disponibile per il calcolo del punteggio ({labels})"
        if p.missing_policy == "exclude":
            return f"Dati mancanti: {labels}"
        if p.max_missing_weight is not None and share > p.max_missing_weight:
            return (
                f"Dati mancanti per il {share:.0%} del peso (limite {p.max_missing_weight:.0%}):"
                f" {labels}"
            )
        return ""

    def render(code: int) -> str:
        parts = []
        for i, e in enumerate(p.exclusions):
            if code >> (2 * i) & 1:
                parts.append(e.reason_it)
            if code >> (2 * i + 1) & 1:
                parts.append(f"Dato mancante, non verificabile: {e.reason_it}")
        m = miss_excluded(code >> nbits)
        if m:
            parts.append(m)
        return "; ".join(parts)

    # One combined code per row -> one reason string per distinct combination.
    reason = _pattern_strings(excl_bits | (miss_bits << nbits), render)
    excluded = np.asarray(reason != "")
    eligible = ~excluded

    if not normalise_rows:  # _fused_scores normalises block by block
        empty = np.empty((k, 0))
        return _Prepared(p, empty, empty.astype(bool), missing_str, missing_weight, excluded,
                         reason, reference, raw=cols)
    norm = np.empty((k, n)) if norm_out is None else norm_out
    all_eligible = bool(eligible.all())
    for j, c in enumerate(p.criteria):
        normalise(
            cols[c.name],
            c.normalise,
            c.direction if c.direction in DIRECTIONS else "max",
            target=c.target,
            tolerance=c.tolerance,
            among=None if all_eligible else eligible,
            reference=None if reference is None else reference.of(c.name),
            out=norm[j],
        )
    if p.missing_policy == "worst":
        # Explicitly pessimistic: a missing weighted value counts as the worst possible (0);
        # the site still lists it in `missing`.
        norm[miss & eligible] = 0.0
    present = ~np.isnan(norm)
    return _Prepared(p, norm, present, missing_str, missing_weight, excluded, reason, reference)


_PACK_BITS = 23  # site index bits of a packed rank key: rows of up to 8,388,608 sites
_QUANTUM = 10**_TIE_DECIMALS  # scores as integers of 1e-12: equal iff equal to 12 decimals


def _ranks_desc(scores: np.ndarray) -> np.ndarray:
    """Competition ranks (1 = best, ties share the lowest) along the last axis; NaN ranks last.

    Works on a 1-D vector or on a (draws, sites) block, sorting each row (contiguous memory).
    Scores in [0, 1] (every method's) are ranked by sorting one int64 key per site, the score in
    units of 1e-12 (descending) above the site's index: a plain integer sort, ~9x faster than
    an argsort of floats at 1M sites. Other values fall back to the argsort.
    """
    scores = np.asarray(scores, dtype=float)
    m = scores.shape[-1]
    flat = scores.ravel()
    lo, hi = (np.fmin.reduce(flat), np.fmax.reduce(flat)) if flat.size else (0.0, 0.0)
    if m < 2**_PACK_BITS and ((np.isnan(lo) and np.isnan(hi)) or (lo >= 0.0 and hi <= 1.0)):
        # rint(x * 1e12) is exactly what np.round(x, 12) rounds to before dividing back
        q = np.rint(scores * _QUANTUM)
        np.subtract(_QUANTUM, q, out=q)  # descending
        q[np.isnan(q)] = 2**40 - 1  # after every score (1e12 < 2**40)
        key = q.astype(np.int64)
        del q
        key <<= _PACK_BITS
        key |= np.arange(m, dtype=np.int64)
        key.sort(axis=-1)
        order = key & (2**_PACK_BITS - 1)
        key >>= _PACK_BITS
        srt = key
    else:
        k = np.round(scores, _TIE_DECIMALS)
        np.negative(k, out=k)
        k[np.isnan(k)] = np.inf
        # tied entries all get the group's first position below, so an unstable sort is safe
        order = np.argsort(k, axis=-1)
        srt = np.sort(k, axis=-1)  # = k in `order`, faster than gathering
        del k
    new = np.ones(srt.shape, dtype=bool)
    np.not_equal(srt[..., 1:], srt[..., :-1], out=new[..., 1:])
    del srt
    pos = np.where(new, np.arange(1, m + 1, dtype=np.int32), np.int32(0))
    del new
    np.maximum.accumulate(pos, axis=-1, out=pos)
    ranks = np.empty(pos.shape, dtype=np.int32)
    np.put_along_axis(ranks, order, pos, axis=-1)
    return ranks


def _ideals(prep: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """TOPSIS ideal and anti-ideal per criterion: max / min normalised value over the eligible
    sites, or, against a reference, the best and worst values a site can have (1 and 0), so a
    site's closeness does not depend on the other sites scored."""
    k, n = prep.norm.shape
    if n and prep.present.all():  # nothing masked: plain (SIMD) reductions, the same values
        if prep.reference is not None:
            return np.ones(k), np.zeros(k)
        return prep.norm.max(axis=1), prep.norm.min(axis=1)
    has = prep.present.any(axis=1)
    if prep.reference is not None:
        return np.where(has, 1.0, np.nan), np.where(has, 0.0, np.nan)
    best = np.max(prep.norm, axis=1, where=prep.present, initial=-np.inf)
    worst = np.min(prep.norm, axis=1, where=prep.present, initial=np.inf)
    return np.where(has, best, np.nan), np.where(has, worst, np.nan)


@dataclass
class _Scores:
    total: np.ndarray  # (n,)
    contrib: np.ndarray  # (k, n)
    extra: dict[str, np.ndarray]  # TOPSIS terms: d_pos, d_neg (n,), dpos, dneg (k, n)


_CHUNK = 32_768  # sites per block: a criterion row of a block (256 kB) stays in the CPU cache


def _score_arrays(
    prep: _Prepared, method: str, out: np.ndarray | None = None, *, explain: bool = True
) -> _Scores:
    """Scores and per-criterion terms.

    ``out``, when given, is the (rows, n) block that receives contrib (k rows) and, for TOPSIS,
    d_pos, d_neg, dpos (k), dneg (k), in that order. ``explain=False`` computes the scores only
    (the same values, to the bit). The sites are taken in blocks of ``_CHUNK`` and each block one
    criterion row at a time: every operation is element-wise within a site or a sum over its
    criteria in profile order, so the blocking changes no bit, and the rows stay in the cache.
    """
    k, n = prep.norm.shape
    rows = (k if method == "wsum" else 3 * k + 2)
    if out is None and explain:
        out = np.empty((rows, n))
    best, worst = _ideals(prep) if method == "topsis" else (None, None)
    total = np.empty(n)
    w = prep.profile.weights
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        blk = out[:, s:e] if out is not None else None
        total[s:e] = _score_block(prep.norm[:, s:e], prep.present[:, s:e], w, method, best,
                                  worst, blk)
    if out is None:
        return _Scores(total, np.empty((0, n)), {})
    contrib = out[:k]
    if method == "wsum":
        return _Scores(total, contrib, {})
    return _Scores(total, contrib, {"d_pos": out[k], "d_neg": out[k + 1],
                                    "dpos": out[k + 2 : 2 * k + 2],
                                    "dneg": out[2 * k + 2 : 3 * k + 2]})


def _score_block(norm: np.ndarray, present: np.ndarray, w: np.ndarray, method: str,
                 best: np.ndarray | None, worst: np.ndarray | None,
                 out: np.ndarray | None) -> np.ndarray:
    """The scores of one block of sites (see :func:`_score_arrays`); ``out`` the block's rows of
    the output, or None for scores only."""
    k, n = norm.shape
    all_present = bool(present.all())
    # Per-site weights: the weights of the criteria present, rescaled to sum 1 (renormalise).
    if all_present:
        w_site: float | np.ndarray = 0.0
        for j in range(k):
            w_site += w[j]
        w_rows = [w[j] / w_site for j in range(k)]
    else:
        w_site = np.zeros(n)
        for j in range(k):
            np.add(w_site, w[j], out=w_site, where=present[j])
        w_eff_block = np.empty((k, n))
        with np.errstate(invalid="ignore", divide="ignore"):
            for j in range(k):
                np.divide(w[j], w_site, out=w_eff_block[j])
        np.copyto(w_eff_block, np.nan, where=~present)

    def w_eff(j: int) -> float | np.ndarray:
        return w_rows[j] if all_present else w_eff_block[j]

    def add(acc: np.ndarray, j: int, term: np.ndarray) -> None:
        # the sum over the criteria present (a missing term is NaN and is skipped)
        if all_present:
            acc += term
        else:
            np.add(acc, term, out=acc, where=present[j])

    total = np.zeros(n)
    if method == "wsum":
        for j in range(k):
            c = np.multiply(w_eff(j), norm[j], out=None if out is None else out[j])
            add(total, j, c)
        return total
    assert best is not None and worst is not None
    if out is not None:
        contrib = out[:k]
        d_pos, d_neg = out[k], out[k + 1]
        dpos, dneg = out[k + 2 : 2 * k + 2], out[2 * k + 2 : 3 * k + 2]
    else:
        contrib, dpos = None, None
        d_pos, d_neg = np.empty(n), np.empty(n)
        dneg = np.empty((k, n))  # kept for the contributions below
    d_pos[:] = 0.0
    d_neg[:] = 0.0

    def dist(j: int, ref: np.ndarray, into: np.ndarray | None) -> np.ndarray:
        t = np.subtract(norm[j], ref[j], out=into)
        t *= w_eff(j)
        t **= 2
        return t

    for j in range(k):
        add(d_pos, j, dist(j, best, None if dpos is None else dpos[j]))
        add(d_neg, j, dist(j, worst, dneg[j]))
    np.sqrt(d_pos, out=d_pos)
    np.sqrt(d_neg, out=d_neg)
    den = d_pos + d_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        closeness = np.where(den > 0, d_neg / den, 1.0)
        # contrib_j = closeness * dneg_j / d_neg**2 (share of the squared distance from the
        # anti-ideal); where d_neg = 0 the score (0, or 1 if d_pos = 0 too) is shared by weight
        factor = np.where(d_neg > 0, closeness / d_neg**2, 0.0)
    flat = np.flatnonzero(d_neg == 0)
    for j in range(k):
        c = np.multiply(dneg[j], factor, out=None if contrib is None else contrib[j])
        if flat.size:
            c[flat] = closeness[flat] * np.broadcast_to(w_eff(j), (n,))[flat]
        add(total, j, c)  # the score as the exact sum of its parts (as for wsum)
    return total if all_present else np.where(present.any(axis=0), total, np.nan)


def _fusable(p: Profile) -> bool:
    """Profiles whose scores :func:`_fused_scores` computes: min-max criteria only, no 'worst'."""
    return p.missing_policy != "worst" and all(c.normalise == "minmax" for c in p.criteria)


def _fused_scores(prep: _Prepared, method: str) -> np.ndarray:
    """The scores alone, min-max normalising each block of sites as it is scored: the (k, n)
    normalised and presence arrays are never built (at 1M sites they are 108 MB written and read
    back). The same operations on the same values as :func:`minmax` then :func:`_score_arrays`,
    so the same bits; the ideals follow from the bounds (a min-max row's largest value is
    exactly 1 and its smallest exactly 0, or 1 for a constant row)."""
    p, raw, eligible = prep.profile, prep.raw, ~prep.excluded
    assert raw is not None
    k, n = len(p.criteria), prep.excluded.size
    all_eligible = bool(eligible.all())
    spec = []  # per criterion: x, ref mask or None (all usable), lo, hi, direction, has
    best, worst = np.full(k, np.nan), np.full(k, np.nan)
    for j, c in enumerate(p.criteria):
        x = raw[c.name]
        ok = ~np.isnan(x)
        ref = ok if all_eligible else ok & eligible
        r = None if prep.reference is None else prep.reference.of(c.name)
        if r is not None:
            has, lo, hi = r.size > 0 and bool(ref.any()), float(r[0]) if r.size else 0.0, (
                float(r[-1]) if r.size else 0.0)
        elif not ref.any():
            has, lo, hi = False, 0.0, 0.0
        elif ref.all():
            has, lo, hi = True, float(x.min()), float(x.max())
        else:
            has = True
            lo = float(np.min(x, where=ref, initial=np.inf))
            hi = float(np.max(x, where=ref, initial=-np.inf))
        if has:
            if prep.reference is not None:
                best[j], worst[j] = 1.0, 0.0
            else:
                best[j], worst[j] = (1.0, 1.0) if lo == hi else (1.0, 0.0)
        usable = has and (r is None or r.size > 0)
        spec.append((x, None if bool(ref.all()) else ref, lo, hi, c.direction, usable))
    w = p.weights
    total = np.empty(n)
    for s in range(0, n, _CHUNK):
        e = min(n, s + _CHUNK)
        norm = np.empty((k, e - s))
        for j, (x, ref, lo, hi, direction, usable) in enumerate(spec):
            row = norm[j]
            if not usable:
                row[...] = np.nan
                continue
            if lo == hi:
                row[...] = 1.0
            elif direction == "min":
                np.subtract(hi, x[s:e], out=row)
                row /= hi - lo
            else:
                np.subtract(x[s:e], lo, out=row)
                row /= hi - lo
            if prep.reference is not None:
                np.clip(row, 0.0, 1.0, out=row)
            if ref is not None:
                np.copyto(row, np.nan, where=~ref[s:e])
        present = ~np.isnan(norm)
        total[s:e] = _score_block(norm, present, w, method, best, worst, None)
    return total


def score(
    data: pd.DataFrame,
    profile: str | Mapping[str, Any] | Profile,
    *,
    method: str | None = None,
    reference: Reference | None = None,
    explain: bool = True,
) -> pd.DataFrame:
    """Score candidate sites with a weight profile.

    ``explain=False`` returns the first six columns only (score, rank, exclusions, missing
    data), the same values, without the per-criterion columns (what a quick ranking needs; the
    1M-site benchmark against pymcdm's preference vector).

    ``reference``: normalise against these fixed values (:class:`Reference`, e.g.
    :meth:`pattogis.workspace.Workspace.reference`, the metropolitan candidate set), so a site's
    ``score``, ``norm_*`` and ``contrib_*`` depend on that site alone and mean the same in every
    call; None normalises within the set scored (bounds from its eligible sites). ``rank`` is
    always the rank within the set scored.

    ``data``: one row per site, index = site id, columns = raw criteria (see
    :func:`known_criteria`, NaN = missing); a GeoDataFrame keeps its geometry and CRS in the output.
    ``method`` overrides the profile's (``wsum`` | ``topsis``).

    Returns a frame with the same index and columns ``score`` (0..1, NaN if excluded), ``rank``
    (Int64, 1 = best, ties share the lowest rank, NA if excluded), ``excluded``,
    ``exclusion_reason`` (Italian, "; "-joined, "" if eligible), ``missing`` (comma string of the
    weighted criteria that were NaN, "" if none), ``missing_weight`` (their share of the weight),
    then ``norm_<crit>`` and ``contrib_<crit>`` for every criterion (NaN where missing or
    excluded); TOPSIS adds ``d_pos``, ``d_neg``, ``dpos_<crit>`` and ``dneg_<crit>``. The two
    string columns are categoricals (few distinct values). See the module docstring for the
    formulas. ``out.attrs`` holds the profile (``to_dict()``) and the method.
    """
    p = load_profile(profile)
    method = _check_method(method or p.method)
    names = p.names
    k, n = len(names), len(data)
    # One (rows, n) block receives every per-criterion array in place and becomes the frame's
    # float block without copies (strided per-column copies dominated at 1M sites otherwise).
    colnames = [f"norm_{c}" for c in names] + [f"contrib_{c}" for c in names]
    if method == "topsis":
        colnames += ["d_pos", "d_neg"] + [f"dpos_{c}" for c in names] + [f"dneg_{c}" for c in names]
    if not explain:
        colnames = colnames[:k]  # the normalised values are needed; they are not returned
    if not explain and _fusable(p):
        block = np.empty((0, n))
        prep = _prepare(data, p, reference=reference, normalise_rows=False)
        sc = _Scores(_fused_scores(prep, method), block, {})
    else:
        block = np.empty((len(colnames), n))
        prep = _prepare(data, p, norm_out=block[:k], reference=reference)
        sc = _score_arrays(prep, method, out=block[k:] if explain else None, explain=explain)
    excl = prep.excluded
    total = np.where(excl, np.nan, sc.total)
    if method == "topsis" and explain:
        block[2 * k : 2 * k + 2, excl] = np.nan  # d_pos, d_neg of excluded sites
    ranks = _ranks_desc(total)
    rank = pd.array(ranks, dtype="Int64")
    rank[excl] = pd.NA

    # Column by column: the dict constructor would stack the two float columns into one block
    # (a copy of both at 1M sites); inserted columns keep their own arrays.
    head = pd.DataFrame({"score": total}, index=data.index, copy=False)
    head["rank"] = rank
    head["excluded"] = excl
    head["exclusion_reason"] = prep.reason
    head["missing"] = prep.missing
    head["missing_weight"] = prep.missing_weight
    if explain:
        body = pd.DataFrame(block.T, index=data.index, columns=colnames, copy=False)
        out = pd.concat([head, body], axis=1)
    else:
        out = head
    out = _keep_geometry(data, out)
    out.attrs["profile"] = p.to_dict()
    out.attrs["method"] = method
    out.attrs["reference"] = "within the set scored" if reference is None else reference.source
    return out


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise InputError(
            f"unknown scoring method {method!r}; use one of {', '.join(METHODS)}", field="method"
        )
    return method


def _keep_geometry(data: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    geom = getattr(data, "_geometry_column_name", None)
    if geom is None or geom not in data.columns:
        return out
    import geopandas as gpd  # only when the caller already works with geometries

    out[geom] = data[geom].to_numpy()
    return gpd.GeoDataFrame(out, geometry=geom, crs=data.crs)

