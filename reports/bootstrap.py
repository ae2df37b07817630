"""Small statistics used by the aggregation: bootstrap medians and Mann–Whitney U.

Why here and not ``harness/stats.py``: ``reports`` reads stored results and must not depend
on the harness (dependencies point harness → reports). The functions are small and pure so
they can be swapped for the harness's versions if both ever need to agree bit for bit.

Bootstrap distributions of the median are kept (not only their intervals) so a ratio of
two medians gets its interval from the same resamples: ratio draws are
``boot(a) / boot(b)`` with independent resamples of the two groups (percentile bootstrap).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _scipy_stats
from scipy.special import gammaln

DEFAULT_BOOT = 1000
CONFIDENCE = 0.95
_CHUNK_CELLS = 4_000_000  # resample indices per chunk: caps memory at ~16 MB


def _sorted_finite(values: np.ndarray) -> np.ndarray:
    data = np.sort(np.asarray(values, dtype=np.float64))
    return data[np.isfinite(data)]


def bootstrap_medians_resampled(values: np.ndarray, n_boot: int = DEFAULT_BOOT,
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


def bootstrap_medians(values: np.ndarray, n_boot: int = DEFAULT_BOOT,
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
    data = _sorted_finite(values)
    n = data.size
    if n <= 1:
        return np.full(n_boot, data[0] if n else np.nan)
    rng = rng if rng is not None else np.random.default_rng(0)
    k = n // 2 if n % 2 == 0 else (n + 1) // 2  # 1-based rank of the (lower) median
    j = np.arange(1, n + 1, dtype=np.float64)
    cdf = _scipy_stats.binom.sf(k - 1, n, j / n)  # P(L <= j)
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


def percentile_interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided percentile interval of bootstrap draws (NaN when there are none)."""
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0 * 100.0
    lo, hi = np.percentile(finite, [tail, 100.0 - tail])
    return float(lo), float(hi)


def mann_whitney_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Mann–Whitney U p-value (scipy); NaN when either side has < 2 samples."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size < 2 or b.size < 2:
        return float("nan")
    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    return float(_scipy_stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
