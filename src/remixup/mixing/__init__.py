"""Mixing: every way remixup mixes a batch, on one core.

``transform`` holds the mixers (Mixup, CutMix), the label rules (Mixup, Remix) and the drop-in transforms;
``manifold`` mixes hidden layers; ``family`` and ``partners`` the class-aware family (CMO, Balanced-MixUp, UniMix,
MAMix); ``dropin`` timm's options with Remix's labels; ``build`` turns a registry method into the mixing a run
trains with. The public names are re-exported by :mod:`remixup`.
"""

from remixup.mixing.transform import (
    CutMixMixer,
    MixedBatch,
    Mixing,
    MixOutput,
    MixRecord,
    MixTransform,
    MixupLabels,
    MixupMixer,
    NoMixing,
    Remix,
    RemixLabels,
    batch_generator,
    cutmix_boxes,
    forced_count,
    forced_share,
    remix_label_factor,
    sample_beta,
    soft_targets,
)

__all__ = [
    "MixOutput",
    "MixRecord",
    "MixupMixer",
    "CutMixMixer",
    "MixupLabels",
    "RemixLabels",
    "MixTransform",
    "MixedBatch",
    "Mixing",
    "NoMixing",
    "Remix",
    "remix_label_factor",
    "soft_targets",
    "sample_beta",
    "cutmix_boxes",
    "forced_count",
    "forced_share",
    "batch_generator",
]
