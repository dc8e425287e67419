"""Remix for PyTorch Lightning: one callback turns a LightningModule's training step into Remix.

Install with ``pip install remixup[lightning]``, then add one line::

    trainer = L.Trainer(callbacks=[RemixCallback(class_counts)])          # Remix
    trainer = L.Trainer(callbacks=[RemixCallback(class_counts, drw_start_epoch=160)])   # Remix-DRW

The module's own ``training_step(batch, batch_idx)`` is left as written: before it runs, the callback replaces the
batch's inputs by the mixed inputs and its labels by the (B, C) soft targets. A ``training_step`` that computes
``F.cross_entropy(logits, y)``, ``nn.CrossEntropyLoss()(logits, y)``, timm's ``SoftTargetCrossEntropy`` or
:func:`remixup.soft_cross_entropy` then trains with Remix, as all of them accept soft targets.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

try:
    import lightning.pytorch as pl
except ImportError as exc:
    raise ImportError("remixup.integrations.lightning needs Lightning: pip install 'remixup[lightning]'") from exc

from remixup._validation import check_class_counts, check_number
from remixup.balancing import DeferredSchedule
from remixup.errors import InvalidParameterError, InvalidTypeError
from remixup.mixing.draws import mix_seed
from remixup.mixing.dropin import RemixMixup

__all__ = ["RemixCallback"]


class RemixCallback(pl.Callback):
    """Mix every training batch with Remix before the LightningModule's ``training_step`` sees it.

    Args:
        class_counts: (C,) training samples per class. Builds the mixer (Mixup features with Remix labels, α, κ, τ
            below, no label smoothing) unless ``mixer`` is given, and sets the DRW weights.
        mixer: a :class:`~remixup.RemixMixup` to use instead (for timm's options: CutMix, ``mode``, ``prob``,
            label smoothing, ...); its own ``generator`` rules then apply.
        alpha: Beta(α, α) of Mixup for the mixer built here.
        kappa: κ of Remix for the mixer built here. tau: τ (τ = 0 is plain Mixup).
        drw_start_epoch: deferred re-weighting (DRW): from this 0-based epoch on, the targets carry the
            class-balanced weights w_c ∝ 1/E(n_c) (:func:`remixup.balancing.class_weights`); ``None``: no DRW.
        beta: β of the effective number for the DRW weights.
        seed: the mixer built here draws, in epoch e on global rank r, from a generator seeded by (seed, e, r):
            every epoch and rank draws afresh, the same seed repeats the run, and a run resumed at an epoch boundary
            draws what the uninterrupted run drew.
        input_key: where the inputs are in a batch: an index for tuple/list batches, a key for dicts.
        target_key: where the labels are: (B,) class indices, or (B, C) one-hot or soft rows.

    How DRW reaches an unchanged loss: every loss above is linear in the target, so the callback scales the
    targets, t'_nc = w_c·t_nc·B / Σ_m Σ_k w_k t_mk. The batch mean of −Σ_c t'_nc log p_nc is then exactly the
    class-weighted mean of :func:`remixup.soft_cross_entropy` (``weight=w``, ``reduction="mean"``): PyTorch's
    weighted mean. In the DRW phase the target rows therefore no longer sum to 1; ``pl_module.remix_record``
    holds what was drawn (λx, λy, the pairing and the hard labels) for logging.

    After each mixed batch ``pl_module.remix_record`` is the :class:`~remixup.MixRecord` and
    ``pl_module.remix_class_weight`` the (C,) DRW weights in force (``None`` before the deferral epoch).
    """

    def __init__(
        self,
        class_counts: Any = None,
        *,
        mixer: RemixMixup | None = None,
        alpha: float = 1.0,
        kappa: float = 3.0,
        tau: float = 0.5,
        drw_start_epoch: int | None = None,
        beta: float = 0.9999,
        seed: int = 0,
        input_key: int | str = 0,
        target_key: int | str = 1,
    ) -> None:
        owner = type(self).__name__
        if mixer is None and class_counts is None:
            raise InvalidParameterError(f"`{owner}` needs `class_counts` (or a `mixer`)")
        if mixer is not None and not isinstance(mixer, RemixMixup):
            raise InvalidTypeError(f"`mixer` of `{owner}` must be a RemixMixup; got {type(mixer).__name__}")
        counts = class_counts if class_counts is not None else mixer.class_counts  # type: ignore[union-attr]
        if drw_start_epoch is not None:
            if counts is None:
                raise InvalidParameterError(f"`drw_start_epoch` of `{owner}` needs `class_counts` for the class weights")
            check_number(drw_start_epoch, "drw_start_epoch", owner=owner, low=0, integer=True)
            check_number(beta, "beta", owner=owner, low=0.0, high=1.0, high_open=True)
        if counts is not None:
            check_class_counts(counts, owner=owner)
        check_number(seed, "seed", owner=owner, low=0, integer=True)
        self.class_counts = class_counts
        self.mixer = mixer
        self.alpha = alpha
        self.kappa = kappa
        self.tau = tau
        self.drw_start_epoch = drw_start_epoch
        self.beta = beta
        self.seed = seed
        self.input_key = input_key
        self.target_key = target_key
        self._generator: torch.Generator | None = None
        if mixer is None:
            self._generator = torch.Generator()
            self.mixer = RemixMixup(mixup_alpha=alpha, label_smoothing=0.0, class_counts=class_counts, kappa=kappa, tau=tau,
                                    generator=self._generator)  # fmt: skip
        self._counts = counts
        self._schedule = DeferredSchedule(drw_start_epoch) if drw_start_epoch is not None else None
        self._original_step: Any = None

    def class_weight(self, epoch: int) -> torch.Tensor | None:
        """The (C,) DRW class weights in force in ``epoch`` (0-based), or ``None`` when not re-weighting."""
        if self._schedule is None:
            return None
        return self._schedule.weights(epoch, self._counts, kind="effective", beta=self.beta)

    # ------------------------------------------------------------------------------------------------------------
    # Lightning hooks
    # ------------------------------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Wrap the module's ``training_step`` (restored at the end of fit)."""
        original = pl_module.training_step
        self._original_step = original

        @functools.wraps(original)
        def training_step(batch: Any, *args: Any, **kwargs: Any) -> Any:
            return original(self.mix_batch(batch, pl_module), *args, **kwargs)

        pl_module.training_step = training_step  # type: ignore[method-assign]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore(pl_module)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore(pl_module)

    def _restore(self, pl_module: pl.LightningModule) -> None:
        if self._original_step is not None:
            pl_module.__dict__.pop("training_step", None)
            self._original_step = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if self._generator is not None:
            self._generator.manual_seed(mix_seed(self.seed, epoch, trainer.global_rank))
        weight = self.class_weight(epoch)
        pl_module.remix_class_weight = None if weight is None else weight.to(pl_module.device)  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------------------------------
    # the batch
    # ------------------------------------------------------------------------------------------------------------
    def mix_batch(self, batch: Any, pl_module: pl.LightningModule | None = None) -> Any:
        """Return ``batch`` (tuple, list or dict) with its inputs mixed and its labels replaced by soft targets."""
        try:
            x, y = batch[self.input_key], batch[self.target_key]
        except (KeyError, IndexError, TypeError) as exc:
            raise InvalidTypeError(
                f"`RemixCallback` could not find the inputs at {self.input_key!r} and the labels at {self.target_key!r} "
                f"of a {type(batch).__name__} batch; set `input_key`/`target_key`"
            ) from exc
        assert self.mixer is not None
        x_mixed, target, record = self.mixer.mix(x, y)
        weight = getattr(pl_module, "remix_class_weight", None) if pl_module is not None else None
        if weight is not None:
            target = self.reweight(target, weight)
        if pl_module is not None:
            pl_module.remix_record = record  # type: ignore[assignment]
        return self._replace(batch, {self.input_key: x_mixed, self.target_key: target})

    @staticmethod
    def reweight(target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Scale (B, C) targets so that a plain soft cross-entropy becomes the class-weighted mean (see the class)."""
        scaled = target * weight.to(device=target.device, dtype=target.dtype)
        return scaled * (target.shape[0] / scaled.sum())

    @staticmethod
    def _replace(batch: Any, values: dict[int | str, torch.Tensor]) -> Any:
        if isinstance(batch, dict):
            return {**batch, **values}
        items = list(batch)
        for k, v in values.items():
            items[k] = v  # type: ignore[index]
        if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a namedtuple
            return type(batch)(*items)
        return type(batch)(items) if isinstance(batch, (tuple, list)) else items
