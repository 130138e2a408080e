"""Comuni, Unioni, territorial systems, mountain and fragility indicators, productive hubs.

Everything per comune is keyed by the 6-digit ISTAT code (``istat``). Distances in km, elevations
in metres, areas in hectares; geometries in the working CRS (EPSG:25832 by default).

The fragility index is a DERIVED composite: the official index of the metropolitan statistics
office is not available, so the index is computed from the data at hand with the weights of
``config/fragility.yaml`` (visible, replaceable), and :func:`load_official_fragility` loads an
official index per comune from a CSV when a user has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis import config
from pattogis.errors import InputError

SYSTEMS = ("collina-montagna", "via Emilia", "pianura nord")


def demographic_indicators(comuni: pd.DataFrame) -> pd.DataFrame:
    """Old-age index (65+ per 100 aged 0-14), share 80+ (%), dependency ratio (%)."""
    out = pd.DataFrame({"istat": comuni["istat"].to_numpy()})
    p = comuni.reset_index(drop=True)
    out["old_age_index"] = 100.0 * p["pop_65_plus"] / p["pop_0_14"].replace(0, np.nan)
    out["share_80_plus"] = 100.0 * p["pop_80_plus"] / p["pop_total"]
    out["dependency_ratio"] = 100.0 * (p["pop_0_14"] + p["pop_65_plus"]) / p["pop_15_64"]
    return out


def mean_elevation(comuni: gpd.GeoDataFrame, dem_path: str | Path,
                   slope_path: str | Path | None = None) -> pd.DataFrame:
    """Mean elevation (m) and mean slope (degrees) per comune, exact pixel coverage (exactextract)."""
    from exactextract import exact_extract

    rasters = [str(dem_path)] + ([str(slope_path)] if slope_path else [])
    df = exact_extract(rasters, comuni[["istat", "geometry"]], ["mean"], include_cols=["istat"],
                       output="pandas")
    cols = {c: ("mean_elevation_m" if "dem" in c or c == "mean" else "mean_slope_deg")
            for c in df.columns if c != "istat"}
    if len(rasters) == 1:
        cols = {"mean": "mean_elevation_m"}
    return df.rename(columns=cols)


def territorial_system(mean_elev_m: pd.Series, centroid_lat: pd.Series,
                       params: dict[str, Any]) -> pd.Series:
    """PTM territorial system: collina-montagna (mean elevation above the threshold), pianura nord
    (centroid north of the latitude threshold), via Emilia otherwise."""
    sys_ = np.where(mean_elev_m > float(params["mountain_mean_elevation_m"]), SYSTEMS[0],
                    np.where(centroid_lat >= float(params["pianura_nord_min_lat"]), SYSTEMS[2],
                             SYSTEMS[1]))
    return pd.Series(sys_, index=mean_elev_m.index)


def composite_index(ind: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.Series, dict[str, float]]:
    """Weighted sum of min-max normalised indicators, in [0, 1] (1 = most fragile).

    Returns the index and the normalised weights actually used (weights of the config divided by
    their sum), so the weights are always visible next to the result.
    """
    spec = params["indicators"]
    weights = {k: float(v["weight"]) for k, v in spec.items()}
    total = sum(weights.values())
    if total <= 0:
        raise InputError(f"{params.get('_source')}: fragility weights must add up to more than 0")
    weights = {k: w / total for k, w in weights.items()}
    idx = pd.Series(0.0, index=ind.index)
    for k, w in weights.items():
        if k not in ind.columns:
            raise InputError(f"{params.get('_source')}: unknown fragility indicator '{k}'",
                             field=k)
        x = ind[k].astype(float)
        span = x.max() - x.min()
        norm = (x - x.min()) / span if span > 0 else x * 0.0
        if spec[k].get("direction", "higher_is_more_fragile") != "higher_is_more_fragile":
            norm = 1.0 - norm
        idx = idx + w * norm
    return idx, weights


def comuni_indicators(comuni: gpd.GeoDataFrame, dem_path: str | Path,
                      slope_path: str | Path | None = None,
                      params: dict[str, Any] | None = None) -> gpd.GeoDataFrame:
    """All per-comune indicators: demography, elevation, remoteness, fragility, system.

    Returns the comuni with added columns: old_age_index, share_80_plus, dependency_ratio,
    mean_elevation_m, mean_slope_deg, distance_bologna_km, territorial_system, fragility_index
    (0..1), fragile (bool), fragility_source ('derived').
    """
    params = params or config.load("fragility.yaml")
    out = comuni.reset_index(drop=True).copy()
    dem = demographic_indicators(out)
    el = mean_elevation(out, dem_path, slope_path)
    out = out.merge(dem, on="istat").merge(el, on="istat")
    centroids = out.geometry.centroid
    bologna = out.loc[out["name"] == "Bologna"]
    ref = bologna.geometry.iloc[0].centroid if len(bologna) else shapely.Point(
        centroids.x.mean(), centroids.y.mean())
    out["distance_bologna_km"] = centroids.distance(ref) / 1000.0
    lat = gpd.GeoSeries(centroids, crs=out.crs).to_crs(4326).y
    out["territorial_system"] = territorial_system(out["mean_elevation_m"], lat, params)
    out["fragility_index"], _ = composite_index(out, params)
    out["fragile"] = out["fragility_index"] >= float(params["fragile_threshold"])
    out["fragility_source"] = "derived"
    return out


def load_official_fragility(path: str | Path, indicators: pd.DataFrame, *,
                            code_field: str = "istat", index_field: str = "fragility_index",
                            threshold: float | None = None) -> pd.DataFrame:
    """Replace the derived fragility index by an official one read from a CSV.

    The CSV needs a 6-digit ISTAT code column and a numeric index column; values are rescaled to
    0..1 by min-max so thresholds keep their meaning. Comuni missing from the CSV are an error.
    """
    label = str(path)
    try:
        df = pd.read_csv(path, dtype={code_field: str}, sep=None, engine="python")
    except FileNotFoundError as e:
        raise InputError("file not found", file=label) from e
    for f in (code_field, index_field):
        if f not in df.columns:
            raise InputError("column missing", file=label, field=f,
                             hint=f"Columns found: {', '.join(df.columns)}")
    codes = df[code_field].astype(str).str.zfill(6)
    vals = pd.to_numeric(df[index_field], errors="coerce")
    bad = vals.isna()
    if bad.any():
        raise InputError("not a number", file=label,
                         rows=[int(i) + 2 for i in np.flatnonzero(bad)], field=index_field)
    missing = sorted(set(indicators["istat"]) - set(codes))
    if missing:
        raise InputError(f"{len(missing)} comuni have no value: {', '.join(missing[:10])}",
                         file=label, field=code_field)
    span = vals.max() - vals.min()
    scaled = (vals - vals.min()) / span if span > 0 else vals * 0.0
    m = dict(zip(codes, scaled, strict=True))
    out = indicators.copy()
    out["fragility_index"] = out["istat"].map(m)
    th = threshold if threshold is not None else float(config.load("fragility.yaml")["fragile_threshold"])
    out["fragile"] = out["fragility_index"] >= th
    out["fragility_source"] = f"official:{Path(path).name}"
    return out


# --- productive hubs ---------------------------------------------------------------------------


def derive_hubs(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame,
                landuse_bologna: gpd.GeoDataFrame | None = None,
                params: dict[str, Any] | None = None) -> gpd.GeoDataFrame:
    """Productive hubs DERIVED from large buildings (closing of the productive fabric) and, for the
    Comune di Bologna, OSM industrial/commercial land use. Replaceable by the official PTM layer.

    Returns hub_id, comune_istat (comune holding most of the hub), n_buildings, area_ha, source.
    """
    from pattogis.urbanized import close_fabric

    params = params or config.load("hubs.yaml")
    big = buildings[buildings["area_m2"] >= float(params["min_building_m2"])]
    closing = {"buffer_out_m": params["buffer_out_m"], "buffer_in_m": params["buffer_in_m"],
               "min_cluster_ha": params["min_hub_ha"], "min_buildings": params["min_buildings"],
               "fill_holes_below_ha": params["min_hub_ha"]}
    parts = [close_fabric(g.geometry.values, closing) for _, g in big.groupby("comune_istat")]
    if landuse_bologna is not None and len(landuse_bologna):
        lu = landuse_bologna[landuse_bologna["landuse"].isin(params["bologna_osm_landuse"])]
        lu_closing = closing | {"min_buildings": 1}
        parts.append(close_fabric(lu.to_crs(comuni.crs).geometry.values, lu_closing))
    geoms = np.concatenate([p for p in parts if len(p)]) if parts else np.empty(0, dtype=object)
    hubs = gpd.GeoDataFrame(geometry=list(geoms), crs=comuni.crs)
    if hubs.empty:
        return hubs.assign(hub_id=[], comune_istat=[], area_ha=[], source=[])
    hubs["area_ha"] = hubs.geometry.area / 1e4
    pts = gpd.GeoDataFrame(geometry=hubs.geometry.representative_point(), crs=comuni.crs)
    j = gpd.sjoin(pts, comuni[["istat", "geometry"]], how="left", predicate="within")
    hubs["comune_istat"] = j[~j.index.duplicated()]["istat"].to_numpy()
    hubs = hubs.sort_values(["comune_istat", "area_ha"], ascending=[True, False]).reset_index(drop=True)
    hubs["hub_id"] = [f"HUB-{c}-{i:03d}" for c, i in
                      zip(hubs["comune_istat"], hubs.groupby("comune_istat").cumcount() + 1, strict=True)]
    hubs["source"] = "derived"
    return hubs[["hub_id", "comune_istat", "area_ha", "source", "geometry"]]


def default_candidates(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame,
                       landuse_bologna: gpd.GeoDataFrame | None,
                       params: dict[str, Any] | None = None) -> gpd.GeoDataFrame:
    """The default candidate regeneration sites.

    - Comune di Bologna: OSM brownfield, construction and greenfield land use, plus industrial
      areas tagged disused/abandoned (official OSM features);
    - elsewhere: clusters of large productive buildings between ``candidate_min_ha`` and
      ``candidate_max_ha`` (DERIVED: a proxy for productive areas to regenerate).
    """
    from pattogis.urbanized import close_fabric

    params = params or config.load("hubs.yaml")
    frames = []
    if landuse_bologna is not None and len(landuse_bologna):
        lu = landuse_bologna.to_crs(comuni.crs)
        tags = lu.get("tags", pd.Series("", index=lu.index)).fillna("").astype(str)
        disused = (lu["landuse"] == "industrial") & tags.str.contains("disused|abandoned", regex=True)
        sel = lu[lu["landuse"].isin(params["bologna_candidate_landuse"]) | disused]
        sel = sel[sel.geometry.area >= 2000]
        frames.append(gpd.GeoDataFrame({
            "site_id": "OSM-" + sel["osm_id"].astype(str),
            "name": sel.get("name"),
            "kind": np.where(disused.loc[sel.index], "industriale dismessa", sel["landuse"]),
            "source": "OpenStreetMap",
            "provenance": "official",
        }, geometry=sel.geometry.values, crs=comuni.crs))
    big = buildings[buildings["area_m2"] >= float(params["min_building_m2"])]
    closing = {"buffer_out_m": params["buffer_out_m"], "buffer_in_m": params["buffer_in_m"],
               "min_cluster_ha": params["candidate_min_ha"], "min_buildings": 2,
               "fill_holes_below_ha": params["candidate_min_ha"]}
    rows = []
    for istat, g in big.groupby("comune_istat"):
        for k, geom in enumerate(close_fabric(g.geometry.values, closing), 1):
            if geom.area <= float(params["candidate_max_ha"]) * 1e4:
                rows.append((f"DER-{istat}-{k:03d}", geom))
    if rows:
        frames.append(gpd.GeoDataFrame({
            "site_id": [r[0] for r in rows], "name": None, "kind": "area produttiva (derivata)",
            "source": "derived from DPC building aggregates", "provenance": "derived",
        }, geometry=[r[1] for r in rows], crs=comuni.crs))
    out = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=comuni.crs)
    out["geometry"] = shapely.make_valid(out.geometry.values)
    pts = gpd.GeoDataFrame(geometry=out.geometry.representative_point(), crs=comuni.crs)
    j = gpd.sjoin(pts, comuni[["istat", "geometry"]], how="left", predicate="within")
    out["comune_istat"] = j[~j.index.duplicated()]["istat"].to_numpy()
    out = out[out["comune_istat"].notna()]
    out["area_ha"] = out.geometry.area / 1e4
    return out.sort_values("site_id").reset_index(drop=True)


def unione_of(comuni: pd.DataFrame) -> dict[str, str | None]:
    """ISTAT code → Unione name (None for comuni in no Unione)."""
    u = comuni.set_index("istat")["unione"]
    return {k: (v if isinstance(v, str) and v else None) for k, v in u.items()}
