"""The one Connection interface that every transport implements.

Everything above a transport (deploy, run, doctor) talks to a device only through this
protocol, so the ``local`` device exercises the same path as a phone or a board.
Commands are given as argv lists; a transport that goes through a remote shell quotes
every element itself, so no value from a profile, suite or the CLI is ever interpreted
by a shell.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

from harness.errors import ConfigError

LineSink = Callable[[str], None]
StartHook = Callable[[int], None]  # gets the remote process-group id before stdin is sent
START_WAIT_S = 30.0  # how long a transport waits for the process-group id before giving up


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
        on_start: StartHook | None = None,
    ) -> RunResult:
        """Run argv, feed it stdin, call on_stdout_line for every stdout line as it arrives.

        stderr is kept (its tail is in the result). Past ``deadline_s`` the remote process
        tree is killed and the result has ``timed_out=True``. ``on_start`` gets the command's
        process-group id once it is known and *before* stdin is sent (the agent waits for its
        case on stdin), so a caller can record it where a later run finds it; an exception
        from ``on_start`` kills the command and is raised.
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


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def quoted_words(argv: Sequence[str], env: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """(``K=V`` assignments, argv), each word quoted for a POSIX shell.

    Only the value of an assignment is quoted (the name is checked instead), so a word is
    still an assignment when it stands before a command, as well as an argument of ``env``.

    Every transport that goes through a remote shell builds its command line from these, so
    no value from a profile, suite or the CLI is ever interpreted by that shell.
    """
    if not argv:
        raise ConfigError("cannot run an empty command")
    for key in env or {}:
        if not _ENV_NAME.match(key):
            raise ConfigError(f"environment variable name {key!r} is not a valid shell name; "
                              "use letters, digits and _")
    return ([f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()],
            [shlex.quote(a) for a in argv])
