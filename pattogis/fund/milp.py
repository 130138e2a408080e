"""Exact 0/1 solves for the fund's optimal mode: scipy.optimize.milp (HiGHS) with an LP-based
reduced-cost fixing step that keeps the proof of optimality.

Why: the fund's models are knapsacks with a few dense equity rows. Their LP relaxation is very
tight, but HiGHS spends most of its time presolving and probing thousands of binaries through
the dense rows. Fixing, before the MILP, every variable whose LP reduced profit shows it cannot
be part of any portfolio close to the LP bound leaves a few hundred free variables, solved in a
fraction of the time, with the same optimum.

The argument (maximise v·x, A x <= b, x in {0,1}^n): for any multipliers y >= 0 from the LP
and reduced profits r = v - yA, every feasible x satisfies

    v·x <= UB - sum_{j : x_j != xhat_j} |r_j|,   UB = y·b + sum_j r_j xhat_j,  xhat_j = [r_j > 0].

UB and r are recomputed here from y (not taken from the LP solver), so the bound holds for
whatever y the LP returns. Fixing x_j = xhat_j for |r_j| > delta removes only portfolios worth
less than UB - delta; a reduced optimum worth at least UB - delta is therefore the global optimum,
and every portfolio at least as good (ties included) is still in the reduced problem. Otherwise
delta grows and the reduced problem is solved again; at worst no variable is fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Extra = tuple[np.ndarray, float, float]  # one row: (coefficients, lower, upper)


@dataclass
class Group:
    """A named group of constraints: rows ``lb <= A x <= ub`` (integer data) and/or a fixed
    variable. ``check`` re-verifies a 0/1 solution exactly."""

    name: str
    kind: str
    description: str
    A: np.ndarray | None = None
    lb: np.ndarray | None = None
    ub: np.ndarray | None = None
    fix: tuple[int, int] | None = None  # (variable, value)
    meta: dict[str, Any] = field(default_factory=dict)

    def check(self, x: np.ndarray) -> bool:
        if self.fix is not None:
            return int(x[self.fix[0]]) == self.fix[1]
        assert self.A is not None and self.lb is not None and self.ub is not None
        # exact: integer coefficients, Python ints (object) to rule out overflow
        act = self.A.astype(np.int64).astype(object) @ x.astype(object)
        return bool(np.all(act >= self.lb) & np.all(act <= self.ub))


@dataclass
class Model:
    """All rows and bounds of one 0/1 problem."""

    A: np.ndarray
    L: np.ndarray
    U: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @property
    def n(self) -> int:
        return len(self.lo)


def assemble(n: int, groups: list[Group], extra: list[Extra] | tuple[Extra, ...] = ()) -> Model:
    lo = np.zeros(n)
    hi = np.ones(n)
    rows, lbs, ubs = [np.zeros((0, n))], [np.zeros(0)], [np.zeros(0)]
    for gr in groups:
        if gr.fix is not None:
            lo[gr.fix[0]] = hi[gr.fix[0]] = gr.fix[1]
        else:
            assert gr.A is not None and gr.lb is not None and gr.ub is not None
            rows.append(gr.A)
            lbs.append(gr.lb)
            ubs.append(gr.ub)
    for a, lb_, ub_ in extra:
        rows.append(a[None, :])
        lbs.append(np.array([lb_]))
        ubs.append(np.array([ub_]))
    return Model(np.vstack(rows), np.concatenate(lbs), np.concatenate(ubs), lo, hi)


@dataclass
class Solve:
    status: int  # scipy.optimize.milp codes: 0 optimal, 1 limit, 2 infeasible, 3 unbounded, 4 other
    message: str
    x: np.ndarray | None
    mip_gap: float | None
    dual_bound: float | None  # of the maximisation (objective units)
    nodes: int | None
    seconds: float
    n_free: int = 0
    lp_bound: float | None = None
    delta: float | None = None
    fixed: np.ndarray | None = None  # variables held at the LP bound's xhat


def solve_milp(m: Model, v: np.ndarray, time_limit: float, gap: float,
               fixed: np.ndarray | None = None, xfix: np.ndarray | None = None) -> Solve:
    """Maximise ``v·x`` over the model; variables in ``fixed`` are held at ``xfix`` and moved
    out of the problem (their row activity shifts the row bounds)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    t0 = time.perf_counter()
    n = m.n
    if fixed is None or not fixed.any():
        free = np.ones(n, dtype=bool)
        A, L, U, base = m.A, m.L, m.U, np.zeros(n)
    else:
        assert xfix is not None
        free = ~fixed
        base = np.where(fixed, xfix, 0.0)
        shift = m.A[:, fixed] @ base[fixed]
        A, L, U = m.A[:, free], m.L - shift, m.U - shift
    k = int(free.sum())
    if k == 0:
        x = base.astype(np.int64)
        act = m.A @ x
        ok = bool(np.all(act >= m.L) & np.all(act <= m.U))
        return Solve(0 if ok else 2, "all variables fixed", x if ok else None, 0.0,
                     float(v @ x) if ok else None, 0, time.perf_counter() - t0, 0)
    cons = [LinearConstraint(A, L, U)] if len(L) else []
    res = milp(-v[free], integrality=np.ones(k), bounds=Bounds(m.lo[free], m.hi[free]),
               constraints=cons,
               options={"time_limit": max(float(time_limit), 0.1), "mip_rel_gap": float(gap),
                        "presolve": True})
    x = None
    if res.x is not None:
        x = base.copy()
        x[free] = res.x
        x = np.rint(x).astype(np.int64)
    db = getattr(res, "mip_dual_bound", None)
    const = float(v[~free] @ base[~free]) if (~free).any() else 0.0
    return Solve(int(res.status), str(res.message), x, getattr(res, "mip_gap", None),
                 None if db is None else -float(db) + const, getattr(res, "mip_node_count", None),
                 time.perf_counter() - t0, k)


@dataclass
class LPBound:
    ub: float
    r: np.ndarray
    xhat: np.ndarray
    seconds: float


def lp_bound(m: Model, v: np.ndarray) -> LPBound | None | bool:
    """Lagrangian bound from the LP relaxation (see the module doc). Returns ``False`` when the
    LP is infeasible (so is the MILP), ``None`` when the LP failed otherwise."""
    from scipy.optimize import linprog  # here: the API starts without scipy.optimize

    t0 = time.perf_counter()
    up = np.isfinite(m.U)
    dn = np.isfinite(m.L)
    A_ub = np.vstack([m.A[up], -m.A[dn]])
    b_ub = np.concatenate([m.U[up], -m.L[dn]])
    res = linprog(-v, A_ub=A_ub if len(b_ub) else None, b_ub=b_ub if len(b_ub) else None,
                  bounds=np.c_[m.lo, m.hi], method="highs")
    if res.status == 2:
        return False
    if res.status != 0:
        return None
    y = np.maximum(-np.asarray(res.ineqlin.marginals), 0.0) if len(b_ub) else np.zeros(0)
    r = v - (y @ A_ub if len(b_ub) else 0.0)
    xhat = np.where(r > 0, m.hi, m.lo)
    ub = float(y @ b_ub) + float(r @ xhat)
    return LPBound(ub, r, xhat, time.perf_counter() - t0)


def solve_exact(m: Model, v: np.ndarray, time_limit: float, gap: float, *,
                bound: LPBound | None | bool = None, delta: float | None = None,
                min_free: int = 200) -> Solve:
    """Maximise ``v·x`` exactly: reduced-cost fixing under the LP bound, growing ``delta`` until
    the reduced optimum is certified (or nothing is fixed). ``bound`` may be a bound computed on a
    relaxation of ``m`` (e.g. before no-good cuts were added): it stays valid."""
    t0 = time.perf_counter()
    if bound is None:
        bound = lp_bound(m, v)
    if bound is False:
        return Solve(2, "LP relaxation infeasible", None, None, None, 0, time.perf_counter() - t0)
    if bound is None or not isinstance(bound, LPBound) or m.n <= min_free:
        s = solve_milp(m, v, time_limit, gap)
        s.seconds = time.perf_counter() - t0
        return s
    movable = m.lo != m.hi
    absr = np.abs(bound.r)
    tol = 1e-7 * max(1.0, abs(bound.ub))
    if delta is None:
        cand = np.sort(absr[movable])
        delta = float(cand[min(min_free, len(cand) - 1)]) if len(cand) else 0.0
    while True:
        fixed = movable & (absr > delta + tol)
        left = max(time_limit - (time.perf_counter() - t0), 0.1)
        s = solve_milp(m, v, left, gap, fixed, bound.xhat)
        s.lp_bound, s.delta, s.fixed = bound.ub, delta, fixed
        if not fixed.any() or s.status == 1:
            break  # the full problem (exact by itself) or out of time (reported as such)
        val = None if s.x is None else float(v @ s.x)
        if s.status == 0 and val is not None and val >= bound.ub - delta:
            break  # certified: everything fixed away is worth less than this optimum
        # grow: at least to the value found (then the next optimum is certified), else x4
        grow = (bound.ub - val + 1.0) if val is not None else 0.0
        delta = max(4.0 * delta + 1.0, grow)
    s.seconds = time.perf_counter() - t0
    return s


def feasible(m: Model, time_limit: float, v: np.ndarray | None = None,
             min_free: int = 200) -> bool:
    """Is there any 0/1 point? LP first (an infeasible LP settles it at once). With an objective
    ``v`` the MILP goes through :func:`solve_exact`, which on these models finds a point much
    faster than a zero-objective solve of the whole model."""
    if v is None:
        zero = np.zeros(m.n)
        if lp_bound(m, zero) is False:
            return False
        return solve_milp(m, zero, time_limit, 0.0).status != 2
    return solve_exact(m, v, time_limit, 0.0, min_free=min_free).status != 2
