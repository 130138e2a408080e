"""The planner's scenario of issue 12, end to end on the real kit: score three own sites in
Casalecchio di Reno through the CLI and the API and read why each scores as it does; add a 5 ha
expansion outside the TU; see the sforamento in the ledger, on the comune's map, in the monitoring
report; export the scheda as PDF (text extracted, first page rendered) and the ledger as files."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from test_own_sites import CASALECCHIO, casalecchio_sites, run_cli

pytestmark = pytest.mark.realdata


def expansion_5ha() -> shapely.Polygon:
    """A 250 m × 200 m (5 ha) square in Casalecchio, wholly outside its TU."""
    from pattogis import layers

    com = layers.open_layer("comuni").set_index("istat").geometry[CASALECCHIO]
    tu = layers.open_layer("territorio_urbanizzato").set_index("comune_istat").geometry[CASALECCHIO]
    p = com.difference(tu.buffer(300)).buffer(-130).representative_point()
    sq = shapely.box(p.x - 125, p.y - 100, p.x + 125, p.y + 100)
    assert com.contains(sq) and not sq.intersects(tu)
    return sq


def local_quota() -> float:
    from pattogis import layers

    tu_ha = float(layers.open_layer("territorio_urbanizzato").set_index("comune_istat")
                  .loc[CASALECCHIO, "area_ha"])
    return 0.01 * tu_ha  # law.yaml pools.locale.share


@pytest.fixture
def client(built_layers, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("PATTOGIS_API_KEYS", str(tmp_path / "keys.json"))
    from api.app import create_app
    from pattogis.collections import CollectionRegistry
    from pattogis.store import create_key, open_store

    store = open_store(tmp_path / "proposte.gpkg")
    key = create_key(f"comune:{CASALECCHIO}")
    metro = create_key("metro")
    with TestClient(create_app(CollectionRegistry(), get_store=lambda: store)) as c:
        c.metro_key = metro  # only the metropolitan office approves (issue 14)
        yield c, key


def pdf_text(data: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)


def test_the_planners_scenario(client, built_layers, tmp_path):
    c, key = client
    sites = casalecchio_sites()
    f = tmp_path / "miei_siti.geojson"
    sites.to_crs("OGC:CRS84").to_file(f, driver="GeoJSON")

    # 1. score the three sites through the CLI (a process) and the API: same scores and reasons
    r = run_cli("score", "--candidates", str(f), "--json", "--draws", "100", layers_dir=built_layers)
    assert r.returncode == 0, r.stderr
    cli = {s["site_id"]: s for s in json.loads(r.stdout)["sites"]}
    fc = json.loads(f.read_text())
    resp = c.post("/analysis/score", json={"sites": fc, "draws": 100})
    assert resp.status_code == 200, resp.text
    api = {s["site_id"]: s for s in resp.json()["sites"]}
    assert set(cli) == set(api) == {"CAS-01", "CAS-02", "CAS-03"}
    for k in cli:
        assert api[k]["score"] == pytest.approx(cli[k]["score"], abs=1e-9)
        assert api[k]["rank"] == cli[k]["rank"] and api[k]["motivazione"] == cli[k]["motivazione"]
    # 2. why: the site inside the TU consumes nothing, the one outside its whole hectare
    assert cli["CAS-01"]["land_take_ha"] == pytest.approx(0.0, abs=1e-9)
    assert cli["CAS-02"]["land_take_ha"] == pytest.approx(1.0, rel=1e-9)
    assert cli["CAS-01"]["rank"] < cli["CAS-02"]["rank"]  # same comune, same access: TU decides
    assert "Consumo di suolo fuori dal territorio urbanizzato 1,00 ha" in cli["CAS-02"]["motivazione"]
    assert "1º su 3" in cli[min(cli, key=lambda k: cli[k]["rank"])]["motivazione"]
    r = run_cli("score", "--candidates", str(f), "--explain", "--draws", "50", layers_dir=built_layers)
    assert r.returncode == 0 and "Perché:" in r.stdout and "CAS-02: punteggio" in r.stdout

    # 3. the 5 ha expansion outside the TU, posted by Casalecchio
    sq = gpd.GeoSeries([expansion_5ha()], crs=25832).to_crs(4326).iloc[0]
    feat = {"type": "Feature", "geometry": shapely.geometry.mapping(sq),
            "properties": {"ptype": "nuova_urbanizzazione", "title": "Espansione via Porrettana",
                           "date": "2026-06-01", "status": "presentata"}}
    resp = c.post("/proposals", json=feat, headers={"X-API-Key": key})
    assert resp.status_code in (200, 201), resp.text
    # ... and approved by the metropolitan office, on the version it read
    pid = resp.json()["features"][0]["properties"]["proposal_id"] if "features" in resp.json() \
        else resp.json()["properties"]["proposal_id"]
    etag = c.get(f"/proposals/{pid}").headers["etag"]
    resp = c.patch(f"/proposals/{pid}", json={"properties": {"status": "approvata"}},
                   headers={"X-API-Key": c.metro_key, "If-Match": etag})
    assert resp.status_code == 200, resp.text

    # 4. the sforamento in the ledger, with its year, at every level
    over = 5.0 - local_quota()
    assert over == pytest.approx(0.462, abs=5e-4)  # the figure of the issue
    b = c.get("/analysis/budget", params={"comune": CASALECCHIO, "trajectory": "true"}).json()
    assert b["consumed_ha"] == pytest.approx(5.0, rel=1e-6)
    assert b["remaining_ha"] == pytest.approx(-over, rel=1e-6)
    assert b["overrun"] is True and b["overrun_ha"] == pytest.approx(over, rel=1e-6)
    assert b["overrun_year"] == 2026 and b["trajectory_overrun_year"] == 2026
    m = c.get("/analysis/budget").json()
    assert m["metro"][-1]["n_comuni_overrun"] == 1
    u = next(x for x in m["unioni"] if x["unione"] == b["unione"])
    assert u["n_comuni_overrun"] == 1

    # 5. on the comune's map
    html = c.get("/maps/budget", params={"comune": CASALECCHIO}).text
    assert "SFORAMENTO" in html and "quota superata (sforamento)" in html
    assert "Superficie sigillata (ledger fisico)" in html

    # 6. in the monitoring report (JSON and PDF)
    mon = c.get("/analysis/monitoring", params={"comune": CASALECCHIO}).json()
    assert [p["period"] for p in mon["periods"]] == ["2026-S1"]
    assert mon["periods"][0]["overrun"] is True
    assert mon["periods"][0]["remaining_ha"] == pytest.approx(-over, rel=1e-6)
    resp = c.get("/analysis/monitoring", params={"comune": CASALECCHIO, "format": "pdf"})
    assert resp.headers["content-type"] == "application/pdf"
    text = pdf_text(resp.content)
    assert "Monitoraggio" in text and "2026-S1" in text and "SFORAMENTO" in text

    # 7. the scheda of the comune as PDF: the figures are in its text
    resp = c.get(f"/analysis/scheda/comune/{CASALECCHIO}", params={"format": "pdf"})
    assert resp.status_code == 200 and resp.content.startswith(b"%PDF")
    text = pdf_text(resp.content)
    for s in ("Casalecchio di Reno", "SFORAMENTO", "0,462", "dal 2026", "Traiettoria al 2050",
              "Quote metropolitane", "Ledger fisico", "Fonti:", "OpenStreetMap"):
        assert s in text, s
    pdf = tmp_path / "scheda.pdf"
    pdf.write_bytes(resp.content)
    if shutil.which("pdftoppm"):  # poppler-utils (installed by .ci/run)
        subprocess.run(["pdftoppm", "-r", "50", "-png", "-f", "2", "-l", "2", str(pdf),
                        str(tmp_path / "p")], check=True, timeout=60)
        from PIL import Image

        png = next(tmp_path.glob("p*.png"))
        im = Image.open(png).convert("RGB")
        # the map and the chart are drawn: page 2 holds many non-white pixels, some of them the
        # red of the proposal that consumes quota
        px = np.asarray(im).reshape(-1, 3).astype(int)
        assert (px != 255).any(axis=1).mean() > 0.05
        assert ((px[:, 0] > 180) & (px[:, 1] < 80) & (px[:, 2] < 80)).any()
    # the scheda of a site, from the same upload
    resp = c.post("/analysis/scheda/site/CAS-02", params={"doc": "pdf"}, json={"sites": fc, "draws": 50})
    assert resp.status_code == 200, resp.text
    text = pdf_text(resp.content)
    for s in ("Scheda del sito CAS-02", "Consumo di suolo", "Fonte", "Contributo",
              "Intervallo di posizione", "Casalecchio di Reno"):
        assert s in text, s

    # the physical ledger beside the legal one, through the API; the scheda as HTML for print
    ph = c.get("/analysis/physical", params={"comune": CASALECCHIO}).json()
    assert ph["comuni"][0]["istat"] == CASALECCHIO and ph["comuni"][0]["sealed_ha"] > 0
    resp = c.get(f"/analysis/scheda/comune/{CASALECCHIO}")
    assert resp.headers["content-type"].startswith("text/html") and "@page" in resp.text
    assert "SFORAMENTO" in resp.text and "data:image/png;base64," in resp.text

    # 8. the ledger and the scores as files an office attaches
    resp = c.get("/analysis/export/ledger", params={"format": "csv", "comune": CASALECCHIO})
    csv = resp.content.decode("utf-8-sig")
    df = pd.read_csv(io.StringIO(csv), sep=";", decimal=",", skipfooter=1, engine="python", dtype={"Codice ISTAT": str})
    assert df["Residuo (ha)"].iloc[0] == pytest.approx(-over, abs=1e-6)
    assert df["Sforamento"].iloc[0] and csv.splitlines()[-1].startswith("Fonti:")
    resp = c.get("/analysis/export/ledger", params={"format": "xlsx"})
    xl = pd.read_excel(io.BytesIO(resp.content), sheet_name=None)
    assert {"comuni", "unioni", "quote_metropolitane", "proposte", "Fonti"} <= set(xl)
    assert len(xl["comuni"]) == 55 and len(xl["proposte"]) == 1
    resp = c.get("/analysis/export/ledger", params={"format": "gpkg", "comune": CASALECCHIO})
    g = tmp_path / "bilancio.gpkg"
    g.write_bytes(resp.content)
    lay = gpd.read_file(g, layer="bilancio_comuni")
    assert lay.crs.to_epsg() == 25832 and bool(lay["overrun"].iloc[0])
    assert gpd.read_file(g, layer="proposte")["consumed_ha"].iloc[0] == pytest.approx(5.0, rel=1e-6)
    resp = c.post("/analysis/score", params={"format": "xlsx"}, json={"sites": fc, "draws": 20})
    xl = pd.read_excel(io.BytesIO(resp.content), sheet_name=None)
    assert sorted(xl["punteggi"]["site_id"]) == ["CAS-01", "CAS-02", "CAS-03"]
    assert len(xl["criteri"]) == 3 * len(resp_profile_criteria(xl)) and "Fonti" in xl
    resp = c.post("/analysis/score", params={"format": "gpkg"}, json=fc)
    g.write_bytes(resp.content)
    sc = gpd.read_file(g, layer="punteggi")
    assert sc.crs.to_epsg() == 25832 and sorted(sc["site_id"]) == ["CAS-01", "CAS-02", "CAS-03"]


def resp_profile_criteria(xl: dict[str, pd.DataFrame]) -> list[str]:
    return sorted(set(xl["criteri"]["criterion"]))


def test_the_ledger_verbs_of_the_cli(built_layers, tmp_path):
    """The same scenario with a proposals file, through the CLI: proposals never silently
    ignored, the sforamento in Italian, compare per comune with its sign, monitoring, physical,
    scheda and exports written whole."""
    f = tmp_path / "proposte.geojson"
    gpd.GeoDataFrame({"proposal_id": ["CAS-EXP-01"], "ptype": ["nuova_urbanizzazione"],
                      "title": ["Espansione"], "date": ["2026-06-01"], "status": ["approvata"],
                      "scenario": ["pug"]}, geometry=[expansion_5ha()], crs=25832
                     ).to_crs(4326).to_file(f, driver="GeoJSON")
    over = 5.0 - local_quota()
    env = {"layers_dir": built_layers}
    # without --scenario: the file's one scenario is used, not 'base' with nothing in it
    r = run_cli("budget", "--comune", CASALECCHIO, "--proposals", str(f), "--json", **env)
    out = json.loads(r.stdout)
    assert out["scenario"] == "pug" and out["n_proposals"] == 1 and out["overrun"] is True
    # with another scenario: the proposal is said to be left out
    r = run_cli("budget", "--comune", CASALECCHIO, "--proposals", str(f), "--scenario", "base", **env)
    assert "1 proposte NON conteggiate" in r.stdout and "--scenario pug" in r.stdout
    # human output: Italian labels, the sforamento with its year, the comparison and its sign
    r = run_cli("budget", "--comune", CASALECCHIO, "--proposals", str(f), "--trajectory",
                "--compare", "base", **env)
    assert r.returncode == 0, r.stderr
    assert "tu_ha" not in r.stdout and "remaining_locale_ha" not in r.stdout
    assert "Territorio urbanizzato al 1/1/2018" in r.stdout
    assert f"quota superata di {over:.3f}".replace(".", ",") + " ha dal 2026" in r.stdout
    assert "Traiettoria al 2050: SFORAMENTO dal 2026" in r.stdout
    assert "differenza = pug meno base" in r.stdout
    # the Unione and the whole area name the comune in sforamento
    unione = out["unione"]
    for level in (("--unione", unione), ()):
        r = run_cli("budget", *level, "--proposals", str(f), **env)
        assert r.returncode == 0, r.stderr
        assert "SFORAMENTO: Casalecchio di Reno supera la quota di 0,462 ha dal 2026" in r.stdout
    r = run_cli("budget", "--comune", CASALECCHIO, "--proposals", str(f), "--compare", "base",
                "--json", **env)
    cmp = json.loads(r.stdout)
    assert len(cmp["comparison"]) == 1 and cmp["comparison_sign"] == "delta = pug − base"
    assert cmp["comparison"][0]["delta_consumed_ha"] == pytest.approx(5.0, rel=1e-6)
    r = run_cli("monitoring", "--comune", "Casalecchio di Reno", "--proposals", str(f), "--out",
                str(tmp_path / "monitoraggio.pdf"), **env)
    assert r.returncode == 0, r.stderr
    assert "2026-S1" in r.stdout and "SFORAMENTO: Casalecchio di Reno" in r.stdout
    assert "SFORAMENTO" in pdf_text((tmp_path / "monitoraggio.pdf").read_bytes())
    r = run_cli("physical", "--comune", CASALECCHIO, "--json", **env)
    ph = json.loads(r.stdout)["comuni"][0]
    assert ph["sealed_ha"] == pytest.approx(ph["sealed_buildings_ha"] + ph["sealed_roads_ha"])
    assert 0 < ph["sealed_share"] < 1
    r = run_cli("scheda", "--comune", CASALECCHIO, "--proposals", str(f), "--out",
                str(tmp_path / "scheda.pdf"), **env)
    assert r.returncode == 0, r.stderr
    assert "0,462" in pdf_text((tmp_path / "scheda.pdf").read_bytes())
    for ext in ("csv", "xlsx", "gpkg"):
        r = run_cli("export", "ledger", "--proposals", str(f), "--out", str(tmp_path / f"b.{ext}"), **env)
        assert r.returncode == 0, r.stderr
    xl = pd.read_excel(tmp_path / "b.xlsx", sheet_name="comuni", dtype={"Codice ISTAT": str})
    row = xl[xl["Codice ISTAT"] == CASALECCHIO].iloc[0]
    assert row["Residuo (ha)"] == pytest.approx(-over, abs=1e-6)
    sites = tmp_path / "siti.geojson"
    casalecchio_sites().to_crs(4326).to_file(sites, driver="GeoJSON")
    r = run_cli("export", "scores", "--candidates", str(sites), "--draws", "20", "--out",
                str(tmp_path / "punteggi.gpkg"), **env)
    assert r.returncode == 0, r.stderr
    assert sorted(gpd.read_file(tmp_path / "punteggi.gpkg")["site_id"]) == ["CAS-01", "CAS-02", "CAS-03"]
    r = run_cli("export", "ledger", "--out", str(tmp_path / "b.txt"), **env)
    assert r.returncode == 2 and not (tmp_path / "b.txt").exists()
