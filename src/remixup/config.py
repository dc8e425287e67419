"""One typed training configuration: dataclasses loaded from a YAML recipe, a YAML file and ``key=value`` overrides.

Resolution order (later wins)::

    dataclass defaults  <  recipe (recipes/<name>.yaml)  <  --config FILE  <  --epochs N (scales the schedule)
                        <  CLI flags (--dataset, --seed, ...)  <  key=value overrides

Every key is checked against the dataclass field types (``optim.lr=0.05`` is a float, ``run.amp=bf16`` a string,
``schedule.milestones=[30,60]`` a list of ints); an unknown key is rejected with the list of valid keys, and
:meth:`TrainConfig.validate` checks every range (κ ≥ 1, 0 ≤ τ ≤ 1, α > 0, ...) before any work starts.

**Scaling a recipe to fewer epochs.** ``with_epochs(config, N)`` maps a recipe of E epochs to N epochs so short runs
keep the schedule's shape: every epoch count e (warm-up length, learning-rate milestones, deferral epoch) becomes
``round(e · N / E)`` (halves round up). A milestone or deferral epoch that lies inside the original schedule
(1 ≤ e < E) is then clamped to [1, N − 1], so the last phase (e.g. the deferred re-weighting at a small learning rate)
still runs for at least one epoch whenever N ≥ 2. The mapping is monotone, so the order of milestones is kept.
Example: the ``ldam`` recipe (200 epochs; milestones 160, 180; deferral 160; warm-up 5) at N = 25 becomes
milestones 20, 23, deferral 20, warm-up 1; at N = 2 it becomes milestones 1, 1, deferral 1, warm-up 0.

Epochs count from 0. A milestone m means: from epoch m on, lr = base lr × the milestone's factor (``lr_factors``
are cumulative multipliers of the base lr, e.g. [0.01, 0.0001] for LDAM-DRW). The deferral epoch d means: deferred
re-weighting/re-sampling (DRW/DRS) is active from epoch d on. The warm-up is linear per epoch: epoch e < W trains at
base lr × (e + 1) / W.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from remixup._validation import check_choice, check_number
from remixup.errors import UserError

IMBALANCE_PROFILES = ("longtail", "step", "none")
SWITCHES = ("auto", "on", "off")
AMP_CHOICES = ("auto", "bf16", "off")
METHOD_REDUCTIONS = ("mean", "batchmean")  # the averaging choices of remixup.losses that a run may use


@dataclass
class DataConfig:
    """Which data, made imbalanced how.

    Attributes:
        dataset: a name of ``remixup.data.DATASETS`` (``cifar10``, ``cifar100``, ``digits``, ...).
        root: folder holding the dataset files.
        imbalance: ``longtail`` | ``step`` | ``none``.
        ratio: imbalance ratio ρ = n_max / n_min, ≥ 1.
        mu: share of minority classes for the step profile, in (0, 1).
        download: allow the opt-in download (with checksum verification).
        augment: batched random crop + flip for image data (normalisation is always applied).
        label_column: tables (``tabular:...``) only: the label column of a CSV/Parquet file ("" = a column called
            ``label``, else the last one).
        split_seed: tables only: seed of the stratified train/validation/test split (not the training seed).
        val_fraction, test_fraction: tables only: each class's share in the validation and the test split.
        class_policy: tables only: a class too small for every split is dropped (``drop``) or merged into
            ``other`` (``merge``), with a note either way.
    """

    dataset: str = "cifar10"
    root: str = "data"
    imbalance: str = "longtail"
    ratio: float = 100.0
    mu: float = 0.5
    download: bool = False
    augment: bool = True
    label_column: str = ""
    split_seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    class_policy: str = "drop"


@dataclass
class ModelConfig:
    """The network. ``name="auto"`` takes the dataset's default model (ResNet-32 for CIFAR).

    Attributes:
        name: a model of :data:`remixup.models.MODELS`, or ``auto``.
        classifier_bias: whether the final linear layer has a bias. ``False`` gives ``z = W f``, as in the public
            Remix reimplementation (``ntucllab/imbalanced-DL``); a bias is one place a long-tailed classifier stores
            the training label prior. LDAM's cosine classifier has no bias either way. Checkpoints record it, so
            ``eval``, ``--resume`` and ``--fork`` rebuild the same head.
    """

    name: str = "auto"
    classifier_bias: bool = True


@dataclass
class MethodConfig:
    """The method (see ``remixup methods``) and its re-balancing parameter.

    Attributes:
        name: a method name, e.g. ``remix-drw``.
        beta: β of the effective number used by RW/DRW class weights and RS/DRS sampling, in [0, 1).
        reduction: how a batch's (class-weighted) loss is averaged: ``mean`` divides ``Σ_n Σ_c w_c ỹ_nc ℓ_nc`` by
            ``Σ_n Σ_c w_c ỹ_nc`` (PyTorch's weighted mean for hard labels; SPEC §1), ``batchmean`` by the batch
            size B (the plain mean of much public mixup code; with RW/DRW it shrinks the loss by the batch-average
            class weight). Without class weights the two are equal. See :mod:`remixup.losses`.
    """

    name: str = "erm"
    beta: float = 0.9999
    reduction: str = "mean"


@dataclass
class OptimConfig:
    """SGD with momentum; ``batch_size`` is the global batch (split across DDP ranks)."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = False
    batch_size: int = 128


@dataclass
class ScheduleConfig:
    """Learning-rate schedule and deferral epoch (0-based epochs; see the module docstring)."""

    warmup_epochs: int = 5
    milestones: list[int] = field(default_factory=lambda: [150, 250])
    lr_factors: list[float] = field(default_factory=lambda: [0.1, 0.01])
    deferral_epoch: int = 250


@dataclass
class MixingConfig:
    """Mixup/CutMix/Manifold Mixup and the Remix label rule (SPEC §1).

    Attributes:
        alpha: Beta(α, α) concentration, > 0.
        kappa: κ ≥ 1, the class-size ratio that makes a pair eligible.
        tau: τ in [0, 1]; τ = 0 is the base mixing method.
        per_sample: one λx per sample instead of the paper's one per batch.
    """

    alpha: float = 1.0
    kappa: float = 3.0
    tau: float = 0.5
    per_sample: bool = False


@dataclass
class RunConfig:
    """How and where the run executes.

    Attributes:
        epochs: number of epochs.
        seed: training seed (initialisation, shuffling, augmentation, mixing).
        subset_seed: which samples the imbalance profile keeps (separate from ``seed``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        eval_every: evaluate every k epochs (and always after the last one).
        out: the run folder.
        amp: ``auto`` (bf16 autocast on CUDA, off on CPU), ``bf16`` or ``off``.
        channels_last: ``auto`` (on for image models), ``on`` or ``off``.
        progress: show a progress bar per epoch (only on a terminal).
        tensorboard: also log to TensorBoard when the ``tensorboard`` package is installed.
        threads: CPU threads for torch; 0 (auto) takes torch's default less the cores that other processes keep
            busy (1-minute load average), at least 1 (``remixup.engine.auto_threads``).
        eval_batch_size: batch size of evaluation; 0 (auto) takes 256 on the CPU (fastest of 128-1024 there,
            docs/performance.md) and 1024 on CUDA.
        workers: DataLoader worker processes for datasets read from image files (iNaturalist, image folders).
        compile: ``torch.compile`` the training forward/backward: ``auto`` (off: on the CPU it did not pay for its
            compile time, docs/performance.md; on CUDA not measured yet), ``on`` or ``off``.
        malloc: keep freed host memory for reuse instead of handing it back to the OS after every step (glibc's
            mmap and trim thresholds raised, process-wide): ``auto`` (on for CPU runs on Linux; a ResNet-32 step
            was 1.20x faster on 2 threads, benchmarks/bench_malloc.py), ``on`` or ``off``.
        keep_every: also keep the checkpoint of every k-th epoch as ``checkpoint_eNNN.pt`` (0: keep only the
            latest, ``checkpoint.pt``), e.g. to branch a run later with ``remixup train --fork``.
    """

    epochs: int = 300
    seed: int = 0
    subset_seed: int = 0
    device: str = "auto"
    eval_every: int = 10
    out: str = "runs/run"
    amp: str = "auto"
    channels_last: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    threads: int = 0
    eval_batch_size: int = 0
    workers: int = 4
    compile: str = "auto"
    malloc: str = "auto"
    keep_every: int = 0


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "method": MethodConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "mixing": MixingConfig,
    "run": RunConfig,
}


@dataclass
class TrainConfig:
    """The whole configuration of a training run; ``recipe`` records which recipe it started from.

    Build one with :func:`build_config` (recipe + file + overrides), :meth:`from_dict`, or directly::

        TrainConfig(data=DataConfig(dataset="digits"), method=MethodConfig(name="remix"), run=RunConfig(epochs=3))
    """

    recipe: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    run: RunConfig = field(default_factory=RunConfig)

    # -- conversion -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict (str, int, float, bool, lists): YAML- and ``weights_only``-safe."""
        return dataclasses.asdict(self)

    def to_yaml(self, header: str = "") -> str:
        """The config as YAML text, with ``header`` lines as comments on top."""
        lines = "".join(f"# {line}\n" for line in header.splitlines())
        return lines + yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrainConfig:
        """Build a config from a (partial) nested dict; unknown keys and wrongly typed values raise."""
        config = cls()
        merge_into(config, data, source=source)
        return config

    def flat(self) -> dict[str, Any]:
        """``{"section.key": value}`` for every field (the keys that ``key=value`` overrides accept)."""
        out: dict[str, Any] = {"recipe": self.recipe}
        for section in SECTIONS:
            for f in dataclasses.fields(getattr(self, section)):
                out[f"{section}.{f.name}"] = getattr(getattr(self, section), f.name)
        return out

    # -- validation -------------------------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Check every value's range and every name (method, dataset, model); return ``self``.

        Raises:
            ValueError / TypeError: one message naming the key, the allowed range and the value.
        """
        from remixup.methods import get_method

        d, m, o, s, x, r = self.data, self.method, self.optim, self.schedule, self.mixing, self.run
        get_method(m.name)
        _check_dataset(d.dataset)
        check_choice(d.imbalance, "data.imbalance", IMBALANCE_PROFILES)
        check_number(d.ratio, "data.ratio", low=1.0)
        check_number(d.mu, "data.mu", low=0.0, high=1.0, low_open=True, high_open=True)
        _check_model(self.model.name)
        check_number(m.beta, "method.beta", low=0.0, high=1.0, high_open=True)
        check_choice(m.reduction, "method.reduction", METHOD_REDUCTIONS)
        check_number(o.lr, "optim.lr", low=0.0, low_open=True)
        check_number(o.momentum, "optim.momentum", low=0.0, high=1.0, high_open=True)
        check_number(o.weight_decay, "optim.weight_decay", low=0.0)
        check_number(o.batch_size, "optim.batch_size", low=2, integer=True)
        check_number(s.warmup_epochs, "schedule.warmup_epochs", low=0, integer=True)
        check_number(s.deferral_epoch, "schedule.deferral_epoch", low=0, integer=True)
        if len(s.milestones) != len(s.lr_factors):
            raise ValueError(
                f"`schedule.milestones` and `schedule.lr_factors` must have the same length; "
                f"got {s.milestones} and {s.lr_factors}"
            )
        for i, mi in enumerate(s.milestones):
            check_number(mi, f"schedule.milestones[{i}]", low=0, integer=True)
        if list(s.milestones) != sorted(s.milestones):
            raise ValueError(f"`schedule.milestones` must be in increasing order; got {s.milestones}")
        for i, fi in enumerate(s.lr_factors):
            check_number(fi, f"schedule.lr_factors[{i}]", low=0.0, low_open=True)
        check_number(x.alpha, "mixing.alpha", low=0.0, low_open=True)
        check_number(x.kappa, "mixing.kappa", low=1.0)
        check_number(x.tau, "mixing.tau", low=0.0, high=1.0)
        check_number(r.epochs, "run.epochs", low=1, integer=True)
        check_number(r.seed, "run.seed", low=0, integer=True)
        check_number(r.subset_seed, "run.subset_seed", low=0, integer=True)
        check_number(r.eval_every, "run.eval_every", low=1, integer=True)
        check_number(r.threads, "run.threads", low=0, integer=True)
        check_number(r.eval_batch_size, "run.eval_batch_size", low=0, integer=True)
        check_number(r.workers, "run.workers", low=0, integer=True)
        check_number(r.keep_every, "run.keep_every", low=0, integer=True)
        check_choice(r.amp, "run.amp", AMP_CHOICES)
        check_choice(r.channels_last, "run.channels_last", SWITCHES)
        check_choice(r.compile, "run.compile", SWITCHES)
        check_choice(r.malloc, "run.malloc", SWITCHES)
        if r.device not in ("auto", "cpu", "cuda") and not (r.device.startswith("cuda:") and r.device[5:].isdigit()):
            raise ValueError(f"`run.device` must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {r.device!r}")
        if not r.out:
            raise ValueError("`run.out` must name an output folder; got ''")
        return self


def _check_dataset(name: str) -> None:
    try:
        from remixup.data import DATASETS
    except ImportError:  # the data package is optional for configuration alone
        return
    if name not in DATASETS and not (name.startswith("tabular:") and len(name) > len("tabular:")):
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(DATASETS)}, tabular:NAME, tabular:FILE.csv")


def _check_model(name: str) -> None:
    if name == "auto":
        return
    try:
        from remixup.models import MODELS
    except ImportError:
        return
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: auto, {', '.join(MODELS)}")


# -- typed assignment -------------------------------------------------------------------------------------------


def _field_types(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` as type ``tp`` (int, float, bool, str, list[int], list[float]) or raise TypeError."""
    origin = typing.get_origin(tp)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"`{key}` must be a list of {inner.__name__}; got {value!r}")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"`{key}` must be true or false; got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"`{key}` must be an integer; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"`{key}` must be a number; got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"`{key}` must be a string; got {value!r}")
        return value
    raise AssertionError(f"unsupported config type {tp!r} for {key}")  # pragma: no cover - internal invariant


def valid_keys() -> list[str]:
    """Every ``section.key`` that overrides accept."""
    return [key for key in TrainConfig().flat() if key != "recipe"]


def _unknown(key: str) -> ValueError:
    return ValueError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")


def merge_into(config: TrainConfig, data: dict[str, Any], *, source: str = "config") -> None:
    """Assign a nested dict ``{"section": {"key": value}}`` onto ``config`` in place, type-checked."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise TypeError(f"{source} must be a mapping of sections (data, model, method, ...); got {type(data).__name__}")
    for name, values in data.items():
        if name == "recipe":
            config.recipe = _coerce(values, str, "recipe")
            continue
        if name not in SECTIONS:
            raise _unknown(str(name))
        if not isinstance(values, dict):
            raise TypeError(f"`{name}` in {source} must be a mapping of keys; got {values!r}")
        section = getattr(config, name)
        types = _field_types(section)
        for key, value in values.items():
            if key not in types:
                raise _unknown(f"{name}.{key}")
            setattr(section, key, _coerce(value, types[key], f"{name}.{key}"))


def apply_override(config: TrainConfig, item: str) -> None:
    """Apply one ``section.key=value`` override in place; the value is parsed as YAML (``[30, 60]``, ``true``, ``0.05``).

    String fields take the text as written (``run.out=2024`` is the folder "2024").
    """
    if "=" not in item:
        raise ValueError(f"an override must look like key=value (e.g. mixing.kappa=2); got {item!r}")
    key, text = (part.strip() for part in item.split("=", 1))
    if key.count(".") != 1:
        raise _unknown(key)
    name, sub = key.split(".")
    if name not in SECTIONS:
        raise _unknown(key)
    section = getattr(config, name)
    types = _field_types(section)
    if sub not in types:
        raise _unknown(key)
    if types[sub] is str:
        value: Any = text
    else:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"cannot read the value of override {key!r}: {text!r}") from exc
    setattr(section, sub, _coerce(value, types[sub], key))


# -- recipes and files -----------------------------------------------------------------------------------------


def recipe_names() -> list[str]:
    """Names of the recipes shipped in ``remixup/recipes``."""
    folder = resources.files("remixup") / "recipes"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(path: Path | Any, what: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must be a mapping of sections (data, model, method, ...)")
    return data


def load_recipe(name: str) -> dict[str, Any]:
    """The nested dict of a recipe given by name (``paper``, ``ldam``, ``inat90``, ``inat200``) or a YAML path."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        data = _read_yaml(Path(name), "recipe file")
    else:
        names = recipe_names()
        if name not in names:
            raise ValueError(f"unknown recipe {name!r}; valid recipes: {', '.join(names)}")
        data = _read_yaml(resources.files("remixup") / "recipes" / f"{name}.yaml", "recipe")
    data.setdefault("recipe", name)
    return data


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    """A copy of ``config`` scaled to ``epochs`` epochs (milestones, warm-up, deferral; see the module docstring)."""
    epochs = int(check_number(epochs, "epochs", low=1, integer=True))
    old = config.run.epochs
    new = copy.deepcopy(config)
    new.run.epochs = epochs
    if epochs == old:
        return new
    factor = epochs / old

    def inside(e: int) -> int:
        scaled = _round_half_up(e * factor)
        if 1 <= e < old:  # keep a phase that existed in the recipe inside the short run
            scaled = min(max(scaled, 1), max(epochs - 1, 1))
        return scaled

    s = new.schedule
    s.warmup_epochs = _round_half_up(s.warmup_epochs * factor)
    s.milestones = [inside(m) for m in s.milestones]
    s.deferral_epoch = inside(s.deferral_epoch)
    return new


def build_config(
    recipe: str | None = "paper",
    *,
    config_file: str | Path | None = None,
    epochs: int | None = None,
    values: dict[str, Any] | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    validate: bool = True,
    base: dict[str, Any] | None = None,
) -> TrainConfig:
    """Resolve a config: recipe, then ``config_file``, then ``epochs`` scaling, then ``values``, then ``overrides``.

    Args:
        recipe: recipe name or YAML path; ``None`` takes the one named in ``config_file`` (or the defaults).
        config_file: a YAML file with any of the sections (it may name a ``recipe``).
        epochs: scale the schedule to this many epochs (:func:`with_epochs`).
        values: ``{"section.key": value}`` from CLI flags (``None`` values are skipped).
        overrides: ``"section.key=value"`` strings.
        validate: run :meth:`TrainConfig.validate` at the end.
        base: a resolved config as a dict (e.g. a checkpoint's ``config``) to start from instead of ``recipe``.

    Raises:
        ValueError / TypeError / UserError: unknown recipe or key, wrong type, out-of-range value, unreadable file.
    """
    file_data = _read_yaml(Path(config_file), "config file") if config_file is not None else {}
    recipe = recipe or file_data.get("recipe")
    if base is not None:
        config, recipe = TrainConfig.from_dict(base, source="the base config"), None
    else:
        config = TrainConfig.from_dict(load_recipe(recipe), source=f"recipe {recipe}") if recipe else TrainConfig()
    merge_into(config, file_data, source=f"config file {config_file}")
    if recipe:
        config.recipe = recipe
    if epochs is not None:
        config = with_epochs(config, epochs)
    for key, value in (values or {}).items():
        if value is not None:
            name, sub = key.split(".")
            section = getattr(config, name)
            setattr(section, sub, _coerce(value, _field_types(section)[sub], key))
    for item in overrides:
        apply_override(config, item)
    return config.validate() if validate else config
