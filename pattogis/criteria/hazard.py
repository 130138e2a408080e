"""Hydro-geological hazard of the host comune (ISPRA IdroGEO 2020 per-comune indicators).

The kit has no hazard polygons (PGRA flood areas, PAI/IFFI landslides): only ISPRA's shares of
each comune's area in each hazard class. The criterion is therefore a PER-COMUNE value, the same
for every site of a comune, and says so in ``hazard_basis``; an official hazard map would allow a
per-site value.
"""

from __future__ import annotations

import numpy as np

from pattogis.criteria.registry import Outcome, criterion
from pattogis.criteria.sites import Sites

BASIS = "valore comunale (ISPRA 2020): quota del territorio del comune ospitante, non del sito"


@criterion("hazard_pct", unit="%", direction="min",
           source="ISPRA IdroGEO 2020, indicatori per comune (layer comuni_indicators)",
           label_it="Pericolosità idraulica e da frana del comune ospitante (% del territorio)",
           requires=("comuni", "hazard"),
           extra_columns=("flood_medium_pct", "landslide_p3p4_pct", "hazard_basis"))
def hazard_pct(s: Sites) -> Outcome:
    """Share (%, 0-100) of the HOST comune's area in flood hazard (ISPRA scenario P2, medium
    probability, which contains the high-probability P3 areas) plus its share in landslide hazard
    P3+P4 (high and very high), capped at 100. Flood and landslide areas hardly overlap (plain vs
    slopes), so the sum approximates the share under either. Lower is better. Host comune: the one
    holding the largest share of the site. Also returns both parts and ``hazard_basis``, which
    labels the value as per-comune: the kit has no hazard polygons."""
    host = s.host
    c = s.ctx.comuni.drop_duplicates("istat").set_index("istat")
    flood = host["istat"].map(c["flood_medium_pct"]).to_numpy(dtype="float64")
    slide = host["istat"].map(c["landslide_p3p4_pct"]).to_numpy(dtype="float64")
    v = np.minimum(flood + slide, 100.0)
    why = np.where(
        host["istat"].isna(), "il sito non ricade in nessun comune della Città metropolitana",
        "indicatori ISPRA non disponibili per il comune ospitante")
    return Outcome.of(v, np.where(np.isnan(v), why, None), flood_medium_pct=flood,
                      landslide_p3p4_pct=slide,
                      hazard_basis=np.where(np.isnan(v), None, BASIS).astype(object))
