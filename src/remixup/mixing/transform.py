"""Mixup and CutMix on the input, and the drop-in transforms that chain a mixer with a label rule.

Remix (Chou et al., "Remix: Rebalanced Mixup", arXiv:2007.03943) keeps Mixup's feature mixing

    x̃ = λx·x_i + (1 − λx)·x_j,   λx ~ Beta(α, α),   j = π(i) for a random permutation π of the batch,

and mixes the labels with its own factor λy (:mod:`remixup.mixing.labels`). A *mixer* (:class:`MixupMixer`,
:class:`CutMixMixer`) draws and mixes, returning a :class:`~remixup.mixing.base.MixOutput`; a *label rule*
(:class:`~remixup.mixing.labels.MixupLabels`, :class:`~remixup.mixing.labels.RemixLabels`) turns
``(y, y_partner, lam_x)`` into ``lam_y``. :class:`MixTransform` (and its preset :class:`Remix`) chains them into a
drop-in ``(x, y) -> (x_mixed, y_soft)`` batch transform and a :class:`~remixup.mixing.base.Mixing` of the engine.

**Non-finite values.** Parameters are checked when a piece is built; tensors passed per batch are not checked for
NaN or infinity, since that would cost a device synchronisation every step. A NaN or infinite input gives NaN mixed
inputs; :func:`remixup.losses.soft_cross_entropy` then returns NaN, and the training engine stops a run whose loss,
weights or BatchNorm statistics become non-finite.
"""

from __future__ import annotations

import torch

from remixup._validation import check_batch, check_callable, check_choice, check_generator, check_labels, check_number
from remixup.errors import InvalidParameterError, InvalidTypeError
from remixup.mixing.base import Mixing, MixOutput, MixRecord
from remixup.mixing.draws import batch_generator, box_mask, cutmix_box, sample_beta
from remixup.mixing.labels import LabelRule, RemixLabels, soft_targets

__all__ = ["CutMixMixer", "MixTransform", "MixupMixer", "Remix"]


class BetaMixer:
    """What the two input mixers share: α, one λ per batch or per sample, and the generator (see subclasses)."""

    def __init__(self, alpha: float = 1.0, *, per_sample: bool = False, generator: torch.Generator | None = None):
        check_number(alpha, "alpha", owner=type(self).__name__, low=0.0, low_open=True)
        check_generator(generator, owner=type(self).__name__)
        self.alpha = alpha
        self.per_sample = per_sample
        self.generator = generator

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> MixOutput:
        raise NotImplementedError


class MixupMixer(BetaMixer):
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


class CutMixMixer(BetaMixer):
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
        kept, box = cutmix_box(lam, height, width, generator=g)
        mask = box_mask(box, height, width)
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


class MixTransform(Mixing):
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

    def __init__(self, mixer: BetaMixer, labels: LabelRule, *, num_classes: int):
        check_number(num_classes, "num_classes", owner=type(self).__name__, low=2, integer=True)
        check_callable(mixer, "mixer", "MixupMixer() or CutMixMixer()", owner=type(self).__name__)
        check_callable(labels, "labels", "MixupLabels() or RemixLabels(class_counts)", owner=type(self).__name__)
        rule_classes = getattr(labels, "num_classes", num_classes)
        if rule_classes != num_classes:
            raise InvalidParameterError(f"`num_classes` of `MixTransform` must equal the number of classes of `labels` "
                                        f"({rule_classes} class counts); got {num_classes}")  # fmt: skip
        self.mixer = mixer
        self.labels = labels
        self.num_classes = num_classes
        self.generator = mixer.generator
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

    def mix_input(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixRecord | None]:
        """The :class:`~remixup.mixing.base.Mixing` call: :meth:`mix` (every batch is mixed)."""
        return self.mix(x, y)


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
