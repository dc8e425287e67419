"""Mixing: every way remixup mixes a batch, on one core.

=============  ===================================================================================================
module         what it holds
=============  ===================================================================================================
``base``       the core: :class:`Mixing` (draw → apply → label rule → targets → record; ``mix_forward``,
               ``mix_input``, the hooks ``set_epoch``, ``epoch_stats``, ``fusable``), :class:`NoMixing`, the records
``draws``      the one worker- and rank-aware generator rule (:func:`batch_generator`), the one Beta sampler
               (:func:`sample_beta`) and the one CutMix box sampler (:func:`cutmix_box`)
``labels``     the label rules as a table (:data:`LABEL_RULES`: plain, remix, mamix) and :func:`soft_targets`
``transform``  presets on the input: :class:`MixupMixer`, :class:`CutMixMixer`, :class:`MixTransform`, :class:`Remix`
``manifold``   preset inside the forward pass: :class:`ManifoldMixup`
``partners``   who is mixed with whom: class-weighted and in-batch partners
``family``     preset of the class-aware family (CMO, Balanced-MixUp, UniMix, MAMix): :class:`PartnerMix`, with
               its partner and draw rules as tables
``dropin``     preset with timm's options and Remix's labels: :class:`RemixMixup`
``build``      the one place a run's effective method becomes a :class:`Mixing` (:func:`build_mixing`)
=============  ===================================================================================================

The public names are re-exported by :mod:`remixup` and here.
"""

from remixup.mixing.base import MixedBatch, Mixing, MixOutput, MixRecord, NoMixing, forced_count, forced_share
from remixup.mixing.draws import batch_generator, box_mask, cutmix_box, cutmix_boxes, mix_seed, sample_beta
from remixup.mixing.dropin import RemixMixup  # noqa: E402
from remixup.mixing.family import MixStats, PartnerMix, unimix_lambda  # noqa: E402
from remixup.mixing.labels import (
    LABEL_RULES,
    LabelRule,
    MAMixLabels,
    MixupLabels,
    RemixLabels,
    label_rule,
    mamix_label_factor,
    remix_label_factor,
    soft_targets,
)
from remixup.mixing.manifold import ManifoldMixup  # noqa: E402,I001 - after the presets it builds on
from remixup.mixing.transform import CutMixMixer, MixTransform, MixupMixer, Remix

__all__ = [
    "LABEL_RULES",
    "CutMixMixer",
    "LabelRule",
    "MAMixLabels",
    "ManifoldMixup",
    "MixOutput",
    "MixRecord",
    "MixStats",
    "MixTransform",
    "MixedBatch",
    "Mixing",
    "MixupLabels",
    "MixupMixer",
    "NoMixing",
    "PartnerMix",
    "Remix",
    "RemixLabels",
    "RemixMixup",
    "batch_generator",
    "box_mask",
    "cutmix_box",
    "cutmix_boxes",
    "forced_count",
    "forced_share",
    "label_rule",
    "mamix_label_factor",
    "mix_seed",
    "remix_label_factor",
    "sample_beta",
    "soft_targets",
    "unimix_lambda",
]
