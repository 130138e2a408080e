"""Fund API: the metropolitan office uploads the applications of a call and gets the graduatoria.

- ``POST /fund/runs?call=<id>&mode=graduatoria|optimal|compare&format=json|csv|xlsx|gpkg|html|pdf``
  with the applications file in the multipart field ``file`` (CSV with ``wkt``/``epsg``,
  GeoPackage, GeoJSON, zipped Shapefile, GeoParquet). Needs an ``X-API-Key`` of the ``metro``
  role (same keys and header as the proposals API). Eligibility is decided from the territory
  (:func:`pattogis.analysis.read_applications`). A file that fails the checks is refused
  whole (422 naming file, rows and field) and nothing is kept; a good one becomes the call's
  current run, which the fund map shows.
- ``GET /fund/runs/{call}?format=...``: the current run's graduatoria document (metro key).
- ``GET /fund/template``: the empty applications CSV with the documented columns.
- ``GET /fund/calls``: the calls this server knows.

Calls are chosen by id among ``pattogis.config.list_calls()``; a request never names a server
file (an unknown id is a 404 before anything is read).
"""

# No ``from __future__ import annotations``: FastAPI evaluates the route signatures.

import tempfile
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Annotated, Any, Literal

import geopandas as gpd
from fastapi import APIRouter, Depends, File, Query, Security, UploadFile
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.concurrency import run_in_threadpool

from api.errors import documents
from pattogis import analysis, config
from pattogis.errors import InputError, NotFound, PermissionDenied
from pattogis.fund import export
from pattogis.io import UploadLimits
from pattogis.store import KeyRing, Role

UPLOAD_SUFFIXES = (".csv", ".gpkg", ".geojson", ".json", ".zip", ".parquet", ".geoparquet")
FORMATS = ("json",) + export.FORMATS
# the query parameters' types: FastAPI checks them and the OpenAPI document lists the values
Mode = Literal["graduatoria", "optimal", "compare"]
Format = Literal["json", "csv", "xlsx", "gpkg", "html", "pdf"]


def _document(res: Any, fmt: str, name: str) -> Response:
    if fmt == "json":
        from api.analysis import _jsonable

        return JSONResponse(_jsonable(res.to_dict()))
    data = export.to_bytes(res, fmt)
    return Response(data, media_type=export.MEDIA[fmt],
                    headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'})


#: What the run endpoints answer: the graduatoria in every format, and the key checks.
RUN_DOCUMENTS = documents("json", "csv", "xlsx", "gpkg", "html", "pdf",
                          description="the graduatoria (format=...)")
KEYED: dict[int | str, Any] = {401: {"description": "missing or unknown API key"},
                               403: {"description": "not the metro role"}}


def fund_router(runs: MutableMapping[str, gpd.GeoDataFrame], *,
                keys: KeyRing | str | Path | None = None) -> APIRouter:
    """Routes under ``/fund``. ``runs`` holds the current checked applications per call id (the
    fund map reads it); ``keys`` the API keys file or ring (default ``$PATTOGIS_API_KEYS``)."""
    ring = keys if isinstance(keys, KeyRing) else KeyRing(keys)
    api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                           description="API key of the metro role")
    lock = threading.Lock()
    router = APIRouter(prefix="/fund", tags=["fund"])

    def metro(key: Annotated[str | None, Security(api_key)] = None) -> Role:
        role = ring.role_for(key)  # 401 when missing or unknown
        if role.kind != "metro":
            raise PermissionDenied(f"role {role} may not run the fund: the metro role does")
        return role

    Metro = Annotated[Role, Depends(metro)]

    @router.get("/calls", summary="Fund calls known to this server")
    def calls() -> dict[str, Any]:
        from pattogis.fund import load_call

        return {"calls": [{"id": c, "title": load_call(c).title} for c in config.list_calls()]}

    @router.get("/template", summary="Empty applications file (CSV, Italian format)",
                responses=documents("csv", description="the empty applications file"))
    def template() -> Response:
        return Response(export.template_csv().encode("utf-8"), media_type=export.MEDIA["csv"],
                        headers={"Content-Disposition": 'attachment; filename="domande_modello.csv"'})

    @router.post("/runs", summary="Upload the applications of a call and allocate the fund",
                 responses={**RUN_DOCUMENTS, **KEYED,
                            404: {"description": "unknown call"},
                            413: {"description": "an upload over the limits once inflated"},
                            422: {"description": "bad applications: file, rows and field named"}})
    async def create_run(
        role: Metro,
        file: Annotated[UploadFile, File(description="applications: CSV (wkt, epsg), GPKG, "
                                                     "GeoJSON, zipped SHP, GeoParquet")],
        call: Annotated[str | None, Query(description="call id (default: the server's "
                                                       "PATTOGIS_DEFAULT_CALL)")] = None,
        mode: Annotated[Mode, Query(description="graduatoria, optimal or compare")] = "graduatoria",
        format: Annotated[Format, Query(description="json, csv, xlsx, gpkg, html or pdf")] = "json",
    ) -> Response:
        call = config.call_id(call)
        # only the client's base name is kept, for messages; the suffix picks the reader
        name = Path(file.filename or "domande").name
        suffix = Path(name).suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise InputError(f"cannot read a '{suffix}' applications file", file=name, field="file",
                             hint="send CSV, GeoPackage, GeoJSON, zipped Shapefile or GeoParquet")
        data = await file.read()
        if not data:
            raise InputError("empty upload", file=name, field="file")

        def work() -> tuple[gpd.GeoDataFrame, Any]:
            with tempfile.TemporaryDirectory(prefix="pattogis-fund-") as d:
                tmp = Path(d) / f"upload{suffix}"
                tmp.write_bytes(data)
                projects = analysis.read_applications(tmp, label=name,
                                                         limits=UploadLimits.from_settings())
            res = analysis.fund(call, projects, mode, label=name)
            return projects, res

        projects, res = await run_in_threadpool(work)
        with lock:  # kept only once the whole file has passed
            runs[call] = projects
        return _document(res, format, f"graduatoria_{call}")

    @router.get("/runs/{call}", summary="The current run of a call as a document",
                responses={**RUN_DOCUMENTS, **KEYED,
                           404: {"description": "unknown call, or no run uploaded for it"}})
    def get_run(role: Metro, call: str,
                mode: Annotated[Mode, Query(description="graduatoria, optimal or compare")] = "graduatoria",
                format: Annotated[Format, Query(description="json, csv, xlsx, gpkg, html or pdf")] = "json",
                ) -> Response:
        call = config.call_id(call)
        projects = runs.get(call)
        if projects is None:
            raise NotFound(f"no applications uploaded for call '{call}' (POST /fund/runs)")
        return _document(analysis.fund(call, projects, mode), format, f"graduatoria_{call}")

    return router
