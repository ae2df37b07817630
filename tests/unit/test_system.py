"""Device state: thermal zones, CPU frequencies, battery, cooldown, memory, warm-up, stability."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.sysfs import write_tree
from workloads.meters.metadata import validate_all
from workloads.system import (
    CooldownResult,
    WarmupDetector,
    cooldown,
    memory_snapshot,
    parse_kb_fields,
    read_battery,
    read_cpu_freqs,
    read_thermal_zones,
    reset_peak_rss,
    snapshot,
    stability_flags,
    throttle_reasons,
)

ZONE = "/sys/class/thermal/thermal_zone{}"


def zones(root: Path, temps_mc: dict[int, tuple[str, int]]) -> Path:
    files: dict[str, str | int] = {}
    for index, (kind, milli) in temps_mc.items():
        files[ZONE.format(index) + "/type"] = kind
        files[ZONE.format(index) + "/temp"] = milli
    return write_tree(root, files)


def cpus(root: Path, cur: list[int], policy_max: int, hw_max: int) -> Path:
    files: dict[str, int] = {}
    for cpu, khz in enumerate(cur):
        base = f"/sys/devices/system/cpu/cpu{cpu}/cpufreq"
        files[f"{base}/scaling_cur_freq"] = khz
        files[f"{base}/scaling_max_freq"] = policy_max
        files[f"{base}/cpuinfo_max_freq"] = hw_max
    return write_tree(root, files)


# --- thermal, frequency, battery ----------------------------------------------------------


def test_thermal_zones_are_read_in_celsius_by_type(tmp_path: Path) -> None:
    zones(tmp_path, {0: ("BIG", 45_300), 1: ("skin-therm", 31_000)})
    assert read_thermal_zones(str(tmp_path)) == {"BIG": 45.3, "skin-therm": 31.0}


def test_thermal_zones_filter_by_type_or_directory_name(tmp_path: Path) -> None:
    zones(tmp_path, {0: ("BIG", 45_000), 1: ("MID", 40_000), 2: ("LITTLE", 35_000)})
    assert read_thermal_zones(str(tmp_path), ("BIG", "thermal_zone2")) == {"BIG": 45.0, "LITTLE": 35.0}


def test_duplicate_zone_types_are_kept_apart(tmp_path: Path) -> None:
    zones(tmp_path, {0: ("cpu-thermal", 50_000), 3: ("cpu-thermal", 52_000)})
    assert read_thermal_zones(str(tmp_path)) == {"cpu-thermal": 50.0, "cpu-thermal#3": 52.0}


def test_cpu_frequencies_are_read_per_cpu_in_khz(tmp_path: Path) -> None:
    cpus(tmp_path, [300_000, 1_800_000], 1_800_000, 2_400_000)
    freqs = read_cpu_freqs(str(tmp_path))
    assert freqs["freq_khz"] == {"cpu0": 300_000, "cpu1": 1_800_000}
    assert freqs["hw_max_freq_khz"]["cpu1"] == 2_400_000


def test_battery_level_status_and_charger(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "/sys/class/power_supply/battery/capacity": 76,
        "/sys/class/power_supply/battery/status": "Discharging",
        "/sys/class/power_supply/usb/type": "USB",
        "/sys/class/power_supply/usb/online": 1,
    })
    assert read_battery(str(tmp_path)) == {"battery_pct": 76.0, "battery_status": "Discharging", "charging": True}


def test_a_device_without_battery_reports_none(tmp_path: Path) -> None:
    assert read_battery(str(tmp_path)) == {"battery_pct": None, "battery_status": None, "charging": None}


def test_snapshot_uses_only_registered_metadata_keys(tmp_path: Path) -> None:
    zones(tmp_path, {0: ("BIG", 45_000)})
    cpus(tmp_path, [1_000_000], 2_000_000, 2_000_000)
    snap = snapshot({"root": str(tmp_path)}, root=str(tmp_path))
    assert validate_all(snap) == []
    assert snap["max_temp_c"] == 45.0


# --- throttling ---------------------------------------------------------------------------


def snap(policy_max: int, hw_max: int = 2_000_000, cur: int = 500_000, count: int | None = None) -> dict:
    return {
        "freq_khz": {"cpu0": cur},
        "max_freq_khz": {"cpu0": policy_max},
        "hw_max_freq_khz": {"cpu0": hw_max},
        "throttle_count": count,
    }


def test_a_lowered_policy_maximum_is_throttling() -> None:
    assert throttle_reasons(snap(2_000_000), snap(1_400_000)) == ["cpu0 policy max fell from 2000000 to 1400000 kHz"]


def test_a_low_current_frequency_alone_is_not_throttling() -> None:
    assert throttle_reasons(snap(2_000_000, cur=2_000_000), snap(2_000_000, cur=300_000)) == []


def test_rising_thermal_throttle_counters_are_throttling() -> None:
    assert throttle_reasons(snap(2_000_000, count=3), snap(2_000_000, count=7)) == ["thermal_throttle counters rose by 4"]


# --- cooldown -----------------------------------------------------------------------------


def test_cooldown_waits_while_a_zone_is_hot_then_returns_when_it_cools(tmp_path: Path) -> None:
    zones(tmp_path, {0: ("BIG", 70_000)})

    def cool_down_later() -> None:
        time.sleep(0.15)
        zones(tmp_path, {0: ("BIG", 38_000)})

    thread = threading.Thread(target=cool_down_later)
    thread.start()
    result = cooldown({"root": str(tmp_path), "cooldown_c": 40.0, "cooldown_timeout_s": 30.0}, poll_s=0.02)
    thread.join()
    assert result.timed_out is False
    assert result.max_temp_c == 38.0
    assert result.waited_s > 0


def test_cooldown_gives_up_at_its_timeout_and_says_so(tmp_path: Path) -> None:
    zones(tmp_path, {0: ("BIG", 70_000)})
    now = [0.0]
    result = cooldown(
        {"root": str(tmp_path), "cooldown_c": 40.0, "cooldown_timeout_s": 5.0},
        sleep=lambda s: now.__setitem__(0, now[0] + s),
        clock=lambda: now[0],
    )
    assert result == CooldownResult(waited_s=5.0, timed_out=True, max_temp_c=70.0, hottest_zone="BIG")


def test_cooldown_is_disabled_by_a_zero_threshold(tmp_path: Path) -> None:
    zones(tmp_path, {0: ("BIG", 95_000)})
    assert cooldown({"root": str(tmp_path), "cooldown_c": 0.0}).timed_out is False


# --- memory -------------------------------------------------------------------------------


def test_kb_fields_are_parsed_to_bytes() -> None:
    text = "Name:\tpython\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\nThreads:\t1"
    assert parse_kb_fields(text) == {"VmHWM": 2 * 1024 * 1024, "VmRSS": 1024 * 1024}


def test_memory_snapshot_of_this_process_has_rss_uss_and_pss() -> None:
    memory = memory_snapshot()
    assert validate_all(memory) == []
    assert memory["uss_bytes"] is not None and memory["rss_bytes"] is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="clear_refs is Linux only")
def test_clearing_refs_resets_the_peak_rss_after_a_freed_allocation() -> None:
    block = bytearray(64 * 1024 * 1024)  # zero-filled, so every page is touched
    peak = memory_snapshot()["vm_hwm_bytes"]
    del block
    assert reset_peak_rss() is True
    assert memory_snapshot()["vm_hwm_bytes"] < peak


def test_a_missing_clear_refs_is_reported_as_no_reset(tmp_path: Path) -> None:
    assert reset_peak_rss(str(tmp_path / "nonexistent")) is False


# --- warm-up ------------------------------------------------------------------------------


def test_warmup_ends_once_step_times_settle() -> None:
    detector = WarmupDetector(short=3, long=8, tolerance=0.05, min_steps=3, max_steps=50)
    series = [900, 400, 200, 120] + [100] * 20
    done_at = next(i + 1 for i, s in enumerate(series) if detector.observe(s))
    assert detector.warmup_steps == done_at
    assert done_at == 9 and not detector.forced  # first step whose long median is 100


def test_warmup_of_a_steady_series_ends_at_twice_the_short_window() -> None:
    detector = WarmupDetector(short=3, long=8, min_steps=4)
    done = [detector.observe(100) for _ in range(8)]
    assert done.index(True) + 1 == 6


def test_warmup_that_never_settles_is_forced_at_the_maximum() -> None:
    detector = WarmupDetector(short=2, long=6, tolerance=0.01, min_steps=2, max_steps=10)
    done = [detector.observe(100 * (i + 1) ** 2) for i in range(12)]
    assert done.index(True) + 1 == 10 and detector.forced


def test_warmup_detector_refuses_short_longer_than_long() -> None:
    with pytest.raises(ValueError, match="short=9, long=4"):
        WarmupDetector(short=9, long=4)


# --- stability flags ----------------------------------------------------------------------

STEADY = [100] * 20


def test_a_steady_cool_measured_case_has_no_flags() -> None:
    assert stability_flags(STEADY, snap(2_000_000), snap(2_000_000), {"energy_source": "measured:rapl"}) == []


@pytest.mark.parametrize(
    ("steps", "before", "after", "cfg", "flag"),
    [
        ([100, 150] * 10, {}, {}, {}, "noisy"),
        (STEADY, snap(2_000_000), snap(1_000_000), {}, "throttled"),
        (STEADY, {"temp_c": {"BIG": 91.0}}, {}, {"hot_c": 85.0}, "hot"),
        (STEADY, {}, {}, {"cooldown": CooldownResult(120.0, True, 60.0)}, "long-cooldown"),
        (STEADY, {}, {}, {"energy_source": "estimated:cpu-model"}, "energy-estimated"),
        ([100] * 3, {}, {}, {}, "too-few-steps"),
        (STEADY, {"battery_pct": 12.0}, {}, {}, "low-battery"),
    ],
)
def test_each_instability_raises_its_flag(steps: list, before: dict, after: dict, cfg: dict, flag: str) -> None:
    assert stability_flags(steps, before, after, cfg) == [flag]
