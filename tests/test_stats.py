"""remixup.stats against values worked out by hand or published (Demšar 2006)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from remixup.stats import (
    average_ranks,
    cliques,
    friedman,
    holm,
    nemenyi_cd,
    nemenyi_q,
    plot_cd,
    rank_rows,
    signed_rank,
    tost,
    wilcoxon,
)

pytest.importorskip("scipy")


def test_wilcoxon_exact_and_ties() -> None:
    # every one of 10 differences positive: W = 0 and the exact two-sided p is 2 / 2^10
    assert wilcoxon(list(range(1, 11)), [0] * 10) == (0.0, 2 / 1024)
    # differences 1..5 with signs + + - + +: W = min(W+, W-) = 3 (the rank of the negative one); the rank sums
    # <= 3 of the 32 sign patterns are {}, {1}, {2}, {3}, {1, 2}, so the exact two-sided p = 2 · 5/32
    stat, p = wilcoxon([1, 2, 0, 4, 5], [0, 0, 3, 0, 0])
    assert (stat, p) == (3.0, 0.3125)
    assert wilcoxon([0.5, 0.5], [0.5, 0.5]) == (0.0, 1.0)  # no difference at all
    # tied |d| (midranks 2, 2, 2, 4): the sign-flip distribution; only all + or all - reach |W+ - 5| = 5: p = 2/16
    assert signed_rank([1, 1, 1, 2], [0, 0, 0, 0]) == signed_rank([0, 0, 0, 0], [1, 1, 1, 2])
    result = signed_rank([1, 1, 1, 2], [0, 0, 0, 0])
    assert (result.statistic, result.p, result.method) == (0.0, 0.125, "permutation")
    with pytest.raises(ValueError, match="`x` and `y` of `signed_rank` must be paired"):
        wilcoxon([1, 2], [1])


def test_signed_rank_is_scipys_exact_wilcoxon_without_ties() -> None:
    from scipy import stats

    rng = np.random.default_rng(0)
    for n in (5, 10, 14):
        x, y = rng.normal(0.3, 1, n), rng.normal(0, 1, n)
        for alternative in ("two-sided", "greater", "less"):
            ours = signed_rank(x, y, alternative=alternative)
            ref = stats.wilcoxon(x, y, alternative=alternative, method="exact")
            assert ours.method == "exact" and ours.p == pytest.approx(ref.pvalue, rel=1e-12)
            if alternative == "two-sided":
                assert ours.statistic == pytest.approx(ref.statistic)


def test_signed_rank_with_ties_is_the_exact_sign_flip_permutation_test() -> None:
    from scipy import stats

    def w_plus(d: np.ndarray, axis: int = -1) -> np.ndarray:
        ranks = stats.rankdata(np.abs(d), axis=axis)
        return np.sum(ranks * (d > 0), axis=axis)

    for d in ([1, 1, 2, -2, 3, 3, 3, 0.5], [2, 2, 2, -1, 4, 4, -4, 5, 1, 3]):
        ref = stats.permutation_test((np.array(d, dtype=float),), w_plus, permutation_type="samples",
                                     n_resamples=np.inf, alternative="two-sided")  # fmt: skip
        ours = signed_rank(d, [0] * len(d))
        assert ours.method == "permutation" and ours.p == pytest.approx(ref.pvalue, rel=1e-12)
    # 10 of 10 seeds ahead with tied gains: p = 2/1024, where the normal approximation gave about 0.006
    assert signed_rank([1.0] * 5 + [2.0] * 5, [0.0] * 10).p == pytest.approx(2 / 1024)


def test_tost_is_two_one_sided_exact_tests() -> None:
    from scipy import stats

    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.3, 10)
    y = rng.normal(0, 0.3, 10)
    d = x - y
    ref = max(stats.wilcoxon(d + 1.0, alternative="greater", method="exact").pvalue,
              stats.wilcoxon(d - 1.0, alternative="less", method="exact").pvalue)  # fmt: skip
    assert tost(x, y, 1.0) == pytest.approx(ref, rel=1e-12) and tost(x, y, 1.0) < 0.05  # within ±1 point
    assert tost(x + 3.0, y, 1.0) > 0.5  # 3 points apart: not equivalent
    with pytest.raises(ValueError, match="`margin` of `tost`"):
        tost(x, y, 0.0)


def test_holm_step_down() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []


def test_ranks_with_ties_and_friedman() -> None:
    scores = np.array([[0.9, 0.8, 0.8], [0.7, 0.9, 0.6]])
    assert rank_rows(scores).tolist() == [[1.0, 2.5, 2.5], [2.0, 1.0, 3.0]]
    assert average_ranks(scores).tolist() == [1.5, 1.75, 2.75]
    # three methods always ranked 1, 2, 3 on 4 sets: chi2 = 12 N / (k (k + 1)) · (sum R^2 - k (k + 1)^2 / 4) = 8
    chi2, p = friedman(np.array([[3.0, 2.0, 1.0]] * 4))
    assert chi2 == pytest.approx(8.0) and p == pytest.approx(math.exp(-4.0))


def test_nemenyi_critical_difference() -> None:
    # Demšar 2006 §3.2.2: k = 4 classifiers on N = 14 data sets, CD = 2.569 · sqrt(4·5 / (6·14)) = 1.25
    assert nemenyi_cd(4, 14) == pytest.approx(1.2536, abs=1e-4)
    assert nemenyi_q(10) == 3.164
    assert nemenyi_q(12) == pytest.approx(3.268, abs=1e-3)  # from the studentized range beyond Demšar's table
    assert cliques([1.0, 1.5, 2.0, 4.0], 1.1) == [(0, 2)]
    assert cliques([1.0, 3.0, 5.0], 1.0) == []


def test_plot_cd_writes_a_png(tmp_path: Path) -> None:
    path = plot_cd([2.5, 1.2, 3.9, 2.0], ["a", "b", "c", "d"], 1.25, tmp_path / "cd.png", title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_macro_auprc_is_sklearns_average_precision_averaged_over_classes() -> None:
    from sklearn.metrics import average_precision_score

    from remixup.metrics import macro_auprc

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, 200)
    probs = rng.dirichlet(np.ones(4), 200)
    probs[:50] = np.round(probs[:50], 1)  # tied scores
    probs[labels == 2, 2] += 0.2  # a class the scores find
    ref = np.mean([average_precision_score(labels == c, probs[:, c]) for c in range(4)])
    assert macro_auprc(probs, labels) == pytest.approx(100 * ref, rel=1e-12)
    present = labels[labels != 3]  # a class without test samples is left out of the mean
    ref3 = np.mean([average_precision_score(present == c, probs[labels != 3][:, c]) for c in range(3)])
    assert macro_auprc(probs[labels != 3], present) == pytest.approx(100 * ref3, rel=1e-12)
    assert macro_auprc(np.zeros((0, 4)), np.zeros(0, dtype=np.int64)) is None
