"""User mistakes on the command line: exit status 2, one line on stderr, no traceback, and no file written or changed
(the folder named by --out is not created, the user's own files keep their bytes)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from remixup.cli import main

FAST = ["--no-progress", "run.threads=1", "run.tensorboard=off", "run.device=cpu"]


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def refused(capsys: pytest.CaptureFixture[str], argv: list[Any], match: str, *, watch: Path) -> str:
    """Run the CLI in this process: exit 2, one stderr line matching ``match``, nothing under ``watch`` changed."""
    before = tree(watch)
    code = main([str(a) for a in argv])  # a traceback would raise here
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("remixup: error: ") and re.search(match, err[0]), err[0]
    assert tree(watch) == before
    return err[0]


def npz(path: Path, x_train: np.ndarray, x_test: np.ndarray) -> Path:
    np.savez(path, x_train=x_train, y_train=np.arange(len(x_train)) % 2, x_test=x_test, y_test=np.arange(len(x_test)) % 2)
    return path


def images(n: int, h: int, w: int, c: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c), dtype=np.uint8)


def fake_run(folder: Path) -> Path:
    """A finished run folder as `remixup report` reads it (no training)."""
    folder.mkdir(parents=True)
    summary = {"top1": 60.0, "top5": 100.0, "balanced_acc": 60.0, "many": None, "medium": 60.0, "few": None,
               "per_class": [20.0, 100.0], "confusion": [[1, 4], [0, 5]], "class_counts": [20, 20], "lam_y_forced": None,
               "images_per_s": 1.0, "train_loss": 1.0, "train_acc": 65.0, "epochs": 1, "method": "erm", "model": "mlp",
               "recipe": "paper", "dataset": "moons", "imbalance": "none", "ratio": 1.0, "seed": 0, "subset_seed": 0}  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "train_loss": 1.0, "train_acc": 65.0, "lr": 0.1}) + "\n")
    (folder / ".remixup-run").write_text("")
    return folder


# -- writes nobody asked for ------------------------------------------------------------------------------------


def test_report_never_overwrites_a_users_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = fake_run(tmp_path / "run")
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "report.md").write_text("my own report\n")
    refused(capsys, ["report", run, "--out", mine], r"--out .*notes holds files that are not a remixup report \(report.md\)",
            watch=tmp_path)  # fmt: skip
    refused(capsys, ["report", run, "--out", run], r"--out .*run holds files that are not a remixup report", watch=tmp_path)
    (tmp_path / "file").write_text("x")
    refused(capsys, ["report", run, "--out", tmp_path / "file"], r"--out .*file is a file, not a folder", watch=tmp_path)
    # an earlier report's folder is reused
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--compare-only"]) == 0
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--compare-only"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("name", ["counts", "folder"])
def test_data_plot_needs_a_file_name_with_an_extension(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "counts.png").write_bytes(b"the user's picture")
    (tmp_path / "folder").mkdir()
    match = r"--plot .*counts needs a file name ending in .png" if name == "counts" else r"--plot .*folder is a folder"
    refused(capsys, ["data", "--dataset", "moons", "--plot", tmp_path / name], match, watch=tmp_path)


def test_a_refused_folder_gets_no_marker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # the user's file, named like a run's
    (out / "config.yaml").write_text("mine: 1\n")
    refused(capsys, ["train", "--dataset", "moons", "--out", out, *FAST], r"already holds a run", watch=tmp_path)
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "summary.json"]  # no .remixup-run left behind


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("five-channels", r"images must have 1 \(grey\) or 3 \(RGB\) channels.* got samples of shape \(8, 8, 5\)"),
        ("one-pixel", r"images of 1x1 pixels are too small for the image models \(at least 4x4\)"),
        ("sizes-differ", r"x_train holds samples of shape \(8, 8, 3\) but x_test of shape \(16, 16, 3\)"),
    ],
)
def test_npz_data_errors_come_before_the_run_folder(case: str, match: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    arrays = {"five-channels": (images(20, 8, 8, 5), images(6, 8, 8, 5)), "one-pixel": (images(20, 1, 1, 3), images(6, 1, 1, 3)),
              "sizes-differ": (images(20, 8, 8, 3), images(6, 16, 16, 3))}[case]  # fmt: skip
    data = npz(tmp_path / "d.npz", *arrays)
    refused(capsys, ["train", "--dataset", "npz", "--data-root", data, "--imbalance", "none", "--out", tmp_path / "run", *FAST],
            match, watch=tmp_path)  # fmt: skip
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("dataset", "size", "match"),
    [
        ("digits", 64, r"`data.image_size`=64 applies to image files \(imagefolder, .*\); digits keeps its own size"),
        ("imagefolder", 4, r"`data.image_size` must be >= 8 pixels, or 0 for the data set's own; got 4"),
        ("imagefolder", -1, r"data.image_size"),
    ],
    ids=["in-memory-images", "too-small", "negative"],
)
def test_an_image_size_that_cannot_apply_is_one_line(dataset: str, size: int, match: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from PIL import Image

    for split in ("train", "val"):
        for c in range(2):
            (tmp_path / "imgs" / split / f"c{c}").mkdir(parents=True)
            Image.fromarray(images(1, 12, 12, 3, seed=c)[0]).save(tmp_path / "imgs" / split / f"c{c}" / "0.png")
    refused(capsys, ["train", "--dataset", dataset, "--data-root", tmp_path / "imgs", "--imbalance", "none", "--out",
                     tmp_path / "run", *FAST, f"data.image_size={size}"], match, watch=tmp_path)  # fmt: skip
    assert not (tmp_path / "run").exists()


# -- silent wrong results -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["cmo", "cmo-drw"])
def test_cmo_without_a_mixing_window_is_refused(method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, ["train", "--dataset", "digits", "--method", method, "--epochs", "7", "--out", tmp_path / "run", *FAST],
            rf"{method} mixes only in epochs 4 to run.epochs - 4 .* it would never mix; train more than 7 epochs",
            watch=tmp_path)  # fmt: skip
    # the window opened by hand is accepted
    assert main(["train", "--dataset", "digits", "--method", method, "--epochs", "2", "--print-config", "mixing.skip_first=0",
                 "mixing.skip_last=0"]) == 0  # fmt: skip
    capsys.readouterr()


def test_reproduce_refuses_a_misspelled_key_before_listing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, ["reproduce", "table1", "--set", "mixing.kapa=2", "--dry-run", "--runs-dir", tmp_path / "runs"],
            r"unknown config key 'mixing.kapa'; did you mean 'mixing.kappa'\?", watch=tmp_path)  # fmt: skip
    capsys.readouterr()


# -- tracebacks on user mistakes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("run: " + "[" * 5000 + "]" * 5000 + "\n", r"config file .*c.yaml is nested too deeply to read"),
        (bytes(range(256)) * 4, r"config file .*c.yaml is not a text file \(it is not UTF-8\)"),
        ("run:\n  seed: " + "1" * 5000 + "\n", r"config file .*c.yaml holds a value that cannot be read \(Exceeds the limit"),
        ("run: !!python/object/apply:os.system [echo]\n", r"config file .*c.yaml is not valid YAML: could not determine a constructor"),
    ],
    ids=["nested", "binary", "huge-int", "python-tag"],
)
def test_a_broken_config_file_is_one_line(content: str | bytes, match: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    refused(capsys, ["train", "--config", path, "--dataset", "moons", "--out", tmp_path / "run", *FAST], match, watch=tmp_path)


def test_a_huge_integer_override_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, ["train", "--dataset", "moons", "--out", tmp_path / "run", f"run.seed={'1' * 5000}", *FAST],
            r"the value of override 'run.seed' holds a value that cannot be read", watch=tmp_path)  # fmt: skip


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("space: " + "[" * 5000 + "]" * 5000 + "\n", r"search space file .*space.yaml is nested too deeply to read"),
        ("space: !!python/object/apply:os.system [echo]\n", r"search space file .*space.yaml is not valid YAML"),
    ],
    ids=["nested", "python-tag"],
)
def test_a_hostile_search_space_is_one_line(content: str, match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("optuna")
    (tmp_path / "space.yaml").write_text(content)
    refused(capsys, ["tune", "create", tmp_path / "study", "--space", tmp_path / "space.yaml", "--dataset", "moons"], match,
            watch=tmp_path)  # fmt: skip


def test_a_python_tagged_study_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("optuna")
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.yaml").write_text("storage: !!python/object/apply:os.system [echo]\n")
    refused(capsys, ["tune", "status", tmp_path / "study"], r"study settings .*study.yaml is not valid YAML", watch=tmp_path)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["tabular", "table1"], r"`remixup reproduce tabular` runs alone; name the other tables in another call"),
        (["tabular", "--workers", "0"], r"`--workers` must be >= 1; got 0"),
    ],
    ids=["with-another-table", "no-workers"],
)
def test_reproduce_tabular_mistakes_are_one_line(argv: list[str], match: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    refused(capsys, ["reproduce", *argv, "--runs-dir", tmp_path / "runs"], match, watch=tmp_path)


def test_a_nul_character_in_a_label_is_a_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("pandas")
    rows = ["a,b,label"] + [f"{i * 0.1},{i % 7},{'x' + chr(0) if i % 2 else 'q'}" for i in range(120)]
    (tmp_path / "nul.csv").write_text("\n".join(rows) + "\n")
    assert main(["data", "--dataset", f"tabular:{tmp_path / 'nul.csv'}", "--imbalance", "none", "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert sorted(counts["classes"]) == ["q", "x\x00"] and counts["total"] > 0


# -- what a new user met ------------------------------------------------------------------------------------------


def test_a_table_file_without_the_prefix_is_pointed_to_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "claims.csv").write_text("a,label\n1,x\n2,y\n")
    refused(capsys, ["train", "--dataset", "claims.csv", "--out", tmp_path / "run", *FAST],
            r"unknown dataset 'claims.csv'; a table file is read as --dataset tabular:claims.csv", watch=tmp_path)  # fmt: skip
    with pytest.raises(SystemExit) as info:  # argparse's refusal of the option's value
        main(["data", "--dataset", "claims.csv"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and "a table file is read as --dataset tabular:claims.csv" in err[0]


def test_missing_cifar_names_a_command_that_downloads_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, ["train", "--dataset", "cifar10", "--data-root", tmp_path / "data", "--out", tmp_path / "run", *FAST],
                   r"download it with `remixup data --dataset cifar10 --data-root .*data --download`", watch=tmp_path)  # fmt: skip
    assert "pass --download" not in line and not (tmp_path / "run").exists()


def test_the_tensorboard_note_comes_once_per_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import importlib.util

    from remixup import progress

    monkeypatch.setattr(progress, "_TENSORBOARD_NOTED", False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else object())
    assert progress.tensorboard(tmp_path, True, 0) is None and progress.tensorboard(tmp_path, True, 0) is None
    assert capsys.readouterr().err.count("TensorBoard logging is off") == 1


# -- with a trained run (slow) ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two 1-epoch npz runs: vectors (the default model must be the MLP) and 8x8 grey images."""
    root = tmp_path_factory.mktemp("mistakes")
    rng = np.random.default_rng(0)
    vectors = npz(root / "vectors.npz", rng.normal(size=(40, 5)).astype(np.float32), rng.normal(size=(10, 5)).astype(np.float32))
    grey = npz(root / "grey.npz", images(40, 8, 8, 1), images(10, 8, 8, 1, seed=1))
    out = {}
    for name, data, extra in (("vectors", vectors, []), ("grey", grey, ["model.name=digits_cnn"])):
        argv = ["train", "--dataset", "npz", "--data-root", data, "--imbalance", "none", "--epochs", "1", "--out", root / name,
                "optim.batch_size=8", "run.eval_batch_size=10", *FAST, *extra]  # fmt: skip
        assert main([str(a) for a in argv]) == 0
        out[name] = root / name
    return out


@pytest.mark.slow
def test_npz_vectors_train_with_the_mlp_and_grey_images_predict(runs: dict[str, Path], tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert json.loads((runs["vectors"] / "summary.json").read_text())["model"] == "mlp"
    np.savez(tmp_path / "x.npz", x=images(3, 8, 8, 1, seed=2))
    capsys.readouterr()
    assert main(["predict", str(runs["grey"]), str(tmp_path / "x.npz"), "--device", "cpu"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4  # header + 3 rows


@pytest.mark.slow
def test_predict_refuses_non_finite_vectors(runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.zeros((2, 5), dtype=np.float32)
    x[1, 3] = np.nan
    np.savez(tmp_path / "x.npz", x=x)
    refused(capsys, ["predict", runs["vectors"], tmp_path / "x.npz", "--device", "cpu"],
            r"x.npz\[1\]: holds NaN or infinite values; the model needs finite inputs", watch=tmp_path)  # fmt: skip


@pytest.mark.slow
def test_predict_refuses_a_decompression_bomb(runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from PIL import Image

    Image.new("L", (100, 100)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 10,000 pixels: a bomb for this limit (the real one is 179M)
    refused(capsys, ["predict", runs["grey"], tmp_path / "bomb.png", "--device", "cpu"],
            r"bomb.png: cannot read it as an image \(Image size \(10000 pixels\) exceeds limit", watch=tmp_path)  # fmt: skip


def _crafted(run: Path, dest: Path, change: Any) -> Path:
    shutil.copytree(run, dest)
    state = torch.load(dest / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, dest / "checkpoint.pt")
    return dest


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s["model"][next(iter(s["model"]))].fill_(float("nan")), r"the weight '.*' holds NaN or infinite values"),
        (lambda s: s.update(classes=["only one"]), r"names 1 classes but counts 2; it is damaged"),
    ],
    ids=["non-finite-weights", "short-class-list"],
)
def test_eval_and_predict_refuse_a_damaged_checkpoint(change: Any, match: str, runs: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run = _crafted(runs["vectors"], tmp_path / "run", change)
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 5), dtype=np.float32))
    refused(capsys, ["eval", run, "--device", "cpu"], match, watch=tmp_path)
    refused(capsys, ["predict", run, tmp_path / "x.npz", "--device", "cpu"], match, watch=tmp_path)


@pytest.mark.slow
def test_eval_refuses_an_unknown_device(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, ["eval", runs["vectors"], "--device", "tpu"], r"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got 'tpu'",
            watch=runs["vectors"])  # fmt: skip


@pytest.mark.slow
def test_resume_of_a_finished_run_with_another_method_is_refused(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    refused(capsys, ["train", "--resume", "--out", runs["vectors"], "--method", "remix", "--no-progress"],
            r"cannot resume .*: the configuration differs from the checkpoint's \(method.name: 'erm' -> 'remix'\)",
            watch=runs["vectors"])  # fmt: skip
    assert main(["train", "--resume", "--out", str(runs["vectors"]), "--no-progress"]) == 0  # its own settings: as it is
    capsys.readouterr()
