"""The ``harness`` command line. Exit codes: 0 ok, 1 some cases failed (or a regression),
2 usage or configuration error. ``main`` is the only place that exits."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from harness.errors import ConfigError, HarnessError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_RESULTS = Path(os.environ.get("HARNESS_RESULTS", "results"))


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() owns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{message} (see `harness {self.prog.split()[-1]} --help`)")


def _csv(value: str) -> list[str]:
    return [v for v in (s.strip() for s in value.split(",")) if v]


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="smoke", help="smoke, quick, full, or a suite .toml path (default smoke)")
    p.add_argument("--workload", action="append", default=[], help="only these workloads (repeat or comma-separate)")
    p.add_argument("--optimizer", action="append", default=[], help="only these optimizers")
    p.add_argument("--kernel", action="append", default=[], help="only these kernel variants")
    p.add_argument("--threads", action="append", default=[], help="thread counts (replace the suite's)")
    p.add_argument("--batch", action="append", default=[], help="batch sizes (replace the suite's)")
    p.add_argument("--dtype", action="append", default=[], help="fp32 or bf16 (replace the suite's)")
    p.add_argument("--mode", action="append", default=[], help="eager, compile or channels_last (replace the suite's)")
    p.add_argument("--accel", action="append", default=[], help="cpu or cuda (replace the suite's)")
    p.add_argument("--steps", type=int, help="measured steps per case")
    p.add_argument("--warmup", type=int, help="warm-up steps per case (recorded, not summarised)")
    p.add_argument("--seed", type=int, help="seed for data, weights and case order")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Measure on-device training steps.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens (bundle pushes, retries)")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    bench = sub.add_parser("bench", help="run a suite on one or more devices and write a report")
    bench.add_argument("--device", action="append", default=[],
                       help="profile name under devices/ or a .toml path; repeat for several devices (default local)")
    _add_filters(bench)
    bench.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results directory (default ./results)")
    bench.add_argument("--run-id", help="name of the run directory (default: UTC time and a random suffix)")
    bench.add_argument("--csv", action="store_true", help="also write steps.csv and cases.csv")
    bench.add_argument("--onnx-inference", action="store_true",
                       help="after each case's training, export the model to ONNX and time ONNX Runtime "
                            "inference at every graph optimization level beside torch eager")
    bench.add_argument("--repeat", type=int, default=1,
                       help="run every case this many times, interleaved in rounds (default 1)")
    bench.add_argument("--inject-slowdown", type=float, default=0.0, metavar="FRACTION",
                       help="calibration aid: busy-wait this fraction of every step (e.g. 0.05)")
    bench.add_argument("--resume", type=Path, metavar="RUN",
                       help="continue a run: measure only its cases that are missing or failed")
    bench.add_argument("--no-report", action="store_true", help="skip the HTML report")
    bench.add_argument("--no-probe", action="store_true",
                       help="skip the device ceilings probe (memory bandwidth, matmul throughput)")
    bench.add_argument("--study", metavar="STUDY",
                       help="run a study instead of --suite: 'optimizers' (harness/suites/study.toml: "
                            "optimizers x lr grid x seeds to a target loss) or a study .toml path; "
                            "the filters narrow it, --seed replaces its seeds (docs/study.md)")

    sub.add_parser("list", help="workloads, optimizers, kernels, suites and devices")
    sub.add_parser("devices", help="device profiles and how each is reached")
    doctor = sub.add_parser("doctor", help="check that a device is ready to measure, with the fix for each problem")
    doctor.add_argument("--device", default="local", help="profile name or .toml path (default local)")

    from harness import cli_gate

    cli_gate.add_parsers(sub)
    from harness import cli_lab

    cli_lab.add_parsers(sub)
    bench.add_argument("--gate-against", metavar="BASELINE",
                       help="after the run, gate it against this baseline (exit 1 on a regression)")
    cli_gate.add_gate_options(bench)

    report = sub.add_parser("report", help="rebuild a report from stored runs")
    report.add_argument("runs", nargs="+", type=Path, help="run directories (combined into one report)")
    report.add_argument("--format", choices=("html", "md", "csv"), default="html")
    report.add_argument("--output", type=Path, help="output file or directory")
    return parser


def _filters(args: argparse.Namespace):
    from harness.plan import Filters

    def ints(values: list[str], flag: str) -> tuple[int, ...]:
        out = []
        for v in (x for s in values for x in _csv(s)):
            try:
                out.append(int(v))
            except ValueError:
                raise ConfigError(f"expected integers, got {v!r}", key=flag) from None
            if out[-1] < 1:
                raise ConfigError(f"must be ≥ 1, got {v}", key=flag)
        return tuple(out)

    for flag, value, minimum in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0), ("--seed", args.seed, 0)):
        if value is not None and value < minimum:
            raise ConfigError(f"must be ≥ {minimum}, got {value}", key=flag)
    return Filters(
        workloads=tuple(x for s in args.workload for x in _csv(s)),
        optimizers=tuple(x for s in args.optimizer for x in _csv(s)),
        kernels=tuple(x for s in args.kernel for x in _csv(s)),
        threads=ints(args.threads, "--threads"),
        batch=ints(args.batch, "--batch"),
        dtype=tuple(x for s in args.dtype for x in _csv(s)),
        modes=tuple(x for s in args.mode for x in _csv(s)),
        accel=tuple(x for s in args.accel for x in _csv(s)),
        steps=args.steps,
        warmup=args.warmup,
        seed=args.seed,
    )


def cmd_bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness import plan
    from harness.bench import execute, new_plan, resume_plan
    from harness.profiles import load_profile

    if args.resume:
        given = [f for f in ("device", "workload", "optimizer", "kernel", "threads", "batch", "dtype",
                             "mode", "accel", "study") if getattr(args, f)]
        given += [f for f in ("steps", "warmup", "seed", "run_id") if getattr(args, f) is not None]
        given += [f for f in ("repeat",) if args.repeat != 1] + [f for f in ("inject_slowdown",) if args.inject_slowdown]
        if given:
            raise ConfigError(f"--resume continues the run's own plan; drop --{given[0].replace('_', '-')}",
                              key="--resume")
        run_dir = args.resume if args.resume.exists() else args.out / args.resume
        bench_plan = resume_plan(run_dir, ["harness", *argv])
    else:
        names = [x for s in (args.device or ["local"]) for x in _csv(s)]
        if len(set(names)) != len(names):
            raise ConfigError(f"a device is named twice: {names}", key="--device")
        profiles = [load_profile(n) for n in names]
        filters = _filters(args)
        threads = profiles[0].cpu.threads or 1
        if args.study:
            from harness.study import STUDY_SUITE, load_study, study_cases

            study = load_study(STUDY_SUITE if args.study == "optimizers" else args.study)
            suite = study.suite
            cases = study_cases(study, filters, default_threads=threads)
        else:
            suite = plan.load_suite(args.suite)
            cases = plan.expand(suite, filters, default_threads=threads)
        if not 0.0 <= args.inject_slowdown <= 10.0:
            raise ConfigError(f"must be between 0 and 10, got {args.inject_slowdown}", key="--inject-slowdown")
        cases = [dataclasses.replace(c, slowdown=args.inject_slowdown, onnx_inference=args.onnx_inference)
                 for c in cases]
        seed = filters.seed if filters.seed is not None else int(suite.data.get("seed", 0))
        bench_plan = new_plan(profiles, plan.repeated(cases, args.repeat, seed), out=args.out, run_id=args.run_id,
                              suite=suite.name, seed=seed, argv=["harness", *argv],
                              probe=not args.no_probe,
                              extra={"study": args.study} if args.study else None)
    result = execute(bench_plan, csv=args.csv)
    run_dir = result.run_dir
    _print_cases(result.cases)
    failed = result.failed
    if bench_plan.manifest.get("study"):  # a new study run, or a resumed one
        from harness.study import analyze_study, format_result

        try:
            print(format_result(analyze_study(run_dir)))
        except Exception as exc:  # the measurements are stored; an analysis bug must not hide them
            logging.getLogger(__name__).debug("study analysis failed", exc_info=True)
            print(f"error: the study could not be analysed ({type(exc).__name__}: {exc}); the results "
                  f"are stored, retry with `python -c 'from harness.study import analyze_study; "
                  f"analyze_study(\"{run_dir}\")'`", file=sys.stderr)
            failed = True
    if not args.no_report:
        from reports import build_report

        try:
            path = build_report([run_dir], run_dir / "report.html")
            print(f"report: {path.resolve()}")
        except Exception as exc:  # the measurements are stored; a report bug must not hide them
            logging.getLogger(__name__).debug("report failed", exc_info=True)
            print(f"error: the report could not be built ({type(exc).__name__}: {exc}); the results "
                  f"are stored, rebuild it with `harness report {run_dir}`", file=sys.stderr)
            failed = True
    print(f"results: {run_dir.resolve()}")
    if args.gate_against:
        from harness.cli_gate import run_gate

        code = run_gate(args.gate_against, run_dir, args)
        return max(code, EXIT_FAILED if failed else EXIT_OK) if code != EXIT_USAGE else code
    return EXIT_FAILED if failed else EXIT_OK


def _print_cases(cases_df) -> None:
    if cases_df.empty:
        return
    for _, row in cases_df.sort_values(["device", "workload", "optimizer", "kernel"]).iterrows():
        if row["status"] == "ok":
            print(f"  {row['device']:<10} {row['case_id']:<48} median {row['median_step_ns'] / 1e6:8.2f} ms "
                  f"(p10 {row['p10_step_ns'] / 1e6:.2f}, p90 {row['p90_step_ns'] / 1e6:.2f})", file=sys.stderr)
        else:
            print(f"  {row['device']:<10} {row['case_id']:<48} {str(row['status']).upper()}: "
                  f"{row['error_kind']}: {str(row['error_message'])[:200]}", file=sys.stderr)
    flagged = cases_df[cases_df["warnings"].fillna("").astype(str) != ""] if "warnings" in cases_df else cases_df[:0]
    if len(flagged):
        print("stability warnings (stored with each case, repeated in the report):", file=sys.stderr)
        for _, row in flagged.iterrows():
            print(f"  {row['device']:<10} {row['case_id']:<48} {str(row['warnings']).replace(';', ', ')}",
                  file=sys.stderr)


def cmd_list(args: argparse.Namespace, argv: Sequence[str]) -> int:
    import workloads.models  # noqa: F401
    from harness.plan import known_suites, load_suite
    from harness.profiles import known_devices
    from workloads.optim import OPTIMIZERS, all_kernels
    from workloads.workload import WORKLOADS

    print("workloads:")
    for name in WORKLOADS:
        w = WORKLOADS.get(name)
        print(f"  {name:<20} {w.domain:<7} {w.description}")
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


def cmd_report(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from reports import build_report

    for run in args.runs:
        if not (run / "raw.jsonl").is_file() and not (run / "cases.parquet").is_file():
            raise ConfigError(f"{run} is not a run directory (no raw.jsonl or cases.parquet)", key="RUN")
    default = {"html": "report.html", "md": "report.md", "csv": "report-tables"}[args.format]
    out = args.output or (args.runs[0] / default)
    path = build_report(list(args.runs), out, fmt=args.format)
    print(path.resolve())
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.deploy import build_bundle
    from harness.doctor import format_checks, run_doctor
    from harness.profiles import load_profile

    profile = load_profile(args.device)
    checks = run_doctor(profile, build_bundle())
    print(f"{profile.name} ({profile.path})")
    print(format_checks(checks))
    essential = {"reachable", "python", "torch", "free space"}
    return EXIT_OK if all(c.ok for c in checks if c.name in essential) else EXIT_FAILED


def cmd_baseline(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.cli_gate import cmd_baseline as run

    return run(args, list(argv))


def cmd_gate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.cli_gate import cmd_gate as run

    return run(args, list(argv))


def cmd_calibrate(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.cli_lab import cmd_calibrate as run

    return run(args, list(argv))


def cmd_ab(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.cli_lab import cmd_ab as run

    return run(args, list(argv))


def cmd_merge(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from harness.cli_lab import cmd_merge as run

    return run(args, list(argv))


COMMANDS = {"calibrate": cmd_calibrate, "ab": cmd_ab, "merge": cmd_merge, "baseline": cmd_baseline, "gate": cmd_gate, "doctor": cmd_doctor, "bench": cmd_bench, "list": cmd_list, "devices": cmd_devices, "report": cmd_report}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
        return COMMANDS[args.command](args, args_list)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted: every line received so far is in raw.jsonl", file=sys.stderr)
        return 130
