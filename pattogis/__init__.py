"""pattogis: a GIS planner for territorial regeneration in the Città metropolitana di Bologna.

The data flows one way: ``data`` (build the layer set) → ``layers`` (open by name) →
``territory`` → ``urbanized`` and ``ledger`` → ``criteria`` → ``scoring`` → ``fund`` →
``maps`` / ``store`` → ``api`` and ``cli``.

The public API (GeoDataFrame in, GeoDataFrame out; metric CRS, EPSG:25832; hectares, metres)::

    import pattogis
    tu = pattogis.derive_tu(comuni, buildings)                 # territorio urbanizzato
    led = pattogis.compute_ledger(comuni, tu, proposals)       # LR 24/2017 ledger (ha)
    ctx = pattogis.criteria_context(tu=tu, comuni=comuni, rail_stations=stations)
    crit = pattogis.compute_criteria(sites, ctx)               # raw criteria per site
    scored = pattogis.score(crit, "unione")                    # score, rank, contributions
    rob = pattogis.robustness(crit, "unione", draws=500)       # rank intervals
    res = pattogis.allocate_fund(projects, "bando_2023")       # Fondo perequativo

With a built layer set, :class:`pattogis.Workspace` holds the layers, the criteria context and
the metropolitan score reference, read once (what the CLI and the API use).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# name -> module that defines it. Loaded on first use (PEP 562): `import pattogis` stays cheap
# for the CLI and dask workers, and submodules that import `pattogis.config` while the package
# initialises never meet a half-built GIS stack.
_PUBLIC = {
    "derive_tu": "pattogis.library",
    "compute_ledger": "pattogis.library",
    "ledger_table": "pattogis.library",
    "criteria_context": "pattogis.library",
    "compute_criteria": "pattogis.library",
    "score": "pattogis.library",
    "robustness": "pattogis.library",
    "allocate_fund": "pattogis.library",
    "Workspace": "pattogis.workspace",
    "Reference": "pattogis.scoring",
    "ProfileSpec": "pattogis.scoring",
    "load_profile": "pattogis.scoring",
    "list_profiles": "pattogis.scoring",
    "Settings": "pattogis.settings",
    "get_settings": "pattogis.settings",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        import importlib

        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pattogis' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the chosen public API, not the module's plumbing (annotations, Any, _PUBLIC)
    return sorted(__all__)

