"""The paper's qualitative figure: ERM, Mixup and Remix decision boundaries on imbalanced 2-D toy sets.

Each of the three toy sets (two blobs, two moons, two circles; :func:`remixup.data.load_toy`) is made long-tailed
(class 0 keeps its 1,000 training points, class 1 keeps 1,000/ρ) and an MLP is trained on it with each method
through the engine's Python API (:func:`remixup.engine.train`). The figure is a grid, one row per data set and one
column per method; each panel shows the model's decision regions, the imbalanced training points, and the
accuracy on the balanced test set of the majority class and of the minority class.

Every panel is a real run folder under ``OUT/runs/`` (so ``remixup report OUT/runs`` works on them), and an
existing finished run is reused rather than trained again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

TOY_DATASETS: tuple[str, ...] = ("blobs", "moons", "circles")
TOY_METHODS: tuple[str, ...] = ("erm", "mixup", "remix")
METHOD_TITLES = {"erm": "ERM", "mixup": "Mixup", "remix": "Remix"}


@dataclass(frozen=True)
class ToyResult:
    """One panel: the run folder, the trained model and its majority/minority test accuracy (%)."""

    dataset: str
    method: str
    run_dir: Path
    model: torch.nn.Module
    majority_acc: float
    minority_acc: float
    x_train: np.ndarray
    y_train: np.ndarray


def toy_config(
    dataset: str, method: str, out: Path, *, ratio: float, epochs: int, seed: int, overrides: Sequence[str] = ()
) -> Any:
    """The :class:`~remixup.config.TrainConfig` of one toy run (the ``paper`` recipe scaled to ``epochs``)."""
    from remixup.config import build_config

    values = {
        "data.dataset": dataset,
        "data.imbalance": "longtail",
        "data.ratio": float(ratio),
        "method.name": method,
        "model.name": "mlp",
        "run.out": str(out),
        "run.seed": seed,
        "run.device": "cpu",
        "run.progress": False,
        "run.tensorboard": False,
        "run.eval_every": epochs,
    }
    return build_config("paper", epochs=epochs, values=values, overrides=list(overrides))


def train_toy(
    dataset: str,
    method: str,
    runs_dir: Path,
    *,
    ratio: float = 10.0,
    epochs: int = 30,
    seed: int = 0,
    overrides: Sequence[str] = (),
) -> ToyResult:
    """Train (or reuse) one toy run and return its panel data.

    Raises:
        UserError / ValueError: a bad parameter, or an existing run folder with different settings.
    """
    from remixup import checkpoint
    from remixup.data import load_toy, make_imbalanced
    from remixup.engine import train
    from remixup.methods import get_method
    from remixup.models import build_model

    out = runs_dir / f"{dataset}-{method}-r{ratio:g}-e{epochs}-s{seed}"
    config = toy_config(dataset, method, out, ratio=ratio, epochs=epochs, seed=seed, overrides=overrides)
    runs_dir.mkdir(parents=True, exist_ok=True)
    # The engine prints a line per epoch; nine runs of them would bury the table, so they go to a log file.
    with open(runs_dir / f"{out.name}.log", "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        summary = train(config, resume="auto")  # a finished run folder is returned as it is
    state = checkpoint.load(out / "checkpoint.pt")
    model = build_model(
        state["model_name"],
        len(state["class_counts"]),
        in_features=2,
        classifier=get_method(method).classifier,
        classifier_bias=config.model.classifier_bias,
    )
    model.load_state_dict(state["model"])
    model.eval()
    counts = np.asarray(summary["class_counts"])
    per_class = np.asarray(summary["per_class"], dtype=float)
    major, minor = int(np.argmax(counts)), int(np.argmin(counts))
    train_set = make_imbalanced(load_toy(dataset, train=True), "longtail", ratio=float(ratio), subset_seed=config.run.subset_seed)
    return ToyResult(
        dataset, method, out, model, float(per_class[major]), float(per_class[minor]), train_set.x.numpy(), train_set.y.numpy()
    )


def plot_grid(
    results: Sequence[ToyResult],
    path: Path,
    *,
    datasets: Sequence[str],
    methods: Sequence[str],
    ratio: float,
    resolution: int = 200,
) -> Path:
    """Draw the decision regions of every result in a datasets × methods grid and save it as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_key = {(r.dataset, r.method): r for r in results}
    fig, axes = plt.subplots(
        len(datasets), len(methods), figsize=(3.4 * len(methods), 3.2 * len(datasets)), squeeze=False, constrained_layout=True
    )
    for i, dataset in enumerate(datasets):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            r = by_key[(dataset, method)]
            lo, hi = r.x_train.min(axis=0) - 0.5, r.x_train.max(axis=0) + 0.5
            gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
            grid = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float32)
            with torch.no_grad():
                prob = torch.softmax(r.model(grid).float(), dim=1)[:, 1].numpy().reshape(gx.shape)
            ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.35)
            ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.2)
            for c, color, size in ((0, "tab:blue", 4), (1, "tab:red", 10)):
                pts = r.x_train[r.y_train == c]
                ax.scatter(
                    pts[:, 0],
                    pts[:, 1],
                    s=size,
                    c=color,
                    alpha=0.6 if c == 0 else 0.9,
                    linewidths=0,
                    label=f"class {c} (n={len(pts)})",
                )
            ax.set_title(
                f"{METHOD_TITLES.get(method, method)}: majority {r.majority_acc:.1f}%, minority {r.minority_acc:.1f}%", fontsize=9
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"two {dataset}", fontsize=10)
                ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Decision boundaries on imbalanced 2-D data (ρ = {ratio:g}); accuracy on the balanced test set", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_toy(
    out: Path | str,
    *,
    datasets: Sequence[str] = TOY_DATASETS,
    methods: Sequence[str] = TOY_METHODS,
    ratio: float = 10.0,
    epochs: int = 30,
    seed: int = 0,
    overrides: Sequence[str] = (),
    echo: Any = print,
) -> tuple[Path, list[ToyResult]]:
    """Train every (dataset, method) pair and write ``OUT/toy.png``; return its path and the results."""
    out = Path(out)
    results = []
    for dataset in datasets:
        for method in methods:
            r = train_toy(dataset, method, out / "runs", ratio=ratio, epochs=epochs, seed=seed, overrides=overrides)
            echo(f"{dataset:<8} {method:<6} majority {r.majority_acc:6.2f}%  minority {r.minority_acc:6.2f}%")
            results.append(r)
    path = plot_grid(results, out / "toy.png", datasets=datasets, methods=methods, ratio=ratio)
    return path, results
