"""Shared fixtures: the real open-data kit, a built layer set, and a hand-made territory.

Tests marked ``realdata`` need ../shared/data/raw: in CI (CI=true) they fail when it is missing,
elsewhere they skip with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import pytest
import shapely

REPO = Path(__file__).resolve().parents[1]
RAW = Path(os.environ.get("PATTOGIS_RAW", REPO.parent / "shared" / "data" / "raw"))
IN_CI = os.environ.get("CI", "").lower() == "true"


def need_raw() -> Path:
    if not (RAW / "SOURCES.md").exists():
        msg = f"real open-data kit not found at {RAW}"
        if IN_CI:
            pytest.fail(msg + " (CI=true: the kit must be beside the clone)")
        pytest.skip(msg)
    return RAW


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    return need_raw()


@pytest.fixture(scope="session")
def built_layers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real layer set, built once per session (or reused from $PATTOGIS_TEST_LAYERS)."""
    raw = need_raw()
    reuse = os.environ.get("PATTOGIS_TEST_LAYERS")
    if reuse and (Path(reuse) / "bologna.gpkg").exists():
        out = Path(reuse)
    else:
        from pattogis.data.build import build

        out = tmp_path_factory.mktemp("layers")
        build(raw, out, log=lambda s: None)
    os.environ["PATTOGIS_LAYERS_DIR"] = str(out)
    return out


CRS = "EPSG:25832"


@pytest.fixture
def toy_territory() -> dict:
    """A hand-made territory with analytically known areas (EPSG:25832, metres).

    Two comuni side by side, each 2 km x 1 km (200 ha): A (istat 999001, Unione 'U1') spans
    x 0..2000, B (999002, no Unione) spans x 2000..4000. The TU of A is the square
    x 0..1000, y 0..1000 (100 ha); the TU of B is x 2000..2500, y 0..1000 (50 ha).
    """
    comuni = gpd.GeoDataFrame(
        {"istat": ["999001", "999002"], "name": ["Alfa", "Beta"], "unione": ["U1", None],
         "pop_total": [1000, 500], "pop_0_14": [100, 50], "pop_15_64": [600, 250],
         "pop_65_plus": [300, 200], "pop_80_plus": [80, 90]},
        geometry=[shapely.box(0, 0, 2000, 1000), shapely.box(2000, 0, 4000, 1000)], crs=CRS)
    comuni["area_ha"] = comuni.area / 1e4
    tu = gpd.GeoDataFrame(
        {"comune_istat": ["999001", "999002"], "source": "derived"},
        geometry=[shapely.MultiPolygon([shapely.box(0, 0, 1000, 1000)]),
                  shapely.MultiPolygon([shapely.box(2000, 0, 2500, 1000)])], crs=CRS)
    tu["area_ha"] = tu.area / 1e4
    return {"comuni": comuni, "tu": tu}


# --- a real browser on a real server (map pages) ---------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's headless Chromium (skip without it; fail in CI, where .ci/run installs it)."""
    from browser import chromium_path

    exe = chromium_path()
    if exe is None:
        msg = "headless Chromium not installed (apt-get install chromium)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return exe


@pytest.fixture(scope="module")
def server(app):
    """The module's ``app`` fixture served by uvicorn on a free loopback port, for the module."""
    from live import serve

    with serve(app, lifespan="off") as url:
        yield url
