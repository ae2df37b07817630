"""Combine runs from several hosts into one run directory (``harness merge``).

In a device lab each device is measured by its own CI job; the gate and the report want one
run. Merging keeps every record as it was measured:

- ``raw.jsonl``: the sources' envelopes concatenated, each tagged with ``source_run``;
  device names are kept. Two sources holding the same (device, case id, repeat) would be
  indistinguishable in the tables, so that is refused, unless ``renumber=True``: then each
  later source's repeats of that (device, case) are shifted past the ones already taken
  (the samples are kept, as more repetitions of the case).
- ``steps.parquet`` / ``cases.parquet``: rebuilt from the merged raw log by
  :func:`harness.store.write_tables`. Stored baselines have no raw log; when any source
  lacks one, the sources' tables are concatenated instead (repeats renumbered the same way).
- ``manifest.json``: a new manifest listing the source manifests under ``merged_from``,
  the union of their devices, and as device name the sorted device names joined by ``_``
  (``jetson-orin-nano_pixel7_rpi5``: where ``harness baseline save`` files it) — no case list, so a merged run is neither resumed nor re-measured by the gate: re-runs
  belong to the per-device jobs, which can reach their devices.
- ``probe.json`` (a list of the sources' probes) and ``logs/`` (per-device log files).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness import store
from harness.errors import ConfigError

Key = tuple[str, str]  # (device, case id)


def _source_manifest(run: Path) -> dict[str, Any]:
    path = run / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _keys_of_raw(raw: Path) -> dict[Key, set[int]]:
    found: dict[Key, set[int]] = {}
    for env in store.read_raw(raw):
        if env.get("case_id"):
            found.setdefault((str(env.get("device", "")), str(env["case_id"])), set()).add(
                int(env.get("repeat", 0)))
    return found


def _keys_of_cases(cases: pd.DataFrame) -> dict[Key, set[int]]:
    found: dict[Key, set[int]] = {}
    for device, case_id, repeat in zip(cases["device"], cases["case_id"], cases["repeat"], strict=True):
        found.setdefault((str(device), str(case_id)), set()).add(int(repeat))
    return found


def repeat_offsets(sources: Sequence[tuple[str, dict[Key, set[int]]]], *,
                   renumber: bool) -> list[dict[Key, int]]:
    """Per source, the shift to add to each (device, case)'s repeats; refuses a clash
    unless ``renumber``. ``sources`` are (name, repeats seen per key), in merge order."""
    taken: dict[Key, tuple[str, set[int]]] = {}
    offsets: list[dict[Key, int]] = []
    for name, keys in sources:
        mine: dict[Key, int] = {}
        for key, repeats in keys.items():
            if key in taken and taken[key][1] & repeats:
                if not renumber:
                    raise ConfigError(
                        f"{name} and {taken[key][0]} both hold device {key[0]!r} case {key[1]!r} "
                        f"repeat {min(taken[key][1] & repeats)}; merge runs of different devices, "
                        "or pass --renumber to keep both as further repeats")
                mine[key] = max(taken[key][1]) + 1 - min(repeats)
            shifted = {r + mine.get(key, 0) for r in repeats}
            owner = taken[key][0] if key in taken else name
            taken[key] = (owner, (taken[key][1] if key in taken else set()) | shifted)
        offsets.append(mine)
    return offsets


def merged_manifest(run_id: str, manifests: Sequence[dict[str, Any]],
                    sources: Sequence[Path]) -> dict[str, Any]:
    """A manifest for the merged run: the union of devices, the sources kept whole."""
    devices: dict[str, dict[str, Any]] = {}
    for m in manifests:
        for d in m.get("devices") or ([m["device"]] if m.get("device") else []):
            devices.setdefault(str(d.get("name")), d)
    names = sorted(devices)
    first = manifests[0] if manifests else {}
    commits = {str((m.get("git") or {}).get("commit")) for m in manifests}
    return {
        "results_version": store.RESULTS_VERSION, "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "status": "finished", "devices": [devices[n] for n in names],
        "device": {"name": "_".join(names), "model": " + ".join(str(devices[n].get("model", ""))
                                                               for n in names)},
        "git": first.get("git") if len(commits) == 1 else {"commit": "mixed", "dirty": None,
                                                            "commits": sorted(commits)},
        "versions": first.get("versions", {}), "suite": first.get("suite", ""),
        "seed": first.get("seed", 0),
        "merged_from": [{"path": str(p), **m} for p, m in zip(sources, manifests, strict=True)],
    }


def merge_runs(runs: Sequence[Path], out: Path, *, renumber: bool = False) -> Path:
    """Combine run (or baseline) directories into the new run directory ``out``."""
    runs = [Path(r) for r in runs]
    for run in runs:
        if not (run / "raw.jsonl").is_file() and not (run / "cases.parquet").is_file():
            raise ConfigError(f"{run} is not a run directory (no raw.jsonl or cases.parquet)", key="RUN")
    if len({r.resolve() for r in runs}) != len(runs):
        raise ConfigError(f"a run is named twice: {[str(r) for r in runs]}", key="RUN")
    if out.exists():
        raise ConfigError(f"{out} exists already; merge into a new directory", key="--out")
    use_raw = all((r / "raw.jsonl").is_file() for r in runs)
    tables = {} if use_raw else {r: store.load_run(r)[:2] for r in runs}
    keys = [(str(r), _keys_of_raw(r / "raw.jsonl") if use_raw else _keys_of_cases(tables[r][1]))
            for r in runs]
    offsets = repeat_offsets(keys, renumber=renumber)
    manifests = [_source_manifest(r) for r in runs]
    run_dir = store.make_run_dir(out.parent, out.name)
    if use_raw:
        _merge_raw(runs, offsets, run_dir)
        store.write_tables(run_dir)
    else:
        _merge_tables(runs, tables, offsets, run_dir)
    store.write_json(run_dir / "manifest.json", merged_manifest(run_dir.name, manifests, runs))
    _merge_extras(runs, run_dir)
    return run_dir


def _merge_raw(runs: Sequence[Path], offsets: Sequence[dict[Key, int]], run_dir: Path) -> None:
    with open(run_dir / "raw.jsonl", "w", encoding="utf-8") as f:
        for run, shift in zip(runs, offsets, strict=True):
            for env in store.read_raw(run / "raw.jsonl"):
                key = (str(env.get("device", "")), str(env.get("case_id", "")))
                if key in shift:
                    env["repeat"] = int(env.get("repeat", 0)) + shift[key]
                if env.get("process"):  # process ids stay unique across the merged runs
                    env["process"] = f"{run.name}/{env['process']}"
                env.setdefault("source_run", run.name)
                f.write(json.dumps(env, separators=(",", ":"), ensure_ascii=False) + "\n")


def _merge_tables(runs: Sequence[Path], tables: dict[Path, tuple[pd.DataFrame, pd.DataFrame]],
                  offsets: Sequence[dict[Key, int]], run_dir: Path) -> None:
    steps, cases = [], []
    for run, shift in zip(runs, offsets, strict=True):
        for frame, out in zip(tables[run], (steps, cases), strict=True):
            frame = frame.copy()
            if shift and len(frame):
                delta = [shift.get((str(d), str(c)), 0) for d, c in zip(frame["device"], frame["case_id"], strict=True)]
                frame["repeat"] = frame["repeat"].astype("int64") + delta
            if "process" in frame.columns:  # process ids stay unique across the merged runs
                frame["process"] = (run.name + "/" + frame["process"].astype(str)).astype(frame["process"].dtype)
            out.append(frame)
    for name, frames in (("steps", steps), ("cases", cases)):
        merged = pd.concat(frames, ignore_index=True)
        merged["run_id"] = pd.Series(run_dir.name, index=merged.index, dtype="string")
        buf = io.BytesIO()
        merged.to_parquet(buf, index=False)
        store.atomic_write(run_dir / f"{name}.parquet", buf.getvalue())


def _merge_extras(runs: Sequence[Path], run_dir: Path) -> None:
    probes = []
    for run in runs:
        if (run / "probe.json").is_file():
            data = json.loads((run / "probe.json").read_text(encoding="utf-8"))
            probes += data if isinstance(data, list) else [data]
        for log in sorted((run / "logs").glob("*.log")) if (run / "logs").is_dir() else []:
            (run_dir / "logs").mkdir(exist_ok=True)
            target = run_dir / "logs" / log.name
            with open(target, "a", encoding="utf-8") as f:
                f.write(f"== from {run}\n" + log.read_text(encoding="utf-8", errors="replace"))
    if probes:
        store.write_json(run_dir / "probe.json", probes if len(probes) > 1 else probes[0])
