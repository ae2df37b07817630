"""Optimizers and their kernel variants, looked up by name.

An :class:`OptimizerSpec` builds an updater for a model with one of its kernel variants.
An updater is anything with ``step()``, ``zero_grad()`` and ``param_groups`` (every
``torch.optim.Optimizer`` is one); :func:`state_bytes` measures its state from the tensors.
``reference`` builds the torch.optim implementation a variant is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from workloads.registry import Registry, kernel_names, merge_options


@dataclass(frozen=True)
class OptimizerSpec:
    name: str
    description: str
    defaults: Mapping[str, Any]
    kernels: tuple[str, ...]  # the first is the one torch picks by default on CPU
    state_tensors_per_param: int
    # ideal fp32 traffic of the update phase, step() alone (read p, g, state; write p, state);
    # clearing gradients is the zero_grad phase and is not counted here
    traffic_bytes_per_param: int
    build: Callable[[Any, str, Mapping[str, Any]], Any]  # (model, kernel, hparams) -> updater
    reference: Callable[[Iterable[Any], Mapping[str, Any]], Any]  # (params, hparams) -> optim

    def hparams(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return merge_options("optimizer", self.name, "hyper-parameter", self.defaults, overrides)


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")


def state_bytes(updater: Any) -> int:
    """Bytes of optimizer state held in tensors (momentum buffers, moments, ...)."""
    own = getattr(updater, "state_bytes", None)
    if callable(own):
        return int(own())
    total = 0
    for per_param in getattr(updater, "state", {}).values():
        for value in per_param.values():
            if hasattr(value, "nbytes") and getattr(value, "dim", lambda: 0)() > 0:
                total += int(value.nbytes)
    return total


def all_kernels() -> list[str]:
    """Every kernel variant name any optimizer offers."""
    return kernel_names(OPTIMIZERS)


from workloads.optim import extra, torch_optims  # noqa: E402,F401  (fill the registry)
