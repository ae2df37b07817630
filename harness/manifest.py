"""The run manifest: what was measured, with what, where, and how to reproduce it.

A profile's ``[agent].env`` may hold secrets (tokens, passwords for a meter's service), and
the manifest travels: it is embedded in ``report.html``, the file people share. So the
manifest keeps the variable *names* and one SHA-256 over all names and values (to see that
the environment changed between runs), and values only of the names the profile lists in
``[agent].record_env``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
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


def env_record(env: dict[str, str], record: Sequence[str]) -> dict[str, Any]:
    """What a manifest keeps of an agent environment: names, a hash, the values marked safe."""
    digest = hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest()
    return {"names": sorted(env), "sha256": digest, "values": {k: env[k] for k in record if k in env}}


def public_profile(profile: Profile) -> dict[str, Any]:
    """The profile as a manifest records it: ``[agent].env`` values replaced by :func:`env_record`."""
    data = profile.to_dict()
    data["agent"]["env"] = env_record(dict(profile.agent.env), profile.agent.record_env)
    return data


def redact_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """A stored manifest with raw env tables (written before env_record) reduced to names and a hash."""
    entries = [d.get("profile") for d in manifest.get("devices", [])] + [manifest.get("device", {}).get("profile")]
    for prof in entries:
        agent = prof.get("agent") if isinstance(prof, dict) else None
        env = agent.get("env") if isinstance(agent, dict) else None
        if isinstance(env, dict) and set(env) - {"names", "sha256", "values"}:
            record = agent.get("record_env") or []
            agent["env"] = env_record({str(k): str(v) for k, v in env.items()}, record)
    return manifest


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
        "devices": [{"name": p.name, "model": p.model, "profile": public_profile(p), "path": p.path}
                    for p in profiles],
        "device": {"name": profiles[0].name, "model": profiles[0].model, "profile": public_profile(profiles[0])},
        "versions": versions(),
        "suite": suite,
        "seed": seed,
        "order_seed": order_seed,
        "case_order": list(case_ids),
        "argv": list(argv),
        "status": "running",
    }
