"""Correctness before speed: a kernel variant's trajectory against its torch.optim reference.

:func:`max_rel_diff_vs_reference` trains two identical copies of a model side by side on the
same batches, one with the variant and one with ``spec.reference``, and returns the largest
relative parameter difference. Compare it with :data:`TOLERANCE` for the *parameters'* dtype
(:func:`tolerance_for`, :func:`param_tolerance`): under bf16 autocast the parameters, gradients
and optimizer state stay fp32, so the update kernel is held to fp32's tolerance. A variant
above it is reported as wrong, not as fast.

The checked steps change the learning rate every step (:data:`LR_FACTORS`) and use a non-zero
weight decay (:data:`CHECK_WEIGHT_DECAY` where the case's is 0), so a kernel that caches lr
or ignores weight decay cannot pass. The agent runs the check on the device, memory format
and autocast dtype of the timed case.
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


# lr of checked step k: the case's lr × LR_FACTORS[k % len]; a kernel that keeps the lr it was
# built with, or reads it once, drifts from the reference at the second step.
LR_FACTORS = (1.0, 0.6, 1.4, 0.8, 1.2)
# weight decay of the checked steps where the case's own is 0 (a kernel that ignores it
# then differs by lr·wd·p per step: ~5e-4 of p at lr 0.05, far above fp32's tolerance)
CHECK_WEIGHT_DECAY = 1e-2


def check_hparams(spec: OptimizerSpec, hparams: dict[str, Any] | None) -> dict[str, Any]:
    """The case's hyper-parameters with a non-zero weight decay for the check."""
    hp = spec.hparams(hparams)
    if "weight_decay" in hp and not hp["weight_decay"]:
        hp["weight_decay"] = CHECK_WEIGHT_DECAY
    return hp


def param_tolerance(model: torch.nn.Module) -> float:
    """The tolerance for the dtype of ``model``'s trainable parameters (the updated tensors)."""
    dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    if not dtypes:
        raise ValueError("the model has no trainable parameters to check")
    return max(tolerance_for(d) for d in dtypes)


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
    The hyper-parameters are :func:`check_hparams` of ``hparams``, and the lr of step k is
    the case's lr × ``LR_FACTORS[k]``.

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
    hp = check_hparams(spec, hparams)
    updater = spec.build(var_model, kernel, hp)
    reference = spec.reference(ref_model.parameters(), hp)
    var_params = list(var_model.parameters())
    ref_params = list(ref_model.parameters())
    eps = torch.finfo(torch.float32).tiny
    worst = 0.0
    base_lr = float(hp["lr"])
    for index in range(steps):
        for group in [*reference.param_groups, *updater.param_groups]:
            group["lr"] = base_lr * LR_FACTORS[index % len(LR_FACTORS)]
        inputs, targets = make_batch()
        reference.zero_grad()
        updater.zero_grad()
        torch.manual_seed(seed + index)
        x = frontend(inputs) if frontend is not None else inputs
        loss_fn(ref_model(x), targets).backward()
        fed = [(p_var, p_ref.grad.detach().clone())
               for p_var, p_ref in zip(var_params, ref_params, strict=True) if p_ref.grad is not None]
        if fed:  # delivered as backward delivers them: accumulated into .grad (in place into a
            # flat kernel's views, whose hooks note which parameters got a gradient this step)
            torch.autograd.backward([p for p, _ in fed], [g for _, g in fed])
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
