"""Everything the agent measures around one case besides step times, in the order it happens.

``CaseInstruments`` wraps the energy meter, the cooldown, the idle baseline, the before/after
snapshots, the peak-RSS reset and the stability flags, so the agent calls a few methods::

    inst = CaseInstruments(spec)          # opens the meter named by spec["energy"]
    inst.reset_memory()                   # before building the measured task
    inst.settle()                         # cooldown, then idle baseline (after building
                                          # and compiling, just before warm-up)
    inst.mark_baseline()                  # resident set before the first step
    ... warm-up steps ...
    inst.start()                          # snapshot before, meter on
    ... measured steps ...
    inst.stop()                           # meter off, snapshot after
    records, summary = inst.finish(case_id, measured_step_ns)
    inst.close()

``records`` are protocol ``meter`` records (full detail in ``extra``, kept in raw.jsonl);
``summary`` holds the scalar figures for the ``case_end`` summary under the column names the
store and the reports use (energy_j, energy_source, idle_power_w, temp_before_c, ...).
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Mapping

from workloads import schema, system
from workloads.meters import idle_reading, open_meter
from workloads.meters.base import EnergyMeter, EnergyReading


def _mean_freq_khz(snap: Mapping[str, Any], cpus: tuple[int, ...]) -> float | None:
    freqs = snap.get("freq_khz") or {}
    chosen = [khz for name, khz in freqs.items() if not cpus or int(name[3:]) in cpus]
    return statistics.fmean(chosen) if chosen else None


class CaseInstruments:
    """Meters, snapshots and flags for one case, configured from the case spec."""

    def __init__(self, spec: Mapping[str, Any], meter: EnergyMeter | None = None) -> None:
        self.energy_cfg: dict[str, Any] = dict(spec.get("energy") or {"meter": "none"})
        self.thermal_cfg: dict[str, Any] = dict(spec.get("thermal") or {})
        self.cpus = tuple(int(c) for c in spec.get("cpu_affinity") or ())
        self.sysfs_root = str(self.energy_cfg.get("root", "") or "")
        self.meter = meter if meter is not None else open_meter(self.energy_cfg)
        self.cooldown: system.CooldownResult | None = None
        self.idle_power_w: float | None = None
        self.idle_flags: tuple[str, ...] = ()
        self._start_ns = 0
        self.peak_reset = False
        self.baseline_rss_bytes: int | None = None
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self.reading: EnergyReading | None = None

    def reset_memory(self) -> None:
        """Reset VmHWM (where the kernel allows) and note the RSS before the task is built."""
        self.peak_reset = system.reset_peak_rss()
        self.baseline_rss_bytes = system.memory_snapshot()["rss_bytes"]

    def mark_baseline(self) -> None:
        """Note the resident set now as the case's baseline (call just before the first step)."""
        self.baseline_rss_bytes = system.memory_snapshot()["rss_bytes"]

    def settle(self) -> None:
        """Cool down to ``thermal.cooldown_c``, then measure idle power for ``idle_window_s``."""
        self.cooldown = system.cooldown(self.thermal_cfg)
        idle = idle_reading(self.meter, float(self.energy_cfg.get("idle_window_s", 0.0)))
        if idle is not None:
            self.idle_power_w = None if idle.flags else idle.power_w
            self.idle_flags = tuple(f"idle-{flag}" for flag in idle.flags)

    def start(self) -> None:
        """Snapshot the device state and start the meter: the measured window begins."""
        self.before = system.snapshot(self.thermal_cfg, self.sysfs_root)
        self.meter.start()
        self._start_ns = time.monotonic_ns()

    def window_short_s(self) -> float:
        """Seconds the running window still lacks to reach the meter's minimum (0: enough).

        The agent keeps stepping while this is positive (up to ``energy.max_extend_s``), so
        a short case still gives an energy figure the meter can resolve.
        """
        if self.meter.source == "none" or not self._start_ns:
            return 0.0
        return max(0.0, self.meter.min_window_s - (time.monotonic_ns() - self._start_ns) / 1e9)

    @property
    def max_extend_s(self) -> float:
        return float(self.energy_cfg.get("max_extend_s", 60.0) or 0.0)

    def stop(self) -> None:
        """Stop the meter and snapshot the device state: the measured window ends."""
        self.reading = self.meter.stop()
        self.after = system.snapshot(self.thermal_cfg, self.sysfs_root)

    def close(self) -> None:
        """Stop the meter if a failure left it running, and release it."""
        self.meter.close()

    def summary(self, step_ns: list[int]) -> dict[str, Any]:
        """Scalar figures of the case, named as the store's and reports' columns."""
        reading = self.reading or EnergyReading(None, 0, "none", reason="the meter never ran")
        memory = system.memory_snapshot()
        energy = reading.energy_j
        active = None
        if energy is not None and self.idle_power_w is not None:
            active = energy - self.idle_power_w * reading.duration_ns / 1e9
        energy_flags = list(reading.flags) + list(self.idle_flags if energy is not None else ())
        if active is not None and active < 0:
            energy_flags.append("negative-active")
        cool = self.cooldown
        flags = system.stability_flags(step_ns, self.before, self.after, {
            "hot_c": float(self.thermal_cfg.get("hot_c", 85.0)),
            "cooldown": cool,
            "energy_source": reading.source,
            "energy_flags": energy_flags,
        })
        reasons = system.throttle_reasons(self.before, self.after)
        return {
            "energy_j": energy,
            "energy_source": reading.source,
            "energy_reason": reading.reason,
            "energy_per_step_j": energy / len(step_ns) if energy is not None and step_ns else None,
            "energy_window_ns": reading.duration_ns,
            "energy_min_window_ns": reading.min_window_ns,
            # why the figure is not to be compared (window-short, counter-restart:<ch>,
            # counter-stale:<ch>, idle-..., negative-active); empty when it is sound
            "energy_flags": ";".join(energy_flags),
            "idle_power_w": self.idle_power_w,
            "active_energy_j": active,
            "peak_rss_bytes": memory["peak_rss_bytes"],
            "peak_reset": self.peak_reset,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "uss_bytes": memory["uss_bytes"],
            "pss_bytes": memory["pss_bytes"],
            "temp_before_c": self.before.get("max_temp_c"),
            "temp_after_c": self.after.get("max_temp_c"),
            "freq_before_khz": _mean_freq_khz(self.before, self.cpus),
            "freq_after_khz": _mean_freq_khz(self.after, self.cpus),
            "throttled": bool(reasons),
            "throttle_reasons": "; ".join(reasons),
            "battery_pct": self.before.get("battery_pct"),
            "charging": self.before.get("charging"),
            "cooldown_s": cool.waited_s if cool else 0.0,
            "cooldown_timed_out": bool(cool and cool.timed_out),
            "warnings": ";".join(flags),
        }

    def finish(self, case_id: str, step_ns: list[int]) -> tuple[list[schema.Meter], dict[str, Any]]:
        """Meter records (full detail) and the summary dict for ``case_end``."""
        summary = self.summary(step_ns)
        reading = self.reading or EnergyReading(None, 0, "none")
        now = time.monotonic_ns()
        records = [
            schema.Meter(case_id=case_id, name="energy_j", value=summary["energy_j"], unit="J",
                         source=reading.source, t_ns=now,
                         extra={**reading.to_dict(), "idle_power_w": self.idle_power_w}),
            schema.Meter(case_id=case_id, name="idle_power_w", value=summary["idle_power_w"],
                         unit="W", source=reading.source if self.idle_power_w is not None else "none",
                         t_ns=now),
            schema.Meter(case_id=case_id, name="state_before", value=summary["temp_before_c"],
                         unit="°C", source="sysfs", t_ns=int(self.before.get("t_ns", 0)),
                         extra=self.before),
            schema.Meter(case_id=case_id, name="state_after", value=summary["temp_after_c"],
                         unit="°C", source="sysfs", t_ns=int(self.after.get("t_ns", 0)),
                         extra=self.after),
            schema.Meter(case_id=case_id, name="cooldown_s", value=summary["cooldown_s"], unit="s",
                         source="sysfs", t_ns=now,
                         extra=dict(self.cooldown.__dict__) if self.cooldown else {}),
        ]
        return records, summary
