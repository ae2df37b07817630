"""The agent protocol: one JSON object per stdout line, checked on both sides.

The agent (device side) builds these records and prints them with :func:`dump_line`;
the host parses every line it receives with :func:`parse_line`, which accepts exactly
the shapes below and raises :class:`ProtocolError` quoting the offending line otherwise.

This module imports only the standard library: it travels inside the agent bundle.

Protocol history (bump ``PROTOCOL_VERSION`` on any incompatible change and add a line):

- 1: hello, probe, case_start, step, meter, case_end, error, bye. Additive since: probe
  ``ceilings`` (per accelerator: bandwidth, matmul GFLOP/s per dtype); step ``phases_ns`` has
  ``zero_grad`` apart from ``update``.
- 2: ``run`` also takes a group spec (``{"group", "cases": [case specs], "rotation",
  "order_seed"}``: the cases alternate step by step in one process, workloads/paired.py);
  every spec carries ``"protocol"`` and the agent refuses another version; ``step`` gains
  ``round`` (the alternation round in a shared process, -1 for a case alone). Version-1
  lines stay readable from stored runs (:data:`READABLE_VERSIONS`), never from a live agent.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

PROTOCOL_VERSION = 2
READABLE_VERSIONS = (1, 2)  # what stored raw.jsonl may hold; v1 records are v2's without new fields


class ProtocolError(ValueError):
    """A line from the agent that is not a valid protocol record."""

    def __init__(self, message: str, line: str = "") -> None:
        shown = line if len(line) <= 300 else line[:300] + "..."
        super().__init__(f"{message}: {shown!r}" if line else message)
        self.line = line


_JSON_SCALARS = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Record:
    """Base of every protocol record; ``type`` names the record on the wire."""

    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        data = {"v": PROTOCOL_VERSION, "type": self.TYPE}
        data.update(dataclasses.asdict(self))
        return data


@dataclass(frozen=True)
class Hello(Record):
    """First line of every agent process: who is speaking and where."""

    TYPE: ClassVar[str] = "hello"
    agent_version: str
    python: str
    torch: str
    platform: str
    machine: str
    cpu_count: int
    env: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Probe(Record):
    """Device capabilities and measured ceilings (bandwidth, matrix throughput)."""

    TYPE: ClassVar[str] = "probe"
    threads: int
    bandwidth_gbs: float
    bandwidth_kernel: str
    matmul_gflops: float
    details: Mapping[str, Any] = field(default_factory=dict)
    # accelerator (cpu, cuda) -> {device_name, bandwidth_gbs, bandwidth_kernel,
    # matmul_gflops: {dtype: GFLOP/s}, ...} or {error}: the ceilings each case is placed against
    ceilings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseStart(Record):
    """The agent accepted a case spec and is about to build it."""

    TYPE: ClassVar[str] = "case_start"
    case_id: str
    spec: Mapping[str, Any]
    param_count: int
    param_bytes: int


@dataclass(frozen=True)
class Step(Record):
    """One training step: per-phase nanoseconds from a monotonic clock, and the loss."""

    TYPE: ClassVar[str] = "step"
    case_id: str
    index: int
    warmup: bool
    phases_ns: Mapping[str, int]
    step_ns: int
    loss: float
    round: int = -1  # in a shared process: steps of one round ran back to back (a pair)


@dataclass(frozen=True)
class Meter(Record):
    """One reading of a meter (energy, memory, thermal, frequency), with its source."""

    TYPE: ClassVar[str] = "meter"
    case_id: str
    name: str
    value: float
    unit: str
    source: str
    t_ns: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseEnd(Record):
    """A case finished: its summary figures and the correctness check of its variant."""

    TYPE: ClassVar[str] = "case_end"
    case_id: str
    steps: int
    warmup_steps: int
    wall_ns: int
    peak_rss_bytes: int
    state_bytes: int
    correctness: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Error(Record):
    """One case failed on the device; the run goes on."""

    TYPE: ClassVar[str] = "error"
    case_id: str
    kind: str
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class Bye(Record):
    """Last line of an agent process that ended normally."""

    TYPE: ClassVar[str] = "bye"
    cases_ok: int
    cases_failed: int


RECORD_TYPES: dict[str, type[Record]] = {
    cls.TYPE: cls for cls in (Hello, Probe, CaseStart, Step, Meter, CaseEnd, Error, Bye)
}


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity; send them as null rather than invalid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dump_line(record: Record) -> str:
    """The record as one line of JSON (no trailing newline)."""
    return json.dumps(_clean(record.to_dict()), separators=(",", ":"), allow_nan=False)


_INT64 = 2**63


def _non_finite(token: str) -> None:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON; read them as null (not measured),
    as :func:`dump_line` writes them, so no non-finite number reaches a table."""
    return None


def _int64(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64


def _check_type(name: str, value: Any, annotation: str, line: str) -> Any:
    """Check one field against its annotation; ints are accepted where floats are expected."""
    base = annotation.replace(" ", "")
    ok: bool
    if base == "str":
        ok = isinstance(value, str)
    elif base == "int":  # a table column is int64: a larger number is a protocol error
        ok = _int64(value)
    elif base == "float":
        ok = value is None or _int64(value) or isinstance(value, float)
        if ok and value is not None:
            value = float(value)
        elif value is None:
            value = math.nan
    elif base == "bool":
        ok = isinstance(value, bool)
    elif base.startswith("Mapping[str,int]"):
        ok = isinstance(value, dict) and all(_int64(v) for v in value.values())
    elif base.startswith("Mapping"):
        ok = isinstance(value, dict)
    else:  # pragma: no cover - guarded by test_every_field_annotation_is_checked
        raise AssertionError(f"unhandled annotation {annotation}")
    if not ok:
        raise ProtocolError(
            f"field {name!r} should be {annotation}, got {type(value).__name__}", line
        )
    return value


def parse_line(line: str, versions: tuple[int, ...] = (PROTOCOL_VERSION,)) -> Record:
    """Parse and validate one agent stdout line into its record.

    ``versions``: the protocol versions accepted (a live agent must speak this one; stored
    lines may be older, :data:`READABLE_VERSIONS`). Raises :class:`ProtocolError` naming
    the problem and quoting the line.
    """
    text = line.strip()
    if not text:
        raise ProtocolError("empty line from agent", line)
    try:
        data = json.loads(text, parse_constant=_non_finite)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON ({exc.msg})", line) from None
    if not isinstance(data, dict):
        raise ProtocolError("not a JSON object", line)
    version = data.pop("v", None)
    if version not in versions:
        raise ProtocolError(
            f"protocol version {version!r}, this host speaks {PROTOCOL_VERSION}; "
            "redeploy the agent from this checkout (the bundle is rebuilt automatically "
            "when its content changes)",
            line,
        )
    kind = data.pop("type", None)
    cls = RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(
            f"unknown record type {kind!r} (known: {', '.join(sorted(RECORD_TYPES))})", line
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ProtocolError(f"{kind} record has unknown field(s) {unknown}", line)
    values = {}
    for name, spec in fields.items():
        if name not in data:
            has_default = (
                spec.default is not dataclasses.MISSING
                or spec.default_factory is not dataclasses.MISSING
            )
            if has_default:
                continue
            raise ProtocolError(f"{kind} record is missing field {name!r}", line)
        values[name] = _check_type(name, data[name], str(spec.type), line)
    return cls(**values)
