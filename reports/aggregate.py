"""Per-case summaries and comparisons between cases, decided by the analysis engine.

Summaries use measured steps only (warm-up rows are stored but excluded); a case that ran in
several agent processes shows how many and the min–max of their medians. Comparisons come
from :func:`analysis.compare.compare_steps` — paired when the two cases alternated inside the
same processes, else Welch's t on the log process medians — and every table is one Holm
family decided by :func:`analysis.decide.decide_family`, the rule the gate uses. They are
shown as a speed-up, ``speedup = baseline / variant`` (> 1: the variant is faster).

A step-time difference is not credited to an optimizer or kernel when the forward and
backward phases — the same work for every optimizer and kernel — differ significantly in
the same direction: that is process noise (placement, caches), and the verdict says so.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.compare import Comparison, compare_steps
from analysis.decide import DEFAULT_ALPHA, DEFAULT_FLOOR, decide_family, report_word
from analysis.processes import process_medians
from analysis.schema import PHASE_COLUMNS
from analysis.stats import DEFAULT_RESAMPLES, bootstrap_medians, percentile_interval, t_quantile

DEFAULT_BOOT = DEFAULT_RESAMPLES
CASE_KEY: tuple[str, str] = ("run_id", "case_id")
CONFIG_COLUMNS: tuple[str, ...] = (
    "run_id", "device", "workload", "optimizer", "kernel", "threads", "batch", "dtype",
)
BASELINE_KERNEL = "forloop"  # torch's default update on CPU
BASELINE_OPTIMIZER = "nag"
PROCESS_NOISE = "process noise"
FWD_BWD = "fwd_bwd_ns"  # forward + backward: identical work for every optimizer and kernel


@dataclass(frozen=True)
class CallRule:
    """When a comparison is called a difference: the engine's rule with these levels."""

    alpha: float = DEFAULT_ALPHA  # family-wise, per comparison table
    floor: float = DEFAULT_FLOOR  # the change must not be shown smaller than this


class StepSamples:
    """Measured steps of every case, indexed by (run_id, case_id), with cached bootstraps."""

    def __init__(self, steps: pd.DataFrame, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> None:
        measured = steps.loc[~steps["warmup"]]
        if "forward_ns" in measured.columns and "backward_ns" in measured.columns:
            measured = measured.assign(**{FWD_BWD: measured["forward_ns"].astype("int64")
                                          + measured["backward_ns"].astype("int64")})
        self._frame = measured
        self._index = measured.groupby(list(CASE_KEY), observed=True, sort=False).indices
        self._n_boot = n_boot
        self._seed = seed
        self._boots: dict[tuple[tuple[str, str], str], np.ndarray] = {}

    def rows(self, key: tuple[str, str]) -> pd.DataFrame:
        """The measured step rows of one case (empty frame when it has none)."""
        positions = self._index.get(key)
        return self._frame.iloc[positions] if positions is not None else self._frame.iloc[:0]

    def values(self, key: tuple[str, str], metric: str) -> np.ndarray:
        """Samples of ``metric`` (e.g. ``step_ns``) for one case, or an empty array."""
        rows = self._index.get(key)
        if rows is None or metric not in self._frame.columns:
            return np.empty(0)
        return self._frame[metric].to_numpy()[rows].astype(np.float64)

    def boot(self, key: tuple[str, str], metric: str) -> np.ndarray:
        """Bootstrap medians of one case's metric (deterministic per case and metric)."""
        cache_key = (key, metric)
        if cache_key not in self._boots:
            seed = [self._seed, zlib.crc32(f"{key[0]}/{key[1]}/{metric}".encode())]
            rng = np.random.default_rng(seed)
            self._boots[cache_key] = bootstrap_medians(self.values(key, metric), self._n_boot, rng)
        return self._boots[cache_key]

    def spread(self, key: tuple[str, str], metric: str = "step_ns") -> tuple[int, float, float,
                                                                             float, float]:
        """(processes, min, max of their medians, CI low, CI high of the case's median).

        With ≥ 2 processes the interval is the t-interval of the geometric mean of the
        process medians (the process is the unit); with one, the bootstrap interval of its
        steps' median, which cannot show process-to-process variation.
        """
        medians = process_medians(self.rows(key), metric)["median"].to_numpy(float)
        if medians.size == 0:
            return 0, math.nan, math.nan, math.nan, math.nan
        if medians.size == 1:
            low, high = percentile_interval(self.boot(key, metric))
            return 1, float(medians[0]), float(medians[0]), low, high
        logs = np.log(medians)
        half = t_quantile(0.975, logs.size - 1) * logs.std(ddof=1) / math.sqrt(
            logs.size)
        return (int(medians.size), float(medians.min()), float(medians.max()),
                math.exp(logs.mean() - half), math.exp(logs.mean() + half))


def case_summary(cases: pd.DataFrame, samples: StepSamples, steps: pd.DataFrame) -> pd.DataFrame:
    """One row per case: median step time with bootstrap CI, p10/p90, IQR, CV, phase medians."""
    measured = steps.loc[~steps["warmup"]]
    grouped = measured.groupby(list(CASE_KEY), observed=True)
    levels = [0.1, 0.25, 0.5, 0.75, 0.9]
    quant = grouped["step_ns"].quantile(levels).unstack().reindex(columns=levels)  # no steps: no columns
    quant.columns = ["p10_ns", "p25_ns", "median_step_ns", "p75_ns", "p90_ns"]
    stats = grouped["step_ns"].agg(n_steps="size", mean_ns="mean", std_ns="std")
    phases = grouped[list(PHASE_COLUMNS)].median()
    phases.columns = [f"median_{c}" for c in phases.columns]
    last_loss = grouped["loss"].last().rename("final_loss")
    per_case = pd.concat([quant, stats, phases, last_loss], axis=1).reset_index()
    per_case["iqr_ns"] = per_case["p75_ns"] - per_case["p25_ns"]
    per_case["cv"] = per_case["std_ns"] / per_case["mean_ns"]
    spreads = [samples.spread((r, c))
               for r, c in zip(per_case["run_id"], per_case["case_id"], strict=True)]
    for i, name in enumerate(("n_processes", "process_min_ns", "process_max_ns", "ci_lo_ns",
                              "ci_hi_ns")):
        per_case[name] = [s[i] for s in spreads]
    keep = [c for c in cases.columns if c not in per_case.columns or c in CASE_KEY]
    left = cases[keep].copy()
    for col in CASE_KEY:
        left[col] = left[col].astype(str)
        per_case[col] = per_case[col].astype(str)
    summary = left.merge(per_case, on=list(CASE_KEY), how="left")
    summary["n_steps"] = summary["n_steps"].fillna(0).astype(int)
    summary["n_processes"] = summary["n_processes"].fillna(0).astype(int)
    order = list(CONFIG_COLUMNS[1:]) + ["run_id"]
    summary = summary.sort_values(order, key=_natural_key).reset_index(drop=True)
    for col in CONFIG_COLUMNS:
        summary[col] = summary[col].astype(str)
    return summary


def _natural_key(column: pd.Series) -> pd.Series:
    """Sort numbers as numbers (batch 8 before 16) and everything else as text."""
    numeric = pd.to_numeric(column, errors="coerce")
    return numeric if numeric.notna().all() else column.astype(str)


def _compare_pair(base: pd.Series, variant: pd.Series, metric: str,
                  samples: StepSamples) -> tuple[dict[str, object], Comparison | None,
                                                 Comparison | None]:
    """A table row for variant against base, its comparison, and the forward+backward one."""
    bkey = (base["run_id"], base["case_id"])
    vkey = (variant["run_id"], variant["case_id"])
    row: dict[str, object] = {
        "metric": metric, "baseline_case": base["case_id"], "variant_case": variant["case_id"],
        "variant_status": variant["status"],
    }
    if variant["status"] != "ok" or not bool(variant["correct_ok"]):
        reason = "wrong" if variant["status"] in ("ok", "wrong") else variant["status"]
        row.update(baseline_median_ns=np.nan, variant_median_ns=np.nan, speedup=np.nan,
                   ci_lo=np.nan, ci_hi=np.nan, p_value=np.nan, verdict=reason)
        return row, None, None
    b_rows, v_rows = samples.rows(bkey), samples.rows(vkey)
    comparison = compare_steps(b_rows, v_rows, metric)
    phases = None
    if metric == "step_ns" and FWD_BWD in b_rows.columns:
        phases = compare_steps(b_rows, v_rows, FWD_BWD)
    c = comparison
    row.update(baseline_median_ns=c.baseline_median, variant_median_ns=c.candidate_median,
               speedup=_inverse(c.ratio), ci_lo=_inverse(c.ratio_ci_high),
               ci_hi=_inverse(c.ratio_ci_low), p_value=c.p_value, method=c.method,
               baseline_processes=c.n_baseline, variant_processes=c.n_candidate,
               note=c.note)
    return row, comparison, phases


def _inverse(value: float) -> float:
    return 1.0 / value if value and math.isfinite(value) else math.nan


def _decide_table(rows: list[tuple[dict[str, object], Comparison | None, Comparison | None]],
                  rule: CallRule) -> list[dict[str, object]]:
    """Decide one table's comparisons as one Holm family; flag process noise."""
    decided = decide_family([c for _, c, _ in rows], [rule.floor] * len(rows), rule.alpha)
    out = []
    for (row, comparison, phases), (adjusted, verdict, reason) in zip(rows, decided,
                                                                       strict=True):
        if comparison is None:
            out.append(row)
            continue
        word = report_word(verdict)
        if word in ("faster", "slower") and phases is not None and _moved(phases, comparison,
                                                                           rule):
            word = PROCESS_NOISE
            reason = (f"{reason}; forward+backward moved too (ratio {phases.ratio:.3f}, "
                      f"p={phases.p_value:.2g}): not credited to the variant")
        row.update(verdict=word, reason=reason,
                   p_adjusted=adjusted.p_adjusted if adjusted is not None else np.nan)
        out.append(row)
    return out


def _moved(phases: Comparison, step: Comparison, rule: CallRule) -> bool:
    """Forward+backward differ significantly (unadjusted: the cautious side) in the step's
    direction."""
    if not (math.isfinite(phases.p_value) and phases.p_value < rule.alpha):
        return False
    return (phases.ratio > 1.0) == (step.ratio > 1.0)


COMPARISON_COLUMNS: tuple[str, ...] = (
    "kind", "device", "workload", "optimizer", "kernel", "threads", "batch", "dtype", "run_id",
    "baseline", "variant", "metric", "baseline_median_ns", "variant_median_ns", "speedup",
    "ci_lo", "ci_hi", "p_value", "p_adjusted", "verdict", "method", "baseline_processes",
    "variant_processes", "reason", "note", "variant_status", "baseline_case", "variant_case",
)


def _finish(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    for col in ("speedup", "ci_lo", "ci_hi", "p_value", "p_adjusted", "baseline_median_ns",
                "variant_median_ns"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _usable_baseline(candidates: pd.DataFrame) -> pd.Series | None:
    ok = candidates.loc[(candidates["status"] == "ok") & candidates["n_steps"].gt(0)]
    return ok.iloc[0] if len(ok) else None


def compare_kernels(summary: pd.DataFrame, samples: StepSamples, rule: CallRule,
                    metrics: tuple[str, ...] = ("step_ns", "update_ns")) -> pd.DataFrame:
    """Each kernel variant against ``forloop`` with every other setting equal.

    Paired inside processes when the cases shared them, on the update phase and the step.
    """
    rows: list[tuple[dict[str, object], Comparison | None, Comparison | None]] = []
    match = [c for c in CONFIG_COLUMNS if c != "kernel"]
    for _, group in summary.groupby(match, sort=True):
        base = _usable_baseline(group.loc[group["kernel"] == BASELINE_KERNEL])
        if base is None:
            continue
        for _, variant in group.loc[group["kernel"] != BASELINE_KERNEL].iterrows():
            for metric in metrics:
                row, comparison, phases = _compare_pair(base, variant, metric, samples)
                row.update({c: variant[c] for c in CONFIG_COLUMNS}, kind="kernel",
                           baseline=BASELINE_KERNEL, variant=variant["kernel"])
                rows.append((row, comparison, phases))
    return _finish(_decide_table(rows, rule))


def compare_optimizers(summary: pd.DataFrame, samples: StepSamples,
                       rule: CallRule) -> pd.DataFrame:
    """Each optimizer against NAG with the same kernel, else against NAG ``forloop``."""
    rows: list[tuple[dict[str, object], Comparison | None, Comparison | None]] = []
    match = [c for c in CONFIG_COLUMNS if c not in ("optimizer", "kernel")]
    for _, group in summary.groupby(match, sort=True):
        nag = group.loc[group["optimizer"] == BASELINE_OPTIMIZER]
        for _, variant in group.loc[group["optimizer"] != BASELINE_OPTIMIZER].iterrows():
            base = _usable_baseline(nag.loc[nag["kernel"] == variant["kernel"]])
            if base is None:
                base = _usable_baseline(nag.loc[nag["kernel"] == BASELINE_KERNEL])
            if base is None:
                continue
            row, comparison, phases = _compare_pair(base, variant, "step_ns", samples)
            row.update({c: variant[c] for c in CONFIG_COLUMNS}, kind="optimizer",
                       baseline=f"{BASELINE_OPTIMIZER} {base['kernel']}",
                       variant=f"{variant['optimizer']} {variant['kernel']}")
            rows.append((row, comparison, phases))
    return _finish(_decide_table(rows, rule))


def device_labels(summary: pd.DataFrame) -> pd.Series:
    """A label per row naming its device, with the run id when a device appears in several."""
    runs_per_device = summary.groupby("device")["run_id"].transform("nunique")
    return summary["device"].where(runs_per_device <= 1,
                                   summary["device"] + " (" + summary["run_id"] + ")")


def compare_devices(summary: pd.DataFrame, samples: StepSamples, rule: CallRule,
                    run_order: list[str]) -> pd.DataFrame:
    """Each device (or run) against the first run given, for identical case settings."""
    labelled = summary.assign(label=device_labels(summary))
    if labelled["label"].nunique() < 2:
        return _finish([])
    order = {run: i for i, run in enumerate(run_order)}
    labelled = labelled.assign(order=labelled["run_id"].map(order).fillna(len(order)))
    reference = labelled.sort_values("order")["label"].iloc[0]
    rows: list[tuple[dict[str, object], Comparison | None, Comparison | None]] = []
    match = [c for c in CONFIG_COLUMNS if c not in ("run_id", "device")]
    for _, group in labelled.groupby(match, sort=True):
        base = _usable_baseline(group.loc[group["label"] == reference])
        if base is None:
            continue
        for _, variant in group.loc[group["label"] != reference].iterrows():
            row, comparison, _ = _compare_pair(base, variant, "step_ns", samples)
            row.update({c: variant[c] for c in CONFIG_COLUMNS}, kind="device",
                       baseline=reference, variant=variant["label"])
            rows.append((row, comparison, None))
    return _finish(_decide_table(rows, rule))
