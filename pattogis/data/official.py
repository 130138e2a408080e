"""Readers of the official per-comune tables of the kit (SOURCES.md sections 14-16).

Each reader validates what it needs (sheet, header row, columns, numbers), names the file, row
(1-based, as a spreadsheet shows it) and field of what is wrong, and returns one row per comune
keyed by the 6-digit ISTAT code ``istat``, restricted to the codes asked for. Pure functions: they
read a file and return a frame; the build decides what is written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio

from pattogis.errors import InputError

INNER_AREAS = "istat_aree_interne/mappa-ai-2020-elenco-classificazione-comuni.xlsx"
SNAI = "istat_aree_interne/08_elenco-aree-comuni.xlsx"
IRPEF = "mef_irpef/Redditi_e_principali_variabili_IRPEF_su_base_comunale_CSV_2021.csv"
ISPRA = "ispra_idrogeo/pir_comuni_2020.csv"

# Inner-areas classes of the 2020 map, ordered from the pole to the most remote comune.
AI_CLASSES = {"A": 0, "B": 1, "C": 2, "D": 3, "E": 4, "F": 5}
AI_LABELS = {"A": "Polo", "B": "Polo intercomunale", "C": "Cintura", "D": "Intermedio",
             "E": "Periferico", "F": "Ultraperiferico"}


def _sheet_with_header(path: Path, label: str, layer: str | None, first_col: str) -> pd.DataFrame:
    """Read a sheet whose header row is not the first: find the row whose cells include
    ``first_col`` and use it as the header (spreadsheet rows are kept for messages)."""
    try:
        raw = pyogrio.read_dataframe(path, layer=layer, read_geometry=False)
    except Exception as e:  # pyogrio raises several types; the message is what matters
        raise InputError(f"cannot read the sheet {layer!r}: {e}", file=label) from e
    raw = pd.DataFrame(raw).astype(object)
    hit = raw.apply(lambda r: r.astype(str).str.strip().eq(first_col).any(), axis=1).to_numpy()
    if not hit.any():
        raise InputError(f"no header row with a column {first_col!r} in sheet {layer!r}",
                         file=label, field=first_col)
    h = int(np.flatnonzero(hit)[0])
    header = [" ".join(str(c).split()) if c is not None and str(c) != "nan" else f"_col{i}"
              for i, c in enumerate(raw.iloc[h])]
    body = raw.iloc[h + 1:].copy()
    body.columns = header
    # GDAL's XLSX driver with generic field names reads sheet row 1 as data row 0.
    body["_row"] = np.arange(h + 2, h + 2 + len(body))
    return body


def _codes(s: pd.Series) -> pd.Series:
    return s.astype(str).str.strip().str.replace(r"\.0$", "", regex=True).str.zfill(6)


def _num(df: pd.DataFrame, col: str, label: str) -> pd.Series:
    v = pd.to_numeric(df[col].astype(str).str.strip().str.replace(",", ".", regex=False),
                      errors="coerce")
    bad = v.isna() & df[col].notna()
    if bad.any():
        rows = df.loc[bad, "_row"].astype(int).tolist() if "_row" in df else bad[bad].index.tolist()
        raise InputError("value is not a number", file=label, rows=rows, field=col)
    return v


def _require(df: pd.DataFrame, cols: list[str], label: str) -> None:
    for c in cols:
        if c not in df.columns:
            raise InputError("column missing", file=label, field=c,
                             hint=f"Columns found: {', '.join(map(str, df.columns))}")


def _complete(df: pd.DataFrame, codes: list[str], label: str, field: str) -> pd.DataFrame:
    df = df[df["istat"].isin(codes)].drop_duplicates("istat")
    missing = sorted(set(codes) - set(df["istat"]))
    if missing:
        raise InputError(f"{len(missing)} comuni have no row: {', '.join(missing[:10])}",
                         file=label, field=field)
    return df.set_index("istat").loc[codes].reset_index()


def read_inner_areas(path: Path, codes: list[str], label: str = INNER_AREAS) -> pd.DataFrame:
    """ISTAT/NUVAP inner-areas map 2020: class (A-F), minutes to the nearest pole, census 2020.

    Returns istat, ai_class ('A'..'F'), ai_class_rank (0 = pole .. 5 = ultraperiferico),
    ai_minutes_to_pole (minutes, 0 for a pole), pop_census_2020 (residents, 2020 census).
    """
    df = _sheet_with_header(path, label, "DATI", "PROCOM_T")
    cls_col = next((c for c in df.columns if c.endswith("COD_AI_2020")), None)
    min_col = next((c for c in df.columns if "tempi di percorrenza" in c.lower()), None)
    pop_col = next((c for c in df.columns if "censimento 2020" in c.lower()), None)
    for name, c in (("COD_AI_2020", cls_col), ("MEDIA tempi di percorrenza", min_col),
                    ("Popolazione residente censimento 2020", pop_col)):
        if c is None:
            raise InputError("column missing", file=label, field=name)
    df = df[df["PROCOM_T"].notna()].copy()
    df["istat"] = _codes(df["PROCOM_T"])
    df = df[df["istat"].isin(codes)]
    cls = df[cls_col].astype(str).str.strip()
    bad = ~cls.isin(list(AI_CLASSES))
    if bad.any():
        raise InputError("inner-areas class is not one of A-F", file=label,
                         rows=df.loc[bad, "_row"].astype(int).tolist(), field="COD_AI_2020")
    out = pd.DataFrame({
        "istat": df["istat"], "ai_class": cls, "ai_class_rank": cls.map(AI_CLASSES).astype(float),
        "ai_minutes_to_pole": _num(df, min_col, label),
        "pop_census_2020": _num(df, pop_col, label),
    })
    return _complete(out, codes, label, "PROCOM_T")


def read_snai(path: Path, codes: list[str], label: str = SNAI) -> pd.DataFrame:
    """SNAI 2021-27 project areas: the area name of each comune in one (None elsewhere).

    Every ``Comuni ...`` sheet is read (financed 2021-27, confirmed 2014-20, not financed): the
    Appennino Bolognese area is in the last one. Returns istat, snai_area, snai_sheet.
    """
    try:
        sheets = [str(n) for n, _ in pyogrio.list_layers(path)]
    except Exception as e:
        raise InputError(f"cannot read the workbook: {e}", file=label) from e
    frames = []
    for sh in (s for s in sheets if s.startswith("Comuni")):
        df = _sheet_with_header(path, label, sh, "PRO_COM_T")
        area_col = next((c for c in df.columns if c.startswith("Aree SNAI 2021")), None)
        if area_col is None:
            raise InputError(f"no 'Aree SNAI 2021 - 2027' column in sheet {sh!r}", file=label)
        df = df[df["PRO_COM_T"].notna()]
        frames.append(pd.DataFrame({"istat": _codes(df["PRO_COM_T"]),
                                    "snai_area": df[area_col].astype(str).str.strip(),
                                    "snai_sheet": sh}))
    if not frames:
        raise InputError("no 'Comuni ...' sheet in the workbook", file=label)
    allc = pd.concat(frames, ignore_index=True).drop_duplicates("istat")
    out = pd.DataFrame({"istat": codes}).merge(allc, on="istat", how="left")
    return out.astype({"snai_area": object, "snai_sheet": object}).where(out.notna(), None)


def read_irpef(path: Path, codes: list[str], label: str = IRPEF) -> pd.DataFrame:
    """MEF income-tax table, tax year 2021: taxpayers and taxable income (EUR) per comune.

    Returns istat, taxpayers (with taxable income), income_per_taxpayer_eur (taxable income /
    those taxpayers, EUR)."""
    try:
        df = pd.read_csv(path, sep=";", dtype=str, encoding="utf-8-sig", index_col=False)
    except UnicodeDecodeError:
        df = pd.read_csv(path, sep=";", dtype=str, encoding="latin-1", index_col=False)
    # Per taxpayer WITH taxable income (the table's "Frequenza" of the same row), as the MEF's
    # own averages: San Lazzaro 28,931 EUR, Castel del Rio 19,3xx EUR (SOURCES.md section 15).
    code, n, amount = ("Codice Istat Comune", "Reddito imponibile - Frequenza",
                       "Reddito imponibile - Ammontare in euro")
    _require(df, [code, n, amount], label)
    df["_row"] = np.arange(2, len(df) + 2)
    df["istat"] = _codes(df[code])
    df = df[df["istat"].isin(codes)]
    tp, inc = _num(df, n, label), _num(df, amount, label)
    zero = tp <= 0
    if zero.any():
        raise InputError("no taxpayers", file=label, rows=df.loc[zero, "_row"].tolist(), field=n)
    out = pd.DataFrame({"istat": df["istat"], "taxpayers": tp, "income_per_taxpayer_eur": inc / tp})
    return _complete(out, codes, label, code)


def read_ispra(path: Path, codes: list[str], label: str = ISPRA) -> pd.DataFrame:
    """ISPRA IdroGEO indicators 2020: share (%) of the comune's area in flood and landslide hazard.

    Returns istat, flood_high_pct (high-probability scenario P3), flood_medium_pct (medium
    scenario P2, which in the ISPRA mosaic contains the P3 areas), landslide_p3p4_pct (PAI classes
    P3 + P4, high and very high). Percentages of the comune's area, 0..100."""
    df = pd.read_csv(path, dtype=str)
    cols = {"area_id_H_p": "flood_high_pct", "area_id_M_p": "flood_medium_pct",
            "area_fr_P3P4_p": "landslide_p3p4_pct"}
    _require(df, ["CMN", *cols], label)
    df["_row"] = np.arange(2, len(df) + 2)
    df["istat"] = _codes(df["CMN"])
    df = df[df["istat"].isin(codes)]
    out = pd.DataFrame({"istat": df["istat"]})
    for c, new in cols.items():
        v = _num(df, c, label)
        # ISPRA's own shares overshoot 100 by rounding of the mosaic areas (100.009 for a comune
        # wholly in the medium flood scenario): tolerated up to 100.5 and clipped; more is wrong.
        bad = (v < 0) | (v > 100.5)
        if bad.any():
            raise InputError("a percentage outside 0-100", file=label,
                             rows=df.loc[bad, "_row"].tolist(), field=c)
        out[new] = v.clip(upper=100.0).to_numpy()
    return _complete(out, codes, label, "CMN")
