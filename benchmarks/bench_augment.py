"""Augmented-batch throughput: remixup's batched tensor path against a per-image Pillow path, in one run.

Both paths produce the same thing from uint8 HWC CIFAR images: a float32 (B, 3, 32, 32) batch after a random
32x32 crop of the 4-pixel zero-padded image, a random horizontal flip and per-channel normalisation.

* tensor path: the whole set is one uint8 tensor on the device; each batch is one index gather plus
  :class:`remixup.data.BatchAugment` (one more gather and one fused multiply-add).
* Pillow path: what a conventional ``Dataset.__getitem__`` with RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor and Normalize does, one image at a time in Python, then a collate (``torch.stack``).

Usage (the CIFAR npz is optional; without it, random uint8 data of the same shape is used):

    .venv/bin/python benchmarks/bench_augment.py --npz ~/.cache/remixup-shared-data/cifar10.npz [--device cuda] [--step]

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


def timed(fn: Callable[[], object], seconds: float, sync: Callable[[], None]) -> tuple[int, float, float]:
    """Call ``fn`` repeatedly for ``seconds``; returns (calls, wall seconds, CPU seconds of this process).

    CPU time is reported too because on a shared machine the wall time includes time spent descheduled; with one
    torch thread it measures the work itself.
    """
    fn()  # warm-up
    sync()
    calls, start, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    sync()
    return calls, time.perf_counter() - start, time.process_time() - cpu0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--npz", help="CIFAR npz with x_train (N, 32, 32, 3) uint8; default: random data")
    parser.add_argument("--n", type=int, default=50_000, help="images held in memory (default 50000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=6.0, help="time per path, split over the rounds")
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds (median reported)")
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
    # Alternate the two paths over several rounds and keep the median of each, so that a change in machine load
    # during the run affects both alike.
    runs: dict[str, list[tuple[float, float]]] = {"tensor": [], "pillow": []}
    for _ in range(args.rounds):
        for name, fn, fence in (("tensor", tensor_batch, sync), ("pillow", pil_batch, lambda: None)):
            calls, wall, cpu = timed(fn, args.seconds / args.rounds, fence)
            runs[name].append((calls * b / wall, calls * b / max(cpu, 1e-9)))
    med = {name: (float(np.median([r[0] for r in rs])), float(np.median([r[1] for r in rs]))) for name, rs in runs.items()}
    for name, label in (("tensor", "tensor path (BatchAugment)"), ("pillow", "Pillow path (per image)   ")):
        wall_ips, cpu_ips = med[name]
        print(f"{label}: {wall_ips:10,.0f} images/s wall ({1e3 * b / wall_ips:7.3f} ms/batch)   {cpu_ips:10,.0f} images/CPU-s")
    ratios = [t[0] / q[0] for t, q in zip(runs["tensor"], runs["pillow"], strict=True)]
    print(f"speed-up: {med['tensor'][0] / med['pillow'][0]:.1f}x wall (per round: {', '.join(f'{r:.1f}' for r in ratios)}), "
          f"{med['tensor'][1] / med['pillow'][1]:.1f}x per CPU-second")
    tensor_ips = med["tensor"][0]

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

        calls, secs, _ = timed(step, args.seconds / args.rounds, sync)
        step_ms = 1e3 * secs / calls
        aug_ms = 1e3 * b / tensor_ips
        print(f"ResNet-32 training step: {step_ms:.1f} ms/batch; augmentation = {100 * aug_ms / step_ms:.2f}% of a step")


if __name__ == "__main__":
    main()
