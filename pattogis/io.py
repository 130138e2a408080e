"""Atomic writes (write to a temporary file beside the target, then move it into place) and
uploads read within limits (a zip is inflated here, counted, never by GDAL)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``target``.

    On error the temporary file is removed and the target is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.", suffix=suffix or target.suffix, dir=target.parent
    )
    os.close(fd)
    os.unlink(tmp)  # GDAL drivers want to create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        for p in (tmp_path, Path(str(tmp_path) + "-journal"), Path(str(tmp_path) + "-wal")):
            if p.exists():
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink()


def atomic_write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


# --- uploads: bounded after decompression ------------------------------------------------------


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may become once decompressed (settings.yaml ``upload_limits``).

    ``max_inflated_bytes``: total size of every entry of a zip (or a GeoParquet's columns);
    ``max_entries``: files in one zip; ``max_ratio``: inflated / compressed size of any one entry;
    ``max_features``: features in one upload.
    """

    max_inflated_bytes: int = 100 * 1024 * 1024
    max_entries: int = 100
    max_ratio: float = 100.0
    max_features: int = 10_000

    @classmethod
    def from_settings(cls) -> UploadLimits:
        from pattogis import config

        s = config.settings().get("upload_limits") or {}
        d = cls()
        return cls(
            max_inflated_bytes=int(float(s.get("max_inflated_mb", d.max_inflated_bytes / 2**20))
                                   * 2**20),
            max_entries=int(s.get("max_entries", d.max_entries)),
            max_ratio=float(s.get("max_ratio", d.max_ratio)),
            max_features=int(s.get("max_features", d.max_features)),
        )


_CHUNK = 1 << 16


def safe_unzip(archive: str | Path, dest: str | Path, limits: UploadLimits | None = None,
               *, label: str | None = None) -> list[Path]:
    """Extract ``archive`` into ``dest`` counting the bytes as they inflate; stop at the first
    limit passed (PayloadTooLarge, HTTP 413) before anything is handed to GDAL.

    The sizes in the zip headers are not trusted: every entry is inflated in chunks and the
    running totals are checked after each chunk. Entry names with absolute paths or ``..`` are
    refused (InputError); folders inside the zip are flattened. Returns the extracted files.
    """
    from pattogis.errors import InputError, PayloadTooLarge

    lim = limits or UploadLimits.from_settings()
    label = label or Path(archive).name
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    total = 0
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"not a readable zip file: {e}", file=label) from e
    with zf:
        entries = [i for i in zf.infolist() if not i.is_dir()]
        if len(entries) > lim.max_entries:
            raise PayloadTooLarge(f"the zip holds {len(entries)} files, more than the limit of "
                                  f"{lim.max_entries}", file=label,
                                  hint="zip only the files of the layer (.shp, .shx, .dbf, .prj)")
        for info in entries:
            name = info.filename.replace("\\", "/")
            if name.startswith("/") or ".." in name.split("/"):
                raise InputError(f"zip entry '{name[:120]}' points outside the archive", file=label)
            target = dest / Path(name).name
            if not Path(name).name or target.exists():
                raise InputError(f"zip entry '{name[:120]}' is empty or repeated", file=label)
            written = 0
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        total += len(chunk)
                        if total > lim.max_inflated_bytes:
                            raise PayloadTooLarge(
                                f"the zip inflates to more than {lim.max_inflated_bytes} bytes "
                                f"(stopped at entry '{name[:120]}')", file=label,
                                hint="upload_limits.max_inflated_mb in settings.yaml")
                        if written > lim.max_ratio * max(info.compress_size, 1) and written > _CHUNK:
                            raise PayloadTooLarge(
                                f"zip entry '{name[:120]}' inflates more than {lim.max_ratio:g} "
                                "times its compressed size (a zip bomb?)", file=label,
                                hint="upload_limits.max_ratio in settings.yaml")
                        dst.write(chunk)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
                raise InputError(f"cannot inflate zip entry '{name[:120]}': {e}", file=label) from e
            out.append(target)
    return out


def check_parquet(path: str | Path, limits: UploadLimits | None = None,
                  *, label: str | None = None) -> None:
    """Refuse a GeoParquet whose columns inflate over ``max_inflated_bytes`` or that holds more
    rows than ``max_features`` (PayloadTooLarge), read from its footer before any column."""
    import pyarrow.parquet as pq

    from pattogis.errors import InputError, PayloadTooLarge

    lim = limits or UploadLimits.from_settings()
    label = label or Path(path).name
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as e:  # pyarrow raises several kinds for a damaged footer
        raise InputError(f"not a readable GeoParquet file: {e}", file=label) from e
    if meta.num_rows > lim.max_features:
        raise PayloadTooLarge(f"{meta.num_rows} rows, more than the limit of {lim.max_features}",
                              file=label)
    size = sum(meta.row_group(i).column(j).total_uncompressed_size
               for i in range(meta.num_row_groups) for j in range(meta.num_columns))
    if size > lim.max_inflated_bytes:
        raise PayloadTooLarge(f"the columns inflate to {size} bytes, more than the limit of "
                              f"{lim.max_inflated_bytes}", file=label)


#: What a zip may carry as its one layer.
READABLE_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json", ".parquet", ".fgb")


def read_vector_file(path: str | Path, *, label: str | None = None,
                     limits: UploadLimits | None = None, layer: str | None = None) -> Any:
    """Read the one vector layer of a file as a GeoDataFrame: GeoPackage, GeoJSON, FlatGeobuf,
    GeoParquet, a Shapefile, or a zip holding one of them.

    A zip is always inflated by :func:`safe_unzip` (counted and bounded, never by GDAL). With
    ``limits`` (an upload from a client) a GeoParquet is checked from its footer and the number of
    features is capped before anything is read; without them (a local file) only the zip is
    bounded. Errors name the file (``label``): InputError (422), PayloadTooLarge (413).
    """
    # Heavy readers imported here: io is the bottom floor, imported by light modules too.
    import geopandas as gpd
    import pyogrio

    from pattogis.errors import InputError, PayloadTooLarge

    path = Path(path)
    label = label or path.name
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with tempfile.TemporaryDirectory(prefix="pattogis-zip-") as d:
            files = safe_unzip(path, d, limits or UploadLimits.from_settings(), label=label)
            found = sorted(f for f in files if f.suffix.lower() in READABLE_SUFFIXES)
            if len(found) != 1:
                raise InputError(f"the zip must hold exactly one layer (one Shapefile, "
                                 f"GeoPackage or GeoJSON), found {len(found)}", file=label,
                                 hint="zip one Shapefile (.shp, .shx, .dbf, .prj), GeoPackage "
                                 "or GeoJSON")
            if found[0].suffix.lower() == ".shp":
                lacking = [ext for ext in (".shx", ".dbf")
                           if not found[0].with_suffix(ext).exists()
                           and not found[0].with_suffix(ext.upper()).exists()]
                if lacking:
                    raise InputError(f"the Shapefile {found[0].name} lacks {', '.join(lacking)}",
                                     file=label, hint="zip the .shp with its .shx, .dbf and .prj")
            return read_vector_file(found[0], label=label, limits=limits)
    if suffix in (".parquet", ".geoparquet"):
        if limits is not None:
            check_parquet(path, limits, label=label)
        try:
            return gpd.read_parquet(path)
        except Exception as e:  # pyarrow and geopandas raise several kinds
            raise InputError(f"cannot read the GeoParquet file: {e}", file=label) from e
    try:
        found_layers = pyogrio.list_layers(path)
        if len(found_layers) == 0:
            raise InputError("the file holds no layer", file=label)
        name = layer or str(found_layers[0][0])
        n = pyogrio.read_info(path, layer=name)["features"]
    except InputError:
        raise
    except Exception as e:  # GDAL raises several kinds on broken files
        raise InputError(f"cannot read the file: {e}", file=label) from e
    if limits is not None and n > limits.max_features:
        raise PayloadTooLarge(f"{n} features, more than the limit of {limits.max_features}",
                              file=label, hint="send them in smaller batches")
    try:
        return gpd.read_file(path, layer=name, engine="pyogrio")
    except Exception as e:  # GDAL raises several kinds on broken files
        raise InputError(f"cannot read the file: {e}", file=label) from e
