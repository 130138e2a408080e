"""Pages of features straight from disk: each layer's GeoJSON features, made once by the build.

``pattogis data build`` writes, beside the GeoPackage, a folder ``features/`` holding for every
vector layer the GeoJSON text of each feature (OGC:CRS84, coordinates rounded to 1e-7 degrees,
every property) in feature (fid) order, each followed by a comma, and three small arrays: the byte
offset where each feature starts, its envelope in CRS84 and its fid. A page of items is then one
``pread`` of contiguous bytes, a bbox query a vectorised comparison of envelopes: nothing of the
layer is held in memory but the arrays (32 bytes a feature), and the first request after start
costs what any other does.

The store belongs to the GeoPackage it was made from: its manifest records the GeoPackage's size
and SQLite header counters, and :func:`open_store` returns None when they differ (a layer set
changed by hand, or an official file loaded in place of a derived layer), so the server falls back
to reading the GeoPackage (:mod:`pattogis.collections`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Folder of the stores inside a layer set, and its manifest.
FOLDER = "features"
MANIFEST = "manifest.json"
#: Version of the on-disk format; a store of another version is not used.
FORMAT = 2
#: The GeoPackage table that is no layer (the provenance catalog).
CATALOG = "layer_catalog"


def gpkg_stamp(gpkg: str | Path) -> list[int]:
    """What identifies a GeoPackage's content cheaply: its size and the SQLite header's file
    change counter and version-valid-for number (bytes 24-27 and 92-95, both bumped by every
    write transaction). File times are not used: copying a layer set changes them."""
    p = Path(gpkg)
    with open(p, "rb") as f:
        head = f.read(100)
    if len(head) < 100:
        return [p.stat().st_size, -1, -1]
    return [p.stat().st_size, int.from_bytes(head[24:28], "big"),
            int.from_bytes(head[92:96], "big")]


class FeatureStore:
    """The stored features of one layer: ``count`` features at positions 0..count-1 (fid order).

    ``page(start, stop)`` returns the features' texts joined by commas as bytes; ``select(bbox)``
    the positions whose envelope meets a CRS84 box and whose geometry intersects it.
    """

    def __init__(self, folder: Path, layer: str, version: object = None) -> None:
        self.layer = layer
        #: what identifies the GeoPackage content the store was made from (cache keys)
        self.version = version
        self.path = folder / f"{layer}.features"
        self.offsets = np.load(folder / f"{layer}.offsets.npy", mmap_mode="r")
        self.bounds = np.load(folder / f"{layer}.bounds.npy", mmap_mode="r")
        self.fids = np.load(folder / f"{layer}.fids.npy", mmap_mode="r")
        self.count = len(self.fids)
        if len(self.offsets) != self.count + 1 or len(self.bounds) != self.count:
            raise ValueError(f"feature store of '{layer}' in {folder} is inconsistent")
        self._fd = os.open(self.path, os.O_RDONLY)
        # closed when the last holder lets go: a request still reading an old layer set's store
        # keeps its file open after the set is switched
        weakref.finalize(self, os.close, self._fd)
        if os.fstat(self._fd).st_size != int(self.offsets[-1]):
            raise ValueError(f"feature store of '{layer}' in {folder} is cut short")

    def _read(self, start: int, stop: int) -> bytes:
        lo, hi = int(self.offsets[start]), int(self.offsets[stop])
        return os.pread(self._fd, hi - lo, lo)

    def page(self, start: int, stop: int) -> bytes:
        """Features start..stop-1 (positions), their GeoJSON texts joined by commas."""
        start, stop = max(0, start), min(self.count, stop)
        if stop <= start:
            return b""
        return self._read(start, stop)[:-1]  # each text ends with a comma

    def texts(self, pos: np.ndarray) -> bytes:
        """Features at ``pos`` (sorted positions), joined by commas; runs of consecutive
        positions are read in one call."""
        if not len(pos):
            return b""
        breaks = np.flatnonzero(np.diff(pos) != 1) + 1
        starts = np.concatenate([[0], breaks])
        ends = np.concatenate([breaks, [len(pos)]])
        return b"".join(self._read(int(pos[a]), int(pos[b - 1]) + 1)
                        for a, b in zip(starts, ends, strict=True))[:-1]

    def each(self, pos: np.ndarray) -> list[bytes]:
        """The GeoJSON text of each feature at ``pos`` (sorted positions), one bytes each."""
        if not len(pos):
            return []
        blob = self.texts(pos)
        ends = np.cumsum(self.offsets[pos + 1] - self.offsets[pos])
        starts = ends - (self.offsets[pos + 1] - self.offsets[pos])
        return [blob[a:b - 1] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]

    def position(self, fid: int) -> int | None:
        """Position of a feature id (fids are ascending), None when absent."""
        at = int(np.searchsorted(self.fids, fid))
        return at if at < self.count and int(self.fids[at]) == fid else None

    def meeting(self, box: tuple[float, float, float, float]) -> np.ndarray:
        """Sorted positions of the features whose CRS84 envelope meets ``box`` (minlon <= maxlon)."""
        x0, y0, x1, y1 = box
        b = self.bounds
        return np.flatnonzero((b[:, 0] <= x1) & (b[:, 2] >= x0) & (b[:, 1] <= y1) & (b[:, 3] >= y0))

    def select(self, bbox: tuple[float, float, float, float]) -> np.ndarray:
        """Sorted positions of the features intersecting a CRS84 box (minlon > maxlon crosses
        the antimeridian). Envelopes decide, except for features whose envelope only partly
        overlaps the box: their geometry is read and tested."""
        import shapely

        x0, y0, x1, y1 = bbox
        boxes = [(x0, y0, x1, y1)] if x0 <= x1 else [(x0, y0, 180.0, y1), (-180.0, y0, x1, y1)]
        b = self.bounds
        found = []
        for bx0, by0, bx1, by1 in boxes:
            pos = self.meeting((bx0, by0, bx1, by1))
            inside = ((b[pos, 0] >= bx0) & (b[pos, 2] <= bx1) & (b[pos, 1] >= by0)
                      & (b[pos, 3] <= by1))
            edge = pos[~inside]
            if len(edge):
                geoms = shapely.from_geojson([self._read(int(i), int(i) + 1)[:-1] for i in edge])
                edge = edge[shapely.intersects(geoms, shapely.box(bx0, by0, bx1, by1))]
            found.append(np.union1d(pos[inside], edge))
        return found[0] if len(found) == 1 else np.union1d(*found)


class Stores:
    """The feature stores of a GeoPackage's layer set, opened once per GeoPackage version."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._stores: dict[str, FeatureStore] = {}
        self._lock = threading.Lock()

    def get(self, gpkg: Path, layer: str) -> FeatureStore | None:
        """The store of ``layer`` made from this very GeoPackage, or None (no store, another
        version, a layer it lacks)."""
        try:
            key = (str(gpkg), *gpkg_stamp(gpkg))
        except OSError:
            return None
        with self._lock:
            if key != self._key:
                self._stores = open_stores(gpkg)
                self._key = key
            return self._stores.get(layer)


def open_stores(gpkg: Path) -> dict[str, FeatureStore]:
    """Every layer's store beside ``gpkg`` when its manifest matches the GeoPackage, else {}."""
    folder = Path(gpkg).parent / FOLDER
    try:
        man = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if man.get("format") != FORMAT or man.get("gpkg") != Path(gpkg).name \
                or man.get("stamp") != gpkg_stamp(gpkg):
            return {}
        version = (str(gpkg), *man["stamp"])
        return {name: FeatureStore(folder, name, version) for name in man["layers"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # a damaged store is not used: the GeoPackage is still there


#: ``encode(gdf)`` yields, chunk by chunk in feature order, the features' GeoJSON texts (CRS84)
#: and their CRS84 envelopes (n x 4, NaN for no geometry)
Encoder = Callable[[Any], Iterator[tuple[Sequence[str], np.ndarray]]]


def write_stores(gpkg: str | Path, encode: Encoder, *,
                 log: Callable[[str], None] = print) -> Path:
    """Write the feature store of every vector layer of ``gpkg`` into ``features/`` beside it,
    its texts made by ``encode`` (:func:`pattogis.collections.encode_features`). Made in a
    temporary folder and moved into place. Returns the folder."""
    import pyogrio

    gpkg = Path(gpkg)
    final = gpkg.parent / FOLDER
    tmp = gpkg.parent / f".{FOLDER}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    layers = [str(n) for n, g in pyogrio.list_layers(gpkg) if g is not None and n != CATALOG]
    try:
        for name in layers:
            gdf = pyogrio.read_dataframe(gpkg, layer=name, fid_as_index=True, use_arrow=True)
            n = len(gdf)
            offsets = np.zeros(n + 1, dtype=np.int64)
            bounds = np.full((n, 4), np.nan)
            at = 0
            with open(tmp / f"{name}.features", "wb") as f:
                for texts, env in encode(gdf):
                    enc = [(t + ",").encode() for t in texts]
                    k = len(enc)
                    offsets[at + 1:at + 1 + k] = offsets[at] + np.cumsum([len(e) for e in enc])
                    bounds[at:at + k] = env
                    f.write(b"".join(enc))
                    at += k
            if at != n:
                raise ValueError(f"encoder gave {at} features of {n} for layer '{name}'")
            np.save(tmp / f"{name}.offsets.npy", offsets)
            # column by column on disk: a bbox query reads four contiguous columns
            np.save(tmp / f"{name}.bounds.npy", np.asfortranarray(bounds))
            np.save(tmp / f"{name}.fids.npy", np.asarray(gdf.index, dtype=np.int64))
            log(f"  features of {name} for the API: {n} ({offsets[-1] / 2**20:.1f} MiB)")
        (tmp / MANIFEST).write_text(json.dumps({
            "format": FORMAT, "gpkg": gpkg.name, "stamp": gpkg_stamp(gpkg), "layers": layers,
        }, indent=1) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
