"""The energy-meter interface shared by every meter, and the helpers they share.

A meter measures one window: ``start()`` then ``stop() -> EnergyReading``. Sources come in
two kinds and a meter may mix them:

- **counters** (RAPL ``energy_uj``, ODPM ``energy_value``, NVML total energy, hwmon
  ``energy*_input``): read at start and stop, the difference is the energy;
- **power** (fuel gauge, INA3221, ``vcgencmd pmic_read_adc``, hwmon ``power*_input``): a
  background thread samples at ``sample_interval_s`` and integrates power over the real
  monotonic timestamps of the samples (trapezoid rule).

Every reading carries its source (``measured:<meter>``, ``estimated:cpu-model`` or
``none``); a meter that cannot measure says why in ``reason`` instead of returning a number.

**Clocks and windows.** A counter that carries its own timestamps (ODPM's ``CH<n>(T=<ms>)``)
gives each channel's mean power as ΔE / ΔT on *its* clock, and the window's energy is that
power times the measured window (the host's monotonic span of the steps): a stale read
(the driver refreshes every ~160 ms) then costs nothing but alignment. A counter that went
backwards between two reads (restart, rail re-enabled, driver reload) or whose timestamp did
not advance is dropped from the total and flagged (``counter-restart:<channel>``,
``counter-stale:<channel>``), never summed as negative joules. Every meter has a minimum
window, :data:`WINDOW_PERIODS` times its refresh period (``REFRESH_S``, or the sampling
interval of a power meter; ``energy.refresh_s`` / ``energy.min_window_s`` in the profile raise
it): a shorter window is flagged ``window-short``. Flagged readings keep their numbers (nothing
measured is lost) but are kept out of comparisons.
Standard library only: this module travels in the agent bundle.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

from workloads.registry import Registry


@dataclass(frozen=True)
class EnergyReading:
    """Energy over one measured window, with its source and per-channel joules."""

    energy_j: float | None
    duration_ns: int
    source: str  # measured:<meter> | estimated:cpu-model | none
    channels: Mapping[str, float] = field(default_factory=dict)  # rail or group -> joules
    reason: str = ""  # why energy_j is None
    details: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()  # window-short, counter-restart:<ch>, counter-stale:<ch>
    min_window_ns: int = 0  # the meter's minimum trustworthy window

    @property
    def power_w(self) -> float | None:
        """Mean power over the window, or None without energy or duration."""
        if self.energy_j is None or self.duration_ns <= 0:
            return None
        return self.energy_j / (self.duration_ns / 1e9)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (for the agent's ``meter`` records)."""
        return {
            "energy_j": self.energy_j,
            "duration_ns": self.duration_ns,
            "source": self.source,
            "channels": dict(self.channels),
            "reason": self.reason,
            "details": dict(self.details),
            "power_w": self.power_w,
            "flags": list(self.flags),
            "min_window_ns": self.min_window_ns,
        }


class MeterUnavailable(RuntimeError):
    """The meter cannot measure on this device; the message says why and how to fix it."""


METERS: Registry[type[EnergyMeter]] = Registry("energy meter")

# A window must span this many refresh periods of its meter: a stale read at each end then
# moves the figure by at most ~2/20 of the window, and counters quantised per refresh
# resolve the window's energy to a few percent.
WINDOW_PERIODS = 20
# Counter readings: joules per channel and, where the source stamps its values, the
# channel's own timestamp in ns (None: only the host's clock is known).
Counters = dict[str, tuple[float, int | None]]


def sysfs(root: str, path: str) -> Path:
    """``path`` (absolute, e.g. ``/sys/class/...``) under an optional fixture root."""
    return Path(root + path) if root else Path(path)


def read_text(path: Path) -> str:
    """A sysfs file's text, stripped; PermissionError and OSError propagate."""
    return path.read_text(encoding="ascii", errors="replace").strip()


def read_number(path: Path) -> float:
    """A sysfs file holding one number."""
    text = read_text(path)
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{path}: expected a number, read {text!r}") from None


def trapezoid_j(samples: list[tuple[int, float]]) -> float:
    """Integrate (t_ns, power_w) samples over their own timestamps; joules."""
    total = 0.0
    for (t0, p0), (t1, p1) in zip(samples, samples[1:], strict=False):
        total += (p0 + p1) / 2.0 * (t1 - t0) / 1e9
    return total


def group_channels(rails_j: Mapping[str, float], groups: Mapping[str, str]) -> dict[str, float]:
    """Sum rails into the profile's groups (group -> regex, first match wins).

    Rails that match no group go to ``other``; without groups the rails are returned as is.
    """
    if not groups:
        return dict(rails_j)
    compiled = []
    for name, pattern in groups.items():
        try:
            compiled.append((name, re.compile(pattern)))
        except re.error as exc:
            raise ValueError(
                f"energy.rails.{name} = {pattern!r} is not a valid regular expression ({exc}); "
                "fix it in the device profile"
            ) from None
    out: dict[str, float] = {}
    for rail, joules in rails_j.items():
        group = next((g for g, rx in compiled if rx.search(rail)), "other")
        out[group] = out.get(group, 0.0) + joules
    return out


class PowerSampler:
    """A daemon thread that reads power channels every ``interval_s`` and integrates them."""

    def __init__(self, read_power_w: Callable[[], Mapping[str, float]], interval_s: float) -> None:
        self._read = read_power_w
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.samples: dict[str, list[tuple[int, float]]] = {}
        self.error = ""

    def _sample(self) -> None:
        t_ns = time.monotonic_ns()
        for name, watts in self._read().items():
            self.samples.setdefault(name, []).append((t_ns, watts))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._sample()
            except (OSError, ValueError) as exc:
                self.error = f"sampling stopped: {exc}"
                return

    def start(self) -> None:
        self._sample()  # the first sample is taken at start, in the caller's thread
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """Stop the thread, take a last sample, and return joules per channel."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.error:
            try:
                self._sample()
            except (OSError, ValueError) as exc:
                self.error = f"sampling stopped: {exc}"
        return {name: trapezoid_j(s) for name, s in self.samples.items()}

    @property
    def span_ns(self) -> int:
        """Time from the first sample to the last, over all channels."""
        stamps = [t for series in self.samples.values() for t, _ in series]
        return max(stamps) - min(stamps) if stamps else 0

    @property
    def sample_count(self) -> int:
        return max((len(s) for s in self.samples.values()), default=0)


class EnergyMeter:
    """Base of every meter: override ``read_energy_j`` and/or ``read_power_w``.

    Subclasses set ``NAME`` (the registry name), ``HAS_COUNTERS``/``HAS_POWER``, and
    implement ``probe`` (``None`` when usable, else the reason). ``total_j`` decides how
    channels add up to the total (sum unless a meter knows better).
    """

    NAME: ClassVar[str] = ""
    HAS_COUNTERS: ClassVar[bool] = False
    HAS_POWER: ClassVar[bool] = False
    REFRESH_S: ClassVar[float] = 0.0  # how often the source updates its values (0: unknown/fast)

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.root = str(config.get("root", "") or "")
        self.interval_s = float(config.get("sample_interval_s", 0.05) or 0.05)
        self.groups: Mapping[str, str] = dict(config.get("rails", {}) or {})
        self.refresh_s = float(config.get("refresh_s", 0.0) or 0.0) or self.REFRESH_S
        self._min_window_cfg_s = float(config.get("min_window_s", 0.0) or 0.0)
        self._t0_ns = 0
        self._start_counters: Counters = {}
        self._sampler: PowerSampler | None = None
        self._start_reason = ""

    @property
    def source(self) -> str:
        return f"measured:{self.NAME}"

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        """None when the meter can measure here, else the reason and the fix."""
        raise NotImplementedError

    def read_energy_j(self) -> dict[str, float]:
        """Cumulative counters, joules per channel."""
        return {}

    def read_power_w(self) -> dict[str, float]:
        """Instantaneous power, watts per channel."""
        return {}

    def read_counters(self) -> Counters:
        """Counters with their own timestamps; the default has none (host clock only)."""
        return {name: (joules, None) for name, joules in self.read_energy_j().items()}

    @property
    def min_window_s(self) -> float:
        """The shortest window this meter resolves: WINDOW_PERIODS refresh (or sampling) periods."""
        period = max(self.refresh_s, self.interval_s if self.HAS_POWER else 0.0)
        return max(WINDOW_PERIODS * period, self._min_window_cfg_s)

    def counter_delta_j(self, start: Mapping[str, float], end: Mapping[str, float]) -> dict[str, float]:
        """Energy per channel between two counter readings (RAPL overrides for wrap-around)."""
        return {k: end[k] - start[k] for k in end if k in start}

    def total_j(self, rails_j: Mapping[str, float]) -> float:
        return sum(rails_j.values())

    def check_start(self) -> str:
        """Reason to refuse this window (e.g. charging), or empty; checked at ``start``."""
        return ""

    def extra_details(self) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        """Begin the window; a failure here becomes the reading's reason, never an exception."""
        self._t0_ns = time.monotonic_ns()
        self._sampler = None
        try:
            self._start_reason = self.check_start()
            if self._start_reason:
                return
            if self.HAS_COUNTERS:
                self._start_counters = self.read_counters()
            if self.HAS_POWER:
                self._sampler = PowerSampler(self.read_power_w, self.interval_s)
                self._sampler.start()
        except (OSError, ValueError) as exc:
            self._sampler = None
            self._start_reason = f"{self.NAME}: reading at start failed: {exc}"

    def counter_energy(
        self, start: Counters, end: Counters, window_ns: int
    ) -> tuple[dict[str, float], list[str], dict[str, int]]:
        """Joules per channel over ``window_ns``, the flags, and each channel's own window (ns).

        A channel with timestamps gives ΔE/ΔT on its clock times ``window_ns``; one without
        gives its ΔE. A counter that went back (restart) or a timestamp that did not advance
        (no refresh) drops the channel and flags it.
        """
        deltas = self.counter_delta_j({k: v[0] for k, v in start.items()},
                                      {k: v[0] for k, v in end.items()})
        rails: dict[str, float] = {}
        flags: list[str] = []
        own_ns: dict[str, int] = {}
        for name, joules in deltas.items():
            if joules < 0:
                flags.append(f"counter-restart:{name}")
                continue
            t0, t1 = start[name][1], end[name][1]
            if t0 is None or t1 is None:
                rails[name] = joules
                continue
            if t1 <= t0:
                flags.append(f"counter-stale:{name}")
                continue
            own_ns[name] = t1 - t0
            rails[name] = joules / (t1 - t0) * window_ns
        return rails, flags, own_ns

    def stop(self) -> EnergyReading:
        rails: dict[str, float] = {}
        flags: list[str] = []
        details: dict[str, Any] = {"meter": self.NAME}
        if self._start_reason:
            return self._none(self._start_reason)
        try:
            end = self.read_counters() if self.HAS_COUNTERS else {}
        except (OSError, ValueError) as exc:
            return self._none(f"{self.NAME}: reading counters failed: {exc}")
        duration_ns = time.monotonic_ns() - self._t0_ns
        if self.HAS_COUNTERS:
            counted, flags, own_ns = self.counter_energy(self._start_counters, end, duration_ns)
            rails.update(counted)
            if own_ns:
                details["clock"] = "device"
                details["device_window_ns"] = own_ns
                details["host_window_ns"] = duration_ns
        if self._sampler is not None:
            rails.update(self._sampler.stop())
            # the integral spans the samples' own stamps: that is the window it measured
            duration_ns = self._sampler.span_ns or duration_ns
            details["samples"] = self._sampler.sample_count
            details["sample_interval_s"] = self.interval_s
            if self._sampler.error:
                return self._none(f"{self.NAME}: {self._sampler.error}")
            self._sampler = None
        min_ns = int(self.min_window_s * 1e9)
        if duration_ns < min_ns:
            flags.append("window-short")
        details.update(self.extra_details())
        details["rails_j"] = dict(rails)
        return EnergyReading(
            energy_j=self.total_j(rails),
            duration_ns=duration_ns,
            source=self.source,
            channels=group_channels(rails, self.groups),
            details=details,
            flags=tuple(flags),
            min_window_ns=min_ns,
        )

    def _none(self, reason: str) -> EnergyReading:
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        return EnergyReading(None, time.monotonic_ns() - self._t0_ns, "none", reason=reason)

    def close(self) -> None:
        """Stop a sampler left running (a case that failed mid-window) and release handles."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None


class NullMeter(EnergyMeter):
    """No meter: every reading is ``none`` with the reason it was chosen."""

    NAME = "none"

    def __init__(self, config: Mapping[str, Any] | None = None, reason: str = "") -> None:
        super().__init__(config or {})
        self.reason = reason or "no energy meter configured (energy.meter = 'none')"

    @property
    def source(self) -> str:
        return "none"

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        return None

    def start(self) -> None:
        self._t0_ns = time.monotonic_ns()

    def stop(self) -> EnergyReading:
        return self._none(self.reason)
