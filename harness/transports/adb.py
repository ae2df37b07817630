"""The ``adb`` transport: a phone (or any adbd) reached through an adb server.

Commands go over the adb *shell protocol v2* (``shell,v2,raw:``), the only adb service that
keeps stdout and stderr apart and returns the exit code; devices without it (Android < 7)
are refused rather than guessed at. Every argv element is quoted with :func:`shlex.quote`
into one shell string, so no value is ever interpreted by the device's shell. Each command
runs in its own session (``setsid -w``) and announces its process-group id on stderr first,
so a deadline can kill the whole remote process tree from a second shell.

Files move with the adb sync protocol to a temporary name, are checked by size and, where
the device has ``sha256sum`` (toybox, coreutils), by hash, then renamed into place.
Root modes: ``none``; ``su`` wraps each command as ``su -c '<command>'`` (Magisk's ``su``);
``adb-root`` expects adbd itself to run as root (``adb root`` on userdebug builds, done by
a person beforehand: the harness never restarts adbd).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import secrets
import shlex
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Sequence

import adbutils
from adbutils.errors import AdbError

from harness.errors import ConfigError, DeviceError, HarnessError, TransientError
from harness.profiles import Profile
from harness.transports.base import LineSink, RunResult, tail

DEFAULT_SERVER = ("127.0.0.1", 5037)
PGID_MARKER = b"ODT-PGID "
KILL_GRACE_S = 5.0
STAGING_DIR = "/data/local/tmp"  # writable and readable by adbd's uid on every Android
_STDIN, _STDOUT, _STDERR, _EXIT, _CLOSE_STDIN = 0, 1, 2, 3, 4
_PACKET_DATA_MAX = 4096 - 5  # adbd's shell-protocol buffer is 4 KiB including the header
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TRANSIENT_STATES = {"offline", "authorizing", "connecting", "bootloader", "recovery", "sideload", "rescue"}


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
    """Pick the device to use from ``(serial, state)`` pairs, or say exactly what is wrong.

    Unauthorized and permission problems are stable (a person must act); offline, absent
    and booting devices are transient.
    """
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
    if not argv:
        raise ConfigError("cannot run an empty argv")
    parts: list[str] = []
    if cwd:
        parts.append(f"cd {shlex.quote(cwd)} &&")
    for key, value in (env or {}).items():
        if not _ENV_NAME.match(key):
            raise ConfigError(f"environment variable name {key!r} is not a valid shell name")
        parts.append(f"{key}={shlex.quote(value)}")
    parts.extend(shlex.quote(a) for a in argv)
    return " ".join(parts)


def wrap_root(command: str, root: str) -> str:
    """Give a shell command line the profile's privileges (``su`` wraps it as one string)."""
    return f"su -c {shlex.quote(command)}" if root == "su" else command


def session_command(command: str) -> str:
    """Run ``command`` in a new session that first prints its process-group id on stderr."""
    inner = f"echo \"{PGID_MARKER.decode()}$$\" >&2; {command}"
    return f"exec setsid -w sh -c {shlex.quote(inner)}"


class _ShellV2:
    """One ``shell,v2,raw:`` stream: framed stdin out, framed stdout/stderr/exit in."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def send_stdin(self, data: bytes) -> None:
        for i in range(0, len(data), _PACKET_DATA_MAX):
            chunk = data[i : i + _PACKET_DATA_MAX]
            self.sock.sendall(struct.pack("<BI", _STDIN, len(chunk)) + chunk)
        self.sock.sendall(struct.pack("<BI", _CLOSE_STDIN, 0))

    def packets(self, timeout_s: float) -> list[tuple[int, bytes]] | None:
        """Packets that arrive within ``timeout_s``; [] on timeout, None at end of stream."""
        self.sock.settimeout(max(timeout_s, 0.001))
        try:
            data = self.sock.recv(262144)
        except TimeoutError:
            return []
        if not data:
            return None
        buf, at, out = self.buf + data, 0, []
        while len(buf) - at >= 5:
            kind, length = struct.unpack_from("<BI", buf, at)
            if len(buf) - at < 5 + length:
                break
            out.append((kind, buf[at + 5 : at + 5 + length]))
            at += 5 + length
        self.buf = buf[at:]
        return out


class _Streams:
    """Splits stdout into lines for the sink; keeps stderr minus the process-group marker."""

    def __init__(self, sink: LineSink | None) -> None:
        self.sink = sink  # None: keep stdout as bytes in ``raw`` instead of splitting lines
        self.raw = bytearray()
        self.partial = b""
        self.stderr = bytearray()
        self.pgid: int | None = None
        self.marker_done = False

    def stdout(self, data: bytes) -> None:
        if self.sink is None:
            self.raw += data
            return
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self.sink(line.decode("utf-8", errors="replace").rstrip("\r"))

    def err(self, data: bytes) -> None:
        self.stderr += data
        if not self.marker_done and b"\n" in self.stderr:
            first, _, rest = bytes(self.stderr).partition(b"\n")
            if first.startswith(PGID_MARKER) and first[len(PGID_MARKER) :].isdigit():
                self.pgid = int(first[len(PGID_MARKER) :])
                self.stderr = bytearray(rest)
            self.marker_done = True
        if len(self.stderr) > 2_097_152:
            del self.stderr[:-1_048_576]

    def flush(self) -> None:
        if self.partial and self.sink is not None:
            self.sink(self.partial.decode("utf-8", errors="replace").rstrip("\r"))
            self.partial = b""


class AdbConnection:
    """A device behind an adb server, reached by serial."""

    name = "adb"

    def __init__(self, client: adbutils.AdbClient, serial: str, *, root: str = "none") -> None:
        self.client = client
        self.serial = serial
        self.root = root
        self.device = client.device(serial)
        features = self._call(lambda: self.device.get_features(), "read features")
        if "shell_v2" not in features.split(","):
            raise DeviceError(f"adb device {serial!r} lacks shell protocol v2 (features: "
                              f"{features!r}); exit codes and stderr cannot be trusted: use Android 7+")
        self._has_sha256: bool | None = None
        self.staging_dir = STAGING_DIR

    @classmethod
    def from_profile(cls, profile: Profile) -> AdbConnection:
        """Connect to the adb server and device a profile names (serial, ANDROID_SERIAL, or the only one)."""
        host, port = parse_server(profile.connection.adb_server, source=profile.path)
        client = open_client(host, port)
        serial = profile.connection.serial or os.environ.get("ANDROID_SERIAL", "")
        devices = [(d.serial, d.state) for d in _call(client.list, f"list devices at {host}:{port}")]
        chosen = choose_serial(devices, serial, source=profile.path)
        conn = cls(client, chosen, root=profile.agent.root)
        if profile.agent.root == "adb-root":
            conn.check_adb_root()
        return conn

    def check_adb_root(self) -> None:
        """Refuse root mode 'adb-root' when adbd does not run as root."""
        out: list[str] = []
        self.run(["id", "-u"], deadline_s=30, on_stdout_line=out.append)
        if out[:1] != ["0"]:
            raise DeviceError(f"root = 'adb-root' but adbd on {self.serial!r} runs as uid {out[:1]}; "
                              f"run `adb -s {self.serial} root` yourself (userdebug) or use root = 'su'")

    def _call(self, fn, what: str):  # noqa: ANN001, ANN202 - thin wrapper over adbutils calls
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
    ) -> RunResult:
        command = wrap_root(session_command(shell_line(argv, cwd=cwd, env=env)), self.root)
        return self._run_shell(command, stdin, deadline_s, _Streams(on_stdout_line))

    def _run_shell(self, command: str, stdin: bytes, deadline_s: float, streams: _Streams) -> RunResult:
        start = time.monotonic_ns()
        deadline_at = time.monotonic() + deadline_s
        conn = self._call(lambda: self._open_shell(command), "open a shell")
        stream = _ShellV2(conn.conn)
        writer = threading.Thread(target=_send_quietly, args=(stream, stdin), daemon=True)
        writer.start()
        exit_code: int | None = None
        timed_out = killed = False
        try:
            while True:
                now = time.monotonic()
                if not timed_out and now >= deadline_at:
                    timed_out = True
                if timed_out and not killed and streams.pgid is not None:
                    self._kill_group(streams.pgid)
                    killed = True
                if timed_out and now - deadline_at > KILL_GRACE_S:
                    break  # closing the stream makes adbd hang up on what is left
                wait_s = (deadline_at - now) if not timed_out else KILL_GRACE_S
                packets = stream.packets(min(wait_s, 1.0))
                if packets is None and not timed_out:
                    raise OSError("the shell stream ended without an exit status")
                if packets is None:
                    break
                for kind, data in packets:
                    if kind == _STDOUT:
                        streams.stdout(data)
                    elif kind == _STDERR:
                        streams.err(data)
                    elif kind == _EXIT:
                        exit_code = data[0] if data else None
                if exit_code is not None and not stream.buf:
                    break
        except OSError as exc:
            raise TransientError(
                f"adb link to {self.serial!r} dropped during a command ({exc}); check `adb devices`"
            ) from None
        except BaseException:  # Ctrl-C: leave no remote orphan behind
            with contextlib.suppress(HarnessError):
                self._kill_group(streams.pgid)
            raise
        finally:
            conn.close()
        streams.flush()
        return RunResult(
            exit_code=None if timed_out else exit_code,
            signal=9 if timed_out else None,
            stderr=tail(bytes(streams.stderr)),
            wall_ns=time.monotonic_ns() - start,
            timed_out=timed_out,
        )

    def _open_shell(self, command: str) -> adbutils.AdbConnection:
        conn = self.device.open_transport(timeout=None)
        conn.send_command(f"shell,v2,raw:{command}")
        conn.check_okay()
        return conn

    def _kill_group(self, pgid: int | None) -> None:
        """SIGKILL a remote process group from a second shell (the first one is still busy)."""
        if pgid is None or pgid <= 1:
            return
        self._exec(wrap_root(f"kill -9 -{pgid}", self.root), deadline_s=30)

    def _exec(self, command: str, *, deadline_s: float = 60, stdin: bytes = b"") -> tuple[int | None, bytes, str]:
        """Run a shell command line (already quoted); return exit code, stdout bytes, stderr."""
        streams = _Streams(None)
        result = self._run_shell(command, stdin, deadline_s, streams)
        return result.exit_code, bytes(streams.raw), result.stderr

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
                    raise DeviceError(f"push of {local} to {remote!r} arrived corrupted; retry")
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
        """Where a transfer lands first: beside the target, or (su) in adbd's own staging dir.

        With ``su`` the work directory belongs to root, so adbd (uid shell on a phone) can
        neither write into it nor read root's 0600 files; its staging dir it can.
        """
        token = secrets.token_hex(4)
        if self.root == "su":
            return f"{self.staging_dir}/.odt-{token}-{posixpath.basename(remote)}"
        return f"{remote}.part-{token}"

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
            code, _, _ = self._exec("command -v sha256sum >/dev/null")
            self._has_sha256 = code == 0
        return self._has_sha256

    def close(self) -> None:
        pass


def open_client(host: str, port: int) -> adbutils.AdbClient:
    """An adbutils client for a server that answers; never starts one behind the user's back."""
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        raise TransientError(f"no adb server at {host}:{port} ({exc.strerror or exc}); start it "
                             f"with `adb -P {port} start-server` or fix connection.adb_server") from None
    return adbutils.AdbClient(host=host, port=port)


def _call(fn, what: str):  # noqa: ANN001, ANN202 - thin wrapper over adbutils calls
    """Run an adbutils call: a broken link is a TransientError, a refusal a DeviceError."""
    try:
        return fn()
    except (OSError, adbutils.AdbTimeout) as exc:
        raise TransientError(f"adb: cannot {what} ({exc}); check `adb devices`") from None
    except AdbError as exc:
        raise DeviceError(f"adb: cannot {what} ({exc})") from None


def _send_quietly(stream: _ShellV2, data: bytes) -> None:
    try:
        stream.send_stdin(data)
    except OSError:
        pass  # the command ended before reading its stdin; its exit code tells


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
