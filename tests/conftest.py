"""Shared test setup: one torch thread per test process, and the real-parts policy.

Tests that need a real part (sshd, adb/adbd, Chromium) skip when it is missing, unless
``HARNESS_REQUIRE_REAL_PARTS=1`` (CI sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import os

import pytest

REQUIRE_REAL_PARTS = os.environ.get("HARNESS_REQUIRE_REAL_PARTS") == "1"


def need_part(available: bool, what: str) -> None:
    """Skip (or, in CI, fail) a test whose real part is missing."""
    if available:
        return
    if REQUIRE_REAL_PARTS:
        pytest.fail(f"missing {what} (HARNESS_REQUIRE_REAL_PARTS=1 makes this a failure)")
    pytest.skip(f"missing {what}")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
