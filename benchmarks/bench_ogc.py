"""Benchmark of the OGC API and the map pages against what a user would otherwise run.

Run: ``python3 benchmarks/bench_ogc.py [--quick] [--out PATH]``; writes
``benchmarks/results/ogc.json``. Needs the built layer set (``$PATTOGIS_LAYERS_DIR`` or
``data/layers``); the pygeoapi part needs ``pip install pygeoapi`` and GDAL's Python bindings
for its OGR provider (``apt-get install libgdal-dev; pip install GDAL==$(gdal-config
--version)``) and is skipped, saying so, without them.
pygeoapi is a benchmark peer only: it is no dependency of pattogis.

1. **pygeoapi** (OGR provider) and **pattogis** serve the same GeoPackage, one uvicorn
   worker each, started fresh: the time of the first request after start, then, alternating
   request by request, pages ``/collections/buildings/items?limit=1000&offset=R`` (R random)
   and bbox queries (a random 1.5 km box, limit=1000), timed to the last byte over keep-alive
   HTTP, uncompressed (like for like: pygeoapi as configured never compresses) and, for
   pattogis, with gzip; the slowest request of the run; each server's resident memory (VmRSS)
   idle and after the requests, and pattogis's after 180 building tiles at zoom 15; and the
   floor: the same page bytes from an ASGI app that does nothing else. Goal:
   pattogis >= 100x faster at <= 2x pygeoapi's memory and no request over 1 s.
2. **GDAL** (the OAPIF driver of pyogrio's GDAL) downloads every building, with its default page
   size and with PAGE_SIZE=10000, with gzip (GDAL's default) and without (CPL_CURL_GZIP=NO):
   seconds and bytes on the wire.
3. **Map pages** in headless Chromium, warm (loaded, then reloaded with the browser cache): bytes
   transferred by the reload (page + assets + data + tiles) and the first contentful paint, per
   page; the first load's bytes too. Goal <= 300 KB and <= 1.5 s each.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyogrio

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _common import UVICORN, serve, summary_row, write_result  # noqa: E402

LAYER = "buildings"


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's worker), in MiB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return round(total / 1024, 1)


def pygeoapi_config(gpkg: Path, port_hint: str, folder: Path) -> tuple[Path, Path]:
    cfg = folder / "pygeoapi.yml"
    cfg.write_text(textwrap.dedent(f"""\
        server:
          bind: {{host: 127.0.0.1, port: 0}}
          url: {port_hint}
          mimetype: application/json; charset=UTF-8
          encoding: utf-8
          language: en-US
          cors: false
          pretty_print: false
          limits: {{default_items: 100, max_items: 10000}}
          map: {{url: 'https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png', attribution: OSM}}
        logging: {{level: ERROR}}
        metadata:
          identification: {{title: bench, description: bench, keywords: [bench],
                            keywords_type: theme, terms_of_service: none, url: 'http://localhost'}}
          license: {{name: CC-BY 4.0, url: 'https://creativecommons.org/licenses/by/4.0/'}}
          provider: {{name: bench, url: 'http://localhost'}}
          contact: {{name: bench, position: bench, address: bench, city: bench,
                     stateorprovince: bench, postalcode: '0', country: IT, phone: '0',
                     fax: '0', email: 'a@b.c', url: 'http://localhost', hours: any,
                     instructions: none, role: pointOfContact}}
        resources:
          {LAYER}:
            type: collection
            title: {LAYER}
            description: {LAYER}
            keywords: [{LAYER}]
            links: []
            extents:
              spatial: {{bbox: [10.8, 44.0, 11.9, 44.9],
                         crs: 'http://www.opengis.net/def/crs/OGC/1.3/CRS84'}}
            providers:
              - type: feature
                name: OGR
                data:
                  source_type: GPKG
                  source: {gpkg}
                  source_capabilities: {{paging: true}}
                id_field: fid
                layer: {LAYER}
        """), encoding="utf-8")
    oas = folder / "openapi.yml"
    env = {**os.environ, "PYGEOAPI_CONFIG": str(cfg)}
    exe = shutil.which("pygeoapi") or "pygeoapi"
    subprocess.run([exe, "openapi", "generate", str(cfg),
                    "--output-file", str(oas)], check=True, env=env, capture_output=True,
                   timeout=300)
    return cfg, oas


def bench_servers(gpkg: Path, layers_dir: Path, n_req: int, seed: int) -> dict[str, Any]:
    """pattogis and pygeoapi on the same GeoPackage, one uvicorn worker each, requests
    alternated: pages (``limit=1000&offset=R``) and bbox queries (a random ~1.5 km box,
    ``limit=1000``), without compression (pygeoapi, as configured here, never compresses: the
    like-for-like figure) and, for pattogis, with gzip (what GDAL and browsers ask); then, on
    the pattogis server only, the buildings' vector tiles of 20 random map views at zoom 15, to
    show that neither pages nor tiles load the layer into memory."""
    count = int(pyogrio.read_info(gpkg, layer=LAYER)["features"])
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, count - 1000, n_req)
    info = pyogrio.read_info(gpkg, layer=LAYER)
    import pyproj

    to84 = pyproj.Transformer.from_crs(info["crs"], "OGC:CRS84", always_xy=True)
    x0, y0, x1, y1 = info["total_bounds"]
    cx, cy = rng.uniform(x0, x1 - 1500, n_req), rng.uniform(y0, y1 - 1500, n_req)
    lo = np.column_stack(to84.transform(cx, cy))
    hi = np.column_stack(to84.transform(cx + 1500, cy + 1500))
    boxes = [",".join(f"{v:.6f}" for v in (*a, *b)) for a, b in zip(lo, hi, strict=True)]
    out: dict[str, Any] = {"requests": n_req, "layer": LAYER, "features": count}
    # pygeoapi's OGR provider reads the GeoPackage through GDAL's Python bindings
    have_peer = _importable("pygeoapi") and _importable("osgeo.ogr")
    uv = UVICORN
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        ours = stack.enter_context(serve(
            [*uv, "api.app:app"], {"PATTOGIS_LAYERS_DIR": str(layers_dir)}, "/conformance"))
        urls = {"pattogis": ours}
        if have_peer:
            cfg, oas = pygeoapi_config(gpkg, "http://127.0.0.1", Path(tmp))
            urls["pygeoapi"] = stack.enter_context(serve(
                [*uv, "pygeoapi.starlette_app:APP"],
                {"PYGEOAPI_CONFIG": str(cfg), "PYGEOAPI_OPENAPI": str(oas)}, "/conformance"))
        else:
            out["pygeoapi"] = "skipped: pip install pygeoapi and GDAL's Python bindings " \
                              "(apt-get install libgdal-dev; pip install GDAL==$(gdal-config " \
                              "--version)) to compare"
        idle = {name: rss_mib(pid) for name, (_, pid) in urls.items()}
        first: dict[str, float] = {}
        clients = {enc: stack.enter_context(httpx.Client(
            timeout=300, headers={"Accept-Encoding": enc})) for enc in ("identity", "gzip")}
        for name, (url, _) in urls.items():
            t0 = time.perf_counter()
            clients["gzip"].get(f"{url}/collections/{LAYER}/items",
                                params={"limit": 1000}).raise_for_status()
            first[name] = time.perf_counter() - t0
        # the floor: a 1,000-building page of pattogis as a constant, served by an ASGI app that
        # does nothing else, under the same uvicorn and client: what HTTP and the client cost
        page = httpx.get(f"{ours[0]}/collections/{LAYER}/items", params={"limit": 1000},
                         headers={"Accept-Encoding": "identity"}, timeout=300).content
        (Path(tmp) / "page.json").write_bytes(page)
        (Path(tmp) / "floor_app.py").write_text(textwrap.dedent(f"""\
            BODY = open({str(Path(tmp) / "page.json")!r}, "rb").read()
            HEAD = [(b"content-type", b"application/geo+json"),
                    (b"content-length", str(len(BODY)).encode())]

            async def app(scope, receive, send):
                if scope["type"] == "http":
                    await send({{"type": "http.response.start", "status": 200, "headers": HEAD}})
                    await send({{"type": "http.response.body", "body": BODY}})
            """), encoding="utf-8")
        urls["static_floor"] = stack.enter_context(
            serve([*uv, "--app-dir", tmp, "floor_app:app"], {}, "/"))
        runs = [(name, kind, enc) for kind in ("page", "bbox") for name in urls
                for enc in (("identity", "gzip") if name == "pattogis" else ("identity",))
                if name != "static_floor" or kind == "page"]
        times: dict[tuple[str, str, str], list[float]] = {r: [] for r in runs}
        for k in range(n_req):
            for name, kind, enc in runs:
                params = ({"limit": 1000, "offset": int(offsets[k])} if kind == "page"
                          else {"limit": 1000, "bbox": boxes[k]})
                t0 = time.perf_counter()
                r = clients[enc].get(f"{urls[name][0]}/collections/{LAYER}/items", params=params)
                r.raise_for_status()
                _ = r.content
                times[(name, kind, enc)].append(time.perf_counter() - t0)
        floor_ms = round(1000 * statistics.median(times.pop(("static_floor", "page",
                                                               "identity"))), 2)
        urls.pop("static_floor")
        out["static_floor"] = {"page_identity": {"median_ms": floor_ms}, "note": (
            "the same page bytes from an ASGI app doing nothing else: HTTP and client cost")}
        after = {name: rss_mib(pid) for name, (_, pid) in urls.items()}
        for (name, kind, enc), ts in times.items():
            out.setdefault(name, {})[f"{kind}_{enc}"] = {
                "median_ms": round(1000 * statistics.median(ts), 2),
                "p95_ms": round(1000 * float(np.percentile(ts, 95)), 2),
                "max_ms": round(1000 * max(ts), 1)}
        for name in urls:
            every = [t for (n, _, _), ts in times.items() if n == name for t in ts]
            out[name].update({"first_request_s": round(first[name], 3),
                              "max_ms": round(1000 * max([first[name], *every]), 1),
                              "rss_idle_mib": idle[name], "rss_mib": after[name]})
        # a map user on the buildings: 20 views of 3 x 3 tiles at zoom 15
        import morecantile

        tms = morecantile.tms.get("WebMercatorQuad")
        tile_ts = []
        for k in range(20):
            lon, lat = (lo[k] + hi[k]) / 2
            t = tms.tile(float(lon), float(lat), 15)
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    t0 = time.perf_counter()
                    clients["gzip"].get(f"{ours[0]}/collections/{LAYER}/tiles/WebMercatorQuad/"
                                        f"15/{t.y + dy}/{t.x + dx}").raise_for_status()
                    tile_ts.append(time.perf_counter() - t0)
        out["pattogis"]["tiles_z15"] = {
            "tiles": len(tile_ts), "median_ms": round(1000 * statistics.median(tile_ts), 2),
            "p95_ms": round(1000 * float(np.percentile(tile_ts, 95)), 2),
            "rss_mib_after": rss_mib(ours[1])}
    return out


def _importable(mod: str) -> bool:
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def bench_gdal(layers_dir: Path, quick: bool) -> list[dict[str, Any]]:
    """Whole buildings layer through GDAL's OAPIF driver: default page size and 10,000, gzip on
    and off: seconds. Bytes on the wire: GDAL does not report them, so the same pages are asked
    once more with httpx in the same encoding and their Content-Length summed."""
    rows = []
    uv = UVICORN
    with serve([*uv, "api.app:app"], {"PATTOGIS_LAYERS_DIR": str(layers_dir)},
               "/conformance") as (url, _):
        src = f"OAPIF:{url}/"
        for gzip_on in (True, False):
            for page in (None, 10_000):
                if quick and page is None:
                    continue
                opts = {} if page is None else {"PAGE_SIZE": page}
                pyogrio.set_gdal_config_options({"CPL_CURL_GZIP": "YES" if gzip_on else "NO"})
                t0 = time.perf_counter()
                df = pyogrio.read_dataframe(src, layer=LAYER, **opts)
                dt = time.perf_counter() - t0
                # bytes on the wire: the same pages fetched once with the same encoding
                size = page or 1000
                wire = 0
                with httpx.Client(timeout=300, headers={
                        "Accept-Encoding": "gzip" if gzip_on else "identity"}) as c:
                    for off in range(0, len(df), size):
                        r = c.get(f"{url}/collections/{LAYER}/items",
                                  params={"limit": size, "offset": off})
                        wire += int(r.headers.get("content-length") or len(r.content))
                rows.append({"page_size": page or "GDAL default", "gzip": gzip_on,
                             "features": len(df), "seconds": round(dt, 2),
                             "wire_mib": round(wire / 2**20, 1)})
        pyogrio.set_gdal_config_options({"CPL_CURL_GZIP": None})
    return rows


BYTES_JS = ("(performance.getEntriesByType('navigation')[0].transferSize + performance"
            ".getEntriesByType('resource').reduce(function(a,e){return a+e.transferSize},0))")
FCP_JS = "(performance.getEntriesByName('first-contentful-paint')[0]||{}).startTime"


def bench_pages(layers_dir: Path) -> list[dict[str, Any]]:
    sys.path.insert(0, str(REPO / "tests"))  # the DevTools client lives with the tests
    from browser import check_page, chromium_path

    if chromium_path() is None:
        return [{"page": "all", "skipped": "Chromium not installed"}]
    pages = ["/maps/", "/maps/overview", "/maps/budget", "/maps/budget?comune=037001",
             "/maps/sites?unione=Unione%20Terre%20d%27Acqua",
             "/maps/fund?dimostrativo=true"]  # no uploaded applications: the demonstration set
    rows = []
    uv = UVICORN
    with serve([*uv, "api.app:app"], {"PATTOGIS_LAYERS_DIR": str(layers_dir),
                                      "PATTOGIS_API_WARM": "1"}, "/conformance") as (url, _):
        for p in pages:  # the server computes and caches what the pages need
            httpx.get(url + p, timeout=600)
        time.sleep(5)
        for p in pages:
            cold = check_page(url + p, None, settle_s=2.5, evaluate=[BYTES_JS])
            warm = check_page(url + p, None, settle_s=2.5, actions=["location.reload()"],
                              evaluate=[BYTES_JS, FCP_JS])
            rows.append({"page": p, "first_load_kb": round((cold.values[0] or 0) / 1000, 1),
                         "warm_kb": round((warm.values[0] or 0) / 1000, 1),
                         "warm_first_paint_s": round((warm.values[1] or 0) / 1000, 3),
                         "errors": cold.errors + warm.errors})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer requests, one GDAL case")
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default="servers,gdal,pages",
                    help="comma-separated parts to run: servers, gdal, pages (default: all)")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    from pattogis import layers

    gpkg = layers.gpkg_path()
    if not gpkg.exists():
        sys.exit(f"layer set not built at {gpkg}: run `pattogis data build`")
    result: dict[str, Any] = {}
    srv: dict[str, Any] = {}
    if "servers" in parts:
        srv = bench_servers(gpkg, layers.layers_dir(), 20 if args.quick else 60, args.seed)
        result["servers"] = srv
    if "gdal" in parts:
        result["gdal"] = bench_gdal(layers.layers_dir(), args.quick)
    result["pages"] = bench_pages(layers.layers_dir()) if "pages" in parts else []
    ours = srv.get("pattogis", {})
    summary = []
    peer = srv.get("pygeoapi")
    if isinstance(peer, dict):
        for kind, what in (("page", "items?limit=1000&offset=R"),
                           ("bbox", "items?limit=1000&bbox=(1.5 km box)")):
            mine, theirs = ours[f"{kind}_identity"], peer[f"{kind}_identity"]
            speed = theirs["median_ms"] / mine["median_ms"]
            gz = ours[f"{kind}_gzip"]["median_ms"]
            summary.append(summary_row(
                f"{what} median (buildings, HTTP, uncompressed)", mine["median_ms"], "ms",
                peer="pygeoapi (OGR provider, same GeoPackage)", peer_value=theirs["median_ms"],
                target=">= 100x faster", met=speed >= 100,
                note=f"pygeoapi / pattogis = {speed:.0f}x; pattogis with gzip {gz} ms "
                     f"({theirs['median_ms'] / gz:.0f}x pygeoapi uncompressed)" + (
                         f"; the same bytes from a do-nothing ASGI app: "
                         f"{srv['static_floor']['page_identity']['median_ms']} ms"
                         if kind == "page" and "static_floor" in srv else "")))
        summary.append(summary_row(
            "resident memory after the requests", ours["rss_mib"], "MiB", peer="pygeoapi",
            peer_value=peer["rss_mib"], target="<= 2x pygeoapi",
            met=ours["rss_mib"] <= 2 * peer["rss_mib"],
            note=f"idle {ours['rss_idle_mib']} vs {peer['rss_idle_mib']} MiB; after 180 "
                 f"building tiles {ours['tiles_z15']['rss_mib_after']} MiB"))
    if ours:
        summary.append(summary_row(
            "slowest request after start (first one included)", ours["max_ms"], "ms",
            target="<= 1000 ms", met=ours["max_ms"] <= 1000,
            note=f"first request {ours['first_request_s']} s"))
    for row in result["pages"]:
        if "warm_kb" in row:
            summary.append(summary_row(
                f"page {row['page']}: warm bytes / first paint", row["warm_kb"], "KB",
                target="<= 300 KB, <= 1.5 s",
                met=row["warm_kb"] <= 300 and row["warm_first_paint_s"] <= 1.5 and
                not row["errors"],
                note=f"first paint {row['warm_first_paint_s']} s, first load "
                     f"{row['first_load_kb']} KB"))
    result["summary"] = summary
    path = write_result("ogc", result, args.out)
    print(path)


if __name__ == "__main__":
    main()
