"""Atomic checkpoints, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (the model's and optimizer's state dicts,
generator states as uint8 tensors, the config as a plain dict), so ``torch.load(..., weights_only=True)`` reads it
without unpickling arbitrary objects. :func:`save` writes a temporary file in the same folder, flushes and fsyncs it,
then ``os.replace``-s it over the target: a reader (or a resumed run) sees either the previous complete checkpoint or
the new one, never a torn file, even if the process is killed mid-write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from remixup._files import atomic_write
from remixup.errors import UserError

FORMAT = 1


def save(obj: dict[str, Any], path: str | Path) -> Path:
    """Write ``obj`` to ``path`` atomically and durably (temp file in the same folder, fsync, ``os.replace``).

    Raises:
        OSError: the folder cannot be written or the disk is full; the previous checkpoint is left untouched.
    """
    return atomic_write(path, lambda fh: torch.save(obj, fh), durable=True)


def load(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save` with ``weights_only=True``.

    Raises:
        UserError: the file is missing, unreadable, corrupt, or not a remixup checkpoint (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path} (nothing to resume or evaluate; check the path or --out)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...) for a bad file
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}: {detail})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or "model" not in obj or "config" not in obj:
        raise UserError(f"checkpoint {path} is not a remixup checkpoint (format {FORMAT})")
    return obj
