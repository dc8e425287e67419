"""The training engine: one loop for CPU, one CUDA GPU and DDP (torchrun), evaluation, checkpoints and resume.

``train(config)`` runs a method of :mod:`remixup.methods` as data: the method says which mixer, label policy, loss,
class weighting and sampling to use; the loop itself is the same for all of them::

    mix → forward → loss → backward → step

**Devices.** ``run.device=auto`` takes CUDA when available. On CUDA the small-image training set lives on the GPU,
augmentation runs there in batches, the forward pass runs under bf16 autocast (``run.amp``) and convolutions use
channels-last memory (``run.channels_last``); both are switches, also on the CPU.

**DDP.** Launched by ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in the environment), every rank holds the
whole dataset, computes the same epoch order and keeps every ``world_size``-th index, so the ranks' batches together
are the single-process global batch (``optim.batch_size`` is global and must divide by the number of ranks).
Class-balanced re-sampling shards one global draw the same way. Gradients are averaged by DDP; evaluation shards
the test set and all-reduces the confusion matrix. Backend: gloo on CPU, nccl on CUDA. BatchNorm statistics stay
per rank (no SyncBatchNorm), as in the usual data-parallel recipes.

**Determinism.** Model initialisation uses ``run.seed`` inside :func:`torch.random.fork_rng` (the caller's global RNG
is left alone); the epoch order and augmentation derive from (seed, epoch) in the data loader; mixing draws from
a ``torch.Generator`` re-seeded from (seed, epoch, rank) at the start of every epoch. A checkpoint therefore holds
everything needed to replay epoch e exactly: model, optimizer (momentum), the epoch, torch's global RNG state and
the history; resume restarts an interrupted epoch from its start and ends bit-identical on the same hardware.

**Reporting.** Evaluation runs every ``run.eval_every`` epochs and after the last; the result reported in
``summary.json`` is the last epoch's, never a model chosen on the test set.
"""

from __future__ import annotations

import csv
import ctypes
import dataclasses
import importlib.util
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from remixup import checkpoint
from remixup._validation import check_number
from remixup.balancing import ClassBalancedSampler, class_weights, epoch_seed
from remixup.config import TrainConfig
from remixup.errors import UserError
from remixup.methods import Method, get_method
from remixup.metrics import MetricCounts, logit_adjustment, summarize

CHECKPOINT = "checkpoint.pt"
SUMMARY = "summary.json"
CONFIG = "config.yaml"
LOG_COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "lam_y_forced", "images_per_s", "time_s",
               "top1", "top5", "balanced_acc", "many", "medium", "few")  # fmt: skip
# Keys that may change when a run resumes (where and how it runs, not what it computes).
RESUME_FREE = ("data.root", "run.device", "run.progress", "run.tensorboard", "run.threads", "run.eval_batch_size", "run.out",
               "run.compile", "run.workers", "run.malloc", "run.keep_every")  # fmt: skip
# Keys a fork may change besides RESUME_FREE, provided the epochs before the fork would have trained alike.
FORK_FREE = ("method.name", "method.beta", "method.reduction", "schedule.deferral_epoch", "run.epochs")
MIX_STREAM = 1000  # epoch_seed stream of the mixing generator (+ rank); the loader uses streams 0 and 1
_DEFAULT_THREADS = torch.get_num_threads()  # torch's choice (physical cores) before any run changed it


def eval_batch_size(device: torch.device) -> int:
    """``run.eval_batch_size=0``: 256 on the CPU (measured fastest of 128-1024: cache-sized), 1024 on CUDA."""
    return 1024 if device.type == "cuda" else 256


def busy_cores(window: float = 0.25) -> float | None:
    """CPUs that other processes keep busy now: the non-idle share of ``/proc/stat`` over ``window`` seconds, times
    the CPU count, measured while this process sleeps (so it does not count itself). ``None`` off Linux."""
    def read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            v = [int(t) for t in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(v), v[3] + v[4]

    try:
        total0, idle0 = read()
        time.sleep(window)
        total1, idle1 = read()
    except (OSError, ValueError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def auto_threads(cores: int | None = None, load: float | None = None) -> int:
    """``run.threads=0``: torch's default thread count less the cores other processes keep busy, at least 1.

    ``load`` (busy cores) is measured when the run starts: :func:`busy_cores` (a quarter second of ``/proc/stat``,
    in which this process sleeps), else the 1-minute load average. Why: torch's OpenMP threads meet at a barrier
    after every operator, so when another process holds one of the cores every operator waits for a descheduled
    thread. On the 2-core benchmark machine at load ≈ 3-5 a ResNet-32 step took 2.7-4.6× longer with 2 threads
    than with 1 and a digits run 2.7× longer (docs/performance.md); with the cores free, all of them are used.
    """
    cores = _DEFAULT_THREADS if cores is None else cores
    if load is None:
        load = busy_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):  # not on every platform
            load = 0.0
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def _cpu_counters() -> tuple[int, int, int] | None:
    """(all CPUs' ticks, their idle ticks, this process's CPU ticks) from /proc; ``None`` off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            v = [int(t) for t in fh.readline().split()[1:9]]
        with open("/proc/self/stat", encoding="ascii") as fh:
            own = fh.read().rsplit(")", 1)[1].split()  # fields after the command name; utime, stime are 12, 13
        return sum(v), v[3] + v[4], int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


class ThreadChooser:
    """``run.threads=0`` on the CPU, decided again before every epoch: :func:`auto_threads` with the cores that
    other processes kept busy during the previous epoch (all CPU time less this process's), or, before the first
    epoch, a :func:`busy_cores` sample. A shared machine's load changes during a run; a choice made once at the start
    was measured 1.4× slower than two threads when the machine became free (docs/performance.md).

    Args:
        ranks: processes sharing the machine's cores (DDP ranks on this machine).
    """

    def __init__(self, *, ranks: int = 1) -> None:
        self.ranks = ranks
        self.last: tuple[int, int, int] | None = None

    def __call__(self) -> int:
        now = _cpu_counters()
        load = None
        if self.last is not None and now is not None and now[0] > self.last[0]:
            total, idle, own = (a - b for a, b in zip(now, self.last))
            load = max(0.0, (total - idle - own) / total) * (os.cpu_count() or 1)
        threads = max(1, auto_threads(load=load) // self.ranks)
        torch.set_num_threads(threads)
        self.last = _cpu_counters()
        return threads


# ----------------------------------------------------------------------------------------------------------------
# Setup: processes, devices, data, model
# ----------------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"run.device={name!r} but CUDA is not available on this machine; use --device cpu")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device("cpu")


def _setup_processes(device_name: str) -> tuple[Dist, torch.device, bool]:
    """Read torchrun's environment, pick the device and join the process group; returns (dist, device, owned)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name), False
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    device = resolve_device(device_name, local)
    owned = not dist.is_initialized()
    if owned:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device, owned


@dataclasses.dataclass
class RunData:
    """The run's data, on the training device: uint8 images (N, H, W, C) or float vectors (N, D)."""

    spec: Any
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_counts: torch.Tensor  # (C,) int64 on the CPU
    classes: list[str]
    # Image-file datasets (iNaturalist, image folders): decoded by DataLoader workers, not held in memory; then
    # x_train/x_test are empty (0, S, S, 3) placeholders and y_train/y_test the labels on the CPU.
    train_files: Any = None
    test_files: Any = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def is_image(self) -> bool:
        return self.x_train.ndim == 4


def load_data(config: TrainConfig, device: torch.device) -> RunData:
    """Load the dataset, make the training split imbalanced (``run.subset_seed``) and move both splits to ``device``."""
    from remixup.data import get_spec, load_dataset, make_imbalanced

    d = config.data
    spec = get_spec(d.dataset)
    table = {"label_column": d.label_column, "split_seed": d.split_seed, "val_fraction": d.val_fraction,
             "test_fraction": d.test_fraction, "class_policy": d.class_policy}  # used by tabular:... datasets only
    train = load_dataset(d.dataset, d.root, train=True, download=d.download, **table)
    test = load_dataset(d.dataset, d.root, train=False, download=d.download, **table)
    train = make_imbalanced(train, d.imbalance, ratio=d.ratio, mu=d.mu, subset_seed=config.run.subset_seed)
    if test.num_classes != train.num_classes:
        raise UserError(f"{d.dataset}: the test split has {test.num_classes} classes but training has {train.num_classes}")
    if spec.kind == "large_image":
        train.transform, test.transform = (spec.train_augment() if d.augment else spec.eval_transform()), spec.eval_transform()
        train.seed = config.run.seed
        size = spec.image_size or 224
        empty = torch.empty(0, size, size, 3, dtype=torch.uint8)
        return RunData(spec, empty, train.labels, empty, test.labels, train.class_counts.cpu(), list(train.classes),
                       train_files=train, test_files=test)  # fmt: skip
    return RunData(spec, train.x.to(device), train.y.to(device), test.x.to(device), test.y.to(device),
                   train.class_counts.cpu(), list(train.classes))  # fmt: skip


class FileLoader:
    """Training batches of an image-file dataset, decoded and augmented by DataLoader workers.

    The order follows :class:`~remixup.data.TensorLoader`'s rules: the sampler's indices when one is set (deferred
    re-sampling may set or clear it between epochs), else a permutation seeded by (seed, epoch), sharded over DDP ranks
    at positions ``rank, rank + world_size, ...``; a last short batch is dropped. Each file's augmentation is seeded
    by (dataset seed, epoch, index), so batches do not depend on the number of workers.
    """

    def __init__(self, dataset: Any, *, batch_size: int, device: torch.device, seed: int, rank: int = 0,
                 world_size: int = 1, num_workers: int = 4) -> None:  # fmt: skip
        self.dataset = dataset
        self.batch_size = batch_size
        self.device = device
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.num_workers = num_workers
        self.sampler: Any = None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.sampler) if self.sampler is not None else math.ceil(len(self.dataset) / self.world_size)
        return n // self.batch_size

    def _order(self) -> torch.Tensor:
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
            return self.sampler.indices()
        n = len(self.dataset)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, stream=0)))
        total = math.ceil(n / self.world_size) * self.world_size
        return torch.cat([order, order[: total - n]])[self.rank :: self.world_size]

    def __iter__(self) -> Any:
        from torch.utils.data import DataLoader

        order, b = self._order(), self.batch_size
        batches = [order[i : i + b].tolist() for i in range(0, len(self) * b, b)]
        self.dataset.set_epoch(self.epoch)
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)


def build_run_model(config: TrainConfig, data: RunData, method: Method) -> tuple[nn.Module, str]:
    """The model named by ``model.name`` (or the dataset's default), initialised from ``run.seed``."""
    import inspect

    from remixup.models import MODELS, build_model

    name = data.spec.model if config.model.name == "auto" else config.model.name
    accepted = inspect.signature(MODELS[name].__init__).parameters
    kw: dict[str, Any] = {"classifier": method.classifier, "classifier_bias": config.model.classifier_bias}
    if data.is_image and "in_channels" in accepted:
        kw["in_channels"] = int(data.x_train.shape[-1])
    if not data.is_image and "in_features" in accepted:
        kw["in_features"] = int(data.x_train.shape[1])
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(config.run.seed)
        return build_model(name, data.num_classes, **kw), name


def build_mixing(method: Method, config: TrainConfig, model: nn.Module, counts: torch.Tensor, generator: torch.Generator) -> Any:
    """The batch transform of a mixing method (``None`` for clean training): Mixup/CutMix or manifold mixing."""
    from remixup.manifold import ManifoldMixup
    from remixup.mixing import CutMixMixer, MixTransform, MixupLabels, MixupMixer, RemixLabels
    from remixup.models import get_mixing_points

    if method.mixer is None:
        return None
    m = config.mixing
    labels = RemixLabels(counts.tolist(), kappa=m.kappa, tau=m.tau) if method.labels == "remix" else MixupLabels()
    if method.mixer == "manifold":
        points = get_mixing_points(model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model)
        return ManifoldMixup(model, points, labels=labels, num_classes=counts.numel(), alpha=m.alpha,
                             per_sample=m.per_sample, generator=generator)  # fmt: skip
    mixer_cls = CutMixMixer if method.mixer == "cutmix" else MixupMixer
    return MixTransform(mixer_cls(m.alpha, per_sample=m.per_sample, generator=generator), labels, num_classes=counts.numel())


def lr_at(epoch: int, config: TrainConfig) -> float:
    """Learning rate of ``epoch`` (0-based): linear warm-up, then the milestones' cumulative factors."""
    s = config.schedule
    factor = 1.0
    for milestone, f in zip(s.milestones, s.lr_factors):
        if epoch >= milestone:
            factor = f
    if epoch < s.warmup_epochs:
        factor *= (epoch + 1) / s.warmup_epochs
    return config.optim.lr * factor


def _flags(config: TrainConfig, device: torch.device, data: RunData) -> tuple[bool, bool]:
    r = config.run
    amp = r.amp == "bf16" or (r.amp == "auto" and device.type == "cuda")
    channels_last = data.is_image and (r.channels_last == "on" or r.channels_last == "auto")
    return amp, channels_last


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------
def mixed_forward(model: nn.Module, mixing: Any, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Mix (for mixing methods) and forward: ``(logits (B, C), target (B,) or (B, C), MixRecord | None)``."""
    from remixup.manifold import ManifoldMixup

    if mixing is None:
        return model(x), y, None
    if isinstance(mixing, ManifoldMixup):  # mixes inside the forward pass
        logits, target = mixing(x, y)
    else:
        x_mixed, target = mixing(x, y)
        logits = model(x_mixed)
    return logits, target, mixing.last


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    mixing: Any,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    amp: bool,
    channels_last: bool,
    bar: Any,
    world: Dist,
) -> dict[str, float]:
    """One pass over ``loader``; returns train_loss, train_acc (%), lam_y_forced, images and images_per_s.

    Train accuracy of a mixed sample counts the class holding the larger label share (λy ≥ ½ → y_i, else y_j).
    Statistics stay on the device (no host sync and no host-to-device copy per step) except when the progress bar
    refreshes; the sample counts, known on the host, join them once at the end.
    """
    model.train()
    device = next(model.parameters()).device
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, forced
    seen = pairs = 0
    steps, start = 0, time.perf_counter()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits, target, mixed = mixed_forward(model, mixing, x, y)  # mix → forward
        loss = criterion(logits.float(), target)  # loss (reduced per sample, then weighted mean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # backward
        optimizer.step()  # step
        with torch.no_grad():
            hard = y if mixed is None else torch.where(mixed.lam_y >= 0.5, mixed.y, mixed.y_partner)
            correct = (logits.argmax(1) == hard).sum()
            forced = (mixed.lam_y != mixed.lam_x).sum() if mixed is not None else torch.zeros_like(correct)
            totals += torch.stack([loss.detach().double(), correct.double(), forced.double()])
        steps += 1
        seen += y.shape[0]
        pairs += y.shape[0] if mixed is not None else 0
        if bar is not None:
            bar.update(1)
            if steps % 10 == 1 or steps == len(loader):
                t = totals.tolist()
                rate = seen * world.world_size / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix_str(f"loss {t[0] / steps:.4f} acc {100 * t[1] / max(seen, 1):.2f} img/s {rate:.0f}")
    totals = torch.cat([totals, totals.new_tensor([seen, pairs])])
    if world.world_size > 1:
        dist.all_reduce(totals)
    elapsed = time.perf_counter() - start
    loss_sum, correct, forced, seen, pairs = totals.tolist()
    return {
        "train_loss": loss_sum / max(steps * world.world_size, 1),
        "train_acc": 100.0 * correct / max(seen, 1),
        "lam_y_forced": forced / pairs if pairs else None,
        "images": seen,
        "images_per_s": seen / max(elapsed, 1e-9),
    }


@torch.no_grad()
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
) -> dict[str, Any]:
    """Evaluate ``model`` on (x, y): top-1/5, per-class, balanced and many/medium/few accuracy, confusion matrix.

    Args:
        model: the classifier (not DDP-wrapped: evaluation runs no collective per batch).
        x: (N, ...) inputs on the model's device: uint8 images (then ``transform`` normalises them) or floats.
        y: (N,) int64 labels.
        class_counts: (C,) training counts per class (for the many/medium/few groups).
        transform: ``transform(x_batch) -> float (B, C, H, W)``, e.g. the dataset's ``eval_transform()``.
        batch_size: evaluation batch size.
        amp: bf16 autocast. channels_last: channels-last inputs.
        rank, world_size: evaluate the shard ``rank::world_size`` and all-reduce the counts (DDP).
        logit_adjust: ``τ ≥ 0``: rank classes by ``z − τ·log π`` with the training prior ``π`` from
            ``class_counts`` (:func:`remixup.metrics.logit_adjustment`); 0 (default) ranks by the raw logits ``z``.
            ``z`` is the model's output: for a model whose loss scales its logits by ``s`` before the softmax
            (LDAM's cosine classifier, ``s = 30``) pass ``τ / s`` (the loss's ``logit_scale``), as
            :func:`evaluate_checkpoint` does.

    Returns:
        :func:`remixup.metrics.summarize`'s dict (accuracies in %).
    """
    index = torch.arange(rank, y.shape[0], world_size, device=y.device)

    def batches() -> Any:
        for start in range(0, index.numel(), batch_size):
            idx = index[start : start + batch_size]
            xb = x[idx]
            yield (transform(xb) if transform is not None else xb.float()), y[idx]

    return evaluate_batches(model, batches(), class_counts=class_counts, amp=amp, channels_last=channels_last, world_size=world_size,
                            logit_adjust=logit_adjust)


def evaluate_files(
    model: nn.Module, dataset: Any, *, class_counts: Any, batch_size: int = 256, num_workers: int = 4, amp: bool = False,
    channels_last: bool = False, rank: int = 0, world_size: int = 1, logit_adjust: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """:func:`evaluate` for an image-file dataset (its ``transform`` set to the evaluation transform)."""
    from torch.utils.data import DataLoader

    shard = list(range(rank, len(dataset), world_size))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=shard, num_workers=num_workers)
    return evaluate_batches(model, loader, class_counts=class_counts, amp=amp, channels_last=channels_last, world_size=world_size,
                            logit_adjust=logit_adjust)


@torch.no_grad()
def evaluate_batches(
    model: nn.Module, batches: Any, *, class_counts: Any, amp: bool = False, channels_last: bool = False, world_size: int = 1,
    logit_adjust: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """Metrics of ``model`` over an iterable of ``(x float (B, ...), y (B,))`` batches; counts all-reduced under DDP.

    ``logit_adjust`` (τ): rank classes by ``z − τ·log π`` (see :func:`evaluate`)."""
    device = next(model.parameters()).device
    shift = logit_adjustment(class_counts, logit_adjust).to(device) if logit_adjust else None
    was_training = model.training
    model.eval()
    counts = MetricCounts.zeros(len(class_counts), device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext()
    for xb, yb in batches:
        xb = xb.to(device, non_blocking=True)
        if channels_last and xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = model(xb)
        logits = logits.float()
        counts.update(logits if shift is None else logits - shift, yb.to(device))
    if world_size > 1:
        counts.all_reduce()
    model.train(was_training)
    return summarize(counts, class_counts)


# ----------------------------------------------------------------------------------------------------------------
# Run folder: logs, checkpoints, summary
# ----------------------------------------------------------------------------------------------------------------
def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_logs(out: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl and metrics.csv from the history (one row per completed epoch)."""
    _write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for row in history:
        writer.writerow(["" if row.get(k) is None else row[k] for k in LOG_COLUMNS])
    _write_text(out / "metrics.csv", buf.getvalue())


def _log_line(row: dict[str, Any], epochs: int) -> str:
    def f(key: str, fmt: str) -> str:
        v = row.get(key)
        return format(v, fmt) if v is not None else "-".rjust(len(format(0.0, fmt)))

    return (f"epoch {row['epoch']:>4d}/{epochs:<4d} lr {row['lr']:.5f}  loss {row['train_loss']:7.4f}  "
            f"acc {row['train_acc']:6.2f}  forced {f('lam_y_forced', '5.3f')}  top1 {f('top1', '6.2f')}  "
            f"bal {f('balanced_acc', '6.2f')}  img/s {row['images_per_s']:7.0f}  {row['time_s']:6.1f}s")  # fmt: skip


def _prepare_out(out: Path, resume: bool | str, world: Dist) -> bool:
    """Create and probe the run folder; return True when a checkpoint should be resumed.

    Raises:
        UserError: the folder cannot be written, or it already holds a run and ``resume`` is False.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test.{os.getpid()}.{world.rank}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"cannot write the output folder {out}: {exc.strerror or exc}") from None
    has_run = (out / CHECKPOINT).exists() or (out / SUMMARY).exists()
    if resume is True:
        return True
    if resume == "auto":
        return has_run
    if has_run:
        raise UserError(f"{out} already holds a run ({CHECKPOINT}); pass --resume to continue it or choose another --out")
    return False


def _config_for_resume(config: TrainConfig, saved: dict[str, Any], path: Path) -> TrainConfig:
    """The checkpoint's config with this call's RESUME_FREE keys; any other difference is an error."""
    old = TrainConfig.from_dict(saved, source=f"the config in {path}")
    new_flat, old_flat = config.flat(), old.flat()
    differ = [k for k in new_flat if k not in RESUME_FREE and k != "recipe" and new_flat[k] != old_flat[k]]
    if differ:
        shown = ", ".join(f"{k}: {old_flat[k]!r} -> {new_flat[k]!r}" for k in differ[:4])
        raise UserError(f"cannot resume {path}: the configuration differs from the checkpoint's ({shown}); "
                        "resume with the same settings or start a new run in another --out")  # fmt: skip
    for key in RESUME_FREE:
        section, name = key.split(".")
        setattr(getattr(old, section), name, getattr(getattr(config, section), name))
    return old


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or the ``checkpoint.pt`` in it when it is a run folder."""
    return Path(path) / CHECKPOINT if Path(path).is_dir() else Path(path)


def _config_for_fork(config: TrainConfig, saved: dict[str, Any], path: Path, epoch: int) -> None:
    """Check that ``config`` would have trained the checkpoint's first ``epoch`` epochs exactly as it did.

    A fork may change the FORK_FREE keys (and the RESUME_FREE ones), so a run can branch at, say, the deferral
    epoch: Remix and Remix-DRW train alike until re-weighting starts. Everything that acted before ``epoch`` must
    agree: the mixing, label rule and loss of the two methods, and re-weighting/re-sampling (with their β and
    averaging) epoch by epoch.

    Raises:
        UserError: the message names the first difference.
    """
    old = TrainConfig.from_dict(saved, source=f"the config in {path}")
    new_flat, old_flat = config.flat(), old.flat()
    differ = [k for k in new_flat if k not in RESUME_FREE + FORK_FREE and k != "recipe" and new_flat[k] != old_flat[k]]
    if differ:
        shown = ", ".join(f"{k}: {old_flat[k]!r} -> {new_flat[k]!r}" for k in differ[:4])
        raise UserError(f"cannot fork from {path}: the configuration differs from the checkpoint's ({shown}); a fork may "
                        f"change only {', '.join(FORK_FREE)}")  # fmt: skip
    if config.run.epochs <= epoch:
        raise UserError(f"cannot fork from {path}: it has trained {epoch} epochs and run.epochs={config.run.epochs} "
                        "leaves none to train; set --epochs (run.epochs) higher")  # fmt: skip
    before, after = get_method(old.method.name), get_method(config.method.name)
    if (before.mixer, before.labels, before.loss) != (after.mixer, after.labels, after.loss):
        raise UserError(f"cannot fork {after.name} from {path} ({before.name}): the two methods mix, label or compute "
                        "the loss differently from the first epoch; fork only between methods that differ in "
                        "(deferred) re-weighting or re-sampling")  # fmt: skip
    for e in range(epoch):
        was = balancing_at(before, e, old.schedule.deferral_epoch)
        now = balancing_at(after, e, config.schedule.deferral_epoch)
        changed = was != now or (any(was) and old.method.beta != config.method.beta)
        changed = changed or (was[0] and old.method.reduction != config.method.reduction)
        if changed:
            raise UserError(f"cannot fork {after.name} from {path} at epoch {epoch}: epoch {e + 1} would have trained "
                            f"differently (re-weighting, re-sampling, method.beta or method.reduction); fork from a "
                            f"checkpoint of epoch {e} or earlier, or move schedule.deferral_epoch")  # fmt: skip


@contextmanager
def _progress(enabled: bool, total: int, epoch: int, epochs: int) -> Iterator[Any]:
    """A tqdm bar for one epoch on a terminal (None when disabled or when stderr is not a TTY)."""
    bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=False, dynamic_ncols=True) if enabled and sys.stderr.isatty() else None
    try:
        yield bar
    finally:
        if bar is not None:
            bar.close()


def balancing_at(method: Method, epoch: int, deferral_epoch: int) -> tuple[bool, bool]:
    """(re-weight?, re-sample?) during ``epoch``: RW/RS always, DRW/DRS from ``deferral_epoch`` on (0-based)."""
    on = epoch >= deferral_epoch
    return (method.weighting == "rw" or (method.weighting == "drw" and on),
            method.sampling == "rs" or (method.sampling == "drs" and on))  # fmt: skip


def _check_finite(loss: float, epoch: int, out: Path) -> None:
    if not math.isfinite(loss):
        kept = f"the last good checkpoint is {out / CHECKPOINT} (epoch {epoch})" if epoch else "no checkpoint was written"
        raise UserError(f"training loss became {loss} in epoch {epoch + 1}; the run stopped and {kept}. "
                        "Try a smaller optim.lr or run.amp=off")  # fmt: skip


def _evaluate_run(model: nn.Module, data: RunData, config: TrainConfig, *, amp: bool, channels_last: bool, world: Dist) -> dict[str, Any]:
    batch_size = config.run.eval_batch_size or eval_batch_size(next(model.parameters()).device)
    where = {"class_counts": data.class_counts, "batch_size": batch_size, "amp": amp,
             "channels_last": channels_last, "rank": world.rank, "world_size": world.world_size}  # fmt: skip
    if data.test_files is not None:
        return evaluate_files(model, data.test_files, num_workers=config.run.workers, **where)
    return evaluate(model, data.x_test, data.y_test, transform=data.spec.eval_transform(channels_last=channels_last), **where)


def _record_epoch(out: Path, history: list[dict[str, Any]], board: Any, epochs: int) -> None:
    """The epoch's log line on stdout, metrics.jsonl/csv, and TensorBoard scalars."""
    row = history[-1]
    print(_log_line(row, epochs), flush=True)
    _write_logs(out, history)
    if board is not None:
        for key in LOG_COLUMNS[1:]:
            if row.get(key) is not None:
                board.add_scalar(key, row[key], row["epoch"])


def _tensorboard(out: Path, enabled: bool, start_epoch: int) -> Any:
    if not enabled or importlib.util.find_spec("tensorboard") is None:
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"), purge_step=start_epoch + 1)


# ----------------------------------------------------------------------------------------------------------------
# train()
# ----------------------------------------------------------------------------------------------------------------
def tune_malloc() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the OS; return whether it was applied.

    glibc serves allocations above its mmap threshold (128 KiB at first) with fresh pages and unmaps them on free,
    so each training step page-faults its activation buffers anew. Raising the mmap and trim thresholds to 1 GiB
    lets the allocator reuse them: a ResNet-32 CPU step (batch 128, 2 threads) ran 1.20x faster in
    ``benchmarks/bench_malloc.py`` (docs/performance.md). Process-wide and permanent, which is why it is a switch
    (``run.malloc``); a no-op where glibc's ``mallopt`` is missing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


def train(config: TrainConfig, *, resume: bool | str = False, model: nn.Module | None = None,
          fork: str | Path | None = None) -> dict[str, Any]:
    """Train a model as ``config`` says and write the run folder ``config.run.out`` (docs/ARCHITECTURE.md).

    Args:
        config: the resolved :class:`~remixup.config.TrainConfig`; validated again here before any work.
        resume: ``True``: continue from ``OUT/checkpoint.pt`` (it must exist); ``"auto"``: continue when there is
            one, else start; ``False``: start, refusing a folder that already holds a run. A finished run (its
            ``summary.json`` exists) is returned as it is when resuming.
        model: your own classifier instead of ``model.name``: any ``nn.Module`` mapping a normalised batch
            (B, C, H, W) (or (B, D) for vector data) to logits (B, num_classes). It is trained in place. Manifold
            mixing uses its ``mixing_points`` attribute when it has one, else the input only. LDAM losses expect a
            normalised (cosine) classifier, which is then yours to provide. To resume, pass an identically built
            model again; ``remixup eval`` cannot rebuild it, so evaluate it with :func:`evaluate` in Python.
        fork: a checkpoint (a ``checkpoint.pt``, a ``checkpoint_eNNN.pt`` kept by ``run.keep_every``, or a run
            folder) to start from instead of epoch 0: its model, optimizer, random state and history are taken
            over and training goes on from its epoch under ``config``, into a new run folder. ``config`` may
            differ from the checkpoint's only in the method, ``method.beta``, ``method.reduction``,
            ``schedule.deferral_epoch`` and ``run.epochs``, and only so far as the epochs already trained would
            have run alike (:func:`_config_for_fork`); the result then equals a run of ``config`` from scratch.
            When ``resume`` finds a checkpoint in the run folder, that is continued and ``fork`` is not read.

    Returns:
        The summary dict written to ``OUT/summary.json``.

    Raises:
        UserError / ValueError / TypeError / OSError: configuration, data, checkpoint and output-folder problems,
            and a non-finite training loss (the last good checkpoint is kept).
    """
    config.validate()
    method = get_method(config.method.name)
    world, device, owned_group = _setup_processes(config.run.device)
    if config.run.malloc == "on" or (config.run.malloc == "auto" and device.type == "cpu"):
        tune_malloc()
    threads = torch.get_num_threads()
    try:
        return _train(config, method, world, device, resume, model, fork)
    finally:
        torch.set_num_threads(threads)  # the caller's setting, not this run's
        if owned_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: TrainConfig, method: Method, world: Dist, device: torch.device, resume: bool | str,
           user_model: nn.Module | None = None, fork: str | Path | None = None) -> dict[str, Any]:  # fmt: skip
    from remixup.data import TensorLoader
    from remixup.losses import build_loss

    out = Path(config.run.out)
    resuming = _prepare_out(out, resume, world)
    if resuming and (out / SUMMARY).exists():
        return json.loads((out / SUMMARY).read_text(encoding="utf-8"))
    state = checkpoint.load(out / CHECKPOINT) if resuming else None
    if state is not None:
        config = _config_for_resume(config, state["config"], out / CHECKPOINT)
    elif fork is not None:
        fork_path = checkpoint_file(fork)
        state = checkpoint.load(fork_path)
        _config_for_fork(config, state["config"], fork_path, state["epoch"])
        state["forked_from"] = {"checkpoint": str(fork_path), "epoch": state["epoch"]}
    forked_from = state.get("forked_from") if state is not None else None
    # run.threads=0 on the CPU: the free cores, shared by the ranks on this machine (torchrun sets LOCAL_WORLD_SIZE),
    # chosen again before every epoch. The count can change float summation order: set run.threads=N for
    # bit-identical reruns on a machine whose load varies.
    choose_threads = ThreadChooser(ranks=int(os.environ.get("LOCAL_WORLD_SIZE", "1"))) if device.type == "cpu" and not config.run.threads else None
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    r, s, o = config.run, config.schedule, config.optim
    if o.batch_size % world.world_size:
        raise UserError(f"optim.batch_size={o.batch_size} must divide by the number of processes ({world.world_size})")

    data = load_data(config, device)
    counts = data.class_counts
    amp, channels_last = _flags(config, device, data)
    if user_model is not None:
        model, model_name = user_model, f"custom:{type(user_model).__name__}"
    else:
        model, model_name = build_run_model(config, data, method)
    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    criterion = build_loss(method.loss, class_counts=counts.tolist(), reduction=config.method.reduction).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)
    history: list[dict[str, Any]] = []
    last_eval: dict[str, Any] | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        history, last_eval = list(state["history"]), state["last_eval"]
    start_epoch = len(history)
    net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world.world_size > 1 else model
    mix_gen = torch.Generator()
    mixing = build_mixing(method, config, net, counts, mix_gen)
    if r.compile == "on":  # "auto" is off for now (docs/performance.md); evaluation stays eager
        if method.mixer == "manifold":
            raise UserError("run.compile=on does not support manifold mixing (it mixes in forward hooks); use run.compile=off")
        net = torch.compile(net)
    local_batch = o.batch_size // world.world_size
    if data.train_files is not None:
        loader: Any = FileLoader(data.train_files, batch_size=local_batch, device=device, seed=r.seed, rank=world.rank,
                                 world_size=world.world_size, num_workers=r.workers)  # fmt: skip
    else:
        loader = TensorLoader(data.x_train, data.y_train, batch_size=local_batch, shuffle=True, drop_last=True,
                              augment=data.spec.train_augment(channels_last=channels_last) if config.data.augment else None,
                              seed=r.seed, rank=world.rank, world_size=world.world_size)  # fmt: skip
    if len(loader) == 0:
        raise UserError(f"optim.batch_size={o.batch_size} is larger than the training set ({data.y_train.numel()} samples)")
    sampler = ClassBalancedSampler(data.y_train.cpu(), counts, kind="effective", beta=config.method.beta,
                                   rank=world.rank, world_size=world.world_size, seed=r.seed)  # fmt: skip
    rw_weights = class_weights(counts, "effective", config.method.beta).to(device)
    if world.main:
        if state is None or (forked_from is not None and not resuming):
            how = f"--config {out / CONFIG}" + (f" --fork {forked_from['checkpoint']}" if forked_from else "")
            _write_text(out / CONFIG, config.to_yaml(f"resolved config of `remixup train`; rerun with: remixup train {how} --out NEW_OUT"))
        _write_logs(out, history)
    board = _tensorboard(out, r.tensorboard and world.main, start_epoch)

    for epoch in range(start_epoch, r.epochs):
        if choose_threads is not None:
            choose_threads()
        lr = lr_at(epoch, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        weighted, sampled = balancing_at(method, epoch, s.deferral_epoch)  # DRW/DRS switch at epoch boundaries
        criterion.weight = rw_weights if weighted else None  # a buffer; assigned, so it stays on the device
        loader.sampler = sampler if sampled else None
        loader.set_epoch(epoch)
        mix_gen.manual_seed(epoch_seed(r.seed, epoch, MIX_STREAM + world.rank))
        tic = time.perf_counter()
        with _progress(r.progress and world.main, len(loader), epoch, r.epochs) as bar:
            stats = train_one_epoch(net, loader, mixing, criterion, optimizer, amp=amp, channels_last=channels_last, bar=bar, world=world)
        _check_finite(stats["train_loss"], epoch, out)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **{k: stats[k] for k in ("train_loss", "train_acc", "lam_y_forced", "images_per_s")}}
        if (epoch + 1) % r.eval_every == 0 or epoch + 1 == r.epochs:
            last_eval = _evaluate_run(model, data, config, amp=amp, channels_last=channels_last, world=world)
            row.update({k: last_eval[k] for k in ("top1", "top5", "balanced_acc", "many", "medium", "few")})
        row["time_s"] = time.perf_counter() - tic
        history.append(row)
        if world.main:  # log, then checkpoint: a resumed run rewrites the logs from the checkpoint's history
            _record_epoch(out, history, board, r.epochs)
            ckpt = {"format": checkpoint.FORMAT, "epoch": epoch + 1, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "rng": {"torch": torch.get_rng_state(), "mix": mix_gen.get_state()},
                    "config": config.to_dict(), "history": history, "last_eval": last_eval,
                    "class_counts": counts.tolist(), "classes": data.classes, "model_name": model_name,
                    "forked_from": forked_from}  # fmt: skip
            checkpoint.save(ckpt, out / CHECKPOINT)
            if r.keep_every and (epoch + 1) % r.keep_every == 0:
                checkpoint.save(ckpt, out / f"checkpoint_e{epoch + 1:03d}.pt")
        if world.world_size > 1:
            dist.barrier()
    if board is not None:
        board.close()

    assert last_eval is not None  # the last epoch is always evaluated
    summary = _summary(config, method, model_name, counts, history, last_eval, forked_from)
    if world.main:
        _write_text(out / SUMMARY, json.dumps(summary, indent=1) + "\n")  # written last: the run is complete
    return summary


def _summary(config: TrainConfig, method: Method, model_name: str, counts: torch.Tensor, history: list[dict[str, Any]],
             last_eval: dict[str, Any], forked_from: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The run's result: the LAST epoch's evaluation, plus training statistics over all epochs.

    ``images_per_s`` and ``wall_time_s`` cover the epochs this run trained itself: a forked run's taken-over
    epochs are not its cost, so their time goes to ``forked_from["wall_time_s"]`` instead.
    """
    own_from = forked_from["epoch"] if forked_from is not None else 0
    own = history[own_from:]
    train_time = sum(row["time_s"] for row in own)
    forced = [row["lam_y_forced"] for row in history if row.get("lam_y_forced") is not None]
    last = history[-1]
    return {
        **{k: last_eval[k] for k in ("top1", "top5", "balanced_acc", "many", "medium", "few", "per_class", "confusion")},
        "class_counts": counts.tolist(),
        "lam_y_forced": sum(forced) / len(forced) if method.mixes and forced else None,
        "images_per_s": sum(row["images_per_s"] for row in own) / len(own),  # mean training throughput
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "epochs": config.run.epochs,
        "method": method.name,
        "model": model_name,
        "recipe": config.recipe,
        "dataset": config.data.dataset,
        "imbalance": config.data.imbalance,
        "ratio": config.data.ratio,
        "seed": config.run.seed,
        "subset_seed": config.run.subset_seed,
        "wall_time_s": train_time,
        **({"forked_from": {**forked_from, "wall_time_s": sum(row["time_s"] for row in history[:own_from])}}
           if forked_from is not None else {}),
    }


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
        logit_adjust: ``τ ≥ 0``: post-hoc logit adjustment by the checkpoint's training prior (:func:`evaluate`),
            applied to the logits the training softmax saw: ``s·z − τ·log π`` for a loss that scales the model's
            outputs ``z`` by ``s`` (LDAM), ``z − τ·log π`` otherwise.

    Returns:
        :func:`evaluate`'s metrics plus ``checkpoint``, ``epoch``, ``method``, ``dataset``, ``class_counts``,
        ``logit_adjust`` (τ) and ``logit_scale`` (``s``; 1 for every loss but LDAM).

    Raises:
        UserError: a missing or corrupt checkpoint, or a dataset whose classes do not match.
    """
    from remixup.data import get_spec, load_dataset
    from remixup.losses import build_loss
    from remixup.models import build_model

    check_number(logit_adjust, "logit_adjust", low=0.0)
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    state = checkpoint.load(path)
    if str(state["model_name"]).startswith("custom:"):
        raise UserError(f"{path} holds a model of your own ({state['model_name'][7:]}) that remixup cannot rebuild; "
                        "load its state dict into that model in Python and call remixup.engine.evaluate")  # fmt: skip
    config = TrainConfig.from_dict(state["config"], source=f"the config in {path}")
    method = get_method(config.method.name)
    name = dataset or config.data.dataset
    spec = get_spec(name)
    dev = resolve_device(device)
    test = load_dataset(name, root if root is not None else config.data.root, train=False)
    counts = torch.as_tensor(state["class_counts"])
    if test.num_classes != counts.numel():
        raise UserError(f"{path} was trained on {counts.numel()} classes but {name!r} has {test.num_classes}")
    files = spec.kind == "large_image"
    x = torch.empty(0, 1, 1, 3, dtype=torch.uint8) if files else test.x.to(dev)
    kw: dict[str, Any] = {"classifier": method.classifier, "classifier_bias": config.model.classifier_bias}
    if x.ndim == 4 and state["model_name"] != "mlp":
        kw["in_channels"] = int(x.shape[-1])
    elif x.ndim == 2 and state["model_name"] == "mlp":
        kw["in_features"] = int(x.shape[1])
    model = build_model(state["model_name"], counts.numel(), **kw)
    model.load_state_dict(state["model"])
    model.to(dev)
    amp = dev.type == "cuda" and config.run.amp != "off"
    # LDAM trains on s·z: adjusting z itself by τ·log π would be an s-times (30×) stronger correction.
    scale = build_loss(method.loss, class_counts=counts.tolist()).logit_scale
    tau_on_outputs = logit_adjust / scale
    if files:
        test.transform = spec.eval_transform()
        metrics = evaluate_files(model, test, class_counts=counts, batch_size=batch_size, num_workers=config.run.workers, amp=amp,
                                 logit_adjust=tau_on_outputs)
    else:
        metrics = evaluate(model, x, test.y.to(dev), class_counts=counts, transform=spec.eval_transform(), batch_size=batch_size, amp=amp,
                           logit_adjust=tau_on_outputs)
    return {**metrics, "checkpoint": str(path), "epoch": state["epoch"], "method": method.name, "dataset": name,
            "class_counts": counts.tolist(), "logit_adjust": float(logit_adjust), "logit_scale": scale}  # fmt: skip
