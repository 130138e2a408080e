"""The public functions of pattogis for a Python user: GeoDataFrames in, GeoDataFrames out, no
built layer set needed (re-exported by ``import pattogis``).

Every geometry is in a projected, metric CRS (EPSG:25832, ETRS89 / UTM 32N, in the Bologna
data); areas are hectares, distances metres, money euros. The steps follow the data path:
territorio urbanizzato → ledger → criteria → score → robustness → fund.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from pattogis import fund as _fund
from pattogis import ledger as _ledger
from pattogis import scoring as _scoring
from pattogis import urbanized as _urbanized
from pattogis.criteria import CriteriaContext
from pattogis.criteria import compute_criteria as _compute_criteria
from pattogis.scoring import Profile, ProfileSpec, Reference
from pattogis.settings import get_settings

ProfileLike = str | Path | Mapping[str, Any] | ProfileSpec | Profile


def derive_tu(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame,
              landuse_bologna: gpd.GeoDataFrame | None = None, *,
              params: dict[str, Any] | None = None, engine: str = "local") -> gpd.GeoDataFrame:
    """Derive the provisional territorio urbanizzato (TU) of each comune from its buildings.

    Parameters: ``comuni`` (``istat``, ``name``, polygons) and ``buildings`` (``comune_istat``,
    footprints) in one metric CRS; ``landuse_bologna`` optional urban land use for Bologna;
    ``params`` the closing parameters (default ``config/tu.yaml``: buffer out 40 m, in 30 m,
    clusters >= 2 ha and 10 buildings). Returns one row per comune: ``comune_istat``, ``name``,
    ``area_ha`` (hectares), MultiPolygon geometry, in the comuni's CRS.

    Example::

        tu = pattogis.derive_tu(comuni, buildings)
        tu.set_index("comune_istat")["area_ha"]
    """
    return _urbanized.derive_tu(comuni, buildings, landuse_bologna, params=params,
                                engine=engine)  # type: ignore[arg-type]


def compute_ledger(comuni: pd.DataFrame, tu: gpd.GeoDataFrame,
                   proposals: gpd.GeoDataFrame | None = None, *,
                   scenario: str = "base") -> _ledger.Ledger:
    """The LR 24/2017 legal land-budget ledger of one scenario, at every level.

    Parameters: ``comuni`` (``istat``, ``name``, ``unione``); ``tu`` (``comune_istat``,
    ``area_ha``, polygons: the TU at the law's baseline); ``proposals`` validated by
    :func:`pattogis.proposals.validate_proposals` (same CRS as ``tu``). Returns a
    :class:`pattogis.ledger.Ledger` whose ``comuni``, ``unioni`` and ``metro`` tables are in
    hectares (quota 3% of the TU, consumed, desealed, remaining) and whose ``proposals`` is a
    GeoDataFrame of the measured proposals. Use :func:`ledger_table` for a GeoDataFrame per comune.

    Example::

        led = pattogis.compute_ledger(comuni, tu, proposals)
        led.comuni[["istat", "local_quota_ha", "remaining_locale_ha"]]
    """
    return _ledger.compute(comuni, tu, proposals, scenario=scenario)


def ledger_table(comuni: gpd.GeoDataFrame, tu: gpd.GeoDataFrame,
                 proposals: gpd.GeoDataFrame | None = None, *,
                 scenario: str = "base") -> gpd.GeoDataFrame:
    """The ledger per comune as a GeoDataFrame: the comuni polygons (their CRS) with the ledger
    columns of :func:`compute_ledger` (hectares), ready for a map or a GeoPackage.

    Example::

        pattogis.ledger_table(comuni, tu).to_file("bilancio.gpkg")
    """
    led = compute_ledger(comuni, tu, proposals, scenario=scenario)
    g = comuni[["istat", "geometry"]].merge(led.comuni, on="istat")
    return gpd.GeoDataFrame(g, geometry="geometry", crs=comuni.crs)


def criteria_context(**layers: Any) -> CriteriaContext:
    """The layers the site criteria are measured against, from plain GeoDataFrames.

    Keywords (each optional; a criterion whose layer is missing is reported missing, with the
    reason): ``rail_stations``, ``bus_stops`` (``n_lines``), ``cycleways``, ``hubs``, ``tu``
    (``comune_istat``), ``comuni`` (``istat``, ``fragility_index`` 0..1), ``roads_nodes``
    (``osmid``) and ``roads_edges`` (``u``, ``v``, ``length_m`` in metres), ``rasters``
    (``{"dem"|"slope"|"heat": path}``), ``crs`` (default EPSG:25832; layers in another CRS are
    reprojected), ``params`` (overrides of ``config/criteria.yaml``). The road graph is built
    once here. See :meth:`pattogis.criteria.CriteriaContext.from_frames`.

    Example::

        ctx = pattogis.criteria_context(tu=tu, comuni=comuni, rail_stations=stations)
    """
    return CriteriaContext.from_frames(**layers)


def compute_criteria(sites: gpd.GeoDataFrame, context: CriteriaContext,
                     names: Iterable[str] | None = None) -> gpd.GeoDataFrame:
    """Raw criteria of candidate sites: one column per criterion in its unit
    (``pattogis.criteria.describe()``: land take ha, share inside the TU 0-1, distances m, ...),
    a ``*_method`` column where it matters and ``missing`` (criterion -> Italian reason).

    ``sites``: polygons in any CRS with a CRS set (reprojected to the context's metric CRS);
    the index is kept. ``names``: criteria to compute (all by default).

    Example::

        crit = pattogis.compute_criteria(sites, ctx, ["land_take_ha", "share_inside_tu"])
    """
    return _compute_criteria(sites, context, names)


def score(criteria: pd.DataFrame, profile: ProfileLike = "unione", *,
          method: str | None = None, reference: Reference | None = None) -> pd.DataFrame:
    """Score sites with a weight profile: ``score`` (0..1), ``rank`` (within these sites),
    ``norm_*`` and ``contrib_*`` per criterion (the contributions add up to the score),
    exclusions with an Italian reason and missing data listed.

    ``criteria``: one row per site (index = site id, or a ``site_id`` column), raw criterion
    columns; a GeoDataFrame keeps its geometry and CRS. ``profile``: a name
    (``config/profiles``), a YAML path, a dict or :class:`~pattogis.scoring.ProfileSpec`.
    ``reference``: normalise against a fixed :class:`~pattogis.scoring.Reference` (scores then
    mean the same whatever else is scored; e.g. ``Reference.from_frame(metro_criteria,
    source=...)``); None normalises within the sites given.

    Example::

        scored = pattogis.score(crit, "pug_planner")
        scored.sort_values("rank")[["score", "rank", "exclusion_reason"]]
    """
    data = criteria.set_index("site_id") if "site_id" in criteria.columns else criteria
    return _scoring.score(data, _scoring.load_profile(profile), method=method,  # type: ignore[arg-type]
                          reference=reference)


def robustness(criteria: pd.DataFrame, profile: ProfileLike = "unione", *,
               method: str | None = None, draws: int | None = None, top_k: int | None = None,
               seed: int | None = None, reference: Reference | None = None) -> pd.DataFrame:
    """How stable each site's rank is when the weights move (Monte Carlo, Dirichlet around the
    profile's weights): ``rank_mean``, ``rank_p5``, ``rank_p95``, ``rank_min``, ``rank_max`` and
    ``p_top_k``. ``draws``, ``top_k`` and ``seed`` default to the profile's ``monte_carlo``.

    Example::

        rob = pattogis.robustness(crit, "unione", draws=500, seed=1)
    """
    data = criteria.set_index("site_id") if "site_id" in criteria.columns else criteria
    return _scoring.monte_carlo(data, _scoring.load_profile(profile), method=method,  # type: ignore[arg-type]
                                draws=draws, top_k=top_k, seed=seed, reference=reference)


def allocate_fund(projects: pd.DataFrame | str | Path, call: str | Path | None = None,
                  mode: str = "graduatoria") -> Any:
    """Allocate the Fondo perequativo metropolitano to applications.

    ``projects``: a table (or CSV/GeoPackage/GeoJSON path) with ``project_id``, ``applicant``,
    ``requested_eur`` (euros), ``merit`` and the call's eligibility columns
    (:func:`pattogis.fund.validate_projects`); ``call``: a call name (``config/calls``) or YAML
    path (default: the settings' ``default_call``); ``mode``: ``graduatoria`` (the call's own rule), ``optimal`` (MILP portfolio) or
    ``compare``. Returns a result with ``.table`` (one row per project: granted euros, status,
    Italian reason) and ``.to_dict()``.

    Example::

        res = pattogis.allocate_fund(projects, "bando_2023", "optimal")
        res.table[["project_id", "granted_eur", "reason"]]
    """
    return _fund.run(call or get_settings().default_call, projects, mode)


__all__ = ["allocate_fund", "compute_criteria", "compute_ledger", "criteria_context",
           "derive_tu", "ledger_table", "robustness", "score"]
