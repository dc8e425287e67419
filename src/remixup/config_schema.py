"""The typed training configuration: the section dataclasses, :class:`TrainConfig` and its validation, and the
coercion of values to the fields' types. Building a config from recipes, files and overrides is :mod:`remixup.config`.

**Booleans and switches.** A boolean key takes ``true``/``false``, ``on``/``off``, ``yes``/``no`` or ``1``/``0``
(any case). The switches ``run.channels_last``, ``run.compile`` and ``run.malloc`` take the same words plus
``auto`` and are stored as ``on``/``off``/``auto``; ``run.amp`` takes ``auto``, ``bf16``, ``fp16`` or ``off`` (``off``
also as ``false``/``no``/``0``; ``on``/``true``/``yes``/``1`` mean ``bf16``).

Epochs count from 0. A milestone m means: from epoch m on, lr = base lr × the milestone's factor (``lr_factors``
are cumulative multipliers of the base lr, e.g. [0.01, 0.0001] for LDAM-DRW). The deferral epoch d means: deferred
re-weighting/re-sampling (DRW/DRS) is active from epoch d on. The warm-up is linear per epoch: epoch e < W trains at
base lr × (e + 1) / W.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from remixup._validation import check_choice, check_number, closest, suggest
from remixup.errors import ConfigError, InvalidTypeError

if TYPE_CHECKING:
    from remixup.methods import Method

IMBALANCE_PROFILES = ("longtail", "step", "none")
SWITCHES = ("auto", "on", "off")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
TRUE_WORDS = ("true", "on", "yes", "1")
FALSE_WORDS = ("false", "off", "no", "0")
SWITCH_KEYS = ("run.channels_last", "run.compile", "run.malloc")  # str keys with auto/on/off values
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
        val_fraction: share of each class held out of the (imbalanced) training split as a validation split,
            in [0, 1); 0 (the default) holds out nothing. Its metrics are logged as ``val_*``; the test split
            stays untouched (what ``remixup tune`` selects on).
        val_seed: seed of the validation split's per-class choice (independent of the other seeds).
        val_min_per_class: at least this many validation samples per class (when ``val_fraction`` > 0).
        label_column: tables (``tabular:...``) only: the label column of a CSV/Parquet file ("" = a column called
            ``label``, else the last one).
        split_seed: tables only: seed of the stratified train/validation/test split of the table (not the training
            seed).
        table_val_fraction, table_test_fraction: tables only: each class's share in the table's validation and
            test split.
        class_policy: tables only: a class too small for every split is dropped (``drop``) or merged into
            ``other`` (``merge``), with a note either way.
        indices: a subset file written by ``remixup data --export-indices``: train on exactly its samples of the
            training split (checked against the data's SHA-256 and the file's class counts) instead of the subset
            ``imbalance``/``ratio``/``run.subset_seed`` choose; ``""`` (the default): the profile's subset.
        image_size: image files only (``imagefolder``, ``inat2018``, ``imagenet_lt``, ``places_lt``): side in pixels
            of the square crop the network sees, in training (random resized crop) and evaluation (resize to
            ``image_size · 256/224``, centre crop); 0 (the default): the data set's own, 224.
    """

    dataset: str = "cifar10"
    root: str = "data"
    imbalance: str = "longtail"
    ratio: float = 100.0
    mu: float = 0.5
    download: bool = False
    augment: bool = True
    val_fraction: float = 0.0
    val_seed: int = 0
    val_min_per_class: int = 1
    label_column: str = ""
    split_seed: int = 0
    table_val_fraction: float = 0.15
    table_test_fraction: float = 0.25
    class_policy: str = "drop"
    indices: str = ""
    image_size: int = 0

    def table_options(self) -> dict[str, Any]:
        """The keyword arguments a ``tabular:...`` dataset takes in :func:`remixup.data.load_dataset`."""
        return {"label_column": self.label_column, "split_seed": self.split_seed, "val_fraction": self.table_val_fraction,
                "test_fraction": self.table_test_fraction, "class_policy": self.class_policy}  # fmt: skip


@dataclass
class ModelConfig:
    """The network. ``name="auto"`` takes the dataset's default model (ResNet-32 for CIFAR).

    Attributes:
        name: a model of :data:`remixup.models.MODELS`, or ``auto``.
        classifier_bias: whether the final linear layer has a bias. ``False`` gives ``z = W f``, as in the public
            Remix reimplementation (``ntucllab/imbalanced-DL``); a bias is one place a long-tailed classifier stores
            the training label prior. LDAM's cosine classifier has no bias either way. Checkpoints record it, so
            ``eval``, ``--resume`` and ``--fork`` rebuild the same head.
        sync_bn: under DDP, normalise BatchNorm layers with the statistics of the whole global batch
            (``torch.nn.SyncBatchNorm``, CUDA only) instead of each process's share; no effect in one process.
    """

    name: str = "auto"
    classifier_bias: bool = True
    sync_bn: bool = False


@dataclass
class MethodConfig:
    """The method (see ``remixup methods``) and its re-balancing parameter.

    Attributes:
        name: a method name, e.g. ``remix-drw``.
        beta: β of the effective number used by RW/DRW class weights and RS/DRS sampling, in [0, 1).
        reduction: how a batch's (class-weighted) loss is averaged: ``mean`` divides ``Σ_n Σ_c w_c ỹ_nc ℓ_nc`` by
            ``Σ_n Σ_c w_c ỹ_nc`` (PyTorch's weighted mean for hard labels), ``batchmean`` by the batch
            size B (the plain mean of much public mixup code; with RW/DRW it shrinks the loss by the batch-average
            class weight). Without class weights the two are equal. See :mod:`remixup.losses`.
    """

    name: str = "erm"
    beta: float = 0.9999
    reduction: str = "mean"


@dataclass
class OptimConfig:
    """SGD with momentum.

    Attributes:
        lr: base learning rate, > 0 (the schedule multiplies it).
        momentum: SGD momentum, in [0, 1).
        weight_decay: L2 weight decay, >= 0.
        nesterov: Nesterov momentum.
        batch_size: the global batch size (split across DDP ranks), >= 2.
        sam_rho: sharpness-aware minimisation's radius ρ ≥ 0 (0: off, plain SGD). Each step then takes two forward and
            backward passes on the same mixed batch (:mod:`remixup.sam`); 0.05 is SAM's usual value, 0.5–2 ASAM's.
        sam_adaptive: ASAM (the scale-invariant SAM) instead of SAM, when ``sam_rho`` > 0.
    """

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 2e-4
    nesterov: bool = False
    batch_size: int = 128
    sam_rho: float = 0.0
    sam_adaptive: bool = False


@dataclass
class ScheduleConfig:
    """Learning-rate schedule and deferral epoch (0-based epochs; see the module docstring).

    Attributes:
        warmup_epochs: linear warm-up length in epochs (epoch e < W trains at lr × (e + 1) / W).
        milestones: epochs from which the learning rate is lr × the matching ``lr_factors`` entry, increasing.
        lr_factors: cumulative multipliers of the base lr, one per milestone.
        deferral_epoch: the epoch from which DRW/DRS methods re-weight or re-sample; inside the run for them.
    """

    warmup_epochs: int = 5
    milestones: list[int] = field(default_factory=lambda: [150, 250])
    lr_factors: list[float] = field(default_factory=lambda: [0.1, 0.01])
    deferral_epoch: int = 250


@dataclass
class MixingConfig:
    """Mixup/CutMix/Manifold Mixup and the Remix label rule.

    Attributes:
        alpha: Beta(α, α) concentration, > 0.
        kappa: κ ≥ 1, the class-size ratio that makes a pair eligible.
        tau: τ in [0, 1]; τ = 0 is the base mixing method.
        per_sample: one λx per sample instead of the paper's one per batch.
        partner: who is mixed with whom (docs/family.md): ``auto`` (the method's: a permutation of the batch for
            Mixup/Remix/MAMix, ``class-weighted`` for CMO and Balanced-MixUp, ``in-batch`` for UniMix),
            ``permutation``, ``class-weighted`` or ``in-batch``; any method with Mixup or CutMix takes any partner.
        partner_exponent: e of the partner's sample weights n_y^e (``null``: −1 for class-weighted, i.e.
            class-balanced as CMO's ``weighted_alpha = 1``; −0.5 for in-batch, UniMix's CIFAR-10 value).
        prob: probability that a batch is mixed (``null``: the method's; CMO 0.5, the others 1).
        skip_first: epochs without mixing at the start (``null``: the method's; CMO 4, i.e. epochs 0–3).
        skip_last: epochs without mixing at the end (``null``: the method's; CMO 3).
        unimix_alpha: α of UniMix's ξ ~ Beta(α, α) (0.8, the authors' configs).
        unimix_wrap: how UniMix's λ = n_j/(n_i+n_j) + ξ returns into [0, 1]: ``wrap`` (the authors' code: minus
            1 above 1) or ``clip``.
        balanced_alpha: α of Balanced-MixUp's partner share λ ~ Beta(α, 1) (0.2; the paper uses 0.1–0.3).
        mamix_exponent: f of MAMix's k = n^f (−0.25, the authors' configs).
    """

    alpha: float = 1.0
    kappa: float = 3.0
    tau: float = 0.5
    per_sample: bool = False
    partner: str = "auto"
    partner_exponent: float | None = None
    prob: float | None = None
    skip_first: int | None = None
    skip_last: int | None = None
    unimix_alpha: float = 0.8
    unimix_wrap: str = "wrap"
    balanced_alpha: float = 0.2
    mamix_exponent: float = -0.25


@dataclass
class RunConfig:
    """How and where the run executes.

    Attributes:
        epochs: number of epochs.
        seed: training seed (initialisation, shuffling, augmentation, mixing).
        subset_seed: which samples the imbalance profile keeps (separate from ``seed``).
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        eval_every: evaluate every k epochs (and always after the last one).
        eval_test: evaluate the test split; ``false`` evaluates the validation split only (``remixup tune``'s
            trials: a search never sees the test split), which then needs ``data.val_fraction`` > 0.
        out: the run folder.
        amp: ``auto`` (bf16 autocast on CUDA, off on CPU), ``bf16``, ``fp16`` (CUDA only: fp16 autocast with a
            gradient scaler) or ``off``.
        channels_last: ``auto`` (on for image models), ``on`` or ``off``.
        progress: show a progress bar per epoch (only on a terminal).
        tensorboard: also log to TensorBoard; without the ``tensorboard`` package (``pip install
            'remixup[tensorboard]'``) it is off, with a one-line note.
        threads: CPU threads for torch; 0 (auto) takes torch's default less the cores that other processes keep
            busy (1-minute load average), at least 1 (``remixup.engine.auto_threads``).
        eval_batch_size: batch size of evaluation; 0 (auto) takes 256 on the CPU (fastest of 128-1024 there,
            docs/performance.md) and 1024 on CUDA.
        workers: DataLoader worker processes for datasets read from image files (iNaturalist, image folders).
        compile: ``torch.compile`` the training forward/backward: ``auto`` (off: on the CPU it did not pay for its
            compile time, docs/performance.md; on CUDA not measured yet), ``on`` or ``off``.
        compile_backend: the ``torch.compile`` backend of ``run.compile=on``: ``inductor`` (default, generates
            kernels) or another registered backend, e.g. ``eager`` (traces the step without generating code).
        malloc: keep freed host memory for reuse instead of handing it back to the OS after every step (glibc's
            mmap and trim thresholds raised, process-wide): ``auto`` (on for CPU runs on Linux; a ResNet-32 step
            was 1.20x faster on 2 threads, benchmarks/bench_malloc.py), ``on`` or ``off``.
        keep_every: also keep the checkpoint of every k-th epoch as ``checkpoint_eNNN.pt`` (0: keep only the
            latest, ``checkpoint.pt``), e.g. to branch a run later with ``remixup train --fork``.
        checkpoint_every: write ``checkpoint.pt`` after every k-th epoch, and always after an evaluated epoch, a
            kept one (``keep_every``) and the last (1: after every epoch). A killed run resumes from the latest
            checkpoint, bit-identically; a larger k saves the time of writing it, which dominates short epochs.
    """

    epochs: int = 300
    seed: int = 0
    subset_seed: int = 0
    device: str = "auto"
    eval_every: int = 10
    eval_test: bool = True
    out: str = "runs/run"
    amp: str = "auto"
    channels_last: str = "auto"
    progress: bool = True
    tensorboard: bool = True
    threads: int = 0
    eval_batch_size: int = 0
    workers: int = 4
    compile: str = "auto"
    compile_backend: str = "inductor"
    malloc: str = "auto"
    keep_every: int = 0
    checkpoint_every: int = 1


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

    def effective_method(self) -> Method:
        """The method this config trains: the registry entry of ``method.name`` with the ``mixing.*`` overrides of
        its fields applied (``mixing.partner`` unless ``auto``, ``mixing.prob``, ``mixing.skip_first``,
        ``mixing.skip_last`` unless null). Resolved once per run: the engine keeps it, writes it to
        ``summary.json``, and the model, loss, mixing and balancing are built from it alone."""
        from remixup.methods import get_method

        method, x = get_method(self.method.name), self.mixing
        overrides: dict[str, Any] = {} if x.partner == "auto" else {"partner": x.partner}
        overrides.update({k: getattr(x, k) for k in ("prob", "skip_first", "skip_last") if getattr(x, k) is not None})
        return dataclasses.replace(method, **overrides) if overrides else method

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
        check_number(d.val_fraction, "data.val_fraction", low=0.0, high=1.0, high_open=True)
        check_number(d.val_seed, "data.val_seed", low=0, integer=True)
        check_number(d.val_min_per_class, "data.val_min_per_class", low=1, integer=True)
        check_number(d.image_size, "data.image_size", low=0, integer=True)
        _check_model(self.model.name)
        check_number(m.beta, "method.beta", low=0.0, high=1.0, high_open=True)
        check_choice(m.reduction, "method.reduction", METHOD_REDUCTIONS)
        check_number(o.lr, "optim.lr", low=0.0, low_open=True)
        check_number(o.momentum, "optim.momentum", low=0.0, high=1.0, high_open=True)
        check_number(o.weight_decay, "optim.weight_decay", low=0.0)
        check_number(o.batch_size, "optim.batch_size", low=2, integer=True)
        if d.indices and not Path(d.indices).is_file():
            raise ConfigError(f"data.indices={d.indices}: no such file; write one with remixup data --export-indices FILE")
        check_number(o.sam_rho, "optim.sam_rho", low=0.0)
        if o.sam_rho > 0 and r.amp == "fp16":
            raise ConfigError("optim.sam_rho > 0 does not support run.amp=fp16 (a gradient scaler between the two passes); "
                              "use run.amp=bf16 or off")  # fmt: skip
        check_number(s.warmup_epochs, "schedule.warmup_epochs", low=0, integer=True)
        check_number(s.deferral_epoch, "schedule.deferral_epoch", low=0, integer=True)
        if len(s.milestones) != len(s.lr_factors):
            raise ConfigError(
                f"`schedule.milestones` and `schedule.lr_factors` must have the same length; "
                f"got {s.milestones} and {s.lr_factors}"
            )
        for i, mi in enumerate(s.milestones):
            check_number(mi, f"schedule.milestones[{i}]", low=0, integer=True)
        if list(s.milestones) != sorted(s.milestones):
            raise ConfigError(f"`schedule.milestones` must be in increasing order; got {s.milestones}")
        for i, fi in enumerate(s.lr_factors):
            check_number(fi, f"schedule.lr_factors[{i}]", low=0.0, low_open=True)
        check_number(x.alpha, "mixing.alpha", low=0.0, low_open=True)
        check_number(x.kappa, "mixing.kappa", low=1.0)
        check_number(x.tau, "mixing.tau", low=0.0, high=1.0)
        check_choice(x.partner, "mixing.partner", ("auto", "permutation", "class-weighted", "in-batch"))
        if x.partner_exponent is not None:
            check_number(x.partner_exponent, "mixing.partner_exponent", low=-10.0, high=10.0)
        if x.prob is not None:
            check_number(x.prob, "mixing.prob", low=0.0, high=1.0)
        for key in ("skip_first", "skip_last"):
            if getattr(x, key) is not None:
                check_number(getattr(x, key), f"mixing.{key}", low=0, integer=True)
        check_number(x.unimix_alpha, "mixing.unimix_alpha", low=0.0, low_open=True)
        check_choice(x.unimix_wrap, "mixing.unimix_wrap", ("wrap", "clip"))
        check_number(x.balanced_alpha, "mixing.balanced_alpha", low=0.0, low_open=True)
        check_number(x.mamix_exponent, "mixing.mamix_exponent", low=-10.0, high=10.0)
        check_number(r.epochs, "run.epochs", low=1, integer=True)
        check_number(r.seed, "run.seed", low=0, integer=True)
        check_number(r.subset_seed, "run.subset_seed", low=0, integer=True)
        check_number(r.eval_every, "run.eval_every", low=1, integer=True)
        check_number(r.threads, "run.threads", low=0, integer=True)
        check_number(r.eval_batch_size, "run.eval_batch_size", low=0, integer=True)
        check_number(r.workers, "run.workers", low=0, integer=True)
        check_number(r.keep_every, "run.keep_every", low=0, integer=True)
        check_number(r.checkpoint_every, "run.checkpoint_every", low=1, integer=True)
        check_choice(r.amp, "run.amp", AMP_CHOICES)
        check_choice(r.channels_last, "run.channels_last", SWITCHES)
        check_choice(r.compile, "run.compile", SWITCHES)
        check_choice(r.malloc, "run.malloc", SWITCHES)
        if r.device not in ("auto", "cpu", "cuda") and not (r.device.startswith("cuda:") and r.device[5:].isdigit()):
            raise ConfigError(f"`run.device` must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {r.device!r}")
        if not r.out:
            raise ConfigError("`run.out` must name an output folder; got ''")
        self._check_before_training()
        return self

    def _check_before_training(self) -> None:
        """What would otherwise fail, or silently do nothing, only after the run started."""
        method, d, r = self.effective_method(), self.data, self.run
        if method.deferred and not 0 <= self.schedule.deferral_epoch < r.epochs:
            raise ConfigError(
                f"`schedule.deferral_epoch` is {self.schedule.deferral_epoch} but the run has epochs 0-{r.epochs - 1}: "
                f"{method.name} would never start its deferred re-balancing; set schedule.deferral_epoch below "
                f"run.epochs (--epochs N scales a recipe's deferral epoch with it)"
            )
        x = self.mixing
        first = method.skip_first if x.skip_first is None else x.skip_first
        last = method.skip_last if x.skip_last is None else x.skip_last
        if method.mixes and (first or last) and first >= r.epochs - last:
            raise ConfigError(
                f"{method.name} mixes only in epochs {first} to run.epochs - {last + 1} (mixing.skip_first={first}, "
                f"mixing.skip_last={last}) but the run has epochs 0-{r.epochs - 1}: it would never mix; train more than "
                f"{first + last} epochs or lower mixing.skip_first / mixing.skip_last"
            )
        kind = _data_kind(d.dataset, d.root)
        if method.mixer == "cutmix" and kind == "vector":
            raise ConfigError(f"method {method.name} cuts and pastes image patches (CutMix) but {d.dataset!r} holds "
                              "vectors; use a Mixup-based method (e.g. remix) for vector data")  # fmt: skip
        if d.download and d.dataset not in ("cifar10", "cifar100"):
            raise ConfigError(f"`data.download` works for cifar10 and cifar100 only; {d.dataset!r} must be on disk")
        if r.amp == "fp16" and (r.device == "cpu" or (r.device == "auto" and not _cuda_available())):
            raise ConfigError("run.amp=fp16 needs a CUDA device (fp16 autocast with a gradient scaler); "
                              "on the CPU use run.amp=bf16 or run.amp=off")  # fmt: skip
        if not r.eval_test and d.val_fraction == 0:
            raise ConfigError("run.eval_test=false needs a validation split (data.val_fraction > 0); without one the run "
                              "would evaluate nothing")  # fmt: skip
        if r.compile == "on" and method.mixer == "manifold":
            raise ConfigError("run.compile=on does not support manifold mixing (it mixes in forward hooks); use run.compile=off")
        if r.compile == "on":
            import torch

            check_choice(r.compile_backend, "run.compile_backend", torch.compiler.list_backends(exclude_tags=()))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _data_kind(dataset: str, root: str) -> str | None:
    """``"vector"`` or an image kind of the registry; an npz file is looked into (the header of ``x_train`` only).
    ``None`` when it cannot be told before loading (a missing or unreadable file: loading reports it)."""
    from remixup.data import DATASETS

    if dataset.startswith("tabular:"):  # a table is rows of features
        return "vector"
    spec = DATASETS[dataset]
    if dataset != "npz":
        return spec.kind
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(root) as archive, archive.open("x_train.npy") as fh:
            fmt = np.lib.format
            version = fmt.read_magic(fh)
            shape = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(fh)[0]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
    return "vector" if len(shape) == 2 else spec.kind


TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def _check_dataset(name: str) -> None:
    from remixup.data import DATASETS

    if name not in DATASETS and not name.startswith("tabular:") and name.lower().endswith(TABLE_SUFFIXES):
        raise ConfigError(f"unknown dataset {name!r}; a table file is read as --dataset tabular:{name}")
    if name not in DATASETS and not (name.startswith("tabular:") and len(name) > len("tabular:")):
        raise ConfigError(
            f"unknown dataset {name!r}{suggest(name, DATASETS)} (valid datasets: {', '.join(DATASETS)}, "
            "tabular:NAME, tabular:FILE.csv)"
        )


def _check_model(name: str) -> None:
    if name == "auto":
        return
    from remixup.models import MODELS

    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}{suggest(name, MODELS)} (valid models: auto, {', '.join(MODELS)})")


# -- typed assignment -------------------------------------------------------------------------------------------


def field_types(section: Any) -> dict[str, Any]:
    """The annotated type of every field of the config section ``section`` (a dataclass instance)."""
    return typing.get_type_hints(type(section))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` as type ``tp`` (int, float, bool, str, list[int], list[float]) or raise InvalidTypeError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):  # an optional key: null or T
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, inner, key)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise InvalidTypeError(f"`{key}` must be a list of {inner.__name__}; got {value!r}")
        return [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        word = str(value).strip().lower() if isinstance(value, (str, int)) else None
        if isinstance(value, bool):
            return value
        if word in TRUE_WORDS or word in FALSE_WORDS:
            return word in TRUE_WORDS
        raise InvalidTypeError(f"`{key}` must be true or false (also on/off, yes/no, 1/0); got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTypeError(f"`{key}` must be an integer; got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidTypeError(f"`{key}` must be a number; got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise InvalidTypeError(f"`{key}` must be a string; got {value!r}")
        return value
    raise AssertionError(f"unsupported config type {tp!r} for {key}")  # pragma: no cover - internal invariant


def _switch(value: Any, key: str) -> Any:
    """A switch key's value in its stored spelling: booleans and their words become ``on``/``off`` (``run.amp``:
    ``bf16``/``off``); anything else is returned as it is, for :meth:`TrainConfig.validate` to judge."""
    if key not in (*SWITCH_KEYS, "run.amp"):
        return value
    word = str(value).strip().lower() if isinstance(value, (str, int, bool)) else None
    if isinstance(value, bool):
        word = "true" if value else "false"
    if word in TRUE_WORDS:
        return "bf16" if key == "run.amp" else "on"
    if word in FALSE_WORDS:
        return "off"
    return word if word in (*SWITCHES, *AMP_CHOICES) else value


def assign_value(section: Any, name: str, sub: str, value: Any) -> None:
    """Set ``name.sub`` on the config section ``section``, type-checked (switches normalised first)."""
    key = f"{name}.{sub}"
    tp = field_types(section)[sub]
    value = _switch(value, key)
    setattr(section, sub, _coerce(value, tp, key))


def valid_keys() -> list[str]:
    """Every ``section.key`` that overrides accept."""
    return [key for key in TrainConfig().flat() if key != "recipe"]


def unknown_key(key: str) -> ConfigError:
    """The error for an override or YAML key ``key`` that no section has, naming the closest valid key."""
    keys = valid_keys()
    close = closest(key, keys)
    if close is None and "." not in key:  # a bare name (``kappa``): the key of that name in its section
        by_name = {k.split(".", 1)[1]: k for k in keys}
        name = closest(key, by_name)
        close = by_name[name] if name else None
    hint = f"; did you mean {close!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint} (`remixup train --keys` lists all {len(keys)} keys)")


def merge_into(config: TrainConfig, data: dict[str, Any], *, source: str = "config") -> None:
    """Assign a nested dict ``{"section": {"key": value}}`` onto ``config`` in place, type-checked."""
    if data is None:
        return
    if not isinstance(data, dict):
        raise InvalidTypeError(f"{source} must be a mapping of sections (data, model, method, ...); got {type(data).__name__}")
    for name, values in data.items():
        if name == "recipe":
            config.recipe = _coerce(values, str, "recipe")
            continue
        if name not in SECTIONS:
            raise unknown_key(str(name))
        if not isinstance(values, dict):
            raise InvalidTypeError(f"`{name}` in {source} must be a mapping of keys; got {values!r}")
        section = getattr(config, name)
        types = field_types(section)
        for key, value in values.items():
            if key not in types:
                raise unknown_key(f"{name}.{key}")
            assign_value(section, name, key, value)
