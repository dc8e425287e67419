"""The contract every method keeps on every training path, checked for every registered method (and composed names).

In the manner of scikit-learn's common estimator checks: each test is parametrised over ``NAMES`` (the registry,
read at collection time, plus composed names), so a new registry entry is checked here without a test of its own.
The paths: a single run (``remixup.engine.train``), fused ``loop`` and ``stack`` (``remixup.fused.train_fused``), the
compiled step (``run.compile=on``, the eager backend on the CPU) and a resumed run; the drop-ins in DataLoader
workers and DDP are in test_contract_dropin.py and test_contract_ddp.py. Each path either trains or refuses with one
line before writing any file (``_contract.refusal`` is the support matrix); the same seed gives bit-identical runs,
dropout included; ``stack`` agrees with single runs within the tolerance tests/test_fused.py documents.

Every name trains alone and in a fused loop (bit-identical to alone); the dearer paths take ``_contract.sample``, a
fixed covering sample (``REMIXUP_CONTRACT=all`` checks every name on every path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _contract import (
    COMPOSED,
    FIELDS,
    METHODS,
    NAMES,
    assert_close,
    assert_identical,
    config,
    dropout_net,
    expect,
    kind_of,
    make_image_folder,
    method,
    refusal,
    result,
    sample,
    stack_kind,
    trains_or_refuses,
)
from conftest import assert_summary_consistent
from remixup import engine, fused


def test_the_suite_covers_the_registry_and_the_grammar() -> None:
    assert set(METHODS) <= set(NAMES) and not set(COMPOSED) & set(METHODS)
    assert all(method(n).name == n for n in COMPOSED)  # composed names are canonical: they name what they compose
    assert {kind_of(n) for n in NAMES} == {"images", "vectors"}  # files: test_image_files_* below
    assert {method(n).mixer for n in NAMES} == {None, "mixup", "cutmix", "manifold"}
    assert {method(n).partner for n in NAMES} == {"permutation", "class-weighted", "in-batch"}
    assert refusal("remix-mm", "stack", "images") and refusal("remix", "stack", "vectors") is None
    for path in ("rerun", "stack", "compiled", "resume"):  # each sample holds every value of every field
        picked = sample(path)
        for field in FIELDS:
            assert {getattr(method(n), field) for n in picked} == {getattr(method(n), field) for n in NAMES}, (path, field)


def test_the_whole_registry_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REMIXUP_CONTRACT", "all")
    assert sample("stack") == NAMES


@pytest.fixture(scope="session")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imgs"))


@pytest.fixture(scope="session")
def single(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], dict[str, Any]]:
    """The single run of (name, kind), trained once per session and shared by the comparisons below."""
    root = tmp_path_factory.mktemp("single")
    done: dict[tuple[str, str], dict[str, Any]] = {}

    def get(name: str, kind: str) -> dict[str, Any]:
        if (name, kind) not in done:
            out = root / f"{name}-{kind}"
            summary: list[dict[str, Any]] = []
            expect(trains_or_refuses(lambda: summary.append(engine.train(config(out, name, kind))), out), name, "single", kind)
            assert_summary_consistent(summary[0])
            assert summary[0]["method"] == name and summary[0]["epochs"] == 2
            done[(name, kind)] = result(out)
        return done[(name, kind)]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_single_run_trains_or_refuses(name: str, single: Callable, tmp_path: Path) -> None:
    if method(name).mixer == "cutmix":  # vectors: refused in one line, before the run folder holds anything
        out = tmp_path / "vectors"
        expect(trains_or_refuses(lambda: engine.train(config(out, name, "vectors")), out), name, "single", "vectors")
    single(name, kind_of(name))


@pytest.mark.slow
@pytest.mark.parametrize("name", sample("rerun"))
def test_rerun_in_one_process_is_bit_identical(name: str, single: Callable, tmp_path: Path) -> None:
    kind = kind_of(name)
    first = single(name, kind)
    engine.train(config(tmp_path / "again", name, kind))
    assert_identical(result(tmp_path / "again"), first, f"{name} on {kind}, run twice in one process")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["images", "vectors"])
def test_fused_loop_is_bit_identical_to_single_runs(kind: str, single: Callable, tmp_path: Path) -> None:
    # one group per shared configuration (fused.group_key: the classifier head, a method's window overrides), so
    # that the runs interleave step by step as in a real fused group
    names = [n for n in NAMES if kind_of(n) == kind]
    groups: dict[Any, list[tuple[str, Any]]] = {}
    for n in names:
        cfg = config(tmp_path / n, n, kind)
        if refusal(n, "loop", kind) is not None:
            expect(trains_or_refuses(lambda cfg=cfg: fused.train_fused([cfg], strategy="loop"), tmp_path / n), n, "loop", kind)
        else:
            groups.setdefault(fused.group_key(cfg), []).append((n, cfg))
    assert sum(map(len, groups.values())) > 1
    for members in groups.values():
        fused.train_fused([cfg for _, cfg in members], strategy="loop")
        for n, cfg in members:
            assert_identical(result(Path(cfg.run.out)), single(n, kind), f"{n} on {kind}: fused (loop) vs alone")


@pytest.mark.slow
@pytest.mark.parametrize("name", sample("stack"))
def test_fused_stack_trains_or_refuses_and_agrees_with_a_single_run(name: str, single: Callable, tmp_path: Path) -> None:
    # a group of one: the stacked step (vmap over the stacked parameters) with this method's mixing, on a model
    # without dropout (whose masks a stacked run would draw differently); with dropout it trains or refuses
    kind = stack_kind(name)
    out = tmp_path / "stack"
    outcome = trains_or_refuses(lambda: fused.train_fused([config(out, name, kind)], strategy="stack"), out)
    expect(outcome, name, "stack", kind)
    if outcome is None:
        n_test = single(name, kind)["summary"]["confusion"]
        assert_close(result(out), single(name, kind), sum(map(sum, n_test)), f"{name} on {kind}: fused (stack) vs alone")
    if kind_of(name) == "vectors":
        out = tmp_path / "dropout"
        trains_or_refuses(lambda: fused.train_fused([config(out, name, "vectors")], strategy="stack"), out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", sorted({*sample("compiled"), *(n for n in NAMES if refusal(n, "compiled", kind_of(n)))}, key=NAMES.index)
)
def test_compiled_step_trains_or_refuses_and_equals_the_eager_run(name: str, single: Callable, tmp_path: Path) -> None:
    kind = kind_of(name)
    out = tmp_path / "compiled"
    outcome = trains_or_refuses(lambda: engine.train(config(out, name, kind, "run.compile=on", "run.compile_backend=eager")), out)
    expect(outcome, name, "compiled", kind)
    if outcome is None:  # dynamo traces the forward; the eager backend runs the same kernels
        assert_identical(result(out), single(name, kind), f"{name} on {kind}: compiled (eager backend) vs eager")


class Interrupted(Exception):
    """Raised by ``on_epoch`` to stop a run after its first epoch, as a kill between epochs does."""


def _stop_after_first(epoch: int, row: dict[str, Any]) -> None:
    if epoch == 1:
        raise Interrupted


@pytest.mark.slow
@pytest.mark.parametrize("name", sample("resume"))
def test_resumed_run_is_bit_identical(name: str, single: Callable, tmp_path: Path) -> None:
    kind = kind_of(name)
    out = tmp_path / "resumed"
    with pytest.raises(Interrupted):
        engine.train(config(out, name, kind), on_epoch=_stop_after_first)
    assert not (out / "summary.json").exists()
    engine.train(config(out, name, kind), resume=True)
    assert_identical(result(out), single(name, kind), f"{name} on {kind}: interrupted after epoch 1 and resumed")


@pytest.mark.slow
@pytest.mark.parametrize("name", sample("files", ("mixer", "labels", "partner")))  # with a user's model that has dropout
def test_image_files_train_rerun_and_resume_bit_identically(name: str, folder: Path, tmp_path: Path) -> None:
    def cfg(out: Path, *extra: str) -> Any:
        return config(out, name, "files", *extra, folder=folder)

    outcome = trains_or_refuses(lambda: engine.train(cfg(tmp_path / "a"), model=dropout_net()), tmp_path / "a")
    expect(outcome, name, "single", "files")
    first = result(tmp_path / "a")
    assert first["summary"]["class_counts"] == [8, 4, 2]
    engine.train(cfg(tmp_path / "b"), model=dropout_net())
    assert_identical(result(tmp_path / "b"), first, f"{name} on image files, run twice in one process")
    with pytest.raises(Interrupted):
        engine.train(cfg(tmp_path / "c"), model=dropout_net(), on_epoch=_stop_after_first)
    engine.train(cfg(tmp_path / "c"), model=dropout_net(), resume=True)
    assert_identical(result(tmp_path / "c"), first, f"{name} on image files: interrupted after epoch 1 and resumed")
    out = tmp_path / "d"
    compiled = ("run.compile=on", "run.compile_backend=eager")
    outcome = trains_or_refuses(lambda: engine.train(cfg(out, *compiled), model=dropout_net()), out)
    expect(outcome, name, "compiled", "files")
    if outcome is None:
        assert_identical(result(out), first, f"{name} on image files: compiled (eager backend) vs eager")


@pytest.mark.slow
def test_an_npz_of_vectors_trains_or_refuses_before_writing(tmp_path: Path) -> None:
    import numpy as np

    from remixup.config import build_config

    y = np.arange(64) % 2
    np.savez(tmp_path / "vectors.npz", x_train=np.c_[y, 1 - y].astype(np.float32), y_train=y,
             x_test=np.c_[y, 1 - y][:16].astype(np.float32), y_test=y[:16])  # fmt: skip
    out = tmp_path / "run"
    cfg = build_config("paper", epochs=1, overrides=["data.dataset=npz", f"data.root={tmp_path / 'vectors.npz'}", "model.name=mlp",
                                                     "data.imbalance=none", "optim.batch_size=16", f"run.out={out}",
                                                     "run.threads=1", "run.progress=false", "run.tensorboard=false"])  # fmt: skip
    trains_or_refuses(lambda: engine.train(cfg), out)
