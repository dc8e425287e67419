"""Class-balanced re-weighting (RW) and re-sampling (RS), and their deferred variants (DRW, DRS).

The effective number of samples of a class with n samples (Cui et al., CVPR 2019, arXiv 1901.05555) is

    E(n) = (1 - β^n) / (1 - β),        β ∈ [0, 1),

which grows like n for small n and saturates at 1 / (1 - β). β = 0 gives E(n) = 1 (no re-balancing); β → 1 gives
E(n) → n (inverse frequency). The paper (Remix, arXiv 2007.03943) uses β = 0.9999.

* RW: class weights w_c ∝ 1 / E(n_c), normalised so that Σ_c w_c = C.
* RS: each training index is drawn (with replacement) with probability ∝ w_{y_i}; under DDP every rank draws the
  same global list from the epoch seed and keeps its own shard of it, so the ranks together see one draw.
* DRW / DRS: plain training until ``start_epoch``, then RW / RS (:class:`DeferredSchedule`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from remixup import seeding
from remixup._validation import check_choice, check_class_counts, check_labels, check_number
from remixup.errors import InvalidParameterError, InvalidTypeError
from remixup.seeding import epoch_seed

WEIGHT_KINDS = ("effective", "inverse", "sqrt")


def class_log_prior(class_counts: Any) -> torch.Tensor:
    """The log training prior ``log π_c = log(n_c / Σ_k n_k)`` (C,) float32, from positive class counts (C,)."""
    counts = check_class_counts(class_counts, owner="class_log_prior")
    return (counts / counts.sum()).log().to(torch.float32)


def effective_number(n: Any, beta: float = 0.9999) -> torch.Tensor:
    """Effective number of samples E(n) = (1 - β^n) / (1 - β), elementwise.

    Args:
        n: class sizes, any shape (a sequence or a tensor); non-negative.
        beta: β in [0, 1). β = 0 gives 1 for every n > 0.

    Returns:
        float64 tensor of the same shape as ``n``.
    """
    beta = check_number(beta, "beta", owner="effective_number", low=0.0, high=1.0, high_open=True)
    n = torch.as_tensor(np.asarray(n, dtype=np.float64))
    if beta == 0.0:
        return torch.where(n > 0, torch.ones_like(n), torch.zeros_like(n))
    # -expm1(n log β) = 1 - β^n without cancellation when β is close to 1.
    return -torch.expm1(n * math.log(beta)) / (1.0 - beta)


def class_weights(class_counts: Any, kind: str = "effective", beta: float = 0.9999) -> torch.Tensor:
    """Per-class weights for re-weighting (RW), normalised to sum to C.

    w_c ∝ 1 / E(n_c) for ``"effective"``, 1 / n_c for ``"inverse"`` and 1 / sqrt(n_c) for ``"sqrt"``; then
    w ← C · w / Σ w.

    Args:
        class_counts: (C,) positive training counts per class.
        kind: ``"effective"`` | ``"inverse"`` | ``"sqrt"``.
        beta: β of the effective number (only used by ``"effective"``), in [0, 1).

    Returns:
        float32 tensor (C,) with Σ_c w_c = C.

    Raises:
        ValueError: an empty class, an unknown ``kind`` or β outside [0, 1).
    """
    counts = check_class_counts(class_counts, owner="class_weights")
    check_choice(kind, "kind", WEIGHT_KINDS, owner="class_weights")
    if kind == "effective":
        raw = 1.0 / effective_number(counts, beta)
    elif kind == "inverse":
        raw = 1.0 / counts
    else:
        raw = 1.0 / counts.sqrt()
    return (raw * (counts.numel() / raw.sum())).to(torch.float32)


class ClassBalancedSampler(Sampler[int]):
    """Class-balanced re-sampling (RS): indices drawn with replacement, P(i) ∝ w_{y_i}.

    With ``kind="effective"`` a class's total probability is ∝ n_c / E(n_c) (the per-sample weight times its size);
    with ``"inverse"`` every class is equally likely. Each epoch's draw depends only on (``seed``, epoch): every
    rank of a DDP job draws the same global list of ``num_samples`` (rounded up to a multiple of ``world_size``)
    and keeps the indices at positions ``rank, rank + world_size, ...``.

    It is a ``torch.utils.data.Sampler`` and is used like ``DistributedSampler``: pass it as
    ``DataLoader(dataset, sampler=sampler, ...)`` (no ``shuffle``) and call ``sampler.set_epoch(epoch)`` before each
    epoch; a resumed run that calls ``set_epoch`` gets the same indices as the uninterrupted one, and the ranks'
    shards together are one draw. ``rank``/``world_size`` left ``None`` are read from ``torch.distributed`` when a
    process group is initialised (else 0 and 1).

    Args:
        labels: (N,) int class index of every training sample.
        class_counts: (C,) training counts per class (must match ``labels``).
        kind: ``"effective"`` | ``"inverse"`` | ``"sqrt"``, as in :func:`class_weights`.
        beta: β of the effective number, in [0, 1).
        num_samples: size of one epoch's global draw; default N.
        rank: this process's rank in [0, world_size); ``None``: torch.distributed's rank, or 0.
        world_size: number of processes; ``None``: torch.distributed's world size, or 1.
        seed: base seed; epoch e draws from a generator seeded by (seed, e).

    Example:
        >>> sampler = ClassBalancedSampler(y, counts)
        >>> sampler.set_epoch(3); idx = sampler.indices()  # (len(sampler),) int64
    """

    def __init__(
        self,
        labels: Any,
        class_counts: Any,
        *,
        kind: str = "effective",
        beta: float = 0.9999,
        num_samples: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        owner = "ClassBalancedSampler"
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if world_size is None:
            world_size = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        self.class_counts = check_class_counts(class_counts, owner=owner)
        given = torch.as_tensor(labels).detach()
        if given.dtype.is_floating_point or given.dtype == torch.bool:  # 0.7 would silently become class 0
            raise InvalidTypeError(f"`labels` of `{owner}` must be integer class indices; got {given.dtype}")
        self.labels = given.to("cpu", torch.int64)
        check_labels(self.labels, self.class_counts.numel(), name="labels", owner=owner)
        actual = torch.bincount(self.labels, minlength=self.class_counts.numel()).to(torch.float64)
        if not torch.equal(actual, self.class_counts):
            raise InvalidParameterError(
                f"`class_counts` of `{owner}` must match the labels; got {self.class_counts.long().tolist()} "
                f"but the labels count {actual.long().tolist()}"
            )
        self.kind = check_choice(kind, "kind", WEIGHT_KINDS, owner=owner)
        self.beta = check_number(beta, "beta", owner=owner, low=0.0, high=1.0, high_open=True)
        n = self.labels.numel()
        self.num_samples = (
            n if num_samples is None else int(check_number(num_samples, "num_samples", owner=owner, low=1, integer=True))
        )
        self.world_size = int(check_number(world_size, "world_size", owner=owner, low=1, integer=True))
        self.rank = int(check_number(rank, "rank", owner=owner, low=0, high=self.world_size - 1, integer=True))
        self.seed = int(check_number(seed, "seed", owner=owner, integer=True))
        self.epoch = 0

    @property
    def sample_weights(self) -> torch.Tensor:
        """(N,) float64 unnormalised probability of each training index."""
        return class_weights(self.class_counts, self.kind, self.beta).to(torch.float64)[self.labels]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draw :meth:`indices` and iteration return."""
        self.epoch = int(check_number(epoch, "epoch", owner="ClassBalancedSampler", low=0, integer=True))

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.world_size)

    def indices(self, epoch: int | None = None) -> torch.Tensor:
        """This rank's shard of the epoch's global draw, (len(self),) int64 on the CPU."""
        epoch = self.epoch if epoch is None else epoch
        total = len(self) * self.world_size
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, stream=seeding.SAMPLER))
        draw = torch.multinomial(self.sample_weights, total, replacement=True, generator=g)
        return draw[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())


class DeferredSchedule:
    """When a deferred re-weighting (DRW) or re-sampling (DRS) switches on.

    Epochs count from 0. ``start_epoch = 0`` means from the start (RW, RS); the paper defers to epoch 250 of 300,
    LDAM-DRW to epoch 160 of 200 (the first epoch after the learning-rate decay at 160 when counting from 0 is 160).

    Args:
        start_epoch: first epoch (0-based) at which the balancing is active.
    """

    def __init__(self, start_epoch: int = 0) -> None:
        self.start_epoch = check_number(start_epoch, "start_epoch", owner="DeferredSchedule", low=0, integer=True)

    def active(self, epoch: int) -> bool:
        """True when ``epoch`` (0-based) is at or after ``start_epoch``."""
        return epoch >= self.start_epoch

    __call__ = active

    def weights(
        self, epoch: int, class_counts: Sequence[float] | torch.Tensor, *, kind: str = "effective", beta: float = 0.9999
    ) -> torch.Tensor | None:
        """The class weights for ``epoch``: :func:`class_weights` when active, else ``None`` (unweighted)."""
        return class_weights(class_counts, kind, beta) if self.active(epoch) else None

    def __repr__(self) -> str:
        return f"DeferredSchedule(start_epoch={self.start_epoch})"
