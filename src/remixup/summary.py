"""A run's result as ``summary.json`` holds it: the last epoch's evaluation plus training statistics."""

from __future__ import annotations

import dataclasses
from typing import Any

from remixup.config import TrainConfig
from remixup.methods import Method

__all__ = ["EVAL_METRICS", "run_summary"]

EVAL_METRICS = ("top1", "top5", "balanced_acc", "many", "medium", "few", "per_class", "confusion")


def run_summary(config: TrainConfig, method: Method, model_name: str, class_counts: list[int], history: list[dict[str, Any]],
                last_eval: dict[str, Any], forked_from: dict[str, Any] | None = None, *,
                data_sha256: str | None = None) -> dict[str, Any]:  # fmt: skip
    """The LAST epoch's evaluation (never a model chosen on the test set), plus training statistics over all epochs.

    ``images_per_s`` and ``wall_time_s`` cover the epochs this run trained itself: a forked run's taken-over epochs
    are not its cost, so their time goes to ``forked_from["wall_time_s"]`` instead. ``data_sha256`` records which
    training data made the run (:func:`remixup.data.run.training_data_sha256`).
    """
    own_from = forked_from["epoch"] if forked_from is not None else 0
    own = history[own_from:]
    forced = [row["lam_y_forced"] for row in history if row.get("lam_y_forced") is not None]
    summary = {
        **{k: last_eval[k] for k in EVAL_METRICS if k in last_eval},  # none with run.eval_test=false
        **{k: v for k, v in history[-1].items() if k.startswith("val_")},  # the held-out validation split, if any
        "class_counts": class_counts,
        "lam_y_forced": sum(forced) / len(forced) if method.mixes and forced else None,
        "images_per_s": sum(row["images_per_s"] for row in own) / len(own),  # mean training throughput
        "train_loss": history[-1]["train_loss"],
        "train_acc": history[-1]["train_acc"],
        "epochs": config.run.epochs,
        "method": method.name,
        "effective_method": dataclasses.asdict(method),  # the registry entry with the config's mixing overrides
        "model": model_name,
        "recipe": config.recipe,
        "dataset": config.data.dataset,
        "imbalance": config.data.imbalance,
        "ratio": config.data.ratio,
        "seed": config.run.seed,
        "subset_seed": config.run.subset_seed,
        "wall_time_s": sum(row["time_s"] for row in own),
        "data_sha256": data_sha256,
    }
    if forked_from is not None:
        summary["forked_from"] = {**forked_from, "wall_time_s": sum(row["time_s"] for row in history[:own_from])}
    return summary
