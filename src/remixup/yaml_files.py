"""Reading YAML written by users (configs, recipes, search spaces, study settings) with one-line errors.

``yaml.safe_load`` refuses Python tags, but it fails in several ways on hostile or broken input: a ``YAMLError``
(bad syntax, a ``!!python/...`` tag), a ``RecursionError`` (thousands of nested ``[``), a ``ValueError`` (an
integer over Python's 4,300-digit conversion limit) and, while reading the file, a ``UnicodeDecodeError`` (a
binary file). Each becomes a :class:`~remixup.errors.ConfigError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from remixup.errors import ConfigError, UserError

__all__ = ["parse_yaml", "read_yaml"]


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``; any failure is a :class:`ConfigError` naming ``where`` (a file, an override)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {' '.join(str(exc).split())[:300]}") from None
    except RecursionError:
        raise ConfigError(f"{where} is nested too deeply to read") from None
    except ValueError as exc:  # int() over the digit limit, an impossible date, ...
        raise ConfigError(f"{where} holds a value that cannot be read ({' '.join(str(exc).split())[:200]})") from None


def read_yaml(path: Path | Any, what: str) -> Any:
    """Read and parse the YAML file ``path`` (a ``Path`` or an ``importlib.resources`` traversable).

    Raises:
        UserError: the file is missing, unreadable or not UTF-8 text; ConfigError: its YAML is broken (see
            :func:`parse_yaml`).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a text file (it is not UTF-8)") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    return parse_yaml(text, f"{what} {path}")
