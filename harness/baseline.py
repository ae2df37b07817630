"""Stored baselines: a run's tables and manifest kept under ``baselines/<device>/<name>/``.

A baseline is a frozen copy of a run's tables (``steps.parquet``, ``cases.parquet``,
``manifest.json``, as :func:`harness.store.load_run` reads them) plus ``baseline.json``
saying where it came from and its number (1 for the first save of a name, then 2, 3, …).
It is written to a temporary directory next to its destination and renamed into place, so a
crash never leaves a half-written baseline that a later gate would trust. Baselines are per
device because a phone's step times say nothing about a board's.

History is append-only: replacing a baseline (``--force``) moves the old one to
``<device>/<name>.history/<number>/``, never deletes it, so ``harness trend --baseline NAME``
can show a metric across every baseline a name has had, with their commits.

Also here, because they are about what is being compared rather than how: the manifest
check :func:`stack_mismatches`, and :func:`load_pytest_benchmark`, which turns a
pytest-benchmark JSON file into a steps-like frame so the same gate compares
micro-benchmark runs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import ConfigError

INFO_FILE = "baseline.json"
HISTORY_SUFFIX = ".history"  # <device>/<name>.history/<number>/: the replaced baselines of a name
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class BaselineInfo:
    """What a stored baseline is: its name, device, source run and commit."""

    name: str
    device: str
    path: Path
    run_id: str
    commit: str
    dirty: bool
    created: str
    saved: str
    number: int = 0  # 1 for a name's first save, then 2, 3, …; 0 for one saved before numbering


def read_run(run_dir: Path | str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(steps, cases, manifest) of a results or baseline directory, via ``harness.store``."""
    from harness.store import load_run

    try:
        return load_run(Path(run_dir))
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"{exc}; pass a results/<run-id>/ directory written by `harness bench`"
                          " or a baselines/<device>/<name>/ directory",
                          source=str(run_dir)) from exc


def save_baseline(run_dir: Path | str, baselines_dir: Path | str, name: str, *,
                  overwrite: bool = False) -> Path:
    """Copy a run into ``baselines_dir/<device>/<name>/`` atomically; returns that path."""
    run_dir, baselines_dir = Path(run_dir), Path(baselines_dir)
    _check_name(name, "baseline name")
    if name.endswith(HISTORY_SUFFIX):
        raise ConfigError(f"baseline name {name!r} ends in {HISTORY_SUFFIX!r}, which holds replaced "
                          "baselines; choose another name")
    steps, cases, manifest = read_run(run_dir)
    device = _device_of(manifest, cases, run_dir)
    _check_name(device, "device name")
    device_dir = baselines_dir / device
    dest = device_dir / name
    if dest.exists() and not overwrite:
        raise ConfigError(f"baseline {name!r} for device {device!r} already exists at {dest}; "
                          "choose another --name, or replace it with `harness baseline save --force` "
                          f"(the replaced one is kept under {dest.name}{HISTORY_SUFFIX}/)")
    device_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=device_dir))
    try:
        steps.to_parquet(tmp / "steps.parquet", index=False)
        cases.to_parquet(tmp / "cases.parquet", index=False)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n",
                                           encoding="utf-8")
        info = {"name": name, "device": device, "run_id": str(manifest.get("run_id", "")),
                "source": str(run_dir), "saved": datetime.now(timezone.utc).isoformat(),
                "number": _next_number(dest)}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        _swap_into_place(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _history_dir(dest: Path) -> Path:
    return dest.with_name(dest.name + HISTORY_SUFFIX)


def _number_of(path: Path) -> int:
    try:
        return int(json.loads((path / INFO_FILE).read_text(encoding="utf-8")).get("number", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def _next_number(dest: Path) -> int:
    """One more than any number the name has had (current or in its history)."""
    history = _history_dir(dest)
    numbers = [_number_of(dest)] if dest.is_dir() else []
    if history.is_dir():
        numbers += [int(p.name) for p in history.iterdir() if p.name.isdigit()]
    return max(numbers, default=0) + 1


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename ``tmp`` to ``dest``; an existing ``dest`` moves into the name's history first."""
    if dest.exists():
        history = _history_dir(dest)
        history.mkdir(exist_ok=True)
        number = _number_of(dest) or max((int(p.name) for p in history.iterdir() if p.name.isdigit()),
                                         default=0) + 1
        target = history / f"{number:04d}"
        while target.exists():  # an unnumbered old baseline: the next free number
            number += 1
            target = history / f"{number:04d}"
        dest.rename(target)
    tmp.rename(dest)


def baseline_history(baselines_dir: Path | str, device: str, name: str) -> list[BaselineInfo]:
    """Every baseline a name has had on a device, oldest first; the current one last."""
    dest = Path(baselines_dir) / device / name
    history = _history_dir(dest)
    paths = sorted((p for p in history.iterdir() if p.name.isdigit() and (p / INFO_FILE).is_file()),
                   key=lambda p: int(p.name)) if history.is_dir() else []
    if (dest / INFO_FILE).is_file():
        paths.append(dest)
    return [_info(p) for p in paths]


def list_baselines(baselines_dir: Path | str) -> list[BaselineInfo]:
    """Every stored baseline, sorted by device then name; an absent directory gives []."""
    root = Path(baselines_dir)
    if not root.is_dir():
        return []
    found = []
    for info_path in sorted(root.glob(f"*/*/{INFO_FILE}")):
        path = info_path.parent
        if path.name.startswith(".") or path.name.endswith(HISTORY_SUFFIX):
            continue  # a save in progress, or a name's replaced baselines
        found.append(_info(path))
    return found


def load_baseline(path_or_name: Path | str, baselines_dir: Path | str | None = None,
                  device: str | None = None,
                  ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(steps, cases, manifest) of a baseline given by directory, or by name and device."""
    path = Path(path_or_name)
    if not path.is_dir():
        if baselines_dir is None or device is None:
            raise ConfigError(f"baseline {str(path_or_name)!r} is not a directory; pass a "
                              "path, or a name together with baselines_dir and device")
        path = Path(baselines_dir) / device / str(path_or_name)
        if not path.is_dir():
            known = [b.name for b in list_baselines(baselines_dir) if b.device == device]
            raise ConfigError(f"no baseline {str(path_or_name)!r} for device {device!r} under "
                              f"{baselines_dir}; known: {', '.join(known) or 'none'}; save "
                              "one with `harness baseline save`")
    return read_run(path)


def _info(path: Path) -> BaselineInfo:
    info = json.loads((path / INFO_FILE).read_text(encoding="utf-8"))
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) \
        if manifest_path.is_file() else {}
    git = manifest.get("git") or {}
    return BaselineInfo(
        name=str(info.get("name", path.name)), device=str(info.get("device", path.parent.name)),
        path=path, run_id=str(info.get("run_id", "")), commit=str(git.get("commit", "")),
        dirty=bool(git.get("dirty", False)), created=str(manifest.get("created", "")),
        saved=str(info.get("saved", "")), number=int(info.get("number", 0) or 0))


def _device_of(manifest: dict[str, Any], cases: pd.DataFrame, run_dir: Path) -> str:
    device = (manifest.get("device") or {}).get("name")
    if device:
        return str(device)
    names = sorted({str(d) for d in cases.get("device", pd.Series([])).dropna()})
    if len(names) == 1:
        return names[0]
    raise ConfigError(f"cannot tell the device of {run_dir}: manifest has no device.name and "
                      f"the cases name {names or 'none'}; save one device's run at a time",
                      source=str(run_dir / "manifest.json"), key="device.name")


def _check_name(name: str, what: str) -> None:
    if not _SAFE_NAME.match(name):
        raise ConfigError(f"{what} {name!r} is not usable as a directory name; use letters, "
                          "digits, '.', '_' and '-', starting with a letter or digit")


def load_pytest_benchmark(path: Path | str) -> pd.DataFrame:
    """A steps-like frame from a pytest-benchmark JSON file (``--benchmark-json`` / saves).

    ``case_id`` is the benchmark's ``fullname``; ``step_ns`` is one round's time per
    iteration in nanoseconds (a float: micro-benchmarks can be a few ns). With raw data
    (``--benchmark-save-data``, or ``--benchmark-json`` which includes it) every round is a
    row; without it one row holds the median and ``samples`` says ``"median-only"``, which
    the gate can only hold against the floor.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read pytest-benchmark JSON {path}: {exc}",
                          source=str(path)) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise ConfigError("not a pytest-benchmark file: no 'benchmarks' list; write one with "
                          "--benchmark-json or --benchmark-autosave", source=str(path))
    device = str((doc.get("machine_info") or {}).get("node", ""))
    run_id = str(doc.get("datetime") or path.stem)
    rows = []
    for bench in doc["benchmarks"]:
        stats = bench.get("stats") or {}
        data = stats.get("data")
        samples, kind = (data, "raw") if data else ([stats.get("median", math.nan)], "median-only")
        for index, seconds in enumerate(samples):
            rows.append({"run_id": run_id, "device": device, "case_id": str(bench["fullname"]),
                         "workload": str(bench.get("group") or ""), "index": index,
                         "warmup": False, "step_ns": float(seconds) * 1e9, "samples": kind})
    columns = ["run_id", "device", "case_id", "workload", "index", "warmup", "step_ns", "samples"]
    return pd.DataFrame(rows, columns=columns)


def stack_mismatches(baseline_manifest: Mapping[str, Any] | None,
                     candidate_manifest: Mapping[str, Any] | None) -> list[str]:
    """Loud warnings when the two runs did not measure the same device and software stack."""
    if not baseline_manifest or not candidate_manifest:
        return ["a manifest is missing: device and software stack could not be checked"]
    checks = (("device name", ("device", "name")), ("device model", ("device", "model")),
              ("torch version", ("versions", "torch")),
              ("python version", ("versions", "python")))
    warnings = []
    for label, path in checks:
        base, cand = _dig(baseline_manifest, path), _dig(candidate_manifest, path)
        if base != cand:
            warnings.append(f"{label} differs: baseline {base!r}, candidate {cand!r}; "
                            "the comparison mixes devices or stacks")
    if _dig(candidate_manifest, ("git", "dirty")):
        warnings.append("candidate was built from a dirty git tree: the commit does not "
                        "identify the code that ran")
    return warnings


def _dig(mapping: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = mapping
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value
