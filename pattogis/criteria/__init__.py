"""Site criteria: one documented function per criterion, in one registry.

Each criterion (``pattogis/criteria/site.py``, ``access.py``, ``terrain.py``) is registered with
:func:`criterion`, which records its output column, unit, direction ('max' higher is better,
'min' lower is better, 'target' a range set by the weight profile), data source and Italian label.
:func:`compute_criteria` runs them on candidate polygons and returns one column per criterion
(the column names that ``pattogis.scoring`` reads), companion columns (``rail_distance_method``,
``host_istat``) and ``missing``: per site, a dict criterion -> Italian reason for every value that
is NaN. A missing value is never a silent zero.

Heavy steps take ``engine``: ``'local'`` (default) runs in this process; ``'dask'``
(:func:`compute_dask`) partitions the sites by host comune over a dask cluster, each partition
computed by :func:`compute_local`, with identical rows. Other engines plug in with
:func:`register_engine`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis.criteria import access, hazard, site, terrain  # noqa: F401  (registers the criteria)
from pattogis.criteria.context import CriteriaContext, criteria_params
from pattogis.criteria.network import RoadGraph, build_graph, nearest_distance
from pattogis.criteria.registry import REGISTRY, Criterion, Outcome, criterion
from pattogis.criteria.sites import Sites, flag_outside, prepare_sites, read_candidates
from pattogis.criteria.zonal import zonal_stats

MISSING = "missing"

Engine = Callable[..., gpd.GeoDataFrame]
ENGINES: dict[str, Engine] = {}


def names() -> list[str]:
    """Names (= output columns) of every registered criterion, in registration order."""
    return list(REGISTRY)


def describe(which: Iterable[str] | None = None) -> pd.DataFrame:
    """Name, unit, direction, source, Italian label and description of the criteria."""
    sel = _resolve(which)
    return pd.DataFrame([REGISTRY[n].as_dict() for n in sel])


def output_columns(which: Iterable[str] | None = None) -> list[str]:
    """Columns :func:`compute_criteria` adds: criteria, companion columns, ``missing``."""
    cols: list[str] = []
    for n in _resolve(which):
        cols += [n, *REGISTRY[n].extra_columns]
    return cols + [MISSING]


def _resolve(which: Iterable[str] | None) -> list[str]:
    if which is None:
        return list(REGISTRY)
    which = [which] if isinstance(which, str) else list(which)
    unknown = [n for n in which if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown criteria {unknown}; known: {', '.join(REGISTRY)}")
    return list(dict.fromkeys(which))


def register_engine(name: str, func: Engine) -> None:
    """Plug in an engine: ``func(sites_gdf, ctx, names, **options) -> GeoDataFrame`` where
    ``sites_gdf`` is already checked and in the working CRS (see :func:`compute_local`)."""
    ENGINES[name] = func


def compute_criteria(candidates: gpd.GeoDataFrame, ctx: CriteriaContext,
                     names: Iterable[str] | None = None, engine: str = "local",
                     timings: dict[str, float] | None = None,
                     **engine_options: Any) -> gpd.GeoDataFrame:
    """Compute criteria for candidate site polygons.

    ``candidates``: Polygon/MultiPolygon GeoDataFrame in any CRS with a CRS set (reprojected to
    ``ctx.crs``, the metric working CRS). ``names``: criteria to compute (all by default).
    Returns the candidates (same index, geometry in the working CRS) with one column per
    criterion, the companion columns and ``missing`` (dict criterion -> reason, per site).
    Input columns named like an output column are replaced.

    ``timings``: a dict that receives wall-clock seconds per stage, see :func:`compute_local`;
    ``'sites'`` includes the checks and reprojection of :func:`prepare_sites`. It is passed on
    to the engine only when given, so engines without the keyword keep working.
    """
    sel = _resolve(names)
    t = time.perf_counter()
    gdf = prepare_sites(candidates, ctx.crs)
    if engine not in ENGINES:
        raise ValueError(f"unknown engine '{engine}'; available: {', '.join(ENGINES)}")
    if timings is None:
        return ENGINES[engine](gdf, ctx, sel, **engine_options)
    timings["sites"] = time.perf_counter() - t
    return ENGINES[engine](gdf, ctx, sel, timings=timings, **engine_options)


def compute_local(gdf: gpd.GeoDataFrame, ctx: CriteriaContext, names: list[str], *,
                  timings: dict[str, float] | None = None) -> gpd.GeoDataFrame:
    """The local engine: every criterion in this process, vectorised over the sites.

    ``gdf`` must already be checked and in ``ctx.crs`` (:func:`prepare_sites`); partitions of
    the same candidates give the same rows as one call on all of them.

    ``timings``: when given, receives wall-clock seconds per stage: ``'sites'`` (added to any
    value already there) and one entry per criterion name. A result several criteria share (host
    comune, area inside the TU, the zonal statistics of all rasters) is counted once, in the
    first criterion that computes it. The values computed do not depend on it.
    """
    sel = _resolve(names)
    t = time.perf_counter()
    rasters = tuple(dict.fromkeys(r for n in sel for r in REGISTRY[n].rasters))
    s = Sites(gdf, ctx, rasters)
    out = gdf.drop(columns=[c for c in output_columns(sel) if c in gdf.columns])
    missing: list[dict[str, str]] = [{} for _ in range(s.n)]
    if timings is not None:
        timings["sites"] = timings.get("sites", 0.0) + time.perf_counter() - t
    for n in sel:
        c = REGISTRY[n]
        t = time.perf_counter()
        res = _run_one(c, s, ctx)
        if res.values.shape != (s.n,):
            raise RuntimeError(f"criterion {n} returned {res.values.shape} values for {s.n} sites")
        nan = np.isnan(res.values)
        unexplained = nan & pd.isna(res.reasons)
        if unexplained.any():
            raise RuntimeError(f"criterion {n} left NaN without a reason at rows "
                               f"{np.flatnonzero(unexplained)[:10].tolist()}")
        out[n] = res.values
        for col in c.extra_columns:
            out[col] = res.extra.get(col, np.full(s.n, None, dtype=object))
        for i in np.flatnonzero(nan):
            missing[i][n] = str(res.reasons[i])
        if timings is not None:
            timings[n] = time.perf_counter() - t
    out[MISSING] = pd.Series(missing, index=out.index, dtype=object)
    return out


def _run_one(c: Criterion, s: Sites, ctx: CriteriaContext) -> Outcome:
    for key in c.requires:
        if not ctx.available(key):
            return Outcome.missing(s.n, ctx.reason(key), c.extra_columns)
    for r in c.rasters:
        if r not in ctx.rasters:
            return Outcome.missing(s.n, ctx.reason(r), c.extra_columns)
    if s.n == 0:
        return Outcome.of(np.empty(0), **{k: np.empty(0, dtype=object) for k in c.extra_columns})
    return c.func(s)


# Column holding each site's partition key while it travels through the dask engine.
_PART = "_pattogis_part"


def host_key(gdf: gpd.GeoDataFrame, ctx: CriteriaContext) -> np.ndarray:
    """ISTAT code of the comune holding each site's representative point ('' where none does):
    the partition key of the dask engine, so that a partition is a compact group of comuni."""
    key = np.full(len(gdf), "", dtype=object)
    if ctx.comuni is None or len(gdf) == 0:
        return key
    pts = shapely.point_on_surface(gdf.geometry.to_numpy())
    at, com = shapely.STRtree(ctx.comuni.geometry.to_numpy()).query(pts, predicate="intersects")
    # A point on a shared border belongs to the first comune found: any choice is fine for a key.
    first = np.unique(at, return_index=True)[1]
    key[at[first]] = ctx.comuni["istat"].astype(str).to_numpy()[com[first]]
    return key


def _compute_part(part: gpd.GeoDataFrame, ctx: CriteriaContext, names: list[str]
                  ) -> gpd.GeoDataFrame:
    return compute_local(part.drop(columns=[_PART]), ctx, names)


def compute_dask(gdf: gpd.GeoDataFrame, ctx: CriteriaContext, names: list[str], *,
                 timings: dict[str, float] | None = None, client: Any = None,
                 npartitions: int | None = None) -> gpd.GeoDataFrame:
    """The dask engine: sites partitioned by host comune (:func:`host_key`; ``names`` already
    resolved, as :func:`compute_criteria` passes them), each partition
    computed by :func:`compute_local` on a worker (:func:`pattogis.engine.map_frame`), the
    context (layers, graph, raster paths) sent to the cluster once.

    Every criterion of a site depends only on that site and the shared layers, so the rows are
    identical to the local engine's. ``client``: a running ``distributed.Client`` (default: the
    one :func:`pattogis.engine.dask_client` finds or starts). ``timings`` records only
    ``'dask'``, the whole call: the per-criterion split happens on the workers.
    """
    from pattogis import engine

    t = time.perf_counter()
    part = gdf.assign(**{_PART: host_key(gdf, ctx)})
    out = engine.map_frame(_compute_part, part, by=_PART, engine="dask", client=client,
                           npartitions=npartitions, ctx=ctx, names=names)
    if timings is not None:
        timings["dask"] = time.perf_counter() - t
    return out


register_engine("local", compute_local)
register_engine("dask", compute_dask)

__all__ = [
    "REGISTRY", "Criterion", "CriteriaContext", "Outcome", "RoadGraph", "Sites", "build_graph",
    "compute_criteria", "compute_dask", "compute_local", "criteria_params", "criterion",
    "describe", "flag_outside", "host_key", "names", "nearest_distance", "output_columns",
    "prepare_sites", "read_candidates",
    "register_engine", "zonal_stats",
]
