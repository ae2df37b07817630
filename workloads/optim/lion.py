"""Lion (EvoLved Sign Momentum), written from its paper's update rule.

Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2:

    c = β1·m + (1 − β1)·g
    p ← p − lr·(sign(c) + wd·p)
    m ← β2·m + (1 − β2)·g

torch has no Lion, so this is its own reference; tests check it against hand-computed steps.
One state tensor (m) per parameter; ideal fp32 traffic: read p, g, m; write p, m = 20 B.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

LION_DEFAULTS: dict[str, float] = {"lr": 1e-4, "beta1": 0.9, "beta2": 0.99, "weight_decay": 0.0}


class Lion(torch.optim.Optimizer):
    """Lion with a single-tensor (``foreach=False``) or multi-tensor (``foreach=True``) path."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = LION_DEFAULTS["lr"],
        betas: tuple[float, float] = (LION_DEFAULTS["beta1"], LION_DEFAULTS["beta2"]),
        weight_decay: float = LION_DEFAULTS["weight_decay"],
        foreach: bool = False,
    ) -> None:
        if lr <= 0.0:
            raise ValueError(f"Lion needs lr > 0, got lr={lr!r}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Lion needs 0 <= beta{i + 1} < 1, got {beta!r}")
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay, "foreach": foreach}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if "exp_avg" not in self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            moms = [self.state[p]["exp_avg"] for p in params]
            update = _foreach_step if group["foreach"] else _single_tensor_step
            update(params, grads, moms, group["lr"], *group["betas"], group["weight_decay"])
        return loss


def _single_tensor_step(
    params: list[torch.Tensor], grads: list[torch.Tensor], moms: list[torch.Tensor],
    lr: float, beta1: float, beta2: float, wd: float,
) -> None:
    for p, g, m in zip(params, grads, moms, strict=True):
        if wd != 0.0:
            p.mul_(1.0 - lr * wd)  # p − lr·wd·p, applied with the sign step below
        c = m.mul(beta1).add_(g, alpha=1.0 - beta1)
        p.add_(c.sign_(), alpha=-lr)
        m.mul_(beta2).add_(g, alpha=1.0 - beta2)


def _foreach_step(
    params: list[torch.Tensor], grads: list[torch.Tensor], moms: list[torch.Tensor],
    lr: float, beta1: float, beta2: float, wd: float,
) -> None:
    if wd != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * wd)
    c = torch._foreach_mul(moms, beta1)
    torch._foreach_add_(c, grads, alpha=1.0 - beta1)
    torch._foreach_sign_(c)
    torch._foreach_add_(params, c, alpha=-lr)
    torch._foreach_mul_(moms, beta2)
    torch._foreach_add_(moms, grads, alpha=1.0 - beta2)
