"""A fund call (bando) as a config file: budget, cap, eligibility, ranking and optimisation rules.

Calls live in ``pattogis/config/calls/<name>.yaml`` (``bando_2023`` is the reference); every rule of
the call is a key there, none is a constant in code. :func:`load_call` reads and checks one.
Money is held in integer cents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pattogis import config
from pattogis.errors import ConfigError
from pattogis.fund.fmt import cents_to_eur, to_cents

LAST_PROJECT_RULES = ("partial", "skip_to_next", "stop")
APPLICANT_TYPES = ("unione", "comune")
SHARE_BASES = ("allocated", "budget")
# tie-break keys understood after merit; '-' prefix = descending
TIE_BREAK_KEYS = ("applicant_type", "fragility_index", "population", "requested_eur", "project_id")

LastProject = Literal["partial", "skip_to_next", "stop"]


@dataclass(frozen=True)
class OptimalParams:
    """Rules of the optimal (MILP) mode. ``None`` switches a constraint off.

    Shares are fractions in [0, 1] of the money allocated by the portfolio (``share_base:
    allocated``) or of the call's budget (``share_base: budget``).
    """

    min_funded: int | None = None
    priority_systems: tuple[str, ...] = ("collina-montagna", "pianura nord")
    min_share_priority_systems: float | None = None
    min_share_fragile: float | None = None
    max_share_per_unione: float | None = None
    share_base: str = "allocated"
    tie_break: str | None = "applicant_type"
    alternatives: int = 4
    time_limit_s: float = 60.0
    mip_rel_gap: float = 0.0
    assess_constraints: bool = True
    rcf_min_free: int = 200

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["priority_systems"] = list(self.priority_systems)
        return d


@dataclass(frozen=True)
class Call:
    """One call for proposals of the Fondo perequativo metropolitano.

    Money in integer cents. The grant of an eligible project is ``min(request, cap)``: the cap
    limits what one intervention may receive whatever it asked for; a request below the cap is
    granted as asked (never topped up).
    """

    id: str
    title: str
    budget_cents: int
    cap_cents: int | None
    min_funded: int | None
    applicant_types: tuple[str, ...] = APPLICANT_TYPES
    comune_only_if_no_unione: bool = True
    site_in_applicant_unione: bool = True
    min_inside_tu_share: float = 0.999
    max_outside_tu_m2: float | None = None
    min_request_cents: int | None = None
    merit_decimals: int = 3
    tie_break: tuple[str, ...] = ("applicant_type",)
    applicant_type_priority: tuple[str, ...] = APPLICANT_TYPES
    last_project: str = "partial"
    min_partial_share: float = 0.0
    optimal: OptimalParams = field(default_factory=OptimalParams)
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "budget_eur": cents_to_eur(self.budget_cents),
            "cap_per_intervention_eur": None if self.cap_cents is None else cents_to_eur(self.cap_cents),
            "min_funded": self.min_funded,
            "eligibility": {
                "applicant_types": list(self.applicant_types),
                "comune_only_if_no_unione": self.comune_only_if_no_unione,
                "site_in_applicant_unione": self.site_in_applicant_unione,
                "min_inside_tu_share": self.min_inside_tu_share,
                "max_outside_tu_m2": self.max_outside_tu_m2,
                "min_request_eur": None if self.min_request_cents is None
                else cents_to_eur(self.min_request_cents),
            },
            "ranking": {
                "merit_decimals": self.merit_decimals,
                "tie_break": list(self.tie_break),
                "applicant_type_priority": list(self.applicant_type_priority),
                "last_project": self.last_project,
                "min_partial_share": self.min_partial_share,
            },
            "optimal": self.optimal.to_dict(),
            "source": self.source,
        }

    def with_optimal(self, **overrides: Any) -> Call:
        """A copy with some optimal-mode rules replaced (checked like the file's)."""
        if not overrides:
            return self
        unknown = set(overrides) - {f.name for f in dataclasses.fields(OptimalParams)}
        if unknown:
            raise ConfigError(f"unknown optimal-mode parameter(s): {', '.join(sorted(unknown))}")
        merged = self.optimal.to_dict() | overrides
        return dataclasses.replace(self, optimal=_optimal_params(merged, f"{self.source} (+overrides)"))

    def with_rules(self, **overrides: Any) -> Call:
        """A copy with some top-level rules replaced (e.g. ``last_project='stop'``)."""
        if "last_project" in overrides and overrides["last_project"] not in LAST_PROJECT_RULES:
            raise ConfigError(f"last_project must be one of {LAST_PROJECT_RULES}, "
                              f"got {overrides['last_project']!r}")
        return dataclasses.replace(self, **overrides)


def _fail(src: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{src}: key '{key}' {msg}")


def _money(raw: Mapping[str, Any], key: str, src: str, *, required: bool) -> int | None:
    v = raw.get(key)
    if v is None:
        if required:
            raise _fail(src, key, "is missing (amount in euros)")
        return None
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise _fail(src, key, f"must be an amount in euros, got {v!r}")
    try:
        c = to_cents(v)
    except ValueError as e:
        raise _fail(src, key, f"must be an amount in euros, got {v!r}") from e
    if c <= 0:
        raise _fail(src, key, f"must be positive, got {v!r}")
    return c


def _share(v: Any, src: str, key: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
        raise _fail(src, key, f"must be a share between 0 and 1 or null, got {v!r}")
    return float(v)


def _optimal_params(raw: Mapping[str, Any], src: str) -> OptimalParams:
    d = dict(raw)
    mf = d.get("min_funded")
    if mf is not None and (isinstance(mf, bool) or not isinstance(mf, int) or mf < 0):
        raise _fail(src, "optimal.min_funded", f"must be a non-negative integer or null, got {mf!r}")
    systems = d.get("priority_systems", OptimalParams.priority_systems)
    if isinstance(systems, str) or not all(isinstance(s, str) for s in systems):
        raise _fail(src, "optimal.priority_systems", f"must be a list of names, got {systems!r}")
    base = d.get("share_base", "allocated")
    if base not in SHARE_BASES:
        raise _fail(src, "optimal.share_base", f"must be one of {SHARE_BASES}, got {base!r}")
    tb = d.get("tie_break", "applicant_type")
    if tb not in (None, "applicant_type"):
        raise _fail(src, "optimal.tie_break", f"must be 'applicant_type' or null, got {tb!r}")
    alt = d.get("alternatives", 4)
    if isinstance(alt, bool) or not isinstance(alt, int) or alt < 0:
        raise _fail(src, "optimal.alternatives", f"must be a non-negative integer, got {alt!r}")
    tl = d.get("time_limit_s", 60.0)
    gap = d.get("mip_rel_gap", 0.0)
    for k, v in (("time_limit_s", tl), ("mip_rel_gap", gap)):
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
            raise _fail(src, f"optimal.{k}", f"must be a non-negative number, got {v!r}")
    rcf = d.get("rcf_min_free", 200)
    if isinstance(rcf, bool) or not isinstance(rcf, int) or rcf < 1:
        raise _fail(src, "optimal.rcf_min_free", f"must be a positive integer, got {rcf!r}")
    return OptimalParams(
        min_funded=mf,
        priority_systems=tuple(systems),
        min_share_priority_systems=_share(d.get("min_share_priority_systems"), src,
                                          "optimal.min_share_priority_systems"),
        min_share_fragile=_share(d.get("min_share_fragile"), src, "optimal.min_share_fragile"),
        max_share_per_unione=_share(d.get("max_share_per_unione"), src,
                                    "optimal.max_share_per_unione"),
        share_base=base,
        tie_break=tb,
        alternatives=alt,
        time_limit_s=float(tl),
        mip_rel_gap=float(gap),
        assess_constraints=bool(d.get("assess_constraints", True)),
        rcf_min_free=rcf,
    )


def call_from_mapping(raw: Mapping[str, Any], *, name: str = "call") -> Call:
    """Build and check a :class:`Call` from the YAML mapping of a call file."""
    src = str(raw.get("_source", name))
    budget = _money(raw, "budget_eur", src, required=True)
    assert budget is not None
    cap = _money(raw, "cap_per_intervention_eur", src, required=False)
    mf = raw.get("min_funded")
    if mf is not None and (isinstance(mf, bool) or not isinstance(mf, int) or mf < 0):
        raise _fail(src, "min_funded", f"must be a non-negative integer or null, got {mf!r}")
    el = raw.get("eligibility") or {}
    rk = raw.get("ranking") or {}
    if not isinstance(el, Mapping) or not isinstance(rk, Mapping):
        raise ConfigError(f"{src}: 'eligibility' and 'ranking' must be mappings")
    types = tuple(el.get("applicant_types", APPLICANT_TYPES))
    bad = [t for t in types if t not in APPLICANT_TYPES]
    if bad:
        raise _fail(src, "eligibility.applicant_types", f"has unknown types {bad}; known: {APPLICANT_TYPES}")
    share = el.get("min_inside_tu_share", 0.999)
    if _share(share, src, "eligibility.min_inside_tu_share") is None:
        raise _fail(src, "eligibility.min_inside_tu_share", "must be a share between 0 and 1")
    out_m2 = el.get("max_outside_tu_m2")
    if out_m2 is not None and (isinstance(out_m2, bool) or not isinstance(out_m2, int | float)
                               or out_m2 < 0):
        raise _fail(src, "eligibility.max_outside_tu_m2",
                    f"must be a non-negative number of square metres or null, got {out_m2!r}")
    dec = rk.get("merit_decimals", 3)
    if isinstance(dec, bool) or not isinstance(dec, int) or not 0 <= dec <= 9:
        raise _fail(src, "ranking.merit_decimals", f"must be an integer 0..9, got {dec!r}")
    tie = tuple(rk.get("tie_break", ("applicant_type",)))
    bad = [t for t in tie if t.lstrip("-") not in TIE_BREAK_KEYS]
    if bad:
        raise _fail(src, "ranking.tie_break", f"has unknown keys {bad}; known: {TIE_BREAK_KEYS}")
    prio = tuple(rk.get("applicant_type_priority", APPLICANT_TYPES))
    if sorted(prio) != sorted(APPLICANT_TYPES):
        raise _fail(src, "ranking.applicant_type_priority",
                    f"must order all of {APPLICANT_TYPES}, got {list(prio)}")
    last = rk.get("last_project", "partial")
    if last not in LAST_PROJECT_RULES:
        raise _fail(src, "ranking.last_project", f"must be one of {LAST_PROJECT_RULES}, got {last!r}")
    min_partial = rk.get("min_partial_share", 0.0)
    if isinstance(min_partial, bool) or not isinstance(min_partial, int | float) \
            or not 0 <= min_partial <= 1:
        raise _fail(src, "ranking.min_partial_share", f"must be a share 0..1, got {min_partial!r}")
    opt_raw = raw.get("optimal") or {}
    if not isinstance(opt_raw, Mapping):
        raise ConfigError(f"{src}: 'optimal' must be a mapping")
    opt_raw = dict(opt_raw)
    # "at least N funded" is a constraint of the optimal mode unless the call says otherwise
    opt_raw.setdefault("min_funded", mf)
    return Call(
        id=str(raw.get("id", name)),
        title=str(raw.get("title", name)),
        budget_cents=budget,
        cap_cents=cap,
        min_funded=mf,
        applicant_types=types,
        comune_only_if_no_unione=bool(el.get("comune_only_if_no_unione", True)),
        site_in_applicant_unione=bool(el.get("site_in_applicant_unione", True)),
        min_inside_tu_share=float(share),
        max_outside_tu_m2=None if out_m2 is None else float(out_m2),
        min_request_cents=_money(el, "min_request_eur", src, required=False),
        merit_decimals=dec,
        tie_break=tie,
        applicant_type_priority=prio,
        last_project=last,
        min_partial_share=float(min_partial),
        optimal=_optimal_params(opt_raw, src),
        source=src,
    )


def load_call(call: str | Path | Mapping[str, Any] | Call = "bando_2023") -> Call:
    """Load a call by name (``config/calls/<name>.yaml``), by path to a YAML file, or from a
    mapping; a :class:`Call` is returned unchanged."""
    if isinstance(call, Call):
        return call
    if isinstance(call, Mapping):
        return call_from_mapping(call)
    p = Path(call)
    if p.suffix in (".yaml", ".yml") and not p.exists():
        raise ConfigError(f"call file {p} does not exist")
    raw = config.call(str(call))
    return call_from_mapping(raw, name=p.stem)
