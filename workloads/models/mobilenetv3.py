"""MobileNetV3-Small (Howard et al. 2019), the torchvision layout, with a width multiplier.

At width 1.0 and 1000 classes it has exactly the reference's 2,542,856 parameters.
Workload ``mobilenet_v3_small``: image classification on synthetic or CIFAR-10 images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workloads.data.sources import SYNTHETIC
from workloads.models.common import (
    check_positive,
    image_task,
    init_weights,
    make_divisible,
    zero_init_head,
    zero_init_last_norm,
)
from workloads.workload import Task, register_workload

# --- config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MobileNetV3Config:
    """Network shape: width multiplier and classes (the blocks are the paper's Table 2)."""

    width: float = 1.0
    num_classes: int = 1000
    dropout: float = 0.2


# input c, kernel, expanded c, output c, squeeze-excite, hard-swish, stride (paper Table 2)
BLOCKS = (
    (16, 3, 16, 16, True, False, 2),
    (16, 3, 72, 24, False, False, 2),
    (24, 3, 88, 24, False, False, 1),
    (24, 5, 96, 40, True, True, 2),
    (40, 5, 240, 40, True, True, 1),
    (40, 5, 240, 40, True, True, 1),
    (40, 5, 120, 48, True, True, 1),
    (48, 5, 144, 48, True, True, 1),
    (48, 5, 288, 96, True, True, 2),
    (96, 5, 576, 96, True, True, 1),
    (96, 5, 576, 96, True, True, 1),
)
HEAD_CHANNELS = 1024
BN_EPS, BN_MOMENTUM = 0.001, 0.01

# --- blocks ---------------------------------------------------------------------------


def conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = None
) -> nn.Sequential:
    """Convolution without bias, batch norm, then ``act`` (none when it is None)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: pool, 1x1 down to a quarter (rounded to 8), ReLU, 1x1 up, hard-sigmoid."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(scale))))
        return x * scale


class Bneck(nn.Module):
    """MobileNetV3 block: optional 1x1 expand, depthwise kxk, optional SE, linear 1x1 project."""

    def __init__(
        self, cin: int, kernel: int, hidden: int, cout: int, se: bool, hswish: bool, stride: int
    ) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv_bn_act(cin, hidden, 1, act=act))
        layers.append(conv_bn_act(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden))
        layers.append(conv_bn_act(hidden, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


# --- model ----------------------------------------------------------------------------


class MobileNetV3Small(nn.Module):
    """MobileNetV3-Small classifier for NCHW images of any resolution."""

    def __init__(self, config: MobileNetV3Config) -> None:
        super().__init__()

        def scaled(channels: int) -> int:
            return make_divisible(channels * config.width)

        layers: list[nn.Module] = [conv_bn_act(3, scaled(16), 3, 2, act=nn.Hardswish)]
        for cin, kernel, hidden, cout, se, hswish, stride in BLOCKS:
            layers.append(
                Bneck(scaled(cin), kernel, scaled(hidden), scaled(cout), se, hswish, stride)
            )
        last_block = scaled(BLOCKS[-1][3])
        layers.append(conv_bn_act(last_block, 6 * last_block, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        head = scaled(HEAD_CHANNELS)
        self.classifier = nn.Sequential(
            nn.Linear(6 * last_block, head),
            nn.Hardswish(inplace=True),
            nn.Dropout(config.dropout),
            nn.Linear(head, config.num_classes),
        )
        init_weights(self)
        for block in self.features:
            if isinstance(block, Bneck) and block.residual:
                zero_init_last_norm(block.block)
        zero_init_head(self.classifier[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


# --- registration ---------------------------------------------------------------------


@register_workload(
    "mobilenet_v3_small",
    domain="image",
    description="MobileNetV3-Small image classifier (width multiplier, classes, resolution)",
    defaults={"width": 1.0, "num_classes": 10, "resolution": 32, "dropout": 0.0, "data": SYNTHETIC},
)
def build(
    batch: int,
    seed: int,
    *,
    width: float,
    num_classes: int,
    resolution: int,
    dropout: float,
    data: str,
) -> Task:
    """MobileNetV3-Small on synthetic (or CIFAR-10) images of ``resolution`` pixels square.

    Dropout defaults to 0 (the paper trains with 0.2): see ``mobilenet_v2``'s build.
    """
    check_positive("width", width)
    return image_task(
        lambda: MobileNetV3Small(MobileNetV3Config(width=width, num_classes=num_classes, dropout=dropout)),
        batch=batch, seed=seed, num_classes=num_classes, resolution=resolution, data=data,
        info={"width": width, "dropout": dropout},
    )  # fmt: skip
