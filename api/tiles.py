"""OGC API - Tiles (vector tiles) over the collection registry.

``/tileMatrixSets`` and ``/tileMatrixSets/{id}`` describe the tile matrix sets (WebMercatorQuad,
from morecantile); ``/collections/{id}/tiles`` lists a collection's tilesets,
``/collections/{id}/tiles/{tms}`` describes one (with its tile URL template and zoom range) and
``/collections/{id}/tiles/{tms}/{z}/{y}/{x}`` answers a Mapbox Vector Tile
(``application/vnd.mapbox-vector-tile``) built by :mod:`pattogis.vector_tiles`.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Request, Response

from api.features import _ERRORS, JSON, check_params
from pattogis import vector_tiles
from pattogis.collections import CRS84_URI, CollectionRegistry

MVT = "application/vnd.mapbox-vector-tile"
_TILES = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
CONFORMANCE = [_TILES + "core", _TILES + "tileset", _TILES + "tilesets-list",
               _TILES + "geodata-tilesets", _TILES + "mvt",
               "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/oas30"]
REL_TILESETS = "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"
REL_TMS = "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes"


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def tiles_router(registry: CollectionRegistry, *, max_tiles: int = 2048) -> APIRouter:
    """The vector tile endpoints over ``registry``; encoded tiles are cached (LRU)."""
    router = APIRouter(tags=["OGC API - Tiles"])
    cache = vector_tiles.TileCache(max_tiles)

    @router.get("/tileMatrixSets", summary="The tile matrix sets", responses=_ERRORS)
    def matrix_sets(request: Request) -> dict[str, Any]:
        check_params(request, ())
        base = _base(request)
        return {"tileMatrixSets": [
            {"id": t, "title": t, "links": [{"href": f"{base}/tileMatrixSets/{t}",
                                             "rel": "self", "type": JSON}]}
            for t in vector_tiles.TILE_MATRIX_SETS]}

    @router.get("/tileMatrixSets/{tileMatrixSetId}", summary="One tile matrix set",
                responses=_ERRORS)
    def matrix_set(tileMatrixSetId: str, request: Request) -> dict[str, Any]:  # noqa: N803
        check_params(request, ())
        return vector_tiles.tms(tileMatrixSetId).model_dump(mode="json", exclude_none=True)

    def tileset_doc(cid: str, tms_id: str, base: str) -> dict[str, Any]:
        vector_tiles.tms(tms_id)
        s = registry.summary(cid)
        url = f"{base}/collections/{quote(cid, safe='')}/tiles/{tms_id}"
        return {
            "title": f"{registry.get(cid).title} ({tms_id})",
            "dataType": "vector",
            "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
            "tileMatrixSetURI": f"http://www.opengis.net/def/tilematrixset/OGC/1.0/{tms_id}",
            "tileMatrixSetLimits": [],
            "minzoom": vector_tiles.min_zoom(s.count),
            "maxzoom": vector_tiles.MAX_ZOOM,
            "boundingBox": {"lowerLeft": list(s.bbox[:2]), "upperRight": list(s.bbox[2:]),
                            "crs": CRS84_URI} if s.bbox else None,
            "layers": [{"id": cid, "dataType": "vector",
                        "geometryType": s.geometry_type.lower().removeprefix("multi")}],
            "attribution": registry.get(cid).attribution,
            "links": [
                {"href": url, "rel": "self", "type": JSON},
                {"href": f"{base}/tileMatrixSets/{tms_id}",
                 "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme", "type": JSON},
                {"href": url + "/{tileMatrix}/{tileRow}/{tileCol}", "rel": "item", "type": MVT,
                 "templated": True},
            ],
        }

    @router.get("/collections/{collectionId}/tiles", summary="Vector tilesets of a collection",
                responses=_ERRORS)
    def tilesets(collectionId: str, request: Request) -> dict[str, Any]:  # noqa: N803
        check_params(request, ())
        registry.get(collectionId)
        base = _base(request)
        return {"tilesets": [
            {k: v for k, v in tileset_doc(collectionId, t, base).items()
             if k in ("title", "dataType", "crs", "tileMatrixSetURI", "links")}
            for t in vector_tiles.TILE_MATRIX_SETS]}

    @router.get("/collections/{collectionId}/tiles/{tileMatrixSetId}",
                summary="A vector tileset (tile URL template, zoom range)", responses=_ERRORS)
    def tileset(collectionId: str, tileMatrixSetId: str,  # noqa: N803
                request: Request) -> dict[str, Any]:
        check_params(request, ())
        return tileset_doc(collectionId, tileMatrixSetId, _base(request))

    @router.get(
        "/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}",
        summary="A Mapbox Vector Tile of a collection",
        response_class=Response,
        responses={200: {"description": "The tile.", "content": {MVT: {"schema": {
            "type": "string", "format": "binary"}}}}, **_ERRORS},
    )
    def tile(collectionId: str, tileMatrixSetId: str,  # noqa: N803 - OGC names
             tileMatrix: Annotated[int, Path(ge=0, le=vector_tiles.MAX_ZOOM)],  # noqa: N803
             tileRow: Annotated[int, Path(ge=0)], tileCol: Annotated[int, Path(ge=0)],  # noqa: N803
             request: Request) -> Response:
        check_params(request, ())
        vector_tiles.tms(tileMatrixSetId)
        where = (tileMatrixSetId, tileMatrix, tileCol, tileRow)
        store = registry.store(collectionId)
        if store is not None:  # read from disk: the layer is not loaded for its tiles
            key = (collectionId, "store", store.version, *where)
            if (body := cache.get(key)) is None:
                body = vector_tiles.encode_store_tile(store, collectionId, tileMatrix, tileCol,
                                                      tileRow, tileMatrixSetId)
                cache.put(key, body)
        else:
            data = registry.data(collectionId)
            key = (collectionId, data.version, id(data), *where)
            if (body := cache.get(key)) is None:
                body = vector_tiles.encode_tile(data, collectionId, tileMatrix, tileCol,
                                                tileRow, tileMatrixSetId)
                cache.put(key, body)
        return Response(body, media_type=MVT, headers={"Cache-Control": "public, max-age=3600"})

    return router
