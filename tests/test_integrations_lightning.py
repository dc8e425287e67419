"""RemixCallback: one line turns a LightningModule's training step into Remix (and Remix-DRW)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning.pytorch")

from remixup import RemixMixup, soft_cross_entropy  # noqa: E402
from remixup.balancing import class_weights  # noqa: E402
from remixup.integrations.lightning import RemixCallback  # noqa: E402

# Lightning 2.6 on torch 2.13 warns about its own use of torch's pytree API; not ours to fix.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*isinstance\(treespec, LeafSpec\).*:FutureWarning")

COUNTS = [40, 12, 4]


def data() -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])
    return TensorDataset(torch.randn(len(y), 6, generator=g) + 2 * F.one_hot(y, 6).float(), y)


class Tiny(L.LightningModule):
    """A LightningModule written for plain labels, as a user has it before adding the callback."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(6, 3)
        self.seen: list[tuple[int, torch.Tensor]] = []

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        self.seen.append((self.current_epoch, y.detach().clone()))
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(callback: RemixCallback, epochs: int = 2) -> Tiny:
    torch.manual_seed(0)
    model = Tiny()
    trainer = L.Trainer(callbacks=[callback], max_epochs=epochs, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, DataLoader(data(), batch_size=16, shuffle=True))
    return model


def test_callback_trains_a_tiny_model_with_remix_targets() -> None:
    before = Tiny().net.weight.detach().clone()
    model = fit(RemixCallback(COUNTS, seed=1))
    assert len(model.seen) == 2 * 4
    for _, target in model.seen:
        assert target.ndim == 2 and target.shape[1] == 3  # soft targets reached the user's training_step
        torch.testing.assert_close(target.sum(1), torch.ones(target.shape[0]))
    assert not torch.equal(model.net.weight, before)
    assert model.remix_record is not None and model.remix_class_weight is None
    assert "training_step" not in model.__dict__  # the module is left as it was after fit
    again = fit(RemixCallback(COUNTS, seed=1))
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(model.seen, again.seen, strict=False))  # same seed, same run
    epochs = [[t for e, t in model.seen if e == k] for k in (0, 1)]
    assert not torch.equal(epochs[0][0], epochs[1][0])  # each epoch draws afresh


def test_drw_phase_reweights_an_unchanged_cross_entropy() -> None:
    model = fit(RemixCallback(COUNTS, drw_start_epoch=1))
    assert model.remix_class_weight is not None
    for epoch, target in model.seen:
        rows = target.sum(1)
        if epoch == 0:
            torch.testing.assert_close(rows, torch.ones_like(rows))
        else:
            assert not torch.allclose(rows, torch.ones_like(rows))
    # the scaled targets turn a plain soft cross-entropy into the class-weighted mean
    logits, target = torch.randn(8, 3), RemixMixup(class_counts=COUNTS, label_smoothing=0.0)(torch.randn(8, 6), torch.arange(8) % 3)[1]
    w = class_weights(COUNTS, "effective", 0.9999)
    torch.testing.assert_close(F.cross_entropy(logits, RemixCallback.reweight(target, w)), soft_cross_entropy(logits, target, weight=w))


def test_timm_options_through_a_mixer_and_dict_batches() -> None:
    cb = RemixCallback(mixer=RemixMixup(mode="elem", label_smoothing=0.1, class_counts=COUNTS), input_key="x", target_key="y")
    out = cb.mix_batch({"x": torch.randn(4, 6), "y": torch.tensor([0, 1, 2, 0]), "id": 7})
    assert out["x"].shape == (4, 6) and out["y"].shape == (4, 3) and out["id"] == 7
    with pytest.raises(TypeError, match=r"`RemixCallback` could not find the inputs at 'x'"):
        cb.mix_batch((torch.randn(4, 6), torch.zeros(4, dtype=torch.long)))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: RemixCallback(), r"`RemixCallback` needs `class_counts`"),
        (lambda: RemixCallback(COUNTS, drw_start_epoch=-1), r"`drw_start_epoch` of `RemixCallback` must be >= 0"),
        (lambda: RemixCallback(mixer=RemixMixup(num_classes=3), drw_start_epoch=2), r"`drw_start_epoch` of `RemixCallback` needs `class_counts`"),
        (lambda: RemixCallback(COUNTS, tau=2.0), r"`tau` of `RemixLabels` must be in \[0, 1\]"),
    ],
)
def test_bad_options_raise_named_errors(make, match) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=match):
        make()


def test_draws_depend_only_on_seed_epoch_and_rank() -> None:
    """A run resumed at epoch e draws what the uninterrupted run drew there; another rank draws afresh."""
    from types import SimpleNamespace

    def first_batch(epoch: int, rank: int, warm_up: int = 0) -> torch.Tensor:
        cb, module = RemixCallback(COUNTS, seed=4), Tiny()
        x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 3
        for e in range(warm_up):  # earlier epochs of an uninterrupted run
            cb.on_train_epoch_start(SimpleNamespace(current_epoch=e, global_rank=rank), module)  # type: ignore[arg-type]
            cb.mix_batch((x, y), module)
        cb.on_train_epoch_start(SimpleNamespace(current_epoch=epoch, global_rank=rank), module)  # type: ignore[arg-type]
        return cb.mix_batch((x, y), module)[1]

    resumed = first_batch(2, rank=0)
    assert torch.equal(resumed, first_batch(2, rank=0, warm_up=2))
    assert not torch.equal(resumed, first_batch(2, rank=1))
    assert not torch.equal(resumed, first_batch(1, rank=0))
