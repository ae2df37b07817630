"""A device's variance components, stored beside its results: ``<results>/calibration/<device>.json``.

``harness calibrate`` writes the file; ``harness gate`` reads it to moderate each case's
between-process spread (:class:`analysis.compare.Prior`), and ``harness bench --detect``
reads it to choose processes and steps (:func:`analysis.design.plan`). Format (version 1)::

    {"version": 1, "device": "local", "run_id": "...", "created": "...",
     "process_cost_s": 6.1, "step_cost_s": 0.05,
     "cases": {"<case_id>": {"step_time": {"sigma_p": 0.03, "sigma_s": 0.015,
                                           "sigma_median": 0.031, "processes": 10,
                                           "steps_per_process": 60, "sigma_run": 0.04,
                                           "runs": 21}, "update_time": {...},
                             "step_time_relative": {...}, "update_time_relative": {...}}},
     "device_median": {"step_time": {...}, ...}}

Fractions are on the log scale (0.03 ≈ 3 %). ``device_median`` (median over cases) stands in
for a case the calibration did not cover. ``*_relative``: the components of a variant's time
relative to its process-mates (``analysis.relative``), present for cases that shared their
processes with enough mates; they plan a design for one variant's own change.

``own_sigma_p``, ``own_sigma_s``, ``own_sigma_median`` in ``*_relative``: the variant's own
components, not pooled; ``--detect`` plans each variant from them (older files: the pooled).

``sigma_run`` (with ``runs``, the blocks or bench runs it came from; NaN from fewer than three):
how far separate runs of the same code differ beyond what their processes explain
(``analysis.design.between_runs``). The gate adds ``2 σ_r²`` when it compares two separate
runs; for ``*_relative`` it is the spread of a variant's relative time between runs, its df
pooled over the group's variants. With it, ``sigma_p`` and ``sigma_median`` are the spread
*within* runs (df ``processes − runs``). Files written before it existed have no
``sigma_run``: the gate then adds nothing, as before.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from analysis.compare import Prior
from analysis.design import MIN_RUNS, median_df
from harness.errors import ConfigError

VERSION = 1
FIELDS = ("sigma_p", "sigma_s", "sigma_median", "processes", "steps_per_process", "sigma_run",
          "runs")


def calibration_path(results_dir: Path, device: str) -> Path:
    """Where a device's calibration lives: ``<results>/calibration/<device>.json``."""
    return Path(results_dir) / "calibration" / f"{device}.json"


def write_calibration_file(path: Path, device: str, run_id: str,
                           cases: Mapping[str, Mapping[str, Mapping[str, float]]], *,
                           process_cost_s: float, step_cost_s: float) -> Path:
    """Write the file atomically; ``cases[case_id][metric]`` holds :data:`FIELDS`."""
    from harness.store import write_json

    medians: dict[str, dict[str, float]] = {}
    metrics = sorted({m for per in cases.values() for m in per})
    for metric in metrics:
        rows = [per[metric] for per in cases.values() if metric in per]
        medians[metric] = {f: _median([float(r[f]) for r in rows if _finite(r.get(f))])
                           for f in FIELDS}
    write_json(path, {"version": VERSION, "device": device, "run_id": run_id,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "process_cost_s": process_cost_s, "step_cost_s": step_cost_s,
                      "cases": {c: {m: dict(v) for m, v in per.items()} for c, per in cases.items()},
                      "device_median": medians})
    return path


def read_calibration_file(path: Path) -> dict[str, Any]:
    """The stored calibration; a clear error naming the file when it is unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the calibration ({exc}); run `harness calibrate` again",
                          source=str(path)) from exc
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ConfigError(f"calibration format {data.get('version') if isinstance(data, dict) else '?'!r}"
                          f" is not version {VERSION}; run `harness calibrate` again",
                          source=str(path))
    return data


def components_for(data: Mapping[str, Any], case_id: str, metric: str) -> dict[str, float] | None:
    """The case's components for a metric, else the device median, else None."""
    case_id = case_id.split("/")[-1]  # a merged run names cases <device>/<case_id>
    per = (data.get("cases") or {}).get(case_id, {}).get(metric)
    if per is None:
        per = (data.get("device_median") or {}).get(metric)
    return dict(per) if per else None


def priors_from(data: Mapping[str, Any]) -> Callable[[str, str], Prior | None]:
    """A ``priors(case_id, metric)`` function for :func:`harness.gate.gate`."""
    def prior(case_id: str, metric: str) -> Prior | None:
        per = components_for(data, case_id, metric)
        if per is None or not _finite(per.get("sigma_median")):
            return None
        runs = float(per["runs"]) if _finite(per.get("runs")) else 0.0
        found = Prior(float(per["sigma_median"]),
                      median_df(float(per.get("processes", 0)), runs), *run_spread(per))
        return found if found.usable() else None

    return prior


def run_spread(per: Mapping[str, Any]) -> tuple[float, float]:
    """(σ_r, its df) of stored components: ``runs − 1``, times the variants pooled for a
    relative one; (0, 0) when the file has none."""
    sigma, runs = per.get("sigma_run"), per.get("runs")
    if not (_finite(sigma) and _finite(runs) and runs >= MIN_RUNS):
        return 0.0, 0.0
    return float(sigma), (float(runs) - 1.0) * max(float(per.get("pooled", 1)), 1.0)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _median(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def design_for(results_dir: Path, device: str, case_ids: list[str], detect: float, *,
               alpha: float = 0.05, power: float = 0.90, metrics: int = 2,
               relative: bool | Collection[str] = True,
               path: Path | None = None) -> tuple[Any, str]:
    """Processes and steps that detect ``detect`` in every case (the costliest case decides).

    Reads ``path``, by default ``<results>/calibration/<device>.json``; the family is every case × ``metrics``
    timed metrics, so each case is planned at level α/m (the first Holm step). With
    ``relative`` (variants share processes), a case with ``step_time_relative`` components
    is planned for a change of its own, against its process-mates (``analysis.relative``),
    from its own spread (``own_sigma_p``, ``own_sigma_s``) where the file has it: planning
    every variant for its group's RMS left the noisiest short (bert_tiny's adam and adamw
    move 1.4× the RMS between processes on this project's host);
    a change common to a whole group is then held to the spread between processes, and the
    sentence says what this design detects of it.
    ``relative`` may name the cases whose change will split (those in a group with more than
    ``analysis.relative.MIN_MATES`` mates in this run): the others are planned as whole cases.
    """
    from analysis.design import MEDIAN_EFFICIENCY_K, plan
    from analysis.relative import TRIM_EFFICIENCY_K

    given = path is not None
    path = path if path is not None else calibration_path(results_dir, device)
    if not path.is_file():
        if given:
            raise ConfigError(f"no calibration file at {path}; give the device file that "
                              "`harness calibrate` wrote (<results>/calibration/<device>.json)",
                              key="--calibration")
        raise ConfigError(f"--detect needs the device's variance components and {path} does not "
                          f"exist; run `harness calibrate --device {device}` with the same "
                          "filters first, or give its file with --calibration", key="--detect")
    data = read_calibration_file(path)
    tests = max(1, len(case_ids) * metrics)
    costs = {"process_cost_s": _or(data.get("process_cost_s"), 6.0),
             "step_cost_s": _or(data.get("step_cost_s"), 0.05)}
    worst = None
    beyond: tuple[str, float, float] | None = None  # the case furthest out of a stored gate's reach
    for case_id in case_ids:
        splits = relative if isinstance(relative, bool) else case_id in relative
        own = components_for(data, case_id, "step_time_relative") if splits else None
        per, k, kind = ((own, TRIM_EFFICIENCY_K, "own change") if _usable(own) else
                        (components_for(data, case_id, "step_time"), MEDIAN_EFFICIENCY_K,
                         "whole case"))
        if not _usable(per):
            continue
        assert per is not None
        pooled = max(int(per.get("pooled", 1)), 1) if kind == "own change" else 1
        if kind == "own change" and _finite(per.get("own_sigma_p")) and _finite(
                per.get("own_sigma_s")):  # a variant noisier than its group's RMS is planned
            # as it is; a quieter one as the group (an own σ_p estimated at 0 would ask for
            # the longest processes allowed)
            per = {**per, "sigma_p": max(per["own_sigma_p"], per["sigma_p"]),
                   "sigma_s": max(per["own_sigma_s"], per["sigma_s"])}
        # a round of a shared process runs a step of every variant: a step costs them all
        options = {"alpha": alpha, "power": power, "tests": tests, "k": k, "pooled": pooled,
                   "process_cost_s": costs["process_cost_s"],
                   "step_cost_s": costs["step_cost_s"] * pooled}
        sigma_run, run_df = run_spread(per)
        design = plan(float(per["sigma_p"]), float(per["sigma_s"]), detect, **options,
                      sigma_run=sigma_run, run_df=run_df)
        if design.capped and sigma_run:  # out of reach against a stored baseline: plan for
            # what the run reaches within itself (`harness ab`, its own comparisons)
            within = plan(float(per["sigma_p"]), float(per["sigma_s"]), detect, **options)
            if not within.capped:
                stored = _stored_mde(per, within, k, pooled, alpha / tests, power)
                design = within
                if beyond is None or stored > beyond[1]:
                    beyond = (case_id, stored, sigma_run)
        if worst is None or (design.processes, design.steps) > (worst[0].processes,
                                                                  worst[0].steps):
            worst = (design, case_id, per, kind)
    if worst is None:
        raise ConfigError(f"{path} holds no usable components for these cases; run "
                          "`harness calibrate` with the same filters", key="--detect")
    design, case_id, per, kind = worst
    capped = " (capped: the target is out of reach)" if design.capped else ""
    sentence = (f"design for a {detect:.0%} change (power {power:.0%}, run-level α {alpha:g} "
                f"over {tests} tests): {design.processes} processes × {design.steps} steps per "
                f"case{capped}; the costliest case is {case_id} ({kind}: σ_p {per['sigma_p']:.1%}, "
                f"σ_s {per['sigma_s']:.1%}, from {path})")
    if beyond is not None:
        sentence += (f"; against a stored baseline, whose runs differ by σ_r {beyond[2]:.1%}, "
                     f"{beyond[0]} is detectable only from {beyond[1]:.0%} (`harness ab` "
                     "compares both sides in one run and cancels that)")
    whole = components_for(data, case_id, "step_time")
    if kind == "own change" and _usable(whole):
        assert whole is not None
        common = _stored_mde(whole, design, MEDIAN_EFFICIENCY_K, 1, alpha / tests, power)
        sigma_run = run_spread(whole)[0]
        between = (f", against a stored baseline whose runs differ by σ_r {sigma_run:.1%} "
                   "(`harness ab` cancels that)" if sigma_run else "")
        sentence += (f"; a change common to every variant of its group is detectable from "
                     f"{common:.0%} with this design{between}")
    return design, sentence


def _stored_mde(per: Mapping[str, Any], design: Any, k: float, pooled: int, level: float,
                power: float) -> float:
    """The smallest change that ``design`` detects in a case with components ``per`` when it
    is gated against a stored baseline: the spread between runs added (``with_runs``)."""
    from analysis.decide import detectable_change
    from analysis.design import se_of, with_runs

    se, df = with_runs(se_of(float(per["sigma_p"]), float(per["sigma_s"]), design.processes,
                             design.steps, k),
                       pooled * (2.0 * design.processes - 2.0), *run_spread(per))
    return detectable_change(se, df, level, power)


def achieved(steps: Any, detect: float, *, alpha: float = 0.05, power: float = 0.90,
             cases: Any = None, calibration: Mapping[str, Any] | None = None) -> str:
    """What a finished run can detect against a like run: the gate's own smallest detectable
    change (:attr:`harness.gate.MetricVerdict.mde`) of every step-time row when the run is
    gated against itself, so each variant is held to its own spread as the gate holds it (a
    variant noisier than its mates needs a larger change). Worst and median over the cases: a
    variant's own change where variants shared processes, else the whole case's.
    ``calibration``: the device file's contents; the like run is then a stored baseline gated
    with them, as ``harness gate`` does (the spread between runs included)."""
    from harness.gate import DEFAULT_METRICS, gate

    # the like run's processes must not be these ones: a case would pair with itself
    like_steps = steps.assign(run_id="like-run")
    like_cases = cases.assign(run_id="like-run") if cases is not None else None
    result = gate(steps, cases, like_steps, like_cases, alpha=alpha, power=power,
                  metrics=DEFAULT_METRICS, allow_missing=True,
                  priors=priors_from(calibration) if calibration is not None else None)
    rows = [v for v in result.verdicts
            if v.metric == "step_time" and v.scope != "group" and math.isfinite(v.mde)]
    if not rows:
        return "achieved: unknown (fewer than two processes per case)"
    worst = max(rows, key=lambda v: v.mde)
    middle = _median([v.mde for v in rows])
    verdict = "met" if worst.mde <= detect else "not met"
    scope = "a variant's own change" if worst.scope == "variant" else "a change"
    like = "a stored like run (the device file's spreads)" if calibration is not None else "a like run"
    return (f"achieved: {scope} of {worst.mde:.1%} is detectable against {like} in every "
            f"case (worst {worst.case_id}; median over {len(rows)} cases {middle:.1%}); "
            f"target {detect:.0%} {verdict}")


def _usable(per: Mapping[str, Any] | None) -> bool:
    return per is not None and _finite(per.get("sigma_p")) and _finite(per.get("sigma_s"))


def _or(value: Any, default: float) -> float:
    return float(value) if _finite(value) and float(value) > 0 else default
