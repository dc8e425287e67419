"""Small models for the embedded examples: a CNN for 8×8×1 digits and an MLP for 2-D toy data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from remixup._validation import check_number
from remixup.errors import InvalidParameterError
from remixup.models._common import check_num_classes, kaiming_init, make_classifier

__all__ = ["DigitsCNN", "MLP"]


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]


class DigitsCNN(nn.Module):
    """A small CNN for scikit-learn's 8×8 grey-scale digits.

    ``block1``: conv 3×3 → 32 (8×8); ``block2``: conv 3×3 → 64 and 2×2 max-pool (4×4); ``block3``: conv 3×3 → 128;
    global average pooling; classifier ``fc``. About 0.1 M parameters.

    Args:
        num_classes: number of classes C (10 for digits).
        in_channels: input channels (1).
        classifier: ``"linear"`` or ``"norm"``.
        classifier_bias: give the linear classifier a bias (True) or not (False).

    Shapes:
        input (B, in_channels, 8, 8) -> logits (B, C).

    ``mixing_points``: ``["input", "block1", "block2"]``.
    """

    def __init__(
        self, num_classes: int, *, in_channels: int = 1, classifier: str = "linear", classifier_bias: bool = True
    ) -> None:
        super().__init__()
        check_num_classes(num_classes, "DigitsCNN")
        self.block1 = nn.Sequential(*_conv_bn_relu(in_channels, 32))
        self.block2 = nn.Sequential(*_conv_bn_relu(32, 64), nn.MaxPool2d(2))
        self.block3 = nn.Sequential(*_conv_bn_relu(64, 128))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = make_classifier(128, num_classes, classifier, owner="DigitsCNN", classifier_bias=classifier_bias)
        kaiming_init(self)

    @property
    def mixing_points(self) -> list[str]:
        """Names of the manifold-mixing points: the input and the outputs of ``block1`` and ``block2``."""
        return ["input", "block1", "block2"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class MLP(nn.Module):
    """A multi-layer perceptron for vector inputs (2-D toy sets).

    Hidden layers ``layer1``..``layerK`` are each ``Linear → ReLU``; the classifier is ``fc``.

    Args:
        num_classes: number of classes C.
        in_features: input dimension D (2).
        hidden: width of each hidden layer: an int (used ``depth`` times) or a sequence of widths.
        depth: number of hidden layers when ``hidden`` is an int (≥ 1).
        classifier: ``"linear"`` or ``"norm"``.
        classifier_bias: give the linear classifier a bias (True) or not (False).

    Shapes:
        input (B, D) -> logits (B, C).

    ``mixing_points``: ``["input", "layer1", …, "layerK"]``.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_features: int = 2,
        hidden: int | Sequence[int] = 64,
        depth: int = 2,
        classifier: str = "linear",
        classifier_bias: bool = True,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes, "MLP")
        in_features = int(check_number(in_features, "in_features", owner="MLP", low=1, integer=True))
        if isinstance(hidden, Sequence):
            widths = [int(check_number(h, "hidden", owner="MLP", low=1, integer=True)) for h in hidden]
            if not widths:
                raise InvalidParameterError("`hidden` of `MLP` must name at least one hidden width; got an empty sequence")
        else:
            depth = int(check_number(depth, "depth", owner="MLP", low=1, integer=True))
            widths = [int(check_number(hidden, "hidden", owner="MLP", low=1, integer=True))] * depth
        self.in_features = in_features
        self.hidden = tuple(widths)
        d = in_features
        for k, width in enumerate(widths, start=1):
            self.add_module(f"layer{k}", nn.Sequential(nn.Linear(d, width), nn.ReLU()))
            d = width
        self.fc = make_classifier(d, num_classes, classifier, owner="MLP", classifier_bias=classifier_bias)
        kaiming_init(self)

    @property
    def mixing_points(self) -> list[str]:
        """Names of the manifold-mixing points: the input and the output of every hidden layer."""
        return ["input"] + [f"layer{k}" for k in range(1, len(self.hidden) + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k in range(1, len(self.hidden) + 1):
            x = getattr(self, f"layer{k}")(x)
        return self.fc(x)
