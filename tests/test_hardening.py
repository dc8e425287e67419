"""Faults, races and hostile files: a full disk, two processes on one run folder, planted links, crafted checkpoints,
non-finite training and inconsistent API input each end in one line (or a refusal), never in a lost run."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from remixup import _files, checkpoint
from remixup.cli import main
from remixup.config import TrainConfig, build_config
from remixup.engine import train
from remixup.errors import InvalidParameterError, UserError
from remixup.mixing import MixTransform, MixupMixer, RemixLabels, remix_label_factor
from remixup.rundir import RunFolder
from remixup.runtime import Dist

MOONS = ["data.dataset=moons", "data.ratio=10", "method.name=erm", "optim.batch_size=64", "run.threads=1", "run.progress=false"]
TRAIN = ["train", "--dataset", "moons", "--ratio", "10", "--method", "erm", "--no-progress", "optim.batch_size=64", "run.threads=1"]


def moons(out: Path, *extra: str, epochs: int = 2) -> TrainConfig:
    return build_config("paper", epochs=epochs, overrides=[*MOONS, f"run.out={out}", *extra])


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[Any], match: str) -> str:
    """Run the CLI in this process; it must exit 2 with exactly one stderr line matching ``match``."""
    code = main([str(a) for a in argv])
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]  # notes are not errors
    assert code == 2 and len(err) == 1, err
    assert __import__("re").search(match, err[0]), err[0]
    return err[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def moons_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-epoch moons run (read-only for the tests: copy it to change it)."""
    out = tmp_path_factory.mktemp("hardening") / "moons"
    train(moons(out))
    return out


def unfinished_copy(moons_run: Path, dest: Path) -> Path:
    """A copy of the run without its summary, so that --resume loads the checkpoint."""
    shutil.copytree(moons_run, dest)
    (dest / "summary.json").unlink()
    return dest


# 1. Tracebacks instead of one line ------------------------------------------------------------------------------


class _FullDisk:
    """A file handle whose writes fail with ENOSPC once ``limit`` bytes are written."""

    def __init__(self, fh: Any, limit: int) -> None:
        self.fh, self.left = fh, limit

    def write(self, data: bytes) -> int:
        self.left -= len(data)
        if self.left < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.fh.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)

    def __enter__(self) -> _FullDisk:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


@pytest.mark.slow
def test_disk_full_while_saving_a_checkpoint_is_one_line_and_the_previous_survives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real, saves = _files.create_exclusive, []

    def create(path: Path) -> Any:
        fh = real(path)
        if path.name.startswith(".checkpoint.pt."):
            saves.append(path)
            if len(saves) == 2:  # the second epoch's checkpoint meets a full disk
                return _FullDisk(fh, 1000)
        return fh

    monkeypatch.setattr(_files, "create_exclusive", create, raising=False)
    out = tmp_path / "run"
    one_line_error(capsys, [*TRAIN, "--epochs", "2", "--out", out], r"cannot write the checkpoint .*checkpoint\.pt: No space left")
    assert checkpoint.load(out / "checkpoint.pt")["epoch"] == 1  # the previous checkpoint survived
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_a_failing_fsync_names_the_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".checkpoint.pt."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = tmp_path / "run"
    one_line_error(capsys, [*TRAIN, "--epochs", "1", "--out", out], r"checkpoint\.pt: No space left on device")


@pytest.mark.slow
def test_eval_on_data_of_another_input_shape_is_one_line(moons_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    npz = tmp_path / "five.npz"
    rng = np.random.default_rng(0)
    np.savez(npz, x_train=rng.normal(size=(20, 5)).astype(np.float32), y_train=np.arange(20) % 2,
             x_test=rng.normal(size=(10, 5)).astype(np.float32), y_test=np.arange(10) % 2)  # fmt: skip
    one_line_error(capsys, ["eval", moons_run, "--dataset", "npz", "--data-root", npz, "--device", "cpu"],
                   r"does not fit mlp for npz \(5,\) with 2 classes \(shapes differ: layer1.0.weight \(64, 2\) in the checkpoint, "
                   r"\(64, 5\) here\)")  # fmt: skip


def _craft(run: Path, change: Any) -> None:
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, run / "checkpoint.pt")


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        lambda s: s.update(model={f"other.{k}": v for k, v in s["model"].items()}),  # another model's names
        lambda s: s["model"].update({k: torch.zeros(3, 3) for k in list(s["model"])[:1]}),  # another model's shapes
    ],
    ids=["names", "shapes"],
)
def test_weights_of_another_model_are_refused_by_eval_and_resume(
    change: Any, moons_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = unfinished_copy(moons_run, tmp_path / "run")
    _craft(run, change)
    one_line_error(capsys, ["eval", run, "--device", "cpu"], r"checkpoint .* does not fit mlp for moons")
    one_line_error(capsys, ["train", "--resume", "--out", run, "--no-progress"], r"checkpoint .* does not fit mlp for moons")


@pytest.mark.slow
@pytest.mark.parametrize(("key", "command"), [("model_name", "eval"), ("epoch", "eval"), ("optimizer", "resume"), ("rng", "resume")])
def test_a_checkpoint_missing_a_key_is_one_line(key: str, command: str, moons_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run = unfinished_copy(moons_run, tmp_path / "run")
    _craft(run, lambda s: s.pop(key))
    argv = ["eval", run, "--device", "cpu"] if command == "eval" else ["train", "--resume", "--out", run, "--no-progress"]
    one_line_error(capsys, argv, f"checkpoint .* lacks '{key}'")


# 2. Lost results: one owner per run folder ----------------------------------------------------------------------


@pytest.mark.slow
def test_a_folder_owned_by_a_live_process_is_refused_naming_the_owner(tmp_path: Path) -> None:
    out = tmp_path / "run"
    folder = RunFolder(out)
    assert folder.prepare(False) is False  # this process owns it now
    try:
        for extra in ([], ["--resume"]):
            r = subprocess.run([sys.executable, "-m", "remixup", *TRAIN, "--epochs", "1", "--out", str(out), *extra],
                               capture_output=True, text=True, timeout=300)  # fmt: skip
            assert r.returncode == 2, r.stderr
            assert r.stderr.strip() == (
                f"remixup: error: {out} is in use by another remixup process (pid {os.getpid()}); wait for it to finish, "
                "or choose another --out"
            )
        assert sorted(p.name for p in out.iterdir()) == [".remixup-run"]  # nothing written by the refused runs
    finally:
        folder.release()


@pytest.mark.slow
def test_a_killed_owner_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = "import sys, time; from remixup.rundir import RunFolder; RunFolder(sys.argv[1]).prepare(False); print('owned', flush=True); time.sleep(120)"
    child = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "owned"
        with pytest.raises(UserError, match=rf"in use by another remixup process \(pid {child.pid}\)"):
            RunFolder(out).prepare(False)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        if child.stdout is not None:
            child.stdout.close()
    folder = RunFolder(out)
    assert folder.prepare(False) is False  # the kernel dropped the lock with its process
    folder.release()


@pytest.mark.slow
def test_two_runs_started_together_on_one_folder_do_not_both_succeed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "remixup", *TRAIN, "--epochs", "2", "--out", str(out)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    for p in procs:
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "is in use by another remixup process" in refused or "already holds a run" in refused
    assert json.loads((out / "summary.json").read_text())["epochs"] == 2


# 3. User files are not overwritten ------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [["config.yaml", "metrics.csv"], ["notes.txt"], ["checkpoint.pt", "notes.txt"]])
def test_an_out_folder_with_files_of_its_own_is_refused_untouched(
    names: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    for name in names:
        (out / name).write_text(f"the user's own {name}\n")
    before = snapshot(out)
    one_line_error(capsys, [*TRAIN, "--epochs", "1", "--out", out], r"holds files that remixup did not write")
    assert snapshot(out) == before


# 4. Writes never follow a planted link --------------------------------------------------------------------------


def test_temporary_files_are_never_opened_through_a_planted_link(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = tmp_path / "run"
    folder.mkdir()
    tokens = iter(["0" * 16, "1" * 16, "2" * 16, "3" * 16])
    monkeypatch.setattr("secrets.token_hex", lambda n: next(tokens))  # the first name tried is a planted link
    pid = os.getpid()
    for name in (f".checkpoint.pt.{pid}.tmp", f".checkpoint.pt.{pid}-{'0' * 16}.tmp", f".write-test.{pid}",
                 f".write-test.{pid}-{'1' * 16}.tmp"):  # fmt: skip
        (folder / name).symlink_to(victim)
    _files.ensure_writable(folder)
    checkpoint.save({"format": checkpoint.FORMAT, "model": {}, "config": {}}, folder / "checkpoint.pt")
    assert victim.read_text() == "precious"
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["format"] == checkpoint.FORMAT
    (folder / "config.yaml").symlink_to(victim)
    _files.atomic_write(folder / "config.yaml", "new")  # a link at the target is replaced, not written through
    assert victim.read_text() == "precious" and not (folder / "config.yaml").is_symlink()


# 5. Leftovers ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_temporary_file_of_a_killed_save_is_removed_when_the_folder_is_next_opened(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    code = ("import sys, time; from remixup._files import atomic_write\n"
            "def write(fh):\n    fh.write(b'x' * 4096); fh.flush(); print('writing', flush=True); time.sleep(120)\n"
            "atomic_write(sys.argv[1], write)")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code, str(out / "checkpoint.pt")], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "writing"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        if child.stdout is not None:
            child.stdout.close()
    left = [p.name for p in out.iterdir()]
    assert len(left) == 1 and left[0].startswith(".checkpoint.pt.") and left[0].endswith(".tmp")
    folder = RunFolder(out)
    folder.prepare("auto")
    folder.release()
    assert [p.name for p in out.iterdir()] == [".remixup-run"]


def test_stale_temporary_files_of_dead_processes_only_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    stale, live = tmp_path / f".a.bin.{dead}-{'0' * 16}.tmp", tmp_path / f".a.bin.{os.getpid()}-{'1' * 16}.tmp"
    for p in (stale, live):
        p.write_bytes(b"x")
    assert _files.remove_stale_temps(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["resume-missing", "batch-too-large", "refused-fork"])
def test_a_failed_run_leaves_no_folder_behind(failure: str, moons_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "run"
    with pytest.raises(UserError, match={"resume-missing": "folder does not exist", "batch-too-large": "larger than the training set",
                                         "refused-fork": "cannot fork"}[failure]):  # fmt: skip
        if failure == "resume-missing":
            train(moons(out), resume=True)
        elif failure == "batch-too-large":
            train(moons(out, "optim.batch_size=100000"))
        else:
            train(moons(out, "optim.lr=0.3", epochs=3), fork=moons_run)
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_a_failed_run_leaves_an_empty_folder_empty(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="larger than the training set"):
        train(moons(tmp_path, "optim.batch_size=100000"))
    assert list(tmp_path.iterdir()) == []


# 6. Non-finite training -----------------------------------------------------------------------------------------


class _BlowsUp(nn.Module):
    """A classifier whose buffer turns infinite after 20 training steps (in epoch 2) while its loss stays finite."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 2)
        self.register_buffer("stat", torch.zeros(2))
        self.steps = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps += 1
            if self.steps > 20:
                self.stat.fill_(float("inf"))
        return self.fc(x)


@pytest.mark.slow
def test_a_non_finite_buffer_stops_the_run_naming_its_epoch_and_no_such_checkpoint_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(UserError, match=r"stat became non-finite in epoch 2; the run stopped and the last good checkpoint is "
                                        r".*checkpoint\.pt \(epoch 1\)"):  # fmt: skip
        train(moons(out, epochs=3), model=_BlowsUp())
    state = checkpoint.load(out / "checkpoint.pt")
    assert state["epoch"] == 1 and checkpoint.first_nonfinite(state["model"]) is None


def test_first_nonfinite_names_the_first_bad_tensor() -> None:
    ok = {"a": torch.ones(3), "n": torch.tensor([1, 2])}
    assert checkpoint.first_nonfinite(ok) is None
    assert checkpoint.first_nonfinite({**ok, "b": torch.tensor([0.0, float("nan")]), "c": torch.tensor([float("inf")])}) == "b"


# 7. The API refuses inconsistent input --------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [2, 4])
def test_mix_transform_refuses_class_counts_of_another_number_of_classes(num_classes: int) -> None:
    with pytest.raises(InvalidParameterError, match=rf"`num_classes` of `MixTransform` must equal .*\(3 class counts\); got {num_classes}"):
        MixTransform(MixupMixer(1.0), RemixLabels([500, 50, 5]), num_classes=num_classes)
    MixTransform(MixupMixer(1.0), RemixLabels([500, 50, 5]), num_classes=3)


@pytest.mark.parametrize(
    ("lam", "n_i", "n_j", "match"),
    [
        (1.5, 500, 5, r"`lam_x` of `remix_label_factor` must be in \[0, 1\]; got 1.5"),
        (-0.1, 500, 5, r"`lam_x` .* must be in \[0, 1\]"),
        (float("nan"), 500, 5, r"`lam_x` .* must be finite"),
        (0.5, [500, -5], [5, 5], r"`n_i` of `remix_label_factor` must hold positive finite counts; got \[500, -5\]"),
        (0.5, 500, 0, r"`n_j` .* positive finite counts; got 0"),
        (0.5, 500, float("inf"), r"`n_j` .* positive finite counts"),
    ],
)
def test_remix_label_factor_refuses_bad_python_numbers(lam: float, n_i: Any, n_j: Any, match: str) -> None:
    with pytest.raises(InvalidParameterError, match=match):
        remix_label_factor(lam, n_i, n_j)


def test_remix_label_factor_still_takes_tensors_and_numbers() -> None:
    assert remix_label_factor(0.2, 500, 5).item() == 0.0
    got = remix_label_factor(torch.tensor([0.2, 0.9]), torch.tensor([500, 5]), torch.tensor([5, 500]))
    assert got.tolist() == [0.0, 1.0]


# 8. DDP: SyncBatchNorm ------------------------------------------------------------------------------------------


def test_sync_batchnorm_converts_under_ddp_only_and_needs_cuda() -> None:
    from remixup.runtime import sync_batchnorm

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert sync_batchnorm(model, Dist(), torch.device("cpu"), True) is model  # one process: nothing to synchronise
    assert sync_batchnorm(model, Dist(0, 2, 0), torch.device("cuda"), False) is model
    with pytest.raises(UserError, match="model.sync_bn=true needs CUDA"):
        sync_batchnorm(model, Dist(0, 2, 0), torch.device("cpu"), True)
    converted = sync_batchnorm(model, Dist(0, 2, 0), torch.device("cuda"), True)  # conversion itself runs anywhere
    assert isinstance(converted[1], nn.SyncBatchNorm) and converted[1].weight is model[1].weight
    assert list(converted.state_dict()) == list(model.state_dict())  # checkpoints load into plain BatchNorm


def test_sync_bn_is_a_config_key() -> None:
    assert build_config("paper", overrides=["model.sync_bn=true"]).model.sync_bn is True
    assert build_config("paper").model.sync_bn is False
