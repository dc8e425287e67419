"""Metrics from a confusion matrix: top-1/5, per-class, balanced, many/medium/few, λy-forced count."""

from __future__ import annotations

import pytest
import torch

from remixup.metrics import MetricCounts, lam_y_forced, per_class_accuracy, shot_groups, summarize


def _counts(logits: torch.Tensor, y: torch.Tensor) -> MetricCounts:
    c = MetricCounts.zeros(logits.shape[1])
    c.update(logits, y)
    return c


def test_confusion_and_accuracies() -> None:
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    logits = torch.nn.functional.one_hot(pred, 3).float()
    counts = _counts(logits, y)
    assert counts.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    m = summarize(counts, class_counts=[500, 50, 5])
    assert m["top1"] == pytest.approx(100 * 4 / 6)
    assert m["per_class"] == pytest.approx([50.0, 100.0, 50.0])
    assert m["balanced_acc"] == pytest.approx(200 / 3)
    assert (m["many"], m["medium"], m["few"]) == (pytest.approx(50.0), pytest.approx(100.0), pytest.approx(50.0))
    assert m["top5"] == 100.0  # C = 3 < 5: top-k over all classes


def test_top5_counts_rank() -> None:
    logits = torch.arange(10.0).repeat(2, 1)  # class 9 best, class 0 worst
    m = summarize(_counts(logits, torch.tensor([5, 4])), class_counts=[200] * 10)
    assert m["top5"] == 50.0 and m["top1"] == 0.0


def test_empty_group_is_null_and_boundaries() -> None:
    groups = shot_groups([101, 100, 20, 19])
    assert groups == {"many": [0], "medium": [1, 2], "few": [3]}
    m = summarize(_counts(torch.eye(2), torch.tensor([0, 1])), class_counts=[500, 300])
    assert m["medium"] is None and m["few"] is None and m["many"] == 100.0


def test_class_without_test_samples_is_null() -> None:
    assert per_class_accuracy(torch.tensor([[2, 0], [0, 0]])) == [100.0, None]


def test_counts_add_up_like_an_all_reduce() -> None:
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(40, 7, generator=g), torch.randint(0, 7, (40,), generator=g)
    whole = _counts(logits, y)
    a, b = _counts(logits[::2], y[::2]), _counts(logits[1::2], y[1::2])
    assert torch.equal(a.confusion + b.confusion, whole.confusion) and int(a.top5 + b.top5) == int(whole.top5)


def test_lam_y_forced_counts_changed_factors() -> None:
    lam_x = torch.tensor([0.3, 0.3, 0.8, 0.5])
    lam_y = torch.tensor([0.0, 0.3, 1.0, 0.5])
    assert int(lam_y_forced(lam_x, lam_y)) == 2
