"""``harness calibrate`` on a device: measure A/A and injected-slowdown trials in one run.

The pure statistics live in :mod:`harness.calibrate`; this module plans the measurement,
runs it through :func:`harness.bench.execute`, and turns the stored run into per-case rates.

Design (why it holds on noisy hardware). Every case runs ``trials + 1`` *blocks* of
``repeats`` plain repetitions, and as many repetitions with a known busy-wait
(``Case.slowdown``, e.g. 5 % of each step). Within a round a case's plain and slowed
repetitions run back to back, in ABBA order from round to round, so slow drift (heat, a
neighbour's load) hits both alike. Repetition numbers: plain ``2n``, slowed ``2n + 1`` for
the n-th round. Trials, each gated with :func:`harness.gate.gate` exactly as CI gates:

- **A/A trial** b: plain block b (baseline) against plain block b + 1 (candidate), adjacent
  in time. A *false alarm* is any call of a difference: ``regression`` or ``improvement``
  (``pass`` and ``inconclusive`` are not alarms).
- **Slowdown trial** b: plain block b against slowed block b; *detected* when ``regression``.

Also per case, *within-run* rates: each plain repetition's steps split into interleaved
halves (:func:`harness.calibrate.aa_pairs` of one run), gated as A/A and with the slowdown
injected into one half: what the gate could do if drift between processes did not exist
(the best a within-process A/B design could reach).

Each repetition is one agent process, so a block's repetitions count as separate runs for
the gate's ``run_drift`` term. Rates are given twice: with the gate's defaults (no drift
allowance), and with the drift measured here (:func:`harness.calibrate.estimate_run_drift`
over the plain repetitions) passed as ``run_drift``.
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

import pandas as pd

from harness import store
from harness.bench import execute, new_plan
from harness.calibrate import aa_pairs, estimate_run_drift, run_trials
from harness.errors import ConfigError
from harness.gate import DEFAULT_ALPHA, DEFAULT_FLOORS, DEFAULT_RULE, METRICS
from harness.plan import Case, shuffled
from harness.profiles import Profile
from harness.stats import summarize

MDE_EFFECTS = (0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3)
TARGET_FALSE_ALARM, TARGET_DETECTION = 0.05, 0.90


@dataclass(frozen=True)
class CalibrationSettings:
    """What a calibration measures and how it judges (stored in calibration.json)."""

    trials: int = 20
    repeats: int = 1  # repetitions per side of a trial
    slowdown: float = 0.05
    alpha: float = DEFAULT_ALPHA
    floor: float = DEFAULT_FLOORS["step_time"]
    metric: str = "step_time"
    n_resamples: int = 2000

    def check(self) -> None:
        """Refuse settings that cannot give a trial."""
        if self.trials < 1:
            raise ConfigError(f"must be ≥ 1, got {self.trials}", key="--trials")
        if self.repeats < 1:
            raise ConfigError(f"must be ≥ 1, got {self.repeats}", key="--repeats")
        if not 0.0 < self.slowdown <= 10.0:
            raise ConfigError(f"must be in (0, 10], got {self.slowdown}", key="--slowdown")
        if METRICS.get(self.metric) is None or METRICS[self.metric].table != "steps":
            raise ConfigError(f"calibration needs a per-step metric (step_time, update_time), "
                              f"got {self.metric!r}", key="--metric")


@dataclass(frozen=True)
class CalibrationResult:
    run_dir: Path
    table: pd.DataFrame  # one row per (device, case)
    failed: bool


def calibration_order(cases: Sequence[Case], settings: CalibrationSettings, seed: int) -> list[Case]:
    """Plain and slowed repetitions of every case, interleaved round by round (see module doc)."""
    order: list[Case] = []
    for n in range((settings.trials + 1) * settings.repeats):
        for case in shuffled(cases, seed + n):
            plain = dataclasses.replace(case, repeat=2 * n, slowdown=0.0)
            slow = dataclasses.replace(case, repeat=2 * n + 1, slowdown=settings.slowdown)
            order += [plain, slow] if n % 2 == 0 else [slow, plain]
    return order


def run_calibration(profile: Profile, cases: Sequence[Case], settings: CalibrationSettings, *,
                    out: Path, run_id: str | None, seed: int, suite: str,
                    argv: Sequence[str]) -> CalibrationResult:
    """Measure the calibration run on one device, analyse it, and store the results."""
    settings.check()
    load_before = os.getloadavg()
    started = time.monotonic()
    plan = new_plan([profile], calibration_order(cases, settings, seed), out=out, run_id=run_id,
                    suite=suite, seed=seed, argv=argv, probe=False,
                    extra={"calibration": dataclasses.asdict(settings)})
    result = execute(plan)
    steps, cases_df, _ = store.load_run(result.run_dir)
    table = analyse(steps, cases_df, settings)
    meta = {"settings": dataclasses.asdict(settings), "device": profile.name,
            "load_avg_before": list(load_before), "load_avg_after": list(os.getloadavg()),
            "wall_s": round(time.monotonic() - started, 1)}
    write_calibration(result.run_dir, table, meta)
    return CalibrationResult(result.run_dir, table, result.failed)


def reanalyse(run_dir: Path) -> CalibrationResult:
    """Analyse a stored calibration run again (after a change to the gate or this module)."""
    steps, cases_df, manifest = store.load_run(run_dir)
    if "calibration" not in manifest:
        raise ConfigError(f"{run_dir} is not a calibration run (its manifest has no 'calibration' "
                          "entry); run `harness calibrate` first", key="--from")
    settings = CalibrationSettings(**manifest["calibration"])
    table = analyse(steps, cases_df, settings)
    old = run_dir / "calibration.json"
    meta = {k: v for k, v in (json.loads(old.read_text()) if old.is_file() else {}).items()
            if k not in ("cases", "targets")}
    write_calibration(run_dir, table, meta or {"settings": manifest["calibration"]})
    return CalibrationResult(run_dir, table, bool((cases_df["status"] != "ok").any()))


def _block(measured: pd.DataFrame, repeats: Sequence[int]) -> pd.DataFrame:
    """The steps of some repetitions, each labelled as its own run for the drift term."""
    rows = measured[measured["repeat"].isin(repeats)].copy()
    rows["run_id"] = "r" + rows["repeat"].astype(str)
    return rows


def _rates(pairs: list[tuple[pd.DataFrame, pd.DataFrame]], settings: CalibrationSettings,
           run_drift: float, effect: float = 0.0) -> Any:
    return run_trials(pairs, metric=settings.metric, effect=effect, floor=settings.floor,
                      alpha=settings.alpha, rules=(DEFAULT_RULE,),
                      n_resamples=settings.n_resamples, run_drift=run_drift)[0]


def _mde(pairs: list[tuple[pd.DataFrame, pd.DataFrame]], settings: CalibrationSettings,
         run_drift: float) -> float:
    """Smallest injected effect flagged in ≥ 90 % of the A/A pairs (NaN when none is)."""
    for effect in MDE_EFFECTS:
        if _rates(pairs, settings, run_drift, effect).regression_rate >= TARGET_DETECTION:
            return effect
    return math.nan


def analyse_case(measured: pd.DataFrame, ok_repeats: set[int],
                 settings: CalibrationSettings) -> dict[str, Any]:
    """Rates, noise and drift of one case from its measured (non-warm-up) steps."""
    column = METRICS[settings.metric].column
    k = settings.repeats

    def plain(b: int) -> list[int]:
        return [2 * (b * k + i) for i in range(k)]

    def complete(reps: list[int]) -> bool:
        return all(r in ok_repeats for r in reps)

    blocks = settings.trials + 1
    aa = [(_block(measured, plain(b)), _block(measured, plain(b + 1))) for b in range(blocks - 1)
          if complete(plain(b)) and complete(plain(b + 1))]
    slow = [(_block(measured, plain(b)), _block(measured, [r + 1 for r in plain(b)]))
            for b in range(blocks) if complete(plain(b)) and complete([r + 1 for r in plain(b)])]
    plain_runs = [g for r, g in measured.groupby("repeat") if r % 2 == 0 and r in ok_repeats]
    drift = estimate_run_drift(plain_runs, column) if len(plain_runs) >= 2 else math.nan
    cvs = [summarize(g[column].to_numpy(float), n_resamples=10).robust_cv for g in plain_runs]
    row: dict[str, Any] = {
        "noise_cv": float(pd.Series(cvs).median()) if cvs else math.nan, "run_drift": drift,
        "aa_trials": len(aa), "slowdown_trials": len(slow),
    }
    halves = [pair for g in plain_runs for pair in aa_pairs([g])]  # within one process each
    within = _rates(halves, settings, 0.0) if halves else None
    within_slow = _rates(halves, settings, 0.0, settings.slowdown) if halves else None
    row |= {"false_alarm_rate_within_run": within.false_alarm_rate if within else math.nan,
            "detection_rate_within_run": within_slow.regression_rate if within_slow else math.nan}
    for suffix, d in (("", 0.0), ("_with_drift", drift if math.isfinite(drift) else 0.0)):
        a = _rates(aa, settings, d) if aa else None
        s = _rates(slow, settings, d) if slow else None
        row |= {
            f"false_alarm_rate{suffix}": a.false_alarm_rate if a else math.nan,
            f"aa_pass_rate{suffix}": a.pass_rate if a else math.nan,
            f"aa_inconclusive_rate{suffix}": a.inconclusive_rate if a else math.nan,
            f"detection_rate{suffix}": s.regression_rate if s else math.nan,
            f"slowdown_inconclusive_rate{suffix}": s.inconclusive_rate if s else math.nan,
            f"mde{suffix}": _mde(aa, settings, d) if aa else math.nan,
        }
    return row


def analyse(steps: pd.DataFrame, cases: pd.DataFrame, settings: CalibrationSettings) -> pd.DataFrame:
    """One row per (device, case): noise CV, drift, false-alarm and detection rates, MDE."""
    measured = steps[~steps["warmup"].astype(bool)]
    rows = []
    for (device, case_id), group in cases.groupby(["device", "case_id"], sort=True):
        ok = set(int(r) for r in group.loc[group["status"] == "ok", "repeat"])
        mine = measured[(measured["device"] == device) & (measured["case_id"] == case_id)]
        rows.append({
            "device": device, "case_id": case_id,
            "steps_per_repeat": int(group["steps"].median()), "repeats_per_side": settings.repeats,
            "slowdown": settings.slowdown, "floor": settings.floor, "alpha": settings.alpha,
            **analyse_case(mine, ok, settings),
            "failed_repeats": int((group["status"] != "ok").sum()),
            "wall_s": float(pd.to_numeric(group["host_wall_ns"], errors="coerce").sum()) / 1e9,
        })
    return pd.DataFrame(rows)


def write_calibration(run_dir: Path, table: pd.DataFrame, meta: dict[str, Any]) -> None:
    """calibration.parquet (the table) and calibration.json (settings, load, the same rows)."""
    buf = io.BytesIO()
    table.to_parquet(buf, index=False)
    store.atomic_write(run_dir / "calibration.parquet", buf.getvalue())
    records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
               for r in table.to_dict("records")]
    store.write_json(run_dir / "calibration.json", {**meta, "cases": records,
                                                    "targets": {"false_alarm_rate": TARGET_FALSE_ALARM,
                                                                "detection_rate": TARGET_DETECTION}})


def format_table(table: pd.DataFrame) -> str:
    """The calibration table as fixed-width text, one line per case."""
    head = (f"{'device':<10} {'case':<40} {'steps':>5} {'cv':>6} {'drift':>6} {'FA':>6} "
            f"{'det':>6} {'MDE':>6} {'FA+d':>6} {'det+d':>6} {'MDE+d':>6} {'FA-in':>6} {'det-in':>6} "
            f"{'wall s':>7}")
    lines = [head]

    def pct(x: float) -> str:
        return "   n/a" if not math.isfinite(x) else f"{x:6.1%}"

    for _, r in table.iterrows():
        lines.append(
            f"{r['device']:<10} {r['case_id']:<40} {r['steps_per_repeat']:>5} {pct(r['noise_cv'])} "
            f"{pct(r['run_drift'])} {pct(r['false_alarm_rate'])} {pct(r['detection_rate'])} "
            f"{pct(r['mde'])} {pct(r['false_alarm_rate_with_drift'])} "
            f"{pct(r['detection_rate_with_drift'])} {pct(r['mde_with_drift'])} "
            f"{pct(r['false_alarm_rate_within_run'])} {pct(r['detection_rate_within_run'])} {r['wall_s']:7.1f}")
    lines.append("FA: A/A false-alarm rate (regression or improvement); det: share of slowdown trials "
                 "called regression; MDE: smallest effect caught in ≥ 90 % of trials; +d: with the "
                 "measured run drift given to the gate; -in: within one process (interleaved halves, "
                 "slowdown injected into one half)")
    return "\n".join(lines)
