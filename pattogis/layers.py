"""Open built layers by name. The only module that knows where built files live.

Vector layers live in one GeoPackage (``data/layers/current/bologna.gpkg`` by default) in the
working CRS;
rasters are tiled, compressed GeoTIFFs beside it. ``layer_catalog`` inside the GeoPackage records
provenance (source, licence, attribution, derived or official) for every layer.

The layer set moves as one: a build writes a new folder beside the current one
(``data/layers/.current.build-<pid>-*``), records its files and sizes in ``layerset.json``,
renames it to ``.current.set-<time>-*`` and points ``data/layers/current`` (a symbolic link) at
it with one atomic ``rename``, so a reader resolving the folder sees the old set or the new one, never a mix. The
next build removes folders of dead builds and sets older than the previous one. A set with a
file missing or cut short is refused (:func:`problem` says what and how to rebuild).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from pattogis import config
from pattogis.errors import MissingDataError
from pattogis.settings import get_settings

CATALOG = "layer_catalog"

RASTERS = {
    "dem": "dem.tif",
    "slope": "slope.tif",
    "heat": "heat_lst_2025.tif",
    "heat_climatology": "heat_lst_climatology.tif",
}


def layers_root() -> Path:
    """The layer set's folder as configured (absolute, a link once a build has run)."""
    d = get_settings().layers_dir or config.settings()["layers_dir"]
    return Path(d).absolute()


def layers_dir() -> Path:
    """The folder of the current layer set (the link resolved: one set, old or new)."""
    return layers_root().resolve()


def gpkg_path() -> Path:
    return layers_dir() / config.settings()["geopackage"]


def raster_path(name: str) -> Path:
    if name not in RASTERS:
        raise MissingDataError(f"unknown raster '{name}'; known rasters: {', '.join(RASTERS)}")
    _check()
    p = layers_dir() / RASTERS[name]
    if not p.exists():
        raise MissingDataError(f"raster '{name}' not built at {p}: run `pattogis data build`")
    return p


MANIFEST = "layerset.json"
REBUILD = ("rebuild it with `pattogis data build` (the new set replaces the old one in one "
           "step)")


def problem(d: Path | None = None) -> str | None:
    """What is wrong with the layer set in ``d`` (default :func:`layers_dir`), or None when it is
    complete: every file its ``layerset.json`` lists, at the recorded size. A set from before
    manifests needs its GeoPackage and every raster its ``layer_catalog`` lists (a folder holding
    only the GeoPackage is what a build killed half-way through the old file-by-file move left)."""
    d = Path(d).resolve() if d is not None else layers_dir()
    gpkg = d / config.settings()["geopackage"]
    man = d / MANIFEST
    if man.exists():
        try:
            files = {str(k): int(v) for k, v in json.loads(man.read_text())["files"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            return f"the layer set at {d} has an unreadable {MANIFEST}"
    else:
        if not gpkg.exists():
            return f"no layer set at {d}"
        files = {gpkg.name: -1, **{RASTERS[r]: -1 for r in _catalog_rasters(gpkg)}}
    missing = [n for n in files if not (d / n).is_file()]
    short = [n for n, size in files.items()
             if n not in missing and size >= 0 and (d / n).stat().st_size != size]
    if missing or short:
        what = "; ".join(x for x in (
            "missing " + ", ".join(missing) if missing else "",
            "cut short " + ", ".join(short) if short else "") if x)
        return f"the layer set at {d} is incomplete ({what}), as an interrupted build leaves it"
    return None


_RASTERS_CACHE: dict[tuple[str, int], list[str]] = {}


def _catalog_rasters(gpkg: Path) -> list[str]:
    """Rasters the GeoPackage's layer_catalog lists (none when it has no catalog)."""
    key = (str(gpkg), gpkg.stat().st_mtime_ns)
    if key not in _RASTERS_CACHE:
        try:
            names = {str(n) for n, _ in pyogrio.list_layers(gpkg)}
            cat = (pyogrio.read_dataframe(gpkg, layer=CATALOG, read_geometry=False,
                                          columns=["name", "kind"])
                   if CATALOG in names else pd.DataFrame(columns=["name", "kind"]))
            found = [str(n) for n in cat.loc[cat["kind"] == "raster", "name"] if n in RASTERS]
        except Exception:  # an unreadable GeoPackage is reported by whoever opens it
            found = []
        _RASTERS_CACHE[key] = found
    return _RASTERS_CACHE[key]


def exists() -> bool:
    """True when the layer set is there and complete."""
    return problem() is None


def _check() -> Path:
    p = gpkg_path()
    why = problem(p.parent)
    if why is not None:
        raise MissingDataError(f"{why}: {REBUILD}")
    return p


def build_prefix(out_dir: Path) -> str:
    """Name prefix of a build folder for ``out_dir``, with the builder's pid (to tell dead
    builds from running ones)."""
    return f".{out_dir.name}.build-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale(out_dir: Path, *, log=print) -> list[Path]:  # noqa: ANN001 - a print-like
    """Remove what earlier builds of ``out_dir`` left beside it: folders of builds whose process
    is gone, sets older than the current and the previous one, and (a day old) the ``.build-*``
    folders of the layout before sets. Returns the folders removed."""
    out_dir = Path(out_dir).absolute()
    parent = out_dir.parent
    if not parent.exists():
        return []
    removed: list[Path] = []
    for p in parent.glob(f".{out_dir.name}.build-*"):
        try:
            pid = int(p.name.split("-")[1])
        except (IndexError, ValueError):
            pid = -1
        if pid != os.getpid() and not _alive(pid):
            removed.append(p)
    # sets sort by their UTC time stamp; keep the current one and the one before it (a reader
    # that resolved the folder just before the switch is still reading it)
    sets = sorted(p.resolve() for p in parent.glob(f".{out_dir.name}.set-*"))
    current = out_dir.resolve() if out_dir.is_symlink() else None
    if current in sets:
        i = sets.index(current)
        keep = set(sets[max(i - 1, 0):i + 1])
    else:
        keep = set(sets[-2:])
    removed += [p for p in sets if p not in keep]
    day_ago = time.time() - 86_400
    removed += [p for p in parent.glob(".build-*") if p.is_dir() and p.stat().st_mtime < day_ago]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    if removed:
        log(f"removed {len(removed)} stale build folder(s) beside {out_dir}")
    return removed


def install_set(tmp: Path, out_dir: Path) -> Path:
    """Make the complete build in ``tmp`` the layer set at ``out_dir`` in one atomic step.

    Writes ``layerset.json`` (file names and sizes) into ``tmp``, renames it to a versioned
    ``.<name>.set-<UTC time>-<random>`` folder beside ``out_dir`` and replaces the link
    ``out_dir`` with one pointing at it (``rename`` of a link: atomic). A real folder at
    ``out_dir`` (the layout before sets) is first moved aside to ``.<name>.old-<time>``.
    Returns the new set's folder."""
    tmp, out_dir = Path(tmp), Path(out_dir).absolute()
    # every file, those of subfolders (the feature stores) by relative path
    files = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*"))
             if p.is_file()}
    manifest = {"version": 1, "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "files": files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
    final = out_dir.parent / f".{out_dir.name}.set-{stamp}-{secrets.token_hex(3)}"
    os.rename(tmp, final)
    link = out_dir.parent / f".{out_dir.name}.link-{secrets.token_hex(4)}"
    os.symlink(final.name, link)  # relative: the pair can be moved together
    if out_dir.exists() and not out_dir.is_symlink():
        os.rename(out_dir, out_dir.parent / f".{out_dir.name}.old-{stamp}")
    os.replace(link, out_dir)
    fd = os.open(out_dir.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the new link survives a power cut
    finally:
        os.close(fd)
    clean_stale(out_dir, log=lambda s: None)
    return final


def list_layers() -> list[str]:
    return [str(n) for n, _ in pyogrio.list_layers(_check()) if n != CATALOG]


def has_layer(name: str) -> bool:
    return exists() and name in {str(n) for n, _ in pyogrio.list_layers(gpkg_path())}


def open_layer(name: str, *, bbox: tuple[float, float, float, float] | None = None,
               columns: list[str] | None = None) -> gpd.GeoDataFrame:
    """Read a vector layer in the working CRS. ``bbox`` is in the working CRS."""
    p = _check()
    if not has_layer(name):
        raise MissingDataError(
            f"layer '{name}' is not in {p}; available: {', '.join(list_layers())}. "
            "Run `pattogis data build` to (re)build the layer set."
        )
    return gpd.read_file(p, layer=name, bbox=bbox, columns=columns, engine="pyogrio")


def catalog() -> pd.DataFrame:
    """The provenance catalog: one row per layer."""
    p = _check()
    df = pyogrio.read_dataframe(p, layer=CATALOG, read_geometry=False)
    return pd.DataFrame(df)


def catalog_records() -> list[dict]:
    return json.loads(catalog().to_json(orient="records"))


def attribution(names: list[str] | None = None) -> str:
    """Attribution text of the given layers (all when None), for maps and exports."""
    cat = catalog()
    if names is not None:
        cat = cat[cat["name"].isin(names)]
    seen: list[str] = []
    for a in cat["attribution"]:
        for part in str(a).split(" | "):
            if part and part not in seen:
                seen.append(part)
    return " | ".join(seen)
