"""`harness bench --suite smoke` on the local device, through the real CLI, agent and store."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def harness(*args: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("results")
    # the README's main job (the check, the probe, the report, a workload's variants sharing its
    # process) made smaller: 1 process per workload instead of the suite's 3 (tests/unit/test_plan.py
    # holds that default; test_bench_groups.py and test_gate_e2e.py run several processes), 4
    # measured steps, 1 warm-up and 2 check steps instead of 12, 3 and 10
    proc = harness("bench", "--suite", "smoke", "--processes", "1", "--steps", "4", "--warmup", "1",
                   "--check-steps", "2", "--out", str(out), "--run-id", "smoke")
    return out / "smoke", proc


def test_the_smoke_run_succeeds_and_prints_the_report_path(smoke_run):
    run_dir, proc = smoke_run
    assert proc.returncode == 0, proc.stderr
    assert f"report: {(run_dir / 'report.html').resolve()}" in proc.stdout


def test_every_case_finished_with_its_variant_checked(smoke_run):
    run_dir, _ = smoke_run
    cases = pd.read_parquet(run_dir / "cases.parquet")
    assert len(cases) == 18 and set(cases["repeat"]) == {0}
    assert set(cases["status"]) == {"ok"}
    assert cases["correct_checked"].all() and cases["correct_ok"].all()
    assert set(cases["domain"]) == {"image", "nlp", "speech"}
    # the six variants of a workload share its process: 3 workloads, 3 processes
    assert cases["paired"].all() and cases["process"].nunique() == 3
    assert cases.groupby("process")["workload"].nunique().eq(1).all()
    assert cases.groupby("process")["case_id"].nunique().eq(6).all()
    assert (cases["group_peak_rss_bytes"] > 50e6).all()  # torch alone is resident past 50 MB
    assert cases["peak_rss_bytes"].isna().all() and set(cases["memory_scope"]) == {"group"}
    nag = cases[cases["optimizer"] == "nag"]
    assert set(nag["kernel"]) == {"forloop", "foreach", "fused"}
    assert (nag["state_bytes"] == nag["param_bytes"]).all()  # one momentum buffer per parameter


def test_steps_hold_every_sample_with_per_phase_times(smoke_run):
    run_dir, _ = smoke_run
    steps = pd.read_parquet(run_dir / "steps.parquet")
    per_case = steps.groupby(["case_id", "process"]).agg(n=("index", "size"), warm=("warmup", "sum"))
    assert len(per_case) == 18 and (per_case["n"] == 5).all() and (per_case["warm"] == 1).all()
    # in each process every round holds one step of each of its six variants, back to back
    per_round = steps.groupby(["process", "round"])["case_id"].agg(["size", "nunique"])
    assert (per_round["size"] == 6).all() and (per_round["nunique"] == 6).all()
    for phase in ("data_ns", "forward_ns", "backward_ns", "update_ns"):
        assert (steps[phase] > 0).all(), phase
    speech = steps["workload"] == "ds_cnn"
    assert (steps.loc[speech, "frontend_ns"] > 0).all()
    assert (steps.loc[~speech, "frontend_ns"] == 0).all()
    phases = steps[["data_ns", "frontend_ns", "forward_ns", "backward_ns", "update_ns"]].sum(axis=1)
    assert (phases <= steps["step_ns"]).all()


def test_tables_are_rebuilt_from_raw_jsonl(smoke_run):
    from harness.store import build_tables, read_raw

    run_dir, _ = smoke_run
    steps, _ = build_tables(run_dir)
    raw_steps = [e for e in read_raw(run_dir / "raw.jsonl") if '"type":"step"' in e.get("line", "")]
    assert len(steps) == len(raw_steps) == len(pd.read_parquet(run_dir / "steps.parquet"))


def test_the_manifest_says_how_to_reproduce_the_run(smoke_run):
    run_dir, _ = smoke_run
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["suite"] == "smoke" and manifest["seed"] == 0
    assert manifest["argv"][:2] == ["harness", "bench"]
    assert len(manifest["git"]["commit"]) == 40 and isinstance(manifest["git"]["dirty"], bool)
    assert manifest["versions"]["torch"].startswith("2.")
    assert manifest["device"]["profile"]["connection"]["transport"] == "local"
    assert sorted(manifest["case_order"]) != manifest["case_order"]  # shuffled
    assert [p[1] for p in manifest["processes"]] == [0, 0, 0]  # one block


def test_the_report_is_one_self_contained_file(smoke_run):
    run_dir, _ = smoke_run
    html = (run_dir / "report.html").read_text()
    assert not re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="(?:https?:)?//', html)
    for workload in ("mobilenet_v2", "bert_tiny", "ds_cnn"):
        assert workload in html


def test_a_second_run_pushes_no_bundle_bytes(smoke_run, tmp_path):
    proc = harness("bench", "--suite", "smoke", "--workload", "bert_tiny", "--optimizer", "nag",
                   "--kernel", "foreach", "--steps", "2", "--warmup", "0", "--check-steps", "0",
                   "--processes", "1", "--no-probe",
                   "--out", str(tmp_path), "--no-report")
    assert proc.returncode == 0, proc.stderr
    assert ": 0 bytes pushed" in proc.stderr
