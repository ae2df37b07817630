"""``harness doctor --device X``: is this device ready to measure, and if not, what to do.

Each check is one line: what was checked, what was found, and the fix when it failed.
Checks stop early only where later ones cannot run (no link, no Python).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from harness.deploy import Bundle, deploy, free_bytes, host_python, resolve_workdir
from harness.errors import HarnessError
from harness.profiles import Profile
from harness.transports import connect
from workloads.schema import Hello, ProtocolError, parse_line

MIN_FREE_BYTES = 200 * 1024 * 1024


ESSENTIAL = ("reachable", "python", "torch", "free space")  # without these nothing is measured
AUTO_METERS = ("auto", "none", "cpu-model")  # a fallback is part of the plan: its absence is no failure


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    found: str
    fix: str = ""
    state: str = ""  # device checks: ok | absent | unreadable
    matters: bool = True  # a failure stops this profile from measuring what it asks for


def matters(check: Check, profile: Profile) -> bool:
    """Whether a failed check stops this profile from measuring what it asks for."""
    if check.name in ESSENTIAL:
        return True
    if check.name == "thermal zones":  # a cooldown or named zones need temperatures
        return profile.thermal.cooldown_c > 0 or bool(profile.thermal.zones)
    if check.name == "energy meter":  # a meter named in the profile must be there
        return profile.energy.meter not in AUTO_METERS
    return False


def advice(check: Check, profile: Profile) -> str:
    """The fix for a failed device check, worded for how the device is reached."""
    phone = profile.connection.transport == "adb"
    if check.name == "thermal zones":
        if check.state == "absent":
            return ("this device exposes no thermal zones (usual in VMs and containers): temperatures "
                    "are not recorded" + ("; set [thermal] cooldown_c = 0 and zones = []"
                                          if matters(check, profile) else ""))
        if check.state == "unreadable":
            return ('set [agent].root = "su" (rooted phone) or "adb-root" (userdebug build) so the agent '
                    "may read /sys/class/thermal" if phone else
                    "run the agent as a user who may read /sys/class/thermal/thermal_zone*/temp")
    if check.name == "cpu frequency":
        if check.state == "absent":
            return ("this device exposes no cpufreq files (usual in VMs and containers): throttling is "
                    "detected from temperatures only")
        if check.state == "unreadable":
            return ('set [agent].root = "su" or "adb-root" so the agent may read cpufreq' if phone else
                    "run the agent as a user who may read /sys/devices/system/cpu/*/cpufreq")
    return check.fix


def _agent_records(conn: Any, argv: list[str], cwd: str, stdin: bytes = b"") -> tuple[list[Any], str]:
    records: list[Any] = []

    def on_line(line: str) -> None:
        try:
            records.append(parse_line(line))
        except ProtocolError as exc:
            records.append(exc)

    result = conn.run(argv, stdin=stdin, deadline_s=120, on_stdout_line=on_line, cwd=cwd)
    return records, result.stderr


def run_doctor(profile: Profile, bundle: Bundle) -> list[Check]:
    """Run every check against the device a profile describes."""
    checks: list[Check] = []
    try:
        conn = connect(profile)
    except HarnessError as exc:  # the transports' messages say what to do; add only what they lack
        return [Check("reachable", False, str(exc), _reach_fix(profile, str(exc)))]
    try:
        checks.append(Check("reachable", True, f"{profile.connection.transport} link is up"))
        python = host_python(profile)
        try:
            workdir = resolve_workdir(conn, python, profile.agent.workdir)
        except HarnessError as exc:
            checks.append(Check("python", False, str(exc),
                                "install Python ≥ 3.10 on the device or set [agent].python to one"))
            return checks
        checks.append(Check("python", True, f"{' '.join(python)} runs; work directory {workdir}"))
        free = free_bytes(conn, python, workdir)
        checks.append(Check(
            "free space", free is not None and free >= MIN_FREE_BYTES,
            f"{free / 2**20:.0f} MiB free in {workdir}" if free is not None else "could not read free space",
            f"free at least {MIN_FREE_BYTES // 2**20} MiB in the work directory or point [agent].workdir elsewhere",
        ))
        deployment = deploy(conn, profile, bundle)
        request = {"energy": profile.to_dict()["energy"], "thermal": profile.to_dict()["thermal"]}
        records, stderr = _agent_records(conn, deployment.argv("doctor"), workdir,
                                         json.dumps(request, default=list).encode())
        hellos = [r for r in records if isinstance(r, Hello)]
        hello = hellos[-1] if hellos else None  # the doctor's hello carries env["checks"]
        if hello is None:
            tail = stderr.strip().splitlines()[-1:] or [str(records[:1])]
            checks.append(Check("torch", False, f"the agent could not start: {tail[0]}",
                                "install torch for the device's python (pip install torch) "
                                "or point [agent].python at an interpreter that has it"))
            return checks
        checks.append(Check("torch", True, f"python {hello.python}, torch {hello.torch}, "
                                           f"{hello.cpu_count} CPUs, {hello.machine}"))
        for item in hello.env.get("checks", []):
            check = Check(str(item.get("name", "?")), bool(item.get("ok")), str(item.get("found", "")),
                          str(item.get("fix", "")), str(item.get("state", "")))
            checks.append(dataclasses.replace(check, fix="" if check.ok else advice(check, profile)))
        return [dataclasses.replace(c, matters=matters(c, profile)) for c in checks]
    finally:
        conn.close()


def _reach_fix(profile: Profile, message: str) -> str:
    c = profile.connection
    if c.transport == "ssh" and "ssh " not in message:
        return f"check that `ssh {c.host}` works from this machine (host key, user, key file)"
    if c.transport == "adb" and "adb devices" not in message:
        return "then `adb devices` must list the phone as 'device'"
    return ""


def format_checks(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.matters else "warn")
        lines.append(f"[{mark}] {c.name:<14} {c.found}")
        if not c.ok and c.fix:
            lines.append(f"       {'fix' if c.matters else 'note'}: {c.fix}")
    return "\n".join(lines)


def verdict(checks: list[Check], *, strict: bool = False) -> tuple[bool, str]:
    """(ready, one line): failures that matter for the profile, or any failure with ``strict``."""
    blocking = [c.name for c in checks if not c.ok and (c.matters or strict)]
    others = [c.name for c in checks if not c.ok and not c.matters and not strict]
    if blocking:
        return False, f"not ready: {', '.join(blocking)}" + (" (--strict counts every failed check)"
                                                              if strict else "")
    tail = (f"; {', '.join(others)} failed but this profile does not need them (--strict fails on them)"
            if others else "")
    return True, "ready to measure" + tail
