"""``remixup train``: train a model with a named method and recipe; the command only builds the config.

    remixup train --dataset cifar10 --imbalance longtail --ratio 100 --method remix-drw --recipe ldam \\
        --data-root DIR --out DIR [--epochs N] [--seed S] [--subset-seed T] [--device cpu|cuda] \\
        [--config FILE] [--resume] [--fork CHECKPOINT] [--no-progress] [--print-config] [key=value ...]

``key=value`` overrides any config field (``mixing.kappa=2``, ``optim.lr=0.05``, ``run.eval_every=5``), anywhere on
the line; run ``remixup train --keys`` for the list with types, defaults and meanings, and ``--print-config`` to see
the resolved, validated config without training. With ``--resume`` the run continues from ``OUT/checkpoint.pt`` with the
settings saved in ``OUT/config.yaml`` (flags given again must agree with them). With ``--fork CHECKPOINT`` a new
run starts from another run's checkpoint (e.g. ``checkpoint_e072.pt`` kept with ``run.keep_every=72``) and goes on
under the new settings, which may change only the method, ``method.beta``, ``method.reduction``,
``schedule.deferral_epoch`` and ``--epochs``, and only where the epochs already trained would have run alike: Remix
forked into Remix-DRW at the deferral epoch is Remix-DRW trained from scratch, for the cost of the deferred phase.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from remixup.errors import UserError


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="dataset name (see `remixup data --help`); default cifar10")
    parser.add_argument("--imbalance", help="imbalance profile: longtail, step or none (default longtail)")
    parser.add_argument("--ratio", type=float, help="imbalance ratio rho = n_max / n_min (default 100)")
    parser.add_argument("--mu", type=float, help="share of minority classes for the step profile, in (0, 1) (default 0.5)")
    parser.add_argument("--method", help="method name, e.g. remix-drw (see `remixup methods`); default erm")
    parser.add_argument("--recipe", help="recipe name (paper, ldam, inat90, inat200) or a YAML file; default paper")
    parser.add_argument("--data-root", default=None,
                        help="folder with the dataset files; default $REMIXUP_DATA_ROOT or ./data")  # fmt: skip
    parser.add_argument("--out", help="run folder (config.yaml, checkpoint.pt, metrics.*, summary.json)")
    parser.add_argument("--epochs", type=int, help="train N epochs; the recipe's milestones, warm-up and deferral scale with it")
    parser.add_argument("--seed", type=int, help="training seed (default 0)")
    parser.add_argument("--subset-seed", type=int, help="seed of the imbalanced subset's choice (default 0)")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--config", metavar="FILE", help="YAML config file (sections data, model, method, optim, schedule, mixing, run)"
    )
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--fork", metavar="CHECKPOINT",
                        help="start from another run's checkpoint (file or run folder) and go on under these settings, "
                             "e.g. into the DRW variant of the same method at its deferral epoch")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--keys", action="store_true", help="list the config keys that key=value accepts (type, default, "
                        "meaning), and exit")  # fmt: skip
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML after validating it, and exit without training")  # fmt: skip
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. mixing.kappa=2 optim.lr=0.05")


def train_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config values that ``remixup train``'s flags set (``None``: not given)."""
    root = args.data_root
    if root is None and not args.resume:
        root = os.environ.get("REMIXUP_DATA_ROOT")
    return {
        "data.dataset": args.dataset,
        "data.imbalance": args.imbalance,
        "data.ratio": args.ratio,
        "data.mu": args.mu,
        "data.root": root,
        "method.name": args.method,
        "run.out": args.out,
        "run.seed": args.seed,
        "run.subset_seed": args.subset_seed,
        "run.device": args.device,
        "run.progress": False if args.no_progress else None,
    }


def _record_table(config: Any, path: Path) -> None:
    """Add what the table's preparation did (classes dropped or merged, with their rows; split sizes) to the run's
    summary as ``"table"``; the splits come from the per-process cache, so nothing is read again."""
    import json

    from remixup._files import atomic_write
    from remixup.data.tabular import load_table_splits

    d = config.data
    splits = load_table_splits(d.dataset, **d.table_options())
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary["table"] = splits.record()
    atomic_write(path, json.dumps(summary, indent=1) + "\n")


def run(args: argparse.Namespace) -> int:
    from remixup import checkpoint
    from remixup.config import build_config, format_keys
    from remixup.engine import train
    from remixup.rundir import RunFolder, checkpoint_file

    if args.keys:
        print(format_keys())
        return 0
    if not args.out and not args.print_config:
        raise UserError("train needs --out DIR, the run folder")
    config_file = args.config
    recipe = args.recipe
    if args.resume and config_file is None and RunFolder(args.out).config.is_file():
        config_file = RunFolder(args.out).config  # the resolved settings of the run being resumed
    base = None
    if args.fork and recipe is None and config_file is None:
        base = checkpoint.load(checkpoint_file(args.fork))["config"]  # the forked run's settings, changed below
    elif recipe is None and config_file is None:
        recipe = "paper"
    config = build_config(recipe, config_file=config_file, epochs=args.epochs, values=train_values(args), overrides=args.overrides,
                          base=base)  # fmt: skip
    if args.print_config:
        print(config.to_yaml("resolved and validated by `remixup train --print-config`; nothing was trained"), end="")
        return 0
    summary = train(config, resume=args.resume, fork=args.fork)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return 0
    if config.data.dataset.startswith("tabular:"):
        _record_table(config, Path(config.run.out) / "summary.json")
    split = "" if "top1" in summary else "val_"  # run.eval_test=false: the validation split only
    groups = " ".join(
        f"{k} {summary[split + k]:.2f}" if summary[split + k] is not None else f"{k} -" for k in ("many", "medium", "few")
    )
    print(f"{summary['method']} on {summary['dataset']}: {split}top1 {summary[split + 'top1']:.2f}  {split}balanced "
          f"{summary[split + 'balanced_acc']:.2f}  {groups}  ({summary['images_per_s']:.0f} img/s)  -> {RunFolder(config.run.out).summary}")  # fmt: skip
    return 0
