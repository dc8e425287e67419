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

A mixing method draws λ, partners and crops at random; :class:`SameBatch` makes the second pass see the same mixed
batch at the perturbed weights: the mixed input of a mixing of the input, or the same draws of a mixing inside the
forward pass. Fused runs stacked along a first dimension climb each by its own gradient (:func:`stacked_sam_step`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from remixup._validation import check_number
from remixup.mixing.base import MixedBatch

__all__ = ["SAM", "SameBatch", "first_pass_statistics_only", "sam_step", "stacked_sam_step"]


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
    """``mixing.mix_forward`` twice on the same mixed batch: :meth:`first` mixes and remembers, :meth:`again` runs
    the model on the same mixed batch at its current weights.

    A mixing of the input (``mixing.fusable()`` is ``None``: it has ``mix_input``) is mixed once and its mixed input
    kept. A mixing inside the forward pass (manifold mixing) runs again with the same draws: its generator's state
    restored, a class-weighted partner batch replayed, its telemetry counted once; afterwards the generator is where
    the first pass left it, so the next batch draws what it would have drawn without the second pass.
    """

    def __init__(self) -> None:
        self._x: torch.Tensor | None = None
        self._states: tuple[Any, Any] | None = None
        self._partners: list[Any] = []

    def first(self, mixing: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """``mixing.mix_forward(model, x, y)``, remembering what the second pass needs."""
        self._x, self._states, self._partners = None, None, []
        if mixing.fusable() is None:
            x_mixed, target, record = mixing.mix_input(x, y)
            self._x = x_mixed
            return MixedBatch(model(x_mixed), target, record)
        generator = mixing.draw_generator()
        before = _rng_state(generator)
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
        self._states = (before, _rng_state(generator))
        return out

    def again(self, mixing: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """The :meth:`first` call's mixed batch through ``model`` again (at its current weights)."""
        if self._x is not None:
            return MixedBatch(model(self._x), y, None)  # the caller keeps the first pass's target and record
        assert self._states is not None, "again() needs first()"
        generator = mixing.draw_generator()
        _set_rng_state(generator, self._states[0])
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
            _set_rng_state(generator, self._states[1])
        return out


def _rng_state(generator: torch.Generator | None) -> torch.Tensor:
    return generator.get_state() if generator is not None else torch.get_rng_state()


def _set_rng_state(generator: torch.Generator | None, state: torch.Tensor) -> None:
    if generator is not None:
        generator.set_state(state)
    else:
        torch.set_rng_state(state)


class SAM:
    """SAM or ASAM in a training step: the first pass through :meth:`first`, the update through :meth:`step`.

    Args:
        rho: ρ > 0. adaptive: ASAM.
    """

    def __init__(self, *, rho: float, adaptive: bool = False) -> None:
        self.rho = check_number(rho, "rho", owner="SAM", low=0.0, low_open=True)
        self.adaptive = adaptive
        self.batch = SameBatch()

    def first(self, mixing: Any, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """The first pass: what ``mixing.mix_forward(model, x, y)`` returns, the mixed batch remembered."""
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


def stacked_sam_step(params: dict[str, torch.Tensor], closure: Callable[[], torch.Tensor], optimizer: torch.optim.Optimizer,
                     *, rho: float, adaptive: bool = False, first_loss: torch.Tensor | None = None,
                     statistics: nn.Module | None = None, eps: float = 1e-12) -> None:  # fmt: skip
    """:func:`sam_step` for K models stacked along the first dimension of every parameter (fused runs): run k climbs
    by its own gradient over its own norm, exactly as it would alone.

    Args:
        params: name -> (K, ...) stacked parameters (leaves the optimiser steps).
        closure: the sum over runs of their losses, on the same stacked batch every call.
        optimizer: steps once, with the second pass's gradient.
        rho, adaptive, eps: as :func:`sam_step`.
        first_loss: the first pass's summed loss when already computed.
        statistics: the module whose BatchNorm layers the stacked forward pass runs (its running statistics are
            updated on the first pass only).
    """
    check_number(rho, "rho", owner="stacked_sam_step", low=0.0, low_open=True)
    optimizer.zero_grad(set_to_none=True)
    (closure() if first_loss is None else first_loss).backward()
    with torch.no_grad():
        grads = [(p, p.grad) for p in params.values() if p.grad is not None]
        k = next(iter(params.values())).shape[0]
        first = grads[0][0] if grads else None
        squares = torch.zeros(k, dtype=first.dtype, device=first.device) if first is not None else None
        for p, g in grads:
            squares += ((p.abs() * g) if adaptive else g).pow(2).reshape(k, -1).sum(1)  # type: ignore[operator]
        steps = []
        for p, g in grads:
            scale = (rho / (squares.sqrt() + eps)).to(p.dtype).reshape(k, *([1] * (p.ndim - 1)))  # type: ignore[union-attr]
            e = (p * p * g if adaptive else g) * scale
            p.add_(e)
            steps.append((p, e))
    optimizer.zero_grad(set_to_none=True)
    frozen = first_pass_statistics_only(statistics) if statistics is not None else contextlib.nullcontext()
    with frozen:
        closure().backward()
    with torch.no_grad():
        for p, e in steps:
            p.sub_(e)
    optimizer.step()
