"""The method registry: every paper name resolves to a declarative composition."""

from __future__ import annotations

import pytest

from remixup.cli import main
from remixup.methods import METHODS, Method, canonical_name, get_method

PAPER_NAMES = [
    "ERM", "Focal", "RW-Focal", "RS", "RW", "DRS", "DRW", "LDAM", "LDAM-DRW", "Mixup", "Manifold Mixup", "CutMix",
    "Mixup-DRW", "Mixup-DRS", "Remix", "Remix-RS", "Remix-RW", "Remix-DRS", "Remix-DRW", "Remix-LDAM-DRW",
    "Remix-LDAM-DRS", "Remix-MM", "Remix-CM", "LA", "BS", "Remix-LA", "Remix-BS",
    "CMO", "CMO-DRW", "CMO-BS", "CMO-LDAM-DRW", "Balanced-MixUp", "UniMix", "MAMix", "MAMix-DRW",
]  # fmt: skip


@pytest.mark.parametrize("paper_name", PAPER_NAMES)
def test_every_paper_name_resolves(paper_name: str) -> None:
    method = get_method(paper_name)
    assert method.name == canonical_name(paper_name)
    assert method.paper_name == paper_name
    assert get_method(method.name.upper()) is method


def test_registry_is_exactly_the_paper_names() -> None:
    assert sorted(METHODS) == sorted(canonical_name(n) for n in PAPER_NAMES)


@pytest.mark.parametrize(
    ("name", "mixer", "labels", "loss", "weighting", "sampling"),
    [
        ("erm", None, "plain", "ce", None, None),
        ("rw-focal", None, "plain", "focal", "rw", None),
        ("remix-drw", "mixup", "remix", "ce", "drw", None),
        ("remix-ldam-drs", "mixup", "remix", "ldam", None, "drs"),
        ("remix-mm", "manifold", "remix", "ce", None, None),
        ("remix-cm", "cutmix", "remix", "ce", None, None),
        ("mixup-drs", "mixup", "plain", "ce", None, "drs"),
        ("remix-bs", "mixup", "remix", "bs", None, None),
    ],
)
def test_compositions(name: str, mixer: str | None, labels: str, loss: str, weighting: str | None, sampling: str | None) -> None:
    m = get_method(name)
    assert (m.mixer, m.labels, m.loss, m.weighting, m.sampling) == (mixer, labels, loss, weighting, sampling)


def test_ldam_methods_use_the_normalised_classifier() -> None:
    assert {n for n, m in METHODS.items() if m.classifier == "norm"} == {"ldam", "ldam-drw", "remix-ldam-drw", "remix-ldam-drs", "cmo-ldam-drw"}


def test_methods_are_frozen_data() -> None:
    with pytest.raises(AttributeError):
        get_method("remix").loss = "focal"  # type: ignore[misc]
    assert isinstance(get_method("remix"), Method)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown method 'remix-xyz': 'xyz' is not a part of a method name; did you mean 'remix'\?"):
        get_method("remix-xyz")
    with pytest.raises(TypeError, match="must be a method name"):
        get_method(3)  # type: ignore[arg-type]


def test_cli_lists_one_line_per_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    listing, grammar = capsys.readouterr().out.split("\n\n")
    lines = listing.splitlines()
    assert len(lines) == len(METHODS)
    assert "remix-drw: mixer=mixup, labels=remix, loss=ce, weighting=drw, sampling=none" in lines
    assert "remix-cm-drw" in grammar


@pytest.mark.parametrize(
    ("name", "canonical", "parts"),
    [
        ("remix-cm-drw", "remix-cm-drw", ("cutmix", "remix", "ce", "drw", None)),
        ("Remix-CutMix-DRW", "remix-cm-drw", ("cutmix", "remix", "ce", "drw", None)),
        ("drw-remix-cm", "remix-cm-drw", ("cutmix", "remix", "ce", "drw", None)),
        ("cutmix-drw", "cutmix-drw", ("cutmix", "plain", "ce", "drw", None)),
        ("remix-mm-ldam-drw", "remix-mm-ldam-drw", ("manifold", "remix", "ldam", "drw", None)),
        ("manifold-mixup-drs", "manifold-mixup-drs", ("manifold", "plain", "ce", None, "drs")),
        ("focal-rw", "rw-focal", (None, "plain", "focal", "rw", None)),  # a registry method by its parts
        ("remix-mixup-ce", "remix", ("mixup", "remix", "ce", None, None)),
    ],
)
def test_composed_names_resolve_to_their_parts(name: str, canonical: str, parts: tuple) -> None:
    method = get_method(name)
    assert method.name == canonical
    assert (method.mixer, method.labels, method.loss, method.weighting, method.sampling) == parts
    assert get_method(method.name) == method  # the canonical name reads back as the same method


def test_composed_names_are_validated() -> None:
    with pytest.raises(ValueError, match=r"'dwr' is not a part of a method name; did you mean 'remix-cm-drw'\?"):
        get_method("remix-cm-dwr")
    with pytest.raises(ValueError, match=r"names two mixer parts \('mixup' and 'cutmix'\)"):
        get_method("mixup-cutmix")
    with pytest.raises(ValueError, match=r"names two weighting parts"):
        get_method("remix-rw-drw")
    with pytest.raises(ValueError, match=r"must name a method"):
        get_method(" ")


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_builds_the_mixing_its_fields_name(name: str) -> None:
    """The method's ``mixer`` and ``labels`` map to the mixing classes the training step calls."""
    import torch

    from remixup.config import MixingConfig
    from remixup.mixing import LABEL_RULES, CutMixMixer, MixTransform, MixupMixer, NoMixing, RemixLabels
    from remixup.mixing.build import build_mixing
    from remixup.mixing.manifold import ManifoldMixup
    from remixup.models import build_model

    method = get_method(name)
    config = MixingConfig(alpha=0.7, kappa=2.5, tau=0.4, per_sample=True)
    gen = torch.Generator()
    if not method.is_classic:  # the mixing family (tests/test_family.py)
        return
    mixing = build_mixing(method, config, build_model("mlp", 3), torch.tensor([50, 10, 2]), gen)
    if method.mixer is None:
        assert type(mixing) is NoMixing
        return
    if method.mixer == "manifold":
        assert type(mixing) is ManifoldMixup and mixing.points[0] == "input" and len(mixing.points) > 1
        mixer = mixing.mixer
    else:
        assert type(mixing) is MixTransform
        mixer = mixing.mixer
        assert type(mixer) is {"mixup": MixupMixer, "cutmix": CutMixMixer}[method.mixer]
    assert (mixer.alpha, mixer.per_sample, mixer.generator) == (0.7, True, gen)
    labels = mixing.labels
    if method.labels == "remix":
        assert type(labels) is RemixLabels and (labels.kappa, labels.tau, list(labels.class_counts)) == (2.5, 0.4, [50, 10, 2])
    else:  # any other rule of the table, built by its name
        assert type(labels) is LABEL_RULES[method.labels]
