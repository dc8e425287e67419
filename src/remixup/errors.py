"""Exceptions meant for the user of the library and the command line.

A :class:`UserError` is a mistake the user can fix: parameter validation raises :class:`InvalidParameterError` /
:class:`InvalidTypeError` (also a ``ValueError`` / ``TypeError``), configuration code :class:`ConfigError`, data
code :class:`DataError`. The CLI prints those, and an ``OSError`` that names a file, as one line and exits
non-zero, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad data, a bad configuration, a missing file. The message says what to do."""


class DataError(UserError, ValueError):
    """A data file or folder is missing, truncated, corrupt or inconsistent."""


class ChecksumError(DataError):
    """A downloaded or cached file does not match its published checksum."""


class InvalidParameterError(UserError, ValueError):
    """A parameter has a value outside its allowed range or set (raised by parameter validation)."""


class InvalidTypeError(UserError, TypeError):
    """A parameter has the wrong type (raised by parameter validation)."""


class ConfigError(UserError, ValueError):
    """A configuration key, value or file is wrong (unknown key, bad type, value out of range)."""


class DivergedError(UserError):
    """Training produced a non-finite loss (too large a learning rate, for example); the last good checkpoint is kept."""
