"""Aggregate stored run results with pandas and render reports (HTML, Markdown, CSV).

Public entry point: :func:`build_report`. Reports read ``results/<run-id>/`` directories
only; they never talk to a device.
"""

from __future__ import annotations

from pathlib import Path

from analysis.load import ResultsError, RunData, load_runs
from reports.build import Aggregates, aggregate, aggregate_dirs

FORMATS = ("html", "md", "csv")


def build_report(run_dirs: list[Path], out: Path, fmt: str = "html") -> Path:
    """Aggregate ``run_dirs`` and write a report to ``out``; return the written path.

    ``fmt="html"`` writes one self-contained page at ``out`` (plotly.js inlined, opens
    offline); ``fmt="md"`` writes a Markdown summary at ``out`` (for CI job summaries);
    ``fmt="csv"`` treats ``out`` as a directory and writes every aggregate table there as
    CSV and parquet.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    return render_report(aggregate_dirs([Path(d) for d in run_dirs]), out, fmt)


def render_report(agg: Aggregates, out: Path, fmt: str = "html") -> Path:
    """Write the report of already aggregated runs (see :func:`build_report`)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "md":
        from reports.render_text import render_markdown

        return render_markdown(agg, Path(out))
    if fmt == "csv":
        from reports.render_text import export_tables

        return export_tables(agg, Path(out))
    from plotly.offline import get_plotlyjs

    from reports.plots import all_plots
    from reports.render_html import render_html

    return render_html(agg, Path(out), plots=all_plots(agg), plotly_js=get_plotlyjs())


__all__ = ["Aggregates", "ResultsError", "RunData", "aggregate", "aggregate_dirs",
           "build_report", "load_runs", "render_report"]
