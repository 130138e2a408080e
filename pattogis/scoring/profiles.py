"""Weight profiles: the typed schema of ``config/profiles/*.yaml`` and of profiles posted to the
API (:class:`ProfileSpec`, a pydantic model: its JSON Schema is the API's), and the validated,
normalised :class:`Profile` the scoring functions use.

Structure, types, ranges and allowed values are checked by pydantic; what depends on the
criteria registry (a known criterion, its unit, its default direction) is checked after it. Every
error is a :class:`~pattogis.errors.ConfigError` naming the source (file or "<posted profile>")
and the key (``criteria.fragility.weight``, ``exclusions[0].rule``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pattogis import config
from pattogis.errors import ConfigError
from pattogis.scoring.normalise import DIRECTIONS


def known_criteria() -> dict[str, tuple[str, str, str]]:
    """The data contract with ``pattogis.criteria``: name -> (unit, direction, Italian label).

    Read from the criteria registry, so a criterion added there (one decorated function) is known
    here too. Profiles may override the label; a unit that disagrees is a ConfigError (a km/m slip).
    """
    # Lazy: the criteria package pulls in the GIS stack (rasters, graphs), which scoring a
    # plain table does not need; registry imports nothing back from scoring.
    import pattogis.criteria  # noqa: F401  (registers every criterion)
    from pattogis.criteria.registry import REGISTRY

    return {n: (c.unit, c.direction, c.label_it) for n, c in REGISTRY.items()}


METHODS = ("wsum", "topsis")
MISSING_POLICIES = ("renormalise", "exclude", "worst")
_OPS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}
_RULE_RE = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|==|!=|<|>)\s*"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


# ---------------------------------------------------------------------------------------------
# The schema (pydantic): what a profile file or a posted profile may contain
# ---------------------------------------------------------------------------------------------


def _number(v: Any) -> Any:
    """A measurement: int or float, never a bool or a string (YAML 'yes' or "1" is a slip)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"must be a number, got {v!r}")
    return v


def _target(v: Any) -> Any:
    if v is None:
        return v
    if isinstance(v, int | float) and not isinstance(v, bool):
        return [v, v]
    if isinstance(v, list | tuple) and len(v) == 2:
        for x in v:
            _number(x)
        return list(v)
    raise ValueError(f"must be a number or [low, high], got {v!r}")


Number = Annotated[float, BeforeValidator(_number)]
Count = Annotated[int, BeforeValidator(_number), Field(strict=True)]


class CriterionSpec(BaseModel):
    """One criterion of a profile. Units are those of the criteria registry."""

    model_config = ConfigDict(extra="forbid")

    weight: Number = Field(
        ..., ge=0, allow_inf_nan=False,
        description="relative weight, >= 0, any scale (the profile's weights are normalised to 1)",
    )
    direction: Literal["max", "min", "target"] | None = Field(
        None, description="max | min (default: the criterion's own); 'target' or omitted for "
        "target normalisation",
    )
    normalise: Literal["minmax", "rank", "target"] = "minmax"
    # a list of two in the schema (OpenAPI 3.0 has no tuples); a single number is accepted too
    target: Annotated[
        Annotated[list[Number], Field(min_length=2, max_length=2)] | None,
        BeforeValidator(_target),
    ] = Field(None, description="target value or [low, high], in the criterion's unit "
              "(target only)")
    tolerance: Annotated[float, Field(gt=0), BeforeValidator(_number)] | None = Field(
        None, description="distance from the target at which the value reaches 0 (same "
        "unit; target only; default: the farthest reference site gets 0)",
    )
    label_it: Annotated[str, Field(min_length=1)] | None = None
    unit: str | None = Field(None, description="must agree with the criterion's unit if given")

    @field_validator("target")
    @classmethod
    def _ordered(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and v[0] > v[1]:
            raise ValueError(f"target range low {v[0]} is above high {v[1]}")
        return v


class ExclusionSpec(BaseModel):
    """A hard constraint ``"<criterion> <op> <number>"``: a site where it holds is excluded."""

    model_config = ConfigDict(extra="forbid")

    rule: str = Field(..., description="'<criterion> <op> <number>', op in < <= > >= == !=")
    reason_it: Annotated[str, Field(min_length=1)] = Field(..., description="Italian reason")
    if_missing: Literal["keep", "exclude"] = "keep"

    @field_validator("rule")
    @classmethod
    def _rule(cls, v: str) -> str:
        if _RULE_RE.match(v) is None:
            raise ValueError(
                f"must read '<criterion> <op> <number>' with op in {' '.join(_OPS)}, got {v!r}"
            )
        return v.strip()

    @field_validator("reason_it")
    @classmethod
    def _reason(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty Italian reason")
        return v.strip()


class MissingSpec(BaseModel):
    """How missing criterion values (NaN) are handled; never read as 0."""

    model_config = ConfigDict(extra="forbid")

    policy: Literal["renormalise", "exclude", "worst"] = "renormalise"
    max_missing_weight: Annotated[float, Field(ge=0, lt=1), BeforeValidator(_number)] | None = (
        Field(None, description="renormalise only: exclude a site missing more weight"))

    @model_validator(mode="after")
    def _only_renormalise(self) -> MissingSpec:
        if self.max_missing_weight is not None and self.policy != "renormalise":
            raise ValueError("max_missing_weight only applies to policy renormalise")
        return self


class MonteCarloSpec(BaseModel):
    """Robustness settings: Dirichlet perturbation of the weights around the profile."""

    model_config = ConfigDict(extra="forbid")

    concentration: Number = Field(100.0, gt=0, description="larger = weights perturbed less")
    draws: Count = Field(1000, ge=1)
    top_k: Count = Field(10, ge=1)
    seed: Annotated[int, Field(strict=True, ge=0)] | None = None

    @field_validator("concentration", mode="before")
    @classmethod
    def _inf(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() in ("inf", ".inf", "infinity"):
            return math.inf
        return v


class ProfileSpec(BaseModel):
    """A weight profile as written in ``config/profiles/*.yaml`` or posted to the API."""

    model_config = ConfigDict(extra="forbid")

    version: int | None = None
    name: Annotated[str, Field(min_length=1)]
    label_it: str | None = None
    description: str = ""
    method: Literal["wsum", "topsis"] = "wsum"
    criteria: dict[str, CriterionSpec] = Field(..., min_length=1)
    exclusions: list[ExclusionSpec] = Field(default_factory=list)
    missing: MissingSpec = Field(default_factory=MissingSpec)
    monte_carlo: MonteCarloSpec = Field(default_factory=MonteCarloSpec)

    @field_validator("exclusions", "missing", "monte_carlo", mode="before")
    @classmethod
    def _empty(cls, v: Any, info: Any) -> Any:
        if v is None:  # an empty YAML section
            return [] if info.field_name == "exclusions" else {}
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty string")
        return v.strip()


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _config_error(src: str, err: ValidationError) -> ConfigError:
    msgs = []
    for e in err.errors(include_url=False):
        # pydantic adds the tag of a union or validator member to loc: keep the user's keys only
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p in (
            "function-before", "function-after", "float", "int", "tuple"))))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] in ("literal_error", "greater_than_equal", "greater_than", "less_than",
                           "missing", "int_type", "too_short") or "got" not in msg:
            msg += f", got {e.get('input')!r}" if e["type"] != "missing" else ""
        msgs.append(f"key '{_loc(loc) or 'the profile'}': {msg}")
    return ConfigError(f"{src}: " + "; ".join(msgs))


# ---------------------------------------------------------------------------------------------
# The validated profile the scoring functions use
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Criterion:
    """One criterion of a profile. ``weight`` is normalised: the profile's weights sum to 1."""

    name: str
    weight: float
    direction: str  # 'max' | 'min' | 'target'
    normalise: str  # 'minmax' | 'rank' | 'target'
    label_it: str
    unit: str
    target: tuple[float, float] | None = None
    tolerance: float | None = None


@dataclass(frozen=True)
class Exclusion:
    """Hard constraint: a site where ``field op value`` holds is excluded with ``reason_it``.

    ``if_missing='exclude'`` also excludes sites where ``field`` is NaN (the rule cannot be
    checked), with the reason prefixed by "Dato mancante, non verificabile:".
    """

    rule: str
    field: str
    op: str
    value: float
    reason_it: str
    if_missing: str = "keep"


@dataclass(frozen=True)
class Profile:
    """A validated weight profile (see ``config/profiles/*.yaml`` for the annotated schema)."""

    name: str
    label_it: str
    method: str
    criteria: tuple[Criterion, ...]
    exclusions: tuple[Exclusion, ...] = ()
    missing_policy: str = "renormalise"
    max_missing_weight: float | None = None
    mc_concentration: float = 100.0
    mc_draws: int = 1000
    mc_top_k: int = 10
    mc_seed: int | None = None
    description: str = ""
    source: str = "<profile>"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.criteria]

    @property
    def weights(self) -> np.ndarray:
        return np.array([c.weight for c in self.criteria], dtype=float)

    def criterion(self, name: str) -> Criterion:
        for c in self.criteria:
            if c.name == name:
                return c
        raise ConfigError(f"{self.source}: profile '{self.name}' has no criterion '{name}'")

    def labels_it(self) -> dict[str, str]:
        return {c.name: c.label_it for c in self.criteria}

    def to_dict(self) -> dict[str, Any]:
        """The profile as a plain dict (JSON/YAML), weights normalised; valid input again."""
        crit: dict[str, Any] = {}
        for c in self.criteria:
            d: dict[str, Any] = {
                "weight": c.weight,
                "direction": c.direction,
                "normalise": c.normalise,
                "label_it": c.label_it,
                "unit": c.unit,
            }
            if c.target is not None:
                d["target"] = list(c.target)
            if c.tolerance is not None:
                d["tolerance"] = c.tolerance
            crit[c.name] = d
        missing: dict[str, Any] = {"policy": self.missing_policy}
        if self.max_missing_weight is not None:
            missing["max_missing_weight"] = self.max_missing_weight
        return {
            "name": self.name,
            "label_it": self.label_it,
            "description": self.description,
            "method": self.method,
            "criteria": crit,
            "exclusions": [
                {"rule": e.rule, "reason_it": e.reason_it, "if_missing": e.if_missing}
                for e in self.exclusions
            ],
            "missing": missing,
            "monte_carlo": {
                "concentration": self.mc_concentration,
                "draws": self.mc_draws,
                "top_k": self.mc_top_k,
                "seed": self.mc_seed,
            },
        }



def _criterion(src: str, name: str, spec: CriterionSpec, known: dict[str, tuple[str, str, str]]) -> Criterion:
    """The registry's part of the checks: a known criterion, its unit, its default direction."""
    key = f"criteria.{name}"
    if name not in known:
        raise ConfigError(
            f"{src}: unknown criterion '{name}' (key '{key}'); known: {', '.join(known)}"
        )
    unit, default_direction, label = known[name]
    target: tuple[float, float] | None = None
    tolerance: float | None = None
    if spec.normalise == "target":
        if spec.direction not in (None, "target"):
            raise ConfigError(
                f"{src}: key '{key}.direction' is {spec.direction!r} but target normalisation has"
                " no direction (omit it or write 'target')"
            )
        if spec.target is None:
            raise ConfigError(f"{src}: key '{key}.target' must be a number or [low, high], got None")
        direction = "target"
        target = (float(spec.target[0]), float(spec.target[1]))
        tolerance = None if spec.tolerance is None else float(spec.tolerance)
    else:
        direction = spec.direction or default_direction
        if direction not in DIRECTIONS:
            raise ConfigError(
                f"{src}: key '{key}.direction' must be 'max' or 'min', got {direction!r}"
                + (
                    " (this criterion is best within a range: use normalise: target with a target)"
                    if default_direction == "target" and spec.direction is None
                    else ""
                )
            )
        for k in ("target", "tolerance"):
            if getattr(spec, k) is not None:
                raise ConfigError(f"{src}: key '{key}.{k}' is only allowed with normalise: target")
    if spec.unit is not None and spec.unit != unit:
        raise ConfigError(
            f"{src}: key '{key}.unit' is {spec.unit!r} but criterion '{name}' is measured in {unit!r}"
        )
    return Criterion(name, float(spec.weight), direction, spec.normalise,
                     spec.label_it or label, unit, target, tolerance)


def _exclusion(src: str, i: int, spec: ExclusionSpec, known: dict[str, Any]) -> Exclusion:
    m = _RULE_RE.match(spec.rule)
    assert m is not None  # checked by ExclusionSpec
    field, op, value = m.group(1), m.group(2), float(m.group(3))
    if field not in known:
        raise ConfigError(
            f"{src}: key 'exclusions[{i}].rule' names unknown criterion '{field}';"
            f" known: {', '.join(known)}"
        )
    return Exclusion(spec.rule, field, op, value, spec.reason_it, spec.if_missing)


def from_spec(spec: ProfileSpec, source: str = "<posted profile>") -> Profile:
    """The validated :class:`Profile` of a :class:`ProfileSpec`, weights normalised to sum 1."""
    src = source
    known = known_criteria()
    parsed = [_criterion(src, str(k), v, known) for k, v in spec.criteria.items()]
    total = sum(c.weight for c in parsed)
    if not total > 0:
        raise ConfigError(
            f"{src}: key 'criteria': the weights add up to {total}; at least one must be > 0"
        )
    criteria = tuple(replace(c, weight=c.weight / total) for c in parsed)
    exclusions = tuple(_exclusion(src, i, e, known) for i, e in enumerate(spec.exclusions))
    if 2 * len(exclusions) + len(criteria) > 62:  # reasons are coded as bits of one int64
        raise ConfigError(
            f"{src}: too many criteria and exclusions (2 x exclusions + criteria <= 62)"
        )
    mc = spec.monte_carlo
    return Profile(
        name=spec.name,
        label_it=spec.label_it if spec.label_it is not None else spec.name,
        method=spec.method,
        criteria=criteria,
        exclusions=exclusions,
        missing_policy=spec.missing.policy,
        max_missing_weight=(None if spec.missing.max_missing_weight is None
                            else float(spec.missing.max_missing_weight)),
        mc_concentration=float(mc.concentration),
        mc_draws=mc.draws,
        mc_top_k=mc.top_k,
        mc_seed=mc.seed,
        description=spec.description,
        source=src,
    )


def validate_profile(raw: Mapping[str, Any], source: str | None = None) -> Profile:
    """Check a profile mapping (from YAML or posted by a client) and return a :class:`Profile`.

    Weights must be finite, >= 0, with a positive sum; they are normalised to sum to 1. Every
    error is a :class:`ConfigError` naming the source (file or "posted profile") and the key.
    """
    if source:
        src = source
    else:
        src = (str(raw.get("_source", "<posted profile>")) if isinstance(raw, Mapping)
               else "<posted profile>")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: a profile must be a mapping, got {type(raw).__name__}")
    body = {k: v for k, v in raw.items() if k != "_source"}
    try:
        spec = ProfileSpec.model_validate(body)
    except ValidationError as e:
        raise _config_error(src, e) from None
    return from_spec(spec, src)


def load_profile(profile: str | Path | Mapping[str, Any] | ProfileSpec | Profile) -> Profile:
    """A validated profile from a name (``config/profiles/<name>.yaml``), a YAML path, a mapping
    (e.g. JSON posted by an API client), a :class:`ProfileSpec` or an existing :class:`Profile`.

    Example::

        >>> load_profile("unione").method
        'wsum'
    """
    if isinstance(profile, Profile):
        return profile
    if isinstance(profile, ProfileSpec):
        return from_spec(profile)
    if isinstance(profile, Mapping):
        return validate_profile(profile, str(profile.get("_source", "<posted profile>")))
    raw = config.profile(str(profile))
    return validate_profile(raw, str(raw.get("_source", profile)))


def list_profiles() -> list[str]:
    """Names of the available profiles (package and ``$PATTOGIS_CONFIG_DIR``)."""
    return config.list_profiles()


def with_weights(
    profile: str | Mapping[str, Any] | Profile,
    weights: Mapping[str, float],
    *,
    source: str = "<posted weights>",
) -> Profile:
    """The profile with the weights posted by a client (e.g. from sliders in the web page).

    Criteria named in ``weights`` take the given (raw, any scale) weight; criteria of the profile
    not named get weight 0 (shown but not counted). Naming a criterion that is not in the profile
    is a ConfigError: post a whole profile to add criteria. Weights are re-validated and normalised.
    """
    p = load_profile(profile)
    d = p.to_dict()
    unknown = sorted(set(weights) - set(p.names))
    if unknown:
        raise ConfigError(
            f"{source}: criteria {', '.join(unknown)} are not in profile '{p.name}'"
            f" ({', '.join(p.names)}); post a whole profile to add criteria"
        )
    for name, c in d["criteria"].items():
        c["weight"] = weights.get(name, 0.0)
    return validate_profile(d, source)
