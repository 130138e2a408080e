"""Optimal mode: the portfolio of eligible projects of highest total merit within the budget,
under equity constraints, solved as a MILP with scipy.optimize.milp (HiGHS).

Model (x_i binary = project i funded with its grant g_i = min(request, cap), in integer cents;
no partial funding in this mode):

    maximise    sum_i m_i x_i            m_i = merit in integer points (call's merit_decimals)
    subject to  budget                   sum_i g_i x_i <= B
                min_funded               sum_i x_i >= N
                min_share_priority_systems   money to the priority systems >= s * base
                min_share_fragile        money to fragile comuni >= s * base
                max_share_per_unione     money to each Unione (or comune in none) <= s * base
                lock_in:<id> / lock_out:<id>   x_i = 1 / x_i = 0
    base = sum_i g_i x_i (share_base 'allocated') or B (share_base 'budget').

Shares are read as fractions (1/10,000 precision) and every money row is written with integer
coefficients (cents times the share's denominator), so the solver sees exact data and each
solution is re-checked in exact integer arithmetic. The merit objective is integer, so HiGHS
proves optimality without a tolerance gap. Before HiGHS, an LP bound fixes the variables that
cannot belong to any portfolio near the optimum (exact reduced-cost fixing, see
:mod:`pattogis.fund.milp`): 5,000 projects solve to proven optimality in about a second. Ties among portfolios of equal merit
are broken like the call (more projects of the applicant types first in
``applicant_type_priority``) in the same solve: the objective is K * merit + w, with K above any
portfolio's w, so merit is maximised first, exactly.
Alternatives are the next best distinct portfolios, found with no-good cuts.

Infeasible constraint sets raise :class:`FundInfeasibleError` naming a minimal conflicting
subset of the named constraint groups (deletion filter: drop a group, re-solve, keep the drop if
still infeasible).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd

from pattogis.errors import InfeasibleError, InputError, PattogisError
from pattogis.fund.call import Call, load_call
from pattogis.fund.fmt import cents_to_eur, eur
from pattogis.fund.graduatoria import _prepared, eligibility, merit_points, records
from pattogis.fund.milp import (
    Extra,
    Group,
    Solve,
    assemble,
    feasible,
    lp_bound,
    solve_exact,
)

# same status words as the graduatoria, so maps and comparisons read both modes alike
STATUS_SELECTED = "finanziato"
STATUS_NOT_SELECTED = "non_finanziato"
STATUS_EXCLUDED = "escluso"
_SCIPY_STATUS = {0: "optimal", 1: "limit_reached", 2: "infeasible", 3: "unbounded", 4: "error"}
# deletion filter tries to drop these first, so the conflict keeps the policy constraints
_DROP_ORDER = ("lock_out", "lock_in", "max_share_per_unione", "min_share_fragile",
               "min_share_priority_systems", "min_funded", "budget")


class FundInfeasibleError(InfeasibleError):
    """No portfolio satisfies the constraints; ``conflict`` lists a minimal conflicting set of
    constraint groups (removing any one of them makes the rest feasible)."""

    def __init__(self, message: str, conflict: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.conflict = conflict

    def to_dict(self) -> dict[str, Any]:
        return {"detail": str(self), "conflict": self.conflict}


def _frac(s: float) -> Fraction:
    return Fraction(str(s)).limit_denominator(10_000)


def _mask_col(p: pd.DataFrame, col: str, need: str) -> np.ndarray:
    v = p[col]
    if v.isna().any():
        bad = np.flatnonzero(v.isna().to_numpy())
        # rows of the project table as given (1 = first record), when known
        rows = (p["_row"].to_numpy()[bad] if "_row" in p.columns else bad + 1).tolist()
        raise InputError(f"{col} is missing but the constraint '{need}' needs it",
                         rows=[int(r) for r in rows], field=col)
    return v.to_numpy()


def build_groups(p: pd.DataFrame, grant: np.ndarray, call: Call) -> list[Group]:
    """Constraint groups for the eligible projects ``p`` (grants in cents, aligned)."""
    o = call.optimal
    n = len(p)
    B = int(call.budget_cents)
    g = grant.astype(np.int64)
    inf = np.inf
    groups = [Group("budget", "budget", f"money allocated at most the budget {eur(B)}",
                    A=g[None, :].astype(float), lb=np.array([-inf]), ub=np.array([float(B)]),
                    meta={"bound_eur": cents_to_eur(B)})]
    if o.min_funded:
        groups.append(Group("min_funded", "min_funded",
                            f"at least {o.min_funded} projects funded ({n} eligible)",
                            A=np.ones((1, n)), lb=np.array([float(o.min_funded)]),
                            ub=np.array([inf]), meta={"bound": o.min_funded}))

    def share_rows(mask: np.ndarray, s: float, sense: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = _frac(s)
        num, den = f.numerator, f.denominator
        if o.share_base == "allocated":
            # den * money(mask) - num * money(all)  >= 0 (min)  or <= 0 (max)
            A = (den * g * mask - num * g).astype(float)[None, :]
            rhs = 0.0
        else:
            A = (den * g * mask).astype(float)[None, :]
            rhs = float(num * B)
        if sense == "min":
            return A, np.array([rhs]), np.array([inf])
        return A, np.array([-inf]), np.array([rhs])

    base_txt = "of the money allocated" if o.share_base == "allocated" else "of the budget"
    if o.min_share_priority_systems is not None:
        ts = _mask_col(p, "territorial_system", "min_share_priority_systems")
        mask = np.isin(ts, list(o.priority_systems)).astype(np.int64)
        A, lb, ub = share_rows(mask, o.min_share_priority_systems, "min")
        groups.append(Group("min_share_priority_systems", "min_share_priority_systems",
                            f"at least {o.min_share_priority_systems:.0%} {base_txt} to "
                            f"{' and '.join(o.priority_systems)}", A=A, lb=lb, ub=ub,
                            meta={"share": o.min_share_priority_systems,
                                  "systems": list(o.priority_systems)}))
    if o.min_share_fragile is not None:
        fr = _mask_col(p, "fragile", "min_share_fragile").astype(bool).astype(np.int64)
        A, lb, ub = share_rows(fr, o.min_share_fragile, "min")
        groups.append(Group("min_share_fragile", "min_share_fragile",
                            f"at least {o.min_share_fragile:.0%} {base_txt} to fragile comuni",
                            A=A, lb=lb, ub=ub, meta={"share": o.min_share_fragile}))
    if o.max_share_per_unione is not None:
        ente = p["ente"].to_numpy(dtype=object)
        names = sorted(set(ente))
        rows = [share_rows((ente == e).astype(np.int64), o.max_share_per_unione, "max")
                for e in names]
        groups.append(Group("max_share_per_unione", "max_share_per_unione",
                            f"at most {o.max_share_per_unione:.0%} {base_txt} to any one Unione "
                            "(or comune in no Unione)",
                            A=np.vstack([r[0] for r in rows]), lb=np.concatenate([r[1] for r in rows]),
                            ub=np.concatenate([r[2] for r in rows]),
                            meta={"share": o.max_share_per_unione, "entities": names}))
    locked = p["locked"].to_numpy(dtype=object)
    pid = p["project_id"].to_numpy(dtype=object)
    for i in np.flatnonzero(locked == "in"):
        groups.append(Group(f"lock_in:{pid[i]}", "lock_in", f"project {pid[i]} locked in",
                            fix=(int(i), 1)))
    for i in np.flatnonzero(locked == "out"):
        groups.append(Group(f"lock_out:{pid[i]}", "lock_out", f"project {pid[i]} locked out",
                            fix=(int(i), 0)))
    return groups


def _verify(x: np.ndarray, groups: list[Group]) -> list[str]:
    return [gr.name for gr in groups if not gr.check(x)]


def minimal_conflict(n: int, groups: list[Group], time_limit: float,
                     v: np.ndarray | None = None, min_free: int = 200) -> list[Group]:
    """Deletion filter over named groups: a minimal subset that is still infeasible.

    Feasibility solves: the LP first, then the MILP (with the merit objective ``v`` when given,
    which the reduced-cost fixing makes fast). Groups are tried for removal
    in ``_DROP_ORDER`` (locks first, budget last), so the conflict keeps the call's own rules.
    """
    keep = list(groups)
    order = sorted(groups, key=lambda gr: _DROP_ORDER.index(gr.kind))
    for gr in order:
        trial = [k for k in keep if k is not gr]
        if not feasible(assemble(n, trial), time_limit, v, min_free):
            keep = trial  # still infeasible without it: not needed for the conflict
    return keep


@dataclass
class OptimalResult:
    """Outcome of the optimal mode. ``table``: one row per project (selected first, in merit
    order); ``portfolios``: the optimum and the next best distinct portfolios; ``constraints``:
    value, bound, slack and cost (merit gained without it) of each constraint group;
    ``solver``: HiGHS status, MIP gap, dual bound, times. Table money as in the graduatoria
    (``grant_*``, ``awarded_*``, ``granted_eur``); ``status``: finanziato | non_finanziato |
    escluso; ``selected`` (bool); ``frequency``: in how many of the portfolios."""

    call: Call
    table: pd.DataFrame
    portfolios: list[dict[str, Any]]
    constraints: pd.DataFrame
    solver: dict[str, Any]
    summary: dict[str, Any]
    mode: str = "optimal"

    def funded(self) -> pd.DataFrame:
        return self.table[self.table["awarded_cents"] > 0]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "call": self.call.to_dict(), "summary": self.summary,
                "solver": self.solver, "constraints": records(self.constraints),
                "portfolios": self.portfolios, "projects": records(self.table)}

    def to_text(self) -> str:
        lines = [f"{self.call.title} — portafoglio ottimo", self.summary["message"], ""]
        for r in self.table.itertuples():
            lines.append(f"{r.project_id:<12} {r.applicant[:40]:<40} {r.reason}")
        return "\n".join(lines)


def optimal(projects: pd.DataFrame, call: Call | str = "bando_2023", *,
            lock_in: list[str] | tuple[str, ...] = (), lock_out: list[str] | tuple[str, ...] = (),
            **overrides: Any) -> OptimalResult:
    """Best portfolio by total merit within the budget and the call's equity constraints.

    ``overrides`` replace optimal-mode rules of the call (``min_funded``,
    ``min_share_priority_systems``, ``min_share_fragile``, ``max_share_per_unione``,
    ``share_base``, ``priority_systems``, ``alternatives``, ``time_limit_s``, ``mip_rel_gap``,
    ``tie_break``, ``assess_constraints``). ``lock_in``/``lock_out`` add to the ``locked``
    column. Grants are ``min(request, cap)`` in cents, all or nothing. Raises
    :class:`FundInfeasibleError` naming a minimal conflicting set of constraint groups.
    """
    call = load_call(call).with_optimal(**overrides)
    o = call.optimal
    p_all = _prepared(projects).copy()
    ids = set(p_all["project_id"])
    for lst, val in ((lock_in, "in"), (lock_out, "out")):
        unknown = [x for x in lst if x not in ids]
        if unknown:
            raise InputError(f"unknown project_id(s) to lock {val}: {', '.join(map(str, unknown))}",
                             field="locked")
        p_all.loc[p_all["project_id"].isin(list(lst)), "locked"] = val
    both = set(lock_in) & set(lock_out)
    if both:
        raise InputError(f"project(s) locked both in and out: {', '.join(sorted(both))}",
                         field="locked")
    el = eligibility(p_all, call)
    p_all["eligible"] = el["eligible"].to_numpy()
    p_all["exclusion_reason"] = el["exclusion_reason"].to_numpy()
    p_all["grant_cents"] = el["grant_cents"].to_numpy()
    bad_lock = (~p_all["eligible"]) & (p_all["locked"] == "in")
    if bad_lock.any():
        r = p_all[bad_lock].iloc[0]
        raise FundInfeasibleError(
            f"project {r['project_id']} is locked in but not eligible: {r['exclusion_reason']}",
            [{"name": f"lock_in:{r['project_id']}", "description": "locked in"},
             {"name": "eligibility", "description": str(r["exclusion_reason"])}])

    elig = np.flatnonzero(p_all["eligible"].to_numpy())
    p = p_all.iloc[elig].reset_index(drop=True)
    p["_row"] = elig + 1
    n = len(p)
    g = p["grant_cents"].to_numpy(dtype=np.int64)
    pts = merit_points(p["merit"], call.merit_decimals)
    groups = build_groups(p, g, call)
    v = pts.astype(float)
    scale = 10**call.merit_decimals
    # The call's tie-break (more projects of the preferred applicant types among portfolios of
    # equal merit) folded into one lexicographic objective: K * merit + w, with K (k_lex) larger than
    # any portfolio's w, so merit comes first exactly. One solve instead of a second MILP pinned
    # at the optimum merit (which HiGHS finds hard: seconds on 5,000 projects).
    w_tb: np.ndarray | None = None
    k_lex = 1.0
    if o.tie_break == "applicant_type" and n:
        prio = call.applicant_type_priority
        w = p["applicant_type"].map({t: len(prio) - 1 - k for k, t in enumerate(prio)})
        w = w.to_numpy(dtype=float)
        if np.ptp(w) > 0:
            gmin = int(g[g > 0].min()) if (g > 0).any() else 1
            max_card = min(n, int(call.budget_cents // gmin))   # no portfolio funds more
            k_lex = float(max_card * w.max() + 1)
            w_tb = w
    v1 = v * k_lex + (w_tb if w_tb is not None else 0.0)

    if n == 0:
        x = np.zeros(0, dtype=np.int64)
        s1 = Solve(0, "no eligible project", x, 0.0, 0.0, 0, 0.0)
        bound = None
        if o.min_funded:
            raise FundInfeasibleError(
                f"no eligible project, but at least {o.min_funded} must be funded",
                [{"name": "min_funded", "description": groups[1].description}])
    else:
        model = assemble(n, groups)
        bound = lp_bound(model, v1)
        s1 = solve_exact(model, v1, o.time_limit_s, o.mip_rel_gap, bound=bound,
                         min_free=o.rcf_min_free)
        if s1.status == 2:
            conflict = minimal_conflict(n, groups, o.time_limit_s, v, o.rcf_min_free)
            names = "; ".join(f"{gr.name} ({gr.description})" for gr in conflict)
            raise FundInfeasibleError(
                f"no portfolio satisfies the constraints. Minimal conflicting set: {names}. "
                "Relax or remove any one of them.",
                [{"name": gr.name, "description": gr.description, **gr.meta} for gr in conflict])
        if s1.x is None:
            raise PattogisError(f"optimal mode: solver stopped without a portfolio ({s1.message}); "
                                f"raise optimal.time_limit_s (now {o.time_limit_s} s)")
        x = s1.x
    z = int(pts @ x)
    if w_tb is not None and o.alternatives:
        # the alternatives rank by merit alone: their bound is the merit LP's
        bound = lp_bound(model, v)
    broken = _verify(x, groups)
    if broken:  # cannot happen with integer data unless the solver misbehaves: say so loudly
        raise PattogisError(f"optimal mode: solution fails exact re-check of {broken}")

    # next best distinct portfolios: no-good cut  sum_{i in S} x_i - sum_{i not in S} x_i <= |S|-1
    portfolios_x = [x]
    cuts: list[Extra] = []
    delta = None if s1.delta is None else s1.delta / k_lex
    t_alt = 0.0
    alt_status: list[str] = []
    for _ in range(o.alternatives if n else 0):
        prev = portfolios_x[-1]
        cuts.append((np.where(prev == 1, 1.0, -1.0), -np.inf, float(prev.sum() - 1)))
        r = solve_exact(assemble(n, groups, cuts), v, o.time_limit_s, o.mip_rel_gap,
                        bound=bound, delta=delta, min_free=o.rcf_min_free)
        delta = r.delta
        t_alt += r.seconds
        alt_status.append(_SCIPY_STATUS.get(r.status, str(r.status)))
        if r.x is None or r.status not in (0, 1) or _verify(r.x, groups):
            break
        portfolios_x.append(r.x)
    X = np.vstack(portfolios_x) if n else np.zeros((1, 0), dtype=np.int64)
    freq = X.sum(axis=0)
    K = len(portfolios_x)
    pid = p["project_id"].to_numpy(dtype=object)
    portfolios = []
    for k, xk in enumerate(portfolios_x):
        zk = int(pts @ xk)
        portfolios.append({
            "rank": k + 1,
            "project_ids": [str(v) for v in pid[xk == 1]],
            "n_funded": int(xk.sum()),
            "total_merit": zk / scale,
            "allocated_eur": cents_to_eur(int(g @ xk)),
            "merit_below_optimum": (z - zk) / scale,
        })

    # constraint report: value, bound, slack; cost = merit gained if the group were removed
    rows = []
    t_assess = 0.0
    alloc = int(g @ x)
    for gr in groups:
        if gr.fix is not None:
            continue
        assert gr.A is not None
        act = gr.A @ x
        slack = np.minimum(act - gr.lb, gr.ub - act)
        row: dict[str, Any] = {"name": gr.name, "description": gr.description,
                               "active": bool(np.any(np.isclose(slack, 0.0))),
                               "merit_gain_if_removed": None}
        if gr.kind == "budget":
            row |= {"value": cents_to_eur(alloc), "bound": cents_to_eur(call.budget_cents),
                    "slack": cents_to_eur(call.budget_cents - alloc)}
        elif gr.kind == "min_funded":
            row |= {"value": int(x.sum()), "bound": o.min_funded, "slack": int(x.sum()) - (o.min_funded or 0)}
        elif gr.kind.startswith(("min_share", "max_share")):
            base = alloc if o.share_base == "allocated" else int(call.budget_cents)
            if gr.kind == "max_share_per_unione":
                ente = p["ente"].to_numpy(dtype=object)
                money = pd.Series(g * x).groupby(ente).sum()
                top = money.idxmax() if len(money) else None
                val = (money.max() / base) if base else 0.0
                row |= {"value": float(val), "bound": gr.meta["share"], "slack": gr.meta["share"] - val,
                        "detail": f"largest: {top}"}
            else:
                mask = (gr.A[0] > 0) if o.share_base == "budget" else None
                if mask is None:
                    f = _frac(gr.meta["share"])
                    mask = gr.A[0] + f.numerator * g > 0
                val = float((g * x)[mask].sum() / base) if base else 0.0
                row |= {"value": val, "bound": gr.meta["share"], "slack": val - gr.meta["share"]}
        if o.assess_constraints and gr.kind not in ("budget",) and n:
            r = solve_exact(assemble(n, [k for k in groups if k is not gr]), v, o.time_limit_s,
                            o.mip_rel_gap, min_free=o.rcf_min_free)
            t_assess += r.seconds
            if r.x is not None:
                row["merit_gain_if_removed"] = (int(pts @ r.x) - z) / scale
        rows.append(row)
    locks = [gr for gr in groups if gr.fix is not None]
    if locks:
        row = {"name": "locks", "description": f"{len(locks)} project(s) locked in/out",
               "active": True, "value": None, "bound": None, "slack": None,
               "merit_gain_if_removed": None}
        if o.assess_constraints:
            r = solve_exact(assemble(n, [k for k in groups if k.fix is None]), v,
                            o.time_limit_s, o.mip_rel_gap, min_free=o.rcf_min_free)
            t_assess += r.seconds
            if r.x is not None:
                row["merit_gain_if_removed"] = (int(pts @ r.x) - z) / scale
        rows.append(row)
    constraints = pd.DataFrame(rows)

    # per-project table
    sel = np.zeros(len(p_all), dtype=bool)
    sel[elig] = x == 1
    fr_all = np.zeros(len(p_all), dtype=np.int64)
    fr_all[elig] = freq
    p_all["selected"] = sel
    p_all["awarded_cents"] = np.where(sel, p_all["grant_cents"], 0).astype(np.int64)
    p_all["frequency"] = fr_all
    p_all["frequency_share"] = fr_all / K
    p_all["capped"] = p_all["eligible"] & (p_all["requested_cents"] > p_all["grant_cents"])
    p_all["status"] = np.where(~p_all["eligible"], STATUS_EXCLUDED,
                               np.where(sel, STATUS_SELECTED, STATUS_NOT_SELECTED))
    reasons = []
    for r in p_all.itertuples():
        if r.status == STATUS_EXCLUDED:
            reasons.append(str(r.exclusion_reason))
            continue
        inn = f"in {r.frequency} dei {K} migliori portafogli"
        if r.status == STATUS_SELECTED:
            how = ("tetto per intervento; richiesti " + eur(r.requested_cents) if r.capped
                   else "importo richiesto")
            t = f"Selezionato nel portafoglio ottimo per {eur(r.awarded_cents)} ({how}) — {inn}"
            if r.locked == "in":
                t += "; incluso per decisione (bloccato dentro)"
        elif r.locked == "out":
            t = f"Non selezionato: escluso per decisione (bloccato fuori) — {inn}"
        else:
            t = ("Non selezionato: entro budget e vincoli, altri progetti danno più merito "
                 f"complessivo — {inn}")
        reasons.append(t)
    p_all["reason"] = reasons
    p_all["merit_points"] = merit_points(p_all["merit"], call.merit_decimals)
    p_all["grant_eur"] = p_all["grant_cents"] / 100.0
    p_all["awarded_eur"] = p_all["awarded_cents"] / 100.0
    p_all["granted_eur"] = p_all["awarded_eur"]  # the name the fund map reads
    order = np.lexsort((p_all["project_id"].rank(method="dense").to_numpy(),
                        -p_all["merit_points"].to_numpy(),
                        ~p_all["eligible"].to_numpy(), ~p_all["selected"].to_numpy()))
    table = p_all.iloc[order].reset_index(drop=True)

    status = _SCIPY_STATUS.get(s1.status, str(s1.status))
    proven = s1.status == 0 and (s1.mip_gap is None or s1.mip_gap <= max(o.mip_rel_gap, 1e-9))
    solver = {
        "backend": "scipy.optimize.milp (HiGHS)",
        "status": status,
        "message": s1.message,
        "optimality_proven": bool(proven),
        "mip_gap": s1.mip_gap,
        "dual_bound_merit": None if s1.dual_bound is None else (s1.dual_bound // k_lex) / scale,
        "lp_bound_merit": None if s1.lp_bound is None else s1.lp_bound / k_lex / scale,
        "reduced_cost_fixing": {"free_variables": s1.n_free, "fixed_variables": n - s1.n_free,
                                "delta_merit": None if s1.delta is None else s1.delta / k_lex / scale},
        "nodes": s1.nodes,
        "n_variables": n,
        "n_constraint_rows": int(sum(0 if gr.A is None else gr.A.shape[0] for gr in groups)),
        "seconds_solve": s1.seconds,
        # folded into the objective (merit first, then applicant type): no second solve
        "seconds_tie_break": None if w_tb is None else 0.0,
        "tie_break": None if w_tb is None else f"lexicographic objective, K = {int(k_lex)}",
        "seconds_alternatives": t_alt,
        "alternatives_status": alt_status,
        "seconds_assess_constraints": t_assess,
        "exact_recheck": "passed",
    }
    n_sel = int(x.sum())
    fr_pop = _fragile_population(table)
    msg = (f"Portafoglio ottimo: {n_sel} interventi per {eur(alloc)} su {eur(call.budget_cents)} "
           f"(residuo {eur(call.budget_cents - alloc)}); merito totale "
           f"{z / scale:g}; {'ottimalità dimostrata' if proven else 'ottimalità NON dimostrata'}"
           f" ({status})")
    summary = {
        "budget_eur": cents_to_eur(call.budget_cents),
        "allocated_eur": cents_to_eur(alloc),
        "allocated_cents": alloc,
        "leftover_eur": cents_to_eur(call.budget_cents - alloc),
        "n_projects": len(p_all),
        "n_eligible": n,
        "n_excluded": len(p_all) - n,
        "n_funded": n_sel,
        "total_merit_funded": z / scale,
        "n_portfolios": K,
        "fragile_population_covered": fr_pop,
        "constraints": [gr.name for gr in groups],
        "message": msg,
    }
    return OptimalResult(call=call, table=table, portfolios=portfolios, constraints=constraints,
                         solver=solver, summary=summary)


def _fragile_population(t: pd.DataFrame) -> int:
    """Residents of fragile host comuni with at least one funded project (each comune once;
    projects with no comune_istat count on their own)."""
    f = t[(t["awarded_cents"] > 0) & t["fragile"].fillna(False).astype(bool)]
    if f.empty:
        return 0
    key = f["comune_istat"].where(f["comune_istat"].notna(), "project:" + f["project_id"].astype(str))
    return int(f.assign(_k=key).drop_duplicates("_k")["population"].fillna(0).sum())
