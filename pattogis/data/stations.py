"""Passenger rail stations of the province: one deduplicated list from several sources.

Pure functions: readers return frames of candidate stations in a common schema, and
:func:`merge_stations` deduplicates them (scipy.sparse.csgraph connected components over the
"same station" pairs) keeping, for each station, the row of the highest-priority source and the
union of the lines and sources. Parameters live in ``config/stations.yaml``. Distances in metres
in the working CRS (metric).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from pattogis import config
from pattogis.data.readers import parse_decimal, points_from_table, read_vector
from pattogis.errors import InputError

COLUMNS = ["station_id", "name", "kind", "lines", "id_staz", "source", "sources", "geometry"]
# Words that do not tell two stations apart ("Bologna Centrale AV" is Bologna Centrale).
_NOISE = {"STAZIONE", "FERMATA", "FS", "AV", "FER", "TPER", "SFM", "DI", "DEL", "DELL", "DELLA",
          "D", "IN", "SUL", "SULLA", "E"}
_ABBREV = {"S": "SAN", "SS": "SANTI", "STA": "SANTA", "CLE": "CENTRALE"}


def nice_name(name: str) -> str:
    """Title case that keeps Italian elisions right: "ANZOLA DELL'EMILIA" -> "Anzola dell'Emilia"."""
    s = re.sub(r"(^|[\s\-'.(/])([^\W\d_])", lambda m: m.group(1) + m.group(2).upper(),
               str(name).strip().lower().replace("' ", "'"))
    s = re.sub(r"\bDell'", "dell'", s)
    s = re.sub(r"\b(Di|Del|Della|Delle|In|Sul|Sulla|E)(?=\s)",
               lambda m: m.group(1).lower(), s)
    return s[:1].upper() + s[1:]


def station_params(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config/stations.yaml``, checked."""
    p = config.load("stations.yaml")
    p.update(overrides or {})
    for k in ("dedup_m", "name_match_m", "beyond_boundary_km"):
        config.require(p, k, (int, float))
    config.require(p, "source_priority", list)
    if float(p["dedup_m"]) > float(p["name_match_m"]):
        raise InputError(f"{p.get('_source')}: dedup_m must not exceed name_match_m")
    return p


def name_key(name: str) -> frozenset[str]:
    """Tokens that identify a station name: upper case, no accents or punctuation, common
    abbreviations spelled out ('S.Vitale' = 'San Vitale'), noise words dropped."""
    s = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode().upper()
    toks = [t for t in re.split(r"[^A-Z0-9]+", s) if t]
    toks = [_ABBREV.get(t, t) for t in toks]
    key = frozenset(t for t in toks if t not in _NOISE)
    # The city's stations are named with or without it ("Bologna San Vitale", "San Vitale").
    return key - {"BOLOGNA"} if len(key) > 1 else key


def _same_name(a: frozenset[str], b: frozenset[str]) -> bool:
    """Same tokens: 'Bologna S.Vitale' = 'San Vitale'; 'Budrio' and 'Budrio Centro', or
    'Casalecchio di Reno' and 'Casalecchio Garibaldi', are different stops."""
    return bool(a) and a == b


def merge_stations(frames: list[gpd.GeoDataFrame], params: dict[str, Any]) -> gpd.GeoDataFrame:
    """Deduplicate stations from several sources into one list.

    ``frames``: GeoDataFrames with ``name``, ``source`` and optionally ``station_id``, ``kind``,
    ``lines``, ``id_staz``, all in one metric CRS. Two rows are the same station when they lie
    within ``dedup_m`` of each other, or within ``name_match_m`` with the same name
    (:func:`name_key`; groups are the connected components of these pairs). Each group keeps the row of the source first in ``source_priority``
    (unlisted sources last, then input order), with ``lines`` and ``sources`` the union over the
    group and ``id_staz`` the first one known. Returns :data:`COLUMNS`.
    """
    frames = [f for f in frames if f is not None and len(f)]
    if not frames:
        return gpd.GeoDataFrame({c: [] for c in COLUMNS[:-1]}, geometry=[])
    crs = frames[0].crs
    allf = pd.concat([f.to_crs(crs) for f in frames], ignore_index=True)
    for c in ("station_id", "kind", "lines", "id_staz"):
        if c not in allf.columns:
            allf[c] = None
    allf = allf.astype({c: object for c in ("station_id", "kind", "lines", "id_staz")})
    g = gpd.GeoDataFrame(allf, geometry="geometry", crs=crs)
    n = len(g)
    pts = g.geometry.to_numpy()
    keys = [name_key(x) for x in g["name"]]
    i, j = shapely.STRtree(pts).query(pts, predicate="dwithin", distance=float(params["name_match_m"]))
    m = i < j
    i, j = i[m], j[m]
    d = shapely.distance(pts[i], pts[j])
    same = (d <= float(params["dedup_m"])) | np.array(
        [_same_name(keys[a], keys[b]) for a, b in zip(i, j, strict=True)], dtype=bool)
    adj = coo_matrix((np.ones(int(same.sum())), (i[same], j[same])), shape=(n, n))
    _, label = connected_components(adj, directed=False)
    prio = {s: k for k, s in enumerate(params["source_priority"])}
    g["_prio"] = [prio.get(str(s).split(":")[0].strip(), len(prio)) for s in g["source"]]
    g["_grp"] = label
    g["_ord"] = np.arange(n)
    g = g.sort_values(["_grp", "_prio", "_ord"])

    def union(s: pd.Series) -> str:
        seen: list[str] = []
        for v in s.dropna():
            for part in str(v).split("; "):
                if part and part not in seen:
                    seen.append(part)
        return "; ".join(seen)

    agg = g.groupby("_grp", sort=False).agg(
        lines=("lines", union), sources=("source", union),
        id_staz=("id_staz", lambda s: next((v for v in s if isinstance(v, str) and v), None)))
    first = g.drop_duplicates("_grp").set_index("_grp")
    first[["lines", "sources", "id_staz"]] = agg[["lines", "sources", "id_staz"]]
    first["lines"] = first["lines"].replace("", None)
    out = gpd.GeoDataFrame(first.reset_index(drop=True), geometry="geometry", crs=crs)
    return out[COLUMNS]


def read_rfi(path: Path, label: str, box: tuple[float, ...], crs: str) -> gpd.GeoDataFrame:
    """RFI stations and stops with passenger service (``SERVIZIO_VIAGGIATORI`` = SI) of the
    kinds S (station) and F (stop), inside the lon/lat ``box``; the commercial line as ``lines``."""
    g = read_vector(path, label=label)
    for c in ("NOME", "CODIMP", "IMPIANTO", "LINEACOMM", "SERVIZIO_VIAGGIATORI"):
        if c not in g.columns:
            raise InputError("column missing", file=label, field=c)
    g = g.to_crs(4326).cx[box[0]:box[2], box[1]:box[3]]
    g = g[(g["SERVIZIO_VIAGGIATORI"].astype(str).str.upper() == "SI")
          & g["IMPIANTO"].isin(["S", "F"]) & g["CAUSA_CHIUSURA"].isna()]
    return gpd.GeoDataFrame({
        "station_id": "RFI-" + g["CODIMP"].astype(str),
        "name": g["NOME"].map(nice_name),
        "kind": np.where(g["IMPIANTO"] == "S", "stazione", "fermata"),
        "lines": g["LINEACOMM"].astype(str).str.strip(),
        "source": "RFI",
    }, geometry=g.geometry.values, crs=4326).to_crs(crs)


def read_user_stations(path: str | Path, *, crs: str,
                       accept_box: tuple[float, float, float, float]) -> gpd.GeoDataFrame:
    """A user's stations file: a CSV with ``name`` and ``lon``/``lat`` (WGS84 degrees; also
    ``longitude``/``latitude`` or ``x``/``y``), or any GIS vector format GDAL reads (points, with
    a ``name`` field and a CRS). Optional ``lines`` column. Rows out of ``accept_box`` (lon/lat)
    are refused with their row numbers (swapped coordinates, wrong CRS)."""
    p = Path(path)
    label = str(p)
    if not p.exists():
        raise InputError("stations file not found", file=label)
    if p.suffix.lower() in (".csv", ".txt"):
        df = pd.read_csv(p, sep=None, engine="python", dtype=str)
        df.columns = [c.strip().lower() for c in df.columns]
        pair = next(((a, b) for a, b in (("lon", "lat"), ("longitude", "latitude"), ("x", "y"))
                     if a in df.columns and b in df.columns), None)
        if pair is None:
            raise InputError("no coordinate columns", file=label, field="lon/lat",
                             hint=f"Give lon and lat in WGS84 degrees; columns found: {', '.join(df.columns)}")
        lon = parse_decimal(df[pair[0]], label=label, column=pair[0])
        lat = parse_decimal(df[pair[1]], label=label, column=pair[1])
        g, _ = points_from_table(df, lon=lon, lat=lat, label=label, accept_box=accept_box, fields=pair)
    else:
        g = read_vector(p, label=label)
        g.columns = [c.lower() if c != g.geometry.name else c for c in g.columns]
        types = set(g.geom_type.dropna())
        if not types <= {"Point"}:
            raise InputError(f"stations must be points, found {', '.join(sorted(types))}",
                             file=label, field="geometry")
        ll = g.to_crs(4326)
        x0, y0, x1, y1 = accept_box
        out = ~((ll.geometry.x >= x0) & (ll.geometry.x <= x1) & (ll.geometry.y >= y0)
                & (ll.geometry.y <= y1))
        if out.any():
            raise InputError("point(s) outside the accepted area", file=label,
                             rows=[int(k) + 1 for k in np.flatnonzero(out.to_numpy())],
                             field="geometry", hint="Check the file's CRS")
    if "name" not in g.columns:
        raise InputError("column missing", file=label, field="name")
    blank = g["name"].isna() | (g["name"].astype(str).str.strip() == "")
    if blank.any():
        raise InputError("station without a name", file=label,
                         rows=[int(k) + 2 for k in np.flatnonzero(blank.to_numpy())], field="name")
    g = g.reset_index(drop=True)
    return gpd.GeoDataFrame({
        "station_id": [f"USR-{p.stem}-{k + 1}" for k in range(len(g))],
        "name": g["name"].astype(str).str.strip(),
        "kind": g["kind"] if "kind" in g.columns else "fermata",
        "lines": g["lines"] if "lines" in g.columns else None,
        "source": f"file utente: {p.name}",
    }, geometry=g.geometry.values, crs=g.crs).to_crs(crs)


def place_stations(st: gpd.GeoDataFrame, comuni: gpd.GeoDataFrame,
                   beyond_km: float) -> gpd.GeoDataFrame:
    """Comune of each station (None outside the province), ``in_province``, and stations beyond
    the boundary kept only within ``beyond_km`` of it (for distances across the border),
    labelled ``ambito`` = 'fuori provincia: solo per le distanze'."""
    j = gpd.sjoin(st[["geometry"]], comuni[["istat", "geometry"]], how="left", predicate="within")
    st = st.copy()
    st["comune_istat"] = j[~j.index.duplicated()]["istat"].reindex(st.index)
    st["in_province"] = st["comune_istat"].notna()
    prov = shapely.union_all(comuni.geometry.to_numpy())
    d = shapely.distance(st.geometry.to_numpy(), prov)
    st = st[st["in_province"] | (d <= beyond_km * 1000.0)].copy()
    st["ambito"] = np.where(st["in_province"], "provincia", "fuori provincia: solo per le distanze")
    return st
