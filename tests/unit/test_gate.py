"""Specification of the regression gate: verdicts, floors, energy rules, outputs, calibration."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.compare import Comparison
from harness.calibrate import (
    aa_pairs,
    estimate_run_drift,
    first_steps,
    inject_slowdown,
    minimum_detectable_effect,
    run_trials,
    simulate,
    synthetic_run,
)
from harness.ci_outputs import append_step_summary, render_markdown, write_junit
from harness.errors import ConfigError
from harness.gate import (
    decide,
    gate,
    inconclusive_cases,
    load_pytest_benchmark,
    parse_floors,
    stack_mismatches,
)


def steps(case_id: str, n: int, *, scale: float = 1.0, cv: float = 0.07, seed: int = 0,
          warmup: int = 0, processes: int = 1, sigma_p: float = 0.02) -> pd.DataFrame:
    """Lognormal step times around 10 ms, ``n`` per process; each process offset by a
    lognormal factor (sd ``sigma_p``); the first ``warmup`` rows of each flagged as warm-up."""
    rng = np.random.default_rng(seed)
    frames = []
    for p in range(processes):
        offset = np.exp(rng.normal(0.0, sigma_p)) if processes > 1 else 1.0
        step_ns = 1e7 * scale * offset * rng.lognormal(0.0, cv, n + warmup)
        frames.append(pd.DataFrame({
            "run_id": "r", "device": "local", "case_id": case_id, "repeat": p,
            "index": np.arange(n + warmup), "warmup": np.arange(n + warmup) < warmup,
            "step_ns": step_ns.astype(np.int64), "update_ns": 0}))
    return pd.concat(frames, ignore_index=True)


def cases(*case_ids: str, status: str = "ok", peak_rss_bytes: float = 1e8,
          energy_source: str = "none", energy_per_step_j: float = math.nan) -> pd.DataFrame:
    return pd.DataFrame({"run_id": "r", "device": "local", "case_id": list(case_ids),
                         "status": status, "error_kind": "", "error_message": "",
                         "peak_rss_bytes": peak_rss_bytes, "energy_source": energy_source,
                         "energy_per_step_j": energy_per_step_j})


def one_case(n: int, scale: float, *, cv: float = 0.07, processes: int = 8) -> str:
    """The step_time verdict for one case of ``processes`` × ``n`` steps, candidate scaled."""
    result = gate(steps("c", n, seed=1, cv=cv, processes=processes), None,
                  steps("c", n, seed=2, scale=scale, cv=cv, processes=processes),
                  None, metrics=("step_time",))
    (verdict,) = result.verdicts
    return verdict.verdict


# --- verdicts on synthetic samples with known answers ------------------------------------

def test_identical_distributions_pass() -> None:
    assert one_case(60, 1.0) == "pass"


def test_a_ten_percent_slowdown_over_eight_processes_is_a_regression() -> None:
    assert one_case(60, 1.10) == "regression"


def test_a_ten_percent_speedup_over_eight_processes_is_an_improvement() -> None:
    assert one_case(60, 1 / 1.10) == "improvement"


def test_few_very_noisy_steps_are_inconclusive() -> None:
    assert one_case(8, 1.0, cv=0.5, processes=2) == "inconclusive"


def test_one_process_per_side_is_inconclusive_however_many_steps() -> None:
    """Steps of one process cannot show how much a case moves between processes."""
    result = gate(steps("c", 1000, seed=1), None, steps("c", 1000, seed=2, scale=1.2), None,
                  metrics=("step_time",))
    (verdict,) = result.verdicts
    assert verdict.verdict == "inconclusive" and "one process per side" in verdict.reason


def test_the_processes_not_the_steps_are_the_units() -> None:
    (verdict,) = gate(steps("c", 60, seed=1, processes=5), None,
                      steps("c", 60, seed=2, processes=7), None, metrics=("step_time",)).verdicts
    c = verdict.comparison
    assert (c.n_baseline, c.n_candidate, c.steps_baseline, c.steps_candidate) == (5, 7, 300, 420)
    assert c.baseline_min <= c.baseline_median <= c.baseline_max


def test_fewer_steps_than_min_samples_is_inconclusive_and_says_why() -> None:
    result = gate(steps("c", 3), None, steps("c", 3, scale=2.0), None, metrics=("step_time",))
    assert result.verdicts[0].verdict == "inconclusive"
    assert "too few samples (3 vs 3" in result.verdicts[0].reason


def test_warmup_steps_are_excluded_from_the_comparison() -> None:
    base = steps("c", 60, seed=1, processes=8)
    cand = steps("c", 60, seed=2, warmup=20, processes=8)
    cand.loc[cand["warmup"], "step_ns"] *= 50
    result = gate(base, None, cand, None, metrics=("step_time",))
    assert result.verdicts[0].verdict == "pass"
    assert result.verdicts[0].comparison.steps_candidate == 8 * 60


def test_an_absent_phase_recorded_as_zero_is_not_gated() -> None:
    result = gate(steps("c", 50), None, steps("c", 50), None, metrics=("update_time",))
    assert result.verdicts == ()


# --- the decision rule ---------------------------------------------------------------------

def comparison(ratio: float, low: float, high: float, p: float) -> Comparison:
    return Comparison(100, 100, 1.0, ratio, ratio, low, high, p, 0.95)


def test_significant_slowdown_not_shown_below_the_floor_is_a_regression() -> None:
    assert decide(comparison(1.04, 1.02, 1.07, 1e-4), 0.05)[0] == "regression"


def test_point_rule_needs_the_median_ratio_beyond_the_floor() -> None:
    assert decide(comparison(1.04, 1.02, 1.07, 1e-4), 0.05, rule="point")[0] == "inconclusive"


def test_strict_rule_needs_the_whole_interval_beyond_the_floor() -> None:
    assert decide(comparison(1.09, 1.04, 1.12, 1e-4), 0.05, rule="strict")[0] == "inconclusive"


def test_significant_but_smaller_than_the_floor_passes() -> None:
    assert decide(comparison(1.02, 1.01, 1.03, 1e-6), 0.05)[0] == "pass"


def test_interval_above_one_without_significance_is_not_a_regression() -> None:
    assert decide(comparison(1.08, 1.01, 1.15, 0.05), 0.05)[0] == "inconclusive"


def test_unknown_rule_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'loose'"):
        decide(comparison(1.0, 0.99, 1.01, 0.5), 0.05, rule="loose")


# --- floors ----------------------------------------------------------------------------------

def test_floors_default_to_five_percent_time_and_two_percent_memory() -> None:
    floors = parse_floors(None)
    assert (floors["step_time"], floors["energy_per_step"], floors["peak_memory"]) == \
        (0.05, 0.05, 0.02)


def test_floors_parse_percentages_fractions_and_comma_lists() -> None:
    floors = parse_floors(["step_time:5%", "update_time:3%, peak_memory:0.01"])
    assert (floors["step_time"], floors["update_time"], floors["peak_memory"]) == \
        pytest.approx((0.05, 0.03, 0.01))


@pytest.mark.parametrize(("spec", "message"), [
    ("step_time", "not 'metric:value'"),
    ("stepp_time:5%", "did you mean 'step_time'"),
    ("step_time:fast", "'fast', not a number"),
    ("step_time:5", "write 'step_time:5%'"),
    ("step_time:-1%", "must lie in"),
    ("step_time:150%", "must lie in"),
])
def test_bad_floor_strings_raise_config_errors_that_quote_them(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_floors(spec)


def test_a_regression_below_a_custom_floor_passes() -> None:
    base = steps("c", 100, seed=1, processes=10, sigma_p=0.01)
    cand = steps("c", 100, seed=2, scale=1.03, processes=10, sigma_p=0.01)
    result = gate(base, None, cand, None, "step_time:10%", metrics=("step_time",))
    assert result.verdicts[0].verdict == "pass"


# --- per-case metrics: memory and energy -------------------------------------------------------

def test_peak_memory_over_the_floor_is_a_regression_from_one_value_per_side() -> None:
    result = gate(None, cases("c", peak_rss_bytes=100e6), None, cases("c", peak_rss_bytes=103e6),
                  metrics=("peak_memory",))
    assert (result.verdicts[0].verdict, result.verdicts[0].method) == ("regression", "floor-only")


def test_peak_memory_within_the_floor_passes() -> None:
    result = gate(None, cases("c", peak_rss_bytes=100e6), None, cases("c", peak_rss_bytes=101e6),
                  metrics=("peak_memory",))
    assert result.verdicts[0].verdict == "pass"


def test_measured_energy_is_gated() -> None:
    result = gate(None, cases("c", energy_source="measured:rapl", energy_per_step_j=1.0), None,
                  cases("c", energy_source="measured:rapl", energy_per_step_j=1.2),
                  metrics=("energy_per_step",))
    assert result.verdicts[0].verdict == "regression"


def test_estimated_energy_is_not_gated_by_default_and_a_note_says_so() -> None:
    result = gate(None, cases("c", energy_source="estimated:cpu-model", energy_per_step_j=1.0),
                  None, cases("c", energy_source="estimated:cpu-model", energy_per_step_j=2.0),
                  metrics=("energy_per_step",))
    assert result.verdicts == () and "estimated energy, not gated" in result.notes[0]


def test_estimated_energy_is_gated_when_asked() -> None:
    result = gate(None, cases("c", energy_source="estimated:cpu-model", energy_per_step_j=1.0),
                  None, cases("c", energy_source="estimated:cpu-model", energy_per_step_j=2.0),
                  metrics=("energy_per_step",), gate_estimated=True)
    assert result.verdicts[0].verdict == "regression"


def test_measured_against_estimated_energy_is_never_compared() -> None:
    result = gate(None, cases("c", energy_source="measured:rapl", energy_per_step_j=1.0), None,
                  cases("c", energy_source="estimated:cpu-model", energy_per_step_j=2.0),
                  metrics=("energy_per_step",), gate_estimated=True)
    assert result.verdicts == () and "sources differ" in result.notes[0]


# --- whole cases, exit codes, warnings -------------------------------------------------------

def test_cases_missing_on_either_side_are_reported_not_dropped() -> None:
    result = gate(steps("old", 20), cases("old"), steps("new", 20), cases("new"))
    assert {(v.case_id, v.verdict) for v in result.verdicts} == {("old", "missing"),
                                                                   ("new", "new")}


def test_a_missing_case_fails_the_gate_unless_allowed() -> None:
    both = pd.concat([steps("old", 20, processes=3), steps("kept", 20, processes=3, seed=1)])
    kept = steps("kept", 20, processes=3, seed=2)
    assert gate(both, cases("old", "kept"), kept, cases("kept")).exit_code == 2
    assert gate(both, cases("old", "kept"), kept, cases("kept"),
                allow_missing=True).exit_code == 0


def test_every_case_missing_fails_the_gate_even_with_nothing_else_wrong() -> None:
    result = gate(steps("old", 20), cases("old"), None, cases())
    assert result.exit_code == 2 and result.compared == 0
    assert "Nothing was compared" in render_markdown(result)


def test_nothing_compared_at_all_fails_unless_missing_is_allowed() -> None:
    empty = gate(None, cases(), None, cases())
    assert empty.exit_code == 2 and gate(None, cases(), None, cases(),
                                         allow_missing=True).exit_code == 0


def test_a_failed_candidate_case_is_an_error_with_exit_code_two() -> None:
    result = gate(steps("c", 20), cases("c"), None, cases("c", status="failed"))
    assert result.verdicts[0].verdict == "error" and result.exit_code == 2


def test_any_regression_gives_exit_code_one() -> None:
    result = gate(steps("c", 60, seed=1, processes=6), None,
                  steps("c", 60, seed=2, scale=1.2, processes=6), None, metrics=("step_time",))
    assert result.exit_code == 1


def test_inconclusive_cases_lists_the_cases_to_rerun() -> None:
    base = pd.concat([steps("noisy", 8, cv=0.5, seed=1, processes=2),
                      steps("calm", 60, seed=3, processes=8)])
    cand = pd.concat([steps("noisy", 8, cv=0.5, seed=2, processes=2),
                      steps("calm", 60, seed=4, processes=8)])
    assert inconclusive_cases(gate(base, None, cand, None, metrics=("step_time",))) == ["noisy"]


def manifest(torch: str = "2.13.0", device: str = "pixel7") -> dict:
    return {"device": {"name": device, "model": "Pixel 7"},
            "versions": {"torch": torch, "python": "3.11.7"}, "git": {"dirty": False}}


def test_same_device_and_stack_give_no_warning() -> None:
    assert stack_mismatches(manifest(), manifest()) == []


def test_a_different_torch_version_is_a_loud_warning() -> None:
    (warning,) = stack_mismatches(manifest(torch="2.12.0"), manifest())
    assert "torch version differs: baseline '2.12.0', candidate '2.13.0'" in warning


def test_manifest_mismatches_reach_the_gate_result() -> None:
    result = gate(steps("c", 20), None, steps("c", 20), None,
                  baseline_manifest=manifest(device="rpi5"), candidate_manifest=manifest())
    assert any("device name differs" in w for w in result.warnings)


# --- CI outputs ---------------------------------------------------------------------------------

def mixed_result() -> object:
    base = pd.concat([steps("same", 60, seed=1, processes=8), steps("slow", 60, seed=3, processes=8),
                      steps("noisy", 8, cv=0.5, seed=5, processes=2), steps("gone", 20)])
    cand = pd.concat([steps("same", 60, seed=2, processes=8),
                      steps("slow", 60, seed=4, scale=1.2, processes=8),
                      steps("noisy", 8, cv=0.5, seed=6, processes=2), steps("broken", 20)])
    cand_cases = cases("same", "slow", "noisy", "broken")
    cand_cases.loc[3, "status"] = "failed"
    return gate(base, cases("same", "slow", "noisy", "gone", "broken"), cand, cand_cases,
                metrics=("step_time",), baseline_manifest=manifest(torch="2.12.0"),
                candidate_manifest=manifest())


def test_junit_xml_parses_and_counts_failures_errors_and_skips(tmp_path: Path) -> None:
    suite = ET.parse(write_junit(mixed_result(), tmp_path / "junit.xml")).getroot()
    assert {k: suite.get(k) for k in ("tests", "failures", "errors", "skipped")} == \
        {"tests": "5", "failures": "1", "errors": "2", "skipped": "1"}  # missing is an error
    assert len(suite.findall("testcase/failure")) == 1


def test_markdown_puts_warnings_before_the_table() -> None:
    text = render_markdown(mixed_result())
    assert text.index("torch version differs") < text.index("| case | metric |")
    assert "`noisy`" in text.split("Re-run with more steps:")[1].splitlines()[0]


def test_markdown_states_the_smallest_change_the_run_could_detect() -> None:
    result = mixed_result()
    (name, mde), = result.detectable  # the worst case: "noisy", 2 processes of 8 steps
    calm = next(v.mde for v in result.verdicts if v.case_id == "same")
    assert name == "step_time" and 0.0 < calm < 0.2 < mde
    assert f"step_time {mde:.0%}" in render_markdown(result).split("Smallest change")[1]


def test_step_summary_is_appended_only_when_github_sets_the_variable(tmp_path: Path) -> None:
    target = tmp_path / "summary.md"
    target.write_text("before\n")
    assert append_step_summary("## gate", {}) is None
    append_step_summary("## gate", {"GITHUB_STEP_SUMMARY": str(target)})
    assert target.read_text() == "before\n## gate\n"


# --- pytest-benchmark input ---------------------------------------------------------------------

def write_benchmark_json(path: Path, data: list[float] | None, median: float = 0.0) -> Path:
    """A file shaped like pytest-benchmark 4's --benchmark-json output (seconds per round)."""
    median = float(np.median(data)) if data else median
    stats = {"min": median, "max": median, "mean": median, "stddev": 0.0, "rounds": 5,
             "median": median, "iqr": 0.0, "q1": median, "q3": median, "iqr_outliers": 0,
             "stddev_outliers": 0, "outliers": "0;0", "ld15iqr": median, "hd15iqr": median,
             "ops": 1 / median, "total": 5 * median, "iterations": 1}
    if data is not None:
        stats["data"] = data
    doc = {"machine_info": {"node": "ci-runner"}, "commit_info": {"id": "abc"},
           "benchmarks": [{"group": None, "name": "test_nag", "fullname":
                           "tests/bench/test_nag.py::test_nag", "params": None, "param": None,
                           "extra_info": {}, "options": {"min_rounds": 5}, "stats": stats}],
           "datetime": "2026-11-24T20:00:00", "version": "4.0.0"}
    path.write_text(json.dumps(doc))
    return path


def test_pytest_benchmark_raw_rounds_become_steps_in_nanoseconds(tmp_path: Path) -> None:
    frame = load_pytest_benchmark(write_benchmark_json(tmp_path / "b.json", [1e-6, 2e-6], 1.5e-6))
    assert frame["case_id"].unique().tolist() == ["tests/bench/test_nag.py::test_nag"]
    assert frame["step_ns"].tolist() == pytest.approx([1000.0, 2000.0])


def test_pytest_benchmark_without_data_keeps_the_median_only(tmp_path: Path) -> None:
    frame = load_pytest_benchmark(write_benchmark_json(tmp_path / "b.json", None, 3e-6))
    assert frame["samples"].tolist() == ["median-only"]


def test_pytest_benchmark_runs_go_through_the_same_gate(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    base = write_benchmark_json(tmp_path / "a.json", list(rng.lognormal(-13, 0.05, 100)))
    cand = write_benchmark_json(tmp_path / "b.json", list(rng.lognormal(-13, 0.05, 100) * 1.2))
    result = gate(load_pytest_benchmark(base), None, load_pytest_benchmark(cand), None,
                  metrics=("time",))
    assert [v.verdict for v in result.verdicts] == ["regression"]


def test_a_file_without_benchmarks_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ConfigError, match="no 'benchmarks' list"):
        load_pytest_benchmark(tmp_path / "x.json")


def test_a_known_spread_lets_one_process_per_side_be_judged() -> None:
    base, cand = steps("c", 200, seed=1), steps("c", 200, seed=2, scale=1.06)
    assert gate(base, None, cand, None, metrics=("step_time",)).verdicts[0].verdict == \
        "inconclusive"
    small_shift = gate(base, None, cand, None, metrics=("step_time",), run_drift=0.03)
    assert small_shift.verdicts[0].verdict == "inconclusive"  # 6 % against 3 % per process
    big = gate(base, None, steps("c", 200, seed=2, scale=1.3), None, metrics=("step_time",),
               run_drift=0.03)
    assert big.verdicts[0].verdict == "regression" and big.verdicts[0].method == "prior"


def test_a_calibrated_prior_moderates_the_spread_of_few_processes() -> None:
    from analysis.compare import Prior

    base = steps("c", 60, seed=1, processes=3, sigma_p=0.001)
    cand = steps("c", 60, seed=2, processes=3, sigma_p=0.001, scale=1.02)
    lucky = gate(base, None, cand, None, metrics=("step_time",)).verdicts[0].comparison
    told = gate(base, None, cand, None, metrics=("step_time",),
                priors=lambda case, metric: Prior(0.05, 19)).verdicts[0].comparison
    assert told.method == "prior" and told.se_log > 3 * lucky.se_log


# --- calibration --------------------------------------------------------------------------------

def test_one_run_splits_into_interleaved_halves_for_aa_trials() -> None:
    ((base, cand),) = aa_pairs([steps("c", 10)])
    assert base["index"].tolist() == [0, 2, 4, 6, 8] and cand["index"].tolist() == [1, 3, 5, 7, 9]


def test_injected_slowdown_scales_only_the_chosen_column() -> None:
    slowed = inject_slowdown(steps("c", 3), 0.05)
    assert slowed["step_ns"].tolist() == pytest.approx((steps("c", 3)["step_ns"] * 1.05).tolist())


def test_aa_trials_on_stored_runs_raise_few_false_alarms() -> None:
    runs = [pd.concat([steps(f"c{i}", 30, seed=10 * r + i, processes=6) for i in range(30)])
            for r in range(2)]
    (rates,) = run_trials(aa_pairs(runs), rules=("not-negligible",))
    assert rates.trials == 30 and rates.false_alarm_rate <= 0.05


def test_simulated_ten_percent_slowdown_is_caught_with_enough_processes() -> None:
    table = simulate([50], n_cases=30, effects=(0.10,), processes=10, run_shift_sd=0.02)
    row = table[table["rule"] == "not-negligible"].iloc[0]
    assert row["regression_rate"] >= 0.9


def test_run_drift_is_estimated_from_the_spread_of_case_medians_between_runs() -> None:
    rng = np.random.default_rng(0)
    runs = [synthetic_run(40, 100, rng, run_shift_sd=0.03) for _ in range(4)]
    assert estimate_run_drift(runs) == pytest.approx(0.03, abs=0.01)


def test_run_drift_needs_two_runs() -> None:
    assert math.isnan(estimate_run_drift([steps("c", 10)]))


def test_first_steps_keeps_the_first_measured_steps_of_every_case() -> None:
    frame = pd.concat([steps("a", 10, warmup=2), steps("b", 10)])
    kept = first_steps(frame, 3)
    assert kept.groupby("case_id")["index"].apply(list).to_dict() == {"a": [2, 3, 4],
                                                                      "b": [0, 1, 2]}


def test_minimum_detectable_effect_is_the_smallest_effect_caught_nine_times_in_ten() -> None:
    rng = np.random.default_rng(0)
    pair = (synthetic_run(20, 50, rng, processes=8, run_shift_sd=0.01),
            synthetic_run(20, 50, rng, processes=8, run_shift_sd=0.01))
    assert minimum_detectable_effect([pair], effects=(0.01, 0.10)) == 0.10


def test_a_run_of_several_devices_is_gated_device_by_device():
    rng = np.random.default_rng(3)

    def steps(device_scale: dict[str, float]) -> pd.DataFrame:
        rows = []
        for device, scale in device_scale.items():
            for p in range(6):
                for i, v in enumerate(rng.lognormal(np.log(10e6 * scale), 0.02, 50)):
                    rows.append({"device": device, "case_id": "c", "index": i, "warmup": False,
                                 "step_ns": v, "update_ns": v / 10, "run_id": "r",
                                 "repeat": p})
        return pd.DataFrame(rows)

    # the phone got 20 % slower; pooled with the unchanged board it would hide in the mix
    result = gate(steps({"board": 1.0, "phone": 3.0}), None, steps({"board": 1.0, "phone": 3.6}), None,
                  metrics=("step_time",))
    verdicts = {v.case_id: v.verdict for v in result.verdicts}
    assert verdicts == {"board/c": "pass", "phone/c": "regression"}


def test_more_processes_narrow_the_interval():
    def width(processes: int) -> float:
        (v,) = gate(steps("c", 50, seed=1, processes=processes), None,
                    steps("c", 50, seed=2, processes=processes), None,
                    metrics=("step_time",)).verdicts
        return v.comparison.ratio_ci_high - v.comparison.ratio_ci_low

    assert width(16) < width(4) / 2


def test_the_gate_command_reads_pytest_benchmark_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from harness.cli import main

    rng = np.random.default_rng(1)
    base = write_benchmark_json(tmp_path / "base.json", list(rng.lognormal(-13, 0.05, 100)))
    slow = write_benchmark_json(tmp_path / "slow.json", list(rng.lognormal(-13, 0.05, 100) * 1.2))
    assert main(["gate", "--baseline", str(base), "--candidate", str(base)]) == 0
    assert main(["gate", "--baseline", str(base), "--candidate", str(slow)]) == 1
    assert "REGRESSION tests/bench/test_nag.py::test_nag time" in capsys.readouterr().err
    assert (tmp_path / "junit.xml").is_file() and (tmp_path / "summary.md").is_file()


# --- A/B pairing, calibration files, --detect ------------------------------------------------------

def test_ab_pairs_processes_by_round_so_drift_between_rounds_cancels() -> None:
    rng = np.random.default_rng(8)
    rows = []
    for r in range(6):
        drift = rng.normal(0.0, 0.10)  # the host's load changes between rounds, not within one
        for side, scale in (("a", 1.0), ("b", 1.06)):
            for i, v in enumerate(1e7 * scale * np.exp(drift + rng.normal(0, 0.01, 30))):
                rows.append({"side": side, "run_id": side, "case_id": "c", "repeat": r,
                             "index": i, "warmup": False, "step_ns": v, "update_ns": 0})
    frame = pd.DataFrame(rows)
    a, b = frame[frame.side == "a"], frame[frame.side == "b"]
    unpaired = gate(a, None, b, None, metrics=("step_time",)).verdicts[0]
    paired = gate(a, None, b, None, metrics=("step_time",), paired_by_repeat=True).verdicts[0]
    assert unpaired.verdict == "inconclusive"
    assert paired.verdict == "regression" and paired.method == "paired-rounds"


def test_detect_plans_from_the_calibration_file_and_states_what_a_run_achieved(
        tmp_path: Path) -> None:
    from harness.calibration_store import (
        achieved,
        calibration_path,
        design_for,
        priors_from,
        read_calibration_file,
        write_calibration_file,
    )

    path = write_calibration_file(
        calibration_path(tmp_path, "local"), "local", "cal",
        {"c": {"step_time": {"sigma_p": 0.03, "sigma_s": 0.015, "sigma_median": 0.031,
                             "processes": 20, "steps_per_process": 60}}},
        process_cost_s=6.0, step_cost_s=0.05)
    assert path == tmp_path / "calibration" / "local.json"
    design, sentence = design_for(tmp_path, "local", ["c"], 0.10)
    assert design.detectable <= 0.10 and f"{design.processes} processes" in sentence
    prior = priors_from(read_calibration_file(path))("local/c", "step_time")
    assert (prior.sigma_log, prior.df) == (0.031, 19)
    run = steps("c", design.steps, processes=design.processes, sigma_p=0.03, cv=0.015, seed=4)
    assert "achieved: a change of" in achieved(run, 0.10)
    with pytest.raises(ConfigError, match="harness calibrate"):
        design_for(tmp_path, "pixel7", ["c"], 0.05)
    # --calibration: a device file kept elsewhere is read in place of <results>/calibration/
    elsewhere = tmp_path / "kept" / "local.json"
    elsewhere.parent.mkdir()
    path.rename(elsewhere)
    assert design_for(tmp_path / "other", "local", ["c"], 0.10, path=elsewhere)[0] == design
    with pytest.raises(ConfigError, match="no calibration file at") as missing:
        design_for(tmp_path, "local", ["c"], 0.10, path=tmp_path / "nope.json")
    assert missing.value.key == "--calibration"


@pytest.mark.parametrize(("text", "value"), [("5%", 0.05), ("0.1", 0.1)])
def test_detect_takes_a_percentage_or_a_fraction(text: str, value: float) -> None:
    from harness.cli_gate import change_fraction

    assert change_fraction(text) == pytest.approx(value)
