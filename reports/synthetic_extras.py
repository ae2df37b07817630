"""The optional tables of a synthetic run: optimizer study, gate calibration, ONNX inference.

Made-up numbers with known answers, in the stored format (``harness/study.py``,
``harness/calibrate_run.py``, ``workloads/onnx_infer.py``), so tests can check what the report
makes of them. Nothing here is a measurement.

The study: every optimizer runs lrs 0.01, 0.03 and 0.1 with seeds 0, 1, 2; a configuration that
reaches the target takes ``STUDY_STEPS[optimizer][lr] + seed`` steps at 2 ms × the
optimizer's factor per step; ``None`` is a miss (every seed).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numpy as np
import pandas as pd

STUDY_LRS: tuple[float, ...] = (0.01, 0.03, 0.1)
STUDY_SEEDS: tuple[int, ...] = (0, 1, 2)
STUDY_STEPS: dict[str, dict[float, int | None]] = {
    "nag": {0.01: 40, 0.03: 20, 0.1: 25}, "adam": {0.01: 30, 0.03: 32, 0.1: None},
    "sgd": {0.01: 35, 0.03: 35, 0.1: 35},
}
STUDY_TARGET = 0.5
STUDY_BUDGET = 60
STEP_S = 0.002


def study_tables(run_id: str, device: str, workloads: tuple[str, ...],
                 optimizers: tuple[str, ...], factors: dict[str, float],
                 energy_source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(curves, summary) as ``study.parquet`` and ``study_summary.parquet`` hold them."""
    curves, summary = [], []
    for workload, optimizer, lr, seed in itertools.product(workloads, optimizers, STUDY_LRS,
                                                           STUDY_SEEDS):
        planned = STUDY_STEPS.get(optimizer, {}).get(lr, 35)
        steps = None if planned is None else planned + seed
        per_step_s = STEP_S * factors.get(optimizer, 1.0)
        case_id = f"{workload}-{optimizer}-forloop-t1-b16-fp32-lr{lr:g}-T{STUDY_TARGET:g}-s{seed}"
        ran = STUDY_BUDGET if steps is None else steps
        rate = np.log(2.3 / STUDY_TARGET) / (steps if steps else 4 * STUDY_BUDGET)
        for step in range(ran):
            curves.append({"run_id": run_id, "device": device, "case_id": case_id, "repeat": 0,
                           "workload": workload, "optimizer": optimizer, "lr": lr, "seed": seed,
                           "step": step, "loss": 2.3 * np.exp(-rate * (step + 1)),
                           "elapsed_s": (step + 1) * per_step_s,
                           "energy_j": (step + 1) * per_step_s * 5.0})
        reached = steps is not None
        summary.append({
            "run_id": run_id, "device": device, "case_id": case_id, "repeat": 0,
            "workload": workload, "optimizer": optimizer, "lr": lr, "seed": seed,
            "target_loss": STUDY_TARGET, "status": "ok", "reached": reached,
            "steps_to_target": float(steps) if reached else np.nan,
            "time_to_target_s": steps * per_step_s if reached else np.nan,
            "energy_to_target_j": steps * per_step_s * 5.0 if reached else np.nan,
            "energy_source": energy_source, "steps_run": ran,
            "final_loss": 2.3 * np.exp(-rate * ran)})
    return pd.DataFrame(curves), pd.DataFrame(summary)


def profile_table(best: pd.DataFrame) -> pd.DataFrame:
    """Dolan–Moré ρ(τ) per metric and optimizer from a best-lr table (misses: ∞)."""
    rows = []
    for metric, column in (("time", "time_to_target_s"), ("steps", "steps_to_target")):
        wide = best.pivot_table(index="workload", columns="optimizer", values=column)
        ratios = wide.div(wide.min(axis=1), axis=0).fillna(np.inf)
        finite = ratios.to_numpy()[np.isfinite(ratios.to_numpy())]
        taus = np.unique(np.concatenate([[1.0, 2.0, 4.0], finite]))
        rows += [{"metric": metric, "optimizer": name, "tau": float(tau),
                  "rho": float((ratios[name] <= tau).mean())}
                 for name in ratios.columns for tau in taus]
    return pd.DataFrame(rows, columns=["metric", "optimizer", "tau", "rho"])


def calibration_table(device: str, case_ids: list[str]) -> pd.DataFrame:
    """Rows as ``calibration.parquet`` holds them: the first case meets the targets, others not."""
    rows = []
    for i, case_id in enumerate(case_ids):
        good = i == 0
        rows.append({
            "device": device, "case_id": case_id, "steps_per_repeat": 60,
            "repeats_per_side": 1, "slowdown": 0.05, "floor": 0.02, "alpha": 0.01,
            "noise_cv": 0.02 if good else 0.12, "run_drift": 0.01 if good else 0.06,
            "aa_trials": 20, "slowdown_trials": 21,
            "false_alarm_rate": 0.0 if good else 0.15, "detection_rate": 0.95 if good else 0.4,
            "mde": 0.03 if good else np.nan,
            "false_alarm_rate_with_drift": 0.0 if good else 0.05,
            "detection_rate_with_drift": 0.95 if good else 0.3,
            "mde_with_drift": 0.05 if good else np.nan, "failed_repeats": 0, "wall_s": 42.0,
        })
    return pd.DataFrame(rows)


CALIBRATION_TARGETS: dict[str, float] = {"false_alarm_rate": 0.05, "detection_rate": 0.90}
ONNX_LEVEL_FACTORS: dict[str, float] = {"disable": 0.9, "basic": 0.6, "extended": 0.55,
                                        "all": 0.5}
ONNX_EAGER_NS = 1_000_000


def onnx_rows(threads: int) -> list[dict[str, Any]]:
    """An ``onnx_inference`` study: torch eager at 1 ms, ORT at ``ONNX_LEVEL_FACTORS`` of it."""
    rows = [{"engine": "torch", "opt_level": "eager", "threads": threads, "repeats": 10,
             "median_ns": ONNX_EAGER_NS, "min_ns": ONNX_EAGER_NS * 0.9, "max_abs_diff": 0.0}]
    rows += [{"engine": "onnxruntime", "opt_level": level, "threads": threads, "repeats": 10,
              "median_ns": int(ONNX_EAGER_NS * factor), "min_ns": int(ONNX_EAGER_NS * factor * 0.9),
              "max_abs_diff": 2e-7, "exporter": "torchscript"}
             for level, factor in ONNX_LEVEL_FACTORS.items()]
    return rows


def onnx_json(threads: int) -> str:
    """The study as the store keeps it in ``cases.parquet``: JSON text."""
    return json.dumps(onnx_rows(threads))
