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
