"""Specification of harness.stats: robust summaries and ratio-of-medians comparisons."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.stats import (
    bootstrap_medians,
    compare,
    mann_whitney_p,
    percentile_interval,
    summarize,
    widen_for_drift,
)


def lognormal(n: int, seed: int, scale: float = 1.0, cv: float = 0.07) -> np.ndarray:
    return scale * np.random.default_rng(seed).lognormal(0.0, cv, n)


def test_summary_reports_median_quantiles_and_iqr_of_a_known_sample() -> None:
    s = summarize(np.arange(1.0, 102.0))  # 1..101
    assert (s.n, s.median, s.p10, s.p90, s.iqr) == (101, 51.0, 11.0, 91.0, 50.0)


def test_median_interval_contains_the_sample_median() -> None:
    s = summarize(lognormal(300, seed=1))
    assert s.median_ci_low < s.median < s.median_ci_high


def test_median_interval_covers_the_true_median_in_most_trials() -> None:
    covered = 0
    for seed in range(40):
        s = summarize(lognormal(100, seed=seed), n_resamples=500, seed=seed)
        covered += s.median_ci_low <= 1.0 <= s.median_ci_high
    assert covered >= 34  # nominal 95 %: 38 of 40; 34 leaves room for bootstrap slack


def test_same_seed_gives_the_same_interval() -> None:
    data = lognormal(50, seed=3)
    assert summarize(data, seed=7) == summarize(data, seed=7)


def test_robust_cv_ignores_a_single_huge_outlier_that_inflates_the_plain_cv() -> None:
    data = np.append(lognormal(200, seed=4), 100.0)
    s = summarize(data)
    assert s.robust_cv < 0.1 < s.cv


def test_cv_is_std_over_mean() -> None:
    s = summarize([1.0, 2.0, 3.0])
    assert s.cv == pytest.approx(1.0 / 2.0)


def test_empty_and_non_finite_samples_summarise_to_nan() -> None:
    s = summarize([math.nan, math.inf])
    assert s.n == 0 and math.isnan(s.median) and math.isnan(s.median_ci_low)


def test_bootstrap_of_a_single_value_is_that_value() -> None:
    assert np.all(bootstrap_medians([4.0], n_resamples=10) == 4.0)


def test_bootstrap_rejects_zero_resamples() -> None:
    with pytest.raises(ValueError, match="n_resamples=0"):
        bootstrap_medians([1.0, 2.0], n_resamples=0)


def test_percentile_interval_rejects_a_confidence_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="confidence=95"):
        percentile_interval(np.ones(3), confidence=95)


def test_ratio_is_candidate_median_over_baseline_median() -> None:
    c = compare([1.0, 2.0, 3.0], [2.0, 4.0, 60.0])
    assert c.ratio == pytest.approx(4.0 / 2.0)  # the mean of ratios would say 8.67


def test_ratio_interval_covers_the_true_ratio_in_most_trials() -> None:
    covered = 0
    for seed in range(40):
        c = compare(lognormal(100, 2 * seed), lognormal(100, 2 * seed + 1, scale=1.1),
                    n_resamples=500, seed=seed)
        covered += c.ratio_ci_low <= 1.1 <= c.ratio_ci_high
    assert covered >= 34


def test_a_clear_shift_has_a_tiny_mann_whitney_p() -> None:
    assert compare(lognormal(200, 1), lognormal(200, 2, scale=1.1)).p_value < 1e-6


def test_identical_distributions_have_a_large_p_and_an_interval_around_one() -> None:
    c = compare(lognormal(200, 1), lognormal(200, 2))
    assert c.p_value > 0.01 and c.ratio_ci_low < 1.0 < c.ratio_ci_high


def test_all_equal_constant_samples_give_p_one() -> None:
    assert mann_whitney_p([5.0, 5.0, 5.0], [5.0, 5.0]) == 1.0


def test_comparison_with_an_empty_side_is_nan_not_an_error() -> None:
    c = compare([], [1.0, 2.0])
    assert math.isnan(c.ratio) and math.isnan(c.p_value) and c.n_baseline == 0


def test_drift_widens_the_ratio_interval_on_both_sides_around_the_same_ratio() -> None:
    c = compare(lognormal(200, 1), lognormal(200, 2))
    wide = widen_for_drift(c, 0.03)
    assert wide.ratio == c.ratio
    assert wide.ratio_ci_low < c.ratio_ci_low and wide.ratio_ci_high > c.ratio_ci_high


def test_zero_drift_leaves_the_comparison_unchanged() -> None:
    c = compare(lognormal(50, 1), lognormal(50, 2))
    assert widen_for_drift(c, 0.0) == c


def test_bootstrap_medians_follow_the_distribution_of_naively_resampled_medians() -> None:
    data = lognormal(101, seed=9, cv=0.2)
    rng = np.random.default_rng(10)
    naive = np.median(data[rng.integers(0, data.size, size=(4000, data.size))], axis=1)
    fast = bootstrap_medians(data, 4000, np.random.default_rng(11))
    assert np.quantile(fast, [0.025, 0.5, 0.975]) == pytest.approx(
        np.quantile(naive, [0.025, 0.5, 0.975]), rel=0.01)
