"""Markdown summary (for CI job summaries) and CSV + parquet exports of the aggregate tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from reports import tables as T
from reports.build import Aggregates


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def markdown_table(frame: pd.DataFrame, columns: list[T.Column], limit: int = 60) -> str:
    """A GitHub-flavoured Markdown table of the given columns (first ``limit`` rows)."""
    cols = [c for c in columns if c.key in frame.columns]
    if frame.empty or not cols:
        return "_none_\n"
    lines = ["| " + " | ".join(c.title for c in cols) + " |",
             "|" + "|".join("---" for _ in cols) + "|"]
    for record in frame[[c.key for c in cols]].head(limit).to_dict("records"):
        lines.append("| " + " | ".join(_cell(c.fmt(record[c.key])) for c in cols) + " |")
    if len(frame) > limit:
        lines.append(f"\n_{len(frame) - limit} more rows in the HTML report and CSV export._")
    return "\n".join(lines) + "\n"


_SHORT_CMP = [T.Column("device", "device"), T.Column("workload", "workload"),
              T.Column("optimizer", "optimizer"), T.Column("threads", "threads"),
              T.Column("batch", "batch"), T.Column("baseline", "baseline"),
              T.Column("variant", "variant"), T.Column("speedup", "speed-up", T.ratio),
              T.Column("ci_lo", "CI low", T.ratio), T.Column("ci_hi", "CI high", T.ratio),
              T.Column("p_value", "p", T.pval), T.Column("verdict", "verdict")]


_VERDICTS = [T.Column("device", "device"), T.Column("case_id", "case"),
             T.Column("verdict", "verdict")]


def render_markdown(agg: Aggregates, out: Path) -> Path:
    """Write a Markdown summary: the answer, warnings, and the comparison tables."""
    cov = agg.coverage
    parts: list[str] = [f"**{cov.headline()}**", ""] if cov and cov.headline() else []
    parts += ["# On-device training report", ""]
    runs = ", ".join(agg.run_ids())
    parts += [f"Runs: {runs} · {len(agg.summary)} cases · "
              f"{int(agg.summary['n_steps'].sum())} measured steps", "", "## Answer", ""]
    parts += [f"- {h.text}" for h in agg.headlines] or ["- No comparison could be made."]
    if cov is not None and len(cov.unmeasured):
        from reports.coverage import TABLE_COLUMNS

        parts += ["", f"## Cases not measured ({len(cov.unmeasured)})", "",
                  markdown_table(cov.unmeasured, TABLE_COLUMNS)]
    parts += ["", f"## Warnings ({len(agg.warnings)})", "",
              markdown_table(agg.warnings, T.WARNING_COLUMNS)]
    step_kernels = agg.kernels.loc[agg.kernels["metric"] == "step_ns"]
    update_kernels = agg.kernels.loc[agg.kernels["metric"] == "update_ns"]
    sections: list[tuple[str, pd.DataFrame, list[T.Column]]] = [
        ("Kernel variants vs forloop (whole step)", step_kernels, _SHORT_CMP),
        ("Kernel variants vs forloop (update phase)", update_kernels, _SHORT_CMP),
        ("Optimizers vs NAG (whole step)", agg.optimizers, _SHORT_CMP),
        ("Devices and runs (whole step)", agg.devices, _SHORT_CMP),
        ("Optimizer study: best lr per workload", agg.study_best, T.STUDY_BEST_COLUMNS),
        ("Gate calibration", agg.calibration_verdicts, _VERDICTS),
        ("Step time per case", agg.summary, T.CASE_COLUMNS),
    ]
    for title, frame, columns in sections:
        if not frame.empty:
            parts += [f"## {title}", "", markdown_table(frame, columns)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _exportable(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns as strings so parquet accepts mixed values."""
    fixes: dict[str, Callable[[Any], Any]] = {}
    for col in frame.columns:
        if frame[col].dtype == object:
            fixes[col] = lambda s: s.map(lambda v: "" if v is None else str(v))
    return frame.assign(**{c: f(frame[c]) for c, f in fixes.items()})


def export_tables(agg: Aggregates, out_dir: Path) -> Path:
    """Write every aggregate table as ``<name>.csv`` and ``<name>.parquet`` into ``out_dir``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(
            f"CSV export needs a directory but {str(out_dir)!r} is a file; pass a directory path")
    out_dir.mkdir(parents=True, exist_ok=True)
    headlines = pd.DataFrame([{"device": h.device, "workload": h.workload, "table": h.table,
                               "rows": ",".join(map(str, h.rows)), "text": h.text}
                              for h in agg.headlines],
                             columns=["device", "workload", "table", "rows", "text"])
    for name, frame in {**agg.tables(), "headlines": headlines}.items():
        frame = _exportable(frame)
        frame.to_csv(out_dir / f"{name}.csv", index=False)
        frame.to_parquet(out_dir / f"{name}.parquet", index=False)
    return out_dir
