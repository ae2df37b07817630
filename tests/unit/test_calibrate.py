"""Specification of `harness calibrate`'s analysis on synthetic blocks with known components."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.calibrate_run import CalibrationSettings, analyse, reanalyse, replica_pairs


def block(rng: np.random.Generator, b: int, *, processes: int = 4, steps: int = 30,
          sigma_p: float = 0.02, twins: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One block: cases w-a and w-b (and their -aa1 twins sharing the process) in
    ``processes`` processes each; a process takes 6 s besides the steps of all its cases."""
    step_rows, case_rows = [], []
    for p in range(processes):
        repeat = b * processes + p
        process = f"local:w:r{repeat}"
        offset = rng.normal(0.0, sigma_p)
        ids = ["w-a", "w-b"] + (["w-a-aa1"] if twins else [])
        for case_id in ids:
            kernel = "a" if case_id.startswith("w-a") else "b"
            for r in range(steps):
                v = 1e7 * math.exp(offset + rng.normal(0.0, 0.01))
                step_rows.append({"run_id": "cal", "device": "local", "case_id": case_id,
                                  "workload": "w", "optimizer": "nag", "kernel": kernel,
                                  "threads": 1, "batch": 8, "dtype": "fp32", "repeat": repeat,
                                  "process": process, "round": r, "index": r, "warmup": False,
                                  "step_ns": v, "update_ns": v / 5})
            case_rows.append({"run_id": "cal", "device": "local", "case_id": case_id,
                              "workload": "w", "optimizer": "nag", "kernel": kernel,
                              "threads": 1, "batch": 8, "dtype": "fp32", "repeat": repeat,
                              "process": process, "group": "w", "paired": True, "status": "ok",
                              "steps": steps, "warmup_steps": 2,
                              "host_wall_ns": 6e9 + len(ids) * (steps + 2) * 1e7})
    return pd.DataFrame(step_rows), pd.DataFrame(case_rows)


def stored_runs(tmp_path: Path, rng: np.random.Generator, *, runs: int = 3,
                last_w_b_factor: float = 1.0) -> list[Path]:
    """``runs`` blocks stored as bench runs aa0, aa1, …; the last one's w-b scaled."""
    stored = []
    for b in range(runs):
        steps, cases = block(rng, b)
        if b == runs - 1:
            scaled = steps["case_id"] == "w-b"
            steps.loc[scaled, ["step_ns", "update_ns"]] *= last_w_b_factor
        run = tmp_path / "results" / f"aa{b}"
        run.mkdir(parents=True)
        steps.assign(run_id=f"aa{b}").to_parquet(run / "steps.parquet")
        cases.assign(run_id=f"aa{b}").to_parquet(run / "cases.parquet")
        stored.append(run)
    return stored


def test_analysis_gives_components_run_level_rates_and_paired_trials() -> None:
    rng = np.random.default_rng(0)
    blocks = [block(rng, b, twins=True) for b in range(5)]
    table, summary, cal = analyse(blocks, CalibrationSettings(trials=4, repeats=4))
    assert summary["trials"] == 4 and summary["slowdown_trials"] == 4
    assert summary["detection_rate"] == 1.0  # a 10 % step slowdown against σ_p 2 %
    assert 0.0 <= summary["false_alarm_rate"] <= 1.0
    assert summary["paired_trials"] == 5 and summary["paired_detection_rate"] == 1.0
    row = table.set_index("case_id").loc["w-a"]
    assert row["processes"] == 20 and row["sigma_p"] == pytest.approx(0.02, abs=0.01)
    assert cal["cases"]["w-a"]["step_time"]["processes"] == 20
    assert cal["process_cost_s"] == pytest.approx(6.0, rel=0.05)


def test_replicas_are_cases_of_one_configuration_in_one_group() -> None:
    _, cases = block(np.random.default_rng(1), 0, twins=True)
    assert replica_pairs(cases) == [("w-a", "w-a-aa1")]


def test_stored_bench_runs_are_the_blocks_and_the_device_file_is_written(tmp_path: Path) -> None:
    runs = stored_runs(tmp_path, np.random.default_rng(2))
    result = reanalyse(runs)
    assert result.summary["trials"] == 2
    assert result.run_dir == tmp_path / "results" / "calibration" / "trials-aa0--aa2"
    assert result.device_file == tmp_path / "results" / "calibration" / "local.json"


def test_each_aa_alarm_is_named_by_its_runs_case_and_metric(tmp_path: Path) -> None:
    from harness.calibrate_run import format_table

    # the host changed w-b's cost between the third and the fourth run; four runs, so that
    # trial 3 is also gated with a leave-trial-out prior (from aa0 and aa1)
    runs = stored_runs(tmp_path, np.random.default_rng(3), runs=4, last_w_b_factor=1.4)
    result = reanalyse(runs)
    summary = result.summary
    expected = {"trial": 3, "baseline": "aa2", "candidate": "aa3", "case_id": "w-b",
                "metric": "step_time", "verdict": "regression"}
    for key in ("aa_alarms", "aa_alarms_with_prior"):
        found = [a for a in summary[key] if a["case_id"] == "w-b" and a["metric"] == "step_time"]
        assert found and expected.items() <= found[0].items(), key
    text = format_table(result.table, summary)
    assert "A/A alarm, trial 3 (aa2 → aa3): w-b step_time: larger" in text
    assert "A/A alarm (with the prior), trial 3 (aa2 → aa3): w-b step_time: larger" in text


def test_a_calibration_runs_alarms_are_named_by_its_blocks() -> None:
    rng = np.random.default_rng(4)
    blocks = [block(rng, b) for b in range(3)]
    steps, cases = blocks[2]
    steps.loc[steps["case_id"] == "w-b", "step_ns"] *= 1.4
    _, summary, _ = analyse(blocks, CalibrationSettings(trials=2, repeats=4))
    # named by the processes (repeat numbers) each block ran: block b holds 4b … 4b + 3
    assert any(a["trial"] == 2
               and (a["baseline"], a["candidate"]) == ("processes 4–7", "processes 8–11")
               and a["case_id"] == "w-b" for a in summary["aa_alarms"])
