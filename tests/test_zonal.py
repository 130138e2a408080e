"""Zonal statistics against hand-computed exact-coverage values on a tiny raster.

Raster (EPSG:25832): 4 x 4 cells of 10 m, extent x 0..40, y 0..40, value v[r, c] = 10 r + c
(row 0 at the top, y 30..40), cell (3, 3) is nodata (-9999). A second raster on the same grid
holds 2 v + 1; a third, on a 5 m grid, holds 7 everywhere.
"""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely

from pattogis.criteria.zonal import (
    EMPTY_GEOMETRY,
    LOW_COVERAGE,
    NODATA,
    OUTSIDE_EXTENT,
    zonal_stats,
)
from pattogis.errors import InputError

CRS = "EPSG:25832"
ND = -9999.0


def _write(path, arr, res, nodata=ND):
    prof = {"driver": "GTiff", "width": arr.shape[1], "height": arr.shape[0], "count": 1,
            "dtype": str(arr.dtype), "crs": CRS, "transform": rasterio.Affine(res, 0, 0, 0, -res, 40),
            "nodata": nodata}
    with rasterio.open(path, "w", **prof) as d:
        d.write(arr, 1)
    return path


@pytest.fixture
def rasters(tmp_path):
    r, c = np.mgrid[0:4, 0:4]
    v = (10.0 * r + c).astype("float32")
    v[3, 3] = ND
    w = np.where(v == ND, ND, 2 * v + 1).astype("float32")
    return {
        "v": _write(tmp_path / "v.tif", v, 10.0),
        "w": _write(tmp_path / "w.tif", w, 10.0),
        "fine": _write(tmp_path / "fine.tif", np.full((8, 8), 7, "int16"), 5.0, nodata=-1),
    }


# polygon, mean, min, max, coverage, reason  (v raster)
CASES = {
    "two_full_cells": (shapely.box(0, 30, 20, 40), 0.5, 0, 1, 1.0, None),
    # half of cell (0,0)=0 and all of (0,1)=1: (0.5*0 + 1*1) / 1.5
    "half_and_full": (shapely.box(5, 30, 20, 40), 1 / 1.5, 0, 1, 1.0, None),
    # triangle (0,40) (20,40) (0,20): all of (0,0)=0, half of (0,1)=1, half of (1,0)=10
    "triangle": (shapely.Polygon([(0, 40), (20, 40), (0, 20)]), (0.5 * 1 + 0.5 * 10) / 2, 0, 10,
                 1.0, None),
    # half outside the raster: cell (0,3)=3 only, on half the polygon's area
    "half_outside": (shapely.box(30, 30, 50, 40), 3.0, 3, 3, 0.5, None),
    "outside": (shapely.box(100, 100, 110, 110), math.nan, math.nan, math.nan, 0.0,
                OUTSIDE_EXTENT),
    "on_nodata": (shapely.box(30, 0, 40, 10), math.nan, math.nan, math.nan, 0.0, NODATA),
    # cell (3,2)=32 plus the nodata cell (3,3): coverage 0.5
    "half_nodata": (shapely.box(20, 0, 40, 10), 32.0, 32, 32, 0.5, None),
    # a quarter of each of the four central cells 11, 12, 21, 22
    "centre": (shapely.box(15, 15, 25, 25), (11 + 12 + 21 + 22) / 4, 11, 22, 1.0, None),
}


def _polys(crs: str = CRS) -> gpd.GeoSeries:
    return gpd.GeoSeries([c[0] for c in CASES.values()], index=list(CASES), crs=CRS).to_crs(crs)


def _check(df, prefix="", scale=1.0, shift=0.0):
    for name, (_, mean, mn, mx, cov, why) in CASES.items():
        row = df.loc[name]
        for col, want in (("mean", mean), ("min", mn), ("max", mx)):
            got = row[prefix + col]
            if math.isnan(want):
                assert math.isnan(got), (name, col)
            else:
                assert got == pytest.approx(want * scale + shift, abs=1e-6), (name, col)
        assert row[prefix + "coverage"] == pytest.approx(cov, abs=1e-9), name
        assert row[prefix + "reason"] == why, name


@pytest.mark.parametrize("tile_cells", [1, 2, 2048])
def test_exact_coverage_means(rasters, tile_cells):
    # tile_cells=1 sends most polygons through exactextract's own reader, 2048 through the
    # window read: both give the same numbers.
    df = zonal_stats(_polys(), rasters["v"], tile_cells=tile_cells)
    assert list(df.columns) == ["mean", "min", "max", "coverage", "reason"]
    assert list(df.index) == list(CASES)
    _check(df)


def test_several_rasters_and_grids_in_one_call(rasters):
    df = zonal_stats(_polys(), {"v": rasters["v"], "w": rasters["w"], "fine": rasters["fine"]})
    _check(df, "v_")
    _check(df, "w_", scale=2.0, shift=1.0)
    inside = df["fine_reason"].isna()
    assert (df.loc[inside, "fine_mean"] == 7).all()
    assert df.loc["half_outside", "fine_coverage"] == pytest.approx(0.5)
    assert df.loc["on_nodata", "fine_mean"] == 7  # nodata only in v/w
    assert df.loc["outside", "fine_reason"] == OUTSIDE_EXTENT


def test_polygons_in_degrees_are_reprojected(rasters):
    df = zonal_stats(_polys("EPSG:4326"), rasters["v"])
    assert df.loc["triangle", "mean"] == pytest.approx(2.75, abs=1e-4)
    assert df.loc["half_outside", "coverage"] == pytest.approx(0.5, abs=1e-4)


def test_min_coverage_withholds_partial_polygons(rasters):
    df = zonal_stats(_polys(), {"v": rasters["v"]}, min_coverage={"v": 0.9})
    assert math.isnan(df.loc["half_outside", "v_mean"])
    assert df.loc["half_outside", "v_reason"] == LOW_COVERAGE
    assert df.loc["half_outside", "v_coverage"] == pytest.approx(0.5)
    assert df.loc["triangle", "v_mean"] == pytest.approx(2.75)
    assert df.loc["outside", "v_reason"] == OUTSIDE_EXTENT  # the more precise reason stays


def test_multipolygon_and_empty(rasters):
    mp = shapely.MultiPolygon([shapely.box(0, 30, 10, 40), shapely.box(30, 20, 40, 30)])
    g = gpd.GeoSeries([mp, shapely.Polygon()], crs=CRS)
    df = zonal_stats(g, rasters["v"])
    assert df.loc[0, "mean"] == pytest.approx((0 + 13) / 2)
    assert df.loc[1, "reason"] == EMPTY_GEOMETRY


def test_bad_inputs(rasters, tmp_path):
    with pytest.raises(InputError, match="no CRS"):
        zonal_stats(gpd.GeoSeries([shapely.box(0, 0, 1, 1)]), rasters["v"])
    with pytest.raises(InputError, match="Polygon"):
        zonal_stats(gpd.GeoSeries([shapely.Point(1, 1)], crs=CRS), rasters["v"])
    from pattogis.errors import MissingDataError

    with pytest.raises(MissingDataError, match="not found"):
        zonal_stats(_polys(), tmp_path / "nope.tif")
