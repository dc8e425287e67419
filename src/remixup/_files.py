"""Writing files so that a reader never sees a torn one: the one atomic writer and the one write probe."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from remixup.errors import UserError


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None] | bytes | str, *, durable: bool = False) -> Path:
    """Write ``path`` through a temporary file in the same folder and ``os.replace`` it over the target.

    A reader sees the previous complete file or the new one, never a partial one, even if the process is killed
    mid-write; the temporary file is removed when writing fails.

    Args:
        path: the target file.
        write: the content (``str`` is written as UTF-8), or a function that writes it to a binary file handle.
        durable: also fsync the file and its folder, so the new content survives a power loss (checkpoints).

    Raises:
        OSError: the folder cannot be written or the disk is full; the previous file is left untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            if callable(write):
                write(fh)
            else:
                fh.write(write.encode("utf-8") if isinstance(write, str) else write)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; not every platform lets a folder be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_writable(folder: str | Path, *, what: str = "the output folder") -> Path:
    """Create ``folder`` (and its parents) and check that a file can be written in it.

    Raises:
        UserError: it cannot be created or written (the message names it and the reason).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write {what} {folder}: {exc.strerror or exc}") from None
    return folder
