"""Per-case summaries and paired comparisons (ratios of medians with bootstrap intervals).

Summaries use measured steps only (warm-up rows are stored but excluded). Comparisons are
always a ratio of medians — never a mean of ratios — oriented as a speed-up:
``speedup = median(baseline) / median(variant)``, so > 1 means the variant is faster.
A difference is *called* only when the bootstrap interval excludes 1, the Mann–Whitney
p-value is below ``alpha`` and the speed-up differs from 1 by at least ``floor``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from reports.bootstrap import DEFAULT_BOOT, bootstrap_medians, mann_whitney_p, percentile_interval
from reports.load import PHASE_COLUMNS

CASE_KEY: tuple[str, str] = ("run_id", "case_id")
CONFIG_COLUMNS: tuple[str, ...] = (
    "run_id", "device", "workload", "optimizer", "kernel", "threads", "batch", "dtype",
)
BASELINE_KERNEL = "forloop"  # torch's default update on CPU
BASELINE_OPTIMIZER = "nag"


@dataclass(frozen=True)
class CallRule:
    """When a comparison is called a difference (both significant and large enough)."""

    alpha: float = 0.05
    floor: float = 0.02  # |speedup - 1| must reach 2 %


class StepSamples:
    """Measured per-step samples of every case, with cached bootstrap medians.

    Bootstraps are computed lazily per (case, metric) so only what a table needs is paid for.
    """

    def __init__(self, steps: pd.DataFrame, n_boot: int = DEFAULT_BOOT, seed: int = 0) -> None:
        measured = steps.loc[~steps["warmup"]]
        self._frame = measured
        self._index = measured.groupby(list(CASE_KEY), observed=True, sort=False).indices
        self._n_boot = n_boot
        self._seed = seed
        self._boots: dict[tuple[tuple[str, str], str], np.ndarray] = {}

    def values(self, key: tuple[str, str], metric: str) -> np.ndarray:
        """Samples of ``metric`` (e.g. ``step_ns``) for one case, or an empty array."""
        rows = self._index.get(key)
        if rows is None:
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
    intervals = [percentile_interval(samples.boot((r, c), "step_ns"))
                 for r, c in zip(per_case["run_id"], per_case["case_id"], strict=True)]
    per_case["ci_lo_ns"] = [lo for lo, _ in intervals]
    per_case["ci_hi_ns"] = [hi for _, hi in intervals]
    keep = [c for c in cases.columns if c not in per_case.columns or c in CASE_KEY]
    left = cases[keep].copy()
    for col in CASE_KEY:
        left[col] = left[col].astype(str)
        per_case[col] = per_case[col].astype(str)
    summary = left.merge(per_case, on=list(CASE_KEY), how="left")
    summary["n_steps"] = summary["n_steps"].fillna(0).astype(int)
    order = list(CONFIG_COLUMNS[1:]) + ["run_id"]
    summary = summary.sort_values(order, key=_natural_key).reset_index(drop=True)
    for col in CONFIG_COLUMNS:
        summary[col] = summary[col].astype(str)
    return summary


def _natural_key(column: pd.Series) -> pd.Series:
    """Sort numbers as numbers (batch 8 before 16) and everything else as text."""
    numeric = pd.to_numeric(column, errors="coerce")
    return numeric if numeric.notna().all() else column.astype(str)


def _verdict(speedup: float, lo: float, hi: float, p: float, rule: CallRule) -> str:
    if not np.isfinite(speedup):
        return "n/a"
    significant = np.isfinite(p) and p < rule.alpha and (lo > 1.0 or hi < 1.0)
    if significant and abs(speedup - 1.0) >= rule.floor:
        return "faster" if speedup > 1.0 else "slower"
    return "no clear difference"


def _compare_pair(base: pd.Series, variant: pd.Series, metric: str, samples: StepSamples,
                  rule: CallRule) -> dict[str, object]:
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
        return row
    b_vals, v_vals = samples.values(bkey, metric), samples.values(vkey, metric)
    b_med = float(np.median(b_vals)) if b_vals.size else np.nan
    v_med = float(np.median(v_vals)) if v_vals.size else np.nan
    speedup = b_med / v_med if v_med > 0 else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = percentile_interval(samples.boot(bkey, metric) / samples.boot(vkey, metric))
    p = mann_whitney_p(b_vals, v_vals)
    row.update(baseline_median_ns=b_med, variant_median_ns=v_med, speedup=speedup,
               ci_lo=lo, ci_hi=hi, p_value=p, verdict=_verdict(speedup, lo, hi, p, rule))
    return row


COMPARISON_COLUMNS: tuple[str, ...] = (
    "kind", "device", "workload", "optimizer", "kernel", "threads", "batch", "dtype", "run_id",
    "baseline", "variant", "metric", "baseline_median_ns", "variant_median_ns", "speedup",
    "ci_lo", "ci_hi", "p_value", "verdict", "variant_status", "baseline_case", "variant_case",
)


def _finish(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
    for col in ("speedup", "ci_lo", "ci_hi", "p_value", "baseline_median_ns",
                "variant_median_ns"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _usable_baseline(candidates: pd.DataFrame) -> pd.Series | None:
    ok = candidates.loc[(candidates["status"] == "ok") & candidates["n_steps"].gt(0)]
    return ok.iloc[0] if len(ok) else None


def compare_kernels(summary: pd.DataFrame, samples: StepSamples, rule: CallRule,
                    metrics: tuple[str, ...] = ("step_ns", "update_ns")) -> pd.DataFrame:
    """Each kernel variant against ``forloop`` with every other setting equal."""
    rows: list[dict[str, object]] = []
    match = [c for c in CONFIG_COLUMNS if c != "kernel"]
    for _, group in summary.groupby(match, sort=True):
        base = _usable_baseline(group.loc[group["kernel"] == BASELINE_KERNEL])
        if base is None:
            continue
        for _, variant in group.loc[group["kernel"] != BASELINE_KERNEL].iterrows():
            for metric in metrics:
                row = _compare_pair(base, variant, metric, samples, rule)
                row.update({c: variant[c] for c in CONFIG_COLUMNS}, kind="kernel",
                           baseline=BASELINE_KERNEL, variant=variant["kernel"])
                rows.append(row)
    return _finish(rows)


def compare_optimizers(summary: pd.DataFrame, samples: StepSamples,
                       rule: CallRule) -> pd.DataFrame:
    """Each optimizer against NAG with the same kernel, else against NAG ``forloop``."""
    rows: list[dict[str, object]] = []
    match = [c for c in CONFIG_COLUMNS if c not in ("optimizer", "kernel")]
    for _, group in summary.groupby(match, sort=True):
        nag = group.loc[group["optimizer"] == BASELINE_OPTIMIZER]
        for _, variant in group.loc[group["optimizer"] != BASELINE_OPTIMIZER].iterrows():
            base = _usable_baseline(nag.loc[nag["kernel"] == variant["kernel"]])
            if base is None:
                base = _usable_baseline(nag.loc[nag["kernel"] == BASELINE_KERNEL])
            if base is None:
                continue
            row = _compare_pair(base, variant, "step_ns", samples, rule)
            row.update({c: variant[c] for c in CONFIG_COLUMNS}, kind="optimizer",
                       baseline=f"{BASELINE_OPTIMIZER} {base['kernel']}",
                       variant=f"{variant['optimizer']} {variant['kernel']}")
            rows.append(row)
    return _finish(rows)


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
    rows: list[dict[str, object]] = []
    match = [c for c in CONFIG_COLUMNS if c not in ("run_id", "device")]
    for _, group in labelled.groupby(match, sort=True):
        base = _usable_baseline(group.loc[group["label"] == reference])
        if base is None:
            continue
        for _, variant in group.loc[group["label"] != reference].iterrows():
            row = _compare_pair(base, variant, "step_ns", samples, rule)
            row.update({c: variant[c] for c in CONFIG_COLUMNS}, kind="device",
                       baseline=reference, variant=variant["label"])
            rows.append(row)
    return _finish(rows)
