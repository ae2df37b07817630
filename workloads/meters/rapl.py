"""Intel/AMD RAPL through powercap: ``/sys/class/powercap/intel-rapl:*/energy_uj`` counters.

Each zone (``intel-rapl:0`` = package-0, ``intel-rapl:0:0`` = core, ...) has a ``name``, a
cumulative ``energy_uj`` and ``max_energy_range_uj`` where the counter wraps to zero; one
wrap between two reads is undone. The total is the sum of the top-level ``package-*`` zones
(sub-zones and ``psys`` overlap them). Since Linux 5.10 ``energy_uj`` is readable by root
only (Platypus, CVE-2020-8694).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from workloads.meters.base import METERS, EnergyMeter, read_number, read_text, sysfs

POWERCAP_GLOB = "/sys/class/powercap/intel-rapl:*"

PERMISSION_FIX = (
    "since Linux 5.10 energy_uj is readable by root only (CVE-2020-8694). Run the agent as "
    "root, or once per boot `sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj "
    "/sys/class/powercap/intel-rapl:*:*/energy_uj`, or add a udev rule "
    "(/etc/udev/rules.d/99-rapl.rules: SUBSYSTEM==\"powercap\", ACTION==\"add\", "
    "RUN+=\"/bin/chmod o+r /sys%p/energy_uj\")"
)


@dataclass(frozen=True)
class RaplZone:
    """One powercap zone: its directory, its name and where its counter wraps."""

    path: Path
    name: str
    max_energy_range_uj: int
    top_level: bool


def wrapped_delta_uj(start_uj: int, end_uj: int, max_range_uj: int) -> int:
    """Counter difference, undoing one wrap-around at ``max_range_uj``."""
    if end_uj >= start_uj:
        return end_uj - start_uj
    return end_uj + max_range_uj - start_uj


def find_zones(root: str) -> list[RaplZone]:
    """Every powercap RAPL zone with an energy counter, named uniquely."""
    zones = []
    for entry in sorted(glob.glob(str(sysfs(root, POWERCAP_GLOB)))):
        path = Path(entry)
        if not (path / "energy_uj").exists():
            continue
        name = read_text(path / "name") if (path / "name").exists() else path.name
        suffix = path.name.split(":", 1)[1]
        top = ":" not in suffix
        max_range = int(read_number(path / "max_energy_range_uj"))
        zones.append(RaplZone(path, name if top else f"{name}:{suffix}", max_range, top))
    return zones


@METERS.register("rapl")
class RaplMeter(EnergyMeter):
    """RAPL energy counters per zone (source ``measured:rapl``)."""

    NAME = "rapl"
    REFRESH_S = 0.001  # RAPL updates its counters about every millisecond
    HAS_COUNTERS = True

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.zones = {z.name: z for z in find_zones(self.root)}

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        try:
            zones = find_zones(str(config.get("root", "") or ""))
        except PermissionError as exc:
            return f"cannot read {exc.filename}: {PERMISSION_FIX}"
        if not zones:
            return "no RAPL: no /sys/class/powercap/intel-rapl:*/energy_uj (x86 Linux only)"
        try:
            read_number(zones[0].path / "energy_uj")
        except PermissionError:
            return f"cannot read {zones[0].path / 'energy_uj'}: {PERMISSION_FIX}"
        return None

    def read_energy_j(self) -> dict[str, float]:
        # counters stay in integer µJ until the delta, so wrap-around is exact
        return {name: read_number(z.path / "energy_uj") for name, z in self.zones.items()}

    def counter_delta_j(self, start: Mapping[str, float], end: Mapping[str, float]) -> dict[str, float]:
        return {
            name: wrapped_delta_uj(int(start[name]), int(end[name]), z.max_energy_range_uj) / 1e6
            for name, z in self.zones.items()
            if name in start and name in end
        }

    def total_j(self, rails_j: Mapping[str, float]) -> float:
        top = {n: j for n, j in rails_j.items() if self.zones[n].top_level}
        packages = [j for n, j in top.items() if n.startswith("package")]
        if packages:
            return sum(packages)
        others = [j for n, j in top.items() if n != "psys"]
        return sum(others) if others else sum(top.values())
