"""Zonal statistics with exact pixel coverage: a thin, fast wrapper over exactextract.

:func:`zonal_stats` returns, per polygon and per raster, the coverage-weighted ``mean``, the
``min`` and ``max`` of the cells the polygon touches (any coverage > 0), and ``coverage``: the
share (0..1) of the polygon's area lying on valid cells (inside the raster and not nodata). Cell
values are weighted by the exact fraction of each cell the polygon covers (exactextract), so a
polygon cutting a cell in half gives that cell half the weight.

What makes it faster than calling ``exactextract.exact_extract(path, gdf, ...)`` directly, with
the same numbers:

* polygons are passed to exactextract as WKB (no GeoJSON text per feature) and results are
  written straight into NumPy arrays (no per-feature dicts);
* pixels are read once per tile of nearby polygons (a window of at most about
  ``(2 * tile_cells)**2`` cells per raster), not once per polygon, so compressed blocks are not
  decompressed again for every polygon that touches them, GDAL decodes the blocks of a window on
  all cores (``GDAL_NUM_THREADS``), and the window goes to exactextract as a plain array with its
  nodata value (a masked array costs a copy of the mask on every polygon); memory stays bounded;
* rasters on the **same grid** (same CRS, transform and size; e.g. the DEM and the slope derived
  from it) go through one exactextract pass, which computes each polygon's coverage fractions
  once and applies them to all of them. ``benchmarks/bench_zonal.py`` measures the gain.

Polygons are reprojected to each raster's CRS when they differ. Missing values are NaN with a
machine reason per polygon and raster: ``outside_extent`` (the polygon does not touch the
raster), ``nodata`` (it does, but only nodata cells), ``low_coverage`` (valid cells cover less
than ``min_coverage`` of it; the statistics are then withheld) or ``empty_geometry``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from exactextract import exact_extract
from exactextract.feature import Feature, FeatureSource
from exactextract.operation import Operation
from exactextract.raster import NumPyRasterSource, RasterioRasterSource
from exactextract.writer import Writer
from pyproj import CRS

from pattogis.errors import InputError, MissingDataError

if TYPE_CHECKING:  # rasterio is imported where used: the API starts without it
    import rasterio
    from rasterio.windows import Window

STATS = ("mean", "min", "max", "coverage")
OUTSIDE_EXTENT = "outside_extent"
NODATA = "nodata"
LOW_COVERAGE = "low_coverage"
EMPTY_GEOMETRY = "empty_geometry"
_FID = "__fid"


# --- exactextract plumbing: WKB features in, NumPy arrays out -----------------------------------


class _WKBFeature(Feature):
    def __init__(self, fid: int, wkb: bytes) -> None:
        Feature.__init__(self)
        self.fid = fid
        self.wkb = wkb

    def geometry(self) -> bytes:
        return self.wkb

    def set_geometry_format(self) -> str:
        return "wkb"

    def get(self, name: str) -> int:
        return self.fid

    def fields(self) -> list[str]:
        return [_FID]

    def set(self, name: str, value: Any) -> None:  # input features are read-only
        pass


class _WKBSource(FeatureSource):
    def __init__(self, fids: np.ndarray, wkb: np.ndarray, srs_wkt: str | None) -> None:
        super().__init__()
        self.fids = fids.tolist()
        self.wkb = wkb
        self.wkt = srs_wkt

    def count(self) -> int:
        return len(self.fids)

    def __iter__(self):  # noqa: ANN204 (a generator of features for the C++ side)
        for fid, w in zip(self.fids, self.wkb, strict=True):
            yield _WKBFeature(fid, w)

    def srs_wkt(self) -> str | None:
        return self.wkt


class _Sink(Feature):
    """Receives the values of one result feature (exactextract copies them in)."""

    def __init__(self) -> None:
        Feature.__init__(self)
        self.values: dict[str, Any] = {}

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value

    def set_geometry(self, geom: Any) -> None:
        pass

    def set_geometry_format(self) -> str:
        return "wkb"


class _ArrayWriter(Writer):
    """Gathers the result fields of every feature, then writes them into preallocated float
    arrays at the features' positions (:meth:`flush`).

    One sink is reused and the values are scattered with NumPy once at the end: per feature,
    only exactextract's ``copy_to`` runs in Python (a new sink and per-value array stores cost
    about 1 s per 100,000 polygons).
    """

    def __init__(self, out: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.out = out
        self.sink = _Sink()
        self.rows: list[dict[str, Any]] = []

    def add_operation(self, op: Any) -> None:
        pass

    def add_column(self, col_name: str) -> None:
        pass

    def add_geometry(self) -> None:
        pass

    def write(self, feature: Any) -> None:
        self.sink.values = {}
        feature.copy_to(self.sink)
        self.rows.append(self.sink.values)

    def flush(self) -> None:
        """Write the gathered values; a field exactextract left unset stays NaN."""
        rows, self.rows = self.rows, []
        if not rows:
            return
        fid = np.fromiter((r[_FID] for r in rows), dtype="int64", count=len(rows))
        for k, arr in self.out.items():
            # None (field not set) becomes NaN, the arrays' initial value.
            arr[fid] = np.array([r.get(k) for r in rows], dtype="float64")

    def features(self) -> None:
        return None


# --- grids ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    crs_wkt: str
    transform: tuple[float, ...]
    width: int
    height: int

    @property
    def left(self) -> float:
        return self.transform[2]

    @property
    def top(self) -> float:
        return self.transform[5]

    @property
    def rx(self) -> float:
        return self.transform[0]

    @property
    def ry(self) -> float:
        return -self.transform[4]


def _grid_of(ds: rasterio.DatasetReader, path: str) -> _Grid:
    t = ds.transform
    if t.b != 0 or t.d != 0:
        raise InputError("rotated rasters are not supported", file=path)
    if t.a <= 0 or t.e >= 0:
        raise InputError("raster must be north-up with positive cell size", file=path)
    if ds.crs is None:
        raise InputError("raster has no CRS", file=path)
    return _Grid(ds.crs.to_wkt(), tuple(t)[:6], ds.width, ds.height)


def _raster_specs(rasters: str | os.PathLike | Mapping[str, str | os.PathLike]
                  ) -> tuple[list[tuple[str, str]], bool]:
    if isinstance(rasters, (str, os.PathLike)):
        return [("", str(rasters))], True
    if not isinstance(rasters, Mapping) or not rasters:
        raise InputError("rasters must be a path or a non-empty mapping name -> path")
    return [(str(k), str(v)) for k, v in rasters.items()], False


def _polygons(polygons: gpd.GeoSeries | gpd.GeoDataFrame) -> gpd.GeoSeries:
    gs = polygons.geometry if isinstance(polygons, gpd.GeoDataFrame) else polygons
    if not isinstance(gs, gpd.GeoSeries):
        raise InputError("polygons must be a GeoSeries or GeoDataFrame")
    if gs.crs is None:
        raise InputError("polygons have no CRS; set it before computing zonal statistics",
                         field="geometry")
    kinds = shapely.get_type_id(gs.to_numpy())
    bad = ~np.isin(kinds, [3, 6, -1]) & ~shapely.is_empty(gs.to_numpy())
    if bad.any():
        raise InputError("zonal statistics need Polygon or MultiPolygon geometries",
                         rows=np.flatnonzero(bad).tolist(), field="geometry")
    return gs


# --- main entry ------------------------------------------------------------------------------------


def zonal_stats(polygons: gpd.GeoSeries | gpd.GeoDataFrame,
                rasters: str | os.PathLike | Mapping[str, str | os.PathLike], *,
                min_coverage: float | Mapping[str, float] = 0.0,
                tile_cells: int = 2048, threads: int | str = "ALL_CPUS") -> pd.DataFrame:
    """Exact-coverage zonal statistics of one or several single-band rasters.

    ``rasters`` is a path (columns ``mean``, ``min``, ``max``, ``coverage``, ``reason``) or a
    mapping name -> path (columns ``<name>_mean`` ... ``<name>_reason``). Values are in the
    raster's unit; ``coverage`` is a share of the polygon's area (0..1) measured in the raster's
    CRS. ``min_coverage`` (one value, or one per raster name) withholds the statistics of
    polygons whose valid cells cover less than that share (reason ``low_coverage``).
    ``tile_cells`` bounds the pixel window read at once (about ``(2 * tile_cells)**2`` cells);
    ``threads`` is GDAL_NUM_THREADS for decoding compressed blocks of a window in parallel.
    The result has the index of ``polygons``.
    """
    import rasterio

    gs = _polygons(polygons)
    specs, single = _raster_specs(rasters)
    n = len(gs)
    cols: dict[str, np.ndarray] = {}
    reasons: dict[str, np.ndarray] = {}
    # Datasets are opened inside the Env so GDAL decodes the blocks of a window in parallel.
    with rasterio.Env(GDAL_NUM_THREADS=str(threads)), contextlib.ExitStack() as stack:
        groups: dict[_Grid, list[tuple[str, rasterio.DatasetReader]]] = {}
        for name, path in specs:
            if not Path(path).exists():
                raise MissingDataError(f"raster '{name or path}' not found at {path}")
            ds = stack.enter_context(rasterio.open(path))
            if ds.count != 1:
                raise InputError(f"raster has {ds.count} bands; one band is expected", file=path)
            groups.setdefault(_grid_of(ds, path), []).append((name, ds))
        for grid, members in groups.items():
            res = _extract_grid(gs, grid, members, tile_cells=tile_cells)
            for name, (mean, mn, mx, cov, why) in res.items():
                mc = (min_coverage.get(name, 0.0) if isinstance(min_coverage, Mapping)
                      else float(min_coverage))
                low = (why == None) & (cov < mc)  # noqa: E711 (elementwise on an object array)
                why = np.where(low, LOW_COVERAGE, why)
                for a in (mean, mn, mx):
                    a[low] = np.nan
                prefix = "" if single else f"{name}_"
                cols[prefix + "mean"], cols[prefix + "min"], cols[prefix + "max"] = mean, mn, mx
                cols[prefix + "coverage"] = cov
                reasons[prefix + "reason"] = why
    out = pd.DataFrame(index=gs.index)
    for name, _ in specs:
        prefix = "" if single else f"{name}_"
        for s in STATS:
            out[prefix + s] = cols[prefix + s] if n else np.empty(0)
        out[prefix + "reason"] = pd.Series(reasons[prefix + "reason"], index=gs.index,
                                           dtype=object) if n else pd.Series([], dtype=object)
    return out


def _extract_grid(gs: gpd.GeoSeries, grid: _Grid,
                  members: list[tuple[str, rasterio.DatasetReader]], *, tile_cells: int
                  ) -> dict[str, tuple[np.ndarray, ...]]:
    """Statistics of every raster of one grid: one exactextract pass per tile of polygons."""
    from rasterio.windows import Window

    n = len(gs)
    # Compare CRS objects, not WKT text: the same CRS written differently (EPSG:25832 and a
    # GeoTIFF's WKT) would otherwise cost a no-op reprojection of every polygon.
    g = gs if gs.crs == CRS.from_wkt(grid.crs_wkt) else gs.to_crs(grid.crs_wkt)
    geoms = g.to_numpy()
    arrays = {name: {k: np.full(n, np.nan) for k in ("mean", "min", "max", "count")}
              for name, _ in members}
    extent = shapely.box(grid.left, grid.top - grid.height * grid.ry,
                         grid.left + grid.width * grid.rx, grid.top)
    empty = shapely.is_empty(geoms) | shapely.is_missing(geoms)
    touches = ~empty & shapely.intersects(geoms, extent)
    idx = np.flatnonzero(touches)
    if idx.size:
        b = shapely.bounds(geoms[idx])
        c0 = np.floor((b[:, 0] - grid.left) / grid.rx).clip(0, grid.width).astype("int64")
        c1 = np.ceil((b[:, 2] - grid.left) / grid.rx).clip(0, grid.width).astype("int64")
        r0 = np.floor((grid.top - b[:, 3]) / grid.ry).clip(0, grid.height).astype("int64")
        r1 = np.ceil((grid.top - b[:, 1]) / grid.ry).clip(0, grid.height).astype("int64")
        # A polygon that lies on a cell edge can give an empty window: widen by one cell.
        c1 = np.maximum(c1, np.minimum(c0 + 1, grid.width))
        r1 = np.maximum(r1, np.minimum(r0 + 1, grid.height))
        wkb = shapely.to_wkb(geoms[idx])
        big = ((c1 - c0) > tile_cells) | ((r1 - r0) > tile_cells)
        # Polygons larger than a tile: exactextract reads their pixels itself, in pieces.
        if big.any():
            sel = np.flatnonzero(big)
            srcs = [RasterioRasterSource(ds, 1, name=name) for name, ds in members]
            _run(idx[sel], wkb[sel], srcs, [name for name, _ in members], arrays, grid)
        small = np.flatnonzero(~big)
        if small.size:
            key = (r0[small] // tile_cells) * (grid.width // tile_cells + 1) + c0[small] // tile_cells
            order = np.argsort(key, kind="stable")
            ks = key[order]
            cuts = np.flatnonzero(np.diff(ks)) + 1
            tiles = []
            for part in np.split(order, cuts):
                sel = small[part]
                wc0, wc1 = int(c0[sel].min()), int(c1[sel].max())
                wr0, wr1 = int(r0[sel].min()), int(r1[sel].max())
                extent = (grid.left + wc0 * grid.rx, grid.top - wr1 * grid.ry,
                          grid.left + wc1 * grid.rx, grid.top - wr0 * grid.ry)
                tiles.append((sel, Window(wc0, wr0, wc1 - wc0, wr1 - wr0), extent))

            for sel, window, extent in tiles:
                srcs = []
                for name, ds in members:
                    arr, nd = _read(ds, window)
                    srcs.append(NumPyRasterSource(arr, *extent, nodata=nd, name=name,
                                                  srs_wkt=grid.crs_wkt))
                _run(idx[sel], wkb[sel], srcs, [name for name, _ in members], arrays, grid)
    area = shapely.area(geoms)
    cell = grid.rx * grid.ry
    out: dict[str, tuple[np.ndarray, ...]] = {}
    for name, _ in members:
        a = arrays[name]
        cnt = np.nan_to_num(a["count"], nan=0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = np.where(area > 0, np.clip(cnt * cell / area, 0.0, 1.0), 0.0)
        why = np.full(n, None, dtype=object)
        why[~touches] = OUTSIDE_EXTENT
        why[touches & (cnt <= 0)] = NODATA
        why[empty | (area <= 0)] = EMPTY_GEOMETRY
        missing = why != None  # noqa: E711
        for k in ("mean", "min", "max"):
            a[k][missing] = np.nan
        out[name] = (a["mean"], a["min"], a["max"], cov, why)
    return out


def _read(ds: rasterio.DatasetReader, window: Window) -> tuple[np.ndarray, float | None]:
    """Pixels of a window and the nodata value to pass on (None when the array is masked).

    A plain array with its nodata value is cheaper for exactextract than a masked array; masks
    are used only where nodata alone cannot say what is missing (mask bands, scaled values).
    """
    from rasterio.enums import MaskFlags

    scale, offset = ds.scales[0], ds.offsets[0]
    flags = ds.mask_flag_enums[0]
    plain = scale == 1.0 and offset == 0.0 and all(
        f in (MaskFlags.all_valid, MaskFlags.nodata) for f in flags)
    if plain:
        arr = ds.read(1, window=window)
        nd = ds.nodata
        if nd is None or np.isnan(nd):
            return arr, None
        return arr, (int(nd) if np.issubdtype(arr.dtype, np.integer) else float(nd))
    arr = ds.read(1, window=window, masked=True)
    if scale != 1.0 or offset != 0.0:
        arr = arr.astype("float64") * scale + offset
    return arr, None


def _run(fids: np.ndarray, wkb: np.ndarray, srcs: list, names: list[str],
         arrays: dict[str, dict[str, np.ndarray]], grid: _Grid) -> None:
    ops = []
    out: dict[str, np.ndarray] = {}
    for src, name in zip(srcs, names, strict=True):
        for stat in ("mean", "min", "max", "count"):
            field = f"{len(out)}"
            ops.append(Operation(stat, field, src))
            out[field] = arrays[name][stat]
    # The ops share one grid, so exactextract computes each polygon's coverage once for all.
    writer = _ArrayWriter(out)
    exact_extract(srcs, _WKBSource(fids, wkb, grid.crs_wkt), ops, include_cols=[_FID],
                  output=writer)
    writer.flush()
