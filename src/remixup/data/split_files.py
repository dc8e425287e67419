"""ImageNet-LT and Places-LT from a local copy and their standard split files (Liu et al., CVPR 2019, OLTR).

Each split is a text file of ``relative/path label`` lines, the path relative to the data root:

=========== ============================================================== ============================
data set    split files                                                    classes, training images
=========== ============================================================== ============================
imagenet_lt ``ImageNet_LT_train.txt``, ``ImageNet_LT_val.txt``,             1000, 115.8 k (1280 to 5)
            ``ImageNet_LT_test.txt``
places_lt   ``Places_LT_train.txt``, ``Places_LT_val.txt``,                 365, 62.5 k (4980 to 5)
            ``Places_LT_test.txt``
=========== ============================================================== ============================

The files are looked for in the data root, then in ``ImageNet_LT/`` or ``Places_LT/`` under it (where the OLTR
release puts them). The training split is long-tailed already (train with ``data.imbalance=none``); ``test`` is the
evaluation split (balanced: 50 per class for ImageNet-LT, 100 for Places-LT) and ``val`` the split for model selection
(20 per class). Class names are the folders holding each class's training images (ImageNet's WordNet ids, Places'
scene names), else the label. Many/medium/few-shot accuracy uses the usual thresholds (> 100, 20–100, < 20 training
images; :mod:`remixup.metrics`).
"""

from __future__ import annotations

from pathlib import Path

from remixup.data.datasets import ImageFileDataset
from remixup.errors import DataError

__all__ = ["SPLIT_FILES", "load_split_file", "load_split_file_set"]

SPLIT_FILES = {"imagenet_lt": "ImageNet_LT", "places_lt": "Places_LT"}  # data set -> file prefix


def _find(root: Path, prefix: str, split: str) -> Path:
    name = f"{prefix}_{split}.txt"
    for folder in (root, root / prefix):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"split file not found: {root / name} (nor {root / prefix / name}); put the standard {prefix} split "
                    "files in --data-root, with the images at the paths they list")  # fmt: skip


def load_split_file(path: Path, root: Path) -> tuple[list[Path], list[int]]:
    """The ``relative/path label`` lines of ``path`` as (files under ``root``, labels); blank lines are skipped.

    Raises:
        DataError: a line that is not ``path label`` with an integer label ≥ 0 (the message names file and line).
    """
    paths: list[Path] = []
    labels: list[int] = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit():
                raise DataError(
                    f"{path}, line {number}: expected `relative/path label` with an integer label; got {line.strip()!r}"
                )
            paths.append(root / parts[0])
            labels.append(int(parts[1]))
    if not paths:
        raise DataError(f"{path} lists no images")
    return paths, labels


def _class_names(paths: list[Path], labels: list[int], num_classes: int) -> list[str]:
    """Each class's folder name when all its training images share one folder and no two classes share one."""
    folders: dict[int, set[str]] = {}
    for p, y in zip(paths, labels, strict=True):
        folders.setdefault(y, set()).add(p.parent.name)
    names = [next(iter(folders[c])) if len(folders.get(c, ())) == 1 else str(c) for c in range(num_classes)]
    return names if len(set(names)) == num_classes else [str(c) for c in range(num_classes)]


def load_split_file_set(name: str, root: str | Path, *, split: str) -> ImageFileDataset:
    """``split`` (``train``, ``val`` or ``test``) of ``imagenet_lt`` or ``places_lt`` under ``root``, decoded lazily.

    The number of classes is the training file's (its largest label + 1), so a subset of the classes with the same
    file format loads too; every class must have a training image.

    Raises:
        DataError: a missing or malformed split file, a label outside the training file's classes, or a class
            without training images.
    """
    prefix, root = SPLIT_FILES[name], Path(root)
    train_path = _find(root, prefix, "train")
    train_paths, train_labels = load_split_file(train_path, root)
    num_classes = max(train_labels) + 1
    missing = sorted(set(range(num_classes)) - set(train_labels))
    if missing:
        raise DataError(f"{train_path}: class {missing[0]} has no training images; labels must run from 0 to C-1")
    classes = _class_names(train_paths, train_labels, num_classes)
    if split == "train":
        return ImageFileDataset(train_paths, train_labels, classes, source=str(train_path))
    path = _find(root, prefix, split)
    paths, labels = load_split_file(path, root)
    bad = next((y for y in labels if y >= num_classes), None)
    if bad is not None:
        raise DataError(f"{path}: label {bad} is outside the {num_classes} classes of {train_path.name}")
    return ImageFileDataset(paths, labels, classes, source=str(path))
