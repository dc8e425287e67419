"""Augmented-batch throughput: remixup's batched tensor path against a per-image Pillow path, in one run.

Both paths produce the same thing from uint8 HWC CIFAR images: a float32 (B, 3, 32, 32) batch after a random
32x32 crop of the 4-pixel zero-padded image, a random horizontal flip and per-channel normalisation.

* tensor path: the whole set is one uint8 tensor on the device; each batch is one index gather plus
  :class:`remixup.data.BatchAugment` (one more gather and one fused multiply-add).
* Pillow path: what a conventional ``Dataset.__getitem__`` with RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor and Normalize does, one image at a time in Python, then a collate (``torch.stack``).

Usage (the CIFAR npz is optional; without it, random uint8 data of the same shape is used):

    .venv/bin/python benchmarks/bench_augment.py --npz ../shared/data/cifar10.npz [--device cuda] [--step]

``--step`` also times a ResNet-32 training step (forward, backward, SGD) on the same batch size, to show the
augmentation's share of a step.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from remixup.data import BatchAugment

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def load_images(npz: str | None, n: int) -> np.ndarray:
    if npz is None:
        return np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    with open(npz, "rb") as handle, np.load(handle, allow_pickle=False) as d:
        return np.ascontiguousarray(d["x_train"][:n])


def pillow_batch(images: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    mean = torch.tensor(MEAN)[:, None, None]
    std = torch.tensor(STD)[:, None, None]
    out = []
    for i in idx:
        img = ImageOps.expand(Image.fromarray(images[i]), border=4, fill=0)
        dx, dy = rng.integers(0, 9, size=2)
        img = img.crop((int(dx), int(dy), int(dx) + 32, int(dy) + 32))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        t = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32).div_(255.0)
        out.append((t - mean) / std)
    return torch.stack(out)


def timed(fn: Callable[[], object], seconds: float, sync: Callable[[], None]) -> tuple[int, float]:
    fn()  # warm-up
    sync()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    sync()
    return calls, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npz", help="CIFAR npz with x_train (N, 32, 32, 3) uint8; default: random data")
    parser.add_argument("--n", type=int, default=50_000, help="images held in memory (default 50000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    parser.add_argument("--step", action="store_true", help="also time a ResNet-32 training step")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    images = load_images(args.npz, args.n)
    x = torch.from_numpy(images).to(device)
    b = args.batch_size
    aug = BatchAugment(MEAN, STD)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g).to(device)
    state = {"pos": 0}

    def tensor_batch() -> torch.Tensor:
        start = state["pos"] % (len(x) - b)
        state["pos"] += b
        return aug(x.index_select(0, perm[start : start + b]), g)

    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))

    def pil_batch() -> torch.Tensor:
        start = state["pos"] % (len(images) - b)
        state["pos"] += b
        return pillow_batch(images, order[start : start + b], rng)

    source = args.npz or "random uint8 data"
    print(f"data: {source}, {len(images)} images; batch {b}; device {device}; torch threads {torch.get_num_threads()}")
    calls, secs = timed(tensor_batch, args.seconds, sync)
    tensor_ips = calls * b / secs
    calls, secs = timed(pil_batch, args.seconds, lambda: None)
    pil_ips = calls * b / secs
    print(f"tensor path (BatchAugment):   {tensor_ips:12,.0f} images/s   ({1e3 * b / tensor_ips:7.3f} ms/batch)")
    print(f"Pillow path (per image):      {pil_ips:12,.0f} images/s   ({1e3 * b / pil_ips:7.3f} ms/batch)")
    print(f"speed-up: {tensor_ips / pil_ips:.1f}x")

    if args.step:
        try:
            from remixup.models import build_model
        except ImportError:
            print("ResNet-32 step: remixup.models not available, skipped")
            return
        model = build_model("resnet32", 10).to(device).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        yb = torch.randint(0, 10, (b,), generator=g).to(device)
        xb = tensor_batch()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()

        calls, secs = timed(step, args.seconds, sync)
        step_ms = 1e3 * secs / calls
        aug_ms = 1e3 * b / tensor_ips
        print(f"ResNet-32 training step: {step_ms:.1f} ms/batch; augmentation = {100 * aug_ms / step_ms:.2f}% of a step")


if __name__ == "__main__":
    main()
