"""How long the tabular study trains: the step budget, measured where validation balanced accuracy stops improving.

``remixup reproduce tabular --measure-budget STEPS`` trains ERM, Mixup and Remix (the mixing methods are the ones
a short schedule would cut short) on three sets of the study (:data:`BUDGET_SETS`), seed 0, for ``STEPS``
optimiser steps at the recipe's constant learning rate (after its warm-up; no decay, so the curve shows how long
learning goes on rather than where a schedule ends it), evaluating the validation split after every epoch. For
each curve, the validation balanced accuracy is smoothed by a running mean over :data:`SMOOTH` evaluations, and
the *plateau step* is the first step at which the smoothed curve comes within :data:`WITHIN` points of its
maximum. The study's budget is the largest plateau step over the nine curves, rounded up to a multiple of 500:
every method of every set then gets that many steps, with the recipe's decay at 80 % and 90 % of them.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

BUDGET_SETS = ("yeast", "page_blocks", "satimage-LT100")
BUDGET_METHODS = ("erm", "mixup", "remix")
SMOOTH = 5
WITHIN = 0.5


def plateau_step(steps: list[int], values: list[float], *, smooth: int = SMOOTH, within: float = WITHIN) -> int:
    """The first step at which the running mean of ``values`` over ``smooth`` evaluations is within ``within`` of
    its maximum (see the module docstring)."""
    v = np.asarray(values, dtype=np.float64)
    k = min(smooth, v.size)
    running = np.convolve(v, np.ones(k) / k, mode="valid")  # running[i]: mean of evaluations i .. i + k - 1
    first = int(np.flatnonzero(running >= running.max() - within)[0])
    return int(steps[first + k - 1])


def measure_budget(runs_dir: Path, steps: int, *, seed: int = 0, echo: Any = print) -> dict[str, Any]:
    """Train the curves (resumable: a finished run is read back) and return the plateau steps and the budget."""
    from remixup.engine import train
    from remixup.rundir import RunFolder
    from remixup.tabular_study import batch_size_for, get_sets, train_config, training_rows

    curves: list[dict[str, Any]] = []
    for study_set in get_sets(",".join(BUDGET_SETS)):
        splits, rows = training_rows(study_set, seed)
        batch = batch_size_for(int(rows.size))
        per_epoch = max(1, int(rows.size) // batch)
        epochs = math.ceil(steps / per_epoch)
        for method in BUDGET_METHODS:
            out = runs_dir / "_budget" / study_set.label / method
            config = train_config(study_set, method, seed, out, n_train=int(rows.size), epochs=epochs)
            config.schedule.milestones, config.schedule.lr_factors = [], []  # constant lr after the warm-up
            config.run.eval_every = 1
            tic = time.perf_counter()
            train(config, resume="auto")
            history = RunFolder(out).read_history()
            x = [int(r["epoch"]) * per_epoch for r in history]
            y = [float(r["val_balanced_acc"]) for r in history]
            plateau = plateau_step(x, y)
            curves.append({"set": study_set.label, "method": method, "batch_size": batch, "steps_per_epoch": per_epoch,
                           "epochs": epochs, "plateau_step": plateau, "best_val_balanced_acc": max(y),
                           "curve": [[s, round(v, 2)] for s, v in zip(x, y, strict=True)]})  # fmt: skip
            echo(f"{study_set.label:<16} {method:<6} plateau at step {plateau} (best val balanced {max(y):.1f}; "
                 f"{time.perf_counter() - tic:.0f}s)")  # fmt: skip
    budget = int(math.ceil(max(c["plateau_step"] for c in curves) / 500) * 500)
    result = {"steps_trained": steps, "seed": seed, "smooth": SMOOTH, "within": WITHIN, "budget_steps": budget, "curves": curves}
    echo(f"budget: {budget} optimiser steps (the largest plateau step, rounded up to 500)")
    return result


def write_budget(result: dict[str, Any], path: Path) -> Path:
    from remixup._files import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(result, indent=1) + "\n")
    return path
