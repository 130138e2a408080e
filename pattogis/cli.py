"""The ``pattogis`` command: a thin face over the library (the API is the other one).

Verbs: data build | data fetch | layers | budget | score | fund | maps | keys | serve | run.
Errors of pattogis print their message (what, where, what to do) and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import pandas as pd

from pattogis.errors import PattogisError


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=_default)


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

    build(a.raw, a.out, crs=a.crs, engine=a.engine)


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


def cmd_budget(a: argparse.Namespace) -> None:
    from pattogis import analysis

    props = (analysis.load_proposals(a.proposals) if a.proposals
             else analysis.load_proposals(role=a.role))
    out = analysis.budget(comune=a.comune, unione=a.unione, scenario=a.scenario, proposals=props,
                          compare_with=a.compare, with_trajectory=a.trajectory)
    if a.json:
        print(_json(out))
        return
    if out["level"] == "metro":
        m = pd.DataFrame(out["metro"])
        print(f"Bilancio del consumo di suolo (LR 24/2017) — scenario '{a.scenario}' (ettari)")
        print(m[["pool", "quota_ha", "consumed_ha", "desealed_ha", "exempt_ha", "remaining_ha"]]
              .round(2).to_string(index=False))
        u = pd.DataFrame(out["unioni"])
        print()
        print(u[["unione", "tu_ha", "local_quota_ha", "consumed_ha", "desealed_ha",
                 "remaining_locale_ha"]].round(2).to_string(index=False))
    else:
        keys = [k for k in out if k.endswith("_ha") or k in ("name", "istat", "unione", "n_proposals")]
        for k in keys:
            v = out[k]
            print(f"{k:<28} {v:,.3f}" if isinstance(v, float) else f"{k:<28} {v}")
    if a.trajectory:
        t = pd.DataFrame(out["trajectory"])
        over = t[t["overdraft"]]
        print("\nTraiettoria al 2050:", "SFORAMENTO dal " + str(int(over["year"].iloc[0]))
              if len(over) else "nessuno sforamento")
    if a.compare:
        print(pd.DataFrame(out["comparison"]).round(3).to_string(index=False))


def cmd_score(a: argparse.Namespace) -> None:
    from pattogis import analysis
    from pattogis.scoring import write_scores

    scored = analysis.score_sites(a.candidates, profile=a.profile, method=a.method, draws=a.draws,
                                  engine=a.engine)
    if a.out:
        write_scores(scored, a.out)
        print(f"{len(scored)} sites scored → {a.out}")
    cols = [c for c in ("site_id", "comune_istat", "score", "rank", "rank_p5", "rank_p95", "p_top_k",
                        "missing") if c in scored.columns]
    print(scored.sort_values("rank")[cols].head(a.top).to_string(index=False))


def cmd_fund(a: argparse.Namespace) -> None:
    from pattogis import analysis

    res = analysis.fund(a.call, a.projects, a.mode)
    if a.json:
        print(_json(res.to_dict()))
    else:
        print(res.to_text() if hasattr(res, "to_text") else _json(res.to_dict()))


def cmd_maps(a: argparse.Namespace) -> None:
    from pattogis import analysis, maps

    props = analysis.load_proposals(role=a.role)
    sites = analysis.unione_sites(a.unione) if a.unione else None
    fund = analysis.fund_geo() if a.fund else None
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


def cmd_run(a: argparse.Namespace) -> None:
    """The main job: build the layers if missing, then serve the API and the maps."""
    from pattogis import layers

    problem = layers.problem()
    if problem is not None:
        from pattogis.data.build import build

        print(f"{problem}: building it now")
        build(a.raw)
    else:
        print(f"layer set complete at {layers.layers_dir()} (rebuild with `pattogis data build`)")
    cmd_serve(a)


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
    bu.add_argument("--scenario", default="base")
    bu.add_argument("--proposals", help="proposals file (default: the proposals store)")
    bu.add_argument("--compare", metavar="SCENARIO", help="compare with another scenario")
    bu.add_argument("--trajectory", action="store_true", help="year-by-year path to 2050")
    bu.add_argument("--role", help="read the store as this role (comune:ISTAT | unione:NAME | "
                    "metro: its drafts too); default: the public, submitted and approved only")
    bu.add_argument("--json", action="store_true")
    bu.set_defaults(func=cmd_budget)

    sc = sub.add_parser("score", help="score candidate sites")
    sc.add_argument("--candidates", help="polygon file (default: the built candidate set)")
    sc.add_argument("--profile", default="unione")
    sc.add_argument("--method", choices=["wsum", "topsis"])
    sc.add_argument("--draws", type=int, default=500, help="Monte Carlo weight draws")
    sc.add_argument("--out", help="output file (.gpkg, .geojson, .csv)")
    sc.add_argument("--top", type=int, default=20)
    sc.add_argument("--engine", choices=["local", "dask"], default="local",
                    help="where the criteria run (dask: sites partitioned by host comune)")
    sc.set_defaults(func=cmd_score)

    fu = sub.add_parser("fund", help="allocate the Fondo perequativo")
    fu.add_argument("--call", default="bando_2023", help="call name or YAML file")
    fu.add_argument("--projects", required=True, help="applications file (CSV, GPKG, GeoJSON)")
    fu.add_argument("--mode", default="graduatoria", choices=["graduatoria", "optimal", "compare"])
    fu.add_argument("--json", action="store_true")
    fu.set_defaults(func=cmd_fund)

    mp = sub.add_parser("maps", help="write the web maps to a folder")
    mp.add_argument("--out", default="maps")
    mp.add_argument("--comune", help="ISTAT code for the budget page")
    mp.add_argument("--unione", help="write the site-comparison page of this Unione")
    mp.add_argument("--fund", action="store_true", help="write the fund allocation page")
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
