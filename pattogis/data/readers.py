"""Readers of raw files with validation on the way in.

Every reader names the file, row and field of what is wrong, repairs invalid geometries and drops
empty ones (and counts both), and refuses points whose coordinates cannot be right for the area.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis.errors import InputError, MissingDataError


@dataclass
class Report:
    """What a reader repaired, dropped or filtered; printed by the build and kept in the catalog."""

    repaired: int = 0
    dropped_empty: int = 0
    filtered_outside: int = 0
    notes: list[str] = field(default_factory=list)

    def merge(self, other: Report) -> Report:
        return Report(
            self.repaired + other.repaired,
            self.dropped_empty + other.dropped_empty,
            self.filtered_outside + other.filtered_outside,
            self.notes + other.notes,
        )

    def text(self) -> str:
        parts = []
        if self.repaired:
            parts.append(f"{self.repaired} invalid geometries repaired")
        if self.dropped_empty:
            parts.append(f"{self.dropped_empty} empty geometries dropped")
        if self.filtered_outside:
            parts.append(f"{self.filtered_outside} features outside the area filtered out")
        parts.extend(self.notes)
        return "; ".join(parts)


def require_file(raw: Path, rel: str, provider: str) -> Path:
    p = raw / rel
    if not p.exists():
        raise MissingDataError(
            f"raw file missing: {p} (provided by {provider}). Put the open-data kit in {raw}, "
            "pass --raw DIR, set $PATTOGIS_RAW, or download it with `pattogis data fetch --raw DIR`"
        )
    return p


def read_vector(path: str | Path, *, layer: str | None = None, crs: str | None = None,
                label: str | None = None) -> gpd.GeoDataFrame:
    """Read a vector file; refuse one without a CRS unless ``crs`` is given."""
    label = label or str(path)
    try:
        gdf = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as e:  # pyogrio raises several types; the message is what matters
        raise InputError(f"cannot read vector data: {e}", file=label) from e
    if gdf.crs is None:
        if crs is None:
            raise InputError(
                "the file has no CRS", file=label,
                hint="Give the CRS explicitly (e.g. --crs EPSG:4326) or add a .prj / CRS to the file",
            )
        gdf = gdf.set_crs(crs)
    return gdf


def clean_geometries(gdf: gpd.GeoDataFrame, *, label: str,
                     keep: tuple[str, ...] | None = None) -> tuple[gpd.GeoDataFrame, Report]:
    """Repair invalid geometries (make_valid), drop empty/null ones and, when ``keep`` names
    geometry families ('Polygon', 'LineString', 'Point'), keep only those parts."""
    rep = Report()
    geom = gdf.geometry.values
    null_or_empty = shapely.is_missing(geom) | shapely.is_empty(geom)
    invalid = ~null_or_empty & ~shapely.is_valid(geom)
    if invalid.any():
        fixed = shapely.make_valid(geom[invalid])
        geom = geom.copy()
        geom[invalid] = fixed
        rep.repaired = int(invalid.sum())
    gdf = gdf.set_geometry(gpd.GeoSeries(geom, index=gdf.index, crs=gdf.crs))
    rep.dropped_empty = int(null_or_empty.sum())
    gdf = gdf.loc[~null_or_empty]
    if keep:
        n = len(gdf)
        gdf = _keep_family(gdf, keep)
        geom = gdf.geometry.values
        collapsed = shapely.is_empty(geom)  # e.g. a repaired polygon that was only a line
        gdf = gdf.loc[~collapsed]
        if n - len(gdf):
            rep.notes.append(f"{n - len(gdf)} features of another geometry type dropped")
    return gdf.copy(), rep


def _keep_family(gdf: gpd.GeoDataFrame, keep: tuple[str, ...]) -> gpd.GeoDataFrame:
    """Reduce mixed results of make_valid (collections) to the wanted family."""
    types = shapely.get_type_id(gdf.geometry.values)
    family = {"Point": (0, 4), "LineString": (1, 5), "Polygon": (3, 6)}
    wanted = np.isin(types, [t for k in keep for t in family[k]])
    coll = types == 7
    if coll.any():
        parts = []
        for g in gdf.geometry.values[coll]:
            sub = [p for p in shapely.get_parts(g) if shapely.get_type_id(p) in
                   [t for k in keep for t in family[k]]]
            parts.append(shapely.union_all(sub) if sub else shapely.Polygon())
        geoms = gdf.geometry.values.copy()
        geoms[coll] = parts
        gdf = gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs))
        wanted = wanted | coll
    return gdf.loc[wanted]


def to_polygons(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Promote Polygons to MultiPolygons so a layer has one geometry type."""
    geoms = gdf.geometry.values
    single = shapely.get_type_id(geoms) == 3
    if single.any():
        geoms = geoms.copy()
        geoms[single] = [shapely.MultiPolygon([g]) for g in geoms[single]]
        gdf = gdf.set_geometry(gpd.GeoSeries(geoms, index=gdf.index, crs=gdf.crs))
    return gdf


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
