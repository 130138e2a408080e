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
import io
import re
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from pattogis import config
from pattogis.errors import InputError
from pattogis.fund.call import APPLICANT_TYPES
from pattogis.fund.fmt import to_cents_array
from pattogis.fund.territory import Territory, resolve
from pattogis.io import UploadLimits, read_vector_file

REQUIRED = ("project_id", "applicant", "applicant_type", "requested_eur", "merit")
OPTIONAL = ("title", "unione", "comune_istat", "territorial_system", "fragile",
            "fragility_index", "population", "inside_tu_share", "locked")
# also read: the site as WKT in a CSV (``wkt`` with its ``epsg``), and free notes
EXTRA = ("wkt", "epsg", "notes", "source")
# what a description of each column says, for the template and the README
COLUMN_DOCS = {
    "project_id": "codice univoco della domanda (obbligatorio)",
    "title": "titolo dell'intervento",
    "applicant": "soggetto richiedente: Unione o comune non associato (obbligatorio)",
    "applicant_type": "'unione' o 'comune' (facoltativo: si ricava dal nome del richiedente)",
    "unione": "Unione del comune sede (facoltativo: si ricava dal territorio)",
    "comune_istat": "codice ISTAT del comune sede (facoltativo: si ricava dal poligono)",
    "territorial_system": "sistema territoriale (facoltativo: si ricava dal territorio)",
    "fragile": "comune fragile sì/no (facoltativo: si ricava dal territorio)",
    "fragility_index": "indice di fragilità 0..1 (facoltativo: si ricava dal territorio)",
    "population": "residenti del comune sede (facoltativo: si ricava dal territorio)",
    "requested_eur": "importo richiesto in euro, > 0, virgola decimale (obbligatorio)",
    "merit": "punteggio di merito, più alto è meglio (obbligatorio)",
    "inside_tu_share": "quota del sito nel TU 0..1 (facoltativo: si calcola dal poligono)",
    "locked": "'in' | 'out' | vuoto: vincolo nella modalità ottima",
    "wkt": "solo CSV: poligono del sito in WKT",
    "epsg": "solo CSV: sistema di riferimento del WKT (es. 25832)",
    "notes": "note libere",
}
# columns a checked table carries (so a checked table can be checked again)
_DERIVED = {"requested_cents", "ente", "geometry", "host_name", "host_share", "n_comuni",
            "applicant_match", "applicant_known", "applicant_istat", "applicant_unione",
            "applicant_type_declared", "comune_istat_declared", "site_area_m2", "inside_tu_m2",
            "outside_tu_m2", "tu_derived", "checks"}
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
    # pandas may turn None into NaN when a map infers a string dtype: test for str, not None
    if decimal_comma:
        txt = txt.map(lambda s: s.replace(".", "").replace(",", ".") if isinstance(s, str) else None)
    txt = txt.map(lambda s: re.sub(r"\s*€\s*$", "", s) if isinstance(s, str) else None)
    num = pd.to_numeric(txt, errors="coerce").astype(float).to_numpy()
    bad = np.isnan(num) & txt.notna().to_numpy()
    return num, bad


def validate_projects(df: pd.DataFrame, *, source: str | None = None,
                      tu: gpd.GeoDataFrame | None = None,
                      territory: Territory | None = None,
                      decimal_comma: bool = False) -> pd.DataFrame:
    """Check a project table and return a normalised copy (same row order, fresh index).

    Adds ``requested_cents`` (int64, exact) and ``ente`` (the Unione, or the applicant comune
    when in no Unione: the unit of "share per Unione"). Raises :class:`InputError` naming the
    file, the rows (1 = first record) and the field of the first problem found.

    With a ``territory`` every row needs a valid site polygon, and the eligibility facts (host
    comune, Unione, applicant, systems, fragility, residents, TU share) are taken from it
    (:func:`pattogis.fund.territory.resolve`); declared values only feed the ``checks``.
    """
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"projects must be a table, got {type(df).__name__}", file=source)
    if territory is not None and {"applicant_known", "requested_cents", "checks"} <= set(df.columns):
        return df.reset_index(drop=True)  # already checked against the territory
    p = _full_names(df.reset_index(drop=True).copy())
    known = set(REQUIRED) | set(OPTIONAL) | set(EXTRA) | _DERIVED
    unknown = [c for c in p.columns if c not in known]
    if unknown:
        raise InputError(f"unknown column(s) {', '.join(map(str, unknown))}", file=source,
                         field=str(unknown[0]),
                         hint=f"known columns: {', '.join(list(REQUIRED) + list(OPTIONAL) + list(EXTRA))}"
                              " (`pattogis fund template` writes an empty file with them)")
    p = _wkt_sites(p, source)
    if territory is not None:
        return _checked_sites(_validate(p, source=source, territory=territory,
                                        decimal_comma=decimal_comma), territory, source)
    return _validate(p, source=source, tu=tu, decimal_comma=decimal_comma)


def _validate(p: pd.DataFrame, *, source: str | None, tu: gpd.GeoDataFrame | None = None,
              territory: Territory | None = None, decimal_comma: bool = False) -> pd.DataFrame:
    required = [c for c in REQUIRED if not (territory is not None and c == "applicant_type")]
    missing = [c for c in required if c not in p.columns]
    has_sites = isinstance(p, gpd.GeoDataFrame)
    if territory is not None and not has_sites:
        raise InputError("the applications have no site polygons", file=source, field="geometry",
                         hint="give a GeoPackage/GeoJSON/Shapefile/GeoParquet of the sites, or a "
                              "CSV with the columns wkt and epsg: eligibility is decided from the "
                              "site, not from what the application declares")
    if "inside_tu_share" not in p.columns and not ((tu is not None or territory is not None)
                                                   and has_sites):
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

    at = ([None if v is None else v.lower() for v in _text(p["applicant_type"])]
          if "applicant_type" in p.columns else [None] * n)
    bad = np.array([v not in APPLICANT_TYPES and not (v is None and territory is not None)
                    for v in at])
    if bad.any():
        raise InputError("applicant_type must be 'unione' or 'comune'", file=source,
                         rows=_rows(bad), field="applicant_type")
    p["applicant_type"] = pd.Series(at, dtype=object)

    un = _text(p["unione"]) if "unione" in p.columns else [None] * n
    # an Unione applicant with no unione given: the site is taken to be in its own territory
    if territory is None:
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
    if nan.any() and territory is None:
        if tu is None or not isinstance(p, gpd.GeoDataFrame):
            raise InputError("inside_tu_share is missing", file=source, rows=_rows(nan),
                             field="inside_tu_share",
                             hint="give it, or give site polygons and the TU layer")
        share[nan] = tu_share(p.geometry[nan], tu)
    p["inside_tu_share"] = np.clip(share, 0.0, 1.0)
    for c in EXTRA[:2]:
        if c in p.columns:
            p = p.drop(columns=c)

    lk = _text(p["locked"]) if "locked" in p.columns else [None] * n
    lk = [None if v is None else v.lower() for v in lk]
    bad = np.array([v not in (None, "in", "out") for v in lk])
    if bad.any():
        raise InputError("locked must be 'in', 'out' or empty", file=source, rows=_rows(bad),
                         field="locked")
    p["locked"] = pd.Series(lk, dtype=object)
    return p


def _full_names(p: pd.DataFrame) -> pd.DataFrame:
    """Column names cut to 10 characters by the Shapefile format, back to their full names."""
    full = list(REQUIRED) + list(OPTIONAL)
    ren = {}
    for c in p.columns:
        if isinstance(c, str) and len(c) == 10 and c not in full:
            hits = [f for f in full if f.startswith(c)]
            if len(hits) == 1:
                ren[c] = hits[0]
    return p.rename(columns=ren) if ren else p


def _wkt_sites(p: pd.DataFrame, source: str | None) -> pd.DataFrame:
    """A CSV's ``wkt`` column (with its ``epsg``) as the site geometry."""
    if "wkt" not in p.columns or isinstance(p, gpd.GeoDataFrame):
        return p
    txt = _text(p["wkt"])
    empty = np.array([t is None for t in txt])
    if empty.all():
        return p.drop(columns=[c for c in ("wkt", "epsg") if c in p.columns])
    if empty.any():
        raise InputError("empty site geometry", file=source, rows=_rows(empty), field="wkt")
    geoms = shapely.from_wkt(np.array(txt, dtype=object), on_invalid="ignore")
    bad = pd.isna(geoms)
    if bad.any():
        raise InputError("the site geometry is not valid WKT", file=source, rows=_rows(bad),
                         field="wkt")
    ep = _text(p["epsg"]) if "epsg" in p.columns else [None] * len(p)
    if any(e is None for e in ep):
        raise InputError("the site geometry has no CRS", file=source,
                         rows=_rows(np.array([e is None for e in ep])), field="epsg",
                         hint="give the EPSG code of the WKT coordinates (25832 for UTM 32N)")
    codes = sorted(set(ep))
    if len(codes) > 1:
        raise InputError(f"the sites mix CRS {', '.join(codes)}", file=source, field="epsg",
                         hint="write every site in one CRS")
    try:
        crs = pyproj.CRS.from_user_input(f"EPSG:{codes[0]}" if codes[0].isdigit() else codes[0])
    except pyproj.exceptions.CRSError as e:
        raise InputError(f"unknown CRS '{codes[0]}'", file=source, rows=[1], field="epsg") from e
    return gpd.GeoDataFrame(p.drop(columns=["wkt"] + (["epsg"] if "epsg" in p.columns else [])),
                            geometry=geoms, crs=crs)


def _checked_sites(p: pd.DataFrame, territory: Territory, source: str | None) -> pd.DataFrame:
    """Every site a valid, non-empty polygon; then the eligibility facts from the territory."""
    assert isinstance(p, gpd.GeoDataFrame)
    g = np.asarray(p.geometry.values, dtype=object)
    empty = pd.isna(g) | shapely.is_empty(g)
    if empty.any():
        raise InputError("missing or empty site geometry", file=source, rows=_rows(empty),
                         field="geometry")
    kind = shapely.get_type_id(g)
    notpoly = ~np.isin(kind, (3, 6))  # Polygon, MultiPolygon
    if notpoly.any():
        raise InputError("the site must be a polygon", file=source, rows=_rows(notpoly),
                         field="geometry", hint="draw the site's perimeter, not a point or a line")
    invalid = ~shapely.is_valid(g)
    if invalid.any():
        first = int(np.flatnonzero(invalid)[0])
        raise InputError(f"invalid site polygon ({shapely.is_valid_reason(g[first])})",
                         file=source, rows=_rows(invalid), field="geometry",
                         hint="fix it in QGIS (Vector ▸ Geometry Tools ▸ Fix Geometries)")
    return resolve(p, territory)


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
                        tu: gpd.GeoDataFrame | None = None,
                        territory: Territory | None = None,
                        label: str | None = None,
                        limits: UploadLimits | None = None) -> pd.DataFrame:
    """Read and check a projects file: CSV (',' or ';' separated; with ';' decimals may use a
    comma), GeoPackage (``layer`` or the first), GeoJSON, Shapefile or GeoParquet. ``limits``:
    an upload's limits (:class:`pattogis.io.UploadLimits`); a zip is always inflated bounded.

    Returns :func:`validate_projects`'s table (a GeoDataFrame in the working CRS when the file
    has geometries). Errors name the file, the rows (1 = first record) and the field.
    """
    path = Path(path)
    src = label or str(path)
    if not path.exists():
        raise InputError("projects file does not exist", file=src)
    suffix = path.suffix.lower()
    decimal_comma = False
    try:
        if suffix in (".csv", ".txt", ".tsv"):
            sep, decimal_comma = _sniff(path)
            text = path.read_text(encoding="utf-8-sig")
            # lines starting with '#' document the columns (the template): not records
            body = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("#"))
            df: pd.DataFrame = pd.read_csv(io.StringIO(body), sep=sep, dtype=str,
                                           keep_default_na=False)
            df.columns = [str(c).strip() for c in df.columns]
        elif suffix in (".parquet", ".geoparquet", ".gpkg", ".geojson", ".json", ".shp", ".zip",
                        ".fgb"):
            # zips inflated within limits by pattogis.io, never by GDAL
            df = read_vector_file(path, label=src, limits=limits, layer=layer)
        else:
            raise InputError(f"unsupported projects file type '{suffix}'", file=src,
                             hint="use CSV, GeoPackage, GeoJSON, Shapefile or GeoParquet")
    except InputError:
        raise
    except Exception as e:  # parser errors of pandas / GDAL carry the detail
        raise InputError(f"cannot read projects file: {e}", file=src) from e
    if isinstance(df, gpd.GeoDataFrame) and (df.geometry.isna().all() or df.geometry.is_empty.all()):
        df = pd.DataFrame(df.drop(columns=df.geometry.name))
    return validate_projects(df, source=src, tu=tu, territory=territory,
                             decimal_comma=decimal_comma)
