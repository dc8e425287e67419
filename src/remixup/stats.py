"""Statistics for comparing methods over seeds and data sets (Demšar 2006, "Statistical Comparisons of Classifiers
over Multiple Data Sets", JMLR 7).

- :func:`wilcoxon` — the paired Wilcoxon signed-rank test (two-sided) of two methods' scores, e.g. over seeds;
- :func:`holm` — Holm's step-down adjustment of a family of p-values;
- :func:`average_ranks` — each method's rank on each data set (1 = best, ties share the mean rank), averaged;
- :func:`friedman` — the Friedman test that all methods rank alike;
- :func:`nemenyi_cd` — the Nemenyi critical difference of average ranks;
- :func:`plot_cd` — the critical-difference diagram.

The tests need scipy (a dependency of scikit-learn, which remixup requires).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from remixup._validation import check_number
from remixup.errors import InvalidParameterError

# Demšar (2006), Table 5(a): q_0.05 of the Nemenyi test for k = 2..10 classifiers (studentized range / sqrt 2).
NEMENYI_Q05 = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}


def wilcoxon(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Two-sided paired Wilcoxon signed-rank test of ``x`` against ``y``; returns ``(statistic, p)``.

    Zero differences are left out (Wilcoxon's own convention). The p-value is exact when the remaining
    absolute differences have no ties (n ≤ 50), else from the normal approximation with a continuity correction.
    Every difference zero gives ``(0.0, 1.0)``.

    Args:
        x, y: paired scores (n,), e.g. one per seed.

    Raises:
        ValueError: different lengths or fewer than one pair.
    """
    from scipy import stats

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise InvalidParameterError(
            f"`x` and `y` of `wilcoxon` must be paired 1-D sequences of equal length; got {a.shape} and {b.shape}"
        )
    d = a - b
    d = d[d != 0]
    if d.size == 0:
        return 0.0, 1.0
    ties = np.unique(np.abs(d)).size < d.size
    method = "approx" if ties or d.size > 50 else "exact"
    result = stats.wilcoxon(d, zero_method="wilcox", correction=method == "approx", method=method)
    return float(result.statistic), float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given): p_(i) · (m − i + 1), made monotone, at most 1.

    Rejecting where the adjusted value is below α controls the family-wise error rate at α.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def rank_rows(scores: np.ndarray) -> np.ndarray:
    """Rank each row of ``scores`` (N, k), higher is better: 1 = best, ties share their mean rank."""
    from scipy.stats import rankdata

    return np.vstack([rankdata(-np.asarray(row, dtype=np.float64), method="average") for row in np.atleast_2d(scores)])


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """(k,) average rank of each method over the N data sets of ``scores`` (N, k), higher score is better."""
    return rank_rows(scores).mean(axis=0)


def friedman(scores: np.ndarray) -> tuple[float, float]:
    """Friedman's test over data sets (rows of ``scores`` (N, k)) that the k methods perform alike: (χ², p)."""
    from scipy import stats

    s = np.asarray(scores, dtype=np.float64)
    result = stats.friedmanchisquare(*s.T)
    return float(result.statistic), float(result.pvalue)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """The Nemenyi critical value q_α for ``k`` methods: Demšar's table at α = 0.05 for k ≤ 10, else the
    studentized range quantile (infinite degrees of freedom) divided by √2."""
    k = int(check_number(k, "k", owner="nemenyi_q", low=2, integer=True))
    check_number(alpha, "alpha", owner="nemenyi_q", low=0.0, high=1.0, low_open=True, high_open=True)
    if alpha == 0.05 and k in NEMENYI_Q05:
        return NEMENYI_Q05[k]
    from scipy.stats import studentized_range

    return float(studentized_range.ppf(1 - alpha, k, 1e6)) / math.sqrt(2)


def nemenyi_cd(k: int, n: int, alpha: float = 0.05) -> float:
    """Critical difference ``q_α · sqrt(k (k + 1) / (6 N))`` of average ranks of ``k`` methods on ``n`` data sets."""
    n = int(check_number(n, "n", owner="nemenyi_cd", low=1, integer=True))
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6.0 * n))


def cliques(ranks: Sequence[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs (first, last) of methods sorted by rank whose ranks differ by less than ``cd`` (the bars of a
    CD diagram); positions refer to the sorted order. Runs of a single method are left out."""
    r = sorted(float(v) for v in ranks)
    runs: list[tuple[int, int]] = []
    for i in range(len(r)):
        j = i
        while j + 1 < len(r) and r[j + 1] - r[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in runs):
            runs.append((i, j))
    return runs


def plot_cd(ranks: Sequence[float], names: Sequence[str], cd: float, path: str | Path, *, title: str = "") -> Path:
    """Draw Demšar's critical-difference diagram as a PNG: the average-rank axis (1 = best, on the left), each
    method hung from its rank, and thick bars joining methods whose ranks differ by less than ``cd``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(np.asarray(ranks, dtype=np.float64), kind="stable")
    r = [float(ranks[i]) for i in order]
    labels = [str(names[i]) for i in order]
    k = len(r)
    lo, hi = 1, max(k, 2)
    half = math.ceil(k / 2)
    bars = cliques(r, cd)
    top = 0.4 + 0.25 * len(bars)  # the clique bars sit between the axis and the first label row
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.3 * (half + len(bars))), constrained_layout=True)
    ax.set_xlim(lo - 0.6, hi + 0.6)
    ax.set_ylim(-(top + half * 0.5) - 0.3, 1.6)
    ax.axis("off")
    ax.hlines(0, lo, hi, color="black", lw=1)
    for t in range(lo, hi + 1):
        ax.vlines(t, 0, 0.12, color="black", lw=1)
        ax.text(t, 0.2, str(t), ha="center", va="bottom", fontsize=9)
    ax.hlines(1.0, lo, lo + cd, color="tab:red", lw=2)  # the CD, to scale
    ax.text(lo + cd / 2, 1.1, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9, color="tab:red")
    for i, (rank, label) in enumerate(zip(r, labels, strict=False)):
        left = i < half
        depth = -(top + 0.5 * (i if left else k - 1 - i))
        x_text = lo - 0.5 if left else hi + 0.5
        ax.vlines(rank, depth, 0, color="0.3", lw=0.8)
        ax.hlines(depth, min(rank, x_text), max(rank, x_text), color="0.3", lw=0.8)
        ax.text(x_text, depth, f"{label} ({rank:.2f})", ha="right" if left else "left", va="center", fontsize=9)
    for n, (a, b) in enumerate(bars):
        y = -0.25 - 0.25 * n
        ax.hlines(y, r[a] - 0.04, r[b] + 0.04, color="black", lw=3)
    if title:
        ax.set_title(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
