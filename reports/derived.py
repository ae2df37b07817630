"""Tables derived from the case summary: energy, memory, ceilings and stability warnings.

Energy numbers keep their source; a measured and an estimated figure are never put in the
same aggregate (comparisons only pair cases whose ``energy_source`` is identical).
Ceilings place the optimizer update (bytes moved per step ÷ update time) against the probed
memory bandwidth, and the whole step (FLOPs ÷ step time) against matmul throughput.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

ID_COLUMNS: list[str] = ["device", "workload", "optimizer", "kernel", "threads", "batch",
                         "dtype", "case_id", "run_id"]


@dataclass(frozen=True)
class WarningRule:
    """Thresholds for the stability warnings panel."""

    noisy_cv: float = 0.10  # coefficient of variation of step time above which a case is noisy


def energy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Energy per case with its source; cases without an energy reading are left out."""
    has = (summary["energy_source"].ne("none") & summary["energy_j"].notna()
           & summary["status"].ne("failed"))
    frame = summary.loc[has, ID_COLUMNS + ["status", "correct_ok", "energy_source", "energy_j",
                                           "energy_per_step_j", "idle_power_w",
                                           "median_step_ns"]].copy()
    missing = frame["energy_per_step_j"].isna()
    steps = summary.loc[has, "steps"].replace(0, np.nan)
    frame.loc[missing, "energy_per_step_j"] = (frame["energy_j"] / steps)[missing]
    frame["measured"] = frame["energy_source"].str.startswith("measured:")
    frame["avg_power_w"] = frame["energy_per_step_j"] / (frame["median_step_ns"] * 1e-9)
    return frame.reset_index(drop=True)


def energy_comparisons(energy: pd.DataFrame, baseline_kernel: str) -> pd.DataFrame:
    """Energy per step of each kernel variant relative to the baseline kernel, same source.

    Only correct cases are compared: a variant that failed its check is wrong, not frugal.
    """
    rows = []
    energy = energy.loc[energy["status"].eq("ok") & energy["correct_ok"]]
    match = ["run_id", "device", "workload", "optimizer", "threads", "batch", "dtype",
             "energy_source"]
    for keys, group in energy.groupby(match, sort=True):
        base = group.loc[group["kernel"] == baseline_kernel, "energy_per_step_j"]
        if base.empty or not np.isfinite(base.iloc[0]) or base.iloc[0] <= 0:
            continue
        for _, row in group.loc[group["kernel"] != baseline_kernel].iterrows():
            rows.append({**dict(zip(match, keys, strict=True)), "baseline": baseline_kernel,
                         "variant": row["kernel"], "baseline_j": float(base.iloc[0]),
                         "variant_j": row["energy_per_step_j"],
                         "energy_ratio": row["energy_per_step_j"] / float(base.iloc[0])})
    return pd.DataFrame(rows, columns=match + ["baseline", "variant", "baseline_j", "variant_j",
                                               "energy_ratio"])


def memory_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Parameters, optimizer state, activations (peak − baseline RSS when known), peak RSS."""
    frame = summary[ID_COLUMNS + ["param_bytes", "state_bytes", "peak_rss_bytes", "uss_bytes",
                                  "pss_bytes", "baseline_rss_bytes"]].copy()
    # NaN when the run did not record a baseline RSS (taken before the first step)
    frame["activation_bytes"] = (frame["peak_rss_bytes"] - frame["baseline_rss_bytes"]).clip(
        lower=0)
    return frame.reset_index(drop=True)


def ceilings_table(summary: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """Achieved update GB/s and step GFLOP/s next to the device's probed ceilings."""
    frame = summary.loc[summary["status"].eq("ok") & summary["n_steps"].gt(0),
                        ID_COLUMNS + ["median_step_ns", "median_update_ns",
                                      "update_bytes_per_step", "flops_per_step"]].copy()
    ceilings = probes[["run_id", "device", "bandwidth_gbs", "matmul_gflops"]].astype(
        {"run_id": str, "device": str})
    frame = frame.merge(ceilings.drop_duplicates(["run_id", "device"]), on=["run_id", "device"],
                        how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        upd_ns = frame["median_update_ns"].where(frame["median_update_ns"] > 0)
        frame["update_gbs"] = frame["update_bytes_per_step"] / upd_ns  # bytes/ns == GB/s
        frame["step_gflops"] = frame["flops_per_step"] / frame["median_step_ns"]  # FLOP/ns
    frame["update_bw_fraction"] = frame["update_gbs"] / frame["bandwidth_gbs"]
    frame["step_matmul_fraction"] = frame["step_gflops"] / frame["matmul_gflops"]
    return frame.reset_index(drop=True)


def warnings_table(summary: pd.DataFrame, rule: WarningRule) -> pd.DataFrame:
    """One row per (case, warning): noisy, throttled, estimated energy, wrong, failed, flags."""
    rows: list[dict[str, str]] = []
    for _, case in summary.iterrows():
        ident = {c: str(case[c]) for c in ID_COLUMNS}

        def add(kind: str, detail: str, ident: dict[str, str] = ident) -> None:
            rows.append({**ident, "warning": kind, "detail": detail})

        if case["status"] == "failed":
            add("failed", f"{case['error_kind']}: {case['error_message']}".strip(": "))
        if case["status"] == "wrong" or not bool(case["correct_ok"]):
            add("wrong", f"max relative difference vs reference {case['correct_max_rel_diff']:.3g}")
        cv = case.get("cv", np.nan)
        if np.isfinite(cv) and cv > rule.noisy_cv:
            add("noisy", f"step-time CV {cv:.1%} > {rule.noisy_cv:.0%}")
        if bool(case["throttled"]):
            add("throttled", "CPU frequency dropped or thermal throttling during the case")
        if str(case["energy_source"]).startswith("estimated:"):
            add("estimated energy", f"energy from {case['energy_source']}, not a meter")
        for flag in filter(None, (f.strip() for f in str(case["warnings"]).split(";"))):
            if flag not in ("noisy", "throttled"):
                add(flag, "flagged by the harness during the run")
    return pd.DataFrame(rows, columns=ID_COLUMNS + ["warning", "detail"])


def thermal_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Temperature and frequency before/after each case, where recorded."""
    cols = ["temp_before_c", "temp_after_c", "freq_before_khz", "freq_after_khz", "throttled"]
    frame = summary[ID_COLUMNS + cols]
    has = frame[cols[:4]].notna().any(axis=1)
    return frame.loc[has].reset_index(drop=True)


def correctness_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Correctness check of every variant against the torch.optim reference."""
    return summary[ID_COLUMNS + ["status", "correct_ok", "correct_max_rel_diff"]].reset_index(
        drop=True)
