"""Run a plan on one or more devices: deploy, run the agent per case, store every line.

One worker per device; each case is one agent process (a clean peak-RSS figure, and a
crash takes down one case, not the run). Transient faults (a dropped link) reconnect and
re-run the case with backoff; a device that stays gone is marked so and the other devices
go on.
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.deploy import Bundle, Deployment, deploy
from harness.errors import DeviceBusy, DeviceError, HarnessError, TransientError
from harness.locks import DeviceLock
from harness.plan import Case
from harness.profiles import Profile
from harness.progress import Progress
from harness.store import RawLog
from harness.transports import connect
from harness.transports.base import Connection
from workloads.schema import CaseEnd, Error, Hello, Probe, ProtocolError, Step, parse_line

log = logging.getLogger(__name__)


@dataclass
class DeviceOutcome:
    """How one device's share of a run ended."""

    device: str
    status: str = "ok"  # ok | some-failed | busy | unreachable | device-error | error
    message: str = ""
    cases_ok: int = 0
    cases_failed: int = 0
    bytes_pushed: int = 0
    probe: dict[str, Any] | None = None


@dataclass
class _Listener:
    """Receives one attempt's agent lines: store first, then parse and track."""

    raw: RawLog
    device: str
    case_id: str
    attempt: int
    on_step: Callable[[], None]
    repeat: int = 0
    end: CaseEnd | None = None
    error: Error | None = None
    hello: Hello | None = None
    protocol_errors: list[str] = field(default_factory=list)
    store_error: HarnessError | None = None  # raw.jsonl could not be written (disk full)

    def __call__(self, line: str) -> None:
        try:
            self.raw.agent_line(self.device, self.case_id, self.attempt, line, self.repeat)
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
        elif isinstance(rec, Error):
            self.error = rec
        elif isinstance(rec, Hello):
            self.hello = rec


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


def run_case(
    conn: Connection, deployment: Deployment, profile: Profile, case: Case, attempt: int,
    raw: RawLog, progress: Progress, log_dir: Path,
) -> str:
    """Run one attempt of one case; returns its status. Transient faults propagate."""
    spec = case_spec(case, profile)
    listener = _Listener(raw, profile.name, case.case_id, attempt, progress.step, case.repeat)
    timeout = case.timeout_s or profile.agent.case_timeout_s
    start = time.monotonic_ns()
    result = conn.run(
        deployment.argv("run"),
        stdin=json.dumps(spec).encode(),
        deadline_s=timeout,
        on_stdout_line=listener,
        cwd=deployment.workdir,
        env=dict(profile.agent.env) or None,
    )
    host_wall_ns = time.monotonic_ns() - start
    if listener.store_error is not None:
        raise listener.store_error
    status, kind, message = _status(listener, result)
    raw.event(
        profile.name, case.case_id, attempt, "attempt_end", repeat=case.repeat, status=status, spec=spec,
        error_kind=kind, error_message=message, exit_code=result.exit_code,
        signal=result.signal, timed_out=result.timed_out, host_wall_ns=host_wall_ns,
        stderr_tail=result.stderr[-4000:],
    )
    raw.sync()
    with open(log_dir / f"{profile.name}.log", "a", encoding="utf-8") as f:
        f.write(f"== {case.case_id} repeat {case.repeat} attempt {attempt}: {status} {kind} {message}\n"
                f"{result.stderr}\n")
    return status


def run_probe(conn: Connection, deployment: Deployment, profile: Profile, threads: int,
              raw: RawLog, accels: tuple[str, ...] = ("cpu",)) -> dict[str, Any] | None:
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
    result = conn.run(deployment.argv("probe"), stdin=json.dumps(request).encode(),
                      deadline_s=600, on_stdout_line=on_line, cwd=deployment.workdir)
    if not found:
        log.warning("%s: the ceilings probe failed (exit %s): %s", profile.name,
                    result.exit_code, result.stderr.strip()[-300:])
        return None
    data = found[-1].to_dict()
    data.pop("v"), data.pop("type")
    return {"device": profile.name, **data}


def run_device(
    profile: Profile, cases: list[Case], bundle: Bundle, raw: RawLog, run_dir: Path,
    progress: Progress, *, backoff_s: float = 1.0, probe: bool = True,
    first_attempt: dict[tuple[str, int], int] | None = None,
) -> DeviceOutcome:
    """Run every case on one device, under its lock.

    ``first_attempt`` numbers a resumed case's attempts after those already in raw.jsonl.
    """
    outcome = DeviceOutcome(profile.name)
    log_dir = run_dir / "logs"
    log_dir.mkdir(exist_ok=True)
    try:
        with DeviceLock(profile.name, run_dir.name):
            conn: Connection | None = None
            deployment: Deployment | None = None
            orphans: tuple[int, ...] = ()
            for case in cases:
                progress.start_case(case)
                status = "failed"
                base = (first_attempt or {}).get((case.case_id, case.repeat), 1)
                for attempt in range(base, base + profile.agent.retries + 1):
                    try:
                        if conn is None:
                            conn = connect(profile)
                            deployment = deploy(conn, profile, bundle)
                            outcome.bytes_pushed += deployment.bytes_pushed
                            orphans = _reap(conn, orphans)
                        if probe and outcome.probe is None:
                            threads = max(c.threads for c in cases)
                            accels = tuple(sorted({c.accel for c in cases}))
                            outcome.probe = run_probe(conn, deployment, profile, threads, raw,
                                                      accels) or {}
                        status = run_case(conn, deployment, profile, case, attempt, raw, progress, log_dir)
                        break
                    except TransientError as exc:
                        raw.event(profile.name, case.case_id, attempt, "attempt_end",
                                  repeat=case.repeat, status="transient", error_kind="transient",
                                  error_message=str(exc), spec=case_spec(case, profile))
                        log.warning("%s: %s (attempt %d); reconnecting", profile.name, exc, attempt)
                        orphans += exc.orphans
                        if conn is not None:
                            _close_quietly(conn)
                        conn = None
                        progress.restart_case()
                        time.sleep(backoff_s * 2 ** (attempt - base))
                else:
                    outcome.cases_failed += 1
                    progress.end_case("transient")
                    raise TransientError(f"{profile.name} stayed unreachable after "
                                      f"{profile.agent.retries + 1} attempts")
                progress.end_case(status)
                if status == "ok":
                    outcome.cases_ok += 1
                else:
                    outcome.cases_failed += 1
            if conn is not None:
                _close_quietly(conn)
    except HarnessError as exc:
        if isinstance(exc, DeviceBusy):
            outcome.status = "busy"
        elif isinstance(exc, TransientError):
            outcome.status = "unreachable"
        elif isinstance(exc, DeviceError):
            outcome.status = "device-error"  # reachable but unable: no python, no space, ...
        else:
            outcome.status = "error"
        outcome.message = str(exc)
        return outcome
    outcome.status = "ok" if outcome.cases_failed == 0 else "some-failed"
    return outcome


def _reap(conn: Connection, pgids: tuple[int, ...]) -> tuple[int, ...]:
    """Kill process groups a dropped link left running on the device; () once done."""
    for pgid in pgids:
        result = conn.run(["kill", "-KILL", "--", f"-{pgid}"], deadline_s=30, on_stdout_line=lambda _: None)
        log.info("killed process group %d left by the dropped link (exit %s)", pgid, result.exit_code)
    return ()


def _close_quietly(conn: Connection) -> None:
    try:
        conn.close()
    except Exception:  # closing a dead link must not hide the fault that killed it
        log.debug("closing %s failed", conn.name, exc_info=True)


def run_devices(
    profiles: list[Profile], cases: dict[str, list[Case]], bundle: Bundle, raw: RawLog,
    run_dir: Path, progress_factory: Callable[[Profile, int, int], Progress], *,
    probe: bool = True, first_attempt: dict[str, dict[tuple[str, int], int]] | None = None,
) -> list[DeviceOutcome]:
    """Run each device's cases (keyed by device name), one worker per device, all at once."""
    def one(i: int, p: Profile) -> DeviceOutcome:
        todo = cases.get(p.name, [])
        return run_device(p, todo, bundle, raw, run_dir, progress_factory(p, i, len(todo)),
                          probe=probe and bool(todo), first_attempt=(first_attempt or {}).get(p.name))

    if len(profiles) == 1:
        return [one(0, profiles[0])]
    with ThreadPoolExecutor(max_workers=len(profiles)) as pool:
        futures = [pool.submit(one, i, p) for i, p in enumerate(profiles)]
        return [f.result() for f in futures]
