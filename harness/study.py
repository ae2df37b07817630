"""The optimizer study: time-, steps- and energy-to-target, ranked with performance profiles.

A study is a suite with a ``[study]`` table (``harness/suites/study.toml``): the suite's
matrix names workloads × optimizers × kernels; the table adds the seeds, a learning-rate
grid per optimizer and a target loss per workload. :func:`study_cases` expands it into one
case per workload × optimizer × lr × seed, each stopping when the agent's smoothed loss
(EMA 0.8, ``workloads.agent``) reaches the workload's target, or at the step budget.

:func:`analyze_study` turns a finished run into three tables beside the run's own:

- ``study.parquet``: loss curves (the columns ``reports.plots.study`` draws);
- ``study_summary.parquet``: per run of a configuration, reached or not and the cost to get
  there — a miss is ``reached = False`` with NaN costs, never a large number;
- ``performance_profile.parquet``: Dolan–Moré profiles (metric, optimizer, tau, rho) over the
  workloads, each optimizer at its best lr, misses as an infinite ratio (as AlgoPerf ranks).

The analysis functions are pure pandas so that they can be checked on tables with known
answers; only :func:`analyze_study` reads and writes files.
"""

from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from analysis.study import best_lr_table
from harness import store
from harness.errors import ConfigError
from harness.plan import Case, Filters, Suite, expand, load_suite

STUDY_SUITE = "study"
_STUDY_KEYS = {"seeds", "lr", "target_loss"}
CURVE_COLUMNS = ("run_id", "device", "case_id", "repeat", "workload", "optimizer", "lr", "seed",
                 "step", "loss", "elapsed_s", "energy_j")
SUMMARY_COLUMNS = ("run_id", "device", "case_id", "repeat", "workload", "optimizer", "lr", "seed",
                   "target_loss", "status", "reached", "steps_to_target", "time_to_target_s",
                   "energy_to_target_j", "energy_source", "steps_run", "final_loss")
# profile metric name -> summary column; a problem's value is the median over seeds
METRICS = {"time": "time_to_target_s", "steps": "steps_to_target", "energy": "energy_to_target_j"}
PROBLEM = ("device", "workload")
KEY = ["device", "case_id", "repeat"]  # one run of one configuration (repeat: --repeat rounds)


@dataclass(frozen=True)
class StudyDef:
    """A study: the suite's matrix plus seeds, an lr grid per optimizer, a target per workload."""

    suite: Suite
    seeds: tuple[int, ...]
    lrs: Mapping[str, tuple[float, ...]]
    targets: Mapping[str, float]


@dataclass(frozen=True)
class StudyResult:
    """The analysed study of one run: curves, per-run summary, best lrs, profiles."""

    run_dir: Path
    curves: pd.DataFrame
    summary: pd.DataFrame
    best: pd.DataFrame
    profile: pd.DataFrame


def _number(value: Any, source: str, key: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {value!r}", source=source, key=key)
    if positive and value <= 0:
        raise ConfigError(f"must be > 0, got {value!r}", source=source, key=key)
    return float(value)


def load_study(name_or_path: str = STUDY_SUITE) -> StudyDef:
    """Load a study definition (a suite with a ``[study]`` table) by suite name or path."""
    suite = load_suite(name_or_path)
    src = suite.source
    table = suite.data.get("study")
    if not isinstance(table, dict):
        raise ConfigError("a study needs a [study] table with seeds, lr and target_loss",
                          source=src, key="study")
    for key in table:
        if key not in _STUDY_KEYS:
            raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(sorted(_STUDY_KEYS))}",
                              source=src, key=f"study.{key}")
    seeds = table.get("seeds", [0])
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"expected a non-empty list of distinct integers ≥ 0, got {seeds!r}",
                          source=src, key="study.seeds")
    lrs: dict[str, tuple[float, ...]] = {}
    for name, grid in _table(table, "lr", src).items():
        if not isinstance(grid, list) or not grid:
            raise ConfigError(f"expected a non-empty list of learning rates, got {grid!r}",
                              source=src, key=f"study.lr.{name}")
        lrs[name] = tuple(_number(v, src, f"study.lr.{name}", positive=True) for v in grid)
    targets = {name: _number(v, src, f"study.target_loss.{name}", positive=False)
               for name, v in _table(table, "target_loss", src).items()}
    return StudyDef(suite, tuple(seeds), lrs, targets)


def _table(table: Mapping[str, Any], key: str, src: str) -> dict[str, Any]:
    value = table.get(key)
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"expected a table [study.{key}] of name = value, got {value!r}",
                          source=src, key=f"study.{key}")
    return value


def study_cases(study: StudyDef, filters: Filters | None = None, *,
                default_threads: int = 1) -> list[Case]:
    """One case per workload × optimizer (× kernel …) × lr in its grid × seed, with its target.

    The suite's matrix and the CLI filters are expanded by :func:`harness.plan.expand`;
    ``--seed`` replaces the study's seeds with that one seed.
    """
    filters = filters or Filters()
    seeds = (filters.seed,) if filters.seed is not None else study.seeds
    cases: list[Case] = []
    for base in expand(study.suite, filters, default_threads=default_threads):
        if base.optimizer not in study.lrs:
            raise ConfigError(f"optimizer {base.optimizer!r} has no learning-rate grid; add "
                              f"{base.optimizer} = [...] to [study.lr]",
                              source=study.suite.source, key=f"study.lr.{base.optimizer}")
        if base.workload not in study.targets:
            raise ConfigError(f"workload {base.workload!r} has no target loss; add "
                              f"{base.workload} = <loss> to [study.target_loss]",
                              source=study.suite.source, key=f"study.target_loss.{base.workload}")
        for lr in study.lrs[base.optimizer]:
            for seed in seeds:
                cases.append(dataclasses.replace(
                    base, hparams={**base.hparams, "lr": lr}, seed=seed,
                    target_loss=study.targets[base.workload]))
    return cases


def case_settings(manifest: Mapping[str, Any]) -> pd.DataFrame:
    """Per device × planned case (the manifest's lists): its lr, seed, target and warm-up."""
    from workloads.catalog import OPTIMIZERS

    devices = [d["name"] for d in manifest.get("devices", [])] or [""]
    rows = []
    for data in manifest.get("cases", []):
        case = Case(**data)
        lr = case.hparams.get("lr", OPTIMIZERS.get(case.optimizer).defaults.get("lr"))
        rows += [{"device": device, "case_id": case.case_id, "repeat": case.repeat,
                  "workload": case.workload,
                  "optimizer": case.optimizer, "lr": float(lr), "seed": case.seed,
                  "target_loss": case.target_loss, "warmup": case.warmup} for device in devices]
    columns = ["device", "case_id", "repeat", "workload", "optimizer", "lr", "seed",
               "target_loss", "warmup"]
    return pd.DataFrame(rows, columns=columns)


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    """String and categorical columns as plain objects, so merges and groupbys behave alike.

    Tables written before repeats existed get ``repeat`` 0.
    """
    out = df.copy()
    if "repeat" not in out:
        out["repeat"] = 0
    out["repeat"] = out["repeat"].astype("int64")
    for col in out.columns:
        if isinstance(out[col].dtype, (pd.CategoricalDtype, pd.StringDtype)):
            out[col] = out[col].astype(object)
    return out


def loss_curves(steps: pd.DataFrame, cases: pd.DataFrame, settings: pd.DataFrame) -> pd.DataFrame:
    """Loss against step, seconds and joules per case, over measured (non-warm-up) steps.

    ``elapsed_s`` is the cumulative step time; ``energy_j`` spreads the case's measured-window
    energy over its steps in proportion to step time (constant power), NaN without a meter.
    """
    steps, cases = _plain(steps), _plain(cases)
    measured = steps.loc[~steps["warmup"].astype(bool)].sort_values([*KEY, "index"])
    meta = settings[["case_id", "lr", "seed"]].drop_duplicates("case_id")
    frame = measured.merge(meta, on="case_id", how="inner")
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in CURVE_COLUMNS})
    frame["step"] = frame["index"].astype("int64")
    cumulative_ns = frame.groupby(KEY)["step_ns"].cumsum()
    total_ns = frame.groupby(KEY)["step_ns"].transform("sum")
    frame["elapsed_s"] = cumulative_ns / 1e9
    energy = _case_energy(cases)
    frame = frame.merge(energy, on=KEY, how="left")
    frame["energy_j"] = frame["case_energy_j"] * cumulative_ns / total_ns
    return frame[list(CURVE_COLUMNS)].reset_index(drop=True)


def _case_energy(cases: pd.DataFrame) -> pd.DataFrame:
    """(device, case_id, repeat, case_energy_j, energy_source); NaN where no meter gave one."""
    out = cases[KEY].copy()
    energy = cases["energy_j"] if "energy_j" in cases else pd.Series(np.nan, index=cases.index)
    source = (cases["energy_source"] if "energy_source" in cases
              else pd.Series("none", index=cases.index)).fillna("none").astype(str)
    known = source.ne("none") & pd.to_numeric(energy, errors="coerce").notna()
    out["case_energy_j"] = pd.to_numeric(energy, errors="coerce").where(known)
    out["energy_source"] = source.where(known, "none")
    return out


def summarize(curves: pd.DataFrame, cases: pd.DataFrame, settings: pd.DataFrame) -> pd.DataFrame:
    """One row per planned case: reached or not, and steps/seconds/joules to the target.

    A case reached its target when it finished (status ok) and the agent recorded a
    ``reached_step`` ≥ 0. Misses — including failed or never-run cases — have reached False and
    NaN costs. Steps count every optimizer step up to and including the one that reached the
    target; seconds and joules are the curve's values at that step.
    """
    cases = _plain(cases)
    energy = _case_energy(cases).drop(columns="case_energy_j")
    keep = [c for c in ("run_id", *KEY, "status", "reached_step") if c in cases]
    frame = _plain(settings).merge(cases[keep], on=KEY, how="left").merge(energy, on=KEY, how="left")
    frame["status"] = frame["status"].fillna("missing")  # planned, never recorded
    if "reached_step" not in frame:
        frame["reached_step"] = -1
    reached_step = pd.to_numeric(frame["reached_step"], errors="coerce").fillna(-1).astype("int64")
    frame["reached"] = frame["status"].eq("ok") & reached_step.ge(0)
    frame["steps_to_target"] = (reached_step + 1).where(frame["reached"]).astype("float64")
    at_target = curves.merge(frame.loc[frame["reached"], KEY].assign(
        limit=reached_step[frame["reached"]].to_numpy()), on=KEY)
    at_target = at_target.loc[at_target["step"] <= at_target["limit"]]
    cost = at_target.groupby(KEY)[["elapsed_s", "energy_j"]].max(min_count=1)
    cost = cost.rename(columns={"elapsed_s": "time_to_target_s", "energy_j": "energy_to_target_j"})
    frame = frame.merge(cost.reset_index(), on=KEY, how="left")
    frame.loc[frame["reached"], "time_to_target_s"] = frame.loc[
        frame["reached"], "time_to_target_s"].fillna(0.0)  # reached within the warm-up
    last = curves.sort_values("step").groupby(KEY).agg(
        steps_run=("step", "size"), final_loss=("loss", "last")).reset_index()
    frame = frame.merge(last, on=KEY, how="left")
    frame["steps_run"] = frame["steps_run"].fillna(0).astype("int64")
    frame["energy_source"] = frame["energy_source"].fillna("none")
    frame["run_id"] = frame["run_id"].fillna(cases["run_id"].iloc[0] if len(cases) else "")
    return frame[list(SUMMARY_COLUMNS)].sort_values(
        ["device", "workload", "optimizer", "lr", "seed", "repeat"]).reset_index(drop=True)


BEST_COLUMNS = ["device", "workload", "optimizer", "lr", "lr_at_edge", "runs", "runs_reached",
                *METRICS.values(), "energy_source"]


def best_lr(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (device, workload, optimizer): the best lr and its median costs.

    The rule is :func:`analysis.study.best_lr_table`'s (the report uses the same): most runs
    (seeds) reaching the target, then the lower median time-to-target, then the smaller lr;
    a miss counts as +inf in the medians. ``lr_at_edge`` flags a best lr at either end of
    its grid: the grid may be too narrow to have found the optimum.
    """
    if summary.empty:
        return pd.DataFrame(columns=BEST_COLUMNS)
    table = best_lr_table(summary)
    table["lr_at_edge"] = table["lr_at_edge"].astype(bool)
    return table[BEST_COLUMNS].reset_index(drop=True)


def performance_profile(best: pd.DataFrame, metric: str = "time",
                        taus: Sequence[float] | None = None) -> pd.DataFrame:
    """Dolan–Moré profile: rho_s(tau) = share of problems where cost_s ≤ tau · min_s cost.

    A problem is a (device, workload); each optimizer enters with its best lr. A miss, or an
    optimizer not run on a problem, is an infinite ratio. Problems where the metric is unknown
    (NaN) for some optimizer are left out, and for energy so are problems where some optimizer's
    energy is not measured (an estimate is a model of time, not a measurement). Without
    ``taus`` the grid is log-spaced from 1 to past the largest finite ratio, plus every finite
    ratio, so the steps are exact.
    """
    column = METRICS[metric]
    if metric == "energy":
        measured = best.get("energy_source", pd.Series("none", index=best.index)).astype(str)
        best = best.assign(**{column: best[column].where(measured.str.startswith("measured:"))})
    table = best.pivot_table(index=list(PROBLEM), columns="optimizer", values=column,
                             aggfunc="first", dropna=False)
    optimizers = sorted(best["optimizer"].unique())
    table = table.reindex(columns=optimizers)
    known = best.groupby(list(PROBLEM))[column].apply(lambda v: v.notna().all())
    table = table.loc[known[known].index.intersection(table.index)]
    empty = pd.DataFrame({"metric": pd.Series(dtype=object), "optimizer": pd.Series(dtype=object),
                          "tau": pd.Series(dtype=float), "rho": pd.Series(dtype=float)})
    if table.empty:
        return empty
    values = table.to_numpy(float)
    values = np.where(np.isnan(values), np.inf, values)  # an optimizer not run on a problem
    best_cost = values.min(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(np.isfinite(values), values / best_cost, np.inf)
    finite = ratios[np.isfinite(ratios)]
    if taus is None:
        top = max(2.0, float(finite.max()) * 1.1 if finite.size else 2.0)
        taus = np.unique(np.concatenate([np.geomspace(1.0, top, 33), finite]))
    rows = [{"metric": metric, "optimizer": name, "tau": float(tau),
             "rho": float(np.mean(ratios[:, j] <= tau))}
            for j, name in enumerate(optimizers) for tau in taus]
    return pd.DataFrame(rows, columns=list(empty.columns))


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    store.atomic_write(path, buffer.getvalue())


def analyze_study(run_dir: Path) -> StudyResult:
    """Read a finished study run and write study, study_summary and performance_profile parquet."""
    run_dir = Path(run_dir)
    steps, cases, manifest = store.load_run(run_dir)
    settings = case_settings(manifest)
    if settings.empty:
        raise ConfigError(f"{run_dir}/manifest.json lists no cases; analyse a run written by "
                          "`harness bench --study optimizers`", key="RUN")
    curves = loss_curves(steps, cases, settings)
    summary = summarize(curves, cases, settings)
    best = best_lr(summary)
    profile = pd.concat([performance_profile(best, m) for m in METRICS], ignore_index=True)
    _write_parquet(run_dir / "study.parquet", curves)
    _write_parquet(run_dir / "study_summary.parquet", summary)
    _write_parquet(run_dir / "performance_profile.parquet", profile)
    return StudyResult(run_dir, curves, summary, best, profile)


def format_result(result: StudyResult) -> str:
    """A plain-text table for the terminal: best lr per workload/optimizer, and wins (rho at 1)."""
    lines = [f"{'device':<10} {'workload':<14} {'optimizer':<10} {'lr':>9} {'reached':>8} "
             f"{'steps':>7} {'time s':>8} {'energy J':>9}"]
    for _, r in result.best.iterrows():
        edge = "*" if r["lr_at_edge"] else " "
        lines.append(f"{r['device']:<10} {r['workload']:<14} {r['optimizer']:<10} {r['lr']:>8.3g}{edge} "
                     f"{r['runs_reached']:>4}/{r['runs']:<3} {r['steps_to_target']:>7.4g} "
                     f"{r['time_to_target_s']:>8.3g} {r['energy_to_target_j']:>9.3g}")
    if result.best["lr_at_edge"].any():
        lines.append("* best lr at the edge of its grid: widen the grid in [study.lr]")
    profile = result.profile
    for metric in METRICS:
        part = profile[profile["metric"] == metric]
        if part.empty:
            continue
        at_one = part[part["tau"] == 1.0].set_index("optimizer")["rho"]
        lines.append(f"{metric}-to-target, share of workloads won (rho at tau=1): "
                     + ", ".join(f"{name} {rho:.2f}" for name, rho in at_one.items()))
    return "\n".join(lines)
