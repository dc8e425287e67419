"""A drop-in for ``timm.data.Mixup`` and ``torchvision.transforms.v2.MixUp``/``CutMix`` that speaks Remix.

:class:`RemixMixup` takes timm's ``Mixup`` options with their names and meaning (``mixup_alpha``, ``cutmix_alpha``,
``cutmix_minmax``, ``prob``, ``switch_prob``, ``mode``, ``correct_lam``, ``label_smoothing``, ``num_classes``) and
adds Remix's: ``class_counts``, ``kappa``, ``tau``, or any label policy through ``labels=``. It is called like both
anchors, ``x_mixed, target = mixer(x, y)``, in the training loop or in a DataLoader's ``collate_fn``, and its
targets (B, C) work with timm's ``SoftTargetCrossEntropy``, ``nn.CrossEntropyLoss`` and
:func:`remixup.soft_cross_entropy` alike. The documented differences from timm are in ``docs/dropin.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from remixup._validation import check_choice, check_class_counts, check_labels, check_number, check_tensor
from remixup.errors import InvalidParameterError, InvalidTypeError
from remixup.mixing.base import Mixing, MixRecord
from remixup.mixing.draws import box_mask, cutmix_box, sample_beta
from remixup.mixing.labels import LabelRule, MixupLabels, RemixLabels

__all__ = ["MODES", "RemixMixup"]

MODES = ("batch", "pair", "elem")


class RemixMixup(Mixing):
    """Mixup and CutMix with timm's options, and Remix's label rule (or any label policy).

    Pairing is timm's: sample i is mixed with sample B − 1 − i (the batch reversed), so a shuffled loader supplies
    the randomness of the pairs. Per *unit* (the whole batch for ``mode="batch"``, each pair (i, B − 1 − i) for
    ``"pair"``, each sample for ``"elem"``) the mixer draws: whether to mix at all (probability ``prob``), Mixup or
    CutMix (CutMix with probability ``switch_prob`` when both alphas are positive), λ ~ Beta(α, α) of the chosen
    method, and for CutMix the box. The image keeps share λx of sample i; the label policy turns
    (y_i, y_{B−1−i}, λx) into the label share λy, and the target is

        ỹ_i = λy·s(y_i) + (1 − λy)·s(y_{B−1−i}),   s(y) = (1 − ε)·y + ε/C  (label smoothing ε, y one-hot or soft).

    The values of x are not checked: NaN or infinity propagate into the mixed images (a check would synchronise a
    GPU every step); class indices are range-checked for CPU tensors only.

    Args:
        mixup_alpha: Beta(α, α) of Mixup; Mixup is active when > 0.
        cutmix_alpha: Beta(α, α) of CutMix; CutMix is active when > 0 or when ``cutmix_minmax`` is given.
        cutmix_minmax: ``(min, max)`` box side ratios, 0 < min < max ≤ 1: each side is drawn uniformly in
            [⌊min·H⌋, ⌊max·H⌋) (resp. W), the box placed uniformly inside the image; λx is its exact complement
            and ``cutmix_alpha`` is then not used.
        prob: probability of mixing a unit at all; an unmixed sample keeps its image and its (smoothed) label.
        switch_prob: probability of CutMix instead of Mixup when both are active.
        mode: ``"batch"`` (one draw for the batch), ``"pair"`` (one per pair i, B − 1 − i; both members of a pair get
            the same box or λ) or ``"elem"`` (one per sample).
        correct_lam: for CutMix, set λx to the share of pixels kept after the box is clipped at the border (always
            so with ``cutmix_minmax``); otherwise λx is the Beta draw.
        label_smoothing: ε in [0, 1), applied to both labels before they are mixed.
        num_classes: C, the width of the targets; taken from ``class_counts`` (or the policy's ``num_classes``)
            when ``None``.
        class_counts: (C,) training samples per class: turns on Remix's labels (:class:`~remixup.RemixLabels`).
        kappa: κ ≥ 1 of Remix (default 3); needs ``class_counts``.
        tau: τ in [0, 1] of Remix (default 0.5); τ = 0 gives exactly the targets of plain Mixup/CutMix.
        labels: a label policy instead of ``class_counts``: :class:`~remixup.MixupLabels`,
            :class:`~remixup.RemixLabels`, or any callable ``(y (B,), y_partner (B,), lam_x (B,)) -> lam_y (B,)``.
            ``None`` with no ``class_counts`` is plain Mixup/CutMix (timm's targets).
        generator: what the draws come from. In the main process the draws of consecutive calls come from
            ``generator`` in order (``None``: torch's default generator), so the same generator state gives the
            same batches; under DDP give each rank its own seed (e.g. ``seed + rank``). In a DataLoader worker the
            batches of that worker draw from a private generator seeded by (``generator.initial_seed()``, the
            worker's seed from ``get_worker_info()``, the worker id, the DDP rank): distinct per worker, batch,
            epoch and rank, and the same again when the run's seeds are (see :func:`remixup.mixing.batch_generator`).

    Labels ``y`` may be (B,) class indices, or (B, C) one-hot or soft rows (e.g. from an earlier transform). For
    (B, C) rows the Remix rule looks up the count of each row's largest entry (its argmax, ties to the lower class)
    and the rows themselves are mixed. Any batch size B ≥ 1 works: a batch of 1 is returned unmixed with its own
    (smoothed) label as the target; with odd B in ``"pair"`` mode the middle sample is left unmixed.

    The inputs are never modified (timm mixes in place; this returns a new tensor). ``last`` holds the
    :class:`~remixup.MixRecord` of the latest call made *in this process*; inside a DataLoader worker, return the
    record from the ``collate_fn`` (``mixer.mix(x, y)`` gives it) to see it in the training loop.

    ``mixup_enabled`` is timm's switch, kept so that a training loop written for timm (which sets it to ``False``
    at ``--mixup-off-epoch``) runs unchanged: while ``False`` every batch passes through unmixed.

    Example:
        >>> mixer = RemixMixup(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1, class_counts=counts)
        >>> x_mixed, target = mixer(x, y)              # (B, C, H, W), (B, C) float32
        >>> loss = soft_cross_entropy(model(x_mixed), target)
    """

    def __init__(
        self,
        mixup_alpha: float = 1.0,
        *,
        cutmix_alpha: float = 0.0,
        cutmix_minmax: Sequence[float] | None = None,
        prob: float = 1.0,
        switch_prob: float = 0.5,
        mode: str = "batch",
        correct_lam: bool = True,
        label_smoothing: float = 0.1,
        num_classes: int | None = None,
        class_counts: Any = None,
        kappa: float | None = None,
        tau: float | None = None,
        labels: LabelRule | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        owner = type(self).__name__
        check_number(mixup_alpha, "mixup_alpha", owner=owner, low=0.0)
        check_number(cutmix_alpha, "cutmix_alpha", owner=owner, low=0.0)
        if cutmix_minmax is not None:
            if isinstance(cutmix_minmax, (str, bytes)) or len(cutmix_minmax) != 2:
                raise InvalidParameterError(f"`cutmix_minmax` of `{owner}` must be a pair (min, max); got {cutmix_minmax!r}")
            lo = check_number(cutmix_minmax[0], "cutmix_minmax[0]", owner=owner, low=0.0, high=1.0, low_open=True, high_open=True)
            check_number(cutmix_minmax[1], "cutmix_minmax[1]", owner=owner, low=lo, high=1.0, low_open=True)
        if mixup_alpha == 0 and cutmix_alpha == 0 and cutmix_minmax is None:
            raise InvalidParameterError(
                f"`{owner}` needs `mixup_alpha` > 0, `cutmix_alpha` > 0 or `cutmix_minmax`; got none of them"
            )
        check_number(prob, "prob", owner=owner, low=0.0, high=1.0)
        check_number(switch_prob, "switch_prob", owner=owner, low=0.0, high=1.0)
        check_choice(mode, "mode", MODES, owner=owner)
        if not isinstance(correct_lam, bool):
            raise InvalidTypeError(f"`correct_lam` of `{owner}` must be a bool; got {correct_lam!r}")
        check_number(label_smoothing, "label_smoothing", owner=owner, low=0.0, high=1.0, high_open=True)
        if labels is not None:
            given = [name for name, v in (("class_counts", class_counts), ("kappa", kappa), ("tau", tau)) if v is not None]
            if given:
                raise InvalidParameterError(
                    f"`labels` of `{owner}` replaces {', '.join(f'`{n}`' for n in given)}: give one or the other"
                )
            if not callable(labels):
                raise InvalidTypeError(
                    f"`labels` of `{owner}` must be a label policy (y, y_partner, lam_x) -> lam_y; got {type(labels).__name__}"
                )
        elif class_counts is None and (kappa is not None or tau is not None):
            raise InvalidParameterError(
                f"`kappa` and `tau` of `{owner}` need `class_counts` (Remix's rule compares class counts)"
            )
        inferred = self._classes_of(class_counts, labels, owner)
        if num_classes is None:
            if inferred is None:
                raise InvalidParameterError(
                    f"`num_classes` of `{owner}` is needed when neither `class_counts` nor `labels` gives it"
                )
        else:
            check_number(num_classes, "num_classes", owner=owner, low=2, integer=True)
            if inferred is not None and inferred != num_classes:
                raise InvalidParameterError(
                    f"`num_classes` of `{owner}` is {num_classes} but the class counts have {inferred} classes"
                )
        if generator is not None and not (isinstance(generator, torch.Generator) and generator.device.type == "cpu"):
            raise InvalidTypeError(f"`generator` of `{owner}` must be a CPU torch.Generator or None; got {generator!r}")
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.cutmix_minmax = cutmix_minmax
        self.prob = prob
        self.switch_prob = switch_prob
        self.mode = mode
        self.correct_lam = correct_lam
        self.label_smoothing = label_smoothing
        self.num_classes: int = int(num_classes if num_classes is not None else inferred)  # type: ignore[arg-type]
        self.class_counts = class_counts
        self.kappa = kappa
        self.tau = tau
        self.labels: LabelRule = labels if labels is not None else self._default_policy(class_counts, kappa, tau)
        self.generator = generator
        self.mixup_enabled = True
        self.last: MixRecord | None = None

    @staticmethod
    def _classes_of(class_counts: Any, labels: Any, owner: str) -> int | None:
        if class_counts is not None:
            return int(check_class_counts(class_counts, owner=owner).numel())
        n = getattr(labels, "num_classes", None)
        return int(n) if isinstance(n, int) else None

    @staticmethod
    def _default_policy(class_counts: Any, kappa: float | None, tau: float | None) -> LabelRule:
        if class_counts is None:
            return MixupLabels()
        return RemixLabels(class_counts, kappa=3.0 if kappa is None else kappa, tau=0.5 if tau is None else tau)

    # ------------------------------------------------------------------------------------------------------------
    # drawing
    # ------------------------------------------------------------------------------------------------------------
    @property
    def _cutmix_on(self) -> bool:
        return self.cutmix_alpha > 0 or self.cutmix_minmax is not None

    def _units(self, batch_size: int) -> int:
        return {"batch": 1, "pair": batch_size // 2, "elem": batch_size}[self.mode]

    def sample(self, batch_size: int, height: int = 0, width: int = 0) -> dict[str, torch.Tensor]:
        """Draw one batch's parameters, per unit (1, B // 2 or B of them, by ``mode``), on the CPU.

        ``height``/``width`` size the CutMix boxes (needed only when CutMix is active). Returns a dict of (n,)
        tensors: ``mixed`` (bool), ``cutmix`` (bool), ``lam`` (float64, the image share of sample i, already
        box-corrected where the options say so) and the box ``y0``, ``y1``, ``x0``, ``x1`` (int64; empty boxes for
        Mixup units). Every array is drawn whatever the outcome, so the number of draws depends only on the
        options and the batch size.
        """
        n = self._units(batch_size)
        g = self.draw_generator()
        mixed = torch.rand(n, generator=g, dtype=torch.float64) < self.prob
        if self.mixup_alpha > 0 and self._cutmix_on:
            cutmix = torch.rand(n, generator=g, dtype=torch.float64) < self.switch_prob
        else:
            cutmix = torch.full((n,), self._cutmix_on)
        lam = torch.ones(n, dtype=torch.float64)
        if self.mixup_alpha > 0:
            lam = sample_beta(self.mixup_alpha, n, generator=g).double()
        y0 = y1 = x0 = x1 = torch.zeros(n, dtype=torch.int64)
        if self._cutmix_on:
            lam_cut, (y0, y1, x0, x1) = self._boxes(n, height, width, g)
            lam = torch.where(cutmix, lam_cut, lam)
            empty = torch.zeros(n, dtype=torch.int64)
            y0, y1, x0, x1 = (torch.where(cutmix, t, empty) for t in (y0, y1, x0, x1))
        lam = torch.where(mixed, lam, torch.ones_like(lam))
        return {"mixed": mixed, "cutmix": cutmix & mixed, "lam": lam, "y0": y0, "y1": y1, "x0": x0, "x1": x1}

    def _boxes(
        self, n: int, height: int, width: int, g: torch.Generator | None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """CutMix boxes as timm draws them, and the λ that goes with each (box-corrected as the options say)."""
        if self.cutmix_minmax is not None:
            lo, hi = self.cutmix_minmax
            sides = []
            for size in (height, width):
                a, b = int(size * lo), int(size * hi)
                if a >= b:
                    raise InvalidParameterError(
                        f"`cutmix_minmax` of `RemixMixup` gives no box side for an image side of {size}: "
                        f"[{a}, {b}) is empty; widen the range"
                    )
                sides.append(a + (torch.rand(n, generator=g, dtype=torch.float64) * (b - a)).long())
            cut_h, cut_w = sides
            y0 = (torch.rand(n, generator=g, dtype=torch.float64) * (height - cut_h)).long()
            x0 = (torch.rand(n, generator=g, dtype=torch.float64) * (width - cut_w)).long()
            y1, x1 = y0 + cut_h, x0 + cut_w
            lam = 1.0 - ((y1 - y0) * (x1 - x0)).double() / (height * width)
            return lam, (y0, y1, x0, x1)
        drawn = sample_beta(self.cutmix_alpha, n, generator=g).double()
        kept, (y0, y1, x0, x1) = cutmix_box(drawn, height, width, generator=g)
        return (kept if self.correct_lam else drawn), (y0, y1, x0, x1)

    # ------------------------------------------------------------------------------------------------------------
    # mixing
    # ------------------------------------------------------------------------------------------------------------
    def _check(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Validate a batch; return the (B,) int64 class each sample counts as for the label policy."""
        owner = type(self).__name__
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] < 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidParameterError(f"`x` of `{owner}` must be a tensor (B, ...) with B >= 1; got {shape}")
        if not isinstance(y, torch.Tensor):
            raise InvalidTypeError(
                f"`y` of `{owner}` must be a torch.Tensor of class indices (B,) or soft labels (B, C); got {type(y).__name__}"
            )
        check_tensor(x, "x", owner=owner)
        check_tensor(y, "y", owner=owner)
        b = x.shape[0]
        if y.ndim == 2 and y.dtype != torch.bool:  # one-hot (any dtype, e.g. F.one_hot's int64) or soft rows
            if tuple(y.shape) != (b, self.num_classes):
                raise InvalidParameterError(
                    f"one-hot or soft labels `y` of `{owner}` must have shape ({b}, {self.num_classes}); got {tuple(y.shape)}"
                )
            return y.argmax(dim=1)
        check_labels(y, self.num_classes, owner=owner)
        if y.shape[0] != b:
            raise InvalidParameterError(f"`y` of `{owner}` must have shape ({b},) to match x; got {tuple(y.shape)}")
        return y.long()

    def _smoothed(self, y: torch.Tensor, device: torch.device) -> torch.Tensor:
        """(B, C) float32 rows s(y) = (1 − ε)·y + ε/C for one-hot indices or soft rows, as timm's ``one_hot``."""
        eps, c = self.label_smoothing, self.num_classes
        off = eps / c
        if y.ndim == 2:
            rows = y.to(device=device, dtype=torch.float32)
            return rows * (1.0 - eps) + off if eps > 0 else rows.clone()
        rows = torch.full((y.shape[0], c), off, dtype=torch.float32, device=device)
        return rows.scatter_(1, y.to(device).long().reshape(-1, 1), 1.0 - eps + off)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixRecord]:
        """Mix a batch: ``(x_mixed (B, ...), target (B, C) float32, record)``; ``last`` is left alone.

        Args:
            x: (B, ...) batch, B ≥ 1; (B, C, H, W) or (B, H, W) when CutMix is active. Floating point unless only
                CutMix is active (CutMix copies pixels, so uint8 images work).
            y: (B,) int class indices, or (B, C) one-hot or soft labels.
        """
        cls = self._check(x, y)
        b = x.shape[0]
        device = x.device
        smooth = self._smoothed(y, device)
        lam_x = torch.ones(b, dtype=torch.float32, device=device)
        perm = torch.arange(b - 1, -1, -1, device=cls.device)
        if b == 1 or not self.mixup_enabled:
            x_out = x.clone()
        else:
            x_out, lam_x = self._mix_input(x, perm.to(device))
        y_cls, y_partner = cls, cls[perm]
        lam_y = self.labels(y_cls, y_partner, lam_x.to(cls.device)).to(device=device, dtype=torch.float32)
        perm_d = perm.to(device)
        lam = lam_y.reshape(-1, 1)
        target = smooth * lam + smooth[perm_d] * (1.0 - lam)
        record = MixRecord(lam_x=lam_x, lam_y=lam_y, perm=perm_d, y=y_cls.to(device), y_partner=y_partner.to(device))
        return x_out, target, record

    def _mix_input(self, x: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = x.shape[0]
        if self._cutmix_on and x.ndim not in (3, 4):
            raise InvalidParameterError(
                f"`x` of `RemixMixup` must have shape (B, C, H, W) or (B, H, W) for CutMix; got {tuple(x.shape)}"
            )
        if self.mixup_alpha > 0 and not (x.is_floating_point() or x.is_complex()):
            raise InvalidTypeError(f"Mixup needs a floating-point `x`; got {x.dtype} (convert images to float first)")
        height, width = (x.shape[-2], x.shape[-1]) if x.ndim >= 3 else (0, 0)
        p = self.sample(b, height, width)
        # unit of each sample: the batch, its pair (i, B-1-i) or itself; the middle of an odd batch has no pair
        idx = torch.arange(b)
        unit = {"batch": torch.zeros(b, dtype=torch.int64), "pair": torch.minimum(idx, b - 1 - idx), "elem": idx}[self.mode]
        has_unit = unit < self._units(b)
        unit = unit.clamp(max=max(self._units(b) - 1, 0))
        lam = torch.where(has_unit, p["lam"][unit], 1.0)
        cut = has_unit & p["cutmix"][unit]
        out = x
        if self.mixup_alpha > 0:
            w = torch.where(cut, 1.0, lam).to(device=x.device, dtype=x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
            out = torch.lerp(x[perm], x, w)  # weight 1 returns x exactly: CutMix and unmixed samples keep their pixels
        if bool(cut.any()):
            box = {k: torch.where(cut, p[k][unit], 0).to(x.device) for k in ("y0", "y1", "x0", "x1")}
            mask = box_mask((box["y0"], box["y1"], box["x0"], box["x1"]), height, width)  # (B, H, W)
            out = torch.where(mask[:, None] if x.ndim == 4 else mask, x[perm], out)
        elif out is x:
            out = x.clone()
        return out, lam.to(device=x.device, dtype=torch.float32)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix a batch x (B, ...) with labels y (B,) or (B, C); return ``(x_mixed, target (B, C) float32)``."""
        x_out, target, self.last = self.mix(x, y)
        return x_out, target

    def mix_input(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, MixRecord | None]:
        """The :class:`~remixup.mixing.base.Mixing` call: :meth:`mix`."""
        return self.mix(x, y)

    def __repr__(self) -> str:
        opts = ", ".join(
            f"{k}={getattr(self, k)!r}"
            for k in (
                "mixup_alpha",
                "cutmix_alpha",
                "cutmix_minmax",
                "prob",
                "switch_prob",
                "mode",
                "correct_lam",
                "label_smoothing",
                "num_classes",
            )
        )
        return f"RemixMixup({opts}, labels={type(self.labels).__name__})"
