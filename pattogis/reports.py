"""Documents a planner attaches to a Valsat or a relazione, in Italian: why each site scores as it
does, the printable "scheda" of a comune (TU, quota, pools, proposals, trajectory, map) and of a
site (criteria with units and sources, contributions, rank interval, map), as HTML for print and
PDF (WeasyPrint, :mod:`pattogis.exports`), and the ledger and the scores as tables for CSV
(Italian format), XLSX and GeoPackage.

Everything here composes what the ledger, the criteria and the scoring already computed: no figure
is computed twice. Areas in hectares; maps drawn in EPSG:25832 (metres).
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from html import escape
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pattogis.exports import format_num, html_document, html_table

# Italian labels of the ledger's fields, for human output (CLI, tables, schede).
LEDGER_LABELS_IT: dict[str, str] = {
    "istat": "Codice ISTAT",
    "name": "Comune",
    "unione": "Unione",
    "pool": "Quota",
    "label": "Descrizione",
    "share": "Percentuale",
    "tu_ha": "Territorio urbanizzato al 1/1/2018 (ha)",
    "quota_ha": "Quota del 3% (ha)",
    "local_quota_ha": "Quota locale 1% (ha)",
    "metro_assigned_ha": "Quota metropolitana assegnata (ha)",
    "consumed_ha": "Consumo di suolo (ha)",
    "consumed_locale_ha": "Consumo sulla quota locale (ha)",
    "consumed_metropolitano_ha": "Consumo sulla quota metropolitana (ha)",
    "desealed_ha": "Desigillazione (ha)",
    "desealed_locale_ha": "Desigillazione sulla quota locale (ha)",
    "desealed_metropolitano_ha": "Desigillazione sulla quota metropolitana (ha)",
    "exempt_ha": "Consumo esente (art. 6) (ha)",
    "remaining_ha": "Residuo (ha)",
    "remaining_locale_ha": "Residuo della quota locale (ha)",
    "remaining_metro_assigned_ha": "Residuo della quota metropolitana assegnata (ha)",
    "unassigned_ha": "Quota metropolitana non assegnata (ha)",
    "n_proposals": "Proposte",
    "n_comuni": "Comuni",
    "overrun": "Sforamento",
    "overrun_ha": "Sforamento (ha)",
    "overrun_year": "Anno dello sforamento",
    "delta_consumed_ha": "Δ consumo (ha)",
    "delta_desealed_ha": "Δ desigillazione (ha)",
    "delta_remaining_ha": "Δ residuo (ha)",
    "delta_remaining_locale_ha": "Δ residuo quota locale (ha)",
    "delta_overrun_ha": "Δ sforamento (ha)",
    "delta_n_proposals": "Δ proposte",
    "n_comuni_overrun": "Comuni in sforamento",
    "year": "Anno",
    "net_ha": "Consumo netto (ha)",
    "cumulative_net_ha": "Consumo netto cumulato (ha)",
    "envelope_ha": "Quota disponibile (ha)",
    "overdraft": "Sforamento",
    "period": "Semestre",
    "n_approved": "Proposte approvate",
    "proposal_id": "Proposta",
    "title": "Titolo",
    "ptype": "Tipo",
    "status": "Stato",
    "date": "Data",
    "area_ha": "Superficie (ha)",
    "inside_tu_ha": "Dentro il TU (ha)",
    "outside_tu_ha": "Fuori dal TU (ha)",
    "exemption": "Esenzione",
    "sealed_ha": "Superficie sigillata (ha)",
    "sealed_buildings_ha": "Sigillato da edifici (ha)",
    "sealed_roads_ha": "Sigillato da strade (ha)",
    "sealed_share": "Quota sigillata del territorio",
    "source": "Fonte della stima",
}


def labelled(df: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """The frame with Italian column labels (unknown columns keep their name)."""
    labels = labels or LEDGER_LABELS_IT
    return df.rename(columns={c: labels.get(c, c) for c in df.columns})


def _now() -> str:
    return datetime.now(UTC).strftime("%d/%m/%Y %H:%M UTC")


def _fmt(v: Any, decimals: int = 2) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "sì" if v else "no"
    if isinstance(v, (int, np.integer)):
        return format_num(float(v), 0)
    if isinstance(v, (float, np.floating)):
        return "—" if np.isnan(v) else format_num(float(v), decimals)
    return "—" if v is None else str(v)


def formatted(df: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """Every value as Italian text: 1.234,56; sì/no; — for missing."""
    out = df.copy()
    for c in out.columns:
        if str(c) == "year" or str(c).endswith("_year"):  # years are not quantities: no 2.026
            out[c] = ["—" if v is None or pd.isna(v) else str(int(v)) for v in out[c]]
        else:
            out[c] = [_fmt(v, decimals) for v in out[c]]
    return out


# --- why a site scores as it does ----------------------------------------------------------------


def explain_sites(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per (site, criterion of the profile): Italian label, unit, source, raw value,
    normalised value (0..1), weight and contribution to the score (the score is the sum of the
    contributions for the weighted sum), with the site's score, rank and rank interval.

    ``scored``: the output of :func:`pattogis.analysis.score_sites` (its profile in ``attrs``).
    """
    from pattogis.criteria import describe

    prof = scored.attrs.get("profile") or {}
    crit = prof.get("criteria") or {}
    names = [n for n in crit if f"contrib_{n}" in scored.columns]
    info = describe().set_index("name")
    rows = []
    s = scored.reset_index(drop=True)
    for n in names:  # one block per criterion (a dozen), vectorised over the sites
        c = crit[n]
        rows.append(pd.DataFrame({
            "site_id": s["site_id"].astype(str),
            "criterion": n,
            "label_it": c.get("label_it", n),
            "unit": c.get("unit", info["unit"].get(n, "")),
            "source": info["source"].get(n, ""),
            "direction": c.get("direction", ""),
            "raw": pd.to_numeric(s[n], errors="coerce") if n in s.columns else np.nan,
            "norm": s[f"norm_{n}"].astype(float),
            "weight": float(c.get("weight", np.nan)),
            "contrib": s[f"contrib_{n}"].astype(float),
        }))
    if not rows:
        return pd.DataFrame(columns=["site_id", "criterion", "label_it", "unit", "source",
                                     "direction", "raw", "norm", "weight", "contrib"])
    t = pd.concat(rows, ignore_index=True)
    order = {sid: i for i, sid in enumerate(s["site_id"].astype(str))}
    t["_o"] = t["site_id"].map(order)
    return t.sort_values(["_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def reasons_it(scored: pd.DataFrame, *, top: int = 2) -> pd.Series:
    """One Italian sentence per site (indexed like ``scored``): score, rank among the sites scored
    with it and its Monte Carlo interval, the criteria that add most and least, missing data,
    exclusion, and a warning when the site lies (partly) outside the metropolitan area."""
    ex = explain_sites(scored)
    n = int(scored["score"].notna().sum())
    out = []
    for _, r in scored.reset_index(drop=True).iterrows():  # one sentence per site, for people
        sid = str(r["site_id"])
        parts = []
        if bool(r.get("excluded", False)):
            parts.append(f"escluso: {r.get('exclusion_reason') or 'regola del profilo'}")
        elif pd.notna(r.get("score")):
            rk = f"{int(r['rank'])}º su {n}" if pd.notna(r.get("rank")) else "senza posizione"
            if pd.notna(r.get("rank_p5")) and pd.notna(r.get("rank_p95")):
                rk += f" (intervallo {int(r['rank_p5'])}–{int(r['rank_p95'])} al variare dei pesi)"
            parts.append(f"punteggio {format_num(float(r['score']), 3)}, {rk}")
            e = ex[ex["site_id"] == sid].dropna(subset=["contrib"]).sort_values("contrib", ascending=False)
            if len(e):
                best = "; ".join(f"{x.label_it} {_fmt(x.raw)} {x.unit} (+{format_num(x.contrib, 3)})"
                                 for x in e.head(top).itertuples())
                parts.append(f"pesano di più: {best}")
                worst = e[(e["weight"] > 0) & (e["norm"] < 0.5)].sort_values("norm").head(1)
                if len(worst):
                    w = worst.iloc[0]
                    parts.append(f"punto debole: {w.label_it} {_fmt(w.raw)} {w.unit} "
                                 f"(normalizzato {format_num(float(w.norm), 2)})")
        miss = r.get("missing")
        if isinstance(miss, dict) and miss:
            parts.append("dati mancanti: " + "; ".join(f"{k} ({v})" for k, v in miss.items()))
        if bool(r.get("outside_metro", False)):
            share = float(r.get("inside_metro_share", 0.0))
            parts.append(f"ATTENZIONE: sito fuori dall'area metropolitana "
                         f"({format_num(100 * share, 1)}% dentro)")
        out.append(f"{sid}: " + "; ".join(parts))
    return pd.Series(out, index=scored.index, name="motivazione")


# --- tables for files ----------------------------------------------------------------------------

MEDIA = {"csv": "text/csv; charset=utf-8", "xlsx":
         "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
         "gpkg": "application/geopackage+sqlite3", "pdf": "application/pdf",
         "html": "text/html; charset=utf-8"}


def _flat(df: pd.DataFrame) -> pd.DataFrame:
    """Nested values (dicts of missing reasons) as text, so every file format can hold them."""
    out = df.copy()
    for c in out.columns:
        if c != "geometry" and out[c].dtype == object:
            nested = out[c].map(lambda v: isinstance(v, (dict, list)))
            if nested.any():
                out[c] = out[c].map(lambda v: "; ".join(f"{k}: {x}" for k, x in v.items())
                                    if isinstance(v, dict) else ("" if v is None else str(v)))
    return out


def scores_table(scored: pd.DataFrame) -> pd.DataFrame:
    """Scored sites as one flat table, best first, with the Italian reason of each."""
    s = scored.sort_values("rank", na_position="last")
    s = _flat(s.assign(motivazione=reasons_it(s).to_numpy()))
    return s


def _attribution(names: list[str]) -> str:
    from pattogis import layers

    try:
        return layers.attribution(names)
    except Exception:  # a layer set without catalog: say where the figures come from anyway
        return "ISTAT; © OpenStreetMap contributors; Dipartimento della Protezione Civile"


SCORE_LAYERS = ["comuni", "territorio_urbanizzato", "rail_stations", "bus_stops", "buildings"]
LEDGER_LAYERS = ["comuni", "territorio_urbanizzato"]


def table_file(sheets: dict[str, pd.DataFrame], fmt: str, *, attribution: str,
               geo: dict[str, gpd.GeoDataFrame] | None = None) -> bytes:
    """Bytes of a CSV (Italian format: the first sheet), an XLSX (every sheet plus ``Fonti``) or
    a GeoPackage (``geo`` layers, or the sheets with geometry)."""
    from pattogis import exports

    if fmt == "csv":
        first = next(iter(sheets.values()))
        return exports.to_csv_it(first, attribution=attribution).encode("utf-8")
    if fmt == "xlsx":
        return exports.xlsx_bytes(sheets, attribution=attribution)
    if fmt == "gpkg":
        import tempfile
        from pathlib import Path

        layers_ = geo or {k: v for k, v in sheets.items() if isinstance(v, gpd.GeoDataFrame)}
        with tempfile.TemporaryDirectory() as d:
            p = exports.write_gpkg(layers_, Path(d) / "export.gpkg", attribution=attribution)
            return p.read_bytes()
    raise ValueError(f"unknown table format '{fmt}'")


def scores_file(scored: gpd.GeoDataFrame, fmt: str) -> tuple[bytes, str, str]:
    """(bytes, media type, extension) of the scores: CSV, XLSX (scores and the criteria of every
    site) or GeoPackage (sites with scores, EPSG:25832)."""
    table = scores_table(scored)
    sheets: dict[str, pd.DataFrame] = {"punteggi": table}
    if fmt == "xlsx":
        sheets["criteri"] = explain_sites(scored)
    geo = None
    if fmt == "gpkg":
        geo = {"punteggi": gpd.GeoDataFrame(table, geometry="geometry", crs=scored.crs)}
    return table_file(sheets, fmt, attribution=_attribution(SCORE_LAYERS), geo=geo), MEDIA[fmt], fmt
