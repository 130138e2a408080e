"""Building blocks of the web maps: offline assets, base map, GeoJSON for display, legend, title.

Every page is a ``folium.Map`` with no base tiles by default (the platform runs offline; an
OpenStreetMap tile layer is available as an overlay the user can switch on) and with Leaflet
served from ``pattogis/static/leaflet`` instead of a CDN: inlined in files written to disk (so a
page opens from ``file://`` with no network) or linked from the API (``/maps/static/...``).

Geometries are simplified in the metric working CRS (EPSG:25832, tolerances in metres) and then
reprojected to EPSG:4326 with coordinates rounded to 6 decimals (about 0.1 m), so pages stay small.
User-facing text (labels, legends, popups) is Italian; every string that comes from data is
HTML-escaped before it reaches a page.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import branca.element as be
import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from folium.utilities import JsCode
from jinja2 import Template

from pattogis import config
from pattogis.errors import InputError
from pattogis.maps.js import ScriptLayer

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
LEAFLET_DIR = STATIC_DIR / "leaflet"
# Files the API may serve under /maps/static/ (a whitelist: never a path from the request).
STATIC_FILES = {
    "leaflet/leaflet.js": "application/javascript",
    "leaflet/leaflet.css": "text/css",
    "leaflet/images/layers.png": "image/png",
    "leaflet/images/layers-2x.png": "image/png",
    "leaflet/images/marker-icon.png": "image/png",
    "leaflet/images/marker-icon-2x.png": "image/png",
    "leaflet/images/marker-shadow.png": "image/png",
    "leaflet/LICENSE": "text/plain",
    "vectorgrid/Leaflet.VectorGrid.bundled.min.js": "application/javascript",
    "vectorgrid/LICENSE": "text/plain",
}

PRECISION = 6           # decimals of lon/lat kept in pages (~0.1 m)
SIMPLIFY_M = 20.0       # default display simplification of polygons (metres, working CRS)
BG_COLOR = "#eef0ec"    # map background when no tiles are shown
OSM_TILES = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
OSM_ATTR = "© OpenStreetMap contributors"
DERIVED_BADGE = "derivato"


# --- formatting (Italian) --------------------------------------------------------------------


def fmt_num(x: Any, decimals: int = 2) -> str:
    """Italian number format: 1.234,56; '–' for missing values."""
    if x is None or (isinstance(x, float | np.floating) and not np.isfinite(x)) or pd.isna(x):
        return "–"
    s = f"{float(x):,.{decimals}f}"
    return s.replace(",", "\u2009").replace(".", ",").replace("\u2009", ".")


def fmt_ha(x: Any, decimals: int = 2) -> str:
    return f"{fmt_num(x, decimals)} ha"


def fmt_eur(x: Any) -> str:
    return f"{fmt_num(x, 2)} €"


def fmt_pct(share: Any, decimals: int = 0) -> str:
    """A share 0..1 as a percentage."""
    if share is None or pd.isna(share):
        return "–"
    return f"{fmt_num(100.0 * float(share), decimals)}%"


def esc(x: Any) -> str:
    """HTML-escape a value for a page ('' for missing)."""
    if x is None or (not isinstance(x, str | bytes) and pd.isna(x)):
        return ""
    return html.escape(str(x), quote=True)


def table_html(rows: Sequence[tuple[str, str]], title: str | None = None) -> str:
    """A small two-column table for popups. Labels and values must already be escaped."""
    head = f"<div class='pg-pop-title'>{title}</div>" if title else ""
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"{head}<table class='pg-pop'>{body}</table>"


# --- colours ---------------------------------------------------------------------------------

# ColorBrewer palettes (display constants, not parameters of the law).
YL_OR_RD = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"]
GREENS = ["#edf8e9", "#bae4b3", "#74c476", "#31a354", "#006d2c"]
VIRIDIS = ["#440154", "#3b528b", "#21918c", "#5ec962", "#fde725"]
OVERDRAFT = "#b2182b"


@dataclass
class Classes:
    """A classed colour scale: ``colors[i]`` for values in [breaks[i], breaks[i+1])."""

    breaks: list[float]
    colors: list[str]
    decimals: int = 2
    unit: str = ""

    def color(self, values: Any) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        idx = np.clip(np.searchsorted(self.breaks[1:-1], v, side="right"), 0, len(self.colors) - 1)
        out = np.asarray(self.colors, dtype=object)[idx]
        return np.where(np.isfinite(v), out, "#bdbdbd")

    def legend(self) -> list[tuple[str, str]]:
        u = f" {self.unit}" if self.unit else ""
        return [(c, f"{fmt_num(a, self.decimals)} – {fmt_num(b, self.decimals)}{u}")
                for c, a, b in zip(self.colors, self.breaks[:-1], self.breaks[1:], strict=True)]


def quantile_classes(values: Any, colors: Sequence[str], *, decimals: int = 2,
                     unit: str = "") -> Classes:
    """Classes of (about) equal count; fewer classes when values repeat."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return Classes([0.0, 1.0], [colors[0]], decimals, unit)
    qs = np.quantile(v, np.linspace(0, 1, len(colors) + 1))
    qs = np.unique(np.round(qs, decimals))
    if qs.size < 2:
        qs = np.array([qs[0], qs[0] + 10.0 ** -decimals])
    qs[0] = min(qs[0], np.floor(v.min() * 10**decimals) / 10**decimals)
    qs[-1] = max(qs[-1], np.ceil(v.max() * 10**decimals) / 10**decimals)
    n = qs.size - 1
    # spread the palette over the classes that exist
    pick = np.round(np.linspace(0, len(colors) - 1, n)).astype(int) if n > 1 else [len(colors) - 1]
    return Classes([float(q) for q in qs], [colors[i] for i in pick], decimals, unit)


# --- GeoJSON for display -------------------------------------------------------------------


def _round_coords(geoms: np.ndarray, precision: int) -> np.ndarray:
    return shapely.transform(geoms, lambda c: np.round(c, precision))


def display_frame(gdf: gpd.GeoDataFrame, *, simplify_m: float | None = None,
                  precision: int = PRECISION) -> gpd.GeoDataFrame:
    """Simplify in the working CRS (``simplify_m`` metres), reproject to EPSG:4326, round."""
    if gdf.crs is None:
        raise InputError("layer has no CRS: cannot place it on a map", field="geometry",
                         hint="set the CRS (EPSG:25832 for pattogis layers)")
    g = gdf[~gdf.geometry.isna() & ~gdf.geometry.is_empty]
    if simplify_m:
        if g.crs.is_geographic:
            g = g.to_crs(config.working_crs())
        g = g.set_geometry(g.geometry.simplify(simplify_m, preserve_topology=True))
        g = g[~g.geometry.is_empty]
    g = g.to_crs(4326)
    return g.set_geometry(_round_coords(g.geometry.values, precision))


def to_features(gdf: gpd.GeoDataFrame, props: Mapping[str, Any] | None = None, *,
                simplify_m: float | None = None, precision: int = PRECISION) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (EPSG:4326) with only the given properties.

    ``props`` maps property name → column name, array/Series aligned with ``gdf``, or scalar.
    Features get sequential ids (folium's style functions key on them).
    """
    base = gdf.reset_index(drop=True)
    cols: dict[str, Any] = {}
    for k, v in (props or {}).items():
        if isinstance(v, str) and v in base.columns:
            cols[k] = base[v].to_numpy()
        elif isinstance(v, pd.Series | np.ndarray | list):
            cols[k] = np.asarray(v, dtype=object)
        else:
            cols[k] = v
    frame = gpd.GeoDataFrame(pd.DataFrame(cols, index=base.index), geometry=base.geometry.values,
                             crs=base.crs)
    g = display_frame(frame, simplify_m=simplify_m, precision=precision)
    fc = json.loads(g.to_json(drop_id=True, na="null", to_wgs84=False))
    for i, f in enumerate(fc["features"]):
        f["id"] = i
    fc.pop("bbox", None)
    return fc


def bounds_latlon(gdf: gpd.GeoDataFrame) -> list[list[float]]:
    """[[south, west], [north, east]] of a layer, for fit_bounds."""
    w, s, e, n = gdf.to_crs(4326).total_bounds
    return [[float(s), float(w)], [float(n), float(e)]]


# --- the page ------------------------------------------------------------------------------


POPUP_JS = JsCode(
    """function(feature, layer) {
        var p = feature.properties || {};
        if (p.popup) { layer.bindPopup(p.popup, {maxWidth: 380}); }
        if (p.tip) { layer.bindTooltip(p.tip, {sticky: true}); }
    }"""
)

PAGE_CSS = f"""
<style>
  .folium-map, .leaflet-container {{ background: {BG_COLOR}; }}
  .pg-box {{ font: 13px/1.35 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif;
    background: rgba(255,255,255,.94); border-radius: 6px; box-shadow: 0 1px 5px rgba(0,0,0,.35);
    padding: 8px 10px; color: #222; }}
  .pg-title {{ position: fixed; top: 10px; left: 54px; z-index: 1000; max-width: 40vw; }}
  .pg-title h1 {{ font-size: 17px; margin: 0; }}
  .pg-title p {{ margin: 2px 0 0; font-size: 12px; color: #555; }}
  /* compact attribution: one line, the full text on hover or focus */
  .leaflet-control-attribution {{ font-size: 10px; max-width: 34vw; white-space: nowrap;
    overflow: hidden; text-overflow: ellipsis; }}
  .leaflet-control-attribution:hover, .leaflet-control-attribution:focus-within {{
    white-space: normal; max-width: 60vw; }}
  .pg-label {{ background: none; border: 0; box-shadow: none; font: 600 11px system-ui,
    sans-serif; color: #333; text-shadow: 0 0 3px #fff, 0 0 3px #fff; padding: 0; }}
  .pg-label::before {{ display: none; }}
  .pg-far .pg-label {{ display: none; }}
  .leaflet-control-layers-expanded {{ font-size: 12px; padding: 4px 8px; }}
  .pg-legend {{ position: fixed; bottom: 56px; left: 10px; z-index: 1000; max-width: 290px;
    font-size: 12px;
    max-height: calc(100vh - 150px); overflow: auto; }}
  .pg-legend summary {{ font-weight: 600; cursor: pointer; }}
  .pg-legend h4 {{ margin: 8px 0 3px; font-size: 13px; }}
  .pg-legend .pg-row {{ display: flex; align-items: center; gap: 6px; margin: 1px 0; }}
  .pg-legend .pg-sw {{ width: 16px; height: 12px; border: 1px solid #777; flex: none; }}
  .pg-legend .pg-sw.pg-line {{ height: 0; border: 0; border-top: 3px solid; }}
  .pg-legend .pg-sw.pg-dot {{ width: 10px; height: 10px; border-radius: 50%; }}
  .pg-legend .pg-src {{ font-size: 11px; color: #555; margin: 2px 0 0; }}
  .pg-legend .pg-note {{ font-size: 11px; color: #444; margin: 4px 0 0; }}
  .pg-legend .pg-status {{ font-style: italic; color: #08519c; }}
  .pg-badge {{ display: inline-block; font-size: 10px; font-weight: 600; color: #7a4b00;
    background: #ffe9b3; border: 1px solid #e0b44c; border-radius: 3px; padding: 0 4px;
    margin-left: 4px; text-transform: uppercase; letter-spacing: .03em; }}
  .pg-panel {{ position: fixed; bottom: 30px; right: 10px; z-index: 1000; max-width: 360px;
    max-height: 45vh; overflow: auto; }}
  .pg-pop-title {{ font-weight: 600; margin-bottom: 4px; }}
  table.pg-pop {{ border-collapse: collapse; font-size: 12px; }}
  table.pg-pop th {{ text-align: left; font-weight: 500; color: #555; padding: 1px 8px 1px 0;
    vertical-align: top; }}
  table.pg-pop td {{ text-align: right; padding: 1px 0; }}
  .pg-rank {{ font: 600 11px system-ui, sans-serif; color: #111; background: #fff;
    border: 1px solid #333; border-radius: 9px; text-align: center; line-height: 16px; }}
</style>
"""


def _css_inline(css: str) -> str:
    """Leaflet's CSS with its images as data URIs, so an inlined page needs no files beside it."""
    def repl(m: re.Match[str]) -> str:
        p = LEAFLET_DIR / m.group(1)
        if not p.exists():
            return m.group(0)
        return f"url(data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()})"
    return re.sub(r"url\((images/[\w.-]+\.png)\)", repl, css)


def _strip_sourcemap(js: str) -> str:
    return re.sub(r"\n//# sourceMappingURL=\S+\s*$", "\n", js)


def _use_local_assets(m: folium.Map, static_url: str | None) -> None:
    """Replace folium's CDN assets (Leaflet, jQuery, Bootstrap...) with the vendored Leaflet.

    ``static_url`` None: inline Leaflet in the page; else link ``{static_url}/leaflet/...``.
    The pages use no jQuery/Bootstrap-dependent folium element (plain-JS popups and controls).
    """
    m.default_js = []
    m.default_css = []
    header = m.get_root().header
    if static_url is None:
        css = _css_inline((LEAFLET_DIR / "leaflet.css").read_text(encoding="utf-8"))
        js = _strip_sourcemap((LEAFLET_DIR / "leaflet.js").read_text(encoding="utf-8"))
        header.add_child(be.Element(f"<style>{css}</style>"), name="leaflet_css")
        header.add_child(be.Element(f"<script>{js}</script>"), name="leaflet")
    else:
        base = static_url.rstrip("/")
        header.add_child(be.CssLink(f"{base}/leaflet/leaflet.css"), name="leaflet_css")
        header.add_child(be.JavascriptLink(f"{base}/leaflet/leaflet.js"), name="leaflet")
    header.add_child(be.Element(PAGE_CSS), name="pattogis_css")
    if static_url is not None:  # vector tiles are drawn from the API only
        header.add_child(be.JavascriptLink(
            f"{static_url.rstrip('/')}/vectorgrid/Leaflet.VectorGrid.bundled.min.js"),
            name="vectorgrid")
    # an empty inline icon: browsers would otherwise ask the server for /favicon.ico
    header.add_child(be.Element('<link rel="icon" href="data:,">'), name="favicon")


def base_map(title: str, subtitle: str = "", *, bounds: list[list[float]] | None = None,
             static_url: str | None = None, osm_tiles: bool = True,
             basemap: bool = True) -> folium.Map:
    """An empty page: local Leaflet, title box, metric scale bar and (``basemap``) the offline
    base map drawn from our own layers (:func:`add_basemap`).

    ``osm_tiles``: add an OpenStreetMap tile overlay, off by default (needs internet).
    """
    m = folium.Map(location=[44.49, 11.34], zoom_start=9, tiles=None, control_scale=False,
                   prefer_canvas=True, zoom_snap=0.25)
    _use_local_assets(m, static_url)
    root = m.get_root()
    root.title = title
    # metric scale only (the page is marked lang="it" by render())
    MapScript("L.control.scale({imperial: false, metric: true}).addTo({map});").add_to(m)
    root.html.add_child(be.Element(
        f"<div class='pg-box pg-title'><h1>{esc(title)}</h1>"
        + (f"<p>{esc(subtitle)}</p>" if subtitle else "") + "</div>"), name="pg_title")
    # attribution prefix without Leaflet's link to a remote site
    MapScript("{map}.attributionControl.setPrefix('Leaflet | pattogis');").add_to(m)
    if basemap:
        from pattogis.maps.basemap import add_basemap

        add_basemap(m)
    if osm_tiles:
        folium.TileLayer(OSM_TILES, attr=OSM_ATTR, name="Sfondo OpenStreetMap (richiede internet)",
                         overlay=True, show=False, control=True, max_zoom=19).add_to(m)
    if bounds is not None:
        # keep the area clear of the legend box on the left
        m.fit_bounds(bounds, padding_top_left=(310, 30), padding_bottom_right=(10, 30))
    return m


class MapScript(be.MacroElement):
    """JavaScript run right after the map is created; ``{map}`` stands for the map variable."""

    _template = Template(
        "{% macro script(this, kwargs) %}{{ this.code.replace('{map}', this._parent.get_name()) }}"
        "{% endmacro %}")

    def __init__(self, code: str) -> None:
        super().__init__()
        self._name = "MapScript"
        self.code = code


@dataclass
class LegendSection:
    """One layer in the legend: title, swatches, source and whether it is derived."""

    title: str
    items: list[tuple[str, str]] = field(default_factory=list)   # (colour, label)
    kind: str = "fill"          # fill | line | dot
    source: str = ""
    derived: bool = False
    note: str = ""
    status_id: str = ""         # id of a line a script updates (e.g. on-demand loading state)

    def html(self) -> str:
        badge = f"<span class='pg-badge'>{DERIVED_BADGE}</span>" if self.derived else ""
        cls = {"fill": "pg-sw", "line": "pg-sw pg-line", "dot": "pg-sw pg-dot"}[self.kind]
        rows = []
        for color, label in self.items:
            style = (f"border-top-color:{color}" if self.kind == "line" else f"background:{color}")
            rows.append(f"<div class='pg-row'><span class='{cls}' style='{style}'></span>"
                        f"<span>{esc(label)}</span></div>")
        src = f"<div class='pg-src'>Fonte: {esc(self.source)}</div>" if self.source else ""
        note = f"<div class='pg-note'>{esc(self.note)}</div>" if self.note else ""
        if self.status_id:
            note += f"<div class='pg-note pg-status' id='{esc(self.status_id)}'></div>"
        return f"<h4>{esc(self.title)}{badge}</h4>{''.join(rows)}{note}{src}"


def add_legend(m: folium.Map, sections: Iterable[LegendSection], *, footer: str = "") -> None:
    """A collapsible legend box (bottom left) with every layer's swatches and source."""
    body = "".join(s.html() for s in sections)
    foot = f"<div class='pg-note'>{esc(footer)}</div>" if footer else ""
    m.get_root().html.add_child(be.Element(
        f"<div class='pg-box pg-legend' id='pg-legend'><details open><summary>Legenda</summary>"
        f"{body}{foot}</details></div>"), name="pg_legend")


def add_panel(m: folium.Map, inner_html: str) -> None:
    """An information panel (top left, under the zoom buttons). ``inner_html`` must be escaped."""
    m.get_root().html.add_child(be.Element(
        f"<div class='pg-box pg-panel' id='pg-panel'><details open><summary>Dettagli</summary>"
        f"{inner_html}</details></div>"), name="pg_panel")


def geojson_layer(fc: dict[str, Any], name: str, *, style: Mapping[str, Any] | None = None,
                  attribution: str = "", show: bool = True, point_radius: float | None = None,
                  highlight: bool = False, key: str | None = None,
                  outline_from: int | None = None) -> ScriptLayer:
    """A GeoJSON overlay; features may carry ready-made ``popup``/``tip`` HTML properties and
    ``_fill``/``_stroke``/``_r`` overrides of the base ``style`` (Leaflet path options).
    ``outline_from``: from this zoom the polygons are drawn as outlines that take no click, so
    the buildings under a choropleth show and a click reaches them (identify); zoomed out, the
    choropleth is filled and its popups open again."""
    payload = {"data": fc, "style": dict(style or {}), "highlight": highlight,
               "radius": point_radius or 5, "outlineFrom": outline_from}
    return ScriptLayer("geojson", payload, name=name, show=show, attribution=attribution, key=key)


def add_layer_control(m: folium.Map) -> None:
    folium.LayerControl(collapsed=False, position="topright").add_to(m)


def render(m: folium.Map) -> str:
    """The page as one HTML string, marked as Italian."""
    return m.get_root().render().replace("<html>", '<html lang="it">', 1)


def maps_dir() -> Path:
    """Where generated pages are written: ``maps/`` in the current directory (git-ignored)."""
    return Path("maps").resolve()


def write_page(page: folium.Map | str, name: str, out_dir: str | Path | None = None) -> Path:
    """Write a page atomically to ``<out_dir>/<name>.html``; returns the path."""
    from pattogis.io import atomic_write_text

    if not re.fullmatch(r"[\w.-]+", name):
        raise InputError(f"invalid page name '{name}'", field="name",
                         hint="letters, digits, '-', '_' and '.' only")
    text = page if isinstance(page, str) else render(page)
    target = Path(out_dir or maps_dir()) / f"{name}.html"
    atomic_write_text(target, text)
    return target
