"""Eligibility facts read from the territory, never from what an application declares.

For each site polygon: the host comune (largest share of the site's area), its Unione, territorial
system, fragility and residents (from the ``comuni_indicators`` layer), the share and the square
metres of the site inside / outside the territorio urbanizzato, and whether that perimeter is
derived. For each applicant name: the Unione or comune it is (tolerant matching: case, accents,
punctuation, "Unione dei Comuni ..." / "Comune di ..." prefixes). Declared values that
contradict the territory are reported in ``checks`` (Italian) and replaced, never used.

Areas in the working CRS (EPSG:25832, square metres). Vectorised: one STRtree query of the sites
against the comuni and against the TU parts, one pairwise intersection each.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis import config
from pattogis.fund.fmt import pct

# columns of the territory a site inherits from its host comune (layer column → project column)
INDICATOR_COLUMNS = {"territorial_system": "territorial_system", "fragile": "fragile",
                     "fragility_index": "fragility_index", "pop_total": "population"}
_PREFIX_UNIONE = re.compile(
    r"^(?:unione|nuovo circondario|circondario)(?: (?:dei|di) comuni)?"
    r"(?: (?:del|della|dell|dei|delle|degli|di|d))?\s+")
_PREFIX_COMUNE = re.compile(r"^(?:comune|citta|municipio)(?: (?:di|del|della|dell|dei|d))?\s+")


def normalise_name(text: str) -> str:
    """Lower case, accents and punctuation removed, spaces collapsed: the key names are matched on."""
    t = unicodedata.normalize("NFKD", str(text))
    t = "".join(ch for ch in t if not unicodedata.combining(ch)).lower()
    t = re.sub(r"[^a-z0-9]+", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def _core(key: str) -> tuple[str, str | None]:
    """(name without its prefix, the kind the prefix names or None)."""
    if _PREFIX_UNIONE.match(key):
        return _PREFIX_UNIONE.sub("", key, count=1), "unione"
    if _PREFIX_COMUNE.match(key):
        return _PREFIX_COMUNE.sub("", key, count=1), "comune"
    return key, None


@dataclass(frozen=True)
class Territory:
    """The territory the fund decides on: ``comuni`` (istat, name, unione, geometry, and the
    indicator columns when known: territorial_system, fragile, fragility_index, pop_total) and
    the territorio urbanizzato ``tu`` (geometry, ``source`` 'derived' | 'official'), both in
    the working CRS (EPSG:25832)."""

    comuni: gpd.GeoDataFrame
    tu: gpd.GeoDataFrame

    @classmethod
    def from_layers(cls) -> Territory:
        """From the built layer set: ``comuni_indicators`` (comuni with systems and fragility,
        read by column name) and ``territorio_urbanizzato``."""
        from pattogis import layers

        com = layers.open_layer("comuni")
        try:
            ind = layers.open_layer("comuni_indicators")
        except Exception:  # a layer set without indicators still decides hosts and Unioni
            ind = None
        if ind is not None and "istat" in ind.columns:
            cols = [c for c in INDICATOR_COLUMNS if c in ind.columns and c not in com.columns]
            com = com.merge(pd.DataFrame(ind[["istat", *cols]]), on="istat", how="left")
        return cls(comuni=com, tu=layers.open_layer("territorio_urbanizzato"))

    @cached_property
    def tu_pieces(self) -> np.ndarray:
        """The TU merged (no area counted twice) and cut by a 1 km grid, in the working CRS:
        a site then meets a few small pieces instead of a comune-wide polygon of thousands of
        vertices. Computed once per territory (the CLI and the API keep the territory)."""
        crs = config.working_crs()
        tu = self.tu.to_crs(crs) if self.tu.crs != crs else self.tu
        parts = shapely.get_parts(shapely.union_all(np.asarray(tu.geometry.values, dtype=object)))
        if len(parts) == 0:
            return parts
        x0, y0, x1, y1 = shapely.total_bounds(parts)
        step = 1000.0
        gx, gy = np.meshgrid(np.arange(np.floor(x0 / step) * step, x1, step),
                             np.arange(np.floor(y0 / step) * step, y1, step))
        cells = shapely.box(gx.ravel(), gy.ravel(), gx.ravel() + step, gy.ravel() + step)
        ci, pj = shapely.STRtree(parts).query(cells, predicate="intersects")
        pieces = shapely.intersection(cells[ci], parts[pj])
        pieces = shapely.get_parts(pieces)
        return pieces[(shapely.get_type_id(pieces) == 3) & (shapely.area(pieces) > 0)]

    @property
    def tu_derived(self) -> bool:
        """True when any part of the TU perimeter is derived (not an official perimeter)."""
        return "source" not in self.tu.columns or bool((self.tu["source"] != "official").any())

    def unioni(self) -> list[str]:
        u = self.comuni["unione"].dropna().astype(str)
        return sorted({x for x in u if x.strip()})


def match_applicants(names: pd.Series, territory: Territory) -> pd.DataFrame:
    """Who each applicant is. Returns ``applicant_match`` (the official name, or None),
    ``applicant_kind`` ('unione' | 'comune' | None), ``applicant_istat`` (a comune's code),
    ``applicant_unione`` (the Unione a comune applicant belongs to, or None)."""
    com = territory.comuni
    uni: dict[str, str] = {}
    for u in territory.unioni():
        k = normalise_name(u)
        uni[k] = u
        uni.setdefault(_core(k)[0], u)
    comk: dict[str, int] = {}
    for i, n in enumerate(com["name"].astype(str)):
        comk[normalise_name(n)] = i
    out: dict[str, list[Any]] = {"applicant_match": [], "applicant_kind": [],
                                 "applicant_istat": [], "applicant_unione": []}
    for raw in names.tolist():
        key = normalise_name(raw) if isinstance(raw, str) else ""
        core, kind = _core(key)
        hit_u = uni.get(key) or uni.get(core)
        hit_c = comk.get(core) if core in comk else comk.get(key)
        if kind == "comune":
            hit_u = None
        elif kind == "unione":
            hit_c = None
        elif hit_u is not None and hit_c is not None:
            hit_c = None  # a bare name equal to both: the Unione (the applicant the call prefers)
        if hit_u is not None:
            row = (hit_u, "unione", None, None)
        elif hit_c is not None:
            u = com["unione"].iloc[hit_c]
            u = None if pd.isna(u) or not str(u).strip() else str(u)
            row = (f"Comune di {com['name'].iloc[hit_c]}", "comune", str(com["istat"].iloc[hit_c]), u)
        else:
            row = (None, None, None, None)
        for k, v in zip(out, row, strict=True):
            out[k].append(v)
    return pd.DataFrame({k: pd.Series(v, index=names.index, dtype=object) for k, v in out.items()})


def host_comuni(sites: gpd.GeoSeries, comuni: gpd.GeoDataFrame) -> pd.DataFrame:
    """Host comune of each site: the one holding the largest share of its area.

    Returns ``host_row`` (position in ``comuni`` or -1 when the site is in none), ``host_share``
    (0..1) and ``n_comuni`` (comuni holding at least 1 m² of the site)."""
    geoms = np.asarray(sites.values, dtype=object)
    cg = np.asarray(comuni.geometry.values, dtype=object)
    tree = shapely.STRtree(cg)
    si, cj = tree.query(geoms, predicate="intersects")
    inter = shapely.area(shapely.intersection(geoms[si], cg[cj]))
    area = shapely.area(geoms)
    host = np.full(len(geoms), -1, dtype=np.int64)
    share = np.zeros(len(geoms))
    ncom = np.zeros(len(geoms), dtype=np.int64)
    if len(si):
        df = pd.DataFrame({"s": si, "c": cj, "a": inter})
        df = df[df["a"] >= 1.0]
        ncom = np.bincount(df["s"].to_numpy(), minlength=len(geoms))
        best = df.sort_values(["s", "a", "c"], ascending=[True, False, True]).drop_duplicates("s")
        host[best["s"].to_numpy()] = best["c"].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            share[best["s"].to_numpy()] = best["a"].to_numpy() / area[best["s"].to_numpy()]
    return pd.DataFrame({"host_row": host, "host_share": np.clip(share, 0, 1), "n_comuni": ncom},
                        index=sites.index)


def tu_inside_m2(sites: gpd.GeoSeries, tu: gpd.GeoDataFrame | gpd.GeoSeries | np.ndarray
                 ) -> np.ndarray:
    """Square metres of each site inside the TU: a layer (overlapping parts merged first) or
    the disjoint pieces of :attr:`Territory.tu_pieces`."""
    geoms = np.asarray(sites.values, dtype=object)
    parts = (tu if isinstance(tu, np.ndarray) else
             shapely.get_parts(shapely.union_all(np.asarray(tu.geometry.values, dtype=object))))
    if len(parts) == 0:
        return np.zeros(len(geoms))
    tree = shapely.STRtree(parts)
    si, pj = tree.query(geoms, predicate="intersects")
    inter = shapely.area(shapely.intersection(geoms[si], parts[pj]))
    return np.bincount(si, weights=inter, minlength=len(geoms)).astype(float)


def _declared(p: pd.DataFrame, col: str) -> pd.Series:
    return p[col] if col in p.columns else pd.Series([None] * len(p), index=p.index, dtype=object)


def _blank(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) or (
        isinstance(v, str) and not v.strip())


def resolve(projects: gpd.GeoDataFrame, territory: Territory) -> gpd.GeoDataFrame:
    """The projects with every eligibility fact taken from the territory.

    Needs site polygons (EPSG:25832 or any CRS, reprojected). Sets ``comune_istat`` (host),
    ``host_name``, ``host_share``, ``n_comuni``, ``unione`` (Unione of the host comune),
    ``applicant_match``, ``applicant_type`` (from the match; the declared one is kept in
    ``applicant_type_declared``), ``applicant_known``, ``applicant_istat``, ``applicant_unione``,
    ``territorial_system``, ``fragile``, ``fragility_index``, ``population``,
    ``site_area_m2``, ``inside_tu_m2``, ``outside_tu_m2``, ``inside_tu_share``, ``tu_derived``,
    ``ente`` (the Unione, or the comune in none, that the site belongs to) and ``checks``:
    the declarations that disagree with the territory, in Italian (or None).
    """
    crs = config.working_crs()
    p = projects.to_crs(crs) if projects.crs != crs else projects.copy()
    p = p.reset_index(drop=True)
    com = territory.comuni.to_crs(crs) if territory.comuni.crs != crs else territory.comuni
    com = com.reset_index(drop=True)
    n = len(p)
    notes: list[list[str]] = [[] for _ in range(n)]

    # the applicant, matched tolerantly; the match is shown when the written name differs
    m = match_applicants(p["applicant"], territory)
    declared_type = _declared(p, "applicant_type").tolist()
    for i, (raw, hit, kind, dt) in enumerate(zip(p["applicant"], m["applicant_match"],
                                                 m["applicant_kind"], declared_type, strict=True)):
        if not isinstance(hit, str):
            continue
        if normalise_name(raw) != normalise_name(hit):
            notes[i].append(f"richiedente '{raw}' riconosciuto come '{hit}'")
        if not _blank(dt) and str(dt).strip().lower() != kind:
            notes[i].append(f"tipo di richiedente dichiarato '{dt}', risulta '{kind}'")

    # the host comune from the polygon
    h = host_comuni(p.geometry, com)
    row = h["host_row"].to_numpy()
    ok = row >= 0
    take = np.where(ok, row, 0)

    def from_com(col: str) -> np.ndarray:
        v = com[col].to_numpy(dtype=object)[take] if col in com.columns else np.full(n, None, object)
        return np.where(ok, v, None)

    host_istat = from_com("istat")
    host_name = from_com("name")
    host_unione = np.array([None if _blank(u) else str(u) for u in from_com("unione")], dtype=object)
    decl_ist = _declared(p, "comune_istat").tolist()
    for i in range(n):
        if not ok[i]:
            continue  # the exclusion reason says it
        if h["n_comuni"].iat[i] > 1:
            notes[i].append(f"il sito è a cavallo di {int(h['n_comuni'].iat[i])} comuni: sede "
                            f"attribuita a {host_name[i]} ({pct(h['host_share'].iat[i])} della "
                            f"superficie)")
        d = decl_ist[i]
        if not _blank(d) and str(d) != host_istat[i]:
            notes[i].append(f"comune dichiarato {d}, ma il sito è a {host_name[i]} ({host_istat[i]})")
    decl_un = _declared(p, "unione").tolist()
    for i in range(n):
        d = decl_un[i]
        if ok[i] and not _blank(d) and normalise_name(d) != normalise_name(host_unione[i] or ""):
            notes[i].append(f"Unione dichiarata '{d}', ma il comune sede "
                            f"{'aderisce a ' + host_unione[i] if host_unione[i] else 'non aderisce a nessuna Unione'}")

    # indicators of the host comune; a declared value that contradicts them is reported
    for col, out in INDICATOR_COLUMNS.items():
        if col not in com.columns:
            continue
        terr = from_com(col)
        decl = _declared(p, out).tolist()
        for i in range(n):
            d, t = decl[i], terr[i]
            if _blank(d) or t is None or _blank(t):
                continue
            same = (normalise_name(d) == normalise_name(t) if out == "territorial_system"
                    else _same_value(d, t, out))
            if not same:
                notes[i].append(f"{out} dichiarato {d!s}, dal territorio risulta {_show(t, out)}")
        p[out] = terr
    p["population"] = pd.array([None if v is None or _blank(v) else int(v)
                                for v in p["population"]], dtype="Int64") \
        if "population" in p.columns else pd.array([pd.NA] * n, dtype="Int64")
    if "fragile" in p.columns:
        p["fragile"] = pd.array([pd.NA if v is None or _blank(v) else bool(v) for v in p["fragile"]],
                                dtype="boolean")
    if "fragility_index" in p.columns:
        p["fragility_index"] = pd.to_numeric(p["fragility_index"], errors="coerce").astype(float)

    # the TU: square metres inside and outside
    area = shapely.area(np.asarray(p.geometry.values, dtype=object))
    inside = tu_inside_m2(p.geometry, territory.tu_pieces)
    inside = np.minimum(inside, area)
    decl_share = (pd.to_numeric(p["inside_tu_share"], errors="coerce").to_numpy(dtype=float)
                  if "inside_tu_share" in p.columns else np.full(n, np.nan))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(area > 0, inside / area, 0.0)
    for i in np.flatnonzero(np.isfinite(decl_share) & (np.abs(decl_share - share) > 0.005)):
        notes[i].append(f"quota nel TU dichiarata {pct(decl_share[i])}, calcolata {pct(share[i])}")

    p["applicant_type_declared"] = pd.Series(declared_type, dtype=object)
    p["applicant_match"] = m["applicant_match"].to_numpy()
    p["applicant_type"] = m["applicant_kind"].to_numpy()
    p["applicant_known"] = m["applicant_kind"].map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
    p["applicant_istat"] = m["applicant_istat"].to_numpy()
    p["applicant_unione"] = m["applicant_unione"].to_numpy()
    p["comune_istat_declared"] = pd.Series(decl_ist, dtype=object)
    p["comune_istat"] = host_istat
    p["host_name"] = host_name
    p["host_share"] = h["host_share"].to_numpy()
    p["n_comuni"] = h["n_comuni"].to_numpy()
    p["unione"] = host_unione
    p["ente"] = np.array([u if u is not None else (f"Comune di {c}" if c is not None else None)
                          for u, c in zip(host_unione, host_name, strict=True)], dtype=object)
    p["site_area_m2"] = area
    p["inside_tu_m2"] = inside
    p["outside_tu_m2"] = np.maximum(area - inside, 0.0)
    p["inside_tu_share"] = np.clip(share, 0.0, 1.0)
    p["tu_derived"] = territory.tu_derived
    p["checks"] = pd.Series(["; ".join(x) if x else None for x in notes], dtype=object)
    return p


def _same_value(d: Any, t: Any, col: str) -> bool:
    if col == "fragile":
        s = str(d).strip().lower()
        dv = s in ("true", "1", "si", "sì", "yes", "vero", "t", "1.0")
        return dv == bool(t)
    try:
        dv, tv = float(str(d).replace(",", ".")), float(t)
    except (TypeError, ValueError):
        return False
    if col == "population":
        return round(dv) == round(tv)
    return abs(dv - tv) <= 0.005


def _show(t: Any, col: str) -> str:
    if col == "fragile":
        return "fragile" if bool(t) else "non fragile"
    if col == "fragility_index":
        return f"{float(t):.3f}".replace(".", ",")
    if col == "population":
        return f"{int(t):,}".replace(",", ".")
    return str(t)
