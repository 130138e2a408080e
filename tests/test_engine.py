"""The engine seam: the dask path gives the same numbers as the single-machine path.

Runs on a real ``distributed.LocalCluster`` (2 worker processes) started once for the module.
Known answers come from hand-made comuni; the regional case uses the real Emilia-Romagna
boundaries with the seeded synthetic buildings of ``benchmarks/bench_regional.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from pattogis import engine, urbanized
from pattogis.errors import InputError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import bench_regional  # noqa: E402

# Functions of this module and of bench_regional travel to the workers by value, so the workers
# need neither tests/ nor benchmarks/ on their path.
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value(bench_regional)

CRS = "EPSG:25832"


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with engine.local_cluster(n_workers=2, memory_limit="2GiB") as c:
        yield c


# ----------------------------------------------------------------------------- settings, errors
def test_unknown_engine_is_refused_with_the_choices() -> None:
    with pytest.raises(InputError, match=r"unknown engine 'spark'.*local, dask"):
        engine.check_engine("spark")
    comuni, buildings = _toy()
    with pytest.raises(InputError, match="unknown engine 'spark'"):
        urbanized.derive_tu(comuni, buildings, params=_params(), engine="spark")
    with pytest.raises(InputError, match="unknown engine"):
        engine.map_frame(_group_figures, _toy_candidates(), engine="spark")


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(engine.ENV_WORKERS, "3")
    monkeypatch.setenv(engine.ENV_MEMORY, "1.5GiB")
    monkeypatch.delenv(engine.ENV_THREADS, raising=False)
    monkeypatch.delenv(engine.ENV_SCHEDULER, raising=False)
    s = engine.dask_settings()
    assert (s.n_workers, s.threads_per_worker, s.memory_limit, s.scheduler) == (3, 1, "1.5GiB",
                                                                               None)
    monkeypatch.setenv(engine.ENV_WORKERS, "two")
    with pytest.raises(InputError, match=r"PATTOGIS_DASK_WORKERS='two' is not an integer"):
        engine.dask_settings()
    monkeypatch.setenv(engine.ENV_WORKERS, "0")
    with pytest.raises(InputError, match="must be at least 1"):
        engine.dask_settings()


# ----------------------------------------------------------------------------- TU, known answer
def _params() -> dict:
    # Fixed closing parameters: the known answers below follow from these, not from tu.yaml.
    return urbanized.tu_params({"buffer_out_m": 40.0, "buffer_in_m": 30.0,
                                "min_cluster_ha": 2.0, "min_buildings": 10,
                                "fill_holes_below_ha": 1.0, "simplify_m": 0})


def _tiles(x0: float, y0: float, x1: float, y1: float, step: float) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step))
    return shapely.box(xs.ravel(), ys.ravel(), xs.ravel() + step, ys.ravel() + step)


def _toy() -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Four 1 km x 1 km comuni side by side (EPSG:25832, metres).

    - A (999001), x 0..1000: 20 m buildings tiling the strip y 0..200 edge to edge (500 of them).
      Closing (out 40, in 30) leaves the strip grown by 10 m on every side; clipped to the comune
      that is the box x 0..1000, y 0..210: exactly 21 ha. The 10 m that spill over x = 1000 into
      B are cut off.
    - B (999002), x 1000..2000: 9 single 20 m buildings 300 m apart: clusters of 0.36 ha each,
      under the 2 ha minimum: no TU (and none of A's fabric either).
    - C (999003), x 2000..3000: four 100 m buildings forming a 200 m block: 4 ha of cluster but
      only 4 buildings, under the minimum of 10: no TU.
    - D (999004), x 3000..4000: no buildings: no TU.
    """
    comuni = gpd.GeoDataFrame(
        {"istat": ["999001", "999002", "999003", "999004"],
         "name": ["Alfa", "Beta", "Gamma", "Delta"]},
        geometry=[shapely.box(x, 0, x + 1000, 1000) for x in (0, 1000, 2000, 3000)], crs=CRS)
    a = _tiles(0, 0, 1000, 200, 20)
    bx, by = np.meshgrid([1100.0, 1400.0, 1700.0], [100.0, 400.0, 700.0])
    b = shapely.box(bx.ravel(), by.ravel(), bx.ravel() + 20, by.ravel() + 20)
    c = _tiles(2400, 400, 2600, 600, 100)
    buildings = gpd.GeoDataFrame(
        {"comune_istat": ["999001"] * len(a) + ["999002"] * len(b) + ["999003"] * len(c)},
        geometry=np.concatenate([a, b, c]), crs=CRS)
    return comuni, buildings


def test_tu_known_answer_local_and_dask(client: object) -> None:
    comuni, buildings = _toy()
    expected = [21.0, 0.0, 0.0, 0.0]
    for eng in ("local", "dask"):
        tu = urbanized.derive_tu(comuni, buildings, params=_params(), engine=eng)
        assert list(tu["comune_istat"]) == ["999001", "999002", "999003", "999004"]
        assert list(tu["name"]) == ["Alfa", "Beta", "Gamma", "Delta"]
        np.testing.assert_allclose(tu["area_ha"], expected, atol=1e-6, err_msg=eng)
        assert tu.geometry.iloc[0].equals(shapely.box(0, 0, 1000, 210)), eng
        assert list(tu["n_buildings"]) == [500, 9, 4, 0]
        assert tu.crs == comuni.crs


# ----------------------------------------------------------------------------- map_partitions_delayed
def _tag(i: int, arr: np.ndarray) -> tuple[int, int]:
    return i, len(arr)


def test_map_partitions_delayed_keeps_input_order(client: object) -> None:
    sizes = [5, 300, 1, 40, 0, 1000, 7]
    args = [(i, np.zeros(n)) for i, n in enumerate(sizes)]
    out = engine.map_partitions_delayed(_tag, args)
    assert out == list(enumerate(sizes))
    assert engine.map_partitions_delayed(_tag, []) == []


def test_map_partitions_delayed_runs_on_the_workers(client: object) -> None:
    import os

    pids = set(engine.map_partitions_delayed(_pid, [(i,) for i in range(8)]))
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


def _started(i: int, arr: np.ndarray) -> tuple[int, float]:
    import time

    t = time.monotonic()
    time.sleep(0.02)
    return i, t


def test_largest_partitions_start_first() -> None:
    # One worker, one thread: tasks run one at a time, in priority order (largest first).
    sizes = [5, 300, 1, 40, 1000, 7]
    with engine.local_cluster(n_workers=1, memory_limit="1GiB") as one:
        out = engine.map_partitions_delayed(_started, [(i, np.zeros(n)) for i, n in
                                                       enumerate(sizes)], client=one)
    assert [i for i, _ in out] == list(range(len(sizes)))  # results in input order
    by_start = [sizes[i] for i, _ in sorted(out, key=lambda r: r[1])]
    assert by_start == sorted(sizes, reverse=True)


def test_partition_cost_is_the_largest_array_argument() -> None:
    # derive_tu passes footprints as a geopandas GeometryArray: it must count, not the dict.
    fp = gpd.GeoSeries(shapely.points(np.arange(7.0), 0)).values
    assert engine._default_cost(("037001", shapely.box(0, 0, 1, 1), fp, {"a": 1, "b": 2})) == 7
    assert engine._default_cost(("x", np.zeros(3), [1, 2, 3, 4])) == 4


def _pid(_: int) -> int:
    import os

    return os.getpid()


# ----------------------------------------------------------------------------- map_frame
def _toy_candidates() -> gpd.GeoDataFrame:
    """12 candidates in 4 comuni with a shuffled, non-default index.

    Candidate k is the box x 100k..100k+w, y 0..100 with w = 10 (k+1) m; the shared "zone"
    covers y 0..50, so half of every candidate's area is inside it.
    """
    rng = np.random.default_rng(3)
    k = np.arange(12)
    w = 10.0 * (k + 1)
    g = gpd.GeoDataFrame({"comune_istat": np.array(["A", "B", "C", "D"])[k % 4],
                          "w": w},
                         geometry=shapely.box(100.0 * k, 0, 100.0 * k + w, 100), crs=CRS)
    g.index = pd.Index(rng.permutation(12) * 7 + 1000, name="site")
    return g


def _group_figures(part: gpd.GeoDataFrame, *, zone: shapely.Geometry,
                   factor: float) -> gpd.GeoDataFrame:
    """Row figures that depend on the row, on its group and on shared keyword values."""
    a = part.geometry.area
    return gpd.GeoDataFrame(
        {"comune_istat": part["comune_istat"],
         "area_m2": a * factor,
         "share_in_zone": part.geometry.intersection(zone).area / a,
         "group_rows": part.groupby("comune_istat")["w"].transform("size"),
         "group_total_w": part.groupby("comune_istat")["w"].transform("sum"),
         "pid": float(__import__("os").getpid())},
        geometry=part.geometry.centroid, crs=part.crs, index=part.index)


def test_map_frame_dask_equals_local_and_known_answers(client: object) -> None:
    g = _toy_candidates()
    zone = shapely.box(-10, 0, 2000, 50)
    local = engine.map_frame(_group_figures, g, engine="local", zone=zone, factor=2.0)
    dask = engine.map_frame(_group_figures, g, engine="dask", npartitions=3, zone=zone,
                            factor=2.0)
    assert isinstance(dask, gpd.GeoDataFrame) and dask.crs == g.crs
    assert list(dask.index) == list(g.index) and dask.index.name == "site"
    cols = [c for c in local.columns if c != "pid"]
    pd.testing.assert_frame_equal(local[cols], dask[cols], check_exact=True)
    # Known answers: area 100 w, doubled; half inside the zone; groups of 3 never split.
    np.testing.assert_array_equal(dask["area_m2"], 2 * 100 * g["w"].to_numpy())
    np.testing.assert_array_equal(dask["share_in_zone"], 0.5)
    assert (dask["group_rows"] == 3).all()
    totals = g.groupby("comune_istat")["w"].sum()
    np.testing.assert_array_equal(dask["group_total_w"], g["comune_istat"].map(totals))
    # The work ran on the workers, not here.
    assert int(__import__("os").getpid()) not in set(dask["pid"].astype(int))


def test_map_frame_more_partitions_than_groups_and_plain_dataframe(client: object) -> None:
    g = _toy_candidates()
    df = pd.DataFrame(g.drop(columns="geometry"))

    def per_group_rank(part: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"rank_in_group": part.groupby("comune_istat")["w"].rank()},
                            index=part.index)

    local = engine.map_frame(per_group_rank, df, engine="local")
    dask = engine.map_frame(per_group_rank, df, engine="dask", npartitions=50)
    pd.testing.assert_frame_equal(local, dask, check_exact=True)
    # w grows with k and each group holds k, k+4, k+8: ranks are 1, 2, 3 by k // 4.
    k = (g["w"].to_numpy() / 10 - 1).astype(int)
    np.testing.assert_array_equal(dask["rank_in_group"], k // 4 + 1)


def test_map_frame_bad_input(client: object) -> None:
    g = _toy_candidates()
    with pytest.raises(InputError, match=r"column 'comune' to partition by is missing"):
        engine.map_frame(_group_figures, g, by="comune", engine="dask", zone=None, factor=1.0)
    dup = g.copy()
    dup.index = [1] * len(g)
    with pytest.raises(InputError, match="unique index"):
        engine.map_frame(_group_figures, dup, engine="dask", zone=shapely.box(0, 0, 1, 1),
                         factor=1.0)


def test_balanced_bins_keep_groups_whole() -> None:
    keys = pd.Series(list("dccbbbaaaaaa"))
    bins = engine._balanced_bins(keys, 2)
    # Sorted runs cut at half the rows: a (6) | b (3) + c (2) + d (1).
    assert dict(zip(keys, bins, strict=True)) == {"a": 0, "b": 1, "c": 1, "d": 1}
    keys = pd.Series(np.repeat(["037001", "037002", "037003", "037004"], [10, 10, 10, 10]))
    assert engine._balanced_bins(keys, 4).tolist() == np.repeat([0, 1, 2, 3], 10).tolist()
    assert engine._balanced_bins(keys, 2).tolist() == np.repeat([0, 0, 1, 1], 10).tolist()
    assert set(engine._balanced_bins(keys, 1)) == {0}


# ----------------------------------------------------------------------------- regional case
@pytest.fixture(scope="module")
def regional(raw_dir: Path) -> dict:
    """The comuni of the province of Parma (034) with seeded synthetic buildings and candidates."""
    comuni = bench_regional.regional_comuni(raw_dir / "openpolis" /
                                            "limits_R_8_municipalities.geojson")
    assert len(comuni) == 330
    sub = comuni[comuni["istat"].str.startswith("034")].reset_index(drop=True)
    buildings = bench_regional.synthetic_buildings(sub, seed=11, scale=0.5)
    cands = bench_regional.synthetic_candidates(sub, buildings, 1500, seed=12)
    return {"comuni": sub, "buildings": buildings, "candidates": cands}


@pytest.mark.realdata
def test_regional_tu_dask_equals_local(client: object, regional: dict) -> None:
    comuni, buildings = regional["comuni"], regional["buildings"]
    assert len(comuni) >= 40 and len(buildings) > 5_000
    assert set(buildings["comune_istat"]) <= set(comuni["istat"])
    local = urbanized.derive_tu(comuni, buildings, engine="local")
    dask = urbanized.derive_tu(comuni, buildings, engine="dask")
    assert list(dask["comune_istat"]) == list(comuni["istat"])
    np.testing.assert_array_equal(local["area_ha"].to_numpy(), dask["area_ha"].to_numpy())
    assert shapely.equals_exact(local.geometry.to_numpy(), dask.geometry.to_numpy(), 0).all()
    # The synthetic clusters do make TU: most comuni get some, none exceeds its own area.
    assert (local["area_ha"] > 0).mean() > 0.8
    assert (local["area_ha"].to_numpy() <= comuni["area_ha"].to_numpy() + 1e-6).all()


@pytest.mark.realdata
def test_regional_candidate_metrics_dask_equals_local(client: object, regional: dict) -> None:
    comuni, buildings, cands = regional["comuni"], regional["buildings"], regional["candidates"]
    tu = urbanized.derive_tu(comuni, buildings, engine="local")
    kw = {"buildings": buildings, "tu": tu}
    local = engine.map_frame(bench_regional.candidate_metrics, cands, engine="local", **kw)
    dask = engine.map_frame(bench_regional.candidate_metrics, cands, engine="dask", **kw)
    pd.testing.assert_frame_equal(local, dask, check_exact=True)
    assert list(dask["cand_id"]) == list(cands["cand_id"])
    for col in ("share_inside_tu", "built_cover"):
        assert dask[col].between(0, 1 + 1e-9).all()
    assert (dask["share_inside_tu"] > 0).any() and (dask["n_buildings_near"] > 0).any()


# ----------------------------------------------------------------------------- criteria, real kit
@pytest.mark.realdata
def test_criteria_dask_equals_local_on_the_real_layers(client: object, built_layers: Path
                                                       ) -> None:
    from geopandas.testing import assert_geodataframe_equal

    from pattogis import layers
    from pattogis.criteria import CriteriaContext, compute_criteria, host_key

    ctx = CriteriaContext.from_layers()
    cand = layers.open_layer("candidates")[["site_id", "geometry"]]
    # Plus seeded squares of 1-9 ha over the whole province, so that most comuni get sites.
    rng = np.random.default_rng(7)
    minx, miny, maxx, maxy = layers.open_layer("comuni").total_bounds
    c = rng.uniform([minx, miny], [maxx, maxy], (600, 2))
    half = np.sqrt(rng.uniform(1e4, 9e4, 600)) / 2
    sq = shapely.box(c[:, 0] - half, c[:, 1] - half, c[:, 0] + half, c[:, 1] + half)
    sites = gpd.GeoDataFrame(
        pd.concat([cand, gpd.GeoDataFrame({"site_id": [f"Q{i}" for i in range(600)]},
                                           geometry=sq, crs=cand.crs)], ignore_index=True),
        crs=cand.crs)
    keys = host_key(sites, ctx)
    assert len(set(keys) - {""}) >= 30  # many partitions, not one
    assert (keys == "").sum() > 0  # squares outside the province: their own partition
    local = compute_criteria(sites, ctx)
    dask = compute_criteria(sites, ctx, engine="dask", client=client, npartitions=6)
    assert_geodataframe_equal(local, dask)
    assert local["rail_distance_m"].notna().all()
