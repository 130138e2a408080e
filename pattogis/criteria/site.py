"""Criteria of the site itself and of where it lies: size, shape, land take, host comune."""

from __future__ import annotations

import numpy as np
import shapely

from pattogis.criteria.registry import Outcome, criterion
from pattogis.criteria.sites import Sites


@criterion("area_ha", unit="ha", direction="target", source="geometria del sito",
           label_it="Superficie del sito")
def area_ha(s: Sites) -> Outcome:
    """Area of the site in hectares (planar area in the working CRS / 10,000).

    Direction 'target': whether small or large is better depends on the call (a weight profile
    sets the range).
    """
    return Outcome.of(s.area_m2 / 1e4)


@criterion("compactness", unit="0-1", direction="max", source="geometria del sito",
           label_it="Compattezza della forma (Polsby-Popper)")
def compactness(s: Sites) -> Outcome:
    """Polsby-Popper compactness 4πA/P² (A area, P perimeter of all rings): 1 for a circle,
    π/4 ≈ 0.785 for a square, towards 0 for long or ragged shapes. Higher is better: compact
    sites waste less land on edges and access."""
    p = shapely.length(s.geoms)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(p > 0, 4.0 * np.pi * s.area_m2 / p**2, np.nan)
    return Outcome.of(v, np.where(np.isnan(v), "perimetro nullo: forma non valida", None))


def _tu_inside(s: Sites) -> np.ndarray:
    return s.memo("tu_inside", lambda: np.minimum(s.inside_area(s.ctx.tu.geometry.to_numpy()),
                                                  s.area_m2))


@criterion("land_take_ha", unit="ha", direction="min",
           source="territorio urbanizzato (layer territorio_urbanizzato) e geometria del sito",
           label_it="Consumo di suolo fuori dal territorio urbanizzato", requires=("tu",))
def land_take_ha(s: Sites) -> Outcome:
    """Hectares of the site outside the territorio urbanizzato (LR 24/2017): the land the site
    would take from the 3% quota if built. Lower is better."""
    return Outcome.of((s.area_m2 - _tu_inside(s)).clip(min=0.0) / 1e4)


@criterion("share_inside_tu", unit="0-1", direction="max",
           source="territorio urbanizzato (layer territorio_urbanizzato) e geometria del sito",
           label_it="Quota del sito nel territorio urbanizzato", requires=("tu",))
def share_inside_tu(s: Sites) -> Outcome:
    """Share (0..1) of the site's area inside the territorio urbanizzato. Higher is better:
    reuse and regeneration inside the TU do not consume quota."""
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.clip(_tu_inside(s) / s.area_m2, 0.0, 1.0)
    return Outcome.of(v)


@criterion("fragility", unit="0-1", direction="max",
           source="indice di fragilità dei comuni (pattogis.territory, layer comuni_indicators)",
           label_it="Indice di fragilità del comune", requires=("comuni", "fragility"),
           extra_columns=("host_istat",))
def fragility(s: Sites) -> Outcome:
    """Fragility index (0..1, 1 = most fragile) of the host comune, the comune holding the largest
    share of the site. Higher is better: the fund gives priority to fragile areas (PTM art. 51).
    Also returns ``host_istat``, the host comune's ISTAT code."""
    host = s.host
    c = s.ctx.comuni
    idx = c.drop_duplicates("istat").set_index("istat")["fragility_index"].astype(float)
    istat = host["istat"].to_numpy()
    v = host["istat"].map(idx).to_numpy(dtype="float64")
    why = np.where(
        host["istat"].isna(), "il sito non ricade in nessun comune della Città metropolitana",
        np.where(np.isnan(v), "indice di fragilità non disponibile per il comune ospitante", None))
    return Outcome.of(v, np.where(np.isnan(v), why, None), host_istat=istat)
