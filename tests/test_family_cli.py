"""The family end to end: each new method trains one epoch from the CLI (digits and a tiny CIFAR-shaped npz), the
class-weighted partner on file-backed data, and the migration example of docs/family.md in a plain loop."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from remixup.cli import main
from remixup.rundir import LOG_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
NEW_METHODS = ["cmo", "cmo-drw", "cmo-bs", "cmo-ldam-drw", "balanced-mixup", "unimix", "mamix", "mamix-drw"]
# CMO's window (epochs 4 … E − 4) would leave a one-epoch run unmixed: open it, so that the epoch mixes.
OPEN = ["mixing.skip_first=0", "mixing.skip_last=0", "mixing.prob=1"]


def _tiny_cifar_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(4), [60, 30, 15, 8]).astype(np.int64)
    y_test = np.repeat(np.arange(4), 5).astype(np.int64)
    x_train = rng.integers(0, 256, (y_train.size, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (y_test.size, 32, 32, 3), dtype=np.uint8)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def _train(argv: list[str], out: Path, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    options = [a for a in argv if a.startswith("--") or not re.match(r"^\w+\.\w+=", a)]
    overrides = [a for a in argv if a not in options]
    argv = ["train", *options, "--epochs", "1", "--no-progress", "--out", str(out), "run.threads=1", "run.device=cpu", *overrides]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 1
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("method", NEW_METHODS)
def test_each_new_method_trains_an_epoch_on_digits_and_a_cifar_shaped_npz(method: str, tmp_path: Path, capsys) -> None:
    npz = _tiny_cifar_npz(tmp_path / "tiny.npz")
    extra = OPEN if method.startswith("cmo") else []
    for name, argv in (
        ("digits", ["--dataset", "digits", "--ratio", "10", "optim.batch_size=64"]),
        ("npz", ["--dataset", "npz", "--data-root", str(npz), "--imbalance", "none", "optim.batch_size=16", "run.eval_batch_size=20"]),
    ):
        (row,) = _train(["--method", method, *argv, *extra], tmp_path / name, capsys)
        assert sum(row["partner_classes"]) > 0 and 0.0 <= row["partner_few"] <= 1.0  # the epoch mixed
        assert row["label_weight_medium"] is not None and 0.0 <= row["minority_label_share"] <= 1.0
        header = (tmp_path / name / "metrics.csv").read_text().splitlines()[0].split(",")
        assert tuple(header) == LOG_COLUMNS


@pytest.mark.slow
def test_remix_with_a_class_balanced_partner_is_one_config_line(tmp_path: Path, capsys) -> None:
    argv = ["--method", "remix", "--dataset", "digits", "--ratio", "10", "optim.batch_size=64"]
    (row,) = _train([*argv, "mixing.partner=class-weighted"], tmp_path / "cw", capsys)
    (perm,) = _train(argv, tmp_path / "perm", capsys)
    assert row["partner_few"] > 2 * (perm.get("partner_few") or 0.05)  # class-balanced partners reach the tail
    # an explicit permutation partner is the registry's Remix itself (the same effective method): it trains exactly
    # as without the key
    (same,) = _train([*argv, "mixing.partner=permutation"], tmp_path / "same", capsys)
    assert same == {**perm, "time_s": same["time_s"], "images_per_s": same["images_per_s"]}
    assert "partner_few" not in same and "partner_few" not in perm


@pytest.mark.slow
def test_class_weighted_partner_on_file_backed_data(tmp_path: Path) -> None:
    """FileData: the second batch comes decoded from the image files, with its own stream per rank."""
    from PIL import Image

    from remixup.config import TrainConfig
    from remixup.data.run import FileData, load_run_data
    from remixup.methods import get_method
    from remixup.mixing.build import build_mixing

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, n in (("a", 12), ("b", 4), ("c", 2)):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp_path / split / c / f"{i}.png")
    data = load_run_data("imagefolder", str(tmp_path), device=torch.device("cpu"))
    assert isinstance(data, FileData)
    config = TrainConfig()
    config.optim.batch_size, config.run.workers, config.run.epochs = 8, 0, 10
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(3))

    def partners(rank: int, epoch: int) -> torch.Tensor:
        mixing = build_mixing(get_method("balanced-mixup"), config.mixing, model, data.class_counts, torch.Generator(),
                              data=data, config=config, rank=rank)  # fmt: skip
        mixing.set_epoch(epoch)
        x2, y2 = mixing.partners.next(8)
        assert x2.shape == (8, 3, 224, 224) and y2.shape == (8,)
        return y2

    assert torch.equal(partners(0, 0), partners(0, 0))
    assert not all(torch.equal(partners(0, e), partners(1, e)) for e in range(3))
    mixing = build_mixing(get_method("cmo"), config.mixing, model, data.class_counts, torch.Generator(), data=data, config=config)
    mixing.set_epoch(1)  # inside the window of a 10-epoch run (epochs 4-6)? skip_first = 4: no
    x, y = mixing.partners.next(8)
    out = mixing.mix_forward(model, x, y)
    assert out.record is None and out.target is y


def test_the_migration_example_of_the_docs_runs() -> None:
    text = (ROOT / "docs" / "family.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], "docs/family.md", "exec"), namespace)  # noqa: S102 - the documented example
    assert namespace["stats"] == {}  # the last epoch lies outside CMO's window
    cmo = namespace["cmo"]
    assert [e for e in range(10) if cmo.active(e)] == [4, 5, 6]
    assert torch.isfinite(namespace["loss"])


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_ddp_class_weighted_partner_and_its_telemetry_over_both_ranks(tmp_path: Path) -> None:
    import subprocess
    import sys

    args = ["-m", "remixup", "train", "--dataset", "moons", "--ratio", "10", "--method", "balanced-mixup", "--epochs", "1",
            "--no-progress", "optim.batch_size=64", "run.threads=1"]  # fmt: skip
    one = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one")], capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *args, "--out",
                          str(tmp_path / "two")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    (a,) = [json.loads(line) for line in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    (b,) = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert sum(b["partner_classes"]) == sum(a["partner_classes"]) > 0  # both ranks' pairs are counted
    assert b["partner_classes"] != a["partner_classes"]  # each rank draws its own partners, not one shard
    for row in (a, b):  # a class-balanced partner: about half of each of the two classes
        assert abs(row["partner_classes"][1] / sum(row["partner_classes"]) - 0.5) < 0.1
