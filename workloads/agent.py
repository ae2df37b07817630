"""The agent: runs on the device, takes an explicit case spec on stdin, prints JSON lines.

Usage (the host does this through its transport)::

    <python> agent-<hash>.pyz run   < case.json      # one case
    <python> agent-<hash>.pyz probe < {"threads": 2}  # device ceilings
    <python> agent-<hash>.pyz hello                    # versions and environment

Every stdout line is one protocol record (workloads.schema); nothing else is printed on
stdout (library noise goes to stderr). A failed case prints an ``error`` record and the
agent exits 0: the host decides what a failure means. Imports only the standard library,
torch and the workloads package (never the host's ``harness``).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from workloads import capabilities, schema, system
from workloads.meters.case import CaseInstruments

AGENT_VERSION = "0.1.0"


class Emitter:
    """Writes protocol records to the real stdout, one flushed line each."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, record: schema.Record) -> None:
        self.stream.write(schema.dump_line(record) + "\n")
        self.stream.flush()


def hello() -> schema.Hello:
    import torch

    env = {
        "torch_threads": torch.get_num_threads(),
        "torch_config": torch.__config__.parallel_info().splitlines()[0:3],
        "pid": os.getpid(),
        "optional": capabilities.report(),  # module versions (None: absent) and the C++ compiler
    }
    return schema.Hello(
        agent_version=AGENT_VERSION,
        python=platform.python_version(),
        torch=torch.__version__,
        platform=platform.platform(),
        machine=platform.machine(),
        cpu_count=os.cpu_count() or 0,
        env=env,
    )


def setup_threads(spec: dict[str, Any]) -> None:
    import torch

    torch.set_num_threads(int(spec["threads"]))
    cores = spec.get("cpu_affinity") or []
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(int(c) for c in cores))


def check_correctness(spec: dict[str, Any], task: Any, accel: str = "cpu") -> dict[str, Any]:
    """Run the case's kernel variant beside the reference torch.optim for ``check_steps`` steps.

    ``task`` is prepared as the timed case is (``trainer.prepare``: its device, memory format),
    and the steps run under the case's autocast dtype on ``accel``, so the kernel that is
    timed is the kernel that is checked. Both copies start from the task's weights and see the
    same gradients; lr changes every step and weight decay is non-zero
    (``workloads.optim.check``). The tolerance is that of the parameters' dtype (fp32 under
    bf16 autocast: parameters and optimizer state stay fp32).
    """
    from workloads import trainer
    from workloads.optim import OPTIMIZERS
    from workloads.optim.check import (
        LR_FACTORS,
        check_hparams,
        max_rel_diff_vs_reference,
        param_tolerance,
    )

    steps = int(spec.get("check_steps", 0))
    if steps <= 0:
        return {"checked": False, "reason": spec.get("check_reason") or "check_steps = 0"}
    opt = OPTIMIZERS.get(spec["optimizer"])
    compile_ns: list[int] = []
    with trainer.autocast(spec["dtype"], accel):
        diff = max_rel_diff_vs_reference(
            task.model, opt, spec["kernel"], opt.hparams(spec.get("hparams")), steps=steps,
            make_batch=task.next_batch, loss_fn=task.loss_fn, frontend=task.frontend,
            seed=int(spec["seed"]),
            observe=lambda u: compile_ns.append(int(getattr(u, "compile_ns", 0) or 0)),
        )
    tol = param_tolerance(task.model)
    return {
        "checked": True,
        "reference": f"{opt.name} via torch.optim, for-loop implementation",
        "steps": steps,
        "accel": accel,
        "dtype": spec["dtype"],
        "param_dtype": str(next(p for p in task.model.parameters() if p.requires_grad).dtype),
        "lr_factors": list(LR_FACTORS),
        "weight_decay": check_hparams(opt, spec.get("hparams")).get("weight_decay"),
        "compile_ns": compile_ns[0] if compile_ns else 0,  # a compiled kernel compiles here first
        "max_rel_diff": diff,
        "tolerance": tol,
        "ok": diff <= tol,
    }


@dataclass
class Variant:
    """One case's built model, update kernel and the figures taken before its first step."""

    spec: dict[str, Any]
    prepared: Any
    updater: Any
    opt_spec: Any
    param_count: int
    flops: Any
    activation_bytes: int
    compile_ns: int = 0


def build_task(spec: dict[str, Any]) -> Any:
    """The case's workload built from its seed (weights and data stream)."""
    import torch

    import workloads.models  # noqa: F401  (fills the workload registry)
    from workloads.workload import WORKLOADS

    torch.manual_seed(int(spec["seed"]))
    return WORKLOADS.get(spec["workload"]).make(int(spec["batch"]), int(spec["seed"]), spec.get("options"))


def optimizer_for(spec: dict[str, Any]) -> Any:
    """The case's optimizer entry, refusing a kernel it does not offer."""
    from workloads.optim import OPTIMIZERS

    opt_spec = OPTIMIZERS.get(spec["optimizer"])
    if spec["kernel"] not in opt_spec.kernels:
        raise ValueError(
            f"optimizer {opt_spec.name!r} has no kernel {spec['kernel']!r} "
            f"(has: {', '.join(opt_spec.kernels)})"
        )
    return opt_spec


def refuse_what_the_device_lacks(spec: dict[str, Any]) -> None:
    """Refuse, before anything is built or measured, a case that needs a part the device lacks."""
    if spec.get("onnx_inference"):
        capabilities.require_module("onnxruntime", "ONNX inference (--onnx-inference)")
    if spec.get("mode") == "compile":
        capabilities.require_cxx("mode = compile")


def checked_variant(spec: dict[str, Any]) -> dict[str, Any]:
    """The correctness check of the case's variant on a fresh build, prepared as the timed case is."""
    from workloads import trainer

    refuse_what_the_device_lacks(spec)
    optimizer_for(spec)
    if int(spec.get("check_steps", 0)) <= 0:
        return check_correctness(spec, None)
    checked = trainer.prepare(build_task(spec), spec)  # the timed device and memory format
    return check_correctness(spec, checked.task, checked.device.type)


def build_variant(spec: dict[str, Any], task: Any, emit: Emitter,
                  counted: tuple[Any, int] | None = None) -> Variant:
    """Prepare ``task`` for the case (device, mode), build its update kernel, count FLOPs and
    activations, and announce the case (``case_start``).

    ``counted`` is ``(flops, activation_bytes)`` already counted for the same workload, batch,
    dtype and mode (a group's earlier variant): neither depends on the optimizer, so a group
    counts them once.
    """
    from workloads import trainer
    from workloads.probe import flops_per_step

    opt_spec = optimizer_for(spec)
    prepared = trainer.prepare(task, spec)
    task = prepared.task
    updater = opt_spec.build(task.model, spec["kernel"], opt_spec.hparams(spec.get("hparams")))
    params = [p for p in task.model.parameters() if p.requires_grad]
    param_count = sum(p.numel() for p in params)
    inputs, targets = task.next_batch()  # drawn either way: a group's data streams stay alike
    if counted is not None:
        flops, activation_bytes = counted
    else:
        with trainer.autocast(spec["dtype"], prepared.device.type):
            flops = flops_per_step(task.model, task.frontend, inputs, targets, task.loss_fn)
            activation_bytes = trainer.saved_activation_bytes(task.model, task.frontend, inputs,
                                                              targets, task.loss_fn)
    emit(schema.CaseStart(case_id=spec["case_id"], spec=spec, param_count=param_count,
                          param_bytes=sum(p.numel() * p.element_size() for p in params)))
    return Variant(spec, prepared, updater, opt_spec, param_count, flops, activation_bytes)


def case_summary(v: Variant, measured: dict[str, Any], correctness: dict[str, Any],
                 steps: StepLoop) -> dict[str, Any]:
    """The ``case_end`` summary of one case: meters' figures plus the case's own."""
    from workloads import trainer
    from workloads.models.common import describe_task

    summary: dict[str, Any] = {
        **measured,
        # the model's compilation (mode = compile) plus the update kernel's, which first
        # happens in the correctness check when there is one
        "compile_ns": v.compile_ns + int(getattr(v.updater, "compile_ns", 0) or 0)
        + int(correctness.get("compile_ns", 0)),
        "update_bytes_per_step": v.opt_spec.traffic_bytes_per_param * v.param_count,
        "flops_per_step": v.flops,
        "saved_activation_bytes": v.activation_bytes,
        "accel": v.prepared.device.type,
        "model_config": describe_task(v.prepared.task),  # which member of the workload family ran
        "warmup_forced": steps.warmup_forced,
        "energy_extended_steps": steps.extended,
    }
    device_peak = trainer.device_peak_bytes(v.prepared)
    if device_peak is not None:
        summary["device_peak_bytes"] = device_peak
    return summary


def run_case(spec: dict[str, Any], emit: Emitter) -> bool:
    """Build the case, check its variant, run warm-up and measured steps. True when it finished."""
    import torch

    from workloads import trainer
    from workloads.faults import maybe_fail
    from workloads.optim import state_bytes

    case_id = spec["case_id"]
    start = time.monotonic_ns()
    setup_threads(spec)
    correctness = checked_variant(spec)
    inst = CaseInstruments(spec)
    try:
        v = build_variant(spec, build_task(spec), emit)
        maybe_fail("start", case_id)
        if spec.get("mode") == "compile":
            v.compile_ns = trainer.compile_warmup(v.prepared, v.updater, spec["dtype"])
        trainer.reset_peak_memory(v.prepared)
        inst.settle()  # after compiling: cooldown to the profile's temperature, then idle power
        inst.reset_memory()  # building, the FLOP count and compiling do not set the high-water mark
        inst.mark_baseline()  # resident before the first step: activations are peak minus this
        steps = StepLoop(spec, v.prepared, v.updater, emit, maybe_fail)
        steps.warm_up()
        inst.start()
        steps.measure()
        steps.extend(inst.window_short_s, inst.max_extend_s)  # up to the meter's minimum window
        inst.stop()
        records, measured = inst.finish(case_id, steps.measured_ns)
        for record in records:
            emit(record)
    finally:
        inst.close()
    summary = case_summary(v, measured, correctness, steps)
    if steps.target is not None:
        summary["target_loss"] = steps.target
        summary["reached_step"] = steps.reached
    if spec.get("onnx_inference"):
        from workloads.onnx_infer import onnx_inference_study

        task = v.prepared.task
        sample = task.next_batch()[0]
        if task.frontend is not None:
            with torch.no_grad():
                sample = task.frontend(sample)
        summary["onnx_inference"] = onnx_inference_study(
            task.model.cpu(), sample.cpu(), threads=[int(spec["threads"])], repeats=10)
    emit(
        schema.CaseEnd(
            case_id=case_id,
            steps=len(steps.measured_ns),
            warmup_steps=steps.warmup_steps,
            wall_ns=time.monotonic_ns() - start,
            peak_rss_bytes=int(measured.get("peak_rss_bytes") or system.ru_maxrss_bytes()),
            state_bytes=state_bytes(v.updater),
            correctness=correctness,
            summary=summary,
        )
    )
    return True


class StepLoop:
    """Warm-up (a fixed count, or until the step time is stable) then the measured steps."""

    def __init__(self, spec: dict[str, Any], prepared: Any, updater: Any, emit: Emitter,
                 fail: Callable[[str, str], None]) -> None:
        from workloads.system import WarmupDetector

        self.spec, self.prepared, self.updater, self.emit, self.fail = spec, prepared, updater, emit, fail
        self.index = 0
        self.measured_ns: list[int] = []
        self.warmup_steps = 0
        self.warmup_forced = False
        minimum = int(spec["warmup"])
        self.detector = (
            WarmupDetector(min_steps=minimum, max_steps=max(minimum, int(spec.get("warmup_max", 50))))
            if spec.get("warmup_until_stable") else None
        )
        self.target = float(spec["target_loss"]) if spec.get("target_loss") is not None else None
        self.reached = -1
        self.extended = 0
        self.round = -1  # set by workloads.paired before each alternated step

    def step(self, warmup: bool) -> tuple[int, float]:
        from workloads import trainer

        self.fail(f"step={self.index}", self.spec["case_id"])
        phases, step_ns, loss = trainer.train_step(self.prepared, self.updater, self.spec["dtype"],
                                                   float(self.spec.get("slowdown", 0.0)),
                                                   str(self.spec.get("slowdown_phase", "step")))
        value = float(loss.detach())
        self.emit(schema.Step(case_id=self.spec["case_id"], index=self.index, warmup=warmup,
                              phases_ns=phases, step_ns=step_ns, loss=value, round=self.round))
        self.index += 1
        return step_ns, value

    def warm_up(self) -> None:
        if self.detector is None:
            for _ in range(int(self.spec["warmup"])):
                self.step(warmup=True)
        else:
            while not self.detector.done:
                step_ns, _ = self.step(warmup=True)
                self.detector.observe(step_ns)
            self.warmup_forced = self.detector.forced
        self.warmup_steps = self.index

    def measure(self) -> None:
        smoothed: float | None = None
        for _ in range(int(self.spec["steps"])):
            step_ns, value = self.step(warmup=False)
            self.measured_ns.append(step_ns)
            if self.target is not None:  # the optimizer study stops a run at its target loss
                smoothed = value if smoothed is None else 0.8 * smoothed + 0.2 * value
                if smoothed <= self.target:
                    self.reached = self.index - 1
                    break

    def extend(self, short_s: Callable[[], float], limit_s: float) -> None:
        """More measured steps while the energy window is shorter than its meter resolves.

        At most ``limit_s`` seconds; a window still short after that is flagged by the meter.
        Runs that stop at a target loss are not extended (their step count is the result).
        """
        if self.target is not None:
            return
        deadline = time.monotonic() + limit_s
        while short_s() > 0 and time.monotonic() < deadline:
            step_ns, _ = self.step(warmup=False)
            self.measured_ns.append(step_ns)
            self.extended += 1


class ProtocolMismatch(ValueError):
    """The host speaks another protocol version than this agent."""


def _read_spec(stdin: TextIO) -> dict[str, Any]:
    """A case spec, or a group spec (``group`` and its ``cases``), from the host, checked."""
    text = stdin.read()
    spec = json.loads(text)
    if not isinstance(spec, dict):
        raise ValueError("the case spec must be a JSON object")
    version = spec.get("protocol")
    if version != schema.PROTOCOL_VERSION:
        raise ProtocolMismatch(
            f"the host sent a spec for protocol version {version!r}; this agent speaks "
            f"{schema.PROTOCOL_VERSION}. Run the agent bundle built from the host's own checkout "
            "(the host pushes it when its content changes)")
    if "group" in spec:
        cases = spec.get("cases")
        if not isinstance(cases, list) or not cases or not all(isinstance(c, dict) for c in cases):
            raise ValueError("a group spec needs a non-empty list of case specs under 'cases'")
        for case in cases:
            _check_case_keys(case)
        return spec
    _check_case_keys(spec)
    return spec


def _check_case_keys(spec: dict[str, Any]) -> None:
    missing = [k for k in ("case_id", "workload", "optimizer", "kernel", "threads", "batch",
                           "dtype", "steps", "warmup", "seed") if k not in spec]
    if missing:
        raise ValueError(f"the case spec lacks {', '.join(missing)}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "hello"
    # Anything a library prints must not corrupt the protocol stream.
    out = sys.stdout
    sys.stdout = sys.stderr
    emit = Emitter(out)
    try:
        emit(hello())
    except ImportError as exc:
        out.write(schema.dump_line(schema.Error(case_id="", kind="environment",
                  message=f"cannot import torch on the device ({exc}); install torch for the "
                  "profile's python or point [agent].python at one that has it")) + "\n")
        return 3
    if command == "hello":
        emit(schema.Bye(cases_ok=0, cases_failed=0))
        return 0
    if command == "doctor":
        from workloads.doctor import device_checks

        request = json.loads(sys.stdin.read() or "{}")
        base = hello()
        emit(schema.Hello(**{**base.__dict__, "env": {**base.env, "checks": device_checks(request)}}))
        emit(schema.Bye(cases_ok=0, cases_failed=0))
        return 0
    if command == "probe":
        from workloads.probe import run_probe

        request = json.loads(sys.stdin.read() or "{}")
        emit(run_probe(int(request.get("threads", 1)),
                       accels=tuple(str(a) for a in request.get("accels", ["cpu"]))))
        emit(schema.Bye(cases_ok=0, cases_failed=0))
        return 0
    if command != "run":
        emit(schema.Error(case_id="", kind="usage", message=f"unknown agent command {command!r} (run, probe, doctor, hello)"))
        return 2
    case_id = ""
    try:
        spec = _read_spec(sys.stdin)
        if "group" in spec:
            from workloads.paired import run_group

            ok, failed = run_group(spec, emit)
            emit(schema.Bye(cases_ok=ok, cases_failed=failed))
            return 0
        case_id = str(spec["case_id"])
        run_case(spec, emit)
    except Exception as exc:  # one failed case is a record, not a crash
        emit(schema.Error(case_id=case_id, kind=type(exc).__name__, message=str(exc),
                          traceback=traceback.format_exc(limit=20)))
        emit(schema.Bye(cases_ok=0, cases_failed=1))
        return 0
    emit(schema.Bye(cases_ok=1, cases_failed=0))
    return 0


def leave(code: int) -> None:
    """End the agent process with ``code`` once its streams are flushed, skipping the
    interpreter's teardown: after torch (and ``torch._dynamo``, which every ``torch.optim``
    optimizer imports) that teardown takes about 1.5 s on a laptop core and longer on a phone,
    and the harness waits for every agent's exit status. Everything the agent opens (meters,
    files, threads) is closed before :func:`main` returns."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    leave(main())
