"""Terrain and climate criteria: zonal means with exact pixel coverage (exactextract).

Rasters (working CRS): ``dem`` (SRTM3, m), ``slope`` (degrees, Horn's method on the DEM) on one
90 m grid, and ``heat`` (summer 2025 land-surface temperature, °C, 30 m, Comune di Bologna only).
DEM and slope share their grid, so their coverage fractions are computed once per site.
"""

from __future__ import annotations

from pattogis.criteria.registry import Outcome, criterion
from pattogis.criteria.sites import Sites
from pattogis.criteria.zonal import EMPTY_GEOMETRY, LOW_COVERAGE, NODATA, OUTSIDE_EXTENT


def _raster_mean(s: Sites, raster: str) -> Outcome:
    z = s.zonal(raster)
    mc = float(s.params["rasters"]["min_coverage"].get(raster, 0.0))
    text = {
        OUTSIDE_EXTENT: f"il raster '{raster}' non copre il sito",
        NODATA: f"il raster '{raster}' non ha valori validi sul sito",
        EMPTY_GEOMETRY: "geometria del sito vuota",
    }
    reason = z["reason"]
    why = reason.map(text).where(reason.notna(), None).to_numpy(dtype=object)
    low = (reason == LOW_COVERAGE).to_numpy()
    pct = (z["coverage"] * 100).round().astype("int64").astype(str)
    why[low] = (f"il raster '{raster}' copre solo il " + pct[low]
                + f"% del sito (minimo {mc:.0%})").to_numpy(dtype=object)
    return Outcome.of(z["mean"].to_numpy(), why)


@criterion("slope_mean_deg", unit="°", direction="min",
           source="pendenza da DEM SRTM3 (raster slope)", label_it="Pendenza media",
           rasters=("slope",))
def slope_mean_deg(s: Sites) -> Outcome:
    """Mean slope over the site in degrees, each 90 m cell weighted by the share of it inside the
    site. Lower is better: steep land costs more to build on and is more exposed to landslides."""
    return _raster_mean(s, "slope")


@criterion("elevation_mean_m", unit="m", direction="max",
           source="DEM SRTM3 NASA/USGS (raster dem)", label_it="Altitudine media",
           rasters=("dem",))
def elevation_mean_m(s: Sites) -> Outcome:
    """Mean elevation over the site in metres above sea level (exact cell coverage). Direction
    'max': the fund gives priority to the mountain (PTM art. 51); a profile may reverse it."""
    return _raster_mean(s, "dem")


@criterion("heat_mean_c", unit="°C", direction="max",
           source="temperatura superficiale estate 2025, Landsat 8/9, TALEA (raster heat)",
           label_it="Temperatura superficiale media (isola di calore)", rasters=("heat",))
def heat_mean_c(s: Sites) -> Outcome:
    """Mean summer land-surface temperature over the site in °C, only where the heat raster
    covers at least ``rasters.min_coverage.heat`` of the site (Comune di Bologna), else NaN with
    the reason. Direction 'max': hotter sites gain most from regeneration and desealing."""
    return _raster_mean(s, "heat")
