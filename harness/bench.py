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
from harness.manifest import new_manifest, redact_manifest
from harness.plan import Case
from harness.profiles import Profile, load_profile
from harness.progress import Progress
from harness.run import DeviceOutcome, run_devices
from harness.schedule import Unit, lone

FINISHED = ("ok", "wrong")  # a resumed run does not measure these again


@dataclass
class BenchPlan:
    run_dir: Path
    profiles: list[Profile]
    cases: dict[str, list[Unit]]  # device name -> agent processes in run order
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
    profiles: list[Profile], order: Sequence[Case] | Sequence[Unit], *, out: Path, run_id: str | None,
    suite: str, seed: int, argv: Sequence[str], probe: bool = True, extra: dict[str, Any] | None = None,
) -> BenchPlan:
    """A new run directory and manifest for ``order``: agent processes (harness/schedule.py),
    or cases, each then run alone in the given order."""
    units = [u if isinstance(u, Unit) else lone([u])[0] for u in order]
    run_id = run_id or new_run_id()
    try:
        run_dir = store.make_run_dir(out, run_id)
    except FileExistsError:
        raise ConfigError(f"run directory {out / run_id} exists already; pick another --run-id "
                          "or continue it with --resume") from None
    cases = [c for u in units for c in u.cases]
    manifest = new_manifest(run_id, profiles, suite=suite, seed=seed, order_seed=seed,
                            argv=argv, case_ids=[c.case_id for c in cases])
    manifest["cases"] = [dataclasses.asdict(c) for c in cases]
    manifest["probe"] = probe  # --resume keeps --no-probe
    # how the cases above (in order) fall into agent processes: [group, repeat, n cases, side]
    manifest["processes"] = [[u.group, u.repeat, len(u.cases), u.side] for u in units]
    manifest.update(extra or {})
    store.write_json(run_dir / "manifest.json", manifest)
    return BenchPlan(run_dir, profiles, {p.name: list(units) for p in profiles}, manifest, probe=probe)


def manifest_units(manifest: dict[str, Any]) -> list[Unit]:
    """The agent processes a manifest planned (a run from before process groups: one per case)."""
    cases = [Case(**c) for c in manifest["cases"]]
    layout = manifest.get("processes")
    if layout is None:
        return lone(cases)
    units, i = [], 0
    for group, repeat, n, side in layout:
        units.append(Unit(group, tuple(cases[i:i + n]), repeat, side))
        i += n
    return units


def resume_plan(run_dir: Path, argv: Sequence[str]) -> BenchPlan:
    """The agent processes of an earlier run, per device, narrowed to their cases that are
    missing or failed; a group that lost all but one case runs that case alone."""
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{run_dir} has no manifest.json; it is not a run directory", key="--resume")
    import json

    manifest = redact_manifest(json.loads(manifest_path.read_text()))
    if "cases" not in manifest:
        raise ConfigError(f"{run_dir} was written by an older harness without its case list; "
                          "it cannot be resumed, start a new run", key="--resume")
    profiles = [load_profile(d.get("path") or d["name"]) for d in manifest["devices"]]
    all_units = manifest_units(manifest)
    _, cases_df = store.build_tables(run_dir) if (run_dir / "raw.jsonl").exists() else (None, pd.DataFrame())
    done: set[tuple[str, str, int]] = set()
    if not cases_df.empty:
        finished = cases_df[cases_df["status"].isin(FINISHED)]
        done = set(zip(finished["device"], finished["case_id"], finished["repeat"], strict=True))
    seen = store.attempts_seen(run_dir / "raw.jsonl") if (run_dir / "raw.jsonl").exists() else {}
    todo: dict[str, list[Unit]] = {}
    first: dict[str, dict[tuple[str, int], int]] = {}
    for p in profiles:
        todo[p.name], first[p.name] = [], {}
        for unit in all_units:
            left = tuple(c for c in unit.cases if (p.name, c.case_id, c.repeat) not in done)
            if not left:
                continue
            narrowed = dataclasses.replace(unit, group=unit.group if len(left) > 1 else "", cases=left)
            todo[p.name].append(narrowed)
            # after every attempt of any of its cases: process ids stay unique in the run
            first[p.name][(narrowed.key, narrowed.repeat)] = 1 + max(
                seen.get((p.name, c.case_id, c.repeat), 0) for c in unit.cases)
    manifest.setdefault("resumed", []).append(
        {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": list(argv),
         "cases": {d: [c.case_id for u in us for c in u.cases] for d, us in todo.items()}})
    store.write_json(manifest_path, manifest)
    return BenchPlan(run_dir, profiles, todo, manifest, first_attempt=first,
                     probe=bool(manifest.get("probe", True)) and not (run_dir / "probe.json").exists())


def execute(plan: BenchPlan, *, csv: bool = False) -> BenchResult:
    """Run the plan, then rebuild the tables from raw.jsonl and finish the manifest."""
    n = max((sum(len(u.cases) for u in us) for us in plan.cases.values()), default=0)
    k = max((len(us) for us in plan.cases.values()), default=0)
    devices = ", ".join(p.name for p in plan.profiles)
    print(f"run {plan.run_dir.name}: {n} cases in {k} agent processes on {devices}", file=sys.stderr)
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
    manifest["device_outcomes"] = merged_outcomes(manifest, outcomes, cases_df)
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
    refused = [o for o in outcomes if o.status == "config-error"]
    if refused:  # stored and finished; a configuration error still exits 2, not 1
        raise ConfigError("; ".join(f"{o.device}: {o.message}" for o in refused))
    return BenchResult(plan.run_dir, outcomes, cases_df, failed)


def merged_outcomes(manifest: dict[str, Any], outcomes: list[DeviceOutcome],
                    cases_df: pd.DataFrame) -> list[dict[str, Any]]:
    """Each device's outcome over every pass of the run (the first and each --resume).

    The passes are kept in ``manifest["passes"]``; the merged counts come from the final
    cases table, the status from the last pass, and pushed bytes add up.
    """
    passes = manifest.setdefault("passes", [])
    passes.append({"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "device_outcomes": [vars(o) for o in outcomes]})
    merged = []
    for o in outcomes:
        rows = cases_df[cases_df["device"] == o.device] if not cases_df.empty else cases_df
        ok = int((rows["status"] == "ok").sum()) if len(rows) else 0
        failed = len(rows) - ok
        status = o.status
        if status in ("ok", "some-failed"):
            status = "ok" if failed == 0 else "some-failed"
        pushed = sum(d.get("bytes_pushed", 0) for p in passes for d in p["device_outcomes"]
                     if d.get("device") == o.device)
        merged.append({**vars(o), "status": status, "cases_ok": ok, "cases_failed": failed,
                       "bytes_pushed": pushed, "passes": len(passes)})
    return merged
