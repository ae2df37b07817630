"""Flat-buffer NAG: parameters, gradients and momentum each live in one contiguous tensor.

:class:`FlatBuffers` moves a model's parameters into one flat tensor and makes every
parameter a view into it (``p.data``), and every ``p.grad`` a view into a flat gradient
tensor, so backward accumulates straight into the flat buffer (autograd adds into an
existing ``.grad`` in place). ``zero_grad`` zeroes the flat gradient; it never sets grads to
None, which would make autograd allocate fresh, unshared gradients.

:class:`FlatNAG` then updates the whole model with a few large in-place ops, exactly torch's
NAG: ``b ← μ·b + g`` (first step ``b ← g``), ``g' ← g + μ·b``, ``p ← p − lr·g'``, with
``wd·p`` added to ``g`` first.

Each parameter's view keeps the parameter's own strides, so a ``channels_last`` model stays
``channels_last`` (the flat buffer holds its elements in that order). A parameter that
received no gradient since ``zero_grad`` (noted by a post-accumulate-grad hook) is left
untouched by the step, parameter and momentum alike, as torch.optim skips a ``None`` grad;
its first gradient, whenever it comes, gives ``b ← g`` as torch's first step does. With ``chunk_elems`` the buffer is walked in cache-sized chunks
and ``g'`` goes to a chunk-sized scratch tensor, so main memory sees about 20 B/param (read p,
g, b; write p, b) instead of the ~40 B/param of whole-buffer passes, and ``.grad`` is left as
backward wrote it. Why: the ideal update is memory-bound, and small tensors are dispatch-bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

# 256 Ki float32 = 1 MiB per array: the p, g, b and scratch chunks (4 MiB) stay in the
# last-level cache of phones and boards too. Measured here (1 thread, 25 M params, min of 15):
# 16 Ki 24 ms, 64 Ki 16 ms, 256 Ki 15.5 ms, 1 Mi 14.3 ms, whole buffer 19.4 ms: smaller chunks
# pay Python dispatch per chunk, the whole buffer pays main-memory passes.
DEFAULT_CHUNK_ELEMS = 262144


def keep_unchanged(tensors: Sequence[torch.Tensor]) -> Callable[[], None]:
    """Snapshot ``tensors``; the returned function writes the snapshot back (a skipped update)."""
    saved = [t.detach().clone() for t in tensors]

    def restore() -> None:
        with torch.no_grad():
            for t, s in zip(tensors, saved, strict=True):
                t.copy_(s)

    return restore


def dense_strides(p: torch.Tensor) -> bool:
    """True when ``p`` covers its elements exactly once (contiguous in some dimension order)."""
    return p.is_contiguous() or p.is_contiguous(memory_format=torch.channels_last) or (
        p.dim() == 5 and p.is_contiguous(memory_format=torch.channels_last_3d))


class FlatBuffers:
    """One flat tensor each for the parameters and the gradients of ``params``."""

    def __init__(self, params: Iterable[torch.nn.Parameter]) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("flat buffers need at least one parameter that requires grad")
        kinds = {(p.dtype, p.device) for p in self.params}
        if len(kinds) != 1:
            raise ValueError(
                f"flat buffers need one dtype and device for all parameters, got {sorted(map(str, kinds))}; "
                "cast the model to one dtype first"
            )
        strided = [tuple(p.shape) for p in self.params if not dense_strides(p)]
        if strided:
            raise ValueError(
                f"flat buffers need dense parameters (contiguous or channels_last), got strided "
                f"ones of shapes {strided[:3]}; call .contiguous() on the model's parameters"
            )
        dtype, device = kinds.pop()
        self.numel = sum(p.numel() for p in self.params)
        self.param = torch.empty(self.numel, dtype=dtype, device=device)
        self.grad = torch.zeros(self.numel, dtype=dtype, device=device)
        self.offsets: list[int] = []
        self.received = [False] * len(self.params)
        offset = 0
        with torch.no_grad():
            for index, p in enumerate(self.params):
                n = p.numel()
                # the parameter's own strides: channels_last stays channels_last
                view = self.param.as_strided(p.shape, p.stride(), offset)
                view.copy_(p)
                p.data = view
                p.grad = self.grad.as_strided(p.shape, p.stride(), offset)
                p.register_post_accumulate_grad_hook(self._marker(index))
                self.offsets.append(offset)
                offset += n

    def _marker(self, index: int) -> Callable[[torch.Tensor], None]:
        def mark(_: torch.Tensor) -> None:
            self.received[index] = True

        return mark

    def zero_grad(self) -> None:
        """Zero the flat gradient in place (grads stay views into it)."""
        self.grad.zero_()
        self.received = [False] * len(self.params)

    def missing(self) -> list[int]:
        """Indices of the parameters that received no gradient since ``zero_grad``.

        Only a backward pass tells: when no hook fired at all (gradients written into the
        flat buffer directly, as micro-benchmarks do), every parameter counts as having one.
        """
        if not any(self.received):
            return []
        return [i for i, got in enumerate(self.received) if not got]

    def pieces(self, flat: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """The 1-D slices of a flat tensor (param, grad or state) that belong to ``indices``."""
        return [flat[self.offsets[i] : self.offsets[i] + self.params[i].numel()] for i in indices]

    def skip_missing(self, *state: torch.Tensor) -> Callable[[], None]:
        """Before a step: a function that undoes the step for parameters without a gradient
        (their parameter and ``state`` slices), as torch.optim skips a ``None`` grad."""
        missing = self.missing()
        if not missing:
            return lambda: None
        return keep_unchanged([t for flat in (self.param, *state) for t in self.pieces(flat, missing)])

    def grads_are_views(self) -> bool:
        """True while every ``p.grad`` still shares the flat gradient's memory."""
        lo = self.grad.data_ptr()
        hi = lo + self.grad.numel() * self.grad.element_size()
        return all(p.grad is not None and lo <= p.grad.data_ptr() < hi for p in self.params)


class FlatNAG:
    """NAG over flat buffers; an updater (``step``, ``zero_grad``, ``param_groups``)."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float,
        weight_decay: float = 0.0, chunk_elems: int | None = DEFAULT_CHUNK_ELEMS,
    ) -> None:
        if chunk_elems is not None and chunk_elems <= 0:
            raise ValueError(f"chunk_elems must be positive or None, got {chunk_elems!r}")
        self.flat = FlatBuffers(params)
        self.momentum_buffer = torch.zeros_like(self.flat.param)
        self.param_groups = [
            {"params": self.flat.params, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        ]
        self.steps = 0
        n = self.flat.numel
        size = n if chunk_elems is None else min(chunk_elems, n)
        self._chunks = [
            (self.flat.param[i : i + size], self.flat.grad[i : i + size], self.momentum_buffer[i : i + size])
            for i in range(0, n, size)
        ]
        self._scratch = torch.empty(size, dtype=self.flat.param.dtype, device=self.flat.param.device)

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the flat gradient; ``set_to_none`` is ignored because grads must stay views."""
        self.flat.zero_grad()

    def state_bytes(self) -> int:
        return int(self.momentum_buffer.nbytes)

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        lr, mu, wd = float(group["lr"]), float(group["momentum"]), float(group["weight_decay"])
        first = self.steps == 0
        restore = self.flat.skip_missing(self.momentum_buffer)
        for p, g, b in self._chunks:
            s = self._scratch[: p.numel()]
            if wd != 0.0:
                torch.add(g, p, alpha=wd, out=s)  # g + wd·p, leaving .grad untouched
                g = s
            if first:
                b.copy_(g)
            else:
                b.mul_(mu).add_(g)
            torch.add(g, b, alpha=mu, out=s)
            p.add_(s, alpha=-lr)
        restore()
        self.steps += 1


class FlatFusedNAG(torch.optim.SGD):
    """torch's fused NAG kernel run once over the whole flat buffer (one call per step).

    The registered ``flat`` kernel on CPU and CUDA: the flat layout removes the per-tensor
    cost that ``fused`` pays for every parameter tensor, and the fused kernel makes the update
    one memory pass instead of the 4-5 elementwise passes of :class:`FlatNAG`.
    """

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float,
        weight_decay: float = 0.0,
    ) -> None:
        self.flat = FlatBuffers(params)
        whole = torch.nn.Parameter(self.flat.param)
        whole.grad = self.flat.grad
        super().__init__([whole], lr=lr, momentum=momentum, nesterov=True,
                         weight_decay=weight_decay, fused=True)
        self._whole = whole
        if momentum:  # allocated up front like the other flat kernels; μ·0 + g is torch's b ← g
            self.state[whole]["momentum_buffer"] = torch.zeros_like(self.flat.param)

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the flat gradient; grads must stay views into it."""
        self.flat.zero_grad()

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        buffer = self.state[self._whole].get("momentum_buffer")
        restore = self.flat.skip_missing(*([buffer] if buffer is not None else []))
        super().step()
        restore()
