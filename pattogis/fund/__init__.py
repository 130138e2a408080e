"""Fondo perequativo metropolitano (PTM Bologna art. 51-52): call rules, graduatoria, optimal
portfolio (MILP), comparison and explanations in Italian.

Entry points for the CLI and the API::

    call = load_call("bando_2023")                 # or a path to a call YAML
    territory = Territory.from_layers()             # comuni + indicators + TU of the layer set
    projects = projects_from_table("domande.gpkg", territory=territory)
                                                    # or validate_projects(gdf, territory=...):
                                                    # eligibility facts from the site polygons
    graduatoria(projects, call)  -> GraduatoriaResult   (.table, .summary, .to_dict())
    optimal(projects, call, **overrides) -> OptimalResult (.table, .portfolios, .constraints,
                                                          .solver, .to_dict())
    compare(grad, opt) -> Comparison
    run(call, projects, mode="graduatoria"|"optimal"|"compare") -> one of the above

Money is exact integer cents throughout; a project's grant is ``min(request, cap)``. Without a
territory the table's declarations are taken as given (unit tests of the arithmetic); the CLI
and the API always pass the territory. Documents: :mod:`pattogis.fund.export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pattogis.errors import InputError
from pattogis.fund.call import Call, OptimalParams, load_call
from pattogis.fund.compare import Comparison, compare
from pattogis.fund.fmt import eur, pct, to_cents
from pattogis.fund.graduatoria import GraduatoriaResult, eligibility, graduatoria
from pattogis.fund.optimal import FundInfeasibleError, OptimalResult, optimal
from pattogis.fund.projects import projects_from_table, tu_share, validate_projects
from pattogis.fund.territory import Territory, resolve

MODES = ("graduatoria", "optimal", "compare")

__all__ = [
    "MODES", "Call", "Comparison", "FundInfeasibleError", "GraduatoriaResult", "OptimalParams",
    "OptimalResult", "compare", "eligibility", "eur", "graduatoria", "load_call", "optimal",
    "pct", "projects_from_table", "run", "to_cents", "tu_share", "validate_projects",
    "Territory", "resolve",
]


def run(call: Call | str | Path = "bando_2023", projects: pd.DataFrame | str | Path | None = None,
        mode: str = "graduatoria", *, last_project: str | None = None,
        territory: Territory | None = None, label: str | None = None,
        **optimal_overrides: Any) -> GraduatoriaResult | OptimalResult | Comparison:
    """One call of the fund for the CLI/API: load the call and the projects, run ``mode``.

    ``projects`` is a table or a path (:func:`projects_from_table`; ``label`` names it in
    errors). With a ``territory`` the eligibility facts come from the site polygons
    (:func:`pattogis.fund.territory.resolve`), never from the declarations. ``last_project``
    overrides the graduatoria rule; other keyword arguments override optimal-mode rules.
    """
    if mode not in MODES:
        raise InputError(f"unknown fund mode '{mode}'", field="mode",
                         hint=f"use one of {', '.join(MODES)}")
    c = load_call(call)
    if projects is None:
        raise InputError("no projects given", field="projects",
                         hint="pass a projects file (CSV, GeoPackage, GeoJSON) or table")
    p = (projects_from_table(projects, territory=territory, label=label)
         if isinstance(projects, str | Path)
         else validate_projects(projects, territory=territory, source=label))
    if mode == "graduatoria":
        return graduatoria(p, c, last_project=last_project)
    if mode == "optimal":
        return optimal(p, c, **optimal_overrides)
    return compare(graduatoria(p, c, last_project=last_project), optimal(p, c, **optimal_overrides))
