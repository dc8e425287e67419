"""Predictions of a trained run on new inputs: image files, folders of images, ``.npz`` arrays, in-memory arrays,
or, for a run trained on a table, new rows as a CSV, TSV or Parquet file (or a pandas DataFrame).

The model is rebuilt the one way runs build it (:func:`remixup.models.build_model_for`) and the inputs go through
the dataset's own evaluation transform (:meth:`remixup.data.registry.DatasetSpec.eval_transform`), so a prediction
sees exactly what evaluation saw::

    from remixup import predict
    rows = predict("runs/digits-remix", ["photos/", "more.npz"], top_k=3)
    rows[0]  # {"input": "photos/a.png", "label": 3, "class": "3", "probability": 0.91, "top_k": [...]}

Images are converted to the model's channels (grey or RGB). For datasets held in memory (CIFAR, digits, npz) an
image of another size is resized (short side) and centre-cropped to the training size; file datasets (iNaturalist,
image folders) resize and centre-crop as their evaluation does. Inputs must look like the training images: the
``digits`` models expect white ink on black (scikit-learn's digits), and read a black-on-white drawing wrongly.
An ``.npz`` file contributes one array: ``x``, else ``x_test``, else its only array, shaped like the training data
((N, H, W, C) or (N, C, H, W) uint8 images, (N, D) vectors); vectors must be finite.

New rows of a table go through the preprocessing fitted on the run's training split, kept in the run folder as
``table.json`` (:class:`remixup.data.table_preprocess.TablePreprocessor`): columns are matched by name (extra
columns, such as the label, are ignored), missing cells are imputed with the training median or mode, numeric
columns are standardised with the training mean and standard deviation, and a category not seen in training
encodes as all zeros (a note on stderr counts such rows). A missing column or a cell in a numeric column that is no
number is an error naming it. Each row of a table's prediction also carries ``probabilities``, one per class.

The probability is the softmax of the logits the training loss saw (LDAM's ``s·z``), after the optional post-hoc
logit adjustment ``− τ·log π`` by the training prior π (Menon et al. 2021), the same adjustment as ``remixup eval
--logit-adjust``.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from remixup._validation import check_number
from remixup.data.table_sources import TABLE_SUFFIXES
from remixup.errors import DataError, UserError

__all__ = ["Predictor", "load_predictor", "predict", "write_predictions"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass
class _Item:
    """One input: its name in the output, and either a file to decode or an array row."""

    name: str
    path: Path | None = None
    array: np.ndarray | None = None


class Predictor:
    """A checkpoint's model ready to predict, with its dataset's evaluation transform.

    Attributes:
        model: the rebuilt network (eval mode, on ``device``).
        classes: the C class names. class_counts: (C,) training counts (the prior of the logit adjustment).
        input_shape: one sample as the model takes it: (C, H, W) or (D,).
        kind: the dataset kind: ``small_image``, ``large_image`` or ``vector``.
        logit_scale: ``s`` of a loss that scales logits before its softmax (LDAM), else 1.
    """

    def __init__(self, state: dict[str, Any], *, device: torch.device, path: Path) -> None:
        from remixup.config import TrainConfig
        from remixup.data.registry import get_spec, spec_for_samples, with_image_size
        from remixup.losses import build_loss
        from remixup.models import build_model_for

        if str(state["model_name"]).startswith("custom:"):
            raise UserError(f"{path} holds a model of your own ({state['model_name'][7:]}) that remixup cannot rebuild; "
                            "load its state dict into that model and call it in Python")  # fmt: skip
        config = TrainConfig.from_dict(state["config"], source=f"the config in {path}")
        method = config.effective_method()
        self.spec = get_spec(config.data.dataset)
        if self.spec.kind == "large_image":  # image files: the run's input size
            self.spec = with_image_size(self.spec, config.data.image_size)
        self.kind = self.spec.kind
        self.class_counts = torch.as_tensor(state["class_counts"], dtype=torch.float64)
        self.classes = [str(c) for c in state.get("classes") or range(self.class_counts.numel())]
        shape = state.get("input_shape")
        self.input_shape = tuple(int(n) for n in shape) if isinstance(shape, list) else _input_shape(state["model"], self.spec)
        sample = self.input_shape if len(self.input_shape) == 1 else (*self.input_shape[1:], self.input_shape[0])
        self.spec = spec_for_samples(self.spec, sample, source=str(path))  # an npz of vectors, or of grey images
        self.kind = "vector" if len(self.input_shape) == 1 else self.spec.kind
        self.device = device
        self.model: nn.Module = build_model_for(state["model_name"], self.class_counts.numel(), self.input_shape,
                                                classifier=method.classifier, classifier_bias=config.model.classifier_bias)  # fmt: skip
        from remixup.checkpoint import load_model_state

        what = f"{state['model_name']} for {config.data.dataset} {self.input_shape} with {len(self.classes)} classes"
        load_model_state(self.model, state["model"], path, what=what)
        self.model.to(device).eval()
        self.table = _table_preprocessing(path, self.input_shape)
        self.logit_scale = float(build_loss(method.loss, class_counts=self.class_counts.tolist()).logit_scale)
        self.source = str(path)

    # -- inputs ------------------------------------------------------------------------------------------------
    def _table_items(self, frame: dict[str, np.ndarray], where: str, prefix: str) -> list[_Item]:
        assert self.table is not None
        x = self.table.transform_rows(frame, where)
        return [_Item(f"{prefix}[{i}]", array=x[i]) for i in range(x.shape[0])]

    def _items(self, inputs: Any) -> list[_Item]:
        if hasattr(inputs, "columns") and hasattr(inputs, "to_numpy"):  # a pandas DataFrame of new rows
            if self.table is None:
                raise DataError(f"a DataFrame of rows needs a run trained on a table (tabular:...); {self.source} was not")
            return self._table_items({str(c): inputs[c].to_numpy(dtype=object) for c in inputs.columns}, "the DataFrame", "")
        if isinstance(inputs, (np.ndarray, torch.Tensor)):
            array = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else inputs
            return [_Item(f"[{i}]", array=array[i]) for i in range(len(array))]
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        items: list[_Item] = []
        for entry in inputs:
            path = Path(entry)
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
                if not files:
                    raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
                items += [_Item(str(p), path=p) for p in files]
            elif path.suffix.lower() in TABLE_SUFFIXES:
                if self.table is None:
                    raise DataError(f"{path}: rows of a table need a run trained on a table (tabular:...); "
                                    f"{self.source} was trained on {self.spec.name}")  # fmt: skip
                from remixup.data.table_sources import read_rows

                items += self._table_items(read_rows(path), str(path), str(path))
            elif path.suffix.lower() == ".npz":
                array = _read_npz(path)
                items += [_Item(f"{path}[{i}]", array=array[i]) for i in range(len(array))]
            elif path.is_file():
                items.append(_Item(str(path), path=path))
            else:
                raise DataError(f"{path}: no such file or folder")
        if not items:
            raise DataError("no inputs to predict on")
        return items

    def _sample(self, item: _Item) -> torch.Tensor:
        """One input as the model takes it, normalised: float (C, H, W) or (D,)."""
        if item.path is not None:
            if self.kind == "vector":
                how = "rows of a .csv, .tsv or .parquet file" if self.table is not None else "an .npz array (N, D)"
                raise DataError(f"{item.name}: the model takes vectors of {self.input_shape[0]} values, not images; "
                                f"give them as {how}")  # fmt: skip
            return self._image(item.path)
        assert item.array is not None
        return self._array(item.name, item.array)

    def _image(self, path: Path) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError

        channels = self.input_shape[0]
        try:
            with warnings.catch_warnings():  # an image over Pillow's pixel limit (a decompression bomb) is refused
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as opened:
                    img = opened.convert("L" if channels == 1 else "RGB")
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"{path}: cannot read it as an image ({' '.join(str(exc).split())})") from None
        if self.kind == "large_image":
            return self._image_from_pixels(img)
        size = self.input_shape[1]
        if img.size != (size, size):
            scale = size / min(img.size)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.BILINEAR)
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
        pixels = np.asarray(img, dtype=np.uint8).reshape(size, size, channels)
        return self._normalise(torch.from_numpy(pixels.copy()))

    def _array(self, name: str, row: np.ndarray) -> torch.Tensor:
        shape = self.input_shape
        if self.kind == "vector":
            if row.shape != shape or row.dtype.kind not in "fiu":
                raise DataError(f"{name}: the model takes vectors of shape {shape}; got {row.dtype} {row.shape}")
            vector = torch.as_tensor(row, dtype=torch.float32)
            if not bool(torch.isfinite(vector).all()):
                raise DataError(f"{name}: holds NaN or infinite values; the model needs finite inputs")
            return vector
        c, h, w = shape
        if row.ndim == 2 and c == 1:
            row = row[:, :, None]
        if row.ndim == 3 and row.shape[0] == c and row.shape[-1] != c:
            row = row.transpose(1, 2, 0)
        if row.shape != (h, w, c) or row.dtype != np.uint8:
            raise DataError(f"{name}: the model takes uint8 images of {h}x{w} pixels with {c} channel(s) "
                            f"((H, W, C) or (C, H, W)); got {row.dtype} {row.shape}")  # fmt: skip
        if self.kind == "large_image":
            from PIL import Image

            return self._image_from_pixels(Image.fromarray(row.squeeze(-1) if c == 1 else row))
        return self._normalise(torch.from_numpy(np.ascontiguousarray(row)))

    def _image_from_pixels(self, img: Any) -> torch.Tensor:
        transform: Any = self.spec.eval_transform()
        return transform(img.convert("RGB"))

    def _normalise(self, hwc: torch.Tensor) -> torch.Tensor:
        transform: Any = self.spec.eval_transform()  # the in-memory datasets' normalisation (no crop, no flip)
        return transform(hwc[None])[0]

    # -- prediction --------------------------------------------------------------------------------------------
    def batches(self, inputs: Any, batch_size: int) -> Iterator[tuple[list[str], torch.Tensor]]:
        """``(names, x)`` batches of at most ``batch_size`` normalised inputs; files are read batch by batch."""
        items = self._items(inputs)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            yield [it.name for it in chunk], torch.stack([self._sample(it) for it in chunk])

    @torch.no_grad()
    def predict(self, inputs: Any, *, top_k: int = 5, batch_size: int = 256, logit_adjust: float = 0.0) -> list[dict[str, Any]]:
        """Predict every input; see :func:`predict` for the arguments and the rows returned."""
        check_number(batch_size, "batch_size", owner="predict", low=1, integer=True)
        check_number(top_k, "top_k", owner="predict", low=1, integer=True)
        check_number(logit_adjust, "logit_adjust", owner="predict", low=0.0)
        from remixup.metrics import logit_adjustment

        k = min(int(top_k), len(self.classes))
        shift = logit_adjustment(self.class_counts, logit_adjust).to(self.device) if logit_adjust else None
        rows: list[dict[str, Any]] = []
        for names, x in self.batches(inputs, int(batch_size)):
            logits = self.model(x.to(self.device)).float() * self.logit_scale
            if shift is not None:
                logits = logits - shift
            every = torch.softmax(logits, dim=1)
            probs, labels = every.topk(k, dim=1)
            for name, p, lab, full in zip(names, probs.cpu().tolist(), labels.cpu().tolist(), every.cpu().tolist(), strict=True):
                top = [{"label": c, "class": self.classes[c], "probability": q} for c, q in zip(lab, p, strict=True)]
                row = {"input": name, "label": lab[0], "class": self.classes[lab[0]], "probability": p[0], "top_k": top}
                if self.table is not None:
                    row["probabilities"] = dict(zip(self.classes, full, strict=True))
                rows.append(row)
        return rows


def _input_shape(weights: dict[str, torch.Tensor], spec: Any) -> tuple[int, ...]:
    """One sample's shape from the first weight of the model (a conv's input channels or a linear layer's width)."""
    first = next((v for k, v in weights.items() if k.endswith("weight") and v.ndim in (2, 4)), None)
    if first is None:  # pragma: no cover - every registry model starts with a conv or a linear layer
        raise UserError("cannot tell the model's input shape from its checkpoint")
    if first.ndim == 2:
        return (int(first.shape[1]),)
    size = spec.image_size or 224
    return (int(first.shape[1]), size, size)


def _table_preprocessing(path: Path, input_shape: tuple[int, ...]) -> Any:
    """The run's table preprocessing (``table.json`` next to the checkpoint), or ``None`` for a run not on a table."""
    from remixup.data.table_preprocess import TablePreprocessor
    from remixup.rundir import RunFolder

    text = RunFolder(path.parent).read_table()
    if text is None:
        return None
    table = TablePreprocessor.from_json(text, str(RunFolder(path.parent).table))
    if (len(table.features),) != tuple(input_shape):
        raise DataError(f"{RunFolder(path.parent).table}: {len(table.features)} features, but the model takes "
                        f"{input_shape[0]}; the file belongs to another run")  # fmt: skip
    return table


def _read_npz(path: Path) -> np.ndarray:
    try:
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            names = list(archive.files)
            key = next((k for k in ("x", "x_test") if k in names), names[0] if len(names) == 1 else None)
            if key is None:
                raise DataError(f"{path}: name the inputs `x` (it holds {', '.join(names) or 'no arrays'})")
            array = archive[key]
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read it as an .npz file ({' '.join(str(exc).split())})") from None
    if array.ndim < 2:
        raise DataError(f"{path}: `{key}` must hold one input per row; got shape {array.shape}")
    return array


def load_predictor(checkpoint: str | Path, *, device: str = "auto") -> Predictor:
    """The model of ``checkpoint`` (a ``checkpoint.pt`` or its run folder) ready to predict on ``device``."""
    from remixup import checkpoint as ckpt
    from remixup.rundir import checkpoint_file
    from remixup.runtime import resolve_device

    path = checkpoint_file(checkpoint)
    return Predictor(ckpt.load(path), device=resolve_device(device), path=path)


def predict(
    checkpoint: str | Path,
    inputs: Any,
    *,
    top_k: int = 5,
    batch_size: int = 256,
    device: str = "auto",
    logit_adjust: float = 0.0,
) -> list[dict[str, Any]]:
    """Predict the class of every input with a run's model.

    Args:
        checkpoint: a ``checkpoint.pt``, or the run folder holding one.
        inputs: a path or a list of paths (image files, folders searched recursively for images, ``.npz`` files;
            for a run on a table, ``.csv``/``.tsv``/``.parquet`` files of new rows), an array / tensor of samples
            (N, ...) shaped like the training data, or (a table's run) a pandas DataFrame of new rows.
        top_k: how many classes each row lists (at most C).
        batch_size: inputs per forward pass.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        logit_adjust: ``τ ≥ 0``: subtract ``τ·log π`` (training prior) from the logits before the softmax; 0: none.

    Returns:
        One dict per input, in input order: ``input`` (path, ``file.npz[i]`` or ``[i]``), ``label`` and ``class`` of
        the top prediction, its ``probability``, and ``top_k``: a list of ``{"label", "class", "probability"}``;
        for a table also ``probabilities``: class name -> probability, for every class (``file.csv[i]`` is row i,
        counted from 0, of the file's data rows).

    Raises:
        UserError / DataError: a missing or unreadable checkpoint or input, or an input of the wrong shape (the
            message names it).
    """
    return load_predictor(checkpoint, device=device).predict(
        inputs, top_k=top_k, batch_size=batch_size, logit_adjust=logit_adjust
    )


def write_predictions(rows: Sequence[dict[str, Any]], fmt: str, stream: Any) -> None:
    """Write ``rows`` to ``stream`` as ``csv`` (input, label, class, probability, then class_i/probability_i for
    the top k; for a table's rows instead one column ``p_CLASS`` per class) or ``json`` (a list of the dicts)."""
    if fmt == "json":
        import json

        stream.write(json.dumps(list(rows), indent=1) + "\n")
        return
    import csv

    writer = csv.writer(stream, lineterminator="\n")
    if rows and "probabilities" in rows[0]:  # a table: every class's probability
        classes = list(rows[0]["probabilities"])
        writer.writerow(["input", "label", "class", "probability", *(f"p_{c}" for c in classes)])
        for r in rows:
            writer.writerow([r["input"], r["label"], r["class"], f"{r['probability']:.6f}",
                             *(f"{r['probabilities'][c]:.6f}" for c in classes)])  # fmt: skip
        return
    k = max((len(r["top_k"]) for r in rows), default=0)
    writer.writerow(
        ["input", "label", "class", "probability", *(f"{x}_{i}" for i in range(1, k + 1) for x in ("class", "probability"))]
    )
    for r in rows:
        top = [v for t in r["top_k"] for v in (t["class"], f"{t['probability']:.6f}")]
        writer.writerow([r["input"], r["label"], r["class"], f"{r['probability']:.6f}", *top])
