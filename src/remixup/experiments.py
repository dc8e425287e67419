"""The paper's experiments as data: which runs make up each table, and what the paper reported for each cell.

A *table* (:class:`Experiment`) is a list of rows (methods, or the swept value of κ or τ) by a list of columns
(dataset × imbalance profile × ratio). Each (row, column) is a *cell*; each cell is run once per training seed and
per subset seed, and the table shows the mean ± std of the finished runs beside the paper's number
(Chou et al. 2020, Tables 1 and 5; ``None`` where the paper has none).

Nothing here trains or touches the disk: :mod:`remixup.reproduce` turns a :class:`RunSpec` into a
``remixup train`` command and runs it.

Tables, by the name ``remixup reproduce`` takes:

- ``table1``: ERM, DRS, DRW, LDAM-DRW, Mixup, Remix, Remix-DRS, Remix-DRW × {CIFAR-10, CIFAR-100} ×
  {long-tailed, step} × ρ ∈ {100, 10}, ResNet-32, recipe ``paper``.
- ``table5``: Manifold Mixup, Remix-MM, CutMix, Remix-CM on the same eight columns.
- ``cinic10``: ERM, Mixup, Remix, LDAM-DRW, Remix-DRW on CINIC-10 long-tailed ρ = 100 (ResNet-18).
- ``inat``: LDAM-DRW, Remix-DRW, Remix-DRS on iNaturalist 2018 (ResNet-50, recipe ``inat200``); the paper
  reports top-1 *error* here, and so does the table.
- ``kappa`` / ``tau``: Remix-DRW on CIFAR-10 LT-100 with κ ∈ {1, 1.5, 2, 3, 5, 10} (τ = 0.5) and
  τ ∈ {0, 0.25, 0.5, 0.75, 1} (κ = 3). The paper's default (κ = 3, τ = 0.5) is Table 1's Remix-DRW run, so
  that cell shares its runs and its paper number.
- ``c10lt``: CIFAR-10 LT-100, ResNet-32, LDAM-DRW's 200-epoch recipe (``ldam``): ERM, Mixup, Remix, DRW,
  Remix-DRW, LDAM-DRW and Mixup-DRW, beside Table 1's numbers (which come from the paper's 300-epoch recipe).
- ``family``: CMO (with CE, DRW, balanced softmax, LDAM-DRW), Balanced-MixUp, UniMix, MAMix, MAMix-DRW, and
  Mixup-DRW and Remix-DRW as controls, on CIFAR-10 and CIFAR-100 LT-100, recipe ``ldam`` (docs/family.md).
- ``beyond``: Remix-DRW, Remix-BS, Remix + SAM, Remix-DRW → cRT, Mixup, Mixup → MiSLAS stage 2, LDAM-DRW and
  LDAM-DRW + SAM on CIFAR-10 and CIFAR-100 LT-100, recipe ``ldam``; a second stage (``Row.stage2``) runs
  ``remixup decouple`` on its first stage's finished run.
- ``sweep``: every registry method on CIFAR-10 LT-100 (recipe ``ldam``), meant for a short schedule
  (``--epochs 25``) that catches a broken method; its reference numbers are 25-epoch runs of a conventional
  implementation on the same data (per-sample Pillow transforms, fp32), not the paper's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from remixup.errors import InvalidParameterError

# Override keys of `remixup train` for the Remix label rule (remixup.config). Kept in one place so the sweeps
# follow the config if its key names change.
KAPPA_KEY = "mixing.kappa"
TAU_KEY = "mixing.tau"
DEFAULT_KAPPA = 3.0
DEFAULT_TAU = 0.5


@dataclass(frozen=True)
class Column:
    """One column of a table: a dataset made imbalanced by one profile and ratio."""

    dataset: str
    imbalance: str
    ratio: int
    label: str


@dataclass(frozen=True)
class Row:
    """One row of a table: a method, optionally with `key=value` overrides (the sweeps' κ or τ).

    ``cell_overrides`` adds overrides in some columns only: ``((column label, (override, ...)), ...)`` (UniMix's
    exponent differs between CIFAR-10 and CIFAR-100 in its authors' configs).

    ``stage2`` names a decoupled second stage (``remixup decouple --method``: ``crt``, ``lws``, ``tau-norm``,
    ``ncm``, ``mislas``) run on the finished run of the same method and overrides; ``""``: none. The first stage is
    then a run of its own, shared with the row that trains that method alone.
    """

    method: str
    label: str
    overrides: tuple[str, ...] = ()
    cell_overrides: tuple[tuple[str, tuple[str, ...]], ...] = ()
    stage2: str = ""


@dataclass(frozen=True)
class Experiment:
    """A table of the paper as a grid of runs.

    Attributes:
        name: the name ``remixup reproduce`` takes (``table1``, ``kappa``, …).
        title: a heading for the Markdown table.
        rows: the table's rows (methods or swept values).
        columns: the table's columns (dataset settings).
        paper: ``(row label, column label) -> number`` as the paper reports it; a missing key means none.
        recipe: the training recipe (``paper``, ``ldam``, ``inat90``, ``inat200``).
        metric: ``"top1"`` (accuracy, %) or ``"top1_error"`` (100 − top-1, %), the quantity the table shows.
        sweep: for the ablations, the swept parameter's name (``"kappa"``/``"tau"``) and its values, in row
            order; empty for the method tables.
        extra: overrides every run of the table gets (e.g. a model).
        reference: the word shown before the reference number in each cell (``"paper"``).
        reference_note: a sentence under the table's heading saying where the reference numbers come from.
    """

    name: str
    title: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    paper: dict[tuple[str, str], float]
    recipe: str = "paper"
    metric: str = "top1"
    sweep: tuple[str, tuple[float, ...]] | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)
    reference: str = "paper"
    reference_note: str = ""

    def paper_value(self, row: Row, column: Column) -> float | None:
        """The paper's number for a cell, or ``None`` where the paper has none."""
        return self.paper.get((row.label, column.label))


@dataclass(frozen=True)
class RunSpec:
    """One training run of a grid: a cell of a table at one seed and one subset seed.

    The run id depends on what is trained (method, data, recipe, epochs, overrides, seeds) and not on the table,
    so a run shared by two tables (Table 1's Remix-DRW and the κ = 3 point of the κ sweep) is trained once.
    """

    table: str
    row: Row
    column: Column
    seed: int
    subset_seed: int
    recipe: str
    epochs: int | None = None
    overrides: tuple[str, ...] = ()

    @property
    def method(self) -> str:
        return self.row.method

    @property
    def cell(self) -> tuple[str, str]:
        """``(row label, column label)``: the runs of one cell are averaged together."""
        return (self.row.label, self.column.label)

    @property
    def run_id(self) -> str:
        """A folder name, stable across invocations and unique per distinct run."""
        c = self.column
        setting = f"{c.dataset}-{c.imbalance}" + ("" if c.imbalance == "none" else str(c.ratio))
        parts = [setting, self.method, self.recipe]
        if self.epochs is not None:
            parts.append(f"e{self.epochs}")
        for item in self.overrides:
            key, _, value = item.partition("=")
            short = key.rsplit(".", 1)[-1]
            safe = "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in f"{short}{value}")
            if len(safe) > 24:  # long or odd values: keep folder names short and still unique
                safe = f"{short}-" + hashlib.sha1(item.encode()).hexdigest()[:8]
            parts.append(safe)
        parts.append(f"s{self.seed}-ss{self.subset_seed}")
        if self.row.stage2:
            parts.append(self.row.stage2)
        return "_".join(parts)

    @property
    def first_stage(self) -> RunSpec | None:
        """The run a second stage starts from (the same spec without ``stage2``); ``None`` for a one-stage run."""
        if not self.row.stage2:
            return None
        return replace(self, row=Row(self.row.method, self.row.method, self.row.overrides, self.row.cell_overrides))


_CIFAR_COLUMNS = tuple(
    Column(dataset, imbalance, ratio, f"{short} {'LT' if imbalance == 'longtail' else 'Step'}-{ratio}")
    for dataset, short in (("cifar10", "C10"), ("cifar100", "C100"))
    for imbalance in ("longtail", "step")
    for ratio in (100, 10)
)

# Chou et al. 2020, Tables 1 and 5, in the paper's column order: C10 LT-100, LT-10, Step-100, Step-10, then the same for CIFAR-100.
_PAPER_ORDER = (
    "C10 LT-100",
    "C10 LT-10",
    "C10 Step-100",
    "C10 Step-10",
    "C100 LT-100",
    "C100 LT-10",
    "C100 Step-100",
    "C100 Step-10",
)
_PAPER_CIFAR: dict[str, tuple[float, ...]] = {
    "ERM": (71.86, 86.22, 64.17, 84.02, 40.12, 56.77, 40.13, 54.74),
    "DRS": (74.50, 86.72, 72.03, 85.17, 40.33, 57.26, 41.35, 56.79),
    "DRW": (74.86, 86.88, 71.60, 85.51, 40.66, 57.32, 41.14, 57.22),
    "LDAM-DRW": (76.57, 86.70, 75.94, 86.52, 42.64, 57.18, 45.40, 57.09),
    "Mixup": (73.09, 88.00, 65.80, 85.20, 40.83, 58.37, 39.64, 54.46),
    "Remix": (75.36, 88.15, 68.98, 86.34, 41.94, 59.36, 39.96, 57.06),
    "Remix-DRS": (79.53, 88.85, 77.46, 88.16, 46.53, 60.52, 47.25, 60.76),
    "Remix-DRW": (79.76, 89.02, 77.86, 88.34, 46.77, 61.23, 46.78, 60.44),
    "Manifold Mixup": (73.47, 87.78, 66.13, 85.22, 41.19, 58.55, 39.52, 53.72),
    "Remix-MM": (77.07, 88.70, 69.78, 87.39, 44.12, 60.76, 40.22, 58.01),
    "CutMix": (75.04, 88.30, 67.97, 86.35, 41.86, 59.47, 40.23, 56.59),
    "Remix-CM": (76.59, 87.96, 69.61, 87.59, 43.55, 60.15, 40.34, 57.78),
}

# Paper label -> the method name `remixup train` takes.
METHOD_NAMES: dict[str, str] = {
    "ERM": "erm",
    "DRS": "drs",
    "DRW": "drw",
    "LDAM-DRW": "ldam-drw",
    "Mixup": "mixup",
    "Remix": "remix",
    "Remix-DRS": "remix-drs",
    "Remix-DRW": "remix-drw",
    "Manifold Mixup": "manifold-mixup",
    "Remix-MM": "remix-mm",
    "CutMix": "cutmix",
    "Remix-CM": "remix-cm",
}


def _cifar_table(name: str, title: str, labels: Sequence[str]) -> Experiment:
    rows = tuple(Row(METHOD_NAMES[label], label) for label in labels)
    paper = {(label, col): value for label in labels for col, value in zip(_PAPER_ORDER, _PAPER_CIFAR[label], strict=True)}
    return Experiment(name, title, rows, _CIFAR_COLUMNS, paper)


def _sweep(name: str, key: str, values: tuple[float, ...], default: float, symbol: str) -> Experiment:
    column = _CIFAR_COLUMNS[0]  # CIFAR-10 LT-100
    rows = tuple(
        # The default value runs without an override: the same run (and folder) as Table 1's Remix-DRW.
        Row("remix-drw", f"{symbol} = {v:g}", () if v == default else (f"{key}={v:g}",))
        for v in values
    )
    paper = {(f"{symbol} = {default:g}", column.label): _PAPER_CIFAR["Remix-DRW"][0]}
    title = f"Ablation: Remix-DRW on CIFAR-10 LT-100 against {symbol}"
    return Experiment(name, title, rows, (column,), paper, sweep=(name, values))


TABLE1 = _cifar_table(
    "table1",
    "Table 1: top-1 accuracy (%), ResNet-32, CIFAR-10/100",
    ("ERM", "DRS", "DRW", "LDAM-DRW", "Mixup", "Remix", "Remix-DRS", "Remix-DRW"),
)
TABLE5 = _cifar_table(
    "table5",
    "Table 5: Remix with Manifold Mixup and CutMix, top-1 accuracy (%), ResNet-32",
    ("Manifold Mixup", "Remix-MM", "CutMix", "Remix-CM"),
)
_CINIC = Column("cinic10", "longtail", 100, "CINIC-10 LT-100")
CINIC10 = Experiment(
    "cinic10",
    "CINIC-10 long-tailed ρ = 100: top-1 accuracy (%), ResNet-18",
    tuple(Row(METHOD_NAMES[m], m) for m in ("ERM", "Mixup", "Remix", "LDAM-DRW", "Remix-DRW")),
    (_CINIC,),
    {
        ("ERM", _CINIC.label): 61.82,
        ("Mixup", _CINIC.label): 62.06,
        ("Remix", _CINIC.label): 63.21,
        ("LDAM-DRW", _CINIC.label): 65.51,
        ("Remix-DRW", _CINIC.label): 67.76,
    },
)
# iNaturalist 2018 is long-tailed as collected: no profile is applied on top of it.
_INAT = Column("inat2018", "none", 1, "iNaturalist 2018")
INAT = Experiment(
    "inat",
    "iNaturalist 2018: top-1 error (%), ResNet-50, 200 epochs",
    tuple(Row(METHOD_NAMES[m], m) for m in ("LDAM-DRW", "Remix-DRW", "Remix-DRS")),
    (_INAT,),
    {("LDAM-DRW", _INAT.label): 31.42, ("Remix-DRW", _INAT.label): 29.51, ("Remix-DRS", _INAT.label): 29.26},
    recipe="inat200",
    metric="top1_error",
)
KAPPA = _sweep("kappa", KAPPA_KEY, (1.0, 1.5, 2.0, 3.0, 5.0, 10.0), DEFAULT_KAPPA, "κ")
TAU = _sweep("tau", TAU_KEY, (0.0, 0.25, 0.5, 0.75, 1.0), DEFAULT_TAU, "τ")

_C10_LT100 = _CIFAR_COLUMNS[0]
_C10LT_LABELS = ("ERM", "Mixup", "Remix", "DRW", "Remix-DRW", "LDAM-DRW", "Mixup-DRW")
C10LT = Experiment(
    "c10lt",
    "CIFAR-10 LT-100, ResNet-32, LDAM-DRW's 200-epoch recipe: top-1 accuracy (%)",
    tuple(Row(label.lower(), label) for label in _C10LT_LABELS),
    (_C10_LT100,),
    {(label, _C10_LT100.label): _PAPER_CIFAR[label][0] for label in _C10LT_LABELS if label in _PAPER_CIFAR},
    recipe="ldam",
    reference_note="The paper's numbers are Table 1's (its own 300-epoch recipe, mean of 5 runs); a public "
    "200-epoch single-seed reimplementation (ntucllab/imbalanced-DL) reports Remix-DRW 81.82 and Mixup-DRW 82.11.",
)

# A conventional implementation (per-sample Pillow transforms, fp32) on the JPEG-decoded CIFAR-10 npz,
# LT-100, ResNet-32, the LDAM recipe scaled to 25 epochs, last epoch, seed 0. "DRW" there is hard-label DRW with
# PyTorch's weighted-mean cross-entropy; its Mixup-DRW divided the weighted loss by the batch size.
_SWEEP_REFERENCE = {"ERM": 45.3, "Mixup": 37.8, "Remix": 35.4, "Remix-DRW": 38.9, "DRW": 58.1, "Mixup-DRW": 42.4}


def _sweep_rows() -> tuple[Row, ...]:
    from remixup.methods import METHODS

    first = ("erm", "mixup", "remix", "drw", "remix-drw", "ldam-drw", "mixup-drw")  # the headline methods first
    names = [*first, *(name for name in METHODS if name not in first)]
    return tuple(Row(name, METHODS[name].paper_name) for name in names)


SWEEP = Experiment(
    "sweep",
    "Every method on CIFAR-10 LT-100, ResNet-32, a short schedule: top-1 accuracy (%)",
    _sweep_rows(),
    (_C10_LT100,),
    {(label, _C10_LT100.label): value for label, value in _SWEEP_REFERENCE.items()},
    recipe="ldam",
    reference="ref",
    reference_note="A short schedule catches a broken method; it does not rank methods. The reference "
    "(ref) numbers are a conventional implementation's (per-sample Pillow transforms, fp32) on the same data with the LDAM recipe scaled to "
    "25 epochs, seed 0; its DRW used hard labels and its Mixup-DRW divided the weighted loss by the batch size.",
)

# The class-aware mixing family (remixup.mixing.family, docs/family.md) with Mixup-DRW and Remix-DRW as controls, on the
# same recipe: LDAM-DRW's 200 epochs, ResNet-32, CIFAR-10/100 LT-100, last epoch. UniMix's in-batch exponent is its
# authors' per dataset: −0.5 on CIFAR-10 (the default), −0.1 on CIFAR-100.
_FAMILY_COLUMNS = (_CIFAR_COLUMNS[0], _CIFAR_COLUMNS[4])  # C10 LT-100, C100 LT-100
_FAMILY_ROWS = (
    Row("cmo", "CMO"),
    Row("cmo-drw", "CMO-DRW"),
    Row("cmo-bs", "CMO-BS"),
    Row("cmo-ldam-drw", "CMO-LDAM-DRW"),
    Row("balanced-mixup", "Balanced-MixUp"),
    Row("unimix", "UniMix", cell_overrides=((_FAMILY_COLUMNS[1].label, ("mixing.partner_exponent=-0.1",)),)),
    Row("mamix", "MAMix"),
    Row("mamix-drw", "MAMix-DRW"),
    Row("mixup-drw", "Mixup-DRW"),
    Row("remix-drw", "Remix-DRW"),
)
FAMILY = Experiment(
    "family",
    "The class-aware mixing family, ResNet-32, LDAM-DRW's 200-epoch recipe: top-1 accuracy (%), last epoch",
    _FAMILY_ROWS,
    _FAMILY_COLUMNS,
    # CMO's paper (Park et al. 2022), CIFAR-100-LT-100, ResNet-32, 200 epochs: CE + CMO, BS + CMO, LDAM-DRW + CMO.
    {("CMO", "C100 LT-100"): 43.9, ("CMO-BS", "C100 LT-100"): 46.6, ("CMO-LDAM-DRW", "C100 LT-100"): 47.2},
    recipe="ldam",
    reference_note="The paper numbers are CMO's own (Park et al. 2022, CIFAR-100-LT-100, ResNet-32, 200 epochs, best "
    "of its runs as published); an independent rerun of CE + CMO with 3 seeds reported 42.2 / 41.7 / 42.4. The other "
    "methods' papers use other recipes or datasets, so their cells have no reference here.",
)

# Beyond the paper: decoupled second stages, SAM and balanced softmax on Remix, beside the strongest published
# numbers for ResNet-32 on CIFAR-10/100-LT-100 (docs/guide.md, "Beyond the paper"). LDAM-DRW + SAM takes the
# Saddle-LongTail README's ρ = 0.8; Remix + SAM takes SAM's usual ρ = 0.05.
_BEYOND_ROWS = (
    Row("remix-drw", "Remix-DRW"),
    Row("remix-bs", "Remix-BS"),
    Row("remix", "Remix + SAM", ("optim.sam_rho=0.05",)),
    Row("remix-drw", "Remix-DRW → cRT", stage2="crt"),
    Row("mixup", "Mixup"),
    Row("mixup", "Mixup → MiSLAS", stage2="mislas"),
    Row("ldam-drw", "LDAM-DRW"),
    Row("ldam-drw", "LDAM-DRW + SAM", ("optim.sam_rho=0.8",)),
)
BEYOND = Experiment(
    "beyond",
    "Beyond the paper: second stages, SAM and balanced softmax, ResNet-32, LDAM-DRW's 200-epoch recipe: top-1 accuracy "
    "(%), last epoch",
    _BEYOND_ROWS,
    _FAMILY_COLUMNS,
    {
        ("Mixup → MiSLAS", "C10 LT-100"): 82.5,
        ("Mixup → MiSLAS", "C100 LT-100"): 47.0,
        ("LDAM-DRW + SAM", "C10 LT-100"): 81.9,
        ("LDAM-DRW + SAM", "C100 LT-100"): 45.4,
        ("Mixup", "C10 LT-100"): 72.8,
        ("Mixup", "C100 LT-100"): 39.5,
        ("LDAM-DRW", "C10 LT-100"): 77.0,
        ("LDAM-DRW", "C100 LT-100"): 42.0,
        ("Remix-BS", "C10 LT-100"): 81.06,
        ("Remix-BS", "C100 LT-100"): 48.03,
    },
    recipe="ldam",
    reference="ref",
    reference_note="The reference (ref) numbers are published ones: MiSLAS and its mixup stage 1 (dvlab-research/MiSLAS "
    "README: 200 epochs of mixup, then its 10-epoch stage 2), LDAM-DRW + SAM (val-iisc/Saddle-LongTail README, 200 "
    "epochs, rho 0.8), LDAM-DRW (Cao et al. 2019), Remix with balanced softmax (zhangyongshun/BagofTricks-LT, 400 "
    "epochs). Remix + SAM and Remix-DRW → cRT are compositions no paper reports.",
)

EXPERIMENTS: dict[str, Experiment] = {
    e.name: e for e in (TABLE1, TABLE5, CINIC10, INAT, KAPPA, TAU, C10LT, SWEEP, FAMILY, BEYOND)
}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; an unknown name lists the valid ones."""
    try:
        return EXPERIMENTS[name]
    except KeyError:
        from remixup.config import suggest

        valid = ", ".join(EXPERIMENTS)
        raise InvalidParameterError(f"unknown table {name!r}{suggest(name, EXPERIMENTS)} (valid tables: {valid})") from None


def enumerate_runs(
    experiment: Experiment,
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    subset_seeds: Sequence[int] = (0,),
    recipe: str | None = None,
    epochs: int | None = None,
    overrides: Sequence[str] = (),
) -> list[RunSpec]:
    """Every run of ``experiment``, in a fixed order: column, then row, then subset seed, then seed.

    Args:
        experiment: the table.
        seeds: training seeds (the paper averages 5 runs).
        subset_seeds: seeds that choose which samples the imbalance profile keeps.
        recipe: a recipe name to use instead of the table's own.
        epochs: an epoch count to pass to ``remixup train --epochs`` (the recipe scales its milestones).
        overrides: ``key=value`` overrides added to every run (after the table's own).

    Returns:
        The list of :class:`RunSpec`; the order is deterministic, so shards taken from it are too.
    """
    if not seeds or not subset_seeds:
        raise InvalidParameterError("`seeds` and `subset_seeds` must each name at least one seed")
    if len(set(seeds)) != len(seeds) or len(set(subset_seeds)) != len(subset_seeds):
        raise InvalidParameterError(f"seeds must not repeat; got seeds {list(seeds)} and subset seeds {list(subset_seeds)}")
    runs = []
    for column in experiment.columns:
        for row in experiment.rows:
            for subset_seed in subset_seeds:
                for seed in seeds:
                    runs.append(
                        RunSpec(
                            table=experiment.name,
                            row=row,
                            column=column,
                            seed=int(seed),
                            subset_seed=int(subset_seed),
                            recipe=recipe or experiment.recipe,
                            epochs=epochs,
                            overrides=tuple(experiment.extra)
                            + tuple(row.overrides)
                            + dict(row.cell_overrides).get(column.label, ())
                            + tuple(overrides),
                        )
                    )
    return runs
