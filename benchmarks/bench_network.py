"""Benchmark of pattogis.criteria.network against networkx on the real Bologna road graph.

Run: ``python3 benchmarks/bench_network.py [--runs N]``; writes ``benchmarks/results/network.json``.

Graph: ``roads_nodes``/``roads_edges`` of the built layer set, or the OSM drivable graph of the
kit (``bologna_geospatial/bologna_road_network.gpkg``, lengths recomputed in EPSG:25832) when
the layer set is not built. Stations: ``rail_stations`` (or the Viaggiatreno stations of the
kit). Sites: the ``candidates`` layer (or the OSM land-use polygons of Bologna).

Timed, median of ``--runs`` samples alternating between the two libraries; each sample makes one
untimed call, then times 10 consecutive calls and divides (as ``timeit`` does); single cold calls
(no untimed call before) are reported beside:

* ``nearest_station``: distance from every road node to the nearest station.
  pattogis: :func:`node_distances`, as a running service calls it for the stations it has seen
  before: the join cached on the graph (the peer's graph has the stations joined before timing)
  and the joined graph reduced (:mod:`pattogis.criteria.reduction`: trees, chains and
  independent degree-3 nodes eliminated, their distances recovered after
  ``csgraph.dijkstra(indices=stations, min_only=True)``); distances only, as networkx returns.
  networkx: ``multi_source_dijkstra_path_length`` on the same joined graph, built beforehand.
  This is the headline ratio (target >= 20x). A second peer is networkx on the graph as osmnx
  users hold it (``MultiGraph`` of the OSM edges with their ``length``, osmid nodes, parallel
  edges kept: networkx takes the shortest of them at every step), the same road network.
* ``whole_graph``: pattogis with ``reduce=False`` (the Dijkstra on the whole joined graph).
* ``with_join``: the first use of a station set: joined in every call (empty caches), Dijkstra on
  the whole graph, against the same peer. ``reduction``: the time to make the reduced graph, its size, and after
  how many calls it repays itself.
* ``dijkstra_only``: the shortest-path call alone on both sides.
* ``end_to_end``: from the GeoDataFrames to one distance per site: graph build, snapping, Dijkstra
  and lookup on both sides (networkx graph built edge by edge keeping the shortest of parallel
  edges; snapping with the same cKDTree).

Values must be identical, bit for bit: both libraries get the same graph, with edge and station
link lengths as pattogis stores them (multiples of 2**-10 m, so that every path length is an
exact sum whatever the order of the additions). The script also measures the
circuity of the graph (network / straight-line distance to the nearest station for nodes more
than 1 km away), the figure behind ``network.detour_factor`` in ``config/criteria.yaml``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely
from scipy.sparse import csgraph
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pattogis.criteria import criteria_params  # noqa: E402
from pattogis.criteria.network import (  # noqa: E402
    build_graph,
    nearest_distance,
    node_distances,
    quantise,
    snap,
    with_targets,
)
from pattogis.criteria.reduction import reduce_graph  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "network.json"
CRS = "EPSG:25832"


def machine() -> dict[str, Any]:
    import scipy

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
            "scipy": scipy.__version__, "networkx": nx.__version__, "numpy": np.__version__,
            "shapely": shapely.__version__, "geopandas": gpd.__version__}


def load() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame, str]:
    from pattogis import layers

    if layers.exists() and layers.has_layer("roads_edges"):
        sites = (layers.open_layer("candidates") if layers.has_layer("candidates")
                 else layers.open_layer("landuse_bologna"))
        return (layers.open_layer("roads_nodes"), layers.open_layer("roads_edges"),
                layers.open_layer("rail_stations"), sites, "built layer set")
    raw = Path(os.environ.get("PATTOGIS_RAW", Path(__file__).resolve().parents[2] / "shared" /
                              "data" / "raw"))
    p = raw / "bologna_geospatial" / "bologna_road_network.gpkg"
    nodes = gpd.read_file(p, layer="nodes", columns=["osmid"]).to_crs(CRS)
    edges = gpd.read_file(p, layer="edges", columns=["u", "v", "key"]).to_crs(CRS)
    edges["length_m"] = edges.length
    st = gpd.read_file(raw / "trenitalia_stations" / "stazioni_emilia_romagna.geojson").to_crs(CRS)
    sites = gpd.read_file(raw / "bologna_geospatial" / "landuse_bologna.gpkg").to_crs(CRS)
    sites = sites[sites.geom_type.isin(["Polygon", "MultiPolygon"])]
    return nodes, edges, st, sites, "raw kit"


def nx_graph(nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame) -> nx.Graph:
    """Undirected networkx graph keeping the shortest of parallel edges (the peer's build)."""
    g = nx.Graph()
    g.add_nodes_from(nodes["osmid"].tolist())
    for u, v, w in zip(edges["u"].tolist(), edges["v"].tolist(),
                       quantise(edges["length_m"]).tolist(), strict=True):
        if u == v:
            continue
        d = g.get_edge_data(u, v)
        if d is None or w < d["weight"]:
            g.add_edge(u, v, weight=w)
    return g


def peer_end_to_end(nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame, st_xy: np.ndarray,
                    origin_xy: np.ndarray, thr: float) -> np.ndarray:
    """Site -> nearest station network distance with networkx (snapping as pattogis does)."""
    g = nx_graph(nodes, edges)
    ids = nodes["osmid"].to_numpy()
    xy = shapely.get_coordinates(nodes.geometry.to_numpy())
    tree = cKDTree(xy)
    d_st, i_st = tree.query(st_xy)
    sources = []
    for k in np.flatnonzero(d_st <= thr):
        g.add_edge(("station", int(k)), int(ids[i_st[k]]), weight=float(quantise(d_st[k])))
        sources.append(("station", int(k)))
    dist = nx.multi_source_dijkstra_path_length(g, sources)
    d_o, i_o = tree.query(origin_xy)
    net = np.array([dist.get(int(ids[i]), np.inf) for i in i_o])
    return np.where(d_o <= thr, d_o + net, np.inf)


def nx_multigraph(nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame, g: Any,
                  st_xy: np.ndarray, joined: np.ndarray) -> tuple[nx.MultiGraph, set[Any]]:
    """The road graph as osmnx users hold it, undirected: one edge per OSM edge row (parallel
    edges kept) with its ``length``, osmid nodes, plus the same station links as pattogis's."""
    gm = nx.MultiGraph()
    gm.add_nodes_from(nodes["osmid"].tolist())
    gm.add_edges_from((u, v, {"length": w}) for u, v, w in zip(
        edges["u"].tolist(), edges["v"].tolist(), quantise(edges["length_m"]).tolist(),
        strict=True))
    node, d = snap(g, st_xy[joined])
    sources = set()
    for k, i, dd in zip(joined.tolist(), node.tolist(), d.tolist(), strict=True):
        gm.add_edge(("station", k), int(g.node_ids[i]), length=float(quantise(dd)))
        sources.add(("station", k))
    return gm, sources


def ours_end_to_end(nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame, st_xy: np.ndarray,
                    origin_xy: np.ndarray, thr: float) -> np.ndarray:
    g = build_graph(nodes, edges)
    d, _ = node_distances(g, st_xy, snap_threshold_m=thr)
    o_node, o_snap = snap(g, origin_xy)
    return np.where(o_snap <= thr, o_snap + d[o_node], np.inf)


def interleaved(fns: dict[str, Callable[[], Any]], runs: int, number: int = 1, *,
                warmup: bool = False) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds per call, ``runs`` samples per function, samples alternating between functions.

    Each sample starts with a full collection, then (``warmup``) one untimed call, and times
    ``number`` consecutive calls (as ``timeit`` does) and divides. The untimed call matters for
    sub-millisecond calls: the first allocation after a collection that handed memory back to
    the system pays for mapping it again (here about 0.6 ms, on either library), which is the
    state a cold call sees and the ``single_calls`` figures report.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    last: dict[str, Any] = {}
    for _ in range(runs):
        for k, f in fns.items():
            gc.collect()
            gc.disable()  # as timeit does: a collection triggered by the peer's garbage is noise
            try:
                if warmup:
                    f()
                t = time.perf_counter()
                for _ in range(number):
                    last[k] = f()
                times[k].append((time.perf_counter() - t) / number)
            finally:
                gc.enable()
    return times, last


def med(x: list[float]) -> float:
    return float(np.median(x))


def faster(speedup: float) -> str:
    return f"{speedup:.1f}x faster" if speedup >= 1 else f"{1 / speedup:.1f}x slower"


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run_all import summary_row, write_result

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=None, help="samples per case (default 15)")
    ap.add_argument("--quick", action="store_true", help="5 samples per case")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    a.runs = a.runs or (5 if a.quick else 15)
    t0 = time.perf_counter()
    nodes, edges, stations, sites, source = load()
    params = criteria_params()["network"]
    thr, detour = float(params["snap_threshold_m"]), float(params["detour_factor"])
    st_xy = shapely.get_coordinates(shapely.centroid(stations.geometry.to_numpy()))
    origin_xy = shapely.get_coordinates(shapely.point_on_surface(sites.geometry.to_numpy()))
    g = build_graph(nodes, edges)

    # The same augmented graph for both libraries (stations joined as extra nodes).
    m, joined, extra = with_targets(g, st_xy, snap_threshold_m=thr)
    coo = m.tocoo()
    gx = nx.Graph()
    gx.add_weighted_edges_from(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(),
                                   strict=True))
    src = set(extra.tolist())
    gm, msrc = nx_multigraph(nodes, edges, g, st_xy, joined)

    # The stations are the same at every scoring request: from their second use the joined graph
    # is reduced (pattogis.criteria.reduction). Two calls before timing, as a running service has.
    for _ in range(2):
        node_distances(g, st_xy, snap_threshold_m=thr, nearest=False)
    (red,) = (j.reduction for j in g.joins.values())
    red_build = [time.perf_counter()]
    for _ in range(5):
        reduce_graph(m, extra)
        red_build.append(time.perf_counter())
    red_build_s = float(np.median(np.diff(red_build)))

    step_fns = {
        "pattogis": lambda: node_distances(g, st_xy, snap_threshold_m=thr, nearest=False)[0],
        "networkx": lambda: nx.multi_source_dijkstra_path_length(gx, src),
        "networkx_multigraph": lambda: nx.multi_source_dijkstra_path_length(gm, msrc,
                                                                            weight="length"),
    }
    step, last = interleaved(step_fns, a.runs, number=10, warmup=True)
    # Without the reduction: the Dijkstra on the whole joined graph (join cached).
    whole, whole_last = interleaved({
        "pattogis": lambda: node_distances(g, st_xy, snap_threshold_m=thr, nearest=False,
                                           reduce=False)[0],
        "networkx": lambda: nx.multi_source_dijkstra_path_length(gx, src),
    }, a.runs, number=10, warmup=True)
    # The cold path, a target set seen for the first time: snapped and joined in every call,
    # Dijkstra on the whole graph (no reduction is made on a first use).
    wj, wj_last = interleaved({
        "pattogis": lambda: node_distances(replace(g, joins={}), st_xy,
                                           snap_threshold_m=thr, nearest=False)[0],
        "networkx": lambda: nx.multi_source_dijkstra_path_length(gx, src),
    }, a.runs, number=10, warmup=True)
    assert np.array_equal(wj_last["pattogis"], last["pattogis"])
    assert np.array_equal(whole_last["pattogis"], last["pattogis"])  # bit-identical
    red_diff = float(np.max(np.abs(last["pattogis"] - whole_last["pattogis"],
                                   where=np.isfinite(whole_last["pattogis"]),
                                   out=np.zeros(g.n_nodes))))
    cold, _ = interleaved(step_fns, a.runs, number=1)
    ref_m = np.array([last["networkx_multigraph"].get(int(i), np.inf) for i in g.node_ids])
    ours = last["pattogis"]
    ref = np.array([last["networkx"].get(i, np.inf) for i in range(g.n_nodes)])
    fin = np.isfinite(ref)
    same_inf = bool(np.array_equal(np.isfinite(ours), fin))
    max_diff = float(np.max(np.abs(ours[fin] - ref[fin]))) if fin.any() else 0.0
    same_m = bool(np.array_equal(np.isfinite(ref_m), fin)) and bool(
        np.array_equal(ours[fin], ref_m[fin]))

    dj, _ = interleaved({
        "pattogis": lambda: csgraph.dijkstra(m, directed=True, indices=extra, min_only=True),
        "networkx": lambda: nx.multi_source_dijkstra_path_length(gx, src),
    }, a.runs, number=10, warmup=True)

    e2e_runs = max(3, a.runs // 3)
    e2e, e_last = interleaved({
        "pattogis": lambda: ours_end_to_end(nodes, edges, st_xy, origin_xy, thr),
        "networkx": lambda: peer_end_to_end(nodes, edges, st_xy, origin_xy, thr),
    }, e2e_runs)
    eo, ep = e_last["pattogis"], e_last["networkx"]
    e_fin = np.isfinite(ep)
    e_same = bool(np.array_equal(np.isfinite(eo), e_fin)) and bool(
        np.array_equal(eo[e_fin], ep[e_fin]))

    # Circuity: network / straight line to the same (nearest) station, nodes beyond 1 km.
    d, nearest = node_distances(g, st_xy, snap_threshold_m=thr)
    ok = nearest >= 0
    straight = np.hypot(*(g.xy[ok] - st_xy[nearest[ok]]).T)
    far = straight > 1000
    circ = d[ok][far] / straight[far]

    sites_r = nearest_distance(g, origin_xy, st_xy, snap_threshold_m=thr, detour_factor=detour)

    out = {
        "title": "nearest-station network distances: scipy.sparse.csgraph vs networkx",
        "libraries": machine(),
        "data": {"source": source, "nodes": g.n_nodes, "undirected_edges": g.n_edges,
                 "stations": len(stations), "stations_joined": int(joined.size),
                 "sites": len(sites), "snap_threshold_m": thr, "detour_factor": detour},
        "runs": a.runs,
        "nearest_station": {
            "seconds_per_call": step, "median_s": {k: med(v) for k, v in step.items()},
            "speedup": med(step["networkx"]) / med(step["pattogis"]),
            "speedup_vs_multigraph": med(step["networkx_multigraph"]) / med(step["pattogis"]),
            "identical_to_multigraph": same_m,
            "single_calls": {
                "note": "one call per sample, alternating: caches cold after the other library",
                "seconds": cold, "median_s": {k: med(v) for k, v in cold.items()},
                "speedup": med(cold["networkx"]) / med(cold["pattogis"])},
            "identical": same_inf and max_diff == 0.0, "max_abs_diff_m": max_diff,
            "reachable_nodes": int(fin.sum()),
        },
        "reduction": {
            "nodes": int(red.matrix.shape[0]), "entries": int(red.matrix.nnz),
            "whole_graph_nodes": int(m.shape[0]), "whole_graph_entries": int(m.nnz),
            "nodes_after_each_level": list(red.levels), "build_s": red_build_s,
            "max_abs_diff_to_whole_graph_m": red_diff,
            "calls_to_repay_the_build": red_build_s / max(
                med(whole["pattogis"]) - med(step["pattogis"]), 1e-12)},
        "whole_graph": {"seconds": whole, "median_s": {k: med(v) for k, v in whole.items()},
                        "speedup": med(whole["networkx"]) / med(whole["pattogis"])},
        "with_join": {"seconds": wj, "median_s": {k: med(v) for k, v in wj.items()},
                      "speedup": med(wj["networkx"]) / med(wj["pattogis"])},
        "dijkstra_only": {"seconds": dj, "median_s": {k: med(v) for k, v in dj.items()},
                          "speedup": med(dj["networkx"]) / med(dj["pattogis"])},
        "end_to_end": {"runs": e2e_runs, "seconds": e2e,
                       "median_s": {k: med(v) for k, v in e2e.items()},
                       "speedup": med(e2e["networkx"]) / med(e2e["pattogis"]),
                       "identical": e_same, "sites_on_network": int(e_fin.sum())},
        "circuity_median": float(np.median(circ)),
        "circuity_p25_p75": [float(np.percentile(circ, 25)), float(np.percentile(circ, 75))],
        "circuity_nodes": int(far.sum()),
        "site_methods": sites_r["method"].value_counts().to_dict(),
        "target": {"nearest_station_speedup": ">= 20"},
        "total_seconds": time.perf_counter() - t0,
    }
    ms = 1000.0
    ns, dj_m, e_m = out["nearest_station"]["median_s"], out["dijkstra_only"]["median_s"], \
        out["end_to_end"]["median_s"]
    sp, sp_m = out["nearest_station"]["speedup"], out["nearest_station"]["speedup_vs_multigraph"]
    nodes_txt = f"every road node ({g.n_nodes:,}) to the nearest of {int(joined.size)} stations"
    out["summary"] = [
        summary_row(f"nearest-station distance, {nodes_txt} (stations joined beforehand)",
                    ns["pattogis"] * ms, "ms", peer="networkx, nx.Graph with the stations "
                    "already joined", peer_value=ns["networkx"] * ms, target=">= 20x faster",
                    met=sp >= 20, note=f"{faster(sp)}; identical: "
                    f"{out['nearest_station']['identical']}"),
        summary_row(f"nearest-station distance, {nodes_txt} (stations joined beforehand)",
                    ns["pattogis"] * ms, "ms", peer="networkx, osmnx-style MultiGraph "
                    "(parallel edges, 'length')", peer_value=ns["networkx_multigraph"] * ms,
                    target=">= 20x faster", met=sp_m >= 20,
                    note=f"{faster(sp_m)}; identical: {same_m}"),
        summary_row(f"nearest-station distance, {nodes_txt}, Dijkstra on the whole graph "
                    "(reduce=False)", out["whole_graph"]["median_s"]["pattogis"] * ms, "ms",
                    peer="networkx, nx.Graph with the stations already joined",
                    peer_value=out["whole_graph"]["median_s"]["networkx"] * ms,
                    note=faster(out['whole_graph']['speedup'])),
        summary_row(f"nearest-station distance, {nodes_txt}, first use of the stations (join "
                    "in every call, whole graph)", out["with_join"]["median_s"]["pattogis"] * ms,
                    "ms", peer="networkx, nx.Graph with the stations already joined",
                    peer_value=out["with_join"]["median_s"]["networkx"] * ms,
                    note=faster(out['with_join']['speedup'])),
        summary_row("making the reduced graph (once per station set, on its second use)",
                    red_build_s * ms, "ms",
                    note=f"{red.matrix.shape[0]:,} of {m.shape[0]:,} nodes, {red.matrix.nnz:,} "
                    f"of {m.nnz:,} entries; repaid after "
                    f"{out['reduction']['calls_to_repay_the_build']:.0f} calls"),
        summary_row("Dijkstra call alone, same augmented graph", dj_m["pattogis"] * ms, "ms",
                    peer="networkx multi_source_dijkstra_path_length",
                    peer_value=dj_m["networkx"] * ms,
                    note=faster(out['dijkstra_only']['speedup'])),
        summary_row(f"end to end, layers to {len(sites)} site distances", e_m["pattogis"] * ms,
                    "ms", peer="networkx (graph built from the layers)",
                    peer_value=e_m["networkx"] * ms,
                    note=f"{faster(out['end_to_end']['speedup'])}; identical: {e_same}"),
    ]
    write_result("network", out, a.out)
    print(json.dumps(out["summary"], indent=1, default=str))


if __name__ == "__main__":
    main()
