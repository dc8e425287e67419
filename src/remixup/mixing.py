"""Batch mixing for Mixup, CutMix and Remix: the mixers draw and mix, the label policies decide.

Remix (Chou et al., "Remix: Rebalanced Mixup", arXiv:2007.03943) keeps Mixup's feature mixing

    x̃ = λx·x_i + (1 − λx)·x_j,   λx ~ Beta(α, α),   j = π(i) for a random permutation π of the batch,

but mixes the labels with its own factor λy, ỹ = λy·e_{y_i} + (1 − λy)·e_{y_j}, which hands the whole label to the
minority sample when it dominates the image:

    λy = 0    if n_i/n_j ≥ κ and λx < τ
    λy = 1    if n_i/n_j ≤ 1/κ and 1 − λx < τ
    λy = λx   otherwise,

with n_i, n_j the training counts of the classes of x_i and x_j (κ = 3, τ = 0.5 in the paper).

The pieces compose freely: a *mixer* (:class:`MixupMixer`, :class:`CutMixMixer`) returns a :class:`MixOutput` with
the mixed input and what it drew; a *label policy* (:class:`MixupLabels`, :class:`RemixLabels`) turns
``(y, y_partner, lam_x)`` into ``lam_y``; :func:`soft_targets` builds the (B, C) targets. :class:`MixTransform` (and
its preset :class:`Remix`) chains them into a drop-in ``(x, y) -> (x_mixed, y_soft)`` batch transform.

**Non-finite values.** Parameters (α, κ, τ, class counts) are checked when a piece is built; tensors passed per batch
are not checked for NaN or infinity, since that would cost a device synchronisation every step. Such values flow
through: a NaN or infinite input gives NaN mixed inputs, a NaN λx a NaN λy, and a NaN count leaves its pairs
ineligible (λy = λx); :func:`remixup.losses.soft_cross_entropy` then returns NaN. The training engine stops a run whose
loss, weights or BatchNorm statistics become non-finite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import get_worker_info

from remixup._validation import (
    check_batch,
    check_callable,
    check_choice,
    check_class_counts,
    check_generator,
    check_labels,
    check_number,
    check_shares,
)
from remixup.errors import InvalidParameterError, InvalidTypeError

__all__ = [
    "MixOutput",
    "MixRecord",
    "MixupMixer",
    "CutMixMixer",
    "MixupLabels",
    "RemixLabels",
    "MixTransform",
    "MixedBatch",
    "Mixing",
    "NoMixing",
    "Remix",
    "remix_label_factor",
    "soft_targets",
    "sample_beta",
    "cutmix_boxes",
    "forced_count",
    "forced_share",
    "batch_generator",
]


def sample_beta(alpha: float, size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``size`` samples of Beta(α, α) as a float32 CPU tensor (size,), reproducibly from ``generator``.

    ``torch.distributions.Beta`` takes no generator, so one 63-bit seed is drawn from the torch generator (or
    torch's default generator when ``None``) and NumPy's exact Beta sampler does the rest.
    """
    check_number(alpha, "alpha", owner="sample_beta", low=0.0, low_open=True)
    check_number(size, "size", owner="sample_beta", low=0, integer=True)
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    draws = np.random.default_rng(seed).beta(alpha, alpha, size=size)
    return torch.from_numpy(draws.astype(np.float32))


def _rank() -> int:
    """This process's DDP rank: torch.distributed's when initialised, else ``$RANK`` (set by torchrun), else 0."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return int(os.environ.get("RANK", "0"))


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed mixed from any number of non-negative integers (each may be up to 64 bits)."""
    words = []
    for p in parts:
        p = int(p) & 0xFFFFFFFFFFFFFFFF
        words += [p & 0xFFFFFFFF, p >> 32]
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & (2**63 - 1)


class _WorkerDraws:
    """The per-worker generator behind :func:`batch_generator` (one per mixer and DataLoader worker)."""

    def __init__(self, key: tuple[int, int, int], seed: int) -> None:
        self.key = key
        self.generator = torch.Generator().manual_seed(seed)


def batch_generator(owner: object, generator: torch.Generator | None) -> torch.Generator | None:
    """The generator the next batch of ``owner`` draws from; the one rule every mixer here follows.

    * In the main process: ``generator`` itself, consumed in call order (``None``: torch's default generator).
    * In a DataLoader worker with ``generator=None``: torch's default generator, which PyTorch seeds in each worker
      from the worker's seed, so draws differ between workers and epochs.
    * In a DataLoader worker with a ``generator``: every worker holds a copy of one generator state, so drawing
      from it would repeat the same λ and pairing in every worker. Instead the worker's batches draw, in order, from
      a private generator seeded once per worker from (``generator.initial_seed()``, the worker's seed
      ``torch.utils.data.get_worker_info().seed``, its id, the DDP rank). The worker's seed is drawn by the
      DataLoader for each epoch (from its ``generator=`` argument, else torch's default generator), exactly as the
      shuffled order is, so a seeded run repeats its draws, a resumed run that restores the loader's seed repeats
      them too, and a new epoch, another worker or another rank draws afresh.

    The private generator is cached on ``owner`` (attribute ``_worker_draws``) and rebuilt when the worker changes.
    """
    info = get_worker_info()
    if info is None or generator is None:
        return generator
    rank = _rank()
    key = (int(info.id), int(info.seed), rank)
    draws: _WorkerDraws | None = getattr(owner, "_worker_draws", None)
    if draws is None or draws.key != key:
        draws = _WorkerDraws(key, _mix_seed(generator.initial_seed(), info.seed, info.id, rank))
        owner._worker_draws = draws  # type: ignore[attr-defined]
    return draws.generator


def remix_label_factor(
    lam_x: float | torch.Tensor,
    n_i: torch.Tensor,
    n_j: torch.Tensor,
    kappa: float = 3.0,
    tau: float = 0.5,
) -> torch.Tensor:
    """Remix's label factor λy, elementwise with broadcasting.

    λy = 0 where n_i/n_j ≥ κ and λx < τ; λy = 1 where n_i/n_j ≤ 1/κ and 1 − λx < τ; λy = λx elsewhere.
    The second test is evaluated as n_j/n_i ≥ κ (the same inequality for positive counts) so that 1/κ is never
    rounded; all comparisons are made in float64. If both hold (possible only with κ = 1, n_i = n_j and τ > 0.5) the
    first rule wins.

    Args:
        lam_x: feature-mixing factor, the share of sample i: a float or a tensor broadcastable with the counts.
        n_i: training count of the class of sample i of each pair, e.g. (B,).
        n_j: training count of the class of its partner j, e.g. (B,).
        kappa: imbalance ratio that makes a pair eligible, κ ≥ 1.
        tau: mixing-share threshold, 0 ≤ τ ≤ 1. τ = 0 reproduces the base method (λy = λx) exactly.

    Returns:
        λy with the broadcast shape of the inputs, in λx's floating dtype (float32 for a Python float).

    Python numbers (and sequences, NumPy arrays) are checked: λx in [0, 1], counts positive and finite. Tensors are
    not (see the module docstring on non-finite values).

    Raises:
        ValueError: for κ < 1, τ outside [0, 1], or (given as numbers) λx outside [0, 1] or a count ≤ 0.
    """
    check_number(kappa, "kappa", owner="remix_label_factor", low=1.0)
    check_number(tau, "tau", owner="remix_label_factor", low=0.0, high=1.0)
    if not isinstance(lam_x, torch.Tensor):
        check_number(lam_x, "lam_x", owner="remix_label_factor", low=0.0, high=1.0)
    for name, n in (("n_i", n_i), ("n_j", n_j)):
        if not isinstance(n, torch.Tensor) and not bool(np.all(np.isfinite(v := np.asarray(n, dtype=np.float64)) & (v > 0))):
            raise InvalidParameterError(f"`{name}` of `remix_label_factor` must hold positive finite counts; got {n!r}")
    n_i = torch.as_tensor(n_i)
    n_j = torch.as_tensor(n_j)
    if isinstance(lam_x, torch.Tensor) and lam_x.is_floating_point():
        lam = lam_x.to(n_i.device) if lam_x.ndim == 0 else lam_x
    else:
        lam = torch.as_tensor(lam_x, dtype=torch.float32, device=n_i.device)
    # Compare in float64 so that a float32 λx is tested against the exact τ the user gave.
    ni, nj, lam64 = n_i.to(torch.float64), n_j.to(torch.float64), lam.to(torch.float64)
    i_majority = (ni / nj >= kappa) & (lam64 < tau)  # image mostly the minority sample j: label it j
    j_majority = (nj / ni >= kappa) & (1 - lam64 < tau)  # image mostly the minority sample i: label it i
    lam, i_majority, j_majority = torch.broadcast_tensors(lam, i_majority, j_majority)
    zero, one = torch.zeros((), dtype=lam.dtype, device=lam.device), torch.ones((), dtype=lam.dtype, device=lam.device)
    return torch.where(i_majority, zero, torch.where(j_majority, one, lam))


def soft_targets(y: torch.Tensor, y_partner: torch.Tensor, lam_y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mixed one-hot targets ỹ = λy·e_{y} + (1 − λy)·e_{y_partner}.

    Args:
        y: (B,) int64 class of sample i of each pair.
        y_partner: (B,) int64 class of its partner j.
        lam_y: (B,) label share of sample i.
        num_classes: C.

    Returns:
        (B, C) targets in lam_y's dtype; every row sums to 1 (also when y == y_partner).

    Raises:
        InvalidParameterError / InvalidTypeError: not tensors, other shapes, labels outside [0, C) or shares outside
            [0, 1] (the values only for CPU tensors: see :func:`~remixup._validation.check_shares`).
    """
    check_number(num_classes, "num_classes", owner="soft_targets", low=1, integer=True)
    check_labels(y, num_classes, owner="soft_targets")
    check_labels(y_partner, num_classes, name="y_partner", owner="soft_targets")
    check_shares(lam_y, "lam_y", owner="soft_targets")
    if not y.shape == y_partner.shape == lam_y.shape:
        raise InvalidParameterError(f"`y`, `y_partner` and `lam_y` of `soft_targets` must have one shape (B,); got "
                                    f"{tuple(y.shape)}, {tuple(y_partner.shape)} and {tuple(lam_y.shape)}")  # fmt: skip
    lam = lam_y.reshape(-1, 1)
    target = torch.zeros(y.shape[0], num_classes, dtype=lam.dtype, device=lam.device)
    target.scatter_(1, y.reshape(-1, 1), lam)
    target.scatter_add_(1, y_partner.reshape(-1, 1), 1 - lam)
    return target


def cutmix_boxes(
    lam: torch.Tensor, height: int, width: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix boxes for target shares ``lam`` (n,): side √(1 − λ) of (H, W), centred uniformly at random (two draws
    of ``generator``: the rows, then the columns), clipped at the border.

    Returns:
        ``(kept (n,) float64, mask (n, H, W) bool)``: the exact share of pixels kept after clipping (the area-corrected
        λx, as timm and torchvision compute it) and the mask, True inside the box.
    """
    n = lam.shape[0]
    ratio = torch.sqrt(1.0 - lam.double())
    cut_h, cut_w = (ratio * height).long(), (ratio * width).long()
    cy = torch.randint(0, height, (n,), generator=generator)
    cx = torch.randint(0, width, (n,), generator=generator)
    y0, y1 = (cy - cut_h // 2).clamp(0, height), (cy + cut_h // 2).clamp(0, height)
    x0, x1 = (cx - cut_w // 2).clamp(0, width), (cx + cut_w // 2).clamp(0, width)
    rows, cols = torch.arange(height), torch.arange(width)
    in_rows = (rows >= y0[:, None]) & (rows < y1[:, None])  # (n, H)
    in_cols = (cols >= x0[:, None]) & (cols < x1[:, None])  # (n, W)
    mask = in_rows[:, :, None] & in_cols[:, None, :]
    kept = 1.0 - ((y1 - y0) * (x1 - x0)).double() / (height * width)
    return kept, mask


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


class Mixing(Protocol):
    """The one call a training loop makes per batch, whatever mixes: the input (Mixup, CutMix), a hidden layer
    (manifold mixing) or nothing (:class:`NoMixing`). ``x`` (B, ...) is the batch, ``y`` (B,) its labels."""

    def mix_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch: ...


class NoMixing:
    """Clean training behind the :class:`Mixing` protocol: ``model(x)`` with the labels as the target."""

    def mix_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """Return ``MixedBatch(model(x), y, None)``."""
        return MixedBatch(model(x), y, None)


class _BetaMixer:
    """What the two input mixers share: α, one λ per batch or per sample, and the generator (see subclasses)."""

    def __init__(self, alpha: float = 1.0, *, per_sample: bool = False, generator: torch.Generator | None = None):
        check_number(alpha, "alpha", owner=type(self).__name__, low=0.0, low_open=True)
        check_generator(generator, owner=type(self).__name__)
        self.alpha = alpha
        self.per_sample = per_sample
        self.generator = generator

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixOutput:
        raise NotImplementedError


class MixupMixer(_BetaMixer):
    """Mixup's feature mixing: x̃ = λx·x + (1 − λx)·x[π], λx ~ Beta(α, α).

    Args:
        alpha: Beta concentration α > 0 (1.0 for CIFAR/CINIC, 0.4 for iNaturalist in the paper).
        per_sample: draw one λx per sample instead of one per batch (the paper's choice).
        generator: torch generator for the permutation and λx; ``None`` uses torch's default generator. In the main
            process it is consumed in call order; in a DataLoader worker see :func:`batch_generator`.

    Pairing is by a random permutation π of the batch, so a sample can be paired with itself. The input is never
    modified; gradients flow through the mixed output. Call ``mixer(x, y)`` for a :class:`MixOutput`, or
    ``sample`` then ``mix`` to draw first and mix later (manifold mixing does this).
    """

    def _draw_lam(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        lam = sample_beta(self.alpha, batch_size if self.per_sample else 1, generator=generator)
        return lam.expand(batch_size).contiguous()

    def sample(self, batch_size: int, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the pairing and the factors for a batch of ``batch_size``: ``(perm (B,) int64, lam_x (B,) float32)``."""
        check_number(batch_size, "batch_size", owner=type(self).__name__, low=2, integer=True)
        g = batch_generator(self, self.generator)
        perm = torch.randperm(batch_size, generator=g)
        lam = self._draw_lam(batch_size, g)
        return perm.to(device), lam.to(device)

    @staticmethod
    def mix(x: torch.Tensor, perm: torch.Tensor, lam_x: torch.Tensor) -> torch.Tensor:
        """Return λx·x + (1 − λx)·x[perm] for x (B, ...) and lam_x (B,), in x's dtype; x is not modified."""
        partner = x[perm]
        if not (x.is_floating_point() or x.is_complex()):
            raise InvalidTypeError(f"mixing needs a floating-point `x`; got {x.dtype} (convert images to float first)")
        lam = lam_x.to(device=x.device, dtype=x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        return torch.lerp(partner, x, lam)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixOutput:
        """Mix a batch x (B, ...) with labels y (B,)."""
        check_batch(x, y, owner=type(self).__name__)
        perm, lam = self.sample(x.shape[0], x.device)
        return MixOutput(x=self.mix(x, perm, lam), y=y, y_partner=y[perm], lam_x=lam, perm=perm)


class CutMixMixer(_BetaMixer):
    """CutMix: paste a box of x[π] into x; λx is the share of pixels of x that were kept.

    A target λ ~ Beta(α, α) sets the box to side ratio √(1 − λ) of (H, W), centred uniformly at random; the box is
    clipped at the border, so λx = 1 − (box area after clipping)/(H·W) is recomputed exactly, as timm and torchvision
    do. With ``per_sample`` every sample gets its own λ and box; otherwise one box serves the whole batch.

    Args: as :class:`MixupMixer`. The input must be (B, C, H, W) (any memory format) or (B, H, W).
    """

    def sample_boxes(
        self, batch_size: int, height: int, width: int, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw ``(perm (B,), lam_x (B,), mask (B or 1, H, W) bool)``; the mask is True inside the pasted box."""
        check_number(batch_size, "batch_size", owner=type(self).__name__, low=2, integer=True)
        g = batch_generator(self, self.generator)
        perm = torch.randperm(batch_size, generator=g)
        n = batch_size if self.per_sample else 1
        lam = sample_beta(self.alpha, n, generator=g).double()
        kept, mask = cutmix_boxes(lam, height, width, generator=g)
        lam_x = kept.float().expand(batch_size).contiguous()
        return perm.to(device), lam_x.to(device), mask.to(device)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixOutput:
        """Mix a batch x (B, C, H, W) or (B, H, W) with labels y (B,)."""
        check_batch(x, y, owner=type(self).__name__)
        if x.ndim not in (3, 4):
            raise InvalidParameterError(f"`x` of `CutMixMixer` must have shape (B, C, H, W) or (B, H, W); got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        perm, lam, mask = self.sample_boxes(x.shape[0], height, width, x.device)
        if x.ndim == 4:
            mask = mask[:, None]
        mixed = torch.where(mask, x[perm], x)
        return MixOutput(x=mixed, y=y, y_partner=y[perm], lam_x=lam, perm=perm)


class MixupLabels:
    """Mixup's label policy: λy = λx (the labels mix in the same proportion as the inputs)."""

    def __call__(self, y: torch.Tensor, y_partner: torch.Tensor, lam_x: torch.Tensor) -> torch.Tensor:
        """Return λy (B,) for labels y, y_partner (B,) and factors lam_x (B,)."""
        check_shares(lam_x, "lam_x", owner="MixupLabels")
        return lam_x.clone()


class RemixLabels:
    """Remix's label policy: λy from :func:`remix_label_factor` with the classes' training counts.

    Args:
        class_counts: (C,) number of training samples of each class, all positive.
        kappa: κ ≥ 1; a pair is eligible when one class is at least κ times the other.
        tau: τ in [0, 1]; the minority sample must hold more than 1 − τ of the mix to take the whole label.
    """

    def __init__(self, class_counts, *, kappa: float = 3.0, tau: float = 0.5):  # noqa: ANN001 - any sequence
        owner = type(self).__name__
        self._counts = check_class_counts(class_counts, owner=owner)
        check_number(kappa, "kappa", owner=owner, low=1.0)
        check_number(tau, "tau", owner=owner, low=0.0, high=1.0)
        self.class_counts = class_counts
        self.kappa = kappa
        self.tau = tau

    @property
    def num_classes(self) -> int:
        return int(self._counts.numel())

    def __call__(self, y: torch.Tensor, y_partner: torch.Tensor, lam_x: torch.Tensor) -> torch.Tensor:
        """Return λy (B,) for labels y, y_partner (B,) and factors lam_x (B,)."""
        check_labels(y, self.num_classes, owner="RemixLabels")
        check_labels(y_partner, self.num_classes, name="y_partner", owner="RemixLabels")
        check_shares(lam_x, "lam_x", owner="RemixLabels")
        if self._counts.device != y.device:
            self._counts = self._counts.to(y.device)
        return remix_label_factor(lam_x, self._counts[y], self._counts[y_partner], self.kappa, self.tau)


class MixTransform:
    """A drop-in batch transform ``(x, y) -> (x_mixed, y_soft)``: a mixer followed by a label policy.

    Args:
        mixer: a :class:`MixupMixer` or :class:`CutMixMixer` (or any ``mixer(x, y) -> MixOutput``).
        labels: a label policy, e.g. :class:`MixupLabels` or :class:`RemixLabels`.
        num_classes: C, the width of the soft targets.

    The values of x are not checked: NaN or infinity in x propagate into x_mixed, as in any tensor operation (a
    check would cost a device synchronisation every step on a GPU). Labels and λ are checked where that is free
    (CPU tensors).

    After each call ``last`` holds the :class:`MixRecord` of the batch (λx, λy, the permutation), so a training
    loop can log ``transform.last.forced_share``; a call made in a DataLoader worker sets the worker's copy, so a
    ``collate_fn`` that needs the record returns it from :meth:`mix`. Inputs are not modified.
    """

    def __init__(self, mixer: _BetaMixer, labels: MixupLabels | RemixLabels, *, num_classes: int):
        check_number(num_classes, "num_classes", owner=type(self).__name__, low=2, integer=True)
        check_callable(mixer, "mixer", "MixupMixer() or CutMixMixer()", owner=type(self).__name__)
        check_callable(labels, "labels", "MixupLabels() or RemixLabels(class_counts)", owner=type(self).__name__)
        if getattr(labels, "num_classes", num_classes) != num_classes:
            raise InvalidParameterError(f"`num_classes` of `MixTransform` must equal the number of classes of `labels` "
                                        f"({labels.num_classes} class counts); got {num_classes}")  # type: ignore[union-attr]  # fmt: skip
        self.mixer = mixer
        self.labels = labels
        self.num_classes = num_classes
        self.last: MixRecord | None = None

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixRecord]:
        """Mix x (B, ...) with int labels y (B,): ``(x_mixed (B, ...), y_soft (B, C) float32, record)``.

        Unlike calling the transform, this leaves ``last`` alone: nothing in the transform changes but the state of
        its generator."""
        check_batch(x, y, owner=type(self).__name__)
        check_labels(y, self.num_classes, owner=type(self).__name__)
        out = self.mixer(x, y)
        lam_y = self.labels(out.y, out.y_partner, out.lam_x)
        record = MixRecord(lam_x=out.lam_x, lam_y=lam_y, perm=out.perm, y=out.y, y_partner=out.y_partner)
        return out.x, soft_targets(out.y, out.y_partner, lam_y, self.num_classes), record

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix x (B, ...) with int labels y (B,); return ``(x_mixed (B, ...), y_soft (B, C) float32)``."""
        x_mixed, target, self.last = self.mix(x, y)
        return x_mixed, target

    def mix_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """The :class:`Mixing` protocol: mix the input, then ``model(x_mixed)``."""
        x_mixed, target, record = self.mix(x, y)
        return MixedBatch(model(x_mixed), target, record)


class Remix(MixTransform):
    """Remix as one batch transform: Mixup or CutMix features with Remix labels.

    >>> remix = Remix(class_counts=[5000, 500, 50], alpha=1.0, kappa=3.0, tau=0.5)
    >>> x_mixed, y_soft = remix(images, labels)          # (B, ...), (B, 3)
    >>> loss = soft_cross_entropy(model(x_mixed), y_soft)

    Args:
        class_counts: (C,) training samples per class; C sets the width of the targets.
        alpha: Beta(α, α) concentration, α > 0.
        kappa: κ ≥ 1. tau: τ in [0, 1] (τ = 0 is plain Mixup/CutMix).
        mode: ``"mixup"`` or ``"cutmix"`` feature mixing.
        per_sample: one λx per sample instead of per batch.
        generator: torch generator for reproducible batches (in a DataLoader worker see :func:`batch_generator`).
    """

    def __init__(
        self,
        class_counts,  # noqa: ANN001 - any sequence of counts
        *,
        alpha: float = 1.0,
        kappa: float = 3.0,
        tau: float = 0.5,
        mode: str = "mixup",
        per_sample: bool = False,
        generator: torch.Generator | None = None,
    ):
        check_choice(mode, "mode", ("mixup", "cutmix"), owner="Remix")
        check_generator(generator, owner="Remix")
        mixer_cls = MixupMixer if mode == "mixup" else CutMixMixer
        labels = RemixLabels(class_counts, kappa=kappa, tau=tau)
        super().__init__(mixer_cls(alpha, per_sample=per_sample, generator=generator), labels, num_classes=labels.num_classes)
        self.mode = mode
