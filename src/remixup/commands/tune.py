"""``remixup tune``: a hyperparameter search on Optuna, selected on a validation split, on one machine or many.

    remixup tune create STUDY_DIR --space SPACE.yaml [--storage URL] [--dataset D --method M --epochs N ...] [--set KEY=VALUE ...]
    remixup tune run STUDY_DIR --n-trials N [--timeout S] [--worker I] [--slurm --array K ...]
    remixup tune status STUDY_DIR
    remixup tune best STUDY_DIR [--top K]
    remixup tune confirm STUDY_DIR --top K --seeds 100-102
    remixup tune plot STUDY_DIR [--out DIR]

``N`` is the study's total of finished trials: start any number of ``run`` workers, on any number of machines
(PostgreSQL storage).
See docs/tune.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from remixup.errors import UserError


def add_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tune_command", metavar="SUBCOMMAND", parser_class=type(parser))
    sub.required = True
    c = sub.add_parser("create", help="create a study folder once: space, base config, objective, sampler, pruner, storage")
    c.add_argument("study", type=Path, metavar="STUDY_DIR")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override of every trial, e.g. --set optim.batch_size=64 (repeatable)")  # fmt: skip
    c.add_argument("--space", required=True, metavar="SPACE.yaml", help="the search space (space, fixed, enqueue)")
    c.add_argument("--storage", default="journal",
                   help="journal (default: a file in STUDY_DIR), postgresql://USER@HOST:PORT/DB, or sqlite:///FILE (one worker)")  # fmt: skip
    c.add_argument("--metric", default="val_balanced_acc", help="validation metric to maximise (default val_balanced_acc)")
    c.add_argument("--seeds-per-trial", type=int, default=1, help="objective = the metric's mean over this many seeds")
    c.add_argument("--sampler", default="tpe", help="tpe (default) or random")
    c.add_argument("--sampler-seed", type=int, default=0, help="base seed of every worker's sampler (default 0)")
    c.add_argument("--n-startup-trials", type=int, default=10, help="random trials before TPE models the results (default 10)")
    c.add_argument("--pruner", default="median", help="median (default), hyperband or none")
    c.add_argument("--warmup", type=int, default=0, help="epochs never pruned (raised to the deferral epoch of DRW/DRS)")
    c.add_argument("--heartbeat", type=int, default=60, help="PostgreSQL heartbeat interval in seconds (default 60)")
    c.add_argument("--grace", type=int, default=180, help="seconds without a heartbeat before a trial is failed (default 180)")
    for flag, text in (("--dataset", "dataset name"), ("--imbalance", "imbalance profile"), ("--method", "method name"),
                       ("--recipe", "recipe name or YAML file (default paper)"), ("--data-root", "dataset folder"),
                       ("--config", "YAML config file"), ("--device", "auto, cpu, cuda or cuda:N")):  # fmt: skip
        c.add_argument(flag, help=text)
    c.add_argument("--ratio", type=float, help="imbalance ratio")
    c.add_argument("--epochs", type=int, help="epochs per trial (the recipe's schedule scales with it)")
    c.add_argument("--seed", type=int, help="first training seed of each trial (default 0)")

    r = sub.add_parser("run", help="a worker: run trials until the study holds N finished ones")
    r.add_argument("study", type=Path, metavar="STUDY_DIR")
    r.add_argument(
        "--n-trials", type=int, required=True, help="finished trials the study should hold, whoever runs them (not per worker)"
    )
    r.add_argument("--timeout", type=float, default=None, help="start no trial after S seconds")
    r.add_argument("--worker", type=int, default=None, help="this worker's index (seeds its sampler; default SLURM task or pid)")
    from remixup.slurm import add_slurm_options

    add_slurm_options(r, array=True)

    st = sub.add_parser("status", help="trials by state, running workers, the best trial")
    st.add_argument("study", type=Path, metavar="STUDY_DIR")
    b = sub.add_parser("best", help="a table of the best trials")
    b.add_argument("study", type=Path, metavar="STUDY_DIR")
    b.add_argument("--top", type=int, default=5)
    cf = sub.add_parser("confirm", help="retrain the best K trials on fresh seeds: validation and test, mean ± std")
    cf.add_argument("study", type=Path, metavar="STUDY_DIR")
    cf.add_argument("--top", type=int, default=1)
    cf.add_argument("--seeds", default="100-102", help="training seeds, e.g. 100-102 or 7,8,9 (default 100-102)")
    p = sub.add_parser("plot", help="history.png, importances.png and kappa_tau.png")
    p.add_argument("study", type=Path, metavar="STUDY_DIR")
    p.add_argument("--out", type=Path, default=None, help="folder of the PNGs (default STUDY_DIR/plots)")


def _base_config(args: argparse.Namespace) -> Any:
    from remixup.config import build_config

    values = {"data.dataset": args.dataset, "data.imbalance": args.imbalance, "data.ratio": args.ratio,
              "data.root": args.data_root or os.environ.get("REMIXUP_DATA_ROOT"), "method.name": args.method,
              "run.seed": args.seed, "run.device": args.device, "run.out": str(args.study / "trials")}  # fmt: skip
    recipe = args.recipe if args.recipe is not None or args.config is not None else "paper"
    return build_config(recipe, config_file=args.config, epochs=args.epochs, values=values, overrides=args.overrides)


def run(args: argparse.Namespace) -> int:
    from remixup import tune, tune_results

    cmd = args.tune_command
    if cmd == "create":
        study, created = tune.create_study(args.study, space_file=args.space, config=_base_config(args), storage=args.storage,
                                           metric=args.metric, seeds_per_trial=args.seeds_per_trial, sampler=args.sampler,
                                           sampler_seed=args.sampler_seed, n_startup_trials=args.n_startup_trials,
                                           pruner=args.pruner, warmup=args.warmup, heartbeat=args.heartbeat,
                                           grace=args.grace)  # fmt: skip
        what = "created" if created else "exists with these settings already; nothing to do"
        print(f"study {args.study} {what}: {len(study.space)} parameters, {len(study.settings.enqueue)} enqueued, "
              f"storage {tune.redact(study.settings.storage)}")  # fmt: skip
        return 0
    if cmd == "run":
        if args.n_trials < 1:
            raise UserError(f"--n-trials must be >= 1; got {args.n_trials}")
        if args.slurm:
            from remixup.slurm import submit_tune

            return submit_tune(args)
        tune.load(args.study)  # a missing study or an unreachable storage fails here, before any work
        n = tune.run_worker(args.study, n_trials=args.n_trials, timeout=args.timeout, worker=args.worker)
        if os.environ.get("RANK", "0") == "0":
            print("\n".join([f"this worker ran {n} trial(s)", *tune_results.status_lines(tune.load(args.study))]))
        return 0
    study = tune.load(args.study)
    if cmd == "status":
        print("\n".join(tune_results.status_lines(study)))
    elif cmd == "best":
        print(tune_results.best_table(study, args.top))
    elif cmd == "confirm":
        from remixup.reproduce import parse_seeds

        table, _ = tune_results.confirm(study, top=args.top, seeds=parse_seeds(args.seeds))
        print(table)
    elif cmd == "plot":
        for path in tune_results.plots(study, args.out or args.study / "plots"):
            print(path)
    return 0
