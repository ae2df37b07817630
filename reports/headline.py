"""The sentences at the top of a report: the answer, generated from the comparison tables.

One or two sentences per (device, workload): the fastest correct NAG kernel variant against
``forloop`` and each optimizer against NAG, for that workload's most common setting
(threads, batch, dtype). Every number in a sentence is a value from a table row, rounded to
two decimals, so a test can check the sentence against the table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.aggregate import BASELINE_KERNEL, BASELINE_OPTIMIZER


@dataclass(frozen=True)
class Headline:
    """One sentence and the comparison rows (by index in their table) it was made from."""

    device: str
    workload: str
    text: str
    table: str  # "kernels" or "optimizers"
    rows: tuple[int, ...]


def fmt_ratio(speedup: float, lo: float, hi: float, than: str = "") -> str:
    """``1.31× faster than X (95 % CI …)``, oriented so the number is ≥ 1.

    A slower variant is stated as ``1/speedup``× slower with the interval inverted too.
    """
    than = f" than {than}" if than else ""
    if speedup >= 1.0:
        return f"{speedup:.2f}× faster{than} (95 % CI {lo:.2f}–{hi:.2f}×)"
    return f"{1 / speedup:.2f}× slower{than} (95 % CI {1 / hi:.2f}–{1 / lo:.2f}×)"


def _setting(group: pd.DataFrame) -> pd.DataFrame:
    """Rows of the most common (threads, batch, dtype) in the group.

    Ties go to the most threads, then the largest batch: the setting closest to real use.
    """
    counts = group.groupby(["threads", "batch", "dtype"]).size().reset_index(name="n")
    counts["threads_num"] = pd.to_numeric(counts["threads"], errors="coerce")
    counts["batch_num"] = pd.to_numeric(counts["batch"], errors="coerce")
    best = counts.sort_values(["n", "threads_num", "batch_num"], ascending=False).iloc[0]
    mask = ((group["threads"] == best["threads"]) & (group["batch"] == best["batch"])
            & (group["dtype"] == best["dtype"]))
    return group.loc[mask]


def _ambiguous(valid: pd.DataFrame) -> bool:
    """Several cases of one setting share a variant (a study's lr × seed grid, say).

    No single ratio answers "how much faster" then; picking one would be cherry-picking, so
    no sentence is made (the study's own sentences cover its grid).
    """
    return bool(valid["variant"].duplicated().any())


def _uncalled(row: pd.Series) -> str:
    """Suffix for a ratio that the call rule does not call a difference."""
    return "" if row["verdict"] in ("faster", "slower") else " — not a clear difference"


def _where(row: pd.Series) -> str:
    threads = f"{row['threads']} thread" + ("" if str(row["threads"]) == "1" else "s")
    return f"{threads}, batch {row['batch']}, {row['dtype']}"


def kernel_headlines(kernels: pd.DataFrame, labels: pd.Series) -> list[Headline]:
    """Best correct NAG kernel variant vs ``forloop`` on whole-step time, per device/workload."""
    out: list[Headline] = []
    everything = kernels.assign(label=labels)
    frame = everything.loc[(everything["optimizer"] == BASELINE_OPTIMIZER)
                           & (everything["metric"] == "step_ns")]
    for (label, workload), group in frame.groupby(["label", "workload"], sort=True):
        valid = _setting(group)
        valid = valid.loc[np.isfinite(valid["speedup"])]
        wrong = sorted(set(group.loc[group["verdict"] == "wrong", "variant"]))
        if valid.empty or _ambiguous(valid):
            continue
        idx = valid["speedup"].idxmax()
        row = valid.loc[idx]
        ratio = fmt_ratio(row["speedup"], row["ci_lo"], row["ci_hi"], f"`{BASELINE_KERNEL}`")
        text = (f"On {label}, {workload}: NAG `{row['variant']}` is {ratio} per training step "
                f"({_where(row)}){_uncalled(row)}")
        rows = [int(idx)]
        update = everything.loc[(everything["metric"] == "update_ns")
                                & (everything["variant_case"] == row["variant_case"])
                                & (everything["baseline_case"] == row["baseline_case"])]
        update = update.loc[np.isfinite(update["speedup"])]
        if not update.empty:
            u = update.iloc[0]
            text += ("; the update phase alone is "
                     f"{fmt_ratio(u['speedup'], u['ci_lo'], u['ci_hi'], f'`{BASELINE_KERNEL}`')}"
                     f"{_uncalled(u)}")
            rows.append(int(update.index[0]))
        text += "."
        if wrong:
            text += f" Not compared (failed correctness): {', '.join(f'`{w}`' for w in wrong)}."
        out.append(Headline(str(label), str(workload), text, "kernels", tuple(rows)))
    return out


def optimizer_headlines(optimizers: pd.DataFrame, labels: pd.Series) -> list[Headline]:
    """Each optimizer's speed-up against NAG (same kernel), per device/workload."""
    out: list[Headline] = []
    frame = optimizers.assign(label=labels)
    for (label, workload), group in frame.groupby(["label", "workload"], sort=True):
        valid = _setting(group)
        valid = valid.loc[np.isfinite(valid["speedup"])
                          & (valid["kernel"] == BASELINE_KERNEL)]
        if valid.empty or _ambiguous(valid):
            continue
        parts = [f"`{r['optimizer']}` is {fmt_ratio(r['speedup'], r['ci_lo'], r['ci_hi'])}"
                 f"{_uncalled(r)}"
                 for _, r in valid.iterrows()]
        text = (f"On {label}, {workload}, per training step against NAG with "
                f"`{BASELINE_KERNEL}` ({_where(valid.iloc[0])}): " + "; ".join(parts) + ".")
        out.append(Headline(str(label), str(workload), text, "optimizers",
                            tuple(int(i) for i in valid.index)))
    return out


def device_headlines(devices: pd.DataFrame) -> list[Headline]:
    """Each device (or run) against the reference one, NAG ``forloop``, per workload."""
    out: list[Headline] = []
    frame = devices.loc[(devices["optimizer"] == BASELINE_OPTIMIZER)
                        & (devices["kernel"] == BASELINE_KERNEL)]
    for (variant, workload), group in frame.groupby(["variant", "workload"], sort=True):
        valid = _setting(group)
        valid = valid.loc[np.isfinite(valid["speedup"])]
        if valid.empty:
            continue
        row = valid.iloc[0]
        ratio = fmt_ratio(row["speedup"], row["ci_lo"], row["ci_hi"], str(row["baseline"]))
        text = (f"For {workload} with NAG `{BASELINE_KERNEL}` ({_where(row)}), {variant} is "
                f"{ratio} per training step{_uncalled(row)}.")
        out.append(Headline(str(variant), str(workload), text, "devices", (int(valid.index[0]),)))
    return out
