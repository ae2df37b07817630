"""Files over SSH on any server: SFTP when it is offered, otherwise the exec channel.

Minimal boards often run Dropbear without ``sftp-server``, and some OpenSSH servers have
the ``Subsystem sftp`` line removed. Both answer the SFTP request by closing the channel
while the login itself stays up; :func:`open_files` then falls back to plain commands on
the exec channel (``cat``, ``test``, ``mkdir``, ``mv``), every argument ``shlex.quote``-d
for the POSIX login shell. A pushed or pulled file is checked by size and by a checksum the
device can compute: ``sha256sum``, else ``md5sum``, else POSIX ``cksum`` (whose CRC is
computed here with :func:`posix_cksum`); with none of them the size check stands alone, as
it does over SFTP.

Only when neither SFTP nor the exec fallback works is it an error, and a stable one
(:class:`DeviceError`): retrying cannot make a subsystem appear.

paramiko references: https://docs.paramiko.org/en/stable/api/channel.html (exec_command,
recv_stderr, shutdown_write) and https://docs.paramiko.org/en/stable/api/sftp.html. The
cksum algorithm is POSIX's (https://pubs.opengroup.org/onlinepubs/9799919799/utilities/cksum.html).
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import shlex
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import paramiko

from harness.errors import DeviceError

log = logging.getLogger(__name__)

_CHUNK = 65536
_MISSING = 44  # exit status the read command uses for "no such file"
CHECKSUM_TOOLS = ("sha256sum", "md5sum", "cksum")


# -- checksums ----------------------------------------------------------------------------

def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def posix_cksum(data: bytes) -> int:
    """The CRC that POSIX ``cksum`` prints: CRC-32/POSIX over the data and then its length."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    length = len(data)
    while length:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ (length & 0xFF)]
        length >>= 8
    return ~crc & 0xFFFFFFFF


def local_digest(tool: str, data: bytes) -> str:
    """What ``tool < file`` prints as its first word for this content."""
    if tool == "sha256sum":
        return hashlib.sha256(data).hexdigest()
    if tool == "md5sum":
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    if tool == "cksum":
        return str(posix_cksum(data))
    raise ValueError(f"unknown checksum tool {tool!r}")


# -- one exec command, bytes in and out ---------------------------------------------------

@dataclass(frozen=True)
class ExecResult:
    """A finished command: its status (-1 when the server sent none) and both streams."""

    status: int
    stdout: bytes
    stderr: bytes

    def why(self) -> str:
        return self.stderr.decode("utf-8", errors="replace").strip()[-300:] or f"exit {self.status}"


def exec_bytes(client: paramiko.SSHClient, command: str, *, stdin: bytes = b"",
               timeout_s: float = 600.0) -> ExecResult:
    """Run one shell line on the exec channel; stdin fed and stderr drained on threads.

    A stall longer than ``timeout_s`` raises ``socket.timeout`` (an OSError), which the
    connection reports as a dropped link.
    """
    chan = client.get_transport().open_session(timeout=timeout_s)
    try:
        chan.settimeout(timeout_s)
        chan.exec_command(command)
        errors: list[BaseException] = []
        stderr = bytearray()

        def feed() -> None:
            try:
                if stdin:
                    chan.sendall(stdin)
                chan.shutdown_write()
            except (paramiko.SSHException, EOFError, OSError) as exc:
                errors.append(exc)

        def drain_stderr() -> None:
            try:
                while data := chan.recv_stderr(_CHUNK):
                    stderr.extend(data[: max(0, 65536 - len(stderr))])
            except (paramiko.SSHException, EOFError, OSError) as exc:
                errors.append(exc)

        threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain_stderr, daemon=True)]
        for thread in threads:
            thread.start()
        stdout = bytearray()
        while data := chan.recv(_CHUNK):
            stdout.extend(data)
        for thread in threads:
            thread.join(timeout_s)
        status = chan.recv_exit_status() if chan.status_event.wait(timeout_s) else -1
        return ExecResult(status, bytes(stdout), bytes(stderr))
    finally:
        chan.close()


# -- the two ways to move files -----------------------------------------------------------

class RemoteFiles(Protocol):
    """File operations on absolute remote paths (``~`` already expanded by the caller)."""

    how: str

    def home(self) -> str: ...

    def push(self, local: Path, dest: str) -> int: ...

    def pull(self, remote: str, local_tmp: Path) -> None: ...

    def read_bytes(self, remote: str) -> bytes: ...

    def exists(self, remote: str) -> bool: ...

    def close(self) -> None: ...


def q(word: str) -> str:
    return shlex.quote(word)


class ChecksumTool:
    """The checksum command this device has (found once per connection)."""

    def __init__(self, client: paramiko.SSHClient) -> None:
        self.client = client
        self._tool: str | None = None

    def name(self) -> str:
        """``sha256sum``, ``md5sum`` or ``cksum``; "" when the device has none of them."""
        if self._tool is None:
            probe = "; ".join(f"command -v {t} >/dev/null 2>&1 && {{ echo {t}; exit 0; }}" for t in CHECKSUM_TOOLS)
            result = exec_bytes(self.client, probe + "; exit 0", timeout_s=60)
            found = result.stdout.decode(errors="replace").split()
            self._tool = found[0] if found and found[0] in CHECKSUM_TOOLS else ""
            if not self._tool:
                log.warning("the device has none of %s: file transfers are checked by size only",
                            ", ".join(CHECKSUM_TOOLS))
        return self._tool

    def verify(self, data: bytes, remote: str, what: str) -> None:
        """Compare the remote file's checksum with ``data``'s; DeviceError on a mismatch."""
        tool = self.name()
        if not tool:
            return
        result = exec_bytes(self.client, f"{tool} < {q(remote)}", timeout_s=600)
        words = result.stdout.decode(errors="replace").split()
        got = words[0] if result.status == 0 and words else ""
        want = local_digest(tool, data)
        if got != want:
            raise DeviceError(f"{what}: {remote} has {tool} {got!r}, expected {want!r} "
                              f"({result.why() if result.status else 'content differs'}); "
                              "the device's storage may be failing or full")


class SftpFiles:
    """Files over the SFTP subsystem (to a temporary name, checked, then renamed)."""

    how = "sftp"

    def __init__(self, client: paramiko.SSHClient, sftp: paramiko.SFTPClient, checksum: ChecksumTool) -> None:
        self.client, self.sftp, self.checksum = client, sftp, checksum

    def home(self) -> str:
        return self.sftp.normalize(".")

    def _makedirs(self, directory: str) -> None:
        missing: list[str] = []
        while directory not in ("", "/"):
            try:
                self.sftp.stat(directory)
                break
            except FileNotFoundError:
                missing.append(directory)
                directory = posixpath.dirname(directory)
        for path in reversed(missing):
            self.sftp.mkdir(path)

    def push(self, local: Path, dest: str) -> int:
        data = local.read_bytes()
        tmp = f"{dest}.part-{uuid.uuid4().hex[:12]}"
        self._makedirs(posixpath.dirname(dest))
        try:
            self.sftp.putfo(_BytesReader(data), tmp, file_size=len(data), confirm=False)
            got = self.sftp.stat(tmp).st_size
            if got != len(data):
                raise DeviceError(f"pushed {len(data)} bytes of {local} but {dest} has {got}; "
                                  "check free space on the device (df -h)")
            self.checksum.verify(data, tmp, f"pushing {local}")
            try:
                self.sftp.posix_rename(tmp, dest)
            except OSError:  # server without posix-rename@openssh.com
                if self.exists(dest):
                    self.sftp.remove(dest)
                self.sftp.rename(tmp, dest)
        except BaseException:
            try:
                self.sftp.remove(tmp)
            except (OSError, paramiko.SSHException, EOFError):
                pass
            raise
        return len(data)

    def pull(self, remote: str, local_tmp: Path) -> None:
        self.sftp.get(remote, str(local_tmp))

    def read_bytes(self, remote: str) -> bytes:
        with self.sftp.open(remote, "r") as f:
            return f.read()

    def exists(self, remote: str) -> bool:
        try:
            self.sftp.stat(remote)
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        self.sftp.close()


class _BytesReader:
    """The file-like object ``putfo`` reads from."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk = self.data[self.pos:end]
        self.pos += len(chunk)
        return chunk


class ExecFiles:
    """Files over the exec channel, for servers without SFTP (Dropbear, OpenSSH without it)."""

    how = "exec"

    def __init__(self, client: paramiko.SSHClient, checksum: ChecksumTool) -> None:
        self.client, self.checksum = client, checksum

    def _exec(self, command: str, stdin: bytes = b"") -> ExecResult:
        return exec_bytes(self.client, command, stdin=stdin)

    def home(self) -> str:
        result = exec_bytes(self.client, "cd 2>/dev/null; pwd", timeout_s=60)
        home = result.stdout.decode("utf-8", errors="replace").strip()
        if result.status != 0 or not home.startswith("/"):
            raise DeviceError(f"the device's shell cannot say its home directory ({result.why()}); "
                              "the SSH server offers no SFTP, so the harness needs a POSIX shell "
                              "with cd, pwd, cat, mkdir and mv on the exec channel")
        return home

    def push(self, local: Path, dest: str) -> int:
        data = local.read_bytes()
        tmp = f"{dest}.part-{uuid.uuid4().hex[:12]}"
        parent = posixpath.dirname(dest) or "."
        result = self._exec(f"mkdir -p -- {q(parent)} && cat > {q(tmp)} && wc -c < {q(tmp)}", data)
        try:
            size_text = result.stdout.decode(errors="replace").strip()
            if result.status != 0 or not size_text.isdigit():
                raise DeviceError(f"pushing {local} to {dest} over the exec channel failed: {result.why()}; "
                                  "check free space and permissions there (df -h)")
            if int(size_text) != len(data):
                raise DeviceError(f"pushed {len(data)} bytes of {local} but {dest} has {size_text}; "
                                  "check free space on the device (df -h)")
            self.checksum.verify(data, tmp, f"pushing {local}")
            moved = self._exec(f"mv -f -- {q(tmp)} {q(dest)}")
            if moved.status != 0:
                raise DeviceError(f"cannot move {tmp} to {dest} on the device: {moved.why()}")
        except BaseException:
            try:
                self._exec(f"rm -f -- {q(tmp)}")
            except (OSError, paramiko.SSHException, EOFError):
                pass
            raise
        return len(data)

    def read_bytes(self, remote: str) -> bytes:
        result = self._exec(f"test -e {q(remote)} || exit {_MISSING}; exec cat -- {q(remote)}")
        if result.status == _MISSING:
            raise FileNotFoundError(2, "No such file on the device", remote)
        if result.status != 0:
            raise DeviceError(f"cannot read {remote} on the device: {result.why()}")
        return result.stdout

    def pull(self, remote: str, local_tmp: Path) -> None:
        data = self.read_bytes(remote)
        self.checksum.verify(data, remote, f"pulling {remote}")
        local_tmp.write_bytes(data)

    def exists(self, remote: str) -> bool:
        result = self._exec(f"test -e {q(remote)}")
        if result.status not in (0, 1):
            raise DeviceError(f"cannot check {remote} on the device: {result.why()}")
        return result.status == 0

    def close(self) -> None:
        pass


def open_files(client: paramiko.SSHClient, describe: str) -> RemoteFiles:
    """SFTP when the server offers it, else the exec channel; DeviceError when neither works.

    A refused SFTP request closes only its channel: the transport stays up. A transport
    that went down is a dropped link, and the paramiko error propagates for the caller to
    report as transient.
    """
    checksum = ChecksumTool(client)
    try:
        return SftpFiles(client, client.open_sftp(), checksum)
    except paramiko.SSHException as exc:
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise
        refusal = str(exc) or type(exc).__name__
    probe = exec_bytes(client, "command -v cat >/dev/null && command -v mkdir >/dev/null && "
                               "command -v mv >/dev/null && echo ok", timeout_s=60)
    if probe.status != 0 or probe.stdout.strip() != b"ok":
        raise DeviceError(
            f"{describe} offers no SFTP subsystem ({refusal}) and its exec channel cannot run "
            f"cat, mkdir and mv ({probe.why()}), so no file can be copied to it. Install an SFTP "
            "server there (OpenSSH: 'Subsystem sftp internal-sftp' in sshd_config; Dropbear: the "
            "openssh-sftp-server package) or make a POSIX shell with coreutils or busybox available")
    log.info("%s offers no SFTP (%s): files go over the exec channel, checked with %s",
             describe, refusal, checksum.name() or "their size only")
    return ExecFiles(client, checksum)


__all__ = ["ExecFiles", "ExecResult", "RemoteFiles", "SftpFiles", "exec_bytes", "local_digest",
           "open_files", "posix_cksum"]
