"""Micro-benchmark options: ``--bench-threads N`` sets torch's (and ORT's) thread count.

These benchmarks are run by ``nox -s microbench`` only; ``nox -s tests`` ignores tests/bench.
"""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-threads", type=int, default=1,
        help="torch intra-op threads for the update micro-benchmarks (default 1)",
    )


@pytest.fixture(scope="session", autouse=True)
def bench_threads(request: pytest.FixtureRequest) -> int:
    threads = int(request.config.getoption("--bench-threads"))
    if threads < 1:
        raise pytest.UsageError(f"--bench-threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    return threads
