"""The spread between separate runs (σ_r): estimated from blocks, carried by the gate.

Two separate runs of the same code differ by more than their processes predict when the host
drifts between them; a gate of a stored baseline must add that spread or it alarms on drift.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.compare import Prior, compare_units, run_variance
from analysis.design import between_runs
from harness.calibrate import synthetic_group_run
from harness.calibrate_run import _priors_without
from harness.calibration_store import priors_from, run_spread
from harness.gate import gate

CASES, PROCESSES, STEPS = 6, 8, 12  # a group of six variants, eight processes a side
DRIFT = 0.08  # sd of a whole run's log shift


def _run(rng: np.random.Generator, run_id: str, *, drift: float = DRIFT,
         slowdown: dict[int, float] | None = None) -> pd.DataFrame:
    frame = synthetic_group_run(CASES, PROCESSES, STEPS, rng, sigma_p=0.03, cv=0.05,
                                run_id=run_id, slowdown=slowdown,
                                run_shift=float(rng.normal(0.0, drift)))
    return frame.assign(update_ns=frame["step_ns"] * 0.1)


def test_between_runs_recovers_a_known_spread_and_needs_three_runs() -> None:
    rng = np.random.default_rng(1)
    runs = np.repeat(np.arange(40), 6)
    drift = rng.normal(0.0, 0.04, 40)[runs]
    sigma, count = between_runs(drift + rng.normal(0.0, 0.03, runs.size), runs)
    assert count == 40 and 0.03 < sigma < 0.05
    quiet, _ = between_runs(rng.normal(0.0, 0.03, runs.size), runs)
    assert quiet < 0.012  # no drift: the processes explain the run means
    few, count = between_runs(rng.normal(0.0, 0.03, 12), np.repeat([0, 1], 6))
    assert math.isnan(few) and count == 2


def test_a_prior_with_a_run_spread_widens_a_comparison_of_two_runs() -> None:
    rng = np.random.default_rng(2)
    base, cand = np.exp(rng.normal(0.0, 0.03, 8)), np.exp(rng.normal(0.0, 0.03, 8))
    plain = compare_units(base, cand, prior=Prior(0.03, 20))
    wide = compare_units(base, cand, prior=Prior(0.03, 20, sigma_run=0.04, run_df=9))
    assert wide.ratio == pytest.approx(plain.ratio)
    assert wide.se_log == pytest.approx(math.sqrt(plain.se_log ** 2 + 2 * 0.04 ** 2))
    assert wide.df < plain.df and "σ_r 4.0%" in wide.note
    assert run_variance(Prior(0.03, 20)) == (0.0, 0.0)
    assert run_variance(None) == (0.0, 0.0)


def test_separate_runs_with_host_drift_alarm_without_the_run_spread_and_not_with_it() -> None:
    """A/A of separate runs whose host drifts 8 % (sd) between them: the group's common row
    resolves the drift from eight processes a side; with the run spread calibrated from ten
    other runs (as ``harness calibrate`` stores it) the alarms fall to the family's α, and a
    variant's own 10 % slowdown is still found (a drift of the whole run cancels in it)."""
    rng = np.random.default_rng(3)
    calibration = [(_run(rng, f"block{b}"), None) for b in range(10)]
    priors = _priors_without(calibration, set())
    assert priors is not None
    common = priors("g-case00", "step_time")
    assert common is not None and 0.04 < common.sigma_run < 0.14 and common.run_df == 9
    # the spread between processes is measured within runs: the drift is not counted twice
    assert common.sigma_log < 0.05 and common.df == 8 * 10 - 10
    trials = 20
    plain = drift_aware = found = 0
    for t in range(trials):
        base, cand = _run(rng, "base"), _run(rng, "cand")
        for result, priced in ((gate(base, None, cand, None), False),
                               (gate(base, None, cand, None, priors=priors), True)):
            alarmed = bool(result.count("improvement") or result.count("regression"))
            plain += alarmed and not priced
            drift_aware += alarmed and priced
        if t < 8:
            slowed = _run(rng, "cand", slowdown={3: 0.10})
            verdicts = gate(base, None, slowed, None, priors=priors).verdicts
            found += any(v.case_id == "g-case03" and v.metric == "step_time"
                         and v.verdict == "regression" for v in verdicts)
    assert plain >= trials // 3
    assert drift_aware <= 2
    assert found >= 7


def test_an_interleaved_gate_adds_no_run_spread() -> None:
    """``harness ab`` pairs the sides' processes by repeat: drift between runs cannot enter."""
    rng = np.random.default_rng(4)
    base, cand = _run(rng, "base", drift=0.0), _run(rng, "cand", drift=0.0)

    def with_run(case_id: str, metric: str) -> Prior:
        return Prior(0.03, 20, sigma_run=0.2, run_df=5)

    def without(case_id: str, metric: str) -> Prior:
        return Prior(0.03, 20)

    ab = gate(base, None, cand, None, paired_by_repeat=True, priors=with_run).to_frame()
    assert ab.equals(gate(base, None, cand, None, paired_by_repeat=True, priors=without).to_frame())
    separate = gate(base, None, cand, None, priors=with_run).to_frame()
    assert (separate["ratio_ci_high"] - separate["ratio_ci_low"]).min() > 0.3


def test_the_device_file_carries_the_run_spread_with_its_degrees_of_freedom() -> None:
    entry = {"sigma_p": 0.03, "sigma_s": 0.1, "sigma_median": 0.04, "processes": 64,
             "steps_per_process": 28, "sigma_run": 0.05, "runs": 8}
    assert run_spread(entry) == (0.05, 7.0)
    assert run_spread({**entry, "pooled": 13}) == (0.05, 91.0)  # a relative one: variants pool
    assert run_spread({**entry, "runs": 2}) == (0.0, 0.0)  # two runs say nothing of a spread
    assert run_spread({k: v for k, v in entry.items() if k != "sigma_run"}) == (0.0, 0.0)
    prior = priors_from({"cases": {"c": {"step_time": entry}}})("c", "step_time")
    assert prior == Prior(0.04, 56.0, 0.05, 7.0)  # σ_median is the spread within the 8 runs


def test_a_variants_relative_spread_between_processes_is_measured_within_runs() -> None:
    """One variant's relative time drifts 5 % (sd) between runs: the drift is its σ_r, and its
    σ_p (what more processes average away) stays the spread inside a run, as for a whole case."""
    from analysis.relative import medians_of, relative_components, rounds_of

    rng = np.random.default_rng(5)
    drifting = [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    run = pd.concat([synthetic_group_run(CASES, PROCESSES, STEPS, rng, sigma_p=0.03,
                                         sigma_cp=0.01, cv=0.02, run_id=f"block{b}",
                                         run_shift=rng.normal(0.0, 0.05) * np.array(drifting))
                     for b in range(12)], ignore_index=True)
    own = relative_components(medians_of(run, "step_ns"), rounds_of(run, "step_ns"),
                              sorted(set(run["case_id"])), pool=False)
    drifted, _ = own["g-case03"]
    assert drifted.runs == 12 and 0.03 < drifted.sigma_run < 0.08
    assert drifted.sigma_median < 0.02  # the 5 % between runs is not counted a second time
    steady, _ = own["g-case01"]
    assert steady.sigma_run < 0.02 and steady.sigma_median < 0.02


def test_detect_plans_within_a_run_when_the_run_spread_puts_a_stored_gate_out_of_reach(
        tmp_path) -> None:
    from analysis.design import plan, se_of, with_runs
    from harness.calibration_store import calibration_path, design_for, write_calibration_file

    assert with_runs(0.02, 10.0, 0.0, 0.0) == (0.02, 10.0)
    se, df = with_runs(0.02, 10.0, 0.03, 8.0)
    assert se == pytest.approx(math.sqrt(0.02 ** 2 + 2 * 0.03 ** 2)) and 8.0 < df < 18.0
    # a small spread between runs: planned for, so more processes than without it
    quiet = plan(0.03, 0.015, 0.10)
    priced = plan(0.03, 0.015, 0.10, sigma_run=0.015, run_df=20.0)
    assert priced.processes > quiet.processes and not priced.capped
    assert priced.se_log > se_of(0.03, 0.015, priced.processes, priced.steps)
    # one no number of processes overcomes: planned for the run's own comparisons, and said
    entry = {"sigma_p": 0.03, "sigma_s": 0.015, "sigma_median": 0.031, "processes": 60,
             "steps_per_process": 60, "sigma_run": 0.06, "runs": 21}
    for where, kept in (("drifting", entry), ("steady", {**entry, "sigma_run": math.nan})):
        write_calibration_file(calibration_path(tmp_path / where, "local"), "local", "cal",
                               {"c": {"step_time": kept}}, process_cost_s=6.0, step_cost_s=0.05)
    design, sentence = design_for(tmp_path / "drifting", "local", ["c"], 0.10)
    assert design == design_for(tmp_path / "steady", "local", ["c"], 0.10)[0]
    assert "against a stored baseline, whose runs differ by σ_r 6.0%" in sentence
    assert "harness ab" in sentence and "capped" not in sentence


def test_what_a_run_achieved_against_a_stored_baseline_includes_the_run_spread(tmp_path) -> None:
    import re

    from harness.calibration_store import achieved, calibration_path, write_calibration_file

    rng = np.random.default_rng(6)
    run = _run(rng, "r", drift=0.0)
    cases = sorted(set(run["case_id"]))
    entry = {"sigma_p": 0.03, "sigma_s": 0.05, "sigma_median": 0.03, "processes": 80,
             "steps_per_process": 12, "sigma_run": 0.03, "runs": 10, "pooled": 6}
    data = {"cases": {c: {"step_time": entry, "step_time_relative": entry} for c in cases}}
    write_calibration_file(calibration_path(tmp_path, "local"), "local", "cal", data["cases"],
                           process_cost_s=6.0, step_cost_s=0.05)

    def worst(text: str) -> float:
        return float(re.search(r"of ([0-9.]+)% is detectable", text).group(1))

    alone = achieved(run, 0.05)
    stored = achieved(run, 0.05, calibration=data)
    assert "a stored like run" in stored and "a stored like run" not in alone
    assert worst(stored) > worst(alone)


def test_a_groups_run_spread_pools_its_variants_estimates_before_the_floor() -> None:
    """With no spread between runs, about half the variants' σ_r² estimates come out negative;
    floored one by one and then pooled (root mean square) they would report a spread that is
    not there, and `--detect` would plan for it."""
    from analysis.relative import _pooled_run_spread, medians_of, relative_components, rounds_of

    assert _pooled_run_spread([-1e-4, 1e-4, -2e-4, 2e-4]) == 0.0
    assert _pooled_run_spread([1e-4, 3e-4]) == pytest.approx(math.sqrt(2e-4))
    assert math.isnan(_pooled_run_spread([math.nan]))
    rng = np.random.default_rng(8)
    run = pd.concat([synthetic_group_run(CASES, PROCESSES, STEPS, rng, sigma_p=0.03,
                                         sigma_cp=0.01, cv=0.02, run_id=f"block{b}")
                     for b in range(12)], ignore_index=True)
    medians, rounds, cases = medians_of(run, "step_ns"), rounds_of(run, "step_ns"), sorted(set(run["case_id"]))
    own = [c.sigma_run for c, _ in relative_components(medians, rounds, cases, pool=False).values()]
    pooled = relative_components(medians, rounds, cases)["g-case00"][0].sigma_run
    assert min(own) == 0.0  # some estimates floored
    assert pooled < math.sqrt(float(np.mean(np.square(own))))


def test_a_groups_common_prior_keeps_the_run_spread_of_the_cases_that_have_one() -> None:
    from analysis.relative import combined_prior

    priced, unpriced = Prior(0.03, 20, sigma_run=0.05, run_df=9), Prior(0.04, 30)
    both = combined_prior([priced, unpriced])
    assert both is not None and (both.sigma_run, both.run_df) == (0.05, 9)
    assert both.sigma_log == pytest.approx(math.sqrt((0.03 ** 2 + 0.04 ** 2) / 2)) and both.df == 20
    assert combined_prior([unpriced, unpriced]) == Prior(0.04, 30)
    assert combined_prior([priced, None]) is None


def test_a_spread_between_processes_given_by_hand_keeps_the_calibrated_run_spread() -> None:
    """``harness gate --run-drift`` replaces σ_p on every row, whole case and common part
    alike, and leaves the device file's σ_r standing (before, it dropped σ_r from those rows
    only, while each variant's own row kept it)."""
    rng = np.random.default_rng(9)
    base, cand = _run(rng, "base", drift=0.0), _run(rng, "cand", drift=0.0)

    def calibrated(case_id: str, metric: str) -> Prior:
        return Prior(0.03, 20, sigma_run=0.2, run_df=5)

    def widths(result) -> dict[tuple[str, str], float]:
        return {(v.case_id, v.metric): v.comparison.ratio_ci_high - v.comparison.ratio_ci_low
                for v in result.verdicts if v.scope != "variant" and v.comparison is not None}

    by_hand = widths(gate(base, None, cand, None, priors=calibrated, run_drift=0.03))
    alone = widths(gate(base, None, cand, None, run_drift=0.03))
    assert by_hand and by_hand.keys() == alone.keys()
    assert all(by_hand[k] > alone[k] + 0.2 for k in by_hand)
    assert Prior(0.03, 20, 0.05, 9).between_processes(Prior(0.02, 40)) == Prior(0.02, 40, 0.05, 9)
    assert Prior(0.03, 20, 0.05, 9).between_processes(None) == Prior(0.03, 20, 0.05, 9)
