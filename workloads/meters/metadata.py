"""Every environment and meter key the agent reports: its type, unit and meaning, and a validator.

Snapshots (``workloads.system.snapshot``), memory figures and energy readings use exactly
these keys, so the host and the reports can check and label them without guessing. Like
pyperf's metadata: one table, one validator per key, unknown keys refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from workloads.registry import Registry


@dataclass(frozen=True)
class MetaKey:
    """One metadata key: its value type, its unit ('' for none) and what it means."""

    name: str
    type: str  # float | int | bool | str | map[str,float] | map[str,int]
    unit: str
    description: str
    minimum: float | None = None


METADATA: Registry[MetaKey] = Registry("metadata key")


def _key(name: str, type_: str, unit: str, description: str, minimum: float | None = None) -> None:
    METADATA.add(name, MetaKey(name, type_, unit, description, minimum))


_key("t_ns", "int", "ns", "monotonic clock when the snapshot was taken", 0)
_key("temp_c", "map[str,float]", "°C", "temperature per thermal zone (zone type)")
_key("max_temp_c", "float", "°C", "hottest selected thermal zone")
_key("freq_khz", "map[str,int]", "kHz", "current frequency per CPU (scaling_cur_freq)", 0)
_key("max_freq_khz", "map[str,int]", "kHz", "policy maximum per CPU (scaling_max_freq)", 0)
_key("hw_max_freq_khz", "map[str,int]", "kHz", "hardware maximum per CPU (cpuinfo_max_freq)", 0)
_key("throttle_count", "int", "", "sum of x86 core/package thermal_throttle counters", 0)
_key("battery_pct", "float", "%", "battery charge level (power_supply/battery/capacity)", 0)
_key("battery_status", "str", "", "Charging, Discharging, Full, Not charging or Unknown")
_key("charging", "bool", "", "a charger is connected or the battery is charging")
_key("load_1m", "float", "", "1-minute load average", 0)
_key("energy_j", "float", "J", "energy over the measured window, total of the meter", 0)
_key("energy_source", "str", "", "measured:<meter>, estimated:cpu-model or none")
_key("idle_power_w", "float", "W", "mean power while idle before the case (baseline)", 0)
_key("active_energy_j", "float", "J", "energy_j minus idle_power_w × duration")
_key("power_w", "float", "W", "mean power over the measured window", 0)
_key("peak_rss_bytes", "int", "B", "peak resident set size of the agent in this case", 0)
_key("vm_hwm_bytes", "int", "B", "VmHWM from /proc/self/status (resettable peak RSS)", 0)
_key("ru_maxrss_bytes", "int", "B", "getrusage peak RSS since the process started", 0)
_key("rss_bytes", "int", "B", "current resident set size", 0)
_key("uss_bytes", "int", "B", "unique set size: private pages only", 0)
_key("pss_bytes", "int", "B", "proportional set size: private plus shared/sharers", 0)
_key("peak_reset", "bool", "", "whether clearing VmHWM before the case worked")
_key("cooldown_s", "float", "s", "time waited for thermal zones to cool before the case", 0)
_key("cooldown_timed_out", "bool", "", "the cooldown gave up before reaching cooldown_c")
_key("warmup_steps", "int", "", "steps the warm-up detector needed before measuring", 0)
_key("energy_reason", "str", "", "why energy_j is missing (empty when measured)")
_key("energy_per_step_j", "float", "J", "energy_j divided by the measured steps", 0)
_key("energy_window_ns", "int", "ns", "length of the energy meter's window", 0)
_key("energy_min_window_ns", "int", "ns", "the shortest window the meter resolves (20 refreshes)", 0)
_key("energy_flags", "str", "", "why the energy figure is kept out of comparisons: window-short, "
     "counter-restart:<ch>, counter-stale:<ch>, idle-<flag>, negative-active (empty: sound)")
_key("baseline_rss_bytes", "int", "B", "RSS before the measured task was built", 0)
_key("temp_before_c", "float", "°C", "hottest selected zone when the measured window began")
_key("temp_after_c", "float", "°C", "hottest selected zone when the measured window ended")
_key("freq_before_khz", "float", "kHz", "mean current frequency of the case's CPUs, before", 0)
_key("freq_after_khz", "float", "kHz", "mean current frequency of the case's CPUs, after", 0)
_key("throttled", "bool", "", "throttling evidence between the before and after snapshots")
_key("throttle_reasons", "str", "", "that evidence, one sentence per reason, '; '-separated")
_key("warnings", "str", "", "stability flags, ';'-separated (noisy, throttled, hot, ...)")

_SCALARS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
}


def validate(name: str, value: Any) -> Any:
    """Return ``value`` if it fits key ``name``; raise ValueError naming key, value and rule.

    ``None`` is accepted for every key (not readable on this device).
    """
    key = METADATA.get(name)
    if value is None:
        return value
    if key.type.startswith("map["):
        check = _SCALARS[key.type[len("map[str,"):-1]]
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and check(v) for k, v in value.items()
        ):
            raise ValueError(f"{name} should be {key.type} ({key.unit}), got {value!r}")
        items = list(value.values())
    else:
        if not _SCALARS[key.type](value):
            raise ValueError(f"{name} should be {key.type} ({key.unit or 'no unit'}), got {value!r}")
        items = [value]
    for item in items:
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{name} should be finite, got {value!r}")
        if key.minimum is not None and not isinstance(item, (bool, str)) and item < key.minimum:
            raise ValueError(f"{name} should be ≥ {key.minimum} {key.unit}, got {value!r}")
    return value


def validate_all(values: Mapping[str, Any]) -> list[str]:
    """Every problem in a metadata dict (unknown keys included); empty when all is well."""
    problems = []
    for name, value in values.items():
        try:
            validate(name, value)
        except (ValueError, KeyError) as exc:
            problems.append(str(exc))
    return problems
