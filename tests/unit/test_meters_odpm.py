"""The ODPM energy meter (Pixel rails): the driver's text format, its own clock, restarted
and stale counters, and the minimum window."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.sysfs import (
    PIXEL7_RAILS,
    odpm_energy_value,
    pixel7_odpm,
)
from tests.unit.test_meters import measure
from workloads.meters import open_meter
from workloads.meters.base import EnergyMeter
from workloads.meters.odpm import OdpmMeter, parse_enabled_rails, parse_energy_value

# --- ODPM ---------------------------------------------------------------------------------


def test_odpm_energy_value_parses_timestamp_and_rails() -> None:
    text = odpm_energy_value(8795640, {"S4M_VDD_CPUCL0": 3322324, "S1M_VDD_MIF": 1045311})
    sample = parse_energy_value(text)
    assert sample.t_ms == 8795640
    assert sample.energy_uws == {"S4M_VDD_CPUCL0": 3322324, "S1M_VDD_MIF": 1045311}
    assert sample.rail_t_ms["S1M_VDD_MIF"] == 8795640


def test_odpm_energy_value_with_a_bad_line_quotes_it() -> None:
    with pytest.raises(ValueError, match="CH0 S4M 12"):
        parse_energy_value("t=1\nCH0 S4M 12")


def test_odpm_enabled_rails_gives_rail_and_subsystem_per_channel() -> None:
    assert parse_enabled_rails("CH0[S4M_VDD_CPUCL0]:CPU(LITTLE)\nCH1[S1M_VDD_MIF]") == {
        0: ("S4M_VDD_CPUCL0", "CPU(LITTLE)"),
        1: ("S1M_VDD_MIF", ""),
    }


def test_odpm_meter_reads_both_pixel7_pmics_and_groups_rails(tmp_path: Path) -> None:
    rails = [r for group in PIXEL7_RAILS.values() for r in group]
    pixel7_odpm(tmp_path, 1000, {r: 5_000_000 for r in rails})
    meter = open_meter({"meter": "odpm", "root": str(tmp_path), "rails": {"cpu": "CPUCL", "gpu": "G3D"}})
    assert isinstance(meter, OdpmMeter)
    reading = measure(meter, between=lambda: pixel7_odpm(
        tmp_path, 1480, {r: 5_000_000 + (2_000_000 if "CPUCL" in r else 100_000) for r in rails}
    ))
    assert reading.source == "measured:odpm"
    window_s = reading.duration_ns / 1e9  # the host's window; power comes from the files' clock
    assert reading.channels["cpu"] == pytest.approx(3 * 2.0 / 0.48 * window_s)
    assert reading.channels["gpu"] == pytest.approx(2 * 0.1 / 0.48 * window_s)
    assert reading.power_w == pytest.approx((6.0 + 13 * 0.1) / 0.48)


def test_odpm_power_is_energy_over_the_files_own_clock_not_the_hosts(tmp_path: Path) -> None:
    """The driver's clock advances 480 ms for two rails and 320 ms for a stale third while
    the host waits 30 ms: each rail's power is its ΔE over its own ΔT, exactly."""
    rails = [r for group in PIXEL7_RAILS.values() for r in group]
    stale = rails[2]
    pixel7_odpm(tmp_path, 1000, {r: 5_000_000 for r in rails}, {stale: 1100})
    meter = open_meter({"meter": "odpm", "root": str(tmp_path)})
    added = {rails[0]: 1_234_567, rails[1]: 7_654_321, stale: 999_999}
    reading = measure(meter, between=lambda: pixel7_odpm(
        tmp_path, 1480, {r: 5_000_000 + added.get(r, 0) for r in rails}, {stale: 1420}))
    expected_w = (1.234567 + 7.654321) / 0.480 + 0.999999 / 0.320
    assert reading.power_w == pytest.approx(expected_w, rel=1e-9)
    assert reading.energy_j == pytest.approx(expected_w * reading.duration_ns / 1e9, rel=1e-9)
    assert reading.details["clock"] == "device"
    assert reading.details["device_window_ns"][stale] == 320_000_000
    assert abs(reading.duration_ns - 30_000_000) < 200_000_000  # the host's window, not 480 ms


def test_a_restarted_odpm_channel_is_flagged_and_never_negative(tmp_path: Path) -> None:
    rails = [r for group in PIXEL7_RAILS.values() for r in group]
    pixel7_odpm(tmp_path, 1000, {r: 5_000_000 for r in rails})
    meter = open_meter({"meter": "odpm", "root": str(tmp_path)})
    # rail 0 was re-enabled mid-window: its counter starts again from a small value
    reading = measure(meter, between=lambda: pixel7_odpm(
        tmp_path, 1480, {r: (40_000 if r == rails[0] else 5_100_000) for r in rails}))
    assert f"counter-restart:{rails[0]}" in reading.flags
    assert rails[0] not in reading.details["rails_j"]
    assert reading.energy_j is not None and reading.energy_j > 0
    assert all(j >= 0 for j in reading.details["rails_j"].values())


def test_an_odpm_channel_whose_clock_did_not_advance_is_flagged(tmp_path: Path) -> None:
    rails = [r for group in PIXEL7_RAILS.values() for r in group]
    pixel7_odpm(tmp_path, 1000, {r: 5_000_000 for r in rails})
    meter = open_meter({"meter": "odpm", "root": str(tmp_path)})
    reading = measure(meter, between=lambda: pixel7_odpm(
        tmp_path, 1480, {r: 5_100_000 for r in rails}, {rails[1]: 1000}))
    assert f"counter-stale:{rails[1]}" in reading.flags
    assert rails[1] not in reading.details["rails_j"]


def test_an_odpm_window_shorter_than_twenty_refreshes_is_flagged(tmp_path: Path) -> None:
    pixel7_odpm(tmp_path, 1000, {})
    meter = open_meter({"meter": "odpm", "root": str(tmp_path)})
    assert meter.min_window_s == pytest.approx(20 * 0.16)
    reading = measure(meter, between=lambda: pixel7_odpm(tmp_path, 1480, {}))
    assert "window-short" in reading.flags
    assert reading.min_window_ns == 3_200_000_000


def test_a_counter_that_goes_back_without_timestamps_is_flagged_not_negative() -> None:
    """NVML's counter restarts on a driver reload: the GPU is dropped and flagged."""
    values = iter([5000.0, 10.0])

    class Restarting(EnergyMeter):  # counters on the host clock only
        NAME = "restarting"
        HAS_COUNTERS = True

        def read_energy_j(self) -> dict[str, float]:
            return {"gpu0": next(values)}

    meter = Restarting({})
    reading = measure(meter)
    assert reading.flags[0] == "counter-restart:gpu0"
    assert reading.energy_j == 0.0


def test_odpm_window_comes_from_the_files_timestamps(tmp_path: Path) -> None:
    pixel7_odpm(tmp_path, 1000, {})
    meter = open_meter({"meter": "odpm", "root": str(tmp_path)})
    reading = measure(meter, between=lambda: pixel7_odpm(tmp_path, 1480, {}))
    assert reading.details["odpm_window_ms"] == {"iio:device0": 480, "iio:device1": 480}
