"""Calibrating the gate: how often it cries wolf, and how small a slowdown it catches.

Two kinds of trial, both run through :func:`harness.gate.gate` itself so the numbers describe
the gate that CI uses:

- **A/A**: two runs of the same code on the same device. Every ``regression`` or
  ``improvement`` is a false alarm. With stored runs this includes the run-to-run drift
  (frequency, heat) that no within-run test can see; with one run the steps of each case
  are split into interleaved halves, which shows only within-run noise.
- **Injected slowdown**: the same pairs with the candidate's metric column multiplied by
  ``1 + effect``; the share called ``regression`` is the detection rate (power).

Every case of a pair is one trial, so one gate call over a suite gives hundreds. The
functions are pure (frames in, records out): ``harness calibrate`` loads stored runs and
prints; :func:`synthetic_run` makes runs with a known noise model for ``docs/gate.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from harness.gate import (
    DEFAULT_ALPHA,
    DEFAULT_RULE,
    METRICS,
    RULES,
    GateResult,
    MetricVerdict,
    decide,
    gate,
)
from harness.stats import DEFAULT_RESAMPLES, bootstrap_medians

Pair = tuple[pd.DataFrame, pd.DataFrame]


@dataclass(frozen=True)
class TrialRates:
    """Verdict shares over the trials of one (effect, rule)."""

    effect: float
    rule: str
    trials: int
    regression_rate: float
    improvement_rate: float
    pass_rate: float
    inconclusive_rate: float

    @property
    def false_alarm_rate(self) -> float:
        """For an A/A trial (effect 0): any call of a difference is a false alarm."""
        return self.regression_rate + self.improvement_rate


def aa_pairs(runs: Sequence[pd.DataFrame]) -> list[Pair]:
    """A/A pairs of steps frames: every two distinct runs, or one run's interleaved halves."""
    if not runs:
        raise ValueError("calibration needs at least one stored run; run the suite first")
    if len(runs) >= 2:
        return [(runs[i], runs[j]) for i in range(len(runs)) for j in range(i + 1, len(runs))]
    steps = runs[0]
    measured = steps[~steps["warmup"].astype(bool)] if "warmup" in steps.columns else steps
    order = measured.groupby("case_id", sort=False).cumcount()
    return [(measured[order % 2 == 0], measured[order % 2 == 1])]


def inject_slowdown(steps: pd.DataFrame, effect: float, column: str = "step_ns") -> pd.DataFrame:
    """A copy of ``steps`` with ``column`` multiplied by ``1 + effect`` (0.05 = 5 % slower)."""
    slowed = steps.copy()
    slowed[column] = slowed[column].astype(float) * (1.0 + effect)
    return slowed


def first_steps(steps: pd.DataFrame, n_steps: int) -> pd.DataFrame:
    """The first ``n_steps`` measured steps of every case: what a shorter run would give."""
    measured = steps[~steps["warmup"].astype(bool)] if "warmup" in steps.columns else steps
    return measured[measured.groupby("case_id", sort=False).cumcount() < n_steps]


def trial_rates(results: Sequence[GateResult], effect: float,
                rules: Sequence[str] = (DEFAULT_RULE,)) -> list[TrialRates]:
    """Verdict shares per rule, re-deciding every stored comparison under that rule.

    Rows the gate could not compare (too few samples, missing cases) keep their verdict.
    """
    out = []
    for rule in rules:
        verdicts = [_redecide(v, result.alpha, rule) for result in results
                    for v in result.verdicts]
        n = len(verdicts)
        rates = {name: (verdicts.count(name) / n if n else math.nan)
                 for name in ("regression", "improvement", "pass", "inconclusive")}
        out.append(TrialRates(effect=effect, rule=rule, trials=n,
                              regression_rate=rates["regression"],
                              improvement_rate=rates["improvement"],
                              pass_rate=rates["pass"], inconclusive_rate=rates["inconclusive"]))
    return out


def _redecide(verdict: MetricVerdict, alpha: float, rule: str) -> str:
    if verdict.comparison is None or not verdict.method:
        return verdict.verdict
    return decide(verdict.comparison, verdict.floor, alpha, rule=rule,
                  floor_only=verdict.method == "floor-only")[0]


def run_trials(pairs: Sequence[Pair], *, metric: str = "step_time", effect: float = 0.0,
               floor: float | None = None, alpha: float = DEFAULT_ALPHA,
               rules: Sequence[str] = RULES, n_resamples: int = DEFAULT_RESAMPLES,
               seed: int = 0, run_drift: float = 0.0) -> list[TrialRates]:
    """Gate every pair (candidate slowed by ``effect``) and return verdict shares per rule.

    ``effect=0`` gives the A/A false-alarm rate; ``effect=0.05`` the power against a 5 %
    slowdown. Each pair gets its own bootstrap seed so trials are independent.
    """
    spec = METRICS[metric]
    if spec.table != "steps":
        raise ValueError(f"calibration needs a per-step metric, not {metric!r}; use "
                         "step_time, update_time or time")
    floors = {metric: floor} if floor is not None else None
    results = []
    for i, (base, cand) in enumerate(pairs):
        candidate = inject_slowdown(cand, effect, spec.column) if effect else cand
        results.append(gate(base, None, candidate, None, floors, alpha, metrics=(metric,),
                            n_resamples=n_resamples, seed=seed + i, run_drift=run_drift))
    return trial_rates(results, effect, rules)


def minimum_detectable_effect(pairs: Sequence[Pair], *, target: float = 0.9,
                              effects: Sequence[float] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1,
                                                          0.15, 0.2, 0.3),
                              metric: str = "step_time", floor: float | None = None,
                              alpha: float = DEFAULT_ALPHA, rule: str = DEFAULT_RULE,
                              n_resamples: int = DEFAULT_RESAMPLES) -> float:
    """The smallest slowdown in ``effects`` detected in at least ``target`` of the trials
    (NaN when none is): what this device and run length can promise to catch."""
    for effect in sorted(effects):
        rates = run_trials(pairs, metric=metric, effect=effect, floor=floor, alpha=alpha,
                           rules=(rule,), n_resamples=n_resamples)[0]
        if rates.regression_rate >= target:
            return effect
    return math.nan


def estimate_run_drift(runs: Sequence[pd.DataFrame], column: str = "step_ns", *,
                       n_resamples: int = 200, seed: int = 0) -> float:
    """Run-to-run drift: the standard deviation of a case's log median between runs.

    For every case present in two or more runs, the variance of its log medians across
    runs, less the part that sampling within a run explains (the mean bootstrap variance of
    each run's log median), pooled over cases. The result feeds ``gate(run_drift=...)``.
    NaN with fewer than two runs: drift cannot be seen in one run.
    """
    if len(runs) < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    per_case: dict[str, list[tuple[float, float]]] = {}
    for steps in runs:
        measured = steps[~steps["warmup"].astype(bool)] if "warmup" in steps.columns else steps
        for case_id, group in measured.groupby("case_id", sort=False):
            values = group[column].to_numpy(float)
            values = values[values > 0]
            if values.size < 2:
                continue
            draws = np.log(bootstrap_medians(values, n_resamples, rng))
            per_case.setdefault(str(case_id), []).append(
                (math.log(float(np.median(values))), float(np.var(draws, ddof=1))))
    excess = [np.var([m for m, _ in pairs], ddof=1) - np.mean([v for _, v in pairs])
              for pairs in per_case.values() if len(pairs) >= 2]
    if not excess:
        return math.nan
    return math.sqrt(max(0.0, float(np.mean(excess))))


def synthetic_run(n_cases: int, n_steps: int, rng: np.random.Generator, *,
                  cv: float = 0.07, outlier_rate: float = 0.02, outlier_scale: float = 3.0,
                  run_shift_sd: float = 0.0, median_ns: float = 2e7) -> pd.DataFrame:
    """A steps frame with a known noise model, for simulating the gate.

    Each step is lognormal (``sigma = cv``) around ``median_ns``; a share ``outlier_rate``
    of steps is stretched by up to ``outlier_scale`` (a GC pause, a migration to a little
    core); ``run_shift_sd`` moves a whole case of this run by a lognormal factor, modelling
    run-to-run drift that within-run statistics cannot see.
    """
    shift = np.exp(rng.normal(0.0, run_shift_sd, size=(n_cases, 1)))
    step_ns = median_ns * shift * rng.lognormal(0.0, cv, size=(n_cases, n_steps))
    outliers = rng.random((n_cases, n_steps)) < outlier_rate
    step_ns = np.where(outliers, step_ns * rng.uniform(1.2, outlier_scale, step_ns.shape),
                       step_ns)
    return pd.DataFrame({
        "case_id": np.repeat([f"case{i:04d}" for i in range(n_cases)], n_steps),
        "index": np.tile(np.arange(n_steps), n_cases), "warmup": False,
        "step_ns": step_ns.ravel(),
    })


def simulate(n_steps_list: Sequence[int], *, n_cases: int = 200,
             effects: Sequence[float] = (0.0, 0.05), seed: int = 0,
             n_resamples: int = DEFAULT_RESAMPLES, run_drift: float = 0.0,
             **noise: float) -> pd.DataFrame:
    """Verdict shares per (steps per case, effect, rule) on synthetic runs: one row each.

    Every (n_steps, effect) draws fresh baseline and candidate runs of ``n_cases`` cases,
    each case one trial. ``noise`` goes to :func:`synthetic_run`; ``run_drift`` to the gate.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n_steps in n_steps_list:
        for effect in effects:
            pair = (synthetic_run(n_cases, n_steps, rng, **noise),
                    synthetic_run(n_cases, n_steps, rng, **noise))
            for rates in run_trials([pair], effect=effect, n_resamples=n_resamples,
                                    seed=seed, run_drift=run_drift):
                rows.append({"n_steps": n_steps, **asdict(rates),
                             "false_alarm_rate": rates.false_alarm_rate})
    return pd.DataFrame(rows)
