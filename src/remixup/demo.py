"""The embedded demonstration: what Remix does on long-tailed digits, on a laptop CPU in a couple of minutes.

scikit-learn's bundled 8×8 digits (no download) are made long-tailed; ERM, Mixup, Remix and Remix-DRW each train
a small CNN over several seeds (each seed also draws its own long-tailed subset), and the demo prints overall and
many/medium/few-shot accuracy as mean ± std, writes a per-class accuracy plot, and draws the 2-D decision-boundary
figure of :mod:`remixup.toy`. Every number is what the run measured.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from remixup._validation import check_number
from remixup.config import build_config
from remixup.engine import train

DEMO_METHODS = ("erm", "mixup", "remix", "remix-drw")
METRICS = ("top1", "many", "medium", "few")  # the test split is balanced, so balanced accuracy = top-1
METRIC_TITLES = {"top1": "overall", "many": "many-shot", "medium": "medium-shot", "few": "few-shot", "balanced_acc": "balanced"}


@dataclass
class DemoSettings:
    """What the demo trains. The defaults finish in about two minutes on 2 CPU cores.

    Attributes:
        methods: method names (see ``remixup methods``).
        seeds: training seeds; seed k also uses subset seed k, so the spread covers both sources of variance.
        imbalance: imbalance profile of the digits' training split.
        ratio: imbalance ratio ρ.
        epochs: epochs per run (the ``ldam`` recipe scaled to this length: deferral in the last fifth).
        batch_size: mini-batch size (the training split has a few hundred images).
        lr: base learning rate.
    """

    methods: Sequence[str] = DEMO_METHODS
    seeds: Sequence[int] = (0, 1, 2)
    imbalance: str = "longtail"
    ratio: float = 50.0
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.1
    extra: list[str] = field(default_factory=list)

    def config(self, method: str, seed: int, out: Path) -> Any:
        values = {
            "data.dataset": "digits",
            "data.imbalance": self.imbalance,
            "data.ratio": self.ratio,
            "method.name": method,
            "optim.batch_size": self.batch_size,
            "optim.lr": self.lr,
            "run.seed": seed,
            "run.subset_seed": seed,
            "run.out": str(out),
            "run.progress": False,
            "run.tensorboard": False,
            "run.device": "cpu",
            "run.eval_every": self.epochs,
            "run.threads": 1,  # a model this small gains nothing from a second thread (docs/performance.md)
        }
        return build_config("ldam", epochs=self.epochs, values=values, overrides=self.extra)


def mean_std(values: Sequence[float | None]) -> tuple[float, float] | None:
    """Mean and sample standard deviation of the non-missing values (std 0 for one value); None when empty."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def format_table(summaries: dict[str, list[dict[str, Any]]]) -> str:
    """A Markdown table of mean ± std over seeds: one row per method, one column per metric."""
    head = "| method | " + " | ".join(METRIC_TITLES[m] for m in METRICS) + " |"
    lines = [head, "|---" * (len(METRICS) + 1) + "|"]
    for method, runs in summaries.items():
        cells = []
        for metric in METRICS:
            ms = mean_std([r[metric] for r in runs])
            cells.append("—" if ms is None else f"{ms[0]:.1f} ± {ms[1]:.1f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_per_class(summaries: dict[str, list[dict[str, Any]]], path: Path, title: str) -> None:
    """Grouped bars of per-class test accuracy (mean over seeds) with each class's training count beneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(summaries)
    first = summaries[methods[0]]
    num_classes = len(first[0]["per_class"])
    counts = np.mean([r["class_counts"] for r in first], axis=0)
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    for k, method in enumerate(methods):
        acc = np.array([[a if a is not None else np.nan for a in r["per_class"]] for r in summaries[method]])
        ax.bar(np.arange(num_classes) + (k - (len(methods) - 1) / 2) * width, np.nanmean(acc, 0), width,
               yerr=np.nanstd(acc, 0), capsize=2, label=method)  # fmt: skip
    ax.set_xticks(np.arange(num_classes), [f"{c}\nn≈{n:.0f}" for c, n in enumerate(counts)])
    ax.set_xlabel("class (training samples, mean over subset seeds)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title)
    ax.legend(ncols=len(methods), loc="lower left", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class DemoResult:
    """Where the demo wrote its files and what it measured."""

    table: str
    summaries: dict[str, list[dict[str, Any]]]
    files: list[Path]
    seconds: float


def demo_header(settings: DemoSettings, counts: Sequence[int]) -> str:
    """The line above the demo's table: data, training counts (of the first seed's subset), epochs and seeds."""
    return (f"digits {settings.imbalance} ρ={settings.ratio:g}, training counts {list(counts)} (subset seed {settings.seeds[0]}), "
            f"{settings.epochs} epochs, seeds {list(settings.seeds)}; top-1 % on the balanced test split (last epoch), mean ± std")  # fmt: skip


def run_demo(out: str | Path, settings: DemoSettings | None = None, *, toy: bool = True, progress: bool = True) -> DemoResult:
    """Train every method × seed on long-tailed digits, then write the table, the plots and ``demo.json`` to ``out``.

    Args:
        out: output folder; its ``runs/`` sub-folder is replaced.
        settings: what to train (:class:`DemoSettings`).
        toy: also draw the 2-D decision-boundary figure (:func:`remixup.toy.run_toy`).
        progress: show a progress bar over runs.
    """
    settings = settings or DemoSettings()
    check_number(settings.epochs, "epochs", owner="demo", low=2, integer=True)
    start = time.perf_counter()
    out = Path(out)
    runs_dir = out / "runs"
    if runs_dir.exists():
        shutil.rmtree(runs_dir)
    runs_dir.mkdir(parents=True)
    configs = [(m, s, settings.config(m, s, runs_dir / f"{m}-seed{s}")) for m in settings.methods for s in settings.seeds]
    summaries: dict[str, list[dict[str, Any]]] = {m: [] for m in settings.methods}
    bar = tqdm(configs, desc="demo", unit="run", disable=not progress, dynamic_ncols=True)
    for method, seed, config in bar:
        bar.set_postfix_str(f"{method} seed {seed}")
        with contextlib.redirect_stdout(io.StringIO()):  # one line per epoch per run would drown the table
            summaries[method].append(train(config))
    bar.close()

    table = format_table(summaries)
    counts = summaries[settings.methods[0]][0]["class_counts"]
    profile = f"digits {settings.imbalance} ρ={settings.ratio:g}"
    per_class_png = out / "per_class.png"
    plot_per_class(summaries, per_class_png, f"Per-class accuracy on {profile} ({len(settings.seeds)} seeds)")
    files = [per_class_png]
    if toy:
        from remixup.toy import run_toy

        toy_png, _ = run_toy(out / "toy", overrides=["run.threads=1"], echo=lambda *_: None)
        files.append(toy_png)
    seconds = time.perf_counter() - start
    header = demo_header(settings, counts)
    (out / "demo.md").write_text(f"{header}\n\n{table}\n", encoding="utf-8")
    (out / "demo.json").write_text(json.dumps({"settings": {k: v if not isinstance(v, tuple) else list(v) for k, v in vars(settings).items()},
                                               "seconds": seconds, "summaries": summaries}, indent=1) + "\n", encoding="utf-8")  # fmt: skip
    files += [out / "demo.md", out / "demo.json"]
    return DemoResult(table=f"{header}\n\n{table}", summaries=summaries, files=files, seconds=seconds)
