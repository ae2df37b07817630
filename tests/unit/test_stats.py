"""Specification of analysis.stats and analysis.compare: summaries and comparisons of cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analysis.compare import Prior, compare_paired, compare_units
from analysis.stats import (
    bootstrap_medians,
    percentile_interval,
    summarize,
    t_quantile,
    t_two_sided_p,
    trim_mean,
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
    assert np.all(bootstrap_medians([4.0], n_boot=10) == 4.0)


def test_bootstrap_rejects_zero_resamples() -> None:
    with pytest.raises(ValueError, match="n_boot=0"):
        bootstrap_medians([1.0, 2.0], n_boot=0)


def test_percentile_interval_rejects_a_confidence_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="confidence=95"):
        percentile_interval(np.ones(3), confidence=95)


# --- the distributions, from scipy.special (scipy.stats costs 2 s to import) ----------------

@pytest.mark.parametrize("df", [1.0, 2.5, 7.0, 60.0, math.inf])
def test_t_quantiles_and_p_values_match_scipy_stats(df: float) -> None:
    from scipy import stats

    for q in (0.5, 0.9, 0.975, 0.99875):
        expected = stats.norm.ppf(q) if math.isinf(df) else stats.t.ppf(q, df)
        assert t_quantile(q, df) == pytest.approx(expected, rel=1e-9)
    for t in (0.0, -0.7, 2.1, 9.0):
        expected = 2 * (stats.norm.sf(abs(t)) if math.isinf(df) else stats.t.sf(abs(t), df))
        assert t_two_sided_p(t, df) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("n", [1, 4, 5, 11, 20])
def test_trimmed_mean_matches_scipy_stats(n: int) -> None:
    from scipy import stats

    values = np.random.default_rng(n).standard_t(3, n)
    assert trim_mean(values, 0.2) == pytest.approx(stats.trim_mean(values, 0.2))


# --- unpaired comparisons of per-process summaries ---------------------------------------------

def test_ratio_is_the_ratio_of_geometric_means_of_the_process_medians() -> None:
    c = compare_units([1.0, 4.0], [2.0, 8.0, 32.0])
    assert c.ratio == pytest.approx(8.0 / 2.0) and (c.n_baseline, c.n_candidate) == (2, 3)
    assert (c.baseline_min, c.baseline_max, c.candidate_min, c.candidate_max) == (1, 4, 2, 32)


def test_welch_interval_matches_scipys_welch_t_on_the_logs() -> None:
    from scipy import stats

    b, c = lognormal(5, 1, cv=0.05), lognormal(7, 2, scale=1.1, cv=0.08)
    result = compare_units(b, c)
    expected = stats.ttest_ind(np.log(c), np.log(b), equal_var=False)
    assert result.method == "welch" and result.p_value == pytest.approx(expected.pvalue)


def test_ratio_interval_covers_the_true_ratio_in_most_trials() -> None:
    covered = 0
    for seed in range(200):
        c = compare_units(lognormal(6, 2 * seed), lognormal(6, 2 * seed + 1, scale=1.1))
        covered += c.ratio_ci_low <= 1.1 <= c.ratio_ci_high
    assert covered >= 180  # nominal 95 %: 190 of 200


def test_identical_sides_have_a_large_p_and_an_interval_around_one() -> None:
    c = compare_units(lognormal(8, 1), lognormal(8, 2))
    assert c.p_value > 0.05 and c.ratio_ci_low < 1.0 < c.ratio_ci_high


def test_constant_equal_sides_give_p_one_and_a_point_interval() -> None:
    c = compare_units([5.0, 5.0, 5.0], [5.0, 5.0])
    assert (c.p_value, c.ratio_ci_low, c.ratio_ci_high) == (1.0, 1.0, 1.0)


def test_comparison_with_an_empty_side_is_nan_not_an_error() -> None:
    c = compare_units([], [1.0, 2.0])
    assert math.isnan(c.ratio) and math.isnan(c.p_value) and c.n_baseline == 0


def test_one_process_per_side_has_no_interval_without_a_prior() -> None:
    c = compare_units([1.0], [1.2])
    assert c.method == "none" and math.isnan(c.ratio_ci_low) and c.ratio == pytest.approx(1.2)
    with_prior = compare_units([1.0], [1.2], prior=Prior(0.05, 20))
    assert with_prior.method == "prior" and with_prior.ratio_ci_low < 1.2 < with_prior.ratio_ci_high


def test_one_process_on_one_side_borrows_the_other_sides_spread() -> None:
    c = compare_units(lognormal(6, 1), [1.05])
    assert c.method == "student" and c.df == 5 and c.ratio_ci_low < c.ratio < c.ratio_ci_high


# --- paired comparisons --------------------------------------------------------------------------

def test_paired_interval_uses_the_processes_as_units() -> None:
    c = compare_paired([0.10, 0.12, 0.08, 0.11])
    assert c.method == "paired" and c.df == 3 and c.ratio == pytest.approx(math.exp(0.1025))
    assert c.ratio_ci_low < c.ratio < c.ratio_ci_high


def test_paired_with_one_process_says_it_is_within_process_only() -> None:
    c = compare_paired([0.1], pairs=[0.09, 0.11, 0.1, 0.12])
    assert c.method == "within-process" and "inside one process only" in c.note


def test_bootstrap_medians_follow_the_distribution_of_naively_resampled_medians() -> None:
    data = lognormal(101, seed=9, cv=0.2)
    rng = np.random.default_rng(10)
    naive = np.median(data[rng.integers(0, data.size, size=(4000, data.size))], axis=1)
    fast = bootstrap_medians(data, 4000, np.random.default_rng(11))
    assert np.quantile(fast, [0.025, 0.5, 0.975]) == pytest.approx(
        np.quantile(naive, [0.025, 0.5, 0.975]), rel=0.01)
