"""Write a synthetic run directory in the stored-result format (for tests, demos, benchmarks).

The numbers are made up but shaped like real runs: log-normal step times, per-phase split,
known speed-ups per kernel variant and optimizer (so tests can check the aggregation
recovers them), one variant that fails correctness and one case that fails outright.
Nothing here is a measurement; reports built from it say so in the manifest.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reports import synthetic_extras as X
from reports.study import best_lr_table

# Kernel factors scale the update phase only (that is all a kernel variant changes).
KERNEL_FACTORS: dict[str, float] = {"forloop": 1.0, "foreach": 0.6, "fused": 0.5, "flat": 0.4}
OPTIMIZER_FACTORS: dict[str, float] = {"nag": 1.0, "adam": 1.25, "sgd": 0.95}
# An optimizer changes the update phase only (forward and backward are the same work):
# these update factors give whole steps 1.25× (adam) and 0.95× (sgd) of NAG's.
OPTIMIZER_UPDATE_FACTORS: dict[str, float] = {"nag": 1.0, "adam": 2.25, "sgd": 0.75}
PHASE_SHARES: dict[str, float] = {"data_ns": 0.05, "forward_ns": 0.3, "backward_ns": 0.45,
                                  "update_ns": 0.2}


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; every case is a point of the cross product below."""

    run_id: str = "synthetic-run"
    device: str = "local"
    workloads: tuple[str, ...] = ("mlp", "cnn")
    optimizers: tuple[str, ...] = ("nag", "adam")
    kernels: tuple[str, ...] = ("forloop", "foreach", "flat")
    threads: tuple[int, ...] = (1,)
    batches: tuple[int, ...] = (32,)
    steps: int = 60
    warmup_steps: int = 5
    base_step_ns: float = 2e6
    noise_sigma: float = 0.05
    processes: int = 4  # agent processes per case (rows of cases.parquet per case)
    process_sigma: float = 0.02  # between-process spread of a case's log median
    wrong_kernel: str | None = "flat"  # this NAG kernel fails its correctness check
    failed_workload: str | None = None  # adam on this workload fails outright
    energy_source: str = "measured:rapl"
    seed: int = 0
    onnx: bool = True  # NAG forloop cases carry an ONNX Runtime inference study
    calibration: bool = True  # write calibration.parquet for the NAG forloop cases


def _case_rows(spec: SyntheticSpec) -> list[dict[str, object]]:
    rows = []
    grid = itertools.product(spec.workloads, spec.optimizers, spec.kernels, spec.threads,
                             spec.batches)
    for w_i, (workload, optimizer, kernel, threads, batch) in enumerate(grid):
        case_id = f"{workload}-{optimizer}-{kernel}-t{threads}-b{batch}-float32"
        wrong = optimizer == "nag" and kernel == spec.wrong_kernel
        failed = optimizer == "adam" and workload == spec.failed_workload
        status = "failed" if failed else ("wrong" if wrong else "ok")
        factor = (1 + 0.5 * spec.workloads.index(workload)) * (batch / 32) ** 0.5
        rows.append({
            "run_id": spec.run_id, "device": spec.device, "case_id": case_id,
            "workload": workload, "domain": "vision" if workload == "cnn" else "tabular",
            "optimizer": optimizer, "kernel": kernel, "threads": threads, "batch": batch,
            "dtype": "float32", "seed": spec.seed + w_i, "status": status,
            "error_kind": "RuntimeError" if failed else "",
            "error_message": "synthetic failure" if failed else "",
            "steps": 0 if failed else spec.steps, "warmup_steps": spec.warmup_steps,
            "param_count": 100_000, "param_bytes": 400_000,
            "state_bytes": 800_000 if optimizer == "adam" else 400_000,
            "peak_rss_bytes": 200_000_000 + 1_000_000 * batch,
            "baseline_rss_bytes": 150_000_000,
            "correct_max_rel_diff": 0.3 if wrong else 1e-7, "correct_ok": not wrong,
            "flops_per_step": 6.0e7 * batch / 32, "update_bytes_per_step": 2_000_000.0,
            "energy_source": spec.energy_source, "idle_power_w": 2.0,
            "temp_before_c": 45.0, "temp_after_c": 52.0, "freq_before_khz": 2_400_000.0,
            "freq_after_khz": 2_300_000.0, "throttled": False, "warnings": "",
            "onnx_inference": (X.onnx_json(threads) if spec.onnx and optimizer == "nag"
                               and kernel == "forloop" else None),
            "_factor": factor, "_update_factor": (KERNEL_FACTORS.get(kernel, 1.0)
                               * OPTIMIZER_UPDATE_FACTORS.get(optimizer, 1.0)),
        })
    return rows


def _steps(cases: list[dict[str, object]], spec: SyntheticSpec) -> pd.DataFrame:
    rng = np.random.default_rng(spec.seed)
    live = [c for c in cases if c["status"] != "failed"]
    per_case = spec.steps + spec.warmup_steps
    n = len(live) * per_case
    factor = np.repeat([float(c["_factor"]) for c in live], per_case)
    update_factor = np.repeat([float(c["_update_factor"]) for c in live], per_case)
    index = np.tile(np.arange(per_case), len(live))
    warmup = index < spec.warmup_steps
    offset = np.repeat(rng.normal(0.0, spec.process_sigma, len(live)), per_case)
    base = spec.base_step_ns * factor * np.exp(offset) * rng.lognormal(0.0, spec.noise_sigma, n)
    base = np.where(warmup, base * 3.0, base)
    update_share = PHASE_SHARES["update_ns"]
    step = base * (1.0 - update_share + update_share * update_factor)
    frame = {
        col: np.repeat([c[col] for c in live], per_case)
        for col in ("run_id", "device", "case_id", "repeat", "workload", "optimizer", "kernel",
                    "threads", "batch", "dtype")
    }
    frame["process"] = np.repeat([f"{c['device']}/{c['case_id']}/{c['repeat']}" for c in live],
                                 per_case)
    frame["round"] = -1
    frame["index"] = index
    frame["warmup"] = warmup
    frame["step_ns"] = step.astype(np.int64)
    for phase, share in PHASE_SHARES.items():
        scale = update_factor if phase == "update_ns" else 1.0
        frame[phase] = (base * share * scale).astype(np.int64)
    frame["frontend_ns"] = np.zeros(n, dtype=np.int64)
    frame["loss"] = 2.3 * np.exp(-index / 40.0) + rng.normal(0, 0.02, n)
    out = pd.DataFrame(frame)
    for col in ("run_id", "device", "case_id", "workload", "optimizer", "kernel", "dtype"):
        out[col] = out[col].astype("category")
    return out


def write_synthetic_run(run_dir: Path, spec: SyntheticSpec | None = None,
                        with_study: bool = True) -> Path:
    """Write steps/cases parquet, probe.json, manifest.json to ``run_dir``; with ``with_study``
    also the study tables, and calibration.parquet/json when ``spec.calibration``."""
    spec = spec or SyntheticSpec()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cases = [{**case, "repeat": r, "process": f"{case['device']}/{case['case_id']}/{r}",
              "group": "", "paired": False}
             for case in _case_rows(spec) for r in range(spec.processes)]
    steps = _steps(cases, spec)
    measured = steps.loc[~steps["warmup"]].groupby(["case_id", "repeat"], observed=True)["step_ns"]
    medians = measured.median().to_dict()
    for case in cases:
        case.pop("_factor")
        case.pop("_update_factor")
        median = medians.get((case["case_id"], case["repeat"]), 0.0)
        case["wall_ns"] = int(median * (spec.steps + spec.warmup_steps))
        case["energy_per_step_j"] = 5.0 * median * 1e-9  # 5 W average
        case["energy_j"] = case["energy_per_step_j"] * spec.steps
        if case["status"] == "failed":
            case.update(energy_source="none", energy_per_step_j=np.nan, energy_j=np.nan)
    steps.to_parquet(run_dir / "steps.parquet", index=False)
    pd.DataFrame(cases).to_parquet(run_dir / "cases.parquet", index=False)
    (run_dir / "probe.json").write_text(json.dumps({
        "device": spec.device, "threads": max(spec.threads), "bandwidth_gbs": 20.0,
        "bandwidth_kernel": "triad", "matmul_gflops": 100.0}))
    (run_dir / "manifest.json").write_text(json.dumps({
        "results_version": 2, "run_id": spec.run_id, "created": "2026-01-01T00:00:00Z",
        "git": {"commit": "0" * 40, "dirty": False},
        "host": {"hostname": "synthetic"}, "device": {"name": spec.device, "profile": {}},
        "versions": {"torch": "synthetic"}, "seed": spec.seed,
        "argv": ["synthetic data — not a measurement"]}))
    if with_study:
        curves, summary = X.study_tables(spec.run_id, spec.device, spec.workloads,
                                         spec.optimizers, OPTIMIZER_FACTORS, spec.energy_source)
        curves.to_parquet(run_dir / "study.parquet", index=False)
        summary.to_parquet(run_dir / "study_summary.parquet", index=False)
        X.profile_table(best_lr_table(summary)).to_parquet(
            run_dir / "performance_profile.parquet", index=False)
    if spec.calibration:
        ids = list(dict.fromkeys(str(c["case_id"]) for c in cases
                                 if c["optimizer"] == "nag" and c["kernel"] == "forloop"))
        X.calibration_table(spec.device, ids).to_parquet(run_dir / "calibration.parquet",
                                                         index=False)
        (run_dir / "calibration.json").write_text(json.dumps(
            {"targets": X.CALIBRATION_TARGETS, "note": "synthetic — not a measurement"}))
    return run_dir
