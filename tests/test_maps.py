"""Web maps: formatting and GeoJSON helpers on hand-made data, the four pages on the real layer
set, the API router through HTTP, and every page in headless Chromium (no console error, a
screenshot in maps/screenshots/).

Hand-made inputs have known answers: a 100 m x 100 m new-urbanisation square outside the TU
consumes exactly 1 ha; a 50 m x 50 m desealing square outside the TU credits 0.25 ha; so the
comune's remaining local quota is 1% of its TU - 1 + 0.25 ha.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from pattogis.errors import InputError, NotFound

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "maps" / "screenshots"
CRS = "EPSG:25832"
COMUNE = "037001"          # Anzola dell'Emilia
UNIONE = "Unione Terre d'Acqua"
MAX_PAGE_BYTES = 2_000_000
# a written page inlines Leaflet, every layer and the offline base map (~150 KB): it opens from
# file:// with no server. Pages served by the API are held to the issue's 300 KB instead.
MAX_FILE_BYTES = 2_300_000
MAX_API_TRANSFER = 300_000

# every data source the overview shows must be credited on the page
OVERVIEW_ATTRIBUTIONS = [
    "ISTAT", "Openpolis", "© OpenStreetMap contributors", "TPER", "Protezione Civile",
    "Comune di Bologna", "SRTM", "NASA/USGS", "TALEA",
]


# --- unit: formatting, classes, GeoJSON ----------------------------------------------------


def test_italian_number_format() -> None:
    from pattogis.maps.base import fmt_eur, fmt_ha, fmt_num, fmt_pct

    assert fmt_num(1234567.891, 2) == "1.234.567,89"
    assert fmt_num(-0.5, 1) == "-0,5"
    assert fmt_num(float("nan")) == "–"
    assert fmt_num(None) == "–"
    assert fmt_ha(2.5) == "2,50 ha"
    assert fmt_eur(229814.47) == "229.814,47 €"
    assert fmt_pct(0.255) == "26%"


def test_quantile_classes_known_breaks() -> None:
    from pattogis.maps.base import YL_OR_RD, quantile_classes

    cls = quantile_classes(np.arange(1, 11), YL_OR_RD, decimals=1)
    # numpy linear quantiles of 1..10 at 0, .2, .4, .6, .8, 1
    assert cls.breaks == [1.0, 2.8, 4.6, 6.4, 8.2, 10.0]
    assert list(cls.color([1, 3, 4.6, 10, np.nan])) == [YL_OR_RD[0], YL_OR_RD[1], YL_OR_RD[2],
                                                       YL_OR_RD[4], "#bdbdbd"]
    assert cls.legend()[0] == (YL_OR_RD[0], "1,0 – 2,8")
    # all values equal: one class, still a valid scale
    one = quantile_classes([3.0, 3.0], YL_OR_RD)
    assert len(one.colors) == 1 and one.color([3.0])[0] == one.colors[0]


def test_to_features_simplifies_reprojects_and_rounds() -> None:
    from pattogis.maps.base import to_features

    # a 1 km square in UTM 32N with a collinear vertex mid-edge that simplification must drop
    x0, y0 = 686000.0, 4930000.0
    ring = [(x0, y0), (x0 + 500, y0), (x0 + 1000, y0), (x0 + 1000, y0 + 1000), (x0, y0 + 1000)]
    g = gpd.GeoDataFrame({"name": ["a<b"], "v": [1.5]}, geometry=[shapely.Polygon(ring)], crs=CRS)
    fc = to_features(g, {"label": "name", "value": "v", "const": 7}, simplify_m=1.0)
    f = fc["features"][0]
    assert f["id"] == 0 and f["properties"] == {"label": "a<b", "value": 1.5, "const": 7}
    coords = f["geometry"]["coordinates"][0]
    assert len(coords) == 5  # 4 corners + closing point: the collinear vertex is gone
    # the first corner, reprojected independently, to 6 decimals
    from pyproj import Transformer

    lon, lat = Transformer.from_crs(CRS, 4326, always_xy=True).transform(x0, y0)
    assert [round(lon, 6), round(lat, 6)] in coords
    text = json.dumps(fc)
    assert not re.search(r"\d\.\d{7,}", text), "coordinates must have at most 6 decimals"
    with pytest.raises(InputError, match="no CRS"):
        to_features(gpd.GeoDataFrame(geometry=[shapely.Point(0, 0)]), {})


def test_compact_json_is_script_safe() -> None:
    from pattogis.maps.js import compact_json

    s = compact_json({"popup": "</script><b>x</b> & 'y'"})
    assert "<" not in s and ">" not in s and "&" not in s and "'" not in s
    assert json.loads(s) == {"popup": "</script><b>x</b> & 'y'"}
    assert " " not in compact_json({"a": [1, 2]})


def test_rank_interval_columns_and_fund_status() -> None:
    from pattogis.maps.pages import _fund_status, _q_of, rank_interval_columns

    assert rank_interval_columns(pd.DataFrame(columns=["rank_p95", "rank_p5", "rank_mean"])) == (
        "rank_p5", "rank_p95")
    assert rank_interval_columns(pd.DataFrame(columns=["rank_p05", "rank_p95"])) == ("rank_p05", "rank_p95")
    assert rank_interval_columns(pd.DataFrame(columns=["rank"])) is None
    assert _q_of("rank_p2_5") == 2.5 and _q_of("rank_p05") == 5 and _q_of("rank_p50") == 50
    assert _fund_status("finanziato") == "finanziato"
    assert _fund_status("parzialmente") == "finanziato_parzialmente"
    assert _fund_status("non finanziato") == "non_finanziato"
    assert _fund_status("Escluso") == "escluso"
    with pytest.raises(InputError, match="unknown project status"):
        _fund_status("forse")


def test_bbox_parsing() -> None:
    from pattogis.maps.data import parse_bbox

    assert parse_bbox("11.3,44.4,11.4,44.5") == (11.3, 44.4, 11.4, 44.5)
    for bad in ("11.3,44.4,11.4", "a,b,c,d", "11.4,44.4,11.3,44.5", "11.3,44.4,11.4,95"):
        with pytest.raises(InputError, match="bbox"):
            parse_bbox(bad)


# --- hand-made inputs on the real layers ---------------------------------------------------


@pytest.fixture(scope="module")
def layers_env(built_layers: Path) -> Path:
    os.environ["PATTOGIS_LAYERS_DIR"] = str(built_layers)
    return built_layers


def _square(pt: shapely.Point, half: float) -> shapely.Polygon:
    return shapely.box(pt.x - half, pt.y - half, pt.x + half, pt.y + half)


@pytest.fixture(scope="module")
def proposals(layers_env: Path) -> gpd.GeoDataFrame:
    """Three proposals in COMUNE with known measures (see the module docstring)."""
    from pattogis import layers

    comune = layers.open_layer("comuni").set_index("istat").geometry[COMUNE]
    tu = layers.open_layer("territorio_urbanizzato").set_index("comune_istat").geometry[COMUNE]
    outside = comune.difference(tu.buffer(300)).buffer(-60)
    a = _square(outside.representative_point(), 50)                      # 1 ha, outside the TU
    d = _square(outside.difference(a.buffer(200)).representative_point(), 25)  # 0.25 ha, outside
    inside = _square(tu.buffer(-60).representative_point(), 25)           # 0.25 ha, inside the TU
    for g in (a, d):
        assert comune.contains(g) and not g.intersects(tu)
    assert tu.contains(inside)
    return gpd.GeoDataFrame({
        "proposal_id": [uuid.uuid4().hex for _ in range(3)], "scenario": "base",
        "comune_istat": COMUNE, "ptype": ["nuova_urbanizzazione", "desigillazione", "rigenerazione"],
        "exemption": [None, None, None], "pool": "locale",
        "title": ["Nuovo comparto <nord>", "Parco fluviale", "Rigenerazione ex consorzio"],
        "date": ["2024-05-01", "2030-01-01", "2025-03-01"],
        "status": ["approvata", "bozza", "presentata"], "owner": f"comune:{COMUNE}",
    }, geometry=[a, d, inside], crs=CRS)


@pytest.fixture(scope="module")
def scored_sites(layers_env: Path) -> gpd.GeoDataFrame:
    """Candidate sites of UNIONE scored by hand: weighted sum of min-max normalised site area
    (max, weight 0.6) and distance to the nearest rail station (min, weight 0.4)."""
    from pattogis import layers

    comuni = layers.open_layer("comuni")
    members = comuni.loc[comuni["unione"] == UNIONE, "istat"]
    s = layers.open_layer("candidates")
    s = s[s["comune_istat"].isin(members)].reset_index(drop=True)
    assert len(s) >= 5
    rail = layers.open_layer("rail_stations")
    near = gpd.sjoin_nearest(s[["geometry"]], rail[["geometry"]], distance_col="d")
    s["rail_distance_m"] = near.groupby(level=0)["d"].min()
    a, d = s["area_ha"], s["rail_distance_m"]
    s["contrib_area_ha"] = 0.6 * (a - a.min()) / (a.max() - a.min())
    s["contrib_rail_distance_m"] = 0.4 * (d.max() - d) / (d.max() - d.min())
    s["score"] = s["contrib_area_ha"] + s["contrib_rail_distance_m"]
    s["excluded"] = False
    s["exclusion_reason"] = ""
    last = s.index[-1]
    s.loc[last, ["score", "contrib_area_ha", "contrib_rail_distance_m"]] = np.nan
    s.loc[last, "excluded"] = True
    s.loc[last, "exclusion_reason"] = "Pendenza media superiore a 20°"
    s["rank"] = s["score"].rank(ascending=False, method="min").astype("Int64")
    s["rank_p5"] = np.maximum(s["rank"].astype(float) - 1, 1)
    s["rank_p95"] = s["rank"].astype(float) + 2
    s["p_top_k"] = np.where(s["excluded"], np.nan, 1.0 / s["rank"].astype(float))
    return s


@pytest.fixture(scope="module")
def fund_result(layers_env: Path) -> gpd.GeoDataFrame:
    from pattogis import layers

    c = layers.open_layer("candidates").iloc[[0, 40, 120, 200]].reset_index(drop=True)
    return gpd.GeoDataFrame({
        "project_id": ["P1", "P2", "P3", "P4"],
        "title": ["Piazza della stazione", "Ex macello", "Corte rurale", "Capannone"],
        "applicant": ["Unione <Test>", "Unione Reno Galliera", "Comune di San Lazzaro di Savena",
                      "Unione Terre di Pianura"],
        "status": ["finanziato", "finanziato_parzialmente", "non_finanziato", "escluso"],
        "requested_eur": [300000.0, 250000.0, 180000.0, 90000.0],
        "granted_eur": [229814.47, 100000.0, 0.0, 0.0],
        "rank": [1, 2, 3, np.nan],
        "reason": ["Finanziato entro il massimale di 229.814,47 €", "Finanziato parzialmente: "
                   "fondi esauriti", "Non finanziato: fondi esauriti",
                   "Escluso: il sito è fuori dal territorio urbanizzato"],
    }, geometry=c.geometry.values, crs=c.crs)


# --- pages on the real layers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def overview_file(layers_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pattogis import maps

    return maps.write_page(maps.overview_map(), "overview", tmp_path_factory.mktemp("maps"))


def _no_cdn(html: str) -> None:
    remote = re.findall(r"<(?:script|link)[^>]+(?:src|href)=\"(https?:[^\"]+)\"", html)
    assert remote == [], f"page loads remote assets: {remote}"


@pytest.mark.realdata
def test_overview_page_labels_attribution_size(overview_file: Path) -> None:
    from pattogis import layers
    from pattogis.maps.base import fmt_ha

    html = overview_file.read_text(encoding="utf-8")
    assert len(html.encode()) < MAX_FILE_BYTES
    _no_cdn(html)
    assert "L.tileLayer" in html and "Sfondo OpenStreetMap (richiede internet)" in html
    for label in ("Legenda", "Indice di fragilità dei comuni (0–1)", "Sistemi territoriali",
                  "Collina e montagna", "Pianura nord", "Territorio urbanizzato (TU) provvisorio",
                  "Poli produttivi", "Stazioni ferroviarie", "Fermate autobus TPER",
                  "Piste ciclabili", "Temperatura superficiale estiva"):
        assert label in html, label
    for src in OVERVIEW_ATTRIBUTIONS:
        assert src in html, src
    # the derived layers carry the badge, in the legend and in the layer control
    assert html.count("pg-badge'>derivato") >= 4
    # legend total of the TU equals the layer's area
    tu_total = layers.open_layer("territorio_urbanizzato")["area_ha"].sum()
    assert f"TU, totale {fmt_ha(tu_total, 0)}" in html
    # the 221k buildings are never in a page
    assert "Aggregato strutturale" not in html


@pytest.mark.realdata
def test_overview_fragility_colours_follow_the_index(overview_file: Path) -> None:
    from pattogis import layers
    from pattogis.maps.base import YL_OR_RD, quantile_classes

    ci = layers.open_layer("comuni_indicators")
    cls = quantile_classes(ci["fragility_index"], YL_OR_RD, decimals=2)
    colors = cls.color(ci["fragility_index"])
    assert colors[ci["fragility_index"].idxmax()] == YL_OR_RD[-1]
    assert colors[ci["fragility_index"].idxmin()] == YL_OR_RD[0]
    # roughly a fifth of the comuni in each class
    counts = pd.Series(colors).value_counts()
    assert counts.max() - counts.min() <= 3
    html = overview_file.read_text(encoding="utf-8")
    # the most fragile comune's feature carries the darkest fill
    top = ci.loc[ci["fragility_index"].idxmax(), "name"].replace("'", "\\u0027")
    feat = re.search(r'"tip":"' + re.escape(top) + r': [^"]*","_fill":"(#[0-9a-f]{6})"', html)
    assert feat is not None and feat.group(1) == YL_OR_RD[-1]


@pytest.mark.realdata
def test_budget_page_shows_ledger_figures(layers_env: Path, proposals: gpd.GeoDataFrame) -> None:
    from pattogis import layers, maps
    from pattogis.maps.base import fmt_ha

    tu_ha = float(layers.open_layer("territorio_urbanizzato").set_index("comune_istat")
                  .loc[COMUNE, "area_ha"])
    html = maps.render(maps.budget_map(proposals, comune=COMUNE))
    _no_cdn(html)
    assert len(html.encode()) < MAX_PAGE_BYTES
    for label in ("Quota locale residua (ha)", "Proposte per tipo", "Nuova urbanizzazione",
                  "Desigillazione", "Rigenerazione urbana", "Consumo di quota", "Dentro il TU",
                  "Fuori dal TU", "Anzola dell&#x27;Emilia", "Superamento della quota"):
        assert label in html, label
    remaining = 0.01 * tu_ha - 1.0 + 0.25
    assert f"{fmt_ha(remaining)}" in html
    assert fmt_ha(0.01 * tu_ha) in html           # local quota
    assert "3 proposte nello scenario «base»" in html
    assert fmt_ha(1.0) in html and fmt_ha(0.25) in html
    # a title with markup is escaped, never injected
    assert "Nuovo comparto \\u0026lt;nord\\u0026gt;" in html
    assert "Nuovo comparto <nord>" not in html
    with pytest.raises(NotFound, match="unknown comune"):
        maps.budget_map(proposals, comune="999999")
    # no comune: all comuni, metropolitan residue in the panel
    html_all = maps.render(maps.budget_map(None))
    assert "Residuo metropolitano" in html_all and "Nessuna proposta" in html_all


@pytest.mark.realdata
def test_scenario_page_maps_the_difference_from_base(layers_env: Path,
                                                      proposals: gpd.GeoDataFrame) -> None:
    """Scenario 'alt' drops the 1 ha new urbanisation of the base: its remaining local quota in
    COMUNE is exactly 1 ha more than the base's, and every other comune's is unchanged."""
    from pattogis.maps import pages
    from pattogis.maps.base import render

    alt = proposals[proposals["ptype"] != "nuova_urbanizzazione"].assign(scenario="alt")
    both = pd.concat([proposals, alt], ignore_index=True)
    m = pages.budget_map(alt, scenario="alt", base_proposals=proposals)
    layer = next(ch for ch in m._children.values() if getattr(ch, "key", None) == "scenario_diff")
    feats = layer.payload["data"]["features"]
    assert len(feats) == 55
    deltas = {f["properties"]["tip"].rsplit(": ", 1)[0]: f["properties"]["tip"].rsplit(": ", 1)[1]
              for f in feats}
    assert deltas["Anzola dell&#x27;Emilia"] == "1,00 ha"
    assert {v for k, v in deltas.items() if k != "Anzola dell&#x27;Emilia"} == {"0,00 ha"}
    assert "Differenza (scenario − base)" in feats[0]["properties"]["popup"]
    # the same from one table holding both scenarios
    m2 = pages.budget_map(both, scenario="alt")
    assert "Quota locale residua: «alt» − base (ha)" in render(m2)
    assert "scenario_diff" not in render(pages.budget_map(proposals, scenario="base"))


@pytest.mark.realdata
def test_sites_page_contributions_and_rank_interval(scored_sites: gpd.GeoDataFrame) -> None:
    from pattogis import maps
    from pattogis.maps.base import fmt_num

    labels = {"area_ha": "Superficie del sito", "rail_distance_m": "Distanza dalla stazione"}
    html = maps.render(maps.sites_map(scored_sites, unione=UNIONE, labels=labels, top_k=3))
    _no_cdn(html)
    best = scored_sites.loc[scored_sites["score"].idxmax()]
    n_ok = int((~scored_sites["excluded"]).sum())
    for text in ("Contributo dei criteri", "Superficie del sito", "Distanza dalla stazione",
                 "Intervallo di posizione (p5–p95)", f"<b>{fmt_num(best['score'], 3)}</b>",
                 f"1ª su {n_ok}", "1ª – 3ª", fmt_num(best["contrib_area_ha"], 3),
                 "Probabilità di stare fra i primi 3", "Punteggio del sito (0–1)", "escluso",
                 "Pendenza media superiore a 20°", "Primi 3 in graduatoria", UNIONE):
        assert text.replace("<", "\\u003c").replace(">", "\\u003e") in html or text in html, text
    with pytest.raises(InputError, match="contrib_"):
        maps.sites_map(scored_sites.drop(columns=["contrib_area_ha", "contrib_rail_distance_m"]))
    with pytest.raises(NotFound, match="unknown Unione"):
        maps.sites_map(scored_sites, unione="Unione che non esiste")


@pytest.mark.realdata
def test_fund_page_statuses_amounts_reasons(fund_result: gpd.GeoDataFrame) -> None:
    from pattogis import maps

    html = maps.render(maps.fund_map(fund_result, call_name="bando_2023", budget_eur=2298144.71))
    _no_cdn(html)
    for text in ("Finanziato: 1 progetto", "Finanziato parzialmente: 1 progetto",
                 "Non finanziato: 1 progetto", "Escluso: 1 progetto", "329.814,47 €",
                 "2.298.144,71 €", "1.968.330,24 €", "Importo assegnato", "Motivazione",
                 "Escluso: il sito è fuori dal territorio urbanizzato", "Unione Reno Galliera"):
        assert text in html, text
    assert "Unione \\u0026lt;Test\\u0026gt;" in html
    with pytest.raises(InputError, match="granted_eur"):
        maps.fund_map(fund_result.drop(columns=["granted_eur"]))


@pytest.mark.realdata
def test_layer_features_bbox_and_limits(layers_env: Path) -> None:
    from pattogis import layers
    from pattogis.maps import layer_features

    bbox = (11.330, 44.490, 11.350, 44.500)
    fc = layer_features("bus_stops", bbox)
    stops = layers.open_layer("bus_stops").to_crs(4326)
    inside = stops.cx[bbox[0]:bbox[2], bbox[1]:bbox[3]]
    assert len(fc["features"]) == len(inside) > 0 and fc["truncated"] is False
    assert {f["properties"]["value"] for f in fc["features"]} <= set(inside["n_lines"].astype(float))
    capped = layer_features("bus_stops", bbox, limit=3)
    assert len(capped["features"]) == 3 and capped["truncated"] is True
    with pytest.raises(InputError, match="km²"):
        layer_features("buildings", (10.8, 44.0, 11.8, 44.8))
    with pytest.raises(NotFound):
        layer_features("comuni", bbox)


@pytest.mark.realdata
def test_write_pages_atomic_files(layers_env: Path, proposals: gpd.GeoDataFrame,
                                  fund_result: gpd.GeoDataFrame, tmp_path: Path) -> None:
    from pattogis import maps

    out = maps.write_pages(tmp_path, proposals=proposals, comune=COMUNE, fund=fund_result)
    assert set(out) == {"overview", f"budget_{COMUNE}", "fund"}
    for p in out.values():
        assert p.exists() and p.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted(p.name for p in out.values())
    with pytest.raises(InputError, match="invalid page name"):
        maps.write_page("<html></html>", "../escape", tmp_path)


# --- the API router -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(layers_env: Path, proposals: gpd.GeoDataFrame, scored_sites: gpd.GeoDataFrame,
        fund_result: gpd.GeoDataFrame):
    from fastapi import FastAPI

    from api.maps import maps_router

    def sites(unione: str) -> gpd.GeoDataFrame:
        if unione != UNIONE:
            raise NotFound(f"no scored sites for '{unione}'")
        return scored_sites

    from api.features import StoredPagesMiddleware, features_router
    from api.tiles import tiles_router
    from pattogis.collections import CollectionRegistry

    a = FastAPI()
    a.include_router(maps_router(proposals=lambda scenario: proposals[proposals["scenario"] == scenario],
                                 sites=sites, fund=lambda call: fund_result))
    # the pages draw buildings and TU from the vector tiles of the same server, and identify
    # them by its items (answered from the feature store, as in the app)
    registry = CollectionRegistry(gpkg=layers_env / "bologna.gpkg")
    a.include_router(tiles_router(registry))
    a.include_router(features_router(registry))
    a.add_middleware(StoredPagesMiddleware, registry=registry)
    return a


@pytest.mark.realdata
def test_api_pages_and_transfer_size(app) -> None:
    from fastapi.testclient import TestClient

    c = TestClient(app)
    r = c.get("/maps/overview", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
    transferred = int(r.headers["content-length"])
    assert transferred < MAX_API_TRANSFER
    html = r.text
    assert len(html.encode()) < MAX_PAGE_BYTES  # even uncompressed
    assert transferred < len(html.encode()) / 2
    _no_cdn(html)
    assert '"/maps/static/leaflet/leaflet.js"' in html
    # bus stops and candidate sites from the vector tiles, not as GeoJSON (issue 15)
    assert "/collections/bus_stops/tiles/WebMercatorQuad/{z}/{y}/{x}" in html
    assert "/collections/candidates/tiles/WebMercatorQuad/{z}/{y}/{x}" in html
    assert "/maps/data/bus_stops" not in html and "/collections/bus_stops/items" not in html
    assert "Fermate autobus TPER" in html and "su richiesta" in html  # cycle paths still are
    plain = c.get("/maps/overview", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text == html
    assert c.get("/maps/budget", params={"comune": COMUNE}).status_code == 200
    assert c.get("/maps/budget", params={"comune": "999999"}).status_code == 404
    assert c.get("/maps/budget", params={"comune": "abc"}).status_code == 422
    assert c.get("/maps/sites", params={"unione": UNIONE}).status_code == 200
    assert c.get("/maps/sites", params={"unione": "Altro"}).status_code == 404
    assert c.get("/maps/fund").status_code == 200
    idx = c.get("/maps/")
    assert idx.status_code == 200 and "Mappe della Città metropolitana di Bologna" in idx.text
    # the comune and Unione pickers: every comune by ISTAT code, the Unioni by name
    assert len(re.findall(r'<option value="037\d{3}">', idx.text)) == 55
    assert '<option value="037001">Anzola dell&#x27;Emilia</option>' in idx.text
    assert 'action="/maps/sites"' in idx.text and "Unione Terre d&#x27;Acqua" in idx.text
    js = c.get("/maps/static/leaflet/leaflet.js")
    assert js.status_code == 200 and "Leaflet 1.9.4" in js.text
    assert c.get("/maps/static/leaflet/images/layers.png").headers["content-type"] == "image/png"
    assert c.get("/maps/static/../../pyproject.toml").status_code == 404
    d = c.get("/maps/data/bus_stops", params={"bbox": "11.33,44.49,11.35,44.50"})
    assert d.status_code == 200 and d.json()["type"] == "FeatureCollection"
    assert c.get("/maps/data/buildings", params={"bbox": "10.8,44.0,11.8,44.8"}).status_code == 422
    assert c.get("/maps/data/comuni", params={"bbox": "11.33,44.49,11.35,44.50"}).status_code == 404


@pytest.mark.realdata
def test_tiles_carry_what_the_tiled_popups_show(app) -> None:
    """Every property a tiled layer's popup, title, hover text or radius reads is in its tiles
    (a popup row would silently vanish otherwise), and nothing else is asked of them."""
    import mapbox_vector_tile
    import morecantile
    from fastapi.testclient import TestClient

    from pattogis import layers
    from pattogis.maps.pages import TILED

    c = TestClient(app)
    for layer, spec in TILED.items():
        g = layers.open_layer(layer).to_crs(4326)
        pt = g.geometry.iloc[0].representative_point()
        z = max(int(spec["min_zoom"]), 15)
        t = morecantile.tms.get("WebMercatorQuad").tile(pt.x, pt.y, z)
        r = c.get(f"/collections/{layer}/tiles/WebMercatorQuad/{z}/{t.y}/{t.x}")
        assert r.status_code == 200, r.text
        feats = mapbox_vector_tile.decode(r.content)[layer]["features"]
        assert feats, layer
        keys = set().union(*(f["properties"] for f in feats))
        wanted = {f["key"] for f in spec["fields"]} | {spec.get(k) for k in ("title_field",
                                                                           "radius_field")}
        wanted |= set(re.findall(r"\{(\w+)\}", spec.get("tip", "")))
        wanted.discard(None)
        assert wanted <= keys, (layer, wanted - keys)


@pytest.mark.realdata
def test_sites_page_draws_other_candidates_and_stops_from_tiles(app, scored_sites) -> None:
    from fastapi.testclient import TestClient

    from pattogis.maps import pages, render

    html = TestClient(app).get("/maps/sites", params={"unione": UNIONE}).text
    assert "/collections/candidates/tiles/WebMercatorQuad/" in html
    assert "/collections/bus_stops/tiles/WebMercatorQuad/" in html
    assert "Altri siti candidati della Città metropolitana" in html
    # the Unione's own sites stay in the page (its list and comparison) and are left out of
    # the tiles' drawing
    m = re.search(r'"skipField":"site_id","skip":(\[[^\]]*\])', html)
    assert m and set(json.loads(m.group(1))) == set(scored_sites["site_id"].astype(str))
    assert '"sites":[{"id":' in html
    # a written file has no API: no tiles
    static = render(pages.sites_map(scored_sites, unione=UNIONE))
    assert "/tiles/WebMercatorQuad/" not in static and "id='pg-tools-toggle'" in static


def test_api_without_providers_says_so(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from api.maps import maps_router

    a = FastAPI()
    a.include_router(maps_router())
    c = TestClient(a)
    r = c.get("/maps/sites", params={"unione": UNIONE})
    assert r.status_code == 503 and "not configured" in r.json()["detail"]
    assert c.get("/maps/fund").status_code == 503


# --- headless Chromium ----------------------------------------------------------------------


POPUP_TEXT = "document.querySelector('.leaflet-popup-content') ? " \
             "document.querySelector('.leaflet-popup-content').innerText : ''"


def _open_first_popup(key: str) -> str:
    return f"pattogis.layers.{key}.getLayers()[0].openPopup()"


@pytest.mark.browser
@pytest.mark.realdata
def test_browser_overview_file(chromium: str, overview_file: Path) -> None:
    from browser import Click, check_page

    # a real click in the middle of the map: a GeoJSON feature's popup, and no identify (no
    # tiles, no API behind a written file)
    centre = ("(function () { var r = pattogis.map.getContainer().getBoundingClientRect(); "
              "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
    rep = check_page(overview_file.as_uri(), SHOTS / "overview.png",
                     actions=[Click(centre), f"window.pgClicked = {POPUP_TEXT}",
                              _open_first_popup("fragility")],
                     evaluate=[POPUP_TEXT, "pattogis.layers.tu.getLayers().length",
                               "document.querySelectorAll('.leaflet-control-layers-overlays label').length",
                               "document.querySelector('.leaflet-control-attribution').textContent",
                               "[window.pgClicked, pattogis.map._pgIdentify === undefined]"])
    assert rep.errors == []
    assert all(u.startswith(("file:", "data:")) for u in rep.requests), rep.requests
    popup, n_tu, n_overlays, attribution, (clicked, no_identify) = rep.values
    assert clicked and no_identify
    assert "Indice di fragilità (0–1)" in popup and "Sistema territoriale" in popup
    assert n_tu > 0 and n_overlays >= 9
    assert "Openpolis" in attribution and "Protezione Civile" in attribution
    assert rep.screenshot is not None and rep.screenshot.stat().st_size > 20_000


@pytest.mark.browser
@pytest.mark.realdata
def test_browser_overview_api_draws_stops_and_sites_from_tiles(chromium: str, server: str) -> None:
    """Bus stops and candidate sites come as vector tiles (never as GeoJSON), every stop in view
    is drawn, and a click on a stop or a site opens its Italian popup; cycle paths still load
    by bbox."""
    from browser import check_page, click_tile_feature_js, tile_features_js

    from pattogis import layers
    from pattogis.maps import layer_features

    bbox_js = ("(function(){var b=pattogis.map.getBounds();return [b.getWest(),b.getSouth(),"
               "b.getEast(),b.getNorth()].map(function(v){return v.toFixed(6)}).join(',')})()")
    margin = (90, 480, 60, 340)  # clear of the title, layer list, legend and scale
    rep = check_page(
        f"{server}/maps/overview", SHOTS / "overview_api_bologna.png", settle_s=2.0,
        actions=["pattogis.map.setView([44.5057, 11.3433], 15, {animate: false})",
                 "pattogis.map.addLayer(pattogis.layers.cycleways)",
                 click_tile_feature_js("bus_stops", margin),
                 "window.pgStop = [window.pgTileClick, document.querySelector("
                 "'.leaflet-popup-content').innerText]; window.pgBbox = " + bbox_js
                 + "; window.pgDrawn = " + tile_features_js("bus_stops"),
                 click_tile_feature_js("bus_stops", margin, ("mouseover", "mousemove")),
                 "window.pgHover = [window.pgTileClick, Array.from(document.querySelectorAll("
                 "'.leaflet-tooltip')).map(function (t) { return t.textContent; })]",
                 # every candidate site, switched on from the layer list, near Bologna's
                 # Bolognina (sites of Bologna from OSM)
                 "pattogis.map.closePopup(); pattogis.map.addLayer(pattogis.layers.candidates);"
                 "pattogis.map.setView([44.515, 11.36], 14, {animate: false})",
                 click_tile_feature_js("candidates", margin)],
        evaluate=["window.pgHover", "window.pgBbox", "window.pgDrawn",
                  "pattogis.layers.cycleways.getLayers().length", bbox_js,
                  "document.getElementById('pg-od-bus_stops').textContent", "window.pgStop",
                  "window.pgTileClick",
                  "document.querySelector('.leaflet-popup-content') ? "
                  "document.querySelector('.leaflet-popup-content').innerText : ''"])
    assert rep.errors == []
    assert not [u for u in rep.requests if not u.startswith((server, "data:"))], rep.requests
    ((hovered, tips), bbox_first, drawn, n_cyc, bbox_last, note, (stop, stop_popup), site,
     site_popup) = rep.values
    assert f"{hovered['name']} ({hovered['n_lines']} linee)" in tips  # the hover text
    # never as GeoJSON: no feature pages, no bbox queries for them; their tiles instead
    assert not [u for u in rep.requests if "/collections/bus_stops/items" in u
                or "/maps/data/bus_stops" in u or "/collections/candidates/items" in u]
    assert any("/collections/bus_stops/tiles/WebMercatorQuad/15/" in u for u in rep.requests)
    assert any("/collections/candidates/tiles/WebMercatorQuad/14/" in u for u in rep.requests)
    # every stop in the first view (zoom 15) is drawn
    w, s_, e, n = map(float, bbox_first.split(","))
    stops = layers.open_layer("bus_stops").to_crs(4326)
    inner = stops.cx[w + 1e-4:e - 1e-4, s_ + 1e-4:n - 1e-4]
    drawn_codes = {str(p["stop_code"]) for p in drawn}
    assert len(inner) > 20 and set(inner["stop_code"].astype(str)) <= drawn_codes
    assert note == "tasselli vettoriali dall'API"
    assert n_cyc == len(layer_features("cycleways", bbox_last)["features"]) > 0
    # the popups, in Italian, with the feature's own values
    assert isinstance(stop, dict), stop
    assert stop_popup.startswith(stop["name"]) and "Comune\t" + stop["comune_name"] in stop_popup
    assert f"Codice fermata\t{stop['stop_code']}" in stop_popup
    assert f"Linee TPER servite\t{stop['n_lines']}" in stop_popup
    assert isinstance(site, dict), site
    names = layers.open_layer("comuni").set_index("istat")["name"]
    assert site_popup.startswith(site["name"]) and f"Codice sito\t{site['site_id']}" in site_popup
    assert f"Comune\t{names[site['comune_istat']]}" in site_popup  # the name, not the code
    assert "Superficie\t" in site_popup and site_popup.rstrip().split("\n")[-2].endswith(" ha")


IMOLA = "037032"


def _identify_spots() -> dict[str, Any]:
    """Places around Imola's station for the identify clicks, as (lon, lat) with what their
    popups must say: a building of the TU whose area, as the popup writes it, no other building
    within 1.5 km has; a point of the TU 25 m from any building; a point of the comune 25 m from
    any building and from the TU; the station; a bus stop of the TU. All clear (40 m) of the
    other stops and stations and (15 m) of the productive hubs' outlines, which take clicks."""
    from pyproj import Transformer

    from pattogis import layers
    from pattogis.maps.base import fmt_num

    rail = layers.open_layer("rail_stations")
    station = rail[(rail["name"] == "Imola") & (rail["comune_istat"] == IMOLA)].iloc[0]
    x, y = station.geometry.x, station.geometry.y
    win = (x - 1500, y - 1500, x + 1500, y + 1500)
    box = shapely.box(*win)
    b = layers.open_layer("buildings", bbox=win)
    tu_all = layers.open_layer("territorio_urbanizzato", bbox=win)
    tu_row = tu_all[tu_all["comune_istat"] == IMOLA].iloc[0]
    tu = tu_row.geometry
    stops = layers.open_layer("bus_stops", bbox=win)
    hubs = layers.open_layer("productive_hubs", bbox=win)
    comune = layers.open_layer("comuni").set_index("istat").geometry[IMOLA]
    points = pd.concat([stops.geometry, layers.open_layer("rail_stations", bbox=win).geometry])
    clutter = shapely.union_all([points.buffer(40).union_all(), hubs.boundary.buffer(15).union_all()])
    near_buildings = b.buffer(25).union_all()

    label = pd.Series([fmt_num(a, 0) for a in b["area_m2"]], index=b.index)
    rp = b.geometry.representative_point()
    ok = (~label.duplicated(keep=False) & rp.within(tu) & ~rp.intersects(clutter)
          & b["area_m2"].between(300, 3000))
    bld = b[ok].iloc[0]

    def inner(region: shapely.Geometry) -> shapely.Point:
        parts = shapely.get_parts(region)
        return max(parts, key=lambda g: g.area).representative_point()

    tu_pt = inner(tu.intersection(box).difference(near_buildings).difference(clutter))
    empty_pt = inner(comune.intersection(box).difference(tu.buffer(25)).difference(near_buildings)
                     .difference(clutter))
    crowd = stops.geometry.apply(lambda g: int((stops.distance(g) < 40).sum()))
    far = stops[(crowd == 1) & stops.within(tu) & (stops.distance(station.geometry) > 60)]
    stop = far.iloc[0]
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform
    return {
        "building": (to_ll(*rp[bld.name].coords[0]), bld), "tu": (to_ll(*tu_pt.coords[0]), tu_row),
        "empty": (to_ll(*empty_pt.coords[0]), None),
        "station": (to_ll(x, y), station), "stop": (to_ll(*stop.geometry.coords[0]), stop),
    }


def _at(lonlat: tuple[float, float]) -> str:
    """JS: the viewport point of ``lonlat`` on the page's map (for a real click)."""
    lon, lat = lonlat
    return (f"(function () {{ var q = pattogis.map.latLngToContainerPoint([{lat!r}, {lon!r}]), "
            "r = pattogis.map.getContainer().getBoundingClientRect(); "
            "return [r.left + q.x, r.top + q.y]; })()")


@pytest.mark.browser
@pytest.mark.realdata
def test_browser_overview_identify_buildings_and_tu(chromium: str, server: str) -> None:
    """Buildings and TU are canvas tiles under the GeoJSON canvas, which takes every click: a
    real mouse click that no drawn layer took asks the API's items under it (buildings first,
    then TU) and opens the feature's Italian popup; a click on a GeoJSON feature or a tiled bus
    stop opens that feature's popup and asks nothing; an empty place opens nothing."""
    from browser import Click, check_page

    from pattogis.maps.base import fmt_num

    spots = _identify_spots()
    (b_ll, bld), (tu_ll, tu), (empty_ll, _), (st_ll, station), (stop_ll, stop) = (
        spots[k] for k in ("building", "tu", "empty", "station", "stop"))

    def view(lonlat: tuple[float, float], zoom: int, extra: str = "") -> str:
        return (f"pattogis.map.closePopup(); {extra} pattogis.map.setView([{lonlat[1]!r}, "
                f"{lonlat[0]!r}], {zoom}, {{animate: false}})")

    log = ("window.pgLog.push([document.querySelector('.leaflet-popup-content') ? document."
           "querySelector('.leaflet-popup-content').innerText : '', window.pgItems.splice(0)])")
    # the items the page asks for, as the page's own fetch sees them; pgFail: the server
    # answers 503; pgSlow: the next answer comes so many ms late
    spy = ("window.pgLog = []; window.pgItems = []; window.pgFail = false; window.pgSlow = 0; "
           "var f0 = window.fetch; window.fetch = function (u) { var a = arguments, t = this; "
           "if (String(u).indexOf('/items') < 0) { return f0.apply(t, a); } "
           "window.pgItems.push(String(u)); "
           "if (window.pgFail) { return Promise.resolve(new Response('', {status: 503})); } "
           "var w = window.pgSlow; window.pgSlow = 0; return new Promise(function (ok) { "
           "setTimeout(ok, w); }).then(function () { return f0.apply(t, a); }); };")
    # two clicks in a row, the first answered late: the second's popup stays
    race = ("(function () { var m = pattogis.map; m.closePopup(); window.pgFail = false; "
            "window.pgSlow = 700; "
            f"[[{b_ll[1]!r}, {b_ll[0]!r}], [{tu_ll[1]!r}, {tu_ll[0]!r}]].forEach(function (ll) {{ "
            "m.fire('click', {latlng: L.latLng(ll), containerPoint: m.latLngToContainerPoint(ll), "
            "originalEvent: {}}); }); })()")
    steps = [(view(b_ll, 17, "pattogis.map.addLayer(pattogis.layers.buildings);"), b_ll),
             (view(b_ll, 13), b_ll),
             (view(tu_ll, 17, "pattogis.map.removeLayer(pattogis.layers.fragility);"), tu_ll),
             (view(empty_ll, 17), empty_ll), (view(b_ll, 13), b_ll), (view(st_ll, 17), st_ll),
             (view(stop_ll, 17), stop_ll), (view(b_ll, 17, "window.pgFail = true;"), b_ll),
             (view(b_ll, 17, "window.pgFail = false;"), b_ll)]
    actions: list[Any] = [spy]
    for js, ll in steps:
        actions += [js, Click(_at(ll)), log]
    # before the last click (its popup is the screenshot's): two clicks in a row, the first
    # answered late; double clicks on the building at zoom 15 and 16, the first faster than
    # the answers, the second as a hand makes it (after the first click's popup opened): each
    # zooms in and leaves no popup
    actions[-3:-3] = [race, log, view(b_ll, 15), Click(_at(b_ll), count=2), log,
                      Click(_at(b_ll), count=2, interval_s=0.2),
                      "window.pgZoom = pattogis.map.getZoom(); " + log]
    rep = check_page(f"{server}/maps/overview", SHOTS / "overview_identify_building.png",
                     settle_s=1.5, actions=actions, evaluate=["window.pgLog", "window.pgZoom"])
    assert rep.errors == []
    assert not [u for u in rep.requests if not u.startswith((server, "data:"))], rep.requests
    (over, over_items), (filled, filled_items), (tu_pop, tu_items), (empty, empty_items), \
        (far, far_items), \
        (st_pop, st_items), (stop_pop, stop_items), (failed, failed_items), \
        (raced, raced_items), (dbl, dbl_items), (dbl2, dbl2_items), (b_pop, b_items) = \
        rep.values[0]
    # asked of the page's own server (root-relative URLs; all requests went to the server)
    items = {k: f"/collections/{k}/items?bbox=" for k in ("buildings", "territorio_urbanizzato")}

    # the building: its own popup, from the buildings' items only (the TU beneath not asked)
    assert b_pop.startswith("Edifici (aggregati strutturali DPC)")
    assert f"Aggregato strutturale\t{bld['idag']}" in b_pop and "Comune\tImola" in b_pop
    assert f"Superficie\t{fmt_num(bld['area_m2'], 0)} m²" in b_pop
    assert len(b_items) == 1 and b_items[0].startswith(items["buildings"])
    assert b_items[0].endswith("&limit=5")
    # the box: 3 screen pixels each side of the click (zoom 17: 256 * 2^17 px round the Earth)
    w, s_, e, n = map(float, b_items[0].split("bbox=")[1].split("&")[0].split(","))
    assert e - w == pytest.approx(6 * 360 / (256 * 2 ** 17), rel=0.02)
    assert w < b_ll[0] < e and s_ < b_ll[1] < n
    # the same building under the fragility choropleth: at street zoom the choropleth is drawn
    # as outlines, so the click reaches the building; below it, filled, it takes the click
    assert over.startswith("Edifici (aggregati strutturali DPC)")
    assert f"Aggregato strutturale\t{bld['idag']}" in over and len(over_items) == 1
    assert filled.startswith("Imola") and "Indice di fragilità (0–1)" in filled
    assert "Aggregato strutturale" not in filled and filled_items == []
    # the TU away from buildings: buildings asked first (nothing), then the TU
    assert tu_pop.startswith("Territorio urbanizzato\nComune\tImola")
    assert f"Superficie\t{fmt_num(tu['area_ha'], 1)} ha" in tu_pop
    assert "Perimetro\tderivato (art. 32 LR 24/2017)" in tu_pop or tu["source"] == "official"
    assert [u.split("?")[0] for u in tu_items] == [items["buildings"].split("?")[0],
                                                   items["territorio_urbanizzato"].split("?")[0]]
    # nothing there: both asked, no popup
    assert empty == "" and len(empty_items) == 2
    # zoom 13: buildings are not drawn, so not asked; the TU answers
    assert far.startswith("Territorio urbanizzato") and len(far_items) == 1
    assert far_items[0].startswith(items["territorio_urbanizzato"])
    # a GeoJSON point and a tiled (SVG) bus stop keep their own popups and ask nothing
    assert st_pop.startswith(f"Stazione {station['name']}") and st_items == []
    assert stop_pop.startswith(str(stop["name"])) and stop_items == []
    assert f"Codice fermata\t{stop['stop_code']}" in stop_pop
    # the server fails: a warning (not an error), no popup
    assert failed == "" and len(failed_items) == 1
    assert [w for w in rep.warnings if "pattogis: identify" in w] == [
        "pattogis: identify /collections/buildings/items: Error: HTTP 503"]
    # a late answer to an older click does not replace the newer click's popup
    assert raced.startswith("Territorio urbanizzato") and len(raced_items) == 3
    # a double click zooms in and leaves no popup, whatever its clicks asked
    assert rep.values[1] == 17 and dbl == "" and dbl2 == "", (rep.values[1], dbl, dbl2)
    assert len(dbl2_items) >= 2 and dbl2_items[0].startswith(items["buildings"])


@pytest.mark.browser
@pytest.mark.realdata
@pytest.mark.parametrize("page,key,expect", [
    (f"/maps/budget?comune={COMUNE}", "budget", "Quota locale residua"),
    (f"/maps/sites?unione={UNIONE}", "sites", "Contributo dei criteri"),
    ("/maps/fund", "fund_finanziato", "Importo assegnato"),
])
def test_browser_pages_via_api(chromium: str, server: str, page: str, key: str, expect: str) -> None:
    from browser import check_page

    name = page.split("?")[0].rsplit("/", 1)[-1]
    rep = check_page(f"{server}{page}", SHOTS / f"{name}.png",
                     actions=[_open_first_popup(key)], evaluate=[POPUP_TEXT])
    assert rep.errors == []
    assert expect in rep.values[0]
    assert rep.screenshot is not None and rep.screenshot.stat().st_size > 20_000


def test_hillshade_known_answers() -> None:
    """Sun from the north-west 45 degrees up: flat ground gets sin 45 deg; a 45 deg slope facing
    the sun (west or north) (1/2 + sqrt(2)/2)/sqrt(2) = 0.8536, one facing away 0.1464."""
    from pattogis.maps.basemap import hillshade

    cell = 10.0
    rows, cols = np.mgrid[0:20, 0:20] * cell  # row index grows southward (north-up raster)
    flat = hillshade(np.zeros((20, 20)), cell)
    np.testing.assert_allclose(flat, np.sin(np.radians(45)), atol=1e-12)
    lit, dark = (0.5 + np.sqrt(0.5)) / np.sqrt(2), (-0.5 + np.sqrt(0.5)) / np.sqrt(2)
    np.testing.assert_allclose(hillshade(cols, cell), lit, atol=1e-12)    # rises east: faces west
    np.testing.assert_allclose(hillshade(-cols, cell), dark, atol=1e-12)  # faces east
    np.testing.assert_allclose(hillshade(rows, cell), lit, atol=1e-12)    # rises south: faces north
    np.testing.assert_allclose(hillshade(-rows, cell), dark, atol=1e-12)  # faces south


@pytest.mark.realdata
def test_basemap_is_our_layers_inside_the_province(layers_env: Path) -> None:
    from pattogis import layers
    from pattogis.maps import basemap

    bm = basemap.build()
    assert bm is not None and bm.hillshade_png.startswith(b"\x89PNG")
    # the lines are simplified after clipping (by up to 50 m): a margin of ~65 m; a national
    # railway drawn unclipped would stick out by kilometres
    province = layers.open_layer("comuni").to_crs(4326).union_all().buffer(8e-4)
    for fc in (bm.rail, bm.roads, bm.comuni):
        geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in fc["features"]])
        assert shapely.within(geoms, province).all()  # nothing outside drawn as the province's
    names = {f["properties"]["label"] for f in bm.comuni["features"]
             if f["geometry"]["type"] == "Point"}
    assert len(names) == 55 and "Bologna" in names
    assert "OpenStreetMap" in bm.attribution and "SRTM" in bm.attribution


@pytest.mark.realdata
def test_basemap_rail_from_the_built_layer_not_the_raw_kit(layers_env: Path, monkeypatch) -> None:
    from pattogis import layers
    from pattogis.maps import basemap

    # the layer: clipped to the province, metric CRS, statuses in Italian, attributed to OSM
    rl = layers.open_layer("rail_lines")
    assert rl.crs.to_epsg() == 25832 and (rl.geom_type == "LineString").all()
    assert set(rl["status"]) <= {"in esercizio", "in costruzione", "in progetto"}
    np.testing.assert_allclose(rl["length_m"], rl.geometry.length, rtol=1e-9)
    province = layers.open_layer("comuni").union_all()
    assert rl.within(province.buffer(1.0)).all()
    # SOURCES.md of the kit: about 730 km of the national file lie inside the province
    assert 700_000 < rl["length_m"].sum() < 760_000
    cat = layers.catalog().set_index("name")
    assert "© OpenStreetMap contributors (ODbL)" in cat.loc["rail_lines", "attribution"]
    assert cat.loc["rail_lines", "licence"] == "ODbL"
    # the page-time base map reads it through pattogis.layers: no raw kit needed, no upward import
    monkeypatch.setenv("PATTOGIS_RAW", "/nonexistent/raw")
    src = Path(basemap.__file__).read_text()
    assert "pattogis.data" not in src and "resolve_raw" not in src
    bm = basemap.build()
    assert bm is not None and bm.rail is not None
    drawn = shapely.from_geojson([json.dumps(f["geometry"]) for f in bm.rail["features"]])
    in_service = rl[rl["status"] == "in esercizio"].to_crs(4326)
    # every line in service is drawn (within the 30 m simplification, ~4e-4 degrees)
    assert shapely.union_all(drawn).buffer(4e-4).contains(in_service.union_all())
    assert "OpenStreetMap" in bm.attribution


@pytest.mark.browser
@pytest.mark.realdata
def test_browser_overview_basemap_and_vector_tiles(chromium: str, server: str) -> None:
    from browser import check_page

    # a built-up spot of Imola (comune 037032), where the buildings layer has features
    rep = check_page(
        f"{server}/maps/overview", SHOTS / "overview_tiles_imola.png", settle_s=2.5,
        actions=["pattogis.map.setView([44.301, 11.645], 16, {animate: false})",
                 "pattogis.map.addLayer(pattogis.layers.buildings)"],
        evaluate=["document.documentElement.lang",
                  "document.querySelector('.leaflet-control-scale').innerText",
                  "Object.values(pattogis.layers.buildings.getLayers()[0]._vectorTiles)"
                  ".reduce(function(a,t){return a+Object.keys(t._features||{}).length},0)",
                  "pattogis.layers.basemap.getLayers().length"])
    assert rep.errors == []
    assert not [u for u in rep.requests if not u.startswith((server, "data:"))], rep.requests
    lang, scale, n_buildings, n_base = rep.values
    assert lang == "it" and scale.strip().endswith("m") and "ft" not in scale and "mi" not in scale
    assert n_buildings > 100 and n_base > 50
    assert any("/collections/buildings/tiles/WebMercatorQuad/16/" in u for u in rep.requests)
    assert any("/collections/territorio_urbanizzato/tiles/" in u for u in rep.requests)


def test_gzip_roundtrip_of_helper() -> None:
    from starlette.requests import Request

    from api.maps import _html

    req = Request({"type": "http", "headers": [(b"accept-encoding", b"gzip, br")]})
    r = _html(req, "<p>città</p>")
    assert r.headers["content-encoding"] == "gzip"
    assert gzip.decompress(r.body).decode() == "<p>città</p>"


def test_criterion_labels_fall_back_to_the_registry_in_italian() -> None:
    from pattogis.maps.pages import _criterion_labels

    plain = pd.DataFrame({"contrib_area_ha": [0.1], "contrib_rail_distance_m": [0.2]})
    lab = _criterion_labels(plain, ["area_ha", "rail_distance_m", "other_thing"], None)
    assert lab == {"area_ha": "Superficie del sito",
                   "rail_distance_m": "Distanza dalla stazione ferroviaria (SFM) più vicina",
                   "other_thing": "other thing"}
    # Labels given by the caller, then the profile's, come first.
    plain.attrs["profile"] = {"criteria": {"area_ha": {"label_it": "Area (profilo)"}}}
    assert _criterion_labels(plain, ["area_ha"], None) == {"area_ha": "Area (profilo)"}
    assert _criterion_labels(plain, ["area_ha"], {"area_ha": "Mia"}) == {"area_ha": "Mia"}
