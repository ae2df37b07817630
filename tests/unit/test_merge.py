"""Merging runs from several hosts: raw logs concatenated, devices kept, clashes refused or
renumbered, manifests listed, tables rebuilt so the gate and the report read one run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.merge import merge_runs, repeat_offsets
from harness.store import RawLog, load_run, make_run_dir, write_json, write_tables
from workloads import schema


def _case_lines(case_id: str, n_steps: int, step_ns: int) -> list[str]:
    spec = {"case_id": case_id, "workload": "w", "domain": "image", "optimizer": "nag",
            "kernel": "fused", "threads": 1, "batch": 8, "dtype": "fp32", "seed": 0}
    out = [schema.dump_line(schema.CaseStart(case_id, spec, 100, 400))]
    for i in range(n_steps):
        out.append(schema.dump_line(schema.Step(case_id, i, False, {"update": 4}, step_ns + i, 1.0)))
    out.append(schema.dump_line(schema.CaseEnd(case_id, n_steps - 1, 1, 999, 4096, 400,
                                               {"checked": False})))
    return out


def _run(root: Path, name: str, device: str, cases: dict[str, int], repeats: int = 1) -> Path:
    run_dir = make_run_dir(root, name)
    raw = RawLog(run_dir / "raw.jsonl")
    for case_id, step_ns in cases.items():
        for r in range(repeats):
            for line in _case_lines(case_id, 4, step_ns):
                raw.agent_line(device, case_id, 1, line, r)
            raw.event(device, case_id, 1, "attempt_end", repeat=r, status="ok", host_wall_ns=10)
    raw.close()
    write_tables(run_dir)
    write_json(run_dir / "manifest.json", {"results_version": 1, "run_id": name,
                                           "devices": [{"name": device, "model": device.upper()}],
                                           "device": {"name": device, "model": device.upper()},
                                           "git": {"commit": "abc", "dirty": False}, "suite": "quick"})
    return run_dir


def test_runs_of_two_devices_merge_into_one_table_keeping_device_names(tmp_path):
    a = _run(tmp_path, "a", "pixel7", {"c1": 100, "c2": 200})
    b = _run(tmp_path, "b", "rpi5", {"c1": 300})
    steps, cases, _ = load_run(merge_runs([a, b], tmp_path / "merged"))
    assert sorted(zip(cases["device"], cases["case_id"], strict=True)) == [
        ("pixel7", "c1"), ("pixel7", "c2"), ("rpi5", "c1")]
    assert len(steps) == 12 and set(steps["run_id"]) == {"merged"}


def test_the_merged_raw_log_is_the_sources_lines_tagged_with_their_run(tmp_path):
    a = _run(tmp_path, "a", "pixel7", {"c1": 100})
    b = _run(tmp_path, "b", "rpi5", {"c1": 300})
    out = merge_runs([a, b], tmp_path / "merged")
    lines = (out / "raw.jsonl").read_text().splitlines()
    source = (a / "raw.jsonl").read_text().splitlines() + (b / "raw.jsonl").read_text().splitlines()
    assert len(lines) == len(source)
    assert [json.loads(x)["source_run"] for x in (lines[0], lines[-1])] == ["a", "b"]


def test_the_merged_manifest_lists_the_sources_and_the_union_of_devices(tmp_path):
    a = _run(tmp_path, "a", "pixel7", {"c1": 100})
    b = _run(tmp_path, "b", "rpi5", {"c1": 300})
    _, _, manifest = load_run(merge_runs([a, b], tmp_path / "merged"))
    assert [d["name"] for d in manifest["devices"]] == ["pixel7", "rpi5"]
    assert [m["run_id"] for m in manifest["merged_from"]] == ["a", "b"]
    assert manifest["device"]["name"] == "pixel7_rpi5"
    assert "cases" not in manifest  # a merged run is not re-measured by the gate


def test_two_runs_of_the_same_device_case_and_repeat_are_refused(tmp_path):
    a = _run(tmp_path, "a", "pixel7", {"c1": 100})
    b = _run(tmp_path, "b", "pixel7", {"c1": 110})
    with pytest.raises(ConfigError, match="--renumber"):
        merge_runs([a, b], tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_renumbering_keeps_both_runs_as_further_repeats(tmp_path):
    a = _run(tmp_path, "a", "pixel7", {"c1": 100}, repeats=2)
    b = _run(tmp_path, "b", "pixel7", {"c1": 110}, repeats=2)
    _, cases, _ = load_run(merge_runs([a, b], tmp_path / "merged", renumber=True))
    assert sorted(cases["repeat"]) == [0, 1, 2, 3]
    assert sorted(cases.loc[cases["repeat"] >= 2, "median_step_ns"]) == [111.5, 111.5]


def test_stored_baselines_without_raw_logs_merge_by_their_tables(tmp_path):
    a = _run(tmp_path, "a", "pixel7", {"c1": 100})
    b = _run(tmp_path, "b", "rpi5", {"c1": 300})
    (b / "raw.jsonl").unlink()
    steps, cases, _ = load_run(merge_runs([a, b], tmp_path / "merged"))
    assert sorted(cases["device"]) == ["pixel7", "rpi5"] and len(steps) == 8
    assert not (tmp_path / "merged" / "raw.jsonl").exists()


def test_an_existing_output_directory_is_refused(tmp_path):
    a = _run(tmp_path, "a", "pixel7", {"c1": 100})
    with pytest.raises(ConfigError, match="exists already"):
        merge_runs([a], a)


def test_a_directory_that_is_not_a_run_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        merge_runs([tmp_path], tmp_path / "merged")


def test_offsets_shift_only_the_clashing_device_and_case():
    first = {("pixel7", "c1"): {0, 1}, ("pixel7", "c2"): {0}}
    second = {("pixel7", "c1"): {0, 1}, ("rpi5", "c1"): {0}}
    offsets = repeat_offsets([("a", first), ("b", second)], renumber=True)
    assert offsets == [{}, {("pixel7", "c1"): 2}]


def test_merged_runs_keep_their_agent_processes_apart(tmp_path):
    runs = []
    for name in ("a", "b"):
        run_dir = make_run_dir(tmp_path, name)
        raw = RawLog(run_dir / "raw.jsonl")
        for case_id in ("c1", "c2"):  # two variants that shared one process in each run
            for line in _case_lines(case_id, 2, 100):
                raw.agent_line("pixel7", case_id, 1, line, 0, group="g", process="pixel7:g:r0:a1")
            raw.event("pixel7", case_id, 1, "attempt_end", repeat=0, status="ok", group="g",
                      process="pixel7:g:r0:a1")
        raw.close()
        write_tables(run_dir)
        runs.append(run_dir)
    steps, cases, _ = load_run(merge_runs(runs, tmp_path / "merged", renumber=True))
    assert sorted(set(steps["process"])) == ["a/pixel7:g:r0:a1", "b/pixel7:g:r0:a1"]
    assert cases.groupby("process")["case_id"].nunique().eq(2).all()  # still shared within a run
    (runs[1] / "raw.jsonl").unlink()  # merged by tables
    _, cases, _ = load_run(merge_runs(runs, tmp_path / "by-tables", renumber=True))
    assert sorted(set(cases["process"])) == ["a/pixel7:g:r0:a1", "b/pixel7:g:r0:a1"]
