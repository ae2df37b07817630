"""The stored-result schema: column names, the version history, and upgrades of old runs.

A run directory holds ``steps.parquet`` (one row per step) and ``cases.parquet`` (one row
per (device, case_id, repeat), i.e. per agent process that ran the case), plus
``manifest.json`` whose ``results_version`` says which shape the tables have.

Stored-result history (``RESULTS_VERSION``):

- 1: steps (run_id, device, case_id, repeat, labels, index, warmup, step_ns, phase ``*_ns``,
  loss) and cases (one row per (device, case_id, repeat)); ``repeat`` numbers the
  repetitions of a case in one run, each its own agent process.
- 2: steps gain ``process`` (the id of the agent process that produced the row, unique in a
  run; cases that shared one process have the same value) and ``round`` (in a shared
  process, steps of different cases with the same round ran back to back and form a pair;
  -1 when the case ran alone). Cases gain ``process``, ``group`` ("" when alone) and
  ``paired`` (bool), and for a shared process its process-wide figures as ``group_*``
  (peak RSS, energy) with the per-variant columns empty (``harness/store.py``).

Version 1 runs load: :func:`upgrade` derives ``process`` from (device, case_id, repeat) and
sets ``round = -1``. A run of a newer version than this reader knows fails naming both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

RESULTS_VERSION = 2
READABLE_VERSIONS: tuple[int, ...] = (1, 2)

PHASE_COLUMNS: tuple[str, ...] = (
    "data_ns", "frontend_ns", "forward_ns", "backward_ns", "update_ns", "zero_grad_ns",
)
# what a steps table must hold to be read at all (older tables may lack the rest)
STEP_COLUMNS: tuple[str, ...] = (
    "run_id", "device", "case_id", "workload", "optimizer", "kernel", "threads", "batch",
    "dtype", "index", "warmup", "step_ns",
)
CASE_COLUMNS: tuple[str, ...] = (
    "run_id", "device", "case_id", "workload", "optimizer", "kernel", "threads", "batch",
    "dtype", "status",
)
PROCESS_COLUMNS: tuple[str, ...] = ("process", "round")  # version 2 (steps)
CASE_PROCESS_COLUMNS: tuple[str, ...] = ("process", "group", "paired")  # version 2 (cases)
NO_ROUND = -1


class ResultsError(ValueError):
    """Stored results that cannot be read: names the file and what to do."""


def check_version(manifest: Mapping[str, Any] | None, where: str) -> int:
    """The run's results version; a version this reader does not know is an error."""
    version = (manifest or {}).get("results_version", 1)
    if version not in READABLE_VERSIONS:
        raise ResultsError(
            f"{where} holds results version {version!r}; this harness reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}. Read it with the harness that wrote it, "
            "or upgrade this checkout")
    return int(version)


def process_ids(frame: pd.DataFrame) -> pd.Series:
    """Version-1 process ids: every (device, case_id, repeat) ran in an agent process of its own."""
    device = frame["device"].astype(str) if "device" in frame.columns else ""
    repeat = (frame["repeat"].astype("int64").astype(str) if "repeat" in frame.columns
              else "0")
    return device + ":" + frame["case_id"].astype(str) + ":r" + repeat


def upgrade(steps: pd.DataFrame | None,
            cases: pd.DataFrame | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Frames of any readable version with the version-2 columns (copies where changed).

    A frame that already has a column keeps it; missing ``repeat`` is 0.
    """
    if steps is not None and "case_id" in steps.columns:
        additions: dict[str, Any] = {}
        if "repeat" not in steps.columns:
            additions["repeat"] = 0
        if "process" not in steps.columns:
            additions["process"] = process_ids(steps.assign(**additions))
        if "round" not in steps.columns:
            additions["round"] = NO_ROUND
        if additions:
            steps = steps.assign(**additions)
    if cases is not None and "case_id" in cases.columns:
        additions = {}
        if "repeat" not in cases.columns:
            additions["repeat"] = 0
        if "process" not in cases.columns:
            additions["process"] = process_ids(cases.assign(**additions))
        if "group" not in cases.columns:
            additions["group"] = ""
        if "paired" not in cases.columns:
            additions["paired"] = False
        if additions:
            cases = cases.assign(**additions)
    return steps, cases
