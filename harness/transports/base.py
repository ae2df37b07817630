"""The one Connection interface that every transport implements.

Everything above a transport (deploy, run, doctor) talks to a device only through this
protocol, so the ``local`` device exercises the same path as a phone or a board.
Commands are given as argv lists; a transport that goes through a remote shell quotes
every element itself, so no value from a profile, suite or the CLI is ever interpreted
by a shell.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

LineSink = Callable[[str], None]


@dataclass(frozen=True)
class RunResult:
    """How a remote command ended. ``exit_code`` is None when it was killed by a signal."""

    exit_code: int | None
    stderr: str
    wall_ns: int
    signal: int | None = None
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


@runtime_checkable
class Connection(Protocol):
    """A live link to one device."""

    name: str

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes = b"",
        deadline_s: float,
        on_stdout_line: LineSink,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> RunResult:
        """Run argv, feed it stdin, call on_stdout_line for every stdout line as it arrives.

        stderr is kept (its tail is in the result). Past ``deadline_s`` the remote process
        tree is killed and the result has ``timed_out=True``.
        """
        ...

    def push(self, local: Path, remote: str) -> int:
        """Copy a file to the device, verify its size, and return the bytes sent."""
        ...

    def pull(self, remote: str, local: Path) -> None:
        """Copy a file from the device."""
        ...

    def read_text(self, remote: str) -> str:
        """Read a small text file on the device (sysfs, /proc)."""
        ...

    def exists(self, remote: str) -> bool:
        """Whether a path exists on the device."""
        ...

    def close(self) -> None:
        ...


STDERR_TAIL_BYTES = 16_384


def tail(text: bytes, limit: int = STDERR_TAIL_BYTES) -> str:
    """The last ``limit`` bytes of a stream, decoded leniently."""
    return text[-limit:].decode("utf-8", errors="replace")
