"""The optimizer study: its definition, its cases, and the analysis on tables with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError
from harness.plan import Case, Filters
from harness.study import (
    CURVE_COLUMNS,
    analyze_study,
    best_lr,
    case_settings,
    load_study,
    loss_curves,
    performance_profile,
    study_cases,
    summarize,
)

STUDY_TOML = """
description = "test study"
steps = 50
warmup = 0
check_steps = 0
batch = 4

[[matrix]]
workloads = ["lstm_text", "ds_cnn"]
optimizers = ["nag", "adamw"]
kernels = ["forloop"]

[study]
seeds = [0, 1]

[study.lr]
nag = [0.01, 0.1]
adamw = [0.001, 0.003, 0.01]

[study.target_loss]
lstm_text = 0.1
ds_cnn = 0.5
"""


def write_study(tmp_path: Path, text: str = STUDY_TOML) -> str:
    path = tmp_path / "mystudy.toml"
    path.write_text(text)
    return str(path)


# --- definition and cases -------------------------------------------------------------------

def test_every_workload_optimizer_lr_and_seed_becomes_one_case(tmp_path):
    cases = study_cases(load_study(write_study(tmp_path)))
    got = sorted((c.workload, c.optimizer, c.hparams["lr"], c.seed) for c in cases)
    want = sorted((w, o, lr, s) for w in ("lstm_text", "ds_cnn")
                  for o, lrs in (("nag", (0.01, 0.1)), ("adamw", (0.001, 0.003, 0.01)))
                  for lr in lrs for s in (0, 1))
    assert got == want


def test_each_case_carries_its_workloads_target_into_the_agent_spec(tmp_path):
    cases = study_cases(load_study(write_study(tmp_path)))
    for case in cases:
        assert case.spec()["target_loss"] == {"lstm_text": 0.1, "ds_cnn": 0.5}[case.workload]


def test_study_case_ids_are_distinct_across_lrs_and_seeds(tmp_path):
    cases = study_cases(load_study(write_study(tmp_path)))
    assert len({c.case_id for c in cases}) == len(cases) == 20


def test_the_seed_option_replaces_the_studys_seeds(tmp_path):
    cases = study_cases(load_study(write_study(tmp_path)), Filters(seed=7, optimizers=("nag",)))
    assert {c.seed for c in cases} == {7} and len(cases) == 4


def test_an_optimizer_without_an_lr_grid_is_a_config_error_naming_the_key(tmp_path):
    text = STUDY_TOML.replace("nag = [0.01, 0.1]\n", "")
    with pytest.raises(ConfigError, match="study.lr.nag"):
        study_cases(load_study(write_study(tmp_path, text)))


def test_a_workload_without_a_target_is_a_config_error_naming_the_key(tmp_path):
    text = STUDY_TOML.replace("ds_cnn = 0.5\n", "")
    with pytest.raises(ConfigError, match="study.target_loss.ds_cnn"):
        study_cases(load_study(write_study(tmp_path, text)))


@pytest.mark.parametrize("seeds", ["[]", "[1, 1]", "[-1]", "0"])
def test_seeds_must_be_a_list_of_distinct_non_negative_integers(tmp_path, seeds):
    text = STUDY_TOML.replace("seeds = [0, 1]", f"seeds = {seeds}")
    with pytest.raises(ConfigError, match="study.seeds"):
        load_study(write_study(tmp_path, text))


def test_a_non_positive_learning_rate_is_a_config_error(tmp_path):
    text = STUDY_TOML.replace("nag = [0.01, 0.1]", "nag = [0.0, 0.1]")
    with pytest.raises(ConfigError, match="study.lr.nag"):
        load_study(write_study(tmp_path, text))


def test_a_suite_without_a_study_table_is_not_a_study():
    with pytest.raises(ConfigError, match=r"\[study\]"):
        load_study("smoke")


def test_the_shipped_study_expands_to_144_runs_with_targets():
    cases = study_cases(load_study())
    assert len(cases) == 4 * 4 * 3 * 3
    assert all(c.target_loss is not None and c.warmup == 0 and c.check_steps == 0 for c in cases)


def test_cases_without_a_target_keep_their_case_id_and_spec():
    case = Case("lstm_text", "nlp", "nag", "forloop", 1, 4, "fp32", 10, 0, 0, 0)
    assert "-T" not in case.case_id and "target_loss" not in case.spec()


# --- synthetic run tables -------------------------------------------------------------------

def make_run(runs: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Steps, cases and settings for runs given as dicts: id, losses, step_ms, reached, ..."""
    steps, cases, settings = [], [], []
    for r in runs:
        warmup = r.get("warmup", 0)
        for i, (loss, ms) in enumerate(zip(r["losses"], r["step_ms"], strict=True)):
            steps.append({"run_id": "R", "device": "dev", "case_id": r["id"], "repeat": 0,
                          "workload": r.get("workload", "w"), "optimizer": r.get("optimizer", "o"),
                          "index": i, "warmup": i < warmup, "step_ns": int(ms * 1e6),
                          "loss": loss})
        if r.get("status") != "never":
            cases.append({"run_id": "R", "device": "dev", "case_id": r["id"], "repeat": 0,
                          "status": r.get("status", "ok"), "reached_step": r["reached"],
                          "energy_j": r.get("energy_j", np.nan),
                          "energy_source": r.get("energy_source", "none")})
        settings.append({"device": "dev", "case_id": r["id"], "repeat": 0,
                         "workload": r.get("workload", "w"), "optimizer": r.get("optimizer", "o"),
                         "lr": r.get("lr", 0.1), "seed": r.get("seed", 0), "target_loss": 1.0,
                         "warmup": warmup})
    return pd.DataFrame(steps), pd.DataFrame(cases), pd.DataFrame(settings)


def test_elapsed_seconds_accumulate_measured_steps_only():
    steps, cases, settings = make_run([
        {"id": "a", "losses": [3, 2, 1.5, 0.5], "step_ms": [100, 10, 20, 30], "reached": 3,
         "warmup": 1}])
    curves = loss_curves(steps, cases, settings)
    assert curves["step"].tolist() == [1, 2, 3]
    assert curves["elapsed_s"].tolist() == pytest.approx([0.010, 0.030, 0.060])


def test_energy_is_spread_over_steps_in_proportion_to_step_time():
    steps, cases, settings = make_run([
        {"id": "a", "losses": [3, 2, 1], "step_ms": [10, 10, 20], "reached": -1,
         "energy_j": 8.0, "energy_source": "measured:rapl"}])
    curves = loss_curves(steps, cases, settings)
    assert curves["energy_j"].tolist() == pytest.approx([2.0, 4.0, 8.0])


def test_energy_is_nan_without_a_meter():
    steps, cases, settings = make_run([
        {"id": "a", "losses": [3, 2], "step_ms": [10, 10], "reached": -1}])
    assert loss_curves(steps, cases, settings)["energy_j"].isna().all()


def test_the_curves_have_the_columns_the_report_plots():
    steps, cases, settings = make_run([{"id": "a", "losses": [3], "step_ms": [1], "reached": -1}])
    curves = loss_curves(steps, cases, settings)
    assert {"workload", "optimizer", "lr", "seed", "step", "loss", "elapsed_s",
            "energy_j"} <= set(curves.columns) and tuple(curves.columns) == CURVE_COLUMNS


def summary_of(runs: list[dict]) -> pd.DataFrame:
    steps, cases, settings = make_run(runs)
    return summarize(loss_curves(steps, cases, settings), cases, settings).set_index("case_id")


def test_a_reached_run_costs_the_steps_seconds_and_joules_up_to_the_reaching_step():
    s = summary_of([{"id": "hit", "losses": [3, 2, 0.5, 0.4], "step_ms": [10, 20, 30, 40],
                     "reached": 2, "energy_j": 10.0, "energy_source": "measured:rapl"}])
    row = s.loc["hit"]
    assert row["reached"] and row["steps_to_target"] == 3
    assert row["time_to_target_s"] == pytest.approx(0.060)
    assert row["energy_to_target_j"] == pytest.approx(6.0)


def test_a_run_that_missed_is_a_miss_with_nan_costs():
    row = summary_of([{"id": "miss", "losses": [3, 2.9], "step_ms": [10, 10], "reached": -1}]).loc["miss"]
    assert not row["reached"]
    assert math.isnan(row["steps_to_target"]) and math.isnan(row["time_to_target_s"])
    assert row["steps_run"] == 2 and row["final_loss"] == 2.9


def test_a_failed_run_is_a_miss_even_if_it_recorded_a_reached_step():
    row = summary_of([{"id": "f", "losses": [3, 0.1], "step_ms": [10, 10], "reached": 1,
                       "status": "failed"}]).loc["f"]
    assert not row["reached"] and row["status"] == "failed"


def test_a_planned_run_that_never_ran_is_listed_as_a_missing_miss():
    s = summary_of([{"id": "ok", "losses": [0.1], "step_ms": [10], "reached": 0},
                    {"id": "gone", "losses": [], "step_ms": [], "reached": -1, "status": "never"}])
    assert s.loc["gone", "status"] == "missing" and not s.loc["gone", "reached"]
    assert s.loc["gone", "steps_run"] == 0


# --- best lr and performance profiles -------------------------------------------------------

def summary_rows(rows: list[tuple]) -> pd.DataFrame:
    """(workload, optimizer, lr, seed, time_s or None for a miss) -> a summary table."""
    return pd.DataFrame([
        {"device": "dev", "workload": w, "optimizer": o, "lr": lr, "seed": seed,
         "reached": t is not None, "time_to_target_s": np.nan if t is None else t,
         "steps_to_target": np.nan if t is None else 10 * t, "energy_to_target_j": np.nan}
        for w, o, lr, seed, t in rows])


def test_the_best_lr_is_the_one_with_most_seeds_reaching_the_target():
    best = best_lr(summary_rows([
        ("w", "o", 0.1, 0, 1.0), ("w", "o", 0.1, 1, None), ("w", "o", 0.1, 2, None),
        ("w", "o", 0.01, 0, 9.0), ("w", "o", 0.01, 1, 8.0), ("w", "o", 0.01, 2, None)]))
    row = best.iloc[0]
    assert row["lr"] == 0.01 and row["runs_reached"] == 2 and row["runs"] == 3
    assert row["time_to_target_s"] == 9.0  # median of 8, 9 and a miss (+inf)


def test_lrs_reaching_equally_often_are_split_by_median_time():
    best = best_lr(summary_rows([("w", "o", 0.1, 0, 5.0), ("w", "o", 0.1, 1, 7.0),
                                 ("w", "o", 0.3, 0, 2.0), ("w", "o", 0.3, 1, 3.0)]))
    assert best.iloc[0]["lr"] == 0.3 and best.iloc[0]["time_to_target_s"] == 2.5


def test_a_best_lr_at_the_end_of_its_grid_is_flagged():
    best = best_lr(summary_rows([("w", "o", 0.1, 0, 1.0), ("w", "o", 0.3, 0, 2.0),
                                 ("w", "o", 1.0, 0, 3.0), ("v", "o", 0.1, 0, 9.0),
                                 ("v", "o", 0.3, 0, 2.0), ("v", "o", 1.0, 0, 3.0)]))
    assert best.set_index("workload")["lr_at_edge"].to_dict() == {"w": True, "v": False}


def test_a_problem_value_is_infinite_when_half_the_seeds_missed():
    best = best_lr(summary_rows([("w", "o", 0.1, 0, 5.0), ("w", "o", 0.1, 1, None)]))
    assert best.iloc[0]["time_to_target_s"] == math.inf


def profile_table(times: dict[tuple[str, str], float | None], taus: list[float]) -> pd.DataFrame:
    rows = [(w, o, 0.1, 0, t) for (w, o), t in times.items()]
    return performance_profile(best_lr(summary_rows(rows)), "time", taus)


def rho(profile: pd.DataFrame, optimizer: str, tau: float) -> float:
    sel = profile[(profile["optimizer"] == optimizer) & (profile["tau"] == tau)]
    return float(sel["rho"].iloc[0])


def test_performance_profile_matches_hand_computed_values_with_one_miss():
    # w1: A 10, B 20 -> rA 1, rB 2;  w2: A 30, B 15 -> rA 2, rB 1;  w3: A 5, B miss -> rA 1, rB inf
    times = {("w1", "A"): 10.0, ("w1", "B"): 20.0, ("w2", "A"): 30.0, ("w2", "B"): 15.0,
             ("w3", "A"): 5.0, ("w3", "B"): None}
    profile = profile_table(times, [1.0, 1.5, 2.0, 100.0])
    assert [rho(profile, "A", t) for t in (1.0, 1.5, 2.0, 100.0)] == pytest.approx([2 / 3, 2 / 3, 1, 1])
    assert [rho(profile, "B", t) for t in (1.0, 1.5, 2.0, 100.0)] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_a_problem_every_optimizer_missed_counts_against_all_of_them():
    profile = profile_table({("w1", "A"): 1.0, ("w1", "B"): 2.0, ("w2", "A"): None,
                             ("w2", "B"): None}, [1e6])
    assert rho(profile, "A", 1e6) == 0.5 and rho(profile, "B", 1e6) == 0.5


def test_an_optimizer_not_run_on_a_workload_counts_as_a_miss_there():
    profile = profile_table({("w1", "A"): 1.0, ("w1", "B"): 1.0, ("w2", "A"): 3.0}, [1e6])
    assert rho(profile, "B", 1e6) == 0.5 and rho(profile, "A", 1e6) == 1.0


def test_the_default_tau_grid_is_log_spaced_from_one_and_holds_every_ratio():
    profile = profile_table({("w1", "A"): 1.0, ("w1", "B"): 3.7}, None)
    taus = np.sort(profile.loc[profile["optimizer"] == "A", "tau"].to_numpy())
    assert taus[0] == 1.0 and 3.7 in taus and taus[-1] >= 3.7
    assert rho(profile, "B", 3.7) == 1.0


def test_energy_is_profiled_only_when_every_figure_is_measured():
    summary = summary_rows([("w", "A", 0.1, 0, 1.0), ("w", "B", 0.1, 0, 2.0)])
    summary["energy_to_target_j"] = [3.0, 9.0]
    summary["energy_source"] = ["measured:rapl", "measured:rapl"]
    profile = performance_profile(best_lr(summary), "energy", [1.0, 3.0])
    assert rho(profile, "A", 1.0) == 1.0 and rho(profile, "B", 1.0) == 0.0
    assert rho(profile, "B", 3.0) == 1.0
    summary["energy_source"] = ["measured:rapl", "estimated:cpu-model"]
    assert performance_profile(best_lr(summary), "energy").empty


def test_no_energy_profile_without_a_meter():
    best = best_lr(summary_rows([("w", "A", 0.1, 0, 1.0), ("w", "B", 0.1, 0, 2.0)]))
    assert performance_profile(best, "energy").empty


# --- a stored run ---------------------------------------------------------------------------

def test_analyze_study_writes_the_three_tables_beside_the_run(tmp_path):
    cases_planned = study_cases(load_study(write_study(tmp_path)),
                                Filters(workloads=("lstm_text",), optimizers=("nag",), seed=0))
    runs = [{"id": c.case_id, "optimizer": "nag", "workload": "lstm_text",
             "losses": [1.0, 0.05], "step_ms": [5, 5], "reached": 1 if c.hparams["lr"] == 0.1 else -1}
            for c in cases_planned]
    steps, cases, _ = make_run(runs)
    run_dir = tmp_path / "R"
    run_dir.mkdir()
    steps.to_parquet(run_dir / "steps.parquet")
    cases.to_parquet(run_dir / "cases.parquet")
    manifest = {"results_version": 1, "devices": [{"name": "dev"}],
                "cases": [dict(c.__dict__) for c in cases_planned]}
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    result = analyze_study(run_dir)
    for name in ("study", "study_summary", "performance_profile"):
        assert (run_dir / f"{name}.parquet").is_file()
    summary = pd.read_parquet(run_dir / "study_summary.parquet")
    assert dict(zip(summary["lr"], summary["reached"], strict=True)) == {0.01: False, 0.1: True}
    assert result.best.iloc[0]["lr"] == 0.1
    assert case_settings(manifest)["lr"].tolist() == [c.hparams["lr"] for c in cases_planned]
