"""Shared test setup: isolation from the user's state and the host's hardware, one torch thread
per test process, and the real-parts policy.

Isolation (set before any test module imports ``harness``, inherited by every agent process a
test starts): ``$HOME``, the harness's lock, cache, results and baselines directories point
into one temporary directory, so a ``nox -s bench`` running beside the tests, or a run the
user left in ``results/``, changes nothing. The host's accelerators and NVML are hidden
(``CUDA_VISIBLE_DEVICES=""`` and an import of ``pynvml`` that fails), so ``meter = "auto"``
and the probe see the same machine on a laptop and on a GPU workstation.
``HARNESS_TEST_HOST_HARDWARE=1`` keeps the host's accelerators and meters visible.

Tests that need a real part (sshd, adb/adbd, Chromium) skip when it is missing, unless
``HARNESS_REQUIRE_REAL_PARTS=1`` (CI sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REQUIRE_REAL_PARTS = os.environ.get("HARNESS_REQUIRE_REAL_PARTS") == "1"
HOST_HARDWARE = os.environ.get("HARNESS_TEST_HOST_HARDWARE") == "1"
_HIDDEN_MODULES = ("pynvml",)  # host meters a test must not find by accident
_state: dict[str, str] = {}
# what _isolate sets and a test's own environment for a harness process keeps (private_env)
_ISOLATED = ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "HARNESS_CACHE", "HARNESS_RESULTS",
             "HARNESS_BASELINES", "CUDA_VISIBLE_DEVICES", "PYTHONPATH")


def _isolate(base: Path) -> dict[str, str]:
    """The environment of an isolated test session under ``base`` (directories created)."""
    home = base / "home"
    env = {
        "HOME": str(home),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "HARNESS_LOCK_DIR": str(base / "locks"),
        "HARNESS_CACHE": str(base / "cache"),
        "HARNESS_RESULTS": str(base / "results"),
        "HARNESS_BASELINES": str(base / "baselines"),
    }
    for key in ("HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"):
        Path(env[key]).mkdir(parents=True, exist_ok=True)
    if not HOST_HARDWARE:
        env["CUDA_VISIBLE_DEVICES"] = ""
        shim = base / "hidden-modules"  # first on the agents' sys.path: `import pynvml` fails there too
        shim.mkdir()
        for name in _HIDDEN_MODULES:
            (shim / f"{name}.py").write_text(
                f"raise ImportError('{name} is hidden from the tests (HARNESS_TEST_HOST_HARDWARE=1 shows it)')\n")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)
    return env


def private_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The whole environment of a harness process a test starts: the system's PATH only, this
    session's isolation (``$HOME``, caches, results, hidden accelerators and host meters) and a
    lock directory of the test's own; ``extra`` adds or overrides (a per-test ``HOME``)."""
    env = {key: os.environ[key] for key in _ISOLATED if key in os.environ}
    return {**env, "PATH": "/usr/bin:/bin", "HARNESS_LOCK_DIR": str(tmp / "locks"), **extra}


def pytest_configure(config: pytest.Config) -> None:
    base = Path(tempfile.mkdtemp(prefix="harness-tests-"))
    _state["base"] = str(base)
    for key, value in _isolate(base).items():
        _state.setdefault(f"old:{key}", os.environ.get(key, "\0"))
        os.environ[key] = value
    if not HOST_HARDWARE:
        for name in _HIDDEN_MODULES:
            sys.modules[name] = None  # type: ignore[assignment]  # `import pynvml` raises ImportError


def pytest_unconfigure(config: pytest.Config) -> None:
    for key, old in list(_state.items()):
        if key.startswith("old:"):
            if old == "\0":
                os.environ.pop(key[4:], None)
            else:
                os.environ[key[4:]] = old
    if "base" in _state:
        shutil.rmtree(_state.pop("base"), ignore_errors=True)


# Tests that run the agent end to end, train real models or compile: `-m "not slow"` skips them.
SLOW_MODULES = frozenset({
    "tests/integration/test_bench_local.py", "tests/integration/test_bench_groups.py",
    "tests/integration/test_energy_e2e.py",
    "tests/integration/test_faults_local.py", "tests/integration/test_gate_e2e.py",
    "tests/integration/test_lab_commands.py", "tests/integration/test_several_devices.py",
    "tests/integration/test_study.py", "tests/integration/test_empty_run_browser.py",
    "tests/integration/test_report_plots_browser.py",
    "tests/integration/test_disk_full.py", "tests/integration/test_link_faults.py",
    "tests/unit/test_learnable.py",
})
SLOW_WORDS = ("compiled",)  # torch.compile: tens of seconds per test


# The longest modules first (each module's time in a whole run, two workers, 2026-11-29), so
# that with pytest-xdist (one module per worker at a time) no long module starts last while
# the other workers sit idle. xdist keeps this order only with --no-loadscope-reorder (the
# noxfile passes it); by default it sends the modules with the most tests first.
LONGEST_FIRST = (
    "tests/integration/test_link_faults.py", "tests/integration/test_lab_commands.py",
    "tests/integration/test_faults_local.py", "tests/integration/test_gate_e2e.py",
    "tests/integration/test_bench_local.py", "tests/integration/test_bench_groups.py",
    "tests/integration/test_ssh.py", "tests/integration/test_disk_full.py",
    "tests/unit/test_variants_on_workloads.py", "tests/unit/test_relative.py",
    "tests/unit/test_reports.py", "tests/integration/test_energy_e2e.py",
    "tests/integration/test_study.py", "tests/unit/test_learnable.py",
    "tests/unit/test_reports_extras.py", "tests/integration/test_adb.py",
    "tests/unit/test_models.py", "tests/integration/test_host_crash.py",
    "tests/integration/test_several_devices.py", "tests/integration/test_report_browser.py",
    "tests/integration/test_ssh_without_sftp.py", "tests/integration/test_report_plots_browser.py",
    "tests/integration/test_board.py", "tests/unit/test_bad_input_properties.py",
    "tests/unit/test_optim.py", "tests/unit/test_meters.py",
    "tests/integration/test_empty_run_browser.py", "tests/unit/test_between_runs.py",
    "tests/unit/test_paired.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {module: i for i, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable
    for item in items:
        module = item.nodeid.split("::")[0]
        if module.startswith("tests/integration/"):
            item.add_marker(pytest.mark.integration)
        if module in SLOW_MODULES or any(word in item.nodeid for word in SLOW_WORDS):
            item.add_marker(pytest.mark.slow)


def account_home() -> Path:
    """The account's home directory, where sshd puts a remote ``~`` (``$HOME`` is isolated)."""
    import pwd

    return Path(pwd.getpwuid(os.getuid()).pw_dir)


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
