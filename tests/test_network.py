"""Network distances on a tiny hand-made graph with known answers (EPSG:25832, metres).

Graph (osmid: x, y):   1 (0, 0) -- 2 (100, 0) -- 3 (200, 0) -- 4 (200, 100)
                       plus a longer 2-4 link (500 m), a parallel 1-2 edge (150 m),
                       and an island 5 (1000, 1000) -- 6 (1100, 1000) that no station reaches.
Stations: S0 (200, 130) 30 m from node 4; S1 (5000, 0) and S2 (-350, 0) are farther than the
snap threshold (300 m) from every node, i.e. outside the graph's coverage.
Node distances to the nearest joined station (S0): 4 -> 30, 3 -> 130, 2 -> 230, 1 -> 330.
"""

from __future__ import annotations

import math

import geopandas as gpd
import networkx as nx
import numpy as np
import pytest
import shapely
from scipy.sparse import csgraph

from pattogis.criteria.network import (
    EUCLIDEAN_DETOUR,
    NETWORK,
    build_graph,
    nearest_distance,
    node_distances,
    snap,
    with_targets,
)
from pattogis.errors import InputError

CRS = "EPSG:25832"
SNAP = 300.0
DETOUR = 1.3


@pytest.fixture
def graph_frames() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    nodes = gpd.GeoDataFrame(
        {"osmid": [4, 1, 3, 2, 5, 6]},  # not sorted on purpose
        geometry=shapely.points([(200, 100), (0, 0), (200, 0), (100, 0), (1000, 1000),
                                 (1100, 1000)]), crs=CRS)
    edges = gpd.GeoDataFrame(
        {"u": [1, 2, 2, 3, 4, 1, 5], "v": [2, 1, 3, 4, 2, 2, 6], "key": [0, 0, 0, 0, 0, 1, 0],
         "length_m": [100.0, 100.0, 100.0, 100.0, 500.0, 150.0, 100.0]},
        geometry=[shapely.LineString([(0, 0), (1, 1)])] * 7, crs=CRS)
    return nodes, edges


STATIONS = np.array([[200.0, 130.0], [5000.0, 0.0], [-350.0, 0.0]])


def test_graph_collapses_parallels_and_directions(graph_frames):
    g = build_graph(*graph_frames)
    assert g.n_nodes == 6
    assert g.n_edges == 5  # 1-2 (x3 rows), 2-3, 3-4, 2-4, 5-6
    i = {int(k): n for n, k in enumerate(g.node_ids)}
    m = g.matrix
    assert m[i[1], i[2]] == 100.0 and m[i[2], i[1]] == 100.0  # shortest parallel, both ways
    assert m[i[2], i[4]] == 500.0 and m[i[4], i[2]] == 500.0  # one-way row made two-way
    assert (m != m.T).nnz == 0


def test_snap_distances(graph_frames):
    g = build_graph(*graph_frames)
    node, d = snap(g, STATIONS)
    assert g.node_ids[node[0]] == 4 and d[0] == pytest.approx(30.0)
    assert g.node_ids[node[2]] == 1 and d[2] == pytest.approx(350.0)


def test_node_distances_from_joined_stations(graph_frames):
    g = build_graph(*graph_frames)
    d, nearest = node_distances(g, STATIONS, snap_threshold_m=SNAP)
    got = {int(k): d[n] for n, k in enumerate(g.node_ids)}
    assert got[4] == pytest.approx(30.0)
    assert got[3] == pytest.approx(130.0)
    assert got[2] == pytest.approx(230.0)  # via 3, not the 500 m link
    assert got[1] == pytest.approx(330.0)
    assert math.isinf(got[5]) and math.isinf(got[6])
    near = {int(k): nearest[n] for n, k in enumerate(g.node_ids)}
    assert near[1] == 0 and near[5] == -1


def test_same_distances_as_networkx(graph_frames):
    g = build_graph(*graph_frames)
    m, joined, extra = with_targets(g, STATIONS, snap_threshold_m=SNAP)
    assert joined.tolist() == [0]
    gx = nx.Graph()
    coo = m.tocoo()
    gx.add_weighted_edges_from(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(),
                                   strict=True))
    ref = nx.multi_source_dijkstra_path_length(gx, set(extra.tolist()))
    d, _ = node_distances(g, STATIONS, snap_threshold_m=SNAP)
    for node in range(g.n_nodes):
        assert d[node] == pytest.approx(ref.get(node, math.inf))


def test_graph_holds_no_state_between_calls(graph_frames):
    """The graph is shared read-only by the API's threads: calls change nothing on it and the
    same targets give the same answer again; a join at 1 m joins nothing."""
    import dataclasses

    g = build_graph(*graph_frames)
    before = {f.name: getattr(g, f.name) for f in dataclasses.fields(g)}
    first, near1 = node_distances(g, STATIONS, snap_threshold_m=SNAP)
    again, near2 = node_distances(g, STATIONS.copy(), snap_threshold_m=SNAP)
    assert np.array_equal(first, again) and np.array_equal(near1, near2)
    assert all(getattr(g, k) is v for k, v in before.items())
    assert g.matrix.shape == (g.n_nodes, g.n_nodes)  # the joined nodes are not added to it
    _m, joined, _extra = with_targets(g, STATIONS, snap_threshold_m=1.0)
    assert joined.size == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.crs = "EPSG:4326"  # type: ignore[misc]


def test_path_lengths_add_up(graph_frames):
    nodes, edges = graph_frames
    edges = edges.copy()
    edges["length_m"] = [100.1, 100.1, 100.2, 100.3, 500.0, 150.0, 100.0]
    g = build_graph(nodes, edges)
    # 1-2 keeps the shortest of its parallel rows (100.1)
    assert sorted(np.unique(g.weight).tolist()) == [100.0, 100.1, 100.2, 100.3, 500.0]
    d, _ = node_distances(g, np.array([[0.0, -30.0]]), snap_threshold_m=SNAP)
    i = {int(k): n for n, k in enumerate(g.node_ids)}
    assert d[i[4]] == pytest.approx(30.0 + 100.1 + 100.2 + 100.3, rel=1e-15)


def test_target_on_a_node_is_joined_at_zero(graph_frames):
    g = build_graph(*graph_frames)
    d, nearest = node_distances(g, np.array([[200.0, 0.0], [5000.0, 0.0]]), snap_threshold_m=SNAP)
    i = {int(k): n for n, k in enumerate(g.node_ids)}
    assert d[i[3]] == 0.0 and d[i[2]] == pytest.approx(100.0) and d[i[4]] == pytest.approx(100.0)
    assert nearest[i[1]] == 0


def test_augmented_matrix_equals_a_rebuilt_one(graph_frames):
    from scipy import sparse

    g = build_graph(*graph_frames)
    targets = np.array([[200.0, 130.0], [0.0, 10.0], [200.0, 120.0], [5000.0, 0.0]])
    m, joined, extra = with_targets(g, targets, snap_threshold_m=SNAP)
    node, d = snap(g, targets[joined])
    row = np.concatenate([g.row, extra, node])
    col = np.concatenate([g.col, node, extra])
    w = np.concatenate([g.weight, d, d])
    want = sparse.csr_matrix((w, (row, col)), shape=m.shape)
    assert (abs(m - want) > 1e-12).nnz == 0
    assert np.array_equal(m.indptr, want.indptr) and np.array_equal(m.indices, want.indices)


def test_zero_length_edge_is_an_edge(graph_frames):
    nodes, edges = graph_frames
    edges = edges.copy()
    edges.loc[edges.index[-1], "length_m"] = 0.0  # 5-6 of length 0
    g = build_graph(nodes, edges)
    d, _ = node_distances(g, np.array([[1000.0, 1010.0]]), snap_threshold_m=SNAP)
    i = {int(k): n for n, k in enumerate(g.node_ids)}
    assert d[i[5]] == pytest.approx(10.0)
    assert d[i[6]] == pytest.approx(10.0)


def test_site_distance_network_and_detour_fallback(graph_frames):
    g = build_graph(*graph_frames)
    origins = np.array([
        [0.0, 40.0],      # a: snaps to 1 (40 m) -> 40 + 330 over the network
        [100.0, -500.0],  # b: 500 m from the graph -> straight line to S0 x 1.3
        [1000.0, 1010.0],  # c: on the island, no station reachable -> straight line x 1.3
        [-100.0, 0.0],    # d: on the graph (100 + 330 = 430) but S2, outside it, is 250 x 1.3
    ])
    r = nearest_distance(g, origins, STATIONS, snap_threshold_m=SNAP, detour_factor=DETOUR)
    assert r["distance_m"].tolist() == pytest.approx([
        370.0, math.hypot(100, 630) * DETOUR, math.hypot(800, 880) * DETOUR, 250.0 * DETOUR])
    assert r["method"].tolist() == [NETWORK, EUCLIDEAN_DETOUR, EUCLIDEAN_DETOUR, EUCLIDEAN_DETOUR]
    assert r["target"].tolist() == [0, 0, 0, 2]
    assert r["snap_m"].tolist() == pytest.approx([40.0, 500.0, 10.0, 100.0])


def test_without_graph_everything_is_detoured():
    r = nearest_distance(None, np.array([[0.0, 0.0]]), np.array([[300.0, 400.0]]),
                         snap_threshold_m=SNAP, detour_factor=1.25)
    assert r["distance_m"].iloc[0] == pytest.approx(625.0)
    assert r["method"].iloc[0] == EUCLIDEAN_DETOUR


def test_no_targets_gives_nan(graph_frames):
    g = build_graph(*graph_frames)
    r = nearest_distance(g, np.array([[0.0, 0.0]]), np.empty((0, 2)), snap_threshold_m=SNAP,
                         detour_factor=DETOUR)
    assert np.isnan(r["distance_m"].iloc[0]) and r["method"].iloc[0] is None


def test_bad_inputs_are_named(graph_frames):
    nodes, edges = graph_frames
    bad = edges.copy()
    bad.loc[bad.index[2], "v"] = 99
    with pytest.raises(InputError, match=r"row 2.*u/v"):
        build_graph(nodes, bad)
    neg = edges.copy()
    neg.loc[neg.index[0], "length_m"] = -1.0
    with pytest.raises(InputError, match="length_m"):
        build_graph(nodes, neg)
    with pytest.raises(InputError, match="degrees"):
        build_graph(nodes.to_crs(4326), edges.to_crs(4326))
    with pytest.raises(InputError, match="detour"):
        nearest_distance(build_graph(nodes, edges), np.zeros((1, 2)), STATIONS,
                         snap_threshold_m=SNAP, detour_factor=0.5)


@pytest.mark.realdata
def test_real_bologna_graph_matches_networkx(raw_dir):
    """The real drivable graph of Bologna: identical distances to networkx, station by station."""
    p = raw_dir / "bologna_geospatial" / "bologna_road_network.gpkg"
    nodes = gpd.read_file(p, layer="nodes", columns=["osmid"]).to_crs(CRS)
    edges = gpd.read_file(p, layer="edges", columns=["u", "v", "key"]).to_crs(CRS)
    edges["length_m"] = edges.length
    g = build_graph(nodes, edges)
    rng = np.random.default_rng(3)
    stations = g.xy[rng.choice(g.n_nodes, 12, replace=False)] + rng.normal(0, 40, (12, 2))
    m, joined, extra = with_targets(g, stations, snap_threshold_m=SNAP)
    gx = nx.Graph()
    coo = m.tocoo()
    gx.add_weighted_edges_from(zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(),
                                   strict=True))
    ref = nx.multi_source_dijkstra_path_length(gx, set(extra.tolist()))
    want = np.array([ref.get(i, np.inf) for i in range(g.n_nodes)])
    d, near = node_distances(g, stations, snap_threshold_m=SNAP)
    assert np.isfinite(d).sum() > 0.9 * g.n_nodes
    # the same sums in another order: equal to the last few bits
    np.testing.assert_allclose(d, want, rtol=1e-12)
    # The station named is one at that distance.
    per = csgraph.dijkstra(m, directed=True, indices=extra)
    row = {int(j): r for r, j in enumerate(joined)}
    ok = np.isfinite(d)
    got = per[[row[int(t)] for t in near[ok]], np.flatnonzero(ok)]
    np.testing.assert_allclose(got, d[ok], rtol=1e-12)
