"""The graduatoria as an office files it: CSV (Italian format), XLSX, GeoPackage, and a printable
Italian document (HTML for print, PDF), one line and one reason per applicant.

Writers come from :mod:`pattogis.exports` (atomic, attributed); this module only says what the
fund's documents contain. Money in euros with two decimals (from exact integer cents).
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from pattogis import exports
from pattogis.errors import InputError
from pattogis.fund.fmt import eur
from pattogis.fund.projects import COLUMN_DOCS, OPTIONAL, REQUIRED

FORMATS = exports.FORMATS  # csv, xlsx, gpkg, html, pdf
MEDIA = exports.MEDIA
STATUS_IT = {"finanziato": "Finanziato", "finanziato_parzialmente": "Finanziato parzialmente",
             "non_finanziato": "Idoneo non finanziato", "escluso": "Escluso"}
# result column → Italian header, in the order of the document
COLUMNS_IT = {
    "rank": "Posizione", "project_id": "Codice", "title": "Titolo", "applicant": "Richiedente",
    "applicant_match": "Richiedente riconosciuto", "host_name": "Comune sede",
    "comune_istat": "Codice ISTAT sede", "unione": "Unione del comune sede",
    "territorial_system": "Sistema territoriale", "fragile": "Comune fragile",
    "inside_tu_share": "Quota nel TU", "outside_tu_m2": "Superficie fuori TU (m²)",
    "merit": "Punteggio di merito", "requested_eur": "Importo richiesto (€)",
    "grant_eur": "Contributo massimo (€)", "awarded_eur": "Importo assegnato (€)",
    "status": "Esito", "reason": "Motivazione",
}


def attribution() -> str:
    """Sources of the territory the decisions were made on, plus the applications."""
    from pattogis import layers

    base = (layers.attribution(["comuni", "comuni_indicators", "territorio_urbanizzato"])
            if layers.exists() else "")
    return "; ".join(x for x in (base, "domande: file del richiedente") if x)


def sheet(result: Any) -> pd.DataFrame:
    """The graduatoria (or optimal portfolio) as a table with Italian headers, rank order."""
    t = getattr(result, "table", None)
    if t is None:
        raise InputError("only a graduatoria or an optimal result can be exported", field="mode",
                         hint="run with --mode graduatoria or optimal")
    t = t.copy()
    if "awarded_eur" not in t.columns:
        t["awarded_eur"] = t["awarded_cents"] / 100.0
    if "grant_eur" not in t.columns and "grant_cents" in t.columns:
        t["grant_eur"] = t["grant_cents"] / 100.0
    t["status"] = t["status"].map(lambda s: STATUS_IT.get(s, s))
    if "fragile" in t.columns:
        t["fragile"] = t["fragile"].map(lambda v: "" if pd.isna(v) else ("sì" if v else "no"))
    cols = [c for c in COLUMNS_IT if c in t.columns]
    out = t[cols + (["geometry"] if "geometry" in t.columns else [])]
    out = out.rename(columns=COLUMNS_IT)
    if isinstance(t, gpd.GeoDataFrame) and t.crs is not None:
        return gpd.GeoDataFrame(out, geometry="geometry", crs=t.crs)
    return pd.DataFrame(out.drop(columns="geometry", errors="ignore"))


def html(result: Any, *, generated: str | None = None) -> str:
    """The printable document: title, summary, one line and one reason per applicant."""
    s = sheet(result)
    call = result.call
    summ = result.summary
    doc_cols = ["Posizione", "Codice", "Richiedente", "Comune sede", "Punteggio di merito",
                "Importo richiesto (€)", "Importo assegnato (€)", "Esito", "Motivazione"]
    d = pd.DataFrame(s[[c for c in doc_cols if c in s.columns]])
    for c in ("Importo richiesto (€)", "Importo assegnato (€)"):
        if c in d.columns:
            d[c] = [eur(round(float(v) * 100)) for v in d[c]]
    if "Punteggio di merito" in d.columns:
        d["Punteggio di merito"] = [exports.format_num(v, 3) for v in d["Punteggio di merito"]]
    d["Posizione"] = ["–" if pd.isna(v) else str(int(v)) for v in d["Posizione"]]
    note = ""
    if "tu_derived" in result.table.columns and bool(result.table["tu_derived"].any()):
        note = ("<p class='note'>Il territorio urbanizzato usato per l'ammissibilità è un perimetro "
                "<b>derivato</b> (provvisorio), non il perimetro ufficiale: le motivazioni indicano "
                "i metri quadrati dei siti fuori dal perimetro.</p>")
    demo = ""
    if "source" in result.table.columns and (result.table["source"] == "dimostrativo").all():
        demo = "<p class='warn'>Domande dimostrative: non è una graduatoria reale.</p>"
    # a wide table: landscape pages, and the reason gets the room
    style = ("<style>@page { size: A4 landscape; } td:last-child { width: 38%; } "
             "td, th { font-size: 8.5pt; } tr { page-break-inside: avoid; } "
             "thead { display: table-header-group; }</style>")
    body = (f"{style}{demo}<p><b>{escape(summ.get('message', ''))}</b></p>"
            f"<p>Dotazione {eur(call.budget_cents)}; contributo massimo per intervento "
            f"{eur(call.cap_cents) if call.cap_cents else 'nessuno'}.</p>{note}"
            f"<h2>Graduatoria</h2>"
            + exports.html_table(d, numeric=("Importo richiesto (€)", "Importo assegnato (€)",
                                             "Punteggio di merito", "Posizione")))
    when = generated or datetime.now(UTC).strftime("%d/%m/%Y %H:%M UTC")
    return exports.html_document(f"{call.title} — graduatoria", body,
                                 attribution=attribution(), generated=when)


def to_bytes(result: Any, fmt: str) -> bytes:
    """The document in ``fmt`` (csv | xlsx | gpkg | html | pdf) as bytes, for an HTTP answer."""
    import tempfile

    fmt = _fmt(fmt)
    if fmt == "csv":
        return exports.to_csv_it(sheet(result), attribution=attribution()).encode("utf-8")
    if fmt == "xlsx":
        return exports.xlsx_bytes({"Graduatoria": sheet(result)}, attribution=attribution())
    if fmt == "html":
        return html(result).encode("utf-8")
    if fmt == "pdf":
        return exports.pdf_bytes(html(result))
    with tempfile.TemporaryDirectory(prefix="pattogis-fund-") as d:
        return write(result, Path(d) / "graduatoria.gpkg").read_bytes()


def write(result: Any, path: str | Path) -> Path:
    """Write the document; the format from the suffix (.csv .xlsx .gpkg .html .pdf). Atomic."""
    path = Path(path)
    fmt = _fmt(path.suffix.lstrip("."))
    if fmt == "csv":
        return exports.write_csv_it(sheet(result), path, attribution=attribution())
    if fmt == "xlsx":
        return exports.write_xlsx({"Graduatoria": sheet(result)}, path, attribution=attribution())
    if fmt == "gpkg":
        s = sheet(result)
        if not isinstance(s, gpd.GeoDataFrame):
            raise InputError("a GeoPackage needs the site polygons", field="geometry",
                             hint="give the applications with their polygons")
        return exports.write_gpkg({"graduatoria": s}, path, attribution=attribution())
    if fmt == "html":
        from pattogis.io import atomic_write_text

        atomic_write_text(path, html(result))
        return path
    return exports.html_to_pdf(html(result), path)


def _fmt(fmt: str) -> str:
    f = fmt.lower()
    if f not in FORMATS:
        raise InputError(f"unknown output format '{fmt}'", field="format",
                         hint=f"one of {', '.join(FORMATS)}")
    return f


def template() -> pd.DataFrame:
    """An empty applications table with the documented columns (the CSV template)."""
    cols = list(REQUIRED) + [c for c in OPTIONAL if c not in REQUIRED] + ["wkt", "epsg", "notes"]
    return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})


def template_csv() -> str:
    """The template as an Italian CSV: the header, then one commented line per column saying
    what it holds (lines starting with '#' are skipped when the file is read)."""
    head = exports.to_csv_it(template())
    doc = "".join(f"# {c}: {COLUMN_DOCS.get(c, '')}\n" for c in template().columns)
    return head + doc
