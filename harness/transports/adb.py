"""The ``adb`` transport: a phone (or any adbd) reached through an adb server.

Commands go over adb's *shell protocol v2* (``shell,v2,raw:``), the only service that keeps
stdout and stderr apart and returns the exit code; devices without it are refused. Every argv
element is ``shlex.quote``-d into one line, run in its own session that announces its
process-group id, so a deadline kills the whole remote tree from a second shell. Files move by
the sync protocol to a temporary name, checked by size and SHA-256, then renamed. Root modes
and the reasons behind each choice: docs/adb.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import secrets
import shlex
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import adbutils
from adbutils.errors import AdbError

from harness.errors import ConfigError, DeviceError, HarnessError, TransientError
from harness.profiles import Profile
from harness.transports.base import START_WAIT_S, LineSink, RunResult, StartHook, quoted_words, tail

log = logging.getLogger(__name__)

DEFAULT_SERVER = ("127.0.0.1", 5037)
PGID_MARKER = b"ODT-PGID "
KILL_GRACE_S = 5.0
STAGING_DIR = "/data/local/tmp"  # writable and readable by adbd's uid on every Android
_STDIN, _STDOUT, _STDERR, _EXIT, _CLOSE_STDIN = 0, 1, 2, 3, 4
_PACKET_DATA_MAX = 4096 - 5  # adbd's shell-protocol buffer is 4 KiB including the header
_TRANSIENT_STATES = {"offline", "authorizing", "connecting", "bootloader", "recovery", "sideload", "rescue"}
T = TypeVar("T")


def parse_server(address: str, *, source: str = "") -> tuple[str, int]:
    """``"host:port"`` of an adb server; empty means 127.0.0.1:5037."""
    if not address:
        return DEFAULT_SERVER
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"adb_server must be 'host:port', e.g. '127.0.0.1:5037', got {address!r}",
                          source=source, key="connection.adb_server")
    return host, int(port)


def choose_serial(devices: Sequence[tuple[str, str]], serial: str, *, source: str = "") -> str:
    """Pick the device from ``(serial, state)`` pairs, or raise what is wrong: stable when a
    person must act (unauthorized, no permission), transient when it may pass (offline)."""
    listing = ", ".join(f"{s} ({st})" for s, st in devices) or "none"
    if serial:
        matches = [d for d in devices if d[0] == serial]
        if not matches:
            raise TransientError(f"no adb device with serial {serial!r} (attached: {listing}); "
                                 f"plug it in or `adb connect {serial}`")
        chosen = matches[0]
    else:
        if not devices:
            raise TransientError("no adb device attached; plug one in and check `adb devices`")
        if len(devices) > 1:
            raise ConfigError(f"several adb devices attached ({listing}); set connection.serial in "
                              f"the profile or ANDROID_SERIAL", source=source, key="connection.serial")
        chosen = devices[0]
    name, state = chosen
    if state == "device":
        return name
    if state == "unauthorized":
        raise DeviceError(f"adb device {name!r} is unauthorized: accept the RSA prompt on the "
                          f"phone ('Allow USB debugging'), then retry")
    if state == "no":  # "no permissions (user in plugdev group; ...)"
        raise DeviceError(f"no permission to open adb device {name!r}: install udev rules "
                          f"(Debian: android-sdk-platform-tools-common) and re-plug it")
    if state in _TRANSIENT_STATES:
        raise TransientError(f"adb device {name!r} is {state}; wait for it or reconnect it")
    raise DeviceError(f"adb device {name!r} is in state {state!r}, not 'device'; boot it normally")


def shell_line(argv: Sequence[str], *, cwd: str | None = None, env: dict[str, str] | None = None) -> str:
    """One POSIX shell command line that runs argv verbatim, in cwd, with env added."""
    assignments, args = quoted_words(argv, env)
    parts = [f"cd {shlex.quote(cwd)} &&"] if cwd else []
    return " ".join(parts + assignments + args)


def wrap_root(command: str, root: str) -> str:
    """Give a shell command line the profile's privileges (``su`` wraps it as one string)."""
    return f"su -c {shlex.quote(command)}" if root == "su" else command


def session_command(command: str) -> str:
    """Run ``command`` in a new session that first prints its process-group id on stderr."""
    inner = f"echo \"{PGID_MARKER.decode()}$$\" >&2; {command}"
    return f"exec setsid -w sh -c {shlex.quote(inner)}"


class _ShellStream:
    """One ``shell,v2,raw:`` stream: framed stdin out; stdout lines, stderr and exit code in.

    stdout goes to ``sink`` line by line, or into ``raw`` when there is no sink. The first
    stderr line, when it is the process-group marker, is taken off stderr into ``pgid``.
    """

    def __init__(self, sock: socket.socket, sink: LineSink | None) -> None:
        self.sock, self.sink = sock, sink
        self.buf = self.partial = b""
        self.raw, self.stderr = bytearray(), bytearray()
        self.pgid: int | None = None
        self.exit_code: int | None = None
        self.marker_done = False

    def send_stdin(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the command ended before reading all its stdin
            for i in range(0, len(data), _PACKET_DATA_MAX):
                chunk = data[i : i + _PACKET_DATA_MAX]
                self.sock.sendall(struct.pack("<BI", _STDIN, len(chunk)) + chunk)
            self.sock.sendall(struct.pack("<BI", _CLOSE_STDIN, 0))

    def pump(self, timeout_s: float) -> bool:
        """Handle what arrives within ``timeout_s``; False once the stream has ended."""
        self.sock.settimeout(max(timeout_s, 0.001))
        try:
            data = self.sock.recv(262144)
        except TimeoutError:
            return True
        if not data:
            return False
        buf, at = self.buf + data, 0
        while len(buf) - at >= 5:
            kind, length = struct.unpack_from("<BI", buf, at)
            if len(buf) - at < 5 + length:
                break
            self._packet(kind, buf[at + 5 : at + 5 + length])
            at += 5 + length
        self.buf = buf[at:]
        return True

    def _packet(self, kind: int, data: bytes) -> None:
        if kind == _STDOUT and self.sink is None:
            self.raw += data
        elif kind == _STDOUT:
            *lines, self.partial = (self.partial + data).split(b"\n")
            for line in lines:
                self.sink(line.decode("utf-8", errors="replace").rstrip("\r"))
        elif kind == _STDERR:
            self.stderr += data
            if not self.marker_done and b"\n" in self.stderr:
                first, _, rest = bytes(self.stderr).partition(b"\n")
                if first.startswith(PGID_MARKER) and first[len(PGID_MARKER) :].isdigit():
                    self.pgid, self.stderr = int(first[len(PGID_MARKER) :]), bytearray(rest)
                self.marker_done = True
            if len(self.stderr) > 2_097_152:
                del self.stderr[:-1_048_576]
        elif kind == _EXIT:
            self.exit_code = data[0] if data else 255

    def flush(self) -> None:
        if self.partial and self.sink is not None:
            self.sink(self.partial.decode("utf-8", errors="replace").rstrip("\r"))
            self.partial = b""


class AdbConnection:
    """A device behind an adb server, reached by serial."""

    name = "adb"

    def __init__(self, client: adbutils.AdbClient, serial: str, *, root: str = "none") -> None:
        self.client, self.serial, self.root = client, serial, root
        self.device = client.device(serial)
        self.staging_dir = STAGING_DIR
        self._has_sha256: bool | None = None
        features = self._call(lambda: self.device.get_features(), "read features")
        if "shell_v2" not in features.split(","):
            raise DeviceError(f"adb device {serial!r} lacks shell protocol v2 (features: "
                              f"{features!r}); exit codes and stderr cannot be trusted: use Android 7+")

    @classmethod
    def from_profile(cls, profile: Profile) -> AdbConnection:
        """Connect to the adb server and device a profile names (serial, ANDROID_SERIAL, or the only one)."""
        host, port = parse_server(profile.connection.adb_server, source=profile.path)
        client = open_client(host, port)
        serial = profile.connection.serial or os.environ.get("ANDROID_SERIAL", "")
        devices = [(d.serial, d.state) for d in _call(client.list, f"list devices at {host}:{port}")]
        chosen = choose_serial(devices, serial, source=profile.path)
        conn = cls(client, chosen, root=profile.agent.root)
        if profile.agent.root != "none":
            conn.check_root()
        return conn

    def check_root(self) -> None:
        """Refuse a root mode that does not give uid 0 (adb-root: adbd's own uid; su: su's)."""
        uid = self._exec(wrap_root("id -u", self.root))[1].split()[:1]
        if uid != [b"0"]:
            fix = ("grant the shell root in Magisk (run `adb shell su -c id`, accept the prompt)"
                   if self.root == "su" else f"run `adb -s {self.serial} root` yourself or use root = 'su'")
            raise DeviceError(f"root = {self.root!r} but commands on {self.serial!r} run as uid {uid}; {fix}")

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Run an adbutils call; a refusal is classified by the device's state, not its text."""
        try:
            return _call(fn, f"{what} on {self.serial!r}")
        except DeviceError:
            devices = [(d.serial, d.state) for d in _call(self.client.list, "list devices")]
            choose_serial(devices, self.serial)  # raises the state's own error when not 'device'
            raise

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
        command = wrap_root(session_command(shell_line(argv, cwd=cwd, env=env)), self.root)
        return self._run_shell(command, stdin, deadline_s, on_stdout_line, on_start)[0]

    def _run_shell(
        self, command: str, stdin: bytes, deadline_s: float, sink: LineSink | None,
        on_start: StartHook | None = None,
    ) -> tuple[RunResult, bytes]:
        """Run a quoted command line; stdout to ``sink``, or returned as bytes without one."""
        start = time.monotonic_ns()
        deadline_at = time.monotonic() + deadline_s
        conn = self._call(lambda: self._open_shell(command), "open a shell")
        stream = _ShellStream(conn.conn, sink)
        start_errors: list[BaseException] = []

        def feed() -> None:
            """Hand the process group to ``on_start`` before the command gets its stdin."""
            if on_start is not None:
                end = time.monotonic() + START_WAIT_S
                while not stream.marker_done and stream.exit_code is None and time.monotonic() < end:
                    time.sleep(0.005)
                if stream.pgid is not None:
                    try:
                        on_start(stream.pgid)
                    except BaseException as exc:  # the loop below kills the group and re-raises
                        start_errors.append(exc)
                        return
            stream.send_stdin(stdin)

        threading.Thread(target=feed, daemon=True).start()
        timed_out = killed = False
        try:
            while stream.exit_code is None or stream.buf:
                if start_errors:
                    raise start_errors[0]
                now = time.monotonic()
                timed_out = timed_out or now >= deadline_at
                if timed_out and not killed and stream.pgid is not None:
                    self._kill_group(stream.pgid)
                    killed = True
                if timed_out and now - deadline_at > KILL_GRACE_S:
                    break  # closing the stream makes adbd hang up on what is left
                if not stream.pump(min(deadline_at - now if not timed_out else KILL_GRACE_S, 1.0)):
                    if not timed_out:
                        raise OSError("the shell stream ended without an exit status")
                    break
        except OSError as exc:
            raise TransientError(
                f"adb link to {self.serial!r} dropped during a command ({exc}); check `adb devices`"
            ) from None
        except BaseException:  # Ctrl-C: leave no remote orphan behind
            with contextlib.suppress(HarnessError):
                self._kill_group(stream.pgid)
            raise
        finally:
            conn.close()
        stream.flush()
        result = RunResult(
            exit_code=None if timed_out else stream.exit_code,
            signal=9 if timed_out else None,
            stderr=tail(bytes(stream.stderr)),
            wall_ns=time.monotonic_ns() - start,
            timed_out=timed_out,
        )
        return result, bytes(stream.raw)

    def _open_shell(self, command: str) -> adbutils.AdbConnection:
        conn = self.device.open_transport(timeout=None)
        conn.send_command(f"shell,v2,raw:{command}")
        conn.check_okay()  # raises AdbError with the server's FAIL message
        return conn

    def _kill_group(self, pgid: int | None, wait_s: float = 30.0) -> None:
        """SIGKILL a remote process group from a second shell (the first one is still busy).

        Opening that shell waits for the device; when the link stays down past ``wait_s`` the
        kill is left to the runner, which reaps the group after reconnecting.
        """
        if pgid is None or pgid <= 1:
            return
        done = threading.Event()

        def kill() -> None:
            try:
                self._exec(wrap_root(f"kill -9 -{pgid}", self.root), deadline_s=wait_s)
            except HarnessError as exc:
                log.warning("killing process group %d on %s failed: %s", pgid, self.serial, exc)
            finally:
                done.set()

        threading.Thread(target=kill, daemon=True, name=f"adb-kill-{pgid}").start()
        if not done.wait(wait_s):
            raise TransientError(
                f"{self.serial}: the link stayed down for {wait_s:.0f} s while killing a timed-out "
                f"command (process group {pgid}); it is killed after the reconnect",
                orphans=(pgid,),
            )

    def _exec(self, command: str, *, deadline_s: float = 60) -> tuple[int | None, bytes, str]:
        """Run a shell command line (already quoted); return exit code, stdout bytes, stderr."""
        result, out = self._run_shell(command, b"", deadline_s, None)
        return result.exit_code, out, result.stderr

    def _check(self, command: str) -> bytes:
        code, out, err = self._exec(command)
        if code != 0:
            raise DeviceError(f"{command!r} failed on {self.serial!r} (exit {code}): {err.strip()!r}")
        return out

    def push(self, local: Path, remote: str) -> int:
        size = local.stat().st_size
        part = self._temp_name(remote)
        self._check(wrap_root(f"mkdir -p {shlex.quote(posixpath.dirname(remote) or '.')}", self.root))
        try:
            sent = self._call(lambda: self.device.sync.push(local, part, mode=0o644), f"push to {part!r}")
            got = self._call(lambda: self.device.sync.stat(part).size, f"stat {part!r}")
            if sent != size or got != size:
                raise DeviceError(f"push of {local} to {remote!r} is incomplete ({got} of {size} "
                                  f"bytes); check free space on the device")
            if self.has_sha256():
                digest = self._check(f"sha256sum {shlex.quote(part)}").split()[:1]
                if digest != [_sha256(local).encode()]:
                    raise TransientError(f"push of {local} to {remote!r} arrived corrupted; retry")
            self._check(wrap_root(f"mv -f {shlex.quote(part)} {shlex.quote(remote)}", self.root))
        except BaseException:
            with contextlib.suppress(HarnessError):
                self._exec(wrap_root(f"rm -f {shlex.quote(part)}", self.root))
            raise
        return size

    def pull(self, remote: str, local: Path) -> None:
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f"{local.name}.part-{secrets.token_hex(4)}")
        source = remote
        try:
            if self.root == "su":  # the file may be readable by root only: copy it where adbd can read
                source = self._temp_name(remote)
                self._check(wrap_root(f"cp -- {shlex.quote(remote)} {shlex.quote(source)} && "
                                      f"chmod 644 {shlex.quote(source)}", self.root))
            got = self._call(lambda: self.device.sync.pull_file(source, tmp), f"pull {remote!r}")
            size = self._call(lambda: self.device.sync.stat(source).size, f"stat {source!r}")
            if got != size:
                raise TransientError(f"pull of {remote!r} got {got} of {size} bytes; retry")
            os.replace(tmp, local)
        finally:
            tmp.unlink(missing_ok=True)
            if source != remote:
                with contextlib.suppress(HarnessError):
                    self._exec(wrap_root(f"rm -f {shlex.quote(source)}", self.root))

    def _temp_name(self, remote: str) -> str:
        """Beside the target, or with ``su`` (a root-owned workdir adbd cannot write to, root's
        0600 files it cannot read) in adbd's own staging dir."""
        token, name = secrets.token_hex(4), posixpath.basename(remote)
        return f"{self.staging_dir}/.odt-{token}-{name}" if self.root == "su" else f"{remote}.part-{token}"

    def read_text(self, remote: str) -> str:
        code, out, err = self._exec(wrap_root(f"cat -- {shlex.quote(remote)}", self.root))
        if code == 0:
            return out.decode("utf-8", errors="replace")
        if not self.exists(remote):
            raise FileNotFoundError(f"no file {remote!r} on adb device {self.serial!r}")
        raise DeviceError(f"cannot read {remote!r} on {self.serial!r}: {err.strip()!r}; check root mode")

    def exists(self, remote: str) -> bool:
        code, _, err = self._exec(wrap_root(f"test -e {shlex.quote(remote)}", self.root))
        if code in (0, 1):
            return code == 0
        raise DeviceError(f"cannot test {remote!r} on {self.serial!r} (exit {code}): {err.strip()!r}")

    def has_sha256(self) -> bool:
        """Whether the device has ``sha256sum`` (toybox since Android 6, coreutils)."""
        if self._has_sha256 is None:
            self._has_sha256 = self._exec("command -v sha256sum >/dev/null")[0] == 0
        return self._has_sha256

    def close(self) -> None:
        """Nothing to release: every command and transfer opens its own adb stream."""


def open_client(host: str, port: int) -> adbutils.AdbClient:
    """An adbutils client for a server that answers; never starts one behind the user's back."""
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise TransientError(f"no adb server at {host}:{port} ({exc.strerror or exc}); start it "
                             f"with `adb -P {port} start-server` or fix connection.adb_server") from None
    return adbutils.AdbClient(host=host, port=port)


def _call(fn: Callable[[], T], what: str) -> T:
    """Run an adbutils call: a broken link is a TransientError, a refusal a DeviceError."""
    try:
        return fn()
    except (OSError, adbutils.AdbTimeout) as exc:
        raise TransientError(f"adb: cannot {what} ({exc}); check `adb devices`") from None
    except AdbError as exc:
        raise DeviceError(f"adb: cannot {what} ({exc})") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
