"""CPU pinning as an argv prefix, the same on every transport.

The run spine prepends :func:`pin_prefix` to the agent's argv when a profile sets
``[cpu] pin``; ``taskset`` exists on Android (toybox) and on Linux (util-linux), so pinning
needs no agent code and no root. The mask is hexadecimal without ``0x`` because toybox's
``taskset`` and util-linux's both read it that way.
"""

from __future__ import annotations

from typing import Iterable

from harness.errors import ConfigError

MAX_CORE_ID = 1023  # Linux's default CONFIG_NR_CPUS ceiling on arm64 and x86_64


def core_mask(cores: Iterable[int]) -> int:
    """The affinity bit mask for a set of core ids (bit n set for core n)."""
    ids = sorted(set(cores))
    if not ids:
        raise ConfigError("cannot pin to an empty set of cores; list core ids in [cpu.clusters]")
    bad = [c for c in ids if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= MAX_CORE_ID]
    if bad:
        raise ConfigError(
            f"core ids must be integers 0..{MAX_CORE_ID}, got {bad!r}; fix [cpu.clusters]"
        )
    mask = 0
    for core in ids:
        mask |= 1 << core
    return mask


def pin_prefix(cores: Iterable[int]) -> list[str]:
    """``["taskset", "<hexmask>"]``: prepend to an argv to run it on ``cores`` only."""
    return ["taskset", format(core_mask(cores), "x")]
