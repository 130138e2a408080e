"""Analysis endpoints: ledger, scoring with posted weights, site comparison, fund, scenarios.

Each endpoint is a thin call into :mod:`pattogis.analysis`; results are also registered as OGC
API collections (``ledger_comuni``, ``site_scores``) so QGIS reads them like any layer.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from api.errors import documents
from api.proposals import only, reader_dependency
from pattogis import analysis, layers, workspace
from pattogis.collections import Collection, CollectionRegistry
from pattogis.errors import ConfigError, InputError
from pattogis.exports import no_nan
from pattogis.scoring import ProfileSpec
from pattogis.settings import get_settings
from pattogis.store import Role


def _jsonable(obj: Any) -> Any:
    return no_nan(json.loads(json.dumps(obj, default=_default)))


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


def default_criteria() -> Any:
    """Criteria of the default candidates, cached by the workspace until the layer set changes."""
    return workspace.default().criteria()


class ScoreRequest(BaseModel):
    profile: ProfileSpec | str = Field("unione", description="profile name or a posted profile "
                                       "(criteria with weights, directions, normalisation)")
    method: str | None = Field(None, description="wsum or topsis (default: the profile's)")
    draws: int | None = Field(None, ge=0, le=5000, description="Monte Carlo weight draws "
                              "(default: the profile's monte_carlo.draws; 0 skips)")
    top: int = Field(50, ge=1, le=100_000, description="sites returned, best first")
    sites: dict[str, Any] | None = Field(
        None, description="your own sites: a GeoJSON FeatureCollection of polygons or points "
        "(RFC 7946 CRS84 lon/lat, or the CRS of a legacy crs member); default: the built candidates")
    unione: str | None = Field(None, min_length=1, max_length=200, description="score only this "
                               "Unione's candidates (or 'Comune di X' for a comune in no Unione): "
                               "ranks and rank intervals within it; scores are the same as in "
                               "the whole set (metropolitan reference)")
    site_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None, min_length=1, max_length=10_000, description="score only these candidate sites "
        "(with unione: they must be in it)")
    crs: str | None = Field(None, description="CRS of sites that declare none (e.g. EPSG:25832)")
    id_field: str | None = Field(None, description="property holding the site id (default: "
                                 "site_id/id/codice, else SITO-001...)")
    name_field: str | None = Field(None, description="property holding the site name")
    wkt_field: str | None = Field(None, description="CSV upload: column holding WKT geometry")
    lon_field: str | None = Field(None, description="CSV upload: longitude column")
    lat_field: str | None = Field(None, description="CSV upload: latitude column")
    format: str = Field("json", pattern="^(json|csv|xlsx|gpkg)$",
                        description="json, or a file: csv (Italian format), xlsx, gpkg")

    def read_options(self) -> dict[str, Any]:
        opts = {k: getattr(self, k) for k in ("crs", "id_field", "name_field", "wkt_field",
                                               "lon_field", "lat_field")}
        return {k: v for k, v in opts.items() if v}


class CompareRequest(BaseModel):
    site_ids: list[str] = Field(..., min_length=1, max_length=50)
    profile: ProfileSpec | str = "unione"


class FundRequest(BaseModel):
    call: str | None = Field(None, description="call id (default: the server's PATTOGIS_DEFAULT_CALL)")
    mode: str = Field("graduatoria", description="graduatoria, optimal or compare")
    projects: list[dict[str, Any]] | None = Field(
        None, description="applications, each with its site as 'wkt' and 'epsg' (eligibility is "
                          "decided from the site); default: a demonstration set from the "
                          "best-scored sites. To upload a file use POST /fund/runs")


def _profile(profile: ProfileSpec | str) -> Any:
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


async def _score_input(request: Request) -> tuple[ScoreRequest, Any, str]:
    """(options, sites source or None, label) from a JSON body, a bare FeatureCollection body
    (options in the query) or a multipart upload (the file in ``file``, options as form fields)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()  # bounded by the app's BodyLimitMiddleware (413 beyond)
    params: dict[str, Any] = dict(request.query_params)
    source: Any = None
    label = "body"
    if media == "multipart/form-data":
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        form = await Request(request.scope, replay).form()
        f = form.get("file")
        if not isinstance(f, UploadFile):
            raise InputError("a multipart upload needs the sites file in a field named 'file'",
                             field="file")
        source, label = await f.read(), f.filename or "upload"
        params |= {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
    elif body.strip():
        try:
            obj = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"the body is not JSON: {e}") from e
        if isinstance(obj, dict) and obj.get("type") in ("FeatureCollection", "Feature"):
            source = obj
        elif isinstance(obj, dict):
            params |= obj
        else:
            raise InputError("the body must be a JSON object", hint="a ScoreRequest or a FeatureCollection")
    try:
        req = ScoreRequest.model_validate(params)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from e
    if source is None and req.sites is not None:
        source = req.sites
    return req, source, label


def _score_response(s: Any, req: ScoreRequest) -> Response:
    """Scored sites best first: JSON (with the Italian reason per site) or a file."""
    from pattogis import reports

    s = s.sort_values("rank", na_position="last")
    if req.format != "json":
        data, media, ext = reports.scores_file(s, req.format)
        return Response(data, media_type=media,
                        headers={"Content-Disposition": f'attachment; filename="punteggi.{ext}"'})
    why_all = reports.reasons_it(s)  # ranks and counts among every site scored, not the top shown
    n_out = int(s["outside_metro"].sum()) if "outside_metro" in s.columns else 0
    s = s.head(req.top)
    recs = _records(s)
    for rec, why in zip(recs, why_all.loc[s.index], strict=True):
        rec["motivazione"] = why
    return JSONResponse({"profile": _jsonable(s.attrs.get("profile")), "n_sites": len(why_all),
                         "n_outside_metro": n_out, "sites": recs})


def _document(html: str, fmt: str, name: str) -> Response:
    """A printable document as HTML (print from the browser) or PDF."""
    from pattogis import reports

    if fmt == "html":
        return Response(html, media_type=reports.MEDIA["html"])
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    return Response(reports.document_bytes(html, "pdf"), media_type=reports.MEDIA["pdf"],
                    headers={"Content-Disposition": f'attachment; filename="{safe}.pdf"'})


def _register_results(registry: CollectionRegistry, get_store: Any) -> None:
    """Serve the ledger per comune and the site scores as OGC API collections."""
    def version() -> float:
        return layers.gpkg_path().stat().st_mtime

    def ledger_version() -> tuple[Any, ...]:
        # the ledger changes with the layer set and with every public proposal's version
        public = get_store().list(role=None)
        rows = sorted(zip(public["proposal_id"].astype(str), public["version"].astype(int),
                          public["status"].astype(str), strict=True)) if len(public) else []
        return (version(), tuple(rows))

    registry.add(Collection(
        id="ledger_comuni", title="Bilancio consumo di suolo per comune (scenario base)",
        # aggregates are public: computed from the public proposals only (the read rule)
        provider=lambda: analysis.ledger_table("base", analysis.load_proposals(store=get_store(),
                                                                               role=None)),
        description="LR 24/2017 legal ledger per comune, hectares", version=ledger_version,
        attribution=layers.attribution(["comuni", "territorio_urbanizzato"]) if layers.exists() else ""))
    registry.add(Collection(
        id="site_scores", title="Punteggi dei siti candidati (profilo Unione)",
        provider=lambda: analysis.score_sites(crit=default_criteria(), profile="unione"),
        description="Scores, contributions and rank intervals of the default candidate sites",
        version=version))


def _form_fields() -> dict[str, Any]:
    """The multipart form fields of a score upload, typed as the JSON body's (a field that is a
    model in JSON, the profile, is its name in a form; the set restrictions are JSON-only)."""
    props = ScoreRequest.model_json_schema()["properties"]
    out: dict[str, Any] = {}
    for name, sch in props.items():
        if name in ("sites", "unione", "site_ids"):
            continue
        branches = [b for b in sch.get("anyOf", [sch]) if b.get("type") != "null"]
        b = branches[0] if len(branches) == 1 and "$ref" not in branches[0] else {"type": "string"}
        out[name] = {k: v for k, v in b.items() if k in ("type", "minimum", "maximum", "pattern",
                                                         "enum", "minLength", "maxLength")}
        out[name]["description"] = sch.get("description", "")
    return out


#: The request body of /analysis/score (and of a site's scheda): JSON, or a file with form fields.
SCORE_BODY: dict[str, Any] = {"required": False, "content": {
    "application/json": {"schema": ScoreRequest.model_json_schema()},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}, **_form_fields()}}}}}


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

    @r.post("/score", summary="Score sites: the built candidates, or your own (GeoJSON body or "
            "a multipart upload of GeoPackage, GeoJSON, zipped Shapefile, GeoParquet or CSV)",
            responses=documents("json", "csv", "xlsx", "gpkg"),
            openapi_extra={"requestBody": SCORE_BODY})
    async def score(request: Request) -> Response:
        req, source, label = await _score_input(request)

        if source is not None and (req.unione is not None or req.site_ids is not None):
            raise InputError("unione and site_ids restrict the built candidates: not with your "
                             "own sites", field="unione" if req.unione is not None else "site_ids")

        def work() -> Response:
            if source is None:
                crit = (default_criteria() if req.unione is None and req.site_ids is None else
                        workspace.default().candidate_criteria(unione=req.unione,
                                                               site_ids=req.site_ids))
                s = analysis.score_sites(crit=crit, profile=_profile(req.profile),
                                         method=req.method, draws=req.draws)
            else:
                s = analysis.score_sites(source, profile=_profile(req.profile), method=req.method,
                                         draws=req.draws, label=label, **req.read_options())
            return _score_response(s, req)

        return await run_in_threadpool(work)

    def proposals(role: Role | None) -> Any:
        """Proposals the documents and the monitoring read: the same source and read rule as
        /analysis/budget (without a key the public ones; with one, also its role's drafts)."""
        return analysis.load_proposals(store=get_store(), role=role)

    @r.get("/monitoring", summary="Six-monthly monitoring, LR 24/2017 art. 5 (JSON, HTML or PDF)",
           responses=documents("json", "html", "pdf"),
           openapi_extra={"security": [{}]})  # a key is optional, as for /budget
    def monitoring(role: Role | None = Depends(reader),  # noqa: B008 - FastAPI dependency
                   comune: str | None = None, scenario: str = "base",
                   format: str = Query("json", pattern="^(json|html|pdf)$")) -> Response:
        from pattogis import reports

        out = analysis.monitoring(comune=comune, proposals=proposals(role), scenario=scenario)
        if format == "json":
            return JSONResponse(_jsonable(out))
        return _document(reports.monitoring_html(out), format, f"monitoraggio_{comune or 'tutti'}")

    @r.get("/physical", summary="Physical ledger: sealed surface per comune (ha), not LR 24")
    def physical(comune: str | None = None) -> JSONResponse:
        return JSONResponse(_jsonable(analysis.physical(comune=comune)))

    @r.get("/scheda/comune/{comune}", summary="Printable scheda of a comune (HTML for print or PDF)",
           responses=documents("html", "pdf"), openapi_extra={"security": [{}]})  # a key is optional, as for /budget
    def scheda_comune(comune: str, role: Role | None = Depends(reader),  # noqa: B008
                      scenario: str = "base",
                      format: str = Query("html", pattern="^(html|pdf)$")) -> Response:
        from pattogis import reports

        html = reports.scheda_comune_html(comune, scenario=scenario, proposals=proposals(role))
        return _document(html, format, f"scheda_{comune}")

    @r.post("/scheda/site/{site_id}", summary="Printable scheda of a site (HTML or PDF): the "
            "built candidates, or your own sites sent as to /analysis/score",
            responses=documents("html", "pdf"), openapi_extra={"requestBody": SCORE_BODY})
    async def scheda_site(site_id: str, request: Request) -> Response:
        from pattogis import reports

        req, source, label = await _score_input(request)
        fmt = request.query_params.get("doc", "html")
        if fmt not in ("html", "pdf"):
            raise InputError(f"unknown document format '{fmt}'", field="doc", hint="html or pdf")

        def work() -> Response:
            if source is None:
                sc = analysis.score_sites(crit=default_criteria(), profile=_profile(req.profile),
                                          draws=req.draws)
            else:
                sc = analysis.score_sites(source, profile=_profile(req.profile), draws=req.draws,
                                          label=label, **req.read_options())
            return _document(reports.scheda_site_html(sc, site_id), fmt, f"scheda_{site_id}")

        return await run_in_threadpool(work)

    @r.get("/export/ledger", summary="The ledger as a file: csv (Italian format), xlsx or gpkg",
           responses=documents("csv", "xlsx", "gpkg"), openapi_extra={"security": [{}]})  # a key is optional, as for /budget
    def export_ledger(role: Role | None = Depends(reader),  # noqa: B008 - FastAPI dependency
                      format: str = Query("xlsx", pattern="^(csv|xlsx|gpkg)$"),
                      comune: str | None = None, scenario: str = "base") -> Response:
        from pattogis import reports

        data, media, ext = reports.ledger_file(format, scenario=scenario, proposals=proposals(role),
                                               comune=comune)
        return Response(data, media_type=media, headers={
            "Content-Disposition": f'attachment; filename="bilancio_{comune or "metro"}.{ext}"'})

    @r.post("/compare", summary="Compare sites side by side (raw, normalised, contributions)")
    def compare(req: CompareRequest) -> JSONResponse:
        from pattogis import scoring

        crit = default_criteria().set_index("site_id")
        scored = scoring.score(crit, _profile(req.profile), reference=workspace.default().reference())
        table = scoring.compare(crit, scored, req.site_ids)
        return JSONResponse({"comparison": _records(table.reset_index())})

    @r.post("/fund", summary="Allocate the fund: graduatoria, optimal or both compared")
    def fund(req: FundRequest) -> JSONResponse:
        if req.projects is None:
            sc = analysis.score_sites(crit=default_criteria(), profile="fondo", draws=0)
            table = analysis.projects_from_sites(sc)
        else:
            table = pd.DataFrame(req.projects)
        from pattogis import config
        from pattogis.fund import load_call

        req.call = req.call or get_settings().default_call
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

