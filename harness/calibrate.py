"""Calibrating the gate: how often it cries wolf, and how small a slowdown it catches.

Two kinds of trial, both run through :func:`harness.gate.gate` itself so the numbers describe
the gate that CI uses:

- **A/A**: two runs of the same code on the same device. Every ``regression`` or
  ``improvement`` is a false alarm; a gate run with at least one is a *run-level* false
  alarm (what a CI user feels). With one run, each case's processes are split into
  alternating halves.
- **Injected slowdown**: the same pairs with the candidate's metric column multiplied by
  ``1 + effect`` (post hoc, on the stored samples); the share called ``regression`` is the
  detection rate (power).

The functions are pure (frames in, records out): ``harness calibrate`` loads stored runs and
prints; :func:`synthetic_run` makes runs with known variance components (between processes
and within one) for the tests and ``docs/gate.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from analysis.design import components
from analysis.processes import process_key
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
    """A/A pairs of steps frames: every two distinct runs, or one run split in two.

    One run: alternate processes of each case when every case has at least two, else
    (one process) the interleaved halves of its steps — within-process noise only.
    """
    if not runs:
        raise ValueError("calibration needs at least one stored run; run the suite first")
    if len(runs) >= 2:
        return [(runs[i], runs[j]) for i in range(len(runs)) for j in range(i + 1, len(runs))]
    steps = runs[0]
    measured = steps[~steps["warmup"].astype(bool)] if "warmup" in steps.columns else steps
    units = process_key(measured)
    if units.groupby(measured["case_id"].astype(str).to_numpy()).nunique().min() >= 2:
        rank = units.groupby(measured["case_id"].astype(str).to_numpy()).rank(method="dense")
        return [(measured[rank.to_numpy() % 2 == 1], measured[rank.to_numpy() % 2 == 0])]
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


def run_level_rates(results: Sequence[GateResult]) -> dict[str, float]:
    """Per gate run (one trial): share with any false alarm, any regression, exit code ≠ 0."""
    n = len(results)
    if not n:
        return {"trials": 0, "any_alarm": math.nan, "any_regression": math.nan,
                "failed": math.nan}
    alarms = sum(1 for r in results if r.count("regression") or r.count("improvement"))
    return {"trials": n, "any_alarm": alarms / n,
            "any_regression": sum(1 for r in results if r.count("regression")) / n,
            "failed": sum(1 for r in results if r.exit_code != 0) / n}


def run_trials(pairs: Sequence[Pair], *, metric: str = "step_time", effect: float = 0.0,
               floor: float | None = None, alpha: float = DEFAULT_ALPHA,
               rules: Sequence[str] = RULES, run_drift: float = 0.0) -> list[TrialRates]:
    """Gate every pair (candidate slowed by ``effect``) and return verdict shares per rule.

    ``effect=0`` gives the A/A false-alarm rate; ``effect=0.05`` the power against a 5 %
    slowdown. Every (case, pair) is one trial.
    """
    return trial_rates(gate_pairs(pairs, metric=metric, effect=effect, floor=floor, alpha=alpha,
                                  run_drift=run_drift), effect, rules)


def gate_pairs(pairs: Sequence[Pair], *, metric: str = "step_time", effect: float = 0.0,
               floor: float | None = None, alpha: float = DEFAULT_ALPHA,
               run_drift: float = 0.0) -> list[GateResult]:
    """The gate's result for every pair, the candidate's metric slowed by ``effect``."""
    spec = METRICS[metric]
    if spec.table != "steps":
        raise ValueError(f"calibration needs a per-step metric, not {metric!r}; use "
                         "step_time, update_time or time")
    floors = {metric: floor} if floor is not None else None
    results = []
    for base, cand in pairs:
        candidate = inject_slowdown(cand, effect, spec.column) if effect else cand
        results.append(gate(base, None, candidate, None, floors, alpha, metrics=(metric,),
                            run_drift=run_drift))
    return results


def minimum_detectable_effect(pairs: Sequence[Pair], *, target: float = 0.9,
                              effects: Sequence[float] = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1,
                                                          0.15, 0.2, 0.3),
                              metric: str = "step_time", floor: float | None = None,
                              alpha: float = DEFAULT_ALPHA, rule: str = DEFAULT_RULE) -> float:
    """The smallest slowdown in ``effects`` detected in at least ``target`` of the trials
    (NaN when none is): what this device and run length can promise to catch."""
    for effect in sorted(effects):
        rates = run_trials(pairs, metric=metric, effect=effect, floor=floor, alpha=alpha,
                           rules=(rule,))[0]
        if rates.regression_rate >= target:
            return effect
    return math.nan


def estimate_run_drift(runs: Sequence[pd.DataFrame], column: str = "step_ns") -> float:
    """Between-process spread σ_p of a case's log median, pooled over cases (RMS).

    Every distinct (run, process) is a process; the within-process part is removed
    (:func:`analysis.design.components`). NaN with fewer than two processes of any case.
    """
    frames = [r.assign(run_id=f"run{i}/" + (r["run_id"].astype(str) if "run_id" in r.columns
                                             else ""))
              for i, r in enumerate(runs)]
    if not frames:
        return math.nan
    steps = pd.concat(frames, ignore_index=True)
    sigmas = [components(group, column).sigma_p
              for _, group in steps.groupby("case_id", sort=False)]
    finite = [s for s in sigmas if math.isfinite(s)]
    return math.sqrt(float(np.mean(np.square(finite)))) if finite else math.nan


def synthetic_run(n_cases: int, n_steps: int, rng: np.random.Generator, *,
                  cv: float = 0.07, outlier_rate: float = 0.02, outlier_scale: float = 3.0,
                  run_shift_sd: float = 0.0, median_ns: float = 2e7, processes: int = 1,
                  run_id: str = "r") -> pd.DataFrame:
    """A steps frame with known variance components, for simulating the gate.

    Case i, process p, step s: ``median_ns · exp(a[i, p] + e[i, p, s])`` with
    ``sd(a) = run_shift_sd`` (between processes) and lognormal step noise ``sd(e) = cv``; a
    share ``outlier_rate`` of steps is stretched by up to ``outlier_scale`` (a GC pause).
    """
    shift = rng.normal(0.0, run_shift_sd, size=(n_cases, processes, 1))
    step_ns = median_ns * np.exp(shift + rng.normal(0.0, cv, size=(n_cases, processes, n_steps)))
    outliers = rng.random(step_ns.shape) < outlier_rate
    step_ns = np.where(outliers, step_ns * rng.uniform(1.2, outlier_scale, step_ns.shape),
                       step_ns)
    return pd.DataFrame({
        "run_id": run_id,
        "case_id": np.repeat([f"case{i:04d}" for i in range(n_cases)], processes * n_steps),
        "repeat": np.tile(np.repeat(np.arange(processes), n_steps), n_cases),
        "index": np.tile(np.arange(n_steps), n_cases * processes), "warmup": False,
        "step_ns": step_ns.ravel(),
    })


def synthetic_group_run(n_cases: int, processes: int, n_steps: int, rng: np.random.Generator, *,
                        sigma_p: float = 0.09, sigma_cp: float | Sequence[float] = 0.01,
                        cv: float = 0.05,
                        median_ns: float = 2e7, slowdown: dict[int, float] | None = None,
                        run_id: str = "r", group: str = "g",
                        run_shift: float | Sequence[float] = 0.0) -> pd.DataFrame:
    """A steps frame of ``n_cases`` variants sharing ``processes`` agent processes.

    Case i, process p, step s: ``median_ns · f_i · exp(a[p] + b[i, p] + e[i, p, s])``;
    ``sd(a) = sigma_p`` is the offset every case of a process shares, ``sd(b) = sigma_cp``
    (one value, or one per case) what moves one case against its mates between processes,
    ``sd(e) = cv`` the step noise;
    ``f_i`` spreads the variants' speeds over 0.5–2×. ``slowdown`` multiplies case i's steps
    by ``1 + slowdown[i]``; ``run_shift`` adds a log shift to every step of the run (one
    value, or one per case): the host drifting between separate runs. Process labels are the
    bench's (``device:group:r<p>:a1``).
    """
    levels = np.exp(np.linspace(np.log(0.5), np.log(2.0), n_cases))
    shared = rng.normal(0.0, sigma_p, size=(1, processes, 1))
    own = rng.normal(0.0, 1.0, size=(n_cases, processes, 1)) * np.broadcast_to(
        np.asarray(sigma_cp, dtype=float), (n_cases,))[:, None, None]
    noise = rng.normal(0.0, cv, size=(n_cases, processes, n_steps))
    factor = np.array([1.0 + (slowdown or {}).get(i, 0.0) for i in range(n_cases)])
    shift = np.broadcast_to(np.asarray(run_shift, dtype=float), (n_cases,))[:, None, None]
    step_ns = median_ns * (levels * factor)[:, None, None] * np.exp(shared + own + noise + shift)
    labels = np.array([f"local:{group}:r{p}:a1" for p in range(processes)])
    return pd.DataFrame({
        "run_id": run_id,
        "case_id": np.repeat([f"{group}-case{i:02d}" for i in range(n_cases)], processes * n_steps),
        "repeat": np.tile(np.repeat(np.arange(processes), n_steps), n_cases),
        "process": np.tile(np.repeat(labels, n_steps), n_cases),
        "index": np.tile(np.arange(n_steps), n_cases * processes),
        "round": np.tile(np.arange(n_steps), n_cases * processes), "warmup": False,
        "step_ns": step_ns.ravel(),
    })


def simulate(n_steps_list: Sequence[int], *, n_cases: int = 200,
             effects: Sequence[float] = (0.0, 0.05), seed: int = 0, run_drift: float = 0.0,
             **noise: float) -> pd.DataFrame:
    """Verdict shares per (steps per case, effect, rule) on synthetic runs: one row each.

    Every (n_steps, effect) draws fresh baseline and candidate runs of ``n_cases`` cases,
    each case one trial. ``noise`` goes to :func:`synthetic_run`; ``run_drift`` to the gate.
    The cases are gated one by one (each its own family), so the rates are per test.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n_steps in n_steps_list:
        for effect in effects:
            base = synthetic_run(n_cases, n_steps, rng, run_id="a", **noise)
            cand = synthetic_run(n_cases, n_steps, rng, run_id="b", **noise)
            pairs = [(base[base["case_id"] == c], cand[cand["case_id"] == c])
                     for c in base["case_id"].unique()]
            for rates in run_trials(pairs, effect=effect, run_drift=run_drift):
                rows.append({"n_steps": n_steps, **asdict(rates),
                             "false_alarm_rate": rates.false_alarm_rate})
    return pd.DataFrame(rows)
