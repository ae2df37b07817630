"""raw.jsonl is the source of truth; tables are rebuilt from it without duplicates."""

import json
import os
import stat

from harness.store import RawLog, atomic_write, build_tables, make_run_dir
from workloads import schema


def _lines(case_id: str, n_steps: int, *, end: bool = True) -> list[str]:
    spec = {"case_id": case_id, "workload": "w", "domain": "image", "optimizer": "nag",
            "kernel": "fused", "threads": 1, "batch": 8, "dtype": "fp32", "seed": 0}
    out = [schema.dump_line(schema.CaseStart(case_id, spec, 100, 400))]
    for i in range(n_steps):
        out.append(schema.dump_line(schema.Step(case_id, i, i == 0, {"data": 1, "forward": 2,
                                                "backward": 3, "update": 4}, 10 + i, 1.0 / (i + 1))))
    if end:
        out.append(schema.dump_line(schema.CaseEnd(case_id, n_steps - 1, 1, 999, 4096, 400,
                                                   {"checked": True, "ok": True, "max_rel_diff": 0.0, "tolerance": 1e-5})))
    return out


def test_a_retried_case_contributes_only_its_last_finished_attempt(tmp_path):
    raw = RawLog(tmp_path / "raw.jsonl")
    for line in _lines("c1", 3, end=False):  # link dropped mid-case
        raw.agent_line("dev", "c1", 1, line)
    raw.event("dev", "c1", 1, "attempt_end", status="transient")
    for line in _lines("c1", 5):
        raw.agent_line("dev", "c1", 2, line)
    raw.event("dev", "c1", 2, "attempt_end", status="ok", host_wall_ns=5000)
    raw.close()
    steps, cases = build_tables(tmp_path, "run")
    assert list(steps["index"]) == [0, 1, 2, 3, 4]
    row = cases.iloc[0]
    assert (row["status"], row["attempts"], row["steps"], row["warmup_steps"]) == ("ok", 2, 4, 1)
    assert row["median_step_ns"] == 12.5 and row["host_wall_ns"] == 5000


def test_phases_become_columns_and_absent_ones_are_zero(tmp_path):
    raw = RawLog(tmp_path / "raw.jsonl")
    for line in _lines("c1", 2):
        raw.agent_line("dev", "c1", 1, line)
    raw.close()
    steps, _ = build_tables(tmp_path, "run")
    assert list(steps.loc[0, ["data_ns", "frontend_ns", "forward_ns", "backward_ns", "update_ns"]]) == [1, 0, 2, 3, 4]


def test_a_torn_last_line_is_ignored(tmp_path):
    raw = RawLog(tmp_path / "raw.jsonl")
    for line in _lines("c1", 2):
        raw.agent_line("dev", "c1", 1, line)
    raw.close()
    with open(tmp_path / "raw.jsonl", "a") as f:
        f.write('{"device": "dev", "case_id": "c1", "att')
    steps, cases = build_tables(tmp_path, "run")
    assert len(steps) == 2 and cases.iloc[0]["status"] == "ok"


def test_a_protocol_error_is_kept_as_the_case_error(tmp_path):
    raw = RawLog(tmp_path / "raw.jsonl")
    raw.agent_line("dev", "c1", 1, "Segmentation fault")
    raw.close()
    _, cases = build_tables(tmp_path, "run")
    assert cases.iloc[0]["status"] == "failed"
    assert "Segmentation fault" in cases.iloc[0]["error_message"]


def test_every_raw_line_is_flushed_as_it_is_appended(tmp_path):
    raw = RawLog(tmp_path / "raw.jsonl")
    raw.agent_line("dev", "c1", 1, "x")
    assert json.loads((tmp_path / "raw.jsonl").read_text())["line"] == "x"
    raw.close()


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    atomic_write(tmp_path / "a.json", "{}")
    assert os.listdir(tmp_path) == ["a.json"]


def test_run_directories_are_private_to_the_user(tmp_path):
    run_dir = make_run_dir(tmp_path / "results", "r1")
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
