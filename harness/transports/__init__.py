"""Transports by name: ``local`` (subprocess), ``ssh`` (paramiko), ``adb`` (adb server)."""

from __future__ import annotations

from harness.profiles import Profile
from harness.transports.base import Connection, RunResult

__all__ = ["Connection", "RunResult", "connect"]


def connect(profile: Profile) -> Connection:
    """Open the connection a profile describes. Imports the transport's library lazily."""
    conn = profile.connection
    if conn.transport == "local":
        from harness.transports.local import LocalConnection

        return LocalConnection()
    if conn.transport == "ssh":
        from harness.transports.ssh import SSHConnection

        return SSHConnection.from_profile(profile)
    if conn.transport == "adb":
        from harness.transports.adb import AdbConnection

        return AdbConnection.from_profile(profile)
    raise AssertionError(f"profile validation let transport {conn.transport!r} through")
