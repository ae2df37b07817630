"""Tiny `harness bench` runs on the local device: variants paired in each process, `--isolate`,
and a crashed group process resumed (the smoke suite at its defaults is test_bench_local.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import private_env
from tests.integration.test_bench_local import harness

pytestmark = pytest.mark.integration


def _tiny(tmp_path: Path) -> tuple[str, ...]:
    suite = tmp_path / "tiny.toml"
    suite.write_text('steps = 3\nwarmup = 1\ncheck_steps = 2\nbatch = 2\n[[matrix]]\n'
                     'workloads = ["lstm_text"]\noptimizers = ["nag"]\nkernels = ["foreach", "forloop"]\n')
    return ("--suite", str(suite), "--no-report", "--no-probe", "--out", str(tmp_path))


def _private(tmp_path: Path, **env: str) -> dict[str, str]:
    return private_env(tmp_path, **env)


def test_a_tiny_group_alternates_in_each_process(tmp_path):
    tiny = _tiny(tmp_path)
    paired = harness("bench", *tiny, "--processes", "2", "--aa-replicas", "1", "--run-id", "p",
                     env=_private(tmp_path))
    assert paired.returncode == 0, paired.stderr
    assert "8 cases in 2 agent processes" in paired.stderr
    steps = pd.read_parquet(tmp_path / "p" / "steps.parquet")
    cases = pd.read_parquet(tmp_path / "p" / "cases.parquet")
    assert steps["process"].nunique() == 2 and len(cases) == 8
    assert "lstm_text-nag-foreach-t1-b2-fp32-aa1" in set(cases["case_id"])
    assert (steps.groupby(["process", "round"]).size() == 4).all()  # four variants per round
    assert cases["correct_checked"].all() and cases["correct_ok"].all()
    assert set(cases["correct_from_repeat"]) == {0}  # checked in the first process only


@pytest.mark.slow
def test_isolate_runs_each_variant_in_its_own_process(tmp_path):
    tiny = _tiny(tmp_path)
    isolated = harness("bench", *tiny, "--processes", "1", "--isolate", "--run-id", "i", env=_private(tmp_path))
    assert isolated.returncode == 0, isolated.stderr
    cases = pd.read_parquet(tmp_path / "i" / "cases.parquet")
    assert cases["process"].nunique() == 2 and not cases["paired"].any()
    assert (cases["peak_rss_bytes"] > 0).all()
    assert set(pd.read_parquet(tmp_path / "i" / "steps.parquet")["round"]) == {-1}


@pytest.mark.slow
def test_a_crashed_group_process_keeps_its_steps_and_resume_reruns_only_that_process(tmp_path):
    profile = tmp_path / "faulty.toml"
    profile.write_text(f'name = "faulty"\n[agent]\npython = ["@host"]\nworkdir = "{tmp_path}/work"\n'
                       f'env = {{ ODT_FAULT = "step=2:kill:forloop", ODT_FAULT_ONCE = "{tmp_path}/fired" }}\n'
                       '[energy]\nidle_window_s = 0\n')
    tiny = (*_tiny(tmp_path), "--device", str(profile))
    first = harness("bench", *tiny, "--processes", "2", "--run-id", "r", env=_private(tmp_path))
    assert first.returncode == 1
    run_dir = tmp_path / "r"
    cases = pd.read_parquet(run_dir / "cases.parquet").set_index(["case_id", "repeat"])
    crashed = cases[cases["status"] != "ok"]
    assert len(crashed) == 2 and set(crashed["error_kind"]) == {"crash"}  # both variants of one process
    repeat = crashed.index.get_level_values("repeat")[0]
    steps = pd.read_parquet(run_dir / "steps.parquet")
    kept = steps[steps["repeat"] == repeat]
    assert len(kept) >= 2  # the steps measured before the crash are stored
    resumed = harness("bench", "--resume", str(run_dir), env=_private(tmp_path))
    assert resumed.returncode == 0, resumed.stderr
    assert "run r: 2 cases in 1 agent processes" in resumed.stderr
    cases = pd.read_parquet(run_dir / "cases.parquet")
    assert set(cases["status"]) == {"ok"} and len(cases) == 4
    steps = pd.read_parquet(run_dir / "steps.parquet")
    assert steps["process"].nunique() == 2 and steps["process"].str.endswith(":a2").sum() > 0
    assert (steps.groupby(["case_id", "repeat"]).size() == 4).all()  # each process's steps once
