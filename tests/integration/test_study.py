"""A tiny optimizer study run end to end on the local device: plan, agent, store, analysis.

Two optimizers × two learning rates on lstm_text (about 4 ms a step), one seed (the rules over
several seeds are unit tests in tests/unit/test_study.py): one lr per optimizer that reaches the
target within the budget, and one so small that it cannot.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.bench import execute, new_plan
from harness.profiles import load_profile
from harness.study import StudyResult, analyze_study, load_study, study_cases

pytestmark = pytest.mark.integration
BUDGET = 60
GOOD_LR = {"nag": 0.05, "adamw": 0.003}
TINY_LR = {"nag": 1e-5, "adamw": 1e-7}
STUDY = f"""
description = "integration test study"
steps = {BUDGET}
warmup = 0
check_steps = 0
batch = 16
threads = [1]

[[matrix]]
workloads = ["lstm_text"]
optimizers = ["nag", "adamw"]
kernels = ["forloop"]

[study]
seeds = [0]

[study.lr]
nag = [{GOOD_LR["nag"]}, {TINY_LR["nag"]}]
adamw = [{GOOD_LR["adamw"]}, {TINY_LR["adamw"]}]

[study.target_loss]
lstm_text = 0.7
"""


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> StudyResult:
    tmp = tmp_path_factory.mktemp("study")
    (tmp / "tiny.toml").write_text(STUDY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_LOCK_DIR", str(tmp / "locks"))
        cases = study_cases(load_study(str(tmp / "tiny.toml")))
        plan = new_plan([load_profile("local")], cases, out=tmp / "results", run_id="study",
                        suite="tiny", seed=0, argv=["pytest"], probe=False,
                        extra={"study": "optimizers"})
        result = execute(plan)
    assert not result.failed, result.cases[["case_id", "status", "error_message"]]
    return analyze_study(result.run_dir)


def test_the_loss_curves_are_stored_with_the_columns_the_report_reads(study_run):
    curves = pd.read_parquet(study_run.run_dir / "study.parquet")
    assert {"workload", "optimizer", "lr", "seed", "step", "loss", "elapsed_s",
            "energy_j"} <= set(curves.columns)
    assert (curves.groupby("case_id")["elapsed_s"].diff().dropna() > 0).all()


def test_every_optimizer_lr_and_seed_has_one_summary_row(study_run):
    summary = pd.read_parquet(study_run.run_dir / "study_summary.parquet")
    got = sorted(zip(summary["optimizer"], summary["lr"], summary["seed"], strict=True))
    want = sorted((o, lr, s) for o in ("nag", "adamw") for lr in (GOOD_LR[o], TINY_LR[o])
                  for s in (0,))
    assert got == want


def test_a_tiny_learning_rate_misses_and_is_counted_as_a_miss(study_run):
    s = study_run.summary
    tiny = s[s["lr"] == s["optimizer"].map(TINY_LR)]
    assert not tiny["reached"].any()
    assert tiny["time_to_target_s"].isna().all() and tiny["steps_to_target"].isna().all()
    assert (tiny["steps_run"] == BUDGET).all()  # a miss runs the whole budget


def test_a_good_learning_rate_reaches_the_target_and_stops_there(study_run):
    s = study_run.summary
    good = s[s["lr"] == s["optimizer"].map(GOOD_LR)]
    assert good["reached"].all()
    assert (good["steps_to_target"] == good["steps_run"]).all()
    assert (good["steps_to_target"] < BUDGET).all() and (good["time_to_target_s"] > 0).all()


def test_the_best_lr_per_optimizer_is_the_one_that_reached(study_run):
    best = study_run.best.set_index("optimizer")
    assert best["lr"].to_dict() == GOOD_LR
    assert (best["runs_reached"] == 1).all()


def test_the_time_profile_reaches_one_for_both_optimizers(study_run):
    profile = pd.read_parquet(study_run.run_dir / "performance_profile.parquet")
    time = profile[profile["metric"] == "time"]
    last = time.sort_values("tau").groupby("optimizer")["rho"].last()
    assert last.to_dict() == {"adamw": 1.0, "nag": 1.0}
    at_one = time[time["tau"] == 1.0].set_index("optimizer")["rho"]
    assert np.isclose(at_one.sum(), 1.0)  # one workload: exactly one optimizer was fastest


def test_the_run_directory_is_still_an_ordinary_run(study_run: StudyResult):
    run_dir: Path = study_run.run_dir
    assert (run_dir / "steps.parquet").is_file() and (run_dir / "cases.parquet").is_file()
    cases = pd.read_parquet(run_dir / "cases.parquet")
    assert len(cases) == 4 and set(cases["status"]) == {"ok"}
