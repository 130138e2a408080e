"""Run every benchmark of pattogis and gather the results into one file.

    python3 benchmarks/run_all.py [--quick] [--only NAME ...] [--timeout S] [--budget S]

Each ``benchmarks/bench_<name>.py`` runs in its own subprocess, one after the other (never in
parallel: they would time each other), with a timeout, and writes
``benchmarks/results/<name>.json``. This script then writes ``benchmarks/results/results.json``
(everything: machine, package versions, per-benchmark status, duration and full result) and
``benchmarks/results/RESULTS.md`` (the readable summary). ``--quick`` passes ``--quick`` to the
scripts that accept it and writes under ``benchmarks/results/quick/`` so the full figures stay.

A result written before the script's run started is reported as missing, never reused. The
helpers shared by the benchmark scripts live in ``_common.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

# Seconds a script may take before it is stopped, unless --timeout says otherwise.
DEFAULT_TIMEOUT_S = {"quick": 240.0, "full": 300.0}
# The whole command must stay under 15 minutes on 2 cores: stop starting scripts past this.
DEFAULT_BUDGET_S = 14 * 60.0


from _common import (  # noqa: E402  (the helpers shared with the benchmark scripts)
    HERE,
    REPO,
    RESULTS,
    _json_default,
    machine_info,
    package_versions,
)


# ----------------------------------------------------------------------------- running
def discover() -> list[Path]:
    return sorted(HERE.glob("bench_*.py"))


def bench_name(script: Path) -> str:
    return script.stem.removeprefix("bench_")


def _supports(script: Path, flag: str) -> bool:
    """Whether a script's argument parser declares ``flag`` (read from its source)."""
    return re.search(rf"""add_argument\(\s*["']{re.escape(flag)}["']""",
                     script.read_text(encoding="utf-8")) is not None


def run_one(script: Path, *, quick: bool, out_dir: Path, timeout: float) -> dict[str, Any]:
    """Run one benchmark script in a subprocess and load the result it wrote."""
    name = bench_name(script)
    out = out_dir / f"{name}.json"
    default_out = RESULTS / f"{name}.json"
    cmd = [sys.executable, str(script)]
    if quick and _supports(script, "--quick"):
        cmd.append("--quick")
    if _supports(script, "--out"):
        cmd += ["--out", str(out)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    started = time.time()
    t = time.perf_counter()
    rec: dict[str, Any] = {"script": script.name, "command": " ".join(cmd[1:])}
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=timeout)
        rec["returncode"] = proc.returncode
        rec["status"] = "ok" if proc.returncode == 0 else "failed"
        tail = proc.stderr if proc.returncode else ""
    except subprocess.TimeoutExpired as e:
        rec["returncode"] = None
        rec["status"] = "timeout"
        tail = (e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes)
                else (e.stderr or ""))
    rec["duration_s"] = round(time.perf_counter() - t, 2)
    if tail:
        rec["stderr_tail"] = tail[-2000:]
    # Only a file written during this run counts.
    written = next((p for p in (out, default_out)
                    if p.exists() and p.stat().st_mtime >= started - 1), None)
    if written is None:
        rec["result"] = None
        if rec["status"] == "ok":
            rec["status"] = "no result"
    else:
        rec["result_file"] = str(written.relative_to(REPO))
        try:
            rec["result"] = json.loads(written.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            rec["result"] = None
            rec["status"] = f"unreadable result ({e})"
    return rec


# ----------------------------------------------------------------------------- report
_FIGURE_KEY = re.compile(r"(ratio|median|p50|p95|speedup|_s$|seconds|per_s$|error|identical|"
                         r"equal|same_|met$|max_abs)", re.I)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict | list) for x in obj):
        for i, v in enumerate(obj):
            label = v.get("case") or v.get("name") if isinstance(v, dict) else None
            out += _flatten(v, f"{prefix}[{label if label else i}]")
    else:
        out.append((prefix, obj))
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else ("yes" if v else "no")
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.1f}"
        if abs(v) >= 0.01:
            return f"{v:.3f}"
        return f"{v:.3g}"
    if isinstance(v, list):
        return ", ".join(_fmt(x) for x in v[:8]) + (" …" if len(v) > 8 else "")
    return str(v).replace("|", "/").replace("\n", " ")


def _md_summary(res: dict[str, Any]) -> list[str]:
    """The benchmark's ``summary`` rows if it has them, else its timing and ratio figures."""
    lines: list[str] = []
    rows = res.get("summary")
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        lines += ["| metric | value | unit | peer | peer value | ratio | target | met | note |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append("| " + " | ".join(_fmt(r.get(k)) for k in (
                "metric", "value", "unit", "peer", "peer_value", "ratio", "target", "met",
                "note")) + " |")
        return lines
    figs = [(k, v) for k, v in _flatten({k: v for k, v in res.items()
                                         if k not in ("machine", "versions")})
            if _FIGURE_KEY.search(k.rsplit(".", 1)[-1]) and not isinstance(v, dict)]
    if figs:
        lines += ["| figure | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in figs[:60]]
        if len(figs) > 60:
            lines.append(f"| … | {len(figs) - 60} more in results.json |")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    m, v = report["machine"], report["versions"]
    out = [
        "# pattogis benchmark results",
        "",
        f"Generated {report['generated']} by `{report['command']}` in "
        f"{report['duration_s']:.0f} s (budget {report['budget_s']:.0f} s).",
        "",
        "Ratios are measured in the same run on the same machine: value / peer value "
        "(below 1 means faster than the peer for times). Medians are over the runs listed in "
        "`results.json`. The machine is shared: the load average is recorded beside each run.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({m['cores_usable']} usable of {m['cores_logical']} logical cores)",
        f"- Memory: {m['memory_gib']} GiB; {m['platform']}; Python {m['python']}",
        f"- Load average (1 min) at start: {m['loadavg_1m']}; at end: "
        f"{report.get('loadavg_1m_end')}",
        f"- Layer set: {report.get('layers_dir')}"
        + (f" (built by this run in {report['layer_build_s']} s)"
           if report.get("layer_build_s") else ""),
        "",
        "## Versions",
        "",
        ", ".join(f"{k} {val}" for k, val in v.items() if val),
        "",
        "## Overview",
        "",
        "| benchmark | status | duration (s) | result file |",
        "|---|---|---|---|",
    ]
    for name, rec in report["benchmarks"].items():
        out.append(f"| {name} | {rec['status']} | {rec['duration_s']:.1f} | "
                   f"{rec.get('result_file', '')} |")
    for name, rec in report["benchmarks"].items():
        out += ["", f"## {name}", ""]
        res = rec.get("result")
        if not isinstance(res, dict):
            out.append(f"No result ({rec['status']}).")
            if rec.get("stderr_tail"):
                out += ["", "```", rec["stderr_tail"][-800:].strip(), "```"]
            continue
        title = res.get("title") or (res.get("benchmark") if res.get("benchmark") != name
                                     else None)
        if title:
            out += [str(title), ""]
        load = (res.get("machine") or {}).get("loadavg_1m") or \
            (res.get("machine") or {}).get("loadavg_1m_at_start")
        if load is not None:
            out += [f"Load average (1 min) when it started: {load}", ""]
        out += _md_summary(res) or ["(no figures found in the result file)"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes (scripts that support it); results under results/quick/")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="run only these benchmarks (names without bench_ and .py)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per script (default 300, 240 with --quick)")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                    help="seconds for the whole run; no script starts past it (default 840)")
    ap.add_argument("--no-build", action="store_true",
                    help="do not build the layer set when it is missing (scripts that need "
                         "it then fail or build their own)")
    a = ap.parse_args(argv)

    scripts = discover()
    if a.only:
        unknown = set(a.only) - {bench_name(s) for s in scripts}
        if unknown:
            ap.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; known: "
                     f"{', '.join(bench_name(s) for s in scripts)}")
        scripts = [s for s in scripts if bench_name(s) in a.only]
    out_dir = RESULTS / "quick" if a.quick else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    per_script = a.timeout or DEFAULT_TIMEOUT_S["quick" if a.quick else "full"]

    report: dict[str, Any] = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python3 benchmarks/run_all.py" + (" " + " ".join(argv or sys.argv[1:])
                                                        if (argv or sys.argv[1:]) else ""),
        "quick": a.quick,
        "budget_s": a.budget,
        "machine": machine_info(),
        "versions": package_versions(),
        "benchmarks": {},
    }
    t0 = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from pattogis import layers

    if not layers.exists() and not a.no_build:
        # Most benchmarks read the real layer set: build it once here, not once per script.
        from pattogis.data.build import build

        print(f"[run_all] no layer set at {layers.layers_dir()}: building it "
              "(pattogis data build)", flush=True)
        tb = time.perf_counter()
        build(None, None, log=lambda s: None)
        report["layer_build_s"] = round(time.perf_counter() - tb, 1)
    # Every script reads the same layer set, wherever it was found.
    os.environ["PATTOGIS_LAYERS_DIR"] = str(layers.layers_dir())
    report["layers_dir"] = str(layers.layers_dir())
    for script in scripts:
        name = bench_name(script)
        left = a.budget - (time.perf_counter() - t0)
        if left < 10:
            report["benchmarks"][name] = {"script": script.name, "status": "skipped (budget)",
                                          "duration_s": 0.0, "result": None}
            print(f"[run_all] {name}: skipped, budget of {a.budget:.0f} s used", flush=True)
            continue
        print(f"[run_all] {name}: running (timeout {min(per_script, left):.0f} s)", flush=True)
        rec = run_one(script, quick=a.quick, out_dir=out_dir, timeout=min(per_script, left))
        report["benchmarks"][name] = rec
        print(f"[run_all] {name}: {rec['status']} in {rec['duration_s']:.1f} s", flush=True)
    report["duration_s"] = round(time.perf_counter() - t0, 1)
    report["loadavg_1m_end"] = round(os.getloadavg()[0], 2)

    from pattogis.io import atomic_write_text

    atomic_write_text(out_dir / "results.json",
                      json.dumps(report, indent=2, default=_json_default) + "\n")
    atomic_write_text(out_dir / "RESULTS.md", render_markdown(report))
    print(f"[run_all] wrote {out_dir / 'RESULTS.md'} and results.json "
          f"in {report['duration_s']:.0f} s", flush=True)
    bad = [n for n, r in report["benchmarks"].items() if r["status"] != "ok"]
    if bad:
        print(f"[run_all] not ok: {', '.join(bad)}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
