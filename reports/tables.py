"""HTML tables for the report: formatted cells, raw sort keys, one table per aggregate.

Each cell carries its raw value in ``data-sort`` so the inline script sorts numbers as
numbers; the visible text is formatted with units (ms, MiB, ×).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Any, Callable

import pandas as pd
from markupsafe import Markup


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def ms(value: Any) -> str:
    """Nanoseconds shown as milliseconds."""
    return f"{value / 1e6:.3f}" if _finite(value) else "–"


def ratio(value: Any) -> str:
    if _infinite(value):
        return "∞"
    return f"{value:.2f}×" if _finite(value) else "–"


def mib(value: Any) -> str:
    return f"{value / 2**20:.1f}" if _finite(value) else "–"


def pct(value: Any) -> str:
    return f"{value:.1%}" if _finite(value) else "–"


def num(value: Any) -> str:
    if not _finite(value):
        return "–"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def ms_if_any(value: Any) -> str:
    """Nanoseconds as milliseconds, blank when zero (e.g. compile time of an eager variant)."""
    return ms(value) if _finite(value) and value > 0 else ""


def _infinite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isinf(value)


def cost(value: Any) -> str:
    """A cost (steps, seconds, joules) to three significant figures; ∞ for a miss."""
    if _infinite(value):
        return "∞ (missed)"
    return f"{value:.3g}" if _finite(value) else "–"


def yes(value: Any) -> str:
    """A flag shown only when set (``yes``), so a column of mostly-false flags stays quiet."""
    return "yes" if value is True or (isinstance(value, (int, float)) and value == 1) else ""


def pval(value: Any) -> str:
    return f"{value:.2g}" if _finite(value) else "–"


def text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


@dataclass(frozen=True)
class Column:
    """A table column: source field, header (with unit) and cell formatter."""

    key: str
    title: str
    fmt: Callable[[Any], str] = text


ID = [Column("device", "device"), Column("workload", "workload"),
      Column("optimizer", "optimizer"), Column("kernel", "kernel"),
      Column("threads", "threads"), Column("batch", "batch"), Column("dtype", "dtype")]


def _sort_key(value: Any) -> str:
    if _finite(value):
        return repr(float(value))
    return escape(text(value))


WRAP_CHARS = 60  # longer cell text wraps instead of widening the table


def _cell(value: Any, shown: str) -> str:
    wrap = ' class="wrap"' if len(shown) > WRAP_CHARS else ""
    return f'<td data-sort="{_sort_key(value)}"{wrap}>{escape(shown)}</td>'


def with_values(frame: pd.DataFrame, columns: list[Column], keep: int = 0) -> list[Column]:
    """The first ``keep`` columns, and of the rest those with a value in some row.

    A device without a thermometer or battery would otherwise show columns of dashes.
    """
    def has_value(col: Column) -> bool:
        if col.key not in frame.columns:
            return False
        return any(col.fmt(v) not in ("", "–") for v in frame[col.key])

    return columns[:keep] + [c for c in columns[keep:] if has_value(c)]


def html_table(frame: pd.DataFrame, columns: list[Column], table_id: str,
               row_class: Callable[[pd.Series], str] | None = None) -> Markup:
    """A sortable, filterable table (see assets/report.js) of the given columns."""
    cols = [c for c in columns if c.key in frame.columns]
    head = "".join(f'<th data-col="{i}" title="click to sort">{escape(c.title)}</th>'
                   for i, c in enumerate(cols))
    body = []
    records = frame[[c.key for c in cols]].to_dict("records")
    for pos, record in enumerate(records):
        cls = row_class(frame.iloc[pos]) if row_class else ""
        cells = "".join(_cell(record[c.key], c.fmt(record[c.key])) for c in cols)
        body.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    return Markup(
        f'<div class="table-wrap"><input class="filter" type="search" '
        f'placeholder="filter rows…" data-table="{table_id}">'
        f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f'<tbody>{"".join(body)}</tbody></table></div>')


CASE_COLUMNS = ID + [
    Column("model_config", "model"), Column("status", "status"),
    Column("n_processes", "processes"), Column("n_steps", "steps"),
    Column("median_step_ns", "median step (ms)", ms), Column("ci_lo_ns", "CI low (ms)", ms),
    Column("ci_hi_ns", "CI high (ms)", ms), Column("process_min_ns", "process min (ms)", ms),
    Column("process_max_ns", "process max (ms)", ms), Column("p10_ns", "p10 (ms)", ms),
    Column("p90_ns", "p90 (ms)", ms), Column("iqr_ns", "IQR (ms)", ms), Column("cv", "CV", pct),
    Column("final_loss", "final loss", num), Column("warmup_steps", "warm-up steps"),
    Column("warmup_forced", "warm-up forced", yes), Column("compile_ns", "compile (ms)", ms_if_any),
    Column("run_id", "run"),
]
PHASE_TABLE = ID + [Column(f"median_{p}_ns", f"{p} (ms)", ms)
                    for p in ("data", "frontend", "forward", "backward", "update", "zero_grad")] + [
    Column("median_step_ns", "step (ms)", ms)]
COMPARISON_COLUMNS = ID + [
    Column("baseline", "baseline"), Column("variant", "variant"), Column("metric", "metric"),
    Column("baseline_median_ns", "baseline median (ms)", ms),
    Column("variant_median_ns", "variant median (ms)", ms),
    Column("speedup", "speed-up", ratio), Column("ci_lo", "CI low", ratio),
    Column("ci_hi", "CI high", ratio), Column("p_value", "p", pval),
    Column("p_adjusted", "p (Holm)", pval), Column("verdict", "verdict"),
    Column("method", "method"), Column("baseline_processes", "baseline processes"),
    Column("variant_processes", "variant processes"), Column("run_id", "run"),
    Column("variant_case", "variant case"),
]
ENERGY_COLUMNS = ID + [
    Column("energy_source", "source"), Column("energy_per_step_j", "J / step", num),
    Column("energy_j", "total J", num), Column("active_energy_j", "above idle J", num),
    Column("idle_power_w", "idle W", num), Column("avg_power_w", "avg W", num),
    Column("energy_flags", "flagged (not compared)"), Column("run_id", "run"),
]
ENERGY_GAP_COLUMNS = [Column("device", "device"), Column("energy_reason", "why no energy"),
                      Column("cases", "cases"), Column("example_case", "e.g. case"),
                      Column("run_id", "run")]
ENERGY_CMP_COLUMNS = [Column("device", "device"), Column("workload", "workload"),
                      Column("optimizer", "optimizer"), Column("energy_source", "source"),
                      Column("baseline", "baseline"), Column("variant", "variant"),
                      Column("baseline_j", "baseline J/step", num),
                      Column("variant_j", "variant J/step", num),
                      Column("energy_ratio", "energy ratio", ratio)]
MEMORY_COLUMNS = ID + [
    Column("param_bytes", "params (MiB)", mib), Column("state_bytes", "optimizer state (MiB)", mib),
    Column("activation_bytes", "activations (MiB)", mib),
    Column("baseline_rss_bytes", "baseline RSS (MiB)", mib),
    Column("peak_rss_bytes", "peak RSS (MiB)", mib), Column("uss_bytes", "USS (MiB)", mib),
    Column("pss_bytes", "PSS (MiB)", mib),
]
CEILING_COLUMNS = ID + [
    Column("accel", "ran on"), Column("accel_name", "ceilings of"),
    Column("update_gbs", "update GB/s", num), Column("bandwidth_gbs", "bandwidth GB/s", num),
    Column("update_bw_fraction", "of bandwidth", pct),
    Column("step_gflops", "step GFLOP/s", num), Column("matmul_gflops", "matmul GFLOP/s", num),
    Column("step_matmul_fraction", "of matmul", pct),
    Column("update_bytes_per_step", "update bytes / step", num),
    Column("flops_per_step", "FLOPs / step", num),
]
WARNING_COLUMNS = ID + [Column("warning", "warning"), Column("detail", "detail"),
                        Column("source", "found by"), Column("case_id", "case")]
THERMAL_COLUMNS = ID + [
    Column("temp_before_c", "temp before (°C)", num), Column("temp_after_c", "temp after (°C)", num),
    Column("freq_before_khz", "freq before (kHz)", num),
    Column("freq_after_khz", "freq after (kHz)", num), Column("throttled", "throttled", yes),
    Column("throttle_reasons", "throttle evidence"), Column("battery_pct", "battery %", num),
    Column("charging", "charging"), Column("cooldown_s", "cooldown (s)", num),
    Column("cooldown_timed_out", "cooldown timed out", yes),
]
STUDY_BEST_COLUMNS = [
    Column("device", "device"), Column("workload", "workload"), Column("optimizer", "optimizer"),
    Column("target_loss", "target loss", num), Column("lr", "best lr", num),
    Column("lr_at_edge", "lr at grid edge", yes), Column("runs_reached", "reached"),
    Column("runs", "runs"), Column("steps_to_target", "median steps", cost),
    Column("time_to_target_s", "median time (s)", cost),
    Column("time_vs_best", "time vs fastest", ratio),
    Column("energy_to_target_j", "median energy (J)", cost),
    Column("energy_source", "energy source"), Column("run_id", "run"),
]
CORRECTNESS_COLUMNS = ID + [
    Column("status", "status"), Column("correct_checked", "checked", yes),
    Column("correct_ok", "correct"),
    Column("correct_max_rel_diff", "max rel. diff", pval), Column("case_id", "case"),
]


def verdict_class(row: pd.Series) -> str:
    """Row highlight for comparison tables."""
    return {"faster": "good", "slower": "bad", "wrong": "bad", "failed": "bad",
            "process noise": "bad"}.get(
        str(row.get("verdict", "")), "")


def status_class(row: pd.Series) -> str:
    return "" if row.get("status", "ok") == "ok" and bool(row.get("correct_ok", True)) else "bad"
