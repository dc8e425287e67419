"""Model registry: the networks of the paper and small ones for the embedded examples.

========== =========================== ============================ =================================
name       class                       input                        ``mixing_points``
========== =========================== ============================ =================================
resnet32   :class:`ResNet32`           (B, 3, 32, 32)               input, layer1, layer2
resnet18   :class:`ResNet18` (CIFAR    (B, 3, 32, 32)               input, layer1, layer2
           stem)
resnet50   :class:`ResNet50`           (B, 3, 224, 224)             input, layer1, layer2
digits_cnn :class:`DigitsCNN`          (B, 1, 8, 8)                 input, block1, block2
mlp        :class:`MLP`                (B, 2)                       input, layer1, …, layerK
tabular_   :class:`TabularResNet`      (B, D)                       input, stem, block1, …, blockK
resnet     (Gorishniy et al. 2021)
========== =========================== ============================ =================================

Every model ends in a layer named ``fc``: ``nn.Linear`` (``classifier="linear"``; without a bias when
``classifier_bias=False``) or the cosine classifier :class:`CosineLinear` (``classifier="norm"``, for LDAM). ``mixing_points`` lists module names as in
``model.named_modules()`` whose outputs are plain tensors (so a forward hook can replace them); ``"input"`` stands
for the model's input. Nothing here is required of a user's own model: any ``nn.Module`` classifier works with
Mixup/CutMix/Remix, and with manifold mixing once its points are named (:func:`get_mixing_points`).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from remixup._validation import check_number
from remixup.errors import InvalidParameterError
from remixup.models._common import CLASSIFIERS, CosineLinear
from remixup.models.resnet import ResNet18, ResNet50
from remixup.models.resnet_cifar import ResNet32
from remixup.models.small import MLP, DigitsCNN
from remixup.models.tabular import TabularResNet

__all__ = [
    "CLASSIFIERS",
    "MODELS",
    "MLP",
    "CosineLinear",
    "DigitsCNN",
    "ResNet18",
    "ResNet32",
    "ResNet50",
    "TabularResNet",
    "build_model",
    "build_model_for",
    "get_mixing_points",
]

MODELS: dict[str, type[nn.Module]] = {
    "resnet32": ResNet32,
    "resnet18": ResNet18,
    "resnet50": ResNet50,
    "digits_cnn": DigitsCNN,
    "mlp": MLP,
    "tabular_resnet": TabularResNet,
}
"""Model name -> class; each class is called as ``cls(num_classes, **kw)``."""


def build_model(name: str, num_classes: int, **kw: Any) -> nn.Module:
    """Build a model by name.

    Args:
        name: one of ``MODELS``: ``"resnet32"``, ``"resnet18"``, ``"resnet50"``, ``"digits_cnn"``, ``"mlp"``,
            ``"tabular_resnet"``.
        num_classes: number of classes C (≥ 1).
        **kw: the model's keyword arguments: ``classifier`` (``"linear"`` or ``"norm"``) and ``classifier_bias``
            (``False`` drops the linear classifier's bias) for all;
            ``in_channels`` for the CNNs; ``blocks`` for resnet32; ``zero_init_residual`` for resnet18/50;
            ``in_features``, ``hidden`` and ``depth`` for mlp; ``in_features``, ``width``, ``hidden_factor``,
            ``blocks``, ``hidden_dropout`` and ``residual_dropout`` for tabular_resnet.

    Returns:
        The model (freshly initialised, on the CPU, float32).

    Raises:
        ValueError: an unknown name (the message lists the valid ones), an unknown keyword argument (the message
            lists the accepted ones) or a bad value.
    """
    cls = MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidParameterError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    check_number(num_classes, "num_classes", owner="build_model", low=1, integer=True)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "num_classes")]
    unknown = sorted(set(kw) - set(accepted))
    if unknown:
        raise InvalidParameterError(
            f"unknown parameter `{unknown[0]}` for model {name!r}; valid parameters: {', '.join(accepted)}"
        )
    return cls(int(num_classes), **kw)


def build_model_for(name: str, num_classes: int, input_shape: tuple[int, ...], *, classifier: str = "linear",
                    classifier_bias: bool = True) -> nn.Module:  # fmt: skip
    """Build model ``name`` for data whose samples have ``input_shape``: the one way runs and checkpoints build models.

    The input's width reaches the model through the keyword it declares: ``in_channels`` (C of (C, H, W) images) for
    the CNNs, ``in_features`` (D of (D,) vectors) for the MLP.

    Args:
        name: a key of ``MODELS``. num_classes: C.
        input_shape: one sample's shape, (C, H, W) or (D,).
        classifier, classifier_bias: the head (see :func:`build_model`).

    Raises:
        ValueError: an unknown name, or a model that cannot take inputs of this shape.
    """
    cls = MODELS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InvalidParameterError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    accepted = inspect.signature(cls.__init__).parameters
    kw: dict[str, Any] = {"classifier": classifier, "classifier_bias": classifier_bias}
    width_key = "in_channels" if len(input_shape) == 3 else "in_features"
    if width_key in accepted:
        kw[width_key] = int(input_shape[0])
    elif "in_channels" in accepted or "in_features" in accepted:
        kind = "images" if len(input_shape) == 3 else "vectors"
        raise InvalidParameterError(f"model {name!r} does not take {kind} of shape {tuple(input_shape)}; "
                                    "choose a model for this data (model.name=auto picks the dataset's default)")  # fmt: skip
    return build_model(name, num_classes, **kw)


def get_mixing_points(model: nn.Module) -> list[str]:
    """The manifold-mixing points of ``model``: its ``mixing_points`` if it declares them, else ``["input"]``.

    ``mixing_points`` may be a list attribute/property or a method returning one. Every name other than
    ``"input"`` must be a module of ``model.named_modules()``.

    Raises:
        ValueError: a declared point that is not a module of the model.
    """
    points = getattr(model, "mixing_points", None)
    if points is None:
        return ["input"]
    if callable(points):
        points = points()
    points = list(points)
    names = {n for n, _ in model.named_modules()}
    missing = [p for p in points if p != "input" and p not in names]
    if missing:
        raise InvalidParameterError(
            f"`mixing_points` of `{type(model).__name__}` names {missing[0]!r}, which is not a module of the model"
        )
    return points
