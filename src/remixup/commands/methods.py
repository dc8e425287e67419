"""``remixup methods``: every method that ``remixup train --method`` accepts, one line each (name: composition)."""

from __future__ import annotations

import argparse


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--names", action="store_true", help="print only the names")


def run(args: argparse.Namespace) -> int:
    from remixup.methods import METHODS

    for method in METHODS.values():
        print(method.name if args.names else method.describe())
    return 0
