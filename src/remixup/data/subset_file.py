"""The exact training subset behind a number, as a file: written by ``remixup data --export-indices FILE``, read by
``data.indices=FILE``.

The file is JSON: ``format``, the ``dataset`` and the profile that chose the subset (``imbalance``, ``ratio``, ``mu``,
``subset_seed``), ``data_sha256`` (the SHA-256 of the full training split it indexes,
:func:`remixup.data.run.training_data_sha256`), ``source_size`` (its number of samples), ``class_counts`` of the subset
and ``indices`` (positions in the full training split as loaded). Training on it checks the data's checksum, the
indices and the class counts, so the subset is the one exported or the run does not start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from remixup._files import atomic_write
from remixup.errors import DataError, UserError

__all__ = ["FORMAT", "read_subset", "select_subset", "write_subset"]

FORMAT = "remixup-indices/1"


def write_subset(path: str | Path, indices: Any, labels: Any, *, num_classes: int, data_sha256: str, source_size: int,
                 **profile: Any) -> dict[str, Any]:  # fmt: skip
    """Write the subset file (atomically) and return what it holds.

    Args:
        path: the file. indices: (n,) positions in the full training split. labels: (N,) labels of the full split.
        num_classes: C. data_sha256: the full split's checksum. source_size: N.
        **profile: how the subset was chosen (dataset, imbalance, ratio, mu, subset_seed).
    """
    index = np.asarray(indices, dtype=np.int64)
    counts = np.bincount(np.asarray(labels, dtype=np.int64)[index], minlength=num_classes)
    content = {"format": FORMAT, **profile, "data_sha256": data_sha256, "source_size": int(source_size),
               "num_samples": int(index.size), "class_counts": counts.tolist(), "indices": index.tolist()}  # fmt: skip
    try:
        atomic_write(path, json.dumps(content) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write the indices file {path}: {exc.strerror or exc}") from None
    return content


def read_subset(path: str | Path) -> dict[str, Any]:
    """The subset file's content, its fields checked.

    Raises:
        DataError: a missing, unreadable or malformed file (the message names it).
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataError(f"cannot read the indices file {path} (data.indices): {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"the indices file {path} is not JSON ({exc}); write it with remixup data --export-indices") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise DataError(f"{path} is not a remixup indices file ({FORMAT}); write it with remixup data --export-indices")
    for key, kind in (("indices", list), ("class_counts", list), ("data_sha256", str), ("source_size", int)):
        if not isinstance(content.get(key), kind):
            raise DataError(f"the indices file {path} lacks {key!r} or holds a {type(content.get(key)).__name__} there")
    return content


def select_subset(dataset: Any, path: str | Path, data_sha256: str) -> Any:
    """``dataset.subset(indices)`` of the subset file at ``path``, once the data is shown to be the file's.

    Args:
        dataset: the full training split as loaded (an :class:`ArrayDataset` or :class:`ImageFileDataset`).
        path: the subset file. data_sha256: the checksum of ``dataset``.

    Raises:
        DataError: other data than the file's (checksum or size), an index out of range or repeated, or class counts
            that differ from the file's.
    """
    content = read_subset(path)
    if content["data_sha256"] != data_sha256 or content["source_size"] != len(dataset.labels):
        raise DataError(f"the indices file {path} was written for other data (SHA-256 {content['data_sha256'][:12]}..., "
                        f"{content['source_size']} samples); the data here has {data_sha256[:12]}..., {len(dataset.labels)} "
                        "samples")  # fmt: skip
    index = np.asarray(content["indices"], dtype=np.int64)
    if index.ndim != 1 or index.size == 0 or index.min() < 0 or index.max() >= len(dataset.labels):
        raise DataError(f"the indices file {path} holds indices outside 0..{len(dataset.labels) - 1}")
    if np.unique(index).size != index.size:
        raise DataError(f"the indices file {path} repeats an index")
    subset = dataset.subset(index)
    counts = torch.as_tensor(subset.class_counts).tolist()
    if counts != content["class_counts"]:
        raise DataError(f"the indices file {path} gives class counts {counts[:5]}..., not the {content['class_counts'][:5]}... "
                        "it records")  # fmt: skip
    return subset
