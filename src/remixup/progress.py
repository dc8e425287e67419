"""What a person watching a run sees: the epoch's progress bar, the fixed-column log line, TensorBoard scalars."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

__all__ = ["epoch_bar", "log_line", "tensorboard"]


def log_line(row: dict[str, Any], epochs: int) -> str:
    """The fixed-column stdout line of one epoch ('-' where a value was not measured)."""

    def f(key: str, fmt: str) -> str:
        v = row.get(key)
        return format(v, fmt) if v is not None else "-".rjust(len(format(0.0, fmt)))

    val = f"  val top1 {f('val_top1', '6.2f')}  val bal {f('val_balanced_acc', '6.2f')}" if "val_top1" in row else ""
    return (f"epoch {row['epoch']:>4d}/{epochs:<4d} lr {row['lr']:.5f}  loss {row['train_loss']:7.4f}  "
            f"acc {row['train_acc']:6.2f}  forced {f('lam_y_forced', '5.3f')}  top1 {f('top1', '6.2f')}  "
            f"bal {f('balanced_acc', '6.2f')}  img/s {row['images_per_s']:7.0f}  {row['time_s']:6.1f}s{val}")  # fmt: skip


@contextmanager
def epoch_bar(enabled: bool, total: int, epoch: int, epochs: int) -> Iterator[Any]:
    """A tqdm bar for one epoch on a terminal (None when disabled or when stderr is not a TTY)."""
    on = enabled and sys.stderr.isatty()
    bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False, dynamic_ncols=True) if on else None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


_TENSORBOARD_NOTED = False  # whether this process said that TensorBoard is off


def tensorboard(folder: Path, enabled: bool, start_epoch: int) -> Any:
    """A TensorBoard ``SummaryWriter`` into ``folder`` resuming after ``start_epoch``, or None: off, or not installed
    (then a one-line note on stderr says so, once per process: a grid or a search of many runs prints it once)."""
    global _TENSORBOARD_NOTED
    if not enabled:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        if _TENSORBOARD_NOTED:
            return None
        _TENSORBOARD_NOTED = True
        print("note: TensorBoard logging is off: the tensorboard package is not installed "
              "(pip install 'remixup[tensorboard]'; run.tensorboard=off silences this note)", file=sys.stderr)  # fmt: skip
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder), purge_step=start_epoch + 1)
