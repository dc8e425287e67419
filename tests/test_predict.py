"""`remixup predict` and `remixup.predict`: image files, folders and npz arrays of a trained run, CSV/JSON, errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import remixup
from remixup.cli import main
from remixup.data.registry import load_dataset

pytestmark = pytest.mark.slow  # trains a model once for the module


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of Remix-CM-DRW (CutMix + Remix labels + DRW, a composed name) on the digits."""
    out = tmp_path_factory.mktemp("predict") / "run"
    argv = ["train", "--dataset", "digits", "--method", "remix-cm-drw", "--epochs", "1", "--out", str(out), "--no-progress",
            "schedule.deferral_epoch=0", "run.threads=1", "optim.batch_size=64", "run.tensorboard=off"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "remix-cm-drw" and summary["epochs"] == 1
    return out


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    test = load_dataset("digits", train=False)
    return test.x[:12].numpy(), test.y[:12].numpy()  # uint8 (12, 8, 8, 1)


def test_predict_a_folder_of_pngs(run_dir: Path, digits, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, _ = digits
    folder = tmp_path / "pngs"
    (folder / "sub").mkdir(parents=True)
    for i, img in enumerate(x[:6]):
        Image.fromarray(img[:, :, 0]).save(folder / ("sub" if i % 2 else "") / f"d{i}.png")
    Image.fromarray(np.kron(x[6, :, :, 0], np.ones((4, 4), dtype=np.uint8))).convert("RGB").save(folder / "big.png")
    (folder / "notes.txt").write_text("not an image")  # skipped: folders are searched for image files only
    assert main(["predict", str(run_dir), str(folder), "--top-k", "3", "--batch-size", "4"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 7 and {Path(r["input"]).name for r in rows} == {*(f"d{i}.png" for i in range(6)), "big.png"}
    assert list(rows[0]) == ["input", "label", "class", "probability", "class_1", "probability_1", "class_2",
                             "probability_2", "class_3", "probability_3"]  # fmt: skip
    for r in rows:
        probs = [float(r[f"probability_{i}"]) for i in (1, 2, 3)]
        assert r["class"] == r["class_1"] and float(r["probability"]) == probs[0] and probs == sorted(probs, reverse=True)


def test_predict_an_npz_matches_python_and_the_images(run_dir: Path, digits, tmp_path: Path, capsys) -> None:
    x, _ = digits
    path = tmp_path / "x.npz"
    np.savez(path, x=x)
    out = tmp_path / "p.json"
    assert main(["predict", str(run_dir), str(path), "--format", "json", "--out", str(out), "--device", "cpu"]) == 0
    rows = json.loads(out.read_text())
    assert [r["input"] for r in rows] == [f"{path}[{i}]" for i in range(12)]
    python = remixup.predict(run_dir, x, top_k=5, device="cpu")  # the same from Python, on an array
    assert [r["label"] for r in python] == [r["label"] for r in rows]
    assert [r["probability"] for r in python] == pytest.approx([r["probability"] for r in rows], abs=1e-6)
    assert all(len(r["top_k"]) == 5 and sum(t["probability"] for t in r["top_k"]) <= 1 + 1e-6 for r in rows)
    png = tmp_path / "one.png"
    Image.fromarray(x[0, :, :, 0]).save(png)
    assert remixup.predict(run_dir / "checkpoint.pt", [png])[0]["probability"] == pytest.approx(rows[0]["probability"], abs=1e-6)
    adjusted = remixup.predict(run_dir, x, logit_adjust=1.0)
    assert [r["probability"] for r in adjusted] != [r["probability"] for r in python]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: np.savez(d / "bad.npz", x=np.zeros((3, 5, 5, 1), np.uint8)), "the model takes uint8 images of 8x8 pixels"),
        (lambda d: np.savez(d / "bad.npz", x=np.zeros((3, 8, 8, 1), np.float32)), "got float32 (8, 8, 1)"),
        (lambda d: np.savez(d / "bad.npz", a=np.zeros(3), b=np.zeros(3)), "name the inputs `x`"),
        (lambda d: (d / "bad.npz").write_bytes(b"not a zip"), "cannot read it as an .npz file"),
        (lambda d: (d / "bad.png").write_bytes(b"not a png"), "cannot read it as an image"),
        (lambda d: (d / "empty").mkdir(), "no image files"),
        (lambda d: None, "no such file or folder"),
    ],
)
def test_bad_inputs_are_one_line_errors(run_dir: Path, tmp_path: Path, capsys, make, message: str) -> None:
    make(tmp_path)
    target = next(iter(sorted(tmp_path.iterdir())), tmp_path / "missing.png")
    assert main(["predict", str(run_dir), str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("remixup: error: ") and message in err and err.count("\n") == 1
