"""A test-only fault switch: make the agent fail at a chosen point, the way real agents fail.

Set ``ODT_FAULT=<where>:<action>[:<case-id substring>]`` in the agent's environment:

- where: ``start`` (after case_start) or ``step=N`` (before measured-or-warm-up step N);
- action: ``raise`` (a Python exception), ``exit`` (exit code 3), ``kill`` (SIGKILL, as the
  OOM killer does), ``segv`` (SIGSEGV), ``hang`` (sleep until the host's deadline);
- ``ODT_FAULT_ONCE=<path>``: fire only when that file does not exist yet, then create it, so
  the retried or resumed case succeeds.

``ODT_FAULT_PLAN=<path to a JSON file>`` gives each case its own fault (the soak run uses it):
``{"<case-id substring>": {"where": "step=1", "action": "kill", "once": true}, ...}``; the
first key found in the case id applies. ``once`` fires only when ``<plan>.<n>.fired`` (n: the
entry's position) does not exist yet, then creates it. ``ODT_FAULT`` is checked first.
Unset (the normal case), :func:`maybe_fail` does nothing.
"""

from __future__ import annotations

import json
import os
import signal
import time


class InjectedFault(RuntimeError):
    """The exception the ``raise`` action throws."""


def _parse(value: str) -> tuple[str, str, str]:
    parts = value.split(":")
    if len(parts) < 2:
        raise ValueError(f"ODT_FAULT={value!r}: expected <where>:<action>[:<case substring>]")
    return parts[0], parts[1], parts[2] if len(parts) > 2 else ""


def _planned(where: str, case_id: str) -> tuple[str, str | None] | None:
    """(action, once-marker path) that ODT_FAULT_PLAN sets for this point and case, if any."""
    path = os.environ.get("ODT_FAULT_PLAN")
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        plan = json.load(f)
    for n, (match, entry) in enumerate(plan.items()):
        if match in case_id:
            if entry.get("where") != where:
                return None
            return str(entry["action"]), f"{path}.{n}.fired" if entry.get("once") else None
    return None


def _first_time(marker: str) -> bool:
    """Create ``marker``; False when it existed already (the fault fired before)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def maybe_fail(where: str, case_id: str) -> None:
    """Fire the configured fault if it is set for this point and case."""
    value = os.environ.get("ODT_FAULT")
    if value:
        point, action, match = _parse(value)
        if point != where or (match and match not in case_id):
            return
        once = os.environ.get("ODT_FAULT_ONCE")
        if once and not _first_time(once):
            return
    else:
        planned = _planned(where, case_id)
        if planned is None:
            return
        action, marker = planned
        if marker and not _first_time(marker):
            return
    _fire(action, where)


def _fire(action: str, where: str) -> None:
    if action == "raise":
        raise InjectedFault(f"injected fault at {where}")
    if action == "exit":
        os._exit(3)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "hang":
        while True:
            time.sleep(3600)
    raise ValueError(f"ODT_FAULT action {action!r} unknown (raise, exit, kill, segv, hang)")
