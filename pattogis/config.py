"""Configuration: the law's parameters, calls, weight profiles, TU and fragility settings.

All of it lives in versioned YAML files under ``pattogis/config/``. A user overrides any file by
placing one of the same relative name in ``$PATTOGIS_CONFIG_DIR``. Files are loaded and checked
here, in one place; the rest of the code asks this module. The files with a schema below
(:data:`SCHEMAS`: settings, law, TU, criteria, fragility; the weight profiles in
:mod:`pattogis.scoring.profiles`) are validated by a pydantic model when loaded, and a mistake
is a :class:`ConfigError` naming the file and the key (``law.yaml: key 'pools.locale.share'``).
Keys a schema does not name are kept (other parts of the code may read them).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pattogis.errors import ConfigError, NotFound
from pattogis.settings import get_settings

PACKAGE_CONFIG = Path(__file__).parent / "config"


def override_dir() -> Path | None:
    """``$PATTOGIS_CONFIG_DIR`` (:mod:`pattogis.settings`), or None."""
    return get_settings().config_dir


def config_path(name: str) -> Path:
    """Path of config file ``name`` (e.g. ``"law.yaml"`` or ``"calls/bando_2023.yaml"``)."""
    od = override_dir()
    if od is not None and (od / name).exists():
        return od / name
    p = PACKAGE_CONFIG / name
    if not p.exists():
        raise ConfigError(f"config file '{name}' not found in {PACKAGE_CONFIG}" + (f" or {od}" if od else ""))
    return p


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} does not exist") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level")
    data.setdefault("_source", str(path))
    return data


# --- schemas of the config files ---------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


Share = Field(ge=0, le=1)


class FileSettingsModel(_Model):
    """``settings.yaml``: defaults of paths and the working CRS."""

    crs: str = Field(min_length=1)
    layers_dir: str = Field(min_length=1)
    geopackage: str = Field(min_length=1, pattern=r"\.gpkg$")
    raw_dir_default: str
    province_istat: str = Field(pattern=r"^\d{3}$")
    province_bbox_lonlat: tuple[float, float, float, float]
    bbox_margin_km: float = Field(ge=0)
    raster_tile: int = Field(gt=0)
    api_max_body_mb: float = Field(gt=0)


class PoolModel(_Model):
    share: float = Share
    label: str


class ProposalTypeModel(_Model):
    label: str
    consumes: bool = False
    credits: bool = False


class LawModel(_Model):
    """``law.yaml``: LR 24/2017 parameters. Pool shares must add up to the quota share."""

    quota_share: float = Field(gt=0, le=1)
    horizon_year: int = Field(ge=2018)
    pools: dict[str, PoolModel] = Field(min_length=1)
    proposal_types: dict[str, ProposalTypeModel] = Field(min_length=1)
    exemptions: dict[str, _Model]
    ledger_statuses: list[str] = Field(min_length=1)
    monitoring_period_months: int = Field(gt=0)

    @model_validator(mode="after")
    def _pools_add_up(self) -> LawModel:
        total = sum(p.share for p in self.pools.values())
        if abs(total - self.quota_share) > 1e-9:
            raise ValueError(f"the shares of 'pools' add up to {total}, not quota_share "
                             f"{self.quota_share}")
        return self


class TuModel(_Model):
    """``tu.yaml``: closing of the built fabric (metres, hectares)."""

    buffer_out_m: float = Field(ge=0)
    buffer_in_m: float = Field(ge=0)
    min_cluster_ha: float = Field(ge=0)
    min_buildings: int = Field(ge=1)
    fill_holes_below_ha: float = Field(ge=0)
    simplify_m: float = Field(ge=0)
    bologna_istat: str = Field(pattern=r"^\d{6}$")

    @model_validator(mode="after")
    def _in_not_above_out(self) -> TuModel:
        if self.buffer_in_m > self.buffer_out_m:
            raise ValueError("buffer_in_m must not exceed buffer_out_m")
        return self


class NetworkModel(_Model):
    snap_threshold_m: float = Field(ge=0)
    detour_factor: float = Field(ge=1)


class BandModel(_Model):
    max_distance_m: float = Field(gt=0)
    weight: float = Field(ge=0)


class CriteriaModel(_Model):
    """``criteria.yaml``: parameters of the site criteria (metres, shares)."""

    origin: str
    network: NetworkModel
    bus_access: dict[str, list[BandModel]]
    rasters: _Model
    layer_coverage: dict[str, list[str]] = Field(default_factory=dict)


class IndicatorModel(_Model):
    weight: float = Field(ge=0)
    direction: str
    label: str


class FragilityModel(_Model):
    """``fragility.yaml``: the composite fragility index of the comuni."""

    indicators: dict[str, IndicatorModel] = Field(min_length=1)
    fragile_threshold: float = Share


SCHEMAS: dict[str, type[BaseModel]] = {
    "settings.yaml": FileSettingsModel,
    "law.yaml": LawModel,
    "tu.yaml": TuModel,
    "criteria.yaml": CriteriaModel,
    "fragility.yaml": FragilityModel,
}


def _key(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else ("." if out else "") + str(p)
    return out


def check(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """Validate ``data`` (the content of config file ``name``) against its schema, if it has
    one; return it unchanged. Errors name the file and the key."""
    model = SCHEMAS.get(name)
    if model is None:
        return data
    try:
        model.model_validate({k: v for k, v in data.items() if k != "_source"})
    except ValidationError as e:
        src = data.get("_source", name)
        msgs = []
        for err in e.errors(include_url=False):
            inp = err.get("input")
            got = "" if isinstance(inp, dict | list) else f" (got {inp!r})"
            msgs.append(f"key '{_key(err['loc']) or '(top level)'}': "
                        f"{err['msg'].removeprefix('Value error, ')}{got}")
        raise ConfigError(f"{src}: " + "; ".join(msgs)) from None
    return data


@cache
def _load_cached(name: str, mtime: float) -> dict[str, Any]:
    return check(name, load_yaml(config_path(name)))


def load(name: str) -> dict[str, Any]:
    """Load a config file by relative name; cached until the file changes."""
    p = config_path(name)
    return dict(_load_cached(name, p.stat().st_mtime))


def require(cfg: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """Fetch ``cfg[key]`` and check its type, naming the file in the error."""
    if key not in cfg:
        raise ConfigError(f"{cfg.get('_source', 'config')}: missing key '{key}'")
    v = cfg[key]
    if not isinstance(v, kind):
        raise ConfigError(
            f"{cfg.get('_source', 'config')}: key '{key}' must be {kind}, got {type(v).__name__} ({v!r})"
        )
    return v


def settings() -> dict[str, Any]:
    return load("settings.yaml")


def working_crs() -> str:
    return get_settings().crs or require(settings(), "crs", str)


def law() -> dict[str, Any]:
    """LR 24/2017 parameters, checked at load (:class:`LawModel`): pool shares must add up to
    the quota share."""
    return load("law.yaml")


def _named(folder: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for base in (PACKAGE_CONFIG / folder, (override_dir() / folder) if override_dir() else None):
        if base is not None and base.is_dir():
            for p in sorted(base.glob("*.yaml")):
                out[p.stem] = p
    return out


def list_profiles() -> list[str]:
    return sorted(_named("profiles"))


def profile(name: str) -> dict[str, Any]:
    """A weight profile (``config/profiles/<name>.yaml``) or a path to one."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_yaml(p)
    named = _named("profiles")
    if name not in named:
        raise ConfigError(f"unknown weight profile '{name}'; available: {', '.join(sorted(named))}")
    return load_yaml(named[name])


def list_calls() -> list[str]:
    return sorted(_named("calls"))


def call_id(call: str | None) -> str:
    """A fund call named by a request: an id among the configured calls, or the settings'
    ``default_call`` when None. Never read as a path: anything else is a NotFound (404) decided
    from the list of ids, without opening a file."""
    calls = list_calls()
    if call is None:
        call = get_settings().default_call
    if call not in calls:
        raise NotFound(f"unknown call '{str(call)[:80]}': the calls are {', '.join(calls)}")
    return call


def call(name: str) -> dict[str, Any]:
    """A fund call (``config/calls/<name>.yaml``) or a path to one."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_yaml(p)
    named = _named("calls")
    if name not in named:
        raise ConfigError(f"unknown call '{name}'; available: {', '.join(sorted(named))}")
    return load_yaml(named[name])
