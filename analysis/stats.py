"""Robust one-sample statistics: bootstrap medians, percentile intervals, summaries.

Step times are skewed and carry outliers (a GC pause, a frequency change), so summaries are
medians with percentile-bootstrap intervals and a robust CV. These describe the steps of one
case; comparisons between cases are made on per-process summaries (:mod:`analysis.compare`),
because steps of one process are not independent samples.

Bootstrap distributions of the median are drawn exactly without building resamples
(:func:`bootstrap_medians`), so a million-step report costs seconds. Every random draw
comes from a seeded ``numpy.random.Generator``: the same inputs give the same numbers.

The t and normal quantiles come from ``scipy.special`` (:func:`t_quantile`,
:func:`t_two_sided_p`): importing ``scipy.stats`` costs about 2 s of CPU (it parses the
docstrings of every distribution), which every ``harness`` command that compares would pay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import bdtrc, chdtrc, digamma, fdtrc, gammaln, ndtri, polygamma, stdtr, stdtrit

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
_CHUNK_CELLS = 4_000_000  # resample indices per chunk: caps memory at ~16 MB
MAD_TO_SIGMA = 1.4826  # MAD x this estimates the standard deviation of a normal sample


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (normal when infinite)."""
    return float(ndtri(q)) if math.isinf(df) else float(stdtrit(df, q))


def t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value of a t statistic: ``2 · P(T > |t|)``."""
    return float(2.0 * stdtr(df, -abs(t)))


def trim_mean(values: npt.ArrayLike, proportion: float) -> float:
    """Mean after cutting ``int(proportion · n)`` values from each end (as ``scipy.stats``)."""
    data = np.sort(np.asarray(values, dtype=float))
    cut = int(proportion * data.size)
    return float(data[cut:data.size - cut].mean()) if data.size > 2 * cut else math.nan


def _trigamma_inverse(x: float) -> float:
    """The y with ``trigamma(y) = x`` (Newton's method as in Smyth 2004, limma)."""
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = float(polygamma(1, y))
        step = tri * (1.0 - tri / x) / float(polygamma(2, y))
        y += step
        if -step / y < 1e-8:
            break
    return y


def variance_prior(variances: npt.ArrayLike, dfs: npt.ArrayLike) -> tuple[float, float]:
    """(s0², d0): a scaled-χ² prior fitted to several tests' sample variances (Smyth 2004).

    The empirical-Bayes step of limma's moderated t (Smyth, "Linear models and empirical
    Bayes methods for assessing differential expression", Stat. Appl. Genet. Mol. Biol.
    2004): the log variances' mean and excess spread give the prior's scale and degrees of
    freedom; each test then uses ``(d0 s0² + d s²) / (d0 + d)`` on ``d0 + d`` df. ``d0`` is
    infinite when the variances spread no more than sampling alone makes them (they share one
    value), and small when they truly differ. Needs at least two positive variances.
    """
    s2, d = np.asarray(variances, dtype=float), np.asarray(dfs, dtype=float)
    keep = np.isfinite(s2) & (s2 > 0) & np.isfinite(d) & (d > 0)
    s2, d = s2[keep], d[keep]
    if s2.size < 2:
        return math.nan, math.nan
    e = np.log(s2) - digamma(d / 2.0) + np.log(d / 2.0)
    mean = float(e.mean())
    excess = float(np.var(e, ddof=1) - np.mean(polygamma(1, d / 2.0)))
    if excess <= 0:
        return math.exp(mean), math.inf
    d0 = 2.0 * _trigamma_inverse(excess)
    return math.exp(mean + float(digamma(d0 / 2.0)) - math.log(d0 / 2.0)), d0


#: Variances a moderation needs: with fewer, their spread says too little about how far they
#: agree, and each test keeps its own variance.
MIN_MODERATED = 4
#: A variance above this upper-tail probability of the fitted prior is an outlier: a noisier
#: test, which keeps its own variance instead of borrowing its quieter neighbours'.
OUTLIER_P = 0.01


def moderated_variances(variances: npt.ArrayLike, dfs: npt.ArrayLike,
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(posterior variances, their df) of several tests: limma's moderated variances, robust.

    Each test's ``(d0 s0² + d s²) / (d0 + d)`` on ``d0 + d`` df (never more than the pooled
    df of the tests moderated together), with ``(s0², d0)`` from :func:`variance_prior`.
    Guarded two ways, because a handful of variances fits ``d0`` poorly (it comes out
    infinite half the time even when they agree) and full pooling would lend a truly noisier
    test its quieter neighbours' spread: fewer than :data:`MIN_MODERATED` usable variances
    are not moderated; a variance beyond the upper :data:`OUTLIER_P` tail of the prior fitted
    to the *others* keeps its own value and df, and the prior is fitted without the outliers
    (after limma's robust option, Phipson et al., Ann. Appl. Stat. 2016). A test with no df
    of its own takes the prior.
    """
    s2 = np.asarray(variances, dtype=float)
    d = np.asarray(dfs, dtype=float)
    post, post_df = s2.copy(), d.copy()
    ok = np.isfinite(s2) & (s2 > 0) & np.isfinite(d) & (d > 0)
    if ok.sum() < MIN_MODERATED:
        return post, post_df
    outlier = np.zeros(s2.shape, dtype=bool)
    for i in np.flatnonzero(ok):  # each against the prior of the others (leave one out)
        others = ok.copy()
        others[i] = False
        s0_i, d0_i = variance_prior(s2[others], d[others])
        if math.isfinite(s0_i):
            ratio = s2[i] / s0_i
            upper = chdtrc(d[i], d[i] * ratio) if math.isinf(d0_i) else fdtrc(d[i], d0_i, ratio)
            outlier[i] = upper < OUTLIER_P
    inner = ok & ~outlier
    if inner.sum() < MIN_MODERATED:
        return post, post_df
    s0, d0 = variance_prior(s2[inner], d[inner])
    cap = float(d[inner].sum())
    for i in np.flatnonzero(inner | (np.isfinite(d) & (d == 0))):
        if not math.isfinite(s0):
            continue
        if math.isinf(d0):
            post[i], post_df[i] = s0, cap
        else:
            own = d[i] * s2[i] if d[i] > 0 else 0.0
            post[i], post_df[i] = (d0 * s0 + own) / (d0 + d[i]), min(d0 + d[i], cap)
    return post, post_df


def clean(values: npt.ArrayLike) -> np.ndarray:
    """Finite float64 values as a 1-D array (NaN/inf are dropped: they are not samples)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


def _sorted_finite(values: npt.ArrayLike) -> np.ndarray:
    return np.sort(clean(values))


_CHUNK_CELLS = 4_000_000  # resample indices per chunk: caps memory at ~16 MB


def _sorted_finite(values: np.ndarray) -> np.ndarray:
    data = np.sort(np.asarray(values, dtype=np.float64))
    return data[np.isfinite(data)]


def bootstrap_medians_resampled(values: npt.ArrayLike, n_boot: int = DEFAULT_RESAMPLES,
                                rng: np.random.Generator | None = None) -> np.ndarray:
    """Medians of ``n_boot`` explicit resamples (with replacement): the textbook bootstrap.

    Costs ``n_boot × n`` draws; kept as the reference :func:`bootstrap_medians` is tested
    against. Since the data are sorted, only the middle order statistics of the resampled
    *indices* are needed (``np.partition``).
    """
    data = _sorted_finite(values)
    n = data.size
    if n <= 1:
        return np.full(n_boot, data[0] if n else np.nan)
    rng = rng if rng is not None else np.random.default_rng(0)
    lo_k, hi_k = (n - 1) // 2, n // 2
    out = np.empty(n_boot)
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n), dtype=np.int32)
        part = np.partition(idx, [lo_k, hi_k] if lo_k != hi_k else [lo_k], axis=1)
        out[start:start + rows] = (data[part[:, lo_k]] + data[part[:, hi_k]]) / 2.0
    return out


def bootstrap_medians(values: npt.ArrayLike, n_boot: int = DEFAULT_RESAMPLES,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """Medians of ``n_boot`` bootstrap resamples of ``values``, drawn exactly in O(n + n_boot).

    Same distribution as :func:`bootstrap_medians_resampled` without building the resamples:
    with the data sorted, a resample's median is fixed by how many draws fall at or below
    each order statistic, and ``N_j`` (draws with index ≤ j) is Binomial(n, j/n). So the
    k-th smallest resampled index ``L`` has ``P(L ≤ j) = P(N_j ≥ k)`` and is drawn by
    inverting that CDF. For even n the median also needs the (k+1)-th, ``U``: ``U = L`` unless
    exactly k draws are ≤ L, in which case the other n−k draws are uniform above L and ``U``
    is L plus the minimum of n−k uniform draws on {1..n−L}. This makes a 5,000-sample
    case cost milliseconds instead of a tenth of a second, which is what lets a
    million-step report finish in seconds.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r} must be >= 1; use e.g. 2000")
    data = _sorted_finite(values)
    n = data.size
    if n <= 1:
        return np.full(n_boot, data[0] if n else np.nan)
    rng = rng if rng is not None else np.random.default_rng(0)
    k = n // 2 if n % 2 == 0 else (n + 1) // 2  # 1-based rank of the (lower) median
    j = np.arange(1, n + 1, dtype=np.float64)
    cdf = bdtrc(k - 1, n, j / n)  # P(Binomial(n, j/n) ≥ k) = P(L <= j)
    cdf[-1] = 1.0
    lower = np.minimum(np.searchsorted(cdf, rng.random(n_boot), side="left"), n - 1)
    if n % 2 == 1:
        return data[lower]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_choose = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)
        log_joint = (log_choose + (n - k) * np.log((n - j) / n) + k * np.log(j / n)
                     + np.log(-np.expm1(k * np.log((j - 1) / j))))
        p_lower = np.diff(cdf, prepend=0.0)  # P(L = j)
        exactly_k = np.nan_to_num(np.exp(log_joint) / p_lower, nan=0.0, posinf=1.0)
    exactly_k = np.clip(exactly_k, 0.0, 1.0)  # P(N_L = k | L = j)
    above = (n - 1) - lower  # candidates strictly above L (M)
    gap = np.ceil(above * (1.0 - (1.0 - rng.random(n_boot)) ** (1.0 / (n - k))))
    gap = np.clip(gap, 1, np.maximum(above, 1)).astype(np.int64)
    upper = np.where(rng.random(n_boot) < exactly_k[lower], lower + gap, lower)
    return (data[lower] + data[np.minimum(upper, n - 1)]) / 2.0


def percentile_interval(draws: np.ndarray,
                        confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap draws (NaN when there are none)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must lie in (0, 1); use e.g. 0.95")
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)



@dataclass(frozen=True)
class Summary:
    """A sample's robust summary; ``median_ci_*`` is the percentile-bootstrap interval."""

    n: int
    median: float
    median_ci_low: float
    median_ci_high: float
    p10: float
    p90: float
    iqr: float
    mean: float
    std: float
    cv: float
    robust_cv: float
    confidence: float


def summarize(values: npt.ArrayLike, *, n_resamples: int = DEFAULT_RESAMPLES,
              confidence: float = DEFAULT_CONFIDENCE, seed: int = DEFAULT_SEED) -> Summary:
    """Median with bootstrap interval, p10/p90, IQR, CV (std/mean) and robust CV.

    The robust CV is ``1.4826 * MAD / median``: for normal data it estimates the same
    quantity as std/mean, but one outlier barely moves it. Empty input gives NaN fields.
    """
    data = clean(values)
    n = data.size
    if n == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, confidence)
    median = float(np.median(data))
    ci_low, ci_high = percentile_interval(
        bootstrap_medians(data, n_resamples, np.random.default_rng(seed)), confidence)
    p10, q1, q3, p90 = (float(q) for q in np.quantile(data, [0.10, 0.25, 0.75, 0.90]))
    mean = float(np.mean(data))
    std = float(np.std(data, ddof=1)) if n > 1 else 0.0
    mad = float(np.median(np.abs(data - median)))
    return Summary(
        n=n, median=median, median_ci_low=ci_low, median_ci_high=ci_high, p10=p10, p90=p90,
        iqr=q3 - q1, mean=mean, std=std, cv=safe_div(std, mean),
        robust_cv=safe_div(MAD_TO_SIGMA * mad, median), confidence=confidence,
    )


def safe_div(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is zero or not finite."""
    if denominator == 0 or not math.isfinite(denominator):
        return math.nan
    return numerator / denominator
