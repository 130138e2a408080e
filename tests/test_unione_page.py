"""The Unione's page (issue 15 item 4): scoring restricted to an Unione through the API, and the
page in headless Chromium (pick 3 sites and compare them; move a weight slider and the ranking
follows the live rescoring).

Known answers: scores are normalised against the fixed metropolitan reference, so restricting
the scored set to an Unione leaves every score unchanged and gives ranks 1..n within it, equal to
the order of the scores; a page rescored with a weight moved to 0 must show the order the library
gives for that profile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

UNIONE = "Unione Terre d'Acqua"
REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "maps" / "screenshots"


@pytest.fixture(scope="module")
def app(built_layers: Path):
    from api.app import create_app
    from pattogis.collections import CollectionRegistry

    return create_app(CollectionRegistry())


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


def _members(unione: str) -> set[str]:
    from pattogis import layers, ledger

    comuni = layers.open_layer("comuni")
    members = comuni.loc[ledger.unione_label(comuni) == unione, "istat"]
    cand = layers.open_layer("candidates")
    return set(cand.loc[cand["comune_istat"].isin(members), "site_id"].astype(str))


@pytest.mark.realdata
def test_score_restricted_to_an_unione_ranks_within_it_same_scores(client) -> None:
    whole = client.post("/analysis/score", json={"draws": 0, "top": 100_000}).json()
    r = client.post("/analysis/score", json={"unione": UNIONE, "draws": 200, "top": 100_000})
    assert r.status_code == 200, r.text
    part = r.json()
    ids = {s["site_id"] for s in part["sites"]}
    assert ids == _members(UNIONE) and part["n_sites"] == len(ids) < whole["n_sites"]
    by_id = {s["site_id"]: s for s in whole["sites"]}
    ranked = [s for s in part["sites"] if s["rank"] is not None]
    # the same score as in the whole metropolitan set ...
    for s in part["sites"]:
        w = by_id[s["site_id"]]["score"]
        assert (s["score"] is None and w is None) or s["score"] == pytest.approx(w, abs=1e-12)
    # ... and ranks 1..n within the Unione, in the order of the scores
    assert sorted(s["rank"] for s in ranked) == list(range(1, len(ranked) + 1))
    by_score = sorted(ranked, key=lambda s: -s["score"])
    assert [s["rank"] for s in by_score] == list(range(1, len(ranked) + 1))
    # some of them ranked far lower in the whole set: the restriction did change the ranks
    assert max(by_id[s["site_id"]]["rank"] - s["rank"] for s in ranked) > 0
    for s in ranked:  # the rank interval is within the Unione too
        assert 1 <= s["rank_p5"] <= s["rank_p95"] <= len(ranked)


@pytest.mark.realdata
def test_score_restricted_to_site_ids_and_errors(client) -> None:
    members = sorted(_members(UNIONE))
    pick = members[:3]
    r = client.post("/analysis/score", json={"unione": UNIONE, "site_ids": pick + pick[:1],
                                              "draws": 0})
    assert r.status_code == 200, r.text
    assert sorted(s["site_id"] for s in r.json()["sites"]) == pick
    assert sorted(s["rank"] for s in r.json()["sites"] if s["rank"] is not None) == \
        list(range(1, 1 + sum(s["rank"] is not None for s in r.json()["sites"])))
    bad = client.post("/analysis/score", json={"unione": "Unione che non esiste"})
    assert bad.status_code == 404 and "Unione che non esiste" in bad.json()["detail"]
    unknown = client.post("/analysis/score", json={"site_ids": ["NON-ESISTE-1"]})
    assert unknown.status_code == 404 and "NON-ESISTE-1" in unknown.json()["detail"]
    other = sorted(_members("Unione Reno Galliera"))[0]
    out = client.post("/analysis/score", json={"unione": UNIONE, "site_ids": [other]})
    assert out.status_code in (400, 422) and other in out.text and "site_ids" in out.text
    assert client.post("/analysis/score", json={"site_ids": []}).status_code in (400, 422)
    fc = {"type": "FeatureCollection", "features": []}
    mixed = client.post("/analysis/score", json={"unione": UNIONE, "sites": fc})
    assert mixed.status_code in (400, 422) and "unione" in mixed.text


@pytest.mark.realdata
def test_unione_sites_equal_the_restricted_workspace_scores(built_layers: Path) -> None:
    from pattogis import analysis, workspace

    ws = workspace.default()
    crit = ws.candidate_criteria(unione=UNIONE)
    assert set(crit["site_id"]) == _members(UNIONE)
    page = analysis.unione_sites(UNIONE, draws=0).set_index("site_id")
    whole = ws.score_sites(draws=0).set_index("site_id").loc[page.index]
    np.testing.assert_allclose(page["score"].to_numpy(float), whole["score"].to_numpy(float))


# --- headless Chromium -------------------------------------------------------------------------


def _slider(name: str, value: int) -> str:
    return (f"(function(){{var e=document.getElementById('pg-w-{name}');e.value={value};"
            "e.dispatchEvent(new Event('input'));})()")


def _no_geojson_of_tiled_layers(requests: list[str]) -> None:
    """Bus stops and the metropolitan candidates travel as vector tiles, never as GeoJSON."""
    assert not [u for u in requests if "/collections/bus_stops/items" in u
                or "/collections/candidates/items" in u or "/maps/data/bus_stops" in u]
    assert any("/collections/candidates/tiles/WebMercatorQuad/" in u for u in requests)


def _map_click(sid_js: str) -> str:
    return ("pattogis.layers.site_points.getLayers().filter(function(l){return "
            f"l.feature.properties.sid==={sid_js}}})[0].fire('click')")


@pytest.mark.browser
@pytest.mark.realdata
def test_browser_unione_page_compare_and_live_weights(chromium: str, server: str) -> None:
    from urllib.parse import quote

    from browser import check_page

    from pattogis import analysis
    from pattogis.maps.base import fmt_num
    from pattogis.scoring import load_profile

    pick3 = ("var o=pattogis.unione.order();[0,1,2].forEach(function(i){document.querySelector("
             "'#pg-ranking tr[data-sid=\"'+o[i]+'\"] input').click()})")
    rep = check_page(
        f"{server}/maps/sites?unione={quote(UNIONE)}", SHOTS / "sites_unione_live.png",
        settle_s=2.0,
        actions=[pick3, "window.pgBefore=pattogis.unione.order().slice()",
                 _slider("fragility", 0), _slider("rail_distance_m", 100),
                 # a click on the map picks a 4th site; a second click puts it back
                 _map_click("window.pgBefore[5]") + ";window.pgMapPick=pattogis.unione.picked.slice()",
                 _map_click("window.pgBefore[5]")],
        evaluate=[
            "window.pgBefore", "pattogis.unione.order()",
            "Array.from(document.querySelectorAll('#pg-ranking tr')).map(function(r){"
            "return r.getAttribute('data-sid')})",
            "pattogis.unione.picked.slice()",
            "Array.from(document.querySelectorAll('#pg-compare tr')).map(function(r){"
            "return Array.from(r.children).map(function(c){return c.textContent})})",
            "document.getElementById('pg-live').textContent", "window.pgMapPick",
            "document.querySelectorAll('#pg-weights input[type=range]').length",
            "Array.from(document.querySelectorAll('#pg-weights label')).map(function(l){"
            "return l.textContent})",
        ])
    assert rep.errors == []
    assert not [u for u in rep.requests if not u.startswith((server, "data:"))], rep.requests
    _no_geojson_of_tiled_layers(rep.requests)
    before, after, rows_shown, picked, table, live, map_pick, n_sliders, labels = rep.values

    # one slider per criterion of the profile, labelled in Italian from the registry/profile
    prof = load_profile("unione")
    assert n_sliders == len(prof.names)
    assert labels == [prof.criterion(n).label_it for n in prof.names]
    assert "Distanza dalla stazione SFM più vicina" in labels

    # the live rescoring: the order shown is the library's for the moved weights
    assert live.startswith("Graduatoria ricalcolata")
    spec = prof.to_dict()  # what the page posts: its weights, two of them moved
    spec["criteria"]["fragility"]["weight"] = 0.0
    spec["criteria"]["rail_distance_m"]["weight"] = 1.0
    want = analysis.unione_sites(UNIONE, profile=spec, draws=0)
    want = want.sort_values(["rank", "site_id"], na_position="last")
    ranked = want["rank"].notna()
    assert after[:ranked.sum()] == list(want.loc[ranked, "site_id"])
    assert rows_shown == after
    assert after != before  # the ranking order shown changed

    assert map_pick == before[:3] + [before[5]]  # picked by a click on its point on the map

    # the comparison: the 3 picked sites side by side with their values
    assert len(picked) == 3 and picked == before[:3]
    header, *body = table
    assert len(header) == 4
    rows = {r[0]: r[1:] for r in body}
    assert {"Punteggio", "Posizione", "Intervallo di posizione (P5–P95)"} <= set(rows)
    assert "Distanza dalla stazione SFM più vicina (m)" in rows
    w = want.set_index("site_id")
    for col, sid in enumerate(picked):
        assert rows["Punteggio"][col] == fmt_num(w.loc[sid, "score"], 3)
        assert rows["Posizione"][col].startswith(f"{int(w.loc[sid, 'rank'])}ª su ")
        rail = fmt_num(w.loc[sid, "rail_distance_m"], 0)
        assert rows["Distanza dalla stazione SFM più vicina (m)"][col] == rail


@pytest.mark.realdata
def test_sliders_only_where_a_score_url_and_a_profile_are_known(built_layers: Path) -> None:
    from pattogis import analysis
    from pattogis.maps import pages, render

    s = analysis.unione_sites(UNIONE, draws=0)
    live = render(pages.sites_map(s, unione=UNIONE, score_url="/analysis/score"))
    assert "id='pg-weights'" in live and '"scoreUrl":"/analysis/score"' in live
    assert '"unione":"Unione Terre d\\u0027Acqua"' in live  # the restriction the page posts
    # a written file has no server to rescore: the comparison only, and it says so
    static = render(pages.sites_map(s, unione=UNIONE))
    assert "id='pg-weights'" not in static and '"scoreUrl":null' in static
    assert "id='pg-compare'" in static and "id='pg-ranking'" in static


# a user's click at a site's point (the element under the pointer, mouse events there)
_DOM_PICK = """(function () {
  var sid = pattogis.unione.order()[5];
  var l = pattogis.layers.site_points.getLayers().filter(function (l) {
    return l.feature.properties.sid === sid; })[0];
  pattogis.map.setView(l.getLatLng(), 14, {animate: false});
  var cp = pattogis.map.latLngToContainerPoint(l.getLatLng());
  var r = pattogis.map.getContainer().getBoundingClientRect(), x = r.left + cp.x, y = r.top + cp.y;
  var el = document.elementFromPoint(x, y);
  ['mousedown', 'mouseup', 'click'].forEach(function (ty) {
    el.dispatchEvent(new MouseEvent(ty, {bubbles: true, cancelable: true, clientX: x, clientY: y,
                                         view: window})); });
  window.pgDomPick = sid;
})()"""


@pytest.mark.browser
@pytest.mark.realdata
def test_browser_unione_page_tiles_under_the_picks(chromium: str, server: str) -> None:
    """The other candidates and the bus stops are drawn from tiles above the Unione's sites,
    yet a click on one of the Unione's sites still picks it, and a click on a stop opens its
    popup; the tiles leave the Unione's own sites out."""
    from urllib.parse import quote

    from browser import check_page, click_tile_feature_js, tile_features_js

    rep = check_page(
        f"{server}/maps/sites?unione={quote(UNIONE)}", SHOTS / "sites_unione_tiles.png",
        settle_s=2.0,
        actions=["window.pgCand = " + tile_features_js("candidates"), _DOM_PICK,
                 click_tile_feature_js("bus_stops", (90, 470, 60, 340))],
        evaluate=["window.pgCand", "window.pgDomPick", "pattogis.unione.picked.slice()",
                  "window.pgTileClick",
                  "document.querySelector('.leaflet-popup-content') ? "
                  "document.querySelector('.leaflet-popup-content').innerText : ''"])
    assert rep.errors == []
    assert not [u for u in rep.requests if not u.startswith((server, "data:"))], rep.requests
    _no_geojson_of_tiled_layers(rep.requests)
    assert any("/collections/bus_stops/tiles/WebMercatorQuad/14/" in u for u in rep.requests)
    cand, sid, picked, stop, popup = rep.values
    own = _members(UNIONE)
    drawn = {p["site_id"] for p in cand}
    assert drawn and not drawn & own  # the neighbours' sites, not the Unione's own
    assert picked == [sid]  # the click reached the site under the tiles' pane
    assert isinstance(stop, dict) and popup.startswith(stop["name"])
    assert f"Codice fermata\t{stop['stop_code']}" in popup


_LAYOUT = """(function () {
  function box(el) { var b = el.getBoundingClientRect();
    return {left: b.left, top: b.top, right: b.right, bottom: b.bottom}; }
  function meet(p, q) { return !(p.right <= q.left || q.right <= p.left || p.bottom <= q.top ||
                                 q.bottom <= p.top); }
  var m = box(pattogis.map.getContainer()), t = box(document.getElementById('pg-tools'));
  var lg = box(document.getElementById('pg-legend'));
  var at = box(document.querySelector('.leaflet-control-attribution'));
  var b = document.getElementById('pg-tools-toggle');
  return {map: m, tools: t, mapMeetsTools: meet(m, t), legendMeetsTools: meet(lg, t),
          attributionMeetsTools: meet(at, t), expanded: b.getAttribute('aria-expanded'),
          label: b.textContent, sizeX: pattogis.map.getSize().x, sizeY: pattogis.map.getSize().y,
          bodyShown: document.getElementById('pg-tools-body').offsetHeight > 0,
          layersOpen: document.querySelector('.leaflet-control-layers')
            .classList.contains('leaflet-control-layers-expanded'),
          legendOpen: document.querySelector('#pg-legend details').open,
          compared: document.querySelectorAll('#pg-compare tr').length};
})()"""


@pytest.mark.browser
@pytest.mark.realdata
@pytest.mark.parametrize("width,height", [(1280, 900), (1024, 768), (800, 600), (390, 844)])
def test_browser_unione_tools_fold_and_leave_the_map(chromium: str, server: str, width: int,
                                                     height: int) -> None:
    """At every window size the tools work (3 sites compared) and can be folded with their
    Italian button; in small windows they sit under the map, never over it, and the legend and
    the attribution stay off them."""
    from urllib.parse import quote

    from browser import check_page

    from pattogis.maps.pages import STACK_MAX_HEIGHT, STACK_MAX_WIDTH

    pick3 = ("var o=pattogis.unione.order();[0,1,2].forEach(function(i){document.querySelector("
             "'#pg-ranking tr[data-sid=\"'+o[i]+'\"] input').click()})")
    toggle = "document.getElementById('pg-tools-toggle').click()"
    rep = check_page(
        f"{server}/maps/sites?unione={quote(UNIONE)}",
        SHOTS / f"sites_unione_{width}x{height}.png", width=width, height=height, settle_s=1.0,
        actions=[pick3, "window.pgOpen = " + _LAYOUT, toggle, "window.pgClosed = " + _LAYOUT,
                 toggle, "window.pgAgain = " + _LAYOUT,
                 # the layer list: its button opens it, a click on the map folds it
                 "document.querySelector('.leaflet-control-layers-toggle').click();"
                 "window.pgLayers = document.querySelector('.leaflet-control-layers').className",
                 "pattogis.map.fire('click', {latlng: pattogis.map.getCenter()})"],
        evaluate=["window.pgOpen", "window.pgClosed", "window.pgAgain", "window.pgLayers",
                  _LAYOUT])
    assert rep.errors == []
    opened, closed, reopened, layers_clicked, after_map_click = rep.values
    stacked = width <= STACK_MAX_WIDTH or height <= STACK_MAX_HEIGHT
    assert opened["compared"] > 3 and opened["expanded"] == "true"
    assert opened["label"] == "Nascondi il pannello" and opened["bodyShown"]
    assert not opened["legendMeetsTools"] and not opened["attributionMeetsTools"]
    # a small window starts with the legend and the layer list folded; a large one open
    assert opened["legendOpen"] is not stacked and opened["layersOpen"] is not stacked
    assert "leaflet-control-layers-expanded" in layers_clicked
    assert after_map_click["layersOpen"] is not stacked
    if stacked:  # the map above, the tools below: nothing of the map is covered
        assert not opened["mapMeetsTools"]
        assert opened["tools"]["top"] >= opened["map"]["bottom"] - 1
        assert opened["tools"]["bottom"] <= height + 1 and opened["sizeY"] >= 0.5 * height
    # folded: only the button is left, and in the stacked layout the map takes the height
    assert closed["expanded"] == "false" and not closed["bodyShown"]
    assert closed["label"].startswith("Mostra il pannello")
    assert closed["tools"]["bottom"] - closed["tools"]["top"] <= 50
    if stacked:
        assert closed["sizeY"] >= height - 50 > opened["sizeY"]
    assert reopened == opened  # unfolded again: as before
