"""The fund on the real kit: the example applications (invented, on the derived TU) with every
trap, through the CLI (a subprocess) and the API (HTTP through TestClient)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.realdata


def _maker():
    spec = importlib.util.spec_from_file_location("make_example_applications",
                                                  REPO / "examples" / "make_example_applications.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def example(built_layers, tmp_path_factory) -> dict[str, Path]:
    """The example applications made afresh on this layer set (traps hold by construction)."""
    d = tmp_path_factory.mktemp("esempio")
    mk = _maker()
    g = mk.build()
    gpkg, csv = mk.write(g, d)
    g.to_file(d / "domande.geojson", driver="GeoJSON")
    g.to_parquet(d / "domande.parquet")
    (d / "shp").mkdir()
    g.to_file(d / "shp" / "domande.shp")
    with zipfile.ZipFile(d / "domande.zip", "w") as z:
        for f in (d / "shp").iterdir():
            z.write(f, f.name)
    return {"gpkg": gpkg, "csv": csv, "geojson": d / "domande.geojson",
            "parquet": d / "domande.parquet", "zip": d / "domande.zip"}


def trap_of(notes: pd.Series) -> pd.Series:
    return notes.str.extract(r"trappola: (\w+)")[0]


def check_outcome(t: pd.DataFrame) -> None:
    """Every trap ends as the call says (t: one row per application, with notes and reason)."""
    assert len(t) >= 30
    trap = trap_of(t["notes"])
    by = t.assign(trap=trap).set_index("trap")
    ex = lambda k: by.loc[k, "status"] == "escluso"  # noqa: E731
    assert ex("comune_in_unione")
    assert "aderisce a un'Unione (Nuovo Circondario Imolese)" in by.loc["comune_in_unione", "reason"]
    assert ex("unione_fuori")
    assert "(si trova in: Budrio, Unione Terre di Pianura)" in by.loc["unione_fuori", "reason"]
    assert ex("unione_in_bologna") and "Bologna, comune non associato" in by.loc["unione_in_bologna", "reason"]
    assert ex("sconosciuto") and "'Unione Pippo' non riconosciuto" in by.loc["sconosciuto", "reason"]
    assert ex("fuori_tu") and "perimetro del TU derivato" in by.loc["fuori_tu", "reason"]
    assert ex("oltre_tolleranza") and "m² fuori dal perimetro" in by.loc["oltre_tolleranza", "reason"]
    assert not ex("bordo_tu")
    assert "fuori dal TU, entro la tolleranza del bando (perimetro derivato)" in by.loc["bordo_tu", "reason"]
    assert not ex("a_cavallo") and "a cavallo di 2 comuni: sede attribuita a Bologna" in by.loc["a_cavallo", "reason"]
    assert "comune dichiarato 037006, ma il sito è a Galliera" in by.loc["istat_sbagliato", "reason"]
    r = by.loc["dichiarazioni_false", "reason"]
    assert "territorial_system dichiarato via Emilia, dal territorio risulta collina-montagna" in r
    assert "population dichiarato 99999" in r
    assert ex("bologna_fuori") and "non è nel territorio del comune richiedente" in by.loc["bologna_fuori", "reason"]
    # the ordinary applications: all eligible; names written loosely are matched and shown
    ordinary = t[trap.isna()]
    assert (ordinary["status"] != "escluso").all(), ordinary.loc[ordinary["status"] == "escluso", "reason"]
    assert t["reason"].str.contains("riconosciuto come 'Nuovo Circondario Imolese'").any()
    funded = t["awarded_cents"].sum()
    assert funded == 229_814_471  # the whole budget of the 2023 call is allocated


def test_example_through_the_cli(example, built_layers, tmp_path):
    env = {**os.environ, "PATTOGIS_LAYERS_DIR": str(built_layers), "PYTHONPATH": str(REPO)}
    outs = [tmp_path / f"g.{f}" for f in ("csv", "xlsx", "gpkg", "html", "pdf")]
    cmd = [sys.executable, "-m", "pattogis.cli", "fund", "--projects", str(example["csv"]), "--json"]
    for o in outs:
        cmd += ["--out", str(o)]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    t = pd.DataFrame(json.loads(p.stdout)["projects"])
    check_outcome(t)
    assert all(o.stat().st_size > 1000 for o in outs)
    # the same decisions from the GeoPackage
    p2 = subprocess.run(cmd[:5] + [str(example["gpkg"]), "--json"], capture_output=True, text=True,
                        env=env, timeout=300, cwd=tmp_path)
    t2 = pd.DataFrame(json.loads(p2.stdout)["projects"]).set_index("project_id")
    assert t2["status"].to_dict() == t.set_index("project_id")["status"].to_dict()
    # the template verb
    p3 = subprocess.run([sys.executable, "-m", "pattogis.cli", "fund", "template", "--out",
                         str(tmp_path / "modello.csv")], capture_output=True, text=True, env=env,
                        timeout=120, cwd=tmp_path)
    assert p3.returncode == 0 and "# wkt: " in (tmp_path / "modello.csv").read_text("utf-8-sig")
    # bad input: exit 2, file/rows/field named, no document written
    bad = tmp_path / "bad.csv"
    text = example["csv"].read_text("utf-8-sig").splitlines()
    row3 = text[3].split(";")
    row3[0] = text[1].split(";")[0]   # row 3 takes row 1's id
    text[3] = ";".join(row3)
    bad.write_text("\n".join(text) + "\n", encoding="utf-8")
    p4 = subprocess.run(cmd[:5] + [str(bad), "--out", str(tmp_path / "bad.pdf")], capture_output=True,
                        text=True, env=env, timeout=300, cwd=tmp_path)
    assert p4.returncode == 2
    assert "duplicate project_id" in p4.stderr and "rows 1, 3" in p4.stderr and "bad.csv" in p4.stderr
    assert not (tmp_path / "bad.pdf").exists()
    # the fund page of the same file; without a file or --demo the CLI says what to do
    env_maps = {**env, "PATTOGIS_STORE": str(tmp_path / "store.gpkg")}
    p5 = subprocess.run([sys.executable, "-m", "pattogis.cli", "maps", "--out", str(tmp_path / "m"),
                         "--fund", "--projects", str(example["gpkg"])], capture_output=True,
                        text=True, env=env_maps, timeout=300, cwd=tmp_path)
    assert p5.returncode == 0, p5.stderr
    page = (tmp_path / "m" / "fund.html").read_text(encoding="utf-8")
    assert "(esempio)" in page and "DIMOSTRATIVA" not in page
    p6 = subprocess.run([sys.executable, "-m", "pattogis.cli", "maps", "--out", str(tmp_path / "m"),
                         "--fund"], capture_output=True, text=True, env=env_maps, timeout=300,
                        cwd=tmp_path)
    assert p6.returncode == 2 and "--demo" in p6.stderr


@pytest.fixture
def api(built_layers, tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from api.app import create_app
    from pattogis.collections import CollectionRegistry
    from pattogis.store import create_key

    monkeypatch.setenv("PATTOGIS_API_KEYS", str(tmp_path / "keys.json"))
    app = create_app(CollectionRegistry(), get_store=lambda: None)
    keys = {r: create_key(r) for r in ("metro", "unione:Unione Reno Galliera")}
    with TestClient(app) as c:
        yield c, keys, app.state.context.fund_runs


def test_example_through_the_api(api, example):
    import pypdf

    c, keys, runs = api
    h = {"X-API-Key": keys["metro"]}
    statuses = None
    for kind in ("csv", "gpkg", "geojson", "parquet", "zip"):
        f = example[kind]
        r = c.post("/fund/runs", params={"call": "bando_2023"}, headers=h,
                   files={"file": (f.name, f.read_bytes())})
        assert r.status_code == 200, (kind, r.text)
        t = pd.DataFrame(r.json()["projects"])
        check_outcome(t)
        s = t.set_index("project_id")["status"].to_dict()
        assert statuses is None or s == statuses, kind
        statuses = s
    # the run is the map's: the real applications, not the demonstration set
    page = c.get("/maps/fund")
    assert page.status_code == 200 and "(esempio)" in page.text and "DIMOSTRATIVA" not in page.text
    # documents of the current run
    pdf = c.get("/fund/runs/bando_2023", params={"format": "pdf"}, headers=h)
    assert pdf.headers["content-type"] == "application/pdf"
    text = " ".join(" ".join(p.extract_text().split()) for p in pypdf.PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Unione Pippo" in text and "non riconosciuto" in text and "Motivazione" in text
    csv = c.get("/fund/runs/bando_2023", params={"format": "csv"}, headers=h).content.decode("utf-8-sig")
    assert csv.startswith("Posizione;Codice;") and "Fonti: " in csv
    xl = c.get("/fund/runs/bando_2023", params={"format": "xlsx"}, headers=h)
    assert xl.content[:2] == b"PK"
    gp = c.get("/fund/runs/bando_2023", params={"format": "gpkg"}, headers=h)
    assert gpd.read_file(io.BytesIO(gp.content), layer="graduatoria").crs.to_epsg() == 25832
    # bad input: 422 naming file, rows and field; the previous run is kept untouched
    before = runs["bando_2023"]
    lines = example["csv"].read_text("utf-8-sig").splitlines()
    cells = lines[2].split(";")
    cells[9] = "-100,00"   # requested_eur of row 2
    lines[2] = ";".join(cells)
    r = c.post("/fund/runs", headers=h, files={"file": ("rotto.csv", "\n".join(lines).encode())})
    assert r.status_code == 422
    assert r.json()["rows"] == [2] and r.json()["field"] == "requested_eur" and r.json()["file"] == "rotto.csv"
    assert runs["bando_2023"] is before
    # roles and calls: only metro; a call by id only, never a path
    f = example["gpkg"]
    assert c.post("/fund/runs", files={"file": (f.name, f.read_bytes())}).status_code == 401
    assert c.post("/fund/runs", headers={"X-API-Key": keys["unione:Unione Reno Galliera"]},
                  files={"file": (f.name, f.read_bytes())}).status_code == 403
    r = c.post("/fund/runs", params={"call": "../calls/bando_2023.yaml"}, headers=h,
               files={"file": (f.name, f.read_bytes())})
    assert r.status_code == 404
    assert c.get("/fund/template").text.lstrip("\ufeff").startswith("project_id;applicant;")
    assert [x["id"] for x in c.get("/fund/calls").json()["calls"]] == ["bando_2023"]
    # posted JSON applications carry their site as WKT; without it they are refused
    g = gpd.read_file(example["gpkg"]).head(5)
    recs = pd.DataFrame(g.drop(columns="geometry")).assign(wkt=g.geometry.to_wkt(), epsg=25832)
    recs = json.loads(recs.to_json(orient="records"))
    r = c.post("/analysis/fund", json={"projects": recs})
    assert r.status_code == 200 and len(r.json()["projects"]) == 5
    r = c.post("/analysis/fund", json={"projects": [{k: v for k, v in x.items() if k != "wkt"}
                                                    for x in recs]})
    assert r.status_code == 422 and "no site polygons" in r.json()["detail"]


def test_committed_example_files(built_layers):
    """The files shipped in examples/ read and decide (the traps that depend on the comuni
    only, so a change of the derived TU does not move them)."""
    from pattogis import analysis

    for name in ("domande_esempio.csv", "domande_esempio.gpkg"):
        res = analysis.fund("bando_2023", REPO / "examples" / name)
        t = res.table
        assert len(t) >= 30 and t["title"].str.contains("(esempio)", regex=False).all()
        by = t.assign(trap=trap_of(t["notes"])).set_index("trap")
        for k in ("comune_in_unione", "unione_fuori", "unione_in_bologna", "sconosciuto",
                  "bologna_fuori"):
            assert by.loc[k, "status"] == "escluso", k
        assert (REPO / "examples" / name).stat().st_size < 200_000


@pytest.mark.browser
def test_fund_map_is_the_run_readable_at_every_zoom(example, built_layers, tmp_path):
    """Far out the applications of one comune are one circle with their number; from zoom 13
    every application has its circle; from zoom 15 only the site polygons (headless Chromium)."""
    from browser import check_page, chromium_path

    from pattogis import analysis, maps

    res = analysis.fund_geo(projects=example["gpkg"])
    assert res.attrs["dimostrativo"] is False
    html = maps.render(maps.fund_map(res, call_name="bando_2023"))
    assert "DIMOSTRATIVA" not in html and "Domande raggruppate per comune" in html
    n = len(res)
    per_comune = res["comune_istat"].value_counts()
    groups, grouped = int((per_comune > 1).sum()), int(per_comune[per_comune > 1].sum())
    if chromium_path() is None:
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    page = maps.write_pages(tmp_path, fund=res)["fund"]
    circles = ("(function(){var n=0;['fund_finanziato','fund_finanziato_parzialmente',"
               "'fund_non_finanziato','fund_escluso'].forEach(function(k){var g=pattogis.layers[k];"
               "if(g){n+=g.getLayers().length;}});return n;})()")
    ev = ["pattogis.layers.fund_sites_cluster.getLayers().length", circles,
          "pattogis.layers.fund_sites.getLayers().length"]
    far = check_page(page.as_uri(), tmp_path / "far.png", evaluate=ev)
    assert far.errors == []
    assert far.values == [groups, n - grouped, n]
    bologna = "pattogis.map.setView([44.4949, 11.3426], {z}, {{animate: false}})"
    mid = check_page(page.as_uri(), None, actions=[bologna.format(z=13)], evaluate=ev)
    assert mid.values == [0, n, n]
    close = check_page(page.as_uri(), None, actions=[bologna.format(z=15)], evaluate=ev)
    assert close.values == [0, 0, n]


def test_demonstration_set_only_when_asked_and_labelled(built_layers):
    from pattogis import analysis, maps
    from pattogis.errors import NotFound

    with pytest.raises(NotFound, match="no applications loaded"):
        analysis.fund_geo()
    demo = analysis.fund_geo(demo=True)
    html = maps.render(maps.fund_map(demo))
    assert "assegnazione DIMOSTRATIVA" in html and "Esito della domanda (dimostrativo)" in html
    assert "Domande dimostrative, non reali" in html
