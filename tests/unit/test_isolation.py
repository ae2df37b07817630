"""The test session never touches the user's state or the host's hardware (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import account_home


def test_home_and_the_harness_directories_are_temporary():
    from harness import deploy, locks
    from harness.cli_gate import DEFAULT_BASELINES
    from harness.cli_options import DEFAULT_RESULTS

    home = Path(os.environ["HOME"])
    assert home != account_home() and home.name == "home"
    base = home.parent
    for path in (locks.LOCK_DIR, deploy.CACHE_DIR, DEFAULT_RESULTS, DEFAULT_BASELINES):
        assert base in Path(path).parents, path


def test_nvml_cannot_be_imported_here_or_in_a_process_a_test_starts():
    import importlib

    try:
        importlib.import_module("pynvml")
        imported_here = True
    except ImportError:
        imported_here = False
    child = subprocess.run([sys.executable, "-c", "import pynvml"], capture_output=True, text=True)
    assert not imported_here
    assert child.returncode != 0 and "ImportError" in child.stderr


def test_a_process_a_test_starts_sees_no_cuda_device():
    child = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.strip() == "0"
