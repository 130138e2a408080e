"""Benchmark of pattogis.criteria.zonal against exactextract called directly and rasterstats.

Run: ``python3 benchmarks/bench_zonal.py [--quick]``; writes ``benchmarks/results/zonal.json``.

1. Synthetic: a 10,000 x 10,000 float32 raster (10 m cells, tiled 256, deflate, a nodata patch)
   and 5,000 irregular polygons of 1-40 ha (seeded). Timed: ``pattogis.criteria.zonal_stats``
   (mean, min, max, coverage), ``exactextract.exact_extract(path, gdf, [mean, min, max, count],
   output='pandas')`` as a user would call it (default feature-sequential strategy; the
   raster-sequential strategy is timed once too), and ``rasterstats.zonal_stats`` (cell-centre
   rasterisation). Accuracy: area-weighted mean absolute error of each method's mean against an
   independent reference computed with shapely (area of every cell-polygon intersection) on a
   sample of polygons.
2. Coverage reuse: three rasters on one grid in one call (coverage fractions computed once per
   polygon) against three separate calls.
3. Real DEM: the SRTM DEM and the slope of the built layer set (or the SRTM clip of the kit warped
   to 90 m in EPSG:25832 when the layer set is not built), with the candidate sites and 1,500
   OSM land-use polygons of Bologna (seeded sample).

Timings are wall clock, one process, median of ``--runs`` runs interleaved between the methods
(rasterstats: one run, it takes about a minute on the synthetic set). Ratios are pattogis / peer
(< 1 means pattogis is faster) and peer / pattogis for rasterstats (the speed-up).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from shapely import affinity

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import interleaved, med  # noqa: E402

from pattogis.criteria.zonal import zonal_stats  # noqa: E402
from pattogis.io import atomic_write_text  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "zonal.json"
CRS = "EPSG:25832"
ND = -9999.0
X0, Y0 = 600000.0, 4950000.0
OPS = ["mean", "min", "max", "count"]


def machine() -> dict[str, Any]:
    import exactextract
    import rasterstats
    import scipy

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
            "exactextract": exactextract.__version__, "rasterstats": rasterstats.__version__,
            "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
            "shapely": shapely.__version__, "numpy": np.__version__, "scipy": scipy.__version__}


def write_raster(path: Path, n: int, res: float, seed: int, *, phase: float) -> Path:
    """A smooth field plus noise, with a nodata patch; written by row blocks to bound memory."""
    rng = np.random.default_rng(seed)
    prof = {"driver": "GTiff", "width": n, "height": n, "count": 1, "dtype": "float32",
            "crs": CRS, "transform": rasterio.Affine(res, 0, X0, 0, -res, Y0), "nodata": ND,
            "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
            "predictor": 3, "zlevel": 1}
    step = 1024
    with rasterio.open(path, "w", **prof) as d:
        xx = np.arange(n, dtype="float32")[None, :]
        for r0 in range(0, n, step):
            yy = np.arange(r0, min(r0 + step, n), dtype="float32")[:, None]
            a = (100 + 50 * np.sin(xx / 700 + phase) * np.cos(yy / 900)
                 + 20 * np.sin((xx + yy) / 130)).astype("float32")
            a += np.round(rng.normal(0, 2, a.shape), 1).astype("float32")
            lo, hi = int(0.2 * n), int(0.23 * n)  # nodata patch
            rows = slice(max(lo - r0, 0), max(min(hi - r0, a.shape[0]), 0))
            a[rows, int(0.3 * n):int(0.34 * n)] = ND
            d.write(a, 1, window=rasterio.windows.Window(0, r0, n, a.shape[0]))
    return path


def polygons(n: int, extent_m: float, seed: int, x0: float = X0, y_top: float = Y0
             ) -> gpd.GeoDataFrame:
    """Irregular polygons of 1-40 ha: squashed, rotated 24-gons, some crossing raster edges."""
    rng = np.random.default_rng(seed)
    cx = rng.uniform(x0, x0 + extent_m, n)
    cy = rng.uniform(y_top - extent_m, y_top, n)
    r = np.sqrt(rng.uniform(1e4, 4e5, n) / np.pi)
    base = shapely.buffer(shapely.points(cx, cy), r, quad_segs=6)
    ang, sx = rng.uniform(0, 180, n), rng.uniform(0.5, 1.5, n)
    geoms = [affinity.rotate(affinity.scale(g, s, 1 / s, origin=(x, y)), a, origin=(x, y))
             for g, a, s, x, y in zip(base, ang, sx, cx, cy, strict=True)]
    return gpd.GeoDataFrame({"pid": np.arange(n)}, geometry=geoms, crs=CRS)


def reference_means(geoms: np.ndarray, path: Path) -> np.ndarray:
    """Exact coverage-weighted means by brute force: the area of every cell-polygon intersection
    (shapely), independent of exactextract."""
    out = np.full(len(geoms), np.nan)
    with rasterio.open(path) as ds:
        t = ds.transform
        for i, g in enumerate(geoms):
            minx, miny, maxx, maxy = g.bounds
            c0 = max(int(np.floor((minx - t.c) / t.a)), 0)
            c1 = min(int(np.ceil((maxx - t.c) / t.a)), ds.width)
            r0 = max(int(np.floor((t.f - maxy) / -t.e)), 0)
            r1 = min(int(np.ceil((t.f - miny) / -t.e)), ds.height)
            if c1 <= c0 or r1 <= r0:
                continue
            v = ds.read(1, window=rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0), masked=True)
            cc, rr = np.meshgrid(np.arange(c0, c1), np.arange(r0, r1))
            x = t.c + cc.ravel() * t.a
            y = t.f + rr.ravel() * t.e
            boxes = shapely.box(x, y + t.e, x + t.a, y)
            w = shapely.area(shapely.intersection(boxes, g))
            ok = ~np.ma.getmaskarray(v).ravel() & (w > 0)
            if ok.any():
                out[i] = float(np.sum(w[ok] * v.data.ravel()[ok]) / np.sum(w[ok]))
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def accuracy(means: np.ndarray, ref: np.ndarray, area: np.ndarray) -> dict[str, Any]:
    ok = np.isfinite(ref)
    got = np.isfinite(means) & ok
    err = np.abs(means[got] - ref[got])
    return {"polygons": int(ok.sum()), "no_value": int((ok & ~np.isfinite(means)).sum()),
            "area_weighted_mean_abs_error": float(np.sum(area[got] * err) / np.sum(area[got]))
            if got.any() else None,
            "max_abs_error": float(err.max()) if got.any() else None}


def ee_direct(path: Path, gdf: gpd.GeoDataFrame, strategy: str = "feature-sequential"
              ) -> pd.DataFrame:
    from exactextract import exact_extract

    return exact_extract(str(path), gdf, OPS, output="pandas", strategy=strategy)


def rs_direct(path: Path, gdf: gpd.GeoDataFrame) -> pd.DataFrame:
    from rasterstats import zonal_stats as rzs

    return pd.DataFrame(rzs(gdf.geometry.to_numpy(), str(path), stats=OPS, nodata=ND))



def synthetic(tmp: Path, n_cells: int, n_polys: int, runs: int, n_ref: int,
              log: Callable[[str], None]) -> dict[str, Any]:
    res = 10.0
    t0 = time.perf_counter()
    paths = [write_raster(tmp / f"syn{i}.tif", n_cells, res, seed=i, phase=i) for i in range(3)]
    log(f"  rasters written in {time.perf_counter() - t0:.0f} s")
    gdf = polygons(n_polys, n_cells * res, seed=1)
    p1 = paths[0]
    times, last = interleaved({
        "pattogis": lambda: zonal_stats(gdf, p1),
        "exactextract": lambda: ee_direct(p1, gdf),
    }, runs)
    log(f"  pattogis {times['pattogis']} exactextract {times['exactextract']}")
    t_rs_seq, ee_rs = timed(lambda: ee_direct(p1, gdf, "raster-sequential"))
    t_rs, rs = timed(lambda: rs_direct(p1, gdf))
    log(f"  exactextract raster-sequential {t_rs_seq:.1f} s, rasterstats {t_rs:.1f} s")
    pz, ee = last["pattogis"], last["exactextract"]
    same = np.allclose(pz["mean"].to_numpy(), ee["mean"].to_numpy(dtype=float), equal_nan=True,
                       rtol=0, atol=1e-9)
    sample = np.random.default_rng(5).choice(n_polys, min(n_ref, n_polys), replace=False)
    geoms = gdf.geometry.to_numpy()
    t_ref, ref = timed(lambda: reference_means(geoms[sample], p1))
    area = shapely.area(geoms[sample])
    acc = {
        "pattogis": accuracy(pz["mean"].to_numpy()[sample], ref, area),
        "exactextract": accuracy(ee["mean"].to_numpy(dtype=float)[sample], ref, area),
        "rasterstats": accuracy(rs["mean"].to_numpy(dtype=float)[sample], ref, area),
    }
    # Coverage reuse: three rasters on one grid, one call against three.
    named = {f"r{i}": p for i, p in enumerate(paths)}
    rt, rlast = interleaved({
        "one_call_3_rasters": lambda: zonal_stats(gdf, named),
        "three_calls": lambda: [zonal_stats(gdf, p) for p in paths],
    }, max(2, runs - 1))
    reuse_same = all(np.allclose(rlast["one_call_3_rasters"][f"r{i}_mean"],
                                 rlast["three_calls"][i]["mean"], equal_nan=True, atol=1e-9)
                     for i in range(3))
    log(f"  reuse: one call {rt['one_call_3_rasters']} three calls {rt['three_calls']}")
    return {
        "raster": {"cells": f"{n_cells}x{n_cells}", "cell_m": res, "dtype": "float32",
                   "tiling": "256x256 deflate", "nodata_patch": True},
        "polygons": {"n": n_polys, "size_ha": "1-40", "mean_cells": float(
            gdf.area.mean() / res**2)},
        "runs": runs,
        "seconds": {"pattogis": times["pattogis"], "exactextract": times["exactextract"],
                    "exactextract_raster_sequential": [t_rs_seq], "rasterstats": [t_rs]},
        "median_s": {"pattogis": med(times["pattogis"]),
                     "exactextract": med(times["exactextract"]),
                     "exactextract_raster_sequential": t_rs_seq, "rasterstats": t_rs},
        "ratio_pattogis_to_exactextract": med(times["pattogis"]) / med(times["exactextract"]),
        "ratio_pattogis_to_exactextract_raster_sequential": med(times["pattogis"]) / t_rs_seq,
        "speedup_vs_rasterstats": t_rs / med(times["pattogis"]),
        "same_means_as_exactextract": bool(same),
        "exactextract_raster_sequential_same": bool(np.allclose(
            pz["mean"].to_numpy(), ee_rs["mean"].to_numpy(dtype=float), equal_nan=True,
            atol=1e-6)),
        "accuracy_vs_shapely_reference": {"sample": len(sample), "reference_seconds": t_ref, **acc},
        "coverage_reuse": {
            "rasters_on_one_grid": 3,
            "seconds": rt, "median_s": {k: med(v) for k, v in rt.items()},
            "gain": med(rt["three_calls"]) / med(rt["one_call_3_rasters"]),
            "same_values": bool(reuse_same),
        },
    }


def real_dem(tmp: Path, runs: int, n_ref: int, n_landuse: int, log: Callable[[str], None]
             ) -> dict[str, Any]:
    from pattogis import layers

    polys: list[gpd.GeoDataFrame] = []
    if layers.exists() and layers.has_layer("candidates"):
        dem, slope = layers.raster_path("dem"), layers.raster_path("slope")
        polys.append(layers.open_layer("candidates")[["geometry"]].assign(kind="candidate"))
        polys.append(layers.open_layer("landuse_bologna")[["geometry"]].assign(kind="landuse")
                     .sample(n=n_landuse, random_state=2))
        source = "built layer set"
    else:
        dem, slope, lu = _raw_dem(tmp)
        polys.append(lu.sample(n=n_landuse, random_state=2))
        source = "raw kit (SRTM clip warped to 90 m EPSG:25832, OSM land use of Bologna)"
    gdf = gpd.GeoDataFrame(pd.concat(polys, ignore_index=True), crs=polys[0].crs).to_crs(CRS)
    g = gdf.geometry.to_numpy()
    keep = np.isin(shapely.get_type_id(g), (3, 6)) & shapely.is_valid(g) & ~shapely.is_empty(g)
    gdf = gdf[keep].reset_index(drop=True)
    times, last = interleaved({
        "pattogis": lambda: zonal_stats(gdf, dem),
        "exactextract": lambda: ee_direct(dem, gdf),
    }, runs)
    t_rs, last["rasterstats"] = timed(lambda: rs_direct(dem, gdf))
    times["rasterstats"] = [t_rs]
    sample = np.random.default_rng(6).choice(len(gdf), min(n_ref, len(gdf)), replace=False)
    geoms = gdf.geometry.to_numpy()
    ref = reference_means(geoms[sample], dem)
    area = shapely.area(geoms[sample])
    rt, rlast = interleaved({
        "one_call_dem_slope": lambda: zonal_stats(gdf, {"dem": dem, "slope": slope}),
        "two_calls": lambda: [zonal_stats(gdf, dem), zonal_stats(gdf, slope)],
    }, runs)
    log(f"  real DEM: {({k: med(v) for k, v in times.items()})}, reuse {rt}")
    return {
        "source": source, "raster": str(dem), "polygons": len(gdf),
        "polygon_kinds": gdf["kind"].value_counts().to_dict(),
        "median_cells_per_polygon": float(np.median(gdf.area) / 8100.0),
        "seconds": times, "median_s": {k: med(v) for k, v in times.items()},
        "ratio_pattogis_to_exactextract": med(times["pattogis"]) / med(times["exactextract"]),
        "speedup_vs_rasterstats": med(times["rasterstats"]) / med(times["pattogis"]),
        "same_means_as_exactextract": bool(np.allclose(
            last["pattogis"]["mean"].to_numpy(), last["exactextract"]["mean"].to_numpy(dtype=float),
            equal_nan=True, atol=1e-9)),
        "accuracy_vs_shapely_reference": {
            "sample": len(sample),
            "pattogis": accuracy(last["pattogis"]["mean"].to_numpy()[sample], ref, area),
            "exactextract": accuracy(last["exactextract"]["mean"].to_numpy(dtype=float)[sample],
                                     ref, area),
            "rasterstats": accuracy(last["rasterstats"]["mean"].to_numpy(dtype=float)[sample],
                                    ref, area),
        },
        "coverage_reuse": {"rasters_on_one_grid": 2, "seconds": rt,
                           "median_s": {k: med(v) for k, v in rt.items()},
                           "gain": med(rt["two_calls"]) / med(rt["one_call_dem_slope"])},
    }


def _raw_dem(tmp: Path) -> tuple[Path, Path, gpd.GeoDataFrame]:
    """DEM and slope from the raw SRTM clip (as the layer build does), and OSM land use."""
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    raw = Path(os.environ.get("PATTOGIS_RAW", Path(__file__).resolve().parents[2] / "shared" /
                              "data" / "raw"))
    with rasterio.open(raw / "srtm3" / "srtm3_bologna_metro_clip.tif") as src:
        tr, w, h = calculate_default_transform(src.crs, CRS, src.width, src.height, *src.bounds,
                                               resolution=90.0)
        dem = np.full((h, w), ND, "float32")
        reproject(rasterio.band(src, 1), dem, src_nodata=src.nodata, dst_transform=tr,
                  dst_crs=CRS, dst_nodata=ND, resampling=Resampling.bilinear)
    z = np.where(dem == ND, np.nan, dem).astype("float64")
    zp = np.pad(z, 1, mode="edge")
    dzdx = ((zp[:-2, 2:] + 2 * zp[1:-1, 2:] + zp[2:, 2:])
            - (zp[:-2, :-2] + 2 * zp[1:-1, :-2] + zp[2:, :-2])) / (8 * 90.0)
    dzdy = ((zp[2:, :-2] + 2 * zp[2:, 1:-1] + zp[2:, 2:])
            - (zp[:-2, :-2] + 2 * zp[:-2, 1:-1] + zp[:-2, 2:])) / (8 * 90.0)
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy)))
    slope = np.where(np.isnan(slope), ND, slope).astype("float32")
    prof = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "float32",
            "crs": CRS, "transform": tr, "nodata": ND, "tiled": True, "compress": "deflate"}
    out = []
    for name, arr in (("dem", dem), ("slope", slope)):
        p = tmp / f"{name}.tif"
        with rasterio.open(p, "w", **prof) as d:
            d.write(arr, 1)
        out.append(p)
    lu = gpd.read_file(raw / "bologna_geospatial" / "landuse_bologna.gpkg")[["geometry"]]
    return out[0], out[1], lu.assign(kind="landuse")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2,000^2 raster, 500 polygons")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    n_cells, n_polys, n_ref, n_landuse = (2000, 500, 30, 500) if a.quick else (10000, 5000, 60,
                                                                                1500)
    log = lambda s: print(s, flush=True)  # noqa: E731
    tmp = Path(tempfile.mkdtemp(prefix="bench_zonal_"))
    t0 = time.perf_counter()
    try:
        log(f"synthetic {n_cells}^2 raster, {n_polys} polygons")
        syn = synthetic(tmp, n_cells, n_polys, a.runs, n_ref, log)
        log("real DEM")
        real = real_dem(tmp, a.runs, n_ref, n_landuse, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = {
        "benchmark": "zonal statistics with exact pixel coverage: pattogis vs exactextract vs "
                     "rasterstats",
        "machine": machine(), "quick": a.quick,
        "targets": {"ratio_pattogis_to_exactextract": "<= 1.0",
                    "speedup_vs_rasterstats": ">= 3.5"},
        "synthetic": syn, "real_dem": real,
        "total_seconds": time.perf_counter() - t0,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out, json.dumps(out, indent=2, default=float) + "\n")
    log(json.dumps({"synthetic_ratio_to_exactextract": syn["ratio_pattogis_to_exactextract"],
                    "synthetic_speedup_vs_rasterstats": syn["speedup_vs_rasterstats"],
                    "coverage_reuse_gain": syn["coverage_reuse"]["gain"],
                    "real_ratio_to_exactextract": real["ratio_pattogis_to_exactextract"],
                    "real_speedup_vs_rasterstats": real["speedup_vs_rasterstats"]}, indent=1))


if __name__ == "__main__":
    main()
