"""remixup: Remix (Rebalanced Mixup) and the long-tail methods around it, for PyTorch.

The core pieces work in any training loop::

    from remixup import Remix, soft_cross_entropy
    remix = Remix(class_counts, alpha=1.0, kappa=3.0, tau=0.5)
    x_mixed, y_soft = remix(x, y)
    loss = soft_cross_entropy(model(x_mixed), y_soft)

and a trained run predicts on new inputs with ``remixup.predict(run_folder, ["images/", "x.npz"])``.
"""

from remixup._version import __version__
from remixup.losses import build_loss, soft_cross_entropy
from remixup.mixing import (
    CutMixMixer,
    MixOutput,
    MixRecord,
    MixTransform,
    MixupLabels,
    MixupMixer,
    Remix,
    RemixLabels,
    forced_share,
    remix_label_factor,
    sample_beta,
    soft_targets,
)
from remixup.mixing.dropin import RemixMixup
from remixup.mixing.manifold import ManifoldMixup
from remixup.predict import predict  # the function; the module stays importable as remixup.predict

__all__ = [
    "__version__",
    "CutMixMixer",
    "ManifoldMixup",
    "MixOutput",
    "MixRecord",
    "MixTransform",
    "MixupLabels",
    "MixupMixer",
    "Remix",
    "RemixLabels",
    "RemixMixup",
    "forced_share",
    "remix_label_factor",
    "build_loss",
    "predict",
    "soft_cross_entropy",
    "sample_beta",
    "soft_targets",
]
