"""Forking a run from a kept checkpoint (`--fork`, `run.keep_every`) and the `method.reduction` choice."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from remixup import checkpoint
from remixup.config import TrainConfig, build_config
from remixup.engine import train
from remixup.errors import UserError

pytestmark = pytest.mark.slow  # every test here trains or spawns processes


def tiny(out: Path, method: str, *extra: str) -> TrainConfig:
    """Long-tailed digits, the LDAM recipe scaled to 4 epochs with the deferral at epoch 2, one thread."""
    return build_config("ldam", epochs=4, overrides=[
        f"method.name={method}", "data.dataset=digits", "data.ratio=10", "optim.batch_size=64", f"run.out={out}",
        "run.eval_every=1", "run.progress=false", "run.threads=1", "schedule.deferral_epoch=2", *extra])  # fmt: skip


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("images_per_s", "time_s")} for row in history]


@pytest.fixture(scope="module")
def remix_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-epoch Remix run that keeps the checkpoints of epochs 2 and 4."""
    out = tmp_path_factory.mktemp("fork") / "remix"
    train(tiny(out, "remix", "run.keep_every=2"))
    return out


def test_keep_every_keeps_the_checkpoints_of_those_epochs(remix_run: Path) -> None:
    assert {p.name for p in remix_run.glob("checkpoint*.pt")} == {"checkpoint.pt", "checkpoint_e002.pt", "checkpoint_e004.pt"}
    assert checkpoint.load(remix_run / "checkpoint_e002.pt")["epoch"] == 2
    last, kept = checkpoint.load(remix_run / "checkpoint.pt"), checkpoint.load(remix_run / "checkpoint_e004.pt")
    assert kept["epoch"] == 4 and all(torch.equal(last["model"][k], kept["model"][k]) for k in last["model"])


def test_a_fork_at_the_deferral_epoch_equals_the_run_from_scratch(remix_run: Path, tmp_path: Path) -> None:
    whole = train(tiny(tmp_path / "whole", "remix-drw"))
    forked = train(tiny(tmp_path / "forked", "remix-drw"), fork=remix_run / "checkpoint_e002.pt")
    a, b = checkpoint.load(tmp_path / "whole" / "checkpoint.pt"), checkpoint.load(tmp_path / "forked" / "checkpoint.pt")
    # the fork's cost is its own two epochs; the two it took over are credited to its origin
    rows_time = [row["time_s"] for row in b["history"]]
    assert forked["forked_from"] == {"checkpoint": str(remix_run / "checkpoint_e002.pt"), "epoch": 2,
                                     "wall_time_s": pytest.approx(sum(rows_time[:2]))}  # fmt: skip
    assert forked["wall_time_s"] == pytest.approx(sum(rows_time[2:]))
    assert forked["images_per_s"] == pytest.approx(sum(row["images_per_s"] for row in b["history"][2:]) / 2)
    assert "forked_from" not in whole and whole["wall_time_s"] == pytest.approx(sum(r["time_s"] for r in a["history"]))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert _without_timing(a["history"]) == _without_timing(b["history"])
    assert (forked["top1"], forked["per_class"]) == (whole["top1"], whole["per_class"])
    # the fork's own log holds the two epochs it took over, then its own
    rows = [json.loads(line) for line in (tmp_path / "forked" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert "--fork" in (tmp_path / "forked" / "config.yaml").read_text().splitlines()[0]
    # the plain Remix run kept going without re-weighting, so the DRW phase changed the weights
    c = checkpoint.load(remix_run / "checkpoint.pt")
    assert not all(torch.equal(a["model"][k], c["model"][k]) for k in a["model"])


def test_batchmean_changes_the_deferred_phase(remix_run: Path, tmp_path: Path) -> None:
    mean = train(tiny(tmp_path / "mean", "remix-drw"), fork=remix_run / "checkpoint_e002.pt")
    batch = train(tiny(tmp_path / "batch", "remix-drw", "method.reduction=batchmean"), fork=remix_run / "checkpoint_e002.pt")
    # the batch-average class weight is below 1 on long-tailed data, so the plain mean gives a smaller loss
    assert batch["train_loss"] < mean["train_loss"]
    a, b = checkpoint.load(tmp_path / "mean" / "checkpoint.pt"), checkpoint.load(tmp_path / "batch" / "checkpoint.pt")
    assert not all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_resumed_fork_keeps_its_origin(remix_run: Path, tmp_path: Path) -> None:
    ckpt = remix_run / "checkpoint_e002.pt"
    first = train(tiny(tmp_path / "f", "remix-drw"), fork=ckpt)
    again = train(tiny(tmp_path / "f", "remix-drw"), resume=True, fork=ckpt)
    assert again == first and again["forked_from"]["epoch"] == 2


@pytest.mark.parametrize(
    ("method", "extra", "message"),
    [
        ("mixup-drw", (), "mix, label or compute the loss differently"),
        ("ldam-drw", (), "mix, label or compute the loss differently"),
        ("remix-drw", ("schedule.deferral_epoch=1",), "epoch 2 would have trained differently"),
        ("remix-rw", (), "epoch 1 would have trained differently"),
        ("remix-drw", ("optim.lr=0.05",), "optim.lr: 0.1 -> 0.05"),
        ("remix", ("run.epochs=2",), "leaves none to train"),  # (remix-drw: its deferral epoch 2 is outside a 2-epoch run)
    ],
)
def test_a_fork_that_would_not_equal_a_run_from_scratch_is_refused(
    remix_run: Path, tmp_path: Path, method: str, extra: tuple[str, ...], message: str
) -> None:
    with pytest.raises(UserError, match="cannot fork") as info:
        train(tiny(tmp_path / "x", method, *extra), fork=remix_run / "checkpoint_e002.pt")
    assert message in str(info.value)


def test_cli_fork_starts_from_the_checkpoints_settings(remix_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "remixup", "train", "--fork", str(remix_run / "checkpoint_e002.pt"),
           "--method", "remix-drw", "--out", str(out), "--no-progress"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "remix-drw" and summary["epochs"] == 4 and summary["forked_from"]["epoch"] == 2
    assert summary["recipe"] == "ldam"


def test_cli_fork_errors_are_one_line(remix_run: Path, tmp_path: Path) -> None:
    for fork, method in ((tmp_path / "missing.pt", "remix-drw"), (remix_run / "checkpoint_e002.pt", "mixup-drw")):
        cmd = [sys.executable, "-m", "remixup", "train", "--fork", str(fork), "--method", method,
               "--out", str(tmp_path / "o"), "--no-progress"]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_method_reduction_is_validated() -> None:
    with pytest.raises(ValueError, match="method.reduction"):
        build_config("ldam", overrides=["method.reduction=sum"])


def test_a_bias_free_classifier_is_rebuilt_by_eval_resume_and_fork(tmp_path: Path) -> None:
    from remixup.engine import evaluate_checkpoint

    out = tmp_path / "nobias"
    summary = train(tiny(out, "remix", "model.classifier_bias=false", "run.keep_every=2"))
    state = checkpoint.load(out / "checkpoint.pt")
    assert state["config"]["model"]["classifier_bias"] is False
    assert "fc.weight" in state["model"] and "fc.bias" not in state["model"]
    # eval rebuilds the same head from the checkpoint's config (a head with a bias would not load)
    metrics = evaluate_checkpoint(out, device="cpu")
    assert metrics["confusion"] == summary["confusion"]
    # a fork must keep the head: the same setting forks, a different one is refused by name
    forked = train(tiny(tmp_path / "drw", "remix-drw", "model.classifier_bias=false"), fork=out / "checkpoint_e002.pt")
    assert forked["forked_from"]["epoch"] == 2
    assert "fc.bias" not in checkpoint.load(tmp_path / "drw" / "checkpoint.pt")["model"]
    with pytest.raises(UserError, match="model.classifier_bias: False -> True"):
        train(tiny(tmp_path / "x", "remix-drw"), fork=out / "checkpoint_e002.pt")
    # resuming with the other head is refused too (a finished run is returned as it is, so unfinish it)
    (out / "summary.json").unlink()
    with pytest.raises(UserError, match="cannot resume .*model.classifier_bias: False -> True"):
        train(tiny(out, "remix", "run.keep_every=2"), resume=True)
