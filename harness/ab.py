"""``harness ab``: two revisions or two configurations on one device, interleaved.

Side A and side B are each a list of cases (paired by position) and an agent bundle: the
working tree's, or one built from ``git archive REV workloads`` of this repository. The
cases run in rounds; each round runs every pair once, A then B in even rounds and B then A
in odd ones (ABBA), so a linear drift (heat, a neighbour's load) adds the same to both
sides. The two sides are stored as two ordinary run directories ``<run-id>/a`` and
``<run-id>/b``, B is gated against A with :func:`harness.gate.gate` — round r's A and B
processes ran back to back, so each round's log-ratio is one paired unit
(``paired_by_repeat``): drift between rounds cancels —, and one report shows
both. When the two sides' case ids differ (two configurations), each pair is gated under
the label ``"<a id> vs <b id>"``.

The harness side (scheduling, storage, statistics) is the working tree's for both sides:
only the agent differs between revisions, which is what runs on the device.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness import store
from harness.bench import BenchPlan, new_plan
from harness.deploy import CACHE_DIR, Bundle, build_bundle
from harness.errors import ConfigError, DeviceBusy, DeviceError
from harness.limits import check_name
from harness.manifest import REPO_DIR
from harness.plan import Case, shuffled
from harness.profiles import Profile
from harness.progress import Progress
from harness.run import Sink, run_device
from harness.schedule import Unit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Side:
    """One side of the comparison: its label, git revision (None: working tree), the
    filter arguments it was given, and its cases."""

    label: str
    rev: str | None
    args: str
    cases: Sequence[Case]


@dataclass(frozen=True)
class ABResult:
    a_dir: Path
    b_dir: Path
    exit_code: int  # the gate's: 0 pass, 1 regression, 2 error
    summary: Path
    junit: Path
    report: Path | None
    lines: tuple[str, ...]  # what to tell the person: counts, regressions, problems


def bundle_for(rev: str | None, cache_dir: Path = CACHE_DIR, repo: Path = REPO_DIR) -> Bundle:
    """The agent bundle of a git revision of this repository (None: the working tree)."""
    if rev is None:
        return build_bundle(cache_dir=cache_dir)
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                           cwd=repo, capture_output=True, text=True, timeout=30)
    if found.returncode != 0:
        raise ConfigError(f"{rev!r} is not a git revision of {repo}; give a commit, tag or branch "
                          "(`git log --oneline`)", key="--a/--b")
    archive = subprocess.run(["git", "archive", found.stdout.strip(), "workloads"], cwd=repo,
                             capture_output=True, timeout=120)
    if archive.returncode != 0:
        raise ConfigError(f"revision {rev!r} has no workloads package to build an agent from: "
                          f"{archive.stderr.decode(errors='replace').strip()}", key="--a/--b")
    with tempfile.TemporaryDirectory(prefix="ab-rev-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        return build_bundle(Path(tmp) / "workloads", cache_dir)


def schedule(n_pairs: int, rounds: int, seed: int) -> list[tuple[int, int, int]]:
    """(round, side 0=A/1=B, pair index) in run order: every pair once per round, pairs
    shuffled per round, A first in even rounds and B first in odd ones."""
    order = []
    for r in range(rounds):
        sides = (0, 1) if r % 2 == 0 else (1, 0)
        for i in shuffled(range(n_pairs), seed + r):
            order += [(r, s, i) for s in sides]
    return order


def run_ab(profile: Profile, a: Side, b: Side, *, rounds: int, pause_s: float, out: Path,
           run_id: str | None, seed: int, suite: str, argv: Sequence[str],
           floors: Any = None, alpha: float = 0.01, gate_estimated: bool = False,
           summary: Path | None = None, junit: Path | None = None, report: bool = True) -> ABResult:
    """Measure both sides interleaved on one device, gate B against A, write the report."""
    if len(a.cases) != len(b.cases):
        raise ConfigError(f"side A has {len(a.cases)} cases and side B {len(b.cases)}; the two "
                          "configurations must expand to the same number of cases to pair them",
                          key="--a-args/--b-args")
    if rounds < 1:
        raise ConfigError(f"must be ≥ 1, got {rounds}", key="--rounds")
    if pause_s < 0:
        raise ConfigError(f"must be ≥ 0 seconds, got {pause_s}", key="--pause-s")
    sides = (a, b)
    bundles = [bundle_for(s.rev) for s in sides]
    timeline = [(s, dataclasses.replace(sides[s].cases[i], repeat=r))
                 for r, s, i in schedule(len(a.cases), rounds, seed)]
    pairs = [(x.case_id, y.case_id) for x, y in zip(a.cases, b.cases, strict=True)]
    parent = out / check_name(run_id or time.strftime("ab-%Y%m%dT%H%M%SZ", time.gmtime()),
                              source="command line", key="--run-id")
    if parent.exists():
        raise ConfigError(f"{parent} exists already; pick another --run-id", key="--run-id")
    parent.mkdir(parents=True)
    plans = [new_plan([profile], [c for s, c in timeline if s == k], out=parent, run_id=side.label,
                      suite=suite, seed=seed, argv=argv, probe=False,
                      extra={"ab": {"side": side.label, "rev": side.rev, "args": side.args,
                                    "bundle": bundles[k].name, "rounds": rounds, "pairs": pairs}})
             for k, side in enumerate(sides)]
    counts = _measure(profile, timeline, bundles, plans, pause_s)
    for k, plan in enumerate(plans):
        _finish(plan, bundles[k], counts[k])
    return _gate_and_report(plans[0].run_dir, plans[1].run_dir, parent, pairs, floors=floors,
                            alpha=alpha, gate_estimated=gate_estimated, summary=summary, junit=junit,
                            report=report)


def _measure(profile: Profile, order: Sequence[tuple[int, Case]], bundles: Sequence[Bundle],
             plans: Sequence[BenchPlan], pause_s: float) -> list[dict[str, int]]:
    """Run the interleaved schedule through the bench's device loop (its lock, retries and
    orphan reaping), each side's agent into its own run directory; (ok, failed) per side."""
    raws = [store.RawLog(p.run_dir / "raw.jsonl") for p in plans]
    sinks = [Sink(bundle, raw, plan.run_dir / "logs") for bundle, raw, plan in zip(bundles, raws, plans, strict=True)]
    units = [Unit("", (case,), case.repeat, side) for side, case in order]
    progress = Progress(profile.name, 0, len(units))
    counts = [{"ok": 0, "failed": 0} for _ in plans]
    try:
        outcome = run_device(profile, units, bundles[0], raws[0], plans[0].run_dir.parent, progress,
                             probe=False, sinks=sinks, pause_s=pause_s)
    finally:
        for k, (raw, plan) in enumerate(zip(raws, plans, strict=True)):
            raw.close()
            _, cases = store.write_tables(plan.run_dir)
            if not cases.empty:
                ok = int((cases["status"] == "ok").sum())
                counts[k] = {"ok": ok, "failed": len(cases) - ok}
    if outcome.status == "busy":
        raise DeviceBusy(outcome.message)
    if outcome.status not in ("ok", "some-failed"):
        raise DeviceError(f"{profile.name}: {outcome.message}")
    return counts


def _finish(plan: BenchPlan, bundle: Bundle, counts: Mapping[str, int]) -> None:
    manifest = plan.manifest
    manifest["status"] = "finished"
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest["bundle"] = bundle.name
    manifest["device_outcomes"] = [{"device": plan.profiles[0].name, "cases_ok": counts["ok"],
                                    "cases_failed": counts["failed"],
                                    "status": "ok" if not counts["failed"] else "some-failed"}]
    store.write_json(plan.run_dir / "manifest.json", manifest)


def pair_labels(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Case id -> gate label for each side: the id itself when both sides share it,
    ``"<a id> vs <b id>"`` when the two configurations differ."""
    a_map, b_map = {}, {}
    for x, y in pairs:
        label = x if x == y else f"{x} vs {y}"
        a_map[x], b_map[y] = label, label
    return a_map, b_map


def _relabel(frame: pd.DataFrame, mapping: Mapping[str, str]) -> pd.DataFrame:
    frame = frame.copy()
    frame["case_id"] = frame["case_id"].astype(str).map(lambda c: mapping.get(c, c))
    return frame


def _gate_and_report(a_dir: Path, b_dir: Path, parent: Path, pairs: Sequence[tuple[str, str]], *,
                     floors: Any, alpha: float,
                     gate_estimated: bool, summary: Path | None, junit: Path | None,
                     report: bool) -> ABResult:
    from harness.ci_outputs import append_step_summary, render_markdown, write_junit
    from harness.gate import VERDICTS, gate

    a_steps, a_cases, a_manifest = store.load_run(a_dir)
    b_steps, b_cases, b_manifest = store.load_run(b_dir)
    a_map, b_map = pair_labels(pairs)
    result = gate(_relabel(a_steps, a_map), _relabel(a_cases, a_map), _relabel(b_steps, b_map),
                  _relabel(b_cases, b_map), floors=floors, alpha=alpha, gate_estimated=gate_estimated,
                  baseline_manifest=a_manifest, candidate_manifest=b_manifest,
                  paired_by_repeat=True)  # round r's A and B processes ran back to back
    markdown = render_markdown(result, title="A/B: B against A")
    summary_path = summary or parent / "summary.md"
    store.atomic_write(summary_path, markdown)
    junit_path = write_junit(result, junit or parent / "junit.xml")
    append_step_summary(markdown)
    lines = [f"WARNING: {w}" for w in result.warnings]
    lines.append("ab: " + ", ".join(f"{result.count(v)} {v}" for v in VERDICTS if result.count(v)))
    lines += [f"  {v.verdict.upper()} {v.case_id} {v.metric}: {v.reason}" for v in result.verdicts
              if v.verdict in ("regression", "improvement", "error")]
    report_path = None
    if report:
        from reports import build_report

        try:
            report_path = build_report([a_dir, b_dir], parent / "report.html")
        except Exception as exc:  # the measurements are stored; a report bug must not hide them
            lines.append(f"error: the report could not be built ({type(exc).__name__}: {exc}); "
                         f"rebuild it with `harness report {a_dir} {b_dir}`")
    return ABResult(a_dir, b_dir, result.exit_code, summary_path, junit_path, report_path, tuple(lines))
