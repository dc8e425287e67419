"""Batched augmentation against a per-image reference, determinism, layouts; the large-image transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from remixup.data import BatchAugment, RandomResizedCropFlip, ResizeCenterCrop, to_normalized_tensor

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def _batch(b: int = 16, h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, h, w, 3), generator=g, dtype=torch.uint8)


def _reference(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flips: torch.Tensor, p: int) -> torch.Tensor:
    """One image at a time, the obvious way: pad, slice, flip, normalise."""
    out = []
    m = torch.tensor(MEAN)[:, None, None]
    s = torch.tensor(STD)[:, None, None]
    for i in range(x.shape[0]):
        img = x[i].permute(2, 0, 1).float() / 255.0
        padded = torch.nn.functional.pad(img, (p, p, p, p))
        crop = padded[:, dy[i] : dy[i] + x.shape[1], dx[i] : dx[i] + x.shape[2]]
        if flips[i]:
            crop = crop.flip(-1)
        out.append((crop - m) / s)
    return torch.stack(out)


def test_matches_per_image_reference() -> None:
    x = _batch()
    aug = BatchAugment(MEAN, STD, padding=4, flip=True)
    out = aug(x, torch.Generator().manual_seed(3))
    dy, dx, flips = aug.sample(16, 32, 32, torch.Generator().manual_seed(3))
    assert out.shape == (16, 3, 32, 32) and out.dtype == torch.float32 and out.is_contiguous()
    assert torch.allclose(out, _reference(x, dy, dx, flips, 4), atol=1e-5)
    assert 0 < int(flips.sum()) < 16 and int(dy.max()) <= 8


def test_same_generator_same_batch_and_input_untouched() -> None:
    x = _batch()
    before = x.clone()
    aug = BatchAugment(MEAN, STD)
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, before)


def test_chw_input_and_channels_last() -> None:
    x = _batch()
    aug = BatchAugment(MEAN, STD, channels_last=True)
    hwc = aug(x, torch.Generator().manual_seed(5))
    chw = aug(x.permute(0, 3, 1, 2).contiguous(), torch.Generator().manual_seed(5))
    assert torch.equal(hwc, chw)
    assert hwc.is_contiguous(memory_format=torch.channels_last)


def test_normalise_only_and_grey_small_images() -> None:
    x = _batch(4)
    out = BatchAugment(MEAN, STD, padding=0, flip=False)(x)
    expected = (x.permute(0, 3, 1, 2).float() / 255 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    assert torch.allclose(out, expected, atol=1e-5)
    digits = torch.randint(0, 256, (5, 8, 8, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert BatchAugment((0.3,), (0.4,), padding=1, flip=False)(digits).shape == (5, 1, 8, 8)


def test_errors() -> None:
    aug = BatchAugment(MEAN, STD)
    with pytest.raises(TypeError, match=r"`x` of `BatchAugment` must be uint8"):
        aug(torch.zeros(2, 32, 32, 3))
    with pytest.raises(ValueError, match=r"`x` of `BatchAugment` must have 3 channels"):
        aug(torch.zeros(2, 32, 32, 5, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"`std` of `BatchAugment` must be positive"):
        BatchAugment(MEAN, (0.1, 0.0, 0.1))
    with pytest.raises(ValueError, match=r"`padding` of `BatchAugment` must be >= 0; got -1"):
        BatchAugment(MEAN, STD, padding=-1)


def _photo(w: int = 60, h: int = 45) -> Image.Image:
    arr = (np.add.outer(np.arange(h), 2 * np.arange(w)) % 256).astype(np.uint8)
    return Image.fromarray(np.stack([arr, 255 - arr, arr // 2], -1))


def test_random_resized_crop_flip() -> None:
    t = RandomResizedCropFlip(24)
    img = _photo()
    a = t(img, torch.Generator().manual_seed(0))
    assert a.shape == (3, 24, 24) and a.dtype == torch.float32
    assert torch.equal(a, t(img, torch.Generator().manual_seed(0)))
    seen = {t.sample(60, 45, torch.Generator().manual_seed(s)) for s in range(30)}
    assert len(seen) > 20
    for left, top, cw, ch, _ in seen:
        assert 0 <= left and left + cw <= 60 and 0 <= top and top + ch <= 45
        assert 0.08 * 60 * 45 * 0.8 <= cw * ch <= 60 * 45
    whole = RandomResizedCropFlip(24, scale=(1.0, 1.0), ratio=(60 / 45, 60 / 45), flip=False)
    assert whole.sample(60, 45, torch.Generator().manual_seed(0))[:4] == (0, 0, 60, 45)


def test_resize_center_crop() -> None:
    out = ResizeCenterCrop(32, resize=36)(_photo())
    assert out.shape == (3, 32, 32)
    x = to_normalized_tensor(_photo(4, 3), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert x.shape == (3, 3, 4) and float(x.max()) <= 1.0
