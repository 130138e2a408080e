"""The layers the criteria read, gathered once: :class:`CriteriaContext`.

Build it from the built layer set with :meth:`CriteriaContext.from_layers`, or from plain
GeoDataFrames with :meth:`CriteriaContext.from_frames` (tests, notebooks, uploaded layers). A
layer that is not available is ``None`` and ``unavailable`` says why, in Italian; the criteria
that need it are then reported missing with that reason, never computed as zero.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import shapely
from shapely.geometry.base import BaseGeometry

from pattogis import config
from pattogis.criteria.network import RoadGraph, build_graph
from pattogis.errors import ConfigError, InputError, MissingDataError, PattogisError

RASTERS = ("dem", "slope", "heat")
# Per-comune hazard shares (%) of comuni_indicators (ISPRA 2020) the hazard criterion reads.
HAZARD_COLUMNS = ("flood_medium_pct", "landslide_p3p4_pct")

# Context attribute -> layer name in the layer set, for messages.
LAYER_NAMES = {
    "rail_stations": "rail_stations",
    "bus_stops": "bus_stops",
    "cycleways": "cycleways",
    "hubs": "productive_hubs",
    "tu": "territorio_urbanizzato",
    "comuni": "comuni",
    "fragility": "comuni_indicators",
    "hazard": "comuni_indicators",
    "graph": "roads_nodes/roads_edges",
}


def criteria_params(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``config/criteria.yaml``, checked, with optional top-level overrides."""
    p = config.load("criteria.yaml")
    p.update(overrides or {})
    src = p.get("_source", "criteria.yaml")
    net = config.require(p, "network", dict)
    for k in ("snap_threshold_m", "detour_factor"):
        config.require(net, k, (int, float))
    if float(net["detour_factor"]) < 1.0:
        raise ConfigError(f"{src}: network.detour_factor must be >= 1, got {net['detour_factor']}")
    if float(net["snap_threshold_m"]) < 0:
        raise ConfigError(f"{src}: network.snap_threshold_m must be >= 0")
    if p.get("origin", "centroid") not in ("centroid", "point_on_surface"):
        raise ConfigError(f"{src}: origin must be 'centroid' or 'point_on_surface'")
    bands = config.require(config.require(p, "bus_access", dict), "bands", list)
    last = 0.0
    for i, b in enumerate(bands):
        if not isinstance(b, dict) or "max_distance_m" not in b or "weight" not in b:
            raise ConfigError(f"{src}: bus_access.bands[{i}] needs max_distance_m and weight")
        if float(b["max_distance_m"]) <= last:
            raise ConfigError(f"{src}: bus_access.bands must have increasing max_distance_m")
        last = float(b["max_distance_m"])
    r = config.require(p, "rasters", dict)
    config.require(r, "min_coverage", dict)
    return p


def _parts(gdf: gpd.GeoDataFrame, cols: list[str]) -> gpd.GeoDataFrame:
    """Explode multi-part polygons: small parts make STRtree queries and overlays cheap."""
    g = gdf[cols + ["geometry"]].explode(index_parts=False, ignore_index=True)
    return g[~g.geometry.is_empty & g.geometry.notna()].reset_index(drop=True)


@dataclass
class CriteriaContext:
    """Layers (GeoDataFrames in ``crs``), road graph, raster paths and parameters of the criteria.

    ``comuni`` has ``istat`` and, when fragility is known, ``fragility_index`` (0..1). ``tu`` and
    ``hubs`` are exploded to single polygons. ``coverage`` maps a layer key to the area it covers
    (a layer not listed covers everything). ``unavailable`` maps a layer key or raster name to the
    Italian reason it is missing.
    """

    crs: str
    params: dict[str, Any]
    rail_stations: gpd.GeoDataFrame | None = None
    bus_stops: gpd.GeoDataFrame | None = None
    cycleways: gpd.GeoDataFrame | None = None
    hubs: gpd.GeoDataFrame | None = None
    tu: gpd.GeoDataFrame | None = None
    comuni: gpd.GeoDataFrame | None = None
    graph: RoadGraph | None = None
    rasters: dict[str, Path] = field(default_factory=dict)
    coverage: dict[str, BaseGeometry] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)

    def available(self, key: str) -> bool:
        if key == "fragility":
            return self.comuni is not None and "fragility_index" in self.comuni.columns
        if key == "hazard":
            return self.comuni is not None and set(HAZARD_COLUMNS) <= set(self.comuni.columns)
        return getattr(self, key) is not None

    def reason(self, key: str) -> str:
        """Italian reason layer ``key`` (or raster) is unavailable."""
        if key in self.unavailable:
            return self.unavailable[key]
        name = LAYER_NAMES.get(key, key)
        return f"dato non disponibile: il layer '{name}' non è stato fornito"

    # --- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_frames(cls, *, rail_stations: gpd.GeoDataFrame | None = None,
                    bus_stops: gpd.GeoDataFrame | None = None,
                    cycleways: gpd.GeoDataFrame | None = None,
                    hubs: gpd.GeoDataFrame | None = None,
                    tu: gpd.GeoDataFrame | None = None,
                    comuni: gpd.GeoDataFrame | None = None,
                    roads_nodes: gpd.GeoDataFrame | None = None,
                    roads_edges: gpd.GeoDataFrame | None = None,
                    graph: RoadGraph | None = None,
                    rasters: Mapping[str, str | os.PathLike] | None = None,
                    coverage: Mapping[str, BaseGeometry] | None = None,
                    unavailable: Mapping[str, str] | None = None,
                    crs: str | None = None,
                    params: Mapping[str, Any] | None = None) -> CriteriaContext:
        """A context from plain GeoDataFrames (any CRS; reprojected to ``crs``).

        ``bus_stops`` needs ``n_lines``; ``comuni`` needs ``istat`` (and ``fragility_index`` for
        the fragility criterion). The road graph comes from ``graph`` or from
        ``roads_nodes``/``roads_edges``. ``coverage`` gives the area a partial layer covers;
        without it the coverage of ``layer_coverage`` in the config is taken from ``comuni``.
        """
        crs = crs or config.working_crs()
        check_not_geographic(crs, "criteria context")
        p = criteria_params(params)

        def prep(g: gpd.GeoDataFrame | None, key: str, need: tuple[str, ...] = ()) -> gpd.GeoDataFrame | None:
            if g is None:
                return None
            if not isinstance(g, gpd.GeoDataFrame):
                raise InputError(f"layer '{key}' must be a GeoDataFrame", field=key)
            if g.crs is None:
                raise InputError(f"layer '{key}' has no CRS", field="geometry")
            for c in need:
                if c not in g.columns:
                    raise InputError(f"layer '{key}' lacks a column", field=c)
            g = g[g.geometry.notna() & ~g.geometry.is_empty]
            return g.to_crs(crs) if g.crs != crs else g.copy()

        ctx = cls(crs=crs, params=p)
        ctx.rail_stations = prep(rail_stations, "rail_stations")
        ctx.bus_stops = prep(bus_stops, "bus_stops", ("n_lines",))
        ctx.cycleways = prep(cycleways, "cycleways")
        h = prep(hubs, "hubs")
        ctx.hubs = _parts(h, []) if h is not None else None
        t = prep(tu, "tu")
        ctx.tu = _parts(t, []) if t is not None else None
        c = prep(comuni, "comuni", ("istat",))
        if c is not None:
            c = c.assign(istat=c["istat"].astype(str))
            keep = ["istat"] + [k for k in ("fragility_index", *HAZARD_COLUMNS) if k in c.columns]
            c = _parts(c, keep)
        ctx.comuni = c
        if graph is not None:
            ctx.graph = graph
        elif roads_nodes is not None and roads_edges is not None:
            n, e = prep(roads_nodes, "roads_nodes"), prep(roads_edges, "roads_edges")
            ctx.graph = build_graph(n, e)
        ctx.rasters = {k: Path(v) for k, v in (rasters or {}).items()}
        ctx.unavailable = dict(unavailable or {})
        if coverage is not None:
            ctx.coverage = dict(coverage)
        elif c is not None:
            for layer, codes in (p.get("layer_coverage") or {}).items():
                sel = c[c["istat"].isin([str(x) for x in codes])]
                ctx.coverage[layer] = shapely.union_all(sel.geometry.to_numpy())
        return ctx

    @classmethod
    def from_layers(cls, *, params: Mapping[str, Any] | None = None) -> CriteriaContext:
        """A context read from the built layer set (``pattogis.layers``).

        Layers derived later in the build (``territorio_urbanizzato``, ``productive_hubs``,
        ``comuni_indicators`` with the fragility index) may be absent: the criteria that need
        them are then reported missing with the reason.
        """
        from pattogis import layers

        unavailable: dict[str, str] = {}

        def read(key: str, name: str, columns: list[str] | None = None) -> gpd.GeoDataFrame | None:
            try:
                return layers.open_layer(name, columns=columns)
            except MissingDataError as e:
                unavailable[key] = (f"dato non disponibile: il layer '{name}' non è nel layer set "
                                    f"({e})")
                return None

        if not layers.exists():
            raise MissingDataError(f"layer set not built at {layers.gpkg_path()}: run "
                                   "`pattogis data build`")
        comuni = None
        if layers.has_layer("comuni_indicators"):
            comuni = read("comuni", "comuni_indicators")
            if comuni is not None:
                keep = [k for k in ("istat", "fragility_index", *HAZARD_COLUMNS) if k in comuni]
                comuni = comuni[[*keep, "geometry"]]
                if not set(HAZARD_COLUMNS) <= set(keep):
                    unavailable["hazard"] = (
                        "dato non disponibile: le quote di pericolosità idraulica e da frana "
                        "(ISPRA) non sono nel layer 'comuni_indicators': ricostruire il layer set")
        if comuni is None:
            comuni = read("comuni", "comuni", ["istat"])
            unavailable["fragility"] = (
                "dato non disponibile: l'indice di fragilità dei comuni (layer "
                "'comuni_indicators') non è nel layer set")
        rasters: dict[str, Path] = {}
        for r in RASTERS:
            try:
                rasters[r] = layers.raster_path(r)
            except MissingDataError as e:
                unavailable[r] = f"dato non disponibile: il raster '{r}' non è nel layer set ({e})"
        nodes = read("graph", "roads_nodes", ["osmid"])
        edges = read("graph", "roads_edges", ["u", "v", "length_m"])
        ctx = cls.from_frames(
            rail_stations=read("rail_stations", "rail_stations", ["name", "id_staz"]),
            bus_stops=read("bus_stops", "bus_stops", ["stop_code", "n_lines"]),
            cycleways=read("cycleways", "cycleways", ["codice"]),
            hubs=read("hubs", "productive_hubs", ["hub_id"]),
            tu=read("tu", "territorio_urbanizzato", ["comune_istat"]),
            comuni=comuni, roads_nodes=nodes, roads_edges=edges, rasters=rasters,
            unavailable=unavailable, params=params)
        return ctx

    def summary(self) -> dict[str, Any]:
        """What the context holds: feature counts, graph size, rasters and what is missing."""
        def count(g: gpd.GeoDataFrame | None) -> int | None:
            return None if g is None else len(g)

        return {
            "crs": self.crs,
            "rail_stations": count(self.rail_stations), "bus_stops": count(self.bus_stops),
            "cycleways": count(self.cycleways), "hubs": count(self.hubs), "tu": count(self.tu),
            "comuni": count(self.comuni),
            "graph": None if self.graph is None else {"nodes": self.graph.n_nodes,
                                                      "edges": self.graph.n_edges},
            "rasters": {k: str(v) for k, v in self.rasters.items()},
            "coverage": sorted(self.coverage),
            "unavailable": dict(self.unavailable),
        }


def check_not_geographic(crs: Any, what: str) -> None:
    """Refuse a geographic working CRS: every criterion measures metres."""
    from pyproj import CRS

    try:
        c = CRS.from_user_input(crs)
    except Exception as e:  # pyproj raises its own CRSError
        raise ConfigError(f"{what}: unknown CRS {crs!r}") from e
    if c.is_geographic:
        raise PattogisError(f"{what}: CRS {crs} is in degrees; the criteria need a metric CRS")

