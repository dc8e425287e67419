"""The class-aware mixing family: CMO, Balanced-MixUp, UniMix and MAMix as choices on four axes.

Each method pairs every sample i of a batch with a partner j (:mod:`remixup.mixing.partners`), draws the share λx of
sample i in the mixed input, mixes the inputs with an operator and gives the label share λy to i by a label rule:

===================  ===================================================================================
axis                 choices
===================  ===================================================================================
partner              ``permutation`` · ``class-weighted`` (a second batch from the training set, sample
                     weight ∝ n^e) · ``in-batch`` (p(j) ∝ n_{y_j}^e, with replacement)
λ draw               ``beta``: λx ~ Beta(α, α) (Mixup, CutMix, Remix, MAMix, CMO with α = 1);
                     ``beta-1``: the partner's share 1 − λx ~ Beta(α_B, 1) (Balanced-MixUp);
                     ``unimix``: λx = n_j/(n_i + n_j) + ξ, ξ ~ Beta(α_U, α_U), values above 1 less 1 (UniMix)
operator             ``mixup`` (x̃ = λx·x_i + (1 − λx)·x_j) · ``cutmix`` (a box of x_j pasted into x_i, λx
                     recomputed as the kept area after clipping)
label rule           ``plain`` (λy = λx) · ``remix`` (κ, τ) · ``mamix`` (:func:`mamix_label_factor`)
===================  ===================================================================================

plus, as CMO has them, a probability of mixing a batch and an epoch window. :class:`PartnerMix` is the one class
that composes them; it implements the :class:`~remixup.mixing.Mixing` protocol, so the training step does not
change, and it counts per-epoch telemetry (:class:`MixStats`). ``PartnerMix(..., partner="permutation")`` with
the ``beta`` draw and a plain or Remix label rule draws exactly what :class:`~remixup.mixing.MixTransform` draws.

In the authors' code: CMO (naver-ai/cmo) pastes a box of the class-weighted foreground batch into the ordinary
batch with probability 0.5 per batch, in epochs 3 < e < E − 3 only; Balanced-MixUp (agaldran/balanced_mixup)
mixes x = (1 − λ)·x_A + λ·x_B with B class-balanced and λ ~ Beta(α, 1); UniMix (XuZhengzhuo/Prior-LT) draws one
λ per pair and uses it for image and label; MAMix (ntucllab/imbalanced-DL) draws one λ per batch and maps it to a
label weight piecewise linearly. docs/family.md lists each rule, the code's value and the option that switches it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from remixup._validation import (
    check_batch,
    check_callable,
    check_choice,
    check_class_counts,
    check_generator,
    check_labels,
    check_number,
)
from remixup.errors import InvalidParameterError, InvalidTypeError
from remixup.metrics import FEW_BELOW, MANY_ABOVE
from remixup.mixing.base import MixedBatch, Mixing, MixRecord
from remixup.mixing.draws import cutmix_boxes, sample_beta
from remixup.mixing.labels import soft_targets
from remixup.mixing.manifold import forward_mixing_at, resolve_point
from remixup.mixing.partners import DEFAULT_EXPONENT, PARTNERS, LoaderPartners, in_batch_partners

__all__ = ["DRAWS", "DRAW_RULES", "FAMILY_MIXERS", "MixStats", "PARTNER_RULES", "PartnerMix", "UNIMIX_WRAPS", "unimix_lambda"]

DRAWS = ("beta", "beta-1", "unimix")
FAMILY_MIXERS = ("mixup", "cutmix", "manifold")
UNIMIX_WRAPS = ("wrap", "clip")
STATS_COLUMNS = ("partner_many", "partner_medium", "partner_few", "label_to_minority", "minority_label_share",
                 "label_weight_many", "label_weight_medium", "label_weight_few")  # fmt: skip


def unimix_lambda(n_i: torch.Tensor, n_j: torch.Tensor, xi: torch.Tensor, *, wrap: str = "wrap") -> torch.Tensor:
    """UniMix's share of sample i: λ = n_j/(n_i + n_j) + ξ, brought back into [0, 1].

    Args:
        n_i, n_j: (B,) training counts of the classes of i and of its partner j.
        xi: (B,) ξ ~ Beta(α, α).
        wrap: ``"wrap"`` (the authors' code: a value above 1 has 1 subtracted) or ``"clip"`` (values above 1
            become 1).

    Returns:
        (B,) float32 λ, used for the image and the label alike.
    """
    check_choice(wrap, "wrap", UNIMIX_WRAPS, owner="unimix_lambda")
    ni, nj = n_i.to(torch.float64), n_j.to(torch.float64)
    lam = nj / (ni + nj) + xi.to(device=ni.device, dtype=torch.float64)
    lam = torch.where(lam > 1, lam - 1, lam) if wrap == "wrap" else lam.clamp(max=1.0)
    return lam.float()


class MixStats:
    """Per-epoch telemetry of a mixing: who was paired with whom and where the label went.

    Accumulated on the device per mixed batch (no host sync), read once per epoch by :meth:`result` (summed over
    DDP ranks when a process group is up). Groups are the evaluation's: many (n > 100), medium, few (n < 20).

    ``result()`` keys: ``partner_classes`` (C,) partner counts; ``partner_many/medium/few`` the share of partners
    in each group; ``label_to_minority`` the share of pairs of unequal class counts in which the rarer class got
    more label than image share; ``minority_label_share`` its mean label share in those pairs;
    ``label_weight_many/medium/few`` the mean label share of a pair member of each group (½ for Mixup on
    average). A value is ``None`` when nothing was counted.
    """

    def __init__(self, class_counts: torch.Tensor) -> None:
        counts = torch.as_tensor(class_counts, dtype=torch.float64)
        self.counts = counts
        self.groups = torch.where(counts > MANY_ABOVE, 0, torch.where(counts < FEW_BELOW, 2, 1))
        self.num_classes = counts.numel()
        self._totals: torch.Tensor | None = None

    def update(self, record: MixRecord) -> None:
        y, yp = record.y, record.y_partner
        if self.counts.device != y.device:
            self.counts, self.groups = self.counts.to(y.device), self.groups.to(y.device)
        lam_x, lam_y = record.lam_x.to(torch.float64), record.lam_y.to(torch.float64)
        ni, nj = self.counts[y], self.counts[yp]
        unequal = ni != nj
        i_rare = ni < nj
        minority_label = torch.where(i_rare, lam_y, 1 - lam_y)
        minority_image = torch.where(i_rare, lam_x, 1 - lam_x)
        moved = unequal & (minority_label > minority_image)
        g = torch.cat([self.groups[y], self.groups[yp]])
        w = torch.cat([lam_y, 1 - lam_y])
        C = self.num_classes
        hist = torch.bincount(yp, minlength=C).to(torch.float64)
        weight_sum = torch.zeros(3, dtype=torch.float64, device=y.device).scatter_add_(0, g, w)
        weight_n = torch.bincount(g, minlength=3).to(torch.float64)
        scalars = torch.stack([moved.sum().double(), (minority_label * unequal).sum(), unequal.sum().double()])
        step = torch.cat([hist, weight_sum, weight_n, scalars])
        self._totals = step if self._totals is None else self._totals + step

    def result(self) -> dict[str, Any]:
        """The epoch's statistics (module docstring), then a reset. Empty when no batch was mixed."""
        totals, self._totals = self._totals, None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # every rank calls this at the end of an epoch; a rank that mixed nothing contributes zeros
            device = self.counts.device if totals is None else totals.device
            totals = torch.zeros(self.num_classes + 9, dtype=torch.float64, device=device) if totals is None else totals
            dist.all_reduce(totals)
        if totals is None or float(totals[: self.num_classes].sum()) == 0:
            return {}
        t = totals.cpu()
        C = self.num_classes
        hist, weight_sum, weight_n = t[:C], t[C : C + 3], t[C + 3 : C + 6]
        moved, minority_sum, unequal = t[C + 6 :].tolist()
        groups = self.groups.cpu()
        pairs = float(hist.sum())
        out: dict[str, Any] = {"partner_classes": [int(v) for v in hist.tolist()]}
        for k, name in enumerate(("many", "medium", "few")):
            present = bool((groups == k).any())
            out[f"partner_{name}"] = float(hist[groups == k].sum()) / pairs if present else None
            out[f"label_weight_{name}"] = float(weight_sum[k] / weight_n[k]) if weight_n[k] > 0 else None
        out["label_to_minority"] = moved / unequal if unequal else None
        out["minority_label_share"] = minority_sum / unequal if unequal else None
        return out


class PartnerMix(Mixing):
    """A mixing of the family: partner × λ draw × operator × label rule, with a probability and an epoch window.

    Args:
        mixer: ``"mixup"``, ``"cutmix"`` or ``"manifold"`` (hidden states mixed at one of ``points`` per batch; a
            class-weighted partner batch then runs through the layers before the point together with the batch).
        labels: a label policy ``(y, y_partner, lam_x) -> lam_y`` (``MixupLabels``, ``RemixLabels``,
            :class:`MAMixLabels`).
        class_counts: (C,) training samples per class (in-batch partner, UniMix's λ, telemetry; C = target width).
        partner: ``"permutation"``, ``"class-weighted"`` or ``"in-batch"``.
        exponent: e of the partner's weights n^e (``None``: −1 for class-weighted, −0.5 for in-batch).
        partners: the class-weighted source: ``partners.next(B) -> (x2, y2)`` on the batch's device, with
            ``set_epoch`` (the engine passes a second training loader); ``None`` when you pass the second batch
            to :meth:`mix` yourself.
        draw: ``"beta"`` (λx ~ Beta(α, α)), ``"beta-1"`` (1 − λx ~ Beta(α, 1)) or ``"unimix"``.
        alpha: α of the draw (Beta(α, α), Beta(α, 1), or UniMix's ξ ~ Beta(α, α)).
        per_sample: one λx per sample (``beta``/``beta-1``; UniMix's λ is always per pair).
        wrap: UniMix's return into [0, 1]: ``"wrap"`` or ``"clip"``.
        prob: probability that a batch is mixed (drawn per batch; 1 draws nothing).
        skip_first, skip_last: epoch e (0-based) of ``epochs`` is mixed only when skip_first ≤ e < epochs − skip_last.
        epochs: the run's length E (needed by ``skip_last``).
        generator: the generator of the pairing, λ, the boxes and the per-batch coin.
        model, points: for ``"manifold"``: the model and its mixing points (``"input"`` or module names).

    The values of x are not checked: NaN or infinity propagate into the mixed batch (a check would synchronise a GPU
    every step); labels are range-checked for CPU tensors only.
    """

    def __init__(
        self,
        *,
        mixer: str,
        labels: Any,
        class_counts: Any,
        partner: str = "permutation",
        exponent: float | None = None,
        partners: LoaderPartners | Any | None = None,
        draw: str = "beta",
        alpha: float = 1.0,
        per_sample: bool = False,
        wrap: str = "wrap",
        prob: float = 1.0,
        skip_first: int = 0,
        skip_last: int = 0,
        epochs: int | None = None,
        generator: torch.Generator | None = None,
        model: nn.Module | None = None,
        points: list[str] | None = None,
    ) -> None:
        owner = type(self).__name__
        check_choice(mixer, "mixer", FAMILY_MIXERS, owner=owner)
        check_choice(partner, "partner", PARTNERS, owner=owner)
        check_choice(draw, "draw", DRAWS, owner=owner)
        check_choice(wrap, "wrap", UNIMIX_WRAPS, owner=owner)
        self._counts = check_class_counts(class_counts, owner=owner)
        check_number(alpha, "alpha", owner=owner, low=0.0, low_open=True)
        check_number(prob, "prob", owner=owner, low=0.0, high=1.0)
        check_number(skip_first, "skip_first", owner=owner, low=0, integer=True)
        check_number(skip_last, "skip_last", owner=owner, low=0, integer=True)
        check_generator(generator, owner=owner)
        check_callable(labels, "labels", "MixupLabels() or RemixLabels(class_counts)", owner=owner)
        if exponent is not None:
            check_number(exponent, "exponent", owner=owner)
        if mixer == "manifold" and (model is None or not points):
            raise InvalidParameterError(f"manifold mixing in `{owner}` needs `model` and a non-empty list of `points`")
        if skip_last and epochs is None:
            raise InvalidParameterError(f"`skip_last` of `{owner}` needs `epochs` (the run's length)")
        if epochs is not None and (skip_first or skip_last):
            check_number(epochs, "epochs", owner=owner, low=skip_first + skip_last + 1, integer=True)  # a window to mix in
        self.mixer = mixer
        self.labels = labels
        self.class_counts = class_counts
        self.partner = partner
        self.exponent = DEFAULT_EXPONENT.get(partner, 0.0) if exponent is None else exponent
        self.partners = partners
        self.draw = draw
        self.alpha = alpha
        self.per_sample = per_sample
        self.wrap = wrap
        self.prob = prob
        self.skip_first = skip_first
        self.skip_last = skip_last
        self.epochs = epochs
        self.generator = generator
        self.model = model
        self.points = list(points or [])
        self._modules = {name: resolve_point(model, name) for name in self.points} if model is not None else {}
        self.num_classes = int(self._counts.numel())
        self.stats = MixStats(self._counts)
        self.epoch = 0
        self.last: MixRecord | None = None

    # -- the epoch ------------------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch: its window decision and the partner source's epoch."""
        self.epoch = int(epoch)
        if self.partners is not None and hasattr(self.partners, "set_epoch"):
            self.partners.set_epoch(self.epoch)

    def active(self, epoch: int | None = None) -> bool:
        """Whether epoch ``epoch`` (default: the current one) lies in the mixing window."""
        e = self.epoch if epoch is None else epoch
        end = self.epochs - self.skip_last if self.epochs is not None else None
        return e >= self.skip_first and (end is None or e < end)

    def epoch_stats(self) -> dict[str, Any]:
        """The epoch's :class:`MixStats` result (the engine adds it to the epoch's row), then a reset."""
        return self.stats.result()

    # -- drawing --------------------------------------------------------------------------------------------------
    def _pair(self, x: torch.Tensor, y: torch.Tensor, partner_batch: tuple[torch.Tensor, torch.Tensor] | None):
        """Who each sample is mixed with, by the partner rule: ``(x_partner, y_partner, perm)`` (perm −1: outside)."""
        return PARTNER_RULES[self.partner](self, x, y, partner_batch)

    def _pair_permutation(self, x: torch.Tensor, y: torch.Tensor, _partner_batch: Any):
        perm = torch.randperm(x.shape[0], generator=self.draw_generator()).to(x.device)
        return x[perm], y[perm], perm

    def _pair_in_batch(self, x: torch.Tensor, y: torch.Tensor, _partner_batch: Any):
        idx = in_batch_partners(y, self._counts, self.exponent, generator=self.draw_generator())
        return x[idx], y[idx], idx

    def _pair_class_weighted(self, x: torch.Tensor, y: torch.Tensor, partner_batch: tuple[torch.Tensor, torch.Tensor] | None):
        b = x.shape[0]
        if partner_batch is None:
            if self.partners is None:
                raise InvalidParameterError(
                    "a class-weighted `PartnerMix` needs the second batch: pass `partner=(x2, y2)` or a `partners` source"
                )
            partner_batch = self.partners.next(b)
        x2, y2 = partner_batch
        if x2.shape[0] < b or x2.shape[1:] != x.shape[1:]:
            raise InvalidParameterError(
                f"the partner batch must hold at least B={b} samples shaped like x {tuple(x.shape[1:])}; got {tuple(x2.shape)}"
            )
        return x2[:b].to(x.device, x.dtype), y2[:b].to(y.device), torch.full((b,), -1, dtype=torch.int64, device=x.device)

    def _target_lam(self, y: torch.Tensor, y2: torch.Tensor, n: int) -> torch.Tensor:
        """λx before any box clipping, by the draw rule: (n,) float32 (n is B, or 1 for one λ per batch)."""
        return DRAW_RULES[self.draw](self, y, y2, n)

    def _draw_beta(self, y: torch.Tensor, y2: torch.Tensor, n: int) -> torch.Tensor:
        return sample_beta(self.alpha, n, generator=self.draw_generator())

    def _draw_beta_1(self, y: torch.Tensor, y2: torch.Tensor, n: int) -> torch.Tensor:
        return 1.0 - sample_beta(self.alpha, n, beta=1.0, generator=self.draw_generator())

    def _draw_unimix(self, y: torch.Tensor, y2: torch.Tensor, n: int) -> torch.Tensor:
        counts = self._counts.to(y.device)
        xi = sample_beta(self.alpha, y.shape[0], generator=self.draw_generator())
        return unimix_lambda(counts[y], counts[y2], xi, wrap=self.wrap)

    def _lam_count(self, b: int) -> int:
        return b if (self.per_sample or self.draw == "unimix") else 1

    def mix(self, x: torch.Tensor, y: torch.Tensor, partner: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Mix x (B, ...) with int labels y (B,): ``(x_mixed, y_soft (B, C), record)``; x is not modified.

        Args:
            x, y: the batch.
            partner: for ``class-weighted``, the second batch ``(x2 (≥B, ...), y2)`` (else taken from ``partners``);
                ignored by the other partners.
        """
        owner = type(self).__name__
        if self.mixer == "manifold":
            raise InvalidParameterError(f"manifold mixing in `{owner}` mixes inside the forward pass: call `mix_forward`")
        check_batch(x, y, owner=owner)
        check_labels(y, self.num_classes, owner=owner)
        if not (x.is_floating_point() or x.is_complex()):
            raise InvalidTypeError(f"mixing needs a floating-point `x`; got {x.dtype} (convert images to float first)")
        b = x.shape[0]
        xp, yp, perm = self._pair(x, y, partner)
        if self.mixer == "mixup":
            lam = self._target_lam(y, yp, self._lam_count(b))
            lam = lam.to(x.device).expand(b).contiguous()
            shaped = lam.to(dtype=x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
            mixed = torch.lerp(xp, x, shaped)
        else:
            if x.ndim not in (3, 4):
                raise InvalidParameterError(
                    f"`x` of `{owner}` must have shape (B, C, H, W) or (B, H, W) for CutMix; got {tuple(x.shape)}"
                )
            lam, mask = self._box(y, yp, b, *x.shape[-2:])
            lam, mask = lam.to(x.device), mask.to(x.device)
            mixed = torch.where(mask[:, None] if x.ndim == 4 else mask, xp, x)
        lam_y = self.labels(y, yp, lam)
        record = MixRecord(lam_x=lam, lam_y=lam_y, perm=perm, y=y, y_partner=yp)
        return mixed, soft_targets(y, yp, lam_y, self.num_classes), record

    def _box(self, y: torch.Tensor, yp: torch.Tensor, b: int, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        # CutMixMixer's box (the same draws in the same order for the ``beta`` draw): side √(1 − λ) of (H, W),
        # centred uniformly, clipped at the border; λx is the exact kept share after clipping.
        n = self._lam_count(b)
        lam = self._target_lam(y, yp, n).double().cpu()
        kept, mask = cutmix_boxes(lam, height, width, generator=self.draw_generator())
        return kept.float().expand(b).contiguous(), mask

    # -- the Mixing protocol and the drop-in ------------------------------------------------------------------
    def _mixes_now(self) -> bool:
        if not self.active():
            return False
        return self.prob >= 1.0 or float(torch.rand(1, generator=self.draw_generator())) < self.prob

    def __call__(self, x: torch.Tensor, y: torch.Tensor, partner: tuple[torch.Tensor, torch.Tensor] | None = None):
        """Drop-in: ``(x_mixed (B, ...), y_soft (B, C))``, or ``(x, y)`` unchanged when the window or the per-batch
        coin says not to mix; ``last`` holds the record (``None`` when not mixed)."""
        if not self._mixes_now():
            self.last = None
            return x, y
        x_mixed, target, self.last = self.mix(x, y, partner)
        self.stats.update(self.last)
        return x_mixed, target

    def mix_input(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixRecord | None]:
        """The :class:`~remixup.mixing.base.Mixing` call for input mixing: ``(x_mixed, y_soft, record)``, or
        ``(x, y, None)`` when the window or the per-batch coin says not to mix."""
        if self.mixer == "manifold":
            raise InvalidParameterError(
                f"manifold mixing in `{type(self).__name__}` mixes inside the forward pass: call `mix_forward`"
            )
        if not self._mixes_now():
            return x, y, None
        x_mixed, target, record = self.mix(x, y)
        self.stats.update(record)
        return x_mixed, target, record

    def mix_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """The training step's call: mix (or not, by window and coin), then ``model``."""
        if self.mixer != "manifold":
            return super().mix_forward(model, x, y)
        if not self._mixes_now():
            return MixedBatch(model(x), y, None)
        return self._manifold_forward(model, x, y)

    def fusable(self) -> str | None:
        """Manifold mixing happens inside the forward pass, which the stacked fused step shares between runs."""
        return "manifold mixing mixes hidden layers inside the forward pass" if self.mixer == "manifold" else None

    def _manifold_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        # ManifoldMixup's draws in its order (the point, the pairing, λ), with any partner: an index into the batch
        # (permutation, in-batch), or a second batch run through the layers before the point with the first.
        check_batch(x, y, owner=type(self).__name__)
        check_labels(y, self.num_classes, owner=type(self).__name__)
        point = self.points[int(torch.randint(0, len(self.points), (1,), generator=self.draw_generator()))]
        module = self._modules[point]
        b = x.shape[0]
        xp, yp, perm = self._pair(x, y, None)
        lam = self._target_lam(y, yp, self._lam_count(b)).to(x.device).expand(b).contiguous()
        external = self.partner == "class-weighted"

        def mixed(h: torch.Tensor, hp: torch.Tensor) -> torch.Tensor:
            return torch.lerp(hp, h, lam.to(dtype=h.dtype).reshape((-1,) + (1,) * (h.ndim - 1)))

        if module is None:
            logits = model(mixed(x, xp))
        else:
            logits = forward_mixing_at(
                model, module, point, torch.cat([x, xp]) if external else x,
                (lambda h: mixed(h[:b], h[b:])) if external else (lambda h: mixed(h, h[perm])), batch=2 * b if external else b,
            )  # fmt: skip
        lam_y = self.labels(y, yp, lam)
        record = MixRecord(lam_x=lam, lam_y=lam_y, perm=perm, y=y, y_partner=yp)
        self.stats.update(record)
        return MixedBatch(logits, soft_targets(y, yp, lam_y, self.num_classes), record)


PARTNER_RULES = {
    "permutation": PartnerMix._pair_permutation,
    "class-weighted": PartnerMix._pair_class_weighted,
    "in-batch": PartnerMix._pair_in_batch,
}
"""The partner rules of :class:`PartnerMix` by name (:data:`remixup.mixing.partners.PARTNERS`)."""

DRAW_RULES = {"beta": PartnerMix._draw_beta, "beta-1": PartnerMix._draw_beta_1, "unimix": PartnerMix._draw_unimix}
"""The λx draws of :class:`PartnerMix` by name (:data:`DRAWS`)."""
