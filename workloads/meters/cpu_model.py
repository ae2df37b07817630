"""Estimated energy from a linear CPU power model: P = P_idle + (P_max − P_idle) × utilisation.

Used only where no meter measures. The model is linear, so the window's mean utilisation
gives its energy exactly (no sampling thread). Utilisation is the busy fraction of all CPUs
from ``/proc/stat`` when readable (what the device as a whole did), else this process's CPU
time ÷ (wall time × usable cores). Readings are labelled ``estimated:cpu-model`` and carry
the watts and where they came from (``energy.cpu_model_source``): never aggregate them with
measured ones.
"""

from __future__ import annotations

import os
import time
from typing import Any, Mapping

from workloads.meters.base import METERS, EnergyMeter, EnergyReading, read_text, sysfs


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

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.idle_w = float(config.get("cpu_idle_w", 0.0) or 0.0)
        self.max_w = float(config.get("cpu_max_w", 0.0) or 0.0)
        self.params_source = str(config.get("cpu_model_source", "") or "unstated")
        self.stat_path = sysfs(self.root, "/proc/stat")
        self._stat0: tuple[int, int] | None = None
        self._cpu0_s = 0.0

    @property
    def source(self) -> str:
        return "estimated:cpu-model"

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        idle, peak = float(config.get("cpu_idle_w", 0) or 0), float(config.get("cpu_max_w", 0) or 0)
        if peak <= idle:
            return (
                f"cpu-model needs energy.cpu_max_w > energy.cpu_idle_w, got {peak} and {idle} "
                "(set both in the device profile, with cpu_model_source saying where they come from)"
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
        )
