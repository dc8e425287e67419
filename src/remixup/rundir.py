"""The run folder: the only module that knows its file names.

A run folder ``OUT`` holds::

    config.yaml          the resolved config, with the command that reruns it
    metrics.jsonl/.csv   one row per completed epoch, appended (rewritten from the checkpoint's history on resume)
    checkpoint.pt        the latest checkpointed epoch (atomic; every ``run.checkpoint_every``-th, evaluated, kept
                         and last epoch; ``checkpoint_eNNN.pt`` every ``run.keep_every`` epochs)
    summary.json         the result, written last: its presence means the run is finished
    table.json           tables only: the preprocessing fitted on the training split (columns, medians, means,
                         standard deviations, categories, class names), applied to new rows by ``remixup predict``
    checkpoint_best.pt   when a caller keeps the best checkpoint on validation (``remixup reproduce tabular``)
    tensorboard/         scalars per epoch, when TensorBoard is installed and ``run.tensorboard`` is on
    .remixup-run         marks the folder as a run's, and is the lock of the process that owns it

**Ownership.** One process at a time writes a run folder: :meth:`RunFolder.prepare` takes an exclusive
``flock`` on ``.remixup-run`` (the operating system drops it when the process ends, even by SIGKILL, so no stale
lock is left) and a second process is refused with the folder and the owner's pid. ``--out`` may be a new or an
empty folder, or a run folder (one holding ``.remixup-run``, or a ``checkpoint.pt``/``summary.json`` among run files
only); a folder holding anything else is refused before a file is written in it. Temporary files that a killed
save left behind are removed when the folder is claimed, and a run that fails before writing anything removes the
folders it created (:meth:`RunFolder.release`).
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from remixup._files import atomic_write, ensure_writable, is_temp, remove_stale_temps
from remixup.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows: the folder is then not locked
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOG_COLUMNS", "RunFolder", "checkpoint_file", "read_summary", "run_status"]

CONFIG = "config.yaml"
CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tensorboard"
MARKER = ".remixup-run"
TABLE = "table.json"
BEST_CHECKPOINT = "checkpoint_best.pt"
_RUN_FILE = re.compile(
    r"^(config\.yaml|metrics\.jsonl|metrics\.csv|checkpoint\.pt|checkpoint_e\d+\.pt|checkpoint_best\.pt|summary\.json"
    r"|table\.json|tensorboard)$"
)
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "lam_y_forced", "images_per_s", "time_s",
               "top1", "top5", "balanced_acc", "many", "medium", "few",
               # the mixing family's telemetry (remixup.mixing.family.MixStats); empty for the other methods
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


def _csv_rows(rows: list[dict[str, Any]], *, header: bool) -> str:
    """``rows`` as lines of metrics.csv (:data:`LOG_COLUMNS`; empty cells for missing values), after the header."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    if header:
        writer.writerow(LOG_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else row[k] for k in LOG_COLUMNS])
    return buf.getvalue()


class RunFolder:
    """Reading and writing one run folder (see the module docstring for its files).

    Args:
        path: the folder (``run.out``).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: int | None = None  # the locked marker's descriptor while this process owns the folder
        self._created: list[Path] = []  # folders prepare() created, deepest first
        self._found: set[str] | None = None  # what the folder held when this process put the marker there (else None)
        self._logged: tuple[int, dict[str, Any] | None] = (0, None)  # rows this object logged, and the last of them

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

    @property
    def table(self) -> Path:
        return self.path / TABLE

    @property
    def best_checkpoint(self) -> Path:
        return self.path / BEST_CHECKPOINT

    def kept_checkpoint(self, epoch: int) -> Path:
        """Where the checkpoint of ``epoch`` is kept (``run.keep_every``)."""
        return self.path / f"checkpoint_e{epoch:03d}.pt"

    def status(self) -> Status:
        return run_status(self.path)

    def read_summary(self) -> dict[str, Any] | None:
        return read_summary(self.path)

    def prepare(self, resume: bool | str) -> bool:
        """Claim the folder for this process (see Ownership above); return True when its checkpoint should be resumed.

        Args:
            resume: ``True`` (resume; the folder must exist), ``"auto"`` (resume when there is a run) or ``False``.

        Raises:
            UserError: the folder cannot be written, holds files that are not a run's, is owned by another process,
                does not exist and ``resume`` is True, or already holds a run and ``resume`` is False. Nothing is
                written or created then.
        """
        self._claim(resume)
        try:
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
        except BaseException:
            self.release(failed=True)
            raise

    def _claim(self, resume: bool | str) -> None:
        path, created = self.path, False
        if not path.exists():
            if resume is True:
                raise UserError(f"cannot resume {path}: the folder does not exist; start the run without --resume")
            missing = [p for p in (path, *path.parents) if not p.exists()]
            try:
                path.mkdir(parents=True)
                self._created, created = missing, True
            except FileExistsError:
                pass  # another process created it just now: claim it as an existing folder
            except OSError as exc:
                raise UserError(f"cannot write the output folder {path}: {exc.strerror or exc}") from None
        if not created and not path.is_dir():
            raise UserError(f"--out {path} is a file, not a folder; choose a new or empty folder")
        if not created:
            self._check_foreign()
        found = None if (path / MARKER).exists() else set(os.listdir(path))
        for _ in range(8):
            fd = self._open_marker()
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    os.close(fd)
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise UserError(f"cannot lock the run folder {path}: {exc.strerror or exc}") from None
                    raise UserError(f"{path} is in use by another remixup process (pid {self._owner()}); wait for it "
                                    "to finish, or choose another --out") from None  # fmt: skip
            try:
                same = os.fstat(fd).st_ino == os.lstat(path / MARKER).st_ino
            except OSError:
                same = False
            if same:  # not a marker its previous owner removed while we waited for it
                break
            os.close(fd)
        else:
            raise UserError(f"cannot lock the run folder {path}: its lock file keeps changing")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock, self._found = fd, found
        remove_stale_temps(path, only_dead=False)  # we own the folder: no save of another process is under way

    def _check_foreign(self) -> None:
        """Refuse a folder holding files that are not a run's (the user's own config.yaml, notes, data)."""
        names = sorted(n for n in os.listdir(self.path) if not is_temp(n))
        if not names or MARKER in names:
            return
        foreign = [n for n in names if not _RUN_FILE.match(n)]
        if foreign or not {CHECKPOINT, SUMMARY} & set(names):
            shown = foreign or names
            listed = ", ".join(shown[:3]) + (", ..." if len(shown) > 3 else "")
            raise UserError(f"--out {self.path} holds files that remixup did not write ({listed}); choose a new or empty "
                            f"folder, or a run folder (one with {MARKER})")  # fmt: skip

    def _open_marker(self) -> int:
        try:
            return os.open(self.path / MARKER, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as exc:
            raise UserError(f"cannot write the output folder {self.path}: {exc.strerror or exc} ({MARKER})") from None

    def _owner(self) -> str:
        try:
            pid = (self.path / MARKER).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            pid = ""
        return pid if pid.isdigit() else "unknown"

    def release(self, *, failed: bool = False) -> None:
        """Give the folder up (the lock goes). ``failed``: when the run wrote nothing, remove its marker and the
        folders :meth:`prepare` created, so a failed run leaves the file system as it found it."""
        if self._lock is None:
            return
        try:
            left = {n for n in os.listdir(self.path) if not is_temp(n)} - {MARKER}
            if failed and (not left or (self._found is not None and left <= self._found)):  # it wrote nothing: no marker
                (self.path / MARKER).unlink(missing_ok=True)
            if failed and not left:
                for folder in self._created:
                    try:
                        folder.rmdir()
                    except OSError:
                        break
        finally:
            os.close(self._lock)
            self._lock, self._found = None, None
            self._created = []

    def write_config(self, yaml_text: str) -> None:
        atomic_write(self.config, yaml_text)

    def write_logs(self, history: list[dict[str, Any]]) -> None:
        """Make metrics.jsonl and metrics.csv hold the history (one row per completed epoch).

        The first call of this object rewrites both files atomically (a resumed run's logs then end at its
        checkpoint's epoch); a later call whose history extends what it wrote appends the new rows, so that logging
        costs the same at epoch 1,000 as at epoch 1. A kill mid-append can cut the last line short, which
        :meth:`read_history` skips; any other history is rewritten whole."""
        n, last = self._logged
        if n and len(history) >= n and history[n - 1] is last:  # the engine only appends to its history
            new = history[n:]
            if new:
                with open(self.path / METRICS_JSONL, "a", encoding="utf-8") as f:
                    f.write("".join(json.dumps(row) + "\n" for row in new))
                with open(self.path / METRICS_CSV, "a", encoding="utf-8", newline="") as f:
                    f.write(_csv_rows(new, header=False))
        else:
            atomic_write(self.path / METRICS_JSONL, "".join(json.dumps(row) + "\n" for row in history))
            atomic_write(self.path / METRICS_CSV, _csv_rows(history, header=True))
        self._logged = (len(history), history[-1] if history else None)

    def write_table(self, json_text: str) -> None:
        """Write table.json (a table's fitted preprocessing, :class:`remixup.data.table_preprocess.TablePreprocessor`)."""
        atomic_write(self.table, json_text)

    def read_table(self) -> str | None:
        """The text of table.json, ``None`` when the run has none (not a table, or trained before it was kept)."""
        try:
            return self.table.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

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
