"""A fair, resumable hyperparameter search on Optuna: ``remixup tune``.

A study lives in a folder::

    STUDY_DIR/study.yaml      what ``create`` fixed (:class:`StudySettings`): space, base config, objective, sampler,
                              pruner, storage, versions
    STUDY_DIR/journal.log     the default storage (Optuna's journal file; one machine, any number of processes)
    STUDY_DIR/trials/NNNN_seedS/   one run folder per trial and seed (config.yaml, metrics.*, summary.json), named
                              in the trial's user attribute ``run_folders`` (relative to STUDY_DIR)
    STUDY_DIR/confirm/        the runs of ``tune confirm`` and confirm.json

**Fairness.** Every trial holds out a validation split of the (imbalanced) training split (``data.val_fraction``,
stratified, at least ``data.val_min_per_class`` per class, its own ``data.val_seed``) and evaluates nothing else
(``run.eval_test=false``); the objective is the mean of a ``val_*`` metric over ``seeds_per_trial`` training seeds.
The test split is seen only by ``confirm``.

**Workers** are Optuna's own loop, ``Study.optimize``, with ``MaxTrialsCallback`` counting finished (complete and
pruned) trials. ``create`` alone creates the study; ``run`` loads it. WAITING trials (the warm start, retries) are
asked first, as Optuna does, and never count as done. What Optuna lacks is added here, each piece where it is used:
a budget that holds with workers racing for the last trials, a sampler seeded per worker and trial, the refusal of
repeated parameters, and, for the journal file, finding the trials of dead workers.

**Faults.** PostgreSQL: Optuna's heartbeat fails the trial of a dead worker after the grace period and its
``RetryHeartbeatStaleTrialCallback`` enqueues it again, once. Journal file: a running trial records its host,
process id and the process's start time; workers fail the trials of dead processes on their host and retry them
once, through the same callback. A retry resumes the run folders of the trial it repeats from their checkpoints. A
trial that hits a :class:`~remixup.errors.UserError` is failed with the message as its user attribute ``error``, and
the worker stops with that error.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from remixup.errors import ConfigError, DivergedError, UserError
from remixup.tune_space import TYPES as TYPES
from remixup.tune_space import check_against_config
from remixup.tune_space import parse_space as parse_space
from remixup.tune_space import suggest as suggest
from remixup.yaml_files import read_yaml

__all__ = ["SETTINGS_FILE", "ObjectiveSettings", "PrunerSettings", "SamplerSettings", "Study", "StudySettings",
           "create_study", "import_optuna", "load", "parse_space", "redact", "run_worker", "suggest"]  # fmt: skip

SETTINGS_FILE = "study.yaml"
JOURNAL_FILE = "journal.log"
STUDY_NAME = "remixup"
PAPER_START = {"mixing.kappa": 3.0, "mixing.tau": 0.5, "mixing.alpha": 1.0}  # the paper's choice, enqueued by default
FINISHED = ("COMPLETE", "PRUNED")  # the trials the budget counts
MAX_REPEATS = 50  # proposals in a row that repeat earlier trials before a worker gives up


def import_optuna() -> Any:
    """Optuna, or a one-line error naming the extra that installs it."""
    global _OPTUNA
    if _OPTUNA is None:
        try:
            import optuna
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise UserError("remixup tune needs Optuna: pip install 'remixup[tune]'") from exc
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # not its INFO line per trial
        _OPTUNA = optuna
    return _OPTUNA


_OPTUNA: Any = None


@contextmanager
def _quiet_optuna() -> Iterator[Any]:
    """Optuna without its experimental-feature warnings (the heartbeat and the retry callback are marked so) and
    without its log of failed trials (a traceback per trial; the worker prints one line per trial itself)."""
    optuna = import_optuna()
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield optuna
    finally:
        optuna.logging.set_verbosity(level)


# -- settings -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ObjectiveSettings:
    """The objective: a ``val_*`` metric, maximised, averaged over ``seeds_per_trial`` training seeds."""

    metric: str = "val_balanced_acc"
    direction: str = "maximize"
    seeds_per_trial: int = 1


@dataclass(frozen=True)
class SamplerSettings:
    """``tpe`` or ``random``; ``seed`` is the base of every worker's seed. The TPE arguments are all passed
    explicitly (those Optuna 5 does not deprecate), so a change of Optuna's defaults cannot change a study."""

    name: str = "tpe"
    seed: int = 0
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = True
    group: bool = False
    constant_liar: bool = True


@dataclass(frozen=True)
class PrunerSettings:
    """``median``, ``hyperband`` or ``none``; ``warmup`` epochs are never pruned."""

    name: str = "median"
    warmup: int = 0
    n_startup_trials: int = 5
    max_resource: int = 1


_PARTS: dict[str, type] = {"objective": ObjectiveSettings, "sampler": SamplerSettings, "pruner": PrunerSettings}


@dataclass
class StudySettings:
    """Everything ``tune create`` fixed, as ``study.yaml`` holds it.

    Attributes:
        space: the search space (:func:`parse_space`). fixed: config values of every trial. enqueue: trials to run
            first. config: the whole base config (a :class:`~remixup.config.TrainConfig` as a dict).
        storage: ``journal`` or a database URL. heartbeat, grace: PostgreSQL heartbeat interval and the silence
            after which a running trial is failed (s). versions: remixup's and Optuna's at creation.
    """

    space: dict[str, dict[str, Any]]
    config: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    objective: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    pruner: PrunerSettings = field(default_factory=PrunerSettings)
    storage: str = "journal"
    heartbeat: int = 60
    grace: int = 180
    versions: dict[str, str] = field(default_factory=dict)

    COMPARED: ClassVar[tuple[str, ...]] = (  # what makes two studies different (the versions do not)
        "space",
        "fixed",
        "enqueue",
        "config",
        "objective",
        "sampler",
        "pruner",
        "storage",
    )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> StudySettings:
        """Read ``study.yaml``'s mapping.

        Raises:
            ConfigError: not a mapping, or a missing or unknown key.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or set(data) - names or {"space", "config"} - set(data):
            raise ConfigError(f"{source} is not a study's settings file (unknown or missing keys); recreate the study")
        values = dict(data)
        for key, kind in _PARTS.items():
            part = values.get(key, {})
            if not isinstance(part, dict) or set(part) - {f.name for f in dataclasses.fields(kind)}:
                raise ConfigError(f"{source}: unknown {key} setting(s) in {part!r}")
            values[key] = kind(**part)
        return cls(**values)

    def differences(self, other: StudySettings) -> list[str]:
        """The compared settings in which ``other`` differs."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [k for k in self.COMPARED if mine[k] != theirs[k]]


@dataclass
class Study:
    """An opened study folder: its settings and the Optuna study on its storage."""

    path: Path
    settings: StudySettings
    study: Any

    @property
    def space(self) -> dict[str, dict[str, Any]]:
        return dict(self.settings.space)

    @property
    def metric(self) -> str:
        return self.settings.objective.metric

    def base_config(self) -> Any:
        from remixup.config import TrainConfig

        return TrainConfig.from_dict(self.settings.config, source=str(self.path / SETTINGS_FILE))

    def trial_config(self, params: dict[str, Any], *, seed: int, out: Path, test: bool = False) -> Any:
        """The config of one trial's run: the base config, ``params``, ``seed`` and ``out``; ``test`` evaluates the
        test split too (``confirm``), else only the validation split (the search)."""
        from remixup.config import apply_override

        config = self.base_config()
        for key, value in params.items():
            apply_override(config, f"{key}={value}")
        config.run.seed, config.run.out, config.run.progress, config.run.eval_test = seed, str(out), False, test
        return config.validate()

    def trials(self, *states: str) -> list[Any]:
        optuna = import_optuna()
        wanted = tuple(getattr(optuna.trial.TrialState, s) for s in states) if states else None
        return list(self.study.get_trials(deepcopy=False, states=wanted))


def redact(url: str) -> str:
    """``url`` without its user and password."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def open_storage(path: Path, url: str, *, heartbeat: int = 60, grace: int = 180) -> Any:
    """The study's storage: ``journal`` (the file in the study folder), a PostgreSQL URL (heartbeat, a stale trial
    retried once, a connection per call) or an SQLite URL (one worker at a time). ``postgresql://`` opens through psycopg 3 (the
    ``tune`` extra installs it); ``postgresql+psycopg2://`` names the older driver.

    Raises:
        UserError: an unknown scheme, a missing driver, or a database that cannot be reached.
    """
    optuna = import_optuna()
    _check_storage_url(url)
    if url == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        file = str(path / JOURNAL_FILE)
        return optuna.storages.JournalStorage(JournalFileBackend(file, lock_obj=JournalFileOpenLock(file)))
    import sqlalchemy.exc
    import sqlalchemy.pool

    kwargs: dict[str, Any] = {}
    if url.startswith("postgresql"):
        # A connection per storage call, closed after it (no pool): a worker that trains for hours between calls
        # never finds a pooled connection dropped by the server or a firewall, and none outlives its storage.
        kwargs["engine_kwargs"] = {"poolclass": sqlalchemy.pool.NullPool, "connect_args": {"connect_timeout": 10}}
        kwargs.update(heartbeat_interval=heartbeat, grace_period=grace)
    try:
        with _quiet_optuna():
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1, inherit_intermediate_values=True)
            if "heartbeat_interval" in kwargs:
                kwargs["heartbeat_stale_trial_callback"] = retry
            return optuna.storages.RDBStorage(url, **kwargs)
    except ImportError as exc:
        raise UserError(f"cannot open the storage {redact(url)}: its database driver is missing ({exc}); "
                        "pip install 'remixup[tune]' installs psycopg for postgresql:// URLs") from exc  # fmt: skip
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot open the storage {redact(url)}: {first}") from exc


def _check_storage_url(url: str) -> None:
    if url != "journal" and not url.startswith(
        ("postgresql://", "postgresql+psycopg2://", "postgresql+psycopg://", "sqlite:///")
    ):
        raise UserError(f"unknown storage {redact(url)!r}: use `journal` (the default), postgresql://... or sqlite:///...")


def _settings_file(path: Path) -> Path:
    return Path(path) / SETTINGS_FILE


def read_settings(path: str | Path) -> StudySettings:
    """The settings of the study folder ``path``.

    Raises:
        UserError: no study there, or a settings file that is not a study's.
    """
    file = _settings_file(Path(path))
    if not file.is_file():
        raise UserError(f"{path} holds no study ({SETTINGS_FILE} is missing); create it with `remixup tune create`")
    return StudySettings.from_dict(read_yaml(file, "study settings"), str(file))


def load(path: str | Path) -> Study:
    """Open the study folder ``path`` made by :func:`create_study`.

    Raises:
        UserError: no study there, or its storage cannot be reached.
    """
    optuna = import_optuna()
    path = Path(path)
    settings = read_settings(path)
    storage = open_storage(path, settings.storage, heartbeat=settings.heartbeat, grace=settings.grace)
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage, pruner=make_pruner(settings.pruner),
                                  sampler=make_sampler(settings.sampler, settings.sampler.seed))  # fmt: skip
    except KeyError as exc:
        raise UserError(f"the storage of {path} holds no study {STUDY_NAME!r}; was it created with another --storage?") from exc
    return Study(path, settings, study)


def make_sampler(s: SamplerSettings, seed: int) -> Any:
    """The sampler of the study's settings, seeded with ``seed``; every argument that Optuna 5 does not deprecate is
    passed explicitly, so a change of its defaults cannot change a study."""
    optuna = import_optuna()
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(n_startup_trials=s.n_startup_trials, n_ei_candidates=s.n_ei_candidates,
                                          seed=seed, multivariate=s.multivariate, group=s.group,
                                          constant_liar=s.constant_liar, constraints_func=None)  # fmt: skip


def make_pruner(s: PrunerSettings) -> Any:
    optuna = import_optuna()
    if s.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=s.n_startup_trials, n_warmup_steps=s.warmup, interval_steps=1,
                                           n_min_trials=1)  # fmt: skip
    if s.name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, s.warmup), max_resource=s.max_resource, reduction_factor=3)
    return optuna.pruners.NopPruner()


def worker_seed(base: int, worker: int, trials: int) -> int:
    """A sampler seed from (base seed, worker index, trials in the study): distinct across workers and over a study's
    life (every proposal, a refused repeat too, adds a trial)."""
    import numpy as np

    return int(np.random.SeedSequence([base, worker, trials]).generate_state(1)[0])


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
        UserError: a bad space, objective or storage, a base config that cannot train (set up as ``train`` would,
            without training: data, validation split, model, method, loader), or a folder holding a different study.
    """
    from remixup import __version__
    from remixup.config import apply_override
    from remixup.evaluation import VAL_METRICS
    from remixup.methods import get_method

    optuna = import_optuna()
    path = Path(path)
    if not metric.startswith("val_") or metric[4:] not in VAL_METRICS:
        raise UserError(f"the objective must be a validation metric ({', '.join('val_' + m for m in VAL_METRICS)}); got "
                        f"{metric!r}: the test split is never searched on, `tune confirm` reports it")  # fmt: skip
    if seeds_per_trial < 1:
        raise UserError(f"--seeds-per-trial must be >= 1; got {seeds_per_trial}")
    _check_storage_url(storage)
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
    config.run.out, config.run.eval_test = str(path / "trials"), False
    config.validate()
    check_against_config(space, config)
    enqueue = raw.get("enqueue", [{k: v for k, v in PAPER_START.items() if k in space}])
    enqueue = [e for e in enqueue if e]
    for item in enqueue:
        if not isinstance(item, dict) or set(item) - set(space):
            raise ConfigError(f"{space_file}: each `enqueue` item maps keys of the space to values; got {item!r}")
    methods = [config.method.name] + (space["method.name"]["choices"] if "method.name" in space else [])
    deferral = space.get("schedule.deferral_epoch", {}).get("high", config.schedule.deferral_epoch)
    if any(get_method(m).deferred for m in methods) and deferral < config.run.epochs:
        warmup = max(warmup, int(deferral))  # DRW/DRS change the curve at the deferral epoch: never prune before it
    settings = StudySettings(
        space=space,
        fixed=fixed,
        enqueue=enqueue,
        config=config.to_dict(),
        objective=ObjectiveSettings(metric=metric, seeds_per_trial=seeds_per_trial),
        sampler=SamplerSettings(name=sampler, seed=sampler_seed, n_startup_trials=n_startup_trials),
        pruner=PrunerSettings(name=pruner, warmup=warmup, max_resource=config.run.epochs),
        storage=storage,
        heartbeat=heartbeat,
        grace=grace,
        versions={"remixup": __version__, "optuna": optuna.__version__},
    )
    file = _settings_file(path)
    if file.is_file():
        differ = read_settings(path).differences(settings)
        if differ:
            raise UserError(f"{path} holds a study created with a different {', '.join(differ)}; use a new folder")
        return load(path), False
    _check_trainable(config)
    path.mkdir(parents=True, exist_ok=True)
    store = open_storage(path, storage, heartbeat=heartbeat, grace=grace)
    try:
        study = optuna.create_study(study_name=STUDY_NAME, storage=store, direction="maximize")
    except optuna.exceptions.DuplicatedStudyError as exc:
        raise UserError(f"the storage {redact(storage)} already holds a study {STUDY_NAME!r}; use another database") from exc
    for item in enqueue:
        study.enqueue_trial(item, user_attrs={"enqueued": True})
    from remixup._files import atomic_write

    atomic_write(file, yaml.safe_dump(settings.to_dict(), sort_keys=False))
    return load(path), True


def _check_trainable(config: Any) -> None:
    """Refuse a study whose trials could not train (a class too small for the validation split, a batch larger than
    the training set, ...), before any trial runs: the base config is set up as ``train`` would, without training."""
    from remixup.engine import check_trainable

    try:
        check_trainable(config)
    except UserError as exc:
        raise UserError(f"the study's trials could not train: {exc}") from exc


# -- run: workers -------------------------------------------------------------------------------------------------
def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), ``None`` when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@contextmanager
def _file_lock(file: Path, *, wait: bool = True) -> Iterator[None]:
    import fcntl

    with open(file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        yield


def _retry(s: Study, number: int, *, max_retry: int | None) -> bool:
    """Fail the running trial ``number`` and enqueue it again through Optuna's retry callback (at most
    ``max_retry`` times in a row); ``False`` when another worker finished it first."""
    with _quiet_optuna() as optuna:
        try:
            frozen = s.study.tell(number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
            return False
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry, inherit_intermediate_values=True)(s.study, frozen)
    return True


def fail_dead_trials(s: Study) -> list[int]:
    """Fail the running trials whose worker process on this host is gone, retry each once; return their numbers.

    Optuna finds dead workers by their heartbeat, which only its RDB storage has: on the journal file a running
    trial records its host, process id and the process's start time instead (a reused process id has another).
    """
    host, failed = socket.gethostname(), []
    with _file_lock(s.path / ".dead-trials.lock"):  # one worker fails and retries a dead trial, not two
        for t in s.trials("RUNNING"):
            owner = t.user_attrs.get("worker")  # a retry starts with its original's, until its worker writes its own
            if (
                not owner
                or owner.get("trial") != t.number
                or owner["host"] != host
                or _proc_start(owner["pid"]) == owner["start"]
            ):
                continue
            if _retry(s, t.number, max_retry=1):
                failed.append(t.number)
    return failed


def fail_stale_trials(s: Study) -> None:
    """PostgreSQL: fail the trials whose heartbeat stopped and retry them once (Optuna's own check, which
    ``optimize`` runs before each trial; run here too so that a worker finds the budget's true state on start)."""
    with _quiet_optuna() as optuna:
        optuna.storages.fail_stale_trials(s.study)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(
        math.isclose(a[k], b[k], rel_tol=1e-12, abs_tol=1e-12) if isinstance(a[k], float) else a[k] == b[k] for k in a
    )


@contextmanager
def _sqlite_lock(s: Study) -> Iterator[None]:
    if not s.settings.storage.startswith("sqlite"):
        yield
        return
    try:
        with _file_lock(s.path / ".sqlite-worker.lock", wait=False):
            yield
    except BlockingIOError as exc:
        raise UserError("SQLite storage takes one worker at a time (parallel writers fail with 'database is locked'); "
                        "use the journal file or PostgreSQL for parallel workers") from exc  # fmt: skip


def _trial_folder(number: int, seed_index: int) -> str:
    """A trial's run folder for one seed, relative to the study folder (so that the folder can move)."""
    return f"trials/{number:04d}_seed{seed_index}"


def run_worker(path: str | Path, *, n_trials: int, timeout: float | None = None, worker: int | None = None,
               resume_trial: int | None = None, on_trial: Callable[[int | None], None] | None = None) -> int:  # fmt: skip
    """Run trials of the study at ``path`` until it holds ``n_trials`` finished (complete or pruned) ones, or
    ``timeout`` seconds have passed (no trial starts after that); return how many this worker finished. Under
    torchrun (WORLD_SIZE > 1) every rank calls this: rank 0 runs Optuna's loop and broadcasts each trial's parameters
    and each epoch's prune decision; the other ranks train their share of the same trial.

    Args:
        worker: this worker's index (default: the SLURM array task, else the process id); it seeds the sampler.
        resume_trial: a RUNNING trial of this worker's earlier life (a requeued SLURM job): it is failed and
            retried at once, and the retry (asked first, as WAITING trials are) resumes its run folders.
        on_trial: told the number of the trial being run (``None`` between trials), for checkpoint handlers.

    Raises:
        UserError: a trial hit one (its message is then the trial's user attribute ``error``; the trial is failed).
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
        if world > 1 and dist.get_rank() != 0:
            _follow()
            return 0
        if worker is None:
            worker = int(os.environ.get("SLURM_ARRAY_TASK_ID", os.getpid()))
        return _Worker(load(path), n_trials, worker, world, on_trial).run(timeout, resume_trial)
    finally:
        if owned and dist.is_initialized():
            dist.destroy_process_group()


class _Unrun(Exception):
    """A trial failed before it trained: beyond the budget, or a repeat of an earlier trial's parameters."""


class _Worker:
    """Rank 0's side of ``run_worker``: Optuna's ``optimize`` loop with this objective and these callbacks."""

    def __init__(self, s: Study, n_trials: int, index: int, world: int, on_trial: Callable[[int | None], None] | None) -> None:
        self.s, self.n_trials, self.index, self.world, self.on_trial = s, n_trials, index, world, on_trial
        self.ran, self.repeats = 0, 0

    def run(self, timeout: float | None, resume_trial: int | None) -> int:
        s = self.s
        with _sqlite_lock(s):
            if resume_trial is not None and resume_trial in [t.number for t in s.trials("RUNNING")]:
                _retry(s, resume_trial, max_retry=None)  # a requeue is no fault: retried as often as it happens
            self._find_dead()
            # MaxTrialsCallback stops the loop only after a trial: a worker started on a study that already
            # holds its trials (or whose last ones are running) must not ask for one
            if len(s.trials(*FINISHED, "RUNNING")) < self.n_trials:
                self._reseed()
                with _quiet_optuna() as optuna:
                    states = tuple(getattr(optuna.trial.TrialState, name) for name in FINISHED)
                    s.study.optimize(self.objective, timeout=timeout, catch=(_Unrun,),
                                     callbacks=[optuna.study.MaxTrialsCallback(self.n_trials, states=states), self.after_trial])  # fmt: skip
        if self.world > 1:  # the other ranks leave their loop (after an error they stop with this process: torchrun)
            _broadcast(None)
        return self.ran

    def _find_dead(self) -> bool:
        """Fail (and retry) the trials of dead workers; whether there were any."""
        running = len(self.s.trials("RUNNING"))
        if self.s.settings.storage == "journal":
            fail_dead_trials(self.s)
        elif self.s.settings.storage.startswith("postgresql"):
            fail_stale_trials(self.s)
        return len(self.s.trials("RUNNING")) < running

    def _reseed(self) -> None:
        # Optuna's samplers take a seed only when built: one seed for every worker would make them draw the same
        # trials, and a resumed study would replay its first ones. The seed moves with the number of trials.
        s = self.s
        s.study.sampler = make_sampler(s.settings.sampler, worker_seed(s.settings.sampler.seed, self.index, len(s.trials())))

    def after_trial(self, study: Any, frozen: Any) -> None:
        """A callback of ``optimize``: report the trial, find dead workers' trials, re-seed for the next proposal."""
        if frozen.state.name in FINISHED:
            self.ran += 1
            params = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in frozen.params.items())
            if frozen.state.name == "COMPLETE":
                print(f"trial {frozen.number} complete: {self.s.metric} {frozen.value:.2f}  {params}", flush=True)
            else:
                print(f"trial {frozen.number} pruned ({frozen.user_attrs.get('pruned_reason', '')}): {params}", flush=True)
        self._find_dead()
        self._reseed()

    def objective(self, trial: Any) -> float:
        s = self.s
        pid = os.getpid()
        owner = {"host": socket.gethostname(), "pid": pid, "start": _proc_start(pid), "index": self.index, "trial": trial.number}
        trial.set_user_attr("worker", owner)
        trials = s.trials()
        # Optuna counts trials only after they end (MaxTrialsCallback): with workers racing for the last trials,
        # a trial whose finished and earlier running trials already fill the budget stops here, unrun
        ahead = sum(t.state.name in FINISHED or (t.state.name == "RUNNING" and t.number < trial.number) for t in trials)
        if ahead >= self.n_trials:
            trial.set_user_attr("surplus", True)
            if not self._find_dead():  # else a dead worker's trial held the budget: its retry is asked next
                trial.study.stop()
            raise _Unrun("the study holds its trials")
        params = suggest(trial, s.space)
        # Optuna's samplers may propose a point again (TPE, a small categorical space): refused, asked again
        twin = next((t.number for t in trials if t.number != trial.number and t.state.name in (*FINISHED, "RUNNING", "WAITING")
                     and t.params and _same(t.params, params)), None)  # fmt: skip
        if twin is not None:
            trial.set_user_attr("duplicate_of", twin)
            self.repeats += 1
            if self.repeats >= MAX_REPEATS:
                print(f"remixup tune: {MAX_REPEATS} proposals in a row repeated earlier trials; the space looks exhausted")
                trial.study.stop()
            raise _Unrun(f"repeats trial {twin}")
        self.repeats = 0
        with _quiet_optuna() as optuna:  # a retry resumes the run folders of the trial it repeats
            frozen = next(t for t in trials if t.number == trial.number)
            first = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
        job = (str(s.path), s.settings.to_dict(), params, trial.number if first is None else first)
        trial.set_user_attr("run_folders", [_trial_folder(job[3], i) for i in range(s.settings.objective.seeds_per_trial)])
        if self.on_trial is not None:
            self.on_trial(trial.number)
        try:
            if self.world > 1:
                _broadcast(job)
            return _train_trial(*job, trial=trial, world=self.world)
        except UserError as exc:  # a diverged run is pruned in _train_trial; anything else is the user's to fix
            trial.set_user_attr("error", str(exc))
            raise UserError(f"trial {trial.number} failed: {exc}") from exc
        finally:
            if self.on_trial is not None:
                self.on_trial(None)


def _broadcast(job: Any) -> Any:
    import torch.distributed as dist

    box = [job]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _follow() -> None:
    """Ranks other than 0: train each trial rank 0 broadcasts, until it broadcasts ``None``."""
    import torch.distributed as dist

    optuna = import_optuna()
    while (job := _broadcast(None)) is not None:
        try:
            _train_trial(*job, trial=None, world=dist.get_world_size())
        except optuna.TrialPruned:
            pass


def _train_trial(path: str, settings: dict[str, Any], params: dict[str, Any], folder_number: int, *, trial: Any,
                 world: int) -> float:  # fmt: skip
    """Train a trial's seeds (every rank) and return the objective; rank 0 (``trial`` given) reports each epoch
    of the first seed to Optuna and broadcasts the prune decision.

    Raises:
        optuna.TrialPruned: the pruner stopped the trial, the training diverged, or the metric is not finite.
    """
    optuna = import_optuna()
    from remixup.engine import train

    s = Study(Path(path), StudySettings.from_dict(settings, path), None)
    metric, base = s.metric, s.base_config()

    def hook(epoch: int, row: dict[str, Any]) -> None:
        value, stop = row.get(metric), False
        if trial is not None and value is not None:
            if math.isfinite(value):
                trial.report(float(value), epoch)
                stop = trial.should_prune()
            else:
                stop = True
        if world > 1:
            stop = bool(_broadcast(stop))
        if stop:
            raise optuna.TrialPruned(f"pruned at epoch {epoch}")

    def pruned(reason: str) -> Exception:
        if trial is not None:
            trial.set_user_attr("pruned_reason", reason)
        return optuna.TrialPruned(reason)

    values: list[float] = []
    for i in range(s.settings.objective.seeds_per_trial):
        config = s.trial_config(params, seed=base.run.seed + i, out=s.path / _trial_folder(folder_number, i))
        try:
            summary = train(config, resume="auto", on_epoch=hook if i == 0 else None)
        except optuna.TrialPruned as exc:
            raise pruned(str(exc)) from exc
        except DivergedError as exc:
            raise pruned(" ".join(str(exc).split())) from exc
        value = summary.get(metric)
        if value is None or not math.isfinite(value):
            raise pruned(f"{metric} is {value}")
        values.append(float(value))
    if trial is not None:
        trial.set_user_attr("seed_values", values)
    return sum(values) / len(values)
