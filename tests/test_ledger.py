"""Known-answer tests of the legal ledger on the hand-made territory (see conftest)."""

from __future__ import annotations

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from pattogis import ledger, proposals
from pattogis.errors import InputError

CRS = "EPSG:25832"


def props(rows: list[dict]) -> gpd.GeoDataFrame:
    geoms = [r.pop("geometry") for r in rows]
    return gpd.GeoDataFrame(rows, geometry=geoms, crs=CRS)


def validated(toy, rows, **kw):
    return proposals.validate_proposals(props(rows), toy["comuni"], **kw)


def test_half_outside_consumes_exactly_half(toy_territory):
    # 200 m x 100 m = 2 ha, straddling A's TU edge at x=1000: 1 ha inside, 1 ha outside.
    p = validated(toy_territory, [{"ptype": "nuova_urbanizzazione", "date": "2024-03-01",
                                   "geometry": shapely.box(900, 100, 1100, 200)}])
    led = ledger.compute(toy_territory["comuni"], toy_territory["tu"], p)
    row = led.proposals.iloc[0]
    assert row["area_ha"] == pytest.approx(2.0)
    assert row["inside_tu_ha"] == pytest.approx(1.0)
    assert row["consumed_ha"] == pytest.approx(1.0)
    a = led.comuni.set_index("istat").loc["999001"]
    # local quota = 1% of 100 ha TU = 1 ha; consumed 1 ha → 0 left
    assert a["local_quota_ha"] == pytest.approx(1.0)
    assert a["remaining_locale_ha"] == pytest.approx(0.0)
    assert a["quota_ha"] == pytest.approx(3.0)


def test_inside_tu_consumes_nothing(toy_territory):
    p = validated(toy_territory, [{"ptype": "rigenerazione",
                                   "geometry": shapely.box(100, 100, 300, 300)}])
    led = ledger.compute(toy_territory["comuni"], toy_territory["tu"], p)
    assert led.proposals["consumed_ha"].sum() == 0.0
    assert led.proposals["inside_tu_ha"].iloc[0] == pytest.approx(4.0)


def test_desealing_credits_and_exemption_listed(toy_territory):
    rows = [
        # 0.5 ha consumed outside B's TU (x > 2500)
        {"ptype": "nuova_urbanizzazione", "geometry": shapely.box(2600, 0, 2700, 50)},
        # 0.25 ha desealed outside B's TU
        {"ptype": "desigillazione", "geometry": shapely.box(3000, 0, 3050, 50)},
        # 1 ha outside B's TU but exempt (public works)
        {"ptype": "nuova_urbanizzazione", "exemption": "opere_pubbliche",
         "geometry": shapely.box(3500, 0, 3600, 100)},
    ]
    led = ledger.compute(toy_territory["comuni"], toy_territory["tu"], validated(toy_territory, rows))
    b = led.comuni.set_index("istat").loc["999002"]
    assert b["consumed_ha"] == pytest.approx(0.5)
    assert b["desealed_ha"] == pytest.approx(0.25)
    assert b["exempt_ha"] == pytest.approx(1.0)
    # local quota of B: 1% of 50 ha = 0.5 ha; remaining = 0.5 - 0.5 + 0.25
    assert b["remaining_locale_ha"] == pytest.approx(0.25)
    assert b["n_proposals"] == 3  # the exempt one is listed


def test_sums_close_from_proposals_to_envelope(toy_territory):
    rows = [
        {"ptype": "nuova_urbanizzazione", "pool": "metropolitano",
         "geometry": shapely.box(1500, 0, 1600, 100)},  # 1 ha, A, metro pool
        {"ptype": "nuova_urbanizzazione", "geometry": shapely.box(2600, 0, 2650, 100)},  # 0.5 ha B
        {"ptype": "riuso", "geometry": shapely.box(0, 0, 100, 100)},
    ]
    led = ledger.compute(toy_territory["comuni"], toy_territory["tu"], validated(toy_territory, rows))
    m = led.metro.set_index("pool")
    assert m.loc["totale", "quota_ha"] == pytest.approx(0.03 * 150)
    assert m.loc["metropolitano", "consumed_ha"] == pytest.approx(1.0)
    assert m.loc["locale", "consumed_ha"] == pytest.approx(0.5)
    assert m.loc["totale", "remaining_ha"] == pytest.approx(4.5 - 1.5)
    assert led.unioni.set_index("unione").loc["U1", "consumed_metropolitano_ha"] == pytest.approx(1.0)
    assert "Comune di Beta" in set(led.unioni["unione"])
    led.check()
    # A broken ledger is caught by the closure check.
    led.comuni.loc[0, "desealed_ha"] += 1.0
    with pytest.raises(AssertionError):
        led.check()


def test_withdrawn_and_other_scenarios_do_not_count(toy_territory):
    rows = [
        {"ptype": "nuova_urbanizzazione", "status": "ritirata", "geometry": shapely.box(1500, 0, 1600, 100)},
        {"ptype": "nuova_urbanizzazione", "scenario": "pug_b", "geometry": shapely.box(1500, 200, 1600, 300)},
    ]
    p = validated(toy_territory, rows)
    base = ledger.compute(toy_territory["comuni"], toy_territory["tu"], p, scenario="base")
    b = ledger.compute(toy_territory["comuni"], toy_territory["tu"], p, scenario="pug_b")
    assert base.comuni["consumed_ha"].sum() == 0.0
    assert b.comuni["consumed_ha"].sum() == pytest.approx(1.0)
    # delta = the scenario studied minus the one it is compared with (pug_b − base)
    cmp = ledger.compare(b, base)
    assert cmp.attrs["sign"] == "delta = pug_b − base"
    cmp = cmp.set_index("istat")
    assert cmp.loc["999001", "delta_consumed_ha"] == pytest.approx(1.0)
    assert cmp.loc["999001", "delta_remaining_locale_ha"] == pytest.approx(-1.0)
    assert ledger.compare(base, b).set_index("istat").loc["999001", "delta_consumed_ha"] == pytest.approx(-1.0)
    assert list(ledger.compare(b, base, comuni=["999002"])["istat"]) == ["999002"]
    # nothing silently ignored: each ledger lists what it left out and why
    assert ledger.left_out_summary(base.left_out) == {"n": 2, "by_scenario": {"pug_b": 1},
                                                      "by_status": {"ritirata": 1}}
    assert b.to_dict()["left_out"] == {"n": 1, "by_scenario": {"base": 1}, "by_status": {}}


def test_trajectory_flags_overdraft_and_zero_balance(toy_territory):
    # B's local envelope is 0.5 ha. 0.3 ha in 2020 is fine; +0.3 ha in 2030 overdraws.
    rows = [
        {"ptype": "nuova_urbanizzazione", "date": "2020-05-01", "geometry": shapely.box(2600, 0, 2630, 100)},
        {"ptype": "nuova_urbanizzazione", "date": "2030-05-01", "geometry": shapely.box(2700, 0, 2730, 100)},
        {"ptype": "nuova_urbanizzazione", "date": "2052-01-10", "exemption": None,
         "geometry": shapely.box(2800, 0, 2801, 100)},
    ]
    led = ledger.compute(toy_territory["comuni"], toy_territory["tu"], validated(toy_territory, rows))
    t = ledger.trajectory(led, level="comune", key="999002").set_index("year")
    assert t.loc[2018, "envelope_ha"] == pytest.approx(0.5)
    assert not t.loc[2029, "overdraft"]
    assert t.loc[2030, "overdraft"]
    assert t.loc[2030, "cumulative_net_ha"] == pytest.approx(0.6)
    assert t.loc[2050, "zero_balance_ok"]
    assert not t.loc[2052, "zero_balance_ok"]  # net consumption after 2050
    assert t.index.max() == 2052
    # the same overrun on the comune's row of the ledger, with its year and amount
    row = led.comuni.set_index("istat").loc["999002"]
    assert row["overrun"] and row["overrun_year"] == 2030
    assert row["remaining_ha"] == pytest.approx(0.5 - 0.6 - 0.01)  # 2020, 2030 and 2052 parts
    assert row["overrun_ha"] == pytest.approx(0.11)
    assert not led.comuni.set_index("istat").loc["999001", "overrun"]
    u = led.unioni.set_index("unione")
    assert u.loc["Comune di Beta", "overrun"] and u.loc["Comune di Beta", "overrun_year"] == 2030
    assert u.loc["Comune di Beta", "n_comuni_overrun"] == 1 and not u.loc["U1", "overrun"]
    m = led.metro.set_index("pool")
    assert m.loc["totale", "n_comuni_overrun"] == 1 and not m.loc["totale", "overrun"]


def test_overrun_of_a_pool_at_metro_level(toy_territory):
    # the toy TU is 150 ha: local pool 1.5 ha; 2 ha outside A's TU in the local pool overrun it
    rows = [{"ptype": "nuova_urbanizzazione", "date": "2024-03-01", "geometry": shapely.box(1200, 0, 1400, 100)}]
    led = ledger.compute(toy_territory["comuni"], toy_territory["tu"], validated(toy_territory, rows))
    m = led.metro.set_index("pool")
    assert m.loc["locale", "overrun"] and m.loc["locale", "overrun_ha"] == pytest.approx(0.5)
    assert not m.loc["totale", "overrun"] and pd.isna(m.loc["totale", "overrun_year"])
    a = led.comuni.set_index("istat").loc["999001"]
    assert a["overrun_ha"] == pytest.approx(1.0) and a["overrun_year"] == 2024


def test_split_across_comuni_and_refuse(toy_territory):
    rows = [{"ptype": "nuova_urbanizzazione", "geometry": shapely.box(1900, 500, 2100, 600)}]
    p = validated(toy_territory, rows)
    assert len(p) == 2 and p["proposal_id"].nunique() == 1
    assert sorted(p["area_ha"].round(6)) == [1.0, 1.0]
    with pytest.raises(InputError, match="crosses the boundary"):
        validated(toy_territory, [dict(rows[0], geometry=shapely.box(1900, 500, 2100, 600))],
                  split="refuse")


@pytest.mark.parametrize(
    ("row", "message", "field"),
    [
        ({"ptype": "nuova_urbanizzazione", "geometry": shapely.Polygon()}, "empty geometry", "geometry"),
        ({"ptype": "nuova_urbanizzazione",
          "geometry": shapely.Polygon([(0, 0), (100, 100), (100, 0), (0, 100)])}, "invalid geometry", "geometry"),
        ({"ptype": "nuova_urbanizzazione", "geometry": shapely.box(9000, 0, 9100, 100)},
         "outside every comune", "geometry"),
        ({"ptype": "villette", "geometry": shapely.box(0, 0, 10, 10)}, "unknown proposal type", "ptype"),
        ({"ptype": "riuso", "exemption": "amici", "geometry": shapely.box(0, 0, 10, 10)},
         "unknown exemption", "exemption"),
        ({"ptype": "riuso", "date": "31/02/2024", "geometry": shapely.box(0, 0, 10, 10)},
         "ISO date", "date"),
    ],
)
def test_bad_proposals_are_refused(toy_territory, row, message, field):
    ok = {"ptype": "riuso", "geometry": shapely.box(0, 0, 10, 10)}
    with pytest.raises(InputError, match=message) as e:
        validated(toy_territory, [ok, row])
    assert e.value.rows == [2] and e.value.field == field


def test_monitoring_six_monthly(toy_territory):
    rows = [
        {"ptype": "nuova_urbanizzazione", "status": "approvata", "date": "2024-02-01",
         "geometry": shapely.box(1500, 0, 1600, 100)},
        {"ptype": "nuova_urbanizzazione", "status": "approvata", "date": "2024-09-01",
         "geometry": shapely.box(1500, 200, 1550, 300)},
        {"ptype": "nuova_urbanizzazione", "status": "bozza", "date": "2024-09-01",
         "geometry": shapely.box(1500, 400, 1550, 500)},
    ]
    mon = ledger.monitoring(validated(toy_territory, rows), toy_territory["tu"], toy_territory["comuni"])
    assert list(mon["period"]) == ["2024-S1", "2024-S2"]
    assert list(mon["consumed_ha"].round(6)) == [1.0, 0.5]
    assert list(mon["cumulative_net_ha"].round(6)) == [1.0, 1.5]


def test_physical_ledger_is_separate(toy_territory):
    b = gpd.GeoDataFrame({"comune_istat": ["999001", "999001"]},
                         geometry=[shapely.box(0, 0, 100, 100), shapely.box(1500, 0, 1600, 50)], crs=CRS)
    b["area_m2"] = b.area
    ph = ledger.physical_ledger(toy_territory["comuni"], b).set_index("istat")
    assert ph.loc["999001", "sealed_ha"] == pytest.approx(1.5)
    assert ph.loc["999002", "source"] == "nessun dato"
    p = validated(toy_territory, [{"ptype": "riuso", "geometry": shapely.box(50, 0, 150, 100)}])
    pp = ledger.physical_proposals(p, b)
    assert pp["sealed_buildings_ha"].iloc[0] == pytest.approx(0.5)
