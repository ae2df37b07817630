"""The harness's error classes: what failed decides what happens next.

- :class:`ConfigError`: bad profile, suite or CLI input. Fail fast, exit 2, name the file,
  key and fix.
- :class:`DeviceError`: the device is reachable but cannot run the work (no Python, no torch,
  no permission). Fail that device with the fix; other devices go on.
- :class:`TransientError`: the link dropped, adb went offline, a deadline passed. Retry with
  backoff.

Messages quote the bad value and say what to do next. Only the CLI's ``main`` exits.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""


class ConfigError(HarnessError):
    """Bad input from a profile, suite or the command line."""

    def __init__(self, message: str, *, source: str = "", key: str = "") -> None:
        where = source + (f": {key}" if key else "") if source else key
        super().__init__(f"{where}: {message}" if where else message)
        self.source, self.key = source, key


class DeviceError(HarnessError):
    """The device cannot run the work as configured (stable: retrying will not help)."""


class DeviceBusy(DeviceError):
    """Another harness process holds the device's lock."""


class TransientError(HarnessError):
    """A fault that may pass: a dropped link, an offline device, a missed deadline.

    ``orphans`` names remote process groups the fault may have left running (a command whose
    link dropped cannot be killed over that link); the runner kills them after reconnecting.
    """

    def __init__(self, message: str = "", *, orphans: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.orphans = orphans


class DeadlineExceeded(TransientError):
    """A remote command ran past its deadline and was killed."""


class AgentError(HarnessError):
    """The agent process broke the protocol or died without finishing its case."""
