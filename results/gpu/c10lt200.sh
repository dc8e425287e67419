#!/bin/bash
# Issue 7 on a lent GPU: CIFAR-10-LT-100, ResNet-32, the unscaled 200-epoch `ldam` recipe in fp32 (run.amp=off),
# as parallel chains of `remixup reproduce c10lt --fork-deferred` (one process per chain), taken in the order below:
# seed 0's table first, then more seeds of Remix-DRW and Mixup-DRW. WORKERS chains run at once to start with; one
# more starts at 60 s and 120 s while nvidia-smi reads the GPU under 85% busy (at most MAX_WORKERS), because the
# GPU's speed for several small ResNet-32 processes was not known beforehand: when it is the bottleneck, fewer
# chains at a time finish the first ones sooner.
#
#   bash results/gpu/c10lt200.sh                  # every chain below, in order (from the repository root)
#   bash results/gpu/c10lt200.sh remix2 mixup2 remix3 mixup3   # only the chains named, in that order
#   (done: remix0 mixup0 in session 8; erm0 ldam0 in session 11, and remix1 mixup1 there, finished on the CPU;
#    next: remix2 mixup2 remix3 mixup3 remix4 mixup4, then the *nb0 chains, whose lead section 5e closed at 90 epochs)
#
# Needs .gpu/cifar10.npz.xz (made by results/gpu/make_data.py). Training stops TRAIN_S seconds after the
# start; each run keeps its checkpoint every epoch, so the same `remixup reproduce` line resumes it on any machine.
# Results go to $OUT: log.txt, runs.tar.gz (configs, metrics, summaries, logs) and ckpt_K.tar (checkpoints).
set -u
OUT=${OUT:-/tmp/gpu_out}; TRAIN_S=${TRAIN_S:-520}; WORKERS=${WORKERS:-2}; MAX_WORKERS=${MAX_WORKERS:-4}; EPOCHS=${EPOCHS:-200}; DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}; RUNS=${RUNS:-/tmp/gpu_runs}; DATA=${DATA:-/tmp/gpu_data}
mkdir -p "$OUT" "$RUNS" "$DATA"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec > >(tee -a "$OUT/log.txt") 2>&1
t0=$(date +%s)
[ -f "$DATA/cifar10.npz" ] || $PY -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(".gpu/cifar10.npz.xz"), open(sys.argv[1], "wb"), 1 << 24)' "$DATA/cifar10.npz" || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
$PY -c 'import torch, remixup; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "remixup", remixup.__version__)' || exit 1
echo "data ready after $(( $(date +%s) - t0 )) s"

# *nb: the same runs with a classifier without a bias (model.classifier_bias=false; docs/results.md §5d-5e).
CHAINS=(
  "remix0 --seeds 0 --rows remix,remix-drw"
  "mixup0 --seeds 0 --rows mixup,mixup-drw"
  "erm0 --seeds 0 --rows erm,drw"
  "ldam0 --seeds 0 --rows ldam-drw"
  "remixnb0 --seeds 0 --rows remix,remix-drw --set model.classifier_bias=false"
  "ermnb0 --seeds 0 --rows erm,drw --set model.classifier_bias=false"
  "mixupnb0 --seeds 0 --rows mixup,mixup-drw --set model.classifier_bias=false"
  "remix1 --seeds 1 --rows remix,remix-drw"
  "mixup1 --seeds 1 --rows mixup,mixup-drw"
  "remix2 --seeds 2 --rows remix,remix-drw"
  "mixup2 --seeds 2 --rows mixup,mixup-drw"
  "remix3 --seeds 3 --rows remix,remix-drw"
  "mixup3 --seeds 3 --rows mixup,mixup-drw"
  "remix4 --seeds 4 --rows remix,remix-drw"
  "mixup4 --seeds 4 --rows mixup,mixup-drw"
)
if [ $# -gt 0 ]; then  # keep only the chains named on the command line, in that order
  picked=()
  for want in "$@"; do
    found=""; for c in "${CHAINS[@]}"; do [ "${c%% *}" = "$want" ] && { picked+=("$c"); found=1; }; done
    [ -n "$found" ] || { echo "no chain named $want; the chains are: $(for c in "${CHAINS[@]}"; do printf '%s ' "${c%% *}"; done)"; exit 2; }
  done
  CHAINS=("${picked[@]}")
fi
deadline=$(( t0 + TRAIN_S ))
echo 0 > "$RUNS/.next"
run_chain() {  # NAME ARGS...: one `reproduce` process, stopped (SIGTERM to its process group) at the deadline
  local name=$1; shift; local left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 45 ] || { echo "$name: skipped, ${left} s left"; return; }
  echo "$name: start after $(( $(date +%s) - t0 )) s"
  timeout -k 15 "$left" $PY -m remixup reproduce c10lt --epochs "$EPOCHS" --fork-deferred --data-root "$DATA" \
    --runs-dir "$RUNS/$name" --device "$DEVICE" --set run.amp=off --no-progress "$@" > "$RUNS/$name.log" 2>&1
  echo "$name: exit $? after $(( $(date +%s) - t0 )) s"
}
worker() {
  while :; do
    local i; i=$(flock "$RUNS/.next" bash -c 'read i < "$0"; echo $((i + 1)) > "$0"; echo $i' "$RUNS/.next")
    [ "$i" -lt "${#CHAINS[@]}" ] || return
    run_chain ${CHAINS[$i]}
  done
}
for _ in $(seq "$WORKERS"); do worker & done
started=$WORKERS
for at in 60 120; do
  pause=$(( t0 + at - $(date +%s) )); [ "$pause" -gt 0 ] && sleep "$pause"
  [ "$(date +%s)" -lt "$deadline" ] && [ -n "$(jobs -r)" ] || break
  util=$(nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
  echo "gpu after $(( $(date +%s) - t0 )) s: ${util:-?}% busy with $started chains"
  if [ -n "$util" ] && [ "$util" -lt 85 ] && [ "$started" -lt "$MAX_WORKERS" ]; then worker & started=$((started + 1)); echo "one more chain at a time: $started"; fi
done
( while [ "$(date +%s)" -lt "$deadline" ]; do
    sleep 30; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null | sed "s/^/gpu after $(( $(date +%s) - t0 )) s: /"
  done ) &
sampler=$!
# a bare `wait` would also wait for the `tee` of the log (a process substitution) and never return
workers=$(jobs -p | grep -v "^$sampler$"); [ -z "$workers" ] || wait $workers
kill $sampler 2>/dev/null

$PY - "$RUNS" "$OUT" <<'PY'
"""Pack the runs: small files in one tar.gz; checkpoints in tars of at most 15 MiB, at most 6, 60 MiB in all."""
import json, statistics, sys, tarfile
from pathlib import Path
runs, out = Path(sys.argv[1]), Path(sys.argv[2])
with tarfile.open(out / "runs.tar.gz", "w:gz") as tar:
    for p in sorted(runs.rglob("*")):
        if p.is_file() and p.suffix != ".pt":
            tar.add(p, arcname=str(p.relative_to(runs)))
# last checkpoints first (evaluation / resume), then deferral-epoch ones whose forked run has not finished
last = sorted(runs.rglob("checkpoint.pt"))
kept = [p for p in sorted(runs.rglob("checkpoint_e*.pt"))]
todo, chunks, size, total = last + kept, [[]], 0, 0
for p in todo:
    n = p.stat().st_size
    if total + n > 60 * 2**20: print("left out (space):", p); continue
    if size + n > 15 * 2**20:
        if len(chunks) == 6: print("left out (files):", p); continue
        chunks.append([]); size = 0
    chunks[-1].append(p); size += n; total += n
for k, chunk in enumerate(c for c in chunks if c):
    with tarfile.open(out / f"ckpt_{k}.tar", "w") as tar:
        for p in chunk: tar.add(p, arcname=str(p.relative_to(runs)))
print(f"{'run':58s} {'epochs':>6s} {'top-1':>6s} {'last eval':>10s} {'img/s':>7s}")
for d in sorted(p.parent for p in runs.rglob("config.yaml")):
    rows = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines() if l.strip()] if (d / "metrics.jsonl").exists() else []
    ips = [r["images_per_s"] for r in rows if "images_per_s" in r]
    top1 = json.loads((d / "summary.json").read_text()).get("top1") if (d / "summary.json").exists() else None
    evals = [r for r in rows if "top1" in r]
    last = f"{evals[-1]['top1']:.2f}@{evals[-1]['epoch']}" if evals else "-"
    print(f"{d.name:58s} {len(ips):6d} {str(top1)[:6]:>6s} {last:>10s} {statistics.median(ips) if ips else 0:7.0f}")
PY
echo "done after $(( $(date +%s) - t0 )) s"
