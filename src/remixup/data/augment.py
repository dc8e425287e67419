"""Augmentation: batched random crop + flip + normalisation for small images, and the per-image
random-resized-crop + flip pipeline (Pillow) for large images.

Like torchvision's v2 transforms, parameters are sampled first, from the given ``torch.Generator``, and then
applied; the input is never modified. Same generator state ⇒ same output, on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from remixup._validation import check_number
from remixup.errors import InvalidParameterError, InvalidTypeError


def _as_float_vector(values: Sequence[float], name: str, owner: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32)
    if t.ndim != 1 or t.numel() == 0:
        raise InvalidParameterError(f"`{name}` of `{owner}` must be one value per channel; got {list(values)!r}")
    return t


class BatchAugment:
    """Random crop (zero padding), horizontal flip and per-channel normalisation of a whole uint8 batch.

    For every image b: pad by p pixels of 0 on each side, take the H×W window at offsets
    (dy_b, dx_b) ~ U{0..2p}², mirror it left-right with probability ½, then
    out = (x / 255 − mean) / std per channel. All of it is one gather on the batch's device (no loop over
    images): a strided view holds every window of the padded batch (and of its mirror image) and one advanced
    index picks window (dy_b, dx_b) of image b. With ``padding=0, flip=False`` it only normalises (evaluation).

    Args:
        mean: per-channel mean, in [0, 1] units, length C.
        std: per-channel std, length C, positive.
        padding: p ≥ 0 pixels of zero padding; the crop keeps the input size.
        flip: mirror left-right with probability ½.
        channels_last: return the (B, C, H, W) result in channels-last memory format (faster convolutions on GPU).

    Call:
        ``aug(x, generator=None)``: x uint8 (B, H, W, C) or (B, C, H, W) (the layout whose channel axis has
        length C; HWC wins a tie); returns float32 (B, C, H, W) on x's device. Random parameters are drawn on
        the generator's device (CPU when none is given) and moved, so a seed gives the same batch on CPU and GPU.
    """

    def __init__(
        self, mean: Sequence[float], std: Sequence[float], *, padding: int = 4, flip: bool = True, channels_last: bool = False
    ) -> None:
        owner = "BatchAugment"
        self.mean = _as_float_vector(mean, "mean", owner)
        self.std = _as_float_vector(std, "std", owner)
        if self.std.numel() != self.mean.numel():
            raise InvalidParameterError(
                f"`std` of `{owner}` must have as many channels as `mean` ({self.mean.numel()}); got {self.std.numel()}"
            )
        if bool((self.std <= 0).any()):
            raise InvalidParameterError(f"`std` of `{owner}` must be positive; got {self.std.tolist()}")
        self.padding = check_number(padding, "padding", owner=owner, low=0, integer=True)
        self.flip = bool(flip)
        self.channels_last = bool(channels_last)

    def _to_hwc(self, x: torch.Tensor) -> torch.Tensor:
        c = self.mean.numel()
        if x.ndim != 4:
            raise InvalidParameterError(
                f"`x` of `BatchAugment` must be a batch (B, H, W, C) or (B, C, H, W); got shape {tuple(x.shape)}"
            )
        if x.shape[-1] == c:
            return x
        if x.shape[1] == c:
            return x.permute(0, 2, 3, 1)
        raise InvalidParameterError(f"`x` of `BatchAugment` must have {c} channels (first or last); got shape {tuple(x.shape)}")

    def sample(
        self, batch_size: int, height: int, width: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw the parameters: offsets dy, dx (B,) int64 in [0, 2p] and flip (B,) bool."""
        device = generator.device if generator is not None else torch.device("cpu")
        hi = 2 * self.padding + 1
        offsets = torch.randint(0, hi, (2, batch_size), generator=generator, device=device)
        if self.flip:
            flips = torch.rand(batch_size, generator=generator, device=device) < 0.5
        else:
            flips = torch.zeros(batch_size, dtype=torch.bool, device=device)
        return offsets[0], offsets[1], flips

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise InvalidTypeError(f"`x` of `BatchAugment` must be uint8 pixels 0..255; got {x.dtype}")
        hwc = self._to_hwc(x)
        b, h, w, c = hwc.shape
        dev = x.device
        p = self.padding
        if p or self.flip:
            dy, dx, flips = (t.to(dev, non_blocking=True) for t in self.sample(b, h, w, generator))
            padded = F.pad(hwc, (0, 0, p, p, p, p)).contiguous()  # (B, H+2p, W+2p, C), pads H and W only
            sel = torch.arange(b, device=dev)
            if self.flip:
                # crop(flip(img), 2p − dx) = flip(crop(img, dx)): the mirrored copies follow the originals, and a
                # flipped sample reads its window from the mirrored copy.
                padded = torch.cat([padded, padded.flip(2)])
                sel = sel + b * flips
                dx = torch.where(flips, 2 * p - dx, dx)
            # All (2p+1)² windows of every image as a view (no copy): windows[i, dy, dx] is image i's crop.
            st = padded.stride()
            windows = padded.as_strided(
                (padded.shape[0], 2 * p + 1, 2 * p + 1, h, w, c), (st[0], st[1], st[2], st[1], st[2], st[3])
            )
            hwc = windows[sel, dy, dx]  # (B, H, W, C): one gather
        scale = (1.0 / (255.0 * self.std)).to(dev)[:, None, None]
        shift = (self.mean / self.std).to(dev)[:, None, None]
        # One strided copy to float in the requested layout, then an in-place x/(255·std) − mean/std.
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        out = hwc.permute(0, 3, 1, 2).to(torch.float32, memory_format=fmt)
        return out.mul_(scale).sub_(shift)

    def __repr__(self) -> str:
        return f"BatchAugment(mean={self.mean.tolist()}, std={self.std.tolist()}, padding={self.padding}, flip={self.flip})"


def to_normalized_tensor(img: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A Pillow RGB image to float32 (C, H, W), (x / 255 − mean) / std."""
    arr = torch.from_numpy(np.array(img, dtype=np.uint8, copy=True))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    m = torch.as_tensor(mean, dtype=torch.float32)[:, None, None]
    s = torch.as_tensor(std, dtype=torch.float32)[:, None, None]
    return (arr.permute(2, 0, 1).to(torch.float32).div_(255.0) - m) / s


class RandomResizedCropFlip:
    """The standard large-image training transform: random resized crop, horizontal flip, normalise.

    The crop covers a share s ~ U(scale) of the image area with aspect ratio r, log r ~ U(log ratio); up to 10
    draws, then a centre crop with the aspect ratio clamped into ``ratio`` (as in Szegedy et al. 2015 and
    torchvision). The crop is resized to ``size``×``size`` with bilinear filtering by Pillow.

    Args:
        size: output side in pixels (224 for ResNet-50).
        mean, std: per-channel normalisation.
        scale: (min, max) area share, 0 < min ≤ max ≤ 1.
        ratio: (min, max) aspect ratio.
        flip: mirror with probability ½.

    Call:
        ``t(img, generator) -> Tensor`` float32 (3, size, size).
    """

    def __init__(
        self,
        size: int = 224,
        *,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        flip: bool = True,
    ) -> None:
        owner = "RandomResizedCropFlip"
        self.size = check_number(size, "size", owner=owner, low=1, integer=True)
        check_number(scale[0], "scale[0]", owner=owner, low=0.0, high=scale[1], low_open=True)
        check_number(scale[1], "scale[1]", owner=owner, high=1.0)
        check_number(ratio[0], "ratio[0]", owner=owner, low=0.0, high=ratio[1], low_open=True)
        self.mean, self.std, self.scale, self.ratio, self.flip = tuple(mean), tuple(std), tuple(scale), tuple(ratio), bool(flip)

    def sample(self, width: int, height: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int, bool]:
        """Draw (left, top, crop width, crop height, flip)."""
        area = width * height
        log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
        u = torch.rand(10, 3, generator=generator).tolist()
        flip = self.flip and torch.rand(1, generator=generator).item() < 0.5
        for s_u, r_u, pos_u in u:
            target = area * (self.scale[0] + (self.scale[1] - self.scale[0]) * s_u)
            aspect = math.exp(log_lo + (log_hi - log_lo) * r_u)
            cw = int(round(math.sqrt(target * aspect)))
            ch = int(round(math.sqrt(target / aspect)))
            if 0 < cw <= width and 0 < ch <= height:
                # One uniform draw split into two independent positions (base width+1 digits).
                pos = int(pos_u * (width - cw + 1) * (height - ch + 1))
                left, top = pos % (width - cw + 1), pos // (width - cw + 1)
                return left, top, cw, ch, flip
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            cw, ch = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = height, int(round(height * self.ratio[1]))
        else:
            cw, ch = width, height
        return (width - cw) // 2, (height - ch) // 2, cw, ch, flip

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        left, top, cw, ch, flip = self.sample(img.width, img.height, generator)
        out = img.resize((self.size, self.size), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))
        if flip:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return to_normalized_tensor(out, self.mean, self.std)


class ResizeCenterCrop:
    """The standard large-image evaluation transform: resize the short side to ``resize``, centre-crop ``size``.

    Call: ``t(img, generator=None) -> Tensor`` float32 (3, size, size); the generator is ignored.
    """

    def __init__(
        self,
        size: int = 224,
        *,
        resize: int = 256,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ) -> None:
        self.size = check_number(size, "size", owner="ResizeCenterCrop", low=1, integer=True)
        self.resize = check_number(resize, "resize", owner="ResizeCenterCrop", low=size, integer=True)
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        scale = self.resize / min(img.width, img.height)
        w, h = max(self.size, round(img.width * scale)), max(self.size, round(img.height * scale))
        img = img.resize((w, h), Image.Resampling.BILINEAR)
        left, top = (w - self.size) // 2, (h - self.size) // 2
        return to_normalized_tensor(img.crop((left, top, left + self.size, top + self.size)), self.mean, self.std)
