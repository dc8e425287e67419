"""DDP: two CPU processes (torchrun, gloo) agree with one process on the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from remixup import checkpoint

ARGS = ["train", "--dataset", "moons", "--ratio", "10", "--method", "erm", "--recipe", "paper", "--epochs", "2",
        "--no-progress", "optim.batch_size=64", "run.threads=1", "run.eval_every=1"]  # fmt: skip


pytestmark = pytest.mark.slow  # every test here trains or spawns processes


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    one = subprocess.run([sys.executable, "-m", "remixup", *ARGS, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                          "-m", "remixup", *ARGS, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("epoch    2/2") == 1  # only rank 0 logs

    a, b = checkpoint.load(tmp_path / "one" / "checkpoint.pt"), checkpoint.load(tmp_path / "two" / "checkpoint.pt")
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5)
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert sb["top1"] == pytest.approx(sa["top1"], abs=0.5)
    assert sum(map(sum, sb["confusion"])) == sum(map(sum, sa["confusion"])) == 1000  # every test sample once
    assert sb["train_loss"] == pytest.approx(sa["train_loss"], rel=1e-4)
    assert sb["train_acc"] == pytest.approx(sa["train_acc"], abs=1e-6)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_ddp_remix_with_deferred_resampling_runs(tmp_path: Path) -> None:
    args = ["train", "--dataset", "moons", "--ratio", "10", "--method", "remix-drs", "--recipe", "ldam", "--epochs", "2",
            "--no-progress", "optim.batch_size=64", "run.threads=1", "--out", str(tmp_path / "run")]  # fmt: skip
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "remixup", *args],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["lam_y_forced"] is not None and sum(map(sum, summary["confusion"])) == 1000
    assert two.stdout.count("remix-drs on moons") == 1
