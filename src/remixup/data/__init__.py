"""The data layer: imbalance profiles, dataset sources, batched augmentation and loaders.

Typical use for a small-image set::

    from remixup.data import DATASETS, load_dataset, make_imbalanced, BatchAugment, TensorLoader

    spec = DATASETS["cifar10"]
    train = make_imbalanced(load_dataset("cifar10", root, train=True), "longtail", ratio=100, subset_seed=0)
    loader = TensorLoader(train.x.to(device), train.y.to(device), batch_size=128,
                          augment=spec.train_augment(), seed=seed)
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        for x, y in loader: ...        # x float32 (B, 3, 32, 32), y int64 (B,)
    counts = train.class_counts        # (C,) int64, for Remix, RW and RS
"""

from remixup.data.augment import BatchAugment, RandomResizedCropFlip, ResizeCenterCrop, to_normalized_tensor
from remixup.data.datasets import ArrayDataset, ImageFileDataset
from remixup.data.download import CIFAR_ARCHIVES, download_cifar, download_file, md5sum, safe_extract
from remixup.data.loaders import TensorLoader, make_image_loader
from remixup.data.profiles import PROFILES, describe_counts, imbalanced_indices, make_imbalanced, profile_counts
from remixup.data.registry import DATASETS, KINDS, DatasetSpec, get_spec, load_dataset
from remixup.data.sources import load_cifar, load_cinic10, load_digits, load_image_folder, load_inat2018, load_npz, load_toy

__all__ = [
    "ArrayDataset",
    "BatchAugment",
    "CIFAR_ARCHIVES",
    "DATASETS",
    "DatasetSpec",
    "ImageFileDataset",
    "KINDS",
    "PROFILES",
    "RandomResizedCropFlip",
    "ResizeCenterCrop",
    "TensorLoader",
    "describe_counts",
    "download_cifar",
    "download_file",
    "get_spec",
    "load_cifar",
    "load_cinic10",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_inat2018",
    "load_npz",
    "load_toy",
    "make_image_loader",
    "imbalanced_indices",
    "make_imbalanced",
    "md5sum",
    "profile_counts",
    "safe_extract",
    "to_normalized_tensor",
]
