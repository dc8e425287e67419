"""`remixup toy`: the decision-boundary grid from fake models, one real tiny run, and bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from remixup.cli import main
from remixup.toy import ToyResult, plot_grid, train_toy

pytestmark = pytest.mark.slow  # every test here trains or spawns processes


def test_plot_grid_from_fake_models(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2)).astype(np.float32)
    y = (x[:, 0] > 0.8).astype(np.int64)
    results = []
    for dataset in ("blobs", "moons"):
        for method in ("erm", "remix"):
            torch.manual_seed(len(results))
            results.append(ToyResult(dataset, method, tmp_path, torch.nn.Linear(2, 2), 90.0, 40.0 + len(results), x, y))
    path = plot_grid(results, tmp_path / "toy.png", datasets=["blobs", "moons"], methods=["erm", "remix"],
                     ratio=10, resolution=40)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_real_tiny_toy_run(tmp_path):
    r = train_toy("blobs", "remix", tmp_path / "runs", ratio=10, epochs=1)
    assert (r.run_dir / "summary.json").is_file()
    summary = json.loads((r.run_dir / "summary.json").read_text())
    assert [r.majority_acc, r.minority_acc] == pytest.approx(summary["per_class"])  # class 0 is the majority
    assert (r.y_train == 0).sum() == 10 * (r.y_train == 1).sum()  # long-tailed: 1000 vs 100
    assert r.model(torch.zeros(3, 2)).shape == (3, 2)
    again = train_toy("blobs", "remix", tmp_path / "runs", ratio=10, epochs=1)  # reused, not retrained
    assert again.minority_acc == r.minority_acc
    assert not (Path(r.run_dir.parent) / "toy.png").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--datasets", "spirals"], "`--datasets` must be one of"),
    (["--epochs", "0"], "`--epochs` must be >= 1"),
    (["--ratio", "0.5"], "`--ratio` must be >= 1"),
])
def test_bad_arguments(tmp_path, capsys, argv, message):
    assert main(["toy", "--out", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
