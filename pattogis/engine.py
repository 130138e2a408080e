"""The engine seam: heavy steps run on this machine ('local') or on a dask cluster ('dask').

Every heavy step of pattogis (territorio urbanizzato over many comuni, criteria over many
candidates) is written as a function of one partition: one comune's boundary and footprints, or
the candidates of a group of comuni. This module is the one place that decides where those
functions run:

- :func:`map_partitions_delayed` runs ``func(*args)`` for a list of argument tuples (one per
  comune) as ``dask.delayed`` tasks on a ``distributed`` cluster and returns the results in input
  order;
- :func:`map_frame` runs a (Geo)DataFrame function over partitions by a key column (a comune
  never split across partitions) with dask-geopandas, and returns the rows in input order;
- :func:`local_cluster` starts a ``distributed.LocalCluster`` (processes, 2 workers by default);
  :func:`dask_client` uses the running client, or the scheduler named in the environment, or a
  local cluster for the duration of the call.

Settings come from the environment (see :func:`dask_settings`): ``PATTOGIS_DASK_SCHEDULER`` (the
address of an existing scheduler, e.g. ``tcp://10.0.0.5:8786``), ``PATTOGIS_DASK_WORKERS`` (2),
``PATTOGIS_DASK_THREADS`` (threads per worker, 1: GEOS work holds the GIL for part of its time,
processes scale better), ``PATTOGIS_DASK_MEMORY`` (memory limit per worker, ``4GiB``).

The functions shipped to workers must be importable there (module-level functions of an installed
package or of a module on the workers' ``sys.path``); geometries travel as WKB, so coordinates and
hence results are bit-identical to the local path.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pattogis.errors import InputError

if TYPE_CHECKING:
    from distributed import Client

ENGINES = ("local", "dask")

# Environment variables of the dask settings (read by pattogis.settings); documented in
# benchmarks/README.md.
ENV_SCHEDULER = "PATTOGIS_DASK_SCHEDULER"
ENV_WORKERS = "PATTOGIS_DASK_WORKERS"
ENV_THREADS = "PATTOGIS_DASK_THREADS"
ENV_MEMORY = "PATTOGIS_DASK_MEMORY"


@dataclass(frozen=True)
class DaskSettings:
    """Where and how dask runs. ``memory_limit`` is per worker (dask syntax: '4GiB', 0.5, 'auto')."""

    scheduler: str | None = None
    n_workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"


def dask_settings() -> DaskSettings:
    """Dask settings from the environment, with the defaults of :class:`DaskSettings`."""
    from pattogis.settings import get_settings

    s = get_settings()
    return DaskSettings(scheduler=s.dask_scheduler or None, n_workers=s.dask_workers,
                        threads_per_worker=s.dask_threads, memory_limit=s.dask_memory)


def check_engine(engine: str) -> str:
    """Return ``engine`` if known, else raise an :class:`InputError` naming the choices."""
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}'", field="engine",
                         hint=f"Use one of: {', '.join(ENGINES)}")
    return engine


@contextlib.contextmanager
def local_cluster(n_workers: int | None = None, *, memory_limit: str | float | None = None,
                  threads_per_worker: int | None = None) -> Iterator[Client]:
    """A ``distributed.LocalCluster`` of worker processes and a client on it, closed on exit.

    Defaults come from :func:`dask_settings` (2 workers, 1 thread each, 4 GiB each). The
    scheduler's HTTP routes take any free port; worker logs below WARNING are silenced.
    """
    from distributed import Client, LocalCluster

    s = dask_settings()
    cluster = LocalCluster(
        n_workers=n_workers or s.n_workers,
        threads_per_worker=threads_per_worker or s.threads_per_worker,
        memory_limit=memory_limit if memory_limit is not None else s.memory_limit,
        processes=True,
        # Any free port for the scheduler's HTTP routes: several clusters may run at once.
        dashboard_address=":0",
        silence_logs=logging.WARNING,
    )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


@contextlib.contextmanager
def dask_client() -> Iterator[Client]:
    """The client to run on: the running one, else ``$PATTOGIS_DASK_SCHEDULER``, else a new
    :func:`local_cluster` that lives for the duration of the ``with`` block."""
    from distributed import Client, get_client

    try:
        client = get_client()
    except ValueError:  # no client in this process
        client = None
    if client is not None:
        yield client
        return
    address = dask_settings().scheduler
    if address:
        with Client(address) as c:
            yield c
        return
    with local_cluster() as c:
        yield c


def _default_cost(args: tuple[Any, ...]) -> int:
    """Estimated cost of one partition: the length of its largest array-like argument
    (numpy or geopandas arrays, frames, lists; not strings or mappings)."""
    n = 0
    for a in args:
        if hasattr(a, "__len__") and not isinstance(a, str | bytes | dict):
            n = max(n, len(a))
    return n


def map_partitions_delayed(func: Callable[..., Any], arg_tuples: Sequence[tuple[Any, ...]], *,
                           cost: Callable[[tuple[Any, ...]], float] | None = None,
                           client: Client | None = None) -> list[Any]:
    """``[func(*args) for args in arg_tuples]``, each call one dask task; results in input order.

    Partitions differ a lot in size (a comune of 20,000 buildings next to one of 300), so each
    task carries a scheduler priority equal to its estimated ``cost`` (by default the length of
    its largest array-like argument): the big ones start first and the small ones fill the gaps,
    which shortens the wall time on few workers. Runs on ``client``, else on :func:`dask_client`.
    """
    import dask

    arg_tuples = list(arg_tuples)
    if not arg_tuples:
        return []
    cost = cost or _default_cost
    call = dask.delayed(func, pure=False)
    tasks = []
    for args in arg_tuples:
        with dask.annotate(priority=int(cost(args))):
            tasks.append(call(*args))
    with contextlib.ExitStack() as stack, warnings.catch_warnings():
        # The footprints ride inside the graph (33 MiB for the 54 comuni), which makes
        # distributed suggest scattering them first; measured, scattering gave the same time
        # (27.2 s vs 27.1 s), so the advice does not apply here.
        warnings.filterwarnings("ignore", message="Sending large graph")
        c = client if client is not None else stack.enter_context(dask_client())
        return list(c.gather(c.compute(tasks)))


def _balanced_bins(keys: pd.Series, nbins: int) -> np.ndarray:
    """Assign each row to one of ``nbins`` bins: contiguous runs of the sorted key values,
    cut where the cumulative row count crosses each ``1/nbins`` share.

    Rows of one key value always share a bin. Contiguous runs keep neighbours together when the
    key orders space (ISTAT codes run by province), so a partition covers a compact area and
    needs only the nearby part of any shared layer.
    """
    counts = keys.value_counts(dropna=False).sort_index()
    cum = np.cumsum(counts.to_numpy())
    # Bin of a key = share of the rows before its middle, in units of 1/nbins.
    mid = (cum - counts.to_numpy() / 2.0) / cum[-1]
    b = np.minimum((mid * nbins).astype(np.int64), nbins - 1)
    bin_of = dict(zip(counts.index, b, strict=True))
    return keys.map(bin_of).to_numpy(dtype=np.int64)


def _apply(part: pd.DataFrame, func: Callable[..., Any], kwargs: dict[str, Any]) -> pd.DataFrame:
    return func(part, **kwargs)


def map_frame(func: Callable[..., pd.DataFrame], gdf: pd.DataFrame, *, by: str = "comune_istat",
              engine: str = "local", npartitions: int | None = None,
              meta: pd.DataFrame | None = None, client: Client | None = None,
              **kwargs: Any) -> pd.DataFrame:
    """Apply ``func(frame, **kwargs) -> (Geo)DataFrame`` to ``gdf``, locally or over dask partitions.

    ``func`` must work row-wise within a group of ``by`` (e.g. criteria of candidates, given the
    comune they lie in): its result for a row may depend on the row, on the other rows of the
    same ``by`` value and on ``kwargs`` (shared layers, rasters' paths, a network graph, config),
    never on rows of other groups. It returns rows indexed by the input index (all of them or
    a subset).

    - ``engine='local'``: ``func(gdf, **kwargs)``, one call in this process.
    - ``engine='dask'``: rows are grouped into ``npartitions`` bins of whole ``by`` groups
      (contiguous runs of the sorted ``by`` values, about equal in rows; default 4 per worker), scattered to the workers and wrapped as
      one dask-geopandas frame (``dask.dataframe.from_delayed`` with a GeoDataFrame meta; a
      plain dask frame for a DataFrame); ``func`` runs per partition with ``map_partitions``.
      The keyword values are sent to the cluster once, not per partition. ``meta``
      (an empty frame shaped like the result) is computed by running ``func`` on the smallest
      group when not given.

    The result has the rows in input order and the CRS of what ``func`` returns; with a func
    as described the two engines give identical frames. ``gdf`` needs a unique index.
    """
    check_engine(engine)
    if by not in gdf.columns:
        raise InputError(f"column '{by}' to partition by is missing", field=by,
                         hint=f"columns present: {', '.join(map(str, gdf.columns))}")
    if engine == "local" or len(gdf) == 0:
        return func(gdf, **kwargs)
    if not gdf.index.is_unique:
        raise InputError("map_frame with engine='dask' needs a unique index (rows are put "
                         "back in input order by index)", field="index",
                         hint="Call reset_index() first")

    import dask
    import dask.dataframe as dd
    import geopandas as gpd

    if npartitions is None:
        npartitions = 4 * dask_settings().n_workers
    nbins = max(1, min(int(npartitions), int(gdf[by].nunique(dropna=False))))
    bins = _balanced_bins(gdf[by], nbins)
    order = np.argsort(bins, kind="stable")
    cuts = np.searchsorted(bins[order], np.arange(1, nbins))
    parts = [gdf.iloc[idx] for idx in np.split(order, cuts) if len(idx)]
    if meta is None:
        sizes = gdf[by].value_counts(dropna=False)
        smallest = gdf[gdf[by] == sizes.index[-1]] if not pd.isna(sizes.index[-1]) \
            else gdf[gdf[by].isna()]
        meta = func(smallest, **kwargs).iloc[:0]

    with contextlib.ExitStack() as stack:
        c = client if client is not None else stack.enter_context(dask_client())
        # Data goes straight to the workers (scatter), not through the scheduler inside the
        # task graph: the scheduler would unpickle and re-pickle every geometry. The keyword
        # values (shared layers) go to one worker once; the others fetch them from it when
        # their first partition needs them (measured: faster than broadcast=True here).
        part_futures = c.scatter(parts, hash=False)
        shared = c.scatter([kwargs], hash=False)[0]
        # Dask would turn string columns into pyarrow strings: keep the caller's dtypes so
        # that both engines return identical frames.
        with dask.config.set({"dataframe.convert-string": False}):
            ddf = dd.from_delayed(part_futures, meta=gdf.iloc[:0], verify_meta=False)
            mapped = ddf.map_partitions(_apply, func, shared, meta=meta,
                                        align_dataframes=False)
            outs = c.gather(c.compute(mapped.to_delayed()))
        c.cancel(part_futures + [shared])
    result = pd.concat(outs) if len(outs) > 1 else outs[0]
    # Rows back into input order.
    pos = gdf.index.get_indexer(result.index)
    if (pos < 0).any():
        raise InputError("func returned rows whose index is not in the input", field="index")
    result = result.iloc[np.argsort(pos, kind="stable")]
    if isinstance(meta, gpd.GeoDataFrame) and not isinstance(result, gpd.GeoDataFrame):
        result = gpd.GeoDataFrame(result, crs=meta.crs)
    return result
