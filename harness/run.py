"""Run a plan on one or more devices: deploy, run the agent per case, store every line.

One worker per device; each unit of the schedule (harness/schedule.py: a case alone, or a
group of variants that alternate in one process) is one agent process, so a crash takes
down one process, not the run. Transient faults (a dropped link) reconnect and
re-run the case with backoff; a device that stays gone is marked so and the other devices
go on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.deploy import Bundle, Deployment, deploy
from harness.errors import ConfigError, DeviceBusy, DeviceError, HarnessError, TransientError
from harness.leftovers import AgentLedger
from harness.locks import DeviceLock
from harness.plan import Case
from harness.profiles import Profile
from harness.progress import Progress
from harness.schedule import Unit
from harness.store import RawLog
from harness.transports import connect
from harness.transports.base import Connection
from workloads.schema import (
    PROTOCOL_VERSION,
    CaseEnd,
    Error,
    Hello,
    Probe,
    ProtocolError,
    Step,
    parse_line,
)

log = logging.getLogger(__name__)


@dataclass
class DeviceOutcome:
    """How one device's share of a run ended."""

    device: str
    status: str = "ok"  # ok | some-failed | busy | unreachable | device-error | config-error | error
    message: str = ""
    cases_ok: int = 0
    cases_failed: int = 0
    bytes_pushed: int = 0
    probe: dict[str, Any] | None = None


@dataclass
class _Listener:
    """Receives one agent process's lines: store first, then parse and track per case.

    In a shared process (``group``) each line is filed under the case its record names, so
    raw.jsonl keeps one envelope per case line as for a lone case.
    """

    raw: RawLog
    device: str
    case_id: str
    attempt: int
    on_step: Callable[[], None]
    repeat: int = 0
    group: str = ""
    process: str = ""
    end: CaseEnd | None = None
    error: Error | None = None
    hello: Hello | None = None
    protocol_errors: list[str] = field(default_factory=list)
    store_error: HarnessError | None = None  # raw.jsonl could not be written (disk full)
    ends: dict[str, CaseEnd] = field(default_factory=dict)
    errors: dict[str, Error] = field(default_factory=dict)

    def __call__(self, line: str) -> None:
        case_id = _line_case_id(line) if self.group else self.case_id
        try:
            self.raw.agent_line(self.device, case_id, self.attempt, line, self.repeat,
                                group=self.group, process=self.process)
        except HarnessError as exc:  # keep draining: a transport thread must not die mid-stream
            self.store_error = self.store_error or exc
            return
        try:
            rec = parse_line(line)
        except ProtocolError as exc:
            self.protocol_errors.append(str(exc))
            return
        if isinstance(rec, Step):
            self.on_step()
        elif isinstance(rec, CaseEnd):
            self.end = rec
            self.ends[rec.case_id] = rec
        elif isinstance(rec, Error):
            self.error = rec
            self.errors[rec.case_id] = rec
        elif isinstance(rec, Hello):
            self.hello = rec

    def for_case(self, case_id: str) -> _Listener:
        """This process's view of one of its cases (for :func:`_status`)."""
        if not self.group:
            return self
        error = self.errors.get(case_id) or self.errors.get("")
        return dataclasses.replace(self, case_id=case_id, end=self.ends.get(case_id), error=error)


def _line_case_id(line: str) -> str:
    """The case a record names ("" for hello, bye and lines that are not records)."""
    try:
        value = json.loads(line).get("case_id", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def case_spec(case: Case, profile: Profile) -> dict[str, Any]:
    """The explicit spec the agent gets: the case plus what the profile says about the device."""
    spec = case.spec()
    if profile.cpu.pin:
        spec["cpu_affinity"] = list(profile.cpu.clusters[profile.cpu.pin])
    spec["energy"] = json.loads(json.dumps(profile.to_dict()["energy"], default=dict))
    spec["thermal"] = json.loads(json.dumps(profile.to_dict()["thermal"], default=list))
    return spec


def _status(listener: _Listener, result: Any) -> tuple[str, str, str]:
    """(status, error_kind, error_message) of one attempt."""
    if listener.end is not None:
        corr = listener.end.correctness
        if corr.get("checked") and not corr.get("ok"):
            return (
                "wrong",
                "correctness",
                f"kernel disagrees with the reference: max relative difference "
                f"{corr.get('max_rel_diff'):.3g} > tolerance {corr.get('tolerance'):.3g}",
            )
        return "ok", "", ""
    if listener.error is not None:
        return "failed", listener.error.kind, listener.error.message
    if result.timed_out:
        return "failed", "timeout", "the case ran past its deadline; the agent's process tree was killed"
    if listener.protocol_errors:
        return "failed", "protocol", listener.protocol_errors[0]
    if result.signal:
        how = f"signal {result.signal}"
    elif result.exit_code is None:  # ssh: paramiko drops the "exit-signal" message
        how = "a signal the transport does not name"
    else:
        how = f"exit code {result.exit_code}"
    tail = result.stderr.strip().splitlines()[-3:]
    return "failed", "crash", f"the agent died ({how}) before finishing the case: " + " | ".join(tail)


def unit_spec(unit: Unit, profile: Profile) -> dict[str, Any]:
    """What one agent process gets: a case spec, or a group spec whose cases alternate.

    ``rotation`` (the repeat) rotates which model copy serves which variant across the
    group's processes; ``order_seed`` draws the variants' order in each round.
    """
    if not unit.group:
        return {**case_spec(unit.cases[0], profile), "protocol": PROTOCOL_VERSION}
    first = unit.cases[0]
    return {"protocol": PROTOCOL_VERSION, "group": unit.group, "repeat": unit.repeat,
            "rotation": unit.repeat, "order_seed": first.seed * 1_000_003 + unit.repeat,
            "cases": [case_spec(c, profile) for c in unit.cases]}


def run_unit(
    conn: Connection, deployment: Deployment, profile: Profile, unit: Unit, attempt: int,
    raw: RawLog, progress: Progress, log_dir: Path, ledger: AgentLedger | None = None,
) -> dict[str, str]:
    """Run one attempt of one agent process; returns each case's status. Transient faults propagate.

    With a ledger, the agent's process group is recorded before the agent gets its spec and
    cleared when the command returns, so a crash of this process leaves it findable.
    """
    spec = unit_spec(unit, profile)
    process = unit.process_id(profile.name, attempt)
    listener = _Listener(raw, profile.name, unit.key if not unit.group else "", attempt, progress.step,
                         unit.repeat, unit.group, process)
    timeout = sum(c.timeout_s or profile.agent.case_timeout_s for c in unit.cases)
    started: list[int] = []
    start = time.monotonic_ns()
    result = conn.run(
        deployment.argv("run"),
        stdin=json.dumps(spec).encode(),
        deadline_s=timeout,
        on_stdout_line=listener,
        cwd=deployment.workdir,
        env=dict(profile.agent.env) or None,
        on_start=_recorder(ledger, unit.key, attempt, started),
    )
    _ended(ledger, started)
    host_wall_ns = time.monotonic_ns() - start
    if listener.store_error is not None:
        raise listener.store_error
    statuses: dict[str, str] = {}
    lines = []
    for case in unit.cases:
        status, kind, message = _status(listener.for_case(case.case_id), result)
        statuses[case.case_id] = status
        lines.append(f"== {case.case_id} repeat {case.repeat} attempt {attempt} ({process}): "
                     f"{status} {kind} {message}\n")
        raw.event(
            profile.name, case.case_id, attempt, "attempt_end", repeat=case.repeat, status=status,
            spec=case_spec(case, profile), error_kind=kind, error_message=message,
            exit_code=result.exit_code, signal=result.signal, timed_out=result.timed_out,
            host_wall_ns=host_wall_ns, stderr_tail=result.stderr[-4000:], group=unit.group,
            process=process, rotation=spec.get("rotation"), order_seed=spec.get("order_seed"),
        )
    raw.sync()
    with open(log_dir / f"{profile.name}.log", "a", encoding="utf-8") as f:
        f.write("".join(lines) + f"{result.stderr}\n")
    return statuses


def run_case(
    conn: Connection, deployment: Deployment, profile: Profile, case: Case, attempt: int,
    raw: RawLog, progress: Progress, log_dir: Path, ledger: AgentLedger | None = None,
) -> str:
    """Run one attempt of one case alone; returns its status. Transient faults propagate."""
    unit = Unit("", (case,), case.repeat)
    return run_unit(conn, deployment, profile, unit, attempt, raw, progress, log_dir, ledger)[case.case_id]


def _recorder(ledger: AgentLedger | None, key: str, attempt: int,
              started: list[int]) -> Callable[[int], None] | None:
    """The transport's on_start hook: record the agent's process group in the ledger."""
    if ledger is None:
        return None

    def record(pgid: int) -> None:
        ledger.started(pgid, key, attempt)
        started.append(pgid)

    return record


def _ended(ledger: AgentLedger | None, started: list[int]) -> None:
    for pgid in started if ledger is not None else ():
        ledger.ended(pgid)


def run_probe(conn: Connection, deployment: Deployment, profile: Profile, threads: int,
              raw: RawLog, accels: tuple[str, ...] = ("cpu",),
              ledger: AgentLedger | None = None) -> dict[str, Any] | None:
    """Measure the device's ceilings (bandwidth, matmul per dtype) once, for the CPU and each
    accelerator in ``accels``; None when the probe failed."""
    found: list[Probe] = []

    def on_line(line: str) -> None:
        raw.agent_line(profile.name, "", 0, line)
        try:
            rec = parse_line(line)
        except ProtocolError:
            return
        if isinstance(rec, Probe):
            found.append(rec)

    request = {"threads": threads, "accels": list(accels)}
    started: list[int] = []
    result = conn.run(deployment.argv("probe"), stdin=json.dumps(request).encode(),
                      deadline_s=600, on_stdout_line=on_line, cwd=deployment.workdir,
                      on_start=_recorder(ledger, "", 0, started))
    _ended(ledger, started)
    if not found:
        log.warning("%s: the ceilings probe failed (exit %s): %s", profile.name,
                    result.exit_code, result.stderr.strip()[-300:])
        return None
    data = found[-1].to_dict()
    data.pop("v"), data.pop("type")
    return {"device": profile.name, **data}


@dataclass(frozen=True)
class Sink:
    """Which agent a unit runs and where its lines go; ``harness ab`` has one per side."""

    bundle: Bundle
    raw: RawLog
    log_dir: Path


def run_device(
    profile: Profile, units: list[Unit], bundle: Bundle, raw: RawLog, run_dir: Path,
    progress: Progress, *, backoff_s: float = 1.0, probe: bool = True,
    first_attempt: dict[tuple[str, int], int] | None = None,
    sinks: list[Sink] | None = None, pause_s: float = 0.0,
) -> DeviceOutcome:
    """Run every agent process (unit) on one device, under its lock.

    ``first_attempt`` numbers a resumed unit's attempts (keyed by unit key and repeat) after
    those already in raw.jsonl. ``sinks`` (default: ``bundle``, ``raw`` and the run's logs)
    lets units of one interleaved schedule run different agents into different run
    directories (``unit.side`` picks one); ``pause_s`` waits between units.
    """
    outcome = DeviceOutcome(profile.name)
    sinks = sinks or [Sink(bundle, raw, run_dir / "logs")]
    for sink in sinks:
        sink.log_dir.mkdir(exist_ok=True)
    done = 0  # units finished (ok, failed, or given up as unreachable)
    try:
        with DeviceLock(profile.name, run_dir.name):
            ledger = AgentLedger(profile.name, run_dir)
            conn: Connection | None = None
            deployments: list[Deployment] = []
            orphans: tuple[int, ...] = ()
            for n, unit in enumerate(units):
                if n and pause_s:
                    time.sleep(pause_s)
                sink = sinks[unit.side]
                progress.start_case(unit)
                statuses: dict[str, str] = {}
                base = (first_attempt or {}).get((unit.key, unit.repeat), 1)
                for attempt in range(base, base + profile.agent.retries + 1):
                    try:
                        if conn is None:
                            conn = connect(profile)
                            deployments = [deploy(conn, profile, s.bundle) for s in sinks]
                            outcome.bytes_pushed += sum(d.bytes_pushed for d in deployments)
                            _report_reaped(raw, profile, ledger.reap(conn, orphans))
                            orphans = ()
                        if probe and outcome.probe is None:
                            threads = max(c.threads for u in units for c in u.cases)
                            accels = tuple(sorted({c.accel for u in units for c in u.cases}))
                            outcome.probe = run_probe(conn, deployments[0], profile, threads, raw,
                                                      accels, ledger) or {}
                        statuses = run_unit(conn, deployments[unit.side], profile, unit, attempt,
                                            sink.raw, progress, sink.log_dir, ledger)
                        break
                    except TransientError as exc:
                        for case in unit.cases:
                            sink.raw.event(profile.name, case.case_id, attempt, "attempt_end",
                                           repeat=case.repeat, status="transient", error_kind="transient",
                                           error_message=str(exc), spec=case_spec(case, profile),
                                           group=unit.group, process=unit.process_id(profile.name, attempt))
                        log.warning("%s: %s (attempt %d); reconnecting", profile.name, exc, attempt)
                        orphans += exc.orphans
                        if conn is not None:
                            _close_quietly(conn)
                        conn = None
                        progress.restart_case()
                        time.sleep(backoff_s * 2 ** (attempt - base))
                else:
                    outcome.cases_failed += len(unit.cases)
                    done += 1
                    progress.end_case("transient")
                    raise TransientError(f"{profile.name} stayed unreachable after "
                                      f"{profile.agent.retries + 1} attempts")
                bad = [s for s in statuses.values() if s != "ok"]
                done += 1
                progress.end_case(bad[0] if bad else "ok")
                outcome.cases_ok += len(statuses) - len(bad)
                outcome.cases_failed += len(bad)
            if conn is not None:
                _close_quietly(conn)
    except HarnessError as exc:
        if isinstance(exc, DeviceBusy):
            outcome.status = "busy"
        elif isinstance(exc, TransientError):
            outcome.status = "unreachable"
        elif isinstance(exc, DeviceError):
            outcome.status = "device-error"  # reachable but unable: no python, no space, ...
        elif isinstance(exc, ConfigError):
            outcome.status = "config-error"  # host key, authentication, name: exit 2, no retries
        else:
            outcome.status = "error"
        outcome.message = str(exc)
        _not_run(profile, units[done:], sinks, outcome)
        return outcome
    outcome.status = "ok" if outcome.cases_failed == 0 else "some-failed"
    return outcome


def _not_run(profile: Profile, units: list[Unit], sinks: list[Sink], outcome: DeviceOutcome) -> None:
    """One row per case the device did not finish, saying why (busy, unreachable, refused ...).

    Recorded as attempt 0, so a case that reached the agent before the device failed keeps
    the row of that attempt. ``--resume`` runs all of them again (not ok or wrong).
    """
    try:
        for unit in units:
            for case in unit.cases:
                sinks[unit.side].raw.event(
                    profile.name, case.case_id, 0, "attempt_end", repeat=case.repeat, status="not-run",
                    error_kind=outcome.status, error_message=outcome.message, spec=case_spec(case, profile),
                    group=unit.group)
    except HarnessError:  # the store itself failed: the outcome's message says why already
        log.debug("could not record the cases %s did not run", profile.name, exc_info=True)


def _report_reaped(raw: RawLog, profile: Profile, outcome: dict[int, str]) -> None:
    """Say in raw.jsonl which leftover agents were killed (or found gone) before measuring."""
    if outcome:
        raw.event(profile.name, "", 0, "leftover_agents", groups={str(k): v for k, v in outcome.items()})


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:  # closing a dead link must not hide the fault that killed it
        log.debug("closing %s failed", conn.name, exc_info=True)


def run_devices(
    profiles: list[Profile], cases: dict[str, list[Unit]], bundle: Bundle, raw: RawLog,
    run_dir: Path, progress_factory: Callable[[Profile, int, int], Progress], *,
    probe: bool = True, first_attempt: dict[str, dict[tuple[str, int], int]] | None = None,
) -> list[DeviceOutcome]:
    """Run each device's agent processes (keyed by device name), one worker per device, all at once."""
    def one(i: int, p: Profile) -> DeviceOutcome:
        todo = cases.get(p.name, [])
        return run_device(p, todo, bundle, raw, run_dir, progress_factory(p, i, len(todo)),
                          probe=probe and bool(todo), first_attempt=(first_attempt or {}).get(p.name))

    if len(profiles) == 1:
        return [one(0, profiles[0])]
    with ThreadPoolExecutor(max_workers=len(profiles)) as pool:
        futures = [pool.submit(one, i, p) for i, p in enumerate(profiles)]
        return [f.result() for f in futures]
