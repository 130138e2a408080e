"""The analyses as the CLI and the API call them: load the layers, call the library, return tables.

Each function here is a thin composition of library functions (ledger, criteria, scoring, fund);
no analysis logic lives in the CLI verbs or the API endpoints, which both call these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pattogis import layers, ledger, workspace
from pattogis.errors import InputError, NotFound
from pattogis.settings import get_settings


def base_layers() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """(comuni, territorio urbanizzato), read once per layer set (:mod:`pattogis.workspace`)."""
    return workspace.default().base_layers()


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


def resolve_comune(comune: str) -> str:
    """ISTAT code of a comune given by code or name (case-insensitive)."""
    comuni, _ = base_layers()
    if comune in set(comuni["istat"]):
        return comune
    hit = comuni[comuni["name"].str.lower() == str(comune).lower()]
    if hit.empty:
        raise NotFound(f"unknown comune '{comune}': give its ISTAT code (e.g. 037006) or name")
    return str(hit["istat"].iloc[0])


def default_scenario(proposals: gpd.GeoDataFrame | None) -> str:
    """The scenario a ledger shows when none is asked for: the one scenario of the proposals
    given when they all share one (a file of PUG proposals is about that scenario), else 'base'."""
    if proposals is not None and len(proposals) and "scenario" in proposals.columns:
        sc = proposals["scenario"].dropna().unique()
        if len(sc) == 1:
            return str(sc[0])
    return "base"


def budget(*, comune: str | None = None, unione: str | None = None, scenario: str | None = "base",
           proposals: gpd.GeoDataFrame | None = None, compare_with: str | None = None,
           with_trajectory: bool = False) -> dict[str, Any]:
    """The legal ledger of a scenario, for the whole area or one comune / Unione (ha).

    ``scenario=None``: :func:`default_scenario`. Every level carries ``overrun`` (sforamento),
    ``overrun_ha`` and ``overrun_year``; ``left_out`` counts the proposals the scenario and the
    statuses leave out (never silently). ``compare_with``: a second scenario, per comune of the
    level asked for, ``delta = scenario − compare_with`` (stated in ``comparison_sign``).
    """
    comuni, tu = base_layers()
    if comune and unione:
        raise InputError("give a comune or an Unione, not both", field="comune/unione")
    scenario = scenario or default_scenario(proposals)
    led = ledger.compute(comuni, tu, proposals, scenario=scenario)
    members: list[str] | None = None
    if comune:
        comune = resolve_comune(comune)
        out: dict[str, Any] = {"level": "comune", "scenario": scenario, **led.comune(comune)}
        key, level = comune, "comune"
        members = [comune]
    elif unione:
        out = {"level": "unione", "scenario": scenario, **led.unione(unione)}
        key, level = unione, "unione"
        members = [c["istat"] for c in out["comuni"]]
    else:
        out = {"level": "metro", **led.to_dict()}
        key, level = None, "metro"
    lo = led.left_out
    if members is not None and len(lo):
        lo = lo[lo["comune_istat"].isin(members)]
    out["left_out"] = ledger.left_out_summary(lo)
    out["n_proposals_given"] = int(proposals["proposal_id"].nunique()) if proposals is not None and len(proposals) else 0
    if with_trajectory:
        t = ledger.trajectory(led, level=level, key=key)
        out["trajectory"] = t.to_dict(orient="records")
        over = t.loc[t["overdraft"], "year"]
        out["trajectory_overrun_year"] = int(over.iloc[0]) if len(over) else None
    if compare_with:
        other = ledger.compute(comuni, tu, proposals, scenario=compare_with)
        cmp = ledger.compare(led, other, comuni=members)
        out["comparison"] = cmp.to_dict(orient="records")
        out["comparison_sign"] = cmp.attrs["sign"]
    return out


def monitoring(*, comune: str | None = None, proposals: gpd.GeoDataFrame | None = None,
               scenario: str | None = None) -> dict[str, Any]:
    """The six-monthly monitoring of LR 24/2017 art. 5 (approved transformations per period and
    comune, ha) with, beside it, the comune's ledger status including proposals still in
    progress (``ledger``: remaining, overrun, year)."""
    comuni, tu = base_layers()
    comune = resolve_comune(comune) if comune else None
    p = proposals if proposals is not None else load_proposals()
    scenario = scenario or default_scenario(p)
    ps = p[p["scenario"] == scenario] if len(p) and "scenario" in p.columns else p
    table = ledger.monitoring(ps, tu, comuni, comune=comune)
    led = ledger.compute(comuni, tu, p, scenario=scenario)
    status = led.comuni if comune is None else led.comuni[led.comuni["istat"] == comune]
    cols = ["istat", "name", "envelope_ha", "consumed_ha", "desealed_ha", "remaining_ha",
            "overrun", "overrun_ha", "overrun_year", "n_proposals"]
    status = status.assign(envelope_ha=status["local_quota_ha"] + status["metro_assigned_ha"])[cols]
    from pattogis import config

    law = config.law()
    return {"scenario": scenario, "comune": comune, "units": "ha",
            "statuses": list(law.get("monitoring_statuses", ["approvata"])),
            "period_months": int(law.get("monitoring_period_months", 6)),
            "periods": table.to_dict(orient="records"),
            "ledger": status.to_dict(orient="records")}


def _physical_ledger() -> pd.DataFrame:
    edges = layers.open_layer("roads_edges", columns=["u", "v", "highway"]) if layers.has_layer("roads_edges") else None
    return ledger.physical_ledger(layers.open_layer("comuni"),
                                  layers.open_layer("buildings", columns=["comune_istat", "area_m2"]),
                                  edges)


def physical(*, comune: str | None = None, proposals: gpd.GeoDataFrame | None = None) -> dict[str, Any]:
    """The physical ledger (sealed surface per comune, ha; never mixed with the legal one), with
    the sealed surface inside each proposal when proposals are given."""
    t = workspace.default().cached("physical_ledger", _physical_ledger)
    if comune:
        comune = resolve_comune(comune)
        t = t[t["istat"] == comune]
    out: dict[str, Any] = {"units": "ha", "comune": comune, "comuni": t.to_dict(orient="records"),
                           "note": "Ledger fisico (superficie sigillata stimata), separato dal "
                                   "bilancio legale LR 24/2017"}
    if proposals is not None and len(proposals):
        p = proposals if not comune else proposals[proposals["comune_istat"] == comune]
        b = layers.open_layer("buildings", columns=["comune_istat"])
        out["proposals"] = ledger.physical_proposals(p, b).to_dict(orient="records")
    return out


def ledger_table(scenario: str = "base", proposals: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """The ledger per comune as a GeoDataFrame (for maps and the features API)."""
    comuni, tu = base_layers()
    led = ledger.compute(comuni, tu, proposals, scenario=scenario)
    g = comuni[["istat", "geometry"]].merge(led.comuni, on="istat")
    return gpd.GeoDataFrame(g, crs=comuni.crs)


# --- scoring -------------------------------------------------------------------------------------


def criteria_context() -> Any:
    """The criteria context of the built layers (road graph, rasters...), built once per layer
    set by the workspace, so scoring an upload does not reread the layers."""
    return workspace.default().context()


def read_own_sites(source: Any, **options: Any) -> gpd.GeoDataFrame:
    """A planner's own sites (file path, upload bytes, GeoJSON dict), flagged when outside the
    metropolitan area: :func:`pattogis.criteria.read_candidates` with the comuni layer."""
    from pattogis.criteria import read_candidates

    comuni, _ = base_layers()
    return read_candidates(source, comuni=comuni, **options)


def criteria_for(candidates: gpd.GeoDataFrame | str | Path | bytes | dict | None = None, *,
                 engine: str = "local", **read_options: Any) -> gpd.GeoDataFrame:
    """Raw criteria of candidate sites: the default candidate set when None (computed once per
    layer set); a file, upload bytes or a GeoJSON dict is read with :func:`read_own_sites` and
    ``read_options``. The criteria context and road graph are the workspace's, built once."""
    if isinstance(candidates, (str, Path, bytes, bytearray, dict)):
        candidates = read_own_sites(candidates, **read_options)
    return workspace.default().criteria(candidates, engine=engine)


def score_sites(candidates: gpd.GeoDataFrame | str | Path | bytes | dict | None = None, *,
                profile: str | dict | Any = "unione", method: str | None = None,
                draws: int | None = None, top_k: int | None = None, seed: int | None = None,
                crit: gpd.GeoDataFrame | None = None, engine: str = "local",
                **read_options: Any) -> gpd.GeoDataFrame:
    """Score sites against the metropolitan reference (:meth:`Workspace.reference`): raw
    criteria, normalised values, contributions, score (the same for a site in every call), rank
    within the sites scored, and the Monte Carlo rank interval (``rank_p5``..``rank_p95``) and
    probability of being in the top ``top_k``. ``draws``, ``top_k`` and ``seed`` default to the
    profile's ``monte_carlo`` section (``draws=0`` skips it). ``engine``: where the criteria run
    (``'local'`` or ``'dask'``, same values)."""
    if crit is None and candidates is not None:
        crit = criteria_for(candidates, engine=engine, **read_options)
    return workspace.default().score_sites(profile=profile, method=method, draws=draws,
                                           top_k=top_k, seed=seed, crit=crit, engine=engine)


# --- fund ----------------------------------------------------------------------------------------


def projects_from_sites(scored: gpd.GeoDataFrame, *, n: int = 40, eur_per_m2: float = 30.0,
                        max_request_eur: float = 400_000.0, seed: int = 0) -> gpd.GeoDataFrame:
    """A DEMONSTRATION set of fund projects from scored sites, for maps and trials when no real
    applications are loaded: the best-ranked sites, one application each by the host's Unione
    (or the comune when it belongs to none); requested amount = site area × ``eur_per_m2``, capped.
    Labelled ``dimostrativo``; replace it with the real applications file (``--projects``)."""
    from pattogis import config
    from pattogis.fund.territory import tu_inside_m2

    comuni, _ = base_layers()
    ind = workspace.default().layer("comuni_indicators")[["istat", "territorial_system", "fragile",
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
    # the TU pieces the fund's territory keeps (merged once per layer set): merging every TU
    # polygon again took 0.7 s of each demonstration fund page
    g = proj.geometry.to_crs(config.working_crs())
    area = g.area.to_numpy()
    inside = tu_inside_m2(g, fund_territory().tu_pieces)
    with np.errstate(invalid="ignore", divide="ignore"):
        proj["inside_tu_share"] = np.where(area > 0, np.clip(inside / area, 0.0, 1.0), 0.0)
    return proj


def fund_territory() -> Any:
    """The territory the fund decides on (comuni with indicators, TU), built once per layer set
    by the workspace."""
    from pattogis.fund import Territory

    return workspace.default().cached("fund_territory", Territory.from_layers)


def read_applications(path: str | Path, *, label: str | None = None,
                      limits: Any = None) -> gpd.GeoDataFrame:
    """Applications from a file (CSV with ``wkt``/``epsg``, GPKG, GeoJSON, zipped SHP,
    GeoParquet), checked, with the eligibility facts taken from the territory; ``limits``
    (:class:`pattogis.io.UploadLimits`) for a client's upload."""
    from pattogis.fund import projects_from_table

    return projects_from_table(path, territory=fund_territory(), label=label, limits=limits)


def fund(call: str | Path | None = None, projects: gpd.GeoDataFrame | str | Path | None = None,
         mode: str = "graduatoria", *, label: str | None = None, **kw: Any) -> Any:
    """Run a fund call on applications (a file or table) in graduatoria, optimal or compare mode;
    eligibility is decided from the built territory (site polygons against comuni and TU).
    ``call`` defaults to the settings' ``default_call`` (``PATTOGIS_DEFAULT_CALL``)."""
    from pattogis import fund as F

    return F.run(call or get_settings().default_call, projects, mode, territory=fund_territory(),
                 label=label, **kw)


def attach_geometry(table: pd.DataFrame, projects: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Join a fund result table back to the project polygons (by project_id) for maps."""
    if isinstance(table, gpd.GeoDataFrame) and table.crs is not None:
        return table
    t = table.drop(columns="geometry", errors="ignore")
    g = projects[["project_id", "geometry"]].merge(t, on="project_id", how="right")
    return gpd.GeoDataFrame(g, geometry="geometry", crs=projects.crs)


# --- providers of the map pages ------------------------------------------------------------------


def unione_sites(unione: str, *, profile: str | dict = "unione", draws: int | None = None) -> gpd.GeoDataFrame:
    """Scored candidate sites of one Unione (or 'Comune di X' for comuni in no Unione)."""
    crit = workspace.default().candidate_criteria(unione=unione)
    return score_sites(crit=crit, profile=profile, draws=draws)


def fund_geo(call: str | Path | None = None, mode: str = "graduatoria",
             projects: gpd.GeoDataFrame | str | Path | None = None, *,
             demo: bool = False) -> gpd.GeoDataFrame:
    """A fund result with the project polygons, for the fund map: the given applications (a
    table or a file). Without them, the demonstration applications of
    :func:`projects_from_sites` only when ``demo`` is asked; the result then carries
    ``attrs['dimostrativo'] = True`` and the map says so."""
    if mode not in ("graduatoria", "optimal"):
        raise InputError(f"a fund map shows one allocation: mode '{mode}' is not one", field="mode",
                         hint="Use graduatoria or optimal")
    if projects is None:
        if not demo:
            raise NotFound(
                "no applications loaded: upload them (POST /fund/runs, or `pattogis maps --fund "
                "--projects FILE`) or ask for the demonstration set (?dimostrativo=true, --demo)")
        projects = projects_from_sites(score_sites(profile="fondo", draws=0))
    res = fund(call, projects, mode)
    out = attach_geometry(res.table, projects if isinstance(projects, gpd.GeoDataFrame)
                          else res.table)
    out.attrs["dimostrativo"] = bool(demo and projects is not None
                                     and "source" in projects
                                     and (projects["source"] == "dimostrativo").all())
    out.attrs["call"] = res.call.title
    out.attrs["budget_eur"] = res.call.budget_cents / 100.0
    return out
