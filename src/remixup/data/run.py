"""A run's data behind one interface, whether it is held in memory or read from image files.

:func:`load_run_data` loads a dataset, makes its training split imbalanced and returns a :class:`RunData`:

* :class:`TensorData`: small images (uint8 (N, H, W, C)) and vectors (float (N, D)) on the training device,
  batched by :class:`~remixup.data.loaders.TensorLoader` and augmented on the device;
* :class:`FileData`: image files (iNaturalist, image folders), decoded by DataLoader workers.

A training loop asks both the same three things: the training batches (:meth:`RunData.train_loader`), the
evaluation batches (:meth:`RunData.eval_batches`) and the class counts.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from remixup.data.datasets import ArrayDataset, ImageFileDataset
from remixup.data.loaders import FileLoader, TensorLoader
from remixup.data.profiles import make_imbalanced
from remixup.data.registry import DatasetSpec, get_spec, load_dataset, spec_for_samples, with_image_size
from remixup.data.subset_file import select_subset
from remixup.data.table_preprocess import TablePreprocessor
from remixup.errors import DataError, UserError

__all__ = ["FileData", "RunData", "TensorData", "hold_out", "load_run_data"]

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


class RunData(ABC):
    """What a training run needs of its data.

    Attributes:
        spec: the dataset's registry entry (normalisation, augmentation, default model).
        class_counts: (C,) int64 training samples per class, on the CPU.
        classes: the C class names.
        y_train: (N,) int64 training labels on the CPU (for class-balanced re-sampling).
        input_shape: one sample as the model sees it: (C, H, W) for images, (D,) for vectors.
        data_sha256: which data made the run: the SHA-256 of the full training split as loaded, before any subset
            (:func:`training_data_sha256`); ``None`` when only the evaluation split was loaded.
        has_val: whether there is a validation split: held out of the training split (``data.val_fraction`` > 0),
            or a table's own validation split.
        table: a table's preprocessing fitted on its training split (``None`` for other data); the run folder keeps
            it as ``table.json`` for prediction.
    """

    spec: DatasetSpec
    class_counts: torch.Tensor
    classes: list[str]
    y_train: torch.Tensor
    input_shape: tuple[int, ...]
    data_sha256: str | None = None
    has_val: bool = False
    table: TablePreprocessor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3

    @abstractmethod
    def train_loader(self, *, batch_size: int, seed: int, rank: int, world_size: int, augment: bool,
                     channels_last: bool, workers: int) -> TensorLoader | FileLoader:  # fmt: skip
        """Training batches ``(x float (B, ...), y (B,))`` on the device: epoch order from (seed, epoch), sharded over
        DDP ranks, last short batch dropped. Its ``sampler`` may be set between epochs (re-sampling)."""

    @abstractmethod
    def eval_batches(self, *, batch_size: int, rank: int, world_size: int, channels_last: bool, workers: int,
                     split: str = "test") -> Batches:  # fmt: skip
        """The evaluation split's (``split="val"``: the validation split's) shard ``rank::world_size`` as
        normalised ``(x float (B, ...), y (B,))`` batches."""


class TensorData(RunData):
    """Both splits held as tensors on the training device (uint8 images (N, H, W, C) or float vectors (N, D))."""

    def __init__(self, spec: DatasetSpec, train: ArrayDataset, test: ArrayDataset, device: torch.device,
                 val: ArrayDataset | None = None) -> None:  # fmt: skip
        self.spec = spec
        self.x_train, self.y_train_device = train.x.to(device), train.y.to(device)
        self.x_test, self.y_test = test.x.to(device), test.y.to(device)
        self.has_val = val is not None
        self.x_val, self.y_val = (val.x.to(device), val.y.to(device)) if val is not None else (self.x_test[:0], self.y_test[:0])
        self.y_train = train.y.cpu()
        self.class_counts = train.class_counts.cpu()
        self.classes = list(train.classes)
        x = self.x_train
        self.input_shape = (
            (int(x.shape[3]), int(x.shape[1]), int(x.shape[2])) if x.ndim == 4 else tuple(int(d) for d in x.shape[1:])
        )

    def train_loader(self, *, batch_size: int, seed: int, rank: int, world_size: int, augment: bool,
                     channels_last: bool, workers: int) -> TensorLoader:  # fmt: skip
        return TensorLoader(self.x_train, self.y_train_device, batch_size=batch_size, shuffle=True, drop_last=True,
                            augment=(self.spec.train_augment if augment else self.spec.eval_transform)(channels_last=channels_last),  # type: ignore[arg-type]
                            seed=seed, rank=rank, world_size=world_size)  # fmt: skip

    def eval_batches(self, *, batch_size: int, rank: int, world_size: int, channels_last: bool, workers: int,
                     split: str = "test") -> Batches:  # fmt: skip
        transform = self.spec.eval_transform(channels_last=channels_last)
        x, y = (self.x_val, self.y_val) if split == "val" else (self.x_test, self.y_test)
        index = torch.arange(rank, y.shape[0], world_size, device=y.device)

        def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for start in range(0, index.numel(), batch_size):
                idx = index[start : start + batch_size]
                xb = x[idx]
                yield (transform(xb) if transform is not None else xb.float()), y[idx]  # type: ignore[arg-type]

        return batches()


class FileData(RunData):
    """Both splits as image files, decoded and transformed by DataLoader workers; only the labels are in memory."""

    def __init__(self, spec: DatasetSpec, train: ImageFileDataset, test: ImageFileDataset, device: torch.device, *,
                 augment: bool, seed: int, val: ImageFileDataset | None = None) -> None:  # fmt: skip
        self.spec = spec
        self.device = device
        train.transform = spec.train_augment() if augment else spec.eval_transform()  # type: ignore[assignment]
        test.transform = spec.eval_transform()  # type: ignore[assignment]
        self.has_val, self.val_files = val is not None, val if val is not None else test.subset([])
        self.val_files.transform = spec.eval_transform()  # type: ignore[assignment]
        train.seed = seed
        self.train_files, self.test_files = train, test
        self.y_train = train.labels.cpu()
        self.class_counts = train.class_counts.cpu()
        self.classes = list(train.classes)
        size = spec.image_size or 224
        self.input_shape = (3, size, size)

    def train_loader(self, *, batch_size: int, seed: int, rank: int, world_size: int, augment: bool,
                     channels_last: bool, workers: int) -> FileLoader:  # fmt: skip
        return FileLoader(self.train_files, batch_size=batch_size, device=self.device, seed=seed, rank=rank,
                          world_size=world_size, num_workers=workers)  # fmt: skip

    def eval_batches(self, *, batch_size: int, rank: int, world_size: int, channels_last: bool, workers: int,
                     split: str = "test") -> Batches:  # fmt: skip
        files = self.val_files if split == "val" else self.test_files
        shard = list(range(rank, len(files), world_size))
        return DataLoader(files, batch_size=batch_size, sampler=shard, num_workers=workers)  # type: ignore[arg-type]


def hold_out(dataset: Any, fraction: float, *, seed: int, min_per_class: int = 1) -> tuple[Any, Any]:
    """Split ``dataset`` into (train, validation), stratified: round(fraction · n_c) of each class c, at least
    ``min_per_class``, drawn with a generator seeded by ``seed`` (independent of the training seed).

    Args:
        dataset: an :class:`ArrayDataset` or :class:`ImageFileDataset` (anything with ``labels``, ``num_classes``
            and ``subset(indices)``).
        fraction: share of each class held out, in (0, 1).
        seed: seed of the per-class choice.
        min_per_class: validation samples per class at least.

    Returns:
        ``(train, val)`` of the dataset's type; both keep the sample order of ``dataset``.

    Raises:
        DataError: a class too small to give ``min_per_class`` samples and keep one for training.
    """
    labels = torch.as_tensor(dataset.labels).cpu()
    generator = torch.Generator().manual_seed(int(seed))
    val_index: list[torch.Tensor] = []
    for c in range(dataset.num_classes):
        members = torch.nonzero(labels == c).flatten()
        n = int(members.numel())
        k = max(int(min_per_class), int(fraction * n + 0.5))
        if n and k >= n:
            raise DataError(f"class {dataset.classes[c]!r} has {n} training samples: too few to hold out {k} for "
                            "validation and keep one for training; lower data.val_min_per_class or data.val_fraction")  # fmt: skip
        val_index.append(members[torch.randperm(n, generator=generator)[:k]] if n else members)
    chosen = torch.zeros(labels.numel(), dtype=torch.bool)
    chosen[torch.cat(val_index)] = True
    return dataset.subset(torch.nonzero(~chosen).flatten().numpy()), dataset.subset(torch.nonzero(chosen).flatten().numpy())


def load_run_data(dataset: str, root: str | None, *, device: torch.device, imbalance: str = "none", ratio: float = 1.0,
                  mu: float = 0.5, subset_seed: int = 0, download: bool = False, augment: bool = True, seed: int = 0,
                  train: bool = True, val_fraction: float = 0.0, val_seed: int = 0, val_min_per_class: int = 1,
                  table_options: dict[str, Any] | None = None, indices: str = "", image_size: int = 0) -> RunData:  # fmt: skip
    """Load ``dataset``, make its training split imbalanced (``subset_seed``) and wrap both splits for a run.

    Args:
        dataset, root, download: as :func:`~remixup.data.registry.load_dataset`.
        device: where in-memory data is moved.
        imbalance, ratio, mu, subset_seed: the training split's profile (:func:`~remixup.data.make_imbalanced`).
        augment: random training augmentation (file datasets fix their transform here).
        seed: base seed of the per-file augmentation (file datasets).
        train: ``False`` skips the training split's pixels where it can (evaluation only); the class counts then
            come from the caller.
        val_fraction, val_seed, val_min_per_class: a validation split held out of the imbalanced training split
            (:func:`hold_out`); 0 holds out nothing, and a table then brings its own validation split. The class
            counts are those of what is left for training.
        indices: a subset file (``remixup data --export-indices``; :mod:`remixup.data.subset_file`): the training
            split is exactly its samples instead of the profile's subset; ``""``: the profile's.
        image_size: image files only: side in pixels of the network input (0: the data set's own, 224).

    Raises:
        UserError: the splits disagree on the number of classes; data errors from the loaders.
    """
    spec = with_image_size(get_spec(dataset), image_size)
    augment = augment and train
    table = table_options if dataset.startswith("tabular:") and table_options else {}  # a table's split and columns
    train_set: Any = load_dataset(dataset, root, train=True, download=download, **table) if train else None
    test_set: Any = load_dataset(dataset, root, train=False, download=download, **table)
    if train_set is None:
        train_set, sha = test_set, None
    else:
        sha = training_data_sha256(train_set)
        if indices:
            train_set = select_subset(train_set, indices, sha)
        else:
            train_set = make_imbalanced(train_set, imbalance, ratio=ratio, mu=mu, subset_seed=subset_seed)
    if test_set.num_classes != train_set.num_classes:
        raise UserError(f"{dataset}: the test split has {test_set.num_classes} classes but training has {train_set.num_classes}")
    if spec.name == "npz":
        if tuple(test_set.x.shape[1:]) != tuple(train_set.x.shape[1:]):
            raise DataError(f"{root}: x_train holds samples of shape {tuple(train_set.x.shape[1:])} but x_test of shape "
                            f"{tuple(test_set.x.shape[1:])}; both splits need the same shape")  # fmt: skip
        spec = spec_for_samples(spec, tuple(test_set.x.shape[1:]), source=str(root))
    val_set = None
    if train and val_fraction > 0:
        train_set, val_set = hold_out(train_set, val_fraction, seed=val_seed, min_per_class=val_min_per_class)
    elif train and dataset.startswith("tabular:"):  # a table comes with its own validation split
        val_set = load_dataset(dataset, root, split="val", **table)
    data: RunData
    if isinstance(train_set, ImageFileDataset):
        data = FileData(spec, train_set, test_set, device, augment=augment, seed=seed, val=val_set)
    else:
        data = TensorData(spec, train_set, test_set, device, val=val_set)
    data.data_sha256 = sha
    if dataset.startswith("tabular:"):
        from remixup.data.tabular import load_table_splits

        data.table = load_table_splits(dataset, **table).preprocessor  # cached: nothing is read again
    return data


def training_data_sha256(dataset: ArrayDataset | ImageFileDataset) -> str:
    """SHA-256 of a training split as loaded: the raw bytes of its sample array ``x`` (C-contiguous, in the order
    and dtype it was loaded: uint8 (N, H, W, C) for images) for in-memory data, or of its file paths and labels
    (one ``path\tlabel`` line each) for image files. The labels of in-memory data are not part of it."""
    digest = hashlib.sha256()
    if isinstance(dataset, ImageFileDataset):
        for path, label in zip(dataset.paths, dataset.labels.tolist(), strict=True):
            digest.update(f"{path}\t{label}\n".encode())
    else:
        digest.update(np.ascontiguousarray(dataset.x.numpy()).data)
    return digest.hexdigest()
