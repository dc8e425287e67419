"""``remixup demo``: long-tailed digits with ERM, Mixup, Remix and Remix-DRW, plus the 2-D toy figure."""

from __future__ import annotations

import argparse

from remixup.demo import DEMO_METHODS, DemoSettings, run_demo


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_parser(parser: argparse.ArgumentParser) -> None:
    d = DemoSettings()
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    parser.add_argument("--seeds", type=_int_list, default=d.seeds, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs per run (default {d.epochs})")
    parser.add_argument("--imbalance", default=d.imbalance, help=f"imbalance profile (default {d.imbalance})")
    parser.add_argument("--ratio", type=float, default=d.ratio, help=f"imbalance ratio (default {d.ratio:g})")
    parser.add_argument("--methods", default=",".join(DEMO_METHODS), help="comma-separated methods")
    parser.add_argument("--no-toy", action="store_true", help="skip the 2-D decision-boundary figure")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    settings = DemoSettings(methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()), seeds=args.seeds,
                            imbalance=args.imbalance, ratio=args.ratio, epochs=args.epochs)  # fmt: skip
    result = run_demo(args.out, settings, toy=not args.no_toy, progress=not args.no_progress)
    print(result.table)
    print(f"\nfinished in {result.seconds:.0f} s; files:")
    for path in result.files:
        print(f"  {path}")
    return 0
