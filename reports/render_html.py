"""Render aggregates into one self-contained HTML page (no network needed to open it).

CSS, the table script and plotly.js are inlined once; plots are ``<div>``s that call
``Plotly.newPlot`` on the already-loaded library.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from html import escape
from importlib import resources
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from reports import calibration as C
from reports import coverage as V
from reports import onnx as O
from reports import tables as T
from reports.build import Aggregates


def _asset(name: str) -> str:
    return resources.files("reports").joinpath("assets", name).read_text(encoding="utf-8")


def _md_code(value: str) -> Markup:
    """Escape a sentence and turn `backticks` into <code> elements."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(value)))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reports", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.Undefined,
    )
    env.filters["md_code"] = _md_code
    return env


def _tables(agg: Aggregates) -> dict[str, Markup]:
    kernels = agg.kernels
    probes = agg.data.probes.astype({"run_id": str})
    probe_cols = [T.Column("run_id", "run"), T.Column("device", "device"),
                  T.Column("accel", "accelerator"), T.Column("accel_name", "name"),
                  T.Column("dtype", "matmul dtype"),
                  T.Column("threads", "threads"), T.Column("bandwidth_gbs", "bandwidth GB/s", T.num),
                  T.Column("bandwidth_kernel", "bandwidth kernel"),
                  T.Column("matmul_gflops", "matmul GFLOP/s", T.num)]
    return {
        "cases": T.html_table(agg.summary, T.CASE_COLUMNS, "t-cases", T.status_class),
        "phases": T.html_table(agg.summary.loc[agg.summary["n_steps"] > 0], T.PHASE_TABLE,
                               "t-phases"),
        "kernels": T.html_table(kernels, T.COMPARISON_COLUMNS, "t-kernels", T.verdict_class),
        "optimizers": T.html_table(agg.optimizers, T.COMPARISON_COLUMNS, "t-optimizers",
                                   T.verdict_class),
        "devices": T.html_table(agg.devices, T.COMPARISON_COLUMNS, "t-devices", T.verdict_class),
        "energy": T.html_table(agg.energy, T.ENERGY_COLUMNS, "t-energy"),
        "energy_vs_baseline": T.html_table(agg.energy_vs_baseline, T.ENERGY_CMP_COLUMNS,
                                           "t-energy-cmp"),
        "memory": T.html_table(agg.memory, T.MEMORY_COLUMNS, "t-memory"),
        "ceilings": T.html_table(agg.ceilings, T.CEILING_COLUMNS, "t-ceilings"),
        "warnings": T.html_table(agg.warnings, T.WARNING_COLUMNS, "t-warnings"),
        "thermal": _thermal_table(agg),
        "correctness": T.html_table(agg.correctness, T.CORRECTNESS_COLUMNS, "t-correctness",
                                    T.status_class),
        "probes": T.html_table(probes, probe_cols, "t-probes"),
        "not_measured": T.html_table(agg.coverage.unmeasured if agg.coverage else agg.summary[:0],
                                     V.TABLE_COLUMNS, "t-not-measured", V.ROW_CLASS),
        "energy_gaps": T.html_table(agg.energy_gaps, T.ENERGY_GAP_COLUMNS, "t-energy-gaps"),
        "study_best": T.html_table(agg.study_best, T.STUDY_BEST_COLUMNS, "t-study-best"),
        "calibration": T.html_table(agg.calibration, C.calibration_columns(agg.calibration),
                                    "t-calibration"),
        "calibration_verdicts": T.html_table(agg.calibration_verdicts, C.VERDICT_TABLE,
                                             "t-calibration-verdicts", C.verdict_class),
    }


def _thermal_table(agg: Aggregates) -> Markup:
    """The stability table, or one sentence when the devices gave a single reading or none.

    A table with one value column beside the case's identity columns is a list of dashes and
    one number per row; a sentence with its range says the same in one line.
    """
    columns = T.with_values(agg.thermal, T.THERMAL_COLUMNS, len(T.ID))
    values = columns[len(T.ID):]
    if len(values) > 1:
        return T.html_table(agg.thermal, columns, "t-thermal")
    missing = "no temperature, frequency, throttling or battery readings on these devices"
    if not values:
        return Markup(f'<p class="note" id="t-thermal-none">{escape(missing.capitalize())}.</p>')
    col = values[0]
    data = pd.to_numeric(agg.thermal[col.key], errors="coerce").dropna()
    what = (f"median {col.fmt(float(data.median()))}, range {col.fmt(float(data.min()))}–"
            f"{col.fmt(float(data.max()))} over {len(data)} cases" if len(data) else "set on some cases")
    return Markup(f'<p class="note" id="t-thermal-one">Only <b>{escape(col.title)}</b> was recorded '
                  f"({escape(what)}); {escape(missing)}.</p>")


def _onnx_tables(agg: Aggregates) -> list[dict[str, Markup | str]]:
    """One table per case that ran the ONNX Runtime inference study."""
    if agg.onnx.empty:
        return []
    columns = O.TABLE_COLUMNS[:-1] + T.with_values(agg.onnx, O.TABLE_COLUMNS[-1:])  # note
    return [{"title": title, "table": T.html_table(rows, columns, f"t-onnx-{i}")}
            for i, (title, rows) in enumerate(O.per_case(agg.onnx))]


def _manifests(agg: Aggregates) -> list[dict[str, str]]:
    return [{"run_id": str(m.get("run_id", "?")),
             "text": json.dumps(m, indent=2, sort_keys=True, default=str, ensure_ascii=False)}
            for m in agg.data.manifests]


def render_html(agg: Aggregates, out: Path, plots: dict[str, Markup] | None = None,
                plotly_js: str = "", title: str = "On-device training report") -> Path:
    """Write the report page to ``out`` and return its path."""
    summary = agg.summary
    cov = agg.coverage
    nothing = bool(cov and cov.nothing_measured)
    context = {
        "title": f"Nothing measured — {title}" if nothing else title,
        "nothing_measured": nothing,
        "coverage_line": cov.headline() if cov else "",
        "n_not_measured": len(cov.unmeasured) if cov else 0,
        "css": Markup(_asset("report.css")),
        "js": Markup(_asset("report.js")),
        "plotly_js": Markup(plotly_js),
        "run_ids": agg.run_ids(),
        "devices": sorted(summary["device"].unique()) or sorted(
            {str(d.get("name", "?")) for m in agg.data.manifests for d in m.get("devices", [])}),
        "n_cases": len(summary),
        "n_steps": int(summary["n_steps"].sum()),
        "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "headlines": agg.headlines,
        "n_comparisons": len(agg.kernels) + len(agg.optimizers) + len(agg.devices),
        "n_boot": agg.n_boot,
        "alpha": agg.call_rule.alpha,
        "floor_pct": f"{agg.call_rule.floor:.0%}",
        "noisy_pct": f"{agg.warning_rule.noisy_cv:.0%}",
        "n_warnings": len(agg.warnings),
        "has_devices": not agg.devices.empty,
        "has_energy": not agg.energy.empty,
        "has_thermal": not agg.thermal.empty,
        "has_kernels": not agg.kernels.empty,
        "has_optimizers": not agg.optimizers.empty,
        "has_study": bool(agg.data.study is not None and not agg.data.study.empty)
        or not agg.study_best.empty or not agg.profile.empty,
        "has_study_best": not agg.study_best.empty,
        "has_calibration": not agg.calibration.empty,
        "calibration_targets": C.targets_from(agg.data.calibration_targets),
        "onnx_tables": _onnx_tables(agg),
        "has_energy_gaps": not agg.energy_gaps.empty,
        "tables": _tables(agg),
        "plots": plots or {},
        "manifests": _manifests(agg),
    }
    html = _environment().get_template("report.html.j2").render(**context)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
