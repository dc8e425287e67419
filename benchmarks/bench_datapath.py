"""Share of a CPU training step spent in the data path: index sampling, batched augmentation and mixing.

The data path of one step is what ``remixup.engine`` runs before the forward pass: this epoch's index order
(``TensorLoader.indices()``, a seeded permutation, its cost spread over the epoch's steps), the batch gather
(``index_select`` of uint8 images and labels), ``BatchAugment`` (pad-4 random crop, flip, normalise, in one
gather) and the Remix mixing (λ ~ Beta, permutation, lerp, Remix label rule, soft targets). It is timed alone,
interleaved with whole training steps (``remixup.engine.train_one_epoch`` over one batch, which includes it), on
ResNet-32, batch 128, CIFAR-10 LT-100, the CPU defaults.

    .venv/bin/python benchmarks/bench_datapath.py [--npz PATH] [--repeats 15]

Target: data path ≤ 5% of the step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Trainer, add_common_args, config_for, find_npz, interleave, machine, median, set_threads, spread  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    p.add_argument("--batches", type=int, default=20, help="data-path batches per timed call (short calls time badly)")
    args = p.parse_args()
    npz = find_npz(args.npz)
    n = set_threads(args.threads)
    cfg = config_for(npz, "remix", seed=args.seed)
    t = Trainer(cfg)
    loader, bs = t.loader, cfg.optim.batch_size
    print(f"machine: {machine()}; benchmark threads {n}")
    print(f"ResNet-32, batch {bs}, {t.data.y_train.numel()} LT-100 images, amp={t.amp}, channels_last={t.channels_last}")
    steps_per_epoch = len(loader)
    state = {"epoch": 0}

    def indices() -> None:
        loader.set_epoch(state["epoch"])
        state["epoch"] += 1
        loader.indices()

    order = loader.indices()

    def data_path() -> None:
        for i in range(args.batches):
            idx = order[(i % steps_per_epoch) * bs : (i % steps_per_epoch + 1) * bs]
            xb, yb = loader.x.index_select(0, idx), loader.y.index_select(0, idx)
            xb = loader.augment(xb, t.mix_gen)
            t.mixing(xb, yb)

    times = interleave({"train step": lambda: t.step(1), f"data path x{args.batches}": data_path, "indices (per epoch)": indices},
                       warmup=2, repeats=args.repeats, label="rounds")  # fmt: skip
    step = median(times["train step"])
    per_batch = median(times[f"data path x{args.batches}"]) / args.batches
    idx_share = median(times["indices (per epoch)"]) / steps_per_epoch
    for name, ts in times.items():
        print(f"  {name:<22s} {spread(ts)}")
    # Parts, each alone on one batch, for the table.
    idx = order[:bs]
    parts = {}
    for name, fn in (("gather", lambda: (loader.x.index_select(0, idx), loader.y.index_select(0, idx))),
                     ("augment", lambda: loader.augment(loader.x.index_select(0, idx), t.mix_gen))):  # fmt: skip
        t0 = time.perf_counter()
        for _ in range(200):
            fn()
        parts[name] = (time.perf_counter() - t0) / 200
    xb = loader.augment(loader.x.index_select(0, idx), t.mix_gen)
    yb = loader.y.index_select(0, idx)
    t0 = time.perf_counter()
    for _ in range(200):
        t.mixing(xb, yb)
    parts["mixing"] = (time.perf_counter() - t0) / 200
    parts["augment"] -= parts["gather"]
    print("  parts (200 calls each): " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in parts.items())
          + f", indices {idx_share * 1e3:.4f} ms per step")  # fmt: skip
    share = (per_batch + idx_share) / step
    print(f"data path per step {(per_batch + idx_share) * 1e3:.2f} ms of a {step * 1e3:.1f} ms step: {share * 100:.2f}% (target <= 5%)")
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
