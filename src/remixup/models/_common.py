"""Pieces shared by the models: the classifier heads and initialisation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from remixup._validation import check_choice, check_number
from remixup.errors import InvalidTypeError

CLASSIFIERS = ("linear", "norm")


class CosineLinear(nn.Module):
    """Normalised-linear (cosine) classifier used with LDAM: ``z_c = <x/‖x‖, w_c/‖w_c‖>`` ∈ [−1, 1].

    Both the features and each class's weight vector are normalised, so the logits are cosine similarities; the
    LDAM loss multiplies them by its scale ``s`` (30). No bias.

    Args:
        in_features: feature dimension D.
        out_features: number of classes C.

    Shapes:
        input (B, D) -> output (B, C).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def make_classifier(
    in_features: int, num_classes: int, classifier: str, *, owner: str, classifier_bias: bool = True
) -> nn.Module:
    """The final layer: ``nn.Linear`` (``"linear"``) or :class:`CosineLinear` (``"norm"``, for LDAM).

    ``classifier_bias=False`` drops the linear layer's bias, so logits are ``z = W f`` and the classifier has no
    per-class offset in which to store the training label prior (as in some public long-tail code). The cosine
    classifier never has a bias, so the flag does not change it.
    """
    check_choice(classifier, "classifier", CLASSIFIERS, owner=owner)
    if not isinstance(classifier_bias, bool):
        raise InvalidTypeError(f"`classifier_bias` of `{owner}` must be True or False; got {classifier_bias!r}")
    if classifier == "norm":
        return CosineLinear(in_features, num_classes)
    return nn.Linear(in_features, num_classes, bias=classifier_bias)


def check_num_classes(num_classes: int, owner: str) -> int:
    return int(check_number(num_classes, "num_classes", owner=owner, low=1, integer=True))


def kaiming_init(model: nn.Module) -> None:
    """He (Kaiming) normal init for convolutions and linear layers, BN to identity, biases to zero."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
