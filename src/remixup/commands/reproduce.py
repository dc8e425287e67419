"""``remixup reproduce <table>``: run a paper table as a resumable grid of independent runs.

Examples::

    remixup reproduce table1 --dry-run                      # list the 320 runs and their commands
    remixup reproduce table1 --data-root data --runs-dir runs/reproduce
    remixup reproduce table1 --shard 0/4 ...                # this machine takes runs 0, 4, 8, ...
    remixup reproduce kappa --epochs 25 --seeds 0-2         # a short κ sweep, table + plot
    remixup reproduce table1 --table-only                   # just (re)write the table from finished runs
    remixup reproduce sweep --epochs 25 --seeds 0 --rows erm,remix-drw   # only these rows of the grid
    remixup reproduce c10lt --fork-deferred ...             # DRW/DRS runs start from their plain twin's checkpoint
    remixup reproduce kappa --slurm --partition gpu --time 240 --gpus 1   # one SLURM job per run, requeued on time-out
    remixup reproduce table1 --fuse 8 --device cuda ...     # up to 8 runs of one architecture trained together
    remixup reproduce tabular --workers 2 --runs-dir runs/tabular --report-dir results/tabular   # tables, 10 seeds

``tabular`` is a study of its own (:mod:`remixup.tabular_study`): its runs go in-process, grouped by set and seed.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from remixup import reproduce as rp
from remixup.errors import InvalidParameterError
from remixup.experiments import EXPERIMENTS, enumerate_runs, get_experiment
from remixup.rundir import RunFolder, run_status


def add_parser(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``remixup reproduce``."""
    parser.add_argument("table", nargs="+", metavar="TABLE", help=f"one or more of: {', '.join(EXPERIMENTS)}; or tabular (alone)")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        default=Path("runs/reproduce"),
        help="folder with one sub-folder per run, and the tables (default: runs/reproduce)",
    )
    parser.add_argument("--data-root", type=Path, default=None, help="passed to `remixup train --data-root`")
    parser.add_argument(
        "--seeds",
        type=rp.parse_seeds,
        default=None,
        help="training seeds, e.g. 0-4 or 0,3,7 (default: 0-4, five runs as in the paper; tabular: 0-9)",
    )
    parser.add_argument(
        "--subset-seeds",
        type=rp.parse_seeds,
        default=[0],
        help="seeds choosing which samples the imbalance profile keeps (default: 0)",
    )
    parser.add_argument(
        "--recipe", default=None, help="training recipe instead of the table's own (paper for tables 1/5, inat200 for inat)"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="passed to `remixup train --epochs` (the recipe's milestones scale with it)"
    )
    parser.add_argument("--device", default=None, help="passed to `remixup train --device` (cpu, cuda)")
    parser.add_argument(
        "--shard",
        type=rp.parse_shard,
        default=(0, 1),
        metavar="I/N",
        help="take only runs k with k mod N == I (0-based), to spread a grid over machines",
    )
    parser.add_argument(
        "--rows",
        default=None,
        metavar="NAMES",
        help="run only these rows, comma-separated method names or row labels (the table still shows every finished run)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override passed to every run (repeatable; part of the run id)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs with their status and commands")
    parser.add_argument(
        "--table-only", action="store_true", help="run nothing; write the Markdown table (and sweep plot) from the finished runs"
    )
    parser.add_argument(
        "--fork-deferred",
        action="store_true",
        help="start each DRW/DRS run from its plain twin's checkpoint of the deferral epoch (Remix "
        "for Remix-DRW, ERM for DRW) when the twin is in the grid, instead of training it whole",
    )
    parser.add_argument(
        "--fuse",
        type=int,
        default=1,
        metavar="K",
        help="train up to K runs with the same architecture, data set and schedule together in one process "
        "(remixup.fused; manifold-mixing runs train alone); default 1: one process per run",
    )
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failed run")
    parser.add_argument(
        "--sets", default=None, metavar="NAMES", help="tabular: only these study sets, comma-separated (default: all)"
    )
    parser.add_argument("--workers", type=int, default=1, help="tabular: worker processes of one thread each (default 1)")
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="tabular: where report.md, the CD plot and runs.csv go (default: the runs folder)",
    )
    parser.add_argument("--no-boosted", action="store_true", help="tabular: leave out the boosted-tree reference")
    parser.add_argument("--no-report", action="store_true", help="tabular: run only, write no report")
    parser.add_argument("--runs-csv", type=Path, default=None, metavar="FILE",
                        help="tabular: rebuild the report from this runs.csv (as a report writes it) instead of run folders")  # fmt: skip
    parser.add_argument("--measure-budget", type=int, default=None, metavar="STEPS",
                        help="tabular: measure where validation stops improving over STEPS steps on three sets and write "
                             "budget.json to --report-dir (remixup.tabular_budget), instead of running the grid")  # fmt: skip
    parser.add_argument("--readme", type=Path, default=None, metavar="FILE",
                        help="tabular: also put the report's summary.md into FILE (README.md), between its "
                             "tabular-summary markers")  # fmt: skip
    parser.add_argument("--pack", type=Path, default=None, metavar="FILE",
                        help="tabular: write the finished groups' rows and the grid's timings to FILE (.tar.gz), to carry "
                             "the grid to another machine, instead of running it")  # fmt: skip
    parser.add_argument("--unpack", type=Path, default=None, metavar="FILE",
                        help="tabular: put the rows of an archive written by --pack into --runs-dir (the grid then skips "
                             "those groups), instead of running the grid")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    from remixup.slurm import add_slurm_options

    add_slurm_options(parser)


def run(args: argparse.Namespace) -> int:
    """Run (or list) the grid of each table named, then write its table; 1 if a run failed, else 0."""
    if "tabular" in args.table:
        if len(args.table) > 1:
            raise InvalidParameterError("`remixup reproduce tabular` runs alone; name the other tables in another call")
        if args.workers < 1:
            raise InvalidParameterError(f"`--workers` must be >= 1; got {args.workers}")
        from remixup.tabular_study import run_command as run_tabular

        return run_tabular(args)
    for flag in ("pack", "unpack", "readme"):
        if getattr(args, flag) is not None:
            raise InvalidParameterError(f"`--{flag}` carries a tabular grid; use it with `remixup reproduce tabular`")
    if args.seeds is None:
        args.seeds = [0, 1, 2, 3, 4]
    experiments = [get_experiment(name) for name in args.table]  # validate every name before any work
    if args.epochs is not None and args.epochs < 1:
        raise InvalidParameterError(f"`--epochs` must be >= 1; got {args.epochs}")
    from remixup.config import TrainConfig, apply_override

    for item in args.overrides:
        if "=" not in item or item.startswith("="):
            raise InvalidParameterError(f"`--set` takes KEY=VALUE; got {item!r}")
        apply_override(TrainConfig(), item)  # an unknown key or a bad value: refused before listing or running
    if args.fuse < 1:
        raise InvalidParameterError(f"`--fuse` must be >= 1; got {args.fuse}")
    if args.fuse > 1 and args.fork_deferred:
        raise InvalidParameterError("`--fuse` and `--fork-deferred` do not combine: a fused group does not fork")
    shard_index, shard_count = args.shard
    command = partial(rp.build_command, data_root=args.data_root, device=args.device)
    runs_dir: Path = args.runs_dir
    failed = 0
    for experiment in experiments:
        grid = enumerate_runs(
            experiment,
            seeds=args.seeds,
            subset_seeds=args.subset_seeds,
            recipe=args.recipe,
            epochs=args.epochs,
            overrides=args.overrides,
        )
        run_command: rp.CommandBuilder = command
        if args.fork_deferred:
            plan = rp.plan_forks(grid)
            run_command = rp.forking_command(command, plan, runs_dir)
        mine = rp.take_shard(grid, shard_index, shard_count)
        shard_text = f", shard {shard_index}/{shard_count}: {len(mine)} runs" if shard_count > 1 else ""
        if args.rows is not None:
            keep = set(rp.select_rows(experiment, args.rows))
            mine = [spec for spec in mine if spec.row.label in keep]
            shard_text += f", {len(mine)} of them in the rows asked for"
        if args.fork_deferred:
            mine = rp.order_for_forks(mine, plan)
            shard_text += f", {sum(s.run_id in plan.forks for s in mine)} of them forked from a plain twin"
        print(
            f"# {experiment.name}: {len(grid)} runs{shard_text} "
            f"({len(experiment.rows)} rows x {len(experiment.columns)} columns x "
            f"{len(args.seeds)} seeds x {len(args.subset_seeds)} subset seeds)"
        )
        if args.dry_run:
            for spec, line in zip(mine, rp.describe(mine, runs_dir, run_command), strict=True):
                if args.fork_deferred and spec.run_id in plan.forks and "--fork" not in line and " todo " in line:
                    twin, epoch = plan.forks[spec.run_id]
                    line += f"  # --fork {RunFolder(runs_dir / twin).kept_checkpoint(epoch)} once that run has kept it"
                print(line)
            counts = {s: 0 for s in ("done", "resume", "todo")}
            for spec in mine:
                counts[run_status(runs_dir / spec.run_id)] += 1
            print(f"# {counts['done']} done, {counts['resume']} to resume, {counts['todo']} to run")
            continue
        rp.check_runs_dir(runs_dir)
        if not args.table_only and args.slurm:
            from remixup.slurm import submit_grid

            failed += submit_grid(mine, runs_dir, run_command, args)
            if not args.wait:
                continue
        elif not args.table_only:
            if args.fuse > 1:
                result = rp.run_grid_fused(mine, runs_dir, fuse=args.fuse, command=run_command, fail_fast=args.fail_fast,
                                           progress=not args.no_progress)  # fmt: skip
            else:
                result = rp.run_grid(mine, runs_dir, command=run_command, fail_fast=args.fail_fast, progress=not args.no_progress)
            failed += len(result.failed)
            print(
                f"# {experiment.name}: {len(result.finished)} finished, {len(result.skipped)} skipped "
                f"(already done), {len(result.failed)} failed"
            )
            for run_id in result.failed:
                print(f"#   failed: {run_id} (log: {runs_dir / rp.LOG_DIR / (run_id + '.log')})", file=sys.stderr)
        md, png, text = rp.write_results(experiment, grid, runs_dir)
        print(text)
        print(f"# table: {md}" + (f"\n# plot: {png}" if png else ""))
        if failed and args.fail_fast:
            break
    return 1 if failed else 0
