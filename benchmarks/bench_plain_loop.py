"""How fast can this CPU train ResNet-32 at all? A bare PyTorch loop against remixup's engine step.

The baseline is the shortest training loop there is: a ResNet-32 written out here (option-A shortcuts, the same
shapes as ``remixup.models.ResNet32``), one fixed random batch of 128 images already in memory, cross-entropy,
SGD with momentum and weight decay. No data loading, no augmentation, no mixing, no statistics. The variants,
interleaved after a warm-up:

- ``plain``: that loop with the model defined here;
- ``plain + remixup model``: the same loop with ``remixup.models.build_model("resnet32")``;
- ``engine remix``: remixup's own Remix step (``remixup.engine.train_one_epoch`` over real CIFAR-10 LT-100
  batches: gather, augmentation, Remix, soft-target loss, statistics).

All use channels-last and the thread count given. It answers two questions: is remixup's step slower than the
bare minimum (ratio engine / plain), and what images/s does this machine give ResNet-32 with nothing else in
the way (the ceiling for every training run).

    .venv/bin/python benchmarks/bench_plain_loop.py [--npz PATH] [--threads 2] [--repeats 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Trainer, add_common_args, config_for, find_npz, interleave, machine, median, set_threads, spread  # noqa: E402


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2 if (stride != 1 or cin != cout) else -1
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        short = x if self.pad < 0 else F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


def plain_resnet32(num_classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    cin = 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for k in range(5):
            layers.append(_Block(cin, cout, stride if k == 0 else 1))
            cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def plain_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, k: int) -> None:
    for _ in range(k):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_args(p)
    p.add_argument("--repeats", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps-per-call", type=int, default=2)
    args = p.parse_args()
    npz = find_npz(args.npz)
    n = set_threads(args.threads)
    from remixup.models import build_model

    batch = 128
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def make(model: nn.Module):
        model = model.to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2e-4)
        return lambda: plain_step(model, opt, x, y, args.steps_per_call)

    t = Trainer(config_for(npz, "remix", seed=args.seed, channels_last="on"))
    print(f"machine: {machine()}; benchmark threads {n}")
    k = args.steps_per_call
    variants = {
        "plain": make(plain_resnet32()),
        "plain + remixup model": make(build_model("resnet32", num_classes=10)),
        "engine remix": lambda: t.step(k),
    }
    times = interleave(variants, warmup=args.warmup, repeats=args.repeats, label="steps")
    for name, ts in times.items():
        per_step = [v / k for v in ts]
        print(f"  {name:<22s} {spread(per_step)}  = {batch / median(per_step):.0f} images/s")
    base = median(times["plain"])
    for name in ("plain + remixup model", "engine remix"):
        print(f"{name} / plain step time: {median(times[name]) / base:.3f}")


if __name__ == "__main__":
    main()
