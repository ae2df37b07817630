"""``harness calibrate`` on a device: variance components, and the gate's measured error rates.

The pure statistics live in :mod:`analysis` and :mod:`harness.calibrate`; this module plans
the measurement, runs it through :func:`harness.bench.execute`, analyses the stored run and
writes the device's calibration file (:mod:`harness.calibration_store`).

Design. The selected cases run in ``trials + 1`` *blocks*; a block runs every case in
``processes`` agent processes, in shuffled rounds — what one ``harness bench --repeat P`` run
measures. Repeat numbers: block b, process i → ``b·P + i``. From the stored run:

- **variance components** per case and metric (σ_p between processes, σ_s within one, on the
  log scale; :func:`analysis.design.components`) over every process of every block, and the
  costs of a process and of a step → ``calibration.parquet`` and
  ``<results>/calibration/<device>.json``, which ``gate`` and ``bench --detect`` read;
- **A/A trial** k = 1, 2, …: block k − 1 (baseline) against block k (candidate), gated exactly as CI
  gates (:func:`harness.gate.gate`, default metrics, every case in one Holm family, no
  calibration prior). A *run-level false alarm* is a trial with any ``regression`` or
  ``improvement``;
- **slowdown trial** t: the same pair with ``slowdown`` injected *post hoc* into one case's
  recorded ``step_ns`` in the candidate (the case rotates over trials); *detected* when that
  case's ``step_time`` verdict is ``regression``;
- both again **with the calibration prior**, as ``harness gate`` runs when the device file
  exists: each trial's prior comes from the other blocks only (leave-trial-out);
- **paired A/A** (cases that shared processes as replicas of one configuration): per block,
  the replicas' paired comparisons on ``update_ns`` and ``step_ns``, one Holm family per
  block; and ``paired_slowdown`` injected post hoc into one replica's ``update_ns``.

``--from RUN`` analyses a stored calibration run again; ``--from R1 R2 …`` treats stored bench
runs as the blocks (adjacent runs form the A/A pairs: 21 runs give 20 trials) and writes its
tables to ``<results>/calibration/trials-<first>--<last>/``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.compare import compare_steps
from analysis.decide import DEFAULT_ALPHA, decide_family
from analysis.design import Components, components
from analysis.processes import measured as measured_steps
from analysis.processes import process_key
from analysis.relative import medians_of, relative_components, rounds_of
from harness import store
from harness.calibration_store import calibration_path, write_calibration_file
from harness.errors import ConfigError
from harness.gate import DEFAULT_METRICS, gate
from harness.plan import Case
from harness.profiles import Profile
from harness.schedule import DEFAULT_PROCESSES, Unit, schedule, with_replicas

TARGET_FALSE_ALARM, TARGET_DETECTION = 0.05, 0.90
STEP_METRICS = {"step_time": "step_ns", "update_time": "update_ns"}
CONFIG = ("device", "workload", "optimizer", "kernel", "threads", "batch", "dtype")


@dataclass(frozen=True)
class CalibrationSettings:
    """What a calibration measures and how it judges (stored in the run's manifest)."""

    trials: int = 20
    repeats: int = DEFAULT_PROCESSES  # agent processes per case and block (the bench's)
    aa_replicas: int = 0  # in-process twins of every case (paired A/A), as bench --aa-replicas
    isolate: bool = False  # every case in its own process, as bench --isolate
    slowdown: float = 0.10  # injected post hoc into one case's step per slowdown trial
    paired_slowdown: float = 0.03  # injected post hoc into one replica's update
    alpha: float = DEFAULT_ALPHA

    def check(self) -> None:
        """Refuse settings that cannot give a trial."""
        if self.trials < 1:
            raise ConfigError(f"must be ≥ 1, got {self.trials}", key="--trials")
        if self.repeats < 1:
            raise ConfigError(f"must be ≥ 1, got {self.repeats}", key="--processes")
        if self.aa_replicas < 0:
            raise ConfigError(f"must be ≥ 0, got {self.aa_replicas}", key="--aa-replicas")
        for key, value in (("--slowdown", self.slowdown),
                           ("--paired-slowdown", self.paired_slowdown)):
            if not 0.0 < value <= 10.0:
                raise ConfigError(f"must be in (0, 10], got {value}", key=key)
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"must lie in (0, 1), got {self.alpha}", key="--alpha")


@dataclass(frozen=True)
class CalibrationResult:
    run_dir: Path
    table: pd.DataFrame  # one row per (device, case)
    summary: dict[str, Any]  # run-level rates
    failed: bool
    device_file: Path | None = None


def calibration_order(cases: Sequence[Case], settings: CalibrationSettings,
                      seed: int) -> list[Unit]:
    """The bench's schedule (variants sharing processes, twins with ``aa_replicas``) with
    ``(trials + 1) · repeats`` processes per group: block b holds repeats b·P … b·P + P − 1."""
    cases = with_replicas(list(cases), settings.aa_replicas)
    return schedule(cases, (settings.trials + 1) * settings.repeats, seed,
                    isolate=settings.isolate)


def run_calibration(profile: Profile, cases: Sequence[Case], settings: CalibrationSettings, *,
                    out: Path, run_id: str | None, seed: int, suite: str,
                    argv: Sequence[str]) -> CalibrationResult:
    """Measure the calibration run on one device, analyse it, and store the results."""
    from harness.bench import execute, new_plan

    settings.check()
    load_before = os.getloadavg()
    started = time.monotonic()
    plan = new_plan([profile], calibration_order(cases, settings, seed), out=out, run_id=run_id,
                    suite=suite, seed=seed, argv=argv, probe=False,
                    extra={"calibration": dataclasses.asdict(settings)})
    result = execute(plan)
    steps, cases_df, _ = store.load_run(result.run_dir)
    blocks = _blocks_of_one_run(steps, cases_df, settings.repeats)
    meta = {"settings": dataclasses.asdict(settings), "device": profile.name,
            "load_avg_before": list(load_before), "load_avg_after": list(os.getloadavg()),
            "wall_s": round(time.monotonic() - started, 1)}
    return _finish(result.run_dir, blocks, settings, meta, out)


def reanalyse(runs: Sequence[Path], settings: CalibrationSettings | None = None) -> CalibrationResult:
    """Analyse a stored calibration run again, or stored bench runs as the blocks.

    A calibration run keeps its own block size (processes per case and block); the rest of
    ``settings`` (slowdowns, α) applies as given.
    """
    runs = [Path(r) for r in runs]
    settings = settings or CalibrationSettings()
    if len(runs) == 1:
        steps, cases_df, manifest = store.load_run(runs[0])
        if "calibration" not in manifest:
            raise ConfigError(f"{runs[0]} is not a calibration run (its manifest has no "
                              "'calibration' entry); give two or more bench runs to use them "
                              "as blocks, or run `harness calibrate` first", key="--from")
        stored = manifest["calibration"]
        settings = dataclasses.replace(settings, trials=int(stored.get("trials", settings.trials)),
                                       repeats=int(stored.get("repeats", settings.repeats)))
        blocks = _blocks_of_one_run(steps, cases_df, settings.repeats)
        return _finish(runs[0], blocks, settings, {"settings": dataclasses.asdict(settings),
                                                   "from": [str(runs[0])]}, runs[0].parent)
    settings = dataclasses.replace(settings, trials=len(runs) - 1)
    blocks = []
    for run in runs:
        steps, cases_df, _ = store.load_run(run)
        blocks.append((steps, cases_df))
    out_dir = runs[-1].parent / "calibration" / f"trials-{runs[0].name}--{runs[-1].name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    return _finish(out_dir, blocks, settings, {"settings": dataclasses.asdict(settings),
                                               "from": [str(r) for r in runs]}, runs[-1].parent,
                   names=[r.name for r in runs])


Block = tuple[pd.DataFrame, pd.DataFrame]


def _blocks_of_one_run(steps: pd.DataFrame, cases: pd.DataFrame, repeats: int) -> list[Block]:
    """Split a calibration run into its blocks by repeat number."""
    block_of_steps = steps["repeat"].astype(int) // repeats
    block_of_cases = cases["repeat"].astype(int) // repeats
    return [(steps[block_of_steps == b], cases[block_of_cases == b])
            for b in sorted(set(block_of_cases))]


def _finish(run_dir: Path, blocks: list[Block], settings: CalibrationSettings,
            meta: dict[str, Any], results_dir: Path, *,
            names: Sequence[str] | None = None) -> CalibrationResult:
    table, summary, cal = analyse(blocks, settings, names=names)
    write_calibration(run_dir, table, {**meta, "run_level": summary})
    all_cases = pd.concat([c for _, c in blocks], ignore_index=True)
    failed = bool((all_cases["status"] != "ok").any()) if "status" in all_cases else False
    device_file = None
    if cal["cases"]:
        device_file = write_calibration_file(
            calibration_path(results_dir, cal["device"]), cal["device"], run_dir.name,
            cal["cases"], process_cost_s=cal["process_cost_s"], step_cost_s=cal["step_cost_s"])
    return CalibrationResult(run_dir, table, summary, failed, device_file)


def analyse(blocks: list[Block], settings: CalibrationSettings, *,
            names: Sequence[str] | None = None,
            ) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """(per-case table, run-level rates, calibration-file content) of the blocks.

    ``names``: the blocks' names (the runs of ``calibrate --from``), for the A/A alarms'
    trials; otherwise a block is named by its processes (``processes 12–23``, the ``repeat``
    numbers of a calibration run's steps), or ``block0``, ``block1`` … without them.
    """
    labelled = [(s.assign(run_id=f"block{b}"), c.assign(run_id=f"block{b}"))
                for b, (s, c) in enumerate(blocks)]
    steps = pd.concat([s for s, _ in labelled], ignore_index=True)
    cases = pd.concat([c for _, c in labelled], ignore_index=True)
    names = list(names) if names is not None else [_block_name(c, b) for b, (_, c) in
                                                   enumerate(blocks)]
    alarms: list[dict[str, Any]] = []
    alarms_prior: list[dict[str, Any]] = []
    aa, slow, per_case = _trials(labelled, settings, alarms=alarms, names=names)
    aa_prior, slow_prior, _ = _trials(labelled, settings, with_prior=True, alarms=alarms_prior,
                                      names=names)
    paired = paired_trials(labelled, settings)
    rows, cal_cases = [], {}
    relative = _relative_components(steps)
    apart = _relative_components(steps, pool=False)
    for (device, case_id), group in measured_steps(steps).groupby(["device", "case_id"],
                                                                  sort=True):
        row: dict[str, Any] = {"device": device, "case_id": case_id}
        cal_cases[str(case_id)] = {}
        for metric, column in STEP_METRICS.items():
            if column not in group.columns or not (pd.to_numeric(group[column]) > 0).any():
                continue
            c = components(group, column)
            prefix = "" if metric == "step_time" else "update_"
            row |= {f"{prefix}sigma_p": c.sigma_p, f"{prefix}sigma_s": c.sigma_s}
            cal_cases[str(case_id)][metric] = _entry(c)
            if metric == "step_time":
                row |= {"processes": c.processes, "steps_per_repeat": c.steps_per_process}
            found = relative.get(metric, {}).get(str(case_id))
            if found is not None:  # one variant against its process-mates (analysis.relative)
                own, pooled = found
                row |= {f"{prefix}relative_sigma_p": own.sigma_p,
                        f"{prefix}relative_sigma_s": own.sigma_s}
                alone = apart.get(metric, {}).get(str(case_id), (own, 0))[0]
                cal_cases[str(case_id)][f"{metric}_relative"] = {
                    **_entry(own), "pooled": pooled, "own_sigma_p": alone.sigma_p,
                    "own_sigma_s": alone.sigma_s, "own_sigma_median": alone.sigma_median}
        mine = cases[(cases["device"] == device) & (cases["case_id"] == case_id)]
        stats = per_case.get(str(case_id), {})
        row |= {"repeats_per_side": settings.repeats, "slowdown": settings.slowdown,
                "alpha": settings.alpha, "aa_trials": stats.get("aa", 0),
                "false_alarm_rate": _share(stats.get("alarms", 0), stats.get("aa", 0)),
                "slowdown_trials": stats.get("slow", 0),
                "detection_rate": _share(stats.get("detected", 0), stats.get("slow", 0)),
                "failed_repeats": int((mine["status"] != "ok").sum()),
                "wall_s": float(pd.to_numeric(mine.get("host_wall_ns"), errors="coerce").sum())
                / 1e9 if "host_wall_ns" in mine else math.nan}
        rows.append(row)
    summary = {"trials": len(aa), "false_alarm_rate": _share(sum(aa), len(aa)),
               "slowdown": settings.slowdown, "slowdown_trials": len(slow),
               "detection_rate": _share(sum(slow), len(slow)),
               "slowdown_injection": "post hoc, into the recorded step_ns of one case",
               "false_alarm_rate_with_prior": _share(sum(aa_prior), len(aa_prior)),
               "detection_rate_with_prior": _share(sum(slow_prior), len(slow_prior)),
               "prior": "each trial gated with the variance components of the other blocks "
                        "(leave-trial-out), as a gate with the device's calibration file does",
               "aa_alarms": alarms, "aa_alarms_with_prior": alarms_prior,
               "metrics": list(DEFAULT_METRICS), "alpha": settings.alpha, **paired}
    device = str(cases["device"].iloc[0]) if len(cases) else "local"
    costs = _costs(steps, cases)
    return pd.DataFrame(rows), summary, {"device": device, "cases": cal_cases, **costs}


def _block_name(cases: pd.DataFrame, b: int) -> str:
    """``processes 12–23``: the repeat numbers of a calibration block, which name its
    processes in ``steps.parquet``; ``block{b}`` when the block has none."""
    repeats = (pd.to_numeric(cases["repeat"], errors="coerce").dropna() if "repeat" in cases
               else pd.Series(dtype=float))
    if repeats.empty:
        return f"block{b}"
    return f"processes {int(repeats.min())}–{int(repeats.max())}"


def _entry(c: Components) -> dict[str, float]:
    """A case's components as the device file stores them (``harness.calibration_store``)."""
    return {"sigma_p": c.sigma_p, "sigma_s": c.sigma_s, "sigma_median": c.sigma_median,
            "processes": c.processes, "steps_per_process": c.steps_per_process,
            "sigma_run": c.sigma_run, "runs": c.runs}


def _relative_components(steps: pd.DataFrame, *, pool: bool = True,
                         ) -> dict[str, dict[str, tuple[Components, int]]]:
    """Per step metric and grouped case: the components of its time relative to its
    process-mates, over every process of every block (per device); pooled over the group's
    variants, or each variant's own (``pool=False``)."""
    rows = measured_steps(steps)
    out: dict[str, dict[str, tuple[Components, int]]] = {}
    for metric, column in STEP_METRICS.items():
        for _, per_device in (rows.groupby("device", sort=True) if "device" in rows.columns
                              else [("", rows)]):
            medians = medians_of(per_device, column)
            out.setdefault(metric, {}).update(relative_components(
                medians, rounds_of(per_device, column), list(medians), pool=pool))
    return out


def _priors_without(blocks: list[Block], skip: set[int]) -> Any:
    """``priors(case_id, metric)`` from the variance components of the blocks not in ``skip``
    (the blocks keep their labels, so their spread between runs is measured too), through the
    device file's own reader."""
    from harness.calibration_store import priors_from

    kept = [s for b, (s, _) in enumerate(blocks) if b not in skip]
    if len(kept) < 2:
        return None
    steps = measured_steps(pd.concat(kept, ignore_index=True))
    relative = _relative_components(steps)
    cases: dict[str, dict[str, dict[str, float]]] = {}
    for case_id, group in steps.groupby("case_id", observed=True):
        per = cases.setdefault(str(case_id), {})
        for metric, column in STEP_METRICS.items():
            if column in group.columns:
                per[metric] = _entry(components(group, column))
            found = relative.get(metric, {}).get(str(case_id))
            if found is not None:
                per[f"{metric}_relative"] = {**_entry(found[0]), "pooled": found[1]}
    return priors_from({"cases": cases})


def _trials(blocks: list[Block], settings: CalibrationSettings, *, with_prior: bool = False,
            alarms: list[dict[str, Any]], names: Sequence[str],
            ) -> tuple[list[bool], list[bool], dict[str, dict[str, int]]]:
    """Run-level A/A alarms and slowdown detections over adjacent blocks, and per-case counts.

    ``with_prior``: each trial is gated with the variance components of the other blocks, as
    a gate that finds the device's calibration file does (leave-trial-out, not circular).
    ``alarms`` receives each A/A alarm: its trial (the two blocks' ``names``), case, metric
    and the gate's reason.
    """
    aa: list[bool] = []
    slow: list[bool] = []
    per_case: dict[str, dict[str, int]] = {}
    for t in range(len(blocks) - 1):
        (b_steps, b_cases), (c_steps, c_cases) = blocks[t], blocks[t + 1]
        priors = _priors_without(blocks, {t, t + 1}) if with_prior else None
        result = gate(b_steps, b_cases, c_steps, c_cases, alpha=settings.alpha,
                      allow_missing=True, priors=priors)
        called = [v for v in result.verdicts if v.verdict in ("regression", "improvement")]
        aa.append(bool(called))
        alarms.extend({"trial": t + 1, "baseline": names[t], "candidate": names[t + 1],
                       "case_id": v.case_id, "metric": v.metric, "verdict": v.verdict,
                       "reason": v.reason, "members": list(v.members)} for v in called)
        for case_id in {v.case_id for v in result.verdicts if not v.members}:
            counts = per_case.setdefault(case_id, {"aa": 0, "alarms": 0, "slow": 0,
                                                   "detected": 0})
            counts["aa"] += 1
            counts["alarms"] += any(v.verdict in ("regression", "improvement")
                                    for v in result.verdicts if v.case_id == case_id)
        ids = sorted(set(c_steps["case_id"].astype(str)))
        if not ids:
            continue
        target = ids[t % len(ids)]
        slowed = c_steps.copy()
        hit = slowed["case_id"].astype(str) == target
        slowed["step_ns"] = slowed["step_ns"].astype(float)
        slowed.loc[hit, "step_ns"] *= 1.0 + settings.slowdown
        injected = gate(b_steps, b_cases, slowed, c_cases, alpha=settings.alpha,
                        allow_missing=True, priors=priors)
        found = any(v.case_id == target and v.metric == "step_time"
                    and v.verdict == "regression" for v in injected.verdicts)
        slow.append(found)
        counts = per_case.setdefault(target, {"aa": 0, "alarms": 0, "slow": 0, "detected": 0})
        counts["slow"] += 1
        counts["detected"] += found
    return aa, slow, per_case


def replica_pairs(cases: pd.DataFrame) -> list[tuple[str, str]]:
    """Case pairs that shared processes as replicas of one configuration (paired A/A)."""
    if "group" not in cases.columns:
        return []
    shared = cases[cases["group"].astype(str) != ""]
    pairs = set()
    for _, group in shared.groupby("group"):
        configs = group.drop_duplicates("case_id")
        keys = [c for c in CONFIG if c in configs.columns]
        for _, same in configs.groupby(keys):
            ids = sorted(same["case_id"].astype(str))
            pairs |= {(ids[0], other) for other in ids[1:]}
    return sorted(pairs)


def paired_trials(blocks: list[Block], settings: CalibrationSettings) -> dict[str, Any]:
    """Paired in-process A/A between replicas, and a post-hoc update slowdown, per block."""
    alarms: list[bool] = []
    detected: list[bool] = []
    for b_steps, b_cases in blocks:
        pairs = replica_pairs(b_cases)
        if not pairs:
            continue
        rows = measured_steps(b_steps)
        by_case = {str(k): g for k, g in rows.groupby("case_id", observed=True)}
        comparisons, hit = [], []
        for a, b in pairs:
            for column in ("update_ns", "step_ns"):
                comparisons.append(compare_steps(by_case[a], by_case[b], column))
        decided = decide_family(comparisons, [0.0] * len(comparisons), settings.alpha)
        alarms.append(any(v in ("regression", "improvement") for _, v, _ in decided))
        a, b = pairs[len(detected) % len(pairs)]
        slowed = by_case[b].assign(update_ns=by_case[b]["update_ns"].astype(float)
                                   * (1.0 + settings.paired_slowdown))
        hit = decide_family([compare_steps(by_case[a], slowed, "update_ns")], [0.0],
                            settings.alpha)
        detected.append(hit[0][1] == "regression")
    return {"paired_trials": len(alarms), "paired_false_alarm_rate": _share(sum(alarms),
                                                                            len(alarms)),
            "paired_slowdown": settings.paired_slowdown,
            "paired_detection_rate": _share(sum(detected), len(detected)),
            "paired_note": "replicas of one configuration alternated in shared processes; "
                           "A/A on update_ns and step_ns, one Holm family per block; the "
                           "update slowdown injected post hoc into one replica"}


def _costs(steps: pd.DataFrame, cases: pd.DataFrame) -> dict[str, float]:
    """Seconds per measured step (median) and per process start: the process's host wall less
    the steps it ran (every variant's, when variants shared the process), median over processes."""
    step_s = float(pd.to_numeric(measured_steps(steps)["step_ns"]).median()) / 1e9
    per_process = []
    if "host_wall_ns" in cases.columns:
        ran = (pd.to_numeric(cases["steps"], errors="coerce") + pd.to_numeric(
            cases.get("warmup_steps", 0), errors="coerce")) * (
            (pd.to_numeric(cases["median_step_ns"], errors="coerce") / 1e9).fillna(step_s)
            if "median_step_ns" in cases.columns else step_s)
        frame = pd.DataFrame({"unit": process_key(cases).to_numpy(), "ran": ran.to_numpy(),
                              "wall": pd.to_numeric(cases["host_wall_ns"], errors="coerce") / 1e9})
        per = frame.groupby("unit").agg(wall=("wall", "max"), ran=("ran", "sum"))
        per_process = (per["wall"] - per["ran"]).dropna().tolist()
    process_s = float(np.median(per_process)) if per_process else math.nan
    return {"step_cost_s": step_s, "process_cost_s": max(process_s, 0.0)
            if math.isfinite(process_s) else math.nan}


def _share(hits: int, n: int) -> float:
    return hits / n if n else math.nan


def write_calibration(run_dir: Path, table: pd.DataFrame, meta: dict[str, Any]) -> None:
    """calibration.parquet (the table) and calibration.json (settings, rates, the same rows)."""
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    store.atomic_write(run_dir / "calibration.parquet", buf.getvalue())
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
               for r in table.to_dict("records")]
    store.write_json(run_dir / "calibration.json", {
        **meta, "cases": records,
        "targets": {"false_alarm_rate": TARGET_FALSE_ALARM, "detection_rate": TARGET_DETECTION}})


def format_table(table: pd.DataFrame, summary: dict[str, Any] | None = None) -> str:
    """The calibration as fixed-width text: one line per case, then the run-level rates."""
    def pct(x: Any) -> str:
        return "   n/a" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:6.1%}"

    lines = [f"{'device':<10} {'case':<44} {'procs':>5} {'steps':>5} {'σ_p':>6} {'σ_s':>6} "
             f"{'upd σ_p':>7} {'FA':>6} {'det':>6}"]
    for _, r in table.iterrows():
        lines.append(
            f"{r['device']:<10} {r['case_id']:<44} {int(r.get('processes', 0) or 0):>5} "
            f"{float(r.get('steps_per_repeat', 0) or 0):>5.0f} {pct(r.get('sigma_p'))} "
            f"{pct(r.get('sigma_s'))} {pct(r.get('update_sigma_p')):>7} "
            f"{pct(r.get('false_alarm_rate'))} {pct(r.get('detection_rate'))}")
    lines.append("σ_p: between agent processes, σ_s: between steps of one (log scale); FA: share "
                 "of A/A trials with an alarm on this case; det: share of its slowdown trials "
                 "called regression")
    if summary:
        lines.append(
            f"run level: {summary['trials']} A/A trials, false alarms "
            f"{pct(summary['false_alarm_rate']).strip()} (target ≤ {TARGET_FALSE_ALARM:.0%}); "
            f"{summary['slowdown']:.0%} slowdown of one case's step (post hoc) detected in "
            f"{pct(summary['detection_rate']).strip()} of {summary['slowdown_trials']} "
            f"(target ≥ {TARGET_DETECTION:.0%})")
        if summary.get("false_alarm_rate_with_prior") is not None:
            lines.append(
                f"with the calibration prior (leave-trial-out): false alarms "
                f"{pct(summary['false_alarm_rate_with_prior']).strip()}, detection "
                f"{pct(summary['detection_rate_with_prior']).strip()}")
        for key, how in (("aa_alarms", ""), ("aa_alarms_with_prior", " (with the prior)")):
            for a in summary.get(key) or []:
                lines.append(f"A/A alarm{how}, trial {a['trial']} ({a['baseline']} → "
                             f"{a['candidate']}): {a['case_id']} {a['metric']}: {a['reason']}")
        if summary.get("paired_trials"):
            lines.append(
                f"paired in-process: {summary['paired_trials']} A/A trials, false alarms "
                f"{pct(summary['paired_false_alarm_rate']).strip()}; "
                f"{summary['paired_slowdown']:.0%} update slowdown (post hoc) detected in "
                f"{pct(summary['paired_detection_rate']).strip()}")
    return "\n".join(lines)


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run-level rates a calibration stored."""
    path = run_dir / "calibration.json"
    return json.loads(path.read_text()).get("run_level", {}) if path.is_file() else {}
