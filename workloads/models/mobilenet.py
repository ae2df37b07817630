"""MobileNetV2 (Sandler et al. 2018), the torchvision layout, with a width multiplier.

At width 1.0 and 1000 classes it has exactly the reference's 3,504,872 parameters.
Workload ``mobilenet_v2``: image classification on synthetic or CIFAR-10 images.
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
    scale_conv_init,
    zero_init_head,
    zero_init_last_norm,
)
from workloads.workload import Task, register_workload

# --- config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MobileNetV2Config:
    """Network shape: width multiplier and classes (the stages are the paper's)."""

    width: float = 1.0
    num_classes: int = 1000
    dropout: float = 0.2


# expansion t, output channels c, repeats n, first stride s (paper Table 2)
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip
STEM_CHANNELS, LAST_CHANNELS = 32, 1280
LAST_BN_SCALE = 0.2  # initial scale of the last batch norm (see MobileNetV2.__init__)
CONV_SCALE = 0.7  # initial conv weights x this: a larger effective SGD step (scale_conv_init)

# --- blocks ---------------------------------------------------------------------------


def conv_bn_relu6(
    cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Convolution without bias, batch norm, ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise 3x3 -> linear project (1x1), with a skip when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [conv_bn_relu6(cin, hidden, 1)] if expand != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


# --- model ----------------------------------------------------------------------------


class MobileNetV2(nn.Module):
    """MobileNetV2 classifier for NCHW images of any resolution (global average pool)."""

    def __init__(self, config: MobileNetV2Config) -> None:
        super().__init__()
        cin = make_divisible(STEM_CHANNELS * config.width)
        last = make_divisible(LAST_CHANNELS * max(1.0, config.width))
        layers: list[nn.Module] = [conv_bn_relu6(3, cin, stride=2)]
        for expand, channels, repeats, stride in STAGES:
            cout = make_divisible(channels * config.width)
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn_relu6(cin, last, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(last, config.num_classes)
        )
        init_weights(self)
        for block in self.features:
            if isinstance(block, InvertedResidual) and block.residual:
                zero_init_last_norm(block.conv)
        zero_init_head(self.classifier[-1])
        # The head's step size grows with the squared norm of the pooled features (1280
        # ReLU6 channels); at unit BN scale one NAG step at lr 0.05 swings logits by units.
        nn.init.constant_(self.features[-1][1].weight, LAST_BN_SCALE)
        scale_conv_init(self.features, CONV_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


# --- registration ---------------------------------------------------------------------


@register_workload(
    "mobilenet_v2",
    domain="image",
    description="MobileNetV2 image classifier (width multiplier, classes, resolution)",
    defaults={"width": 0.5, "num_classes": 10, "resolution": 32, "dropout": 0.0, "data": SYNTHETIC},
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
    """MobileNetV2 on synthetic (or CIFAR-10) images of ``resolution`` pixels square.

    Dropout defaults to 0 (the paper trains with 0.2) so that two Tasks built from one seed
    take identical steps, which the agent's correctness check relies on.
    """
    check_positive("width", width)
    return image_task(
        lambda: MobileNetV2(MobileNetV2Config(width=width, num_classes=num_classes, dropout=dropout)),
        batch=batch, seed=seed, num_classes=num_classes, resolution=resolution, data=data,
        info={"width": width, "dropout": dropout},
    )  # fmt: skip
