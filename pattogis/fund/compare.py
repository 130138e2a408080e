"""Comparison of the graduatoria and the optimal portfolio of the same call and projects:
money per Unione and per territorial system, fragile population covered, projects that change
status, and one line per applicant in Italian. Money in integer cents (``*_cents``) and euros."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pattogis.errors import InputError
from pattogis.fund.fmt import cents_to_eur, eur
from pattogis.fund.graduatoria import GraduatoriaResult, records
from pattogis.fund.optimal import OptimalResult, _fragile_population

_COLS = ["project_id", "applicant", "ente", "territorial_system", "fragile", "population",
         "comune_istat", "merit", "eligible", "exclusion_reason", "status", "awarded_cents"]


def _int(n: int) -> str:
    return f"{n:,}".replace(",", ".")


def _progetti(n: int) -> str:
    return f"{n} progett{'o' if n == 1 else 'i'}"


@dataclass
class Comparison:
    """Graduatoria versus optimal portfolio. ``per_unione`` and ``per_system``: money and
    number of funded projects in each mode; ``changes``: projects funded in one mode only or
    with a different amount; ``applicants``: one Italian line per applicant."""

    per_unione: pd.DataFrame
    per_system: pd.DataFrame
    fragile_population: dict[str, int]
    changes: pd.DataFrame
    applicants: pd.DataFrame
    summary: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"mode": "compare", "summary": self.summary,
                "fragile_population": self.fragile_population,
                "per_unione": records(self.per_unione), "per_system": records(self.per_system),
                "changes": records(self.changes), "applicants": records(self.applicants)}

    def to_text(self) -> str:
        lines = ["Confronto graduatoria / portafoglio ottimo", self.summary["message"], ""]
        lines += self.applicants["line"].tolist()
        return "\n".join(lines)


def _by(m: pd.DataFrame, key: str, label: str) -> pd.DataFrame:
    k = m[key].astype(object).where(m[key].notna(), "n.d.")
    agg = pd.DataFrame({
        label: k,
        "graduatoria_cents": m["awarded_cents_g"],
        "optimal_cents": m["awarded_cents_o"],
        "graduatoria_n": (m["awarded_cents_g"] > 0).astype(int),
        "optimal_n": (m["awarded_cents_o"] > 0).astype(int),
    }).groupby(label, sort=True).sum().reset_index()
    agg["difference_cents"] = agg["optimal_cents"] - agg["graduatoria_cents"]
    for c in ("graduatoria", "optimal", "difference"):
        agg[f"{c}_eur"] = agg[f"{c}_cents"] / 100.0
    return agg


def compare(grad: GraduatoriaResult, opt: OptimalResult) -> Comparison:
    """Compare the two modes run on the same projects (matched by ``project_id``)."""
    g = grad.table[_COLS]
    o = opt.table[_COLS]
    if set(g["project_id"]) != set(o["project_id"]):
        raise InputError("graduatoria and optimal results are on different project sets",
                         field="project_id")
    m = g.merge(o[["project_id", "status", "awarded_cents"]], on="project_id",
                suffixes=("_g", "_o"))
    per_unione = _by(m, "ente", "unione")
    per_system = _by(m, "territorial_system", "territorial_system")
    fg = _fragile_population(g)
    fo = _fragile_population(o)

    diff = m["awarded_cents_g"] != m["awarded_cents_o"]
    ch = m[diff].copy()
    ch["change"] = np.select(
        [(ch["awarded_cents_g"] == 0), (ch["awarded_cents_o"] == 0)],
        ["entra nell'ottimo", "esce dall'ottimo"], "importo diverso")
    changes = ch[["project_id", "applicant", "ente", "merit", "status_g", "status_o",
                  "awarded_cents_g", "awarded_cents_o", "change"]].rename(columns={
                      "status_g": "graduatoria_status", "status_o": "optimal_status",
                      "awarded_cents_g": "graduatoria_cents", "awarded_cents_o": "optimal_cents"})
    changes = changes.assign(graduatoria_eur=changes["graduatoria_cents"] / 100.0,
                             optimal_eur=changes["optimal_cents"] / 100.0).reset_index(drop=True)

    lines = []
    for app, a in m.groupby("applicant", sort=True):
        cg, co = int(a["awarded_cents_g"].sum()), int(a["awarded_cents_o"].sum())
        ng, no = int((a["awarded_cents_g"] > 0).sum()), int((a["awarded_cents_o"] > 0).sum())
        if not a["eligible"].any():
            reason = str(a["exclusion_reason"].iloc[0]).removeprefix("Escluso: ")
            extra = f" (e altri {len(a) - 1})" if len(a) > 1 else ""
            line = f"{app}: escluso in entrambe le modalità — {reason}{extra}."
        elif cg == 0 and co == 0:
            ids = ", ".join(a.loc[a["eligible"], "project_id"].astype(str))
            line = (f"{app}: nessun finanziamento in entrambe le modalità ({ids} idone"
                    f"{'o' if a['eligible'].sum() == 1 else 'i'} ma non finanziat"
                    f"{'o' if a['eligible'].sum() == 1 else 'i'}).")
        else:
            line = (f"{app}: graduatoria {eur(cg)} ({_progetti(ng)}), ottimo {eur(co)} "
                    f"({_progetti(no)})")
            if co != cg:
                line += f", differenza {'+' if co > cg else ''}{eur(co - cg)}"
            ins = a.loc[(a["awarded_cents_g"] == 0) & (a["awarded_cents_o"] > 0), "project_id"]
            outs = a.loc[(a["awarded_cents_g"] > 0) & (a["awarded_cents_o"] == 0), "project_id"]
            part = a.loc[(a["awarded_cents_g"] > 0) & (a["awarded_cents_o"] > 0)
                         & (a["awarded_cents_g"] != a["awarded_cents_o"]), "project_id"]
            bits = []
            if len(ins):
                bits.append("nell'ottimo entra " + ", ".join(ins.astype(str)))
            if len(outs):
                bits.append("esce " + ", ".join(outs.astype(str)))
            if len(part):
                bits.append("cambia importo " + ", ".join(part.astype(str)))
            line += ("; " + "; ".join(bits) if bits else "; stessi progetti") + "."
        lines.append({"applicant": app, "graduatoria_cents": cg, "optimal_cents": co,
                      "graduatoria_n": ng, "optimal_n": no, "line": line})
    applicants = pd.DataFrame(lines)

    tg, to = int(m["awarded_cents_g"].sum()), int(m["awarded_cents_o"].sum())
    n_in = int((changes["change"] == "entra nell'ottimo").sum())
    n_out = int((changes["change"] == "esce dall'ottimo").sum())
    msg = (f"Graduatoria: {eur(tg)} a {_progetti(int((m['awarded_cents_g'] > 0).sum()))}; ottimo: "
           f"{eur(to)} a {_progetti(int((m['awarded_cents_o'] > 0).sum()))}; nell'ottimo "
           f"{n_in} {'entra' if n_in == 1 else 'entrano'} e {n_out} "
           f"{'esce' if n_out == 1 else 'escono'}; popolazione fragile coperta {_int(fg)} → "
           f"{_int(fo)}")
    summary = {
        "graduatoria_allocated_eur": cents_to_eur(tg),
        "optimal_allocated_eur": cents_to_eur(to),
        "graduatoria_total_merit": float(m.loc[m["awarded_cents_g"] > 0, "merit"].sum()),
        "optimal_total_merit": float(m.loc[m["awarded_cents_o"] > 0, "merit"].sum()),
        "n_changed": len(changes),
        "n_enter_optimal": n_in,
        "n_leave_optimal": n_out,
        "message": msg,
    }
    return Comparison(per_unione=per_unione, per_system=per_system,
                      fragile_population={"graduatoria": fg, "optimal": fo},
                      changes=changes, applicants=applicants, summary=summary)
