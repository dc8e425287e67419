"""The mixing core: the :class:`Mixing` base every mixing of remixup is built on, and what a mixed batch carries.

A mixing runs, per batch, the same phases in the same order: **draw** (from :func:`~remixup.mixing.draws.
batch_generator`: the pairing, λx, a CutMix box, a per-batch coin), **apply** (mix the inputs, or hidden
activations inside the forward pass), **label rule** (λy from :mod:`remixup.mixing.labels`), **targets**
(:func:`~remixup.mixing.labels.soft_targets`) and **record** (a :class:`MixRecord` of what was drawn). Its
optional hooks are real methods with defaults: :meth:`Mixing.set_epoch`, :meth:`Mixing.epoch_stats` and
:meth:`Mixing.fusable`.

The training step makes one call per batch, :meth:`Mixing.mix_forward` ``(model, x, y) -> MixedBatch``, whatever
mixes: the input (Mixup, CutMix, the family), a hidden layer (manifold mixing) or nothing (:class:`NoMixing`). A
mixing of the input also answers :meth:`Mixing.mix_input` ``(x, y)``, which the stacked fused step uses to mix each
run's batch before one vmapped forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from remixup.errors import InvalidParameterError
from remixup.mixing.draws import batch_generator

__all__ = ["MixOutput", "MixRecord", "MixedBatch", "Mixing", "NoMixing", "forced_count", "forced_share"]


def forced_count(lam_x: torch.Tensor, lam_y: torch.Tensor) -> torch.Tensor:
    """Number of pairs whose label factor the policy changed (λy ≠ λx: Remix forced it to 0 or 1), a 0-d int64 tensor.

    This is the one definition of "forced"; it stays on the device (no host sync), so a training loop can sum it per
    step and divide by the number of pairs once per epoch.
    """
    return (lam_y != lam_x).sum()


def forced_share(lam_x: torch.Tensor, lam_y: torch.Tensor) -> float:
    """Share of pairs whose label factor was changed by the policy: ``forced_count / B`` (0 for an empty batch).

    It reads one number back from the device anyway, so it also checks that every λ is finite (in the same read).
    """
    if not lam_x.numel():
        return 0.0
    forced, bad = torch.stack([forced_count(lam_x, lam_y), (~torch.isfinite(lam_x) | ~torch.isfinite(lam_y)).sum()]).tolist()
    if bad:
        raise InvalidParameterError(f"`lam_x` and `lam_y` of `forced_share` must be finite; {bad} of them are NaN or infinite")
    return forced / lam_x.numel()


@dataclass(frozen=True)
class MixOutput:
    """What a mixer returns for a batch.

    Attributes:
        x: (B, ...) mixed input.
        y: (B,) int64 labels of sample i of each pair (the batch's own labels, unchanged).
        y_partner: (B,) int64 labels of the partners, ``y[perm]``.
        lam_x: (B,) float32 share of sample i in each mixed input; for CutMix the exact kept-pixel fraction.
        perm: (B,) int64 permutation that paired sample i with sample ``perm[i]``.
    """

    x: torch.Tensor
    y: torch.Tensor
    y_partner: torch.Tensor
    lam_x: torch.Tensor
    perm: torch.Tensor


@dataclass(frozen=True)
class MixRecord:
    """What a transform drew for its last batch: (B,) tensors ``lam_x``, ``lam_y``, ``perm``, ``y``, ``y_partner``."""

    lam_x: torch.Tensor
    lam_y: torch.Tensor
    perm: torch.Tensor
    y: torch.Tensor
    y_partner: torch.Tensor

    @property
    def forced_share(self) -> float:
        """Share of pairs whose λy was forced to 0 or 1 (λy ≠ λx)."""
        return forced_share(self.lam_x, self.lam_y)

    @property
    def hard_labels(self) -> torch.Tensor:
        """(B,) the class holding the larger label share of each pair: ``y`` where λy ≥ ½, else ``y_partner``."""
        return torch.where(self.lam_y >= 0.5, self.y, self.y_partner)


@dataclass(frozen=True)
class MixedBatch:
    """One mixed forward pass: what :meth:`Mixing.mix_forward` returns.

    Attributes:
        logits: (B, C) model outputs on the mixed batch.
        target: (B, C) soft targets, or the (B,) int64 labels when nothing was mixed.
        record: what the mixing drew (λx, λy, pairing), ``None`` when nothing was mixed.
    """

    logits: torch.Tensor
    target: torch.Tensor
    record: MixRecord | None


class Mixing:
    """The base of every mixing: the per-batch call of the training step and the hooks around it.

    Subclasses implement :meth:`mix_input` (a mixing of the input) or override :meth:`mix_forward` (a mixing inside
    the forward pass, which then says so in :meth:`fusable`). ``generator`` is where the draws come from, through
    :meth:`draw_generator` (one rule for the main process, DataLoader workers and DDP ranks).
    """

    generator: torch.Generator | None = None

    def draw_generator(self) -> torch.Generator | None:
        """The generator this batch's draws come from (:func:`~remixup.mixing.draws.batch_generator`)."""
        return batch_generator(self, self.generator)

    def mix_input(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixRecord | None]:
        """Mix the input batch x (B, ...) with labels y (B,): ``(x_mixed, target, record)``.

        ``target`` is (B, C) soft targets, or ``y`` itself with ``record=None`` when the batch is not mixed."""
        raise NotImplementedError(f"{type(self).__name__} mixes inside the forward pass; call mix_forward")

    def mix_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """The training step's one call: mix, then ``model`` on the mixed batch."""
        x_mixed, target, record = self.mix_input(x, y)
        return MixedBatch(model(x_mixed), target, record)

    def set_epoch(self, epoch: int) -> None:
        """Called by the engine at the start of every epoch (0-based), after the generator is re-seeded."""

    def epoch_stats(self) -> dict[str, Any]:
        """Per-epoch telemetry for the metrics log (read and reset once per epoch); none by default."""
        return {}

    def fusable(self) -> str | None:
        """``None`` when the stacked fused step can train this mixing (it mixes the input: :meth:`mix_input`);
        otherwise why not, in one line."""
        return None


class NoMixing(Mixing):
    """Clean training: the batch unchanged, its labels as the target."""

    def mix_input(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixRecord | None]:
        """Return ``(x, y, None)``."""
        return x, y, None
