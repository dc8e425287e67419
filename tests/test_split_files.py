"""ImageNet-LT and Places-LT from a tiny synthetic folder with real-format split files; exact subsets as files
(`remixup data --export-indices`, `data.indices=FILE`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from remixup.cli import main
from remixup.data import load_dataset, make_imbalanced
from remixup.data.run import load_run_data, training_data_sha256
from remixup.errors import DataError

COUNTS = [105, 25, 6]  # one many-shot (> 100), one medium (20-100), one few-shot (< 20) class


def _image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((6, 6, 3), value, np.uint8)).save(path)


def _lt_folder(root: Path, kind: str) -> Path:
    """The OLTR layout: ImageNet-LT files in the root (train/<wnid>/...), Places-LT's in Places_LT/ (data_256/...)."""
    names = ["n01440764", "n01443537", "n01484850"] if kind == "imagenet" else ["airfield", "alley", "arcade"]
    prefix = "ImageNet_LT" if kind == "imagenet" else "Places_LT"
    folder = root if kind == "imagenet" else root / prefix
    folder.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for label, (name, n) in enumerate(zip(names, COUNTS, strict=True)):
        for i in range(n):
            rel = f"train/{name}/{name}_{i}.JPEG" if kind == "imagenet" else f"data_256/{name[0]}/{name}/{i:08d}.jpg"
            _image(root / rel, 40 * label + i % 7)
            lines["train"].append(f"{rel} {label}")
        for split, k in (("val", 2), ("test", 3)):
            for i in range(k):
                rel = f"val/{name}/ILSVRC_{split}_{label}_{i}.JPEG" if kind == "imagenet" else f"val_256/{split}_{label}_{i}.jpg"
                _image(root / rel, 40 * label)
                lines[split].append(f"{rel} {label}")
    for split, rows in lines.items():
        (folder / f"{prefix}_{split}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize("kind", ["imagenet", "places"])
def test_split_files_load(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _lt_folder(tmp_path, kind)
    name = f"{kind}_lt"
    train = load_dataset(name, root, split="train")
    assert train.class_counts.tolist() == COUNTS
    assert train.classes == (["n01440764", "n01443537", "n01484850"] if kind == "imagenet" else ["airfield", "alley", "arcade"])
    assert len(load_dataset(name, root, split="val")) == 6 and len(load_dataset(name, root, split="test")) == 9
    assert load_dataset(name, root, train=False).labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # many / medium / few by the usual thresholds
    assert main(["data", "--dataset", name, "--imbalance", "none", "--data-root", str(root), "--json"]) == 0
    shots = json.loads(capsys.readouterr().out)["shots"]
    assert shots == {"many": 1, "medium": 1, "few": 1}
    # the test split decodes through the evaluation transform
    data = load_run_data(name, str(root), device=torch.device("cpu"), imbalance="none")
    x, y = next(iter(data.eval_batches(batch_size=4, rank=0, world_size=1, channels_last=False, workers=0)))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 0, 1]


def test_bad_split_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split file not found"):
        load_dataset("imagenet_lt", tmp_path, train=True)
    (tmp_path / "ImageNet_LT_train.txt").write_text("train/a/1.jpg 0\ntrain/b/2.jpg\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: expected `relative/path label`"):
        load_dataset("imagenet_lt", tmp_path, train=True)
    (tmp_path / "ImageNet_LT_train.txt").write_text("train/a/1.jpg 0\ntrain/b/2.jpg 2\n", encoding="utf-8")
    with pytest.raises(DataError, match="class 1 has no training images"):
        load_dataset("imagenet_lt", tmp_path, train=True)
    with pytest.raises(ValueError, match="`split='val'` of `load_dataset` is for tables"):
        load_dataset("digits", None, split="val")


def test_export_indices_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "subset.json"
    argv = ["data", "--dataset", "digits", "--ratio", "10", "--subset-seed", "3", "--json", "--export-indices", str(path)]
    assert main(argv) == 0
    shown = json.loads(capsys.readouterr().out)
    saved = json.loads(path.read_text())
    full = load_dataset("digits", None, train=True)
    assert saved["class_counts"] == shown["counts"] and saved["data_sha256"] == training_data_sha256(full)
    data = load_run_data("digits", None, device=torch.device("cpu"), indices=str(path))
    assert data.class_counts.tolist() == saved["class_counts"] and data.data_sha256 == saved["data_sha256"]
    expected = make_imbalanced(full, "longtail", ratio=10, subset_seed=3)
    assert torch.equal(data.x_train, expected.x)  # type: ignore[attr-defined]  # the very samples, in the same order
    # another subset seed exports other samples with the same counts
    assert main(["data", "--dataset", "digits", "--ratio", "10", "--subset-seed", "4", "--export-indices", str(tmp_path / "b.json")]) == 0
    other = json.loads((tmp_path / "b.json").read_text())
    assert other["class_counts"] == saved["class_counts"] and other["indices"] != saved["indices"]
    # a file for other data, or edited, is refused
    for field, value in (("data_sha256", "0" * 64), ("class_counts", [1] * 10), ("indices", saved["indices"][:1] * 2)):
        bad = tmp_path / f"bad_{field}.json"
        bad.write_text(json.dumps({**saved, field: value}))
        with pytest.raises(DataError, match="indices file"):
            load_run_data("digits", None, device=torch.device("cpu"), indices=str(bad))


@pytest.mark.slow
def test_a_run_trains_on_exactly_the_exported_subset(tmp_path: Path) -> None:
    path = tmp_path / "subset.json"
    assert main(["data", "--dataset", "digits", "--ratio", "10", "--subset-seed", "5", "--export-indices", str(path)]) == 0
    saved = json.loads(path.read_text())
    out = tmp_path / "run"
    assert main(["train", "--dataset", "digits", "--method", "erm", "--recipe", "ldam", "--epochs", "1", "--no-progress",
                 "--out", str(out), "optim.batch_size=64", "run.threads=1", f"data.indices={path}"]) == 0  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["class_counts"] == saved["class_counts"] and summary["data_sha256"] == saved["data_sha256"]
    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "x"), f"data.indices={tmp_path / 'none.json'}"]) == 2
