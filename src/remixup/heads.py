"""The classifier heads and the loss of the decoupled second stages (core math, no training code).

* LWS, learnable weight scaling (Kang et al., ICLR 2020, https://arxiv.org/abs/1910.09217): ``z'_c = s_c · z_c`` with
  one learned scale per class on a frozen classifier ``z = W f + b``.
* τ-normalisation (the same paper): ``w'_c = w_c / ‖w_c‖^τ``, without the bias (as the authors' ``tau_norm.py``).
* NCM, nearest class mean with cosine similarity (the same paper): ``z_c = cos(f, μ_c)``, ``μ_c`` the mean feature
  of class c on the training split.
* Label-aware smoothing of MiSLAS (Zhong et al., CVPR 2021, https://arxiv.org/abs/2104.00466): class y's smoothing
  ``ε_y`` between ``ε_K`` (the rarest class) and ``ε_1`` (the most frequent), by the paper's concave rule
  ``ε_y = ε_K + (ε_1 − ε_K) · sin(π/2 · (n_y − n_K) / (n_1 − n_K))``; the loss is
  ``(1 − ε_y) · (−log p_y) + ε_y · mean_c(−log p_c)``.

Every function takes tensors and returns new ones; none modifies its inputs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from remixup._validation import check_choice, check_number
from remixup.errors import InvalidParameterError

__all__ = ["SMOOTHING_SHAPES", "LabelAwareSmoothing", "class_means", "label_aware_smoothing", "lws_logits", "ncm_logits",
           "tau_norm_weight"]  # fmt: skip

SMOOTHING_SHAPES = ("concave", "linear", "convex")


def lws_logits(logits: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """LWS: the frozen classifier's logits (B, C) times the per-class scales (C,)."""
    return logits * scales


def tau_norm_weight(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """τ-normalised classifier weights: row c of ``weight`` (C, D) divided by its L2 norm to the power ``tau`` ≥ 0
    (0 leaves it unchanged, 1 gives unit rows)."""
    check_number(tau, "tau", owner="tau_norm_weight", low=0.0)
    return weight / weight.norm(dim=1, keepdim=True).pow(tau)


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The mean feature (C, D) of each class over ``features`` (N, D) with ``labels`` (N,).

    Raises:
        InvalidParameterError: a class without samples (its mean is undefined).
    """
    counts = torch.bincount(labels, minlength=num_classes)
    if bool((counts == 0).any()):
        empty = int(torch.nonzero(counts == 0)[0])
        raise InvalidParameterError(f"class {empty} has no training samples: its mean feature is undefined")
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    return sums / counts.to(features.dtype).unsqueeze(1)


def ncm_logits(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (B, C) of each feature (B, D) to each class mean (C, D)."""
    return F.normalize(features, dim=1) @ F.normalize(means, dim=1).T


def label_aware_smoothing(class_counts: Any, head: float, tail: float, *, shape: str = "concave") -> torch.Tensor:
    """Per-class smoothing ε (C,) of MiSLAS: ``tail`` for the rarest class, ``head`` for the most frequent one.

    With ``x_y = (n_y − n_K) / (n_1 − n_K)`` in [0, 1]: ``concave`` (the paper's choice)
    ``ε_K + (ε_1 − ε_K) sin(π x / 2)``, ``linear`` ``ε_K + (ε_1 − ε_K) x``, ``convex``
    ``ε_1 + (ε_1 − ε_K) sin(3π/2 + π x / 2)``. Equal counts give ``head`` for every class.
    """
    owner = "label_aware_smoothing"
    check_number(head, "head", owner=owner, low=0.0, high=1.0)
    check_number(tail, "tail", owner=owner, low=0.0, high=1.0)
    check_choice(shape, "shape", SMOOTHING_SHAPES, owner=owner)
    n = torch.as_tensor(class_counts, dtype=torch.float64)
    span = float(n.max() - n.min())
    x = (n - n.min()) / span if span > 0 else torch.ones_like(n)
    if shape == "concave":
        eps = tail + (head - tail) * torch.sin(x * math.pi / 2)
    elif shape == "linear":
        eps = tail + (head - tail) * x
    else:
        eps = head + (head - tail) * torch.sin(1.5 * math.pi + x * math.pi / 2)
    return eps.to(torch.float32)


class LabelAwareSmoothing(nn.Module):
    """Cross-entropy with MiSLAS's label-aware smoothing: ``(1 − ε_y)(−log p_y) + ε_y · mean_c(−log p_c)``, averaged
    over the batch.

    Args:
        class_counts: (C,) training samples per class.
        head: ε_1, the smoothing of the most frequent class. tail: ε_K, of the rarest.
        shape: the rule between them (:func:`label_aware_smoothing`).

    Shapes:
        ``forward(logits (B, C), target (B,) int64) -> ()``.
    """

    def __init__(self, class_counts: Any, *, head: float, tail: float, shape: str = "concave") -> None:
        super().__init__()
        self.smoothing: torch.Tensor
        self.register_buffer("smoothing", label_aware_smoothing(class_counts, head, tail, shape=shape))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        eps = self.smoothing[target]
        logp = F.log_softmax(logits, dim=1)
        nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)
        return ((1 - eps) * nll + eps * -logp.mean(dim=1)).mean()
