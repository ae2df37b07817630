"""Device ceilings, measured once per run per device: memory bandwidth and matrix throughput.

Bandwidth is STREAM's four kernels (copy, scale, add, triad) written as torch ops with
``out=`` on float32 arrays far larger than the last-level cache (at least 4×LLC and 64 MiB
each), bytes counted as STREAM counts them (copy and scale move 2 arrays, add and triad 3),
best of several repetitions; the ceiling is the best kernel. STREAM's count leaves out the
read-for-ownership of the array each kernel only writes (a write-allocate cache reads it
first), while an in-place optimizer update writes only arrays it has read, so its 20 B/param
is all the traffic: ``details`` also gives each kernel's GB/s with write-allocate counted and an
in-place ``a += q·b`` (read 2, write 1, no write-allocate), the ceiling such an update meets. Matrix throughput is an fp32
matmul at 2·n³ FLOPs. Reports place the optimizer update and the training step against them.
:func:`flops_per_step` counts one training step's FLOPs with torch's FlopCounterMode.
"""

from __future__ import annotations

import copy
import glob
import time
from collections.abc import Callable
from typing import Any

import torch

from workloads.schema import Probe

MIB = 1 << 20
MIN_ARRAY_BYTES = 64 * MIB
STREAM_ARRAYS_MOVED = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
# with the written array's read-for-ownership counted: copy/scale 3 arrays, add/triad 4
WRITE_ALLOCATE_FACTOR = {"copy": 3 / 2, "scale": 3 / 2, "add": 4 / 3, "triad": 4 / 3}
CACHE_GLOB = "/sys/devices/system/cpu/cpu0/cache/index*/size"


def parse_cache_size(text: str) -> int:
    """Bytes in a sysfs cache ``size`` value such as ``32768K``, ``1M`` or ``512``."""
    value = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(value[-1:], 1)
    digits = value[:-1] if value[-1:] in "KMG" else value
    if not digits.isdigit():
        raise ValueError(f"cache size {text!r} is not a number with an optional K/M/G suffix")
    return int(digits) * scale


def last_level_cache_bytes(pattern: str = CACHE_GLOB) -> int | None:
    """The largest cache size cpu0 reports in sysfs, or None where sysfs does not say."""
    sizes = []
    for path in glob.glob(pattern):
        try:
            with open(path) as fh:
                sizes.append(parse_cache_size(fh.read()))
        except (OSError, ValueError):
            continue
    return max(sizes) if sizes else None


def stream_array_bytes(llc_bytes: int | None) -> int:
    """Bytes per STREAM array: ≥ 4×LLC and ≥ 64 MiB, rounded up to whole MiB."""
    want = max(MIN_ARRAY_BYTES, 4 * (llc_bytes or 0))
    return -(-want // MIB) * MIB


def _best_ns(fn: Callable[[], Any], repeats: int) -> int:
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        elapsed = time.perf_counter_ns() - t0
        best = elapsed if best is None else min(best, elapsed)
    return int(best or 1)


def stream_gbs(array_bytes: int, repeats: int = 5) -> dict[str, float]:
    """Best GB/s (1e9 bytes/s) of each STREAM kernel over ``repeats`` runs."""
    n = array_bytes // 4
    a, b, c = torch.full((n,), 1.0), torch.full((n,), 2.0), torch.zeros(n)
    q = 3.0
    kernels: dict[str, Callable[[], Any]] = {
        "copy": lambda: c.copy_(a),
        "scale": lambda: torch.mul(c, q, out=b),
        "add": lambda: torch.add(a, b, out=c),
        "triad": lambda: torch.add(b, c, alpha=q, out=a),
    }
    for fn in kernels.values():  # touch every page once before timing
        fn()
    return {
        name: STREAM_ARRAYS_MOVED[name] * n * 4 / _best_ns(fn, repeats)
        for name, fn in kernels.items()
    }


def inplace_add_gbs(array_bytes: int, repeats: int = 5) -> float:
    """Best GB/s of ``a += q·b`` (read a and b, write a: 3 arrays, no write-allocate)."""
    n = array_bytes // 4
    a, b = torch.full((n,), 1.0), torch.full((n,), 2.0)
    a.add_(b, alpha=1e-9)
    return 3 * n * 4 / _best_ns(lambda: a.add_(b, alpha=1e-9), repeats)


def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n×n by n×n matmul (2·n³ FLOPs)."""
    x, y = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(x, y, out=out)
    return 2 * n**3 / _best_ns(lambda: torch.mm(x, y, out=out), repeats)


def run_probe(
    threads: int, repeats: int = 5, array_bytes: int | None = None, matmul_n: int = 1024
) -> Probe:
    """Measure bandwidth and matmul ceilings with ``threads`` torch threads."""
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    llc = last_level_cache_bytes()
    size = array_bytes or stream_array_bytes(llc)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stream = stream_gbs(size, repeats)
        inplace = inplace_add_gbs(size, repeats)
        gflops = matmul_gflops(matmul_n, repeats)
    finally:
        torch.set_num_threads(saved)
    # The ceiling for an in-place update is the best of STREAM's kernels and the in-place add:
    # STREAM does not count the read of the array a kernel only writes, an in-place
    # read-modify-write moves every byte it is counted for, as the NAG update's 20 B/param do.
    kernels = {**stream, "inplace_add": inplace}
    best = max(kernels, key=kernels.__getitem__)
    return Probe(
        threads=threads,
        bandwidth_gbs=kernels[best],
        bandwidth_kernel=best,
        matmul_gflops=gflops,
        details={
            "stream_gbs": stream,
            "stream_gbs_with_write_allocate": {k: v * WRITE_ALLOCATE_FACTOR[k] for k, v in stream.items()},
            "inplace_add_gbs": inplace,
            "array_bytes": size,
            "llc_bytes": llc,
            "repeats": repeats,
            "matmul_n": matmul_n,
            "dtype": "float32",
        },
    )


def flops_per_step(
    model: torch.nn.Module,
    frontend: Callable[[Any], Any] | None,
    inputs: Any,
    targets: Any,
    loss_fn: Callable[[Any, Any], torch.Tensor],
) -> int:
    """FLOPs of one training step's forward (frontend included) and backward.

    Counted on a copy of the model with ``torch.autograd.grad``, so neither the caller's
    gradients nor its normalisation statistics change. The optimizer update is not included
    (it is memory-bound; see the bandwidth ceiling).
    """
    from torch.utils.flop_counter import FlopCounterMode

    from workloads.models.macs import _EXTRA_FORMULAS, _GATES, _recurrent_macs

    net = copy.deepcopy(model)
    params = [p for p in net.parameters() if p.requires_grad]
    recurrent = 0

    def hook(module: Any, args: tuple[Any, ...], _output: Any) -> None:
        nonlocal recurrent
        recurrent += _recurrent_macs(module, args)

    # torch's counter has no formula for recurrent layers (LSTM/GRU run as one fused op) nor
    # for the CPU flash-attention kernel; count those from their shapes
    for module in net.modules():
        if type(module) in _GATES:
            module.register_forward_hook(hook)
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        x = frontend(inputs) if frontend is not None else inputs
        loss = loss_fn(net(x), targets)
        torch.autograd.grad(loss, params, allow_unused=True)
    # a recurrent MAC is 2 FLOPs forward and about twice that backward
    return int(counter.get_total_flops()) + 6 * recurrent
