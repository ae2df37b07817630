"""Keyword spotting: a log-mel front end, DS-CNN (S/M/L) and KWT-1, on one second of 16 kHz audio.

- Front end: 25 ms Hann windows (400 samples) every 10 ms (160), zero-padded to a 512-point
  FFT, power spectrum, 40 HTK-mel triangles (20 Hz - 8 kHz), natural log with a 1e-6 floor:
  ``[B, 16000] -> [B, 98, 40]`` (98 = (16000 - 400) // 160 + 1). The agent times it as its
  own phase; it has no parameters.
- DS-CNN: Zhang et al. 2017, "Hello Edge: Keyword Spotting on Microcontrollers", with the
  S/M/L shapes of ARM-software/ML-KWS-for-MCU ``train_commands.txt`` (TF-"SAME" padding,
  conv+BN+ReLU, depthwise-separable layers, global average pool, FC). On the paper's input
  (49 frames x 10 MFCC) their forward MACs are the paper's 5.4 M / 19.8 M / 56.9 M ops
  (1 MAC = 2 ops) to within 2 %.
- KWT-1: Berg et al. 2021, "Keyword Transformer", as in ARM-software/keyword-transformer:
  one token per frame (40 x 1 patches), class token, learned positions, 12 post-norm layers
  (dim 64, 1 head, MLP 256, GELU), q/k/v without bias: 607,308 parameters at 12 classes,
  the reference's own model summary.

- MFCC front end (``ds_cnn`` option ``features = "mfcc49x10"``, the paper's input): 40 ms
  windows (640 samples) every 20 ms (320), 1024-point FFT, 40 mel bands, log, orthonormal
  DCT-II, first 10 coefficients, standardised per clip: ``[B, 16000] -> [B, 49, 10]``.

Workloads ``ds_cnn`` (options ``size``, ``features``) and ``kwt1``; ``next_batch`` gives raw
waveforms.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads.data import CLIP_SAMPLES, SAMPLE_RATE_HZ, hz_to_mel, mel_to_hz
from workloads.data.sources import SYNTHETIC, speech_source
from workloads.models.common import (
    check_positive,
    classification_task,
    scale_conv_init,
    seeded,
    zero_init_head,
)
from workloads.workload import Task, register_workload

# --- config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMelConfig:
    """Front-end settings; the defaults give 98 x 40 features for one second at 16 kHz."""

    sample_rate_hz: int = SAMPLE_RATE_HZ
    win_samples: int = 400
    hop_samples: int = 160
    n_fft: int = 512
    n_mels: int = 40
    f_min_hz: float = 20.0
    f_max_hz: float = SAMPLE_RATE_HZ / 2
    log_eps: float = 1e-6
    standardize: bool = True  # per clip: subtract the mean, divide by the std (see LogMel)

    def frames(self, samples: int) -> int:
        """Frames the front end gives for ``samples`` samples (no centre padding)."""
        return (samples - self.win_samples) // self.hop_samples + 1


@dataclass(frozen=True)
class DSCNNConfig:
    """DS-CNN shape: channels, first conv stride, one (stride_t, stride_f) per DS layer."""

    channels: int
    first_stride: tuple[int, int]
    ds_strides: tuple[tuple[int, int], ...]
    first_kernel: tuple[int, int] = (10, 4)
    num_classes: int = 12


# From ML-KWS-for-MCU train_commands.txt (--model_size_info of DS_CNN1/2/3).
DS_CNN_SIZES = {
    "S": DSCNNConfig(64, (2, 2), ((1, 1),) * 4),
    "M": DSCNNConfig(172, (2, 1), ((2, 2),) + ((1, 1),) * 3),
    "L": DSCNNConfig(276, (2, 1), ((2, 2),) + ((1, 1),) * 4),
}
DS_CNN_PAPER_OPS = {"S": 5.4e6, "M": 19.8e6, "L": 56.9e6}  # Hello Edge, Table 7
DS_CNN_PAPER_INPUT = (49, 10)  # 40 ms windows every 20 ms, 10 MFCC
# Default classes of the speech workloads: 8 synthetic calls are learnt clearly within the
# smoke budget (23 NAG steps of 8 clips); the papers' 12 (Speech Commands' 10 words, silence,
# unknown) is num_classes=12, which the reference parameter counts assume.
SPEECH_CLASSES = 8
DS_CNN_CONV_SCALE = 0.3  # initial conv weights x this (see DSCNN.__init__)


@dataclass(frozen=True)
class KWTConfig:
    """Keyword Transformer shape; the defaults are KWT-1 on 98 x 40 features."""

    frames: int = 98
    features: int = 40
    dim: int = 64
    depth: int = 12
    heads: int = 1
    mlp_dim: int = 256
    num_classes: int = 12
    dropout: float = 0.0


STD_FLOOR = 1e-2  # a silent clip's log-mel is constant (up to rounding): it standardises to ~0

# --- blocks ---------------------------------------------------------------------------


class LogMel(nn.Module):
    """Log-mel spectrogram on ``torch.stft``: waveforms ``[B, N]`` -> ``[B, frames, n_mels]``.

    ``torch.stft`` centres a shorter window inside each ``n_fft`` frame, so the signal is
    padded by ``(n_fft - win) / 2`` on both sides: frame ``t`` then windows exactly samples
    ``[t * hop, t * hop + win)``, as a 400-sample frame zero-padded to 512 would.

    With ``standardize`` (the default) each clip's log-mel image is shifted and scaled to
    mean 0 and std 1 over all its frames and bins: raw log-mel values sit around -14 to 8
    depending on the recording's level, which a first linear layer trained by SGD at a fixed
    learning rate does not tolerate (it is the per-utterance normalisation of speech front
    ends, and leaves where the energy lies unchanged).
    """

    def __init__(self, config: LogMelConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or LogMelConfig()
        self.register_buffer("window", torch.hann_window(cfg.win_samples), persistent=False)
        self.register_buffer("mel_fb", mel_filterbank(cfg), persistent=False)
        self.pad = (cfg.n_fft - cfg.win_samples) // 2

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        padded = F.pad(waves, (self.pad, cfg.n_fft - cfg.win_samples - self.pad))
        spec = torch.stft(
            padded, cfg.n_fft, cfg.hop_samples, cfg.win_samples, self.window,
            center=False, return_complex=True,
        )  # fmt: skip
        power = spec.real.square() + spec.imag.square()  # [B, n_fft // 2 + 1, frames]
        features = torch.log(power.transpose(1, 2) @ self.mel_fb + cfg.log_eps)
        if not cfg.standardize:
            return features
        mean = features.mean(dim=(1, 2), keepdim=True)
        return (features - mean) / features.std(dim=(1, 2), keepdim=True).clamp(min=STD_FLOOR)


MFCC_LOGMEL = LogMelConfig(win_samples=640, hop_samples=320, n_fft=1024, n_mels=40, standardize=False)
MFCC_COEFFS = 10


class MFCC(nn.Module):
    """MFCCs as in Hello Edge: ``[B, N]`` -> ``[B, 49, 10]`` for one second at 16 kHz.

    Log-mel (40 ms / 20 ms, 40 bands), then an orthonormal DCT-II over the bands keeping the
    first ``coeffs``; each clip is then standardised as :class:`LogMel` does.
    """

    def __init__(self, coeffs: int = MFCC_COEFFS, logmel: LogMelConfig = MFCC_LOGMEL) -> None:
        super().__init__()
        self.logmel = LogMel(logmel)
        n = logmel.n_mels
        k = torch.arange(coeffs, dtype=torch.float32)[:, None]
        m = torch.arange(n, dtype=torch.float32)[None, :]
        dct = torch.cos(math.pi / n * (m + 0.5) * k) * math.sqrt(2.0 / n)
        dct[0] /= math.sqrt(2.0)
        self.register_buffer("dct", dct.T.contiguous(), persistent=False)  # [n_mels, coeffs]

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        mfcc = self.logmel(waves) @ self.dct
        mean = mfcc.mean(dim=(1, 2), keepdim=True)
        return (mfcc - mean) / mfcc.std(dim=(1, 2), keepdim=True).clamp(min=STD_FLOOR)


SPEECH_FEATURES: dict[str, Callable[[], nn.Module]] = {"logmel98x40": LogMel, "mfcc49x10": MFCC}


def mel_filterbank(cfg: LogMelConfig) -> torch.Tensor:
    """Triangular HTK-mel filters, ``[n_fft // 2 + 1, n_mels]``, peak 1, no area norm."""
    bins_hz = torch.linspace(0, cfg.sample_rate_hz / 2, cfg.n_fft // 2 + 1)
    edges = torch.linspace(
        float(hz_to_mel(torch.tensor(cfg.f_min_hz))),
        float(hz_to_mel(torch.tensor(cfg.f_max_hz))),
        cfg.n_mels + 2,
    )
    edges_hz = mel_to_hz(edges)
    low, centre, high = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bins_hz[:, None] - low) / (centre - low)
    falling = (high - bins_hz[:, None]) / (high - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class SamePad2d(nn.Module):
    """TensorFlow "SAME" padding for a kernel and stride (asymmetric when it must be)."""

    def __init__(self, kernel: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, k, s in zip(x.shape[:-3:-1], self.kernel[::-1], self.stride[::-1], strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)


def same_conv_bn_relu(
    cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int], groups: int = 1
) -> nn.Sequential:
    """SAME-padded convolution (with bias, as slim's), batch norm, ReLU."""
    return nn.Sequential(
        SamePad2d(kernel, stride),
        nn.Conv2d(cin, cout, kernel, stride, groups=groups),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class KWTBlock(nn.Module):
    """Post-norm transformer layer: x = LN(x + MHSA(x)); x = LN(x + MLP(x)); LN eps 1e-6."""

    def __init__(self, cfg: KWTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.norm1 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.dim, cfg.mlp_dim), nn.GELU(), nn.Linear(cfg.mlp_dim, cfg.dim)
        )
        self.norm2 = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, dim)
        x = self.norm1(x + self.dropout(self.proj(attn)))
        return self.norm2(x + self.dropout(self.mlp(x)))


# --- model ----------------------------------------------------------------------------


class DSCNN(nn.Module):
    """DS-CNN keyword spotter on features ``[B, frames, coefficients]`` of any size."""

    def __init__(self, cfg: DSCNNConfig) -> None:
        super().__init__()
        c = cfg.channels
        layers = [same_conv_bn_relu(1, c, cfg.first_kernel, cfg.first_stride)]
        for stride in cfg.ds_strides:
            layers.append(same_conv_bn_relu(c, c, (3, 3), stride, groups=c))  # depthwise
            layers.append(same_conv_bn_relu(c, c, (1, 1), (1, 1)))  # pointwise
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(c, cfg.num_classes)
        # Smaller conv weights, a larger effective SGD step (see scale_conv_init): NAG at
        # lr 0.05 then shapes the features within tens of steps. The head keeps torch's
        # init: a zero head would starve the convolutions of gradient at first.
        scale_conv_init(self.features, DS_CNN_CONV_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x.unsqueeze(1)).mean(dim=(2, 3)))


class KWT(nn.Module):
    """Keyword Transformer on features ``[B, frames, features]``; classifies the class token."""

    def __init__(self, cfg: KWTConfig) -> None:
        super().__init__()
        self.patch = nn.Linear(cfg.features, cfg.dim)
        self.cls = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.pos = nn.Parameter(torch.zeros(1, cfg.frames + 1, cfg.dim))
        self.blocks = nn.Sequential(*(KWTBlock(cfg) for _ in range(cfg.depth)))
        self.head = nn.Linear(cfg.dim, cfg.num_classes)
        for p in self.parameters():  # the reference: truncated normal(0.02) weights, zero biases
            if p.dim() > 1 or p is self.cls:
                nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        self.trainable_by_sgd(cfg)

    def trainable_by_sgd(self, cfg: KWTConfig) -> None:
        """Scales that let plain SGD (NAG at lr 0.05) train it from the first steps.

        With the reference's 0.02 class token and positions, the class token's output is
        nearly the same vector for every clip (its own embedding outweighs what attention
        brings from the frames), and SGD grows that embedding further; starting both at zero
        makes the class token's output a summary of the frames. The patch projection at std
        1/sqrt(features) gives unit-scale frame tokens; the head starts at zero.
        """
        nn.init.zeros_(self.cls)
        nn.init.zeros_(self.pos)
        nn.init.normal_(self.patch.weight, std=cfg.features**-0.5)
        zero_init_head(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(x)
        tokens = torch.cat([self.cls.expand(len(x), -1, -1), tokens], dim=1) + self.pos
        return self.head(self.blocks(tokens)[:, 0])


# --- registration ---------------------------------------------------------------------


def speech_task(
    make_model: Callable[[], nn.Module],
    *,
    batch: int,
    seed: int,
    num_classes: int,
    data: str,
    info: dict[str, Any],
    frontend: nn.Module | None = None,
) -> Task:
    """A keyword-spotting Task: raw 1 s waveforms from ``data``, a front end (log-mel)."""
    check_positive("num_classes", num_classes)
    with seeded(seed):
        model = make_model()
    return classification_task(
        model,
        speech_source(data, batch=batch, seed=seed, num_classes=num_classes),
        batch=batch, example=torch.zeros(1, CLIP_SAMPLES), domain="speech",
        num_classes=num_classes, frontend=frontend or LogMel(), info={**info, "data": data},
    )  # fmt: skip


@register_workload(
    "ds_cnn",
    domain="speech",
    description="DS-CNN keyword spotter (Hello Edge), size S|M|L, on 98x40 log-mel or 49x10 MFCC",
    defaults={"size": "S", "num_classes": SPEECH_CLASSES, "data": SYNTHETIC, "features": "logmel98x40"},
)
def build_ds_cnn(batch: int, seed: int, *, size: str, num_classes: int, data: str,
                 features: str) -> Task:
    """DS-CNN of the given size on one-second clips: 98 x 40 log-mel features by default,
    the paper's 49 x 10 MFCC with ``features = "mfcc49x10"``."""
    size = str(size).upper()
    if size not in DS_CNN_SIZES:
        raise ValueError(f"ds_cnn size {size!r} is unknown; use one of {', '.join(DS_CNN_SIZES)}")
    if features not in SPEECH_FEATURES:
        raise ValueError(f"ds_cnn features {features!r} is unknown; use one of {', '.join(SPEECH_FEATURES)}")
    cfg = DS_CNN_SIZES[size]
    cfg = DSCNNConfig(cfg.channels, cfg.first_stride, cfg.ds_strides, num_classes=num_classes)
    return speech_task(
        lambda: DSCNN(cfg), batch=batch, seed=seed, num_classes=num_classes, data=data,
        info={"size": size, "features": features}, frontend=SPEECH_FEATURES[features](),
    )  # fmt: skip


@register_workload(
    "kwt1",
    domain="speech",
    description="Keyword Transformer KWT-1 (dim 64, 12 layers, 1 head) on log-mel features",
    defaults={"num_classes": SPEECH_CLASSES, "dim": 64, "depth": 12, "heads": 1, "mlp_dim": 256,
              "dropout": 0.0, "data": SYNTHETIC},
)  # fmt: skip
def build_kwt(
    batch: int, seed: int, *, num_classes: int, dim: int, depth: int, heads: int,
    mlp_dim: int, dropout: float, data: str,
) -> Task:  # fmt: skip
    """KWT (KWT-1 by default) on 98 x 40 log-mel features of one-second clips."""
    for name, value in (("dim", dim), ("depth", depth), ("heads", heads), ("mlp_dim", mlp_dim)):
        check_positive(name, value)
    if dim % heads:
        raise ValueError(f"kwt1 dim={dim} is not divisible by heads={heads}")
    front = LogMelConfig()
    cfg = KWTConfig(
        frames=front.frames(CLIP_SAMPLES), features=front.n_mels, dim=dim, depth=depth,
        heads=heads, mlp_dim=mlp_dim, num_classes=num_classes, dropout=dropout,
    )  # fmt: skip
    return speech_task(
        lambda: KWT(cfg), batch=batch, seed=seed, num_classes=num_classes, data=data,
        info={"dim": dim, "depth": depth, "heads": heads, "mlp_dim": mlp_dim},
    )  # fmt: skip
