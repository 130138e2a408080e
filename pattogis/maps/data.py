"""Layer data for the pages: catalog sources, and the on-demand GeoJSON of heavy layers.

Heavy layers (bus stops, cycle paths, building footprints) are not inlined in the pages served by
the API: the page asks ``/maps/data/{layer}?bbox=w,s,e,n`` (EPSG:4326) for what is in view, at a
minimum zoom, and :func:`layer_features` answers with a capped FeatureCollection. Buildings are
never sent for more than :attr:`OnDemand.max_area_km2` at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

from pattogis import config, layers
from pattogis.errors import InputError, NotFound
from pattogis.maps.base import esc, fmt_num, table_html, to_features


def source_text(names: list[str]) -> str:
    """Attribution of the given catalog layers (e.g. 'Confini comunali ISTAT via Openpolis ...')."""
    return layers.attribution(names)


def is_derived(name: str) -> bool:
    """True when the catalog marks the layer as derived (not an official source)."""
    cat = layers.catalog()
    row = cat[cat["name"] == name]
    return bool(len(row)) and str(row["provenance"].iloc[0]) == "derived"


@dataclass(frozen=True)
class OnDemand:
    """A layer served by bbox: its label, style, zoom and size limits."""

    layer: str
    label: str
    kind: str                 # dot | line | fill
    min_zoom: int
    max_features: int
    max_area_km2: float
    color: str
    fill: str
    weight: float
    fill_opacity: float
    simplify_m: float | None = None


ON_DEMAND: dict[str, OnDemand] = {
    "bus_stops": OnDemand("bus_stops", "Fermate autobus TPER", "dot", 14, 4000, 400.0,
                          "#08519c", "#4292c6", 0.5, 0.85),
    "cycleways": OnDemand("cycleways", "Piste ciclabili (Comune di Bologna)", "line", 13, 4000,
                          1500.0, "#1b7837", "#1b7837", 2.5, 0.0, 1.0),
    "buildings": OnDemand("buildings", "Edifici (aggregati strutturali DPC)", "fill", 16, 5000, 25.0,
                          "#525252", "#969696", 0.6, 0.45),
}


def _popups(name: str, g: gpd.GeoDataFrame) -> tuple[list[str], list[str], np.ndarray]:
    """(popup HTML, tooltip, value for the point radius) of each feature of an on-demand layer."""
    n = len(g)
    if name == "bus_stops":
        lines = g["n_lines"].fillna(0).astype(int).to_numpy()
        pops = [table_html([("Comune", esc(c)), ("Codice fermata", esc(s)),
                            ("Linee TPER servite", str(k))], title=esc(nm))
                for nm, c, s, k in zip(g["name"], g["comune_name"], g["stop_code"], lines, strict=True)]
        tips = [f"{esc(nm)} ({k} linee)" for nm, k in zip(g["name"], lines, strict=True)]
        return pops, tips, lines.astype(float)
    if name == "cycleways":
        pops = [table_html([("Tipologia", esc(t)), ("Uso", esc(d)),
                            ("Lunghezza", f"{fmt_num(length, 0)} m"), ("Anno", esc(a))],
                           title="Percorso ciclabile")
                for t, d, length, a in zip(g["tipologia"], g["duso"], g["length_m"], g["anno"],
                                           strict=True)]
        return pops, [esc(d) for d in g["duso"]], np.zeros(n)
    if name == "buildings":
        pops = [table_html([("Superficie", f"{fmt_num(a, 0)} m²"), ("Comune (ISTAT)", esc(c))],
                           title="Aggregato strutturale")
                for a, c in zip(g["area_m2"], g["comune_istat"], strict=True)]
        return pops, [f"{fmt_num(a, 0)} m²" for a in g["area_m2"]], np.zeros(n)
    raise NotFound(f"no popup template for layer '{name}'")


def parse_bbox(bbox: str | tuple[float, float, float, float] | list[float]) -> tuple[float, ...]:
    """'w,s,e,n' in EPSG:4326 (lon/lat degrees) → a checked 4-tuple."""
    if isinstance(bbox, str):
        parts = bbox.split(",")
        if len(parts) != 4:
            raise InputError(f"bbox must be 'west,south,east,north', got '{bbox}'", field="bbox")
        try:
            vals = tuple(float(p) for p in parts)
        except ValueError as e:
            raise InputError(f"bbox has a value that is not a number: '{bbox}'", field="bbox") from e
    else:
        vals = tuple(float(v) for v in bbox)
        if len(vals) != 4:
            raise InputError("bbox must have 4 numbers", field="bbox")
    w, s, e, n = vals
    if not all(math.isfinite(v) for v in vals) or not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise InputError(f"bbox {vals} is not a lon/lat box with west < east and south < north",
                         field="bbox", hint="EPSG:4326 degrees: west,south,east,north")
    return vals


def layer_features(name: str, bbox: str | tuple[float, float, float, float] | list[float], *,
                   limit: int | None = None) -> dict[str, Any]:
    """GeoJSON (EPSG:4326, 6 decimals) of an on-demand layer inside a lon/lat bbox.

    At most ``limit`` (default: the layer's cap) features, the largest first for polygons;
    ``truncated`` says when more were in the box. Raises InputError when the box is larger than
    the layer allows (``max_area_km2``, measured in the working CRS).
    """
    if name not in ON_DEMAND:
        raise NotFound(f"layer '{name}' is not served on demand; available: {', '.join(ON_DEMAND)}")
    spec = ON_DEMAND[name]
    w, s, e, n = parse_bbox(bbox)
    crs = config.working_crs()
    tr = Transformer.from_crs(4326, crs, always_xy=True)
    box = tr.transform_bounds(w, s, e, n, densify_pts=11)
    area_km2 = (box[2] - box[0]) * (box[3] - box[1]) / 1e6
    if area_km2 > spec.max_area_km2:
        raise InputError(
            f"bbox covers {area_km2:,.0f} km², more than the {spec.max_area_km2:,.0f} km² served "
            f"for '{name}'", field="bbox", hint="zoom in")
    g = layers.open_layer(name, bbox=box)
    # the projected box encloses the lon/lat box: keep only what is really in view
    g = g[g.to_crs(4326).intersects(shapely.box(w, s, e, n)).to_numpy()]
    cap = min(limit or spec.max_features, spec.max_features)
    truncated = len(g) > cap
    if truncated:
        key = g["area_m2"] if "area_m2" in g.columns else pd.Series(np.arange(len(g)), index=g.index)
        g = g.loc[key.sort_values(ascending=False).index[:cap]]
    pops, tips, value = _popups(name, g)
    fc = to_features(g, {"popup": pops, "tip": tips, "value": value}, simplify_m=spec.simplify_m)
    fc["truncated"] = bool(truncated)
    fc["layer"] = name
    return fc
