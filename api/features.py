"""OGC API - Features - Part 1 (Core, GeoJSON, OpenAPI 3.0) over a collection registry.

Endpoints: ``/`` (landing page), ``/conformance``, ``/collections``, ``/collections/{id}``,
``/collections/{id}/items`` and ``/collections/{id}/items/{featureId}``. Features are GeoJSON
in OGC:CRS84 (lon/lat), reprojected from the working CRS EPSG:25832 and served from the
registry's in-memory cache. Query parameters are parsed here, so every bad value is a 400 whose
``detail`` names the parameter and the reason; an unknown collection or feature is a 404.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import numpy as np
from fastapi import APIRouter, Request, Response

from api.errors import BadRequest
from pattogis.collections import (
    CRS84_URI,
    GREGORIAN_URI,
    CollectionData,
    CollectionRegistry,
    utc_now_iso,
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
GEOJSON = "application/geo+json"
JSON = "application/json"
OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
]
CRS_HEADER = {"Content-Crs": f"<{CRS84_URI}>"}


class GeoJSONResponse(Response):
    media_type = GEOJSON


# -- OpenAPI descriptions of the query parameters (parsed by hand below, see module doc) -------
_F_JSON = {"name": "f", "in": "query", "required": False, "description": "Output format: json.",
           "schema": {"type": "string", "enum": ["json"]}}
_F_GEOJSON = {**_F_JSON, "schema": {"type": "string", "enum": ["json", "geojson"]},
              "description": "Output format: json or geojson (both GeoJSON)."}
_ITEMS_PARAMS = [
    {"name": "limit", "in": "query", "required": False, "style": "form", "explode": False,
     "description": f"Number of features per page, 1 to {MAX_LIMIT}.",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
    {"name": "offset", "in": "query", "required": False, "style": "form", "explode": False,
     "description": "Number of matching features to skip (paging; see the next/prev links).",
     "schema": {"type": "integer", "minimum": 0, "default": 0}},
    {"name": "bbox", "in": "query", "required": False, "style": "form", "explode": False,
     "description": "Only features intersecting this box: minLon,minLat,maxLon,maxLat in CRS84 "
                    "(6 numbers when with heights).",
     "schema": {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}}},
    {"name": "datetime", "in": "query", "required": False, "style": "form", "explode": False,
     "description": "RFC 3339 instant or interval (start/end, '..' for open ends). Applied to "
                    "collections with a datetime field, ignored by the others.",
     "schema": {"type": "string"}},
    _F_GEOJSON,
]
_PROBLEM = {"content": {JSON: {"schema": {"type": "object", "properties": {
    "detail": {"type": "string"}, "status": {"type": "integer"}, "title": {"type": "string"}}}}}}
_ERRORS = {
    400: {"description": "A query parameter is invalid (the detail says which and why).",
          **_PROBLEM},
    404: {"description": "Unknown collection or feature.", **_PROBLEM},
    503: {"description": "The layer set is not built.", **_PROBLEM},
}
_LINK = {"type": "object", "required": ["href", "rel"], "properties": {
    "href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
    "title": {"type": "string"}}}
_FC_SCHEMA = {"type": "object", "required": ["type", "features"], "properties": {
    "type": {"type": "string", "enum": ["FeatureCollection"]},
    "features": {"type": "array", "items": {"type": "object"}},
    "links": {"type": "array", "items": _LINK},
    "timeStamp": {"type": "string", "format": "date-time"},
    "numberMatched": {"type": "integer", "minimum": 0},
    "numberReturned": {"type": "integer", "minimum": 0},
    "attribution": {"type": "string"}}}
_F_SCHEMA = {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
    "type": {"type": "string", "enum": ["Feature"]},
    "geometry": {"type": "object", "nullable": True},
    "properties": {"type": "object", "nullable": True},
    "links": {"type": "array", "items": _LINK}}}


# -- parameter parsing ---------------------------------------------------------------------------
def check_params(request: Request, allowed: Iterable[str]) -> dict[str, str]:
    """Query parameters as a dict; 400 for unknown or repeated ones (OGC /req/core/query-param-*)."""
    allowed = set(allowed)
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise BadRequest(
                f"unknown query parameter '{key}'; this endpoint accepts: "
                f"{', '.join(sorted(allowed)) or 'none'}", field=key)
        if key in out:
            raise BadRequest(f"query parameter '{key}' given more than once", field=key)
        out[key] = value
    return out


def parse_f(value: str | None, allowed: tuple[str, ...] = ("json",)) -> None:
    if value is not None and value not in allowed:
        raise BadRequest(f"unsupported format f='{value}'; use one of: {', '.join(allowed)}",
                         field="f")


def parse_int(value: str | None, name: str, *, default: int, lo: int, hi: int | None) -> int:
    """An integer query parameter within [lo, hi]."""
    if value is None:
        return default
    try:
        n = int(value.strip())
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got '{value}'", field=name) from None
    if n < lo or (hi is not None and n > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise BadRequest(f"{name} must be {bound}, got {n}", field=name)
    return n


def parse_bbox(value: str | None) -> tuple[float, float, float, float] | None:
    """``minLon,minLat,maxLon,maxLat`` (or 6 numbers with heights) in CRS84 degrees."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise BadRequest(f"bbox needs 4 or 6 comma-separated numbers, got {len(parts)}: "
                         f"'{value}'", field="bbox")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise BadRequest(f"bbox values must be numbers: '{value}'", field="bbox") from None
    if not all(math.isfinite(v) for v in nums):
        raise BadRequest(f"bbox values must be finite numbers: '{value}'", field="bbox")
    x0, y0, x1, y1 = (nums[0], nums[1], nums[2], nums[3]) if len(nums) == 4 else (
        nums[0], nums[1], nums[3], nums[4])
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180):
        raise BadRequest(f"bbox longitudes must be within -180..180 degrees: '{value}'",
                         field="bbox")
    if not (-90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise BadRequest(f"bbox latitudes must be within -90..90 degrees: '{value}'",
                         field="bbox")
    if y0 > y1:
        raise BadRequest(f"bbox minimum latitude {y0} is above the maximum {y1}", field="bbox")
    if len(nums) == 6 and nums[2] > nums[5]:
        raise BadRequest(f"bbox minimum height {nums[2]} is above the maximum {nums[5]}",
                         field="bbox")
    return (x0, y0, x1, y1)


def _instant(text: str, *, end: bool) -> np.datetime64:
    """One RFC 3339 date-time (or date: its first or last nanosecond) as naive UTC datetime64."""
    t = text.strip()
    try:
        if len(t) == 10:
            d = date.fromisoformat(t)
            dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
            if end:
                dt += timedelta(days=1)
                return np.datetime64(dt.replace(tzinfo=None), "ns") - np.timedelta64(1, "ns")
        else:
            if "T" not in t.upper() and " " not in t:
                raise ValueError("not a date-time")
            dt = datetime.fromisoformat(t)
            dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
        return np.datetime64(dt.replace(tzinfo=None), "ns")
    except (ValueError, OverflowError):
        raise BadRequest(
            f"datetime '{text}' is not an RFC 3339 date or date-time "
            "(e.g. 2024-05-01 or 2024-05-01T10:00:00Z)", field="datetime") from None


def parse_datetime(value: str | None) -> tuple[np.datetime64 | None, np.datetime64 | None] | None:
    """An instant or an interval 'start/end' ('..' or empty for an open end), as a closed UTC
    interval; a date alone covers its whole day."""
    if value is None:
        return None
    if value.count("/") > 1:
        raise BadRequest(f"datetime '{value}' has more than one '/'", field="datetime")
    if "/" not in value:
        if value.strip() in ("", ".."):
            raise BadRequest("datetime must be an instant or an interval, got "
                             f"'{value}'", field="datetime")
        return (_instant(value, end=False), _instant(value, end=True))
    a, b = value.split("/")
    lo = None if a.strip() in ("", "..") else _instant(a, end=False)
    hi = None if b.strip() in ("", "..") else _instant(b, end=True)
    if lo is not None and hi is not None and lo > hi:
        raise BadRequest(f"datetime interval '{value}' ends before it starts", field="datetime")
    return (lo, hi)


# -- documents -------------------------------------------------------------------------------
def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _link(href: str, rel: str, type_: str, title: str | None = None) -> dict[str, str]:
    out = {"href": href, "rel": rel, "type": type_}
    if title:
        out["title"] = title
    return out


def collection_doc(registry: CollectionRegistry, cid: str, base: str) -> dict[str, Any]:
    """The metadata document of one collection (extent in CRS84, itemCount, attribution)."""
    col = registry.get(cid)
    s = registry.summary(cid)
    url = f"{base}/collections/{quote(cid, safe='')}"
    extent: dict[str, Any] = {}
    if s.bbox is not None:
        extent["spatial"] = {"bbox": [list(s.bbox)], "crs": CRS84_URI}
    if s.temporal is not None:
        extent["temporal"] = {"interval": [list(s.temporal)], "trs": GREGORIAN_URI}
    doc: dict[str, Any] = {
        "id": cid,
        "title": col.title,
        "description": col.description,
        "attribution": col.attribution,
        "itemType": "feature",
        "crs": [CRS84_URI],
        "extent": extent,
        "itemCount": s.count,
        "geometryType": s.geometry_type,
        "links": [
            _link(url, "self", JSON, "this collection"),
            _link(f"{url}/items", "items", GEOJSON, f"features of {cid}"),
        ],
    }
    if col.licence:
        doc["license"] = col.licence
    if col.keywords:
        doc["keywords"] = list(col.keywords)
    if col.datetime_field:
        doc["datetimeField"] = col.datetime_field
    return doc


def _query(params: Mapping[str, str | int]) -> str:
    return urlencode({k: v for k, v in params.items() if v is not None}, safe=",/:")


def items_body(
    data: CollectionData,
    pos: np.ndarray,
    *,
    offset: int,
    limit: int,
    url: str,
    keep: Mapping[str, str],
    attribution: str,
) -> bytes:
    """The FeatureCollection page: metadata as JSON, features joined from the cached texts."""
    matched = int(len(pos))
    page = pos[offset:offset + limit]
    links = [_link(f"{url}?{_query({**keep, 'limit': limit, 'offset': offset})}", "self",
                   GEOJSON, "this page"),
             _link(url.rsplit("/items", 1)[0], "collection", JSON, "the collection")]
    if offset + limit < matched:
        links.append(_link(f"{url}?{_query({**keep, 'limit': limit, 'offset': offset + limit})}",
                           "next", GEOJSON, "next page"))
    if offset > 0:
        prev = max(0, min(offset, matched) - limit)
        links.append(_link(f"{url}?{_query({**keep, 'limit': limit, 'offset': prev})}",
                           "prev", GEOJSON, "previous page"))
    meta = json.dumps({
        "type": "FeatureCollection",
        "timeStamp": utc_now_iso(),
        "numberMatched": matched,
        "numberReturned": int(len(page)),
        "attribution": attribution,
        "links": links,
    }, ensure_ascii=False)
    features = ",".join(data.features[page])
    return (meta[:-1] + ',"features":[' + features + "]}").encode()


def features_router(
    registry: CollectionRegistry,
    *,
    title: str = "pattogis",
    description: str = ("Open layers of the Città metropolitana di Bologna for territorial "
                        "regeneration and zero-net land consumption (OGC API - Features)."),
    extra_links: list[dict[str, str]] | None = None,
) -> APIRouter:
    """The OGC API - Features endpoints serving ``registry``; ``extra_links`` are added to the
    landing page (e.g. by other routers)."""
    router = APIRouter(tags=["OGC API - Features"])

    @router.get("/", summary="Landing page", responses={**_ERRORS},
                openapi_extra={"parameters": [_F_JSON]})
    def landing(request: Request) -> dict[str, Any]:
        parse_f(check_params(request, {"f"}).get("f"))
        base = _base(request)
        return {
            "title": title,
            "description": description,
            "links": [
                _link(f"{base}/", "self", JSON, "this document"),
                _link(f"{base}/openapi.json", "service-desc", OPENAPI_TYPE,
                      "the API definition (OpenAPI 3.0)"),
                _link(f"{base}/docs", "service-doc", "text/html", "the API documentation"),
                _link(f"{base}/conformance", "conformance", JSON, "conformance classes"),
                _link(f"{base}/collections", "data", JSON, "the feature collections"),
                *(extra_links or []),
            ],
        }

    @router.get("/conformance", summary="Conformance classes", responses={**_ERRORS},
                openapi_extra={"parameters": [_F_JSON]})
    def conformance(request: Request) -> dict[str, list[str]]:
        parse_f(check_params(request, {"f"}).get("f"))
        return {"conformsTo": CONFORMANCE}

    @router.get("/collections", summary="The feature collections", responses={**_ERRORS},
                openapi_extra={"parameters": [_F_JSON]})
    def collections(request: Request) -> dict[str, Any]:
        parse_f(check_params(request, {"f"}).get("f"))
        base = _base(request)
        return {
            "links": [_link(f"{base}/collections", "self", JSON, "this document")],
            "collections": [collection_doc(registry, cid, base) for cid in registry.ids()],
        }

    @router.get("/collections/{collectionId}", summary="One collection's metadata",
                responses={**_ERRORS}, openapi_extra={"parameters": [_F_JSON]})
    def collection(collectionId: str, request: Request) -> dict[str, Any]:  # noqa: N803 - OGC name
        parse_f(check_params(request, {"f"}).get("f"))
        return collection_doc(registry, collectionId, _base(request))

    @router.get(
        "/collections/{collectionId}/items",
        summary="Features of a collection (GeoJSON, CRS84, paged)",
        response_class=GeoJSONResponse,
        responses={200: {"description": "A page of features.",
                         "content": {GEOJSON: {"schema": _FC_SCHEMA}}}, **_ERRORS},
        openapi_extra={"parameters": _ITEMS_PARAMS},
    )
    def items(collectionId: str, request: Request) -> Response:  # noqa: N803 - OGC name
        q = check_params(request, {"limit", "offset", "bbox", "datetime", "f"})
        parse_f(q.get("f"), ("json", "geojson"))
        limit = parse_int(q.get("limit"), "limit", default=DEFAULT_LIMIT, lo=1, hi=MAX_LIMIT)
        offset = parse_int(q.get("offset"), "offset", default=0, lo=0, hi=None)
        bbox = parse_bbox(q.get("bbox"))
        interval = parse_datetime(q.get("datetime"))
        col = registry.get(collectionId)
        data = registry.data(collectionId)
        pos = data.select(bbox, interval)
        url = f"{_base(request)}/collections/{quote(collectionId, safe='')}/items"
        keep = {k: q[k] for k in ("bbox", "datetime", "f") if k in q}
        body = items_body(data, pos, offset=offset, limit=limit, url=url, keep=keep,
                          attribution=col.attribution)
        return GeoJSONResponse(body, headers=CRS_HEADER)

    @router.get(
        "/collections/{collectionId}/items/{featureId}",
        summary="One feature (GeoJSON, CRS84)",
        response_class=GeoJSONResponse,
        responses={200: {"description": "The feature.",
                         "content": {GEOJSON: {"schema": _F_SCHEMA}}}, **_ERRORS},
        openapi_extra={"parameters": [_F_GEOJSON]},
    )
    def item(collectionId: str, featureId: str, request: Request) -> Response:  # noqa: N803
        parse_f(check_params(request, {"f"}).get("f"), ("json", "geojson"))
        col = registry.get(collectionId)
        data = registry.data(collectionId)
        text = data.features[data.position(featureId)]
        base = f"{_base(request)}/collections/{quote(collectionId, safe='')}"
        extra = json.dumps({
            "attribution": col.attribution,
            "links": [_link(f"{base}/items/{quote(featureId, safe='')}", "self", GEOJSON,
                            "this feature"),
                      _link(base, "collection", JSON, "the collection")],
        }, ensure_ascii=False)
        return GeoJSONResponse((text[:-1] + "," + extra[1:]).encode(), headers=CRS_HEADER)

    return router
