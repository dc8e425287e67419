"""Remix against ERM: time of one training step, same model, optimizer and batch stream, measured interleaved.

A step is ``remixup.engine.train_one_epoch`` over one batch of 128 CIFAR-10 LT-100 images (ResNet-32, the CPU
defaults of ``run.amp``/``run.channels_last``): index gather, batched crop/flip/normalise, then for Remix the
Mixup mixing and the Remix label rule, forward, loss, backward, SGD step and the on-device statistics. ERM runs the
same model and optimizer on the clean batch (soft-target CE on (B, C) targets for Remix, hard labels for ERM).
An ERM-against-ERM pair (``erm (A/A)``) shows how much two identical variants differ on this machine right now.

    .venv/bin/python benchmarks/bench_step.py [--npz PATH] [--repeats 20] [--steps-per-call 2] [--amp auto|bf16|off] [--profile 5]

Target: Remix / ERM ≤ 1.02.
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
    p.add_argument("--repeats", type=int, default=20, help="interleaved rounds (each runs every variant once)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps-per-call", type=int, default=2, help="steps per timed call (longer calls average out bursts)")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--profile", type=int, default=0, help="also profile this many Remix steps (torch.profiler table)")
    p.add_argument("--profile-rows", type=int, default=20)
    args = p.parse_args()
    npz = find_npz(args.npz)
    n = set_threads(args.threads)
    cfg = config_for(npz, "remix", seed=args.seed, amp=args.amp, channels_last=args.channels_last)
    t = Trainer(cfg)
    print(f"machine: {machine()}; benchmark threads {n}")
    print(f"ResNet-32, batch {cfg.optim.batch_size}, {t.data.y_train.numel()} LT-100 images, amp={t.amp}, channels_last={t.channels_last}")

    k = args.steps_per_call
    times = interleave({"erm": lambda: t.step(k, mix=False), "remix": lambda: t.step(k), "erm (A/A)": lambda: t.step(k, mix=False)},
                       warmup=args.warmup, repeats=args.repeats, label="steps")  # fmt: skip
    times = {name: [v / k for v in ts] for name, ts in times.items()}  # per step
    for name, ts in times.items():
        print(f"  {name:<10s} {spread(ts)}")
    # The mixing alone (mix + Remix labels + soft targets) on one augmented batch, many times: its own cost.
    x, y = next(iter(t.loader))
    calls = 200
    t0 = time.perf_counter()
    for _ in range(calls):
        t.mixing(x, y)
    mix_ms = (time.perf_counter() - t0) / calls * 1e3
    erm, remix, aa = (median(times[k]) for k in ("erm", "remix", "erm (A/A)"))
    print(f"  mixing alone (Mixup + Remix labels + soft targets, B={x.shape[0]}): {mix_ms:.3f} ms per batch "
          f"= {mix_ms / (erm * 1e3) * 100:.2f}% of the ERM step")  # fmt: skip
    # Paired per round: each round ran ERM, Remix and ERM again (mirrored in the next round), so the ratio of Remix
    # to the mean of its two ERM neighbours cancels load that drifts over seconds; the median over rounds is robust.
    paired = median([r / ((e + a) / 2) for e, r, a in zip(times["erm"], times["remix"], times["erm (A/A)"], strict=True)])
    control = median([a / e for e, a in zip(times["erm"], times["erm (A/A)"], strict=True)])
    print(f"remix / erm step time: {paired:.3f} (median of per-round ratios; target <= 1.02); "
          f"A/A control erm/erm: {control:.3f}; ratio of medians {remix / ((erm + aa) / 2):.3f}")
    # What Remix adds to an ERM step is the mixing call (the forward/backward are the same size; the soft-target
    # loss differs by a (B, C) product): timed alone it bounds the true ratio far below the noise of whole steps.
    print(f"remix / erm from the parts: 1 + mixing / ERM step = {1 + mix_ms / (erm * 1e3):.4f}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t.step(args.profile)
        print(f"\ntorch.profiler, {args.profile} Remix training steps, top ops by self CPU time:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    main()
