"""Which configs may continue a checkpoint: resume (the same run, anywhere) and fork (another run from its epoch).

One list says what may change, by config section:

* :data:`RESUME_FREE`: where and how a run executes, never what it computes (device, threads, progress, ...).
  A resumed run takes these from the new call and everything else from the checkpoint.
* :data:`FORK_FREE`: what a fork may change besides, provided the epochs already trained would have run alike:
  the method (within one mixing, label rule and loss), β and the loss averaging of re-balancing, the deferral epoch
  and the run length. Remix and Remix-DRW train alike until re-weighting starts, so Remix-DRW can fork from Remix's
  checkpoint at the deferral epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from remixup.config import TrainConfig
from remixup.errors import UserError
from remixup.methods import Method, get_method

__all__ = ["FORK_FREE", "RESUME_FREE", "balancing_at", "continue_config"]

_RESUME_FREE = {
    "data": ("root",),
    "run": (
        "device",
        "progress",
        "tensorboard",
        "threads",
        "eval_batch_size",
        "out",
        "compile",
        "compile_backend",
        "workers",
        "malloc",
        "keep_every",
        "checkpoint_every",
    ),
}
_FORK_FREE = {"method": ("name", "beta", "reduction"), "schedule": ("deferral_epoch",), "run": ("epochs",)}
RESUME_FREE = tuple(f"{section}.{key}" for section, keys in _RESUME_FREE.items() for key in keys)
FORK_FREE = tuple(f"{section}.{key}" for section, keys in _FORK_FREE.items() for key in keys)


def balancing_at(method: Method, epoch: int, deferral_epoch: int) -> tuple[bool, bool]:
    """(re-weight?, re-sample?) during ``epoch``: RW/RS always, DRW/DRS from ``deferral_epoch`` on (0-based)."""
    on = epoch >= deferral_epoch
    return (method.weighting == "rw" or (method.weighting == "drw" and on),
            method.sampling == "rs" or (method.sampling == "drs" and on))  # fmt: skip


def continue_config(config: TrainConfig, saved: dict[str, Any], path: Path, *, mode: Literal["resume", "fork"],
                    epoch: int = 0) -> TrainConfig:  # fmt: skip
    """The config that continues the checkpoint at ``path`` (its config ``saved``, trained ``epoch`` epochs).

    ``mode="resume"``: the checkpoint's config with this call's :data:`RESUME_FREE` keys. ``mode="fork"``: ``config``
    itself, once it is shown that it would have trained the first ``epoch`` epochs exactly as the checkpoint did.

    Raises:
        UserError: a key outside the free list differs, or (fork) an epoch before ``epoch`` would have trained
            differently, or nothing is left to train; the message names the first difference.
    """
    old = TrainConfig.from_dict(saved, source=f"the config in {path}")
    free = RESUME_FREE + (FORK_FREE if mode == "fork" else ())
    new_flat, old_flat = config.flat(), old.flat()
    differ = [k for k in new_flat if k not in free and k != "recipe" and new_flat[k] != old_flat[k]]
    if differ:
        shown = ", ".join(f"{k}: {old_flat[k]!r} -> {new_flat[k]!r}" for k in differ[:4])
        if mode == "resume":
            raise UserError(f"cannot resume {path}: the configuration differs from the checkpoint's ({shown}); "
                            "resume with the same settings or start a new run in another --out")  # fmt: skip
        raise UserError(f"cannot fork from {path}: the configuration differs from the checkpoint's ({shown}); a fork may "
                        f"change only {', '.join(FORK_FREE)}")  # fmt: skip
    if mode == "resume":
        for key in RESUME_FREE:
            section, name = key.split(".")
            setattr(getattr(old, section), name, getattr(getattr(config, section), name))
        return old
    _check_fork_epochs(config, old, path, epoch)
    return config


def _check_fork_epochs(config: TrainConfig, old: TrainConfig, path: Path, epoch: int) -> None:
    if config.run.epochs <= epoch:
        raise UserError(f"cannot fork from {path}: it has trained {epoch} epochs and run.epochs={config.run.epochs} "
                        "leaves none to train; set --epochs (run.epochs) higher")  # fmt: skip
    before, after = get_method(old.method.name), get_method(config.method.name)
    family = ("partner", "draw", "prob", "skip_first", "skip_last")  # the mixing family's axes (remixup.mixing.family)
    if (before.mixer, before.labels, before.loss, *(getattr(before, k) for k in family)) != (
        after.mixer, after.labels, after.loss, *(getattr(after, k) for k in family)
    ):  # fmt: skip
        raise UserError(f"cannot fork {after.name} from {path} ({before.name}): the two methods mix, label or compute "
                        "the loss differently from the first epoch; fork only between methods that differ in "
                        "(deferred) re-weighting or re-sampling")  # fmt: skip
    skip_last = after.skip_last if config.mixing.skip_last is None else config.mixing.skip_last
    for e in range(epoch):
        if skip_last and (e < old.run.epochs - skip_last) != (e < config.run.epochs - skip_last):
            raise UserError(f"cannot fork {after.name} from {path} at epoch {epoch}: with run.epochs={config.run.epochs} "
                            f"epoch {e + 1} would have mixed differently (the mixing window ends {skip_last} epochs "
                            "before the last)")  # fmt: skip
        was = balancing_at(before, e, old.schedule.deferral_epoch)
        now = balancing_at(after, e, config.schedule.deferral_epoch)
        changed = was != now or (any(was) and old.method.beta != config.method.beta)
        changed = changed or (was[0] and old.method.reduction != config.method.reduction)
        if changed:
            raise UserError(f"cannot fork {after.name} from {path} at epoch {epoch}: epoch {e + 1} would have trained "
                            f"differently (re-weighting, re-sampling, method.beta or method.reduction); fork from a "
                            f"checkpoint of epoch {e} or earlier, or move schedule.deferral_epoch")  # fmt: skip
