"""A foreign board on this machine: a real Dropbear server inside a Debian trixie userland.

The board is a directory built by ``.ci/build-board.sh amd64 ROOT`` from Debian packages
only (its own Python 3.13, Debian's python3-torch 2.6, python3-numpy, dropbear-bin; nothing
pip-installed, no onnxruntime, no SFTP server). The fixture ``dropbear_board``:

- reuses the board at ``$HARNESS_BOARD_ROOT`` (default ``/var/tmp/odt-board/ARCH``), or
  builds it there with the script when it is missing (root and a Debian mirror needed);
  ``$HARNESS_BOARD_ARCH`` is ``amd64`` (default, native) or ``arm64`` (under qemu-user-static
  through binfmt_misc: ``nox -s board_arm64``);
- adds a non-root user ``odt`` to the board, with a fresh ed25519 key authorized;
- starts the board's own ``/usr/sbin/dropbear`` chrooted in the board (``.ci/board-chroot.sh``:
  private mount and PID namespaces with /proc, /sys and a small /dev) on a free port of
  127.0.0.1, with a fresh host key, password logins and root logins refused;
- writes a device profile for it (``BoardServer.write_profile``).

Dropbear has no SFTP: it execs ``/usr/lib/sftp-server`` for the subsystem, which the board
lacks, so every file the harness moves must go over the exec channel. Teardown SIGKILLs the
namespace's parent; ``unshare --kill-child`` then kills Dropbear (PID 1 of the namespace) and
with it every process of the board's sessions, and the mounts vanish with the namespace.

Missing parts (root, unshare, ssh-keygen, a board that cannot be built) skip the tests, or
fail them under ``HARNESS_REQUIRE_REAL_PARTS=1`` (tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import need_part

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / ".ci" / "build-board.sh"
CHROOT_SCRIPT = REPO / ".ci" / "board-chroot.sh"
BOARD_USER, BOARD_UID = "odt", 1000
BOARD_PYTHON = "/usr/bin/python3"
MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}  # Debian architecture -> uname -m
BINFMT = {"arm64": Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")}
START_TIMEOUT_S = 120.0  # Dropbear under emulation answers in seconds; natively at once
CONNECT_TIMEOUT_S = 60.0  # SSH connect and key exchange, generous for emulation
BUILD_TIMEOUT_S = 3600.0
# Under emulation one torch import takes minutes: nox -s board_arm64 raises these.
CASE_TIMEOUT_S = float(os.environ.get("HARNESS_BOARD_CASE_TIMEOUT_S", "600"))


@dataclass(frozen=True)
class BoardServer:
    """What a client needs to reach the board's Dropbear, and where the board lives."""

    root: Path  # the board's / on this machine
    host: str
    port: int
    user: str
    client_key: Path
    known_hosts: Path
    host_key_line: str  # "ssh-ed25519 AAAA..." of Dropbear's host key
    log_path: Path
    arch: str = "amd64"

    @property
    def home(self) -> Path:
        """The board user's home directory, seen from this machine."""
        return self.root / "home" / self.user

    def write_profile(self, path: Path, *, name: str = "trixie-board", workdir: str = "~/.cache/odt-harness") -> Path:
        """A device profile that reaches the board with the board's own Python."""
        path.write_text(
            f'name = "{name}"\n'
            'description = "Debian trixie userland (python3-torch 2.6) behind Dropbear, no SFTP"\n'
            "[connection]\n"
            f'transport = "ssh"\nhost = "{self.host}"\nport = {self.port}\nuser = "{self.user}"\n'
            f'identity_file = "{self.client_key}"\nknown_hosts = "{self.known_hosts}"\n'
            f"connect_timeout_s = {CONNECT_TIMEOUT_S:g}\n"
            "[agent]\n"
            f'python = ["{BOARD_PYTHON}"]\nworkdir = "{workdir}"\n'
            f"case_timeout_s = {CASE_TIMEOUT_S:g}\n"
            "[energy]\n"
            'meter = "auto"\nidle_window_s = 0.2\n'
        )
        return path


def board_arch() -> str:
    arch = os.environ.get("HARNESS_BOARD_ARCH", "amd64")
    if arch not in MACHINES:
        raise pytest.UsageError(f"HARNESS_BOARD_ARCH={arch!r}: use one of {', '.join(MACHINES)}")
    return arch


def board_root(arch: str) -> Path:
    return Path(os.environ.get("HARNESS_BOARD_ROOT", f"/var/tmp/odt-board/{arch}"))


def missing_parts(arch: str) -> list[str]:
    """What this machine lacks to start the board (empty when all is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (chroot and namespaces need it)")
    missing += [tool for tool in ("unshare", "chroot", "ssh-keygen") if not shutil.which(tool)]
    binfmt = BINFMT.get(arch)
    if binfmt is not None and os.uname().machine != MACHINES[arch]:
        flags = binfmt.read_text() if binfmt.is_file() else ""
        if "enabled" not in flags or not any(line.startswith("flags:") and "F" in line for line in flags.splitlines()):
            missing.append(f"{binfmt.name} registered in binfmt_misc with the F flag "
                           "(apt-get install qemu-user-static binfmt-support)")
    return missing


def ensure_board(arch: str, root: Path) -> str:
    """Reuse the board at ``root``, or build it; return why it is unusable ('' when usable)."""
    if (root / ".odt-board-stamp").is_file():
        return ""
    try:
        proc = subprocess.run(["bash", str(BUILD_SCRIPT), arch, str(root)], capture_output=True,
                              text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"building the board took over {BUILD_TIMEOUT_S:.0f} s"
    if proc.returncode != 0:
        return f"`{BUILD_SCRIPT.name} {arch} {root}` failed: {(proc.stdout + proc.stderr)[-1500:]}"
    return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def add_user(root: Path, public_key_line: str) -> Path:
    """Make ``odt`` a login user of the board (idempotent) with only this key authorized."""
    passwd, group = root / "etc" / "passwd", root / "etc" / "group"
    if not any(line.startswith(f"{BOARD_USER}:") for line in passwd.read_text().splitlines()):
        # "*": no password can match, yet the account is not locked ("!"), which Dropbear refuses
        with passwd.open("a") as f:
            f.write(f"{BOARD_USER}:*:{BOARD_UID}:{BOARD_UID}:odt harness user:/home/{BOARD_USER}:/bin/sh\n")
        with group.open("a") as f:
            f.write(f"{BOARD_USER}:x:{BOARD_UID}:\n")
    home = root / "home" / BOARD_USER
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(public_key_line + "\n")
    for path, mode in ((home, 0o755), (ssh_dir, 0o700), (ssh_dir / "authorized_keys", 0o600)):
        os.chown(path, BOARD_UID, BOARD_UID)
        os.chmod(path, mode)
    return home


def wait_for_banner(port: int, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """Wait for Dropbear's banner, patiently: it re-executes itself for every connection, which
    under emulation takes seconds, and a client that gives up early only starts more of them."""
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"dropbear exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2.0) as sock:
                sock.settimeout(max(1.0, end - time.monotonic()))
                if sock.recv(64).startswith(b"SSH-2.0-dropbear"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"dropbear did not answer on port {port} within {START_TIMEOUT_S} s (under emulation: "
                       "qemu-user-static 7.2 lacks execveat, which Dropbear's per-connection re-exec needs; "
                       f"use 8 or later, e.g. from bookworm-backports): {log_path.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # unshare ignores SIGTERM while it waits; SIGKILL it and --kill-child takes the namespace down
    proc.kill()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def dropbear_board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BoardServer]:
    """The trixie board behind a running Dropbear, reachable as ``odt`` on 127.0.0.1."""
    arch = board_arch()
    missing = missing_parts(arch)
    need_part(not missing, f"{', '.join(missing)} for the foreign-board tests")
    root = board_root(arch)
    problem = ensure_board(arch, root)
    need_part(not problem, f"the trixie board ({problem}); build it with `sudo .ci/build-board.sh {arch} {root}`")
    workdir = tmp_path_factory.mktemp("dropbear")
    client_key = workdir / "client_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "odt-board-client", "-f", str(client_key)],
                   check=True, capture_output=True)
    home = add_user(root, client_key.with_name(client_key.name + ".pub").read_text().strip())
    shutil.rmtree(home / ".cache", ignore_errors=True)  # every session pushes the agent afresh
    # the host key lives in the board (Dropbear reads it after the chroot); one per session
    token = uuid.uuid4().hex[:8]
    board_dir = f"/run/odt-dropbear-{token}"
    (root / board_dir.lstrip("/")).mkdir(parents=True)
    chroot = [str(CHROOT_SCRIPT), str(root)]
    subprocess.run([*chroot, "/usr/bin/dropbearkey", "-t", "ed25519", "-f", f"{board_dir}/host_key"],
                   check=True, capture_output=True, timeout=60)
    host_line = next(line for line in subprocess.run(
        [*chroot, "/usr/bin/dropbearkey", "-y", "-f", f"{board_dir}/host_key"], check=True, capture_output=True,
        text=True, timeout=60).stdout.splitlines() if line.startswith("ssh-"))
    host_line = " ".join(host_line.split()[:2])
    port = free_port()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_line}\n")
    log_path = workdir / "dropbear.log"
    # -F foreground, -E log to stderr, -s no passwords, -w no root, -j -k no port forwarding
    argv = [*chroot, "/usr/sbin/dropbear", "-F", "-E", "-s", "-w", "-j", "-k",
            "-p", f"127.0.0.1:{port}", "-r", f"{board_dir}/host_key"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_for_banner(port, proc, log_path)
        yield BoardServer(root=root, host="127.0.0.1", port=port, user=BOARD_USER, client_key=client_key,
                          known_hosts=known_hosts, host_key_line=host_line, log_path=log_path, arch=arch)
    finally:
        _stop(proc)
        shutil.rmtree(root / board_dir.lstrip("/"), ignore_errors=True)
