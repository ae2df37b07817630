"""The regression gate end to end: a real run against its own baseline passes; a run with an
injected slowdown is a regression (exit 1) with its Markdown summary and JUnit XML written.
Each case runs in three agent processes a side: the gate's unit of replication is the process,
and with two a side (Welch, about one degree of freedom) even this 4x slowdown stays
inconclusive."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import private_env

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FILTERS = ("--suite", "smoke", "--workload", "bert_tiny", "--optimizer", "nag", "--kernel", "foreach",
           "--steps", "8", "--warmup", "2", "--check-steps", "0", "--no-probe", "--no-report",
           "--repeat", "3")


def harness(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = private_env(tmp_path, HOME=str(tmp_path))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("gate")
    run = harness(tmp, "bench", "--processes", "1", "--isolate", *FILTERS, "--out", str(tmp / "results"), "--run-id", "base")
    assert run.returncode == 0, run.stderr
    saved = harness(tmp, "baseline", "save", "--run", str(tmp / "results" / "base"), "--name", "main",
                    "--dir", str(tmp / "baselines"))
    assert saved.returncode == 0, saved.stderr
    return tmp, tmp / "baselines" / "local" / "main"


def test_a_run_gated_against_its_own_baseline_passes(baseline):
    tmp, base = baseline
    proc = harness(tmp, "gate", "--baseline", str(base), "--candidate", str(tmp / "results" / "base"),
                   "--rerun-budget", "0")
    assert proc.returncode == 0, proc.stderr
    assert "regression" not in proc.stderr.split("gate:")[1].splitlines()[0]
    summary = (tmp / "results" / "base" / "summary.md").read_text()
    assert "Smallest change this run could detect" in summary


def test_a_candidate_missing_every_case_fails_the_gate(baseline):
    tmp, base = baseline
    other = harness(tmp, "bench", "--processes", "1", "--suite", "smoke", "--workload", "bert_tiny",
                    "--optimizer", "nag", "--kernel", "forloop", "--check-steps", "0", "--steps", "5", "--warmup", "1", "--no-probe",
                    "--no-report", "--out", str(tmp / "results"), "--run-id", "other")
    assert other.returncode == 0, other.stderr
    proc = harness(tmp, "gate", "--baseline", str(base), "--candidate", str(tmp / "results" / "other"),
                   "--rerun-budget", "0")
    assert proc.returncode == 2, proc.stderr
    allowed = harness(tmp, "gate", "--baseline", str(base), "--candidate",
                      str(tmp / "results" / "other"), "--rerun-budget", "0", "--allow-missing")
    assert allowed.returncode == 0, allowed.stderr


def test_an_injected_slowdown_is_a_regression_with_summary_and_junit(baseline):
    tmp, base = baseline
    proc = harness(tmp, "bench", "--processes", "1", "--isolate", *FILTERS, "--inject-slowdown", "3.0", "--out", str(tmp / "results"),
                   "--run-id", "slow", "--gate-against", str(base), "--rerun-budget", "0")
    assert proc.returncode == 1, proc.stderr
    assert "REGRESSION bert_tiny-nag-foreach-t1-b8-fp32 step_time" in proc.stderr
    summary = (tmp / "results" / "slow" / "summary.md").read_text()
    assert "regression" in summary and "bert_tiny-nag-foreach-t1-b8-fp32" in summary
    suite = ET.parse(tmp / "results" / "slow" / "junit.xml").getroot()
    failures = [tc for tc in suite.iter("testcase") if tc.find("failure") is not None]
    assert any("step_time" in tc.get("name", "") for tc in failures)


def test_the_step_summary_is_appended_when_github_asks_for_it(baseline, tmp_path):
    tmp, base = baseline
    target = tmp_path / "step_summary.md"
    env = private_env(tmp, HOME=str(tmp), GITHUB_STEP_SUMMARY=str(target))
    proc = subprocess.run([sys.executable, "-m", "harness", "gate", "--baseline", str(base), "--candidate",
                           str(tmp / "results" / "base"), "--rerun-budget", "0", "--summary",
                           str(tmp_path / "s.md"), "--junit", str(tmp_path / "j.xml")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Regression gate" in target.read_text()
