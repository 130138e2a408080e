"""Candidate sites prepared for the criteria, with the pieces several criteria share.

:func:`prepare_sites` checks and reprojects the candidates; :class:`Sites` carries them through
one run and caches what more than one criterion uses (the origin points, the host comune, the
zonal statistics of all rasters of the run, computed together so that rasters on one grid share
their coverage fractions).
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from pattogis import config
from pattogis.criteria.context import CriteriaContext, check_not_geographic
from pattogis.criteria.zonal import zonal_stats
from pattogis.errors import InputError
from pattogis.io import UploadLimits, read_vector_file
from pattogis.proposals import _from_geojson_obj  # the project's GeoJSON parser (rows, crs member)

POLYGON_TYPES = (3, 6)  # shapely type ids of Polygon and MultiPolygon


def prepare_sites(candidates: gpd.GeoDataFrame, crs: str) -> gpd.GeoDataFrame:
    """Check candidate polygons and bring them to the working CRS ``crs``.

    Raises :class:`InputError` naming the rows and the field when the input has no CRS, holds
    missing, empty, non-polygonal or invalid geometries. Candidates in degrees (or any other CRS)
    are reprojected; the working CRS itself must be metric.
    """
    check_not_geographic(crs, "working CRS")
    if not isinstance(candidates, gpd.GeoDataFrame):
        raise InputError("candidates must be a GeoDataFrame of polygons")
    if candidates.crs is None:
        raise InputError("candidates have no CRS; say which one they are in (e.g. EPSG:25832)",
                         field="geometry")
    check_geometries(candidates.geometry.to_numpy())
    out = candidates.to_crs(crs) if candidates.crs != crs else candidates.copy()
    return out


# --- a planner's own sites ------------------------------------------------------------------------

OWN_FORMATS = ("gpkg", "geojson", "zip", "parquet", "csv")
_SUFFIX = {".gpkg": "gpkg", ".geojson": "geojson", ".json": "geojson", ".zip": "zip",
           ".parquet": "parquet", ".geoparquet": "parquet", ".csv": "csv", ".txt": "csv",
           ".shp": "shp"}
ITALY_LONLAT = (6.0, 35.0, 19.0, 48.0)


def own_sites_params() -> dict[str, Any]:
    """``own_sites`` of ``config/criteria.yaml``: point area, inside share, column names."""
    return dict(config.load("criteria.yaml").get("own_sites") or {})


def sniff_format(data: bytes) -> str:
    """Format of uploaded bytes from their first bytes (never from the name a client gave)."""
    head = bytes(data[:16])
    if head.startswith(b"SQLite format 3"):
        return "gpkg"
    if head.startswith(b"PK"):
        return "zip"
    if head.startswith(b"PAR1"):
        return "parquet"
    if bytes(data[:4096]).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "geojson"
    return "csv"


def _pick(columns: list[str], chosen: str | None, tried: list[str], what: str, label: str,
          *, required: bool = False) -> str | None:
    """The column a user named (it must exist), else the first of ``tried`` present (any case)."""
    if chosen:
        if chosen not in columns:
            raise InputError(f"no column '{chosen}' for the {what}", file=label, field=chosen,
                             hint=f"Columns in the file: {', '.join(map(str, columns)) or 'none'}")
        return chosen
    lower = {str(c).lower(): c for c in columns}
    for t in tried:
        if t.lower() in lower:
            return lower[t.lower()]
    if required:
        raise InputError(f"no {what} column", file=label,
                         hint=f"Name one, or use one of: {', '.join(tried)}")
    return None


def _numbers(s: pd.Series) -> pd.Series:
    """Numbers written either way (``11,34`` in an Italian CSV, ``11.34``)."""
    if not pd.api.types.is_numeric_dtype(s):
        s = s.astype(str).str.strip().str.replace(",", ".", regex=False)
    return pd.to_numeric(s, errors="coerce")


def _read_csv(text: str, label: str, crs: str | None, params: dict[str, Any], *,
              wkt_field: str | None, lon_field: str | None, lat_field: str | None) -> gpd.GeoDataFrame:
    text = text.lstrip("\ufeff")
    first = text.splitlines()[0] if text.strip() else ""
    # The header names the separator: values may hold decimal commas (11,34) but names do not.
    counts = {d: first.count(d) for d in (";", "\t", "|", ",")}
    sep = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as e:
        raise InputError(f"cannot read the CSV: {e}", file=label) from e
    cols = list(df.columns)
    wkt = _pick(cols, wkt_field, [] if (lon_field or lat_field) else params["wkt_columns"], "WKT geometry", label)
    if wkt is not None:
        src = df[wkt].astype(str).str.strip()
        geom = shapely.from_wkt(src.to_numpy(), on_invalid="ignore")
        bad = shapely.is_missing(geom)
        if bad.any():
            raise InputError("geometry is not valid WKT (e.g. POLYGON ((x y, ...)))", file=label,
                             rows=_rows(bad), field=wkt)
        df = df.drop(columns=[wkt])
    else:
        lon = _pick(cols, lon_field, params["lon_columns"], "longitude (or WKT)", label, required=True)
        lat = _pick(cols, lat_field, params["lat_columns"], "latitude", label, required=True)
        x, y = _numbers(df[lon]), _numbers(df[lat])
        for name, v in ((lon, x), (lat, y)):
            if v.isna().any():
                raise InputError("not a number", file=label, rows=_rows(v.isna().to_numpy()), field=name)
        geom = shapely.points(x.to_numpy(), y.to_numpy())
        df = df.drop(columns=[lon, lat])
        crs = crs or "EPSG:4326"  # lon/lat columns are degrees unless a CRS is declared
    if crs is None:
        crs = "EPSG:4326"  # WKT without a declared CRS is read as WGS84 lon/lat (and checked)
    return gpd.GeoDataFrame(df, geometry=geom, crs=crs)


def _read_source(source: Any, label: str, crs: str | None, params: dict[str, Any],
                 fmt: str | None, csv_fields: dict[str, str | None],
                 limits: UploadLimits | None = None) -> gpd.GeoDataFrame:
    """Any accepted source as a GeoDataFrame in the CRS it declares (``crs`` when none). Bytes
    are an upload: read within the settings' upload limits."""
    if isinstance(source, gpd.GeoDataFrame):
        return source.copy()
    if isinstance(source, dict):
        return _from_geojson_obj(source, label, crs)
    if isinstance(source, (bytes, bytearray)):
        fmt = fmt or sniff_format(source)
        if fmt in ("geojson", "csv"):
            try:
                text = bytes(source).decode("utf-8")
            except UnicodeDecodeError:
                text = bytes(source).decode("latin-1")  # Excel's Italian CSVs are often cp1252
            if fmt == "csv":
                return _read_csv(text, label, crs, params, **csv_fields)
            try:
                return _from_geojson_obj(json.loads(text), label, crs)
            except json.JSONDecodeError as e:
                raise InputError(f"malformed GeoJSON: {e}", file=label) from e
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / f"upload.{fmt}"
            p.write_bytes(bytes(source))
            return _read_source(p, label, crs, params, fmt, csv_fields,
                                limits=UploadLimits.from_settings())
    path = Path(source)
    if not path.exists():
        raise InputError("file not found", file=str(path))
    fmt = fmt or _SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"unsupported file type '{path.suffix}'", file=label,
                         hint="Use .gpkg, .geojson, a zipped Shapefile (.zip), .parquet or .csv")
    if fmt in ("geojson", "csv"):
        return _read_source(path.read_bytes(), label, crs, params, fmt, csv_fields)
    # zips are inflated by pattogis.io (bounded), never by GDAL
    return read_vector_file(path, label=label, limits=limits)


def _check_in_italy(gdf: gpd.GeoDataFrame, label: str) -> None:
    """Whatever CRS was declared, the sites must land in Italy: catches a wrong or missing CRS
    (metres read as degrees, swapped lon/lat) before anything is measured."""
    b = shapely.bounds(gdf.to_crs("EPSG:4326").geometry.to_numpy())
    x0, y0, x1, y1 = ITALY_LONLAT
    ok = (b[:, 0] >= x0) & (b[:, 2] <= x1) & (b[:, 1] >= y0) & (b[:, 3] <= y1)
    ok |= np.isnan(b[:, 0])  # empty geometries are reported by check_geometries
    if ok.all():
        return
    raw = shapely.bounds(gdf.geometry.to_numpy())[~ok]
    if gdf.crs.is_geographic and (np.abs(raw) > 1000).any():
        hint = ("Coordinates look like metres: declare the CRS (e.g. EPSG:25832); GeoJSON and "
                "CSV without one are read as WGS84 longitude/latitude")
    elif gdf.crs.is_geographic and ((raw[:, 1] >= x0) & (raw[:, 3] <= x1)).all():
        hint = "Latitude and longitude look swapped: longitude comes first"
    else:
        hint = f"Check the CRS declared ({gdf.crs.to_string()})"
    raise InputError("sites outside Italy", file=label, rows=_rows(~ok), field="geometry", hint=hint)


def flag_outside(sites: gpd.GeoDataFrame, comuni: gpd.GeoDataFrame, *,
                 min_share: float | None = None) -> gpd.GeoDataFrame:
    """Add ``inside_metro_share`` (0..1, share of each site's area inside the 55 comuni) and
    ``outside_metro`` (True below ``min_share``, ``own_sites.min_inside_share`` in the config).

    Both frames in the same metric CRS. A site outside is kept and flagged, not dropped: its
    criteria are measured on layers that stop at the metropolitan boundary.
    """
    if min_share is None:
        min_share = float(own_sites_params().get("min_inside_share", 0.999))
    g = sites.geometry.to_numpy()
    cg = comuni.to_crs(sites.crs).geometry.to_numpy()
    area = shapely.area(g)
    inside = np.zeros(len(g))
    whole, _ = pairs(g, cg, "contains_properly")
    inside[whole] = area[whole]
    si, ci = pairs(g, cg)
    rest = ~np.isin(si, whole)
    if rest.any():
        a = shapely.area(shapely.intersection(g[si[rest]], cg[ci[rest]]))
        inside += np.bincount(si[rest], weights=a, minlength=len(g))
    out = sites.copy()
    out["inside_metro_share"] = np.clip(np.divide(inside, area, out=np.zeros(len(g)), where=area > 0), 0, 1)
    out["outside_metro"] = out["inside_metro_share"] < min_share
    return out


def read_candidates(source: Any, *, crs: str | None = None, id_field: str | None = None,
                    name_field: str | None = None, wkt_field: str | None = None,
                    lon_field: str | None = None, lat_field: str | None = None,
                    fmt: str | None = None, label: str | None = None,
                    comuni: gpd.GeoDataFrame | None = None,
                    working_crs: str | None = None) -> gpd.GeoDataFrame:
    """Read a planner's own sites, ready for :func:`pattogis.criteria.compute_criteria`.

    ``source``: a path, upload bytes, a GeoJSON dict or a GeoDataFrame. Formats: GeoPackage,
    GeoJSON (RFC 7946 CRS84 lon/lat, or the CRS of a legacy ``crs`` member), a zipped Shapefile
    (inflated within limits by :func:`pattogis.io.read_vector_file`), GeoParquet, CSV with a WKT column or lon/lat columns (``,`` ``;`` or tab
    separated; decimal comma accepted). The format comes from the first bytes of an upload, from
    the suffix of a path, or ``fmt``. ``crs``: the CRS of a source that declares none (CSV and
    GeoJSON default to WGS84 lon/lat); a source that declares one keeps it.

    Returns polygons in the working CRS (EPSG:25832) with ``site_id`` (``id_field``, else the
    first of ``own_sites.id_columns`` present, else generated ``SITO-001``...; unique, text),
    ``name`` (``name_field`` or a name-like column, else the id), ``row`` (the site's row in the
    input, counted from 1), ``from_point`` (a point made into a circle of ``area_ha`` or
    ``own_sites.point_area_ha``), and with ``comuni`` given, ``inside_metro_share`` and
    ``outside_metro`` (:func:`flag_outside`). Errors name the file, the rows (from 1) and the field.
    """
    params = own_sites_params()
    label = label or (str(source) if isinstance(source, (str, Path)) else "upload")
    working_crs = working_crs or config.working_crs()
    if crs is not None:
        try:
            crs = pyproj.CRS.from_user_input(crs).to_string()
        except pyproj.exceptions.CRSError as e:
            raise InputError(f"unknown CRS '{crs}'", file=label, field="crs",
                             hint="e.g. EPSG:25832 or EPSG:4326") from e
    try:
        gdf = _read_source(source, label, crs, params, fmt,
                           {"wkt_field": wkt_field, "lon_field": lon_field, "lat_field": lat_field})
    except pyproj.exceptions.CRSError as e:  # a crs member naming no known CRS
        raise InputError(f"the file declares an unknown CRS: {e}", file=label, field="crs") from e
    if gdf.geometry.name != "geometry":
        gdf = gdf.rename_geometry("geometry")
    if len(gdf) == 0:
        raise InputError("no sites in the file", file=label)
    if gdf.crs is None:
        if crs is None:
            raise InputError("the file declares no CRS", file=label, field="geometry",
                             hint="Declare it (e.g. --crs EPSG:25832) or add it to the file")
        gdf = gdf.set_crs(crs)
    gdf = gdf.reset_index(drop=True)
    g = gdf.geometry.to_numpy()
    missing = shapely.is_missing(g) | shapely.is_empty(g)
    if missing.any():
        raise InputError("sites with missing or empty geometry", file=label, rows=_rows(missing),
                         field="geometry")
    _check_in_italy(gdf, label)
    gdf = gdf.to_crs(working_crs)

    # Points (CSV lon/lat, point layers) become circles: the criteria measure areas.
    g = gdf.geometry.to_numpy()
    pts = shapely.get_type_id(g) == 0
    gdf["from_point"] = pts
    if pts.any():
        area_ha = np.full(len(gdf), float(params.get("point_area_ha", 1.0)))
        if "area_ha" in gdf.columns:
            given = _numbers(gdf["area_ha"]).to_numpy(dtype=float)
            bad = pts & ~(given > 0) & ~np.isnan(given)
            if bad.any():
                raise InputError("area_ha must be a positive number", file=label, rows=_rows(bad),
                                 field="area_ha")
            area_ha = np.where(np.isnan(given), area_ha, given)
        # A buffer is a regular polygon of 4 * quad_segs sides: its radius is set so that the
        # polygon, not the ideal circle, has the area asked for.
        n = 64
        radius = np.sqrt(area_ha * 1e4 / (0.5 * n * np.sin(2 * np.pi / n)))
        g = g.copy()
        g[pts] = shapely.buffer(g[pts], radius[pts], quad_segs=n // 4)
        gdf = gdf.set_geometry(g, crs=working_crs)
    check_geometries(gdf.geometry.to_numpy(), file=label)

    cols = [c for c in gdf.columns if c != "geometry"]
    idc = _pick(cols, id_field, params.get("id_columns", []), "site id", label)
    if idc is None:
        width = max(3, len(str(len(gdf))))
        ids = pd.Series([f"SITO-{i:0{width}d}" for i in range(1, len(gdf) + 1)])
    else:
        ids = gdf[idc].astype(str).str.strip()
        empty = gdf[idc].isna() | ids.isin(["", "nan", "None"])
        if empty.any():
            raise InputError("empty site id", file=label, rows=_rows(empty.to_numpy()), field=idc)
        dup = ids.duplicated(keep=False)
        if dup.any():
            raise InputError(f"site id '{ids[dup].iloc[0]}' is not unique", file=label,
                             rows=_rows(dup.to_numpy()), field=idc)
    namec = _pick(cols, name_field, params.get("name_columns", []), "site name", label)
    names = gdf[namec].astype(str) if namec is not None else ids
    out = gdf.drop(columns=[c for c in ("site_id", "name", "row") if c in gdf.columns])
    out.insert(0, "site_id", ids.to_numpy())
    out.insert(1, "name", names.to_numpy())
    out.insert(2, "row", np.arange(1, len(gdf) + 1))
    out = gpd.GeoDataFrame(out, geometry="geometry", crs=working_crs)
    if comuni is not None:
        out = flag_outside(out, comuni)
    return out


def _rows(mask: np.ndarray) -> list[int]:
    """Row numbers counted from 1 (the first feature or data line is row 1)."""
    return [int(i) + 1 for i in np.flatnonzero(mask)]


def check_geometries(g: np.ndarray, *, file: str | None = None) -> None:
    """Refuse missing, empty, non-polygonal or invalid site geometries, naming every bad row
    (counted from 1) and, for invalid ones, GEOS's reason for the first."""
    missing = shapely.is_missing(g) | shapely.is_empty(g)
    if missing.any():
        raise InputError("candidates with missing or empty geometry", file=file,
                         rows=_rows(missing), field="geometry")
    bad = ~np.isin(shapely.get_type_id(g), POLYGON_TYPES)
    if bad.any():
        raise InputError("candidates must be Polygon or MultiPolygon", file=file,
                         rows=_rows(bad), field="geometry")
    invalid = ~shapely.is_valid(g)
    if invalid.any():
        reason = shapely.is_valid_reason(g[invalid][:1])[0]
        raise InputError(f"candidates with invalid geometry ({reason})", file=file,
                         rows=_rows(invalid), field="geometry",
                         hint="repair them, e.g. with shapely.make_valid, and upload again")


def _boundary_segments(polys: np.ndarray) -> np.ndarray:
    """Every edge of the polygons' rings as a 2-point LineString."""
    rings = shapely.get_parts(shapely.get_parts(shapely.boundary(polys)))
    xy, ix = shapely.get_coordinates(rings, return_index=True)
    ok = ix[1:] == ix[:-1]
    return shapely.linestrings(np.stack([xy[:-1][ok], xy[1:][ok]], axis=1))


def nearest_distance_to(geoms: np.ndarray, layer: np.ndarray, *,
                        tree: shapely.STRtree | None = None) -> np.ndarray:
    """Straight-line distance (m) from each geometry to the nearest feature of ``layer``.

    0 where they touch or overlap. For polygon layers the search runs on the edges of the
    polygons (exact: two disjoint polygons are as far apart as one is from the other's edge),
    which an STRtree prunes far better than a few large polygons: about 8x faster on the derived
    productive hubs. ``tree``: ``STRtree(geoms)`` when the caller already has it.
    """
    out = np.full(len(geoms), np.nan)
    if len(layer) == 0 or len(geoms) == 0:
        return out
    polygonal = np.isin(shapely.get_type_id(layer), POLYGON_TYPES).all()
    if not polygonal:
        (gi, _), d = shapely.STRtree(layer).query_nearest(geoms, return_distance=True,
                                                          all_matches=False)
        out[gi] = d
        return out
    # From the sites' boundaries: where a site and a feature do not intersect, the distance
    # between their edges is the distance between them (where they do, `hit` below sets 0), and
    # GEOS skips the point-in-polygon tests of a polygon query: the same values, ~25% faster.
    (gi, _), d = shapely.STRtree(_boundary_segments(layer)).query_nearest(
        shapely.boundary(geoms), return_distance=True, all_matches=False)
    out[gi] = d
    hit, _ = pairs(geoms, layer, tree=tree)
    out[hit] = 0.0
    return out


def _tree_order(layer: np.ndarray) -> np.ndarray:
    """Position of each feature of ``layer`` in the traversal order of ``STRtree(layer)``."""
    t = shapely.STRtree(layer)
    visit = t.query(shapely.box(*shapely.total_bounds(layer)))
    rank = np.zeros(len(layer), dtype="int64")
    rank[visit] = np.arange(visit.size)
    return rank


def pairs(geoms: np.ndarray, layer: np.ndarray, predicate: str = "intersects", *,
          tree: shapely.STRtree | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (site, feature) where ``predicate(feature, site)`` holds, e.g. 'intersects'
    or 'contains_properly' (the site lies in the feature's interior).

    The tree is built on the (many, small) sites and queried with the (few, large) layer
    features, so GEOS prepares each large feature once instead of preparing every site and
    testing it against a large unprepared polygon: 5-10x faster on 100k sites against the
    comuni or the TU. ``tree`` is ``STRtree(geoms)`` when the caller already has it.

    Pairs come in the order of ``STRtree(layer).query(geoms, predicate)`` (by site, then by the
    features' order in the layer's tree), so sums and unions over them are the same, bit for
    bit, as with that query.
    """
    if len(geoms) == 0 or len(layer) == 0:
        return np.empty(0, dtype="int64"), np.empty(0, dtype="int64")
    t = shapely.STRtree(geoms) if tree is None else tree
    li, si = t.query(layer, predicate=predicate)
    order = np.lexsort((_tree_order(layer)[li], si))
    return si[order], li[order]


class Sites:
    """The candidates of one run (working CRS, positional order) and shared intermediate results."""

    def __init__(self, gdf: gpd.GeoDataFrame, ctx: CriteriaContext,
                 rasters: tuple[str, ...] = ()) -> None:
        self.gdf = gdf
        self.ctx = ctx
        self.params = ctx.params
        self.geoms = gdf.geometry.to_numpy()
        self.n = len(gdf)
        self._wanted_rasters = tuple(rasters)
        self._zonal: pd.DataFrame | None = None
        self._memo: dict[str, Any] = {}

    def memo(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per run: for results several criteria share."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @cached_property
    def tree(self) -> shapely.STRtree:
        """STRtree of the sites, shared by the overlays with the layers (see :func:`pairs`)."""
        return shapely.STRtree(self.geoms)

    @cached_property
    def area_m2(self) -> np.ndarray:
        return shapely.area(self.geoms)

    @cached_property
    def origin(self) -> np.ndarray:
        """Point each site is measured from (network distances): the centroid, or a point on the
        surface where the centroid falls outside the site (``origin`` in the config)."""
        c = shapely.centroid(self.geoms)
        if self.params.get("origin", "centroid") == "point_on_surface":
            return shapely.point_on_surface(self.geoms)
        out = c.copy()
        outside = ~shapely.contains(self.geoms, c)
        # only where the centroid falls outside (concave sites): a few % of them
        out[outside] = shapely.point_on_surface(self.geoms[outside])
        return out

    @cached_property
    def origin_xy(self) -> np.ndarray:
        return shapely.get_coordinates(self.origin)

    def inside_area(self, layer: np.ndarray) -> np.ndarray:
        """Area (m²) of each site inside the union of the polygons ``layer``.

        Overlapping layer polygons are merged per site before measuring, so nothing is counted
        twice.
        """
        out = np.zeros(self.n)
        if len(layer) == 0 or self.n == 0:
            return out
        si, li = pairs(self.geoms, layer, tree=self.tree)
        if si.size == 0:
            return out
        pieces = shapely.intersection(self.geoms[si], layer[li])
        hits = np.bincount(si, minlength=self.n)
        single = hits[si] == 1
        out += np.bincount(si[single], weights=shapely.area(pieces[single]), minlength=self.n)
        multi = ~single
        if multi.any():
            s = gpd.GeoSeries(pieces[multi])
            merged = s.groupby(si[multi]).agg(lambda x: shapely.union_all(x.to_numpy()))
            out[merged.index.to_numpy()] += shapely.area(merged.to_numpy())
        return out

    @cached_property
    def host(self) -> pd.DataFrame:
        """Host comune of each site: the one holding the largest share of its area.

        Columns ``istat`` (None when the site is in no comune) and ``share`` (0..1; exactly 1
        for a site inside one comune and touching no other).
        """
        out = pd.DataFrame({"istat": pd.Series([None] * self.n, dtype=object),
                            "share": np.zeros(self.n)})
        c = self.ctx.comuni
        if c is None or self.n == 0 or len(c) == 0:
            return out
        cg = c.geometry.to_numpy()
        si, ci = pairs(self.geoms, cg, tree=self.tree)
        if si.size == 0:
            return out
        # Most sites lie inside one comune and touch no other: that comune hosts all of the
        # site (share 1), no overlay needed. The overlay runs only for the rest (sites across a
        # border or leaving the province), about a tenth of them.
        one = np.bincount(si, minlength=self.n) == 1
        sc, cc = pairs(self.geoms, cg, "contains_properly", tree=self.tree)
        whole = np.zeros(self.n, dtype=bool)
        whole[sc[one[sc]]] = True
        cut = ~whole[si]
        si_c, ci_c = si[cut], ci[cut]
        a = shapely.area(shapely.intersection(self.geoms[si_c], cg[ci_c]))
        ws, wc = sc[one[sc]], cc[one[sc]]
        df = pd.DataFrame({"site": np.concatenate([si_c, ws]),
                           "istat": c["istat"].to_numpy()[np.concatenate([ci_c, wc])],
                           "a": np.concatenate([a, self.area_m2[ws]])})
        df = df.groupby(["site", "istat"], as_index=False)["a"].sum()
        df = df[df["a"] > 0].sort_values(["site", "a", "istat"], ascending=[True, False, True])
        best = df.drop_duplicates("site")
        out.loc[best["site"].to_numpy(), "istat"] = best["istat"].to_numpy()
        out.loc[best["site"].to_numpy(), "share"] = best["a"].to_numpy() / self.area_m2[best["site"].to_numpy()]
        return out

    def covered(self, layer: str) -> np.ndarray:
        """True where the site's origin point lies in the area layer ``layer`` covers."""
        area = self.ctx.coverage.get(layer)
        if area is None:
            return np.ones(self.n, dtype=bool)
        return shapely.intersects(area, self.origin)

    def zonal(self, raster: str) -> pd.DataFrame:
        """Zonal statistics of ``raster`` (mean, min, max, coverage, reason) for every site.

        The first call computes every raster the run asked for in one :func:`zonal_stats` call,
        so rasters sharing a grid (DEM and slope) share the coverage fractions.
        """
        if self._zonal is None or f"{raster}_mean" not in self._zonal.columns:
            names = [r for r in dict.fromkeys((*self._wanted_rasters, raster))
                     if r in self.ctx.rasters]
            rp = self.params.get("rasters", {})
            self._zonal = zonal_stats(
                gpd.GeoSeries(self.geoms, crs=self.gdf.crs),
                {r: self.ctx.rasters[r] for r in names},
                min_coverage={r: float(rp.get("min_coverage", {}).get(r, 0.0)) for r in names},
                tile_cells=int(rp.get("tile_cells", 2048)))
        z = self._zonal
        cols = {f"{raster}_{k}": k for k in ("mean", "min", "max", "coverage", "reason")}
        return z[list(cols)].rename(columns=cols).reset_index(drop=True)
