"""Who is mixed with whom: the partner axis of the class-aware mixing family.

A mixing method pairs each sample i of a batch with a partner j, then mixes the inputs (Mixup, CutMix) and the
labels (a label policy). The methods made for class imbalance differ first in how j is chosen:

=================  ==========================================================  ===================================
partner            j is                                                        used by (authors' code)
=================  ==========================================================  ===================================
``permutation``    ``perm[i]`` for a random permutation of the batch            Mixup, CutMix, Remix, MAMix
``class-weighted`` a sample of a second batch drawn from the whole training     CMO (``weighted_alpha = 1``),
                   set with replacement, sample weight ∝ n_y^e                  Balanced-MixUp (class-balanced)
``in-batch``       a sample of the same batch drawn with replacement, weight    UniMix (``tau = −0.5`` on
                   ∝ n_{y_j}^e, independently for each i                        CIFAR-10, ``−0.1`` on CIFAR-100)
=================  ==========================================================  ===================================

The exponent ``e`` is on the class count of the *candidate sample* in both cases (one convention for both). A
class-weighted draw from the whole training set therefore lands in class c with probability
q(c) ∝ n_c · n_c^e = n_c^(1+e): ``e = −1`` (CMO's ``weighted_alpha = 1``, the default) is class-balanced,
``e = 0`` is the training distribution. An in-batch draw picks position j with probability ∝ n_{y_j}^e among the
batch's own samples.

Every draw comes from a ``torch.Generator``. The engine gives the class-weighted partner its own named stream
(:func:`remixup.seeding.partner_stream`, one per DDP rank, re-seeded from (seed, epoch) every epoch); the in-batch
partner draws from the mixing's generator, like the permutation does.

For your own training loop: :class:`ClassWeightedSampler` (a sampler of training indices, the drop-in for CMO's
``WeightedRandomSampler``), :class:`PartnerBatches` / :func:`partner_loader` (an endless stream of second batches,
also from DataLoader workers, each worker drawing from its own stream) and :func:`in_batch_partners`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from remixup._validation import check_choice, check_class_counts, check_generator, check_labels, check_number
from remixup.errors import DataError, InvalidParameterError, InvalidTypeError
from remixup.seeding import epoch_seed, partner_stream

__all__ = [
    "DEFAULT_EXPONENT",
    "PARTNERS",
    "ClassWeightedSampler",
    "PartnerBatches",
    "class_draw_probs",
    "in_batch_partners",
    "partner_generator",
    "partner_loader",
]

PARTNERS = ("permutation", "class-weighted", "in-batch")
DEFAULT_EXPONENT = {"class-weighted": -1.0, "in-batch": -0.5}


def check_partner(partner: str, *, owner: str | None = None) -> str:
    """Validate a partner name (one of :data:`PARTNERS`)."""
    return check_choice(partner, "partner", PARTNERS, owner=owner)


def partner_generator(seed: int, epoch: int, *, rank: int = 0, worker: int | None = None) -> torch.Generator:
    """The generator of the class-weighted partner draws of (seed, epoch, DDP rank, DataLoader worker).

    ``worker=None`` reads the id of the DataLoader worker this runs in (0 in the main process), so that every
    worker of a loader draws its own partners. Worker 0 and the main process share the stream.
    """
    if worker is None:
        info = get_worker_info()
        worker = info.id if info is not None else 0
    s = epoch_seed(seed, epoch, partner_stream(rank))
    if worker:
        s = epoch_seed(s & 0xFFFFFFFF, worker, partner_stream(rank))
    return torch.Generator().manual_seed(s)


def _inverse_cdf(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Indices k drawn with probability ∝ ``weights[k]`` for uniforms ``u`` in [0, 1), on ``weights``' device."""
    cdf = torch.cumsum(weights, dim=0)
    u = u.to(device=cdf.device, dtype=cdf.dtype)
    k = torch.searchsorted(cdf, u * cdf[-1], right=True)
    return k.clamp_(max=weights.numel() - 1)


def class_draw_probs(class_counts: Any, exponent: float = -1.0) -> torch.Tensor:
    """q(c) ∝ n_c^(1+e) (C,) float64: the class probability of one class-weighted draw from the training set.

    Each sample of class c has weight n_c^e, so a class holds n_c · n_c^e of the total weight. Classes without
    samples get 0.
    """
    check_number(exponent, "exponent", owner="class_draw_probs")
    n = torch.as_tensor(class_counts, dtype=torch.float64)
    if n.ndim != 1 or not bool((torch.isfinite(n) & (n >= 0)).all()) or not bool((n > 0).any()):
        raise InvalidParameterError(f"`class_counts` of `class_draw_probs` must be (C,) finite counts >= 0, one of them "
                                    f"positive; got {n.tolist()}")  # fmt: skip
    w = torch.where(n > 0, n * n.clamp(min=1).pow(exponent), torch.zeros_like(n))
    return w / w.sum()


def in_batch_partners(
    y: torch.Tensor, class_counts: torch.Tensor, exponent: float = -0.5, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """UniMix's partners: for every sample, a position j of the same batch drawn with probability ∝ n_{y_j}^e.

    The draws are independent and with replacement (a sample can be its own partner, several can share one).

    Args:
        y: (B,) int64 labels of the batch (any device).
        class_counts: (C,) training samples per class, all positive.
        exponent: e (UniMix's ``tau``: −0.5 for CIFAR-10, −0.1 for CIFAR-100 in its configs; 0 is uniform).
        generator: a CPU generator for the B uniforms (they are moved to ``y``'s device: no host sync).

    Returns:
        (B,) int64 partner positions on ``y``'s device.
    """
    counts = check_class_counts(class_counts, owner="in_batch_partners").to(device=y.device)
    check_labels(y, counts.numel(), owner="in_batch_partners")
    check_number(exponent, "exponent", owner="in_batch_partners")
    check_generator(generator, owner="in_batch_partners")
    u = torch.rand(y.shape[0], generator=generator, dtype=torch.float64)
    return _inverse_cdf(counts[y].pow(exponent), u)


class ClassWeightedSampler:
    """Training indices drawn with replacement, sample weight ∝ n_y^e: the second batch of CMO and Balanced-MixUp.

    Equivalent in distribution to ``WeightedRandomSampler(n[y] ** e, num_samples, replacement=True)``, drawn as a
    class (q(c) ∝ n_c^(1+e), :func:`class_draw_probs`) then a uniform sample of it, so a draw costs O(B log C).
    Each epoch's draws come from :func:`partner_generator` ``(seed, epoch, rank)``: the same seed gives the same
    indices, every DDP rank draws its own (it does not shard one draw: partners need not be disjoint).

    Args:
        labels: (N,) int64 training labels.
        exponent: e; −1 (default) is class-balanced, 0 the training distribution.
        num_samples: indices per epoch (default N).
        seed: base seed. rank: the DDP rank, for its own stream.

    Use it as a DataLoader ``sampler`` (call :meth:`set_epoch` before each epoch), or call :meth:`draw`.
    """

    def __init__(self, labels: torch.Tensor, *, exponent: float = -1.0, num_samples: int | None = None, seed: int = 0,
                 rank: int = 0) -> None:  # fmt: skip
        owner = type(self).__name__
        if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype not in (torch.int64, torch.int32):
            raise InvalidTypeError(f"`labels` of `{owner}` must be a 1-D int tensor; got {type(labels).__name__}")
        if labels.numel() == 0:
            raise DataError(f"`labels` of `{owner}` is empty")
        if labels.min() < 0:
            raise InvalidParameterError(f"`labels` of `{owner}` must be class indices ≥ 0; got {int(labels.min())}")
        check_number(exponent, "exponent", owner=owner)
        self.labels = labels
        self.exponent = exponent
        self.num_samples = labels.numel() if num_samples is None else check_number(num_samples, "num_samples", owner=owner,
                                                                                    low=1, integer=True)  # fmt: skip
        self.seed = check_number(seed, "seed", owner=owner, low=0, integer=True)
        self.rank = check_number(rank, "rank", owner=owner, low=0, integer=True)
        self.epoch = 0
        y = labels.cpu().long()
        self._counts = torch.bincount(y)
        self._order = torch.argsort(y, stable=True)  # the samples grouped by class
        self._start = torch.cumsum(self._counts, 0) - self._counts
        self._q = class_draw_probs(self._counts, exponent)

    @property
    def class_probs(self) -> torch.Tensor:
        """(C,) float64 probability that one draw lands in each class."""
        return self._q

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_number(epoch, "epoch", owner=type(self).__name__, low=0, integer=True)

    def draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` indices (n,) int64 on the CPU from ``generator``."""
        u = torch.rand(2, n, generator=generator, dtype=torch.float64)
        cls = _inverse_cdf(self._q, u[0])
        pos = (u[1] * self._counts[cls]).long().clamp_(max=self._counts[cls] - 1)
        return self._order[self._start[cls] + pos]

    def indices(self) -> torch.Tensor:
        """This epoch's ``num_samples`` indices, int64 on the CPU."""
        return self.draw(self.num_samples, partner_generator(self.seed, self.epoch, rank=self.rank, worker=0))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples


class PartnerBatches(IterableDataset):
    """An endless stream of class-weighted second batches ``(x (B, ...), y (B,))`` from a map-style dataset.

    Wrap it in ``DataLoader(..., batch_size=None, num_workers=k)``: each worker draws from its own stream
    (:func:`partner_generator`), so workers never repeat each other's batches. Call :meth:`set_epoch` before
    creating each epoch's iterator.

    Args:
        dataset: returns ``(x, y)`` for an index (x a tensor; y an int or 0-d tensor).
        labels: (N,) int64 labels of ``dataset`` (read once, so nothing is decoded to find them).
        batch_size: B. exponent: e (−1: class-balanced). seed: base seed. rank: the DDP rank.
    """

    def __init__(self, dataset: Any, labels: torch.Tensor, *, batch_size: int, exponent: float = -1.0, seed: int = 0,
                 rank: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.dataset = dataset
        self.sampler = ClassWeightedSampler(labels, exponent=exponent, seed=seed, rank=rank)
        self.batch_size = check_number(batch_size, "batch_size", owner=type(self).__name__, low=1, integer=True)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = self.sampler.epoch = check_number(epoch, "epoch", owner=type(self).__name__, low=0, integer=True)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = partner_generator(self.sampler.seed, self.epoch, rank=self.sampler.rank)
        while True:
            items = [self.dataset[i] for i in self.sampler.draw(self.batch_size, g).tolist()]
            yield torch.stack([torch.as_tensor(x) for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def partner_loader(dataset: Any, labels: torch.Tensor, *, batch_size: int, exponent: float = -1.0, seed: int = 0,
                   rank: int = 0, epoch: int = 0, num_workers: int = 0, **loader_kw: Any) -> DataLoader:  # fmt: skip
    """A DataLoader of endless class-weighted second batches (:class:`PartnerBatches`) for ``epoch``.

    >>> partners = iter(partner_loader(train_set, train_labels, batch_size=128, seed=0, epoch=epoch))
    >>> for x, y in train_loader:
    ...     x2, y2 = next(partners)
    """
    batches = PartnerBatches(dataset, labels, batch_size=batch_size, exponent=exponent, seed=seed, rank=rank)
    batches.set_epoch(epoch)
    return DataLoader(batches, batch_size=None, num_workers=num_workers, **loader_kw)


class LoaderPartners:
    """The engine's class-weighted partner source: a second training loader whose sampler draws class-weighted.

    ``make_loader(sampler)`` builds the loader (the run's own, so the second batch is augmented, placed and
    decoded as the first). :meth:`next` restarts the loader when it runs out within an epoch.
    """

    def __init__(self, make_loader: Callable[[ClassWeightedSampler], Any], sampler: ClassWeightedSampler) -> None:
        self.loader = make_loader(sampler)
        self.sampler = sampler
        self._it: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)
        self._it = None

    def next(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next second batch, cut to ``batch_size``."""
        for _ in range(2):
            if self._it is None:
                self._it = iter(self.loader)
            try:
                x2, y2 = next(self._it)
                return x2[:batch_size], y2[:batch_size]
            except StopIteration:
                self._it = None
        raise DataError("the class-weighted partner loader yields no batch (its batch size exceeds its samples)")
