"""ONNX Runtime inference after training, in the report: a table per case and a bar chart.

A case run with ``onnx_inference`` stores the study of ``workloads/onnx_infer.py`` in the
cases table as JSON text: a list of rows ``{engine, opt_level, threads, repeats, median_ns,
min_ns, max_abs_diff, ...}``, torch eager beside ONNX Runtime at each graph optimization level.
The speed-up is torch eager's median ÷ the row's median at the same thread count (> 1: ORT is
faster); ``max_abs_diff`` compares ORT's output with torch eager's.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reports import tables as T

COLUMN = "onnx_inference"
CASE_ID: list[str] = ["run_id", "device", "case_id", "workload", "optimizer", "kernel", "batch",
                      "dtype"]
ONNX_COLUMNS: list[str] = [*CASE_ID, "engine", "opt_level", "infer_threads", "repeats",
                           "median_ns", "min_ns", "speedup_vs_eager", "max_abs_diff", "note"]
LEVEL_ORDER: dict[str, int] = {"eager": 0, "disable": 1, "basic": 2, "extended": 3, "all": 4}


def _rows_of(value: Any) -> tuple[list[dict[str, Any]], str]:
    """The stored rows of one case, or an explanation of why they cannot be read."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return [], ""
    try:
        rows = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        return [], f"unreadable onnx_inference JSON ({exc})"
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return [], f"onnx_inference holds {type(rows).__name__}, expected a list of objects"
    return rows, ""


def onnx_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (case, engine, level, threads) of every case that ran the inference study."""
    if COLUMN not in summary.columns:
        return pd.DataFrame(columns=ONNX_COLUMNS)
    out: list[dict[str, Any]] = []
    for _, case in summary.loc[summary[COLUMN].notna()].iterrows():
        rows, problem = _rows_of(case[COLUMN])
        ident = {c: str(case.get(c, "")) for c in CASE_ID}
        if problem:
            out.append({**ident, "note": problem})
            continue
        eager = {r.get("threads"): r.get("median_ns") for r in rows if r.get("engine") == "torch"}
        for r in rows:
            median = pd.to_numeric(r.get("median_ns"), errors="coerce")
            base = pd.to_numeric(eager.get(r.get("threads")), errors="coerce")
            out.append({**ident, "engine": str(r.get("engine", "")),
                        "opt_level": str(r.get("opt_level", "")),
                        "infer_threads": r.get("threads"), "repeats": r.get("repeats"),
                        "median_ns": median, "min_ns": pd.to_numeric(r.get("min_ns"),
                                                                     errors="coerce"),
                        "speedup_vs_eager": base / median if median and median > 0 else np.nan,
                        "max_abs_diff": pd.to_numeric(r.get("max_abs_diff"), errors="coerce"),
                        "note": ""})
    frame = pd.DataFrame(out, columns=ONNX_COLUMNS)
    for col in ("median_ns", "min_ns", "speedup_vs_eager", "max_abs_diff"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    order = frame["opt_level"].map(LEVEL_ORDER).fillna(len(LEVEL_ORDER))
    return (frame.assign(_order=order)
            .sort_values([*CASE_ID, "infer_threads", "_order"], kind="stable")
            .drop(columns="_order").reset_index(drop=True))


TABLE_COLUMNS: list[T.Column] = [
    T.Column("engine", "engine"), T.Column("opt_level", "level"),
    T.Column("infer_threads", "threads"), T.Column("repeats", "repeats"),
    T.Column("median_ns", "median (ms)", T.ms), T.Column("min_ns", "min (ms)", T.ms),
    T.Column("speedup_vs_eager", "speed-up vs torch eager", T.ratio),
    T.Column("max_abs_diff", "max abs diff vs torch", T.pval), T.Column("note", "note"),
]


def case_title(rows: pd.DataFrame) -> str:
    """``device · workload optimizer kernel bN dtype`` of one case's rows (with the run id)."""
    r = rows.iloc[0]
    return (f"{r['device']} · {r['workload']} {r['optimizer']} {r['kernel']} b{r['batch']} "
            f"{r['dtype']} (run {r['run_id']})")


def per_case(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, rows) per case, in table order."""
    return [(case_title(rows), rows)
            for _, rows in frame.groupby(["run_id", "device", "case_id"], sort=False)]


def onnx_bars(frame: pd.DataFrame) -> go.Figure:
    """Median inference time per engine/level/threads, one bar group per case (ms)."""
    fig = go.Figure()
    timed = frame.loc[frame["median_ns"].notna()]
    for title, rows in per_case(timed):
        labels = (rows["engine"].str.replace("onnxruntime", "ORT") + " " + rows["opt_level"]
                  + " t" + rows["infer_threads"].astype(str))
        fig.add_trace(go.Bar(
            x=rows["median_ns"] / 1e6, y=labels, orientation="h", name=title,
            customdata=rows["speedup_vs_eager"],
            hovertemplate="%{y}<br>%{x:.3f} ms (%{customdata:.2f}× vs eager)<extra></extra>"))
    n_bars = timed.groupby(["engine", "opt_level", "infer_threads"]).ngroups
    fig.update_layout(title="Inference after training: median time per engine and level",
                      xaxis_title="ms per batch", barmode="group",
                      height=int(min(max(300, 120 + 26 * n_bars * max(1, len(fig.data))), 1600)),
                      yaxis={"autorange": "reversed", "automargin": True},
                      legend={"orientation": "h", "y": -0.2})
    return fig
