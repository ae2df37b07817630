"""Device ceilings, measured once per run per device: memory bandwidth and matrix throughput.

Bandwidth is STREAM's four kernels (copy, scale, add, triad) written as torch ops with
``out=`` on float32 arrays far larger than the last-level cache (at least 4×LLC and 64 MiB
each), bytes counted as STREAM counts them (copy and scale move 2 arrays, add and triad 3),
best of several repetitions; the ceiling is the best kernel. STREAM's count leaves out the
read-for-ownership of the array each kernel only writes (a write-allocate cache reads it
first), while an in-place optimizer update writes only arrays it has read, so its 20 B/param
is all the traffic: ``details`` also gives each kernel's GB/s with write-allocate counted and an
in-place ``a += q·b`` (read 2, write 1, no write-allocate), the ceiling such an update meets. Matrix throughput is a
matmul at 2·n³ FLOPs per dtype (fp32, bf16). Reports place the optimizer update and the training step against them.
:func:`flops_per_step` counts one training step's FLOPs with torch's FlopCounterMode.

**Per accelerator.** A case runs on ``cpu`` or ``cuda``; the probe measures the ceilings of
each accelerator the run's cases use (``accels`` in the request) and returns them in
``Probe.ceilings`` keyed by accelerator: the same STREAM kernels and matmuls on the device's
own memory, timed between device synchronisations (:func:`accel_ceilings`). The record's
top-level ``bandwidth_gbs``/``matmul_gflops`` stay the CPU's fp32 figures.
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


def _no_sync() -> None:
    return None


def _best_ns(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] = _no_sync) -> int:
    """Best wall time of ``fn`` over ``repeats`` runs, each between two device syncs."""
    best = None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter_ns()
        fn()
        sync()
        elapsed = time.perf_counter_ns() - t0
        best = elapsed if best is None else min(best, elapsed)
    return int(best or 1)


def stream_gbs(array_bytes: int, repeats: int = 5, device: Any = "cpu",
               sync: Callable[[], None] = _no_sync) -> dict[str, float]:
    """Best GB/s (1e9 bytes/s) of each STREAM kernel over ``repeats`` runs."""
    n = array_bytes // 4
    a, b, c = (torch.full((n,), 1.0, device=device), torch.full((n,), 2.0, device=device),
               torch.zeros(n, device=device))
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
        name: STREAM_ARRAYS_MOVED[name] * n * 4 / _best_ns(fn, repeats, sync)
        for name, fn in kernels.items()
    }


def inplace_add_gbs(array_bytes: int, repeats: int = 5, device: Any = "cpu",
                    sync: Callable[[], None] = _no_sync) -> float:
    """Best GB/s of ``a += q·b`` (read a and b, write a: 3 arrays, no write-allocate)."""
    n = array_bytes // 4
    a, b = torch.full((n,), 1.0, device=device), torch.full((n,), 2.0, device=device)
    a.add_(b, alpha=1e-9)
    return 3 * n * 4 / _best_ns(lambda: a.add_(b, alpha=1e-9), repeats, sync)


MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


MATMUL_START_N = 128
MATMUL_MAX_RUN_S = 0.1  # one multiply at most this long: a dtype without a fast path stays cheap


def matmul_size(n_max: int, dtype: str = "fp32", device: Any = "cpu",
                sync: Callable[[], None] = _no_sync) -> int:
    """The matmul size to time: the largest power-of-two multiple of 128 up to ``n_max`` whose
    one multiply is predicted (cubic in n, from the size below) to take at most
    ``MATMUL_MAX_RUN_S``. Where ``dtype`` has a fast path this is ``n_max``; where it is
    emulated (bf16 on a CPU without bf16 instructions: about 1 GFLOP/s) a 1024³ multiply
    takes seconds, its rate is the same at a smaller n, and the probe stays short."""
    kind = MATMUL_DTYPES[dtype]
    n = min(MATMUL_START_N, n_max)
    while 2 * n <= n_max:
        x = torch.randn(n, n, device=device).to(kind)
        torch.mm(x, x)  # first call: allocation and kernel selection
        if 8 * _best_ns(lambda x=x: torch.mm(x, x), 1, sync) > MATMUL_MAX_RUN_S * 1e9:
            break
        n *= 2
    return n


def matmul_gflops(n: int = 1024, repeats: int = 5, dtype: str = "fp32", device: Any = "cpu",
                  sync: Callable[[], None] = _no_sync) -> float:
    """Best GFLOP/s of an n×n by n×n matmul (2·n³ FLOPs) in ``dtype`` (fp32, bf16)."""
    kind = MATMUL_DTYPES[dtype]
    x, y = (torch.randn(n, n, device=device).to(kind), torch.randn(n, n, device=device).to(kind))
    out = torch.empty(n, n, dtype=kind, device=device)
    torch.mm(x, y, out=out)
    return 2 * n**3 / _best_ns(lambda: torch.mm(x, y, out=out), repeats, sync)


def matmul_ceilings(n_max: int, repeats: int, device: Any = "cpu",
                    sync: Callable[[], None] = _no_sync) -> tuple[dict[str, float], dict[str, int]]:
    """GFLOP/s per dtype, each at the size :func:`matmul_size` chose (also returned)."""
    sizes = {d: matmul_size(n_max, d, device, sync) for d in MATMUL_DTYPES}
    return {d: matmul_gflops(n, repeats, d, device, sync) for d, n in sizes.items()}, sizes


def _bandwidth(stream: dict[str, float], inplace: float) -> tuple[str, float]:
    """The ceiling for an in-place update: the best of STREAM's kernels and the in-place add.

    STREAM does not count the read of the array a kernel only writes, an in-place
    read-modify-write moves every byte it is counted for, as the NAG update's 20 B/param do.
    """
    kernels = {**stream, "inplace_add": inplace}
    best = max(kernels, key=kernels.__getitem__)
    return best, kernels[best]


def cpu_ceilings(threads: int, repeats: int, array_bytes: int | None, matmul_n: int) -> dict[str, Any]:
    """The CPU's ceilings with ``threads`` torch threads: bandwidth and matmul per dtype."""
    llc = last_level_cache_bytes()
    size = array_bytes or stream_array_bytes(llc)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        stream = stream_gbs(size, repeats)
        inplace = inplace_add_gbs(size, repeats)
        gflops, sizes = matmul_ceilings(matmul_n, repeats)
    finally:
        torch.set_num_threads(saved)
    kernel, gbs = _bandwidth(stream, inplace)
    return {
        "device_name": "cpu", "threads": threads, "bandwidth_gbs": gbs, "bandwidth_kernel": kernel,
        "matmul_gflops": gflops, "stream_gbs": stream,
        "stream_gbs_with_write_allocate": {k: v * WRITE_ALLOCATE_FACTOR[k] for k, v in stream.items()},
        "inplace_add_gbs": inplace, "array_bytes": size, "llc_bytes": llc, "repeats": repeats,
        "matmul_n": matmul_n, "matmul_n_by_dtype": sizes,
    }


CUDA_MIN_ARRAY_BYTES = 256 * MIB
CUDA_MATMUL_N = 8192


def cuda_array_bytes(l2_bytes: int, free_bytes: int) -> int:
    """Bytes per STREAM array on a GPU: ≥ 8×L2 and ≥ 256 MiB, at most 1/8 of free memory."""
    want = max(CUDA_MIN_ARRAY_BYTES, 8 * l2_bytes)
    return max(MIB, min(want, free_bytes // 8) // MIB * MIB)


def cuda_device() -> torch.device:
    """The CUDA device the cases run on (torch's current device)."""
    return torch.device("cuda", torch.cuda.current_device())


def accel_ceilings(accel: str, repeats: int = 5, array_bytes: int | None = None,
                   matmul_n: int | None = None) -> dict[str, Any]:
    """The ceilings of an accelerator (``cuda``): device-memory bandwidth, matmul per dtype.

    Arrays live in the device's memory (≥ 8×L2, far beyond its caches) and every timing sits
    between two ``torch.cuda.synchronize()`` calls. fp32 matmuls run at torch's default
    precision ("highest": no TF32), as an fp32 case does. Raises RuntimeError when the
    accelerator is not usable here.
    """
    if accel != "cuda":
        raise ValueError(f"no ceilings probe for accelerator {accel!r} (known: cpu, cuda)")
    if not torch.cuda.is_available():
        raise RuntimeError("accel cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    device = cuda_device()
    props = torch.cuda.get_device_properties(device)
    free, total = torch.cuda.mem_get_info(device)
    l2 = int(getattr(props, "L2_cache_size", 0) or 0)
    size = array_bytes or cuda_array_bytes(l2, int(free))
    n = matmul_n or CUDA_MATMUL_N
    sync = torch.cuda.synchronize
    stream = stream_gbs(size, repeats, device, sync)
    inplace = inplace_add_gbs(size, repeats, device, sync)
    gflops = {d: matmul_gflops(n, repeats, d, device, sync) for d in MATMUL_DTYPES}
    torch.cuda.empty_cache()
    kernel, gbs = _bandwidth(stream, inplace)
    return {
        "device_name": torch.cuda.get_device_name(device), "bandwidth_gbs": gbs,
        "bandwidth_kernel": kernel, "matmul_gflops": gflops, "stream_gbs": stream,
        "inplace_add_gbs": inplace, "array_bytes": size, "l2_bytes": l2,
        "memory_bytes": int(total), "repeats": repeats, "matmul_n": n,
        "fp32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def run_probe(
    threads: int, repeats: int = 5, array_bytes: int | None = None, matmul_n: int = 1024,
    accels: tuple[str, ...] = ("cpu",), accel_matmul_n: int | None = None,
) -> Probe:
    """Measure the ceilings of the CPU (``threads`` torch threads) and of each accelerator.

    An accelerator that cannot be probed gets ``{"error": ...}`` in ``ceilings`` instead of
    numbers; the CPU's figures stay the record's top-level ones.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads!r}")
    cpu = cpu_ceilings(threads, repeats, array_bytes, matmul_n)
    ceilings: dict[str, Any] = {"cpu": cpu}
    for accel in accels:
        if accel == "cpu":
            continue
        try:
            ceilings[accel] = accel_ceilings(accel, repeats, matmul_n=accel_matmul_n)
        except (RuntimeError, ValueError) as exc:
            ceilings[accel] = {"error": str(exc)}
    return Probe(
        threads=threads,
        bandwidth_gbs=cpu["bandwidth_gbs"],
        bandwidth_kernel=cpu["bandwidth_kernel"],
        matmul_gflops=cpu["matmul_gflops"]["fp32"],
        details={
            "stream_gbs": cpu["stream_gbs"],
            "stream_gbs_with_write_allocate": cpu["stream_gbs_with_write_allocate"],
            "inplace_add_gbs": cpu["inplace_add_gbs"],
            "array_bytes": cpu["array_bytes"],
            "llc_bytes": cpu["llc_bytes"],
            "repeats": repeats,
            "matmul_n": matmul_n,
            "dtype": "float32",
        },
        ceilings=ceilings,
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
