"""Where separately built parts meet: DataLoader workers, the stacked fused step, torch's global generator.

Each test here failed before the mixing core, the shared step and the seeded global generator: the family's
transform repeated its draws in every worker, the stacked step asserted on the family, and runs with dropout
differed on every rerun.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from remixup import checkpoint, fused
from remixup.config import TrainConfig, build_config
from remixup.engine import train
from remixup.errors import UserError
from remixup.mixing import MixupLabels, PartnerMix, RemixLabels, RemixMixup

COUNTS = [40, 15, 9]


def tiny(out: Path, method: str, seed: int = 0, epochs: int = 1, *extra: str) -> TrainConfig:
    """Long-tailed digits (ρ = 10), batch 32, one thread, the LDAM recipe scaled to ``epochs``."""
    return build_config("ldam", epochs=epochs, overrides=[
        f"method.name={method}", "data.dataset=digits", "data.ratio=10", "optim.batch_size=32", f"run.out={out}",
        f"run.seed={seed}", "run.progress=false", "run.threads=1", "run.tensorboard=false", "run.device=cpu", *extra])  # fmt: skip


def _loader_draws(transform: object, seed: int) -> list[torch.Tensor]:
    """λx of every batch of a 2-worker DataLoader whose collate_fn mixes with ``transform``."""
    y = torch.tensor([c for c, n in enumerate(COUNTS) for _ in range(n)])
    x = torch.randn(len(y), 3, 4, 4, generator=torch.Generator().manual_seed(1))

    def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        xb, yb = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
        _, _, record = transform.mix(xb, yb)  # type: ignore[attr-defined]
        return record.lam_x

    loader = DataLoader(TensorDataset(x, y), batch_size=8, num_workers=2, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    return list(loader)


@pytest.mark.slow
@pytest.mark.parametrize(
    "make",
    [
        lambda g: PartnerMix(mixer="mixup", labels=MixupLabels(), class_counts=COUNTS, partner="in-batch", generator=g),
        lambda g: PartnerMix(mixer="cutmix", labels=RemixLabels(COUNTS), class_counts=COUNTS, draw="unimix", generator=g),
        lambda g: RemixMixup(1.0, class_counts=COUNTS, label_smoothing=0.0, generator=g),
    ],
    ids=["partnermix-in-batch", "partnermix-unimix-cutmix", "remixmixup"],
)
def test_dataloader_workers_draw_differently_and_reproducibly(make) -> None:  # noqa: ANN001
    draws = _loader_draws(make(torch.Generator().manual_seed(3)), seed=7)
    worker0, worker1 = draws[0::2], draws[1::2]  # batches alternate between the two workers
    assert not any(torch.equal(a, b) for a, b in zip(worker0, worker1, strict=False))
    again = _loader_draws(make(torch.Generator().manual_seed(3)), seed=7)
    assert all(torch.equal(a, b) for a, b in zip(draws, again, strict=True))
    other_epoch = _loader_draws(make(torch.Generator().manual_seed(3)), seed=8)  # the loader's seed: a new epoch
    assert not all(torch.equal(a, b) for a, b in zip(draws, other_epoch, strict=True))


FAMILY_EVERY_BATCH = ("mixing.prob=1", "mixing.skip_first=0", "mixing.skip_last=0")


@pytest.mark.slow
def test_the_stacked_step_trains_the_family_as_single_runs_do(tmp_path: Path) -> None:
    methods = ["cmo", "balanced-mixup", "unimix", "mamix"]
    stacked = fused.train_fused([tiny(tmp_path / f"s-{m}", m, 0, 1, *FAMILY_EVERY_BATCH) for m in methods], strategy="stack")
    for m, summary in zip(methods, stacked, strict=True):
        alone = train(tiny(tmp_path / f"a-{m}", m, 0, 1, *FAMILY_EVERY_BATCH))
        assert summary["lam_y_forced"] is not None  # every batch was mixed
        # float32 kernels of another summation order, over one epoch of 15 steps (tests/test_fused.py checks the
        # stacked step against single runs in float64, step by step, to 1e-9)
        assert summary["train_loss"] == pytest.approx(alone["train_loss"], rel=2e-3), m


class DropoutNet(nn.Module):
    """A small classifier with dropout for 8×8 digits (the input is (B, 1, 8, 8))."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return checkpoint.load(out / "checkpoint.pt")["model"]


def _dropout_run(out: Path, epochs: int = 2, *, resume: bool = False) -> None:
    torch.manual_seed(123)  # the same initial weights for every run of the test
    model = DropoutNet()
    torch.manual_seed(torch.seed())  # the caller's global generator in an arbitrary state, as in a fresh process
    train(tiny(out, "remix", 0, epochs), model=model, resume=resume)


@pytest.mark.slow
def test_runs_with_dropout_are_bit_identical_and_resume_bit_identically(tmp_path: Path) -> None:
    _dropout_run(tmp_path / "a")
    _dropout_run(tmp_path / "b")
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # stopped after its first epoch (as by a kill), then resumed: the same weights as two epochs straight
    class Stop(Exception):
        pass

    def stop(epoch: int, _row: dict) -> None:
        if epoch == 1:
            raise Stop

    torch.manual_seed(123)
    model = DropoutNet()
    with pytest.raises(Stop):
        train(tiny(tmp_path / "r", "remix", 0, 2), model=model, on_epoch=stop)
    torch.manual_seed(123)
    train(tiny(tmp_path / "r", "remix", 0, 2), model=DropoutNet(), resume=True)
    r = _weights(tmp_path / "r")
    assert all(torch.equal(a[k], r[k]) for k in a)


@pytest.mark.slow
def test_a_run_leaves_the_callers_global_generator_alone(tmp_path: Path) -> None:
    torch.manual_seed(5)
    before = torch.get_rng_state()
    train(tiny(tmp_path / "run", "remix", 0, 1))
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.slow
def test_dropout_is_stacked_never_and_the_loop_matches_single_runs(tmp_path: Path) -> None:
    config = tiny(tmp_path / "t", "remix", 0, 1, "data.dataset=moons", "data.ratio=5", "model.name=tabular_resnet")
    with pytest.raises(UserError, match="has dropout"):
        fused.train_fused([config], strategy="stack")
    assert not (tmp_path / "t").exists()
    looped = fused.train_fused([tiny(tmp_path / f"l{s}", "remix", s, 1, "data.dataset=moons", "data.ratio=5",
                                     "model.name=tabular_resnet") for s in (0, 1)], strategy="loop")  # fmt: skip
    for s, summary in enumerate(looped):
        alone = train(tiny(tmp_path / f"a{s}", "remix", s, 1, "data.dataset=moons", "data.ratio=5", "model.name=tabular_resnet"))
        assert summary["train_loss"] == alone["train_loss"]
        assert all(torch.equal(v, _weights(tmp_path / f"a{s}")[k]) for k, v in _weights(tmp_path / f"l{s}").items())
