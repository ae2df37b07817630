"""Android fuel gauge: battery current × voltage sampled in the background and integrated.

``/sys/class/power_supply/battery/current_now`` and ``voltage_now`` are µA and µV in the
kernel's ABI, but vendors differ: some report mA / mV, and the sign of the current while
discharging is negative on some devices and positive on others. Units are detected from
magnitudes and the sign from the first sample while the status says ``Discharging``; both
are recorded in the reading's details. The gauge measures what leaves the battery, so a
plugged-in phone reads the charger, not the workload: the meter refuses to measure while
charging (status ``Charging``/``Full`` or a USB/AC/wireless supply online) unless
``energy.allow_charging`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from workloads.meters.base import METERS, EnergyMeter, read_number, read_text, sysfs
from workloads.system import charging_reason

BATTERY = "/sys/class/power_supply/battery"


@dataclass(frozen=True)
class GaugeUnits:
    """Scale factors to amperes and volts, and the sign that makes discharge positive."""

    current_scale: float  # raw * scale = A
    voltage_scale: float  # raw * scale = V
    discharge_sign: int  # +1 or -1
    current_unit: str
    voltage_unit: str


def detect_units(current_raw: float, voltage_raw: float, discharging: bool) -> GaugeUnits:
    """Guess units from magnitudes and the discharge sign from one sample.

    A battery sits between 2.5 and 5 V: above 100000 the voltage is µV, above 100 mV,
    else V. A phone under load draws 50 mA to 5 A: a magnitude under 20000 is taken as mA
    (20 mA in µA would be implausibly low), else µA.
    """
    if abs(voltage_raw) > 1e5:
        v_scale, v_unit = 1e-6, "uV"
    elif abs(voltage_raw) > 100:
        v_scale, v_unit = 1e-3, "mV"
    else:
        v_scale, v_unit = 1.0, "V"
    if abs(current_raw) < 20000:
        i_scale, i_unit = 1e-3, "mA"
    else:
        i_scale, i_unit = 1e-6, "uA"
    sign = -1 if (discharging and current_raw < 0) else 1
    return GaugeUnits(i_scale, v_scale, sign, i_unit, v_unit)


def discharge_power_w(current_raw: float, voltage_raw: float, units: GaugeUnits) -> float:
    """Power leaving the battery, watts (negative while it charges)."""
    return current_raw * units.current_scale * units.discharge_sign * voltage_raw * units.voltage_scale


@METERS.register("fuel-gauge")
class FuelGaugeMeter(EnergyMeter):
    """Battery discharge power integrated over time (source ``measured:fuel-gauge``)."""

    NAME = "fuel-gauge"
    REFRESH_S = 0.5  # gauges refresh current_now every 0.25-1 s (vendor); override with energy.refresh_s
    HAS_POWER = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.battery = sysfs(self.root, BATTERY)
        self.allow_charging = bool(config.get("allow_charging", False))
        self.units: GaugeUnits | None = None
        self._charging = ""

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        battery = sysfs(str(config.get("root", "") or ""), BATTERY)
        for name in ("current_now", "voltage_now"):
            try:
                read_number(battery / name)
            except PermissionError:
                return f"{battery / name} is not readable: run the agent as root"
            except (OSError, ValueError) as exc:
                return f"no fuel gauge: {exc}"
        return None

    def _raw(self) -> tuple[float, float]:
        return read_number(self.battery / "current_now"), read_number(self.battery / "voltage_now")

    def check_start(self) -> str:
        self._charging = charging_reason(self.root)
        if self._charging and not self.allow_charging:
            return (
                f"fuel-gauge refused: {self._charging}; the gauge would measure the charger. "
                "Unplug the device (use adb over Wi-Fi) or set energy.allow_charging = true"
            )
        status = ""
        try:
            status = read_text(self.battery / "status")
        except OSError:
            pass
        current, voltage = self._raw()
        self.units = detect_units(current, voltage, discharging=(status == "Discharging"))
        return ""

    def read_power_w(self) -> dict[str, float]:
        assert self.units is not None, "check_start runs before sampling"
        current, voltage = self._raw()
        return {"battery": discharge_power_w(current, voltage, self.units)}

    def extra_details(self) -> dict[str, Any]:
        units = self.units
        out: dict[str, Any] = {"charging": self._charging or False}
        if units is not None:
            out.update(
                current_unit=units.current_unit,
                voltage_unit=units.voltage_unit,
                discharge_sign=units.discharge_sign,
            )
        return out
