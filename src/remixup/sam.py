"""Sharpness-aware minimisation: one SAM or ASAM update, and the same mixed batch twice.

SAM (Foret et al., ICLR 2021, https://arxiv.org/abs/2010.01412) takes the gradient at the worst nearby weights:

1. first pass: the loss at ``w`` and its gradient ``g``;
2. climb: ``e = ρ g / ‖g‖`` (SAM) or, scale-invariant, ``e = ρ w² g / ‖|w| g‖`` (ASAM, Kwon et al., ICML 2021,
   https://arxiv.org/abs/2102.11600), with ``‖·‖`` the L2 norm over all parameters; ``w ← w + e``;
3. second pass: the loss at ``w + e`` on the **same** batch and its gradient;
4. ``w ← w − e``, then the base optimiser steps with the second gradient (momentum, weight decay as usual).

BatchNorm running statistics are updated on the first pass only, as the reference implementations do (there, by a
BatchNorm momentum of 0 during the second pass): here its modules stop tracking statistics for the second pass, so
the running mean, variance and batch counter are exactly those of one forward pass, while the second pass still
normalises with its own batch statistics.

A mixing method draws λ, partners and crops at random; :class:`SameBatch` runs its ``mix_forward`` a second time with
the same draws (the mixing generator's state restored, a class-weighted partner batch replayed, the telemetry counted
once), so the second pass sees the same mixed batch at the perturbed weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from remixup._validation import check_number

__all__ = ["SAM", "SameBatch", "first_pass_statistics_only", "sam_step"]


@contextmanager
def first_pass_statistics_only(model: nn.Module) -> Iterator[None]:
    """Inside, the BatchNorm layers of ``model`` normalise with batch statistics but update no running statistics."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


def sam_step(model: nn.Module, closure: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer, *, rho: float,
             adaptive: bool = False, first_loss: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:  # fmt: skip
    """One SAM (``adaptive=False``) or ASAM update of ``model``'s parameters with ``optimizer``.

    Args:
        model: the model (DDP-wrapped or not) whose trainable parameters the optimiser updates.
        closure: computes the loss (a scalar with its graph, not yet backpropagated) on the same batch every call.
        optimizer: the base optimiser; its ``step`` runs once, with the second pass's gradient.
        rho: the neighbourhood radius ρ > 0.
        adaptive: ASAM's element-wise scaling by ``|w|``.
        first_loss: the first pass's loss when the caller has computed it already (then ``closure`` runs once).
        eps: added to the gradient norm.

    Returns:
        The first pass's loss (detached): the loss at the weights before the update.
    """
    check_number(rho, "rho", owner="sam_step", low=0.0, low_open=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    loss = closure() if first_loss is None else first_loss
    loss.backward()
    with torch.no_grad():
        grads = [(p, p.grad) for p in params if p.grad is not None]
        scaled = [(p.abs() * g if adaptive else g) for p, g in grads]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in scaled])) if scaled else 0.0
        steps = []
        for p, g in grads:
            e = (p * p * g if adaptive else g) * (rho / (norm + eps))
            p.add_(e)
            steps.append((p, e))
    optimizer.zero_grad(set_to_none=True)
    with first_pass_statistics_only(model):
        closure().backward()
    with torch.no_grad():
        for p, e in steps:
            p.sub_(e)
    optimizer.step()
    return loss.detach()


class SameBatch:
    """``mixing.mix_forward`` twice with the same draws: :meth:`first` records, :meth:`again` replays.

    Args:
        generator: the generator the mixing draws from (the run's mixing generator).

    The state after :meth:`again` is the state after :meth:`first`, so the next batch draws what it would have
    drawn without the second pass.
    """

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self._before: torch.Tensor | None = None
        self._after: torch.Tensor | None = None
        self._partners: list[Any] = []

    def first(self, mixing: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        """``mixing.mix_forward(model, x, y)``, remembering its draws."""
        self._before, self._partners = self.generator.get_state(), []
        source = getattr(mixing, "partners", None)
        if source is None or not hasattr(source, "next"):
            out = mixing.mix_forward(model, x, y)
        else:
            real = source.next

            def record(batch_size: int) -> Any:
                self._partners.append(real(batch_size))
                return self._partners[-1]

            source.next = record
            try:
                out = mixing.mix_forward(model, x, y)
            finally:
                del source.next  # the instance attribute goes; the method shows again
        self._after = self.generator.get_state()
        return out

    def again(self, mixing: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        """The :meth:`first` call's mixed batch through ``model`` again (at its current weights)."""
        assert self._before is not None and self._after is not None, "again() needs first()"
        self.generator.set_state(self._before)
        stats = getattr(mixing, "stats", None)
        kept = copy.deepcopy(stats) if stats is not None else None
        source = getattr(mixing, "partners", None)
        replay = iter(self._partners)
        if source is not None and hasattr(source, "next"):
            source.next = lambda batch_size: next(replay)
        try:
            out = mixing.mix_forward(model, x, y)
        finally:
            if source is not None and "next" in vars(source):
                del source.next
            if kept is not None:
                mixing.stats = kept  # the telemetry counts the batch once
            self.generator.set_state(self._after)
        return out


class SAM:
    """SAM or ASAM in a training loop: the first pass through :meth:`first`, the update through :meth:`step`.

    Args:
        rho: ρ > 0. adaptive: ASAM. generator: the generator the mixing draws from.
    """

    def __init__(self, *, rho: float, adaptive: bool, generator: torch.Generator) -> None:
        self.rho = check_number(rho, "rho", owner="SAM", low=0.0, low_open=True)
        self.adaptive = adaptive
        self.batch = SameBatch(generator)

    def first(self, mixing: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        """The first pass: ``mixing.mix_forward(model, x, y)``, its draws remembered."""
        return self.batch.first(mixing, model, x, y)

    def step(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor, mixing: Any, x: torch.Tensor,
             y: torch.Tensor, *, criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], target: torch.Tensor,
             autocast: Any) -> torch.Tensor:  # fmt: skip
        """The update from the first pass's ``loss``: the second pass is ``criterion(logits, target)`` of the same
        mixed batch (:meth:`SameBatch.again`) at the perturbed weights, under ``autocast``."""

        def second() -> torch.Tensor:
            with autocast:
                out = self.batch.again(mixing, model, x, y)
            return criterion(out.logits.float(), target)

        return sam_step(model, second, optimizer, rho=self.rho, adaptive=self.adaptive, first_loss=loss)
