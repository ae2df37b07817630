"""Pick a workload's batch source from its ``data`` option: "synthetic" or a path to real data.

Real data must fit the model the options describe: a data set with more labels than
``num_classes`` (or a vocabulary larger than ``vocab_size``) is refused with the option
value that would fit, rather than silently resizing the model being measured.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from workloads.data import PAD_ID, BatchSource
from workloads.data.loaders import (
    TensorBatches,
    read_cifar10,
    read_text_tsv,
    read_vocab,
    wav_batches,
)
from workloads.data.synthetic import SyntheticImages, SyntheticSpeech, SyntheticText

SYNTHETIC = "synthetic"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _existing(data: str) -> Path:
    path = Path(str(data)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data={data!r} is neither {SYNTHETIC!r} nor an existing path")
    return path


def _check_classes(labels: torch.Tensor, num_classes: int, data: str) -> None:
    needed = int(labels.max()) + 1
    if needed > num_classes:
        raise ValueError(
            f"data={data!r} has labels up to {needed - 1} but num_classes={num_classes}; "
            f"set num_classes={needed}"
        )


def image_source(
    data: str, *, batch: int, seed: int, num_classes: int, resolution: int
) -> BatchSource:
    """Synthetic images, or CIFAR-10 binary batches from the folder ``data`` (resized if needed)."""
    if data == SYNTHETIC:
        return SyntheticImages(batch, seed, num_classes=num_classes, resolution=resolution)
    images, labels = read_cifar10(_existing(data))
    _check_classes(labels, num_classes, data)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)

    def to_model(pixels: torch.Tensor) -> torch.Tensor:
        x = (pixels.float() / 255.0 - mean) / std
        if resolution != x.shape[-1]:
            x = F.interpolate(x, size=(resolution, resolution), mode="bilinear")
        return x

    return TensorBatches(images, labels, batch, seed, transform=to_model)


def speech_source(data: str, *, batch: int, seed: int, num_classes: int) -> BatchSource:
    """Synthetic calls, or the WAV files of a Speech Commands-style folder (read per batch)."""
    if data == SYNTHETIC:
        return SyntheticSpeech(batch, seed, num_classes=num_classes)
    source, labels = wav_batches(_existing(data), batch, seed)
    _check_classes(labels, num_classes, data)
    return source


def text_source(
    data: str,
    *,
    batch: int,
    seed: int,
    num_classes: int,
    vocab_size: int,
    seq_len: int,
    vocab: str = "",
) -> tuple[BatchSource, int]:
    """The batch source and the [PAD] id: synthetic text, or a ``text<TAB>label`` TSV file.

    The vocabulary is the ``vocab`` path, or ``vocab.txt`` beside the TSV when that is empty.
    """
    if data == SYNTHETIC:
        source = SyntheticText(
            batch, seed, num_classes=num_classes, vocab_size=vocab_size, seq_len=seq_len
        )
        return source, PAD_ID
    tsv = _existing(data)
    vocab_path = Path(vocab) if vocab else tsv.with_name("vocab.txt")
    table = read_vocab(_existing(str(vocab_path)))
    needed = max(table.values()) + 1
    if needed > vocab_size:
        raise ValueError(
            f"vocabulary {str(vocab_path)!r} has {needed} lines but "
            f"vocab_size={vocab_size}; set vocab_size={needed}"
        )
    tokens, labels, _ = read_text_tsv(tsv, vocab_path, seq_len)
    _check_classes(labels, num_classes, data)
    return TensorBatches(tokens, labels, batch, seed), table["[PAD]"]
