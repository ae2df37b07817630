"""``harness baseline save|list`` and ``harness gate``: the CI regression gate's command line.

Exit codes of the gate: 0 pass (improvements and inconclusive cases included), 1 a
regression, 2 an error (bad input, a failed or wrong case, a missing case unless
``--allow-missing``, nothing compared at all). Inconclusive cases are
measured again only when asked (``--rerun-budget N``, default 0), when the candidate's device is reachable:
the new samples join the candidate's before the gate decides again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from harness.cli_options import DEFAULT_RESULTS  # where run ids are looked up
from harness.errors import ConfigError, HarnessError

DEFAULT_BASELINES = Path(os.environ.get("HARNESS_BASELINES", "baselines"))



def add_parsers(sub: Any) -> None:
    baseline = sub.add_parser("baseline", help="save or list stored baselines")
    bsub = baseline.add_subparsers(dest="baseline_command")
    save = bsub.add_parser("save", help="store a run as a baseline (baselines/<device>/<name>/)")
    save.add_argument("--run", type=Path, required=True, help="results/<run-id> directory")
    save.add_argument("--name", default="main", help="baseline name (default main)")
    save.add_argument("--dir", type=Path, default=DEFAULT_BASELINES, help="baselines directory (default ./baselines)")
    save.add_argument("--force", action="store_true", help="replace a baseline of the same name")
    lst = bsub.add_parser("list", help="stored baselines per device")
    lst.add_argument("--dir", type=Path, default=DEFAULT_BASELINES)

    g = sub.add_parser("gate", help="compare a candidate run with a baseline; exit 1 on a regression")
    g.add_argument("--baseline", required=True, help="baseline directory, run directory, or a baseline name")
    g.add_argument("--candidate", type=Path, required=True,
                   help="candidate results/<run-id> directory, or a pytest-benchmark JSON file "
                        "(then --baseline is one too)")
    add_gate_options(g)


def change_fraction(text: str) -> float:
    """``5%`` or ``0.05`` as a fraction in (0, 1) (an argparse type)."""
    value = text.strip()
    try:
        number = float(value[:-1]) / 100.0 if value.endswith("%") else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a change; write e.g. 5%") from None
    if not 0.0 < number < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must lie between 0 % and 100 %; write e.g. 5%")
    return number


def add_gate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--floor", action="append", default=[],
                   help="smallest change that counts, per metric, e.g. step_time:5%% (defaults: time 5%%, energy 5%%, memory 2%%)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="run-level false-alarm rate over all cases x metrics (Holm; default 0.05)")
    p.add_argument("--allow-missing", action="store_true",
                   help="do not fail when baseline cases are missing or nothing could be compared")
    p.add_argument("--detect", type=change_fraction, metavar="CHANGE",
                   help="the change the run must be able to detect (e.g. 5%%): bench chooses "
                        "processes and steps from the device's calibration; both say what was achieved")
    p.add_argument("--calibration", type=Path, metavar="FILE",
                   help="the device's variance components (default <results>/calibration/<device>.json "
                        "when it exists; written by `harness calibrate`)")
    p.add_argument("--gate-estimated", action="store_true", help="also gate estimated (not measured) energy")
    p.add_argument("--run-drift", type=float, default=0.0, metavar="FRACTION",
                   help="take this between-process spread of a case's log median as known for every "
                        "case (e.g. 0.03) instead of the calibration's (its spread between runs "
                        "still applies)")
    p.add_argument("--rerun-budget", type=int, default=0, metavar="N",
                   help="re-measure inconclusive cases up to N rounds when the device is reachable "
                        "(default 0: decide on what was measured)")
    p.add_argument("--baselines-dir", type=Path, default=DEFAULT_BASELINES)
    p.add_argument("--junit", type=Path, help="JUnit XML path (default <candidate>/junit.xml)")
    p.add_argument("--summary", type=Path, help="Markdown summary path (default <candidate>/summary.md)")


def cmd_baseline(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.baseline import list_baselines, save_baseline

    if args.baseline_command == "save":
        from harness.workflow import run_dir_of

        path = save_baseline(run_dir_of(args.run, DEFAULT_RESULTS), args.dir, args.name, overwrite=args.force)
        print(path)
        return 0
    if args.baseline_command == "list":
        found = list_baselines(args.dir)
        if not found:
            print(f"no baselines under {args.dir}")
        for b in found:
            dirty = " (dirty)" if b.dirty else ""
            number = f"#{b.number}" if b.number else ""
            print(f"{b.device:<16} {b.name + number:<20} run {b.run_id}  commit {b.commit[:12]}{dirty}  "
                  f"saved {b.saved}  (earlier ones: `harness trend --baseline {b.name}`)")
        return 0
    raise ConfigError("say `harness baseline save --run RUN` or `harness baseline list`")


def _load_baseline(spec: str, baselines_dir: Path, device: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    from harness.baseline import load_baseline, read_run

    path = Path(spec)
    if path.is_dir():
        return read_run(path)
    return load_baseline(spec, baselines_dir, device)


def _rerun(candidate: Path, case_ids: list[str], round_no: int) -> Path | None:
    """Measure the candidate's inconclusive cases again, into a sibling run directory."""
    from harness.bench import execute, new_plan
    from harness.plan import Case
    from harness.profiles import load_profile

    manifest = json.loads((candidate / "manifest.json").read_text())
    if "cases" not in manifest or "devices" not in manifest:
        return None
    profiles = [load_profile(d.get("path") or d["name"]) for d in manifest["devices"]]
    cases = [Case(**c) for c in manifest["cases"]]
    wanted = {k.split("/")[-1] for k in case_ids}  # several devices: ids are <device>/<case_id>
    cases = [c for c in cases if c.case_id in wanted]
    if not cases:
        return None
    plan = new_plan(profiles, cases, out=candidate.parent, run_id=f"{candidate.name}-rerun{round_no}",
                    suite=str(manifest.get("suite", "")), seed=int(manifest.get("seed", 0)),
                    argv=["harness", "gate", "(re-run)"], probe=False)
    result = execute(plan)
    return result.run_dir


def run_gate(baseline: str, candidate: Path, args: argparse.Namespace) -> int:
    if not 0.0 <= args.run_drift < 1.0:
        raise ConfigError(f"must be a fraction in [0, 1), got {args.run_drift}", key="--run-drift")
    from harness.baseline import read_run
    from harness.gate import gate, inconclusive_cases

    if str(candidate).endswith(".json"):  # pytest-benchmark micro-benchmarks (nox -s microbench)
        return _gate_microbench(Path(baseline), candidate, args)
    c_steps, c_cases, c_manifest = read_run(candidate)
    devices = sorted(set(c_cases["device"])) if "device" in c_cases else []
    device = devices[0] if devices else ""
    b_steps, b_cases, b_manifest = _load_baseline(baseline, args.baselines_dir, device)

    priors = _priors(args, candidate, device)

    def decide() -> Any:
        return gate(b_steps, b_cases, c_steps, c_cases, floors=args.floor or None, alpha=args.alpha,
                    gate_estimated=args.gate_estimated, run_drift=args.run_drift,
                    baseline_manifest=b_manifest, candidate_manifest=c_manifest,
                    allow_missing=args.allow_missing, priors=priors)

    result = decide()
    for round_no in range(1, max(args.rerun_budget, 0) + 1):
        pending = inconclusive_cases(result)
        if not pending:
            break
        print(f"gate: {len(pending)} inconclusive case(s); measuring them again (round {round_no} of "
              f"{args.rerun_budget})", file=sys.stderr)
        try:
            extra = _rerun(candidate, pending, round_no)
        except HarnessError as exc:
            print(f"gate: cannot re-measure ({exc}); deciding on what was measured", file=sys.stderr)
            break
        if extra is None:
            break
        e_steps, e_cases, _ = read_run(extra)
        c_steps = pd.concat([c_steps, e_steps], ignore_index=True)
        c_cases = pd.concat([c_cases, e_cases], ignore_index=True)
        result = decide()
    return _publish(result, candidate if candidate.is_dir() else candidate.parent, args)


def _priors(args: argparse.Namespace, candidate: Path, device: str) -> Any:
    """``priors(case, metric)`` from the device's calibration file, or None without one."""
    from harness.calibration_store import calibration_path, priors_from, read_calibration_file

    path = args.calibration or (calibration_path(candidate.parent, device) if device else None)
    if path is None or (args.calibration is None and not path.is_file()):
        return None
    if not path.is_file():
        raise ConfigError(f"no calibration file at {path}; run `harness calibrate` first",
                          key="--calibration")
    print(f"gate: using the variance components in {path}", file=sys.stderr)
    return priors_from(read_calibration_file(path))


def _gate_microbench(baseline: Path, candidate: Path, args: argparse.Namespace) -> int:
    """Gate two pytest-benchmark JSON files (``--benchmark-json``) on the metric ``time``."""
    from harness.baseline import load_pytest_benchmark
    from harness.gate import gate

    floors = args.floor or ["time:5%"]
    result = gate(load_pytest_benchmark(baseline), None, load_pytest_benchmark(candidate), None,
                  floors=floors, alpha=args.alpha, metrics=("time",),
                  allow_missing=args.allow_missing)
    return _publish(result, candidate.parent, args)


def _publish(result: Any, out_dir: Path, args: argparse.Namespace) -> int:
    """Write summary.md and junit.xml, append the GitHub step summary, print the verdicts."""
    from harness.ci_outputs import append_step_summary, render_markdown, write_junit
    from harness.gate import VERDICTS
    from harness.store import atomic_write

    markdown = render_markdown(result)
    summary_path = args.summary or out_dir / "summary.md"
    atomic_write(summary_path, markdown)
    junit_path = write_junit(result, args.junit or out_dir / "junit.xml")
    appended = append_step_summary(markdown)
    for w in result.warnings:
        print(f"WARNING: {w}", file=sys.stderr)
    counts = {v: result.count(v) for v in VERDICTS}
    print("gate: " + (", ".join(f"{n} {v}" for v, n in counts.items() if n) or "nothing compared"),
          file=sys.stderr)
    from harness.ci_outputs import detectable_sentence

    print(f"gate: {detectable_sentence(result)}", file=sys.stderr)
    target = getattr(args, "detect", None)
    if target:
        for name, mde in result.detectable:
            met = "met" if mde <= target else "NOT met"
            print(f"gate: --detect {target:.0%}: {name} detectable from {mde:.1%}: {met}",
                  file=sys.stderr)
    for v in result.verdicts:
        if v.verdict == "regression":
            print(f"  REGRESSION {v.case_id} {v.metric}: {v.reason}", file=sys.stderr)
    print(f"summary: {summary_path}" + (f" (appended to {appended})" if appended else ""))
    print(f"junit: {junit_path}")
    return result.exit_code


def cmd_gate(args: argparse.Namespace, argv: list[str]) -> int:
    from harness.workflow import run_dir_of

    candidate = args.candidate if str(args.candidate).endswith(".json") else run_dir_of(
        args.candidate, DEFAULT_RESULTS)  # a run id works where a run path does
    return run_gate(args.baseline, candidate, args)
