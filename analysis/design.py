"""Experiment design: variance components of a device, and processes × steps for a target.

Model (``STATISTICS.md``): ``log y[p, s] = log μ + a[p] + e[p, s]`` with ``sd(a) = σ_p``
(between agent processes) and ``sd(e) = σ_s`` (within one). The log median of a process of
S steps then varies with ``σ_p² + k σ_s² / S`` (k ≈ 1.57 for a median), so a comparison of
two sides of P processes each has ``SE² = 2 (σ_p² + k σ_s² / S) / P``.

:func:`components` estimates σ_p and σ_s from the processes of one case (method of moments:
σ_s from the pooled robust spread inside processes, σ_p² from the variance of the log process
medians less the part σ_s explains, never below 0). :func:`plan` turns them into a design
(Kalibera & Jones, "Rigorous Benchmarking in Reasonable Time", ISMM 2013): the steps per
process that minimise the variance per unit of cost, ``S* ≈ sqrt((c_p / c_s) · (k σ_s² /
σ_p²))``, then the fewest processes whose SE detects the requested change with the
requested power at level α/m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.compare import welch_df
from analysis.processes import measured, process_key
from analysis.stats import MAD_TO_SIGMA, t_quantile

MEDIAN_EFFICIENCY_K = 1.57  # Var(median) ≈ k · σ² / n for normal samples (π/2)
MIN_RUNS = 3  # runs before a spread between them is estimated (one or two say nothing of it)


@dataclass(frozen=True)
class Components:
    """Variance components of one case on the log scale (fractions: 0.03 = 3 %)."""

    sigma_p: float  # between processes, net of within-process noise
    sigma_s: float  # between steps inside a process
    sigma_median: float  # observed sd of log process medians (σ_p² + k σ_s²/S; within runs)
    processes: int
    steps_per_process: float
    sigma_run: float = math.nan  # between runs, net of the processes' spread (:func:`between_runs`)
    runs: int = 0  # runs behind ``sigma_run`` (0: the processes came from one run)

    @property
    def df(self) -> float:
        """Degrees of freedom of ``sigma_median`` (:func:`median_df`)."""
        return median_df(self.processes, self.runs)


def median_df(processes: float, runs: float) -> float:
    """Degrees of freedom of a spread of process medians: processes − 1, or processes − runs
    when it is the spread within runs (:data:`MIN_RUNS` or more)."""
    return float(max(processes - (runs if runs >= MIN_RUNS else 1), 0))


@dataclass(frozen=True)
class Design:
    """Processes per side and measured steps per process for a requested detectable change."""

    processes: int
    steps: int
    detectable: float  # the change this design detects with the requested power
    se_log: float
    capped: bool  # True when max_processes was reached before the target


def components(steps: pd.DataFrame, column: str = "step_ns") -> Components:
    """Variance components of one case's steps (warm-up rows dropped)."""
    rows = measured(steps)
    values = pd.to_numeric(rows[column], errors="coerce").to_numpy(float)
    keep = np.isfinite(values) & (values > 0)
    frame = pd.DataFrame({"unit": process_key(rows).to_numpy()[keep], "log": np.log(values[keep])})
    if frame.empty:
        return Components(math.nan, math.nan, math.nan, 0, 0.0)
    grouped = frame.groupby("unit")["log"]
    medians = grouped.median()
    mad = grouped.apply(lambda v: float(np.median(np.abs(v - np.median(v)))))
    counts = grouped.size()
    weights = (counts - 1).clip(lower=0)
    sigma_s = (math.sqrt(float(((MAD_TO_SIGMA * mad) ** 2 * weights).sum() / weights.sum()))
               if weights.sum() > 0 else math.nan)
    steps_per = float(counts.median())
    if len(medians) < 2:
        return Components(math.nan, sigma_s, math.nan, len(medians), steps_per)
    labels = run_of(medians.index.to_numpy())
    sigma_run, runs = (between_runs(medians.to_numpy(), labels) if "run_id" in rows.columns
                       else (math.nan, 0))
    # processes of several runs: their spread *within* a run (σ_r is the level above, apart)
    var_median = (within_runs(medians.to_numpy(), labels) if runs >= MIN_RUNS
                  else float(np.var(medians.to_numpy(), ddof=1)))
    within = MEDIAN_EFFICIENCY_K * sigma_s ** 2 / steps_per if math.isfinite(sigma_s) else 0.0
    sigma_p = math.sqrt(max(0.0, var_median - within))
    return Components(sigma_p, sigma_s, math.sqrt(var_median), len(medians), steps_per,
                      sigma_run, runs)


def _per_run(values: np.ndarray, runs: np.ndarray) -> pd.DataFrame:
    """Mean, variance and count of the finite ``values`` of each run with two or more."""
    frame = pd.DataFrame({"run": np.asarray(runs, dtype=object),
                          "value": np.asarray(values, dtype=float)})
    per = frame[np.isfinite(frame["value"])].groupby("run")["value"].agg(["mean", "var", "size"])
    return per[per["size"] >= 2]


def within_runs(values: np.ndarray, runs: np.ndarray) -> float:
    """The pooled variance of ``values`` around their own run's mean (runs of two or more)."""
    per = _per_run(values, runs)
    dof = float((per["size"] - 1).sum())
    return float((per["var"] * (per["size"] - 1)).sum() / dof) if dof > 0 else math.nan


def run_of(labels: np.ndarray) -> np.ndarray:
    """The run part of process labels ``run_id/process`` (:func:`~analysis.processes.process_key`)."""
    return np.array([str(label).split("/", 1)[0] for label in labels], dtype=object)


def between_runs(values: np.ndarray, runs: np.ndarray) -> tuple[float, int]:
    """(σ_r, R): the spread of a quantity's run means beyond what their processes explain.

    ``values``: one log summary per process; ``runs``: the run each came from. Kalibera &
    Jones's third level: separate runs (bench invocations, calibration blocks) of the same
    code differ by more than their processes predict when the host drifts between them
    (clock, thermal state, neighbours). Method of moments, ``σ_r² = Var(run means) −
    mean(within-run variance / processes)``, never below 0; runs with fewer than two processes
    are left out, and fewer than three runs give NaN (one or two say nothing of a spread).
    A gate of two separate runs adds ``2 σ_r²`` to its variance (``analysis.compare.Prior``).
    """
    excess, count = run_excess(values, runs)
    return run_sigma(excess), count


def run_sigma(excess: float) -> float:
    """σ_r from an estimate of σ_r² (:func:`run_excess`), floored at 0; NaN stays NaN."""
    return math.sqrt(max(0.0, excess)) if math.isfinite(excess) else math.nan


def run_excess(values: np.ndarray, runs: np.ndarray) -> tuple[float, int]:
    """(σ_r² as estimated, R): :func:`between_runs` before the floor at 0 (it may be negative;
    NaN from fewer than three runs). Several like quantities pool these, then floor the mean:
    the mean of floored estimates is biased upwards when σ_r is near 0."""
    per = _per_run(values, runs)
    if len(per) < MIN_RUNS:
        return math.nan, int(len(per))
    return (float(per["mean"].var(ddof=1)) - float((per["var"] / per["size"]).mean()),
            int(len(per)))


def components_table(steps: pd.DataFrame, column: str = "step_ns",
                     by: tuple[str, ...] = ("device", "case_id")) -> pd.DataFrame:
    """:func:`components` per case: one row per ``by`` group."""
    keys = [k for k in by if k in steps.columns]
    rows = []
    for key, group in measured(steps).groupby(keys, sort=True, observed=True):
        c = components(group, column)
        names = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, names, strict=True)), "sigma_p": c.sigma_p,
                     "sigma_s": c.sigma_s, "sigma_median": c.sigma_median,
                     "processes": c.processes, "steps_per_process": c.steps_per_process})
    return pd.DataFrame(rows, columns=[*keys, "sigma_p", "sigma_s", "sigma_median", "processes",
                                       "steps_per_process"])


def se_of(sigma_p: float, sigma_s: float, processes: int, steps: float,
          k: float = MEDIAN_EFFICIENCY_K) -> float:
    """SE of the log ratio of two sides of ``processes`` processes × ``steps`` steps."""
    return math.sqrt(2.0 * (sigma_p ** 2 + k * sigma_s ** 2 / steps) / processes)


def optimal_steps(sigma_p: float, sigma_s: float, process_cost_s: float, step_cost_s: float, *,
                  k: float = MEDIAN_EFFICIENCY_K, min_steps: int = 10,
                  max_steps: int = 1000) -> int:
    """Kalibera & Jones: ``S* ≈ sqrt((c_p / c_s) · (k σ_s² / σ_p²))``, within the bounds."""
    if not sigma_p > 0:
        return max_steps
    best = math.sqrt((process_cost_s / step_cost_s) * (k * sigma_s ** 2 / sigma_p ** 2))
    return int(min(max_steps, max(min_steps, round(best))))


def with_runs(se: float, df: float, sigma_run: float, run_df: float) -> tuple[float, float]:
    """(SE, df) of a comparison of two separate runs: ``2 σ_r²`` added to ``se²`` (the spread
    between runs, :func:`between_runs`), Welch–Satterthwaite df; unchanged without σ_r."""
    if not (sigma_run > 0 and run_df > 0):
        return se, df
    parts = [(se ** 2, df), (2.0 * sigma_run ** 2, run_df)]
    return math.sqrt(se ** 2 + 2.0 * sigma_run ** 2), welch_df(parts, df)


def plan(sigma_p: float, sigma_s: float, detect: float, *, process_cost_s: float = 6.0,
         step_cost_s: float = 0.05, alpha: float = 0.05, power: float = 0.90, tests: int = 1,
         k: float = MEDIAN_EFFICIENCY_K, min_processes: int = 3, max_processes: int = 200,
         min_steps: int = 10, max_steps: int = 1000, pooled: int = 1, sigma_run: float = 0.0,
         run_df: float = 0.0) -> Design:
    """The cheapest (processes, steps) that detects a relative change ``detect``.

    Two-sided level ``alpha / tests`` (the first Holm step of a family of ``tests``), a t
    with ``pooled · (2P − 2)`` df; P counts processes per side. ``pooled`` > 1 when the test
    pools the spread of that many like comparisons (a variant against its process-mates:
    ``analysis.relative`` moderates the spread over the group's variants, and when they agree
    its df are the group's). ``sigma_run`` (df ``run_df``): the spread between separate runs,
    which a gate against a stored baseline adds (:func:`with_runs`) and no number of
    processes reduces.
    """
    if not detect > 0:
        raise ValueError(f"detect={detect!r} must be a positive fraction, e.g. 0.05")
    if not (math.isfinite(sigma_p) and math.isfinite(sigma_s)):
        raise ValueError("the variance components are unknown (NaN); run `harness calibrate` "
                         "with at least two processes per case")
    steps = optimal_steps(sigma_p, sigma_s, process_cost_s, step_cost_s, k=k,
                          min_steps=min_steps, max_steps=max_steps)
    target = math.log1p(detect)
    level = alpha / max(tests, 1)
    se = df = math.nan
    for processes in range(min_processes, max_processes + 1):
        se, df = with_runs(se_of(sigma_p, sigma_s, processes, steps, k),
                           pooled * (2.0 * processes - 2.0), sigma_run, run_df)
        z = t_quantile(1 - level / 2, df) + t_quantile(power, df)
        if z * se <= target:
            return Design(processes, steps, math.expm1(z * se), se, False)
    z = t_quantile(1 - level / 2, df) + t_quantile(power, df)
    return Design(max_processes, steps, math.expm1(z * se), se, True)
