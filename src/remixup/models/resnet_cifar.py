"""ResNet-32 for 32×32 inputs (He et al. 2016, §4.2), as used by LDAM-DRW and the Remix paper.

Layout: a 3×3 convolution with 16 channels (``stem``), then three stages (``layer1``..``layer3``) of 5 basic blocks
each with widths 16/32/64 (stride 2 at the start of stages 2 and 3), global average pooling and the classifier
``fc``. Shortcuts are option A (parameter-free): when the shape changes the identity is subsampled with stride 2
and zero-padded in channels. About 0.46 M parameters for 10 classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from remixup.models._common import check_num_classes, kaiming_init, make_classifier

__all__ = ["ResNet32", "CifarBasicBlock", "PadShortcut"]


class PadShortcut(nn.Module):
    """Option-A shortcut: ``x[:, :, ::s, ::s]`` zero-padded from ``in_channels`` to ``out_channels`` channels."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_channels - self.in_channels
        return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, stride={self.stride}"


class CifarBasicBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` with 3×3 convolutions; option-A shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = (
            nn.Identity() if stride == 1 and in_channels == out_channels else PadShortcut(in_channels, out_channels, stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet32(nn.Module):
    """ResNet-32 for CIFAR-sized images.

    Args:
        num_classes: number of classes C.
        in_channels: input channels (3).
        classifier: ``"linear"`` or ``"norm"`` (cosine classifier for LDAM).
        blocks: basic blocks per stage (5 gives ResNet-32; 3 gives ResNet-20, 9 ResNet-56).
        classifier_bias: give the linear classifier a bias (True) or not (False).

    Shapes:
        input (B, in_channels, H, W) (32×32 for CIFAR) -> logits (B, C).

    ``mixing_points``: ``["input", "layer1", "layer2"]`` (Manifold Mixup mixes the input or the output of stage 1
    or 2).
    """

    def __init__(
        self, num_classes: int, *, in_channels: int = 3, classifier: str = "linear", blocks: int = 5, classifier_bias: bool = True
    ) -> None:
        super().__init__()
        check_num_classes(num_classes, "ResNet32")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = make_classifier(64, num_classes, classifier, owner="ResNet32", classifier_bias=classifier_bias)
        kaiming_init(self)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [CifarBasicBlock(in_channels, out_channels, stride)]
        layers += [CifarBasicBlock(out_channels, out_channels, 1) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    @property
    def mixing_points(self) -> list[str]:
        """Names of the manifold-mixing points: the input and the outputs of ``layer1`` and ``layer2``."""
        return ["input", "layer1", "layer2"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))
