"""fp16 autocast with a gradient scaler (run.amp=fp16): refused on the CPU with one line; the scaled step trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from remixup.errors import UserError
from remixup.runtime import Dist, Precision


def test_fp16_is_refused_on_the_cpu() -> None:
    with pytest.raises(UserError, match="run.amp=fp16 needs a CUDA device"):
        Precision.of("fp16", "auto", torch.device("cpu"), images=True)
    bf16 = Precision.of("bf16", "auto", torch.device("cpu"), images=False)
    assert (bf16.amp, bf16.fp16, bf16.grad_scaler(torch.device("cpu"))) == (True, False, None)


def test_the_scaled_step_trains() -> None:
    """The fp16 path of train_one_epoch (scaled backward, scaler.step, scaler.update), run on the CPU here."""
    from remixup.engine import train_one_epoch
    from remixup.losses import build_loss
    from remixup.mixing import NoMixing

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(32, 4), torch.arange(32) % 3
    loader = [(x[:16], y[:16]), (x[16:], y[16:])]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = train_one_epoch(model, loader, NoMixing(), build_loss("ce", class_counts=[11, 11, 10]), optimizer, amp=True,
                            channels_last=False, bar=None, world=Dist(), scaler=scaler)  # fmt: skip
    assert torch.isfinite(torch.tensor(stats["train_loss"])) and stats["images"] == 32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert scaler.get_scale() == 2.0**8  # no overflow: the scale stays until its growth interval
