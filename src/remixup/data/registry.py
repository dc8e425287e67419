"""The dataset registry: one explicit dict from name to spec, and :func:`load_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from remixup._validation import check_choice
from remixup.data.augment import BatchAugment, RandomResizedCropFlip, ResizeCenterCrop
from remixup.data.datasets import ArrayDataset, ImageFileDataset
from remixup.data.sources import load_cifar, load_cinic10, load_digits, load_image_folder, load_inat2018, load_npz, load_toy
from remixup.data.split_files import SPLIT_FILES, load_split_file_set
from remixup.errors import ConfigError, DataError, InvalidParameterError

KINDS = ("small_image", "large_image", "vector")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetSpec:
    """What the rest of remixup needs to know about a dataset before loading it.

    Attributes:
        name: registry key.
        kind: ``"small_image"`` (uint8 (N, H, W, C) in memory, :class:`TensorLoader` + :class:`BatchAugment`),
            ``"large_image"`` (files, DataLoader + :class:`RandomResizedCropFlip`) or ``"vector"`` (float (N, D)).
        num_classes: C, or ``None`` when it depends on the files (image folder, npz).
        mean, std: per-channel normalisation in [0, 1] units (``None`` for vectors).
        model: default model name in the model registry.
        image_size: side in pixels of the network input (``None`` for vectors).
        crop_padding: zero padding of the random crop for small images (0: no crop).
        flip: whether horizontal flips are label-preserving (not for digits).
        description: one line for ``remixup data`` and the docs.
    """

    name: str
    kind: str
    num_classes: int | None
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    model: str
    image_size: int | None
    crop_padding: int = 0
    flip: bool = False
    description: str = ""

    def train_augment(self, *, channels_last: bool = False) -> BatchAugment | RandomResizedCropFlip | None:
        """The training augmentation for this dataset (None for vectors)."""
        return _TRANSFORMS[self.kind][0](self, channels_last)

    def eval_transform(self, *, channels_last: bool = False) -> BatchAugment | ResizeCenterCrop | None:
        """The evaluation transform: normalisation only (small images), resize + centre crop (large images)."""
        return _TRANSFORMS[self.kind][1](self, channels_last)


def _batch_augment(spec: DatasetSpec, channels_last: bool) -> BatchAugment:
    return BatchAugment(spec.mean, spec.std, padding=spec.crop_padding, flip=spec.flip, channels_last=channels_last)  # type: ignore[arg-type]


def _normalize(spec: DatasetSpec, channels_last: bool) -> BatchAugment:
    return BatchAugment(spec.mean, spec.std, padding=0, flip=False, channels_last=channels_last)  # type: ignore[arg-type]


def _crop_flip(spec: DatasetSpec, channels_last: bool) -> RandomResizedCropFlip:
    return RandomResizedCropFlip(spec.image_size or 224, mean=spec.mean or IMAGENET_MEAN, std=spec.std or IMAGENET_STD)


def _center_crop(spec: DatasetSpec, channels_last: bool) -> ResizeCenterCrop:
    size = spec.image_size or 224
    return ResizeCenterCrop(size, resize=round(size * 256 / 224), mean=spec.mean or IMAGENET_MEAN, std=spec.std or IMAGENET_STD)


def _none(spec: DatasetSpec, channels_last: bool) -> None:
    return None


# kind -> (training augmentation, evaluation transform)
_TRANSFORMS: dict[str, tuple[Callable[[DatasetSpec, bool], Any], Callable[[DatasetSpec, bool], Any]]] = {
    "small_image": (_batch_augment, _normalize),
    "large_image": (_crop_flip, _center_crop),
    "vector": (_none, _none),
}


# CIFAR statistics as used by LDAM-DRW's and most Remix reimplementations' code (their std is the per-image
# std averaged over images, 0.2023…, slightly below the pixel std 0.247…); kept so recipes match theirs.
DATASETS: dict[str, DatasetSpec] = {
    "cifar10": DatasetSpec(
        "cifar10",
        "small_image",
        10,
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        "resnet32",
        32,
        4,
        True,
        "CIFAR-10: official python pickles (cifar-10-batches-py/) or cifar10.npz",
    ),
    "cifar100": DatasetSpec(
        "cifar100",
        "small_image",
        100,
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        "resnet32",
        32,
        4,
        True,
        "CIFAR-100 fine labels: cifar-100-python/ or cifar100.npz",
    ),
    "cinic10": DatasetSpec(
        "cinic10",
        "small_image",
        10,
        (0.4789, 0.4723, 0.4305),
        (0.2421, 0.2383, 0.2587),
        "resnet18",
        32,
        4,
        True,
        "CINIC-10: train/ valid/ test/ with one folder of 32-px PNGs per class (evaluates on valid)",
    ),
    "inat2018": DatasetSpec(
        "inat2018",
        "large_image",
        8142,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "resnet50",
        224,
        0,
        True,
        "iNaturalist 2018: train2018.json / val2018.json and the image tree (naturally long-tailed)",
    ),
    "imagenet_lt": DatasetSpec(
        "imagenet_lt",
        "large_image",
        None,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "resnet50",
        224,
        0,
        True,
        "ImageNet-LT: ImageNet_LT_train/val/test.txt (lines `relative/path label`) and the images (long-tailed)",
    ),
    "places_lt": DatasetSpec(
        "places_lt",
        "large_image",
        None,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "resnet50",
        224,
        0,
        True,
        "Places-LT: Places_LT_train/val/test.txt (lines `relative/path label`) and the images (long-tailed)",
    ),
    "imagefolder": DatasetSpec(
        "imagefolder",
        "large_image",
        None,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "resnet50",
        224,
        0,
        True,
        "any image folder: train/<class>/* and val/<class>/*",
    ),
    "npz": DatasetSpec(
        "npz",
        "small_image",
        None,
        (0.5, 0.5, 0.5),
        (0.25, 0.25, 0.25),
        "resnet32",
        32,
        4,
        True,
        "arrays in a .npz (x_train, y_train, x_test, y_test); --data-root is the file",
    ),
    "digits": DatasetSpec(
        "digits",
        "small_image",
        10,
        (0.3053,),
        (0.3759,),
        "digits_cnn",
        8,
        1,
        False,
        "scikit-learn's bundled 8x8 digits, white ink on black (embedded, no download)",
    ),
    "blobs": DatasetSpec("blobs", "vector", 2, None, None, "mlp", None, 0, False, "two Gaussian blobs in 2-D"),
    "moons": DatasetSpec("moons", "vector", 2, None, None, "mlp", None, 0, False, "two interleaving moons in 2-D"),
    "circles": DatasetSpec("circles", "vector", 2, None, None, "mlp", None, 0, False, "two concentric circles in 2-D"),
}


# Smallest side of npz images: the default CNN (resnet32) halves the image twice, which needs 4 pixels a side.
NPZ_MIN_SIDE = 4


def spec_for_samples(spec: DatasetSpec, sample_shape: tuple[int, ...], *, source: str = "npz") -> DatasetSpec:
    """The registry entry fitted to the samples an npz holds (other datasets are returned unchanged).

    Vectors (D,) make it vector data (model ``mlp``, no image transform); images (H, W, C) are normalised per
    channel for their C in {1, 3}.

    Raises:
        DataError: images with another number of channels, or smaller than ``NPZ_MIN_SIDE`` pixels a side.
    """
    if spec.name != "npz":
        return spec
    if len(sample_shape) == 1:
        return replace(spec, kind="vector", mean=None, std=None, model="mlp", image_size=None, crop_padding=0, flip=False)
    h, w, c = sample_shape
    if c not in (1, 3):
        raise DataError(f"{source}: images must have 1 (grey) or 3 (RGB) channels, as (N, H, W, C) or (N, C, H, W); "
                        f"got samples of shape {tuple(sample_shape)}")  # fmt: skip
    if min(h, w) < NPZ_MIN_SIDE:
        raise DataError(f"{source}: images of {h}x{w} pixels are too small for the image models (at least "
                        f"{NPZ_MIN_SIDE}x{NPZ_MIN_SIDE}); give such data as vectors (N, D)")  # fmt: skip
    assert spec.mean is not None and spec.std is not None
    return replace(spec, mean=spec.mean[:1] * c, std=spec.std[:1] * c, image_size=max(h, w))


# Smallest crop side of image files that remixup takes (the models end in a global pooling, so they take any size).
MIN_IMAGE_SIZE = 8


def with_image_size(spec: DatasetSpec, image_size: int) -> DatasetSpec:
    """``spec`` with the network input of image files set to ``image_size`` pixels a side (0: unchanged).

    Raises:
        ConfigError: ``image_size`` for data that is not image files (in-memory images keep their size), or below
            :data:`MIN_IMAGE_SIZE`.
    """
    if not image_size:
        return spec
    if spec.kind != "large_image":
        raise ConfigError(f"`data.image_size`={image_size} applies to image files (imagefolder, inat2018, imagenet_lt, "
                          f"places_lt); {spec.name} keeps its own size: leave data.image_size at 0")  # fmt: skip
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"`data.image_size` must be >= {MIN_IMAGE_SIZE} pixels, or 0 for the data set's own; got {image_size}")
    return replace(spec, image_size=int(image_size))


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset, or of a table (``tabular:NAME``, ``tabular:FILE.csv``: kind ``"vector"``,
    model ``mlp``, C known once loaded); an unknown name lists the valid ones."""
    from remixup.data.tabular import PREFIX, TABULAR_SETS, is_tabular, table_source

    if is_tabular(name):
        source = table_source(name)
        known = TABULAR_SETS.get(source)
        what = f"{known.rows} rows, {known.classes} classes" if known is not None else "a table"
        return DatasetSpec(name, "vector", None, None, None, "mlp", None, 0, False, f"{source}: {what} (standardised, one-hot)")
    if isinstance(name, str) and name.startswith(PREFIX.rstrip(":")) and name not in DATASETS:
        raise InvalidParameterError(f"`dataset` of `load_dataset` must look like tabular:NAME or tabular:FILE.csv; got {name!r}")
    if isinstance(name, str) and name not in DATASETS and name.lower().endswith((".csv", ".tsv", ".parquet", ".pq")):
        raise InvalidParameterError(f"unknown dataset {name!r}; a table file is read as dataset tabular:{name}")
    check_choice(name, "dataset", list(DATASETS), owner="load_dataset")
    return DATASETS[name]


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    train: bool | None = None,
    download: bool = False,
    split: str | None = None,
    label_column: str = "",
    split_seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    class_policy: str = "drop",
) -> ArrayDataset | ImageFileDataset:
    """Load the balanced training (``train=True``) or test split of a registered dataset, or a split of a table.

    Apply :func:`~remixup.data.profiles.make_imbalanced` to the training split afterwards; test sets stay balanced.

    Args:
        name: a key of :data:`DATASETS`, or ``tabular:NAME`` / ``tabular:FILE`` (:mod:`remixup.data.tabular`).
        root: data root folder (for ``npz``: the .npz file). Ignored by ``digits``, the 2-D toys and tables.
        train: training split (else the evaluation split: CIFAR test, CINIC-10 valid, iNaturalist val, a table's test).
        download: CIFAR only: fetch the official archive (MD5-checked) when it is not in ``root``.
        split: instead of ``train``: ``"train"``, ``"test"``, or ``"val"`` (tables, ImageNet-LT and Places-LT: the
            validation split, for model selection and tuning; the test split is never used for that).
        label_column, split_seed, val_fraction, test_fraction, class_policy: tables only, see
            :func:`~remixup.data.tabular.load_table_splits` (the splits' seed is separate from the training seed).

    Returns:
        :class:`ArrayDataset` for small images and vectors, :class:`ImageFileDataset` for large images (without a
        transform: set ``dataset.transform`` to ``spec.train_augment()`` or ``spec.eval_transform()``).

    Raises:
        ValueError: an unknown name, or no ``root`` for a dataset on disk.
        DataError: missing, truncated or inconsistent files (the message names the file).
    """
    get_spec(name)
    if split is None:
        if train is None:
            raise InvalidParameterError("`load_dataset` needs `train=True/False` or `split='train'/'val'/'test'`")
        split = "train" if train else "test"
    check_choice(split, "split", ("train", "val", "test"), owner="load_dataset")
    if name.startswith("tabular:"):
        from remixup.data.tabular import load_table_splits

        return load_table_splits(
            name,
            label_column=label_column,
            split_seed=split_seed,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            class_policy=class_policy,
        ).dataset(split)
    if name in SPLIT_FILES:  # ImageNet-LT, Places-LT: their own train, val and test split files
        if root is None:
            raise InvalidParameterError(f"`root` of `load_dataset` is required for {name!r}: the folder with its split files")
        return load_split_file_set(name, root, split=split)
    if split == "val":
        raise InvalidParameterError(
            f"`split='val'` of `load_dataset` is for tables (tabular:...), imagenet_lt and places_lt; {name!r} has only "
            "train and test"
        )
    train = split == "train"
    if name == "digits":
        return load_digits(train=train)
    if name in ("blobs", "moons", "circles"):
        return load_toy(name, train=train)
    if root is None:
        raise InvalidParameterError(
            f"`root` of `load_dataset` is required for {name!r}: the folder that holds its files (--data-root)"
        )
    if name in ("cifar10", "cifar100"):
        return load_cifar(name, root, train=train, download=download)
    if name == "cinic10":
        return load_cinic10(root, train=train)
    if name == "inat2018":
        return load_inat2018(root, train=train)
    if name == "imagefolder":
        return load_image_folder(root, train=train)
    return load_npz(root, train=train)
