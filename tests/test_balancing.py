"""Effective number, class weights (RW), class-balanced sampling (RS) and deferral."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from remixup.balancing import ClassBalancedSampler, DeferredSchedule, class_weights, effective_number, epoch_seed

COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_effective_number_formula_and_limits() -> None:
    n = torch.tensor([1.0, 10.0, 5000.0], dtype=torch.float64)
    expected = (1 - 0.9999**n) / (1 - 0.9999)
    assert torch.allclose(effective_number(n), expected, rtol=1e-9)
    assert effective_number([1, 7], beta=0.0).tolist() == [1.0, 1.0]
    assert effective_number([50], beta=1 - 1e-12).item() == pytest.approx(50, rel=1e-6)


@settings(max_examples=50, deadline=None)
@given(counts=st.lists(st.integers(1, 10_000), min_size=1, max_size=50), kind=st.sampled_from(["effective", "inverse", "sqrt"]))
def test_class_weights_sum_to_c_and_favour_small_classes(counts: list[int], kind: str) -> None:
    w = class_weights(counts, kind)
    assert w.dtype == torch.float32 and w.shape == (len(counts),)
    assert w.sum().item() == pytest.approx(len(counts), rel=1e-5)
    order = sorted(range(len(counts)), key=lambda c: counts[c])
    assert all(w[a] >= w[b] - 1e-6 for a, b in zip(order, order[1:], strict=False))


def test_class_weights_values() -> None:
    w = class_weights([1, 3], "inverse")
    assert torch.allclose(w, torch.tensor([1.5, 0.5]))
    w = class_weights([1, 4], "sqrt")
    assert torch.allclose(w, torch.tensor([4 / 3, 2 / 3]))


def test_class_weights_errors() -> None:
    with pytest.raises(ValueError, match="class 1 has 0"):
        class_weights([3, 0])
    with pytest.raises(ValueError, match=r"`kind` of `class_weights` must be one of 'effective', 'inverse', 'sqrt'; got 'log'"):
        class_weights([3, 1], "log")
    with pytest.raises(ValueError, match=r"`beta` of `effective_number` must be in \[0, 1\); got 1.0"):
        class_weights([3, 1], beta=1.0)


def _labels(counts: list[int]) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))


def test_sampler_class_frequencies_follow_weights() -> None:
    counts = [400, 100, 20]
    sampler = ClassBalancedSampler(_labels(counts), counts, kind="inverse", num_samples=30_000, seed=1)
    drawn = torch.bincount(_labels(counts)[sampler.indices()], minlength=3).double() / 30_000
    assert torch.allclose(drawn, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.02)


def test_sampler_is_deterministic_per_epoch_and_shards_one_global_draw() -> None:
    y = _labels(COUNTS)
    single = ClassBalancedSampler(y, COUNTS, num_samples=1001, seed=5)
    single.set_epoch(2)
    again = ClassBalancedSampler(y, COUNTS, num_samples=1001, seed=5)
    assert torch.equal(single.indices(), again.indices(2))
    assert not torch.equal(single.indices(2), single.indices(3))
    shards = [ClassBalancedSampler(y, COUNTS, num_samples=1001, seed=5, rank=r, world_size=4) for r in range(4)]
    assert all(len(s) == math.ceil(1001 / 4) for s in shards)
    glued = torch.stack([s.indices(2) for s in shards], dim=1).reshape(-1)  # interleave back
    full = ClassBalancedSampler(y, COUNTS, num_samples=len(glued), seed=5).indices(2)
    assert torch.equal(glued, full)
    assert list(iter(shards[0])) == shards[0].indices().tolist()


def test_sampler_errors() -> None:
    y = _labels([3, 2])
    with pytest.raises(ValueError, match=r"`class_counts` of `ClassBalancedSampler` must match the labels; got \[3, 3\]"):
        ClassBalancedSampler(y, [3, 3])
    with pytest.raises(ValueError, match=r"`labels` of `ClassBalancedSampler` must hold class indices in \[0, 1\]"):
        ClassBalancedSampler(torch.tensor([0, 1, 2]), [1, 1])
    with pytest.raises(ValueError, match=r"`rank` of `ClassBalancedSampler` must be in \[0, 1\]; got 2"):
        ClassBalancedSampler(y, [3, 2], rank=2, world_size=2)


def test_deferred_schedule() -> None:
    drw = DeferredSchedule(160)
    assert not drw.active(159) and drw.active(160) and drw(199)
    assert drw.weights(10, COUNTS) is None
    assert torch.equal(drw.weights(160, COUNTS), class_weights(COUNTS))
    assert DeferredSchedule().active(0)
    with pytest.raises(ValueError, match="`start_epoch` of `DeferredSchedule` must be >= 0"):
        DeferredSchedule(-1)


def test_epoch_seed_streams_differ() -> None:
    assert epoch_seed(0, 1) != epoch_seed(0, 2) != epoch_seed(1, 1)
    assert epoch_seed(0, 1, 0) != epoch_seed(0, 1, 1)
    assert epoch_seed(3, 4) == epoch_seed(3, 4)
