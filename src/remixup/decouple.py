"""Decoupled second stages on a finished run: cRT, LWS, τ-normalisation, NCM and MiSLAS's stage 2.

``decouple(run, method=..., out=...)`` takes a run folder trained by ``remixup train`` (the first stage), keeps its
backbone (every layer but the classifier ``fc``) and learns or sets a new classifier:

========= ============================================================================= =====================
method    what changes                                                                  backbone
========= ============================================================================= =====================
crt       ``fc`` re-initialised and re-trained, class-balanced sampling, cross-entropy  frozen (bit-identical)
lws       one learned scale per class on the frozen ``fc``, class-balanced sampling     frozen (bit-identical)
tau-norm  ``w_c / ‖w_c‖^τ`` (bias dropped), τ in 0, 0.1, …, 2 chosen on a validation     frozen (bit-identical)
          split by its balanced accuracy, never on the test split
ncm       cosine similarity to each class's mean training feature                       frozen (bit-identical)
mislas    ``fc`` fine-tuned and LWS, label-aware smoothing, class-balanced sampling;     weights frozen; with
          shifted BatchNorm: the backbone's BatchNorm statistics re-estimated on the      ``shift_bn`` its
          class-balanced batches                                                        BatchNorm statistics move
========= ============================================================================= =====================

Kang et al., "Decoupling representation and classifier for long-tailed recognition", ICLR 2020
(https://arxiv.org/abs/1910.09217); Zhong et al., "Improving calibration for long-tailed recognition", CVPR 2021
(https://arxiv.org/abs/2104.00466). The formulas are in :mod:`remixup.heads`.

The trained methods run ``epochs`` epochs (10) of SGD (momentum 0.9, batch 128, weight decay 2e-4, lr 0.1 with a
cosine decay to 0 per epoch, as the MiSLAS CIFAR configs) on the training split with its augmentation; MiSLAS
trains ``fc`` at ``lr × lr_factor`` and the scales at ``lr``. Its ε_1/ε_K, ``shift_bn`` and ``lr_factor`` default to
the authors' configs for the data set and ratio (:data:`MISLAS_DEFAULTS`).

**Output.** An ordinary run folder: the new classifier is folded into the model's ``fc`` (LWS: ``s_c w_c``,
``s_c b_c``; τ-norm: ``w_c / ‖w_c‖^τ`` and no bias; NCM: ``μ_c / ‖μ_c‖`` and no bias, so its logits are
``‖f‖ cos(f, μ_c)``, the same ranking as cosine NCM and so the same accuracies), so ``remixup eval``, ``predict`` and
``report`` read it like any run. ``summary.json`` names the first stage (``first_stage``: run, checkpoint, its
SHA-256, method, epoch) and the second (``decouple``). A killed run continues with ``resume=True`` and ends
bit-identical (the batches, augmentation and initialisation come from the seed and the epoch). Single process.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from remixup import checkpoint
from remixup._validation import check_choice, check_number
from remixup.balancing import ClassBalancedSampler
from remixup.config import TrainConfig
from remixup.data.run import RunData, TensorData, load_run_data
from remixup.errors import UserError
from remixup.evaluation import evaluate_data, evaluate_val
from remixup.heads import LabelAwareSmoothing, class_means, tau_norm_weight
from remixup.progress import log_line
from remixup.rundir import RunFolder, checkpoint_file, read_summary
from remixup.runtime import Precision, resolve_device
from remixup.summary import EVAL_METRICS

__all__ = [
    "DECOUPLE_METHODS",
    "MISLAS_DEFAULTS",
    "TAU_GRID",
    "DecoupleOptions",
    "balanced_accuracy",
    "decouple",
    "file_sha256",
    "mislas_defaults",
]

DECOUPLE_METHODS = ("crt", "lws", "tau-norm", "ncm", "mislas")
TRAINED = ("crt", "lws", "mislas")
TAU_GRID = tuple(round(0.1 * i, 1) for i in range(21))  # 0, 0.1, ..., 2 (the authors' np.linspace(0, 2, 21))

# (dataset, ratio) -> (ε_1, ε_K, shift_bn, lr_factor) from the authors' stage-2 configs (dvlab-research/MiSLAS,
# config/*/*_stage2_mislas.yaml); ratio 0 stands for the data set's own imbalance.
MISLAS_DEFAULTS: dict[tuple[str, float], tuple[float, float, bool, float]] = {
    ("cifar10", 100.0): (0.3, 0.0, False, 0.5),
    ("cifar10", 50.0): (0.2, 0.0, False, 0.2),
    ("cifar10", 10.0): (0.1, 0.0, False, 0.2),
    ("cifar100", 100.0): (0.4, 0.1, True, 0.2),
    ("cifar100", 50.0): (0.3, 0.0, True, 0.1),
    ("cifar100", 10.0): (0.2, 0.0, True, 0.1),
    ("imagenet_lt", 0.0): (0.3, 0.0, True, 0.05),
    ("places_lt", 0.0): (0.4, 0.1, True, 0.05),
    ("inat2018", 0.0): (0.3, 0.0, True, 0.05),
}


def mislas_defaults(dataset: str, ratio: float) -> tuple[float, float, bool, float]:
    """The authors' (ε_1, ε_K, shift_bn, lr_factor) for ``dataset`` at ``ratio``: the nearest ratio of the same data
    set, else ImageNet-LT's (their large-scale default)."""
    same = [
        (abs(math.log(max(r, 1.0)) - math.log(max(ratio, 1.0))), k) for k in MISLAS_DEFAULTS for r in [k[1]] if k[0] == dataset
    ]
    return MISLAS_DEFAULTS[min(same)[1]] if same else MISLAS_DEFAULTS[("imagenet_lt", 0.0)]


@dataclass
class DecoupleOptions:
    """The second stage's settings (recorded in the checkpoint and summary; a resumed run must use the same).

    Attributes:
        method: one of :data:`DECOUPLE_METHODS`.
        epochs: training epochs of crt, lws and mislas (``None``: 10); the post-hoc methods train none.
        lr, momentum, weight_decay, batch_size: SGD of the trained methods (cosine decay of ``lr`` to 0 per epoch).
        seed: seed of the batches, augmentation and cRT's initialisation (``None``: the first stage's).
        val_fraction: τ-norm only, when the first stage held out no validation split: the share of each class of
            the training split held out to choose τ (the backbone has seen those samples in the first stage).
        smooth_head, smooth_tail, shift_bn, lr_factor: MiSLAS's ε_1, ε_K, shifted BatchNorm and the classifier's
            learning-rate factor (``None``: :func:`mislas_defaults`).
    """

    method: str
    epochs: int | None = None
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    batch_size: int = 128
    seed: int | None = None
    val_fraction: float = 0.1
    smooth_head: float | None = None
    smooth_tail: float | None = None
    shift_bn: bool | None = None
    lr_factor: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # resolved values, filled in by decouple()

    def validate(self) -> None:
        owner = "decouple"
        check_choice(self.method, "method", DECOUPLE_METHODS, owner=owner)
        if self.epochs is not None:
            check_number(self.epochs, "epochs", owner=owner, low=1, integer=True)
        check_number(self.lr, "lr", owner=owner, low=0.0, low_open=True)
        check_number(self.momentum, "momentum", owner=owner, low=0.0, high=1.0, high_open=True)
        check_number(self.weight_decay, "weight_decay", owner=owner, low=0.0)
        check_number(self.batch_size, "batch_size", owner=owner, low=1, integer=True)
        if self.seed is not None:
            check_number(self.seed, "seed", owner=owner, integer=True)
        check_number(self.val_fraction, "val_fraction", owner=owner, low=0.0, high=1.0, low_open=True, high_open=True)
        for name in ("smooth_head", "smooth_tail"):
            if getattr(self, name) is not None:
                check_number(getattr(self, name), name, owner=owner, low=0.0, high=1.0)
        if self.lr_factor is not None:
            check_number(self.lr_factor, "lr_factor", owner=owner, low=0.0, low_open=True)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean per-class recall (%) of ``logits`` (N, C) over the classes present in ``labels`` (N,)."""
    hits = torch.zeros(logits.shape[1], dtype=torch.float64, device=logits.device)
    hits.index_add_(0, labels, (logits.argmax(1) == labels).double())
    counts = torch.bincount(labels, minlength=logits.shape[1]).double()
    present = counts > 0
    return float(100.0 * (hits[present] / counts[present]).mean())


class ScaledHead(nn.Module):
    """The trainable classifier of crt/lws/mislas on frozen features: ``(W f + b) · s`` (:func:`remixup.heads.lws_logits`).

    Args:
        fc: the linear classifier (the first stage's, or a fresh one for cRT).
        train_fc: whether ``fc`` is trained. scales: whether the per-class scales ``s`` (initially 1) are.
    """

    def __init__(self, fc: nn.Linear, *, train_fc: bool, scales: bool) -> None:
        super().__init__()
        self.fc = fc
        self.fc.requires_grad_(train_fc)
        self.scales = nn.Parameter(torch.ones(fc.out_features, device=fc.weight.device), requires_grad=scales)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features) * self.scales

    def folded(self) -> dict[str, torch.Tensor]:
        """The ``fc`` entries of a plain linear layer that computes the same logits."""
        with torch.no_grad():
            out = {"weight": self.fc.weight * self.scales.unsqueeze(1)}
            if self.fc.bias is not None:
                out["bias"] = self.fc.bias * self.scales
        return out


def decouple(run: str | Path, *, out: str | Path, options: DecoupleOptions, resume: bool | str = False, device: str = "auto",
             threads: int = 0, progress: bool = True) -> dict[str, Any]:  # fmt: skip
    """Run a second stage on the first-stage run ``run`` and write the run folder ``out``.

    Args:
        run: a run folder trained by ``remixup train`` (or its ``checkpoint.pt``).
        out: the new run folder.
        options: the second stage (:class:`DecoupleOptions`).
        resume: ``True`` continues ``out`` (it must hold a checkpoint of the same second stage), ``"auto"`` when there
            is one; a finished ``out`` is returned as it is.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``. threads: CPU threads (0: PyTorch's default).
        progress: print one log line per epoch.

    Returns:
        The summary written to ``out/summary.json``.

    Raises:
        UserError: a bad option, a first stage that cannot be rebuilt (a custom model), a method that needs a linear
            classifier on a cosine one (LDAM), data that differs from the first stage's, or a folder problem.
    """
    options.validate()
    source = checkpoint_file(run)
    state = checkpoint.load(source)
    if str(state["model_name"]).startswith("custom:"):
        raise UserError(f"{source} holds a model of your own that remixup cannot rebuild; decouple needs a named model")
    first = TrainConfig.from_dict(state["config"], source=f"the config in {source}")
    first_method = first.effective_method()
    if first_method.classifier != "linear" and options.method != "ncm":
        raise UserError(f"decouple --method {options.method} needs a linear classifier but {source} was trained with "
                        f"{first_method.name}'s cosine classifier; use --method ncm")  # fmt: skip
    folder = RunFolder(out)
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    clean = False
    try:
        resuming = folder.prepare(resume)
        if resuming and (done := folder.read_summary()) is not None:
            clean = True
            return done
        stage = _Stage(source, state, first, options, folder, resolve_device(device), progress)
        summary = stage.fit(resuming)
        clean = True
        return summary
    finally:
        folder.release(failed=not clean)
        torch.set_num_threads(threads_before)


class _Stage:
    """One second stage: the first stage's model and data, the new head, and the loop."""

    def __init__(self, source: Path, state: dict[str, Any], first: TrainConfig, options: DecoupleOptions, folder: RunFolder,
                 device: torch.device, progress: bool) -> None:  # fmt: skip
        from remixup.models import build_model_for

        self.source, self.first, self.folder, self.device, self.progress = source, first, folder, device, progress
        o = self.options = options
        self.method = first.effective_method()
        self.seed = first.run.seed if o.seed is None else int(o.seed)
        self.epochs = (10 if o.epochs is None else int(o.epochs)) if o.method in TRAINED else 0
        head, tail, shift, factor = mislas_defaults(first.data.dataset, first.data.ratio)
        if o.method == "mislas":
            o.extra = {"smooth_head": head if o.smooth_head is None else o.smooth_head,
                       "smooth_tail": tail if o.smooth_tail is None else o.smooth_tail,
                       "shift_bn": shift if o.shift_bn is None else bool(o.shift_bn),
                       "lr_factor": factor if o.lr_factor is None else o.lr_factor}  # fmt: skip
        o.extra.update(epochs=self.epochs, seed=self.seed)
        d = first.data
        held = o.method == "tau-norm" and d.val_fraction == 0
        self.data: RunData = load_run_data(d.dataset, d.root, device=device, imbalance=d.imbalance, ratio=d.ratio, mu=d.mu,
                                           subset_seed=first.run.subset_seed, download=False, augment=d.augment and o.method != "ncm", seed=self.seed,
                                           val_fraction=o.val_fraction if held else d.val_fraction, val_seed=d.val_seed,
                                           val_min_per_class=d.val_min_per_class, table_options=d.table_options(),
                                           indices=d.indices, image_size=d.image_size)  # fmt: skip
        self.class_counts = torch.as_tensor(state["class_counts"])
        if not held and not torch.equal(self.data.class_counts, self.class_counts):
            raise UserError(f"the data of {d.dataset} at {d.root} does not give {source}'s class counts "
                            f"{self.class_counts.tolist()[:5]}...; it is not the data the first stage trained on")  # fmt: skip
        first_summary = read_summary(source.parent) or {}
        want = first_summary.get("data_sha256")
        if want and self.data.data_sha256 and want != self.data.data_sha256:
            raise UserError(f"the data of {d.dataset} at {d.root} differs from the data {source} was trained on "
                            f"(SHA-256 {self.data.data_sha256[:12]}... here, {want[:12]}... then)")  # fmt: skip
        self.data.class_counts = self.class_counts  # many/medium/few and the prior are the first stage's
        self.model_name = str(state["model_name"])
        self.model = build_model_for(self.model_name, self.class_counts.numel(), self.data.input_shape,
                                     classifier=self.method.classifier, classifier_bias=first.model.classifier_bias)  # fmt: skip
        what = f"{self.model_name} for {d.dataset} {tuple(self.data.input_shape)} with {self.class_counts.numel()} classes"
        checkpoint.load_model_state(self.model, state["model"], source, what=what)
        self.model.to(device)
        self.fc: nn.Module = self.model.get_submodule("fc")
        self.model.fc = nn.Identity()  # the model now maps inputs to features
        self.model.requires_grad_(False)
        self.precision = Precision(amp=False)
        self.first_stage = {"run": str(source.parent.resolve()), "checkpoint": str(source.resolve()), "sha256": file_sha256(source),
                            "method": self.method.name, "epoch": state["epoch"], "top1": first_summary.get("top1")}  # fmt: skip
        self.config = TrainConfig.from_dict(first.to_dict())
        self.config.run.out = str(folder.path)
        self.history: list[dict[str, Any]] = []

    # -- the frozen features -------------------------------------------------------------------------------------------
    def _backbone_mode(self) -> None:
        shift = self.options.method == "mislas" and self.options.extra["shift_bn"]
        self.model.train(shift)  # shifted BatchNorm: batch statistics, running statistics updated

    @torch.no_grad()
    def _features(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, D) and labels (N,) of a split without augmentation (normalised only), the backbone in eval
        mode."""
        self.model.eval()
        batches: Any
        if split != "train":
            batches = self.data.eval_batches(batch_size=512, rank=0, world_size=1, channels_last=False,
                                             workers=self.first.run.workers, split=split)  # fmt: skip
        elif isinstance(self.data, TensorData):
            transform = self.data.spec.eval_transform()
            x, y = self.data.x_train, self.data.y_train_device
            batches = (((transform(x[i : i + 512]) if transform is not None else x[i : i + 512].float()), y[i : i + 512])  # type: ignore[arg-type]
                       for i in range(0, y.numel(), 512))  # fmt: skip
        else:  # image files, loaded without augmentation for ncm
            batches = DataLoader(self.data.train_files, batch_size=512, num_workers=self.first.run.workers)  # type: ignore[attr-defined]
        feats, labels = [], []
        for x, y in batches:
            feats.append(self.model(x.to(self.device)).float())
            labels.append(y.to(self.device))
        return torch.cat(feats), torch.cat(labels)

    # -- the heads -----------------------------------------------------------------------------------------------------
    def _post_hoc(self) -> dict[str, torch.Tensor]:
        """The ``fc`` entries of tau-norm and ncm."""
        weight = self.fc.get_parameter("weight").detach()
        bias = {"bias": torch.zeros(weight.shape[0], device=weight.device)} if getattr(self.fc, "bias", None) is not None else {}
        if self.options.method == "ncm":
            feats, labels = self._features("train")
            means = class_means(feats, labels, self.class_counts.numel())
            return {"weight": means / means.norm(dim=1, keepdim=True), **bias}
        feats, labels = self._features("val")
        scores = []
        for tau in TAU_GRID:
            w = tau_norm_weight(weight, tau)
            scores.append((balanced_accuracy(feats @ w.T, labels), -tau))
        best = -max(scores)[1]  # the highest validation balanced accuracy; ties go to the smaller τ
        self.options.extra.update(
            tau=best, tau_val_balanced_acc={f"{t:.1f}": s for (s, _), t in zip(scores, TAU_GRID, strict=True)}
        )
        return {"weight": tau_norm_weight(weight, best), **bias}

    def _head(self) -> ScaledHead:
        fc = self.fc
        assert isinstance(fc, nn.Linear)
        if self.options.method == "crt":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                fresh = nn.Linear(fc.in_features, fc.out_features, bias=fc.bias is not None).to(self.device)
            return ScaledHead(fresh, train_fc=True, scales=False)
        return ScaledHead(fc, train_fc=self.options.method == "mislas", scales=True)

    def _optimizer(self, head: ScaledHead) -> torch.optim.SGD:
        o = self.options
        factor = o.extra.get("lr_factor", 1.0)
        groups = [{"params": [p for p in head.fc.parameters() if p.requires_grad], "factor": factor},
                  {"params": [head.scales] if head.scales.requires_grad else [], "factor": 1.0}]  # fmt: skip
        groups = [g for g in groups if g["params"]]
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)

    # -- the loop ------------------------------------------------------------------------------------------------------
    def fit(self, resuming: bool) -> dict[str, Any]:
        o = self.options
        if o.method not in TRAINED:
            tic = time.perf_counter()
            fc_state = self._post_hoc()
            result = self._evaluate(fc_state)
            val = result.pop("val")
            self._save(0, fc_state, None, None, result)
            return self._finish(result, time.perf_counter() - tic, val)
        head = self._head()
        optimizer = self._optimizer(head)
        if resuming:
            self._restore(head, optimizer)
        else:
            self.folder.write_config(self.config.to_yaml(
                f"the first stage's config, read by `remixup eval`/`predict`; this run is a decoupled second stage: "
                f"remixup decouple {self.source.parent} --method {o.method} --out NEW_OUT"))  # fmt: skip
        criterion: nn.Module = (LabelAwareSmoothing(self.class_counts, head=o.extra["smooth_head"], tail=o.extra["smooth_tail"])
                                if o.method == "mislas" else nn.CrossEntropyLoss()).to(self.device)  # fmt: skip
        loader = self.data.train_loader(batch_size=min(o.batch_size, int(self.data.y_train.numel())), seed=self.seed, rank=0,
                                        world_size=1, augment=self.first.data.augment, channels_last=False,
                                        workers=self.first.run.workers)  # fmt: skip
        loader.sampler = ClassBalancedSampler(self.data.y_train, self.data.class_counts, kind="inverse", seed=self.seed)
        last_eval: dict[str, Any] | None = None
        for epoch in range(len(self.history), self.epochs):
            lr = 0.5 * o.lr * (1 + math.cos(math.pi * epoch / self.epochs))
            for group in optimizer.param_groups:
                group["lr"] = lr * group["factor"]
            loader.set_epoch(epoch)
            tic = time.perf_counter()
            loss_sum, correct, seen, steps = 0.0, 0, 0, 0
            head.train()
            for x, y in loader:
                self._backbone_mode()
                with torch.no_grad():
                    feats = self.model(x)
                logits = head(feats)
                loss = criterion(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += float(loss.detach())
                correct += int((logits.argmax(1) == y).sum())
                seen, steps = seen + y.numel(), steps + 1
            elapsed = time.perf_counter() - tic
            row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(steps, 1),
                                   "train_acc": 100.0 * correct / max(seen, 1), "lam_y_forced": None,
                                   "images_per_s": seen / max(elapsed, 1e-9)}  # fmt: skip
            if not math.isfinite(row["train_loss"]):
                raise UserError(f"decouple: the training loss became {row['train_loss']} in epoch {epoch + 1}; "
                                "try a smaller --lr")  # fmt: skip
            if epoch + 1 == self.epochs:
                last_eval = self._evaluate(head.folded())
                row.update({k: last_eval[k] for k in ("top1", "top5", "balanced_acc", "many", "medium", "few")})
                row.update(last_eval.pop("val"))
            row["time_s"] = time.perf_counter() - tic
            self.history.append(row)
            if self.progress:
                print(log_line(row, self.epochs), flush=True)
            self.folder.write_logs(self.history)
            self._save(epoch + 1, head.folded(), head, optimizer, last_eval)
        if last_eval is None:  # resumed after the last epoch's checkpoint, before the summary
            last_eval = self._evaluate(head.folded())
            last_eval.pop("val")
        return self._finish(last_eval, sum(r["time_s"] for r in self.history))

    def _evaluate(self, fc_state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The test split's metrics, and the validation split's as ``val_*`` (``{}`` without one)."""
        with self._with_fc(fc_state) as full:
            metrics = evaluate_data(full, self.data, batch_size=512, precision=self.precision, workers=self.first.run.workers)
            metrics["val"] = evaluate_val(
                full, self.data, batch_size=512, precision=self.precision, workers=self.first.run.workers
            )
        return metrics

    @contextmanager
    def _with_fc(self, fc_state: dict[str, torch.Tensor]) -> Iterator[nn.Module]:
        """The whole model with a copy of the first stage's ``fc`` holding ``fc_state``, sharing the backbone."""
        fc = copy.deepcopy(self.fc)
        fc.load_state_dict({k: v.detach() for k, v in fc_state.items()})
        self.model.fc = fc
        try:
            yield self.model
        finally:
            self.model.fc = nn.Identity()

    def _model_state(self, fc_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        body = {k: v.detach().clone() for k, v in self.model.state_dict().items() if not k.startswith("fc.")}
        return {**body, **{f"fc.{k}": v.detach().clone() for k, v in fc_state.items()}}

    def _save(self, epoch: int, fc_state: dict[str, torch.Tensor], head: ScaledHead | None, optimizer: torch.optim.Optimizer | None,
              last_eval: dict[str, Any] | None) -> None:  # fmt: skip
        ckpt = {"format": checkpoint.FORMAT, "epoch": epoch, "model": self._model_state(fc_state),
                "optimizer": optimizer.state_dict() if optimizer is not None else {},
                "rng": {"torch": torch.get_rng_state(), "mix": torch.Generator().get_state()}, "config": self.config.to_dict(),
                "history": self.history, "last_eval": last_eval, "class_counts": self.class_counts.tolist(),
                "classes": self.data.classes, "model_name": self.model_name, "forked_from": None, "scaler": None,
                "decouple": {"options": asdict(self.options), "first_stage": self.first_stage,
                             "head": {k: v.detach().clone() for k, v in head.state_dict().items()} if head is not None else {}}}  # fmt: skip
        checkpoint.save(ckpt, self.folder.checkpoint)

    def _restore(self, head: ScaledHead, optimizer: torch.optim.Optimizer) -> None:
        path = self.folder.checkpoint
        state = checkpoint.load(path, to_continue=True)
        saved = state.get("decouple")
        if not isinstance(saved, dict) or saved.get("first_stage", {}).get("sha256") != self.first_stage["sha256"]:
            raise UserError(f"cannot resume {path}: it is not a second stage of {self.source}")
        mine = asdict(self.options)
        differ = [k for k in mine if k != "extra" and saved["options"].get(k) != mine[k]]
        if differ:
            k = differ[0]
            raise UserError(f"cannot resume {path}: {k} was {saved['options'].get(k)!r}, now {mine[k]!r}; resume with the "
                            "same options or choose another --out")  # fmt: skip
        body = {k: v for k, v in state["model"].items() if not k.startswith("fc.")}
        self.model.load_state_dict(body)  # the backbone (MiSLAS's shifted BatchNorm statistics)
        head.load_state_dict(saved["head"])
        checkpoint.load_optimizer_state(optimizer, state["optimizer"], path)
        self.history = list(state["history"])

    def _finish(self, last_eval: dict[str, Any], wall: float, val: dict[str, Any] | None = None) -> dict[str, Any]:
        rows = self.history
        summary = {
            **{k: last_eval[k] for k in EVAL_METRICS},
            **({k: v for k, v in rows[-1].items() if k.startswith("val_")} if rows else val or {}),
            "class_counts": self.class_counts.tolist(),
            "lam_y_forced": None,
            "images_per_s": sum(r["images_per_s"] for r in rows) / len(rows) if rows else None,
            "train_loss": rows[-1]["train_loss"] if rows else None,
            "train_acc": rows[-1]["train_acc"] if rows else None,
            "epochs": self.epochs,
            "method": f"{self.method.name}+{self.options.method}",
            "model": self.model_name,
            "recipe": self.first.recipe,
            "dataset": self.first.data.dataset,
            "imbalance": self.first.data.imbalance,
            "ratio": self.first.data.ratio,
            "seed": self.seed,
            "subset_seed": self.first.run.subset_seed,
            "wall_time_s": wall,
            "data_sha256": self.data.data_sha256,
            "first_stage": self.first_stage,
            "decouple": {
                "method": self.options.method,
                **{k: v for k, v in asdict(self.options).items() if k not in ("method", "extra")},
                **self.options.extra,
            },  # fmt: skip
        }
        self.folder.write_summary(summary)
        return summary
