"""PostGIS backend of the proposals store (psycopg 3), used when a database URL is configured.

Tables ``proposals`` (geometry(MultiPolygon, <srid>) with a GiST index) and ``proposal_audit``
(before/after as jsonb) in a schema of the database (``public`` unless told). Every operation
is one transaction; updates lock the row (``SELECT ... FOR UPDATE``) so concurrent edits of the
same proposal are applied one after the other and each audit entry's ``before`` is the previous
entry's ``after``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from pattogis.errors import ConfigError, MissingDataError
from pattogis.store.base import AUDIT_FIELDS, FIELDS, BaseStore, Bbox, fmt_ts

TABLE = "proposals"
AUDIT = "proposal_audit"
_SCHEMA_LOCK = 7_262_001  # advisory lock id: one process creates the tables, others wait


def _configure(con: psycopg.Connection) -> None:
    """Every pooled connection speaks UTC (timestamps come back as the GeoPackage ones do)."""
    con.execute("SET TIME ZONE 'UTC'")


def _iso(v: Any) -> Any:
    """Dates and timestamps from the database as the strings the GeoPackage backend returns."""
    if isinstance(v, datetime):
        return fmt_ts(v)
    if isinstance(v, date):
        return v.isoformat()
    return v


class PostgisStore(BaseStore):
    """Proposals in a PostGIS database given by a ``postgresql://`` URL."""

    def __init__(
        self,
        url: str,
        *,
        comuni: pd.DataFrame | None = None,
        crs: str | None = None,
        schema: str = "public",
        max_connections: int = 20,
    ) -> None:
        super().__init__(comuni=comuni, crs=crs)
        self.url = url
        self.schema = schema
        # psycopg_pool: at most max_connections at once (callers beyond wait), broken ones
        # replaced, a connection left in a transaction rolled back before reuse.
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False,
                                    kwargs={"autocommit": True}, configure=_configure,
                                    name="pattogis-proposals")
        self._t = sql.Identifier(schema, TABLE)
        self._a = sql.Identifier(schema, AUDIT)
        self._cols = sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS)
        try:
            self._pool.open(wait=True, timeout=30)
            self._init_schema()
        except (psycopg.OperationalError, PoolTimeout) as e:
            self._pool.close()
            raise MissingDataError(f"cannot connect to the proposals database: {e}") from e

    def __repr__(self) -> str:
        return f"PostgisStore(schema={self.schema!r})"

    def close(self) -> None:
        self._pool.close()

    def _init_schema(self) -> None:
        with self._pool.connection() as con, con.transaction():
            con.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            if con.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone() is None:
                try:
                    with con.transaction():
                        con.execute("CREATE EXTENSION postgis")
                except psycopg.Error as e:
                    raise ConfigError(
                        f"the database has no PostGIS and this user cannot add it ({e}); "
                        "run 'CREATE EXTENSION postgis' as a superuser"
                    ) from e
            q = sql.SQL
            con.execute(q("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema)))
            con.execute(q(
                "CREATE TABLE IF NOT EXISTS {t} (fid bigserial PRIMARY KEY, "
                "proposal_id text NOT NULL UNIQUE, scenario text NOT NULL, comune_istat text NOT NULL, "
                "ptype text NOT NULL, exemption text, pool text NOT NULL, title text NOT NULL, "
                "date date, status text NOT NULL, owner text NOT NULL, "
                "created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, "
                "version integer NOT NULL DEFAULT 1, "
                "geom geometry(MultiPolygon, {srid}) NOT NULL)"
            ).format(t=self._t, srid=sql.Literal(self.srid)))
            # a store made before versions: every proposal starts at 1
            con.execute(q("ALTER TABLE {t} ADD COLUMN IF NOT EXISTS version integer NOT NULL "
                          "DEFAULT 1").format(t=self._t))
            con.execute(q("CREATE INDEX IF NOT EXISTS {i} ON {t} USING gist (geom)").format(
                i=sql.Identifier(f"{TABLE}_geom_gist"), t=self._t))
            con.execute(q("CREATE INDEX IF NOT EXISTS {i} ON {t} (scenario, comune_istat)").format(
                i=sql.Identifier(f"{TABLE}_scenario_comune"), t=self._t))
            con.execute(q(
                "CREATE TABLE IF NOT EXISTS {a} (audit_id bigserial PRIMARY KEY, "
                "proposal_id text NOT NULL REFERENCES {t} (proposal_id), at timestamptz NOT NULL, "
                "role text NOT NULL, action text NOT NULL, note text, before jsonb, after jsonb)"
            ).format(a=self._a, t=self._t))
            con.execute(q("CREATE INDEX IF NOT EXISTS {i} ON {a} (proposal_id)").format(
                i=sql.Identifier(f"{AUDIT}_proposal"), a=self._a))
            got = con.execute(
                "SELECT srid FROM geometry_columns WHERE f_table_schema = %s AND f_table_name = %s "
                "AND f_geometry_column = 'geom'", (self.schema, TABLE)).fetchone()
            if got is None or int(got[0]) != self.srid:
                raise ConfigError(
                    f"table {self.schema}.{TABLE} has SRID {got and got[0]}, the store works in "
                    f"EPSG:{self.srid}")

    # --- primitives --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as con, con.transaction():
            yield con

    @contextlib.contextmanager
    def _read(self) -> Iterator[psycopg.Connection]:
        with self._pool.connection() as con, con.transaction():
            con.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield con

    def _row_sql(self) -> sql.Composed:
        return sql.SQL("SELECT ST_AsBinary(geom), {c} FROM {t}").format(c=self._cols, t=self._t)

    @staticmethod
    def _row(r: tuple) -> tuple[dict[str, Any], bytes]:
        return {f: _iso(v) for f, v in zip(FIELDS, r[1:], strict=True)}, bytes(r[0])

    def _fetch(self, con: psycopg.Connection, proposal_id: str, *, lock: bool) -> tuple[dict[str, Any], bytes] | None:
        q = self._row_sql() + sql.SQL(" WHERE proposal_id = %s") + sql.SQL(" FOR UPDATE" if lock else "")
        r = con.execute(q, (proposal_id,)).fetchone()
        return None if r is None else self._row(r)

    def _existing(self, con: psycopg.Connection, ids: list[str]) -> list[str]:
        q = sql.SQL("SELECT proposal_id FROM {t} WHERE proposal_id = ANY(%s)").format(t=self._t)
        return [r[0] for r in con.execute(q, (ids,))]

    def _values(self, rec: dict[str, Any]) -> list[Any]:
        out = [rec[f] for f in FIELDS]
        # timestamps go in as datetimes so that the column type, not a string cast, decides
        i, j = FIELDS.index("created_at"), FIELDS.index("updated_at")
        out[i], out[j] = datetime.fromisoformat(out[i]), datetime.fromisoformat(out[j])
        return out

    def _insert(self, con: psycopg.Connection, rows: list[dict[str, Any]], wkbs: np.ndarray) -> None:
        ph = sql.SQL(", ").join(sql.Placeholder() * len(FIELDS))
        q = sql.SQL("INSERT INTO {t} ({c}, geom) VALUES ({ph}, ST_Multi(ST_GeomFromWKB(%s, {srid})))").format(
            t=self._t, c=self._cols, ph=ph, srid=sql.Literal(self.srid))
        with con.cursor() as cur:
            cur.executemany(q, [(*self._values(rec), bytes(w)) for rec, w in zip(rows, wkbs, strict=True)])

    def _replace(self, con: psycopg.Connection, rec: dict[str, Any], wkb: bytes) -> None:
        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(f)) for f in FIELDS[1:])
        q = sql.SQL("UPDATE {t} SET {s}, geom = ST_Multi(ST_GeomFromWKB(%s, {srid})) WHERE proposal_id = %s").format(
            t=self._t, s=sets, srid=sql.Literal(self.srid))
        con.execute(q, (*self._values(rec)[1:], bytes(wkb), rec["proposal_id"]))

    def _append_audit(self, con: psycopg.Connection, entries: list[dict[str, Any]]) -> None:
        q = sql.SQL("INSERT INTO {a} (proposal_id, at, role, action, note, before, after) "
                    "VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)").format(a=self._a)
        with con.cursor() as cur:
            cur.executemany(q, [(e["proposal_id"], e["at"], e["role"], e["action"], e["note"],
                                 e["before"], e["after"]) for e in entries])

    def _select(
        self, con: psycopg.Connection, filters: dict[str, list[str] | None], bbox: Bbox | None
    ) -> tuple[list[dict[str, Any]], list[bytes]]:
        where: list[sql.Composable] = []
        args: list[Any] = []
        for col, vals in filters.items():
            if vals is not None:
                where.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(col)))
                args.append(vals)
        if bbox is not None:  # envelope test on the GiST index; BaseStore.list does the exact one
            where.append(sql.SQL("geom && ST_MakeEnvelope(%s, %s, %s, %s, {srid})").format(
                srid=sql.Literal(self.srid)))
            args.extend(bbox)
        q = self._row_sql()
        if where:
            q += sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        rows = [self._row(r) for r in con.execute(q + sql.SQL(" ORDER BY fid"), args)]
        return [r[0] for r in rows], [r[1] for r in rows]

    def _select_audit(self, con: psycopg.Connection, proposal_id: str) -> list[dict[str, Any]]:
        q = sql.SQL("SELECT audit_id, proposal_id, at, role, action, note, before, after FROM {a} "
                    "WHERE proposal_id = %s ORDER BY audit_id").format(a=self._a)
        return [{f: _iso(v) for f, v in zip(AUDIT_FIELDS, r, strict=True)}
                for r in con.execute(q, (proposal_id,))]

