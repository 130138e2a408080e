"""Graduatoria mode: eligibility, merit order with the call's tie-break, funding down the list.

The grant of an eligible project is ``min(request, cap)`` in integer cents. Projects are funded
in rank order while money remains; what happens to the first project whose grant no longer fits
is the call's ``last_project`` rule:

- ``partial``: it receives what is left, and the list stops (the budget is spent);
- ``skip_to_next``: it is skipped, and every later project whose grant still fits is funded;
- ``stop``: it is not funded and neither is anyone after it (the rest is left over).

"At least ``min_funded`` funded" is the reason of the cap: it is reported (met or not), not forced.
The ``locked`` column is ignored here: the graduatoria is mechanical by design.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pattogis.fund.call import Call, load_call
from pattogis.fund.fmt import cents_to_eur, eur, merit_text, pct
from pattogis.fund.projects import validate_projects

STATUS_EXCLUDED = "escluso"
STATUS_FUNDED = "finanziato"
STATUS_PARTIAL = "finanziato_parzialmente"
STATUS_NOT_FUNDED = "non_finanziato"

RULE_LABEL = {
    "partial": "finanziamento parziale dell'ultimo progetto",
    "skip_to_next": "scorrimento al progetto successivo",
    "stop": "arresto dello scorrimento",
}
TYPE_LABEL = {"unione": "Unione", "comune": "comune"}


def _prepared(projects: pd.DataFrame) -> pd.DataFrame:
    # accept tables already checked by validate_projects (they carry requested_cents and ente)
    if {"requested_cents", "ente"}.issubset(projects.columns):
        return projects.reset_index(drop=True)
    return validate_projects(projects)


def merit_points(merit: pd.Series | np.ndarray, decimals: int) -> np.ndarray:
    """Merit as integers at the call's precision: equal points = equal merit (a tie)."""
    return np.rint(np.asarray(merit, dtype=float) * 10**decimals).astype(np.int64)


def _m2(x: float) -> str:
    return f"{int(round(float(x))):,}".replace(",", ".") + " m²"


def tu_tolerance_text(call: Call) -> str:
    """The call's tolerance for a site touching the TU perimeter, in Italian."""
    parts = [f"almeno {pct(call.min_inside_tu_share)} della superficie nel TU"]
    if call.max_outside_tu_m2 is not None:
        parts.append(f"al più {_m2(call.max_outside_tu_m2)} fuori")
    return " e ".join(parts)


def eligibility(projects: pd.DataFrame, call: Call | str = "bando_2023") -> pd.DataFrame:
    """Check each project against the call's eligibility rules.

    Returns ``project_id``, ``eligible`` (bool), ``exclusion_reason`` (Italian, the first rule
    failed, null when eligible), ``grant_cents`` (``min(request, cap)``; 0 when excluded).
    Rules in order: applicant known (when the table was checked against the territory); site in
    the metropolitan area; applicant type; a comune in an Unione cannot apply; an Unione only
    for sites in its comuni (a comune only for its own territory); site inside the TU within the
    call's tolerance (share and m²); minimum request.
    """
    call = load_call(call)
    p = _prepared(projects)
    n = len(p)
    resolved = "applicant_known" in p.columns
    at = p["applicant_type"].to_numpy(dtype=object)
    un = p["unione"].to_numpy(dtype=object)
    app = p["applicant"].to_numpy(dtype=object)
    share = p["inside_tu_share"].to_numpy(dtype=float)
    req = p["requested_cents"].to_numpy(dtype=np.int64)
    no = np.zeros(n, bool)

    if resolved:
        unknown = ~p["applicant_known"].to_numpy(dtype=bool)
        host = p["comune_istat"].to_numpy(dtype=object)
        no_host = pd.isna(host) & ~unknown
        a_un = p["applicant_unione"].to_numpy(dtype=object)
        match = p["applicant_match"].to_numpy(dtype=object)
        a_ist = p["applicant_istat"].to_numpy(dtype=object)
        has_aun = ~pd.isna(a_un)
    else:
        unknown = no_host = no
        a_un, match, a_ist = un, app, np.full(n, None, object)
        has_aun = np.array([u is not None for u in un])
    ok = ~unknown & ~no_host
    bad_type = ok & ~np.isin(at, list(call.applicant_types))
    comune_in_un = (ok & (at == "comune") & has_aun) if call.comune_only_if_no_unione else no
    if call.site_in_applicant_unione:
        outside_un = ok & (at == "unione") & (un != match)
        outside_com = (ok & (at == "comune") & (a_ist != p["comune_istat"].to_numpy(dtype=object))
                       if resolved else no)
    else:
        outside_un = outside_com = no
    outside_m2 = (p["outside_tu_m2"].to_numpy(dtype=float) if "outside_tu_m2" in p.columns
                  else np.full(n, np.nan))
    outside_tu = share < call.min_inside_tu_share - 1e-12
    if call.max_outside_tu_m2 is not None:
        outside_tu |= np.nan_to_num(outside_m2, nan=0.0) > call.max_outside_tu_m2 + 1e-9
    outside_tu &= ok
    too_small = req < call.min_request_cents if call.min_request_cents else no
    derived = (p["tu_derived"].to_numpy(dtype=bool) if "tu_derived" in p.columns
               else np.zeros(n, bool))

    reason: list[str | None] = [None] * n
    allowed = ", ".join({"unione": "Unioni", "comune": "comuni"}[t] for t in call.applicant_types)
    # first failed rule wins: fill in reverse order so earlier rules overwrite later ones
    for i in np.flatnonzero(too_small):
        reason[i] = (f"Escluso: importo richiesto di {eur(req[i])} inferiore al minimo del bando "
                     f"({eur(call.min_request_cents or 0)})")
    for i in np.flatnonzero(outside_tu):
        if np.isnan(outside_m2[i]):
            reason[i] = (f"Escluso: il sito è fuori dal territorio urbanizzato "
                         f"(quota interna {pct(share[i])})")
        else:
            reason[i] = (f"Escluso: il sito è fuori dal territorio urbanizzato: {_m2(outside_m2[i])} "
                         f"fuori dal perimetro (quota interna {pct(share[i])}), oltre la tolleranza "
                         f"del bando ({tu_tolerance_text(call)})"
                         + ("; perimetro del TU derivato (provvisorio), non ufficiale"
                            if derived[i] else ""))
    for i in np.flatnonzero(outside_com):
        reason[i] = (f"Escluso: il sito non è nel territorio del comune richiedente "
                     f"(si trova a {p['host_name'].iat[i]})")
    for i in np.flatnonzero(outside_un):
        where = (f"{p['host_name'].iat[i]}, "
                 f"{un[i] if isinstance(un[i], str) else 'comune non associato a un’Unione'}"
                 if resolved else (un[i] or "comune senza Unione"))
        reason[i] = (f"Escluso: il sito non è nel territorio dell'Unione richiedente "
                     f"(si trova in: {where})")
    for i in np.flatnonzero(comune_in_un):
        reason[i] = (f"Escluso: il comune aderisce a un'Unione ({a_un[i]}), che è il soggetto "
                     f"titolato a presentare domanda")
    for i in np.flatnonzero(bad_type):
        reason[i] = f"Escluso: tipo di richiedente '{at[i]}' non ammesso (ammessi: {allowed})"
    for i in np.flatnonzero(no_host):
        reason[i] = "Escluso: il sito non ricade nel territorio della Città metropolitana"
    for i in np.flatnonzero(unknown):
        reason[i] = (f"Escluso: richiedente '{app[i]}' non riconosciuto: non è un'Unione della "
                     f"Città metropolitana né uno dei suoi comuni")
    eligible = ~(unknown | no_host | bad_type | comune_in_un | outside_un | outside_com
                 | outside_tu | too_small)
    cap = call.cap_cents if call.cap_cents is not None else np.iinfo(np.int64).max
    grant = np.where(eligible, np.minimum(req, cap), 0).astype(np.int64)
    return pd.DataFrame({"project_id": p["project_id"].to_numpy(), "eligible": eligible,
                         "exclusion_reason": reason, "grant_cents": grant})


def rank_order(p: pd.DataFrame, call: Call) -> np.ndarray:
    """Positions of the rows of ``p`` in merit order: merit (rounded to the call's decimals)
    descending, then the call's tie-break keys, then project_id ascending."""
    keys: list[np.ndarray] = [-merit_points(p["merit"], call.merit_decimals)]
    prio = {t: k for k, t in enumerate(call.applicant_type_priority)}
    for key in call.tie_break:
        desc = key.startswith("-")
        col = key.lstrip("-")
        if col == "applicant_type":
            v = p["applicant_type"].map(prio).to_numpy(dtype=float)
        elif col == "project_id":
            v = p["project_id"].rank(method="dense").to_numpy(dtype=float)
        else:
            v = pd.to_numeric(p[col], errors="coerce").to_numpy(dtype=float)
            v = np.where(np.isnan(v), np.inf if not desc else -np.inf, v)  # missing go last
        keys.append(-v if desc else v)
    keys.append(p["project_id"].rank(method="dense").to_numpy(dtype=float))
    # np.lexsort sorts by the last key first
    return np.lexsort(keys[::-1])


def _tie_text(call: Call) -> str:
    parts = []
    for key in call.tie_break:
        col = key.lstrip("-")
        if col == "applicant_type":
            order = " prima del ".join(TYPE_LABEL[t] for t in call.applicant_type_priority)
            parts.append(f"{order}")
        elif col == "project_id":
            parts.append("codice progetto")
        else:
            parts.append(f"{col} {'decrescente' if key.startswith('-') else 'crescente'}")
    parts.append("codice progetto")
    return "; ".join(dict.fromkeys(parts))


@dataclass
class GraduatoriaResult:
    """Outcome of the graduatoria. ``table`` has one row per project: eligible ones in rank
    order, then the excluded ones; money in cents (``*_cents``) and euros (``*_eur``):
    ``grant_*`` = min(request, cap), what the project may receive; ``awarded_*`` (and its alias
    ``granted_eur``) what it receives. ``status``: finanziato | finanziato_parzialmente |
    non_finanziato | escluso; ``reason``: one line in Italian."""

    call: Call
    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    mode: str = "graduatoria"

    def funded(self) -> pd.DataFrame:
        return self.table[self.table["awarded_cents"] > 0]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "call": self.call.to_dict(), "summary": self.summary,
                "projects": records(self.table)}

    def to_text(self) -> str:
        s = self.summary
        lines = [f"{self.call.title} — graduatoria", s["message"], ""]
        for r in self.table.itertuples():
            pos = f"{int(r.rank):>4}" if pd.notna(r.rank) else "   -"
            lines.append(f"{pos}  {r.project_id:<12} {r.applicant[:40]:<40} {r.reason}")
        return "\n".join(lines)


def _with_notes(reasons: list[str], p: pd.DataFrame, call: Call) -> list[str]:
    """Each reason followed by what the territory check found: a site within the TU tolerance
    (m² outside, derived perimeter) and declarations that disagree with the territory."""
    if "checks" not in p.columns and "outside_tu_m2" not in p.columns:
        return reasons
    out = []
    checks = p["checks"].to_numpy(dtype=object) if "checks" in p.columns else [None] * len(p)
    om2 = (p["outside_tu_m2"].to_numpy(dtype=float) if "outside_tu_m2" in p.columns
           else np.zeros(len(p)))
    der = (p["tu_derived"].to_numpy(dtype=bool) if "tu_derived" in p.columns
           else np.zeros(len(p), bool))
    el = p["eligible"].to_numpy(dtype=bool)
    for r, c, m2, d, e in zip(reasons, checks, om2, der, el, strict=True):
        bits = []
        if e and m2 >= 0.5:
            bits.append(f"{_m2(m2)} fuori dal TU, entro la tolleranza del bando"
                        + (" (perimetro derivato)" if d else ""))
        if c:
            bits.append(str(c))
        out.append(r + (" — Verifiche: " + "; ".join(bits) if bits else ""))
    return out


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able rows: geometry dropped, NA → None, numpy scalars → Python."""
    t = table.drop(columns=[c for c in ("geometry",) if c in table.columns])
    out = []
    for rec in t.to_dict(orient="records"):
        clean: dict[str, Any] = {}
        for k, v in rec.items():
            if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                clean[k] = None
            elif isinstance(v, np.generic):
                clean[k] = v.item()
            else:
                clean[k] = v
        out.append(clean)
    return out


def graduatoria(projects: pd.DataFrame, call: Call | str = "bando_2023", *,
                last_project: str | None = None) -> GraduatoriaResult:
    """Rank eligible projects by merit (call's tie-break) and fund them down the list.

    ``last_project`` overrides the call's rule for the first project that no longer fits
    (``partial`` | ``skip_to_next`` | ``stop``, see the module doc). Money in integer cents:
    ``grant_cents = min(requested_cents, cap_cents)``, ``awarded_cents`` what it receives.
    """
    call = load_call(call)
    if last_project is not None:
        call = call.with_rules(last_project=last_project)
    p = _prepared(projects)
    el = eligibility(p, call)
    p = p.assign(eligible=el["eligible"].to_numpy(), exclusion_reason=el["exclusion_reason"].to_numpy(),
                 grant_cents=el["grant_cents"].to_numpy())
    pts = merit_points(p["merit"], call.merit_decimals)
    p["merit_points"] = pts

    elig_idx = np.flatnonzero(p["eligible"].to_numpy())
    order = elig_idx[rank_order(p.iloc[elig_idx], call)]
    grant = p["grant_cents"].to_numpy(dtype=np.int64)
    awarded = np.zeros(len(p), dtype=np.int64)
    status = np.full(len(p), STATUS_EXCLUDED, dtype=object)
    status[order] = STATUS_NOT_FUNDED
    note: dict[int, str] = {}
    remaining = int(call.budget_cents)
    rule = call.last_project
    stopped_at: int | None = None
    # sequential by nature (what fits depends on what came before); O(n) on Python ints
    for pos, i in enumerate(order.tolist(), start=1):
        g = int(grant[i])
        if g <= remaining:
            awarded[i] = g
            remaining -= g
            status[i] = STATUS_FUNDED
            continue
        if remaining == 0:
            break
        if rule == "partial" and remaining < call.min_partial_share * g:
            # a residual this small is no funding: it stays unassigned and the list stops
            note[i] = (f"le risorse residue di {eur(remaining)} sono inferiori al "
                       f"{call.min_partial_share:.0%} del contributo di {eur(g)}: nessun "
                       f"finanziamento parziale, residuo non assegnato")
            stopped_at = pos
            break
        if rule == "partial":
            awarded[i] = remaining
            status[i] = STATUS_PARTIAL
            note[i] = f"{eur(g)}"
            remaining = 0
            stopped_at = pos
            break
        if rule == "stop":
            note[i] = (f"il contributo di {eur(g)} supera le risorse residue di {eur(remaining)} "
                       f"({RULE_LABEL[rule]})")
            stopped_at = pos
            break
        note[i] = (f"il contributo di {eur(g)} supera le risorse residue di {eur(remaining)}; "
                   f"si passa al successivo ({RULE_LABEL[rule]})")

    rank = np.full(len(p), np.nan)
    rank[order] = np.arange(1, len(order) + 1)
    p["rank"] = pd.array([pd.NA if np.isnan(r) else int(r) for r in rank], dtype="Int64")
    p["awarded_cents"] = awarded
    p["status"] = status
    p["capped"] = p["eligible"] & (p["requested_cents"] > p["grant_cents"])

    # ties: other projects with the same merit points among the eligible
    ties: dict[int, list[str]] = {}
    if len(order):
        ep = pd.DataFrame({"i": order, "pts": pts[order], "pid": p["project_id"].to_numpy()[order]})
        for _, g in ep.groupby("pts", sort=False):
            if len(g) > 1:
                for i in g["i"]:
                    ties[int(i)] = [x for x, j in zip(g["pid"], g["i"], strict=True) if j != i]
    tie_text = _tie_text(call)

    reasons: list[str] = []
    for i in range(len(p)):
        st = status[i]
        if st == STATUS_EXCLUDED:
            reasons.append(str(p.at[i, "exclusion_reason"]))
            continue
        r = int(rank[i])
        if st == STATUS_FUNDED:
            how = ("tetto per intervento; richiesti " + eur(p.at[i, "requested_cents"])
                   if p.at[i, "capped"] else "importo richiesto")
            text = f"Finanziato per {eur(awarded[i])} ({how}) — posizione {r}"
        elif st == STATUS_PARTIAL:
            text = (f"Finanziato parzialmente per {eur(awarded[i])} su {note[i]} "
                    f"(risorse residue) — posizione {r}")
        elif i in note:
            text = f"Idoneo non finanziato: {note[i]} — posizione {r}"
        elif stopped_at is not None and rule == "stop":
            text = (f"Idoneo non finanziato: scorrimento interrotto alla posizione {stopped_at} "
                    f"({RULE_LABEL[rule]}) — posizione {r}")
        else:
            text = f"Idoneo non finanziato: risorse esaurite — posizione {r}"
        if i in ties:
            text += (f" (pari merito {merit_text(pts[i] / 10**call.merit_decimals)} con "
                     f"{', '.join(ties[i])}; spareggio: {tie_text})")
        reasons.append(text)
    p["reason"] = _with_notes(reasons, p, call)
    p["grant_eur"] = p["grant_cents"] / 100.0
    p["awarded_eur"] = p["awarded_cents"] / 100.0
    p["granted_eur"] = p["awarded_eur"]  # the name the fund map reads

    excluded = np.flatnonzero(status == STATUS_EXCLUDED)
    # eligible in rank order, then excluded in input order
    p = p.iloc[np.concatenate([order, excluded])].reset_index(drop=True)

    n_funded = int((awarded > 0).sum())
    allocated = int(awarded.sum())
    mf = call.min_funded
    met = None if mf is None else n_funded >= mf
    msg = (f"Finanziati {n_funded} interventi per {eur(allocated)} su {eur(call.budget_cents)} "
           f"(residuo {eur(call.budget_cents - allocated)}); idonei {len(order)}, "
           f"esclusi {len(excluded)}")
    if mf is not None:
        msg += f"; minimo di {mf} interventi {'raggiunto' if met else 'NON raggiunto'}"
    summary = {
        "budget_eur": cents_to_eur(call.budget_cents),
        "budget_cents": int(call.budget_cents),
        "cap_eur": None if call.cap_cents is None else cents_to_eur(call.cap_cents),
        "allocated_eur": cents_to_eur(allocated),
        "allocated_cents": allocated,
        "leftover_eur": cents_to_eur(call.budget_cents - allocated),
        "leftover_cents": int(call.budget_cents - allocated),
        "n_projects": len(p),
        "n_eligible": len(order),
        "n_excluded": len(excluded),
        "n_funded": n_funded,
        "n_partial": int((status == STATUS_PARTIAL).sum()),
        "n_capped_funded": int((p["capped"] & (p["awarded_cents"] > 0)).sum()),
        "min_funded": mf,
        "min_funded_met": met,
        "cap_guarantees_min_funded": (None if mf is None or call.cap_cents is None
                                      else call.cap_cents * mf <= call.budget_cents),
        "last_project": rule,
        "total_merit_funded": float(p.loc[p["awarded_cents"] > 0, "merit"].sum()),
        "message": msg,
    }
    return GraduatoriaResult(call=call, table=p, summary=summary)
