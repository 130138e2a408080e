"""Roles and API keys of the proposals store.

A role is one comune (``comune:037006``), one Unione (``unione:Unione Reno Galliera``) or the
metropolitan office (``metro``). A comune writes and reads the proposals of its own comune, an
Unione those of its member comuni (membership from the ``comuni`` table: istat -> unione), metro
all of them.

API keys are stored only as sha256 hashes in a keys file (JSON, or YAML when the name ends in
``.yaml``/``.yml``) named by ``$PATTOGIS_API_KEYS``, default ``data/api_keys.json``. The plain key
is returned once by :func:`create_key` and never written anywhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pattogis.errors import ConfigError, InputError, Unauthenticated
from pattogis.io import atomic_write_text
from pattogis.settings import get_settings

KEYS_ENV = "PATTOGIS_API_KEYS"
DEFAULT_KEYS_PATH = "data/api_keys.json"
ROLE_KINDS = ("comune", "unione", "metro")
_ISTAT = re.compile(r"^\d{6}$")
_KEY_PREFIX = "ptg"


@dataclass(frozen=True)
class Role:
    """Who is writing: ``kind`` in {'comune', 'unione', 'metro'}; ``name`` is the ISTAT code of a
    comune, the name of an Unione as written in the ``comuni`` table, or '' for metro."""

    kind: str
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ROLE_KINDS:
            raise InputError(
                f"unknown role kind '{self.kind}'", field="role",
                hint="use 'comune:<istat>', 'unione:<name>' or 'metro'",
            )
        if self.kind == "comune" and not _ISTAT.match(self.name):
            raise InputError(
                f"role 'comune:{self.name}' needs a 6-digit ISTAT code", field="role",
                hint="e.g. 'comune:037006'",
            )
        if self.kind == "unione" and not self.name.strip():
            raise InputError("role 'unione:' needs the name of the Unione", field="role")
        if self.kind == "metro" and self.name:
            raise InputError("role 'metro' takes no name", field="role")

    @classmethod
    def parse(cls, text: str | Role) -> Role:
        """Parse ``'comune:037006'``, ``'unione:<name>'`` or ``'metro'``."""
        if isinstance(text, Role):
            return text
        kind, _, name = str(text).strip().partition(":")
        return cls(kind.strip(), name.strip())

    @property
    def id(self) -> str:
        return "metro" if self.kind == "metro" else f"{self.kind}:{self.name}"

    def __str__(self) -> str:
        return self.id


class Membership:
    """Comune ISTAT code -> name of its Unione (None for comuni outside any Unione)."""

    def __init__(self, unione_of: Mapping[str, str | None]) -> None:
        self.unione_of: dict[str, str | None] = {
            str(k): (None if v is None or (isinstance(v, float) and pd.isna(v)) or v == "" else str(v))
            for k, v in unione_of.items()
        }

    @classmethod
    def from_comuni(cls, comuni: pd.DataFrame) -> Membership:
        """From a comuni table with columns ``istat`` and ``unione`` (the layer ``comuni``)."""
        missing = [c for c in ("istat", "unione") if c not in comuni.columns]
        if missing:
            raise InputError(
                f"comuni table lacks column(s) {', '.join(missing)}", field=missing[0],
                hint="the membership of comuni in Unioni comes from the 'comuni' layer",
            )
        unione = comuni["unione"].astype(object).where(comuni["unione"].notna(), None)
        return cls(dict(zip(comuni["istat"].astype(str), unione, strict=True)))

    def known(self, istat: str) -> bool:
        return istat in self.unione_of

    def unioni(self) -> set[str]:
        return {u for u in self.unione_of.values() if u}

    def scope(self, role: Role) -> set[str] | None:
        """ISTAT codes a role may read and write; None means all (metro)."""
        if role.kind == "metro":
            return None
        if role.kind == "comune":
            return {role.name}
        return {c for c, u in self.unione_of.items() if u == role.name}

    def can_write(self, role: Role, istat: str) -> bool:
        scope = self.scope(role)
        return scope is None or istat in scope

    def check_role(self, role: Role) -> None:
        """Refuse roles naming a comune or an Unione that the comuni table does not know."""
        if role.kind == "comune" and role.name not in self.unione_of:
            raise InputError(f"unknown comune '{role.name}' in role '{role.id}'", field="role")
        if role.kind == "unione" and role.name not in self.unioni():
            raise InputError(
                f"unknown Unione '{role.name}' in role '{role.id}'", field="role",
                hint="known: " + "; ".join(sorted(self.unioni())),
            )


# --- keys file -------------------------------------------------------------------------------


def keys_path(path: str | Path | None = None) -> Path:
    """The keys file: ``path``, else ``$PATTOGIS_API_KEYS``, else ``data/api_keys.json``."""
    return Path(path or get_settings().api_keys or DEFAULT_KEYS_PATH)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _is_yaml(p: Path) -> bool:
    return p.suffix.lower() in (".yaml", ".yml")


def _load(p: Path) -> dict[str, Any]:
    if not p.exists():
        return {"version": 1, "keys": []}
    text = p.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) if _is_yaml(p) else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"API keys file {p} is not valid {'YAML' if _is_yaml(p) else 'JSON'}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ConfigError(f"API keys file {p} must hold a mapping with a list under 'keys'")
    return data


def _dump(p: Path, data: dict[str, Any]) -> None:
    text = yaml.safe_dump(data, sort_keys=False) if _is_yaml(p) else json.dumps(data, indent=2) + "\n"
    atomic_write_text(p, text)
    os.chmod(p, 0o600)  # hashes only, but no reason to let others read them


@contextlib.contextmanager
def _locked(p: Path) -> Iterator[None]:
    """Serialise read-modify-write of the keys file across threads and processes."""
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p.with_name(p.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def create_key(
    role: str | Role,
    *,
    path: str | Path | None = None,
    label: str = "",
    membership: Membership | None = None,
) -> str:
    """Create an API key for ``role``; return the plain key (shown once, stored hashed).

    When ``membership`` is given the role's comune or Unione must exist in it.
    """
    r = Role.parse(role)
    if membership is not None:
        membership.check_role(r)
    key_id = secrets.token_hex(4)
    key = f"{_KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    p = keys_path(path)
    with _locked(p):
        data = _load(p)
        data["keys"].append({
            "key_id": key_id,
            "sha256": _hash(key),
            "role": r.id,
            "label": label,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "revoked": False,
        })
        _dump(p, data)
    return key


def revoke_key(key_id: str, *, path: str | Path | None = None) -> None:
    """Mark the key with ``key_id`` revoked (kept in the file for the record)."""
    p = keys_path(path)
    with _locked(p):
        data = _load(p)
        hits = [k for k in data["keys"] if k.get("key_id") == key_id]
        if not hits:
            raise InputError(f"no API key with id '{key_id}' in {p}", field="key_id")
        for k in hits:
            k["revoked"] = True
        _dump(p, data)


def list_keys(*, path: str | Path | None = None) -> pd.DataFrame:
    """Keys in the file without their hashes: key_id, role, label, created_at, revoked."""
    rows = _load(keys_path(path))["keys"]
    cols = ["key_id", "role", "label", "created_at", "revoked"]
    return pd.DataFrame([{c: k.get(c) for c in cols} for k in rows], columns=cols)


class KeyRing:
    """Resolves API keys to roles; re-reads the keys file when it changes."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._path = path
        self._stamp: tuple[str, int, int] | None = None
        self._roles: dict[str, Role] = {}

    @property
    def path(self) -> Path:
        return keys_path(self._path)

    def _refresh(self) -> None:
        p = self.path
        try:
            st = p.stat()
            stamp = (str(p), st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (str(p), 0, 0)
        if stamp != self._stamp:
            roles = {
                k["sha256"]: Role.parse(k["role"])
                for k in _load(p)["keys"] if not k.get("revoked")
            }
            self._roles, self._stamp = roles, stamp

    def role_for(self, key: str | None) -> Role:
        """The role of ``key``; raises :class:`Unauthenticated` when missing, unknown or revoked."""
        if not key:
            raise Unauthenticated("missing API key: send it in the X-API-Key header")
        self._refresh()
        role = self._roles.get(_hash(key))
        if role is None:
            raise Unauthenticated("unknown or revoked API key")
        return role


def authenticate(key: str | None, *, path: str | Path | None = None) -> Role:
    """One-off lookup of ``key`` in the keys file (see :class:`KeyRing` for a cached one)."""
    return KeyRing(path).role_for(key)
