"""Files over SSH when the server offers no SFTP: OpenSSH with the ``Subsystem sftp`` line
removed (as on minimal boards), reached with the real client library.

The fallback copies files over the exec channel and checks them with whichever of
sha256sum, md5sum and cksum the device has.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pandas as pd
import pytest

from harness.errors import DeviceError
from harness.transports import sshfiles
from harness.transports.ssh import SSHConnection
from harness.transports.sshfiles import ChecksumTool, ExecFiles, local_digest, posix_cksum

pytest.register_assert_rewrite("tests.integration.sshd")
from tests.conftest import account_home  # noqa: E402
from tests.integration.sshd import SshdServer  # noqa: E402
from tests.integration.test_ssh import PUSHED, harness_bench, write_loopback_profile  # noqa: E402

pytest_plugins = ["tests.integration.sshd"]
pytestmark = pytest.mark.integration


@pytest.fixture()
def plain_conn(sshd_without_sftp: SshdServer) -> Iterator[SSHConnection]:
    conn = sshd_without_sftp.connect()
    try:
        yield conn
    finally:
        conn.close()


def test_posix_cksum_agrees_with_the_cksum_command() -> None:
    for data in (b"", b"a", b"hello world\n", os.urandom(70_000)):
        out = subprocess.run(["cksum"], input=data, capture_output=True, check=True).stdout.split()
        assert posix_cksum(data) == int(out[0])


def test_a_server_without_sftp_moves_files_over_the_exec_channel(plain_conn: SSHConnection, tmp_path: Path) -> None:
    assert plain_conn.file_transfer == "exec"
    local = tmp_path / "payload.bin"
    local.write_bytes(os.urandom(300_000) + b"\n\x00 '$(touch /tmp/x)' \n")
    remote = tmp_path / "device" / "a b" / "payload.bin"
    assert plain_conn.push(local, str(remote)) == local.stat().st_size
    assert remote.read_bytes() == local.read_bytes()
    assert not list(remote.parent.glob("*.part-*"))
    back = tmp_path / "back" / "payload.bin"
    plain_conn.pull(str(remote), back)
    assert back.read_bytes() == local.read_bytes()


def test_push_over_exec_replaces_an_existing_file(plain_conn: SSHConnection, tmp_path: Path) -> None:
    remote = tmp_path / "dest.txt"
    remote.write_text("old content that is longer")
    local = tmp_path / "new.txt"
    local.write_text("new")
    plain_conn.push(local, str(remote))
    assert remote.read_text() == "new"


def test_read_text_exists_and_home_work_without_sftp(plain_conn: SSHConnection, tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("42\n")
    assert plain_conn.read_text(str(path)) == "42\n"
    assert plain_conn.exists(str(path))
    assert not plain_conn.exists(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError):
        plain_conn.read_text(str(tmp_path / "absent"))
    name = f"odt-home-{uuid.uuid4().hex[:8]}"
    home_file = account_home() / name
    home_file.write_text("at home")
    try:
        assert plain_conn.read_text(f"~/{name}") == "at home"
    finally:
        home_file.unlink()


@pytest.mark.parametrize("tool", ["sha256sum", "md5sum", "cksum"])
def test_each_checksum_tool_verifies_a_push(sshd_without_sftp: SshdServer, tool: str, tmp_path: Path) -> None:
    with sshd_without_sftp.connect() as conn:
        checksum = ChecksumTool(conn._client)
        checksum._tool = tool  # as on a device that has only this one
        files = ExecFiles(conn._client, checksum)
        local = tmp_path / "x.bin"
        local.write_bytes(os.urandom(10_000))
        files.push(local, str(tmp_path / "out" / "x.bin"))
        assert (tmp_path / "out" / "x.bin").read_bytes() == local.read_bytes()
        with pytest.raises(DeviceError, match=f"{tool}.*expected {local_digest(tool, b'other')!r}"):
            checksum.verify(b"other", str(tmp_path / "out" / "x.bin"), "checking")


def test_no_sftp_and_no_usable_exec_channel_is_a_device_error_naming_both(
    sshd_without_sftp: SshdServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = sshfiles.exec_bytes

    def without_coreutils(client: object, command: str, **kwargs: object) -> sshfiles.ExecResult:
        if command.startswith("command -v cat"):
            return sshfiles.ExecResult(127, b"", b"sh: command: not found")
        return real(client, command, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sshfiles, "exec_bytes", without_coreutils)
    with sshd_without_sftp.connect() as conn:
        with pytest.raises(DeviceError, match="no SFTP subsystem.*cat, mkdir and mv.*Subsystem sftp"):
            conn.exists("/")


@pytest.mark.slow
def test_a_smoke_case_runs_end_to_end_over_a_server_without_sftp(
    sshd_without_sftp: SshdServer, tmp_path: Path,
) -> None:
    profile = write_loopback_profile(tmp_path / "nosftp.toml", sshd_without_sftp, tmp_path / "device")
    proc = harness_bench(str(profile), tmp_path / "results", "nosftp", tmp_path / "locks")
    assert proc.returncode == 0, proc.stderr
    assert int(PUSHED.search(proc.stderr).group(1)) > 0
    cases = pd.read_parquet(tmp_path / "results" / "nosftp" / "cases.parquet")
    assert len(cases) == 1 and set(cases["status"]) == {"ok"}
    assert len(pd.read_parquet(tmp_path / "results" / "nosftp" / "steps.parquet")) > 0
