"""The offline base map, drawn from our own layers: hillshade from the DEM, comune boundaries with
their names, main roads and railway lines, all clipped to the province (nothing outside it is
drawn as if it were the province's).

Built once per layer set (keyed by the GeoPackage's and the DEM's modification times) and added
to every page below its thematic layers. Sources are attributed like any other layer.
"""

from __future__ import annotations

import base64
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from pattogis import layers
from pattogis.errors import PattogisError
from pattogis.maps.js import ScriptLayer

#: Hillshade cell size (m, Web Mercator): 250 m keeps the image near 60 KB for the province.
HILLSHADE_M = 250.0
#: Roads drawn on the base map (OSM highway classes).
MAIN_ROADS = ("motorway", "trunk", "primary", "motorway_link", "trunk_link")
#: lon/lat decimals of the base map's lines (1e-5 degrees is about 1 m)
PRECISION = 5
DEM_ATTR = "Rilievo ombreggiato dal DEM SRTM (NASA, pubblico dominio)"

_cache: dict[str, Any] = {}
_lock = threading.Lock()


@dataclass
class Basemap:
    hillshade_png: bytes | None
    bounds: list[list[float]] | None      # [[south, west], [north, east]] of the image
    comuni: dict[str, Any]                # FeatureCollection: boundaries, name as ``label``
    roads: dict[str, Any] | None
    rail: dict[str, Any] | None
    attribution: str


def hillshade(dem: np.ndarray, cell: float, azimuth: float = 315.0,
              altitude: float = 45.0) -> np.ndarray:
    """Hillshade 0..1 of an elevation grid (metres, square cells of ``cell`` metres, north up):
    the usual illumination formula with the sun at ``azimuth``/``altitude`` degrees."""
    d_row, d_col = np.gradient(dem, cell)
    gx, gy = d_col, -d_row                     # slopes towards east and north (rows go south)
    norm = np.sqrt(gx * gx + gy * gy + 1.0)    # surface normal (-gx, -gy, 1) / norm
    az, alt = np.radians(azimuth), np.radians(altitude)
    sun = (np.cos(alt) * np.sin(az), np.cos(alt) * np.cos(az), np.sin(alt))  # east, north, up
    shade = (-gx * sun[0] - gy * sun[1] + sun[2]) / norm
    return np.clip(shade, 0.0, 1.0)


def _hillshade_png(province: Any) -> tuple[bytes, list[list[float]]] | None:
    """The DEM's hillshade as a grey PNG with alpha, in Web Mercator (so Leaflet places it
    exactly), transparent outside the province."""
    # rasterio here, not at import: the API starts without it (its GDAL is a second copy)
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.features import geometry_mask
    from rasterio.io import MemoryFile
    from rasterio.warp import calculate_default_transform, reproject, transform_bounds

    try:
        path = layers.raster_path("dem")
    except PattogisError:
        return None
    with rasterio.open(path) as src:
        tr, w, h = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height,
                                               *src.bounds, resolution=HILLSHADE_M)
        dem = np.full((h, w), np.nan, dtype="float32")
        reproject(rasterio.band(src, 1), dem, src_transform=src.transform, src_crs=src.crs,
                  src_nodata=src.nodata, dst_transform=tr, dst_crs="EPSG:3857",
                  dst_nodata=np.nan, resampling=Resampling.bilinear)
    # Mercator metres are stretched by 1/cos(lat): the true cell size for the gradient
    lat = np.radians(44.45)
    shade = hillshade(np.nan_to_num(dem, nan=float(np.nanmean(dem))), HILLSHADE_M * np.cos(lat))
    inside = ~geometry_mask([province.to_crs("EPSG:3857").union_all()], (h, w), tr)
    inside &= np.isfinite(dem)
    # dark where shaded, transparent where lit: drawn over a light background
    alpha = np.where(inside, np.clip((0.8 - shade) * 200, 0, 120), 0)
    alpha = (np.round(alpha / 12) * 12).astype("uint8")  # 11 levels: a smaller PNG
    grey = np.full((h, w), 60, dtype="uint8")
    with MemoryFile() as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a plain image on purpose
        with mem.open(driver="PNG", width=w, height=h, count=2, dtype="uint8") as dst:
            dst.write(grey, 1)
            dst.write(alpha, 2)
        png = mem.read()
    west, south, east, north = transform_bounds("EPSG:3857", "EPSG:4326",
                                                tr.c, tr.f + tr.e * h, tr.c + tr.a * w, tr.f)
    return png, [[south, west], [north, east]]


def build() -> Basemap | None:
    """The base map of the current layer set (None when the layer set is not built)."""
    from pattogis.maps.base import to_features

    try:
        gpkg = layers.gpkg_path()
        comuni = layers.open_layer("comuni")
    except PattogisError:
        return None
    province = comuni[["geometry"]].dissolve()
    area = province.geometry.iloc[0]
    # every boundary once (shared edges are not drawn twice), as one multi-line
    edges = gpd.GeoDataFrame(geometry=[shapely.line_merge(shapely.union_all(
        comuni.geometry.boundary.values))], crs=comuni.crs)
    fc_comuni = to_features(edges, simplify_m=50.0, precision=PRECISION)
    # name labels at a point inside each comune
    pts = comuni.assign(geometry=comuni.geometry.representative_point())
    fc_pts = to_features(pts, {"label": "name"}, precision=PRECISION)
    fc_comuni["features"] += fc_pts["features"]
    roads = None
    present = {str(n) for n, _ in pyogrio.list_layers(gpkg)}
    if "roads_edges" in present:
        edges = layers.open_layer("roads_edges")
        main = edges[edges["highway"].astype(str).isin(MAIN_ROADS)]
        if len(main):
            one = gpd.GeoDataFrame(geometry=[shapely.line_merge(shapely.union_all(
                main.clip(area).geometry.values))], crs=main.crs)
            roads = to_features(one, simplify_m=30.0, precision=PRECISION)
    rail = None
    if "rail_lines" in present:  # built from the raw kit by `pattogis data build`
        lines = layers.open_layer("rail_lines")
        lines = lines[lines["status"] == "in esercizio"]  # lines not yet built are not drawn
        if len(lines):
            one = gpd.GeoDataFrame(geometry=[shapely.line_merge(shapely.union_all(
                lines.clip(area).geometry.values))], crs=lines.crs)
            rail = to_features(one, simplify_m=30.0, precision=PRECISION)
    hs = _hillshade_png(province)
    attr = "; ".join(x for x in (
        layers.attribution(["comuni"]), layers.attribution(["rail_lines"]) if rail else "",
        layers.attribution(["roads_edges"]) if roads else "", DEM_ATTR if hs else "") if x)
    return Basemap(hs[0] if hs else None, hs[1] if hs else None, fc_comuni, roads, rail, attr)


def current() -> Basemap | None:
    """The base map, rebuilt when the layer set changes."""
    try:
        p = layers.gpkg_path()
        key = (str(p), p.stat().st_mtime_ns) if p.exists() else None
    except PattogisError:
        return None
    if key is None:
        return None
    with _lock:
        if _cache.get("key") != key:
            _cache["key"], _cache["map"] = key, build()
        return _cache["map"]


def add_basemap(m: folium.Map) -> bool:
    """Add the offline base map to a page (one switchable overlay, on by default, below the
    thematic layers). False when there is no layer set to draw it from."""
    bm = current()
    if bm is None:
        return False
    payload = {
        "image": ("data:image/png;base64," + base64.b64encode(bm.hillshade_png).decode())
        if bm.hillshade_png else None,
        "bounds": bm.bounds, "comuni": bm.comuni, "roads": bm.roads, "rail": bm.rail,
        "labelZoom": 10, "reliefMaxZoom": 13,
    }
    ScriptLayer("basemap", payload, name="Sfondo (comuni, ferrovie, strade, rilievo)",
                show=True, attribution=bm.attribution, key="basemap").add_to(m)
    return True
