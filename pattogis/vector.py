"""Vector input checked on the way in: read with a CRS, repair invalid geometries, drop empty
ones, keep one geometry family, and count all of it (:class:`Report`).

Shared by the build (:mod:`pattogis.data`) and by the loaders of official files
(:func:`pattogis.urbanized.load_official`), so neither imports the other: imports flow one way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from pattogis.errors import InputError


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
