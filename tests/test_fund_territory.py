"""Fund eligibility decided from the territory: known answers on a hand-made territory.

Three comuni side by side, each 2 km x 1 km (EPSG:25832, metres):

    Alfa   999001  x 0..2000     in "Unione dei Comuni dell'Alto Reno"   TU x 0..1000
    Beta   999002  x 2000..4000  in no Unione                            TU x 2000..3000
    Gamma  999003  x 4000..6000  in "Unione Terre Basse"                 TU x 4000..5000

Every TU is the strip y 0..1000 of its x range, so every share and square metre below is exact.
Each test of a rule fails when the rule is removed from ``eligibility``.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from pattogis.errors import InputError
from pattogis.fund import (
    Territory,
    graduatoria,
    load_call,
    optimal,
    projects_from_table,
    validate_projects,
)
from pattogis.fund.territory import match_applicants, normalise_name

CRS = "EPSG:25832"
U_ALTO = "Unione dei Comuni dell'Alto Reno"
U_BASSE = "Unione Terre Basse"


@pytest.fixture
def territory() -> Territory:
    comuni = gpd.GeoDataFrame(
        {"istat": ["999001", "999002", "999003"], "name": ["Alfa", "Beta", "Gamma"],
         "unione": [U_ALTO, None, U_BASSE],
         "territorial_system": ["collina-montagna", "via Emilia", "pianura nord"],
         "fragile": [True, False, True], "fragility_index": [0.7, 0.2, 0.6],
         "pop_total": [1000, 5000, 800]},
        geometry=[shapely.box(0, 0, 2000, 1000), shapely.box(2000, 0, 4000, 1000),
                  shapely.box(4000, 0, 6000, 1000)], crs=CRS)
    tu = gpd.GeoDataFrame({"comune_istat": ["999001", "999002", "999003"], "source": "derived"},
                          geometry=[shapely.box(0, 0, 1000, 1000), shapely.box(2000, 0, 3000, 1000),
                                    shapely.box(4000, 0, 5000, 1000)], crs=CRS)
    return Territory(comuni=comuni, tu=tu)


def call(**eligibility) -> object:
    el = {"min_inside_tu_share": 0.99, "max_outside_tu_m2": 200.0} | eligibility
    return load_call({"id": "t", "title": "prova", "budget_eur": 1_000_000.0,
                      "cap_per_intervention_eur": 100_000.0, "min_funded": None,
                      "eligibility": el})


def site(x: float, y: float = 400.0, side: float = 100.0) -> shapely.Polygon:
    return shapely.box(x, y, x + side, y + side)


def apps(rows: list[tuple], **cols) -> gpd.GeoDataFrame:
    """rows: (project_id, applicant, geometry[, merit])."""
    df = pd.DataFrame({"project_id": [r[0] for r in rows], "applicant": [r[1] for r in rows],
                       "requested_eur": 50_000.0,
                       "merit": [r[3] if len(r) > 3 else 50.0 + i for i, r in enumerate(rows)],
                       **cols})
    return gpd.GeoDataFrame(df, geometry=[r[2] for r in rows], crs=CRS)


def result(t: gpd.GeoDataFrame, territory: Territory, c=None) -> pd.DataFrame:
    p = validate_projects(t, territory=territory)
    return graduatoria(p, c or call()).table.set_index("project_id")


# --- applicants --------------------------------------------------------------------------------


def test_names_are_matched_tolerantly_and_the_match_is_shown(territory):
    names = pd.Series(["UNIONE ALTO RENO", "Unione dei comuni dell’Alto Rèno", "alto reno",
                       "Comune di Bèta", "Beta", "Città di Beta", "Unione Pippo", "Comune di Alfa"])
    m = match_applicants(names, territory)
    assert m["applicant_match"].tolist()[:6] == [U_ALTO, U_ALTO, U_ALTO, "Comune di Beta",
                                                 "Comune di Beta", "Comune di Beta"]
    assert m["applicant_kind"].tolist() == ["unione"] * 3 + ["comune"] * 3 + [None, "comune"]
    assert m["applicant_unione"].tolist()[7] == U_ALTO
    assert normalise_name("Unione dei Comuni dell'Alto Rèno") == "unione dei comuni dell alto reno"
    r = result(apps([("A", "UNIONE ALTO RENO", site(100))]), territory)
    assert r.at["A", "status"] == "finanziato"
    assert "riconosciuto come 'Unione dei Comuni dell'Alto Reno'" in r.at["A", "reason"]


def test_unknown_applicant_is_excluded_and_the_rest_processed(territory):
    r = result(apps([("A", "Unione Pippo", site(100)), ("B", U_ALTO, site(300))]), territory)
    assert r.at["A", "status"] == "escluso"
    assert r.at["A", "reason"].startswith("Escluso: richiedente 'Unione Pippo' non riconosciuto")
    assert r.at["B", "status"] == "finanziato"


def test_a_comune_in_an_unione_is_excluded_naming_its_unione(territory):
    # declaring no Unione (or applicant_type 'unione') does not help: the table decides
    t = apps([("A", "Comune di Alfa", site(100))], applicant_type=["unione"], unione=[None])
    r = result(t, territory)
    assert r.at["A", "status"] == "escluso"
    assert r.at["A", "reason"] == ("Escluso: il comune aderisce a un'Unione (Unione dei Comuni "
                                   "dell'Alto Reno), che è il soggetto titolato a presentare "
                                   "domanda — Verifiche: tipo di richiedente dichiarato 'unione', "
                                   "risulta 'comune'")
    # the rule is a call parameter: off, the same application is funded
    assert result(t, territory, call(comune_only_if_no_unione=False)).at["A", "status"] == "finanziato"


def test_a_comune_in_no_unione_is_eligible_in_its_own_territory_only(territory):
    r = result(apps([("A", "Comune di Beta", site(2100)), ("B", "Comune di Beta", site(100))]),
               territory)
    assert r.at["A", "status"] == "finanziato"
    assert r.at["B", "reason"] == ("Escluso: il sito non è nel territorio del comune richiedente "
                                   "(si trova a Alfa)")


def test_an_unione_applying_outside_its_comuni_is_excluded(territory):
    r = result(apps([("A", U_ALTO, site(4100)), ("B", U_ALTO, site(2100)), ("C", U_ALTO, site(100))],
                    unione=[U_ALTO] * 3),   # the declared Unione is not believed
               territory)
    assert r.at["A", "reason"].startswith(
        "Escluso: il sito non è nel territorio dell'Unione richiedente (si trova in: Gamma, "
        "Unione Terre Basse)")
    assert r.at["B", "reason"].startswith(
        "Escluso: il sito non è nel territorio dell'Unione richiedente (si trova in: Beta, "
        "comune non associato")
    assert r.at["C", "status"] == "finanziato"
    off = result(apps([("A", U_ALTO, site(4100))]), territory, call(site_in_applicant_unione=False))
    assert off.at["A", "status"] == "finanziato"


def test_a_site_outside_the_metropolitan_area_is_excluded(territory):
    r = result(apps([("A", U_ALTO, site(100, y=5000))]), territory)
    assert r.at["A", "reason"] == "Escluso: il sito non ricade nel territorio della Città metropolitana"


# --- the site: host comune, declarations, indicators --------------------------------------------


def test_host_comune_is_the_largest_share_and_a_wrong_declaration_is_reported(territory):
    # 70 x 100 m in Alfa (x 1930..2000 is outside Alfa's TU, so keep y inside TUs: use the TU
    # of Beta too) -> a site 100 m wide across x=2000: 30 m in Alfa, 70 m in Beta
    s = shapely.box(1970, 400, 2070, 500)
    t = apps([("A", "Comune di Beta", s)], comune_istat=["999001"])
    p = validate_projects(t, territory=territory)
    assert p.at[0, "comune_istat"] == "999002" and p.at[0, "host_name"] == "Beta"
    assert p.at[0, "host_share"] == pytest.approx(0.7)
    assert p.at[0, "n_comuni"] == 2
    assert "il sito è a cavallo di 2 comuni: sede attribuita a Beta (70% della superficie)" in p.at[0, "checks"]
    assert "comune dichiarato 999001, ma il sito è a Beta (999002)" in p.at[0, "checks"]


def test_indicators_come_from_the_territory_and_contradictions_are_reported(territory):
    t = apps([("A", U_BASSE, site(4100)), ("B", "Comune di Beta", site(2100))],
             territorial_system=["via Emilia", None], fragile=["no", None],
             population=["99999", None], fragility_index=[None, "0,2"])
    p = validate_projects(t, territory=territory, decimal_comma=True)
    assert p["territorial_system"].tolist() == ["pianura nord", "via Emilia"]
    assert p["fragile"].tolist() == [True, False]
    assert p["population"].tolist() == [800, 5000]
    assert p["fragility_index"].tolist() == [0.6, 0.2]
    c = p.at[0, "checks"]
    assert "territorial_system dichiarato via Emilia, dal territorio risulta pianura nord" in c
    assert "fragile dichiarato False, dal territorio risulta fragile" in c
    assert "population dichiarato 99999, dal territorio risulta 800" in c
    assert p.at[1, "checks"] is None  # a declaration that agrees is not reported


def test_equity_constraints_work_from_the_territory_without_declared_systems(territory):
    # issue 11: min_share_priority_systems used to fail with "territorial_system is missing"
    t = apps([("A", U_ALTO, site(100), 90.0), ("B", "Comune di Beta", site(2100), 95.0),
              ("C", U_BASSE, site(4100), 10.0)])
    p = validate_projects(t, territory=territory)
    c = load_call({"id": "t", "title": "t", "budget_eur": 100_000.0,
                   "cap_per_intervention_eur": 50_000.0, "min_funded": None,
                   "eligibility": {"min_inside_tu_share": 0.99},
                   "optimal": {"min_share_priority_systems": 1.0, "alternatives": 0,
                               "assess_constraints": False}})
    r = optimal(p, c).table.set_index("project_id")
    # the two highest merits (B, A) would win; only Alfa and Gamma are priority systems
    assert set(r.index[r["awarded_cents"] > 0]) == {"A", "C"}


# --- the TU ---------------------------------------------------------------------------------------


def test_tu_tolerance_in_share_and_square_metres_with_the_reason(territory):
    # Alfa's TU ends at x=1000. 100 x 100 m sites sticking out by 0.5 m (50 m², 0.5%),
    # 3 m (300 m², 3%) and 1.5 m (150 m², 1.5%)
    t = apps([("A", U_ALTO, site(900.5)), ("B", U_ALTO, site(903)), ("C", U_ALTO, site(901.5))])
    r = result(t, territory, call(min_inside_tu_share=0.99, max_outside_tu_m2=200.0))
    assert r.at["A", "status"] == "finanziato"
    assert "50 m² fuori dal TU, entro la tolleranza del bando (perimetro derivato)" in r.at["A", "reason"]
    assert r.at["B", "reason"] == (
        "Escluso: il sito è fuori dal territorio urbanizzato: 300 m² fuori dal perimetro (quota "
        "interna 97%), oltre la tolleranza del bando (almeno 99% della superficie nel TU e al più "
        "200 m² fuori); perimetro del TU derivato (provvisorio), non ufficiale")
    assert r.at["C", "status"] == "escluso"          # 1.5% out: the share rule
    # the m² rule alone: 40 m² allowed, A's 50 m² are too many though 99.5% is inside
    r2 = result(t, territory, call(min_inside_tu_share=0.9, max_outside_tu_m2=40.0))
    assert r2.at["A", "reason"].startswith("Escluso: il sito è fuori dal territorio urbanizzato: 50 m²")
    assert r2.at["C", "status"] == "escluso"
    # an official perimeter is not called derived
    official = Territory(territory.comuni, territory.tu.assign(source="official"))
    r3 = result(t, official)
    assert "derivato" not in r3.at["B", "reason"] and "derivato" not in r3.at["A", "reason"]


def test_declared_tu_share_is_not_believed(territory):
    t = apps([("A", U_ALTO, site(1100))], inside_tu_share=[1.0])   # wholly outside the TU
    r = result(t, territory)
    assert r.at["A", "status"] == "escluso"
    assert r.at["A", "inside_tu_share"] == 0.0 and r.at["A", "outside_tu_m2"] == pytest.approx(10_000)
    assert "quota nel TU dichiarata 100%, calcolata 0%" in r.at["A", "reason"]


# --- bad input -------------------------------------------------------------------------------------


def write_csv(tmp_path, body: str):
    p = tmp_path / "domande.csv"
    p.write_text(body, encoding="utf-8")
    return p


HEAD = "project_id;applicant;requested_eur;merit;wkt;epsg\n"
OK1 = "A;Unione Alto Reno;50.000,00;70;POLYGON((100 400,200 400,200 500,100 500,100 400));25832\n"
OK2 = "B;Comune di Beta;40.000,00;60;POLYGON((2100 400,2200 400,2200 500,2100 500,2100 400));25832\n"


@pytest.mark.parametrize("body,field,rows,what", [
    (HEAD + OK1 + OK1, "project_id", [1, 2], "duplicate project_id"),
    (HEAD + OK1 + OK2.replace("40.000,00", "-5,00"), "requested_eur", [2], "requested_eur must be"),
    (HEAD + OK1 + OK2.replace("40.000,00", "tanti"), "requested_eur", [2], "requested_eur must be"),
    (HEAD.replace("epsg\n", "epsg;colore\n") + OK1.replace("\n", ";rosso\n"), "colore", [],
     "unknown column"),
    (HEAD + OK1 + OK2.replace("POLYGON((2100 400,2200 400,2200 500,2100 500,2100 400))",
                              "POLYGON((2100 400,2200 500,2200 400,2100 500,2100 400))"),
     "geometry", [2], "invalid site polygon"),
    (HEAD + OK1 + OK2.replace("POLYGON((2100 400,2200 400,2200 500,2100 500,2100 400))",
                              "POLYGON EMPTY"), "geometry", [2], "missing or empty site geometry"),
    (HEAD + OK1 + OK2.replace(";25832\n", ";\n"), "epsg", [2], "no CRS"),
    (HEAD + OK1 + OK2.replace("POLYGON((2100 400,2200 400,2200 500,2100 500,2100 400))", ""),
     "wkt", [2], "empty site geometry"),
])
def test_bad_files_name_file_rows_and_field(tmp_path, territory, body, field, rows, what):
    path = write_csv(tmp_path, body)
    with pytest.raises(InputError) as e:
        projects_from_table(path, territory=territory)
    assert what in str(e.value)
    assert e.value.field == field and e.value.rows == rows and e.value.file == str(path)


def test_a_gpkg_without_crs_and_points_are_refused(tmp_path, territory):
    t = apps([("A", U_ALTO, site(100))])
    p = tmp_path / "nocrs.gpkg"
    t.set_crs(None, allow_override=True).to_file(p)
    with pytest.raises(InputError, match="no CRS") as e:
        projects_from_table(p, territory=territory)
    assert e.value.field == "geometry"
    pts = apps([("A", U_ALTO, shapely.Point(150, 450))])
    with pytest.raises(InputError, match="must be a polygon") as e:
        validate_projects(pts, territory=territory)
    assert e.value.rows == [1]
    with pytest.raises(InputError, match="no site polygons"):
        validate_projects(pd.DataFrame(pts.drop(columns="geometry")), territory=territory)


def test_csv_italian_format_with_wkt_reads_and_decides(tmp_path, territory):
    path = write_csv(tmp_path, HEAD + OK1 + OK2)
    p = projects_from_table(path, territory=territory)
    assert p["requested_cents"].tolist() == [5_000_000, 4_000_000]
    assert p["comune_istat"].tolist() == ["999001", "999002"]
    r = graduatoria(p, call()).table
    assert (r["status"] == "finanziato").all()


def test_template_has_the_documented_columns_and_reads_back(tmp_path, territory):
    from pattogis.fund import export
    from pattogis.fund.projects import COLUMN_DOCS

    text = export.template_csv()
    head = text.lstrip("\ufeff").splitlines()[0].split(";")
    assert set(head) == set(COLUMN_DOCS) and head[:2] == ["project_id", "applicant"]
    for c in head:
        assert f"# {c}: " in text
    # an office fills in a row under the header: the file reads, the comments are skipped
    lines = text.splitlines(keepends=True)
    row = {c: "" for c in head} | {"project_id": "A", "applicant": "Unione Alto Reno",
                                   "requested_eur": "1.000,50", "merit": "3,5",
                                   "wkt": "POLYGON((100 400,200 400,200 500,100 500,100 400))",
                                   "epsg": "25832"}
    path = write_csv(tmp_path, lines[0] + ";".join(row[c] for c in head) + "\n" + "".join(lines[1:]))
    p = projects_from_table(path, territory=territory)
    assert p.at[0, "requested_cents"] == 100_050 and p.at[0, "merit"] == 3.5


def test_outputs_of_the_graduatoria(tmp_path, territory):
    import openpyxl
    import pypdf

    from pattogis.fund import export

    t = apps([("A", "Unione Alto Reno", site(100)), ("B", "Unione Pippo", site(300)),
              ("C", "Comune di Alfa", site(500))])
    res = graduatoria(validate_projects(t, territory=territory), call())
    paths = {f: export.write(res, tmp_path / f"g.{f}") for f in ("csv", "xlsx", "gpkg", "html", "pdf")}
    csv = paths["csv"].read_text(encoding="utf-8-sig").splitlines()
    assert csv[0].startswith("Posizione;Codice;")
    assert any(line.startswith("1;A;") and ";50000,0;" in line for line in csv)
    assert csv[-1].startswith("Fonti: ")
    ws = openpyxl.load_workbook(paths["xlsx"])["Graduatoria"]
    assert [c.value for c in ws[1]][:2] == ["Posizione", "Codice"] and ws.max_row == 4
    g = gpd.read_file(paths["gpkg"], layer="graduatoria")
    assert g.crs.to_epsg() == 25832 and len(g) == 3 and set(g["Codice"]) == {"A", "B", "C"}
    text = " ".join(pypdf.PdfReader(paths["pdf"]).pages[i].extract_text()
                    for i in range(len(pypdf.PdfReader(paths["pdf"]).pages)))
    flat = " ".join(text.split())
    for needle in ("graduatoria", "Motivazione", "Unione Pippo", "non riconosciuto",
                   "aderisce a un'Unione", "50.000,00 €", "perimetro derivato"):
        assert needle in flat, needle
    assert np.all([pid in flat for pid in ("A", "B", "C")])
