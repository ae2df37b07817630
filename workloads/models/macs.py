"""Multiply-accumulates of one forward pass, counted from the operators that actually run.

Matrix products and convolutions are counted by :class:`torch.utils.flop_counter.FlopCounterMode`
(which sees every ``mm``/``bmm``/``conv``/attention call, however a model spells it); it
reports FLOPs with one MAC = 2 FLOPs. Recurrent layers run as one fused ``aten::lstm``/``gru``
op that the counter does not see, so those are added from forward hooks; the CPU
flash-attention kernel behind ``scaled_dot_product_attention`` gets the counter's own SDPA
formula. Element-wise work
(activations, normalisation, pooling) is not counted, as in the papers we compare with.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

_GATES = {nn.LSTM: 4, nn.GRU: 3, nn.RNN: 1}


def _cpu_sdpa_flops(
    query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size, *_: Any, **__: Any
) -> int:
    """FLOPs of the CPU flash-attention kernel, which the counter has no formula for."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
}


def _recurrent_macs(module: nn.RNNBase, inputs: tuple[Any, ...]) -> int:
    """MACs of a recurrent layer: per step and layer, gates x hidden x (input + hidden)."""
    x = inputs[0]
    steps = x.shape[1] if module.batch_first else x.shape[0]
    rows = x.shape[0] if module.batch_first else x.shape[1]
    gates = _GATES[type(module)]
    directions = 2 if module.bidirectional else 1
    total = 0
    size_in = module.input_size
    for _ in range(module.num_layers):
        total += gates * module.hidden_size * (size_in + module.hidden_size)
        size_in = module.hidden_size * directions
    return total * directions * steps * rows


# counts already made in this process, by architecture and input (a group of variants builds
# the same model a dozen times; counting under the dispatch mode costs more than the build)
_COUNTED: dict[tuple[Any, ...], int] = {}


_PLAIN = (bool, int, float, str, type(None))


def _setting(value: Any) -> Any:
    """A module attribute as a key part: plain values as they are, anything else by its type
    (a tensor's values, a function's address never make two architectures differ)."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value):
        return tuple(value)
    return type(value).__qualname__


def _architecture_key(model: nn.Module, example: torch.Tensor) -> tuple[Any, ...]:
    """What a MAC count depends on: every module's type and settings (its repr and its plain
    attributes, which the repr of e.g. ``nn.MultiheadAttention`` leaves out: ``batch_first``
    changes the count), every parameter's and buffer's shape, and the input's shape and dtype
    (not the weights' values)."""
    modules = tuple(
        (name, type(m).__module__, type(m).__qualname__,
         tuple(sorted((k, _setting(v)) for k, v in vars(m).items() if not k.startswith("_"))))
        for name, m in model.named_modules())
    tensors = [*model.named_parameters(), *model.named_buffers()]
    return (modules, repr(model), tuple((name, tuple(t.shape), str(t.dtype)) for name, t in tensors),
            tuple(example.shape), str(example.dtype))


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of ``model(example)``, summed over the batch in ``example``.

    Runs one forward pass without gradients on a copy of the model in training mode: the
    path a training step takes (eval-mode fast paths such as the fused Transformer encoder
    hide their matrix products from the counter), and the model's own batch-norm
    statistics stay untouched. A model of the same architecture and input counted before in
    this process gets that count back without a second pass.
    """
    key = _architecture_key(model, example)
    if key not in _COUNTED:
        _COUNTED[key] = _count(model, example)
    return _COUNTED[key]


def _count(model: nn.Module, example: torch.Tensor) -> int:
    """One counted forward pass, on the ``meta`` device when the model allows it.

    The counter's formulas read shapes only, and meta tensors carry shapes without computing
    anything: a MobileNetV2 pass takes about 0.5 s there against 3 s on this project's 2-core
    host. Recurrent layers stay on their own device: on meta the fused ``aten::lstm`` runs
    decomposed into products the counter sees, on top of the hooks' count. A model whose
    forward needs values (``.item()``, a branch on data) cannot run on meta and is counted on
    its own device too; the counts agree (``tests/unit/test_models.py`` checks every
    registered workload both ways).
    """
    if not any(type(m) in _GATES for m in model.modules()):
        try:
            return _count_on(model, example, torch.device("meta"))
        except (RuntimeError, NotImplementedError):
            pass
    return _count_on(model, example, None)


def _count_on(model: nn.Module, example: torch.Tensor, device: torch.device | None) -> int:
    recurrent = 0

    def hook(module: nn.Module, inputs: tuple[Any, ...], _output: Any) -> None:
        nonlocal recurrent
        recurrent += _recurrent_macs(module, inputs)  # type: ignore[arg-type]

    probe = copy.deepcopy(model).train()
    if device is not None:
        probe, example = probe.to(device), example.to(device)
    for module in probe.modules():
        if type(module) in _GATES:
            module.register_forward_hook(hook)
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
        probe(example)
    return int(counter.get_total_flops()) // 2 + recurrent


def count_params(model: nn.Module) -> int:
    """Number of trainable parameter elements (what the papers' parameter counts mean)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
