"""How the report's plots read: log-axis ticks, human names for columns, distinct line styles.

- Log axes get explicit ticks at round values (1, 2, 5 × 10ᵏ, or finer over a short range)
  labelled in full, never plotly's minor digits ("3 4 5 … 9 1 2 3").
- Legends and titles name what a column means (``step_ns`` → "whole step").
- Many lines stay distinguishable: a colour per optimizer and a dash per kernel, so 18 loss
  curves need no more than a handful of colours.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from plotly.colors import qualitative

# metric or column -> what a reader calls it
HUMAN_NAMES: dict[str, str] = {
    "step_ns": "whole step", "update_ns": "update phase", "forward_ns": "forward",
    "backward_ns": "backward", "data_ns": "data", "frontend_ns": "front end",
    "zero_grad_ns": "zero grad", "zero_grad": "zero grad", "frontend": "front end",
    "energy_j": "energy", "energy_per_step_j": "energy per step", "peak_rss_bytes": "peak RSS",
    "update_gbs": "update bandwidth", "step_gflops": "step throughput",
}
# mantissas of tick values per decade, coarse to fine
_MANTISSAS: tuple[tuple[float, ...], ...] = (
    (1.0,), (1.0, 3.0), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
    (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
    tuple(round(1.0 + 0.1 * i, 1) for i in range(90)),
)
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
PALETTE = qualitative.D3 + qualitative.Dark2


def human(name: str) -> str:
    """What a reader calls a metric or column (the name itself when it reads well already)."""
    return HUMAN_NAMES.get(name, name.replace("_", " "))


def _fmt(value: float, suffix: str) -> str:
    text = f"{value:.3g}"
    if "e" in text:  # 1e+03 reads worse than 1000 on an axis
        text = f"{value:,.0f}" if value >= 1 else f"{value:.2g}"
    return text + suffix


def log_ticks(values: Iterable[float], suffix: str = "", *, minimum: int = 3,
              maximum: int = 10) -> dict[str, object]:
    """Axis settings for a log axis over ``values``: round tick values, each fully labelled.

    The coarsest set of per-decade mantissas that gives at least ``minimum`` ticks in the
    range is used; ticks are thinned to at most ``maximum``.
    """
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0]
    if not finite:
        return {"type": "log"}
    lo, hi = min(finite), max(finite)
    if hi / lo < 1.02:  # one value: widen a little so the tick has room
        lo, hi = lo / 1.1, hi * 1.1
    ticks: list[float] = []
    for mantissas in _MANTISSAS:
        ticks = [m * 10.0 ** k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
                 for m in mantissas]
        ticks = sorted({float(f"{t:.6g}") for t in ticks if lo <= t <= hi})
        if len(ticks) >= minimum:
            break
    if len(ticks) > maximum:
        step = math.ceil(len(ticks) / maximum)
        ticks = ticks[::step]
    return {"type": "log", "tickmode": "array", "tickvals": ticks,
            "ticktext": [_fmt(t, suffix) for t in ticks], "minor": {"showgrid": False}}


def padded(values: Iterable[float], factor: float = 1.15) -> list[float]:
    """The values' range widened by ``factor`` each side (for a log axis range and its ticks)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v)) and float(v) > 0]
    if not finite:
        return []
    return [min(finite) / factor, max(finite) * factor]


def styles(optimizers: Sequence[str], kernels: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """A colour per optimizer and a dash per kernel, stable for sorted names."""
    colours = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(sorted(set(optimizers)))}
    dashes = {name: DASHES[i % len(DASHES)] for i, name in enumerate(sorted(set(kernels)))}
    return colours, dashes
