"""The training engine on tiny data: every method by name, the run-folder contract, DRW normalisation, faults."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import remixup.engine as engine
from conftest import assert_summary_consistent
from remixup import checkpoint
from remixup.config import TrainConfig, build_config
from remixup.engine import Dist, evaluate_checkpoint, lr_at, train, train_one_epoch
from remixup.errors import UserError
from remixup.losses import build_loss
from remixup.methods import METHODS
from remixup.mixing import MixTransform, MixupLabels, MixupMixer, NoMixing, soft_targets

SUMMARY_KEYS = {"top1", "top5", "balanced_acc", "many", "medium", "few", "per_class", "class_counts", "confusion",
                "lam_y_forced", "images_per_s", "epochs", "method", "dataset", "imbalance", "ratio", "seed",
                "subset_seed", "wall_time_s"}  # fmt: skip
LOG_KEYS = ["epoch", "lr", "train_loss", "train_acc", "lam_y_forced", "images_per_s", "time_s",
            "top1", "top5", "balanced_acc", "many", "medium", "few"]  # fmt: skip


def tiny(out: Path, method: str = "remix-drw", epochs: int = 2, *extra: str) -> TrainConfig:
    """Long-tailed digits (ρ = 10), the LDAM recipe scaled to a few epochs, batch 64, one thread."""
    return build_config("ldam", epochs=epochs, overrides=[
        f"method.name={method}", "data.dataset=digits", "data.ratio=10", "optim.batch_size=64", f"run.out={out}",
        "run.eval_every=1", "run.progress=false", "run.threads=1", *extra])  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_one_epoch(tmp_path: Path, method: str) -> None:
    # deferral at epoch 0 so the deferred methods run their re-weighted / re-sampled phase too; CMO's epoch window
    # (3 < e < E − 3) would leave a one-epoch run unmixed, which is refused: open it
    window = ["mixing.skip_first=0", "mixing.skip_last=0", "mixing.prob=1"] if METHODS[method].skip_first else []
    summary = train(tiny(tmp_path / "run", method, 1, "schedule.deferral_epoch=0", *window))
    assert SUMMARY_KEYS <= set(summary)
    assert summary["method"] == method and summary["epochs"] == 1
    assert_summary_consistent(summary)
    assert (summary["lam_y_forced"] is not None) == METHODS[method].mixes
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary


@pytest.mark.slow
def test_run_folder_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    summary = train(tiny(out, "remix-drw", 2))
    assert {p.name for p in out.iterdir()} == {"config.yaml", "checkpoint.pt", "metrics.jsonl", "metrics.csv", "summary.json",
                                               ".remixup-run"}  # fmt: skip
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(set(LOG_KEYS) <= set(r) for r in rows)
    with open(out / "metrics.csv") as fh:
        table = list(csv.DictReader(fh))
    family = ["partner_many", "partner_medium", "partner_few", "label_to_minority", "minority_label_share",
              "label_weight_many", "label_weight_medium", "label_weight_few"]  # empty for the methods before the family
    assert list(table[0]) == LOG_KEYS + family and float(table[1]["top1"]) == pytest.approx(summary["top1"])
    assert summary["top1"] == rows[-1]["top1"]  # the last epoch, not the best one
    assert len(summary["per_class"]) == 10 and len(summary["confusion"]) == 10 and sum(summary["class_counts"]) > 0
    state = checkpoint.load(out / "checkpoint.pt")
    assert state["epoch"] == 2 and state["config"] == build_config(None, config_file=out / "config.yaml").to_dict()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch    1/2")


def test_lr_schedule() -> None:
    cfg = build_config("ldam")
    assert [round(lr_at(e, cfg), 8) for e in (0, 1, 4, 5, 159, 160, 179, 180, 199)] == [
        0.02, 0.04, 0.1, 0.1, 0.1, 0.001, 0.001, 0.00001, 0.00001]  # fmt: skip


@pytest.mark.slow
def test_deferred_switch_at_epoch_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[bool, bool]] = []
    real = engine.train_one_epoch

    def spy(model, loader, mixing, criterion, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        seen.append((criterion.weight is not None, loader.sampler is not None))
        return real(model, loader, mixing, criterion, *a, **kw)

    monkeypatch.setattr(engine, "train_one_epoch", spy)
    train(tiny(tmp_path / "drw", "remix-drw", 3, "schedule.deferral_epoch=2"))
    train(tiny(tmp_path / "drs", "drs", 3, "schedule.deferral_epoch=1"))
    train(tiny(tmp_path / "rw", "rw", 2))
    assert seen == [(False, False), (False, False), (True, False), (False, False), (False, True), (False, True),
                    (True, False), (True, False)]  # fmt: skip


def _one_batch_epoch(mixing, criterion, x, y, model):  # noqa: ANN001, ANN202
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    return train_one_epoch(model, [(x, y)], mixing, criterion, opt, amp=False, channels_last=False, bar=None, world=Dist())


def test_drw_loss_is_the_weighted_mean_not_the_plain_mean() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 5, generator=g), torch.randint(0, 4, (32,), generator=g)
    model = torch.nn.Linear(5, 4)
    w = torch.tensor([0.1, 0.3, 1.0, 2.6])
    criterion = build_loss("ce")
    criterion.set_weight(w)
    hard = _one_batch_epoch(NoMixing(), criterion, x, y, model)["train_loss"]
    with torch.no_grad():
        logits = model(x)
    assert hard == pytest.approx(float(F.cross_entropy(logits, y, weight=w)), rel=1e-6)
    plain = float((F.cross_entropy(logits, y, reduction="none") * w[y]).mean())
    assert abs(hard - plain) > 0.05 * plain  # the plain mean would shrink the deferred phase's loss

    # Mixed (soft) targets: Σ_n Σ_c w_c ỹ_nc ℓ_nc / Σ_n Σ_c w_c ỹ_nc, per-sample λ applied before the mean.
    def mix() -> MixTransform:
        return MixTransform(MixupMixer(1.0, per_sample=True, generator=torch.Generator().manual_seed(1)), MixupLabels(), num_classes=4)

    soft = _one_batch_epoch(mix(), criterion, x, y, model)["train_loss"]
    _, _, rec = mix().mix(x, y)  # the same draws as the epoch's one step
    target = soft_targets(rec.y, rec.y_partner, rec.lam_y, 4)
    with torch.no_grad():
        nll = -F.log_softmax(model(MixupMixer.mix(x, rec.perm, rec.lam_x)), dim=1)
    expected = float((w * target * nll).sum() / (w * target).sum())
    assert soft == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_same_seed_same_weights_other_seed_differs(tmp_path: Path) -> None:
    def weights(out: Path, *extra: str) -> dict[str, torch.Tensor]:
        train(tiny(out, "remix-cm", 1, *extra))
        return checkpoint.load(out / "checkpoint.pt")["model"]

    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c", "run.seed=1")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny(out, "erm", 3, "schedule.milestones=[1]", "schedule.lr_factors=[1e30]", "schedule.warmup_epochs=0")
    with pytest.raises(UserError, match=r"training loss became nan in epoch 2; .*last good checkpoint is .*checkpoint.pt \(epoch 1\)"):
        train(cfg)
    assert checkpoint.load(out / "checkpoint.pt")["epoch"] == 1
    assert not (out / "summary.json").exists()


@pytest.mark.slow
def test_existing_run_needs_resume_and_finished_run_resumes_to_its_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = tiny(out, "erm", 1)
    summary = train(cfg)
    with pytest.raises(UserError, match="already holds a run"):
        train(cfg)
    assert train(cfg, resume=True) == summary
    assert train(tiny(tmp_path / "new", "erm", 1), resume="auto")["epochs"] == 1


def test_resume_with_other_settings_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(tiny(out, "erm", 1))
    (out / "summary.json").unlink()
    with pytest.raises(UserError, match=r"configuration differs from the checkpoint's \(run.seed: 0 -> 3\)"):
        train(tiny(out, "erm", 1, "run.seed=3"), resume=True)


@pytest.mark.slow
def test_evaluate_checkpoint_matches_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "run"
    summary = train(tiny(out, "ldam-drw", 1))
    metrics = evaluate_checkpoint(out, device="cpu")
    assert metrics["top1"] == pytest.approx(summary["top1"]) and metrics["confusion"] == summary["confusion"]
    assert metrics["epoch"] == 1 and metrics["method"] == "ldam-drw"
    with pytest.raises(UserError, match="no checkpoint at"):
        evaluate_checkpoint(tmp_path / "missing.pt")


def test_toy_vectors_with_mlp(tmp_path: Path) -> None:
    cfg = build_config("paper", epochs=2, overrides=["data.dataset=moons", "method.name=remix-mm", "optim.batch_size=128",
                                                     f"run.out={tmp_path / 'run'}", "run.threads=1"])  # fmt: skip
    summary = train(cfg)
    assert summary["model"] == "mlp" and len(summary["per_class"]) == 2 and summary["lam_y_forced"] is not None


def image_folder(root: Path, train: tuple[int, ...], val: tuple[int, ...], *, height: int = 20, width: int = 20) -> Path:
    """An image folder of random RGB PNGs: ``train[c]`` and ``val[c]`` images of class ``c`` (seed 0)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, per_class in (("train", train), ("val", val)):
        for c, n in enumerate(per_class):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = torch.randint(0, 256, (height, width, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_image_folder_through_dataloader_workers(tmp_path: Path) -> None:
    image_folder(tmp_path / "imgs", (6, 2), (2, 1))
    cfg = build_config("paper", epochs=2, overrides=[
        "data.dataset=imagefolder", f"data.root={tmp_path / 'imgs'}", "data.imbalance=none", "model.name=digits_cnn",
        "method.name=remix-drs", "schedule.deferral_epoch=1", "optim.batch_size=4", f"run.out={tmp_path / 'run'}",
        "run.threads=1", "run.workers=0", "run.eval_batch_size=4"])  # fmt: skip
    summary = train(cfg)
    assert summary["class_counts"] == [6, 2] and sum(map(sum, summary["confusion"])) == 3
    assert evaluate_checkpoint(tmp_path / "run", device="cpu")["confusion"] == summary["confusion"]


@pytest.mark.slow
def test_image_files_train_evaluate_and_predict_at_a_chosen_size(tmp_path: Path) -> None:
    """data.image_size sets the crop of image files in training, evaluation and prediction: the network sees
    (3, 16, 16) inputs, and eval and predict of the run use the same size."""
    from PIL import Image

    import remixup
    from remixup.rundir import RunFolder

    image_folder(tmp_path / "imgs", (4, 2), (2, 1), height=40, width=30)
    seen: list[tuple[int, ...]] = []

    class Spy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape[1:]))
            return self.fc(x.mean(dim=(2, 3)))

    cfg = build_config("paper", epochs=1, overrides=[
        "data.dataset=imagefolder", f"data.root={tmp_path / 'imgs'}", "data.imbalance=none", "data.image_size=16",
        "method.name=remix", "optim.batch_size=2", f"run.out={tmp_path / 'run'}", "run.threads=1", "run.workers=0",
        "run.eval_batch_size=4"])  # fmt: skip
    summary = train(cfg, model=Spy())
    assert set(seen) == {(3, 16, 16)} and summary["class_counts"] == [4, 2]
    cfg2 = build_config("paper", epochs=1, overrides=[
        "data.dataset=imagefolder", f"data.root={tmp_path / 'imgs'}", "data.imbalance=none", "data.image_size=16",
        "model.name=digits_cnn", "optim.batch_size=2", f"run.out={tmp_path / 'cnn'}", "run.threads=1", "run.workers=0",
        "run.eval_batch_size=4"])  # fmt: skip
    trained = train(cfg2)
    state = torch.load(RunFolder(tmp_path / "cnn").checkpoint, weights_only=True)
    assert list(state["input_shape"]) == [3, 16, 16]
    assert evaluate_checkpoint(tmp_path / "cnn", device="cpu")["confusion"] == trained["confusion"]
    png = tmp_path / "imgs" / "val" / "class0" / "0.png"
    rows = remixup.predict(tmp_path / "cnn" / "checkpoint.pt", [png])
    from remixup.data.augment import ResizeCenterCrop
    from remixup.models import build_model_for

    model = build_model_for("digits_cnn", 2, (3, 16, 16))
    model.load_state_dict(state["model"])
    with Image.open(png) as img:
        x = ResizeCenterCrop(16, resize=18)(img.convert("RGB")).unsqueeze(0)  # 16 · 256/224 = 18.3
    with torch.no_grad():
        expected = float(model.eval()(x).softmax(1).max())
    assert rows[0]["probability"] == pytest.approx(expected, abs=1e-6)


def test_balancing_at_is_declarative() -> None:
    from remixup.compat import balancing_at
    from remixup.methods import get_method

    assert [balancing_at(get_method("remix-drw"), e, 2) for e in (0, 1, 2, 3)] == [(False, False)] * 2 + [(True, False)] * 2
    assert [balancing_at(get_method("mixup-drs"), e, 1) for e in (0, 1)] == [(False, False), (False, True)]
    assert balancing_at(get_method("rw-focal"), 0, 5) == (True, False) and balancing_at(get_method("rs"), 0, 5) == (False, True)
    assert balancing_at(get_method("remix"), 9, 0) == (False, False)


@pytest.mark.slow
def test_summary_records_the_sha256_of_the_training_data(tmp_path: Path) -> None:
    """``data_sha256`` is the SHA-256 of the full training array as loaded (before the imbalanced subset)."""
    import hashlib

    import numpy as np

    from remixup.data import load_dataset

    summary = train(tiny(tmp_path / "a", "erm", 1))
    x = load_dataset("digits", train=True).x.numpy()
    assert summary["data_sha256"] == hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()
    other = load_dataset("moons", train=True).x.numpy()
    assert summary["data_sha256"] != hashlib.sha256(np.ascontiguousarray(other).tobytes()).hexdigest()
