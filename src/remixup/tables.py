"""A grid's results as a table: each cell's mean ± std over its finished runs beside the paper's number, as Markdown,
and the sweep's plot of each Remix variant beside its base method. Reads run folders; trains nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from remixup.experiments import Column, Experiment, RunSpec
from remixup.rundir import read_summary

__all__ = ["CellStats", "as_run", "collect", "format_cell", "markdown_table", "metric_value", "plot_sweep", "read_metric", "recipe_epochs",
           "write_results"]  # fmt: skip


def recipe_epochs(recipe: str) -> int:
    """The number of epochs ``recipe`` itself trains for."""
    from remixup.config import build_config

    return build_config(recipe, validate=False).run.epochs


def read_metric(run_dir: Path, key: str) -> float | None:
    summary = read_summary(run_dir)
    value = None if summary is None else summary.get(key)
    return float(value) if isinstance(value, (int, float)) else None


# ------------------------------------------------------------------------------------------------------ tables
@dataclass(frozen=True)
class CellStats:
    """The finished runs of one cell: their values, mean, sample std (ddof = 1) and the paper's number."""

    values: tuple[float, ...]
    paper: float | None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        if self.n < 2:
            return None
        m = self.mean
        assert m is not None
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))


def metric_value(summary: dict, metric: str) -> float | None:
    """The quantity a table shows from one ``summary.json``: ``top1`` or ``top1_error`` (100 − top1)."""
    top1 = summary.get("top1")
    if not isinstance(top1, (int, float)):
        return None
    return float(top1) if metric == "top1" else 100.0 - float(top1)


def collect(experiment: Experiment, runs: Sequence[RunSpec], runs_dir: Path) -> dict[tuple[str, str], CellStats]:
    """Read the finished runs of ``runs`` (all shards: whatever is in ``runs_dir``) into one entry per cell."""
    values: dict[tuple[str, str], list[float]] = {}
    for spec in runs:
        summary = read_summary(runs_dir / spec.run_id)
        value = None if summary is None else metric_value(summary, experiment.metric)
        if value is not None:
            values.setdefault(spec.cell, []).append(value)
    return {
        (row.label, col.label): CellStats(tuple(values.get((row.label, col.label), ())), experiment.paper_value(row, col))
        for row in experiment.rows
        for col in experiment.columns
    }


def format_cell(stats: CellStats, reference: str = "paper") -> str:
    """``"75.12 ± 0.31 (n=5) · paper 75.36"``; an empty cell reads ``"— · paper 75.36"``; no paper number "—"."""
    paper = "—" if stats.paper is None else f"{stats.paper:.2f}"
    if stats.mean is None:
        measured = "—"
    elif stats.std is None:
        measured = f"{stats.mean:.2f} (n=1)"
    else:
        measured = f"{stats.mean:.2f} ± {stats.std:.2f} (n={stats.n})"
    return f"{measured} · {reference} {paper}"


def markdown_table(experiment: Experiment, cells: dict[tuple[str, str], CellStats], *, note: str = "") -> str:
    """The experiment's Markdown table: one row per method (or swept value), one column per dataset setting."""
    what = "top-1 error (%)" if experiment.metric == "top1_error" else "top-1 accuracy (%)"
    first = "method" if experiment.sweep is None else experiment.rows[0].label.split(" = ")[0]
    head = "| " + " | ".join([first, *(c.label for c in experiment.columns)]) + " |"
    rule = "|" + "---|" * (len(experiment.columns) + 1)
    lines = [
        f"## {experiment.title}",
        "",
        f"Each cell: measured {what}, last epoch, mean ± std (sample std) over the n finished runs, "
        f"then the {experiment.reference} number (— where a cell has no finished run or no such number).",
        "",
    ]
    if experiment.reference_note:
        lines += [experiment.reference_note, ""]
    if note:
        lines += [note, ""]
    lines += [head, rule]
    for row in experiment.rows:
        cells_text = [format_cell(cells[(row.label, col.label)], experiment.reference) for col in experiment.columns]
        lines.append("| " + " | ".join([row.label, *cells_text]) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(experiment: Experiment, cells: dict[tuple[str, str], CellStats], path: Path) -> Path | None:
    """For a κ or τ sweep: accuracy (mean ± std over finished runs) against the swept value, as a PNG.

    Returns the path written, or ``None`` when the experiment is not a sweep or has no finished cell.
    """
    if experiment.sweep is None:
        return None
    name, values = experiment.sweep
    column = experiment.columns[0]
    xs, means, stds, paper_x, paper_y = [], [], [], [], []
    for value, row in zip(values, experiment.rows, strict=True):
        stats = cells[(row.label, column.label)]
        if stats.mean is not None:
            xs.append(value)
            means.append(stats.mean)
            stds.append(stats.std or 0.0)
        if stats.paper is not None:
            paper_x.append(value)
            paper_y.append(stats.paper)
    if not xs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    symbol = {"kappa": "κ", "tau": "τ"}.get(name, name)
    fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
    ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3, label="measured (mean ± std)")
    if paper_x:
        ax.scatter(paper_x, paper_y, marker="*", s=120, color="tab:red", zorder=3, label="paper")
    if name == "kappa":
        ax.set_xscale("log")
        ax.set_xticks(list(values), [f"{v:g}" for v in values])
        ax.minorticks_off()
    ax.set_xlabel(symbol)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_title(f"Remix-DRW, {column.label}: accuracy vs {symbol}")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _setting(recipe: str, epochs: int | None, column: Column, overrides: Sequence[str]) -> tuple[str, str, float, str]:
    """(dataset, imbalance, ratio, model) a run of ``column`` trains on once ``overrides`` are applied."""
    from remixup.config import build_config
    from remixup.data import DATASETS

    own = [f"data.dataset={column.dataset}", f"data.imbalance={column.imbalance}", f"data.ratio={column.ratio}"]
    config = build_config(recipe, epochs=epochs, overrides=[*own, *overrides], validate=False)
    d = config.data
    model = config.model.name if config.model.name != "auto" else DATASETS[d.dataset].model if d.dataset in DATASETS else "auto"
    return d.dataset, d.imbalance, d.ratio, model


def _label(dataset: str, imbalance: str, ratio: float) -> str:
    profile = "balanced" if imbalance == "none" else f"{'LT' if imbalance == 'longtail' else 'Step'}-{ratio:g}"
    return f"{dataset} {profile}"


def as_run(experiment: Experiment, runs: Sequence[RunSpec]) -> tuple[Experiment, dict[str, str]]:
    """``experiment`` as its runs actually train it: where overrides (``--set data.dataset=digits``, a model, a
    profile) change a column's dataset, imbalance profile or model, that column is relabelled, the title names
    what was run and the reference numbers of the changed columns are dropped (they belong to other data).

    Returns:
        The experiment to show, and ``{original column label: shown label}``.
    """
    changed: dict[str, str] = {}
    for column in experiment.columns:
        spec = next((r for r in runs if r.column == column), None)
        if spec is None:
            continue
        intended = _setting(experiment.recipe, spec.epochs, column, experiment.extra)
        actual = _setting(spec.recipe, spec.epochs, column, spec.overrides)
        if actual != intended:
            changed[column.label] = f"{_label(*actual[:3])}, {actual[3]}"
    shown = list(changed.values())
    for original, label in list(changed.items()):
        if shown.count(label) > 1:  # two columns overridden alike stay two columns
            changed[original] = f"{label} (as {original})"
    if not changed:
        return experiment, {}
    columns = tuple(dataclasses.replace(c, label=changed.get(c.label, c.label)) for c in experiment.columns)
    paper = {(row, changed.get(col, col)): v for (row, col), v in experiment.paper.items() if col not in changed}
    what = "top-1 error (%)" if experiment.metric == "top1_error" else "top-1 accuracy (%)"
    settings = "; ".join(sorted(set(changed.values())))
    title = f"Table {experiment.name} run on {settings}: {what}"
    note = (f"The overrides of these runs replace the table's data or model ({', '.join(changed)}), so the "
            f"{experiment.reference} numbers, which belong to those, are not shown.")  # fmt: skip
    return dataclasses.replace(experiment, title=title, columns=columns, paper=paper, reference_note=note), changed


def write_results(experiment: Experiment, runs: Sequence[RunSpec], runs_dir: Path) -> tuple[Path, Path | None, str]:
    """Write ``RUNS/<table>.md`` (and ``RUNS/<table>.png`` for a sweep); return their paths and the table text.

    The title, column labels and reference numbers follow what the runs train (:func:`as_run`)."""
    cells = collect(experiment, runs, runs_dir)
    shown, changed = as_run(experiment, runs)
    if changed:
        cells = {(row, changed.get(col, col)): dataclasses.replace(stats, paper=shown.paper.get((row, changed.get(col, col))))
                 for (row, col), stats in cells.items()}  # fmt: skip
        experiment = shown
    finished = sum(c.n for c in cells.values())
    note = f"{finished} of {len(runs)} runs finished (runs folder: `{runs_dir}`)."
    scaled = sorted({spec.epochs for spec in runs if spec.epochs is not None and spec.epochs != recipe_epochs(spec.recipe)})
    if scaled:  # the title names the full-length recipe; say that these runs are shorter (or longer)
        n = ", ".join(str(e) for e in scaled)
        note += f" Schedule scaled to {n} epochs (`--epochs {n}`), not the recipe's full length."
    text = markdown_table(experiment, cells, note=note)
    runs_dir.mkdir(parents=True, exist_ok=True)
    md = runs_dir / f"{experiment.name}.md"
    png = plot_sweep(experiment, cells, runs_dir / f"{experiment.name}.png")
    if png is not None:
        text += f"\n![{experiment.title}]({png.name})\n"
    md.write_text(text, encoding="utf-8")
    return md, png, text
