"""In-memory and on-disk labelled datasets; both carry their class counts.

* :class:`ArrayDataset`: everything in memory. ``x`` is uint8 (N, H, W, C) for images or float32 (N, D) for
  vectors; ``y`` int64 (N,). Small-image sets (CIFAR, CINIC-10, digits) and the 2-D toys use it, and the
  :class:`~remixup.data.loaders.TensorLoader` moves it to the training device in one piece.
* :class:`ImageFileDataset`: a list of image files decoded with Pillow on access (iNaturalist, image folders),
  for the conventional DataLoader path with worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from remixup.errors import DataError
from remixup.seeding import epoch_seed, file_stream


def _check_labels_in_range(y: torch.Tensor, num_classes: int, source: str) -> None:
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = y[(y < 0) | (y >= num_classes)][0].item()
        raise DataError(
            f"labels out of range in {source}: found label {bad}, but there are {num_classes} classes "
            f"(valid labels 0..{num_classes - 1}); fix the labels or the class list"
        )


class _Labelled:
    """What every dataset shares: ``y`` (N,) int64 labels and the ``classes`` names."""

    y: torch.Tensor
    classes: list[str]

    @property
    def num_classes(self) -> int:
        """C, the number of classes (including any that are empty)."""
        return len(self.classes)

    @property
    def class_counts(self) -> torch.Tensor:
        """(C,) int64 number of samples of each class."""
        return torch.bincount(self.y, minlength=self.num_classes)

    @property
    def labels(self) -> torch.Tensor:
        """(N,) int64 labels."""
        return self.y


class ArrayDataset(_Labelled):
    """A labelled dataset held in memory as two tensors.

    Args:
        x: uint8 (N, H, W, C) images (HWC, as CIFAR is stored) or float32 (N, D) vectors; a NumPy array or tensor
            (shared, not copied, where possible).
        y: (N,) integer labels in [0, C).
        classes: the C class names, index = label. Default: "0".."max(y)".
        source: where the data came from, for error messages.

    Raises:
        DataError: mismatched lengths or labels outside [0, C).
    """

    def __init__(self, x: Any, y: Any, classes: Sequence[str] | None = None, *, source: str = "arrays") -> None:
        self.x = torch.as_tensor(x)
        self.y = torch.as_tensor(np.asarray(y, dtype=np.int64) if not isinstance(y, torch.Tensor) else y).to(torch.int64)
        if self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"{source}: x has {self.x.shape[0]} samples but y has shape {tuple(self.y.shape)}; "
                "they must hold one label per sample"
            )
        if classes is None:
            classes = [str(c) for c in range(int(self.y.max()) + 1 if self.y.numel() else 0)]
        self.classes = [str(c) for c in classes]
        self.source = source
        _check_labels_in_range(self.y, len(self.classes), source)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.x[index], int(self.y[index])

    def subset(self, indices: Any) -> ArrayDataset:
        """A new dataset holding the samples at ``indices`` (in that order); the classes are kept."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ArrayDataset(self.x[idx], self.y[idx], self.classes, source=self.source)

    def __repr__(self) -> str:
        return f"ArrayDataset(n={len(self)}, x={tuple(self.x.shape)} {self.x.dtype}, classes={self.num_classes}, source={self.source!r})"


Transform = Callable[[Image.Image, torch.Generator], torch.Tensor]


class ImageFileDataset(_Labelled):
    """Labelled image files decoded with Pillow when accessed (the DataLoader path for large images).

    The random augmentation of sample i in epoch e draws from a generator seeded by (seed, e, i), so the result
    does not depend on the number of workers or on which worker loads it. Call :meth:`set_epoch` before each
    epoch (the DataLoader copies the dataset into its workers when an iterator starts, so keep
    ``persistent_workers=False``).

    Args:
        paths: N image files.
        labels: (N,) integer labels in [0, C).
        classes: the C class names.
        transform: ``transform(image, generator) -> Tensor`` (C, H, W); default converts to float in [0, 1].
        seed: base seed of the per-sample augmentation.
        source: where the list came from, for error messages.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: Any,
        classes: Sequence[str],
        *,
        transform: Transform | None = None,
        seed: int = 0,
        source: str = "image files",
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if self.y.ndim != 1 or len(self.paths) != self.y.shape[0]:
            raise DataError(f"{source}: {len(self.paths)} files but {tuple(self.y.shape)} labels; give one label per file")
        self.classes = [str(c) for c in classes]
        self.transform = transform
        self.seed = seed
        self.source = source
        self.epoch = 0
        _check_labels_in_range(self.y, len(self.classes), source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.paths)

    def load_image(self, index: int) -> Image.Image:
        """Decode file ``index`` as RGB. Raises DataError naming the file when it is missing or corrupt."""
        path = self.paths[index]
        try:
            with Image.open(path) as img:
                img.load()
                return img.convert("RGB")
        except FileNotFoundError as exc:
            raise DataError(f"image file not found: {path} (listed in {self.source}); restore it or fix the list") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot decode image {path}: {exc}; the file is truncated or corrupt, replace it") from exc

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.load_image(index)
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=file_stream(index)))
        if self.transform is None:
            arr = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
            x = arr.permute(2, 0, 1).to(torch.float32).div_(255.0)
        else:
            x = self.transform(img, g)
        return x, int(self.y[index])

    def subset(self, indices: Any) -> ImageFileDataset:
        idx = np.asarray(indices, dtype=np.int64)
        return ImageFileDataset(
            [self.paths[i] for i in idx],
            self.y.numpy()[idx],
            self.classes,
            transform=self.transform,
            seed=self.seed,
            source=self.source,
        )

    def __repr__(self) -> str:
        return f"ImageFileDataset(n={len(self)}, classes={self.num_classes}, source={self.source!r})"
