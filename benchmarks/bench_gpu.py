"""Training images/s on one GPU: a conventional pipeline, remixup's single run, and fused runs; one fused 200-epoch group.

All variants train ResNet-32 on CIFAR-10 LT-100 (12,406 images) at batch 128 per run and are timed in this one
process, so their ratios to the conventional pipeline (a) compare like with like:

(a) conventional: Pillow crop + flip per sample in a DataLoader with ``--workers`` processes, fp32, cross-entropy;
(b) remixup single run, fp32 as today (``run.amp=off``; on-device data path, channels-last);
(c) remixup single run, bf16 autocast + the CUDA-graph step (``remixup.fused`` with K = 1, ``graphs=True``);
(d) fused runs, K in ``--ks`` (Remix-DRW, Mixup, ERM, CutMix, ... with their own seeds), bf16 + CUDA graphs;

then, while the time budget allows, (e) one fused group of ``--long-k`` Remix-DRW seeds trained for the whole
200-epoch ``ldam`` recipe (bf16 + graphs), whose top-1 accuracies are printed next to the single-run fp32 numbers
in results/runs/gpu200. A profile of one fused step (K = 8) goes to ``profile.txt``.

    python results/gpu/make_data.py cifar10.npz .gpu/cifar10.npz && xz -k -T2 --delta=dist=3 .gpu/cifar10.npz
    PYTHONPATH=src python benchmarks/bench_gpu.py --npz .gpu/cifar10.npz.xz --out "$OUT"   # GPU, <= 8 minutes
    PYTHONPATH=src python benchmarks/bench_gpu.py --tiny --out /tmp/bench_gpu              # CPU smoke run, seconds

``--tiny`` trains on a synthetic CIFAR-shaped set (random pixels) at batch 8, on whatever device is there, to
check that every variant runs; its numbers mean nothing. Results: ``results.json`` and ``results.md`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
METHODS = ("remix-drw", "mixup", "erm", "cutmix", "remix", "drw", "mixup-drw", "remix-rs")
GPU200 = REPO / "results" / "runs" / "gpu200"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def prepare_data(args: argparse.Namespace, scratch: Path) -> Path:
    """The folder holding ``cifar10.npz``: unpacked from ``--npz`` (``.xz`` is decompressed), or synthetic (``--tiny``)."""
    root = scratch / "data"
    root.mkdir(parents=True, exist_ok=True)
    target = root / "cifar10.npz"
    if args.tiny:  # --tiny trains LT-10 of 10 ... 1 random images per class (41 images, 5 batches of 8)
        sys.path.insert(0, str(REPO / "benchmarks"))
        from _common import synthetic_cifar10

        synthetic_cifar10(target, per_class=10)
    elif str(args.npz).endswith(".xz"):
        with lzma.open(args.npz) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
    else:
        shutil.copy(args.npz, target)
    return root


def ratio(args: argparse.Namespace) -> float:
    """The imbalance ratio: CIFAR-10 LT-100, or LT-10 of the few synthetic images of ``--tiny``."""
    return 10.0 if args.tiny else 100.0


def make_config(root: Path, method: str, seed: int, out: Path, args: argparse.Namespace, **run: Any) -> Any:
    from remixup.config import build_config

    overrides = [f"run.{k}={v}" for k, v in {"progress": "false", "tensorboard": "false", "eval_every": 10, **run}.items()]
    if args.tiny:
        overrides += [f"optim.batch_size={args.batch}"]
    return build_config("ldam", epochs=args.long_epochs if "epochs" not in run else None,
                        values={"data.dataset": "cifar10", "data.root": str(root), "data.ratio": ratio(args), "method.name": method,
                                "run.seed": seed, "run.device": args.device, "run.out": str(out)},
                        overrides=overrides)  # fmt: skip


class PillowSet(torch.utils.data.Dataset):
    """The conventional pipeline's dataset: uint8 HWC images, Pillow pad-4 random crop and flip, ToTensor, normalise."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.x, self.y = x, y
        self.mean = np.asarray(mean, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, ImageOps

        img = ImageOps.expand(Image.fromarray(self.x[i]), border=4, fill=0)
        left, top = random.randint(0, 8), random.randint(0, 8)
        img = img.crop((left, top, left + 32, top + 32))
        if random.random() < 0.5:
            img = ImageOps.mirror(img)
        arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((arr - self.mean) / self.std), int(self.y[i])


def time_conventional(root: Path, device: torch.device, args: argparse.Namespace) -> float:
    """(a): images/s of the conventional loop (DataLoader of Pillow transforms, fp32, cross-entropy, SGD)."""
    from remixup.data.run import load_run_data
    from remixup.models import build_model_for

    data: Any = load_run_data("cifar10", str(root), device=torch.device("cpu"), imbalance="longtail", ratio=ratio(args))
    mean, std = data.spec.mean, data.spec.std
    ds = PillowSet(data.x_train.numpy(), data.y_train.numpy(), mean, std)
    loader = torch.utils.data.DataLoader(ds, batch_size=args.batch, shuffle=True, drop_last=True, num_workers=args.workers,
                                         pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)  # fmt: skip
    torch.manual_seed(0)
    model = build_model_for("resnet32", 10, (3, 32, 32)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    crit = torch.nn.CrossEntropyLoss()

    def batches(n: int):  # noqa: ANN202
        done = 0
        while done < n:
            for xb, yb in loader:
                yield xb, yb
                done += 1
                if done == n:
                    return

    def steps(n: int) -> None:
        for xb, yb in batches(n):
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = crit(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(device)

    steps(args.warmup)
    t0 = time.perf_counter()
    steps(args.steps)
    return args.steps * args.batch / (time.perf_counter() - t0)


def _trainings(root: Path, scratch: Path, tag: str, k: int, args: argparse.Namespace, **run: Any) -> list[Any]:
    from remixup.engine import Training
    from remixup.runtime import Dist, resolve_device

    device = resolve_device(args.device)
    runs = []
    for i in range(k):
        config = make_config(root, METHODS[i % len(METHODS)], i, scratch / f"{tag}{i}", args, **run)
        t = Training(config, Dist(), device)
        assert t.setup(resume=False, model=None, fork=None) is None
        t.begin_epoch(0)  # the epoch's learning rate, balancing and seeds, as the engine sets them
        runs.append(t)
    return runs


def _take(loader: Any, n: int) -> Any:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from _common import Take

    return Take(loader, n)


def time_single_fp32(root: Path, scratch: Path, device: torch.device, args: argparse.Namespace) -> float:
    """(b): images/s of remixup's single-run loop (engine.train_one_epoch), fp32."""
    from remixup import engine
    from remixup.runtime import Dist

    (run,) = _trainings(root, scratch, "b", 1, args, amp="off")
    cl = run.precision.channels_last

    def steps(n: int) -> None:
        engine.train_one_epoch(run.model, _take(run.loader, n), run.mixing, run.criterion, run.optimizer, amp=False,
                               channels_last=cl, bar=None, world=Dist())  # fmt: skip
        _sync(device)

    steps(args.warmup)
    t0 = time.perf_counter()
    steps(args.steps)
    return args.steps * args.batch / (time.perf_counter() - t0)


def time_fused(root: Path, scratch: Path, device: torch.device, args: argparse.Namespace, k: int, *, graphs: bool,
               profile: Path | None = None) -> float:  # fmt: skip
    """(c), (d): aggregate images/s of K fused runs (bf16 on CUDA; CUDA graphs when ``graphs``)."""
    from remixup.fused import FusedGroup
    from remixup.runtime import Precision

    runs = _trainings(root, scratch, f"k{k}{'g' if graphs else 'e'}", k, args, amp="bf16" if device.type == "cuda" else "off")
    group = FusedGroup(runs, precision=Precision(amp=device.type == "cuda"), graphs=graphs)
    loaders = [r.loader for r in runs]

    def steps(n: int) -> None:
        for r, loader in zip(runs, loaders, strict=True):
            r.loader = _take(loader, n)
        group.train_epoch()
        _sync(device)

    steps(args.warmup)
    t0 = time.perf_counter()
    steps(args.steps)
    rate = k * args.steps * args.batch / (time.perf_counter() - t0)
    if profile is not None:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with torch_profile(activities=acts) as prof:
            steps(3)
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        profile.write_text(f"# 3 fused steps, K = {k}, graphs={graphs}\n" + prof.key_averages().table(sort_by=key, row_limit=25))
    return rate


def long_group(root: Path, out: Path, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    """(e): a fused group of ``--long-k`` Remix-DRW seeds for the recipe's whole length; accuracies vs gpu200."""
    from remixup.fused import train_fused

    configs = [make_config(root, "remix-drw", seed, out / "runs" / f"remix-drw_s{seed}", args,
                           amp="bf16" if device.type == "cuda" else "off") for seed in range(args.long_k)]  # fmt: skip
    t0 = time.perf_counter()
    summaries = train_fused(configs, resume="auto", graphs=args.graphs and device.type == "cuda")
    took = time.perf_counter() - t0
    singles = {}
    for d in sorted(GPU200.glob("cifar10-longtail100_remix-drw_ldam_e200_ampoff_s*-ss0")):
        s = json.loads((d / "summary.json").read_text())
        singles[int(s["seed"])] = s["top1"]
    return {"runs": args.long_k, "epochs": configs[0].run.epochs, "wall_s": took, "s_per_run": took / args.long_k,
            "top1": {int(s["seed"]): s["top1"] for s in summaries}, "single_fp32_top1": singles}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--npz", default=".gpu/cifar10.npz.xz", help="cifar10.npz or .npz.xz (results/gpu/make_data.py)")
    parser.add_argument("--out", default=os.environ.get("OUT", "bench_gpu_out"), help="results folder (default $OUT)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="synthetic data, batch 8, few steps: a CPU smoke run")
    parser.add_argument("--ks", default="4,8,16,32", help="fused group sizes (default 4,8,16,32)")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant (default 60)")
    parser.add_argument("--warmup", type=int, default=15, help="untimed steps first (compilation, graph capture)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=5, help="DataLoader workers of the conventional pipeline")
    parser.add_argument("--long-k", type=int, default=4, help="runs of the 200-epoch group (0: none)")
    parser.add_argument("--long-epochs", type=int, default=200)
    parser.add_argument("--budget", type=float, default=450.0, help="seconds; the long group runs only if it fits")
    parser.add_argument("--no-graphs", dest="graphs", action="store_false", help="eager fused steps on CUDA too")
    args = parser.parse_args()
    if args.tiny:
        args.ks, args.steps, args.warmup, args.batch, args.workers = "2", 1, 1, 8, 0
        args.long_k, args.long_epochs = min(args.long_k, 2), 1
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    from remixup.runtime import resolve_device

    device = resolve_device(args.device)
    graphs = args.graphs and device.type == "cuda"
    root = prepare_data(args, scratch)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({os.cpu_count()} logical CPUs)"
    results: dict[str, Any] = {"device": name, "torch": torch.__version__, "batch": args.batch, "steps": args.steps,
                               "graphs": graphs, "tiny": args.tiny, "images_per_s": {}, "errors": {}}  # fmt: skip
    print(f"# {name}, torch {torch.__version__}; data ready after {time.perf_counter() - start:.0f} s", flush=True)
    variants: list[tuple[str, Any]] = [
        ("a conventional fp32", lambda: time_conventional(root, device, args)),
        ("b remixup single fp32", lambda: time_single_fp32(root, scratch, device, args)),
        (f"c single bf16{' + graphs' if graphs else ''}", lambda: time_fused(root, scratch, device, args, 1, graphs=graphs)),
    ]
    for k in (int(v) for v in args.ks.split(",") if v):
        prof = out / "profile.txt" if k == 8 or (args.tiny and k == 2) else None
        variants.append((f"d fused K={k}{' + graphs' if graphs else ''}",
                         lambda k=k, prof=prof: time_fused(root, scratch, device, args, k, graphs=graphs, profile=prof)))  # fmt: skip
    for label, fn in variants:
        if time.perf_counter() - start > args.budget - 30:
            results["errors"][label] = f"skipped: {args.budget:.0f} s budget spent"
            print(f"{label}: {results['errors'][label]}", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            rate = fn()
        except Exception as exc:  # a variant that fails (e.g. compilation) is reported, the others still run
            results["errors"][label] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            print(f"{label}: FAILED {results['errors'][label]}", flush=True)
            continue
        results["images_per_s"][label] = rate
        print(f"{label}: {rate:,.0f} images/s ({time.perf_counter() - t0:.0f} s)", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rates = results["images_per_s"]
    base = rates.get("a conventional fp32")
    k4 = next((v for lbl, v in rates.items() if lbl.startswith("d fused K=4" if not args.tiny else "d fused")), None)
    if args.long_k and k4:
        predicted = args.long_epochs * 12406 * args.long_k / k4 * 1.15  # + evaluation and checkpoints
        left = args.budget - (time.perf_counter() - start)
        if args.tiny or predicted < left:
            results["long"] = long_group(root, out, device, args)
            print(f"e fused {args.long_k} x remix-drw, {args.long_epochs} epochs: {results['long']}", flush=True)
        else:
            results["long"] = {"skipped": f"predicted {predicted:.0f} s from the K=4 rate, {left:.0f} s of the budget left"}
            print(f"e skipped: {results['long']['skipped']}", flush=True)
    lines = [f"# bench_gpu: {name}, torch {torch.__version__}, batch {args.batch} per run, {args.steps} timed steps", "",
             "| variant | images/s (all runs) | ratio to (a) |", "|---|---|---|"]  # fmt: skip
    for label, rate in rates.items():
        lines.append(f"| {label} | {rate:,.0f} | {rate / base:.2f} |" if base else f"| {label} | {rate:,.0f} | - |")
    for label, err in results["errors"].items():
        lines.append(f"| {label} | failed: {err} | |")
    if "long" in results:
        lines += ["", f"long group: {json.dumps(results['long'])}"]
    results["wall_s"] = time.perf_counter() - start
    lines += ["", f"total {results['wall_s']:.0f} s"]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))
    shutil.rmtree(scratch, ignore_errors=True)
    failed = [label for label, err in results["errors"].items() if not err.startswith("skipped")]
    if failed:
        print(f"bench_gpu: {len(failed)} variant(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
