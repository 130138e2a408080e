"""Transparent multi-criteria scoring of regeneration candidate sites.

Input: one row per candidate site with the raw criterion values produced by
``pattogis.criteria`` (column names and units: :func:`known_criteria`; missing data is NaN).
Output: one row per site with the score, the rank, every criterion's normalised value and
contribution, the exclusions (with an Italian reason) and the list of criteria that were missing.

The pieces, one module per concern, each a plain function usable by the CLI and the API
(every public name is re-exported here, so ``from pattogis.scoring import score`` works):

* ``normalise``: one criterion: :func:`minmax`, :func:`rank_normalise`, :func:`target_normalise`
  (and the dispatcher :func:`normalise`), within the set or against a :class:`Reference`;
* ``profiles``: weight profiles (``config/profiles/*.yaml`` or posted by a client), typed by the
  pydantic model :class:`ProfileSpec`, validated by :func:`load_profile` /
  :func:`validate_profile`, re-weighted by :func:`with_weights`;
* ``methods``: :func:`score`: weighted sum (``wsum``) or TOPSIS, with per-criterion contributions;
* ``robustness``: :func:`monte_carlo`: Dirichlet perturbation of the weights, rank intervals and
  P(top k), chunked so memory does not grow with the number of draws;
* ``report``: :func:`compare` (sites side by side, Italian labels), :func:`to_records`,
  :func:`write_scores`.

Conventions (stated once, relied on everywhere):

* **What a score means.** With a ``reference`` (what the CLI, the API and the maps use: the
  criteria of the metropolitan candidate set, :meth:`pattogis.workspace.Workspace.reference`),
  every criterion is normalised against the reference's values: a site's ``score``, ``norm_*``
  and ``contrib_*`` depend on that site and the profile only, so they are the same whatever else
  is scored with it; TOPSIS then uses the fixed ideal 1 and anti-ideal 0. ``rank`` is always the
  rank **within the set scored** (1 = best of those sites). Without a reference (the library
  default, as pymcdm) bounds are taken within the set scored.
* Normalised values lie in [0, 1], 1 = best. Within the set, bounds (min, max, ranks, TOPSIS
  ideals) are taken over the **eligible** sites only (not excluded), so an excluded site never
  moves the others; against a reference, values beyond its range are clipped to [0, 1].
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

from pattogis.scoring.methods import METHODS, score
from pattogis.scoring.normalise import (
    DIRECTIONS,
    NORMALISATIONS,
    Reference,
    minmax,
    normalise,
    rank_normalise,
    target_normalise,
)
from pattogis.scoring.profiles import (
    MISSING_POLICIES,
    Criterion,
    CriterionSpec,
    Exclusion,
    ExclusionSpec,
    MissingSpec,
    MonteCarloSpec,
    Profile,
    ProfileSpec,
    known_criteria,
    list_profiles,
    load_profile,
    validate_profile,
    with_weights,
)
from pattogis.scoring.report import compare, to_records, write_scores
from pattogis.scoring.robustness import draw_weights, monte_carlo

__all__ = [
    "DIRECTIONS",
    "METHODS",
    "MISSING_POLICIES",
    "NORMALISATIONS",
    "Criterion",
    "CriterionSpec",
    "Exclusion",
    "ExclusionSpec",
    "MissingSpec",
    "MonteCarloSpec",
    "Profile",
    "ProfileSpec",
    "Reference",
    "compare",
    "draw_weights",
    "known_criteria",
    "list_profiles",
    "load_profile",
    "minmax",
    "monte_carlo",
    "normalise",
    "rank_normalise",
    "score",
    "target_normalise",
    "to_records",
    "validate_profile",
    "with_weights",
    "write_scores",
]
