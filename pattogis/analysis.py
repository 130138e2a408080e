"""The analyses as the CLI and the API call them: load the layers, call the library, return tables.

Each function here is a thin composition of library functions (ledger, criteria, scoring, fund);
no analysis logic lives in the CLI verbs or the API endpoints, which both call these.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pattogis import layers, ledger
from pattogis.errors import InputError, NotFound


@cache
def _base(mtime: float) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    return layers.open_layer("comuni"), layers.open_layer("territorio_urbanizzato")


def base_layers() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(comuni, territorio urbanizzato), cached until the layer set is rebuilt."""
    return _base(layers.gpkg_path().stat().st_mtime)


def load_proposals(source: str | Path | None = None, *, store: Any = None,
                   role: Any = None) -> gpd.GeoDataFrame:
    """Proposals from a file (validated), or from the proposals store as ``role`` may read them
    (the store's read rule; None, the default: the public — submitted and approved ones).
    Every face that shows proposals (budget, ledger collection, maps, exports) loads them here."""
    from pattogis import proposals as P

    comuni, _ = base_layers()
    if source is not None:
        return P.validate_proposals(P.read_proposals(source), comuni, label=str(source))
    if store is None:
        from pattogis.store import open_store

        store = open_store(comuni=comuni)
    return store.list(role=role)


def budget(*, comune: str | None = None, unione: str | None = None, scenario: str = "base",
           proposals: gpd.GeoDataFrame | None = None, compare_with: str | None = None,
           with_trajectory: bool = False) -> dict[str, Any]:
    """The legal ledger of a scenario, for the whole area or one comune / Unione (ha)."""
    comuni, tu = base_layers()
    if comune and unione:
        raise InputError("give a comune or an Unione, not both", field="comune/unione")
    led = ledger.compute(comuni, tu, proposals, scenario=scenario)
    if comune:
        if comune not in set(comuni["istat"]):
            hit = comuni[comuni["name"].str.lower() == comune.lower()]
            if hit.empty:
                raise NotFound(f"unknown comune '{comune}': give its ISTAT code (e.g. 037006) or name")
            comune = str(hit["istat"].iloc[0])
        out: dict[str, Any] = {"level": "comune", "scenario": scenario, **led.comune(comune)}
        key, level = comune, "comune"
    elif unione:
        out = {"level": "unione", "scenario": scenario, **led.unione(unione)}
        key, level = unione, "unione"
    else:
        out = {"level": "metro", **led.to_dict()}
        key, level = None, "metro"
    if with_trajectory:
        out["trajectory"] = ledger.trajectory(led, level=level, key=key).to_dict(orient="records")
    if compare_with:
        other = ledger.compute(comuni, tu, proposals, scenario=compare_with)
        out["comparison"] = ledger.compare(led, other).to_dict(orient="records")
    return out


def ledger_table(scenario: str = "base", proposals: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """The ledger per comune as a GeoDataFrame (for maps and the features API)."""
    comuni, tu = base_layers()
    led = ledger.compute(comuni, tu, proposals, scenario=scenario)
    g = comuni[["istat", "geometry"]].merge(led.comuni, on="istat")
    return gpd.GeoDataFrame(g, crs=comuni.crs)


# --- scoring -------------------------------------------------------------------------------------


def criteria_for(candidates: gpd.GeoDataFrame | str | Path | None = None, *,
                 engine: str = "local") -> gpd.GeoDataFrame:
    """Raw criteria of candidate sites (the default candidate set when None)."""
    from pattogis.criteria import CriteriaContext, compute_criteria

    if candidates is None:
        cand = layers.open_layer("candidates")
    elif isinstance(candidates, (str, Path)):
        from pattogis.criteria import read_candidates

        cand = read_candidates(candidates)
    else:
        cand = candidates
    return compute_criteria(cand, CriteriaContext.from_layers(), engine=engine)


def score_sites(candidates: gpd.GeoDataFrame | str | Path | None = None, *,
                profile: str | dict = "unione", method: str | None = None,
                draws: int = 500, top_k: int = 10, seed: int = 0,
                crit: gpd.GeoDataFrame | None = None, engine: str = "local") -> gpd.GeoDataFrame:
    """Score sites: raw criteria, normalised values, contributions, score, rank and the Monte Carlo
    rank interval (``rank_p5``..``rank_p95``) and probability of being in the top ``top_k``.
    ``engine``: where the criteria run (``'local'`` or ``'dask'``, same values)."""
    from pattogis import scoring

    crit = crit if crit is not None else criteria_for(candidates, engine=engine)
    data = crit.set_index("site_id") if "site_id" in crit.columns else crit
    scored = scoring.score(data, profile, method=method)
    raw_cols = [c for c in data.columns if c not in scored.columns and c != "geometry"]
    out = scored.join(data[raw_cols])
    if draws > 0:  # the rank interval is asked for; draws=0 skips it (fund demo, quick scoring)
        mc = scoring.monte_carlo(data, profile, method=method, draws=draws, top_k=top_k, seed=seed)
        out = out.join(mc.drop(columns=[c for c in mc.columns if c in scored.columns]))
    out = gpd.GeoDataFrame(out, geometry="geometry", crs=crit.crs) if "geometry" in out else out
    out.attrs = scored.attrs
    return out.reset_index().rename(columns={"index": "site_id"})


# --- fund ----------------------------------------------------------------------------------------


def projects_from_sites(scored: gpd.GeoDataFrame, *, n: int = 40, eur_per_m2: float = 30.0,
                        max_request_eur: float = 400_000.0, seed: int = 0) -> gpd.GeoDataFrame:
    """A DEMONSTRATION set of fund projects from scored sites, for maps and trials when no real
    applications are loaded: the best-ranked sites, one application each by the host's Unione
    (or the comune when it belongs to none); requested amount = site area × ``eur_per_m2``, capped.
    Labelled ``dimostrativo``; replace it with the real applications file (``--projects``)."""
    from pattogis.fund import tu_share

    comuni, tu = base_layers()
    ind = layers.open_layer("comuni_indicators")[["istat", "territorial_system", "fragile",
                                                  "fragility_index", "pop_total"]]
    s = scored.dropna(subset=["score"]).sort_values("score", ascending=False).head(n).copy()
    s = s.drop(columns=[c for c in ("istat", "unione", "comune_name") if c in s.columns])
    s = s.merge(comuni[["istat", "name", "unione"]].rename(columns={"name": "comune_name"}),
                left_on="comune_istat", right_on="istat", how="left").merge(ind, on="istat", how="left")
    has_u = s["unione"].notna() & (s["unione"] != "")
    proj = gpd.GeoDataFrame({
        "project_id": "P-" + s["site_id"].astype(str),
        "title": "Rigenerazione " + s["site_id"].astype(str) + " (" + s["comune_name"].fillna("") + ")",
        "applicant": np.where(has_u, s["unione"], "Comune di " + s["comune_name"]),
        "applicant_type": np.where(has_u, "unione", "comune"),
        "unione": s["unione"].where(has_u),
        "comune_istat": s["comune_istat"],
        "territorial_system": s["territorial_system"],
        "fragile": s["fragile"].astype(bool),
        "fragility_index": s["fragility_index"],
        "population": s["pop_total"].astype(int),
        "requested_eur": np.minimum(s.geometry.area * eur_per_m2, max_request_eur).round(2),
        "merit": s["score"].astype(float),
        "source": "dimostrativo",
    }, geometry=s.geometry.values, crs=scored.crs)
    proj["inside_tu_share"] = tu_share(proj.geometry, tu)
    return proj


def fund(call: str | Path = "bando_2023", projects: gpd.GeoDataFrame | str | Path | None = None,
         mode: str = "graduatoria", **kw: Any) -> Any:
    """Run a fund call on applications (a file or table) in graduatoria, optimal or compare mode."""
    from pattogis import fund as F

    return F.run(call, projects, mode, **kw)


def attach_geometry(table: pd.DataFrame, projects: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Join a fund result table back to the project polygons (by project_id) for maps."""
    g = projects[["project_id", "geometry"]].merge(table, on="project_id", how="right")
    return gpd.GeoDataFrame(g, geometry="geometry", crs=projects.crs)


# --- providers of the map pages ------------------------------------------------------------------


def unione_sites(unione: str, *, profile: str | dict = "unione", draws: int = 300) -> gpd.GeoDataFrame:
    """Scored candidate sites of one Unione (or 'Comune di X' for comuni in no Unione)."""
    comuni, _ = base_layers()
    members = comuni.loc[ledger.unione_label(comuni) == unione, "istat"]
    if members.empty:
        raise NotFound(f"unknown Unione '{unione}'; known: {', '.join(sorted(set(ledger.unione_label(comuni))))}")
    cand = layers.open_layer("candidates")
    cand = cand[cand["comune_istat"].isin(members)]
    if cand.empty:
        raise NotFound(f"no candidate sites in '{unione}'")
    return score_sites(cand, profile=profile, draws=draws)


def fund_geo(call: str | Path = "bando_2023", mode: str = "graduatoria",
             projects: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """A fund result with the project polygons, for the fund map. Without ``projects`` it uses the
    demonstration applications of :func:`projects_from_sites` (labelled so)."""
    if mode not in ("graduatoria", "optimal"):
        raise InputError(f"a fund map shows one allocation: mode '{mode}' is not one", field="mode",
                         hint="Use graduatoria or optimal")
    if projects is None:
        projects = projects_from_sites(score_sites(profile="fondo", draws=0))
    res = fund(call, projects.drop(columns="geometry"), mode)
    return attach_geometry(res.table, projects)
