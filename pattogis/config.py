"""Configuration: the law's parameters, calls, weight profiles, TU and fragility settings.

All of it lives in versioned YAML files under ``pattogis/config/``. A user overrides any file by
placing one of the same relative name in ``$PATTOGIS_CONFIG_DIR``. Files are loaded and checked
here, in one place; the rest of the code asks this module.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from pattogis.errors import ConfigError

PACKAGE_CONFIG = Path(__file__).parent / "config"


def override_dir() -> Path | None:
    d = os.environ.get("PATTOGIS_CONFIG_DIR")
    return Path(d) if d else None


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


@cache
def _load_cached(name: str, mtime: float) -> dict[str, Any]:
    return load_yaml(config_path(name))


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
    return os.environ.get("PATTOGIS_CRS") or require(settings(), "crs", str)


def law() -> dict[str, Any]:
    """LR 24/2017 parameters, checked: pool shares must add up to the quota share."""
    cfg = load("law.yaml")
    q = float(require(cfg, "quota_share", (int, float)))
    pools = require(cfg, "pools", dict)
    total = sum(float(p["share"]) for p in pools.values())
    if abs(total - q) > 1e-9:
        raise ConfigError(f"{cfg['_source']}: pool shares add up to {total}, not quota_share {q}")
    require(cfg, "proposal_types", dict)
    require(cfg, "exemptions", dict)
    return cfg


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


def call(name: str) -> dict[str, Any]:
    """A fund call (``config/calls/<name>.yaml``) or a path to one."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        return load_yaml(p)
    named = _named("calls")
    if name not in named:
        raise ConfigError(f"unknown call '{name}'; available: {', '.join(sorted(named))}")
    return load_yaml(named[name])
