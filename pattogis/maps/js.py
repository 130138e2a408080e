"""Small plain-JavaScript helpers shared by the pages (no jQuery, no CDN), and the folium layer
that runs them.

- ``pattogis.geojson(group, map, o)``: a GeoJSON layer whose features carry ``popup``/``tip`` HTML
  and optional ``_fill``/``_stroke``/``_r`` style overrides (payload serialised compactly);
- ``pattogis.points(group, map, o)``: a light point layer from compact rows
  ``[lon, lat, value, label]`` drawn as canvas circle markers (thousands of points, a few bytes
  each, instead of one GeoJSON feature per point);
- ``pattogis.tiles(group, map, o)``: a layer drawn from Mapbox Vector Tiles by Leaflet.VectorGrid,
  with Italian popups (and tooltips) built from each feature's properties (``o.fields``); the
  canvas-tiled ones (not ``o.top``: under the GeoJSON canvas, which takes their clicks) are
  identified instead: a click no drawn layer took asks ``/collections/{id}/items?bbox=`` (a box
  of 3 screen pixels around it) for the feature there, layer by layer in ``o.identify`` order;
- ``pattogis.onDemand(group, map, o)``: a layer loaded from ``o.url?bbox=w,s,e,n`` (EPSG:4326)
  when the map is zoomed in to ``o.minZoom`` or more and the layer is switched on; the server
  answers a GeoJSON FeatureCollection whose features may carry ``popup`` / ``tip`` HTML.
"""

from __future__ import annotations

import json
from typing import Any

import folium
from branca.element import Element, Figure
from jinja2 import Template

HELPERS = r"""
<script>
window.pattogis = (function () {
  function bind(feature, layer) {
    var p = feature.properties || {};
    if (p.popup) { layer.bindPopup(p.popup, {maxWidth: 380}); }
    if (p.tip) { layer.bindTooltip(p.tip, {sticky: true}); }
  }
  function styler(o) {
    return function () {
      return {color: o.color, weight: o.weight, opacity: 0.9, fillColor: o.fill,
              fillOpacity: o.fillOpacity, fill: o.fillOpacity > 0};
    };
  }
  function radius(o, v) { return o.r0 + o.k * Math.sqrt(Math.max(+v || 0, 0)); }
  function status(o, text) {
    var el = o.noteId ? document.getElementById(o.noteId) : null;
    if (el) { el.textContent = text; }
  }
  function textPopup(o, r) {
    var d = document.createElement('div');
    var b = document.createElement('b'); b.textContent = r[3] || o.unnamed; d.appendChild(b);
    d.appendChild(document.createElement('br'));
    d.appendChild(document.createTextNode(o.valueLabel + ': ' + r[2]));
    return d;
  }
  function points(group, map, o) {
    var rows = o.rows, st = styler(o)();
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      var mk = L.circleMarker([r[1], r[0]], Object.assign({}, st, {radius: radius(o, r[2])}));
      mk.bindPopup((function (row) { return function () { return textPopup(o, row); }; })(r));
      group.addLayer(mk);
    }
  }
  function geojson(group, map, o) {
    // o.data: FeatureCollection; o.style: base style; per feature _fill/_stroke/_r override it
    function st(f) {
      var p = (f && f.properties) || {}, s = Object.assign({}, o.style);
      if (p._fill) { s.fillColor = p._fill; }
      if (p._stroke) { s.color = p._stroke; s.weight = Math.max(s.weight || 1, 3); }
      return s;
    }
    var gj = L.geoJSON(o.data, {
      style: st,
      pointToLayer: function (f, ll) {
        var p = f.properties || {};
        return L.circleMarker(ll, Object.assign(st(f), {radius: p._r || o.radius || 5}));
      },
      onEachFeature: function (f, layer) {
        bind(f, layer);
        if (o.highlight && layer.setStyle) {
          layer.on('mouseover', function () { layer.setStyle({weight: 3, color: '#000'}); });
          layer.on('mouseout', function () { layer.setStyle(st(f)); });
        }
      }
    });
    gj.eachLayer(function (l) { group.addLayer(l); });
    if (o.outlineFrom !== null && o.outlineFrom !== undefined) {
      // a choropleth at street zoom: outlines that take no click (the canvas renderer asks
      // options.interactive at each event), so the buildings beneath show and are identified
      var outlined = null;
      var fit = function () {
        var out = map.getZoom() >= o.outlineFrom;
        if (out === outlined) { return; }
        outlined = out;
        gj.eachLayer(function (l) {
          if (!l.setStyle || l.getRadius) { return; }
          l.setStyle({fill: !out});
          l.options.interactive = !out;
          if (l._path) { L.DomUtil[out ? 'removeClass' : 'addClass'](l._path, 'leaflet-interactive'); }
        });
      };
      map.on('zoomend', fit); map.whenReady(fit);
    }
  }
  function onDemand(group, map, o) {
    var seq = 0;
    function refresh() {
      if (!map.hasLayer(group)) { return; }
      if (map.getZoom() < o.minZoom) { group.clearLayers(); status(o, o.zoomText); return; }
      var b = map.getBounds(), my = ++seq;
      var box = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()]
        .map(function (v) { return v.toFixed(6); }).join(',');
      status(o, 'caricamento…');
      fetch(o.url + (o.url.indexOf('?') < 0 ? '?' : '&') + 'bbox=' + box)
        .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
        .then(function (fc) {
          if (my !== seq) { return; }
          group.clearLayers();
          L.geoJSON(fc, {
            style: styler(o), onEachFeature: bind,
            pointToLayer: function (f, ll) {
              return L.circleMarker(ll, {radius: radius(o, (f.properties || {}).value)});
            }
          }).eachLayer(function (l) { group.addLayer(l); });
          status(o, fc.features.length + ' elementi nella vista' +
                 (fc.truncated ? ' (elenco troncato: avvicinati)' : ''));
        })
        .catch(function (e) {
          status(o, 'errore di caricamento');
          console.error('pattogis: ' + o.url + ': ' + e);
        });
    }
    map.on('moveend', refresh);
    map.on('overlayadd', function (e) { if (e.layer === group) { refresh(); } });
    map.on('overlayremove', function (e) { if (e.layer === group) { status(o, o.offText); } });
    map.whenReady(function () { if (map.hasLayer(group)) { refresh(); } else { status(o, o.offText); } });
  }
  function basemap(group, map, o) {
    // the offline base map: hillshade image, main roads, railways, comune boundaries and names
    // the hillshade (250 m cells) only where it reads as relief, not as blocks
    var relief = o.image ? L.imageOverlay(o.image, o.bounds, {opacity: 1, interactive: false}) : null;
    function lines(fc, st) {
      if (fc) { L.geoJSON(fc, {style: st, interactive: false}).eachLayer(function (l) { group.addLayer(l); }); }
    }
    lines(o.roads, {color: '#c98f3b', weight: 1.6, opacity: 0.8});
    lines(o.rail, {color: '#555', weight: 1.4, opacity: 0.9, dashArray: '5 3'});
    L.geoJSON(o.comuni, {
      filter: function (f) { return f.geometry.type !== 'Point'; },
      style: {color: '#8a8a8a', weight: 0.8, opacity: 0.9, fill: false}, interactive: false
    }).eachLayer(function (l) { group.addLayer(l); });
    L.geoJSON(o.comuni, {
      filter: function (f) { return f.geometry.type === 'Point'; },
      pointToLayer: function (f, ll) {
        var m = L.circleMarker(ll, {radius: 0, opacity: 0, fillOpacity: 0, interactive: false});
        m.bindTooltip(String(f.properties.label || ''), {permanent: true, direction: 'center',
                                                         className: 'pg-label'});
        return m;
      }
    }).eachLayer(function (l) { group.addLayer(l); });
    function far() {
      var c = map.getContainer(), z = map.getZoom();
      if (z < o.labelZoom) { c.classList.add('pg-far'); } else { c.classList.remove('pg-far'); }
      if (relief) {
        if (z <= o.reliefMaxZoom && !group.hasLayer(relief)) { group.addLayer(relief); relief.bringToBack(); }
        if (z > o.reliefMaxZoom && group.hasLayer(relief)) { group.removeLayer(relief); }
      }
    }
    map.on('zoomend', far); map.whenReady(far);
  }
  function fmtNum(v, d) {
    // as fmt_num in Python: 1.234,56 (the browser's it-IT leaves 4-digit numbers ungrouped)
    var t = Math.abs(Number(v)).toFixed(d).split('.');
    return (v < 0 && Number(t.join('')) !== 0 ? '-' : '') +
      t[0].replace(/\B(?=(\d{3})+(?!\d))/g, '.') + (t.length > 1 ? ',' + t[1] : '');
  }
  function tileValue(o, f, p) {
    // f: {key, label, decimals?, unit?, lookup?, dflt?}; null when the feature lacks it
    var v = p[f.key];
    if (v === undefined || v === null || v === '') {
      if (f.dflt === undefined) { return null; }
      v = f.dflt;
    }
    if (f.lookup) { var tab = (o.lookups || {})[f.lookup] || {}; if (tab[v] !== undefined) { v = tab[v]; } }
    if (f.decimals !== undefined && v !== '' && isFinite(v)) { v = fmtNum(Number(v), f.decimals); }
    return String(v) + (f.unit ? ' ' + f.unit : '');
  }
  function tilePopup(o, p) {
    // the same markup as the GeoJSON popups (table_html), built as text nodes: no HTML from data
    var d = document.createElement('div'), t = document.createElement('div');
    t.className = 'pg-pop-title';
    t.textContent = (o.titleField && p[o.titleField]) || o.title;
    d.appendChild(t);
    var tb = document.createElement('table'); tb.className = 'pg-pop';
    o.fields.forEach(function (f) {
      var v = tileValue(o, f, p); if (v === null) { return; }
      var tr = document.createElement('tr'), h = document.createElement('th'), c = document.createElement('td');
      h.textContent = f.label; c.textContent = v; tr.appendChild(h); tr.appendChild(c); tb.appendChild(tr);
    });
    d.appendChild(tb);
    return d;
  }
  function tileTip(o, p) {
    var byKey = {};
    o.fields.forEach(function (f) { byKey[f.key] = f; });
    return o.tip.replace(/\{(\w+)\}/g, function (m, k) {
      var v = byKey[k] ? tileValue(o, Object.assign({}, byKey[k], {unit: ''}), p) : p[k];
      return v === null || v === undefined ? '' : String(v).trim();
    });
  }
  function tiles(group, map, o) {
    // vector tiles (OGC API - Tiles, MVT) drawn by Leaflet.VectorGrid; popups from properties.
    // o.top: drawn as SVG in a pane above the GeoJSON canvas, where only the painted features
    // catch the pointer (the canvas of the overlay pane would swallow clicks meant for tiles
    // beneath it); else canvas tiles in the tile pane.
    if (!L.vectorGrid) { console.error('pattogis: Leaflet.VectorGrid missing'); return; }
    var s = styler(o)(), skip = {}, st = {};
    (o.skip || []).forEach(function (v) { skip[v] = true; });
    st[o.layer] = function (p) {
      if (o.skipField && skip[p[o.skipField]]) { return []; }   // drawn by the page itself
      var r = o.radiusField ? radius(o, p[o.radiusField]) : 3;
      return Object.assign({}, s, {fill: o.fillOpacity > 0, radius: r});
    };
    var opts = {vectorTileLayerStyles: st, interactive: true, minZoom: o.minZoom, maxNativeZoom: 22,
                rendererFactory: o.top ? L.svg.tile : L.canvas.tile, zIndex: o.zIndex || 1,
                getFeatureId: function (f) { return f.id; }};
    if (o.top) {
      if (!map.getPane('pgTiles')) { map.createPane('pgTiles').style.zIndex = 450; }
      opts.pane = 'pgTiles';
    }
    var vg = L.vectorGrid.protobuf(o.url, opts), tip = null;
    if (o.top) {
      // Leaflet 1.9 places the events of a small circle at its getLatLng(), which VectorGrid's
      // point features lack (a TypeError on every click): give them their position
      vg.on('tileload', function (e) {
        var r = vg._vectorTiles[vg._tileCoordsToKey(e.coords)], size = vg.getTileSize();
        if (!r) { return; }
        Object.keys(r._layers).forEach(function (k) {
          var l = r._layers[k];
          if (l._point && !l._latlng) {
            l._latlng = map.unproject(L.point(e.coords.x * size.x + l._point.x,
                                              e.coords.y * size.y + l._point.y), e.coords.z);
          }
        });
      });
    }
    vg.on('click', function (e) {
      L.DomEvent.stop(e);   // as bindPopup does: the map's identify must not answer this click too
      L.popup({maxWidth: 380}).setLatLng(e.latlng).setContent(tilePopup(o, e.layer.properties || {}))
        .openOn(map);
    });
    if (!o.top) { identifyOn(map, group, o); }
    if (o.tip) {
      vg.on('mouseover', function (e) {
        tip = tip || L.tooltip({sticky: true, direction: 'top'});
        var sp = document.createElement('span'); sp.textContent = tileTip(o, e.layer.properties || {});
        tip.setLatLng(e.latlng).setContent(sp);
        map.openTooltip(tip);
      });
      vg.on('mouseout', function () { if (tip) { map.closeTooltip(tip); } });
    }
    group.addLayer(vg);
    function note() { status(o, map.getZoom() < o.minZoom ? o.zoomText : (map.hasLayer(group) ? o.onText : o.offText)); }
    map.on('zoomend overlayadd overlayremove', note); map.whenReady(note);
  }
  // Identify, as desktop GIS does it: canvas tiles lie in the tile pane, under the canvas of
  // the GeoJSON layers, which takes every click, so their own click never fires. A click on the
  // map that no drawn layer took asks the API for the feature under it instead
  // (/collections/{id}/items?bbox=, a box of IDENTIFY_PX screen pixels around the click, CRS84)
  // and opens the popup the tile feature would show. One handler per map tries the shown
  // canvas-tiled layers in o.identify order (most specific first); the first hit wins. A
  // feature that opens its own popup stops the click (Leaflet's bindPopup does, and so does
  // the tiles' click handler above), so the map hears only the clicks no drawn layer took.
  var IDENTIFY_PX = 3;
  function ringHas(ring, x, y) {
    // even-odd ray crossing, in lon/lat: enough to tell which of a few features holds a click
    var inside = false;
    for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
      if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) { inside = !inside; }
    }
    return inside;
  }
  function covers(g, x, y) {
    if (!g) { return false; }
    function poly(rings) {
      if (!rings.length || !ringHas(rings[0], x, y)) { return false; }
      for (var k = 1; k < rings.length; k++) { if (ringHas(rings[k], x, y)) { return false; } }
      return true;
    }
    if (g.type === 'Polygon') { return poly(g.coordinates); }
    if (g.type === 'MultiPolygon') { return g.coordinates.some(poly); }
    if (g.type === 'GeometryCollection') { return g.geometries.some(function (h) { return covers(h, x, y); }); }
    return false;
  }
  function pick(features, ll) {
    // the feature holding the click, else the first one within the tolerance box
    for (var i = 0; i < features.length; i++) {
      if (covers(features[i].geometry, ll.lng, ll.lat)) { return features[i]; }
    }
    return features[0] || null;
  }
  function itemsUrl(o) { return o.url.replace(/\/tiles\/.*$/, '/items'); }
  function identifyOn(map, group, o) {
    var st = map._pgIdentify;
    if (!st) {
      st = map._pgIdentify = {layers: [], seq: 0};
      map.on('click', function (e) { identify(map, st, e); });
      // a double click zooms: the popup of its first click closes on the second (Leaflet's
      // preclick), and the answers to the second are dropped
      map.on('dblclick', function () { st.seq++; });
    }
    st.layers.push({group: group, o: o});
    st.layers.sort(function (a, b) { return (a.o.identify || 0) - (b.o.identify || 0); });
  }
  function identify(map, st, e) {
    var z = map.getZoom();
    var cands = st.layers.filter(function (c) { return map.hasLayer(c.group) && z >= c.o.minZoom; });
    if (!cands.length) { return; }
    var p = e.containerPoint, d = IDENTIFY_PX, at = e.latlng, my = ++st.seq;
    var sw = map.containerPointToLatLng([p.x - d, p.y + d]), ne = map.containerPointToLatLng([p.x + d, p.y - d]);
    var box = [sw.lng, sw.lat, ne.lng, ne.lat].map(function (v) { return v.toFixed(7); }).join(',');
    function ask(i) {
      if (i >= cands.length || my !== st.seq) { return; }
      var c = cands[i];
      fetch(itemsUrl(c.o) + '?bbox=' + box + '&limit=5', {headers: {Accept: 'application/geo+json'}})
        .then(function (r) { if (!r.ok) { throw new Error('HTTP ' + r.status); } return r.json(); })
        .then(function (fc) {
          if (my !== st.seq) { return; }   // a later click asks now
          var f = pick(fc.features || [], at);
          if (!f) { ask(i + 1); return; }
          L.popup({maxWidth: 380}).setLatLng(at).setContent(tilePopup(c.o, f.properties || {}))
            .openOn(map);
        })
        .catch(function (err) { console.warn('pattogis: identify ' + itemsUrl(c.o) + ': ' + err); });
    }
    ask(0);
  }
  // layers by key and the map, for scripts and tests: pattogis.layers.bus_stops, pattogis.map
  var registry = {};
  function register(key, group, map) { if (key) { registry[key] = group; } window.pattogis.map = map; }
  return {bind: bind, geojson: geojson, points: points, onDemand: onDemand, basemap: basemap,
          tiles: tiles, fmtNum: fmtNum, layers: registry,
          register: register, map: null};
})();
</script>
"""


def compact_json(obj: Any) -> str:
    """JSON without spaces, safe inside a <script> block (no '<', '>', '&' or quote literals)."""
    return (json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("'", "\\u0027").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


class ScriptLayer(folium.map.Layer):
    """A layer (listed in the layer control) filled by one of the ``pattogis.*`` JS helpers.

    ``helper``: 'points' or 'onDemand'; ``payload``: its options (JSON). ``attribution`` is shown
    in the map's attribution box while the layer is on.
    """

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        var {{ this.get_name() }} = L.featureGroup(null, {{ this.options|tojson }});
        window.pattogis.{{ this.helper }}({{ this.get_name() }}, {{ this._parent.get_name() }},
            {{ this.payload_json }});
        window.pattogis.register({{ this.key|tojson }}, {{ this.get_name() }}, {{ this._parent.get_name() }});
        {% endmacro %}
        """
    )

    def __init__(self, helper: str, payload: dict[str, Any], *, name: str, show: bool = False,
                 attribution: str = "", key: str | None = None) -> None:
        if helper not in ("geojson", "points", "onDemand", "basemap", "tiles"):
            raise ValueError(f"unknown helper {helper!r}")
        super().__init__(name=name, overlay=True, control=True, show=show)
        self._name = "ScriptLayer"
        self.helper = helper
        self.key = key
        self.payload = payload
        self.payload_json = compact_json(payload)
        self.options = {"attribution": attribution} if attribution else {}

    def render(self, **kwargs: Any) -> None:
        figure = self.get_root()
        if isinstance(figure, Figure):
            figure.header.add_child(Element(HELPERS), name="pattogis_helpers")
        super().render(**kwargs)
