"""Imbalance profiles: exact per-class counts, properties of the math, and which samples are kept."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from remixup.data import ArrayDataset, describe_counts, make_imbalanced, profile_counts
from remixup.errors import DataError


def test_cifar10_longtail_100_matches_spec() -> None:
    counts = profile_counts(10, 5000, "longtail", ratio=100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(counts) == 12406


def test_cifar100_longtail_100_total_matches_spec() -> None:
    assert sum(profile_counts(100, 500, "longtail", ratio=100)) == 10847


def test_step_profile_keeps_first_ceil_share() -> None:
    assert profile_counts(10, 5000, "step", ratio=100, mu=0.5) == [5000] * 5 + [50] * 5
    # ⌈(1 − 0.25)·10⌉ = 8 majority classes
    assert profile_counts(10, 500, "step", ratio=10, mu=0.25) == [500] * 8 + [50] * 2
    assert profile_counts(3, 100, "none") == [100, 100, 100]


@settings(max_examples=60, deadline=None)
@given(
    num_classes=st.integers(2, 200),
    n_max=st.integers(1, 6000),
    ratio=st.floats(1.0, 500.0, allow_nan=False),
)
def test_longtail_properties(num_classes: int, n_max: int, ratio: float) -> None:
    if math.floor(n_max / ratio) == 0 or math.floor(n_max * ratio ** -1.0) == 0:
        with pytest.raises(DataError, match="zero samples"):
            profile_counts(num_classes, n_max, "longtail", ratio=ratio)
        return
    counts = profile_counts(num_classes, n_max, "longtail", ratio=ratio)
    assert len(counts) == num_classes
    assert counts[0] == n_max
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False))
    assert counts[-1] == math.floor(n_max * ratio**-1.0)
    for c, n in enumerate(counts):
        exact = n_max * ratio ** (-c / (num_classes - 1))
        assert n <= exact < n + 1


@settings(max_examples=60, deadline=None)
@given(
    num_classes=st.integers(1, 100),
    n_max=st.integers(10, 1000),
    ratio=st.floats(1.0, 10.0),
    mu=st.floats(0.01, 0.99),
)
def test_step_properties(num_classes: int, n_max: int, ratio: float, mu: float) -> None:
    counts = profile_counts(num_classes, n_max, "step", ratio=ratio, mu=mu)
    n_major = math.ceil((1 - mu) * num_classes)
    assert counts == [n_max] * n_major + [math.floor(n_max / ratio)] * (num_classes - n_major)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratio": 0.5}, r"`ratio` of `profile_counts` must be >= 1; got 0.5"),
        ({"mu": 0.0, "profile": "step"}, r"`mu` of `profile_counts` must be in \(0, 1\); got 0.0"),
        ({"mu": 1.0, "profile": "step"}, r"`mu` of `profile_counts` must be in \(0, 1\); got 1.0"),
        ({"profile": "zipf"}, r"`profile` of `profile_counts` must be one of 'longtail', 'step', 'none'"),
    ],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    kwargs = {"profile": "longtail", **kwargs}
    with pytest.raises(ValueError, match=match):
        profile_counts(10, 100, kwargs.pop("profile"), **kwargs)


def _balanced(per_class: int = 60, num_classes: int = 5, *, interleave: bool = False) -> ArrayDataset:
    """Each sample's value encodes (class, position within class) = 1000·c + k."""
    y = np.repeat(np.arange(num_classes), per_class)
    k = np.tile(np.arange(per_class), num_classes)
    x = (1000 * y + k).astype(np.float32)[:, None]
    if interleave:  # another global order, same order within each class
        order = np.lexsort((y, k))
        x, y = x[order], y[order]
    return ArrayDataset(x, y)


def test_make_imbalanced_counts_and_type() -> None:
    ds = _balanced()
    sub = make_imbalanced(ds, "longtail", ratio=10, subset_seed=0)
    assert isinstance(sub, ArrayDataset)
    assert sub.class_counts.tolist() == profile_counts(5, 60, "longtail", ratio=10)
    assert sub.classes == ds.classes
    assert make_imbalanced(ds, "none") is ds


def test_subset_depends_only_on_position_within_class_and_seed() -> None:
    chosen = lambda ds, seed: set(make_imbalanced(ds, "longtail", ratio=10, subset_seed=seed).x[:, 0].tolist())  # noqa: E731
    a, b = _balanced(), _balanced(interleave=True)
    assert chosen(a, 3) == chosen(b, 3)
    assert chosen(a, 3) == chosen(a, 3)
    assert chosen(a, 3) != chosen(a, 4)


def test_subset_matches_ldam_procedure() -> None:
    """One RandomState(seed) shuffles each class's positions in label order; the first n_c are kept."""
    ds = _balanced(per_class=40, num_classes=4)
    sub = make_imbalanced(ds, "longtail", ratio=5, subset_seed=7)
    rng = np.random.RandomState(7)
    expected = []
    for c, n in enumerate(profile_counts(4, 40, ratio=5)):
        idx = np.where(ds.y.numpy() == c)[0]
        rng.shuffle(idx)
        expected += idx[:n].tolist()
    assert torch.equal(sub.x, ds.x[expected])


def test_make_imbalanced_errors() -> None:
    ds = _balanced(per_class=20)
    with pytest.raises(DataError, match=r"`ratio`=50 leaves class 4 with zero samples \(n_max=20\)"):
        make_imbalanced(ds, "longtail", ratio=50)
    with pytest.raises(ValueError, match="`ratio` of `make_imbalanced` must be >= 1"):
        make_imbalanced(ds, "longtail", ratio=0.9)
    with pytest.raises(ValueError, match=r"`mu` of `make_imbalanced` must be in \(0, 1\)"):
        make_imbalanced(ds, "step", mu=1.5)
    empty = ArrayDataset(np.zeros((4, 1), np.float32), [0, 0, 2, 2], ["a", "b", "c"], source="mini.npz")
    with pytest.raises(DataError, match=r"class 1 \('b'\) has zero samples in mini.npz"):
        make_imbalanced(empty, "longtail", ratio=1)


def test_describe_counts() -> None:
    assert describe_counts([5000, 101, 100, 20, 19, 1]) == {"many": 2, "medium": 2, "few": 2}
