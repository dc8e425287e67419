"""`remixup train` / `remixup eval` from the command line: a working run, and user mistakes as one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remixup.cli import main

TINY = ["--dataset", "digits", "--ratio", "10", "--recipe", "ldam", "--epochs", "1", "--no-progress",
        "optim.batch_size=64", "run.threads=1"]  # fmt: skip


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("remixup: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.slow
def test_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--method", "Remix-DRW", "--out", str(out), "--seed", "1", "--subset-seed", "2", *TINY, "mixing.kappa=2"]) == 0
    stdout = capsys.readouterr().out
    assert "remix-drw on digits: top1" in stdout and str(out / "summary.json") in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["method"], summary["seed"], summary["subset_seed"], summary["epochs"]) == ("remix-drw", 1, 2, 1)
    config = (out / "config.yaml").read_text()
    assert config.startswith("# resolved config of `remixup train`") and "kappa: 2.0" in config
    assert main(["eval", str(out / "checkpoint.pt"), "--device", "cpu", "--json", str(tmp_path / "m.json")]) == 0
    assert f"top1 {summary['top1']:.2f}" in capsys.readouterr().out
    assert json.loads((tmp_path / "m.json").read_text())["confusion"] == summary["confusion"]
    assert main(["eval", str(out), "--device", "cpu", "--logit-adjust", "1", "--json", str(tmp_path / "la.json")]) == 0
    assert "logit-adjusted by tau 1" in capsys.readouterr().out
    adjusted = json.loads((tmp_path / "la.json").read_text())
    assert adjusted["logit_adjust"] == 1.0 and sum(map(sum, adjusted["confusion"])) == sum(map(sum, summary["confusion"]))
    assert "`--logit-adjust` must be >= 0" in _error(capsys, ["eval", str(out), "--logit-adjust", "-1"])


def test_keys_lists_the_override_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--keys"]) == 0
    assert "mixing.kappa" in capsys.readouterr().out.split()


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--method", "remix-xyz"], "unknown method 'remix-xyz': 'xyz' is not a part of a method name; did you mean 'remix'?"),
        (["--dataset", "cifar11"], "unknown dataset 'cifar11'; did you mean 'cifar10'? (valid datasets: cifar10,"),
        (["--recipe", "fast"], "unknown recipe 'fast'"),
        (["mixing.kapa=2"], "unknown config key 'mixing.kapa'; did you mean 'mixing.kappa'?"),
        (["optim.lr=fast"], "`optim.lr` must be a number; got 'fast'"),
        (["run.epochs=1.5"], "`run.epochs` must be an integer"),
        (["mixing.kappa=0.5"], "`mixing.kappa` must be >= 1; got 0.5"),
        (["mixing.tau=1.5"], r"`mixing.tau` must be in [0, 1]; got 1.5"),
        (["mixing.alpha=-1"], "`mixing.alpha` must be > 0"),
        (["--epochs", "0"], "`epochs` must be >= 1"),
        (["--config", "/nonexistent/config.yaml"], "config file not found: /nonexistent/config.yaml"),
        (["--device", "tpu"], "`run.device` must be"),
    ],
)
def test_config_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    base = ["train", "--dataset", "digits", "--method", "remix", "--out", str(tmp_path / "run"), "--no-progress"]
    err = _error(capsys, base + argv)
    assert match in err
    assert not (tmp_path / "run").exists()  # validated before any work


def test_missing_data_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["train", "--dataset", "cifar10", "--data-root", str(tmp_path / "nowhere"), "--method", "erm",
                          "--out", str(tmp_path / "run"), "--no-progress"])  # fmt: skip
    assert "cifar10 not found in" in err and "nowhere" in err


def test_unwritable_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    err = _error(capsys, ["train", "--out", str(blocker / "run"), *TINY])
    assert f"cannot write the output folder {blocker / 'run'}" in err


def test_resume_mistakes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["train", "--out", str(tmp_path / "none"), "--resume", *TINY])
    assert f"cannot resume {tmp_path / 'none'}: the folder does not exist" in err
    assert not (tmp_path / "none").exists()  # not created by the failed resume
    (tmp_path / "empty").mkdir()
    err = _error(capsys, ["train", "--out", str(tmp_path / "empty"), "--resume", *TINY])
    assert f"no checkpoint at {tmp_path / 'empty' / 'checkpoint.pt'}" in err
    assert list((tmp_path / "empty").iterdir()) == []
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "checkpoint.pt").write_bytes(b"\x80\x02 truncated")
    err = _error(capsys, ["train", "--out", str(bad), "--resume", *TINY])
    assert f"checkpoint {bad / 'checkpoint.pt'} is corrupt or unreadable" in err
    err = _error(capsys, ["eval", str(bad / "checkpoint.pt")])
    assert "is corrupt or unreadable" in err


def test_existing_run_without_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(b"")
    err = _error(capsys, ["train", "--out", str(out), *TINY])
    assert "already holds a run" in err and "--resume" in err


def test_out_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert "train needs --out DIR" in _error(capsys, ["train", "--dataset", "digits"])


@pytest.mark.slow
def test_eval_logit_adjust_acts_on_ldam_scaled_logits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """LDAM trains its softmax on s·z (s = 30): `--logit-adjust τ` must rank by s·z − τ·log π, i.e. z − (τ/s)·log π."""
    from remixup.checkpoint import load
    from remixup.data import get_spec, load_dataset
    from remixup.engine import evaluate
    from remixup.losses import LDAMLoss
    from remixup.models import build_model

    out = tmp_path / "run"
    assert main(["train", "--method", "ldam", "--out", str(out), *TINY]) == 0
    assert main(["eval", str(out), "--device", "cpu", "--logit-adjust", "1", "--json", str(tmp_path / "la.json")]) == 0
    assert "logit-adjusted by tau 1 of 30 x logits" in capsys.readouterr().out
    got = json.loads((tmp_path / "la.json").read_text())
    assert (got["logit_adjust"], got["logit_scale"]) == (1.0, 30.0)

    state = load(out / "checkpoint.pt")
    counts = state["class_counts"]
    model = build_model(state["model_name"], len(counts), classifier="norm", in_channels=1)
    model.load_state_dict(state["model"])
    test = load_dataset("digits", None, train=False)
    kw = {"class_counts": counts, "transform": get_spec("digits").eval_transform()}
    assert LDAMLoss(counts).logit_scale == 30.0
    assert got["confusion"] == evaluate(model, test.x, test.y, logit_adjust=1 / 30, **kw)["confusion"]
    # The unscaled shift is a different (30× stronger) correction; on this run it changes the predictions.
    assert evaluate(model, test.x, test.y, logit_adjust=1.0, **kw)["confusion"] != got["confusion"]
