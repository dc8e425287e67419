"""`remixup data`: table, JSON, plot, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from remixup.cli import main
from remixup.data import profile_counts


@pytest.fixture()
def cifar_root(tmp_path: Path) -> Path:
    y = np.repeat(np.arange(10), 50).astype(np.uint8)
    x = np.zeros((len(y), 32, 32, 3), np.uint8)
    np.savez(tmp_path / "cifar10.npz", x_train=x, y_train=y, x_test=x[:20], y_test=y[:20])
    return tmp_path


def test_json_counts(cifar_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["data", "--dataset", "cifar10", "--imbalance", "longtail", "--ratio", "10", "--data-root", str(cifar_root), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"] == profile_counts(10, 50, "longtail", ratio=10)
    assert out["total"] == sum(out["counts"]) and out["num_classes"] == 10 and out["subset_seed"] == 0


@pytest.mark.slow
def test_table_and_plot(cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "counts.png"
    rc = main(["data", "--dataset", "cifar10", "--imbalance", "step", "--ratio", "5", "--mu", "0.3",
               "--data-root", str(cifar_root), "--plot", str(plot), "--subset-seed", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "imbalance=step" in text and "total" in text
    assert text.count("     50") == 7 and text.count("     10") == 3
    assert plot.stat().st_size > 1000


def test_embedded_digits_needs_no_root(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "--dataset", "digits", "--ratio", "10", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts[0] == 10 * counts[-1] + (counts[0] % 10)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--ratio", "0.5"], r"remixup: error: `ratio` of `make_imbalanced` must be >= 1; got 0.5"),
        (["--imbalance", "step", "--mu", "1"], r"remixup: error: `mu` of `make_imbalanced` must be in \(0, 1\); got 1.0"),
        (["--ratio", "100"], r"remixup: error: `ratio`=100 leaves class 8 with zero samples \(n_max=50\); use a ratio of at most 50"),
    ],
)
def test_errors_are_one_line(cifar_root: Path, capsys: pytest.CaptureFixture[str], extra: list[str], match: str) -> None:
    assert main(["data", "--dataset", "cifar10", "--data-root", str(cifar_root), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(match, err)


def test_missing_data_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "--dataset", "cifar100", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "cifar100 not found in" in capsys.readouterr().err
