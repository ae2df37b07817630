"""A full disk, on the host (the results directory) and on the device (the work directory).

Each side is a small tmpfs mounted for the test (root only; without root or mount(8) the
tests skip, or fail under ``HARNESS_REQUIRE_REAL_PARTS=1``) and filled with a filler file,
so the real kernel says ENOSPC at the real write.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness.store import build_tables, read_raw
from tests.conftest import need_part

pytest.register_assert_rewrite("tests.integration.sshd")
from tests.integration.sshd import SshdServer  # noqa: E402

pytest_plugins = ["tests.integration.sshd"]  # the sshd_server fixture
pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SUITE = ("steps = 400\nwarmup = 0\ncheck_steps = 0\nbatch = 4\n[[matrix]]\n"
         'workloads = ["lstm_text", "bert_tiny"]\noptimizers = ["nag"]\nkernels = ["foreach"]\n')


@contextlib.contextmanager
def small_tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of ``size_bytes`` mounted at ``path``, unmounted on exit."""
    need_part(os.geteuid() == 0 and shutil.which("mount") is not None, "root and mount(8) for a test tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "odt-disk-full",
                              str(path)], capture_output=True, text=True)
    need_part(mounted.returncode == 0, f"a mountable tmpfs (mount said: {mounted.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(mount: Path, leave_bytes: int = 0) -> None:
    """Fill the filesystem at ``mount`` with a filler file, leaving about ``leave_bytes`` free."""
    with open(mount / "filler", "wb") as f:
        chunk = b"\0" * 4096
        try:
            while True:
                stat = os.statvfs(mount)
                if stat.f_bavail * stat.f_frsize <= leave_bytes:
                    break
                f.write(chunk)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def bench(tmp_path: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_LOCK_DIR": str(tmp_path / "locks")}
    one = () if "--resume" in extra else ("--processes", "1", "--isolate")  # one process per case
    return subprocess.run(
        [sys.executable, "-m", "harness", "bench", *one, "--no-report", "--no-probe", "--out", str(out), *extra], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def local_profile(tmp_path: Path, workdir: Path) -> Path:
    path = tmp_path / "disk-full-local.toml"
    path.write_text(f'name = "disk-full-local"\n[agent]\npython = ["{sys.executable}"]\nworkdir = "{workdir}"\n'
                    '[energy]\nidle_window_s = 0\n')
    return path


# -- host: the results directory fills up mid-run ----------------------------------------------


@pytest.fixture(scope="module")
def host_full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A run whose results directory (a 1 MiB tmpfs with 48 KiB left) fills up mid-case."""
    tmp = tmp_path_factory.mktemp("host-full")
    suite = tmp / "suite.toml"
    suite.write_text(SUITE)
    with small_tmpfs(tmp / "results", 1 << 20) as out:
        fill(out, leave_bytes=48 << 10)
        proc = bench(tmp, out, "--device", str(local_profile(tmp, tmp / "work")), "--suite", str(suite), "--run-id", "r")
        yield {"proc": proc, "run_dir": out / "r", "out": out, "tmp": tmp}


def test_a_full_results_disk_stops_the_run_with_a_clear_error(host_full: dict) -> None:
    proc = host_full["proc"]
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "no space left" in proc.stderr.lower() and str(host_full["run_dir"]) in proc.stderr, proc.stderr[-3000:]


def test_a_full_results_disk_leaves_the_run_not_marked_finished(host_full: dict) -> None:
    manifest = json.loads((host_full["run_dir"] / "manifest.json").read_text())
    assert manifest["status"] != "finished"


def test_a_full_results_disk_leaves_a_raw_log_the_tables_rebuild_from(host_full: dict) -> None:
    run_dir = host_full["run_dir"]
    envelopes = list(read_raw(run_dir / "raw.jsonl"))
    steps, cases = build_tables(run_dir)
    stored = [e for e in envelopes if '"type":"step"' in e.get("line", "")]
    assert len(stored) > 0 and len(steps) == len(stored)
    assert len(cases) >= 1


def test_after_freeing_space_resume_finishes_the_run_with_every_sample_once(host_full: dict) -> None:
    (host_full["out"] / "filler").unlink()
    proc = bench(host_full["tmp"], host_full["out"], "--resume", str(host_full["run_dir"]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = host_full["run_dir"]
    assert json.loads((run_dir / "manifest.json").read_text())["status"] == "finished"
    steps, cases = build_tables(run_dir)
    assert set(cases["status"]) == {"ok"}
    for case_id in cases["case_id"]:
        assert sorted(steps[steps["case_id"] == case_id]["index"]) == list(range(400))


# -- device: the work directory is on a full filesystem ----------------------------------------


def bench_on_a_full_device(tmp_path: Path, profile: Callable[[Path], Path]) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """Run two short cases with the device's work directory on a full tmpfs."""
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE.replace("steps = 400", "steps = 2"))
    with small_tmpfs(tmp_path / "device", 256 << 10) as device:
        fill(device)
        proc = bench(tmp_path, tmp_path / "results", "--device", str(profile(device / "work")),
                     "--suite", str(suite), "--run-id", "r")
    return device, proc


def test_a_full_work_directory_on_the_device_fails_deploy_saying_out_of_space(tmp_path: Path) -> None:
    device, proc = bench_on_a_full_device(tmp_path, lambda workdir: local_profile(tmp_path, workdir))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "out of space" in proc.stderr and str(device / "work") in proc.stderr, proc.stderr[-3000:]


def test_a_full_work_directory_over_ssh_fails_deploy_saying_out_of_space(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    def ssh_profile(workdir: Path) -> Path:
        path = tmp_path / "disk-full-ssh.toml"
        path.write_text(
            f'name = "disk-full-ssh"\n[connection]\ntransport = "ssh"\nhost = "127.0.0.1"\n'
            f'port = {sshd_server.port}\nuser = "{sshd_server.user}"\n'
            f'identity_file = "{sshd_server.client_key}"\nknown_hosts = "{sshd_server.known_hosts}"\n'
            f'[agent]\npython = ["{sys.executable}"]\nworkdir = "{workdir}"\n')
        return path

    device, proc = bench_on_a_full_device(tmp_path, ssh_profile)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "disk-full-ssh is out of space" in proc.stderr and str(device / "work") in proc.stderr, proc.stderr[-3000:]
    assert "stayed unreachable" not in proc.stderr  # a full disk is not a dropped link: not retried
