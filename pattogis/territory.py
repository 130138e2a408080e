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


def composite_index(ind: pd.DataFrame, params: dict[str, Any], *, with_parts: bool = False
                    ) -> Any:
    """Weighted sum of min-max normalised indicators, in [0, 1] (1 = most fragile).

    Returns the index and the normalised weights actually used (weights of the config divided by
    their sum), so the weights are always visible next to the result; with ``with_parts`` also
    each indicator's weighted normalised contribution (they add up to the index). An indicator
    with missing values for some comune is an error naming them: a gap must not read as 0.
    """
    spec = params["indicators"]
    weights = {k: float(v["weight"]) for k, v in spec.items()}
    total = sum(weights.values())
    if total <= 0:
        raise InputError(f"{params.get('_source')}: fragility weights must add up to more than 0")
    weights = {k: w / total for k, w in weights.items()}
    idx = pd.Series(0.0, index=ind.index)
    parts: dict[str, pd.Series] = {}
    for k, w in weights.items():
        if k not in ind.columns:
            raise InputError(f"{params.get('_source')}: unknown fragility indicator '{k}'",
                             field=k)
        x = ind[k].astype(float)
        if x.isna().any():
            who = ind.loc[x.isna(), "istat"].tolist() if "istat" in ind else x[x.isna()].index.tolist()
            raise InputError(f"fragility indicator '{k}' missing for comuni {who[:10]}", field=k)
        span = x.max() - x.min()
        norm = (x - x.min()) / span if span > 0 else x * 0.0
        direction = spec[k].get("direction", "higher_is_more_fragile")
        if direction not in ("higher_is_more_fragile", "lower_is_more_fragile"):
            raise InputError(f"{params.get('_source')}: direction of '{k}' must be "
                             "higher_is_more_fragile or lower_is_more_fragile", field=k)
        if direction != "higher_is_more_fragile":
            norm = 1.0 - norm
        parts[k] = w * norm
        idx = idx + parts[k]
    if with_parts:
        return idx, weights, parts
    return idx, weights


OFFICIAL_COLUMNS = ("ai_class", "ai_class_rank", "ai_minutes_to_pole", "pop_census_2020",
                    "snai_area", "income_per_taxpayer_eur", "flood_high_pct", "flood_medium_pct",
                    "landslide_p3p4_pct")


def comuni_indicators(comuni: gpd.GeoDataFrame, dem_path: str | Path,
                      slope_path: str | Path | None = None,
                      params: dict[str, Any] | None = None,
                      official: pd.DataFrame | None = None) -> gpd.GeoDataFrame:
    """All per-comune indicators: demography, elevation, remoteness, official indicators,
    fragility, territorial system.

    ``official`` (one row per comune, key ``istat``) holds the official indicators of the kit:
    ai_class (A-F), ai_class_rank (0-5), ai_minutes_to_pole (min), pop_census_2020, snai_area,
    income_per_taxpayer_eur (EUR, 2021), flood_high_pct, flood_medium_pct, landslide_p3p4_pct
    (% of the comune's area). From it pop_change_pct = (residents 2023 / census 2020 - 1) * 100.

    Returns the comuni with added columns: old_age_index, share_80_plus, dependency_ratio,
    mean_elevation_m, mean_slope_deg, distance_bologna_km, the official columns, pop_change_pct,
    territorial_system, fragility_index (0..1), fragile (bool), fragility_source ('derived'), and
    one ``frag_<indicator>`` column per weighted indicator: its normalised, weighted share of the
    index (they add up to fragility_index).
    """
    params = params or config.load("fragility.yaml")
    out = comuni.reset_index(drop=True).copy()
    dem = demographic_indicators(out)
    el = mean_elevation(out, dem_path, slope_path)
    out = out.merge(dem, on="istat").merge(el, on="istat")
    if official is not None:
        extra = official.drop(columns=[c for c in official.columns
                                       if c in out.columns and c != "istat"])
        out = out.merge(extra, on="istat", how="left", validate="1:1")
        if "pop_census_2020" in out.columns:
            out["pop_change_pct"] = 100.0 * (out["pop_total"] / out["pop_census_2020"] - 1.0)
    centroids = out.geometry.centroid
    bologna = out.loc[out["name"] == "Bologna"]
    ref = bologna.geometry.iloc[0].centroid if len(bologna) else shapely.Point(
        centroids.x.mean(), centroids.y.mean())
    out["distance_bologna_km"] = centroids.distance(ref) / 1000.0
    lat = gpd.GeoSeries(centroids, crs=out.crs).to_crs(4326).y
    out["territorial_system"] = territorial_system(out["mean_elevation_m"], lat, params)
    out["fragility_index"], _, parts = composite_index(out, params, with_parts=True)
    for k, v in parts.items():
        out[f"frag_{k}"] = v
    out["fragile"] = out["fragility_index"] >= float(params["fragile_threshold"])
    out["fragility_source"] = "derived"
    return out


def first_ring(comuni: gpd.GeoDataFrame, centre: str = "037006") -> list[str]:
    """ISTAT codes of the comuni sharing a border with ``centre`` (Bologna by default): the first
    ring around the city, by geometry (touching boundaries, 1 m tolerance in the metric CRS)."""
    c = comuni.set_index("istat")
    if centre not in c.index:
        raise InputError(f"comune {centre} not in the comuni", field="istat")
    ring = c.geometry.drop(centre).distance(c.geometry[centre]) <= 1.0
    return sorted(ring[ring].index)


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


def host_comune(geoms: np.ndarray, comuni: gpd.GeoDataFrame) -> pd.DataFrame:
    """The host comune of each polygon: the comune holding the LARGEST SHARE of its area.

    The one rule for every layer and criterion (hubs, candidates, the criteria's ``host_istat``).
    ``geoms`` in the CRS of ``comuni`` (metric). Returns a frame aligned with ``geoms``: ``istat``
    (None for a polygon in no comune) and ``share`` (0..1). Ties go to the lower ISTAT code.
    """
    geoms = np.asarray(geoms, dtype=object)
    out = pd.DataFrame({"istat": pd.Series([None] * len(geoms), dtype=object),
                        "share": np.zeros(len(geoms))})
    if len(geoms) == 0 or len(comuni) == 0:
        return out
    cg = comuni.geometry.to_numpy()
    gi, ci = shapely.STRtree(cg).query(geoms, predicate="intersects")
    if gi.size == 0:
        return out
    inter = shapely.area(shapely.intersection(geoms[gi], cg[ci]))
    t = pd.DataFrame({"g": gi, "istat": comuni["istat"].to_numpy()[ci], "a": inter})
    t = t.groupby(["g", "istat"], as_index=False)["a"].sum()  # comuni given as several parts
    t = t[t["a"] > 0].sort_values(["g", "a", "istat"], ascending=[True, False, True])
    best = t.drop_duplicates("g")
    area = shapely.area(geoms)
    out.loc[best["g"].to_numpy(), "istat"] = best["istat"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out.loc[best["g"].to_numpy(), "share"] = np.clip(
            best["a"].to_numpy() / area[best["g"].to_numpy()], 0.0, 1.0)
    return out


def hub_params(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config/hubs.yaml``, checked."""
    p = config.load("hubs.yaml")
    p.update(overrides or {})
    for k in ("min_building_m2", "buffer_out_m", "buffer_in_m", "neck_m", "min_hub_ha",
              "min_buildings", "max_hub_ha", "min_piece_ha"):
        config.require(p, k, (int, float))
    steps = config.require(p, "neck_steps_m", list)
    if any(float(x) <= float(p["neck_m"]) for x in steps):
        raise InputError(f"{p.get('_source')}: neck_steps_m must be larger than neck_m")
    if p["buffer_in_m"] > p["buffer_out_m"]:
        raise InputError(f"{p.get('_source')}: buffer_in_m must not exceed buffer_out_m")
    return p


def _opening(geoms: np.ndarray, r: float) -> np.ndarray:
    """Morphological opening by ``r`` metres: parts narrower than 2r (corridors, strips along a
    railway or a road) vanish and a polygon joined only through them falls apart."""
    shrunk = shapely.buffer(geoms, -r, join_style="mitre", mitre_limit=2.0)
    grown = shapely.buffer(shrunk, r, join_style="mitre", mitre_limit=2.0)
    # The opening of a polygon lies inside it: clip to undo the mitre's overshoot at corners.
    grown = shapely.intersection(grown, geoms)
    parts = shapely.get_parts(grown)
    parts = parts[~shapely.is_empty(parts)]
    return parts[shapely.get_type_id(parts) == 3]


def derive_hubs(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame,
                landuse_bologna: gpd.GeoDataFrame | None = None,
                params: dict[str, Any] | None = None) -> gpd.GeoDataFrame:
    """Productive hubs (ambiti produttivi) DERIVED as contiguous productive land, split at
    corridors and labelled per comune. Replaceable by the official PTM layer.

    The rule (parameters in ``config/hubs.yaml``):

    1. productive land = buildings of at least ``min_building_m2`` (sheds, warehouses) across all
       comuni together, plus, in the Comune di Bologna whose footprints the kit lacks, OSM land use
       of the classes ``bologna_osm_landuse`` (rail yards are not productive land);
    2. closing (+``buffer_out_m`` / -``buffer_in_m``) merges sheds of one estate into one area;
    3. opening by ``neck_m``: areas joined only through a strip narrower than 2 x ``neck_m`` (a
       line of sheds along a railway or a road) are split there, and the strip is no hub;
    4. a hub has at least ``min_hub_ha`` and ``min_buildings`` productive buildings, or is made
       mostly (>= 50%) of OSM productive land use (Bologna);
    5. a hub still larger than ``max_hub_ha`` is opened again with the radii of ``neck_steps_m``
       until every part is under it; what stays over it is reported in ``over_max`` (never
       silently kept as one blob);
    6. each hub is cut on comune borders: one row per hub and comune (pieces under
       ``min_piece_ha`` are slivers of the border and dropped), ``hub_id`` from the host comune
       (largest share, :func:`host_comune`).

    Returns hub_id, comune_istat (the comune of this piece), host_istat, area_ha (this piece),
    hub_area_ha (the whole hub), n_comuni, n_buildings (whole hub), over_max (bool), source.
    """
    from pattogis.urbanized import close_fabric

    p = params or hub_params()
    crs = comuni.crs
    big = buildings[buildings["area_m2"] >= float(p["min_building_m2"])]
    bld = big.to_crs(crs).geometry.to_numpy() if len(big) else np.empty(0, dtype=object)
    lu = np.empty(0, dtype=object)
    if landuse_bologna is not None and len(landuse_bologna):
        sel = landuse_bologna[landuse_bologna["landuse"].isin(p["bologna_osm_landuse"])]
        lu = shapely.make_valid(sel.to_crs(crs).geometry.to_numpy())
    foot = np.concatenate([bld, lu])
    cols = ["hub_id", "comune_istat", "host_istat", "area_ha", "hub_area_ha", "n_comuni",
            "n_buildings", "over_max", "source"]
    empty = gpd.GeoDataFrame({c: [] for c in cols}, geometry=[], crs=crs)
    if len(foot) == 0:
        return empty
    closing = {"buffer_out_m": p["buffer_out_m"], "buffer_in_m": p["buffer_in_m"],
               "min_cluster_ha": 0.0, "min_buildings": 1, "fill_holes_below_ha": p["min_hub_ha"]}
    fabric = close_fabric(foot, closing)
    parts = _opening(fabric, float(p["neck_m"]))
    max_m2 = float(p["max_hub_ha"]) * 1e4
    for r in p["neck_steps_m"]:
        over = shapely.area(parts) > max_m2
        if not over.any():
            break
        parts = np.concatenate([parts[~over], _opening(parts[over], float(r))])
    # counts: buildings by point inside; OSM land use by area inside
    hit = np.empty(0, dtype="int64")
    if len(bld):
        _, hit = shapely.STRtree(parts).query(shapely.point_on_surface(bld), predicate="within")
    n_bld = np.bincount(hit, minlength=len(parts))
    lu_share = np.zeros(len(parts))
    if len(lu):
        lu_u = shapely.union_all(lu)
        lu_share = shapely.area(shapely.intersection(parts, lu_u)) / shapely.area(parts)
    area = shapely.area(parts)
    keep = (area >= float(p["min_hub_ha"]) * 1e4) & (
        (n_bld >= int(p["min_buildings"])) | (lu_share >= 0.5))
    parts, n_bld, area = parts[keep], n_bld[keep], area[keep]
    if len(parts) == 0:
        return empty
    hubs = gpd.GeoDataFrame({"n_buildings": n_bld, "hub_area_ha": area / 1e4,
                             "over_max": area > max_m2}, geometry=list(parts), crs=crs)
    hubs["host_istat"] = host_comune(parts, comuni)["istat"].to_numpy()
    hubs = hubs[hubs["host_istat"].notna()]
    hubs = hubs.sort_values(["host_istat", "hub_area_ha"], ascending=[True, False]).reset_index(drop=True)
    hubs["hub_id"] = [f"HUB-{c}-{i:03d}" for c, i in
                      zip(hubs["host_istat"], hubs.groupby("host_istat").cumcount() + 1, strict=True)]
    pieces = gpd.overlay(hubs, comuni[["istat", "geometry"]], how="intersection", keep_geom_type=True)
    pieces = pieces.rename(columns={"istat": "comune_istat"})
    pieces["area_ha"] = pieces.geometry.area / 1e4
    pieces = pieces[pieces["area_ha"] >= float(p["min_piece_ha"])]
    pieces["n_comuni"] = pieces.groupby("hub_id")["comune_istat"].transform("nunique")
    pieces["source"] = "derived"
    pieces = pieces.sort_values(["hub_id", "area_ha"], ascending=[True, False]).reset_index(drop=True)
    return gpd.GeoDataFrame(pieces[cols + ["geometry"]], crs=crs)


def _locality(points: np.ndarray, stops: gpd.GeoDataFrame | None, max_m: float) -> np.ndarray:
    """Name of the nearest TPER stop within ``max_m`` of each point (title case, house numbers
    dropped), None where there is none: a locality a planner recognises."""
    out = np.full(len(points), None, dtype=object)
    if stops is None or len(stops) == 0 or len(points) == 0:
        return out
    sp = stops.geometry.to_numpy()
    (pi, si), _ = shapely.STRtree(sp).query_nearest(points, max_distance=max_m,
                                                     return_distance=True, all_matches=False)
    nm = (stops["name"].astype(str).str.replace("`", "'").str.replace(r"\s+\d+\w?$", "", regex=True)
          .str.strip().str.title()
          .str.replace(r"\b[IVXLC][ivxlc]+\b", lambda m: m.group(0).upper(), regex=True)  # XXV
          ).to_numpy()
    out[pi] = nm[si]
    return out


def default_candidates(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame,
                       landuse_bologna: gpd.GeoDataFrame | None,
                       params: dict[str, Any] | None = None,
                       stops: gpd.GeoDataFrame | None = None) -> gpd.GeoDataFrame:
    """The candidate regeneration sites, with ``status`` saying which are in the default set.

    - Comune di Bologna: OSM brownfield, construction and greenfield land use, plus industrial
      areas tagged disused/abandoned (official OSM features). OSM ``landuse=construction`` (the
      classes ``in_corso_landuse``) marks works under way, or just finished and not yet retagged
      (Tecnopolo, Hospice Seragnoli): ``status`` 'in corso', out of the default set;
    - elsewhere: clusters of large productive buildings between ``candidate_min_ha`` and
      ``candidate_max_ha`` (DERIVED: a proxy for productive areas to regenerate).

    Every site is named: its OSM name, else "<kind> – <locality>" / "Area produttiva di <comune>
    – <locality>", the locality being the nearest TPER stop within 500 m (``stops``). The host
    comune ``comune_istat`` is the one holding the largest share of the site (:func:`host_comune`,
    the rule of every layer and criterion), with that share in ``host_share``.
    """
    from pattogis.urbanized import close_fabric

    params = params or config.load("hubs.yaml")
    frames = []
    in_corso = list(params.get("in_corso_landuse", ["construction"]))
    if landuse_bologna is not None and len(landuse_bologna):
        lu = landuse_bologna.to_crs(comuni.crs)
        tags = lu.get("tags", pd.Series("", index=lu.index)).fillna("").astype(str)
        disused = (lu["landuse"] == "industrial") & tags.str.contains("disused|abandoned", regex=True)
        sel = lu[lu["landuse"].isin(params["bologna_candidate_landuse"]) | disused]
        sel = sel[sel.geometry.area >= 2000]
        kind = pd.Series(np.where(disused.loc[sel.index], "industriale dismessa", sel["landuse"]),
                         index=sel.index).map(lambda k: KIND_LABELS.get(k, k))
        frames.append(gpd.GeoDataFrame({
            "site_id": "OSM-" + sel["osm_id"].astype(str),
            "name": sel.get("name"),
            "kind": kind,
            "status": np.where(sel["landuse"].isin(in_corso), "in corso", "candidato"),
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
            "status": "candidato",
            "source": "derived from DPC building aggregates", "provenance": "derived",
        }, geometry=[r[1] for r in rows], crs=comuni.crs))
    out = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=comuni.crs)
    out["geometry"] = shapely.make_valid(out.geometry.values)
    host = host_comune(out.geometry.to_numpy(), comuni)
    out["comune_istat"] = host["istat"].to_numpy()
    out["host_share"] = host["share"].to_numpy()
    out = out[out["comune_istat"].notna()].copy()
    out["area_ha"] = out.geometry.area / 1e4
    names = comuni.set_index("istat")["name"]
    loc = _locality(shapely.point_on_surface(out.geometry.to_numpy()), stops, 500.0)
    base = np.where(out["provenance"] == "derived",
                    "Area produttiva di " + out["comune_istat"].map(names).astype(str),
                    out["kind"].str.capitalize() + " a " + out["comune_istat"].map(names).astype(str))
    derived_name = [b if lo is None else f"{b} – {lo}" for b, lo in zip(base, loc, strict=True)]
    named = out["name"].notna() & (out["name"].astype(str).str.strip() != "")
    out["name"] = np.where(named, out["name"], derived_name)
    # Two sites near the same stop get the same name: number them, in site_id order.
    out = out.sort_values("site_id")
    dup = out["name"].duplicated(keep=False)
    k = out.groupby("name").cumcount() + 1
    out["name"] = np.where(dup, out["name"] + " (" + k.astype(str) + ")", out["name"])
    cols = ["site_id", "name", "kind", "status", "source", "provenance", "comune_istat",
            "host_share", "area_ha", "geometry"]
    return out[cols].sort_values("site_id").reset_index(drop=True)


KIND_LABELS = {"brownfield": "area dismessa", "construction": "cantiere",
               "greenfield": "area libera destinata a trasformazione"}


def unione_of(comuni: pd.DataFrame) -> dict[str, str | None]:
    """ISTAT code → Unione name (None for comuni in no Unione)."""
    u = comuni.set_index("istat")["unione"]
    return {k: (v if isinstance(v, str) and v else None) for k, v in u.items()}
