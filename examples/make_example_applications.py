"""Write the example applications of the Fondo perequativo ("esempio": invented, not real).

Every application is invented: applicants, titles, amounts and merits are made up, and each site
is a small square (or a square cut by the perimeter) placed on the DERIVED territorio
urbanizzato of the built layer set, so the example exercises the eligibility rules on the real
territory without copying any raw data. The traps (an applicant the call excludes, a site across
comuni, a site touching the TU perimeter...) are listed in ``TRAPS``.

    PATTOGIS_LAYERS_DIR=/path/to/layers python3 examples/make_example_applications.py

writes ``examples/domande_esempio.gpkg`` (layer ``domande``, EPSG:25832) and
``examples/domande_esempio.csv`` (Italian format: ``;``, decimal comma, the site as ``wkt`` with
its ``epsg``). Deterministic: the same layer set gives the same files.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis import layers

HERE = Path(__file__).resolve().parent
CRS = "EPSG:25832"

# (comune, applicant as written, side of the square in m, trap or None)
# Applicants as an office might write them: case, accents and prefixes vary on purpose.
ORDINARY = [
    ("Bologna", "Comune di Bologna", 90), ("Bologna", "Comune di Bologna", 60),
    ("Bologna", "COMUNE DI BOLOGNA", 70), ("Bologna", "Comune di Bologna", 50),
    ("Bologna", "Bologna", 80), ("Bologna", "Comune di Bologna", 40),
    ("San Lazzaro di Savena", "Comune di San Lazzaro di Sàvena", 70),
    ("Imola", "Nuovo Circondario Imolese", 90), ("Medicina", "Circondario Imolese", 60),
    ("Castel San Pietro Terme", "Nuovo Circondario Imolese", 70),
    ("San Giovanni in Persiceto", "Unione Terre d'Acqua", 80),
    ("Crevalcore", "unione terre d'acqua", 50),
    ("Castel Maggiore", "Unione Reno Galliera", 70),
    ("San Pietro in Casale", "Unione Reno-Galliera", 60),
    ("Budrio", "Unione Terre di Pianura", 80), ("Molinella", "Unione Terre di Pianura", 60),
    ("Vergato", "Unione dei Comuni dell'Appennino Bolognese", 50),
    ("Gaggio Montano", "Unione Appennino Bolognese", 40),
    ("Alto Reno Terme", "Unione dei Comuni dell'Appennino Bolognese", 45),
    ("Pianoro", "Unione dei Comuni Savena-Idice", 60),
    ("Monghidoro", "Unione Savena Idice", 40),
    ("Casalecchio di Reno", "Unione dei Comuni Valli del Reno, Lavino e Samoggia", 80),
    ("Valsamoggia", "Unione Valli del Reno Lavino e Samoggia", 60),
]

TRAPS = {
    "comune_in_unione": "a comune of an Unione applies alone (excluded, its Unione named)",
    "unione_fuori": "an Unione applies for a site in another Unione's comune (excluded)",
    "unione_in_bologna": "an Unione applies for a site in Bologna, a comune in no Unione (excluded)",
    "sconosciuto": "an applicant that does not exist, 'Unione Pippo' (excluded)",
    "fuori_tu": "a site wholly outside the TU (excluded)",
    "bordo_tu": "a site touching the perimeter, ~99.5% inside (eligible within the tolerance)",
    "oltre_tolleranza": "a site about 10% outside the TU (excluded, m² outside stated)",
    "a_cavallo": "a site across Bologna and a neighbouring comune (host by largest share)",
    "istat_sbagliato": "a declared comune_istat that disagrees with the polygon (reported)",
    "dichiarazioni_false": "declared system, fragility, residents contradicting the layers (reported)",
    "bologna_fuori": "Comune di Bologna applies for a site in San Lazzaro (excluded)",
}


def _sites_in(tu: shapely.Geometry, n: int, side: float, rng: np.random.Generator,
              inset: float = 150.0) -> list[shapely.Geometry]:
    """``n`` squares of ``side`` m deep inside ``tu`` (at least ``inset`` m from its edge)."""
    core = tu.buffer(-inset)
    if core.is_empty:
        core = tu.buffer(-side)
    shapely.prepare(core)
    shapely.prepare(tu)
    x0, y0, x1, y1 = core.bounds
    out: list[shapely.Geometry] = []
    for _ in range(5000):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        sq = shapely.box(x - side / 2, y - side / 2, x + side / 2, y + side / 2)
        if core.contains(shapely.Point(x, y)) and tu.contains(sq) and not any(
                sq.distance(o) < 300 for o in out):
            out.append(sq)
            if len(out) == n:
                return out
    raise RuntimeError(f"could not place {n} sites of {side} m")


def _outside(comune: shapely.Geometry, tu: shapely.Geometry, rng: np.random.Generator) -> shapely.Geometry:
    x0, y0, x1, y1 = comune.bounds
    far = tu.buffer(300)
    shapely.prepare(far)
    for _ in range(5000):
        x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
        sq = shapely.box(x - 40, y - 40, x + 40, y + 40)
        if comune.buffer(-200).contains(sq) and not far.intersects(sq):
            return sq
    raise RuntimeError("no site outside the TU found")


def _touching(tu: shapely.Geometry, lo: float, hi: float, rng: np.random.Generator) -> shapely.Geometry:
    """A site made of the part of a 100 m square inside the TU, grown past the perimeter until
    the share inside falls in [lo, hi]."""
    ring = tu.boundary
    for _ in range(400):
        pt = ring.interpolate(rng.uniform(0, ring.length))
        sq = shapely.box(pt.x - 50, pt.y - 50, pt.x + 50, pt.y + 50)
        inside = sq.intersection(tu)
        if inside.geom_type != "Polygon" or inside.area < 3500:
            continue
        for d in np.arange(0.1, 12.0, 0.1):
            site = inside.buffer(d, join_style="mitre").intersection(sq).simplify(0.05)
            if site.geom_type != "Polygon" or not site.is_valid:
                break
            share = site.intersection(tu).area / site.area
            if lo <= share <= hi:
                return site
            if share < lo:
                break
    raise RuntimeError(f"no touching site with share in [{lo}, {hi}]")


def _across(a: shapely.Geometry, neighbours: list[shapely.Geometry], tu: shapely.Geometry,
            rng: np.random.Generator) -> shapely.Geometry:
    """A site across the border of ``a`` and one of its neighbours: the part of a square on the
    border that lies in the TU, when that part is one polygon with most of it in ``a``."""
    for b in neighbours:
        border = a.boundary.intersection(b.boundary)
        if border.length == 0:
            continue
        for _ in range(800):
            pt = border.interpolate(rng.uniform(0, border.length))
            sq = shapely.box(pt.x - 50, pt.y - 50, pt.x + 50, pt.y + 50)
            site = sq.intersection(tu)
            if site.geom_type != "Polygon" or site.area < 4000:
                continue
            if 0.55 <= site.intersection(a).area / site.area <= 0.8:
                return site
    raise RuntimeError("no site across two comuni inside the TU")


def build(seed: int = 11) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    comuni = layers.open_layer("comuni").set_index("name")
    tu_layer = layers.open_layer("territorio_urbanizzato")
    tu_by = tu_layer.set_index("comune_istat").geometry
    tu_all = shapely.union_all(tu_layer.geometry.values)

    def tu_of(name: str) -> shapely.Geometry:
        return tu_by[comuni.at[name, "istat"]].buffer(0)

    rows: list[dict] = []

    def add(name: str, applicant: str, geom: shapely.Geometry, trap: str | None = None,
            **declared: object) -> None:
        k = len(rows) + 1
        rows.append({"project_id": f"ES-{k:02d}",
                     "title": f"Rigenerazione di un'area dismessa {k} (esempio)",
                     "applicant": applicant,
                     "requested_eur": float(round(rng.uniform(60_000, 420_000), 2)),
                     "merit": float(round(rng.uniform(40, 95), 2)),
                     "notes": "esempio inventato" + (f"; trappola: {trap}" if trap else ""),
                     **declared, "geometry": geom})

    by_comune: dict[str, list[tuple[str, float]]] = {}
    for name, applicant, side in ORDINARY:
        if name not in comuni.index:
            continue
        by_comune.setdefault(name, []).append((applicant, side))
    for name, apps in by_comune.items():
        sides = [s for _, s in apps]
        sites = _sites_in(tu_of(name), len(apps), max(sides), rng)
        for (applicant, side), sq in zip(apps, sites, strict=True):
            c = sq.centroid
            add(name, applicant, shapely.box(c.x - side / 2, c.y - side / 2, c.x + side / 2, c.y + side / 2))

    add("Imola", "Comune di Imola", _sites_in(tu_of("Imola"), 1, 60, rng)[0], "comune_in_unione",
        applicant_type="comune")
    add("Budrio", "Unione Reno Galliera", _sites_in(tu_of("Budrio"), 1, 50, rng)[0], "unione_fuori")
    add("Bologna", "Unione Terre di Pianura", _sites_in(tu_of("Bologna"), 1, 50, rng, inset=600)[0],
        "unione_in_bologna")
    add("Zola Predosa", "Unione Pippo", _sites_in(tu_of("Zola Predosa"), 1, 50, rng)[0], "sconosciuto",
        applicant_type="unione")
    add("Minerbio", "Unione Terre di Pianura",
        _outside(comuni.at["Minerbio", "geometry"], tu_of("Minerbio"), rng), "fuori_tu")
    add("Argelato", "Unione Reno Galliera", _touching(tu_of("Argelato"), 0.992, 0.997, rng), "bordo_tu")
    add("Sasso Marconi", "Unione dei Comuni Valli del Reno, Lavino e Samoggia",
        _touching(tu_of("Sasso Marconi"), 0.86, 0.92, rng), "oltre_tolleranza")
    add("Bologna", "Comune di Bologna",
        _across(comuni.at["Bologna", "geometry"],
                [comuni.at[n, "geometry"] for n in ("Casalecchio di Reno", "San Lazzaro di Savena",
                                                    "Castel Maggiore", "Calderara di Reno",
                                                    "Granarolo dell'Emilia", "Castenaso")],
                tu_all, rng), "a_cavallo")
    add("Galliera", "Unione Reno Galliera", _sites_in(tu_of("Galliera"), 1, 50, rng)[0],
        "istat_sbagliato", comune_istat="037006")
    add("Loiano", "Unione dei Comuni Savena-Idice", _sites_in(tu_of("Loiano"), 1, 40, rng, inset=60)[0],
        "dichiarazioni_false", territorial_system="via Emilia", fragile="no", population="99999",
        inside_tu_share="1")
    add("San Lazzaro di Savena", "Comune di Bologna",
        _sites_in(tu_of("San Lazzaro di Savena"), 1, 50, rng, inset=400)[0], "bologna_fuori")
    g = gpd.GeoDataFrame(pd.DataFrame(rows), geometry="geometry", crs=CRS)
    g["geometry"] = shapely.set_precision(g.geometry.values, 0.1)
    cols = ["project_id", "title", "applicant", "applicant_type", "comune_istat",
            "territorial_system", "fragile", "population", "inside_tu_share", "requested_eur",
            "merit", "notes", "geometry"]
    for c in cols:
        if c not in g.columns:
            g[c] = None
    return g[cols]


def write(g: gpd.GeoDataFrame, out: Path) -> tuple[Path, Path]:
    from pattogis.exports import to_csv_it, write_gpkg
    from pattogis.io import atomic_write_text

    gpkg = out / "domande_esempio.gpkg"
    write_gpkg({"domande": g}, gpkg)
    csv = out / "domande_esempio.csv"
    t = pd.DataFrame(g.drop(columns="geometry"))
    t["wkt"] = shapely.to_wkt(g.geometry.values, rounding_precision=1, trim=True)
    t["epsg"] = 25832
    atomic_write_text(csv, to_csv_it(t))
    return gpkg, csv


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(HERE), help="folder (default: examples/)")
    a = ap.parse_args()
    for p in write(build(), Path(a.out)):
        print(f"{p} ({p.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
