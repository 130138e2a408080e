"""The whole path through the API on the real layers: a comune posts a proposal, the ledger sees
it, another Unione cannot touch it, and the map and analysis endpoints answer."""

from __future__ import annotations

import geopandas as gpd
import pytest
import shapely
from fastapi.testclient import TestClient

from pattogis import layers
from pattogis.store import create_key, open_store


@pytest.fixture
def client(built_layers, tmp_path, monkeypatch):
    monkeypatch.setenv("PATTOGIS_API_KEYS", str(tmp_path / "keys.json"))
    from api.app import create_app
    from pattogis.collections import CollectionRegistry

    store = open_store(tmp_path / "proposte.gpkg")
    app = create_app(CollectionRegistry(), get_store=lambda: store)
    keys = {r: create_key(r) for r in ("comune:037032", "unione:Unione Reno Galliera", "metro")}
    with TestClient(app) as c:
        yield c, keys


def square_outside_tu(istat: str) -> shapely.Polygon:
    c = layers.open_layer("comuni").set_index("istat").geometry[istat]
    tu = layers.open_layer("territorio_urbanizzato").set_index("comune_istat").geometry[istat]
    p = c.difference(tu.buffer(300)).representative_point()
    return shapely.box(p.x - 50, p.y - 50, p.x + 50, p.y + 50)  # 1 ha


@pytest.mark.realdata
def test_posted_proposal_reaches_the_ledger_and_roles_hold(client):
    c, keys = client
    before = c.get("/analysis/budget", params={"comune": "037032"}).json()
    sq = gpd.GeoSeries([square_outside_tu("037032")], crs=25832).to_crs(4326).iloc[0]
    feat = {"type": "Feature", "geometry": shapely.geometry.mapping(sq),
            "properties": {"ptype": "nuova_urbanizzazione", "title": "Comparto nord", "date": "2026-06-01"}}
    r = c.post("/proposals", json=feat, headers={"X-API-Key": keys["comune:037032"]})
    assert r.status_code in (200, 201), r.text
    pid = r.json()["features"][0]["properties"]["proposal_id"]
    own = {"X-API-Key": keys["comune:037032"]}
    # a draft: in the comune's own budget, not in the public one (the read rule)
    assert c.get("/analysis/budget", params={"comune": "037032"}).json()["consumed_ha"] == pytest.approx(
        before["consumed_ha"])
    after = c.get("/analysis/budget", params={"comune": "037032"}, headers=own).json()
    assert after["consumed_ha"] - before["consumed_ha"] == pytest.approx(1.0, rel=1e-4)
    assert after["remaining_locale_ha"] == pytest.approx(before["remaining_locale_ha"] - 1.0, rel=1e-4)
    # submitted, it is public
    tag = c.get(f"/proposals/{pid}", headers=own).headers["etag"]
    r = c.patch(f"/proposals/{pid}", json={"properties": {"status": "presentata"}},
                headers=own | {"If-Match": tag})
    assert r.status_code == 200, r.text
    assert c.get("/analysis/budget", params={"comune": "037032"}).json()["consumed_ha"] == pytest.approx(
        after["consumed_ha"])
    # Reno Galliera cannot withdraw Imola's proposal; nothing changes.
    tag = r.headers["etag"]
    r = c.post(f"/proposals/{pid}/withdraw", headers={"X-API-Key": keys["unione:Unione Reno Galliera"],
                                                      "If-Match": tag})
    assert r.status_code == 403
    assert c.get("/analysis/budget", params={"comune": "037032"}).json()["consumed_ha"] == pytest.approx(
        after["consumed_ha"])
    # The comune withdraws it: the ledger returns to where it was.
    r = c.post(f"/proposals/{pid}/withdraw", headers=own | {"If-Match": tag})
    assert r.status_code == 200
    for h in ({}, own):
        assert c.get("/analysis/budget", params={"comune": "037032"}, headers=h).json()["consumed_ha"] == pytest.approx(
            before["consumed_ha"])

@pytest.mark.realdata
def test_scoring_with_posted_weights_changes_the_ranking(client):
    c, _ = client
    prof = {"name": "solo_fragilita", "label_it": "Solo fragilità", "method": "wsum",
            "criteria": {"fragility": {"weight": 1.0, "direction": "max", "normalise": "minmax"}}}
    r = c.post("/analysis/score", json={"profile": prof, "draws": 0, "top": 5})
    assert r.status_code == 200, r.text
    sites = r.json()["sites"]
    ind = layers.open_layer("comuni_indicators").set_index("istat")["fragility_index"]
    top_frag = max(ind[s["comune_istat"]] for s in sites)
    assert ind[sites[0]["comune_istat"]] == pytest.approx(top_frag)
    assert sites[0]["score"] == pytest.approx(1.0)
    bad = {"name": "x", "label_it": "x", "criteria": {"nonesiste": {"weight": 1}}}
    r = c.post("/analysis/score", json={"profile": bad})
    assert r.status_code in (400, 422) and "nonesiste" in r.text


@pytest.mark.realdata
def test_fund_modes_and_map_pages(client):
    c, _ = client
    r = c.post("/analysis/fund", json={"mode": "compare"})
    assert r.status_code == 200
    s = r.json()["summary"]
    assert s["optimal_total_merit"] >= s["graduatoria_total_merit"] - 1e-9
    for page in ("/maps/overview", "/maps/budget?comune=037032", "/maps/fund?dimostrativo=true"):
        r = c.get(page)
        assert r.status_code == 200 and "OpenStreetMap" in r.text, page
    # the demonstration set only when asked, and then said so; no run and no ask: 404
    assert "DIMOSTRATIVA" in r.text and "(dimostrativo)" in r.text
    r = c.get("/maps/fund")
    assert r.status_code == 404 and "no applications loaded" in r.text


@pytest.mark.realdata
def test_collections_list_does_not_compute_the_analysis_results(built_layers, tmp_path,
                                                                 monkeypatch):
    # /collections is what QGIS and GDAL ask first: the analysis results are listed without
    # being computed (no count or extent yet); their own document computes and counts them
    monkeypatch.setenv("PATTOGIS_API_KEYS", str(tmp_path / "keys.json"))
    from api.app import create_app
    from pattogis.collections import CollectionRegistry

    reg = CollectionRegistry()
    store = open_store(tmp_path / "proposte.gpkg")
    with TestClient(create_app(reg, get_store=lambda: store)) as c:
        docs = {d["id"]: d for d in c.get("/collections").json()["collections"]}
        assert "itemCount" not in docs["site_scores"] and "itemCount" not in docs["ledger_comuni"]
        assert docs["buildings"]["itemCount"] == 221_222  # layers: from the GeoPackage's metadata
        assert all(reg._entries.get(k) is None or reg._entries[k].data is None
                   for k in ("site_scores", "ledger_comuni", "buildings"))
        one = c.get("/collections/site_scores").json()
        n = len(layers.open_layer("candidates"))
        assert one["itemCount"] == n
        # once computed, the listing counts it too
        docs = {d["id"]: d for d in c.get("/collections").json()["collections"]}
        assert docs["site_scores"]["itemCount"] == n
