"""The run folder: the only module that knows its file names.

A run folder ``OUT`` holds::

    config.yaml          the resolved config, with the command that reruns it
    metrics.jsonl/.csv   one row per completed epoch (rewritten from the checkpoint's history on resume)
    checkpoint.pt        the latest epoch (atomic; ``checkpoint_eNNN.pt`` every ``run.keep_every`` epochs)
    summary.json         the result, written last: its presence means the run is finished
    tensorboard/         scalars per epoch, when TensorBoard is installed and ``run.tensorboard`` is on
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Literal

from remixup._files import atomic_write, ensure_writable
from remixup.errors import UserError

__all__ = ["LOG_COLUMNS", "RunFolder", "checkpoint_file", "read_summary", "run_status"]

CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tensorboard"
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "lam_y_forced", "images_per_s", "time_s",
               "top1", "top5", "balanced_acc", "many", "medium", "few",
               # the mixing family's telemetry (remixup.family.MixStats); empty for the other methods
               "partner_many", "partner_medium", "partner_few", "label_to_minority", "minority_label_share",
               "label_weight_many", "label_weight_medium", "label_weight_few")  # fmt: skip

Status = Literal["done", "resume", "todo"]


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or the ``checkpoint.pt`` in it when it is a run folder."""
    return Path(path) / CHECKPOINT if Path(path).is_dir() else Path(path)


def run_status(path: str | Path) -> Status:
    """``"done"`` (summary.json exists), ``"resume"`` (a checkpoint exists) or ``"todo"``."""
    path = Path(path)
    if (path / SUMMARY).is_file():
        return "done"
    if (path / CHECKPOINT).is_file():
        return "resume"
    return "todo"


def read_summary(path: str | Path) -> dict[str, Any] | None:
    """The run's ``summary.json`` as a dict, or ``None`` when it is missing or unreadable (an unfinished run)."""
    try:
        with open(Path(path) / SUMMARY, encoding="utf-8") as f:
            summary = json.load(f)
    except (OSError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) else None


class RunFolder:
    """Reading and writing one run folder (see the module docstring for its files).

    Args:
        path: the folder (``run.out``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    def kept_checkpoint(self, epoch: int) -> Path:
        """Where the checkpoint of ``epoch`` is kept (``run.keep_every``)."""
        return self.path / f"checkpoint_e{epoch:03d}.pt"

    def status(self) -> Status:
        return run_status(self.path)

    def read_summary(self) -> dict[str, Any] | None:
        return read_summary(self.path)

    def prepare(self, resume: bool | str) -> bool:
        """Create and probe the folder; return True when its checkpoint should be resumed.

        Args:
            resume: ``True`` (resume; the checkpoint must exist), ``"auto"`` (resume when there is a run) or ``False``.

        Raises:
            UserError: the folder cannot be written, or it already holds a run and ``resume`` is False.
        """
        ensure_writable(self.path)
        has_run = self.status() != "todo"
        if resume is True:
            return True
        if resume == "auto":
            return has_run
        if has_run:
            raise UserError(
                f"{self.path} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another --out"
            )
        return False

    def write_config(self, yaml_text: str) -> None:
        atomic_write(self.config, yaml_text)

    def write_logs(self, history: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl and metrics.csv from the history (one row per completed epoch)."""
        atomic_write(self.path / METRICS_JSONL, "".join(json.dumps(row) + "\n" for row in history))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(LOG_COLUMNS)
        for row in history:
            writer.writerow(["" if row.get(k) is None else row[k] for k in LOG_COLUMNS])
        atomic_write(self.path / METRICS_CSV, buf.getvalue())

    def write_summary(self, summary: dict[str, Any]) -> None:
        """Write summary.json; call it last, since its presence marks the run finished."""
        atomic_write(self.summary, json.dumps(summary, indent=1) + "\n")

    def read_history(self) -> list[dict[str, Any]]:
        """The rows of metrics.jsonl (else metrics.csv, as strings), ``[]`` when neither exists."""
        jsonl, csv_path = self.path / METRICS_JSONL, self.path / METRICS_CSV
        if jsonl.is_file():
            rows = []
            for line in jsonl.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut short by a kill: keep the complete epochs before it
            return rows
        if csv_path.is_file():
            with open(csv_path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        return []

    def holds_run(self) -> bool:
        """Whether the folder holds anything a run writes (a summary or a metrics log)."""
        return any((self.path / f).is_file() for f in (SUMMARY, METRICS_JSONL, METRICS_CSV))
