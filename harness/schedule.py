"""Agent processes of a run: which cases share one, how many each case gets, in what order.

The unit of replication is the agent process (docs/statistics: a case's median moves more
between processes than its steps move inside one), so every case runs in several processes.
Cases that differ only in optimizer or kernel variant (same workload, threads, batch, dtype,
mode, accelerator, options and step counts) share one process by default and alternate step
by step (``workloads/paired.py``): a paired comparison in which the process's own offset
cancels. ``isolate`` gives every case its own process instead (per-variant peak memory and
energy).

Processes run in blocks: block ``r`` runs every process group once (its ``repeat`` r), in an
order shuffled with ``seed + r``, so slow drift (heat, battery, a neighbour's load) hits all
cases alike. The same seed gives the same schedule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from harness.errors import ConfigError
from harness.plan import Case

DEFAULT_PROCESSES = 3  # a suite's ``processes`` key and ``--processes`` override it
SLOWDOWN_PHASES = ("step", "data", "forward", "backward", "update")
# what may differ between cases that share a process: the variant and calibration knobs
_VARIANT_FIELDS = ("optimizer", "kernel", "hparams", "slowdown", "slowdown_phase", "replica", "repeat")


@dataclass(frozen=True)
class Unit:
    """One agent process of a plan: a case alone (``group == ""``) or a group that alternates.

    ``repeat`` numbers the processes of the same cases (block r runs repeat r). The fields
    ``case_id``, ``warmup`` and ``steps`` let progress bars treat a unit like a case.
    """

    group: str
    cases: tuple[Case, ...]
    repeat: int = 0
    side: int = 0  # harness ab: which side's agent and run directory (run.Sink)

    @property
    def key(self) -> str:
        """The group id, or the lone case's id: with ``repeat``, names the process in a plan."""
        return self.group or self.cases[0].case_id

    @property
    def case_id(self) -> str:  # what a progress line shows
        if not self.group:
            return self.cases[0].case_id
        return f"{self.group} ({len(self.cases)} variants, process {self.repeat})"

    @property
    def warmup(self) -> int:
        return sum(c.warmup for c in self.cases)

    @property
    def steps(self) -> int:
        return sum(c.steps for c in self.cases)

    def process_id(self, device: str, attempt: int) -> str:
        """Unique within a run across devices and attempts: the ``process`` column."""
        return f"{device}:{self.key}:r{self.repeat}:a{attempt}"


def group_key(case: Case) -> str:
    """JSON of everything but the variant: cases with equal keys may share a process."""
    data = dataclasses.asdict(case)
    for name in _VARIANT_FIELDS:
        data.pop(name)
    return json.dumps(data, sort_keys=True, default=str)


def group_id(case: Case) -> str:
    """A readable, stable id for the process group a case belongs to."""
    digest = hashlib.sha256(group_key(case).encode()).hexdigest()[:6]
    base = f"{case.workload}-t{case.threads}-b{case.batch}-{case.dtype}"
    if case.mode != "eager":
        base += f"-{case.mode}"
    if case.accel != "cpu":
        base += f"-{case.accel}"
    return f"{base}-g{digest}"


def _can_share(case: Case) -> bool:
    """Study runs stop at a target loss and the ONNX study exports the model: alone."""
    return case.target_loss is None and not case.onnx_inference


def groups(cases: Sequence[Case], *, isolate: bool = False) -> list[Unit]:
    """The process groups of a case list (repeat 0), in the order their first case appears."""
    found: dict[str, list[Case]] = {}
    alone: list[Unit] = []
    order: list[str | Unit] = []
    for case in cases:
        if isolate or not _can_share(case):
            unit = Unit("", (case,))
            alone.append(unit)
            order.append(unit)
            continue
        gid = group_id(case)
        if gid not in found:
            found[gid] = []
            order.append(gid)
        found[gid].append(case)
    units = []
    for item in order:
        if isinstance(item, Unit):
            units.append(item)
        elif len(found[item]) == 1:  # nothing to pair with: a process of its own
            units.append(Unit("", (found[item][0],)))
        else:
            units.append(Unit(item, tuple(found[item])))
    return units


def blocks(units: Sequence[Unit], processes: int, seed: int) -> list[Unit]:
    """Every unit ``processes`` times: block r runs each once (repeat r), shuffled by seed + r."""
    if processes < 1:
        raise ConfigError(f"must be ≥ 1, got {processes}", key="--processes")
    order: list[Unit] = []
    for r in range(processes):
        block = [with_repeat(u, r) for u in units]
        random.Random(seed + r).shuffle(block)
        order += block
    return order


def with_repeat(unit: Unit, repeat: int) -> Unit:
    return dataclasses.replace(unit, cases=tuple(dataclasses.replace(c, repeat=repeat) for c in unit.cases),
                               repeat=repeat)


def schedule(cases: Sequence[Case], processes: int, seed: int, *, isolate: bool = False) -> list[Unit]:
    """The run order of a plan: groups (or lone cases) in randomized blocks."""
    return blocks(groups(cases, isolate=isolate), processes, seed)


def processes_for(suite_data: dict[str, Any], given: int | None, source: str, *,
                  default: int = DEFAULT_PROCESSES) -> int:
    """``--processes`` if given, else the suite's ``processes`` key, else ``default``."""
    from harness.limits import SUITE_RANGES, check_number

    if given is not None:
        return int(check_number(given, SUITE_RANGES["processes"], source="command line", key="--processes"))
    value = suite_data.get("processes", default)
    return int(check_number(value, SUITE_RANGES["processes"], source=source, key="processes"))


def lone(cases: Iterable[Case]) -> list[Unit]:
    """Each case in its own process, in the given order (callers that schedule cases)."""
    return [Unit("", (c,), c.repeat) for c in cases]


def with_replicas(cases: Sequence[Case], replicas: int) -> list[Case]:
    """Calibration: each case plus ``replicas`` in-process A/A twins (``-aa1``, ``-aa2``…)."""
    if replicas < 0:
        raise ConfigError(f"must be ≥ 0, got {replicas}", key="--aa-replicas")
    out: list[Case] = []
    for c in cases:
        out.append(c)
        out += [dataclasses.replace(c, replica=f"aa{i}") for i in range(1, replicas + 1)]
    return out


def with_slowdown(cases: Sequence[Case], fraction: float, phase: str = "step",
                  case_ids: Sequence[str] = ()) -> list[Case]:
    """Calibration: a known busy-wait of ``fraction`` of ``phase``'s own time, in the named
    cases (every case when none are named)."""
    if not 0.0 <= fraction <= 10.0:
        raise ConfigError(f"must be between 0 and 10, got {fraction}", key="--inject-slowdown")
    if phase not in SLOWDOWN_PHASES:
        raise ConfigError(f"unknown phase {phase!r}; known: {', '.join(SLOWDOWN_PHASES)}",
                          key="--inject-phase")
    known = {c.case_id for c in cases}
    unknown = [i for i in case_ids if i not in known]
    if unknown:
        raise ConfigError(f"no case {unknown[0]!r} in this plan (`harness list` and the filters "
                          "say which cases there are)", key="--inject-into")
    return [dataclasses.replace(c, slowdown=fraction, slowdown_phase=phase)
            if fraction and (not case_ids or c.case_id in case_ids) else c for c in cases]
