"""Candidate sites prepared for the criteria, with the pieces several criteria share.

:func:`prepare_sites` checks and reprojects the candidates; :class:`Sites` carries them through
one run and caches what more than one criterion uses (the origin points, the host comune, the
zonal statistics of all rasters of the run, computed together so that rasters on one grid share
their coverage fractions).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis.criteria.context import CriteriaContext, check_not_geographic
from pattogis.criteria.zonal import zonal_stats
from pattogis.errors import InputError

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
    g = candidates.geometry.to_numpy()
    missing = shapely.is_missing(g) | shapely.is_empty(g)
    if missing.any():
        raise InputError("candidates with missing or empty geometry",
                         rows=np.flatnonzero(missing).tolist(), field="geometry")
    bad = ~np.isin(shapely.get_type_id(g), POLYGON_TYPES)
    if bad.any():
        raise InputError("candidates must be Polygon or MultiPolygon",
                         rows=np.flatnonzero(bad).tolist(), field="geometry")
    invalid = ~shapely.is_valid(g)
    if invalid.any():
        raise InputError("candidates with invalid geometry (self-intersections?)",
                         rows=np.flatnonzero(invalid).tolist(), field="geometry",
                         hint="repair them, e.g. with shapely.make_valid, and upload again")
    out = candidates.to_crs(crs) if candidates.crs != crs else candidates.copy()
    return out


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
