"""One workspace per layer set: the layers, the criteria context (with the road graph) and the
score reference, read or built once and shared by the CLI, the API and the maps.

Everything is rebuilt when the layer set changes (another directory, or the GeoPackage rewritten:
path, modification time and size are the stamp). Thread-safe: the API's worker threads share
one :func:`default` workspace; a lock guards the cache, and the cached frames are never modified
in place by the analyses (they copy or filter first).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import geopandas as gpd

from pattogis import layers
from pattogis.criteria import CriteriaContext, compute_criteria
from pattogis.errors import InputError, NotFound
from pattogis.scoring import Profile, ProfileSpec, Reference, load_profile, monte_carlo, score

T = TypeVar("T")

ProfileLike = str | Mapping[str, Any] | ProfileSpec | Profile


class Workspace:
    """The built layer set named by the settings (``PATTOGIS_LAYERS_DIR``), with its derived
    products cached: comuni and TU, the candidates, the :class:`CriteriaContext` (road graph
    built once), the criteria of the default candidates and the score :meth:`reference`.

    Example::

        >>> ws = Workspace()
        >>> scored = ws.score_sites(profile="unione", draws=0)   # doctest: +SKIP
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._stamp: tuple[Any, ...] | None = None
        self._cache: dict[str, Any] = {}

    # -- cache ------------------------------------------------------------------------------

    @staticmethod
    def stamp() -> tuple[Any, ...]:
        """What identifies the layer set: GeoPackage path, mtime (ns) and size."""
        p = layers.gpkg_path()
        try:
            st = p.stat()
        except FileNotFoundError:
            return (str(p), None, None)
        return (str(p), st.st_mtime_ns, st.st_size)

    def _get(self, key: str, build: Callable[[], T]) -> T:
        with self._lock:
            s = self.stamp()
            if s != self._stamp:  # another layer set, or rebuilt: drop everything
                self._cache.clear()
                self._stamp = s
            if key not in self._cache:
                self._cache[key] = build()
            return self._cache[key]

    def cached(self, key: str, build: Callable[[], T]) -> T:
        """A product of the layer set built once by ``build`` and kept until the set changes
        (for the analyses' own products: the physical ledger, the fund's territory)."""
        return self._get(f"product:{key}", build)

    def invalidate(self) -> None:
        """Forget every cached product (the next call rereads the layer set)."""
        with self._lock:
            self._cache.clear()
            self._stamp = None

    # -- layers -----------------------------------------------------------------------------

    def layer(self, name: str) -> gpd.GeoDataFrame:
        """A vector layer of the set (EPSG:25832), read once. Do not modify it in place."""
        return self._get(f"layer:{name}", lambda: layers.open_layer(name))

    def base_layers(self) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
        """(comuni, territorio urbanizzato), EPSG:25832."""
        return self.layer("comuni"), self.layer("territorio_urbanizzato")

    def context(self) -> CriteriaContext:
        """The criteria context of the layer set (stations, stops, TU, rasters, road graph)."""
        return self._get("context", CriteriaContext.from_layers)

    # -- criteria and scores ----------------------------------------------------------------

    def criteria(self, candidates: gpd.GeoDataFrame | None = None, *,
                 engine: str = "local") -> gpd.GeoDataFrame:
        """Raw criteria of ``candidates`` (GeoDataFrame, EPSG:25832, a ``site_id`` column), or of
        the layer set's ``candidates`` when None (computed once and cached)."""
        if candidates is None:
            return self._get("criteria:candidates",
                             lambda: compute_criteria(self.layer("candidates"), self.context()))
        return compute_criteria(candidates, self.context(), engine=engine)

    def reference(self) -> Reference:
        """The score reference: every criterion's values over the metropolitan candidate set
        (the ``candidates`` layer). Scores normalised against it mean the same in every call."""
        def build() -> Reference:
            crit = self.criteria()
            return Reference.from_frame(
                crit, source=f"metropolitan candidate set ({len(crit)} sites, layer 'candidates'"
                f" of {layers.gpkg_path()})")
        return self._get("reference", build)

    def score_sites(self, candidates: gpd.GeoDataFrame | None = None, *,
                    profile: ProfileLike = "unione", method: str | None = None,
                    draws: int | None = None, top_k: int | None = None, seed: int | None = None,
                    crit: gpd.GeoDataFrame | None = None, engine: str = "local") -> gpd.GeoDataFrame:
        """Score sites against the metropolitan :meth:`reference`: raw criteria, normalised
        values, contributions, ``score`` (the same for a site whatever else is scored), ``rank``
        (within the sites scored) and the Monte Carlo rank interval (``rank_p5``..``rank_p95``,
        ``p_top_k``). ``draws``/``top_k``/``seed`` default to the profile's ``monte_carlo``
        section; ``draws=0`` skips it."""
        p = load_profile(profile)
        crit = crit if crit is not None else self.criteria(candidates, engine=engine)
        return score_table(crit, p, method=method, draws=draws, top_k=top_k, seed=seed,
                           reference=self.reference())

    def unione_candidates(self, unione: str) -> gpd.GeoDataFrame:
        """The candidates of one Unione (or 'Comune di X' for comuni in no Unione)."""
        from pattogis import ledger

        comuni = self.layer("comuni")
        labels = ledger.unione_label(comuni)
        members = comuni.loc[labels == unione, "istat"]
        if members.empty:
            raise NotFound(f"unknown Unione '{unione}'; known: {', '.join(sorted(set(labels)))}")
        cand = self.layer("candidates")
        cand = cand[cand["comune_istat"].isin(members)]
        if cand.empty:
            raise NotFound(f"no candidate sites in '{unione}'")
        return cand

    def candidate_criteria(self, *, unione: str | None = None,
                           site_ids: Sequence[str] | None = None) -> gpd.GeoDataFrame:
        """Raw criteria (EPSG:25832) of the layer set's candidates, restricted to one Unione's
        (:meth:`unione_candidates`) and/or to ``site_ids``; all of them when both are None.
        Read from the cached criteria of the whole set (a site's criteria do not depend on the
        other sites). An unknown id is a :class:`NotFound` naming it; duplicates count once."""
        crit = self.criteria()
        if unione is not None:
            ids = self.unione_candidates(unione)["site_id"]
            crit = crit[crit["site_id"].isin(ids)]
        if site_ids is not None:
            wanted = list(dict.fromkeys(str(i) for i in site_ids))
            unknown = [i for i in wanted if i not in set(self.criteria()["site_id"].astype(str))]
            if unknown:
                raise NotFound(f"unknown candidate site(s): {', '.join(unknown[:10])}")
            outside = [i for i in wanted if i not in set(crit["site_id"].astype(str))]
            if outside:
                raise InputError(f"site(s) not in the Unione '{unione}': {', '.join(outside[:10])}",
                                 field="site_ids")
            crit = crit[crit["site_id"].astype(str).isin(wanted)]
        return crit


def score_table(crit: gpd.GeoDataFrame, profile: ProfileLike, *, method: str | None = None,
                draws: int | None = None, top_k: int | None = None, seed: int | None = None,
                reference: Reference | None = None) -> gpd.GeoDataFrame:
    """Scores, raw criteria and Monte Carlo rank intervals of a criteria table, one row per site
    with a ``site_id`` column (the table :func:`pattogis.criteria.compute_criteria` returns)."""
    p = load_profile(profile)
    data = crit.set_index("site_id") if "site_id" in crit.columns else crit
    scored = score(data, p, method=method, reference=reference)
    raw_cols = [c for c in data.columns if c not in scored.columns and c != "geometry"]
    out = scored.join(data[raw_cols])
    draws = p.mc_draws if draws is None else draws
    if draws > 0:  # draws=0 skips the rank interval (fund demo, quick scoring)
        mc = monte_carlo(data, p, method=method, draws=draws, top_k=top_k, seed=seed,
                         reference=reference)
        out = out.join(mc.drop(columns=[c for c in mc.columns if c in scored.columns]))
    out = gpd.GeoDataFrame(out, geometry="geometry", crs=crit.crs) if "geometry" in out else out
    out.attrs = scored.attrs
    return out.reset_index().rename(columns={"index": "site_id"})


_DEFAULT: Workspace | None = None
_DEFAULT_LOCK = threading.Lock()


def default() -> Workspace:
    """The process's workspace (the CLI's and the API's)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = Workspace()
        return _DEFAULT


__all__ = ["Workspace", "default", "score_table"]
