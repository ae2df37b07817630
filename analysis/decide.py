"""The one decision rule, the run-level error control, and the smallest detectable change.

A difference is called when it is **significant at the family-wise level** (Holm–Bonferroni
over every test of the family: all cases × metrics of a gate run, or all comparisons of a
report table) **and not shown smaller than the floor** (rule ``not-negligible``; ``point``
and ``strict`` are kept for calibration). ``pass`` means the interval lies within the floor.
The gate and the report both decide with :func:`decide_family`, so they cannot disagree on
the same data (``tests/unit/test_engine.py`` checks it).

Verdict words: ``regression`` (the candidate is larger: slower, bigger), ``improvement``,
``pass``, ``inconclusive``. :func:`report_word` turns them into the report's words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from analysis.compare import Comparison
from analysis.stats import t_quantile

RULES = ("not-negligible", "point", "strict")
DEFAULT_RULE = "not-negligible"
DEFAULT_ALPHA = 0.05  # the run-level (family-wise) false-alarm rate
DEFAULT_POWER = 0.90
DEFAULT_FLOOR = 0.05


class RuleError(ValueError):
    """An unknown rule or an out-of-range level."""


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (Holm, Scand. J. Stat. 1979); NaN stays NaN.

    ``p_adj[(i)] = max_{j ≤ i} min(1, (m − j) · p[(j)])`` over the m finite p-values sorted
    ascending; a test is significant at family-wise level α when ``p_adj < α``.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return out
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def decide(comparison: Comparison, floor: float, alpha: float = DEFAULT_ALPHA, *,
           rule: str = DEFAULT_RULE, floor_only: bool = False) -> tuple[str, str]:
    """(verdict, reason) for one comparison; uses ``p_adjusted`` when a family set it."""
    if rule not in RULES:
        raise RuleError(f"unknown gate rule {rule!r}; known: {', '.join(RULES)}")
    upper, lower = 1.0 + floor, 1.0 / (1.0 + floor)
    c = comparison
    if floor_only:
        if not math.isfinite(c.ratio):
            return "inconclusive", "no finite ratio of medians"
        if c.ratio > upper:
            return "regression", f"ratio {c.ratio:.3f} > {upper:.3f} (floor only, no noise model)"
        if c.ratio < lower:
            return "improvement", f"ratio {c.ratio:.3f} < {lower:.3f} (floor only, no noise model)"
        return "pass", f"ratio {c.ratio:.3f} within the floor (floor only, no noise model)"
    if not (math.isfinite(c.ratio_ci_low) and math.isfinite(c.ratio_ci_high)):
        why = c.note or "no finite interval"
        return "inconclusive", f"{why}; ratio {c.ratio:.3f}" if math.isfinite(c.ratio) else why
    p = c.p_adjusted if math.isfinite(c.p_adjusted) else c.p_value
    significant = math.isfinite(p) and p < alpha
    shown = "p_holm" if math.isfinite(c.p_adjusted) else "p"
    interval = (f"ratio {c.ratio:.3f} [{c.ratio_ci_low:.3f}, {c.ratio_ci_high:.3f}], "
                f"{shown}={p:.2g}, {c.n_baseline} vs {c.n_candidate} processes ({c.method})")
    if significant and c.ratio_ci_low > 1.0 and _beyond(rule, c.ratio, c.ratio_ci_low,
                                                         c.ratio_ci_high, upper):
        return "regression", f"larger: {interval}"
    if significant and c.ratio_ci_high < 1.0 and _beyond(rule, 1 / c.ratio, 1 / c.ratio_ci_high,
                                                          1 / c.ratio_ci_low, upper):
        return "improvement", f"smaller: {interval}"
    if lower <= c.ratio_ci_low and c.ratio_ci_high <= upper:
        return "pass", f"within ±{floor:.1%}: {interval}"
    return "inconclusive", (f"neither a significant change beyond the floor nor shown within "
                            f"±{floor:.1%}: {interval}")


def _beyond(rule: str, ratio: float, ci_low: float, ci_high: float, upper: float) -> bool:
    """Whether a significant change (ratio > 1 here) is large enough under ``rule``."""
    if rule == "strict":
        return ci_low > upper
    if rule == "point":
        return ratio > upper
    return ci_high > upper


def decide_family(comparisons: Sequence[Comparison | None], floors: Sequence[float],
                  alpha: float = DEFAULT_ALPHA, *, rule: str = DEFAULT_RULE,
                  floor_only: Sequence[bool] | None = None,
                  ) -> list[tuple[Comparison | None, str, str]]:
    """Decide every comparison of one family with Holm-adjusted p-values.

    Floor-only comparisons are not tests and stay out of the family. Returns, per input,
    (comparison with ``p_adjusted`` set, verdict, reason); None inputs give
    (None, "inconclusive", "nothing compared").
    """
    if not 0.0 < alpha < 1.0:
        raise RuleError(f"alpha={alpha!r} must lie in (0, 1); use e.g. 0.05")
    only = list(floor_only) if floor_only is not None else [False] * len(comparisons)
    tested = [i for i, c in enumerate(comparisons) if c is not None and not only[i]]
    adjusted = holm([comparisons[i].p_value for i in tested])  # type: ignore[union-attr]
    out: list[tuple[Comparison | None, str, str]] = []
    lookup = dict(zip(tested, adjusted, strict=True))
    for i, c in enumerate(comparisons):
        if c is None:
            out.append((None, "inconclusive", "nothing compared"))
            continue
        if i in lookup:
            c = replace(c, p_adjusted=float(lookup[i]))
        verdict, reason = decide(c, floors[i], alpha, rule=rule, floor_only=only[i])
        out.append((c, verdict, reason))
    return out


def family_size(comparisons: Sequence[Comparison | None],
                floor_only: Sequence[bool] | None = None) -> int:
    """How many tests a family holds (the m of Holm)."""
    only = list(floor_only) if floor_only is not None else [False] * len(comparisons)
    return sum(1 for c, f in zip(comparisons, only, strict=True)
               if c is not None and not f and math.isfinite(c.p_value))


def detectable_change(se_log: float, df: float, alpha: float = DEFAULT_ALPHA,
                      power: float = DEFAULT_POWER) -> float:
    """The smallest relative change found with ``power`` at two-sided level ``alpha``.

    ``MDE ≈ exp((t_{1−α/2} + t_{power}) · SE) − 1`` on the log scale (normal quantiles when
    df is infinite); NaN when the SE is unknown. Pass α/m to state it for a family of m.
    """
    if not (math.isfinite(se_log) and se_log >= 0) or not (df > 0):
        return math.nan
    z = t_quantile(1.0 - alpha / 2.0, df) + t_quantile(power, df)
    return math.exp(z * se_log) - 1.0


def comparison_mde(comparison: Comparison, alpha: float = DEFAULT_ALPHA,
                   power: float = DEFAULT_POWER) -> float:
    """:func:`detectable_change` for a comparison's own SE and df."""
    return detectable_change(comparison.se_log, comparison.df, alpha, power)


REPORT_WORDS = {"regression": "slower", "improvement": "faster"}


def report_word(verdict: str) -> str:
    """The report's word for a verdict on a time (variant against baseline)."""
    return REPORT_WORDS.get(verdict, "no clear difference")
