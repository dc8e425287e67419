"""The drop-ins' contract inside a DataLoader's ``collate_fn`` with two worker processes, for every mixing method.

``RemixMixup``, ``Remix`` and the family's ``PartnerMix`` (one per distinct input mixing among the registered and
composed methods: operator, partner, λ draw, label rule, probability, window) each mix every batch of a 2-worker DataLoader: the workers must draw
differently (λ and pairing never repeat between batches, workers or epochs), the same seeds must repeat the same
draws, inputs stay unchanged and every soft-target row sums to one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset, default_collate

from _contract import NAMES, method
from remixup import Remix, RemixMixup
from remixup.mixing import PartnerMix, label_rule

COUNTS = [30, 12, 6]  # 48 samples of three classes, long-tailed
C = len(COUNTS)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    return torch.rand(len(y), 3, 16, 16, generator=g), y


def _partner_mix(name: str) -> Callable[[torch.Generator], Any]:
    m = method(name)
    return lambda g: PartnerMix(mixer=m.mixer, labels=label_rule(m.labels, COUNTS), class_counts=COUNTS, partner=m.partner, draw=m.draw,
                                prob=m.prob, skip_first=m.skip_first, skip_last=m.skip_last, epochs=10, generator=g)  # fmt: skip


def _one_per_mixing() -> list[str]:
    """The first name of each distinct input mixing (operator, label rule, partner, λ draw, probability, window): the
    drop-in does not see the loss or the re-balancing."""
    seen: dict[tuple, str] = {}
    for n in NAMES:
        m = method(n)
        if m.mixer in ("mixup", "cutmix"):
            seen.setdefault((m.mixer, m.labels, m.partner, m.draw, m.prob, m.skip_first, m.skip_last), n)
    return list(seen.values())


DROPINS: dict[str, Callable[[torch.Generator], Any]] = {
    "RemixMixup-batch": lambda g: RemixMixup(mixup_alpha=1.0, cutmix_alpha=1.0, class_counts=COUNTS, generator=g),
    "RemixMixup-elem": lambda g: RemixMixup(mixup_alpha=1.0, mode="elem", class_counts=COUNTS, generator=g),
    "Remix-mixup": lambda g: Remix(COUNTS, generator=g),
    "Remix-cutmix": lambda g: Remix(COUNTS, mode="cutmix", generator=g),
    **{f"PartnerMix-{n}": _partner_mix(n) for n in _one_per_mixing()},
}


def _draws(make: Callable[[torch.Generator], Any], *, loader_seed: int, workers: int = 2, epochs: int = 2) -> list[tuple]:
    """Every batch's (λx, pairing) drawn in the collate_fn of a shuffled DataLoader with ``workers`` processes."""
    transform = make(torch.Generator().manual_seed(0))

    def collate(samples: list) -> tuple:
        x, y = default_collate(samples)
        before = x.clone()
        # the class-weighted partner's second batch is the caller's to pass; the other partners ignore it
        extra = {"partner": (x.flip(0), y.flip(0))} if isinstance(transform, PartnerMix) else {}
        x_mixed, target, record = transform.mix(x, y, **extra)
        assert torch.equal(x, before), "the drop-in modified its input"
        assert x_mixed.shape == x.shape and target.shape == (len(y), C)
        assert torch.allclose(target.sum(1), torch.ones(len(y))), "soft-target rows must sum to one"
        called = transform(x, y, **extra)  # the drop-in's own call: (x_mixed, y_soft), or the batch unchanged when not mixed
        assert called[0].shape == x.shape and torch.equal(x, before)
        box = (x_mixed != x).any(1).flatten().tolist()  # where the partner shows (CutMix's box; everywhere for Mixup)
        return (*record.lam_x.tolist(), *record.perm.tolist(), *box)  # what was drawn, not the batch's contents

    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=6, shuffle=True, num_workers=workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(loader_seed))  # fmt: skip
    return [key for _ in range(epochs) for key in loader]


@pytest.mark.slow  # spawns DataLoader workers
@pytest.mark.parametrize("dropin", list(DROPINS))
def test_dropin_in_two_workers_draws_differently_and_reproducibly(dropin: str) -> None:
    first = _draws(DROPINS[dropin], loader_seed=1)
    assert len(first) == 16
    repeated = len(first) - len(set(first))
    assert not repeated, f"{dropin}: {repeated} of 16 batches repeat another batch's draws (the two workers draw alike)"
    assert _draws(DROPINS[dropin], loader_seed=1, epochs=1) == first[:8]  # the same seeds, the same draws
    assert _draws(DROPINS[dropin], loader_seed=2, epochs=1) != first[:8]  # the loader's seed moves the workers' draws
