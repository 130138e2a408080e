"""The proposals store: one interface, two backends (GeoPackage and PostGIS).

A proposal is one row of the legal ledger's schema (see ``docs``/schemas): proposal_id (the
form of :data:`pattogis.proposals.ID_PATTERN`; uuid4 hex when none is given), scenario,
comune_istat, ptype, exemption, pool, title, date, status, owner, created_at, updated_at,
version (1 at creation, +1 at every change), geometry (MultiPolygon in the working CRS,
EPSG:25832 by default; areas in m²).

Read rule (the same in every face: API, OGC collections, maps, ledger, exports):
proposals whose status is in :data:`PUBLIC_STATUSES` (presentata, approvata) are public;
drafts (bozza) and withdrawn ones (ritirata) are seen only by the roles that may write them —
the owner's comune, its Unione — and the metropolitan office. ``role=None`` reads as the public.

Transitions: only the metropolitan office sets or changes an approved proposal
(:data:`METRO_ONLY`); 'ritirata' is set by the withdraw action only.

Optimistic concurrency: ``update`` and ``withdraw`` take ``expected_version``; the check, the
read of the current row, the merge of the fields sent and the write happen in one transaction,
so two writers never lose each other's changes (the second gets PreconditionFailed).

Every change (create, update, withdraw) appends to an audit trail in the same transaction: who
(role id), when (UTC), action, and the proposal before and after as GeoJSON Features in the
store's CRS. A refused write (bad input, wrong role, withdrawn proposal) changes nothing.

Backends implement a handful of primitives (:class:`BaseStore` ``_write``, ``_read``,
``_fetch``, ``_insert``, ``_replace``, ``_append_audit``, ``_select``, ``_select_audit``);
permissions and validation live here, once.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from pattogis import config
from pattogis.errors import (
    ConfigError,
    ConflictError,
    InputError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from pattogis.proposals import check_properties, field_limits, valid_id
from pattogis.store.auth import Membership, Role

STATUSES = ("bozza", "presentata", "approvata", "ritirata")
WITHDRAWN = "ritirata"
FIELDS = (
    "proposal_id", "scenario", "comune_istat", "ptype", "exemption", "pool", "title", "date",
    "status", "owner", "created_at", "updated_at", "version",
)
#: Statuses anyone may read; the others only the roles that may write the proposal.
PUBLIC_STATUSES = ("presentata", "approvata")
#: Statuses only the metropolitan office may set, or change a proposal out of.
METRO_ONLY = ("approvata",)
# Fields a writer may set; proposal_id, owner and the timestamps belong to the store.
EDITABLE = ("scenario", "comune_istat", "ptype", "exemption", "pool", "title", "date", "status")
REQUIRED = ("scenario", "comune_istat", "ptype", "pool")
AUDIT_FIELDS = ("audit_id", "proposal_id", "at", "role", "action", "note", "before", "after")

Bbox = tuple[float, float, float, float]


@runtime_checkable
class ProposalStore(Protocol):
    """What the ledger, the CLI and the API may ask of a store. ``role`` is a :class:`Role` or
    its id string ('comune:037006', 'unione:<name>', 'metro')."""

    crs: pyproj.CRS

    @property
    def comuni(self) -> gpd.GeoDataFrame: ...

    @property
    def membership(self) -> Membership: ...

    def create(self, proposals: gpd.GeoDataFrame, *, role: Role | str) -> gpd.GeoDataFrame: ...

    def update(
        self, proposal_id: str, changes: Mapping[str, Any] | gpd.GeoDataFrame, *,
        role: Role | str, expected_version: int | None = None,
    ) -> gpd.GeoDataFrame: ...

    def withdraw(
        self, proposal_id: str, *, role: Role | str, note: str | None = None,
        expected_version: int | None = None,
    ) -> gpd.GeoDataFrame: ...

    def get(self, proposal_id: str, *, role: Role | str | None) -> gpd.GeoDataFrame: ...

    def list(
        self,
        *,
        role: Role | str | None,
        scenario: str | Iterable[str] | None = None,
        comune: str | Iterable[str] | None = None,
        owner: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        bbox: Bbox | None = None,
    ) -> gpd.GeoDataFrame: ...

    def audit(self, proposal_id: str, *, role: Role | str) -> pd.DataFrame: ...

    def close(self) -> None: ...


def now_utc() -> datetime:
    """Current UTC time, truncated to milliseconds (the GeoPackage DATETIME resolution)."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def fmt_ts(t: datetime) -> str:
    """ISO 8601 UTC with milliseconds and 'Z', as GeoPackage wants: 2025-01-31T12:00:00.000Z."""
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _rows(index: pd.Index) -> list[int]:
    """1-based feature numbers (as in pattogis.proposals) from a 0-based positional index."""
    return [int(i) + 1 for i in index]


def _as_list(v: str | Iterable[str] | None) -> list[str] | None:
    if v is None:
        return None
    return [v] if isinstance(v, str) else [str(x) for x in v]


def feature(rec: Mapping[str, Any], geom: shapely.Geometry) -> dict[str, Any]:
    """A proposal record as a GeoJSON Feature dict (coordinates in the store's CRS)."""
    return {
        "type": "Feature",
        "id": rec["proposal_id"],
        "geometry": json.loads(shapely.to_geojson(geom)),
        "properties": {f: rec.get(f) for f in FIELDS},
    }


class BaseStore(ABC):
    """Permissions, validation and the audit trail, shared by the backends."""

    def __init__(self, *, comuni: pd.DataFrame | None = None, crs: str | None = None) -> None:
        self.crs = pyproj.CRS(crs or config.working_crs())
        srid = self.crs.to_epsg()
        if srid is None or not self.crs.is_projected:
            raise ConfigError(f"the proposals store needs a projected EPSG CRS, got {self.crs.name}")
        self.srid: int = srid
        self._comuni = comuni
        self._membership: Membership | None = None
        self._lazy = threading.Lock()

    # --- comuni and roles --------------------------------------------------------------------

    @property
    def comuni(self) -> gpd.GeoDataFrame:
        """The comuni table (istat, unione, geometry): given, or the built layer ``comuni``."""
        with self._lazy:
            if self._comuni is None:
                from pattogis import layers  # lazy: tests and tools pass their own table

                self._comuni = layers.open_layer("comuni")
            return self._comuni

    @property
    def membership(self) -> Membership:
        if self._membership is None:
            self._membership = Membership.from_comuni(self.comuni)
        return self._membership

    @staticmethod
    def _role(role: Role | str) -> Role:
        return Role.parse(role)

    def can_read(self, role: Role | str | None, istat: str, status: str) -> bool:
        """The read rule: public statuses for anyone, everything for the roles that may write."""
        if status in PUBLIC_STATUSES:
            return True
        return role is not None and self.membership.can_write(Role.parse(role), istat)

    def visible(self, proposals: gpd.GeoDataFrame, role: Role | str | None) -> gpd.GeoDataFrame:
        """The rows of ``proposals`` (columns comune_istat, status) that ``role`` may read
        (``None``: the public). Every face filters through here."""
        if len(proposals) == 0:
            return proposals
        public = proposals["status"].isin(PUBLIC_STATUSES)
        if role is None:
            keep = public
        else:
            scope = self.membership.scope(Role.parse(role))
            keep = public | (proposals["comune_istat"].isin(sorted(scope))
                             if scope is not None else True)
        return proposals[np.asarray(keep, dtype=bool)].reset_index(drop=True)

    @staticmethod
    def _check_transition(role: Role, old: str | None, new: str, pid: str) -> None:
        """Only the metropolitan office sets an approved status or changes an approved proposal."""
        if role.kind == "metro":
            return
        if new in METRO_ONLY and old != new:
            raise PermissionDenied(f"role '{role.id}' may not set status '{new}' on proposal "
                                   f"{pid}: only the metropolitan office (metro) approves")
        if old in METRO_ONLY:
            raise PermissionDenied(f"proposal {pid} is '{old}': only the metropolitan office "
                                   "(metro) may change or withdraw it")

    @staticmethod
    def _check_version(cur: Mapping[str, Any], expected: int | None, pid: str) -> None:
        if expected is not None and int(cur["version"]) != int(expected):
            raise PreconditionFailed(
                f"proposal {pid} is at version {cur['version']}, the change was based on "
                f"version {expected}", field="If-Match",
                hint="read it again (GET gives the ETag), apply the change, send it again")

    def _check_write(self, role: Role, istat: str, what: str) -> None:
        if not self.membership.can_write(role, istat):
            raise PermissionDenied(
                f"role '{role.id}' may not write {what} of comune {istat}: "
                + self._scope_text(role)
            )

    def _check_read(self, role: Role | None, rec: Mapping[str, Any], what: str) -> None:
        """Refuse a proposal the role may not read as if it did not exist (its id says nothing)."""
        if not self.can_read(role, rec["comune_istat"], rec["status"]):
            raise NotFound(f"no {what} visible to "
                           f"{'the public' if role is None else 'role ' + repr(role.id)}")

    def _scope_text(self, role: Role) -> str:
        scope = self.membership.scope(role)
        if scope is None:
            return "all comuni"
        if not scope:
            return "it has no comuni (unknown Unione?)"
        return "its comuni are " + ", ".join(sorted(scope))

    # --- validation --------------------------------------------------------------------------

    def _validate(self, gdf: gpd.GeoDataFrame, *, creating: bool) -> gpd.GeoDataFrame:
        """Check and normalise proposals; return a frame with EDITABLE + proposal_id + geometry
        (MultiPolygon, store CRS). Raises InputError naming rows and field."""
        if not isinstance(gdf, gpd.GeoDataFrame):
            raise InputError("proposals must be a GeoDataFrame", hint="use pattogis.proposals.read_proposals")
        if len(gdf) == 0:
            raise InputError("no proposals given", field="features")
        if gdf.crs is None:
            raise InputError(
                "proposals have no CRS", field="geometry",
                hint=f"declare the CRS (the store works in {self.crs.to_string()})",
            )
        gdf = gdf.reset_index(drop=True)  # rows in errors: 1-based feature numbers
        check_properties(pd.DataFrame(gdf.drop(columns=gdf.geometry.name)))  # types, lengths
        if not pyproj.CRS(gdf.crs).equals(self.crs):
            gdf = gdf.to_crs(self.crs)
        missing = [c for c in REQUIRED if c not in gdf.columns]
        if missing:
            raise InputError(f"missing field '{missing[0]}'", field=missing[0])
        out = pd.DataFrame(index=gdf.index)
        for c in REQUIRED:
            s = gdf[c]
            bad = s.isna() | (s.astype(str).str.strip() == "")
            if bad.any():
                raise InputError(f"empty '{c}'", rows=_rows(gdf.index[bad]), field=c)
            out[c] = s.astype(str).str.strip()
        title = gdf["title"] if "title" in gdf.columns else pd.Series("", index=gdf.index)
        out["title"] = title.astype(object).where(title.notna(), "").astype(str).str.strip()
        law = config.law()
        self._enum(out, "ptype", list(law["proposal_types"]))
        self._enum(out, "pool", list(law["pools"]))
        known = pd.Series(list(self.membership.unione_of), dtype=object)
        bad = ~out["comune_istat"].isin(known)
        if bad.any():
            raise InputError(
                f"unknown comune '{out['comune_istat'][bad].iloc[0]}'", rows=_rows(gdf.index[bad]),
                field="comune_istat", hint="use the 6-digit ISTAT code, e.g. '037006'",
            )
        ex = gdf["exemption"] if "exemption" in gdf.columns else pd.Series(None, index=gdf.index)
        ex = ex.astype(object).where(ex.notna() & (ex.astype(str).str.strip() != ""), None)
        bad = ex.notna() & ~ex.isin(list(law["exemptions"]))
        if bad.any():
            raise InputError(
                f"unknown exemption '{ex[bad].iloc[0]}'", rows=_rows(gdf.index[bad]), field="exemption",
                hint="known: " + ", ".join(law["exemptions"]) + " (or none)",
            )
        out["exemption"] = ex
        st = gdf["status"] if "status" in gdf.columns else pd.Series(None, index=gdf.index)
        st = st.astype(object).where(st.notna(), "bozza")
        out["status"] = st.astype(str)
        self._enum(out, "status", [s for s in STATUSES if s != WITHDRAWN],
                   hint="withdraw a proposal with the withdraw action")
        out["date"] = self._dates(gdf)
        if creating:
            out["proposal_id"] = self._ids(gdf)
        out = gpd.GeoDataFrame(out, geometry=self._geoms(gdf), crs=self.crs)
        return out

    @staticmethod
    def _enum(out: pd.DataFrame, col: str, allowed: list[str], hint: str | None = None) -> None:
        bad = ~out[col].isin(allowed)
        if bad.any():
            raise InputError(
                f"'{out[col][bad].iloc[0]}' is not a valid {col}", rows=_rows(out.index[bad]), field=col,
                hint=hint or "allowed: " + ", ".join(allowed),
            )

    @staticmethod
    def _dates(gdf: gpd.GeoDataFrame) -> pd.Series:
        if "date" not in gdf.columns:
            return pd.Series(None, index=gdf.index, dtype=object)
        raw = gdf["date"]
        parsed = pd.to_datetime(raw.astype(object).where(raw.notna(), None), errors="coerce", format="ISO8601")
        bad = raw.notna() & parsed.isna()
        if bad.any():
            raise InputError(
                f"'{raw[bad].iloc[0]}' is not an ISO date", rows=_rows(gdf.index[bad]), field="date",
                hint="write dates as YYYY-MM-DD",
            )
        return parsed.dt.strftime("%Y-%m-%d").astype(object).where(parsed.notna(), None)

    @staticmethod
    def _ids(gdf: gpd.GeoDataFrame) -> pd.Series:
        given = gdf["proposal_id"] if "proposal_id" in gdf.columns else pd.Series(None, index=gdf.index)
        given = given.astype(object).where(given.notna(), None)
        bad = given.notna() & ~given.map(valid_id).astype(bool)
        if bad.any():
            raise InputError(
                "proposal_id must be a letter or digit then up to 63 letters, digits, '_', '.' "
                "or '-' (e.g. CAS-EXP-01), or empty",
                rows=_rows(gdf.index[bad]), field="proposal_id",
            )
        if "part" in gdf.columns:
            # pattogis.proposals splits a proposal across comuni into parts sharing its id; the
            # store keeps one comune per proposal, so parts after the first get ids of their own.
            later = given.notna() & pd.to_numeric(gdf["part"], errors="coerce").fillna(1).gt(1)
            given = given.where(~later, None)
        dup = given.notna() & given.duplicated(keep=False)
        if dup.any():
            raise InputError("duplicate proposal_id", rows=_rows(gdf.index[dup]), field="proposal_id")
        fresh = pd.Series([uuid.uuid4().hex for _ in range(len(gdf))], index=gdf.index)
        return given.where(given.notna(), fresh)

    @staticmethod
    def _geoms(gdf: gpd.GeoDataFrame) -> np.ndarray:
        g = np.asarray(gdf.geometry.values, dtype=object)
        missing = shapely.is_missing(g)
        if missing.any():
            raise InputError("missing geometry", rows=_rows(gdf.index[missing]), field="geometry")
        kind = shapely.get_type_id(g)
        bad = ~np.isin(kind, (3, 6))  # Polygon, MultiPolygon
        if bad.any():
            raise InputError(
                f"geometry must be a Polygon or MultiPolygon, not {g[bad][0].geom_type}",
                rows=_rows(gdf.index[bad]), field="geometry",
            )
        empty = shapely.is_empty(g)
        if empty.any():
            raise InputError("empty geometry", rows=_rows(gdf.index[empty]), field="geometry")
        invalid = ~shapely.is_valid(g)
        if invalid.any():
            reason = shapely.is_valid_reason(g[invalid][0])
            raise InputError(
                f"invalid geometry ({reason})", rows=_rows(gdf.index[invalid]), field="geometry",
                hint="repair it (e.g. make_valid in QGIS) and send it again",
            )
        g = shapely.force_2d(g)
        poly = kind == 3
        if poly.any():  # one column type in both backends: MultiPolygon
            g[poly] = shapely.multipolygons(g[poly], indices=np.arange(int(poly.sum())))
        return g

    def _changes(self, changes: Mapping[str, Any] | gpd.GeoDataFrame, proposal_id: str) -> dict[str, Any]:
        """Editable fields (and 'geometry', in the store CRS) from a dict or a one-row frame.

        A frame's read-only columns (owner, timestamps) are ignored so that a Feature read from
        the store can be edited and sent back; its proposal_id, when given, must match."""
        if isinstance(changes, gpd.GeoDataFrame):
            if len(changes) != 1:
                raise InputError(
                    f"an update takes exactly one feature, got {len(changes)}", field="features",
                    hint="a proposal spans one comune; create one proposal per comune",
                )
            if changes.crs is None:
                raise InputError("the update has no CRS", field="geometry")
            if "proposal_id" in changes.columns:
                pid = changes["proposal_id"].iloc[0]
                if pd.notna(pid) and str(pid) != proposal_id:
                    raise InputError(
                        f"proposal_id '{pid}' in the body differs from '{proposal_id}'", field="proposal_id"
                    )
            row = changes.to_crs(self.crs) if not pyproj.CRS(changes.crs).equals(self.crs) else changes
            out = {c: row[c].iloc[0] for c in EDITABLE if c in row.columns}
            # a property sent as null keeps its value (send a dict with None to clear one)
            out = {k: v for k, v in out.items() if isinstance(v, str) or not pd.isna(v)}
            out["geometry"] = row.geometry.iloc[0]
            return out
        unknown = [k for k in changes if k not in EDITABLE and k != "geometry"]
        if unknown:
            raise InputError(
                f"field '{unknown[0]}' cannot be changed", field=unknown[0],
                hint="editable: " + ", ".join(EDITABLE) + ", geometry",
            )
        return dict(changes)

    # --- the interface -----------------------------------------------------------------------

    def create(self, proposals: gpd.GeoDataFrame, *, role: Role | str) -> gpd.GeoDataFrame:
        """Store new proposals (all or none) owned by ``role``; return them with their ids."""
        r = self._role(role)
        v = self._validate(proposals, creating=True)
        scope = self.membership.scope(r)
        foreign = (~v["comune_istat"].isin(sorted(scope)) if scope is not None
                   else pd.Series(False, index=v.index))
        if foreign.any():
            raise PermissionDenied(
                f"role '{r.id}' may not write proposals of comune {v['comune_istat'][foreign].iloc[0]} "
                f"(rows {', '.join(str(i) for i in _rows(v.index[foreign])[:10])}): "
                + self._scope_text(r)
            )
        for st, pid in zip(v["status"], v["proposal_id"], strict=True):
            self._check_transition(r, None, st, pid)
        t = now_utc()
        recs = pd.DataFrame(v.drop(columns="geometry"))
        recs["owner"], recs["created_at"], recs["updated_at"] = r.id, fmt_ts(t), fmt_ts(t)
        recs["version"] = 1
        rows = recs[list(FIELDS)].to_dict("records")
        geoms = np.asarray(v.geometry.values, dtype=object)
        audit = [self._audit_entry(rec["proposal_id"], t, r, "create", None, feature(rec, g))
                 for rec, g in zip(rows, geoms, strict=True)]
        with self._write() as tx:
            taken = self._existing(tx, [rec["proposal_id"] for rec in rows])
            if taken:
                raise ConflictError(f"proposal_id {taken[0]} already exists", field="proposal_id")
            self._insert(tx, rows, shapely.to_wkb(geoms))
            self._append_audit(tx, audit)
        return self._frame(rows, geoms)

    def update(
        self, proposal_id: str, changes: Mapping[str, Any] | gpd.GeoDataFrame, *,
        role: Role | str, expected_version: int | None = None,
    ) -> gpd.GeoDataFrame:
        """Change editable fields and/or the geometry of a proposal; return it as stored.

        Fields not in ``changes`` keep their stored value, read in the same transaction as the
        write. ``expected_version``: the version the change was based on (PreconditionFailed
        when the stored one differs); None skips the check (library and CLI callers)."""
        r = self._role(role)
        ch = self._changes(changes, proposal_id)
        with self._write() as tx:
            cur, cur_geom = self._current(tx, proposal_id, lock=True)
            if not self.can_read(r, cur["comune_istat"], cur["status"]):
                raise NotFound(f"no proposal with id '{proposal_id}' visible to role '{r.id}'")
            self._check_write(r, cur["comune_istat"], f"proposal {proposal_id}")
            self._check_version(cur, expected_version, proposal_id)
            if cur["status"] == WITHDRAWN:
                raise ConflictError(f"proposal {proposal_id} is withdrawn and cannot change")
            if ch.get("status") == WITHDRAWN:
                raise InputError("status 'ritirata' is set by the withdraw action", field="status")
            merged = {c: cur[c] for c in EDITABLE} | {k: v for k, v in ch.items() if k != "geometry"}
            geom = ch.get("geometry", cur_geom)
            v = self._validate(gpd.GeoDataFrame([merged], geometry=[geom], crs=self.crs), creating=False)
            new = {c: v[c].iloc[0] for c in EDITABLE}
            new_geom = v.geometry.iloc[0]
            if new["comune_istat"] != cur["comune_istat"]:
                self._check_write(r, new["comune_istat"], f"proposal {proposal_id}")
            same = all(new[c] == cur[c] for c in EDITABLE) and shapely.to_wkb(new_geom) == shapely.to_wkb(cur_geom)
            if same:  # nothing changes, nothing to record
                return self._frame([cur], [cur_geom])
            self._check_transition(r, cur["status"], new["status"], proposal_id)
            t = now_utc()
            rec = dict(cur) | new | {"updated_at": fmt_ts(t), "version": int(cur["version"]) + 1}
            self._replace(tx, rec, shapely.to_wkb(new_geom))
            self._append_audit(tx, [self._audit_entry(
                proposal_id, t, r, "update", feature(cur, cur_geom), feature(rec, new_geom))])
        return self._frame([rec], [new_geom])

    def withdraw(self, proposal_id: str, *, role: Role | str, note: str | None = None,
                 expected_version: int | None = None) -> gpd.GeoDataFrame:
        """Set status 'ritirata'. The row is kept, and the audit trail records who and when."""
        r = self._role(role)
        if note is not None:
            check_properties(pd.DataFrame({"note": [note]}))
            lim = field_limits().get("note")
            if not isinstance(note, str) or (lim and len(note) > lim):
                raise InputError(f"the note must be text of at most {lim} characters",
                                 field="note")
        with self._write() as tx:
            cur, geom = self._current(tx, proposal_id, lock=True)
            if not self.can_read(r, cur["comune_istat"], cur["status"]):
                raise NotFound(f"no proposal with id '{proposal_id}' visible to role '{r.id}'")
            self._check_write(r, cur["comune_istat"], f"proposal {proposal_id}")
            self._check_version(cur, expected_version, proposal_id)
            if cur["status"] == WITHDRAWN:
                raise ConflictError(f"proposal {proposal_id} is already withdrawn")
            self._check_transition(r, cur["status"], WITHDRAWN, proposal_id)
            t = now_utc()
            rec = dict(cur) | {"status": WITHDRAWN, "updated_at": fmt_ts(t),
                               "version": int(cur["version"]) + 1}
            self._replace(tx, rec, shapely.to_wkb(geom))
            self._append_audit(tx, [self._audit_entry(
                proposal_id, t, r, "withdraw", feature(cur, geom), feature(rec, geom), note)])
        return self._frame([rec], [geom])

    def get(self, proposal_id: str, *, role: Role | str | None) -> gpd.GeoDataFrame:
        """One proposal, if the read rule lets ``role`` (None: the public) see it; else
        NotFound, as for an unknown id."""
        r = None if role is None else self._role(role)
        with self._read() as con:
            cur, geom = self._current(con, proposal_id, lock=False)
        self._check_read(r, cur, f"proposal with id '{proposal_id}'")
        return self._frame([cur], [geom])

    def list(
        self,
        *,
        role: Role | str | None,
        scenario: str | Iterable[str] | None = None,
        comune: str | Iterable[str] | None = None,
        owner: str | Iterable[str] | None = None,
        status: str | Iterable[str] | None = None,
        bbox: Bbox | None = None,
    ) -> gpd.GeoDataFrame:
        """Proposals the role may read (the read rule; ``role=None``: the public), filtered;
        ``bbox`` (minx, miny, maxx, maxy) in the store CRS keeps those whose geometry
        intersects the box. Ordered by creation."""
        r = None if role is None else self._role(role)
        statuses = _as_list(status)
        if r is None:  # the public: push the rule into the query
            statuses = [s for s in (statuses or STATUSES) if s in PUBLIC_STATUSES]
            if not statuses:
                return self._frame([], [])
        if bbox is not None:
            bbox = tuple(float(x) for x in bbox)  # type: ignore[assignment]
            if len(bbox) != 4 or not (bbox[0] <= bbox[2] and bbox[1] <= bbox[3]):
                raise InputError("bbox must be minx, miny, maxx, maxy with min <= max", field="bbox")
        filters = {
            "scenario": _as_list(scenario), "comune_istat": _as_list(comune),
            "owner": _as_list(owner), "status": statuses,
        }
        with self._read() as con:
            rows, wkbs = self._select(con, filters, bbox)
        out = self._frame(rows, shapely.from_wkb(np.asarray(wkbs, dtype=object)) if wkbs else [])
        if r is not None:
            out = self.visible(out, r)
        if bbox is not None and len(out):  # the index filters by envelope; keep true intersections
            out = out[out.intersects(shapely.box(*bbox))].reset_index(drop=True)
        return out

    def audit(self, proposal_id: str, *, role: Role | str) -> pd.DataFrame:
        """The audit trail of a proposal, oldest first: audit_id, proposal_id, at (UTC ISO),
        role, action (create|update|withdraw), note, before, after (GeoJSON Feature dicts).
        Only the roles that may write the proposal read its trail (it holds its drafts)."""
        r = self._role(role)
        with self._read() as con:
            cur, _ = self._current(con, proposal_id, lock=False)
            self._check_read(r, cur, f"proposal with id '{proposal_id}'")
            if not self.membership.can_write(r, cur["comune_istat"]):
                raise PermissionDenied(
                    f"role '{r.id}' may not read the audit trail of proposal {proposal_id} of "
                    f"comune {cur['comune_istat']}: " + self._scope_text(r))
            rows = self._select_audit(con, proposal_id)
        df = pd.DataFrame(rows, columns=list(AUDIT_FIELDS), dtype=object)  # None stays None
        df["audit_id"] = df["audit_id"].astype("int64")
        for c in ("before", "after"):
            df[c] = [json.loads(x) if isinstance(x, str) else x for x in df[c]]
        return df

    def close(self) -> None:  # noqa: B027 - backends without resources need nothing
        """Release connections."""

    def __enter__(self) -> BaseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers -----------------------------------------------------------------------------

    def _current(self, con: Any, proposal_id: str, *, lock: bool) -> tuple[dict[str, Any], shapely.Geometry]:
        got = self._fetch(con, str(proposal_id), lock=lock)
        if got is None:
            raise NotFound(f"no proposal with id '{proposal_id}'")
        rec, wkb = got
        rec["version"] = int(rec.get("version") or 1)
        return rec, shapely.from_wkb(wkb)

    @staticmethod
    def _audit_entry(
        pid: str, t: datetime, r: Role, action: str,
        before: dict | None, after: dict | None, note: str | None = None,
    ) -> dict[str, Any]:
        return {
            "proposal_id": pid, "at": t, "role": r.id, "action": action, "note": note,
            "before": None if before is None else json.dumps(before),
            "after": None if after is None else json.dumps(after),
        }

    def _frame(self, rows: list[dict[str, Any]], geoms: Any) -> gpd.GeoDataFrame:
        df = pd.DataFrame(rows, columns=list(FIELDS), dtype=object)  # missing values stay None
        df["version"] = pd.array([int(v) if v is not None else 1 for v in df["version"]],
                                 dtype="int64")
        return gpd.GeoDataFrame(df, geometry=gpd.GeoSeries(list(geoms), index=df.index, crs=self.crs))

    # --- backend primitives ------------------------------------------------------------------

    @abstractmethod
    def _write(self) -> contextlib.AbstractContextManager[Any]:
        """A write transaction that serialises with other writers; commits on success and
        rolls back on any exception."""

    @abstractmethod
    def _read(self) -> contextlib.AbstractContextManager[Any]:
        """A connection for a consistent read."""

    @abstractmethod
    def _fetch(self, con: Any, proposal_id: str, *, lock: bool) -> tuple[dict[str, Any], bytes] | None:
        """One row (FIELDS as strings, dates ISO) and its geometry as WKB, or None."""

    @abstractmethod
    def _existing(self, con: Any, ids: list[str]) -> list[str]:
        """Which of ``ids`` are already stored."""

    @abstractmethod
    def _insert(self, con: Any, rows: list[dict[str, Any]], wkbs: np.ndarray) -> None: ...

    @abstractmethod
    def _replace(self, con: Any, rec: dict[str, Any], wkb: bytes) -> None:
        """Overwrite the row with ``rec['proposal_id']``."""

    @abstractmethod
    def _append_audit(self, con: Any, entries: list[dict[str, Any]]) -> None: ...

    @abstractmethod
    def _select(
        self, con: Any, filters: dict[str, list[str] | None], bbox: Bbox | None
    ) -> tuple[list[dict[str, Any]], list[bytes]]:
        """Rows matching every non-None filter (value in list) and whose envelope meets bbox."""

    @abstractmethod
    def _select_audit(self, con: Any, proposal_id: str) -> list[dict[str, Any]]:
        """Audit rows of a proposal by audit_id, 'at' as ISO UTC string, before/after JSON."""
