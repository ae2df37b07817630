"""The ``ssh`` transport: a Linux board reached with paramiko, behind the Connection protocol.

- Hosts are ``~/.ssh/config`` aliases (or names); see :mod:`harness.transports.sshroute`
  for alias resolution, ProxyJump and the host-key policy (unknown keys are refused).
- ``run`` sends one command line in which every argv element is ``shlex.quote``-d, so the
  remote shell never interprets a value. The line is a small POSIX-sh wrapper that prints
  its pid on stderr and then ``exec``-s the command, which sshd has made the leader of a new
  process group (OpenSSH calls setsid() for every session; the wrapper calls ``setsid`` itself
  when that is not so). At the deadline, on Ctrl-C, or when leftover children hold the
  streams open after the command exited, a second exec ``kill -9 -PGID`` ends the whole
  remote tree, as the local transport does with ``os.killpg``.
- stdout lines reach the caller as they arrive; stderr is drained on its own thread, so
  neither stream can fill the SSH window and hang the command.
- Files go over SFTP when the server offers it, otherwise over the exec channel (Dropbear
  without sftp-server, OpenSSH without ``Subsystem sftp``): to a temporary name, checked
  (size, and sha256sum / md5sum / cksum as the device has them), then renamed into place;
  see :mod:`harness.transports.sshfiles`.

paramiko references: https://docs.paramiko.org/en/stable/api/client.html,
https://docs.paramiko.org/en/stable/api/channel.html (exec_command, recv_stderr,
shutdown_write, exit status -1 when the server sends none) and
https://docs.paramiko.org/en/stable/api/sftp.html (put, stat, posix_rename, normalize).
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import paramiko

from harness.errors import HarnessError, TransientError
from harness.profiles import Profile
from harness.transports.base import (
    START_WAIT_S,
    STDERR_TAIL_BYTES,
    LineSink,
    RunResult,
    StartHook,
    quoted_words,
    tail,
)
from harness.transports.sshconfig import LinkOptions, open_route, with_retries
from harness.transports.sshfiles import RemoteFiles, open_files
from harness.transports.sshroute import resolve_route

log = logging.getLogger(__name__)

_KILL_TIMEOUT_S = 5.0
_LEFTOVER_GRACE_S = 1.0  # after the command exits, how long its streams may stay open
_LINK_ERRORS = (paramiko.SSHException, EOFError, OSError)
PID_MARK = "__odt_pid__"
_CHUNK = 65536


class StreamPump:
    """Threads that feed stdin and drain stdout (by line) and stderr of one channel.

    The first stderr line carrying :data:`PID_MARK` is the wrapper's pid; it is taken out of
    the stderr kept for the caller. An exception raised by the line sink is kept in
    ``sink_error`` and sets ``failed`` so that ``run`` stops the command and re-raises it.
    """

    def __init__(self, chan: paramiko.Channel, on_line: LineSink, stdin: bytes,
                 on_start: StartHook | None = None) -> None:
        self.chan, self.on_line, self.on_start = chan, on_line, on_start
        self.pid: int | None = None
        self.sink_error: BaseException | None = None
        self.failed = threading.Event()
        self._pid_seen = threading.Event()
        self._stderr = bytearray()
        self._threads = [threading.Thread(target=t, args=a, daemon=True) for t, a in (
            (self._feed, (stdin,)), (self._drain_stdout, ()), (self._drain_stderr, ()))]
        for thread in self._threads:
            thread.start()

    def _feed(self, data: bytes) -> None:
        if self.on_start is not None:
            pid = self.wait_pid(START_WAIT_S)
            if pid is not None:
                try:
                    self.on_start(pid)
                except BaseException as exc:  # run() kills the command and re-raises it
                    self.sink_error = exc
                    self.failed.set()
                    return
        try:
            if data:
                self.chan.sendall(data)
            self.chan.shutdown_write()
        except _LINK_ERRORS:
            pass  # the command ended or the link dropped; run() reports which

    def _drain_stdout(self) -> None:
        pending = b""
        try:
            while data := self.chan.recv(_CHUNK):
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    self.on_line(line.decode("utf-8", errors="replace").rstrip("\r"))
            if pending:
                self.on_line(pending.decode("utf-8", errors="replace").rstrip("\r"))
        except _LINK_ERRORS:
            pass
        except BaseException as exc:  # the caller's sink failed: stop the command
            self.sink_error = exc
            self.failed.set()

    def _drain_stderr(self) -> None:
        head = b""  # stderr before the pid line (e.g. noise from a login script)
        try:
            while data := self.chan.recv_stderr(_CHUNK):
                if self.pid is not None:
                    self._keep(data)
                    continue
                head += data
                while self.pid is None and b"\n" in head:
                    line, head = head.split(b"\n", 1)
                    if line.startswith(PID_MARK.encode()):
                        self.pid = int(line.split()[1])
                        self._pid_seen.set()
                    else:
                        self._keep(line + b"\n")
                if self.pid is not None or len(head) > _CHUNK:
                    self._keep(head)
                    head = b""
        except _LINK_ERRORS:
            pass
        finally:
            self._keep(head)
            self._pid_seen.set()

    def _keep(self, data: bytes) -> None:
        self._stderr += data
        if len(self._stderr) > 4 * STDERR_TAIL_BYTES:
            del self._stderr[: -2 * STDERR_TAIL_BYTES]

    def wait_pid(self, timeout_s: float) -> int | None:
        self._pid_seen.wait(timeout_s)
        return self.pid

    def join(self, timeout_s: float) -> bool:
        """Wait for both output streams to end; True when they have."""
        end_s = time.monotonic() + timeout_s
        for thread in self._threads[1:]:
            thread.join(max(0.0, end_s - time.monotonic()))
        return not any(t.is_alive() for t in self._threads[1:])

    def stderr_tail(self) -> str:
        return tail(bytes(self._stderr))


def remote_command(argv: Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    """The shell line that runs argv verbatim in its own process group, announcing its pid."""
    assignments, args = quoted_words(argv, env)
    words = ["exec", "$odt_s"] + (["env", *assignments] if assignments else []) + args
    command = " ".join(words)
    if cwd:
        command = f"cd -- {shlex.quote(cwd)} && {command}"
    return "; ".join([
        "odt_pg=$$",
        "read -r odt_a odt_b odt_c odt_d odt_pg odt_r 2>/dev/null </proc/$$/stat",
        'if [ "$odt_pg" != "$$" ] && command -v setsid >/dev/null 2>&1; then odt_s=setsid; else odt_s=; fi',
        f"printf '{PID_MARK} %s\\n' \"$$\" >&2",
        command,
    ])


class SSHConnection:
    """A live SSH link to one device (and the jump hosts in front of it)."""

    name = "ssh"

    def __init__(
        self,
        host: str,
        *,
        port: int = 0,
        user: str = "",
        identity_file: str = "",
        known_hosts: str = "",
        trust_new_host_key: bool = False,
        connect_timeout_s: float = 10.0,
        keepalive_s: float = 15.0,
        ssh_config: Path | str | None = None,
        allow_agent: bool = True,
        look_for_keys: bool = True,
        connect_attempts: int = 3,
        source: str = "",
    ) -> None:
        """Resolve ``host`` through the ssh config and connect (retrying transient faults).

        ``ssh_config`` defaults to ``~/.ssh/config``; tests point it at their own file.
        ``source`` (the profile path) is quoted in configuration errors.
        """
        self.route = resolve_route(host, port=port, user=user, identity_file=identity_file,
                                   known_hosts=known_hosts, ssh_config=ssh_config)
        options = LinkOptions(trust_new_host_key=trust_new_host_key, timeout_s=connect_timeout_s,
                              keepalive_s=keepalive_s, allow_agent=allow_agent,
                              look_for_keys=look_for_keys, source=source)
        self._timeout_s = connect_timeout_s
        self._files: RemoteFiles | None = None
        self._home: str | None = None
        self._clients = with_retries(lambda: open_route(self.route, options), attempts=connect_attempts,
                                     what=f"connecting to {self.route.target.describe()}")

    @classmethod
    def from_profile(cls, profile: Profile, *, ssh_config: Path | str | None = None) -> SSHConnection:
        """Connect as the profile's [connection] section says; its values override ~/.ssh/config."""
        c = profile.connection
        return cls(
            c.host, port=c.port, user=c.user, identity_file=c.identity_file, known_hosts=c.known_hosts,
            trust_new_host_key=c.trust_new_host_key, connect_timeout_s=c.connect_timeout_s,
            keepalive_s=c.keepalive_s, ssh_config=ssh_config, connect_attempts=profile.agent.retries + 1,
            source=profile.path,
        )

    @property
    def _client(self) -> paramiko.SSHClient:
        return self._clients[-1]

    def _alive(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    @contextmanager
    def _link(self, what: str) -> Iterator[None]:
        """Turn a dropped link into TransientError; a remote file error stays an OSError."""
        try:
            yield
        except HarnessError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno is not None and self._alive():
                raise
            raise TransientError(f"the link to {self.route.target.describe()} failed during {what}: "
                                 f"{exc or type(exc).__name__}") from exc

    # -- commands ---------------------------------------------------------------------------

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
        """Run argv remotely (a leading ``~/`` in argv or cwd means the remote home)."""
        command = remote_command([self._expand(a) for a in argv],
                                 cwd=self._expand(cwd) if cwd else None, env=env)
        start_ns = time.monotonic_ns()
        with self._link(f"starting {argv[0]!r}"):
            chan = self._client.get_transport().open_session(timeout=self._timeout_s)
            chan.exec_command(command)
        pump = StreamPump(chan, on_stdout_line, stdin, on_start)
        timed_out = False
        try:
            end_s = time.monotonic() + deadline_s
            while not chan.status_event.wait(min(0.25, max(0.0, end_s - time.monotonic()))):
                if pump.failed.is_set():
                    break
                if time.monotonic() >= end_s:
                    timed_out = True
                    break
            if timed_out or pump.failed.is_set():
                self._kill_tree(pump)
                pump.join(_KILL_TIMEOUT_S)
            else:  # the command exited: end leftover children, let buffered output drain
                if not pump.join(_LEFTOVER_GRACE_S):
                    self._kill_tree(pump)
                pump.join(max(_KILL_TIMEOUT_S, end_s - time.monotonic()))
        except BaseException:  # Ctrl-C: leave no orphan on the device
            self._kill_tree(pump)
            chan.close()
            raise
        chan.close()
        if pump.sink_error is not None:
            raise pump.sink_error
        wall_ns = time.monotonic_ns() - start_ns
        status = chan.exit_status if chan.status_event.is_set() else -1
        if timed_out:
            return RunResult(exit_code=None, signal=signal.SIGKILL, stderr=pump.stderr_tail(),
                             wall_ns=wall_ns, timed_out=True)
        if status == -1 and self._link_dropped():
            pid = pump.wait_pid(0)
            raise TransientError(f"the link to {self.route.target.describe()} dropped while running "
                                 f"{argv[0]!r}; stderr so far: {pump.stderr_tail()[-500:]!r}",
                                 orphans=(pid,) if pid else ())
        # -1 on a live link: the command died of a signal (paramiko ignores "exit-signal")
        return RunResult(exit_code=None if status == -1 else status, stderr=pump.stderr_tail(),
                         wall_ns=wall_ns)

    def _link_dropped(self, settle_s: float = 0.5) -> bool:
        """Whether the transport died. paramiko closes the channels a moment before it marks
        the transport inactive, so give it ``settle_s`` to say so."""
        end_s = time.monotonic() + settle_s
        while self._alive():
            if time.monotonic() >= end_s:
                return False
            time.sleep(0.01)
        return True

    def _kill_tree(self, pump: StreamPump) -> None:
        """Kill the remote process group with a second exec; best effort."""
        pid = pump.wait_pid(_KILL_TIMEOUT_S)
        if pid is None or not self._alive():
            log.warning("cannot kill the remote command on %s (pid %s unknown or link down)",
                        self.route.target.describe(), pid)
            return
        try:
            chan = self._client.get_transport().open_session(timeout=self._timeout_s)
            chan.exec_command(f"kill -9 -{pid} 2>/dev/null || kill -9 {pid} 2>/dev/null; true")
            chan.status_event.wait(_KILL_TIMEOUT_S)
            chan.close()
        except _LINK_ERRORS as exc:
            log.warning("killing remote pid %d on %s failed: %s", pid, self.route.target.describe(), exc)

    # -- files ------------------------------------------------------------------------------

    def _remote_files(self) -> RemoteFiles:
        """SFTP, or the exec channel when the server offers no SFTP (found once per link)."""
        if self._files is None:
            with self._link("opening a file channel (SFTP or exec)"):
                self._files = open_files(self._client, self.route.target.describe())
        return self._files

    @property
    def file_transfer(self) -> str:
        """How files travel on this link: ``sftp`` or ``exec``."""
        return self._remote_files().how

    def _expand(self, path: str) -> str:
        """``~`` and ``~/x`` on the device: its home directory, as the server reports it."""
        if path != "~" and not path.startswith("~/"):
            return path
        if self._home is None:
            with self._link("finding the remote home"):
                self._home = self._remote_files().home()
        return self._home + path[1:]

    def push(self, local: Path, remote: str) -> int:
        """Copy a file to a temporary name, verify size and checksum, rename it into place."""
        dest = self._expand(remote)
        with self._link(f"pushing {local} to {remote}"):
            size = self._remote_files().push(Path(local), dest)
        log.debug("pushed %s to %s (%d bytes over %s)", local, dest, size, self.file_transfer)
        return size

    def pull(self, remote: str, local: Path) -> None:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + ".part")
        with self._link(f"pulling {remote}"):
            self._remote_files().pull(self._expand(remote), tmp)
        tmp.replace(local)

    def read_text(self, remote: str) -> str:
        with self._link(f"reading {remote}"):
            return self._remote_files().read_bytes(self._expand(remote)).decode("utf-8", errors="replace")

    def exists(self, remote: str) -> bool:
        with self._link(f"checking {remote}"):
            return self._remote_files().exists(self._expand(remote))

    def close(self) -> None:
        if self._files is not None:
            try:
                self._files.close()
            except _LINK_ERRORS:
                pass
            self._files = None
        for client in reversed(self._clients):
            client.close()
        self._clients = self._clients[-1:]  # keep one (closed) client so _alive() stays answerable

    def __enter__(self) -> SSHConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["SSHConnection", "StreamPump", "remote_command"]
