"""A real OpenSSH server on 127.0.0.1 for the ssh transport's tests.

The session fixture ``sshd_server`` starts Debian's ``/usr/sbin/sshd`` in the foreground
(``-D -E log -f config``) on a free loopback port, as the current user, with a temporary ed25519
host key, key-only authentication against a temporary authorized_keys file, ``UsePAM no``
and ``StrictModes no`` (sshd_config(5): https://man.openbsd.org/sshd_config). The client
trusts the server through a known_hosts file the fixture writes. Without sshd the tests skip,
unless ``HARNESS_REQUIRE_REAL_PARTS=1``, in which case they fail.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from harness.transports.ssh import SSHConnection

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SshdServer:
    """What a client needs to reach the fixture's sshd."""

    host: str
    port: int
    user: str
    client_key: Path  # private key whose public half is authorized
    known_hosts: Path  # trusts exactly this server's host key
    host_key_line: str  # "<key type> <base64>" of the server's host key
    workdir: Path
    empty_ssh_config: Path  # keeps the user's own ~/.ssh/config out of the tests

    def connect(self, **overrides: object) -> SSHConnection:
        """An SSHConnection to this server using only the fixture's key and known_hosts."""
        kwargs: dict[str, object] = dict(
            port=self.port, user=self.user, identity_file=str(self.client_key),
            known_hosts=str(self.known_hosts), ssh_config=self.empty_ssh_config,
            allow_agent=False, look_for_keys=False, connect_attempts=1, connect_timeout_s=10.0,
        )
        kwargs.update(overrides)
        return SSHConnection(str(kwargs.pop("host", self.host)), **kwargs)  # type: ignore[arg-type]


def require_real_part(available: bool, what: str) -> None:
    """Skip when a real part is missing, or fail when HARNESS_REQUIRE_REAL_PARTS=1."""
    if available:
        return
    message = f"{what} is not installed (Debian: apt-get install -y openssh-server)"
    if os.environ.get("HARNESS_REQUIRE_REAL_PARTS") == "1":
        pytest.fail(message + "; HARNESS_REQUIRE_REAL_PARTS=1 requires it")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def keygen(path: Path, comment: str) -> str:
    """Make an unencrypted ed25519 key pair; return the public line's "type base64" part."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return " ".join(path.with_name(path.name + ".pub").read_text().split()[:2])


def write_sshd_config(workdir: Path, port: int, host_key: Path, authorized_keys: Path, *,
                      sftp: bool = True) -> Path:
    """An sshd_config for the fixture; ``sftp=False`` leaves out the ``Subsystem sftp`` line,
    as minimal boards do, so a client's SFTP request is refused."""
    config = workdir / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {host_key}",
        f"PidFile {workdir / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        "UsePAM no",
        "StrictModes no",
        "AllowTcpForwarding yes",
        *(["Subsystem sftp internal-sftp"] if sftp else []),
        "LogLevel DEBUG1",  # DEBUG1 logs direct-tcpip requests (the ProxyJump test reads them)
        "",
    ]))
    return config


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            text = log_path.read_text() if log_path.exists() else "(no log)"
            raise RuntimeError(f"sshd exited with {proc.returncode}: {text[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
                if sock.recv(64).startswith(b"SSH-2.0"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not answer on port {port} within {START_TIMEOUT_S} s")


@contextmanager
def running_sshd(workdir: Path, *, sftp: bool = True) -> Iterator[SshdServer]:
    """Start sshd in ``workdir`` (keys, config, log there); stop it on exit."""
    require_real_part(os.path.exists(SSHD) and shutil.which("ssh-keygen") is not None, "OpenSSH sshd")
    host_line = keygen(workdir / "host_ed25519", "odt-test-host")
    client_line = keygen(workdir / "client_ed25519", "odt-test-client")
    authorized = workdir / "authorized_keys"
    authorized.write_text(client_line + "\n")
    port = free_port()
    config = write_sshd_config(workdir, port, workdir / "host_ed25519", authorized, sftp=sftp)
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_line}\n")
    empty_config = workdir / "ssh_config"
    empty_config.write_text("")
    try:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
    except OSError:
        pass  # not root: sshd then says itself what is missing, and the fixture quotes its log
    log_path = workdir / "sshd.log"
    # -E (not -e): with -e, debug lines of a session's child would land in the session's stderr
    proc = subprocess.Popen([SSHD, "-D", "-E", str(log_path), "-f", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_banner(port, proc, log_path)
        yield SshdServer(host="127.0.0.1", port=port, user=getpass.getuser(),
                         client_key=workdir / "client_ed25519", known_hosts=known_hosts,
                         host_key_line=host_line, workdir=workdir, empty_ssh_config=empty_config)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """A running sshd on 127.0.0.1 that accepts the fixture's client key for the current user."""
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture(scope="session")
def sshd_without_sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdServer]:
    """The same sshd with no ``Subsystem sftp`` line: SFTP requests are refused."""
    with running_sshd(tmp_path_factory.mktemp("sshd-nosftp"), sftp=False) as server:
        yield server


@pytest.fixture()
def ssh_conn(sshd_server: SshdServer) -> Iterator[SSHConnection]:
    """A fresh connection to the fixture's sshd, closed after the test."""
    conn = sshd_server.connect()
    try:
        yield conn
    finally:
        conn.close()
