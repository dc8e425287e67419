"""ResNet-32 CPU training step with and without ``remixup.runtime.tune_malloc`` (glibc mmap/trim thresholds).

malloc settings are process-wide and cannot be undone cleanly, so each measurement is a fresh process; the two
variants alternate (plain, tuned, plain, tuned, ...) and the script prints each pair and the ratio of the medians.

    .venv/bin/python benchmarks/bench_malloc.py [--pairs 5] [--threads 2] [--steps 8]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CHILD = """
import sys, time, torch
from remixup.runtime import tune_malloc
from remixup.models import build_model
if sys.argv[1] == "tuned":
    assert tune_malloc()
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
m = build_model("resnet32", 10).to(memory_format=torch.channels_last)
opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (128,))
def step():
    loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(3):
    step()
times = []
for _ in range(int(sys.argv[3])):
    t = time.perf_counter(); step(); times.append(time.perf_counter() - t)
print(sorted(times)[len(times) // 2])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per process (median taken)")
    args = parser.parse_args()
    with open("/proc/loadavg") as fh:
        print(f"load average at start: {fh.read().split()[:3]}; torch threads {args.threads}; batch 128, channels-last fp32")
    results: dict[str, list[float]] = {"plain": [], "tuned": []}
    for k in range(args.pairs):
        row = []
        for variant in ("plain", "tuned") if k % 2 == 0 else ("tuned", "plain"):
            out = subprocess.run([sys.executable, "-c", CHILD, variant, str(args.threads), str(args.steps)],
                                 capture_output=True, text=True, check=True)  # fmt: skip
            results[variant].append(float(out.stdout.strip()) * 1000)
            row.append(f"{variant} {results[variant][-1]:7.1f} ms")
        print(f"pair {k + 1}: " + ", ".join(row), flush=True)
        time.sleep(0.5)
    plain, tuned = statistics.median(results["plain"]), statistics.median(results["tuned"])
    print(f"median step: plain {plain:.1f} ms, tuned {tuned:.1f} ms; speed-up {plain / tuned:.3f}x")


if __name__ == "__main__":
    main()
