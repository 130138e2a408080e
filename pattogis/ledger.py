"""The LR 24/2017 land-budget ledger (legal) and the physical sealing ledger beside it.

Legal ledger, at every level: metropolitan envelope → pools (PTM art. 49: 2% metropolitano, 1%
locale) → Unione → comune → proposal. Every quantity is in hectares.

- ``tu_ha``: baseline territorio urbanizzato of the comune;
- ``quota_ha``: ``quota_share`` (3%) × TU — the comune's share of the envelope;
- pool ``locale``: ``share`` (1%) × the comune's TU, assigned to the comune itself;
- pool ``metropolitano``: ``share`` (2%) × the total TU, held at metropolitan level, optionally
  assigned to Unioni or comuni by Accordo territoriale (``law.yaml`` ``metro_assignments``);
- a proposal consumes the part of its polygon OUTSIDE the TU (a proposal straddling the perimeter
  consumes only its outside part), unless its type does not consume or it has an exemption
  category (then the outside part is listed as ``exempt_ha``, not consumed);
- ``desigillazione`` credits the part outside the TU back to the proposal's pool;
- remaining = quota − consumed + desealed, at every level; sums close from proposals up;
- a sforamento (overrun) is flagged at every level: ``overrun``, ``overrun_ha`` and
  ``overrun_year`` (the first year the cumulative net exceeds the envelope);
- proposals a scenario or a status leaves out are kept in ``Ledger.left_out`` with the reason,
  so no face drops them silently.

The physical ledger (sealed surface from buildings and roads, or a sealing raster) is kept in
separate tables and never enters the legal figures: LR 24 counts only consumption outside the TU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from pattogis import config
from pattogis.errors import InputError, NotFound

POOLS = ("locale", "metropolitano")
TOL_HA = 1e-6


def unione_label(comuni: pd.DataFrame) -> pd.Series:
    """Unione name per comune; comuni in no Unione are a unit of their own ('Comune di X')."""
    return comuni["unione"].where(comuni["unione"].notna() & (comuni["unione"] != ""),
                                  "Comune di " + comuni["name"])


def measure(proposals: gpd.GeoDataFrame, tu: gpd.GeoDataFrame,
            law: dict[str, Any] | None = None) -> gpd.GeoDataFrame:
    """Measure each proposal against the TU of its comune.

    Adds ``area_ha``, ``inside_tu_ha``, ``outside_tu_ha``, ``consumed_ha``, ``desealed_ha``,
    ``exempt_ha``. Proposals must be validated (one comune each, working CRS).
    """
    law = law or config.law()
    p = proposals.copy()
    if p.empty:
        for c in ("area_ha", "inside_tu_ha", "outside_tu_ha", "consumed_ha", "desealed_ha", "exempt_ha"):
            p[c] = pd.Series(dtype=float)
        return p
    if p.crs != tu.crs:
        p = p.to_crs(tu.crs)
    tu_by = tu.set_index("comune_istat").geometry
    missing = sorted(set(p["comune_istat"]) - set(tu_by.index))
    if missing:
        raise InputError(f"no territorio urbanizzato for comuni {missing}", field="comune_istat")
    tu_geom = tu_by.reindex(p["comune_istat"]).values
    geom = p.geometry.values
    area = shapely.area(geom)
    inside = shapely.area(shapely.intersection(geom, tu_geom))
    p["area_ha"] = area / 1e4
    p["inside_tu_ha"] = inside / 1e4
    p["outside_tu_ha"] = np.maximum(area - inside, 0.0) / 1e4
    types = law["proposal_types"]
    consumes = p["ptype"].map(lambda t: bool(types[t].get("consumes", False)))
    credits = p["ptype"].map(lambda t: bool(types[t].get("credits", False)))
    exempt = p["exemption"].notna() & (p["exemption"].astype(str) != "")
    p["consumed_ha"] = np.where(consumes & ~exempt, p["outside_tu_ha"], 0.0)
    p["exempt_ha"] = np.where(consumes & exempt, p["outside_tu_ha"], 0.0)
    p["desealed_ha"] = np.where(credits, p["outside_tu_ha"], 0.0)
    return p


@dataclass
class Ledger:
    """The legal ledger of one scenario at every level, plus the measured proposals."""

    scenario: str
    metro: pd.DataFrame        # one row per pool + 'totale'
    unioni: pd.DataFrame
    comuni: pd.DataFrame
    proposals: gpd.GeoDataFrame
    assignments: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)
    left_out: pd.DataFrame = field(default_factory=pd.DataFrame)  # proposals not counted, why

    def check(self) -> None:
        """Assert the sums close at every level; raise AssertionError naming where not."""
        c, u, m = self.comuni, self.unioni, self.metro.set_index("pool")
        for col in ("consumed_locale_ha", "consumed_metropolitano_ha", "desealed_ha", "exempt_ha",
                    "tu_ha", "local_quota_ha"):
            tot_c = c[col].sum()
            tot_u = u[col].sum()
            if abs(tot_c - tot_u) > TOL_HA:
                raise AssertionError(f"{col}: comuni {tot_c} != unioni {tot_u}")
        for col in ("consumed_ha", "desealed_ha", "exempt_ha"):
            tot_p = self.proposals[col].sum() if len(self.proposals) else 0.0
            tot_m = m.loc["totale", col]
            if abs(tot_p - tot_m) > TOL_HA:
                raise AssertionError(f"{col}: proposals {tot_p} != metro {tot_m}")
        rem = m["quota_ha"] - m["consumed_ha"] + m["desealed_ha"]
        if (rem - m["remaining_ha"]).abs().max() > TOL_HA:
            raise AssertionError("metro: remaining != quota - consumed + desealed")
        if abs(m.loc[list(POOLS), "quota_ha"].sum() - m.loc["totale", "quota_ha"]) > TOL_HA:
            raise AssertionError("pools do not add up to the envelope")
        if abs(c["local_quota_ha"].sum() - m.loc["locale", "quota_ha"]) > TOL_HA:
            raise AssertionError("local pool != sum of the comuni's local quotas")

    def comune(self, istat: str) -> dict[str, Any]:
        row = self.comuni[self.comuni["istat"] == istat]
        if row.empty:
            raise NotFound(f"unknown comune '{istat}'")
        out = row.iloc[0].to_dict()
        props = self.proposals[self.proposals["comune_istat"] == istat]
        out["proposals"] = props.drop(columns="geometry").to_dict(orient="records")
        return out

    def unione(self, name: str) -> dict[str, Any]:
        row = self.unioni[self.unioni["unione"] == name]
        if row.empty:
            raise NotFound(f"unknown Unione '{name}'; known: {', '.join(self.unioni['unione'])}")
        out = row.iloc[0].to_dict()
        out["comuni"] = self.comuni[self.comuni["unione"] == name].to_dict(orient="records")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "units": "ha",
            "params": self.params,
            "metro": self.metro.to_dict(orient="records"),
            "unioni": self.unioni.to_dict(orient="records"),
            "comuni": self.comuni.to_dict(orient="records"),
            "proposals": self.proposals.drop(columns="geometry").to_dict(orient="records"),
            "assignments": self.assignments.to_dict(orient="records"),
            "left_out": left_out_summary(self.left_out),
        }


def _assignments(law: dict[str, Any], comuni: pd.DataFrame) -> pd.DataFrame:
    rows = law.get("metro_assignments") or []
    df = pd.DataFrame(rows, columns=["level", "name", "ha", "accordo"])
    if df.empty:
        return df.assign(ha=df["ha"].astype(float))
    unioni = set(unione_label(comuni))
    codes = set(comuni["istat"])
    for i, r in df.iterrows():
        ok = (r["level"] == "unione" and r["name"] in unioni) or (r["level"] == "comune" and str(r["name"]) in codes)
        if not ok:
            raise InputError(f"metro assignment to unknown {r['level']} '{r['name']}'",
                             file=law.get("_source"), rows=[int(i) + 1], field="metro_assignments")
    df["ha"] = df["ha"].astype(float)
    return df


def compute(comuni: pd.DataFrame, tu: gpd.GeoDataFrame, proposals: gpd.GeoDataFrame | None = None,
            *, scenario: str = "base", law: dict[str, Any] | None = None,
            statuses: list[str] | None = None) -> Ledger:
    """Compute the legal ledger of one scenario.

    ``comuni``: istat, name, unione. ``tu``: comune_istat, geometry (baseline TU, projected CRS;
    its ``area_ha`` is measured when the frame has none).
    ``proposals``: validated proposals (any scenario column is filtered to ``scenario``; statuses
    outside ``law.yaml`` ``ledger_statuses``, e.g. withdrawn, are left out).
    """
    law = law or config.law()
    statuses = statuses or list(law.get("ledger_statuses", ["bozza", "presentata", "approvata"]))
    share = float(law["quota_share"])
    pshare = {k: float(v["share"]) for k, v in law["pools"].items()}
    if set(pshare) != set(POOLS):
        raise InputError(f"{law.get('_source')}: pools must be exactly {POOLS}", field="pools")

    c = pd.DataFrame(comuni[["istat", "name", "unione"]]).copy()
    c["unione"] = unione_label(c)
    if "area_ha" not in tu.columns:  # a TU as a user hands it: measure it (metric CRS only)
        if tu.crs is None or not tu.crs.is_projected:
            raise InputError("the TU needs a projected (metric) CRS to measure its area, e.g. "
                             f"EPSG:25832; got {tu.crs}", field="territorio_urbanizzato")
        tu = tu.assign(area_ha=tu.geometry.area / 1e4)
    tu_ha = tu.groupby("comune_istat")["area_ha"].sum()
    c["tu_ha"] = c["istat"].map(tu_ha).fillna(0.0)
    c["quota_ha"] = share * c["tu_ha"]
    c["local_quota_ha"] = pshare["locale"] * c["tu_ha"]

    left_out = pd.DataFrame(columns=["proposal_id", "comune_istat", "scenario", "status", "reason"])
    if proposals is None or proposals.empty:
        p = gpd.GeoDataFrame({"proposal_id": [], "comune_istat": [], "ptype": [], "pool": [],
                              "exemption": [], "status": [], "scenario": []}, geometry=[], crs=tu.crs)
    else:
        p = proposals
        # Nothing is dropped silently: what a scenario or status leaves out is listed with why.
        other = p["scenario"] != scenario if "scenario" in p.columns else pd.Series(False, p.index)
        not_counted = ~p["status"].isin(statuses) if "status" in p.columns else pd.Series(False, p.index)
        out = other | not_counted
        if out.any():
            lo = pd.DataFrame({c: p.loc[out, c] if c in p.columns else None
                               for c in ("proposal_id", "comune_istat", "scenario", "status")})
            lo["reason"] = np.where(other[out], "altro scenario", "stato non conteggiato")
            left_out = lo.drop_duplicates("proposal_id").reset_index(drop=True)
        p = p[~out]
    p = measure(gpd.GeoDataFrame(p, crs=p.crs or tu.crs), tu, law)

    def per_comune(col: str, pool: str | None = None) -> pd.Series:
        q = p if pool is None else p[p["pool"] == pool]
        return c["istat"].map(q.groupby("comune_istat")[col].sum()).fillna(0.0)

    for pool in POOLS:
        c[f"consumed_{pool}_ha"] = per_comune("consumed_ha", pool)
        c[f"desealed_{pool}_ha"] = per_comune("desealed_ha", pool)
    c["consumed_ha"] = c["consumed_locale_ha"] + c["consumed_metropolitano_ha"]
    c["desealed_ha"] = c["desealed_locale_ha"] + c["desealed_metropolitano_ha"]
    c["exempt_ha"] = per_comune("exempt_ha")
    c["n_proposals"] = c["istat"].map(p.groupby("comune_istat").size()).fillna(0).astype(int)
    c["remaining_locale_ha"] = c["local_quota_ha"] - c["consumed_locale_ha"] + c["desealed_locale_ha"]

    asg = _assignments(law, c)
    c["metro_assigned_ha"] = c["istat"].map(
        asg[asg["level"] == "comune"].groupby("name")["ha"].sum()).fillna(0.0) if len(asg) else 0.0

    sums = ["tu_ha", "quota_ha", "local_quota_ha", "consumed_locale_ha", "consumed_metropolitano_ha",
            "desealed_locale_ha", "desealed_metropolitano_ha", "consumed_ha", "desealed_ha",
            "exempt_ha", "n_proposals", "remaining_locale_ha", "metro_assigned_ha"]
    u = c.groupby("unione", as_index=False)[sums].sum()
    u["n_comuni"] = u["unione"].map(c.groupby("unione").size())
    if len(asg):
        u["metro_assigned_ha"] += u["unione"].map(
            asg[asg["level"] == "unione"].groupby("name")["ha"].sum()).fillna(0.0)
    u["remaining_metro_assigned_ha"] = u["metro_assigned_ha"] - u["consumed_metropolitano_ha"] + u[
        "desealed_metropolitano_ha"]

    total_tu = c["tu_ha"].sum()
    metro_rows = []
    for pool in POOLS:
        quota = pshare[pool] * total_tu
        cons, des = c[f"consumed_{pool}_ha"].sum(), c[f"desealed_{pool}_ha"].sum()
        ex = p.loc[p["pool"] == pool, "exempt_ha"].sum() if len(p) else 0.0
        metro_rows.append({"pool": pool, "label": law["pools"][pool].get("label", pool),
                           "share": pshare[pool], "quota_ha": quota, "consumed_ha": cons,
                           "desealed_ha": des, "exempt_ha": ex,
                           "remaining_ha": quota - cons + des})
    m = pd.DataFrame(metro_rows)
    tot = {"pool": "totale", "label": "Totale metropolitano", "share": share,
           "quota_ha": share * total_tu, "consumed_ha": m["consumed_ha"].sum(),
           "desealed_ha": m["desealed_ha"].sum(), "exempt_ha": m["exempt_ha"].sum()}
    tot["remaining_ha"] = tot["quota_ha"] - tot["consumed_ha"] + tot["desealed_ha"]
    m = pd.concat([m, pd.DataFrame([tot])], ignore_index=True)
    m["tu_ha"] = total_tu
    m["metro_assigned_ha"] = [0.0, float(asg["ha"].sum()) if len(asg) else 0.0, float(asg["ha"].sum()) if len(asg) else 0.0]
    metro_free = float(m.loc[m["pool"] == "metropolitano", "quota_ha"].iloc[0] - m["metro_assigned_ha"].iloc[1])
    m["unassigned_ha"] = np.where(m["pool"] == "locale", 0.0, metro_free)
    if (m["unassigned_ha"] < -TOL_HA).any():
        raise InputError("metro assignments exceed the metropolitan pool",
                         file=law.get("_source"), field="metro_assignments")

    _flag_overruns(c, u, m, p, law)
    led = Ledger(scenario, m, u, c, p, asg,
                 params={"quota_share": share, "pools": pshare, "statuses": statuses,
                         "law": law.get("law", ""), "baseline_date": law.get("baseline_date")},
                 left_out=left_out)
    led.check()
    return led


def left_out_summary(left_out: pd.DataFrame) -> dict[str, Any]:
    """How many proposals a ledger did not count, by scenario and by status (for every face)."""
    if left_out is None or left_out.empty:
        return {"n": 0, "by_scenario": {}, "by_status": {}}
    sc = left_out[left_out["reason"] == "altro scenario"]
    st = left_out[left_out["reason"] != "altro scenario"]
    return {"n": int(len(left_out)),
            "by_scenario": {str(k): int(v) for k, v in sc["scenario"].value_counts().items()},
            "by_status": {str(k): int(v) for k, v in st["status"].value_counts().items()}}


def _first_overrun_year(p: gpd.GeoDataFrame, key: pd.Series, envelope: pd.Series) -> pd.Series:
    """First year in which each unit's cumulative net consumption (consumed − desealed, all
    pools, by proposal date) exceeds its envelope; NaN when never. ``key``: the unit of each
    proposal (aligned with ``p``); ``envelope``: ha per unit."""
    if p.empty:
        return pd.Series(np.nan, index=envelope.index, dtype=float)
    years = pd.to_datetime(p["date"]).dt.year if "date" in p.columns else pd.Series(0, index=p.index)
    net = (p["consumed_ha"] - p["desealed_ha"]).groupby([key.to_numpy(), years.to_numpy()]).sum()
    net.index.names = ["unit", "year"]
    cum = net.groupby(level="unit").cumsum().reset_index(name="cum")
    cum["env"] = cum["unit"].map(envelope)
    over = cum[cum["cum"] > cum["env"] + TOL_HA]
    return over.groupby("unit")["year"].min().reindex(envelope.index).astype(float)


def _flag_overruns(c: pd.DataFrame, u: pd.DataFrame, m: pd.DataFrame, p: gpd.GeoDataFrame,
                   law: dict[str, Any]) -> None:
    """Flag a sforamento at every level, in place, with the year it happens.

    Comune and Unione: the envelope is the local quota plus the metropolitan quota assigned to
    it (the same envelope as :func:`trajectory`); ``remaining_ha`` = envelope − consumed +
    desealed over all pools, ``overrun_ha`` = what exceeds it (0 when none), ``overrun`` and
    ``overrun_year`` (first year the cumulative net exceeds the envelope). Metro: per pool and in
    total, ``overrun`` when the remaining is negative; ``n_comuni_overrun`` counts the comuni in
    sforamento.
    """
    c["remaining_ha"] = c["local_quota_ha"] + c["metro_assigned_ha"] - c["consumed_ha"] + c["desealed_ha"]
    c["overrun_ha"] = np.maximum(-c["remaining_ha"], 0.0).where(c["remaining_ha"] < -TOL_HA, 0.0)
    c["overrun"] = c["overrun_ha"] > 0
    key_c = p["comune_istat"] if len(p) else pd.Series(dtype=object)
    c["overrun_year"] = c["istat"].map(_first_overrun_year(
        p, key_c, (c["local_quota_ha"] + c["metro_assigned_ha"]).set_axis(c["istat"]))).astype("Int64")
    u["remaining_ha"] = u["local_quota_ha"] + u["metro_assigned_ha"] - u["consumed_ha"] + u["desealed_ha"]
    u["overrun_ha"] = np.maximum(-u["remaining_ha"], 0.0).where(u["remaining_ha"] < -TOL_HA, 0.0)
    u["overrun"] = u["overrun_ha"] > 0
    u["n_comuni_overrun"] = u["unione"].map(c.groupby("unione")["overrun"].sum()).fillna(0).astype(int)
    key_u = p["comune_istat"].map(c.set_index("istat")["unione"]) if len(p) else pd.Series(dtype=object)
    u["overrun_year"] = u["unione"].map(_first_overrun_year(
        p, key_u, (u["local_quota_ha"] + u["metro_assigned_ha"]).set_axis(u["unione"]))).astype("Int64")
    m["overrun_ha"] = np.maximum(-m["remaining_ha"], 0.0).where(m["remaining_ha"] < -TOL_HA, 0.0)
    m["overrun"] = m["overrun_ha"] > 0
    m["n_comuni_overrun"] = int(c["overrun"].sum())
    tot = float(m.loc[m["pool"] == "totale", "quota_ha"].iloc[0])
    key_m = pd.Series("totale", index=p.index)
    year_tot = _first_overrun_year(p, key_m, pd.Series({"totale": tot}))["totale"]
    m["overrun_year"] = pd.array([int(year_tot) if (pl == "totale" and pd.notna(year_tot)) else pd.NA
                                  for pl in m["pool"]], dtype="Int64")


# --- trajectory to 2050, scenarios, monitoring ---------------------------------------------------


def trajectory(led: Ledger, *, level: str = "metro", key: str | None = None,
               law: dict[str, Any] | None = None) -> pd.DataFrame:
    """Year-by-year consumption from the baseline year to the horizon (2050) and beyond.

    ``level``: 'metro' (whole envelope), 'unione' (key = name: its local pools plus its
    metro assignment) or 'comune' (key = istat: its local pool). Columns: year, consumed_ha,
    desealed_ha, net_ha, cumulative_net_ha, envelope_ha, remaining_ha, overdraft (cumulative net
    over the envelope), after_horizon_net_ha and zero_balance_ok (after the horizon the balance
    must be zero: no net consumption).
    """
    law = law or config.law()
    y0 = pd.Timestamp(law["baseline_date"]).year
    horizon = int(law["horizon_year"])
    p = led.proposals
    if level == "metro":
        env = float(led.metro.set_index("pool").loc["totale", "quota_ha"])
    elif level == "comune":
        row = led.comuni[led.comuni["istat"] == key]
        if row.empty:
            raise NotFound(f"unknown comune '{key}'")
        env = float(row["local_quota_ha"].iloc[0] + row["metro_assigned_ha"].iloc[0])
        p = p[p["comune_istat"] == key]
    elif level == "unione":
        row = led.unioni[led.unioni["unione"] == key]
        if row.empty:
            raise NotFound(f"unknown Unione '{key}'")
        env = float(row["local_quota_ha"].iloc[0] + row["metro_assigned_ha"].iloc[0])
        members = led.comuni.loc[led.comuni["unione"] == key, "istat"]
        p = p[p["comune_istat"].isin(members)]
    else:
        raise InputError(f"unknown level '{level}'", field="level", hint="metro, unione or comune")
    years = pd.to_datetime(p["date"]).dt.year if len(p) else pd.Series(dtype=int)
    last = max(horizon, int(years.max()) if len(years) else horizon)
    idx = pd.RangeIndex(y0, last + 1, name="year")
    cons = p.groupby(years)["consumed_ha"].sum().reindex(idx, fill_value=0.0) if len(p) else pd.Series(0.0, idx)
    des = p.groupby(years)["desealed_ha"].sum().reindex(idx, fill_value=0.0) if len(p) else pd.Series(0.0, idx)
    early = (years < y0).sum() if len(years) else 0
    if early:
        raise InputError(f"{int(early)} proposal(s) dated before the baseline {law['baseline_date']}",
                         field="date")
    t = pd.DataFrame({"consumed_ha": cons, "desealed_ha": des})
    t["net_ha"] = t["consumed_ha"] - t["desealed_ha"]
    t["cumulative_net_ha"] = t["net_ha"].cumsum()
    t["envelope_ha"] = env
    t["remaining_ha"] = env - t["cumulative_net_ha"]
    t["overdraft"] = t["cumulative_net_ha"] > env + TOL_HA
    after = t.index > horizon
    t["after_horizon_net_ha"] = np.where(after, t["net_ha"].where(after, 0).cumsum(), 0.0)
    t["zero_balance_ok"] = ~(after & (t["after_horizon_net_ha"] > TOL_HA))
    return t.reset_index()


def compare(a: Ledger, b: Ledger, *, comuni: list[str] | None = None) -> pd.DataFrame:
    """Two scenarios side by side per comune: remaining quota, consumed, desealed, overrun.

    ``delta_*`` = scenario ``a`` minus scenario ``b`` (the scenario studied minus the one it is
    compared with, e.g. ``pug − base``): a positive ``delta_consumed_ha`` is more consumption in
    ``a``. ``comuni``: ISTAT codes to keep (a comune, an Unione's members); all when None.
    """
    cols = ["consumed_ha", "desealed_ha", "exempt_ha", "remaining_locale_ha", "remaining_ha",
            "overrun_ha", "n_proposals"]
    left = a.comuni.set_index("istat")[["name", "unione", "local_quota_ha"] + cols]
    right = b.comuni.set_index("istat")[cols]
    if comuni is not None:
        left = left[left.index.isin(comuni)]
    out = left.merge(right, left_index=True, right_index=True,
                     suffixes=(f"__{a.scenario}", f"__{b.scenario}"))
    out.columns = [c.replace("__", "_") for c in out.columns]
    for col in cols:
        out[f"delta_{col}"] = out[f"{col}_{a.scenario}"] - out[f"{col}_{b.scenario}"]
    out = out.reset_index()
    out.attrs["sign"] = f"delta = {a.scenario} − {b.scenario}"
    return out


def monitoring(proposals: gpd.GeoDataFrame, tu: gpd.GeoDataFrame, comuni: pd.DataFrame, *,
               law: dict[str, Any] | None = None, comune: str | None = None,
               statuses: list[str] | None = None) -> pd.DataFrame:
    """Six-monthly monitoring table (LR 24 art. 5) per comune: the proposals approved in each
    period (``monitoring_statuses`` in law.yaml, or ``statuses``) and their effect in ha:
    consumed, desealed, exempt, cumulative net, the comune's envelope (local quota + metro
    assignment), what remains and whether it is overrun (``overrun``, ``overrun_ha``).
    ``comune``: one ISTAT code. Periods are ``YYYY-S1`` (January-June) and ``YYYY-S2``.
    """
    law = law or config.law()
    statuses = statuses or law.get("monitoring_statuses", ["approvata"])
    cols = ["istat", "name", "period", "n_approved", "consumed_ha", "desealed_ha", "exempt_ha",
            "cumulative_net_ha", "envelope_ha", "remaining_ha", "overrun_ha", "overrun"]
    p = proposals[proposals["status"].isin(statuses)] if len(proposals) else proposals
    if comune is not None and len(p):
        p = p[p["comune_istat"] == comune]
    if p.empty:
        return pd.DataFrame(columns=cols)
    p = measure(p, tu, law)
    months = int(law.get("monitoring_period_months", 6))
    d = pd.to_datetime(p["date"])
    half = (d.dt.month - 1) // months + 1
    p = p.assign(period=d.dt.year.astype(str) + "-S" + half.astype(str))
    g = p.groupby(["comune_istat", "period"]).agg(
        n_approved=("proposal_id", "nunique"), consumed_ha=("consumed_ha", "sum"),
        desealed_ha=("desealed_ha", "sum"), exempt_ha=("exempt_ha", "sum")).reset_index()
    g = g.sort_values(["comune_istat", "period"])
    g["cumulative_net_ha"] = (g["consumed_ha"] - g["desealed_ha"]).groupby(g["comune_istat"]).cumsum()
    names = comuni.set_index("istat")["name"]
    g.insert(1, "name", g["comune_istat"].map(names))
    tu_ha = tu.set_index("comune_istat")["area_ha"]
    pshare = float(law["pools"]["locale"]["share"])
    asg = _assignments(law, pd.DataFrame(comuni[["istat", "name", "unione"]]).assign(
        unione=unione_label(comuni)))
    metro = asg[asg["level"] == "comune"].groupby("name")["ha"].sum() if len(asg) else pd.Series(dtype=float)
    g["envelope_ha"] = pshare * g["comune_istat"].map(tu_ha).fillna(0.0) + g["comune_istat"].map(metro).fillna(0.0)
    g["remaining_ha"] = g["envelope_ha"] - g["cumulative_net_ha"]
    g["overrun_ha"] = np.maximum(-g["remaining_ha"], 0.0).where(g["remaining_ha"] < -TOL_HA, 0.0)
    g["overrun"] = g["overrun_ha"] > 0
    return g.rename(columns={"comune_istat": "istat"}).reset_index(drop=True)[cols]


# --- physical ledger -----------------------------------------------------------------------------


def _road_surfaces(edges: gpd.GeoDataFrame, params: dict[str, Any]) -> gpd.GeoDataFrame:
    widths = params["road_width_m"]
    hw = edges["highway"].astype(str).str.strip("[]'\" ").str.split("'").str[0]
    w = hw.map(widths).fillna(widths["default"]).astype(float)
    # OSMnx keeps both directions of a two-way street as two edges: count the surface once.
    key = np.minimum(edges["u"], edges["v"]).astype(str) + "-" + np.maximum(edges["u"], edges["v"]).astype(str)
    first = ~key.duplicated()
    return gpd.GeoDataFrame({"width_m": w[first]}, geometry=edges.geometry[first].values, crs=edges.crs)


def physical_ledger(comuni: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame,
                    road_edges: gpd.GeoDataFrame | None = None, *,
                    sealing_raster: str | Path | None = None,
                    params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Sealed surface per comune (ha), never mixed with the legal ledger.

    Vector estimate: building footprints + road carriageways (length × class width) where the
    road network is known. With ``sealing_raster`` (sealed fraction per cell, 0..1 or 0..100),
    the raster's area-weighted sum replaces the estimate. ``source`` says which.
    """
    params = params or config.load("physical.yaml")
    out = pd.DataFrame({"istat": comuni["istat"].to_numpy(), "name": comuni["name"].to_numpy(),
                        "area_ha": (comuni.geometry.area / 1e4).to_numpy()})
    if sealing_raster is not None:
        import rasterio
        from exactextract import exact_extract

        # "sum" weights each cell's value by the fraction of it inside the comune (exact coverage).
        df = exact_extract(str(sealing_raster), comuni[["istat", "geometry"]], ["sum", "max"],
                           include_cols=["istat"], output="pandas")
        scale = 100.0 if df["max"].max() > 1.0 else 1.0
        with rasterio.open(sealing_raster) as r:
            px = abs(r.transform.a * r.transform.e)
        out["sealed_ha"] = out["istat"].map(df.set_index("istat")["sum"] * px / scale / 1e4)
        out["sealed_buildings_ha"] = np.nan
        out["sealed_roads_ha"] = np.nan
        out["source"] = f"raster:{Path(sealing_raster).name}"
    else:
        b = buildings.groupby("comune_istat")["area_m2"].sum() / 1e4
        out["sealed_buildings_ha"] = out["istat"].map(b).fillna(0.0)
        out["sealed_roads_ha"] = 0.0
        out["source"] = "edifici"
        if road_edges is not None and len(road_edges):
            roads = _road_surfaces(road_edges, params)
            j = gpd.overlay(roads.assign(rid=np.arange(len(roads))), comuni[["istat", "geometry"]],
                            how="intersection", keep_geom_type=True)
            r = (j.geometry.length * j["width_m"]).groupby(j["istat"]).sum() / 1e4
            out["sealed_roads_ha"] = out["istat"].map(r).fillna(0.0)
            out.loc[out["istat"].isin(r.index), "source"] = "edifici+strade"
        out["sealed_ha"] = out["sealed_buildings_ha"] + out["sealed_roads_ha"]
        no_b = ~out["istat"].isin(b.index)
        out.loc[no_b & (out["sealed_roads_ha"] > 0), "source"] = "strade (edifici mancanti)"
        out.loc[no_b & (out["sealed_roads_ha"] == 0), "source"] = "nessun dato"
    out["sealed_share"] = out["sealed_ha"] / out["area_ha"]
    return out


def physical_proposals(proposals: gpd.GeoDataFrame, buildings: gpd.GeoDataFrame) -> pd.DataFrame:
    """Sealed surface (ha, buildings) inside each proposal polygon, for the physical ledger."""
    if proposals.empty:
        return pd.DataFrame(columns=["proposal_id", "part", "sealed_buildings_ha"])
    geoms = proposals.geometry.values
    pi, bi = buildings.sindex.query(geoms, predicate="intersects")
    inter = shapely.area(shapely.intersection(geoms[pi], buildings.geometry.values[bi]))
    sealed = np.bincount(pi, weights=inter, minlength=len(proposals)) / 1e4
    part = proposals["part"].to_numpy() if "part" in proposals.columns else np.ones(len(proposals), int)
    return pd.DataFrame({"proposal_id": proposals["proposal_id"].to_numpy(), "part": part,
                         "sealed_buildings_ha": sealed})
