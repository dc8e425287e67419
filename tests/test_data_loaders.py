"""TensorLoader (whole set on the device) and the DataLoader path for image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from remixup.balancing import ClassBalancedSampler
from remixup.data import BatchAugment, ImageFileDataset, RandomResizedCropFlip, TensorLoader, make_image_loader
from remixup.errors import DataError


def _data(n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(n, 32, 32, 3, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.uint8)  # the index, readable back without augmentation
    y = torch.arange(n) % 3
    return x, y


def test_epoch_covers_every_index_once() -> None:
    x, y = _data()
    loader = TensorLoader(x, y, batch_size=16, shuffle=True, seed=0)
    assert len(loader) == 4
    seen = []
    for xb, yb in loader:
        assert xb.dtype == torch.float32 and yb.dtype == torch.int64
        ids = xb[:, 0, 0, 0].long()
        assert torch.equal(yb, ids % 3)
        seen += ids.tolist()
    assert sorted(seen) == list(range(50)) and seen != list(range(50))


def test_order_depends_on_seed_and_epoch_only() -> None:
    x, y = _data()
    a = TensorLoader(x, y, batch_size=10, seed=4)
    b = TensorLoader(x, y, batch_size=10, seed=4)
    a.set_epoch(3)
    for _ in b:  # iterating other epochs first must not matter (resume)
        pass
    b.set_epoch(3)
    assert torch.equal(a.indices(), b.indices())
    a.set_epoch(4)
    assert not torch.equal(a.indices(), b.indices())
    assert torch.equal(TensorLoader(x, y, batch_size=10, shuffle=False).indices(), torch.arange(50))


def test_augmented_batches_are_reproducible_and_drop_last() -> None:
    x, y = _data()
    aug = BatchAugment((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    loader = TensorLoader(x, y, batch_size=16, drop_last=True, augment=aug, seed=1)
    first = [xb for xb, _ in loader]
    again = [xb for xb, _ in loader]
    assert len(first) == 3 and all(b.shape == (16, 3, 32, 32) for b in first)
    assert all(torch.equal(p, q) for p, q in zip(first, again, strict=False))


def test_ranks_partition_the_epoch() -> None:
    x, y = _data(50)
    shards = [TensorLoader(x, y, batch_size=8, world_size=4, rank=r, seed=2).indices() for r in range(4)]
    assert all(len(s) == 13 for s in shards)
    glued = torch.stack(shards, 1).reshape(-1)
    assert set(glued.tolist()) == set(range(50)) and len(glued) == 52


def test_class_balanced_sampler_and_deferral() -> None:
    x, y = _data(60)
    counts = torch.bincount(y).tolist()
    loader = TensorLoader(x, y, batch_size=20, seed=0)
    plain = loader.indices()
    loader.sampler = ClassBalancedSampler(y, counts, num_samples=40, seed=0)  # switched on at an epoch boundary (DRS)
    loader.set_epoch(1)
    assert len(loader) == 2
    idx = loader.indices()
    assert len(idx) == 40 and not torch.equal(idx, plain[:40])
    assert sum(xb.shape[0] for xb, _ in loader) == 40


def test_vectors_pass_through_and_errors() -> None:
    xv = torch.randn(10, 2)
    yv = torch.arange(10) % 2
    (xb, yb), *_ = list(TensorLoader(xv, yv, batch_size=4, shuffle=False))
    assert torch.equal(xb, xv[:4])
    with pytest.raises(DataError, match=r"`x` and `y` of `TensorLoader` must hold N samples and N labels"):
        TensorLoader(xv, yv[:5], batch_size=4)
    with pytest.raises(ValueError, match=r"`batch_size` of `TensorLoader` must be >= 1; got 0"):
        TensorLoader(xv, yv, batch_size=0)


def test_image_loader_is_reproducible(tmp_path: Path) -> None:
    paths = []
    for i in range(6):
        arr = ((np.add.outer(np.arange(20), np.arange(30)) * (i + 1)) % 256).astype(np.uint8)
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(arr).save(paths[-1])
    ds = ImageFileDataset(paths, [0, 1, 0, 1, 0, 1], ["a", "b"], transform=RandomResizedCropFlip(16), seed=3)
    batches = lambda: [(xb, yb) for xb, yb in make_image_loader(ds, batch_size=4, num_workers=0, seed=1)]  # noqa: E731
    a, b = batches(), batches()
    assert a[0][0].shape == (4, 3, 16, 16) and a[0][1].dtype == torch.int64 and len(a) == 2
    # the order comes from the loader's generator; each sample's crop from (seed, epoch, index)
    assert sum(int(yb.sum()) for _, yb in a) == 3
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b, strict=False))
    assert torch.equal(ds[2][0], ds[2][0])
    with pytest.raises(DataError, match=r"image file not found: .*missing.png"):
        ImageFileDataset([tmp_path / "missing.png"], [0], ["a"])[0]


def test_generator_supplies_the_base_seed() -> None:
    x, y = _data()
    a = TensorLoader(x, y, batch_size=10, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.indices(), TensorLoader(x, y, batch_size=10, seed=9).indices())


def test_ddp_ranks_augment_independently():
    import torch

    from remixup.data import BatchAugment, TensorLoader

    x = torch.full((8, 8, 8, 3), 200, dtype=torch.uint8)
    y = torch.zeros(8, dtype=torch.int64)
    aug = BatchAugment((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), padding=2)
    # identical images everywhere, so only the augmentation can tell the ranks' batches apart
    batches = [next(iter(TensorLoader(x, y, batch_size=4, shuffle=False, augment=aug, rank=r, world_size=2))) for r in (0, 1)]
    assert not torch.equal(batches[0][0], batches[1][0])
    single = next(iter(TensorLoader(x, y, batch_size=4, shuffle=False, augment=aug)))
    assert torch.equal(single[0], batches[0][0])  # rank 0 draws what a single process draws


def test_in_memory_images_without_augmentation_are_normalised_as_for_evaluation() -> None:
    """data.augment=false on images: the training batches get the evaluation's normalisation (no crop or flip), not
    raw pixel values."""
    from remixup.data.run import load_run_data

    data = load_run_data("digits", "", device=torch.device("cpu"), imbalance="none", ratio=1.0)
    loader = data.train_loader(batch_size=64, seed=0, rank=0, world_size=1, augment=False, channels_last=False, workers=0)
    train = torch.cat([x for x, _ in loader])
    test = torch.cat([x for x, _ in data.eval_batches(batch_size=256, rank=0, world_size=1, channels_last=False, workers=0)])
    assert train.dtype == torch.float32 and train.shape[1:] == test.shape[1:]
    assert abs(float(train.mean()) - float(test.mean())) < 0.1 and abs(float(train.std()) - float(test.std())) < 0.1
