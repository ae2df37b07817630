"""A device's variance components, stored beside its results: ``<results>/calibration/<device>.json``.

``harness calibrate`` writes the file; ``harness gate`` reads it to moderate each case's
between-process spread (:class:`analysis.compare.Prior`), and ``harness bench --detect``
reads it to choose processes and steps (:func:`analysis.design.plan`). Format (version 1)::

    {"version": 1, "device": "local", "run_id": "...", "created": "...",
     "process_cost_s": 6.1, "step_cost_s": 0.05,
     "cases": {"<case_id>": {"step_time": {"sigma_p": 0.03, "sigma_s": 0.015,
                                           "sigma_median": 0.031, "processes": 10,
                                           "steps_per_process": 60}, "update_time": {...}}},
     "device_median": {"step_time": {...}, ...}}

Fractions are on the log scale (0.03 ≈ 3 %). ``device_median`` (median over cases) stands in
for a case the calibration did not cover.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from analysis.compare import Prior
from harness.errors import ConfigError

VERSION = 1
FIELDS = ("sigma_p", "sigma_s", "sigma_median", "processes", "steps_per_process")


def calibration_path(results_dir: Path, device: str) -> Path:
    """Where a device's calibration lives: ``<results>/calibration/<device>.json``."""
    return Path(results_dir) / "calibration" / f"{device}.json"


def write_calibration_file(path: Path, device: str, run_id: str,
                           cases: Mapping[str, Mapping[str, Mapping[str, float]]], *,
                           process_cost_s: float, step_cost_s: float) -> Path:
    """Write the file atomically; ``cases[case_id][metric]`` holds :data:`FIELDS`."""
    from harness.store import write_json

    medians: dict[str, dict[str, float]] = {}
    metrics = sorted({m for per in cases.values() for m in per})
    for metric in metrics:
        rows = [per[metric] for per in cases.values() if metric in per]
        medians[metric] = {f: _median([float(r[f]) for r in rows if _finite(r.get(f))])
                           for f in FIELDS}
    write_json(path, {"version": VERSION, "device": device, "run_id": run_id,
                      "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                      "process_cost_s": process_cost_s, "step_cost_s": step_cost_s,
                      "cases": {c: {m: dict(v) for m, v in per.items()} for c, per in cases.items()},
                      "device_median": medians})
    return path


def read_calibration_file(path: Path) -> dict[str, Any]:
    """The stored calibration; a clear error naming the file when it is unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the calibration ({exc}); run `harness calibrate` again",
                          source=str(path)) from exc
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ConfigError(f"calibration format {data.get('version') if isinstance(data, dict) else '?'!r}"
                          f" is not version {VERSION}; run `harness calibrate` again",
                          source=str(path))
    return data


def components_for(data: Mapping[str, Any], case_id: str, metric: str) -> dict[str, float] | None:
    """The case's components for a metric, else the device median, else None."""
    case_id = case_id.split("/")[-1]  # a merged run names cases <device>/<case_id>
    per = (data.get("cases") or {}).get(case_id, {}).get(metric)
    if per is None:
        per = (data.get("device_median") or {}).get(metric)
    return dict(per) if per else None


def priors_from(data: Mapping[str, Any]) -> Callable[[str, str], Prior | None]:
    """A ``priors(case_id, metric)`` function for :func:`harness.gate.gate`."""
    def prior(case_id: str, metric: str) -> Prior | None:
        per = components_for(data, case_id, metric)
        if per is None or not _finite(per.get("sigma_median")):
            return None
        found = Prior(float(per["sigma_median"]), max(float(per.get("processes", 0)) - 1, 0.0))
        return found if found.usable() else None

    return prior


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _median(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
