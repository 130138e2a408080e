"""The criteria registry: one decorated function per criterion.

A criterion is a function ``f(sites: Sites) -> Outcome`` registered with :func:`criterion`, which
records its output column, unit, direction, data source and Italian label. Adding a criterion
means adding one such function to a module of this package; ``compute_criteria`` finds it here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pattogis.criteria.sites import Sites

DIRECTIONS = ("max", "min", "target")


@dataclass
class Outcome:
    """Values of one criterion for every site (NaN where missing) and why each NaN is missing.

    ``reasons`` holds an Italian reason where the value is NaN and None elsewhere; ``extra`` holds
    companion columns (e.g. ``rail_distance_method``), one array per column.
    """

    values: np.ndarray
    reasons: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def of(cls, values: np.ndarray, reasons: np.ndarray | None = None,
           **extra: np.ndarray) -> Outcome:
        v = np.asarray(values, dtype="float64")
        r = np.full(v.shape[0], None, dtype=object) if reasons is None else np.asarray(reasons, object)
        return cls(v, r, {k: np.asarray(a) for k, a in extra.items()})

    @classmethod
    def missing(cls, n: int, reason: str, extra_columns: tuple[str, ...] = ()) -> Outcome:
        return cls(np.full(n, np.nan), np.full(n, reason, dtype=object),
                   {c: np.full(n, None, dtype=object) for c in extra_columns})


@dataclass(frozen=True)
class Criterion:
    """Metadata of a registered criterion. ``direction``: 'max' (higher is better), 'min'
    (lower is better) or 'target' (a range is best; the weight profile says which)."""

    name: str
    func: Callable[[Sites], Outcome]
    unit: str
    direction: str
    source: str
    label_it: str
    requires: tuple[str, ...]
    rasters: tuple[str, ...]
    extra_columns: tuple[str, ...]
    description: str

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "unit": self.unit, "direction": self.direction,
                "source": self.source, "label_it": self.label_it, "requires": list(self.requires),
                "rasters": list(self.rasters), "extra_columns": list(self.extra_columns),
                "description": self.description}


REGISTRY: dict[str, Criterion] = {}


def criterion(name: str, *, unit: str, direction: str, source: str, label_it: str,
              requires: tuple[str, ...] = (), rasters: tuple[str, ...] = (),
              extra_columns: tuple[str, ...] = ()) -> Callable[[Callable[[Sites], Outcome]],
                                                               Callable[[Sites], Outcome]]:
    """Register ``func`` as criterion ``name`` (also its output column).

    ``requires`` names the context layers it needs (attributes of ``CriteriaContext``) and
    ``rasters`` the rasters; when one is unavailable the criterion is reported missing for every
    site, with the reason, without calling the function.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"criterion {name}: direction must be one of {DIRECTIONS}, got {direction!r}")

    def deco(func: Callable[[Sites], Outcome]) -> Callable[[Sites], Outcome]:
        if name in REGISTRY and REGISTRY[name].func is not func:
            raise ValueError(f"criterion '{name}' is registered twice")
        REGISTRY[name] = Criterion(name, func, unit, direction, source, label_it, tuple(requires),
                                   tuple(rasters), tuple(extra_columns),
                                   inspect.getdoc(func) or "")
        return func

    return deco
