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
import tempfile
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from pattogis import analysis, config, exports, layers, ledger
from pattogis.criteria import describe
from pattogis.errors import InputError, NotFound
from pattogis.exports import format_num, html_document, html_table
from pattogis.io import atomic_write_text

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
    with it and its Monte Carlo interval, the criteria that add most and the weakest one, missing
    data, exclusion, and a warning when the site lies (partly) outside the metropolitan area.

    The per-criterion work is done once on the whole table (group by site); only the sentences
    are put together site by site.
    """
    ex = explain_sites(scored).dropna(subset=["contrib"])
    ex["_txt"] = [f"{lab} {_fmt(raw)} {unit}" for lab, raw, unit in
                  zip(ex["label_it"], ex["raw"], ex["unit"], strict=True)]
    ex["_best"] = [f"{t} (+{format_num(c, 3)})" for t, c in zip(ex["_txt"], ex["contrib"], strict=True)]
    best = (ex.sort_values(["contrib"], ascending=False, kind="stable").groupby("site_id", sort=False)
            .head(top).groupby("site_id")["_best"].agg("; ".join))
    w = ex[(ex["weight"] > 0) & (ex["norm"] < 0.5)].sort_values("norm", kind="stable")
    w = w.groupby("site_id", sort=False).head(1).set_index("site_id")
    weak = pd.Series([f"{t} (normalizzato {format_num(float(v), 2)})"
                      for t, v in zip(w["_txt"], w["norm"], strict=True)], index=w.index, dtype=object)
    n = int(scored["score"].notna().sum())
    s = scored.reset_index(drop=True)
    col = lambda c, d=None: s[c].tolist() if c in s.columns else [d] * len(s)  # noqa: E731
    out = []
    for sid, score, rank, p5, p95, excl, why_ex, miss, outside, share in zip(
            s["site_id"].astype(str), col("score"), col("rank"), col("rank_p5"), col("rank_p95"),
            col("excluded", False), col("exclusion_reason"), col("missing"),
            col("outside_metro", False), col("inside_metro_share", 1.0), strict=True):
        parts = []
        if bool(excl):
            parts.append(f"escluso: {why_ex or 'regola del profilo'}")
        elif score is not None and pd.notna(score):
            rk = f"{int(rank)}º su {n}" if pd.notna(rank) else "senza posizione"
            if p5 is not None and p95 is not None and pd.notna(p5) and pd.notna(p95):
                rk += f" (intervallo {int(p5)}–{int(p95)} al variare dei pesi)"
            parts.append(f"punteggio {format_num(float(score), 3)}, {rk}")
            if sid in best.index:
                parts.append(f"pesano di più: {best[sid]}")
            if sid in weak.index:
                parts.append(f"punto debole: {weak[sid]}")
        if isinstance(miss, dict) and miss:
            parts.append("dati mancanti: " + "; ".join(f"{k} ({v})" for k, v in miss.items()))
        if bool(outside):
            parts.append(f"ATTENZIONE: sito fuori dall'area metropolitana "
                         f"({format_num(100 * float(share), 1)}% dentro)")
        out.append(f"{sid}: " + "; ".join(parts))
    return pd.Series(out, index=scored.index, name="motivazione")


# --- tables for files ----------------------------------------------------------------------------

MEDIA = exports.MEDIA


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
    if fmt == "csv":
        first = next(iter(sheets.values()))
        return exports.to_csv_it(first, attribution=attribution).encode("utf-8")
    if fmt == "xlsx":
        return exports.xlsx_bytes(sheets, attribution=attribution)
    if fmt == "gpkg":
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


# --- static maps and charts for print ------------------------------------------------------------


def _png_uri(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def static_map(layers_: list[tuple[gpd.GeoDataFrame, dict[str, Any], str]], *, focus: Any,
               title: str, attribution: str, margin_m: float = 300.0) -> str:
    """A printable map as a PNG data URI: each layer drawn with its matplotlib style and Italian
    legend label, framed on ``focus`` (a geometry or bounds in EPSG:25832) with a margin, a
    1 km scale bar and the sources written under it. Axes in metres (EPSG:25832)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: documents are made on servers
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(7.0, 5.2))
    handles = []
    for gdf, style, label in layers_:
        if gdf is None or gdf.empty:
            continue
        gdf.to_crs("EPSG:25832").plot(ax=ax, **style)
        handles.append(Patch(facecolor=style.get("color", style.get("facecolor", "none")),
                             edgecolor=style.get("edgecolor", "#333"), label=label))
    b = focus.bounds if hasattr(focus, "bounds") else focus
    x0, y0, x1, y1 = b
    ax.set_xlim(x0 - margin_m, x1 + margin_m)
    ax.set_ylim(y0 - margin_m, y1 + margin_m)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("")
    ax.set_ylabel("")
    span = (x1 - x0) + 2 * margin_m
    bar = 1000.0 if span > 3000 else 200.0 if span > 800 else 50.0
    bx, by = x0 - margin_m + span * 0.04, y0 - margin_m + ((y1 - y0) + 2 * margin_m) * 0.04
    ax.plot([bx, bx + bar], [by, by], color="black", linewidth=3)
    ax.text(bx, by + span * 0.012, f"{bar:g} m" if bar < 1000 else "1 km", fontsize=7)
    ax.set_title(title, fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.9)
    fig.text(0.01, 0.005, f"Fonti: {attribution}. EPSG:25832.", fontsize=6, color="#444",
             wrap=True)
    return _png_uri(fig)


def trajectory_chart(t: pd.DataFrame, *, title: str) -> str:
    """Cumulative net consumption against the envelope, year by year (ha), as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 2.6))
    ax.step(t["year"], t["cumulative_net_ha"], where="post", color="#08519c",
            label="Consumo netto cumulato")
    ax.axhline(float(t["envelope_ha"].iloc[0]), color="#b2182b", linestyle="--",
               label="Quota disponibile")
    over = t[t["overdraft"].astype(bool)]
    if len(over):
        ax.axvline(int(over["year"].iloc[0]), color="#b2182b", alpha=0.4)
        ax.annotate(f"sforamento dal {int(over['year'].iloc[0])}", (int(over["year"].iloc[0]),
                    float(t["envelope_ha"].iloc[0])), fontsize=7, color="#b2182b",
                    xytext=(4, 6), textcoords="offset points")
    ax.set_ylabel("ettari")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _png_uri(fig)


# --- documents ------------------------------------------------------------------------------------

TU_STYLE = {"color": "#fdd49e", "edgecolor": "#d7301f", "linewidth": 0.4, "alpha": 0.7}
COMUNE_STYLE = {"facecolor": "none", "edgecolor": "#333333", "linewidth": 1.0}


def _kv(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{escape(k)}</th><td class='num'>{v}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _img(uri: str, alt: str) -> str:
    return f"<img src='{uri}' alt='{escape(alt)}' style='width:100%'>"


def _tu_note(tu: gpd.GeoDataFrame) -> str:
    derived = bool((tu.get("source", pd.Series(["derived"])) != "official").any())
    return ("<p class='note'>Territorio urbanizzato <b>derivato</b> dagli edifici (perimetro "
            "provvisorio, config/tu.yaml): sostituibile con il perimetro ufficiale del PUG.</p>"
            if derived else "")


def scheda_comune_html(istat: str, *, scenario: str | None = None,
                       proposals: gpd.GeoDataFrame | None = None) -> str:
    """The printable scheda of a comune (Italian): TU, quota and pools, proposals with their
    measures, what was left out, the trajectory to 2050 with the year of any sforamento, the
    physical ledger beside it, and a map. Figures in ha from :mod:`pattogis.ledger`."""
    comuni, tu = analysis.base_layers()
    istat = analysis.resolve_comune(istat)
    scenario = scenario or analysis.default_scenario(proposals)
    led = ledger.compute(comuni, tu, proposals, scenario=scenario)
    r = led.comuni.set_index("istat").loc[istat]
    name = str(r["name"])
    over = bool(r["overrun"])
    head = (f"<p class='warn'>SFORAMENTO: la quota del comune è superata di {_fmt(r['overrun_ha'], 3)} ha"
            + (f" dal {int(r['overrun_year'])}" if pd.notna(r["overrun_year"]) else "") + ".</p>"
            if over else "<p>Nessuno sforamento della quota nello scenario.</p>")
    quota = _kv([
        ("Unione", escape(str(r["unione"]))),
        ("Territorio urbanizzato al 1/1/2018", f"{_fmt(r['tu_ha'])} ha"),
        ("Quota complessiva (3% del TU)", f"{_fmt(r['quota_ha'], 3)} ha"),
        ("Quota locale (1% del TU, PTM art. 49)", f"{_fmt(r['local_quota_ha'], 3)} ha"),
        ("Quota metropolitana assegnata (Accordi territoriali)", f"{_fmt(r['metro_assigned_ha'], 3)} ha"),
        ("Consumo sulla quota locale", f"{_fmt(r['consumed_locale_ha'], 3)} ha"),
        ("Consumo sulla quota metropolitana", f"{_fmt(r['consumed_metropolitano_ha'], 3)} ha"),
        ("Desigillazione", f"{_fmt(r['desealed_ha'], 3)} ha"),
        ("Consumo esente (art. 6)", f"{_fmt(r['exempt_ha'], 3)} ha"),
        ("Residuo", f"<b>{_fmt(r['remaining_ha'], 3)} ha</b>"),
        ("Sforamento", f"<span class='warn'>sì, {_fmt(r['overrun_ha'], 3)} ha</span>" if over else "no"),
    ])
    m = led.metro.copy()
    pools = html_table(labelled(formatted(m[["label", "quota_ha", "consumed_ha", "desealed_ha",
                                              "remaining_ha", "overrun"]])),
                       numeric=[LEDGER_LABELS_IT[c] for c in ("quota_ha", "consumed_ha",
                                                              "desealed_ha", "remaining_ha")])
    p = led.proposals[led.proposals["comune_istat"] == istat] if len(led.proposals) else led.proposals
    pcols = ["proposal_id", "ptype", "status", "date", "area_ha", "outside_tu_ha", "consumed_ha",
             "exempt_ha", "desealed_ha"]
    pcols = [c for c in pcols if c in p.columns]  # a store's proposal may carry no date
    types = {k: v.get("label", k) for k, v in config.law()["proposal_types"].items()}
    ptab = pd.DataFrame(p[pcols]).assign(ptype=lambda d: d["ptype"].map(types).fillna(d["ptype"]))
    if "title" in p.columns:  # the title under the id: the table must fit an A4 page
        ptab["proposal_id"] = [f"{a} – {b}" if isinstance(b, str) and b else a
                               for a, b in zip(p["proposal_id"], p["title"], strict=True)]
    # nine columns on A4: a smaller type keeps the table inside the page
    props = ("<div style='font-size:7.5pt'>" + html_table(
        labelled(formatted(ptab, 3)), numeric=[LEDGER_LABELS_IT[c] for c in pcols if c.endswith("_ha")])
        + "</div>" if len(p) else "<p>Nessuna proposta nello scenario.</p>")
    lo = led.left_out[led.left_out["comune_istat"] == istat] if len(led.left_out) else led.left_out
    if len(lo):
        props += (f"<p class='warn'>{len(lo)} proposte non conteggiate in questo scenario: "
                  + escape(", ".join(f"{a} ({b})" for a, b in zip(lo["proposal_id"], lo["reason"], strict=True)))
                  + "</p>")
    t = ledger.trajectory(led, level="comune", key=istat)
    moved = t[(t["net_ha"] != 0)]
    traj = _img(trajectory_chart(t, title=f"{name}: traiettoria al 2050 (ettari)"), "traiettoria")
    if len(moved):
        traj += html_table(labelled(formatted(moved[["year", "net_ha", "cumulative_net_ha",
                                                     "envelope_ha", "remaining_ha", "overdraft"]], 3)))
    phys = analysis.physical(comune=istat)["comuni"][0]
    physical = _kv([("Superficie sigillata stimata", f"{_fmt(phys['sealed_ha'])} ha"),
                    ("di cui edifici", f"{_fmt(phys['sealed_buildings_ha'])} ha"),
                    ("di cui strade", f"{_fmt(phys['sealed_roads_ha'])} ha"),
                    ("Quota del territorio comunale", f"{_fmt(100 * phys['sealed_share'], 1)}%"),
                    ("Fonte della stima", escape(str(phys["source"])))])
    cg = comuni[comuni["istat"] == istat]
    tg = tu[tu["comune_istat"] == istat]
    consuming = p[p["consumed_ha"] > 0] if len(p) else p
    other = p[p["consumed_ha"] <= 0] if len(p) else p
    attribution = _attribution(LEDGER_LAYERS)
    mp = static_map([(tg, TU_STYLE, "Territorio urbanizzato"),
                     (cg, COMUNE_STYLE, "Confine comunale"),
                     (other, {"color": "#1a9850", "edgecolor": "#000", "linewidth": 0.8},
                      "Proposte senza consumo"),
                     (consuming, {"color": "#d73027", "edgecolor": "#000", "linewidth": 0.8},
                      "Proposte che consumano quota")],
                    focus=cg.geometry.iloc[0], title=f"{name} – scenario «{scenario}»",
                    attribution=attribution)
    body = (f"<p>Comune di <b>{escape(name)}</b> (ISTAT {istat}) – scenario «{escape(scenario)}». "
            f"LR 24/2017 (consumo di suolo a saldo zero) e PTM di Bologna art. 49. Valori in ettari.</p>"
            f"{head}<h2>Territorio urbanizzato e quota</h2>{quota}{_tu_note(tg)}"
            f"<h2>Quote metropolitane (pool)</h2>{pools}<h2>Proposte</h2>{props}"
            f"<h2>Traiettoria al 2050</h2>{traj}<h2>Mappa</h2>{_img(mp, 'mappa del comune')}"
            f"<h2>Ledger fisico (superficie sigillata)</h2>{physical}"
            "<p class='note'>Il ledger fisico è una stima della superficie sigillata (edifici e "
            "strade) e non entra nel bilancio legale: la LR 24/2017 conta solo il consumo fuori "
            "dal territorio urbanizzato.</p>")
    return html_document(f"Scheda del comune di {name} – consumo di suolo", body,
                         attribution=attribution, generated=_now())


def scheda_site_html(scored: gpd.GeoDataFrame, site_id: str) -> str:
    """The printable scheda of a scored site (Italian): identity, score and rank with the Monte
    Carlo interval, every criterion with unit, source, value, normalised value, weight and
    contribution, missing data, and a map of the site with the TU around it."""
    s = scored.reset_index(drop=True)
    hit = s[s["site_id"].astype(str) == str(site_id)]
    if hit.empty:
        raise NotFound(f"unknown site '{site_id}'")
    r = hit.iloc[0]
    prof = scored.attrs.get("profile") or {}
    comuni, tu = analysis.base_layers()
    host = str(r.get("host_istat") or r.get("comune_istat") or "")
    cname = comuni.set_index("istat")["name"].get(host, "fuori dall'area metropolitana")
    n = int(s["score"].notna().sum())
    interval = (f"{int(r['rank_p5'])}–{int(r['rank_p95'])}" if pd.notna(r.get("rank_p5"))
                and pd.notna(r.get("rank_p95")) else "non calcolato")
    ident = _kv([
        ("Sito", escape(str(r["site_id"]))),
        ("Nome", escape(str(r.get("name", r["site_id"])))),
        ("Comune", escape(f"{cname} ({host})" if host else cname)),
        ("Superficie", f"{_fmt(float(r.geometry.area) / 1e4, 3)} ha"),
        ("Profilo di pesi", escape(f"{prof.get('label_it', prof.get('name', ''))} "
                                   f"({prof.get('method', '')})")),
        ("Punteggio", f"<b>{_fmt(r['score'], 3)}</b>"),
        ("Posizione", f"{_fmt(r['rank'])}ª su {n} siti valutati insieme" if pd.notna(r["rank"])
         else "esclusa"),
        ("Intervallo di posizione (5°–95° percentile, pesi perturbati)", interval),
        ("Probabilità di essere tra i primi", _fmt(r.get("p_top_k", np.nan))),
    ])
    warn = ""
    if bool(r.get("outside_metro", False)):
        warn = (f"<p class='warn'>Sito fuori (anche in parte) dall'area metropolitana: "
                f"{_fmt(100 * float(r['inside_metro_share']), 1)}% dentro. I criteri usano dati "
                "che si fermano al confine.</p>")
    if bool(r.get("excluded", False)):
        warn += f"<p class='warn'>Escluso: {escape(str(r.get('exclusion_reason')))}</p>"
    ex = explain_sites(hit)
    crit = ex.assign(raw=[_fmt(v, 3) for v in ex["raw"]], norm=[_fmt(v, 3) for v in ex["norm"]],
                     weight=[_fmt(v, 3) for v in ex["weight"]],
                     contrib=[_fmt(v, 3) for v in ex["contrib"]])
    crit = crit[["label_it", "unit", "raw", "norm", "weight", "contrib", "source"]].rename(columns={
        "label_it": "Criterio", "unit": "Unità", "raw": "Valore", "norm": "Normalizzato (0-1)",
        "weight": "Peso", "contrib": "Contributo", "source": "Fonte"})
    table = html_table(crit, numeric=["Valore", "Normalizzato (0-1)", "Peso", "Contributo"])
    miss = r.get("missing")
    missing = ("<p><b>Dati mancanti:</b> " + escape("; ".join(f"{k}: {v}" for k, v in miss.items()))
               + "</p>") if isinstance(miss, dict) and miss else ""
    why = escape(reasons_it(s)[hit.index[0]])
    g = gpd.GeoDataFrame(hit[["site_id"]], geometry=[r.geometry], crs=scored.crs)
    near = tu[tu.intersects(r.geometry.buffer(1500))]
    cg = comuni[comuni.intersects(r.geometry.buffer(1500))]
    attribution = _attribution(SCORE_LAYERS)
    mp = static_map([(near, TU_STYLE, "Territorio urbanizzato"), (cg, COMUNE_STYLE, "Confini comunali"),
                     (g, {"color": "#2171b5", "edgecolor": "#000", "linewidth": 1.0}, "Sito")],
                    focus=r.geometry.buffer(400), title=f"Sito {r['site_id']}", attribution=attribution)
    body = (f"{ident}{warn}<h2>Perché questo punteggio</h2><p>{why}</p>"
            f"<h2>Criteri</h2>{table}{missing}"
            "<p class='note'>Contributo di ogni criterio al punteggio secondo il metodo del profilo "
            "(somma pesata: peso × valore normalizzato). I valori normalizzati e il punteggio sono "
            "calcolati rispetto all'insieme di riferimento metropolitano (i siti candidati del "
            "layer 'candidates'): lo stesso sito ha lo stesso punteggio in ogni mappa, elenco e "
            "API. La posizione e l'intervallo si riferiscono invece ai siti valutati insieme a "
            "questo.</p>"
            f"<h2>Mappa</h2>{_img(mp, 'mappa del sito')}")
    return html_document(f"Scheda del sito {r['site_id']}", body, attribution=attribution,
                         generated=_now())


def monitoring_html(report: dict[str, Any]) -> str:
    """The six-monthly monitoring report (LR 24/2017 art. 5) as a printable document, from
    :func:`pattogis.analysis.monitoring`."""
    per = pd.DataFrame(report["periods"])
    led = pd.DataFrame(report["ledger"])
    where = led["name"].iloc[0] if report.get("comune") and len(led) else "tutti i comuni"
    cols = ["istat", "name", "period", "n_approved", "consumed_ha", "desealed_ha", "exempt_ha",
            "cumulative_net_ha", "envelope_ha", "remaining_ha", "overrun"]
    table = (html_table(labelled(formatted(per[cols], 3)),
                        numeric=[LEDGER_LABELS_IT[c] for c in cols if c.endswith("_ha")])
             if len(per) else "<p>Nessuna trasformazione approvata nei periodi.</p>")
    over = led[led["overrun"]] if len(led) else led
    warn = "".join(
        f"<p class='warn'>SFORAMENTO: {escape(str(x.name))} supera la quota di {_fmt(x.overrun_ha, 3)} ha"
        + (f" dal {int(x.overrun_year)}" if pd.notna(x.overrun_year) else "") + ".</p>"
        for x in over.itertuples()) or "<p>Nessuno sforamento.</p>"
    status = html_table(labelled(formatted(led[["istat", "name", "envelope_ha", "consumed_ha",
                                                "remaining_ha", "overrun", "overrun_year"]], 3)))
    body = (f"<p>Monitoraggio semestrale delle trasformazioni (LR 24/2017 art. 5) – {escape(str(where))}, "
            f"scenario «{escape(report['scenario'])}». Trasformazioni con stato: "
            f"{escape(', '.join(report['statuses']))}; periodi di {report['period_months']} mesi "
            "(S1 gennaio–giugno, S2 luglio–dicembre). Valori in ettari.</p>"
            f"<h2>Trasformazioni per semestre</h2>{table}"
            f"<h2>Situazione del bilancio (comprese le proposte in corso)</h2>{warn}{status}")
    return html_document(f"Monitoraggio LR 24/2017 art. 5 – {where}", body,
                         attribution=_attribution(LEDGER_LAYERS), generated=_now())


def document_bytes(html: str, fmt: str) -> bytes:
    """An HTML document as bytes: ``html`` as it is (for print from a browser) or ``pdf``."""
    if fmt == "html":
        return html.encode("utf-8")
    if fmt == "pdf":
        return exports.pdf_bytes(html)
    raise ValueError(f"unknown document format '{fmt}'")


def write_document(html: str, path: Any) -> Any:
    """Write a document atomically; ``.html`` or ``.pdf`` by the path's suffix."""
    path = Path(path)
    suf = path.suffix.lower()
    if suf == ".pdf":
        return exports.html_to_pdf(html, path)
    if suf in (".html", ".htm"):
        atomic_write_text(path, html)
        return path
    raise InputError(f"unsupported document format '{suf}'", file=str(path), hint="Use .html or .pdf")


def ledger_sheets(*, scenario: str | None = None, proposals: gpd.GeoDataFrame | None = None,
                  comune: str | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, gpd.GeoDataFrame]]:
    """The ledger as tables (Italian labels, for CSV/XLSX) and as layers (field names, EPSG:25832,
    for the GeoPackage): comuni, Unioni, metro pools, proposals; one comune when given."""
    comuni, tu = analysis.base_layers()
    scenario = scenario or analysis.default_scenario(proposals)
    led = ledger.compute(comuni, tu, proposals, scenario=scenario)
    c = led.comuni
    p = led.proposals
    if comune:
        comune = analysis.resolve_comune(comune)
        c = c[c["istat"] == comune]
        p = p[p["comune_istat"] == comune] if len(p) else p
    c = c.assign(scenario=scenario)
    sheets = {"comuni": labelled(c), "unioni": labelled(led.unioni), "quote_metropolitane": labelled(led.metro),
              "proposte": labelled(pd.DataFrame(p.drop(columns="geometry", errors="ignore")))}
    geo = {"bilancio_comuni": gpd.GeoDataFrame(comuni[["istat", "geometry"]].merge(c, on="istat"),
                                               crs=comuni.crs)}
    if len(p):
        geo["proposte"] = gpd.GeoDataFrame(p, crs=p.crs or comuni.crs)
    return sheets, geo


def ledger_file(fmt: str, **kw: Any) -> tuple[bytes, str, str]:
    """(bytes, media type, extension) of the ledger as CSV (comuni, Italian format), XLSX (every
    level) or GeoPackage (comuni with their figures, proposals)."""
    sheets, geo = ledger_sheets(**kw)
    return table_file(sheets, fmt, attribution=_attribution(LEDGER_LAYERS), geo=geo), MEDIA[fmt], fmt
