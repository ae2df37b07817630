"""The agent asks what the device's Python has, and refuses clearly what it lacks.

A board's Python is not the host's (tests/integration/test_board.py runs Debian trixie's
Python 3.13 and torch 2.6): these tests hide a module or the C++ compiler from this Python
and check the refusal names the part, the device's Python and the way to get it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from workloads import capabilities, schema
from workloads.agent import hello, run_case
from workloads.capabilities import MissingCapability


def hide_module(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError


def no_compiler(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no g++, c++ or clang++


def small_spec(**extra: object) -> dict:
    return {"case_id": "c", "workload": "bert_tiny", "optimizer": "nag", "kernel": "forloop",
            "threads": 1, "batch": 2, "dtype": "fp32", "steps": 1, "warmup": 1, "seed": 0,
            "check_steps": 0, "options": {"vocab_size": 64, "seq_len": 8}, **extra}


def test_an_absent_module_has_no_version() -> None:
    assert capabilities.module_version("odt_no_such_module_here") is None


def test_a_present_module_reports_its_installed_version() -> None:
    import numpy

    assert capabilities.module_version("numpy") == numpy.__version__


def test_a_missing_module_is_refused_with_the_python_and_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_module(monkeypatch, "onnxruntime")
    with pytest.raises(MissingCapability) as info:
        capabilities.require_module("onnxruntime", "the ort NAG kernel")
    message = str(info.value)
    for part in ("the ort NAG kernel", "'onnxruntime'", sys.executable, "apt install python3-onnxruntime",
                 "pip install onnxruntime"):
        assert part in message


def test_the_compiler_is_found_through_cxx_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    compiler = tmp_path / "my-c++"
    compiler.write_text("#!/bin/sh\n")
    compiler.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CXX", "my-c++")
    assert capabilities.cxx_compiler() == str(compiler)


def test_no_compiler_is_refused_before_torch_compile_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_compiler(monkeypatch, tmp_path)
    assert capabilities.cxx_compiler() is None
    with pytest.raises(MissingCapability, match="needs a C\\+\\+ compiler on the device.*apt install g\\+\\+"):
        capabilities.require_cxx("mode = compile")


def test_hello_lists_the_optional_parts_and_says_which_are_absent(monkeypatch: pytest.MonkeyPatch,
                                                                  tmp_path: Path) -> None:
    hide_module(monkeypatch, "psutil")
    no_compiler(monkeypatch, tmp_path)
    optional = hello().env["optional"]
    assert set(optional) == {"psutil", "onnx", "onnxruntime", "cxx"}
    assert optional["psutil"] is None and optional["cxx"] is None


def test_the_ort_kernel_without_onnxruntime_is_a_missing_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    from workloads.optim.nag_ort import OrtNAG

    hide_module(monkeypatch, "onnxruntime")
    with pytest.raises(MissingCapability, match="the ort NAG kernel needs the Python module 'onnxruntime'"):
        OrtNAG([torch.nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.9)


def test_the_compiled_kernel_without_a_compiler_is_a_missing_capability(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    from workloads.optim.nag_compiled import CompiledNAG

    no_compiler(monkeypatch, tmp_path)
    with pytest.raises(MissingCapability, match="the compiled NAG kernel uses torch.compile"):
        CompiledNAG([torch.nn.Parameter(torch.zeros(4))], lr=0.1, momentum=0.9)


def test_the_compiled_kernel_names_this_torchs_recompile_limit() -> None:
    from workloads.optim.nag_compiled import _recompile_limit_key

    key = _recompile_limit_key()
    assert hasattr(torch._dynamo.config, key)  # torch >= 2.7: recompile_limit; 2.6: cache_size_limit


@pytest.mark.parametrize(("extra", "hide", "part"), [
    ({"onnx_inference": True}, "onnxruntime", "ONNX inference"),
    ({"mode": "compile"}, "", "mode = compile"),
])
def test_a_case_the_device_cannot_run_is_refused_before_any_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: dict, hide: str, part: str,
) -> None:
    if hide:
        hide_module(monkeypatch, hide)
    else:
        no_compiler(monkeypatch, tmp_path)
    records: list[schema.Record] = []
    with pytest.raises(MissingCapability, match=part):
        run_case(small_spec(**extra), records.append)
    assert not [r for r in records if isinstance(r, (schema.CaseStart, schema.Step))]
