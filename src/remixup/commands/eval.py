"""``remixup eval``: evaluate a checkpoint on a dataset's evaluation split.

remixup eval runs/smoke/checkpoint.pt [--dataset cifar10] [--data-root DIR] [--device cpu] [--json FILE]
remixup eval runs/smoke --logit-adjust 1     # post-hoc logit adjustment: rank classes by z - 1*log(prior)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint.pt, or the run folder that holds one")
    parser.add_argument("--dataset", help="dataset to evaluate on; default the one the checkpoint was trained on")
    parser.add_argument("--data-root", help="folder with the dataset files; default the checkpoint's")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--batch-size", type=int, default=1024, help="evaluation batch size (default 1024)")
    parser.add_argument("--json", metavar="FILE", help="also write all metrics (per-class, confusion) to FILE")
    parser.add_argument("--logit-adjust", type=float, default=0.0, metavar="TAU",
                        help="post-hoc logit adjustment: rank classes by logit - TAU*log(training prior) "
                             "(Menon et al. 2021; 1 is the usual choice, default 0: raw logits), on the logits the "
                             "training softmax saw (LDAM's s*logit). Meant for a model "
                             "trained on the imbalanced prior: a re-weighted (DRW, DRS) or logit-adjusted model is "
                             "already corrected")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from remixup._validation import check_number
    from remixup.engine import evaluate_checkpoint

    check_number(args.batch_size, "--batch-size", low=1, integer=True)
    check_number(args.logit_adjust, "--logit-adjust", low=0.0)
    metrics = evaluate_checkpoint(
        args.checkpoint,
        dataset=args.dataset,
        root=args.data_root,
        device=args.device,
        batch_size=args.batch_size,
        logit_adjust=args.logit_adjust,
    )
    shown = "  ".join(f"{k} {metrics[k]:.2f}" if metrics[k] is not None else f"{k} -"
                      for k in ("top1", "top5", "balanced_acc", "many", "medium", "few"))  # fmt: skip
    scaled = f" of {metrics['logit_scale']:g} x logits" if metrics["logit_scale"] != 1 else ""
    adjusted = f", logit-adjusted by tau {args.logit_adjust:g}{scaled}" if args.logit_adjust else ""
    print(
        f"{metrics['method']} epoch {metrics['epoch']} on {metrics['dataset']} ({metrics['num_samples']} samples{adjusted}): {shown}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    return 0
