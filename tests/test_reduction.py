"""The exact graph reduction ahead of the multi-source Dijkstra (pattogis.criteria.reduction).

Known answers on a hand-made graph (lengths in metres, integers, so sums are exact), and on random
graphs the same distances as a plain ``csgraph.dijkstra`` on the whole graph, with every named
nearest source checked to be at exactly that distance.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from scipy.sparse import csgraph

from pattogis.criteria.reduction import reduce_graph


def sym(n: int, edges: list[tuple[int, int, float]]) -> sparse.csr_matrix:
    """Symmetric CSR from undirected (u, v, length) edges, shortest of parallels, no loops."""
    best: dict[tuple[int, int], float] = {}
    for u, v, w in edges:
        if u == v:
            continue
        k = (min(u, v), max(u, v))
        best[k] = min(w, best.get(k, np.inf))
    r = [a for (a, b) in best] + [b for (a, b) in best]
    c = [b for (a, b) in best] + [a for (a, b) in best]
    w = list(best.values()) * 2
    return sparse.csr_matrix((np.array(w, float), (np.array(r, int), np.array(c, int))),
                             shape=(n, n))


# A(0) -10- B(1) -20- C(2) -30- D(3) -5- E(4) -100- A; F(5) hangs from B (7), G(6) from F (1);
# H(7) alone. Source A: B 10, C 30, D 60, E 65 (via D, not the 100 m link), F 17, G 18, H inf.
HAND = [(0, 1, 10.0), (1, 2, 20.0), (2, 3, 30.0), (3, 4, 5.0), (4, 0, 100.0), (1, 5, 7.0),
        (5, 6, 1.0)]


def test_hand_made_graph_reduces_to_its_source_with_known_distances():
    red = reduce_graph(sym(8, HAND), np.array([0]))
    assert red.matrix.shape == (1, 1)  # the ring and the tree hang on A alone
    d, src = red.dijkstra(nearest=True)
    assert d.tolist() == [0.0, 10.0, 30.0, 60.0, 65.0, 17.0, 18.0, np.inf]
    assert src.tolist() == [0, 0, 0, 0, 0, 0, 0, -1]


def test_two_sources_split_the_ring_and_shortcuts_carry_the_chain():
    # Sources A and D: C (30 from D... 30 from B side = 30, 30 from D) ties; E 5 from D.
    red = reduce_graph(sym(8, HAND), np.array([0, 3]))
    d, src = red.dijkstra(nearest=True)
    assert d.tolist() == [0.0, 10.0, 30.0, 0.0, 5.0, 17.0, 18.0, np.inf]
    assert src[[0, 1, 3, 4, 5, 6]].tolist() == [0, 0, 3, 3, 0, 0]
    assert src[2] in (0, 3) and src[7] == -1  # C is 30 m from both
    # The reduced graph holds A and D joined by the shortest way through the chain (60 m).
    assert red.matrix.shape == (2, 2)
    assert red.matrix[0, 1] == 60.0 and red.matrix[1, 0] == 60.0


def test_degree_three_nodes_are_eliminated_with_three_shortcuts():
    # A star: centre 0 (degree 3) to leaves that each carry a further degree-3 hub. Sources 1..3.
    # Node 0 goes, with shortcuts 1-2 (3+4), 1-3 (3+5), 2-3 (4+5).
    edges = [(0, 1, 3.0), (0, 2, 4.0), (0, 3, 5.0), (1, 2, 50.0), (2, 3, 50.0), (1, 3, 50.0)]
    red = reduce_graph(sym(4, edges), np.array([1, 2, 3]))
    assert red.matrix.shape == (3, 3)
    m = red.matrix.toarray()
    assert m[0, 1] == 7.0 and m[0, 2] == 8.0 and m[1, 2] == 9.0
    d, src = red.dijkstra(nearest=True)
    assert d.tolist() == [3.0, 0.0, 0.0, 0.0] and src.tolist() == [1, 1, 2, 3]


def test_no_sources_and_no_edges():
    red = reduce_graph(sym(3, []), np.array([], dtype=int))
    d, src = red.dijkstra(nearest=True)
    assert np.isinf(d).all() and (src == -1).all()
    red = reduce_graph(sym(3, []), np.array([1]))
    d, _ = red.dijkstra()
    assert d.tolist() == [np.inf, 0.0, np.inf]


@st.composite
def graphs(draw):  # type: ignore[no-untyped-def]
    n = draw(st.integers(1, 40))
    k = draw(st.integers(0, 3 * n))
    edges = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1),
                                    st.one_of(st.just(0.0), st.integers(1, 50).map(float),
                                              st.floats(0.01, 1000.0))),
                          min_size=k, max_size=k))
    sources = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=max(1, n // 3),
                            unique=True))
    return sym(n, edges), np.array(sources)


@settings(max_examples=300, deadline=None)
@given(graphs())
def test_random_graphs_give_the_plain_dijkstra_distances(case):
    m, sources = case
    red = reduce_graph(m, sources)
    d, src = red.dijkstra(nearest=True)
    want = csgraph.dijkstra(m, directed=True, indices=sources, min_only=True)
    assert np.array_equal(np.isinf(d), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(d[fin], want[fin], rtol=1e-12, atol=1e-9)
    # The named source is at exactly that distance (whichever of tied sources is named).
    per_source = csgraph.dijkstra(m, directed=True, indices=sources)
    row = {int(s): i for i, s in enumerate(sources)}
    assert ((src >= 0) == fin).all()
    for v in np.flatnonzero(fin):
        assert per_source[row[int(src[v])], v] == pytest.approx(want[v], rel=1e-12, abs=1e-9)
    # Distances only: the same numbers.
    d2, none = red.dijkstra()
    assert none is None and np.array_equal(d, d2)


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_quantised_lengths_give_the_same_bits(case):
    from pattogis.criteria.network import quantise

    m, sources = case
    m = m.copy()
    m.data = quantise(m.data)
    d, _ = reduce_graph(m, sources).dijkstra()
    assert np.array_equal(d, csgraph.dijkstra(m, directed=True, indices=sources, min_only=True))


def test_grid_with_dead_ends_shrinks_and_stays_exact():
    # A 30 x 30 street grid with random lengths, every other street cut, and cul-de-sacs.
    rng = np.random.default_rng(7)
    side = 30
    idx = np.arange(side * side).reshape(side, side)
    edges = []
    for i in range(side):
        for j in range(side):
            if j + 1 < side and (i % 2 == 0 or rng.random() < 0.5):
                edges.append((idx[i, j], idx[i, j + 1], float(rng.uniform(20, 200))))
            if i + 1 < side and (j % 3 == 0 or rng.random() < 0.3):
                edges.append((idx[i, j], idx[i + 1, j], float(rng.uniform(20, 200))))
    n = side * side
    extra = [(rng.integers(n), n + t, float(rng.uniform(5, 80))) for t in range(200)]
    m = sym(n + 200, edges + extra)
    sources = rng.choice(n, 6, replace=False)
    red = reduce_graph(m, sources)
    assert red.matrix.shape[0] < 0.5 * m.shape[0]
    assert len(red.levels) >= 2
    d, _ = red.dijkstra()
    want = csgraph.dijkstra(m, directed=True, indices=sources, min_only=True)
    assert np.array_equal(np.isinf(d), np.isinf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(d[fin], want[fin], rtol=1e-12)
