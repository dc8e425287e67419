"""Plots and a Markdown summary of run folders written by ``remixup train`` (docs/ARCHITECTURE.md, run folders).

For each run: per-class accuracy against class size (log x), training curves (train loss, train accuracy and
test top-1 per epoch), the share of pairs whose λy was forced to 0 or 1 over training (mixing methods), and the
confusion matrix (rows normalised to the true class). For several runs, the per-class and curve plots are also
drawn overlaid for comparison. ``report.md`` holds a table of every run's ``summary.json`` metrics and links the
images.

An unfinished run (no ``summary.json``) still gets its curves from ``metrics.jsonl``; it is marked unfinished and
its final-metric plots are left out, so no partial result reads as complete.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remixup.errors import UserError
from remixup.rundir import MARKER, RunFolder

SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # (summary key, table heading, format)
    ("top1", "top-1", "{:.2f}"),
    ("top5", "top-5", "{:.2f}"),
    ("balanced_acc", "balanced", "{:.2f}"),
    ("many", "many", "{:.2f}"),
    ("medium", "medium", "{:.2f}"),
    ("few", "few", "{:.2f}"),
    ("lam_y_forced", "λy forced", "{:.3f}"),
    ("epochs", "epochs", "{}"),
    ("images_per_s", "images/s", "{:.0f}"),
    ("wall_time_s", "wall (s)", "{:.0f}"),
)


@dataclass
class Run:
    """What a run folder holds: its summary (``None`` while unfinished) and its per-epoch metrics rows."""

    path: Path
    summary: dict[str, Any] | None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    method: str | None = None
    display: str | None = None  # the legend label chosen by make_report (see short_labels)

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def label(self) -> str:
        """A legend label: the one :func:`short_labels` chose, else the method and the folder, else the folder."""
        if self.display:
            return self.display
        return f"{self.method} ({self.name})" if self.method else self.name


def short_labels(runs: Sequence[Run]) -> list[str]:
    """Legend labels as short as they can be and still tell the runs apart.

    The method name alone when no other run has the same method; otherwise the method and the folder name; the
    folder name when the method is unknown.
    """
    methods = [run.method for run in runs]
    return [
        run.name if m is None else (m if methods.count(m) == 1 else f"{m} ({run.name})")
        for run, m in zip(runs, methods, strict=True)
    ]


def _is_run(path: Path) -> bool:
    return RunFolder(path).holds_run()


def find_runs(paths: Sequence[Path | str]) -> list[Path]:
    """Run folders among ``paths``: each path is a run folder or a folder whose sub-folders are run folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise UserError(f"not a folder: {p}")
        if _is_run(p):
            found.append(p)
            continue
        children = sorted(c for c in p.iterdir() if c.is_dir() and _is_run(c))
        if not children:
            raise UserError(f"{p} is not a run folder (no summary.json or metrics.jsonl) and holds none")
        found.extend(children)
    return found


def load_run(path: Path | str) -> Run:
    """Read a run folder: ``summary.json`` if present, and ``metrics.jsonl`` (or ``metrics.csv``)."""
    path = Path(path)
    folder = RunFolder(path)
    summary = None
    if folder.summary.is_file():
        try:
            summary = json.loads(folder.summary.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{folder.summary} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    epochs = [{k: _number(v) if isinstance(v, str) else v for k, v in row.items()} for row in folder.read_history()]
    method = summary.get("method") if summary else _config_method(folder.config)
    return Run(path, summary, epochs, method=str(method) if method else None)


def _config_method(path: Path) -> str | None:
    """The method named in a run's ``config.yaml`` (what an unfinished run was training), if readable."""
    if not path.is_file():
        return None
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, RecursionError, ValueError, OSError):  # unreadable: no method shown
        return None
    method = config.get("method") if isinstance(config, dict) else None
    name = method.get("name") if isinstance(method, dict) else None
    return name if isinstance(name, str) else None


def _number(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text else value


def _series(run: Run, key: str) -> tuple[list[float], list[float]]:
    """Epochs and values of ``key`` over the rows that have a finite number for it."""
    xs, ys = [], []
    for k, row in enumerate(run.epochs):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            epoch = row.get("epoch", k)
            xs.append(float(epoch if isinstance(epoch, (int, float)) else k))
            ys.append(float(value))
    return xs, ys


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _color(k: int, n: int) -> str | tuple[float, ...]:
    """Run k's colour among n: the 10 default colours, or 20 distinct ones (tab20) when there are more runs."""
    if n <= 10:
        return f"C{k % 10}"
    import matplotlib

    return matplotlib.colormaps["tab20"](k % 20)


# Up to this many runs the legend sits inside the axes; with more it would hide the data and goes beside the plot.
_INLINE_LEGEND_MAX = 4


def _legend(fig: Any, ax: Any, n: int, fontsize: int = 8) -> None:
    """A legend inside the axes for a few runs; beside the plot, outside it, for more (it would hide the data)."""
    if n <= _INLINE_LEGEND_MAX:
        ax.legend(fontsize=fontsize)
    else:
        handles, labels = ax.get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right upper", fontsize=fontsize - 1)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


# ------------------------------------------------------------------------------------------------------ plots
def plot_per_class(runs: Sequence[Run], path: Path) -> Path | None:
    """Per-class test accuracy against the class's training size (log x), one marker series per run."""
    usable = [r for r in runs if r.summary and r.summary.get("per_class") and r.summary.get("class_counts")]
    if not usable:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5 if len(usable) <= _INLINE_LEGEND_MAX else 9.5, 4), layout="constrained")
    for k, run in enumerate(usable):
        assert run.summary is not None  # filtered above
        counts = [float(c) for c in run.summary["class_counts"]]
        acc = [float(a) for a in run.summary["per_class"]]
        if len(counts) != len(acc):
            raise UserError(
                f"{RunFolder(run.path).summary}: `per_class` has {len(acc)} entries but `class_counts` has {len(counts)}"
            )
        ax.scatter(counts, acc, s=22, alpha=0.75, color=_color(k, len(usable)), label=run.label)
    ax.set_xscale("log")
    ax.set_xlabel("training samples in the class (log scale)")
    ax.set_ylabel("test accuracy of the class (%)")
    ax.set_ylim(-3, 103)
    for edge in (20, 100):  # the few / medium / many-shot boundaries (< 20, 20-100, > 100)
        ax.axvline(edge, color="grey", lw=0.8, ls=":")
    ax.grid(alpha=0.3)
    ax.set_title("Per-class accuracy vs class size")
    if len(usable) > 1 or (usable[0].summary or {}).get("method"):
        _legend(fig, ax, len(usable))
    return _save(fig, path)


def plot_curves(runs: Sequence[Run], path: Path) -> Path | None:
    """Training curves: train loss; train accuracy and test top-1 per epoch."""
    usable = [r for r in runs if r.epochs]
    if not usable:
        return None
    plt = _pyplot()
    many = len(usable) > _INLINE_LEGEND_MAX
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(13 if many else 10, 3.8), layout="constrained")
    for k, run in enumerate(usable):
        color = _color(k, len(usable))
        ax_loss.plot(*_series(run, "train_loss"), color=color, label=run.label)
        # with many runs one legend (colour = run) serves both panels; the line style tells train from test
        ax_acc.plot(*_series(run, "train_acc"), color=color, ls="--", label=None if many else f"{run.label}: train")
        ex, ey = _series(run, "top1")
        ax_acc.plot(
            ex, ey, color=color, marker="o" if len(ex) < 30 else None, ms=3, label=None if many else f"{run.label}: test top-1"
        )
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Training loss")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy (%)")
    ax_acc.set_title("Train accuracy (dashed) and test top-1")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if many:
        _legend(fig, ax_loss, len(usable))
    else:
        ax_loss.legend(fontsize=7)
        ax_acc.legend(fontsize=7)
    return _save(fig, path)


def plot_lam_y_forced(runs: Sequence[Run], path: Path) -> Path | None:
    """Share of pairs whose λy was forced to 0 or 1, per epoch; ``None`` when no run logged one (no mixing)."""
    series = [(run, _series(run, "lam_y_forced")) for run in runs]
    series = [(run, xy) for run, xy in series if xy[0]]
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6 if len(series) <= _INLINE_LEGEND_MAX else 9, 3.5), layout="constrained")
    for k, (run, (xs, ys)) in enumerate(series):
        ax.plot(xs, ys, color=_color(k, len(series)), label=run.label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("share of pairs with λy ∈ {0, 1}")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title("Remix: pairs relabelled to the minority class")
    _legend(fig, ax, len(series))
    return _save(fig, path)


def plot_family(runs: Sequence[Run], path: Path) -> Path | None:
    """The mixing family's telemetry per epoch: the share of partners from few-shot classes, and the mean label
    share of a few-shot pair member (``remixup.mixing.family.MixStats``); ``None`` when no run logged them."""
    series = [(run, _series(run, "partner_few"), _series(run, "label_weight_few")) for run in runs]
    series = [item for item in series if item[1][0] or item[2][0]]
    if not series:
        return None
    plt = _pyplot()
    fig, (ax_p, ax_w) = plt.subplots(1, 2, figsize=(10 if len(series) <= _INLINE_LEGEND_MAX else 12, 3.5), layout="constrained")
    for k, (run, (px, py), (wx, wy)) in enumerate(series):
        ax_p.plot(px, py, color=_color(k, len(series)), label=run.label, marker="o", ms=3)
        ax_w.plot(wx, wy, color=_color(k, len(series)), label=run.label, marker="o", ms=3)
    ax_p.set_ylabel("share of partners from few-shot classes")
    ax_w.set_ylabel("mean label share of a few-shot member")
    ax_w.axhline(0.5, color="grey", lw=0.8, ls=":")
    for ax in (ax_p, ax_w):
        ax.set_xlabel("epoch")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    ax_p.set_title("Who is mixed with whom")
    ax_w.set_title("Where the label goes")
    _legend(fig, ax_w, len(series))
    return _save(fig, path)


def plot_confusion(run: Run, path: Path) -> Path | None:
    """Confusion matrix heatmap, rows (true class) normalised to percentages; numbers shown up to 12 classes."""
    matrix = (run.summary or {}).get("confusion")
    if not matrix:
        return None
    import numpy as np

    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise UserError(f"{RunFolder(run.path).summary}: `confusion` must be a square matrix; got shape {m.shape}")
    rows = m.sum(axis=1, keepdims=True)
    pct = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0) * 100
    plt = _pyplot()
    size = min(10.0, 3.0 + 0.4 * m.shape[0])
    fig, ax = plt.subplots(figsize=(size + 1, size), constrained_layout=True)
    image = ax.imshow(pct, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(image, ax=ax, label="% of the true class")
    if m.shape[0] <= 12:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                ax.text(
                    j, i, f"{pct[i, j]:.0f}", ha="center", va="center", fontsize=7, color="white" if pct[i, j] > 50 else "black"
                )
        ax.set_xticks(range(m.shape[0]))
        ax.set_yticks(range(m.shape[0]))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix: {run.label}")
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------------- report
def _cell(summary: dict[str, Any], key: str, fmt: str) -> str:
    value = summary.get(key)
    if value is None:
        return "—"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def summary_table(runs: Sequence[Run]) -> str:
    """A Markdown table of the ``summary.json`` metrics, one row per run (unfinished runs marked).

    A forked run's epochs read e.g. ``90 (forked at 72)``: its images/s and wall time cover its own 18 epochs.
    """
    head = ["run", "method", "data", *(h for _, h, _ in SUMMARY_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for run in runs:
        s = run.summary
        if s is None:
            last = run.epochs[-1].get("epoch", len(run.epochs)) if run.epochs else 0
            cells = [run.name, run.method or "—", "—", f"unfinished (last logged epoch {last})"] + [""] * (
                len(SUMMARY_COLUMNS) - 1
            )
        else:
            data = (
                " ".join(
                    f"{s[k]:g}" if isinstance(s[k], float) else str(s[k])
                    for k in ("dataset", "imbalance", "ratio")
                    if s.get(k) is not None
                )
                or "—"
            )
            fork = s.get("forked_from")
            forked = f" (forked at {fork['epoch']})" if isinstance(fork, dict) and "epoch" in fork else ""
            cells = [
                run.name,
                str(s.get("method", "—")),
                data,
                *(_cell(s, key, fmt) + (forked if key == "epochs" else "") for key, _, fmt in SUMMARY_COLUMNS),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "run"


_TITLE = "# remixup report"


def _check_out(out: Path) -> None:
    """Refuse an output folder holding anything but an earlier report: never overwrite the user's own files."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose a new or empty folder for the report")
    if not out.is_dir() or not (names := sorted(p.name for p in out.iterdir())):
        return
    report = out / "report.md"
    try:
        ours = report.is_file() and report.read_text(encoding="utf-8").startswith(_TITLE)
    except (OSError, UnicodeDecodeError):
        ours = False
    if not ours or MARKER in names:  # a run folder is never a report's
        listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise UserError(f"--out {out} holds files that are not a remixup report ({listed}); choose a new or empty folder "
                        "(an earlier report's folder is reused)")  # fmt: skip


def make_report(run_dirs: Sequence[Path | str], out: Path | str, *, per_run: bool = True) -> Path:
    """Write the PNGs and ``report.md`` for ``run_dirs`` (run folders, or folders of run folders) into ``out``.

    ``per_run=False`` leaves out each run's own plots and keeps the table and the overlaid comparison plots (for
    grids of many runs).

    Returns:
        The path of ``report.md``.

    Raises:
        UserError: a path is not a folder, holds no run, or a run's files are corrupt; ``out`` holds files that
            are not an earlier report (nothing is written then).
    """
    out = Path(out)
    _check_out(out)
    paths = find_runs(run_dirs)
    runs = [load_run(p) for p in paths]
    for run, label in zip(runs, short_labels(runs), strict=True):
        run.display = label
    out.mkdir(parents=True, exist_ok=True)
    slugs: dict[str, int] = {}
    md = [
        _TITLE,
        "",
        f"{len(runs)} run(s); accuracies in %, last epoch "
        "(never a model chosen on the test set). λy forced: share of mixed pairs whose label factor Remix set "
        "to 0 or 1.",
        "",
        summary_table(runs),
    ]

    def rel(p: Path) -> str:
        return p.relative_to(out).as_posix()

    if len(runs) > 1:
        compared = [
            plot_per_class(runs, out / "compare_per_class.png"),
            plot_curves(runs, out / "compare_curves.png"),
            plot_lam_y_forced(runs, out / "compare_lam_y_forced.png"),
            plot_family(runs, out / "compare_family.png"),
        ]
        images = [p for p in compared if p is not None]
        if images:
            md += ["## All runs", ""] + [f"![{p.stem}]({rel(p)})" for p in images] + [""]
    for run in runs if per_run else ():
        slug = _slug(run.name)
        slugs[slug] = slugs.get(slug, 0) + 1
        if slugs[slug] > 1:  # two folders with the same name under different parents
            slug = f"{slug}-{slugs[slug]}"
        folder = out / slug
        plots: list[Path | None] = [
            plot_per_class([run], folder / "per_class.png"),
            plot_curves([run], folder / "curves.png"),
            plot_lam_y_forced([run], folder / "lam_y_forced.png"),
            plot_confusion(run, folder / "confusion.png"),
            plot_family([run], folder / "family.png"),
        ]
        md += [f"## {run.label}", "", f"Folder: `{run.path}`" + ("" if run.finished else " — **unfinished**"), ""]
        md += [f"![{p.stem}]({rel(p)})" for p in plots if p is not None]
        if run.finished and plots[2] is None:
            md.append("(no λy-forced share: not a mixing method)")
        md.append("")
    path = out / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path
