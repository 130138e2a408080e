"""Territorio urbanizzato (LR 24/2017 art. 32): derived provisional perimeter, or official.

The derivation follows the article's rules with a morphological closing of the built fabric:

1. every building is buffered out by ``buffer_out_m`` and the buffers are merged, so buildings
   closer than about twice that distance form one continuous fabric;
2. the merged fabric is shrunk back by ``buffer_in_m`` (less than the outward buffer, so yards and
   street space between buildings stay inside);
3. a cluster is TU only when it covers at least ``min_cluster_ha`` and holds at least
   ``min_buildings`` buildings: scattered or discontinuous buildings along roads are not TU;
4. holes smaller than ``fill_holes_below_ha`` are filled (courtyards, squares), larger enclosed
   land stays out: rural land enclosed by built-up areas is not TU;
5. the result is clipped to the comune.

For the Comune di Bologna, whose footprints are not in the kit, the same closing is applied to OSM
urban land-use classes. All parameters live in ``config/tu.yaml``. The result is labelled
``source = 'derived'``; :func:`load_official` replaces it per comune with an official perimeter.
Areas are in hectares, geometries in the working CRS (EPSG:25832 by default).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis import config
from pattogis.errors import InputError

Engine = str  # "local" or "dask"


def tu_params(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    p = config.load("tu.yaml")
    p.update(overrides or {})
    for k in ("buffer_out_m", "buffer_in_m", "min_cluster_ha", "min_buildings", "fill_holes_below_ha"):
        config.require(p, k, (int, float))
    if p["buffer_in_m"] > p["buffer_out_m"]:
        raise InputError(f"{p['_source']}: buffer_in_m must not exceed buffer_out_m")
    return p


def _fill_small_holes(geoms: np.ndarray, max_area: float) -> np.ndarray:
    """Fill interior rings smaller than ``max_area`` (m²) of each polygon."""
    out = []
    for g in geoms:
        if shapely.get_num_interior_rings(g) == 0:
            out.append(g)
            continue
        holes = [r for r in g.interiors if shapely.Polygon(r).area >= max_area]
        out.append(shapely.Polygon(g.exterior, holes))
    return np.asarray(out, dtype=object)


def close_fabric(geoms: np.ndarray, params: dict[str, Any], *,
                 counts_from: np.ndarray | None = None) -> np.ndarray:
    """Morphological closing of a set of footprints → TU polygons (array of Polygons).

    ``counts_from`` are the geometries counted per cluster for the ``min_buildings`` rule
    (the footprints themselves by default).
    """
    if len(geoms) == 0:
        return np.empty(0, dtype=object)
    out_m, in_m = float(params["buffer_out_m"]), float(params["buffer_in_m"])
    # Mitred joins keep the right angles of buildings: closing a rectangle returns it exactly.
    grown = shapely.buffer(geoms, out_m, join_style="mitre", mitre_limit=2.0)
    merged = shapely.union_all(grown)
    shrunk = shapely.buffer(merged, -in_m, join_style="mitre", mitre_limit=2.0)
    parts = shapely.get_parts(shrunk)
    parts = parts[~shapely.is_empty(parts)]
    if len(parts) == 0:
        return parts
    parts = _fill_small_holes(parts, float(params["fill_holes_below_ha"]) * 1e4)
    pts = shapely.point_on_surface(counts_from if counts_from is not None else geoms)
    tree = shapely.STRtree(parts)
    _, hit = tree.query(pts, predicate="within")
    n = np.bincount(hit, minlength=len(parts))
    keep = (shapely.area(parts) >= float(params["min_cluster_ha"]) * 1e4) & (
        n >= int(params["min_buildings"]))
    return parts[keep]


def derive_comune(istat: str, boundary: shapely.Geometry, footprints: np.ndarray,
                  params: dict[str, Any]) -> shapely.Geometry:
    """Derived TU of one comune (a (Multi)Polygon, possibly empty) clipped to its boundary."""
    parts = close_fabric(footprints, params)
    if len(parts) == 0:
        return shapely.MultiPolygon()
    tu = shapely.intersection(shapely.union_all(parts), boundary)
    tol = float(params.get("simplify_m", 0) or 0)
    if tol:
        tu = shapely.simplify(tu, tol, preserve_topology=True)
    return tu


def _as_multi(g: shapely.Geometry) -> shapely.Geometry:
    polys = [p for p in shapely.get_parts(g) if shapely.get_type_id(p) == 3]
    return shapely.MultiPolygon(polys)


def derive_tu(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame,
              landuse_bologna: gpd.GeoDataFrame | None = None, *,
              params: dict[str, Any] | None = None, engine: Engine = "local",
              log: Callable[[str], None] | None = None) -> gpd.GeoDataFrame:
    """Derive the provisional TU per comune.

    ``comuni`` needs ``istat`` and geometry; ``buildings`` needs ``comune_istat`` and geometry;
    both in the same metric CRS. Returns one row per comune: ``comune_istat``, ``name``,
    ``source`` ('derived'), ``method``, ``n_buildings``, ``area_ha``, geometry (MultiPolygon).
    ``engine='dask'`` partitions the work by comune over a dask cluster (same results).
    """
    params = params or tu_params()
    if comuni.crs is None or not comuni.crs.is_projected:
        raise InputError("comuni must be in a projected (metric) CRS", field="geometry")
    if buildings.crs != comuni.crs:
        buildings = buildings.to_crs(comuni.crs)
    groups = {k: v.geometry.values for k, v in buildings.groupby("comune_istat")}
    bologna = str(params.get("bologna_istat", ""))
    lu_geoms = np.empty(0, dtype=object)
    if landuse_bologna is not None and len(landuse_bologna):
        classes = set(params.get("osm_urban_landuse", []))
        lu = landuse_bologna[landuse_bologna["landuse"].isin(classes)].to_crs(comuni.crs)
        lu_geoms = lu.geometry.values

    tasks = []
    for istat, boundary in zip(comuni["istat"], comuni.geometry.values, strict=True):
        if istat in groups:
            tasks.append((istat, boundary, groups[istat], "edifici"))
        elif istat == bologna and len(lu_geoms):
            tasks.append((istat, boundary, lu_geoms, "uso_suolo_osm"))
        else:
            tasks.append((istat, boundary, np.empty(0, dtype=object), "nessun_dato"))

    if engine == "dask":
        from pattogis.engine import map_partitions_delayed

        geoms = map_partitions_delayed(derive_comune, [(t[0], t[1], t[2], params) for t in tasks])
    elif engine == "local":
        geoms = []
        for i, t in enumerate(tasks, 1):
            geoms.append(derive_comune(t[0], t[1], t[2], params))
            if log and (i % 10 == 0 or i == len(tasks)):
                log(f"    territorio urbanizzato: {i}/{len(tasks)} comuni")
    else:
        raise InputError(f"unknown engine '{engine}'", field="engine", hint="Use 'local' or 'dask'")

    out = gpd.GeoDataFrame(
        {
            "comune_istat": [t[0] for t in tasks],
            "source": "derived",
            "method": [t[3] for t in tasks],
            "n_buildings": [len(t[2]) if t[3] == "edifici" else 0 for t in tasks],
        },
        geometry=[_as_multi(g) for g in geoms],
        crs=comuni.crs,
    )
    if "name" in comuni.columns:
        out.insert(1, "name", comuni["name"].to_numpy())
    out["area_ha"] = out.geometry.area / 1e4
    return out


def load_official(path: str | Path, *, comune_field: str = "comune_istat",
                  crs: str | None = None, target_crs: str | None = None) -> gpd.GeoDataFrame:
    """Read an official TU perimeter (GPKG, SHP or zipped SHP, GeoJSON).

    The file needs a field with the 6-digit ISTAT code of the comune (``comune_field``); rows are
    dissolved by comune. Refused without a CRS unless ``crs`` is given.
    """
    from pattogis.vector import clean_geometries, read_vector

    label = str(path)
    gdf = read_vector(path, crs=crs, label=label)
    if comune_field not in gdf.columns:
        raise InputError("field with the ISTAT code of the comune is missing", file=label,
                         field=comune_field, hint="Pass comune_field= the name of that field")
    gdf, _ = clean_geometries(gdf, label=label, keep=("Polygon",))
    codes = gdf[comune_field].astype(str).str.zfill(6)
    bad = ~codes.str.fullmatch(r"\d{6}")
    if bad.any():
        raise InputError("not a 6-digit ISTAT code", file=label,
                         rows=[int(i) + 1 for i in np.flatnonzero(bad)], field=comune_field)
    gdf = gdf.assign(comune_istat=codes).to_crs(target_crs or config.working_crs())
    out = gdf.dissolve(by="comune_istat").reset_index()[["comune_istat", "geometry"]]
    out["geometry"] = [_as_multi(g) for g in out.geometry.values]
    out["source"] = "official"
    out["method"] = "ufficiale"
    out["n_buildings"] = 0
    out["area_ha"] = out.geometry.area / 1e4
    return out


def replace_with_official(derived: gpd.GeoDataFrame, official: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Per comune, the official perimeter where one is given, the derived one elsewhere."""
    keep = derived[~derived["comune_istat"].isin(official["comune_istat"])]
    names = derived.set_index("comune_istat").get("name")
    off = official.copy()
    if names is not None:
        off["name"] = off["comune_istat"].map(names)
    out = pd.concat([keep, off[keep.columns.intersection(off.columns)]], ignore_index=True)
    return gpd.GeoDataFrame(out.sort_values("comune_istat").reset_index(drop=True),
                            crs=derived.crs)
