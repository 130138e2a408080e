"""Benchmark of pattogis.criteria.compute_criteria on the real layer set.

Run: ``python3 benchmarks/bench_criteria.py [--runs N] [--sites N]``; writes
``benchmarks/results/criteria.json``. Needs the built layer set (``pattogis data build``).

Sites: the 433 derived ``candidates`` and ``--sites`` synthetic sites (irregular polygons of
0.5-20 ha scattered over the 55 comuni, seeded). Timed, median of ``--runs`` runs: all twelve
criteria with ``compute_criteria`` (and each criterion alone), against a peer written the way
one would with the usual libraries:

* land take, share in TU, host comune: ``geopandas.overlay`` + groupby;
* bus access: ``geopandas.sjoin(predicate='dwithin')`` + distances;
* cycle and hub distances: ``geopandas.sjoin_nearest``;
* rail distance: networkx ``multi_source_dijkstra_path_length`` + straight-line fallback;
* slope, elevation, heat: ``exactextract.exact_extract`` called once per raster.

The peer's values are compared with pattogis's (max absolute difference per criterion).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import networkx as nx
import numpy as np
import pandas as pd
import rasterio
import shapely
from scipy.spatial import cKDTree
from shapely import affinity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved, med  # noqa: E402

from pattogis import layers  # noqa: E402
from pattogis.criteria import CriteriaContext, compute_criteria, names  # noqa: E402
from pattogis.io import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "criteria.json"


def machine() -> dict[str, Any]:
    import exactextract
    import scipy

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
            "geopandas": gpd.__version__, "shapely": shapely.__version__,
            "exactextract": exactextract.__version__, "scipy": scipy.__version__,
            "networkx": nx.__version__, "numpy": np.__version__}


def synthetic_sites(comuni: gpd.GeoDataFrame, n: int, seed: int) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    area = shapely.union_all(comuni.geometry.to_numpy())
    minx, miny, maxx, maxy = area.bounds
    pts = shapely.points(rng.uniform(minx, maxx, 4 * n), rng.uniform(miny, maxy, 4 * n))
    pts = pts[shapely.contains(area, pts)][:n]
    r = np.sqrt(rng.uniform(5e3, 2e5, len(pts)) / np.pi)
    base = shapely.buffer(pts, r, quad_segs=4)
    ang, sx = rng.uniform(0, 180, len(pts)), rng.uniform(0.6, 1.6, len(pts))
    xy = shapely.get_coordinates(pts)
    geoms = [affinity.rotate(affinity.scale(g, s, 1 / s, origin=(x, y)), a, origin=(x, y))
             for g, a, s, (x, y) in zip(base, ang, sx, xy, strict=True)]
    return gpd.GeoDataFrame({"site_id": [f"SYN{i:05d}" for i in range(len(geoms))]},
                            geometry=geoms, crs=comuni.crs)


def peer(sites: gpd.GeoDataFrame, ctx: CriteriaContext) -> pd.DataFrame:
    """The same criteria written with geopandas overlay/sjoin, networkx and exactextract."""
    from exactextract import exact_extract

    p = ctx.params
    s = sites[["geometry"]].reset_index(drop=True)
    s["sid"] = np.arange(len(s))
    out = pd.DataFrame(index=s.index)
    area = s.area
    out["area_ha"] = area / 1e4
    out["compactness"] = 4 * np.pi * area / s.length**2
    tu = gpd.GeoDataFrame(geometry=[ctx.tu.union_all()], crs=s.crs)
    inter = gpd.overlay(s, tu, how="intersection", keep_geom_type=True)
    inside = inter.assign(a=inter.area).groupby("sid")["a"].sum().reindex(s["sid"], fill_value=0)
    out["land_take_ha"] = (area - inside.to_numpy()).clip(lower=0) / 1e4
    out["share_inside_tu"] = (inside.to_numpy() / area).clip(0, 1)
    com = ctx.comuni
    ov = gpd.overlay(s, com[["istat", "fragility_index", "geometry"]], how="intersection",
                     keep_geom_type=True)
    ov["a"] = ov.area
    host = ov.sort_values(["sid", "a"], ascending=[True, False]).drop_duplicates("sid")
    out["fragility"] = host.set_index("sid")["fragility_index"].reindex(s["sid"]).to_numpy()
    # bus access
    bands = p["bus_access"]["bands"]
    far = float(bands[-1]["max_distance_m"])
    j = gpd.sjoin(s, ctx.bus_stops[["n_lines", "geometry"]], predicate="dwithin", distance=far)
    d = s.geometry.to_numpy()[j["sid"].to_numpy()]
    dist = shapely.distance(d, ctx.bus_stops.geometry.to_numpy()[
        ctx.bus_stops.index.get_indexer(j["index_right"])])
    w = np.select([dist <= float(b["max_distance_m"]) for b in bands],
                  [float(b["weight"]) for b in bands], 0.0)
    out["bus_access"] = pd.Series(w * j["n_lines"].to_numpy(), index=j["sid"].to_numpy()) \
        .groupby(level=0).sum().reindex(s["sid"], fill_value=0.0).to_numpy()
    # nearest distances
    for col, layer in (("cycle_distance_m", ctx.cycleways), ("hub_distance_m", ctx.hubs)):
        nn = gpd.sjoin_nearest(s, layer[["geometry"]], distance_col="d")
        out[col] = nn.groupby("sid")["d"].min().reindex(s["sid"]).to_numpy()
    cov = ctx.coverage.get("cycleways")
    if cov is not None:
        org = _origins(s.geometry.to_numpy())
        out.loc[~shapely.intersects(cov, org), "cycle_distance_m"] = np.nan
    # rail with networkx
    out["rail_distance_m"] = _peer_rail(s, ctx)
    # rasters, one exactextract call each
    mc = p["rasters"]["min_coverage"]
    for col, r in (("slope_mean_deg", "slope"), ("elevation_mean_m", "dem"),
                   ("heat_mean_c", "heat")):
        with rasterio.open(ctx.rasters[r]) as ds:
            cell = abs(ds.res[0] * ds.res[1])
        z = exact_extract(str(ctx.rasters[r]), s[["geometry"]], ["mean", "count"], output="pandas")
        covr = z["count"].to_numpy() * cell / area.to_numpy()
        out[col] = np.where(covr >= float(mc[r]) - 1e-9, z["mean"].to_numpy(), np.nan)
    return out


def _origins(g: np.ndarray) -> np.ndarray:
    c = shapely.centroid(g)
    return np.where(shapely.contains(g, c), c, shapely.point_on_surface(g))


def _peer_rail(s: gpd.GeoDataFrame, ctx: CriteriaContext) -> np.ndarray:
    net = ctx.params["network"]
    thr, detour = float(net["snap_threshold_m"]), float(net["detour_factor"])
    g = ctx.graph
    gx = nx.Graph()
    gx.add_weighted_edges_from(zip(g.row.tolist(), g.col.tolist(), g.weight.tolist(), strict=True))
    st = shapely.get_coordinates(shapely.centroid(ctx.rail_stations.geometry.to_numpy()))
    tree = cKDTree(g.xy)
    d_st, i_st = tree.query(st)
    src = []
    for k in np.flatnonzero(d_st <= thr):
        # The station link as pattogis stores it (a multiple of 2**-10 m): the same graph.
        gx.add_edge(("s", int(k)), int(i_st[k]), weight=float(d_st[k]))
        src.append(("s", int(k)))
    dist = nx.multi_source_dijkstra_path_length(gx, src)
    o = shapely.get_coordinates(_origins(s.geometry.to_numpy()))
    d_o, i_o = tree.query(o)
    d_net = np.array([d_o[k] + dist.get(int(i_o[k]), np.inf) if d_o[k] <= thr else np.inf
                      for k in range(len(o))])
    out_st = st[d_st > thr]
    d_out = cKDTree(out_st).query(o)[0] * detour if len(out_st) else np.full(len(o), np.inf)
    d_all = cKDTree(st).query(o)[0] * detour
    return np.where(np.isfinite(d_net), np.minimum(d_net, d_out), d_all)



def compare(ours: pd.DataFrame, theirs: pd.DataFrame) -> dict[str, Any]:
    res = {}
    for c in theirs.columns:
        a = ours[c].to_numpy(dtype=float)
        b = theirs[c].to_numpy(dtype=float)
        both = np.isfinite(a) & np.isfinite(b)
        res[c] = {"max_abs_diff": float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0,
                  "nan_pattern_equal": bool(np.array_equal(np.isfinite(a), np.isfinite(b)))}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sites", type=int, default=1500)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    t0 = time.perf_counter()
    if not layers.exists():
        raise SystemExit("layer set not built: run `pattogis data build` first")
    ctx = CriteriaContext.from_layers()
    cand = layers.open_layer("candidates")
    comuni = layers.open_layer("comuni")
    syn = synthetic_sites(comuni, a.sites, seed=4)
    sites = gpd.GeoDataFrame(pd.concat([cand[["site_id", "geometry"]], syn], ignore_index=True),
                             crs=cand.crs)
    times, last = interleaved({
        "pattogis": lambda: compute_criteria(sites, ctx),
        "peer": lambda: peer(sites, ctx),
    }, a.runs)
    per: dict[str, float] = {}
    for n in names():
        t = []
        for _ in range(a.runs):
            s = time.perf_counter()
            compute_criteria(sites, ctx, [n])
            t.append(time.perf_counter() - s)
        per[n] = med(t)
    ours = last["pattogis"]
    out = {
        "benchmark": "all twelve site criteria: pattogis.criteria vs geopandas/networkx/"
                     "exactextract written directly",
        "machine": machine(),
        "sites": {"candidates": len(cand), "synthetic": len(syn), "total": len(sites)},
        "runs": a.runs,
        "seconds": times, "median_s": {k: med(v) for k, v in times.items()},
        "speedup_vs_peer": med(times["peer"]) / med(times["pattogis"]),
        "per_criterion_median_s": per,
        "agreement_with_peer": compare(ours, last["peer"]),
        "missing_counts": {n: int(ours[n].isna().sum()) for n in names()},
        "rail_distance_method": ours["rail_distance_method"].value_counts().to_dict(),
        "total_seconds": time.perf_counter() - t0,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("median_s", "speedup_vs_peer",
                                          "per_criterion_median_s")}, indent=1))


if __name__ == "__main__":
    main()
