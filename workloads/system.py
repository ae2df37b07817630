"""Device state that makes numbers meaningful or not: heat, clocks, battery, memory, warm-up.

- ``snapshot(thermal_cfg)``: volatile state (temperatures, CPU frequencies, battery, load)
  taken before and after each case, keyed as in ``workloads.meters.metadata``.
- ``throttle_reasons`` / ``stability_flags``: what went wrong between two snapshots.
- ``cooldown(thermal_cfg)``: wait until every zone is at or below ``cooldown_c``.
- memory: peak RSS (VmHWM, resettable through ``/proc/self/clear_refs``; ``ru_maxrss``,
  which is not), USS/PSS from ``/proc/self/smaps_rollup``.
- ``WarmupDetector``: warm-up ends when short and long moving medians of step time agree.

Every sysfs path takes a ``root`` override so tests can point it at a fixture tree. Standard
library only (psutil is used if present): this module travels in the agent bundle.
"""

from __future__ import annotations

import glob
import os
import resource
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

THERMAL_GLOB = "/sys/class/thermal/thermal_zone*"
CPU_GLOB = "/sys/devices/system/cpu/cpu[0-9]*"
BATTERY = "/sys/class/power_supply/battery"
SUPPLIES = "/sys/class/power_supply/*"
_CHARGERS = ("USB", "Mains", "Wireless", "USB_PD", "USB_C", "USB_DCP", "USB_CDP")


def _path(root: str, path: str) -> Path:
    return Path(root + path) if root else Path(path)


def _read(path: Path) -> str | None:
    """A sysfs file's stripped text, or None when missing or unreadable."""
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


# --- thermal ------------------------------------------------------------------------------


def read_thermal_zones(root: str = "", zones: tuple[str, ...] | list[str] = ()) -> dict[str, float]:
    """Temperature per thermal zone in °C (sysfs gives m°C), keyed by zone type.

    ``zones`` keeps only zones whose type or directory name (``thermal_zone3``) is listed;
    empty keeps every readable zone. Duplicate types get ``#<zone number>`` appended.
    """
    wanted = set(zones)
    out: dict[str, float] = {}
    for entry in sorted(glob.glob(str(_path(root, THERMAL_GLOB))), key=_zone_number):
        path = Path(entry)
        kind = _read(path / "type") or path.name
        if wanted and kind not in wanted and path.name not in wanted:
            continue
        milli = _read_int(path / "temp")
        if milli is None:
            continue
        name = kind if kind not in out else f"{kind}#{_zone_number(entry)}"
        out[name] = milli / 1000.0
    return out


def _zone_number(entry: str) -> int:
    digits = "".join(ch for ch in Path(entry).name if ch.isdigit())
    return int(digits) if digits else -1


# --- cpu frequency ------------------------------------------------------------------------


def read_cpu_freqs(root: str = "") -> dict[str, dict[str, int]]:
    """Per-CPU ``freq_khz`` (current), ``max_freq_khz`` (policy) and ``hw_max_freq_khz``."""
    out: dict[str, dict[str, int]] = {"freq_khz": {}, "max_freq_khz": {}, "hw_max_freq_khz": {}}
    files = {
        "freq_khz": "scaling_cur_freq",
        "max_freq_khz": "scaling_max_freq",
        "hw_max_freq_khz": "cpuinfo_max_freq",
    }
    for entry in sorted(glob.glob(str(_path(root, CPU_GLOB))), key=_zone_number):
        cpu = Path(entry)
        for key, name in files.items():
            value = _read_int(cpu / "cpufreq" / name)
            if value is not None:
                out[key][cpu.name] = value
    return out


def read_throttle_count(root: str = "") -> int | None:
    """Sum of x86 ``thermal_throttle/*_throttle_count`` over CPUs, None where absent."""
    counts = [
        _read_int(Path(p))
        for p in glob.glob(str(_path(root, CPU_GLOB + "/thermal_throttle/*_throttle_count")))
    ]
    values = [c for c in counts if c is not None]
    return sum(values) if values else None


# --- battery ------------------------------------------------------------------------------


def charging_reason(root: str = "") -> str:
    """Why the device counts as charging ('' when it does not).

    Battery status ``Charging``/``Full``, or a USB/AC/wireless supply that is online.
    """
    status = _read(_path(root, BATTERY) / "status")
    if status in ("Charging", "Full"):
        return f"battery status is {status!r}"
    for supply in sorted(glob.glob(str(_path(root, SUPPLIES)))):
        path = Path(supply)
        kind = _read(path / "type")
        if kind in _CHARGERS and _read(path / "online") == "1":
            return f"charger {path.name!r} ({kind}) is online"
    return ""


def read_battery(root: str = "") -> dict[str, Any]:
    """``battery_pct``, ``battery_status`` and ``charging``; None for what is not readable."""
    battery = _path(root, BATTERY)
    capacity = _read_int(battery / "capacity")
    status = _read(battery / "status")
    charging: bool | None = bool(charging_reason(root))
    if status is None and not charging:
        charging = None  # no battery: neither charging nor on battery
    return {
        "battery_pct": float(capacity) if capacity is not None else None,
        "battery_status": status,
        "charging": charging,
    }


# --- snapshot, throttling, cooldown -------------------------------------------------------


def snapshot(thermal_cfg: Mapping[str, Any] | None = None, root: str = "") -> dict[str, Any]:
    """Volatile device state now, keyed as in ``workloads.meters.metadata``.

    ``thermal_cfg`` is the profile's ``[thermal]`` section as a dict (its ``zones`` and
    ``root``); ``root`` overrides the sysfs root for cpu and battery files.
    """
    cfg = dict(thermal_cfg or {})
    temps = read_thermal_zones(str(cfg.get("root", "") or root), tuple(cfg.get("zones", ()) or ()))
    state: dict[str, Any] = {"t_ns": time.monotonic_ns(), "temp_c": temps}
    state["max_temp_c"] = max(temps.values()) if temps else None
    state.update(read_cpu_freqs(root))
    state["throttle_count"] = read_throttle_count(root)
    state.update(read_battery(root))
    try:
        state["load_1m"] = os.getloadavg()[0]
    except (OSError, AttributeError):
        state["load_1m"] = None
    return state


def throttle_reasons(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Evidence of thermal throttling between two snapshots, one sentence each.

    A policy maximum lowered during the case (Android thermal caps ``scaling_max_freq``),
    a policy maximum below the hardware maximum after the case (a cap that was already
    there counts too: the case did not run at full clock), or x86 throttle counters that
    went up. Current frequencies alone are not evidence: an idle CPU clocks down.
    """
    reasons = []
    max0, max1 = before.get("max_freq_khz") or {}, after.get("max_freq_khz") or {}
    hw = after.get("hw_max_freq_khz") or {}
    for cpu, khz in sorted(max1.items()):
        if cpu in max0 and khz < max0[cpu]:
            reasons.append(f"{cpu} policy max fell from {max0[cpu]} to {khz} kHz")
        elif cpu in hw and khz < hw[cpu]:
            reasons.append(f"{cpu} capped at {khz} of {hw[cpu]} kHz")
    c0, c1 = before.get("throttle_count"), after.get("throttle_count")
    if c0 is not None and c1 is not None and c1 > c0:
        reasons.append(f"thermal_throttle counters rose by {c1 - c0}")
    return reasons


@dataclass(frozen=True)
class CooldownResult:
    """How long the cooldown waited, whether it gave up, and the hottest zone at the end."""

    waited_s: float
    timed_out: bool
    max_temp_c: float | None
    hottest_zone: str = ""


def cooldown(
    thermal_cfg: Mapping[str, Any],
    *,
    poll_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CooldownResult:
    """Wait until every selected zone is at or below ``cooldown_c`` (0 disables).

    Gives up after ``cooldown_timeout_s`` and says so rather than raising: the case still
    runs, flagged ``long-cooldown``.
    """
    target = float(thermal_cfg.get("cooldown_c", 0.0) or 0.0)
    timeout_s = float(thermal_cfg.get("cooldown_timeout_s", 120.0))
    root, zones = str(thermal_cfg.get("root", "") or ""), tuple(thermal_cfg.get("zones", ()) or ())
    start = clock()
    while True:
        temps = read_thermal_zones(root, zones)
        hottest = max(temps, key=lambda z: temps[z]) if temps else ""
        top = temps[hottest] if temps else None
        waited = clock() - start
        if target <= 0 or top is None or top <= target:
            return CooldownResult(waited, False, top, hottest)
        if waited >= timeout_s:
            return CooldownResult(waited, True, top, hottest)
        sleep(min(poll_s, max(timeout_s - waited, 0.0)))


# --- memory -------------------------------------------------------------------------------


def parse_kb_fields(text: str) -> dict[str, int]:
    """``Key:   123 kB`` lines (``/proc/self/status``, ``smaps_rollup``) as bytes (pure)."""
    out = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * 1024
    return out


def ru_maxrss_bytes() -> int:
    """Peak RSS since the process started (KiB on Linux, bytes on macOS); cannot be reset."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss(proc: str = "/proc/self") -> bool:
    """Reset VmHWM to the current RSS by writing 5 to ``clear_refs`` (Linux ≥ 4.0).

    Returns whether it worked (VmHWM now equals VmRSS); False where the file is missing or
    not writable (e.g. some Android kernels), in which case per-case peaks are process peaks.
    """
    try:
        Path(proc, "clear_refs").write_text("5", encoding="ascii")
    except OSError:
        return False
    fields = parse_kb_fields(_read(Path(proc, "status")) or "")
    return "VmHWM" in fields and fields["VmHWM"] <= fields.get("VmRSS", 0) + 64 * 1024


def memory_snapshot(proc: str = "/proc/self") -> dict[str, int | None]:
    """Current and peak memory of this process, in bytes, None where not readable."""
    status = parse_kb_fields(_read(Path(proc, "status")) or "")
    rollup = parse_kb_fields(_read(Path(proc, "smaps_rollup")) or "")
    uss = pss = None
    if rollup:
        uss = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
        pss = rollup.get("Pss")
    elif proc == "/proc/self":
        uss, pss = _psutil_uss_pss()
    hwm = status.get("VmHWM")
    maxrss = ru_maxrss_bytes() if proc == "/proc/self" else None
    return {
        "rss_bytes": status.get("VmRSS"),
        "vm_hwm_bytes": hwm,
        "ru_maxrss_bytes": maxrss,
        "peak_rss_bytes": hwm if hwm is not None else maxrss,
        "uss_bytes": uss,
        "pss_bytes": pss,
    }


def _psutil_uss_pss() -> tuple[int | None, int | None]:
    try:
        import psutil  # optional on the device
    except ImportError:
        return None, None
    try:
        info = psutil.Process().memory_full_info()
    except (psutil.Error, OSError):
        return None, None
    return getattr(info, "uss", None), getattr(info, "pss", None)


# --- warm-up and stability ----------------------------------------------------------------


class WarmupDetector:
    """Decides when warm-up is over from the step times seen so far.

    Warm-up ends at the first step where the median of the last ``short`` steps and the
    median of the last ``long`` steps differ by at most ``tolerance`` (relative), or at
    ``max_steps`` regardless (``forced``). The test starts once ``min_steps`` and
    ``min(2 × short, long)`` steps are in, so the long median always holds older steps than
    the short one. Steps observed until then are warm-up steps.
    """

    def __init__(
        self, short: int = 5, long: int = 20, tolerance: float = 0.05, min_steps: int = 3, max_steps: int = 50
    ) -> None:
        if not 1 <= short <= long or min_steps > max_steps or tolerance < 0:
            raise ValueError(
                f"WarmupDetector needs 1 ≤ short ≤ long, min_steps ≤ max_steps and tolerance ≥ 0; "
                f"got short={short}, long={long}, min_steps={min_steps}, max_steps={max_steps}, "
                f"tolerance={tolerance}"
            )
        self.short, self.tolerance = short, tolerance
        self.min_steps, self.max_steps = min_steps, max_steps
        self._window: deque[int] = deque(maxlen=long)
        self.steps = 0
        self.done = False
        self.forced = False

    def observe(self, step_ns: int) -> bool:
        """Record one warm-up step; True once warm-up is over (measure from the next step)."""
        if self.done:
            return True
        self.steps += 1
        self._window.append(step_ns)
        recent = list(self._window)
        if self.steps >= max(self.min_steps, min(2 * self.short, self._window.maxlen or 0)):
            short_med = statistics.median(recent[-self.short:])
            long_med = statistics.median(recent)
            if long_med > 0 and abs(short_med - long_med) / long_med <= self.tolerance:
                self.done = True
        if not self.done and self.steps >= self.max_steps:
            self.done = self.forced = True
        return self.done

    @property
    def warmup_steps(self) -> int:
        return self.steps


def stability_flags(
    step_ns: list[int], before: Mapping[str, Any], after: Mapping[str, Any], cfg: Mapping[str, Any]
) -> list[str]:
    """Warnings for one case, printed with its results and repeated in the report.

    ``cfg`` keys (all optional): ``noisy_cv`` (0.10), ``min_steps`` (10), ``hot_c`` (85),
    ``cooldown`` (a CooldownResult or its dict), ``long_cooldown_s`` (60),
    ``energy_source`` (a reading's source), ``energy_flags`` (why the energy figure is not
    comparable: window too short, counter restarted, negative active energy),
    ``low_battery_pct`` (20).
    """
    flags = []
    if len(step_ns) < int(cfg.get("min_steps", 10)):
        flags.append("too-few-steps")
    if len(step_ns) >= 2:
        mean = statistics.fmean(step_ns)
        if mean > 0 and statistics.stdev(step_ns) / mean > float(cfg.get("noisy_cv", 0.10)):
            flags.append("noisy")
    if throttle_reasons(before, after):
        flags.append("throttled")
    hot_c = float(cfg.get("hot_c", 85.0))
    temps = [t for snap in (before, after) for t in (snap.get("temp_c") or {}).values()]
    if temps and max(temps) > hot_c:
        flags.append("hot")
    cool = cfg.get("cooldown")
    if cool is not None:
        data = cool if isinstance(cool, Mapping) else cool.__dict__
        if data.get("timed_out") or data.get("waited_s", 0.0) > float(cfg.get("long_cooldown_s", 60.0)):
            flags.append("long-cooldown")
    if str(cfg.get("energy_source", "")).startswith("estimated"):
        flags.append("energy-estimated")
    if cfg.get("energy_flags"):
        flags.append("energy-flagged")
    level = before.get("battery_pct")
    if level is not None and level < float(cfg.get("low_battery_pct", 20.0)):
        flags.append("low-battery")  # phones throttle and change governors when low
    return flags
