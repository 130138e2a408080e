"""Proposals API: create, edit, withdraw and read land-use proposals, with roles and audit trail.

``proposals_router(get_store)`` returns a FastAPI router to mount in the app. Every route needs
an API key in the ``X-API-Key`` header (see ``pattogis.store.auth``): a comune reads and writes
its own proposals, an Unione those of its member comuni, metro all.

Bodies are GeoJSON (a Feature or FeatureCollection; coordinates WGS84 lon/lat per RFC 7946 unless
a legacy ``crs`` member or the ``body_crs`` query parameter names another CRS) or a multipart
upload of a GeoPackage, zipped Shapefile, GeoParquet or GeoJSON file in the field ``file``. They
are read and checked by ``pattogis.proposals`` (``read_proposals``, ``validate_proposals``);
a proposal crossing comuni is split into one proposal per comune. Responses are GeoJSON in the
store CRS (EPSG:25832, named in a ``crs`` member so that a Feature can be edited and sent back),
or in the CRS asked with ``crs``.

Errors map to HTTP codes in one place, :data:`ERROR_STATUS`: bad input 422, body too large 413,
unsupported media type 415, missing or unknown key 401, wrong role 403, unknown proposal 404,
withdrawn proposal or duplicate id 409. A refused request changes nothing.
"""

# No ``from __future__ import annotations`` here: FastAPI must evaluate the route signatures,
# whose dependencies are local to proposals_router.

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import geopandas as gpd
import pandas as pd
import pyproj
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Security
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from pattogis import config
from pattogis.errors import (
    ConfigError,
    InputError,
    MissingDataError,
    NotFound,
    PattogisError,
    PermissionDenied,
)
from pattogis.proposals import read_proposals, validate_proposals
from pattogis.store import EDITABLE, ConflictError, KeyRing, ProposalStore, Role, Unauthenticated


class BodyTooLarge(InputError):
    """The request body is over the configured maximum size (HTTP 413)."""


class UnsupportedMedia(InputError):
    """The body is neither GeoJSON nor a multipart upload (HTTP 415)."""


# Subclasses before their parents: the first match wins.
ERROR_STATUS: list[tuple[type[Exception], int]] = [
    (Unauthenticated, 401),
    (PermissionDenied, 403),
    (NotFound, 404),
    (ConflictError, 409),
    (BodyTooLarge, 413),
    (UnsupportedMedia, 415),
    (InputError, 422),
    (MissingDataError, 503),
    (ConfigError, 500),
    (PattogisError, 500),
]


def status_for(exc: Exception) -> int:
    """HTTP status of a pattogis error."""
    for kind, code in ERROR_STATUS:
        if isinstance(exc, kind):
            return code
    return 500


def http_error(exc: PattogisError) -> HTTPException:
    """The HTTPException for a pattogis error; the detail is the error's message, which names
    file, rows and field for bad input."""
    code = status_for(exc)
    headers = {"WWW-Authenticate": 'ApiKey header="X-API-Key"'} if code == 401 else None
    return HTTPException(status_code=code, detail=str(exc), headers=headers)


def max_body_bytes() -> int:
    """Largest accepted request body: ``api_max_body_mb`` in settings.yaml (default 10 MB)."""
    mb = config.settings().get("api_max_body_mb", 10)
    return int(float(mb) * 1024 * 1024)


GEOJSON_TYPES = ("application/json", "application/geo+json")
UPLOAD_SUFFIXES = (".gpkg", ".zip", ".parquet", ".geojson", ".json")


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is over ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {int(declared)} bytes is over the limit of {limit} bytes",
                           hint="split the upload, or raise api_max_body_mb in settings.yaml")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body is over the limit of {limit} bytes",
                               hint="split the upload, or raise api_max_body_mb in settings.yaml")
        chunks.append(chunk)
    return b"".join(chunks)


async def _upload(request: Request, body: bytes) -> tuple[bytes, str]:
    """(content, filename) of the ``file`` field of a multipart body already read."""
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
        raise InputError("a multipart upload needs the file in a field named 'file'", field="file")
    name = f.filename or "upload"
    if Path(name).suffix.lower() not in UPLOAD_SUFFIXES:
        raise InputError(f"cannot read a '{Path(name).suffix}' upload", file=name, field="file",
                         hint="send a GeoPackage (.gpkg), zipped Shapefile (.zip), GeoParquet "
                              "(.parquet) or GeoJSON (.geojson)")
    return await f.read(), name


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _crs_or_422(text: str | None, field: str) -> pyproj.CRS | None:
    if not text:
        return None
    try:
        return pyproj.CRS(text)
    except pyproj.exceptions.CRSError as e:
        raise InputError(f"unknown CRS '{text}'", field=field) from e


def feature_collection(gdf: gpd.GeoDataFrame, crs: pyproj.CRS | None = None) -> dict[str, Any]:
    """Proposals as a GeoJSON FeatureCollection (feature id = proposal_id). In the frame's CRS
    with a legacy ``crs`` member, or in ``crs`` (no member when it is WGS84 lon/lat)."""
    out = gdf.to_crs(crs) if crs is not None else gdf
    fc = json.loads(out.to_json(drop_id=True, na="null"))
    for f, pid in zip(fc["features"], gdf["proposal_id"], strict=True):
        f["id"] = pid
    target = pyproj.CRS(out.crs)
    if not target.equals(pyproj.CRS("OGC:CRS84")) and target.to_epsg() != 4326:
        fc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{target.to_epsg()}"}}
    elif target.to_epsg() == 4326:
        fc.pop("crs", None)
    return fc


def _feature(gdf: gpd.GeoDataFrame, crs: pyproj.CRS | None = None) -> dict[str, Any]:
    fc = feature_collection(gdf, crs)
    f = fc["features"][0]
    if "crs" in fc:
        f["crs"] = fc["crs"]
    return f


def _to_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: (None if not isinstance(v, (dict, list, str)) and pd.isna(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]


def proposals_router(
    get_store: Callable[[], ProposalStore],
    *,
    keys: KeyRing | str | Path | None = None,
    max_body: int | None = None,
) -> APIRouter:
    """Routes under ``/proposals``. ``get_store`` returns the store (used as a dependency, so
    an app can override it); ``keys`` is the keys file or a KeyRing (default
    ``$PATTOGIS_API_KEYS``); ``max_body`` the largest body in bytes (default from settings)."""
    ring = keys if isinstance(keys, KeyRing) else KeyRing(keys)
    api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="API key of a role: comune:<istat>, unione:<name> or metro")
    router = APIRouter(prefix="/proposals", tags=["proposals"])
    errors: dict[int | str, dict[str, Any]] = {
        401: {"description": "missing or unknown API key"},
        403: {"description": "the role may not read or write this proposal"},
        422: {"description": "bad input: the detail names file, row and field"},
    }

    def role_of(key: Annotated[str | None, Security(api_key)] = None) -> Role:
        try:
            return ring.role_for(key)
        except PattogisError as e:
            raise http_error(e) from e

    def limit() -> int:
        return max_body if max_body is not None else max_body_bytes()

    RoleDep = Annotated[Role, Depends(role_of)]
    StoreDep = Annotated[ProposalStore, Depends(get_store)]
    BodyCrs = Annotated[str | None, Query(description="CRS of a GeoJSON body without a crs member")]
    OutCrs = Annotated[str | None, Query(description="CRS of the response (default: the store CRS)")]

    async def read_body(request: Request) -> tuple[bytes, str | None]:
        body = await _read_limited(request, limit())
        media = _media(request)
        if media == "multipart/form-data":
            return await _upload(request, body)
        if media and media not in GEOJSON_TYPES:
            raise UnsupportedMedia(f"unsupported content type '{media}'", hint=(
                "send GeoJSON (application/geo+json) or a multipart/form-data upload"))
        if not body.strip():
            raise InputError("empty body", hint="send a GeoJSON Feature or FeatureCollection")
        return body, None

    @router.post("", status_code=201, responses={**errors, 409: {"description": "proposal_id taken"},
                                                 413: {"description": "body too large"}})
    async def create_proposals(
        request: Request,
        role: RoleDep,
        store: StoreDep,
        body_crs: BodyCrs = None,
    ) -> dict[str, Any]:
        """Create proposals from a GeoJSON Feature/FeatureCollection or an uploaded file."""
        try:
            body, filename = await read_body(request)
            in_crs = _crs_or_422(body_crs, "body_crs")

            def work() -> gpd.GeoDataFrame:
                gdf = read_proposals(body, crs=in_crs.to_string() if in_crs else None,
                                     filename=filename)
                valid = validate_proposals(gdf, store.comuni, label=filename or "body")
                return store.create(valid, role=role)

            return feature_collection(await run_in_threadpool(work))
        except PattogisError as e:
            raise http_error(e) from e

    @router.put("/{proposal_id}", responses={**errors, 404: {"description": "unknown proposal"},
                                             409: {"description": "withdrawn proposal"}})
    async def update_proposal(
        proposal_id: str,
        request: Request,
        role: RoleDep,
        store: StoreDep,
        body_crs: BodyCrs = None,
    ) -> dict[str, Any]:
        """Replace the geometry and the properties sent; properties not sent keep their value.
        The comune is taken from the geometry."""
        try:
            body, filename = await read_body(request)
            in_crs = _crs_or_422(body_crs, "body_crs")

            def work() -> gpd.GeoDataFrame:
                gdf = read_proposals(body, crs=in_crs.to_string() if in_crs else None,
                                     filename=filename)
                if len(gdf) != 1:
                    raise InputError(f"an update takes one feature, got {len(gdf)}", field="features")
                current = store.get(proposal_id, role=role)  # 404/403 before validating
                gdf = gdf.copy()
                for c in EDITABLE:
                    sent = c in gdf.columns and gdf[c].notna().all()
                    if not sent and c != "comune_istat":
                        gdf[c] = current[c].iloc[0]
                if "proposal_id" not in gdf.columns or gdf["proposal_id"].isna().all():
                    gdf["proposal_id"] = proposal_id
                valid = validate_proposals(gdf, store.comuni, split="refuse", label=filename or "body")
                return store.update(proposal_id, valid, role=role)

            return _feature(await run_in_threadpool(work))
        except PattogisError as e:
            raise http_error(e) from e

    @router.post("/{proposal_id}/withdraw", responses={**errors, 404: {"description": "unknown proposal"},
                                                       409: {"description": "already withdrawn"}})
    def withdraw_proposal(
        proposal_id: str,
        role: RoleDep,
        store: StoreDep,
        note: Annotated[str | None, Body(embed=True, description="why it is withdrawn")] = None,
    ) -> dict[str, Any]:
        """Withdraw a proposal: status 'ritirata'; the proposal and its history are kept."""
        try:
            return _feature(store.withdraw(proposal_id, role=role, note=note))
        except PattogisError as e:
            raise http_error(e) from e

    @router.get("", responses=errors)
    def list_proposals(
        role: RoleDep,
        store: StoreDep,
        scenario: Annotated[list[str] | None, Query()] = None,
        comune: Annotated[list[str] | None, Query(description="ISTAT code(s)")] = None,
        owner: Annotated[list[str] | None, Query(description="role id(s) of the owner")] = None,
        status: Annotated[list[str] | None, Query()] = None,
        bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy (in bbox_crs)")] = None,
        bbox_crs: Annotated[str | None, Query(description="CRS of bbox (default: the store CRS)")] = None,
        crs: OutCrs = None,
    ) -> dict[str, Any]:
        """The proposals the key's role may read, filtered."""
        try:
            box = None
            if bbox is not None:
                try:
                    box = tuple(float(x) for x in bbox.split(","))
                except ValueError as e:
                    raise InputError(f"bbox '{bbox}' is not four numbers", field="bbox") from e
                if len(box) != 4:
                    raise InputError(f"bbox '{bbox}' is not four numbers", field="bbox")
                src = _crs_or_422(bbox_crs, "bbox_crs")
                if src is not None and not src.equals(store.crs):
                    t = pyproj.Transformer.from_crs(src, store.crs, always_xy=True)
                    box = t.transform_bounds(*box)
            out_crs = _crs_or_422(crs, "crs")
            gdf = store.list(role=role, scenario=scenario, comune=comune, owner=owner,
                             status=status, bbox=box)
            return feature_collection(gdf, out_crs)
        except PattogisError as e:
            raise http_error(e) from e

    @router.get("/{proposal_id}", responses={**errors, 404: {"description": "unknown proposal"}})
    def get_proposal(
        proposal_id: str,
        role: RoleDep,
        store: StoreDep,
        crs: OutCrs = None,
    ) -> dict[str, Any]:
        try:
            return _feature(store.get(proposal_id, role=role), _crs_or_422(crs, "crs"))
        except PattogisError as e:
            raise http_error(e) from e

    @router.get("/{proposal_id}/audit", responses={**errors, 404: {"description": "unknown proposal"}})
    def proposal_audit(
        proposal_id: str,
        role: RoleDep,
        store: StoreDep,
    ) -> dict[str, Any]:
        """Who changed the proposal, when (UTC), how, and the proposal before and after
        (GeoJSON Features in the store CRS)."""
        try:
            df = store.audit(proposal_id, role=role)
            return {"proposal_id": proposal_id, "crs": store.crs.to_string(), "entries": _to_records(df)}
        except PattogisError as e:
            raise http_error(e) from e

    return router
