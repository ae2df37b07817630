"""NAG with its update step compiled by ``torch.compile`` (inductor).

The compiled function is torch's multi-tensor NAG over lists of params, grads and momentum
buffers. ``lr`` is a 0-dim tensor so a learning-rate schedule changes data, not the graph
(no recompile). Momentum buffers start at zero, so the first step ``b ← μ·0 + g`` equals
torch's ``b ← g`` exactly and needs no second graph. The time of the calls that compiled is
kept in ``compile_ns``, apart from step time, as the measurement rules require.

Parameters are passed as 1-D views in groups of at most ``group_size`` tensors: inductor's
compile time grows with the number of tensors in one graph (measured here: 158 tensors ~33 s;
2000 tensors did not finish in 6 min), and groups of identical shapes share one compiled
graph, so 2000 equal tensors compile once. Each distinct group is one dynamo recompile, so
the recompile limit is raised to the number of groups while stepping.

A parameter without a gradient goes through the graph with a zero gradient (so the graph
stays the same from step to step) and is then put back as it was, parameter and momentum,
which is what torch.optim does with a ``None`` grad.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch

from workloads.optim.flat import keep_unchanged

DEFAULT_GROUP_SIZE = 128


def _recompile_limit_key() -> str:
    """torch 2.7 renamed dynamo's ``cache_size_limit`` to ``recompile_limit``; a board may have either."""
    return "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"


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
        weight_decay: float = 0.0, backend: str = "inductor", group_size: int = DEFAULT_GROUP_SIZE,
    ) -> None:
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size!r}")
        self.params = [p for p in params if p.requires_grad]
        strided = [tuple(p.shape) for p in self.params if not p.is_contiguous()]
        if strided:
            raise ValueError(
                f"the compiled NAG kernel needs contiguous parameters, got strided ones of shapes "
                f"{strided[:3]}; call .contiguous() on the model's parameters (e.g. no channels_last)"
            )
        self.bufs = [torch.zeros_like(p) for p in self.params]
        self._flat_params = [p.detach().view(-1) for p in self.params]
        self._flat_bufs = [b.view(-1) for b in self.bufs]
        self._groups = [range(i, min(i + group_size, len(self.params))) for i in range(0, len(self.params), group_size)]
        self.param_groups = [
            {"params": self.params, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        ]
        self._lr = torch.tensor(float(lr), dtype=self.params[0].dtype)
        if backend == "inductor":
            from workloads.capabilities import require_cxx

            require_cxx("the compiled NAG kernel")
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
        grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params]
        missing = [i for i, p in enumerate(self.params) if p.grad is None]
        restore = keep_unchanged([t for i in missing for t in (self.params[i], self.bufs[i])])
        self._lr.fill_(float(group["lr"]))
        key = (mu, wd)
        t0 = time.monotonic_ns()
        with torch._dynamo.config.patch(**{_recompile_limit_key(): max(8, len(self._groups) + 1)}):
            for idx in self._groups:
                ps, bs = self._flat_params[idx.start : idx.stop], self._flat_bufs[idx.start : idx.stop]
                self._fn(ps, grads[idx.start : idx.stop], bs, self._lr, mu, wd)
        restore()
        if key != self._compiled_for:  # the first call with these constants compiled
            self.compile_ns += time.monotonic_ns() - t0
            self._compiled_for = key
        self.steps += 1

