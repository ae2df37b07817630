"""A case's change split into a part common to its process group and a part of its own."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.relative import MIN_MATES, compare_common, compare_specific, group_of, groups
from analysis.stats import variance_prior
from harness.calibrate import synthetic_group_run
from harness.gate import gate, inconclusive_cases

CASES, PROCESSES, STEPS = 8, 4, 20  # a quick-suite-like group: four processes a side


def _runs(rng: np.random.Generator, slowdown: dict[int, float] | None = None,
          **noise: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = synthetic_group_run(CASES, PROCESSES, STEPS, rng, run_id="base", **noise)
    cand = synthetic_group_run(CASES, PROCESSES, STEPS, rng, run_id="cand", slowdown=slowdown,
                               **noise)
    return base, cand


def _step_verdicts(base: pd.DataFrame, cand: pd.DataFrame, **kwargs: object) -> dict[str, object]:
    result = gate(base, None, cand, None, metrics=("step_time",), **kwargs)
    return {v.case_id: v for v in result.verdicts}


def _medians(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per case: ``run_id/process`` -> median step (without rounds: the process medians)."""
    from analysis.relative import medians_of

    return medians_of(frame, "step_ns")


def test_a_process_label_names_its_group_without_run_repeat_or_attempt() -> None:
    assert group_of("block3/local:bert_tiny-t1-b8-fp32-gf18773:r12:a2") == \
        "local:bert_tiny-t1-b8-fp32-gf18773"
    assert group_of("not a process label") == "not a process label"


def test_a_mate_missing_from_one_process_leaves_the_reference_of_every_case() -> None:
    base, cand = _runs(np.random.default_rng(0))
    gone = (cand["case_id"] == "g-case05") & (cand["process"] == "local:g:r2:a1")
    found = groups(_medians(base), _medians(cand[~gone]), [f"g-case{i:02d}" for i in range(CASES)])
    assert len(found) == 1
    assert "g-case05" in found[0].cases and "g-case05" not in found[0].reference
    assert len(found[0].reference) == CASES - 1


def test_cases_run_alone_keep_the_whole_case_comparison() -> None:
    rng = np.random.default_rng(1)
    base, cand = _runs(rng)
    alone = [frame.assign(process=frame["case_id"].astype(str) + ":r" +
                          frame["repeat"].astype(str) + ":a1") for frame in (base, cand)]
    verdicts = _step_verdicts(*alone)
    assert {v.method for v in verdicts.values()} == {"welch"}
    assert not any(v.members for v in verdicts.values())


def test_a_group_needs_enough_mates_before_it_splits() -> None:
    rng = np.random.default_rng(2)
    small = [synthetic_group_run(MIN_MATES, PROCESSES, STEPS, rng, run_id=r) for r in "ab"]
    assert {v.method for v in _step_verdicts(*small).values()} == {"welch"}
    enough = [synthetic_group_run(MIN_MATES + 1, PROCESSES, STEPS, rng, run_id=r) for r in "ab"]
    methods = {k: v.method for k, v in _step_verdicts(*enough).items()}
    assert sorted(set(methods.values())) == ["relative", "welch"]  # the group's row is Welch


def test_one_variant_slowed_10_percent_is_found_from_four_processes_a_side() -> None:
    """The figure behind the split: at σ_p 9 % between processes, four processes a side
    cannot resolve a 10 % change of one case's absolute time, but its time relative to its
    process-mates can."""
    rng = np.random.default_rng(3)
    trials, found_relative, found_whole = 40, 0, 0
    for _ in range(trials):
        base, cand = _runs(rng, slowdown={2: 0.10})
        found_relative += _step_verdicts(base, cand)["g-case02"].verdict == "regression"
        alone = [f.assign(process=f["case_id"].astype(str) + ":" + f["process"].astype(str))
                 for f in (base, cand)]
        found_whole += _step_verdicts(*alone)["g-case02"].verdict == "regression"
    assert found_relative / trials >= 0.9
    assert found_whole / trials <= 0.2


def test_a_slowed_variant_moves_its_mates_by_no_more_than_their_noise() -> None:
    """With a geometric mean of the mates as reference, one variant slowed 30 % would move
    each of its 7 mates by −30 %/7 ≈ −3.7 % and read as seven improvements; the median of
    the centred mates moves them by the gap between neighbouring mates (under 1 % here)."""
    rng = np.random.default_rng(4)
    shifts, improvements, detected = [], 0, 0
    for _ in range(30):
        verdicts = _step_verdicts(*_runs(rng, slowdown={0: 0.30}))
        detected += verdicts["g-case00"].verdict == "regression"
        mates = [v for k, v in verdicts.items() if k.startswith("g-case") and k != "g-case00"]
        shifts += [math.log(v.comparison.ratio) for v in mates]
        improvements += sum(v.verdict == "improvement" for v in mates)
    assert detected == 30
    assert -0.01 < float(np.mean(shifts)) < 0.0
    assert improvements / len(shifts) <= 0.05


def test_a_slowdown_of_every_variant_shows_in_the_groups_row_not_in_theirs() -> None:
    rng = np.random.default_rng(5)
    slow_all = {i: 0.20 for i in range(CASES)}
    base = synthetic_group_run(CASES, 8, STEPS, rng, run_id="a", sigma_p=0.02)
    cand = synthetic_group_run(CASES, 8, STEPS, rng, run_id="b", sigma_p=0.02, slowdown=slow_all)
    verdicts = _step_verdicts(base, cand)
    group_row = verdicts[f"local:g ({CASES} variants)"]
    assert group_row.verdict == "regression" and group_row.members == tuple(
        f"g-case{i:02d}" for i in range(CASES))
    assert math.isclose(group_row.comparison.ratio, 1.2, rel_tol=0.03)
    assert {v.verdict for k, v in verdicts.items() if not v.members} == {"pass"}


def test_a_b_a_false_alarms_of_a_whole_run_stay_near_alpha() -> None:
    """A/A over 100 simulated run pairs, step and update gated, variants whose own spread
    differs fivefold (the moderation must not lend a noisy variant its quiet mates' spread
    so far that it alarms)."""
    rng = np.random.default_rng(6)
    spread = [0.01] * (CASES - 2) + [0.03, 0.05]
    alarms, trials = 0, 100
    for _ in range(trials):
        base, cand = _runs(rng, sigma_cp=spread)
        base, cand = (f.assign(update_ns=f["step_ns"] * 0.1 * rng.lognormal(0, 0.05, len(f)))
                      for f in (base, cand))
        result = gate(base, None, cand, None, metrics=("step_time", "update_time"))
        alarms += bool(result.count("regression") or result.count("improvement"))
    assert alarms / trials <= 0.08


def test_a_noisier_variant_does_not_borrow_its_quiet_mates_spread() -> None:
    """One variant's own spread 3× its mates' (4.2 % against 1.5 % per process): moderated
    without the outlier guard it would take the group's spread and alarm many times α."""
    from analysis.relative import medians_of, rounds_of

    rng = np.random.default_rng(13)
    spread = [0.01] * (CASES - 1) + [0.04]
    alarms, trials = 0, 300
    for _ in range(trials):
        base, cand = _runs(rng, sigma_cp=spread)
        mb, mc = medians_of(base, "step_ns"), medians_of(cand, "step_ns")
        group = groups(mb, mc, list(mb))[0]
        noisy = compare_specific(mb, mc, group, confidence=0.95,
                                 rounds=(rounds_of(base, "step_ns"), rounds_of(cand, "step_ns")))
        alarms += noisy[f"g-case{CASES - 1:02d}"].p_value < 0.01
    assert alarms / trials <= 0.03


def test_the_interval_of_a_variants_own_part_covers_its_true_change() -> None:
    rng = np.random.default_rng(7)
    covered, trials = 0, 200
    for _ in range(trials):
        base, cand = _runs(rng, slowdown={1: 0.07})
        mb, mc = _medians(base), _medians(cand)
        group = groups(mb, mc, list(mb))[0]
        c = compare_specific(mb, mc, group, confidence=0.95)["g-case01"]
        covered += c.ratio_ci_low <= 1.07 <= c.ratio_ci_high
    assert covered / trials >= 0.93


def test_the_common_part_is_the_groups_geometric_mean_per_process() -> None:
    rng = np.random.default_rng(8)
    base, cand = _runs(rng, slowdown={i: 0.5 for i in range(CASES)}, sigma_p=0.0, sigma_cp=0.0,
                       cv=0.0)
    mb, mc = _medians(base), _medians(cand)
    common = compare_common(mb, mc, groups(mb, mc, list(mb))[0], confidence=0.95)
    assert common.ratio == pytest.approx(1.5)


def test_an_inconclusive_group_row_reruns_every_case_of_the_group() -> None:
    rng = np.random.default_rng(9)
    base, cand = _runs(rng)
    result = gate(base, None, cand, None, metrics=("step_time",))
    group_row = next(v for v in result.verdicts if v.members)
    assert group_row.verdict == "inconclusive"  # σ_p 9 % against a 5 % floor, 4 processes
    assert set(group_row.members) <= set(inconclusive_cases(result))
    names = dict(result.detectable)
    assert set(names) == {"step_time of one variant", "step_time of a whole group"}
    assert names["step_time of one variant"] < 0.10 < names["step_time of a whole group"]


@pytest.mark.parametrize("heterogeneous", [False, True])
def test_the_variance_prior_recovers_a_shared_spread_and_its_agreement(heterogeneous: bool) -> None:
    rng = np.random.default_rng(10)
    fits = []
    for _ in range(300):
        sigma = 0.02 * np.exp(rng.normal(0.0, 0.6 if heterogeneous else 0.0, 13))
        fits.append(variance_prior(sigma ** 2 * rng.chisquare(6, 13) / 6, np.full(13, 6.0)))
    s0, d0 = np.array(fits).T
    if heterogeneous:
        assert np.median(d0) < 10  # the variances disagree: little borrowing
    else:
        assert np.median(np.sqrt(s0)) == pytest.approx(0.02, rel=0.05)
        assert np.median(d0) > 30  # they agree: the prior is worth many df
    assert math.isnan(variance_prior([0.1], [3])[0])


def test_calibration_measures_the_spread_of_relative_times_pooled_over_the_group() -> None:
    from analysis.relative import medians_of, relative_components, rounds_of

    rng = np.random.default_rng(11)
    run = synthetic_group_run(CASES, 30, 40, rng, sigma_p=0.09, sigma_cp=0.02, cv=0.05)
    components = relative_components(medians_of(run, "step_ns"), rounds_of(run, "step_ns"),
                                     sorted(set(run["case_id"])))
    assert len(components) == CASES
    pooled, variants = components["g-case00"]
    assert variants == CASES and pooled.processes == 30 and pooled.steps_per_process == 40
    # the shared 9 % offset cancels: what is left is the case's own 2 % (its mates' median
    # adds a little) and the 5 % step noise
    assert 0.015 < pooled.sigma_p < 0.03
    assert pooled.sigma_s == pytest.approx(0.05, rel=0.2)


def test_detect_plans_a_variants_own_change_from_its_relative_components(tmp_path) -> None:
    from harness.calibration_store import (
        achieved,
        calibration_path,
        design_for,
        write_calibration_file,
    )

    whole = {"sigma_p": 0.09, "sigma_s": 0.12, "sigma_median": 0.1, "processes": 84,
             "steps_per_process": 20}
    own = {"sigma_p": 0.015, "sigma_s": 0.08, "sigma_median": 0.025, "processes": 84,
           "steps_per_process": 20, "pooled": 13}
    cases = {f"c{i}": {"step_time": whole, "step_time_relative": own} for i in range(13)}
    write_calibration_file(calibration_path(tmp_path, "local"), "local", "cal", cases,
                           process_cost_s=15.0, step_cost_s=0.075)
    design, sentence = design_for(tmp_path, "local", sorted(cases), 0.10)
    assert design.processes <= 4 and "own change" in sentence
    assert "common to every variant of its group is detectable from" in sentence
    alone, sentence_alone = design_for(tmp_path, "local", sorted(cases), 0.10, relative=False)
    assert alone.processes > 10 * design.processes and "whole case" in sentence_alone
    # only the cases whose change will split are planned from their own part (a group with
    # too few mates in this run is compared whole by the gate)
    few, _ = design_for(tmp_path, "local", sorted(cases), 0.10, relative={"c0", "c1"})
    assert few == alone
    assert design_for(tmp_path, "local", sorted(cases), 0.10, relative=set(cases))[0] == design
    run = synthetic_group_run(CASES, 4, 20, np.random.default_rng(12))
    assert "achieved: a variant's own change of" in achieved(run, 0.10)


def test_detect_plans_each_variant_from_its_own_spread_when_the_file_keeps_it(tmp_path) -> None:
    from analysis.relative import medians_of, relative_components, rounds_of
    from harness.calibration_store import calibration_path, design_for, write_calibration_file

    whole = {"sigma_p": 0.09, "sigma_s": 0.12, "sigma_median": 0.1, "processes": 84,
             "steps_per_process": 20}
    pooled = {"sigma_p": 0.015, "sigma_s": 0.08, "sigma_median": 0.025, "processes": 84,
              "steps_per_process": 20, "pooled": 13}
    cases = {f"c{i:02d}": {"step_time": whole, "step_time_relative": {
        **pooled, "own_sigma_p": {7: 0.03, 0: 0.0}.get(i, 0.013), "own_sigma_s": 0.08}}
        for i in range(13)}
    write_calibration_file(calibration_path(tmp_path, "local"), "local", "cal", cases,
                           process_cost_s=15.0, step_cost_s=0.075)
    own, sentence = design_for(tmp_path, "local", sorted(cases), 0.05)
    # a variant quieter than its group (here estimated at 0) is planned as the group
    assert design_for(tmp_path, "local", ["c00"], 0.10)[0].steps < 100
    for per in cases.values():
        per["step_time_relative"] = pooled  # an older file: the group's RMS only
    write_calibration_file(calibration_path(tmp_path, "local"), "local", "cal", cases,
                           process_cost_s=15.0, step_cost_s=0.075)
    rms, _ = design_for(tmp_path, "local", sorted(cases), 0.05)
    assert "c07" in sentence and "σ_p 3.0%" in sentence
    assert own.processes > 1.5 * rms.processes
    # the calibration keeps each variant's own components beside the pooled ones
    run = synthetic_group_run(CASES, 12, 20, np.random.default_rng(14),
                              sigma_cp=[0.005] * (CASES - 1) + [0.05])
    apart = relative_components(medians_of(run, "step_ns"), rounds_of(run, "step_ns"),
                                sorted(set(run["case_id"])), pool=False)
    noisy, quiet = apart[f"g-case{CASES - 1:02d}"][0], apart["g-case00"][0]
    assert noisy.sigma_p > 3 * quiet.sigma_p and apart["g-case00"][1] == CASES


def test_what_a_run_achieved_is_held_to_its_noisiest_variant() -> None:
    """The sentence after a --detect run comes from the gate's own MDE per row: a variant
    whose process-to-process spread is four times its mates' is the worst case, and the target
    is not met for it (the old sentence pooled the group and named no variant)."""
    import re

    from harness.calibration_store import achieved

    run = synthetic_group_run(CASES, 6, 20, np.random.default_rng(13),
                              sigma_cp=[0.01] * (CASES - 1) + [0.04])
    text = achieved(run, 0.05)
    worst, median = (float(x) / 100 for x in re.findall(r"([0-9.]+)%", text)[:2])
    assert f"worst g-case{CASES - 1:02d}" in text and "not met" in text
    assert worst > 1.1 * median  # the quiet variants' median is what the run offers most cases


def test_moderation_needs_several_variances_and_leaves_an_outlier_its_own() -> None:
    from analysis.stats import MIN_MODERATED, moderated_variances

    few = [0.01, 0.02, 0.03][: MIN_MODERATED - 1]
    post, df = moderated_variances(few, [3.0] * len(few))
    assert list(post) == few and list(df) == [3.0] * len(few)
    variances = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 30.0]
    post, df = moderated_variances(variances, [3.0] * len(variances))
    assert post[-1] == 30.0 and df[-1] == 3.0  # the outlier keeps its own
    assert np.all(df[:-1] == 18.0)  # the six that agree share their df (and one variance)
    assert np.ptp(post[:-1]) < 1e-12 and 1.0 < post[0] < 2.0


def test_bench_detect_plans_a_group_too_small_to_split_as_whole_cases(tmp_path) -> None:
    """``bench --detect``: the smoke suite's three NAG kernels of one workload share a process
    but have too few mates for the gate to split their change, so they are planned as whole
    cases; the quick suite's thirteen variants are planned from their own parts."""
    from harness.calibration_store import calibration_path, write_calibration_file
    from harness.plan import Filters
    from harness.selection import select
    from harness.workflow import BenchRequest, _designed

    whole = {"sigma_p": 0.09, "sigma_s": 0.12, "sigma_median": 0.1, "processes": 84,
             "steps_per_process": 20}
    own = {"sigma_p": 0.015, "sigma_s": 0.08, "sigma_median": 0.025, "processes": 84,
           "steps_per_process": 20, "pooled": 13}
    path = write_calibration_file(
        calibration_path(tmp_path, "local"), "local", "cal",
        {"x": {"step_time": whole, "step_time_relative": own}},  # the device median serves all
        process_cost_s=15.0, step_cost_s=0.075)
    planned = {}
    for suite, optimizer in (("smoke", ("nag",)), ("quick", ())):
        chosen = select(Filters(workloads=("ds_cnn",), optimizers=optimizer), suite=suite)
        request = BenchRequest(suite=suite, out=tmp_path, detect=0.10, calibration=path)
        notes: list[str] = []
        planned[suite] = (_designed(request, chosen, notes.extend)[0].processes, notes[0])
    assert "whole case" in planned["smoke"][1] and "own change" in planned["quick"][1]
    assert planned["smoke"][0] > 5 * planned["quick"][0]  # 33 against 4
