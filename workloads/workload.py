"""What a workload is: a model, a seeded learnable data source, an optional front end, a loss.

Workloads are registered by name in :data:`WORKLOADS`. ``build(batch, seed, options)``
returns a :class:`Task` that the agent drives step by step; ``options`` overrides the
entry's ``defaults`` (sizes, classes, resolution, ...), and unknown option names are refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from workloads.registry import Registry, merge_options


@dataclass
class Task:
    """One built workload, ready for training steps.

    ``next_batch`` is the *data* phase (host-side generation of one batch); ``frontend``,
    when present, is its own timed phase (e.g. the log-mel front end of a speech model)
    and runs inside every training step; ``loss_fn(outputs, targets)`` closes forward.
    """

    model: Any
    next_batch: Callable[[], tuple[Any, Any]]
    loss_fn: Callable[[Any, Any], Any]
    frontend: Callable[[Any], Any] | None = None
    input_shape: tuple[int, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkloadSpec:
    """A registry entry: the name users type, its domain, and how to build it."""

    name: str
    domain: str  # "image" | "nlp" | "speech"
    description: str
    defaults: Mapping[str, Any]
    build: Callable[..., Task]  # build(batch: int, seed: int, **options) -> Task

    def make(self, batch: int, seed: int, options: Mapping[str, Any] | None = None) -> Task:
        opts = merge_options("workload", self.name, "option", self.defaults, options)
        return self.build(batch=batch, seed=seed, **opts)


WORKLOADS: Registry[WorkloadSpec] = Registry("workload")


def register_workload(
    name: str, *, domain: str, description: str, defaults: Mapping[str, Any]
) -> Callable[[Callable[..., Task]], Callable[..., Task]]:
    """Decorator that registers a ``build(batch, seed, **options) -> Task`` function."""

    def deco(build: Callable[..., Task]) -> Callable[..., Task]:
        WORKLOADS.add(name, WorkloadSpec(name, domain, description, dict(defaults), build))
        return build

    return deco
