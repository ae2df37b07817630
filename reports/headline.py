"""The sentences at the top of a report: the answer, generated from the comparison tables.

One or two sentences per (device, workload): the fastest correct NAG kernel variant against
``forloop`` and each optimizer against NAG, for that workload's most common setting
(threads, batch, dtype). Every number in a sentence is a value from a table row, rounded to
two decimals, so a test can check the sentence against the table.

A ratio is stated only for a difference the engine calls (``faster``/``slower``, decided by
:mod:`analysis.decide`); other comparisons are named as "no clear difference" without a
number, and a step-time difference whose forward and backward phases moved too is named as
process noise, not credited to the optimizer or kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.aggregate import BASELINE_KERNEL, BASELINE_OPTIMIZER, PROCESS_NOISE


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


CALLED = ("faster", "slower")


def _called(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame["verdict"].isin(CALLED)]


def _names(frame: pd.DataFrame, column: str = "variant") -> str:
    return ", ".join(f"`{v}`" for v in frame[column])


def _where(row: pd.Series) -> str:
    threads = f"{row['threads']} thread" + ("" if str(row["threads"]) == "1" else "s")
    return f"{threads}, batch {row['batch']}, {row['dtype']}"


def kernel_headlines(kernels: pd.DataFrame, labels: pd.Series) -> list[Headline]:
    """Best called NAG kernel variant vs ``forloop`` on the step and the update, per
    device/workload; uncalled and noise-only comparisons are named without a ratio."""
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
        called = _called(valid)
        rows: list[int] = []
        if called.empty:
            text = (f"On {label}, {workload}: no NAG kernel variant changes the training step "
                    f"clearly against `{BASELINE_KERNEL}` ({_where(valid.iloc[0])})")
            update = _called(everything.loc[(everything["metric"] == "update_ns")
                                            & (everything["label"] == label)
                                            & everything["variant_case"].isin(
                                                valid["variant_case"])])
            if not update.empty:
                idx = update["speedup"].idxmax()
                u = update.loc[idx]
                text += (f"; the update phase alone: `{u['variant']}` is "
                         f"{fmt_ratio(u['speedup'], u['ci_lo'], u['ci_hi'], f'`{BASELINE_KERNEL}`')}")
                rows.append(int(idx))
        else:
            idx = called["speedup"].idxmax()
            row = called.loc[idx]
            ratio = fmt_ratio(row["speedup"], row["ci_lo"], row["ci_hi"], f"`{BASELINE_KERNEL}`")
            text = (f"On {label}, {workload}: NAG `{row['variant']}` is {ratio} per training "
                    f"step ({_where(row)})")
            rows.append(int(idx))
            update = everything.loc[(everything["metric"] == "update_ns")
                                    & (everything["run_id"] == row["run_id"])
                                    & (everything["variant_case"] == row["variant_case"])
                                    & (everything["baseline_case"] == row["baseline_case"])]
            update = update.loc[np.isfinite(update["speedup"])]
            if not update.empty:
                u = update.iloc[0]
                text += ("; the update phase alone is "
                         + (fmt_ratio(u["speedup"], u["ci_lo"], u["ci_hi"], f"`{BASELINE_KERNEL}`")
                            if u["verdict"] in CALLED else "not clearly different"))
                rows.append(int(update.index[0]))
        noise = valid.loc[valid["verdict"] == PROCESS_NOISE]
        if not noise.empty:
            text += (f"; the step-time difference of {_names(noise)} is process noise "
                     "(forward and backward moved too), not credited to the kernel")
        text += "."
        if wrong:
            text += f" Not compared (failed correctness): {', '.join(f'`{w}`' for w in wrong)}."
        out.append(Headline(str(label), str(workload), text, "kernels",
                            tuple(rows) or tuple(int(i) for i in valid.index)))
    return out


def optimizer_headlines(optimizers: pd.DataFrame, labels: pd.Series) -> list[Headline]:
    """Each optimizer's called speed-up against NAG (same kernel), per device/workload."""
    out: list[Headline] = []
    frame = optimizers.assign(label=labels)
    for (label, workload), group in frame.groupby(["label", "workload"], sort=True):
        valid = _setting(group)
        valid = valid.loc[np.isfinite(valid["speedup"])
                          & (valid["kernel"] == BASELINE_KERNEL)]
        if valid.empty or _ambiguous(valid):
            continue
        called = _called(valid)
        parts = [f"`{r['optimizer']}` is {fmt_ratio(r['speedup'], r['ci_lo'], r['ci_hi'])}"
                 for _, r in called.iterrows()]
        noise = valid.loc[valid["verdict"] == PROCESS_NOISE]
        if not noise.empty:
            parts.append(f"{_names(noise, 'optimizer')}: the step-time difference is process "
                         "noise (forward and backward moved too), not credited to the optimizer")
        unclear = valid.loc[~valid["verdict"].isin((*CALLED, PROCESS_NOISE))]
        if not unclear.empty:
            parts.append(f"{_names(unclear, 'optimizer')}: no clear difference")
        text = (f"On {label}, {workload}, per training step against NAG with "
                f"`{BASELINE_KERNEL}` ({_where(valid.iloc[0])}): " + "; ".join(parts) + ".")
        out.append(Headline(str(label), str(workload), text, "optimizers",
                            tuple(int(i) for i in called.index) or tuple(
                                int(i) for i in valid.index)))
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
        if row["verdict"] in CALLED:
            ratio = fmt_ratio(row["speedup"], row["ci_lo"], row["ci_hi"], str(row["baseline"]))
            text = (f"For {workload} with NAG `{BASELINE_KERNEL}` ({_where(row)}), {variant} is "
                    f"{ratio} per training step.")
        else:
            text = (f"For {workload} with NAG `{BASELINE_KERNEL}` ({_where(row)}), {variant} is "
                    f"not clearly different from {row['baseline']} per training step.")
        out.append(Headline(str(variant), str(workload), text, "devices", (int(valid.index[0]),)))
    return out
