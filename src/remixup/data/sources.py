"""Readers for the formats users already have on disk. Each returns an ArrayDataset or ImageFileDataset.

Every reader turns a missing, truncated or inconsistent file into a :class:`~remixup.errors.DataError` that names
the file and says what to do.
"""

from __future__ import annotations

import codecs
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from remixup.data.datasets import ArrayDataset, ImageFileDataset
from remixup.data.download import CIFAR_ARCHIVES, download_cifar
from remixup.errors import DataError, InvalidParameterError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def _missing(path: Path, what: str, hint: str) -> DataError:
    return DataError(f"{what} not found: {path}; {hint}")


def _no_empty_class(ds: ArrayDataset | ImageFileDataset, where: str) -> None:
    counts = ds.class_counts.tolist()
    if 0 in counts:
        c = counts.index(0)
        raise DataError(f"class {c} ({ds.classes[c]!r}) has zero samples in {where}; remove the class or add samples")


# ---------------------------------------------------------------------------------------------------- CIFAR pickle
try:  # NumPy ≥ 2 moved numpy.core to numpy._core; resolve directly so no deprecation shim is touched.
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - NumPy < 2
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core", "numpy._core"):
    _PICKLE_GLOBALS[(f"{_mod}.multiarray", "_reconstruct")] = _multiarray._reconstruct
    _PICKLE_GLOBALS[(f"{_mod}.multiarray", "scalar")] = _multiarray.scalar
    _PICKLE_GLOBALS[(f"{_mod}.numeric", "_frombuffer")] = _numeric._frombuffer  # type: ignore[attr-defined]
_PICKLE_GLOBALS[("numpy", "ndarray")] = np.ndarray
_PICKLE_GLOBALS[("numpy", "dtype")] = np.dtype
# Protocol-2 pickles written by Python 3 rebuild bytes with codecs.encode(str, "latin1"): a pure function.
_PICKLE_GLOBALS[("_codecs", "encode")] = codecs.encode


class _RefusedGlobal(pickle.UnpicklingError):
    pass


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches that resolves only NumPy's array-rebuilding globals.

    Trust assumption: the official CIFAR format is a Python pickle, and unpickling runs whatever callables the
    file names. We accept the format because users have these files, but we only let it name the few NumPy
    functions an array needs; any other global (``os.system``, ``builtins.eval``, ...) is refused. Still, only
    point remixup at CIFAR folders you obtained from the official archive (or via ``download=True``, MD5-checked).
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _PICKLE_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"global {module}.{name} is not allowed in a CIFAR batch") from None


def _load_pickle(path: Path) -> dict[bytes, Any]:
    if not path.is_file():
        raise _missing(
            path, "CIFAR batch file", "the folder is incomplete: extract the official archive again or pass download=True"
        )
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise DataError(f"refusing to load {path}: {exc}; it is not an official CIFAR batch (pickles can run code)") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise DataError(
            f"cannot read CIFAR batch {path}: {exc}; the file is truncated or corrupt, extract the official archive again"
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(f"CIFAR batch {path} holds a {type(obj).__name__}, not a dict; it is not an official CIFAR batch")
    return obj


def _batch_arrays(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_pickle(path)
    if b"data" not in batch or label_key not in batch:
        raise DataError(f"CIFAR batch {path} lacks the keys b'data' and {label_key!r}; it is not an official CIFAR batch")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataError(
            f"CIFAR batch {path}: expected uint8 data (N, 3072) with N labels; got {data.dtype} {data.shape} "
            f"and {labels.shape[0]} labels; the file is corrupt"
        )
    # Rows are channel-major (1024 R, 1024 G, 1024 B, each row-major): (N, 3, 32, 32) -> HWC.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _cifar_pickle(name: str, folder: Path, train: bool) -> ArrayDataset:
    if name == "cifar10":
        files = [folder / f"data_batch_{i}" for i in range(1, 6)] if train else [folder / "test_batch"]
        label_key, meta_file, names_key = b"labels", folder / "batches.meta", b"label_names"
    else:
        files = [folder / ("train" if train else "test")]
        label_key, meta_file, names_key = b"fine_labels", folder / "meta", b"fine_label_names"
    parts = [_batch_arrays(f, label_key) for f in files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    num_classes = 10 if name == "cifar10" else 100
    classes = [str(c) for c in range(num_classes)]
    if meta_file.is_file():
        meta = _load_pickle(meta_file)
        names = meta.get(names_key)
        if isinstance(names, list) and len(names) == num_classes:
            classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return ArrayDataset(np.ascontiguousarray(x), y, classes, source=str(files[0] if len(files) == 1 else folder))


# ------------------------------------------------------------------------------------------------------ npz arrays
def load_npz(path: str | Path, *, train: bool, num_classes: int | None = None) -> ArrayDataset:
    """Arrays from a .npz file with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optional ``classes``).

    Images are uint8 (N, H, W, C) (HWC; a (N, C, H, W) array with C in {1, 3} is transposed); vectors are
    (N, D) and become float32. Loaded without ``allow_pickle``: an object array is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "npz file", "check --data-root or create the file with numpy.savez")
    split = "train" if train else "test"
    try:
        # Open the file ourselves: np.load leaks its own handle when the zip directory is unreadable.
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            missing = [k for k in (f"x_{split}", f"y_{split}") if k not in archive.files]
            if missing:
                raise DataError(f"{path} lacks the arrays {missing}; it needs x_train, y_train, x_test, y_test")
            x = archive[f"x_{split}"]
            y = archive[f"y_{split}"]
            classes = [str(c) for c in archive["classes"]] if "classes" in archive.files else None
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(f"cannot read {path}: {exc}; the file is truncated or corrupt, re-create or re-download it") from exc
    if y.ndim != 1 or y.dtype.kind not in "iu" or x.shape[0] != y.shape[0]:
        raise DataError(
            f"{path}: y_{split} must be integer labels (N,) matching x_{split} ({x.shape[0]} rows); got {y.dtype} {y.shape}"
        )
    if x.ndim == 4:
        if x.dtype != np.uint8:
            raise DataError(f"{path}: image array x_{split} must be uint8; got {x.dtype}")
        if x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    elif x.ndim == 2:
        x = x.astype(np.float32, copy=False)
    else:
        raise DataError(f"{path}: x_{split} must be images (N, H, W, C) or vectors (N, D); got shape {x.shape}")
    if classes is None and num_classes is not None:
        classes = [str(c) for c in range(num_classes)]
    if num_classes is not None and classes is not None and len(classes) != num_classes:
        raise DataError(f"{path}: `classes` has {len(classes)} names, expected {num_classes}")
    return ArrayDataset(x, y, classes, source=str(path))


def load_cifar(name: str, root: str | Path, *, train: bool, download: bool = False) -> ArrayDataset:
    """CIFAR-10 or CIFAR-100 (fine labels) from ``root``.

    Looked up in order: the official folder (``cifar-10-batches-py/`` or ``cifar-100-python/``), then
    ``cifar10.npz`` / ``cifar100.npz``; with ``download=True`` and neither present, the official archive is
    downloaded, MD5-checked and extracted.
    """
    root = Path(root)
    info = CIFAR_ARCHIVES[name]
    folder, npz = root / info["folder"], root / f"{name}.npz"
    if not folder.is_dir() and not npz.is_file():
        if not download:
            raise DataError(
                f"{name} not found in {root}: expected the folder {folder.name}/ (official python version) or {npz.name}; "
                f"download it with `remixup data --dataset {name} --data-root {root} --download` (train: data.download=true; "
                "Python: download=True), or point --data-root at the folder that holds it"
            )
        folder = download_cifar(name, root)
    num_classes = 10 if name == "cifar10" else 100
    ds = _cifar_pickle(name, folder, train) if folder.is_dir() else load_npz(npz, train=train, num_classes=num_classes)
    if ds.num_classes != num_classes:
        raise DataError(f"{ds.source}: {ds.num_classes} classes, expected {num_classes} for {name}")
    if tuple(ds.x.shape[1:]) != (32, 32, 3):
        raise DataError(f"{ds.source}: {name} images must be 32x32 RGB (N, 32, 32, 3); got {tuple(ds.x.shape)}")
    _no_empty_class(ds, ds.source)
    return ds


# --------------------------------------------------------------------------------------- image folders, CINIC-10
def _class_folders(folder: Path) -> tuple[list[str], list[Path], list[int]]:
    if not folder.is_dir():
        raise _missing(folder, "image folder", "it must hold one sub-folder per class with the images inside")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder} has no class sub-folders; put each class's images in <folder>/<class>/")
    paths: list[Path] = []
    labels: list[int] = []
    for c, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"class {c} ({name!r}) has zero samples: {folder / name} holds no images; add images or remove it")
        paths += files
        labels += [c] * len(files)
    return classes, paths, labels


def _split_folder(root: Path, train: bool, eval_names: tuple[str, ...]) -> Path:
    names = ("train",) if train else eval_names
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise _missing(root / names[0], "split folder", f"expected {' or '.join(names)}/ with one sub-folder per class")


def load_image_folder(root: str | Path, *, train: bool) -> ImageFileDataset:
    """Any image folder: ``root/train/<class>/*`` and ``root/val/<class>/*`` (or ``test``), decoded lazily."""
    root = Path(root)
    if not root.is_dir():
        raise _missing(root, "image folder", "check --data-root")
    folder = _split_folder(root, train, ("val", "valid", "test"))
    classes, paths, labels = _class_folders(folder)
    return ImageFileDataset(paths, labels, classes, source=str(folder))


def load_cinic10(root: str | Path, *, train: bool) -> ArrayDataset:
    """CINIC-10 (``train/valid/test/<class>/*.png``, 32x32) decoded into memory; evaluation uses ``valid``.

    ``root`` may be the CINIC-10 folder itself or a data root holding ``cinic10/`` or ``CINIC-10/``.
    """
    root = Path(root)
    base = next((b for b in (root / "cinic10", root / "CINIC-10", root) if (b / "train").is_dir()), None)
    if base is None:
        raise _missing(root / "cinic10", "CINIC-10 folder", "it must hold train/, valid/ and test/ with one folder per class")
    folder = _split_folder(base, train, ("valid",))
    classes, paths, labels = _class_folders(folder)
    x = np.empty((len(paths), 32, 32, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                img.load()
                arr = np.asarray(img.convert("RGB"))  # a few CINIC-10 images are greyscale
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot decode image {p}: {exc}; the file is truncated or corrupt, replace it") from exc
        if arr.shape != (32, 32, 3):
            raise DataError(f"CINIC-10 image {p} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32")
        x[i] = arr
    return ArrayDataset(x, labels, classes, source=str(folder))


# ---------------------------------------------------------------------------------------------- iNaturalist 2018
def load_inat2018(root: str | Path, *, train: bool) -> ImageFileDataset:
    """iNaturalist 2018 from ``root/train2018.json`` or ``root/val2018.json`` and the image tree under ``root``.

    The JSON holds ``images`` ({id, file_name}), ``annotations`` ({image_id, category_id}) and ``categories``
    ({id, name}); category ids are mapped to labels 0..C-1 in increasing id order (they are 0..8141 already).
    """
    root = Path(root)
    path = root / ("train2018.json" if train else "val2018.json")
    if not path.is_file():
        raise _missing(path, "iNaturalist annotation file", "download train2018.json/val2018.json into --data-root")
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
        images = {int(im["id"]): im["file_name"] for im in meta["images"]}
        cat_ids = sorted(int(c["id"]) for c in meta["categories"])
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in meta["categories"]}
        pairs = [(int(a["image_id"]), int(a["category_id"])) for a in meta["annotations"]]
    except json.JSONDecodeError as exc:
        raise DataError(f"cannot parse {path}: {exc}; the file is truncated or corrupt, download it again") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path} is not an iNaturalist annotation file (missing or bad field {exc}); expected images, annotations, categories"
        ) from exc
    label_of = {cid: i for i, cid in enumerate(cat_ids)}
    paths, labels = [], []
    for image_id, cat in pairs:
        if cat not in label_of:
            raise DataError(
                f"labels out of range in {path}: annotation of image {image_id} has category_id {cat}, which is not in categories"
            )
        if image_id not in images:
            raise DataError(f"{path}: annotation refers to image id {image_id}, which is not listed in images")
        paths.append(root / images[image_id])
        labels.append(label_of[cat])
    ds = ImageFileDataset(paths, labels, [names[c] for c in cat_ids], source=str(path))
    if train:
        _no_empty_class(ds, str(path))
    return ds


# ------------------------------------------------------------------------------------------------- embedded sets
DIGITS_TEST_PER_CLASS = 50


def load_digits(*, train: bool) -> ArrayDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download) as uint8 (N, 8, 8, 1).

    Pixel values 0..16 are scaled to 0..255. The test set is balanced: the first 50 images of each class (in the
    file's order); the remaining 124–133 per class are the training set, which the profiles then make imbalanced.
    """
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    rank = np.empty_like(y)
    for c in range(10):
        idx = np.flatnonzero(y == c)
        rank[idx] = np.arange(idx.size)
    mask = rank >= DIGITS_TEST_PER_CLASS if train else rank < DIGITS_TEST_PER_CLASS
    return ArrayDataset(np.ascontiguousarray(images[mask]), y[mask], [str(c) for c in range(10)], source="sklearn digits")


TOY_TRAIN_PER_CLASS = 1000
TOY_TEST_PER_CLASS = 500


def load_toy(name: str, *, train: bool) -> ArrayDataset:
    """A balanced two-class 2-D set, float32 (N, 2), to be made imbalanced by :func:`make_imbalanced`.

    ``blobs``: two Gaussian blobs; ``moons``: two interleaving half circles; ``circles``: a circle inside another.
    Training (1,000 per class) and test (500 per class) sets are fixed draws (seeds 0 and 1).
    """
    from sklearn.datasets import make_blobs, make_circles, make_moons

    per_class = TOY_TRAIN_PER_CLASS if train else TOY_TEST_PER_CLASS
    seed = 0 if train else 1
    n = 2 * per_class
    if name == "blobs":
        x, y = make_blobs(n_samples=[per_class, per_class], centers=[[-1.0, 0.0], [1.0, 0.0]], cluster_std=0.6, random_state=seed)
    elif name == "moons":
        x, y = make_moons(n_samples=n, noise=0.15, random_state=seed)
    elif name == "circles":
        x, y = make_circles(n_samples=n, noise=0.08, factor=0.5, random_state=seed)
    else:
        raise InvalidParameterError(f"`name` of `load_toy` must be one of 'blobs', 'moons', 'circles'; got {name!r}")
    return ArrayDataset(x.astype(np.float32), y.astype(np.int64), ["0", "1"], source=f"toy {name}")
