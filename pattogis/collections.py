"""Feature collections served by the API (OGC API - Features), and their in-memory cache.

A :class:`Collection` is an id, a title, a description, an attribution and a *provider*: a
callable returning a GeoDataFrame in the working CRS (EPSG:25832). The :class:`CollectionRegistry`
holds them: by default every vector layer of the built GeoPackage, plus whatever other modules
register (an analysis result is one ``registry.add(Collection(...))`` call).

Serving is read-only, so each collection is loaded once into a :class:`CollectionData`: geometries
reprojected to OGC:CRS84 (lon/lat) and rounded to 1e-7 degrees (about 1 cm), an STRtree on them,
and the GeoJSON text of every feature, so that a page of items is a string join, not a
serialisation. The cache is keyed by the collection's *version*: for GeoPackage layers the file's
(mtime, size, inode), so rebuilding the layer set invalidates it on the next request.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pyproj
import shapely

from pattogis.errors import ConfigError, MissingDataError, NotFound
from pattogis.feature_store import CATALOG, FeatureStore, Stores

CRS84 = "OGC:CRS84"
CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GREGORIAN_URI = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
#: Decimal places of lon/lat in served GeoJSON: 1e-7 degrees is about 1 cm, finer than any source.
COORD_DECIMALS = 7

Provider = Callable[[], gpd.GeoDataFrame]


@dataclass(frozen=True)
class Summary:
    """What a collection's metadata needs without loading its features.

    ``bbox`` is (minlon, minlat, maxlon, maxlat) in CRS84, None when the collection is empty;
    ``temporal`` is (start, end) as ISO 8601 strings, None without a datetime field.
    """

    count: int
    bbox: tuple[float, float, float, float] | None
    geometry_type: str
    temporal: tuple[str | None, str | None] | None = None
    #: (name, dtype) of each property, dtype as pandas/pyogrio name it ('int64', 'object'...)
    fields: tuple[tuple[str, str], ...] = ()
    #: the CRS the features are stored in ('EPSG:25832'), None when unknown
    storage_crs: str | None = None


@dataclass(frozen=True)
class Collection:
    """One collection: ``provider()`` returns a GeoDataFrame in EPSG:25832 (any CRS is accepted and
    reprojected, but it must carry one). Feature ids are the frame's index when it is unique.

    ``datetime_field`` names the column the ``datetime`` filter of the items endpoint uses
    (datetimes, dates or ISO 8601 strings); ``date_only`` says its values are whole days (inferred
    for date objects and 'YYYY-MM-DD' strings when None). ``version`` returns a value that changes
    when the data change (None: the data never change while registered). ``summary``, when given,
    answers the collection metadata cheaply without calling the provider.
    """

    id: str
    title: str
    provider: Provider
    description: str = ""
    attribution: str = ""
    licence: str = ""
    datetime_field: str | None = None
    date_only: bool | None = None
    version: Callable[[], Hashable] | None = None
    summary: Callable[[], Summary] | None = None
    keywords: tuple[str, ...] = ()
    #: ``page(offset, limit)`` reads features offset..offset+limit (in feature order) straight
    #: from the store, for requests that arrive while the collection is still being loaded
    page: Callable[[int, int], gpd.GeoDataFrame] | None = None
    #: ``read_properties()`` (fids as index) and ``read_geometry()`` (a GeoSeries, same index):
    #: when both are given the collection is loaded without its geometries, read on first use
    read_properties: Callable[[], pd.DataFrame] | None = None
    read_geometry: Callable[[], gpd.GeoSeries] | None = None


def _file_version(path: Path) -> tuple[str, int, int, int]:
    """Changes whenever the file is rewritten in place or replaced (os.replace gives a new inode)."""
    st = os.stat(path)
    return (str(path), st.st_mtime_ns, st.st_size, st.st_ino)


def _iso(t: pd.Timestamp | None) -> str | None:
    if t is None or pd.isna(t):
        return None
    return pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _bounds_to_crs84(bounds: tuple[float, float, float, float], crs: object) -> tuple[float, ...]:
    """Envelope of a projected box in CRS84, densified so curved edges stay inside it."""
    tr = pyproj.Transformer.from_crs(crs, CRS84, always_xy=True)
    return tuple(float(v) for v in tr.transform_bounds(*bounds, densify_pts=21))


def _to_utc(values: pd.Series, *, field: str, collection: str) -> tuple[pd.Series, bool]:
    """Parse a datetime column to UTC timestamps; also say whether its values are whole days."""
    s = values
    day = False
    if not pd.api.types.is_datetime64_any_dtype(s):
        non_null = s.dropna()
        # Whole days: date objects, or ISO dates without a time part.
        day = bool(len(non_null)) and bool(
            non_null.map(lambda v: type(v) is date).all()
            or non_null.astype(str).str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
        )
        try:
            s = pd.to_datetime(s.astype(object), utc=True, format="ISO8601")
        except (ValueError, TypeError) as e:
            raise ConfigError(
                f"collection '{collection}': datetime field '{field}' has values that are not "
                f"ISO 8601 dates or datetimes ({e})"
            ) from e
    elif s.dt.tz is None:
        s = s.dt.tz_localize("UTC")
    else:
        s = s.dt.tz_convert("UTC")
    return s.astype("datetime64[ns, UTC]"), day


class CollectionData:
    """A collection loaded for serving: CRS84 geometries, STRtree, GeoJSON text per feature.

    Positions (0..n-1) index every array; ``ids`` are the feature ids as strings.
    """

    def __init__(self, collection: Collection, gdf: gpd.GeoDataFrame | pd.DataFrame,
                 version: Hashable, *, geometry: Callable[[], gpd.GeoSeries] | None = None,
                 summary: Summary | None = None) -> None:
        """``gdf``: the features (a GeoDataFrame with its CRS); or, with ``geometry``, only
        their properties (fids as index), the geometries read by ``geometry()`` (a GeoSeries
        with the same index, in ``summary.storage_crs``) the first time something needs them:
        a property filter or a page from the feature store then never holds the geometries."""
        self.collection = collection
        self.version = version
        n = len(gdf)
        self.count = n
        self._read_geometry = geometry
        self._geom_lock = threading.Lock()
        self._tree: shapely.STRtree | None = None
        crs = summary.storage_crs if geometry is not None and summary is not None else \
            getattr(gdf, "crs", None)
        if crs is None:
            raise ConfigError(
                f"collection '{collection.id}': the provider returned a GeoDataFrame without a "
                "CRS; set it (EPSG:25832 for the working CRS) before registering"
            )
        #: the CRS the data are stored in (EPSG:25832 for the layer set)
        self.storage_crs = pyproj.CRS.from_user_input(crs)
        self._to84 = pyproj.Transformer.from_crs(self.storage_crs, CRS84, always_xy=True)
        self._from84 = pyproj.Transformer.from_crs(CRS84, self.storage_crs, always_xy=True)
        self._geometry84: np.ndarray | None = None
        if geometry is not None:
            if summary is None:
                raise ConfigError(f"collection '{collection.id}': geometries read later need "
                                  "the collection's summary (bbox, geometry type, CRS)")
            self._source: np.ndarray | None = None
            self.bbox = summary.bbox
            self.geometry_type = summary.geometry_type
            props = pd.DataFrame(gdf)
        else:
            geoms = np.asarray(gdf.geometry.values, dtype=object)
            self._source = geoms
            present = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms)
            if present.any():
                b = shapely.bounds(geoms[present])
                box = (float(np.nanmin(b[:, 0])), float(np.nanmin(b[:, 1])),
                       float(np.nanmax(b[:, 2])), float(np.nanmax(b[:, 3])))
                self.bbox: tuple[float, float, float, float] | None = tuple(  # type: ignore[assignment]
                    float(v) for v in self._to84.transform_bounds(*box, densify_pts=21))
            else:
                self.bbox = None
            types = pd.unique(shapely.get_type_id(geoms[present]))
            self.geometry_type = _geometry_type(types)
            props = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
        self._index = gdf.index

        index = gdf.index
        numeric_ids = pd.api.types.is_integer_dtype(index.dtype) and index.is_unique
        if not index.is_unique:  # fall back to 1-based positions, stable for a given frame
            index = pd.RangeIndex(1, n + 1)
            numeric_ids = True
        self.ids = np.asarray(index.astype(str), dtype=object)
        self._lookup = pd.Index(self.ids)

        # Temporal extent and filter arrays: each feature is the interval [t_start, t_end].
        self.t_start: np.ndarray | None = None
        self.t_end: np.ndarray | None = None
        self.temporal: tuple[str | None, str | None] | None = None
        fld = collection.datetime_field
        if fld is not None:
            if fld not in gdf.columns:
                raise ConfigError(
                    f"collection '{collection.id}': datetime field '{fld}' is not a column "
                    f"(columns: {', '.join(map(str, gdf.columns))})"
                )
            t, day = _to_utc(gdf[fld], field=fld, collection=collection.id)
            if collection.date_only is not None:
                day = collection.date_only
            start = t.to_numpy(dtype="datetime64[ns]")
            end = start + np.timedelta64(1, "D") - np.timedelta64(1, "ns") if day else start
            self.t_start, self.t_end = start, end
            self.temporal = (_iso(t.min()), _iso(t.max()))

        #: the properties (positions 0..n-1 as index): filters, sorting and property selection
        self.properties = props.reset_index(drop=True)
        self.fields = tuple((str(c), str(t)) for c, t in self.properties.dtypes.items())
        self.numeric_ids = numeric_ids
        self._frame: gpd.GeoDataFrame | None = None
        # GeoJSON text of each feature (CRS84, every property), made the first time a page
        # holds it: the first request after start costs one page, not the whole layer
        self.features = np.full(n, None, dtype=object)
        self._texts_lock = threading.Lock()

    @property
    def source_geometry(self) -> np.ndarray:
        """Every geometry in the storage CRS, unrounded (what a request in the storage CRS gets
        back exactly); read on first use when the collection was loaded without them."""
        if self._source is None:
            with self._geom_lock:
                if self._source is None and self._read_geometry is not None:
                    g = self._read_geometry()
                    if len(g) != self.count or not g.index.equals(self._index):
                        raise ConfigError(
                            f"collection '{self.collection.id}': the geometries read do not "
                            "match its features (the layer changed while loading); ask again")
                    self._source = np.asarray(g.values, dtype=object)
        return self._source  # type: ignore[return-value]

    @property
    def tree(self) -> shapely.STRtree:
        """STRtree of the stored geometries (built on first use: no reprojection of the layer;
        CRS84 geometries are made per page, and for the whole layer only when a CQL2 spatial
        filter in CRS84 needs them)."""
        if self._tree is None:
            geoms = self.source_geometry
            with self._geom_lock:
                if self._tree is None:
                    self._tree = shapely.STRtree(geoms)
        return self._tree

    @property
    def geometry(self) -> np.ndarray:
        """Every geometry in CRS84, rounded to COORD_DECIMALS (made on first use)."""
        if self._geometry84 is None:
            self._geometry84 = self._crs84(self.source_geometry)
        return self._geometry84

    def _crs84(self, geoms: np.ndarray) -> np.ndarray:
        def _reproject(xy: np.ndarray) -> np.ndarray:
            x, y = self._to84.transform(xy[:, 0], xy[:, 1])
            return np.round(np.column_stack([x, y]), COORD_DECIMALS)

        return shapely.transform(geoms, _reproject) if len(geoms) else geoms

    def to_storage(self, area: shapely.Geometry) -> shapely.Geometry:
        """A CRS84 polygon in the storage CRS, its edges densified first (1/100 of its size)
        so that straight lon/lat edges keep their course."""
        x0, y0, x1, y1 = shapely.bounds(area)
        fine = shapely.segmentize(area, max(x1 - x0, y1 - y0, 1e-9) / 100)

        def _to(xy: np.ndarray) -> np.ndarray:
            x, y = self._from84.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        return shapely.transform(fine, _to)

    def texts(self, pos: np.ndarray) -> np.ndarray:
        """GeoJSON text (CRS84, every property) of the features at ``pos``, from the memo or
        made now for the missing ones (vectorised over them) and kept."""
        out = self.features[pos]
        missing = np.flatnonzero(pd.isna(out))
        if len(missing):
            todo = pos[missing]
            made = self._build_texts(todo, None, self._crs84(self.source_geometry[todo]))
            with self._texts_lock:
                self.features[todo] = made
            out[missing] = made
        return out

    def frame(self, storage: bool = False) -> gpd.GeoDataFrame:
        """Properties with the CRS84 geometry (or the storage one) as column ``geometry``: what
        CQL2 filters are evaluated on (positions as index)."""
        if storage:
            return gpd.GeoDataFrame(self.properties, geometry=gpd.GeoSeries(
                self.source_geometry, crs=self.storage_crs), crs=self.storage_crs)
        if self._frame is None:
            self._frame = gpd.GeoDataFrame(self.properties, geometry=gpd.GeoSeries(
                self.geometry, crs=CRS84), crs=CRS84)
        return self._frame

    def sort(self, pos: np.ndarray, keys: list[tuple[str, bool]]) -> np.ndarray:
        """``pos`` ordered by properties (name, ascending) in turn; ties keep feature order,
        missing values last."""
        if not keys or not len(pos):
            return pos
        sub = self.properties.iloc[pos][[k for k, _ in keys]]
        order = sub.sort_values(by=[k for k, _ in keys], ascending=[a for _, a in keys],
                                kind="mergesort", na_position="last").index
        return np.asarray(order, dtype=np.int64)

    def page_texts(self, pos: np.ndarray, *, properties: list[str] | None = None,
                   crs: pyproj.CRS | None = None) -> np.ndarray:
        """GeoJSON text of the features at ``pos``: from the cache for CRS84 with every property,
        else built for this page only: ``properties`` (None: all) and geometries in ``crs``
        (None: CRS84; the storage CRS: the stored coordinates unrounded; another: reprojected in
        that CRS's axis order and rounded to 1e-7 degrees or 1 mm)."""
        if properties is None and crs is None:
            return self.texts(pos)
        n = len(pos)
        if n == 0:
            return np.empty(0, dtype=object)
        if crs is None:
            geoms = self._crs84(self.source_geometry[pos])
        elif crs == self.storage_crs:
            geoms = self.source_geometry[pos]
        else:
            tr = pyproj.Transformer.from_crs(self.storage_crs, crs)  # authority axis order
            digits = COORD_DECIMALS if crs.is_geographic else 3

            def _to(xy: np.ndarray) -> np.ndarray:
                a, b = tr.transform(xy[:, 0], xy[:, 1])
                return np.round(np.column_stack([a, b]), digits)

            geoms = shapely.transform(self.source_geometry[pos], _to)
        return self._build_texts(pos, properties, geoms)

    def _build_texts(self, pos: np.ndarray, properties: list[str] | None,
                     geoms: np.ndarray) -> np.ndarray:
        """GeoJSON texts of the features at ``pos`` with these geometries, column-wise."""
        n = len(pos)
        if n == 0:
            return np.empty(0, dtype=object)
        geom_json = pd.Series(shapely.to_geojson(geoms), dtype=object).fillna("null")
        props = self.properties.iloc[pos]
        if properties is not None:
            props = props[properties]
        prop_json = pd.Series("{", index=range(n), dtype=object)
        for k, c in enumerate(props.columns):
            key = ("," if k else "") + json.dumps(str(c), ensure_ascii=False) + ":"
            prop_json = prop_json + key + json_values(props[c]).to_numpy()
        prop_json = prop_json + "}"
        ids = pd.Series(self.ids[pos], dtype=object)
        if not self.numeric_ids:
            ids = ids.map(json.dumps)
        text = ('{"type":"Feature","id":' + ids + ',"geometry":' + geom_json
                + ',"properties":' + prop_json + "}")
        return text.to_numpy(dtype=object)

    def position(self, feature_id: str) -> int:
        """Position of a feature id; raises NotFound."""
        pos = self._lookup.get_indexer([feature_id])[0]
        if pos < 0:
            raise NotFound(f"feature '{feature_id}' not found in collection '{self.collection.id}'")
        return int(pos)

    def select(
        self,
        bbox: tuple[float, float, float, float] | None = None,
        interval: tuple[np.datetime64 | None, np.datetime64 | None] | None = None,
        *,
        region: shapely.Geometry | None = None,
        mask: np.ndarray | None = None,
    ) -> np.ndarray:
        """Sorted positions of the features intersecting ``bbox`` (CRS84, minlon > maxlon crosses
        the antimeridian) or ``region`` (a CRS84 polygon: a box given in another CRS, densified),
        within the closed time ``interval`` (UTC, None = open end; ignored when the collection
        has no datetime field) and true in the boolean ``mask`` (one value per feature)."""
        if bbox is None and region is None:
            pos = np.arange(self.count)
        else:
            if region is not None:
                boxes = [region]
            else:
                x0, y0, x1, y1 = bbox  # type: ignore[misc]
                boxes = [shapely.box(x0, y0, x1, y1)] if x0 <= x1 else [
                    shapely.box(x0, y0, 180.0, y1), shapely.box(-180.0, y0, x1, y1)]
            # the index is in the storage CRS: the area goes there (densified), not the data;
            # first cut to the data's extent (a box reaching the antimeridian has no place in
            # a UTM zone, and nothing outside the extent can match)
            hits = []
            if self.bbox is not None:
                e0, f0, e1, f1 = self.bbox
                pad = max(e1 - e0, f1 - f0, 1e-6) * 0.01
                extent = shapely.box(e0 - pad, f0 - pad, e1 + pad, f1 + pad)
                for b in boxes:
                    cut = shapely.intersection(b, extent)
                    if not cut.is_empty and cut.area > 0:
                        hits.append(self.tree.query(self.to_storage(cut), predicate="intersects"))
                    elif not cut.is_empty:  # a degenerate box (a line or a point)
                        hits.append(self.tree.query(self.to_storage(cut.buffer(1e-9)),
                                                    predicate="intersects"))
            pos = np.unique(np.concatenate(hits)) if hits else np.arange(0)
        if interval is not None and self.t_start is not None:
            lo, hi = interval
            keep = ~np.isnat(self.t_start[pos])
            if hi is not None:
                keep &= self.t_start[pos] <= hi
            if lo is not None:
                keep &= self.t_end[pos] >= lo
            pos = pos[keep]
        if mask is not None:
            pos = pos[np.asarray(mask, dtype=bool)[pos]]
        return pos

    def summary(self) -> Summary:
        auth = self.storage_crs.to_authority()
        crs = f"{auth[0]}:{auth[1]}" if auth else self.storage_crs.to_string()
        return Summary(self.count, self.bbox, self.geometry_type, self.temporal, self.fields,
                       crs)


def json_values(col: pd.Series) -> pd.Series:
    """JSON text of each value of a column, vectorised by dtype: floats in their shortest exact
    form (numpy's repr), NaN/inf/None as null, datetimes as ISO 8601 UTC strings ending in Z."""
    values = col.to_numpy()
    n = len(values)
    missing = np.array(pd.isna(col), dtype=bool)  # a copy: updated below
    if pd.api.types.is_bool_dtype(col):
        flags = col.fillna(False).to_numpy(dtype=bool) if missing.any() else values.astype(bool)
        out = np.where(flags, "true", "false").astype(object)
    elif pd.api.types.is_integer_dtype(col):
        out = col.astype(str).to_numpy(dtype=object)
    elif pd.api.types.is_float_dtype(col):
        arr = col.to_numpy(dtype=col.dtype.numpy_dtype if hasattr(col.dtype, "numpy_dtype")
                           else col.dtype, na_value=np.nan)
        out = arr.astype(str).astype(object)
        missing |= ~np.isfinite(arr)
    elif pd.api.types.is_datetime64_any_dtype(col):
        utc = col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
        out = ('"' + utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ") + '"').to_numpy(dtype=object)
    else:
        def one(v: object) -> str:
            if isinstance(v, date | datetime):
                v = v.isoformat()
            return json.dumps(v, ensure_ascii=False, default=str)

        out = np.array([one(v) for v in values], dtype=object) if n else np.empty(0, object)
    out[missing] = "null"
    return pd.Series(out, index=range(n), dtype=object)


def json_schema_type(dtype: str) -> dict[str, str]:
    """JSON Schema of a property from its pandas/pyogrio dtype name, exact about integer width
    (GDAL's OAPIF driver reads ``format: int64`` as a 64-bit field) and dates."""
    d = dtype.lower()
    if d in ("bool", "boolean"):
        return {"type": "boolean"}
    if d.startswith(("int", "uint")):
        bits = "".join(ch for ch in d if ch.isdigit()) or "64"
        return {"type": "integer", "format": "int64" if int(bits) > 32 else "int32"}
    if d.startswith("float"):
        return {"type": "number", "format": "double" if d.endswith("64") else "float"}
    if d.startswith("datetime64"):
        return {"type": "string", "format": "date-time"}
    if d == "date":
        return {"type": "string", "format": "date"}
    return {"type": "string"}


_GEOMETRY_FORMATS = {"Point": "geometry-point", "LineString": "geometry-linestring",
                     "Polygon": "geometry-polygon", "MultiPoint": "geometry-multipoint",
                     "MultiLineString": "geometry-multilinestring",
                     "MultiPolygon": "geometry-multipolygon"}


def geometry_format(geometry_type: str) -> str:
    """The OGC JSON Schema format of a geometry type ('geometry-any' when mixed)."""
    return _GEOMETRY_FORMATS.get(geometry_type.removesuffix(" Z"), "geometry-any")


_TYPE_NAMES = {0: "Point", 1: "LineString", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
               6: "MultiPolygon", 7: "GeometryCollection"}


def _geometry_type(type_ids: np.ndarray) -> str:
    """One OGC geometry type name for a set of shapely type ids ('Geometry' when mixed)."""
    names = {_TYPE_NAMES.get(int(t), "Geometry") for t in type_ids}
    if len(names) == 1:
        return names.pop()
    if names and all(n.removeprefix("Multi") == next(iter(names)).removeprefix("Multi")
                     for n in names):
        return "Multi" + next(iter(names)).removeprefix("Multi")
    return "Geometry" if names else "Unknown"


@dataclass
class _Entry:
    data: CollectionData | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def current(self, col: Collection, version: Any) -> CollectionData | None:
        """The cached data when it is of this collection object at this version, else None."""
        d = self.data
        return d if d is not None and d.version == version and d.collection is col else None


class CollectionRegistry:
    """Collections by id: the vector layers of a GeoPackage (when ``include_layers``) plus the
    collections added with :meth:`add`, which take precedence over a layer of the same id.

    ``gpkg`` is the GeoPackage path, or None for the built layer set (``pattogis.layers``,
    resolved on every call, so ``$PATTOGIS_LAYERS_DIR`` is honoured). Thread-safe: a collection
    is loaded once even when requested by several threads at the same time.
    """

    def __init__(self, *, include_layers: bool = True, gpkg: str | Path | None = None) -> None:
        self.include_layers = include_layers
        self._gpkg = Path(gpkg) if gpkg is not None else None
        self._extra: dict[str, Collection] = {}
        self._layer_cols: dict[str, Collection] = {}
        self._layer_version: Hashable = None
        self._entries: dict[str, _Entry] = {}
        self._summaries: dict[str, tuple[Collection, Hashable, Summary]] = {}
        self._stores = Stores()
        self._lock = threading.Lock()

    @property
    def serves_built_layers(self) -> bool:
        """True when this registry serves the built layer set (not another GeoPackage), so
        analyses of that layer set belong in it."""
        return self.include_layers and self._gpkg is None

    # -- registration -------------------------------------------------------------------------
    def add(self, collection: Collection) -> None:
        """Register (or replace) a collection; its cached data are dropped."""
        with self._lock:
            self._extra[collection.id] = collection
            self._entries.pop(collection.id, None)

    def remove(self, collection_id: str) -> None:
        with self._lock:
            self._extra.pop(collection_id, None)
            self._entries.pop(collection_id, None)

    def clear_cache(self) -> None:
        with self._lock:
            self._entries.clear()

    # -- lookup -------------------------------------------------------------------------------
    def gpkg_path(self) -> Path:
        if self._gpkg is not None:
            return self._gpkg
        from pattogis import layers  # resolved per call: the env var may change between runs

        return layers.gpkg_path()

    def _layers(self) -> dict[str, Collection]:
        """The GeoPackage's vector layers, re-listed when the file changes."""
        if not self.include_layers:
            return {}
        path = self.gpkg_path()
        if not path.exists():
            raise MissingDataError(f"layer set not built at {path}: run `pattogis data build`")
        version = _file_version(path)
        with self._lock:
            if version != self._layer_version:
                self._layer_cols = _gpkg_collections(path)
                self._layer_version = version
            return self._layer_cols

    def ids(self) -> list[str]:
        """Collection ids: GeoPackage layers in file order, then the added ones."""
        layer_ids = list(self._layers())
        return layer_ids + [i for i in self._extra if i not in layer_ids]

    def __iter__(self) -> Iterator[Collection]:
        return (self.get(i) for i in self.ids())

    def __contains__(self, collection_id: object) -> bool:
        return isinstance(collection_id, str) and collection_id in self.ids()

    def get(self, collection_id: str) -> Collection:
        """The collection with this id; raises NotFound naming the known ids."""
        if collection_id in self._extra:
            return self._extra[collection_id]
        cols = self._layers()
        if collection_id in cols:
            return cols[collection_id]
        raise NotFound(
            f"collection '{collection_id}' not found; known collections: {', '.join(self.ids())}"
        )

    def data(self, collection_id: str) -> CollectionData:
        """The collection loaded for serving, from the cache unless its version changed."""
        col = self.get(collection_id)
        version = col.version() if col.version is not None else None
        with self._lock:
            entry = self._entries.setdefault(collection_id, _Entry())
        if (cached := entry.current(col, version)) is not None:
            return cached
        with entry.lock:  # one loader per collection; others wait for its result
            if (cached := entry.current(col, version)) is not None:
                return cached
            if col.read_properties is not None and col.read_geometry is not None \
                    and col.summary is not None:
                data = CollectionData(col, col.read_properties(), version,
                                      geometry=col.read_geometry, summary=col.summary())
            else:
                data = CollectionData(col, col.provider(), version)
            entry.data = data
            return data

    def loaded(self, collection_id: str) -> CollectionData | None:
        """The collection if it is loaded (current version) and can be served at once; else
        None, after starting its load in a background thread. Only for collections that can
        read a page straight from their store (``Collection.page``); the others are loaded now
        (:meth:`data`)."""
        col = self.get(collection_id)
        if col.page is None:
            return self.data(collection_id)
        version = col.version() if col.version is not None else None
        with self._lock:
            entry = self._entries.setdefault(collection_id, _Entry())
        if (cached := entry.current(col, version)) is not None:
            return cached
        if not entry.lock.locked():
            def _load() -> None:
                with contextlib.suppress(Exception):  # the next request that loads it says why
                    self.data(collection_id)

            threading.Thread(target=_load, name=f"pattogis-load-{collection_id}",
                             daemon=True).start()
        return None

    def store(self, collection_id: str) -> FeatureStore | None:
        """The on-disk feature store of a GeoPackage layer (:mod:`pattogis.feature_store`) when
        the build made one for this very file; None for added collections, layers without one,
        or a GeoPackage changed since. Pages served from it need none of the layer in memory."""
        if collection_id in self._extra or not self.include_layers:
            return None
        self.get(collection_id)  # NotFound for an unknown id
        return self._stores.get(self.gpkg_path(), collection_id)

    def cold_page(self, collection_id: str, offset: int, limit: int) -> CollectionData:
        """Features offset..offset+limit read straight from the store, as a small
        CollectionData (positions 0..n-1 are the page's)."""
        col = self.get(collection_id)
        if col.page is None:
            raise ConfigError(f"collection '{collection_id}' cannot read pages from its store")
        version = col.version() if col.version is not None else None
        return CollectionData(col, col.page(offset, limit), version)

    def cheap_summary(self, collection_id: str) -> Summary | None:
        """The summary when it costs no computation (loaded, or the collection's own cheap
        ``summary``); None for a collection that would have to be computed first (the analysis
        results), so that a listing of every collection stays fast."""
        col = self.get(collection_id)
        if col.summary is not None:
            return self.summary(collection_id)
        entry = self._entries.get(collection_id)
        data = entry.current(col, col.version() if col.version is not None else None) \
            if entry is not None else None
        return data.summary() if data is not None else None

    def summary(self, collection_id: str) -> Summary:
        """Count, CRS84 bbox, geometry type, temporal extent: from the cache when loaded, else
        from the collection's cheap ``summary`` (GeoPackage metadata), else by loading it."""
        col = self.get(collection_id)
        entry = self._entries.get(collection_id)
        version = col.version() if col.version is not None else None
        if entry is not None and (data := entry.current(col, version)) is not None:
            return data.summary()
        if col.summary is not None:
            known = self._summaries.get(collection_id)
            if known is not None and known[0] is col and known[1] == version:
                return known[2]
            s = col.summary()
            self._summaries[collection_id] = (col, version, s)
            return s
        return self.data(collection_id).summary()

    def warm(self) -> None:
        """Load every collection (filters, sorting and other CRS are then answered at once) and
        make the GeoJSON text of every feature of those without a feature store (e.g. in a
        background thread at server start): more memory for faster first requests."""
        for cid in self.ids():
            data = self.data(cid)
            if self.store(cid) is not None:
                continue  # its pages and tiles are read from the feature store on disk
            for start in range(0, data.count, 20_000):
                data.texts(np.arange(start, min(start + 20_000, data.count)))


def _gpkg_collections(path: Path) -> dict[str, Collection]:
    """One Collection per vector layer of the GeoPackage, described from its layer_catalog."""
    listed = pyogrio.list_layers(path)
    names = [str(n) for n, gtype in listed if gtype is not None and n != CATALOG]
    catalog: dict[str, dict] = {}
    if CATALOG in {str(n) for n, _ in listed}:
        cat = pyogrio.read_dataframe(path, layer=CATALOG, read_geometry=False)
        catalog = {str(r["name"]): r for r in cat.to_dict("records")}
    out: dict[str, Collection] = {}
    for name in names:
        info = pyogrio.read_info(path, layer=name)
        dt_fields = [f for f, t in zip(info["fields"], info["ogr_types"], strict=True)
                     if t in ("OFTDate", "OFTDateTime")]
        dt_field = str(dt_fields[0]) if dt_fields else None
        date_only = None
        if dt_field is not None:
            date_only = info["ogr_types"][list(info["fields"]).index(dt_field)] == "OFTDate"
        row = catalog.get(name, {})
        description = " ".join(
            str(x) for x in (
                row.get("notes"),
                f"Source: {row['source']}." if row.get("source") else None,
                f"Provenance: {row['provenance']}." if row.get("provenance") else None,
            ) if x and str(x) != "nan"
        )
        out[name] = Collection(
            id=name,
            title=name.replace("_", " ").capitalize(),
            description=description or f"Layer '{name}' of {path.name}",
            attribution=str(row.get("attribution") or ""),
            licence=str(row.get("licence") or ""),
            provider=_gpkg_provider(path, name),
            page=_gpkg_page(path, name),
            read_properties=_gpkg_properties(path, name),
            read_geometry=_gpkg_geometry(path, name),
            datetime_field=dt_field,
            date_only=date_only,
            version=lambda p=path: _file_version(p),
            summary=_gpkg_summary(path, name, dt_field),
        )
    return out


def _gpkg_provider(path: Path, layer: str) -> Provider:
    def provider() -> gpd.GeoDataFrame:
        # fid as index: the GeoPackage feature id is the stable OGC feature id.
        return pyogrio.read_dataframe(path, layer=layer, fid_as_index=True, use_arrow=True)

    return provider


def _gpkg_properties(path: Path, layer: str) -> Callable[[], pd.DataFrame]:
    def read() -> pd.DataFrame:
        return pd.DataFrame(pyogrio.read_dataframe(path, layer=layer, fid_as_index=True,
                                                   use_arrow=True, read_geometry=False))

    return read


def _gpkg_geometry(path: Path, layer: str) -> Callable[[], gpd.GeoSeries]:
    def read() -> gpd.GeoSeries:
        return pyogrio.read_dataframe(path, layer=layer, fid_as_index=True, use_arrow=True,
                                      columns=[]).geometry

    return read


def _gpkg_page(path: Path, layer: str) -> Callable[[int, int], gpd.GeoDataFrame]:
    def page(offset: int, limit: int) -> gpd.GeoDataFrame:
        # fid order, the order of the loaded collection: paging is the same cold or warm
        # (without arrow: its reader scans the skipped features, GDAL's does not)
        return pyogrio.read_dataframe(path, layer=layer, fid_as_index=True, use_arrow=False,
                                      skip_features=offset, max_features=limit)

    return page


def _gpkg_summary(path: Path, layer: str, dt_field: str | None) -> Callable[[], Summary]:
    def summary() -> Summary:
        info = pyogrio.read_info(path, layer=layer)
        n = int(info["features"])
        bbox = None
        if n and info["total_bounds"] is not None and np.all(np.isfinite(info["total_bounds"])):
            bbox = _bounds_to_crs84(tuple(info["total_bounds"]), info["crs"])
        temporal = None
        if dt_field is not None:
            df = pyogrio.read_dataframe(path, layer=layer, columns=[dt_field], read_geometry=False)
            t, _ = _to_utc(df[dt_field], field=dt_field, collection=layer)
            temporal = (_iso(t.min()), _iso(t.max()))
        fields = tuple((str(f), "date" if o == "OFTDate" else str(t)) for f, t, o in zip(
            info["fields"], info["dtypes"], info["ogr_types"], strict=True))
        crs = pyproj.CRS.from_user_input(info["crs"]).to_authority() if info["crs"] else None
        return Summary(n, bbox, str(info["geometry_type"]), temporal, fields,
                       f"{crs[0]}:{crs[1]}" if crs else None)

    return summary


def encode_features(gdf: gpd.GeoDataFrame, chunk: int = 20_000,
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The GeoJSON text of each feature as the API serves it (CRS84, rounded, every property;
    ids from the index) and its CRS84 envelope, ``chunk`` features at a time: what
    :func:`pattogis.feature_store.write_stores` stores."""
    col = Collection(id="_", title="_", provider=lambda: gdf)
    data = CollectionData(col, gdf, None)
    for a in range(0, data.count, chunk):
        pos = np.arange(a, min(a + chunk, data.count))
        g84 = data._crs84(data.source_geometry[pos])
        env = shapely.bounds(g84)  # NaN for missing and empty geometries
        yield data._build_texts(pos, None, g84), env


#: The default registry: the built layer set plus what other modules register.
registry = CollectionRegistry()


def register(collection: Collection) -> None:
    """Add a collection to the default registry (what the API serves by default)."""
    registry.add(collection)


def utc_now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

