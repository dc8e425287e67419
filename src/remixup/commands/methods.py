"""``remixup methods``: every named method that ``remixup train --method`` accepts, one line each (name: composition),
then the grammar of composed names (``remix-cm-drw``)."""

from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--names", action="store_true", help="print only the names")


def run(args: argparse.Namespace) -> int:
    from remixup.methods import GRAMMAR, METHODS

    for method in METHODS.values():
        print(method.name if args.names else method.describe())
    if not args.names:
        print(f"\nother compositions of the same parts are methods too: {GRAMMAR}, in any order, each part at most once")
        print("e.g. remix-cm-drw = CutMix + Remix labels + DRW; cutmix-drw = CutMix + DRW; remix-mm-ldam-drw")
    return 0
