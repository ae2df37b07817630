"""A test-only fault switch: make the agent fail at a chosen point, the way real agents fail.

Set ``ODT_FAULT=<where>:<action>[:<case-id substring>]`` in the agent's environment:

- where: ``start`` (after case_start) or ``step=N`` (before measured-or-warm-up step N);
- action: ``raise`` (a Python exception), ``exit`` (exit code 3), ``kill`` (SIGKILL, as the
  OOM killer does), ``segv`` (SIGSEGV), ``hang`` (sleep until the host's deadline);
- ``ODT_FAULT_ONCE=<path>``: fire only when that file does not exist yet, then create it, so
  the retried or resumed case succeeds.
Unset (the normal case), :func:`maybe_fail` does nothing.
"""

from __future__ import annotations

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


def maybe_fail(where: str, case_id: str) -> None:
    """Fire the configured fault if it is set for this point and case."""
    value = os.environ.get("ODT_FAULT")
    if not value:
        return
    point, action, match = _parse(value)
    if point != where or (match and match not in case_id):
        return
    once = os.environ.get("ODT_FAULT_ONCE")
    if once:
        try:
            fd = os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.close(fd)
        except FileExistsError:
            return
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
