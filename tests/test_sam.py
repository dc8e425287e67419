"""SAM and ASAM: one step against a hand-written two-pass step (BatchNorm included), the same mixed batch twice, and
the config keys."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from remixup.config import TrainConfig
from remixup.errors import ConfigError
from remixup.sam import SameBatch, first_pass_statistics_only, sam_step


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)


def _by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float, adaptive: bool) -> nn.Module:
    """The reference recipe: backward, climb by e(w), second pass with BatchNorm momentum 0, back to w, SGD step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    F.cross_entropy(model(x), y).backward()
    params = list(model.parameters())
    with torch.no_grad():
        norm = torch.sqrt(sum(((p.abs() if adaptive else 1.0) * p.grad).pow(2).sum() for p in params))  # type: ignore[misc]
        climbs = [(p.pow(2) if adaptive else 1.0) * p.grad * rho / (norm + 1e-12) for p in params]
        old = [p.detach().clone() for p in params]
        for p, e in zip(params, climbs, strict=True):
            p.add_(e)
    opt.zero_grad()
    bn = model[1]
    momentum, bn.momentum = bn.momentum, 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
    tracked = bn.num_batches_tracked.clone()
    F.cross_entropy(model(x), y).backward()
    bn.momentum = momentum
    bn.num_batches_tracked.copy_(tracked)  # the momentum trick still counts the batch; one forward pass counts once
    with torch.no_grad():
        for p, w in zip(params, old, strict=True):
            p.copy_(w)
    opt.step()
    return model


@pytest.mark.parametrize("adaptive", [False, True])
def test_one_step_matches_the_hand_written_two_passes(adaptive: bool) -> None:
    x, y = _batch()
    rho = 0.5 if adaptive else 0.05
    ours, ref = _net(), _by_hand(_net(), x, y, rho, adaptive)
    opt = torch.optim.SGD(ours.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    first = sam_step(ours, lambda: F.cross_entropy(ours(x), y), opt, rho=rho, adaptive=adaptive)
    assert float(first) == pytest.approx(float(F.cross_entropy(_net()(x), y).detach()), rel=1e-6)
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=f"{name} differs")
    # BatchNorm statistics: exactly one forward pass's update.
    one = _net()
    one(x)
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(ours[1].state_dict()[key], one[1].state_dict()[key])


def test_sam_moves_off_the_plain_sgd_step() -> None:
    x, y = _batch()
    plain, sam = _net(), _net()
    opt = torch.optim.SGD(plain.parameters(), lr=0.1)
    F.cross_entropy(plain(x), y).backward()
    opt.step()
    sam_step(sam, lambda: F.cross_entropy(sam(x), y), torch.optim.SGD(sam.parameters(), lr=0.1), rho=0.5)
    assert not torch.allclose(plain[0].weight, sam[0].weight)
    with pytest.raises(ValueError, match="`rho` of `sam_step` must be"):
        sam_step(sam, lambda: F.cross_entropy(sam(x), y), torch.optim.SGD(sam.parameters(), lr=0.1), rho=0.0)


def test_statistics_are_frozen_only_inside() -> None:
    net, (x, _) = _net(), _batch()
    with first_pass_statistics_only(net):
        net(x)
    assert torch.equal(net[1].running_mean, torch.zeros(8)) and int(net[1].num_batches_tracked) == 0
    net(x)
    assert int(net[1].num_batches_tracked) == 1 and net[1].track_running_stats


class _Partners:
    def __init__(self) -> None:
        self.g = torch.Generator().manual_seed(3)

    def next(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(b, 4, generator=self.g), torch.zeros(b, dtype=torch.long)


class _Stats:
    def __init__(self) -> None:
        self.n = 0


class _Mixing:
    """A mixing that draws λ from its generator and a partner batch from a second source, and counts batches."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator, self.partners, self.stats = generator, _Partners(), _Stats()

    def mix_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        lam = torch.rand(x.shape[0], 1, generator=self.generator)
        x2, _ = self.partners.next(x.shape[0])
        self.stats.n += 1
        return type("Out", (), {"logits": model(lam * x + (1 - lam) * x2), "target": y})()


def test_same_batch_replays_the_draws() -> None:
    g = torch.Generator().manual_seed(7)
    mixing, net, (x, y) = _Mixing(g), _net().eval(), _batch()
    same = SameBatch(g)
    first = same.first(mixing, net, x, y).logits
    after = g.get_state()
    again = same.again(mixing, net, x, y).logits
    assert torch.equal(first, again)  # the same λ and partner batch
    assert torch.equal(g.get_state(), after) and mixing.stats.n == 1  # draws and telemetry as after one pass
    assert "next" not in vars(mixing.partners)
    assert not torch.equal(same.first(mixing, net, x, y).logits, first)  # the next batch draws anew


def test_config_keys() -> None:
    config = TrainConfig()
    assert config.optim.sam_rho == 0 and config.optim.sam_adaptive is False
    config.optim.sam_rho = -0.1
    with pytest.raises(ValueError, match="optim.sam_rho"):
        config.validate()
    config.optim.sam_rho, config.run.amp = 0.05, "fp16"
    with pytest.raises(ConfigError, match="run.amp=fp16"):
        config.validate()


def test_fused_runs_refuse_sam() -> None:
    from remixup.fused import fusable

    config = TrainConfig()
    assert fusable(config)
    config.optim.sam_rho = 0.05
    assert not fusable(copy.deepcopy(config))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["remix-drw", "manifold-mixup"])
def test_a_sam_run_trains(method: str, tmp_path: Any) -> None:
    from remixup.engine import train

    def run(out: str, **optim: Any) -> dict[str, Any]:
        c = TrainConfig()
        c.data.dataset, c.data.ratio, c.method.name = "digits", 10.0, method
        c.run.epochs, c.run.out, c.run.progress, c.run.threads, c.run.tensorboard = 1, str(tmp_path / out), False, 1, False
        c.optim.batch_size, c.schedule.warmup_epochs, c.schedule.milestones, c.schedule.lr_factors = 64, 0, [], []
        c.schedule.deferral_epoch = 0
        for k, v in optim.items():
            setattr(c.optim, k, v)
        return train(c)

    plain, sam, asam = run("plain"), run("sam", sam_rho=0.05), run("asam", sam_rho=0.5, sam_adaptive=True)
    assert sam["lam_y_forced"] == plain["lam_y_forced"]  # the same mixing draws: SAM replays, it does not redraw
    assert sam["train_loss"] != plain["train_loss"] and asam["train_loss"] != sam["train_loss"]
    assert run("sam2", sam_rho=0.05)["per_class"] == sam["per_class"]  # deterministic
