"""What the device's Python can do beyond the standard library and torch, asked, never assumed.

A board's Python is not the host's: Debian trixie's ``python3-torch`` is 2.6 on Python 3.13,
without onnxruntime, and without a C++ compiler unless ``build-essential`` is installed. The
agent reports the optional parts in its ``hello`` (``env["optional"]``), and a feature that
needs a missing part refuses with :class:`MissingCapability`, whose message names the part,
the device's Python and how to get it, instead of a bare ``ModuleNotFoundError`` or an
inductor traceback from deep inside the first step.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import platform
import shutil
import sys
from types import ModuleType
from typing import Any

# module -> (distribution name for its version, Debian package, pip package)
OPTIONAL_MODULES: dict[str, tuple[str, str, str]] = {
    "psutil": ("psutil", "python3-psutil", "psutil"),
    "onnx": ("onnx", "python3-onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "python3-onnxruntime", "onnxruntime"),
}
CXX_CANDIDATES = ("g++", "c++", "clang++")


class MissingCapability(RuntimeError):
    """The device lacks something a requested feature needs (a module, a compiler)."""


def _this_python() -> str:
    return f"{sys.executable or 'python'} (Python {platform.python_version()})"


def module_version(name: str) -> str | None:
    """The version of an optional module if the device's Python can find it, else None.

    Looks the module up without importing it (importing onnxruntime takes seconds).
    """
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except (ImportError, ValueError):
        return None
    dist = OPTIONAL_MODULES.get(name, (name, "", ""))[0]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's inductor would find ($CXX, then g++/c++/clang++)."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else []
    for name in (*candidates, *CXX_CANDIDATES):
        found = shutil.which(name)
        if found:
            return found
    return None


def report() -> dict[str, Any]:
    """Optional parts for the agent's hello: module versions (None: absent) and the compiler."""
    found: dict[str, Any] = {name: module_version(name) for name in OPTIONAL_MODULES}
    found["cxx"] = cxx_compiler()
    return found


def require_module(name: str, purpose: str) -> ModuleType:
    """Import an optional module for ``purpose``, or refuse with the way to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        _, debian, pip = OPTIONAL_MODULES.get(name, (name, f"python3-{name}", name))
        raise MissingCapability(
            f"{purpose} needs the Python module {name!r}, which the device's {_this_python()} "
            f"cannot import ({exc}); install it for that Python (Debian: apt install {debian}; "
            f"otherwise pip install {pip}) or leave {purpose} out of the run"
        ) from exc


def require_cxx(purpose: str) -> str:
    """The C++ compiler for inductor, or refuse: torch.compile cannot run without one."""
    found = cxx_compiler()
    if found is None:
        raise MissingCapability(
            f"{purpose} uses torch.compile (inductor), which needs a C++ compiler on the device; "
            f"none found ($CXX, {', '.join(CXX_CANDIDATES)} on PATH); install one (Debian: apt "
            "install g++) or leave it out of the run (eager mode, another kernel)"
        )
    return found
