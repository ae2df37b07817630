"""The ``local`` device: subprocesses on this machine, behind the same interface as a phone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Sequence

from harness.errors import DeviceError
from harness.transports.base import LineSink, RunResult, StartHook, tail


def _drain_lines(stream, sink: LineSink, errors: list[BaseException]) -> None:
    """Feed stdout lines to the sink; after a sink error, keep draining so the child never
    blocks on a full pipe, and let ``run_process`` re-raise the error once the child ends."""
    for raw in iter(stream.readline, b""):
        if errors:
            continue
        try:
            sink(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)
    stream.close()


def _drain_bytes(stream, chunks: list[bytes]) -> None:
    for chunk in iter(lambda: stream.read(65536), b""):
        chunks.append(chunk)
        # keep memory bounded on very chatty stderr
        if len(chunks) > 64:
            joined = b"".join(chunks)[-1_048_576:]
            chunks[:] = [joined]
    stream.close()


def run_process(
    argv: Sequence[str],
    *,
    stdin: bytes,
    deadline_s: float,
    on_stdout_line: LineSink,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    on_start: StartHook | None = None,
) -> RunResult:
    """Run a local process in its own session; kill its whole process group at the deadline."""
    start = time.monotonic_ns()
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
        )
    except FileNotFoundError as exc:
        raise DeviceError(f"cannot run {argv[0]!r}: {exc.strerror}; check the profile's python") from None
    err_chunks: list[bytes] = []
    sink_errors: list[BaseException] = []
    readers = [
        threading.Thread(target=_drain_lines, args=(proc.stdout, on_stdout_line, sink_errors), daemon=True),
        threading.Thread(target=_drain_bytes, args=(proc.stderr, err_chunks), daemon=True),
    ]
    for t in readers:
        t.start()
    if on_start is not None:
        try:
            on_start(proc.pid)  # its own session: the pid is the process-group id
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
    try:
        if stdin:
            proc.stdin.write(stdin)
        proc.stdin.close()
    except BrokenPipeError:
        pass
    timed_out = False
    try:
        proc.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        proc.wait()
    except BaseException:  # Ctrl-C: leave no orphan behind
        _kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        # the group may hold children that outlive the leader; end them too
        _kill_group(proc.pid)
    for t in readers:
        t.join(timeout=5)
    if sink_errors:
        raise sink_errors[0]
    code = proc.returncode
    return RunResult(
        exit_code=code if code is not None and code >= 0 else None,
        signal=-code if code is not None and code < 0 else None,
        stderr=tail(b"".join(err_chunks)),
        wall_ns=time.monotonic_ns() - start,
        timed_out=timed_out,
    )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class LocalConnection:
    """Runs commands as subprocesses of the harness; files are plain copies."""

    name = "local"

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
        return run_process(
            argv, stdin=stdin, deadline_s=deadline_s, on_stdout_line=on_stdout_line, cwd=cwd, env=env,
            on_start=on_start,
        )

    def push(self, local: Path, remote: str) -> int:
        dest = Path(remote)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        size = local.stat().st_size
        try:
            shutil.copyfile(local, tmp)
            if tmp.stat().st_size != size:
                raise DeviceError(f"copy of {local} to {remote} is incomplete; check free space")
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)  # no half-copied bundle left behind
            raise
        return size

    def pull(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(remote, local)

    def read_text(self, remote: str) -> str:
        return Path(remote).read_text(errors="replace")

    def exists(self, remote: str) -> bool:
        return os.path.exists(remote)

    def close(self) -> None:
        pass
