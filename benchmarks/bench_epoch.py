"""One epoch of Remix on CIFAR-10 LT-100 (ResNet-32, batch 128): remixup's path against a conventional pipeline.

* remixup: ``remixup.engine.train_one_epoch`` over a ``TensorLoader`` (the whole uint8 training set as one tensor,
  batched crop/flip/normalise in one gather, Remix mixing), with the CPU defaults of ``run.amp``,
  ``run.channels_last`` and ``run.threads`` (auto: ``remixup.runtime.ThreadChooser`` before each timed epoch, as the
  engine does before each epoch; ``--threads N`` fixes it).
* conventional (written here): a map-style ``Dataset`` that makes a Pillow image per sample, pads it by 4,
  crops 32x32 at a random offset, flips it with probability 1/2, converts to a tensor and normalises; a
  ``DataLoader`` with worker processes (``--workers``, 2 by default); Remix mixing written the usual way
  (``np.random.beta``, ``torch.randperm``, the Remix rule on the batch's class counts); the same ResNet-32 (same
  initialisation), the same SGD, soft-target cross-entropy; fp32, NCHW; torch's default thread count (what a
  script that does not set it gets; ``--baseline-threads same`` gives it remixup's load-aware choice instead).

End to end means from asking for the first batch (worker start-up included) to the optimizer step of the last
one. The two run in the order A B B A (``--rounds`` pairs) and the times are summed per pipeline, so a change in
machine load hits both alike. ``--max-steps`` times that many steps per epoch (0: the whole epoch, 96 steps).

    .venv/bin/python benchmarks/bench_epoch.py [--npz PATH] [--max-steps 24] [--workers 2] [--rounds 1] [--baseline-threads torch|same|N]

Target: remixup ≥ 1.5x faster end to end.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

TORCH_THREADS = torch.get_num_threads()  # torch's choice (physical cores), read before anything here changes it

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Trainer, add_common_args, build_run_model, config_for, find_npz, machine, set_threads  # noqa: E402


class PilCifar(Dataset):
    """The conventional map-style dataset: one Pillow image per sample, per-image random crop (pad 4) and flip."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, mean, std) -> None:  # noqa: ANN001
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(std, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):  # noqa: ANN204
        img = ImageOps.expand(Image.fromarray(self.images[i]), border=4, fill=0)
        dx, dy = np.random.randint(0, 9, size=2)
        img = img.crop((int(dx), int(dy), int(dx) + 32, int(dy) + 32))
        if np.random.rand() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
        return (x - self.mean) / self.std, int(self.labels[i])


def _seed_worker(worker_id: int) -> None:
    np.random.seed((torch.initial_seed() + worker_id) % 2**32)


def conventional_epoch(model, optimizer, loader, counts: torch.Tensor, max_steps: int) -> int:  # noqa: ANN001
    """The usual loop: batches from the DataLoader, Remix mixing in the loop, fp32 forward/backward/step."""
    model.train()
    seen = 0
    for x, y in itertools.islice(loader, max_steps or None):
        lam = float(np.random.beta(1.0, 1.0))
        perm = torch.randperm(x.shape[0])
        x_mixed = lam * x + (1 - lam) * x[perm]
        n_i, n_j = counts[y].double(), counts[y[perm]].double()
        lam_y = torch.full((x.shape[0],), lam, dtype=torch.float64)
        lam_y[(n_i / n_j >= 3.0) & (lam < 0.5)] = 0.0
        lam_y[(n_j / n_i >= 3.0) & (1 - lam < 0.5)] = 1.0
        target = lam_y[:, None].float() * F.one_hot(y, 10).float() + (1 - lam_y[:, None].float()) * F.one_hot(y[perm], 10).float()
        logits = model(x_mixed)
        loss = -(target * F.log_softmax(logits, 1)).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += x.shape[0]
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--max-steps", type=int, default=24, help="steps per timed epoch (0: the whole epoch)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1, help="A B B A repetitions")
    p.add_argument("--baseline-threads", default="torch", help="torch threads of the conventional pipeline: 'torch' "
                   "(torch's default, what a script that does not set them gets), 'same' (remixup's choice) or a number")
    p.add_argument("--processes", action="store_true", help="time every epoch in a fresh process (after a 2-step "
                   "warm-up), so that process-wide settings apply to one pipeline only: remixup's run.malloc=auto "
                   "(benchmarks/bench_malloc.py) is then on for remixup and off for the conventional pipeline")
    p.add_argument("--only", choices=("remixup", "conventional"), help=argparse.SUPPRESS)  # a child of --processes
    args = p.parse_args()
    if args.processes:
        return run_in_processes(args)
    if args.only == "remixup":
        from remixup.runtime import tune_malloc

        tune_malloc()  # what `remixup train` does on the CPU (run.malloc=auto), before the data is loaded
    npz = find_npz(args.npz)
    n = set_threads(args.threads)
    cfg = config_for(npz, "remix", seed=args.seed)
    ours = Trainer(cfg)
    data = ours.data
    # The baseline: same architecture and initialisation (a second copy), the same SGD settings, fp32 NCHW.
    from remixup import runtime

    model, _ = build_run_model(cfg, data, ours.method)
    o = cfg.optim
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=o.momentum, weight_decay=o.weight_decay)
    ds = PilCifar(data.x_train.numpy(), data.y_train.numpy(), data.spec.mean, data.spec.std)
    g = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(ds, batch_size=o.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                        worker_init_fn=_seed_worker, generator=g)  # fmt: skip
    steps = args.max_steps or len(loader)
    nb = {"torch": TORCH_THREADS, "same": n}.get(args.baseline_threads) or int(args.baseline_threads)
    print(f"machine: {machine()}; torch threads: remixup {n} (run.threads=auto unless --threads), conventional {nb}; "
          f"DataLoader workers {args.workers}")  # fmt: skip
    print(f"{len(ds)} LT-100 images, {steps} steps of {o.batch_size} per timed epoch; remixup amp={ours.amp} channels_last={ours.channels_last}")

    def run_ours() -> float:
        if args.threads <= 0:  # as the engine does before an epoch: run.threads=auto on a fresh sample of the machine
            print(f"  remixup threads for this epoch: {runtime.ThreadChooser()()}", flush=True)
        ours.loader.set_epoch(ours.batches.epoch)
        ours.batches.epoch += 1
        ours.batches._it = None  # a fresh epoch, as the engine starts one
        t0 = time.perf_counter()
        ours.step(steps)
        return time.perf_counter() - t0

    def run_conventional() -> float:
        torch.set_num_threads(nb)
        t0 = time.perf_counter()
        conventional_epoch(model, optimizer, loader, data.class_counts, steps)
        return time.perf_counter() - t0

    if args.only:  # a child of --processes: warm up, time one epoch, report it
        run, warm = (run_ours, lambda: ours.step(2)) if args.only == "remixup" else (
            run_conventional, lambda: conventional_epoch(model, optimizer, loader, data.class_counts, 2))
        warm()
        print(f"SECONDS {run()}")
        return None

    totals = {"remixup": 0.0, "conventional": 0.0}
    for r in range(args.rounds):
        for name in ("remixup", "conventional", "conventional", "remixup"):
            secs = (run_ours if name == "remixup" else run_conventional)()
            totals[name] += secs
            print(f"  round {r + 1} {name:<13s} {secs:7.1f} s  {steps * o.batch_size / secs:6.0f} img/s", flush=True)
    reps = 2 * args.rounds
    a, b = totals["remixup"] / reps, totals["conventional"] / reps
    print(f"remixup {a:.1f} s ({steps * o.batch_size / a:.0f} img/s), conventional {b:.1f} s ({steps * o.batch_size / b:.0f} img/s) "
          f"per {steps}-step epoch")  # fmt: skip
    print(f"speed-up remixup vs conventional: {b / a:.2f}x (target >= 1.5x)")
    # Where the conventional pipeline's data work goes: one batch of Pillow samples + collate, in this process.
    from torch.utils.data import default_collate

    t0 = time.perf_counter()
    for r in range(5):
        default_collate([ds[(r * o.batch_size + i) % len(ds)] for i in range(o.batch_size)])
    per_batch = (time.perf_counter() - t0) / 5
    print(f"conventional data path: {per_batch * 1e3:.1f} ms per batch of {o.batch_size} in one process "
          f"({per_batch * steps * o.batch_size / o.batch_size / b * 100:.1f}% of its epoch time, spread over {args.workers} workers)")
    print(f"machine at the end: {machine()}")


def run_in_processes(args: argparse.Namespace) -> None:
    """A B B A over fresh processes (``--only``), times summed per pipeline as in the in-process mode."""
    import subprocess
    import sys

    passthrough = [a for a in sys.argv[1:] if a != "--processes"]
    print(f"machine: {machine()}; every timed epoch in its own process (remixup with run.malloc=auto)", flush=True)
    totals = {"remixup": 0.0, "conventional": 0.0}
    imgs = None
    for r in range(args.rounds):
        for name in ("remixup", "conventional", "conventional", "remixup"):
            out = subprocess.run([sys.executable, __file__, *passthrough, "--only", name], capture_output=True, text=True, check=True)
            secs = float(out.stdout.rsplit("SECONDS", 1)[1])
            imgs = imgs or int(out.stdout.split(" steps of ")[0].split(", ")[-1]) * int(out.stdout.split(" steps of ")[1].split()[0])
            totals[name] += secs
            print(f"  round {r + 1} {name:<13s} {secs:7.1f} s  {imgs / secs:6.0f} img/s", flush=True)
    reps = 2 * args.rounds
    a, b = totals["remixup"] / reps, totals["conventional"] / reps
    print(f"remixup {a:.1f} s ({imgs / a:.0f} img/s), conventional {b:.1f} s ({imgs / b:.0f} img/s) per epoch")
    print(f"speed-up remixup vs conventional: {b / a:.2f}x (target >= 1.5x)")
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
