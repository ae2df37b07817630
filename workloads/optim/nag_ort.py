"""NAG as an ONNX Runtime graph, run in place on the flat buffers through IOBinding.

The graph (built with ``onnx.helper``) takes ``p, g, b, lr`` and gives ``p_out, b_out``:
``g1 = g + wd·p``; ``b_out = μ·b + g1``; ``p_out = p − lr·(g1 + μ·b_out)``. The flat
parameter, gradient and momentum tensors of :class:`workloads.optim.flat.FlatBuffers` are
bound by pointer as inputs *and* outputs (``p_out`` onto ``p``, ``b_out`` onto ``b``), so a
step copies nothing: every node is elementwise, so writing an element after reading the same
element is safe. ``outputs_in_place()`` checks after a run that ORT wrote into our memory.
The flat buffers keep each parameter's memory format (channels_last stays), and parameters
without a gradient this step are left as they were, as torch.optim does.
Momentum starts at zero, so the first step gives ``b ← g`` exactly, as torch does.
``onnx``/``onnxruntime`` are imported only when this kernel is built (optional on devices).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from workloads.optim.flat import FlatBuffers

OPSET = 17


def nag_graph(momentum: float, weight_decay: float) -> Any:
    """The NAG update as an ONNX model over 1-D float32 tensors of any length."""
    from workloads.capabilities import require_module

    onnx = require_module("onnx", "the ort NAG kernel")
    TensorProto, helper = onnx.TensorProto, onnx.helper

    def const(name: str, value: float) -> Any:
        return helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name + "_v", TensorProto.FLOAT, [], [value])
        )

    nodes = [const("mu", momentum)]
    grad = "g"
    if weight_decay != 0.0:
        nodes += [const("wd", weight_decay), helper.make_node("Mul", ["wd", "p"], ["wd_p"]),
                  helper.make_node("Add", ["g", "wd_p"], ["g1"])]
        grad = "g1"
    nodes += [
        helper.make_node("Mul", ["mu", "b"], ["mu_b"]),
        helper.make_node("Add", ["mu_b", grad], ["b_out"]),
        helper.make_node("Mul", ["mu", "b_out"], ["mu_b_out"]),
        helper.make_node("Add", [grad, "mu_b_out"], ["nesterov"]),
        helper.make_node("Mul", ["lr", "nesterov"], ["step"]),
        helper.make_node("Sub", ["p", "step"], ["p_out"]),
    ]
    vec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n"]) for n in ("p", "g", "b")]
    lr = helper.make_tensor_value_info("lr", TensorProto.FLOAT, [])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n"]) for n in ("p_out", "b_out")]
    graph = helper.make_graph(nodes, "nag_update", vec + [lr], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    return model


class OrtNAG:
    """An updater that runs :func:`nag_graph` on flat buffers with zero-copy IOBinding."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, momentum: float,
        weight_decay: float = 0.0, threads: int | None = None,
    ) -> None:
        from workloads.capabilities import require_module

        ort = require_module("onnxruntime", "the ort NAG kernel")

        self.flat = FlatBuffers(params)
        if self.flat.param.dtype != torch.float32 or self.flat.param.device.type != "cpu":
            raise ValueError(
                f"the ort NAG kernel needs float32 CPU parameters, got {self.flat.param.dtype} "
                f"on {self.flat.param.device}; use the flat kernel instead"
            )
        self.momentum_buffer = torch.zeros_like(self.flat.param)
        self.param_groups = [
            {"params": self.flat.params, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        ]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # The memory pattern plans one block for the intermediates per run and frees it after,
        # so every step faults in fresh pages (measured: 3.5 M params, 8-11 ms with, 4.8 ms
        # without); the arena without the pattern keeps its blocks between runs.
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(
            nag_graph(momentum, weight_decay).SerializeToString(), options,
            providers=["CPUExecutionProvider"],
        )
        self._built_for = (momentum, weight_decay)
        self._lr = np.array(lr, dtype=np.float32)  # bound by pointer; updated in place
        self.binding = self.session.io_binding()
        p, g, b = (t.numpy() for t in (self.flat.param, self.flat.grad, self.momentum_buffer))
        for name, arr in (("p", p), ("g", g), ("b", b), ("lr", self._lr)):
            self.binding.bind_input(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        for name, arr in (("p_out", p), ("b_out", b)):
            self.binding.bind_output(name, "cpu", 0, np.float32, list(arr.shape), arr.ctypes.data)
        self.steps = 0

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the flat gradient; grads must stay views into it."""
        self.flat.zero_grad()

    def state_bytes(self) -> int:
        return int(self.momentum_buffer.nbytes)

    def outputs_in_place(self) -> bool:
        """True when ORT's outputs are our parameter and momentum buffers (no copies)."""
        outs = self.binding.get_outputs()
        return [o.data_ptr() for o in outs] == [
            self.flat.param.data_ptr(), self.momentum_buffer.data_ptr()
        ]

    def step(self) -> None:
        group = self.param_groups[0]
        if (float(group["momentum"]), float(group["weight_decay"])) != self._built_for:
            raise ValueError(
                f"the ort NAG graph was built for momentum, weight_decay = {self._built_for}; "
                "build a new updater to change them (lr may change freely)"
            )
        self._lr[...] = float(group["lr"])
        restore = self.flat.skip_missing(self.momentum_buffer)  # torch skips a None grad
        self.session.run_with_iobinding(self.binding)
        restore()
        self.steps += 1
