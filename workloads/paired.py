"""Several variants of one workload configuration in one agent process, alternating step by step.

Cases that differ only in optimizer or kernel variant share a process so that their
comparison is paired: the process's own offset (allocator state, page and CPU placement,
neighbours) is common to every variant and cancels in a per-round ratio.

How the variants are kept alike (STATISTICS.md: a model as built and its deep copy ran
3–9 % apart in one process):

- every variant trains a deep copy of one template model, the copies made one after
  another once the seeded builds' own models are gone; the group's ``rotation`` (its repeat)
  rotates which copy serves which variant across processes;
- each variant has its own data stream from the same seed, so all see the same batches;
- each variant warms up (its own warm-up steps, alternated like the measured ones);
- in every round each variant takes one step, in an order drawn afresh per round from the
  group's ``order_seed``; the step records carry the round, so the host can pair them.

The correctness check (when the spec asks for one: the run's first process of the group)
runs first, for each variant on a fresh build, before any copy exists.

Peak RSS and energy are the process's, shared by all variants: they are reported in every
variant's summary but the store files them as the group's (harness/store.py) so that they
are never compared between variants. State bytes are per variant and exact.
"""

from __future__ import annotations

import copy
import gc
import random
import time
import traceback
from typing import Any, Callable, Sequence

from workloads import schema, system
from workloads.meters.case import CaseInstruments

# what the cases of one group must share (the variant may differ in optimizer, kernel, hparams
# and the calibration knobs)
SHARED_KEYS = ("workload", "domain", "threads", "batch", "dtype", "steps", "warmup", "seed", "mode",
               "accel", "options", "warmup_until_stable", "warmup_max", "cpu_affinity")


def check_alike(specs: Sequence[dict[str, Any]]) -> None:
    """Refuse a group whose cases differ in anything but the variant."""
    ids = [s["case_id"] for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"a group names a case twice: {ids}")
    first = specs[0]
    for spec in specs[1:]:
        for key in SHARED_KEYS:
            if spec.get(key) != first.get(key):
                raise ValueError(f"cases {first['case_id']!r} and {spec['case_id']!r} differ in "
                                 f"{key!r} ({first.get(key)!r} vs {spec.get(key)!r}); only the "
                                 "optimizer and kernel may differ inside one process")
        if spec.get("target_loss") is not None or spec.get("onnx_inference"):
            raise ValueError(f"case {spec['case_id']!r} (a study or ONNX case) must run alone")


def copies_for(template: Any, n: int, rotation: int) -> list[Any]:
    """``n`` deep copies of ``template``, made one after another; variant i gets copy
    ``(i + rotation) % n``, so which copy serves which variant rotates across processes."""
    made = [copy.deepcopy(template) for _ in range(n)]
    return [made[(i + rotation) % n] for i in range(n)]


def round_orders(n: int, rounds: int, seed: int) -> list[list[int]]:
    """The variants' order in each round, drawn afresh per round from ``seed``."""
    rng = random.Random(seed)
    orders = []
    for _ in range(rounds):
        order = list(range(n))
        rng.shuffle(order)
        orders.append(order)
    return orders


class _Member:
    """One variant of the group: its spec, built model and step loop, or why it failed."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.case_id = str(spec["case_id"])
        self.correctness: dict[str, Any] = {}
        self.variant: Any = None
        self.loop: Any = None
        self.failed = False


def _fail(member: _Member, exc: BaseException, emit: Callable[[schema.Record], None]) -> None:
    member.failed = True
    emit(schema.Error(case_id=member.case_id, kind=type(exc).__name__, message=str(exc),
                      traceback=traceback.format_exc(limit=20)))


def run_group(group: dict[str, Any], emit: Callable[[schema.Record], None]) -> tuple[int, int]:
    """Run a group spec's cases in one process, alternating; returns (cases ok, cases failed).

    A variant that fails (its build, check or a step raises) gets an ``error`` record and
    leaves the rotation; the others go on.
    """
    from workloads import agent, trainer
    from workloads.faults import maybe_fail
    from workloads.optim import state_bytes

    start = time.monotonic_ns()
    specs = [dict(s) for s in group["cases"]]
    check_alike(specs)
    first = specs[0]
    agent.setup_threads(first)
    members = [_Member(s) for s in specs]
    for m in members:  # the check runs on fresh builds, before any measured copy exists
        try:
            m.correctness = agent.checked_variant(m.spec)
        except Exception as exc:
            _fail(m, exc, emit)
    gc.collect()
    live = [m for m in members if not m.failed]
    inst = CaseInstruments(first)
    try:
        tasks = [agent.build_task(m.spec) for m in live]  # each its own data stream, same seed
        template = tasks[0].model if tasks else None
        for task in tasks:
            task.model = None
        gc.collect()
        models = copies_for(template, len(tasks), int(group.get("rotation", 0)))
        del template
        counted = None  # FLOPs and saved activations: the same for every variant of the group
        for m, task, model in zip(live, tasks, models, strict=True):
            task.model = model
            try:
                m.variant = agent.build_variant(m.spec, task, emit, counted)
                counted = (m.variant.flops, m.variant.activation_bytes)
                maybe_fail("start", m.case_id)
                if m.spec.get("mode") == "compile":
                    m.variant.compile_ns = trainer.compile_warmup(m.variant.prepared, m.variant.updater,
                                                                  m.spec["dtype"])
                m.loop = agent.StepLoop(m.spec, m.variant.prepared, m.variant.updater, emit, maybe_fail)
            except Exception as exc:
                _fail(m, exc, emit)
        live = [m for m in live if not m.failed]
        for m in live:
            trainer.reset_peak_memory(m.variant.prepared)
        inst.settle()
        inst.reset_memory()
        inst.mark_baseline()
        rounds = _warm_up(live, int(group.get("order_seed", 0)), emit)
        inst.start()
        seed = int(group.get("order_seed", 0)) + 1
        rounds = _measure(live, int(first["steps"]), rounds, seed, emit)
        _extend(live, rounds, seed + 1, emit, inst.window_short_s, inst.max_extend_s)
        inst.stop()
        live = [m for m in live if not m.failed]
        all_ns = [ns for m in live for ns in m.loop.measured_ns]
        records, _ = inst.finish(str(group.get("group", "")), all_ns)
        energy = inst.reading.energy_j if inst.reading else None
        wall_ns = time.monotonic_ns() - start
        for m in live:
            for record in records:  # the process's readings, filed under each variant
                emit(schema.Meter(**{**record.__dict__, "case_id": m.case_id,
                                     "extra": {**record.extra, "scope": "group",
                                               "group": group.get("group", "")}}))
            measured = inst.summary(m.loop.measured_ns)  # stability flags from this variant's steps
            measured["energy_per_step_j"] = energy / len(all_ns) if energy is not None and all_ns else None
            summary = agent.case_summary(m.variant, measured, m.correctness, m.loop)
            summary["group_variants"] = len(live)
            emit(schema.CaseEnd(
                case_id=m.case_id, steps=len(m.loop.measured_ns), warmup_steps=m.loop.warmup_steps,
                wall_ns=wall_ns,
                peak_rss_bytes=int(measured.get("peak_rss_bytes") or system.ru_maxrss_bytes()),
                state_bytes=state_bytes(m.variant.updater), correctness=m.correctness, summary=summary))
    finally:
        inst.close()
    ok = sum(1 for m in members if not m.failed)
    return ok, len(members) - ok


def _step(m: _Member, round_: int, warmup: bool, emit: Callable[[schema.Record], None]) -> int | None:
    """One step of one variant; None when it raised (the variant is then out)."""
    m.loop.round = round_
    try:
        step_ns, _ = m.loop.step(warmup=warmup)
    except Exception as exc:
        _fail(m, exc, emit)
        return None
    return step_ns


def _warm_up(live: list[_Member], seed: int, emit: Callable[[schema.Record], None]) -> int:
    """Alternated warm-up rounds until every variant is warm; returns the rounds used."""
    rng = random.Random(seed)
    rnd = 0
    while True:
        pending = [m for m in live if not m.failed and not _warm(m)]
        if not pending:
            break
        order = list(range(len(live)))
        rng.shuffle(order)
        for i in order:  # every variant steps in every round: the rounds stay full
            m = live[i]
            if m.failed:
                continue
            step_ns = _step(m, rnd, True, emit)
            if step_ns is not None and m.loop.detector is not None:
                m.loop.detector.observe(step_ns)
        rnd += 1
    for m in live:
        if m.loop is not None:
            m.loop.warmup_steps = m.loop.index
            m.loop.warmup_forced = bool(m.loop.detector and m.loop.detector.forced)
    return rnd


def _warm(m: _Member) -> bool:
    loop = m.loop
    if loop.detector is not None:
        return bool(loop.detector.done)
    return loop.index >= int(m.spec["warmup"])


def _measure(live: list[_Member], steps: int, first_round: int, seed: int,
             emit: Callable[[schema.Record], None]) -> int:
    """``steps`` measured rounds, each variant once per round in a fresh random order; returns
    the next round's number."""
    for k, order in enumerate(round_orders(len(live), steps, seed)):
        _round(live, order, first_round + k, emit)
    return first_round + steps


def _round(live: list[_Member], order: list[int], number: int, emit: Callable[[schema.Record], None]) -> None:
    for i in order:
        m = live[i]
        if m.failed:
            continue
        step_ns = _step(m, number, False, emit)
        if step_ns is not None:
            m.loop.measured_ns.append(step_ns)


def _extend(live: list[_Member], first_round: int, seed: int, emit: Callable[[schema.Record], None],
            short_s: Callable[[], float], limit_s: float) -> None:
    """More measured rounds while the energy window is shorter than its meter resolves (at most
    ``limit_s`` seconds); every variant steps in each, so the rounds stay pairs."""
    rng = random.Random(seed)
    deadline = time.monotonic() + limit_s
    number = first_round
    while short_s() > 0 and time.monotonic() < deadline and any(not m.failed for m in live):
        order = list(range(len(live)))
        rng.shuffle(order)
        _round(live, order, number, emit)
        for m in live:
            m.loop.extended += 0 if m.failed else 1
        number += 1
