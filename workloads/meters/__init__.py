"""Energy meters, looked up by name: ``open_meter(spec["energy"])`` and ``measure_idle``.

``open_meter`` takes the profile's ``[energy]`` section as a plain dict (the host passes it
inside the case spec) and never raises for a missing meter: it returns a :class:`NullMeter`
whose readings say why nothing was measured. ``"auto"`` tries the measured meters in
:data:`AUTO_ORDER`, then the cpu-model estimate if its watts are set, then gives up with
every meter's reason.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

from workloads.meters import cpu_model, fuel_gauge, hwmon, nvml, odpm, rapl, vcgencmd  # noqa: F401
from workloads.meters.base import METERS, EnergyMeter, EnergyReading, NullMeter

__all__ = [
    "AUTO_ORDER",
    "METERS",
    "EnergyMeter",
    "EnergyReading",
    "NullMeter",
    "describe_meter",
    "idle_reading",
    "measure_idle",
    "open_meter",
]

AUTO_ORDER = ("odpm", "rapl", "jetson-ina3221", "vcgencmd", "hwmon", "nvml", "fuel-gauge")


def _open(name: str, config: Mapping[str, Any]) -> tuple[EnergyMeter | None, str]:
    cls = METERS.get(name)
    reason = cls.probe(config)
    if reason:
        return None, reason
    try:
        return cls(config), ""
    except (OSError, ValueError, RuntimeError) as exc:
        return None, str(exc)


def open_meter(config: Mapping[str, Any]) -> EnergyMeter:
    """The meter the energy section asks for, or a NullMeter carrying the reason.

    An unknown meter name raises ``UnknownNameError`` (a configuration mistake, not a
    device limitation).
    """
    name = str(config.get("meter", "auto") or "auto")
    if name == "none":
        return NullMeter(config)
    if name != "auto":
        meter, reason = _open(name, config)
        return meter if meter is not None else NullMeter(config, f"none available: {name}: {reason}")
    reasons = []
    for candidate in AUTO_ORDER:
        meter, reason = _open(candidate, config)
        if meter is not None:
            return meter
        reasons.append(f"{candidate}: {reason}")
    meter, reason = _open("cpu-model", config)
    if meter is not None:
        return meter
    reasons.append(f"cpu-model: {reason}")
    return NullMeter(config, "none available: " + "; ".join(reasons))


def idle_reading(meter: EnergyMeter, seconds: float) -> EnergyReading | None:
    """A reading of ``seconds`` of doing nothing, lengthened to the meter's minimum window.

    None when ``seconds`` is 0 (no idle baseline asked for).
    """
    if seconds <= 0:
        return None
    meter.start()
    time.sleep(max(seconds, meter.min_window_s))
    return meter.stop()


def measure_idle(meter: EnergyMeter, seconds: float) -> float | None:
    """Mean power over ``seconds`` (at least the meter's minimum window) of doing nothing.

    Reports subtract ``idle_power_w × duration`` from a case's energy to get its active
    energy. None when the meter gives no energy, ``seconds`` is 0, or the reading is flagged
    (a restarted counter: its power would not be the baseline).
    """
    reading = idle_reading(meter, seconds)
    if reading is None or reading.flags:
        return None
    return reading.power_w


def describe_meter(config: Mapping[str, Any]) -> tuple[str, bool, str]:
    """(what the energy section resolves to here, whether that is usable, the fix if not).

    For ``harness doctor``: an explicit ``meter = "none"`` is fine; a meter that was asked
    for (or ``auto``) and is not available is not, and the fix is each meter's reason.
    """
    meter = open_meter(config)
    try:
        if isinstance(meter, NullMeter):
            if str(config.get("meter", "auto")) == "none":
                return "none (energy.meter = 'none')", True, ""
            return "none available", False, meter.reason.removeprefix("none available: ")
        found = f"{meter.NAME} ({meter.source})"
        if meter.source.startswith("estimated:"):
            return found, True, "only an estimate: no measured meter is readable here"
        return found, True, ""
    finally:
        meter.close()
