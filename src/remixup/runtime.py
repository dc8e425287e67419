"""Where and how a run executes: processes (torchrun/DDP), the device, CPU threads, the allocator and precision.

Nothing here knows about methods or data: it reads the environment and the ``run`` section of the config.

**DDP.** Launched by ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` in the environment), each process joins
the group with gloo on the CPU and nccl on CUDA. **Threads.** ``run.threads=0`` on the CPU uses the cores other
processes leave free, decided again before every epoch (:class:`ThreadChooser`). **Allocator.** :func:`tune_malloc`.
**Precision.** :class:`Precision`: bf16 (or fp16, CUDA only, with a gradient scaler) autocast and channels-last memory.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from remixup.errors import UserError

__all__ = ["Dist", "Precision", "ThreadChooser", "any_rank", "auto_threads", "busy_cores", "eval_batch_size", "on_main",
           "resolve_device", "setup_processes", "sync_batchnorm", "teardown_processes", "tune_malloc"]  # fmt: skip

T = TypeVar("T")

_DEFAULT_THREADS = torch.get_num_threads()  # torch's choice (physical cores) before any run changed it


def eval_batch_size(device: torch.device) -> int:
    """``run.eval_batch_size=0``: 256 on the CPU (measured fastest of 128-1024: cache-sized), 1024 on CUDA."""
    return 1024 if device.type == "cuda" else 256


def busy_cores(window: float = 0.25) -> float | None:
    """CPUs that other processes keep busy now: the non-idle share of ``/proc/stat`` over ``window`` seconds, times
    the CPU count, measured while this process sleeps (so it does not count itself). ``None`` off Linux."""

    def read() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as fh:
            v = [int(t) for t in fh.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(v), v[3] + v[4]

    try:
        total0, idle0 = read()
        time.sleep(window)
        total1, idle1 = read()
    except (OSError, ValueError):
        return None
    if total1 <= total0:
        return None
    return (1.0 - (idle1 - idle0) / (total1 - total0)) * (os.cpu_count() or 1)


def auto_threads(cores: int | None = None, load: float | None = None) -> int:
    """``run.threads=0``: torch's default thread count less the cores other processes keep busy, at least 1.

    ``load`` (busy cores) is measured when the run starts: :func:`busy_cores` (a quarter second of ``/proc/stat``,
    in which this process sleeps), else the 1-minute load average. Why: torch's OpenMP threads meet at a barrier
    after every operator, so when another process holds one of the cores every operator waits for a descheduled
    thread. On the 2-core benchmark machine at load ≈ 3-5 a ResNet-32 step took 2.7-4.6× longer with 2 threads
    than with 1 and a digits run 2.7× longer (docs/performance.md); with the cores free, all of them are used.
    """
    cores = _DEFAULT_THREADS if cores is None else cores
    if load is None:
        load = busy_cores()
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):  # not on every platform
            load = 0.0
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def _cpu_counters() -> tuple[int, int, int] | None:
    """(all CPUs' ticks, their idle ticks, this process's CPU ticks) from /proc; ``None`` off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            v = [int(t) for t in fh.readline().split()[1:9]]
        with open("/proc/self/stat", encoding="ascii") as fh:
            own = fh.read().rsplit(")", 1)[1].split()  # fields after the command name; utime, stime are 12, 13
        return sum(v), v[3] + v[4], int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


class ThreadChooser:
    """``run.threads=0`` on the CPU, decided again before every epoch: :func:`auto_threads` with the cores that
    other processes kept busy during the previous epoch (all CPU time less this process's), or, before the first
    epoch, a :func:`busy_cores` sample. A shared machine's load changes during a run; a choice made once at the start
    was measured 1.4× slower than two threads when the machine became free (docs/performance.md).

    Args:
        ranks: processes sharing the machine's cores (DDP ranks on this machine).
    """

    def __init__(self, *, ranks: int = 1) -> None:
        self.ranks = ranks
        self.last: tuple[int, int, int] | None = None

    def __call__(self) -> int:
        now = _cpu_counters()
        load = None
        if self.last is not None and now is not None and now[0] > self.last[0]:
            total, idle, own = (a - b for a, b in zip(now, self.last, strict=True))
            load = max(0.0, (total - idle - own) / total) * (os.cpu_count() or 1)
        threads = max(1, auto_threads(load=load) // self.ranks)
        torch.set_num_threads(threads)
        self.last = _cpu_counters()
        return threads


@dataclasses.dataclass(frozen=True)
class Dist:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU.

    Raises:
        UserError: a name other than ``auto``, ``cpu``, ``cuda`` and ``cuda:N``, or CUDA asked for where there is none.
    """
    if not isinstance(name, str) or not (name in ("auto", "cpu", "cuda") or (name.startswith("cuda:") and name[5:].isdigit())):
        raise UserError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"run.device={name!r} but CUDA is not available on this machine; use --device cpu")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device("cpu")


def setup_processes(device_name: str) -> tuple[Dist, torch.device, bool]:
    """Read torchrun's environment, pick the device and join the process group; returns (dist, device, owned)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name), False
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    device = resolve_device(device_name, local)
    owned = not dist.is_initialized()
    if owned:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, local), device, owned


def teardown_processes(owned: bool, *, clean: bool) -> None:
    """Leave the process group that :func:`setup_processes` joined (``owned``).

    ``clean`` (every rank finished): first free what still holds the group (DDP's reducer sits in reference
    cycles, with the work it ran) while the interpreter is whole, then wait at a barrier until every rank is done
    with the group, then destroy it; no rank tears its connections down while another still uses them. After a
    failure the group is destroyed without the barrier (the other ranks may be inside a collective).
    """
    if not (owned and dist.is_initialized()):
        return
    gc.collect()
    try:
        if clean:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def on_main(world: Dist, step: Callable[[], T]) -> T:
    """Run ``step`` on rank 0 only and hand its (picklable) result to every rank.

    A :class:`~remixup.errors.UserError` raised by ``step`` is raised on every rank, with rank 0's message, so that
    all of them stop (rather than wait for rank 0 at the next collective)."""
    if world.world_size == 1:
        return step()
    box: list[Any] = [None]
    error: BaseException | None = None
    if world.main:
        try:
            box = [("ok", step())]
        except BaseException as exc:
            error, box = exc, [("error", str(exc) if isinstance(exc, UserError) else f"rank 0 failed: {type(exc).__name__}")]
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if error is not None:
        raise error
    if kind == "error":
        raise UserError(value)
    return value


def any_rank(world: Dist, flag: bool) -> bool:
    """Whether ``flag`` holds on any rank (an all-reduce under DDP; every rank must call it)."""
    if world.world_size == 1:
        return flag
    t = torch.tensor([float(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sync_batchnorm(model: nn.Module, world: Dist, device: torch.device, enabled: bool) -> nn.Module:
    """``model.sync_bn``: under DDP, BatchNorm layers that normalise with the whole global batch's statistics
    (:class:`torch.nn.SyncBatchNorm`, sharing the layers' parameters and buffers); a single process keeps ``model``.

    Raises:
        UserError: on the CPU under DDP (PyTorch's SyncBatchNorm runs on GPUs only).
    """
    if not enabled or world.world_size == 1:
        return model
    if device.type != "cuda":
        raise UserError("model.sync_bn=true needs CUDA devices (PyTorch's SyncBatchNorm has no CPU implementation); "
                        "set model.sync_bn=false to keep per-process BatchNorm statistics")  # fmt: skip
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def tune_malloc() -> bool:
    """Let glibc keep freed memory for reuse instead of returning it to the OS; return whether it was applied.

    glibc serves allocations above its mmap threshold (128 KiB at first) with fresh pages and unmaps them on free,
    so each training step page-faults its activation buffers anew. Raising the mmap and trim thresholds to 1 GiB
    lets the allocator reuse them: a ResNet-32 CPU step (batch 128, 2 threads) ran 1.20x faster in
    ``benchmarks/bench_malloc.py`` (docs/performance.md). Process-wide and permanent, which is why it is a switch
    (``run.malloc``); a no-op where glibc's ``mallopt`` is missing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, 1 << 30))


@dataclasses.dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast (``amp``; bf16, or fp16 when ``fp16``) and channels-last memory for images
    (``channels_last``). fp16 training needs a gradient scaler (:meth:`grad_scaler`); bf16 does not."""

    amp: bool = False
    channels_last: bool = False
    fp16: bool = False

    @classmethod
    def of(cls, amp: str, channels_last: str, device: torch.device, *, images: bool) -> Precision:
        """From ``run.amp`` (auto: bf16 on CUDA only; fp16: CUDA only) and ``run.channels_last`` (auto: on for images)."""
        if amp == "fp16" and device.type != "cuda":
            raise UserError("run.amp=fp16 needs a CUDA device (fp16 autocast with a gradient scaler); "
                            "on the CPU use run.amp=bf16 or run.amp=off")  # fmt: skip
        return cls(amp in ("bf16", "fp16") or (amp == "auto" and device.type == "cuda"),
                   images and channels_last in ("on", "auto"), fp16=amp == "fp16")  # fmt: skip

    def autocast(self, device: torch.device) -> AbstractContextManager[object]:
        """An autocast context (bf16, or fp16 when ``fp16``) on ``device`` when ``amp`` is on, else a no-op."""
        dtype = torch.float16 if self.fp16 else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype) if self.amp else nullcontext()

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """The gradient scaler fp16 training needs (it keeps small fp16 gradients from flushing to zero); ``None``
        for bf16 and fp32."""
        return torch.amp.GradScaler(device.type) if self.amp and self.fp16 else None
