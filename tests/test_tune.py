"""remixup tune without workers: the space, the objective, bad input, the validation split and the epoch hook."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("optuna")

from remixup import tune  # noqa: E402
from remixup.cli import main  # noqa: E402
from remixup.data.datasets import ArrayDataset  # noqa: E402
from remixup.data.run import hold_out  # noqa: E402
from remixup.errors import ConfigError, DataError  # noqa: E402

SPACE = "space:\n  mixing.kappa: {type: float, low: 1.5, high: 5}\n  mixing.tau: {type: float, low: 0.0, high: 1.0}\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("space", "match"),
    [
        ({"mixing.kapa": {"type": "float", "low": 1, "high": 2}}, "unknown config key 'mixing.kapa'"),
        ({"mixing.kappa": {"type": "float", "low": 3, "high": 2}}, r"empty or inverted range \[3, 2\]"),
        ({"mixing.kappa": {"type": "float", "low": 2, "high": 2}}, "empty or inverted range"),
        ({"optim.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "log-scaled"),
        ({"method.name": {"type": "categorical", "choices": []}}, "non-empty list"),
        ({"mixing.kappa": {"type": "normal", "low": 1, "high": 2}}, "needs a `type`"),
        ({"mixing.kappa": {"type": "float", "low": 1, "high": 2, "stepp": 1}}, "unknown field"),
        ({"optim.batch_size": {"type": "int", "low": 8, "high": 64, "step": 0}}, "bad `step`"),
    ],
)
def test_bad_spaces(space, match):
    with pytest.raises(ConfigError, match=match):
        tune.parse_space(space)


def test_space_suggest_mirrors_optuna():
    import optuna

    space = tune.parse_space({"optim.lr": {"type": "float", "low": 0.01, "high": 1, "log": True},
                              "optim.batch_size": {"type": "int", "low": 16, "high": 64, "step": 16},
                              "method.name": {"type": "categorical", "choices": ["remix", "remix-drw"]}})  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = tune.suggest(study.ask(), space)
    assert 0.01 <= params["optim.lr"] <= 1 and params["optim.batch_size"] in (16, 32, 48, 64)
    assert params["method.name"] in ("remix", "remix-drw")


def test_worker_seeds_differ_by_worker_and_progress():
    seeds = {tune.worker_seed(0, w, f) for w in range(4) for f in range(10)}
    assert len(seeds) == 40 and tune.worker_seed(0, 1, 2) == tune.worker_seed(0, 1, 2)


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err
    return code, err


def test_create_bad_input_one_line(tmp_path, capsys):
    space = write(tmp_path / "space.yaml", SPACE)
    base = ["tune", "create", str(tmp_path / "s"), "--space", str(space), "--dataset", "digits", "--ratio", "10", "--epochs", "2"]
    code, err = _cli(capsys, *base, "--metric", "top1")
    assert code == 2 and "must be a validation metric" in err and err.count("\n") == 1
    code, err = _cli(capsys, *base, "--metric", "val_nope")
    assert code == 2 and "must be a validation metric" in err
    bad = write(tmp_path / "bad.yaml", "space:\n  mixing.kapa: {type: float, low: 1, high: 2}\n")
    code, err = _cli(capsys, *base[:4], str(bad), *base[5:])
    assert code == 2 and "unknown config key 'mixing.kapa'" in err and err.count("\n") == 1
    inverted = write(tmp_path / "inv.yaml", "space:\n  mixing.tau: {type: float, low: 0.9, high: 0.1}\n")
    code, err = _cli(capsys, *base[:4], str(inverted), *base[5:])
    assert code == 2 and "empty or inverted range" in err
    outside = write(tmp_path / "out.yaml", "space:\n  mixing.tau: {type: float, low: 0.5, high: 2}\n")
    code, err = _cli(capsys, *base[:4], str(outside), *base[5:])
    assert code == 2 and "mixing.tau=2" in err
    code, err = _cli(capsys, *base, "--storage", "postgresql://nobody@127.0.0.1:1/none")  # the driver is there; no server
    assert code == 2 and "cannot open the storage postgresql://***@127.0.0.1:1/none" in err and err.count("\n") == 1
    assert "driver" not in err and "import" not in err
    code, err = _cli(capsys, *base, "--storage", "mysql://x")
    assert code == 2 and "unknown storage" in err
    assert not (tmp_path / "s" / tune.SETTINGS_FILE).exists()
    # created once; the same again is a no-op; another space is refused
    assert _cli(capsys, *base)[0] == 0
    assert _cli(capsys, *base)[0] == 0
    other = write(tmp_path / "other.yaml", SPACE.replace("high: 5", "high: 4"))
    code, err = _cli(capsys, *base[:4], str(other), *base[5:])
    assert code == 2 and "created with a different space" in err
    code, err = _cli(capsys, "tune", "run", str(tmp_path / "none"), "--n-trials", "2")
    assert code == 2 and "holds no study" in err


def test_create_records_settings_and_enqueues_the_paper_values(tmp_path):
    from remixup.config import build_config

    space = write(tmp_path / "space.yaml", SPACE + "fixed:\n  mixing.alpha: 0.5\n")
    config = build_config("paper", values={"data.dataset": "digits", "data.ratio": 10.0, "method.name": "remix-drw"}, epochs=10)
    study, created = tune.create_study(tmp_path / "s", space_file=space, config=config, sampler_seed=3)
    assert created and study.settings.config["data"]["val_fraction"] == 0.2  # a validation split by default
    assert study.settings.config["run"]["eval_test"] is False  # trials never evaluate the test split
    assert study.settings.config["mixing"]["alpha"] == 0.5
    assert study.settings.pruner.warmup == config.schedule.deferral_epoch  # never pruned before DRW starts
    assert study.settings.versions["optuna"].startswith("5.")
    assert study.settings.sampler == tune.SamplerSettings(name="tpe", seed=3, n_startup_trials=10)
    again = tune.read_settings(tmp_path / "s")  # study.yaml reads back as the same typed settings
    assert again == study.settings and isinstance(again.objective, tune.ObjectiveSettings)
    assert study.trial_config({}, seed=0, out=tmp_path / "t").run.eval_test is False
    assert study.trial_config({}, seed=0, out=tmp_path / "t", test=True).run.eval_test is True  # confirm
    waiting = study.trials("WAITING")
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"mixing.kappa": 3.0, "mixing.tau": 0.5}]


def test_create_refuses_a_study_that_cannot_train(tmp_path, capsys):
    """digits at the default ratio 100 keeps one sample of its rarest class: no validation split can hold it out, so
    every trial would fail; `create` sets the base config up as `train` would and refuses it in one line."""
    space = write(tmp_path / "space.yaml", SPACE)
    code, err = _cli(capsys, "tune", "create", str(tmp_path / "s"), "--space", str(space), "--dataset", "digits", "--epochs", "1")
    assert code == 2 and err.count("\n") == 1 and "the study's trials could not train" in err and "training samples" in err
    assert not (tmp_path / "s" / tune.SETTINGS_FILE).exists()
    code, err = _cli(capsys, "tune", "create", str(tmp_path / "b"), "--space", str(space), "--dataset", "digits", "--ratio", "10",
                     "--epochs", "1", "--set", "optim.batch_size=4096")  # fmt: skip
    assert code == 2 and "optim.batch_size=4096 is larger than the training set" in err and err.count("\n") == 1


def test_settings_file_is_checked(tmp_path):
    file = write(tmp_path / tune.SETTINGS_FILE, "space: {}\nconfig: {}\nsampler: {name: tpe, seeds: 3}\n")
    with pytest.raises(ConfigError, match="unknown sampler setting"):
        tune.read_settings(tmp_path)
    file.write_text("space: {}\nconfig: {}\ncolour: red\n")
    with pytest.raises(ConfigError, match="is not a study's settings file"):
        tune.read_settings(tmp_path)


def test_eval_test_off_needs_a_validation_split_and_the_log_line_shows_it():
    from remixup.config import build_config
    from remixup.progress import log_line

    with pytest.raises(ConfigError, match=r"run.eval_test=false needs a validation split \(data.val_fraction > 0\)"):
        build_config("paper", values={"data.dataset": "digits"}, epochs=1, overrides=["run.eval_test=false"])
    row = {"epoch": 1, "lr": 0.1, "train_loss": 1.0, "train_acc": 50.0, "images_per_s": 10.0, "time_s": 1.0}
    assert "val" not in log_line(row, 2)
    line = log_line({**row, "val_top1": 81.5, "val_balanced_acc": 79.25}, 2)
    assert "top1      -" in line and line.endswith("val top1  81.50  val bal  79.25")


def test_sqlite_takes_one_worker(tmp_path):
    from remixup.config import build_config

    space = write(tmp_path / "space.yaml", SPACE)
    config = build_config("paper", values={"data.dataset": "digits", "data.ratio": 10.0}, epochs=1)
    study, _ = tune.create_study(tmp_path / "s", space_file=space, config=config, storage=f"sqlite:///{tmp_path / 'db.sqlite'}")
    with tune._sqlite_lock(study), pytest.raises(tune.UserError, match="one worker at a time"):
        with tune._sqlite_lock(tune.load(tmp_path / "s")):
            pass


def test_hold_out_is_stratified_seeded_and_disjoint():
    y = torch.tensor([0] * 50 + [1] * 10 + [2] * 3)
    data = ArrayDataset(torch.arange(63).float()[:, None], y)
    train, val = hold_out(data, 0.2, seed=1, min_per_class=2)
    assert val.class_counts.tolist() == [10, 2, 2] and train.class_counts.tolist() == [40, 8, 1]
    assert set(train.x[:, 0].tolist()).isdisjoint(val.x[:, 0].tolist()) and len(train) + len(val) == 63
    again = hold_out(data, 0.2, seed=1, min_per_class=2)[1]
    assert torch.equal(again.x, val.x) and not torch.equal(hold_out(data, 0.2, seed=2, min_per_class=2)[1].x, val.x)
    with pytest.raises(DataError, match="class '2' has 3 training samples"):
        hold_out(data, 0.2, seed=1, min_per_class=3)


@pytest.mark.slow
def test_training_logs_validation_metrics_and_the_hook_stops_it(tmp_path):
    from remixup.config import build_config
    from remixup.engine import train

    values = {"data.dataset": "digits", "data.ratio": 10.0, "method.name": "remix", "run.out": str(tmp_path / "a"),
              "run.progress": False, "data.val_fraction": 0.2}  # fmt: skip
    config = build_config(
        "paper", values=values, epochs=2, overrides=["run.eval_every=1", "optim.batch_size=64", "run.threads=1"]
    )
    seen: list[tuple[int, float]] = []
    summary = train(config, on_epoch=lambda epoch, row: seen.append((epoch, row["val_balanced_acc"])))
    assert [e for e, _ in seen] == [1, 2] and summary["val_balanced_acc"] == seen[-1][1]
    assert {"val_top1", "val_many", "val_few"} <= set(summary)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["val_top1"] is not None and sum(summary["class_counts"]) < 1797 // 2  # the split left training

    class Stop(Exception):
        pass

    def stop(epoch: int, row: dict) -> None:
        raise Stop

    config.run.out = str(tmp_path / "b")
    with pytest.raises(Stop):
        train(config, on_epoch=stop)
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 1  # the epoch was logged first


@pytest.mark.slow
def test_train_with_eval_test_off_reports_the_validation_split(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "--ratio", "10", "--epochs", "1", "--no-progress", "--out", str(out),
            "data.val_fraction=0.2", "run.eval_test=false", "run.threads=1", "optim.batch_size=128"]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert " top1      -  bal      - " in stdout and "val bal" in stdout and ": val_top1 " in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert "val_balanced_acc" in summary and not {"top1", "balanced_acc", "confusion"} & set(summary)


def test_fused_runs_refuse_eval_test_off(tmp_path):
    from remixup.config import build_config
    from remixup.errors import UserError
    from remixup.fused import train_fused

    config = build_config("paper", values={"data.dataset": "digits", "data.ratio": 10.0, "run.out": str(tmp_path / "a")},
                          epochs=1, overrides=["data.val_fraction=0.2", "run.eval_test=false"])  # fmt: skip
    with pytest.raises(UserError, match="run.eval_test=false cannot be fused"):
        train_fused([config])
