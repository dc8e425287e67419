"""A user's own nn.Module in the trainer."""

import pytest
import torch
from torch import nn

from conftest import assert_summary_consistent
from remixup.cli import main
from remixup.config import build_config
from remixup.engine import train

pytestmark = pytest.mark.slow  # every test here trains or spawns processes


def _config(tmp_path, method):
    return build_config("paper", epochs=2, values={"data.dataset": "moons", "data.ratio": 10.0, "method.name": method,
                        "run.out": str(tmp_path / method), "run.progress": False, "run.tensorboard": False,
                        "run.threads": 1, "run.device": "cpu"})  # fmt: skip


@pytest.mark.parametrize("method", ["remix-drw", "remix-mm"])
def test_train_accepts_a_plain_sequential(tmp_path, method, capsys):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    before = [p.detach().clone() for p in model.parameters()]
    summary = train(_config(tmp_path, method), model=model)
    assert summary["model"] == "custom:Sequential"
    assert summary["lam_y_forced"] is not None
    assert_summary_consistent(summary)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=False))  # trained in place
    assert all(not m._forward_hooks for m in model.modules())  # manifold mixing left no hook behind
    capsys.readouterr()
    assert main(["eval", str(tmp_path / method)]) == 2
    assert "holds a model of your own (Sequential)" in capsys.readouterr().err
