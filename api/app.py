"""The FastAPI application: ``create_app(...)``, and ``app`` for ``uvicorn api.app:app``.

Routers are built by the factories in :data:`ROUTER_FACTORIES`, each taking the
:class:`AppContext` (collection registry, store getter) and returning an APIRouter, or None when
its module is not installed. To add a router (analysis, maps...), write its module and append one
factory there. The OpenAPI document is served as OpenAPI 3.0 (OGC conformance class oas30).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI

from api.errors import document_errors, install
from api.features import StoredPagesMiddleware, features_router
from pattogis.collections import CollectionRegistry
from pattogis.collections import registry as default_registry
from pattogis.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class AppContext:
    """What router factories may use: the collection registry (analysis routers register their
    results there to serve them as collections) and a zero-argument store getter."""

    registry: CollectionRegistry
    get_store: Callable[[], Any]
    # the fund's current applications per call id (uploaded by metro, shown by the fund map)
    fund_runs: dict[str, Any] = field(default_factory=dict)


RouterFactory = Callable[[AppContext], APIRouter | None]


def optional_router(module: str, factory: str, *args: Callable[[AppContext], Any]) -> RouterFactory:
    """A factory calling ``module.factory(*[arg(ctx) for arg in args])``, or giving None when
    ``module`` itself is not there (an error inside the module still propagates)."""

    def build(ctx: AppContext) -> APIRouter | None:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            log.info("router module %s not present: not served", module)
            return None
        return getattr(mod, factory)(*(a(ctx) for a in args))

    return build


def _features(ctx: AppContext) -> APIRouter:
    from api.tiles import CONFORMANCE as TILES_CONFORMANCE

    maps = [{"href": "/maps/", "rel": "related", "type": "text/html",
             "title": "Mappe (map pages)"}]
    return features_router(ctx.registry, extra_links=maps, extra_conformance=TILES_CONFORMANCE)


def _tiles(ctx: AppContext) -> APIRouter:
    from api.tiles import tiles_router

    return tiles_router(ctx.registry)


#: The routers of the app, in order. Append a factory to serve a new router.
ROUTER_FACTORIES: list[RouterFactory] = [
    _features,
    _tiles,  # vector tiles of the collections (issue 15)
    optional_router("api.proposals", "proposals_router", lambda ctx: ctx.get_store),
    optional_router("api.analysis", "analysis_router", lambda ctx: ctx.registry,
                    lambda ctx: ctx.get_store),
    optional_router("api.fund", "fund_router", lambda ctx: ctx.fund_runs),
    lambda ctx: _maps(ctx),
]


def _maps(ctx: AppContext) -> APIRouter:
    """The map pages, fed by the same analysis functions as the CLI's ``pattogis maps``."""
    from api.maps import maps_router
    from pattogis import analysis, config

    # The pages are public: the proposals on them follow the read rule for the public.
    return maps_router(
        proposals=lambda scenario: ctx.get_store().list(role=None, scenario=scenario),
        sites=lambda unione: analysis.unione_sites(unione),
        score_url="/analysis/score",  # the weight sliders of the Unione's page
        fund=lambda call, demo=False: analysis.fund_geo(
            config.call_id(call), projects=ctx.fund_runs.get(config.call_id(call)), demo=demo),
    )


def _lazy_store() -> Callable[[], Any]:
    """Open the default proposals store on first use, once (thread-safe)."""
    lock = threading.Lock()
    box: list[Any] = []

    def get_store() -> Any:
        if not box:
            with lock:
                if not box:
                    from pattogis.store import open_store

                    box.append(open_store())
        return box[0]

    return get_store


def create_app(
    registry: CollectionRegistry | None = None,
    *,
    get_store: Callable[[], Any] | None = None,
    routers: Sequence[RouterFactory] | None = None,
    max_body_bytes: int | None = -1,
    warm: bool = False,
) -> FastAPI:
    """Build the app. ``registry`` defaults to the module registry of ``pattogis.collections``
    (every built layer plus registered results); ``get_store`` to the default proposals store,
    opened on first use; ``routers`` to :data:`ROUTER_FACTORIES`. ``max_body_bytes`` limits
    request bodies (-1: ``api_max_body_mb`` of settings.yaml; None: no limit). ``warm`` loads every
    collection into the cache in a background thread at start-up. Nothing is read at build time.
    """
    ctx = AppContext(registry if registry is not None else default_registry,
                     get_store if get_store is not None else _lazy_store())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            def _warm() -> None:
                try:
                    ctx.registry.warm()
                except Exception:  # a broken layer must not stop the server; requests report it
                    log.exception("warming the collection cache failed")

            threading.Thread(target=_warm, name="pattogis-warm", daemon=True).start()
        yield

    app = FastAPI(
        title="pattogis",
        version="0.1.0",
        description="Territorial regeneration and zero-net land consumption in the Città "
                    "metropolitana di Bologna: OGC API - Features, proposals and analyses.",
        lifespan=lifespan,
    )
    app.state.context = ctx
    install(app, max_body_bytes=max_body_bytes)
    factories = routers if routers is not None else ROUTER_FACTORIES
    if _features in factories:
        # inside gzip, CORS and HEAD: the fast lane's pages get those as any other response
        app.add_middleware(StoredPagesMiddleware, registry=ctx.registry)
    _add_web_middleware(app)  # gzip, CORS, HEAD (issue 15)
    for factory in factories:
        router = factory(ctx)
        if router is not None:
            app.include_router(router)
    _serve_openapi_30(app)
    return app


def _add_web_middleware(app: FastAPI) -> None:
    """gzip for responses over 1 KB (a 10,000-feature page shrinks about 8x); CORS for the
    origins of ``api_cors_origins`` in settings.yaml; HEAD answered like GET without a body."""
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.middleware.gzip import GZipMiddleware

    from api.features import HeadMiddleware
    from pattogis import config

    origins = config.settings().get("api_cors_origins", ["*"])
    if isinstance(origins, str):
        origins = [origins]
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(origins), allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["Content-Crs"],
                           allow_credentials=False)
    app.add_middleware(HeadMiddleware)


# -- OpenAPI 3.1 (what FastAPI writes) to 3.0 (what OGC oas30 and GDAL expect) ----------------
_SCHEMA_KEYS = {"schema", "items", "additionalProperties", "not", "contains", "propertyNames"}
_SCHEMA_LISTS = {"anyOf", "oneOf", "allOf", "prefixItems"}


def _schema_30(s: Any) -> Any:
    """Rewrite one JSON Schema (2020-12 flavour) as an OpenAPI 3.0 schema object."""
    if not isinstance(s, dict):
        return s
    s = dict(s)
    for key in _SCHEMA_LISTS & s.keys():
        s[key] = [_schema_30(x) for x in s[key]]
    for key in _SCHEMA_KEYS & s.keys():
        s[key] = _schema_30(s[key])
    if "properties" in s:
        s["properties"] = {k: _schema_30(v) for k, v in s["properties"].items()}
    if "$defs" in s:
        s.pop("$defs")
    for key in ("anyOf", "oneOf"):
        if key in s:
            # {"type": "null"} is already {"nullable": True} here (the lists were rewritten)
            rest = [x for x in s[key] if x not in ({"type": "null"}, {"nullable": True})]
            if len(rest) < len(s[key]):  # Optional[X] -> X with nullable
                s["nullable"] = True
                if len(rest) == 1:
                    s.pop(key)
                    only = rest[0]
                    if "$ref" in only:
                        s["allOf"] = [only]
                    else:
                        s = {**only, **{k: v for k, v in s.items() if k != key}}
                else:
                    s[key] = rest
    t = s.get("type")
    if isinstance(t, list):
        kinds = [k for k in t if k != "null"]
        if len(kinds) < len(t):
            s["nullable"] = True
        if len(kinds) == 1:
            s["type"] = kinds[0]
        else:
            s.pop("type")
            s["anyOf"] = [{"type": k} for k in kinds]
    if t == "null":
        s.pop("type")
        s["nullable"] = True
    if "const" in s:
        s["enum"] = [s.pop("const")]
    if "examples" in s:
        ex = s.pop("examples")
        if isinstance(ex, list) and ex:
            s.setdefault("example", ex[0])
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(s.get(bound), int | float) and not isinstance(s.get(bound), bool):
            s[plain] = s[bound]
            s[bound] = True
    if "contentMediaType" in s or "contentEncoding" in s:  # file uploads
        s.pop("contentMediaType", None)
        s.pop("contentEncoding", None)
        s.setdefault("format", "binary")
    if "$ref" in s and len(s) > 1:  # 3.0 ignores siblings of $ref: wrap them
        ref = s.pop("$ref")
        s["allOf"] = [{"$ref": ref}]
    return s


def openapi_30(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a FastAPI (OpenAPI 3.1) document rewritten as OpenAPI 3.0.3."""
    out = dict(doc)
    out["openapi"] = "3.0.3"
    out.pop("jsonSchemaDialect", None)
    out.pop("webhooks", None)
    comps = dict(out.get("components", {}))
    if "schemas" in comps:
        comps["schemas"] = {k: _schema_30(v) for k, v in comps["schemas"].items()}
    if comps:
        out["components"] = comps
    paths: dict[str, Any] = {}
    for path, item in out.get("paths", {}).items():
        new_item: dict[str, Any] = {}
        for method, op in item.items():
            if not isinstance(op, dict):
                new_item[method] = op
                continue
            op = dict(op)
            if "parameters" in op:
                op["parameters"] = [
                    {**p, "schema": _param_30(p["schema"])} if "schema" in p else p
                    for p in op["parameters"]
                ]
            if "requestBody" in op:
                op["requestBody"] = _content_30(op["requestBody"])
            if "responses" in op:
                op["responses"] = {k: _content_30(v) for k, v in op["responses"].items()}
            new_item[method] = op
        paths[path] = new_item
    out["paths"] = paths
    return out


def _param_30(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema: a query, path or header parameter is absent or has a value; it
    cannot be null (FastAPI's Optional[X] would otherwise tell clients to send '' for null)."""
    out = _schema_30(schema)
    out.pop("nullable", None)
    if isinstance(out.get("items"), dict):
        out["items"] = {k: v for k, v in out["items"].items() if k != "nullable"}
    return out


def _content_30(obj: dict[str, Any]) -> dict[str, Any]:
    if "content" not in obj:
        return obj
    obj = dict(obj)
    obj["content"] = {
        mt: {**media, "schema": _schema_30(media["schema"])} if "schema" in media else media
        for mt, media in obj["content"].items()
    }
    return obj


def _serve_openapi_30(app: FastAPI) -> None:
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(openapi_30(original()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


#: The app for ``uvicorn api.app:app`` (default registry: the built layer set);
#: ``PATTOGIS_API_WARM=1`` loads every collection into the cache at start-up.
app = create_app(warm=get_settings().api_warm)
