"""Scores for people and files: sites side by side, JSON records, atomic file output."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pattogis.errors import InputError, NotFound
from pattogis.io import atomic_path
from pattogis.scoring.profiles import Profile, load_profile


def compare(
    data: pd.DataFrame,
    scored: pd.DataFrame,
    sites: Sequence[Any],
    profile: str | Mapping[str, Any] | Profile | None = None,
    *,
    wide: bool = False,
) -> pd.DataFrame:
    """Sites side by side: raw value, normalised value, effective weight and contribution.

    ``data`` is the raw criteria table, ``scored`` the output of :func:`score` (its profile is used
    when ``profile`` is None). Tidy (default): one row per (site, criterion) with columns
    ``site, criterion, label_it, unit, direction, weight, raw, norm, contrib, score, rank,
    excluded, exclusion_reason``. ``wide=True``: one row per criterion (Italian label), columns
    (site, raw|norm|contrib), plus rows "Punteggio" and "Posizione in graduatoria".
    """
    p = load_profile(profile if profile is not None else scored.attrs.get("profile", {}))
    unknown = [s for s in sites if s not in scored.index or s not in data.index]
    if unknown:
        raise NotFound(f"unknown site id(s): {', '.join(map(str, unknown[:10]))}")
    sites = list(sites)
    rows = []
    for c in p.criteria:
        raw = pd.to_numeric(data.loc[sites, c.name], errors="coerce").to_numpy(dtype=float)
        rows.append(
            pd.DataFrame(
                {
                    "site": sites,
                    "criterion": c.name,
                    "label_it": c.label_it,
                    "unit": c.unit,
                    "direction": c.direction,
                    "weight": c.weight,
                    "raw": raw,
                    "norm": scored.loc[sites, f"norm_{c.name}"].to_numpy(dtype=float),
                    "contrib": scored.loc[sites, f"contrib_{c.name}"].to_numpy(dtype=float),
                    "score": scored.loc[sites, "score"].to_numpy(dtype=float),
                    "rank": scored.loc[sites, "rank"].to_numpy(),
                    "excluded": scored.loc[sites, "excluded"].to_numpy(dtype=bool),
                    "exclusion_reason": scored.loc[sites, "exclusion_reason"].to_numpy(),
                }
            )
        )
    tidy = pd.concat(rows, ignore_index=True)
    tidy["rank"] = tidy["rank"].astype("Int64")
    # keep the caller's site order, criteria in profile order
    tidy["_o"] = tidy["site"].map({s: i for i, s in enumerate(sites)})
    tidy = tidy.sort_values(["_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    if not wide:
        return tidy
    parts = ("raw", "norm", "contrib")
    labels = [f"{c.label_it} ({c.unit})" for c in p.criteria]
    block: dict[tuple[Any, str], np.ndarray] = {}
    for s in sites:  # a handful of sites chosen by a user
        sub = tidy[tidy["site"] == s]
        for v in parts:
            block[(s, v)] = sub[v].to_numpy(dtype=float)
    w = pd.DataFrame(block, index=labels)
    w.columns = pd.MultiIndex.from_tuples(list(block), names=["site", "value"])
    summary = pd.DataFrame(
        np.nan, index=["Punteggio", "Posizione in graduatoria"], columns=w.columns
    )
    for s in sites:
        summary.loc["Punteggio", (s, "contrib")] = scored.loc[s, "score"]
        r = scored.loc[s, "rank"]
        summary.loc["Posizione in graduatoria", (s, "contrib")] = np.nan if pd.isna(r) else float(r)
    return pd.concat([w, summary])


def _flat_table(scored: pd.DataFrame, *, keep_geometry: bool) -> pd.DataFrame:
    """The site id as a column and no nested values: what files and JSON can hold.

    The index becomes ``site_id`` (or its own name) unless it is an unnamed RangeIndex beside an
    existing ``site_id`` column; dict/list cells (e.g. the criteria's per-site ``missing`` reasons)
    become JSON strings.
    """
    geom = getattr(scored, "_geometry_column_name", None)
    df = scored if keep_geometry or geom is None else pd.DataFrame(scored.drop(columns=geom))
    name = df.index.name or "site_id"
    plain = isinstance(df.index, pd.RangeIndex) and df.index.name is None
    df = df.reset_index(drop=True) if plain and name in df.columns else df.reset_index(names=name)
    for c in df.columns:
        if df[c].dtype == object and c != geom:
            nested = df[c].map(lambda v: isinstance(v, dict | list | tuple))
            if nested.any():
                df[c] = df[c].map(
                    lambda v: (
                        json.dumps(v, ensure_ascii=False)
                        if isinstance(v, dict | list | tuple)
                        else v
                    )
                )
    return df


def to_records(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe records of a scored table for the API: NaN/NA -> None, geometry dropped."""
    return json.loads(
        _flat_table(scored, keep_geometry=False).to_json(orient="records", force_ascii=False)
    )


def write_scores(scored: pd.DataFrame, path: str | Path) -> Path:
    """Write a scored table atomically; format by suffix: .csv, .json (records), .parquet,
    .gpkg/.geojson (GeoDataFrames only; GeoPackage layer ``scores``). Returns the path."""
    path = Path(path)
    suf = path.suffix.lower()
    if suf not in (".csv", ".json", ".parquet", ".gpkg", ".geojson"):
        raise InputError(
            f"unsupported output format '{suf}'; use .csv, .json, .parquet, .gpkg or .geojson",
            file=str(path),
        )
    if suf in (".gpkg", ".geojson") and getattr(scored, "_geometry_column_name", None) is None:
        raise InputError(f"{path}: {suf} needs sites with geometry", file=str(path))
    with atomic_path(path) as tmp:
        if suf == ".csv":
            _flat_table(scored, keep_geometry=False).to_csv(tmp, index=False)
        elif suf == ".json":
            _flat_table(scored, keep_geometry=False).to_json(
                tmp, orient="records", force_ascii=False
            )
        elif suf == ".parquet":
            _flat_table(scored, keep_geometry=True).to_parquet(tmp)
        else:
            # layer name fixed: the temporary file's name would otherwise become the layer name
            extra = {"layer": "scores"} if suf == ".gpkg" else {}
            _flat_table(scored, keep_geometry=True).to_file(
                tmp, driver="GPKG" if suf == ".gpkg" else "GeoJSON", **extra
            )
    return path
