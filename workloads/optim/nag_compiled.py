"""NAG with its update step compiled by ``torch.compile`` (inductor).

The compiled function is torch's multi-tensor NAG over lists of params, grads and momentum
buffers. ``lr`` is a 0-dim tensor so a learning-rate schedule changes data, not the graph
(no recompile). Momentum buffers start at zero, so the first step ``b ← μ·0 + g`` equals
torch's ``b ← g`` exactly and needs no second graph. The time of the calls that compiled is
kept in ``compile_ns``, apart from step time, as the measurement rules require.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch


def _nag_foreach(
    params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor],
    lr: torch.Tensor, momentum: float, weight_decay: float,
) -> None:
    if weight_decay != 0.0:
        grads = torch._foreach_add(grads, params, alpha=weight_decay)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)
    nesterov = torch._foreach_add(grads, bufs, alpha=momentum)
    torch._foreach_mul_(nesterov, lr)
    torch._foreach_sub_(params, nesterov)


class CompiledNAG:
    """An updater whose ``step`` runs the compiled NAG; ``compile_ns`` holds compile time."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float,
        weight_decay: float = 0.0, backend: str = "inductor",
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.bufs = [torch.zeros_like(p) for p in self.params]
        self.param_groups = [
            {"params": self.params, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        ]
        self._lr = torch.tensor(float(lr), dtype=self.params[0].dtype)
        self._fn: Callable[..., None] = torch.compile(_nag_foreach, backend=backend, fullgraph=True)
        self._compiled_for: tuple[float, float] | None = None
        self.compile_ns = 0
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_bytes(self) -> int:
        return sum(int(b.nbytes) for b in self.bufs)

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        mu, wd = float(group["momentum"]), float(group["weight_decay"])
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        self._lr.fill_(float(group["lr"]))
        key = (mu, wd)
        t0 = time.monotonic_ns()
        self._fn(self.params, grads, self.bufs, self._lr, mu, wd)
        if key != self._compiled_for:  # the first call with these constants compiled
            self.compile_ns += time.monotonic_ns() - t0
            self._compiled_for = key
        self.steps += 1


def build_compiled(params: Iterable[Any], lr: float, momentum: float, weight_decay: float) -> CompiledNAG:
    return CompiledNAG(params, lr, momentum, weight_decay)
