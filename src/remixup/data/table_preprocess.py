"""The preprocessing of a table, fitted on its training split and applied alike to every other row: to the
validation and test splits when the table is split, and to new rows when a trained run predicts.

A :class:`TablePreprocessor` is plain data (JSON, no pickle): per feature column, in the training column order,
its kind and what was fitted on the training rows:

- a numeric column: the training median (imputes a missing cell), then the training mean and standard deviation
  (standardises; a constant column keeps std 1);
- a categorical column: the training categories (sorted) and the training mode (imputes a missing cell); the
  column becomes one 0/1 feature per training category, and a category not seen in training encodes as all zeros.

Applied to new rows (:meth:`TablePreprocessor.transform_rows`), columns are matched by name: extra columns (the
label column among them) are ignored, a missing column is an error naming it, a cell in a numeric column that is
not a number is an error naming its row, column and value, and missing cells (``?``, ``NA``, empty, ...) are
imputed as in training.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from remixup.data.table_sources import MISSING
from remixup.errors import DataError

__all__ = ["FORMAT", "TableColumn", "TablePreprocessor", "cleaned_cells"]

FORMAT = 1  # the version of the JSON layout below
MAX_CATEGORICAL_BINS = 255  # more categories than a tree's bins: the ordinal codes are treated as numbers


def cleaned_cells(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A column's cells as stripped strings (object array) and its (N,) mask of missing cells."""
    import pandas as pd

    series = pd.Series(column, dtype=object)
    missing = series.isna().to_numpy().copy()
    text = series.astype(str).str.strip(" \t'\"")
    missing |= text.isin(MISSING).to_numpy()
    return text.to_numpy(dtype=object), missing


def parse_numbers(text: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float64 values of cleaned cells (NaN where missing) and the row indices of present cells that are not
    numbers."""
    import pandas as pd

    present = text.copy()
    present[missing] = None
    with np.errstate(invalid="ignore"):
        floats = pd.to_numeric(pd.Series(present, dtype=object), errors="coerce").to_numpy(dtype=np.float64).copy()
    bad = np.flatnonzero(~missing & ~np.isfinite(floats))
    floats[missing] = np.nan
    return floats, bad


@dataclass
class TableColumn:
    """One input column as fitted on the training rows.

    Attributes:
        name: the column's name in the table.
        kind: ``"numeric"`` or ``"categorical"``.
        median, mean, std: numeric columns: imputation value, then ``(x − mean) / std``.
        categories, mode: categorical columns: the training categories (one feature each) and the imputation value.
    """

    name: str
    kind: str
    median: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    categories: list[str] = field(default_factory=list)
    mode: str = ""

    @property
    def width(self) -> int:
        return 1 if self.kind == "numeric" else len(self.categories)

    def features(self) -> list[str]:
        return [self.name] if self.kind == "numeric" else [f"{self.name}={v}" for v in self.categories]

    def encode(self, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """The column's block of features (N, width), its ordinal column (N,) and how many rows hold a category not
        seen in training. ``cells``: float64 with NaN (numeric) or strings with ``None`` (categorical)."""
        import pandas as pd

        if self.kind == "numeric":
            v = np.where(np.isnan(cells), self.median, cells)
            z = (v - self.mean) / self.std
            return z[:, None], z, 0
        filled = np.where(pd.isna(cells), self.mode, cells)
        index = {c: k for k, c in enumerate(self.categories)}
        codes = np.array([index.get(str(v), -1) for v in filled], dtype=np.int64)  # -1: not seen in training
        hit = codes >= 0
        onehot = np.zeros((cells.shape[0], len(self.categories)))
        onehot[np.flatnonzero(hit), codes[hit]] = 1.0
        return onehot, np.where(hit, codes, np.nan), int((~hit).sum())


@dataclass
class TablePreprocessor:
    """Imputation, standardisation and one-hot coding fitted on a table's training split.

    Attributes:
        columns: the input columns the model uses, in the training order.
        label_column: the label column's name (ignored when present in new rows).
        classes: the C class names, index = label.
        source: the table it was fitted on (for messages).
    """

    columns: list[TableColumn]
    label_column: str
    classes: list[str]
    source: str = ""

    @property
    def features(self) -> list[str]:
        """The D feature names (``column`` or ``column=value`` for one-hot features)."""
        return [f for c in self.columns for f in c.features()]

    @property
    def categorical(self) -> list[bool]:
        """Which ordinal columns a tree should treat as categorical."""
        return [c.kind == "categorical" and len(c.categories) <= MAX_CATEGORICAL_BINS for c in self.columns]

    # -- fitting ---------------------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls, kinds: list[str], cells: list[np.ndarray], names: list[str], train: np.ndarray, *, label_column: str,
        classes: list[str], source: str = "",
    ) -> TablePreprocessor:  # fmt: skip
        """Fit on the rows ``train`` of typed ``cells`` (see :func:`remixup.data.tabular.column_kinds`). A
        categorical column with no value in the training rows is left out (there is nothing to encode)."""
        columns: list[TableColumn] = []
        for kind, column, name in zip(kinds, cells, names, strict=True):
            if kind == "numeric":
                fit = column[train]
                present = fit[~np.isnan(fit)]
                median = float(np.median(present)) if present.size else 0.0
                filled = np.where(np.isnan(fit), median, fit)
                mean, std = float(filled.mean()), float(filled.std())
                columns.append(TableColumn(name, "numeric", median=median, mean=mean, std=std if std > 1e-12 else 1.0))
                continue
            values = [c for c in column[train] if c is not None]
            if not values:
                continue
            cats, counts = np.unique(np.array([str(c) for c in values], dtype=object), return_counts=True)  # NULs kept
            columns.append(TableColumn(name, "categorical", categories=cats.tolist(), mode=str(cats[int(np.argmax(counts))])))
        if not columns:
            raise DataError("the table has no feature column with a value in the training split")
        return cls(columns, label_column, list(classes), source)

    # -- applying --------------------------------------------------------------------------------------------------
    def transform(self, cells: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Features (N, D) float32, the ordinal form (N, K) float64 and, per column, the rows holding a category not
        seen in training, from typed cells by column name."""
        blocks, ordinal, unseen = [], [], {}
        for column in self.columns:
            block, codes, n_unseen = column.encode(cells[column.name])
            blocks.append(block)
            ordinal.append(codes[:, None])
            if n_unseen:
                unseen[column.name] = n_unseen
        return np.concatenate(blocks, axis=1).astype(np.float32), np.concatenate(ordinal, axis=1), unseen

    def typed_cells(self, frame: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        """New rows' raw cells (column name -> (N,) object array) typed as in training.

        Raises:
            DataError: a missing column, or a cell in a numeric column that is not a number (one line each).
        """
        missing = [c.name for c in self.columns if c.name not in frame]
        if missing:
            listed = ", ".join(repr(m) for m in missing[:8]) + (f" (and {len(missing) - 8} more)" if len(missing) > 8 else "")
            raise DataError(
                f"{where}: no column {listed}; the model was trained on the columns "
                f"{', '.join(c.name for c in self.columns)} (names must match; extra columns are ignored)"
            )
        typed: dict[str, np.ndarray] = {}
        for column in self.columns:
            text, absent = cleaned_cells(frame[column.name])
            if column.kind == "numeric":
                floats, bad = parse_numbers(text, absent)
                if bad.size:
                    row, more = int(bad[0]), (f" (and {bad.size - 1} more)" if bad.size > 1 else "")
                    raise DataError(
                        f"{where}: column {column.name!r} is numeric but row {row + 1} holds {str(text[row])[:40]!r}{more}; "
                        "fix the value or leave the cell empty (missing values are imputed with the training median)"
                    )
                typed[column.name] = floats
            else:
                present = text.copy()
                present[absent] = None
                typed[column.name] = present
        return typed

    def transform_rows(self, frame: dict[str, np.ndarray], where: str) -> np.ndarray:
        """New rows (column name -> (N,) cells) as the model's (N, D) float32 features; a note on stderr names each
        column with categories not seen in training (they encode as all zeros, as in the test split)."""
        x, _, unseen = self.transform(self.typed_cells(frame, where))
        for name, n in unseen.items():
            print(f"note: {where}: column {name!r}: {n} row(s) hold a category not seen in training; "
                  "it encodes as all zeros", file=sys.stderr)  # fmt: skip
        return x

    # -- JSON ------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "source": self.source,
            "label_column": self.label_column,
            "classes": list(self.classes),
            "features": self.features,
            "columns": [
                {k: v for k, v in asdict(c).items() if k in (("name", "kind", "median", "mean", "std") if c.kind == "numeric"
                                                             else ("name", "kind", "categories", "mode"))}
                for c in self.columns
            ],
        }  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "table.json") -> TablePreprocessor:
        """Rebuild from :meth:`to_dict`'s output.

        Raises:
            DataError: not a table preprocessing of this format.
        """
        try:
            if int(data["format"]) != FORMAT:
                raise DataError(
                    f"{where}: table preprocessing format {data['format']} is not {FORMAT}; retrain with this remixup"
                )
            columns = [TableColumn(**c) for c in data["columns"]]
            out = cls(columns, str(data["label_column"]), [str(c) for c in data["classes"]], str(data.get("source", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: not a table preprocessing file ({type(exc).__name__}: {exc})") from None
        if any(c.kind not in ("numeric", "categorical") for c in columns):
            raise DataError(f"{where}: not a table preprocessing file (a column kind is neither numeric nor categorical)")
        return out

    @classmethod
    def from_json(cls, text: str, where: str = "table.json") -> TablePreprocessor:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not JSON ({exc})") from None
        return cls.from_dict(data, where)
