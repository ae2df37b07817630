"""ResNet-18 (He et al. 2016), the torchvision layout, with a width multiplier.

At width 1.0 and 1000 classes it has exactly the reference's 11,689,512 parameters.
Workload ``resnet18``: image classification on synthetic or CIFAR-10 images.
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
    zero_init_head,
    zero_init_last_norm,
)
from workloads.workload import Task, register_workload

# --- config ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResNetConfig:
    """Network shape: blocks per stage, base width multiplier and classes."""

    blocks: tuple[int, ...] = (2, 2, 2, 2)
    width: float = 1.0
    num_classes: int = 1000


BASE_CHANNELS = 64

# --- blocks ---------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 strided projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


# --- model ----------------------------------------------------------------------------


class ResNet(nn.Module):
    """ResNet with basic blocks: 7x7/2 stem, 3x3/2 max-pool, four stages, global pool, FC."""

    def __init__(self, config: ResNetConfig) -> None:
        super().__init__()
        base = max(1, round(BASE_CHANNELS * config.width))
        self.stem = nn.Sequential(
            nn.Conv2d(3, base, 7, 2, 3, bias=False),
            nn.BatchNorm2d(base),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        stages: list[nn.Module] = []
        cin = base
        for index, repeats in enumerate(config.blocks):
            cout = base * 2**index
            for i in range(repeats):
                stages.append(BasicBlock(cin, cout, 2 if i == 0 and index > 0 else 1))
                cin = cout
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(cin, config.num_classes)
        init_weights(self)
        for block in self.stages:
            zero_init_last_norm(block.bn2)
        zero_init_head(self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stages(self.stem(x)).mean(dim=(2, 3)))


# --- registration ---------------------------------------------------------------------


@register_workload(
    "resnet18",
    domain="image",
    description="ResNet-18 image classifier (width multiplier, classes, resolution)",
    defaults={"width": 0.5, "num_classes": 10, "resolution": 32, "data": SYNTHETIC},
)
def build(
    batch: int, seed: int, *, width: float, num_classes: int, resolution: int, data: str
) -> Task:
    """ResNet-18 on synthetic (or CIFAR-10) images of ``resolution`` pixels square."""
    check_positive("width", width)
    return image_task(
        lambda: ResNet(ResNetConfig(width=width, num_classes=num_classes)),
        batch=batch, seed=seed, num_classes=num_classes, resolution=resolution, data=data,
        info={"width": width},
    )  # fmt: skip
