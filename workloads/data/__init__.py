"""Batches for the workloads: seeded synthetic generators and readers of real data formats.

A *batch source* is a callable with no arguments that returns one ``(inputs, targets)``
pair of tensors per call, endlessly; ``Task.next_batch`` is one. Synthetic sources
(:mod:`workloads.data.synthetic`) are learnable and reproducible from a seed; the readers in
:mod:`workloads.data.loaders` turn files in the real formats (CIFAR-10 binary batches,
Speech Commands WAV folders, text TSV with a vocabulary) into sources of the same shape;
:mod:`workloads.data.sources` picks one from a workload's ``data`` option.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

BatchSource = Callable[[], tuple[torch.Tensor, torch.Tensor]]

# Token ids every synthetic text batch reserves; real vocabularies name theirs instead.
PAD_ID, UNK_ID, CLS_ID = 0, 1, 2
SAMPLE_RATE_HZ = 16000
CLIP_SAMPLES = 16000  # one second of 16 kHz audio, the Speech Commands clip length


def hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
