"""SAM and ASAM: one step against a hand-written two-pass step (BatchNorm included), the same mixed batch twice, and
the config keys."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from remixup.config import TrainConfig
from remixup.errors import ConfigError
from remixup.mixing import MixedBatch
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


class _InForward:
    """A mixing inside the forward pass: draws λ from its generator and a partner batch from a second source, and
    counts batches."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator, self.partners, self.stats = generator, _Partners(), _Stats()

    def fusable(self) -> str:
        return "mixes inside the forward pass"

    def draw_generator(self) -> torch.Generator:
        return self.generator

    def mix_forward(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
        lam = torch.rand(x.shape[0], 1, generator=self.generator)
        x2, _ = self.partners.next(x.shape[0])
        self.stats.n += 1
        return MixedBatch(model(lam * x + (1 - lam) * x2), y, None)


def test_same_batch_replays_the_draws_of_a_mixing_inside_the_forward_pass() -> None:
    g = torch.Generator().manual_seed(7)
    mixing, net, (x, y) = _InForward(g), _net().eval(), _batch()
    same = SameBatch()
    first = same.first(mixing, net, x, y).logits
    after = g.get_state()
    again = same.again(mixing, net, x, y).logits
    assert torch.equal(first, again)  # the same λ and partner batch
    assert torch.equal(g.get_state(), after) and mixing.stats.n == 1  # draws and telemetry as after one pass
    assert "next" not in vars(mixing.partners)
    assert not torch.equal(same.first(mixing, net, x, y).logits, first)  # the next batch draws anew


def test_same_batch_keeps_the_mixed_input_of_an_input_mixing() -> None:
    from remixup.methods import get_method
    from remixup.mixing.build import build_mixing

    g = torch.Generator().manual_seed(11)
    net, (x, y) = _net().eval(), _batch()
    mixing = build_mixing(get_method("remix"), TrainConfig().mixing, net, torch.tensor([8, 5, 3]), g)
    same = SameBatch()
    out = same.first(mixing, net, x, y)
    after = g.get_state()
    assert out.record is not None and torch.equal(same.again(mixing, net, x, y).logits, out.logits)
    assert torch.equal(g.get_state(), after)  # the second pass drew nothing
    reference = torch.Generator().manual_seed(11)
    x_mixed, target, _ = build_mixing(get_method("remix"), TrainConfig().mixing, net, torch.tensor([8, 5, 3]),
                                      reference).mix_input(x, y)  # fmt: skip
    torch.testing.assert_close(out.target, target)  # the same draws as one plain mix
    torch.testing.assert_close(out.logits, net(x_mixed))


def test_config_keys() -> None:
    config = TrainConfig()
    assert config.optim.sam_rho == 0 and config.optim.sam_adaptive is False
    config.optim.sam_rho = -0.1
    with pytest.raises(ValueError, match="optim.sam_rho"):
        config.validate()
    config.optim.sam_rho, config.run.amp = 0.05, "fp16"
    with pytest.raises(ConfigError, match="run.amp=fp16"):
        config.validate()


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


@pytest.mark.slow
def test_fused_loop_with_sam_equals_single_runs(tmp_path: Any) -> None:
    from remixup import fused
    from test_fused import tiny

    members = [("remix-drw", 0), ("mixup", 1)]
    sam = ("optim.sam_rho=0.1", "optim.sam_adaptive=true")
    configs = [tiny(tmp_path / f"f{k}", m, s, 0, 2, *sam) for k, (m, s) in enumerate(members)]
    summaries = fused.train_fused(configs, strategy="loop")
    from remixup.engine import train

    for k, (m, s) in enumerate(members):
        alone = train(tiny(tmp_path / f"s{k}", m, s, 0, 2, *sam))
        assert summaries[k]["per_class"] == alone["per_class"] and summaries[k]["train_loss"] == alone["train_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("adaptive", [False, True])
def test_stacked_sam_steps_equal_single_runs(tmp_path: Any, adaptive: bool) -> None:
    """Step by step in float64, as tests/test_fused.py compares the stacked step with single runs."""
    from remixup import engine, fused
    from remixup.runtime import Dist, Precision
    from test_fused import OneStep, _setup, _worst, tiny

    torch.set_num_threads(1)
    extra = ("optim.batch_size=16", "optim.sam_rho=0.5" if adaptive else "optim.sam_rho=0.05", f"optim.sam_adaptive={adaptive}")
    members = [("remix-drw", 0, 0), ("cutmix", 2, 1)]
    runs = _setup([tiny(tmp_path / f"f{k}", m, s, t, 2, *extra) for k, (m, s, t) in enumerate(members)], torch.float64)
    alone = _setup([tiny(tmp_path / f"s{k}", m, s, t, 2, *extra) for k, (m, s, t) in enumerate(members)], torch.float64)
    group = fused.FusedGroup(runs, precision=Precision(), strategy="stack")
    lr = engine.lr_at(0, runs[0].config)
    group.set_lr(lr)
    for run, single in zip(runs, alone, strict=True):
        run.begin_epoch(0, choose_threads=False)
        single.begin_epoch(0, choose_threads=False)
    fused_batches, single_batches = [iter(r.loader) for r in runs], [iter(s.loader) for s in alone]
    for _ in range(6):
        for run, it in zip(runs, fused_batches, strict=True):
            run.loader = OneStep(it)  # type: ignore[assignment]
        stats = group.train_epoch()
        for single, it, st in zip(alone, single_batches, stats, strict=True):
            ref = engine.train_one_epoch(single.model, OneStep(it), single.mixing, single.criterion, single.optimizer,
                                         amp=False, channels_last=False, bar=None, world=Dist(), sam=single.sam)  # fmt: skip
            assert st["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-9)
        assert _worst(group, alone) < 1e-9
    for k, single in enumerate(alone):  # BatchNorm statistics: updated on the first pass only, as the single runs'
        for name, b in single.model.named_buffers():
            assert torch.allclose(group.buffers[name][k].double(), b.double(), rtol=1e-9, atol=1e-9), name


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built in")
def test_two_gloo_processes_with_sam_match_one_process(tmp_path: Any) -> None:
    import subprocess
    import sys

    from remixup import checkpoint

    args = ["train", "--dataset", "moons", "--ratio", "10", "--method", "erm", "--recipe", "paper", "--epochs", "2",
            "--no-progress", "optim.batch_size=64", "run.threads=1", "optim.sam_rho=0.05"]  # fmt: skip
    one = subprocess.run([sys.executable, "-m", "remixup", *args, "--out", str(tmp_path / "one")], capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "remixup",
                          *args, "--out", str(tmp_path / "two")], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = checkpoint.load(tmp_path / "one" / "checkpoint.pt"), checkpoint.load(tmp_path / "two" / "checkpoint.pt")
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-4, atol=1e-5)
