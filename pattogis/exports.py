"""Exports an office attaches to its acts: CSV in the Italian format, XLSX, GeoPackage, PDF.

Every writer is atomic (a temporary file beside the target, moved into place on success), and
every export carries the attribution of the data it was made from: a last ``Fonti`` line in CSV,
a ``Fonti`` sheet in XLSX, a ``fonti`` metadata item in the GeoPackage, and the document's footer
in HTML/PDF.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from pattogis.io import atomic_path

FORMATS = ("csv", "xlsx", "gpkg", "html", "pdf")
#: The media type of each export format (and of JSON answers), for HTTP responses.
MEDIA = {"csv": "text/csv; charset=utf-8",
         "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "gpkg": "application/geopackage+sqlite3", "html": "text/html; charset=utf-8",
         "pdf": "application/pdf", "json": "application/json"}


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(df.drop(columns="geometry")) if "geometry" in df.columns else df


def no_nan(o: Any) -> Any:
    """NaN and infinities as JSON null, through dicts and lists (JSON has no NaN; a year never
    reached is null)."""
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: no_nan(v) for k, v in o.items()}
    if isinstance(o, list):
        return [no_nan(v) for v in o]
    return o


def to_csv_it(df: pd.DataFrame, *, attribution: str | None = None) -> str:
    """CSV as an Italian spreadsheet opens it: ``;`` separator, decimal comma, UTF-8 with BOM.

    The attribution, when given, is the last line (``Fonti: ...``).
    """
    buf = io.StringIO()
    _plain(df).to_csv(buf, sep=";", decimal=",", index=False, quoting=csv.QUOTE_MINIMAL)
    text = buf.getvalue()
    if attribution:
        text += f"Fonti: {attribution}\n"
    return "\ufeff" + text


def write_csv_it(df: pd.DataFrame, path: str | Path, *, attribution: str | None = None) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(to_csv_it(df, attribution=attribution), encoding="utf-8")
    return Path(path)


def write_xlsx(sheets: dict[str, pd.DataFrame], path: str | Path, *,
               attribution: str | None = None) -> Path:
    """One sheet per frame (names cut to Excel's 31 characters), plus a ``Fonti`` sheet."""
    data = xlsx_bytes(sheets, attribution=attribution)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_gpkg(layers: dict[str, gpd.GeoDataFrame], path: str | Path, *,
               attribution: str | None = None) -> Path:
    """Every frame as a layer of one GeoPackage, written whole or not at all."""
    if not layers:
        raise ValueError("nothing to export: no layers given")
    with atomic_path(path) as tmp:
        for name, gdf in layers.items():
            if gdf.crs is None:
                raise ValueError(f"layer {name!r} has no CRS: refusing to write it without one")
            gdf.to_file(tmp, layer=name, driver="GPKG",
                        metadata={"fonti": attribution} if attribution else None)
    return Path(path)


def html_to_pdf(html: str, path: str | Path, *, base_url: str | Path | None = None) -> Path:
    """Render a printable HTML document to PDF with WeasyPrint (CSS paged media)."""
    # Optional heavy import: only the PDF exports need WeasyPrint and its Pango libraries.
    import weasyprint

    with atomic_path(path) as tmp:
        weasyprint.HTML(string=html, base_url=str(base_url) if base_url else None).write_pdf(tmp)
    return Path(path)


def pdf_bytes(html: str) -> bytes:
    """The same rendering, in memory (for an HTTP response)."""
    import weasyprint  # optional heavy import, as above

    return weasyprint.HTML(string=html).write_pdf()


def _xlsx_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Text cells without the control characters XLSX cannot hold (a pasted title, a client's
    parameter): openpyxl refuses the whole file otherwise."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    out = df.copy()
    for c in out.columns:
        if not pd.api.types.is_numeric_dtype(out[c]) and not pd.api.types.is_bool_dtype(out[c]):
            out[c] = [ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in out[c]]
    return out


def xlsx_bytes(sheets: dict[str, pd.DataFrame], *, attribution: str | None = None) -> bytes:
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as xl:
        for name, df in sheets.items():
            _xlsx_safe(_plain(df)).to_excel(xl, sheet_name=name[:31], index=False)
        if attribution:
            pd.DataFrame({"Fonti": [attribution]}).to_excel(xl, sheet_name="Fonti", index=False)
    return buf.getvalue()


def format_eur(cents: int) -> str:
    """Integer cents as an Italian amount: 22981447 -> '229.814,47 €'."""
    sign = "-" if cents < 0 else ""
    euros, c = divmod(abs(int(cents)), 100)
    return f"{sign}{euros:,}".replace(",", ".") + f",{c:02d} €"


def format_num(x: float, decimals: int = 2) -> str:
    """A number in the Italian format: 1234.5 -> '1.234,50'."""
    s = f"{x:,.{decimals}f}"
    return s.replace(",", "\x00").replace(".", ",").replace("\x00", ".")


PRINT_CSS = """
@page { size: A4; margin: 18mm 15mm 20mm 15mm;
        @bottom-center { content: "pagina " counter(page) " di " counter(pages); font-size: 8pt; } }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 9.5pt; color: #222; }
h1 { font-size: 15pt; margin: 0 0 4mm 0; } h2 { font-size: 12pt; margin: 6mm 0 2mm 0; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0; }
th, td { border: 0.3pt solid #999; padding: 1.2mm 1.5mm; vertical-align: top; }
th { background: #eee; text-align: left; } td.num { text-align: right; white-space: nowrap; }
.note { color: #555; font-size: 8.5pt; } .warn { color: #a00; font-weight: bold; }
footer { margin-top: 6mm; font-size: 8pt; color: #555; border-top: 0.3pt solid #999; }
"""


def html_table(df: pd.DataFrame, *, numeric: Iterable[str] = ()) -> str:
    """A plain HTML table (values escaped); columns in ``numeric`` right-aligned."""
    numeric = set(numeric)
    head = "".join(f"<th>{escape(str(c))}</th>" for c in df.columns)
    rows = []
    for rec in _plain(df).itertuples(index=False):
        cells = "".join(
            f'<td class="num">{escape(str(v))}</td>' if c in numeric else f"<td>{escape(str(v))}</td>"
            for c, v in zip(df.columns, rec, strict=True))
        rows.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def html_document(title: str, body: str, *, attribution: str, generated: str) -> str:
    """A printable Italian document: title, body, sources and generation note in the footer."""
    return (f'<!DOCTYPE html><html lang="it"><head><meta charset="utf-8"><title>{escape(title)}'
            f"</title><style>{PRINT_CSS}</style></head><body><h1>{escape(title)}</h1>{body}"
            f"<footer>Fonti: {escape(attribution)}<br>Generato da pattogis il {escape(generated)}."
            f"</footer></body></html>")
