"""Classification losses with one signature, for hard and soft (mixed) targets and optional class weights.

Every loss here is an :class:`torch.nn.Module` called as ``loss(logits, target)``:

- ``logits`` (B, C), any floating dtype (bf16/fp16 logits are computed in float32);
- ``target`` either (B,) int64 class indices or (B, C) soft targets whose rows sum to 1 (for mixed samples
  ``ỹ_n = λy_n·e_i + (1−λy_n)·e_j``).

Each loss defines a *per-class term* ``ℓ_nc``: the loss sample ``n`` would get if its label were class ``c``
(for cross-entropy ``ℓ_nc = −log softmax(z_n)_c``). With per-class weights ``w`` (C,) (all ones when ``weight`` is
None) the reductions are::

    none:       r_n  = Σ_c w_c ỹ_nc ℓ_nc                          shape (B,)
    sum:        Σ_n r_n
    mean:       Σ_n r_n / Σ_n Σ_c w_c ỹ_nc                        (the default)
    batchmean:  Σ_n r_n / B

For one-hot targets this is exactly PyTorch's weighted cross-entropy (``F.cross_entropy(z, y, weight=w)``:
``mean`` divides by ``Σ_n w_{y_n}``), and for mixed targets it is linear in ``ỹ`` per sample, so the Remix factor
λy, which differs from pair to pair, is applied to each sample's own loss before anything is averaged. Note that
``F.cross_entropy`` with probability targets *and* weights divides by ``B`` instead; we do not, because with
deferred re-weighting (DRW) a plain mean shrinks the loss by the batch-average class weight (about 0.17 on
CIFAR-10 LT-100) and with it the effective learning rate of the deferred phase. That plain mean is available as
``reduction="batchmean"`` (the name of :class:`torch.nn.KLDivLoss`'s sum-over-batch-size), to compare with code that
uses it; without class weights ``batchmean`` equals ``mean``.

**Non-finite values.** Class weights are checked when given (finite, non-negative, not all zero). Logits are never
checked for NaN or infinity: that would cost a device synchronisation per batch on a GPU, so a non-finite logit
gives a NaN loss (the training engine checks the loss once per epoch and stops a diverged run). Soft targets are
checked (finite, non-negative) only when they are CPU tensors, where the check costs no synchronisation. A ``mean``
over a batch whose targets all have weight 0 is 0/0 = NaN, as in ``F.cross_entropy``.

Class weights can be replaced between epochs (deferred re-weighting) with :meth:`set_weight` or by assigning a
tensor (or None) to ``loss.weight``.

Losses: ``"ce"`` cross-entropy, ``"focal"`` focal loss (Lin et al. 2017), ``"ldam"`` LDAM (Cao et al. 2019,
arXiv 1906.07413), ``"cb"`` class-balanced loss (Cui et al. 2019, arXiv 1901.05555), ``"la"`` logit-adjusted loss
(Menon et al. 2021, arXiv 2007.07314), ``"bs"`` balanced softmax (Ren et al. 2020, arXiv 2007.10740).
Build one by name with :func:`build_loss`.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from remixup._validation import check_choice, check_class_counts, check_number
from remixup.balancing import class_log_prior, class_weights
from remixup.errors import InvalidParameterError, InvalidTypeError

__all__ = [
    "LOSSES",
    "BalancedSoftmaxLoss",
    "ClassBalancedLoss",
    "FocalLoss",
    "LDAMLoss",
    "LogitAdjustedLoss",
    "SoftCrossEntropy",
    "WeightedLoss",
    "build_loss",
    "ldam_margins",
    "soft_cross_entropy",
]

REDUCTIONS = ("mean", "batchmean", "sum", "none")


# --------------------------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------------------------
def _check_weight(weight: Any, *, owner: str, num_classes: int | None = None) -> torch.Tensor | None:
    """Return ``weight`` as a floating tensor (C,) of finite non-negative numbers (float32 unless given as a
    floating tensor), or None."""
    if weight is None:
        return None
    where = f" of `{owner}`"
    try:
        if isinstance(weight, torch.Tensor):
            w = weight.detach() if weight.dtype.is_floating_point else weight.detach().to(torch.float32)
        else:
            w = torch.as_tensor(np.asarray(weight, dtype=np.float32))
    except (TypeError, ValueError) as exc:
        raise InvalidTypeError(f"`weight`{where} must be a sequence of non-negative numbers or None; got {weight!r}") from exc
    if w.ndim != 1 or w.numel() == 0:
        raise InvalidParameterError(
            f"`weight`{where} must be one-dimensional with one entry per class; got shape {tuple(w.shape)}"
        )
    if num_classes is not None and w.numel() != num_classes:
        raise InvalidParameterError(f"`weight`{where} must have one entry per class ({num_classes}); got {w.numel()}")
    if w.device.type == "cpu" and bool((~torch.isfinite(w) | (w < 0)).any()):
        raise InvalidParameterError(f"`weight`{where} must hold finite non-negative numbers; got {w.tolist()}")
    if w.device.type == "cpu" and not bool((w > 0).any()):
        raise InvalidParameterError(f"`weight`{where} must have at least one positive entry (all zero weighs every loss 0); "
                                    f"got {w.tolist()}")  # fmt: skip
    return w


def _check_target(logits: torch.Tensor, target: torch.Tensor, owner: str) -> None:
    """Check shapes and dtypes of ``logits`` (B, C) and ``target`` (B,) or (B, C) without a device sync."""
    where = f" of `{owner}`"
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or not logits.dtype.is_floating_point:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InvalidParameterError(f"`logits`{where} must be a floating tensor of shape (B, C); got {shape}")
    if not isinstance(target, torch.Tensor):
        raise InvalidTypeError(f"`target`{where} must be a torch.Tensor; got {type(target).__name__}")
    b, c = logits.shape
    if target.ndim == 1:
        if target.dtype.is_floating_point or target.dtype == torch.bool or target.shape[0] != b:
            raise InvalidParameterError(
                f"`target`{where} must be int class indices of shape ({b},) or soft targets of shape ({b}, {c}); "
                f"got {target.dtype} of shape {tuple(target.shape)}"
            )
        # A range check costs a device sync on a GPU: do it only where it is free (CPU); on CUDA gather asserts.
        if target.device.type == "cpu" and target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
            raise InvalidParameterError(
                f"`target`{where} must hold class indices in [0, {c - 1}]; "
                f"got values in [{int(target.min())}, {int(target.max())}]"
            )
    elif target.ndim == 2:
        if not target.dtype.is_floating_point or tuple(target.shape) != (b, c):
            raise InvalidParameterError(
                f"`target`{where} as soft targets must be a floating tensor of shape ({b}, {c}); "
                f"got {target.dtype} of shape {tuple(target.shape)}"
            )
        ok = (target >= 0) & torch.isfinite(target) if target.device.type == "cpu" else None  # free on the CPU only
        if ok is not None and not bool(ok.all()):
            raise InvalidParameterError(f"`target`{where} as soft targets must hold finite non-negative shares; got "
                                        f"{target[~ok][0].item()}")  # fmt: skip
    else:
        raise InvalidParameterError(f"`target`{where} must have shape ({b},) or ({b}, {c}); got {tuple(target.shape)}")


def _reduce(per_class: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None, reduction: str) -> torch.Tensor:
    """Reduce a per-class loss matrix ``ℓ`` (B, C) against hard (B,) or soft (B, C) targets (module docstring)."""
    if target.ndim == 1:
        idx = target.long().unsqueeze(1)
        loss = per_class.gather(1, idx).squeeze(1)  # ℓ_{n, y_n}
        if weight is None:
            if reduction == "none":
                return loss
            return loss.sum() if reduction == "sum" else loss.mean()
        w = weight.to(device=per_class.device, dtype=per_class.dtype)[target.long()]
        loss = w * loss
        denominator = w.sum()
    else:
        t = target.to(per_class.dtype)
        if weight is not None:
            t = t * weight.to(device=per_class.device, dtype=per_class.dtype)
        loss = (t * per_class).sum(dim=1)  # r_n = Σ_c w_c ỹ_nc ℓ_nc, before any batch average
        denominator = t.sum()
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean() if reduction == "batchmean" else loss.sum() / denominator


def _as_float(logits: torch.Tensor) -> torch.Tensor:
    # Low-precision logits (bf16 autocast) lose too much in log-softmax; F.cross_entropy upcasts as well.
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _nll_matrix(logits: torch.Tensor) -> torch.Tensor:
    """``ℓ_nc = −log softmax(z_n)_c`` (B, C)."""
    return -F.log_softmax(logits, dim=1)


def soft_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy for hard or soft targets with optional class weights.

    ``ℓ_nc = −log softmax(z_n)_c``; ``none`` returns ``r_n = Σ_c w_c ỹ_nc ℓ_nc`` (B,), ``sum`` returns ``Σ_n r_n``
    and ``mean`` returns ``Σ_n r_n / Σ_n Σ_c w_c ỹ_nc``, so that for one-hot targets the result equals
    ``F.cross_entropy(logits, y, weight=weight, reduction=reduction)``; ``batchmean`` returns ``Σ_n r_n / B``.

    Args:
        logits: (B, C) unnormalised scores.
        target: (B,) int class indices or (B, C) soft targets (rows sum to 1).
        weight: optional (C,) non-negative class weights.
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.

    Returns:
        A scalar, or (B,) for ``reduction="none"``; float32 for low-precision logits.

    Logits are not checked for NaN or infinity (a device synchronisation per batch): a non-finite logit gives a NaN
    loss. Soft targets are checked (finite, non-negative) only for CPU tensors, where it is free.

    Raises:
        ValueError: for a bad ``reduction``, bad shapes or labels out of range (CPU).
    """
    check_choice(reduction, "reduction", REDUCTIONS, owner="soft_cross_entropy")
    _check_target(logits, target, "soft_cross_entropy")
    w = _check_weight(weight, owner="soft_cross_entropy", num_classes=logits.shape[1])
    return _reduce(_nll_matrix(_as_float(logits)), target, w, reduction)


def ldam_margins(class_counts: Any, max_margin: float = 0.5) -> torch.Tensor:
    """LDAM margins ``m_c ∝ n_c^(−1/4)``, scaled so that the largest (rarest class) equals ``max_margin``.

    Returns:
        (C,) float32.
    """
    counts = check_class_counts(class_counts, owner="ldam_margins")
    max_margin = check_number(max_margin, "max_margin", owner="ldam_margins", low=0.0, low_open=True)
    m = counts**-0.25
    return (m * (max_margin / m.max())).to(torch.float32)


# --------------------------------------------------------------------------------------------------------------
# The losses
# --------------------------------------------------------------------------------------------------------------
class WeightedLoss(nn.Module):
    """Base class: stores ``weight`` (a buffer or None) and ``reduction``; subclasses define ``per_class_loss``.

    Subclasses implement ``per_class_loss(logits) -> ℓ`` (B, C), the loss of each sample for each candidate
    class; :meth:`forward` reduces it against the targets as described in the module docstring.

    Buffers are non-persistent: a loss carries no state a checkpoint needs (counts and weights are rebuilt from the
    configuration and the epoch), and a weight switched on mid-run must not break ``load_state_dict``.
    """

    weight: torch.Tensor | None

    def __init__(self, *, weight: Any = None, reduction: str = "mean", num_classes: int | None = None) -> None:
        super().__init__()
        owner = type(self).__name__
        self.reduction = check_choice(reduction, "reduction", REDUCTIONS, owner=owner)
        self.register_buffer("weight", _check_weight(weight, owner=owner, num_classes=num_classes), persistent=False)

    def set_weight(self, weight: Any) -> None:
        """Replace the class weights (C,) (or remove them with None), e.g. when deferred re-weighting starts.

        The new weights are moved to the device of the module's other buffers; a module without buffers keeps the
        device the weights were given on (pass them on the training device).
        """
        w = _check_weight(weight, owner=type(self).__name__, num_classes=self._num_classes())
        device = self._device()
        if w is not None and device is not None:
            w = w.to(device)
        self.weight = w

    @property
    def logit_scale(self) -> float:
        """The factor the loss multiplies the model's logits by before its softmax (1; LDAM's ``s``).

        A post-hoc logit adjustment ``s·z − τ·log π`` must act on the logits the softmax saw during training:
        on the model's own outputs ``z`` that is a shift of ``(τ / s)·log π``.
        """
        return 1.0

    @property
    def effective_weight(self) -> torch.Tensor | None:
        """The class weights ``w`` (C,) the reduction uses (``weight``; subclasses may combine it), or None."""
        return self.weight

    def _num_classes(self) -> int | None:
        return None

    def _device(self) -> torch.device | None:
        # Without other buffers (plain CE, no weight yet) the new weight keeps the device it was given on.
        for b in self.buffers():
            return b.device
        return None

    def per_class_loss(self, logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``ℓ`` (B, C): the loss of sample n if its label were class c."""
        raise NotImplementedError

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` (B, C) against ``target`` (B,) indices or (B, C) soft targets.

        Returns:
            A scalar for ``"mean"``/``"sum"``, (B,) for ``"none"``.
        """
        _check_target(logits, target, type(self).__name__)
        if self.weight is not None and self.weight.numel() != logits.shape[1]:
            raise InvalidParameterError(
                f"`weight` of `{type(self).__name__}` has {self.weight.numel()} entries but the logits have "
                f"{logits.shape[1]} classes"
            )
        return _reduce(self.per_class_loss(_as_float(logits)), target, self.effective_weight, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, weighted={self.weight is not None}"


class SoftCrossEntropy(WeightedLoss):
    """Cross-entropy for hard and soft targets: ``ℓ_nc = −log softmax(z_n)_c``.

    With one-hot targets equals ``F.cross_entropy(logits, y, weight=weight, reduction=reduction)``.

    Args:
        weight: optional (C,) class weights (replaceable, see :meth:`set_weight`).
        reduction: ``"mean"`` (weighted mean), ``"batchmean"`` (divided by the batch size), ``"sum"`` or
            ``"none"`` (per-sample, (B,)).
    """

    def __init__(self, weight: Any = None, *, reduction: str = "mean") -> None:
        super().__init__(weight=weight, reduction=reduction)

    def per_class_loss(self, logits: torch.Tensor) -> torch.Tensor:
        return _nll_matrix(logits)


def _focal_matrix(logits: torch.Tensor, gamma: float) -> torch.Tensor:
    """``(1 − p_nc)^γ · (−log p_nc)`` (B, C) with ``p = softmax(z)``."""
    logp = F.log_softmax(logits, dim=1)
    if gamma == 0.0:
        return -logp
    # 1 − p from log p with expm1 (accurate near p = 1); the clamp keeps the gradient of x^γ finite (γ < 1) at 0.
    one_minus_p = (-torch.expm1(logp)).clamp_min(torch.finfo(logp.dtype).tiny)
    return one_minus_p.pow(gamma) * -logp


class FocalLoss(WeightedLoss):
    """Focal loss (Lin et al. 2017) in the form LDAM-DRW's code uses: ``(1 − p)^γ · CE``, γ = 1 by default.

    Per-class term ``ℓ_nc = (1 − p_nc)^γ · (−log p_nc)``, ``p_n = softmax(z_n)``. For soft targets the loss of a
    sample is ``Σ_c w_c ỹ_nc ℓ_nc``: the focal term of each class the target puts mass on, weighted by that mass,
    so a Remix/Mixup target scores each of its two classes by its own confidence. ``γ = 0`` is cross-entropy.

    Unlike LDAM-DRW's code, which puts the class weight inside the CE before computing ``p = exp(−CE)`` and then
    takes a plain batch mean, class weights here multiply the focal term and ``"mean"`` divides by
    ``Σ_n Σ_c w_c ỹ_nc`` like every loss of this module.

    Args:
        gamma: focusing parameter, ``γ ≥ 0``.
        weight: optional (C,) class weights (RW-Focal).
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(self, gamma: float = 1.0, *, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(weight=weight, reduction=reduction)
        self.gamma = check_number(gamma, "gamma", owner="FocalLoss", low=0.0)

    def per_class_loss(self, logits: torch.Tensor) -> torch.Tensor:
        return _focal_matrix(logits, self.gamma)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, " + super().extra_repr()


class _CountLoss(WeightedLoss):
    """A loss parametrised by the training class counts (C,)."""

    class_counts: torch.Tensor

    def __init__(self, class_counts: Any, *, weight: Any = None, reduction: str = "mean") -> None:
        counts = check_class_counts(class_counts, owner=type(self).__name__)
        super().__init__(weight=weight, reduction=reduction, num_classes=counts.numel())
        self.register_buffer("class_counts", counts.to(torch.float32), persistent=False)

    def _num_classes(self) -> int | None:
        return self.class_counts.numel()

    def _check_classes(self, logits: torch.Tensor) -> None:
        if logits.shape[1] != self.class_counts.numel():
            raise InvalidParameterError(
                f"`class_counts` of `{type(self).__name__}` has {self.class_counts.numel()} entries but the logits "
                f"have {logits.shape[1]} classes"
            )


class LDAMLoss(_CountLoss):
    """Label-distribution-aware margin loss (Cao et al. 2019, arXiv 1906.07413).

    Margins ``m_c = max_margin · (n_c / n_min)^(−1/4)`` (the rarest class gets ``max_margin``); the logits of the
    true class are lowered by its margin and everything is scaled by ``s``:
    ``ℓ_nc = CE(s·(z_n − m_c e_c), c)``. For soft targets the sample loss is ``Σ_c w_c ỹ_nc ℓ_nc``. Use it with a
    cosine classifier (``build_model(..., classifier="norm")``) whose logits lie in [−1, 1].

    Each ``ℓ_nc`` needs the log-sum-exp of ``s·z_n`` with only entry c lowered,
    ``log(S_n − e^{a_c} + e^{a_c − s m_c})`` with ``a = s·z_n`` and ``S_n = Σ_k e^{a_k}``; all C of them are
    computed in O(B·C): with ``M = max_k a_k``, ``R_c = Σ_{k≠c} e^{a_k − M}`` is ``S − e^{a_c − M}`` for every
    column but the arg-max (no cancellation there since ``R_c ≥ 1``) and an explicit masked sum for the arg-max.

    Args:
        class_counts: (C,) training samples per class, all positive.
        max_margin: the largest margin, ``> 0`` (0.5 in the paper).
        s: logit scale, ``> 0`` (30 in the paper).
        weight: optional (C,) class weights (LDAM-DRW switches them on at the deferral epoch).
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
    """

    margins: torch.Tensor

    def __init__(
        self,
        class_counts: Any,
        *,
        max_margin: float = 0.5,
        s: float = 30.0,
        weight: Any = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts, weight=weight, reduction=reduction)
        self.max_margin = check_number(max_margin, "max_margin", owner="LDAMLoss", low=0.0, low_open=True)
        self.s = check_number(s, "s", owner="LDAMLoss", low=0.0, low_open=True)
        self.register_buffer("margins", ldam_margins(self.class_counts, self.max_margin), persistent=False)

    def per_class_loss(self, logits: torch.Tensor) -> torch.Tensor:
        self._check_classes(logits)
        a = self.s * logits
        sm = self.s * self.margins.to(a)  # (C,)
        top = a.detach().amax(dim=1, keepdim=True)
        e = torch.exp(a - top)  # (B, C), max entry 1
        total = e.sum(dim=1, keepdim=True)
        am = a.detach().argmax(dim=1, keepdim=True)
        is_max = torch.zeros_like(e, dtype=torch.bool).scatter_(1, am, True)
        others_of_max = e.masked_fill(is_max, 0.0).sum(dim=1, keepdim=True)
        rest = torch.where(is_max, others_of_max, total - e)  # R_nc = Σ_{k≠c} e^{a_k − M}
        # log(R_c + e^{a_c − s m_c − M}); the clamp only matters when the other classes underflow (C = 1 or
        # extreme logits) and keeps log's gradient finite there.
        lowered = a - sm - top
        lse = torch.logaddexp(torch.log(rest.clamp_min(torch.finfo(a.dtype).tiny)), lowered)
        return lse - lowered

    @property
    def logit_scale(self) -> float:
        """``s``: the cosine logits in [−1, 1] are scaled by it before the softmax."""
        return float(self.s)

    def extra_repr(self) -> str:
        return f"max_margin={self.max_margin}, s={self.s}, " + super().extra_repr()


class ClassBalancedLoss(_CountLoss):
    """Class-balanced loss (Cui et al. 2019, arXiv 1901.05555): the base loss weighted by ``1/E(n_c)``.

    ``cb_weight_c ∝ (1 − β)/(1 − β^{n_c})``, normalised so that ``Σ_c cb_weight_c = C``, multiplies the base loss's
    per-class term (softmax cross-entropy by default, or focal). An extra ``weight`` (e.g. from a deferred
    schedule), when given, multiplies ``cb_weight`` elementwise; the ``"mean"`` normalisation uses the product.

    Args:
        class_counts: (C,) training samples per class.
        beta: ``0 ≤ β < 1`` (0.9999 in the paper).
        base: ``"ce"`` or ``"focal"``.
        gamma: focal parameter for ``base="focal"``, ``≥ 0``.
        weight: optional extra (C,) class weights.
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
    """

    cb_weight: torch.Tensor

    def __init__(
        self,
        class_counts: Any,
        *,
        beta: float = 0.9999,
        base: str = "ce",
        gamma: float = 1.0,
        weight: Any = None,
        reduction: str = "mean",
    ) -> None:
        super().__init__(class_counts, weight=weight, reduction=reduction)
        self.beta = check_number(beta, "beta", owner="ClassBalancedLoss", low=0.0, high=1.0, high_open=True)
        self.base = check_choice(base, "base", ("ce", "focal"), owner="ClassBalancedLoss")
        self.gamma = check_number(gamma, "gamma", owner="ClassBalancedLoss", low=0.0)
        # w_c ∝ 1/E(n_c) summing to C: the same weights as re-weighting (RW), from remixup.balancing.
        cb_weight = class_weights(self.class_counts.double(), kind="effective", beta=self.beta)
        self.register_buffer("cb_weight", cb_weight.to(torch.float32), persistent=False)

    def per_class_loss(self, logits: torch.Tensor) -> torch.Tensor:
        self._check_classes(logits)
        return _focal_matrix(logits, self.gamma) if self.base == "focal" else _nll_matrix(logits)

    @property
    def effective_weight(self) -> torch.Tensor:
        """``cb_weight``, times ``weight`` when one is set (C,)."""
        return self.cb_weight if self.weight is None else self.cb_weight * self.weight.to(self.cb_weight)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, base={self.base!r}, " + super().extra_repr()


class LogitAdjustedLoss(_CountLoss):
    """Logit-adjusted loss (Menon et al. 2021): cross-entropy on ``z + τ_LA·log π`` with prior ``π_c = n_c/Σn``.

    ``ℓ_nc = −log softmax(z_n + τ_LA·log π)_c``. Only training uses the adjustment; predict with ``argmax z``.
    Uniform counts give plain cross-entropy.

    Args:
        class_counts: (C,) training samples per class.
        tau_la: ``τ_LA ≥ 0`` (1 by default; 0 is cross-entropy).
        weight: optional (C,) class weights.
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
    """

    log_prior: torch.Tensor

    def __init__(self, class_counts: Any, *, tau_la: float = 1.0, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(class_counts, weight=weight, reduction=reduction)
        self.tau_la = check_number(tau_la, "tau_la", owner="LogitAdjustedLoss", low=0.0)
        self.register_buffer("log_prior", class_log_prior(self.class_counts), persistent=False)

    def per_class_loss(self, logits: torch.Tensor) -> torch.Tensor:
        self._check_classes(logits)
        return _nll_matrix(logits + self.tau_la * self.log_prior.to(logits))

    def extra_repr(self) -> str:
        return f"tau_la={self.tau_la}, " + super().extra_repr()


class BalancedSoftmaxLoss(_CountLoss):
    """Balanced softmax (Ren et al. 2020): cross-entropy on ``z + log n_c``; predict with ``argmax z``.

    ``ℓ_nc = −log softmax(z_n + log n)_c`` (the same as the logit-adjusted loss with ``τ_LA = 1``, since a
    constant shift of all logits does not change the softmax). Uniform counts give plain cross-entropy.

    Args:
        class_counts: (C,) training samples per class.
        weight: optional (C,) class weights.
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
    """

    log_counts: torch.Tensor

    def __init__(self, class_counts: Any, *, weight: Any = None, reduction: str = "mean") -> None:
        super().__init__(class_counts, weight=weight, reduction=reduction)
        self.register_buffer("log_counts", self.class_counts.log(), persistent=False)

    def per_class_loss(self, logits: torch.Tensor) -> torch.Tensor:
        self._check_classes(logits)
        return _nll_matrix(logits + self.log_counts.to(logits))


# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------
LOSSES: dict[str, type[WeightedLoss]] = {
    "ce": SoftCrossEntropy,
    "focal": FocalLoss,
    "ldam": LDAMLoss,
    "cb": ClassBalancedLoss,
    "la": LogitAdjustedLoss,
    "bs": BalancedSoftmaxLoss,
}
"""Loss name -> class. Classes whose first parameter is ``class_counts`` need the training counts."""

NEEDS_COUNTS = frozenset(name for name, cls in LOSSES.items() if issubclass(cls, _CountLoss))


def build_loss(
    name: str,
    *,
    class_counts: Any = None,
    weight: Any = None,
    reduction: str = "mean",
    **params: Any,
) -> WeightedLoss:
    """Build a loss by name.

    Args:
        name: one of ``LOSSES``: ``"ce"``, ``"focal"`` (gamma), ``"ldam"`` (max_margin, s), ``"cb"`` (beta, base,
            gamma), ``"la"`` (tau_la), ``"bs"``.
        class_counts: (C,) training samples per class; required by ``ldam``, ``cb``, ``la`` and ``bs``, ignored
            by the others.
        weight: optional (C,) class weights.
        reduction: ``"mean"``, ``"batchmean"``, ``"sum"`` or ``"none"``.
        **params: the loss's own parameters.

    Returns:
        The loss module.

    Raises:
        ValueError: unknown name (the message lists the valid ones), missing ``class_counts``, an unknown
            parameter, or a parameter out of range.
    """
    cls = LOSSES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidParameterError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "class_counts", "weight", "reduction")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        valid = ", ".join(accepted) if accepted else "none"
        raise InvalidParameterError(f"unknown parameter `{unknown[0]}` for loss {name!r}; valid parameters: {valid}")
    if name in NEEDS_COUNTS:
        if class_counts is None:
            raise InvalidParameterError(f"loss {name!r} needs `class_counts` (the number of training samples per class)")
        return cls(class_counts, weight=weight, reduction=reduction, **params)  # type: ignore[misc]
    return cls(weight=weight, reduction=reduction, **params)
