"""Known answers for the TU derivation, the fragility index and the territorial systems."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from pattogis import territory, urbanized
from pattogis.errors import InputError

CRS = "EPSG:25832"
PARAMS = {"buffer_out_m": 20.0, "buffer_in_m": 20.0, "min_cluster_ha": 0.5, "min_buildings": 5,
          "fill_holes_below_ha": 0.2, "simplify_m": 0}


def grid_buildings(x0: float, y0: float, n: int, size: float = 10.0, gap: float = 10.0) -> list:
    """n x n square buildings of ``size`` m separated by ``gap`` m."""
    step = size + gap
    return [shapely.box(x0 + i * step, y0 + j * step, x0 + i * step + size, y0 + j * step + size)
            for i in range(n) for j in range(n)]


def test_continuous_fabric_is_tu_and_scattered_is_not():
    # A 10x10 block of buildings 10 m apart: closing with +20/-20 m gives exactly its envelope
    # (190 m x 190 m = 3.61 ha). Three buildings far away along a road are not TU.
    block = grid_buildings(0, 0, 10)
    scattered = [shapely.box(1000 + k * 200, 0, 1010 + k * 200, 10) for k in range(3)]
    geoms = np.array(block + scattered, dtype=object)
    parts = urbanized.close_fabric(geoms, PARAMS)
    assert len(parts) == 1
    assert parts[0].area == pytest.approx(190 * 190, rel=1e-3)


def test_min_buildings_rule():
    # Two big sheds make a large cluster but fewer buildings than min_buildings: not TU.
    geoms = np.array([shapely.box(0, 0, 100, 100), shapely.box(110, 0, 210, 100)], dtype=object)
    assert len(urbanized.close_fabric(geoms, PARAMS)) == 0
    assert len(urbanized.close_fabric(geoms, PARAMS | {"min_buildings": 2})) == 1


def test_enclosed_rural_land_stays_out_small_yards_filled():
    # A ring of buildings around a 200 m x 200 m field (4 ha > 0.2 ha): the field stays out.
    ring = [b for b in grid_buildings(0, 0, 16) if not shapely.box(30, 30, 290, 290).contains(b)]
    tu = urbanized.close_fabric(np.array(ring, dtype=object), PARAMS)
    assert len(tu) == 1
    assert shapely.get_num_interior_rings(tu[0]) == 1
    # The same with a hole below the threshold is filled.
    tu2 = urbanized.close_fabric(np.array(ring, dtype=object), PARAMS | {"fill_holes_below_ha": 10})
    assert shapely.get_num_interior_rings(tu2[0]) == 0


def test_derive_tu_per_comune_clipped(toy_territory):
    # A block straddling the boundary x=2000 between comune A and B; buildings keyed by comune.
    blk = grid_buildings(1810, 100, 10)  # x 1810..2000
    blk_b = grid_buildings(2010, 100, 10)  # x 2010..2200
    b = gpd.GeoDataFrame({"comune_istat": ["999001"] * 100 + ["999002"] * 100},
                         geometry=blk + blk_b, crs=CRS)
    tu = urbanized.derive_tu(toy_territory["comuni"], b, params=PARAMS | {"bologna_istat": "x"})
    assert list(tu["comune_istat"]) == ["999001", "999002"]
    assert (tu["source"] == "derived").all()
    assert tu["area_ha"].iloc[0] == pytest.approx(190 * 190 / 1e4, rel=1e-3)
    assert toy_territory["comuni"].geometry.iloc[0].buffer(1e-6).contains(tu.geometry.iloc[0])


def test_official_tu_replaces_derived(tmp_path, toy_territory):
    off = gpd.GeoDataFrame({"COD": ["999002"]}, geometry=[shapely.box(2000, 0, 2100, 100)], crs=CRS)
    p = tmp_path / "tu_ufficiale.gpkg"
    off.to_file(p)
    loaded = urbanized.load_official(p, comune_field="COD")
    merged = urbanized.replace_with_official(toy_territory["tu"].assign(name=["Alfa", "Beta"]), loaded)
    m = merged.set_index("comune_istat")
    assert m.loc["999002", "source"] == "official" and m.loc["999002", "area_ha"] == pytest.approx(1.0)
    assert m.loc["999001", "source"] == "derived"
    with pytest.raises(InputError, match="ISTAT code") as e:
        urbanized.load_official(p, comune_field="NOPE")
    assert e.value.field == "NOPE"


def test_fragility_composite_known_answer():
    ind = pd.DataFrame({"a": [0.0, 5.0, 10.0], "b": [3.0, 2.0, 1.0]})
    params = {"indicators": {"a": {"weight": 3}, "b": {"weight": 1, "direction": "lower_is_more_fragile"}}}
    idx, w = territory.composite_index(ind, params)
    assert w == {"a": 0.75, "b": 0.25}
    # a normalised: 0, .5, 1; b reversed: 0, .5, 1
    assert list(idx.round(12)) == [0.0, 0.5, 1.0]


def test_demographic_indicators(toy_territory):
    d = territory.demographic_indicators(toy_territory["comuni"]).set_index("istat")
    assert d.loc["999001", "old_age_index"] == pytest.approx(300.0)  # 300 / 100 * 100
    assert d.loc["999002", "share_80_plus"] == pytest.approx(18.0)  # 90 / 500
    assert d.loc["999001", "dependency_ratio"] == pytest.approx(400 / 600 * 100)


def test_territorial_system_rules():
    s = territory.territorial_system(pd.Series([450.0, 40.0, 15.0]), pd.Series([44.3, 44.5, 44.7]),
                                     {"mountain_mean_elevation_m": 200, "pianura_nord_min_lat": 44.58})
    assert list(s) == ["collina-montagna", "via Emilia", "pianura nord"]


def test_official_fragility_csv(tmp_path):
    ind = pd.DataFrame({"istat": ["037001", "037002"], "fragility_index": [0.1, 0.2]})
    p = tmp_path / "frag.csv"
    p.write_text("istat;indice\n037001;10\n037002;30\n")
    out = territory.load_official_fragility(p, ind, index_field="indice", threshold=0.5)
    assert list(out["fragility_index"]) == [0.0, 1.0]
    assert list(out["fragile"]) == [False, True]
    p.write_text("istat;indice\n037001;10\n")
    with pytest.raises(InputError, match="no value"):
        territory.load_official_fragility(p, ind, index_field="indice")


@pytest.mark.realdata
def test_real_indicators(built_layers):
    from pattogis import layers

    ind = layers.open_layer("comuni_indicators").set_index("name")
    assert ind.loc["Lizzano in Belvedere", "territorial_system"] == "collina-montagna"
    assert ind.loc["Crevalcore", "territorial_system"] == "pianura nord"
    assert ind.loc["Bologna", "territorial_system"] == "via Emilia"
    # the mountain margins are more fragile than the first ring around Bologna
    assert ind.loc["Camugnano", "fragility_index"] > ind.loc["Casalecchio di Reno", "fragility_index"]
    assert ind["mean_elevation_m"].max() > 900
