"""Typed config: recipes, --epochs scaling, type-checked overrides, validation before any work."""

from __future__ import annotations

from importlib import resources

import pytest
import yaml

from remixup.config import (
    TrainConfig,
    apply_override,
    build_config,
    load_recipe,
    recipe_names,
    valid_keys,
    with_epochs,
)


def test_recipes_match_the_spec() -> None:
    assert recipe_names() == ["inat200", "inat90", "ldam", "paper", "tabular"]
    paper, ldam = build_config("paper"), build_config("ldam")
    assert (paper.run.epochs, paper.schedule.milestones, paper.schedule.deferral_epoch) == (300, [150, 250], 250)
    assert paper.schedule.lr_factors == pytest.approx([0.1, 0.01])
    assert (ldam.run.epochs, ldam.schedule.milestones, ldam.schedule.deferral_epoch) == (200, [160, 180], 160)
    assert ldam.schedule.lr_factors == pytest.approx([0.01, 0.0001])
    for cfg in (paper, ldam):
        assert (cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.batch_size) == (0.1, 0.9, 2e-4, 128)
        assert cfg.schedule.warmup_epochs == 5 and cfg.mixing.alpha == 1.0
    for name, epochs, milestones in (("inat90", 90, [30, 60]), ("inat200", 200, [75, 150])):
        cfg = build_config(name)
        assert (cfg.run.epochs, cfg.schedule.milestones, cfg.optim.batch_size, cfg.mixing.alpha) == (epochs, milestones, 256, 0.4)


@pytest.mark.parametrize("name", ["paper", "ldam", "inat90", "inat200"])
def test_recipe_file_starts_with_its_command(name: str) -> None:
    text = (resources.files("remixup") / "recipes" / f"{name}.yaml").read_text()
    assert text.startswith(f"# remixup train --recipe {name} ")
    assert load_recipe(name)["recipe"] == name


def test_epochs_scale_the_schedule_and_keep_its_shape() -> None:
    ldam = build_config("ldam")
    s25 = with_epochs(ldam, 25).schedule
    assert (s25.milestones, s25.deferral_epoch, s25.warmup_epochs) == ([20, 23], 20, 1)
    s2 = with_epochs(ldam, 2).schedule
    assert (s2.milestones, s2.deferral_epoch, s2.warmup_epochs) == ([1, 1], 1, 0)  # the deferred phase still runs
    s100 = with_epochs(build_config("paper"), 100).schedule
    assert (s100.milestones, s100.deferral_epoch, s100.warmup_epochs) == ([50, 83], 83, 2)
    assert ldam.schedule.milestones == [160, 180]  # the input is not modified
    assert build_config("ldam", epochs=25).schedule.milestones == [20, 23]


def test_overrides_are_typed() -> None:
    cfg = build_config("paper", overrides=["mixing.kappa=2", "optim.lr=5e-2", "run.out=2024", "schedule.milestones=[3, 4]",
                                           "mixing.per_sample=true", "run.epochs=10", "schedule.lr_factors=[1, 0.5]"])  # fmt: skip
    assert cfg.mixing.kappa == 2.0 and isinstance(cfg.mixing.kappa, float)
    assert (cfg.optim.lr, cfg.run.out, cfg.schedule.milestones, cfg.mixing.per_sample) == (0.05, "2024", [3, 4], True)
    assert cfg.schedule.lr_factors == [1.0, 0.5]


@pytest.mark.parametrize(
    ("override", "error", "match"),
    [
        ("mixing.kapa=2", ValueError, r"unknown config key 'mixing.kapa'; did you mean 'mixing.kappa'\?"),
        ("kappa=2", ValueError, "unknown config key 'kappa'"),
        ("nonsense", ValueError, "must look like key=value"),
        ("optim.lr=fast", TypeError, r"`optim.lr` must be a number; got 'fast'"),
        ("run.epochs=2.5", TypeError, r"`run.epochs` must be an integer"),
        ("mixing.per_sample=3", TypeError, "must be true or false"),
        ("schedule.milestones=5", TypeError, "must be a list of int"),
        ("mixing.kappa=0.5", ValueError, r"`mixing.kappa` must be >= 1; got 0.5"),
        ("mixing.tau=1.5", ValueError, r"`mixing.tau` must be in \[0, 1\]; got 1.5"),
        ("mixing.alpha=0", ValueError, r"`mixing.alpha` must be > 0"),
        ("data.ratio=0.5", ValueError, r"`data.ratio` must be >= 1"),
        ("optim.batch_size=1", ValueError, r"`optim.batch_size` must be >= 2"),
        ("schedule.milestones=[5, 3]", ValueError, "increasing order"),
        ("schedule.lr_factors=[0.1]", ValueError, "same length"),
        ("run.device=tpu", ValueError, "run.device"),
        ("run.amp=fp8", ValueError, "run.amp"),
        ("method.name=remixx", ValueError, "unknown method"),
        ("data.dataset=imagenet", ValueError, "unknown dataset 'imagenet'"),
        ("model.name=vgg", ValueError, "unknown model 'vgg'"),
    ],
)
def test_bad_values_are_rejected_before_any_work(override: str, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build_config("paper", overrides=[override])


def test_unknown_recipe_and_yaml_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown recipe 'fast' \(valid recipes: inat200, inat90, ldam, paper, tabular\)"):
        build_config("fast")
    with pytest.raises(ValueError, match="unknown config key 'optim.learning_rate'"):
        TrainConfig.from_dict({"optim": {"learning_rate": 0.1}})
    with pytest.raises(ValueError, match="unknown config key 'optimizer'"):
        TrainConfig.from_dict({"optimizer": {}})


def test_config_file_and_round_trip(tmp_path) -> None:  # noqa: ANN001
    cfg = build_config("ldam", epochs=4, overrides=["method.name=remix-drw", "mixing.tau=0.25"])
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml("a header"))
    assert path.read_text().startswith("# a header\n")
    again = build_config(None, config_file=path)
    assert again == cfg
    assert yaml.safe_load(path.read_text())["mixing"]["tau"] == 0.25
    user = tmp_path / "mine.yaml"
    user.write_text("recipe: paper\nmixing:\n  kappa: 5\n")
    mine = build_config(None, config_file=user)
    assert (mine.recipe, mine.mixing.kappa, mine.run.epochs) == ("paper", 5.0, 300)


def test_valid_keys_are_dotted() -> None:
    keys = valid_keys()
    assert "mixing.kappa" in keys and "optim.lr" in keys and "run.amp" in keys and "run.channels_last" in keys
    assert all(k.count(".") == 1 for k in keys)


def test_apply_override_in_place() -> None:
    cfg = TrainConfig()
    apply_override(cfg, "mixing.tau=0")
    assert cfg.mixing.tau == 0.0


def test_one_epoch_runs_keep_the_deferred_phase() -> None:
    one = build_config("ldam", epochs=1, overrides=["method.name=remix-drw"])
    assert (one.schedule.deferral_epoch, one.run.epochs) == (0, 1)
    assert with_epochs(build_config("paper"), 1).schedule.milestones == [1, 1]  # milestones past the run: no decay
