"""What every workload family shares: channel rounding and turning a model into a Task.

A workload's ``build`` makes a model and a batch source, then calls
:func:`classification_task`, which adds the loss, the input shape and the facts the host
reports beside the timings (parameter count, forward MACs per sample).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from workloads.data.sources import image_source
from workloads.models.macs import count_macs, count_params
from workloads.workload import Task


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10 % below ``value``.

    The rule from the MobileNet reference code; width multipliers go through it so that
    width 1.0 gives exactly the published layer sizes.
    """
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def init_weights(model: nn.Module) -> None:
    """torchvision's initialisation: Kaiming fan-out convs, unit BN, small normal linear."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def zero_init_head(head: nn.Linear) -> None:
    """Start the classifier at zero: every class equally likely, loss exactly ln(classes).

    Random head weights add logit noise that plain SGD at lr 0.05 (batch 8) must first
    undo, and with momentum that overshoots; a zero head keeps the first steps stable while
    its gradient (which does not vanish) trains it at once.
    """
    nn.init.zeros_(head.weight)
    if head.bias is not None:
        nn.init.zeros_(head.bias)


def scale_conv_init(model: nn.Module, factor: float) -> None:
    """Multiply every convolution's initial weights by ``factor`` (each must feed a batch norm).

    A convolution followed by batch norm computes the same function at any weight scale,
    but its effective SGD step is lr / |w|^2: a factor below 1 makes the same learning rate
    shape the features faster, without touching what the network computes at the start.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(factor)


def zero_init_last_norm(branch: nn.Module) -> None:
    """Zero the scale of a residual branch's last normalisation layer ("zero-init residual").

    Each block then starts as the identity, so a deep net behaves like a shallow one at
    first and tolerates a large learning rate (Goyal et al. 2017); torchvision offers this
    as ``zero_init_residual``.
    """
    norms = [m for m in branch.modules() if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm))]
    if not norms:
        raise ValueError(f"{type(branch).__name__} has no normalisation layer to zero")
    nn.init.zeros_(norms[-1].weight)


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Initialise weights from ``seed`` without disturbing the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def check_positive(name: str, value: Any) -> None:
    """Refuse a size option that is not a positive number, quoting it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"option {name}={value!r} must be a positive number")


def classification_task(
    model: nn.Module,
    next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    *,
    batch: int,
    example: torch.Tensor,
    domain: str,
    num_classes: int,
    frontend: nn.Module | None = None,
    info: dict[str, Any] | None = None,
) -> Task:
    """Wrap a classifier and its batch source into a Task with cross-entropy loss.

    ``example`` is one input sample with a leading batch dimension of 1, shaped like what
    ``next_batch`` returns; it fixes ``input_shape`` and is run once (through the front end,
    when there is one) to count the forward MACs of one sample. The batch source is not
    touched, so the first batch the agent draws is the source's first batch.
    """
    features = frontend(example) if frontend is not None else example
    facts = {
        "domain": domain,
        "num_classes": num_classes,
        "params": count_params(model),
        # two samples: batch norm in training mode refuses one value per channel
        "forward_macs_per_sample": count_macs(model, torch.cat([features, features])) // 2,
    }
    if frontend is not None:
        facts["frontend_output_shape"] = tuple(features.shape[1:])
    facts.update(info or {})
    return Task(
        model=model,
        next_batch=next_batch,
        loss_fn=nn.CrossEntropyLoss(),
        frontend=frontend,
        input_shape=(batch, *example.shape[1:]),
        info=facts,
    )


def image_task(
    make_model: Callable[[], nn.Module],
    *,
    batch: int,
    seed: int,
    num_classes: int,
    resolution: int,
    data: str,
    info: dict[str, Any],
) -> Task:
    """An image-classification Task: model built from ``seed``, images from ``data``."""
    check_positive("num_classes", num_classes)
    check_positive("resolution", resolution)
    with seeded(seed):
        model = make_model()
    source = image_source(
        data, batch=batch, seed=seed, num_classes=num_classes, resolution=resolution
    )
    return classification_task(
        model, source, batch=batch, example=torch.zeros(1, 3, resolution, resolution),
        domain="image", num_classes=num_classes, info={**info, "data": data},
    )  # fmt: skip


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 100_000 else f"{n / 1e3:.1f} k"


def describe_task(task: Task) -> str:
    """What a built workload is, in words: width or size, input, vocabulary, classes, parameters.

    E.g. ``width 0.5, 32x32 px, 10 classes, 0.70 M params`` or ``size S, 49x10 MFCC, 12
    classes, 23.8 k params``: the names in the suites are families, this says which member
    ran (``harness list``, the ``model_config`` case column, the report).
    """
    info = task.info
    parts = []
    for key, label in (("width", "width"), ("size", "size"), ("dim", "dim"), ("depth", "depth")):
        if key in info:
            value = info[key]
            parts.append(f"{label} {value:g}" if isinstance(value, float) else f"{label} {value}")
    if info.get("domain") == "image" and len(task.input_shape) == 4:
        parts.append(f"{task.input_shape[2]}x{task.input_shape[3]} px")
    if "vocab_size" in info:
        parts.append(f"vocab {int(info['vocab_size']):,}, seq {info.get('seq_len')}")
    if "frontend_output_shape" in info:
        frames, bins = info["frontend_output_shape"][:2]
        kind = "MFCC" if str(info.get("features", "")).startswith("mfcc") else "log-mel"
        parts.append(f"{frames}x{bins} {kind}")
    parts.append(f"{info.get('num_classes')} classes")
    parts.append(f"{_count(int(info.get('params', 0)))} params")
    return ", ".join(parts)
