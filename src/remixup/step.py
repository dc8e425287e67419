"""The training step: mix → forward → loss → backward → step, one function for single, DDP and fused runs.

:func:`train_step` is the whole step of a run that trains its own model (a single run, a DDP rank, each run of a
fused ``loop`` group). The fused ``stack`` strategy shares the step's pieces: it mixes each run's batch with the same
:meth:`~remixup.mixing.base.Mixing.mix_input` that ``mix_forward`` calls, runs one vmapped forward pass, then calls
:func:`backward_step` and :func:`tally` as :func:`train_step` does. :class:`EpochTotals` adds the steps up into the
epoch's statistics (:class:`EpochStats`) for all of them.

Statistics stay on the device (no host synchronisation per step): the loss, the number of correct predictions and
the number of pairs whose label share the rule forced are 0-d tensors, read once per epoch.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.distributed as dist
from torch import nn

from remixup.mixing.base import Mixing, MixRecord, forced_count
from remixup.runtime import Dist
from remixup.sam import SAM

__all__ = ["EpochStats", "EpochTotals", "StepResult", "backward_step", "tally", "train_step"]


class EpochStats(TypedDict):
    """What one training epoch measured (this process's share summed over DDP ranks)."""

    train_loss: float
    train_acc: float
    lam_y_forced: float | None
    images: float
    images_per_s: float


@dataclass(frozen=True)
class StepResult:
    """One step of one run: its loss, correct predictions and forced pairs (0-d tensors on the device), and the
    batch size and whether the batch was mixed (known on the host)."""

    loss: torch.Tensor
    correct: torch.Tensor
    forced: torch.Tensor
    size: int
    mixed: bool


def backward_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None) -> None:
    """Zero the gradients, back-propagate ``loss`` and step ``optimizer``; with a gradient ``scaler`` (fp16) the loss
    is scaled and the step is skipped when the scaled gradients overflowed."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()


@torch.no_grad()
def tally(logits: torch.Tensor, y: torch.Tensor, record: MixRecord | None, loss: torch.Tensor) -> StepResult:
    """A step's statistics. A mixed sample counts as correct when the model predicts the class holding the larger
    label share (λy ≥ ½ → y_i, else y_j)."""
    correct = (logits.argmax(-1) == (y if record is None else record.hard_labels)).sum()
    forced = forced_count(record.lam_x, record.lam_y) if record is not None else torch.zeros_like(correct)
    return StepResult(loss.detach(), correct, forced, int(y.shape[0]), record is not None)


def train_step(model: nn.Module, mixing: Mixing, criterion: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, *, autocast: AbstractContextManager[object], scaler: torch.amp.GradScaler | None = None,
               channels_last: bool = False, sam: SAM | None = None) -> StepResult:  # fmt: skip
    """One training step of ``model`` on the batch x (B, ...), y (B,).

    mix → forward (under ``autocast``) → loss (in float32: ``criterion(logits, target)`` with (B,) labels or (B, C)
    soft targets) → backward → optimiser step. With ``sam`` (``optim.sam_rho`` > 0) the backward and step are a
    SAM/ASAM update: a second forward and backward pass on the same mixed batch at the perturbed weights
    (:mod:`remixup.sam`).
    """
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast:
        out = mixing.mix_forward(model, x, y) if sam is None else sam.first(mixing, model, x, y)
    loss = criterion(out.logits.float(), out.target)
    if sam is None:
        backward_step(loss, optimizer, scaler)
    else:
        sam.step(model, optimizer, loss, mixing, x, y, criterion=criterion, target=out.target, autocast=autocast)
    return tally(out.logits, y, out.record, loss)


class EpochTotals:
    """The running sums of one run's epoch: add each :class:`StepResult`, then :meth:`result` once."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, forced
        self.steps = self.seen = self.pairs = 0
        self.start = time.perf_counter()

    def add(self, step: StepResult) -> None:
        self.sums += torch.stack([step.loss.double(), step.correct.double(), step.forced.double()])
        self.steps += 1
        self.seen += step.size
        self.pairs += step.size if step.mixed else 0

    def running(self) -> tuple[float, float]:
        """(mean loss, accuracy %) so far; reads the device (for the progress bar only)."""
        loss_sum, correct, _ = self.sums.tolist()
        return loss_sum / max(self.steps, 1), 100.0 * correct / max(self.seen, 1)

    def result(self, world: Dist | None = None, elapsed: float | None = None) -> EpochStats:
        """The epoch's statistics, summed over DDP ranks when ``world`` has several (every rank must call it)."""
        totals = torch.cat([self.sums, self.sums.new_tensor([self.seen, self.pairs])])
        ranks = world.world_size if world is not None else 1
        if ranks > 1:
            dist.all_reduce(totals)
        took = max(time.perf_counter() - self.start if elapsed is None else elapsed, 1e-9)
        loss_sum, correct_n, forced_n, seen_n, pairs_n = totals.tolist()
        return {
            "train_loss": loss_sum / max(self.steps * ranks, 1),
            "train_acc": 100.0 * correct_n / max(seen_n, 1),
            "lam_y_forced": forced_n / pairs_n if pairs_n else None,
            "images": seen_n,
            "images_per_s": seen_n / took,
        }
