"""Proposals API: create, edit, withdraw and read land-use proposals, with roles, versions and
an audit trail.

``proposals_router(get_store)`` returns a FastAPI router to mount in an app that has the error
handlers of :mod:`api.errors` (``create_app`` does). Writes need an API key in the ``X-API-Key``
header (see ``pattogis.store.auth``): a comune writes its own proposals, an Unione those of its
member comuni, metro all, and only metro approves.

Read rule (the store's, the same as every other face): submitted and approved proposals are
public (no key needed); drafts and withdrawn ones are seen only by the roles that may write them
and by metro. A proposal the reader may not see answers 404, as an unknown id.

Versions: every proposal has a ``version`` (a property, and the ``ETag`` of GET and of every
write's answer). PUT, PATCH and withdraw need ``If-Match`` with that ETag: 428 without it, 412
when the proposal changed since. Fields not sent keep their stored value, read in the same
transaction as the write, so concurrent edits never lose each other's changes.

Bodies are GeoJSON (a Feature or FeatureCollection; coordinates WGS84 lon/lat per RFC 7946
unless a legacy ``crs`` member or the ``body_crs`` query parameter names another CRS) or a
multipart upload of a GeoPackage, zipped Shapefile, GeoParquet or GeoJSON file in the field
``file`` (inflated within ``upload_limits`` of settings.yaml: 413 beyond). Every GeoJSON answer
is in CRS84 (lon/lat), or in the CRS asked with ``crs`` (then named in a ``crs`` member).
Ids: :data:`pattogis.proposals.ID_PATTERN` (e.g. ``CAS-EXP-01``), as in the CLI.

Errors are raised as pattogis errors and answered by the app's one handler (:mod:`api.errors`);
a refused request changes nothing.
"""

# No ``from __future__ import annotations`` here: FastAPI must evaluate the route signatures,
# whose dependencies are local to proposals_router.

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely
from fastapi import APIRouter, Depends, Header, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pattogis import config
from pattogis.errors import (
    BadRequest,
    InputError,
    PreconditionRequired,
    UnsupportedMediaType,
)
from pattogis.proposals import (
    ID_PATTERN,
    STATUSES,
    checked_crs,
    loads,
    read_proposals,
    validate_proposals,
)
from pattogis.store import EDITABLE, KeyRing, ProposalStore, Role

GEOJSON = "application/geo+json"
GEOJSON_TYPES = ("application/json", GEOJSON)
PATCH_TYPES = ("application/merge-patch+json", *GEOJSON_TYPES)
UPLOAD_SUFFIXES = (".gpkg", ".zip", ".parquet", ".geojson", ".json")
CRS84 = pyproj.CRS("OGC:CRS84")


class GeoJSONResponse(JSONResponse):
    media_type = GEOJSON


# --- request bodies as the OpenAPI document shows them ---------------------------------------

def _body_schemas() -> dict[str, Any]:
    law = config.law()
    limits = config.settings().get("field_limits") or {}
    ring = {"type": "array", "minItems": 4,
            "items": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "number"}}}
    geometry = {"oneOf": [
        {"type": "object", "required": ["type", "coordinates"], "properties": {
            "type": {"type": "string", "enum": ["Polygon"]},
            "coordinates": {"type": "array", "minItems": 1, "items": ring}}},
        {"type": "object", "required": ["type", "coordinates"], "properties": {
            "type": {"type": "string", "enum": ["MultiPolygon"]},
            "coordinates": {"type": "array", "minItems": 1,
                            "items": {"type": "array", "minItems": 1, "items": ring}}}},
    ]}
    props = {
        "proposal_id": {"type": "string", "pattern": f"^{ID_PATTERN}$",
                        "description": "e.g. CAS-EXP-01; made by the store when absent"},
        "scenario": {"type": "string", "maxLength": int(limits.get("scenario", 64))},
        "ptype": {"type": "string", "enum": list(law["proposal_types"])},
        "pool": {"type": "string", "enum": list(law["pools"])},
        "exemption": {"type": "string", "enum": list(law["exemptions"]), "nullable": True},
        "status": {"type": "string", "enum": [s for s in STATUSES if s != "ritirata"]},
        "title": {"type": "string", "maxLength": int(limits.get("title", 200))},
        "date": {"type": "string", "format": "date"},
        "comune_istat": {"type": "string", "pattern": r"^\d{6}$",
                         "description": "taken from the geometry; must match when given"},
    }
    crs = {"type": "object", "required": ["type", "properties"], "properties": {
        "type": {"type": "string", "enum": ["name"]},
        "properties": {"type": "object", "required": ["name"],
                       "properties": {"name": {"type": "string"}}}},
        "description": "legacy CRS member; without it coordinates are WGS84 lon/lat"}
    feature = {"type": "object", "required": ["type", "geometry"], "properties": {
        "type": {"type": "string", "enum": ["Feature"]}, "geometry": geometry,
        "properties": {"type": "object", "properties": props}, "crs": crs}}
    collection = {"type": "object", "required": ["type", "features"], "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": {"type": "array", "minItems": 1, "items": feature}, "crs": crs}}
    upload = {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary",
                 "description": "GeoPackage, zipped Shapefile, GeoParquet or GeoJSON"}}}
    patch = {"type": "object", "properties": {
        "properties": {"type": "object", "properties": props},
        "geometry": geometry, "crs": crs},
        "description": "JSON merge patch of a proposal: properties sent change, null clears an "
                       "optional one, a geometry replaces the drawing"}
    return {"create": {"oneOf": [feature, collection]}, "feature": feature, "upload": upload,
            "patch": patch}


def _request_body(kind: str) -> dict[str, Any]:
    s = _body_schemas()
    if kind == "patch":
        content = {t: {"schema": s["patch"]} for t in PATCH_TYPES}
    else:
        body = s["create"] if kind == "create" else s["feature"]
        content = {t: {"schema": body} for t in GEOJSON_TYPES}
        content["multipart/form-data"] = {"schema": s["upload"]}
    return {"requestBody": {"required": True, "content": content}}


def _problem(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _geo(text: str, etag: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"description": text, "content": {GEOJSON: {"schema": {"type": "object"}}}}
    if etag:
        out["headers"] = {"ETag": {"description": "version of the proposal, for If-Match",
                                   "schema": {"type": "string"}}}
    return out


# --- helpers -----------------------------------------------------------------------------------

def _out_crs(text: str | None) -> pyproj.CRS | None:
    return None if not text else pyproj.CRS(checked_crs(text, "crs"))


def feature_collection(gdf: gpd.GeoDataFrame, crs: pyproj.CRS | None = None) -> dict[str, Any]:
    """Proposals as a GeoJSON FeatureCollection (feature id = proposal_id): CRS84 lon/lat
    without a ``crs`` member, or ``crs`` named in a legacy ``crs`` member."""
    target = crs if crs is not None else CRS84
    out = gdf.to_crs(target) if len(gdf) else gdf.set_crs(target, allow_override=True)
    fc = json.loads(out.to_json(drop_id=True, na="null"))
    fc.pop("crs", None)  # geopandas names CRS84 too; RFC 7946 wants no member
    for f, pid in zip(fc["features"], gdf["proposal_id"], strict=True):
        f["id"] = pid
    if not (target.equals(CRS84) or target.to_epsg() == 4326):
        code = target.to_epsg()
        name = f"urn:ogc:def:crs:EPSG::{code}" if code else target.to_string()
        fc["crs"] = {"type": "name", "properties": {"name": name}}
    return fc


def _feature(gdf: gpd.GeoDataFrame, crs: pyproj.CRS | None = None) -> dict[str, Any]:
    fc = feature_collection(gdf, crs)
    f = fc["features"][0]
    if "crs" in fc:
        f["crs"] = fc["crs"]
    return f


def etag(version: int) -> str:
    return f'"{int(version)}"'


def _one(gdf: gpd.GeoDataFrame, crs: pyproj.CRS | None) -> GeoJSONResponse:
    """One proposal as a Feature with its version as ETag."""
    return GeoJSONResponse(_feature(gdf, crs), headers={"ETag": etag(gdf["version"].iloc[0])})


_TAG = re.compile(r'^(?:W/)?"(\d{1,18})"$')


def expected_version(if_match: str | None) -> int | None:
    """The version named by ``If-Match`` (None for ``*``); 428 without the header. A tag that
    is not one of ours can never match: 412 in the store (version -1)."""
    if if_match is None or not if_match.strip():
        raise PreconditionRequired(
            "this change needs the If-Match header with the proposal's ETag", field="If-Match",
            hint="GET the proposal, take its ETag header, send it back as If-Match")
    tags = [t.strip() for t in if_match.split(",") if t.strip()]
    if tags == ["*"]:
        return None
    if len(tags) != 1:
        raise BadRequest("If-Match must name one ETag", field="If-Match")
    m = _TAG.match(tags[0])
    return int(m.group(1)) if m else -1


def _to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if not isinstance(v, (dict, list, str)) and pd.isna(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]


def _reproject_feature(f: dict | None, src: pyproj.CRS, dst: pyproj.CRS) -> dict | None:
    if not isinstance(f, dict) or not f.get("geometry"):
        return f
    t = pyproj.Transformer.from_crs(src, dst, always_xy=True)
    g = shapely.transform(shapely.geometry.shape(f["geometry"]),
                          lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    return {**f, "geometry": json.loads(shapely.to_geojson(g))}


async def _read_body(request: Request, allowed: tuple[str, ...]) -> tuple[bytes, str | None]:
    """(body, filename): GeoJSON text, or the ``file`` of a multipart upload. The size limit is
    the app's (:class:`api.errors.BodyLimitMiddleware`)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data" and "multipart/form-data" in allowed:
        form = await request.form()
        f = form.get("file")
        if not isinstance(f, UploadFile):
            raise InputError("a multipart upload needs the file in a field named 'file'", field="file")
        name = f.filename or "upload"
        if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:
            raise InputError(f"cannot read a '{Path(name).suffix}' upload", file=name, field="file",
                             hint="send a GeoPackage (.gpkg), zipped Shapefile (.zip), GeoParquet "
                                  "(.parquet) or GeoJSON (.geojson)")
        return await f.read(), name
    if media and media not in allowed:
        raise UnsupportedMediaType(f"unsupported content type '{media}'",
                                   hint="send one of: " + ", ".join(allowed))
    body = await request.body()
    if not body.strip():
        raise InputError("empty body", hint="send a GeoJSON Feature or FeatureCollection")
    return body, None


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError(f"malformed JSON: {e}", file=what) from e
    if not isinstance(obj, dict):
        raise InputError("the body must be a JSON object", file=what)
    return obj


def only(*names: str) -> Callable[[Request], None]:
    """A dependency answering 400 to query parameters other than ``names`` (as the OGC routes
    do), so that a misspelt filter is not silently ignored."""
    allowed = set(names)

    def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - allowed)
        if unknown:
            raise BadRequest(f"unknown query parameter '{unknown[0]}'", field=unknown[0],
                             hint="known: " + (", ".join(sorted(allowed)) or "none"))

    return check


def reader_dependency(keys: KeyRing | str | Path | None = None) -> Callable[..., Role | None]:
    """A dependency giving the reader of a request: the role of its ``X-API-Key``, or None (the
    public) without one; a wrong key is refused (401). Faces that show proposals (analysis,
    maps) apply the store's read rule with it."""
    ring = keys if isinstance(keys, KeyRing) else KeyRing(keys)
    api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="optional: API key of a role, to see its own drafts too")

    def reader(key: Annotated[str | None, Security(api_key)] = None) -> Role | None:
        return None if key is None else ring.role_for(key)

    return reader


def proposals_router(
    get_store: Callable[[], ProposalStore],
    *,
    keys: KeyRing | str | Path | None = None,
) -> APIRouter:
    """Routes under ``/proposals``. ``get_store`` returns the store (used as a dependency, so
    an app can override it); ``keys`` is the keys file or a KeyRing (default
    ``$PATTOGIS_API_KEYS``). Mount it in an app with :func:`api.errors.install` (errors, the
    body-size limit)."""
    ring = keys if isinstance(keys, KeyRing) else KeyRing(keys)
    api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="API key of a role: comune:<istat>, unione:<name> or metro")
    router = APIRouter(prefix="/proposals", tags=["proposals"])
    page_max = int(config.settings().get("proposals_page_max", 1000))

    def role_of(key: Annotated[str | None, Security(api_key)] = None) -> Role:
        return ring.role_for(key)

    def reader_of(key: Annotated[str | None, Security(api_key)] = None) -> Role | None:
        """No key: the public (read rule). A key that is wrong is still refused (401)."""
        return None if key is None else ring.role_for(key)

    RoleDep = Annotated[Role, Depends(role_of)]
    ReaderDep = Annotated[Role | None, Depends(reader_of)]
    StoreDep = Annotated[ProposalStore, Depends(get_store)]
    Pid = Annotated[str, PathParam(pattern=f"^{ID_PATTERN}$", description="e.g. CAS-EXP-01")]
    BodyCrs = Annotated[str | None, Query(description="CRS of a GeoJSON body without a crs member")]
    OutCrs = Annotated[str | None, Query(description="CRS of the answer (default CRS84 lon/lat)")]
    IfMatch = Annotated[str | None, Header(alias="If-Match",
                                           description="ETag of the version the change is based on")]
    common = {401: _problem("missing, unknown or revoked API key"),
              403: _problem("the role may not write this proposal"),
              415: _problem("unsupported content type"),
              422: _problem("bad input: the detail names file, row (from 1) and field")}
    edit = {**common, 404: _problem("no such proposal visible to the role"),
            409: _problem("the proposal is withdrawn"),
            412: _problem("If-Match names an old version: read it again"),
            428: _problem("If-Match is missing")}

    def edit_changes(body: bytes, filename: str | None, store: ProposalStore, patch: bool,
                     in_crs: str | None) -> dict[str, Any] | gpd.GeoDataFrame:
        if not patch:
            gdf = read_proposals(body, crs=in_crs, filename=filename)
            if len(gdf) != 1:
                raise InputError(f"an update takes one feature, got {len(gdf)}", field="features")
            return validate_proposals(gdf, store.comuni, split="refuse", partial=True,
                                      label=filename or "body")
        obj = _json_object(body, "body")
        props = obj.get("properties", {})
        if props is None:
            props = {}
        if not isinstance(props, dict):
            raise InputError("'properties' must be an object", field="properties")
        changes: dict[str, Any] = dict(props)
        geom = obj.get("geometry")
        if geom is not None:
            feat = {"type": "Feature", "geometry": geom, "properties": {}}
            if "crs" in obj:
                feat = {"type": "FeatureCollection", "features": [feat], "crs": obj["crs"]}
            gdf = read_proposals(feat, crs=in_crs, label="body")
            v = validate_proposals(gdf, store.comuni, split="refuse", partial=True, label="body")
            changes["geometry"] = v.geometry.iloc[0]
            given = changes.get("comune_istat")
            if given is not None and given != v["comune_istat"].iloc[0]:
                raise InputError("comune_istat does not match the comune the geometry is in "
                                 f"({v['comune_istat'].iloc[0]})", field="comune_istat")
            changes["comune_istat"] = v["comune_istat"].iloc[0]
        if not changes:
            raise InputError("nothing to change: send properties or a geometry")
        return changes

    @router.post("", status_code=201, response_class=GeoJSONResponse,
                 dependencies=[Depends(only("body_crs", "crs"))],
                 openapi_extra=_request_body("create"),
                 responses={201: _geo("the proposals created (one per comune part)"), **common,
                            409: _problem("proposal_id taken"),
                            413: _problem("body or upload too large, also once inflated")})
    async def create_proposals(request: Request, role: RoleDep, store: StoreDep,
                               body_crs: BodyCrs = None, crs: OutCrs = None) -> GeoJSONResponse:
        """Create proposals from a GeoJSON Feature/FeatureCollection or an uploaded file."""
        body, filename = await _read_body(request, (*GEOJSON_TYPES, "multipart/form-data"))
        out_crs = _out_crs(crs)

        def work() -> gpd.GeoDataFrame:
            gdf = read_proposals(body, crs=body_crs, filename=filename)
            valid = validate_proposals(gdf, store.comuni, label=filename or "body")
            return store.create(valid, role=role)

        return GeoJSONResponse(feature_collection(await run_in_threadpool(work), out_crs),
                               status_code=201)

    async def _edit(proposal_id: str, request: Request, role: Role, store: ProposalStore,
                    if_match: str | None, body_crs: str | None, crs: str | None,
                    patch: bool) -> GeoJSONResponse:
        expected = expected_version(if_match)
        allowed = PATCH_TYPES if patch else (*GEOJSON_TYPES, "multipart/form-data")
        body, filename = await _read_body(request, allowed)
        out_crs = _out_crs(crs)

        def work() -> gpd.GeoDataFrame:
            changes = edit_changes(body, filename, store, patch, body_crs)
            return store.update(proposal_id, changes, role=role, expected_version=expected)

        return _one(await run_in_threadpool(work), out_crs)

    @router.put("/{proposal_id}", response_class=GeoJSONResponse,
                dependencies=[Depends(only("body_crs", "crs"))],
                openapi_extra=_request_body("feature"),
                responses={200: _geo("the proposal as stored", etag=True), **edit,
                           413: _problem("body too large")})
    async def update_proposal(proposal_id: Pid, request: Request, role: RoleDep, store: StoreDep,
                              if_match: IfMatch = None, body_crs: BodyCrs = None,
                              crs: OutCrs = None) -> GeoJSONResponse:
        """Replace the geometry and the properties sent (one Feature); properties not sent, or
        sent as null, keep their value. The comune is taken from the geometry."""
        return await _edit(proposal_id, request, role, store, if_match, body_crs, crs, False)

    @router.patch("/{proposal_id}", response_class=GeoJSONResponse,
                  dependencies=[Depends(only("body_crs", "crs"))],
                  openapi_extra=_request_body("patch"),
                  responses={200: _geo("the proposal as stored", etag=True), **edit,
                             413: _problem("body too large")})
    async def patch_proposal(proposal_id: Pid, request: Request, role: RoleDep, store: StoreDep,
                             if_match: IfMatch = None, body_crs: BodyCrs = None,
                             crs: OutCrs = None) -> GeoJSONResponse:
        """JSON merge patch: the properties sent change (null clears an optional one), a
        geometry replaces the drawing; nothing else changes."""
        return await _edit(proposal_id, request, role, store, if_match, body_crs, crs, True)

    @router.post("/{proposal_id}/withdraw", response_class=GeoJSONResponse,
                 dependencies=[Depends(only("crs"))],
                 openapi_extra={"requestBody": {"required": False, "content": {
                     "application/json": {"schema": {"type": "object", "properties": {
                         "note": {"type": "string", "maxLength": int(
                             (config.settings().get("field_limits") or {}).get("note", 1000)),
                             "description": "why it is withdrawn"}}}}}}},
                 responses={200: _geo("the withdrawn proposal", etag=True), **edit,
                            409: _problem("already withdrawn")})
    async def withdraw_proposal(proposal_id: Pid, request: Request, role: RoleDep,
                                store: StoreDep, if_match: IfMatch = None,
                                crs: OutCrs = None) -> GeoJSONResponse:
        """Withdraw a proposal: status 'ritirata'; the proposal and its history are kept."""
        expected = expected_version(if_match)
        body = await request.body()
        note = None
        if body.strip():
            obj = _json_object(body, "body")
            note = obj.get("note")
            if note is not None and not isinstance(note, str):
                raise InputError("'note' must be text", field="note")
        out_crs = _out_crs(crs)
        out = await run_in_threadpool(lambda: store.withdraw(
            proposal_id, role=role, note=note, expected_version=expected))
        return _one(out, out_crs)

    @router.get("", response_class=GeoJSONResponse, openapi_extra={"security": [{}]},  # a key is optional: without it, the public view
                dependencies=[Depends(only("scenario", "comune", "owner", "status", "bbox",
                                           "bbox_crs", "crs", "limit", "offset"))],
                responses={200: _geo("a page of the proposals the reader may see"),
                           401: common[401], 422: common[422]})
    def list_proposals(
        request: Request,
        role: ReaderDep,
        store: StoreDep,
        scenario: Annotated[list[str] | None, Query()] = None,
        comune: Annotated[list[str] | None, Query(description="ISTAT code(s)")] = None,
        owner: Annotated[list[str] | None, Query(description="role id(s) of the owner")] = None,
        status: Annotated[list[str] | None, Query()] = None,
        bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (in bbox_crs)")] = None,
        bbox_crs: Annotated[str | None, Query(description="CRS of bbox (default CRS84)")] = None,
        crs: OutCrs = None,
        limit: Annotated[int, Query(ge=1, le=page_max, description="page size")] = 100,
        offset: Annotated[int, Query(ge=0, le=10**9, description="first item, from 0")] = 0,
    ) -> GeoJSONResponse:
        """The proposals the reader may see (no key: the public ones), filtered, a page at a
        time (``numberMatched``, ``numberReturned`` and a ``next`` link)."""
        box = None
        if bbox is not None:
            try:
                box = tuple(float(x) for x in bbox.split(","))
            except ValueError as e:
                raise InputError(f"bbox '{bbox[:80]}' is not four numbers", field="bbox") from e
            if len(box) != 4 or not all(map(pd.notna, box)) or any(abs(v) == float("inf") for v in box):
                raise InputError(f"bbox '{bbox[:80]}' is not four numbers", field="bbox")
            src = pyproj.CRS(checked_crs(bbox_crs, "bbox_crs")) if bbox_crs else CRS84
            if not src.equals(store.crs):
                t = pyproj.Transformer.from_crs(src, store.crs, always_xy=True)
                box = t.transform_bounds(*box)
                if not all(map(pd.notna, box)) or any(abs(v) == float("inf") for v in box):
                    raise InputError("bbox cannot be placed in the store CRS", field="bbox")
        out_crs = _out_crs(crs)
        gdf = store.list(role=role, scenario=scenario, comune=comune, owner=owner,
                         status=status, bbox=box)
        page = gdf.iloc[offset:offset + limit]
        fc = feature_collection(page, out_crs)
        fc["numberMatched"], fc["numberReturned"] = len(gdf), len(page)
        links = []
        if offset + limit < len(gdf):
            links.append({"rel": "next", "type": GEOJSON,
                          "href": str(request.url.include_query_params(offset=offset + limit))})
        if offset > 0:
            links.append({"rel": "prev", "type": GEOJSON, "href": str(
                request.url.include_query_params(offset=max(offset - limit, 0)))})
        fc["links"] = links
        return GeoJSONResponse(fc)

    @router.get("/{proposal_id}", response_class=GeoJSONResponse, openapi_extra={"security": [{}]},  # a key is optional: without it, the public view
                dependencies=[Depends(only("crs"))],
                responses={200: _geo("the proposal", etag=True), 401: common[401],
                           404: _problem("no such proposal visible to the reader"),
                           422: common[422]})
    def get_proposal(proposal_id: Pid, role: ReaderDep, store: StoreDep,
                     crs: OutCrs = None) -> GeoJSONResponse:
        """One proposal (no key: only a public one), with its version as ETag."""
        return _one(store.get(proposal_id, role=role), _out_crs(crs))

    @router.get("/{proposal_id}/audit", dependencies=[Depends(only("crs"))],
                responses={401: common[401], 403: common[403],
                           404: _problem("no such proposal visible to the role"),
                           422: common[422]})
    def proposal_audit(proposal_id: Pid, role: RoleDep, store: StoreDep,
                       crs: OutCrs = None) -> dict[str, Any]:
        """Who changed the proposal, when (UTC), how, and the proposal before and after
        (GeoJSON Features in CRS84, or in ``crs``). Only for the roles that may write it."""
        df = store.audit(proposal_id, role=role)
        target = _out_crs(crs) or CRS84
        entries = _to_records(df)
        for e in entries:
            for k in ("before", "after"):
                e[k] = _reproject_feature(e[k], store.crs, target)
        name = "OGC:CRS84" if target.equals(CRS84) else target.to_string()
        return {"proposal_id": proposal_id, "crs": name, "entries": entries}

    return router


__all__ = ["EDITABLE", "GeoJSONResponse", "etag", "expected_version", "feature_collection",
           "only", "proposals_router", "reader_dependency"]
