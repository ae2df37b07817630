"""Specification of the analysis engine on two-level data: the process is the unit.

Synthetic steps follow the model of STATISTICS.md, ``y[p, s] = μ · exp(a[p] + e[p, s])`` with
known ``σ_p = sd(a)`` and ``σ_s = sd(e)``, so every interval can be checked against the truth.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.compare import compare_steps, compare_units
from analysis.decide import decide_family, detectable_change, holm
from analysis.design import components, plan
from analysis.schema import ResultsError, check_version, upgrade
from analysis.stats import bootstrap_medians, percentile_interval

SIGMA_P, SIGMA_S = 0.03, 0.015  # measured on this project's host (STATISTICS.md)


def two_level(rng: np.random.Generator, processes: int, steps: int, *, ratio: float = 1.0,
              sigma_p: float = SIGMA_P, sigma_s: float = SIGMA_S, case_id: str = "c",
              first_process: int = 0) -> pd.DataFrame:
    """Steps of one case: ``processes`` agent processes of ``steps`` steps each."""
    a = rng.normal(0.0, sigma_p, size=(processes, 1))
    y = 2e7 * ratio * np.exp(a + rng.normal(0.0, sigma_s, size=(processes, steps)))
    return pd.DataFrame({
        "run_id": "r", "device": "d", "case_id": case_id,
        "process": np.repeat([f"p{first_process + p}" for p in range(processes)], steps),
        "round": -1, "index": np.tile(np.arange(steps), processes), "warmup": False,
        "step_ns": y.ravel()})


def step_level_interval(base: np.ndarray, cand: np.ndarray,
                        rng: np.random.Generator) -> tuple[float, float]:
    """The old interval: every step an independent sample, ratio of bootstrapped medians."""
    draws = bootstrap_medians(cand, 400, rng) / bootstrap_medians(base, 400, rng)
    return percentile_interval(draws)


def coverage(simulations: int = 400, processes: int = 5, steps: int = 60,
             ratio: float = 1.1, seed: int = 0) -> tuple[float, float]:
    """Share of 95 % intervals covering the true ratio: (per-process engine, old step-level).

    The engine's interval is :func:`compare_units` on the process medians, which is what
    :func:`compare_steps` computes from a steps frame (checked by the test below it).
    """
    rng = np.random.default_rng(seed)
    new = old = 0
    for _ in range(simulations):
        base, cand = (np.exp(rng.normal(0.0, SIGMA_P, (processes, 1))
                             + rng.normal(0.0, SIGMA_S, (processes, steps))) * r
                      for r in (1.0, ratio))
        c = compare_units(np.median(base, axis=1), np.median(cand, axis=1))
        new += c.ratio_ci_low <= ratio <= c.ratio_ci_high
        low, high = step_level_interval(base.ravel(), cand.ravel(), rng)
        old += low <= ratio <= high
    return new / simulations, old / simulations


def test_per_process_intervals_cover_the_truth_and_step_level_ones_do_not() -> None:
    """σ_p 3 %, σ_s 1.5 %, 5 processes × 60 steps a side, true ratio 1.1, 400 simulations.

    docs/gate.md quotes these two numbers (94.8 % and 22.5 % at seed 0).
    """
    new, old = coverage()
    assert new >= 0.93
    assert old <= 0.5


def test_coverage_holds_with_three_processes_a_side() -> None:
    new, _ = coverage(simulations=300, processes=3, seed=1)
    assert new >= 0.93


def test_compare_steps_is_compare_units_on_the_process_medians() -> None:
    rng = np.random.default_rng(2)
    base, cand = two_level(rng, 4, 30), two_level(rng, 5, 30, ratio=1.1)
    medians = [f.groupby("process")["step_ns"].median() for f in (base, cand)]
    assert compare_steps(base, cand, "step_ns") == compare_units(*medians, steps=(120, 150))


def test_the_paired_comparison_cancels_the_process_offset() -> None:
    rng = np.random.default_rng(3)
    rows = []
    for p in range(6):
        offset = rng.normal(0.0, 0.2)  # a huge process effect, shared by both variants
        for r in range(40):
            for case, ratio in (("a", 1.0), ("b", 1.03)):
                rows.append({"run_id": "r", "case_id": case, "process": f"p{p}", "round": r,
                             "index": r, "warmup": False,
                             "step_ns": 2e7 * ratio * math.exp(offset + rng.normal(0, 0.01))})
    steps = pd.DataFrame(rows)
    paired = compare_steps(steps[steps.case_id == "a"], steps[steps.case_id == "b"], "step_ns")
    unpaired = compare_steps(steps[steps.case_id == "a"], steps[steps.case_id == "b"], "step_ns",
                             pair=False)
    assert paired.method == "paired" and paired.n_baseline == 6 and paired.df == 5
    assert paired.ratio_ci_low > 1.0 and paired.ratio == pytest.approx(1.03, abs=0.01)
    assert unpaired.ratio_ci_low < 1.0 < unpaired.ratio_ci_high


def test_holm_adjusts_the_smallest_p_by_the_family_size_and_keeps_the_order() -> None:
    adjusted = holm([0.01, 0.04, math.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03) and math.isnan(adjusted[2])
    assert adjusted[3] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)


def test_run_level_false_alarms_stay_below_alpha_over_many_tests() -> None:
    """A/A: 200 runs of 12 tests each (one per case); run-level alarm rate ≤ 5 % (+ slack)."""
    rng = np.random.default_rng(4)
    alarms = 0
    for _ in range(200):
        comparisons = [compare_units(np.exp(rng.normal(0, SIGMA_P, 4)),
                                     np.exp(rng.normal(0, SIGMA_P, 4))) for _ in range(12)]
        verdicts = [v for _, v, _ in decide_family(comparisons, [0.0] * 12)]
        alarms += any(v in ("regression", "improvement") for v in verdicts)
    assert alarms / 200 <= 0.08


def test_components_recover_the_known_between_and_within_process_spread() -> None:
    steps = two_level(np.random.default_rng(5), 60, 100, sigma_p=0.04, sigma_s=0.02)
    c = components(steps)
    assert c.sigma_p == pytest.approx(0.04, rel=0.25) and c.sigma_s == pytest.approx(0.02,
                                                                                     rel=0.1)


def test_the_design_buys_processes_when_the_process_spread_dominates() -> None:
    design = plan(0.03, 0.015, 0.05, process_cost_s=6.0, step_cost_s=0.05)
    assert 10 <= design.steps <= 20  # S* = sqrt(120 · 1.57 · 0.25) ≈ 7.7, at least 10
    assert design.detectable <= 0.05 and not design.capped
    assert detectable_change(design.se_log, 2 * design.processes - 2, 0.05) == pytest.approx(
        design.detectable)


def test_old_runs_get_process_ids_and_no_rounds_and_new_versions_are_refused() -> None:
    old = pd.DataFrame({"device": ["d", "d"], "case_id": ["c", "c"], "repeat": [0, 1]})
    steps, cases = upgrade(old, old.copy())
    assert steps["process"].tolist() == ["d:c:r0", "d:c:r1"] and (steps["round"] == -1).all()
    assert (cases["group"] == "").all() and not cases["paired"].any()
    assert check_version({"results_version": 1}, "m") == 1
    with pytest.raises(ResultsError, match="results version 9"):
        check_version({"results_version": 9}, "manifest.json")


# --- the report and the gate decide alike ----------------------------------------------------

def _gate_verdict(base: pd.DataFrame, cand: pd.DataFrame) -> str:
    from harness.gate import gate

    (v,) = gate(base, None, cand, None, metrics=("step_time",)).verdicts
    return {"regression": "slower", "improvement": "faster"}.get(v.verdict,
                                                                  "no clear difference")


def _report_verdict(base: pd.DataFrame, cand: pd.DataFrame) -> str:
    from reports.aggregate import CallRule, StepSamples, case_summary, compare_kernels

    labels = {"workload": "w", "optimizer": "nag", "threads": 1, "batch": 8, "dtype": "fp32",
              "update_ns": 0, "data_ns": 0, "frontend_ns": 0, "forward_ns": 0,
              "backward_ns": 0, "zero_grad_ns": 0, "loss": 0.0}
    steps = pd.concat([base.assign(case_id="fl", kernel="forloop", **labels),
                       cand.assign(case_id="fe", kernel="foreach", **labels)], ignore_index=True)
    cases = steps.drop_duplicates("case_id")[["run_id", "device", "case_id", "workload",
                                               "optimizer", "kernel", "threads", "batch",
                                               "dtype"]].assign(status="ok", correct_ok=True)
    samples = StepSamples(steps, n_boot=50)
    summary = case_summary(cases, samples, steps)
    (verdict,) = compare_kernels(summary, samples, CallRule(), metrics=("step_ns",))["verdict"]
    return str(verdict)


@settings(max_examples=20, deadline=None)
@given(processes=st.tuples(st.integers(2, 6), st.integers(2, 6)),
       ratio=st.sampled_from([1.0, 1.02, 1.06, 1.12, 1 / 1.12]),
       sigma_p=st.sampled_from([0.005, 0.03, 0.1]), seed=st.integers(0, 10_000))
def test_the_report_and_the_gate_reach_the_same_verdict_on_the_same_data(
        processes: tuple[int, int], ratio: float, sigma_p: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    base = two_level(rng, processes[0], 20, sigma_p=sigma_p)
    cand = two_level(rng, processes[1], 20, ratio=ratio, sigma_p=sigma_p, first_process=10)
    assert _gate_verdict(base, cand) == _report_verdict(base, cand)


def test_a_step_difference_that_comes_from_forward_and_backward_is_process_noise() -> None:
    """The variant's update is the same; its forward and backward are 20 % slower (placement,
    caches): the report must not credit the step-time difference to the optimizer."""
    from reports.aggregate import (
        PROCESS_NOISE,
        CallRule,
        StepSamples,
        case_summary,
        compare_optimizers,
    )
    from reports.headline import optimizer_headlines

    rng = np.random.default_rng(6)
    rows = []
    for optimizer, slow in (("nag", 1.0), ("adam", 1.2)):
        for p in range(6):
            a = rng.normal(0, 0.01)
            for i in range(30):
                fwd, bwd, upd = (v * math.exp(a + rng.normal(0, 0.01)) for v in (4e6 * slow,
                                                                                   6e6 * slow,
                                                                                   1e6))
                rows.append({"run_id": "r", "device": "d", "case_id": f"w-{optimizer}",
                             "workload": "w", "optimizer": optimizer, "kernel": "forloop",
                             "threads": 1, "batch": 8, "dtype": "fp32",
                             "process": f"{optimizer}{p}", "round": -1, "index": i,
                             "warmup": False, "forward_ns": fwd, "backward_ns": bwd,
                             "update_ns": upd, "step_ns": fwd + bwd + upd, "data_ns": 0,
                             "frontend_ns": 0, "zero_grad_ns": 0, "loss": 0.0})
    steps = pd.DataFrame(rows)
    cases = steps.drop_duplicates("case_id")[["run_id", "device", "case_id", "workload",
                                               "optimizer", "kernel", "threads", "batch",
                                               "dtype"]].assign(status="ok", correct_ok=True)
    samples = StepSamples(steps, n_boot=50)
    table = compare_optimizers(case_summary(cases, samples, steps), samples, CallRule())
    assert table["verdict"].tolist() == [PROCESS_NOISE]
    (sentence,) = optimizer_headlines(table, table["device"])
    assert "process noise" in sentence.text and "×" not in sentence.text


def test_pooling_takes_medians_of_finished_processes_and_says_why_the_others_failed() -> None:
    from analysis.processes import pool_processes

    cases = pd.DataFrame({
        "run_id": "r", "device": "d",
        "case_id": pd.Categorical(["a", "a", "a", "b", "b", "c"]),
        "status": ["ok", "failed", "ok", "failed", "failed", "ok"],
        "threads": [1, 1, 1, 2, 2, 1],
        "median_ns": [10.0, 99.0, 14.0, 5.0, 7.0, 3.0],
        "correct_ok": [True, True, False, True, True, True],
        "warnings": ["noisy", "", "noisy;hot", "", "", ""],
        "error_kind": [None, "crash", None, "timeout", "crash", None],
        "error_message": [None, "signal 9", None, "deadline", "signal 9", None],
    })
    blank = cases.iloc[[0]].assign(case_id=pd.Categorical([None], categories=["a", "b", "c"]))
    pooled = pool_processes(pd.concat([cases, blank], ignore_index=True)).set_index("case_id")
    assert list(pooled.columns[-2:]) == ["processes", "processes_failed"]
    assert sorted(pooled.index) == ["a", "b", "c"]  # a row without a case is not a case
    a, b, c = pooled.loc["a"], pooled.loc["b"], pooled.loc["c"]
    # a: two of three processes finished; their median, the failure named, flags pooled
    assert (a["processes"], a["processes_failed"], a["median_ns"]) == (3, 1, 12.0)
    assert (a["status"], a["error_kind"], a["error_message"]) == ("ok", "crash", "signal 9")
    assert a["warnings"] == "noisy;hot" and not a["correct_ok"]
    # b: every process failed: its first row as it is
    assert (b["processes"], b["processes_failed"], b["status"]) == (2, 2, "failed")
    assert (b["median_ns"], b["threads"], b["error_kind"]) == (5.0, 2, "timeout")
    assert (c["processes"], c["processes_failed"], c["median_ns"]) == (1, 0, 3.0)
    assert pooled["processes"].dtype.kind == "i" and pooled["processes_failed"].dtype.kind == "i"
