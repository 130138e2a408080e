"""Land-use proposals: reading uploads and validating them against the comuni and the law's config.

A proposal is a polygon with a type (``config/law.yaml`` ``proposal_types``), an optional exemption
category, a pool (metropolitano or locale), a scenario, a date and a status. Errors name the row
(1-based feature number) and the field. A proposal across two comuni is split by comune by default
(each part keeps the proposal id and gets ``part`` 1, 2, ...); ``split='refuse'`` refuses it.

Proposal ids: one form for the CLI, the API and the store, :data:`ID_PATTERN` (a letter or digit,
then up to 63 letters, digits, ``_``, ``.`` or ``-``: ``CAS-EXP-01``, or the 32 hex digits the
store gives a proposal sent without one). Text fields are strings; numbers, booleans, lists or
objects in their place are refused with the row and field, never coerced.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from pattogis import config
from pattogis.errors import InputError
from pattogis.io import UploadLimits, read_vector_file

FIELDS = ["proposal_id", "scenario", "comune_istat", "ptype", "exemption", "pool", "title", "date",
          "status", "owner"]
STATUSES = ("bozza", "presentata", "approvata", "ritirata")
POOLS_DEFAULT = "locale"
ITALY_LONLAT = (6.0, 35.0, 19.0, 48.0)
#: The one form of a proposal id (CLI, API path, store).
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_ID = re.compile(ID_PATTERN)
#: Properties that must be text when present (proposal_id has its own pattern).
TEXT_FIELDS = ("scenario", "comune_istat", "ptype", "exemption", "pool", "title", "date", "status")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number (RFC 8259)")


def loads(text: str | bytes) -> Any:
    """JSON as RFC 8259 has it: NaN and Infinity are refused, not read as floats."""
    return json.loads(text, parse_constant=_no_constant)


def valid_id(value: object) -> bool:
    """True when ``value`` is a string of the :data:`ID_PATTERN` form."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def field_limits() -> dict[str, int]:
    """Longest text per field (characters), from settings.yaml ``field_limits``."""
    return {str(k): int(v) for k, v in (config.settings().get("field_limits") or {}).items()}


def check_properties(df: pd.DataFrame, label: str | None = None) -> None:
    """Refuse properties of the wrong type or length, naming the rows (from 1) and the field.

    Text fields must be strings (or null); ``proposal_id`` must match :data:`ID_PATTERN`.
    """
    rows = lambda mask: [int(i) + 1 for i in np.flatnonzero(np.asarray(mask))]  # noqa: E731
    limits = field_limits()
    for col in (*TEXT_FIELDS, "proposal_id"):
        if col not in df.columns:
            continue
        vals = df[col].to_numpy(dtype=object)
        present = np.array([v is not None and not (isinstance(v, float) and np.isnan(v))
                            for v in vals], dtype=bool)
        not_text = present & ~np.array([isinstance(v, str) for v in vals], dtype=bool)
        if not_text.any():
            v = vals[not_text][0]
            raise InputError(f"'{col}' must be text, got {type(v).__name__} {str(v)[:40]!r}",
                             file=label, rows=rows(not_text), field=col)
        nul = present & np.array([isinstance(v, str) and "\x00" in v for v in vals], dtype=bool)
        if nul.any():  # PostgreSQL text cannot hold it; no planner means it
            raise InputError(f"'{col}' contains a NUL character", file=label, rows=rows(nul),
                             field=col)
        if col == "proposal_id":
            bad = present & ~np.array([valid_id(v) for v in vals], dtype=bool)
            if bad.any():
                raise InputError(f"proposal_id {str(vals[bad][0])[:80]!r} is not a valid id",
                                 file=label, rows=rows(bad), field="proposal_id",
                                 hint="an id is a letter or digit then up to 63 letters, digits, "
                                      "'_', '.' or '-' (e.g. CAS-EXP-01), or empty for a new one")
        lim = limits.get(col)
        if lim:
            long = present & np.array([len(v) > lim if isinstance(v, str) else False for v in vals])
            if long.any():
                raise InputError(f"'{col}' is longer than {lim} characters", file=label,
                                 rows=rows(long), field=col)


def crs_member(obj: dict, label: str) -> str | None:
    """The CRS named by a legacy GeoJSON ``crs`` member (``{"type": "name", "properties":
    {"name": ...}}``), checked; None when there is no member."""
    if "crs" not in obj or obj["crs"] is None:
        return None
    member = obj["crs"]
    props = member.get("properties") if isinstance(member, dict) else None
    name = props.get("name") if isinstance(props, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise InputError("the 'crs' member must be {\"type\": \"name\", \"properties\": "
                         "{\"name\": \"urn:ogc:def:crs:EPSG::25832\"}}", file=label, field="crs")
    return checked_crs(name, "crs", label)


def checked_crs(text: str, field: str, label: str | None = None) -> str:
    """``text`` if pyproj knows the CRS (a projected or geographic 2D one), else InputError."""
    try:
        crs = pyproj.CRS(text)
    except (pyproj.exceptions.CRSError, TypeError, ValueError) as e:
        raise InputError(f"unknown CRS {text[:80]!r}", file=label, field=field) from e
    if not (crs.is_projected or crs.is_geographic):
        raise InputError(f"CRS {text[:80]!r} is neither projected nor geographic", file=label,
                         field=field)
    return text


def _from_geojson_obj(obj: Any, label: str, crs: str | None) -> gpd.GeoDataFrame:
    if not isinstance(obj, dict) or "type" not in obj:
        raise InputError("not a GeoJSON object (no 'type' member)", file=label)
    t = obj["type"]
    if t == "Feature":
        feats = [obj]
    elif t == "FeatureCollection":
        feats = obj.get("features")
        if not isinstance(feats, list):
            raise InputError("FeatureCollection without a 'features' list", file=label, field="features")
    elif t in ("Polygon", "MultiPolygon"):
        feats = [{"type": "Feature", "geometry": obj, "properties": {}}]
    else:
        raise InputError(f"GeoJSON type '{t}' is not a Feature or FeatureCollection", file=label,
                         field="type")
    if not feats:
        raise InputError("no features", file=label, field="features")
    cap = int((config.settings().get("upload_limits") or {}).get("max_features", 10_000))
    if len(feats) > cap:
        from pattogis.errors import PayloadTooLarge

        raise PayloadTooLarge(f"{len(feats)} features, more than the limit of {cap}", file=label,
                              field="features", hint="send them in smaller batches")
    geoms, props = [], []
    for i, f in enumerate(feats, 1):
        if not isinstance(f, dict) or f.get("type") != "Feature":
            raise InputError("not a GeoJSON Feature", file=label, rows=[i], field="type")
        g = f.get("geometry")
        if g is None:
            raise InputError("feature has no geometry", file=label, rows=[i], field="geometry")
        if not isinstance(g, dict):
            raise InputError("geometry must be a GeoJSON object", file=label, rows=[i],
                             field="geometry")
        try:
            geom = shapely.geometry.shape(g)
            xy = shapely.get_coordinates(geom)
            if not np.isfinite(xy).all():
                raise ValueError("coordinates must be finite numbers")
            geoms.append(geom)
        except Exception as e:  # shapely raises several types for malformed coordinates
            raise InputError(f"malformed geometry: {e}", file=label, rows=[i], field="geometry") from e
        p = f.get("properties") or {}
        if not isinstance(p, dict):
            raise InputError("properties must be an object", file=label, rows=[i], field="properties")
        props.append(p)
    # RFC 7946: GeoJSON is WGS84 lon/lat; a legacy "crs" member may name another CRS.
    named = crs_member(obj, label)
    gdf_crs = checked_crs(crs, "crs", label) if crs else named or "OGC:CRS84"
    df = pd.DataFrame(props)
    check_properties(df, label)
    return gpd.GeoDataFrame(df, geometry=geoms, crs=gdf_crs)


def read_proposals(source: Any, *, crs: str | None = None, label: str | None = None,
                   filename: str | None = None) -> gpd.GeoDataFrame:
    """Read proposals from a GeoJSON object/text/bytes, or a file path or upload bytes
    (GeoPackage, zipped Shapefile, GeoParquet, GeoJSON).

    Returned in the working CRS. Refuses: malformed GeoJSON, a file with no CRS (unless ``crs``),
    lon/lat coordinates that are swapped or not in Italy.
    """
    label = label or filename or (str(source) if isinstance(source, (str, Path)) and len(str(source)) < 300 else "upload")
    if isinstance(source, (bytes, bytearray)):
        head = bytes(source[:16])
        if head.startswith(b"SQLite format 3") or head.startswith(b"PK") or head.startswith(b"PAR1"):
            suffix = ".gpkg" if head.startswith(b"SQLite") else ".zip" if head.startswith(b"PK") else ".parquet"
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / f"upload{suffix}"
                p.write_bytes(bytes(source))
                return read_proposals(p, crs=crs, label=label)
        try:
            source = loads(bytes(source).decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise InputError(f"malformed GeoJSON: {e}", file=label) from e
    if isinstance(source, str) and source.lstrip().startswith("{"):
        try:
            source = loads(source)
        except ValueError as e:
            raise InputError(f"malformed GeoJSON: {e}", file=label) from e
    if isinstance(source, dict):
        gdf = _from_geojson_obj(source, label, crs)
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise InputError("file not found", file=str(path))
        gdf = read_vector_file(path, label=label, limits=UploadLimits.from_settings())
        if gdf.crs is None:
            if crs is None:
                raise InputError("the file has no CRS", file=label,
                                 hint="Give the CRS (e.g. crs='EPSG:25832') or add one to the file")
            gdf = gdf.set_crs(checked_crs(crs, "crs", label))
    elif isinstance(source, gpd.GeoDataFrame):
        gdf = source.copy()
        if gdf.crs is None:
            if crs is None:
                raise InputError("the GeoDataFrame has no CRS", file=label)
            gdf = gdf.set_crs(crs)
    else:
        raise InputError(f"cannot read proposals from {type(source).__name__}", file=label)
    if gdf.geometry.name != "geometry":
        gdf = gdf.rename_geometry("geometry")
    if isinstance(source, (str, Path)):
        gdf = _file_text(gdf)
    check_properties(pd.DataFrame(gdf.drop(columns="geometry")), label)
    _check_lonlat(gdf, label)
    out = gdf.to_crs(config.working_crs())
    xy = shapely.get_coordinates(out.geometry.values)
    if not np.isfinite(xy).all():  # a CRS whose area of use is far from here
        bad = [int(i) + 1 for i, g in enumerate(out.geometry.values)
               if not np.isfinite(shapely.get_coordinates(g)).all()]
        raise InputError("coordinates cannot be placed in the working CRS", file=label, rows=bad,
                         field="geometry", hint="check the declared CRS of the coordinates")
    return out




def _file_text(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Text fields as the file's column types give them: a date column as ISO dates, a numeric
    id or code as its digits (a GeoJSON body stays strict: there a number is a mistake)."""
    gdf = gdf.copy()
    for col in (*TEXT_FIELDS, "proposal_id"):
        if col not in gdf.columns:
            continue
        s = gdf[col]
        if pd.api.types.is_datetime64_any_dtype(s):
            gdf[col] = s.dt.strftime("%Y-%m-%d").astype(object).where(s.notna(), None)
        elif pd.api.types.is_integer_dtype(s):
            gdf[col] = s.astype(str).astype(object)
        elif s.dtype == object:
            gdf[col] = [v.date().isoformat() if isinstance(v, pd.Timestamp)
                        else v.isoformat() if hasattr(v, "isoformat") and not isinstance(v, str)
                        else v for v in s]
    return gdf


def _check_lonlat(gdf: gpd.GeoDataFrame, label: str) -> None:
    """Geographic coordinates must be in Italy: catch swapped lat/lon and projected metres
    passed off as degrees (a GeoJSON without CRS holding UTM coordinates)."""
    if gdf.crs is None or not gdf.crs.is_geographic or gdf.empty:
        return
    b = shapely.bounds(gdf.geometry.values)
    x0, y0, x1, y1 = ITALY_LONLAT
    ok = (b[:, 0] >= x0) & (b[:, 2] <= x1) & (b[:, 1] >= y0) & (b[:, 3] <= y1)
    ok |= np.isnan(b[:, 0])  # empty geometries are reported by validation
    if ok.all():
        return
    rows = [int(i) + 1 for i in np.flatnonzero(~ok)]
    bad = b[~ok]
    swapped = ((bad[:, 1] >= x0) & (bad[:, 3] <= x1) & (bad[:, 0] >= y0) & (bad[:, 2] <= y1)).all()
    projected = (np.abs(bad) > 1000).any()
    if swapped:
        hint = "Latitude and longitude look swapped: GeoJSON wants [longitude, latitude]"
    elif projected:
        hint = ("Coordinates look like metres: declare the CRS (e.g. EPSG:25832) — a GeoJSON "
                "without a 'crs' member is read as WGS84 degrees")
    else:
        hint = "Coordinates must be WGS84 longitude/latitude in Italy"
    raise InputError("coordinates outside Italy", file=label, rows=rows, field="geometry", hint=hint)


def validate_proposals(gdf: gpd.GeoDataFrame, comuni: gpd.GeoDataFrame, *,
                       split: str = "split", label: str = "proposals",
                       defaults: dict[str, Any] | None = None,
                       partial: bool = False) -> gpd.GeoDataFrame:
    """Check and complete proposals; return them in the working CRS, one row per comune part.

    - geometry: Polygon/MultiPolygon, valid, non-empty (invalid ones are refused, not repaired,
      because a planner must see and fix the drawing), inside the metropolitan area;
    - ``ptype`` among the config's proposal types; ``exemption`` among its categories or empty;
      ``pool`` metropolitano|locale (default locale); ``status`` (default bozza); ``date`` ISO;
    - ``comune_istat``: taken from the geometry; when given it must match;
    - a proposal across two or more comuni is split (``split='split'``) into parts or refused
      (``split='refuse'``).

    ``partial=True`` checks an edit: only the properties present are checked (none is added, no
    id is made); the geometry is checked and gives ``comune_istat`` as always.
    """
    law = config.law()
    check_properties(pd.DataFrame(gdf.drop(columns=gdf.geometry.name)), label)
    if partial:
        defaults = dict(defaults or {})
    else:
        defaults = {"scenario": "base", "pool": POOLS_DEFAULT, "status": "bozza", "title": "",
                    "exemption": None, "owner": None} | (defaults or {})
    gdf = gdf.to_crs(comuni.crs).reset_index(drop=True)
    for col, val in defaults.items():
        if col not in gdf.columns:
            gdf[col] = val
        else:
            gdf[col] = gdf[col].where(gdf[col].notna() & (gdf[col].astype(str) != ""), val)
    rows = lambda mask: [int(i) + 1 for i in np.flatnonzero(np.asarray(mask))]  # noqa: E731

    geom = gdf.geometry.values
    empty = shapely.is_missing(geom) | shapely.is_empty(geom)
    if empty.any():
        raise InputError("empty geometry", file=label, rows=rows(empty), field="geometry")
    tid = shapely.get_type_id(geom)
    notpoly = ~np.isin(tid, [3, 6])
    if notpoly.any():
        raise InputError("geometry must be a Polygon or MultiPolygon", file=label,
                         rows=rows(notpoly), field="geometry")
    invalid = ~shapely.is_valid(geom)
    if invalid.any():
        reasons = shapely.is_valid_reason(geom[invalid])
        raise InputError(f"invalid geometry ({reasons[0]})", file=label, rows=rows(invalid),
                         field="geometry", hint="Fix the drawing (self-intersections, rings)")

    if "ptype" not in gdf.columns and not partial:
        raise InputError("field missing", file=label, field="ptype",
                         hint=f"One of: {', '.join(law['proposal_types'])}")
    bad = (~gdf["ptype"].isin(list(law["proposal_types"])) if "ptype" in gdf.columns
           else pd.Series(False, index=gdf.index))
    if bad.any():
        raise InputError(f"unknown proposal type '{gdf.loc[bad, 'ptype'].iloc[0]}'", file=label,
                         rows=rows(bad), field="ptype",
                         hint=f"One of: {', '.join(law['proposal_types'])}")
    ex = gdf["exemption"] if "exemption" in gdf.columns else pd.Series(None, index=gdf.index)
    bad = ex.notna() & ~ex.isin(list(law["exemptions"]))
    if bad.any():
        raise InputError(f"unknown exemption category '{ex[bad].iloc[0]}'", file=label,
                         rows=rows(bad), field="exemption",
                         hint=f"One of: {', '.join(law['exemptions'])} (config/law.yaml)")
    bad = (~gdf["pool"].isin(list(law["pools"])) if "pool" in gdf.columns
           else pd.Series(False, index=gdf.index))
    if bad.any():
        raise InputError(f"unknown pool '{gdf.loc[bad, 'pool'].iloc[0]}'", file=label,
                         rows=rows(bad), field="pool", hint=f"One of: {', '.join(law['pools'])}")
    bad = (~gdf["status"].isin(STATUSES) if "status" in gdf.columns
           else pd.Series(False, index=gdf.index))
    if bad.any():
        raise InputError("unknown status", file=label, rows=rows(bad), field="status",
                         hint=f"One of: {', '.join(STATUSES)}")
    # A proposal without a date is dated today (a draft being written now).
    today = pd.Timestamp.now(tz="UTC").date().isoformat()
    if "date" not in gdf.columns and not partial:
        gdf["date"] = today
    if "date" in gdf.columns:
        gdf["date"] = gdf["date"].where(gdf["date"].notna() & (gdf["date"].astype(str) != ""),
                                        today)
        dates = pd.to_datetime(gdf["date"], errors="coerce", format="ISO8601")
        bad = dates.isna()
        if bad.any():
            raise InputError("date is not an ISO date (YYYY-MM-DD)", file=label, rows=rows(bad),
                             field="date")
        gdf["date"] = dates.dt.strftime("%Y-%m-%d")
    if not partial:
        if "proposal_id" not in gdf.columns:
            gdf["proposal_id"] = None
        gdf["proposal_id"] = gdf["proposal_id"].astype(object)
        missing_id = gdf["proposal_id"].isna() | (gdf["proposal_id"].astype(str) == "")
        gdf.loc[missing_id, "proposal_id"] = [uuid.uuid4().hex
                                              for _ in range(int(missing_id.sum()))]

    # Which comuni each proposal falls in (by area, so a shared edge does not count).
    gdf["_row"] = np.arange(len(gdf)) + 1
    parts = gpd.overlay(gdf, comuni[["istat", "geometry"]], how="intersection", keep_geom_type=True)
    parts = parts[parts.geometry.area > 0.01]
    inside = parts.groupby("_row").geometry.apply(lambda s: s.area.sum())
    area = gdf.set_index("_row").geometry.area
    outside = (area - inside.reindex(area.index).astype(float).fillna(0.0)) > 1.0
    if (~area.index.isin(inside.index)).any():
        miss = [int(r) for r in area.index[~area.index.isin(inside.index)]]
        raise InputError("proposal is outside every comune of the metropolitan area", file=label,
                         rows=miss, field="geometry")
    if outside.any():
        raise InputError("proposal extends outside the metropolitan area", file=label,
                         rows=[int(r) for r in area.index[outside]], field="geometry")
    if "comune_istat" in gdf.columns:
        given = gdf.set_index("_row")["comune_istat"].dropna().astype(str)
        if len(given):
            main = parts.sort_values("_row").loc[parts.geometry.area.groupby(parts["_row"]).idxmax()]
            host = main.set_index("_row")["istat"]
            mism = [int(r) for r, c in given.items() if c and c not in set(parts.loc[parts["_row"] == r, "istat"])]
            if mism:
                raise InputError(f"comune_istat does not match the comune the geometry is in "
                                 f"({host.get(mism[0])})", file=label, rows=mism, field="comune_istat")
    n_comuni = parts.groupby("_row")["istat"].nunique()
    multi = n_comuni[n_comuni > 1]
    if len(multi) and split == "refuse":
        raise InputError("proposal crosses the boundary between comuni", file=label,
                         rows=[int(r) for r in multi.index], field="geometry",
                         hint="Split it by comune, or submit with split='split'")
    parts = parts.drop(columns=[c for c in ("comune_istat",) if c in parts.columns])
    parts = parts.rename(columns={"istat": "comune_istat"})
    parts["part"] = parts.groupby("_row").cumcount() + 1
    parts["n_parts"] = parts["_row"].map(n_comuni)
    parts["geometry"] = [shapely.MultiPolygon([p for p in shapely.get_parts(g) if p.geom_type == "Polygon"])
                         for g in parts.geometry.values]
    parts["area_ha"] = parts.geometry.area / 1e4
    cols = [c for c in FIELDS + ["part", "n_parts", "area_ha"] if c in parts.columns]
    extra = [c for c in gdf.columns if c not in cols + ["geometry", "_row"]]
    out = parts.sort_values(["_row", "part"])[cols + extra + ["geometry"]].reset_index(drop=True)
    return gpd.GeoDataFrame(out, geometry="geometry", crs=comuni.crs)


def to_geojson(gdf: gpd.GeoDataFrame) -> dict:
    """Proposals as a GeoJSON FeatureCollection in WGS84 (RFC 7946)."""
    return json.loads(gdf.to_crs(4326).to_json(drop_id=True))
