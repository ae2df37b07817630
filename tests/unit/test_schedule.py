"""Agent processes of a run: who shares one, how many per case, in what order."""

from __future__ import annotations

import dataclasses

import pytest

from harness import schedule
from harness.errors import ConfigError
from harness.plan import Filters, expand, load_suite


def _smoke(**kw):
    return expand(load_suite("smoke"), Filters(**kw))


def test_variants_of_one_configuration_share_a_process_and_other_configurations_do_not():
    units = schedule.groups(_smoke())
    assert len(units) == 3  # one per workload: its NAG kernels and the other optimizers
    for unit in units:
        assert unit.group and len(unit.cases) == 6
        assert len({c.workload for c in unit.cases}) == 1
        assert len({(c.optimizer, c.kernel) for c in unit.cases}) == 6
    two = schedule.groups(_smoke(workloads=("bert_tiny",), threads=(1, 2)))
    assert len(two) == 2 and {u.cases[0].threads for u in two} == {1, 2}


def test_isolate_gives_every_case_its_own_process():
    units = schedule.groups(_smoke(), isolate=True)
    assert len(units) == 18 and all(u.group == "" and len(u.cases) == 1 for u in units)


def test_a_case_with_nothing_to_pair_with_runs_alone():
    units = schedule.groups(_smoke(workloads=("ds_cnn",), optimizers=("adamw",)))
    assert [(u.group, len(u.cases)) for u in units] == [("", 1)]


def test_study_and_onnx_cases_run_alone():
    cases = [dataclasses.replace(c, onnx_inference=True) for c in _smoke(workloads=("bert_tiny",))]
    assert all(u.group == "" for u in schedule.groups(cases))


def test_group_ids_are_stable_and_readable():
    gid = schedule.groups(_smoke(workloads=("ds_cnn",)))[0].group
    assert gid.startswith("ds_cnn-t1-b8-fp32-g") and gid == schedule.groups(_smoke(workloads=("ds_cnn",)))[0].group


def test_every_block_runs_every_group_once_in_a_seeded_order():
    units = schedule.groups(_smoke(), isolate=True)
    order = schedule.blocks(units, 4, seed=3)
    assert len(order) == 4 * len(units)
    for r in range(4):
        block = order[r * len(units):(r + 1) * len(units)]
        assert {u.repeat for u in block} == {r}
        assert all(c.repeat == r for u in block for c in u.cases)
        assert sorted(u.key for u in block) == sorted(u.key for u in units)
    keys = [[u.key for u in order[r * 18:(r + 1) * 18]] for r in range(4)]
    assert len({tuple(k) for k in keys}) > 1  # shuffled afresh per block
    assert order == schedule.blocks(units, 4, seed=3)
    with pytest.raises(ConfigError, match="--processes"):
        schedule.blocks(units, 0, seed=3)


def test_process_ids_are_unique_across_devices_repeats_and_attempts():
    order = schedule.schedule(_smoke(), 2, 0)
    ids = {u.process_id(d, a) for u in order for d in ("local", "pixel7") for a in (1, 2)}
    assert len(ids) == len(order) * 4


def test_the_check_runs_once_per_run_in_repeat_zero():
    order = schedule.schedule(_smoke(workloads=("bert_tiny",)), 3, 0)
    for unit in order:
        for case in unit.cases:
            spec = case.spec()
            assert spec["check_steps"] == (10 if unit.repeat == 0 else 0)
            assert ("check_reason" in spec) == (unit.repeat > 0)


def test_the_suite_or_the_option_sets_the_processes(tmp_path):
    assert schedule.processes_for({}, None, "s") == schedule.DEFAULT_PROCESSES
    assert schedule.processes_for({"processes": 5}, None, "s") == 5
    assert schedule.processes_for({"processes": 5}, 2, "s") == 2
    with pytest.raises(ConfigError, match="s: processes: must be in 1 … 10000"):
        schedule.processes_for({"processes": 0}, None, "s")


def test_aa_replicas_share_the_process_with_a_distinct_case_id():
    cases = schedule.with_replicas(_smoke(workloads=("bert_tiny",), optimizers=("nag",)), 1)
    ids = [c.case_id for c in cases]
    assert "bert_tiny-nag-fused-t1-b8-fp32-aa1" in ids and len(ids) == 6 == len(set(ids))
    units = schedule.groups(cases)
    assert len(units) == 1 and len(units[0].cases) == 6


def test_a_slowdown_goes_into_the_named_case_and_phase_only():
    cases = _smoke(workloads=("bert_tiny",), optimizers=("nag",))
    target = "bert_tiny-nag-fused-t1-b8-fp32"
    slowed = schedule.with_slowdown(cases, 0.03, "update", [target])
    assert [(c.case_id, c.slowdown, c.slowdown_phase) for c in slowed if c.slowdown] == [(target, 0.03, "update")]
    assert {c.case_id for c in slowed} == {c.case_id for c in cases}  # the id does not change
    with pytest.raises(ConfigError, match="unknown phase 'updat'"):
        schedule.with_slowdown(cases, 0.03, "updat")
    with pytest.raises(ConfigError, match="no case 'nope'"):
        schedule.with_slowdown(cases, 0.03, "update", ["nope"])
