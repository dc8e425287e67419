"""Fused runs on the CPU: K runs trained as one stacked model (remixup.fused) against the same K runs one after another.

All variants run the real loops on CIFAR-10 LT-100, ResNet-32, batch 128 per run: the sequential one calls
``remixup.engine.train_one_epoch`` for each run in turn, the fused ones ``remixup.fused.FusedGroup.train_epoch``
with the stacked model (``strategy="stack"``) and with the loop over the runs' own models (``"loop"``); each
run has its own method, seed, loader, mixing and loss, set up by ``remixup.engine.Training``. Timings are
interleaved (see _common.py) and reported as images/s per run and the ratio fused / sequential.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_fused_cpu.py --npz ~/.cache/remixup-shared-data/cifar10.npz
    PYTHONPATH=src .venv/bin/python benchmarks/bench_fused_cpu.py --k 4 --steps 3 --repeats 5 --threads 2
    PYTHONPATH=src .venv/bin/python benchmarks/bench_fused_cpu.py --smoke    # every variant once, synthetic data

``--smoke`` runs every variant once on a few synthetic CIFAR-shaped images (K = 2, batch 8, one thread) to check
that the benchmark runs; its numbers mean nothing. Any variant that fails makes the script exit non-zero.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    Take,
    add_common_args,
    config_for,
    find_npz,
    interleave,
    machine,
    median,
    set_threads,
    spread,
    synthetic_cifar10,
)

METHODS = ("remix-drw", "erm", "cutmix", "remix", "mixup", "drs", "remix-rs", "focal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--k", type=int, default=4, help="runs per group (default 4)")
    parser.add_argument("--steps", type=int, default=3, help="steps per run per timing (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--batch", type=int, default=128, help="batch size per run (default 128)")
    parser.add_argument("--smoke", action="store_true", help="synthetic data, K=2, batch 8, one step, one round")
    args = parser.parse_args()
    from remixup import engine
    from remixup.fused import FusedGroup
    from remixup.runtime import Dist

    tmp = Path(tempfile.mkdtemp(prefix="bench_fused_"))
    if args.smoke:
        args.k, args.steps, args.repeats, args.batch, args.threads = 2, 1, 1, 8, 1
        npz = synthetic_cifar10(tmp / "data" / "cifar10.npz")
    else:
        npz = find_npz(args.npz)
    threads = set_threads(args.threads)

    def setup(tag: str) -> list[engine.Training]:
        runs = []
        for k in range(args.k):
            config = config_for(npz, METHODS[k % len(METHODS)], seed=k, out=tmp / f"{tag}{k}", threads=threads,
                                progress="false", tensorboard="false")  # fmt: skip
            config.optim.batch_size = args.batch
            run = engine.Training(config, Dist(), torch.device("cpu"))
            assert run.setup(resume=False, model=None, fork=None) is None
            run.begin_epoch(0)  # the epoch's learning rate, balancing and seeds, as the engine sets them
            runs.append(run)
        return runs

    alone, together, looped = setup("s"), setup("f"), setup("l")
    group = FusedGroup(together, precision=together[0].precision, strategy="stack")
    loop = FusedGroup(looped, precision=looped[0].precision, strategy="loop")
    takes = [Take(run.loader, args.steps) for run in alone]
    for run in together + looped:
        run.loader = Take(run.loader, args.steps)  # type: ignore[assignment]
    cl = alone[0].precision.channels_last

    def sequential() -> None:
        for run, take in zip(alone, takes, strict=True):
            engine.train_one_epoch(run.model, take, run.mixing, run.criterion, run.optimizer, amp=False, channels_last=cl,
                                   bar=None, world=Dist())  # fmt: skip

    def stacked() -> None:
        group.train_epoch()

    def looping() -> None:
        loop.train_epoch()

    variants = {"sequential": sequential, "fused, strategy=stack": stacked, "fused, strategy=loop (the CPU default)": looping}
    times = interleave(variants, warmup=0 if args.smoke else 1, repeats=args.repeats, label="fused-cpu")
    images = args.k * args.steps * args.batch
    print(f"# {machine()}")
    print(f"# CIFAR-10 LT-100, ResNet-32, batch {args.batch} per run, K = {args.k} runs ({', '.join(r.method.name for r in alone)}),"
          f" {args.steps} steps per run per timing, {threads} threads")  # fmt: skip
    print("| variant | time for K runs × steps | images/s, all K runs | ratio to sequential |")
    print("|---|---|---|---|")
    base = median(times["sequential"])
    for name, ts in times.items():
        print(f"| {name} | {spread(ts)} | {images / median(ts):.0f} | {base / median(ts):.2f} |")


if __name__ == "__main__":
    main()
