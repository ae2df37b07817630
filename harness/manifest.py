"""The run manifest: what was measured, with what, where, and how to reproduce it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from harness.profiles import Profile
from harness.store import RESULTS_VERSION

REPO_DIR = Path(__file__).resolve().parent.parent
_PACKAGES = ("torch", "numpy", "pandas", "onnxruntime", "paramiko", "adbutils", "psutil", "scipy")


def git_state(repo: Path = REPO_DIR) -> dict[str, Any]:
    """Commit and dirty flag of the harness checkout ("unknown" outside a git checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("ondevice-train-harness", *_PACKAGES):
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python_executable": sys.executable,
    }


def new_manifest(
    run_id: str, profiles: Sequence[Profile], *, suite: str, seed: int, order_seed: int,
    argv: Sequence[str], case_ids: Sequence[str],
) -> dict[str, Any]:
    return {
        "results_version": RESULTS_VERSION,
        "run_id": run_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": git_state(),
        "host": host_info(),
        "devices": [{"name": p.name, "model": p.model, "profile": p.to_dict(), "path": p.path}
                    for p in profiles],
        "device": {"name": profiles[0].name, "model": profiles[0].model, "profile": profiles[0].to_dict()},
        "versions": versions(),
        "suite": suite,
        "seed": seed,
        "order_seed": order_seed,
        "case_order": list(case_ids),
        "argv": list(argv),
        "status": "running",
    }
