"""More optimizers beside NAG: torch's Adam, RMSprop, Adagrad, and Lion from its paper.

Each is registered in :data:`workloads.optim.OPTIMIZERS` with the kernels torch offers on
CPU (checked on torch 2.13: Adam and Adagrad take ``fused=True`` on CPU, RMSprop has no
``fused`` argument). Lion is :class:`workloads.optim.lion.Lion`, its own reference.
Importing this module registers the names once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from workloads.optim import OPTIMIZERS, OptimizerSpec
from workloads.optim.lion import LION_DEFAULTS, Lion

ArgsFn = Callable[[Mapping[str, Any]], dict[str, Any]]


def _impl(name: str, kernel: str, kernels: tuple[str, ...]) -> dict[str, bool]:
    if kernel not in kernels:
        raise ValueError(
            f"optimizer {name!r} has no kernel {kernel!r} (kernels: {', '.join(kernels)})"
        )
    return {"foreach": kernel == "foreach", **({"fused": True} if kernel == "fused" else {})}


def _register(
    name: str, description: str, cls: type[torch.optim.Optimizer], args: ArgsFn,
    defaults: Mapping[str, Any], kernels: tuple[str, ...], state_tensors: int,
) -> None:
    """Register a torch optimizer whose kernel is picked with ``foreach``/``fused`` flags."""

    def reference(params: Iterable[Any], hp: Mapping[str, Any]) -> torch.optim.Optimizer:
        return cls(list(params), **args(hp), foreach=False)

    def build(model: Any, kernel: str, hp: Mapping[str, Any]) -> torch.optim.Optimizer:
        return cls(model.parameters(), **args(hp), **_impl(name, kernel, kernels))

    OPTIMIZERS.add(
        name,
        OptimizerSpec(
            name=name, description=description, defaults=dict(defaults), kernels=kernels,
            state_tensors_per_param=state_tensors,
            traffic_bytes_per_param=4 * (3 + 2 * state_tensors),  # read p, g, s…; write p, s…
            build=build, reference=reference,
        ),
    )


_register(
    "adam", "Adam (torch.optim.Adam)", torch.optim.Adam,
    lambda hp: {"lr": hp["lr"], "betas": (hp["beta1"], hp["beta2"]), "eps": hp["eps"],
                "weight_decay": hp["weight_decay"]},
    {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0},
    ("forloop", "foreach", "fused"), state_tensors=2,
)
_register(
    "rmsprop", "RMSprop (torch.optim.RMSprop; no fused kernel in torch)", torch.optim.RMSprop,
    lambda hp: {"lr": hp["lr"], "alpha": hp["alpha"], "eps": hp["eps"],
                "weight_decay": hp["weight_decay"], "momentum": hp["momentum"]},
    {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "weight_decay": 0.0, "momentum": 0.0},
    ("forloop", "foreach"), state_tensors=1,
)
_register(
    "adagrad", "Adagrad (torch.optim.Adagrad)", torch.optim.Adagrad,
    lambda hp: {"lr": hp["lr"], "lr_decay": hp["lr_decay"], "eps": hp["eps"],
                "weight_decay": hp["weight_decay"]},
    {"lr": 1e-2, "lr_decay": 0.0, "eps": 1e-10, "weight_decay": 0.0},
    ("forloop", "foreach", "fused"), state_tensors=1,
)


def _lion_args(hp: Mapping[str, Any]) -> dict[str, Any]:
    return {"lr": hp["lr"], "betas": (hp["beta1"], hp["beta2"]), "weight_decay": hp["weight_decay"]}


def _lion_reference(params: Iterable[Any], hp: Mapping[str, Any]) -> Lion:
    return Lion(list(params), **_lion_args(hp), foreach=False)


def _lion_build(model: Any, kernel: str, hp: Mapping[str, Any]) -> Lion:
    _impl("lion", kernel, ("forloop", "foreach"))
    return Lion(model.parameters(), **_lion_args(hp), foreach=kernel == "foreach")


OPTIMIZERS.add(
    "lion",
    OptimizerSpec(
        name="lion", description="Lion, sign momentum (Chen et al. 2023), written here",
        defaults=dict(LION_DEFAULTS), kernels=("forloop", "foreach"),
        state_tensors_per_param=1, traffic_bytes_per_param=20,
        build=_lion_build, reference=_lion_reference,
    ),
)
