"""The partner axis: frequencies against q ∝ n^(1+e) and p ∝ n^e, reproducibility, and distinct DDP ranks and workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from remixup.errors import InvalidParameterError, InvalidTypeError
from remixup.mixing.partners import (
    ClassWeightedSampler,
    PartnerBatches,
    class_draw_probs,
    in_batch_partners,
    partner_generator,
    partner_loader,
)
from remixup.seeding import augment_stream, file_stream, mix_stream, partner_stream

COUNTS = [500, 120, 40, 9]


def _labels(counts=COUNTS) -> torch.Tensor:
    # shuffled, so that the sampler cannot rely on sorted labels
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(3))]


def _within_sampling_error(freq: np.ndarray, p: np.ndarray, n: int, z: float = 5.0) -> None:
    sigma = np.sqrt(p * (1 - p) / n)
    assert np.all(np.abs(freq - p) <= z * sigma + 1e-12), (freq, p, sigma)


@pytest.mark.parametrize("exponent", [-1.0, -0.5, 0.0, 0.5])
def test_class_weighted_frequencies_follow_the_sample_weights(exponent: float) -> None:
    """10^5 draws: class frequencies within 5σ of n_c·n_c^e / Σ (sample weight n^e), i.e. q ∝ n^(1+e)."""
    n = 100_000
    sampler = ClassWeightedSampler(_labels(), exponent=exponent, num_samples=n, seed=1)
    y = _labels()[sampler.indices()]
    freq = np.bincount(y.numpy(), minlength=4) / n
    counts = np.array(COUNTS, dtype=np.float64)
    expected = counts * counts**exponent / (counts * counts**exponent).sum()  # independent of class_draw_probs
    _within_sampling_error(freq, expected, n)
    assert torch.allclose(class_draw_probs(COUNTS, exponent), torch.from_numpy(expected))


def test_class_weighted_draws_samples_uniformly_within_a_class() -> None:
    labels = _labels()
    idx = ClassWeightedSampler(labels, exponent=-1.0, num_samples=100_000, seed=0).indices()
    rare = idx[labels[idx] == 3]  # 9 samples of the rarest class, ~25,000 draws
    hits = np.bincount(rare.numpy(), minlength=labels.numel())[(labels == 3).numpy()]
    _within_sampling_error(hits / rare.numel(), np.full(9, 1 / 9), rare.numel())


@pytest.mark.parametrize("exponent", [-0.5, -0.1, 0.0])
def test_in_batch_partner_frequencies_follow_n_to_the_t(exponent: float) -> None:
    """p(j) ∝ n_{y_j}^t for each position j of a fixed batch, over 10^5 draws with replacement."""
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3])
    counts = torch.tensor(COUNTS)
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([in_batch_partners(y, counts, exponent, generator=g) for _ in range(12_500)])
    assert draws.numel() == 100_000
    freq = np.bincount(draws.numpy(), minlength=8) / draws.numel()
    w = np.array(COUNTS, dtype=np.float64)[y.numpy()] ** exponent
    _within_sampling_error(freq, w / w.sum(), draws.numel())


def test_same_seed_same_partners_and_distinct_ranks_and_epochs() -> None:
    labels = _labels()
    a = ClassWeightedSampler(labels, seed=5, rank=0)
    b = ClassWeightedSampler(labels, seed=5, rank=0)
    assert torch.equal(a.indices(), b.indices())
    r1 = ClassWeightedSampler(labels, seed=5, rank=1)
    assert not torch.equal(a.indices(), r1.indices())  # each DDP rank its own stream
    b.set_epoch(1)
    assert not torch.equal(a.indices(), b.indices())
    assert list(a) == a.indices().tolist() and len(a) == labels.numel()
    g1, g2 = partner_generator(5, 0, rank=0), partner_generator(5, 0, rank=0)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.equal(in_batch_partners(y, torch.tensor(COUNTS), generator=g1), in_batch_partners(y, torch.tensor(COUNTS), generator=g2))


def test_partner_stream_is_a_stream_of_its_own() -> None:
    for rank in range(8):
        s = partner_stream(rank)
        assert s not in {augment_stream(r) for r in range(8)} | {mix_stream(r) for r in range(8)} | {0, 7}
        assert s < file_stream(0)
    assert partner_generator(0, 0, rank=0, worker=1).initial_seed() != partner_generator(0, 0, rank=0, worker=0).initial_seed()


def test_partner_batches_differ_across_dataloader_workers_and_repeat_with_the_seed() -> None:
    labels = _labels()
    data = TensorDataset(torch.arange(labels.numel()).float()[:, None], labels)

    def first_batches(workers: int) -> list[torch.Tensor]:
        loader = partner_loader(data, labels, batch_size=16, seed=2, num_workers=workers)
        it = iter(loader)
        return [next(it)[0].flatten() for _ in range(4)]

    two = first_batches(2)  # batches alternate between worker 0 and worker 1
    assert not torch.equal(two[0], two[1])
    assert all(torch.equal(a, b) for a, b in zip(two, first_batches(2), strict=True))
    main = first_batches(0)
    assert torch.equal(main[0], two[0])  # worker 0 draws the main process's stream
    x, y = next(iter(DataLoader(PartnerBatches(data, labels, batch_size=8), batch_size=None)))
    assert x.shape == (8, 1) and torch.equal(labels[x.flatten().long()], y)


def test_sampler_errors() -> None:
    with pytest.raises(InvalidTypeError, match="`labels` of `ClassWeightedSampler` must be a 1-D int tensor"):
        ClassWeightedSampler(torch.zeros(3))
    with pytest.raises(InvalidParameterError, match="`num_samples` of `ClassWeightedSampler` must be >= 1; got 0"):
        ClassWeightedSampler(_labels(), num_samples=0)
