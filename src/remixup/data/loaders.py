"""Loaders: the whole small-image training set as one tensor on the device, and the DataLoader path for files.

:class:`TensorLoader` keeps x (uint8 images or float vectors) and y on the training device and, each epoch,
permutes indices (or takes them from a sampler), gathers a batch with one index operation and augments it on the
device. No worker processes, no per-image Python. Its randomness is derived from (seed, epoch), so a resumed run
draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader

from remixup import seeding
from remixup._validation import check_number
from remixup.data.datasets import ImageFileDataset
from remixup.errors import DataError, InvalidTypeError
from remixup.seeding import augment_stream, epoch_seed


class IndexSampler(Protocol):
    """What :class:`TensorLoader` needs from a sampler (e.g. :class:`~remixup.balancing.ClassBalancedSampler`)."""

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[int]: ...

    def __len__(self) -> int: ...


class TensorLoader:
    """Batches from tensors already on the training device.

    Each epoch the order is, in priority: the sampler's indices (e.g. class-balanced re-sampling), else a random
    permutation of 0..N−1 (``shuffle=True``), else 0..N−1. With ``world_size > 1`` and no sampler, every rank
    computes the same order and keeps positions ``rank, rank + world_size, ...`` (after padding the order by
    wrapping around so all ranks get the same number of batches); a sampler is expected to shard itself.

    Args:
        x: (N, H, W, C) uint8 images or (N, D) float vectors, on the training device.
        y: (N,) int64 labels on the same device.
        batch_size: B ≥ 1.
        shuffle: permute each epoch.
        drop_last: drop a last batch smaller than B.
        augment: ``augment(x_batch, generator) -> float (B, …)``, e.g. :class:`~remixup.data.augment.BatchAugment`;
            without it a batch is returned as stored (floats) or converted to float32 (uint8).
        sampler: optional index sampler with ``set_epoch``; may be replaced between epochs (deferred re-sampling).
        seed: base seed; epoch e shuffles and augments from generators seeded by (seed, e).
        generator: alternative to ``seed``: its ``initial_seed()`` becomes the base seed (its state is not used).
        rank, world_size: this process's place in a DDP job.

    Iterates ``(x_batch float32, y_batch int64)``; call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
        sampler: IndexSampler | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        owner = "TensorLoader"
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise InvalidTypeError(f"`x` and `y` of `{owner}` must be tensors; got {type(x).__name__} and {type(y).__name__}")
        if y.ndim != 1 or x.shape[0] != y.shape[0] or x.device != y.device:
            raise DataError(
                f"`x` and `y` of `{owner}` must hold N samples and N labels on one device; got {tuple(x.shape)} on {x.device}, {tuple(y.shape)} on {y.device}"
            )
        if x.shape[0] == 0:
            raise DataError(f"`x` of `{owner}` is empty; the dataset has no samples")
        self.x = x
        self.y = y
        self.batch_size = check_number(batch_size, "batch_size", owner=owner, low=1, integer=True)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.augment = augment
        self.sampler = sampler
        # A generator only supplies the base seed: every epoch's draws are derived from (seed, epoch), so that a
        # resumed run does not depend on how far a stateful generator had advanced.
        self.seed = generator.initial_seed() if generator is not None else check_number(seed, "seed", owner=owner, integer=True)
        self.world_size = check_number(world_size, "world_size", owner=owner, low=1, integer=True)
        self.rank = check_number(rank, "rank", owner=owner, low=0, high=self.world_size - 1, integer=True)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order and augmentation the next iteration uses."""
        self.epoch = check_number(epoch, "epoch", owner="TensorLoader", low=0, integer=True)

    def _num_indices(self) -> int:
        if self.sampler is not None:
            return len(self.sampler)
        return math.ceil(self.x.shape[0] / self.world_size)

    def __len__(self) -> int:
        n = self._num_indices()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def indices(self) -> torch.Tensor:
        """This epoch's (and rank's) order of sample indices, int64 on the CPU."""
        n = self.x.shape[0]
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
            indices = getattr(self.sampler, "indices", None)
            return indices() if callable(indices) else torch.as_tensor(list(self.sampler), dtype=torch.int64)
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=seeding.ORDER))
            order = torch.randperm(n, generator=g)
        else:
            order = torch.arange(n)
        if self.world_size > 1:
            total = math.ceil(n / self.world_size) * self.world_size
            order = torch.cat([order, order[: total - n]])[self.rank :: self.world_size]
        return order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.indices().to(self.x.device)
        # Each DDP rank augments from its own stream (rank 0 keeps stream 1, the single-process one), so the i-th
        # sample of every rank does not get the same crop and flip.
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=augment_stream(self.rank)))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            xb, yb = self.x.index_select(0, idx), self.y.index_select(0, idx)
            if self.augment is not None:
                xb = self.augment(xb, g)
            elif not xb.dtype.is_floating_point:
                xb = xb.to(torch.float32)
            yield xb, yb


class FileLoader:
    """Training batches of an image-file dataset, decoded and augmented by DataLoader workers.

    The order follows :class:`TensorLoader`'s rules: the sampler's indices when one is set (deferred re-sampling may
    set or clear it between epochs), else a permutation seeded by (seed, epoch), sharded over DDP ranks at positions
    ``rank, rank + world_size, ...``; a last short batch is dropped. Each file's augmentation is seeded by
    (dataset seed, epoch, index), so batches do not depend on the number of workers.

    Args:
        dataset: the training files, with their training transform set.
        batch_size: B ≥ 1 per process. device: where batches go. seed: base seed of the order.
        rank, world_size: this process's place in a DDP job. num_workers: DataLoader worker processes.
    """

    def __init__(self, dataset: ImageFileDataset, *, batch_size: int, device: torch.device, seed: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 4) -> None:  # fmt: skip
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.sampler: Any = None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else math.ceil(len(self.dataset) / self.world_size)
        return n // self.batch_size

    def indices(self) -> torch.Tensor:
        """This epoch's (and rank's) order of file indices, int64 on the CPU."""
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
            return self.sampler.indices()
        n = len(self.dataset)
        order = torch.randperm(
            n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=seeding.ORDER))
        )
        total = math.ceil(n / self.world_size) * self.world_size
        return torch.cat([order, order[: total - n]])[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, b = self.indices(), self.batch_size
        batches = [order[i : i + b].tolist() for i in range(0, len(self) * b, b)]
        self.dataset.set_epoch(self.epoch)
        # its own generator: the DataLoader draws the workers' base seed from it, never from torch's global one
        seeds = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=seeding.ORDER))
        loader: DataLoader[Any] = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,  # type: ignore[arg-type]
                                             pin_memory=self.device.type == "cuda", generator=seeds)  # fmt: skip
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


def make_image_loader(
    dataset: ImageFileDataset,
    *,
    batch_size: int,
    shuffle: bool = True,
    drop_last: bool = False,
    sampler: Any = None,
    num_workers: int = 4,
    seed: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """The conventional DataLoader path for large images (iNaturalist, image folders), with worker processes.

    The dataset's transform (e.g. :class:`~remixup.data.augment.RandomResizedCropFlip`) draws from a per-sample
    generator seeded by (dataset.seed, epoch, index), so augmentation does not depend on the worker count. Call
    ``dataset.set_epoch(e)`` and, with a sampler, ``sampler.set_epoch(e)`` before each epoch; the shuffle order
    comes from a generator seeded by ``seed``. Workers are not persistent, so they see the new epoch.

    Returns:
        A DataLoader yielding (x float32 (B, 3, S, S), y int64 (B,)).
    """
    owner = "make_image_loader"
    check_number(batch_size, "batch_size", owner=owner, low=1, integer=True)
    num_workers = check_number(num_workers, "num_workers", owner=owner, low=0, integer=True)
    g = torch.Generator().manual_seed(int(seed))
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=g,
        persistent_workers=False,
    )
