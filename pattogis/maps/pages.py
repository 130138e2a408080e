"""The four web maps (Italian): territory overview, a comune's land budget, an Unione's site
comparison, the equalization fund allocation.

Each function returns a ``folium.Map``; :func:`pattogis.maps.base.render` turns it into one HTML
string and :func:`pattogis.maps.base.write_page` writes it atomically to ``maps/<name>.html``. The
CLI and the API call the same functions.

``static_url``: None inlines Leaflet (a file that opens offline); the API passes
``/maps/static``. ``data_url``: None inlines light versions of the heavy layers (or leaves
buildings and the candidate sites out); the API passes ``/maps/data``: bus stops, candidate
sites, buildings and the TU are then drawn from the API's vector tiles (OGC API - Tiles) and
cycle paths load as GeoJSON for the area in view. Layer inputs are in the working CRS
(EPSG:25832); areas in ha.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import pandas as pd

from pattogis import analysis, config, layers
from pattogis.errors import InputError, NotFound
from pattogis.maps.base import (
    BG_COLOR,
    GREENS,
    OVERDRAFT,
    SIMPLIFY_M,
    VIRIDIS,
    YL_OR_RD,
    Classes,
    LegendSection,
    MapScript,
    add_layer_control,
    add_legend,
    add_panel,
    base_map,
    bounds_latlon,
    display_frame,
    esc,
    fmt_eur,
    fmt_ha,
    fmt_num,
    fmt_pct,
    geojson_layer,
    quantile_classes,
    table_html,
    to_features,
    write_page,
)
from pattogis.maps.data import ON_DEMAND, is_derived, source_text
from pattogis.maps.js import ScriptLayer, compact_json

SYSTEM_LABELS = {"collina-montagna": "Collina e montagna", "via Emilia": "Via Emilia",
                 "pianura nord": "Pianura nord"}
SYSTEM_COLORS = {"collina-montagna": "#8c6d31", "via Emilia": "#e6550d", "pianura nord": "#3182bd"}
PTYPE_COLORS = {"riuso": "#1f78b4", "rigenerazione": "#33a02c", "nuova_urbanizzazione": "#e31a1c",
                "desigillazione": "#ff7f00"}
STATUS_LABELS = {"bozza": "Bozza", "presentata": "Presentata", "approvata": "Approvata",
                 "ritirata": "Ritirata"}
POOL_LABELS = {"locale": "Locale (1%)", "metropolitano": "Metropolitano (2%)"}
FUND_STATUS = {  # canonical key: (label, colour)
    "finanziato": ("Finanziato", "#1a9641"),
    "finanziato_parzialmente": ("Finanziato parzialmente", "#a6d96a"),
    "non_finanziato": ("Non finanziato", "#fdae61"),
    "escluso": ("Escluso", "#7f7f7f"),
}
TU_COLOR = "#6a51a3"
# cool to hot, distinct from the fragility palette drawn beneath
HEAT_COLORS = ["#2c7bb6", "#abd9e9", "#ffffbf", "#fdae61", "#d7191c"]
HUB_COLOR = "#111111"
RAIL_COLOR = "#111111"
NO_TILES_NOTE = ("Sfondo dai nostri dati (confini e nomi dei comuni, ferrovie, strade "
                 "principali, rilievo): funziona offline. Lo sfondo OpenStreetMap si attiva dal "
                 "selettore dei livelli (serve internet).")


def _badge(text: str) -> str:
    return f" <span class='pg-badge'>{text}</span>"


def _name(label: str, derived: bool) -> str:
    """Layer-control label; derived layers carry a visible 'derivato' badge."""
    return label + (_badge("derivato") if derived else "")


def _style(fill: str | None = None, color: str = "#444", weight: float = 0.6,
           fill_opacity: float = 0.7, **extra: Any) -> dict[str, Any]:
    # no fill: the interior must not catch clicks meant for the layers below
    st = {"color": color, "weight": weight, "fillOpacity": fill_opacity if fill else 0.0,
          "fillColor": fill or color, "opacity": 0.9, "fill": bool(fill)}
    st.update(extra)
    return st


# --- 1. overview -----------------------------------------------------------------------------


def _heat_overlay(m: folium.Map, resolution_deg: float = 0.0006) -> LegendSection | None:
    """Summer land-surface temperature of Bologna city (TALEA) as a coloured image overlay."""
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    try:
        src_path = layers.raster_path("heat")
    except Exception:  # noqa: BLE001 - the layer set may lack the raster: the page goes on without it
        return None
    with rasterio.open(src_path) as src:
        tr, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                               *src.bounds, resolution=resolution_deg)
        out = np.full((h, w), np.nan, dtype="float32")
        reproject(rasterio.band(src, 1), out, dst_transform=tr, dst_crs="EPSG:4326",
                  resampling=Resampling.average, src_nodata=src.nodata, dst_nodata=np.nan)
    valid = np.isfinite(out)
    if not valid.any():
        return None
    cls = quantile_classes(out[valid], HEAT_COLORS, decimals=1, unit="°C")
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    cols = cls.color(out[valid])
    rgb = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in cols], dtype=np.uint8)
    rgba[valid, :3] = rgb
    rgba[valid, 3] = 190
    west, north = tr.c, tr.f
    east, south = west + tr.a * w, north + tr.e * h
    src_txt = source_text(["heat"])
    folium.raster_layers.ImageOverlay(
        rgba, bounds=[[south, west], [north, east]], mercator_project=True, origin="upper",
        name="Temperatura superficiale estiva 2025 (Bologna)", show=False, attr=src_txt,
        interactive=False,
    ).add_to(m)
    return LegendSection("Temperatura superficiale estiva 2025 (solo Comune di Bologna)",
                         cls.legend(), source=src_txt)


AI_LABELS = {"A": "Polo", "B": "Polo intercomunale", "C": "Cintura", "D": "Intermedio",
             "E": "Periferico", "F": "Ultraperiferico"}

STATIONS_NOTE_IT = (
    "Elenco RFI delle stazioni con servizio viaggiatori, più le fermate della linea FER nel Comune "
    "di Bologna; le stazioni oltre il confine servono solo per le distanze e non sono disegnate. "
    "Le fermate FER/TPER fuori Bologna (Bologna–Portomaggiore, Casalecchio–Vignola) non sono in "
    "nessuna fonte del kit: si aggiungono da file con `pattogis data build --stations FILE`.")


CANDIDATES_NOTE_IT = (
    "Siti candidati: aree dismesse e libere OSM a Bologna, aggregati produttivi derivati dagli "
    "edifici altrove; i cantieri in corso (OSM landuse=construction) sono esclusi. Comune "
    "ospitante: quello con la quota maggiore del sito. Pericolosità idraulica e da frana: valore "
    "del comune (ISPRA 2020), non del sito.")


def fragility_weights_it(params: Mapping[str, Any]) -> str:
    """The fragility weights in Italian, as the legend states them ("classe aree interne 20%, ...")."""
    spec = params["indicators"]
    total = sum(float(v["weight"]) for v in spec.values()) or 1.0
    return "; ".join(f"{v.get('label', k)} {100 * float(v['weight']) / total:.0f}%"
                     for k, v in spec.items())


def hubs_rule_it() -> str:
    """The rule of the derived productive hubs, with its parameters, for the legend."""
    h = config.load("hubs.yaml")
    return (f"Derivati: suolo produttivo contiguo (edifici ≥ {h['min_building_m2']:g} m², aree "
            f"industriali e commerciali OSM a Bologna), chiusura +{h['buffer_out_m']:g}/"
            f"−{h['buffer_in_m']:g} m, diviso dove è unito solo da strisce più strette di "
            f"{2 * float(h['neck_m']):g} m (corridoi lungo ferrovie e strade); almeno "
            f"{h['min_hub_ha']:g} ha, massimo {h['max_hub_ha']:g} ha; diviso ed etichettato per "
            "comune. Non è la cartografia ufficiale del PTM.")


def overview_map(*, static_url: str | None = None, data_url: str | None = None,
                 simplify_m: float = SIMPLIFY_M, heat: bool = True) -> folium.Map:
    """The territory: comuni by fragility, territorial systems, TU, productive hubs, stations,
    bus stops, cycle paths (and, from the API, buildings at street zoom)."""
    ci = layers.open_layer("comuni_indicators")
    tu = layers.open_layer("territorio_urbanizzato")
    hubs = layers.open_layer("productive_hubs")
    rail = layers.open_layer("rail_stations")
    names = ci.set_index("istat")["name"]
    m = base_map("Territorio della Città metropolitana di Bologna",
                 "Fragilità dei comuni, sistemi territoriali, territorio urbanizzato, poli "
                 "produttivi e mobilità", bounds=bounds_latlon(ci), static_url=static_url)
    legend: list[LegendSection] = []

    # fragility choropleth (derived composite index)
    frag_src = source_text(["comuni_indicators", "comuni"])
    cls = quantile_classes(ci["fragility_index"], YL_OR_RD, decimals=2)
    def col(name: str) -> pd.Series:
        return ci[name] if name in ci.columns else pd.Series(np.nan, index=ci.index)

    fparams = config.load("fragility.yaml")
    pops = [table_html([
        ("Unione", esc(u) if isinstance(u, str) and u else "nessuna"),
        ("Sistema territoriale", esc(SYSTEM_LABELS.get(s, s))),
        ("Indice di fragilità (0–1)", fmt_num(f, 3)),
        ("Comune fragile", "sì" if fr else "no"),
        ("Residenti (2023)", fmt_num(p, 0)),
        ("Classe aree interne 2020", esc(f"{ac} – {AI_LABELS.get(ac, '')}") if isinstance(ac, str) else "–"),
        ("Minuti dal polo", fmt_num(mi, 1)),
        ("Area SNAI 2021-27", esc(sn) if isinstance(sn, str) and sn else "nessuna"),
        ("Reddito imponibile per contribuente (2021)", f"{fmt_num(inc, 0)} €"),
        ("Indice di vecchiaia", fmt_num(o, 0)),
        ("Variazione residenti 2020→2023", f"{fmt_num(pc, 1)}%"),
        ("Superficie a pericolosità da frana P3+P4", f"{fmt_num(ls, 1)}%"),
        ("Superficie a pericolosità idraulica P2", f"{fmt_num(fl, 1)}%"),
        ("Altitudine media", f"{fmt_num(el, 0)} m"),
    ], title=esc(nm)) for nm, u, s, f, fr, p, ac, mi, sn, inc, o, pc, ls, fl, el in zip(
        ci["name"], ci["unione"], ci["territorial_system"], ci["fragility_index"], ci["fragile"],
        ci["pop_total"], col("ai_class"), col("ai_minutes_to_pole"), col("snai_area"),
        col("income_per_taxpayer_eur"), ci["old_age_index"], col("pop_change_pct"),
        col("landslide_p3p4_pct"), col("flood_medium_pct"), ci["mean_elevation_m"],
        strict=True)]
    fc = to_features(ci, {"popup": pops, "tip": [f"{esc(n)}: {fmt_num(f, 2)}" for n, f in
                                                  zip(ci["name"], ci["fragility_index"], strict=True)],
                          "_fill": cls.color(ci["fragility_index"])}, simplify_m=simplify_m)
    geojson_layer(fc, _name("Fragilità dei comuni", True), attribution=frag_src, highlight=True, key="fragility",
                  outline_from=STREET_ZOOM, style=_style("#ccc", "#555", 0.7, 0.75)).add_to(m)
    frag_derived = str(ci["fragility_source"].iloc[0]) != "official" if "fragility_source" in ci else True
    legend.append(LegendSection(
        "Indice di fragilità dei comuni (0–1)", cls.legend(), derived=frag_derived,
        source=frag_src, note="Indice composito di indicatori ufficiali normalizzati min-max: "
        + fragility_weights_it(fparams) + " (config/fragility.yaml). Non è l'indice ufficiale "
        "dell'ufficio statistico metropolitano, che si può caricare da CSV. " + OUTLINE_NOTE))

    # territorial systems (derived from elevation and latitude)
    sysg = ci[["territorial_system", "pop_total", "geometry"]].dissolve(
        by="territorial_system", aggfunc={"pop_total": "sum"}).reset_index()
    n_by = ci.groupby("territorial_system").size()
    sysg["n"] = sysg["territorial_system"].map(n_by)
    pops = [table_html([("Comuni", str(int(k))), ("Residenti (2023)", fmt_num(p, 0))],
                       title=esc(SYSTEM_LABELS.get(s, s)))
            for s, k, p in zip(sysg["territorial_system"], sysg["n"], sysg["pop_total"], strict=True)]
    fc = to_features(sysg, {"popup": pops, "tip": [esc(SYSTEM_LABELS.get(s, s)) for s in
                                                   sysg["territorial_system"]],
                            "_fill": [SYSTEM_COLORS.get(s, "#999") for s in sysg["territorial_system"]]},
                     simplify_m=simplify_m)
    geojson_layer(fc, _name("Sistemi territoriali", True), show=False, attribution=frag_src, key="systems",
                  outline_from=STREET_ZOOM, style=_style("#999", "#222", 1.2, 0.45)).add_to(m)
    legend.append(LegendSection("Sistemi territoriali (PTM)",
                                [(SYSTEM_COLORS[k], v) for k, v in SYSTEM_LABELS.items()],
                                derived=True, source=frag_src,
                                note="Collina-montagna: altitudine media sopra soglia; pianura "
                                "nord: baricentro a nord della latitudine di soglia (config/fragility.yaml)."))

    # territorio urbanizzato
    tu_derived = bool((tu["source"] != "official").any())
    tu_src = source_text(["territorio_urbanizzato"])
    pops = [table_html([("Superficie", fmt_ha(a, 1)), ("Edifici considerati", fmt_num(b, 0)),
                        ("Perimetro", "derivato (art. 32 LR 24/2017)" if s != "official" else "ufficiale")],
                       title=f"Territorio urbanizzato – {esc(names.get(c, c))}")
            for c, a, b, s in zip(tu["comune_istat"], tu["area_ha"], tu["n_buildings"], tu["source"],
                                  strict=True)]
    if data_url is not None:  # from the API: vector tiles, not 0.9 MB of inline GeoJSON
        tiles_layer(m, "territorio_urbanizzato", data_url,
                    name=_name("Territorio urbanizzato", tu_derived), title="Territorio urbanizzato",
                    fields=TU_TILE_FIELDS, lookups=TU_LOOKUPS,
                    color=TU_COLOR, fill=TU_COLOR, weight=0.6, fill_opacity=0.45, min_zoom=0,
                    show=True, key="tu", attribution=tu_src)
    else:
        fc = to_features(tu, {"popup": pops, "tip": [f"TU {esc(names.get(c, c))}"
                                                     for c in tu["comune_istat"]]},
                         simplify_m=simplify_m)
        geojson_layer(fc, _name("Territorio urbanizzato", tu_derived), attribution=tu_src,
                      key="tu", style=_style(TU_COLOR, TU_COLOR, 0.6, 0.45)).add_to(m)
    legend.append(LegendSection(
        "Territorio urbanizzato (TU) provvisorio", [(TU_COLOR, f"TU, totale {fmt_ha(tu['area_ha'].sum(), 0)}")],
        derived=tu_derived, source=tu_src,
        note="Perimetro provvisorio derivato da edifici e uso del suolo secondo l'art. 32 "
        "LR 24/2017, sostituibile con il perimetro ufficiale del PUG."))

    # productive hubs
    hub_src = source_text(["productive_hubs"])
    hub_comuni = hubs.groupby("hub_id").apply(
        lambda g: "; ".join(f"{names.get(c, c)} {fmt_ha(a, 1)}" for c, a in
                            zip(g["comune_istat"], g["area_ha"], strict=True)), include_groups=False)
    whole = hubs["hub_area_ha"] if "hub_area_ha" in hubs.columns else hubs["area_ha"]
    pops = [table_html([("Comune di questa parte", esc(names.get(c, c))),
                        ("Superficie in questo comune", fmt_ha(a, 1)),
                        ("Superficie del polo", fmt_ha(w, 1)),
                        ("Comuni del polo", esc(hub_comuni.get(h, "")))],
                       title=f"Polo produttivo {esc(h)}")
            for h, c, a, w in zip(hubs["hub_id"], hubs["comune_istat"], hubs["area_ha"], whole,
                                  strict=True)]
    fc = to_features(hubs, {"popup": pops, "tip": [esc(h) for h in hubs["hub_id"]]},
                     simplify_m=simplify_m)
    hubs_derived = is_derived("productive_hubs")
    geojson_layer(fc, _name("Poli produttivi", hubs_derived), attribution=hub_src, key="hubs",
                  style=_style("#ffffff", HUB_COLOR, 2.0, 0.0, dashArray="4 3")).add_to(m)
    legend.append(LegendSection("Poli produttivi (ambiti produttivi)", [(HUB_COLOR, "Polo produttivo")],
                                kind="line", derived=hubs_derived, source=hub_src,
                                note=hubs_rule_it()))

    if data_url is not None:  # every candidate site, from the vector tiles (off at first)
        legend.append(candidates_tiles_layer(m, data_url, show=False))

    # rail stations
    rail_src = source_text(["rail_stations"])
    # Stations beyond the boundary serve distances across it only: not drawn as the province's.
    if "in_province" in rail.columns:
        rail = rail[rail["in_province"].astype(bool)]
    rcol = {k: (rail[k] if k in rail.columns else pd.Series("", index=rail.index))
            for k in ("kind", "lines", "sources")}
    pops = [table_html([("Tipo", esc(k) if isinstance(k, str) else "–"),
                        ("Linee", esc(li) if isinstance(li, str) and li else "non indicate dalla fonte"),
                        ("Codice Viaggiatreno", esc(i) if isinstance(i, str) and i else "–"),
                        ("Fonte", esc(s)), ("Presente anche in", esc(ss) if isinstance(ss, str) else "–")],
                       title=f"Stazione {esc(n)}")
            for n, i, s, k, li, ss in zip(rail["name"], rail["id_staz"], rail["source"], rcol["kind"],
                                          rcol["lines"], rcol["sources"], strict=True)]
    fc = to_features(rail, {"popup": pops, "tip": [esc(n) for n in rail["name"]]})
    geojson_layer(fc, "Stazioni ferroviarie", attribution=rail_src, point_radius=5, key="rail",
                  style=_style("#ffffff", RAIL_COLOR, 2.0, 1.0)).add_to(m)
    legend.append(LegendSection("Stazioni ferroviarie (SFM)", [("#ffffff", "Stazione o fermata")],
                                kind="dot", source=rail_src, note=STATIONS_NOTE_IT))

    # heavy layers: on demand from the API, or light inline versions in a file
    legend += _mobility_layers(m, data_url, include_buildings=True)

    if heat:
        sec = _heat_overlay(m)
        if sec is not None:
            legend.append(sec)

    add_layer_control(m)
    add_legend(m, legend, footer=NO_TILES_NOTE)
    return m


DIFF_COLORS = ["#b2182b", "#ef8a62", "#f7f7f7", "#67a9cf", "#2166ac"]  # less ... more quota


def scenario_difference_layer(m: folium.Map, comuni: gpd.GeoDataFrame, cmp: pd.DataFrame,
                              scenario: str, source: str, simplify_m: float) -> LegendSection:
    """Remaining local quota per comune, scenario minus base (ha; negative: the scenario uses
    more quota), in a diverging palette centred on 0 (``cmp``: ``ledger.compare(scen, base)``)."""
    d = comuni[["istat", "name", "geometry"]].merge(
        cmp[["istat", "remaining_locale_ha_base", f"remaining_locale_ha_{scenario}",
             "delta_remaining_locale_ha"]], on="istat")
    delta = d["delta_remaining_locale_ha"].to_numpy(dtype=float)
    top = float(np.nanmax(np.abs(delta))) if len(delta) and np.isfinite(delta).any() else 0.0
    top = max(top, 0.01)
    breaks = [-top, -top / 3, -0.005, 0.005, top / 3, top]
    cls = Classes(breaks, DIFF_COLORS, decimals=2, unit="ha")
    pops = [table_html([
        ("Quota locale residua – base", fmt_ha(b)),
        (f"Quota locale residua – «{esc(scenario)}»", fmt_ha(s_)),
        ("<b>Differenza (scenario − base)</b>", f"<b>{fmt_ha(x)}</b>"),
    ], title=esc(n)) for n, b, s_, x in zip(
        d["name"], d["remaining_locale_ha_base"], d[f"remaining_locale_ha_{scenario}"], delta,
        strict=True)]
    fc = to_features(d, {"popup": pops, "tip": [f"{esc(n)}: {fmt_ha(x)}" for n, x in
                                                zip(d["name"], delta, strict=True)],
                         "_fill": cls.color(delta)}, simplify_m=simplify_m)
    geojson_layer(fc, f"Differenza dallo scenario base («{esc(scenario)}» − base)",
                  attribution=source, highlight=True, key="scenario_diff", outline_from=STREET_ZOOM,
                  style=_style("#ccc", "#666", 0.7, 0.75)).add_to(m)
    return LegendSection(f"Quota locale residua: «{scenario}» − base (ha)", cls.legend(),
                         source=source, note="Negativo: lo scenario usa più quota della base; "
                         "positivo: ne libera (desigillazioni, proposte ritirate).")


def _field(key: str, label: str, **opts: Any) -> dict[str, Any]:
    """A popup row of a tiled layer: property ``key`` shown as ``label``; ``opts``: ``decimals``
    (Italian number format), ``unit``, ``dflt`` (when missing), ``lookup`` (a table of the
    payload's ``lookups``: code -> text)."""
    return {"key": key, "label": label, **opts}


#: From this zoom (the buildings' first) choropleths of comuni are drawn as outlines only.
STREET_ZOOM = 14
OUTLINE_NOTE = (f"Dallo zoom {STREET_ZOOM} solo i contorni: un clic mostra l'edificio o il "
                "territorio urbanizzato sotto il punto.")
#: Layers the API pages draw from vector tiles (OGC API - Tiles) instead of GeoJSON by bbox:
#: layer -> popup rows (:func:`_field`), the property titling the popup, the hover text (with
#: {property} slots), the property the point radius grows with, the first zoom drawn, and
#: ``top``: drawn above the GeoJSON layers (points and small sites, clickable there).
TILED: dict[str, dict[str, Any]] = {
    "buildings": {"fields": [_field("idag", "Aggregato strutturale"),
                             _field("comune_istat", "Comune", lookup="comuni"),
                             _field("area_m2", "Superficie", decimals=0, unit="m²")],
                  "min_zoom": STREET_ZOOM},
    # the popup of /maps/data/bus_stops: the stop's name, comune, code and TPER lines
    "bus_stops": {"fields": [_field("comune_name", "Comune"),
                             _field("stop_code", "Codice fermata"),
                             _field("n_lines", "Linee TPER servite", decimals=0, dflt=0)],
                  "title_field": "name", "tip": "{name} ({n_lines} linee)",
                  "radius_field": "n_lines", "min_zoom": 12, "top": True, "z_index": 3},
    "candidates": {"fields": [_field("site_id", "Codice sito"),
                              _field("comune_istat", "Comune", lookup="comuni"),
                              _field("kind", "Tipo"), _field("status", "Stato"),
                              _field("area_ha", "Superficie", decimals=2, unit="ha"),
                              _field("source", "Fonte", lookup="sources")],
                   "title_field": "name", "tip": "{name}", "min_zoom": 0, "top": True,
                   "z_index": 2},
}
#: The popup rows of the TU drawn from the tiles (as the GeoJSON popup of a written page).
TU_TILE_FIELDS = [_field("name", "Comune"), _field("area_ha", "Superficie", decimals=1, unit="ha"),
                  _field("n_buildings", "Edifici considerati", decimals=0),
                  _field("source", "Perimetro", lookup="perimeter")]
TU_LOOKUPS = {"perimeter": {"derived": "derivato (art. 32 LR 24/2017)", "official": "ufficiale"}}
#: The canvas-tiled collections a click on the map identifies (the items under it, from the
#: API), most specific first: the first with a feature under the click gives the popup.
IDENTIFY_ORDER = ("buildings", "territorio_urbanizzato")
# tan and brown: apart from the score palette (viridis) the Unione page colours its own sites with
CANDIDATE_STYLE = {"color": "#8c510a", "fill": "#d8b365", "weight": 1.2, "fill_opacity": 0.6}
CANDIDATE_SOURCES_IT = {"derived from DPC building aggregates":
                        "aggregati strutturali DPC (derivato)"}


def tiles_layer(m: folium.Map, collection: str, data_url: str, *, name: str, title: str,
                fields: list[dict[str, Any]] | dict[str, str], color: str, fill: str,
                weight: float, fill_opacity: float, min_zoom: int, show: bool, key: str,
                attribution: str, **extra: Any) -> str:
    """A layer drawn from Mapbox Vector Tiles of the API's /collections/{collection}/tiles by
    Leaflet.VectorGrid: only the tiles in view travel (and the browser caches them). Popups
    list ``fields`` (:func:`_field` rows, or property -> Italian label) under ``title`` (or the
    ``title_field`` property). ``extra``: ``title_field``, ``tip`` (hover text with {property}
    slots), ``radius_field`` (points: radius grows with its square root), ``top`` (drawn above
    the GeoJSON layers, clickable), ``z_index``, ``skip_field``/``skip`` (features the page draws
    itself), ``lookups`` (name -> code -> text). Layers not ``top`` (canvas tiles, beneath the
    GeoJSON layers) open their popup by identify: a click on the map that no drawn layer took
    asks ``/collections/{collection}/items?bbox=`` for the feature there, in
    :data:`IDENTIFY_ORDER`. Returns the id of its status line."""
    note_id = f"pg-od-{key}"
    root = data_url.rstrip("/").removesuffix("/maps/data")
    rows = ([_field(k, v) for k, v in fields.items()] if isinstance(fields, dict)
            else list(fields))
    camel = {"title_field": "titleField", "radius_field": "radiusField", "z_index": "zIndex",
             "skip_field": "skipField", "tip": "tip", "top": "top", "skip": "skip",
             "lookups": "lookups"}
    unknown = set(extra) - set(camel)
    if unknown:
        raise TypeError(f"unknown tiles_layer options: {', '.join(sorted(unknown))}")
    payload = {"url": f"{root}/collections/{collection}/tiles/WebMercatorQuad/{{z}}/{{y}}/{{x}}",
               "layer": collection, "minZoom": min_zoom, "color": color, "fill": fill,
               "weight": weight, "fillOpacity": fill_opacity, "noteId": note_id,
               "title": title, "fields": rows,
               "zoomText": f"visibile da zoom {min_zoom}: avvicinati",
               "onText": "tasselli vettoriali dall'API",
               "offText": "livello spento (attivalo dal selettore)", "r0": 2.5, "k": 1.2,
               "identify": (IDENTIFY_ORDER.index(collection) if collection in IDENTIFY_ORDER
                            else len(IDENTIFY_ORDER)),
               **{camel[k]: v for k, v in extra.items() if v is not None}}
    ScriptLayer("tiles", payload, name=name, show=show, attribution=attribution,
                key=key).add_to(m)
    return note_id


def _comuni_lookup() -> dict[str, str]:
    """ISTAT code -> comune name, for the popups of tiled layers."""
    comuni = layers.open_layer("comuni", columns=["istat", "name"])
    return dict(zip(comuni["istat"].astype(str), comuni["name"].astype(str), strict=True))


def _tiles_layer(m: folium.Map, key: str, data_url: str, show: bool) -> LegendSection:
    spec = ON_DEMAND[key]
    t = TILED[key]
    src = source_text([key])
    zoom = int(t["min_zoom"])
    lookups = ({"comuni": _comuni_lookup()} if any(f.get("lookup") == "comuni" for f in t["fields"])
               else None)
    note_id = tiles_layer(m, key, data_url, name=_name(spec.label, False) + _badge("tasselli"),
                          title=spec.label, fields=t["fields"], color=spec.color, fill=spec.fill,
                          weight=spec.weight, fill_opacity=spec.fill_opacity, min_zoom=zoom,
                          show=show, key=key, attribution=src, lookups=lookups,
                          **{k: t[k] for k in ("title_field", "tip", "radius_field", "top",
                                               "z_index") if k in t})
    label = "Fermata (raggio ∝ √ linee servite)" if key == "bus_stops" else spec.label
    return LegendSection(spec.label, [(spec.fill, label)], kind=spec.kind, source=src,
                         status_id=note_id,
                         note=f"Tasselli vettoriali (OGC API - Tiles) da zoom {zoom}.")


def candidates_tiles_layer(m: folium.Map, data_url: str, *, show: bool,
                           skip: list[str] | None = None,
                           label: str = "Siti candidati alla rigenerazione",
                           note: bool = True) -> LegendSection:
    """Every candidate site of the Città metropolitana from the vector tiles of the API, with
    its popup (code, comune, kind, status, area, source); ``skip``: site ids the page draws
    itself (an Unione's scored sites), left out of the tiles' drawing; ``note``: the legend
    repeats how candidates are chosen (False where the page says it already)."""
    t = TILED["candidates"]
    src = source_text(["candidates"])
    lookups = {"comuni": _comuni_lookup(), "sources": CANDIDATE_SOURCES_IT}
    derived = is_derived("candidates")
    note_id = tiles_layer(
        m, "candidates", data_url, name=_name(label, derived) + _badge("tasselli"),
        title="Sito candidato", fields=t["fields"], color=CANDIDATE_STYLE["color"],
        fill=CANDIDATE_STYLE["fill"], weight=CANDIDATE_STYLE["weight"],
        fill_opacity=CANDIDATE_STYLE["fill_opacity"], min_zoom=int(t["min_zoom"]), show=show,
        key="candidates", attribution=src, title_field=t["title_field"], tip=t["tip"],
        top=t["top"], z_index=t["z_index"], lookups=lookups,
        skip_field="site_id" if skip else None, skip=list(skip) if skip else None)
    return LegendSection(label, [(CANDIDATE_STYLE["fill"], "Sito candidato")], source=src,
                         derived=derived, status_id=note_id,
                         note="Tasselli vettoriali (OGC API - Tiles)."
                         + (" " + CANDIDATES_NOTE_IT if note else ""))


def _on_demand_layer(m: folium.Map, key: str, data_url: str, show: bool) -> LegendSection:
    if key in TILED:
        return _tiles_layer(m, key, data_url, show)
    spec = ON_DEMAND[key]
    src = source_text([key])
    note_id = f"pg-od-{key}"
    payload = {"url": f"{data_url.rstrip('/')}/{key}", "minZoom": spec.min_zoom,
               "color": spec.color, "fill": spec.fill, "weight": spec.weight,
               "fillOpacity": spec.fill_opacity, "r0": 2.5, "k": 1.2, "noteId": note_id,
               "zoomText": f"visibile da zoom {spec.min_zoom}: avvicinati",
               "offText": "livello spento (attivalo dal selettore)"}
    ScriptLayer("onDemand", payload, name=_name(spec.label, False) + _badge("su richiesta"),
                show=show, attribution=src, key=key).add_to(m)
    return LegendSection(spec.label, [(spec.color if spec.kind == "line" else spec.fill, spec.label)],
                         kind=spec.kind, source=src, status_id=note_id,
                         note=f"Caricato dall'API per l'area visibile (zoom ≥ {spec.min_zoom}).")


def _mobility_layers(m: folium.Map, data_url: str | None, *, include_buildings: bool) -> list[LegendSection]:
    """Bus stops (vector tiles), cycle paths (GeoJSON by bbox) and buildings (vector tiles) from
    the API, or inline light layers in a written file."""
    out: list[LegendSection] = []
    if data_url is not None:
        for key in ("bus_stops", "cycleways") + (("buildings",) if include_buildings else ()):
            out.append(_on_demand_layer(m, key, data_url, show=key == "bus_stops"))
        return out
    # a written file: bus stops as compact rows on canvas, cycle paths simplified
    stops = layers.open_layer("bus_stops").to_crs(4326)
    spec = ON_DEMAND["bus_stops"]
    src = source_text(["bus_stops"])
    xy = np.round(np.column_stack([stops.geometry.x, stops.geometry.y]), 5)
    rows = [[float(x), float(y), int(k), str(n)] for (x, y), k, n in
            zip(xy, stops["n_lines"].fillna(0).astype(int), stops["name"].fillna(""), strict=True)]
    payload = {"rows": rows, "color": spec.color, "fill": spec.fill, "weight": spec.weight,
               "fillOpacity": spec.fill_opacity, "r0": 1.5, "k": 0.8,
               "valueLabel": "linee TPER", "unnamed": "Fermata"}
    ScriptLayer("points", payload, name=spec.label, show=False, attribution=src,
                key="bus_stops").add_to(m)
    out.append(LegendSection(spec.label, [(spec.fill, "Fermata (raggio ∝ √ linee servite)")],
                             kind="dot", source=src))
    # one multi-line per use class: ~2,000 small features cost more in structure than in lines
    cyc = layers.open_layer("cycleways")[["duso", "length_m", "geometry"]]
    cyc = cyc.assign(duso=cyc["duso"].fillna("non specificato")).dissolve(
        by="duso", aggfunc={"length_m": "sum"}).reset_index()
    cspec = ON_DEMAND["cycleways"]
    csrc = source_text(["cycleways"])
    fc = to_features(cyc, {"tip": [f"{esc(d)}: {fmt_num(km / 1000, 1)} km" for d, km in
                                   zip(cyc["duso"], cyc["length_m"], strict=True)]}, simplify_m=5.0)
    geojson_layer(fc, cspec.label, show=False, attribution=csrc, key="cycleways",
                  style=_style(None, cspec.color, 2.0)).add_to(m)
    out.append(LegendSection(cspec.label, [(cspec.color, "Percorso ciclabile")], kind="line",
                             source=csrc))
    return out


# --- 2. a comune's budget ---------------------------------------------------------------------


def _trajectory_svg(t: pd.DataFrame, width: int = 320, height: int = 120) -> str:
    """Cumulative net consumption (ha) against the envelope, year by year, as inline SVG."""
    years = t["year"].to_numpy()
    cum = t["cumulative_net_ha"].to_numpy(dtype=float)
    env = float(t["envelope_ha"].iloc[0])
    top = max(env, float(np.nanmax(cum)) if len(cum) else 0.0, 1e-9) * 1.1
    bot = min(0.0, float(np.nanmin(cum)) if len(cum) else 0.0)
    pad = 28

    def x(y: float) -> float:
        return pad + (y - years[0]) / max(years[-1] - years[0], 1) * (width - pad - 6)

    def yv(v: float) -> float:
        return 6 + (top - v) / (top - bot) * (height - 24)

    pts = " ".join(f"{x(a):.1f},{yv(b):.1f}" for a, b in zip(years, cum, strict=True))
    return (
        f"<svg width='{width}' height='{height}' role='img' aria-label='Traiettoria al 2050'>"
        f"<line x1='{pad}' x2='{width - 6}' y1='{yv(env):.1f}' y2='{yv(env):.1f}' stroke='#b2182b' "
        f"stroke-dasharray='4 3'/><text x='{width - 8}' y='{yv(env) - 3:.1f}' font-size='10' "
        f"text-anchor='end' fill='#b2182b'>quota {fmt_ha(env, 1)}</text>"
        f"<line x1='{pad}' x2='{width - 6}' y1='{yv(0):.1f}' y2='{yv(0):.1f}' stroke='#999'/>"
        f"<polyline points='{pts}' fill='none' stroke='#08519c' stroke-width='2'/>"
        f"<text x='{pad}' y='{height - 4}' font-size='10'>{years[0]}</text>"
        f"<text x='{width - 6}' y='{height - 4}' font-size='10' text-anchor='end'>{years[-1]}</text>"
        "</svg><div class='pg-note'>Linea blu: consumo netto cumulato (ha); tratteggio: quota "
        "locale.</div>")


def _physical_layer(m: folium.Map, comuni_sel: gpd.GeoDataFrame) -> LegendSection:
    """The physical ledger beside the legal one: sealed surface per comune (ha and share), one
    marker per comune (at a point inside it), hidden until switched on. Never part of the
    legal figures."""
    ph = pd.DataFrame(analysis.physical()["comuni"])
    g = comuni_sel[["istat", "geometry"]].merge(ph, on="istat")
    g = g.set_geometry(g.geometry.representative_point())
    share = g["sealed_share"].to_numpy(dtype=float)
    cls = quantile_classes(100 * share, YL_OR_RD, decimals=1, unit="%")
    pops = [table_html([("Superficie sigillata", fmt_ha(r.sealed_ha)),
                        ("di cui edifici", fmt_ha(r.sealed_buildings_ha)),
                        ("di cui strade", fmt_ha(r.sealed_roads_ha)),
                        ("Quota del territorio", fmt_pct(r.sealed_share)),
                        ("Fonte della stima", esc(r.source))],
                       title=f"{esc(r.name)} – ledger fisico") for r in g.itertuples()]
    fc = to_features(g, {"popup": pops, "tip": [f"{esc(n)}: sigillato {fmt_pct(v)}"
                                                for n, v in zip(g["name"], share, strict=True)],
                         "_fill": cls.color(100 * share)})
    src = source_text(["buildings", "roads_edges"])
    geojson_layer(fc, "Superficie sigillata (ledger fisico)", point_radius=7, key="physical",
                  show=False, attribution=src, style=_style("#999", "#333", 0.8, 0.9)).add_to(m)
    return LegendSection("Superficie sigillata (ledger fisico, % del comune)", cls.legend(),
                         source=src, note="Stima da edifici e strade; separata dal bilancio "
                         "legale LR 24/2017, che conta solo il consumo fuori dal TU.")


def budget_map(proposals: gpd.GeoDataFrame | None = None, *, comune: str | None = None,
               scenario: str = "base", static_url: str | None = None, data_url: str | None = None,
               simplify_m: float = SIMPLIFY_M,
               base_proposals: gpd.GeoDataFrame | None = None) -> folium.Map:
    """Remaining local quota (LR 24/2017, PTM 1% pool) per comune, the proposals coloured by type
    and their ledger figures in ha. ``comune`` (ISTAT code) zooms to one comune, shows its TU and
    proposals and its path to 2050. For a scenario other than 'base', ``base_proposals`` (the base
    scenario's; default: those of ``proposals``) give the map of the difference in remaining
    local quota per comune, scenario minus base."""
    from pattogis import ledger

    law = config.law()
    comuni = layers.open_layer("comuni")
    tu = layers.open_layer("territorio_urbanizzato")
    if comune is not None and comune not in set(comuni["istat"]):
        raise NotFound(f"unknown comune '{comune}': expected a 6-digit ISTAT code of the "
                       "Città metropolitana di Bologna (e.g. 037006)")
    led = ledger.compute(comuni, tu, proposals, scenario=scenario, law=law)
    c = comuni[["istat", "name", "geometry"]].merge(led.comuni.drop(columns=["name"]), on="istat")
    sel = c[c["istat"] == comune] if comune else c
    title = "Bilancio del consumo di suolo (LR 24/2017)"
    sub = (f"{comune and sel['name'].iloc[0] or 'Tutti i comuni'} – scenario «{scenario}»: quota "
           "locale residua e proposte")
    m = base_map(title, sub, bounds=bounds_latlon(sel), static_url=static_url)
    legend: list[LegendSection] = []
    src_c = source_text(["comuni"])
    src_tu = source_text(["territorio_urbanizzato"])

    rem = c["remaining_locale_ha"].to_numpy(dtype=float)
    pos = quantile_classes(rem[rem >= 0], GREENS, decimals=2, unit="ha")
    fill = np.where((rem < 0) | c["overrun"].to_numpy(dtype=bool), OVERDRAFT, pos.color(np.maximum(rem, 0)))
    pops = [table_html([
        ("Unione", esc(r.unione)),
        ("Territorio urbanizzato (TU)", fmt_ha(r.tu_ha)),
        ("Quota complessiva (3% TU)", fmt_ha(r.quota_ha)),
        ("Quota locale (1% TU)", fmt_ha(r.local_quota_ha)),
        ("Consumo – quota locale", fmt_ha(r.consumed_locale_ha)),
        ("Consumo – quota metropolitana", fmt_ha(r.consumed_metropolitano_ha)),
        ("Desigillazione", fmt_ha(r.desealed_ha)),
        ("Esente (art. 6)", fmt_ha(r.exempt_ha)),
        ("<b>Quota locale residua</b>", f"<b>{fmt_ha(r.remaining_locale_ha)}</b>"),
        ("<b>Sforamento</b>", f"<b style='color:{OVERDRAFT}'>SÌ, {fmt_ha(r.overrun_ha)}"
         + (f" dal {int(r.overrun_year)}" if pd.notna(r.overrun_year) else "") + "</b>"
         if r.overrun else "no"),
        ("Proposte nello scenario", str(int(r.n_proposals))),
    ], title=esc(r.name)) for r in c.itertuples()]
    tips = [f"{esc(n)}: residuo {fmt_ha(v)}" + (" – SFORAMENTO" if o else "")
            for n, v, o in zip(c["name"], rem, c["overrun"], strict=True)]
    stroke = np.where(c["istat"] == comune, "#000000", "")
    fc = to_features(c, {"popup": pops, "tip": tips, "_fill": fill, "_stroke": stroke},
                     simplify_m=simplify_m)
    geojson_layer(fc, "Quota locale residua per comune", attribution=src_c, highlight=True,
                  key="budget", outline_from=STREET_ZOOM,
                  style=_style("#ccc", "#666", 0.7, 0.7)).add_to(m)
    items = ([(OVERDRAFT, "quota superata (sforamento)")] if ((rem < 0) | c["overrun"]).any()
             else []) + pos.legend()
    legend.append(LegendSection("Quota locale residua (ha)", items, source=src_c,
                                note="Quota locale = 1% del TU al 1/1/2018 (PTM art. 49); "
                                "residuo = quota − consumo + desigillazione. " + OUTLINE_NOTE))
    if scenario != "base":  # issue 15: the scenario's difference from the base, per comune
        base_led = ledger.compute(comuni, tu, base_proposals if base_proposals is not None
                                  else proposals, scenario="base", law=law)
        legend.append(scenario_difference_layer(m, c, ledger.compare(led, base_led), scenario,
                                                src_c, simplify_m))

    tu_sel = tu[tu["comune_istat"] == comune] if comune else tu
    tu_derived = bool((tu_sel["source"] != "official").any())
    if data_url is not None and comune is None:  # every comune's TU: vector tiles from the API
        tiles_layer(m, "territorio_urbanizzato", data_url,
                    name=_name("Territorio urbanizzato", tu_derived), title="Territorio urbanizzato",
                    fields=TU_TILE_FIELDS, lookups=TU_LOOKUPS, color=TU_COLOR,
                    fill=TU_COLOR, weight=0.8, fill_opacity=0.25, min_zoom=0, show=True,
                    key="tu", attribution=src_tu)
    else:
        fc = to_features(tu_sel, {"tip": ["Territorio urbanizzato"] * len(tu_sel)},
                         simplify_m=simplify_m)
        geojson_layer(fc, _name("Territorio urbanizzato", tu_derived), attribution=src_tu,
                      key="tu", style=_style(TU_COLOR, TU_COLOR, 0.8, 0.25)).add_to(m)
    legend.append(LegendSection("Territorio urbanizzato (TU)", [(TU_COLOR, "TU provvisorio")],
                                derived=tu_derived, source=src_tu))

    p = led.proposals
    if comune is not None and len(p):
        p = p[p["comune_istat"] == comune]
    types = law["proposal_types"]
    ex_labels = {k: v.get("label", k) for k, v in (law.get("exemptions") or {}).items()}
    if len(p):
        pops = [table_html([
            ("Tipo", esc(types.get(r.ptype, {}).get("label", r.ptype))),
            ("Stato", esc(STATUS_LABELS.get(r.status, r.status))),
            ("Quota (pool)", esc(POOL_LABELS.get(r.pool, r.pool))),
            ("Esenzione", esc(ex_labels.get(r.exemption, r.exemption)) if isinstance(r.exemption, str)
             and r.exemption else "nessuna"),
            ("Data", esc(str(r.date)[:10])),
            ("Superficie", fmt_ha(r.area_ha)),
            ("Dentro il TU", fmt_ha(r.inside_tu_ha)),
            ("Fuori dal TU", fmt_ha(r.outside_tu_ha)),
            ("<b>Consumo di quota</b>", f"<b>{fmt_ha(r.consumed_ha)}</b>"),
            ("Desigillazione", fmt_ha(r.desealed_ha)),
            ("Esente", fmt_ha(r.exempt_ha)),
        ], title=esc(r.title)) for r in p.itertuples()]
        fc = to_features(p, {"popup": pops, "tip": [esc(t) for t in p["title"]],
                             "_fill": [PTYPE_COLORS.get(t, "#999") for t in p["ptype"]]})
        geojson_layer(fc, f"Proposte ({len(p)})", highlight=True, key="proposals",
                      attribution="Proposte dei comuni (archivio pattogis)",
                      style=_style("#999", "#222", 1.2, 0.75)).add_to(m)
        # a marker on each proposal: a few hectares are specks at the scale of a comune
        pts = p.set_geometry(p.geometry.representative_point())
        fc_pts = to_features(pts, {"popup": pops,
                                   "tip": [esc(t) for t in p["title"]],
                                   "_fill": [PTYPE_COLORS.get(t, "#999") for t in p["ptype"]]})
        geojson_layer(fc_pts, "Proposte (segnaposto)", point_radius=6, key="proposal_points",
                      style=_style("#999", "#222", 1.2, 0.95)).add_to(m)
    legend.append(LegendSection("Proposte per tipo", [(PTYPE_COLORS[k], v.get("label", k))
                                                       for k, v in types.items() if k in PTYPE_COLORS],
                                note=f"{len(p)} proposte nello scenario «{scenario}»."
                                if len(p) else f"Nessuna proposta nello scenario «{scenario}»."))

    legend.append(_physical_layer(m, comuni))  # all comuni: the share reads against the others
    if data_url is not None:
        legend.append(_on_demand_layer(m, "buildings", data_url, show=False))

    if comune is not None:
        r = c[c["istat"] == comune].iloc[0]
        t = ledger.trajectory(led, level="comune", key=comune, law=law)
        over = t.loc[t["overdraft"], "year"]
        env = float(t["envelope_ha"].iloc[0])
        share = (float(r.remaining_locale_ha) / float(r.local_quota_ha)) if r.local_quota_ha else np.nan
        rows = [("Territorio urbanizzato", fmt_ha(r.tu_ha)), ("Quota locale (1% TU)", fmt_ha(r.local_quota_ha)),
                ("Consumo (quota locale)", fmt_ha(r.consumed_locale_ha)),
                ("Desigillazione (quota locale)", fmt_ha(r.desealed_locale_ha)),
                ("Esente", fmt_ha(r.exempt_ha)),
                ("<b>Residuo</b>", f"<b>{fmt_ha(r.remaining_locale_ha)}</b> ({fmt_pct(share)})"),
                ("Quota disponibile al 2050", fmt_ha(env)),
                ("Superamento della quota", f"dal {int(over.iloc[0])}" if len(over) else "no")]
        if r.overrun:
            rows.append((f"<b style='color:{OVERDRAFT}'>SFORAMENTO</b>",
                         f"<b style='color:{OVERDRAFT}'>{fmt_ha(r.overrun_ha)} oltre la quota</b>"))
        add_panel(m, table_html(rows, title=f"{esc(r['name'])} – scenario «{esc(scenario)}»")
                  + _trajectory_svg(t))
    else:
        mt = led.metro.set_index("pool")
        rows = [(esc(POOL_LABELS.get(k, "Totale (3%)")),
                 f"{fmt_ha(mt.loc[k, 'remaining_ha'], 1)} di {fmt_ha(mt.loc[k, 'quota_ha'], 1)}")
                for k in ("locale", "metropolitano", "totale")]
        add_panel(m, table_html(rows, title=f"Residuo metropolitano – scenario «{esc(scenario)}»"))

    add_layer_control(m)
    add_legend(m, legend, footer=NO_TILES_NOTE)
    return m


# --- 3. site comparison in an Unione ----------------------------------------------------------


def _q_of(col: str) -> float:
    """'rank_p05' → 5, 'rank_p5' → 5, 'rank_p2_5' → 2.5, 'rank_p95' → 95."""
    digits = col[len("rank_p"):].replace("_", ".")
    if "." not in digits and len(digits) == 2 and digits.startswith("0"):
        return float(digits[1])
    return float(digits)


def rank_interval_columns(sites: pd.DataFrame) -> tuple[str, str] | None:
    """The lowest and highest rank-percentile columns (e.g. rank_p05, rank_p95), if any."""
    cols = [c for c in sites.columns if re.fullmatch(r"rank_p\d+(_\d+)?", c)]
    if len(cols) < 2:
        return None
    cols.sort(key=_q_of)
    return cols[0], cols[-1]


def _criterion_labels(sites: pd.DataFrame, crits: list[str],
                      labels: Mapping[str, str] | None) -> dict[str, str]:
    from pattogis.criteria import REGISTRY

    prof = (sites.attrs or {}).get("profile") or {}
    from_prof = {k: v.get("label_it", k) for k, v in (prof.get("criteria") or {}).items()
                 if isinstance(v, Mapping)}
    # Then the criterion's own Italian label: a popup never shows a column name.
    registry = {n: c.label_it for n, c in REGISTRY.items()}
    return {c: (labels or {}).get(c) or from_prof.get(c) or registry.get(c) or c.replace("_", " ")
            for c in crits}


def sites_map(sites: gpd.GeoDataFrame, *, unione: str | None = None,
              labels: Mapping[str, str] | None = None, top_k: int | None = None,
              static_url: str | None = None, simplify_m: float = 5.0,
              score_url: str | None = None, data_url: str | None = None) -> folium.Map:
    """Candidate sites coloured by score, with each criterion's contribution and the rank interval
    (Monte Carlo percentiles) in the popup. ``sites``: the scoring output (``score``, ``rank``,
    ``contrib_<criterion>``, optionally ``rank_p05``/``rank_p95``, ``p_top_k``, ``excluded``,
    ``exclusion_reason``, ``name``/``site_id``, ``comune_istat``), with geometry and CRS.
    ``labels``: Italian criterion labels (default: the profile in ``sites.attrs`` or the name).
    Beside the map: the ranking, a side-by-side comparison of 3 to 5 picked sites and, with
    ``score_url`` (the API's ``/analysis/score``) and the profile in ``sites.attrs``, weight
    sliders that rescore the Unione's sites live (:func:`add_unione_tools`). With ``data_url``
    (from the API) the other candidate sites of the Città metropolitana and the bus stops are
    drawn from the API's vector tiles; the Unione's own sites stay in the page (its list and
    comparison need them as data).
    """
    if not isinstance(sites, gpd.GeoDataFrame) or sites.crs is None:
        raise InputError("sites must be a GeoDataFrame with a CRS", field="geometry")
    for col in ("score", "rank"):
        if col not in sites.columns:
            raise InputError(f"sites table has no '{col}' column (the output of scoring)", field=col)
    crits = [c[len("contrib_"):] for c in sites.columns if c.startswith("contrib_")]
    if not crits:
        raise InputError("sites table has no contrib_<criterion> column", field="contrib_*")
    lab = _criterion_labels(sites, crits, labels)
    s = sites.copy()
    s = s[~s.geometry.isna() & ~s.geometry.is_empty]
    if s.empty:
        raise InputError("sites table has no site with a geometry", field="geometry")
    comuni = layers.open_layer("comuni")
    names = comuni.set_index("istat")["name"]
    unioni = layers.open_layer("unioni")
    area = unioni[unioni["unione"] == unione] if unione else unioni.iloc[0:0]
    if unione and area.empty:
        # comuni in no Unione are units of their own, 'Comune di X'
        raise NotFound(f"unknown Unione '{unione}'; known: {', '.join(unioni['unione'])}")
    k = int(top_k) if top_k else int(((sites.attrs or {}).get("profile") or {}).get(
        "monte_carlo", {}).get("top_k", 10) or 10)
    bounds = bounds_latlon(area if len(area) else s)
    m = base_map(f"Confronto dei siti{' – ' + unione if unione else ''}",
                 f"{len(s)} siti candidati: punteggio, contributo dei criteri, intervallo di "
                 "posizione", bounds=bounds, static_url=static_url)
    legend: list[LegendSection] = []

    if len(area):
        src_u = source_text(["unioni"])
        fc = to_features(area, {"tip": [esc(u) for u in area["unione"]]}, simplify_m=SIMPLIFY_M)
        geojson_layer(fc, "Confine dell'Unione", attribution=src_u,
                      style=_style(None, "#000", 2.5)).add_to(m)
        inside = comuni[comuni.intersects(area.geometry.iloc[0].buffer(-50))]
        fc = to_features(inside, {"tip": [esc(n) for n in inside["name"]]}, simplify_m=SIMPLIFY_M)
        geojson_layer(fc, "Comuni", attribution=source_text(["comuni"]),
                      style=_style(None, "#666", 1.0, dashArray="3 3")).add_to(m)
        legend.append(LegendSection("Confini", [("#000", "Unione"), ("#666", "Comuni")], kind="line",
                                    source=source_text(["comuni"]), derived=False))

    score = s["score"].to_numpy(dtype=float)
    excl = ~np.isfinite(score)
    if "excluded" in s.columns:
        excl |= s["excluded"].fillna(False).to_numpy(dtype=bool)
    cls = quantile_classes(score[~excl], VIRIDIS, decimals=3)
    fill = np.where(excl, "#bdbdbd", cls.color(np.where(excl, 0.0, score)))
    iv = rank_interval_columns(s)
    label_col = next((c for c in ("name", "title", "site_id") if c in s.columns), None)
    ids = s["site_id"] if "site_id" in s.columns else pd.Series(s.index.astype(str), index=s.index)
    pops, tips = [], []
    for i, (idx, r) in enumerate(s.iterrows()):
        nm = r[label_col] if label_col and isinstance(r[label_col], str) and r[label_col] else ids.loc[idx]
        rows: list[tuple[str, str]] = [("Comune", esc(names.get(r.get("comune_istat"), r.get("comune_istat", ""))))]
        if excl[i]:
            rows.append(("Esito", "<b>escluso</b>"))
            reason = r.get("exclusion_reason")
            if isinstance(reason, str) and reason:
                rows.append(("Motivo", esc(reason)))
        else:
            rows += [("<b>Punteggio</b>", f"<b>{fmt_num(score[i], 3)}</b>"),
                     ("Posizione", f"{int(r['rank'])}ª su {int((~excl).sum())}")]
            if iv is not None and pd.notna(r[iv[0]]):
                rows.append((f"Intervallo di posizione (p{fmt_num(_q_of(iv[0]), 0)}–"
                             f"p{fmt_num(_q_of(iv[1]), 0)})",
                             f"{fmt_num(r[iv[0]], 0)}ª – {fmt_num(r[iv[1]], 0)}ª"))
            if "p_top_k" in s.columns and pd.notna(r["p_top_k"]):
                rows.append((f"Probabilità di stare fra i primi {k}", fmt_pct(r["p_top_k"])))
            rows.append(("<i>Contributo dei criteri</i>", ""))
            for cname in crits:
                v = r[f"contrib_{cname}"]
                rows.append((esc(lab[cname]), "n.d." if pd.isna(v) else fmt_num(v, 3)))
            miss = r.get("missing")
            if isinstance(miss, str) and miss:
                rows.append(("Dati mancanti", esc(miss)))
        pops.append(table_html(rows, title=esc(nm)))
        tips.append(f"{esc(nm)}: " + ("escluso" if excl[i] else f"{int(r['rank'])}ª, {fmt_num(score[i], 3)}"))
    props = {"popup": pops, "tip": tips, "_fill": fill, "sid": [str(i) for i in ids]}
    fc = to_features(s, props, simplify_m=simplify_m)
    geojson_layer(fc, "Siti (area)", highlight=True, attribution=source_text(["candidates"]), key="sites",
                  style=_style("#999", "#222", 0.8, 0.85)).add_to(m)
    # points at each site so that small sites remain visible at Unione scale
    pts = s.copy()
    pts = pts.set_geometry(pts.geometry.representative_point())
    fc = to_features(pts, props)
    geojson_layer(fc, "Siti (punti)", point_radius=6, attribution=source_text(["candidates"]),
                  key="site_points",
                  style=_style("#999", "#222", 1.0, 0.95)).add_to(m)
    # rank labels of the first k
    top = pts[~excl & (s["rank"].fillna(10**9).to_numpy() <= k)]
    top_group = None
    if len(top):
        tg = folium.FeatureGroup(name=f"Primi {k} in graduatoria", show=True)
        ll = display_frame(top)
        for geom, rank in zip(ll.geometry, top["rank"], strict=True):
            folium.Marker([geom.y, geom.x], icon=folium.DivIcon(
                html=f"<div class='pg-rank'>{int(rank)}</div>", icon_size=(18, 18),
                icon_anchor=(-4, 22))).add_to(tg)
        tg.add_to(m)
        top_group = tg.get_name()
    context: list[LegendSection] = []
    if data_url is not None:  # context from the vector tiles: the other sites, the bus stops
        context.append(candidates_tiles_layer(
            m, data_url, show=True, skip=[str(i) for i in ids],
            label="Altri siti candidati della Città metropolitana", note=False))
        context.append(_tiles_layer(m, "bus_stops", data_url, show=True))
    add_unione_tools(m, s, crits=crits, labels=lab, names=names, ids=ids, label_col=label_col,
                     iv=iv, cls=cls, unione=unione, score_url=score_url, top_group=top_group,
                     palette=VIRIDIS, bounds=bounds)
    items = cls.legend() + ([("#bdbdbd", "escluso")] if excl.any() else [])
    cand_derived = is_derived("candidates")
    legend.append(LegendSection("Punteggio del sito (0–1)", items, source=source_text(["candidates"]),
                                derived=cand_derived, status_id="pg-score-status",
                                note="Aprire un sito per il contributo di ciascun criterio e "
                                "l'intervallo di posizione (simulazione Monte Carlo dei pesi). "
                                + CANDIDATES_NOTE_IT))
    legend += context
    add_layer_control(m)
    add_legend(m, legend, footer=NO_TILES_NOTE)
    return m


# --- the Unione's tools: pick and compare sites, move the weights -----------------------------

#: Below these sizes (CSS px) the tools do not float over the map: map above, tools below.
STACK_MAX_WIDTH, STACK_MAX_HEIGHT = 1100, 700
UNIONE_CSS = """<style>
.pg-tools { position: fixed; bottom: 30px; right: 10px; z-index: 1000; width: 430px;
  max-width: 46vw; max-height: 62vh; overflow: auto; font-size: 12px; box-sizing: border-box; }
.pg-tools summary { font-weight: 600; cursor: pointer; margin: 4px 0; }
.pg-tools table { border-collapse: collapse; width: 100%; font-size: 12px; }
.pg-tools th, .pg-tools td { border-bottom: 1px solid #ddd; padding: 2px 4px; text-align: left;
  vertical-align: top; }
.pg-tools td.n, .pg-tools th.n { text-align: right; font-variant-numeric: tabular-nums; }
.pg-tools .pg-w { display: grid; grid-template-columns: 1fr 90px 38px; gap: 4px;
  align-items: center; margin: 2px 0; }
.pg-tools .pg-w input { width: 90px; }
.pg-tools .pg-msg { font-style: italic; color: #08519c; margin: 3px 0; }
.pg-tools tr.pg-picked { background: #fee8c8; }
.pg-tools-head { display: flex; justify-content: flex-end; position: sticky; top: -8px;
  background: inherit; z-index: 1; margin: -2px 0 2px; }
.pg-tools-toggle { font: 600 12px system-ui, sans-serif; cursor: pointer; border: 1px solid #888;
  border-radius: 4px; background: #f4f4f4; padding: 3px 8px; }
.pg-tools-toggle:hover, .pg-tools-toggle:focus { background: #e4ecf7; }
#pg-compare { overflow-x: auto; }
body.pg-tools-closed .pg-tools { width: auto; max-width: none; overflow: hidden; }
body.pg-tools-closed #pg-tools-body { display: none; }
/* narrow or short windows: the map above, the tools in a band below, their sections side by
   side; the legend stays on the map */
@media (max-width: __W__px), (max-height: __H__px) {
  body { --pg-tools-h: 42vh; }
  body.pg-tools-closed { --pg-tools-h: 40px; }
  .folium-map { height: calc(100% - var(--pg-tools-h)) !important; }
  .pg-tools { left: 0; right: 0; bottom: 0; width: auto; max-width: none;
    height: var(--pg-tools-h); max-height: none; border-radius: 0; padding: 4px 8px; }
  body.pg-tools-closed .pg-tools { width: auto; }
  #pg-tools-body { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr));
    gap: 0 14px; align-items: start; }
  #pg-tools-body > * { min-width: 0; }
  .pg-legend { bottom: calc(var(--pg-tools-h) + 30px); max-height: calc(100vh - var(--pg-tools-h) - 120px); }
  .pg-title { max-width: 55vw; }
  .pg-title p { display: none; }
  .leaflet-control-attribution { max-width: 45vw; }
}
</style>""".replace("__W__", str(STACK_MAX_WIDTH)).replace("__H__", str(STACK_MAX_HEIGHT))

UNIONE_JS = r"""<script>
(function () {
  var D = __DATA__;
  var byId = {}, picked = [], weights = {}, seq = 0, timer = null, changed = false;
  D.sites.forEach(function (s) { byId[s.id] = s; });
  D.crits.forEach(function (c) { weights[c.name] = c.weight; });
  function $(id) { return document.getElementById(id); }
  function fmt(v, d) {
    if (v === null || v === undefined || !isFinite(v)) { return 'n.d.'; }
    return window.pattogis.fmtNum(v, d);
  }
  function td(text, cls) {
    var c = document.createElement('td'); c.textContent = text; if (cls) { c.className = cls; }
    return c;
  }
  function th(text, cls) {
    var c = document.createElement('th'); c.textContent = text; if (cls) { c.className = cls; }
    return c;
  }
  function interval(s) {
    return (s.lo === null || s.lo === undefined) ? 'n.d.' : fmt(s.lo, 0) + 'ª – ' + fmt(s.hi, 0) + 'ª';
  }
  function order() {
    return D.sites.slice().sort(function (a, b) {
      var ra = a.rank === null ? 1e9 : a.rank, rb = b.rank === null ? 1e9 : b.rank;
      return ra - rb || (a.name < b.name ? -1 : 1);
    });
  }
  function say(id, text) { var el = $(id); if (el) { el.textContent = text; } }
  function renderRanking() {
    var body = $('pg-ranking'); body.textContent = '';
    order().forEach(function (s) {
      var tr = document.createElement('tr'); tr.setAttribute('data-sid', s.id);
      if (picked.indexOf(s.id) >= 0) { tr.className = 'pg-picked'; }
      var c = document.createElement('td'), box = document.createElement('input');
      box.type = 'checkbox'; box.checked = picked.indexOf(s.id) >= 0;
      box.setAttribute('aria-label', 'Confronta ' + s.name);
      box.addEventListener('change', function () { toggle(s.id); });
      c.appendChild(box); tr.appendChild(c);
      tr.appendChild(td(s.rank === null ? 'escluso' : s.rank + 'ª', 'n'));
      tr.appendChild(td(s.name));
      tr.appendChild(td(fmt(s.score, 3), 'n'));
      tr.appendChild(td(interval(s), 'n'));
      body.appendChild(tr);
    });
  }
  function renderCompare() {
    var box = $('pg-compare'); box.textContent = '';
    if (picked.length < 3) {
      say('pg-compare-msg', 'Scegli da 3 a 5 siti (caselle dell\'elenco o clic sulla mappa): ' +
          picked.length + (picked.length === 1 ? ' scelto.' : ' scelti.'));
      return;
    }
    say('pg-compare-msg', picked.length + ' siti a confronto.');
    var t = document.createElement('table'), head = document.createElement('tr');
    head.appendChild(th(''));
    picked.forEach(function (id) { head.appendChild(th(byId[id].name, 'n')); });
    t.appendChild(head);
    function row(label, f, bold) {
      var tr = document.createElement('tr'), h = th(label); tr.appendChild(h);
      picked.forEach(function (id) { var c = td(f(byId[id]), 'n'); if (bold) { c.style.fontWeight = 600; } tr.appendChild(c); });
      t.appendChild(tr);
    }
    row('Comune', function (s) { return s.comune; });
    row('Punteggio', function (s) { return fmt(s.score, 3); }, true);
    row('Posizione', function (s) { return s.rank === null ? 'escluso' : s.rank + 'ª su ' + D.nRanked; }, true);
    row(D.ivLabel, interval);
    D.crits.forEach(function (c) {
      // the unit once: some labels already name it, e.g. '(% del territorio)'
      var head = c.unit && c.label.indexOf('(' + c.unit) < 0 ? c.label + ' (' + c.unit + ')' : c.label;
      row(head, function (s) { return fmt(s.raw[c.name], c.decimals); });
      row('  contributo', function (s) { return fmt(s.contrib[c.name], 3); });
    });
    box.appendChild(t);
  }
  function colour(v) {
    if (v === null || !isFinite(v)) { return '#bdbdbd'; }
    var i = 0; while (i < D.breaks.length - 2 && v >= D.breaks[i + 1]) { i++; }
    return D.colors[i];
  }
  function reclass() {
    // quantile classes of the new scores, as the page's Python (numpy linear quantiles, 3 decimals)
    var v = D.sites.map(function (s) { return s.score; })
      .filter(function (x) { return x !== null && isFinite(x); }).sort(function (a, b) { return a - b; });
    if (!v.length) { return; }
    var k = D.palette.length, qs = [];
    for (var j = 0; j <= k; j++) {
      var pos = (v.length - 1) * j / k, lo = Math.floor(pos), hi = Math.min(lo + 1, v.length - 1);
      var q = Math.round((v[lo] + (v[hi] - v[lo]) * (pos - lo)) * 1000) / 1000;
      if (!qs.length || q !== qs[qs.length - 1]) { qs.push(q); }
    }
    if (qs.length < 2) { qs = [qs[0], qs[0] + 0.001]; }
    qs[0] = Math.min(qs[0], Math.floor(v[0] * 1000) / 1000);
    qs[qs.length - 1] = Math.max(qs[qs.length - 1], Math.ceil(v[v.length - 1] * 1000) / 1000);
    var n = qs.length - 1;
    D.breaks = qs;
    D.colors = [];
    for (var c = 0; c < n; c++) {
      D.colors.push(D.palette[n > 1 ? Math.round(c * (k - 1) / (n - 1)) : k - 1]);
    }
    var st = $('pg-score-status'), rows = [];
    if (!st) { return; }
    for (var el = st.previousElementSibling; el; el = el.previousElementSibling) {
      if (el.tagName === 'H4') { break; }
      if (el.classList.contains('pg-row')) { rows.unshift(el); }
    }
    rows.forEach(function (row, i) {
      if (row.textContent === 'escluso') { return; }
      row.style.display = i < n ? '' : 'none';
      if (i < n) {
        row.children[0].style.background = D.colors[i];
        row.children[1].textContent = fmt(qs[i], 3) + ' – ' + fmt(qs[i + 1], 3);
      }
    });
    st.textContent = 'Classi ricalcolate con i pesi scelti.';
  }
  function restyle() {
    ['sites', 'site_points'].forEach(function (key) {
      var g = pattogis.layers[key]; if (!g) { return; }
      g.eachLayer(function (l) {
        var p = (l.feature && l.feature.properties) || {}, s = byId[p.sid];
        if (!s || !l.setStyle) { return; }
        var on = picked.indexOf(s.id) >= 0;
        l.setStyle({fillColor: colour(s.score), color: on ? '#d7191c' : '#222', weight: on ? 3 : 1});
        if (changed && l.setTooltipContent) {
          l.setTooltipContent(s.name + ': ' + (s.rank === null ? 'escluso' : s.rank + 'ª, ' + fmt(s.score, 3)));
        }
      });
    });
  }
  function toggle(id) {
    var i = picked.indexOf(id);
    if (i >= 0) { picked.splice(i, 1); }
    else if (picked.length >= 5) { say('pg-compare-msg', 'Al massimo 5 siti: togline uno prima.'); renderRanking(); return; }
    else { picked.push(id); }
    renderRanking(); renderCompare(); restyle();
  }
  function profile() {
    var p = JSON.parse(JSON.stringify(D.profile));
    Object.keys(weights).forEach(function (k) { p.criteria[k].weight = weights[k]; });
    return p;
  }
  function post() {
    var total = Object.keys(weights).reduce(function (a, k) { return a + weights[k]; }, 0);
    if (!(total > 0)) { say('pg-live', 'Almeno un peso deve essere maggiore di zero.'); return; }
    var my = ++seq;
    say('pg-live', 'aggiornamento…');
    fetch(D.scoreUrl, {method: 'POST', headers: {'Content-Type': 'application/json'},
                       body: JSON.stringify({profile: profile(), unione: D.unione, top: 100000})})
      .then(function (r) {
        return r.json().then(function (js) {
          if (!r.ok) { throw new Error(js.detail || ('HTTP ' + r.status)); } return js;
        });
      })
      .then(function (js) {
        if (my !== seq) { return; }
        var n = 0;
        js.sites.forEach(function (r) {
          var s = byId[r.site_id]; if (!s) { return; }
          s.score = r.score; s.rank = r.rank;
          s.lo = r[D.ivCols[0]] === undefined ? null : r[D.ivCols[0]];
          s.hi = r[D.ivCols[1]] === undefined ? null : r[D.ivCols[1]];
          D.crits.forEach(function (c) { s.contrib[c.name] = r['contrib_' + c.name]; });
          if (r.rank !== null) { n++; }
        });
        D.nRanked = n; changed = true;
        var top = D.topGroup && window[D.topGroup];
        if (top && pattogis.map.hasLayer(top)) { pattogis.map.removeLayer(top); }
        reclass(); renderRanking(); renderCompare(); restyle();
        say('pg-live', 'Graduatoria ricalcolata con i pesi scelti (' + js.n_sites + ' siti).');
      })
      .catch(function (e) {
        if (my !== seq) { return; }
        say('pg-live', 'Errore nel ricalcolo: ' + e.message);
        console.error('pattogis: ' + D.scoreUrl + ': ' + e.message);
      });
  }
  function shares() {
    // each weight as its share of the total, in %: what the scoring uses (weights sum to 1)
    var total = Object.keys(weights).reduce(function (a, k) { return a + weights[k]; }, 0);
    D.crits.forEach(function (c) {
      say('pg-wo-' + c.name, total > 0 ? Math.round(100 * weights[c.name] / total) + '%' : '–');
    });
  }
  function sliders() {
    var box = $('pg-weights'); if (!box) { return; }
    D.crits.forEach(function (c) {
      var row = document.createElement('div'); row.className = 'pg-w';
      var lab = document.createElement('label'); lab.textContent = c.label; lab.htmlFor = 'pg-w-' + c.name;
      var inp = document.createElement('input'); inp.type = 'range'; inp.min = 0; inp.max = 100; inp.step = 1;
      inp.id = 'pg-w-' + c.name; inp.setAttribute('data-criterion', c.name);
      inp.value = Math.round(c.weight * 100);
      var out = document.createElement('output'); out.id = 'pg-wo-' + c.name;
      inp.addEventListener('input', function () {
        weights[c.name] = Number(inp.value) / 100; shares();
        clearTimeout(timer); timer = setTimeout(post, D.debounceMs);
      });
      row.appendChild(lab); row.appendChild(inp); row.appendChild(out); box.appendChild(row);
    });
    shares();
  }
  function stacked() {
    return window.matchMedia('(max-width: ' + D.stack[0] + 'px), (max-height: ' + D.stack[1] + 'px)').matches;
  }
  function setOpen(open) {
    // the panel folds to its button; in the stacked layout the map then takes the height
    document.body.classList.toggle('pg-tools-closed', !open);
    var b = $('pg-tools-toggle');
    b.setAttribute('aria-expanded', open ? 'true' : 'false');
    b.textContent = open ? 'Nascondi il pannello' : 'Mostra il pannello (pesi, confronto, graduatoria)';
    if (pattogis.map) { pattogis.map.invalidateSize({pan: false}); }
  }
  function narrow() {
    // a small window: the legend folded and the layer list behind its button, so the map shows
    if (!stacked()) { return; }
    var lg = document.querySelector('#pg-legend details'); if (lg) { lg.open = false; }
    // the page fitted the Unione clear of the open legend, which a small map cannot spare
    if (D.bounds) { pattogis.map.fitBounds(D.bounds, {padding: [16, 16], animate: false}); }
    var lc = document.querySelector('.leaflet-control-layers'), EXP = 'leaflet-control-layers-expanded';
    var link = lc && lc.querySelector('.leaflet-control-layers-toggle');
    if (!link) { return; }
    lc.classList.remove(EXP);
    link.setAttribute('aria-label', 'Livelli della mappa'); link.title = 'Livelli della mappa';
    L.DomEvent.on(link, 'click', function (e) { L.DomEvent.preventDefault(e); lc.classList.add(EXP); });
    pattogis.map.on('click', function () { lc.classList.remove(EXP); });
  }
  function init() {
    $('pg-tools-toggle').addEventListener('click', function () {
      setOpen(document.body.classList.contains('pg-tools-closed'));
    });
    narrow();
    sliders(); renderRanking(); renderCompare();
    ['sites', 'site_points'].forEach(function (key) {
      var g = pattogis.layers[key]; if (!g) { return; }
      g.eachLayer(function (l) {
        var p = (l.feature && l.feature.properties) || {};
        if (p.sid && byId[p.sid]) { l.on('click', function () { toggle(p.sid); }); }
      });
    });
  }
  window.pattogis.unione = {pick: toggle, picked: picked, sites: byId, setOpen: setOpen, order: function () {
    return order().map(function (s) { return s.id; }); }};
  window.addEventListener('load', init);
})();
</script>"""


def _decimals(unit: str) -> int:
    """Decimals a raw criterion value is shown with, by unit (metres whole, shares two)."""
    return {"m": 0, "ha": 2, "%": 1, "°": 1, "0-1": 2}.get(unit, 2)


def add_unione_tools(m: folium.Map, s: gpd.GeoDataFrame, *, crits: list[str],
                     labels: Mapping[str, str], names: pd.Series, ids: pd.Series,
                     label_col: str | None, iv: tuple[str, str] | None, cls: Classes,
                     unione: str | None, score_url: str | None, top_group: str | None,
                     palette: list[str], debounce_ms: int = 300,
                     bounds: list[list[float]] | None = None) -> None:
    """The Unione's tools beside the map: the ranking with a checkbox per site (or a click on the
    map) to compare 3 to 5 sites side by side (score, rank, rank interval, each criterion's raw
    value with its unit and its contribution), and, when ``score_url`` (the API's
    ``/analysis/score``) and the profile are known, one weight slider per criterion that rescores
    the Unione's sites live (debounced POST of the profile with the new weights). The tools
    fold behind an Italian-labelled button; in windows narrower than ``STACK_MAX_WIDTH`` or
    lower than ``STACK_MAX_HEIGHT`` they sit in a band under the map instead of over it, the
    legend and the layer list start folded and the map refits ``bounds`` ([[s, w], [n, e]])."""
    from pattogis.criteria import REGISTRY

    prof = (s.attrs or {}).get("profile") or None
    pcrit = (prof or {}).get("criteria") or {}
    units = {c: (pcrit.get(c) or {}).get("unit") or (REGISTRY[c].unit if c in REGISTRY else "")
             for c in crits}
    crit_rows = [{"name": c, "label": labels[c], "unit": units[c], "decimals": _decimals(units[c]),
                  "weight": float((pcrit.get(c) or {}).get("weight", 0.0))} for c in crits]

    def num(v: Any) -> float | None:
        return float(v) if v is not None and pd.notna(v) and np.isfinite(float(v)) else None

    rows = []
    for idx, r in s.iterrows():
        nm = r[label_col] if label_col and isinstance(r[label_col], str) and r[label_col] else ids.loc[idx]
        rank = r["rank"]
        rows.append({
            "id": str(ids.loc[idx]), "name": str(nm),
            "comune": str(names.get(r.get("comune_istat"), r.get("comune_istat", "")) or ""),
            "score": num(r["score"]), "rank": int(rank) if pd.notna(rank) else None,
            "lo": num(r[iv[0]]) if iv else None, "hi": num(r[iv[1]]) if iv else None,
            "raw": {c: num(r[c]) if c in s.columns else None for c in crits},
            "contrib": {c: num(r[f"contrib_{c}"]) for c in crits}})
    live = bool(score_url and prof)
    iv_label = (f"Intervallo di posizione (P{fmt_num(_q_of(iv[0]), 0)}–P{fmt_num(_q_of(iv[1]), 0)})"
                if iv else "Intervallo di posizione")
    data = {"sites": rows, "crits": crit_rows, "profile": prof if live else None,
            "scoreUrl": score_url if live else None, "unione": unione,
            "ivCols": list(iv) if iv else ["rank_p5", "rank_p95"], "ivLabel": iv_label,
            "nRanked": sum(1 for r in rows if r["rank"] is not None),
            "breaks": [float(b) for b in cls.breaks], "colors": list(cls.colors),
            "palette": list(palette),
            "topGroup": top_group, "debounceMs": debounce_ms,
            "stack": [STACK_MAX_WIDTH, STACK_MAX_HEIGHT], "bounds": bounds}
    weights_html = (
        "<details open><summary>Pesi dei criteri</summary><div id='pg-weights'></div>"
        "<p class='pg-msg' id='pg-live' aria-live='polite'>Sposta un cursore: punteggio, posizione "
        "e intervallo si ricalcolano.</p></details>" if live else
        "<p class='pg-msg' id='pg-live'>Pesi modificabili dalla pagina servita dall'API "
        "(<code>/maps/sites</code>).</p>")
    html = (f"{UNIONE_CSS}<div class='pg-box pg-tools' id='pg-tools' role='region' "
            "aria-label='Strumenti: pesi, confronto, graduatoria'><div class='pg-tools-head'>"
            "<button type='button' class='pg-tools-toggle' id='pg-tools-toggle' "
            "aria-expanded='true' aria-controls='pg-tools-body'>Nascondi il pannello</button>"
            f"</div><div id='pg-tools-body'>{weights_html}"
            "<details open><summary>Confronto dei siti</summary>"
            "<p class='pg-msg' id='pg-compare-msg' aria-live='polite'></p><div id='pg-compare'></div>"
            "</details><details open><summary>Graduatoria</summary><table><thead><tr><th></th>"
            f"<th class='n'>Pos.</th><th>Sito</th><th class='n'>Punteggio</th><th class='n'>"
            f"{esc(iv_label.replace('Intervallo di posizione', 'Intervallo'))}</th></tr></thead>"
            "<tbody id='pg-ranking'></tbody></table></details></div></div>")
    m.get_root().html.add_child(folium.Element(html), name="pg_unione_tools")
    m.get_root().html.add_child(folium.Element(UNIONE_JS.replace("__DATA__", compact_json(data))),
                                name="pg_unione_js")


# --- 4. fund allocation ---------------------------------------------------------------------


def _n_progetti(n: int) -> str:
    return f"{n} progetto" if n == 1 else f"{n} progetti"


def _fund_status(v: Any) -> str:
    """Canonical status key from the fund output ('finanziato', 'parzialmente', ...)."""
    t = str(v).strip().lower().replace(" ", "_")
    if t in FUND_STATUS:
        return t
    if "parzial" in t:
        return "finanziato_parzialmente"
    if t.startswith("non") or t in ("not_funded", "unfunded"):
        return "non_finanziato"
    if t.startswith("esclu") or t == "excluded":
        return "escluso"
    if t in ("funded", "finanziata"):
        return "finanziato"
    raise InputError(f"unknown project status '{v}'", field="status",
                     hint=f"expected one of {', '.join(FUND_STATUS)}")


# zoom levels of the fund page: below CLOSE the applications of one comune are one circle;
# from POLYGONS_ONLY on only the site polygons are drawn (the circles would hide them)
FUND_CLOSE_ZOOM = 13
FUND_POLYGONS_ONLY_ZOOM = 15
FUND_CLUSTER_COLOR = "#34495e"
_FUND_ZOOM_JS = """
(function (map) {
  var o = %s, keep = {};
  function upd() {
    var z = map.getZoom();
    o.keys.forEach(function (k) {
      var g = window.pattogis.layers[k]; if (!g) { return; }
      if (!keep[k]) { keep[k] = g.getLayers(); }
      keep[k].forEach(function (l) {
        var p = (l.feature && l.feature.properties) || {}, show;
        if (k === o.cluster) { show = z < o.close; }
        else { show = z < o.polyOnly && (z >= o.close || !p._c); }
        if (show && !g.hasLayer(l)) { g.addLayer(l); }
        if (!show && g.hasLayer(l)) { g.removeLayer(l); }
      });
    });
  }
  // the number of applications written on each grouped circle
  document.head.insertAdjacentHTML('beforeend', '<style>.pg-count{background:transparent;' +
    'border:0;box-shadow:none;color:#fff;font-weight:bold;font-size:12px}' +
    '.pg-count:before{display:none}</style>');
  var cg = window.pattogis.layers[o.cluster];
  if (cg) {
    cg.eachLayer(function (l) {
      var p = (l.feature && l.feature.properties) || {};
      if (p._n) { l.bindTooltip(String(p._n), {permanent: true, direction: 'center',
                                                className: 'pg-count'}); }
    });
  }
  map.on('zoomend', upd); map.whenReady(upd);
})({map});
"""


def fund_map(result: gpd.GeoDataFrame, *, call_name: str | None = None, budget_eur: float | None = None,
             static_url: str | None = None, demo: bool | None = None) -> folium.Map:
    """Projects of a fund call by status (finanziato, parzialmente, non finanziato, escluso),
    circle area proportional to the grant (or the request when nothing was granted), reason in
    the popup. ``result``: the fund output with ``status``, ``granted_eur``, ``reason``,
    ``applicant`` (optional ``requested_eur``, ``title``/``project_id``, ``rank``, ``merit``,
    ``comune_istat``/``host_name`` to group far out).

    Readable where sites crowd (Bologna): far out, the applications of one comune are one
    circle with their number and list; from zoom 13 each has its circle; from zoom 15 only the
    site polygons. ``demo`` (default ``result.attrs['dimostrativo']``): the applications are the
    demonstration set, and the title, layers and legend say "dimostrativo"."""
    if not isinstance(result, gpd.GeoDataFrame) or result.crs is None:
        raise InputError("fund result must be a GeoDataFrame with a CRS (the project sites)",
                         field="geometry")
    for col in ("status", "granted_eur", "reason", "applicant"):
        if col not in result.columns:
            raise InputError(f"fund result has no '{col}' column", field=col)
    bad = (result.geometry.isna() | result.geometry.is_empty).to_numpy()
    if bad.any():
        raise InputError("projects without a site geometry", rows=[int(i) + 1 for i in np.flatnonzero(bad)],
                         field="geometry")
    demo = bool(result.attrs.get("dimostrativo", False)) if demo is None else demo
    budget_eur = budget_eur if budget_eur is not None else result.attrs.get("budget_eur")
    dem = " (dimostrativo)" if demo else ""
    r = result.reset_index(drop=True)
    r["_status"] = [_fund_status(v) for v in r["status"]]
    granted = pd.to_numeric(r["granted_eur"], errors="coerce").fillna(0.0).to_numpy()
    req = (pd.to_numeric(r["requested_eur"], errors="coerce").to_numpy()
           if "requested_eur" in r.columns else np.full(len(r), np.nan))
    unioni = layers.open_layer("unioni")
    title = ("Fondo perequativo metropolitano – assegnazione"
             + (" DIMOSTRATIVA" if demo else "") + (f" ({call_name})" if call_name else ""))
    tot = granted.sum()
    sub = f"{_n_progetti(len(r))}, {fmt_eur(tot)} assegnati" + (
        f" su {fmt_eur(budget_eur)}" if budget_eur is not None else "")
    if demo:
        sub = "Domande dimostrative, non reali (siti candidati con il miglior punteggio). " + sub
    m = base_map(title, sub, bounds=bounds_latlon(unioni), static_url=static_url)
    src_u = source_text(["unioni"])
    fc = to_features(unioni, {"tip": [esc(u) for u in unioni["unione"]],
                              "popup": [table_html([("Comuni", str(int(n))),
                                                    ("Residenti", fmt_num(p, 0))], title=esc(u))
                                        for u, n, p in zip(unioni["unione"], unioni["n_comuni"],
                                                           unioni["pop_total"], strict=True)]},
                     simplify_m=SIMPLIFY_M)
    geojson_layer(fc, "Unioni e comuni non associati", attribution=src_u,
                  style=_style(BG_COLOR, "#555", 1.2, 0.0)).add_to(m)

    label_col = next((c for c in ("title", "name", "project_id") if c in r.columns), None)
    amount = np.where(granted > 0, granted, np.nan_to_num(req, nan=0.0))
    ref = float(np.nanmax(amount)) if len(amount) and np.nanmax(amount) > 0 else 1.0
    radius = 5.0 + 13.0 * np.sqrt(amount / ref)
    color_of = {k: c for k, (_, c) in FUND_STATUS.items()}
    label_of = {k: lab for k, (lab, _) in FUND_STATUS.items()}
    pops = []
    for j, (_, row) in enumerate(r.iterrows()):
        lab = label_of[row["_status"]]
        rows = [("Richiedente", esc(row["applicant"])), ("Esito", f"<b>{esc(lab)}{dem}</b>"),
                ("Importo assegnato", fmt_eur(granted[j]))]
        if np.isfinite(req[j]):
            rows.append(("Importo richiesto", fmt_eur(req[j])))
        for col, name in (("rank", "Posizione in graduatoria"), ("merit", "Punteggio di merito")):
            if col in row.index and pd.notna(row[col]):
                rows.append((name, fmt_num(row[col], 0 if col == "rank" else 3)))
        if "host_name" in row.index and pd.notna(row["host_name"]):
            rows.append(("Comune sede (dal poligono)", esc(row["host_name"])))
        rows.append(("Motivazione", esc(row["reason"])))
        head = row[label_col] if label_col and pd.notna(row[label_col]) else "Progetto"
        pops.append(table_html(rows, title=esc(head)))
    pops_a = np.array(pops, dtype=object)

    # far out: the applications of one comune (two or more) become one circle
    group_key = next((c for c in ("comune_istat", "host_name") if c in r.columns), None)
    gk = (r[group_key].astype(object).where(r[group_key].notna(), None).to_numpy()
          if group_key else np.full(len(r), None, object))
    counts = pd.Series(gk).value_counts()
    clustered = np.array([k is not None and counts.get(k, 0) > 1 for k in gk])

    # the site polygons: always drawn; alone from zoom FUND_POLYGONS_ONLY_ZOOM
    poly = to_features(r[["geometry"]].assign(_fill=[color_of[k] for k in r["_status"]]),
                       {"popup": pops, "tip": [f"{esc(a)}: {esc(label_of[k])}{dem}"
                                               for a, k in zip(r["applicant"], r["_status"],
                                                               strict=True)],
                        "_fill": [color_of[k] for k in r["_status"]]})
    geojson_layer(poly, f"Siti delle domande (poligoni){dem}", style=_style("#999", "#222", 1.0, 0.6),
                  attribution="Domande al fondo perequativo", highlight=True,
                  key="fund_sites").add_to(m)

    keys = ["fund_sites_cluster"]
    for key, (lab, color) in FUND_STATUS.items():
        sel = (r["_status"] == key).to_numpy()
        if not sel.any():
            continue
        sub_r = r[sel]
        pts = sub_r[["geometry"]].set_geometry(sub_r.geometry.representative_point())
        fc = to_features(pts, {"popup": list(pops_a[sel]),
                               "tip": [f"{esc(a)}: {lab}{dem}" for a in sub_r["applicant"]],
                               "_r": radius[sel], "_c": [bool(c) for c in clustered[sel]]})
        geojson_layer(fc, f"{lab}{dem} ({int(sel.sum())})", style=_style(color, "#222", 1.0, 0.85),
                      attribution="Domande al fondo perequativo", highlight=True,
                      key=f"fund_{key}").add_to(m)
        keys.append(f"fund_{key}")
    if clustered.any():
        cr = r[clustered].assign(_k=gk[clustered])
        cp = cr.geometry.representative_point()
        rows_c = []
        for k, g in cr.groupby("_k", sort=True):
            name = (g["host_name"].iloc[0] if "host_name" in g.columns and pd.notna(g["host_name"].iloc[0])
                    else str(k))
            items = [(esc(g.at[i, label_col] if label_col else g.at[i, "applicant"]),
                      f"{esc(label_of[g.at[i, '_status']])} – {fmt_eur(granted[i])}")
                     for i in g.index]
            xy = cp.loc[g.index]
            rows_c.append({"name": name, "n": len(g), "x": float(xy.x.mean()), "y": float(xy.y.mean()),
                           "popup": table_html(items, title=f"{esc(name)}: {len(g)} domande{dem}")})
        cdf = gpd.GeoDataFrame(rows_c, geometry=gpd.points_from_xy([c["x"] for c in rows_c],
                                                                    [c["y"] for c in rows_c]),
                               crs=r.crs)
        fcc = to_features(cdf[["geometry"]], {
            "popup": [c["popup"] for c in rows_c],
            "tip": [f"{esc(c['name'])}: {c['n']} domande{dem} (avvicinati per vederle)" for c in rows_c],
            "_r": [8.0 + 4.0 * np.sqrt(c["n"]) for c in rows_c], "_n": [c["n"] for c in rows_c]})
        geojson_layer(fcc, f"Domande raggruppate per comune{dem}",
                      style=_style(FUND_CLUSTER_COLOR, "#fff", 2.0, 0.85),
                      attribution="Domande al fondo perequativo", highlight=True,
                      key="fund_sites_cluster").add_to(m)
    counts_s = r["_status"].value_counts()
    items = [(c, f"{lab}: {_n_progetti(int(counts_s.get(k, 0)))}") for k, (lab, c) in FUND_STATUS.items()]
    legend = [LegendSection("Esito della domanda" + dem, items, kind="dot",
                            note="Area del cerchio proporzionale all'importo assegnato (o "
                            "richiesto, se non finanziato). Da lontano le domande di uno stesso "
                            "comune sono un solo cerchio scuro con il loro elenco; avvicinandosi "
                            "compaiono i singoli cerchi e, da vicino, i poligoni dei siti."
                            + (" Domande DIMOSTRATIVE: non è un'assegnazione reale." if demo else "")),
              LegendSection("Raggruppamento" + dem, [(FUND_CLUSTER_COLOR, "più domande nello stesso comune")],
                            kind="dot"),
              LegendSection("Confini", [("#555", "Unioni e comuni non associati")], kind="line",
                            source=src_u)]
    by = (pd.DataFrame({"s": r["_status"], "g": granted}).groupby("s")["g"].agg(["size", "sum"]))
    rows = [(esc(lab), f"{_n_progetti(int(by.loc[k, 'size']) if k in by.index else 0)} – "
             f"{fmt_eur(by.loc[k, 'sum'] if k in by.index else 0.0)}")
            for k, (lab, _) in FUND_STATUS.items()]
    rows.append(("<b>Totale assegnato</b>", f"<b>{fmt_eur(tot)}</b>"))
    if budget_eur is not None:
        rows.append(("Dotazione del bando", fmt_eur(budget_eur)))
        rows.append(("Non assegnato", fmt_eur(float(budget_eur) - tot)))
    add_panel(m, table_html(rows, title="Riepilogo" + (" – DIMOSTRATIVO" if demo else "")))
    add_layer_control(m)
    add_legend(m, legend, footer=NO_TILES_NOTE)
    opts = {"keys": keys, "cluster": "fund_sites_cluster", "close": FUND_CLOSE_ZOOM,
            "polyOnly": FUND_POLYGONS_ONLY_ZOOM}
    MapScript(_FUND_ZOOM_JS.replace("%s", json.dumps(opts))).add_to(m)
    return m


# --- files for the CLI ----------------------------------------------------------------------


def write_pages(out_dir: str | Path | None = None, *, proposals: gpd.GeoDataFrame | None = None,
                comune: str | None = None, scenario: str = "base",
                sites: gpd.GeoDataFrame | None = None, unione: str | None = None,
                fund: gpd.GeoDataFrame | None = None, call_name: str | None = None) -> dict[str, Path]:
    """Write the pages that can be built from the inputs to ``out_dir`` (default ``maps/``),
    each atomically and self-contained (Leaflet inlined, opens offline). Returns name → path."""
    out: dict[str, Path] = {}
    out["overview"] = write_page(overview_map(), "overview", out_dir)
    name = f"budget_{comune}" if comune else "budget"
    out[name] = write_page(budget_map(proposals, comune=comune, scenario=scenario), name, out_dir)
    if sites is not None:
        slug = re.sub(r"[^\w]+", "_", unione or "siti").strip("_").lower()
        out[f"sites_{slug}"] = write_page(sites_map(sites, unione=unione), f"sites_{slug}", out_dir)
    if fund is not None:
        out["fund"] = write_page(fund_map(fund, call_name=call_name), "fund", out_dir)
    return out
