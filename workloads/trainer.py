"""The timed training step: data, front end, forward, backward, update, zero_grad, each timed.

``update`` is the optimizer's ``step()`` alone, the same work for every kernel (read p, g and
state; write p and state: the 20 B/param of NAG's traffic model). ``zero_grad`` is its own
phase because kernels clear gradients differently: torch's optimizers drop them
(``set_to_none``; the next backward then allocates fresh ones, inside ``backward``), the flat
and ort kernels zero their flat gradient buffer in place (a 4 B/param write). The step time
is the sum of all phases.

Step-level variants of a case:

- ``mode``: ``eager`` (default), ``compile`` (``torch.compile`` of the model; the first
  call's compile time is its own figure, never folded into step time), ``channels_last``
  (image models: weights and inputs in NHWC).
- ``dtype``: ``fp32`` or ``bf16`` (autocast; parameters and optimizer state stay fp32).
- ``accel``: ``cpu`` or ``cuda``; on CUDA every phase boundary synchronizes the device so
  that a phase's time is its own, and peak memory is the CUDA allocator's.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable

MODES = ("eager", "compile", "channels_last")
PHASES = ("data", "frontend", "forward", "backward", "update", "zero_grad")
ACCELS = ("cpu", "cuda")


def autocast(dtype: str, accel: str = "cpu") -> Any:
    import torch

    if dtype == "bf16":
        return torch.autocast(accel, dtype=torch.bfloat16)
    if dtype == "fp32":
        return contextlib.nullcontext()
    raise ValueError(f"unknown dtype {dtype!r} (known: fp32, bf16)")


@dataclass
class Prepared:
    """A task moved to its device and put in its mode, with the clock that times it."""

    task: Any
    model: Any
    device: Any
    sync: Callable[[], None]
    compile_ns: int = 0


def _move(value: Any, device: Any, channels_last: bool) -> Any:
    import torch

    if not isinstance(value, torch.Tensor):
        return value
    value = value.to(device, non_blocking=False)
    if channels_last and value.dim() == 4:
        value = value.contiguous(memory_format=torch.channels_last)
    return value


def prepare(task: Any, spec: dict[str, Any]) -> Prepared:
    """Apply the case's mode and accelerator to a built task."""
    import torch

    mode = spec.get("mode", "eager")
    accel = spec.get("accel", "cpu")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (known: {', '.join(MODES)})")
    if accel not in ACCELS:
        raise ValueError(f"unknown accel {accel!r} (known: {', '.join(ACCELS)})")
    if accel == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("accel = cuda, but torch sees no CUDA device here (torch.cuda.is_available() is False)")
    device = torch.device(accel)
    model = task.model.to(device)
    channels_last = mode == "channels_last"
    if channels_last:
        if spec.get("domain", "image") != "image" and len(getattr(task, "input_shape", ())) != 4:
            raise ValueError("mode channels_last applies to image models (4-D inputs) only")
        model = model.to(memory_format=torch.channels_last)
    task.model = model
    raw_next = task.next_batch

    def next_batch() -> tuple[Any, Any]:
        x, y = raw_next()
        return _move(x, device, channels_last), _move(y, device, False)

    task.next_batch = next_batch
    if task.frontend is not None and hasattr(task.frontend, "to"):
        task.frontend = task.frontend.to(device)
    sync = torch.cuda.synchronize if accel == "cuda" else (lambda: None)
    forward_model = model
    if mode == "compile":
        forward_model = torch.compile(model)
    return Prepared(task=task, model=forward_model, device=device, sync=sync)


def reset_peak_memory(prepared: Prepared) -> None:
    import torch

    if prepared.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(prepared.device)


def device_peak_bytes(prepared: Prepared) -> int | None:
    import torch

    if prepared.device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(prepared.device))
    return None


def _pad(start_ns: int, fraction: float) -> None:
    """Busy-wait ``fraction`` of the time since ``start_ns`` (an injected, known slowdown)."""
    clock = time.monotonic_ns
    end = clock() + int((clock() - start_ns) * fraction)
    while clock() < end:
        pass


def train_step(
    prepared: Prepared, updater: Any, dtype: str, slowdown: float = 0.0, slowdown_phase: str = "step"
) -> tuple[dict[str, int], int, Any]:
    """One training step; returns (phase nanoseconds, step nanoseconds, loss tensor).

    ``slowdown`` (calibration of the regression gate only) busy-waits for that fraction of
    ``slowdown_phase``'s own time at the end of that phase: ``step`` (the whole step so far,
    waited inside the update phase), ``data``, ``forward``, ``backward`` or ``update``.
    """
    import torch

    task, model, sync = prepared.task, prepared.model, prepared.sync
    clock = time.monotonic_ns
    frontend = task.frontend
    with autocast(dtype, prepared.device.type):
        sync()
        t0 = clock()
        inputs, targets = task.next_batch()
        sync()
        if slowdown > 0 and slowdown_phase == "data":
            _pad(t0, slowdown)
        t1 = clock()
        if frontend is not None:
            with torch.no_grad():
                inputs = frontend(inputs)
            sync()
        t2 = clock()
        loss = task.loss_fn(model(inputs), targets)
        sync()
        if slowdown > 0 and slowdown_phase == "forward":
            _pad(t2, slowdown)
        t3 = clock()
    loss.backward()
    sync()
    if slowdown > 0 and slowdown_phase == "backward":
        _pad(t3, slowdown)
    t4 = clock()
    updater.step()
    sync()
    if slowdown > 0 and slowdown_phase in ("step", "update"):  # calibration: a known delay
        _pad(t0 if slowdown_phase == "step" else t4, slowdown)
    t5 = clock()
    updater.zero_grad()
    sync()
    t6 = clock()
    phases = {
        "data": t1 - t0,
        "frontend": t2 - t1 if frontend is not None else 0,
        "forward": t3 - t2,
        "backward": t4 - t3,
        "update": t5 - t4,
        "zero_grad": t6 - t5,
    }
    return phases, t6 - t0, loss


def compile_warmup(prepared: Prepared, updater: Any, dtype: str) -> int:
    """For ``mode = compile``: run one step untimed so compilation is its own figure (ns)."""
    start = time.monotonic_ns()
    train_step(prepared, updater, dtype)
    prepared.compile_ns = time.monotonic_ns() - start
    return prepared.compile_ns


def saved_activation_bytes(model: Any, frontend: Any, inputs: Any, targets: Any, loss_fn: Any) -> int:
    """Bytes autograd keeps for backward in one forward pass: the step's activation memory.

    Counted on a copy of the model (its statistics and gradients stay untouched) with
    saved-tensor hooks; each storage counts once, and parameters (also saved by some ops)
    not at all. Unlike peak-minus-baseline RSS, this does not depend on whether the
    allocator reuses pages freed earlier in the process.
    """
    import copy

    import torch

    net = copy.deepcopy(model)
    param_storages = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen: set[int] = set()
    total = 0

    def pack(t: Any) -> Any:
        nonlocal total
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_storages and ptr not in seen:
            seen.add(ptr)
            total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        x = frontend(inputs) if frontend is not None else inputs
        loss_fn(net(x), targets)
    return total
