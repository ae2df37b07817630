"""Fixture helpers: a real adbd in a private network namespace, and a real adb server.

Debian's AOSP ``adbd`` (bookworm-backports) always listens on ``*:5555`` and runs shell
commands as root on this host, so it must not be exposed on the host's network. The
fixture starts it as ``unshare --net adbd``: its network namespace is empty and dies with
it. A veth pair links that namespace to this one with a private /30 (10.213.0.0/16, chosen
at random and checked against the routes in use). The adb server runs in *this* namespace
on a free loopback port with its own ``HOME`` (keys) and ``ADB_EMU=0`` (no emulator port
scanning), and ``adb connect``s to adbd over the veth, so the code under test talks to an
ordinary adb server at ``127.0.0.1:<port>``, exactly as it would with a phone on USB.

Teardown stops the adb server and adbd, kills any process still in adbd's namespace (only
the fixture's own processes can be there) and deletes the veth pair. The ``adb_server``
fixture skips when a part is missing, or fails when ``HARNESS_REQUIRE_REAL_PARTS=1``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.conftest import need_part

ADBD_CANDIDATES = ("/usr/lib/android-sdk/platform-tools/adbd", "/usr/sbin/adbd")
ADBD_PORT = 5555
START_TIMEOUT_S = 20.0
INSTALL_HINT = "run .ci/install-adbd.sh as root"


@dataclass(frozen=True)
class AdbSandbox:
    """A running adbd reachable through a running adb server."""

    serial: str  # "10.213.x.y:5555", as `adb devices` lists it
    server_host: str
    server_port: int
    adbd_pid: int
    home: Path  # the adb server's HOME (its RSA key lives here)
    log_dir: Path

    @property
    def adb_server(self) -> str:
        """The profile value ``connection.adb_server`` for this sandbox."""
        return f"{self.server_host}:{self.server_port}"

    def adb(self, *args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        """Run the real adb client against this sandbox's server."""
        return subprocess.run(
            ["adb", "-P", str(self.server_port), *args],
            env=_adb_env(self.home),
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )


def missing_parts() -> list[str]:
    """What this machine lacks to run the real-adbd tests (empty when all is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (adbd and network namespaces need it)")
    if not _adbd_path():
        missing.append("adbd")
    missing += [tool for tool in ("adb", "unshare", "nsenter", "ip") if not shutil.which(tool)]
    return missing


def require_real_parts() -> None:
    """Skip the calling test when parts are missing, or fail under HARNESS_REQUIRE_REAL_PARTS=1."""
    missing = missing_parts()
    need_part(not missing, f"{', '.join(missing)} for the real-adbd tests; {INSTALL_HINT}")


@pytest.fixture(scope="module")
def adb_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdbSandbox]:
    """A real adbd in its own network namespace behind a real adb server (per test module)."""
    require_real_parts()
    with running_sandbox(tmp_path_factory.mktemp("adbd")) as sandbox:
        yield sandbox


@contextlib.contextmanager
def running_sandbox(base: Path) -> Iterator[AdbSandbox]:
    """Start adbd + veth + adb server under ``base``; tear all of it down on exit."""
    home = base / "home"
    home.mkdir(parents=True, exist_ok=True)
    index, host_ip, dev_ip = _free_subnet()
    veth_host, veth_dev = f"odt{index}h", f"odt{index}d"
    procs: list[subprocess.Popen[bytes]] = []
    adbd = None
    try:
        with (base / "adbd.log").open("wb") as log:
            adbd = subprocess.Popen(
                ["unshare", "--net", _adbd_path()],
                cwd=base, env=_device_env(home), stdout=log, stderr=log, start_new_session=True,
            )
        procs.append(adbd)
        _wait_for(lambda: _netns(adbd.pid) not in (None, _netns(os.getpid())), "adbd's network namespace")
        _ip("link", "add", veth_host, "type", "veth", "peer", "name", veth_dev, "netns", str(adbd.pid))
        _ip("addr", "add", f"{host_ip}/30", "dev", veth_host)
        _ip("link", "set", veth_host, "up")
        inside = ["nsenter", "-t", str(adbd.pid), "-n", "ip"]
        for args in (["link", "set", "lo", "up"], ["addr", "add", f"{dev_ip}/30", "dev", veth_dev],
                     ["link", "set", veth_dev, "up"]):
            subprocess.run([*inside, *args], check=True, capture_output=True)
        _wait_for(lambda: _accepts(dev_ip, ADBD_PORT), f"adbd on {dev_ip}:{ADBD_PORT}", adbd, base / "adbd.log")
        port = _free_port()
        with (base / "adb-server.log").open("wb") as log:
            server = subprocess.Popen(
                ["adb", "-P", str(port), "server", "nodaemon"],
                cwd=base, env=_adb_env(home), stdout=log, stderr=log, start_new_session=True,
            )
        procs.append(server)
        _wait_for(lambda: _accepts("127.0.0.1", port), f"adb server on port {port}", server, base / "adb-server.log")
        sandbox = AdbSandbox(f"{dev_ip}:{ADBD_PORT}", "127.0.0.1", port, adbd.pid, home, base)
        out = sandbox.adb("connect", sandbox.serial)
        if "connected" not in out.stdout:
            raise RuntimeError(f"adb connect {sandbox.serial} failed: {out.stdout}{out.stderr}")
        sandbox.adb("-s", sandbox.serial, "wait-for-device", timeout_s=START_TIMEOUT_S)
        yield sandbox
    finally:
        for proc in reversed(procs):
            _stop(proc)
        if adbd is not None:
            _kill_namespace_leftovers(adbd.pid)
        subprocess.run(["ip", "link", "del", veth_host], capture_output=True)


def _adbd_path() -> str:
    return next((p for p in ADBD_CANDIDATES if os.access(p, os.X_OK)), "")


def _adb_env(home: Path) -> dict[str, str]:
    """The adb server's environment: private keys, no emulator scan, no inherited server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANDROID_", "ADB_"))}
    return {**env, "HOME": str(home), "ANDROID_USER_HOME": str(home / ".android"), "ADB_EMU": "0"}


def _device_env(home: Path) -> dict[str, str]:
    """adbd's environment, inherited by every shell it runs (the 'device' side)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    return {"PATH": path, "HOME": str(home), "LANG": "C.UTF-8", "TMPDIR": str(home)}


def _free_subnet() -> tuple[int, str, str]:
    """A random /30 in 10.213.0.0/16 that no route uses: (index, host ip, device ip)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    for _ in range(100):
        index = random.randrange(16384)
        base = f"10.213.{index >> 6}.{(index & 63) * 4}"
        if f"{base}/30" not in routes and f"odt{index}h" not in routes:
            a, b, c, d = (int(x) for x in base.split("."))
            return index, f"{a}.{b}.{c}.{d + 1}", f"{a}.{b}.{c}.{d + 2}"
    raise RuntimeError("no free /30 in 10.213.0.0/16; delete stale odt* veth links (ip link)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _accepts(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _wait_for(ready, what: str, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:  # noqa: ANN001
    """Poll ``ready()`` until true; fail with the process's log if it died or time ran out."""
    end = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < end:
        if ready():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.05)
    detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"timed out waiting for {what}; log:\n{detail}")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _kill_namespace_leftovers(adbd_pid: int) -> None:
    """SIGKILL processes still in adbd's namespace: shells and their children the tests started."""
    ns = _netns(adbd_pid)
    if ns is None or ns == _netns(os.getpid()):
        return
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _netns(int(entry.name)) == ns:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


# ---- a protocol double, only for device states a real adbd cannot be put into ------------


class FakeAdbServer:
    """Speaks just enough of the adb *server* protocol to list devices and their features.

    Used only where a real peer cannot show the behaviour: a device that is *unauthorized*
    (Debian's adbd has no auth prompt: it logs "authentication not required") and an old
    device *without shell protocol v2* (every adbd since Android 7 has it).
    """

    def __init__(self, devices: list[tuple[str, str]], features: str = "shell_v2,cmd") -> None:
        self.devices, self.features = devices, features
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    self._answer(conn)
                except OSError:
                    pass

    def _answer(self, conn: socket.socket) -> None:
        length = int(_recv_exact(conn, 4), 16)
        request = _recv_exact(conn, length).decode()
        if request in ("host:devices", "host:devices-l"):
            reply = "".join(f"{s}\t{st}\n" for s, st in self.devices)
        elif request == "host:version":
            reply = "0029"
        elif request.startswith("host-serial:") and request.endswith(":features"):
            reply = self.features
        else:
            conn.sendall(b"FAIL" + _block(f"fake adb server: unsupported {request!r}"))
            return
        conn.sendall(b"OKAY" + _block(reply))

    def close(self) -> None:
        self.sock.close()


def _block(text: str) -> bytes:
    data = text.encode()
    return f"{len(data):04x}".encode() + data


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise OSError("peer closed")
        data += chunk
    return data


__all__ = ["AdbSandbox", "FakeAdbServer", "adb_sandbox", "missing_parts", "require_real_parts",
           "running_sandbox"]
