"""Exact reduction of a road graph for repeated one-to-all distances from a fixed set of sources.

A multi-source Dijkstra over a road graph spends most of its time on nodes no shortest path has
to *choose* at: dead-end trees, the middle of chains of degree-2 nodes, and many degree-3 nodes.
:func:`reduce_graph` eliminates such nodes ahead of time, level by level:

* a level removes a set ``E`` of nodes; each connected piece ``R`` of ``E`` (a *region*) touches
  at most a few kept nodes, its *portals*;
* for every region and portal, the distance from the portal to each node of the region (through
  the region only) is computed once with ``scipy.sparse.csgraph.dijkstra``;
* between two portals of a region a shortcut edge is added, as long as the shortest way through
  the region, so distances among kept nodes are unchanged;
* a shortcut longer than some two-edge way between its ends is dropped (it lies on no shortest
  path), which often lowers degrees enough for the next level;
* after the Dijkstra on the reduced graph, a node of a region gets
  ``min over its portals p of (d[p] + offset(p, node))`` (:meth:`Reduction.expand`).

This is exact: a shortest path from a source (always kept) to a node of ``R`` enters ``R`` last
through one of its portals, and a path between kept nodes that crosses ``R`` is never shorter than
the shortcut. Only the order of the additions changes. With lengths that are multiples of a power
of two (as :mod:`pattogis.criteria.network` stores them) every sum is exact and the distances are
bit-identical to a Dijkstra on the whole graph; with arbitrary floats they agree to within
rounding (about 1e-15 relative).

Sources must be given when reducing (they are never eliminated); the reduction is therefore made
per source set and cached by the caller (see :func:`pattogis.criteria.network.node_distances`).
The Dijkstra itself stays ``scipy.sparse.csgraph.dijkstra``; this module only decides which nodes
it has to visit. Lengths are whatever the matrix holds (metres in pattogis).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

# A level stops the reduction when it removes less than this share of the nodes left.
MIN_GAIN = 0.05
MAX_LEVELS = 6


@dataclass(frozen=True)
class Reduction:
    """A graph reduced for a fixed set of sources.

    ``matrix`` is the reduced graph (symmetric CSR) and ``sources`` the reduced indices of the
    sources, in the order given to :func:`reduce_graph`. Each original node has a few terms
    (reduced node ``q``, offset ``o``) and its distance is the smallest ``d[q] + o``: a kept node
    has itself at offset 0, a node no portal reaches the sentinel ``len(original)``, which reads
    ``inf``. ``groups`` holds the nodes by their number of terms (1, 2-3, 4 and more) as (nodes,
    ``q`` and ``o`` of shape ``(width, len(nodes))``, padded with the sentinel), so the expansion
    is a few gathers. ``original`` is the original index of each reduced node; ``levels`` the
    node count after each level.
    """

    matrix: sparse.csr_matrix
    sources: np.ndarray
    groups: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    original: np.ndarray
    levels: tuple[int, ...]
    n_nodes: int

    def dijkstra(self, *, nearest: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Distance from every original node to the nearest source, and (``nearest=True``) the
        original index of that source (``-1`` where none reaches)."""
        if self.sources.size == 0:
            return np.full(self.n_nodes, np.inf), (np.full(self.n_nodes, -1, "int64") if nearest
                                                    else None)
        if not nearest:
            d = csgraph.dijkstra(self.matrix, directed=True, indices=self.sources, min_only=True)
            return self.expand(d), None
        d, _pred, src = csgraph.dijkstra(self.matrix, directed=True, indices=self.sources,
                                         min_only=True, return_predecessors=True)
        return self.expand(d, np.where(src >= 0, self.original[np.clip(src, 0, None)], -1))

    def expand(self, d: np.ndarray, src: np.ndarray | None = None
               ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Distances (and sources) on the reduced graph back to the original nodes."""
        d_ext = np.append(d, np.inf)
        out = np.empty(self.n_nodes)
        src_ext = None if src is None else np.append(src, -1)
        src_out = None if src is None else np.empty(self.n_nodes, "int64")
        for nodes, q, o in self.groups:
            vals = d_ext[q] + o
            if q.shape[0] == 1:
                out[nodes] = vals[0]
                if src_out is not None:
                    src_out[nodes] = src_ext[q[0]]
                continue
            if src_out is None:
                out[nodes] = vals.min(axis=0)
                continue
            # The first term reaching the minimum names the source.
            j = vals.argmin(axis=0)
            cols = np.arange(nodes.size)
            out[nodes] = vals[j, cols]
            src_out[nodes] = src_ext[q[j, cols]]
        return out if src is None else (out, src_out)


def _rows(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(indptr.size - 1), np.diff(indptr))


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + k) for s, k in zip(starts, lens)])``, vectorised."""
    return np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(int(lens.sum()))


def _gather(indptr: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Positions in ``indices`` of the entries of the rows ``nodes`` (concatenated)."""
    return _ranges(indptr[nodes], indptr[nodes + 1] - indptr[nodes])


def _peel(m: sparse.csr_matrix, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Repeatedly drop nodes of degree <= 1 (the dead-end trees), never those in ``keep``.

    Returns the survivors (the 2-core plus what ``keep`` holds on) and their degree among them.
    """
    deg = np.diff(m.indptr).astype("int64")
    alive = np.ones(deg.size, dtype=bool)
    leaves = np.flatnonzero((deg <= 1) & ~keep)
    while leaves.size:
        alive[leaves] = False
        nb = m.indices[_gather(m.indptr, leaves)]
        deg -= np.bincount(nb, minlength=deg.size)
        nb = np.unique(nb)
        leaves = nb[alive[nb] & (deg[nb] <= 1) & ~keep[nb]]
    return alive, deg


def min_by_key(key: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each distinct key once (sorted) with the smallest of its values."""
    order = np.argsort(key, kind="stable")
    k = key[order]
    at = np.flatnonzero(np.r_[True, k[1:] != k[:-1]]) if k.size else np.zeros(0, "int64")
    return k[at], (np.minimum.reduceat(value[order], at) if k.size else value[:0])


def _dedup_min(r: np.ndarray, c: np.ndarray, w: np.ndarray, n: int) -> sparse.csr_matrix:
    """CSR of the entries, keeping the shortest of parallel ones (explicit zeros stay)."""
    key, w = min_by_key(r.astype("int64") * max(n, 1) + c, w.astype("float64"))
    return sparse.csr_matrix((w, ((key // max(n, 1)).astype("int32"),
                                  (key % max(n, 1)).astype("int32"))), shape=(n, n))


def _drop_dominated(m: sparse.csr_matrix) -> sparse.csr_matrix:
    """Remove the edges a-b longer than some two-edge path a-c-b (shortcuts often are).

    Such an edge lies on no shortest path, so every distance stays the same; equal lengths are
    kept, so no tie is broken differently.
    """
    n = m.shape[0]
    if m.nnz == 0:
        return m
    rows, cols, w = _rows(m.indptr), m.indices.astype("int64"), m.data
    # Entry number + 1 of every (row, column), so a lookup tells a missing edge (0) from an edge
    # of length 0; scipy's sampling searches each short row in C.
    entry = sparse.csr_array((np.arange(1, m.nnz + 1), m.indices, m.indptr), shape=(n, n))
    up = np.flatnonzero(rows < cols)  # each edge once, as (a, b) with a < b
    a, b = rows[up], cols[up]
    cnt = np.diff(m.indptr)[a]  # >= 1: b is a neighbour of a
    via = _ranges(m.indptr[a], cnt)  # the entries (a, c)
    cb = np.asarray(entry[cols[via], np.repeat(b, cnt)]) - 1  # the entry c-b, or -1
    two = np.where(cb >= 0, w[via] + w[cb], np.inf)
    best = np.minimum.reduceat(two, np.cumsum(cnt) - cnt)
    gone = best < w[up]
    if not gone.any():
        return m
    drop = np.zeros(m.nnz, dtype=bool)
    drop[up[gone]] = True
    drop[np.asarray(entry[b[gone], a[gone]]) - 1] = True  # the other direction
    keep = ~drop
    return sparse.csr_matrix((w[keep], (rows[keep].astype("int32"), cols[keep].astype("int32"))),
                             shape=(n, n))


def _reduce_once(m: sparse.csr_matrix, keep: np.ndarray
                 ) -> tuple[sparse.csr_matrix, np.ndarray,
                            tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """One level: the reduced graph, the kept nodes, and the terms (fine node, coarse portal,
    offset) that give every fine node its distance from the coarse ones."""
    n = m.shape[0]
    alive, deg = _peel(m, keep)
    rows, cols, w = _rows(m.indptr), m.indices.astype("int64"), m.data
    chain = alive & ~keep & (deg == 2)
    # Degree-3 nodes become single-node regions when no neighbour is a chain node or another
    # such node of lower index: their region then has at most three portals.
    cand = alive & ~keep & (deg == 3)
    clash = cand[rows] & alive[cols] & (chain[cols] | (cand[cols] & (cols < rows)))
    cand &= np.bincount(rows[clash], minlength=n) == 0
    elim = ~alive | chain | cand
    n_e = int(elim.sum())
    if n_e < MIN_GAIN * n:
        return None
    kept = np.flatnonzero(~elim)
    k_idx = np.full(n, -1, "int64")
    k_idx[kept] = np.arange(kept.size)
    e_nodes = np.flatnonzero(elim)
    e_idx = np.full(n, -1, "int64")
    e_idx[e_nodes] = np.arange(n_e)

    ee = elim[rows] & elim[cols]
    sub = sparse.csr_matrix((np.ones(int(ee.sum()), "int8"), (e_idx[rows[ee]], e_idx[cols[ee]])),
                            shape=(n_e, n_e))
    _, label = csgraph.connected_components(sub, directed=False)
    ek = elim[rows] & ~elim[cols]
    er, ec, ew = rows[ek], cols[ek], w[ek]
    # Portals: the distinct (region, kept node) pairs; slot = rank of the portal in its region.
    pair_key = label[e_idx[er]].astype("int64") * n + ec
    pairs, pair_of = np.unique(pair_key, return_inverse=True)
    p_region, p_node = pairs // n, pairs % n
    first = np.searchsorted(p_region, p_region, side="left")
    slot = np.arange(pairs.size) - first
    n_slots = int(slot.max()) + 1 if pairs.size else 0

    # Regions side by side, each with its own copy of its portals (node n_e + pair).
    n_g = n_e + pairs.size
    gr = np.concatenate([e_idx[rows[ee]], e_idx[er], n_e + pair_of])
    gc = np.concatenate([e_idx[cols[ee]], n_e + pair_of, e_idx[er]])
    gw = np.concatenate([w[ee], ew, ew])
    g = sparse.csr_matrix((gw.astype("float64"), (gr.astype("int32"), gc.astype("int32"))),
                          shape=(n_g, n_g))

    n_regions = int(label.max()) + 1 if n_e else 0
    region_portal = np.full((n_regions, max(n_slots, 1)), -1, "int64")
    region_portal[p_region, slot] = k_idx[p_node]
    # Terms of this level, one per (fine node, portal): kept nodes map to themselves.
    t_fine, t_coarse, t_off = [kept], [np.arange(kept.size)], [np.zeros(kept.size)]
    sc_r, sc_c, sc_w = [], [], []
    for s in range(n_slots):
        dist = csgraph.dijkstra(g, directed=True, indices=n_e + np.flatnonzero(slot == s),
                                min_only=True)
        p = region_portal[label, s]
        ok = (p >= 0) & np.isfinite(dist[:n_e])
        t_fine.append(e_nodes[ok])
        t_coarse.append(p[ok])
        t_off.append(dist[:n_e][ok])
        # Shortcuts from the slot-s portal to the region's later portals.
        later = np.flatnonzero(slot > s)
        from_p = region_portal[p_region[later], s]
        ok = (from_p >= 0) & np.isfinite(dist[n_e + later])
        sc_r.append(from_p[ok])
        sc_c.append(k_idx[p_node[later]][ok])
        sc_w.append(dist[n_e + later][ok])
    kk = ~elim[rows] & ~elim[cols]
    r = np.concatenate([k_idx[rows[kk]], *sc_r, *sc_c])
    c = np.concatenate([k_idx[cols[kk]], *sc_c, *sc_r])
    cw = np.concatenate([w[kk], *sc_w, *sc_w])
    # Shortcuts are often longer than a two-edge way round: drop those before the next level.
    coarse = _drop_dominated(_dedup_min(r, c, cw, kept.size))
    return coarse, kept, (np.concatenate(t_fine), np.concatenate(t_coarse), np.concatenate(t_off))


def reduce_graph(matrix: sparse.csr_matrix, sources: np.ndarray, *,
                 max_levels: int = MAX_LEVELS) -> Reduction:
    """Reduce a symmetric CSR graph (no self-loops, no duplicate entries) for the given sources.

    Levels are added while each removes at least ``MIN_GAIN`` of the nodes left; the levels'
    terms are composed into one, so the expansion is a single gather and ``reduceat``.
    """
    m = sparse.csr_matrix(matrix)
    n = m.shape[0]
    sources = np.asarray(sources, dtype="int64")
    keep = np.zeros(n, dtype=bool)
    keep[sources] = True
    original = np.arange(n)
    # Terms of the original nodes on the current graph: (node, current node, offset).
    tv, tq, to = np.arange(n), np.arange(n), np.zeros(n)
    sizes: list[int] = []
    for _ in range(max_levels):
        m_n = m.shape[0]
        step = _reduce_once(m, keep)
        if step is None:
            break
        m, kept, (lf, lc, lo) = step
        order = np.argsort(lf, kind="stable")
        lc, lo = lc[order], lo[order]
        per = np.bincount(lf, minlength=m_n)
        cnt = per[tq]
        idx = _ranges((np.cumsum(per) - per)[tq], cnt)
        # Compose: a term (v, q, o) becomes (v, q', o + o') for every term (q, q', o') of q.
        key, to = min_by_key(np.repeat(tv, cnt) * (kept.size + 1) + lc[idx],
                              np.repeat(to, cnt) + lo[idx])
        tv, tq = key // (kept.size + 1), key % (kept.size + 1)
        keep, original = keep[kept], original[kept]
        sizes.append(int(kept.size))
    # A node without any term (no portal reaches it) reads the sentinel, which is inf.
    lonely = np.flatnonzero(np.bincount(tv, minlength=n) == 0)
    if lonely.size:
        tv = np.concatenate([tv, lonely])
        tq = np.concatenate([tq, np.full(lonely.size, m.shape[0])])
        to = np.concatenate([to, np.zeros(lonely.size)])
        order = np.argsort(tv, kind="stable")
        tv, tq, to = tv[order], tq[order], to[order]
    count = np.bincount(tv, minlength=n)
    starts = np.cumsum(count) - count
    # Nodes with one term, with two or three, and with more, each padded with the sentinel to
    # its group's widest: three gathers, whatever the spread of counts.
    groups = []
    sentinel = m.shape[0]
    for lo, hi in ((1, 1), (2, 3), (4, int(count.max(initial=0)))):
        nodes = np.flatnonzero((count >= lo) & (count <= hi))
        if nodes.size == 0:
            continue
        width = int(count[nodes].max())
        at = starts[nodes][None, :] + np.arange(width)[:, None]
        pad = np.arange(width)[:, None] >= count[nodes][None, :]
        at = np.where(pad, 0, at)
        groups.append((nodes, np.where(pad, sentinel, tq[at]), np.where(pad, 0.0, to[at])))
    pos = np.full(n, -1, "int64")
    pos[original] = np.arange(original.size)
    return Reduction(matrix=m, sources=pos[sources], groups=tuple(groups), original=original,
                     levels=tuple(sizes), n_nodes=n)
