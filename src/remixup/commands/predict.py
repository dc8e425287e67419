"""``remixup predict``: a trained run's predictions on image files, folders of images and ``.npz`` arrays, or on new
rows of a table (.csv, .tsv, .parquet) for a run trained on one.

remixup predict runs/digits-remix photos/ more.npz                 # CSV on stdout: input, label, class, probability, top-k
remixup predict runs/digits-remix a.png --format json --top-k 3 --out predictions.json
remixup predict runs/c10-remix images/ --logit-adjust 1            # post-hoc logit adjustment by the training prior
remixup predict runs/yeast new_rows.csv --out predictions.csv      # a table: class and p_CLASS per row
"""

from __future__ import annotations

import argparse
import sys


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="RUN_OR_CHECKPOINT", help="a checkpoint.pt, or the run folder that holds one")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders of images (searched recursively), "
                        ".npz files (array x, x_test or the only one), or for a run on a table .csv/.tsv/.parquet files of new rows")  # fmt: skip
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="output format (default csv)")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument("--top-k", type=int, default=5, help="classes listed per input (default 5)")
    parser.add_argument("--batch-size", type=int, default=256, help="inputs per forward pass (default 256)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--logit-adjust", type=float, default=0.0, metavar="TAU",
                        help="post-hoc logit adjustment: subtract TAU*log(training prior) before the softmax "
                             "(1 is the usual choice; default 0: none)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from remixup.predict import load_predictor, write_predictions

    predictor = load_predictor(args.checkpoint, device=args.device)
    rows = predictor.predict(args.inputs, top_k=args.top_k, batch_size=args.batch_size, logit_adjust=args.logit_adjust)
    if args.out:
        with open(args.out, "w", encoding="utf-8", newline="") as fh:
            write_predictions(rows, args.format, fh)
    else:
        write_predictions(rows, args.format, sys.stdout)
    return 0
