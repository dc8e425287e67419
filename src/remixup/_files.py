"""Writing files so that a reader never sees a torn one, and never through a planted link: the one atomic writer,
the one exclusive temporary file and the one write probe.

Every temporary file is created next to its target with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a name no other
file has (``.<target>.<pid>-<random>.tmp``): an existing file or symbolic link of that name is never opened, so a
link planted in a writable folder cannot redirect the write. :func:`remove_stale_temps` deletes those left behind
by a killed process.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from remixup.errors import UserError

__all__ = ["atomic_write", "create_exclusive", "ensure_writable", "is_temp", "remove_stale_temps", "temp_file"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_TEMP = re.compile(r"^\..+\.(\d+)-[0-9a-f]{16}\.tmp$")


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(8)}.tmp")


def create_exclusive(path: Path) -> BinaryIO:
    """Create ``path`` for writing, failing if any file or link of that name exists (never opened through it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_BINARY", 0), 0o666)
    return os.fdopen(fd, "wb")


def temp_file(target: str | Path) -> tuple[Path, BinaryIO]:
    """A new temporary file next to ``target`` (see the module docstring): ``(its path, a binary handle)``."""
    target = Path(target)
    for _ in range(8):  # a name taken by chance (or on purpose) is skipped, never opened
        tmp = _temp_name(target)
        try:
            return tmp, create_exclusive(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {target}: every name tried exists")


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None] | bytes | str, *, durable: bool = False) -> Path:
    """Write ``path`` through a new temporary file in the same folder and ``os.replace`` it over the target.

    A reader sees the previous complete file or the new one, never a partial one, even if the process is killed
    mid-write; the temporary file is removed when writing fails. A symbolic link at ``path`` is replaced, not
    written through.

    Args:
        path: the target file.
        write: the content (``str`` is written as UTF-8), or a function that writes it to a binary file handle.
        durable: also fsync the file and its folder, so the new content survives a power loss (checkpoints).

    Raises:
        OSError: the folder cannot be written or the disk is full (its ``filename`` is ``path``); the previous
            file is left untouched.
    """
    path = Path(path)
    tmp: Path | None = None
    try:
        tmp, fh = temp_file(path)
        with fh:
            if callable(write):
                write(fh)
            else:
                fh.write(write.encode("utf-8") if isinstance(write, str) else write)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write (ENOSPC) names no file: name the one being written
        raise
    if durable:
        _fsync_folder(path.parent)
    return path


def remove_stale_temps(folder: str | Path, *, only_dead: bool = True) -> list[Path]:
    """Delete the temporary files that :func:`atomic_write` left in ``folder`` when its process was killed.

    Args:
        folder: where to look (not recursive).
        only_dead: remove only the files of processes that no longer run (for folders no lock protects);
            ``False`` removes all of them (the caller owns the folder, so none is being written).

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if match is None or entry.is_dir(follow_symlinks=False):
            continue
        if only_dead and _alive(int(match.group(1))):
            continue
        try:
            os.unlink(entry.path)  # a link is removed itself, its target is left alone
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def is_temp(name: str) -> bool:
    """Whether a file name is one of :func:`atomic_write`'s temporary files."""
    return _TEMP.match(name) is not None


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # it exists (another user's), or we cannot tell: keep its file
    return True


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
        probe, fh = temp_file(folder / ".write-test")
        fh.close()
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write {what} {folder}: {exc.strerror or exc}") from None
    return folder
