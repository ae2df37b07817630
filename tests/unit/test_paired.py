"""Variants sharing one agent process: alike copies, alternation, rounds, the check once."""

from __future__ import annotations

import json

import pytest
import torch

from workloads import schema
from workloads.paired import check_alike, copies_for, round_orders, run_group


def _spec(kernel: str, *, replica: str = "", check_steps: int = 0, **extra) -> dict:
    case_id = f"lstm_text-nag-{kernel}-t1-b2-fp32" + (f"-{replica}" if replica else "")
    spec = {"case_id": case_id, "workload": "lstm_text", "domain": "nlp", "optimizer": "nag",
            "kernel": kernel, "threads": 1, "batch": 2, "dtype": "fp32", "steps": 3, "warmup": 1,
            "seed": 0, "check_steps": check_steps, "mode": "eager", "accel": "cpu",
            "options": {"seq_len": 8, "embed_dim": 8, "hidden": 8, "vocab_size": 50},
            "energy": {"meter": "none"}}
    spec.update(extra)
    return spec


def _run(specs: list[dict], **group) -> list[schema.Record]:
    out: list[schema.Record] = []

    def emit(record: schema.Record) -> None:  # through the wire format, as the host sees it
        out.append(schema.parse_line(schema.dump_line(record)))

    run_group({"group": "g", "cases": specs, "rotation": 0, "order_seed": 7, **group}, emit)
    return out


def test_every_round_is_a_fresh_permutation_that_the_seed_reproduces():
    orders = round_orders(3, 40, seed=5)
    assert all(sorted(o) == [0, 1, 2] for o in orders)
    assert orders == round_orders(3, 40, seed=5)
    assert len({tuple(o) for o in orders}) > 1  # the order is drawn per round
    assert {o[0] for o in orders} == {0, 1, 2}  # each variant goes first sometimes


def test_copies_are_equal_and_distinct_from_the_template():
    template = torch.nn.Linear(4, 3)
    a = copies_for(template, 3, rotation=0)
    b = copies_for(template, 3, rotation=1)
    for m in a + b:
        assert m is not template
        assert torch.equal(m.weight, template.weight) and torch.equal(m.bias, template.bias)
        assert m.weight.data_ptr() != template.weight.data_ptr()
    assert len({id(m) for m in a}) == 3
    assert copies_for(template, 1, rotation=5)[0] is not template


def test_rotation_assigns_copy_i_plus_r():
    made: list[int] = []

    class Counter:
        def __deepcopy__(self, memo):
            made.append(len(made))
            obj = Counter()
            obj.n = made[-1]
            return obj

    copies = copies_for(Counter(), 3, rotation=2)
    assert [c.n for c in copies] == [2, 0, 1]


def test_a_group_of_different_configurations_is_refused():
    with pytest.raises(ValueError, match="differ in 'batch'"):
        check_alike([_spec("foreach"), _spec("forloop", batch=4)])
    with pytest.raises(ValueError, match="names a case twice"):
        check_alike([_spec("foreach"), _spec("foreach")])


def test_variants_alternate_round_by_round_with_their_own_steps():
    records = _run([_spec("forloop"), _spec("foreach"), _spec("foreach", replica="aa1")])
    steps = [r for r in records if isinstance(r, schema.Step)]
    ids = {s.case_id for s in steps}
    assert len(ids) == 3
    by_round: dict[int, list[str]] = {}
    for s in steps:
        by_round.setdefault(s.round, []).append(s.case_id)
    # one warm-up round and three measured ones; each round has every variant once, back to back
    assert sorted(by_round) == [0, 1, 2, 3]
    assert all(sorted(v) == sorted(ids) for v in by_round.values())
    seen = [s.round for s in steps]
    assert seen == sorted(seen)
    for cid in ids:
        mine = [s for s in steps if s.case_id == cid]
        assert [s.index for s in mine] == [0, 1, 2, 3]
        assert [s.warmup for s in mine] == [True, False, False, False]
    # the same batches for every variant: the first step's loss is identical (same weights, same data)
    first = {s.case_id: s.loss for s in steps if s.index == 0}
    assert len(set(first.values())) == 1
    ends = [r for r in records if isinstance(r, schema.CaseEnd)]
    assert {e.case_id for e in ends} == ids and all(e.steps == 3 for e in ends)
    assert all(e.state_bytes == ends[0].state_bytes > 0 for e in ends)  # per variant, exact


def test_flops_and_activations_are_counted_once_per_group(monkeypatch):
    import workloads.probe

    calls: list[int] = []
    real = workloads.probe.flops_per_step
    monkeypatch.setattr(workloads.probe, "flops_per_step", lambda *a: calls.append(1) or real(*a))
    records = _run([_spec("forloop"), _spec("foreach"), _spec("forloop", optimizer="sgd",
                                                                case_id="lstm_text-sgd-forloop")])
    ends = [r for r in records if isinstance(r, schema.CaseEnd)]
    assert len(ends) == 3 and len(calls) == 1
    flops = {e.summary["flops_per_step"] for e in ends}
    activations = {e.summary["saved_activation_bytes"] for e in ends}
    assert len(flops) == 1 and flops.pop() > 0 and len(activations) == 1 and activations.pop() > 0
    # drawing the counting batch for every variant keeps their data streams alike
    first = {s.case_id: s.loss for s in records if isinstance(s, schema.Step) and s.index == 0}
    assert len(first) == 3 and len(set(first.values())) == 1


def test_the_check_runs_only_for_variants_asked_to():
    records = _run([_spec("forloop", check_steps=2), _spec("foreach", check_reason="checked in repeat 0")])
    ends = {r.case_id: r for r in records if isinstance(r, schema.CaseEnd)}
    checked = ends["lstm_text-nag-forloop-t1-b2-fp32"].correctness
    assert checked["checked"] and checked["ok"] and checked["steps"] == 2
    skipped = ends["lstm_text-nag-foreach-t1-b2-fp32"].correctness
    assert skipped == {"checked": False, "reason": "checked in repeat 0"}


def test_a_failing_variant_leaves_the_rotation_and_the_others_finish(monkeypatch):
    monkeypatch.setenv("ODT_FAULT", "step=2:raise:forloop")
    records = _run([_spec("forloop"), _spec("foreach")])
    errors = [r for r in records if isinstance(r, schema.Error)]
    assert [e.case_id for e in errors] == ["lstm_text-nag-forloop-t1-b2-fp32"]
    ends = [r.case_id for r in records if isinstance(r, schema.CaseEnd)]
    assert ends == ["lstm_text-nag-foreach-t1-b2-fp32"]
    failed = [r for r in records if isinstance(r, schema.Step) and r.case_id.endswith("forloop-t1-b2-fp32")]
    assert [s.index for s in failed] == [0, 1]  # what it measured before failing is kept


def test_meters_of_a_shared_process_say_so():
    records = _run([_spec("forloop"), _spec("foreach")])
    meters = [r for r in records if isinstance(r, schema.Meter)]
    assert meters and all(m.extra.get("scope") == "group" and m.extra.get("group") == "g" for m in meters)


def test_the_agent_refuses_a_spec_of_another_protocol_version(capsys):
    import io
    import sys

    from workloads import agent

    sys_stdin = sys.stdin
    try:
        sys.stdin = io.StringIO(json.dumps({**_spec("foreach"), "protocol": 1}))
        assert agent.main(["run"]) == 0
    finally:
        sys.stdin = sys_stdin
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    error = next(x for x in lines if x["type"] == "error")
    assert "protocol version 1" in error["message"] and "speaks 2" in error["message"]


def test_an_injected_slowdown_lands_in_its_own_variant_only():
    records = _run([_spec("foreach"), _spec("foreach", replica="aa1", slowdown=30.0, slowdown_phase="update")])
    update: dict[str, list[int]] = {}
    for r in records:
        if isinstance(r, schema.Step) and not r.warmup:
            update.setdefault(r.case_id, []).append(r.phases_ns["update"])
    plain, slowed = update["lstm_text-nag-foreach-t1-b2-fp32"], update["lstm_text-nag-foreach-t1-b2-fp32-aa1"]
    assert min(slowed) > 5 * sorted(plain)[1]  # 31x its own update time against the twin's median
