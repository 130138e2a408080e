"""The CLI face, run as a real process on the built layers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import geopandas as gpd
import pytest
import shapely

from pattogis import analysis, layers


def run(*args: str, env_layers) -> subprocess.CompletedProcess:
    env = os.environ | {"PATTOGIS_LAYERS_DIR": str(env_layers),
                        "PATTOGIS_STORE": str(env_layers / "test_proposals.gpkg")}
    return subprocess.run([sys.executable, "-m", "pattogis.cli", *args], capture_output=True,
                          text=True, env=env, timeout=300)


@pytest.mark.realdata
def test_layers_json(built_layers):
    r = run("layers", "--json", env_layers=built_layers)
    assert r.returncode == 0, r.stderr
    cat = {row["name"]: row for row in json.loads(r.stdout)}
    assert cat["comuni"]["count"] == 55
    assert cat["territorio_urbanizzato"]["provenance"] == "derived"


@pytest.mark.realdata
def test_budget_with_proposals_file(built_layers, tmp_path):
    comuni = layers.open_layer("comuni")
    tu = layers.open_layer("territorio_urbanizzato").set_index("comune_istat")
    imola = comuni.set_index("name").loc["Imola"]
    # A 1 ha square far from Imola's TU but inside the comune: it consumes exactly 1 ha.
    free = imola.geometry.difference(tu.loc[imola["istat"]].geometry.buffer(200))
    p = free.representative_point()
    sq = shapely.box(p.x - 50, p.y - 50, p.x + 50, p.y + 50)
    assert free.contains(sq)
    f = tmp_path / "proposte.geojson"
    gpd.GeoDataFrame({"ptype": ["nuova_urbanizzazione"], "date": ["2025-03-01"]}, geometry=[sq],
                     crs=comuni.crs).to_crs(4326).to_file(f, driver="GeoJSON")
    r = run("budget", "--comune", imola["istat"], "--proposals", str(f), "--json",
            "--trajectory", env_layers=built_layers)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["consumed_ha"] == pytest.approx(1.0, rel=1e-6)
    assert out["remaining_locale_ha"] == pytest.approx(out["local_quota_ha"] - 1.0, rel=1e-6)
    # the library gives the same answer as the CLI
    lib = analysis.budget(comune=imola["istat"], proposals=analysis.load_proposals(f))
    assert lib["consumed_ha"] == pytest.approx(out["consumed_ha"])


@pytest.mark.realdata
def test_budget_bad_comune_clear_error(built_layers):
    r = run("budget", "--comune", "Atlantide", env_layers=built_layers)
    assert r.returncode == 2
    assert "unknown comune 'Atlantide'" in r.stderr


@pytest.mark.realdata
def test_score_engine_dask_writes_the_same_scores_as_local(built_layers, tmp_path):
    out = {}
    for eng in ("local", "dask"):
        path = tmp_path / f"scores_{eng}.csv"
        r = run("score", "--engine", eng, "--draws", "20", "--out", str(path), "--top", "3",
                env_layers=built_layers)
        assert r.returncode == 0, r.stderr
        out[eng] = path.read_text()
    assert out["dask"] == out["local"]
    assert out["local"].count("\n") == len(layers.open_layer("candidates")) + 1
