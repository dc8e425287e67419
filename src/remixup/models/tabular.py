"""The residual MLP for tabular data of Gorishniy et al. 2021 ("Revisiting Deep Learning Models for Tabular Data",
NeurIPS 2021, arXiv 2106.11959, §3.2 "ResNet").

    ResNet(x) = Prediction(ResBlock(… ResBlock(Linear(x))))
    ResBlock(x) = x + Dropout(Linear(Dropout(ReLU(Linear(BatchNorm(x))))))
    Prediction(x) = Linear(ReLU(BatchNorm(x)))
"""

from __future__ import annotations

import torch
from torch import nn

from remixup._validation import check_number
from remixup.models._common import check_num_classes, make_classifier

__all__ = ["ResidualBlock", "TabularResNet"]


class ResidualBlock(nn.Module):
    """``x + Dropout(Linear(Dropout(ReLU(Linear(BatchNorm(x))))))``, width ``width`` → ``hidden`` → ``width``.

    Shapes:
        input (B, width) -> output (B, width).
    """

    def __init__(self, width: int, hidden: int, *, hidden_dropout: float, residual_dropout: float) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(width)
        self.linear1 = nn.Linear(width, hidden)
        self.relu = nn.ReLU()
        self.dropout1 = nn.Dropout(hidden_dropout)
        self.linear2 = nn.Linear(hidden, width)
        self.dropout2 = nn.Dropout(residual_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.dropout1(self.relu(self.linear1(self.norm(x))))
        return x + self.dropout2(self.linear2(z))


class TabularResNet(nn.Module):
    """Gorishniy et al.'s ResNet for tables: a linear stem, ``blocks`` residual blocks, BatchNorm-ReLU and ``fc``.

    Args:
        num_classes: number of classes C.
        in_features: input dimension D (after one-hot encoding).
        width: block width d (the paper tunes 64–512).
        hidden_factor: the inner width of a block is ``round(hidden_factor · width)`` (paper: 1–4).
        blocks: number of residual blocks (paper: 1–8), ≥ 1.
        hidden_dropout: dropout after the inner ReLU, in [0, 1).
        residual_dropout: dropout on the block's output before the skip sum, in [0, 1).
        classifier: ``"linear"`` or ``"norm"`` (cosine, for LDAM).
        classifier_bias: give the linear classifier a bias (True) or not (False).

    Shapes:
        input (B, D) float -> logits (B, C).

    ``mixing_points``: ``["input", "stem", "block1", …, "blockK"]`` (manifold mixing on the hidden
    representations: the stem's output and each block's output).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        in_features: int = 2,
        width: int = 64,
        hidden_factor: float = 2.0,
        blocks: int = 2,
        hidden_dropout: float = 0.1,
        residual_dropout: float = 0.0,
        classifier: str = "linear",
        classifier_bias: bool = True,
    ) -> None:
        super().__init__()
        owner = "TabularResNet"
        check_num_classes(num_classes, owner)
        self.in_features = int(check_number(in_features, "in_features", owner=owner, low=1, integer=True))
        self.width = int(check_number(width, "width", owner=owner, low=1, integer=True))
        self.hidden_factor = float(check_number(hidden_factor, "hidden_factor", owner=owner, low=0.0, low_open=True))
        self.blocks = int(check_number(blocks, "blocks", owner=owner, low=1, integer=True))
        self.hidden_dropout = float(
            check_number(hidden_dropout, "hidden_dropout", owner=owner, low=0.0, high=1.0, high_open=True)
        )
        self.residual_dropout = float(
            check_number(residual_dropout, "residual_dropout", owner=owner, low=0.0, high=1.0, high_open=True)
        )
        hidden = max(1, round(self.hidden_factor * self.width))
        self.stem = nn.Linear(self.in_features, self.width)
        for k in range(1, self.blocks + 1):
            self.add_module(
                f"block{k}",
                ResidualBlock(self.width, hidden, hidden_dropout=self.hidden_dropout, residual_dropout=self.residual_dropout),
            )
        self.head_norm = nn.BatchNorm1d(self.width)
        self.head_relu = nn.ReLU()
        self.fc = make_classifier(self.width, num_classes, classifier, owner=owner, classifier_bias=classifier_bias)

    @property
    def mixing_points(self) -> list[str]:
        """Names of the manifold-mixing points: the input, the stem's output and every block's output."""
        return ["input", "stem"] + [f"block{k}" for k in range(1, self.blocks + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for k in range(1, self.blocks + 1):
            x = getattr(self, f"block{k}")(x)
        return self.fc(self.head_relu(self.head_norm(x)))
