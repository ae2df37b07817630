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
                                           "active_energy_j", "median_step_ns"]].copy()
    # why a figure is not comparable (window shorter than the meter resolves, a restarted
    # counter, negative active energy): shown, never compared
    frame["energy_flags"] = (summary.loc[has, "energy_flags"].fillna("").astype(str)
                             if "energy_flags" in summary.columns else "")
    missing = frame["energy_per_step_j"].isna()
    steps = summary.loc[has, "steps"].replace(0, np.nan)
    frame.loc[missing, "energy_per_step_j"] = (frame["energy_j"] / steps)[missing]
    frame["measured"] = frame["energy_source"].str.startswith("measured:")
    frame["avg_power_w"] = frame["energy_per_step_j"] / (frame["median_step_ns"] * 1e-9)
    return frame.reset_index(drop=True)


def energy_gaps(summary: pd.DataFrame) -> pd.DataFrame:
    """Why cases have no energy figure: one row per (run, device, reason), with a case count."""
    none = summary.loc[summary["energy_source"].eq("none") | summary["energy_j"].isna()]
    reason = none["energy_reason"].fillna("").astype(str).replace("", "no reason recorded")
    frame = none.assign(energy_reason=reason).groupby(
        ["run_id", "device", "energy_reason"], sort=True).agg(
        cases=("case_id", "size"), example_case=("case_id", "first"))
    return frame.reset_index()


def energy_comparisons(energy: pd.DataFrame, baseline_kernel: str) -> pd.DataFrame:
    """Energy per step of each kernel variant relative to the baseline kernel, same source.

    Only correct cases are compared: a variant that failed its check is wrong, not frugal;
    nor are flagged figures (``energy_flags``: too short a window, a restarted counter).
    """
    rows = []
    energy = energy.loc[energy["status"].eq("ok") & energy["correct_ok"]]
    if "energy_flags" in energy.columns:
        energy = energy.loc[energy["energy_flags"].fillna("").astype(str).eq("")]
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
    """Parameters, optimizer state, activations, peak RSS.

    Activations are the bytes autograd saved for backward (``saved_activation_bytes``) where
    the agent measured them; otherwise the growth of RSS over the baseline taken before the
    first step, which misses memory the allocator reuses.
    """
    frame = summary[ID_COLUMNS + ["param_bytes", "state_bytes", "peak_rss_bytes", "uss_bytes",
                                  "pss_bytes", "baseline_rss_bytes"]].copy()
    # NaN when the run did not record a baseline RSS (taken before the first step)
    frame["rss_growth_bytes"] = (frame["peak_rss_bytes"] - frame["baseline_rss_bytes"]).clip(lower=0)
    saved = summary.get("saved_activation_bytes")
    frame["activation_bytes"] = (
        pd.to_numeric(saved, errors="coerce").fillna(frame["rss_growth_bytes"]).to_numpy()
        if saved is not None else frame["rss_growth_bytes"]
    )
    return frame.reset_index(drop=True)


def ceilings_table(summary: pd.DataFrame, probes: pd.DataFrame) -> pd.DataFrame:
    """Achieved update GB/s and step GFLOP/s next to the probed ceilings of the accelerator
    each case ran on (``accel``, CPU when absent) and, for matmul, of the case's dtype."""
    keep = ID_COLUMNS + ["median_step_ns", "median_update_ns", "update_bytes_per_step",
                         "flops_per_step"]
    frame = summary.loc[summary["status"].eq("ok") & summary["n_steps"].gt(0), keep].copy()
    frame["accel"] = (summary.loc[frame.index, "accel"].fillna("cpu").astype(str)
                      if "accel" in summary.columns else "cpu")
    ceilings = probes.astype({"run_id": str, "device": str}).copy()
    for col, default in (("accel", "cpu"), ("dtype", "*"), ("accel_name", "")):
        if col not in ceilings.columns:
            ceilings[col] = default
    any_dtype = ceilings.loc[ceilings["dtype"].eq("*")].drop(columns="dtype")
    dtypes = pd.DataFrame({"dtype": sorted(set(frame["dtype"].astype(str)))})
    ceilings = pd.concat([ceilings.loc[ceilings["dtype"].ne("*")], any_dtype.merge(dtypes, how="cross")],
                         ignore_index=True)
    on = ["run_id", "device", "accel", "dtype"]
    frame = frame.astype({"dtype": str}).merge(
        ceilings[on + ["accel_name", "bandwidth_gbs", "matmul_gflops"]].drop_duplicates(on),
        on=on, how="left")
    with np.errstate(divide="ignore", invalid="ignore"):
        upd_ns = frame["median_update_ns"].where(frame["median_update_ns"] > 0)
        frame["update_gbs"] = frame["update_bytes_per_step"] / upd_ns  # bytes/ns == GB/s
        frame["step_gflops"] = frame["flops_per_step"] / frame["median_step_ns"]  # FLOP/ns
    frame["update_bw_fraction"] = frame["update_gbs"] / frame["bandwidth_gbs"]
    frame["step_matmul_fraction"] = frame["step_gflops"] / frame["matmul_gflops"]
    return frame.reset_index(drop=True)


def _agent_flags(case: pd.Series) -> list[str]:
    """The agent's ';'-separated stability flags of a case, with its own column flags added."""
    flags = [f.strip() for f in str(case.get("warnings", "")).split(";") if f.strip()]
    flags = ["estimated energy" if f == "energy-estimated" else f for f in flags]
    if bool(case.get("cooldown_timed_out", False)):
        flags.append("long-cooldown")
    if bool(case.get("warmup_forced", False)):
        flags.append("warm-up forced")
    return list(dict.fromkeys(flags))


def _number(case: pd.Series, key: str) -> float:
    value = pd.to_numeric(case.get(key), errors="coerce")
    return float(value) if pd.notna(value) else float("nan")


def _flag_detail(flag: str, case: pd.Series) -> str:
    """What an agent flag means for this case, with the case's own figures."""
    temps = [t for t in (_number(case, "temp_before_c"), _number(case, "temp_after_c"))
             if np.isfinite(t)]
    cool_s = _number(case, "cooldown_s")
    details = {
        "throttled": str(case.get("throttle_reasons", "")) or (
            "CPU frequency dropped or thermal throttling during the case"),
        "hot": (f"hottest zone {max(temps):.0f} °C, above the profile's hot_c" if temps
                else "a thermal zone was above the profile's hot_c"),
        "long-cooldown": (f"cooldown waited {cool_s:.0f} s" if np.isfinite(cool_s) else
                          "cooldown waited long")
                         + ("; it timed out before reaching cooldown_c"
                            if bool(case.get("cooldown_timed_out", False)) else ""),
        "too-few-steps": (f"only {int(_number(case, 'steps'))} measured steps: median and CV "
                          "are unreliable; raise --steps"),
        "low-battery": f"battery at {_number(case, 'battery_pct'):.0f} % (phones throttle when low)",
        "warm-up forced": (f"warm-up did not settle within {int(_number(case, 'warmup_steps'))} "
                           "steps (warmup_max); the first measured steps may still be warming"),
        "estimated energy": f"energy from {case['energy_source']}, not a meter",
    }
    return details.get(flag, "flagged by the agent during the run")


def warnings_table(summary: pd.DataFrame, rule: WarningRule) -> pd.DataFrame:
    """One row per (case, warning): failed, wrong, noisy, throttled, estimated energy, and every
    flag the agent raised (hot, long-cooldown, too-few-steps, …).

    A warning both the report and the agent find (noisy, throttled, estimated energy) is one row;
    ``source`` says who found it (``report``, ``agent`` or ``agent + report``).
    """
    rows: list[dict[str, str]] = []
    for _, case in summary.iterrows():
        ident = {c: str(case[c]) for c in ID_COLUMNS}
        found: dict[str, tuple[str, str]] = {}  # warning -> (detail, source)

        if case["status"] == "failed":
            found["failed"] = (f"{case['error_kind']}: {case['error_message']}".strip(": "),
                               "report")
        elif _number(case, "processes_failed") > 0:
            found["failed"] = (f"{int(_number(case, 'processes_failed'))} of "
                               f"{int(_number(case, 'processes'))} processes failed ("
                               + f"{case['error_kind']}: {case['error_message']}".strip(": ")
                               + "); the case is summarised from the others", "report")
        if case["status"] == "wrong" or not bool(case["correct_ok"]):
            found["wrong"] = (f"max relative difference vs reference "
                              f"{case['correct_max_rel_diff']:.3g}", "report")
        cv = case.get("cv", np.nan)
        if np.isfinite(cv) and cv > rule.noisy_cv:
            found["noisy"] = (f"step-time CV {cv:.1%} > {rule.noisy_cv:.0%}", "report")
        if bool(case["throttled"]):
            found["throttled"] = (_flag_detail("throttled", case), "report")
        if str(case["energy_source"]).startswith("estimated:"):
            found["estimated energy"] = (_flag_detail("estimated energy", case), "report")
        for flag in _agent_flags(case):
            if flag in found:
                detail, _ = found[flag]
                found[flag] = (detail, "agent + report")
            elif flag == "noisy":
                cv_text = f"; the report's CV is {cv:.1%}" if np.isfinite(cv) else ""
                found[flag] = (f"the agent's step-time CV exceeded its limit{cv_text}", "agent")
            else:
                found[flag] = (_flag_detail(flag, case), "agent")
        rows += [{**ident, "warning": kind, "detail": detail, "source": source}
                 for kind, (detail, source) in found.items()]
    return pd.DataFrame(rows, columns=ID_COLUMNS + ["warning", "detail", "source"])


THERMAL_SENSORS: list[str] = ["temp_before_c", "temp_after_c", "freq_before_khz",
                               "freq_after_khz"]


def thermal_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Device state around every case: temperature, frequency, throttling, battery, cooldown.

    Every case has a row (the cooldown is always recorded); sensors a device lacks are blank.
    """
    cols = [*THERMAL_SENSORS, "throttled", "throttle_reasons", "battery_pct", "charging",
            "cooldown_s", "cooldown_timed_out"]
    return summary[ID_COLUMNS + cols].reset_index(drop=True)


def correctness_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Correctness check of every variant against the torch.optim reference."""
    checked = ["correct_checked"] if "correct_checked" in summary.columns else []
    return summary[ID_COLUMNS + ["status", *checked, "correct_ok",
                                 "correct_max_rel_diff"]].reset_index(drop=True)
