"""Bad input to the Python API: a named error (one line naming the parameter, its owner and the value) where the
check is free, and documented propagation where it would cost a device synchronisation (NaN/inf in x or logits).

Each case is one line of ``REFUSED`` (what is refused, and the message) or ``PROPAGATED`` (what passes through as
NaN, as the docstrings say)."""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from remixup import (
    CutMixMixer,
    ManifoldMixup,
    MixTransform,
    MixupLabels,
    MixupMixer,
    Remix,
    RemixLabels,
    RemixMixup,
    forced_share,
    sample_beta,
    soft_cross_entropy,
    soft_targets,
)
from remixup.balancing import ClassBalancedSampler
from remixup.errors import InvalidParameterError, InvalidTypeError, UserError
from remixup.losses import FocalLoss, LDAMLoss, SoftCrossEntropy
from remixup.mixing.family import PartnerMix
from remixup.mixing.partners import class_draw_probs, in_batch_partners

COUNTS = [10, 5, 2]
NAN = float("nan")


def _x() -> torch.Tensor:
    return torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _y() -> torch.Tensor:
    return torch.tensor([0, 1, 2, 0])


def _g() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _model() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 3))


def _partner_mix(**kw: Any) -> PartnerMix:
    return PartnerMix(mixer="mixup", labels=MixupLabels(), class_counts=COUNTS, generator=_g(), **kw)


# (id, call, error type, message pattern)
REFUSED: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # accepted silently before
    ("manifold-num-classes-of-other-counts",
     lambda: ManifoldMixup(_model(), ["input"], labels=RemixLabels(COUNTS), num_classes=5),
     InvalidParameterError, r"`num_classes` of `ManifoldMixup` must equal the number of classes of `labels` \(3 class counts\); got 5"),
    ("negative-soft-target-rows",
     lambda: soft_cross_entropy(torch.randn(2, 3), torch.tensor([[1.5, -0.5, 0.0], [0.5, 0.5, 0.0]])),
     InvalidParameterError, r"`target` of `soft_cross_entropy` as soft targets must hold finite non-negative shares; got -0.5"),
    ("float-labels-in-class-balanced-sampler",
     lambda: ClassBalancedSampler(torch.tensor([0.0, 1.0, 1.0, 2.0]), [1, 2, 1]),
     InvalidTypeError, r"`labels` of `ClassBalancedSampler` must be integer class indices; got torch.float32"),
    ("empty-cmo-window-in-partner-mix",
     lambda: _partner_mix(skip_first=4, skip_last=3, epochs=7),
     InvalidParameterError, r"`epochs` of `PartnerMix` must be >= 8; got 7"),
    ("lam-above-one-in-soft-targets",
     lambda: soft_targets(_y(), _y().flip(0), torch.full((4,), 2.0), 3),
     InvalidParameterError, r"`lam_y` of `soft_targets` must hold shares in \[0, 1\]; got 2.0"),
    ("all-zero-weights-functional",
     lambda: soft_cross_entropy(torch.randn(2, 3), torch.tensor([0, 1]), weight=torch.zeros(3)),
     InvalidParameterError, r"`weight` of `soft_cross_entropy` must have at least one positive entry"),
    ("all-zero-weights-module",
     lambda: SoftCrossEntropy(weight=[0.0, 0.0, 0.0]),
     InvalidParameterError, r"`weight` of `SoftCrossEntropy` must have at least one positive entry"),
    ("all-zero-weights-focal",
     lambda: FocalLoss(weight=[0.0, 0.0, 0.0]),
     InvalidParameterError, r"`weight` of `FocalLoss` must have at least one positive entry"),
    ("nan-exponent-class-draw-probs",
     lambda: class_draw_probs(COUNTS, NAN),
     InvalidParameterError, r"`exponent` of `class_draw_probs` must be finite; got nan"),
    # low-level errors before
    ("labels-out-of-range-partner-mix",
     lambda: _partner_mix()(_x(), torch.tensor([0, 1, 5, 0])),
     InvalidParameterError, r"`y` of `PartnerMix` must hold class indices in \[0, 2\]; got values in \[0, 5\]"),
    ("labels-out-of-range-in-batch-partners",
     lambda: in_batch_partners(torch.tensor([0, 1, 5, 0]), COUNTS, generator=_g()),
     InvalidParameterError, r"`y` of `in_batch_partners` must hold class indices in \[0, 2\]; got values in \[0, 5\]"),
    ("labels-out-of-range-soft-targets",
     lambda: soft_targets(torch.tensor([0, 1, 5, 0]), _y(), torch.rand(4), 3),
     InvalidParameterError, r"`y` of `soft_targets` must hold class indices in \[0, 2\]; got values in \[0, 5\]"),
    ("list-instead-of-tensor-remix",
     lambda: Remix(COUNTS, generator=_g())(_x(), [0, 1, 2, 0]),
     InvalidTypeError, r"`y` of `Remix` must be a torch.Tensor of class indices \(B,\); got list"),
    ("list-instead-of-tensor-soft-targets",
     lambda: soft_targets([0, 1, 2, 0], _y(), torch.rand(4), 3),
     InvalidTypeError, r"`y` of `soft_targets` must be a torch.Tensor of class indices; got list"),
    ("meta-device-remix",
     lambda: Remix(COUNTS, generator=_g())(_x().to("meta"), _y().to("meta")),
     InvalidParameterError, r"`x` of `Remix` is on the meta device, which holds no values; move it to a real device"),
    ("meta-device-dropin",
     lambda: RemixMixup(class_counts=COUNTS, generator=_g())(_x().to("meta"), _y().to("meta")),
     InvalidParameterError, r"`x` of `RemixMixup` is on the meta device"),
    # unclear messages before
    ("int-generator",
     lambda: Remix(COUNTS, generator=42),  # type: ignore[arg-type]
     InvalidTypeError, r"`generator` of `Remix` must be a torch.Generator or None; got 42 \(for a seed use "
                       r"torch.Generator\(\).manual_seed\(42\)\)"),
    ("mixer-by-name",
     lambda: MixTransform("mixup", MixupLabels(), num_classes=3),  # type: ignore[arg-type]
     InvalidTypeError, r"`mixer` of `MixTransform` must be an object such as MixupMixer\(\) or CutMixMixer\(\); got 'mixup'"),
    ("labels-by-name",
     lambda: MixTransform(MixupMixer(), "remix", num_classes=3),  # type: ignore[arg-type]
     InvalidTypeError, r"`labels` of `MixTransform` must be an object such as MixupLabels\(\)"),
    ("beta-alpha-zero",
     lambda: sample_beta(0.0, 4),
     InvalidParameterError, r"`alpha` of `sample_beta` must be > 0; got 0.0"),
    ("beta-negative-size",
     lambda: sample_beta(1.0, -1),
     InvalidParameterError, r"`size` of `sample_beta` must be >= 0; got -1"),
    # NaN/inf inputs where checking is free (CPU tensors, or a function that reads back anyway)
    ("nan-soft-target",
     lambda: soft_cross_entropy(torch.randn(2, 3), torch.full((2, 3), NAN)),
     InvalidParameterError, r"soft targets must hold finite non-negative shares; got nan"),
    ("inf-soft-target",
     lambda: soft_cross_entropy(torch.randn(2, 3), torch.tensor([[math.inf, 0.0, 0.0], [1.0, 0.0, 0.0]])),
     InvalidParameterError, r"soft targets must hold finite non-negative shares; got inf"),
    ("nan-weight",
     lambda: SoftCrossEntropy(weight=[NAN, 1.0, 1.0]),
     InvalidParameterError, r"`weight` of `SoftCrossEntropy` must hold finite non-negative numbers"),
    ("nan-lam-soft-targets",
     lambda: soft_targets(_y(), _y().flip(0), torch.full((4,), NAN), 3),
     InvalidParameterError, r"`lam_y` of `soft_targets` must hold shares in \[0, 1\]; got nan"),
    ("nan-lam-remix-labels",
     lambda: RemixLabels(COUNTS)(_y(), _y().flip(0), torch.full((4,), NAN)),
     InvalidParameterError, r"`lam_x` of `RemixLabels` must hold shares in \[0, 1\]; got nan"),
    ("nan-lam-mixup-labels",
     lambda: MixupLabels()(_y(), _y().flip(0), torch.full((4,), NAN)),
     InvalidParameterError, r"`lam_x` of `MixupLabels` must hold shares in \[0, 1\]; got nan"),
    ("nan-lam-forced-share",
     lambda: forced_share(torch.full((4,), NAN), torch.full((4,), NAN)),
     InvalidParameterError, r"`lam_x` and `lam_y` of `forced_share` must be finite; 4 of them are NaN or infinite"),
    ("nan-class-counts",
     lambda: Remix([NAN, 1, 1]),
     InvalidParameterError, r"`class_counts` of `RemixLabels` must be positive for every class; class 0 has nan"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "kind", "match"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_input_is_a_named_error(call: Callable[[], Any], kind: type[Exception], match: str) -> None:
    with pytest.raises(kind, match=match) as info:
        call()
    assert isinstance(info.value, UserError) and "\n" not in str(info.value)


# NaN or infinity in x or in the logits propagate (documented): checking them would synchronise a GPU every step.
PROPAGATED: list[tuple[str, Callable[[], Any]]] = [
    ("remix-nan-x", lambda: Remix(COUNTS, generator=_g())(torch.full((4, 3, 8, 8), NAN), _y())[0]),
    ("remix-inf-x", lambda: Remix(COUNTS, generator=_g())(torch.full((4, 3, 8, 8), math.inf), _y())[0]),
    ("mixup-mixer-nan-x", lambda: MixupMixer(generator=_g())(torch.full((4, 3, 8, 8), NAN), _y()).x),
    ("cutmix-mixer-nan-x", lambda: CutMixMixer(generator=_g())(torch.full((4, 3, 8, 8), NAN), _y()).x),
    ("dropin-nan-x", lambda: RemixMixup(class_counts=COUNTS, generator=_g())(torch.full((4, 3, 8, 8), NAN), _y())[0]),
    ("partner-mix-nan-x", lambda: _partner_mix()(torch.full((4, 3, 8, 8), NAN), _y())[0]),
    ("manifold-nan-x", lambda: ManifoldMixup(_model(), ["input"], labels=MixupLabels(), num_classes=3, generator=_g())(
        torch.full((4, 3, 8, 8), NAN), _y())[0]),  # fmt: skip
    ("soft-ce-nan-logits", lambda: soft_cross_entropy(torch.full((2, 3), NAN), torch.tensor([0, 1]))),
    ("soft-ce-inf-logits", lambda: soft_cross_entropy(torch.full((2, 3), math.inf), torch.tensor([0, 1]))),
    ("focal-nan-logits", lambda: FocalLoss()(torch.full((2, 3), NAN), torch.tensor([0, 1]))),
    ("ldam-nan-logits", lambda: LDAMLoss(COUNTS)(torch.full((2, 3), NAN), torch.tensor([0, 1]))),
    ("weighted-mean-of-zero-weight-batch",  # 0/0, as in F.cross_entropy
     lambda: soft_cross_entropy(torch.randn(2, 3), torch.tensor([0, 0]), weight=torch.tensor([0.0, 1.0, 1.0]))),
]


@pytest.mark.parametrize("call", [c[1] for c in PROPAGATED], ids=[c[0] for c in PROPAGATED])
def test_non_finite_values_propagate_where_a_check_would_synchronise(call: Callable[[], Any]) -> None:
    assert torch.isnan(call()).any()


@pytest.mark.parametrize(
    "owner",
    [MixTransform, RemixMixup, PartnerMix, ManifoldMixup, soft_cross_entropy, __import__("remixup.losses").losses],
    ids=lambda o: getattr(o, "__name__", str(o)),
)
def test_the_docstrings_say_what_is_not_checked(owner: Any) -> None:
    assert "NaN" in (owner.__doc__ or ""), owner


# -- no bare ValueError / TypeError in the package -----------------------------------------------------------------

SRC = Path(__file__).resolve().parents[1] / "src" / "remixup"
ALLOWED = {"_validation.py"}  # the one place that defines the error format (it raises the named kinds)


def _bare_raises(path: Path, root: Path = SRC) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id in ("ValueError", "TypeError"):
                found.append(f"{path.relative_to(root)}:{node.lineno} raise {exc.id}")
    return found


def test_no_module_raises_a_bare_value_or_type_error() -> None:
    """User mistakes raise the named kinds (InvalidParameterError, InvalidTypeError, ConfigError, DataError: each a
    ValueError or TypeError too), which the CLI prints as one line; a bare ValueError would be a traceback."""
    modules = sorted(p for p in SRC.rglob("*.py") if p.name not in ALLOWED)
    assert len(modules) > 50
    found = [hit for p in modules for hit in _bare_raises(p)]
    assert found == []


def test_the_ast_check_finds_bare_raises_and_passes_named_ones(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "from remixup.errors import InvalidParameterError\n"
        "def f(x):\n    if x:\n        raise ValueError('bad')\n    if x is None:\n        raise InvalidParameterError('ok')\n"
        "    raise TypeError\n"
    )
    assert sorted(_bare_raises(tmp_path / "m.py", tmp_path)) == ["m.py:4 raise ValueError", "m.py:7 raise TypeError"]
