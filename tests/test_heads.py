"""The decoupled heads' formulas against independent implementations: LWS, τ-norm, NCM, MiSLAS's ε_y and its loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from remixup.decouple import MISLAS_DEFAULTS, balanced_accuracy, mislas_defaults
from remixup.heads import LabelAwareSmoothing, class_means, label_aware_smoothing, lws_logits, ncm_logits, tau_norm_weight


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(7, 5, generator=g), torch.randn(4, 5, generator=g), torch.randn(4, generator=g)


def test_lws_scales_each_class_logit() -> None:
    f, w, b = _data()
    s = torch.tensor([0.5, 1.0, 2.0, 3.0])
    expected = np.array([[(float(w[c] @ f[i]) + float(b[c])) * float(s[c]) for c in range(4)] for i in range(7)])
    np.testing.assert_allclose(lws_logits(F.linear(f, w, b), s).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_lws_head_folds_into_a_linear_layer() -> None:
    from remixup.decouple import ScaledHead

    f, w, b = _data(1)
    fc = torch.nn.Linear(5, 4)
    fc.weight.data, fc.bias.data = w.clone(), b.clone()
    head = ScaledHead(fc, train_fc=False, scales=True)
    head.scales.data = torch.tensor([0.1, 2.0, 1.0, 4.0])
    folded = head.folded()
    torch.testing.assert_close(F.linear(f, folded["weight"], folded["bias"]), head(f))
    assert not fc.weight.requires_grad and head.scales.requires_grad


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.7])
def test_tau_norm_matches_a_row_loop(tau: float) -> None:
    _, w, _ = _data(2)
    expected = np.stack([row / np.linalg.norm(row) ** tau for row in w.numpy().astype(np.float64)])
    np.testing.assert_allclose(tau_norm_weight(w, tau).numpy(), expected, rtol=1e-5)
    before = w.clone()
    tau_norm_weight(w, tau)
    assert torch.equal(w, before)  # inputs unchanged


def test_tau_norm_one_gives_unit_rows_and_rejects_negative_tau() -> None:
    _, w, _ = _data(3)
    torch.testing.assert_close(tau_norm_weight(w, 1.0).norm(dim=1), torch.ones(4))
    with pytest.raises(ValueError, match="`tau` of `tau_norm_weight` must be"):
        tau_norm_weight(w, -0.1)


def test_ncm_is_the_cosine_to_each_class_mean() -> None:
    f, _, _ = _data(4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    means = class_means(f, labels, 4)
    fn = f.numpy().astype(np.float64)
    expected_means = np.stack([fn[labels.numpy() == c].mean(axis=0) for c in range(4)])
    np.testing.assert_allclose(means.numpy(), expected_means, rtol=1e-5, atol=1e-6)
    cos = [[float(np.dot(a, m) / (np.linalg.norm(a) * np.linalg.norm(m))) for m in expected_means] for a in fn]
    np.testing.assert_allclose(ncm_logits(f, means).numpy(), np.array(cos), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="class 4 has no training samples"):
        class_means(f, labels, 5)


def test_concave_smoothing_is_the_papers_rule() -> None:
    counts = [500, 300, 120, 40, 5]
    eps = label_aware_smoothing(counts, 0.4, 0.1).double().numpy()
    for n, e in zip(counts, eps, strict=True):
        assert e == pytest.approx(0.1 + 0.3 * math.sin(math.pi / 2 * (n - 5) / (500 - 5)), abs=1e-6)
    assert eps[0] == pytest.approx(0.4) and eps[-1] == pytest.approx(0.1)
    assert np.all(np.diff(eps) < 0)  # more samples, more smoothing
    lin = label_aware_smoothing(counts, 0.4, 0.1, shape="linear").numpy()
    assert np.all(eps[1:-1] >= lin[1:-1])  # concave lies above the chord
    assert torch.equal(label_aware_smoothing([7, 7], 0.3, 0.0), torch.tensor([0.3, 0.3]))
    with pytest.raises(ValueError, match="`shape` of `label_aware_smoothing`"):
        label_aware_smoothing(counts, 0.4, 0.1, shape="cubic")


def test_label_aware_smoothing_loss_is_ce_on_smoothed_targets() -> None:
    counts = [50, 20, 5]
    loss = LabelAwareSmoothing(counts, head=0.3, tail=0.0)
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(5))
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    eps = label_aware_smoothing(counts, 0.3, 0.0)[y]
    soft = (1 - eps).unsqueeze(1) * F.one_hot(y, 3) + eps.unsqueeze(1) / 3  # uniform share ε/C on every class
    expected = -(soft * F.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(loss(logits, y), expected)


def test_mislas_defaults_are_the_authors_configs() -> None:
    assert mislas_defaults("cifar10", 100) == (0.3, 0.0, False, 0.5)
    assert mislas_defaults("cifar100", 100) == (0.4, 0.1, True, 0.2)
    assert mislas_defaults("cifar100", 80) == MISLAS_DEFAULTS[("cifar100", 100.0)]  # the nearest ratio
    assert mislas_defaults("digits", 10) == MISLAS_DEFAULTS[("imagenet_lt", 0.0)]


def test_balanced_accuracy_is_the_mean_recall() -> None:
    logits = torch.tensor([[1.0, 0], [1, 0], [0, 1], [1, 0]])
    labels = torch.tensor([0, 0, 1, 1])
    assert balanced_accuracy(logits, labels) == pytest.approx(100 * (1.0 + 0.5) / 2)
