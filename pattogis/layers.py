"""Open built layers by name. The only module that knows where built files live.

Vector layers live in one GeoPackage (``data/layers/bologna.gpkg`` by default) in the working CRS;
rasters are tiled, compressed GeoTIFFs beside it. ``layer_catalog`` inside the GeoPackage records
provenance (source, licence, attribution, derived or official) for every layer.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from pattogis import config
from pattogis.errors import MissingDataError
from pattogis.settings import get_settings

CATALOG = "layer_catalog"

RASTERS = {
    "dem": "dem.tif",
    "slope": "slope.tif",
    "heat": "heat_lst_2025.tif",
    "heat_climatology": "heat_lst_climatology.tif",
}


def layers_dir() -> Path:
    d = get_settings().layers_dir or config.settings()["layers_dir"]
    return Path(d).resolve()


def gpkg_path() -> Path:
    return layers_dir() / config.settings()["geopackage"]


def raster_path(name: str) -> Path:
    if name not in RASTERS:
        raise MissingDataError(f"unknown raster '{name}'; known rasters: {', '.join(RASTERS)}")
    p = layers_dir() / RASTERS[name]
    if not p.exists():
        raise MissingDataError(f"raster '{name}' not built at {p}: run `pattogis data build`")
    return p


def exists() -> bool:
    return gpkg_path().exists()


def _check() -> Path:
    p = gpkg_path()
    if not p.exists():
        raise MissingDataError(f"layer set not built at {p}: run `pattogis data build`")
    return p


def list_layers() -> list[str]:
    return [str(n) for n, _ in pyogrio.list_layers(_check()) if n != CATALOG]


def has_layer(name: str) -> bool:
    return exists() and name in {str(n) for n, _ in pyogrio.list_layers(gpkg_path())}


def open_layer(name: str, *, bbox: tuple[float, float, float, float] | None = None,
               columns: list[str] | None = None) -> gpd.GeoDataFrame:
    """Read a vector layer in the working CRS. ``bbox`` is in the working CRS."""
    p = _check()
    if not has_layer(name):
        raise MissingDataError(
            f"layer '{name}' is not in {p}; available: {', '.join(list_layers())}. "
            "Run `pattogis data build` to (re)build the layer set."
        )
    return gpd.read_file(p, layer=name, bbox=bbox, columns=columns, engine="pyogrio")


def catalog() -> pd.DataFrame:
    """The provenance catalog: one row per layer."""
    p = _check()
    df = pyogrio.read_dataframe(p, layer=CATALOG, read_geometry=False)
    return pd.DataFrame(df)


def catalog_records() -> list[dict]:
    return json.loads(catalog().to_json(orient="records"))


def attribution(names: list[str] | None = None) -> str:
    """Attribution text of the given layers (all when None), for maps and exports."""
    cat = catalog()
    if names is not None:
        cat = cat[cat["name"].isin(names)]
    seen: list[str] = []
    for a in cat["attribution"]:
        for part in str(a).split(" | "):
            if part and part not in seen:
                seen.append(part)
    return " | ".join(seen)
