"""Atomic checkpoints, loaded with ``weights_only=True`` and validated before use.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (the model's and optimizer's state dicts,
generator states as uint8 tensors, the config as a plain dict), so ``torch.load(..., weights_only=True)`` reads it
without unpickling arbitrary objects. :func:`save` writes a new temporary file in the same folder, flushes and fsyncs
it, then ``os.replace``-s it over the target: a reader (or a resumed run) sees either the previous complete checkpoint
or the new one, never a torn file, even if the process is killed mid-write. :func:`load` checks the keys and their
types, :func:`load_model_state` the weights' names and shapes against the model they are loaded into, so a crafted
or mismatched file ends in one line naming it instead of a traceback. The engine saves only finite weights
(:func:`first_nonfinite`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from remixup._files import atomic_write
from remixup.errors import DivergedError, UserError
from remixup.runtime import Dist, any_rank

__all__ = ["FORMAT", "check_finite", "first_nonfinite", "load", "load_model_state", "load_optimizer_state", "save"]

FORMAT = 1

# key -> accepted types; every use needs these ...
_REQUIRED: dict[str, tuple[type, ...]] = {"epoch": (int,), "model": (dict,), "config": (dict,), "class_counts": (list,),
                                          "model_name": (str,)}  # fmt: skip
# ... and continuing a run (--resume, --fork) these too.
_TO_CONTINUE: dict[str, tuple[type, ...]] = {"optimizer": (dict,), "rng": (dict,), "history": (list,),
                                             "last_eval": (dict, type(None))}  # fmt: skip


class _Sink:
    """A file handle that remembers the ``OSError`` of a failed write: torch reports it as ``unexpected pos``."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.fh.flush()


def _write(obj: dict[str, Any], fh: BinaryIO) -> None:
    sink = _Sink(fh)
    try:
        torch.save(obj, sink)  # type: ignore[arg-type]
    except Exception:
        if sink.error is not None:
            raise sink.error from None
        raise


def save(obj: dict[str, Any], path: str | Path) -> Path:
    """Write ``obj`` to ``path`` atomically and durably (temp file in the same folder, fsync, ``os.replace``).

    Raises:
        UserError: the folder cannot be written or the disk is full (the message names the file and the reason);
            the previous checkpoint is left untouched.
    """
    try:
        return atomic_write(path, lambda fh: _write(obj, fh), durable=True)
    except OSError as exc:
        raise UserError(f"cannot write the checkpoint {path}: {exc.strerror or exc}; the previous checkpoint there (if any) "
                        "is left untouched") from None  # fmt: skip


def load(path: str | Path, *, map_location: str | torch.device = "cpu", to_continue: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save` with ``weights_only=True`` and check its keys and their types.

    Args:
        path: the file.
        map_location: where tensors are loaded.
        to_continue: also require what continuing the run needs (optimizer, random state, history).

    Raises:
        UserError: the file is missing, unreadable, corrupt, not a remixup checkpoint, lacks a key (the message
            names the file and the key), holds non-finite weights or a class list of another length than its counts.
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
    required = {**_REQUIRED, **(_TO_CONTINUE if to_continue else {})}
    for key, types in required.items():
        if key not in obj:
            raise UserError(f"checkpoint {path} lacks {key!r}: it is damaged or was not written by remixup")
        if not isinstance(obj[key], types) or isinstance(obj[key], bool):
            raise UserError(f"checkpoint {path} holds a {type(obj[key]).__name__} as {key!r}, expected "
                            f"{' or '.join(t.__name__ for t in types)}: it is damaged or was not written by remixup")  # fmt: skip
    bad = next((k for k, v in obj["model"].items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise UserError(f"checkpoint {path}: the model entry {bad!r} is not a tensor; it was not written by remixup")
    if (bad := first_nonfinite(obj["model"])) is not None:
        raise UserError(f"checkpoint {path}: the weight {bad!r} holds NaN or infinite values; the model cannot be evaluated "
                        "or continued (remixup never saves such weights: the file was changed or damaged)")  # fmt: skip
    classes = obj.get("classes")
    if isinstance(classes, list) and classes and len(classes) != len(obj["class_counts"]):
        raise UserError(f"checkpoint {path} names {len(classes)} classes but counts {len(obj['class_counts'])}; it is "
                        "damaged or was not written by remixup")  # fmt: skip
    if to_continue:
        rng = obj["rng"]
        if not all(isinstance(rng.get(k), torch.Tensor) and rng[k].dtype == torch.uint8 for k in ("torch", "mix")):
            raise UserError(f"checkpoint {path}: its random state ('rng') is damaged; it cannot be continued")
        if len(obj["history"]) != obj["epoch"] or obj["epoch"] < 1:
            raise UserError(f"checkpoint {path}: epoch {obj['epoch']} but {len(obj['history'])} epochs of history; it is "
                            "damaged and cannot be continued")  # fmt: skip
    return obj


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, *, what: str) -> None:
    """Load ``state`` into ``model`` after checking that every name and shape matches.

    Args:
        model: the freshly built model.
        state: the checkpoint's ``model`` entry.
        path: the checkpoint (for the message).
        what: the model and data it was built for, e.g. ``"resnet32 for cifar10 (3, 32, 32) inputs, 10 classes"``.

    Raises:
        UserError: a missing or unexpected entry, or a shape that differs (the first ones are named).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} in the checkpoint, {tuple(v.shape)} here"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or extra or shapes:
        parts = [f"{label} {', '.join(items[:3])}{', ...' if len(items) > 3 else ''}"
                 for label, items in (("missing", missing), ("unexpected", extra), ("shapes differ:", shapes)) if items]  # fmt: skip
        raise UserError(f"checkpoint {path} does not fit {what} ({'; '.join(parts)}); it was trained for another model "
                        "or data shape")  # fmt: skip
    model.load_state_dict(state)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any], path: str | Path) -> None:
    """Load an optimizer state dict; a mismatch (other parameter groups or sizes) ends in one line naming ``path``."""
    try:
        optimizer.load_state_dict(state)
    except (ValueError, KeyError, TypeError, RuntimeError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise UserError(f"checkpoint {path}: its optimizer state does not fit this model ({detail})") from None


def first_nonfinite(tensors: Mapping[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding a NaN or an infinity, ``None`` when all are finite.

    One device synchronisation in all (the check runs on the tensors' device).
    """
    floats = [(k, t) for k, t in tensors.items() if t.is_floating_point() or t.is_complex()]
    if not floats:
        return None
    ok = torch.stack([torch.isfinite(t).all() for _, t in floats])
    if bool(ok.all()):
        return None
    return floats[int((~ok).nonzero()[0])][0]


def check_finite(model: nn.Module, loss: float, epoch: int, world: Dist, *, last: Path) -> None:
    """Stop training before a non-finite model is evaluated or saved: the epoch's loss, and every parameter and buffer
    of ``model`` on every rank (BatchNorm statistics differ between DDP ranks; every rank must call this).

    Args:
        model: the (unwrapped) model after the epoch.
        loss: the epoch's mean training loss (the same on every rank).
        epoch: the epoch just trained (0-based).
        world: this process's place in the job.
        last: the run's checkpoint, which holds the last good epoch.

    Raises:
        UserError: naming the epoch, what became non-finite and the last good checkpoint.
    """
    bad = first_nonfinite(model.state_dict())
    if not any_rank(world, bad is not None) and math.isfinite(loss):
        return
    what = (
        f"training loss became {loss}" if not math.isfinite(loss) else f"{bad or 'a weight of another process'} became non-finite"
    )
    kept = f"the last good checkpoint is {last} (epoch {epoch})" if epoch else "no checkpoint was written"
    raise DivergedError(f"{what} in epoch {epoch + 1}; the run stopped and {kept}. Try a smaller optim.lr or run.amp=off")
