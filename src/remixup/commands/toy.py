"""``remixup toy``: ERM, Mixup and Remix decision boundaries on imbalanced 2-D toy sets, in one PNG grid.

Examples::

    remixup toy --out toy/                       # 3 data sets x 3 methods, writes toy/toy.png
    remixup toy --ratio 20 --epochs 60 --out toy/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from remixup.errors import InvalidParameterError
from remixup.toy import TOY_DATASETS, TOY_METHODS


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``remixup toy``."""
    parser.add_argument(
        "--out", type=Path, default=Path("toy"), help="output folder: toy.png and the run folders under runs/ (default: ./toy)"
    )
    parser.add_argument(
        "--ratio",
        type=float,
        default=10.0,
        help="imbalance ratio: the minority class keeps 1000/ratio training points (default 10)",
    )
    parser.add_argument("--epochs", type=int, default=30, help="epochs per model (the paper recipe, scaled)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument(
        "--datasets",
        type=_names,
        default=list(TOY_DATASETS),
        help=f"comma-separated, from {', '.join(TOY_DATASETS)} (default: all)",
    )
    parser.add_argument(
        "--methods", type=_names, default=list(TOY_METHODS), help="comma-separated method names (default: erm,mixup,remix)"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every run, e.g. mixing.kappa=2")


def run(args: argparse.Namespace) -> int:
    """Train the grid of toy models (reusing finished runs) and write the figure."""
    from remixup._validation import check_choice, check_number
    from remixup.toy import run_toy

    for name in args.datasets:
        check_choice(name, "--datasets", TOY_DATASETS)
    if not args.datasets or not args.methods:
        raise InvalidParameterError("`--datasets` and `--methods` must each name at least one")
    check_number(args.epochs, "--epochs", low=1, integer=True)
    check_number(args.ratio, "--ratio", low=1)
    path, _ = run_toy(
        args.out,
        datasets=args.datasets,
        methods=args.methods,
        ratio=args.ratio,
        epochs=args.epochs,
        seed=args.seed,
        overrides=args.overrides,
    )
    print(f"figure: {path}")
    print(f"runs:   {args.out / 'runs'} (see `remixup report {args.out / 'runs'}`)")
    return 0
