"""Accessibility criteria: rail stations (network distance), bus stops, cycleways, productive hubs.

Distances are metres in the working CRS. The rail distance runs on the road graph where it can
(see :mod:`pattogis.criteria.network`); the others are straight lines from the edge of the site
(0 when the feature touches or lies inside the site), which is what "how close is it" means for a
catchment, a cycle path or a productive area.
"""

from __future__ import annotations

import numpy as np
import shapely

from pattogis.criteria.network import nearest_distance
from pattogis.criteria.registry import Outcome, criterion
from pattogis.criteria.sites import Sites, nearest_distance_to


@criterion("rail_distance_m", unit="m", direction="min",
           source="stazioni ferroviarie (Viaggiatreno, Comune di Bologna) e grafo stradale OSM",
           label_it="Distanza dalla stazione ferroviaria (SFM) più vicina",
           requires=("rail_stations",), extra_columns=("rail_distance_method",))
def rail_distance_m(s: Sites) -> Outcome:
    """Distance in metres from the site's origin point (centroid, or a point on its surface for
    concave sites) to the nearest railway station. Lower is better.

    Over the road graph (treated as undirected: walking and cycling) where both ends are within
    ``network.snap_threshold_m`` of it: snap distance of the site + network distance + snap
    distance of the station; ``rail_distance_method = 'network'``. Elsewhere (outside Bologna
    city) the straight line times ``network.detour_factor``: ``'euclidean_detour'``.
    """
    st = s.ctx.rail_stations
    if len(st) == 0:
        return Outcome.missing(s.n, "nessuna stazione nel layer 'rail_stations'",
                               ("rail_distance_method",))
    net = s.params["network"]
    r = nearest_distance(s.ctx.graph, s.origin_xy, shapely.get_coordinates(
        shapely.centroid(st.geometry.to_numpy())), snap_threshold_m=float(net["snap_threshold_m"]),
        detour_factor=float(net["detour_factor"]))
    return Outcome.of(r["distance_m"].to_numpy(),
                      rail_distance_method=r["method"].to_numpy(dtype=object))


@criterion("bus_access", unit="fermate pesate", direction="max",
           source="fermate TPER 2015 con il numero di linee (layer bus_stops)",
           label_it="Accessibilità alle fermate del trasporto pubblico", requires=("bus_stops",))
def bus_access(s: Sites) -> Outcome:
    """Bus stops around the site, weighted by distance band and by the lines serving them.

    Sum over stops of ``band weight × n_lines``, with the bands of ``bus_access.bands`` in the
    config (default: weight 1.0 within 400 m of the site's edge, 0.5 from 400 to 800 m; stops
    inside the site count as 0 m). A stop served by 3 lines 300 m away adds 3.0; one served by 2
    lines 600 m away adds 1.0. No stop within reach gives 0 (a real zero). Higher is better.
    """
    bands = s.params["bus_access"]["bands"]
    limits = np.array([float(b["max_distance_m"]) for b in bands])
    weights = np.array([float(b["weight"]) for b in bands])
    stops = s.ctx.bus_stops
    pts = stops.geometry.to_numpy()
    lines = stops["n_lines"].to_numpy(dtype="float64")
    lines = np.where(np.isfinite(lines), lines, 0.0)
    si, pi = shapely.STRtree(pts).query(s.geoms, predicate="dwithin", distance=limits[-1])
    v = np.zeros(s.n)
    if si.size:
        d = shapely.distance(s.geoms[si], pts[pi])
        band = np.searchsorted(limits, d, side="left")  # d == 400 falls in the 400 m band
        ok = band < limits.size
        v = np.bincount(si[ok], weights=weights[band[ok]] * lines[pi[ok]], minlength=s.n)
    return Outcome.of(v)


@criterion("cycle_distance_m", unit="m", direction="min",
           source="piste ciclopedonali, Comune di Bologna (layer cycleways)",
           label_it="Distanza dalla rete ciclabile", requires=("cycleways",))
def cycle_distance_m(s: Sites) -> Outcome:
    """Straight-line distance in metres from the site's edge to the nearest cycle path (0 when a
    path touches or crosses the site). Lower is better. The layer covers the Comune di Bologna
    only (``layer_coverage`` in the config): elsewhere the value is missing, not a distance to
    the city's paths."""
    cw = s.ctx.cycleways.geometry.to_numpy()
    if len(cw) == 0:
        return Outcome.missing(s.n, "nessuna pista ciclabile nel layer 'cycleways'")
    inside = s.covered("cycleways")
    # Only where the layer covers the site: elsewhere the value is missing anyway, and the
    # nearest-feature search is the costly part (a few % of the province's sites are in Bologna).
    v = np.full(s.n, np.nan)
    v[inside] = nearest_distance_to(s.geoms[inside], cw)
    return Outcome.of(v, np.where(
        ~inside, "fuori dalla copertura della rete ciclabile disponibile (solo Comune di Bologna)",
        None))


@criterion("hub_distance_m", unit="m", direction="min",
           source="poli produttivi (layer productive_hubs, derivato o ufficiale PTM)",
           label_it="Distanza dai poli produttivi", requires=("hubs",))
def hub_distance_m(s: Sites) -> Outcome:
    """Straight-line distance in metres from the site's edge to the nearest productive hub (0 when
    the site touches or overlaps one). Lower is better: the PTM concentrates productive
    settlements in the hubs."""
    hg = s.ctx.hubs.geometry.to_numpy()
    if len(hg) == 0:
        return Outcome.missing(s.n, "nessun polo produttivo nel layer 'productive_hubs'")
    return Outcome.of(nearest_distance_to(s.geoms, hg, tree=s.tree))
