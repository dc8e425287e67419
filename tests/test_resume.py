"""A CPU run SIGKILLed mid-epoch resumes to bit-identical final weights and metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from remixup import checkpoint

pytestmark = pytest.mark.slow  # every test here trains or spawns processes

# Runs in a child process: the same training as `remixup train`, except that the process SIGKILLs itself just
# before optimizer step KILL_AT (in the middle of an epoch), like a machine that loses power.
CHILD = """
import os, signal, sys, torch
kill_at = int(os.environ.get("KILL_AT", "0"))
calls = 0
real_step = torch.optim.SGD.step
def step(self, *args, **kwargs):
    global calls
    calls += 1
    if calls == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_step(self, *args, **kwargs)
torch.optim.SGD.step = step
from remixup.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _train(out: Path, *extra: str, kill_at: int = 0) -> subprocess.CompletedProcess[str]:
    args = ["train", "--dataset", "digits", "--ratio", "10", "--method", "remix-drw", "--recipe", "ldam", "--epochs", "3",
            "--out", str(out), "--no-progress", "optim.batch_size=32", "schedule.deferral_epoch=2", "run.threads=1", *extra]  # fmt: skip
    env = {**os.environ, "KILL_AT": str(kill_at)}
    return subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, timeout=300)


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("images_per_s", "time_s")} for row in history]


def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path: Path) -> None:
    whole = _train(tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    state_whole = checkpoint.load(tmp_path / "whole" / "checkpoint.pt")
    n = sum(state_whole["class_counts"]) // 32  # optimizer steps per epoch (drop_last)

    out = tmp_path / "killed"
    killed = _train(out, kill_at=2 * n + n // 2)  # half-way through the third (deferred) epoch
    assert killed.returncode == -signal.SIGKILL
    assert checkpoint.load(out / "checkpoint.pt")["epoch"] == 2 and not (out / "summary.json").exists()
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2

    resumed = subprocess.run([sys.executable, "-m", "remixup", "train", "--resume", "--out", str(out), "--no-progress"],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith("epoch    3/3")  # only the interrupted epoch ran again

    state = checkpoint.load(out / "checkpoint.pt")
    assert state["model"].keys() == state_whole["model"].keys()
    assert all(torch.equal(state["model"][k], state_whole["model"][k]) for k in state["model"])
    assert _without_timing(state["history"]) == _without_timing(state_whole["history"])
    a = json.loads((out / "summary.json").read_text())
    b = json.loads((tmp_path / "whole" / "summary.json").read_text())
    for key in ("images_per_s", "wall_time_s"):
        a.pop(key), b.pop(key)
    assert a == b
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_cli_resume_of_a_missing_or_corrupt_checkpoint(tmp_path: Path) -> None:
    from remixup.cli import main

    assert main(["train", "--dataset", "digits", "--out", str(tmp_path / "none"), "--resume"]) == 2
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"not a checkpoint")
    assert main(["train", "--dataset", "digits", "--out", str(out), "--resume"]) == 2


def test_checkpoint_every_k_epochs_resumes_bit_identically_and_logs_by_appending(tmp_path: Path) -> None:
    """run.checkpoint_every=3 with eval_every=2 over 6 epochs: checkpoint.pt is written after epochs 2, 3, 4 and 6
    only; a run stopped after epoch 5 resumes from epoch 4 and ends bit-identical to the whole run, with the same
    logs; the logs, written by appending, are what a rewrite from the history gives."""
    from remixup.config import build_config
    from remixup.engine import train
    from remixup.rundir import _csv_rows

    def config(out: Path) -> object:
        return build_config("paper", epochs=6, overrides=[
            "data.dataset=digits", "data.ratio=10", "method.name=remix", "optim.batch_size=64", "run.eval_every=2",
            "run.checkpoint_every=3", f"run.out={out}", "run.threads=1", "run.progress=false", "run.tensorboard=false",
            "run.device=cpu"])  # fmt: skip

    whole, written = tmp_path / "whole", []

    def spy(epoch: int, row: dict) -> None:
        if (whole / "checkpoint.pt").is_file() and checkpoint.load(whole / "checkpoint.pt")["epoch"] == epoch:
            written.append(epoch)

    summary_whole = train(config(whole), on_epoch=spy)  # type: ignore[arg-type]
    assert written == [2, 3, 4, 6]
    state_whole = checkpoint.load(whole / "checkpoint.pt")
    assert (whole / "metrics.csv").read_text() == _csv_rows(state_whole["history"], header=True)
    assert [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()] == state_whole["history"]

    class Stop(Exception):
        pass

    def stop_after_5(epoch: int, row: dict) -> None:
        if epoch == 5:
            raise Stop

    out = tmp_path / "stopped"
    with pytest.raises(Stop):
        train(config(out), on_epoch=stop_after_5)  # type: ignore[arg-type]
    assert checkpoint.load(out / "checkpoint.pt")["epoch"] == 4 and len((out / "metrics.jsonl").read_text().splitlines()) == 5
    summary = train(config(out), resume=True)  # type: ignore[arg-type]
    state = checkpoint.load(out / "checkpoint.pt")
    assert all(torch.equal(state["model"][k], state_whole["model"][k]) for k in state_whole["model"])
    assert _without_timing(state["history"]) == _without_timing(state_whole["history"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert _without_timing(rows) == _without_timing(state_whole["history"])
    for key in ("images_per_s", "wall_time_s"):
        summary.pop(key), summary_whole.pop(key)
    assert summary == summary_whole
