"""The host's torch-free catalog (workloads/catalog.json) says what the registries say."""

from __future__ import annotations

import json
import subprocess
import sys

from workloads import catalog


def test_the_catalog_file_matches_the_registries():
    stored = json.loads(catalog.PATH.read_text(encoding="utf-8"))
    assert stored == catalog.from_registries(), "rewrite it: python -m workloads.catalog --write"


def test_the_catalog_lists_the_registries_names_and_kernels():
    from workloads.optim import OPTIMIZERS, all_kernels
    from workloads.workload import WORKLOADS

    assert catalog.WORKLOADS.names() == WORKLOADS.names()
    assert catalog.OPTIMIZERS.names() == OPTIMIZERS.names()
    assert catalog.all_kernels() == all_kernels()
    assert catalog.OPTIMIZERS.get("nag").kernels == OPTIMIZERS.get("nag").kernels
    assert catalog.WORKLOADS.get("ds_cnn").domain == "speech"


def test_planning_a_suite_imports_no_torch():
    code = ("import sys; from harness.plan import expand, load_suite; "
            "cases = expand(load_suite('smoke')); "
            "print(len(cases), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["18", "False"]
