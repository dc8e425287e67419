"""The training engine: ``train(config)`` runs a method of :mod:`remixup.methods` as data, on the CPU, one CUDA GPU
or DDP (torchrun), and writes a run folder (:mod:`remixup.rundir`).

The method says which mixing, label policy, loss, class weighting and sampling to use; the loop is the same for all
of them: mix → forward → loss → backward → step. Set-up happens in named steps (:class:`Training`), each owning one
concern; what runs where lives in :mod:`remixup.runtime`, the data in :mod:`remixup.data.run`, evaluation in
:mod:`remixup.evaluation`, resume/fork rules in :mod:`remixup.compat` and the random streams in :mod:`remixup.seeding`.

**DDP.** Every rank holds the whole dataset, computes the same epoch order and keeps every ``world_size``-th index,
so the ranks' batches together are the single-process global batch (``optim.batch_size`` is global and must divide
by the number of ranks). Class-balanced re-sampling shards one global draw the same way. Gradients are averaged by
DDP; evaluation shards the test set and all-reduces the confusion matrix. BatchNorm statistics stay per rank unless
``model.sync_bn`` (CUDA). Rank 0 alone claims and writes the run folder; the ranks leave the group together.

**Determinism.** Model initialisation uses ``run.seed`` inside :func:`torch.random.fork_rng`; every other draw comes
from a generator seeded by (seed, epoch, stream) (:mod:`remixup.seeding`), torch's global generator included (dropout
draws from it: it is re-seeded at every epoch start), so a rerun and a resumed run end bit-identical at one thread
count. :func:`train` leaves the caller's global generator as it found it. The result in ``summary.json`` is the last
epoch's evaluation, never a model chosen on the test set.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from remixup import checkpoint, runtime, seeding
from remixup.balancing import ClassBalancedSampler, class_weights
from remixup.checkpoint import check_finite
from remixup.compat import balancing_at, continue_config
from remixup.config import TrainConfig
from remixup.data.run import RunData, load_run_data
from remixup.errors import UserError
from remixup.evaluation import evaluate, evaluate_batches, evaluate_checkpoint, evaluate_data, evaluate_val
from remixup.methods import Method
from remixup.mixing import Mixing
from remixup.progress import epoch_bar, log_line, tensorboard
from remixup.rundir import LOG_COLUMNS, RunFolder, checkpoint_file
from remixup.runtime import Dist, Precision, ThreadChooser, eval_batch_size, setup_processes, tune_malloc
from remixup.sam import SAM
from remixup.step import EpochStats, EpochTotals, train_step
from remixup.summary import run_summary

__all__ = ["EpochStats", "Training", "check_trainable", "evaluate", "evaluate_batches", "evaluate_checkpoint", "lr_at",
           "train", "train_one_epoch"]  # fmt: skip
_ = (evaluate, evaluate_batches, evaluate_checkpoint, checkpoint_file)  # re-exported: the engine's public face


def lr_at(epoch: int, config: TrainConfig) -> float:
    """Learning rate of ``epoch`` (0-based): linear warm-up, then the milestones' cumulative factors."""
    s = config.schedule
    factor = 1.0
    for milestone, f in zip(s.milestones, s.lr_factors, strict=True):
        if epoch >= milestone:
            factor = f
    if epoch < s.warmup_epochs:
        factor *= (epoch + 1) / s.warmup_epochs
    return config.optim.lr * factor


def train_one_epoch(model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], mixing: Mixing, criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, *, amp: bool, channels_last: bool, bar: Any, world: Dist,
                    scaler: torch.amp.GradScaler | None = None, sam: SAM | None = None) -> EpochStats:  # fmt: skip
    """One pass over ``loader``, one :func:`~remixup.step.train_step` per batch; returns train_loss, train_acc (%),
    lam_y_forced, images and images_per_s (:class:`~remixup.step.EpochStats`).

    With a gradient ``scaler`` (``run.amp=fp16``) the autocast is fp16 and the loss is scaled for the backward pass;
    with ``sam`` every step is a SAM/ASAM update.
    """
    model.train()
    device = next(model.parameters()).device
    totals = EpochTotals(device)
    autocast = Precision(amp=amp, fp16=scaler is not None).autocast(device)
    for x, y in loader:
        totals.add(
            train_step(
                model, mixing, criterion, optimizer, x, y, autocast=autocast, scaler=scaler, channels_last=channels_last, sam=sam
            )
        )
        if bar is not None:
            bar.update(1)
            if totals.steps % 10 == 1 or totals.steps == bar.total:
                loss, acc = totals.running()
                rate = totals.seen * world.world_size / max(time.perf_counter() - totals.start, 1e-9)
                bar.set_postfix_str(f"loss {loss:.4f} acc {acc:.2f} img/s {rate:.0f}")
    return totals.result(world)


OnEpoch = Callable[[int, dict[str, Any]], None]  # (epoch, its history row), after the row is logged; may raise to stop


def train(config: TrainConfig, *, resume: bool | str = False, model: nn.Module | None = None,
          fork: str | Path | None = None, on_epoch: OnEpoch | None = None) -> dict[str, Any]:  # fmt: skip
    """Train a model as ``config`` says and write the run folder ``config.run.out``.

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
            differ from the checkpoint's only as :mod:`remixup.compat` allows; the result then equals a run of
            ``config`` from scratch. When ``resume`` finds a checkpoint in the run folder, that is continued.
        on_epoch: called on every rank after each epoch is logged and checkpointed, with the epoch (1-based) and its
            history row (``val_*`` metrics where the epoch was evaluated); what it raises stops the run (pruning).

    Returns:
        The summary dict written to ``OUT/summary.json``.

    Raises:
        UserError: configuration, data, checkpoint and output-folder problems (another process owns it, it holds
            files of its own), and non-finite training (the last good checkpoint is kept).
    """
    config.validate()
    world, device, owned_group = setup_processes(config.run.device)
    if config.run.malloc == "on" or (config.run.malloc == "auto" and device.type == "cpu"):
        tune_malloc()
    threads, clean, run = torch.get_num_threads(), False, Training(config, world, device, on_epoch)
    try:
        with torch.random.fork_rng(
            devices=[device] if device.type == "cuda" else []
        ):  # the caller's global RNG is left as it was
            finished = run.setup(resume=resume, model=model, fork=fork)
            summary, clean = (finished if finished is not None else run.fit()), True
        return summary
    finally:
        run.folder.release(failed=not clean)  # a failed run that wrote nothing leaves no folder behind
        del run
        torch.set_num_threads(threads)  # the caller's setting, not this run's
        runtime.teardown_processes(owned_group, clean=clean)


class Training:
    """One run, set up in named steps (``setup`` → ``_setup_*``), then trained epoch by epoch (``fit``)."""

    def __init__(self, config: TrainConfig, world: Dist, device: torch.device, on_epoch: OnEpoch | None = None) -> None:
        self.config, self.world, self.device, self.on_epoch = config, world, device, on_epoch
        self.method: Method = config.effective_method()  # resolved once; every builder reads this
        self.folder = RunFolder(config.run.out)
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, Any] | None = None
        self.forked_from: dict[str, Any] | None = None

    def setup(self, *, resume: bool | str, model: nn.Module | None, fork: str | Path | None,
              write: bool = True) -> dict[str, Any] | None:  # fmt: skip
        """Prepare everything ``fit`` needs; return the summary instead when resuming a finished run.

        ``write=False`` leaves the run folder's config and logs to a later :meth:`write_folder` (a fused group sets up
        all its runs, and may refuse one, before it writes any)."""
        resuming = runtime.on_main(self.world, lambda: self.folder.prepare(resume))
        if resuming and (summary := self.folder.read_summary()) is not None:
            if self.folder.checkpoint.is_file():  # a finished run is returned as it is, but only for its own settings
                continue_config(
                    self.config, checkpoint.load(self.folder.checkpoint)["config"], self.folder.checkpoint, mode="resume"
                )
            return summary
        state = self._setup_state(resuming, fork)
        self._setup_threads()
        self._setup_data()
        self._setup_model(model)
        self._setup_optimizer()
        if state is not None:
            self._restore(state)
        self._setup_mixing()
        self._setup_loader()
        self._setup_balancing()
        self.new_config = state is None or (self.forked_from is not None and not resuming)
        if write:
            self.write_folder()
        return None

    def _setup_state(self, resuming: bool, fork: str | Path | None) -> dict[str, Any] | None:
        """The checkpoint to continue (resume or fork), with the config that continues it."""
        state, self.source = None, checkpoint_file(fork) if fork is not None else self.folder.checkpoint
        if resuming:
            state = checkpoint.load(self.folder.checkpoint, to_continue=True)
            if "decouple" in state:  # a second stage's folder: its config is the first stage's
                raise UserError(f"{self.folder.path} holds a decoupled second stage; continue it with remixup decouple --resume")
            self.config = continue_config(self.config, state["config"], self.folder.checkpoint, mode="resume")
        elif fork is not None:
            path = self.source
            state = checkpoint.load(path, to_continue=True)
            if "decouple" in state:
                raise UserError(f"{path} is a decoupled second stage (remixup decouple); fork from its first stage instead")
            continue_config(self.config, state["config"], path, mode="fork", epoch=state["epoch"])
            state["forked_from"] = {"checkpoint": str(path), "epoch": state["epoch"]}
        self.forked_from = state.get("forked_from") if state is not None else None
        return state

    def _setup_threads(self) -> None:
        # run.threads=0 on the CPU: the free cores, shared by the ranks on this machine (torchrun sets
        # LOCAL_WORLD_SIZE), chosen again before every epoch. The count can change float summation order: set
        # run.threads=N for bit-identical reruns on a machine whose load varies.
        r = self.config.run
        auto = self.device.type == "cpu" and not r.threads
        self.choose_threads = ThreadChooser(ranks=int(os.environ.get("LOCAL_WORLD_SIZE", "1"))) if auto else None
        if r.threads:
            torch.set_num_threads(r.threads)
        if self.config.optim.batch_size % self.world.world_size:
            raise UserError(f"optim.batch_size={self.config.optim.batch_size} must divide by the number of processes "
                            f"({self.world.world_size})")  # fmt: skip

    def _setup_data(self) -> None:
        d, r = self.config.data, self.config.run
        self.data: RunData = load_run_data(d.dataset, d.root, device=self.device, imbalance=d.imbalance, ratio=d.ratio,
                                           mu=d.mu, subset_seed=r.subset_seed, download=d.download, augment=d.augment,
                                           seed=r.seed, val_fraction=d.val_fraction, val_seed=d.val_seed,
                                           val_min_per_class=d.val_min_per_class, table_options=d.table_options(),
                                           indices=d.indices, image_size=d.image_size)  # fmt: skip
        self.precision = Precision.of(r.amp, r.channels_last, self.device, images=self.data.is_image)
        self.scaler = self.precision.grad_scaler(self.device)

    def _setup_model(self, user_model: nn.Module | None) -> None:
        from remixup.models import build_model_for

        if user_model is not None:
            model, self.model_name = user_model, f"custom:{type(user_model).__name__}"
        else:
            self.model_name = self.data.spec.model if self.config.model.name == "auto" else self.config.model.name
            with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
                torch.manual_seed(self.config.run.seed)
                model = build_model_for(self.model_name, self.data.num_classes, self.data.input_shape,
                                        classifier=self.method.classifier, classifier_bias=self.config.model.classifier_bias)  # fmt: skip
        memory = torch.channels_last if self.precision.channels_last else torch.preserve_format
        model = runtime.sync_batchnorm(model, self.world, self.device, self.config.model.sync_bn)
        self.model: nn.Module = model.to(self.device, memory_format=memory)  # type: ignore[call-overload]

    def _setup_optimizer(self) -> None:
        from remixup.losses import build_loss

        o = self.config.optim
        counts = self.data.class_counts.tolist()
        self.criterion = build_loss(self.method.loss, class_counts=counts, reduction=self.config.method.reduction).to(self.device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                         nesterov=o.nesterov)  # fmt: skip

    def _restore(self, state: dict[str, Any]) -> None:
        what = f"{self.model_name} for {self.config.data.dataset} {tuple(self.data.input_shape)} with {self.data.num_classes} classes"
        checkpoint.load_model_state(self.model, state["model"], self.source, what=what)
        checkpoint.load_optimizer_state(self.optimizer, state["optimizer"], self.source)
        torch.set_rng_state(state["rng"]["torch"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.history, self.last_eval = list(state["history"]), state["last_eval"]

    def _setup_mixing(self) -> None:
        from remixup.mixing.build import build_mixing

        wrap = self.world.world_size > 1
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.net: nn.Module = nn.parallel.DistributedDataParallel(self.model, device_ids=ids) if wrap else self.model
        self.mix_generator = torch.Generator()
        self.mixing = build_mixing(self.method, self.config.mixing, self.net, self.data.class_counts, self.mix_generator,
                                   data=self.data, config=self.config, rank=self.world.rank, world_size=self.world.world_size)  # fmt: skip
        if self.config.run.compile == "on":  # "auto" is off for now (docs/performance.md); evaluation stays eager
            if self.method.mixer == "manifold":
                raise UserError("run.compile=on does not support manifold mixing (it mixes in forward hooks); "
                                "use run.compile=off")  # fmt: skip
            self.net = torch.compile(self.net, backend=self.config.run.compile_backend)  # type: ignore[assignment]
        o = self.config.optim
        self.sam = SAM(rho=o.sam_rho, adaptive=o.sam_adaptive) if o.sam_rho > 0 else None

    def _setup_loader(self) -> None:
        r, o = self.config.run, self.config.optim
        self.loader = self.data.train_loader(batch_size=o.batch_size // self.world.world_size, seed=r.seed, rank=self.world.rank,
                                             world_size=self.world.world_size, augment=self.config.data.augment,
                                             channels_last=self.precision.channels_last, workers=r.workers)  # fmt: skip
        if len(self.loader) == 0:
            raise UserError(
                f"optim.batch_size={o.batch_size} is larger than the training set ({self.data.y_train.numel()} samples)"
            )

    def _setup_balancing(self) -> None:
        counts, beta = self.data.class_counts, self.config.method.beta
        self.sampler = ClassBalancedSampler(self.data.y_train, counts, kind="effective", beta=beta, rank=self.world.rank,
                                            world_size=self.world.world_size, seed=self.config.run.seed)  # fmt: skip
        self.rw_weights = class_weights(counts, "effective", beta).to(self.device)

    def write_folder(self) -> None:
        """Write the run folder's resolved config (a new run) and logs, and open TensorBoard: the last set-up step."""
        if self.world.main:
            if self.new_config:
                how = f"--config {self.folder.config}" + (f" --fork {self.forked_from['checkpoint']}" if self.forked_from else "")
                self.folder.write_config(
                    self.config.to_yaml(f"resolved config of `remixup train`; rerun with: remixup train {how} --out NEW_OUT")
                )
            self.folder.write_logs(self.history)
            if self.data.table is not None:  # a table's fitted preprocessing, for predicting on new rows
                self.folder.write_table(self.data.table.to_json())
        self.board = tensorboard(self.folder.tensorboard, self.config.run.tensorboard and self.world.main, len(self.history))

    def begin_epoch(self, epoch: int, *, choose_threads: bool = True) -> float:
        """Set everything epoch ``epoch`` depends on (threads, lr, deferred balancing, seeds); return its lr."""
        if choose_threads and self.choose_threads is not None:
            self.choose_threads()
        lr = lr_at(epoch, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        weighted, sampled = balancing_at(self.method, epoch, self.config.schedule.deferral_epoch)  # at epoch boundaries
        self.criterion.weight = self.rw_weights if weighted else None  # a buffer; assigned, so it stays on the device
        self.loader.sampler = self.sampler if sampled else None
        self.loader.set_epoch(epoch)
        seed, rank = self.config.run.seed, self.world.rank
        self.mix_generator.manual_seed(seeding.epoch_seed(seed, epoch, seeding.mix_stream(rank)))
        seeding.seed_torch(seeding.epoch_seed(seed, epoch, seeding.torch_stream(rank)), self.device)  # dropout & co.
        self.mixing.set_epoch(epoch)  # the family's window and partners
        return lr

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs, evaluating, logging and checkpointing each; return the summary."""
        r = self.config.run
        for epoch in range(len(self.history), r.epochs):
            lr = self.begin_epoch(epoch)
            tic = time.perf_counter()
            with epoch_bar(r.progress and self.world.main, len(self.loader), epoch, r.epochs) as bar:
                stats = train_one_epoch(self.net, self.loader, self.mixing, self.criterion, self.optimizer, amp=self.precision.amp,
                                        channels_last=self.precision.channels_last, bar=bar, world=self.world,
                                        scaler=self.scaler, sam=self.sam)  # fmt: skip
            check_finite(self.model, stats["train_loss"], epoch, self.world, last=self.folder.checkpoint)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": lr,
                **{k: stats[k] for k in ("train_loss", "train_acc", "lam_y_forced", "images_per_s")},
                **self.mixing.epoch_stats(),  # the family's partner and label telemetry
            }
            if (epoch + 1) % r.eval_every == 0 or epoch + 1 == r.epochs:
                batch = r.eval_batch_size or eval_batch_size(self.device)
                self.last_eval = evaluate_data(self.model, self.data, batch_size=batch, precision=self.precision, rank=self.world.rank,
                                               world_size=self.world.world_size, workers=r.workers) if r.eval_test else {}  # fmt: skip
                row.update(
                    {k: v for k, v in self.last_eval.items() if k in ("top1", "top5", "balanced_acc", "many", "medium", "few")}
                )
                row.update(evaluate_val(self.model, self.data, batch_size=batch, precision=self.precision, rank=self.world.rank,
                                        world_size=self.world.world_size, workers=r.workers))  # fmt: skip
            row["time_s"] = time.perf_counter() - tic
            self.history.append(row)
            # Rank 0 logs, then checkpoints (a resumed run rewrites the logs from the checkpoint's history); the
            # other ranks wait for it, and stop with its error if it fails (a full disk).
            runtime.on_main(self.world, partial(self.record_epoch, row))
            if self.on_epoch is not None:
                self.on_epoch(epoch + 1, row)
        if self.board is not None:
            self.board.close()
        summary = self.summary()
        if self.world.main:
            self.folder.write_summary(summary)  # written last: the run is complete
        return summary

    def record_epoch(self, row: dict[str, Any]) -> None:
        """The epoch's log line on stdout, metrics.jsonl/csv, TensorBoard scalars, then its checkpoint (after every
        ``run.checkpoint_every``-th epoch, an evaluated one, a kept one and the last)."""
        print(log_line(row, self.config.run.epochs), flush=True)
        self.folder.write_logs(self.history)
        if self.board is not None:
            for key in LOG_COLUMNS[1:]:
                if row.get(key) is not None:
                    self.board.add_scalar(key, row[key], row["epoch"])
        r, epoch = self.config.run, row["epoch"]
        evaluated = epoch % r.eval_every == 0 or epoch == r.epochs
        if epoch % r.checkpoint_every == 0 or evaluated or (r.keep_every and epoch % r.keep_every == 0):
            self._save_checkpoint(epoch)

    def _save_checkpoint(self, epoch: int) -> None:
        ckpt = {"format": checkpoint.FORMAT, "epoch": epoch, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "mix": self.mix_generator.get_state()}, "config": self.config.to_dict(),
                "history": self.history, "last_eval": self.last_eval, "class_counts": self.data.class_counts.tolist(),
                "classes": self.data.classes, "model_name": self.model_name, "forked_from": self.forked_from,
                "input_shape": list(self.data.input_shape), "scaler": self.scaler.state_dict() if self.scaler is not None else None}  # fmt: skip
        checkpoint.save(ckpt, self.folder.checkpoint)
        keep = self.config.run.keep_every
        if keep and epoch % keep == 0:
            checkpoint.save(ckpt, self.folder.kept_checkpoint(epoch))

    def summary(self) -> dict[str, Any]:
        """The run's result (:func:`remixup.summary.run_summary`): the last epoch's evaluation and training statistics."""
        assert self.last_eval is not None  # the last epoch is always evaluated
        return run_summary(self.config, self.method, self.model_name, self.data.class_counts.tolist(), self.history,
                           self.last_eval, self.forked_from, data_sha256=self.data.data_sha256)  # fmt: skip


def check_trainable(config: TrainConfig) -> None:
    """Set up in this process what :func:`train` sets up before its first epoch (the data and its validation split,
    the model, loss, optimizer, mixing, loader and sampler), without a run folder and without training a step.

    Raises:
        UserError: what :func:`train` would raise before training (a class too small to split off a validation
            set, a batch larger than the training set, a model that does not fit the data, ...).
    """
    config.validate()
    run, threads = Training(config, Dist(), runtime.resolve_device(config.run.device)), torch.get_num_threads()
    try:  # the steps of Training.setup that need no run folder and no checkpoint
        for step in (run._setup_threads, run._setup_data, partial(run._setup_model, None), run._setup_optimizer,
                     run._setup_mixing, run._setup_loader, run._setup_balancing):  # fmt: skip
            step()
    finally:
        torch.set_num_threads(threads)
