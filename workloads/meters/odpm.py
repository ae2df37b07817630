"""Pixel on-device power monitor (ODPM): cumulative per-rail energy from the PMIC's IIO devices.

Pixel 6 and later expose two IIO devices (main and sub PMIC, e.g. ``s2mpg12-odpm`` and
``s2mpg13-odpm`` on a Pixel 7), each with eight channels. ``energy_value`` reads::

    t=8795640
    CH0(T=8795640)[S4M_VDD_CPUCL0], 3322324
    CH1(T=8795640)[S3M_VDD_CPUCL1], 1045311

``t`` and ``T`` are milliseconds since boot, the numbers are cumulative µW·s (µJ) per rail.
The driver refreshes its accumulators only every ~160 ms, so a read can be that stale: each
rail's power is its energy delta over *its own* timestamps ``T`` (never the host's clock), and
the window's energy is that power times the measured window (see ``workloads.meters.base``).
A rail whose counter went back (restarted, re-enabled) or whose ``T`` did not advance is
dropped and flagged. The minimum window is 20 refresh periods (3.2 s). ``enabled_rails`` lists ``CH<n>[<rail>]``
with an optional ``:<subsystem>`` suffix.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from workloads.meters.base import METERS, Counters, EnergyMeter, read_text, sysfs

IIO_GLOB = "/sys/bus/iio/devices/iio:device*"
_CHANNEL = re.compile(r"^CH(\d+)\(T=(\d+)\)\[([^\]]+)\],\s*(\d+)\s*$")
_ENABLED = re.compile(r"^CH(\d+)\[([^\]]+)\](?::\s*(.*))?$")


@dataclass(frozen=True)
class OdpmSample:
    """One read of one ``energy_value`` file."""

    t_ms: int
    energy_uws: Mapping[str, int]  # rail -> cumulative µW·s
    rail_t_ms: Mapping[str, int]  # rail -> the channel's own timestamp


def parse_energy_value(text: str) -> OdpmSample:
    """Parse an ODPM ``energy_value`` file (pure: text in, sample out)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines or not lines[0].startswith("t="):
        raise ValueError(f"ODPM energy_value should start with 't=<ms>', got {text[:60]!r}")
    t_ms = int(lines[0][2:])
    energy: dict[str, int] = {}
    stamps: dict[str, int] = {}
    for line in lines[1:]:
        match = _CHANNEL.match(line)
        if not match:
            raise ValueError(f"ODPM energy_value line not in 'CH<n>(T=<ms>)[<rail>], <uWs>' form: {line!r}")
        _, t_rail, rail, value = match.groups()
        energy[rail] = int(value)
        stamps[rail] = int(t_rail)
    return OdpmSample(t_ms=t_ms, energy_uws=energy, rail_t_ms=stamps)


def parse_enabled_rails(text: str) -> dict[int, tuple[str, str]]:
    """Parse ``enabled_rails``: channel -> (rail, subsystem or '')."""
    out: dict[int, tuple[str, str]] = {}
    for line in text.strip().splitlines():
        match = _ENABLED.match(line.strip())
        if match:
            out[int(match.group(1))] = (match.group(2), (match.group(3) or "").strip())
    return out


def odpm_devices(root: str) -> list[Path]:
    """IIO device directories that have an ``energy_value`` file."""
    pattern = str(sysfs(root, IIO_GLOB))
    return sorted(Path(p) for p in glob.glob(pattern) if (Path(p) / "energy_value").is_file())


@METERS.register("odpm")
class OdpmMeter(EnergyMeter):
    """Per-rail energy counters of the Pixel ODPM (source ``measured:odpm``)."""

    NAME = "odpm"
    HAS_COUNTERS = True
    REFRESH_S = 0.16

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.devices = odpm_devices(self.root)
        self._t_ms: dict[str, tuple[int, int]] = {}  # device -> (t at start, t at stop)

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        devices = odpm_devices(str(config.get("root", "") or ""))
        if not devices:
            return "no ODPM: no /sys/bus/iio/devices/iio:device*/energy_value (Pixel 6 or later only)"
        try:
            read_text(devices[0] / "energy_value")
        except PermissionError:
            return (
                f"ODPM {devices[0]}/energy_value is not readable: run the agent as root "
                "(profile agent.root = 'su' or 'adb-root')"
            )
        return None

    def read_counters(self) -> Counters:
        """Joules per rail with the rail's own timestamp ``T`` (ms since boot, as ns)."""
        out: Counters = {}
        for dev in self.devices:
            sample = parse_energy_value(read_text(dev / "energy_value"))
            first, _ = self._t_ms.get(dev.name, (sample.t_ms, sample.t_ms))
            self._t_ms[dev.name] = (first, sample.t_ms)
            for rail, uws in sample.energy_uws.items():
                out[rail] = (uws / 1e6, sample.rail_t_ms[rail] * 1_000_000)
        return out

    def read_energy_j(self) -> dict[str, float]:
        return {rail: joules for rail, (joules, _) in self.read_counters().items()}

    def start(self) -> None:
        self._t_ms.clear()
        super().start()

    def extra_details(self) -> dict[str, Any]:
        windows = {dev: t1 - t0 for dev, (t0, t1) in self._t_ms.items()}
        return {"odpm_window_ms": windows, "odpm_refresh_s": self.refresh_s}
