"""OGC API - Features (Parts 1, 2 and 3) over a collection registry.

Endpoints: ``/`` (landing page), ``/conformance``, ``/collections``, ``/collections/{id}``,
``/collections/{id}/queryables``, ``/collections/{id}/schema``, ``/collections/{id}/items`` and
``/collections/{id}/items/{featureId}``, each as JSON (GeoJSON for features) or browsable HTML
(``f=html`` or a browser's ``Accept: text/html``).

Items: paging (``limit``, ``offset``), ``bbox`` (with ``bbox-crs``), ``datetime``, equality on a
queryable (``?comune_istat=037006``), CQL2 ``filter`` in text or JSON (parsed and evaluated by
pygeofilter, vectorised on the collection's frame), ``sortby``, ``properties`` and ``crs``
(features in CRS84 by default; EPSG:25832, the storage CRS, returns the stored coordinates).
The query parameters are declared once, as FastAPI dependencies, so the OpenAPI document is
generated from the same declarations that parse them. Every bad value is a 400 whose ``detail``
names the parameter and the reason; an unknown collection or feature is a 404.
"""

from __future__ import annotations

import html
import inspect
import json
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import numpy as np
import pandas as pd
import pyproj
import shapely
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import BadRequest
from pattogis.collections import (
    CRS84,
    CRS84_URI,
    GREGORIAN_URI,
    CollectionData,
    CollectionRegistry,
    Summary,
    geometry_format,
    json_schema_type,
    utc_now_iso,
)
from pattogis.errors import NotFound, PattogisError

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
GEOJSON = "application/geo+json"
JSON = "application/json"
HTML = "text/html"
SCHEMA_JSON = "application/schema+json"
OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"
_F1 = "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/"
_F2 = "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/"
_F3 = "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/"
_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
#: What the endpoints here do, each class tested in tests/test_api_features.py.
CONFORMANCE = [
    _F1 + "core", _F1 + "geojson", _F1 + "html", _F1 + "oas30",
    _F2 + "crs",
    _F3 + "queryables", _F3 + "queryables-query-parameters", _F3 + "filter",
    _F3 + "features-filter",
    _CQL2 + "basic-cql2", _CQL2 + "advanced-comparison-operators",
    _CQL2 + "basic-spatial-functions", _CQL2 + "basic-spatial-functions-plus",
    _CQL2 + "spatial-functions", _CQL2 + "arithmetic", _CQL2 + "cql2-text", _CQL2 + "cql2-json",
    "http://www.opengis.net/spec/ogcapi-features-5/1.0/conf/schemas",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/sorting",
    "http://www.opengis.net/spec/ogcapi-features-6/1.0/conf/properties",
]
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/"
#: CRSs features can be requested in (besides the storage CRS of each collection).
OUTPUT_CRS = [CRS84_URI, EPSG_URI + "4326", EPSG_URI + "4258", EPSG_URI + "25832",
              EPSG_URI + "3857"]
REL_QUERYABLES = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
REL_SCHEMA = "http://www.opengis.net/def/rel/ogc/1.0/schema"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
CRS_HEADER = {"Content-Crs": f"<{CRS84_URI}>"}


class GeoJSONResponse(Response):
    media_type = GEOJSON


# -- query parameters, declared once: FastAPI parses them and writes the OpenAPI document ------
Format = Literal["json", "html"]
FeatureFormat = Literal["json", "geojson", "html"]


class FormatParam:
    """``f`` of the metadata documents."""

    def __init__(self, f: Annotated[Format | None, Query(
            description="Output format: json, or html for a browsable page (also chosen by "
                        "an Accept header preferring text/html).")] = None) -> None:
        self.f = f


#: ``f`` and ``crs`` of features, declared once for one feature and for pages
FeatureF = Annotated[FeatureFormat | None, Query(
    description="Output format: json or geojson (both GeoJSON), or html.")]
FeatureCrs = Annotated[str | None, Query(
    description="CRS of the geometries, one of the collection's crs list (URI; EPSG:25832 is "
                "also accepted as such). Default: CRS84 (lon/lat).",
    json_schema_extra={"enum": OUTPUT_CRS})]


class FeatureParams:
    """``f`` and ``crs`` of one feature."""

    def __init__(self, f: FeatureF = None, crs: FeatureCrs = None) -> None:
        self.f = f
        self.crs = crs


class ItemsParams(FeatureParams):
    """Every declared query parameter of ``/collections/{id}/items``. Equality on a queryable
    (``?name=value``) is also accepted: those depend on the collection, so the OpenAPI document
    names them at ``/collections/{id}/queryables``."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=(
            f"Number of features per page, 1 to {MAX_LIMIT}."))] = DEFAULT_LIMIT,
        offset: Annotated[int, Query(ge=0, description=(
            "Number of matching features to skip (paging; see the next/prev links)."))] = 0,
        bbox: Annotated[str | None, Query(description=(
            "Only features intersecting this box: minx,miny,maxx,maxy (6 numbers with heights) "
            "in bbox-crs, CRS84 lon/lat by default."))] = None,
        bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description=(
            "CRS of bbox (URI), one of the collection's crs list."),
            json_schema_extra={"enum": OUTPUT_CRS})] = None,
        datetime_: Annotated[str | None, Query(alias="datetime", description=(
            "RFC 3339 instant or interval (start/end, '..' for open ends). Applied to "
            "collections with a datetime field, ignored by the others."))] = None,
        filter_: Annotated[str | None, Query(alias="filter", description=(
            "CQL2 filter on the queryables, e.g. area_m2 > 500 AND comune_istat = '037006' or "
            "S_INTERSECTS(geometry, BBOX(11.3,44.49,11.36,44.51))."))] = None,
        filter_lang: Annotated[Literal["cql2-text", "cql2-json"] | None, Query(
            alias="filter-lang", description="Language of filter (default cql2-text).")] = None,
        filter_crs: Annotated[str | None, Query(alias="filter-crs", description=(
            "CRS of the geometries in filter: CRS84 (default) or the storage CRS."),
            json_schema_extra={"enum": [CRS84_URI, EPSG_URI + "25832"]})] = None,
        sortby: Annotated[str | None, Query(description=(
            "Comma-separated queryables, each with an optional + (ascending, default) or - "
            "(descending) prefix, e.g. -area_m2,name."))] = None,
        properties: Annotated[str | None, Query(description=(
            "Comma-separated properties to return (empty: none). Default: all."))] = None,
        f: FeatureF = None,
        crs: FeatureCrs = None,
    ) -> None:
        super().__init__(f=f, crs=crs)
        self.limit, self.offset = limit, offset
        self.bbox, self.bbox_crs, self.datetime = bbox, bbox_crs, datetime_
        self.filter, self.filter_lang, self.filter_crs = filter_, filter_lang, filter_crs
        self.sortby, self.properties = sortby, properties


def declared(cls: Callable[..., object]) -> frozenset[str]:
    """The query parameter names a dependency class declares (aliases where given)."""
    names = set()
    for name, prm in inspect.signature(cls).parameters.items():
        meta = getattr(prm.annotation, "__metadata__", None)
        if meta is None:  # string annotation (postponed evaluation): evaluate it
            ann = inspect.get_annotations(cls.__init__, eval_str=True)[name]  # type: ignore[misc]
            meta = getattr(ann, "__metadata__", ())
        alias = next((m.alias for m in meta if getattr(m, "alias", None)), None)
        names.add(alias or name)
    return frozenset(names)


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


def collection_doc(registry: CollectionRegistry, cid: str, base: str,
                   s: Summary | None) -> dict[str, Any]:
    """The metadata document of one collection (extent in CRS84, itemCount, attribution) from
    its summary; without one (``/collections`` lists an analysis result not computed yet), no
    extent, count or geometry type."""
    col = registry.get(cid)
    url = f"{base}/collections/{quote(cid, safe='')}"
    extent: dict[str, Any] = {}
    if s is not None and s.bbox is not None:
        extent["spatial"] = {"bbox": [list(s.bbox)], "crs": CRS84_URI}
    if s is not None and s.temporal is not None:
        extent["temporal"] = {"interval": [list(s.temporal)], "trs": GREGORIAN_URI}
    doc: dict[str, Any] = {
        "id": cid,
        "title": col.title,
        "description": col.description,
        "attribution": col.attribution,
        "itemType": "feature",
        "crs": [CRS84_URI],
        "extent": extent,
        **({"itemCount": s.count, "geometryType": s.geometry_type} if s is not None else {}),
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
    texts: np.ndarray | None = None,
    matched: int | None = None,
    page_offset: int | None = None,
) -> bytes:
    """The FeatureCollection page: metadata as JSON, then the features' texts (``texts``: those
    of the page, default the cached CRS84 ones). ``pos`` is every match, paged here; or, with
    ``page_offset``, only the page's features, which start at ``page_offset`` of ``matched``."""
    page = pos[offset:offset + limit]
    features = ",".join(data.texts(page) if texts is None else texts).encode()
    return page_body(features, returned=len(page),
                     matched=int(len(pos)) if matched is None else matched,
                     offset=offset if page_offset is None else page_offset, limit=limit,
                     url=url, keep=keep, attribution=attribution)


def page_body(features: bytes, *, returned: int, matched: int, offset: int, limit: int, url: str,
              keep: Mapping[str, str], attribution: str) -> bytes:
    """A FeatureCollection page around ``features`` (GeoJSON texts joined by commas): counts,
    attribution and the self/collection/next/prev links."""
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
        "numberReturned": int(returned),
        "attribution": attribution,
        "links": links,
    }, ensure_ascii=False)
    return b"".join((meta[:-1].encode(), b',"features":[', features, b"]}"))


# -- CRS (Part 2) ------------------------------------------------------------------------------
def crs_uri(code: str | None) -> str | None:
    """'EPSG:25832' as its OGC URI (None stays None)."""
    if not code:
        return None
    if code.upper() in ("OGC:CRS84", "CRS84"):
        return CRS84_URI
    auth, _, num = code.partition(":")
    return f"http://www.opengis.net/def/crs/{auth.upper()}/0/{num}" if num else code


def parse_crs(value: str | None, name: str, allowed: list[str]) -> pyproj.CRS | None:
    """A CRS URI (or 'EPSG:n', '[EPSG:n]') among ``allowed``; None for CRS84 or no value."""
    if value is None:
        return None
    v = value.strip().strip("[]")
    if not v.startswith("http"):
        v = crs_uri(v) or v
    if v not in allowed:
        raise BadRequest(f"{name} '{value}' is not offered; use one of: {', '.join(allowed)}",
                         field=name)
    if v == CRS84_URI:
        return None
    auth, code = v.rstrip("/").split("/")[-3], v.rstrip("/").split("/")[-1]
    return pyproj.CRS.from_user_input(f"{auth}:{code}")


def parse_numbers(value: str, name: str) -> list[float]:
    parts = value.split(",")
    if len(parts) not in (4, 6):
        raise BadRequest(f"{name} needs 4 or 6 comma-separated numbers, got {len(parts)}: "
                         f"'{value}'", field=name)
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise BadRequest(f"{name} values must be numbers: '{value}'", field=name) from None
    if not all(math.isfinite(v) for v in nums):
        raise BadRequest(f"{name} values must be finite numbers: '{value}'", field=name)
    return nums


def bbox_region(value: str, crs: pyproj.CRS) -> shapely.Geometry:
    """A bbox given in ``crs`` (its axis order) as a CRS84 polygon, edges densified (100 points
    a side) so that a box of straight lines in ``crs`` keeps its shape in lon/lat."""
    nums = parse_numbers(value, "bbox")
    a0, b0, a1, b1 = (nums[0], nums[1], nums[2], nums[3]) if len(nums) == 4 else (
        nums[0], nums[1], nums[3], nums[4])
    if a0 > a1 or b0 > b1:
        raise BadRequest(f"bbox minimum is above the maximum: '{value}'", field="bbox")
    ring = shapely.segmentize(shapely.box(a0, b0, a1, b1), max(a1 - a0, b1 - b0, 1e-9) / 100)
    tr = pyproj.Transformer.from_crs(crs, CRS84)  # authority order in, lon/lat out

    def _to(xy: np.ndarray) -> np.ndarray:
        x, y = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([x, y])

    out = shapely.transform(ring, _to)
    if not shapely.is_valid(out) or not np.all(np.isfinite(shapely.bounds(out))):
        raise BadRequest(f"bbox '{value}' is outside the area of use of bbox-crs", field="bbox")
    return out


# -- filters (Part 3), sorting, property selection --------------------------------------------
def queryables(data: CollectionData) -> dict[str, str]:
    """Queryable properties and their dtype names (every property of the collection)."""
    return dict(data.fields)


def equality_mask(data: CollectionData, query: Mapping[str, str]) -> np.ndarray | None:
    """Features whose property equals the value given for it (``?istat=037006``): the value is
    read as the property's type (integer, number, true/false, text)."""
    mask: np.ndarray | None = None
    for name, text in query.items():
        col = data.properties[name]
        kind = json_schema_type(str(col.dtype))["type"]
        try:
            if kind == "integer":
                value: object = int(text)
            elif kind == "number":
                value = float(text)
            elif kind == "boolean":
                if text.lower() not in ("true", "false"):
                    raise ValueError(text)
                value = text.lower() == "true"
            else:
                value = text
        except ValueError:
            raise BadRequest(f"{name} must be a {kind}, got '{text}'", field=name) from None
        hit = (col == value).fillna(False).to_numpy(dtype=bool)
        mask = hit if mask is None else mask & hit
    return mask


def _bbox_literal(*c: float) -> shapely.Geometry:
    """CQL2's BBOX(minx, miny, maxx, maxy[, ...]) literal, which pygeofilter's text parser hands
    over as a function call."""
    if len(c) not in (4, 6):
        raise ValueError(f"BBOX needs 4 or 6 numbers, got {len(c)}")
    return shapely.box(c[0], c[1], c[2], c[3]) if len(c) == 4 else shapely.box(
        c[0], c[1], c[3], c[4])


_CQL2_FUNCTIONS = {"bbox": _bbox_literal, "BBOX": _bbox_literal}


def cql2_mask(data: CollectionData, text: str, lang: str | None,
              filter_crs: pyproj.CRS | None) -> np.ndarray:
    """Features matching a CQL2 filter, parsed and evaluated by pygeofilter on the collection's
    frame (vectorised: pandas comparisons, shapely predicates). ``geometry`` is the feature's
    geometry, in CRS84 unless ``filter_crs`` is the storage CRS."""
    from pygeofilter import ast
    from pygeofilter.backends.geopandas.evaluate import to_filter
    from pygeofilter.parsers.cql2_json import parse as parse_json
    from pygeofilter.parsers.cql2_text import parse as parse_text

    lang = lang or "cql2-text"
    try:
        tree = parse_json(json.loads(text)) if lang == "cql2-json" else parse_text(text)
    except Exception as e:  # lark and json errors: the message says where the text is wrong
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BadRequest(f"filter is not valid {lang}: {reason}", field="filter") from None
    known = set(queryables(data)) | {"geometry"}
    unknown: set[str] = set()
    nodes: list[Any] = [tree]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ast.Attribute) and node.name not in known:
            unknown.add(node.name)
        if isinstance(node, ast.TemporalPredicate):
            raise BadRequest("filter: temporal operators (T_...) are not supported; use "
                             "comparisons on the date property or the datetime parameter",
                             field="filter")
        if isinstance(node, ast.Node):
            nodes.extend(node.get_sub_nodes())
        elif isinstance(node, list | tuple):
            nodes.extend(node)
    if unknown:
        raise BadRequest(f"filter names unknown properties: {', '.join(sorted(unknown))}; "
                         f"queryables: {', '.join(sorted(known))}", field="filter")
    if filter_crs is not None and filter_crs != data.storage_crs:
        raise BadRequest("filter-crs must be CRS84 or the storage CRS", field="filter-crs")
    frame = data.frame(storage=filter_crs is not None)
    try:
        result = to_filter(frame, tree, function_map=_CQL2_FUNCTIONS)
    except Exception as e:  # type mismatches (text compared with a number...) are the user's
        raise BadRequest(f"filter cannot be evaluated on this collection: {e}",
                         field="filter") from None
    if isinstance(result, bool | np.bool_):
        return np.full(data.count, bool(result))
    if not isinstance(result, pd.Series) or len(result) != data.count:
        raise BadRequest("filter must be a condition (true or false for each feature)",
                         field="filter")
    return result.fillna(False).to_numpy(dtype=bool)


def parse_sortby(value: str | None, data: CollectionData) -> list[tuple[str, bool]]:
    if value is None or not value.strip():
        return []
    keys = []
    known = queryables(data)
    for part in value.split(","):
        part = part.strip()
        asc = not part.startswith("-")
        name = part.lstrip("+-").strip()
        if name not in known:
            raise BadRequest(f"sortby: '{name}' is not a property; sortable: "
                             f"{', '.join(known) or 'none'}", field="sortby")
        keys.append((name, asc))
    return keys


def parse_properties(value: str | None, data: CollectionData) -> list[str] | None:
    if value is None:
        return None
    names = [p.strip() for p in value.split(",") if p.strip()]
    unknown = [n for n in names if n not in data.properties.columns]
    if unknown:
        raise BadRequest(f"properties: unknown {', '.join(unknown)}; known: "
                         f"{', '.join(map(str, data.properties.columns))}", field="properties")
    return names


# -- GML application schema (for GDAL) ---------------------------------------------------------
_XSD_TYPES = {"integer/int64": "long", "integer/int32": "int", "number/double": "double",
              "number/float": "float", "boolean/": "boolean", "string/date-time": "dateTime",
              "string/date": "date", "string/": "string"}
_GML_GEOMETRY = {"Point": "Point", "LineString": "Curve", "Polygon": "Surface",
                 "MultiPoint": "MultiPoint", "MultiLineString": "MultiCurve",
                 "MultiPolygon": "MultiSurface"}


def gml_schema(cid: str, fields: Iterable[tuple[str, str]], geometry_type: str) -> str:
    """A GML 3.2 simple-features application schema of a collection: the document GDAL's
    OAPIF driver reads field types from (xs:long for 64-bit integers)."""
    def xsd(dtype: str) -> str:
        t = json_schema_type(dtype)
        return _XSD_TYPES[f"{t['type']}/{t.get('format', '')}"]

    name = html.escape(cid)
    geom = _GML_GEOMETRY.get(geometry_type.removesuffix(" Z"), "Geometry")
    elements = "".join(
        f'<xs:element name="{html.escape(k)}" type="xs:{xsd(t)}" minOccurs="0" nillable="true"/>'
        for k, t in fields)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" '
        'xmlns:gml="http://www.opengis.net/gml/3.2" xmlns:pattogis="urn:pattogis" '
        'targetNamespace="urn:pattogis" elementFormDefault="qualified" version="1.0">'
        '<xs:import namespace="http://www.opengis.net/gml/3.2" '
        'schemaLocation="http://schemas.opengis.net/gml/3.2.1/gml.xsd"/>'
        f'<xs:element name="{name}" type="pattogis:{name}Type" '
        'substitutionGroup="gml:AbstractFeature"/>'
        f'<xs:complexType name="{name}Type"><xs:complexContent>'
        '<xs:extension base="gml:AbstractFeatureType"><xs:sequence>'
        f'<xs:element name="geometry" type="gml:{geom}PropertyType" minOccurs="0"/>{elements}'
        "</xs:sequence></xs:extension></xs:complexContent></xs:complexType></xs:schema>\n")


# -- HTML --------------------------------------------------------------------------------------
def wants_html(request: Request, f: str | None) -> bool:
    """f=html, or no f and an Accept header that names text/html (a browser)."""
    if f is not None:
        return f == "html"
    return HTML in request.headers.get("accept", "")


def esc(v: object) -> str:
    return html.escape("" if v is None else str(v))


def html_page(title: str, body: str, crumbs: list[tuple[str, str]]) -> HTMLResponse:
    nav = " / ".join(f'<a href="{esc(h)}">{esc(t)}</a>' for h, t in crumbs)
    return HTMLResponse(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><title>{esc(title)}</title><style>'
        "body{font:15px/1.5 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;"
        "padding:0 1em;color:#222}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}"
        "th{background:#f4f4f4}nav{color:#666}code{background:#f3f3f3}</style></head><body>"
        f"<nav>{nav}</nav><h1>{esc(title)}</h1>{body}</body></html>")


def links_html(links: list[dict[str, str]]) -> str:
    rows = "".join(f'<li><a href="{esc(ln["href"])}">{esc(ln.get("title") or ln["href"])}'
                   f'</a> <small>({esc(ln["rel"])}, {esc(ln.get("type", ""))})</small></li>'
                   for ln in links)
    return f"<ul>{rows}</ul>"


def table_html(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{r.get(c, '') if c == '_id' else esc(r.get(c))}</td>"
                                    for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def with_f(url: str, f: str = "html") -> str:
    return url + ("&" if "?" in url else "?") + f"f={f}"


def crs_list(storage: str | None) -> list[str]:
    """The CRS a collection is served in: CRS84, the others of OUTPUT_CRS and its storage CRS."""
    uri = crs_uri(storage)
    return OUTPUT_CRS + ([uri] if uri and uri not in OUTPUT_CRS else [])


STORED_NAMES = frozenset({"limit", "offset", "f", "bbox", "bbox-crs"})


def stored_page(registry: CollectionRegistry, cid: str, request: Request,
                p: ItemsParams) -> Response | None:
    """A page in CRS84 with every property, paged and at most bbox-filtered (what GDAL, QGIS
    and web maps ask), cut from the layer's feature store on disk: nothing of the layer is
    loaded (None when the layer has no current store or the request asks more)."""
    if not set(request.query_params) <= STORED_NAMES or wants_html(request, p.f):
        return None
    store = registry.store(cid)
    if store is None:
        return None
    check_params(request, STORED_NAMES)
    if p.bbox is None:
        if p.bbox_crs is not None:
            raise BadRequest("bbox-crs given without bbox", field="bbox-crs")
        matched = store.count
        features = store.page(p.offset, p.offset + p.limit)
        returned = max(0, min(p.limit, matched - p.offset))
    else:
        allowed = crs_list(registry.summary(cid).storage_crs)
        if parse_crs(p.bbox_crs, "bbox-crs", allowed) is not None:
            return None  # a box in another CRS: densified into the storage CRS there
        pos = store.select(parse_bbox(p.bbox))  # type: ignore[arg-type]
        matched = len(pos)
        page = pos[p.offset:p.offset + p.limit]
        features, returned = store.texts(page), len(page)
    url = f"{_base(request)}/collections/{quote(cid, safe='')}/items"
    keep = {k: v for k, v in request.query_params.items() if k not in ("limit", "offset")}
    return GeoJSONResponse(page_body(
        features, returned=returned, matched=matched, offset=p.offset, limit=p.limit,
        url=url, keep=keep, attribution=registry.get(cid).attribution), headers=CRS_HEADER)


class StoredPagesMiddleware:
    """The fast lane of ``/collections/{id}/items``: plain pages (``limit``, ``offset``,
    ``f=json``, a CRS84 ``bbox``) of a layer with a feature store are answered here, before FastAPI's routing and
    parameter parsing, which cost more than cutting the page. Any other request, and any this
    lane does not fully understand (a bad value, an unknown collection), goes on to the app
    unchanged, which answers it (or its error) as always."""

    def __init__(self, app: ASGIApp, registry: CollectionRegistry) -> None:
        self.app = app
        self.registry = registry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            if path.startswith("/collections/") and path.endswith("/items"):
                response = self._answer(scope, path[len("/collections/"):-len("/items")])
                if response is not None:
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    def _answer(self, scope: Scope, cid: str) -> Response | None:
        if not cid or "/" in cid:
            return None
        request = Request(scope)
        items = request.query_params.multi_items()
        q = dict(items)
        if len(q) != len(items) or not q.keys() <= STORED_NAMES:
            return None
        if q.get("f") not in (None, "json", "geojson"):
            return None
        limit, offset = q.get("limit", str(DEFAULT_LIMIT)), q.get("offset", "0")
        if not (limit.isascii() and limit.isdigit() and offset.isascii() and offset.isdigit()):
            return None
        p = ItemsParams(limit=int(limit), offset=int(offset), f=q.get("f"),  # type: ignore[arg-type]
                        bbox=q.get("bbox"), bbox_crs=q.get("bbox-crs"))
        if not 1 <= p.limit <= MAX_LIMIT:
            return None
        try:
            return stored_page(self.registry, cid, request, p)
        except PattogisError:
            return None  # the app answers with its error document


class HeadMiddleware:
    """HEAD on any GET endpoint: answered as the GET would be, without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_no_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_no_body)


_HTML_OK = {HTML: {"schema": {"type": "string"}}}


def features_router(
    registry: CollectionRegistry,
    *,
    title: str = "pattogis",
    description: str = ("Open layers of the Città metropolitana di Bologna for territorial "
                        "regeneration and zero-net land consumption (OGC API - Features)."),
    extra_links: list[dict[str, str]] | None = None,
    extra_conformance: list[str] | None = None,
) -> APIRouter:
    """The OGC API - Features endpoints serving ``registry``; ``extra_links`` are added to the
    landing page (e.g. by other routers; an href starting with / is taken from the server root)
    and ``extra_conformance`` to the conformance classes (those other routers implement)."""
    conformance_classes = CONFORMANCE + list(extra_conformance or [])
    router = APIRouter(tags=["OGC API - Features"])
    f_only = declared(FormatParam)
    feature_names = declared(FeatureParams)
    items_names = declared(ItemsParams)
    json_or_html = {200: {"description": "The document.", "content": {
        JSON: {"schema": {"type": "object"}}, **_HTML_OK}}, **_ERRORS}

    @router.get("/", summary="Landing page", responses=json_or_html)
    def landing(request: Request, p: Annotated[FormatParam, Depends()]) -> Any:
        check_params(request, f_only)
        base = _base(request)
        links = [
            _link(f"{base}/", "self", JSON, "this document"),
            _link(f"{base}/?f=html", "alternate", HTML, "this document as HTML"),
            _link(f"{base}/openapi.json", "service-desc", OPENAPI_TYPE,
                  "the API definition (OpenAPI 3.0)"),
            _link(f"{base}/docs", "service-doc", HTML, "the API documentation"),
            _link(f"{base}/conformance", "conformance", JSON, "conformance classes"),
            _link(f"{base}/collections", "data", JSON, "the feature collections"),
            *({**ln, "href": base + ln["href"] if ln["href"].startswith("/") else ln["href"]}
              for ln in extra_links or []),
        ]
        if wants_html(request, p.f):
            body = (f"<p>{esc(description)}</p>"
                    + links_html([{**ln, "href": with_f(ln["href"]) if ln["type"] == JSON
                                   else ln["href"]} for ln in links if ln["rel"] != "alternate"]))
            return html_page(title, body, [(f"{base}/?f=html", "home")])
        return {"title": title, "description": description, "links": links}

    @router.get("/conformance", summary="Conformance classes", responses=json_or_html)
    def conformance(request: Request, p: Annotated[FormatParam, Depends()]) -> Any:
        check_params(request, f_only)
        if wants_html(request, p.f):
            base = _base(request)
            return html_page("Conformance", "<ul>" + "".join(
                f"<li>{esc(c)}</li>" for c in conformance_classes) + "</ul>",
                [(f"{base}/?f=html", "home")])
        return {"conformsTo": conformance_classes}

    def collection_doc_full(cid: str, base: str, listing: bool = False) -> dict[str, Any]:
        s = registry.cheap_summary(cid) if listing else registry.summary(cid)
        doc = collection_doc(registry, cid, base, s)
        url = f"{base}/collections/{quote(cid, safe='')}"
        storage = s.storage_crs if s is not None else None
        doc["crs"] = crs_list(storage)
        if storage:
            doc["storageCrs"] = crs_uri(storage)
        doc["links"] += [
            _link(f"{url}?f=html", "alternate", HTML, "this collection as HTML"),
            _link(f"{url}/items?f=html", "items", HTML, f"features of {cid} as HTML"),
            _link(f"{url}/queryables", REL_QUERYABLES, SCHEMA_JSON, "the queryables"),
            _link(f"{url}/schema", REL_SCHEMA, SCHEMA_JSON, "the schema of the features"),
            _link(f"{url}/tiles", "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
                  JSON, "vector tiles (Mapbox Vector Tiles)"),
            _link(f"{url}/schema", "describedby", SCHEMA_JSON, "the schema of the features"),
            # GDAL's OAPIF driver (3.6) takes exact field types (64-bit integers included) from
            # a GML application schema linked with the camel-case rel of the drafts
            _link(f"{url}/schema.xsd", "describedBy", "text/xml",
                  "the schema of the features as a GML application schema (XSD)"),
        ]
        return doc

    @router.get("/collections", summary="The feature collections", responses=json_or_html)
    def collections(request: Request, p: Annotated[FormatParam, Depends()]) -> Any:
        check_params(request, f_only)
        base = _base(request)
        docs = [collection_doc_full(cid, base, listing=True) for cid in registry.ids()]
        if wants_html(request, p.f):
            rows = [{"_id": f'<a href="{esc(with_f(d["links"][0]["href"]))}">{esc(d["id"])}</a>',
                     "title": d["title"], "features": d.get("itemCount", ""),
                     "geometry": d.get("geometryType", ""), "attribution": d["attribution"]}
                    for d in docs]
            return html_page("Collections", table_html(
                rows, ["_id", "title", "features", "geometry", "attribution"]),
                [(f"{base}/?f=html", "home")])
        return {
            "links": [_link(f"{base}/collections", "self", JSON, "this document"),
                      _link(f"{base}/collections?f=html", "alternate", HTML, "as HTML")],
            "collections": docs,
            "crs": OUTPUT_CRS,
        }

    @router.get("/collections/{collectionId}", summary="One collection's metadata",
                responses=json_or_html)
    def collection(collectionId: str, request: Request,  # noqa: N803 - OGC name
                   p: Annotated[FormatParam, Depends()]) -> Any:
        check_params(request, f_only)
        base = _base(request)
        doc = collection_doc_full(collectionId, base)
        if wants_html(request, p.f):
            props = registry.summary(collectionId).fields
            body = (f"<p>{esc(doc['description'])}</p><p>Attribution: "
                    f"{esc(doc['attribution'])}. Features: {doc['itemCount']}. Geometry: "
                    f"{esc(doc['geometryType'])}. Stored in {esc(doc.get('storageCrs'))}.</p>"
                    + table_html([{"property": k, "type": json_schema_type(t)["type"]}
                                  for k, t in props], ["property", "type"])
                    + links_html(doc["links"]))
            return html_page(doc["title"], body, [(f"{base}/?f=html", "home"),
                                                  (f"{base}/collections?f=html", "collections")])
        return doc

    def schema_doc(cid: str, request: Request, kind: str) -> dict[str, Any]:
        s = registry.summary(cid)
        if not s.fields and s.count:  # a registered collection without a cheap summary
            s = registry.data(cid).summary()
        url = f"{_base(request)}/collections/{quote(cid, safe='')}/{kind}"
        props: dict[str, Any] = {k: {"title": k, **json_schema_type(t)} for k, t in s.fields}
        props["geometry"] = {"title": "geometry", "format": geometry_format(s.geometry_type),
                             "x-ogc-role": "primary-geometry"}
        return {"$schema": JSON_SCHEMA_DIALECT, "$id": url, "type": "object",
                "title": registry.get(cid).title, "properties": props,
                "additionalProperties": kind != "queryables"}

    schema_ok = {200: {"description": "A JSON Schema.", "content": {
        SCHEMA_JSON: {"schema": {"type": "object"}}, JSON: {"schema": {"type": "object"}},
        **_HTML_OK}}, **_ERRORS}

    def schema_response(doc: dict[str, Any], request: Request, f: str | None,
                        cid: str) -> Response:
        if wants_html(request, f):
            base = _base(request)
            rows = [{"property": k, "type": v.get("type", ""), "format": v.get("format", "")}
                    for k, v in doc["properties"].items()]
            return html_page(f"{doc['title']}: {doc['$id'].rsplit('/', 1)[1]}",
                             table_html(rows, ["property", "type", "format"]),
                             [(f"{base}/?f=html", "home"),
                              (f"{base}/collections/{quote(cid, safe='')}?f=html", cid)])
        return JSONResponse(doc, media_type=JSON if f == "json" else SCHEMA_JSON)

    @router.get("/collections/{collectionId}/queryables", responses=schema_ok,
                summary="The properties a filter may name (JSON Schema)")
    def queryables_(collectionId: str, request: Request,  # noqa: N803 - OGC name
                    p: Annotated[FormatParam, Depends()]) -> Response:
        check_params(request, f_only)
        return schema_response(schema_doc(collectionId, request, "queryables"), request, p.f,
                               collectionId)

    @router.get("/collections/{collectionId}/schema", responses=schema_ok,
                summary="The schema of the features, with exact types (JSON Schema)")
    def schema(collectionId: str, request: Request,  # noqa: N803 - OGC name
               p: Annotated[FormatParam, Depends()]) -> Response:
        check_params(request, f_only)
        return schema_response(schema_doc(collectionId, request, "schema"), request, p.f,
                               collectionId)

    @router.get("/collections/{collectionId}/schema.xsd", include_in_schema=False)
    def schema_xsd(collectionId: str, request: Request) -> Response:  # noqa: N803 - OGC name
        check_params(request, ())
        s = registry.summary(collectionId)
        if not s.fields and s.count:
            s = registry.data(collectionId).summary()
        return Response(gml_schema(collectionId, s.fields, s.geometry_type),
                        media_type="text/xml")

    def crs_header(crs: pyproj.CRS | None) -> dict[str, str]:
        if crs is None:
            return CRS_HEADER
        auth = crs.to_authority()
        return {"Content-Crs": f"<{crs_uri(f'{auth[0]}:{auth[1]}') if auth else crs.srs}>"}

    @router.get(
        "/collections/{collectionId}/items",
        summary="Features of a collection (GeoJSON, CRS84 unless crs says, paged, filtered)",
        response_class=GeoJSONResponse,
        responses={200: {"description": "A page of features.",
                         "content": {GEOJSON: {"schema": _FC_SCHEMA}, **_HTML_OK}}, **_ERRORS},
    )
    def items(collectionId: str, request: Request,  # noqa: N803 - OGC name
              p: Annotated[ItemsParams, Depends()]) -> Response:
        col = registry.get(collectionId)
        fast = stored_page(registry, collectionId, request, p)
        if fast is None:
            fast = cold_page(collectionId, request, p)
        if fast is not None:
            return fast
        data = registry.data(collectionId)
        names = queryables(data)
        q = check_params(request, items_names | set(names))
        allowed = crs_list(registry.summary(collectionId).storage_crs)
        crs = parse_crs(p.crs, "crs", allowed)
        interval = parse_datetime(p.datetime)
        bbox, region = None, None
        if p.bbox is not None:
            bbox_crs = parse_crs(p.bbox_crs, "bbox-crs", allowed)
            if bbox_crs is None:
                bbox = parse_bbox(p.bbox)
            else:
                region = bbox_region(p.bbox, bbox_crs)
        elif p.bbox_crs is not None:
            raise BadRequest("bbox-crs given without bbox", field="bbox-crs")
        mask = equality_mask(data, {k: v for k, v in q.items() if k in names
                                    and k not in items_names})
        if p.filter is not None:
            fmask = cql2_mask(data, p.filter, p.filter_lang,
                              parse_crs(p.filter_crs, "filter-crs", allowed))
            mask = fmask if mask is None else mask & fmask
        elif p.filter_lang is not None or p.filter_crs is not None:
            raise BadRequest("filter-lang and filter-crs need a filter", field="filter")
        keys = parse_sortby(p.sortby, data)
        props = parse_properties(p.properties, data)
        pos = data.sort(data.select(bbox, interval, region=region, mask=mask), keys)
        url = f"{_base(request)}/collections/{quote(collectionId, safe='')}/items"
        keep = {k: v for k, v in q.items() if k not in ("limit", "offset")}
        if wants_html(request, p.f):
            return items_html(data, pos, p, url, keep, col.attribution, request, collectionId)
        page = pos[p.offset:p.offset + p.limit]
        store = registry.store(collectionId) if props is None and crs is None else None
        if store is not None and store.count == data.count:
            # the texts of a filtered or sorted page from the store (same positions: both in
            # fid order of the same GeoPackage), not made and kept in memory
            body = page_body(store.texts(page), returned=len(page), matched=len(pos),
                             offset=p.offset, limit=p.limit, url=url, keep=keep,
                             attribution=col.attribution)
        else:
            body = items_body(data, pos, offset=p.offset, limit=p.limit, url=url, keep=keep,
                              attribution=col.attribution,
                              texts=data.page_texts(page, properties=props, crs=crs))
        return GeoJSONResponse(body, headers=crs_header(crs))

    def cold_page(cid: str, request: Request, p: ItemsParams) -> Response | None:
        """A plain page (limit, offset, f=json) of a collection still loading: read straight
        from the store, so the first requests after start do not wait for the whole layer."""
        plain = set(request.query_params) <= {"limit", "offset", "f"}
        if not plain or wants_html(request, p.f) or registry.loaded(cid) is not None:
            return None
        check_params(request, {"limit", "offset", "f"})
        s = registry.summary(cid)
        page = registry.cold_page(cid, p.offset, p.limit)
        pos = np.arange(page.count)
        # numberMatched from the store's count; items_body pages over it
        url = f"{_base(request)}/collections/{quote(cid, safe='')}/items"
        keep = {k: v for k, v in request.query_params.items() if k == "f"}
        body = items_body(page, pos, offset=0, limit=p.limit, url=url, keep=keep,
                          attribution=registry.get(cid).attribution,
                          matched=s.count, page_offset=p.offset)
        return GeoJSONResponse(body, headers=CRS_HEADER)

    def items_html(data: CollectionData, pos: np.ndarray, p: ItemsParams, url: str,
                   keep: Mapping[str, str], attribution: str, request: Request,
                   cid: str) -> HTMLResponse:
        base = _base(request)
        page = pos[p.offset:p.offset + p.limit]
        props = data.properties.iloc[page]
        cols = parse_properties(p.properties, data) or list(map(str, props.columns))
        rows = []
        for i, (_, r) in zip(data.ids[page], props.iterrows(), strict=True):  # one page only
            row = {c: r[c] for c in cols}
            row["_id"] = f'<a href="{esc(url)}/{quote(str(i), safe="")}?f=html">{esc(i)}</a>'
            rows.append(row)
        nav = []
        k = {kk: v for kk, v in keep.items() if kk != "f"}
        if p.offset > 0:
            nav.append(f'<a href="{esc(url)}?{esc(_query({**k, "f": "html", "limit": p.limit, "offset": max(0, p.offset - p.limit)}))}">previous</a>')
        if p.offset + p.limit < len(pos):
            nav.append(f'<a href="{esc(url)}?{esc(_query({**k, "f": "html", "limit": p.limit, "offset": p.offset + p.limit}))}">next</a>')
        gj = f'{esc(url)}?{esc(_query({**k, "f": "json", "limit": p.limit, "offset": p.offset}))}'
        body = (f"<p>Features {p.offset + 1 if len(page) else 0}–{p.offset + len(page)} of "
                f"{len(pos)}. {' · '.join(nav)} · <a href=\"{gj}\">GeoJSON</a></p>"
                + table_html(rows, ["_id", *cols]) + f"<p><small>{esc(attribution)}</small></p>")
        return html_page(f"{cid}: features", body, [
            (f"{base}/?f=html", "home"), (f"{base}/collections?f=html", "collections"),
            (f"{base}/collections/{quote(cid, safe='')}?f=html", cid)])

    @router.get(
        "/collections/{collectionId}/items/{featureId}",
        summary="One feature (GeoJSON, CRS84 unless crs says)",
        response_class=GeoJSONResponse,
        responses={200: {"description": "The feature.",
                         "content": {GEOJSON: {"schema": _F_SCHEMA}, **_HTML_OK}}, **_ERRORS},
    )
    def item(collectionId: str, featureId: str, request: Request,  # noqa: N803 - OGC name
             p: Annotated[FeatureParams, Depends()]) -> Response:
        check_params(request, feature_names)
        col = registry.get(collectionId)
        base = f"{_base(request)}/collections/{quote(collectionId, safe='')}"
        extra = json.dumps({
            "attribution": col.attribution,
            "links": [_link(f"{base}/items/{quote(featureId, safe='')}", "self", GEOJSON,
                            "this feature"),
                      _link(base, "collection", JSON, "the collection")],
        }, ensure_ascii=False)
        store = registry.store(collectionId)
        if store is not None and p.crs is None and not wants_html(request, p.f):
            # fids are canonical decimal integers: "007" is no id, as for the loaded layer
            fid = int(featureId) if featureId.isascii() and featureId.isdigit() and \
                str(int(featureId)) == featureId else None
            at = store.position(fid) if fid is not None else None
            if at is None:
                raise NotFound(f"feature '{featureId}' not found in collection "
                               f"'{collectionId}'")
            text = store.page(at, at + 1)
            return GeoJSONResponse(text[:-1] + b"," + extra[1:].encode(), headers=CRS_HEADER)
        data = registry.data(collectionId)
        crs = parse_crs(p.crs, "crs", crs_list(registry.summary(collectionId).storage_crs))
        at = data.position(featureId)
        if wants_html(request, p.f):
            r = data.properties.iloc[at]
            body = (table_html([{"property": k, "value": v} for k, v in r.items()],
                               ["property", "value"])
                    + f'<p><a href="{esc(base)}/items/{quote(featureId, safe="")}?f=json">'
                      f"GeoJSON</a></p><p><small>{esc(col.attribution)}</small></p>")
            root = _base(request)
            return html_page(f"{collectionId} {featureId}", body, [
                (f"{root}/?f=html", "home"), (f"{root}/collections?f=html", "collections"),
                (f"{base}?f=html", collectionId), (f"{base}/items?f=html", "items")])
        text = data.page_texts(np.array([at]), crs=crs)[0]
        return GeoJSONResponse((text[:-1] + "," + extra[1:]).encode(), headers=crs_header(crs))

    return router
