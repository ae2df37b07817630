"""The optimizer study's rule: the best learning rate per workload × optimizer.

``harness/study.py`` writes ``study_summary.parquet`` (one row per run of a configuration:
reached or not, steps/seconds/joules to the target); the harness's terminal table and the
report's study table both choose with :func:`best_lr_table` (``docs/study.md``): the best lr
is the one with the most runs reaching the target; ties go to the lower median
time-to-target among the runs that reached it, then to the smaller lr. Each cost is the
median over that lr's runs with a miss counted as +∞, so it is infinite when at least half
of the runs missed; NaN when a run that reached has no value (no energy meter).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

GROUP: list[str] = ["run_id", "device", "workload", "optimizer"]
PROBLEM: list[str] = ["run_id", "device", "workload"]
COSTS: tuple[str, ...] = ("steps_to_target", "time_to_target_s", "energy_to_target_j")
BEST_COLUMNS: list[str] = [
    *GROUP, "lr", "lr_at_edge", "target_loss", "runs", "seeds", "runs_reached", *COSTS,
    "energy_source", "time_vs_best", "steps_vs_best",
]


def _plain(summary: pd.DataFrame) -> pd.DataFrame:
    """Label columns as plain strings; ``run_id`` and the cost columns filled when absent."""
    frame = summary.copy()
    if "run_id" not in frame.columns:
        frame["run_id"] = ""
    for col in ("run_id", "device", "workload", "optimizer"):
        frame[col] = frame[col].astype(str)
    for col in COSTS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else np.nan
    frame["reached"] = frame["reached"].astype(object).fillna(False).astype(bool)
    if "target_loss" not in frame.columns:
        frame["target_loss"] = np.nan
    if "seed" not in frame.columns:
        frame["seed"] = np.arange(len(frame))  # unknown: every run counts as its own seed
    if "energy_source" not in frame.columns:
        frame["energy_source"] = "none"
    frame["energy_source"] = frame["energy_source"].fillna("none").astype(str)
    return frame


def _median_with_misses(values: pd.Series, reached: pd.Series) -> float:
    """Median over runs with a miss as +∞; NaN when a run that reached has no value."""
    if values[reached].isna().any():
        return math.nan  # unknown (e.g. no energy meter), not a miss
    return float(np.median(np.where(reached.to_numpy(bool), values.to_numpy(float), np.inf)))


def _best_of(group: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    """The best lr of one (run, device, workload, optimizer) and its runs."""
    ranked = []
    for lr, runs in group.groupby("lr", sort=True):
        reached_time = runs.loc[runs["reached"], "time_to_target_s"].median()
        ranked.append((-int(runs["reached"].sum()),
                       math.inf if pd.isna(reached_time) else float(reached_time), float(lr), runs))
    ranked.sort(key=lambda item: item[:3])
    return ranked[0][2], ranked[0][3]


def best_lr_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, device, workload, optimizer) at its best lr, with median costs.

    ``time_vs_best`` and ``steps_vs_best`` divide the optimizer's median by the smallest
    median among the optimizers of the same workload (∞ for a miss, NaN when none reached).
    """
    frame = _plain(summary)
    rows = []
    for keys, group in frame.groupby(GROUP, sort=True):
        lr, runs = _best_of(group)
        grid = group["lr"].unique()
        sources = set(runs["energy_source"])
        row = dict(zip(GROUP, keys, strict=True))
        row.update(
            lr=lr, lr_at_edge=bool(len(grid) > 1 and lr in (grid.min(), grid.max())),
            target_loss=float(runs["target_loss"].iloc[0]), runs=len(runs),
            seeds=int(runs["seed"].nunique()), runs_reached=int(runs["reached"].sum()),
            energy_source=sources.pop() if len(sources) == 1 else "mixed")
        for col in COSTS:
            row[col] = _median_with_misses(runs[col], runs["reached"])
        rows.append(row)
    best = pd.DataFrame(rows, columns=[c for c in BEST_COLUMNS if not c.endswith("_vs_best")])
    for col, ratio in (("time_to_target_s", "time_vs_best"), ("steps_to_target", "steps_vs_best")):
        fastest = best.groupby(PROBLEM)[col].transform("min")
        with np.errstate(divide="ignore", invalid="ignore"):
            best[ratio] = (best[col] / fastest).where(np.isfinite(fastest))
    return best[BEST_COLUMNS]


