"""Options a new user meets first: --version, --keys, --print-config, suggestions, one boolean vocabulary, overrides
anywhere on the line, and the checks that run before a run folder is created."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from remixup import __version__
from remixup.cli import main
from remixup.config import TrainConfig, build_config, key_docs, valid_keys


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"remixup {__version__}"


def test_version_is_the_package_metadata() -> None:
    import importlib.metadata

    assert importlib.metadata.version("remixup") == __version__


def test_keys_list_type_default_and_meaning(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--keys"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("mixing.kappa "))
    assert line.split()[1:3] == ["float", "3.0"] and "class-size ratio" in line
    rows = key_docs()
    assert [r[0] for r in rows] == valid_keys()
    assert all(meaning for _, _, _, meaning in rows), [r[0] for r in rows if not r[3]]  # every key says what it is


def test_print_config_is_resolved_and_validated_and_trains_nothing(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    out_dir = tmp_path / "run"
    argv = ["train", "--dataset", "digits", "mixing.kappa=2", "--epochs", "4", "optim.lr=0.05", "--out", str(out_dir),
            "--method", "remix-cm-drw", "--mu", "0.3", "run.progress=off", "--print-config"]  # fmt: skip
    assert main(argv) == 0
    config = TrainConfig.from_dict(yaml.safe_load(capsys.readouterr().out))
    assert (config.mixing.kappa, config.optim.lr, config.run.epochs, config.method.name) == (2.0, 0.05, 4, "remix-cm-drw")
    assert (config.data.mu, config.run.progress, config.run.out) == (0.3, False, str(out_dir))
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mixing.kapa=2"], "unknown config key 'mixing.kapa'; did you mean 'mixing.kappa'?"),
        (["--method", "remix-dwr"], "did you mean 'remix-drw'?"),
        (["--dataset", "digit"], "unknown dataset 'digit'; did you mean 'digits'?"),
        (["--recipe", "ldm"], "unknown recipe 'ldm'; did you mean 'ldam'?"),
        (["--dataset", "moons", "--method", "remix-cm"], "cuts and pastes image patches (CutMix) but 'moons' holds vectors"),
        (["--method", "remix-drw", "--epochs", "5", "schedule.deferral_epoch=50"], "would never start its deferred"),
        (["--dataset", "digits", "data.download=true"], "`data.download` works for cifar10 and cifar100 only"),
        (["--device", "cpu", "run.amp=fp16"], "run.amp=fp16 needs a CUDA device"),
        (["--method", "remix-mm", "run.compile=on"], "run.compile=on does not support manifold mixing"),
    ],
)
def test_mistakes_are_one_line_before_any_run_folder(argv: list[str], message: str, tmp_path, capsys) -> None:
    out_dir = tmp_path / "run"
    assert main(["train", "--out", str(out_dir), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("remixup: error: ") and message in err and err.count("\n") == 1
    assert not out_dir.exists()


def test_cutmix_on_vectors_in_an_npz_is_refused(tmp_path) -> None:
    path = tmp_path / "vectors.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.normal(size=(20, 3)), y_train=np.arange(20) % 2, x_test=rng.normal(size=(4, 3)),
             y_test=np.arange(4) % 2)  # fmt: skip
    with pytest.raises(ValueError, match="holds vectors"):
        build_config("paper", overrides=["data.dataset=npz", f"data.root={path}", "method.name=cutmix"])
    build_config("paper", overrides=["data.dataset=npz", f"data.root={path}", "method.name=remix"])  # Mixup mixes vectors


@pytest.mark.parametrize(("word", "value"), [("true", True), ("On", True), ("yes", True), ("1", True), ("false", False),
                                             ("off", False), ("NO", False), ("0", False)])  # fmt: skip
def test_one_boolean_vocabulary(word: str, value: bool) -> None:
    config = build_config("paper", overrides=[f"run.progress={word}", f"run.channels_last={word}", f"run.compile={word}",
                                              f"run.malloc={word}", f"data.augment={word}"])  # fmt: skip
    switch = "on" if value else "off"
    assert (config.run.progress, config.data.augment) == (value, value)
    assert (config.run.channels_last, config.run.compile, config.run.malloc) == (switch, switch, switch)  # stored as before
    assert build_config("paper", overrides=[f"run.amp={word}"]).run.amp == ("bf16" if value else "off")


def test_switches_from_yaml_files_and_old_configs_load(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("run:\n  channels_last: off\n  compile: true\n  malloc: auto\n  amp: no\n  progress: off\n")
    config = build_config("paper", config_file=path)
    assert (config.run.channels_last, config.run.compile, config.run.malloc, config.run.amp) == ("off", "on", "auto", "off")
    old = TrainConfig().to_dict()  # a config as checkpoints and config.yaml files store it
    old["run"].update(channels_last="on", compile="off", amp="bf16")
    assert TrainConfig.from_dict(old).to_dict() == old


def test_overrides_anywhere_on_the_line(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "mixing.kappa=2", "--dataset", "digits", "mixing.tau=0.25", "--out", "x", "optim.lr=0.05", "--print-config"]
    assert main(argv) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert (config["mixing"]["kappa"], config["mixing"]["tau"], config["optim"]["lr"]) == (2.0, 0.25, 0.05)


def test_unknown_option_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", "x", "--print-config", "--bogus", "mixing.kappa=2"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "remixup: error: unrecognized arguments: --bogus (see `remixup --help`)"
