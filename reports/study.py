"""The optimizer study in the report: best learning rate per workload × optimizer, and sentences.

``harness/study.py`` writes ``study_summary.parquet`` (one row per run of a configuration:
reached or not, steps/seconds/joules to the target). Reports import nothing from ``harness``,
so :func:`best_lr_table` recomputes the harness's choice in pandas, with the same rule
(``docs/study.md``): the best lr is the one with the most runs reaching the target; ties go to
the lower median time-to-target among the runs that reached it, then to the smaller lr. Each
cost is the median over that lr's runs with a miss counted as +∞, so it is infinite when at
least half of the runs missed.

:func:`study_headlines` states, per device and workload, which optimizer reached the target
fastest and how much longer each other one took, in seconds and in steps (steps do not depend
on the host's load, seconds do); every number is a value of the table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from reports.headline import Headline

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


def device_label(best: pd.DataFrame) -> pd.Series:
    """The device of each row, with its run id when the device appears in several runs."""
    runs = best.groupby("device")["run_id"].transform("nunique")
    return best["device"].where(runs <= 1, best["device"] + " (" + best["run_id"] + ")")


def fmt_seconds(value: float) -> str:
    """Seconds to three significant figures (the form sentences and the test use)."""
    return f"{value:.3g} s"


def _runs_word(row: pd.Series) -> str:
    n = int(row["runs"])
    word = "seed" if n == int(row["seeds"]) else "run"
    return f"{n} {word}" + ("" if n == 1 else "s")


def _sentence(label: str, workload: str, group: pd.DataFrame) -> str:
    target = f"{group['target_loss'].iloc[0]:g}"
    finite = group.loc[np.isfinite(group["time_to_target_s"])]
    if finite.empty:
        return (f"On {label}, {workload}: no optimizer reached loss {target} in at least half "
                f"of its runs (best lrs: " + ", ".join(
                    f"{r['optimizer']} {r['lr']:g}" for _, r in group.iterrows()) + ").")
    win = finite.loc[finite["time_to_target_s"].idxmin()]
    edge = ", at the edge of its grid" if win["lr_at_edge"] else ""
    text = (f"On {label}, {workload}: {win['optimizer']} reaches loss {target} fastest "
            f"({fmt_seconds(win['time_to_target_s'])} median over {_runs_word(win)}, "
            f"best lr {win['lr']:g}{edge})")
    others = group.drop(index=win.name).sort_values("time_vs_best", na_position="last")
    parts = []
    for _, r in others.iterrows():
        if np.isfinite(r["time_to_target_s"]):
            parts.append(f"{r['optimizer']} takes {r['time_vs_best']:.2f}× as long and "
                         f"{r['steps_vs_best']:.2f}× the steps (best lr {r['lr']:g})")
        elif not math.isnan(r["time_to_target_s"]):
            parts.append(f"{r['optimizer']} misses it in {int(r['runs']) - int(r['runs_reached'])}"
                         f" of {_runs_word(r)} even at its best lr {r['lr']:g}")
    return text + "".join(f"; {p}" for p in parts) + "."


def study_headlines(best: pd.DataFrame) -> list[Headline]:
    """Per (device, workload): the optimizer fastest to the target and the others' ratios."""
    out: list[Headline] = []
    if best.empty:
        return out
    frame = best.assign(label=device_label(best))
    for (label, workload), group in frame.groupby(["label", "workload"], sort=True):
        out.append(Headline(str(label), str(workload), _sentence(str(label), str(workload), group),
                            "study", tuple(int(i) for i in group.index)))
    return out
