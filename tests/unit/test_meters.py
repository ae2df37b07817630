"""Energy meters: parsers over the real file formats, and meters over fixture sysfs trees."""

from __future__ import annotations

import sys
import threading
import time
import types
from pathlib import Path

import pytest

from tests.fixtures.sysfs import (
    pmic_read_adc_text,
    write_tree,
)
from workloads.meters import NullMeter, describe_meter, measure_idle, open_meter
from workloads.meters.base import METERS, EnergyMeter, EnergyReading, group_channels, trapezoid_j
from workloads.meters.case import CaseInstruments
from workloads.meters.cpu_model import CpuModelMeter, parse_proc_stat
from workloads.meters.fuel_gauge import FuelGaugeMeter, detect_units, discharge_power_w
from workloads.meters.hwmon import HwmonMeter, JetsonMeter
from workloads.meters.metadata import METADATA, validate, validate_all
from workloads.meters.nvml import NvmlMeter
from workloads.meters.rapl import RaplMeter, wrapped_delta_uj
from workloads.meters.vcgencmd import VcgencmdMeter, parse_pmic_read_adc
from workloads.registry import UnknownNameError
from workloads.schema import Meter, dump_line, parse_line

FAST = {"sample_interval_s": 0.005}


def measure(meter, seconds: float = 0.03, between=None) -> EnergyReading:
    """start, (change the fixture,) wait, stop."""
    meter.start()
    if between is not None:
        between()
    time.sleep(seconds)
    return meter.stop()


# --- shared pieces ------------------------------------------------------------------------


def test_trapezoid_integrates_over_the_sample_timestamps() -> None:
    samples = [(0, 1.0), (1_000_000_000, 3.0), (3_000_000_000, 3.0)]
    assert trapezoid_j(samples) == pytest.approx(2.0 + 6.0)


def test_rails_are_summed_into_the_profile_groups_with_the_rest_in_other() -> None:
    rails = {"S4M_VDD_CPUCL0": 1.0, "S3M_VDD_CPUCL1": 2.0, "S1M_VDD_MIF": 4.0, "VSYS_PWR_MODEM": 8.0}
    groups = {"cpu": r"CPUCL", "memory": r"MIF|MEM"}
    assert group_channels(rails, groups) == {"cpu": 3.0, "memory": 4.0, "other": 8.0}


def test_a_bad_rail_regex_names_the_group_and_pattern() -> None:
    with pytest.raises(ValueError, match=r"energy.rails.cpu = '\(CPU'"):
        group_channels({"x": 1.0}, {"cpu": "(CPU"})


# --- fuel gauge ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "voltage", "units", "sign"),
    [
        (-850_000, 3_900_000, ("uA", "uV"), -1),  # µA, negative while discharging
        (850_000, 3_900_000, ("uA", "uV"), 1),  # µA, positive while discharging
        (-850, 3900, ("mA", "mV"), -1),  # mA / mV vendors
        (850, 3_900_000, ("mA", "uV"), 1),
    ],
)
def test_fuel_gauge_units_and_sign_are_detected(current: int, voltage: int, units: tuple, sign: int) -> None:
    detected = detect_units(current, voltage, discharging=True)
    assert (detected.current_unit, detected.voltage_unit) == units
    assert detected.discharge_sign == sign
    assert discharge_power_w(current, voltage, detected) == pytest.approx(0.85 * 3.9)


def battery(root: Path, current: int, voltage: int, status: str = "Discharging", usb: str = "0") -> None:
    write_tree(root, {
        "/sys/class/power_supply/battery/current_now": current,
        "/sys/class/power_supply/battery/voltage_now": voltage,
        "/sys/class/power_supply/battery/status": status,
        "/sys/class/power_supply/battery/type": "Battery",
        "/sys/class/power_supply/battery/capacity": 81,
        "/sys/class/power_supply/usb/type": "USB",
        "/sys/class/power_supply/usb/online": usb,
    })


@pytest.mark.parametrize(("current", "voltage"), [(-1_000_000, 4_000_000), (1000, 4000)])
def test_fuel_gauge_integrates_discharge_power(tmp_path: Path, current: int, voltage: int) -> None:
    battery(tmp_path, current, voltage)
    meter = open_meter({"meter": "fuel-gauge", "root": str(tmp_path), **FAST})
    reading = measure(meter)
    assert reading.source == "measured:fuel-gauge"
    assert reading.energy_j == pytest.approx(4.0 * reading.duration_ns / 1e9, rel=0.05)
    assert reading.details["samples"] >= 2


def test_a_sensor_that_vanishes_gives_a_reason_not_an_exception(tmp_path: Path) -> None:
    battery(tmp_path, -500_000, 4_000_000)
    meter = open_meter({"meter": "fuel-gauge", "root": str(tmp_path)})
    (tmp_path / "sys/class/power_supply/battery/current_now").unlink()
    reading = measure(meter, seconds=0)
    assert reading.energy_j is None
    assert reading.reason.startswith("fuel-gauge: reading at start failed:")


def test_a_sensor_that_vanishes_mid_window_gives_a_reason(tmp_path: Path) -> None:
    battery(tmp_path, -500_000, 4_000_000)
    meter = open_meter({"meter": "fuel-gauge", "root": str(tmp_path), **FAST})
    gone = tmp_path / "sys/class/power_supply/battery/voltage_now"
    reading = measure(meter, between=gone.unlink)
    assert reading.energy_j is None and "sampling stopped" in reading.reason


def test_closing_a_meter_mid_window_stops_its_sampler_thread(tmp_path: Path) -> None:
    battery(tmp_path, -500_000, 4_000_000)
    meter = open_meter({"meter": "fuel-gauge", "root": str(tmp_path), **FAST})
    meter.start()
    meter.close()
    assert not any(t.name == "power-sampler" for t in threading.enumerate())


def test_fuel_gauge_refuses_while_charging_and_says_how_to_fix_it(tmp_path: Path) -> None:
    battery(tmp_path, 1_000_000, 4_000_000, status="Charging")
    reading = measure(FuelGaugeMeter({"root": str(tmp_path)}))
    assert reading.energy_j is None and reading.source == "none"
    assert "battery status is 'Charging'" in reading.reason
    assert "allow_charging" in reading.reason


def test_fuel_gauge_refuses_when_usb_is_online_even_if_discharging(tmp_path: Path) -> None:
    battery(tmp_path, -500_000, 4_000_000, usb="1")
    reading = measure(FuelGaugeMeter({"root": str(tmp_path)}))
    assert "charger 'usb' (USB) is online" in reading.reason


def test_fuel_gauge_measures_while_charging_when_allowed(tmp_path: Path) -> None:
    battery(tmp_path, -500_000, 4_000_000, status="Charging")
    reading = measure(FuelGaugeMeter({"root": str(tmp_path), "allow_charging": True, **FAST}))
    assert reading.energy_j is not None
    assert reading.details["charging"] == "battery status is 'Charging'"


# --- RAPL ---------------------------------------------------------------------------------


def rapl(root: Path, package_uj: int, core_uj: int, max_uj: int = 262_143_328_850) -> None:
    write_tree(root, {
        "/sys/class/powercap/intel-rapl:0/name": "package-0",
        "/sys/class/powercap/intel-rapl:0/energy_uj": package_uj,
        "/sys/class/powercap/intel-rapl:0/max_energy_range_uj": max_uj,
        "/sys/class/powercap/intel-rapl:0:0/name": "core",
        "/sys/class/powercap/intel-rapl:0:0/energy_uj": core_uj,
        "/sys/class/powercap/intel-rapl:0:0/max_energy_range_uj": max_uj,
    })


def test_rapl_delta_undoes_one_wrap_around() -> None:
    assert wrapped_delta_uj(start_uj=990, end_uj=10, max_range_uj=1000) == 20


def test_rapl_meter_totals_packages_and_survives_a_wrap(tmp_path: Path) -> None:
    top = 262_143_328_850
    rapl(tmp_path, top - 1_000_000, 5_000_000)
    meter = open_meter({"meter": "rapl", "root": str(tmp_path)})
    assert isinstance(meter, RaplMeter)
    reading = measure(meter, between=lambda: rapl(tmp_path, 2_000_000, 6_500_000))
    assert reading.channels == {"package-0": pytest.approx(3.0), "core:0:0": pytest.approx(1.5)}
    assert reading.energy_j == pytest.approx(3.0)  # sub-zones are inside the package


def test_rapl_permission_error_explains_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rapl(tmp_path, 1, 1)
    from workloads.meters import rapl as rapl_module

    real = rapl_module.read_number

    def denied(path: Path) -> float:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(rapl_module, "read_number", denied)
    meter = open_meter({"meter": "rapl", "root": str(tmp_path)})
    assert isinstance(meter, NullMeter)
    assert "Linux 5.10" in meter.reason and "chmod o+r" in meter.reason


# --- NVML ---------------------------------------------------------------------------------


def test_nvml_absence_is_reported_as_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    meter = open_meter({"meter": "nvml"})
    assert isinstance(meter, NullMeter)
    assert "pynvml is not installed" in meter.stop().reason


def test_nvml_meter_differences_the_total_energy_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = {"mj": 10_000}
    fake = types.SimpleNamespace(
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: f"gpu{i}",
        nvmlDeviceGetTotalEnergyConsumption=lambda handle: counter["mj"],
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    meter = open_meter({"meter": "nvml"})
    assert isinstance(meter, NvmlMeter)
    reading = measure(meter, between=lambda: counter.update(mj=12_500))
    assert reading.channels == {"gpu0": pytest.approx(2.5)}
    assert reading.source == "measured:nvml"


# --- Jetson, hwmon, vcgencmd --------------------------------------------------------------


def test_jetson_rails_integrate_volts_times_amps_and_total_is_vdd_in(tmp_path: Path) -> None:
    base = "/sys/class/hwmon/hwmon1"
    write_tree(tmp_path, {
        f"{base}/name": "ina3221",
        f"{base}/in1_label": "VDD_IN", f"{base}/in1_input": 5000, f"{base}/curr1_input": 1000,
        f"{base}/in2_label": "VDD_CPU_GPU_CV", f"{base}/in2_input": 5000, f"{base}/curr2_input": 400,
        f"{base}/in3_label": "VDD_SOC", f"{base}/in3_input": 5000, f"{base}/curr3_input": 200,
        f"{base}/in7_label": "sum of shunt voltages", f"{base}/in7_input": 160,
    })
    meter = open_meter({"meter": "jetson-ina3221", "root": str(tmp_path), **FAST})
    assert isinstance(meter, JetsonMeter)
    reading = measure(meter)
    seconds = reading.duration_ns / 1e9
    assert set(reading.channels) == {"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}
    assert reading.energy_j == pytest.approx(5.0 * seconds, rel=0.05)
    assert reading.details["total_from"] == "VDD_IN"


def test_generic_hwmon_reads_energy_counters_and_integrates_power(tmp_path: Path) -> None:
    base = "/sys/class/hwmon/hwmon0"
    write_tree(tmp_path, {
        f"{base}/name": "power_meter",
        f"{base}/energy1_input": 1_000_000, f"{base}/energy1_label": "package",
        f"{base}/power2_input": 2_000_000,
    })
    meter = open_meter({"meter": "hwmon", "root": str(tmp_path), **FAST})
    assert isinstance(meter, HwmonMeter)
    reading = measure(meter, between=lambda: write_tree(tmp_path, {f"{base}/energy1_input": 4_000_000}))
    assert reading.channels["power_meter:package"] == pytest.approx(3.0)
    seconds = reading.duration_ns / 1e9
    assert reading.channels["power_meter:power2"] == pytest.approx(2.0 * seconds, rel=0.05)


def test_hwmon_with_only_energy_counters_keeps_the_wall_window(tmp_path: Path) -> None:
    write_tree(tmp_path, {"/sys/class/hwmon/hwmon0/name": "x", "/sys/class/hwmon/hwmon0/energy1_input": 0})
    reading = measure(open_meter({"meter": "hwmon", "root": str(tmp_path)}), seconds=0.02)
    assert reading.duration_ns >= 20_000_000


def test_pmic_read_adc_pairs_currents_and_voltages_per_rail() -> None:
    rails = parse_pmic_read_adc(pmic_read_adc_text())
    assert rails["VDD_CORE"] == pytest.approx(2.31876 * 0.870608)
    assert "EXT5V" not in rails  # a voltage with no current has no power
    assert len(rails) == 12


def test_vcgencmd_meter_integrates_the_commands_rails() -> None:
    meter = VcgencmdMeter({**FAST}, run=pmic_read_adc_text)
    reading = measure(meter)
    total_w = sum(parse_pmic_read_adc(pmic_read_adc_text()).values())
    assert reading.energy_j == pytest.approx(total_w * reading.duration_ns / 1e9, rel=0.05)
    assert reading.source == "measured:vcgencmd"


# --- cpu-model, selection, idle -----------------------------------------------------------


def proc_stat(root: Path, busy: int, idle: int) -> None:
    write_tree(root, {"/proc/stat": f"cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0 0 0"})


def test_proc_stat_busy_excludes_idle_and_iowait() -> None:
    assert parse_proc_stat("cpu  10 1 4 70 5 0 0 0 0 0") == (15, 90)


def test_cpu_model_estimates_from_proc_stat_utilisation(tmp_path: Path) -> None:
    proc_stat(tmp_path, busy=100, idle=100)
    config = {"meter": "cpu-model", "root": str(tmp_path), "cpu_idle_w": 1.0, "cpu_max_w": 5.0,
              "cpu_model_source": "datasheet"}
    meter = open_meter(config)
    assert isinstance(meter, CpuModelMeter)
    reading = measure(meter, between=lambda: proc_stat(tmp_path, busy=150, idle=150))
    assert reading.source == "estimated:cpu-model"
    assert reading.details["utilisation"] == pytest.approx(0.5)
    assert reading.power_w == pytest.approx(3.0)
    assert reading.details["params_source"] == "datasheet"


def test_cpu_model_without_watts_is_not_available() -> None:
    meter = open_meter({"meter": "cpu-model"})
    assert isinstance(meter, NullMeter)
    assert "cpu_max_w > energy.cpu_idle_w" in meter.reason


def test_auto_picks_the_first_measured_meter(tmp_path: Path) -> None:
    rapl(tmp_path, 1, 1)
    proc_stat(tmp_path, 1, 1)
    meter = open_meter({"meter": "auto", "root": str(tmp_path), "cpu_idle_w": 1.0, "cpu_max_w": 2.0})
    assert isinstance(meter, RaplMeter)


def test_auto_falls_back_to_the_cpu_model_when_nothing_measures(tmp_path: Path) -> None:
    meter = open_meter({"meter": "auto", "root": str(tmp_path), "cpu_idle_w": 1.0, "cpu_max_w": 2.0})
    assert isinstance(meter, CpuModelMeter)


def test_auto_with_nothing_gives_every_meters_reason(tmp_path: Path) -> None:
    reading = measure(open_meter({"meter": "auto", "root": str(tmp_path)}), seconds=0)
    assert reading.energy_j is None and reading.source == "none"
    assert reading.reason.startswith("none available: odpm:")
    assert "rapl:" in reading.reason and "cpu-model:" in reading.reason


def test_meter_none_reads_none_with_its_reason() -> None:
    reading = measure(open_meter({"meter": "none"}), seconds=0)
    assert reading.source == "none" and "energy.meter = 'none'" in reading.reason


def test_an_unknown_meter_name_is_a_configuration_error() -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'rapl'"):
        open_meter({"meter": "rapll"})


def test_idle_power_is_the_mean_power_over_the_window(tmp_path: Path) -> None:
    write_tree(tmp_path, {"/sys/class/hwmon/hwmon0/name": "x", "/sys/class/hwmon/hwmon0/power1_input": 1_500_000})
    meter = open_meter({"meter": "hwmon", "root": str(tmp_path), **FAST})
    assert measure_idle(meter, 0.03) == pytest.approx(1.5, rel=0.05)


def test_idle_power_is_none_without_a_meter() -> None:
    assert measure_idle(NullMeter(), 0.01) is None


def test_describe_meter_names_the_meter_found(tmp_path: Path) -> None:
    rapl(tmp_path, 1, 1)
    assert describe_meter({"meter": "auto", "root": str(tmp_path)}) == ("rapl (measured:rapl)", True, "")


def test_describe_meter_gives_the_fix_when_nothing_measures(tmp_path: Path) -> None:
    found, ok, fix = describe_meter({"meter": "rapl", "root": str(tmp_path)})
    assert (found, ok) == ("none available", False)
    assert fix.startswith("rapl: no RAPL")


# --- metadata -----------------------------------------------------------------------------


def test_every_metadata_key_has_a_description() -> None:
    assert all(METADATA.get(name).description for name in METADATA)


def test_metadata_accepts_values_of_the_right_type_and_unit() -> None:
    assert validate_all({"temp_c": {"cpu": 41.5}, "freq_khz": {"cpu0": 1800000}, "charging": False,
                         "peak_rss_bytes": 123, "energy_j": None}) == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("peak_rss_bytes", -1, "≥ 0"),
        ("charging", "yes", "should be bool"),
        ("temp_c", {"cpu": "hot"}, "map"),
        ("energy_j", float("nan"), "finite"),
    ],
)
def test_metadata_refuses_a_bad_value_quoting_it(name: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(name, value)


def test_metadata_refuses_an_unknown_key() -> None:
    assert "unknown metadata key 'temp'" in validate_all({"temp": 1.0})[0]


# --- around a case ------------------------------------------------------------------------


def run_instruments(spec: dict, window_s: float = 0.03) -> tuple[list[Meter], dict]:
    """The agent's call order around a case, with a fake measured window."""
    inst = CaseInstruments(spec)
    inst.reset_memory()
    inst.settle()
    inst.start()
    time.sleep(window_s)
    inst.stop()
    inst.close()
    return inst.finish("case-1", [100_000] * 20)


def test_case_instruments_measure_energy_idle_power_and_state(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "/sys/class/hwmon/hwmon0/name": "board", "/sys/class/hwmon/hwmon0/power1_input": 2_000_000,
        "/sys/class/thermal/thermal_zone0/type": "BIG", "/sys/class/thermal/thermal_zone0/temp": 41_000,
    })
    root = str(tmp_path)
    spec = {"energy": {"meter": "hwmon", "root": root, "idle_window_s": 0.02, **FAST},
            "thermal": {"root": root, "cooldown_c": 45.0}}
    records, summary = run_instruments(spec, window_s=0.12)  # min window: 20 × 5 ms samples
    assert summary["energy_source"] == "measured:hwmon"
    assert summary["idle_power_w"] == pytest.approx(2.0, rel=0.05)
    assert summary["energy_per_step_j"] == pytest.approx(summary["energy_j"] / 20)
    assert summary["temp_before_c"] == 41.0
    assert "window-short" not in summary["energy_flags"]
    assert summary["cooldown_timed_out"] is False


def test_a_window_shorter_than_the_meter_resolves_is_flagged_in_the_case(tmp_path: Path) -> None:
    write_tree(tmp_path, {"/sys/class/hwmon/hwmon0/name": "board",
                          "/sys/class/hwmon/hwmon0/power1_input": 2_000_000})
    spec = {"energy": {"meter": "hwmon", "root": str(tmp_path), "idle_window_s": 0.02, **FAST}}
    _, summary = run_instruments(spec, window_s=0.03)
    # (a constant 2 W board draws its idle power: active energy is ~0 and may come out a hair
    # below zero, which adds negative-active)
    assert "window-short" in summary["energy_flags"].split(";")
    assert "energy-flagged" in summary["warnings"].split(";")
    assert summary["energy_min_window_ns"] == 100_000_000


def test_case_summary_uses_only_registered_metadata_keys(tmp_path: Path) -> None:
    _, summary = run_instruments({"energy": {"meter": "none"}})
    assert validate_all(summary) == []


def test_case_meter_records_pass_the_protocol_check() -> None:
    records, _ = run_instruments({})
    names = [parse_line(dump_line(r)).name for r in records]
    assert names == ["energy_j", "idle_power_w", "state_before", "state_after", "cooldown_s"]


def test_a_case_without_an_energy_section_reports_no_meter_and_says_why() -> None:
    _, summary = run_instruments({})
    assert summary["energy_source"] == "none" and summary["energy_j"] is None
    assert "energy.meter = 'none'" in summary["energy_reason"]


# --- energy windows through the agent ------------------------------------------------------


@METERS.register("test-stepped-100ms")
class SteppedCounterMeter(EnergyMeter):
    """A counter that advances only every 100 ms (like NVML's), at 5 W, without timestamps."""

    NAME = "test-stepped-100ms"
    HAS_COUNTERS = True
    REFRESH_S = 0.1

    @classmethod
    def probe(cls, config: dict) -> str | None:
        return None

    def read_energy_j(self) -> dict[str, float]:
        return {"board": (time.monotonic_ns() // 100_000_000) * 0.1 * 5.0}


def _agent_summary(steps: int, energy: dict) -> dict:
    from workloads import schema as protocol
    from workloads.agent import run_case

    records: list = []
    spec = {"case_id": "w", "workload": "bert_tiny", "optimizer": "nag", "kernel": "foreach",
            "threads": 1, "batch": 2, "dtype": "fp32", "steps": steps, "warmup": 1, "seed": 0,
            "check_steps": 0, "options": {"vocab_size": 256, "seq_len": 8},
            "energy": {"meter": "test-stepped-100ms", "idle_window_s": 0.05, **energy}}
    assert run_case(spec, records.append)
    (end,) = [r for r in records if isinstance(r, protocol.CaseEnd)]
    return dict(end.summary)


@pytest.mark.parametrize(("steps", "energy"), [
    (3, {}), (3, {"max_extend_s": 0.0}), (3, {"max_extend_s": 0.3}), (40, {"max_extend_s": 0.0}),
])
def test_no_case_reports_energy_from_a_window_shorter_than_its_meter_without_a_flag(steps, energy):
    """A counter refreshed every 100 ms needs a 2 s window: the agent steps on until the window
    is long enough, and a window it could not extend far enough is flagged, never bare."""
    summary = _agent_summary(steps, energy)
    flags = summary["energy_flags"].split(";") if summary["energy_flags"] else []
    assert summary["energy_min_window_ns"] == 2_000_000_000
    assert summary["energy_j"] is not None
    if summary["energy_window_ns"] < summary["energy_min_window_ns"]:
        assert "window-short" in flags and "energy-flagged" in summary["warnings"]
    if summary["active_energy_j"] is not None and summary["active_energy_j"] < 0:
        assert "negative-active" in flags
    if "max_extend_s" not in energy:  # extended until the meter can resolve the window
        assert summary["energy_extended_steps"] > 0
        assert summary["energy_window_ns"] >= 2_000_000_000 and "window-short" not in flags
    if energy.get("max_extend_s") == 0.0:
        assert summary["energy_extended_steps"] == 0
    if energy.get("max_extend_s") == 0.0 and steps == 3:  # 4 tiny steps: far below 2 s
        assert "window-short" in flags
