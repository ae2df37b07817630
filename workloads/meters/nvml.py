"""NVIDIA GPUs through NVML: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load).

``pynvml`` (package ``nvidia-ml-py``) is optional; without it, or without a GPU that
supports the energy counter (Volta and later), the meter reports why. It measures the GPUs
only, not the CPU or the rest of the board.
"""

from __future__ import annotations

import importlib
from typing import Any, Mapping

from workloads.meters.base import METERS, EnergyMeter


def load_pynvml() -> tuple[Any, str]:
    """(module, '') or (None, reason): pynvml is imported only when asked for."""
    try:
        module = importlib.import_module("pynvml")
    except ImportError:
        return None, "pynvml is not installed (pip install nvidia-ml-py)"
    return module, ""


def _init(nvml: Any) -> tuple[list[Any], str]:
    """GPU handles that support the energy counter, or a reason why there are none."""
    try:
        nvml.nvmlInit()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    except Exception as exc:  # NVMLError has many subclasses; all mean "no NVML here"
        return [], f"NVML is not usable: {exc}"
    if not handles:
        return [], "NVML found no GPU"
    try:
        for handle in handles:
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    except Exception as exc:
        return [], f"this GPU has no NVML energy counter (Volta or later needed): {exc}"
    return handles, ""


@METERS.register("nvml")
class NvmlMeter(EnergyMeter):
    """Total GPU energy counters per GPU (source ``measured:nvml``)."""

    NAME = "nvml"
    REFRESH_S = 0.1  # NVML's energy counter refreshes about every 100 ms on recent GPUs (a
    # 0.46 s window on an H200 read -4.6 J of active energy); no timestamp comes with it
    HAS_COUNTERS = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.nvml, reason = load_pynvml()
        if self.nvml is None:
            raise RuntimeError(reason)
        self.handles, reason = _init(self.nvml)
        if reason:
            raise RuntimeError(reason)

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        nvml, reason = load_pynvml()
        if nvml is None:
            return reason
        handles, reason = _init(nvml)
        if handles:
            try:
                nvml.nvmlShutdown()
            except Exception:  # the probe only looks; a failed shutdown changes nothing
                pass
        return reason or None

    def read_energy_j(self) -> dict[str, float]:
        try:
            return {
                f"gpu{i}": self.nvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1e3
                for i, h in enumerate(self.handles)
            }
        except Exception as exc:  # NVMLError (GPU lost, driver reset) becomes the reason
            raise OSError(f"NVML energy counter: {exc}") from None

    def close(self) -> None:
        super().close()
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # shutting down twice or after a driver reset is harmless
            pass
