"""The layer set moves as one: a versioned folder and a link switched in one atomic rename;
a partial set is refused; what interrupted builds leave is removed at the next build."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pandas as pd
import pyogrio
import pytest

from pattogis import cli, layers
from pattogis.data.build import _swap_into_place
from pattogis.errors import MissingDataError

FILES = ["bologna.gpkg", *layers.RASTERS.values()]


def fake_build(parent: Path, out: Path, tag: str, size: int = 4096) -> Path:
    """A build folder as `pattogis data build` leaves it before the switch: every file, each
    filled with ``tag`` so a reader can tell which set it came from."""
    tmp = parent / f"{layers.build_prefix(out)}{tag}"
    tmp.mkdir()
    for name in FILES:
        (tmp / name).write_bytes(tag.encode().ljust(size, b"."))
    return tmp


def test_switch_is_one_step_and_readers_never_see_a_mix(tmp_path: Path) -> None:
    out = tmp_path / "layers"
    _swap_into_place(fake_build(tmp_path, out, "set000"), out)
    assert out.is_symlink() and layers.problem(out) is None
    stop = threading.Event()
    seen: set[str] = set()
    mixed: list[set[str]] = []

    def reader() -> None:
        while not stop.is_set():
            d = out.resolve()  # a reader resolves the folder once, then reads its files
            try:
                tags = {(d / n).read_bytes()[:6].decode() for n in FILES}
            except FileNotFoundError:  # a set two switches old may be cleaned: never a mix
                continue
            seen.update(tags)
            if len(tags) != 1:
                mixed.append(tags)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(1, 40):
        _swap_into_place(fake_build(tmp_path, out, f"set{i:03d}"), out)
    stop.set()
    for t in threads:
        t.join()
    assert mixed == []
    assert len(seen) > 1  # the readers did see sets change under them
    assert (out / "bologna.gpkg").read_bytes()[:6] == b"set039"
    # the current set and the one before it are kept; older ones removed
    assert len(list(tmp_path.glob(".layers.set-*"))) == 2
    assert not list(tmp_path.glob(".layers.build-*"))


def test_a_folder_of_the_old_layout_is_moved_aside(tmp_path: Path) -> None:
    out = tmp_path / "layers"
    out.mkdir()
    (out / "bologna.gpkg").write_bytes(b"old")
    _swap_into_place(fake_build(tmp_path, out, "new000"), out)
    assert out.is_symlink() and (out / "bologna.gpkg").read_bytes()[:6] == b"new000"
    assert [p.name for p in tmp_path.glob(".layers.old-*/bologna.gpkg")]


def test_partial_set_is_refused_saying_how_to_rebuild(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # what the file-by-file swap left after a kill: only the GeoPackage (its catalog lists rasters)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    pyogrio.write_dataframe(pd.DataFrame({"name": ["comuni", "dem", "slope"],
                                          "kind": ["vector", "raster", "raster"]}),
                            legacy / "bologna.gpkg", layer=layers.CATALOG, driver="GPKG")
    why = layers.problem(legacy)
    assert why is not None and "incomplete" in why and "missing dem.tif, slope.tif" in why
    monkeypatch.setenv("PATTOGIS_LAYERS_DIR", str(legacy))
    assert not layers.exists()
    with pytest.raises(MissingDataError, match="pattogis data build"):
        layers.open_layer("comuni")
    with pytest.raises(MissingDataError, match="incomplete"):
        layers.raster_path("slope")
    # a set with a manifest: a file cut short is found too
    out = tmp_path / "layers"
    _swap_into_place(fake_build(tmp_path, out, "cut000"), out)
    with open(out / "dem.tif", "r+b") as f:
        f.truncate(10)
    assert "cut short dem.tif" in (layers.problem(out) or "")
    assert layers.problem(tmp_path / "nothing") == f"no layer set at {tmp_path / 'nothing'}"


def _dead_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


def test_stale_build_folders_are_cleaned_at_the_next_build(tmp_path: Path) -> None:
    out = tmp_path / "layers"
    dead = tmp_path / f".layers.build-{_dead_pid()}-abcd"
    dead.mkdir()
    (dead / "bologna.gpkg").write_bytes(b"x" * 10_000)
    running = tmp_path / f".layers.build-{os.getppid()}-live"  # a live process: kept
    running.mkdir()
    other = tmp_path / ".other.build-1-x"  # another layer set's build: not ours
    other.mkdir()
    removed = layers.clean_stale(out, log=lambda s: None)
    assert removed == [dead] and not dead.exists()
    assert running.exists() and other.exists()


def test_run_does_not_call_a_partial_set_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    legacy = tmp_path / "layers"
    legacy.mkdir()
    pyogrio.write_dataframe(pd.DataFrame({"name": ["dem"], "kind": ["raster"]}),
                            legacy / "bologna.gpkg", layer=layers.CATALOG, driver="GPKG")
    monkeypatch.setenv("PATTOGIS_LAYERS_DIR", str(legacy))
    calls: list[str] = []
    monkeypatch.setattr(cli, "build_in_child", lambda raw=None: calls.append("build"))
    monkeypatch.setattr(cli, "cmd_serve", lambda a: calls.append("serve"))
    assert cli.main(["run"]) == 0
    out = capsys.readouterr().out
    assert "present" not in out and "complete at" not in out
    assert "incomplete" in out and calls == ["build", "serve"]


def test_the_manifest_covers_the_feature_store(tmp_path: Path) -> None:
    # the features/ folder is part of the set: listed by relative path, a file of it missing
    # or cut short makes the set incomplete like any other file
    out = tmp_path / "layers"
    tmp = fake_build(tmp_path, out, "store0")
    (tmp / "features").mkdir()
    for name in ("manifest.json", "buildings.features", "buildings.offsets.npy"):
        (tmp / "features" / name).write_bytes(b"x" * 64)
    _swap_into_place(tmp, out)
    listed = json.loads((out / layers.MANIFEST).read_text())["files"]
    assert listed["features/buildings.features"] == 64 and "features/manifest.json" in listed
    assert layers.problem(out) is None
    (out / "features" / "buildings.offsets.npy").unlink()
    assert "missing features/buildings.offsets.npy" in (layers.problem(out) or "")


def test_run_builds_in_a_child_process_and_says_when_it_failed(tmp_path: Path,
                                                                capfd: pytest.CaptureFixture[str]
                                                                ) -> None:
    # the child is the real `pattogis data build`: a missing raw kit fails there, and the
    # parent stops with what to do instead of serving nothing
    with pytest.raises(MissingDataError, match="could not be built"):
        cli.build_in_child(str(tmp_path / "no-kit"))
    assert "no-kit" in capfd.readouterr().err
