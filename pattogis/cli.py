"""The ``pattogis`` command: a thin face over the library (the API is the other one).

Verbs: data build | data fetch | layers | budget | monitoring | physical | score | scheda | export |
fund | maps | keys | serve | run.
Errors of pattogis print their message (what, where, what to do) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from pattogis.errors import MissingDataError, PattogisError


def _json(obj: Any) -> str:
    from pattogis.exports import no_nan  # the verbs import the GIS stack lazily: --help is fast

    return json.dumps(no_nan(json.loads(json.dumps(obj, default=_default))), ensure_ascii=False,
                      indent=2, allow_nan=False)


def _default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if pd.isna(o):
        return None
    return str(o)


def cmd_data_build(a: argparse.Namespace) -> None:
    from pattogis.data.build import build

    build(a.raw, a.out, crs=a.crs, engine=a.engine, stations=a.stations)


def cmd_data_fetch(a: argparse.Namespace) -> None:
    from pattogis.data.fetch import fetch

    st = fetch(a.raw, base_url=a.base_url)
    for k, v in st.items():
        print(f"{v:<8} {k}")


def cmd_layers(a: argparse.Namespace) -> None:
    from pattogis import layers

    cat = layers.catalog()
    if a.json:
        print(_json(cat.to_dict(orient="records")))
        return
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(cat[["name", "kind", "count", "shape", "provenance", "licence", "crs"]].to_string(index=False))
    # Rule, parameters and known limits of each layer: what a user must know before trusting it.
    print()
    for r in cat.itertuples():
        if isinstance(r.notes, str) and r.notes:
            print(f"{r.name} ({r.provenance}): {r.notes}\n")


def _ha(v: Any, d: int = 3) -> str:
    from pattogis.exports import format_num

    return "—" if v is None or pd.isna(v) else f"{format_num(float(v), d)} ha"


def _it_table(df: pd.DataFrame, cols: list[str]) -> str:
    """A ledger table with Italian labels and numbers in the Italian format."""
    from pattogis import reports

    return reports.labelled(reports.formatted(df[[c for c in cols if c in df.columns]])).to_string(index=False)


def _print_left_out(out: dict[str, Any], scenario: str) -> None:
    lo = out.get("left_out") or {}
    if not lo.get("n"):
        return
    parts = [f"{n} nello scenario «{k}» (usa --scenario {k})" for k, n in lo["by_scenario"].items()]
    parts += [f"{n} con stato «{k}»" for k, n in lo["by_status"].items()]
    print(f"\nATTENZIONE: {lo['n']} proposte NON conteggiate nello scenario «{scenario}»: "
          + "; ".join(parts))


def _scenario(a: argparse.Namespace) -> str | None:
    """--scenario, else the one scenario of a --proposals file (None: decided from the file),
    else 'base' for the proposals store."""
    return a.scenario or (None if a.proposals else "base")


def _proposals(a: argparse.Namespace) -> Any:
    """The proposals a verb reads: a file given with --proposals, else the store as --role may
    read it (default: the public view, submitted and approved only)."""
    from pattogis import analysis

    if getattr(a, "proposals", None):
        return analysis.load_proposals(a.proposals)
    return analysis.load_proposals(role=getattr(a, "role", None))


def cmd_budget(a: argparse.Namespace) -> None:
    from pattogis import analysis

    props = _proposals(a)
    out = analysis.budget(comune=a.comune, unione=a.unione, scenario=_scenario(a), proposals=props,
                          compare_with=a.compare, with_trajectory=a.trajectory)
    if a.json:
        print(_json(out))
        return
    sc = out["scenario"]
    print(f"Bilancio del consumo di suolo (LR 24/2017) — scenario «{sc}» (ettari)")
    if out["level"] == "metro":
        m = pd.DataFrame(out["metro"])
        print(_it_table(m, ["label", "quota_ha", "consumed_ha", "desealed_ha", "exempt_ha",
                            "remaining_ha", "overrun"]))
        u = pd.DataFrame(out["unioni"])
        print()
        print(_it_table(u, ["unione", "tu_ha", "local_quota_ha", "consumed_ha", "desealed_ha",
                            "remaining_ha", "overrun", "n_comuni_overrun"]))
        c = pd.DataFrame(out["comuni"])
        over = c[c["overrun"]]
        for r in over.itertuples():
            yr = f" dal {int(r.overrun_year)}" if pd.notna(r.overrun_year) else ""
            print(f"SFORAMENTO: {r.name} supera la quota di {_ha(r.overrun_ha)}{yr}")
        tot = m[m["pool"] == "totale"].iloc[0]
        if tot["overrun"] or (m["overrun"]).any():
            print("SFORAMENTO della quota metropolitana: "
                  + ", ".join(f"{r.label} {_ha(r.overrun_ha)}" for r in m[m["overrun"]].itertuples()))
    else:
        from pattogis.reports import LEDGER_LABELS_IT as L

        rows = ([("name", out.get("name")), ("istat", out.get("istat")), ("unione", out.get("unione"))]
                if out["level"] == "comune" else [("unione", out.get("unione")),
                                                   ("n_comuni", out.get("n_comuni"))])
        for k in ("tu_ha", "quota_ha", "local_quota_ha", "metro_assigned_ha", "consumed_locale_ha",
                  "consumed_metropolitano_ha", "desealed_ha", "exempt_ha", "remaining_locale_ha",
                  "remaining_ha", "n_proposals"):
            if k in out:
                rows.append((k, out[k]))
        for k, v in rows:
            if v is None:
                continue
            shown = _ha(v) if k.endswith("_ha") else str(v)
            print(f"{L.get(k, k).removesuffix(' (ha)'):<44} {shown}")
        if out.get("overrun"):
            yr = f" dal {int(out['overrun_year'])}" if pd.notna(out.get("overrun_year")) else ""
            print(f"{'SFORAMENTO':<44} sì: quota superata di {_ha(out['overrun_ha'])}{yr}")
        else:
            print(f"{'Sforamento':<44} no")
        for r in (x for x in out.get("comuni", []) if x.get("overrun")):
            yr = f" dal {int(r['overrun_year'])}" if pd.notna(r.get("overrun_year")) else ""
            print(f"SFORAMENTO: {r['name']} supera la quota di {_ha(r['overrun_ha'])}{yr}")
    if a.trajectory:
        yr = out.get("trajectory_overrun_year")
        print("\nTraiettoria al 2050:", f"SFORAMENTO dal {yr}" if yr else "nessuno sforamento")
        t = pd.DataFrame(out["trajectory"])
        moved = t[(t["net_ha"] != 0) | t["overdraft"].astype(bool).diff().fillna(False).astype(bool)]
        print(_it_table(moved, ["year", "net_ha", "cumulative_net_ha", "envelope_ha", "remaining_ha",
                                "overdraft"]))
    if a.compare:
        print(f"\nConfronto «{sc}» − «{a.compare}» (differenza = {sc} meno {a.compare}, ettari):")
        cmp = pd.DataFrame(out["comparison"])
        print(_it_table(cmp, ["istat", "name", "delta_consumed_ha", "delta_desealed_ha",
                              "delta_remaining_ha", "delta_overrun_ha", "delta_n_proposals"]))
    _print_left_out(out, sc)


def cmd_monitoring(a: argparse.Namespace) -> None:
    from pattogis import analysis

    props = _proposals(a)
    out = analysis.monitoring(comune=a.comune, proposals=props, scenario=_scenario(a))
    if a.json:
        print(_json(out))
        return
    where = out["ledger"][0]["name"] if a.comune and out["ledger"] else "tutti i comuni"
    print(f"Monitoraggio semestrale (LR 24/2017 art. 5) — {where}, scenario «{out['scenario']}»")
    print(f"Trasformazioni con stato: {', '.join(out['statuses'])}; periodi di {out['period_months']} mesi")
    per = pd.DataFrame(out["periods"])
    if per.empty:
        print("Nessuna trasformazione approvata nei periodi.")
    else:
        print(_it_table(per, ["istat", "name", "period", "n_approved", "consumed_ha", "desealed_ha",
                              "exempt_ha", "cumulative_net_ha", "envelope_ha", "remaining_ha", "overrun"]))
    led = pd.DataFrame(out["ledger"])
    over = led[led["overrun"]]
    print("\nSituazione del bilancio (comprese le proposte in corso):")
    if a.comune:
        print(_it_table(led, ["name", "envelope_ha", "consumed_ha", "remaining_ha", "overrun",
                              "overrun_year"]))
    for r in over.itertuples():
        yr = f" dal {int(r.overrun_year)}" if pd.notna(r.overrun_year) else ""
        print(f"SFORAMENTO: {r.name} supera la quota di {_ha(r.overrun_ha)}{yr}")
    if over.empty:
        print("Nessuno sforamento.")
    if a.out:
        from pattogis import reports

        path = reports.write_document(reports.monitoring_html(out), a.out)
        print(f"Rapporto di monitoraggio → {path}")


def cmd_physical(a: argparse.Namespace) -> None:
    from pattogis import analysis

    props = analysis.load_proposals(a.proposals) if a.proposals else None
    out = analysis.physical(comune=a.comune, proposals=props)
    if a.json:
        print(_json(out))
        return
    print("Ledger fisico: superficie sigillata stimata (ettari), separato dal bilancio legale LR 24/2017")
    print(_it_table(pd.DataFrame(out["comuni"]), ["istat", "name", "sealed_buildings_ha",
                                                  "sealed_roads_ha", "sealed_ha", "sealed_share", "source"]))
    if out.get("proposals"):
        print("\nSuperficie sigillata (edifici) dentro le proposte:")
        print(_it_table(pd.DataFrame(out["proposals"]).rename(
            columns={"sealed_buildings_ha": "sealed_buildings_ha"}), ["proposal_id", "part",
                                                                     "sealed_buildings_ha"]))


def _read_options(a: argparse.Namespace) -> dict[str, Any]:
    """How to read a planner's own sites (only what the user gave)."""
    opts = {"crs": a.crs, "id_field": a.id_field, "name_field": a.name_field,
            "wkt_field": a.wkt_field, "lon_field": a.lon_field, "lat_field": a.lat_field}
    return {k: v for k, v in opts.items() if v}


def cmd_score(a: argparse.Namespace) -> None:
    from pattogis import analysis, reports
    from pattogis.scoring import write_scores

    cand: Any = a.candidates
    if a.candidates:
        cand = analysis.read_own_sites(a.candidates, **_read_options(a))
    scored = analysis.score_sites(cand, profile=a.profile, method=a.method, draws=a.draws,
                                  engine=a.engine)
    if a.out:
        write_scores(scored, a.out)
        print(f"{len(scored)} siti valutati → {a.out}")
    if a.json:
        from pattogis.scoring import to_records

        out = scored.sort_values("rank").reset_index(drop=True)
        recs = to_records(out.drop(columns="geometry", errors="ignore"))
        for rec, why in zip(recs, reports.reasons_it(out), strict=True):
            rec["motivazione"] = why
        print(_json({"profile": scored.attrs.get("profile"), "sites": recs}))
        return
    cols = {"site_id": "sito", "name": "nome", "comune_istat": "comune", "host_istat": "comune",
            "score": "punteggio", "rank": "posizione", "rank_p5": "pos. P5", "rank_p95": "pos. P95",
            "p_top_k": "prob. tra i primi", "outside_metro": "fuori area metro"}
    show = scored.sort_values("rank").head(a.top)
    keep = [c for c in cols if c in show.columns and not (c == "host_istat" and "comune_istat" in show)]
    print(show[keep].rename(columns=cols).to_string(index=False))
    n_out = int(scored["outside_metro"].sum()) if "outside_metro" in scored.columns else 0
    if n_out:
        print(f"\nATTENZIONE: {n_out} siti fuori (anche in parte) dall'area metropolitana")
    if a.explain:
        print("\nPerché:")
        for line in reports.reasons_it(scored).loc[show.index]:
            print(" - " + line)


def _own_or_default(a: argparse.Namespace) -> Any:
    from pattogis import analysis

    return analysis.read_own_sites(a.candidates, **_read_options(a)) if a.candidates else None


def cmd_scheda(a: argparse.Namespace) -> None:
    from pattogis import analysis, reports

    if a.comune:
        props = _proposals(a)
        html = reports.scheda_comune_html(a.comune, scenario=_scenario(a), proposals=props)
    else:
        scored = analysis.score_sites(_own_or_default(a), profile=a.profile, draws=a.draws)
        html = reports.scheda_site_html(scored, a.site)
    path = reports.write_document(html, a.out)
    print(f"Scheda → {path}")


def cmd_export(a: argparse.Namespace) -> None:
    from pathlib import Path

    from pattogis import analysis, reports
    from pattogis.errors import InputError
    from pattogis.io import atomic_path

    fmt = Path(a.out).suffix.lower().lstrip(".")
    if fmt not in ("csv", "xlsx", "gpkg"):
        raise InputError(f"unsupported export format '.{fmt}'", file=a.out, hint="Use .csv, .xlsx or .gpkg")
    if a.what == "ledger":
        props = _proposals(a)
        data, _, _ = reports.ledger_file(fmt, scenario=_scenario(a), proposals=props, comune=a.comune)
    else:
        scored = analysis.score_sites(_own_or_default(a), profile=a.profile, draws=a.draws)
        data, _, _ = reports.scores_file(scored, fmt)
    with atomic_path(a.out) as tmp:
        tmp.write_bytes(data)
    print(f"{a.what} → {a.out}")


def _site_args(p: argparse.ArgumentParser) -> None:
    """How to give a planner's own sites (score, scheda, export)."""
    p.add_argument("--candidates", help="your own sites: .gpkg, .geojson, zipped Shapefile (.zip), "
                   ".parquet, or .csv with a WKT or lon/lat columns (default: the built candidate set)")
    p.add_argument("--crs", help="CRS of a file that declares none (CSV and GeoJSON default to "
                   "WGS84 lon/lat), e.g. EPSG:25832")
    p.add_argument("--id-field", help="column holding the site id (default: site_id/id/codice, "
                   "else SITO-001...)")
    p.add_argument("--name-field", help="column holding the site name (default: name/nome)")
    p.add_argument("--wkt-field", help="CSV column holding WKT geometry (default: wkt/geometry)")
    p.add_argument("--lon-field", help="CSV longitude column (default: lon/longitude/x)")
    p.add_argument("--lat-field", help="CSV latitude column (default: lat/latitude/y)")
    p.add_argument("--profile", default="unione")


def cmd_fund(a: argparse.Namespace) -> None:
    from pattogis import analysis
    from pattogis.fund import export

    if a.action == "template":
        from pattogis.io import atomic_write_text

        out = a.out[0] if a.out else "domande_modello.csv"
        atomic_write_text(out, export.template_csv())
        print(f"empty applications template (documented columns) → {out}")
        return
    if not a.projects:
        raise PattogisError("fund: give the applications with --projects FILE "
                            "(an empty template: `pattogis fund template --out domande.csv`)")
    res = analysis.fund(a.call, a.projects, a.mode)
    for out in a.out or []:  # every document written whole or not at all
        print(f"graduatoria → {export.write(res, out)}", file=sys.stderr)
    if a.json:
        print(_json(res.to_dict()))
    else:
        print(res.to_text() if hasattr(res, "to_text") else _json(res.to_dict()))


def cmd_maps(a: argparse.Namespace) -> None:
    from pattogis import analysis, maps

    props = _proposals(a)
    sites = analysis.unione_sites(a.unione) if a.unione else None
    fund = (analysis.fund_geo(a.call, projects=a.projects, demo=a.demo and not a.projects)
            if a.fund else None)
    for name, p in maps.write_pages(a.out, proposals=props, comune=a.comune, sites=sites,
                                    unione=a.unione, fund=fund).items():
        print(f"{name:<24} {p}")


def cmd_keys(a: argparse.Namespace) -> None:
    from pattogis.errors import InputError
    from pattogis.store import create_key, keys_path, list_keys, revoke_key

    if a.action == "create":
        if not a.role:
            raise InputError("keys create needs --role", field="role",
                             hint="e.g. --role comune:037006, --role unione:NAME or --role metro")
        key = create_key(a.role, label=a.label or "")
        print(f"API key for {a.role} (shown once; store it safely):\n{key}")
    elif a.action == "revoke":
        if not a.key_id:
            raise InputError("keys revoke needs the key id (see `pattogis keys list`)",
                             field="key_id")
        revoke_key(a.key_id)
        print(f"chiave {a.key_id} revocata ({keys_path()})")
    else:
        keys = list_keys()
        if a.json:
            print(_json(keys.to_dict(orient="records")))
        elif keys.empty:
            print(f"nessuna chiave in {keys_path()}")
        else:
            keys = keys.assign(revoked=keys["revoked"].map({True: "revocata", False: "attiva"}))
            print(keys.rename(columns={"revoked": "stato"}).to_string(index=False))


def cmd_serve(a: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run("api.app:app", host=a.host, port=a.port, log_level="info")


def build_in_child(raw: str | None) -> None:
    """``pattogis data build`` in a child process: the server that follows starts without the
    build's memory (CPython keeps what the derivations used: about 450 MiB)."""
    import subprocess

    cmd = [sys.executable, "-m", "pattogis.cli", "data", "build"]
    if raw:
        cmd += ["--raw", str(raw)]
    if subprocess.run(cmd, check=False).returncode != 0:
        raise MissingDataError("the layer set could not be built (see the messages above); "
                               "fix the cause and run `pattogis data build`")


def cmd_run(a: argparse.Namespace) -> None:
    """The main job: build the layers if missing, then serve the API and the maps."""
    from pattogis import layers

    problem = layers.problem()
    if problem is not None:
        print(f"{problem}: building it now", flush=True)
        build_in_child(a.raw)
    else:
        print(f"layer set complete at {layers.layers_dir()} (rebuild with `pattogis data build`)")
    cmd_serve(a)


def _store_args(p: argparse.ArgumentParser) -> None:
    """``--role``: how a verb that reads the proposals store sees it (the read rule)."""
    p.add_argument("--role", help="read the store as this role (comune:ISTAT | unione:NAME | "
                   "metro: its drafts too); default: the public, submitted and approved only")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pattogis", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("data", help="build or fetch the layer set").add_subparsers(dest="sub", required=True)
    b = d.add_parser("build", help="build the layer set (data/layers/current) from the raw kit")
    b.add_argument("--raw", help="raw kit folder (default $PATTOGIS_RAW, then ../shared/data/raw)")
    b.add_argument("--out", help="the layer set's folder, a link switched to each new build "
                   "(default data/layers/current)")
    b.add_argument("--crs", help="working CRS (default EPSG:25832, config/settings.yaml)")
    b.add_argument("--engine", choices=["local", "dask"], default="local",
                   help="where the TU derivation runs (dask: partitioned by comune; "
                        "$PATTOGIS_DASK_SCHEDULER or a local cluster)")
    b.add_argument("--stations", action="append", metavar="FILE",
                   help="add passenger stations from a file (CSV with name, lon, lat in WGS84, or "
                        "any GIS point format with a name field), merged and deduplicated; "
                        "repeatable")
    b.set_defaults(func=cmd_data_build)
    f = d.add_parser("fetch", help="download the raw kit and verify checksums")
    f.add_argument("--raw", required=True)
    f.add_argument("--base-url", help="mirror to download from instead of the official addresses")
    f.set_defaults(func=cmd_data_fetch)

    ly = sub.add_parser("layers", help="print the layer catalog")
    ly.add_argument("--json", action="store_true")
    ly.set_defaults(func=cmd_layers)

    bu = sub.add_parser("budget", help="land-budget ledger (LR 24/2017)")
    g = bu.add_mutually_exclusive_group()
    g.add_argument("--comune", help="ISTAT code or name")
    g.add_argument("--unione", help="Unione name")
    bu.add_argument("--scenario", help="scenario (default: the one scenario of --proposals, else base)")
    bu.add_argument("--proposals", help="proposals file (default: the proposals store)")
    bu.add_argument("--compare", metavar="SCENARIO", help="compare with another scenario, per comune of "
                    "the level asked (difference = --scenario minus this one)")
    bu.add_argument("--trajectory", action="store_true", help="year-by-year path to 2050")
    _store_args(bu)
    bu.add_argument("--json", action="store_true")
    bu.set_defaults(func=cmd_budget)

    mo = sub.add_parser("monitoring", help="six-monthly monitoring (LR 24/2017 art. 5)")
    mo.add_argument("--comune", help="ISTAT code or name")
    mo.add_argument("--scenario", help="scenario (default: the one of --proposals, else base)")
    mo.add_argument("--proposals", help="proposals file (default: the proposals store)")
    mo.add_argument("--out", help="write the report as a document (.html or .pdf)")
    mo.add_argument("--json", action="store_true")
    _store_args(mo)
    mo.set_defaults(func=cmd_monitoring)

    ph = sub.add_parser("physical", help="physical ledger: sealed surface per comune (not LR 24)")
    ph.add_argument("--comune", help="ISTAT code or name")
    ph.add_argument("--proposals", help="proposals file: sealed surface inside each")
    ph.add_argument("--json", action="store_true")
    ph.set_defaults(func=cmd_physical)

    sc = sub.add_parser("score", help="score candidate sites")
    _site_args(sc)
    sc.add_argument("--explain", action="store_true", help="say in Italian why each site scores as it does")
    sc.add_argument("--json", action="store_true", help="every site with criteria, contributions "
                    "and the Italian reason, as JSON")
    sc.add_argument("--method", choices=["wsum", "topsis"])
    sc.add_argument("--draws", type=int, default=None,
                    help="Monte Carlo weight draws (default: the profile's monte_carlo.draws)")
    sc.add_argument("--out", help="output file (.gpkg, .geojson, .csv)")
    sc.add_argument("--top", type=int, default=20)
    sc.add_argument("--engine", choices=["local", "dask"], default="local",
                    help="where the criteria run (dask: sites partitioned by host comune)")
    sc.set_defaults(func=cmd_score)

    sh = sub.add_parser("scheda", help="printable scheda (.html or .pdf) of a comune or a site")
    g = sh.add_mutually_exclusive_group(required=True)
    g.add_argument("--comune", help="ISTAT code or name: TU, quota, pools, proposals, trajectory, map")
    g.add_argument("--site", help="site id: criteria, contributions, rank interval, map")
    sh.add_argument("--out", required=True, help="output file, .html (for print) or .pdf")
    sh.add_argument("--scenario", help="scenario (comune; default: the one of --proposals, else base)")
    sh.add_argument("--proposals", help="proposals file (comune; default: the proposals store)")
    sh.add_argument("--draws", type=int, default=None,
                    help="Monte Carlo weight draws (site; default: the profile's)")
    _site_args(sh)
    _store_args(sh)
    sh.set_defaults(func=cmd_scheda)

    ex = sub.add_parser("export", help="the ledger or the scores as .csv (Italian), .xlsx or .gpkg")
    ex.add_argument("what", choices=["ledger", "scores"])
    ex.add_argument("--out", required=True, help="output file: .csv, .xlsx or .gpkg")
    ex.add_argument("--comune", help="ledger of one comune (ISTAT code or name)")
    ex.add_argument("--scenario", help="ledger scenario (default: the one of --proposals, else base)")
    ex.add_argument("--proposals", help="proposals file (default: the proposals store)")
    ex.add_argument("--draws", type=int, default=None,
                    help="Monte Carlo weight draws (scores; default: the profile's)")
    _site_args(ex)
    _store_args(ex)
    ex.set_defaults(func=cmd_export)

    fu = sub.add_parser("fund", help="allocate the Fondo perequativo")
    fu.add_argument("action", nargs="?", default="run", choices=["run", "template"],
                    help="run the call (default) or write an empty applications template")
    fu.add_argument("--call", default=None,
                    help="call name or YAML file (default: $PATTOGIS_DEFAULT_CALL, bando_2023)")
    fu.add_argument("--projects", help="applications file with site polygons (CSV with wkt/epsg, "
                                       "GPKG, GeoJSON, zipped SHP, GeoParquet)")
    fu.add_argument("--out", action="append", help="write the graduatoria: .csv .xlsx .gpkg "
                                                   ".html .pdf (repeatable); template: the CSV")
    fu.add_argument("--mode", default="graduatoria", choices=["graduatoria", "optimal", "compare"])
    fu.add_argument("--json", action="store_true")
    fu.set_defaults(func=cmd_fund)

    mp = sub.add_parser("maps", help="write the web maps to a folder")
    mp.add_argument("--out", default="maps")
    mp.add_argument("--comune", help="ISTAT code for the budget page")
    mp.add_argument("--unione", help="write the site-comparison page of this Unione")
    mp.add_argument("--fund", action="store_true", help="write the fund allocation page")
    mp.add_argument("--projects", help="fund page: the applications file to allocate")
    mp.add_argument("--demo", action="store_true",
                    help="fund page without --projects: the demonstration set (labelled so)")
    mp.add_argument("--call", default=None,
                    help="fund page: the call (default: $PATTOGIS_DEFAULT_CALL, bando_2023)")
    mp.add_argument("--role", help="show the drafts this role may read (default: public only)")
    mp.set_defaults(func=cmd_maps)

    k = sub.add_parser("keys", help="API keys for the proposals store")
    k.add_argument("action", choices=["create", "list", "revoke"])
    k.add_argument("key_id", nargs="?", help="revoke: the key id shown by `keys list`")
    k.add_argument("--role", help="create: comune:ISTAT | unione:NAME | metro")
    k.add_argument("--label", help="create: who holds the key (shown by `keys list`)")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_keys)

    for name, fn, h in (("serve", cmd_serve, "serve the API and maps"),
                        ("run", cmd_run, "build the layers if missing, then serve")):
        s = sub.add_parser(name, help=h)
        s.add_argument("--host", default="127.0.0.1")
        s.add_argument("--port", type=int, default=8000)
        if name == "run":
            s.add_argument("--raw")
        s.set_defaults(func=fn)
    return p


def main(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    try:
        a.func(a)
    except PattogisError as e:
        print(f"pattogis: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
