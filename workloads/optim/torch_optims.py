"""torch.optim optimizers with their implementation chosen explicitly, never by default.

``forloop`` is the single-tensor path (torch's CPU default), ``foreach`` the multi-tensor
path, ``fused`` the fused kernel. NAG is SGD with momentum and ``nesterov=True``.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch

from workloads.optim import OPTIMIZERS, OptimizerSpec
from workloads.optim.nag_variants import with_nag_variants

TORCH_KERNELS = ("forloop", "foreach", "fused")


def _impl(kernel: str) -> dict[str, bool]:
    if kernel not in TORCH_KERNELS:
        raise ValueError(f"unknown torch kernel {kernel!r} (known: {', '.join(TORCH_KERNELS)})")
    return {"foreach": kernel == "foreach", "fused": kernel == "fused"}


class FusedSGD(torch.optim.SGD):
    """torch's fused SGD that also takes a parameter whose first gradient arrives late.

    torch's fused kernel needs a momentum buffer for every parameter once any has one, and
    fails (``expected Tensor ... got NoneType``) when a parameter that had no gradient at the
    first step gets one later. A zero buffer there gives ``b ← μ·0 + g = g``, exactly the
    for-loop's first step ``b ← g`` (dampening is 0 for these specs).
    """

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        for group in self.param_groups:
            if not group["momentum"]:
                continue
            started = any("momentum_buffer" in self.state.get(p, {}) for p in group["params"])
            for p in group["params"] if started else ():
                if p.grad is not None and self.state[p].get("momentum_buffer") is None:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return super().step(closure)


def _sgd_args(hp: Mapping[str, Any], *, momentum: bool, nesterov: bool) -> dict[str, Any]:
    return {
        "lr": hp["lr"],
        "momentum": hp["momentum"] if momentum else 0.0,
        "nesterov": nesterov,
        "weight_decay": hp["weight_decay"],
    }


def _sgd_spec(name: str, description: str, *, momentum: bool, nesterov: bool) -> OptimizerSpec:
    defaults = {"lr": 0.05, "weight_decay": 0.0}
    if momentum:
        defaults["momentum"] = 0.9

    def reference(params: Iterable[Any], hp: Mapping[str, Any]) -> torch.optim.Optimizer:
        return torch.optim.SGD(
            list(params), **_sgd_args(hp, momentum=momentum, nesterov=nesterov), foreach=False
        )

    def build(model: Any, kernel: str, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
        cls = FusedSGD if kernel == "fused" else torch.optim.SGD
        return cls(
            model.parameters(), **_sgd_args(hp, momentum=momentum, nesterov=nesterov), **_impl(kernel)
        )

    return OptimizerSpec(
        name=name,
        description=description,
        defaults=defaults,
        kernels=TORCH_KERNELS,
        state_tensors_per_param=1 if momentum else 0,
        traffic_bytes_per_param=20 if momentum else 12,
        build=build,
        reference=reference,
    )


# NAG also has our own kernels: compiled, flat and ort (workloads.optim.nag_variants).
OPTIMIZERS.add("nag", with_nag_variants(_sgd_spec(
    "nag", "SGD with Nesterov momentum (torch.optim.SGD, nesterov=True)", momentum=True, nesterov=True
)))
OPTIMIZERS.add("momentum", _sgd_spec("momentum", "SGD with heavy-ball momentum", momentum=True, nesterov=False))
OPTIMIZERS.add("sgd", _sgd_spec("sgd", "plain SGD", momentum=False, nesterov=False))


def _adamw_reference(params: Iterable[Any], hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        list(params), lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
        weight_decay=hp["weight_decay"], foreach=False,
    )


def _adamw_build(model: Any, kernel: str, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(
        model.parameters(), lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"],
        weight_decay=hp["weight_decay"], **_impl(kernel),
    )


OPTIMIZERS.add(
    "adamw",
    OptimizerSpec(
        name="adamw",
        description="Adam with decoupled weight decay (torch.optim.AdamW)",
        defaults={"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.01},
        kernels=TORCH_KERNELS,
        state_tensors_per_param=2,
        traffic_bytes_per_param=28,
        build=_adamw_build,
        reference=_adamw_reference,
    ),
)
