"""The mixing family against independent formulas: UniMix's λ, MAMix's map, CMO's area label, probability and window,
Balanced-MixUp's λ, the permutation partner's identity with MixTransform, Bayias = LA, and the telemetry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from remixup.config import MethodConfig, MixingConfig, TrainConfig, apply_override
from remixup.errors import ConfigError, InvalidParameterError
from remixup.losses import build_loss
from remixup.methods import METHODS, Method, get_method
from remixup.mixing import CutMixMixer, MixRecord, MixTransform, MixupLabels, MixupMixer, RemixLabels, sample_beta
from remixup.mixing.build import build_mixing
from remixup.mixing.family import MixStats, PartnerMix, unimix_lambda
from remixup.mixing.labels import MAMixLabels, mamix_label_factor

COUNTS = [500, 120, 40, 9]


def _batch(b: int = 16, shape=(3, 8, 8), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, *shape, generator=g), torch.randint(0, 4, (b,), generator=g)


# ------------------------------------------------------------------------------------------------ UniMix's λ
@pytest.mark.parametrize("wrap", ["wrap", "clip"])
def test_unimix_lambda_matches_the_authors_formula(wrap: str) -> None:
    rng = np.random.default_rng(0)
    ni, nj = rng.integers(1, 500, 1000), rng.integers(1, 500, 1000)
    xi = rng.beta(0.8, 0.8, 1000)
    lam = nj / (ni + nj) + xi
    expected = np.array([t - 1 if t > 1 else t for t in lam]) if wrap == "wrap" else np.minimum(lam, 1)
    got = unimix_lambda(torch.from_numpy(ni), torch.from_numpy(nj), torch.from_numpy(xi), wrap=wrap)
    assert (lam > 1).any()  # the wrap is exercised
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-6)
    assert got.min() >= 0 and got.max() <= 1


def test_unimix_mixing_draws_in_batch_partners_then_xi() -> None:
    """PartnerMix's UniMix: partner j by p ∝ n^t, then λ = n_j/(n_i+n_j) + ξ for image and label alike."""
    x, y = _batch()
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    mix = PartnerMix(mixer="mixup", labels=MixupLabels(), class_counts=COUNTS, partner="in-batch", exponent=-0.5, draw="unimix",
                     alpha=0.8, generator=torch.Generator().manual_seed(4))  # fmt: skip
    x_mixed, target, rec = mix.mix(x, y)
    g = torch.Generator().manual_seed(4)  # the same draws, by hand
    u = torch.rand(16, generator=g, dtype=torch.float64)
    w = counts[y] ** -0.5
    j = torch.searchsorted(torch.cumsum(w, 0), u * w.sum(), right=True)
    xi = sample_beta(0.8, 16, generator=g).double()
    lam = counts[y[j]] / (counts[y] + counts[y[j]]) + xi
    lam = torch.where(lam > 1, lam - 1, lam)
    assert torch.equal(rec.perm, j) and torch.equal(rec.y_partner, y[j])
    torch.testing.assert_close(rec.lam_x.double(), lam, rtol=0, atol=1e-6)
    assert torch.equal(rec.lam_y, rec.lam_x)
    torch.testing.assert_close(x_mixed, rec.lam_x[:, None, None, None] * x + (1 - rec.lam_x[:, None, None, None]) * x[j])
    assert torch.allclose(target.sum(1), torch.ones(16))


# ------------------------------------------------------------------------------------------------ MAMix's map
def test_mamix_map_on_both_sides_of_the_breakpoint() -> None:
    n_i, n_j, f = torch.tensor([9.0]), torch.tensor([500.0]), -0.25
    k_i, k_j = 9.0**f, 500.0**f
    b = k_i / (k_i + k_j)  # the partner share at which the label is split evenly (> ½: i is the rarer class)
    assert b > 0.5
    for s in [0.0, 0.2, b - 1e-3, b, b + 1e-3, 0.8, 0.97, 1.0]:
        expected = float(np.interp(s, [0.0, b, 1.0], [1.0, 0.5, 0.0]))  # the piecewise-linear map, independently
        got = float(mamix_label_factor(torch.tensor([1.0 - s]), n_i, n_j, f))
        assert got == pytest.approx(expected, abs=1e-6), s
    assert float(mamix_label_factor(torch.tensor([1.0 - b], dtype=torch.float64), n_i, n_j, f)) == pytest.approx(0.5, abs=1e-6)
    # swapped roles: the majority sample loses its label faster
    assert float(mamix_label_factor(torch.tensor([0.5]), n_j, n_i, f)) < 0.5 < float(mamix_label_factor(torch.tensor([0.5]), n_i, n_j, f))
    labels = MAMixLabels(COUNTS)
    y, yp = torch.tensor([3, 0, 1]), torch.tensor([0, 3, 1])
    lam = labels(y, yp, torch.tensor([0.5, 0.5, 0.3]))
    assert lam[0] > 0.5 > lam[1] and float(lam[2]) == pytest.approx(0.3)  # equal classes: λy = λx


# ------------------------------------------------------------------------------------------------ CMO
def test_cmo_area_label_after_clipping() -> None:
    """A box of the foreground pasted into the background; λ is the exact kept share, the label λ·e_y + (1−λ)·e_y2."""
    b = 64
    x, y = torch.zeros(b, 3, 8, 8), torch.randint(0, 4, (b,), generator=torch.Generator().manual_seed(0))
    x2, y2 = torch.ones(b + 5, 3, 8, 8), torch.randint(0, 4, (b + 5,), generator=torch.Generator().manual_seed(1))
    mix = PartnerMix(mixer="cutmix", labels=MixupLabels(), class_counts=COUNTS, partner="class-weighted", per_sample=True,
                     generator=torch.Generator().manual_seed(2))  # fmt: skip
    x_mixed, target, rec = mix.mix(x, y, (x2, y2))
    pasted = x_mixed[:, 0].mean(dim=(1, 2))  # share of foreground pixels, counted from the image
    torch.testing.assert_close(rec.lam_x, 1 - pasted)
    assert (rec.lam_x < 1).any() and (rec.lam_x > 0).all() and len(set(rec.lam_x.tolist())) > 10
    expected = torch.zeros(b, 4)
    expected[torch.arange(b), y] += rec.lam_x
    expected[torch.arange(b), y2[:b]] += 1 - rec.lam_x
    torch.testing.assert_close(target, expected)
    assert (x == 0).all()  # inputs untouched


def test_cmo_probability_and_epoch_window() -> None:
    x, y = _batch(8)
    mix = PartnerMix(mixer="cutmix", labels=MixupLabels(), class_counts=COUNTS, partner="in-batch", prob=0.5, skip_first=4,
                     skip_last=3, epochs=10, generator=torch.Generator().manual_seed(0))  # fmt: skip
    # the authors' condition: start_data_aug < epoch < epochs - end_data_aug, with 3 and 3
    assert [e for e in range(10) if mix.active(e)] == [e for e in range(10) if 3 < e < 10 - 3]
    mix.set_epoch(2)
    assert all(mix(x, y)[1] is y for _ in range(50))
    mix.set_epoch(5)
    n = 4000
    mixed = sum(mix(x, y)[1].ndim == 2 for _ in range(n))
    assert abs(mixed / n - 0.5) < 5 * math.sqrt(0.25 / n)
    stats = mix.epoch_stats()
    assert sum(stats["partner_classes"]) == mixed * 8
    assert mix.epoch_stats() == {}  # reset


# ------------------------------------------------------------------------------------------------ Balanced-MixUp
@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_balanced_mixup_partner_share_has_mean_alpha_over_alpha_plus_one(alpha: float) -> None:
    b = 20_000
    x, y = torch.zeros(b, 2), torch.zeros(b, dtype=torch.int64)
    x2, y2 = torch.ones(b, 2), torch.full((b,), 3)
    mix = PartnerMix(mixer="mixup", labels=MixupLabels(), class_counts=COUNTS, partner="class-weighted", draw="beta-1",
                     alpha=alpha, per_sample=True, generator=torch.Generator().manual_seed(0))  # fmt: skip
    x_mixed, target, rec = mix.mix(x, y, (x2, y2))
    share = 1 - rec.lam_x.double()
    sd = math.sqrt(alpha / ((alpha + 1) ** 2 * (alpha + 2)) / b)
    assert abs(float(share.mean()) - alpha / (alpha + 1)) < 5 * sd
    torch.testing.assert_close(x_mixed[:, 0], share.float())  # x = (1 − λ)·x_A + λ·x_B
    torch.testing.assert_close(target[:, 3], share.float())


# ------------------------------------------------------------------------------------------------ identity and seeds
@pytest.mark.parametrize("mixer", ["mixup", "cutmix"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_permutation_partner_draws_what_mix_transform_draws(mixer: str, per_sample: bool) -> None:
    x, y = _batch(32)
    cls = MixupMixer if mixer == "mixup" else CutMixMixer
    old = MixTransform(cls(0.7, per_sample=per_sample, generator=torch.Generator().manual_seed(9)), RemixLabels(COUNTS),
                       num_classes=4)  # fmt: skip
    new = PartnerMix(mixer=mixer, labels=RemixLabels(COUNTS), class_counts=COUNTS, alpha=0.7, per_sample=per_sample,
                     generator=torch.Generator().manual_seed(9))  # fmt: skip
    for _ in range(3):
        a, b = old.mix(x, y), new.mix(x, y)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(a[2].perm, b[2].perm) and torch.equal(a[2].lam_y, b[2].lam_y)


@pytest.mark.parametrize("partner", ["permutation", "in-batch", "class-weighted"])
def test_same_generator_same_mix_and_inputs_unchanged(partner: str) -> None:
    x, y = _batch()
    x2, y2 = _batch(seed=1)
    before = x.clone()
    outs = [
        PartnerMix(mixer="cutmix", labels=MAMixLabels(COUNTS), class_counts=COUNTS, partner=partner,
                   generator=torch.Generator().manual_seed(1)).mix(x, y, (x2, y2))  # fmt: skip
        for _ in range(2)
    ]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert torch.equal(x, before)


def test_bayias_loss_on_a_balanced_test_set_is_the_logit_adjusted_loss() -> None:
    """UniMix's Bayias: CE(z + log π_train − log π_test); with π_test uniform that is LA with τ = 1 (reused)."""
    g = torch.Generator().manual_seed(0)
    z, t = torch.randn(32, 4, generator=g), torch.randint(0, 4, (32,), generator=g)
    prior = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    bayias = nn.functional.cross_entropy(z.double() + prior.log() - torch.full((4,), 0.25).log(), t)
    la = build_loss(get_method("unimix").loss, class_counts=COUNTS)
    assert get_method("unimix").loss == "la" and la.tau_la == 1.0
    torch.testing.assert_close(la(z, t).double(), bayias, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------ telemetry
def test_mix_stats_against_a_hand_count() -> None:
    stats = MixStats(torch.tensor([500, 50, 5]))  # many, medium, few
    y, yp = torch.tensor([0, 2, 1, 0]), torch.tensor([2, 0, 1, 1])
    lam_x = torch.tensor([0.4, 0.9, 0.5, 0.7])
    lam_y = torch.tensor([0.0, 0.9, 0.5, 0.7])  # pair 0: the label moved to the few-shot partner
    stats.update(MixRecord(lam_x=lam_x, lam_y=lam_y, perm=torch.zeros(4, dtype=torch.int64), y=y, y_partner=yp))
    r = stats.result()
    assert r["partner_classes"] == [1, 2, 1]
    assert (r["partner_many"], r["partner_medium"], r["partner_few"]) == (0.25, 0.5, 0.25)
    assert r["label_to_minority"] == pytest.approx(1 / 3)  # pairs 0, 1, 3 have unequal counts; only pair 0 moved
    assert r["minority_label_share"] == pytest.approx((1.0 + 0.9 + 0.3) / 3)
    # label weight per group: many gets 0.0, 0.1, 0.7; medium 0.5, 0.5, 0.3; few 1.0, 0.9
    assert r["label_weight_many"] == pytest.approx(0.8 / 3)
    assert r["label_weight_medium"] == pytest.approx(1.3 / 3)
    assert r["label_weight_few"] == pytest.approx(0.95)


# ------------------------------------------------------------------------------------------------ methods and config
def test_family_methods_are_registered_with_their_axes() -> None:
    cmo = get_method("CMO")
    assert (cmo.mixer, cmo.partner, cmo.prob, cmo.skip_first, cmo.skip_last, cmo.loss) == ("cutmix", "class-weighted", 0.5, 4, 3, "ce")
    assert get_method("cmo-bs").loss == "bs" and get_method("cmo-ldam-drw").classifier == "norm"
    assert get_method("cmo-drw").weighting == "drw" and get_method("mamix-drw").weighting == "drw"
    assert (get_method("Balanced-MixUp").draw, get_method("balanced_mixup").partner) == ("beta-1", "class-weighted")
    assert (get_method("unimix").partner, get_method("unimix").draw) == ("in-batch", "unimix")
    assert get_method("mamix").labels == "mamix" and get_method("mamix").is_classic is False
    assert all(METHODS[m].is_classic for m in ("mixup", "remix", "remix-cm", "remix-mm", "cutmix"))
    assert "partner=class-weighted" in cmo.describe() and "partner" not in get_method("remix").describe()


def effective(name: str, mixing: MixingConfig) -> Method:
    """The effective method of ``name`` under ``mixing``'s overrides, as a run resolves it."""
    return TrainConfig(method=MethodConfig(name=name), mixing=mixing).effective_method()


def test_build_mixing_routes_the_family_and_the_overrides() -> None:
    model = nn.Linear(4, 4)
    counts = torch.tensor(COUNTS)
    g = torch.Generator()
    plain = build_mixing(effective("remix", MixingConfig()), MixingConfig(), model, counts, g)
    assert type(plain) is MixTransform
    inb = build_mixing(effective("remix", MixingConfig(partner="in-batch", partner_exponent=-0.1)), MixingConfig(partner="in-batch", partner_exponent=-0.1), model, counts, g)
    assert type(inb) is PartnerMix and (inb.partner, inb.exponent) == ("in-batch", -0.1)
    assert isinstance(inb.labels, RemixLabels)
    uni = build_mixing(effective("unimix", MixingConfig()), MixingConfig(), model, counts, g)
    assert (uni.alpha, uni.wrap, uni.exponent) == (0.8, "wrap", -0.5)
    assert build_mixing(effective("balanced-mixup", MixingConfig(partner="permutation")), MixingConfig(partner="permutation"), model, counts, g).alpha == 0.2
    with pytest.raises(ConfigError, match="a class-weighted partner draws from the training set"):
        build_mixing(effective("cmo", MixingConfig()), MixingConfig(), model, counts, g)
    mm = build_mixing(effective("remix-mm", MixingConfig(partner="in-batch")), MixingConfig(partner="in-batch"), model, counts, g)
    assert type(mm) is PartnerMix and (mm.mixer, mm.partner, mm.points) == ("manifold", "in-batch", ["input"])


def test_config_keys_parse_and_validate() -> None:
    c = TrainConfig()
    for item in ("mixing.partner=class-weighted", "mixing.partner_exponent=-0.5", "mixing.prob=0.25", "mixing.skip_first=2",
                 "mixing.unimix_wrap=clip"):  # fmt: skip
        apply_override(c, item)
    assert (c.mixing.partner, c.mixing.partner_exponent, c.mixing.prob, c.mixing.skip_first) == ("class-weighted", -0.5, 0.25, 2)
    c.validate()
    apply_override(c, "mixing.prob=null")
    assert c.mixing.prob is None
    assert TrainConfig.from_dict(c.to_dict()).mixing == c.mixing
    c.mixing.partner = "nearest"
    with pytest.raises(InvalidParameterError, match="`mixing.partner` must be one of 'auto', 'permutation'"):
        c.validate()
    c.mixing.partner = "auto"
    c.mixing.prob = 1.5
    with pytest.raises(InvalidParameterError, match=r"`mixing.prob` must be in \[0, 1\]; got 1.5"):
        c.validate()


def test_partner_mix_errors() -> None:
    with pytest.raises(InvalidParameterError, match="`partner` of `PartnerMix` must be one of"):
        PartnerMix(mixer="mixup", labels=MixupLabels(), class_counts=COUNTS, partner="nearest")
    with pytest.raises(InvalidParameterError, match="`skip_last` of `PartnerMix` needs `epochs`"):
        PartnerMix(mixer="mixup", labels=MixupLabels(), class_counts=COUNTS, skip_last=3)
    cw = PartnerMix(mixer="mixup", labels=MixupLabels(), class_counts=COUNTS, partner="class-weighted")
    with pytest.raises(InvalidParameterError, match="a class-weighted `PartnerMix` needs the second batch"):
        cw.mix(*_batch())


def test_reproduce_family_lists_its_grid(capsys, tmp_path) -> None:
    from remixup import reproduce as rp
    from remixup.cli import main
    from remixup.experiments import enumerate_runs, get_experiment

    family = get_experiment("family")
    runs = enumerate_runs(family)
    assert len(runs) == 10 * 2 * 5 and {r.recipe for r in runs} == {"ldam"}
    assert {r.method for r in runs} >= {"cmo", "cmo-drw", "cmo-bs", "cmo-ldam-drw", "balanced-mixup", "unimix", "mamix",
                                        "mamix-drw", "mixup-drw", "remix-drw"}  # fmt: skip
    unimix = {r.column.dataset: r.overrides for r in runs if r.method == "unimix" and r.seed == 0}
    assert unimix == {"cifar10": (), "cifar100": ("mixing.partner_exponent=-0.1",)}
    forks = rp.plan_forks(enumerate_runs(family, seeds=[0])).forks
    assert {v[0].split("_")[1] for v in forks.values()} == {"cmo", "mamix"}  # never plain CutMix or Mixup
    assert main(["reproduce", "family", "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "family: 100 runs (10 rows x 2 columns x 5 seeds" in out and out.count("\n[") == 100


def test_report_plots_the_family_telemetry(tmp_path) -> None:
    from remixup.report import Run, plot_family

    rows = [{"epoch": e, "partner_few": 0.3 + 0.01 * e, "label_weight_few": 0.6} for e in (1, 2, 3)]
    assert plot_family([Run(tmp_path / "a", None, rows)], tmp_path / "family.png") == tmp_path / "family.png"
    assert (tmp_path / "family.png").stat().st_size > 0
    assert plot_family([Run(tmp_path / "b", None, [{"epoch": 1, "lam_y_forced": 0.1}])], tmp_path / "none.png") is None


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.head = nn.Linear(16, 4)
        self.mixing_points = ["input", "body"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_manifold_with_a_permutation_partner_draws_what_manifold_mixup_draws() -> None:
    from remixup.mixing.manifold import ManifoldMixup

    torch.manual_seed(0)
    net = _Net()
    x, y = _batch(16)
    old = ManifoldMixup(net, net.mixing_points, labels=RemixLabels(COUNTS), num_classes=4, alpha=0.5,
                        generator=torch.Generator().manual_seed(3))  # fmt: skip
    new = PartnerMix(mixer="manifold", labels=RemixLabels(COUNTS), class_counts=COUNTS, alpha=0.5, model=net,
                     points=net.mixing_points, generator=torch.Generator().manual_seed(3))  # fmt: skip
    for _ in range(4):  # both points get drawn
        a, b = old.mix_forward(net, x, y), new.mix_forward(net, x, y)
        assert torch.equal(a.logits, b.logits) and torch.equal(a.target, b.target)


@pytest.mark.parametrize("partner", ["in-batch", "class-weighted"])
def test_manifold_with_other_partners(partner: str) -> None:
    class Source:
        def next(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
            return _batch(b + 3, seed=7)

    net = _Net()
    x, y = _batch(16)
    mix = PartnerMix(mixer="manifold", labels=MixupLabels(), class_counts=COUNTS, partner=partner, partners=Source(),
                     model=net, points=["body"], generator=torch.Generator().manual_seed(0))  # fmt: skip
    out = mix.mix_forward(net, x, y)
    assert out.logits.shape == (16, 4) and out.target.shape == (16, 4)
    if partner == "class-weighted":
        assert torch.equal(out.record.y_partner, _batch(19, seed=7)[1][:16])
    net.eval()  # BatchNorm statistics differ once the batch holds the partners: compare in eval mode
    mix2 = PartnerMix(mixer="manifold", labels=MixupLabels(), class_counts=COUNTS, partner=partner, partners=Source(),
                      model=net, points=["body"], generator=torch.Generator().manual_seed(0))  # fmt: skip
    out2 = mix2.mix_forward(net, x, y)
    lam = out2.record.lam_x[:, None]
    h = net.body(x)
    hp = h[out2.record.perm] if partner == "in-batch" else net.body(_batch(19, seed=7)[0][:16])
    torch.testing.assert_close(out2.logits, net.head(lam * h + (1 - lam) * hp))
    with pytest.raises(InvalidParameterError, match="call `mix_forward`"):
        mix.mix(x, y)


def test_forks_respect_the_family_axes_and_cmo_window(tmp_path) -> None:
    from pathlib import Path

    from remixup.compat import continue_config
    from remixup.errors import UserError

    def cfg(method: str, epochs: int) -> TrainConfig:
        c = TrainConfig()
        c.method.name, c.run.epochs = method, epochs
        return c

    path = Path(tmp_path / "checkpoint.pt")
    with pytest.raises(UserError, match="mix, label or compute the loss differently"):
        continue_config(cfg("cmo-drw", 20), cfg("cutmix", 20).to_dict(), path, mode="fork", epoch=10)
    assert continue_config(cfg("cmo-drw", 20), cfg("cmo", 20).to_dict(), path, mode="fork", epoch=10).method.name == "cmo-drw"
    with pytest.raises(UserError, match="epoch 18 would have mixed differently"):
        continue_config(cfg("cmo-drw", 30), cfg("cmo", 20).to_dict(), path, mode="fork", epoch=18)
    assert continue_config(cfg("cmo-drw", 30), cfg("cmo", 20).to_dict(), path, mode="fork", epoch=16).run.epochs == 30
