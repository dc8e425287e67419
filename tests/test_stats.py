"""remixup.stats against values worked out by hand or published (Demšar 2006)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from remixup.stats import average_ranks, cliques, friedman, holm, nemenyi_cd, nemenyi_q, plot_cd, rank_rows, wilcoxon

pytest.importorskip("scipy")


def test_wilcoxon_exact_and_ties() -> None:
    # every one of 10 differences positive: W = 0 and the exact two-sided p is 2 / 2^10
    assert wilcoxon(list(range(1, 11)), [0] * 10) == (0.0, 2 / 1024)
    # differences 1..5 with signs + + - + +: W = min(W+, W-) = 3 (the rank of the negative one); the rank sums
    # <= 3 of the 32 sign patterns are {}, {1}, {2}, {3}, {1, 2}, so the exact two-sided p = 2 · 5/32
    stat, p = wilcoxon([1, 2, 0, 4, 5], [0, 0, 3, 0, 0])
    assert (stat, p) == (3.0, 0.3125)
    assert wilcoxon([0.5, 0.5], [0.5, 0.5]) == (0.0, 1.0)  # no difference at all
    stat, p = wilcoxon([1, 1, 1, 2], [0, 0, 0, 0])  # tied |d|: normal approximation, still symmetric in sign
    assert stat == 0.0 and 0.05 < p < 0.2 and wilcoxon([0, 0, 0, 0], [1, 1, 1, 2])[1] == pytest.approx(p)
    with pytest.raises(ValueError, match="`x` and `y` of `wilcoxon` must be paired"):
        wilcoxon([1, 2], [1])


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
