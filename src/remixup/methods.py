"""The method registry: every method of the paper (and a few beyond it) by name, as data.

A method is a composition (Remix, arXiv 2007.03943, §4 and Tables 1–5):

    mixer × label policy × loss × class weighting × sampling

- ``mixer``: ``None`` (train on clean samples), ``"mixup"``, ``"cutmix"`` or ``"manifold"`` (hidden layers);
- ``labels``: ``"plain"`` (λy = λx, or the hard label without a mixer) or ``"remix"`` (the Remix rule);
- ``loss``: a name of :func:`remixup.losses.build_loss` (``ce``, ``focal``, ``ldam``, ``cb``, ``la``, ``bs``);
- ``weighting``: ``None``, ``"rw"`` (class weights from the start) or ``"drw"`` (deferred to the recipe's deferral
  epoch);
- ``sampling``: ``None``, ``"rs"`` (class-balanced re-sampling from the start) or ``"drs"`` (deferred).

The class-aware mixing family (:mod:`remixup.mixing.family`, docs/family.md) adds three fields: ``partner``
(``"permutation"``, ``"class-weighted"``, ``"in-batch"``), ``draw`` (how λx is drawn: ``"beta"``, ``"beta-1"``,
``"unimix"``) and CMO's per-batch probability and epoch window (``prob``, ``skip_first``, ``skip_last``); the label
rule gains ``"mamix"``. The config's ``mixing.partner`` and friends override them for any method, so that, for
example, Remix with a class-balanced partner is ``mixing.partner=class-weighted``.

The engine reads these fields; it never branches on a method's name. Names are matched case-insensitively, and
spaces or underscores count as hyphens, so the paper's spellings "Remix-DRW" and "Manifold Mixup" work.

**Composed names.** A name that is not in the registry is read as its parts, hyphen-separated, each part at most
once, in any order (the canonical name puts them in this order)::

    name      := part ("-" part)*
    labels    := "remix"                                   (Remix labels; the mixer is Mixup unless one is named)
    mixer     := "mixup" | "cutmix" | "cm" | "manifold-mixup" | "manifold" | "mm"
    loss      := "ce" | "focal" | "ldam" | "cb" | "la" | "bs"    (default ce)
    weighting := "rw" | "drw"
    sampling  := "rs" | "drs"

So ``remix-cm-drw`` is CutMix + Remix labels + cross-entropy + DRW, ``cutmix-drw`` CutMix with plain labels and
DRW, ``remix-mm-ldam-drw`` manifold Remix with LDAM-DRW. A composition equal to a registry method resolves to it
(``focal-rw`` is ``rw-focal``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from remixup.errors import InvalidParameterError, InvalidTypeError
from remixup.mixing.family import DRAW_RULES, PARTNER_RULES
from remixup.mixing.labels import LABEL_RULES

MIXERS = (None, "mixup", "cutmix", "manifold")
LABEL_POLICIES = tuple(LABEL_RULES)  # the mixing core's tables: a rule added there is a method field value here
PARTNERS = tuple(PARTNER_RULES)
DRAWS = tuple(DRAW_RULES)
WEIGHTINGS = (None, "rw", "drw")
SAMPLINGS = (None, "rs", "drs")


@dataclass(frozen=True)
class Method:
    """One trainable method: what to mix, how to label, which loss, and when to re-balance.

    Attributes:
        name: canonical name (lower case, hyphens), e.g. ``"remix-drw"``.
        mixer: ``None`` | ``"mixup"`` | ``"cutmix"`` | ``"manifold"``.
        labels: ``"plain"`` | ``"remix"``; ``"remix"`` needs a mixer.
        loss: loss name for :func:`remixup.losses.build_loss`.
        weighting: ``None`` | ``"rw"`` | ``"drw"``.
        sampling: ``None`` | ``"rs"`` | ``"drs"``.
        paper_name: the spelling used in the paper's tables.
        partner: ``"permutation"`` | ``"class-weighted"`` | ``"in-batch"`` (:mod:`remixup.mixing.partners`).
        draw: ``"beta"`` | ``"beta-1"`` | ``"unimix"`` (:mod:`remixup.mixing.family`).
        prob: probability that a batch is mixed (CMO: 0.5).
        skip_first, skip_last: epochs without mixing at the start and the end (CMO: 4 and 3, i.e. 3 < e < E − 3).
    """

    name: str
    mixer: str | None = None
    labels: str = "plain"
    loss: str = "ce"
    weighting: str | None = None
    sampling: str | None = None
    paper_name: str = ""
    partner: str = "permutation"
    draw: str = "beta"
    prob: float = 1.0
    skip_first: int = 0
    skip_last: int = 0

    def __post_init__(self) -> None:
        # Internal invariants of the registry below, not user input.
        assert self.mixer in MIXERS and self.labels in LABEL_POLICIES, self
        assert self.partner in PARTNERS and self.draw in DRAWS, self
        assert self.weighting in WEIGHTINGS and self.sampling in SAMPLINGS, self
        assert self.labels == "plain" or self.mixer is not None, self

    @property
    def mixes(self) -> bool:
        """True when the method trains on mixed samples."""
        return self.mixer is not None

    @property
    def is_classic(self) -> bool:
        """True for the methods before the family: a permuted partner, λx ~ Beta(α, α), plain or Remix labels, always."""
        return (self.partner, self.draw, self.prob, self.skip_first, self.skip_last) == ("permutation", "beta", 1.0, 0, 0) and (
            self.labels != "mamix"
        )

    @property
    def deferred(self) -> bool:
        """True when re-weighting or re-sampling waits for the deferral epoch."""
        return self.weighting == "drw" or self.sampling == "drs"

    @property
    def classifier(self) -> str:
        """The classifier head the loss expects: LDAM uses a normalised linear layer (Cao et al. 2019)."""
        return "norm" if self.loss == "ldam" else "linear"

    def describe(self) -> str:
        """One line: ``name: mixer=..., labels=..., loss=..., weighting=..., sampling=...``."""
        parts = [
            f"mixer={self.mixer or 'none'}",
            f"labels={self.labels if self.mixer else '-'}",
            f"loss={self.loss}",
            f"weighting={self.weighting or 'none'}",
            f"sampling={self.sampling or 'none'}",
        ]
        if not self.is_classic:
            parts += [f"partner={self.partner}", f"draw={self.draw}"]
            if (self.prob, self.skip_first, self.skip_last) != (1.0, 0, 0):
                parts.append(f"prob={self.prob:g}, skip={self.skip_first}/{self.skip_last}")
        return f"{self.name}: " + ", ".join(parts)


def _m(name: str, paper: str, **kw: str | float | None) -> tuple[str, Method]:
    return name, Method(name=name, paper_name=paper, **kw)  # type: ignore[arg-type]


METHODS: dict[str, Method] = dict(
    [
        # Baselines without mixing (Table 1 and LDAM-DRW's comparisons).
        _m("erm", "ERM"),
        _m("focal", "Focal", loss="focal"),
        _m("rw-focal", "RW-Focal", loss="focal", weighting="rw"),
        _m("rs", "RS", sampling="rs"),
        _m("rw", "RW", weighting="rw"),
        _m("drs", "DRS", sampling="drs"),
        _m("drw", "DRW", weighting="drw"),
        _m("ldam", "LDAM", loss="ldam"),
        _m("ldam-drw", "LDAM-DRW", loss="ldam", weighting="drw"),
        # Mixing with plain labels.
        _m("mixup", "Mixup", mixer="mixup"),
        _m("manifold-mixup", "Manifold Mixup", mixer="manifold"),
        _m("cutmix", "CutMix", mixer="cutmix"),
        _m("mixup-drw", "Mixup-DRW", mixer="mixup", weighting="drw"),
        _m("mixup-drs", "Mixup-DRS", mixer="mixup", sampling="drs"),
        # Remix and its compositions.
        _m("remix", "Remix", mixer="mixup", labels="remix"),
        _m("remix-rs", "Remix-RS", mixer="mixup", labels="remix", sampling="rs"),
        _m("remix-rw", "Remix-RW", mixer="mixup", labels="remix", weighting="rw"),
        _m("remix-drs", "Remix-DRS", mixer="mixup", labels="remix", sampling="drs"),
        _m("remix-drw", "Remix-DRW", mixer="mixup", labels="remix", weighting="drw"),
        _m("remix-ldam-drw", "Remix-LDAM-DRW", mixer="mixup", labels="remix", loss="ldam", weighting="drw"),
        _m("remix-ldam-drs", "Remix-LDAM-DRS", mixer="mixup", labels="remix", loss="ldam", sampling="drs"),
        _m("remix-mm", "Remix-MM", mixer="manifold", labels="remix"),
        _m("remix-cm", "Remix-CM", mixer="cutmix", labels="remix"),
        # Beyond the paper: logit adjustment (Menon et al. 2021) and balanced softmax (Ren et al. 2020).
        _m("la", "LA", loss="la"),
        _m("bs", "BS", loss="bs"),
        _m("remix-la", "Remix-LA", mixer="mixup", labels="remix", loss="la"),
        _m("remix-bs", "Remix-BS", mixer="mixup", labels="remix", loss="bs"),
        # The class-aware mixing family (remixup.mixing.family, docs/family.md), with their authors' code's settings.
        # CMO (Park et al. 2022): a CutMix box of a class-weighted batch pasted into the batch, p = 0.5, 3 < e < E − 3.
        *(
            _m(name, paper, mixer="cutmix", partner="class-weighted", prob=0.5, skip_first=4, skip_last=3, **kw)
            for name, paper, kw in (
                ("cmo", "CMO", {}),
                ("cmo-drw", "CMO-DRW", {"weighting": "drw"}),
                ("cmo-bs", "CMO-BS", {"loss": "bs"}),
                ("cmo-ldam-drw", "CMO-LDAM-DRW", {"loss": "ldam", "weighting": "drw"}),
            )
        ),
        # Balanced-MixUp (Galdran et al. 2021): x = (1 − λ)·x_A + λ·x_B, B class-balanced, λ ~ Beta(α, 1).
        _m("balanced-mixup", "Balanced-MixUp", mixer="mixup", partner="class-weighted", draw="beta-1"),
        # UniMix with its Bayias loss (Xu et al. 2021); on a balanced test set Bayias is the logit-adjusted loss, τ = 1.
        _m("unimix", "UniMix", mixer="mixup", partner="in-batch", draw="unimix", loss="la"),
        # MAMix (imbalanced-DL): a permuted partner, the label weight piecewise linear in λx.
        _m("mamix", "MAMix", mixer="mixup", labels="mamix"),
        _m("mamix-drw", "MAMix-DRW", mixer="mixup", labels="mamix", weighting="drw"),
    ]
)


def canonical_name(name: str) -> str:
    """Lower-case ``name`` and turn runs of spaces/underscores/hyphens into one hyphen ("Manifold Mixup" → "manifold-mixup")."""
    return re.sub(r"[\s_\-]+", "-", str(name).strip().lower())


# The parts of a composed name (see the module docstring): part -> (slot, value).
PARTS: dict[str, tuple[str, str]] = {
    "remix": ("labels", "remix"),
    "mixup": ("mixer", "mixup"),
    "cutmix": ("mixer", "cutmix"),
    "cm": ("mixer", "cutmix"),
    "manifold": ("mixer", "manifold"),
    "mm": ("mixer", "manifold"),
    **{loss: ("loss", loss) for loss in ("ce", "focal", "ldam", "cb", "la", "bs")},
    "rw": ("weighting", "rw"),
    "drw": ("weighting", "drw"),
    "rs": ("sampling", "rs"),
    "drs": ("sampling", "drs"),
}
GRAMMAR = "[remix-][mixup|cutmix|cm|manifold-mixup|mm-][ce|focal|ldam|cb|la|bs-][rw|drw-][rs|drs]"
_PAPER_SPELLING = {"focal": "Focal"}


def _compose(key: str) -> Method:
    """The method a composed (canonical) name describes; raises ``ValueError`` naming the first bad part."""
    tokens = key.replace("manifold-mixup", "manifold").split("-")
    slots: dict[str, str] = {}
    for token in tokens:
        if token not in PARTS:
            from remixup._validation import closest

            close = closest(token, PARTS)
            fixed = key.replace(token, close, 1) if close else None
            fixed = fixed if fixed and _try_compose(fixed) else closest(key, METHODS)
            hint = f"; did you mean {fixed!r}?" if fixed else ""
            raise InvalidParameterError(f"unknown method {key!r}: {token!r} is not a part of a method name{hint} "
                                        f"(a name is {GRAMMAR}; `remixup methods` lists the named ones)")  # fmt: skip
        slot, value = PARTS[token]
        if slot in slots:
            raise InvalidParameterError(f"method {key!r} names two {slot} parts ({slots[slot]!r} and {value!r}); "
                                        f"a name is {GRAMMAR}")  # fmt: skip
        slots[slot] = value
    labels = slots.get("labels", "plain")
    mixer = slots.get("mixer", "mixup" if labels == "remix" else None)
    parts = dict(mixer=mixer, labels=labels, loss=slots.get("loss", "ce"), weighting=slots.get("weighting"),
                 sampling=slots.get("sampling"))  # fmt: skip
    for method in METHODS.values():  # a composed name never means a family method (its partner is not a part)
        if method.is_classic and all(getattr(method, k) == v for k, v in parts.items()):
            return method
    short = {"cutmix": "cm", "manifold": "mm"}
    if labels == "remix":
        first = (
            "remix" + (f"-{short[mixer]}" if mixer in short else ""),
            "Remix" + (f"-{short[mixer].upper()}" if mixer in short else ""),
        )
    else:
        first = {None: ("", ""), "mixup": ("mixup", "Mixup"), "cutmix": ("cutmix", "CutMix"),
                 "manifold": ("manifold-mixup", "Manifold Mixup")}[mixer]  # fmt: skip
    rest = [p for p in (parts["loss"] if parts["loss"] != "ce" else None, parts["weighting"], parts["sampling"]) if p]
    name = "-".join(w for w in (first[0], *rest) if w)
    paper = "-".join(w for w in (first[1], *(_PAPER_SPELLING.get(p, p.upper()) for p in rest)) if w)
    return Method(name=name, paper_name=paper, **parts)  # type: ignore[arg-type]


def _try_compose(key: str) -> bool:
    try:
        _compose(key)
    except InvalidParameterError:
        return False
    return True


def get_method(name: str) -> Method:
    """Look a method up by name (case-insensitive; the paper's spelling works), or compose it from its parts.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: a name that is neither registered nor a valid composition; the message names the bad part
            and suggests the closest valid name.
    """
    if not isinstance(name, str):
        raise InvalidTypeError(f"`method` must be a method name (str); got {name!r} of type {type(name).__name__}")
    key = canonical_name(name)
    if key in METHODS:
        return METHODS[key]
    if not key:
        raise InvalidParameterError(f"`method` must name a method; got {name!r} (`remixup methods` lists them)")
    return _compose(key)
