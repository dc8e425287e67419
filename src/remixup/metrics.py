"""Classification metrics for long-tailed data, computed from counts that can be summed across DDP ranks.

Evaluation accumulates a :class:`MetricCounts` (a confusion matrix (C, C) int64 and the number of top-5 hits);
counts add up, so a DDP job all-reduces them with one ``SUM`` and every rank derives the same metrics. No
torchmetrics is needed: a confusion matrix is all these metrics require, and summing it is exact.

Group accuracies follow the usual long-tail convention (Liu et al. 2019, OLTR; Cao et al. 2019): classes with more
than 100 training samples are *many*-shot, 20–100 *medium*-shot and fewer than 20 *few*-shot; a group's accuracy is
the mean of its classes' accuracies, and ``None`` when the group has no class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from remixup._validation import check_number
from remixup.balancing import class_log_prior

MANY_ABOVE = 100  # many-shot: n > 100
FEW_BELOW = 20  # few-shot: n < 20


@dataclass
class MetricCounts:
    """Sufficient statistics of evaluation: ``confusion`` (C, C) int64 (row = true class, column = prediction)
    and ``top5`` (scalar int64, number of samples whose class is among the 5 highest logits)."""

    confusion: torch.Tensor
    top5: torch.Tensor

    @classmethod
    def zeros(cls, num_classes: int, device: torch.device | str = "cpu") -> MetricCounts:
        return cls(
            torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device),
            torch.zeros((), dtype=torch.int64, device=device),
        )

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``logits`` (B, C), ``target`` (B,) int class indices."""
        c = self.confusion.shape[0]
        pred = logits.argmax(dim=1)
        self.confusion += torch.bincount(target * c + pred, minlength=c * c).reshape(c, c)
        k = min(5, c)
        self.top5 += (logits.topk(k, dim=1).indices == target[:, None]).any(dim=1).sum()

    def all_reduce(self) -> None:
        """Sum the counts over all ranks of the default process group (no-op without one)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.confusion)
            torch.distributed.all_reduce(self.top5)


def per_class_accuracy(confusion: torch.Tensor) -> list[float | None]:
    """Accuracy (%) of every class from a confusion matrix; ``None`` for a class without test samples."""
    conf = confusion.detach().to("cpu", torch.float64)
    support = conf.sum(dim=1)
    acc = 100.0 * conf.diagonal() / support.clamp(min=1)
    return [float(a) if s > 0 else None for a, s in zip(acc.tolist(), support.tolist(), strict=True)]


def macro_f1(confusion: Any) -> float | None:
    """Macro-averaged F1 (%) from a confusion matrix (C, C) (row = true class, column = prediction).

    The mean over classes with test samples of ``2·TP / (2·TP + FP + FN)``; a class never predicted and never
    right scores 0. ``None`` when there is no test sample. Equals scikit-learn's ``f1_score(average="macro")``
    over the labels present in the test set.
    """
    conf = torch.as_tensor(confusion).detach().to("cpu", torch.float64)
    tp = conf.diagonal()
    support, predicted = conf.sum(dim=1), conf.sum(dim=0)
    present = support > 0
    if not bool(present.any()):
        return None
    f1 = 2 * tp / (support + predicted).clamp(min=1)
    return 100.0 * float(f1[present].mean())


def macro_auprc(probabilities: Any, labels: Any) -> float | None:
    """Macro-averaged area under the precision-recall curve (%), as average precision.

    For each class c with test samples, samples are ranked by their score for c (``probabilities[:, c]``) and
    ``AP_c = Σ_k (R_k − R_{k−1}) · P_k`` over the distinct scores, highest first (precision P_k and recall R_k of
    predicting c at or above the k-th score); the result is the mean of ``AP_c`` over those classes. Equals
    scikit-learn's ``average_precision_score(labels == c, probabilities[:, c])`` averaged over the classes present.

    Args:
        probabilities: (N, C) scores (any monotone transform of a class's score gives the same AP_c).
        labels: (N,) int labels in [0, C).

    Returns:
        The mean AP in %, ``None`` when there is no sample.
    """
    import numpy as np

    p = torch.as_tensor(probabilities).detach().to("cpu", torch.float64).numpy()
    y = torch.as_tensor(labels).detach().to("cpu", torch.int64).numpy()
    if y.size == 0:
        return None
    values = []
    for c in np.unique(y):
        score, hit = p[:, c], (y == c)
        order = np.argsort(-score, kind="mergesort")
        score, hit = score[order], hit[order]
        last = np.r_[np.flatnonzero(np.diff(score) != 0), score.size - 1]  # the last sample of each distinct score
        tp = np.cumsum(hit)[last]
        precision = tp / (last + 1)
        recall = tp / hit.sum()
        values.append(float(np.sum(np.diff(np.r_[0.0, recall]) * precision)))
    return 100.0 * float(np.mean(values))


def shot_groups(class_counts: Any) -> dict[str, list[int]]:
    """Class indices of the many (> 100), medium (20–100) and few (< 20) training-sample groups."""
    counts = [int(n) for n in torch.as_tensor(class_counts).tolist()]
    return {
        "many": [c for c, n in enumerate(counts) if n > MANY_ABOVE],
        "medium": [c for c, n in enumerate(counts) if FEW_BELOW <= n <= MANY_ABOVE],
        "few": [c for c, n in enumerate(counts) if n < FEW_BELOW],
    }


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def summarize(counts: MetricCounts, class_counts: Any) -> dict[str, Any]:
    """All metrics from the counts, as plain Python values (percentages 0–100).

    Args:
        counts: the evaluation's :class:`MetricCounts`.
        class_counts: (C,) training samples per class, for the many/medium/few groups.

    Returns:
        ``{"top1", "top5", "balanced_acc", "macro_f1", "many", "medium", "few", "per_class", "confusion",
        "num_samples"}``; ``balanced_acc`` is the mean per-class accuracy (recall) over classes with test samples,
        ``macro_f1`` as :func:`macro_f1`; a group with no class (or no test sample) is ``None``.
    """
    conf = counts.confusion.detach().to("cpu")
    total = int(conf.sum())
    per_class = per_class_accuracy(conf)
    groups = shot_groups(class_counts)
    return {
        "top1": 100.0 * float(conf.diagonal().sum()) / total if total else None,
        "top5": 100.0 * float(counts.top5) / total if total else None,
        "balanced_acc": _mean(per_class),
        "macro_f1": macro_f1(conf),
        **{name: _mean([per_class[c] for c in members]) for name, members in groups.items()},
        "per_class": per_class,
        "confusion": conf.tolist(),
        "num_samples": total,
    }


def logit_adjustment(class_counts: Any, tau: float) -> torch.Tensor:
    """The post-hoc logit adjustment ``τ·log π`` (C,) float32, with the training prior ``π_c = n_c / Σ_k n_k``.

    Predicting ``argmax_c (z_c − τ·log π_c)`` instead of ``argmax_c z_c`` (Menon et al. 2021, "Long-tail learning
    via logit adjustment", §4) removes the label prior a model learned from imbalanced data; ``τ = 1`` is the
    Bayes-optimal choice for the balanced error when the softmax estimates ``P(y | x)``. It needs no training, so
    comparing a checkpoint's accuracy with and without it separates a head-biased classifier from weak features.

    Args:
        class_counts: (C,) training samples per class, all positive.
        tau: ``τ ≥ 0``; 0 gives zeros (no adjustment).

    Raises:
        ValueError: ``tau`` negative or not finite, or a class count that is not positive.
    """
    return float(check_number(tau, "logit_adjust", low=0.0)) * class_log_prior(class_counts)
