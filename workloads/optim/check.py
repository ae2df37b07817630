"""Correctness before speed: a kernel variant's trajectory against its torch.optim reference.

:func:`max_rel_diff_vs_reference` trains two identical copies of a model side by side on the
same batches, one with the variant and one with ``spec.reference``, and returns the largest
relative parameter difference. Compare it with :data:`TOLERANCE` for the parameters' dtype
(:func:`tolerance_for`); a variant above it is reported as wrong, not as fast.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch

from workloads.optim import OptimizerSpec

# Largest max_rel_diff accepted after 10 steps. fp32: the variants reorder or fuse a few
# roundings (fused, compiled and ort may use FMA or a different association), which is
# ~1e-7 relative per step and grows through the model; 1e-5 leaves room for that while a
# wrong formula (e.g. heavy-ball instead of Nesterov, a missed first step) gives >1e-3.
TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-10,
    torch.float32: 1e-5,
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
}


def tolerance_for(dtype: torch.dtype) -> float:
    """The accepted max relative difference for parameters of ``dtype``."""
    try:
        return TOLERANCE[dtype]
    except KeyError:
        raise ValueError(
            f"no tolerance for dtype {dtype} (known: {', '.join(map(str, TOLERANCE))})"
        ) from None


def max_rel_diff_vs_reference(
    model: torch.nn.Module | Callable[[], torch.nn.Module],
    spec: OptimizerSpec,
    kernel: str,
    hparams: dict[str, Any],
    steps: int = 10,
    make_batch: Callable[[], tuple[Any, Any]] | None = None,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    frontend: Callable[[Any], Any] | None = None,
    seed: int = 0,
    observe: Callable[[Any], None] | None = None,
) -> float:
    """Max over parameters of ``max|p_var − p_ref| / (max|p_ref| + eps)`` over ``steps`` steps.

    ``observe``, when given, receives the variant's updater after the last step (the agent
    takes the compiled kernel's compile time from it: compilation happens here first).

    The reference (``spec.reference``) trains a copy of the model on real batches; the
    variant updates its own copy with the *same* gradients, step by step. Feeding both the
    one gradient stream isolates the update kernel: otherwise rounding differences of
    10⁻⁷ (fused or compiled kernels associate differently) are amplified by the training
    dynamics of a real model into percent-level parameter differences within a few steps,
    and a correct kernel would look wrong. ``model`` (or a factory) is copied twice, so the
    caller's model is left untouched. ``make_batch`` and ``loss_fn`` are required.
    """
    if make_batch is None or loss_fn is None:
        raise ValueError("max_rel_diff_vs_reference needs make_batch and loss_fn")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    base = model if isinstance(model, torch.nn.Module) else model()
    var_model, ref_model = copy.deepcopy(base), copy.deepcopy(base)
    hp = spec.hparams(hparams)
    updater = spec.build(var_model, kernel, hp)
    reference = spec.reference(ref_model.parameters(), hp)
    var_params = list(var_model.parameters())
    ref_params = list(ref_model.parameters())
    eps = torch.finfo(torch.float32).tiny
    worst = 0.0
    for index in range(steps):
        inputs, targets = make_batch()
        reference.zero_grad()
        updater.zero_grad()
        torch.manual_seed(seed + index)
        x = frontend(inputs) if frontend is not None else inputs
        loss_fn(ref_model(x), targets).backward()
        with torch.no_grad():
            for p_var, p_ref in zip(var_params, ref_params, strict=True):
                if p_ref.grad is None:
                    continue
                if p_var.grad is None:
                    p_var.grad = p_ref.grad.detach().clone()
                else:  # flat kernels keep .grad as views into their buffer: write through
                    p_var.grad.copy_(p_ref.grad)
        reference.step()
        updater.step()
        with torch.no_grad():
            for p_var, p_ref in zip(var_params, ref_params, strict=True):
                scale = p_ref.detach().abs().max().double().item() + eps
                diff = (p_var.detach().double() - p_ref.detach().double()).abs().max().item()
                worst = max(worst, diff / scale)
    if observe is not None:
        observe(updater)
    return worst
