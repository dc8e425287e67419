"""Plot the 25-epoch sweep as pairs: each Remix variant's top-1 beside that of the method it adds Remix to.

usage: python results/sweep/plot_sweep.py   (from the repository root; writes results/sweep/sweep_pairs.png)

Reads each run's summary.json under results/runs/sweep. The six earliest runs (ERM, Mixup, Remix, DRW,
Remix-DRW, LDAM-DRW) lost their folders; their top-1 values are the ones recorded in docs/results.md section 1.
"""
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

root = Path("results/runs/sweep")
top1 = {"erm": 48.10, "mixup": 37.07, "remix": 36.87, "drw": 61.80, "remix-drw": 44.98, "ldam-drw": 48.19}
for summary in root.glob("*/summary.json"):
    result = json.loads(summary.read_text())
    top1[result["method"]] = result["top1"]

# (the method Remix is added to, its Remix variant)
pairs = [("erm", "remix"), ("mixup", "remix"), ("manifold-mixup", "remix-mm"), ("cutmix", "remix-cm"),
         ("rw", "remix-rw"), ("rs", "remix-rs"), ("drw", "remix-drw"), ("mixup-drw", "remix-drw"),
         ("drs", "remix-drs"), ("mixup-drs", "remix-drs"), ("ldam-drw", "remix-ldam-drw"),
         ("ldam-drw", "remix-ldam-drs"), ("la", "remix-la"), ("bs", "remix-bs")]
missing = sorted({m for p in pairs for m in p} - top1.keys())
if missing:
    raise SystemExit(f"no finished run for {missing} under {root}")

fig, ax = plt.subplots(figsize=(8, 6), constrained_layout=True)
for i, (base, variant) in enumerate(pairs):
    y = len(pairs) - 1 - i
    a, b = top1[base], top1[variant]
    ax.plot([a, b], [y, y], color="0.6", zorder=1)
    ax.scatter([a], [y], color="tab:blue", zorder=2, label="without Remix" if i == 0 else None)
    ax.scatter([b], [y], color="tab:red", zorder=2, label="with Remix" if i == 0 else None)
    ax.annotate(f"{b - a:+.1f}", (max(a, b) + 0.8, y), va="center", fontsize=8)
ax.set_yticks(range(len(pairs)), [f"{base} → {variant}" for base, variant in reversed(pairs)], fontsize=8)
ax.set_xlabel("top-1 (%), last epoch, seed 0")
ax.set_title("CIFAR-10 LT-100, ResNet-32, ldam recipe scaled to 25 epochs:\nadding Remix to each method")
ax.grid(axis="x", alpha=0.3)
ax.legend(loc="upper right", fontsize=8)
out = Path("results/sweep/sweep_pairs.png")
fig.savefig(out, dpi=110)
print(out)
