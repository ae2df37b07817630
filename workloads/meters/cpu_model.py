"""Estimated energy from a linear CPU power model: P = P_idle + (P_max − P_idle) × utilisation.

Used only where no meter measures. The model is linear, so the window's mean utilisation
gives its energy exactly (no sampling thread). Utilisation is the busy fraction of all CPUs
from ``/proc/stat`` when readable (what the device as a whole did), else this process's CPU
time ÷ (wall time × usable cores). Readings are labelled ``estimated:cpu-model`` and carry
the watts and where they came from (``energy.cpu_model_source``): never aggregate them with
measured ones.

The watts come from the profile (``cpu_idle_w``, ``cpu_max_w``), or, with
``energy.cpu_model = "default"``, from :func:`default_model_w`: :data:`DEFAULT_W_PER_CPU` per
logical CPU at full load and :data:`DEFAULT_IDLE_FRACTION` of that at idle. That default is a
rough, documented guess for an x86 host (docs/meters.md), good for "which variant uses less
CPU energy" on one machine, not for absolute joules.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

from workloads.meters.base import METERS, EnergyMeter, EnergyReading, read_text, sysfs

# Default power model: the package power of current desktop and server x86 parts at full load
# divided by their logical CPUs is about 3-6 W (e.g. 65 W / 20 threads, 280 W / 128 threads,
# 125 W / 24 threads); idle package power is about a quarter to a third of full load
# (SPECpower_ssj2008 results). Labelled estimated; never aggregated with measured energy.
DEFAULT_W_PER_CPU = 4.0
DEFAULT_IDLE_FRACTION = 0.3
DEFAULT_SOURCE = (
    f"default cpu model: {DEFAULT_W_PER_CPU:g} W per logical CPU at full load, idle "
    f"{DEFAULT_IDLE_FRACTION:.0%} of that (docs/meters.md); a guess, not a measurement"
)


def default_model_w(cpus: int) -> tuple[float, float]:
    """(idle W, full-load W) of the default model for ``cpus`` logical CPUs."""
    peak = DEFAULT_W_PER_CPU * max(1, cpus)
    return DEFAULT_IDLE_FRACTION * peak, peak


def model_watts(config: Mapping[str, Any]) -> tuple[float, float, str]:
    """(idle W, full-load W, where they come from) for an energy section."""
    idle = float(config.get("cpu_idle_w", 0.0) or 0.0)
    peak = float(config.get("cpu_max_w", 0.0) or 0.0)
    if peak <= idle and str(config.get("cpu_model", "") or "") == "default":
        idle, peak = default_model_w(os.cpu_count() or 1)
        return idle, peak, DEFAULT_SOURCE
    return idle, peak, str(config.get("cpu_model_source", "") or "unstated")


def parse_proc_stat(text: str) -> tuple[int, int]:
    """(busy, total) jiffies from the aggregate ``cpu`` line of ``/proc/stat`` (pure)."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            values = [int(v) for v in parts[1:9]]  # user..steal; guest is inside user
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return sum(values) - idle, sum(values)
    raise ValueError(f"/proc/stat has no aggregate 'cpu' line: {text[:80]!r}")


def model_power_w(idle_w: float, max_w: float, utilisation: float) -> float:
    """The linear model, utilisation clamped to [0, 1]."""
    return idle_w + (max_w - idle_w) * min(1.0, max(0.0, utilisation))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@METERS.register("cpu-model")
class CpuModelMeter(EnergyMeter):
    """Energy estimated from CPU utilisation (source ``estimated:cpu-model``)."""

    NAME = "cpu-model"
    REFRESH_S = 0.01  # /proc/stat counts in jiffies (USER_HZ = 100)

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.idle_w, self.max_w, self.params_source = model_watts(config)
        self.stat_path = sysfs(self.root, "/proc/stat")
        self._stat0: tuple[int, int] | None = None
        self._cpu0_s = 0.0

    @property
    def source(self) -> str:
        return "estimated:cpu-model"

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        idle, peak, _ = model_watts(config)
        if peak <= idle:
            return (
                f"cpu-model needs energy.cpu_max_w > energy.cpu_idle_w, got {peak} and {idle} "
                "(set both in the device profile, with cpu_model_source saying where they come "
                "from, or energy.cpu_model = \"default\" for the documented default model)"
            )
        return None

    def _stat(self) -> tuple[int, int] | None:
        try:
            return parse_proc_stat(read_text(self.stat_path))
        except (OSError, ValueError):
            return None

    def start(self) -> None:
        self._stat0 = self._stat()
        self._cpu0_s = time.process_time()
        self._t0_ns = time.monotonic_ns()

    def stop(self) -> EnergyReading:
        duration_ns = time.monotonic_ns() - self._t0_ns
        cpu_s = time.process_time() - self._cpu0_s
        stat1 = self._stat()
        if self._stat0 is not None and stat1 is not None and stat1[1] > self._stat0[1]:
            util = (stat1[0] - self._stat0[0]) / (stat1[1] - self._stat0[1])
            basis = "proc-stat"
        else:
            wall_s = max(duration_ns / 1e9, 1e-9)
            util = cpu_s / (wall_s * usable_cores())
            basis = "process-cpu-time"
        power_w = model_power_w(self.idle_w, self.max_w, util)
        energy_j = power_w * duration_ns / 1e9
        min_ns = int(self.min_window_s * 1e9)
        return EnergyReading(
            energy_j=energy_j,
            duration_ns=duration_ns,
            source=self.source,
            channels={"cpu": energy_j},
            details={
                "meter": self.NAME,
                "utilisation": util,
                "utilisation_basis": basis,
                "cpu_idle_w": self.idle_w,
                "cpu_max_w": self.max_w,
                "params_source": self.params_source,
            },
            flags=("window-short",) if duration_ns < min_ns else (),
            min_window_ns=min_ns,
        )
