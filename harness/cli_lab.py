"""``harness calibrate``, ``harness ab`` and ``harness merge``: the device lab's commands.

``calibrate`` measures how often the gate cries wolf on a device and how small a slowdown
it catches; ``ab`` compares two revisions or two configurations on one device, interleaved;
``merge`` combines the runs of several hosts (one CI job per device) into one run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from harness.cli_options import DEFAULT_RESULTS, Parser, add_filters, filters_from
from harness.errors import ConfigError
from harness.selection import Selection, select
from harness.workflow import run_dir_of


def add_parsers(sub: Any) -> None:
    cal = sub.add_parser("calibrate", help="measure a device's variance components and the gate's "
                                           "false-alarm and detection rates")
    cal.add_argument("--device", default="local", help="profile name or .toml path (default local)")
    add_filters(cal)
    cal.add_argument("--trials", type=int, default=20,
                     help="A/A trials: the cases run in trials + 1 blocks, adjacent blocks gated (default 20)")
    cal.add_argument("--processes", "--repeats", dest="repeats", type=int, default=None, metavar="N",
                     help="agent processes per case in each block (default: the suite's "
                          "processes, as bench; 3 when the suite sets none)")
    cal.add_argument("--slowdown", type=float, default=0.10,
                     help="slowdown injected post hoc into one case's step per trial (default 0.10)")
    cal.add_argument("--paired-slowdown", type=float, default=0.03,
                     help="slowdown injected post hoc into one in-process twin's update (default 0.03)")
    cal.add_argument("--aa-replicas", type=int, default=0, metavar="N",
                     help="N in-process twins of every case (paired A/A trials), as bench --aa-replicas")
    cal.add_argument("--isolate", action="store_true", help="every case in its own process")
    cal.add_argument("--alpha", type=float, default=0.05,
                     help="the gate's run-level false-alarm rate (default 0.05)")
    cal.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results directory (default ./results)")
    cal.add_argument("--run-id", help="name of the run directory")
    cal.add_argument("--from", dest="from_run", type=Path, nargs="+", metavar="RUN",
                     help="measure nothing: analyse a stored calibration run again, or stored bench "
                          "runs as the blocks (adjacent runs are the A/A pairs)")

    ab = sub.add_parser("ab", help="compare two revisions or configurations on one device, interleaved")
    ab.add_argument("--device", default="local", help="profile name or .toml path (default local)")
    add_filters(ab)
    ab.add_argument("--a", dest="rev_a", metavar="REV", help="git revision of side A's agent (default: working tree)")
    ab.add_argument("--b", dest="rev_b", metavar="REV", help="git revision of side B's agent (default: working tree)")
    ab.add_argument("--a-args", default="", help='extra filters for side A, e.g. "--kernel foreach"')
    ab.add_argument("--b-args", default="", help='extra filters for side B, e.g. "--kernel fused"')
    ab.add_argument("--rounds", type=int, default=3, help="repetitions of every case per side (default 3)")
    ab.add_argument("--pause-s", type=float, default=0.0,
                    help="sleep between cases (the profile's [thermal] cooldown_c runs in the agent too)")
    ab.add_argument("--out", type=Path, default=DEFAULT_RESULTS, help="results directory (default ./results)")
    ab.add_argument("--run-id", help="name of the A/B directory (holds runs a/ and b/)")
    ab.add_argument("--no-report", action="store_true", help="skip the HTML report")
    from harness.cli_gate import add_gate_options

    add_gate_options(ab)

    merge = sub.add_parser("merge", help="combine runs from several hosts into one run directory")
    merge.add_argument("runs", nargs="+", type=Path, help="run directories (or stored baselines) to combine")
    merge.add_argument("--out", type=Path, required=True, help="the merged run directory (must not exist)")
    merge.add_argument("--renumber", action="store_true",
                       help="renumber repeats when two runs hold the same device, case and repeat")
    merge.add_argument("--no-report", action="store_true", help="skip the HTML report")


def _selection(args: argparse.Namespace, profile: Any, extra: str = "") -> Selection:
    """The cases of the filters, with ``extra`` filter arguments (``--a-args``) on top."""
    if extra:
        side = Parser(prog="harness ab", add_help=False)
        add_filters(side)
        given, defaults = vars(side.parse_args(shlex.split(extra))), vars(side.parse_args([]))
        merged = argparse.Namespace(**vars(args))
        for key, value in given.items():
            if value != defaults[key]:
                setattr(merged, key, value)
        args = merged
    chosen = select(filters_from(args), suite=args.suite, default_threads=profile.cpu.threads or 1)
    for note in chosen.notes:
        print(f"note: {note}", file=sys.stderr)
    return chosen


def cmd_calibrate(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.calibrate_run import CalibrationSettings, format_table, reanalyse, run_calibration
    from harness.plan import load_suite
    from harness.profiles import load_profile
    from harness.schedule import DEFAULT_PROCESSES, processes_for

    repeats = args.repeats if args.from_run else processes_for(
        dict(load_suite(args.suite).data), args.repeats, args.suite)
    settings = CalibrationSettings(
        trials=args.trials, repeats=repeats or DEFAULT_PROCESSES, slowdown=args.slowdown,
        paired_slowdown=args.paired_slowdown, aa_replicas=args.aa_replicas, isolate=args.isolate,
        alpha=args.alpha)
    if args.from_run:
        result = reanalyse([run_dir_of(run, args.out) for run in args.from_run], settings)
    else:
        profile = load_profile(args.device)
        chosen = _selection(args, profile)
        result = run_calibration(profile, list(chosen.cases), settings, out=args.out,
                                 run_id=args.run_id, seed=chosen.seed, suite=chosen.suite,
                                 argv=["harness", *argv])
    print(format_table(result.table, result.summary))
    print(f"calibration: {(result.run_dir / 'calibration.json').resolve()}")
    if result.device_file is not None:
        print(f"variance components: {result.device_file.resolve()}")
    return 1 if result.failed else 0


def cmd_ab(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.ab import Side, run_ab
    from harness.profiles import load_profile

    profile = load_profile(args.device)
    if not (args.rev_a or args.rev_b or args.a_args or args.b_args):
        raise ConfigError("give two revisions (--a REV --b REV) or two configurations "
                          "(--a-args ... --b-args ...)", key="--a")
    a = _selection(args, profile, args.a_args)
    b = _selection(args, profile, args.b_args)
    result = run_ab(profile, Side("a", args.rev_a, args.a_args, list(a.cases)),
                    Side("b", args.rev_b, args.b_args, list(b.cases)), rounds=args.rounds,
                    pause_s=args.pause_s, out=args.out, run_id=args.run_id, seed=a.seed, suite=a.suite,
                    argv=["harness", *argv], floors=args.floor or None, alpha=args.alpha,
                    gate_estimated=args.gate_estimated, summary=args.summary, junit=args.junit,
                    report=not args.no_report)
    for line in result.lines:
        print(line, file=sys.stderr)
    print(f"a: {result.a_dir.resolve()}")
    print(f"b: {result.b_dir.resolve()}")
    print(f"summary: {result.summary}")
    if result.report:
        print(f"report: {result.report.resolve()}")
    return result.exit_code


def cmd_merge(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.merge import merge_runs

    out = merge_runs([run_dir_of(r, DEFAULT_RESULTS) for r in args.runs], args.out, renumber=args.renumber)
    if not args.no_report:
        from reports import build_report

        print(f"report: {build_report([out], out / 'report.html').resolve()}")
    print(f"merged: {out.resolve()}")
    return 0
