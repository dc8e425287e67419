"""Which CPU settings make a ResNet-32 Remix step on CIFAR-10 LT-100 fastest: measured, interleaved, one run.

Sections (``--only`` picks some; ``layout,threads,eval`` by default, under 3 minutes on the 2-core machine when
it is not overloaded; ``compile`` alone takes a few minutes, most of it compiling):

* ``layout``: the training step (``remixup.engine.train_one_epoch`` over one batch of 128: gather, augment, Remix,
  forward, loss, backward, SGD) in fp32 NCHW, fp32 channels_last, bf16 autocast NCHW and bf16 channels_last.
* ``threads``: the same step (the default layout) with 1 and with all of torch's default threads.
* ``eval``: ``remixup.engine.evaluate`` over ``--eval-images`` test images at batch sizes 128, 256, 512, 1024.
* ``compile``: eager against ``torch.compile(model)``; the compile time (first steps) is reported separately.
* ``accuracy``: short real runs, fp32 against bf16 autocast (same seeds, same data, ``remixup.engine.train``):
  Remix for ``--acc-epochs`` epochs on ``--acc-dataset`` (digits ρ=50 by default; ``cifar10`` is LT-100, far too
  slow under bf16 on a CPU without native bf16). Not in the default set.

    .venv/bin/python benchmarks/bench_cpu_defaults.py [--npz PATH] [--only layout,threads,eval,compile,accuracy] [--repeats 6]

Every section prints medians (and inter-quartile ranges) and the ratio to its first variant, measured in this run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

TORCH_THREADS = torch.get_num_threads()  # torch's choice (physical cores), read before anything here changes it

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Trainer, add_common_args, config_for, find_npz, interleave, load_data, machine, median, set_threads, spread  # noqa: E402


def report(title: str, times: dict[str, list[float]], unit_images: int) -> None:
    base = median(next(iter(times.values())))
    print(f"\n{title}")
    for name, ts in times.items():
        m = median(ts)
        print(f"  {name:<26s} {spread(ts)}  {unit_images / m:7.0f} img/s  x{base / m:5.2f} vs first")


def section_layout(args, cfg, data) -> None:  # noqa: ANN001
    variants = {}
    for cl in (False, True):
        t = Trainer(cfg, data, amp=False, channels_last=cl)
        variants[f"fp32 {'channels_last' if cl else 'NCHW'}"] = lambda t=t: t.step(1)
    # bf16 autocast is one to two orders of magnitude slower on CPUs without native bf16 (AVX2 only), so it gets
    # few rounds: --bf16-repeats (0 skips it).
    if args.bf16_repeats:
        t = Trainer(cfg, data, amp=True, channels_last=True)
        t.step(1)
        variants["bf16 channels_last"] = lambda t=t: t.step(1)
    times = interleave({k: v for k, v in variants.items() if not k.startswith("bf16")}, warmup=2, repeats=args.repeats, label="layout")
    if args.bf16_repeats:
        bf16 = interleave(variants, warmup=0, repeats=args.bf16_repeats, label="layout with bf16")
        times["bf16 channels_last"] = bf16["bf16 channels_last"]
    report("layout/precision: one training step, batch 128 (ResNet-32, Remix)", times, 128)
    print(f"  CPU capability: {torch.backends.cpu.get_cpu_capability()}; bf16 rounds: {args.bf16_repeats}")


def section_threads(args, cfg, data) -> None:  # noqa: ANN001
    t = Trainer(cfg, data)
    n_default = torch.get_num_threads() if args.max_threads <= 0 else args.max_threads
    n_default = max(n_default, TORCH_THREADS)

    def with_threads(n: int):  # noqa: ANN202
        def run() -> None:
            torch.set_num_threads(n)
            t.step(1)

        return run

    variants = {f"{n} thread{'s' if n > 1 else ''}": with_threads(n) for n in sorted({1, n_default})}
    times = interleave(variants, warmup=2, repeats=args.repeats, label="threads")
    report(f"threads (amp={t.amp}, channels_last={t.channels_last}); {machine()}", times, 128)
    set_threads(args.threads)


def section_eval(args, cfg, data) -> None:  # noqa: ANN001
    from remixup import engine

    t = Trainer(cfg, data)
    n = min(args.eval_images, data.y_test.numel())
    x, y = data.x_test[:n], data.y_test[:n]
    transform = data.spec.eval_transform(channels_last=t.channels_last)
    variants = {}
    for bs in (128, 256, 512, 1024):
        variants[f"eval batch {bs}"] = lambda bs=bs: engine.evaluate(t.model, x, y, class_counts=data.class_counts, transform=transform,
                                                                     batch_size=bs, amp=t.amp, channels_last=t.channels_last)  # fmt: skip
    times = interleave(variants, warmup=1, repeats=max(3, args.repeats // 2), label="eval")
    report(f"evaluation of {n} test images (amp={t.amp}, channels_last={t.channels_last})", times, n)


def section_compile(args, cfg, data) -> None:  # noqa: ANN001
    eager = Trainer(cfg, data)
    compiled = Trainer(cfg, data)
    try:
        compiled.model = torch.compile(compiled.model)
    except Exception as exc:  # noqa: BLE001 - report and go on
        print(f"\ncompile: torch.compile unavailable ({type(exc).__name__}: {exc})")
        return
    t0 = time.perf_counter()
    try:
        compiled.step(1)  # compiles forward and backward
        compiled.step(1)
    except Exception as exc:  # noqa: BLE001
        print(f"\ncompile: torch.compile failed ({type(exc).__name__}: {str(exc)[:200]})")
        return
    first = time.perf_counter() - t0
    eager.step(2)
    times = interleave({"eager": lambda: eager.step(1), "torch.compile": lambda: compiled.step(1)}, warmup=1,
                       repeats=args.repeats, label="compile")  # fmt: skip
    report(f"torch.compile (amp={eager.amp}, channels_last={eager.channels_last})", times, 128)
    gain = median(times["eager"]) - median(times["torch.compile"])
    print(f"  compile time (first 2 steps, compiled): {first:.1f} s; saved per step {gain * 1e3:.1f} ms; "
          f"break-even after {first / gain:.0f} steps" if gain > 0 else f"  compile time (first 2 steps): {first:.1f} s; no step-time gain")


def section_accuracy(args, npz: Path) -> None:
    """fp32 against bf16 autocast on a short real run: same seeds, same data, ``remixup.engine.train``."""
    from remixup.config import build_config
    from remixup.engine import train

    seeds = [int(s) for s in args.acc_seeds.split(",")]
    if args.acc_dataset == "digits":
        values = {"data.dataset": "digits", "data.ratio": 50.0}
        extra = ["optim.batch_size=32"]
    else:
        values = {"data.dataset": "cifar10", "data.root": str(npz.parent), "data.ratio": 100.0}
        extra = []
    print(f"\naccuracy: Remix, {args.acc_dataset} long-tailed (ratio {values['data.ratio']:g}), ldam recipe scaled to "
          f"{args.acc_epochs} epochs, seeds {seeds}, amp off vs bf16 (top-1 % of the last epoch)")  # fmt: skip
    for amp in ("off", "bf16"):
        tops, bals, secs = [], [], 0.0
        for seed in seeds:
            with tempfile.TemporaryDirectory() as out:
                cfg = build_config("ldam", epochs=args.acc_epochs, values={**values, "method.name": "remix", "run.seed": seed,
                                                                           "run.device": "cpu", "run.out": out},
                                   overrides=[*extra, f"run.amp={amp}", "run.progress=false", "run.tensorboard=false"])  # fmt: skip
                with contextlib.redirect_stdout(io.StringIO()):
                    s = train(cfg)
                tops.append(s["top1"])
                bals.append(s["balanced_acc"])
                secs += s["wall_time_s"]
        sd = statistics.stdev(tops) if len(tops) > 1 else 0.0
        print(f"  amp={amp:<5s} top1 {statistics.mean(tops):6.2f} ± {sd:4.2f}  per seed {tops}  train time {secs:6.0f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--only", default="layout,threads,eval", help="comma-separated sections (also: compile, accuracy)")
    p.add_argument("--repeats", type=int, default=6, help="interleaved rounds per section")
    p.add_argument("--eval-images", type=int, default=1024)
    p.add_argument("--max-threads", type=int, default=0, help="the many-threads variant (0: torch's default)")
    p.add_argument("--acc-epochs", type=int, default=30)
    p.add_argument("--acc-dataset", default="digits", choices=("digits", "cifar10"))
    p.add_argument("--acc-seeds", default="0,1,2")
    p.add_argument("--bf16-repeats", type=int, default=1, help="timed bf16 steps (slow without native bf16)")
    args = p.parse_args()
    npz = find_npz(args.npz)
    n = set_threads(args.threads)
    print(f"machine: {machine()}; benchmark threads {n}")

    only = set(args.only.split(","))
    cfg = config_for(npz, "remix", seed=args.seed)
    data = load_data(cfg, torch.device("cpu")) if only - {"accuracy"} else None
    for name, fn in (("layout", section_layout), ("threads", section_threads), ("eval", section_eval), ("compile", section_compile)):
        if name in only:
            fn(args, cfg, data)
    if "accuracy" in only:
        section_accuracy(args, npz)
    print(f"\nmachine at the end: {machine()}")


if __name__ == "__main__":
    main()
