"""Fused runs (remixup.fused): K runs trained as one stacked model equal the same K runs trained alone.

Tolerance. A fused step computes every run's forward and backward pass in batched (grouped) kernels whose
summation order differs from the single run's. In float32 that is ~1e-7 per step, until some activation sits
within rounding of a ReLU's or max-pool's kink: there the two runs take different branches and from then on differ
as any two runs with different summation order do (after ~7 steps at lr 0.1 on the digits CNN). So the
step-by-step test runs in float64: the rounding is then ~1e-16 and no branch flips in 217 steps; the test allows
1e-9 (the largest difference seen was 9e-14 over 210 steps at batch 32). A real difference (one other mixing draw, a missed re-weighting or
learning-rate step) moves parameters by 1e-2 or more, which ``test_the_comparison_sees_a_different_run`` checks
the comparison can see. The float32 end-to-end test uses a small learning rate so that its runs stay within
rounding of each other, and compares final metrics within two test images.
"""

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import assert_summary_consistent
from remixup import engine, fused
from remixup.commands import fused as fused_command
from remixup.config import TrainConfig, build_config
from remixup.errors import UserError
from remixup.evaluation import evaluate_checkpoint
from remixup.runtime import Dist, Precision

# (method, seed, subset seed): a re-weighted, a re-sampled and a CutMix run, deferral inside the run
MEMBERS = [("remix-drw", 0, 0), ("drs", 1, 2), ("cutmix", 2, 1)]


def tiny(out: Path, method: str, seed: int, subset_seed: int = 0, epochs: int = 14, *extra: str) -> TrainConfig:
    """Long-tailed digits (ρ = 10, 503 images), the LDAM recipe scaled to ``epochs``, batch 32, one thread."""
    return build_config("ldam", epochs=epochs, overrides=[
        f"method.name={method}", "data.dataset=digits", "data.ratio=10", "optim.batch_size=32", f"run.out={out}",
        f"run.seed={seed}", f"run.subset_seed={subset_seed}", "run.eval_every=1", "run.progress=false",
        "run.threads=1", "run.tensorboard=false", "run.device=cpu", *extra])  # fmt: skip


class OneStep:
    """One batch per iteration from a loader's current epoch (so a loop can be compared after every step), as
    ``dtype``."""

    def __init__(self, iterator, dtype: torch.dtype = torch.float64):  # noqa: ANN001
        self.iterator, self.dtype = iterator, dtype

    def __len__(self) -> int:
        return 1

    def __iter__(self):  # noqa: ANN204
        x, y = next(self.iterator)
        yield x.to(self.dtype), y


def _setup(configs: list[TrainConfig], dtype: torch.dtype = torch.float32) -> list[engine.Training]:
    runs = [engine.Training(c, Dist(), torch.device("cpu")) for c in configs]
    for run in runs:
        assert run.setup(resume=False, model=None, fork=None) is None
        run.model.to(dtype)  # in place: the optimiser keeps its parameters
    return runs


def _worst(group: fused.FusedGroup, singles: list[engine.Training]) -> float:
    worst = 0.0
    for k, single in enumerate(singles):
        for name, p in single.model.named_parameters():
            worst = max(worst, (group.params[name][k] - p).abs().max().item())
    return worst


@pytest.mark.slow
def test_fused_runs_step_by_step_equal_single_runs(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    small = ("optim.batch_size=16",)  # 31 steps per epoch, 217 in 7 epochs
    configs = [tiny(tmp_path / f"f{k}", m, s, t, 7, *small) for k, (m, s, t) in enumerate(MEMBERS)]
    alone = _setup([tiny(tmp_path / f"s{k}", m, s, t, 7, *small) for k, (m, s, t) in enumerate(MEMBERS)], torch.float64)
    runs = _setup(configs, torch.float64)
    group = fused.FusedGroup(runs, precision=Precision(), strategy="stack")
    assert _worst(group, alone) == 0.0  # the same seeded initialisation
    steps, worst = 0, 0.0
    for epoch in range(configs[0].run.epochs):
        lr = engine.lr_at(epoch, configs[0])
        group.set_lr(lr)
        for run, single in zip(runs, alone, strict=True):
            run.begin_epoch(epoch, choose_threads=False)
            single.begin_epoch(epoch, choose_threads=False)
            for g in single.optimizer.param_groups:
                g["lr"] = lr
        assert {len(r.loader) for r in runs + alone} == {31}
        fused_batches = [iter(r.loader) for r in runs]
        single_batches = [iter(s.loader) for s in alone]
        originals = [r.loader for r in runs]
        for _ in range(31):
            for run, it in zip(runs, fused_batches, strict=True):
                run.loader = OneStep(it)  # type: ignore[assignment]
            stats = group.train_epoch()
            for single, it, st in zip(alone, single_batches, stats, strict=True):
                ref = engine.train_one_epoch(single.model, OneStep(it), single.mixing, single.criterion, single.optimizer,
                                             amp=False, channels_last=False, bar=None, world=Dist())  # fmt: skip
                assert st["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-9)
                assert st["lam_y_forced"] == ref["lam_y_forced"]  # the same mixing draws
            steps += 1
            worst = max(worst, _worst(group, alone))
            assert worst < 1e-9, f"step {steps}: fused parameters moved {worst:.2e} from the single runs"
        for run, loader in zip(runs, originals, strict=True):
            run.loader = loader
    assert steps == 217
    for run in runs:  # the re-balanced phase and the learning-rate step ran: both lie inside the run
        assert 0 < run.config.schedule.deferral_epoch < run.config.run.epochs
        assert engine.lr_at(0, run.config) > engine.lr_at(run.config.run.epochs - 1, run.config)
    buffers = dict(alone[0].model.named_buffers())
    for name, b in group.buffers.items():  # BatchNorm running statistics followed too
        assert torch.allclose(b[0].float(), buffers[name].float(), rtol=1e-9, atol=1e-9), name


def test_the_comparison_sees_a_different_run(tmp_path: Path) -> None:
    # the same check fails when one run's mixing draws differ (its seed shifted by one): the tolerance is meaningful
    runs = _setup([tiny(tmp_path / "f0", "remix", 0, epochs=1)])
    alone = _setup([tiny(tmp_path / "s0", "remix", 0, epochs=1)])
    group = fused.FusedGroup(runs, precision=Precision(), strategy="stack")
    runs[0].begin_epoch(0, choose_threads=False)
    alone[0].begin_epoch(0, choose_threads=False)
    alone[0].mix_generator.manual_seed(12345)
    group.train_epoch()
    engine.train_one_epoch(alone[0].model, alone[0].loader, alone[0].mixing, alone[0].criterion, alone[0].optimizer,
                           amp=False, channels_last=False, bar=None, world=Dist())  # fmt: skip
    assert _worst(group, alone) > 1e-2


def _strip(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("time_s", "images_per_s")} for row in rows]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["loop", "stack"])
def test_train_fused_writes_run_folders_like_train(tmp_path: Path, strategy: str) -> None:
    # float32 and a small learning rate: the stacked runs' rounding differences stay rounding-sized for the 45 steps;
    # the loop strategy runs the single runs' own kernels and equals them exactly
    configs = [tiny(tmp_path / f"f{k}", m, s, t, 3, "optim.lr=0.02") for k, (m, s, t) in enumerate(MEMBERS)]
    summaries = fused.train_fused(configs, strategy=strategy)
    singles = [engine.train(tiny(tmp_path / f"s{k}", m, s, t, 3, "optim.lr=0.02")) for k, (m, s, t) in enumerate(MEMBERS)]
    n_test = 500
    for k, (got, want) in enumerate(zip(summaries, singles, strict=True)):
        assert_summary_consistent(got)
        assert got["fused"] == {"runs": 3}
        assert set(want) <= set(got) and got["method"] == want["method"] and got["seed"] == want["seed"]
        assert got["class_counts"] == want["class_counts"]  # the run's own subset
        if strategy == "loop":
            assert {k: got[k] for k in want if k not in ("images_per_s", "wall_time_s")} == {
                k: want[k] for k in want if k not in ("images_per_s", "wall_time_s")}  # fmt: skip
        assert got["top1"] == pytest.approx(want["top1"], abs=2 * 100 / n_test)  # within two test images
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-3)
        out = tmp_path / f"f{k}"
        assert {p.name for p in out.iterdir()} == {p.name for p in (tmp_path / f"s{k}").iterdir()}
        assert json.loads((out / "summary.json").read_text()) == got
        # `remixup eval` rebuilds the model from the fused run's checkpoint and finds the summary's result
        again = evaluate_checkpoint(out, device="cpu")
        assert again["top1"] == pytest.approx(got["top1"], abs=100 / n_test) and again["epoch"] == 3
    # finished runs are returned as they are
    assert fused.train_fused(configs, strategy=strategy) == summaries


@pytest.mark.slow
def test_resumed_fused_group_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def configs(root: Path) -> list[TrainConfig]:
        return [tiny(root / f"r{k}", m, s, t, 4, "run.keep_every=1") for k, (m, s, t) in enumerate(MEMBERS[:2])]

    whole = fused.train_fused(configs(tmp_path / "whole"), strategy="stack")
    real = fused._train_epoch

    def killed_after_two(group: fused.FusedGroup, epoch: int) -> None:
        if epoch == 2:
            raise KeyboardInterrupt
        real(group, epoch)

    monkeypatch.setattr(fused, "_train_epoch", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        fused.train_fused(configs(tmp_path / "cut"), strategy="stack")
    monkeypatch.setattr(fused, "_train_epoch", real)
    # a kill between the two runs' checkpoints: run 1 one epoch behind run 0; the group brings it level first
    behind = tmp_path / "cut" / "r1"
    shutil.copy(behind / "checkpoint_e001.pt", behind / "checkpoint.pt")
    resumed = fused.train_fused(configs(tmp_path / "cut"), strategy="stack")
    state_whole = torch.load(tmp_path / "whole" / "r0" / "checkpoint.pt", weights_only=True)
    state_cut = torch.load(tmp_path / "cut" / "r0" / "checkpoint.pt", weights_only=True)
    for name, value in state_whole["model"].items():
        assert torch.equal(value, state_cut["model"][name]), name  # run 0 resumed in lockstep: bit-identical
    assert _strip(state_whole["history"]) == _strip(state_cut["history"])
    assert resumed[0]["top1"] == whole[0]["top1"]
    assert resumed[1]["train_loss"] == pytest.approx(whole[1]["train_loss"], rel=1e-3)  # epoch 2 trained alone


def test_fused_groups_are_checked(tmp_path: Path) -> None:
    a, b = tiny(tmp_path / "a", "erm", 0), tiny(tmp_path / "b", "erm", 1)
    assert fused.group_key(a) == fused.group_key(b)
    with pytest.raises(UserError, match="cannot stack this run: manifold mixing"):
        fused.train_fused([a, tiny(tmp_path / "m", "manifold-mixup", 0)], strategy="stack")
    assert not (tmp_path / "a").exists() and not (tmp_path / "m").exists()  # refused before anything was written
    with pytest.raises(UserError, match="they differ in optim.lr"):
        fused.train_fused([a, tiny(tmp_path / "c", "erm", 1, 0, 14, "optim.lr=0.05")])
    with pytest.raises(UserError, match="one run folder each"):
        fused.train_fused([a, tiny(tmp_path / "a", "erm", 1)])
    with pytest.raises(UserError, match="need one run folder|at least one"):
        fused.train_fused([])
    runs = _setup([tiny(tmp_path / "g", "erm", 0, epochs=1)])
    with pytest.raises(UserError, match="need a CUDA device"):
        fused.FusedGroup(runs, precision=Precision(), graphs=True)
    with pytest.raises(UserError, match="strategy must be one of auto, stack, loop"):
        fused.FusedGroup(runs, precision=Precision(), strategy="threads")
    assert not fused.FusedGroup(runs, precision=Precision()).stacked  # auto on the CPU: the loop
    uneven = [tiny(tmp_path / "u0", "erm", 0, 0, 1), tiny(tmp_path / "u1", "erm", 1, 0, 1, "data.ratio=2")]
    with pytest.raises(UserError, match="same number of steps per epoch"):
        fused.train_fused(uneven)


def _in_process(argv: list[str], log_file: Path) -> int:
    """The grid's executor, in this process: ``python -m remixup.commands.fused ...`` or ``python -m remixup train ...``."""
    from remixup.cli import main

    return fused_command.main(argv[3:]) if argv[2] == "remixup.commands.fused" else main(argv[3:])


@pytest.mark.slow
def test_reproduce_fuse_groups_runs_and_skips_finished_ones(tmp_path: Path) -> None:
    from functools import partial

    from remixup import reproduce as rp
    from remixup.experiments import Column, Row, RunSpec
    from remixup.rundir import run_status

    column = Column("digits", "longtail", 10, "digits LT-10")
    extra = ("optim.batch_size=64", "run.threads=1", "run.eval_every=1", "run.tensorboard=false")
    grid = [RunSpec("t", Row(m, m), column, seed, 0, "ldam", 1, extra)
            for m, seed in [("remix-drw", 0), ("erm", 1), ("remix-mm", 0), ("drs", 2)]]  # fmt: skip
    command = partial(rp.build_command, device="cpu")
    groups = rp.fuse_groups(grid, 2, command, tmp_path)
    assert [[s.method for s in g] for g in groups] == [["remix-drw", "erm"], ["drs"], ["remix-mm"]]
    assert rp.fused_command(groups[0], tmp_path, command)[1:3] == ["-m", "remixup.commands.fused"]
    result = rp.run_grid_fused(grid, tmp_path, fuse=2, command=command, executor=_in_process, progress=False)
    assert sorted(result.finished) == sorted(s.run_id for s in grid) and not result.failed
    assert all(run_status(tmp_path / s.run_id) == "done" for s in grid)
    assert json.loads((tmp_path / grid[0].run_id / "summary.json").read_text())["fused"] == {"runs": 2}
    (tmp_path / grid[1].run_id / "summary.json").unlink()  # a run killed after its last checkpoint: resumed
    again = rp.run_grid_fused(grid, tmp_path, fuse=2, command=command, executor=_in_process, progress=False)
    assert again.finished == [grid[1].run_id] and len(again.skipped) == 3


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf:UserWarning")  # dynamo's own
def test_the_compiled_step_traces_and_equals_the_eager_one(tmp_path: Path) -> None:
    # what graphs=True compiles on CUDA (torch.compile of the fused forward and losses), traced here by dynamo with
    # the eager backend: the same numbers as the eager step, bit for bit
    torch.set_num_threads(1)
    members = [("remix-drw", 0), ("erm", 1)]
    compiled = fused.FusedGroup(_setup([tiny(tmp_path / f"c{s}", m, s, 0, 1) for m, s in members]), precision=Precision(),
                                strategy="stack")  # fmt: skip
    eager = fused.FusedGroup(_setup([tiny(tmp_path / f"e{s}", m, s, 0, 1) for m, s in members]), precision=Precision(),
                             strategy="stack")  # fmt: skip
    compiled.compile(backend="eager")
    for run in compiled.runs + eager.runs:
        run.begin_epoch(0, choose_threads=False)
    got, want = compiled.train_epoch(), eager.train_epoch()
    assert [g["train_loss"] for g in got] == [w["train_loss"] for w in want]
    assert all(torch.equal(compiled.params[n], eager.params[n]) for n in eager.params)


def test_reproduce_fuse_flag_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from remixup.cli import main

    assert main(["reproduce", "table1", "--fuse", "0", "--dry-run", "--runs-dir", str(tmp_path)]) == 2
    assert "`--fuse` must be >= 1" in capsys.readouterr().err
    assert main(["reproduce", "table1", "--fuse", "4", "--fork-deferred", "--runs-dir", str(tmp_path)]) == 2
    assert "do not combine" in capsys.readouterr().err
    assert fused_command.main(["--", "--dataset", "digits"]) == 2
    assert "needs --out" in capsys.readouterr().err
