"""What the contract suite (tests/test_contract*.py) shares: the methods it checks, its data, its runs, its checks.

The methods are read from the registry (``remixup.methods.METHODS``) when the tests are collected, plus a sample of
composed names, so a method added to the registry is checked by every test here without a test of its own.

Every run is tiny (2 epochs, a few batches, one thread) and goes through public APIs only: ``remixup.engine.train``,
``remixup.fused.train_fused``, the drop-ins, and ``remixup train`` under torchrun.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from remixup.config import TrainConfig, build_config
from remixup.errors import UserError
from remixup.methods import METHODS, Method, get_method

# Composed names (methods.py's grammar), not registry entries: every part of the grammar appears at least once.
COMPOSED = ("remix-cm-drw", "remix-mm-ldam-drw", "cutmix-drw", "remix-cm-rs", "manifold-mixup-drs", "remix-focal-rw",
            "remix-cb-drs", "la-drw")  # fmt: skip
NAMES = (*METHODS, *COMPOSED)

# The data kinds: images held in memory (digits, 8x8), image files (a folder of PNGs, decoded by the file loader) and
# vectors (two moons, through the tabular ResNet, which has dropout; "points2d": the same through the MLP, without).
KINDS = ("images", "files", "vectors", "points2d")
PATHS = ("single", "rerun", "loop", "stack", "compiled", "resume", "files", "ddp")
# The fields of a method that change what a run does: a sample covers every value of each.
FIELDS = ("mixer", "labels", "loss", "weighting", "sampling", "partner", "draw")


def method(name: str) -> Method:
    return get_method(name)


def kind_of(name: str) -> str:
    """The in-memory kind a name's runs use: CutMix and every third other name on images, the rest on vectors (whose
    model has dropout, and whose runs cost half as much)."""
    if method(name).mixer == "cutmix":
        return "images"
    return "images" if NAMES.index(name) % 3 == 0 else "vectors"


def stack_kind(name: str) -> str:
    """Where a stacked run is compared with a single run: a model without dropout (stacked runs draw other masks)."""
    return "images" if kind_of(name) == "images" else "points2d"


def sample(path: str, fields: tuple[str, ...] = FIELDS) -> tuple[str, ...]:
    """The names an expensive path checks: a covering sample that holds every value of every field in ``fields``
    (every mixer, label rule, loss, re-balancing, partner, λ draw, window) and both in-memory kinds, taken greedily
    from a starting point that differs by path (fixed, so a run of the suite checks what the last one did).
    ``REMIXUP_CONTRACT=all`` checks every name on every path."""
    if os.environ.get("REMIXUP_CONTRACT") == "all":
        return NAMES
    start = (PATHS.index(path) * 11) % len(NAMES)
    order = NAMES[start:] + NAMES[:start]
    values = {n: {(f, getattr(method(n), f)) for f in fields} | {("kind", kind_of(n))} for n in NAMES}
    left = set().union(*values.values())
    picked: set[str] = set()
    while left:  # greedy set cover: the name that adds the most values, the first in the rotated order on ties
        best = max(order, key=lambda n: len(values[n] & left))
        picked.add(best)
        left -= values[best]
    return tuple(n for n in NAMES if n in picked)


def refusal(name: str, path: str, kind: str) -> str | None:
    """What a path is documented to refuse (a fragment of its one-line message), or None where it must train.

    This is the whole support matrix: a change in what a path supports is a change here."""
    m = method(name)
    if m.mixer == "cutmix" and kind in ("vectors", "points2d", "points"):
        return "cuts and pastes image patches"
    if m.mixer == "manifold" and path == "stack":
        return "cannot stack this run"
    if m.mixer == "manifold" and path == "compiled":
        return "does not support manifold mixing"
    return None


def make_image_folder(root: Path) -> Path:
    """train/ and val/ with three classes of 12x12 RGB PNGs, long-tailed (8, 4, 2) in train."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split, per_class in (("train", (8, 4, 2)), ("val", (2, 2, 2))):
        for c, n in enumerate(per_class):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(torch.randint(0, 256, (12, 12, 3), generator=g, dtype=torch.uint8).numpy()).save(
                    folder / f"{i}.png"
                )
    return root


def config(out: Path, name: str, kind: str, *extra: str, folder: Path | None = None) -> TrainConfig:
    """A 2-epoch run of ``name`` on ``kind`` (``folder``: the image folder or npz file of "files" and "points"):
    deferred re-balancing from epoch 1, CMO-style windows opened at epoch 1, a small learning rate (stacked runs
    stay within rounding of single runs), one thread."""
    data = {
        "images": ["data.dataset=digits", "data.ratio=100", "optim.batch_size=64"],
        "vectors": ["data.dataset=moons", "data.ratio=100", "model.name=tabular_resnet", "optim.batch_size=64"],
        "points2d": ["data.dataset=moons", "data.ratio=100", "model.name=mlp", "optim.batch_size=64"],
        "points": ["data.dataset=npz", f"data.root={folder}", "data.imbalance=none", "optim.batch_size=16"],
        "files": ["data.dataset=imagefolder", f"data.root={folder}", "data.imbalance=none", "data.image_size=16", "model.name=digits_cnn",
                  "optim.batch_size=4", "run.workers=0", "run.eval_batch_size=8"],
    }[kind]  # fmt: skip
    m = method(name)
    window = ["mixing.skip_first=1", "mixing.skip_last=0"] if (m.skip_first or m.skip_last) else []
    return build_config("paper", epochs=2, overrides=[
        f"method.name={name}", *data, "optim.lr=0.02", "schedule.deferral_epoch=1", *window, f"run.out={out}",
        "run.eval_every=2", "run.progress=false", "run.threads=1", "run.tensorboard=false", "run.device=cpu", *extra])  # fmt: skip


def make_points(path: Path) -> Path:
    """An npz of 1-D vectors with two values only, -1 (class 0) and +1 (class 1): a mixed pair of the two classes
    shows its λ in the mixed input (1 − 2λ), so a model can see what a run drew."""
    import numpy as np

    y = np.arange(64) % 2
    x = (2.0 * y - 1.0).astype(np.float32)[:, None]
    np.savez(path, x_train=x, y_train=y, x_test=x[:16], y_test=y[:16])
    return path


def dropout_net(num_classes: int = 3) -> nn.Module:
    """A user's own small classifier with dropout, for image files (any size): built without touching torch's global
    generator, so that the run itself must seed what its dropout draws."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 16), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(16, num_classes))  # fmt: skip


def trains_or_refuses(fn: Callable[[], Any], *outs: Path) -> str | None:
    """Run ``fn``; None when it trained, else the message of the UserError it raised, which must be one line and come
    before any file was written (every folder in ``outs`` absent or empty). Any other exception fails the test."""
    try:
        fn()
    except UserError as exc:
        message = str(exc)
        assert message and "\n" not in message.strip(), f"a refusal must be one line; got {message!r}"
        for out in outs:
            assert not out.exists() or not any(out.iterdir()), f"refused after writing {sorted(p.name for p in out.iterdir())}"
        return message
    return None


def expect(outcome: str | None, name: str, path: str, kind: str) -> None:
    """The outcome of ``trains_or_refuses`` is what :func:`refusal` documents for (name, path, kind)."""
    want = refusal(name, path, kind)
    if want is None:
        assert outcome is None, f"{name} on {kind} through {path} must train; it refused: {outcome}"
    else:
        assert outcome is not None and want in outcome, (
            f"{name} on {kind} through {path} must be refused ({want!r}); got {outcome!r}"
        )


TIMING = ("images_per_s", "time_s", "wall_time_s")


def result(out: Path) -> dict[str, Any]:
    """What a finished run folder holds, less timings: the model's tensors, the history and the summary."""
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    summary = json.loads((out / "summary.json").read_text())
    return {
        "model": state["model"],
        "history": [{k: v for k, v in row.items() if k not in TIMING} for row in state["history"]],
        "summary": {k: v for k, v in summary.items() if k not in (*TIMING, "fused")},
    }


def assert_identical(got: dict[str, Any], want: dict[str, Any], what: str) -> None:
    """Bit-identical runs: every model tensor equal, the same history and summary (timings aside)."""
    assert got["model"].keys() == want["model"].keys(), what
    differ = [k for k in want["model"] if not torch.equal(got["model"][k], want["model"][k])]
    assert not differ, f"{what}: {len(differ)} of {len(want['model'])} tensors differ (first: {differ[0]})"
    assert got["history"] == want["history"], f"{what}: the histories differ"
    assert got["summary"] == want["summary"], f"{what}: the summaries differ"


def assert_close(got: dict[str, Any], want: dict[str, Any], n_test: int, what: str) -> None:
    """The tolerance tests/test_fused.py documents for stacked runs: the same training within float32 summation order
    (train loss within 1e-3 relative), and the final top-1 within two test samples."""
    g, w = got["summary"], want["summary"]
    assert g["train_loss"] == pytest.approx(w["train_loss"], rel=1e-3), what
    assert g["top1"] == pytest.approx(w["top1"], abs=2 * 100 / n_test), what
    assert g["class_counts"] == w["class_counts"] and g["method"] == w["method"], what
