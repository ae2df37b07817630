"""Comparisons of two cases on per-process summaries: unpaired (Welch) and paired (in-process).

The model (``STATISTICS.md``): a step time is ``y[p, s] = μ · exp(a[p] + e[p, s])``; ``a[p]``
is the agent process's offset, ``e`` the step's own noise. A process's median estimates
``log μ + a[p]`` up to the small within-process error, so the log process medians of a case
are independent draws with variance ``σ_p² + k σ_s² / S``. Hence:

- **unpaired** (:func:`compare_units`): Welch's t on the log process medians of the two
  sides; the ratio is the ratio of geometric means of the process medians, with the
  t-interval exponentiated (df by Welch–Satterthwaite). With a calibrated prior for the
  between-process spread (:class:`Prior`, from ``harness calibrate``), each side's variance
  is moderated towards it (Smyth 2004: ``(d0 s0² + d s²) / (d0 + d)`` with ``d0 + d`` df),
  which also makes one process per side usable.
- **paired** (:func:`compare_paired`): when two cases alternated inside the same processes,
  each matched pair of steps (same ``round``) gives a log-ratio; ``a[p]`` cancels. The unit
  is still the process: a 20 % trimmed mean of the pairs' log-ratios per process
  (:data:`PAIR_TRIM`), then a one-sample t over the processes (df = P − 1). With one process
  the interval comes from the pairs of that one process and says so (``method="within-process"``): it cannot show process-to-process
  variation of the ratio.

``ratio > 1`` means the candidate (variant) is larger — slower for a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.processes import group_values, measured, process_labels, unit_medians, usable
from analysis.stats import DEFAULT_CONFIDENCE, clean, t_quantile, t_two_sided_p, trim_mean

METHODS = ("welch", "student", "prior", "paired", "within-process", "none")

#: Share cut from each end of a process's pair log-ratios before averaging them. Pair
#: log-ratios are heavier-tailed than normal (a pre-empted step makes one pair an outlier):
#: on this project's host (bert_tiny NAG, 42 processes of 20 pairs, excess kurtosis 1.4–2.6)
#: the 20 % trimmed mean's spread between processes was 0.0317 (update) and 0.0174 (step)
#: against 0.0367 and 0.0177 for the median and 0.0322 and 0.0205 for the mean.
PAIR_TRIM = 0.2


@dataclass(frozen=True)
class Prior:
    """A calibrated between-process spread of a case's log median, and its degrees of freedom.

    ``sigma_run`` (with ``run_df``): the calibrated spread between separate *runs* beyond
    what their processes explain (:func:`analysis.design.between_runs`). Two separate runs
    differ by it even when nothing changed, so a comparison of two runs adds ``2 σ_r²`` to its
    variance (:func:`run_variance`); an interleaved comparison (``harness ab``) does not.
    """

    sigma_log: float
    df: float
    sigma_run: float = 0.0
    run_df: float = 0.0

    def usable(self) -> bool:
        return math.isfinite(self.sigma_log) and self.sigma_log >= 0 and self.df > 0

    def between_processes(self, by_hand: Prior | None) -> Prior:
        """This prior with its spread between processes replaced ``by_hand`` (``harness gate
        --run-drift``); the calibrated spread between runs stays."""
        return self if by_hand is None else replace(by_hand, sigma_run=self.sigma_run,
                                                    run_df=self.run_df)


def prior_for_gate(found: Prior | None, by_hand: Prior | None) -> Prior | None:
    """The prior a gate uses: the device file's (``found``) with its spread between processes
    replaced ``by_hand`` where given, else ``by_hand`` alone (no calibration for the case)."""
    return found.between_processes(by_hand) if found is not None else by_hand


def run_variance(prior: Prior | None) -> tuple[float, float]:
    """(``2 σ_r²``, its df) that a comparison of two separate runs adds; (0, 0) without one."""
    if prior is None or not (math.isfinite(prior.sigma_run) and prior.sigma_run > 0
                             and prior.run_df > 0):
        return 0.0, 0.0
    return 2.0 * prior.sigma_run ** 2, prior.run_df


def welch_df(parts: list[tuple[float, float]], fallback: float) -> float:
    """Welch–Satterthwaite df of a sum of variance terms ``(variance, df)``."""
    total = sum(v for v, _ in parts)
    denominator = sum(v ** 2 / d for v, d in parts if v and d > 0)
    return total ** 2 / denominator if denominator > 0 else fallback


@dataclass(frozen=True)
class Comparison:
    """Candidate versus baseline: ratio of geometric means of process medians (> 1: larger).

    ``n_*`` count processes (the units); ``steps_*`` the steps behind them. ``*_min`` and
    ``*_max`` are the extreme process medians of each side (the per-process spread).
    ``p_adjusted`` is the family-wise (Holm) p-value once a family has been decided.
    """

    n_baseline: int
    n_candidate: int
    baseline_median: float
    candidate_median: float
    ratio: float
    ratio_ci_low: float
    ratio_ci_high: float
    p_value: float
    confidence: float
    method: str = "welch"
    df: float = math.nan
    se_log: float = math.nan
    baseline_min: float = math.nan
    baseline_max: float = math.nan
    candidate_min: float = math.nan
    candidate_max: float = math.nan
    steps_baseline: int = 0
    steps_candidate: int = 0
    p_adjusted: float = math.nan
    note: str = ""


def t_interval(diff: float, se: float, df: float, confidence: float) -> tuple[float, float, float]:
    """(p, low, high) of a t statistic on the log scale, exponentiated bounds."""
    if se == 0:
        return (1.0 if diff == 0 else 0.0), math.exp(diff), math.exp(diff)
    t = diff / se
    p = t_two_sided_p(t, df)
    half = t_quantile(0.5 + confidence / 2.0, df) * se
    return p, math.exp(diff - half), math.exp(diff + half)


def _spread(values: np.ndarray) -> tuple[float, float]:
    return (float(values.min()), float(values.max())) if values.size else (math.nan, math.nan)


def compare_units(baseline: npt.ArrayLike, candidate: npt.ArrayLike, *,
                  confidence: float = DEFAULT_CONFIDENCE, prior: Prior | None = None,
                  steps: tuple[int, int] = (0, 0)) -> Comparison:
    """Unpaired comparison of per-process summaries (one positive number per process).

    Both sides ≥ 2 processes: Welch's t. One side with a single process: Student's t with
    the other side's variance (equal spread assumed). Both single: no interval unless a
    usable ``prior`` is given (``method="none"``, the verdict is then inconclusive).
    """
    b, c = clean(baseline), clean(candidate)
    b, c = b[b > 0], c[c > 0]
    nb, nc = b.size, c.size
    spread = (*_spread(b), *_spread(c))
    if nb == 0 or nc == 0:
        return Comparison(nb, nc, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan,
                          confidence, "none", math.nan, math.nan, *spread, *steps,
                          note="no samples on one side")
    lb, lc = np.log(b), np.log(c)
    gb, gc = float(np.exp(lb.mean())), float(np.exp(lc.mean()))
    diff = float(lc.mean() - lb.mean())
    vb = float(np.var(lb, ddof=1)) if nb > 1 else math.nan
    vc = float(np.var(lc, ddof=1)) if nc > 1 else math.nan
    note = ""
    if prior is not None and prior.usable():
        s0 = prior.sigma_log ** 2
        db, dc = prior.df + nb - 1, prior.df + nc - 1
        vb = (prior.df * s0 + (nb - 1) * (vb if nb > 1 else 0.0)) / db
        vc = (prior.df * s0 + (nc - 1) * (vc if nc > 1 else 0.0)) / dc
        method = "prior"
        note = f"spread moderated by the calibrated σ_p {prior.sigma_log:.1%} ({prior.df:g} df)"
    elif nb > 1 and nc > 1:
        db, dc, method = nb - 1.0, nc - 1.0, "welch"
    elif nb > 1 or nc > 1:
        pooled = vb if nb > 1 else vc
        vb = vc = pooled
        db = dc = (nb if nb > 1 else nc) - 1.0
        method = "student"
        note = "one side has a single process: its spread is taken from the other side"
    else:
        return Comparison(nb, nc, gb, gc, gc / gb, math.nan, math.nan, math.nan, confidence,
                          "none", math.nan, math.nan, *spread, *steps,
                          note="one process per side: the spread between processes is unknown")
    wb, wc = vb / nb, vc / nc
    wr, dr = run_variance(prior)
    se = math.sqrt(wb + wc + wr)
    if method == "student":
        df = welch_df([(wb + wc, db), (wr, dr)], db)
    else:
        df = welch_df([(wb, db), (wc, dc), (wr, dr)], db + dc)
    if wr:
        note = (f"{note}; " if note else "") + (
            f"plus the calibrated spread between runs σ_r {prior.sigma_run:.1%}")  # type: ignore[union-attr]
    p, low, high = t_interval(diff, se, df, confidence)
    return Comparison(nb, nc, gb, gc, math.exp(diff), low, high, p, confidence, method, df, se,
                      *spread, *steps, note=note)


def compare_paired(per_process: npt.ArrayLike, *, pairs: npt.ArrayLike = (),
                   baseline_median: float = math.nan, candidate_median: float = math.nan,
                   confidence: float = DEFAULT_CONFIDENCE, steps: tuple[int, int] = (0, 0),
                   spread: tuple[float, float, float, float] = (math.nan,) * 4) -> Comparison:
    """Paired comparison from per-process log-ratio summaries (candidate over baseline).

    P ≥ 2 processes: one-sample t over them (df = P − 1). P = 1: a t over that process's
    pair log-ratios (``pairs``), labelled within-process only.
    """
    d = clean(per_process)
    p_count = d.size
    if p_count == 0:
        return Comparison(0, 0, baseline_median, candidate_median, math.nan, math.nan, math.nan,
                          math.nan, confidence, "none", *(math.nan,) * 2, *spread, *steps,
                          note="no matched rounds")
    if p_count >= 2:
        diff, se, df, method = float(d.mean()), float(d.std(ddof=1) / math.sqrt(p_count)), \
            p_count - 1.0, "paired"
        note = f"paired inside {p_count} processes"
    else:
        within = clean(pairs)
        if within.size < 2:
            return Comparison(1, 1, baseline_median, candidate_median, math.exp(d[0]), math.nan,
                              math.nan, math.nan, confidence, "none", *(math.nan,) * 2, *spread,
                              *steps, note="one process with fewer than two matched rounds")
        diff = float(d[0])
        se, df = float(within.std(ddof=1) / math.sqrt(within.size)), within.size - 1.0
        method = "within-process"
        note = ("paired inside one process only: the interval cannot show how the ratio moves "
                "between processes")
    p, low, high = t_interval(diff, se, df, confidence)
    return Comparison(p_count, p_count, baseline_median, candidate_median, math.exp(diff), low,
                      high, p, confidence, method, df, se, *spread, *steps, note=note)


@dataclass(frozen=True)
class _Steps:
    """One case's measured steps as arrays: process label, round (−1: alone), value."""

    units: np.ndarray
    rounds: np.ndarray
    values: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame, column: str) -> _Steps:
        rows = measured(frame)
        n = len(rows)
        units = process_labels(rows)
        rounds = (pd.to_numeric(rows["round"], errors="coerce").fillna(-1).to_numpy(np.int64)
                  if "round" in rows.columns else np.full(n, -1, np.int64))
        values = (pd.to_numeric(rows[column], errors="coerce").to_numpy(float)
                  if column in rows.columns else np.full(n, np.nan))
        return cls(units, rounds, values)

    def shared_units(self) -> set[str]:
        """Processes in which this case alternated with others (rounds ≥ 0)."""
        return set(self.units[self.rounds >= 0].tolist())


def _matched(baseline: _Steps, candidate: _Steps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit, round, log-ratio) of steps matched by process and round (rounds ≥ 0, values
    usable; the first step of a (process, round) counts), sorted by process and round."""
    def keep(side: _Steps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ok = usable(side.values) & (side.rounds >= 0)
        return side.units[ok], side.rounds[ok], side.values[ok]

    bu, br, bv = keep(baseline)
    cu, cr, cv = keep(candidate)
    if bu.size == 0 or cu.size == 0:
        return np.empty(0, str), np.empty(0, np.int64), np.empty(0)
    labels = np.unique(np.concatenate([bu, cu]))
    span = int(max(br.max(), cr.max())) + 1

    def first(units: np.ndarray, rounds: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys = np.searchsorted(labels, units).astype(np.int64) * span + rounds
        unique_keys, index = np.unique(keys, return_index=True)
        return unique_keys, values[index]

    kb, vb = first(bu, br, bv)
    kc, vc = first(cu, cr, cv)
    common, ib, ic = np.intersect1d(kb, kc, assume_unique=True, return_indices=True)
    return labels[common // span], common % span, np.log(vc[ic]) - np.log(vb[ib])


def compare_steps(baseline: pd.DataFrame, candidate: pd.DataFrame, column: str, *,
                  confidence: float = DEFAULT_CONFIDENCE, prior: Prior | None = None,
                  pair: bool = True) -> Comparison:
    """Compare one per-step column of two cases' steps (warm-up rows are dropped).

    Paired when the two cases shared processes (``round`` ≥ 0 in common processes) and
    ``pair`` is true; otherwise unpaired on the per-process medians.
    """
    sb, sc = _Steps.of(baseline, column), _Steps.of(candidate, column)
    _, nb, b = unit_medians(sb.units, sb.values)
    _, nc, c = unit_medians(sc.units, sc.values)
    steps = (int(nb.sum()), int(nc.sum()))
    if pair and sb.shared_units() & sc.shared_units():
        units, _, ratios = _matched(sb, sc)
        _, groups = group_values(units, ratios)
        per_process = np.array([trim_mean(g, PAIR_TRIM) for g in groups], dtype=float)
        gb = float(np.exp(np.log(b).mean())) if b.size else math.nan
        gc = float(np.exp(np.log(c).mean())) if c.size else math.nan
        return compare_paired(per_process, pairs=ratios, baseline_median=gb,
                              candidate_median=gc, confidence=confidence, steps=steps,
                              spread=(*_spread(b), *_spread(c)))
    return compare_units(b, c, confidence=confidence, prior=prior, steps=steps)


def compare_by_repeat(base: pd.DataFrame, cand: pd.DataFrame, column: str,
                      confidence: float = DEFAULT_CONFIDENCE) -> Comparison:
    """Processes of the two sides matched by ``repeat`` (``harness ab``: they ran back to back):
    each repeat's log-ratio of process medians is one paired unit. Drift between the two
    sides' runs cannot enter, so no spread between runs is added."""
    def medians(frame: pd.DataFrame) -> pd.Series:
        values = pd.to_numeric(frame[column], errors="coerce")
        keep = frame.loc[values > 0]
        return keep.groupby("repeat")[column].median() if len(keep) else pd.Series(dtype=float)

    mb, mc = medians(base), medians(cand)
    common = mb.index.intersection(mc.index)
    d = np.log(mc[common].to_numpy(float)) - np.log(mb[common].to_numpy(float))
    b, c = mb.to_numpy(float), mc.to_numpy(float)
    spread = (float(b.min()), float(b.max()), float(c.min()), float(c.max())) if (
        b.size and c.size) else (math.nan,) * 4
    geo = [float(np.exp(np.log(x).mean())) if x.size else math.nan for x in (b, c)]
    comparison = compare_paired(d, baseline_median=geo[0], candidate_median=geo[1],
                                confidence=confidence, spread=spread)
    if comparison.method == "within-process" or len(common) < 2:
        return compare_units(b, c, confidence=confidence)
    return replace(comparison, method="paired-rounds",
                   note=f"processes paired by round ({len(common)} rounds)")
