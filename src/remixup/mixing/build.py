"""The :class:`~remixup.mixing.Mixing` a method trains with, built from its registry entry and the ``mixing`` config.

The registry (:mod:`remixup.methods`) says what a method is; this module turns it into the object the training
step calls: :class:`~remixup.mixing.NoMixing`, a :class:`~remixup.mixing.MixTransform` (Mixup, CutMix), a
:class:`~remixup.mixing.manifold.ManifoldMixup`, or a :class:`~remixup.mixing.family.PartnerMix` (a class-aware partner, CMO,
Balanced-MixUp, UniMix, MAMix).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from remixup.methods import Method

if TYPE_CHECKING:
    from remixup.config import TrainConfig
    from remixup.data.run import RunData
    from remixup.mixing.transform import Mixing

__all__ = ["build_mixing"]


def build_mixing(method: Method, mixing: Any, model: nn.Module, class_counts: torch.Tensor, generator: torch.Generator, *,
                 data: RunData | None = None, config: TrainConfig | None = None, rank: int = 0,
                 world_size: int = 1) -> Mixing:  # fmt: skip
    """The :class:`~remixup.mixing.Mixing` of ``method``: nothing, Mixup/CutMix on the input, or manifold mixing.

    Args:
        method: the method (its ``mixer`` and ``labels``, and the family's ``partner``, ``draw``, ``prob``, window).
        mixing: the config's ``mixing`` section (α, κ, τ, per-sample λ, and the family's keys).
        model: the network being trained (manifold mixing hooks its ``mixing_points``; a DDP wrapper is looked into).
        class_counts: (C,) training counts (the Remix rule and the target width).
        generator: the generator every draw of the mixing comes from (the class-weighted partner has its own).
        data: the run's data; a class-weighted partner draws its second batch from ``data.train_loader``.
        config: the run's config (seed, batch size, augmentation, workers, epochs), for the family's mixings.
        rank, world_size: this process's place in a DDP job (each rank draws its own class-weighted partners).

    A method of the family, or any method with ``mixing.partner`` (or the probability and window keys) set,
    becomes a :class:`~remixup.mixing.family.PartnerMix`; the other methods are built exactly as before.
    """
    from remixup.mixing.manifold import ManifoldMixup
    from remixup.mixing.transform import CutMixMixer, MixTransform, MixupLabels, MixupMixer, NoMixing, RemixLabels
    from remixup.models import get_mixing_points

    if method.mixer is None:
        return NoMixing()
    m = mixing
    if _uses_family(method, m):
        return _build_family(method, m, model, class_counts, generator, data=data, config=config, rank=rank,
                             world_size=world_size)  # fmt: skip
    labels = RemixLabels(class_counts.tolist(), kappa=m.kappa, tau=m.tau) if method.labels == "remix" else MixupLabels()
    if method.mixer == "manifold":
        inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        return ManifoldMixup(model, get_mixing_points(inner), labels=labels, num_classes=class_counts.numel(), alpha=m.alpha,
                             per_sample=m.per_sample, generator=generator)  # fmt: skip
    mixer = (CutMixMixer if method.mixer == "cutmix" else MixupMixer)(m.alpha, per_sample=m.per_sample, generator=generator)
    return MixTransform(mixer, labels, num_classes=class_counts.numel())


_FAMILY_KEYS = ("prob", "skip_first", "skip_last")


def _uses_family(method: Method, mixing: Any) -> bool:
    """Whether the method (or the config's family keys) asks for more than the classic permuted Mixup/CutMix."""
    overridden = getattr(mixing, "partner", "auto") != "auto" or any(getattr(mixing, k, None) is not None for k in _FAMILY_KEYS)
    return not method.is_classic or overridden


def _build_family(method: Method, m: Any, model: nn.Module, class_counts: torch.Tensor, generator: torch.Generator, *,
                  data: RunData | None, config: TrainConfig | None, rank: int, world_size: int) -> Mixing:  # fmt: skip
    import math

    from remixup import seeding
    from remixup.errors import ConfigError
    from remixup.mixing.family import MAMixLabels, PartnerMix
    from remixup.mixing.transform import MixupLabels, RemixLabels
    from remixup.mixing.partners import DEFAULT_EXPONENT, ClassWeightedSampler, LoaderPartners

    partner = method.partner if m.partner == "auto" else m.partner
    assert method.mixer is not None  # build_mixing returned NoMixing before
    counts = class_counts.tolist()
    labels: Any
    if method.labels == "remix":
        labels = RemixLabels(counts, kappa=m.kappa, tau=m.tau)
    elif method.labels == "mamix":
        labels = MAMixLabels(counts, exponent=m.mamix_exponent)
    else:
        labels = MixupLabels()
    alpha = {"beta": m.alpha, "beta-1": m.balanced_alpha, "unimix": m.unimix_alpha}[method.draw]
    exponent = DEFAULT_EXPONENT.get(partner, 0.0) if m.partner_exponent is None else m.partner_exponent
    partners = None
    if partner == "class-weighted":
        if data is None or config is None:
            raise ConfigError("a class-weighted partner draws from the training set: build_mixing needs `data` and `config`")
        run = config.run
        sampler = ClassWeightedSampler(data.y_train, exponent=exponent, num_samples=math.ceil(data.y_train.numel() / world_size),
                                       seed=run.seed, rank=rank)  # fmt: skip
        # The second loader augments from its own seed, so a sample and its partner do not share a crop.
        seed = seeding.epoch_seed(run.seed, 0, seeding.partner_stream(rank)) & 0x7FFFFFFF

        def make_loader(s: ClassWeightedSampler) -> Any:
            loader = data.train_loader(batch_size=config.optim.batch_size // world_size, seed=seed, rank=0, world_size=1,
                                       augment=config.data.augment, channels_last=False, workers=run.workers)  # fmt: skip
            loader.sampler = s
            return loader

        partners = LoaderPartners(make_loader, sampler)
    return PartnerMix(mixer=method.mixer, labels=labels, class_counts=counts, partner=partner, exponent=exponent,
                      partners=partners, draw=method.draw, alpha=alpha, per_sample=m.per_sample, wrap=m.unimix_wrap,
                      prob=method.prob if m.prob is None else m.prob,
                      skip_first=method.skip_first if m.skip_first is None else m.skip_first,
                      skip_last=method.skip_last if m.skip_last is None else m.skip_last,
                      epochs=config.run.epochs if config is not None else None, generator=generator,
                      **_manifold_args(method, model))  # fmt: skip


def _manifold_args(method: Method, model: nn.Module) -> dict[str, Any]:
    from remixup.models import get_mixing_points

    if method.mixer != "manifold":
        return {}
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return {"model": model, "points": get_mixing_points(inner)}
