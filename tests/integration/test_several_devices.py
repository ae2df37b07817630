"""`--device a --device b` measures both at once into one run, one worker per device."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.locks import DeviceLock
from tests.conftest import private_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _profile(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[agent]\npython = ["@host"]\nworkdir = "{tmp_path}/{name}"\n'
                    '[energy]\nidle_window_s = 0\n')
    return path


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = private_env(tmp_path, HOME=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "harness", "bench", "--processes", "1", "--isolate", "--suite", "smoke", "--workload",
                           "bert_tiny", "--optimizer", "nag", "--kernel", "foreach", "--steps", "3",
                           "--warmup", "1", "--check-steps", "0", "--no-probe", "--no-report", "--out", str(tmp_path / "r"),
                           "--run-id", "r", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def test_two_devices_run_into_one_run(tmp_path):
    a, b = _profile(tmp_path, "board-a"), _profile(tmp_path, "board-b")
    proc = _bench(tmp_path, "--device", str(a), "--device", str(b))
    assert proc.returncode == 0, proc.stderr
    cases = pd.read_parquet(tmp_path / "r" / "r" / "cases.parquet")
    assert sorted(cases["device"]) == ["board-a", "board-b"]
    assert set(cases["status"]) == {"ok"}
    assert "board-a: ok" in proc.stderr and "board-b: ok" in proc.stderr


def test_a_busy_device_is_reported_and_the_other_still_runs(tmp_path):
    a, b = _profile(tmp_path, "board-a"), _profile(tmp_path, "board-b")
    with DeviceLock("board-a", "someone-else", tmp_path / "locks"):
        proc = _bench(tmp_path, "--device", str(a), "--device", str(b))
    assert proc.returncode == 1
    assert "board-a: busy" in proc.stderr and "run someone-else" in proc.stderr
    cases = pd.read_parquet(tmp_path / "r" / "r" / "cases.parquet")
    by_device = cases.set_index("device")
    assert sorted(by_device.index) == ["board-a", "board-b"]
    assert by_device.loc["board-b", "status"] == "ok"
    # the busy device's planned case is a row that says why it was not measured
    assert by_device.loc["board-a", "status"] == "not-run"
    assert by_device.loc["board-a", "error_kind"] == "busy"
    assert "someone-else" in by_device.loc["board-a", "error_message"]
