"""Plotly figures for the report, built from aggregates — never from one point per step.

A run can hold a million step rows; plotting them would make a page nobody can open. So
distributions are box plots from quantiles computed in pandas, loss curves are binned to at
most ``MAX_POINTS`` points per case, and everything else is one mark per case or pair.
Each figure becomes a ``<div>`` that calls ``Plotly.newPlot``; plotly.js itself is inlined
once by the page (see :mod:`reports.render_html`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from markupsafe import Markup
from plotly.subplots import make_subplots

from reports.build import Aggregates
from reports.derived import THERMAL_SENSORS
from reports.onnx import onnx_bars
from reports.plots_study import performance_profile, study_curves
from reports.plots_style import human, log_ticks, padded, styles

MAX_POINTS = 120  # per loss curve
PHASES: tuple[str, ...] = ("data", "frontend", "forward", "backward", "update", "zero_grad")
_CONFIG = {"displaylogo": False, "responsive": True,
           "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
_TEMPLATE = "plotly_white"
_TOP_LEGEND = {"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1.0, "xanchor": "right",
               "traceorder": "normal"}
_BEFORE_AFTER = {"before": "#2f5fb3", "after": "#c0392b"}


def case_labels(frame: pd.DataFrame) -> pd.Series:
    """Short, unique label per case row: workload optimizer kernel tN bN dtype [device]."""
    label = (frame["workload"].astype(str) + " " + frame["optimizer"].astype(str) + " "
             + frame["kernel"].astype(str) + " t" + frame["threads"].astype(str) + " b"
             + frame["batch"].astype(str) + " " + frame["dtype"].astype(str))
    if frame["run_id"].nunique() > 1:
        label = label + " @" + frame["device"].astype(str) + "/" + frame["run_id"].astype(str)
    return unique_labels(label, frame["case_id"].astype(str))


def unique_labels(label: pd.Series, case_id: pd.Series) -> pd.Series:
    """Labels made unique where several cases share one (a study's lr × seed grid, repeats).

    Plotly puts equal category labels on one row, stacking or overlaying different cases, so a
    repeated label gains the end of its case id (e.g. ``h249baed4-T0.1-s0``: the
    hyper-parameter digest, target and seed; ``r3``: the repetition), or the whole case id when
    that is not enough.
    """
    dup = label.duplicated(keep=False)
    if not dup.any():
        return label
    tail = case_id.str.extract(r"-(h[0-9a-f]{6,}.*|T[\d.e+-]+-s\d+.*|s\d+|r\d+)$", expand=False)
    fixed = label.where(~dup, label + " · " + tail.fillna(case_id))
    still = fixed.duplicated(keep=False)
    return fixed.where(~still, label + " · " + case_id)


def _height(rows: int, per_row: int = 22, base: int = 140) -> int:
    return int(min(max(360, base + per_row * rows), 6000))


def to_div(fig: go.Figure, div_id: str) -> Markup:
    """The figure as an embeddable ``<div>`` (no plotly.js included)."""
    top = max(50, fig.layout.margin.t or 0)  # subplot titles need room below the title
    fig.update_layout(template=_TEMPLATE, margin={"l": 10, "r": 10, "t": top, "b": 40})
    html = pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config=_CONFIG, default_height=f"{fig.layout.height or 420}px")
    return Markup(f'<div class="plot" data-plot="{div_id}">{html}</div>')


def distributions(summary: pd.DataFrame) -> go.Figure:
    """Step-time box per case: box = IQR, line = median, whiskers = p10/p90 (ms)."""
    s = summary.loc[summary["n_steps"] > 0]
    fig = go.Figure(go.Box(
        y=case_labels(s), q1=s["p25_ns"] / 1e6, median=s["median_step_ns"] / 1e6,
        q3=s["p75_ns"] / 1e6, lowerfence=s["p10_ns"] / 1e6, upperfence=s["p90_ns"] / 1e6,
        orientation="h", name="step time", boxpoints=False, marker_color="#2f5fb3"))
    fig.update_layout(title="Step time per case (box: IQR, whiskers: p10–p90)",
                      xaxis_title="step time (ms)", height=_height(len(s)), showlegend=False,
                      yaxis={"autorange": "reversed", "automargin": True})
    return fig


def phases(summary: pd.DataFrame) -> go.Figure:
    """Stacked median phase times per case (ms)."""
    s = summary.loc[summary["n_steps"] > 0]
    labels = case_labels(s)
    fig = go.Figure()
    for phase in PHASES:
        values = s[f"median_{phase}_ns"] / 1e6
        if values.fillna(0).eq(0).all():
            continue
        fig.add_trace(go.Bar(y=labels, x=values, name=human(phase), orientation="h"))
    fig.update_layout(barmode="stack", title="Median time per phase", xaxis_title="ms",
                      height=_height(len(s)), yaxis={"autorange": "reversed", "automargin": True},
                      legend=_TOP_LEGEND)
    return fig


def forest_labels(c: pd.DataFrame) -> pd.Series:
    """What each comparison row holds fixed and what it varies, in a few words."""
    setting = " t" + c["threads"].astype(str) + " b" + c["batch"].astype(str)
    wl = c["workload"].astype(str)
    by_kind = {
        "kernel": c["device"].astype(str) + " " + wl + " " + c["optimizer"].astype(str) + ": ",
        "optimizer": c["device"].astype(str) + " " + wl + ": ",
        "device": wl + " " + c["optimizer"].astype(str) + " " + c["kernel"].astype(str) + ": ",
    }
    prefix = pd.Series("", index=c.index)
    for kind, text in by_kind.items():
        prefix = prefix.where(c["kind"] != kind, text)
    label = prefix + c["variant"] + " vs " + c["baseline"] + setting
    # one comparison has a row per metric; distinct variant cases sharing a label are told apart
    pairs = pd.DataFrame({"label": label, "case": c["variant_case"].astype(str)})
    distinct = pairs.drop_duplicates()
    if not distinct["label"].duplicated().any():
        return label
    distinct = distinct.assign(fixed=unique_labels(distinct["label"], distinct["case"]))
    return pairs.merge(distinct, on=["label", "case"], how="left")["fixed"].set_axis(c.index)


def forest(comparisons: pd.DataFrame, title: str) -> go.Figure:
    """Speed-up with its 95 % CI per comparison (log axis, 1 = no difference)."""
    c = comparisons.loc[np.isfinite(comparisons["speedup"])]
    label = forest_labels(c)
    fig = go.Figure()
    for metric, frame in c.groupby("metric", sort=True):
        lab = label.loc[frame.index]
        fig.add_trace(go.Scatter(
            x=frame["speedup"], y=lab, mode="markers", name=human(str(metric)),
            error_x={"type": "data", "symmetric": False,
                     "array": frame["ci_hi"] - frame["speedup"],
                     "arrayminus": frame["speedup"] - frame["ci_lo"]},
            customdata=np.stack([frame["ci_lo"], frame["ci_hi"], frame["verdict"]], axis=-1),
            hovertemplate="%{y}<br>speed-up %{x:.3f}× (CI %{customdata[0]:.3f}–"
                          "%{customdata[1]:.3f}×)<br>%{customdata[2]}<extra></extra>"))
    fig.add_vline(x=1.0, line_dash="dash", line_color="#888")
    span = padded([*c["ci_lo"], *c["ci_hi"], *c["speedup"], 1.0], 1.05)
    axis = {**log_ticks(span, "×"), "title": "speed-up (> 1 is faster)"}
    if span:
        axis["range"] = [np.log10(span[0]), np.log10(span[1])]
    fig.update_layout(title=title, xaxis=axis, legend=_TOP_LEGEND,
                      height=_height(label.nunique()),
                      yaxis={"autorange": "reversed", "automargin": True})
    return fig


def binned_loss(steps: pd.DataFrame, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """Median loss per (case, index bin), at most ``max_points`` bins per case.

    Also carries ``elapsed_s`` (cumulative step time at the end of the bin, warm-up included)
    and ``steps_done`` (steps finished by then), so loss can be drawn against time or energy.
    """
    keys = ["run_id", "device", "case_id"] if "device" in steps.columns else ["run_id", "case_id"]
    cols = keys + ["workload", "optimizer", "kernel", "index", "step_ns", "loss"]
    s = steps[cols].sort_values(keys + ["index"])
    s = s.assign(elapsed_s=s.groupby(keys, observed=True)["step_ns"].cumsum() * 1e-9,
                 steps_done=s.groupby(keys, observed=True).cumcount() + 1)
    s = s.loc[np.isfinite(s["loss"])]
    if s.empty:
        return s
    last = s.groupby(keys, observed=True)["index"].transform("max") + 1
    width = np.maximum(1, np.ceil(last / max_points)).astype(np.int64)
    s = s.assign(bin=(s["index"] // width).astype(np.int64))
    binned = s.groupby(keys + ["bin"], observed=True).agg(
        index=("index", "median"), loss=("loss", "median"), elapsed_s=("elapsed_s", "max"),
        steps_done=("steps_done", "max"), workload=("workload", "first"),
        optimizer=("optimizer", "first"), kernel=("kernel", "first"))
    return binned.reset_index()


def loss_curves(steps: pd.DataFrame, energy_frame: pd.DataFrame) -> go.Figure:
    """Loss per case against step, seconds and (where the case has energy) joules.

    One row of panels per workload (their losses have different scales); within a row a colour
    per optimizer and a dash per kernel, one legend entry per optimizer · kernel (a click hides
    it in every panel). Joules = steps finished × the case's energy per step, with its source.
    """
    b = binned_loss(steps)
    keys = ["run_id", "device", "case_id"] if "device" in b.columns else ["run_id", "case_id"]
    energy_keys = [k for k in keys if k in energy_frame.columns]
    per_step = energy_frame.astype({k: str for k in energy_keys}).groupby(energy_keys).agg(
        energy_per_step_j=("energy_per_step_j", "median"), energy_source=("energy_source", "first")
    ) if len(energy_frame) else pd.DataFrame(columns=["energy_per_step_j", "energy_source"])
    sources = sorted(set(per_step["energy_source"]))
    panels = ["step", "seconds"] + ([f"joules ({', '.join(sources)})"] if sources else [])
    workloads = sorted(b["workload"].astype(str).unique()) if len(b) else [""]
    fig = make_subplots(rows=len(workloads), cols=len(panels), shared_xaxes=False,
                        vertical_spacing=min(0.08, 0.5 / max(len(workloads), 1)),
                        subplot_titles=[f"{w}: loss vs {p}" if w else f"loss vs {p}"
                                        for w in workloads for p in panels])
    colours, dashes = styles(list(b["optimizer"].astype(str)), list(b["kernel"].astype(str)))
    several_runs = b["run_id"].nunique() > 1
    several_devices = "device" in b.columns and b["device"].nunique() > 1
    shown: set[str] = set()
    for _, frame in b.groupby(keys, observed=True, sort=True):
        run_id, case_id = str(frame["run_id"].iloc[0]), str(frame["case_id"].iloc[0])
        optimizer, kernel = str(frame["optimizer"].iloc[0]), str(frame["kernel"].iloc[0])
        where = [run_id] if several_runs else []
        where += [str(frame["device"].iloc[0])] if several_devices else []
        name = f"{optimizer} · {kernel}" + (f" ({', '.join(where)})" if where else "")
        row = workloads.index(str(frame["workload"].iloc[0])) + 1
        xs = [frame["index"], frame["elapsed_s"]]
        key = tuple(str(frame[k].iloc[0]) for k in energy_keys)
        if sources and len(energy_keys) and key in per_step.index:
            xs.append(frame["steps_done"] * float(per_step.loc[key, "energy_per_step_j"]))
        for col, x in enumerate(xs, start=1):
            fig.add_trace(go.Scatter(
                x=x, y=frame["loss"], mode="lines", name=name, legendgroup=name,
                showlegend=name not in shown,
                line={"color": colours[optimizer], "dash": dashes[kernel], "width": 2},
                hovertemplate=f"{case_id}<br>%{{x:.4g}}<br>loss %{{y:.4f}}<extra></extra>"),
                row=row, col=col)
            shown.add(name)
    for row in range(1, len(workloads) + 1):
        fig.update_yaxes(title="loss", row=row, col=1)
        for col, unit in enumerate(("step", "s", "J")[:len(panels)], start=1):
            fig.update_xaxes(title=unit if row == len(workloads) else None, row=row, col=col)
    fig.update_layout(title="Loss per case (binned medians; colour: optimizer, dash: kernel)",
                      height=max(420, 300 * len(workloads)), legend={"title": "optimizer · kernel"})
    return fig


def roofline(ceilings: pd.DataFrame) -> go.Figure:
    """Achieved update GB/s and step GFLOP/s per case, with the probed ceilings as lines."""
    c = ceilings
    labels = case_labels(c)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12, subplot_titles=(
        "optimizer update: GB/s vs stream-triad bandwidth",
        "training step: GFLOP/s vs matmul throughput"))
    for col, (field, ceiling, unit, colour) in enumerate((
            ("update_gbs", "bandwidth_gbs", "GB/s", "#2f5fb3"),
            ("step_gflops", "matmul_gflops", "GFLOP/s", "#d9822b")), start=1):
        fig.add_trace(go.Scatter(x=c[field], y=labels, mode="markers", name=human(field),
                                 marker={"color": colour, "size": 9},
                                 customdata=c[field] / c[ceiling],
                                 hovertemplate="%{y}<br>%{x:.3g} " + unit
                                               + " (%{customdata:.1%} of ceiling)<extra></extra>"),
                      row=1, col=col)
        values = pd.concat([c[field], c[ceiling]]).replace([np.inf, -np.inf], np.nan).dropna()
        values = values[values > 0]
        if not values.empty:
            span = padded(values, 2.0)
            fig.update_xaxes(**log_ticks(span), row=1, col=col, title=unit,
                             range=[np.log10(span[0]), np.log10(span[1])])
        for value in sorted(c[ceiling].dropna().unique()):
            fig.add_vline(x=float(value), line_dash="dash", line_color="#c0392b", row=1, col=col,
                          annotation_text=f"ceiling {value:.3g} {unit}",
                          annotation_position="top left")
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_yaxes(showticklabels=False, row=1, col=2)
    fig.update_layout(title="Placement against the device's ceilings", showlegend=False,
                      height=_height(len(c)))
    return fig


def energy(energy_frame: pd.DataFrame) -> go.Figure:
    """Energy per step per case, one colour per energy source (sources never merged)."""
    fig = go.Figure()
    for source, frame in energy_frame.groupby("energy_source", sort=True):
        fig.add_trace(go.Bar(x=frame["energy_per_step_j"], y=case_labels(frame),
                             orientation="h", name=str(source)))
    fig.update_layout(title="Energy per step", xaxis_title="J / step", barmode="group",
                      height=_height(len(energy_frame)),
                      yaxis={"autorange": "reversed", "automargin": True})
    return fig


def memory(memory_frame: pd.DataFrame) -> go.Figure:
    """Parameters, optimizer state, activations and peak RSS per case (MiB)."""
    labels = case_labels(memory_frame)
    fig = go.Figure()
    for col, name in (("param_bytes", "parameters"), ("state_bytes", "optimizer state"),
                      ("activation_bytes", "activations (peak − baseline)"),
                      ("peak_rss_bytes", "peak RSS")):
        values = memory_frame[col] / 2**20
        if values.notna().any():
            fig.add_trace(go.Bar(x=values, y=labels, orientation="h", name=name))
    mib = [v for col in ("param_bytes", "state_bytes", "activation_bytes", "peak_rss_bytes")
           for v in memory_frame[col].dropna() / 2**20]
    fig.update_layout(title="Memory per case", xaxis={"title": "MiB", **log_ticks(padded(mib))},
                      barmode="group", height=_height(len(memory_frame), per_row=40),
                      yaxis={"autorange": "reversed", "automargin": True}, legend=_TOP_LEGEND)
    return fig


def thermal(thermal_frame: pd.DataFrame) -> go.Figure:
    """Temperature and CPU frequency before and after each case."""
    labels = case_labels(thermal_frame)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("temperature (°C)", "frequency (MHz)"))
    for col, (before, after, scale) in enumerate(
            (("temp_before_c", "temp_after_c", 1.0),
             ("freq_before_khz", "freq_after_khz", 1e-3)), start=1):
        for field, name in ((before, "before"), (after, "after")):
            fig.add_trace(go.Scatter(x=thermal_frame[field] * scale, y=labels, mode="markers",
                                     name=name, legendgroup=name, showlegend=col == 1,
                                     marker={"color": _BEFORE_AFTER[name], "size": 8}),
                          row=1, col=col)
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_yaxes(showticklabels=False, row=1, col=2)
    fig.update_layout(title="Stability: temperature and frequency", height=_height(len(labels)))
    return fig


def all_plots(agg: Aggregates) -> dict[str, Markup]:
    """Every figure the page shows, as embeddable divs keyed by template slot."""
    figures: dict[str, go.Figure] = {}
    if (agg.summary["n_steps"] > 0).any():
        figures["distributions"] = distributions(agg.summary)
        figures["phases"] = phases(agg.summary)
        figures["loss_steps"] = loss_curves(agg.data.steps, agg.energy)
    for name, frame, title in (("forest_kernels", agg.kernels, "Kernel variants vs forloop"),
                               ("forest_optimizers", agg.optimizers, "Optimizers vs NAG"),
                               ("forest_devices", agg.devices, "Devices and runs")):
        if np.isfinite(frame["speedup"]).any():
            figures[name] = forest(frame, title)
    if agg.data.study is not None and not agg.data.study.empty:
        figures["study"] = study_curves(agg.data.study, agg.study_best)
    if not agg.profile.empty:
        figures["profile"] = performance_profile(agg.profile)
    if "median_ns" in agg.onnx and agg.onnx["median_ns"].notna().any():
        figures["onnx"] = onnx_bars(agg.onnx)
    if not agg.ceilings.empty:
        figures["roofline"] = roofline(agg.ceilings)
    if not agg.energy.empty:
        figures["energy"] = energy(agg.energy)
    if not agg.memory.empty:
        figures["memory"] = memory(agg.memory)
    if agg.thermal[THERMAL_SENSORS].notna().any().any():
        figures["thermal"] = thermal(agg.thermal)
    return {name: to_div(fig, f"plot-{name}") for name, fig in figures.items()}
