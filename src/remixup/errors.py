"""Exceptions meant for the user of the library and the command line.

A :class:`UserError` (and any ``ValueError``/``TypeError`` raised by parameter validation, or an ``OSError`` for a
file problem) is a mistake the user can fix; the CLI prints its message as one line and exits non-zero, without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: bad data, a bad configuration, a missing file. The message says what to do."""


class DataError(UserError, ValueError):
    """A data file or folder is missing, truncated, corrupt or inconsistent."""


class ChecksumError(DataError):
    """A downloaded or cached file does not match its published checksum."""
