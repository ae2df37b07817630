"""Benchmark: build the HTML report from one million step rows (200 cases × 5,000 steps).

Shown, never asserted (targets: < 60 s wall, < 2 GB peak RSS). The report is built in a
fresh subprocess so its peak RSS (``ru_maxrss`` of the child) is the report's own, not
the generator's or pytest's. Run with::

    python -m pytest tests/bench/test_report_bench.py --benchmark-only -s

or ``PYTHONPATH=. python tests/bench/test_report_bench.py`` for the numbers without pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reports.synthetic import SyntheticSpec, write_synthetic_run

ROOT = Path(__file__).resolve().parents[2]
MILLION_STEPS = SyntheticSpec(
    run_id="bench-1m", workloads=("mlp", "cnn", "lstm", "kws", "vit"), optimizers=("nag", "adam"),
    kernels=("forloop", "foreach", "fused", "flat"), batches=(8, 16, 32, 64, 128),
    steps=4990, warmup_steps=10)  # 5 × 2 × 4 × 5 = 200 cases × 5,000 rows


def build_in_subprocess(run_dir: Path, out: Path, fmt: str = "html") -> dict[str, float]:
    """Build a report in a child process; return its wall time and its own peak RSS.

    The child reports ``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux) on stdout, so
    each build's peak is its own even when several run from one parent.
    """
    code = ("import resource, sys; from pathlib import Path; import reports; "
            "reports.build_report([Path(sys.argv[1])], Path(sys.argv[2]), sys.argv[3]); "
            "sys.stdout.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, str(run_dir), str(out), fmt], check=True,
                          env=env, cwd=ROOT, capture_output=True, text=True)
    wall_s = time.perf_counter() - start
    return {"wall_s": wall_s, "peak_rss_mib": int(done.stdout.strip()) / 1024}


@pytest.fixture(scope="module")
def million_step_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("bench") / "run", MILLION_STEPS)


@pytest.mark.slow
def test_report_from_a_million_steps(benchmark: pytest.FixtureRequest, million_step_run: Path,
                                     tmp_path: Path) -> None:
    results: list[dict[str, float]] = []

    def run() -> None:
        results.append(build_in_subprocess(million_step_run, tmp_path / "report.html"))

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(results[-1])
    benchmark.extra_info["step_rows"] = 200 * 5000
    benchmark.extra_info["html_bytes"] = (tmp_path / "report.html").stat().st_size
    assert (tmp_path / "report.html").stat().st_size > 0


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = write_synthetic_run(Path(tmp) / "run", MILLION_STEPS)
        for fmt, name in (("html", "report.html"), ("md", "summary.md"), ("csv", "tables")):
            numbers = build_in_subprocess(run_dir, Path(tmp) / name, fmt)
            sys.stdout.write(f"{fmt}: wall {numbers['wall_s']:.1f} s, peak RSS "
                             f"{numbers['peak_rss_mib']:.0f} MiB\n")
