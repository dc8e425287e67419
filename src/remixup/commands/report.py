"""``remixup report RUN_DIR...``: plots and a Markdown summary of run folders.

Examples::

    remixup report runs/remix runs/mixup --out report/           # compare two runs
    remixup report runs/reproduce --out report/                  # every run folder under a grid's folder
"""

from __future__ import annotations

import argparse
from pathlib import Path

from remixup.report import make_report


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``remixup report``."""
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN_DIR",
        help="run folders written by `remixup train --out`, or folders holding run folders",
    )
    parser.add_argument("--out", type=Path, default=Path("report"), help="folder for report.md and the PNGs (default: ./report)")
    parser.add_argument(
        "--compare-only", action="store_true", help="only the table and the plots that overlay all runs, not each run's own plots"
    )


def run(args: argparse.Namespace) -> int:
    """Write the report and print where it is."""
    path = make_report(args.runs, args.out, per_run=not args.compare_only)
    plots = sum(line.startswith("![") for line in path.read_text(encoding="utf-8").splitlines())
    print(f"report: {path} ({plots} plots)")
    return 0
