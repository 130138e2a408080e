"""Regional case: the 330 comuni of Emilia-Romagna, synthetic buildings and candidates,
single-machine path vs ``--engine dask`` (timing and equality).

    python3 benchmarks/bench_regional.py [--quick] [--scale F] [--candidates N] [--repeats R]

Writes ``benchmarks/results/regional.json``. The comuni are the real ISTAT boundaries
(``openpolis/limits_R_8_municipalities.geojson``) in the working CRS; buildings and candidates
are SYNTHETIC and seeded (no real footprints exist outside the Bologna kit):

- buildings: clusters of small axis-aligned rectangles (8-25 m x 8-20 m) scattered normally
  around random centres inside each comune (a village or a town quarter), plus scattered single
  buildings over the whole comune (farms, houses along roads); a building is kept only when its
  centre lies in the comune it was drawn for;
- candidates: rectangles of 40-400 m a side at random points inside the comuni, half of them
  drawn near a building cluster (so they overlap built-up land), half anywhere.

Two heavy steps are timed on both engines, on the same inputs:

1. TU derivation (``pattogis.urbanized.derive_tu``) over all comuni, partitioned by comune;
2. a criteria-like step over the candidates (:func:`candidate_metrics`: share inside the TU,
   built cover, buildings within 200 m, compactness) through ``pattogis.engine.map_frame``,
   partitioned by comune, with buildings and TU shared by all partitions.

The engines run turn by turn (local, dask, local, dask) so that both see the same load; the
dask timings exclude the cluster start, which is reported on its own. Equality is checked
exactly (per comune areas, per candidate values).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from pattogis import config, engine, urbanized  # noqa: E402
from pattogis.errors import MissingDataError  # noqa: E402

# Densities of the full case (per km²): about 165,000 buildings over the region's 22,450 km²,
# an eighth of the density of the Bologna footprints (62 per km²), so that the whole benchmark
# (two runs per engine) stays near a minute and a half here.
CLUSTERS_PER_KM2 = 0.06
MEAN_CLUSTER_SIZE = 100
SCATTER_PER_KM2 = 1.5
NEAR_M = 200.0  # radius of the "buildings within" figure of candidate_metrics


def raw_dir() -> Path:
    import os

    s = config.settings()
    d = os.environ.get(s.get("raw_dir_env", "PATTOGIS_RAW")) or str(REPO / s["raw_dir_default"])
    return Path(d)


def regional_comuni(path: str | Path | None = None, *, crs: str | None = None) -> gpd.GeoDataFrame:
    """The 330 comuni of Emilia-Romagna: ``istat``, ``name``, ``area_ha``, geometry (metric CRS)."""
    path = Path(path) if path else raw_dir() / "openpolis" / "limits_R_8_municipalities.geojson"
    if not path.exists():
        raise MissingDataError(f"regional boundaries not found at {path} "
                               "(openpolis/geojson-italy, see SOURCES.md of the raw kit)")
    g = gpd.read_file(path, columns=["com_istat_code", "name"], engine="pyogrio")
    g = g.rename(columns={"com_istat_code": "istat"}).to_crs(crs or config.working_crs())
    g["istat"] = g["istat"].astype(str).str.zfill(6)
    g["geometry"] = g.geometry.make_valid()
    g["area_ha"] = g.geometry.area / 1e4
    return g.sort_values("istat").reset_index(drop=True)[["istat", "name", "area_ha", "geometry"]]


def _points_in(comuni: gpd.GeoDataFrame, counts: np.ndarray, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``counts[i]`` uniform random points inside comune i: (x, y, comune position)."""
    counts = np.asarray(counts, dtype=np.int64)
    pts = comuni.geometry.sample_points(size=counts, rng=rng)
    xs, ys, owner = [], [], []
    for i, mp in enumerate(pts.values):
        if counts[i] == 0 or mp is None or mp.is_empty:
            continue
        c = shapely.get_coordinates(mp)
        xs.append(c[:, 0])
        ys.append(c[:, 1])
        owner.append(np.full(len(c), i, dtype=np.int64))
    if not xs:
        return np.empty(0), np.empty(0), np.empty(0, dtype=np.int64)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(owner)


def synthetic_buildings(comuni: gpd.GeoDataFrame, *, seed: int = 0, scale: float = 1.0,
                        clusters_per_km2: float = CLUSTERS_PER_KM2,
                        mean_cluster_size: float = MEAN_CLUSTER_SIZE,
                        scatter_per_km2: float = SCATTER_PER_KM2) -> gpd.GeoDataFrame:
    """Seeded synthetic footprints: ``comune_istat``, ``area_m2``, geometry (comuni's CRS).

    ``scale`` multiplies both densities. Each comune gets at least one cluster.
    """
    rng = np.random.default_rng(seed)
    km2 = comuni.geometry.area.to_numpy() / 1e6
    n_clusters = np.maximum(1, rng.poisson(km2 * clusters_per_km2 * scale))
    cx, cy, cowner = _points_in(comuni, n_clusters, rng)
    size = np.maximum(5, rng.poisson(mean_cluster_size, len(cx)))
    sigma = rng.uniform(60.0, 220.0, len(cx))  # spread of the cluster (m)
    rep = np.repeat(np.arange(len(cx)), size)
    bx = cx[rep] + rng.normal(0.0, 1.0, len(rep)) * sigma[rep]
    by = cy[rep] + rng.normal(0.0, 1.0, len(rep)) * sigma[rep]
    bowner = cowner[rep]
    n_scatter = rng.poisson(km2 * scatter_per_km2 * scale)
    sx, sy, sowner = _points_in(comuni, n_scatter, rng)
    x = np.concatenate([bx, sx])
    y = np.concatenate([by, sy])
    owner = np.concatenate([bowner, sowner])
    geoms = comuni.geometry.to_numpy()
    shapely.prepare(geoms)
    keep = shapely.contains_xy(geoms[owner], x, y)  # cluster spread may cross the boundary
    x, y, owner = x[keep], y[keep], owner[keep]
    w = rng.uniform(8.0, 25.0, len(x))
    h = rng.uniform(8.0, 20.0, len(x))
    boxes = shapely.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2)
    out = gpd.GeoDataFrame({"comune_istat": comuni["istat"].to_numpy()[owner],
                            "area_m2": w * h}, geometry=boxes, crs=comuni.crs)
    return out.sort_values("comune_istat", kind="stable").reset_index(drop=True)


def synthetic_candidates(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame, n: int, *,
                         seed: int = 1) -> gpd.GeoDataFrame:
    """``n`` seeded candidate rectangles: ``cand_id``, ``comune_istat``, geometry.

    Half are centred on a random building (so they overlap built-up land), half anywhere in a
    comune (chosen with probability proportional to area). A candidate belongs to the comune
    of its centre.
    """
    rng = np.random.default_rng(seed)
    n_near = n // 2
    pick = rng.integers(0, len(buildings), n_near)
    c = shapely.get_coordinates(shapely.centroid(buildings.geometry.to_numpy()[pick]))
    near_x = c[:, 0] + rng.normal(0, 100.0, n_near)
    near_y = c[:, 1] + rng.normal(0, 100.0, n_near)
    area = comuni.geometry.area.to_numpy()
    per = rng.multinomial(n - n_near, area / area.sum())
    fx, fy, _ = _points_in(comuni, per, rng)
    x = np.concatenate([near_x, fx])
    y = np.concatenate([near_y, fy])
    w = rng.uniform(40.0, 400.0, len(x))
    h = rng.uniform(40.0, 400.0, len(x))
    geoms = shapely.box(x - w / 2, y - h / 2, x + w / 2, y + h / 2)
    pts = gpd.GeoDataFrame(geometry=gpd.points_from_xy(x, y), crs=comuni.crs)
    hit = gpd.sjoin(pts, comuni[["istat", "geometry"]], predicate="within", how="left")
    hit = hit[~hit.index.duplicated(keep="first")]
    out = gpd.GeoDataFrame({"comune_istat": hit["istat"].to_numpy()}, geometry=geoms,
                           crs=comuni.crs)
    out = out[out["comune_istat"].notna()].reset_index(drop=True)  # centre outside the region
    out.insert(0, "cand_id", [f"C{i:06d}" for i in range(len(out))])
    return out


def _within_box(geoms: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """The geometries whose bounding box meets the box, in their original order."""
    b = shapely.bounds(geoms)
    return geoms[(b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0)]


def candidate_metrics(cands: gpd.GeoDataFrame, *, buildings: gpd.GeoDataFrame,
                      tu: gpd.GeoDataFrame, near_m: float = NEAR_M) -> gpd.GeoDataFrame:
    """Criteria-like figures per candidate (metric CRS of the inputs; one row per input row).

    - ``area_ha``; ``compactness`` = 4πA/P² (1 for a circle);
    - ``share_inside_tu``: share of the candidate's area inside the TU (0..1);
    - ``built_cover``: share of its area covered by building footprints (0..1, overlaps of
      footprints counted twice, as in a plain sum of intersections);
    - ``n_buildings_near``: buildings within ``near_m`` metres of it.
    Buildings and TU are the shared layers: every partition sees all of them, so a candidate
    near a comune border counts the neighbours' buildings too.
    """
    g = cands.geometry.to_numpy()
    a = shapely.area(g)
    # Only the shared features near this partition: a partition's cost then follows its own
    # size, not the size of the region. Original order is kept, and hits are summed in that
    # order, so the sums are bit-identical whatever the partitioning.
    x0, y0, x1, y1 = shapely.total_bounds(g) + np.array([-near_m, -near_m, near_m, near_m])
    b_geoms = _within_box(buildings.geometry.to_numpy(), x0, y0, x1, y1)
    # Single parts: intersecting a box with a comune-wide MultiPolygon is needlessly slow.
    tu_geoms = _within_box(shapely.get_parts(tu.geometry.to_numpy()), x0, y0, x1, y1)

    def overlap_share(others: np.ndarray) -> np.ndarray:
        i, j = shapely.STRtree(others).query(g, predicate="intersects")
        order = np.lexsort((j, i))
        i, j = i[order], j[order]
        inter = shapely.area(shapely.intersection(g[i], others[j]))
        return np.bincount(i, weights=inter, minlength=len(g)) / a

    near_i, _ = shapely.STRtree(b_geoms).query(g, predicate="dwithin", distance=near_m)
    out = gpd.GeoDataFrame(
        {
            "cand_id": cands["cand_id"].to_numpy(),
            "comune_istat": cands["comune_istat"].to_numpy(),
            "area_ha": a / 1e4,
            "compactness": 4 * np.pi * a / shapely.length(g) ** 2,
            "share_inside_tu": overlap_share(tu_geoms),
            "built_cover": overlap_share(b_geoms),
            "n_buildings_near": np.bincount(near_i, minlength=len(g)),
        },
        geometry=g, crs=cands.crs, index=cands.index,
    )
    return out


def tu_equal(a: gpd.GeoDataFrame, b: gpd.GeoDataFrame) -> dict[str, Any]:
    """Per-comune comparison of two TU results (same comuni, same order)."""
    same_order = list(a["comune_istat"]) == list(b["comune_istat"])
    diff = np.abs(a["area_ha"].to_numpy() - b["area_ha"].to_numpy())
    geom_eq = bool(np.all(shapely.equals_exact(a.geometry.to_numpy(), b.geometry.to_numpy(),
                                               tolerance=0.0)))
    return {"same_comuni_order": same_order, "areas_identical": bool(same_order and
                                                                     (diff == 0).all()),
            "max_abs_area_diff_ha": float(diff.max()) if len(diff) else 0.0,
            "geometries_identical": geom_eq}


def frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        return True
    except AssertionError:
        return False


def main() -> None:
    from _common import case, interleaved, summary_row, write_result

    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a tenth of the buildings, a tenth "
                    "of the candidates, one run")
    ap.add_argument("--scale", type=float, default=None, help="density factor (default 1)")
    ap.add_argument("--candidates", type=int, default=None, help="default 30,000")
    ap.add_argument("--repeats", type=int, default=None, help="runs per engine (default 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    scale = a.scale if a.scale is not None else (0.1 if a.quick else 1.0)
    n_cand = a.candidates if a.candidates is not None else (3_000 if a.quick else 30_000)
    repeats = a.repeats if a.repeats is not None else (1 if a.quick else 2)

    t = time.perf_counter()
    comuni = regional_comuni()
    buildings = synthetic_buildings(comuni, seed=a.seed, scale=scale)
    cands = synthetic_candidates(comuni, buildings, n_cand, seed=a.seed + 1)
    t_gen = time.perf_counter() - t
    print(f"regional case: {len(comuni)} comuni, {len(buildings):,} synthetic buildings, "
          f"{len(cands):,} candidates (made in {t_gen:.1f} s)", flush=True)
    params = urbanized.tu_params()

    s = engine.dask_settings()
    t = time.perf_counter()
    with engine.local_cluster() as client:
        t_start = time.perf_counter() - t
        # Turn by turn, so both engines see the same machine load.
        t_tu, tu = interleaved({
            "local": lambda: urbanized.derive_tu(comuni, buildings, params=params,
                                                 engine="local"),
            "dask": lambda: urbanized.derive_tu(comuni, buildings, params=params, engine="dask"),
        }, repeats, log=lambda m: print("TU", m, flush=True))
        kw = {"buildings": buildings, "tu": tu["local"]}
        t_c, m = interleaved({
            "local": lambda: engine.map_frame(candidate_metrics, cands, by="comune_istat",
                                              engine="local", **kw),
            "dask": lambda: engine.map_frame(candidate_metrics, cands, by="comune_istat",
                                             engine="dask", client=client, **kw),
        }, repeats, log=lambda m: print("candidates", m, flush=True))
    t_local, t_dask, tu_local, tu_dask = t_tu["local"], t_tu["dask"], tu["local"], tu["dask"]
    c_local, c_dask, m_local, m_dask = t_c["local"], t_c["dask"], m["local"], m["dask"]

    eq_tu = tu_equal(tu_local, tu_dask)
    eq_c = frames_equal(m_local, m_dask)
    med = {k: float(np.median(v)) for k, v in
           {"tu_local": t_local, "tu_dask": t_dask, "c_local": c_local, "c_dask": c_dask}.items()}
    n_tu = int((tu_local["area_ha"] > 0).sum())
    result = {
        "title": "Regional case (330 comuni of Emilia-Romagna, synthetic buildings and "
                 "candidates): single machine vs dask LocalCluster, same inputs",
        "params": {"quick": a.quick, "scale": scale, "seed": a.seed, "repeats": repeats,
                   "clusters_per_km2": CLUSTERS_PER_KM2 * scale,
                   "mean_cluster_size": MEAN_CLUSTER_SIZE,
                   "scatter_per_km2": SCATTER_PER_KM2 * scale,
                   "dask_workers": s.n_workers, "threads_per_worker": s.threads_per_worker,
                   "memory_limit_per_worker": s.memory_limit, "tu_params": {
                       k: v for k, v in params.items() if not k.startswith("_")}},
        "sizes": {"comuni": len(comuni), "buildings": len(buildings),
                  "candidates": len(cands), "comuni_with_tu": n_tu,
                  "tu_total_ha": round(float(tu_local["area_ha"].sum()), 4),
                  "generation_s": round(t_gen, 2)},
        "cases": [
            case("tu_derivation", "local", t_local),
            case("tu_derivation", "dask", t_dask),
            case("candidate_metrics", "local", c_local),
            case("candidate_metrics", "dask", c_dask),
        ],
        "dask_cluster_start_s": round(t_start, 2),
        "equality": {"tu": eq_tu, "candidate_metrics_identical": eq_c},
        "summary": [
            summary_row(f"TU derivation, {len(comuni)} comuni, {len(buildings):,} buildings, "
                        "dask", med["tu_dask"], "s", peer="local (1 process)",
                        peer_value=med["tu_local"],
                        note=f"{s.n_workers} workers; identical areas: "
                             f"{eq_tu['areas_identical']}"),
            summary_row(f"candidate metrics, {len(cands):,} candidates, dask", med["c_dask"],
                        "s", peer="local (1 process)", peer_value=med["c_local"],
                        note=f"identical values: {eq_c}"),
            summary_row("dask LocalCluster start", round(t_start, 2), "s",
                        note="not included in the dask times"),
            summary_row("dask result identical to local", float(eq_tu["areas_identical"]
                                                                 and eq_tu[
                                                                     "geometries_identical"]
                                                                 and eq_c),
                        "bool", target="1", met=bool(eq_tu["areas_identical"] and eq_c)),
        ],
    }
    path = write_result("regional", result, a.out)
    print(f"wrote {path}")
    if not (eq_tu["areas_identical"] and eq_c):
        sys.exit("dask and local results differ")


if __name__ == "__main__":
    main()
