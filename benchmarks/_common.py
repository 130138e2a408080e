"""Helpers shared by every benchmark script (``from _common import ...``): machine and package
information, timing (one implementation, or several turn by turn), the result format and its
atomic write. Only the standard library at import time."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"

# Packages whose versions go into every results file: pattogis's stack and the peers.
PACKAGES = (
    "pattogis", "numpy", "pandas", "scipy", "shapely", "geopandas", "pyogrio", "pyproj",
    "rasterio", "exactextract", "rasterstats", "networkx", "pymcdm", "dask", "distributed",
    "dask-geopandas", "fastapi", "uvicorn", "httpx",
)

def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """CPU model, logical cores (all and usable), memory, OS, Python, load average."""
    cpu = ""
    m = re.search(r"^model name\s*:\s*(.+)$", _read("/proc/cpuinfo"), re.M)
    if m:
        cpu = m.group(1).strip()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "cores_logical": os.cpu_count(),
        "cores_usable": usable,
        "memory_gib": round(int(mem.group(1)) / 2**20, 1) if mem else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        # A shared machine: other jobs may run; ratios are measured in the same run.
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of :data:`PACKAGES`, plus GDAL and GEOS, plus the git commit."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    try:
        import pyogrio

        out["GDAL"] = pyogrio.__gdal_version_string__
    except Exception:  # version info only: never fail a run on it
        out["GDAL"] = None
    try:
        import shapely

        out["GEOS"] = shapely.geos_version_string
    except Exception:
        out["GEOS"] = None
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        out["git"] = (head + ("+dirty" if dirty.strip() else "")) or None
    except (OSError, subprocess.SubprocessError):
        out["git"] = None
    return out


def timed(fn: Callable[[], Any], repeats: int) -> tuple[list[float], Any]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` and the last call's result."""
    times: list[float] = []
    result: Any = None
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return times, result


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int,
                log: Callable[[str], None] | None = None
                ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time several implementations turn by turn (a, b, a, b, ...), so that each sees the same
    machine load; returns the times per implementation and each one's last result."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    last: dict[str, Any] = {}
    for r in range(max(1, repeats)):
        for k, fn in fns.items():
            t = time.perf_counter()
            last[k] = fn()
            times[k].append(time.perf_counter() - t)
            if log:
                log(f"{k} run {r + 1}: {times[k][-1]:.2f} s (load {os.getloadavg()[0]:.2f})")
    return times, last


def case(name: str, impl: str, times: list[float], **extra: Any) -> dict[str, Any]:
    """One timed case in the shared format: times, median, and anything else worth keeping."""
    return {"case": name, "impl": impl, "times_s": [round(t, 4) for t in times],
            "median_s": round(statistics.median(times), 4), **extra}


def summary_row(metric: str, value: float | None, unit: str, *, peer: str | None = None,
                peer_value: float | None = None, target: str | None = None,
                met: bool | None = None, note: str | None = None) -> dict[str, Any]:
    """A headline figure: value, the peer's value in the same run and their ratio."""
    ratio = (value / peer_value) if (value is not None and peer_value) else None
    return {"metric": metric, "value": value, "unit": unit, "peer": peer,
            "peer_value": peer_value, "ratio": None if ratio is None else round(ratio, 4),
            "target": target, "met": met, "note": note}


def write_result(name: str, result: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write ``result`` (with machine and versions added) to results/<name>.json atomically."""
    sys.path.insert(0, str(REPO))
    from pattogis.io import atomic_write_text

    path = Path(out) if out else RESULTS / f"{name}.json"
    result = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": machine_info(), "versions": package_versions(), **result}
    atomic_write_text(path, json.dumps(result, indent=2, default=_json_default) + "\n")
    return path


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def med(x: list[float]) -> float:
    """Median of timings (s)."""
    return float(statistics.median(x))


def free_port() -> int:
    """A free TCP port on the loopback, for a benchmark's own server."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: a one-worker uvicorn on 127.0.0.1 at ``{port}`` (add the app, e.g. "api.app:app")
UVICORN = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}",
           "--workers", "1", "--log-level", "warning"]


@contextlib.contextmanager
def serve(cmd: list[str], env: dict[str, str] | None = None, probe: str = "/conformance",
          port: int | None = None) -> Iterator[tuple[str, int]]:
    """A server process on 127.0.0.1 (``{port}`` in ``cmd``: ``port``, default a free one),
    ready when ``probe`` answers 200; yields its URL and pid, and stops it afterwards."""
    import httpx

    port = port or free_port()
    proc = subprocess.Popen([c.replace("{port}", str(port)) for c in cmd], cwd=REPO,
                            env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + probe, timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {' '.join(cmd)}")
            time.sleep(0.2)
        yield url, proc.pid
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()
