"""What measuring energy costs the measured step: the same tiny training step, meter off and on.

"On" is a power meter whose background sampler thread reads a hwmon ``power1_input`` file
(a fixture tree, so it runs anywhere) at the profile's default 50 ms interval and at an
aggressive 5 ms. Blocks of steps with the meter off and on are interleaved, so drift (heat,
other load) hits both alike; ``extra_info`` records the median step time of each and their
difference. Speed is shown, never asserted. Run:
``pytest tests/bench/test_meter_overhead.py --benchmark-only -s``.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures.sysfs import write_tree
from workloads.meters import open_meter
from workloads.meters.base import EnergyMeter

BLOCKS = 10  # off/on pairs
STEPS_PER_BLOCK = 60


def tiny_step() -> Any:
    """A closure running one training step of a small MLP (forward, backward, SGD update)."""
    gen = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(128, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x, y = torch.randn(32, 128, generator=gen), torch.randint(0, 10, (32,), generator=gen)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return step


def timed_block(step: Any, meter: EnergyMeter | None) -> list[int]:
    """Step times (ns) of one block, with the meter running around it if given."""
    if meter is not None:
        meter.start()
    times = []
    for _ in range(STEPS_PER_BLOCK):
        t0 = time.perf_counter_ns()
        step()
        times.append(time.perf_counter_ns() - t0)
    if meter is not None:
        meter.stop()
    return times


def compare(step: Any, meter: EnergyMeter) -> dict[str, float]:
    """Interleaved off/on blocks; median step time of each and the difference."""
    for _ in range(20):  # warm-up outside the comparison
        step()
    off: list[int] = []
    on: list[int] = []
    for _ in range(BLOCKS):
        off += timed_block(step, None)
        on += timed_block(step, meter)
    off_ns, on_ns = statistics.median(off), statistics.median(on)
    p90_off, p90_on = (statistics.quantiles(v, n=10)[-1] for v in (off, on))
    return {
        # a step that collides with a sample is slower; the median hides it, the p90 less so
        "p90_diff_pct": 100.0 * (p90_on - p90_off) / p90_off,
        "mean_diff_pct": 100.0 * (statistics.fmean(on) - statistics.fmean(off)) / statistics.fmean(off),
        "median_off_us": off_ns / 1e3,
        "median_on_us": on_ns / 1e3,
        "diff_us": (on_ns - off_ns) / 1e3,
        "diff_pct": 100.0 * (on_ns - off_ns) / off_ns,
        "steps_each": float(len(off)),
    }


@pytest.mark.parametrize("interval_s", [0.05, 0.005])
def test_power_sampler_overhead_on_a_training_step(
    benchmark: Any, tmp_path: Path, interval_s: float
) -> None:
    write_tree(tmp_path, {
        "/sys/class/hwmon/hwmon0/name": "bench",
        "/sys/class/hwmon/hwmon0/power1_input": 2_500_000,
    })
    meter = open_meter({"meter": "hwmon", "root": str(tmp_path), "sample_interval_s": interval_s})
    step = tiny_step()
    result = benchmark.pedantic(compare, args=(step, meter), rounds=1, iterations=1)
    benchmark.extra_info.update(result, sample_interval_s=interval_s)
    print(f"\nsampler every {interval_s * 1e3:.0f} ms: {result}")
    assert result["steps_each"] == BLOCKS * STEPS_PER_BLOCK
