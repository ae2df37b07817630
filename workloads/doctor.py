"""Device-side checks for ``harness doctor``: what can the agent read on this device?

Returned inside a ``hello`` record's ``env["checks"]`` (a list of name/ok/found/fix), so the
protocol needs no record type of its own for them.
"""

from __future__ import annotations

import glob
import os
from typing import Any


def _readable(paths: list[str]) -> tuple[list[str], list[str]]:
    ok, bad = [], []
    for path in paths:
        try:
            with open(path, encoding="ascii", errors="replace") as f:
                f.read(64)
            ok.append(path)
        except OSError:
            bad.append(path)
    return ok, bad


def _files_check(name: str, pattern: str, what: str, fix: str) -> dict[str, Any]:
    files = sorted(glob.glob(pattern))
    ok, bad = _readable(files)
    return {
        "name": name,
        "ok": bool(ok),
        "found": f"{len(ok)} {what} readable, {len(bad)} not" if files else f"no {what} exposed",
        "fix": "" if ok else fix,
        "state": "ok" if ok else ("unreadable" if files else "absent"),  # the host words its advice from it
    }


def thermal_check(root: str = "") -> dict[str, Any]:
    return _files_check(
        "thermal zones", os.path.join(root or "/", "sys/class/thermal/thermal_zone*/temp"), "zones",
        "temperatures need read access to /sys/class/thermal (root on most phones: set [agent].root)",
    )


def cpufreq_check(root: str = "") -> dict[str, Any]:
    return _files_check(
        "cpu frequency", os.path.join(root or "/", "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"),
        "CPU frequency files",
        "frequencies (for throttling detection) need /sys/devices/system/cpu/*/cpufreq; "
        "not exposed in some VMs and containers",
    )


def energy_check(energy: dict[str, Any]) -> dict[str, Any]:
    """Which energy meter the profile's [energy] section resolves to here, and why."""
    try:
        from workloads.meters import describe_meter
    except ImportError:
        return {"name": "energy meter", "ok": False, "found": "meters not available in this agent", "fix": ""}
    found, ok, fix = describe_meter(energy)
    return {"name": "energy meter", "ok": ok, "found": found, "fix": fix}


def device_checks(request: dict[str, Any]) -> list[dict[str, Any]]:
    thermal_root = (request.get("thermal") or {}).get("root", "")
    return [
        thermal_check(thermal_root),
        cpufreq_check(),
        energy_check(request.get("energy") or {}),
    ]
