"""ResNet-18 with a CIFAR stem (for CINIC-10) and ResNet-50 in the ImageNet layout (for iNaturalist, 224 px).

Both use projection (1×1 convolution + BN) shortcuts when the shape changes, and name their parts ``stem``,
``layer1``..``layer4``, ``pool`` and ``fc``. ResNet-50 strides in the 3×3 convolution of its bottlenecks (the
"v1.5" layout torchvision uses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from remixup.models._common import check_num_classes, kaiming_init, make_classifier

__all__ = ["BasicBlock", "Bottleneck", "ResNet18", "ResNet50"]


def _projection(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a projection shortcut when the shape changes (``expansion = 1``)."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = _projection(in_channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (strided), 1×1 expand to ``4·channels``; projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class _ResNet(nn.Module):
    """Four stages of ``block`` with widths 64/128/256/512 (× expansion) after ``stem``."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, int, int, int],
        stem: nn.Module,
        num_classes: int,
        classifier: str,
        zero_init_residual: bool,
        classifier_bias: bool = True,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_num_classes(num_classes, owner)
        self.stem = stem
        in_channels = 64
        stages = []
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
            layers = []
            for k in range(depth):
                layers.append(block(in_channels, width, 2 if (k == 0 and i > 0) else 1))
                in_channels = width * block.expansion
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = make_classifier(in_channels, num_classes, classifier, owner=owner, classifier_bias=classifier_bias)
        kaiming_init(self)
        if zero_init_residual:
            # Each residual branch starts as zero, so every block starts as the identity (Goyal et al. 2017).
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    @property
    def mixing_points(self) -> list[str]:
        """Names of the manifold-mixing points: the input and the outputs of ``layer1`` and ``layer2``."""
        return ["input", "layer1", "layer2"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


class ResNet18(_ResNet):
    """ResNet-18 with a CIFAR stem: a 3×3 stride-1 convolution with 64 channels and no max-pool.

    Args:
        num_classes: number of classes C.
        in_channels: input channels (3).
        classifier: ``"linear"`` or ``"norm"`` (cosine classifier for LDAM).
        zero_init_residual: start every residual branch at zero.
        classifier_bias: give the linear classifier a bias (True) or not (False).

    Shapes:
        input (B, in_channels, H, W) (32×32 for CIFAR/CINIC) -> logits (B, C).

    ``mixing_points``: ``["input", "layer1", "layer2"]``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 3,
        classifier: str = "linear",
        zero_init_residual: bool = False,
        classifier_bias: bool = True,
    ) -> None:
        stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)
        )
        super().__init__(BasicBlock, (2, 2, 2, 2), stem, num_classes, classifier, zero_init_residual, classifier_bias)


class ResNet50(_ResNet):
    """ResNet-50 in the ImageNet layout: 7×7 stride-2 convolution and 3×3 stride-2 max-pool, then bottlenecks.

    Args:
        num_classes: number of classes C.
        in_channels: input channels (3).
        classifier: ``"linear"`` or ``"norm"`` (cosine classifier for LDAM).
        zero_init_residual: start every residual branch at zero.
        classifier_bias: give the linear classifier a bias (True) or not (False).

    Shapes:
        input (B, in_channels, H, W) (224×224 for iNaturalist) -> logits (B, C).

    ``mixing_points``: ``["input", "layer1", "layer2"]``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_channels: int = 3,
        classifier: str = "linear",
        zero_init_residual: bool = False,
        classifier_bias: bool = True,
    ) -> None:
        stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        super().__init__(Bottleneck, (3, 4, 6, 3), stem, num_classes, classifier, zero_init_residual, classifier_bias)
