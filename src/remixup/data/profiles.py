"""Imbalance profiles: which per-class counts to keep, and which samples.

Long-tailed (exponential), for c = 0..C-1:

    n_c = ⌊n_max · ρ^(−c/(C−1))⌋

Step with a share μ of minority classes: the first ⌈(1−μ)·C⌉ classes keep n_max, the rest ⌊n_max/ρ⌋.

CIFAR-10 (n_max = 5000), long-tailed, ρ = 100: [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50] = 12,406 images;
CIFAR-100 (n_max = 500): 10,847 images.

Which samples are kept (LDAM-DRW's procedure, so the same images come out of the same files): one
``numpy.random.RandomState(subset_seed)`` shuffles, class by class in label order, the list of that class's
positions and the first n_c are kept. The choice depends only on each sample's position within its class, never on
the global order of the file (a class-sorted npz and the official pickle batches
give the same subset), and never on the training seed.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import numpy as np

from remixup._validation import check_choice, check_number
from remixup.errors import DataError

PROFILES = ("longtail", "step", "none")

D = TypeVar("D")


def profile_counts(
    num_classes: int, n_max: int, profile: str = "longtail", *, ratio: float = 100.0, mu: float = 0.5
) -> list[int]:
    """Target per-class counts of an imbalance profile.

    Args:
        num_classes: C ≥ 1.
        n_max: size of the largest (first) class.
        profile: ``"longtail"`` | ``"step"`` | ``"none"`` (every class n_max).
        ratio: imbalance ratio ρ = n_max / n_min, ≥ 1.
        mu: share μ of minority classes for ``"step"``, in (0, 1).

    Returns:
        C non-negative integers, non-increasing.

    Raises:
        ValueError: ρ < 1, μ outside (0, 1), an unknown profile.
        DataError: a class would be left with zero samples (ρ larger than n_max).
    """
    owner = "profile_counts"
    check_choice(profile, "profile", PROFILES, owner=owner)
    num_classes = check_number(num_classes, "num_classes", owner=owner, low=1, integer=True)
    n_max = check_number(n_max, "n_max", owner=owner, low=1, integer=True)
    ratio = check_number(ratio, "ratio", owner=owner, low=1.0)
    mu = check_number(mu, "mu", owner=owner, low=0.0, high=1.0, low_open=True, high_open=True)
    if profile == "none":
        counts = [n_max] * num_classes
    elif profile == "longtail":
        if num_classes == 1:
            counts = [n_max]
        else:
            # LDAM-DRW evaluates n_max·(1/ρ)^(c/(C−1)); on CIFAR's sizes and ρ ∈ {10, 50, 100, 200} both floor alike.
            counts = [int(math.floor(n_max * ratio ** (-c / (num_classes - 1)))) for c in range(num_classes)]
    else:
        n_major = math.ceil((1.0 - mu) * num_classes)
        counts = [n_max] * n_major + [int(math.floor(n_max / ratio))] * (num_classes - n_major)
    if min(counts) == 0:
        raise DataError(
            f"`ratio`={ratio:g} leaves class {counts.index(0)} with zero samples (n_max={n_max}); use a ratio of at most {n_max}"
        )
    return counts


def make_imbalanced(dataset: D, profile: str = "longtail", ratio: float = 100.0, mu: float = 0.5, subset_seed: int = 0) -> D:
    """The subset of ``dataset`` that follows an imbalance profile: ``dataset.subset(imbalanced_indices(...))``, or
    ``dataset`` itself for ``profile="none"`` (see :func:`imbalanced_indices`)."""
    index = imbalanced_indices(dataset, profile, ratio=ratio, mu=mu, subset_seed=subset_seed)
    return dataset if profile == "none" else dataset.subset(index)  # type: ignore[attr-defined]


def imbalanced_indices(dataset: Any, profile: str = "longtail", *, ratio: float = 100.0, mu: float = 0.5,
                       subset_seed: int = 0) -> np.ndarray:  # fmt: skip
    """The indices of the subset of ``dataset`` that follows an imbalance profile (classes kept).

    n_max is the size of the smallest class of ``dataset`` (for a balanced set such as CIFAR, its class size), so
    every target count can be met exactly. ``profile="none"`` returns ``dataset`` unchanged.

    Args:
        dataset: any dataset with ``labels`` (N,), ``num_classes``, ``class_counts`` and ``subset(indices)``
            (:class:`ArrayDataset`, :class:`ImageFileDataset`).
        profile: ``"longtail"`` | ``"step"`` | ``"none"``.
        ratio: ρ ≥ 1.
        mu: μ in (0, 1), for ``"step"``.
        subset_seed: seed of the per-class choice (independent of the training seed).

    Returns:
        The kept indices into ``dataset`` (int64, class by class): the subset's ``class_counts`` equal
        :func:`profile_counts`; ``profile="none"`` keeps every index in order.

    Raises:
        ValueError: bad ρ, μ, profile or seed.
        DataError: a class of ``dataset`` is empty, or the profile would empty one.
    """
    owner = "make_imbalanced"
    check_choice(profile, "profile", PROFILES, owner=owner)
    check_number(ratio, "ratio", owner=owner, low=1.0)
    check_number(mu, "mu", owner=owner, low=0.0, high=1.0, low_open=True, high_open=True)
    subset_seed = check_number(subset_seed, "subset_seed", owner=owner, low=0, high=2**32 - 1, integer=True)
    available = [int(n) for n in dataset.class_counts.tolist()]
    if not available or min(available) == 0:
        empty = available.index(0) if available else 0
        name = dataset.classes[empty] if getattr(dataset, "classes", None) else str(empty)
        raise DataError(
            f"class {empty} ({name!r}) has zero samples in {getattr(dataset, 'source', 'the dataset')}; "
            "remove the class from the class list or add samples"
        )
    if profile == "none":
        return np.arange(sum(available), dtype=np.int64)
    targets = profile_counts(len(available), min(available), profile, ratio=ratio, mu=mu)
    labels = np.asarray(dataset.labels.cpu().numpy())
    rng = np.random.RandomState(subset_seed)
    keep: list[np.ndarray] = []
    for c, n_c in enumerate(targets):
        positions = np.flatnonzero(labels == c)  # this class's indices, in file order
        rng.shuffle(positions)
        keep.append(positions[:n_c])
    return np.concatenate(keep).astype(np.int64)


def describe_counts(counts: Any) -> dict[str, int]:
    """Number of many-shot (> 100), medium-shot (20–100) and few-shot (< 20) classes."""
    counts = [int(n) for n in counts]
    return {
        "many": sum(n > 100 for n in counts),
        "medium": sum(20 <= n <= 100 for n in counts),
        "few": sum(n < 20 for n in counts),
    }
