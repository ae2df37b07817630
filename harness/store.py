"""The run store: ``raw.jsonl`` first, tidy tables built from it.

Every agent line is appended to ``results/<run-id>/raw.jsonl`` (wrapped in an envelope that
says which device, case and attempt it came from) and flushed before the host does
anything else with it; host-side events (an attempt's end, its exit status, stderr tail)
are appended the same way. ``steps.parquet`` and ``cases.parquet`` are always rebuilt from
``raw.jsonl`` alone, taking for each case only its last finished attempt, so a retried
case never contributes duplicate samples. Files other than the raw log are written
atomically (temporary file, then rename).

Stored-result history (``RESULTS_VERSION``):

- 1: steps and cases tables as below (``repeat`` numbers the repetitions of a case in one
  run, 0 when it ran once); manifest.json. Additive: ``zero_grad_ns`` (gradient clearing,
  timed apart from ``update_ns``; 0 in runs stored before it existed).
- 2: every case runs in several agent processes and variants may share one
  (harness/schedule.py). steps gain ``process`` (the agent process's id, unique in the run;
  cases that shared a process share it) and ``round`` (in a shared process, steps of one
  round ran back to back: a pair; -1 alone); cases gain ``process``, ``group`` ("" alone),
  ``paired``, and for a shared process the process-wide figures under ``group_*`` names
  (peak RSS, energy) with the per-variant columns empty, ``memory_scope``/``energy_scope``
  saying which. The correctness check runs once per run per case (repeat 0); its result is
  copied to the case's other repeats (``correct_from_repeat``). Version-1 runs load: their
  tables are rebuilt from raw.jsonl, or the new columns filled (one process per case).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from analysis import schema as results_schema
from harness.errors import HarnessError
from workloads.schema import (
    READABLE_VERSIONS,
    CaseEnd,
    CaseStart,
    Error,
    Meter,
    ProtocolError,
    Step,
    parse_line,
)

RESULTS_VERSION = results_schema.RESULTS_VERSION  # the history is in analysis/schema.py too
READABLE_RESULTS = results_schema.READABLE_VERSIONS
PHASE_COLUMNS = ("data_ns", "frontend_ns", "forward_ns", "backward_ns", "update_ns", "zero_grad_ns")
CASE_KEYS = ("workload", "domain", "optimizer", "kernel", "threads", "batch", "dtype", "seed",
             "mode", "accel", "slowdown")
STEP_COLUMNS = (
    "run_id", "device", "case_id", "repeat", "workload", "optimizer", "kernel", "threads", "batch",
    "dtype", "index", "warmup", "step_ns", *PHASE_COLUMNS, "loss", "process", "round",
)
STEP_DTYPES = {
    "run_id": "string", "device": "string", "case_id": "string", "repeat": "int64", "workload": "string",
    "optimizer": "string", "kernel": "string", "threads": "int64", "batch": "int64",
    "dtype": "string", "index": "int64", "warmup": "bool", "step_ns": "int64",
    **{c: "int64" for c in PHASE_COLUMNS}, "loss": "float64", "process": "string", "round": "int64",
}
CASE_COLUMNS = (
    "run_id", "device", "case_id", "repeat", *CASE_KEYS, "status", "error_kind", "error_message",
    "attempts", "steps", "warmup_steps", "wall_ns", "host_wall_ns", "param_count",
    "param_bytes", "state_bytes", "peak_rss_bytes", "correct_checked", "correct_ok",
    "correct_max_rel_diff", "correct_tolerance", "compile_ns", "update_bytes_per_step",
    "median_step_ns", "p10_step_ns", "p90_step_ns", "process", "group", "paired",
    "correct_from_repeat", "memory_scope", "energy_scope",
)
# In a shared process these are the process's, not a variant's: stored as group_<name>, the
# variant's column left empty so that no table compares them between variants.
GROUP_FIGURES = ("peak_rss_bytes", "uss_bytes", "pss_bytes", "baseline_rss_bytes", "device_peak_bytes",
                 "energy_j", "energy_per_step_j", "active_energy_j", "idle_power_w", "energy_window_ns")
NOT_SEPARABLE = ("not separable per variant: the variants shared one process, whose energy is group_energy_j; "
                 "run with --isolate for per-variant energy")


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write a file so that readers see the old content or the new, never a part."""
    payload = data.encode() if isinstance(data, str) else data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def make_run_dir(results_dir: Path, run_id: str) -> Path:
    """Create ``results/<run-id>/`` readable by this user only (the id is checked to be a name)."""
    from harness.limits import check_name

    check_name(run_id, source="command line", key="--run-id")
    results_dir.mkdir(parents=True, exist_ok=True)
    run_dir = results_dir / run_id
    run_dir.mkdir(mode=0o700)
    os.chmod(run_dir, 0o700)
    return run_dir


class RawLog:
    """Append-only ``raw.jsonl``; one flushed line per record, safe across worker threads.

    A failed write (a full disk) turns into a :class:`HarnessError` that says how to go on,
    and every later write fails the same way without touching the file, so the log ends at
    most with one torn line, which :func:`read_raw` skips. Reopening a log that ends with a
    torn line starts a new line first, so a resumed run's records stay readable.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.error: str | None = None  # set once a write failed
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if self._file.tell() > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._write("\n")

    def _write(self, text: str) -> None:
        """Append and flush ``text`` (the caller holds the lock or owns the log)."""
        if self.error is not None:
            raise HarnessError(self.error)
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            self.error = (f"cannot write to {self.path} ({exc.strerror or exc}); nothing after this "
                          "point was stored. Free space there, then finish the run with "
                          f"`harness bench --resume {self.path.parent}`")
            raise HarnessError(self.error) from exc

    def _append(self, envelope: dict[str, Any]) -> None:
        text = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
        with self._lock:
            self._write(text + "\n")

    def agent_line(self, device: str, case_id: str, attempt: int, line: str, repeat: int = 0, *,
                   group: str = "", process: str = "") -> None:
        env = {"device": device, "case_id": case_id, "repeat": repeat, "attempt": attempt,
               "host_ns": time.time_ns(), "line": line}
        if group:
            env["group"] = group
        if process:
            env["process"] = process
        self._append(env)

    def event(self, device: str, case_id: str, attempt: int, event: str, repeat: int = 0,
              **fields: Any) -> None:
        self._append({"device": device, "case_id": case_id, "repeat": repeat, "attempt": attempt,
                      "host_ns": time.time_ns(), "event": event, **fields})

    def sync(self) -> None:
        with self._lock:
            self._write("")
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file.closed:
                return
            if self.error is None:
                self._write("")
                os.fsync(self._file.fileno())
            try:
                self._file.close()
            except OSError:  # the buffer of a failed write: already reported in self.error
                pass


def read_raw(path: Path) -> Iterator[dict[str, Any]]:
    """Envelopes from a raw log; a torn last line (crash mid-write) is skipped."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def attempts_seen(path: Path) -> dict[tuple[str, str, int], int]:
    """The highest attempt number recorded per (device, case id, repeat)."""
    seen: dict[tuple[str, str, int], int] = {}
    for env in read_raw(path):
        key = (env.get("device", ""), env.get("case_id", ""), int(env.get("repeat", 0)))
        if key[1]:
            seen[key] = max(seen.get(key, 0), int(env.get("attempt", 0)))
    return seen


class _Attempt:
    def __init__(self) -> None:
        self.start: CaseStart | None = None
        self.end: CaseEnd | None = None
        self.error: Error | None = None
        self.steps: list[Step] = []
        self.meters: list[Meter] = []
        self.event: dict[str, Any] | None = None
        self.protocol_errors: list[str] = []
        self.group = ""
        self.process = ""


def _collect(raw_path: Path) -> dict[tuple[str, str, int], dict[int, _Attempt]]:
    cases: dict[tuple[str, str, int], dict[int, _Attempt]] = {}
    for env in read_raw(raw_path):
        key = (env.get("device", ""), env.get("case_id", ""), int(env.get("repeat", 0)))
        if not key[1]:
            continue
        attempt = cases.setdefault(key, {}).setdefault(int(env.get("attempt", 0)), _Attempt())
        attempt.group = env.get("group") or attempt.group
        attempt.process = env.get("process") or attempt.process
        if "event" in env:
            if env["event"] == "attempt_end":
                attempt.event = env
            continue
        try:
            rec = parse_line(env.get("line", ""), READABLE_VERSIONS)
        except ProtocolError as exc:
            attempt.protocol_errors.append(str(exc))
            continue
        if isinstance(rec, Step):
            attempt.steps.append(rec)
        elif isinstance(rec, CaseStart):
            attempt.start = rec
        elif isinstance(rec, CaseEnd):
            attempt.end = rec
        elif isinstance(rec, Error):
            attempt.error = rec
        elif isinstance(rec, Meter):
            attempt.meters.append(rec)
    return cases


def _chosen(attempts: dict[int, _Attempt]) -> tuple[int, _Attempt]:
    """The last attempt that finished (has an attempt_end event), else the last one seen.

    An attempt that never reached the agent (reconnecting to a device that stayed gone) is
    passed over for an earlier one that did, so the samples measured before the fault stay.
    """
    finished = [n for n, a in attempts.items() if a.event is not None]
    reached = [n for n in finished if attempts[n].start or attempts[n].steps or attempts[n].error]
    n = max(reached or finished or attempts)
    return n, attempts[n]


def _planned_specs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """case id -> the case as the manifest planned it (for attempts that left no spec)."""
    try:
        cases = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8")).get("cases") or []
    except (OSError, ValueError):
        return {}
    from harness.plan import Case

    out: dict[str, dict[str, Any]] = {}
    for fields in cases:
        try:
            case = Case(**fields)
        except TypeError:  # written by another version: the spec stays unknown
            continue
        out[case.case_id] = case.spec()
    return out


def build_tables(run_dir: Path, run_id: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild the steps and cases tables from ``raw.jsonl``."""
    run_id = run_id or run_dir.name
    step_rows: list[dict[str, Any]] = []
    case_rows: list[dict[str, Any]] = []
    planned = _planned_specs(run_dir)
    for (device, case_id, repeat), attempts in sorted(_collect(run_dir / "raw.jsonl").items()):
        n, a = _chosen(attempts)
        ev = a.event or {}
        # an interrupted attempt may lack both its attempt_end and a readable case_start
        spec = dict(ev.get("spec") or (a.start.spec if a.start else {}) or planned.get(case_id, {}))
        keys = {k: spec.get(k) for k in CASE_KEYS}
        process = a.process or f"{device}:{case_id}:r{repeat}:a{n}"  # version 1: one per case
        for s in a.steps:
            row = {"run_id": run_id, "device": device, "case_id": case_id, "repeat": repeat,
                   **{k: keys[k] for k in STEP_COLUMNS if k in keys},
                   "index": s.index, "warmup": s.warmup, "step_ns": s.step_ns, "loss": s.loss,
                   "process": process, "round": s.round}
            for col in PHASE_COLUMNS:
                row[col] = int(s.phases_ns.get(col[:-3], 0))
            step_rows.append(row)
        corr = dict(a.end.correctness) if a.end else {}
        summary = dict(a.end.summary) if a.end else {}
        measured = [s.step_ns for s in a.steps if not s.warmup]
        status = ev.get("status") or ("ok" if a.end else "failed")
        error_kind = ev.get("error_kind") or (a.error.kind if a.error else "")
        error_message = ev.get("error_message") or (a.error.message if a.error else "")
        if a.protocol_errors and not error_message:
            error_kind, error_message = "protocol", a.protocol_errors[0]
        row = {
            "run_id": run_id, "device": device, "case_id": case_id, "repeat": repeat, **keys,
            "status": status, "error_kind": error_kind, "error_message": error_message,
            "attempts": len(attempts), "steps": len(measured),
            "warmup_steps": sum(1 for s in a.steps if s.warmup),
            "wall_ns": a.end.wall_ns if a.end else None,
            "host_wall_ns": ev.get("host_wall_ns"),
            "param_count": a.start.param_count if a.start else None,
            "param_bytes": a.start.param_bytes if a.start else None,
            "state_bytes": a.end.state_bytes if a.end else None,
            "peak_rss_bytes": a.end.peak_rss_bytes if a.end else None,
            "correct_checked": bool(corr.get("checked", False)),
            "correct_ok": corr.get("ok"),
            "correct_max_rel_diff": corr.get("max_rel_diff"),
            "correct_tolerance": corr.get("tolerance"),
            "compile_ns": summary.get("compile_ns"),
            "update_bytes_per_step": summary.get("update_bytes_per_step"),
            "median_step_ns": float(pd.Series(measured).median()) if measured else None,
            "p10_step_ns": float(pd.Series(measured).quantile(0.1)) if measured else None,
            "p90_step_ns": float(pd.Series(measured).quantile(0.9)) if measured else None,
            "process": process, "group": a.group, "paired": bool(a.group),
            "correct_from_repeat": repeat if corr.get("checked") else None,
            "memory_scope": "group" if a.group else "case", "energy_scope": "group" if a.group else "case",
        }
        for key, value in summary.items():
            # structured figures (e.g. the ONNX inference study) travel as JSON text
            row.setdefault(key, json.dumps(value) if isinstance(value, (dict, list)) else value)
        for m in a.meters:
            row[m.name] = m.value
            row[f"{m.name}_source"] = m.source
        if a.group:
            _to_group_scope(row)
        case_rows.append(row)
    _share_checks(case_rows)
    steps = pd.DataFrame(step_rows, columns=list(STEP_COLUMNS))
    for col in ("threads", "batch"):  # unknown only when neither the run nor the manifest says
        steps[col] = steps[col].fillna(0)
    steps = steps.astype(STEP_DTYPES)
    cases = pd.DataFrame(case_rows)
    for col in CASE_COLUMNS:
        if col not in cases.columns:
            cases[col] = pd.Series(dtype="object")
    for col in cases.columns:  # JSON nulls leave numeric columns as objects; make them numbers
        cases[col] = _writable(cases[col])
    extra = [c for c in cases.columns if c not in CASE_COLUMNS]
    return steps, cases[list(CASE_COLUMNS) + extra]


def _to_group_scope(row: dict[str, Any]) -> None:
    """A shared process's memory and energy belong to the group: move them to group_<name>."""
    for name in GROUP_FIGURES:
        if name in row:
            row[f"group_{name}"] = row[name]
            row[name] = None
    if "energy_source" in row:
        row["group_energy_source"] = row["energy_source"]
        row["energy_source"] = "none"
        row["energy_reason"] = NOT_SEPARABLE


def _share_checks(rows: list[dict[str, Any]]) -> None:
    """The correctness check runs once per run per case (its repeat-0 process): give its result
    to the case's other repeats on the same device, a failed check making them ``wrong`` too."""
    checked = {(r["device"], r["case_id"]): r for r in rows if r["correct_checked"]}
    for row in rows:
        src = checked.get((row["device"], row["case_id"]))
        if row["correct_checked"] or src is None:
            continue
        for col in ("correct_checked", "correct_ok", "correct_max_rel_diff", "correct_tolerance",
                    "correct_from_repeat"):
            row[col] = src[col]
        if row["status"] == "ok" and src["correct_ok"] is False:
            row["status"], row["error_kind"] = "wrong", "correctness"
            row["error_message"] = src["error_message"]


def _writable(column: pd.Series) -> pd.Series:
    """A column parquet can store whatever the agent reported in it.

    Numbers become a numeric column (non-finite floats as NaN); a column that mixes kinds
    (numbers and text, or numbers beyond int64) becomes text, so a table is always writable.
    """
    if column.dtype != object:
        return column
    values = column.dropna()
    if not len(values):
        return column
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if all(isinstance(v, float) or -2**63 <= v < 2**63 for v in values):
            return pd.to_numeric(column).replace([float("inf"), float("-inf")], float("nan"))
    elif all(isinstance(v, str) for v in values) or all(isinstance(v, bool) for v in values):
        return column
    return column.map(lambda v: v if v is None or (isinstance(v, float) and v != v) else
                      v if isinstance(v, str) else json.dumps(v, default=str))


def _parquet_bytes(df: pd.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def write_tables(run_dir: Path, *, csv: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rebuild and atomically write steps/cases tables (and CSV copies on request)."""
    steps, cases = build_tables(run_dir)
    atomic_write(run_dir / "steps.parquet", _parquet_bytes(steps))
    atomic_write(run_dir / "cases.parquet", _parquet_bytes(cases))
    if csv:
        atomic_write(run_dir / "steps.csv", steps.to_csv(index=False))
        atomic_write(run_dir / "cases.csv", cases.to_csv(index=False))
    return steps, cases


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def load_run(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The stored tables and manifest of a run (tables rebuilt from raw.jsonl if missing).

    Read by :func:`analysis.load.read_tables`, the one reader: the version checked against
    :data:`analysis.schema.READABLE_VERSIONS`, version-1 tables upgraded (one process per
    case and repeat, no rounds).
    """
    from analysis.load import read_tables
    from analysis.schema import check_version, upgrade

    if not (run_dir / "raw.jsonl").is_file() and not (run_dir / "cases.parquet").is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no raw.jsonl or cases.parquet)")
    if (run_dir / "steps.parquet").is_file() and (run_dir / "cases.parquet").is_file():
        return read_tables(run_dir)
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    check_version(manifest, str(manifest_path))
    steps, cases = upgrade(*build_tables(run_dir))
    assert steps is not None and cases is not None
    return steps, cases, manifest
