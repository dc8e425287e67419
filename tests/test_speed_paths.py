"""The speed paths of the engine, run on the CPU: bf16 autocast, channels-last, data on the device, batched
augmentation in the loop, torch.compile, the thread choice and the evaluation batch size.

On a CUDA machine the same code runs with ``device.type == "cuda"``; everything here that does not need a GPU is
exercised on the CPU (the GPU timing itself is open, docs/performance.md).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from conftest import assert_summary_consistent
from remixup import engine, runtime
from remixup.config import TrainConfig, build_config
from remixup.data import BatchAugment, TensorLoader
from remixup.errors import UserError
from remixup.losses import build_loss
from remixup.mixing import MixTransform, MixupMixer, NoMixing, RemixLabels


def _digits_config(tmp_path, **run):  # noqa: ANN001, ANN202
    overrides = [f"run.{k}={v}" for k, v in run.items()]
    return build_config("ldam", epochs=2, values={"data.dataset": "digits", "data.ratio": 10.0, "method.name": "remix",
                                                 "run.out": str(tmp_path / "run"), "run.device": "cpu"},
                        overrides=["optim.batch_size=64", "run.progress=false", "run.tensorboard=false", *overrides])  # fmt: skip


class TinyNet(nn.Module):
    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _images(n: int = 48, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 8, 8, 3), dtype=torch.uint8, generator=g), torch.arange(n) % classes


# -- thread choice ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cores", "load", "expected"), [(2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 5.0, 1), (8, 3.0, 5), (1, 0.0, 1)])
def test_auto_threads_leaves_busy_cores_alone(cores, load, expected):
    assert runtime.auto_threads(cores, load) == expected


def test_busy_cores_sees_another_process_spinning():
    """A child process that keeps one core busy is measured as at least half a busy core (Linux only)."""
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        busy = runtime.busy_cores(0.25)
    finally:
        spinner.kill()
        spinner.wait()
    if busy is None:
        pytest.skip("no /proc/stat on this platform")
    assert busy >= 0.5
    assert runtime.auto_threads(cores=2, load=busy) == (1 if busy >= 0.5 else 2)


def test_auto_threads_falls_back_to_the_load_average(monkeypatch):
    monkeypatch.setattr(runtime, "busy_cores", lambda window=0.25: None)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert runtime.auto_threads(4) == 1


def test_thread_chooser_counts_only_other_processes(monkeypatch):
    """Between epochs the busy CPU time of other processes decides: this run's own time does not count."""
    # Each call reads the counters twice: at its start (against the previous epoch) and at its end.
    samples = iter([(900, 0, 0), (1000, 0, 0), (1200, 100, 100), (1200, 100, 100), (1400, 100, 120), (0, 0, 0), (0, 0, 0), (0, 0, 0)])
    monkeypatch.setattr(runtime, "_cpu_counters", lambda: next(samples))
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(runtime, "_DEFAULT_THREADS", 2)
    monkeypatch.setattr(runtime, "busy_cores", lambda window=0.25: 0.0)
    before = torch.get_num_threads()
    try:
        choose = runtime.ThreadChooser()
        assert choose() == 2  # first epoch: the sample says idle
        assert choose() == 2  # 200 ticks, 100 idle, 100 ours: nobody else
        assert choose() == 1  # 200 ticks, 0 idle, 20 ours: others kept 1.8 CPUs busy
        assert torch.get_num_threads() == 1
        assert runtime.ThreadChooser(ranks=2)() == 1
    finally:
        torch.set_num_threads(before)


def test_cpu_counters_read_proc():
    counters = runtime._cpu_counters()
    assert counters is None or (len(counters) == 3 and counters[0] >= counters[1] >= 0 and counters[2] >= 0)


@pytest.mark.slow
def test_train_restores_the_callers_thread_count(tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        summary = engine.train(_digits_config(tmp_path, threads=1))  # 1 thread: fast on a busy machine too
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert summary["epochs"] == 2


# -- bf16 autocast + channels-last through the whole engine ------------------------------------------------------------


@pytest.mark.slow
def test_train_with_bf16_and_channels_last_on_cpu(tmp_path):
    config = _digits_config(tmp_path, amp="bf16", channels_last="on", eval_batch_size=37)
    summary = engine.train(config)
    assert_summary_consistent(summary)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["lam_y_forced"] is not None for r in rows)


def test_eval_batch_size_auto():
    assert TrainConfig().run.eval_batch_size == 0
    assert runtime.eval_batch_size(torch.device("cpu")) == 256
    assert runtime.eval_batch_size(torch.device("cuda")) == 1024


def test_cpu_defaults_are_fp32_channels_last():
    config = TrainConfig()

    def flags(device: str, *, images: bool = True) -> tuple[bool, bool]:
        p = runtime.Precision.of(config.run.amp, config.run.channels_last, torch.device(device), images=images)
        return p.amp, p.channels_last

    assert flags("cpu") == (False, True) and flags("cuda") == (True, True)
    assert flags("cpu", images=False) == (False, False)  # vectors have no memory format to choose
    config.run.amp, config.run.channels_last = "off", "off"
    assert flags("cuda") == (False, False)
    config.run.amp = "bf16"
    assert flags("cpu") == (True, False)


def test_train_one_epoch_device_path_amp_channels_last():
    """The GPU path's pieces on the CPU: data as tensors on the device, augmentation in the loop, channels-last
    batches, bf16 autocast, Remix mixing; the statistics count every sample once and the model learns in place."""
    x, y = _images()
    counts = torch.bincount(y, minlength=4)
    gen = torch.Generator().manual_seed(1)
    mixing = MixTransform(MixupMixer(1.0, generator=gen), RemixLabels(counts.tolist()), num_classes=4)
    loader = TensorLoader(x, y, batch_size=16, drop_last=True, augment=BatchAugment([0.5] * 3, [0.25] * 3, channels_last=True))
    model = TinyNet().to(memory_format=torch.channels_last)
    before = model.fc.weight.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stats = engine.train_one_epoch(model, loader, mixing, build_loss("ce", class_counts=counts.tolist()), opt,
                                   amp=True, channels_last=True, bar=None, world=runtime.Dist())  # fmt: skip
    assert stats["images"] == 48
    # 3 batches of 16: every forced share and accuracy is a whole number of the 48 samples
    assert stats["lam_y_forced"] is not None and (stats["lam_y_forced"] * 48) == pytest.approx(round(stats["lam_y_forced"] * 48))
    assert stats["train_acc"] * 48 / 100 == pytest.approx(round(stats["train_acc"] * 48 / 100)) and math.isfinite(stats["train_loss"])
    assert not torch.equal(before, model.fc.weight)


def test_train_one_epoch_without_mixing_counts_no_pairs():
    x, y = _images()
    loader = TensorLoader(x, y, batch_size=16, augment=BatchAugment([0.5] * 3, [0.25] * 3))
    model = TinyNet()
    stats = engine.train_one_epoch(model, loader, NoMixing(), nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                                   amp=False, channels_last=False, bar=None, world=runtime.Dist())  # fmt: skip
    assert stats["images"] == 48 and stats["lam_y_forced"] is None


# -- evaluation batch size ---------------------------------------------------------------------------------------------


def test_evaluate_does_not_depend_on_the_batch_size():
    x, y = _images(50)
    model = TinyNet().eval()
    transform = BatchAugment([0.5] * 3, [0.25] * 3, padding=0, flip=False)
    counts = torch.bincount(y, minlength=4)
    results = [engine.evaluate(model, x, y, class_counts=counts, transform=transform, batch_size=b) for b in (7, 50, 1024)]
    assert all(r["confusion"] == results[0]["confusion"] for r in results)
    cl = engine.evaluate(model.to(memory_format=torch.channels_last), x, y, class_counts=counts, transform=transform,
                         batch_size=16, amp=True, channels_last=True)  # fmt: skip
    assert sum(map(sum, cl["confusion"])) == 50


# -- torch.compile -------------------------------------------------------------------------------------------------


def test_compile_switch_is_validated():
    config = TrainConfig()
    config.run.compile = "yes"
    with pytest.raises(ValueError, match="`run.compile` must be one of"):
        config.validate()


def test_compile_refuses_manifold_mixing(tmp_path):
    config = _digits_config(tmp_path, compile="on")
    config.method.name = "manifold-mixup"
    with pytest.raises(UserError, match="run.compile=on does not support manifold mixing"):
        engine.train(config)


@pytest.mark.slow
def test_train_with_compile_on(tmp_path, monkeypatch):
    """run.compile=on wraps the training model in torch.compile. The wrapper is stubbed: compiling a CNN on a
    2-core machine takes minutes (measured in docs/performance.md), and what is tested here is the engine's wiring:
    the compiled module trains, the plain one is checkpointed and evaluated."""
    calls = []

    def fake_compile(module, **kw):  # noqa: ANN001, ANN202
        calls.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    summary = engine.train(_digits_config(tmp_path, compile="on"))
    assert len(calls) == 1 and summary["epochs"] == 2
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod.") for k in state["model"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch's compile stack, not ours
def test_torch_compile_trains_a_tiny_model():
    """The real torch.compile on the engine's step with a tiny model (skipped where inductor cannot build)."""
    x, y = _images(32)
    model = TinyNet()
    try:
        compiled = torch.compile(model)
        loader = TensorLoader(x, y, batch_size=16, augment=BatchAugment([0.5] * 3, [0.25] * 3))
        stats = engine.train_one_epoch(compiled, loader, NoMixing(), nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.1),
                                       amp=False, channels_last=False, bar=None, world=runtime.Dist())  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - no C++ compiler / inductor unsupported here
        pytest.skip(f"torch.compile is unavailable on this machine: {type(exc).__name__}: {str(exc)[:120]}")
    assert stats["images"] == 32


@pytest.mark.slow
def test_malloc_tuning_switch(tmp_path):
    from remixup.config import build_config
    from remixup.engine import train, tune_malloc

    assert tune_malloc() in (True, False)  # never raises; True on Linux with glibc
    with pytest.raises(ValueError, match="run.malloc"):
        build_config("paper", epochs=2, overrides=["run.malloc=sometimes"])
    config = build_config("paper", epochs=2, overrides=["data.dataset=moons", "run.malloc=off", f"run.out={tmp_path / 'r'}",
                                                        "run.progress=false", "run.threads=1"])  # fmt: skip
    assert train(config)["epochs"] == 2
