"""``python -m remixup.commands.fused [--graphs] -- TRAIN_ARGS -- TRAIN_ARGS ...``: one fused group of runs, each given
as the arguments of ``remixup train``: what ``remixup reproduce --fuse K`` starts for each group
(:func:`remixup.fused.train_fused` does the training)."""

from __future__ import annotations

from collections.abc import Sequence

from remixup.config import TrainConfig
from remixup.errors import UserError

__all__ = ["config_from_train_args", "main"]


def config_from_train_args(argv: Sequence[str]) -> TrainConfig:
    """The config ``remixup train ARGV`` would train (``--resume`` takes the run folder's saved settings)."""
    import argparse

    from remixup.commands import train as train_command
    from remixup.config import build_config
    from remixup.rundir import RunFolder

    parser = argparse.ArgumentParser(prog="remixup train")
    train_command.add_parser(parser)
    args = parser.parse_args(list(argv))
    if not args.out:
        raise UserError("each fused run needs --out DIR, its run folder")
    if args.fork:
        raise UserError(f"{args.out}: fused runs do not take --fork; train a forked run alone with `remixup train`")
    config_file = args.config
    if args.resume and config_file is None and RunFolder(args.out).config.is_file():
        config_file = RunFolder(args.out).config
    recipe = args.recipe if args.recipe is not None or config_file is not None else "paper"
    return build_config(recipe, config_file=config_file, epochs=args.epochs, values=train_command.train_values(args),
                        overrides=args.overrides)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m remixup.commands.fused [--graphs] -- TRAIN_ARGS -- TRAIN_ARGS ...``: one fused group, each run given as the
    arguments of ``remixup train`` (what ``remixup reproduce --fuse K`` starts); resumes or skips runs as
    ``remixup train --resume`` would."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    graphs = "--graphs" in args[: args.index("--")] if "--" in args else False
    groups: list[list[str]] = []
    for arg in args[args.index("--") :] if "--" in args else []:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)
    from remixup.fused import train_fused

    try:
        configs = [config_from_train_args(g) for g in groups if g]
        summaries = train_fused(configs, resume="auto", graphs=graphs)
    except (UserError, OSError) as exc:
        print(f"remixup: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for config, summary in zip(configs, summaries, strict=True):
        print(f"{summary['method']} seed {summary['seed']}: top1 {summary['top1']:.2f}  balanced {summary['balanced_acc']:.2f}"
              f"  -> {config.run.out}")  # fmt: skip
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
