"""Shared test configuration.

Hypothesis deadlines are off: the CI machine has 2 cores and timings there say nothing about correctness.
The "ci" profile (used when CI=true) derandomizes so a red build is reproducible.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def assert_summary_consistent(summary: dict) -> None:
    """The summary's accuracies are the ones its confusion matrix gives (top-1 = trace / total, balanced = the mean of
    the per-class accuracies, per-class = diagonal / row sums), and its class counts have one entry per class."""
    import math

    conf = summary["confusion"]
    total = sum(map(sum, conf))
    assert total > 0 and len(conf) == len(summary["class_counts"]) == len(summary["per_class"])
    assert math.isclose(summary["top1"], 100.0 * sum(conf[i][i] for i in range(len(conf))) / total, abs_tol=1e-9)
    per_class = [100.0 * conf[i][i] / sum(conf[i]) if sum(conf[i]) else None for i in range(len(conf))]
    assert summary["per_class"] == pytest.approx(per_class)
    seen = [a for a in per_class if a is not None]
    assert math.isclose(summary["balanced_acc"], sum(seen) / len(seen), abs_tol=1e-9)
