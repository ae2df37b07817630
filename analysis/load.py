"""The one reader of stored runs (``results/<run-id>/`` and ``baselines/<device>/<name>/``).

Two views of the same files:

- :func:`read_tables` gives (steps, cases, manifest) as stored, upgraded to the current
  schema (:mod:`analysis.schema`): what the gate, calibration, A/B and the study use.
- :func:`load_run` / :func:`load_runs` give a :class:`RunData` for reports: label columns as
  categoricals, optional columns filled, the processes of a case pooled into one case row
  (``RunData.processes`` keeps one row per process), and calibration's slowed repetitions
  under a case id of their own. Optional tables: the optimizer study's ``study.parquet``,
  ``study_summary.parquet`` and ``performance_profile.parquet``, ``calibration.parquet``,
  ``probe.json``. Several run directories are concatenated; every row keeps its ``run_id``.

Reports read stored results only, never a device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.processes import label_slowed, pool_processes
from analysis.schema import (
    CASE_COLUMNS,
    PHASE_COLUMNS,
    STEP_COLUMNS,
    ResultsError,
    check_version,
    upgrade,
)

# Optional tables of the optimizer study (written by harness/study.py)
STUDY_SUMMARY_COLUMNS: tuple[str, ...] = (
    "device", "workload", "optimizer", "lr", "seed", "target_loss", "reached",
    "steps_to_target", "time_to_target_s",
)
PROFILE_COLUMNS: tuple[str, ...] = ("metric", "optimizer", "tau", "rho")
# Optional case columns, with the value used when a run does not carry them.
OPTIONAL_CASE_COLUMNS: dict[str, Any] = {
    "domain": "", "seed": 0, "error_kind": "", "error_message": "", "steps": 0,
    "warmup_steps": 0, "wall_ns": 0, "param_count": 0, "param_bytes": 0, "state_bytes": 0,
    "peak_rss_bytes": 0, "correct_max_rel_diff": float("nan"), "correct_ok": True,
    "flops_per_step": 0.0, "update_bytes_per_step": 0.0, "energy_j": float("nan"),
    "energy_source": "none", "energy_per_step_j": float("nan"), "idle_power_w": float("nan"),
    "uss_bytes": float("nan"), "pss_bytes": float("nan"), "baseline_rss_bytes": float("nan"),
    "temp_before_c": float("nan"), "temp_after_c": float("nan"),
    "freq_before_khz": float("nan"), "freq_after_khz": float("nan"), "throttled": False,
    "warnings": "", "energy_reason": "", "active_energy_j": float("nan"),
    "throttle_reasons": "", "battery_pct": float("nan"), "charging": None,
    "cooldown_s": float("nan"), "cooldown_timed_out": False, "warmup_forced": False,
    "compile_ns": 0, "energy_flags": "", "model_config": "",
}
_TEXT_CASE_COLUMNS = ("energy_reason", "throttle_reasons", "warnings", "energy_flags", "model_config")
_FLAG_CASE_COLUMNS = ("throttled", "cooldown_timed_out", "warmup_forced")


@dataclass(frozen=True)
class RunData:
    """Every stored table of one or more runs, concatenated."""

    steps: pd.DataFrame
    cases: pd.DataFrame
    probes: pd.DataFrame  # one row per probed (run_id, device, accel, dtype): ceilings
    manifests: tuple[dict[str, Any], ...]
    study: pd.DataFrame | None = None
    run_dirs: tuple[Path, ...] = field(default_factory=tuple)
    study_summary: pd.DataFrame | None = None  # one row per study run (reached, costs)
    profile: pd.DataFrame | None = None  # performance profile: metric, optimizer, tau, rho
    calibration: pd.DataFrame | None = None  # one row per calibrated case, with run_id
    calibration_targets: tuple[dict[str, float], ...] = ()  # calibration.json "targets"
    processes: pd.DataFrame | None = None  # the stored cases rows: one per (case, process)


def _read_json(path: Path) -> Any:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not valid JSON ({exc}); re-run or delete the file") from exc


def _read_object(path: Path) -> dict[str, Any] | None:
    data = _read_json(path)
    if data is not None and not isinstance(data, dict):
        raise ResultsError(f"{path} holds {type(data).__name__}, expected a JSON object")
    return data


_LABEL_COLUMNS = ("run_id", "device", "case_id", "workload", "optimizer", "kernel", "dtype",
                  "process")


def _read_parquet(path: Path) -> pd.DataFrame:
    """Read a table, decoding label columns straight into categoricals.

    A million step rows repeat a few hundred labels; dictionary decoding keeps them as
    small integer codes instead of a Python string per row.
    """
    return pd.read_parquet(path, read_dictionary=list(_LABEL_COLUMNS))


def _tables_of(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Stored steps, cases and manifest of a run directory, version checked and upgraded."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"run directory {str(run_dir)!r} does not exist; pass results/<run-id>")
    manifest = _read_object(run_dir / "manifest.json") or {"run_id": run_dir.name}
    check_version(manifest, str(run_dir / "manifest.json"))
    tables = {}
    for name in ("steps", "cases"):
        path = run_dir / f"{name}.parquet"
        if not path.exists():
            raise ResultsError(
                f"{path} is missing; a run directory needs steps.parquet and cases.parquet"
            )
        tables[name] = _read_parquet(path)
    steps, cases = upgrade(tables["steps"], tables["cases"])
    assert steps is not None and cases is not None
    return steps, cases, manifest


def read_tables(run_dir: Path | str) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(steps, cases, manifest) of a stored run as written, upgraded to the current schema.

    Label columns come back as plain strings, one cases row per process, nothing renamed.
    Raises :class:`ResultsError` naming the missing file or the unknown version.
    """
    steps, cases, manifest = _tables_of(Path(run_dir))
    for frame in (steps, cases):
        for col in _LABEL_COLUMNS:
            if col in frame.columns and isinstance(frame[col].dtype, pd.CategoricalDtype):
                frame[col] = frame[col].astype(str)
    return steps, cases, manifest


def _require(frame: pd.DataFrame, columns: tuple[str, ...], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ResultsError(
            f"{path} lacks columns {missing}; was it written by an older harness? "
            "Re-store the run with the current harness"
        )


def _normalise_steps(steps: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require(steps, STEP_COLUMNS, path)
    for col in PHASE_COLUMNS:
        if col not in steps.columns:
            steps[col] = 0
    if "loss" not in steps.columns:
        steps["loss"] = float("nan")
    for col in _LABEL_COLUMNS:
        steps[col] = steps[col].astype("category")
    steps["warmup"] = steps["warmup"].astype(bool)
    return steps


def _normalise_cases(cases: pd.DataFrame, path: Path) -> pd.DataFrame:
    _require(cases, CASE_COLUMNS, path)
    for col, default in OPTIONAL_CASE_COLUMNS.items():
        if col not in cases.columns:
            cases[col] = default
    cases["energy_source"] = cases["energy_source"].fillna("none").astype(str)
    for col in _TEXT_CASE_COLUMNS:
        cases[col] = cases[col].fillna("").astype(str)
    for col in _FLAG_CASE_COLUMNS:
        cases[col] = cases[col].astype(object).fillna(False).astype(bool)
    cases["correct_ok"] = cases["correct_ok"].astype(object).fillna(True).astype(bool)
    for col, default in OPTIONAL_CASE_COLUMNS.items():
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            # the agent writes None where a meter gave nothing: object columns of None
            cases[col] = pd.to_numeric(cases[col], errors="coerce")
    cases["compile_ns"] = cases["compile_ns"].fillna(0)
    return cases


def _optional_table(path: Path, required: tuple[str, ...] = ()) -> pd.DataFrame | None:
    """An optional parquet table of the run, or None when the run has none."""
    if not path.exists():
        return None
    frame = pd.read_parquet(path)
    _require(frame, required, path)
    return frame


def _calibration(run_dir: Path, run_id: str) -> tuple[pd.DataFrame | None, dict[str, float]]:
    """``calibration.parquet`` with its run id, and the targets from ``calibration.json``."""
    frame = _optional_table(run_dir / "calibration.parquet")
    if frame is None:
        return None, {}
    if "run_id" not in frame.columns:
        frame.insert(0, "run_id", run_id)
    meta = _read_object(run_dir / "calibration.json") or {}
    targets = meta.get("targets") if isinstance(meta.get("targets"), dict) else {}
    return frame, {str(k): float(v) for k, v in targets.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _probe_rows(probe: Any, cases: pd.DataFrame, path: Path) -> list[dict[str, Any]]:
    """One row per probed (device, accelerator, dtype): ``probe.json`` holds one object, or a
    list (one per device).

    An entry without ``device`` belongs to the run's only device. An entry with ``ceilings``
    (per accelerator, matmul per dtype) gives a row per accelerator and dtype; an older entry
    gives one CPU row for every dtype (``dtype`` ``*``).
    """
    run_id = str(cases["run_id"].iloc[0]) if len(cases) else ""
    devices = sorted(set(cases["device"].astype(str))) if len(cases) else []
    entries = probe if isinstance(probe, list) else [probe or {}]
    rows = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ResultsError(f"{path} holds a {type(entry).__name__} entry; expected objects "
                               "with device, bandwidth_gbs and matmul_gflops")
        fallback = devices[0] if len(devices) == 1 else ""
        base = {"run_id": run_id, "device": str(entry.get("device", fallback)),
                "threads": entry.get("threads", float("nan"))}
        ceilings = entry.get("ceilings") or {}
        if not isinstance(ceilings, dict) or not ceilings:
            rows.append({**base, "accel": "cpu", "dtype": "*", "accel_name": "cpu",
                         "bandwidth_gbs": float(entry.get("bandwidth_gbs", float("nan"))),
                         "bandwidth_kernel": str(entry.get("bandwidth_kernel", "")),
                         "matmul_gflops": float(entry.get("matmul_gflops", float("nan")))})
            continue
        for accel, figures in sorted(ceilings.items()):
            if not isinstance(figures, dict) or "error" in figures:
                continue
            matmul = figures.get("matmul_gflops") or {}
            for dtype, gflops in sorted(matmul.items() if isinstance(matmul, dict) else []):
                rows.append({**base, "accel": str(accel), "dtype": str(dtype),
                             "accel_name": str(figures.get("device_name", accel)),
                             "bandwidth_gbs": float(figures.get("bandwidth_gbs", float("nan"))),
                             "bandwidth_kernel": str(figures.get("bandwidth_kernel", "")),
                             "matmul_gflops": float(gflops)})
    return rows


def load_run(run_dir: Path) -> RunData:
    """Load one run directory; raise :class:`ResultsError` naming the missing file."""
    run_dir = Path(run_dir)
    steps, stored_cases, manifest = _tables_of(run_dir)
    tables = {"steps": steps, "cases": stored_cases}
    steps = _normalise_steps(tables["steps"], run_dir / "steps.parquet")
    cases = _normalise_cases(tables["cases"], run_dir / "cases.parquet")
    steps, cases = label_slowed(steps, cases)
    processes = cases
    cases = pool_processes(cases)
    study = _optional_table(run_dir / "study.parquet")
    probe_path = run_dir / "probe.json"
    probes = pd.DataFrame(_probe_rows(_read_json(probe_path), cases, probe_path))
    run_id = str(cases["run_id"].iloc[0]) if len(cases) else str(manifest.get("run_id", ""))
    calibration, targets = _calibration(run_dir, run_id)
    profile = _optional_table(run_dir / "performance_profile.parquet", PROFILE_COLUMNS)
    if profile is not None and "run_id" not in profile.columns:
        profile.insert(0, "run_id", run_id)  # profiles of several runs stay apart
    return RunData(
        steps, cases, probes, (manifest,), study, (run_dir,),
        study_summary=_optional_table(run_dir / "study_summary.parquet", STUDY_SUMMARY_COLUMNS),
        profile=profile,
        calibration=calibration, calibration_targets=(targets,) if targets else (),
        processes=processes)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if f is not None and len(f.columns)]
    if not frames:
        return pd.DataFrame()
    if len(frames) == 1:
        return frames[0]
    merged = pd.concat(frames, ignore_index=True)
    for col in merged.columns:
        if merged[col].dtype == object and all(
            isinstance(f[col].dtype, pd.CategoricalDtype) for f in frames if col in f
        ):
            merged[col] = merged[col].astype("category")
    return merged


def load_runs(run_dirs: list[Path]) -> RunData:
    """Load and concatenate several run directories (at least one)."""
    if not run_dirs:
        raise ResultsError("no run directories given; pass at least one results/<run-id>")
    runs = [load_run(Path(d)) for d in run_dirs]
    def optional(name: str) -> pd.DataFrame | None:
        frames = [getattr(r, name) for r in runs if getattr(r, name) is not None]
        return _concat(frames) if frames else None

    return RunData(
        steps=_concat([r.steps for r in runs]),
        cases=_concat([r.cases for r in runs]),
        probes=_concat([r.probes for r in runs]),
        manifests=tuple(m for r in runs for m in r.manifests),
        study=optional("study"),
        run_dirs=tuple(d for r in runs for d in r.run_dirs),
        study_summary=optional("study_summary"),
        profile=optional("profile"),
        calibration=optional("calibration"),
        calibration_targets=tuple(t for r in runs for t in r.calibration_targets),
        processes=optional("processes"),
    )
