"""Micro-benchmarks of one NAG update, every kernel variant, on three parameter layouts.

Layouts: ``many_small`` (2000 tensors of 1024 floats: dispatch-bound), ``mobilenet_v2``
(the 158 parameter tensors of MobileNetV2 at width 1.0 / 1000 classes, 3,504,872 params, from
workloads.models.mobilenet) and ``large_25m`` (5 tensors of 5 M floats: bandwidth-bound).
Each benchmark times ``step()`` alone (gradients stay fixed) and records in ``extra_info``
the ideal bytes moved (20 B/param: read p, g, b; write p, b) and the GB/s that implies at the
median and the best time. Speed is shown, never asserted. ``flat`` is flat buffers updated
by torch's fused kernel in one call; two extra rows explain it: ``flat_elementwise`` (the same
buffers updated by 4-5 chunked in-place ops, FlatNAG) and ``flat_unchunked`` (those ops over
the whole buffer at once). Run: ``pytest tests/bench --benchmark-only [--bench-threads 2]``.

Caveat: the step is repeated on the same buffers with no backward pass in between, so a
layout whose p, g and b (12 B/param) fit in the last-level cache runs from cache (here, a
32 MiB L3: many_small's 24 MB entirely, mobilenet_v2's 42 MB partly) and can exceed the
DRAM bandwidth ceiling; large_25m (300 MB) is the DRAM-bound case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from workloads.optim import OPTIMIZERS
from workloads.optim.flat import FlatNAG
from workloads.optim.nag_variants import with_nag_variants

NAG = with_nag_variants(OPTIMIZERS.get("nag"))
HP = NAG.hparams({"lr": 1e-3})
BYTES_PER_PARAM = 20


def mobilenet_v2_shapes() -> list[tuple[int, ...]]:
    from workloads.models.mobilenet import MobileNetV2, MobileNetV2Config

    model = MobileNetV2(MobileNetV2Config(width=1.0, num_classes=1000))
    return [tuple(p.shape) for p in model.parameters()]


LAYOUTS: dict[str, Callable[[], list[tuple[int, ...]]]] = {
    "many_small": lambda: [(1024,)] * 2000,
    "mobilenet_v2": mobilenet_v2_shapes,
    "large_25m": lambda: [(5_000_000,)] * 5,
}


class ParamBag(torch.nn.Module):
    """A module that only holds parameters of the given shapes."""

    def __init__(self, shapes: list[tuple[int, ...]]) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.params = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(s, generator=gen) * 0.1) for s in shapes
        )


EXTRA: dict[str, Callable[[torch.nn.Module], Any]] = {
    "flat_unchunked": lambda m: FlatNAG(m.parameters(), HP["lr"], HP["momentum"], HP["weight_decay"], chunk_elems=None),
    "flat_elementwise": lambda m: FlatNAG(m.parameters(), HP["lr"], HP["momentum"], HP["weight_decay"]),
}


def build_updater(model: torch.nn.Module, kernel: str) -> Any:
    updater = EXTRA[kernel](model) if kernel in EXTRA else NAG.build(model, kernel, HP)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is None:
                p.grad = torch.empty_like(p)
            p.grad.copy_(torch.randn(p.shape, generator=gen))
    return updater


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kernel", list(NAG.kernels) + list(EXTRA))
def test_nag_update(benchmark: Any, layout: str, kernel: str, bench_threads: int) -> None:
    shapes = LAYOUTS[layout]()
    model = ParamBag(shapes)
    updater = build_updater(model, kernel)
    updater.step()  # first step: allocates torch's buffers, compiles the compiled kernel
    params = sum(p.numel() for p in model.parameters())
    benchmark.group = f"nag-update-{layout}-t{bench_threads}"
    benchmark(updater.step)
    stats = benchmark.stats.stats
    moved = BYTES_PER_PARAM * params
    benchmark.extra_info.update({
        "layout": layout, "kernel": kernel, "threads": bench_threads, "params": params,
        "tensors": len(shapes), "bytes_per_update": moved,
        "gbs_at_median": moved / stats.median / 1e9, "gbs_at_min": moved / stats.min / 1e9,
        "compile_ns": getattr(updater, "compile_ns", None),
    })
