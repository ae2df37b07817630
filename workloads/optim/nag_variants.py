"""NAG kernel variants beyond torch's own: ``compiled``, ``flat`` and ``ort``.

:data:`NAG_VARIANT_BUILDERS` maps each kernel name to ``build(model, hparams) -> updater``;
:func:`with_nag_variants` returns the registered ``nag`` spec with these kernels added after
torch's (``forloop``, ``foreach``, ``fused``), dispatching to the builders here and to the
spec's own ``build`` otherwise. Every variant is checked against torch.optim.SGD(nesterov=True)
by :func:`workloads.optim.check.max_rel_diff_vs_reference`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from workloads.optim import OptimizerSpec

Builder = Callable[[Any, Mapping[str, Any]], Any]


def _compiled(model: Any, hp: Mapping[str, Any]) -> Any:
    from workloads.optim.nag_compiled import CompiledNAG

    return CompiledNAG(model.parameters(), hp["lr"], hp["momentum"], hp["weight_decay"])


def _flat(model: Any, hp: Mapping[str, Any]) -> Any:
    """Flat buffers updated by one fused NAG pass where torch has that kernel for the device
    (CPU and CUDA); elsewhere the chunked in-place ops of :class:`FlatNAG`."""
    from workloads.optim.flat import FlatFusedNAG, FlatNAG

    first = next(iter(model.parameters()))
    if first.device.type in ("cpu", "cuda"):
        return FlatFusedNAG(model.parameters(), hp["lr"], hp["momentum"], hp["weight_decay"])
    return FlatNAG(model.parameters(), hp["lr"], hp["momentum"], hp["weight_decay"])


def _ort(model: Any, hp: Mapping[str, Any]) -> Any:
    from workloads.optim.nag_ort import OrtNAG

    return OrtNAG(model.parameters(), hp["lr"], hp["momentum"], hp["weight_decay"])


NAG_VARIANT_BUILDERS: dict[str, Builder] = {"compiled": _compiled, "flat": _flat, "ort": _ort}
NAG_VARIANT_KERNELS: tuple[str, ...] = tuple(NAG_VARIANT_BUILDERS)


def build_nag_variant(model: Any, kernel: str, hp: Mapping[str, Any]) -> Any:
    """Build one of this module's NAG kernels for ``model``."""
    try:
        builder = NAG_VARIANT_BUILDERS[kernel]
    except KeyError:
        raise ValueError(
            f"unknown NAG variant kernel {kernel!r} (known: {', '.join(NAG_VARIANT_KERNELS)})"
        ) from None
    return builder(model, hp)


def with_nag_variants(spec: OptimizerSpec) -> OptimizerSpec:
    """``spec`` (the ``nag`` entry) with the variant kernels added; idempotent."""
    if all(k in spec.kernels for k in NAG_VARIANT_KERNELS) and getattr(
        spec.build, "_nag_variants", False
    ):
        return spec
    torch_build = spec.build

    def build(model: Any, kernel: str, hp: Mapping[str, Any]) -> Any:
        if kernel in NAG_VARIANT_BUILDERS:
            return build_nag_variant(model, kernel, hp)
        return torch_build(model, kernel, hp)

    build._nag_variants = True  # type: ignore[attr-defined]
    kernels = spec.kernels + tuple(k for k in NAG_VARIANT_KERNELS if k not in spec.kernels)
    return dataclasses.replace(spec, kernels=kernels, build=build)
