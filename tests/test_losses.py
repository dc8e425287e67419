"""Tests of remixup.losses: one signature, the paper's normalisation, exact LDAM soft form, validation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from remixup.balancing import effective_number
from remixup.losses import (
    LOSSES,
    NEEDS_COUNTS,
    BalancedSoftmaxLoss,
    ClassBalancedLoss,
    FocalLoss,
    LDAMLoss,
    LogitAdjustedLoss,
    SoftCrossEntropy,
    build_loss,
    ldam_margins,
    soft_cross_entropy,
)

COUNTS = [500, 200, 60, 15, 4]
C = len(COUNTS)


def _batch(b: int = 8, c: int = C, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, generator=g, dtype=torch.float64) * 2, torch.randint(0, c, (b,), generator=g)


def _mixed(y: torch.Tensor, c: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Remix-style soft targets with a per-pair λ: ỹ = λ e_i + (1−λ) e_j."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(y.numel(), generator=g)
    lam = torch.rand(y.numel(), generator=g, dtype=torch.float64)
    lam[0], lam[1] = 0.0, 1.0  # forced λy as Remix produces
    t = lam[:, None] * F.one_hot(y, c) + (1 - lam[:, None]) * F.one_hot(y[perm], c)
    return t.double(), perm, lam


# ---------------------------------------------------------------------------------------------------- cross-entropy
@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 12),
    c=st.integers(1, 9),
    weighted=st.booleans(),
    reduction=st.sampled_from(["mean", "sum", "none"]),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow
def test_hard_targets_equal_torch_cross_entropy(b: int, c: int, weighted: bool, reduction: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, c, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, c, (b,), generator=g)
    w = torch.rand(c, generator=g, dtype=torch.float64) + 0.05 if weighted else None
    expected = F.cross_entropy(z, y, weight=w, reduction=reduction)
    torch.testing.assert_close(soft_cross_entropy(z, y, w, reduction), expected)
    torch.testing.assert_close(SoftCrossEntropy(w, reduction=reduction)(z, y), expected.float(), check_dtype=False)
    # The same targets given as one-hot soft targets.
    torch.testing.assert_close(soft_cross_entropy(z, F.one_hot(y, c).double(), w, reduction), expected)


def test_soft_target_mean_is_weighted_by_sum_of_w_times_target() -> None:
    z, y = _batch()
    t, _, _ = _mixed(y, C)
    w = torch.tensor([0.2, 0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    ell = -F.log_softmax(z, 1)
    expected = (w * t * ell).sum() / (w * t).sum()
    torch.testing.assert_close(soft_cross_entropy(z, t, w), expected)
    torch.testing.assert_close(soft_cross_entropy(z, t, w, "none"), (w * t * ell).sum(1))
    torch.testing.assert_close(soft_cross_entropy(z, t, w, "sum"), (w * t * ell).sum())


# ------------------------------------------------------------------------------------------- every loss, soft vs hard
def _all_losses(reduction: str = "mean", weight: torch.Tensor | None = None) -> dict[str, torch.nn.Module]:
    return {name: build_loss(name, class_counts=COUNTS, weight=weight, reduction=reduction) for name in LOSSES}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("weighted", [False, True])
def test_soft_targets_with_lambda_one_equal_hard(name: str, weighted: bool) -> None:
    z, y = _batch()
    w = torch.tensor([0.3, 0.6, 1.0, 1.4, 1.7]) if weighted else None
    for reduction in ("mean", "sum", "none"):
        loss = build_loss(name, class_counts=COUNTS, weight=w, reduction=reduction)
        torch.testing.assert_close(loss(z, F.one_hot(y, C).double()), loss(z, y))


@pytest.mark.parametrize("name", list(LOSSES))
def test_per_sample_loss_is_linear_in_lambda(name: str) -> None:
    """reduction='none' on ỹ = λ e_i + (1−λ) e_j equals λ·ℓ(y_i) + (1−λ)·ℓ(y_j) per sample (per-pair λ)."""
    z, y = _batch(b=10)
    t, perm, lam = _mixed(y, C)
    w = torch.tensor([0.3, 0.6, 1.0, 1.4, 1.7])
    loss = build_loss(name, class_counts=COUNTS, weight=w, reduction="none")
    expected = lam * loss(z, y) + (1 - lam) * loss(z, y[perm])
    torch.testing.assert_close(loss(z, t), expected)
    # and the weighted mean divides by Σ_n Σ_c w_c ỹ_nc
    mean_loss = build_loss(name, class_counts=COUNTS, weight=w)
    w_eff = mean_loss.effective_weight.double()  # cb multiplies its own class-balanced weights in
    torch.testing.assert_close(mean_loss(z, t), expected.sum() / (t * w_eff).sum())


@pytest.mark.parametrize("name", list(LOSSES))
def test_contract_shapes_reductions_and_replaceable_weight(name: str) -> None:
    z, _ = _batch(b=6)
    z = z.float().requires_grad_()
    y = torch.tensor([0, 1, 2, 3, 4, 4])
    for reduction, shape in (("mean", ()), ("sum", ()), ("none", (6,))):
        out = build_loss(name, class_counts=COUNTS, reduction=reduction)(z, y)
        assert out.shape == shape and out.dtype == torch.float32
    loss = build_loss(name, class_counts=COUNTS)
    base = loss(z, y)
    assert loss.weight is None
    w = torch.tensor([0.5, 1.0, 2.0, 3.0, 5.0])
    loss.set_weight(w)
    torch.testing.assert_close(loss.weight, w)
    weighted = loss(z, y)
    assert not torch.allclose(weighted, base)
    torch.testing.assert_close(weighted, build_loss(name, class_counts=COUNTS, weight=w)(z, y))
    loss.set_weight(None)
    torch.testing.assert_close(loss(z, y), base)
    loss.weight = w  # plain assignment is the documented alternative
    torch.testing.assert_close(loss(z, y), weighted)
    assert loss.state_dict() == {}  # nothing for a checkpoint to trip over
    # gradients are finite, also with extreme logits
    big = (z.detach() * 1e3).requires_grad_()
    for logits in (z, big):
        loss(logits, y).backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", list(LOSSES))
def test_inputs_unchanged_and_low_precision_logits(name: str) -> None:
    z, y = _batch(b=6)
    t, _, _ = _mixed(y, C)
    z32, t32 = z.float(), t.float()
    z_copy, t_copy = z32.clone(), t32.clone()
    loss = build_loss(name, class_counts=COUNTS)
    ref = loss(z32, t32)
    assert torch.equal(z32, z_copy) and torch.equal(t32, t_copy)
    low = loss(z32.bfloat16(), t32.bfloat16())
    assert low.dtype == torch.float32 and torch.isfinite(low)
    torch.testing.assert_close(low, ref, atol=0.1, rtol=0.05)


# ------------------------------------------------------------------------------------------------------------- LDAM
def _ldam_naive(z: torch.Tensor, t: torch.Tensor, margins: torch.Tensor, s: float) -> torch.Tensor:
    """Σ_c ỹ_nc CE(s·(z_n − m_c e_c), c), one class at a time: O(B·C²)."""
    b, c = z.shape
    out = torch.zeros(b, dtype=z.dtype)
    for k in range(c):
        shifted = z.clone()
        shifted[:, k] -= margins[k]
        out += t[:, k] * F.cross_entropy(s * shifted, torch.full((b,), k), reduction="none")
    return out


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 8), c=st.integers(1, 8), scale=st.sampled_from([0.1, 1.0, 5.0]), seed=st.integers(0, 2**16))
def test_ldam_exact_equals_naive_loop(b: int, c: int, scale: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(1, 1000, (c,), generator=g)
    z = torch.randn(b, c, generator=g, dtype=torch.float64) * scale
    t = torch.rand(b, c, generator=g, dtype=torch.float64)
    t = t / t.sum(1, keepdim=True)
    loss = LDAMLoss(counts, reduction="none")
    expected = _ldam_naive(z, t, loss.margins.double(), 30.0)
    torch.testing.assert_close(loss(z, t), expected)


def test_ldam_hard_matches_reference_form_and_is_stable() -> None:
    z, y = _batch()
    z = torch.tanh(z)  # cosine logits
    w = torch.tensor([0.5, 0.7, 1.0, 1.3, 1.5], dtype=torch.float64)
    loss = LDAMLoss(COUNTS, weight=w)
    m = ldam_margins(COUNTS).double()
    # LDAM-DRW's formulation: lower the true logit by its margin, scale, weighted cross-entropy.
    expected = F.cross_entropy(30.0 * (z - F.one_hot(y, C) * m), y, weight=w)
    torch.testing.assert_close(loss(z, y), expected)
    # float32, confident and huge logits: no cancellation, no inf/nan
    zc = torch.full((4, C), -1.0)
    zc[:, 0] = 1.0
    t = F.one_hot(torch.tensor([0, 0, 1, 4]), C).float()
    out = LDAMLoss(COUNTS, reduction="none")(zc, t)
    ref = _ldam_naive(zc.double(), t.double(), ldam_margins(COUNTS).double(), 30.0)
    torch.testing.assert_close(out, ref.float())


def test_ldam_margins() -> None:
    m = ldam_margins(COUNTS)
    assert math.isclose(float(m.max()), 0.5, rel_tol=1e-6) and int(m.argmax()) == C - 1
    torch.testing.assert_close(m, 0.5 * (torch.tensor(COUNTS, dtype=torch.float32) / 4) ** -0.25)
    assert math.isclose(float(ldam_margins(COUNTS, max_margin=0.3).max()), 0.3, rel_tol=1e-6)


# -------------------------------------------------------------------------------------------- focal, CB, LA and BS
def test_focal_matches_ldam_drw_form_and_gamma_zero_is_ce() -> None:
    z, y = _batch()
    ce = F.cross_entropy(z, y, reduction="none")
    p = torch.exp(-ce)
    torch.testing.assert_close(FocalLoss(reduction="none")(z, y), (1 - p) * ce)
    torch.testing.assert_close(FocalLoss(gamma=2.0)(z, y), ((1 - p) ** 2 * ce).mean())
    torch.testing.assert_close(FocalLoss(gamma=0.0)(z, y), F.cross_entropy(z, y))
    zc = torch.tensor([[100.0, 0.0, 0.0]], requires_grad=True)  # p = 1 exactly in float32
    FocalLoss(gamma=0.5)(zc, torch.tensor([0])).backward()
    assert torch.isfinite(zc.grad).all()


def test_class_balanced_weights() -> None:
    beta = 0.9999
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    e = (1 - beta**counts) / (1 - beta)
    torch.testing.assert_close(effective_number(counts, beta), e)
    torch.testing.assert_close(effective_number([3.0], 0.0), torch.ones(1, dtype=torch.float64))
    loss = ClassBalancedLoss(COUNTS)
    w = (1 / e) / (1 / e).sum() * C
    torch.testing.assert_close(loss.cb_weight, w.float())
    assert math.isclose(float(loss.cb_weight.sum()), C, rel_tol=1e-6)
    z, y = _batch()
    torch.testing.assert_close(loss(z, y), F.cross_entropy(z, y, weight=w))
    focal = ClassBalancedLoss(COUNTS, base="focal", gamma=1.0, reduction="sum")
    torch.testing.assert_close(focal(z, y), FocalLoss(weight=w, reduction="sum")(z, y))


@pytest.mark.parametrize("cls", [LogitAdjustedLoss, BalancedSoftmaxLoss])
def test_la_and_bs_with_uniform_counts_equal_ce(cls: type) -> None:
    z, y = _batch()
    t, _, _ = _mixed(y, C)
    loss = cls([37] * C)
    torch.testing.assert_close(loss(z, y), F.cross_entropy(z, y))
    torch.testing.assert_close(loss(z, t), soft_cross_entropy(z, t))


def test_la_and_bs_adjust_logits_by_the_prior() -> None:
    z, y = _batch()
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    log_prior = (counts / counts.sum()).log()
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS)(z, y), F.cross_entropy(z + log_prior, y))
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, tau_la=2.0)(z, y), F.cross_entropy(z + 2 * log_prior, y))
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, tau_la=0.0)(z, y), F.cross_entropy(z, y))
    torch.testing.assert_close(BalancedSoftmaxLoss(COUNTS)(z, y), F.cross_entropy(z + counts.log(), y))


# ------------------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("focal", {"gamma": -1.0}, "`gamma` of `FocalLoss` must be >= 0; got -1.0"),
        ("ldam", {"s": 0.0}, "`s` of `LDAMLoss` must be > 0"),
        ("ldam", {"max_margin": -0.5}, "`max_margin` of `LDAMLoss` must be > 0"),
        ("la", {"tau_la": -0.1}, "`tau_la` of `LogitAdjustedLoss` must be >= 0"),
        ("cb", {"beta": 1.0}, r"`beta` of `ClassBalancedLoss` must be in \[0, 1\)"),
        ("cb", {"base": "hinge"}, "`base` of `ClassBalancedLoss` must be one of 'ce', 'focal'"),
        ("ce", {"reduction": "avg"}, "`reduction` of `SoftCrossEntropy` must be one of 'mean', 'batchmean', 'sum', 'none'"),
        ("ce", {"weight": [1.0, -1.0]}, "`weight` of `SoftCrossEntropy` must hold finite non-negative"),
        ("ldam", {"weight": [1.0, 1.0]}, r"`weight` of `LDAMLoss` must have one entry per class \(5\)"),
        ("focal", {"alpha": 0.25}, "unknown parameter `alpha` for loss 'focal'; valid parameters: gamma"),
    ],
)
def test_bad_parameters_raise_naming_the_parameter(name: str, params: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_loss(name, class_counts=COUNTS, **params)


def test_factory_errors() -> None:
    with pytest.raises(ValueError, match="unknown loss 'hinge'; valid losses: ce, focal, ldam, cb, la, bs"):
        build_loss("hinge")
    for name in sorted(NEEDS_COUNTS):
        with pytest.raises(ValueError, match=f"loss '{name}' needs `class_counts`"):
            build_loss(name)
    with pytest.raises(ValueError, match="`class_counts` of `LDAMLoss` must be positive for every class"):
        build_loss("ldam", class_counts=[10, 0, 3])
    assert NEEDS_COUNTS == {"ldam", "cb", "la", "bs"}
    assert isinstance(build_loss("ce", class_counts=COUNTS), SoftCrossEntropy)  # counts ignored where unused


def test_bad_targets_raise() -> None:
    z, y = _batch()
    loss = SoftCrossEntropy()
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\]"):
        loss(z, torch.full_like(y, 5))
    with pytest.raises(ValueError, match="soft targets must be a floating tensor of shape"):
        loss(z, torch.ones(8, 3))
    with pytest.raises(ValueError, match="`target` of `SoftCrossEntropy` must be int class indices"):
        loss(z, y[:3])
    with pytest.raises(ValueError, match="`class_counts` of `BalancedSoftmaxLoss` has 5 entries"):
        BalancedSoftmaxLoss(COUNTS)(torch.randn(8, 3), y % 3)
    with pytest.raises(ValueError, match=r"`weight` of `SoftCrossEntropy` has 5 entries"):
        SoftCrossEntropy(torch.ones(C))(torch.randn(8, 3), y % 3)


def test_weighted_loss_follows_module_device_and_dtype() -> None:
    loss = build_loss("ldam", class_counts=COUNTS).to(torch.float64)
    loss.set_weight([1, 2, 3, 4, 5])
    assert loss.weight.dtype == torch.float32  # weights are kept as float32 and cast to the logits in forward
    z, y = _batch()
    assert loss(z, y).dtype == torch.float64


def test_batchmean_divides_by_the_batch_size() -> None:
    torch.manual_seed(0)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 0])
    soft = torch.nn.functional.one_hot(y, 4).float() * 0.7 + torch.nn.functional.one_hot((y + 1) % 4, 4).float() * 0.3
    w = torch.tensor([0.2, 0.5, 1.3, 2.0])
    for target in (y, soft):
        per_sample = build_loss("ce", weight=w, reduction="none")(logits, target)
        assert torch.allclose(build_loss("ce", weight=w, reduction="batchmean")(logits, target), per_sample.sum() / 6)
        # without class weights the two averages agree
        assert torch.allclose(build_loss("ce", reduction="batchmean")(logits, target), build_loss("ce")(logits, target))
    with pytest.raises(ValueError, match="reduction"):
        build_loss("ce", reduction="avg")
