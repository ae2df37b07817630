"""raw.jsonl is the source of truth; tables are rebuilt from it without duplicates."""

import json
import os
import stat

import pandas as pd

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


def _group_lines(case_id: str, rounds: list[int], *, checked: bool, ok: bool = True) -> list[str]:
    out = [schema.dump_line(schema.CaseStart(case_id, {"case_id": case_id, "workload": "w"}, 100, 400))]
    for i, r in enumerate(rounds):
        out.append(schema.dump_line(schema.Step(case_id, i, False, {"update": 4}, 10 + i, 1.0, round=r)))
    out.append(schema.dump_line(schema.Meter(case_id, "energy_j", 2.5, "J", "measured:rapl",
                                             extra={"scope": "group"})))
    corr = {"checked": True, "ok": ok, "max_rel_diff": 0.0 if ok else 1.0, "tolerance": 1e-5} if checked \
        else {"checked": False, "reason": "checked once per run"}
    out.append(schema.dump_line(schema.CaseEnd(case_id, len(rounds), 0, 999, 4096, 400 if ok else 800, corr,
                                               {"energy_source": "measured:rapl", "uss_bytes": 7})))
    return out


def _group_run(tmp_path, *, second_ok: bool = True):
    raw = RawLog(tmp_path / "raw.jsonl")
    for repeat in (0, 1):
        process = f"dev:g:r{repeat}:a1"
        for case_id, ok in (("a", True), ("b", second_ok)):
            for line in _group_lines(case_id, [0, 1, 2], checked=repeat == 0, ok=ok):
                raw.agent_line("dev", case_id, 1, line, repeat, group="g", process=process)
            status = "ok" if ok or repeat else "wrong"
            spec = {"case_id": case_id, "workload": "w", "domain": "image", "optimizer": "nag",
                    "kernel": case_id, "threads": 1, "batch": 8, "dtype": "fp32", "seed": 0}
            raw.event("dev", case_id, 1, "attempt_end", repeat=repeat, status=status, group="g", spec=spec,
                      process=process, error_message="" if status == "ok" else "kernel disagrees")
    raw.close()
    return build_tables(tmp_path, "run")


def test_steps_of_a_shared_process_carry_the_process_and_their_round(tmp_path):
    steps, cases = _group_run(tmp_path)
    assert set(steps["process"]) == {"dev:g:r0:a1", "dev:g:r1:a1"}
    assert sorted(steps.loc[steps["case_id"] == "a", "round"]) == [0, 0, 1, 1, 2, 2]
    assert str(steps["round"].dtype) == "int64"
    assert set(cases["group"]) == {"g"} and cases["paired"].all()
    assert list(cases.loc[(cases["case_id"] == "a"), "process"]) == ["dev:g:r0:a1", "dev:g:r1:a1"]


def test_a_lone_case_has_its_own_process_and_no_round(tmp_path):
    raw = RawLog(tmp_path / "raw.jsonl")
    for line in _lines("c1", 3):
        raw.agent_line("dev", "c1", 2, line)  # a version-1 envelope: no process field
    raw.close()
    steps, cases = build_tables(tmp_path, "run")
    assert set(steps["process"]) == {"dev:c1:r0:a2"} and set(steps["round"]) == {-1}
    assert cases.iloc[0]["group"] == "" and not cases.iloc[0]["paired"]
    assert cases.iloc[0]["memory_scope"] == "case"


def test_memory_and_energy_of_a_shared_process_are_the_groups_never_a_variants(tmp_path):
    _, cases = _group_run(tmp_path)
    row = cases.iloc[0]
    assert pd.isna(row["peak_rss_bytes"]) and row["group_peak_rss_bytes"] == 4096
    assert pd.isna(row["energy_j"]) and row["group_energy_j"] == 2.5
    assert row["energy_source"] == "none" and "not separable" in row["energy_reason"]
    assert row["group_energy_source"] == "measured:rapl"
    assert pd.isna(row["uss_bytes"]) and row["group_uss_bytes"] == 7
    assert (row["memory_scope"], row["energy_scope"]) == ("group", "group")
    assert row["state_bytes"] == 400  # per variant, exact


def test_the_check_of_repeat_zero_stands_for_the_cases_other_repeats(tmp_path):
    _, cases = _group_run(tmp_path, second_ok=False)
    a = cases[cases["case_id"] == "a"].set_index("repeat")
    assert a["correct_checked"].all() and list(a["correct_from_repeat"]) == [0, 0]
    b = cases[cases["case_id"] == "b"].set_index("repeat")
    assert list(b["status"]) == ["wrong", "wrong"]  # repeat 1 was not checked, but its kernel is wrong
    assert b.loc[1, "correct_ok"] == False and b.loc[1, "error_kind"] == "correctness"  # noqa: E712


def test_version_one_lines_of_a_stored_run_stay_readable(tmp_path):
    raw = RawLog(tmp_path / "raw.jsonl")
    for line in _lines("c1", 3):
        raw.agent_line("dev", "c1", 1, line.replace('"v":2', '"v":1'))
    raw.close()
    steps, cases = build_tables(tmp_path, "run")
    assert len(steps) == 3 and cases.iloc[0]["status"] == "ok"
