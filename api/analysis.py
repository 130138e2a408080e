"""Analysis endpoints: ledger, scoring with posted weights, site comparison, fund, scenarios.

Each endpoint is a thin call into :mod:`pattogis.analysis`; results are also registered as OGC
API collections (``ledger_comuni``, ``site_scores``) so QGIS reads them like any layer.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.proposals import only, reader_dependency
from pattogis import analysis, layers
from pattogis.collections import Collection, CollectionRegistry
from pattogis.errors import ConfigError, InputError
from pattogis.store import Role


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_default))


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if o is pd.NA or (isinstance(o, float) and np.isnan(o)):
        return None
    return str(o)


def _records(df: pd.DataFrame) -> list[dict]:
    df = df.drop(columns="geometry", errors="ignore")
    return _jsonable(json.loads(df.to_json(orient="records", default_handler=str)))


@lru_cache(maxsize=4)
def _criteria(version: float) -> Any:
    return analysis.criteria_for(None)


def default_criteria() -> Any:
    """Criteria of the default candidates, cached until the layer set changes."""
    return _criteria(layers.gpkg_path().stat().st_mtime)


class ScoreRequest(BaseModel):
    profile: dict[str, Any] | str = Field("unione", description="profile name or a posted profile "
                                          "(criteria with weights, directions, normalisation)")
    method: str | None = Field(None, description="wsum or topsis (default: the profile's)")
    draws: int = Field(200, ge=0, le=5000, description="Monte Carlo weight draws")
    top: int = Field(50, ge=1, le=5000)


class CompareRequest(BaseModel):
    site_ids: list[str] = Field(..., min_length=1, max_length=50)
    profile: dict[str, Any] | str = "unione"


class FundRequest(BaseModel):
    call: str = "bando_2023"
    mode: str = Field("graduatoria", description="graduatoria, optimal or compare")
    projects: list[dict[str, Any]] | None = Field(
        None, description="applications; default: a demonstration set from the best-scored sites")


def _profile(profile: dict[str, Any] | str) -> Any:
    """A profile posted by a client: its mistakes are the client's (422), not the server's."""
    from pattogis import config, scoring

    # By name only: a client must not make the server read a file path of its choosing.
    if isinstance(profile, str) and profile not in config.list_profiles():
        raise InputError(f"unknown profile '{profile}'", field="profile",
                         hint=f"One of: {', '.join(config.list_profiles())}, or post a profile")
    try:
        return scoring.load_profile(profile)
    except ConfigError as e:
        raise InputError(f"invalid profile: {e}", field="profile") from e


def _register_results(registry: CollectionRegistry, get_store: Any) -> None:
    """Serve the ledger per comune and the site scores as OGC API collections."""
    def version() -> float:
        return layers.gpkg_path().stat().st_mtime

    registry.add(Collection(
        id="ledger_comuni", title="Bilancio consumo di suolo per comune (scenario base)",
        # aggregates are public: computed from the public proposals only (the read rule)
        provider=lambda: analysis.ledger_table("base", analysis.load_proposals(store=get_store(),
                                                                               role=None)),
        description="LR 24/2017 legal ledger per comune, hectares", version=None,
        attribution=layers.attribution(["comuni", "territorio_urbanizzato"]) if layers.exists() else ""))
    registry.add(Collection(
        id="site_scores", title="Punteggi dei siti candidati (profilo Unione)",
        provider=lambda: analysis.score_sites(crit=default_criteria(), profile="unione", draws=200),
        description="Scores, contributions and rank intervals of the default candidate sites",
        version=version))


def analysis_router(registry: CollectionRegistry, get_store: Any) -> APIRouter:
    """Analysis endpoints; proposals come from the app's store (``get_store()``)."""
    r = APIRouter(prefix="/analysis", tags=["analysis"])
    if registry.serves_built_layers:
        _register_results(registry, get_store)

    reader = reader_dependency()

    @r.get("/budget", summary="Land-budget ledger (ha) for the area, a comune or an Unione",
           dependencies=[Depends(only("comune", "unione", "scenario", "compare", "trajectory"))],
           openapi_extra={"security": [{}]})  # a key is optional: without it, the public view
    def budget(role: Role | None = Depends(reader),  # noqa: B008 - FastAPI dependency
               comune: str | None = None, unione: str | None = None, scenario: str = "base",
               compare: str | None = Query(None, description="second scenario to compare"),
               trajectory: bool = False) -> JSONResponse:
        """The ledger with the proposals the reader may see: without a key the public ones
        (submitted, approved); with a key also the drafts its role may write (metro: all)."""
        out = analysis.budget(comune=comune, unione=unione, scenario=scenario,
                              proposals=analysis.load_proposals(store=get_store(), role=role),
                              compare_with=compare,
                              with_trajectory=trajectory)
        return JSONResponse(_jsonable(out))

    @r.post("/score", summary="Score the default candidate sites with posted weights or profile")
    def score(req: ScoreRequest) -> JSONResponse:
        s = analysis.score_sites(crit=default_criteria(), profile=_profile(req.profile), method=req.method,
                                 draws=req.draws)
        s = s.sort_values("rank").head(req.top)
        return JSONResponse({"profile": _jsonable(s.attrs.get("profile")), "sites": _records(s)})

    @r.post("/compare", summary="Compare sites side by side (raw, normalised, contributions)")
    def compare(req: CompareRequest) -> JSONResponse:
        from pattogis import scoring

        crit = default_criteria().set_index("site_id")
        scored = scoring.score(crit, _profile(req.profile))
        table = scoring.compare(crit, scored, req.site_ids)
        return JSONResponse({"comparison": _records(table.reset_index())})

    @r.post("/fund", summary="Allocate the fund: graduatoria, optimal or both compared")
    def fund(req: FundRequest) -> JSONResponse:
        if req.projects is None:
            sc = analysis.score_sites(crit=default_criteria(), profile="fondo", draws=0)
            table = analysis.projects_from_sites(sc).drop(columns="geometry")
        else:
            table = pd.DataFrame(req.projects)
        from pattogis import config
        from pattogis.fund import load_call

        if req.call not in config.list_calls():  # by name only, never a server path
            raise InputError(f"unknown call '{req.call}'", field="call",
                             hint=f"One of: {', '.join(config.list_calls())}")
        try:
            call = load_call(req.call)
        except ConfigError as e:
            raise InputError(f"invalid call: {e}", field="call") from e
        res = analysis.fund(call, table, req.mode)
        return JSONResponse(_jsonable(res.to_dict()))

    return r

