"""Normalisation of one criterion to [0, 1], 1 = best: min-max, mid-rank, target.

Every function normalises either **within the set** (bounds from the entries selected by
``among``: what pymcdm and most MCDA tools do) or **against a reference** (``reference``: the
finite values of a fixed set of sites, e.g. the metropolitan candidate set, see
:class:`Reference`). Against a reference a site's value depends on that site and the reference
only, never on which other sites are scored with it; values beyond the reference's range are
clipped to [0, 1]. NaN stays NaN.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

NORMALISATIONS = ("minmax", "rank", "target")
DIRECTIONS = ("max", "min")


@dataclass(frozen=True, eq=False)
class Reference:
    """The fixed sets of values scores are normalised against, one per criterion.

    ``values[name]`` holds the sorted finite values of criterion ``name`` over the reference
    sites, in the criterion's unit. Min-max uses their range, rank normalisation their
    distribution (a site's mid-rank among them), target normalisation without a tolerance their
    farthest distance from the target. ``source`` says where they come from (shown in reports).
    """

    values: Mapping[str, np.ndarray]
    source: str = "<reference>"
    n_sites: int = 0

    @classmethod
    def from_frame(
        cls, data: pd.DataFrame, *, source: str, criteria: Iterable[str] | None = None
    ) -> Reference:
        """A reference from a criteria table (one row per reference site, raw criterion columns;
        non-numeric and NaN values are left out). ``criteria``: the columns to keep (default:
        every numeric column)."""
        cols = list(criteria) if criteria is not None else [
            c for c in data.columns if pd.api.types.is_numeric_dtype(data[c])
            and not pd.api.types.is_bool_dtype(data[c])
        ]
        vals: dict[str, np.ndarray] = {}
        for c in cols:
            if c not in data.columns:
                continue
            v = pd.to_numeric(data[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            v = np.sort(v[np.isfinite(v)])
            v.setflags(write=False)  # shared read-only by every request
            vals[c] = v
        return cls(vals, source, len(data))

    def of(self, name: str) -> np.ndarray | None:
        return self.values.get(name)

    def ranges(self) -> pd.DataFrame:
        """min, max and count of the reference values per criterion (for docs and reports)."""
        return pd.DataFrame(
            {
                "min": {k: (v[0] if v.size else np.nan) for k, v in self.values.items()},
                "max": {k: (v[-1] if v.size else np.nan) for k, v in self.values.items()},
                "n": {k: v.size for k, v in self.values.items()},
            }
        )


def _as_float(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=float)


def _reference(x: np.ndarray, among: np.ndarray | None) -> np.ndarray:
    """Boolean mask of the entries that define bounds: finite and inside ``among``."""
    ok = ~np.isnan(x)
    return ok if among is None else ok & np.asarray(among, dtype=bool)


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def _ref_values(reference: Any) -> np.ndarray:
    r = np.asarray(reference, dtype=float)
    r = r[np.isfinite(r)]
    return r if np.all(r[:-1] <= r[1:]) else np.sort(r)


def minmax(x: Any, direction: str = "max", *, among: Any = None, reference: Any = None,
           out: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalisation to [0, 1], 1 = best.

    ``max``: (x - min) / (max - min); ``min``: (max - x) / (max - min). Min and max are taken over
    the non-NaN entries selected by ``among`` (all by default), or over ``reference`` (values of
    a fixed reference set; results clipped to [0, 1]) when given; entries outside ``among`` and NaN
    entries come back NaN. A constant column gives 1 everywhere (pymcdm's convention). ``out``:
    an array of x's shape to write the result into (no copy at 1M sites).
    """
    _check_direction(direction)
    x = _as_float(x)
    ref = _reference(x, among)
    all_ref = bool(ref.all())
    if reference is not None:
        r = _ref_values(reference)
        if r.size == 0:
            return _filled(out, x.shape)
        lo, hi = float(r[0]), float(r[-1])
    else:
        if not ref.any():
            return _filled(out, x.shape)
        if all_ref:  # plain reductions are SIMD; masked ones are not (hot path at 1M sites)
            lo, hi = float(x.min()), float(x.max())
        else:  # masked reductions: no copies of the selected entries
            lo = float(np.min(x, where=ref, initial=np.inf))
            hi = float(np.max(x, where=ref, initial=-np.inf))
    if out is None:
        out = np.empty(x.shape)
    if lo == hi:
        out[...] = 1.0
    elif direction == "max":
        np.subtract(x, lo, out=out)
        out /= hi - lo
    else:
        np.subtract(hi, x, out=out)
        out /= hi - lo
    if reference is not None:
        np.clip(out, 0.0, 1.0, out=out)
    if not all_ref:
        np.copyto(out, np.nan, where=~ref)
    return out


def _filled(out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if out is None:
        return np.full(shape, np.nan)
    out[...] = np.nan
    return out


def rank_normalise(
    x: Any, direction: str = "max", *, among: Any = None, reference: Any = None
) -> np.ndarray:
    """Rank normalisation to [0, 1], 1 = best: (r - 1) / (n - 1) with r the mid-rank.

    Ties share their average rank, so a constant column gives 0.5 and a single site gives 1.
    Only the order matters, not the distances: robust to outliers. NaN stays NaN. With
    ``reference`` (n values), r is the mid-rank the value would take among the reference values
    (``#below + (#equal + 1) / 2``; a value not in the reference sits half-way between its
    neighbours), clipped to [0, 1]: scoring the reference set itself gives the within-set values.
    """
    _check_direction(direction)
    x = _as_float(x)
    ref = _reference(x, among)
    out = np.full(x.shape, np.nan)
    if reference is not None:
        r = _ref_values(reference)
        n = r.size
        if n == 0:
            return out
        if n == 1:
            out[ref] = 1.0
            return out
        v = x[ref]
        below = np.searchsorted(r, v, side="left").astype(float)
        upto = np.searchsorted(r, v, side="right").astype(float)
        # ascending mid-rank position, 0-based: below + (equal - 1) / 2
        pos = below + (upto - below - 1.0) / 2.0
        if direction == "min":
            pos = (n - 1.0) - pos
        out[ref] = np.clip(pos / (n - 1.0), 0.0, 1.0)
        return out
    n = int(ref.sum())
    if n == 0:
        return out
    if n == 1:
        out[ref] = 1.0
        return out
    vals = x[ref] if direction == "max" else -x[ref]
    rk = pd.Series(vals).rank(method="average").to_numpy()
    out[ref] = (rk - 1.0) / (n - 1.0)
    return out


def target_normalise(
    x: Any,
    target: float | Sequence[float],
    tolerance: float | None = None,
    *,
    among: Any = None,
    reference: Any = None,
) -> np.ndarray:
    """Target normalisation to [0, 1]: 1 inside the target value or range, falling linearly.

    ``d`` is the distance of ``x`` from ``target`` (a value, or ``[low, high]``: 0 inside). With
    ``tolerance`` the value is ``max(0, 1 - d / tolerance)`` (0 beyond the tolerance, same unit as
    ``x``); without it ``1 - d / max(d)`` over the reference sites (``among``, or the
    ``reference`` values when given; the farthest gets 0; if all are on target all get 1). NaN
    stays NaN.
    """
    lo, hi = _target_range(target)
    x = _as_float(x)
    ref = _reference(x, among)
    if reference is None and not ref.any():
        return np.full(x.shape, np.nan)
    with np.errstate(invalid="ignore"):
        d = np.maximum(np.maximum(lo - x, x - hi), 0.0)
    if tolerance is not None:
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        out = np.clip(1.0 - d / tolerance, 0.0, 1.0)
    else:
        if reference is not None:
            r = _ref_values(reference)
            if r.size == 0:
                return np.full(x.shape, np.nan)
            dmax = float(max(lo - r[0], r[-1] - hi, 0.0))
        else:
            dmax = float(np.max(d, where=ref, initial=0.0))
        out = np.ones(x.shape) if dmax == 0.0 else np.clip(1.0 - d / dmax, 0.0, 1.0)
    out[~ref] = np.nan
    return out


def _target_range(target: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(target, int | float) and not isinstance(target, bool):
        return float(target), float(target)
    lo, hi = (float(v) for v in target)  # type: ignore[union-attr]
    if lo > hi:
        raise ValueError(f"target range low {lo} is above high {hi}")
    return lo, hi


def normalise(
    x: Any,
    method: str = "minmax",
    direction: str = "max",
    *,
    target: float | Sequence[float] | None = None,
    tolerance: float | None = None,
    among: Any = None,
    reference: Any = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise one criterion with ``method`` in {minmax, rank, target}; see the functions.
    ``reference``: values of a fixed reference set (see :class:`Reference`), or None (within the
    set)."""
    if method == "minmax":
        return minmax(x, direction, among=among, reference=reference, out=out)
    if method == "rank":
        res = rank_normalise(x, direction, among=among, reference=reference)
        if out is None:
            return res
        out[...] = res
        return out
    if method == "target":
        if target is None:
            raise ValueError("target normalisation needs a target value or range")
        res = target_normalise(x, target, tolerance, among=among, reference=reference)
        if out is None:
            return res
        out[...] = res
        return out
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {method!r}")
