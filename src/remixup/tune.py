"""A fair, resumable hyperparameter search on Optuna: ``remixup tune``.

A study lives in a folder::

    STUDY_DIR/study.yaml      what ``create`` fixed: space, base config, objective, sampler, pruner, storage, versions
    STUDY_DIR/journal.log     the default storage (Optuna's journal file; one machine, any number of processes)
    STUDY_DIR/trials/NNNN_seedS/   one run folder per trial and seed (config.yaml, metrics.*, summary.json), named
                              in the trial's user attribute ``run_folders`` (relative to STUDY_DIR)
    STUDY_DIR/confirm/        the runs of ``tune confirm`` and confirm.json

**Fairness.** Every trial holds out a validation split of the (imbalanced) training split (``data.val_fraction``,
stratified, at least ``data.val_min_per_class`` per class, its own ``data.val_seed``); the objective is the mean of a
``val_*`` metric over ``seeds_per_trial`` training seeds. The test split is seen only by ``confirm``.

**Workers.** Only ``create`` creates the study; ``run`` loads it. The trial budget ``n_trials`` is the study's: a
worker asks for a trial only while fewer than ``n_trials`` are running, waiting, complete or pruned, and a trial
that still finds itself beyond the budget (workers racing for the last slot) is failed unrun and marked
``surplus``. A worker's sampler is re-seeded before every trial from (base seed, worker index, finished trials), so
two workers, or a resumed study, never replay each other's draws; a trial whose parameters equal an earlier
trial's is failed unrun (``duplicate_of``) and asked again.

**Faults.** PostgreSQL: each running trial beats a heartbeat; a trial whose worker died is failed by the next
worker and retried once (a WAITING copy with the same parameters, ``failed_trial`` and ``retry_history`` as in
Optuna's retry callback). Journal file: a running trial records its host, process id and the process's start time;
``run`` fails the trials of dead processes on this host and retries them once.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from remixup.errors import ConfigError, DivergedError, UserError
from remixup.tune_space import TYPES as TYPES
from remixup.tune_space import _check_against_config
from remixup.tune_space import parse_space as parse_space
from remixup.tune_space import suggest as suggest
from remixup.yaml_files import read_yaml

__all__ = ["SETTINGS_FILE", "Study", "create_study", "load", "parse_space", "run_worker", "suggest"]

SETTINGS_FILE = "study.yaml"
JOURNAL_FILE = "journal.log"
STUDY_NAME = "remixup"
PAPER_START = {"mixing.kappa": 3.0, "mixing.tau": 0.5, "mixing.alpha": 1.0}  # the paper's choice, enqueued by default
LIVE = ("RUNNING", "WAITING", "COMPLETE", "PRUNED")  # states that use up the trial budget
FINISHED = ("COMPLETE", "PRUNED")
SETTINGS_KEYS = ("space", "fixed", "enqueue", "config", "objective", "sampler", "pruner", "storage")


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - the extra is missing
        raise UserError("remixup tune needs Optuna: pip install 'remixup[tune]'") from exc
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# -- the search space -----------------------------------------------------------------------------------------------
# -- settings, storage ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Study:
    """An opened study folder: its settings and the Optuna study on its storage."""

    path: Path
    settings: dict[str, Any]
    study: Any

    @property
    def space(self) -> dict[str, dict[str, Any]]:
        return dict(self.settings["space"])

    @property
    def metric(self) -> str:
        return str(self.settings["objective"]["metric"])

    def base_config(self) -> Any:
        from remixup.config import TrainConfig

        return TrainConfig.from_dict(self.settings["config"], source=str(self.path / SETTINGS_FILE))

    def trial_config(self, params: dict[str, Any], *, seed: int, out: Path) -> Any:
        from remixup.config import apply_override

        config = self.base_config()
        for key, value in params.items():
            apply_override(config, f"{key}={value}")
        config.run.seed, config.run.out, config.run.progress = seed, str(out), False
        return config.validate()

    def trials(self, *states: str) -> list[Any]:
        optuna = _optuna()
        wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states) if states else None
        return list(self.study.get_trials(deepcopy=False, states=wanted))


def _redact(url: str) -> str:
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def open_storage(path: Path, url: str, *, heartbeat: int = 60, grace: int = 180) -> Any:
    """The study's storage: ``journal`` (the file in the study folder), a PostgreSQL URL (heartbeat, retry once,
    pre-ping) or an SQLite URL (one worker at a time).

    Raises:
        UserError: an unknown scheme, or a database that cannot be reached.
    """
    optuna = _optuna()
    if url == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        file = str(path / JOURNAL_FILE)
        return optuna.storages.JournalStorage(JournalFileBackend(file, lock_obj=JournalFileOpenLock(file)))
    if not url.startswith(("postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://", "sqlite:///")):
        raise UserError(f"unknown storage {_redact(url)!r}: use `journal` (the default), postgresql://... or sqlite:///...")
    import sqlalchemy.exc

    kwargs: dict[str, Any] = {"engine_kwargs": {"pool_pre_ping": True}}
    if url.startswith("postgresql"):
        kwargs["engine_kwargs"]["connect_args"] = {"connect_timeout": 10}
        kwargs.update(heartbeat_interval=heartbeat, grace_period=grace, heartbeat_stale_trial_callback=retry_once)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat options
            return optuna.storages.RDBStorage(url, **kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot open the storage {_redact(url)}: {first}") from exc


def _settings_file(path: Path) -> Path:
    return Path(path) / SETTINGS_FILE


def _read_settings(file: Path) -> dict[str, Any]:
    settings = read_yaml(file, "study settings")
    if not isinstance(settings, dict):
        raise ConfigError(f"study settings {file} must be a mapping; the file is damaged")
    return settings


def load(path: str | Path) -> Study:
    """Open the study folder ``path`` made by :func:`create_study`.

    Raises:
        UserError: no study there, or its storage cannot be reached.
    """
    optuna = _optuna()
    path = Path(path)
    file = _settings_file(path)
    if not file.is_file():
        raise UserError(f"{path} holds no study ({SETTINGS_FILE} is missing); create it with `remixup tune create`")
    settings = _read_settings(file)
    storage = open_storage(path, settings["storage"], heartbeat=settings["heartbeat"], grace=settings["grace"])
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage, pruner=make_pruner(settings["pruner"]))
    except KeyError as exc:
        raise UserError(f"the storage of {path} holds no study {STUDY_NAME!r}; was it created with another --storage?") from exc
    return Study(path, settings, study)


def make_sampler(settings: dict[str, Any], seed: int) -> Any:
    """The sampler of the study's settings, seeded with ``seed``; every argument that Optuna 5 does not deprecate is
    passed explicitly, so a change of its defaults cannot change a study."""
    optuna = _optuna()
    s = settings
    if s["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(n_startup_trials=s["n_startup_trials"], n_ei_candidates=s["n_ei_candidates"],
                                          seed=seed, multivariate=s["multivariate"], group=s["group"],
                                          constant_liar=s["constant_liar"], constraints_func=None)  # fmt: skip


def make_pruner(settings: dict[str, Any]) -> Any:
    optuna = _optuna()
    if settings["name"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings["n_startup_trials"], n_warmup_steps=settings["warmup"],
                                           interval_steps=1, n_min_trials=1)  # fmt: skip
    if settings["name"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, settings["warmup"]), max_resource=settings["max_resource"],
                                              reduction_factor=3)  # fmt: skip
    return optuna.pruners.NopPruner()


def worker_seed(base: int, worker: int, finished: int) -> int:
    """A sampler seed from (base seed, worker index, finished trials): distinct across workers and over a study's life."""
    import numpy as np

    return int(np.random.SeedSequence([base, worker, finished]).generate_state(1)[0])


def retry_once(study: Any, trial: Any) -> None:
    """Enqueue a failed trial's parameters again, once (the fields of Optuna's retry callback)."""
    optuna = _optuna()
    history = list(trial.system_attrs.get("retry_history", [])) + [trial.number]
    if len(history) > 1 or trial.user_attrs.get("surplus") or trial.user_attrs.get("duplicate_of") is not None:
        return
    system = {**trial.system_attrs, "failed_trial": history[0], "retry_history": history}
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=trial.params,
                                              distributions=trial.distributions, system_attrs=system))  # fmt: skip


# -- create -------------------------------------------------------------------------------------------------------
def create_study(path: str | Path, *, space_file: str | Path, config: Any, storage: str = "journal",
                 metric: str = "val_balanced_acc", seeds_per_trial: int = 1, sampler: str = "tpe", sampler_seed: int = 0,
                 n_startup_trials: int = 10, pruner: str = "median", warmup: int = 0, heartbeat: int = 60,
                 grace: int = 180) -> tuple[Study, bool]:  # fmt: skip
    """Create the study folder ``path`` once; return (study, created). Creating it again with the same settings
    is a no-op; with other settings it is refused.

    Args:
        space_file: YAML with ``space`` (required), ``fixed`` (config values of every trial) and ``enqueue``
            (trials to run first; default the paper's κ=3, τ=0.5, α=1 for the keys the space has).
        config: the base :class:`~remixup.config.TrainConfig` (recipe, data, method, overrides); ``fixed`` goes on top.
        storage: ``journal`` or a database URL. metric: a ``val_*`` metric, maximised.
        seeds_per_trial: the objective is the metric's mean over run.seed, run.seed + 1, ...
        sampler: ``tpe`` or ``random``; sampler_seed: the base of every worker's seed.
        pruner: ``median``, ``hyperband`` or ``none``; warmup: epochs never pruned (at least the deferral epoch of
            a deferred method).
        heartbeat, grace: PostgreSQL heartbeat interval and the silence after which a running trial is failed (s).

    Raises:
        UserError: a bad space, objective, storage or a folder holding a different study.
    """
    from remixup import __version__
    from remixup.config import apply_override
    from remixup.evaluation import VAL_METRICS
    from remixup.methods import get_method

    optuna = _optuna()
    path = Path(path)
    if not metric.startswith("val_") or metric[4:] not in VAL_METRICS:
        raise UserError(f"the objective must be a validation metric ({', '.join('val_' + m for m in VAL_METRICS)}); got "
                        f"{metric!r}: the test split is never searched on, `tune confirm` reports it")  # fmt: skip
    if seeds_per_trial < 1:
        raise UserError(f"--seeds-per-trial must be >= 1; got {seeds_per_trial}")
    if sampler not in ("tpe", "random") or pruner not in ("median", "hyperband", "none"):
        raise UserError(
            f"unknown sampler {sampler!r} or pruner {pruner!r}: samplers tpe, random; pruners median, hyperband, none"
        )
    raw = read_yaml(Path(space_file), "search space file") or {}
    if not isinstance(raw, dict) or (extra := sorted(set(raw) - {"space", "fixed", "enqueue"})):
        raise ConfigError(
            f"{space_file}: unknown section(s) {extra if isinstance(raw, dict) else raw!r}; use space, fixed, enqueue"
        )
    space = parse_space(raw.get("space"), str(space_file))
    config = copy.deepcopy(config)
    fixed = dict(raw.get("fixed") or {})
    for key, value in fixed.items():
        apply_override(config, f"{key}={value}")
    if config.data.val_fraction == 0:
        config.data.val_fraction = 0.2  # a search needs a validation split; the test split stays out of it
    config.run.out = str(path / "trials")
    config.validate()
    _check_against_config(space, config)
    enqueue = raw.get("enqueue", [{k: v for k, v in PAPER_START.items() if k in space}])
    enqueue = [e for e in enqueue if e]
    for item in enqueue:
        if not isinstance(item, dict) or set(item) - set(space):
            raise ConfigError(f"{space_file}: each `enqueue` item maps keys of the space to values; got {item!r}")
    methods = [config.method.name] + (space["method.name"]["choices"] if "method.name" in space else [])
    deferral = space.get("schedule.deferral_epoch", {}).get("high", config.schedule.deferral_epoch)
    if any(get_method(m).deferred for m in methods) and deferral < config.run.epochs:
        warmup = max(warmup, int(deferral))  # DRW/DRS change the curve at the deferral epoch: never prune before it
    settings: dict[str, Any] = {
        "space": space,
        "fixed": fixed,
        "enqueue": enqueue,
        "config": config.to_dict(),
        "objective": {"metric": metric, "direction": "maximize", "seeds_per_trial": seeds_per_trial},
        "sampler": {
            "name": sampler,
            "seed": sampler_seed,
            "n_startup_trials": n_startup_trials,
            "n_ei_candidates": 24,
            "multivariate": True,
            "group": False,
            "constant_liar": True,
        },  # fmt: skip
        "pruner": {"name": pruner, "warmup": warmup, "n_startup_trials": 5, "max_resource": config.run.epochs},
        "storage": storage,
        "heartbeat": heartbeat,
        "grace": grace,
        "versions": {"remixup": __version__, "optuna": optuna.__version__},
    }
    file = _settings_file(path)
    if file.is_file():
        old = _read_settings(file)
        differ = [k for k in SETTINGS_KEYS if old.get(k) != settings[k]]
        if differ:
            raise UserError(f"{path} holds a study created with a different {', '.join(differ)}; use a new folder")
        return load(path), False
    path.mkdir(parents=True, exist_ok=True)
    store = open_storage(path, storage, heartbeat=heartbeat, grace=grace)
    try:
        study = optuna.create_study(study_name=STUDY_NAME, storage=store, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError as exc:
        raise UserError(f"the storage {_redact(storage)} already holds a study {STUDY_NAME!r}; use another database") from exc
    for item in enqueue:
        study.enqueue_trial(item, user_attrs={"enqueued": True})
    from remixup._files import atomic_write

    atomic_write(file, yaml.safe_dump(settings, sort_keys=False))
    return load(path), True


# -- run: one worker ----------------------------------------------------------------------------------------------
def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), ``None`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def fail_dead_trials(s: Study) -> list[int]:
    """Fail the running trials whose worker process on this host is gone, retry each once; return their numbers."""
    optuna = _optuna()
    host, failed = socket.gethostname(), []
    for t in s.trials("RUNNING"):
        owner = t.user_attrs.get("worker")
        if not owner or owner["host"] != host or _proc_start(owner["pid"]) == owner["start"]:
            continue
        s.study._storage.set_trial_user_attr(t._trial_id, "failed_reason", "its worker died")
        s.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        retry_once(s.study, t)
        failed.append(t.number)
    return failed


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=1e-12) if isinstance(a[k], float) else a[k] == b[k] for k in a
    )


@contextmanager
def _sqlite_lock(s: Study) -> Iterator[None]:
    if not s.settings["storage"].startswith("sqlite"):
        yield
        return
    import fcntl

    with open(s.path / ".sqlite-worker.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UserError("SQLite storage takes one worker at a time (parallel writers fail with 'database is locked'); "
                            "use the journal file or PostgreSQL for parallel workers") from exc  # fmt: skip
        yield


class _Pruned(Exception):
    """Raised from the per-epoch hook on every rank when the trial is to stop."""


def run_worker(path: str | Path, *, n_trials: int, timeout: float | None = None, worker: int | None = None,
               resume_trial: int | None = None, on_trial: Callable[[int | None], None] | None = None) -> int:  # fmt: skip
    """Run trials of the study at ``path`` until it holds ``n_trials`` live or finished ones (or ``timeout`` seconds
    have passed); return how many this worker finished. Under torchrun (WORLD_SIZE > 1) every rank calls this: rank
    0 owns the trials and broadcasts the parameters and each epoch's prune decision.

    Args:
        worker: this worker's index (default: the SLURM array task, else the process id).
        resume_trial: a RUNNING trial of this worker's earlier life (a requeued SLURM job) to finish first.
        on_trial: told the number of the trial being run (``None`` between trials), for checkpoint handlers.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    owned = world > 1 and not dist.is_initialized()
    if owned:
        import torch

        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        return _work(path, n_trials, timeout, worker, resume_trial, on_trial, world)
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


def _work(path: str | Path, n_trials: int, timeout: float | None, worker: int | None, resume_trial: int | None,
          on_trial: Callable[[int | None], None] | None, world: int) -> int:  # fmt: skip
    import torch.distributed as dist

    main = world == 1 or dist.get_rank() == 0
    s = load(path) if main else None
    if worker is None:
        worker = int(os.environ.get("SLURM_ARRAY_TASK_ID", os.getpid()))
    deadline = None if timeout is None else time.monotonic() + timeout
    done = 0
    context = _sqlite_lock(s) if s is not None else _nothing()
    with context:
        if s is not None and s.settings["storage"] == "journal":
            fail_dead_trials(s)
        while True:
            job = _next_trial(s, n_trials, worker, deadline, resume_trial) if s is not None else None
            resume_trial = None
            if world > 1:
                box = [None if job is None else job[1]]
                dist.broadcast_object_list(box, src=0)
                params = box[0]
            else:
                params = None if job is None else job[1]
            if params is None:
                break
            if on_trial is not None:
                on_trial(job[0].number if job is not None else None)
            with _heartbeat(s, job[0] if job is not None else None):
                _run_trial(s, job[0] if job is not None else None, params, world)
            if on_trial is not None:
                on_trial(None)
            done += 1
    return done


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _heartbeat(s: Study | None, trial: Any) -> Iterator[None]:
    """Beat the storage's heartbeat for ``trial`` while it runs (storages that have one: PostgreSQL)."""
    import threading

    storage: Any = s.study._storage if s is not None and trial is not None else None
    if not callable(getattr(storage, "record_heartbeat", None)) or storage.get_heartbeat_interval() is None:
        yield
        return
    stop = threading.Event()
    interval = float(s.settings["heartbeat"])  # type: ignore[union-attr]

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial._trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, daemon=True, name="remixup-tune-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _next_trial(s: Study, n_trials: int, worker: int, deadline: float | None,
                resume_trial: int | None) -> tuple[Any, dict[str, Any]] | None:  # fmt: skip
    """Ask for the next trial within the budget (or take up ``resume_trial``); ``None`` when there is none."""
    optuna = _optuna()
    if resume_trial is not None:
        match = [t for t in s.trials("RUNNING") if t.number == resume_trial]
        if match:
            trial = optuna.trial.Trial(s.study, match[0]._trial_id)
            _own(s, trial, worker)
            return trial, suggest(trial, s.space)
    for _ in range(50):  # duplicates are asked again, a few times
        if deadline is not None and time.monotonic() > deadline:
            return None
        if s.settings["storage"].startswith("postgresql"):  # fail the trials whose heartbeat stopped; retry them once
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(s.study)
        trials = s.trials()
        if sum(t.state.name in LIVE for t in trials) >= n_trials:
            return None
        finished = sum(t.state.name in FINISHED for t in trials)
        s.study.sampler = make_sampler(s.settings["sampler"], worker_seed(s.settings["sampler"]["seed"], worker, finished))
        trial = s.study.ask()
        _own(s, trial, worker)
        now = s.trials()
        ahead = sum(t.state.name in LIVE and t.number < trial.number for t in now)
        if ahead >= n_trials:
            trial.set_user_attr("surplus", True)
            s.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return None
        params = suggest(trial, s.space)
        twin = next((t.number for t in now if t.number != trial.number and t.state.name in LIVE and t.params
                     and _same(t.params, params)), None)  # fmt: skip
        if twin is None:
            return trial, params
        trial.set_user_attr("duplicate_of", twin)
        s.study.tell(trial, state=optuna.trial.TrialState.FAIL)
    print("remixup tune: 50 proposals in a row repeated earlier trials; the space looks exhausted", file=sys.stderr)
    return None


def _own(s: Study, trial: Any, worker: int) -> None:
    pid = os.getpid()
    trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid), "index": worker})


def _trial_folder(number: int, seed_index: int) -> str:
    """A trial's run folder for one seed, relative to the study folder (so that the folder can move)."""
    return f"trials/{number:04d}_seed{seed_index}"


def _run_trial(s: Study | None, trial: Any, params: dict[str, Any], world: int) -> None:
    """Train the trial's seeds (every rank) and tell the result (rank 0)."""
    import torch.distributed as dist

    optuna = _optuna()
    if world > 1:  # the other ranks need the settings too
        box = [None if s is None else (s.path, s.settings)]
        dist.broadcast_object_list(box, src=0)
        if s is None:
            s = Study(Path(box[0][0]), box[0][1], None)  # type: ignore[index]
    assert s is not None
    from remixup.engine import train

    metric = s.metric
    n_seeds = int(s.settings["objective"]["seeds_per_trial"])
    number = trial.number if trial is not None else -1
    if world > 1:
        numbers: list[Any] = [number]
        dist.broadcast_object_list(numbers, src=0)
        number = int(numbers[0])
    base = s.base_config()

    def hook(epoch: int, row: dict[str, Any]) -> None:
        value = row.get(metric)
        stop = False
        if trial is not None and value is not None:
            if not math.isfinite(value):
                stop = True
            else:
                trial.report(float(value), epoch)
                stop = trial.should_prune()
        if world > 1:
            box = [stop]
            dist.broadcast_object_list(box, src=0)
            stop = bool(box[0])
        if stop:
            raise _Pruned(f"pruned at epoch {epoch}")

    values: list[float] = []
    folders = [_trial_folder(number, i) for i in range(n_seeds)]
    if trial is not None:
        trial.set_user_attr("run_folders", folders)
    state, reason = "COMPLETE", ""
    for i in range(n_seeds):
        config = s.trial_config(params, seed=base.run.seed + i, out=s.path / folders[i])
        try:
            summary = train(config, resume="auto", on_epoch=hook if i == 0 else None)
        except _Pruned as exc:
            state, reason = "PRUNED", str(exc)
            break
        except DivergedError as exc:
            state, reason = "PRUNED", " ".join(str(exc).split())
            break
        value = summary.get(metric)
        if value is None or not math.isfinite(value):
            state, reason = "PRUNED", f"{metric} is {value}"
            break
        values.append(float(value))
    if trial is None:
        return
    if reason:
        trial.set_user_attr("pruned_reason", reason)
    if state == "PRUNED":
        s.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        trial.set_user_attr("seed_values", values)
        s.study.tell(trial, sum(values) / len(values))


# -- results ------------------------------------------------------------------------------------------------------
