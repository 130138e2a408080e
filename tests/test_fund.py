"""Fondo perequativo: call config, project table, graduatoria, optimal MILP, comparison.

Graduatoria is checked against a hand-worked example on the real 2023 call (cap, tie-break,
each ``last_project`` rule); the optimal mode against brute-force enumeration of every
portfolio on random small instances with all constraint kinds, including infeasible ones whose
reported conflict must be infeasible and minimal by enumeration.
"""

from __future__ import annotations

import itertools
import json
from fractions import Fraction

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from pattogis.errors import ConfigError, InputError
from pattogis.fund import (
    FundInfeasibleError,
    compare,
    eligibility,
    eur,
    graduatoria,
    load_call,
    optimal,
    pct,
    projects_from_table,
    run,
    to_cents,
    tu_share,
    validate_projects,
)

# ------------------------------------------------------------------ helpers


def table(rows: list[tuple], **const) -> pd.DataFrame:
    """rows: (project_id, applicant, applicant_type, unione, requested_eur, merit, inside_tu)."""
    df = pd.DataFrame(rows, columns=["project_id", "applicant", "applicant_type", "unione",
                                     "requested_eur", "merit", "inside_tu_share"])
    for k, v in const.items():
        df[k] = v
    return df


def small_call(budget: float, **kw) -> dict:
    return {"budget_eur": budget, "min_funded": kw.pop("min_funded", None),
            "cap_per_intervention_eur": kw.pop("cap", None),
            "ranking": {"last_project": kw.pop("last_project", "partial")},
            "optimal": {"alternatives": kw.pop("alternatives", 0), **kw}}


# ------------------------------------------------------------------ formatting and config


def test_money_and_share_formatting_is_italian_and_exact():
    assert eur(22981447) == "229.814,47 €"
    assert eur(229814471) == "2.298.144,71 €"
    assert eur(5) == "0,05 €"
    assert eur(-123456) == "-1.234,56 €"
    assert to_cents("2298144.71") == 229814471
    assert to_cents(0.1) + to_cents(0.2) == to_cents(0.3)
    assert pct(0.62) == "62%"
    assert pct(0.29) == "29%"          # 0.29*100 = 28.999… must not truncate to 28,9
    assert pct(0.9985) == "99,8%"      # truncated, never rounded up past a threshold


def test_call_2023_is_the_reference_and_the_cap_guarantees_ten():
    c = load_call("bando_2023")
    assert c.budget_cents == 229814471
    assert c.cap_cents == 22981447
    assert c.min_funded == 10
    assert c.cap_cents * 10 <= c.budget_cents < (c.cap_cents + 1) * 10
    assert c.applicant_types == ("unione", "comune")
    assert c.applicant_type_priority[0] == "unione"
    assert c.optimal.min_funded == 10       # a constraint in optimal mode
    json.dumps(c.to_dict())


@pytest.mark.parametrize("raw,key", [
    ({"min_funded": 10}, "budget_eur"),
    ({"budget_eur": 100, "ranking": {"last_project": "maybe"}}, "ranking.last_project"),
    ({"budget_eur": 100, "optimal": {"min_share_fragile": 1.5}}, "optimal.min_share_fragile"),
    ({"budget_eur": 100, "ranking": {"tie_break": ["colour"]}}, "ranking.tie_break"),
    ({"budget_eur": -5}, "budget_eur"),
])
def test_bad_call_names_the_key(raw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_call(raw)


# ------------------------------------------------------------------ graduatoria: hand-worked

U = "unione"
C = "comune"
HAND = [
    # id,  applicant,                 type, unione,                 request,     merit,   TU
    ("P01", "Unione Alfa", U, None, 300000.00, 90.0, 1.0),         # capped
    ("P02", "Comune di Bologna", C, None, 200000.00, 85.0, 1.0),
    ("P03", "Comune di San Lazzaro", C, None, 150000.00, 85.0004, 1.0),  # = 85.000 at 3 dec.
    ("P04", "Unione Beta", U, None, 180000.00, 85.0, 1.0),         # wins the tie: Unione
    ("P05", "Comune di Argelato", C, "Unione Reno Galliera", 100000.0, 99.0, 1.0),  # excluded
    ("P06", "Unione Gamma", U, None, 100000.00, 95.0, 0.62),       # excluded: outside TU
    ("P07", "Unione Delta", U, None, 229814.47, 80.0, 1.0),        # exactly the cap
    ("P08", "Unione Alfa", U, None, 500000.00, 78.0, 1.0),         # capped
    ("P09", "Unione Beta", U, None, 220000.00, 75.0, 1.0),
    ("P10", "Unione Delta", U, None, 210000.00, 70.0, 1.0),
    ("P11", "Unione Epsilon", U, None, 250000.00, 65.0, 0.9995),   # capped; TU within tolerance
    ("P12", "Comune di Bologna", C, None, 200000.00, 60.0, 1.0),
    ("P13", "Unione Zeta", U, None, 229814.47, 55.0, 1.0),         # the partly fundable one
    ("P14", "Unione Alfa", U, None, 100000.00, 50.0, 1.0),
    ("P15", "Unione Beta", U, None, 120000.00, 45.0, 1.0),
    ("P16", "Unione Zeta", U, None, 118886.83, 40.0, 1.0),
    ("P17", "Unione Alfa", U, "Unione Beta", 90000.00, 98.0, 1.0),  # excluded: not its territory
]
# By hand: ranks P01, P04, P02, P03, P07, P08, P09, P10, P11, P12 (cumulated 2,079,257.88 €),
# then P13 with 2,298,144.71 - 2,079,257.88 = 218,886.83 € left against a 229,814.47 € grant.
HAND_ORDER = ["P01", "P04", "P02", "P03", "P07", "P08", "P09", "P10", "P11", "P12", "P13",
              "P14", "P15", "P16"]


def hand() -> pd.DataFrame:
    return table(HAND)


def test_eligibility_reasons_in_italian():
    el = eligibility(hand(), "bando_2023").set_index("project_id")
    assert el["eligible"].sum() == 14
    assert el.at["P06", "exclusion_reason"] == (
        "Escluso: il sito è fuori dal territorio urbanizzato (quota interna 62%)")
    assert el.at["P05", "exclusion_reason"].startswith(
        "Escluso: il comune aderisce a un'Unione (Unione Reno Galliera)")
    assert el.at["P17", "exclusion_reason"] == (
        "Escluso: il sito non è nel territorio dell'Unione richiedente (si trova in: Unione Beta)")
    assert el.at["P01", "grant_cents"] == 22981447          # min(request, cap)
    assert el.at["P02", "grant_cents"] == 20000000
    assert el.at["P06", "grant_cents"] == 0


def test_graduatoria_partial_last_project_hand_worked():
    r = graduatoria(hand(), "bando_2023")
    t = r.table.set_index("project_id")
    elig = r.table[r.table["eligible"]]
    assert elig["project_id"].tolist() == HAND_ORDER
    assert elig["rank"].tolist() == list(range(1, 15))
    awarded = t["awarded_cents"]
    assert awarded["P01"] == 22981447 and awarded["P08"] == 22981447 and awarded["P11"] == 22981447
    assert awarded["P07"] == 22981447 and awarded["P04"] == 18000000
    assert awarded["P13"] == 21888683                       # 218,886.83 € partial
    assert awarded[["P14", "P15", "P16"]].sum() == 0
    assert t.at["P13", "status"] == "finanziato_parzialmente"
    s = r.summary
    assert s["allocated_cents"] == 229814471 and s["leftover_cents"] == 0
    assert s["n_funded"] == 11 and s["n_partial"] == 1 and s["min_funded_met"] is True
    assert s["n_capped_funded"] == 3 and s["n_excluded"] == 3
    assert t.at["P01", "reason"] == (
        "Finanziato per 229.814,47 € (tetto per intervento; richiesti 300.000,00 €) — posizione 1")
    assert t.at["P13", "reason"] == (
        "Finanziato parzialmente per 218.886,83 € su 229.814,47 € (risorse residue) — posizione 11")
    assert t.at["P14", "reason"] == "Idoneo non finanziato: risorse esaurite — posizione 12"
    assert "pari merito 85 con P02, P03" in t.at["P04", "reason"]
    assert "Unione prima del comune" in t.at["P04", "reason"]
    json.dumps(r.to_dict())


def test_a_residual_below_the_minimum_share_is_not_a_partial_grant():
    # P13's grant is 229,814.47 and 218,886.83 are left (95%): funded partially with 0.95 as the
    # minimum share, not with 0.96; then the residual stays unassigned and the list stops.
    ok = graduatoria(hand(), load_call("bando_2023").with_rules(min_partial_share=0.95))
    assert ok.table.set_index("project_id").at["P13", "awarded_cents"] == 21888683
    r = graduatoria(hand(), load_call("bando_2023").with_rules(min_partial_share=0.96))
    t = r.table.set_index("project_id")
    assert t.at["P13", "awarded_cents"] == 0 and t.at["P13", "status"] == "non_finanziato"
    assert "inferiori al 96% del contributo di 229.814,47 €" in t.at["P13", "reason"]
    assert r.summary["leftover_cents"] == 21888683 and r.summary["n_partial"] == 0
    assert t.loc[["P14", "P15", "P16"], "awarded_cents"].sum() == 0
    assert load_call("bando_2023").min_partial_share == 0.1


def test_graduatoria_skip_to_next_and_stop():
    sk = graduatoria(hand(), "bando_2023", last_project="skip_to_next").table.set_index("project_id")
    # P13 skipped; P14 (100,000.00) fits in 218,886.83; P15 (120,000) does not in 118,886.83;
    # P16 (118,886.83) fits exactly.
    assert sk.at["P13", "awarded_cents"] == 0 and sk.at["P14", "awarded_cents"] == 10000000
    assert sk.at["P15", "awarded_cents"] == 0 and sk.at["P16", "awarded_cents"] == 11888683
    assert sk["awarded_cents"].sum() == 229814471
    assert "supera le risorse residue di 118.886,83 €" in sk.at["P15", "reason"]
    st = graduatoria(hand(), "bando_2023", last_project="stop")
    t = st.table.set_index("project_id")
    assert t.loc[["P13", "P14", "P15", "P16"], "awarded_cents"].sum() == 0
    assert st.summary["leftover_cents"] == 21888683
    assert st.summary["n_funded"] == 10 and st.summary["min_funded_met"] is True
    assert "scorrimento interrotto alla posizione 11" in t.at["P16", "reason"]


def test_graduatoria_reports_min_funded_not_met_instead_of_forcing_it():
    df = hand().head(4)  # 4 eligible, all fully funded: far below 10
    r = graduatoria(df, "bando_2023")
    assert r.summary["n_funded"] == 4 and r.summary["min_funded_met"] is False
    assert "minimo di 10 interventi NON raggiunto" in r.summary["message"]


def test_graduatoria_cents_do_not_drift():
    df = table([("A", "U1", U, None, 0.10, 2.0, 1.0), ("B", "U2", U, None, 0.20, 1.0, 1.0)])
    r = graduatoria(df, load_call(small_call(0.30)))
    assert r.summary["n_funded"] == 2 and r.summary["n_partial"] == 0
    assert r.summary["leftover_cents"] == 0


def test_tie_break_is_a_parameter():
    df = table([("A", "Comune X", C, None, 10.0, 5.0, 1.0), ("B", "Unione Y", U, None, 10.0, 5.0, 1.0)])
    base = small_call(10.0)
    r1 = graduatoria(df, load_call(base))
    assert r1.table["project_id"].tolist()[0] == "B"        # Unione first
    base["ranking"] = {"applicant_type_priority": ["comune", "unione"]}
    r2 = graduatoria(df, load_call(base))
    assert r2.table["project_id"].tolist()[0] == "A"
    base["ranking"] = {"merit_decimals": 0, "tie_break": ["-requested_eur"]}
    df.loc[0, "merit"] = 5.4       # 5 at 0 decimals: still a tie
    df.loc[0, "requested_eur"] = 11.0
    r3 = graduatoria(df, load_call(base))
    assert r3.table["project_id"].tolist()[0] == "A"


# ------------------------------------------------------------------ optimal: hand instances

def four(**kw) -> pd.DataFrame:
    """A 50/10, B 50/9 (via Emilia, not fragile, U1), C 50/5, D 30/1 (fragile, mountain, U2)."""
    df = table([("A", "U1", U, None, 50.0, 10.0, 1.0), ("B", "U1", U, None, 50.0, 9.0, 1.0),
                ("C", "U2", U, None, 50.0, 5.0, 1.0), ("D", "U2", U, None, 30.0, 1.0, 1.0)])
    df["fragile"] = [False, False, True, True]
    df["territorial_system"] = ["via Emilia", "via Emilia", "collina-montagna", "collina-montagna"]
    for k, v in kw.items():
        df[k] = v
    return df


def ids(res) -> set[str]:
    return set(res.table.loc[res.table["selected"], "project_id"])


def test_optimal_without_equity_takes_highest_merit():
    r = optimal(four(), load_call(small_call(100.0)))
    assert ids(r) == {"A", "B"}
    assert r.summary["total_merit_funded"] == 19.0
    assert r.solver["optimality_proven"] and r.solver["status"] == "optimal"


@pytest.mark.parametrize("kw,expected,gain", [
    ({"min_share_fragile": 0.5}, {"A", "C"}, 4.0),             # binds exactly at 50%
    ({"min_share_priority_systems": 0.5}, {"A", "C"}, 4.0),
    ({"max_share_per_unione": 0.5}, {"A", "C"}, 4.0),          # U1 may not take it all
    ({"min_funded": 3, "max_share_per_unione": None}, None, None),  # infeasible: see below
])
def test_equity_constraints_bind(kw, expected, gain):
    call = load_call(small_call(100.0))
    if expected is None:
        with pytest.raises(FundInfeasibleError):
            optimal(four(), call, **kw)
        return
    r = optimal(four(), call, **kw)
    assert ids(r) == expected
    cons = r.constraints.set_index("name")
    name = next(iter(kw))
    assert cons.at[name, "active"]
    assert cons.at[name, "merit_gain_if_removed"] == gain
    if name != "max_share_per_unione":
        assert cons.at[name, "value"] == pytest.approx(0.5)


def test_equity_constraint_does_not_bind_when_already_met():
    r = optimal(four(), load_call(small_call(100.0)), min_share_fragile=0.0,
                max_share_per_unione=1.0)
    assert ids(r) == {"A", "B"}
    assert (r.constraints.set_index("name")["merit_gain_if_removed"].dropna() == 0).all()


def test_min_funded_binds_and_locks_apply():
    call = load_call(small_call(130.0))
    assert ids(optimal(four(), call)) == {"A", "B", "D"}
    r = optimal(four(), call, min_funded=3, lock_out=["B"])
    assert ids(r) == {"A", "C", "D"}
    r = optimal(four(), call, lock_in=["D"], lock_out=["A"])
    assert ids(r) == {"B", "C", "D"}
    t = r.table.set_index("project_id")
    assert "bloccato fuori" in t.at["A", "reason"] and "bloccato dentro" in t.at["D", "reason"]
    df = four(locked=[None, "out", None, None])
    assert ids(optimal(df, call)) == {"A", "C", "D"}


def test_optimal_tie_break_prefers_unione():
    df = table([("A", "Comune X", C, None, 50.0, 5.0, 1.0),
                ("B", "Unione Y", U, None, 50.0, 5.0, 1.0)])
    r = optimal(df, load_call(small_call(50.0)))
    assert ids(r) == {"B"}
    r = optimal(df, load_call(small_call(50.0)), tie_break=None, alternatives=1)
    assert [p["total_merit"] for p in r.portfolios] == [5.0, 5.0]
    assert r.table.set_index("project_id")["frequency"].tolist() == [1, 1]


def test_infeasible_names_a_minimal_conflict():
    call = load_call(small_call(100.0))
    with pytest.raises(FundInfeasibleError) as e:
        optimal(four(), call, min_funded=3)
    assert {c["name"] for c in e.value.conflict} == {"budget", "min_funded"}
    assert "budget" in str(e.value) and "min_funded" in str(e.value)
    # fragile money is all in the mountain... make fragile and priority disjoint and demand 60% each
    df = four(fragile=[True, True, False, False])
    with pytest.raises(FundInfeasibleError) as e:
        optimal(df, call, min_funded=1, min_share_fragile=0.6, min_share_priority_systems=0.6,
                max_share_per_unione=0.9)
    assert {c["name"] for c in e.value.conflict} == {
        "min_funded", "min_share_fragile", "min_share_priority_systems"}
    # a lock against the per-Unione cap when only one project fits the budget
    with pytest.raises(FundInfeasibleError) as e:
        optimal(four(), load_call(small_call(50.0)), lock_in=["A"], max_share_per_unione=0.5)
    assert {c["name"] for c in e.value.conflict} == {"budget", "lock_in:A", "max_share_per_unione"}


def test_equity_constraint_on_missing_data_names_the_rows():
    df = four(inside_tu_share=[0.5, 1.0, 1.0, 1.0])
    df["territorial_system"] = ["via Emilia", "via Emilia", None, "collina-montagna"]
    with pytest.raises(InputError) as e:
        optimal(df, load_call(small_call(100.0)), min_share_priority_systems=0.5)
    assert e.value.field == "territorial_system" and e.value.rows == [3]


def test_lock_in_of_an_ineligible_project_is_an_error():
    df = four(inside_tu_share=[1.0, 1.0, 1.0, 0.5])
    with pytest.raises(FundInfeasibleError, match="locked in but not eligible"):
        optimal(df, load_call(small_call(100.0)), lock_in=["D"])
    with pytest.raises(InputError, match="unknown project_id"):
        optimal(df, load_call(small_call(100.0)), lock_in=["Z"])


# ------------------------------------------------------------------ optimal vs brute force

SYSTEMS = np.array(["collina-montagna", "via Emilia", "pianura nord"])


def random_instance(seed: int):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 16))  # up to 15 projects, 14 eligible: 16,384 portfolios
    entes = ["Unione A", "Unione B", "Unione C", "Comune di Bologna"]
    ente = rng.choice(entes, size=n)
    req = rng.integers(20_00, 400_00, size=n) * 100 + rng.integers(0, 100, size=n)  # cents
    merit = np.round(rng.integers(0, 40, size=n) / 2, 1)     # ties are common
    df = pd.DataFrame({
        "project_id": [f"R{i:02d}" for i in range(n)],
        "applicant": ente,
        "applicant_type": np.where(np.char.startswith(ente.astype(str), "Unione"), U, C),
        "requested_eur": req / 100.0,
        "merit": merit,
        "inside_tu_share": 1.0,
        "territorial_system": rng.choice(SYSTEMS, size=n),
        "fragile": rng.random(n) < 0.4,
    })
    # one ineligible project with top merit must never enter
    df.loc[n - 1, "inside_tu_share"] = 0.5
    df.loc[n - 1, "merit"] = 100.0
    cap = int(rng.integers(150_000, 300_000)) * 100
    grant = np.minimum(req, cap)
    budget = int(grant[: n - 1].sum() * rng.uniform(0.25, 0.6))
    opt = {
        "min_funded": [None, 2, 3, 4][int(rng.integers(0, 4))],
        "min_share_priority_systems": [None, 0.25, 0.5][int(rng.integers(0, 3))],
        "min_share_fragile": [None, 0.3, 0.6][int(rng.integers(0, 3))],
        "max_share_per_unione": [None, 0.4, 0.6][int(rng.integers(0, 3))],
        "share_base": ["allocated", "budget"][int(rng.integers(0, 2))],
        "alternatives": 3,
        "tie_break": "applicant_type",
        "assess_constraints": False,
    }
    locks = rng.choice(n - 1, size=int(rng.integers(0, 3)), replace=False)
    locked = [None] * n
    for k, i in enumerate(locks):
        locked[i] = "in" if k == 0 else "out"
    df["locked"] = locked
    call = {"budget_eur": budget / 100, "cap_per_intervention_eur": cap / 100,
            "min_funded": opt["min_funded"], "optimal": opt}
    return df, load_call(call)


def brute(df: pd.DataFrame, call):
    """Every portfolio of eligible projects; per constraint group, a feasibility mask (exact
    integer arithmetic, written independently of the MILP model)."""
    o = call.optimal
    el = df["inside_tu_share"].to_numpy() >= call.min_inside_tu_share
    d = df[el].reset_index(drop=True)
    n = len(d)
    X = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(np.int64)
    req = np.rint(d["requested_eur"].to_numpy() * 100).astype(np.int64)
    g = np.minimum(req, call.cap_cents)
    pts = np.rint(d["merit"].to_numpy() * 1000).astype(np.int64)
    money = X @ g
    B = call.budget_cents
    base = money if o.share_base == "allocated" else np.full(len(X), B)
    groups = {"budget": money <= B}
    if o.min_funded:
        groups["min_funded"] = X.sum(1) >= o.min_funded

    def share_ok(mask, s, sense):
        f = Fraction(str(s))
        part = X @ (g * mask)
        return (f.denominator * part >= f.numerator * base) if sense == "min" else \
            (f.denominator * part <= f.numerator * base)

    if o.min_share_priority_systems is not None:
        m = d["territorial_system"].isin(o.priority_systems).to_numpy().astype(np.int64)
        groups["min_share_priority_systems"] = share_ok(m, o.min_share_priority_systems, "min")
    if o.min_share_fragile is not None:
        groups["min_share_fragile"] = share_ok(d["fragile"].to_numpy().astype(np.int64),
                                               o.min_share_fragile, "min")
    if o.max_share_per_unione is not None:
        ok = np.ones(len(X), bool)
        for e in d["applicant"].unique():
            ok &= share_ok((d["applicant"] == e).to_numpy().astype(np.int64),
                           o.max_share_per_unione, "max")
        groups["max_share_per_unione"] = ok
    for i, lk in enumerate(d["locked"]):
        if lk == "in":
            groups[f"lock_in:{d.at[i, 'project_id']}"] = X[:, i] == 1
        elif lk == "out":
            groups[f"lock_out:{d.at[i, 'project_id']}"] = X[:, i] == 0
    unione = (d["applicant_type"] == U).to_numpy().astype(np.int64)
    return d, X, X @ pts, X @ unione, groups


@pytest.mark.parametrize("rcf_min_free", [200, 2], ids=["plain", "reduced-cost-fixing"])
@pytest.mark.parametrize("seed", range(24))
def test_optimal_equals_brute_force(seed, rcf_min_free):
    df, call = random_instance(seed)
    # min_free=2 fixes almost every variable at first: exercises the growth and the certificate
    call = call.with_optimal(rcf_min_free=rcf_min_free)
    d, X, obj, n_unione, groups = brute(df, call)
    feas = np.logical_and.reduce(list(groups.values()))
    if not feas.any():
        with pytest.raises(FundInfeasibleError) as e:
            optimal(df, call)
        conflict = {c["name"] for c in e.value.conflict}
        assert conflict <= set(groups)
        # infeasible as reported, and minimal: dropping any one group makes it feasible
        assert not np.logical_and.reduce([groups[k] for k in conflict]).any()
        for k in conflict:
            rest = [groups[j] for j in conflict if j != k]
            assert (np.logical_and.reduce(rest) if rest else np.ones(len(X), bool)).any(), k
        return
    r = optimal(df, call)
    best = obj[feas].max()
    assert round(r.summary["total_merit_funded"] * 1000) == best
    # the tie-break picks, among optimal portfolios, one with the most Unione projects
    sel = r.table.set_index("project_id").loc[d["project_id"], "selected"].to_numpy().astype(int)
    row = int((sel * (1 << np.arange(len(d)))).sum())
    assert feas[row] and obj[row] == best
    assert n_unione[row] == n_unione[feas & (obj == best)].max()
    # next best distinct portfolios: same objective values as the top-k of the enumeration
    k = len(r.portfolios)
    assert k == min(1 + call.optimal.alternatives, int(feas.sum()))
    top = np.sort(obj[feas])[::-1][:k]
    got = [round(p["total_merit"] * 1000) for p in r.portfolios]
    assert got == top.tolist()
    sets = [frozenset(p["project_ids"]) for p in r.portfolios]
    assert len(set(sets)) == k
    # frequencies are counts over these portfolios
    t = r.table.set_index("project_id")
    for pid in d["project_id"]:
        assert t.at[pid, "frequency"] == sum(pid in s for s in sets)
    assert not t.at[df["project_id"].iloc[-1], "selected"]   # ineligible never enters


def test_reduced_cost_fixing_matches_full_milp_on_medium_instances():
    from pattogis.fund.milp import assemble, lp_bound, solve_exact, solve_milp
    from pattogis.fund.optimal import build_groups

    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        n = 300
        df = pd.DataFrame({
            "project_id": [f"M{i:03d}" for i in range(n)],
            "applicant": rng.choice(["Unione A", "Unione B", "Unione C", "Unione D"], n),
            "applicant_type": U,
            "requested_eur": np.round(rng.uniform(20_000, 400_000, n), 2),
            "merit": np.round(rng.uniform(0, 100, n), 3),
            "inside_tu_share": 1.0,
            "territorial_system": rng.choice(SYSTEMS, n),
            "fragile": rng.random(n) < 0.3,
        })
        call = load_call({"budget_eur": 3_000_000, "cap_per_intervention_eur": 229_814.47,
                          "optimal": {"min_funded": 10, "min_share_fragile": 0.4,
                                      "min_share_priority_systems": 0.5,
                                      "max_share_per_unione": 0.3}})
        p = validate_projects(df)
        g = np.minimum(p["requested_cents"].to_numpy(), call.cap_cents)
        groups = build_groups(p, g, call)
        v = np.rint(p["merit"].to_numpy() * 1000)
        m = assemble(n, groups)
        full = solve_milp(m, v, 60, 0.0)
        b = lp_bound(m, v)
        fast = solve_exact(m, v, 60, 0.0, bound=b, min_free=20)
        assert full.status == 0 and fast.status == 0
        assert v @ fast.x == v @ full.x
        assert fast.n_free < n and v @ fast.x >= b.ub - fast.delta     # really reduced, certified
        assert v @ full.x <= b.ub + 1e-6                               # the bound is a bound


# ------------------------------------------------------------------ comparison

def test_compare_modes():
    # graduatoria funds by merit (A, then budget left for nothing else: stop rule);
    # optimal funds B + C + D (more merit in total with the same money).
    df = table([("A", "Unione Alfa", U, None, 100.0, 10.0, 1.0),
                ("B", "Unione Beta", U, None, 40.0, 6.0, 1.0),
                ("C", "Comune di Bologna", C, None, 30.0, 3.0, 1.0),
                ("D", "Unione Beta", U, None, 30.0, 2.0, 1.0),
                ("E", "Comune di Argelato", C, "Unione Reno Galliera", 10.0, 50.0, 1.0)])
    df["territorial_system"] = ["via Emilia", "collina-montagna", "via Emilia",
                                "collina-montagna", "pianura nord"]
    df["fragile"] = [False, True, False, True, False]
    df["comune_istat"] = ["037001", "037010", "037006", "037010", "037002"]
    df["population"] = [10000, 2000, 390000, 2000, 9000]
    call = load_call(small_call(100.0, last_project="stop"))
    cmp_ = compare(graduatoria(df, call), optimal(df, call))
    pu = cmp_.per_unione.set_index("unione")
    assert pu.at["Unione Alfa", "graduatoria_cents"] == 10000 and pu.at["Unione Alfa", "optimal_cents"] == 0
    assert pu.at["Unione Beta", "optimal_cents"] == 7000 and pu.at["Unione Beta", "optimal_n"] == 2
    ps = cmp_.per_system.set_index("territorial_system")
    assert ps.at["collina-montagna", "difference_cents"] == 7000
    # B and D are in the same fragile comune: its 2,000 residents count once
    assert cmp_.fragile_population == {"graduatoria": 0, "optimal": 2000}
    assert set(cmp_.changes["project_id"]) == {"A", "B", "C", "D"}
    lines = cmp_.applicants.set_index("applicant")["line"]
    assert lines["Unione Beta"] == ("Unione Beta: graduatoria 0,00 € (0 progetti), ottimo 70,00 € "
                                    "(2 progetti), differenza +70,00 €; nell'ottimo entra B, D.")
    assert lines["Unione Alfa"].endswith("differenza -100,00 €; esce A.")
    assert lines["Comune di Argelato"].startswith("Comune di Argelato: escluso in entrambe")
    json.dumps(cmp_.to_dict())
    out = run(call, df, mode="compare")
    assert out.summary["n_changed"] == 4


# ------------------------------------------------------------------ project table input

def test_projects_csv_semicolon_decimal_comma(tmp_path):
    p = tmp_path / "progetti.csv"
    p.write_text(
        "project_id;applicant;applicant_type;unione;comune_istat;requested_eur;merit;"
        "inside_tu_share;fragile\n"
        "A;Unione Reno Galliera;unione;;37002;229.814,47;71,5;1;sì\n"
        "B;Comune di Bologna;comune;;037006;1.000,00;60;0,62;no\n", encoding="utf-8")
    t = projects_from_table(p)
    assert t["requested_cents"].tolist() == [22981447, 100000]
    assert t["comune_istat"].tolist() == ["037002", "037006"]
    assert t["unione"].tolist() == ["Unione Reno Galliera", None]   # Unione applicant: itself
    assert t["fragile"].tolist() == [True, False]
    assert t["inside_tu_share"].tolist() == [1.0, 0.62]


@pytest.mark.parametrize("body,field,rows", [
    ("A,U1,unione,100,5,1\nB,U2,unione,abc,5,1\n", "requested_eur", [2]),
    ("A,U1,unione,100,5,1\nA,U2,unione,100,5,1\n", "project_id", [1, 2]),
    ("A,U1,provincia,100,5,1\n", "applicant_type", [1]),
    ("A,U1,unione,100,5,1\nB,U2,unione,100,5,1.7\n", "inside_tu_share", [2]),
    ("A,U1,unione,-3,5,1\n", "requested_eur", [1]),
    ("A,U1,unione,100,,1\n", "merit", [1]),
])
def test_projects_csv_errors_name_row_and_field(tmp_path, body, field, rows):
    p = tmp_path / "p.csv"
    p.write_text("project_id,applicant,applicant_type,requested_eur,merit,inside_tu_share\n" + body)
    with pytest.raises(InputError) as e:
        projects_from_table(p)
    assert e.value.field == field and e.value.rows == rows and e.value.file == str(p)


def test_projects_missing_column_and_file(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("project_id,applicant,requested_eur\nA,U1,100\n")
    with pytest.raises(InputError, match="missing column") as e:
        projects_from_table(p)
    assert e.value.field == "applicant_type"
    with pytest.raises(InputError, match="does not exist"):
        projects_from_table(tmp_path / "nope.csv")


def test_projects_gpkg_share_inside_tu_from_polygons(tmp_path):
    # TU: the square 0..100 x 0..100 m. Site A fully inside, site B half inside.
    tu = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 100, 100), shapely.box(50, 0, 100, 100)],
                          crs="EPSG:25832")   # overlapping parts must not count twice
    sites = gpd.GeoDataFrame({
        "project_id": ["A", "B"], "applicant": ["U1", "U2"], "applicant_type": [U, U],
        "requested_eur": [10.0, 20.0], "merit": [1.0, 2.0],
    }, geometry=[shapely.box(10, 10, 20, 20), shapely.box(80, 0, 120, 10)], crs="EPSG:25832")
    assert tu_share(sites.geometry, tu).tolist() == pytest.approx([1.0, 0.5])
    path = tmp_path / "sites.gpkg"
    sites.to_crs("EPSG:4326").to_file(path)
    t = projects_from_table(path, tu=tu)
    assert t.crs.to_epsg() == 25832
    assert t["inside_tu_share"].tolist() == pytest.approx([1.0, 0.5], abs=1e-6)
    r = graduatoria(t, load_call(small_call(100.0)))
    assert r.table.set_index("project_id").at["B", "status"] == "escluso"


def test_validate_projects_needs_tu_share_or_polygons():
    df = table([("A", "U1", U, None, 10.0, 1.0, 1.0)]).drop(columns="inside_tu_share")
    with pytest.raises(InputError, match="inside_tu_share"):
        validate_projects(df)


def test_run_rejects_unknown_mode():
    with pytest.raises(InputError, match="unknown fund mode"):
        run("bando_2023", hand(), mode="lottery")
    assert len(list(itertools.islice(run("bando_2023", hand()).table.itertuples(), 3))) == 3
