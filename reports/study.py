"""The optimizer study in the report: best learning rate per workload × optimizer, and sentences.

The best lr per workload × optimizer is chosen by :func:`analysis.study.best_lr_table`, the
same rule the harness prints after a study run.

:func:`study_headlines` states, per device and workload, which optimizer reached the target
fastest and how much longer each other one took, in seconds and in steps (steps do not depend
on the host's load, seconds do); every number is a value of the table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.study import BEST_COLUMNS, COSTS, GROUP, PROBLEM, best_lr_table
from reports.headline import Headline

__all__ = ["BEST_COLUMNS", "COSTS", "GROUP", "PROBLEM", "best_lr_table", "device_label",
           "fmt_seconds", "study_headlines"]

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
