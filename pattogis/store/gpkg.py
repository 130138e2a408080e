"""GeoPackage backend of the proposals store (the default: one embedded file, no server).

The file is a regular GeoPackage (QGIS and GDAL open it): a feature table ``proposals``
(MultiPolygon in the store CRS, with the GeoPackage R-tree spatial index) and an attribute
table ``proposal_audit``. Writes run in ``BEGIN IMMEDIATE`` transactions, so concurrent writers
— threads or processes — queue on SQLite's write lock instead of failing half-way; the journal
is in WAL mode so readers never wait for writers.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from pattogis.errors import ConfigError
from pattogis.store.base import AUDIT_FIELDS, FIELDS, BaseStore, Bbox, fmt_ts

TABLE = "proposals"
AUDIT = "proposal_audit"
RTREE = f"rtree_{TABLE}_geom"
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for the lock before giving up
_ENVELOPE_BYTES = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}


# --- GeoPackage geometry blobs (GPKG spec 2.1.3) ---------------------------------------------


def encode(wkbs: np.ndarray, bounds: np.ndarray, srid: int) -> list[bytes]:
    """GeoPackage blobs: 'GP', version 0, flags (little endian, xy envelope), srs_id,
    envelope (minx, maxx, miny, maxy), ISO WKB."""
    return [
        b"GP\x00\x03" + struct.pack("<i4d", srid, b[0], b[2], b[1], b[3]) + w
        for w, b in zip(wkbs, bounds, strict=True)
    ]


def wkb_of(blob: bytes) -> bytes:
    """The WKB part of a GeoPackage blob."""
    flags = blob[3]
    return blob[8 + _ENVELOPE_BYTES[(flags >> 1) & 7]:]


def _envelope(blob: bytes | None) -> tuple[float, float, float, float] | None:
    """(minx, maxx, miny, maxy) from the header, or from the WKB when there is no envelope."""
    if blob is None or blob[3] & 0x10:  # empty flag
        return None
    flags = blob[3]
    if (flags >> 1) & 7:
        return struct.unpack(("<" if flags & 1 else ">") + "4d", blob[8:40])
    g = shapely.from_wkb(wkb_of(blob))
    if g.is_empty:
        return None
    x0, y0, x1, y1 = g.bounds
    return x0, x1, y0, y1


def _st(i: int):  # noqa: ANN202 - sqlite3 scalar function
    def f(blob: bytes | None) -> float | None:
        e = _envelope(blob)
        return None if e is None else e[i]

    return f


def _st_isempty(blob: bytes | None) -> int | None:
    if blob is None:
        return None
    return int(_envelope(blob) is None)


def _register(con: sqlite3.Connection) -> None:
    """The SQL functions that the GeoPackage R-tree triggers call (GDAL defines its own)."""
    for i, name in enumerate(("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY")):
        con.create_function(name, 1, _st(i), deterministic=True)
    con.create_function("ST_IsEmpty", 1, _st_isempty, deterministic=True)


# --- schema ----------------------------------------------------------------------------------

_CORE = [
    """CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (srs_name TEXT NOT NULL,
    srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
    organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT)""",
    """CREATE TABLE IF NOT EXISTS gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY,
    data_type TEXT NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '',
    last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
    min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
    CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id))""",
    """CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (table_name TEXT NOT NULL,
    column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL,
    z TINYINT NOT NULL, m TINYINT NOT NULL,
    CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
    CONSTRAINT uk_gc_table_name UNIQUE (table_name),
    CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
    CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id))""",
    """CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT,
    extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL,
    CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))""",
]

_TABLES = [
    f"""CREATE TABLE {TABLE} (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    geom MULTIPOLYGON NOT NULL, proposal_id TEXT NOT NULL UNIQUE, scenario TEXT NOT NULL,
    comune_istat TEXT NOT NULL, ptype TEXT NOT NULL, exemption TEXT, pool TEXT NOT NULL,
    title TEXT NOT NULL, date DATE, status TEXT NOT NULL, owner TEXT NOT NULL,
    created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
    version INTEGER NOT NULL DEFAULT 1)""",
    f"CREATE INDEX {TABLE}_scenario ON {TABLE}(scenario)",
    f"CREATE INDEX {TABLE}_comune ON {TABLE}(comune_istat)",
    f"""CREATE TABLE {AUDIT} (audit_id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    proposal_id TEXT NOT NULL, at DATETIME NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
    note TEXT, before TEXT, after TEXT)""",
    f"CREATE INDEX {AUDIT}_proposal ON {AUDIT}(proposal_id)",
    f"CREATE VIRTUAL TABLE {RTREE} USING rtree(id, minx, maxx, miny, maxy)",
    # The R-tree triggers of the GeoPackage spec (extension gpkg_rtree_index).
    f"""CREATE TRIGGER {RTREE}_insert AFTER INSERT ON {TABLE}
    WHEN (new.geom NOT NULL AND NOT ST_IsEmpty(NEW.geom)) BEGIN
    INSERT OR REPLACE INTO {RTREE} VALUES (NEW.fid, ST_MinX(NEW.geom), ST_MaxX(NEW.geom),
    ST_MinY(NEW.geom), ST_MaxY(NEW.geom)); END""",
    f"""CREATE TRIGGER {RTREE}_update6 AFTER UPDATE OF geom ON {TABLE}
    WHEN OLD.fid = NEW.fid AND (NEW.geom NOTNULL AND NOT ST_IsEmpty(NEW.geom))
    AND (OLD.geom NOTNULL AND NOT ST_IsEmpty(OLD.geom)) BEGIN
    UPDATE {RTREE} SET minx = ST_MinX(NEW.geom), maxx = ST_MaxX(NEW.geom),
    miny = ST_MinY(NEW.geom), maxy = ST_MaxY(NEW.geom) WHERE id = NEW.fid; END""",
    f"""CREATE TRIGGER {RTREE}_update7 AFTER UPDATE OF geom ON {TABLE}
    WHEN OLD.fid = NEW.fid AND (NEW.geom NOTNULL AND NOT ST_IsEmpty(NEW.geom))
    AND (OLD.geom ISNULL OR ST_IsEmpty(OLD.geom)) BEGIN
    INSERT INTO {RTREE} VALUES (NEW.fid, ST_MinX(NEW.geom), ST_MaxX(NEW.geom),
    ST_MinY(NEW.geom), ST_MaxY(NEW.geom)); END""",
    f"""CREATE TRIGGER {RTREE}_update2 AFTER UPDATE OF geom ON {TABLE}
    WHEN OLD.fid = NEW.fid AND (NEW.geom ISNULL OR ST_IsEmpty(NEW.geom)) BEGIN
    DELETE FROM {RTREE} WHERE id = OLD.fid; END""",
    f"""CREATE TRIGGER {RTREE}_update5 AFTER UPDATE ON {TABLE}
    WHEN OLD.fid != NEW.fid AND (NEW.geom NOTNULL AND NOT ST_IsEmpty(NEW.geom)) BEGIN
    DELETE FROM {RTREE} WHERE id = OLD.fid;
    INSERT OR REPLACE INTO {RTREE} VALUES (NEW.fid, ST_MinX(NEW.geom), ST_MaxX(NEW.geom),
    ST_MinY(NEW.geom), ST_MaxY(NEW.geom)); END""",
    f"""CREATE TRIGGER {RTREE}_update4 AFTER UPDATE ON {TABLE}
    WHEN OLD.fid != NEW.fid AND (NEW.geom ISNULL OR ST_IsEmpty(NEW.geom)) BEGIN
    DELETE FROM {RTREE} WHERE id IN (OLD.fid, NEW.fid); END""",
    f"""CREATE TRIGGER {RTREE}_delete AFTER DELETE ON {TABLE}
    WHEN old.geom NOT NULL BEGIN DELETE FROM {RTREE} WHERE id = OLD.fid; END""",
]

_COLS = ", ".join(FIELDS)


class GpkgStore(BaseStore):
    """Proposals in a GeoPackage file (created on first use)."""

    def __init__(self, path: str | Path, *, comuni: pd.DataFrame | None = None, crs: str | None = None) -> None:
        super().__init__(comuni=comuni, crs=crs)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

    def __repr__(self) -> str:
        return f"GpkgStore({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        # One connection per operation: safe across threads and processes, and cheap in SQLite.
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                              check_same_thread=False)
        _register(con)
        return con

    def _init_schema(self) -> None:
        con = self._connect()
        try:
            # WAL is a property of the file: readers keep reading while one writer commits.
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(f"cannot put {self.path} in WAL mode (got '{mode}')")
            con.execute("BEGIN IMMEDIATE")  # two processes creating the file at once: one wins
            try:
                have = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                if TABLE not in have:
                    self._create(con)
                else:
                    self._check(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        finally:
            con.close()

    def _create(self, con: sqlite3.Connection) -> None:
        if con.execute("PRAGMA application_id").fetchone()[0] == 0:
            con.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
            con.execute("PRAGMA user_version = 10400")
        for sql in _CORE:
            con.execute(sql)
        srs = [
            ("Undefined Cartesian SRS", -1, "NONE", -1, "undefined", "undefined Cartesian coordinate reference system"),
            ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic coordinate reference system"),
            ("WGS 84 geodetic", 4326, "EPSG", 4326, 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
             '6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,'
             'AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],'
             'AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]',
             "longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid"),
            (self.crs.name, self.srid, "EPSG", self.srid, self.crs.to_wkt("WKT1_GDAL"), None),
        ]
        con.executemany("INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", srs)
        for sql in _TABLES:
            con.execute(sql)
        con.executemany(
            "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, srs_id) "
            "VALUES (?, ?, ?, ?, ?)",
            [(TABLE, "features", TABLE, "Land-use proposals (pattogis store)", self.srid),
             (AUDIT, "attributes", AUDIT, "Audit trail of the proposals", None)],
        )
        con.execute("INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'MULTIPOLYGON', ?, 0, 0)",
                    (TABLE, self.srid))
        con.execute(
            "INSERT INTO gpkg_extensions VALUES (?, 'geom', 'gpkg_rtree_index', "
            "'http://www.geopackage.org/spec120/#extension_rtree', 'write-only')", (TABLE,))

    def _check(self, con: sqlite3.Connection) -> None:
        cols = {r[1] for r in con.execute(f"PRAGMA table_info({TABLE})")}
        if "version" not in cols:  # a store made before versions: every proposal starts at 1
            con.execute(f"ALTER TABLE {TABLE} ADD COLUMN version INTEGER NOT NULL DEFAULT 1")
        got = con.execute("SELECT srs_id FROM gpkg_geometry_columns WHERE table_name = ?", (TABLE,)).fetchone()
        if got is None or int(got[0]) != self.srid:
            raise ConfigError(
                f"{self.path}: table '{TABLE}' exists with SRS {got and got[0]}, the store works in "
                f"EPSG:{self.srid}"
            )

    # --- primitives --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
            try:
                yield con
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            con.execute("BEGIN")  # one snapshot for every statement of the read
            yield con
            con.execute("COMMIT")
        finally:
            con.close()

    @staticmethod
    def _row(r: tuple) -> tuple[dict[str, Any], bytes]:
        return dict(zip(FIELDS, r[1:], strict=True)), wkb_of(r[0])

    def _fetch(self, con: sqlite3.Connection, proposal_id: str, *, lock: bool) -> tuple[dict[str, Any], bytes] | None:
        # lock: the BEGIN IMMEDIATE of _write already holds the database write lock.
        r = con.execute(f"SELECT geom, {_COLS} FROM {TABLE} WHERE proposal_id = ?", (proposal_id,)).fetchone()
        return None if r is None else self._row(r)

    def _existing(self, con: sqlite3.Connection, ids: list[str]) -> list[str]:
        q = ", ".join("?" * len(ids))
        return [r[0] for r in con.execute(f"SELECT proposal_id FROM {TABLE} WHERE proposal_id IN ({q})", ids)]

    def _insert(self, con: sqlite3.Connection, rows: list[dict[str, Any]], wkbs: np.ndarray) -> None:
        geoms = shapely.from_wkb(wkbs)
        blobs = encode(wkbs, shapely.bounds(geoms), self.srid)
        q = ", ".join("?" * (len(FIELDS) + 1))
        con.executemany(
            f"INSERT INTO {TABLE} (geom, {_COLS}) VALUES ({q})",
            [(b, *(rec[f] for f in FIELDS)) for b, rec in zip(blobs, rows, strict=True)],
        )
        self._touch(con, shapely.total_bounds(geoms))

    def _replace(self, con: sqlite3.Connection, rec: dict[str, Any], wkb: bytes) -> None:
        g = shapely.from_wkb(wkb)
        blob = encode(np.array([wkb], dtype=object), np.array([g.bounds]), self.srid)[0]
        sets = ", ".join(f"{f} = ?" for f in FIELDS[1:])
        con.execute(f"UPDATE {TABLE} SET geom = ?, {sets} WHERE proposal_id = ?",
                    (blob, *(rec[f] for f in FIELDS[1:]), rec["proposal_id"]))
        self._touch(con, np.asarray(g.bounds))

    def _touch(self, con: sqlite3.Connection, b: np.ndarray) -> None:
        """Keep gpkg_contents' last_change and extent (only grows) current for GDAL/QGIS."""
        con.execute(
            "UPDATE gpkg_contents SET last_change = strftime('%Y-%m-%dT%H:%M:%fZ','now'), "
            "min_x = min(coalesce(min_x, ?1), ?1), min_y = min(coalesce(min_y, ?2), ?2), "
            "max_x = max(coalesce(max_x, ?3), ?3), max_y = max(coalesce(max_y, ?4), ?4) "
            "WHERE table_name = ?5", (*(float(x) for x in b), TABLE))

    def _append_audit(self, con: sqlite3.Connection, entries: list[dict[str, Any]]) -> None:
        con.executemany(
            f"INSERT INTO {AUDIT} (proposal_id, at, role, action, note, before, after) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(e["proposal_id"], fmt_ts(e["at"]), e["role"], e["action"], e["note"], e["before"], e["after"])
             for e in entries],
        )

    def _select(
        self, con: sqlite3.Connection, filters: dict[str, list[str] | None], bbox: Bbox | None
    ) -> tuple[list[dict[str, Any]], list[bytes]]:
        where, args = [], []
        for col, vals in filters.items():
            if vals is not None:
                where.append(f"{col} IN ({', '.join('?' * len(vals))})")
                args.extend(vals)
        if bbox is not None:
            where.append(f"fid IN (SELECT id FROM {RTREE} WHERE maxx >= ? AND minx <= ? AND maxy >= ? AND miny <= ?)")
            args.extend([bbox[0], bbox[2], bbox[1], bbox[3]])
        sql = f"SELECT geom, {_COLS} FROM {TABLE}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = [self._row(r) for r in con.execute(sql + " ORDER BY fid", args)]
        return [r[0] for r in rows], [r[1] for r in rows]

    def _select_audit(self, con: sqlite3.Connection, proposal_id: str) -> list[dict[str, Any]]:
        cur = con.execute(
            f"SELECT {', '.join(AUDIT_FIELDS)} FROM {AUDIT} WHERE proposal_id = ? ORDER BY audit_id",
            (proposal_id,))
        return [dict(zip(AUDIT_FIELDS, r, strict=True)) for r in cur]
