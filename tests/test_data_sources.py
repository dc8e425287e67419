"""Dataset sources: each real format built small in tmp_path, and each kind of bad data."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from remixup.data import DATASETS, KINDS, ArrayDataset, ImageFileDataset, load_dataset, make_imbalanced
from remixup.errors import DataError

PER_CLASS = 6  # CIFAR-10 images per class in the tiny training set (spread over 5 batches)


def _cifar_images(y: np.ndarray) -> np.ndarray:
    """HWC uint8 images whose pixel (0, 0) encodes the label and whose (0, 1) encodes the index."""
    x = np.zeros((len(y), 32, 32, 3), np.uint8)
    x[:, 0, 0, 0] = y
    x[:, 0, 1, 0] = np.arange(len(y)) % 256
    x[:, 5, 7, 2] = 200  # a channel-specific pixel, to check the CHW → HWC conversion
    return x


def _dump(path: Path, obj: object) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _to_rows(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # the official channel-major row layout


def make_cifar10_pickles(root: Path) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.RandomState(0)
    y = rng.permutation(np.repeat(np.arange(10), PER_CLASS))
    x = _cifar_images(y)
    for i, part in enumerate(np.array_split(np.arange(len(y)), 5), start=1):
        _dump(folder / f"data_batch_{i}", {b"data": _to_rows(x[part]), b"labels": y[part].tolist(), b"batch_label": b"x"})
    yt = np.repeat(np.arange(10), 2)
    _dump(folder / "test_batch", {b"data": _to_rows(_cifar_images(yt)), b"labels": yt.tolist()})
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    _dump(folder / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return x, y


def make_cifar100_pickles(root: Path) -> None:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    y = np.repeat(np.arange(100), 2)
    for split in ("train", "test"):
        _dump(folder / split, {b"data": _to_rows(_cifar_images(y)), b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist()})
    _dump(folder / "meta", {b"fine_label_names": [f"c{i}".encode() for i in range(100)]})


def test_cifar10_pickle_folder(tmp_path: Path) -> None:
    x, y = make_cifar10_pickles(tmp_path)
    ds = load_dataset("cifar10", tmp_path, train=True)
    assert isinstance(ds, ArrayDataset)
    assert ds.x.shape == (60, 32, 32, 3) and ds.x.dtype == torch.uint8 and ds.y.dtype == torch.int64
    assert np.array_equal(ds.x.numpy(), x) and np.array_equal(ds.y.numpy(), y)
    assert ds.classes[0] == "airplane" and ds.class_counts.tolist() == [PER_CLASS] * 10
    test = load_dataset("cifar10", tmp_path, train=False)
    assert test.class_counts.tolist() == [2] * 10


def test_cifar10_pickle_and_npz_give_the_same_subset(tmp_path: Path) -> None:
    """The npz is class-sorted (as the shared CIFAR-10 npz files are); per-class positions select the same images."""
    x, y = make_cifar10_pickles(tmp_path / "pickle")
    order = np.argsort(y, kind="stable")
    np.savez(tmp_path / "cifar10.npz", x_train=x[order], y_train=y[order].astype(np.uint8), x_test=x[:10], y_test=y[:10])
    a = make_imbalanced(load_dataset("cifar10", tmp_path / "pickle", train=True), ratio=3, subset_seed=2)
    b = make_imbalanced(load_dataset("cifar10", tmp_path, train=True), ratio=3, subset_seed=2)
    key = lambda ds: sorted(ds.x[:, 0, 1, 0].tolist())  # noqa: E731
    assert key(a) == key(b) and a.class_counts.tolist() == b.class_counts.tolist()


def test_cifar100_pickle_fine_labels(tmp_path: Path) -> None:
    make_cifar100_pickles(tmp_path)
    ds = load_dataset("cifar100", tmp_path, train=True)
    assert ds.num_classes == 100 and ds.classes[3] == "c3" and ds.class_counts.tolist() == [2] * 100
    assert ds.x[5, 5, 7, 2].item() == 200 and ds.x[5, 0, 0, 0].item() == ds.y[5].item()


def test_cifar_npz_with_classes(tmp_path: Path) -> None:
    y = np.repeat(np.arange(10), 3).astype(np.uint8)
    classes = np.array([f"k{i}" for i in range(10)])
    np.savez_compressed(tmp_path / "cifar10.npz", x_train=_cifar_images(y), y_train=y, x_test=_cifar_images(y), y_test=y, classes=classes)
    ds = load_dataset("cifar10", tmp_path, train=False)
    assert ds.classes == [f"k{i}" for i in range(10)] and len(ds) == 30


def test_missing_folder_names_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"cifar10 not found in .*: expected the folder cifar-10-batches-py/ .* or cifar10.npz; download it with `remixup data --dataset cifar10 --data-root .* --download`"):
        load_dataset("cifar10", tmp_path, train=True)
    with pytest.raises(DataError, match=r"CINIC-10 folder not found"):
        load_dataset("cinic10", tmp_path, train=True)
    with pytest.raises(DataError, match=r"iNaturalist annotation file not found: .*train2018.json"):
        load_dataset("inat2018", tmp_path, train=True)
    with pytest.raises(DataError, match=r"npz file not found: .*nothing.npz"):
        load_dataset("npz", tmp_path / "nothing.npz", train=True)
    with pytest.raises(ValueError, match=r"`dataset` of `load_dataset` must be one of 'cifar10', .*'circles'; got 'mnist'"):
        load_dataset("mnist", tmp_path, train=True)


def test_truncated_pickle(tmp_path: Path) -> None:
    make_cifar10_pickles(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=r"cannot read CIFAR batch .*data_batch_3: .*truncated or corrupt"):
        load_dataset("cifar10", tmp_path, train=True)


def test_pickle_naming_other_globals_is_refused(tmp_path: Path) -> None:
    make_cifar10_pickles(tmp_path)

    class Evil:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    _dump(tmp_path / "cifar-10-batches-py" / "data_batch_1", {b"data": Evil(), b"labels": []})
    with pytest.raises(DataError, match=r"refusing to load .*data_batch_1: global (posix|os|nt)\.system is not allowed"):
        load_dataset("cifar10", tmp_path, train=True)
    assert not (tmp_path / "pwned").exists()


def test_missing_batch_file(tmp_path: Path) -> None:
    make_cifar10_pickles(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataError, match=r"CIFAR batch file not found: .*data_batch_5"):
        load_dataset("cifar10", tmp_path, train=True)


def test_truncated_npz(tmp_path: Path) -> None:
    y = np.repeat(np.arange(10), 3).astype(np.uint8)
    path = tmp_path / "cifar10.npz"
    np.savez_compressed(path, x_train=_cifar_images(y), y_train=y, x_test=_cifar_images(y), y_test=y)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cannot read .*cifar10.npz: .*truncated or corrupt"):
        load_dataset("cifar10", tmp_path, train=True)


def test_npz_missing_keys_and_object_arrays(tmp_path: Path) -> None:
    np.savez(tmp_path / "cifar10.npz", x_train=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(DataError, match=r"cifar10.npz lacks the arrays \['y_train'\]"):
        load_dataset("cifar10", tmp_path, train=True)
    np.savez(tmp_path / "obj.npz", x_train=np.array([{"a": 1}, None], dtype=object), y_train=np.array([0, 1]))
    with pytest.raises(DataError, match=r"cannot read .*obj.npz"):
        load_dataset("npz", tmp_path / "obj.npz", train=True)


def test_labels_out_of_range(tmp_path: Path) -> None:
    y = np.repeat(np.arange(10), 3).astype(np.uint8)
    y[4] = 10
    np.savez(tmp_path / "cifar10.npz", x_train=_cifar_images(y), y_train=y, x_test=_cifar_images(y), y_test=y)
    with pytest.raises(DataError, match=r"labels out of range in .*cifar10.npz: found label 10, but there are 10 classes"):
        load_dataset("cifar10", tmp_path, train=True)


def test_class_with_zero_samples(tmp_path: Path) -> None:
    y = np.repeat(np.arange(9), 3).astype(np.uint8)  # class 9 absent
    np.savez(tmp_path / "cifar10.npz", x_train=_cifar_images(y), y_train=y, x_test=_cifar_images(y), y_test=y)
    with pytest.raises(DataError, match=r"class 9 \('9'\) has zero samples in .*cifar10.npz"):
        load_dataset("cifar10", tmp_path, train=True)


def test_generic_npz_vectors(tmp_path: Path) -> None:
    path = tmp_path / "vec.npz"
    np.savez(path, x_train=np.ones((6, 4), np.float64), y_train=np.array([0, 1, 2, 0, 1, 2]), x_test=np.ones((3, 4)), y_test=np.array([0, 1, 2]))
    ds = load_dataset("npz", path, train=True)
    assert ds.x.dtype == torch.float32 and ds.x.shape == (6, 4) and ds.num_classes == 3


def _png(path: Path, value: int, size: tuple[int, int] = (32, 32), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    ramp = (np.add.outer(np.arange(h), 3 * np.arange(w)) + value) % 256  # a gradient, so crops differ
    arr = ramp.astype(np.uint8) if mode == "L" else np.stack([ramp, np.full_like(ramp, value), 255 - ramp], -1).astype(np.uint8)
    Image.fromarray(arr).save(path)


def test_cinic10_folder(tmp_path: Path) -> None:
    base = tmp_path / "CINIC-10"
    for split, n in (("train", 3), ("valid", 2), ("test", 1)):
        for c, name in enumerate(("cat", "dog")):
            for i in range(n):
                _png(base / split / name / f"{i}.png", 10 * c + i, mode="L" if i == 0 else "RGB")
    train = load_dataset("cinic10", tmp_path, train=True)
    assert isinstance(train, ArrayDataset) and train.x.shape == (6, 32, 32, 3) and train.classes == ["cat", "dog"]
    assert train.class_counts.tolist() == [3, 3]
    val = load_dataset("cinic10", tmp_path, train=False)
    assert len(val) == 4  # the paper evaluates on valid
    bad = base / "train" / "dog" / "2.png"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DataError, match=r"cannot decode image .*dog.2\.png: .*truncated or corrupt"):
        load_dataset("cinic10", tmp_path, train=True)


def test_cinic10_empty_class(tmp_path: Path) -> None:
    _png(tmp_path / "train" / "cat" / "0.png", 1)
    (tmp_path / "train" / "dog").mkdir()
    with pytest.raises(DataError, match=r"class 1 \('dog'\) has zero samples: .*dog holds no images"):
        load_dataset("cinic10", tmp_path, train=True)


def test_image_folder_lazy_decoding(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for c, name in enumerate(("ant", "bee", "cow")):
            for i in range(2):
                _png(tmp_path / split / name / f"{i}.jpg", 40 * c + i, size=(40, 30))
    ds = load_dataset("imagefolder", tmp_path, train=True)
    assert isinstance(ds, ImageFileDataset) and ds.classes == ["ant", "bee", "cow"] and ds.class_counts.tolist() == [2, 2, 2]
    x, label = ds[3]
    assert x.shape == (3, 30, 40) and x.dtype == torch.float32 and label == 1
    ds.transform = DATASETS["imagefolder"].train_augment()
    x, _ = ds[0]
    assert x.shape == (3, 224, 224)
    assert torch.equal(ds[0][0], x)  # same (seed, epoch, index) ⇒ same crop
    ds.set_epoch(1)
    assert not torch.equal(ds[0][0], x)
    sub = make_imbalanced(ds, "longtail", ratio=2, subset_seed=0)
    assert isinstance(sub, ImageFileDataset) and sub.class_counts.tolist() == [2, 1, 1]
    (tmp_path / "train" / "bee" / "0.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(DataError, match=r"cannot decode image .*bee.0\.jpg"):
        ds[2]


def _inat(root: Path, name: str, n_per: dict[int, int], *, extra: dict | None = None) -> None:
    images, annotations = [], []
    for cat, n in n_per.items():
        for i in range(n):
            image_id = len(images) + 100
            rel = f"train_val2018/K/{cat}/{i}.jpg"
            _png(root / rel, cat, size=(36, 28))
            images.append({"id": image_id, "file_name": rel, "width": 36, "height": 28})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": cat})
    meta = {"images": images, "annotations": annotations, "categories": [{"id": c, "name": f"sp{c}"} for c in (0, 1, 2)]}
    meta.update(extra or {})
    (root / name).write_text(json.dumps(meta))


def test_inat2018_json(tmp_path: Path) -> None:
    _inat(tmp_path, "train2018.json", {0: 4, 1: 2, 2: 1})
    _inat(tmp_path, "val2018.json", {0: 1, 1: 1, 2: 1})
    ds = load_dataset("inat2018", tmp_path, train=True)
    assert isinstance(ds, ImageFileDataset) and ds.class_counts.tolist() == [4, 2, 1] and ds.classes == ["sp0", "sp1", "sp2"]
    assert ds[6][0].shape == (3, 28, 36) and ds[6][1] == 2
    assert len(load_dataset("inat2018", tmp_path, train=False)) == 3


def test_inat2018_bad_json(tmp_path: Path) -> None:
    _inat(tmp_path, "train2018.json", {0: 1, 1: 1, 2: 1})
    path = tmp_path / "train2018.json"
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"cannot parse .*train2018.json: .*truncated or corrupt"):
        load_dataset("inat2018", tmp_path, train=True)
    _inat(tmp_path, "train2018.json", {0: 1, 1: 1, 7: 1})
    with pytest.raises(DataError, match=r"labels out of range in .*train2018.json: .*category_id 7"):
        load_dataset("inat2018", tmp_path, train=True)
    _inat(tmp_path, "train2018.json", {0: 1, 1: 1})
    with pytest.raises(DataError, match=r"class 2 \('sp2'\) has zero samples in .*train2018.json"):
        load_dataset("inat2018", tmp_path, train=True)
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match=r"train2018.json is not an iNaturalist annotation file"):
        load_dataset("inat2018", tmp_path, train=True)


def test_digits_embedded() -> None:
    train, test = load_dataset("digits", train=True), load_dataset("digits", train=False)
    assert train.x.shape[1:] == (8, 8, 1) and train.x.dtype == torch.uint8
    assert test.class_counts.tolist() == [50] * 10
    assert len(train) + len(test) == 1797
    lt = make_imbalanced(train, "longtail", ratio=10)
    assert lt.class_counts[0] == train.class_counts.min() and lt.class_counts[-1] == lt.class_counts[0] // 10


@pytest.mark.parametrize("name", ["blobs", "moons", "circles"])
def test_toys(name: str) -> None:
    train = load_dataset(name, train=True)
    assert train.x.shape == (2000, 2) and train.x.dtype == torch.float32 and train.class_counts.tolist() == [1000, 1000]
    assert torch.equal(train.x, load_dataset(name, train=True).x)
    assert make_imbalanced(train, "longtail", ratio=100).class_counts.tolist() == [1000, 10]
    assert load_dataset(name, train=False).class_counts.tolist() == [500, 500]


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_registry_contract(name: str) -> None:
    spec = DATASETS[name]
    assert spec.name == name and spec.kind in KINDS and spec.model
    if spec.kind == "vector":
        assert spec.mean is None and spec.train_augment() is None
    else:
        assert len(spec.mean) == len(spec.std) and spec.image_size
        assert spec.train_augment() is not None and spec.eval_transform() is not None
    expected_models = {"cifar10": "resnet32", "cifar100": "resnet32", "cinic10": "resnet18", "inat2018": "resnet50", "digits": "digits_cnn", "moons": "mlp"}
    if name in expected_models:
        assert spec.model == expected_models[name]
