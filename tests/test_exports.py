"""Exports: Italian CSV, XLSX, GeoPackage and PDF, atomic and with their sources."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pypdf
import pytest
import shapely

from pattogis import exports


def test_csv_is_italian_and_attributed(tmp_path):
    df = pd.DataFrame({"comune": ["Bazzano"], "quota_ha": [1234.5]})
    path = exports.write_csv_it(df, tmp_path / "x.csv", attribution="ISTAT (CC BY 4.0)")
    text = path.read_text(encoding="utf-8-sig").splitlines()
    assert text == ["comune;quota_ha", "Bazzano;1234,5", "Fonti: ISTAT (CC BY 4.0)"]


def test_xlsx_round_trip_with_sources_sheet(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]})
    path = exports.write_xlsx({"graduatoria": df}, tmp_path / "x.xlsx", attribution="OSM")
    back = pd.read_excel(path, sheet_name=None)
    assert list(back) == ["graduatoria", "Fonti"]
    pd.testing.assert_frame_equal(back["graduatoria"], df)
    assert back["Fonti"].iloc[0, 0] == "OSM"


def test_gpkg_refuses_a_layer_without_crs_and_leaves_nothing(tmp_path):
    good = gpd.GeoDataFrame({"id": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:25832")
    bad = gpd.GeoDataFrame({"id": [1]}, geometry=[shapely.box(0, 0, 1, 1)])
    target = tmp_path / "x.gpkg"
    with pytest.raises(ValueError, match="'bad' has no CRS"):
        exports.write_gpkg({"good": good, "bad": bad}, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    exports.write_gpkg({"good": good}, target, attribution="DPC")
    assert gpd.read_file(target, layer="good").crs.to_epsg() == 25832


def test_pdf_text_extracts(tmp_path):
    body = exports.html_table(pd.DataFrame({"Richiedente": ["Unione Terre di Pianura"],
                                             "Importo": [exports.format_eur(22981447)]}),
                              numeric=["Importo"])
    html = exports.html_document("Graduatoria", body, attribution="ISTAT", generated="oggi")
    path = exports.html_to_pdf(html, tmp_path / "g.pdf")
    text = pypdf.PdfReader(path).pages[0].extract_text()
    assert "Unione Terre di Pianura" in text and "229.814,47 €" in text and "Fonti: ISTAT" in text


def test_italian_number_formats():
    assert exports.format_eur(22981447) == "229.814,47 €"
    assert exports.format_eur(-5) == "-0,05 €"
    assert exports.format_num(1234.5) == "1.234,50"


def test_xlsx_drops_control_characters_instead_of_failing():
    import io

    from pattogis.exports import xlsx_bytes

    data = xlsx_bytes({"proposte": pd.DataFrame({"titolo": ["Comparto\x08 nord"], "ha": [1.25]})})
    back = pd.read_excel(io.BytesIO(data), sheet_name="proposte")
    assert back["titolo"].tolist() == ["Comparto nord"] and back["ha"].tolist() == [1.25]
