"""The ``remixup`` command line: a thin dispatcher over the Python API.

Each sub-command lives in ``remixup.commands.<name>`` and exposes ``add_parser(subparsers)`` and
``run(args) -> int``. Modules are imported only when their command runs, so ``remixup --help`` stays fast.
User mistakes end as one line on stderr (``remixup: error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from remixup.errors import UserError

# name -> (module, one-line help). Explicit: no registration by import side effect.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("remixup.commands.train", "train a model with a named method and recipe"),
    "eval": ("remixup.commands.eval", "evaluate a checkpoint on a dataset"),
    "methods": ("remixup.commands.methods", "list the methods that can be trained by name"),
    "data": ("remixup.commands.data", "show a dataset's per-class counts after an imbalance profile"),
    "demo": ("remixup.commands.demo", "the embedded demonstration: long-tailed digits, ERM vs Mixup vs Remix"),
    "toy": ("remixup.commands.toy", "decision boundaries of ERM, Mixup and Remix on imbalanced 2-D toy sets"),
    "reproduce": ("remixup.commands.reproduce", "run a paper table as a resumable grid of runs"),
    "report": ("remixup.commands.report", "plots and a Markdown summary of finished runs"),
}

USER_ERRORS = (UserError, ValueError, TypeError, OSError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"remixup: error: {message} (see `{self.prog} --help`)\n")


def _available() -> dict[str, object]:
    found = {}
    for name, (module, _) in COMMANDS.items():
        try:
            found[name] = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside the command: surface it
                raise
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="remixup", description="Remix (Rebalanced Mixup) for class-imbalanced data.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, module in _available().items():
        p = sub.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1])
        module.add_parser(p)  # type: ignore[attr-defined]
        p.set_defaults(_run=module.run)  # type: ignore[attr-defined]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("remixup: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `remixup ... | head`: the reader left; not an error worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except USER_ERRORS as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in message:
            message = f"{message}: {exc.filename}"
        print(f"remixup: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
