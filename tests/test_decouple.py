"""`remixup decouple`: every method from the command line on a digits run and a CIFAR-shaped run, the frozen backbone
bit-identical, τ chosen on the validation split only, an ordinary run folder (eval, report, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_summary_consistent
from remixup.cli import main
from remixup.decouple import DECOUPLE_METHODS, TAU_GRID, DecoupleOptions, balanced_accuracy, decouple, file_sha256
from remixup.errors import UserError

pytestmark = pytest.mark.slow

FIRST = ["--ratio", "10", "--recipe", "ldam", "--epochs", "1", "--no-progress", "optim.batch_size=64", "run.threads=1"]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("first") / "remix"
    assert main(["train", "--dataset", "digits", "--method", "remix-drw", "--out", str(out), *FIRST, "data.val_fraction=0.2"]) == 0
    return out


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 12).astype(np.uint8)
    x = rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8)
    np.savez(root / "cifar10.npz", x_train=x, y_train=y, x_test=x[::3], y_test=y[::3])
    out = root / "mixup"
    assert main(["train", "--dataset", "cifar10", "--data-root", str(root), "--method", "mixup", "--out", str(out),
                 "--ratio", "4", "--recipe", "ldam", "--epochs", "1", "--no-progress", "optim.batch_size=16",
                 "run.threads=1"]) == 0  # fmt: skip
    return out


def _backbone(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path / "checkpoint.pt", weights_only=True)["model"]
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


@pytest.mark.parametrize("method", DECOUPLE_METHODS)
@pytest.mark.parametrize("first", ["digits_run", "cifar_run"])
def test_every_method_from_the_cli(first: str, method: str, request: pytest.FixtureRequest, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run: Path = request.getfixturevalue(first)
    out = tmp_path / method
    extra = ["--shift-bn", "on"] if method == "mislas" else []
    argv = ["decouple", str(run), "--method", method, "--out", str(out), "--epochs", "1", "--batch-size", "16", "--threads", "1"]
    assert main([*argv, *extra, "--no-progress"]) == 0
    assert f"+{method} on" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert_summary_consistent(summary)
    first_stage = summary["first_stage"]
    assert first_stage["sha256"] == file_sha256(run / "checkpoint.pt") and Path(first_stage["run"]) == run.resolve()
    assert summary["method"].endswith(f"+{method}") and summary["decouple"]["method"] == method
    # The backbone: bit-identical, BatchNorm buffers included, unless MiSLAS shifts the BatchNorm statistics.
    before, after = _backbone(run), _backbone(out)
    assert before.keys() == after.keys()
    same = all(torch.equal(before[k], after[k]) for k in before)
    assert same == (method != "mislas")
    if method == "mislas":  # only BatchNorm statistics moved, never a weight
        moved = {k for k in before if not torch.equal(before[k], after[k])}
        assert moved and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in moved)
    # An ordinary run folder: remixup eval scores the folded classifier as the summary does.
    assert main(["eval", str(out), "--device", "cpu", "--json", str(tmp_path / "eval.json")]) == 0
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["top1"] == pytest.approx(summary["top1"]) and metrics["per_class"] == pytest.approx(summary["per_class"])


def test_tau_is_chosen_on_the_validation_split_only(digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from remixup.data.run import TensorData

    events: list[str] = []
    real_batches, real_score = TensorData.eval_batches, balanced_accuracy

    def batches(self: TensorData, **kw: object) -> object:
        events.append(str(kw.get("split", "test")))
        return real_batches(self, **kw)  # type: ignore[arg-type]

    def score(logits: torch.Tensor, labels: torch.Tensor) -> float:
        events.append("score")
        return real_score(logits, labels)

    monkeypatch.setattr(TensorData, "eval_batches", batches)
    monkeypatch.setattr("remixup.decouple.balanced_accuracy", score)
    summary = decouple(digits_run, out=tmp_path / "tau", options=DecoupleOptions("tau-norm"), device="cpu", progress=False)
    assert events.count("score") == len(TAU_GRID)
    last_score = max(i for i, e in enumerate(events) if e == "score")
    assert "test" not in events[:last_score] and events[0] == "val"  # the test split is read only after τ is chosen
    scores = summary["decouple"]["tau_val_balanced_acc"]
    best = max(scores.values())
    assert summary["decouple"]["tau"] == min(float(t) for t, s in scores.items() if s == best)


def test_tau_norm_without_a_validation_split_holds_one_out(tmp_path: Path) -> None:
    out = tmp_path / "first"
    assert main(["train", "--dataset", "digits", "--method", "erm", "--out", str(out), *FIRST]) == 0
    summary = decouple(out, out=tmp_path / "tau", options=DecoupleOptions("tau-norm", val_fraction=0.2), device="cpu",
                       progress=False)  # fmt: skip
    assert summary["decouple"]["tau"] in TAU_GRID and "val_top1" in summary
    assert summary["class_counts"] == json.loads((out / "summary.json").read_text())["class_counts"]


def test_resume_ends_bit_identical(digits_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    options = {"epochs": 2, "batch_size": 64}
    straight = decouple(digits_run, out=tmp_path / "a", options=DecoupleOptions("lws", **options), device="cpu", progress=False)  # type: ignore[arg-type]
    from remixup import decouple as module

    real_line = module.log_line

    def stop_in_epoch_two(row: dict, epochs: int) -> str:  # type: ignore[type-arg]
        if row["epoch"] == 2:  # epoch 1 is logged and checkpointed, epoch 2 not
            raise KeyboardInterrupt
        return real_line(row, epochs)

    monkeypatch.setattr(module, "log_line", stop_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        decouple(digits_run, out=tmp_path / "b", options=DecoupleOptions("lws", **options), device="cpu")  # type: ignore[arg-type]
    monkeypatch.setattr(module, "log_line", real_line)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    # `remixup train --resume` refuses the unfinished second stage instead of training its first stage on.
    assert main(["train", "--resume", "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert "holds a decoupled second stage" in capsys.readouterr().err
    fork = ["train", "--dataset", "digits", "--ratio", "10", "--method", "remix-drw", "--fork", str(tmp_path / "b"), "--out",
            str(tmp_path / "c"), "--no-progress"]  # fmt: skip
    assert main(fork) == 2 and "is a decoupled second stage" in capsys.readouterr().err
    with pytest.raises(UserError, match="lr was 0.1, now 0.5"):
        decouple(digits_run, out=tmp_path / "b", options=DecoupleOptions("lws", lr=0.5, **options), resume=True, device="cpu")  # type: ignore[arg-type]
    resumed = decouple(digits_run, out=tmp_path / "b", options=DecoupleOptions("lws", **options), resume=True, device="cpu",  # type: ignore[arg-type]
                       progress=False)  # fmt: skip
    assert resumed["per_class"] == straight["per_class"]
    a, b = (torch.load(p / "checkpoint.pt", weights_only=True)["model"] for p in (tmp_path / "a", tmp_path / "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_user_mistakes_are_one_line(digits_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["--method", "knn"], "`method` of `decouple` must be one of"),
        (["--method", "crt", "--epochs", "0"], "`epochs` of `decouple` must be"),
    ):
        assert main(["decouple", str(digits_run), "--out", str(tmp_path / "x"), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["decouple", str(tmp_path / "nowhere"), "--method", "crt", "--out", str(tmp_path / "y")]) == 2
    assert "no checkpoint at" in capsys.readouterr().err
