"""Network distances on the road graph: scipy.sparse CSR graph, cKDTree snapping, csgraph Dijkstra.

Conventions (relied on by the criteria and the tests):

* Lengths are metres in the working CRS (EPSG:25832 by default); ``roads_edges.length_m`` is the
  weight of an edge.
* The graph is treated as **undirected**: the criteria measure walking and cycling access, and a
  pedestrian or a cyclist may use a one-way street both ways. Parallel edges and the two
  directions of a two-way street collapse to one edge with the shortest length. The CSR matrix is
  stored already symmetric so Dijkstra runs with ``directed=True`` on it (same result as
  ``directed=False``, without scipy symmetrising the matrix again on every call).
* Targets (e.g. stations) are joined to the graph by an extra node per target, linked to its
  nearest road node by an edge as long as the snap distance; the multi-source Dijkstra
  (``min_only=True``) then starts from these target nodes, so every distance includes the walk
  from the road to the station.
* Nothing is cached on the graph: a :class:`RoadGraph` is immutable and shared by the API's
  threads. One multi-source Dijkstra on Bologna's 5,527 nodes takes under a millisecond, and
  every product path makes one per target set and criteria call (the criteria of the default
  candidates are cached whole by :mod:`pattogis.workspace`).
* An origin (a site's representative point) reaches the graph through its nearest node: distance =
  snap distance + network distance. A point farther than ``snap_threshold_m`` from every node is
  outside the graph's coverage (the drivable OSM graph covers the Comune di Bologna only); there,
  and for targets outside the coverage, the distance is the straight line times a detour factor
  (``config/criteria.yaml``), reported with method ``'euclidean_detour'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

if TYPE_CHECKING:  # imported where used: the API starts without them
    from scipy import sparse
    from scipy.spatial import cKDTree

from pattogis.errors import InputError

NETWORK = "network"
EUCLIDEAN_DETOUR = "euclidean_detour"


@dataclass(frozen=True)
class RoadGraph:
    """An undirected road graph ready for Dijkstra.

    ``row``/``col``/``weight`` hold both directions of every edge (metres); ``matrix`` is the
    symmetric CSR matrix built from them; ``xy`` the node coordinates (working CRS, metres);
    ``node_ids`` the OSM ids of the nodes, in matrix order.
    """

    row: np.ndarray
    col: np.ndarray
    weight: np.ndarray
    matrix: sparse.csr_matrix
    xy: np.ndarray
    node_ids: np.ndarray
    tree: cKDTree
    crs: str | None

    @property
    def n_nodes(self) -> int:
        return int(self.xy.shape[0])

    @property
    def n_edges(self) -> int:
        """Undirected edges after collapsing parallels."""
        return int(self.row.size // 2)


def _csr(row: np.ndarray, col: np.ndarray, w: np.ndarray, n: int) -> sparse.csr_matrix:
    from scipy import sparse

    # Built from (row, col) pairs that are already unique, so no duplicate is summed; explicit
    # zero weights stay in the structure and count as edges for csgraph.
    m = sparse.csr_matrix((w.astype("float64"), (row.astype("int32"), col.astype("int32"))),
                          shape=(n, n))
    return m


def build_graph(nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame, *,
                weight: str = "length_m") -> RoadGraph:
    """Build the undirected CSR graph from the ``roads_nodes`` / ``roads_edges`` layers.

    ``nodes`` needs ``osmid`` and Point geometries; ``edges`` needs ``u``, ``v`` (osmid of the
    end nodes) and ``weight`` (metres). Both must be in the same projected CRS.
    """
    from scipy.spatial import cKDTree

    for col in ("osmid",):
        if col not in nodes.columns:
            raise InputError("road nodes lack a column", field=col)
    for col in ("u", "v", weight):
        if col not in edges.columns:
            raise InputError("road edges lack a column", field=col)
    if nodes.crs is not None and nodes.crs.is_geographic:
        raise InputError("road nodes are in degrees; reproject them to a metric CRS", field="geometry")
    if nodes.crs is not None and edges.crs is not None and nodes.crs != edges.crs:
        raise InputError(f"road nodes ({nodes.crs}) and edges ({edges.crs}) have different CRS")
    ids = nodes["osmid"].to_numpy(dtype="int64")
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if np.any(sorted_ids[1:] == sorted_ids[:-1]):
        raise InputError("road nodes have duplicate osmid", field="osmid")
    u_id = edges["u"].to_numpy(dtype="int64")
    v_id = edges["v"].to_numpy(dtype="int64")
    w = edges[weight].to_numpy(dtype="float64")
    pos_u = np.searchsorted(sorted_ids, u_id).clip(0, max(len(ids) - 1, 0))
    pos_v = np.searchsorted(sorted_ids, v_id).clip(0, max(len(ids) - 1, 0))
    bad = (sorted_ids[pos_u] != u_id) | (sorted_ids[pos_v] != v_id) if len(ids) else np.ones(len(w), bool)
    if bad.any():
        raise InputError("road edges reference nodes that are not in the nodes layer",
                         rows=np.flatnonzero(bad).tolist(), field="u/v")
    if not np.all(np.isfinite(w)) or (w < 0).any():
        raise InputError("road edge lengths must be finite and >= 0",
                         rows=np.flatnonzero(~np.isfinite(w) | (w < 0)).tolist(), field=weight)
    u, v = order[pos_u], order[pos_v]
    keep = u != v  # self-loops never shorten a path
    a, b, w = np.minimum(u, v)[keep], np.maximum(u, v)[keep], w[keep]
    # Collapse parallel edges and the two directions of a street to the shortest one.
    span = max(len(ids), 1)
    key, w = _min_by_key(a.astype("int64") * span + b, w)
    a, b = key // span, key % span
    row, col, wt = np.concatenate([a, b]), np.concatenate([b, a]), np.concatenate([w, w])
    n = len(ids)
    xy = shapely.get_coordinates(nodes.geometry.to_numpy())
    if xy.shape[0] != n:
        raise InputError("road nodes must be single, non-empty Points", field="geometry")
    crs = nodes.crs.to_string() if nodes.crs is not None else None
    return RoadGraph(row=row, col=col, weight=wt, matrix=_csr(row, col, wt, n), xy=xy,
                     node_ids=ids, tree=cKDTree(xy), crs=crs)


def _min_by_key(key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct key once (sorted) with the smallest of its values."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    if k.size == 0:
        return k, value[:0]
    at = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return k[at], np.minimum.reduceat(value[order], at)


def snap(graph: RoadGraph, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest node of each point: (node index, straight-line distance in metres)."""
    xy = np.asarray(xy, dtype="float64").reshape(-1, 2)
    if xy.shape[0] == 0 or graph.n_nodes == 0:
        return np.zeros(xy.shape[0], "int64"), np.full(xy.shape[0], np.inf)
    d, i = graph.tree.query(xy, k=1)
    return i.astype("int64"), d


def with_targets(graph: RoadGraph, target_xy: np.ndarray, *, snap_threshold_m: float
                 ) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
    """The graph plus one node per target within ``snap_threshold_m`` of the road nodes.

    Returns the augmented matrix, the index (into ``target_xy``) of the targets joined, and the
    matrix index of their extra nodes (``graph.n_nodes + k``).
    """
    from scipy import sparse

    target_xy = np.asarray(target_xy, dtype="float64").reshape(-1, 2)
    t_node, t_snap = snap(graph, target_xy)
    joined = np.flatnonzero(t_snap <= snap_threshold_m)
    n, k = graph.n_nodes, joined.size
    extra = n + np.arange(k)
    rows, w = t_node[joined], t_snap[joined]
    # Append to the symmetric CSR in place of a COO rebuild (which sorts every entry again):
    # the link to extra node n+j goes at the end of its road node's row (columns >= n sort last),
    # and each extra node gets a row of its own. Explicit zeros (a target on a node) are kept.
    base = graph.matrix
    order = np.argsort(rows, kind="stable")
    pos = base.indptr[rows[order] + 1]
    indices = np.concatenate([np.insert(base.indices, pos, extra[order]), rows])
    data = np.concatenate([np.insert(base.data, pos, w[order]), w])
    indptr = np.empty(n + k + 1, dtype=base.indptr.dtype)
    indptr[0] = 0
    indptr[1:n + 1] = base.indptr[1:] + np.cumsum(np.bincount(rows, minlength=n))
    indptr[n + 1:] = indptr[n] + np.arange(1, k + 1)
    m = sparse.csr_matrix((data, indices.astype(base.indices.dtype), indptr), shape=(n + k, n + k))
    return m, joined, extra


def node_distances(graph: RoadGraph, target_xy: np.ndarray, *, snap_threshold_m: float,
                   nearest: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Distance (m) from every road node to the nearest target over the network, and which target.

    Multi-source Dijkstra (``scipy.sparse.csgraph.dijkstra(..., indices=sources, min_only=True)``)
    from the targets joined to the graph (see :func:`with_targets`). Nodes that no joined target
    reaches get ``inf`` and target ``-1``. With ``nearest=False`` only the distances are computed
    (the second value is None), which spares the predecessor bookkeeping.
    """
    from scipy.sparse import csgraph

    m, joined, extra = with_targets(graph, target_xy, snap_threshold_m=snap_threshold_m)
    n = graph.n_nodes
    if joined.size == 0:
        return np.full(n, np.inf), (np.full(n, -1, "int64") if nearest else None)
    if not nearest:
        dist = csgraph.dijkstra(m, directed=True, indices=extra, min_only=True)
        return dist[:n], None
    dist, _pred, src = csgraph.dijkstra(m, directed=True, indices=extra, min_only=True,
                                        return_predecessors=True)
    near = np.where(src[:n] >= 0, joined[np.clip(src[:n] - n, 0, None)], -1)
    return dist[:n], near


def nearest_distance(graph: RoadGraph | None, origin_xy: np.ndarray, target_xy: np.ndarray, *,
                     snap_threshold_m: float, detour_factor: float) -> pd.DataFrame:
    """Distance (m) from each origin to the nearest target, over the road graph where it can.

    Returns a DataFrame (one row per origin) with ``distance_m``, ``method`` (``'network'`` or
    ``'euclidean_detour'``), ``target`` (index into ``target_xy``, -1 when there is none) and
    ``snap_m`` (origin to its nearest node; NaN without a graph).

    For an origin within ``snap_threshold_m`` of the graph the distance is the smaller of the
    network distance (snap + Dijkstra) and the detoured straight line to the targets that are
    *outside* the graph's coverage (a station just beyond the city edge). An origin outside the
    coverage, or on a piece of the graph that no joined target reaches, gets the detoured straight
    line to the nearest target of all.
    """
    from scipy.spatial import cKDTree

    origin_xy = np.asarray(origin_xy, dtype="float64").reshape(-1, 2)
    target_xy = np.asarray(target_xy, dtype="float64").reshape(-1, 2)
    n_o = origin_xy.shape[0]
    out = pd.DataFrame({"distance_m": np.full(n_o, np.nan), "method": pd.Series([None] * n_o, dtype=object),
                        "target": np.full(n_o, -1, "int64"), "snap_m": np.full(n_o, np.nan)})
    if n_o == 0 or target_xy.shape[0] == 0:
        return out
    if detour_factor < 1.0:
        raise InputError(f"detour factor must be >= 1, got {detour_factor}", field="detour_factor")
    # Detoured straight line to the nearest of all targets: the fallback everywhere.
    d_all, t_all = cKDTree(target_xy).query(origin_xy, k=1)
    dist = d_all * detour_factor
    method = np.full(n_o, EUCLIDEAN_DETOUR, dtype=object)
    target = t_all.astype("int64")
    if graph is not None and graph.n_nodes > 0:
        node_d, node_t = node_distances(graph, target_xy, snap_threshold_m=snap_threshold_m)
        o_node, o_snap = snap(graph, origin_xy)
        out["snap_m"] = o_snap
        d_net = np.where(o_snap <= snap_threshold_m, o_snap + node_d[o_node], np.inf)
        t_net = node_t[o_node]
        on_net = np.isfinite(d_net)
        # Targets the graph does not reach are still reachable by the detoured straight line.
        _, t_snap = snap(graph, target_xy)
        outside = np.flatnonzero(t_snap > snap_threshold_m)
        if outside.size:
            d_out, k_out = cKDTree(target_xy[outside]).query(origin_xy, k=1)
            d_out = d_out * detour_factor
            t_out = outside[k_out]
        else:
            d_out = np.full(n_o, np.inf)
            t_out = np.full(n_o, -1, "int64")
        use_net = on_net & (d_net <= d_out)
        dist = np.where(on_net, np.where(use_net, d_net, d_out), dist)
        target = np.where(on_net, np.where(use_net, t_net, t_out), target)
        method = np.where(use_net, NETWORK, method)
    out["distance_m"] = dist
    out["method"] = method
    out["target"] = target
    return out
