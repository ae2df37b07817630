"""The ``harness`` command line. Exit codes: 0 ok, 1 some cases failed (or a regression),
2 usage or configuration error. ``main`` is the only place that exits."""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from harness import cli_gate, cli_lab, cli_options
from harness.errors import ConfigError, HarnessError
from harness.workflow import EXIT_FAILED, EXIT_OK, EXIT_USAGE

DEFAULT_RESULTS = cli_options.DEFAULT_RESULTS


def _add_bench(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run a suite on one or more devices and write a report")
    bench.add_argument("--device", action="append", default=[],
                       help="profile name under devices/ or a .toml path; repeat for several devices (default local)")
    cli_options.add_filters(bench)
    cli_options.add_out(bench)
    bench.add_argument("--csv", action="store_true", help="also write steps.csv and cases.csv")
    bench.add_argument("--onnx-inference", action="store_true",
                       help="after each case's training, export the model to ONNX and time ONNX Runtime "
                            "inference at every graph optimization level beside torch eager")
    bench.add_argument("--repeat", "--processes", dest="processes", type=int, metavar="N",
                       help="agent processes per case, run in randomized blocks (default: the suite's "
                            "`processes`, else 3; a study 1; --repeat is the old name)")
    bench.add_argument("--isolate", action="store_true",
                       help="every case in its own agent process (default: variants of one workload "
                            "configuration share a process and alternate step by step); gives "
                            "per-variant peak memory and energy")
    bench.add_argument("--inject-slowdown", type=float, default=0.0, metavar="FRACTION",
                       help="calibration aid: busy-wait this fraction of a phase's own time (e.g. 0.05)")
    bench.add_argument("--inject-phase", default="step", metavar="PHASE",
                       help="the phase --inject-slowdown lengthens: step (default: a fraction of the "
                            "whole step), data, forward, backward or update")
    bench.add_argument("--inject-into", action="append", default=[], metavar="CASE_ID",
                       help="the cases --inject-slowdown applies to (default every case)")
    bench.add_argument("--aa-replicas", type=int, default=0, metavar="N",
                       help="calibration aid: N twins of every case (case id + '-aa1'...) that share "
                            "its process: an in-process A/A")
    bench.add_argument("--resume", type=Path, metavar="RUN",
                       help="continue a run (its directory or its id under --out): measure only its "
                            "cases that are missing or failed")
    bench.add_argument("--no-report", action="store_true", help="skip the HTML report")
    bench.add_argument("--no-probe", action="store_true",
                       help="skip the device ceilings probe (memory bandwidth, matmul throughput)")
    bench.add_argument("--study", metavar="STUDY",
                       help="run a study instead of --suite: 'optimizers' (harness/suites/study.toml: "
                            "optimizers x lr grid x seeds to a target loss) or a study .toml path; "
                            "the filters narrow it, --seed replaces its seeds (docs/study.md)")
    bench.add_argument("--json", type=Path, metavar="FILE",
                       help="also write the run's summary (answer, cases, not measured, paths, exit code) "
                            "as JSON to FILE; '-' writes it to stdout and the human summary to stderr")
    bench.add_argument("--gate-against", metavar="BASELINE",
                       help="after the run, gate it against this baseline (exit 1 on a regression)")
    cli_gate.add_gate_options(bench)


def _add_report(sub: Any) -> None:
    report = sub.add_parser("report", help="rebuild a report from stored runs")
    report.add_argument("runs", nargs="+", type=Path,
                        help="run directories or run ids under --out (several combine into one report)")
    report.add_argument("--format", choices=("html", "md", "csv"), default="html")
    report.add_argument("--output", type=Path, help="output file or directory")
    report.add_argument("--out", type=Path, default=DEFAULT_RESULTS,
                        help="results directory where run ids are looked up (default ./results)")


def _add_doctor(sub: Any) -> None:
    doctor = sub.add_parser("doctor", help="check that a device is ready to measure, with the fix for each problem")
    doctor.add_argument("--device", default="local", help="profile name or .toml path (default local)")
    doctor.add_argument("--strict", action="store_true",
                        help="exit 1 on any failed check, also those this profile does not need "
                             "(default: only reachability, Python, torch, free space, and the thermal "
                             "zones or meter the profile asks for)")


def _add_trend(sub: Any) -> None:
    trend = sub.add_parser("trend", help="one metric per case across stored runs or a baseline's history, "
                                         "with their commits")
    trend.add_argument("runs", nargs="*", type=Path,
                       help="run directories or ids under --out (default: the last --last runs there)")
    trend.add_argument("--baseline", metavar="NAME",
                       help="instead of runs: every baseline NAME has had (numbered history), per device")
    trend.add_argument("--device", help="with --baseline: only this device")
    trend.add_argument("--metric", default="median_step_ns",
                       help="a numeric column of cases.parquet (default median_step_ns; e.g. peak_rss_bytes)")
    trend.add_argument("--case", default="", metavar="TEXT", help="only cases whose id contains TEXT")
    trend.add_argument("--last", type=int, default=10, help="without RUNs: how many recent runs (default 10)")
    trend.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results directory (default ./results)")
    trend.add_argument("--baselines-dir", type=Path, default=cli_gate.DEFAULT_BASELINES)


def build_parser() -> argparse.ArgumentParser:
    parser = cli_options.Parser(prog="harness", description="Measure on-device training steps.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (bundle pushes, retries)")
    sub = parser.add_subparsers(dest="command", parser_class=cli_options.Parser)
    _add_bench(sub)
    sub.add_parser("list", help="workloads, optimizers, kernels, suites and devices")
    sub.add_parser("devices", help="device profiles and how each is reached")
    _add_doctor(sub)
    cli_gate.add_parsers(sub)
    cli_lab.add_parsers(sub)
    _add_report(sub)
    _add_trend(sub)
    return parser


def cmd_bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness import workflow

    gate = None
    if args.gate_against:
        baseline = args.gate_against
        gate = lambda run_dir: cli_gate.run_gate(baseline, run_dir, args)  # noqa: E731
    finish = workflow.Finish(csv=args.csv, report=not args.no_report, gate=gate)
    full_argv = ("harness", *argv)
    if args.resume:
        workflow.check_resume(cli_options.given_options(_subparser("bench"), args))
        outcome = workflow.resume_bench(args.resume, args.out, full_argv, finish)
    else:
        request = workflow.BenchRequest(
            devices=cli_options.csv_values(args.device or ["local"]), filters=cli_options.filters_from(args),
            suite=args.suite, study=args.study, out=args.out, run_id=args.run_id, processes=args.processes,
            isolate=args.isolate, slowdown=args.inject_slowdown, slowdown_phase=args.inject_phase,
            slowdown_into=cli_options.csv_values(args.inject_into), aa_replicas=args.aa_replicas,
            detect=args.detect, calibration=args.calibration,
            onnx_inference=args.onnx_inference, probe=not args.no_probe, argv=full_argv)
        outcome = workflow.run_bench(request, finish, on_notes=_print_notes)
    human = sys.stderr if args.json == Path("-") else sys.stdout
    _print_outcome(outcome, human)
    if args.json is not None:
        import json

        text = json.dumps(outcome.summary(), indent=2, default=str, ensure_ascii=False)
        if args.json == Path("-"):
            print(text)
        else:
            args.json.write_text(text + "\n", encoding="utf-8")
    return outcome.exit_code


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _print_notes(notes: Sequence[str]) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr)


MAX_LISTED = 10  # cases not measured listed in the terminal; the report lists them all


def _print_outcome(outcome: Any, out: Any = sys.stdout) -> None:
    """The end of a run: each case (stderr), then the answer, what was not measured, the paths."""
    _print_cases(outcome.cases)
    if outcome.study_text:
        print(outcome.study_text, file=out)
    cov = outcome.coverage
    if cov is not None and cov.nothing_measured:
        print(cov.headline(), file=out)
    elif outcome.answer:
        print("answer:", file=out)
        for sentence in outcome.answer:
            print(f"  {sentence.replace('`', '')}", file=out)
    elif cov is not None:
        print(f"answer: no sentence ({cov.measured} of {cov.planned} cases measured); the comparisons "
              "are in the report's tables", file=out)
    if cov is not None and len(cov.unmeasured):
        if not cov.nothing_measured:
            print(f"not measured: {len(cov.unmeasured)} of {cov.planned} planned cases", file=out)
        for row in cov.unmeasured.head(MAX_LISTED).itertuples():
            print(f"  {row.device:<10} {row.case_id:<48} {str(row.status).upper()}: {str(row.reason)[:160]}",
                  file=out)
        if len(cov.unmeasured) > MAX_LISTED:
            print(f"  … and {len(cov.unmeasured) - MAX_LISTED} more (all in the report)", file=out)
    for error in outcome.errors:
        print(f"error: {error}", file=sys.stderr)
    if outcome.report is not None:
        print(f"report: {outcome.report.resolve()}", file=out)
    print(f"results: {outcome.run_dir.resolve()}", file=out)


def _print_cases(cases_df: Any) -> None:
    """One line per case: the median of its processes' medians and their range; a failed
    process of the case on its own line; each case's distinct stability warnings once."""
    if cases_df.empty:
        return
    ordered = cases_df.sort_values(["device", "workload", "optimizer", "kernel", "case_id", "repeat"])
    for (device, case_id), rows in ordered.groupby(["device", "case_id"], sort=False):
        ok = rows[rows["status"] == "ok"]
        if len(ok):
            medians = ok["median_step_ns"].astype(float) / 1e6
            spread = f"processes {medians.min():.2f}–{medians.max():.2f}" if len(ok) > 1 else (
                f"p10 {ok['p10_step_ns'].iloc[0] / 1e6:.2f}, p90 {ok['p90_step_ns'].iloc[0] / 1e6:.2f}")
            print(f"  {device:<10} {case_id:<48} median {medians.median():8.2f} ms over {len(ok)} "
                  f"process{'es' if len(ok) > 1 else ''} ({spread})", file=sys.stderr)
        for _, row in rows[rows["status"] != "ok"].iterrows():
            print(f"  {device:<10} {case_id:<48} process {row['repeat']}: {str(row['status']).upper()}: "
                  f"{row['error_kind']}: {str(row['error_message'])[:200]}", file=sys.stderr)
    if "warnings" not in cases_df:
        return
    flagged = {}
    for _, row in ordered.iterrows():
        words = [w for w in str(row["warnings"] if isinstance(row["warnings"], str) else "").split(";") if w]
        if words:
            seen = flagged.setdefault((row["device"], row["case_id"]), [])
            seen += [w for w in words if w not in seen]
    if flagged:
        print("stability warnings (stored with each case and process, repeated in the report):", file=sys.stderr)
        for (device, case_id), words in flagged.items():
            print(f"  {device:<10} {case_id:<48} {', '.join(words)}", file=sys.stderr)


def cmd_list(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import workloads.models  # noqa: F401
    from harness.plan import known_suites, load_suite
    from harness.profiles import known_devices
    from workloads.models.common import describe_task
    from workloads.optim import OPTIMIZERS, all_kernels
    from workloads.workload import WORKLOADS

    print("workloads (the default configuration of each; suites may set options):")
    for name in WORKLOADS:
        w = WORKLOADS.get(name)
        print(f"  {name:<20} {w.domain:<7} {w.description}")
        print(f"  {'':<20} {'':<7} default: {describe_task(w.make(2, 0))}")
    print("optimizers (kernels; the first is torch's default on CPU):")
    for name in OPTIMIZERS:
        o = OPTIMIZERS.get(name)
        print(f"  {name:<20} {', '.join(o.kernels):<48} {o.description}")
    print(f"kernels: {', '.join(all_kernels())}")
    print("suites:")
    for name in known_suites():
        print(f"  {name:<20} {load_suite(name).description}")
    print(f"devices: {', '.join(known_devices())}")
    return EXIT_OK


def cmd_devices(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.profiles import known_devices, load_profile

    for name in known_devices():
        try:
            p = load_profile(name)
        except ConfigError as exc:
            print(f"  {name:<20} INVALID: {exc}")
            continue
        c = p.connection
        where = {"local": "this machine", "ssh": f"ssh {c.host}", "adb": f"adb {c.serial or '$ANDROID_SERIAL'}"}[c.transport]
        print(f"  {name:<20} {where:<28} energy {p.energy.meter:<14} {p.description}")
    return EXIT_OK


def combined_dir(runs: Sequence[Path], out: Path) -> Path:
    """Where a report of several runs goes by default: its own directory, never inside a run."""
    import hashlib

    name = "combined-" + "+".join(r.name for r in runs)
    if len(name) > 80:
        name = f"combined-{runs[0].name}+{len(runs) - 1}-more-" + hashlib.sha256(
            "\0".join(str(r.resolve()) for r in runs).encode()).hexdigest()[:8]
    return out / name


def cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.workflow import run_dir_of
    from reports import aggregate_dirs, render_report

    runs = [run_dir_of(run, args.out) for run in args.runs]
    for run in runs:
        if not (run / "raw.jsonl").is_file() and not (run / "cases.parquet").is_file():
            raise ConfigError(f"{run} is not a run directory (no raw.jsonl or cases.parquet)", key="RUN")
    default = {"html": "report.html", "md": "report.md", "csv": "report-tables"}[args.format]
    out = args.output or (combined_dir(runs, args.out) if len(runs) > 1 else runs[0]) / default
    agg = aggregate_dirs(runs)
    path = render_report(agg, out, fmt=args.format)
    if agg.coverage is not None and agg.coverage.headline():
        print(agg.coverage.headline(), file=sys.stderr)
    print(path.resolve())
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.deploy import build_bundle
    from harness.doctor import format_checks, run_doctor, verdict
    from harness.profiles import load_profile

    profile = load_profile(args.device)
    checks = run_doctor(profile, build_bundle())
    print(f"{profile.name} ({profile.path})")
    print(format_checks(checks))
    ready, line = verdict(checks, strict=args.strict)
    print(line)
    return EXIT_OK if ready else EXIT_FAILED


def cmd_trend(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness import trend
    from harness.workflow import run_dir_of

    if args.baseline:
        if args.runs:
            raise ConfigError("give runs or --baseline, not both", key="--baseline")
        sources = trend.baseline_sources(args.baselines_dir, args.baseline, args.device)
    elif args.runs:
        sources = [trend.source(run_dir_of(r, args.out)) for r in args.runs]
        for s in sources:
            if not (s.path / "cases.parquet").is_file():
                raise ConfigError(f"{s.path} is not a run directory (no cases.parquet)", key="RUN")
    else:
        sources = trend.runs_under(args.out, args.last)
    print(trend.format_trend(trend.trend_table(sources, args.metric, args.case), sources, args.metric))
    return EXIT_OK


Command = Callable[[argparse.Namespace, Sequence[str]], int]
# command name -> its function, or "module:function" imported when the command runs
COMMANDS: dict[str, Command | str] = {
    "bench": cmd_bench, "list": cmd_list, "devices": cmd_devices, "doctor": cmd_doctor, "report": cmd_report,
    "trend": cmd_trend,
    "baseline": "harness.cli_gate:cmd_baseline", "gate": "harness.cli_gate:cmd_gate",
    "calibrate": "harness.cli_lab:cmd_calibrate", "ab": "harness.cli_lab:cmd_ab", "merge": "harness.cli_lab:cmd_merge",
}


def _command(name: str) -> Command:
    target = COMMANDS[name]
    if isinstance(target, str):
        module, func = target.split(":")
        return getattr(importlib.import_module(module), func)
    return target


class Terminated(KeyboardInterrupt):
    """SIGTERM (a CI job cancelled or timed out, ``kill``): the Ctrl-C path, so every agent is
    stopped and every line received stays in raw.jsonl, instead of Python's default of dying
    on the spot with the agents left running on the device."""


def _terminated(_signum: int, _frame: Any) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    previous = (signal.signal(signal.SIGTERM, _terminated)
                if threading.current_thread() is threading.main_thread() else None)
    try:
        args = parser.parse_args(args_list)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        return _command(args.command)(args, list(args_list))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        print(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}: the agents were "
              "stopped; every line received so far is in raw.jsonl", file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
