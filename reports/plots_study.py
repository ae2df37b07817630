"""Plotly figures of the optimizer study: loss curves at each optimizer's best lr, and profiles.

The study runs every optimizer at several learning rates and seeds (72 runs for two workloads
is typical); drawing them all gives a legend nobody can read. So the curves show, per
workload, only each optimizer's best lr (:func:`reports.study.best_lr_table`), one thin line
per seed in the optimizer's colour, with one legend entry per optimizer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from reports.plots_style import log_ticks

PROFILE_TITLE = ("Performance profile (Dolan–Moré): share of workloads within τ× of the best")
METRIC_TITLES: dict[str, str] = {"time": "time to target", "steps": "steps to target",
                                 "energy": "energy to target"}
MAX_POINTS = 120  # per seed curve
_PROBLEM = ["run_id", "device", "workload"]


def optimizer_colours(names: list[str]) -> dict[str, str]:
    """One colour per optimizer, the same in every subplot (sorted names, plotly's palette)."""
    palette = qualitative.Plotly
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(set(names)))}


def performance_profile(profile: pd.DataFrame) -> go.Figure:
    """One subplot per metric; per optimizer a step line of ρ(τ) on a log τ axis."""
    frame = profile.copy()
    if "run_id" not in frame.columns:
        frame["run_id"] = ""
    metrics = [m for m in METRIC_TITLES if m in set(frame["metric"])]
    metrics += sorted(set(frame["metric"].astype(str)) - set(metrics))
    fig = make_subplots(rows=1, cols=max(1, len(metrics)),
                        subplot_titles=[METRIC_TITLES.get(m, m) for m in metrics])
    colours = optimizer_colours(list(frame["optimizer"].astype(str)))
    several_runs = frame["run_id"].nunique() > 1
    shown: set[str] = set()
    for col, metric in enumerate(metrics, start=1):
        part = frame.loc[frame["metric"] == metric]
        for (run_id, optimizer), line in part.groupby(["run_id", "optimizer"], sort=True):
            name = f"{optimizer} ({run_id})" if several_runs else str(optimizer)
            line = line.sort_values("tau")
            fig.add_trace(go.Scatter(
                x=line["tau"], y=line["rho"], mode="lines", line_shape="hv", name=name,
                legendgroup=name, showlegend=name not in shown,
                line={"color": colours[str(optimizer)], "width": 2},
                hovertemplate=f"{name}<br>τ %{{x:.3g}}<br>ρ %{{y:.2f}}<extra></extra>"),
                row=1, col=col)
            shown.add(name)
        taus = part["tau"].replace([np.inf, -np.inf], np.nan).dropna()
        fig.update_xaxes(**log_ticks(taus), title="τ (ratio to the best)", row=1, col=col)
        fig.update_yaxes(range=[0, 1.05], title="ρ" if col == 1 else None, row=1, col=col)
    fig.update_layout(title=PROFILE_TITLE, height=420, margin={"t": 90})
    return fig


def _plain_curves(curves: pd.DataFrame) -> pd.DataFrame:
    frame = curves.copy()
    for col in _PROBLEM:
        frame[col] = frame[col].astype(str) if col in frame.columns else ""
    frame["optimizer"] = frame["optimizer"].astype(str)
    if "seed" not in frame.columns:
        frame["seed"] = 0
    return frame


def _fallback_best(curves: pd.DataFrame) -> pd.DataFrame:
    """Without a study summary: the lr with the lowest mean loss over the steps all its runs share.

    Runs stop at the target, so a final loss says little; the mean loss over a common
    step range says which lr trained fastest.
    """
    group = [*_PROBLEM, "optimizer"]
    runs = curves.groupby([*group, "lr", "seed"])["step"].transform("max")
    common = runs.groupby([curves[c] for c in group]).transform("min")
    early = curves.loc[curves["step"] <= common]
    score = (early.groupby([*group, "lr", "seed"])["loss"].mean()
             .groupby([*group, "lr"]).median().reset_index())
    idx = score.groupby(group)["loss"].idxmin()
    return score.loc[idx, [*group, "lr"]].assign(target_loss=np.nan)


def best_curves(curves: pd.DataFrame, best: pd.DataFrame | None) -> pd.DataFrame:
    """The curve rows of each (run, device, workload, optimizer) at its best lr only."""
    frame = _plain_curves(curves)
    if best is None or best.empty:
        chosen = _fallback_best(frame)
    else:
        chosen = _plain_curves(best)[[*_PROBLEM, "optimizer", "lr", "target_loss"]]
    keys = [*_PROBLEM, "optimizer", "lr"]
    return frame.merge(chosen, on=keys, how="inner")


def study_curves(curves: pd.DataFrame, best: pd.DataFrame | None) -> go.Figure:
    """Loss vs step, seconds and joules (when recorded), one row per workload, best lr only."""
    frame = best_curves(curves, best)
    axes = [("step", "step")]
    for col, title in (("elapsed_s", "seconds"), ("energy_j", "joules")):
        if col in frame.columns and frame[col].notna().any():
            axes.append((col, title))
    problems = frame[_PROBLEM].drop_duplicates().sort_values(_PROBLEM).to_records(index=False)
    several = len({(r, d) for r, d, _ in problems}) > 1
    titles = [f"{d} · {w}" if several else str(w) for r, d, w in problems]
    height = max(420, 320 * len(problems))
    fig = make_subplots(rows=max(1, len(problems)), cols=len(axes),
                        vertical_spacing=min(0.3, 90 / height),
                        subplot_titles=[f"{t}: loss vs {a}" for t in titles for _, a in axes])
    colours = optimizer_colours(list(frame["optimizer"]))
    shown: set[str] = set()
    for row, (run_id, device, workload) in enumerate(problems, start=1):
        part = frame.loc[(frame["run_id"] == run_id) & (frame["device"] == device)
                         & (frame["workload"] == workload)]
        for (optimizer, seed), seed_curve in part.groupby(["optimizer", "seed"], sort=True):
            seed_curve = seed_curve.sort_values("step")
            seed_curve = seed_curve.iloc[::max(1, len(seed_curve) // MAX_POINTS)]
            lr = float(seed_curve["lr"].iloc[0])
            for col, (x, _) in enumerate(axes, start=1):
                fig.add_trace(go.Scatter(
                    x=seed_curve[x], y=seed_curve["loss"], mode="lines", name=str(optimizer),
                    legendgroup=str(optimizer), showlegend=str(optimizer) not in shown,
                    line={"color": colours[str(optimizer)], "width": 1.2}, opacity=0.8,
                    hovertemplate=f"{workload} {optimizer} lr {lr:g} seed {seed}<br>"
                                  "%{x:.4g}<br>loss %{y:.4f}<extra></extra>"), row=row, col=col)
                shown.add(str(optimizer))
        target = part["target_loss"].dropna()
        if not target.empty:
            for col in range(1, len(axes) + 1):
                fig.add_hline(y=float(target.iloc[0]), line_dash="dot", line_color="#888",
                              row=row, col=col)
    for col, (_, title) in enumerate(axes, start=1):
        fig.update_xaxes(title=title, row=len(problems), col=col)
    fig.update_yaxes(title="loss", col=1)
    fig.update_layout(title="Optimizer study: loss at each optimizer's best lr (one line per "
                            "seed; dotted: target)", height=height,
                      margin={"t": 90})
    return fig
