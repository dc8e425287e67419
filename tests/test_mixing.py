"""The Remix label rule and the batch mixers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from remixup import (
    CutMixMixer,
    MixTransform,
    MixupLabels,
    MixupMixer,
    Remix,
    RemixLabels,
    remix_label_factor,
    sample_beta,
    soft_targets,
)

counts = st.integers(min_value=1, max_value=10_000)
lams = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
kappas = st.floats(min_value=1.0, max_value=100.0, allow_nan=False)
taus = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


def reference_rule(lam: float, n_i: int, n_j: int, kappa: float, tau: float) -> float:
    """The rule written out for one pair, in exact rational arithmetic for the count ratios."""
    if n_i >= kappa * n_j and lam < tau:
        return 0.0
    if n_j >= kappa * n_i and 1 - lam < tau:
        return 1.0
    return lam


# --- the label rule -----------------------------------------------------------------------------------------


@given(lam=lams, n_i=counts, n_j=counts, kappa=kappas, tau=taus)
def test_rule_matches_reference(lam, n_i, n_j, kappa, tau):
    # the rule: "λy = 0 if ni/nj ≥ κ and λx < τ; λy = 1 if ni/nj ≤ 1/κ and 1−λx < τ; λy = λx otherwise"
    lam32 = float(np.float32(lam))
    assume(abs(n_i / n_j - kappa) > 1e-9 and abs(n_j / n_i - kappa) > 1e-9)  # ties are tested by hand below
    got = remix_label_factor(torch.tensor([lam32]), torch.tensor([n_i]), torch.tensor([n_j]), kappa, tau)
    assert got.item() == pytest.approx(reference_rule(lam32, n_i, n_j, kappa, tau), abs=0)


@given(lam=lams, n_i=counts, n_j=counts, kappa=kappas, tau=taus)
def test_rule_output_is_zero_lam_or_one(lam, n_i, n_j, kappa, tau):
    lam_t = torch.tensor([lam], dtype=torch.float32)
    got = remix_label_factor(lam_t, torch.tensor([n_i]), torch.tensor([n_j]), kappa, tau).item()
    assert got in (0.0, 1.0, lam_t.item())


@given(lam=lams, n_i=counts, n_j=counts, kappa=kappas)
def test_tau_zero_is_mixup(lam, n_i, n_j, kappa):
    # "τ = 0 gives the base method exactly"
    lam_t = torch.tensor([lam], dtype=torch.float32)
    assert torch.equal(remix_label_factor(lam_t, torch.tensor([n_i]), torch.tensor([n_j]), kappa, 0.0), lam_t)


@given(lam=lams, n_i=counts, n_j=counts, tau=taus)
def test_huge_kappa_is_mixup(lam, n_i, n_j, tau):
    lam_t = torch.tensor([lam], dtype=torch.float32)
    assert torch.equal(remix_label_factor(lam_t, torch.tensor([n_i]), torch.tensor([n_j]), 1e9, tau), lam_t)


dyadic = st.integers(0, 1024).map(lambda k: k / 1024)  # 1 − (1 − λ) == λ exactly for these


@given(lam=dyadic, n_i=counts, n_j=counts, kappa=kappas, tau=dyadic)
def test_swapping_the_pair_is_consistent(lam, n_i, n_j, kappa, tau):
    # (i, j, λx) and (j, i, 1 − λx) describe the same mixed image, so they must give the same label.
    assume(not (kappa == 1.0 and n_i == n_j))  # the one documented tie, where the first rule wins
    lam64 = torch.tensor([lam], dtype=torch.float64)
    a = remix_label_factor(lam64, torch.tensor([n_i]), torch.tensor([n_j]), kappa, tau)
    b = remix_label_factor(1 - lam64, torch.tensor([n_j]), torch.tensor([n_i]), kappa, tau)
    assert (a + b).item() == 1.0


@pytest.mark.parametrize(
    ("lam", "n_i", "n_j", "expected"),
    [
        (0.2, 3000, 1000, 0.0),  # ratio exactly κ and λx < τ: the minority partner takes the label
        (0.2, 2999, 1000, 0.2),  # ratio just below κ: plain Mixup label
        (0.5, 5000, 50, 0.5),  # λx = τ is not < τ
        (0.49, 5000, 50, 0.0),
        (0.8, 50, 5000, 1.0),  # i is the minority and holds 80% (1 − λx = 0.2 < τ)
        (0.8, 1000, 3000, 1.0),  # ratio exactly 1/κ
        (0.8, 1001, 3000, 0.8),
        (0.3, 50, 5000, 0.3),  # i is the minority but holds only 30%: no change
        (0.3, 100, 100, 0.3),  # balanced pair
    ],
)
def test_rule_hand_computed_cases(lam, n_i, n_j, expected):
    got = remix_label_factor(torch.tensor([lam], dtype=torch.float64), torch.tensor([n_i]), torch.tensor([n_j]))
    assert got.item() == expected


def test_rule_broadcasts_a_float_lambda_and_keeps_dtype():
    n_i = torch.tensor([5000, 50, 500])
    n_j = torch.tensor([50, 5000, 500])
    got = remix_label_factor(0.3, n_i, n_j)
    assert got.dtype == torch.float32 and got.shape == (3,)
    assert got.tolist() == pytest.approx([0.0, 0.3, 0.3])
    grid = remix_label_factor(torch.tensor([[0.1], [0.9]]), n_i, n_j)  # (2, 1) with (3,) -> (2, 3)
    assert grid.shape == (2, 3)
    assert grid[1].tolist() == pytest.approx([0.9, 1.0, 0.9])


def test_rule_has_no_python_loop_over_samples():
    n = torch.randint(1, 5000, (200_000,))
    lam = torch.rand(200_000)
    out = remix_label_factor(lam, n, n.flip(0))
    assert out.shape == (200_000,)


# --- soft targets -------------------------------------------------------------------------------------------


@given(
    b=st.integers(2, 16),
    c=st.integers(2, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_soft_targets_rows_sum_to_one(b, c, seed):
    g = torch.Generator().manual_seed(seed)
    y, yp = torch.randint(0, c, (b,), generator=g), torch.randint(0, c, (b,), generator=g)
    lam = torch.rand(b, generator=g)
    t = soft_targets(y, yp, lam, c)
    assert t.shape == (b, c)
    torch.testing.assert_close(t.sum(1), torch.ones(b))
    torch.testing.assert_close(t[torch.arange(b), y] + (y != yp) * t[torch.arange(b), yp], torch.ones(b))


def test_soft_targets_hand_case():
    t = soft_targets(torch.tensor([0, 2]), torch.tensor([1, 2]), torch.tensor([0.25, 0.6]), 3)
    torch.testing.assert_close(t, torch.tensor([[0.25, 0.75, 0.0], [0.0, 0.0, 1.0]]))


# --- mixers ---------------------------------------------------------------------------------------------------


def _batch(b=16, c=3, h=8, w=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, h, w, generator=g), torch.randint(0, classes, (b,), generator=g)


def test_mixup_mixes_pairs_by_permutation_and_leaves_input_alone():
    x, y = _batch()
    x0, y0 = x.clone(), y.clone()
    out = MixupMixer(0.4, generator=torch.Generator().manual_seed(1))(x, y)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert sorted(out.perm.tolist()) == list(range(16))
    assert torch.equal(out.y_partner, y[out.perm])
    lam = out.lam_x.view(-1, 1, 1, 1)
    torch.testing.assert_close(out.x, lam * x + (1 - lam) * x[out.perm])
    assert out.lam_x.unique().numel() == 1  # one λx per batch, as the paper


def test_mixup_per_sample_draws_one_lambda_per_sample():
    x, y = _batch()
    out = MixupMixer(1.0, per_sample=True, generator=torch.Generator().manual_seed(1))(x, y)
    assert out.lam_x.shape == (16,) and out.lam_x.unique().numel() == 16


def test_beta_sampler_has_the_right_moments():
    draws = sample_beta(0.4, 200_000, generator=torch.Generator().manual_seed(0)).double()
    # Beta(α, α): mean 1/2, variance 1 / (4 (2α + 1))
    assert draws.mean().item() == pytest.approx(0.5, abs=0.005)
    assert draws.var().item() == pytest.approx(1 / (4 * 1.8), rel=0.02)
    assert 0.0 <= draws.min().item() and draws.max().item() <= 1.0


@pytest.mark.parametrize("per_sample", [False, True])
def test_cutmix_lambda_is_the_exact_kept_pixel_fraction(per_sample):
    # "λx is the area actually kept after clipping the box at the border"
    b, h, w = 64, 7, 9
    x = torch.zeros(b, 2, h, w)
    y = torch.arange(b) % 3
    ids = torch.arange(b, dtype=torch.float32).view(-1, 1, 1, 1).expand_as(x)  # pixel value = its sample's index
    mixer = CutMixMixer(1.0, per_sample=per_sample, generator=torch.Generator().manual_seed(3))
    for _ in range(5):
        out = mixer(ids + x, y)
        kept = (out.x[:, 0] == torch.arange(b).view(-1, 1, 1)).float().mean((1, 2))
        # a sample paired with itself keeps every pixel by value; skip those
        mask = out.perm != torch.arange(b)
        torch.testing.assert_close(out.lam_x[mask], kept[mask])
        assert ((out.lam_x >= 0) & (out.lam_x <= 1)).all()
    if not per_sample:
        assert out.lam_x.unique().numel() == 1


def test_cutmix_box_is_clipped_at_the_border():
    # With many draws some boxes hit the border, so the kept area differs from the drawn λ's box area.
    mixer = CutMixMixer(1.0, per_sample=True, generator=torch.Generator().manual_seed(0))
    _, lam, mask = mixer.sample_boxes(512, 10, 10)
    torch.testing.assert_close(lam, 1 - mask.float().mean((1, 2)))


@pytest.mark.parametrize("mixer_cls", [MixupMixer, CutMixMixer])
def test_gradients_flow_through_the_mixed_input(mixer_cls):
    x, y = _batch()
    x.requires_grad_(True)
    out = mixer_cls(1.0, generator=torch.Generator().manual_seed(0))(x, y)
    out.x.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["mixup", "cutmix"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_fixed_generator_gives_identical_batches(mode, per_sample):
    x, y = _batch()
    a = Remix([40, 20, 5, 1], mode=mode, per_sample=per_sample, generator=torch.Generator().manual_seed(7))
    b = Remix([40, 20, 5, 1], mode=mode, per_sample=per_sample, generator=torch.Generator().manual_seed(7))
    for _ in range(3):
        (xa, ta), (xb, tb) = a(x, y), b(x, y)
        assert torch.equal(xa, xb) and torch.equal(ta, tb)
        assert torch.equal(a.last.perm, b.last.perm)


@pytest.mark.parametrize("mixer_cls", [MixupMixer, CutMixMixer])
@pytest.mark.parametrize("labels", ["plain", "remix"])
def test_every_mixer_label_combination(mixer_cls, labels):
    counts = [1000, 100, 10, 1]
    policy = MixupLabels() if labels == "plain" else RemixLabels(counts)
    x, y = _batch()
    x0 = x.clone()
    t = MixTransform(mixer_cls(1.0, generator=torch.Generator().manual_seed(0)), policy, num_classes=4)
    xm, ys = t(x, y)
    assert xm.shape == x.shape and ys.shape == (16, 4)
    torch.testing.assert_close(ys.sum(1), torch.ones(16))
    assert torch.equal(x, x0)
    rec = t.last
    assert rec.lam_x.shape == rec.lam_y.shape == rec.perm.shape == (16,)
    if labels == "plain":
        assert torch.equal(rec.lam_y, rec.lam_x) and rec.forced_share == 0.0


def test_remix_forces_labels_towards_the_minority_and_reports_the_share():
    counts = [5000, 50]
    y = torch.tensor([0] * 32 + [1] * 32)
    x = torch.randn(64, 5)
    remix = Remix(counts, generator=torch.Generator().manual_seed(0))
    forced = []
    for _ in range(20):
        _, t = remix(x, y)
        rec = remix.last
        mixed_pairs = rec.y != rec.y_partner
        # in a pair of classes 0 and 1 with a forced label, the label goes entirely to class 1 (the minority)
        forced_rows = (rec.lam_y != rec.lam_x) & mixed_pairs
        assert (t[forced_rows, 1] == 1).all()
        forced.append(rec.forced_share)
    # about half the cross-class pairs are forced (λx < τ or 1 − λx < τ on the right side), pairs are ~half cross
    assert 0.1 < np.mean(forced) < 0.4


# --- validation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RemixLabels([10, 1], kappa=0.5), r"`kappa` of `RemixLabels` must be >= 1; got 0.5"),
        (lambda: RemixLabels([10, 1], tau=1.5), r"`tau` of `RemixLabels` must be in \[0, 1\]; got 1.5"),
        (lambda: RemixLabels([10, 1], tau=-0.1), r"`tau` of `RemixLabels` must be in \[0, 1\]; got -0.1"),
        (lambda: MixupMixer(0.0), r"`alpha` of `MixupMixer` must be > 0; got 0.0"),
        (lambda: CutMixMixer(-1), r"`alpha` of `CutMixMixer` must be > 0; got -1"),
        (lambda: RemixLabels([10, 0, 3]), r"`class_counts` of `RemixLabels` must be positive.*class 1 has 0"),
        (lambda: RemixLabels([[10, 3]]), r"`class_counts` of `RemixLabels` must be one-dimensional"),
        (lambda: Remix([10, 3], mode="mosaic"), r"`mode` of `Remix` must be one of 'mixup', 'cutmix'; got 'mosaic'"),
        (lambda: remix_label_factor(0.5, torch.tensor([1]), torch.tensor([1]), kappa=0.9), r"`kappa`.*>= 1"),
        (lambda: remix_label_factor(0.5, torch.tensor([1]), torch.tensor([1]), tau=2), r"`tau`.*\[0, 1\]"),
    ],
)
def test_bad_parameters_raise_named_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_batches_raise_named_errors():
    remix = Remix([10, 5, 1])
    with pytest.raises(ValueError, match=r"batch size of `Remix` must be >= 2"):
        remix(torch.randn(1, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"`y` of `Remix` must hold class indices in \[0, 2\]; got values in \[0, 3\]"):
        remix(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"`y` of `Remix` must have shape \(4,\)"):
        remix(torch.randn(4, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"`y` of `Remix` must be an integer tensor"):
        remix(torch.randn(4, 3), torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(TypeError, match=r"floating-point `x`"):
        remix(torch.zeros(4, 3, dtype=torch.uint8), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(TypeError, match=r"`alpha` of `MixupMixer` must be a real number"):
        MixupMixer("1")
    with pytest.raises(ValueError, match=r"`x` of `CutMixMixer` must have shape"):
        CutMixMixer()(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))


def test_large_kappa_bound_accepts_infinity_free_values():
    # κ may be huge (Remix off) but must be finite
    with pytest.raises(ValueError, match=r"`kappa` of `RemixLabels` must be finite"):
        RemixLabels([3, 1], kappa=math.inf)


def test_forced_count_counts_changed_factors() -> None:
    from remixup.mixing import forced_count, forced_share

    lam_x = torch.tensor([0.3, 0.3, 0.8, 0.5])
    lam_y = torch.tensor([0.0, 0.3, 1.0, 0.5])
    assert int(forced_count(lam_x, lam_y)) == 2 and forced_share(lam_x, lam_y) == 0.5


def test_mix_forward_matches_the_transform_call() -> None:
    """The protocol call and the drop-in call draw and mix the same, and only the drop-in call sets ``last``."""
    from torch import nn

    from remixup.mixing import MixTransform, MixupMixer, RemixLabels

    x, y = torch.randn(16, 5), torch.arange(16) % 3
    model = nn.Linear(5, 3)
    make = lambda: MixTransform(MixupMixer(1.0, per_sample=True, generator=torch.Generator().manual_seed(3)),  # noqa: E731
                                RemixLabels([50, 10, 2]), num_classes=3)
    a, b = make(), make()
    x_mixed, target = a(x, y)
    out = b.mix_forward(model, x, y)
    assert torch.equal(out.logits, model(x_mixed)) and torch.equal(out.target, target)
    assert out.record is not None and torch.equal(out.record.lam_y, a.last.lam_y) and b.last is None
