"""The :class:`~remixup.mixing.base.Mixing` a run trains with, built from its effective method and ``mixing`` config.

The registry (:mod:`remixup.methods`) says what a method is and :meth:`remixup.config.TrainConfig.effective_method`
applies the config's overrides; this module turns the result into the object the training step calls:
:class:`~remixup.mixing.base.NoMixing`, a :class:`~remixup.mixing.transform.MixTransform` (Mixup, CutMix), a
:class:`~remixup.mixing.manifold.ManifoldMixup`, or a :class:`~remixup.mixing.family.PartnerMix` (a class-aware
partner, CMO, Balanced-MixUp, UniMix, MAMix). The label rule comes from the table
:data:`remixup.mixing.labels.LABEL_RULES`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from remixup import seeding
from remixup.errors import ConfigError
from remixup.methods import Method
from remixup.mixing.base import Mixing, NoMixing
from remixup.mixing.family import PartnerMix
from remixup.mixing.labels import label_rule
from remixup.mixing.manifold import ManifoldMixup
from remixup.mixing.partners import DEFAULT_EXPONENT, ClassWeightedSampler, LoaderPartners
from remixup.mixing.transform import CutMixMixer, MixTransform, MixupMixer

if TYPE_CHECKING:
    from remixup.config import TrainConfig
    from remixup.data.run import RunData

__all__ = ["build_mixing"]


def build_mixing(method: Method, mixing: Any, model: nn.Module, class_counts: torch.Tensor, generator: torch.Generator, *,
                 data: RunData | None = None, config: TrainConfig | None = None, rank: int = 0,
                 world_size: int = 1) -> Mixing:  # fmt: skip
    """The :class:`~remixup.mixing.base.Mixing` of ``method``: nothing, Mixup/CutMix on the input, manifold mixing,
    or a mixing of the class-aware family.

    Args:
        method: the effective method (:meth:`~remixup.config.TrainConfig.effective_method`): its ``mixer`` and
            ``labels``, and the family's ``partner``, ``draw``, ``prob`` and window, overrides already applied.
        mixing: the config's ``mixing`` section (α, κ, τ, per-sample λ, the family's α and exponents).
        model: the network being trained (manifold mixing hooks its ``mixing_points``; a DDP wrapper is looked into).
        class_counts: (C,) training counts (the label rules and the target width).
        generator: the generator every draw of the mixing comes from (the class-weighted partner has its own).
        data: the run's data; a class-weighted partner draws its second batch from ``data.train_loader``.
        config: the run's config (seed, batch size, augmentation, workers, epochs), for the family's mixings.
        rank, world_size: this process's place in a DDP job (each rank draws its own class-weighted partners).

    A method outside the classic permuted Mixup/CutMix (:attr:`~remixup.methods.Method.is_classic`) becomes a
    :class:`~remixup.mixing.family.PartnerMix`; the classic ones are built exactly as before.
    """
    if method.mixer is None:
        return NoMixing()
    m = mixing
    counts = class_counts.tolist()
    labels = label_rule(method.labels, counts, kappa=m.kappa, tau=m.tau, exponent=m.mamix_exponent)
    if not method.is_classic:
        return _build_family(method, m, labels, model, counts, generator, data=data, config=config, rank=rank,
                             world_size=world_size)  # fmt: skip
    if method.mixer == "manifold":
        return ManifoldMixup(model, _mixing_points(model), labels=labels, num_classes=len(counts), alpha=m.alpha,
                             per_sample=m.per_sample, generator=generator)  # fmt: skip
    mixer = (CutMixMixer if method.mixer == "cutmix" else MixupMixer)(m.alpha, per_sample=m.per_sample, generator=generator)
    return MixTransform(mixer, labels, num_classes=len(counts))


def _build_family(method: Method, m: Any, labels: Any, model: nn.Module, counts: list[int], generator: torch.Generator, *,
                  data: RunData | None, config: TrainConfig | None, rank: int, world_size: int) -> Mixing:  # fmt: skip
    assert method.mixer is not None  # build_mixing returned NoMixing before
    partner = method.partner
    alpha = {"beta": m.alpha, "beta-1": m.balanced_alpha, "unimix": m.unimix_alpha}[method.draw]
    exponent = DEFAULT_EXPONENT.get(partner, 0.0) if m.partner_exponent is None else m.partner_exponent
    partners = None
    if partner == "class-weighted":
        if data is None or config is None:
            raise ConfigError("a class-weighted partner draws from the training set: build_mixing needs `data` and `config`")
        partners = _partner_source(data, config, exponent, rank, world_size)
    manifold: dict[str, Any] = {"model": model, "points": _mixing_points(model)} if method.mixer == "manifold" else {}
    return PartnerMix(mixer=method.mixer, labels=labels, class_counts=counts, partner=partner, exponent=exponent,
                      partners=partners, draw=method.draw, alpha=alpha, per_sample=m.per_sample, wrap=m.unimix_wrap,
                      prob=method.prob, skip_first=method.skip_first, skip_last=method.skip_last,
                      epochs=config.run.epochs if config is not None else None, generator=generator, **manifold)  # fmt: skip


def _partner_source(data: RunData, config: TrainConfig, exponent: float, rank: int, world_size: int) -> LoaderPartners:
    """A second training loader drawing class-weighted samples, on its own seed stream."""
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

    return LoaderPartners(make_loader, sampler)


def _mixing_points(model: nn.Module) -> list[str]:
    from remixup.models import get_mixing_points

    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return get_mixing_points(inner)
