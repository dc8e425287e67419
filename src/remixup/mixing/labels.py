"""Label rules: how the label share λy of sample i follows from the pair's classes and its image share λx.

A label rule is any callable ``(y (B,), y_partner (B,), lam_x (B,)) -> lam_y (B,)``; the mixings turn λy into
targets with :func:`soft_targets`, ỹ = λy·e_{y_i} + (1 − λy)·e_{y_j}. The rules of remixup, by the name a method's
``labels`` field gives (:data:`LABEL_RULES`):

=========  ======================  ==========================================================================
name       class                   λy
=========  ======================  ==========================================================================
``plain``  :class:`MixupLabels`    λx (Mixup, CutMix, Manifold Mixup)
``remix``  :class:`RemixLabels`    Remix (Chou et al., "Remix: Rebalanced Mixup", arXiv:2007.03943):
                                   0 if n_i/n_j ≥ κ and λx < τ; 1 if n_i/n_j ≤ 1/κ and 1 − λx < τ; else λx
``mamix``  :class:`MAMixLabels`    MAMix's piecewise-linear weight of the partner's image share
=========  ======================  ==========================================================================

with n_i, n_j the training counts of the classes of x_i and x_j (κ = 3, τ = 0.5 in the paper).

**Non-finite values.** Parameters (κ, τ, class counts) are checked when a rule is built; tensors passed per batch
are not checked for NaN or infinity, since that would cost a device synchronisation every step: a NaN λx gives a
NaN λy, and a NaN count leaves its pairs ineligible (λy = λx).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from remixup._validation import check_class_counts, check_labels, check_number, check_shares
from remixup.errors import InvalidParameterError

__all__ = ["LABEL_RULES", "LabelRule", "MAMixLabels", "MixupLabels", "RemixLabels", "label_rule", "mamix_label_factor",
           "remix_label_factor", "soft_targets"]  # fmt: skip

LabelRule = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(y (B,), y_partner (B,), lam_x (B,)) -> lam_y (B,)``."""


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


def mamix_label_factor(lam_x: torch.Tensor, n_i: torch.Tensor, n_j: torch.Tensor, exponent: float = -0.25) -> torch.Tensor:
    """MAMix's label share of sample i, piecewise linear in the partner's image share s = 1 − λx.

    With k = n^f (f = ``exponent``) and the breakpoint b = k_i/(k_i + k_j), the label weight of i is
    1 − s/(2b) for s ≤ b and (1 − s)/(2(1 − b)) for s > b: 1 at s = 0, ½ at s = b, 0 at s = 1. The two pieces meet
    at s = b, where both give ½; the authors' code raises an error there, remixup returns ½ (the continuous value).

    Args:
        lam_x: (B,) share of sample i in the mixed input (remixup's λx; the authors' λ is s = 1 − λx).
        n_i, n_j: (B,) class counts of i and of its partner.
        exponent: f (−0.25 in the authors' configs); f < 0 keeps the label with the rarer class longer.

    Returns:
        (B,) float32 λy.
    """
    ni, nj = n_i.to(torch.float64), n_j.to(torch.float64)
    ki, kj = ni.pow(exponent), nj.pow(exponent)
    b = ki / (ki + kj)
    s = 1.0 - lam_x.to(device=ni.device, dtype=torch.float64)
    return torch.where(s <= b, 1.0 - 0.5 * s / b, 0.5 * (1.0 - s) / (1.0 - b)).float()


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


class MAMixLabels:
    """MAMix's label policy: λy from :func:`mamix_label_factor` with the classes' training counts.

    Args:
        class_counts: (C,) training samples per class, all positive.
        exponent: f of k = n^f (−0.25 by default, the authors' ``mamix_ratio``).
    """

    def __init__(self, class_counts: Any, *, exponent: float = -0.25) -> None:
        self._counts = check_class_counts(class_counts, owner=type(self).__name__)
        check_number(exponent, "exponent", owner=type(self).__name__)
        self.class_counts = class_counts
        self.exponent = exponent

    def __call__(self, y: torch.Tensor, y_partner: torch.Tensor, lam_x: torch.Tensor) -> torch.Tensor:
        """Return λy (B,) for labels y, y_partner (B,) and factors lam_x (B,)."""
        check_shares(lam_x, "lam_x", owner="MAMixLabels")
        if self._counts.device != y.device:
            self._counts = self._counts.to(y.device)
        return mamix_label_factor(lam_x, self._counts[y], self._counts[y_partner], self.exponent).to(lam_x.device)


LABEL_RULES: dict[str, type] = {"plain": MixupLabels, "remix": RemixLabels, "mamix": MAMixLabels}
"""The label rules by the name a method's ``labels`` field uses."""


def label_rule(name: str, class_counts: Any, **params: Any) -> LabelRule:
    """The rule ``name`` of :data:`LABEL_RULES`, given the class counts and those of ``params`` (e.g. ``kappa``,
    ``tau``, ``exponent``) that its constructor takes; the others are ignored, so one call builds any rule."""
    if name not in LABEL_RULES:
        raise InvalidParameterError(f"label rule must be one of {', '.join(LABEL_RULES)}; got {name!r}")
    rule = LABEL_RULES[name]
    accepted = inspect.signature(rule).parameters
    return rule(**{k: v for k, v in {"class_counts": class_counts, **params}.items() if k in accepted})
