"""The process's settings in one typed object, from ``PATTOGIS_*`` environment variables.

========================== ===================================================================
variable                   meaning (default)
========================== ===================================================================
PATTOGIS_LAYERS_DIR        built layer set folder (``layers_dir`` of ``config/settings.yaml``)
PATTOGIS_RAW               raw open-data kit (``raw_dir_default`` of settings.yaml)
PATTOGIS_CONFIG_DIR        folder whose YAML files override ``pattogis/config/`` (none)
PATTOGIS_CRS               metric working CRS (``crs`` of settings.yaml, EPSG:25832)
PATTOGIS_STORE             proposals GeoPackage (``data/proposals.gpkg``)
PATTOGIS_DATABASE_URL      ``postgresql://`` URL: the PostGIS proposals store (none)
PATTOGIS_API_KEYS          API keys file, hashes only (``data/api_keys.json``)
PATTOGIS_API_WARM          1: the API reads the layers and criteria at start (0)
PATTOGIS_DASK_SCHEDULER    address of a running dask scheduler (none: a local cluster)
PATTOGIS_DASK_WORKERS      local cluster worker processes (2)
PATTOGIS_DASK_THREADS      threads per worker (1)
PATTOGIS_DASK_MEMORY       memory limit per worker, dask syntax (4GiB)
PATTOGIS_DEFAULT_CALL      the fund call used when none is named (bando_2023)
========================== ===================================================================

Re-read whenever the ``PATTOGIS_*`` environment changes (parsed once per distinct environment:
a parse costs about 2 ms, and the API asks for the settings several times a request), so a test or
a service that changes the environment is seen at once. A bad value is an error naming the
variable.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pattogis.errors import InputError

PREFIX = "PATTOGIS_"


class Settings(BaseSettings):
    """Paths, store, dask, CRS and the default call (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True)

    layers_dir: Path | None = Field(None, description="built layer set folder")
    raw: Path | None = Field(None, description="raw open-data kit folder")
    config_dir: Path | None = Field(None, description="folder of YAML files overriding the package's")
    crs: str | None = Field(None, description="metric working CRS, e.g. EPSG:25832")
    store: str | None = Field(None, description="proposals GeoPackage path")
    database_url: str | None = Field(None, description="postgresql:// URL of the PostGIS store")
    api_keys: Path | None = Field(None, description="API keys file (hashes only)")
    api_warm: bool = Field(False, description="read layers and criteria when the API starts")
    dask_scheduler: str | None = Field(None, description="address of a running dask scheduler")
    dask_workers: int = Field(2, ge=1, description="local cluster worker processes")
    dask_threads: int = Field(1, ge=1, description="threads per dask worker")
    dask_memory: str = Field("4GiB", min_length=1, description="memory limit per dask worker")
    default_call: str = Field("bando_2023", min_length=1, description="fund call used by default")


#: the variables' names: a change of these is seen at once (pydantic also reads them in lower
#: case, but a change of a lower-case one after the first read is not)
_NAMES = tuple(PREFIX + f.upper() for f in Settings.model_fields)


def get_settings() -> Settings:
    """The settings from the environment now; a bad value is an :class:`InputError` naming the
    variable (the environment is the user's input)."""
    return _parse(tuple(os.environ.get(n) for n in _NAMES))


@lru_cache(maxsize=32)
def _parse(env: tuple[str | None, ...]) -> Settings:
    """The settings of one ``PATTOGIS_*`` environment (``env``, the variables' values, is the
    cache key only: pydantic reads os.environ itself, which holds these values when this runs)."""
    try:
        return Settings()
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        var = PREFIX + "_".join(str(p) for p in err["loc"]).upper()
        what = {"int_parsing": "is not an integer",
                "greater_than_equal": f"must be at least {(err.get('ctx') or {}).get('ge')}",
                "bool_parsing": "is not a boolean (use 1/0, true/false)"}.get(
                    err["type"], err["msg"])
        raise InputError(f"environment variable {var}={err.get('input')!r} {what}",
                         field=var) from None


__all__ = ["Settings", "get_settings"]
