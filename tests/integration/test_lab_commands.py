"""The device lab's commands end to end on this machine, kept tiny: `harness calibrate` writes
its per-case table, `harness ab` compares two configurations and two revisions into runs a/
and b/ with a gate summary, and `harness merge` combines runs of two devices into one run
that `harness gate` and `harness report` read. Rates are not asserted (that is measurement,
not behaviour): see docs/device-lab.md for measured numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import private_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TINY = ("--suite", "smoke", "--workload", "bert_tiny", "--optimizer", "nag", "--steps", "6", "--warmup", "1",
        "--check-steps", "0")


def harness(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = private_env(tmp, HOME=str(tmp), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("calibrate")
    proc = harness(tmp, "calibrate", *TINY, "--kernel", "foreach", "--trials", "1", "--processes",
                   "1", "--aa-replicas", "1", "--out", str(tmp / "results"), "--run-id", "cal")
    assert proc.returncode == 0, proc.stderr
    assert "bert_tiny-nag-foreach-t1-b8-fp32" in proc.stdout and "run level: 1 A/A trials" in proc.stdout
    return tmp / "results" / "cal"


def test_calibrate_runs_trials_plus_one_blocks_of_processes_with_twins(calibration):
    cases = pd.read_parquet(calibration / "cases.parquet")
    assert sorted(set(cases["repeat"])) == [0, 1]  # 2 blocks × 1 process
    assert set(cases["case_id"]) == {"bert_tiny-nag-foreach-t1-b8-fp32",
                                     "bert_tiny-nag-foreach-t1-b8-fp32-aa1"}
    assert cases.groupby("repeat")["process"].nunique().eq(1).all()  # twins share a process


def test_calibrate_stores_variance_components_and_rates_per_case(calibration):
    table = pd.read_parquet(calibration / "calibration.parquet")
    assert len(table) == 2
    row = table.iloc[0]
    assert (row["aa_trials"], row["processes"], row["steps_per_repeat"]) == (1, 2, 6)
    for column in ("sigma_p", "sigma_s", "update_sigma_p", "false_alarm_rate", "detection_rate",
                   "wall_s"):
        assert column in table.columns
    assert row["sigma_s"] > 0 and row["wall_s"] > 0


def test_calibration_json_holds_the_run_level_rates_and_the_device_file_the_components(
        calibration):
    data = json.loads((calibration / "calibration.json").read_text())
    level = data["run_level"]
    assert level["trials"] == 1 and level["slowdown"] == 0.10 and level["paired_trials"] == 2
    assert 0.0 <= level["false_alarm_rate"] <= 1.0 and len(data["load_avg_before"]) == 3
    device = json.loads((calibration.parent / "calibration" / "local.json").read_text())
    assert device["cases"]["bert_tiny-nag-foreach-t1-b8-fp32"]["step_time"]["processes"] == 2
    assert device["process_cost_s"] > 0 and device["step_cost_s"] > 0


def test_a_stored_calibration_run_can_be_analysed_again_without_measuring(calibration, tmp_path):
    (calibration / "calibration.parquet").unlink()
    proc = harness(tmp_path, "calibrate", "--from", str(calibration))
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(calibration / "calibration.parquet")) == 2


@pytest.fixture(scope="module")
def ab_configs(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("ab")
    proc = harness(tmp, "ab", *TINY, "--a-args", "--kernel forloop", "--b-args", "--kernel foreach",
                   "--rounds", "2", "--out", str(tmp / "results"), "--run-id", "cfg")
    return tmp / "results" / "cfg", proc


def test_ab_of_two_configurations_writes_runs_a_and_b_interleaved(ab_configs):
    parent, proc = ab_configs
    assert proc.returncode in (0, 1), proc.stderr  # 1 would be a regression: a measured verdict
    a = pd.read_parquet(parent / "a" / "cases.parquet")
    b = pd.read_parquet(parent / "b" / "cases.parquet")
    assert set(a["kernel"]) == {"forloop"} and set(b["kernel"]) == {"foreach"}
    assert sorted(a["repeat"]) == sorted(b["repeat"]) == [0, 1]
    order = json.loads((parent / "a" / "manifest.json").read_text())["ab"]
    assert order["pairs"] == [["bert_tiny-nag-forloop-t1-b8-fp32", "bert_tiny-nag-foreach-t1-b8-fp32"]]


def test_ab_runs_rounds_in_abba_order(ab_configs):
    parent, _ = ab_configs
    ends = []
    for side in ("a", "b"):
        for line in (parent / side / "raw.jsonl").read_text().splitlines():
            env = json.loads(line)
            if env.get("event") == "attempt_end":
                ends.append((env["host_ns"], side))
    assert [side for _, side in sorted(ends)] == ["a", "b", "b", "a"]


def test_ab_gates_b_against_a_under_paired_labels_and_writes_one_report(ab_configs):
    parent, _ = ab_configs
    summary = (parent / "summary.md").read_text()
    assert "bert_tiny-nag-forloop-t1-b8-fp32 vs bert_tiny-nag-foreach-t1-b8-fp32" in summary
    assert (parent / "junit.xml").is_file() and (parent / "report.html").is_file()


def test_ab_of_two_revisions_builds_each_agent_from_git(tmp_path):
    proc = harness(tmp_path, "ab", *TINY, "--kernel", "foreach", "--a", "HEAD", "--b", "HEAD",
                   "--rounds", "1", "--out", str(tmp_path / "results"), "--run-id", "rev", "--no-report")
    assert proc.returncode in (0, 1), proc.stderr
    sides = [json.loads((tmp_path / "results" / "rev" / s / "manifest.json").read_text())["ab"] for s in "ab"]
    assert [s["rev"] for s in sides] == ["HEAD", "HEAD"]
    assert sides[0]["bundle"] == sides[1]["bundle"]  # one revision, one content hash


def test_ab_refuses_a_revision_that_git_does_not_know(tmp_path):
    proc = harness(tmp_path, "ab", *TINY, "--kernel", "foreach", "--a", "no-such-rev", "--b", "HEAD",
                   "--out", str(tmp_path / "results"))
    assert proc.returncode == 2
    assert "'no-such-rev' is not a git revision" in proc.stderr


def _second_local_profile(tmp: Path) -> Path:
    text = (REPO / "devices" / "local.toml").read_text().replace('name = "local"', 'name = "local2"')
    path = tmp / "local2.toml"
    path.write_text(text)
    return path


def test_merge_of_two_devices_runs_is_one_run_that_gate_and_report_read(tmp_path):
    results = tmp_path / "results"
    for device, run_id in (("local", "one"), (str(_second_local_profile(tmp_path)), "two")):
        proc = harness(tmp_path, "bench", "--processes", "1", "--isolate", *TINY, "--no-probe", "--kernel", "foreach", "--device", device, "--out",
                       str(results), "--run-id", run_id, "--no-report", "--no-probe")
        assert proc.returncode == 0, proc.stderr
    merged = results / "merged"
    proc = harness(tmp_path, "merge", str(results / "one"), str(results / "two"), "--out", str(merged))
    assert proc.returncode == 0, proc.stderr
    cases = pd.read_parquet(merged / "cases.parquet")
    assert sorted(cases["device"]) == ["local", "local2"]
    assert (merged / "report.html").is_file()
    gate = harness(tmp_path, "gate", "--baseline", str(merged), "--candidate", str(merged),
                   "--rerun-budget", "0")
    assert gate.returncode == 0, gate.stderr
    report = harness(tmp_path, "report", str(merged), "--format", "md")
    assert report.returncode == 0, report.stderr
