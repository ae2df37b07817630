"""Energy end to end on the local device: an estimated meter, and RAPL from a sysfs tree
that the profile points to, whose counter a thread advances at a known power."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import private_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
WATTS = 20.0


def _bench(tmp_path: Path, energy_toml: str, *, report: bool = False) -> pd.DataFrame:
    profile = tmp_path / "metered.toml"
    profile.write_text(f'name = "metered"\n[agent]\npython = ["@host"]\nworkdir = "{tmp_path}/work"\n'
                       f"[energy]\n{energy_toml}\n")
    env = private_env(tmp_path, HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "harness", "bench", "--processes", "1", "--isolate", "--device", str(profile), "--suite", "smoke",
                           "--workload", "bert_tiny", "--optimizer", "nag", "--kernel", "foreach", "--steps", "8",
                           "--warmup", "1", "--check-steps", "0", "--no-probe", "--out", str(tmp_path / "r"),
                           "--run-id", "r", *(() if report else ("--no-report",))],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return pd.read_parquet(tmp_path / "r" / "r" / "cases.parquet")


def test_the_estimated_cpu_model_is_labelled_estimated(tmp_path):
    cases = _bench(tmp_path, 'meter = "cpu-model"\ncpu_idle_w = 2.0\ncpu_max_w = 12.0\n'
                             'cpu_model_source = "test values"\nidle_window_s = 0.2', report=True)
    row = cases.iloc[0]
    assert row["energy_source"] == "estimated:cpu-model"
    assert row["energy_j"] > 0 and row["energy_per_step_j"] > 0
    assert "energy-estimated" in row["warnings"]
    assert (tmp_path / "r" / "r" / "report.html").read_text().count("estimated") > 0


def test_rapl_from_a_sysfs_tree_measures_the_known_power(tmp_path):
    zone = tmp_path / "sysfs" / "sys" / "class" / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    counter = zone / "energy_uj"
    counter.write_text("1000\n")
    staged = zone / ".energy_uj.new"
    stop = threading.Event()

    def advance() -> None:  # WATTS joules per second of real time, refreshed every ~10 ms
        start = time.monotonic()  # (from the clock, not a tick count: a starved thread on a
        while not stop.wait(0.01):  # loaded host must not slow the simulated power)
            uj = 1000 + int(WATTS * 1e6 * (time.monotonic() - start))
            staged.write_text(f"{uj}\n")
            os.replace(staged, counter)  # sysfs reads are never torn; neither are these

    ticker = threading.Thread(target=advance, daemon=True)
    ticker.start()
    try:
        # the simulated counter is refreshed every ~10 ms by a thread that a loaded host may
        # wake tens of ms late, so its period is stated as 50 ms (a 1 s minimum window, which
        # the agent reaches by running more steps): 8 steps of a fast host's 23 ms read a
        # window of 0.2 s, where one late refresh cost 36 % of the joules
        cases = _bench(tmp_path, f'meter = "rapl"\nroot = "{tmp_path / "sysfs"}"\n'
                                 'idle_window_s = 0.5\nrefresh_s = 0.05')
    finally:
        stop.set()
        ticker.join()
    row = cases.iloc[0]
    assert row["energy_source"] == "measured:rapl"
    window_s = row["energy_window_ns"] / 1e9
    assert window_s >= 1.0  # the steps were extended up to the stated minimum window
    assert row["energy_j"] == pytest.approx(WATTS * window_s, rel=0.35)
    assert row["idle_power_w"] == pytest.approx(WATTS, rel=0.35)
    assert row["energy_per_step_j"] == pytest.approx(
        row["energy_j"] / (8 + row["energy_extended_steps"]))


def test_no_meter_says_why(tmp_path):
    cases = _bench(tmp_path, 'meter = "rapl"\nroot = "/nonexistent"\nidle_window_s = 0')
    row = cases.iloc[0]
    assert row["energy_source"] == "none" and pd.isna(row["energy_j"])
    assert "RAPL" in row["energy_reason"]
