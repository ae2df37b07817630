"""Raspberry Pi 5 PMIC rails from ``vcgencmd pmic_read_adc``: per-rail I·V, integrated.

The command prints one line per ADC channel, currents and voltages separately::

       VDD_CORE_A current(7)=2.31876000A
       VDD_CORE_V volt(15)=0.87060800V

Rails are paired by name without the ``_A``/``_V`` suffix; a rail needs both to have a
power. The PMIC rails do not include the 5 V input's conversion losses or USB peripherals,
so their sum understates whole-board power. Each call takes tens of milliseconds: keep
``sample_interval_s`` at 0.1 s or more on this meter.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any, Callable, Mapping

from workloads.meters.base import METERS, EnergyMeter

COMMAND = ("vcgencmd", "pmic_read_adc")
TIMEOUT_S = 2.0
_LINE = re.compile(r"^\s*(\S+)\s+(current|volt)\(\d+\)=([-+0-9.eE]+)([AV])\s*$")


def parse_pmic_read_adc(text: str) -> dict[str, float]:
    """Per-rail power in watts from ``pmic_read_adc`` output (pure)."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        label, kind, value, _ = match.groups()
        rail = re.sub(r"_[AV]$", "", label)
        (amps if kind == "current" else volts)[rail] = float(value)
    return {rail: amps[rail] * volts[rail] for rail in amps if rail in volts}


def run_vcgencmd() -> str:
    """Run ``vcgencmd pmic_read_adc`` with a timeout; its stdout."""
    done = subprocess.run(
        COMMAND, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise OSError(
            f"`{' '.join(COMMAND)}` exited {done.returncode}: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


@METERS.register("vcgencmd")
class VcgencmdMeter(EnergyMeter):
    """Raspberry Pi 5 PMIC rails (source ``measured:vcgencmd``)."""

    NAME = "vcgencmd"
    HAS_POWER = True

    def __init__(self, config: Mapping[str, Any], run: Callable[[], str] = run_vcgencmd) -> None:
        super().__init__(config)
        self.run = run

    @classmethod
    def probe(cls, config: Mapping[str, Any]) -> str | None:
        if shutil.which(COMMAND[0]) is None:
            return "vcgencmd is not on PATH (Raspberry Pi OS only)"
        try:
            rails = parse_pmic_read_adc(run_vcgencmd())
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"vcgencmd pmic_read_adc failed: {exc}"
        if not rails:
            return "vcgencmd pmic_read_adc printed no rails (Raspberry Pi 5 only)"
        return None

    def read_power_w(self) -> dict[str, float]:
        try:
            return parse_pmic_read_adc(self.run())
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"vcgencmd timed out after {exc.timeout} s") from None
