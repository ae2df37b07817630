"""What a value from a profile, a suite or the command line may be: numeric ranges and names.

Every number the harness reads has a documented range here (docs/reliability.md lists the same
table, and a test checks that the two agree). Floats must be finite: TOML allows ``nan`` and
``inf``, and ``case_timeout_s = nan`` would disable a deadline. A violation is a one-line
:class:`ConfigError` naming the file and the key (the CLI exits 2).

Names that become paths (a device's name: its lock file and log; a run id: its directory) are
checked at load against a small alphabet, so nothing the harness writes can leave the run,
baselines or cache directories. Free text that reaches a remote shell line or a file of
lines (work directory, paths, environment values) may not hold control characters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError

INT64_MAX = 2**63 - 1
WEEK_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Range:
    """Inclusive bounds of one numeric field, and what the field means (for the docs)."""

    low: float
    high: float
    meaning: str
    integer: bool = False

    def text(self) -> str:
        fmt = "{:d}" if self.integer else "{:g}"
        return f"{fmt.format(int(self.low) if self.integer else self.low)} … " \
               f"{fmt.format(int(self.high) if self.integer else self.high)}"


def _i(low: int, high: int, meaning: str) -> Range:
    return Range(low, high, meaning, integer=True)


# profile fields, by "section.key"
PROFILE_RANGES: dict[str, Range] = {
    "connection.port": _i(0, 65535, "ssh port; 0: the ssh config's, else 22"),
    "connection.connect_timeout_s": Range(0.1, 3600, "seconds to wait for a connection"),
    "connection.keepalive_s": Range(0, 86400, "seconds between ssh keepalives; 0: off"),
    "agent.case_timeout_s": Range(1, WEEK_S, "seconds one case may run before it is killed"),
    "agent.retries": _i(0, 20, "attempts after the first on a transient fault"),
    "cpu.threads": _i(0, 4096, "default thread count; 0: the suite's"),
    "cpu.clusters": _i(0, 4095, "core ids of a cluster"),
    "energy.idle_window_s": Range(0, 3600, "seconds of idle power measured before a case"),
    "energy.sample_interval_s": Range(0.001, 60, "seconds between power samples"),
    "energy.cpu_idle_w": Range(0, 10_000, "estimated cpu-model: watts at idle"),
    "energy.cpu_max_w": Range(0, 10_000, "estimated cpu-model: watts at full load"),
    "energy.refresh_s": Range(0, 3600, "the meter's refresh period; 0: its default"),
    "energy.min_window_s": Range(0, 3600, "shortest energy window; 0: the meter's"),
    "energy.max_extend_s": Range(0, 86400, "longest extension of the measured steps"),
    "thermal.cooldown_c": Range(0, 150, "cool down to this °C before a case; 0: off"),
    "thermal.cooldown_timeout_s": Range(0, 86400, "longest wait for the cooldown"),
    "thermal.hot_c": Range(0, 200, "°C above which a case is flagged hot"),
}

# suite keys (top level or in a [[matrix]] block), and the command-line options that replace them
SUITE_RANGES: dict[str, Range] = {
    "steps": _i(1, 1_000_000, "measured steps per case (--steps)"),
    "warmup": _i(0, 100_000, "warm-up steps per case (--warmup)"),
    "seed": _i(0, 2**32 - 1, "seed for data, weights and case order (--seed)"),
    "check_steps": _i(0, 10_000, "steps of the correctness check"),
    "warmup_max": _i(1, 100_000, "longest warm-up when warming up until stable"),
    "timeout_s": Range(0, WEEK_S, "seconds one case may run; 0: the profile's"),
    "threads": _i(1, 4096, "thread counts (--threads)"),
    "batch": _i(1, 65_536, "batch sizes (--batch)"),
    "processes": _i(1, 10_000, "agent processes per case (--processes)"),
    "hparams": Range(-1e6, 1e6, "optimizer hyper-parameters (finite)"),
    "options": Range(-1e9, 1e9, "numeric workload options (finite)"),
}

CLI_RANGES: dict[str, Range] = {
    "--repeat": _i(1, 10_000, "rounds of every case (harness ab, calibrate)"),
}


def check_number(value: Any, rng: Range, *, source: str, key: str) -> float | int:
    """``value`` if it is a finite number (an integer where one is required) inside ``rng``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if rng.integer else "a number"
        raise ConfigError(f"expected {kind} in {rng.text()}, got {value!r}", source=source, key=key)
    if rng.integer and not isinstance(value, int):
        raise ConfigError(f"expected an integer in {rng.text()}, got {value!r}", source=source, key=key)
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"must be a finite number in {rng.text()}, got {value!r}", source=source, key=key)
    if not rng.low <= value <= rng.high:
        text = repr(value)
        shown = text if len(text) <= 24 else f"{text[:12]}…({len(text)} digits)"
        raise ConfigError(f"must be in {rng.text()} ({rng.meaning}), got {shown}", source=source, key=key)
    return value


# -- names and text -----------------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,99}\Z")
NAME_RULE = ("1 to 100 of A-Z a-z 0-9 _ . + -, not starting with '.', '+' or '-' "
             "(it names files: no '/', no '..')")


def check_name(value: Any, *, source: str, key: str) -> str:
    """A name that becomes part of a path: small alphabet, no separators, no dots-only names."""
    if not isinstance(value, str) or not NAME_RE.match(value) or set(value) <= {"."}:
        raise ConfigError(f"{value!r} is not a valid name: use {NAME_RULE}", source=source, key=key)
    return value


def check_text(value: str, *, source: str, key: str, what: str = "value") -> str:
    """Free text without control characters (newline, NUL, escape ...)."""
    bad = sorted({c for c in value if ord(c) < 32 or ord(c) == 127})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise ConfigError(f"the {what} {value!r} holds control characters ({shown}); remove them",
                          source=source, key=key)
    return value


ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_env(env: dict[str, str], *, source: str, key: str) -> None:
    """Environment names that a POSIX shell accepts, and values without NUL."""
    for name, value in env.items():
        if not ENV_NAME_RE.match(name):
            raise ConfigError(f"environment variable name {name!r} is not a valid shell name; use "
                              "letters, digits and _, not starting with a digit", source=source,
                              key=f"{key}.{name}" if name.isprintable() else key)
        if "\0" in value:
            raise ConfigError("the value holds a NUL character, which no environment can carry",
                              source=source, key=f"{key}.{name}")
