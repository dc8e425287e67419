"""Manifold Mixup (Verma et al., 2019) for any ``nn.Module``, with any label policy (Remix-MM).

For each batch one mixing point k is drawn uniformly from the eligible points; the hidden activations there are
mixed, g̃_k = λx·g_k(x_i) + (1 − λx)·g_k(x_j), and the forward pass continues from g̃_k. The input counts as a
point named ``"input"``. Points are module names as in ``model.named_modules()``; the module's output is replaced
through a forward hook that is removed before the call returns, also when the forward raises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from remixup._validation import check_batch, check_callable, check_generator, check_labels, check_number
from remixup.errors import InvalidParameterError, InvalidTypeError
from remixup.mixing.base import MixedBatch, Mixing, MixRecord
from remixup.mixing.labels import LabelRule, soft_targets
from remixup.mixing.transform import MixupMixer

__all__ = ["INPUT", "ManifoldMixup", "forward_mixing_at", "resolve_point"]

INPUT = "input"


class ManifoldMixup(Mixing):
    """Mix a model's hidden activations at one named point per batch.

    Args:
        model: the classifier, called as ``model(x)``. It is never modified: hooks live only during a call.
        points: eligible mixing points, each ``"input"`` or a module name from ``model.named_modules()``. For a
            model wrapped in ``DistributedDataParallel`` the inner names work too (``"layer1"`` finds
            ``"module.layer1"``). The module's output must be a tensor (B, ...).
        labels: the label policy, :class:`MixupLabels` (Manifold Mixup) or :class:`RemixLabels` (Remix-MM).
        num_classes: C, the width of the soft targets.
        alpha: Beta(α, α) concentration, α > 0.
        per_sample: one λx per sample instead of one per batch.
        generator: torch generator for the point, the permutation and λx.

    Inputs are not checked for NaN or infinity (that would synchronise a GPU every step): they propagate into the
    logits. Calling ``mm(x, y)`` returns ``(logits, y_soft (B, C))``; ``last`` holds the :class:`MixRecord` and
    ``last_point`` the point used.
    """

    def __init__(
        self,
        model: nn.Module,
        points: list[str] | tuple[str, ...],
        *,
        labels: LabelRule,
        num_classes: int,
        alpha: float = 1.0,
        per_sample: bool = False,
        generator: torch.Generator | None = None,
    ):
        owner = type(self).__name__
        check_number(num_classes, "num_classes", owner=owner, low=2, integer=True)
        check_generator(generator, owner=owner)
        check_callable(labels, "labels", "MixupLabels() or RemixLabels(class_counts)", owner=owner)
        if getattr(labels, "num_classes", num_classes) != num_classes:
            raise InvalidParameterError(f"`num_classes` of `{owner}` must equal the number of classes of `labels` "
                                        f"({labels.num_classes} class counts); got {num_classes}")  # type: ignore[attr-defined]  # fmt: skip
        if isinstance(points, str) or len(points) == 0:
            raise InvalidParameterError(f"`points` of `{owner}` must be a non-empty list of mixing points; got {points!r}")
        self._modules = {name: resolve_point(model, name) for name in points}
        self.model = model
        self.points = list(points)
        self.labels = labels
        self.num_classes = num_classes
        self.mixer = MixupMixer(alpha, per_sample=per_sample, generator=generator)
        self.generator = generator
        self.last: MixRecord | None = None
        self.last_point: str | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward x (B, ...) with mixing at one drawn point; return ``(logits, y_soft (B, C))``."""
        out = self.mix_forward(self.model, x, y)
        self.last = out.record
        return out.logits, out.target

    def mix_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> MixedBatch:
        """The :class:`~remixup.mixing.Mixing` protocol: call ``model(x)`` mixing at one drawn point.

        ``model`` is the model given at construction (or one that calls the same modules, e.g. its DDP wrapper):
        the mixing points are those modules. ``last`` is left alone; ``last_point`` names the point used."""
        check_batch(x, y, owner=type(self).__name__)
        check_labels(y, self.num_classes, owner=type(self).__name__)
        k = int(torch.randint(0, len(self.points), (1,), generator=self.draw_generator()))
        point = self.points[k]
        perm, lam = self.mixer.sample(x.shape[0], x.device)
        module = self._modules[point]
        if module is None:
            logits = model(self.mixer.mix(x, perm, lam))
        else:
            logits = self._forward_mixing_at(model, module, point, x, perm, lam)
        y_partner = y[perm]
        lam_y = self.labels(y, y_partner, lam)
        record = MixRecord(lam_x=lam, lam_y=lam_y, perm=perm, y=y, y_partner=y_partner)
        self.last_point = point
        return MixedBatch(logits, soft_targets(y, y_partner, lam_y, self.num_classes), record)

    def fusable(self) -> str | None:
        """Manifold mixing happens inside the forward pass, which the stacked fused step shares between runs."""
        return "manifold mixing mixes hidden layers inside the forward pass"

    def _forward_mixing_at(
        self, model: nn.Module, module: nn.Module, point: str, x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor
    ) -> torch.Tensor:
        return forward_mixing_at(model, module, point, x, lambda h: self.mixer.mix(h, perm, lam), batch=x.shape[0])


def resolve_point(model: nn.Module, name: str) -> nn.Module | None:
    """The module of mixing point ``name`` (``None`` for ``"input"``); inner names of a DDP wrapper work too."""
    if name == INPUT:
        return None
    modules = dict(model.named_modules())
    for candidate in (name, f"module.{name}"):
        if candidate and candidate in modules:
            return modules[candidate]
    names = [n for n in modules if n]
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    raise InvalidParameterError(f"mixing point {name!r} is not a module of the model; valid points: 'input', {shown}")


def forward_mixing_at(
    model: nn.Module, module: nn.Module, point: str, x: torch.Tensor, mix: Callable[[torch.Tensor], torch.Tensor], *, batch: int
) -> torch.Tensor:
    """``model(x)`` with the output of ``module`` (the mixing point ``point``) replaced by ``mix(output)``.

    The hook lives only during the call and acts at the module's first use in the forward pass; the output must be a
    tensor of ``batch`` rows. Raises ``InvalidTypeError`` for another output and ``RuntimeError`` when the forward
    pass never reaches the module."""
    calls = 0

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        nonlocal calls
        calls += 1
        if calls > 1:  # a module used twice in one forward is mixed at its first use only
            return None
        if not isinstance(output, torch.Tensor) or output.ndim < 1 or output.shape[0] != batch:
            raise InvalidTypeError(f"mixing point {point!r} must output a tensor of shape (B, ...); got {type(output).__name__}")
        return mix(output)

    handle = module.register_forward_hook(hook)
    try:
        logits = model(x)
    finally:
        handle.remove()
    if calls == 0:
        raise RuntimeError(f"mixing point {point!r} was not reached by the model's forward pass")
    return logits
