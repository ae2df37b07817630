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

DEFAULT_BOOT = 1000
CONFIDENCE = 0.95
_CHUNK_CELLS = 4_000_000  # resample indices per chunk: caps memory at ~16 MB


def bootstrap_medians(values: np.ndarray, n_boot: int = DEFAULT_BOOT,
                      rng: np.random.Generator | None = None) -> np.ndarray:
    """Medians of ``n_boot`` resamples (with replacement) of ``values``.

    Vectorised: indices are drawn for a block of resamples at once and only the middle
    order statistics are found (``np.partition`` on sorted data's indices), so 5,000
    samples × 1,000 resamples takes well under 0.1 s.
    """
    data = np.sort(np.asarray(values, dtype=np.float64))
    data = data[np.isfinite(data)]
    n = data.size
    if n == 0:
        return np.full(n_boot, np.nan)
    if n == 1:
        return np.full(n_boot, data[0])
    rng = rng if rng is not None else np.random.default_rng(0)
    lo_k, hi_k = (n - 1) // 2, n // 2
    out = np.empty(n_boot)
    chunk = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, chunk):
        rows = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n), dtype=np.int32)
        part = np.partition(idx, [lo_k, hi_k] if lo_k != hi_k else [lo_k], axis=1)
        # data is sorted, so the median of data[idx] is data at the median index
        out[start:start + rows] = (data[part[:, lo_k]] + data[part[:, hi_k]]) / 2.0
    return out


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
