"""The harness process is SIGKILLed mid-case while the agent sits in a long step; the next
``--resume`` kills that agent before measuring, so no agent of the first run is left alive.

The agent hangs through the test-only fault switch (workloads/faults.py, ``hang`` once), over
the local transport and over a real sshd on 127.0.0.1 (tests/integration/sshd.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.register_assert_rewrite("tests.integration.sshd")
from tests.integration.sshd import SshdServer  # noqa: E402

pytest_plugins = ["tests.integration.sshd"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 180.0


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, already dead but not yet waited for, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _profile(tmp_path: Path, transport: str, server: SshdServer | None) -> Path:
    marker = tmp_path / "hang-once"
    lines = ['name = "crashy"', "[connection]", f'transport = "{transport}"']
    if server is not None:
        lines += [f'host = "{server.host}"', f"port = {server.port}", f'user = "{server.user}"',
                  f'identity_file = "{server.client_key}"', f'known_hosts = "{server.known_hosts}"']
    lines += ["[agent]", f'python = ["{sys.executable}"]', f'workdir = "{tmp_path}/work"',
              "case_timeout_s = 900",
              f'env = {{ ODT_FAULT = "step=1:hang", ODT_FAULT_ONCE = "{marker}" }}',
              "[energy]", "idle_window_s = 0"]
    path = tmp_path / "crashy.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _bench_argv(tmp_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "harness", "bench", "--no-report", "--out", str(tmp_path / "results"), *args]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HARNESS_LOCK_DIR": str(tmp_path / "locks")}


def _started_groups(run_dir: Path) -> list[int]:
    path = run_dir / "agents.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["pgid"] for line in path.read_text().splitlines()
            if line.endswith("}") and json.loads(line)["event"] == "started"]


@pytest.mark.parametrize("transport", ["ssh"])  # local: tests/unit/test_leftovers.py
def test_resume_after_a_host_kill_leaves_no_agent_of_the_first_run_alive(
    transport: str, tmp_path: Path, request: pytest.FixtureRequest,
) -> None:
    server = request.getfixturevalue("sshd_server") if transport == "ssh" else None
    profile = _profile(tmp_path, transport, server)
    run_dir = tmp_path / "results" / "crash"
    first = subprocess.Popen(
        _bench_argv(tmp_path, "--device", str(profile), "--suite", "smoke", "--workload", "bert_tiny",
                    "--optimizer", "nag", "--kernel", "forloop", "--no-probe", "--steps", "4", "--processes", "1",
                    "--run-id", "crash"),
        cwd=REPO, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + WAIT_S
        while not (tmp_path / "hang-once").exists():  # the agent is inside its long step now
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < end, "the agent never reached its hanging step"
            time.sleep(0.2)
        groups = _started_groups(run_dir)
        assert groups, "the agent's process group was not recorded before it started"
        first.send_signal(signal.SIGKILL)  # the host dies; nothing of it runs any more
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    time.sleep(1.0)
    left = [g for g in groups if _alive(g)]
    assert left, "the scenario needs an agent that outlives its host"

    resumed = subprocess.run(_bench_argv(tmp_path, "--resume", str(run_dir)), cwd=REPO, env=_env(tmp_path),
                             capture_output=True, text=True, timeout=600)
    try:
        assert resumed.returncode == 0, resumed.stderr
        assert not [g for g in left if _alive(g)], "an agent of the first run is still alive"
        events = [json.loads(line) for line in (run_dir / "agents.jsonl").read_text().splitlines()]
        assert {e["pgid"] for e in events if e["event"] == "reaped"} >= set(left)
        cases = pd.read_parquet(run_dir / "cases.parquet")
        assert list(cases["status"]) == ["ok"]
        assert not (run_dir / "probe.json").exists(), "--resume forgot --no-probe"
        assert not json.loads((tmp_path / "locks" / "crashy.agents.json").read_text())["agents"]
    finally:
        for g in left:
            if _alive(g):
                os.killpg(g, signal.SIGKILL)
