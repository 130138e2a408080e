"""The proposals store: GeoPackage by default, PostGIS when a database URL is configured.

``open_store()`` picks the backend: an explicit path or URL, else ``$PATTOGIS_DATABASE_URL``
(a ``postgresql://`` URL), else ``$PATTOGIS_STORE`` (a path or URL), else ``data/proposals.gpkg``.
Both backends offer the same interface (:class:`ProposalStore`), roles and audit trail.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pattogis.settings import get_settings
from pattogis.store.auth import (
    KeyRing,
    Membership,
    Role,
    Unauthenticated,
    authenticate,
    create_key,
    keys_path,
    list_keys,
    revoke_key,
)
from pattogis.store.base import (
    EDITABLE,
    FIELDS,
    METRO_ONLY,
    PUBLIC_STATUSES,
    STATUSES,
    WITHDRAWN,
    BaseStore,
    ConflictError,
    ProposalStore,
)

DEFAULT_STORE = "data/proposals.gpkg"
_PG_SCHEMES = ("postgresql://", "postgres://")


def store_target(url_or_path: str | Path | None = None) -> str:
    """The path or URL ``open_store`` would use."""
    return str(
        url_or_path
        or get_settings().database_url
        or get_settings().store
        or DEFAULT_STORE
    )


def open_store(
    url_or_path: str | Path | None = None,
    *,
    comuni: pd.DataFrame | None = None,
    crs: str | None = None,
) -> BaseStore:
    """Open (creating if needed) the proposals store at a GeoPackage path or a PostGIS URL.

    ``comuni`` (columns istat, unione, geometry, in the working CRS) gives the comuni and their
    Unioni; by default the built layer ``comuni`` is read on first need.
    """
    target = store_target(url_or_path)
    if target.startswith(_PG_SCHEMES):
        from pattogis.store.postgis import PostgisStore  # psycopg only when asked for

        return PostgisStore(target, comuni=comuni, crs=crs)
    from pattogis.store.gpkg import GpkgStore

    return GpkgStore(target, comuni=comuni, crs=crs)


__all__ = [
    "EDITABLE", "FIELDS", "METRO_ONLY", "PUBLIC_STATUSES", "STATUSES", "WITHDRAWN", "BaseStore", "ConflictError", "KeyRing",
    "Membership", "ProposalStore", "Role", "Unauthenticated", "authenticate", "create_key",
    "keys_path", "list_keys", "open_store", "revoke_key", "store_target",
]
