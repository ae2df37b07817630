"""hwmon meters: generic ``power*_input``/``energy*_input`` sensors and Jetson INA3221 rails.

- Generic hwmon: ``energy<N>_input`` is a cumulative µJ counter (read at start and stop),
  ``power<N>_input`` is µW (sampled and integrated); ``*_label`` names the channel.
- Jetson (JetPack 5/6): an ``ina3221`` hwmon device with ``in<N>_label`` (e.g. ``VDD_IN``),
  ``in<N>_input`` in mV and ``curr<N>_input`` in mA; power = V·I, sampled and integrated.
  ``VDD_IN`` is the module's whole input, the other rails are parts of it, so the total is
  ``VDD_IN`` when present and the sum of the rails otherwise.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from workloads.meters.base import METERS, EnergyMeter, read_number, read_text, sysfs

HWMON_GLOB = "/sys/class/hwmon/hwmon*"
_INDEXED = re.compile(r"^(power|energy|in|curr)(\d+)_input$")


@dataclass(frozen=True)
class HwmonChannel:
    """One sensor file and the name it reports under."""

    name: str
    kind: str  # power | energy | rail (Jetson: voltage and current files)
    path: Path
    current_path: Path | None = None


def _label(device: Path, prefix: str, index: str, default: str) -> str:
    label = device / f"{prefix}{index}_label"
    return read_text(label) if label.is_file() else default


def hwmon_devices(root: str) -> list[tuple[Path, str]]:
    """(directory, name) of every hwmon device."""
    out = []
    for entry in sorted(glob.glob(str(sysfs(root, HWMON_GLOB)))):
        path = Path(entry)
        name = read_text(path / "name") if (path / "name").is_file() else path.name
        out.append((path, name))
    return out


def generic_channels(root: str) -> list[HwmonChannel]:
    """``power*_input`` and ``energy*_input`` of every hwmon device except INA3221."""
    out = []
    for device, dev_name in hwmon_devices(root):
        if dev_name == "ina3221":
            continue
        for file in sorted(device.iterdir()):
            match = _INDEXED.match(file.name)
            if match and match.group(1) in ("power", "energy"):
                kind, index = match.groups()
                label = _label(device, kind, index, f"{kind}{index}")
                out.append(HwmonChannel(f"{dev_name}:{label}", kind, file))
    return out


def ina3221_channels(root: str) -> list[HwmonChannel]:
    """Jetson rails: INA3221 channels with a label, a voltage and a current."""
    out = []
    for device, dev_name in hwmon_devices(root):
        if dev_name != "ina3221":
            continue
        for file in sorted(device.glob("in*_label")):
            index = file.name[2:].split("_", 1)[0]
            volt, curr = device / f"in{index}_input", device / f"curr{index}_input"
            if volt.is_file() and curr.is_file():
                out.append(HwmonChannel(read_text(file), "rail", volt, curr))
    return out


def rail_power_w(millivolts: float, milliamps: float) -> float:
    """INA3221 rail power from its mV and mA readings."""
    return millivolts * milliamps / 1e6


def _probe_channels(channels: list[HwmonChannel], what: str) -> str | None:
    if not channels:
        return f"no {what} found under /sys/class/hwmon"
    try:
        read_number(channels[0].path)
    except PermissionError:
        return f"{channels[0].path} is not readable: run the agent as root"
    return None


@METERS.register("hwmon")
class HwmonMeter(EnergyMeter):
    """Generic hwmon energy counters and power sensors (source ``measured:hwmon``)."""

    NAME = "hwmon"
    HAS_COUNTERS = True
    HAS_POWER = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        channels = generic_channels(self.root)
        self.energy = [c for c in channels if c.kind == "energy"]
        self.power = [c for c in channels if c.kind == "power"]

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        return _probe_channels(
            generic_channels(str(config.get("root", "") or "")), "hwmon power*_input or energy*_input"
        )

    def read_energy_j(self) -> dict[str, float]:
        return {c.name: read_number(c.path) / 1e6 for c in self.energy}

    def read_power_w(self) -> dict[str, float]:
        return {c.name: read_number(c.path) / 1e6 for c in self.power}


@METERS.register("jetson-ina3221")
class JetsonMeter(EnergyMeter):
    """Jetson INA3221 rails, V·I integrated (source ``measured:jetson-ina3221``)."""

    NAME = "jetson-ina3221"
    HAS_POWER = True
    TOTAL_RAIL = "VDD_IN"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.rails = ina3221_channels(self.root)

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        return _probe_channels(ina3221_channels(str(config.get("root", "") or "")), "INA3221 rails")

    def read_power_w(self) -> dict[str, float]:
        out = {}
        for rail in self.rails:
            assert rail.current_path is not None
            out[rail.name] = rail_power_w(read_number(rail.path), read_number(rail.current_path))
        return out

    def total_j(self, rails_j: Mapping[str, float]) -> float:
        if self.TOTAL_RAIL in rails_j:
            return rails_j[self.TOTAL_RAIL]
        return sum(rails_j.values())

    def extra_details(self) -> dict[str, Any]:
        names = [r.name for r in self.rails]
        return {"total_from": self.TOTAL_RAIL if self.TOTAL_RAIL in names else "sum of rails"}
