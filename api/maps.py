"""The web maps served by the API under ``/maps``: pages, on-demand layer data, Leaflet assets.

Pages are built by :mod:`pattogis.maps` (the same functions the CLI calls) with Leaflet linked
from ``/maps/static``; heavy layers are drawn from the vector tiles of the app's
``/collections/{id}/tiles`` (bus stops, candidate sites, buildings, TU) or, for cycle paths,
fetched from ``/maps/data/{layer}?bbox=`` for the area in view. HTML is gzip-compressed when the client accepts
it. The site-comparison and fund pages take the output tables of scoring and of the fund through
provider callables given to :func:`maps_router`, so this module imports neither.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from typing import Annotated, Any

import geopandas as gpd
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from pattogis import config, layers
from pattogis.errors import PattogisError
from pattogis.maps import base as mbase
from pattogis.maps import data as mdata
from pattogis.maps import pages

ProposalsProvider = Callable[[str], gpd.GeoDataFrame | None]
SitesProvider = Callable[[str], gpd.GeoDataFrame]
# fund(call) -> result; fund(call, True) -> the demonstration set (asked with ?dimostrativo=true)
FundProvider = Callable[..., gpd.GeoDataFrame]


def _http(e: PattogisError) -> HTTPException:
    """The status every pattogis error carries (the one map, :mod:`pattogis.errors`)."""
    return HTTPException(e.status, str(e))


def _html(request: Request, text: str | bytes, gz: bytes | None = None) -> Response:
    """HTML, gzip-compressed when the client accepts it (pages are mostly GeoJSON text)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    headers = {"Vary": "Accept-Encoding", "Cache-Control": "no-cache"}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        body = gz if gz is not None else gzip.compress(raw, compresslevel=6)
        headers["Content-Encoding"] = "gzip"
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)
    return Response(raw, media_type="text/html; charset=utf-8", headers=headers)


INDEX = """<!doctype html><html lang="it"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><link rel="icon" href="data:,">
<title>pattogis – mappe</title><style>body{{font:15px/1.5 system-ui,sans-serif;max-width:760px;
margin:2em auto;padding:0 1em;color:#222}} li{{margin:.4em 0}} code{{background:#f3f3f3}}
form{{display:flex;gap:.5em;align-items:center;flex-wrap:wrap;margin:.3em 0 1em}}
select{{font:inherit;max-width:26em}} button{{font:inherit}}</style>
</head><body><h1>Mappe della Città metropolitana di Bologna</h1><ul>
<li><a href="{p}/overview">Territorio</a>: fragilità dei comuni, sistemi territoriali, territorio
urbanizzato, poli produttivi, stazioni, fermate e piste ciclabili.</li>
<li><a href="{p}/budget">Bilancio del consumo di suolo</a> (LR 24/2017) di tutti i comuni.</li>
<li><a href="{p}/fund">Assegnazione del fondo perequativo</a>.</li>
</ul>
<h2>Un comune</h2>
<form action="{p}/budget" method="get"><label for="pg-comune">Bilancio del suolo di</label>
<select id="pg-comune" name="comune" required>{comuni}</select><button>Apri</button></form>
<h2>Un'Unione</h2>
<form action="{p}/sites" method="get"><label for="pg-unione">Confronto dei siti di</label>
<select id="pg-unione" name="unione" required>{unioni}</select><button>Apri</button></form>
<p><a href="/">API (OGC API – Features e Tiles)</a> · <a href="/collections?f=html">collezioni</a>
</p><p><small>Fonti dei dati: {attribution}.</small></p></body></html>"""


def picker_options() -> tuple[str, str]:
    """<option>s of the comuni (ISTAT code, name; by name) and of the Unioni (by name), from the
    built layer set."""
    comuni = layers.open_layer("comuni")[["istat", "name", "unione"]].sort_values("name")
    opts_c = "".join(f'<option value="{mbase.esc(i)}">{mbase.esc(n)}</option>'
                     for i, n in zip(comuni["istat"], comuni["name"], strict=True))
    unioni = sorted(u for u in comuni["unione"].dropna().unique() if str(u).strip())
    opts_u = "".join(f'<option value="{mbase.esc(u)}">{mbase.esc(u)}</option>' for u in unioni)
    return opts_c, opts_u


def maps_router(*, proposals: ProposalsProvider | None = None, sites: SitesProvider | None = None,
                fund: FundProvider | None = None, prefix: str = "/maps",
                score_url: str | None = None) -> APIRouter:
    """Router serving the map pages.

    ``proposals(scenario)``: the proposals of a scenario (GeoDataFrame in the proposal schema, or
    None for none); ``sites(unione)``: the scoring output of that Unione's candidate sites
    (``score``, ``rank``, ``contrib_*``, rank interval columns, geometry); ``fund(call)``: the
    fund result (``status``, ``granted_eur``, ``reason``, ``applicant``, geometry). A page whose
    provider is missing answers 503 saying so. ``score_url``: the app's ``POST /analysis/score``,
    which the site page's weight sliders call (None: no sliders).
    """
    router = APIRouter(prefix=prefix, tags=["maps"])
    static_url = f"{prefix}/static"
    data_url = f"{prefix}/data"
    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def overview_bytes() -> tuple[bytes, bytes]:
        p = layers.gpkg_path()
        key = (str(p), p.stat().st_mtime_ns if p.exists() else 0)
        with lock:
            if cache.get("overview_key") != key:
                html = mbase.render(pages.overview_map(static_url=static_url, data_url=data_url))
                raw = html.encode("utf-8")
                cache.update(overview_key=key, overview=raw,
                             overview_gz=gzip.compress(raw, compresslevel=6))
            return cache["overview"], cache["overview_gz"]

    @router.get("/", include_in_schema=False)
    def index(request: Request) -> Response:
        try:
            attribution = mbase.esc(layers.attribution())
            comuni, unioni = picker_options()
        except PattogisError as e:
            raise _http(e) from e
        return _html(request, INDEX.format(p=prefix, attribution=attribution, comuni=comuni,
                                           unioni=unioni))

    @router.get("/overview", summary="Overview map of the territory (HTML)", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        try:
            raw, gz = overview_bytes()
        except PattogisError as e:
            raise _http(e) from e
        return _html(request, raw, gz)

    @router.get("/budget", summary="Land-budget map, optionally for one comune (HTML)", response_class=HTMLResponse)
    def budget(request: Request,
               comune: Annotated[str | None, Query(pattern=r"^\d{6}$", description="ISTAT code")] = None,
               scenario: str = "base") -> Response:
        try:
            props = proposals(scenario) if proposals is not None else None
            base = proposals("base") if proposals is not None and scenario != "base" else None
            m = pages.budget_map(props, comune=comune, scenario=scenario, static_url=static_url,
                                 data_url=data_url, base_proposals=base)
        except PattogisError as e:
            raise _http(e) from e
        return _html(request, mbase.render(m))

    @router.get("/sites", summary="Site comparison of an Unione (HTML)", response_class=HTMLResponse)
    def sites_page(request: Request, unione: str, top_k: Annotated[int | None, Query(ge=1)] = None) -> Response:
        if sites is None:
            raise HTTPException(503, "site scoring is not configured on this server")
        try:
            m = pages.sites_map(sites(unione), unione=unione, top_k=top_k, static_url=static_url,
                                score_url=score_url, data_url=data_url)
        except PattogisError as e:
            raise _http(e) from e
        return _html(request, mbase.render(m))

    @router.get("/fund", summary="Fund allocation map (HTML)", response_class=HTMLResponse)
    def fund_page(request: Request, call: str | None = None,
                  dimostrativo: Annotated[bool, Query(description="without uploaded applications, "
                                                      "show the demonstration set")] = False,
                  ) -> Response:
        if fund is None:
            raise HTTPException(503, "the equalization fund is not configured on this server")
        try:
            call = config.call_id(call)  # an id among the configured calls, never a path
            res = fund(call, dimostrativo) if dimostrativo else fund(call)
            m = pages.fund_map(res, call_name=call, static_url=static_url)
        except PattogisError as e:
            raise _http(e) from e
        return _html(request, mbase.render(m))

    @router.get("/data/{layer}", summary="On-demand GeoJSON of a heavy layer in a lon/lat bbox")
    def data(layer: str, bbox: Annotated[str, Query(description="west,south,east,north (EPSG:4326)")],
             limit: Annotated[int | None, Query(ge=1)] = None) -> JSONResponse:
        try:
            fc = mdata.layer_features(layer, bbox, limit=limit)
        except PattogisError as e:
            raise _http(e) from e
        return JSONResponse(fc, media_type="application/geo+json")

    @router.get("/static/{path:path}", include_in_schema=False)
    def static(path: str) -> FileResponse:
        media = mbase.STATIC_FILES.get(path)
        if media is None:
            raise HTTPException(404, f"no static file '{path}'")
        return FileResponse(mbase.STATIC_DIR / path, media_type=media,
                            headers={"Cache-Control": "public, max-age=86400"})

    return router
