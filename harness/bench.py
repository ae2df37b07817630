"""A bench run from plan to stored tables: new runs, resumed runs, and their outcome.

The CLI, the gate's re-runs, A/B and calibration all go through :func:`execute`.
"""

from __future__ import annotations

import dataclasses
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from harness import store
from harness.deploy import build_bundle
from harness.errors import ConfigError, HarnessError
from harness.manifest import new_manifest
from harness.plan import Case
from harness.profiles import Profile, load_profile
from harness.progress import Progress
from harness.run import DeviceOutcome, run_devices

FINISHED = ("ok", "wrong")  # a resumed run does not measure these again


@dataclass
class BenchPlan:
    run_dir: Path
    profiles: list[Profile]
    cases: dict[str, list[Case]]  # device name -> cases in run order
    manifest: dict[str, Any]
    first_attempt: dict[str, dict[tuple[str, int], int]] = field(default_factory=dict)
    probe: bool = True


@dataclass
class BenchResult:
    run_dir: Path
    outcomes: list[DeviceOutcome]
    cases: pd.DataFrame
    failed: bool


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(2)


def new_plan(
    profiles: list[Profile], order: list[Case], *, out: Path, run_id: str | None, suite: str,
    seed: int, argv: Sequence[str], probe: bool = True, extra: dict[str, Any] | None = None,
) -> BenchPlan:
    run_id = run_id or new_run_id()
    try:
        run_dir = store.make_run_dir(out, run_id)
    except FileExistsError:
        raise ConfigError(f"run directory {out / run_id} exists already; pick another --run-id "
                          "or continue it with --resume") from None
    manifest = new_manifest(run_id, profiles, suite=suite, seed=seed, order_seed=seed,
                            argv=argv, case_ids=[c.case_id for c in order])
    manifest["cases"] = [dataclasses.asdict(c) for c in order]
    manifest.update(extra or {})
    store.write_json(run_dir / "manifest.json", manifest)
    return BenchPlan(run_dir, profiles, {p.name: list(order) for p in profiles}, manifest, probe=probe)


def resume_plan(run_dir: Path, argv: Sequence[str]) -> BenchPlan:
    """The cases of an earlier run that are missing or failed, per device."""
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{run_dir} has no manifest.json; it is not a run directory", key="--resume")
    import json

    manifest = json.loads(manifest_path.read_text())
    if "cases" not in manifest:
        raise ConfigError(f"{run_dir} was written by an older harness without its case list; "
                          "it cannot be resumed, start a new run", key="--resume")
    profiles = [load_profile(d.get("path") or d["name"]) for d in manifest["devices"]]
    all_cases = [Case(**c) for c in manifest["cases"]]
    _, cases_df = store.build_tables(run_dir) if (run_dir / "raw.jsonl").exists() else (None, pd.DataFrame())
    done: set[tuple[str, str, int]] = set()
    if not cases_df.empty:
        finished = cases_df[cases_df["status"].isin(FINISHED)]
        done = set(zip(finished["device"], finished["case_id"], finished["repeat"], strict=True))
    seen = store.attempts_seen(run_dir / "raw.jsonl") if (run_dir / "raw.jsonl").exists() else {}
    todo = {p.name: [c for c in all_cases if (p.name, c.case_id, c.repeat) not in done] for p in profiles}
    first = {p.name: {(c.case_id, c.repeat): seen.get((p.name, c.case_id, c.repeat), 0) + 1
                      for c in todo[p.name]} for p in profiles}
    manifest.setdefault("resumed", []).append(
        {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": list(argv),
         "cases": {d: [c.case_id for c in cs] for d, cs in todo.items()}})
    store.write_json(manifest_path, manifest)
    return BenchPlan(run_dir, profiles, todo, manifest, first_attempt=first,
                     probe=not (run_dir / "probe.json").exists())


def execute(plan: BenchPlan, *, csv: bool = False) -> BenchResult:
    """Run the plan, then rebuild the tables from raw.jsonl and finish the manifest."""
    n = max((len(c) for c in plan.cases.values()), default=0)
    devices = ", ".join(p.name for p in plan.profiles)
    print(f"run {plan.run_dir.name}: {n} cases on {devices}", file=sys.stderr)
    bundle = build_bundle()
    raw = store.RawLog(plan.run_dir / "raw.jsonl")
    try:
        outcomes = run_devices(plan.profiles, plan.cases, bundle, raw, plan.run_dir,
                               lambda p, i, k: Progress(p.name, i, k), probe=plan.probe,
                               first_attempt=plan.first_attempt)
    finally:
        raw.close()
        if raw.error is None:  # after a failed write the disk is full: resume rebuilds the tables
            _, cases_df = store.write_tables(plan.run_dir, csv=csv)
    if raw.error is not None:  # the manifest stays "running": the run is not complete
        raise HarnessError(raw.error)
    manifest = plan.manifest
    manifest["status"] = "finished"
    manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest["device_outcomes"] = [vars(o) for o in outcomes]
    manifest["bundle"] = bundle.name
    store.write_json(plan.run_dir / "manifest.json", manifest)
    probes = [o.probe for o in outcomes if o.probe]
    if probes:
        store.write_json(plan.run_dir / "probe.json", probes[0] if len(probes) == 1 else probes)
    for o in outcomes:
        print(f"{o.device}: {o.status} ({o.cases_ok} ok, {o.cases_failed} failed; bundle "
              f"{bundle.name}: {o.bytes_pushed} bytes pushed)" + (f" — {o.message}" if o.message else ""),
              file=sys.stderr)
    failed = any(o.status != "ok" for o in outcomes) or (
        not cases_df.empty and (cases_df["status"] != "ok").any()
    )
    return BenchResult(plan.run_dir, outcomes, cases_df, failed)
