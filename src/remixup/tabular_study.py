"""``remixup reproduce tabular``: Remix and its baselines on real imbalanced tables, many seeds, with statistics.

The grid: :data:`STUDY_SETS` (naturally long-tailed tables, and balanced ones given a long-tailed profile on their
training split) × :data:`STUDY_METHODS` × seeds, plus a boosted-tree reference (scikit-learn's
``HistGradientBoostingClassifier`` with and without ``class_weight="balanced"``) per set and seed. Seed ``s`` sets
the split seed, the training seed and the profile's subset seed alike, so every method of a seed sees the same
split and the comparisons are paired.

How it runs (the overhead of one process per run, about 3 s of imports, would cost more than most runs train):

- the work is cut into groups, one per (set, seed); a worker process runs whole groups in turn, so a table is read
  and split once per group (:func:`remixup.data.tabular.load_table_splits` caches it) and every run is an
  in-process call of :func:`remixup.engine.train`, writing its ordinary run folder;
- inside a group the deferred runs are forked from their plain twin's checkpoint of the deferral epoch (Remix-DRW
  from Remix, DRW from ERM, Mixup-DRW from Mixup; :func:`remixup.engine.train`'s ``fork``), so their first 80 % is
  not trained twice;
- ``--workers N`` starts N worker processes of one torch thread each, which share the groups (each claims a group
  before running it, with a ``.claim`` file holding its pid), and writes the report when all are done; a killed grid picks up where it stopped: a run whose ``row.json`` exists is done, an unfinished
  run resumes from its checkpoint, and checkpoints are deleted once their group is finished.

Model selection and tuning use the validation split only: each network run is also evaluated on it (for picking
the best network method per set), the boosted tree's learning rate and number of iterations are chosen on it, and
the test split is only reported.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from remixup.errors import InvalidParameterError, UserError
from remixup.tabular_design import (
    BOOSTED,
    EVALS_PER_RUN,
    HGB_LEARNING_RATES,
    HGB_LEAVES,
    HGB_MAX_ITER,
    HGB_MIN_LEAF,
    HGB_PATIENCE,
    HGB_STEP,
    STEP_BUDGET,
    STUDY_METHODS,
    STUDY_SETS,
    StudySet,
)
from remixup.tabular_report import (
    CLAIM,
    HGB_FILE,
    ROW,
    TIMING,
    collect_rows,
    load_timing,
    read_runs_csv,
    readme_text,
    update_readme,
    write_report,
)


def batch_size_for(n_train: int) -> int:
    """The batch size of a training split of ``n_train`` rows: 32 below 300 rows, 64 below 1,500, 128 below
    5,000, 256 below 20,000, else 512."""
    for limit, size in ((300, 32), (1500, 64), (5000, 128), (20000, 256)):
        if n_train < limit:
            return size
    return 512


def epochs_for(n_train: int, batch_size: int, steps: int = STEP_BUDGET) -> int:
    """Whole epochs for at least ``steps`` optimiser steps (:data:`STEP_BUDGET`: the same budget for every network)."""
    return max(1, math.ceil(steps / max(1, n_train // batch_size)))


def eval_every_for(epochs: int) -> int:
    """Epochs between validation evaluations: about :data:`EVALS_PER_RUN` per run."""
    return max(1, epochs // EVALS_PER_RUN)


def get_sets(text: str | None) -> list[StudySet]:
    """The study sets named in ``text`` (comma-separated labels; None: all)."""
    if text is None:
        return list(STUDY_SETS)
    by_label = {s.label.lower(): s for s in STUDY_SETS}
    picked = []
    for part in (p.strip().lower() for p in text.split(",")):
        if not part:
            continue
        if part not in by_label:
            raise InvalidParameterError(f"`--sets`: no study set {part!r}; sets: {', '.join(s.label for s in STUDY_SETS)}")
        picked.append(by_label[part])
    if not picked:
        raise InvalidParameterError(f"`--sets` names no set; got {text!r}")
    return picked


def get_methods(text: str | None) -> list[str]:
    """The methods named in ``text`` (comma-separated; None: all of :data:`STUDY_METHODS`)."""
    from remixup.methods import get_method

    if text is None:
        return list(STUDY_METHODS)
    names = [get_method(p).name for p in text.split(",") if p.strip()]
    if not names:
        raise InvalidParameterError(f"`--rows` names no method; got {text!r}")
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------------ one group
@dataclass(frozen=True)
class Group:
    """The unit of work of a worker: every run of one set and seed."""

    study_set: StudySet
    seed: int

    def folder(self, runs_dir: Path) -> Path:
        return runs_dir / self.study_set.label / f"seed{self.seed}"


def groups(sets: Sequence[StudySet], seeds: Sequence[int]) -> list[Group]:
    """All groups, seed by seed (a grid stopped early has whole seeds of every set)."""
    return [Group(s, seed) for seed in seeds for s in sets]


def training_rows(study_set: StudySet, seed: int) -> tuple[Any, np.ndarray]:
    """The set's splits (cached) and the indices of the training rows the profile keeps (all for ``none``)."""
    from remixup.data import ArrayDataset, make_imbalanced
    from remixup.data.tabular import load_table_splits

    splits = load_table_splits(study_set.dataset, split_seed=seed)
    y = torch.from_numpy(splits.y["train"])
    index = ArrayDataset(torch.arange(y.numel()), y, splits.classes, source=study_set.dataset)
    kept = make_imbalanced(index, study_set.imbalance, ratio=study_set.ratio, subset_seed=seed)
    return splits, kept.x.numpy()


def train_config(study_set: StudySet, method: str, seed: int, out: Path, *, n_train: int, epochs: int | None = None) -> Any:
    """The :class:`~remixup.config.TrainConfig` of one network run (recipe ``tabular``, scaled to the set)."""
    from remixup.config import build_config

    batch = batch_size_for(n_train)
    n_epochs = epochs if epochs is not None else epochs_for(n_train, batch)
    every = eval_every_for(n_epochs)
    return build_config(
        "tabular",
        epochs=n_epochs,
        overrides=[
            f"data.dataset={study_set.dataset}",
            f"data.imbalance={study_set.imbalance}",
            f"data.ratio={study_set.ratio}",
            f"data.split_seed={seed}",
            f"method.name={method}",
            f"run.seed={seed}",
            f"run.subset_seed={seed}",
            f"optim.batch_size={batch}",
            f"run.eval_every={every}",
            f"run.checkpoint_every={every}",  # checkpoints at the evaluations (the rule keeps one of those), not each epoch
            f"run.out={out}",
            "run.device=cpu",
            "run.threads=1",
            "run.progress=false",
            "run.tensorboard=false",
        ],
    )


def _checkpoint_metrics(path: Path, splits: Any, counts: torch.Tensor, split: str) -> dict[str, Any]:
    """A checkpoint's metrics on one split of the table: balanced accuracy, macro-F1, macro-AUPRC, accuracy, the
    shot groups and the per-class recall (in %)."""
    from remixup import checkpoint
    from remixup.config import TrainConfig
    from remixup.evaluation import evaluate
    from remixup.models import build_model

    state = checkpoint.load(path)
    method = TrainConfig.from_dict(state["config"], source=f"the config in {path}").effective_method()
    model = build_model(
        state["model_name"],
        counts.numel(),
        in_features=int(splits.x[split].shape[1]),
        classifier=method.classifier,
        classifier_bias=state["config"]["model"]["classifier_bias"],
    )
    model.load_state_dict(state["model"])
    model.eval()
    x, y = torch.from_numpy(splits.x[split]), torch.from_numpy(splits.y[split])
    m = evaluate(model, x, y, class_counts=counts, batch_size=4096, scores=True)
    return {"balanced_acc": m["balanced_acc"], "macro_f1": m["macro_f1"], "macro_auprc": m["macro_auprc"], "accuracy": m["top1"],
            "many": m["many"], "medium": m["medium"], "few": m["few"], "per_class_recall": m["per_class"],
            "epoch": int(state["epoch"])}  # fmt: skip


def _kept_epoch(path: Path) -> int | None:
    """The epoch of a kept checkpoint, ``None`` when there is none (a kill between a checkpoint and its copy)."""
    from remixup import checkpoint

    return int(checkpoint.load(path)["epoch"]) if path.is_file() else None


class BestOnValidation:
    """The checkpoint rule of every network run: among the validation evaluations from the deferral epoch on (the
    last 20 % of the budget, where every method has its full schedule: the decayed learning rate, and DRW's
    re-weighting), keep the one with the best validation balanced accuracy (the earliest on ties) as
    ``checkpoint_best.pt``. Called by the engine after each epoch's checkpoint is written (``on_epoch``)."""

    def __init__(self, folder: Any, first_epoch: int, history: list[dict[str, Any]]) -> None:
        self.folder, self.first_epoch = folder, first_epoch
        self.best, self.best_epoch = -math.inf, 0
        for row in history:  # a resumed run: the evaluations already made
            self._consider(int(row["epoch"]), row)

    def _consider(self, epoch: int, row: dict[str, Any]) -> bool:
        value = row.get("val_balanced_acc")
        if epoch < self.first_epoch or value is None or float(value) <= self.best:
            return False
        self.best, self.best_epoch = float(value), epoch
        return True

    def __call__(self, epoch: int, row: dict[str, Any]) -> None:
        if self._consider(epoch, row):
            from remixup._files import atomic_write

            atomic_write(self.folder.best_checkpoint, self.folder.checkpoint.read_bytes(), durable=True)


def _write_json(path: Path, obj: Any) -> None:
    from remixup._files import atomic_write

    atomic_write(path, json.dumps(obj, indent=1) + "\n")


def _ordered(methods: Sequence[str]) -> list[str]:
    """Plain twins first, so that the deferred runs can fork from them."""
    from remixup.reproduce import plain_twin

    twins = {plain_twin(m) for m in methods} - {None}
    return [m for m in methods if m in twins] + [m for m in methods if m not in twins]


def run_network(
    group: Group, method: str, runs_dir: Path, *, methods: Sequence[str], epochs: int | None = None, log: Any = None
) -> dict[str, Any]:
    """Train (or resume, or read) one network run of ``group``; return its row."""
    from remixup.engine import train
    from remixup.reproduce import plain_twin
    from remixup.rundir import RunFolder

    out = group.folder(runs_dir) / method
    if (out / ROW).is_file():
        return json.loads((out / ROW).read_text(encoding="utf-8"))
    splits, rows = training_rows(group.study_set, group.seed)
    counts = torch.bincount(torch.from_numpy(splits.y["train"][rows]), minlength=len(splits.classes))
    config = train_config(group.study_set, method, group.seed, out, n_train=int(rows.size), epochs=epochs)
    twin = plain_twin(method)
    deferral = config.schedule.deferral_epoch
    fork = None
    if twin is not None and twin in methods and not RunFolder(out).checkpoint.is_file():
        kept = RunFolder(group.folder(runs_dir) / twin).kept_checkpoint(deferral)
        fork = kept if kept.is_file() and 0 < deferral < config.run.epochs else None
    if any(plain_twin(m) == method for m in methods) and 0 < deferral < config.run.epochs:
        config.run.keep_every = deferral
    folder = RunFolder(out)
    first = config.schedule.deferral_epoch + 1  # 1-based epochs of the deferred phase
    rule = BestOnValidation(folder, first, folder.read_history() if folder.status() == "resume" else [])
    stale = folder.status() == "resume" and rule.best_epoch and _kept_epoch(folder.best_checkpoint) != rule.best_epoch
    if (folder.status() == "todo" and out.exists()) or stale:
        shutil.rmtree(out)  # nothing finished in it, or its best checkpoint was lost in a kill: start afresh
        rule = BestOnValidation(folder, first, [])
    tic = time.perf_counter()
    with contextlib.redirect_stdout(log if log is not None else sys.stdout):
        summary = train(config, resume="auto", fork=fork, on_epoch=rule)
    steps_per_epoch = max(1, int(rows.size) // config.optim.batch_size)
    test = _checkpoint_metrics(folder.best_checkpoint, splits, counts, "test")
    val = _checkpoint_metrics(folder.best_checkpoint, splits, counts, "val")
    row = {
        "set": group.study_set.label,
        "method": method,
        "seed": group.seed,
        "kind": "network",
        "test": {k: v for k, v in test.items() if k != "epoch"},
        "val": {k: val[k] for k in ("balanced_acc", "macro_f1", "macro_auprc", "accuracy")},
        "best_epoch": test["epoch"],
        "steps": config.run.epochs * steps_per_epoch,
        "seeded": True,  # the engine seeds torch's global generator (dropout) per run and epoch
        "epochs": config.run.epochs,
        "batch_size": config.optim.batch_size,
        "n_train": int(rows.size),
        "train_counts": counts.tolist(),
        "classes": list(splits.classes),
        "dropped": dict(splits.dropped),
        "forked": fork is not None,
        "train_s": summary["wall_time_s"],
        "wall_s": time.perf_counter() - tic,
    }
    _write_json(out / ROW, row)
    return row


def _confusion(y: np.ndarray, pred: np.ndarray, c: int) -> torch.Tensor:
    return torch.bincount(torch.from_numpy(y * c + pred), minlength=c * c).reshape(c, c)


def _prediction_metrics(y: np.ndarray, proba: np.ndarray, counts: torch.Tensor) -> dict[str, Any]:
    from remixup.metrics import MetricCounts, macro_auprc, macro_f1, summarize

    c = counts.numel()
    pred = proba.argmax(axis=1)
    conf = _confusion(y.astype(np.int64), pred.astype(np.int64), c)
    m = summarize(MetricCounts(conf, torch.zeros((), dtype=torch.int64)), counts)
    return {
        "balanced_acc": m["balanced_acc"],
        "macro_f1": macro_f1(conf),
        "macro_auprc": macro_auprc(proba, y),
        "accuracy": m["top1"],
        "many": m["many"],
        "medium": m["medium"],
        "few": m["few"],
        "per_class_recall": m["per_class"],
    }


def _full_proba(model: Any, x: np.ndarray, c: int) -> np.ndarray:
    """(N, C) class probabilities of a fitted tree (columns for classes absent from its training labels are 0)."""
    proba = np.zeros((x.shape[0], c))
    proba[:, model.classes_.astype(np.int64)] = model.predict_proba(x)
    return proba


def tune_boosted(splits: Any, rows: np.ndarray, weight: str | None, seed: int) -> dict[str, Any]:
    """The boosted tree of one weighting tuned on the validation split over the grid of :mod:`remixup.tabular_design`:
    each (learning rate, leaves, minimum rows per leaf) grows :data:`HGB_STEP` iterations at a time (warm start) and
    stops :data:`HGB_PATIENCE` iterations after its best validation balanced accuracy; the best point of the grid
    (the earliest on ties) gives the test probabilities."""
    import itertools

    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    x_train, y_train = splits.x_ordinal["train"][rows], splits.y["train"][rows]
    c = len(splits.classes)
    counts = torch.bincount(torch.from_numpy(y_train), minlength=c)
    best: dict[str, Any] | None = None
    tried = 0
    for lr, leaves, min_leaf in itertools.product(HGB_LEARNING_RATES, HGB_LEAVES, HGB_MIN_LEAF):
        model = HistGradientBoostingClassifier(learning_rate=lr, max_leaf_nodes=leaves, min_samples_leaf=min_leaf,
                                               max_iter=HGB_STEP, early_stopping=False, warm_start=True, class_weight=weight,
                                               random_state=seed, categorical_features=np.asarray(splits.categorical, dtype=bool))  # fmt: skip
        since = 0
        with threadpool_limits(1):
            while model.max_iter <= HGB_MAX_ITER and since < HGB_PATIENCE:
                model.fit(x_train, y_train)
                tried += 1
                val = _full_proba(model, splits.x_ordinal["val"], c)
                score = _prediction_metrics(splits.y["val"], val, counts)["balanced_acc"]
                if best is None or score > best["score"]:
                    best = {"score": score, "learning_rate": lr, "max_leaf_nodes": leaves, "min_samples_leaf": min_leaf,
                            "iterations": int(model.n_iter_), "val": val, "test": _full_proba(model, splits.x_ordinal["test"], c)}  # fmt: skip
                    since = 0
                else:
                    since += HGB_STEP
                model.max_iter += HGB_STEP
    assert best is not None
    return {**best, "counts": counts, "fits": tried}


def run_boosted(group: Group, runs_dir: Path) -> list[dict[str, Any]]:
    """The boosted-tree rows of ``group`` (with and without balanced class weights), tuned on validation."""
    path = group.folder(runs_dir) / HGB_FILE
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    splits, rows = training_rows(group.study_set, group.seed)
    out: list[dict[str, Any]] = []
    for name, weight in zip(BOOSTED, (None, "balanced"), strict=True):
        tic = time.perf_counter()
        best = tune_boosted(splits, rows, weight, group.seed)
        counts = best["counts"]
        val = _prediction_metrics(splits.y["val"], best["val"], counts)
        out.append(
            {
                "set": group.study_set.label,
                "method": name,
                "seed": group.seed,
                "kind": "boosted",
                "test": _prediction_metrics(splits.y["test"], best["test"], counts),
                "val": {k: val[k] for k in ("balanced_acc", "macro_f1", "macro_auprc", "accuracy")},
                "learning_rate": best["learning_rate"],
                "max_leaf_nodes": best["max_leaf_nodes"],
                "min_samples_leaf": best["min_samples_leaf"],
                "iterations": best["iterations"],
                "n_train": int(rows.size),
                "train_counts": counts.tolist(),
                "classes": list(splits.classes),
                "dropped": dict(splits.dropped),
                "seeded": True,
                "wall_s": time.perf_counter() - tic,
            }
        )
    _write_json(path, out)
    return out


def run_group(
    group: Group, runs_dir: Path, *, methods: Sequence[str], epochs: int | None = None, boosted: bool = True, log: Any = None
) -> list[dict[str, Any]]:
    """Every run of ``group`` (twins first), then the boosted tree; checkpoints are removed once all are done."""
    rows = [run_network(group, m, runs_dir, methods=methods, epochs=epochs, log=log) for m in _ordered(methods)]
    if boosted:
        rows += run_boosted(group, runs_dir)
    for ckpt in group.folder(runs_dir).glob("*/checkpoint*.pt"):
        ckpt.unlink()
    return rows


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(folder: Path) -> bool:
    """Take a group for this process: create ``folder/.claim`` holding its pid, atomically (``O_EXCL``). A claim of
    a process that is gone is taken over; one of a live process is left alone (False)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CLAIM
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                owner = int(path.read_text(encoding="utf-8").strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and (owner == os.getpid() or _alive(owner)):
                return owner == os.getpid()
            path.unlink(missing_ok=True)  # its process is gone
            continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def run_shard(
    runs_dir: Path,
    sets: Sequence[StudySet],
    seeds: Sequence[int],
    methods: Sequence[str],
    *,
    shard: tuple[int, int] = (0, 1),
    epochs: int | None = None,
    boosted: bool = True,
    echo: Callable[[str], None] = print,
) -> int:
    """Run this shard's groups (positions k with k mod n == i) that no other live process has claimed; return the
    number of groups that failed. Processes of the same shard share its groups first come, first served."""
    mine = [g for k, g in enumerate(groups(sets, seeds)) if k % shard[1] == shard[0]]
    failed = 0
    runs_dir.mkdir(parents=True, exist_ok=True)
    log_dir = runs_dir / "_logs"
    log_dir.mkdir(exist_ok=True)

    def finished(group: Group) -> bool:
        folder = group.folder(runs_dir)
        return all((folder / m / ROW).is_file() for m in methods) and (not boosted or (folder / HGB_FILE).is_file())

    for k, group in enumerate(mine, 1):
        if finished(group) or not claim(group.folder(runs_dir)):
            continue
        if finished(group):  # another worker finished it between the check and the claim
            (group.folder(runs_dir) / CLAIM).unlink(missing_ok=True)
            continue
        tic = time.perf_counter()
        try:
            with (
                open(log_dir / f"{group.study_set.label}-seed{group.seed}.log", "a", encoding="utf-8") as log,
                contextlib.redirect_stderr(log),
            ):
                rows = run_group(group, runs_dir, methods=methods, epochs=epochs, boosted=boosted, log=log)
        except UserError as exc:  # a data or configuration problem of this group: go on with the others
            failed += 1
            echo(f"[{k}/{len(mine)}] FAILED {group.study_set.label} seed {group.seed}: {exc}")
            continue
        best = max((r for r in rows if r["kind"] == "network"), key=lambda r: r["val"]["balanced_acc"], default=None)
        shown = f", best on val {best['method']} (test balanced {best['test']['balanced_acc']:.1f})" if best else ""
        echo(
            f"[{k}/{len(mine)}] {group.study_set.label} seed {group.seed}: {len(rows)} rows in {time.perf_counter() - tic:.1f}s{shown}"
        )
        (group.folder(runs_dir) / CLAIM).unlink(missing_ok=True)
    return failed


def run_workers(argv: Sequence[str], workers: int, runs_dir: Path) -> int:
    """Start ``workers`` processes of ``argv`` (one torch thread each; they share the groups by claiming them), wait;
    return the number of processes that failed."""
    log_dir = runs_dir / "_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = []
    for i in range(workers):
        log = open(log_dir / f"worker{i}.log", "a", encoding="utf-8")  # noqa: SIM115 -- closed after the process ends
        procs.append(
            (
                subprocess.Popen(
                    [*argv, "--workers", "1", "--no-report"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                ),
                log,
            )
        )
    codes = []
    try:
        for proc, _ in procs:
            codes.append(proc.wait())
    except KeyboardInterrupt:  # the grid is stopped: so are its workers (their groups resume on the next start)
        for proc, _ in procs:
            proc.terminate()
        for proc, _ in procs:
            proc.wait()
        raise
    finally:
        for _, log in procs:
            log.close()
    return sum(c != 0 for c in codes)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM (``kill``, a scheduler's stop) stops the grid as Ctrl-C does, so that its time is recorded and
    its workers are stopped with it."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def record_session(runs_dir: Path, tic: float, workers: int, *, stopped: bool = False) -> None:
    """Add one session of the grid to ``runs_dir/_grid_time.json``: its start (UTC), wall time, workers, and whether
    it was stopped before the grid was done."""
    path = runs_dir / TIMING
    sessions = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    entry: dict[str, Any] = {"start": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(tic)), "elapsed_s": time.time() - tic,
                             "workers": workers}  # fmt: skip
    if stopped:
        entry["stopped"] = True
    sessions.append(entry)
    _write_json(path, sessions)


def _command_line() -> str:
    """The command as typed, when it came from the ``remixup`` CLI; else the generic one."""
    if Path(sys.argv[0]).name in ("remixup", "__main__.py"):
        return " ".join(["remixup", *sys.argv[1:]])
    return "remixup reproduce tabular"


def run_command(args: Any) -> int:
    """``remixup reproduce tabular`` (arguments from :mod:`remixup.commands.reproduce`); 1 if a group failed."""
    sets = get_sets(args.sets)
    methods = get_methods(args.rows)
    seeds = args.seeds if args.seeds is not None else list(range(10))
    runs_dir: Path = args.runs_dir
    report_dir: Path = args.report_dir or runs_dir
    if args.epochs is not None and args.epochs < 1:
        raise InvalidParameterError(f"`--epochs` must be >= 1; got {args.epochs}")
    if getattr(args, "pack", None) is not None or getattr(args, "unpack", None) is not None:
        from remixup import tabular_archive

        if args.pack is not None and args.unpack is not None:
            raise InvalidParameterError("`--pack` and `--unpack` go in separate calls; give one of them")
        if args.pack is not None:
            print(f"# packed {tabular_archive.pack(runs_dir, args.pack)} finished groups of {runs_dir} into {args.pack}")
        else:
            print(f"# unpacked {tabular_archive.unpack(args.unpack, runs_dir)} finished groups into {runs_dir}")
        return 0
    if getattr(args, "measure_budget", None) is not None:
        from remixup.tabular_budget import measure_budget, write_budget

        if args.measure_budget < 100:
            raise InvalidParameterError(f"`--measure-budget` must be >= 100 steps; got {args.measure_budget}")
        result = measure_budget(runs_dir, args.measure_budget, echo=lambda line: print(line, flush=True))
        print(f"# budget: {write_budget(result, report_dir / 'budget.json')}")
        return 0
    if getattr(args, "readme", None) is not None:
        readme_text(args.readme)  # a README that cannot take the block: refused before any work
    total = groups(sets, seeds)
    print(
        f"# tabular: {len(sets)} sets x {len(seeds)} seeds = {len(total)} groups of {len(methods)} network runs"
        f"{'' if args.no_boosted else ' + the boosted tree'}"
    )
    if args.dry_run:
        for g in total:
            done = sum((g.folder(runs_dir) / m / ROW).is_file() for m in methods)
            print(f"{g.study_set.label:<16} seed {g.seed}: {done}/{len(methods)} network runs done")
        return 0
    failed = 0
    if not args.table_only:
        from remixup.reproduce import check_runs_dir

        check_runs_dir(runs_dir)
        tic, stopped = time.time(), False
        try:
            with _sigterm_as_interrupt():
                if args.workers > 1:
                    argv = [sys.executable, "-m", "remixup", "reproduce", "tabular", "--runs-dir", str(runs_dir), "--shard",
                            f"{args.shard[0]}/{args.shard[1]}", "--seeds", ",".join(map(str, seeds)), "--sets",
                            ",".join(s.label for s in sets), "--rows", ",".join(methods)]  # fmt: skip
                    argv += (["--epochs", str(args.epochs)] if args.epochs is not None else []) + (
                        ["--no-boosted"] if args.no_boosted else []
                    )
                    failed = run_workers(argv, args.workers, runs_dir)
                else:
                    failed = run_shard(runs_dir, sets, seeds, methods, shard=args.shard, epochs=args.epochs,
                                       boosted=not args.no_boosted, echo=lambda line: print(line, flush=True))  # fmt: skip
        except KeyboardInterrupt:
            stopped = True
            raise
        finally:
            if not args.no_report:  # the parent (or a lone process), not the workers, records the session's wall time
                record_session(runs_dir, tic, args.workers, stopped=stopped)
    if args.no_report:
        return 1 if failed else 0
    from_csv = getattr(args, "runs_csv", None)
    if from_csv is not None and not Path(from_csv).is_file():
        raise UserError(f"--runs-csv {from_csv}: no such file")
    rows = [
        r
        for r in (read_runs_csv(Path(from_csv)) if from_csv is not None else collect_rows(runs_dir))
        if r["set"] in {s.label for s in sets}
        and int(r["seed"]) in set(seeds)
        and (r["method"] in methods or r["kind"] == "boosted")
    ]
    if not rows:
        print(f"# no finished runs under {runs_dir} yet")
        return 1 if failed else 0
    paths = write_report(rows, report_dir, timing=None if from_csv is not None else load_timing(runs_dir),
                         command=getattr(args, "command_line", None) or _command_line(), write_csv=from_csv is None)  # fmt: skip
    for name, path in paths.items():
        print(f"# {name}: {path}")
    if getattr(args, "readme", None) is not None:
        changed = update_readme(args.readme, paths["summary"].read_text(encoding="utf-8"))
        print(f"# readme: {args.readme} ({'updated' if changed else 'unchanged'})")
    return 1 if failed else 0
