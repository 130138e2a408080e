"""Readers of raw files with validation on the way in.

Every reader names the file, row and field of what is wrong, repairs invalid geometries and drops
empty ones (and counts both), and refuses points whose coordinates cannot be right for the area.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from pattogis.errors import InputError, MissingDataError
from pattogis.vector import Report, clean_geometries, read_vector, to_polygons

__all__ = ["Report", "clean_geometries", "expand_box", "parse_decimal", "points_from_table",
           "read_vector", "require_file", "to_polygons"]


def require_file(raw: Path, rel: str, provider: str) -> Path:
    p = raw / rel
    if not p.exists():
        raise MissingDataError(
            f"raw file missing: {p} (provided by {provider}). Put the open-data kit in {raw}, "
            "pass --raw DIR, set $PATTOGIS_RAW, or download it with `pattogis data fetch --raw DIR`"
        )
    return p


def parse_decimal(series: pd.Series, *, label: str, column: str) -> pd.Series:
    """Parse numbers that may use a comma as decimal separator ('44,505736')."""
    s = series.astype(str).str.strip().str.replace(",", ".", regex=False)
    out = pd.to_numeric(s, errors="coerce")
    bad = out.isna() & series.notna()
    if bad.any():
        rows = [int(i) + 2 for i in np.flatnonzero(bad.to_numpy())]  # +2: header line, 1-based
        raise InputError("value is not a number", file=label, rows=rows, field=column)
    return out


def points_from_table(
    df: pd.DataFrame,
    *,
    lon: pd.Series,
    lat: pd.Series,
    label: str,
    accept_box: tuple[float, float, float, float],
    select_box: tuple[float, float, float, float] | None = None,
    fields: tuple[str, str] = ("longitude", "latitude"),
) -> tuple[gpd.GeoDataFrame, Report]:
    """Make WGS84 points from lon/lat columns.

    Points outside ``accept_box`` (lon/lat) cannot be right for this dataset — typically swapped
    lat/lon or comma decimals misread — and are refused with their row numbers. Points inside it
    but outside ``select_box`` are valid data for another area and are filtered out and counted.
    Row numbers are 1-based file lines counting the header.
    """
    x0, y0, x1, y1 = accept_box
    lonv, latv = lon.to_numpy(float), lat.to_numpy(float)
    out = ~((lonv >= x0) & (lonv <= x1) & (latv >= y0) & (latv <= y1))
    if out.any():
        rows = [int(i) + 2 for i in np.flatnonzero(out)]
        swapped = ((latv >= x0) & (latv <= x1) & (lonv >= y0) & (lonv <= y1))[out].any()
        hint = ("latitude and longitude look swapped" if swapped else
                "check the decimal separator and that coordinates are WGS84 degrees")
        raise InputError(
            f"{int(out.sum())} point(s) outside the accepted area lon {x0:.3f}..{x1:.3f}, "
            f"lat {y0:.3f}..{y1:.3f}", file=label, rows=rows, field=f"{fields[0]}/{fields[1]}",
            hint=hint.capitalize(),
        )
    gdf = gpd.GeoDataFrame(df.reset_index(drop=True),
                           geometry=gpd.points_from_xy(lonv, latv), crs="EPSG:4326")
    rep = Report()
    if select_box is not None:
        sx0, sy0, sx1, sy1 = select_box
        inside = (lonv >= sx0) & (lonv <= sx1) & (latv >= sy0) & (latv <= sy1)
        rep.filtered_outside = int((~inside).sum())
        gdf = gdf.loc[inside].reset_index(drop=True)
    return gdf, rep


def expand_box(box: tuple[float, float, float, float], margin_km: float) -> tuple[float, ...]:
    """Grow a lon/lat box by ``margin_km`` (degrees per km at the box's mean latitude)."""
    x0, y0, x1, y1 = box
    dlat = margin_km / 111.32
    dlon = margin_km / (111.32 * np.cos(np.radians((y0 + y1) / 2)))
    return (x0 - dlon, y0 - dlat, x1 + dlon, y1 + dlat)
