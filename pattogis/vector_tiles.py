"""Mapbox Vector Tiles of a served collection, in a morecantile tile matrix set.

A tile holds the features whose geometry intersects the tile (found with the loaded collection's
STRtree, or, for a layer with a feature store, by the stored CRS84 envelopes: then only those
features are read), reprojected to the matrix set's CRS, clipped to the
tile plus a small buffer, simplified to a quarter of a tile pixel (so nothing visible is lost) and
encoded by mapbox-vector-tile with the feature ids and every property. Tiles are computed on
request; an LRU cache keeps the recent ones per collection version.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Hashable
from datetime import date, datetime

import mapbox_vector_tile
import morecantile
import numpy as np
import pandas as pd
import pyproj
import shapely

from pattogis.collections import CRS84, CollectionData
from pattogis.errors import NotFound
from pattogis.feature_store import FeatureStore

#: Tile extent in integer units (the MVT default) and the buffer around a tile, in those units.
EXTENT = 4096
BUFFER = 64
#: Above this many features in a collection, tiles start at MIN_ZOOM_HEAVY (a zoomed-out tile of
#: every building of the province would be megabytes that draw as a grey smudge).
HEAVY_COUNT = 20_000
MIN_ZOOM_HEAVY = 13
MAX_ZOOM = 22
TILE_MATRIX_SETS = ("WebMercatorQuad",)


def tms(tms_id: str) -> morecantile.TileMatrixSet:
    if tms_id not in TILE_MATRIX_SETS:
        raise NotFound(f"tile matrix set '{tms_id}' not offered; use one of: "
                       f"{', '.join(TILE_MATRIX_SETS)}")
    return morecantile.tms.get(tms_id)


def min_zoom(data_count: int) -> int:
    """Lowest zoom at which a collection is tiled (0, or MIN_ZOOM_HEAVY for heavy layers)."""
    return MIN_ZOOM_HEAVY if data_count > HEAVY_COUNT else 0


def _value(v: object) -> object:
    """A property value as MVT takes it (no NaN, numpy scalars to Python, others as text)."""
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):  # as the GeoJSON pages write it: ISO 8601 UTC
        t = v.tz_localize("UTC") if v.tzinfo is None else v.tz_convert("UTC")
        return t.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(v, date | datetime):
        return v.isoformat()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, bool | int | float | str):
        return v
    return str(v)


def _empty(layer: str) -> bytes:
    return mapbox_vector_tile.encode([{"name": layer, "features": []}])


def _tile(z: int, x: int, y: int, tms_id: str) -> tuple[morecantile.TileMatrixSet,
                                                        morecantile.Tile]:
    matrix = tms(tms_id)
    if not (0 <= z <= MAX_ZOOM and 0 <= x < 2 ** z and 0 <= y < 2 ** z):
        raise NotFound(f"tile {z}/{y}/{x} is outside {tms_id} (zoom 0..{MAX_ZOOM}, row and "
                         f"column 0..2^zoom-1)")
    return matrix, morecantile.Tile(x, y, z)


def _padded(matrix: morecantile.TileMatrixSet, tile: morecantile.Tile
            ) -> tuple[float, float, float, float]:
    """The tile's CRS84 box with the MVT buffer around it."""
    west, south, east, north = matrix.bounds(tile)
    pad = (east - west) * BUFFER / EXTENT
    return west - pad, south - pad, east + pad, north + pad


def encode_tile(data: CollectionData, layer: str, z: int, x: int, y: int,
                tms_id: str = "WebMercatorQuad") -> bytes:
    """The MVT bytes of tile z/x/y (x column, y row from the top) of ``data``, one layer named
    ``layer``. Raises NotFound for a tile outside the matrix set; an empty tile (below the
    collection's minimum zoom, or with no feature) is valid and small."""
    matrix, tile = _tile(z, x, y, tms_id)
    if z < min_zoom(data.count) or data.count == 0:
        return _empty(layer)
    pos = data.tree.query(data.to_storage(shapely.box(*_padded(matrix, tile))),
                          predicate="intersects")
    pos = np.sort(pos)
    if not len(pos):
        return _empty(layer)
    props = data.properties.iloc[pos]
    cols = [str(c) for c in props.columns]
    rows = [{c: v for c, v in zip(cols, r, strict=True)} for r in props.to_numpy(dtype=object)]
    ids = [int(i) for i in data.ids[pos]] if data.numeric_ids else None
    return _encode(layer, matrix, tile, data.source_geometry[pos], data.storage_crs, rows, ids)


def encode_store_tile(store: FeatureStore, layer: str, z: int, x: int, y: int,
                      tms_id: str = "WebMercatorQuad") -> bytes:
    """:func:`encode_tile` from a layer's feature store: the features whose CRS84 envelope
    meets the tile (buffer included) are read and parsed, nothing else of the layer."""
    matrix, tile = _tile(z, x, y, tms_id)
    if z < min_zoom(store.count) or store.count == 0:
        return _empty(layer)
    pos = store.meeting(_padded(matrix, tile))
    if not len(pos):
        return _empty(layer)
    texts = store.each(pos)
    feats = json.loads(b"[" + b",".join(texts) + b"]")
    geoms = shapely.from_geojson(texts)  # a Feature's text gives its geometry
    ids = [f["id"] for f in feats]
    return _encode(layer, matrix, tile, geoms, CRS84, [f["properties"] for f in feats],
                   ids if all(isinstance(i, int) for i in ids) else None)


def _encode(layer: str, matrix: morecantile.TileMatrixSet, tile: morecantile.Tile,
            geoms: np.ndarray, crs: object, rows: list[dict], ids: list[int] | None) -> bytes:
    """Geometries (in ``crs``) to tile units, clipped with the buffer and simplified to a
    quarter pixel; one MVT feature each with its properties (None left out) and id."""
    xmin, ymin, xmax, ymax = matrix.xy_bounds(tile)
    size = xmax - xmin
    tr = pyproj.Transformer.from_crs(crs, matrix.crs._pyproj_crs, always_xy=True)

    def _to(xy: np.ndarray) -> np.ndarray:  # data CRS -> tile units (0..EXTENT, y up)
        a, b = tr.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([(a - xmin) / size * EXTENT, (b - ymin) / size * EXTENT])

    geoms = shapely.transform(np.asarray(geoms, dtype=object), _to)
    geoms = shapely.clip_by_rect(geoms, -BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER)
    geoms = shapely.simplify(geoms, EXTENT / 256 / 4, preserve_topology=True)  # 1/4 pixel
    keep = np.flatnonzero(~(shapely.is_empty(geoms) | shapely.is_missing(geoms)))
    features = []
    for k in keep:  # mapbox-vector-tile takes one dict per feature
        f: dict[str, object] = {
            "geometry": geoms[k],
            "properties": {c: v for c, v in ((c, _value(v)) for c, v in rows[k].items())
                           if v is not None},
        }
        if ids is not None:
            f["id"] = ids[k]
        features.append(f)
    return mapbox_vector_tile.encode(
        [{"name": layer, "features": features}],
        default_options={"extents": EXTENT, "y_coord_down": False})


class TileCache:
    """A bounded LRU of encoded tiles keyed by (collection, version, matrix set, z, x, y)."""

    def __init__(self, max_tiles: int = 2048) -> None:
        self.max_tiles = max_tiles
        self._tiles: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            tile = self._tiles.get(key)
            if tile is not None:
                self._tiles.move_to_end(key)
            return tile

    def put(self, key: Hashable, tile: bytes) -> None:
        with self._lock:
            self._tiles[key] = tile
            self._tiles.move_to_end(key)
            while len(self._tiles) > self.max_tiles:
                self._tiles.popitem(last=False)
