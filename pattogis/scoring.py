"""Transparent multi-criteria scoring of regeneration candidate sites.

Input: one row per candidate site with the raw criterion values produced by
``pattogis.criteria`` (column names and units: :func:`known_criteria`; missing data is NaN).
Output: one row per site with the score, the rank, every criterion's normalised value and
contribution, the exclusions (with an Italian reason) and the list of criteria that were missing.

The pieces, each a plain function usable by the CLI and the API:

* normalisation of one criterion: :func:`minmax`, :func:`rank_normalise`, :func:`target_normalise`
  (and the dispatcher :func:`normalise`); NaN stays NaN;
* weight profiles (``config/profiles/*.yaml`` or a dict posted by a client), validated by
  :func:`load_profile` / :func:`validate_profile`, re-weighted by :func:`with_weights`;
* :func:`score`: weighted sum (``wsum``) or TOPSIS, with per-criterion contributions;
* :func:`monte_carlo`: Dirichlet perturbation of the weights, rank intervals and P(top k),
  chunked so memory does not grow with the number of draws beyond a small order-statistic buffer;
* :func:`compare`: any set of sites side by side, tidy or wide, with Italian labels.

Conventions (stated once, relied on everywhere):

* Normalised values lie in [0, 1], 1 = best. Bounds (min, max, ranks, TOPSIS ideals) are taken
  over the **eligible** sites only (not excluded), so an excluded site never moves the others.
* A criterion whose eligible values are all equal does not discriminate: min-max gives 1 to every
  site (the pymcdm convention), mid-rank normalisation gives 0.5.
* Ranks: 1 = best, computed on the score rounded to 12 decimals so that float noise does not split
  ties; ties share the lowest rank (competition ranking 1, 2, 2, 4). Excluded sites have no rank.
* Weighted sum: ``contrib_j = w_j * norm_j / W_site`` where ``W_site`` is the weight of the
  criteria present for that site (``renormalise`` policy) or 1; the score *is* the sum of the
  contributions.
* TOPSIS (Hwang & Yoon; the same arithmetic as ``pymcdm.methods.TOPSIS`` with min-max
  normalisation): ideal and anti-ideal per criterion are the max / min normalised value over the
  eligible sites; ``dpos_j = (w_j (norm_j - ideal_j))**2`` and ``dneg_j = (w_j (norm_j -
  anti_j))**2`` are the per-criterion squared distance terms, ``d_pos = sqrt(sum dpos_j)``,
  ``d_neg = sqrt(sum dneg_j)`` and ``score = d_neg / (d_neg + d_pos)``. The *documented
  decomposition* reported as ``contrib_j`` is ``score * dneg_j / d_neg**2``: the score shared out in
  proportion to each criterion's part of the squared distance from the anti-ideal. It sums exactly
  to the score; ``dpos_j``/``dneg_j`` are reported too. When a site has ``d_pos = d_neg = 0`` (all
  its criteria constant over the eligible sites) the score is 1 and is shared by weight (pymcdm
  would return NaN there). ``w_j`` is the site's effective weight, as for the weighted sum; with
  missing data the rescaling multiplies ``d_pos`` and ``d_neg`` alike, so the closeness is that of
  the present criteria with the profile's weights.
* Missing data (NaN) is never read as 0: policy ``renormalise`` (score on the criteria present,
  optionally excluding a site when the missing weight exceeds ``max_missing_weight``),
  ``exclude`` (excluded, reason "Dati mancanti: ..."), or ``worst`` (explicitly counted as the worst
  normalised value, 0). In every case ``missing`` lists the weighted criteria that were NaN.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pattogis import config
from pattogis.errors import ConfigError, InputError, NotFound
from pattogis.io import atomic_path


def known_criteria() -> dict[str, tuple[str, str, str]]:
    """The data contract with ``pattogis.criteria``: name -> (unit, direction, Italian label).

    Read from the criteria registry, so a criterion added there (one decorated function) is known
    here too. Profiles may override the label; a unit that disagrees is a ConfigError (a km/m slip).
    Imported lazily: the criteria package pulls in the GIS stack.
    """
    import pattogis.criteria  # noqa: F401  (registers every criterion)
    from pattogis.criteria.registry import REGISTRY

    return {n: (c.unit, c.direction, c.label_it) for n, c in REGISTRY.items()}


METHODS = ("wsum", "topsis")
NORMALISATIONS = ("minmax", "rank", "target")
DIRECTIONS = ("max", "min")
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
_TIE_DECIMALS = 12  # scores equal to 12 decimals are ties (float noise must not split them)


# ---------------------------------------------------------------------------------------------
# Normalisation of one criterion
# ---------------------------------------------------------------------------------------------


def _as_float(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=float)


def _reference(x: np.ndarray, among: np.ndarray | None) -> np.ndarray:
    """Boolean mask of the entries that define bounds: finite and inside ``among``."""
    ok = ~np.isnan(x)
    return ok if among is None else ok & np.asarray(among, dtype=bool)


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")


def minmax(x: Any, direction: str = "max", *, among: Any = None) -> np.ndarray:
    """Min-max normalisation to [0, 1], 1 = best.

    ``max``: (x - min) / (max - min); ``min``: (max - x) / (max - min). Min and max are taken over
    the non-NaN entries selected by ``among`` (all by default); entries outside ``among`` and NaN
    entries come back NaN. A constant column gives 1 everywhere (pymcdm's convention).
    """
    _check_direction(direction)
    x = _as_float(x)
    ref = _reference(x, among)
    if not ref.any():
        return np.full(x.shape, np.nan)
    # masked reductions: no copies of the selected entries (hot path at 1M sites)
    lo = float(np.min(x, where=ref, initial=np.inf))
    hi = float(np.max(x, where=ref, initial=-np.inf))
    if lo == hi:
        out = np.ones(x.shape)
    elif direction == "max":
        out = (x - lo) / (hi - lo)
    else:
        out = (hi - x) / (hi - lo)
    out[~ref] = np.nan
    return out


def rank_normalise(x: Any, direction: str = "max", *, among: Any = None) -> np.ndarray:
    """Rank normalisation to [0, 1], 1 = best: (r - 1) / (n - 1) with r the mid-rank.

    Ties share their average rank, so a constant column gives 0.5 and a single site gives 1.
    Only the order matters, not the distances: robust to outliers. NaN stays NaN.
    """
    _check_direction(direction)
    x = _as_float(x)
    ref = _reference(x, among)
    out = np.full(x.shape, np.nan)
    n = int(ref.sum())
    if n == 0:
        return out
    if n == 1:
        out[ref] = 1.0
        return out
    vals = x[ref] if direction == "max" else -x[ref]
    r = pd.Series(vals).rank(method="average").to_numpy()
    out[ref] = (r - 1.0) / (n - 1.0)
    return out


def target_normalise(
    x: Any,
    target: float | Sequence[float],
    tolerance: float | None = None,
    *,
    among: Any = None,
) -> np.ndarray:
    """Target normalisation to [0, 1]: 1 inside the target value or range, falling linearly.

    ``d`` is the distance of ``x`` from ``target`` (a value, or ``[low, high]``: 0 inside). With
    ``tolerance`` the value is ``max(0, 1 - d / tolerance)`` (0 beyond the tolerance, same unit as
    ``x``); without it ``1 - d / max(d)`` over the reference sites (the farthest gets 0; if all are
    on target all get 1). NaN stays NaN.
    """
    lo, hi = _target_range(target)
    x = _as_float(x)
    ref = _reference(x, among)
    if not ref.any():
        return np.full(x.shape, np.nan)
    with np.errstate(invalid="ignore"):
        d = np.maximum(np.maximum(lo - x, x - hi), 0.0)
    if tolerance is not None:
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
        out = np.clip(1.0 - d / tolerance, 0.0, 1.0)
    else:
        dmax = float(np.max(d, where=ref, initial=0.0))
        out = np.ones(x.shape) if dmax == 0.0 else 1.0 - d / dmax
    out[~ref] = np.nan
    return out


def _target_range(target: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(target, int | float) and not isinstance(target, bool):
        return float(target), float(target)
    lo, hi = (float(v) for v in target)  # type: ignore[union-attr]
    if lo > hi:
        raise ValueError(f"target range low {lo} is above high {hi}")
    return lo, hi


def normalise(
    x: Any,
    method: str = "minmax",
    direction: str = "max",
    *,
    target: float | Sequence[float] | None = None,
    tolerance: float | None = None,
    among: Any = None,
) -> np.ndarray:
    """Normalise one criterion with ``method`` in {minmax, rank, target}; see the functions."""
    if method == "minmax":
        return minmax(x, direction, among=among)
    if method == "rank":
        return rank_normalise(x, direction, among=among)
    if method == "target":
        if target is None:
            raise ValueError("target normalisation needs a target value or range")
        return target_normalise(x, target, tolerance, among=among)
    raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {method!r}")


# ---------------------------------------------------------------------------------------------
# Weight profiles
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


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)


def _check_keys(src: str, where: str, d: Mapping[str, Any], allowed: Iterable[str]) -> None:
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise ConfigError(
            f"{src}: unknown key{'s' if len(extra) > 1 else ''} {', '.join(repr(k) for k in extra)}"
            f" in {where}; allowed: {', '.join(sorted(allowed))}"
        )


def _criterion(src: str, name: str, raw: Any) -> tuple[Criterion, float]:
    key = f"criteria.{name}"
    known = known_criteria()
    if name not in known:
        raise ConfigError(
            f"{src}: unknown criterion '{name}' (key '{key}'); known: {', '.join(known)}"
        )
    unit, default_direction, label = known[name]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: key '{key}' must be a mapping with at least 'weight'")
    _check_keys(
        src,
        key,
        raw,
        ("weight", "direction", "normalise", "target", "tolerance", "label_it", "unit"),
    )
    w = raw.get("weight")
    if not _is_number(w) or not math.isfinite(w) or w < 0:
        raise ConfigError(f"{src}: key '{key}.weight' must be a finite number >= 0, got {w!r}")
    norm = raw.get("normalise", "minmax")
    if norm not in NORMALISATIONS:
        raise ConfigError(
            f"{src}: key '{key}.normalise' must be one of {', '.join(NORMALISATIONS)}, got {norm!r}"
        )
    target: tuple[float, float] | None = None
    tolerance: float | None = None
    if norm == "target":
        direction = raw.get("direction", "target")
        if direction != "target":
            raise ConfigError(
                f"{src}: key '{key}.direction' is {direction!r} but target normalisation has no"
                " direction (omit it or write 'target')"
            )
        t = raw.get("target")
        ok = _is_number(t) or (
            isinstance(t, list | tuple) and len(t) == 2 and all(_is_number(v) for v in t)
        )
        if not ok:
            raise ConfigError(
                f"{src}: key '{key}.target' must be a number or [low, high], got {t!r}"
            )
        try:
            target = _target_range(t)
        except ValueError as e:
            raise ConfigError(f"{src}: key '{key}.target': {e}") from e
        if "tolerance" in raw:
            tol = raw["tolerance"]
            if not _is_number(tol) or not tol > 0:
                raise ConfigError(f"{src}: key '{key}.tolerance' must be a number > 0, got {tol!r}")
            tolerance = float(tol)
    else:
        # default: the criterion's own direction (registry), unless it is a target criterion
        direction = raw.get("direction", default_direction)
        if direction not in DIRECTIONS:
            raise ConfigError(
                f"{src}: key '{key}.direction' must be 'max' or 'min', got {direction!r}"
                + (
                    " (this criterion is best within a range: use normalise: target with a target)"
                    if default_direction == "target" and "direction" not in raw
                    else ""
                )
            )
        for k in ("target", "tolerance"):
            if k in raw:
                raise ConfigError(f"{src}: key '{key}.{k}' is only allowed with normalise: target")
    if "unit" in raw and str(raw["unit"]) != unit:
        raise ConfigError(
            f"{src}: key '{key}.unit' is {raw['unit']!r} but criterion '{name}' is measured in {unit!r}"
        )
    label_it = raw.get("label_it", label)
    if not isinstance(label_it, str) or not label_it.strip():
        raise ConfigError(f"{src}: key '{key}.label_it' must be a non-empty string")
    c = Criterion(name, float(w), direction, norm, label_it, unit, target, tolerance)
    return c, float(w)


def _exclusion(src: str, i: int, raw: Any) -> Exclusion:
    key = f"exclusions[{i}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: key '{key}' must be a mapping with 'rule' and 'reason_it'")
    _check_keys(src, key, raw, ("rule", "reason_it", "if_missing"))
    rule = raw.get("rule")
    m = _RULE_RE.match(rule) if isinstance(rule, str) else None
    if m is None:
        raise ConfigError(
            f"{src}: key '{key}.rule' must read '<criterion> <op> <number>' with op in"
            f" {' '.join(_OPS)}, got {rule!r}"
        )
    field, op, value = m.group(1), m.group(2), float(m.group(3))
    known = known_criteria()
    if field not in known:
        raise ConfigError(
            f"{src}: key '{key}.rule' names unknown criterion '{field}'; known: {', '.join(known)}"
        )
    reason = raw.get("reason_it")
    if not isinstance(reason, str) or not reason.strip():
        raise ConfigError(f"{src}: key '{key}.reason_it' must be a non-empty Italian reason")
    if_missing = raw.get("if_missing", "keep")
    if if_missing not in ("keep", "exclude"):
        raise ConfigError(
            f"{src}: key '{key}.if_missing' must be 'keep' or 'exclude', got {if_missing!r}"
        )
    return Exclusion(rule.strip(), field, op, value, reason.strip(), if_missing)


def validate_profile(raw: Mapping[str, Any], source: str | None = None) -> Profile:
    """Check a profile mapping (from YAML or posted by a client) and return a :class:`Profile`.

    Weights must be finite, >= 0, with a positive sum; they are normalised to sum to 1. Every
    error is a :class:`ConfigError` naming the source (file or "posted profile") and the key.
    """
    if source:
        src = source
    else:
        src = (
            str(raw.get("_source", "<posted profile>"))
            if isinstance(raw, Mapping)
            else "<posted profile>"
        )
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{src}: a profile must be a mapping, got {type(raw).__name__}")
    _check_keys(
        src,
        "the profile",
        raw,
        (
            "version",
            "name",
            "label_it",
            "description",
            "method",
            "criteria",
            "exclusions",
            "missing",
            "monte_carlo",
            "_source",
        ),
    )
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{src}: key 'name' must be a non-empty string")
    label_it = raw.get("label_it", name)
    if not isinstance(label_it, str):
        raise ConfigError(f"{src}: key 'label_it' must be a string")
    method = raw.get("method", "wsum")
    if method not in METHODS:
        raise ConfigError(
            f"{src}: key 'method' must be one of {', '.join(METHODS)}, got {method!r}"
        )
    crit_raw = raw.get("criteria")
    if not isinstance(crit_raw, Mapping) or not crit_raw:
        raise ConfigError(
            f"{src}: key 'criteria' must be a non-empty mapping of criterion -> settings"
        )
    parsed = [_criterion(src, str(k), v) for k, v in crit_raw.items()]
    total = sum(w for _, w in parsed)
    if not total > 0:
        raise ConfigError(
            f"{src}: key 'criteria': the weights add up to {total}; at least one must be > 0"
        )
    criteria = tuple(replace(c, weight=w / total) for c, w in parsed)

    excl_raw = raw.get("exclusions") or []
    if not isinstance(excl_raw, list):
        raise ConfigError(f"{src}: key 'exclusions' must be a list")
    exclusions = tuple(_exclusion(src, i, e) for i, e in enumerate(excl_raw))
    if 2 * len(exclusions) + len(criteria) > 62:  # reasons are coded as bits of one int64
        raise ConfigError(
            f"{src}: too many criteria and exclusions (2 x exclusions + criteria <= 62)"
        )

    miss = raw.get("missing") or {}
    if not isinstance(miss, Mapping):
        raise ConfigError(f"{src}: key 'missing' must be a mapping with 'policy'")
    _check_keys(src, "missing", miss, ("policy", "max_missing_weight"))
    policy = miss.get("policy", "renormalise")
    if policy not in MISSING_POLICIES:
        raise ConfigError(
            f"{src}: key 'missing.policy' must be one of {', '.join(MISSING_POLICIES)}, got {policy!r}"
        )
    mmw = miss.get("max_missing_weight")
    if mmw is not None:
        if policy != "renormalise":
            raise ConfigError(
                f"{src}: key 'missing.max_missing_weight' only applies to policy renormalise"
            )
        if not _is_number(mmw) or not 0 <= mmw < 1:
            raise ConfigError(
                f"{src}: key 'missing.max_missing_weight' must be in [0, 1), got {mmw!r}"
            )
        mmw = float(mmw)

    mc = raw.get("monte_carlo") or {}
    if not isinstance(mc, Mapping):
        raise ConfigError(f"{src}: key 'monte_carlo' must be a mapping")
    _check_keys(src, "monte_carlo", mc, ("concentration", "draws", "top_k", "seed"))
    conc = mc.get("concentration", 100.0)
    if isinstance(conc, str) and conc.strip().lower() in ("inf", ".inf", "infinity"):
        conc = math.inf
    if not _is_number(conc) or not conc > 0:
        raise ConfigError(
            f"{src}: key 'monte_carlo.concentration' must be a number > 0, got {conc!r}"
        )
    draws = mc.get("draws", 1000)
    top_k = mc.get("top_k", 10)
    seed = mc.get("seed")
    for k, v in (("draws", draws), ("top_k", top_k)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{src}: key 'monte_carlo.{k}' must be an integer >= 1, got {v!r}")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise ConfigError(
            f"{src}: key 'monte_carlo.seed' must be an integer >= 0 or null, got {seed!r}"
        )
    desc = raw.get("description", "")
    return Profile(
        name=name.strip(),
        label_it=label_it,
        method=method,
        criteria=criteria,
        exclusions=exclusions,
        missing_policy=policy,
        max_missing_weight=mmw,
        mc_concentration=float(conc),
        mc_draws=draws,
        mc_top_k=top_k,
        mc_seed=seed,
        description=desc if isinstance(desc, str) else str(desc),
        source=src,
    )


def load_profile(profile: str | Path | Mapping[str, Any] | Profile) -> Profile:
    """A validated profile from a name (``config/profiles/<name>.yaml``), a YAML path, a mapping
    (e.g. JSON posted by an API client) or an existing :class:`Profile`."""
    if isinstance(profile, Profile):
        return profile
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


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """Arrays are criteria-major, shape (k, n): each criterion is one contiguous row."""

    profile: Profile
    norm: np.ndarray  # (k, n) normalised, NaN where missing or excluded
    present: np.ndarray  # (k, n) bool: value usable for the score (eligible and not NaN)
    missing: pd.Categorical  # (n,) comma string of missing weighted criteria
    missing_weight: np.ndarray  # (n,) share of profile weight missing
    excluded: np.ndarray  # (n,) bool
    reason: pd.Categorical  # (n,) Italian reasons joined by "; ", "" if eligible


def _numeric_columns(data: pd.DataFrame, names: Iterable[str], src: str) -> dict[str, np.ndarray]:
    names = list(dict.fromkeys(names))
    absent = [c for c in names if c not in data.columns]
    if absent:
        raise InputError(
            f"criteria table lacks column{'s' if len(absent) > 1 else ''} {', '.join(absent)}"
            f" needed by {src}",
            field=absent[0],
            hint=f"columns present: {', '.join(map(str, data.columns))}",
        )
    out: dict[str, np.ndarray] = {}
    for c in names:
        s = data[c]
        if isinstance(s.dtype, np.dtype) and s.dtype.kind == "f":
            arr = s.to_numpy(dtype=float)  # fast path: already float, NaN = missing
            bad = np.isinf(arr)
        else:
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna().to_numpy() & s.notna().to_numpy()
            if s.dtype == bool:
                bad[:] = True  # a boolean is not a measurement
            arr = num.to_numpy(dtype=float, na_value=np.nan)
            bad |= np.isinf(arr)
        if bad.any():
            rows = np.flatnonzero(bad).tolist()
            raise InputError(
                f"criterion '{c}' must be a finite number or empty (NaN for missing)",
                rows=rows,
                field=c,
                hint=f"rows are 0-based positions; first bad value {s.iloc[rows[0]]!r}"
                f" at site {data.index[rows[0]]!r}",
            )
        out[c] = arr
    return out


def _pattern_strings(bits: np.ndarray, render: Any) -> pd.Categorical:
    """Per-row bit patterns -> categorical of strings, ``render(pattern)`` once per pattern."""
    inv, uniq = pd.factorize(bits, sort=True)  # hashing: O(n), few distinct patterns
    labels = [render(int(u)) for u in uniq]
    cats, codes = np.unique(np.array(labels, dtype=object), return_inverse=True)
    return pd.Categorical.from_codes(codes.reshape(-1)[inv], categories=cats.tolist())


def _prepare(data: pd.DataFrame, p: Profile, norm_out: np.ndarray | None = None) -> _Prepared:
    """Checks, exclusions, missing data and normalisation; ``norm_out`` (k, n) receives the
    normalised values when given (score() hands a slice of its output block)."""
    k = len(p.criteria)
    n = len(data)
    cols = _numeric_columns(data, p.names + [e.field for e in p.exclusions], p.source)
    raw = np.stack([cols[c] for c in p.names]) if k else np.empty((0, n))
    w = p.weights

    # Hard exclusions, one bit per rule (and one more per rule for "cannot be checked").
    nbits = 2 * len(p.exclusions)
    excl_bits = np.zeros(n, dtype=np.int64)
    for i, e in enumerate(p.exclusions):
        v = cols[e.field]
        with np.errstate(invalid="ignore"):
            hit = _OPS[e.op](v, e.value) & ~np.isnan(v)
        excl_bits |= hit.astype(np.int64) << (2 * i)
        if e.if_missing == "exclude":
            excl_bits |= np.isnan(v).astype(np.int64) << (2 * i + 1)

    # Missing weighted criteria, one bit per criterion (weight-0 criteria cannot change a score).
    miss = np.isnan(raw) & (w > 0)[:, None]
    miss_bits = np.zeros(n, dtype=np.int64)
    for j in range(k):
        miss_bits |= miss[j].astype(np.int64) << j
    missing_weight = w @ miss

    def names_of(bits: int) -> list[int]:
        return [j for j in range(k) if bits >> j & 1]

    missing_str = _pattern_strings(miss_bits, lambda b: ",".join(p.names[j] for j in names_of(b)))

    # Missing-data exclusions depend only on the pattern of missing criteria.
    def miss_excluded(b: int) -> str:
        if b == 0:
            return ""
        labels = ", ".join(p.criteria[j].label_it for j in names_of(b))
        share = float(sum(w[j] for j in names_of(b)))
        if share >= 1.0 - 1e-12:
            return f"Nessun criterio disponibile per il calcolo del punteggio ({labels})"
        if p.missing_policy == "exclude":
            return f"Dati mancanti: {labels}"
        if p.max_missing_weight is not None and share > p.max_missing_weight:
            return (
                f"Dati mancanti per il {share:.0%} del peso (limite {p.max_missing_weight:.0%}):"
                f" {labels}"
            )
        return ""

    def render(code: int) -> str:
        parts = []
        for i, e in enumerate(p.exclusions):
            if code >> (2 * i) & 1:
                parts.append(e.reason_it)
            if code >> (2 * i + 1) & 1:
                parts.append(f"Dato mancante, non verificabile: {e.reason_it}")
        m = miss_excluded(code >> nbits)
        if m:
            parts.append(m)
        return "; ".join(parts)

    # One combined code per row -> one reason string per distinct combination.
    reason = _pattern_strings(excl_bits | (miss_bits << nbits), render)
    excluded = np.asarray(reason != "")
    eligible = ~excluded

    norm = np.empty((k, n)) if norm_out is None else norm_out
    for j, c in enumerate(p.criteria):
        norm[j] = normalise(
            raw[j],
            c.normalise,
            c.direction if c.direction in DIRECTIONS else "max",
            target=c.target,
            tolerance=c.tolerance,
            among=eligible,
        )
    if p.missing_policy == "worst":
        # Explicitly pessimistic: a missing weighted value counts as the worst possible (0);
        # the site still lists it in `missing`.
        norm[miss & eligible] = 0.0
    present = ~np.isnan(norm)
    return _Prepared(p, norm, present, missing_str, missing_weight, excluded, reason)


def _ranks_desc(scores: np.ndarray) -> np.ndarray:
    """Competition ranks (1 = best, ties share the lowest) along the last axis; NaN ranks last.

    Works on a 1-D vector or on a (draws, sites) block, sorting each row (contiguous memory).
    """
    key = np.round(scores, _TIE_DECIMALS)
    np.negative(key, out=key)
    key[np.isnan(key)] = np.inf
    # tied entries all get the group's first position below, so an unstable (SIMD) sort is safe
    order = np.argsort(key, axis=-1)
    srt = np.sort(key, axis=-1)  # = key in `order`, faster than gathering
    del key
    m = srt.shape[-1]
    new = np.ones(srt.shape, dtype=bool)
    np.not_equal(srt[..., 1:], srt[..., :-1], out=new[..., 1:])
    del srt
    pos = np.where(new, np.arange(1, m + 1, dtype=np.int32), np.int32(0))
    del new
    np.maximum.accumulate(pos, axis=-1, out=pos)
    ranks = np.empty(pos.shape, dtype=np.int32)
    np.put_along_axis(ranks, order, pos, axis=-1)
    return ranks


def _ideals(prep: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """TOPSIS ideal and anti-ideal per criterion: max / min normalised value, eligible sites."""
    has = prep.present.any(axis=1)
    best = np.max(prep.norm, axis=1, where=prep.present, initial=-np.inf)
    worst = np.min(prep.norm, axis=1, where=prep.present, initial=np.inf)
    return np.where(has, best, np.nan), np.where(has, worst, np.nan)


@dataclass
class _Scores:
    total: np.ndarray  # (n,)
    contrib: np.ndarray  # (k, n)
    extra: dict[str, np.ndarray]  # TOPSIS terms: d_pos, d_neg (n,), dpos, dneg (k, n)


def _score_arrays(prep: _Prepared, method: str, out: np.ndarray | None = None) -> _Scores:
    """Scores and per-criterion terms. ``out``, when given, is the (rows, n) block that receives
    contrib (k rows) and, for TOPSIS, d_pos, d_neg, dpos (k), dneg (k), in that order."""
    k, n = prep.norm.shape
    if out is None:
        out = np.empty((k if method == "wsum" else 3 * k + 2, n))
    w = prep.profile.weights[:, None]
    # Per-site weights: the weights of the criteria present, rescaled to sum 1 (renormalise).
    w_site = (prep.present * w).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w_eff = np.where(prep.present, w / w_site, np.nan)
    contrib = out[:k]
    if method == "wsum":
        np.multiply(w_eff, prep.norm, out=contrib)
        total = np.sum(contrib, axis=0, where=prep.present)
        return _Scores(total, contrib, {})
    best, worst = _ideals(prep)
    # in place, into the output block: at 1M sites each (k, n) array is 96 MB
    d_pos, d_neg = out[k], out[k + 1]
    dpos, dneg = out[k + 2 : 2 * k + 2], out[2 * k + 2 : 3 * k + 2]
    np.subtract(prep.norm, best[:, None], out=dpos)
    dpos *= w_eff
    dpos **= 2
    np.subtract(prep.norm, worst[:, None], out=dneg)
    dneg *= w_eff
    dneg **= 2
    np.sum(dpos, axis=0, where=prep.present, out=d_pos)
    np.sqrt(d_pos, out=d_pos)
    np.sum(dneg, axis=0, where=prep.present, out=d_neg)
    np.sqrt(d_neg, out=d_neg)
    den = d_pos + d_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        closeness = np.where(den > 0, d_neg / den, 1.0)
        # contrib_j = closeness * dneg_j / d_neg**2 (share of the squared distance from the
        # anti-ideal); where d_neg = 0 the score (0, or 1 if d_pos = 0 too) is shared by weight
        factor = np.where(d_neg > 0, closeness / d_neg**2, 0.0)
    np.multiply(dneg, factor, out=contrib)
    flat = np.flatnonzero(d_neg == 0)
    if flat.size:
        contrib[:, flat] = closeness[flat] * w_eff[:, flat]
    # the score as the exact sum of its parts (as for wsum)
    total = np.where(prep.present.any(axis=0), np.sum(contrib, axis=0, where=prep.present), np.nan)
    return _Scores(total, contrib, {"d_pos": d_pos, "d_neg": d_neg, "dpos": dpos, "dneg": dneg})


def score(
    data: pd.DataFrame,
    profile: str | Mapping[str, Any] | Profile,
    *,
    method: str | None = None,
) -> pd.DataFrame:
    """Score candidate sites with a weight profile.

    ``data``: one row per site, index = site id, columns = raw criteria (see
    :func:`known_criteria`, NaN = missing); a GeoDataFrame keeps its geometry and CRS in the output.
    ``method`` overrides the profile's (``wsum`` | ``topsis``).

    Returns a frame with the same index and columns ``score`` (0..1, NaN if excluded), ``rank``
    (Int64, 1 = best, ties share the lowest rank, NA if excluded), ``excluded``,
    ``exclusion_reason`` (Italian, "; "-joined, "" if eligible), ``missing`` (comma string of the
    weighted criteria that were NaN, "" if none), ``missing_weight`` (their share of the weight),
    then ``norm_<crit>`` and ``contrib_<crit>`` for every criterion (NaN where missing or
    excluded); TOPSIS adds ``d_pos``, ``d_neg``, ``dpos_<crit>`` and ``dneg_<crit>``. The two
    string columns are categoricals (few distinct values). See the module docstring for the
    formulas. ``out.attrs`` holds the profile (``to_dict()``) and the method.
    """
    p = load_profile(profile)
    method = _check_method(method or p.method)
    names = p.names
    k, n = len(names), len(data)
    # One (rows, n) block receives every per-criterion array in place and becomes the frame's
    # float block without copies (strided per-column copies dominated at 1M sites otherwise).
    colnames = [f"norm_{c}" for c in names] + [f"contrib_{c}" for c in names]
    if method == "topsis":
        colnames += ["d_pos", "d_neg"] + [f"dpos_{c}" for c in names] + [f"dneg_{c}" for c in names]
    block = np.empty((len(colnames), n))
    prep = _prepare(data, p, norm_out=block[:k])
    sc = _score_arrays(prep, method, out=block[k:])
    excl = prep.excluded
    total = np.where(excl, np.nan, sc.total)
    if method == "topsis":
        block[2 * k : 2 * k + 2, excl] = np.nan  # d_pos, d_neg of excluded sites
    ranks = _ranks_desc(total)
    rank = pd.array(ranks, dtype="Int64")
    rank[excl] = pd.NA

    head = pd.DataFrame(
        {
            "score": total,
            "rank": rank,
            "excluded": excl,
            "exclusion_reason": prep.reason,
            "missing": prep.missing,
            "missing_weight": prep.missing_weight,
        },
        index=data.index,
    )
    body = pd.DataFrame(block.T, index=data.index, columns=colnames, copy=False)
    out = pd.concat([head, body], axis=1)
    out = _keep_geometry(data, out)
    out.attrs["profile"] = p.to_dict()
    out.attrs["method"] = method
    return out


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise InputError(
            f"unknown scoring method {method!r}; use one of {', '.join(METHODS)}", field="method"
        )
    return method


def _keep_geometry(data: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    geom = getattr(data, "_geometry_column_name", None)
    if geom is None or geom not in data.columns:
        return out
    import geopandas as gpd  # only when the caller already works with geometries

    out[geom] = data[geom].to_numpy()
    return gpd.GeoDataFrame(out, geometry=geom, crs=data.crs)


# ---------------------------------------------------------------------------------------------
# Monte Carlo robustness
# ---------------------------------------------------------------------------------------------


def draw_weights(
    weights: np.ndarray, concentration: float, draws: int, seed: int | np.random.Generator | None
) -> np.ndarray:
    """``draws`` weight vectors from Dirichlet(concentration * weights), shape (draws, k).

    Mean = ``weights``; variance of w_j = w_j (1 - w_j) / (concentration + 1). Criteria with
    weight 0 stay 0; ``concentration = inf`` returns the weights unchanged.
    """
    w = np.asarray(weights, dtype=float)
    out = np.zeros((draws, w.size))
    pos = w > 0
    if math.isinf(concentration):
        out[:, pos] = w[pos]
        return out
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out[:, pos] = rng.dirichlet(concentration * w[pos], size=draws)
    return out


def _quantile_from_buffers(low: np.ndarray, high: np.ndarray, q: float, draws: int) -> np.ndarray:
    """numpy's default (linear) percentile from the kept smallest / largest order statistics.

    ``low`` holds the ``b_lo`` smallest values per row (sorted), ``high`` the ``b_hi`` largest
    (sorted ascending, i.e. order statistics ``draws - b_hi`` .. ``draws - 1``).
    """
    h = q * (draws - 1)
    i = int(math.floor(h))
    frac = h - i
    j = min(i + 1, draws - 1)

    def stat(idx: int) -> np.ndarray:
        if idx < low.shape[1]:
            return low[:, idx].astype(float)
        return high[:, idx - (draws - high.shape[1])].astype(float)

    return stat(i) + frac * (stat(j) - stat(i))


def monte_carlo(
    data: pd.DataFrame,
    profile: str | Mapping[str, Any] | Profile,
    *,
    method: str | None = None,
    draws: int | None = None,
    concentration: float | None = None,
    top_k: int | None = None,
    seed: int | None = None,
    quantiles: tuple[float, float] = (0.05, 0.95),
    memory_mb: float = 256.0,
) -> pd.DataFrame:
    """Robustness of the ranking to the weights: Dirichlet perturbation around the profile.

    For each of ``draws`` weight vectors (Dirichlet with mean = profile weights and the given
    ``concentration``; larger = tighter) every eligible site is re-scored and re-ranked with the
    same normalised values, exclusions and missing-data handling as :func:`score`. Returns, per
    site (same index as ``data``): ``rank`` (deterministic), ``rank_mean``, ``rank_p5`` and
    ``rank_p95`` (numpy-linear percentiles, names follow ``quantiles``), ``rank_min``,
    ``rank_max`` and ``p_top_k`` (share of draws ranked <= ``top_k``); NaN for excluded sites.
    Defaults come from the profile's ``monte_carlo`` section.

    Memory: draws are processed in chunks whose working set (scores and ranks of every eligible
    site for the chunk's draws, ~56 bytes per draw and site) stays within ``memory_mb``; across
    chunks only exact order-statistic buffers are kept, about ``2 * (q_low + 1 - q_high) * draws``
    int32 per site (plus one chunk), never the full (sites x draws) rank matrix. Ranking is
    O(draws * n log n). Results depend only on ``seed``, not on the chunking.
    """
    p = load_profile(profile)
    method = _check_method(method or p.method)
    draws = p.mc_draws if draws is None else int(draws)
    conc = p.mc_concentration if concentration is None else float(concentration)
    top_k = p.mc_top_k if top_k is None else int(top_k)
    seed = p.mc_seed if seed is None else seed
    q_lo, q_hi = quantiles
    if draws < 1 or top_k < 1 or not conc > 0:
        raise InputError("monte_carlo needs draws >= 1, top_k >= 1 and concentration > 0")
    if not 0 <= q_lo <= 0.5 <= q_hi <= 1:
        raise InputError(f"quantiles must satisfy 0 <= low <= 0.5 <= high <= 1, got {quantiles}")

    prep = _prepare(data, p)
    elig = ~prep.excluded
    det_total = np.where(prep.excluded, np.nan, _score_arrays(prep, method).total)
    det_rank = pd.array(_ranks_desc(det_total), dtype="Int64")
    det_rank[prep.excluded] = pd.NA
    nm = prep.norm[:, elig]  # (k, m)
    pres = prep.present[:, elig].astype(float)
    m = nm.shape[1]
    W = draw_weights(p.weights, conc, draws, seed)  # all draws up front: chunking-independent

    if method == "wsum":
        a = np.where(pres > 0, nm, 0.0)  # masked out by `pres` in the denominator

        def block(wc: np.ndarray) -> np.ndarray:
            num = wc @ a
            with np.errstate(invalid="ignore", divide="ignore"):
                num /= wc @ pres
            return num
    else:
        best, worst = _ideals(prep)
        # Per-site renormalisation scales d_pos and d_neg alike, so closeness ignores it.
        ap = np.where(pres > 0, (nm - best[:, None]) ** 2, 0.0)
        an = np.where(pres > 0, (nm - worst[:, None]) ** 2, 0.0)

        def block(wc: np.ndarray) -> np.ndarray:
            w2 = wc**2
            den = np.sqrt(w2 @ ap)  # d_pos, then d_pos + d_neg
            dn = np.sqrt(w2 @ an)
            den += dn
            flat = den == 0
            with np.errstate(invalid="ignore", divide="ignore"):
                dn /= den
            dn[flat] = 1.0  # same convention as score(): ideal = anti-ideal -> 1
            return dn

    b_lo = min(draws, int(math.floor(q_lo * (draws - 1))) + 2)
    b_hi = min(draws, draws - int(math.floor(q_hi * (draws - 1))))
    # Working set per (draw, site) in a chunk: ~2 float64 in block(), ~5 arrays in ranking.
    chunk = max(1, min(draws, int(memory_mb * 2**20 // (max(m, 1) * 8 * 7))))
    # Order-statistic buffers: the b smallest / largest ranks seen so far per site, plus room for
    # new draws; partitioned only when full, so each rank is partitioned O(1) times on average.
    cap_lo, cap_hi = b_lo + max(chunk, b_lo), b_hi + max(chunk, b_hi)
    low = np.empty((m, cap_lo), dtype=np.int32)
    high = np.empty((m, cap_hi), dtype=np.int32)
    f_lo = f_hi = 0
    rmin = np.full(m, np.iinfo(np.int32).max, dtype=np.int32)
    rmax = np.zeros(m, dtype=np.int32)
    rsum = np.zeros(m, dtype=np.float64)
    top = np.zeros(m, dtype=np.int64)
    for s in range(0, draws if m else 0, chunk):
        r = _ranks_desc(block(W[s : s + chunk]))  # (c, m)
        c = r.shape[0]
        np.minimum(rmin, r.min(axis=0), out=rmin)
        np.maximum(rmax, r.max(axis=0), out=rmax)
        rsum += r.sum(axis=0, dtype=np.float64)
        top += (r <= top_k).sum(axis=0)
        if f_lo + c > cap_lo:
            low[:, :f_lo].partition(b_lo - 1, axis=1)
            f_lo = b_lo
        low[:, f_lo : f_lo + c] = r.T
        f_lo += c
        if f_hi + c > cap_hi:
            high[:, :f_hi].partition(f_hi - b_hi, axis=1)
            high[:, :b_hi] = high[:, f_hi - b_hi : f_hi]
            f_hi = b_hi
        high[:, f_hi : f_hi + c] = r.T
        f_hi += c
        del r
    if f_lo > b_lo:
        low[:, :f_lo].partition(b_lo - 1, axis=1)
    if f_hi > b_hi:
        high[:, :f_hi].partition(f_hi - b_hi, axis=1)
        high[:, :b_hi] = high[:, f_hi - b_hi : f_hi]
    low = np.sort(low[:, :b_lo], axis=1)
    high = np.sort(high[:, :b_hi], axis=1)

    def spread(v: np.ndarray) -> np.ndarray:
        out = np.full(len(data), np.nan)
        out[elig] = v
        return out

    def qname(q: float) -> str:
        return f"rank_p{q * 100:g}".replace(".", "_")

    res = pd.DataFrame(
        {
            "rank": det_rank,
            "rank_mean": spread(rsum / draws if m else rsum),
            qname(q_lo): spread(_quantile_from_buffers(low, high, q_lo, draws) if m else rsum),
            qname(q_hi): spread(_quantile_from_buffers(low, high, q_hi, draws) if m else rsum),
            "rank_min": spread(rmin.astype(float)),
            "rank_max": spread(rmax.astype(float)),
            "p_top_k": spread(top / draws),
        },
        index=data.index,
    )
    res["rank"] = res["rank"].astype("Int64")
    res.attrs.update(
        {
            "top_k": top_k,
            "draws": draws,
            "concentration": conc,
            "seed": seed,
            "method": method,
            "profile": p.name,
            "chunk_draws": chunk,
        }
    )
    return res


# ---------------------------------------------------------------------------------------------
# Comparison and output
# ---------------------------------------------------------------------------------------------


def compare(
    data: pd.DataFrame,
    scored: pd.DataFrame,
    sites: Sequence[Any],
    profile: str | Mapping[str, Any] | Profile | None = None,
    *,
    wide: bool = False,
) -> pd.DataFrame:
    """Sites side by side: raw value, normalised value, effective weight and contribution.

    ``data`` is the raw criteria table, ``scored`` the output of :func:`score` (its profile is used
    when ``profile`` is None). Tidy (default): one row per (site, criterion) with columns
    ``site, criterion, label_it, unit, direction, weight, raw, norm, contrib, score, rank,
    excluded, exclusion_reason``. ``wide=True``: one row per criterion (Italian label), columns
    (site, raw|norm|contrib), plus rows "Punteggio" and "Posizione in graduatoria".
    """
    p = load_profile(profile if profile is not None else scored.attrs.get("profile", {}))
    unknown = [s for s in sites if s not in scored.index or s not in data.index]
    if unknown:
        raise NotFound(f"unknown site id(s): {', '.join(map(str, unknown[:10]))}")
    sites = list(sites)
    rows = []
    for c in p.criteria:
        raw = pd.to_numeric(data.loc[sites, c.name], errors="coerce").to_numpy(dtype=float)
        rows.append(
            pd.DataFrame(
                {
                    "site": sites,
                    "criterion": c.name,
                    "label_it": c.label_it,
                    "unit": c.unit,
                    "direction": c.direction,
                    "weight": c.weight,
                    "raw": raw,
                    "norm": scored.loc[sites, f"norm_{c.name}"].to_numpy(dtype=float),
                    "contrib": scored.loc[sites, f"contrib_{c.name}"].to_numpy(dtype=float),
                    "score": scored.loc[sites, "score"].to_numpy(dtype=float),
                    "rank": scored.loc[sites, "rank"].to_numpy(),
                    "excluded": scored.loc[sites, "excluded"].to_numpy(dtype=bool),
                    "exclusion_reason": scored.loc[sites, "exclusion_reason"].to_numpy(),
                }
            )
        )
    tidy = pd.concat(rows, ignore_index=True)
    tidy["rank"] = tidy["rank"].astype("Int64")
    # keep the caller's site order, criteria in profile order
    tidy["_o"] = tidy["site"].map({s: i for i, s in enumerate(sites)})
    tidy = tidy.sort_values(["_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    if not wide:
        return tidy
    parts = ("raw", "norm", "contrib")
    labels = [f"{c.label_it} ({c.unit})" for c in p.criteria]
    block: dict[tuple[Any, str], np.ndarray] = {}
    for s in sites:  # a handful of sites chosen by a user
        sub = tidy[tidy["site"] == s]
        for v in parts:
            block[(s, v)] = sub[v].to_numpy(dtype=float)
    w = pd.DataFrame(block, index=labels)
    w.columns = pd.MultiIndex.from_tuples(list(block), names=["site", "value"])
    summary = pd.DataFrame(
        np.nan, index=["Punteggio", "Posizione in graduatoria"], columns=w.columns
    )
    for s in sites:
        summary.loc["Punteggio", (s, "contrib")] = scored.loc[s, "score"]
        r = scored.loc[s, "rank"]
        summary.loc["Posizione in graduatoria", (s, "contrib")] = np.nan if pd.isna(r) else float(r)
    return pd.concat([w, summary])


def _flat_table(scored: pd.DataFrame, *, keep_geometry: bool) -> pd.DataFrame:
    """The site id as a column and no nested values: what files and JSON can hold.

    The index becomes ``site_id`` (or its own name) unless it is an unnamed RangeIndex beside an
    existing ``site_id`` column; dict/list cells (e.g. the criteria's per-site ``missing`` reasons)
    become JSON strings.
    """
    geom = getattr(scored, "_geometry_column_name", None)
    df = scored if keep_geometry or geom is None else pd.DataFrame(scored.drop(columns=geom))
    name = df.index.name or "site_id"
    plain = isinstance(df.index, pd.RangeIndex) and df.index.name is None
    df = df.reset_index(drop=True) if plain and name in df.columns else df.reset_index(names=name)
    for c in df.columns:
        if df[c].dtype == object and c != geom:
            nested = df[c].map(lambda v: isinstance(v, dict | list | tuple))
            if nested.any():
                df[c] = df[c].map(
                    lambda v: (
                        json.dumps(v, ensure_ascii=False)
                        if isinstance(v, dict | list | tuple)
                        else v
                    )
                )
    return df


def to_records(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe records of a scored table for the API: NaN/NA -> None, geometry dropped."""
    return json.loads(
        _flat_table(scored, keep_geometry=False).to_json(orient="records", force_ascii=False)
    )


def write_scores(scored: pd.DataFrame, path: str | Path) -> Path:
    """Write a scored table atomically; format by suffix: .csv, .json (records), .parquet,
    .gpkg/.geojson (GeoDataFrames only; GeoPackage layer ``scores``). Returns the path."""
    path = Path(path)
    suf = path.suffix.lower()
    if suf not in (".csv", ".json", ".parquet", ".gpkg", ".geojson"):
        raise InputError(
            f"unsupported output format '{suf}'; use .csv, .json, .parquet, .gpkg or .geojson",
            file=str(path),
        )
    if suf in (".gpkg", ".geojson") and getattr(scored, "_geometry_column_name", None) is None:
        raise InputError(f"{path}: {suf} needs sites with geometry", file=str(path))
    with atomic_path(path) as tmp:
        if suf == ".csv":
            _flat_table(scored, keep_geometry=False).to_csv(tmp, index=False)
        elif suf == ".json":
            _flat_table(scored, keep_geometry=False).to_json(
                tmp, orient="records", force_ascii=False
            )
        elif suf == ".parquet":
            _flat_table(scored, keep_geometry=True).to_parquet(tmp)
        else:
            # layer name fixed: the temporary file's name would otherwise become the layer name
            extra = {"layer": "scores"} if suf == ".gpkg" else {}
            _flat_table(scored, keep_geometry=True).to_file(
                tmp, driver="GPKG" if suf == ".gpkg" else "GeoJSON", **extra
            )
    return path
