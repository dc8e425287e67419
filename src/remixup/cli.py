"""The ``remixup`` command line: a thin dispatcher over the Python API.

Each sub-command lives in ``remixup.commands.<name>`` and exposes ``add_parser(subparsers)`` and
``run(args) -> int``. Only the module of the command that runs is imported (plotting, data and training code
are not loaded for ``remixup data`` or ``remixup --help``).
User mistakes end as one line on stderr (``remixup: error: ...``) and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from remixup.errors import UserError

# name -> (module, one-line help). Explicit: no registration by import side effect.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("remixup.commands.train", "train a model with a named method and recipe"),
    "eval": ("remixup.commands.eval", "evaluate a checkpoint on a dataset"),
    "predict": ("remixup.commands.predict", "predict classes of image files, folders or npz arrays with a trained run"),
    "methods": ("remixup.commands.methods", "list the methods that can be trained by name"),
    "data": ("remixup.commands.data", "show a dataset's per-class counts after an imbalance profile"),
    "demo": ("remixup.commands.demo", "the embedded demonstration: long-tailed digits, ERM vs Mixup vs Remix"),
    "toy": ("remixup.commands.toy", "decision boundaries of ERM, Mixup and Remix on imbalanced 2-D toy sets"),
    "decouple": ("remixup.commands.decouple", "a decoupled second stage on a finished run (cRT, LWS, tau-norm, NCM, MiSLAS)"),
    "reproduce": ("remixup.commands.reproduce", "run a paper table as a resumable grid of runs"),
    "report": ("remixup.commands.report", "plots and a Markdown summary of finished runs"),
    "tune": ("remixup.commands.tune", "a hyperparameter search on Optuna, selected on a validation split"),
}


def _user_message(exc: BaseException) -> str | None:
    """The one line to print for a user's mistake; ``None`` for anything else (a bug: keep its traceback).

    A :class:`UserError` is the user's by construction. An ``OSError`` is when it names a file (a missing or
    unreadable input, a full disk); one without a file name is an unexpected system failure."""
    if isinstance(exc, UserError):
        return " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename:
        message = " ".join(str(exc).split()) or type(exc).__name__
        return message if str(exc.filename) in message else f"{message}: {exc.filename}"
    return None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, not argparse's usage block
        self.exit(2, f"remixup: error: {message} (see `{self.prog} --help`)\n")


_OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)*=")  # section.key=value (also a bare key=value, for its error message)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``remixup`` parser. With ``only``, just that command's module is imported (``""``: none); ``None``
    imports every command (for documentation and tests)."""
    from remixup._version import __version__

    parser = _Parser(prog="remixup", description="Remix (Rebalanced Mixup) for class-imbalanced data.")
    parser.add_argument("--version", action="version", version=f"remixup {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            module = importlib.import_module(module_name)
            module.add_parser(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(only=chosen if chosen in COMMANDS else "")
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may stand anywhere on the line: argparse leaves those after an option in `extra`.
    late = [a for a in extra if _OVERRIDE.match(a)]
    if late and isinstance(getattr(args, "overrides", None), list):
        args.overrides += late
        extra = [a for a in extra if a not in late]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("remixup: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `remixup ... | head`: the reader left; not an error worth a message
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UserError, OSError) as exc:
        message = _user_message(exc)
        if message is None:
            raise
        print(f"remixup: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
