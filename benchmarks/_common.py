"""Helpers shared by the benchmarks: where CIFAR-10 is, the LT-100 set, the engine's pieces, interleaved timing.

Every benchmark times its variants *interleaved* (A, B, A, B, ... after a warm-up) and reports the median of each
and their ratio, because the machines these run on are shared and noisy: absolute times from different runs are
not comparable, a ratio measured in one run is.

The CIFAR-10 file (arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``) is found from ``--npz``, else the
environment variable ``REMIXUP_CIFAR10_NPZ``, else ``~/.cache/remixup-shared-data/cifar10.npz``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from remixup.mixing import NoMixing

REPO = Path(__file__).resolve().parents[1]
DEFAULT_NPZ = Path("~/.cache/remixup-shared-data/cifar10.npz").expanduser()


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--npz", default=None, help="cifar10.npz (default: $REMIXUP_CIFAR10_NPZ or ~/.cache/remixup-shared-data/cifar10.npz)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the run.threads=auto choice)")
    parser.add_argument("--seed", type=int, default=0)


def find_npz(arg: str | None) -> Path:
    path = Path(arg or os.environ.get("REMIXUP_CIFAR10_NPZ") or DEFAULT_NPZ)
    if not path.is_file():
        raise SystemExit(f"cifar10.npz not found at {path}; pass --npz PATH or set REMIXUP_CIFAR10_NPZ")
    return path


def synthetic_cifar10(path: Path, per_class: int = 100) -> Path:
    """A CIFAR-shaped ``cifar10.npz`` of random pixels (``per_class`` training and 4 test images per class), for
    smoke runs of the benchmarks: LT-100 keeps ``per_class`` ... ``per_class / 100`` per class."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y_train = np.repeat(np.arange(10), per_class).astype(np.uint8)
    y_test = np.repeat(np.arange(10), 4).astype(np.uint8)
    np.savez(path, x_train=rng.integers(0, 256, (y_train.size, 32, 32, 3), dtype=np.uint8), y_train=y_train,
             x_test=rng.integers(0, 256, (y_test.size, 32, 32, 3), dtype=np.uint8), y_test=y_test,
             classes=np.array([f"c{i}" for i in range(10)]))  # fmt: skip
    return path


def machine() -> str:
    """One line: CPU model, logical CPUs, torch version and threads, load average."""
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{model}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, load avg {load}"


def config_for(npz: Path, method: str, *, seed: int = 0, **run: Any):  # noqa: ANN201 - TrainConfig
    """The LT-100 CIFAR-10 config of the ``ldam`` recipe for ``method``, data from ``npz``'s folder."""
    from remixup.config import build_config

    overrides = [f"run.{k}={v}" for k, v in run.items()]
    return build_config("ldam", values={"data.dataset": "cifar10", "data.root": str(npz.parent), "data.ratio": 100.0,
                                        "method.name": method, "run.seed": seed, "run.device": "cpu"},
                        overrides=overrides)  # fmt: skip


class Take:
    """``k`` batches per iteration from an endless walk over ``loader``'s epochs (so short timings reuse it)."""

    def __init__(self, loader: Any, k: int) -> None:
        self.loader, self.k, self.epoch = loader, k, 0
        self._it: Iterator[Any] | None = None

    def _next(self) -> Any:
        while True:
            if self._it is None:
                self.loader.set_epoch(self.epoch)
                self.epoch += 1
                self._it = iter(self.loader)
            try:
                return next(self._it)
            except StopIteration:
                self._it = None

    def __len__(self) -> int:
        return self.k

    def __iter__(self) -> Iterator[Any]:
        for _ in range(self.k):
            yield self._next()


def interleave(variants: dict[str, Callable[[], Any]], *, warmup: int, repeats: int, label: str = "") -> dict[str, list[float]]:
    """Run every variant ``warmup`` times, then ``repeats`` rounds of each in turn; return the times per variant."""
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))  # A B, B A, ...: no position bias
        for name in names:
            t0 = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t0)
        if label:
            print(f"\r{label} round {r + 1}/{repeats}", end="", flush=True)
    if label:
        print()
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """Median and inter-quartile range, for the table."""
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return f"{statistics.median(xs) * 1e3:8.1f} ms (IQR {q[0] * 1e3:.1f}-{q[2] * 1e3:.1f}, n={len(xs)})"


def set_threads(n: int) -> int:
    """Apply ``n`` torch threads (0: the engine's ``run.threads=auto`` choice for ResNet-32); return the count."""
    if n <= 0:
        from remixup.runtime import auto_threads

        n = auto_threads()
    torch.set_num_threads(n)
    return n


def load_data(config: Any, device: torch.device) -> Any:
    """The run's data exactly as ``remixup.engine.train`` loads it (:func:`remixup.data.run.load_run_data`)."""
    from remixup.data.run import load_run_data

    d, r = config.data, config.run
    return load_run_data(d.dataset, d.root, device=device, imbalance=d.imbalance, ratio=d.ratio, mu=d.mu,
                         subset_seed=r.subset_seed, download=d.download, augment=d.augment, seed=r.seed)  # fmt: skip


def build_run_model(config: Any, data: Any, method: Any) -> tuple[torch.nn.Module, str]:
    """The run's model as the engine builds it: ``model.name`` (or the dataset's default), seeded by ``run.seed``."""
    from remixup.models import build_model_for

    name = data.spec.model if config.model.name == "auto" else config.model.name
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.run.seed)
        model = build_model_for(name, data.num_classes, data.input_shape, classifier=method.classifier,
                                classifier_bias=config.model.classifier_bias)  # fmt: skip
    return model, name


class Trainer:
    """The engine's pieces for one method and one setting, built as ``remixup.engine.Training`` builds them.

    ``step(k)`` runs ``remixup.engine.train_one_epoch`` over the next ``k`` batches of the run's TensorLoader: the
    real loop (index gather, batched augmentation, mixing, forward, loss, backward, SGD step, on-device statistics).
    """

    def __init__(self, config: Any, data: Any = None, *, amp: bool | None = None, channels_last: bool | None = None) -> None:
        from remixup.losses import build_loss
        from remixup.methods import get_method
        from remixup.mixing.build import build_mixing
        from remixup.runtime import Dist, Precision

        self.config = config
        self.method = get_method(config.method.name)
        device = torch.device("cpu")
        self.data = data if data is not None else load_data(config, device)
        flags = Precision.of(config.run.amp, config.run.channels_last, device, images=self.data.is_image)
        self.amp = flags.amp if amp is None else amp
        self.channels_last = flags.channels_last if channels_last is None else channels_last
        model, _ = build_run_model(config, self.data, self.method)
        self.model = model.to(memory_format=torch.channels_last) if self.channels_last else model
        counts = self.data.class_counts
        self.criterion = build_loss(self.method.loss, class_counts=counts.tolist())
        o = config.optim
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=o.momentum, weight_decay=o.weight_decay)
        self.mix_gen = torch.Generator().manual_seed(config.run.seed)
        self.mixing = build_mixing(self.method, config.mixing, self.model, counts, self.mix_gen)
        self.loader = self.data.train_loader(batch_size=o.batch_size, seed=config.run.seed, rank=0, world_size=1, augment=True,
                                             channels_last=self.channels_last, workers=0)  # fmt: skip
        self.world = Dist()
        self.batches = Take(self.loader, 1)

    def step(self, k: int = 1, *, mix: bool = True) -> dict[str, float]:
        """``k`` training steps; ``mix=False`` trains the same model on the clean batches (ERM)."""
        from remixup import engine

        self.batches.k = k
        return engine.train_one_epoch(self.model, self.batches, self.mixing if mix else NoMixing(), self.criterion, self.optimizer,
                                      amp=self.amp, channels_last=self.channels_last, bar=None, world=self.world)  # fmt: skip
