"""Metrics from a confusion matrix: top-1/5, per-class, balanced, many/medium/few, λy-forced count."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from remixup.engine import evaluate
from remixup.metrics import MetricCounts, logit_adjustment, per_class_accuracy, shot_groups, summarize


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


def test_logit_adjustment_is_tau_times_the_log_prior() -> None:
    shift = logit_adjustment([900, 90, 10], 1.0)
    assert shift.dtype == torch.float32 and shift.tolist() == pytest.approx([math.log(0.9), math.log(0.09), math.log(0.01)])
    assert logit_adjustment([900, 90, 10], 0.5).tolist() == pytest.approx((0.5 * shift).tolist())
    assert logit_adjustment([900, 90, 10], 0).tolist() == [0.0, 0.0, 0.0]


@settings(max_examples=50, deadline=None)
@given(counts=st.lists(st.integers(1, 5000), min_size=2, max_size=12), k=st.integers(1, 50),
       tau=st.floats(0.0, 3.0, allow_nan=False))  # fmt: skip
def test_logit_adjustment_depends_on_the_prior_only(counts: list[int], k: int, tau: float) -> None:
    """Scaling every count by k leaves the prior, and so the shift, unchanged; rarer classes get a larger boost."""
    shift = logit_adjustment(counts, tau)
    assert torch.allclose(logit_adjustment([k * n for n in counts], tau), shift, atol=1e-5)
    order = sorted(range(len(counts)), key=counts.__getitem__)
    assert all(shift[a] <= shift[b] + 1e-6 for a, b in zip(order, order[1:], strict=False))  # −shift is the boost: larger for rarer classes


@pytest.mark.parametrize(
    ("counts", "tau", "match"),
    [([10, 5], -0.5, "`logit_adjust` must be >= 0"), ([10, 5], float("nan"), "`logit_adjust` must be finite"),
     ([10, 0], 1.0, "`class_counts` .*must be positive for every class; class 1 has 0")],
)  # fmt: skip
def test_logit_adjustment_rejects_bad_input(counts: list[int], tau: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        logit_adjustment(counts, tau)


def test_evaluate_ranks_by_adjusted_logits() -> None:
    """evaluate(logit_adjust=τ) counts argmax(z − τ·log π), and flips a head-biased prediction to the tail class."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)
    counts = torch.tensor([1000, 100, 10])
    with torch.no_grad():
        z = model(x)
    for tau in (0.0, 1.0, 2.0):
        expected = _counts(z - tau * torch.log(counts / counts.sum()), y).confusion.tolist()
        assert evaluate(model, x, y, class_counts=counts, logit_adjust=tau, batch_size=10)["confusion"] == expected
    head_biased = torch.nn.Linear(1, 3)
    with torch.no_grad():
        head_biased.weight.zero_()
        head_biased.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))  # z = (2, 0, 0): the head class wins by 2 < log(1000/10)
    one = (torch.zeros(1, 1), torch.tensor([2]))
    assert evaluate(head_biased, *one, class_counts=counts)["top1"] == 0.0
    assert evaluate(head_biased, *one, class_counts=counts, logit_adjust=1.0)["top1"] == 100.0
