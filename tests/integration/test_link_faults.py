"""Faults on the link and on the device, through the real parts: a real sshd, a real adbd.

Each test runs ``python -m harness bench`` as a user would, breaks something while a case is
in its step loop (the sshd process serving the session, adbd itself, the agent on the
device), then checks what the run stored: the case re-run on a new connection or marked
failed/unreachable, and every sample of the attempt the tables show stored exactly once.
The "device" is this machine behind sshd or adbd, so server-side checks look at it directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import pytest

from harness.store import read_raw

pytest.register_assert_rewrite("tests.integration.sshd")
from tests.integration.adbd import AdbSandbox, require_real_parts, running_sandbox  # noqa: E402
from tests.integration.sshd import SshdServer  # noqa: E402

pytest_plugins = ["tests.integration.sshd"]  # the sshd_server fixture
pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SLOW = "bert_tiny-nag-foreach-t1-b4-fp32"  # 13-30 ms a step here: 120 steps outlast the fault by seconds
FAST = "lstm_text-nag-foreach-t1-b4-fp32"
STEPS = 120
WAIT_S = 300.0


def write_suite(tmp_path: Path, steps: int = STEPS) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(f"steps = {steps}\nwarmup = 0\ncheck_steps = 0\nbatch = 4\n[[matrix]]\n"
                    'workloads = ["lstm_text", "bert_tiny"]\noptimizers = ["nag"]\nkernels = ["foreach"]\n')
    return path


def write_profile(path: Path, connection: str, workdir: Path, env: dict[str, str] | None = None) -> Path:
    """A device profile: ``connection`` is the body of its [connection] section."""
    env_toml = ", ".join(f'{k} = "{v}"' for k, v in (env or {}).items())
    path.write_text(f'name = "{path.stem}"\n[connection]\n{connection}[agent]\n'
                    f'python = ["{sys.executable}"]\nworkdir = "{workdir}"\ncase_timeout_s = 120\n'
                    f"env = {{ {env_toml} }}\n[energy]\nidle_window_s = 0\n")
    return path


def ssh_connection(server: SshdServer) -> str:
    return (f'transport = "ssh"\nhost = "127.0.0.1"\nport = {server.port}\nuser = "{server.user}"\n'
            f'identity_file = "{server.client_key}"\nknown_hosts = "{server.known_hosts}"\n')


def start_bench(tmp_path: Path, profile: Path, suite: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "HARNESS_LOCK_DIR": str(tmp_path / "locks")}
    return subprocess.Popen(
        [sys.executable, "-m", "harness", "bench", "--processes", "1", "--isolate", "--no-report", "--no-probe", "--device", str(profile),
         "--suite", str(suite), "--out", str(tmp_path / "results"), "--run-id", "r"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def step_lines(run_dir: Path, case_id: str, attempt: int | None = None) -> list[dict]:
    """The step records raw.jsonl holds for a case (one attempt, or all)."""
    path = run_dir / "raw.jsonl"
    if not path.exists():
        return []
    return [json.loads(e["line"]) for e in read_raw(path)
            if e.get("case_id") == case_id and '"type":"step"' in e.get("line", "")
            and (attempt is None or e.get("attempt") == attempt)]


def when_steps_seen(run_dir: Path, case_id: str, count: int, action: Callable[[], None]) -> threading.Thread:
    """Call ``action`` once attempt 1 of ``case_id`` has stored ``count`` steps (polled)."""
    def watch() -> None:
        end = time.monotonic() + WAIT_S
        while time.monotonic() < end:
            if len(step_lines(run_dir, case_id, attempt=1)) >= count:
                action()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def agent_pids(workdir: Path) -> list[int]:
    """Agent processes started from this test's work directory (``... <workdir>/agent-*.pyz run``)."""
    found = subprocess.run(["pgrep", "-f", f"{workdir}/agent-"], capture_output=True, text=True).stdout
    return [int(p) for p in found.split() if _argv0(int(p)) == sys.executable]  # not a wrapping shell


def _argv0(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except FileNotFoundError:
        return ""


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def gone(pid: int, wait_s: float = 10.0) -> bool:
    """Whether ``pid`` has exited (a zombie counts as gone), polling up to ``wait_s``."""
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        _, stderr = proc.communicate(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"the bench run did not end within {WAIT_S} s: {stderr[-2000:]}")
    return proc.returncode, stderr


def bench_with_fault(tmp_path: Path, profile: Path, fault: Callable[[], None]) -> tuple[int, str]:
    """Run the two-case suite on ``profile``; call ``fault`` once the slow case has 5 steps stored."""
    proc = start_bench(tmp_path, profile, write_suite(tmp_path))
    watcher = when_steps_seen(tmp_path / "results" / "r", SLOW, 5, fault)
    code, stderr = finish(proc)
    watcher.join(timeout=1)
    return code, stderr


def tables(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return (pd.read_parquet(run_dir / "steps.parquet"),
            pd.read_parquet(run_dir / "cases.parquet").set_index("case_id"))


def table_steps(steps: pd.DataFrame, case_id: str) -> list[tuple[int, int]]:
    rows = steps[steps["case_id"] == case_id]
    return sorted(zip(rows["index"], rows["step_ns"], strict=True))


def raw_steps(run_dir: Path, case_id: str, attempt: int) -> list[tuple[int, int]]:
    return sorted((s["index"], s["step_ns"]) for s in step_lines(run_dir, case_id, attempt))


# -- ssh: the sshd process serving the session dies mid-case ---------------------------------


@pytest.fixture(scope="module")
def ssh_link_drop(sshd_server: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One bench run over ssh whose session's sshd is SIGKILLed while the slow case runs."""
    tmp = tmp_path_factory.mktemp("ssh-link-drop")
    workdir = tmp / "device"
    profile = write_profile(tmp / "ssh-drop.toml", ssh_connection(sshd_server), workdir)
    run_dir = tmp / "results" / "r"
    killed: dict[str, int] = {}

    def kill_the_session() -> None:
        (agent,) = agent_pids(workdir)
        killed["agent"], killed["sshd"] = agent, parent_of(agent)
        killed["steps_before"] = len(step_lines(run_dir, SLOW, attempt=1))
        os.kill(killed["sshd"], signal.SIGKILL)

    code, stderr = bench_with_fault(tmp, profile, kill_the_session)
    return {"run_dir": run_dir, "code": code, "stderr": stderr, "killed": killed}


def test_ssh_session_killed_mid_case_is_rerun_and_the_run_completes(ssh_link_drop: dict) -> None:
    assert "sshd" in ssh_link_drop["killed"], "the slow case never reached its step loop"
    assert ssh_link_drop["code"] == 0, ssh_link_drop["stderr"][-3000:]
    _, cases = tables(ssh_link_drop["run_dir"])
    assert set(cases["status"]) == {"ok"}
    assert cases.loc[SLOW, "attempts"] == 2 and cases.loc[FAST, "attempts"] == 1


def test_ssh_session_killed_tables_hold_the_finished_attempt_once(ssh_link_drop: dict) -> None:
    run_dir = ssh_link_drop["run_dir"]
    steps, _ = tables(run_dir)
    assert table_steps(steps, SLOW) == raw_steps(run_dir, SLOW, attempt=2)
    assert [i for i, _ in table_steps(steps, SLOW)] == list(range(STEPS))


def test_ssh_session_killed_earlier_samples_stay_in_raw_only(ssh_link_drop: dict) -> None:
    run_dir = ssh_link_drop["run_dir"]
    steps, _ = tables(run_dir)
    before = raw_steps(run_dir, SLOW, attempt=1)
    assert len(before) >= ssh_link_drop["killed"]["steps_before"] >= 5
    assert not set(before) & set(table_steps(steps, SLOW))
    events = [e for e in read_raw(run_dir / "raw.jsonl") if e.get("event") == "attempt_end"
              and e["case_id"] == SLOW and e["attempt"] == 1]
    assert [e["status"] for e in events] == ["transient"]
    assert "dropped while running" in events[0]["error_message"]


def test_ssh_session_killed_leaves_no_process_of_that_session(ssh_link_drop: dict) -> None:
    killed = ssh_link_drop["killed"]
    assert gone(killed["sshd"]), f"sshd session process {killed['sshd']} still runs"
    assert gone(killed["agent"]), f"the killed session's agent {killed['agent']} still runs on the device"


@pytest.fixture(scope="module")
def ssh_drop_while_hung(sshd_server: SshdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The slow case hangs after 5 steps (first attempt only); its sshd session is then killed."""
    tmp = tmp_path_factory.mktemp("ssh-drop-hung")
    workdir = tmp / "device"
    env = {"ODT_FAULT": "step=5:hang:bert_tiny", "ODT_FAULT_ONCE": str(tmp / "fired")}
    profile = write_profile(tmp / "ssh-hung.toml", ssh_connection(sshd_server), workdir, env)
    killed: dict[str, int] = {}

    def kill_the_session() -> None:
        (agent,) = agent_pids(workdir)
        killed["agent"], killed["sshd"] = agent, parent_of(agent)
        os.kill(killed["sshd"], signal.SIGKILL)

    code, stderr = bench_with_fault(tmp, profile, kill_the_session)
    yield {"run_dir": tmp / "results" / "r", "code": code, "stderr": stderr, "killed": killed}
    if "agent" in killed and not gone(killed["agent"], wait_s=0):  # clean up as the device's owner would
        with contextlib.suppress(ProcessLookupError):
            os.kill(killed["agent"], signal.SIGKILL)


def test_ssh_session_killed_while_the_agent_hangs_is_rerun_once(ssh_drop_while_hung: dict) -> None:
    assert ssh_drop_while_hung["code"] == 0, ssh_drop_while_hung["stderr"][-3000:]
    run_dir = ssh_drop_while_hung["run_dir"]
    steps, cases = tables(run_dir)
    assert cases.loc[SLOW, "attempts"] == 2
    assert [i for i, _ in raw_steps(run_dir, SLOW, attempt=1)] == [0, 1, 2, 3, 4]
    assert table_steps(steps, SLOW) == raw_steps(run_dir, SLOW, attempt=2)


def test_ssh_session_killed_while_the_agent_hangs_leaves_no_agent_behind(ssh_drop_while_hung: dict) -> None:
    assert gone(ssh_drop_while_hung["killed"]["agent"], wait_s=5.0), ssh_drop_while_hung["stderr"][-3000:]


# -- ssh: the agent is SIGKILLed on the device mid-case --------------------------------------


def test_agent_sigkilled_on_the_device_fails_that_case_and_the_run_goes_on(
    sshd_server: SshdServer, tmp_path: Path
) -> None:
    workdir = tmp_path / "device"
    profile = write_profile(tmp_path / "ssh-kill.toml", ssh_connection(sshd_server), workdir)
    run_dir = tmp_path / "results" / "r"
    killed: list[int] = []

    def kill_the_agent() -> None:
        (agent,) = agent_pids(workdir)
        killed.append(agent)
        os.kill(agent, signal.SIGKILL)

    code, stderr = bench_with_fault(tmp_path, profile, kill_the_agent)
    assert killed, "the slow case never reached its step loop"
    assert code == 1, stderr[-3000:]  # a failed case fails the run, after every case ran
    steps, cases = tables(run_dir)
    assert cases.loc[FAST, "status"] == "ok"
    assert (cases.loc[SLOW, "status"], cases.loc[SLOW, "error_kind"]) == ("failed", "crash")
    assert "died (a signal" in cases.loc[SLOW, "error_message"], cases.loc[SLOW, "error_message"]
    assert cases.loc[SLOW, "attempts"] == 1  # an agent crash is not retried
    assert table_steps(steps, SLOW) == raw_steps(run_dir, SLOW, attempt=1)


# -- adb: adbd dies mid-case and stays gone ---------------------------------------------------


def adb_connection(sandbox: AdbSandbox) -> str:
    return f'transport = "adb"\nserial = "{sandbox.serial}"\nadb_server = "{sandbox.adb_server}"\n'


@pytest.fixture(scope="module")
def adbd_killed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One bench run over adb whose adbd is SIGKILLed (and never comes back) mid-case."""
    require_real_parts()
    tmp = tmp_path_factory.mktemp("adbd-killed")
    workdir = tmp / "device"
    run_dir = tmp / "results" / "r"
    killed: dict[str, int] = {}
    with running_sandbox(tmp / "sandbox") as sandbox:  # its own adbd: this test kills it
        profile = write_profile(tmp / "adb-drop.toml", adb_connection(sandbox), workdir)

        def kill_adbd() -> None:
            (agent,) = agent_pids(workdir)
            killed["agent"], killed["adbd"] = agent, sandbox.adbd_pid
            os.kill(sandbox.adbd_pid, signal.SIGKILL)

        code, stderr = bench_with_fault(tmp, profile, kill_adbd)
    return {"run_dir": run_dir, "code": code, "stderr": stderr, "killed": killed}


def test_adbd_killed_mid_case_marks_the_device_unreachable_and_the_run_ends(adbd_killed: dict) -> None:
    assert "adbd" in adbd_killed["killed"], "the slow case never reached its step loop"
    assert adbd_killed["code"] == 1, adbd_killed["stderr"][-3000:]
    assert "unreachable" in adbd_killed["stderr"] and "stayed unreachable after 3 attempts" in adbd_killed["stderr"]
    manifest = json.loads((adbd_killed["run_dir"] / "manifest.json").read_text())
    (outcome,) = manifest["device_outcomes"]
    assert outcome["status"] == "unreachable" and "adb-drop stayed unreachable" in outcome["message"]


def test_adbd_killed_mid_case_keeps_the_samples_measured_before_it_once(adbd_killed: dict) -> None:
    run_dir = adbd_killed["run_dir"]
    steps, cases = tables(run_dir)
    before = raw_steps(run_dir, SLOW, attempt=1)
    assert len(before) >= 5
    assert table_steps(steps, SLOW) == before
    assert cases.loc[SLOW, "status"] == "transient"


def test_adbd_killed_mid_case_leaves_no_agent_behind(adbd_killed: dict) -> None:
    assert gone(adbd_killed["killed"]["agent"]), "the agent of the dead adbd still runs"
