"""Evaluation: a model on batches, on tensors, on a run's data, or a checkpoint on a dataset.

Every path ends in :func:`evaluate_batches`, which accumulates a confusion matrix on the device
(:class:`~remixup.metrics.MetricCounts`), all-reduces it under DDP and summarises it: top-1/5, per-class,
balanced and many/medium/few accuracy (:func:`~remixup.metrics.summarize`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from remixup import checkpoint
from remixup._validation import check_number
from remixup.config import TrainConfig
from remixup.data.run import RunData, load_run_data
from remixup.errors import UserError
from remixup.metrics import MetricCounts, logit_adjustment, macro_auprc, macro_f1, summarize
from remixup.rundir import checkpoint_file
from remixup.runtime import Precision, resolve_device

__all__ = ["VAL_METRICS", "evaluate", "evaluate_batches", "evaluate_checkpoint", "evaluate_data", "evaluate_val"]

VAL_METRICS = ("top1", "top5", "balanced_acc", "many", "medium", "few")  # logged per evaluation as val_<name>
TABLE_METRICS = ("macro_f1", "macro_auprc")  # also, for tables (they keep each sample's softmax)


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *, class_counts: Any, amp: bool = False,
    channels_last: bool = False, world_size: int = 1, logit_adjust: float = 0.0, scores: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Metrics of ``model`` over ``(x float (B, ...), y (B,))`` batches; counts all-reduced under DDP.

    Args:
        model: the classifier (not DDP-wrapped: evaluation runs no collective per batch).
        batches: normalised inputs and their int64 labels.
        class_counts: (C,) training counts per class (for the many/medium/few groups and the prior).
        amp: bf16 autocast. channels_last: channels-last inputs (4-D batches).
        world_size: > 1 all-reduces the counts of the ranks' shards.
        logit_adjust: ``τ ≥ 0``: rank classes by ``z − τ·log π`` with the training prior ``π`` from
            ``class_counts`` (:func:`remixup.metrics.logit_adjustment`); 0 ranks by the raw logits ``z``. ``z`` is the
            model's output: for a loss that scales logits by ``s`` before the softmax (LDAM's cosine classifier,
            ``s = 30``) pass ``τ / s``, as :func:`evaluate_checkpoint` does.
        scores: also keep every sample's softmax to add ``macro_f1`` and ``macro_auprc``
            (:func:`remixup.metrics.macro_auprc`), in %; for small evaluation sets such as tables, one process.

    Returns:
        :func:`remixup.metrics.summarize`'s dict (accuracies in %), with ``macro_f1`` and ``macro_auprc`` when
        ``scores``.
    """
    device = next(model.parameters()).device
    shift = logit_adjustment(class_counts, logit_adjust).to(device) if logit_adjust else None
    was_training = model.training
    model.eval()
    counts = MetricCounts.zeros(len(class_counts), device)
    autocast = Precision(amp=amp).autocast(device)
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []
    for xb, yb in batches:
        xb = xb.to(device, non_blocking=True)
        if channels_last and xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(xb)
        logits = logits.float() if shift is None else logits.float() - shift
        counts.update(logits, yb.to(device))
        if scores:
            kept.append((torch.softmax(logits, dim=1).cpu(), yb.cpu()))
    if world_size > 1:
        counts.all_reduce()
    model.train(was_training)
    out = summarize(counts, class_counts)
    if scores and world_size == 1:
        out["macro_f1"] = macro_f1(out["confusion"])
        probs = torch.cat([p for p, _ in kept]) if kept else torch.zeros(0, len(class_counts))
        out["macro_auprc"] = macro_auprc(probs, torch.cat([y for _, y in kept]) if kept else torch.zeros(0, dtype=torch.int64))
    return out


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    class_counts: Any,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 1024,
    amp: bool = False,
    channels_last: bool = False,
    rank: int = 0,
    world_size: int = 1,
    logit_adjust: float = 0.0,
    scores: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on tensors (x, y): top-1/5, per-class, balanced and many/medium/few accuracy, confusion.

    Args:
        model: the classifier.
        x: (N, ...) inputs on the model's device: uint8 images (then ``transform`` normalises them) or floats.
        y: (N,) int64 labels.
        class_counts: (C,) training counts per class.
        transform: ``transform(x_batch) -> float (B, C, H, W)``, e.g. the dataset's ``eval_transform()``.
        batch_size: evaluation batch size.
        rank, world_size: evaluate the shard ``rank::world_size`` and all-reduce the counts (DDP).
        amp, channels_last, logit_adjust, scores: as :func:`evaluate_batches`.

    Returns:
        :func:`remixup.metrics.summarize`'s dict (accuracies in %).
    """
    index = torch.arange(rank, y.shape[0], world_size, device=y.device)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, index.numel(), batch_size):
            idx = index[start : start + batch_size]
            xb = x[idx]
            yield (transform(xb) if transform is not None else xb.float()), y[idx]

    return evaluate_batches(model, batches(), class_counts=class_counts, amp=amp, channels_last=channels_last,
                            world_size=world_size, logit_adjust=logit_adjust, scores=scores)  # fmt: skip


def evaluate_data(model: nn.Module, data: RunData, *, batch_size: int, precision: Precision, rank: int = 0,
                  world_size: int = 1, workers: int = 4, logit_adjust: float = 0.0, split: str = "test") -> dict[str, Any]:  # fmt: skip
    """Evaluate ``model`` on a run's evaluation split (``split="val"``: its validation split), its shard
    ``rank::world_size`` under DDP."""
    batches = data.eval_batches(batch_size=batch_size, rank=rank, world_size=world_size,
                                channels_last=precision.channels_last, workers=workers, split=split)  # fmt: skip
    return evaluate_batches(model, batches, class_counts=data.class_counts, amp=precision.amp, channels_last=precision.channels_last,
                            world_size=world_size, logit_adjust=logit_adjust, scores=data.table is not None)  # fmt: skip


def evaluate_val(model: nn.Module, data: RunData, *, batch_size: int, precision: Precision, rank: int = 0,
                 world_size: int = 1, workers: int = 4) -> dict[str, Any]:  # fmt: skip
    """The validation split's metrics as ``val_<name>`` for ``name`` in :data:`VAL_METRICS`; ``{}`` without one."""
    if not data.has_val:
        return {}
    m = evaluate_data(model, data, batch_size=batch_size, precision=precision, rank=rank, world_size=world_size,
                      workers=workers, split="val")  # fmt: skip
    return {f"val_{k}": m[k] for k in (*VAL_METRICS, *TABLE_METRICS) if k in m}


def evaluate_checkpoint(
    path: str | Path,
    *,
    dataset: str | None = None,
    root: str | None = None,
    device: str = "auto",
    batch_size: int = 1024,
    logit_adjust: float = 0.0,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint on a dataset's evaluation split (by default the one it was trained on).

    Args:
        path: a ``checkpoint.pt`` (or the run folder holding one).
        dataset: dataset name; default the checkpoint's. It must have the checkpoint's number of classes.
        root: data root; default the checkpoint's ``data.root``.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_size: evaluation batch size.
        logit_adjust: ``τ ≥ 0``: post-hoc logit adjustment by the checkpoint's training prior, applied to the logits
            the training softmax saw: ``s·z − τ·log π`` for a loss that scales the model's outputs ``z`` by ``s``
            (LDAM), ``z − τ·log π`` otherwise.

    Returns:
        :func:`evaluate_batches`'s metrics plus ``checkpoint``, ``epoch``, ``method``, ``dataset``,
        ``class_counts``, ``logit_adjust`` (τ) and ``logit_scale`` (``s``; 1 for every loss but LDAM).

    Raises:
        UserError: a missing, corrupt or incomplete checkpoint, a dataset whose classes do not match, or weights that
            do not fit the model built for the dataset's input shape.
    """
    from remixup.losses import build_loss
    from remixup.models import build_model_for

    check_number(logit_adjust, "logit_adjust", low=0.0)
    path = checkpoint_file(path)
    state = checkpoint.load(path)
    if str(state["model_name"]).startswith("custom:"):
        raise UserError(f"{path} holds a model of your own ({state['model_name'][7:]}) that remixup cannot rebuild; "
                        "load its state dict into that model in Python and call remixup.evaluation.evaluate")  # fmt: skip
    config = TrainConfig.from_dict(state["config"], source=f"the config in {path}")
    method = config.effective_method()
    name = dataset or config.data.dataset
    dev = resolve_device(device)
    from remixup.data.registry import get_spec

    size = config.data.image_size if get_spec(name).kind == "large_image" else 0  # image files: the run's input size
    data = load_run_data(
        name,
        root if root is not None else config.data.root,
        device=dev,
        train=False,
        table_options=config.data.table_options(),
        image_size=size,
    )  # a table: the split the run was tested on
    counts = torch.as_tensor(state["class_counts"])
    if data.num_classes != counts.numel():
        raise UserError(f"{path} was trained on {counts.numel()} classes but {name!r} has {data.num_classes}")
    data.class_counts = counts
    model = build_model_for(state["model_name"], counts.numel(), data.input_shape, classifier=method.classifier,
                            classifier_bias=config.model.classifier_bias)  # fmt: skip
    what = f"{state['model_name']} for {name} {tuple(data.input_shape)} with {counts.numel()} classes"
    checkpoint.load_model_state(model, state["model"], path, what=what)
    model.to(dev)
    precision = Precision(amp=dev.type == "cuda" and config.run.amp != "off")
    # LDAM trains on s·z: adjusting z itself by τ·log π would be an s-times (30×) stronger correction.
    scale = build_loss(method.loss, class_counts=counts.tolist()).logit_scale
    metrics = evaluate_data(model, data, batch_size=batch_size, precision=precision, workers=config.run.workers,
                            logit_adjust=logit_adjust / scale)  # fmt: skip
    return {**metrics, "checkpoint": str(path), "epoch": state["epoch"], "method": method.name, "dataset": name,
            "class_counts": counts.tolist(), "logit_adjust": float(logit_adjust), "logit_scale": scale}  # fmt: skip
