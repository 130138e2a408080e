"""The project table of a fund call: reading, checking, and the share of each site inside the TU.

Columns (one row per project):

========================  =====================================================================
project_id                str, unique, required
title                     str (defaults to project_id)
applicant                 str, required: the Unione or comune that applies
applicant_type            'unione' | 'comune', required
unione                    Unione of the host comune, or null (for an Unione applicant a null
                          means "the applicant itself")
comune_istat              6-digit ISTAT code of the host comune (zero-padded if given as number)
territorial_system        'collina-montagna' | 'via Emilia' | 'pianura nord' (or null)
fragile                   bool (or null): the host comune is fragile
fragility_index           float 0..1 (or null)
population                int >= 0: residents of the host comune (or null)
requested_eur             float > 0, euros (kept exactly as integer cents in ``requested_cents``)
merit                     float, finite, higher is better
inside_tu_share           float 0..1: share of the site area inside the territorio urbanizzato;
                          computed from the site polygon when missing and a TU layer is given
locked                    'in' | 'out' | null (optimal mode only)
geometry                  site polygon (optional), EPSG:25832 after reading
========================  =====================================================================

Rows in error messages are numbered from 1 at the first data record (CSV line = row + 1).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis import config
from pattogis.errors import InputError
from pattogis.fund.call import APPLICANT_TYPES
from pattogis.fund.fmt import to_cents_array

REQUIRED = ("project_id", "applicant", "applicant_type", "requested_eur", "merit")
OPTIONAL = ("title", "unione", "comune_istat", "territorial_system", "fragile",
            "fragility_index", "population", "inside_tu_share", "locked")
_TRUE = {"true", "1", "si", "sì", "yes", "y", "vero", "t"}
_FALSE = {"false", "0", "no", "n", "falso", "f"}


def _missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and np.isnan(v):
        return True
    if v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, str) and v.strip() == ""


def _text(values: pd.Series) -> list[str | None]:
    out: list[str | None] = []
    for v in values.tolist():
        if _missing(v):
            out.append(None)
        elif isinstance(v, float) and v.is_integer():
            out.append(str(int(v)))  # 12.0 read from a numeric column → '12'
        else:
            out.append(str(v).strip())
    return out


def _rows(mask: np.ndarray) -> list[int]:
    return [int(i) + 1 for i in np.flatnonzero(mask)]


def _number(values: pd.Series, decimal_comma: bool) -> tuple[np.ndarray, np.ndarray]:
    """Parse numbers; returns (floats with NaN for missing, mask of unparseable non-missing)."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        f = values.astype(float).to_numpy()
        return f, np.zeros(len(f), dtype=bool)
    txt = pd.Series(_text(values), dtype=object)
    if decimal_comma:
        txt = txt.map(lambda s: s if s is None else s.replace(".", "").replace(",", "."))
    txt = txt.map(lambda s: s if s is None else re.sub(r"\s*€\s*$", "", s))
    num = pd.to_numeric(txt, errors="coerce").astype(float).to_numpy()
    bad = np.isnan(num) & txt.notna().to_numpy()
    return num, bad


def validate_projects(df: pd.DataFrame, *, source: str | None = None,
                      tu: gpd.GeoDataFrame | None = None,
                      decimal_comma: bool = False) -> pd.DataFrame:
    """Check a project table and return a normalised copy (same row order, fresh index).

    Adds ``requested_cents`` (int64, exact) and ``ente`` (the Unione, or the applicant comune
    when in no Unione: the unit of "share per Unione"). Raises :class:`InputError` naming the
    file, the rows (1 = first record) and the field of the first problem found.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"projects must be a table, got {type(df).__name__}", file=source)
    p = df.reset_index(drop=True).copy()
    missing = [c for c in REQUIRED if c not in p.columns]
    if "inside_tu_share" not in p.columns and not (tu is not None and isinstance(p, gpd.GeoDataFrame)):
        missing.append("inside_tu_share")
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", file=source,
                         field=missing[0],
                         hint=f"required: {', '.join(REQUIRED)}, inside_tu_share (or site "
                              "polygons and a TU layer)")
    n = len(p)
    if n == 0:
        raise InputError("the project table has no rows", file=source)

    ids = _text(p["project_id"])
    bad = np.array([v is None for v in ids])
    if bad.any():
        raise InputError("empty project_id", file=source, rows=_rows(bad), field="project_id")
    dup = pd.Series(ids).duplicated(keep=False).to_numpy()
    if dup.any():
        raise InputError("duplicate project_id", file=source, rows=_rows(dup), field="project_id")
    p["project_id"] = pd.Series(ids, dtype=object)

    for col in ("applicant",):
        vals = _text(p[col])
        bad = np.array([v is None for v in vals])
        if bad.any():
            raise InputError(f"empty {col}", file=source, rows=_rows(bad), field=col)
        p[col] = pd.Series(vals, dtype=object)
    title = _text(p["title"]) if "title" in p.columns else [None] * n
    p["title"] = pd.Series([t if t is not None else i for t, i in zip(title, ids, strict=True)],
                           dtype=object)

    at = [None if v is None else v.lower() for v in _text(p["applicant_type"])]
    bad = np.array([v not in APPLICANT_TYPES for v in at])
    if bad.any():
        raise InputError("applicant_type must be 'unione' or 'comune'", file=source,
                         rows=_rows(bad), field="applicant_type")
    p["applicant_type"] = pd.Series(at, dtype=object)

    un = _text(p["unione"]) if "unione" in p.columns else [None] * n
    # an Unione applicant with no unione given: the site is taken to be in its own territory
    un = [a if (u is None and t == "unione") else u
          for u, t, a in zip(un, at, p["applicant"], strict=True)]
    p["unione"] = pd.Series(un, dtype=object)
    p["ente"] = pd.Series([u if u is not None else a for u, a in zip(un, p["applicant"], strict=True)],
                          dtype=object)

    if "comune_istat" in p.columns:
        ist = _text(p["comune_istat"])
        ist = [None if v is None else (v.zfill(6) if v.isdigit() else v) for v in ist]
        bad = np.array([v is not None and not re.fullmatch(r"\d{6}", v) for v in ist])
        if bad.any():
            raise InputError("comune_istat must be a 6-digit ISTAT code", file=source,
                             rows=_rows(bad), field="comune_istat")
    else:
        ist = [None] * n
    p["comune_istat"] = pd.Series(ist, dtype=object)
    p["territorial_system"] = pd.Series(
        _text(p["territorial_system"]) if "territorial_system" in p.columns else [None] * n,
        dtype=object)

    if "fragile" in p.columns:
        fr: list[Any] = []
        badl = []
        for v in p["fragile"].tolist():
            if _missing(v):
                fr.append(pd.NA)
                badl.append(False)
            elif isinstance(v, bool | np.bool_):
                fr.append(bool(v))
                badl.append(False)
            else:
                s = str(v).strip().lower()
                if s.endswith(".0"):
                    s = s[:-2]
                fr.append(True if s in _TRUE else False if s in _FALSE else pd.NA)
                badl.append(s not in _TRUE and s not in _FALSE)
        if any(badl):
            raise InputError("fragile must be true/false (or 1/0, sì/no)", file=source,
                             rows=_rows(np.array(badl)), field="fragile")
        p["fragile"] = pd.array(fr, dtype="boolean")
    else:
        p["fragile"] = pd.array([pd.NA] * n, dtype="boolean")

    def num(col: str, *, required: bool, lo: float | None = None, hi: float | None = None,
            lo_open: bool = False, what: str = "a number") -> np.ndarray:
        if col not in p.columns:
            return np.full(n, np.nan)
        x, badp = _number(p[col], decimal_comma)
        if badp.any():
            raise InputError(f"{col} must be {what}", file=source, rows=_rows(badp), field=col)
        nan = np.isnan(x)
        if required and nan.any():
            raise InputError(f"{col} is missing", file=source, rows=_rows(nan), field=col)
        if np.isinf(x).any():
            raise InputError(f"{col} must be finite", file=source, rows=_rows(np.isinf(x)),
                             field=col)
        with np.errstate(invalid="ignore"):
            out = np.zeros(n, dtype=bool)
            if lo is not None:
                out |= (x <= lo) if lo_open else (x < lo)
            if hi is not None:
                out |= x > hi
        if out.any():
            raise InputError(f"{col} must be {what}", file=source, rows=_rows(out), field=col)
        return x

    req = num("requested_eur", required=True, lo=0.0, lo_open=True, what="an amount in euros > 0")
    p["requested_eur"] = req
    p["requested_cents"] = to_cents_array(req)
    p["merit"] = num("merit", required=True)
    p["fragility_index"] = num("fragility_index", required=False, lo=0.0, hi=1.0,
                               what="a number between 0 and 1")
    pop = num("population", required=False, lo=0.0, what="a non-negative number of residents")
    p["population"] = pd.array([pd.NA if np.isnan(v) else int(round(v)) for v in pop], dtype="Int64")

    if isinstance(p, gpd.GeoDataFrame) and p.geometry.name in p.columns:
        if p.crs is None:
            raise InputError("site polygons have no CRS", file=source, field="geometry",
                             hint="write the file with its CRS (EPSG:25832 preferred)")
        if p.crs.is_geographic:
            p = p.to_crs(config.working_crs())
    have_share = "inside_tu_share" in p.columns
    share = num("inside_tu_share", required=False, lo=0.0, hi=1.0 + 1e-9,
                what="a share between 0 and 1") if have_share else np.full(n, np.nan)
    nan = np.isnan(share)
    if nan.any():
        if tu is None or not isinstance(p, gpd.GeoDataFrame):
            raise InputError("inside_tu_share is missing", file=source, rows=_rows(nan),
                             field="inside_tu_share",
                             hint="give it, or give site polygons and the TU layer")
        share[nan] = tu_share(p.geometry[nan], tu)
    p["inside_tu_share"] = np.clip(share, 0.0, 1.0)

    lk = _text(p["locked"]) if "locked" in p.columns else [None] * n
    lk = [None if v is None else v.lower() for v in lk]
    bad = np.array([v not in (None, "in", "out") for v in lk])
    if bad.any():
        raise InputError("locked must be 'in', 'out' or empty", file=source, rows=_rows(bad),
                         field="locked")
    p["locked"] = pd.Series(lk, dtype=object)
    return p


def tu_share(sites: gpd.GeoSeries, tu: gpd.GeoDataFrame | gpd.GeoSeries) -> np.ndarray:
    """Share (0..1) of each site's area inside the territorio urbanizzato.

    Areas are computed in the working CRS (EPSG:25832 by default, metres); overlapping TU
    polygons are merged first so no area is counted twice. Vectorised: STRtree pairs, then one
    pairwise intersection per (site, TU part).
    """
    crs = config.working_crs()
    s = sites.to_crs(crs) if sites.crs is not None and sites.crs != crs else sites
    t = tu.to_crs(crs) if tu.crs is not None and tu.crs != crs else tu
    geoms = np.asarray(s.values if isinstance(s, gpd.GeoSeries) else s.geometry.values,
                       dtype=object)
    parts = shapely.get_parts(shapely.union_all(np.asarray(t.geometry.values, dtype=object)))
    area = shapely.area(geoms)
    if len(parts) == 0:
        return np.zeros(len(geoms))
    tree = shapely.STRtree(parts)
    si, pj = tree.query(geoms, predicate="intersects")
    inter = shapely.area(shapely.intersection(geoms[si], parts[pj]))
    inside = np.bincount(si, weights=inter, minlength=len(geoms))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, np.clip(inside / area, 0.0, 1.0), 0.0)


def _sniff(path: Path) -> tuple[str, bool]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        head = f.readline()
    try:
        sep = csv.Sniffer().sniff(head, delimiters=",;\t").delimiter
    except csv.Error:
        sep = ","
    # Italian spreadsheets: ';' between fields and ',' as decimal separator
    return sep, sep == ";"


def projects_from_table(path: str | Path, *, layer: str | None = None,
                        tu: gpd.GeoDataFrame | None = None) -> pd.DataFrame:
    """Read and check a projects file: CSV (',' or ';' separated; with ';' decimals may use a
    comma), GeoPackage (``layer`` or the first), GeoJSON, Shapefile or GeoParquet.

    Returns :func:`validate_projects`'s table (a GeoDataFrame in the working CRS when the file
    has geometries). Errors name the file, the rows (1 = first record) and the field.
    """
    path = Path(path)
    src = str(path)
    if not path.exists():
        raise InputError("projects file does not exist", file=src)
    suffix = path.suffix.lower()
    decimal_comma = False
    try:
        if suffix in (".csv", ".txt", ".tsv"):
            sep, decimal_comma = _sniff(path)
            df: pd.DataFrame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False,
                                           encoding="utf-8-sig")
            df.columns = [str(c).strip() for c in df.columns]
        elif suffix in (".parquet", ".geoparquet"):
            df = gpd.read_parquet(path)
        elif suffix in (".gpkg", ".geojson", ".json", ".shp", ".zip", ".fgb"):
            df = gpd.read_file(path, layer=layer) if layer else gpd.read_file(path)
        else:
            raise InputError(f"unsupported projects file type '{suffix}'", file=src,
                             hint="use CSV, GeoPackage, GeoJSON, Shapefile or GeoParquet")
    except InputError:
        raise
    except Exception as e:  # parser errors of pandas / GDAL carry the detail
        raise InputError(f"cannot read projects file: {e}", file=src) from e
    if isinstance(df, gpd.GeoDataFrame) and (df.geometry.isna().all() or df.geometry.is_empty.all()):
        df = pd.DataFrame(df.drop(columns=df.geometry.name))
    return validate_projects(df, source=src, tu=tu, decimal_comma=decimal_comma)
