"""``harness bench`` from request to outcome: plan (new or resumed), measure, analyse, report, gate.

The command line parses options into a :class:`BenchRequest` and prints the
:class:`BenchOutcome`; everything between lives here. A failure after the measurements are
stored (the study analysis, the report) becomes an error line in the outcome and a failed
exit code, never a lost run.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from harness.errors import ConfigError
from harness.plan import Filters
from harness.selection import Selection, select

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
CASE_FIELDS = ("device", "case_id", "repeat", "workload", "optimizer", "kernel", "threads", "batch", "dtype",
               "status", "error_kind", "error_message", "median_step_ns", "p10_step_ns", "p90_step_ns",
               "warnings")
log = logging.getLogger(__name__)

# Options that change what a run measures: a resumed run keeps its own plan, so they conflict.
PLAN_OPTIONS = ("--device", "--workload", "--optimizer", "--kernel", "--threads", "--batch", "--dtype",
                "--mode", "--accel", "--study", "--steps", "--warmup", "--check-steps", "--seed", "--run-id", "--repeat",
                "--inject-slowdown", "--suite", "--onnx-inference", "--processes", "--isolate",
                "--inject-phase", "--inject-into", "--aa-replicas")


@dataclass(frozen=True)
class BenchRequest:
    """A new run: which devices, which cases, where the results go."""

    devices: tuple[str, ...] = ("local",)
    filters: Filters = Filters()
    suite: str = "smoke"
    study: str | None = None
    out: Path = Path("results")
    run_id: str | None = None
    processes: int | None = None  # agent processes per case; None: the suite's, else the default
    isolate: bool = False  # every case in its own process (no sharing between variants)
    slowdown: float = 0.0
    slowdown_phase: str = "step"
    slowdown_into: tuple[str, ...] = ()  # the cases the slowdown goes into (empty: every case)
    aa_replicas: int = 0  # in-process A/A twins of each case
    detect: float | None = None  # choose processes and steps from the calibration for this change
    calibration: Path | None = None  # the variance components --detect reads (default: out's)
    onnx_inference: bool = False
    probe: bool = True
    argv: tuple[str, ...] = ("harness", "bench")


@dataclass(frozen=True)
class Finish:
    """What happens after the measurements: tables as CSV, the report, the gate."""

    csv: bool = False
    report: bool = True
    gate: Callable[[Path], int] | None = None  # run dir -> the gate's exit code


@dataclass
class BenchOutcome:
    run_dir: Path
    cases: pd.DataFrame
    failed: bool
    report: Path | None = None
    study_text: str | None = None
    errors: list[str] = field(default_factory=list)
    notes: tuple[str, ...] = ()
    gate_code: int | None = None
    answer: tuple[str, ...] = ()  # the report's Answer sentences
    coverage: Any = None  # reports.coverage.Coverage: planned, measured, why each case was not

    @property
    def nothing_measured(self) -> bool:
        return self.coverage is not None and self.coverage.nothing_measured

    def summary(self) -> dict[str, Any]:
        """The outcome as plain data, for ``--json``."""
        cov = self.coverage
        cases = [] if self.cases.empty else [
            {k: _plain(r.get(k)) for k in CASE_FIELDS if k in r}
            for r in self.cases.to_dict("records")]
        return {
            "run_id": self.run_dir.name, "run_dir": str(self.run_dir.resolve()),
            "report": str(self.report.resolve()) if self.report else None,
            "exit_code": self.exit_code, "planned": cov.planned if cov else len(cases),
            "measured": cov.measured if cov else None, "nothing_measured": self.nothing_measured,
            "answer": list(self.answer),
            "not_measured": [] if cov is None else [
                {k: _plain(v) for k, v in r.items()} for r in cov.unmeasured.to_dict("records")],
            "cases": cases, "errors": list(self.errors), "notes": list(self.notes),
            "gate_exit_code": self.gate_code,
        }

    @property
    def exit_code(self) -> int:
        own = EXIT_FAILED if self.failed or self.errors else EXIT_OK
        if self.gate_code is None:
            return own
        return self.gate_code if self.gate_code == EXIT_USAGE else max(self.gate_code, own)


def check_resume(given: Sequence[str]) -> None:
    """``--resume`` continues the run's own plan: refuse options that would change it."""
    conflicts = [flag for flag in given if flag in PLAN_OPTIONS]
    if conflicts:
        raise ConfigError(f"--resume continues the run's own plan; drop {conflicts[0]}", key="--resume")


def run_dir_of(run: Path, out: Path) -> Path:
    """A run given by path or by its id under the results directory."""
    if run.exists() or run.is_absolute():
        return run
    return out / run


def selection_for(request: BenchRequest) -> tuple[Selection, list]:
    """The request's cases, expanded for its devices' profiles (threads default to the first's)."""
    from harness.profiles import load_profile

    if len(set(request.devices)) != len(request.devices):
        raise ConfigError(f"a device is named twice: {list(request.devices)}", key="--device")
    profiles = [load_profile(n) for n in request.devices]
    chosen = select(request.filters, suite=request.suite, study=request.study,
                    default_threads=profiles[0].cpu.threads or 1,
                    onnx_inference=request.onnx_inference)
    return chosen, profiles


def run_bench(request: BenchRequest, finish: Finish = Finish(),
              on_notes: Callable[[Sequence[str]], None] | None = None) -> BenchOutcome:
    """Plan and measure a new run, then finish it (analysis, report, gate)."""
    from harness.bench import execute, new_plan

    chosen, profiles = selection_for(request)
    if on_notes and chosen.notes:
        on_notes(chosen.notes)
    if request.detect:
        request, chosen = _designed(request, chosen, on_notes)
    bench_plan = new_plan(profiles, schedule_for(request, chosen),
                          out=request.out, run_id=request.run_id, suite=chosen.suite, seed=chosen.seed,
                          argv=list(request.argv), probe=request.probe,
                          extra={"study": request.study} if request.study else None)
    result = execute(bench_plan, csv=finish.csv)
    outcome = BenchOutcome(result.run_dir, result.cases, result.failed, notes=chosen.notes)
    if request.detect and on_notes:
        from harness import store
        from harness.calibration_store import achieved, calibration_path, read_calibration_file

        steps, cases, _ = store.load_run(result.run_dir)
        # the file the design came from (_designed read it): the gate against a stored
        # baseline holds the run to its spreads
        path = request.calibration or calibration_path(request.out, request.devices[0])
        on_notes([achieved(steps, request.detect, cases=cases,
                           calibration=read_calibration_file(path))])
    return _finish(outcome, bench_plan.manifest, finish)


def _designed(request: BenchRequest, chosen: Selection,
              on_notes: Callable[[Sequence[str]], None] | None) -> tuple[BenchRequest, Selection]:
    """``--detect``: processes and steps per case from the device's calibration."""
    from analysis.relative import MIN_MATES
    from harness import schedule
    from harness.calibration_store import design_for

    # a variant's own change is tested only in a group with enough mates (analysis.relative)
    splitting = {c.case_id for unit in schedule.groups(chosen.cases, isolate=request.isolate)
                 if len(unit.cases) > MIN_MATES for c in unit.cases}
    design, sentence = design_for(request.out, request.devices[0],
                                  [c.case_id for c in chosen.cases], float(request.detect or 0),
                                  relative=splitting, path=request.calibration)
    if on_notes:
        on_notes([sentence])
    cases = tuple(dataclasses.replace(c, steps=design.steps) for c in chosen.cases)
    return (dataclasses.replace(request, processes=design.processes),
            dataclasses.replace(chosen, cases=cases))


def schedule_for(request: BenchRequest, chosen: Selection) -> list:
    """The run's agent processes: calibration twins and slowdown applied, variants grouped,
    every group ``processes`` times in randomized blocks (harness/schedule.py)."""
    from harness import plan, schedule

    cases = schedule.with_replicas(list(chosen.cases), request.aa_replicas)
    cases = schedule.with_slowdown(cases, request.slowdown, request.slowdown_phase, request.slowdown_into)
    # a study replicates over seeds: one process per configuration unless asked
    data = {} if request.study else dict(plan.load_suite(request.suite).data)
    processes = schedule.processes_for(data, request.processes, request.suite,
                                       default=1 if request.study else schedule.DEFAULT_PROCESSES)
    return schedule.schedule(cases, processes, chosen.seed, isolate=request.isolate)


def resume_bench(run: Path, out: Path, argv: Sequence[str], finish: Finish = Finish()) -> BenchOutcome:
    """Measure the cases of a stored run that are missing or failed, then finish it again."""
    from harness.bench import execute, resume_plan

    bench_plan = resume_plan(run_dir_of(run, out), list(argv))
    result = execute(bench_plan, csv=finish.csv)
    return _finish(BenchOutcome(result.run_dir, result.cases, result.failed), bench_plan.manifest, finish)


def _finish(outcome: BenchOutcome, manifest: dict, finish: Finish) -> BenchOutcome:
    run_dir = outcome.run_dir
    if manifest.get("study"):  # a new study run, or a resumed one
        from harness.study import analyze_study, format_result

        try:
            outcome.study_text = format_result(analyze_study(run_dir))
        except Exception as exc:  # the measurements are stored; an analysis bug must not hide them
            log.debug("study analysis failed", exc_info=True)
            outcome.errors.append(
                f"the study could not be analysed ({type(exc).__name__}: {exc}); the results are "
                f"stored, retry with `python -c 'from harness.study import analyze_study; "
                f"analyze_study(\"{run_dir}\")'`")
    try:
        from reports import aggregate_dirs, render_report

        agg = aggregate_dirs([run_dir])
        outcome.answer = tuple(h.text for h in agg.headlines)
        outcome.coverage = agg.coverage
        if finish.report:
            outcome.report = render_report(agg, run_dir / "report.html")
    except Exception as exc:  # the measurements are stored; a report bug must not hide them
        log.debug("report failed", exc_info=True)
        outcome.errors.append(f"the report could not be built ({type(exc).__name__}: {exc}); the "
                              f"results are stored, rebuild it with `harness report {run_dir}`")
    if outcome.coverage is not None:
        _record_coverage(run_dir, outcome.coverage)
    if outcome.nothing_measured:
        outcome.failed = True
    if finish.gate is not None:
        outcome.gate_code = finish.gate(run_dir)
    return outcome


def _record_coverage(run_dir: Path, coverage: Any) -> None:
    """Planned and measured counts in the manifest: a finished run that measured nothing says so."""
    import json

    from harness.store import write_json

    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    manifest["cases_planned"], manifest["cases_measured"] = coverage.planned, coverage.measured
    manifest["nothing_measured"] = coverage.nothing_measured
    write_json(path, manifest)


def _plain(value: Any) -> Any:
    """A JSON-ready scalar: numpy numbers as Python numbers, NaN as None."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
