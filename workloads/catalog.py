"""What the host needs to know about workloads and optimizers, without importing torch.

The registries (:data:`workloads.workload.WORKLOADS`, :data:`workloads.optim.OPTIMIZERS`) are
filled by importing the model and optimizer modules, which import torch: about 4 s of CPU
on a laptop core, paid by every ``harness bench`` before anything runs. The host only needs
names, domains, option and hyper-parameter names and defaults, and each optimizer's kernels,
so it reads them from ``catalog.json`` beside this module, written from the registries by

    python -m workloads.catalog --write

``tests/unit/test_catalog.py`` fails when the file and the registries disagree (a workload,
option, optimizer or kernel added without rewriting it). Standard library only.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from workloads.registry import Registry, kernel_names

PATH = Path(__file__).with_name("catalog.json")


@dataclass(frozen=True)
class WorkloadEntry:
    name: str
    domain: str
    description: str
    defaults: Mapping[str, Any]


@dataclass(frozen=True)
class OptimizerEntry:
    name: str
    description: str
    defaults: Mapping[str, Any]
    kernels: tuple[str, ...]


def from_registries() -> dict[str, Any]:
    """The catalog as the registries give it (imports the models and optimizers: torch)."""
    import workloads.models  # noqa: F401  (fills the workload registry)
    from workloads.optim import OPTIMIZERS
    from workloads.workload import WORKLOADS

    return json.loads(json.dumps({
        "workloads": {n: {"domain": w.domain, "description": w.description, "defaults": dict(w.defaults)}
                      for n in WORKLOADS for w in [WORKLOADS.get(n)]},
        "optimizers": {n: {"description": o.description, "defaults": dict(o.defaults), "kernels": list(o.kernels)}
                       for n in OPTIMIZERS for o in [OPTIMIZERS.get(n)]},
    }, sort_keys=True))


@functools.lru_cache(maxsize=1)
def _load(path: Path = PATH) -> tuple[Registry[WorkloadEntry], Registry[OptimizerEntry]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuntimeError(f"{path} is missing; write it with: python -m workloads.catalog --write") from None
    workloads: Registry[WorkloadEntry] = Registry("workload")
    for name, w in data["workloads"].items():
        workloads.add(name, WorkloadEntry(name, w["domain"], w["description"], w["defaults"]))
    optimizers: Registry[OptimizerEntry] = Registry("optimizer")
    for name, o in data["optimizers"].items():
        optimizers.add(name, OptimizerEntry(name, o["description"], o["defaults"], tuple(o["kernels"])))
    return workloads, optimizers


def __getattr__(name: str) -> Any:  # WORKLOADS and OPTIMIZERS, read on first use
    if name == "WORKLOADS":
        return _load()[0]
    if name == "OPTIMIZERS":
        return _load()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def all_kernels() -> list[str]:
    """Every kernel variant name any optimizer offers."""
    return kernel_names(_load()[1])


def main(argv: list[str]) -> int:
    text = json.dumps(from_registries(), indent=1, sort_keys=True) + "\n"
    if argv == ["--write"]:
        PATH.write_text(text, encoding="utf-8")
        print(f"wrote {PATH}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
