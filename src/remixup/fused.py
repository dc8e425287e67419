"""Fused runs: train K runs that share a model architecture and an optimiser schedule together, in one process.

A grid of ResNet-32 runs at batch 128 leaves a GPU waiting on kernel launches, not on arithmetic. Fusing K runs
stacks their K models' parameters and buffers (:func:`torch.func.stack_module_state`) and runs one forward and
backward pass for all of them (:func:`torch.vmap` over :func:`torch.func.functional_call`): every convolution of the
K models becomes one grouped convolution, so a step launches as many kernels as a single run's step does.

That is the ``stack`` strategy, the default on CUDA. On the CPU, where the stacked step was not shown to be faster
than the runs' own steps (docs/performance.md), the default is ``loop``: each step trains every run's own model in turn, in
one process, with the single-run loop's operations, so the runs are bit-identical to single runs.

Each run of a group stays the run it would be alone: it is set up by the single-run engine
(:class:`remixup.engine.Training`: its seed's model initialisation, its imbalanced subset, its loader and sampler,
its mixer and label policy, its loss and class weights, its deferral, its random streams of
:mod:`remixup.seeding`), and it writes the same run folder (config, metrics per epoch, checkpoints, summary), so
``remixup eval``, ``remixup report``, ``--resume`` and the grid's skip-finished logic treat it as a single run. When
stacked, only the forward/backward pass and the optimiser step are shared: the gradient of ``sum_k loss_k`` with
respect to run k's parameters is run k's own gradient, and SGD is elementwise. The stacked runs' numbers therefore
equal the single runs' up to float summation order inside the batched kernels (tests/test_fused.py measures it).

Runs of one group must agree on everything but :data:`PER_RUN` (the method, its mixing and deferral, the seeds, the
imbalance profile, the output folder); they must also take the same number of steps per epoch (the same training
set size). Manifold mixing mixes inside the network through forward hooks and cannot be fused; such runs train
alone. A group resumes from its runs' checkpoints: runs that stopped at different epochs are brought level first
(the ones behind train fused among themselves), finished runs are left as they are.

In a fused run's metrics ``images_per_s`` counts the run's own images over the fused epoch's wall time (the group
trains the sum of its runs' rates) and ``time_s`` is the run's share of that wall time (divided by the number of
runs), so the runs' ``wall_time_s`` add up to the group's; ``summary.json`` also says ``"fused": {"runs": K}``.

On CUDA, ``graphs=True`` compiles the fused forward, loss and backward with ``torch.compile(mode="reduce-overhead")``
(CUDA graphs) and steps the optimiser with the fused SGD kernel; bf16 autocast is on by default there
(``run.amp=auto``). It is opt-in and refused on the CPU, whose path is the eager one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from remixup.checkpoint import check_finite
from remixup.config import TrainConfig
from remixup.engine import Training, lr_at
from remixup.errors import UserError
from remixup.metrics import MetricCounts, summarize
from remixup.progress import epoch_bar
from remixup.runtime import Dist, Precision, eval_batch_size, resolve_device, tune_malloc
from remixup.sam import stacked_sam_step
from remixup.seeding import TorchState
from remixup.step import EpochStats, EpochTotals, StepResult, backward_step, tally, train_step

__all__ = ["PER_RUN", "STRATEGIES", "FusedGroup", "fusable", "group_key", "stack_refusal", "train_fused"]

STRATEGIES = ("auto", "stack", "loop")
"""How a group trains: ``stack`` (one stacked model, vmapped), ``loop`` (each run's own model in turn, in one
process: the single runs' kernels, bit-identical to them); ``auto``: stack on CUDA, loop on the CPU, where the
stacked step was not shown to be faster (docs/performance.md)."""

PER_RUN = (
    "recipe",
    "data.imbalance",
    "data.ratio",
    "data.mu",
    "method.name",
    "method.beta",
    "method.reduction",
    "schedule.deferral_epoch",
    "mixing.alpha",
    "mixing.kappa",
    "mixing.tau",
    "mixing.per_sample",
    "run.epochs",
    "run.seed",
    "run.subset_seed",
    "run.out",
    "run.progress",
    "run.tensorboard",
    "run.keep_every",
    "run.checkpoint_every",
)
"""The config keys in which the runs of one group may differ; all others must be equal."""


def group_key(config: TrainConfig) -> tuple[Any, ...]:
    """What runs must share to be fused: every config value outside :data:`PER_RUN`, and the model's classifier head."""
    flat = config.flat()
    shared = tuple((k, repr(v)) for k, v in sorted(flat.items()) if k not in PER_RUN)
    return (*shared, ("classifier", config.effective_method().classifier))


def fusable(config: TrainConfig) -> bool:
    """Whether a grid may put this run in a fused group whatever the strategy: its method mixes the input or nothing
    (manifold mixing mixes inside the forward pass, which a stacked group shares; such runs train alone)."""
    return config.effective_method().mixer != "manifold"


def stack_refusal(run: Training) -> str | None:
    """Why the set-up ``run`` cannot join a stacked group, in one line, or ``None`` when it can.

    The stacked step runs one vmapped forward pass for all runs: a mixing inside the forward pass cannot be shared,
    and dropout under ``vmap`` would draw masks no single run draws (the loop strategy trains both as single runs do).
    """
    reason = run.mixing.fusable()
    if reason is None and any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in run.model.modules()):
        reason = f"model {run.model_name} has dropout, whose masks a stacked (vmapped) step cannot draw as a single run does"
    return reason


def resolve_strategy(strategy: str, device: torch.device) -> str:
    """``stack`` or ``loop`` for ``strategy`` (``auto``: stack on CUDA, loop on the CPU)."""
    if strategy not in STRATEGIES:
        raise UserError(f"fused strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    return ("stack" if device.type == "cuda" else "loop") if strategy == "auto" else strategy


def _check_group(configs: Sequence[TrainConfig]) -> None:
    if not configs:
        raise UserError("train_fused needs at least one config")
    outs = [str(c.run.out) for c in configs]
    if len(set(outs)) != len(outs):
        raise UserError(f"fused runs need one run folder each; run.out repeats: {sorted({o for o in outs if outs.count(o) > 1})}")
    for c in configs:
        c.validate()
        if not c.run.eval_test:  # a fused group evaluates the test split only
            raise UserError(f"{c.run.out}: run.eval_test=false cannot be fused; train it alone with `remixup train`")
    first, key = configs[0], group_key(configs[0])
    for c in configs[1:]:
        other = group_key(c)
        if other != key:
            differ = [f"{a[0]}: {a[1]} vs {b[1]}" for a, b in zip(key, other, strict=True) if a != b]
            raise UserError(f"cannot fuse {c.run.out} with {first.run.out}: they differ in {', '.join(differ[:4])}; fused "
                            f"runs may differ only in {', '.join(PER_RUN)}")  # fmt: skip


class FusedGroup:
    """K set-up runs (:class:`~remixup.engine.Training`) trained as one stacked model, epoch by epoch.

    Args:
        runs: the runs, each at the same epoch, their models and optimisers built (and restored when resuming).
        precision: autocast (bf16) of the fused forward pass; channels-last does not apply to stacked inputs.
        graphs: CUDA only: compile the fused step in ``reduce-overhead`` mode (CUDA graphs).

    The stacked parameters ``params[name]`` are (K, ...) leaves; :meth:`write_back` copies them, the buffers and the
    momentum into each run's own model and optimiser, whose state dicts the checkpoints hold.
    """

    def __init__(self, runs: Sequence[Training], *, precision: Precision, graphs: bool = False, strategy: str = "auto") -> None:
        from torch.func import functional_call, stack_module_state

        self.runs = list(runs)
        self.device = runs[0].device
        self.precision = precision
        self.stacked = resolve_strategy(strategy, self.device) == "stack"
        if graphs and not (self.stacked and self.device.type == "cuda"):
            raise UserError("fused graphs (CUDA graphs) need a CUDA device and the stacked strategy; the CPU trains eagerly")
        # each run's own state of torch's global generator (dropout), swapped in around its steps (loop strategy)
        self.torch_states = [TorchState.capture(self.device) for _ in self.runs]
        if not self.stacked:
            return
        for run in self.runs:
            if (reason := stack_refusal(run)) is not None:
                raise UserError(f"{run.folder.path}: cannot stack this run: {reason}; use strategy=loop")
        params, buffers = stack_module_state([r.model for r in self.runs])
        self.params = {n: p.detach().contiguous().requires_grad_(True) for n, p in params.items()}
        self.buffers = {n: b.contiguous() for n, b in buffers.items()}
        self.base = copy.deepcopy(self.runs[0].model).to("meta")  # the architecture; its tensors live in params
        o = runs[0].config.optim
        fused_kernel = graphs and self.device.type == "cuda"
        self.optimizer = torch.optim.SGD(list(self.params.values()), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                                         nesterov=o.nesterov, **({"fused": True} if fused_kernel else {}))  # fmt: skip
        self._load_momentum()

        def one(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(self.base, (p, b), (x,))

        self._forward = torch.vmap(one)
        self._eval_forward = torch.vmap(one, in_dims=(0, 0, None))
        self._loss: Callable[..., tuple[torch.Tensor, torch.Tensor]] = self._logits_and_losses
        if graphs:
            self.compile(mode="reduce-overhead")

    def compile(self, **options: Any) -> None:
        """Compile the fused forward and losses (and so their backward) with ``torch.compile(**options)``.

        ``graphs=True`` calls it with ``mode="reduce-overhead"`` (CUDA graphs); the tests call it with
        ``backend="eager"`` to check on the CPU that the step traces and computes what the eager step does.
        """
        for tensor in (*self.params.values(), *self.buffers.values()):
            # fixed addresses: the graphs may update BatchNorm statistics in place and read parameters the
            # optimiser steps in place, without copying them in and out of the graph's buffers every step
            torch._dynamo.mark_static_address(tensor)
        self._loss = torch.compile(self._logits_and_losses, **options)

    def _load_momentum(self) -> None:
        """Stack the runs' SGD momentum buffers (present once a run has stepped) into the fused optimiser."""
        per_run = [list(r.optimizer.param_groups[0]["params"]) for r in self.runs]
        for i, fused in enumerate(self.params.values()):
            bufs = [r.optimizer.state.get(ps[i], {}).get("momentum_buffer") for r, ps in zip(self.runs, per_run, strict=True)]
            if all(b is not None for b in bufs):
                self.optimizer.state[fused]["momentum_buffer"] = torch.stack(bufs).contiguous()
            elif any(b is not None for b in bufs):
                raise UserError("cannot fuse runs of which some have stepped their optimiser and some have not")

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked parameters, buffers and momentum into each run's own model and optimiser."""
        if not self.stacked:
            return  # the loop strategy trains the runs' own models
        fused = list(self.params.values())
        for k, run in enumerate(self.runs):
            for name, p in run.model.named_parameters():
                p.copy_(self.params[name][k])
            for name, b in run.model.named_buffers():
                b.copy_(self.buffers[name][k])
            for i, p in enumerate(run.optimizer.param_groups[0]["params"]):
                buf = self.optimizer.state.get(fused[i], {}).get("momentum_buffer")
                if buf is not None:
                    run.optimizer.state[p]["momentum_buffer"] = buf[k].clone()

    def _logits_and_losses(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor], x: torch.Tensor,
                           targets: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(K, B, C) logits of the stacked batch x (K, B, ...) and the (K,) losses of the runs' own criteria."""
        with self.precision.autocast(self.device):
            logits = self._forward(params, buffers, x)
        losses = torch.stack([r.criterion(logits[k].float(), targets[k]) for k, r in enumerate(self.runs)])
        return logits, losses

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups if self.stacked else ():
            group["lr"] = lr
        for run in self.runs:
            for group in run.optimizer.param_groups:
                group["lr"] = lr

    def train_epoch(self, bar: Any = None) -> list[EpochStats]:
        """One epoch of every run (their loaders set for the epoch); per run: train_loss, train_acc, lam_y_forced,
        images, images_per_s (the run's own images over the fused epoch's wall time)."""
        if self.stacked:
            self.base.train()
        else:
            for run in self.runs:
                run.model.train()
        step = self._stacked_step if self.stacked else self._loop_step
        totals = [EpochTotals(self.device) for _ in self.runs]
        start = time.perf_counter()
        for batches in zip(*(r.loader for r in self.runs), strict=True):
            for total, result in zip(totals, step(batches), strict=True):
                total.add(result)
            if bar is not None:
                bar.update(1)
        elapsed = time.perf_counter() - start
        return [t.result(elapsed=elapsed) for t in totals]

    def _loop_step(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[StepResult]:
        """One :func:`~remixup.step.train_step` of each run on its own model, with its own global-generator state."""
        results = []
        for k, (run, (x, y)) in enumerate(zip(self.runs, batches, strict=True)):
            self.torch_states[k].restore()
            autocast = self.precision.autocast(self.device)
            results.append(train_step(run.model, run.mixing, run.criterion, run.optimizer, x, y, autocast=autocast,
                                      channels_last=run.precision.channels_last, sam=run.sam))  # fmt: skip
            self.torch_states[k] = TorchState.capture(self.device)
        return results

    def _stacked_step(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[StepResult]:
        """One step of all runs as one stacked model: each run's own mixing (``mix_input``, as ``mix_forward`` mixes),
        one vmapped forward/backward, one SGD step, each run's statistics as :func:`~remixup.step.tally` counts them."""
        xs, targets, records = [], [], []
        with self.precision.autocast(self.device):  # the mixing runs under autocast, as in the single-run step
            for run, (x, y) in zip(self.runs, batches, strict=True):
                x_mixed, target, record = run.mixing.mix_input(x, y)
                xs.append(x_mixed.contiguous())
                targets.append(target)
                records.append(record)
        x_stacked = torch.stack(xs)
        logits, losses = self._loss(self.params, self.buffers, x_stacked, targets)
        sam = self.runs[0].config.optim  # the runs of a group share optim.*
        if sam.sam_rho > 0:  # SAM/ASAM: each run climbs by its own gradient, then a second pass on the same batch
            stacked_sam_step(self.params, lambda: self._loss(self.params, self.buffers, x_stacked, targets)[1].sum(),
                             self.optimizer, rho=sam.sam_rho, adaptive=sam.sam_adaptive, first_loss=losses.sum(),
                             statistics=self.base)  # fmt: skip
        else:
            backward_step(losses.sum(), self.optimizer)  # d(sum)/d(params of run k) = run k's own gradient
        return [tally(logits[k], y, records[k], losses[k]) for k, (_, y) in enumerate(batches)]

    @torch.no_grad()
    def evaluate(self, runs: Sequence[Training]) -> list[dict[str, Any]]:
        """Metrics of ``runs`` (members of the group) on their shared evaluation split, one batched pass for all
        (the loop strategy evaluates each run's own model, as a single run does)."""
        if not self.stacked:
            from remixup.evaluation import evaluate_data

            return [evaluate_data(r.model, r.data, batch_size=r.config.run.eval_batch_size or eval_batch_size(self.device),
                                  precision=r.precision, workers=r.config.run.workers) for r in runs]  # fmt: skip
        index = torch.tensor([self.runs.index(r) for r in runs], device=self.device)
        params = {n: p.detach().index_select(0, index) for n, p in self.params.items()}
        buffers = {n: b.index_select(0, index) for n, b in self.buffers.items()}
        r0 = runs[0]
        batch = r0.config.run.eval_batch_size or eval_batch_size(self.device)
        batches = r0.data.eval_batches(batch_size=batch, rank=0, world_size=1, channels_last=False, workers=r0.config.run.workers)
        counts = [MetricCounts.zeros(r.data.num_classes, self.device) for r in runs]
        self.base.eval()
        autocast = self.precision.autocast(self.device)
        for xb, yb in batches:
            with autocast:
                logits = self._eval_forward(params, buffers, xb.to(self.device)).float()
            for c, lg in zip(counts, logits, strict=True):
                c.update(lg, yb.to(self.device))
        self.base.train()
        return [summarize(c, r.data.class_counts) for c, r in zip(counts, runs, strict=True)]


def _finish(run: Training, fused_with: int) -> dict[str, Any]:
    if run.board is not None:
        run.board.close()
    summary = run.summary()
    summary["fused"] = {"runs": fused_with}
    run.folder.write_summary(summary)  # written last: the run is complete
    return summary


def train_fused(configs: Sequence[TrainConfig], *, resume: bool | str = "auto", graphs: bool = False,
                strategy: str = "auto") -> list[dict[str, Any]]:  # fmt: skip
    """Train the runs of ``configs`` together in this process, each into its own run folder ``config.run.out``.

    Args:
        configs: resolved configs that agree on everything but :data:`PER_RUN` (:func:`group_key`), none of them
            with manifold mixing (:func:`fusable`).
        resume: as :func:`remixup.engine.train`, per run: ``"auto"`` (default) continues a run folder's checkpoint
            or returns its summary when finished; ``True`` requires every checkpoint; ``False`` refuses a folder
            that holds a run.
        graphs: CUDA only: the CUDA-graph step (see the module docstring).
        strategy: one of :data:`STRATEGIES` (default ``auto``: stacked on CUDA, a loop over the runs on the CPU).

    Returns:
        The runs' summaries, in the order of ``configs``; a run's ``summary.json`` also says ``"fused": {"runs": K}``.

    Raises:
        UserError: runs that cannot be fused, configuration, data, checkpoint and output-folder problems, a
            non-finite training loss.
    """
    import os

    _check_group(configs)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("fused runs train in one process on one device; do not start them with torchrun")
    device = resolve_device(configs[0].run.device)
    if configs[0].run.malloc == "on" or (configs[0].run.malloc == "auto" and device.type == "cpu"):
        tune_malloc()
    threads, clean = torch.get_num_threads(), False
    runs = [Training(c, Dist(), device) for c in configs]
    resolve_strategy(strategy, device)  # an unknown strategy is refused before any folder is claimed
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):  # the caller's RNG stays as it was
            summaries = _train_group(
                runs, resume=resume, graphs=graphs, strategy=strategy, refuse=strategy == "stack"
            )  # auto falls back to the loop
        clean = True
        return summaries
    finally:
        for run in runs:  # each folder's lock goes, as at the end of a single run
            run.folder.release(failed=not clean)
        torch.set_num_threads(threads)


def _refuse_unstackable(run: Training) -> None:
    if (reason := stack_refusal(run)) is not None:
        raise UserError(f"{run.config.run.out}: cannot stack this run: {reason}; use strategy=loop (or auto)")


def _train_group(runs: list[Training], *, resume: bool | str, graphs: bool, strategy: str, refuse: bool) -> list[dict[str, Any]]:
    """Set up ``runs`` (refusing, before anything is written, a run that an explicit ``stack`` cannot take), then train
    them epoch by epoch; ``auto`` falls back to the loop when a run cannot be stacked."""
    summaries: list[dict[str, Any] | None] = [run.setup(resume=resume, model=None, fork=None, write=False) for run in runs]
    for run, summary in zip(runs, summaries, strict=True):
        if refuse and summary is None:
            _refuse_unstackable(run)
    for run, summary in zip(runs, summaries, strict=True):
        if summary is None:
            run.write_folder()
    todo = [run for run, s in zip(runs, summaries, strict=True) if s is None]
    if strategy == "auto" and any(stack_refusal(r) is not None for r in todo):
        strategy = "loop"
    for run in [r for r in todo if len(r.history) >= r.config.run.epochs]:  # killed before its summary
        summaries[runs.index(run)] = _finish(run, len(todo))
        todo.remove(run)
    group: FusedGroup | None = None
    precision = todo[0].precision if todo else Precision()
    fused_size = len(todo)
    while todo:
        epoch = min(len(r.history) for r in todo)
        active = [r for r in todo if len(r.history) == epoch]
        if group is None or group.runs != active:
            if group is not None:
                group.write_back()
            group = FusedGroup(active, precision=precision, graphs=graphs, strategy=strategy)
        _train_epoch(group, epoch)
        for run in [r for r in active if len(r.history) == r.config.run.epochs]:
            summaries[runs.index(run)] = _finish(run, fused_size)
            todo.remove(run)
    return [s for s in summaries if s is not None]


def _train_epoch(group: FusedGroup, epoch: int) -> None:
    """Epoch ``epoch`` of every run of ``group``: train, evaluate when due, log and checkpoint each run."""
    runs, lead = group.runs, group.runs[0]
    if lead.choose_threads is not None:
        lead.choose_threads()
    lr = lr_at(epoch, lead.config)  # the schedule is shared (group_key)
    for k, run in enumerate(runs):
        run.begin_epoch(epoch, choose_threads=False)  # the single run's epoch start; the lead chose the threads
        group.torch_states[k] = TorchState.capture(group.device)  # as begin_epoch seeded it, for this run's steps
    group.set_lr(lr)
    steps = {str(run.folder.path): len(run.loader) for run in runs}
    if len(set(steps.values())) > 1:
        raise UserError(f"fused runs must take the same number of steps per epoch; epoch {epoch + 1} has {steps} "
                        "(different training-set sizes or re-sampling); fuse runs of one imbalance profile")  # fmt: skip
    tic = time.perf_counter()
    r = lead.config.run
    with epoch_bar(r.progress, len(lead.loader), epoch, max(run.config.run.epochs for run in runs)) as bar:
        stats = group.train_epoch(bar)
    rows = []
    for run, st in zip(runs, stats, strict=True):
        check_finite(run.model, st["train_loss"], epoch, run.world, last=run.folder.checkpoint)
        row = {"epoch": epoch + 1, "lr": lr, **{k: st[k] for k in ("train_loss", "train_acc", "lam_y_forced", "images_per_s")}}
        rows.append({**row, **run.mixing.epoch_stats()})  # the family's telemetry, as a single run logs it
    due = [run for run in runs if (epoch + 1) % run.config.run.eval_every == 0 or epoch + 1 == run.config.run.epochs]
    if due:
        for run, metrics in zip(due, group.evaluate(due), strict=True):
            run.last_eval = metrics
            rows[runs.index(run)].update({k: metrics[k] for k in ("top1", "top5", "balanced_acc", "many", "medium", "few")})
    took = time.perf_counter() - tic
    group.write_back()
    for run, row in zip(runs, rows, strict=True):
        row["time_s"] = took / len(runs)  # the run's share of the fused epoch
        run.history.append(row)
        run.record_epoch(row)  # logs, then checkpoints
