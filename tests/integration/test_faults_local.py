"""Agent faults on the local device: the run goes on, and nothing measured is lost or doubled.

Faults are injected with the agent's test-only switch (workloads/faults.py) through the
profile's [agent].env, so they happen inside the real agent process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.store import read_raw
from tests.conftest import private_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
CASES = ("lstm_text-nag-foreach-t1-b4-fp32", "bert_tiny-nag-foreach-t1-b4-fp32")


def _profile(tmp_path: Path, env: dict[str, str], timeout_s: float = 300) -> Path:
    path = tmp_path / "faulty.toml"
    env_toml = ", ".join(f'{k} = "{v}"' for k, v in env.items())
    path.write_text(f'name = "faulty"\n[agent]\npython = ["@host"]\nworkdir = "{tmp_path}/work"\n'
                    f"case_timeout_s = {timeout_s}\nenv = {{ {env_toml} }}\n[energy]\nidle_window_s = 0\n")
    return path


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text('steps = 6\nwarmup = 1\ncheck_steps = 0\nbatch = 4\n[[matrix]]\n'
                    'workloads = ["lstm_text", "bert_tiny"]\noptimizers = ["nag"]\nkernels = ["foreach"]\n')
    return path


def bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = private_env(tmp_path)
    one = () if "--resume" in args else ("--processes", "1", "--isolate")  # one process per case
    return subprocess.run([sys.executable, "-m", "harness", "bench", *one, "--no-report", "--no-probe",
                           "--out", str(tmp_path / "results"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


def _tables(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_parquet(run_dir / "steps.parquet"), pd.read_parquet(run_dir / "cases.parquet").set_index("case_id")


def _raw_step_indices(run_dir: Path, case_id: str) -> list[int]:
    return [json.loads(e["line"])["index"] for e in read_raw(run_dir / "raw.jsonl")
            if e.get("case_id") == case_id and '"type":"step"' in e.get("line", "")]


FAULTS = [("kill", "crash", "signal 9"), ("segv", "crash", "signal 11"), ("exit", "crash", "exit code 3"),
          ("raise", "InjectedFault", "injected fault at step=4")]


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory) -> Path:
    """One run: bert_tiny at batches 1-4, each with its own fault at step 4 (ODT_FAULT_PLAN),
    every case in its own agent process (a fault-free case beside a fault: the hung and resume
    tests below)."""
    tmp = tmp_path_factory.mktemp("faults")
    plan = tmp / "plan.json"
    plan.write_text(json.dumps({f"bert_tiny-nag-foreach-t1-b{i}-fp32": {"where": "step=4", "action": action}
                                for i, (action, _, _) in enumerate(FAULTS, start=1)}))
    suite = tmp / "faults.toml"
    suite.write_text('steps = 6\nwarmup = 1\ncheck_steps = 0\n[[matrix]]\n'
                     'workloads = ["bert_tiny"]\noptimizers = ["nag"]\nkernels = ["foreach"]\nbatch = [1, 2, 3, 4]\n')
    proc = bench(tmp, "--device", str(_profile(tmp, {"ODT_FAULT_PLAN": str(plan)})), "--suite", str(suite),
                 "--run-id", "r")
    assert proc.returncode == 1, proc.stderr
    return tmp / "results" / "r"


@pytest.mark.parametrize(("batch", "fault"), enumerate(FAULTS, start=1), ids=[f[0] for f in FAULTS])
def test_an_agent_fault_fails_that_case_and_the_run_goes_on(faulty_run, batch, fault):
    _, kind, detail = fault
    case_id = f"bert_tiny-nag-foreach-t1-b{batch}-fp32"
    steps, cases = _tables(faulty_run)
    assert len(cases) == len(FAULTS)  # every case ran, whichever fault came before it
    assert cases.loc[case_id, "status"] == "failed"
    assert cases.loc[case_id, "error_kind"] == kind and detail in cases.loc[case_id, "error_message"]
    # the four steps measured before the fault are stored, once each
    assert sorted(steps[steps["case_id"] == case_id]["index"]) == [0, 1, 2, 3]


def test_a_hung_case_is_killed_at_its_deadline_with_no_orphan(tmp_path):
    profile = _profile(tmp_path, {"ODT_FAULT": "step=2:hang:bert_tiny"}, timeout_s=20)
    proc = bench(tmp_path, "--device", str(profile), "--suite", str(_suite(tmp_path)), "--run-id", "r")
    assert proc.returncode == 1
    _, cases = _tables(tmp_path / "results" / "r")
    assert cases.loc[CASES[1], "error_kind"] == "timeout"
    assert cases.loc[CASES[0], "status"] == "ok"
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "work")], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"agent processes left behind: {left.stdout}"


def test_resume_measures_only_the_failed_case_and_keeps_samples_once(tmp_path):
    profile = _profile(tmp_path, {"ODT_FAULT": "step=3:kill:bert_tiny",
                                  "ODT_FAULT_ONCE": str(tmp_path / "fired")})
    first = bench(tmp_path, "--device", str(profile), "--suite", str(_suite(tmp_path)), "--run-id", "r")
    assert first.returncode == 1
    run_dir = tmp_path / "results" / "r"
    ok_before = _raw_step_indices(run_dir, CASES[0])
    second = bench(tmp_path, "--resume", str(run_dir))
    assert second.returncode == 0, second.stderr
    assert "run r: 1 cases" in second.stderr
    steps, cases = _tables(run_dir)
    assert set(cases["status"]) == {"ok"}
    assert cases.loc[CASES[1], "attempts"] == 2
    assert _raw_step_indices(run_dir, CASES[0]) == ok_before  # not measured again
    for case_id in CASES:
        assert sorted(steps[steps["case_id"] == case_id]["index"]) == list(range(7))


def test_resume_refuses_new_filters(tmp_path):
    proc = bench(tmp_path, "--resume", str(tmp_path), "--steps", "3")
    assert proc.returncode == 2 and "drop --steps" in proc.stderr


def test_sigterm_to_the_host_stops_its_agents_and_keeps_every_line(tmp_path):
    """A CI job cancelled or timed out sends SIGTERM: the host takes the Ctrl-C path (exit
    143), so no agent is left running on the device and the steps received so far stay."""
    profile = _profile(tmp_path, {"ODT_FAULT": "step=3:hang:bert_tiny"})
    env = private_env(tmp_path)
    host = subprocess.Popen(
        [sys.executable, "-m", "harness", "bench", "--processes", "1", "--no-report", "--no-probe",
         "--out", str(tmp_path / "results"), "--device", str(profile), "--suite",
         str(_suite(tmp_path)), "--workload", "bert_tiny", "--run-id", "r"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    raw = tmp_path / "results" / "r" / "raw.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and host.poll() is None:
        if raw.is_file() and len(_raw_step_indices(tmp_path / "results" / "r", CASES[1])) == 3:
            break  # steps 0-2 are in; the agent now hangs before step 3
        time.sleep(0.2)
    assert host.poll() is None, host.communicate()
    host.terminate()
    _, stderr = host.communicate(timeout=60)
    assert host.returncode == 143, stderr
    assert "terminated (SIGTERM)" in stderr
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", str(tmp_path / "work")], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"agent processes left behind: {left.stdout}"
    assert _raw_step_indices(tmp_path / "results" / "r", CASES[1]) == [0, 1, 2]
