"""The grid runner: enumeration, --dry-run, sharding, skip/resume, and the Markdown tables (no real training)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from remixup import reproduce as rp
from remixup.cli import main
from remixup.experiments import (
    EXPERIMENTS,
    KAPPA_KEY,
    TABLE1,
    TABLE5,
    enumerate_runs,
    get_experiment,
)
from remixup.rundir import RunFolder


def fake_finished(run_dir: Path, top1: float) -> None:
    """A run folder as the engine leaves it at the end (summary.json last)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "checkpoint.pt").write_bytes(b"x")
    (run_dir / "summary.json").write_text(json.dumps({"top1": top1, "method": "x"}))


class FakeEngine:
    """An executor that records commands and 'trains' by writing summary.json (or fails for chosen runs)."""

    def __init__(self, fail: set[str] = frozenset(), top1: float = 50.0) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.top1 = top1

    def __call__(self, argv: list[str], log_file: Path) -> int:
        self.calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        if out.name in self.fail:
            out.mkdir(parents=True, exist_ok=True)
            (out / "checkpoint.pt").write_bytes(b"half")
            return 1
        fake_finished(out, self.top1)
        return 0


# --------------------------------------------------------------------------------------------------- the grids
def test_table1_grid_size_and_cells():
    runs = enumerate_runs(TABLE1)
    assert len(runs) == 8 * 8 * 5
    assert len({r.run_id for r in runs}) == len(runs)
    assert {r.method for r in runs} == {"erm", "drs", "drw", "ldam-drw", "mixup", "remix", "remix-drs", "remix-drw"}
    assert {(r.column.dataset, r.column.imbalance, r.column.ratio) for r in runs} == {
        (d, p, k) for d in ("cifar10", "cifar100") for p in ("longtail", "step") for k in (100, 10)
    }
    assert {r.recipe for r in runs} == {"paper"}


def test_paper_numbers_are_spec_values():
    cells = {(r.row.label, r.column.label): TABLE1.paper_value(r.row, r.column) for r in enumerate_runs(TABLE1)}
    assert cells[("ERM", "C10 LT-100")] == 71.86
    assert cells[("Remix-DRW", "C100 Step-10")] == 60.44
    assert cells[("Mixup", "C10 Step-100")] == 65.80
    assert all(v is not None for v in cells.values())
    t5 = {(r.row.label, r.column.label): TABLE5.paper_value(r.row, r.column) for r in enumerate_runs(TABLE5)}
    assert t5[("Remix-CM", "C100 LT-10")] == 60.15
    assert {r.method for r in enumerate_runs(TABLE5)} == {"manifold-mixup", "remix-mm", "cutmix", "remix-cm"}
    inat = get_experiment("inat")
    assert inat.metric == "top1_error" and inat.recipe == "inat200"
    cinic = get_experiment("cinic10")
    assert cinic.paper[("Remix-DRW", "CINIC-10 LT-100")] == 67.76


def test_sweeps_share_the_default_run_with_table1():
    kappa = enumerate_runs(get_experiment("kappa"), seeds=[0])
    tau = enumerate_runs(get_experiment("tau"), seeds=[0])
    assert len(kappa) == 6 and len(tau) == 5
    t1_ids = {r.run_id for r in enumerate_runs(TABLE1, seeds=[0])}
    shared = [r for r in kappa + tau if r.run_id in t1_ids]
    assert [r.row.label for r in shared] == ["κ = 3", "τ = 0.5"]
    assert any(f"{KAPPA_KEY}=1.5" in r.overrides for r in kappa)
    # the paper's number sits on the default point only
    exp = get_experiment("kappa")
    assert [exp.paper_value(r.row, r.column) for r in kappa] == [None, None, None, 79.76, None, None]


def test_seeds_epochs_and_recipe_enter_the_run_id():
    a = enumerate_runs(TABLE1, seeds=[0, 1], subset_seeds=[0, 7], epochs=25, recipe="ldam")
    assert len(a) == 8 * 8 * 4
    ids = {r.run_id for r in a}
    assert len(ids) == len(a)
    assert all("_ldam_e25_" in i for i in ids)
    assert not ids & {r.run_id for r in enumerate_runs(TABLE1, seeds=[0, 1], subset_seeds=[0, 7])}


@pytest.mark.parametrize("bad", [dict(seeds=[]), dict(seeds=[1, 1]), dict(subset_seeds=[])])
def test_bad_seed_lists(bad):
    with pytest.raises(ValueError, match="seed"):
        enumerate_runs(TABLE1, **bad)


def test_unknown_table_lists_valid_ones():
    with pytest.raises(ValueError, match="valid tables: table1, table5"):
        get_experiment("table2")


def test_parse_seeds_and_shard():
    assert rp.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert rp.parse_seeds("0-2,7") == [0, 1, 2, 7]
    assert rp.parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "1", "a/b", "-1/3", "0/0"):
        with pytest.raises(ValueError, match="--shard"):
            rp.parse_shard(bad)
    with pytest.raises(ValueError, match="seeds"):
        rp.parse_seeds("3-1")


@pytest.mark.parametrize("n", [1, 3, 7])
def test_shards_partition_the_grid(n):
    grid = enumerate_runs(TABLE1)
    shards = [rp.take_shard(grid, i, n) for i in range(n)]
    ids = [r.run_id for shard in shards for r in shard]
    assert sorted(ids) == sorted(r.run_id for r in grid)  # union = all, and no run twice
    assert len(ids) == len(set(ids))
    for i, shard in enumerate(shards):
        assert [grid.index(r) % n for r in shard] == [i] * len(shard)


# ------------------------------------------------------------------------------------------------- commands
def test_build_command(tmp_path):
    spec = enumerate_runs(get_experiment("kappa"), seeds=[3], subset_seeds=[1], epochs=2)[0]
    cmd = rp.build_command(spec, tmp_path / "r", True, data_root="/data", device="cpu", python="py")
    assert cmd[:4] == ["py", "-m", "remixup", "train"]
    text = " ".join(cmd)
    for part in ("--dataset cifar10", "--imbalance longtail", "--ratio 100", "--method remix-drw",
                 "--recipe paper", "--seed 3", "--subset-seed 1", "--epochs 2", "--data-root /data",
                 "--device cpu", f"--out {tmp_path / 'r'}", "--resume", f"{KAPPA_KEY}=1"):
        assert part in text
    inat = enumerate_runs(get_experiment("inat"), seeds=[0])[0]
    assert "--ratio" not in rp.build_command(inat, tmp_path, False)


def test_dry_run_lists_whole_grid(tmp_path, capsys):
    runs_dir = tmp_path / "runs"
    first = enumerate_runs(TABLE1)[0]
    fake_finished(runs_dir / first.run_id, 70.0)
    assert main(["reproduce", "table1", "--dry-run", "--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    listed = [line for line in out if line.startswith("[")]
    assert len(listed) == 320
    assert out[0].startswith("# table1: 320 runs")
    assert " done " in listed[0] and " todo " in listed[1]
    assert all("-m remixup train --dataset" in line for line in listed)
    assert out[-1] == "# 1 done, 0 to resume, 319 to run"
    assert not (runs_dir / "table1.md").exists()  # a dry run writes nothing


def test_dry_run_shard(tmp_path, capsys):
    assert main(["reproduce", "table5", "--dry-run", "--shard", "2/3", "--seeds", "0",
                 "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "32 runs, shard 2/3: 10 runs" in out
    assert out.count("\n[") == 10


def test_cli_user_errors(tmp_path, capsys):
    assert main(["reproduce", "nope", "--dry-run"]) == 2
    assert "unknown table 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reproduce", "table1", "--shard", "5/2"])
    assert main(["reproduce", "table1", "--epochs", "0", "--dry-run"]) == 2
    assert main(["reproduce", "table1", "--set", "novalue", "--dry-run"]) == 2


# ------------------------------------------------------------------------------------------- skip and resume
@pytest.mark.slow
def test_run_grid_skips_resumes_and_runs(tmp_path):
    runs = enumerate_runs(TABLE5, seeds=[0], subset_seeds=[0])[:4]
    done, half, stale, fresh = runs
    fake_finished(tmp_path / done.run_id, 60.0)
    (tmp_path / half.run_id).mkdir()
    (tmp_path / half.run_id / "checkpoint.pt").write_bytes(b"epoch 3")
    (tmp_path / stale.run_id).mkdir()
    (tmp_path / stale.run_id / "config.yaml").write_text("partial: true\n")  # started, no finished epoch
    engine = FakeEngine()
    result = rp.run_grid(runs, tmp_path, command=partial(rp.build_command, python="py"), executor=engine,
                         progress=False, echo=lambda msg: None)
    assert result.skipped == [done.run_id]
    assert result.finished == [half.run_id, stale.run_id, fresh.run_id]
    assert result.failed == []
    by_out = {Path(c[c.index("--out") + 1]).name: c for c in engine.calls}
    assert set(by_out) == {half.run_id, stale.run_id, fresh.run_id}
    assert "--resume" in by_out[half.run_id]
    assert "--resume" not in by_out[stale.run_id] and "--resume" not in by_out[fresh.run_id]
    assert not (tmp_path / stale.run_id / "config.yaml").exists()  # cleared before the fresh start
    # A second pass finds everything finished and runs nothing.
    again = FakeEngine()
    result = rp.run_grid(runs, tmp_path, command=partial(rp.build_command, python="py"), executor=again,
                         progress=False, echo=lambda msg: None)
    assert again.calls == [] and len(result.skipped) == 4


def test_run_grid_failure_and_missing_summary(tmp_path):
    runs = enumerate_runs(TABLE5, seeds=[0])[:3]
    engine = FakeEngine(fail={runs[0].run_id})
    result = rp.run_grid(runs, tmp_path, command=partial(rp.build_command, python="py"), executor=engine,
                         progress=False, echo=lambda msg: None)
    assert result.failed == [runs[0].run_id] and len(result.finished) == 2
    # exit 0 without summary.json is not a finished run
    result = rp.run_grid(runs[:1], tmp_path, command=partial(rp.build_command, python="py"),
                         executor=lambda argv, log: 0, progress=False, echo=lambda msg: None)
    assert result.failed == [runs[0].run_id]
    # fail-fast stops after the first failure; the failed run resumes from its checkpoint next time
    engine = FakeEngine(fail={runs[0].run_id})
    shutil_runs = [runs[0], *enumerate_runs(TABLE5, seeds=[1])[:2]]
    result = rp.run_grid(shutil_runs, tmp_path, command=partial(rp.build_command, python="py"), executor=engine,
                         fail_fast=True, progress=False, echo=lambda msg: None)
    assert len(engine.calls) == 1 and "--resume" in engine.calls[0]


def test_subprocess_executor_logs(tmp_path):
    import sys

    log = tmp_path / "logs" / "x.log"
    code = rp.subprocess_executor([sys.executable, "-c", "print('hello'); raise SystemExit(3)"], log)
    assert code == 3
    text = log.read_text()
    assert text.startswith("$ ") and "hello" in text


# ------------------------------------------------------------------------------------------------------ tables
def test_format_cell():
    assert rp.format_cell(rp.CellStats((70.0, 72.0), 71.86)) == "71.00 ± 1.41 (n=2) · paper 71.86"
    assert rp.format_cell(rp.CellStats((70.0,), 71.86)) == "70.00 (n=1) · paper 71.86"
    assert rp.format_cell(rp.CellStats((), 71.86)) == "— · paper 71.86"
    assert rp.format_cell(rp.CellStats((), None)) == "— · paper —"


def test_table_from_runs(tmp_path, capsys):
    grid = enumerate_runs(TABLE1, seeds=[0, 1])
    erm_c10 = [r for r in grid if r.cell == ("ERM", "C10 LT-100")]
    for spec, top1 in zip(erm_c10, (70.0, 74.0), strict=True):
        fake_finished(tmp_path / spec.run_id, top1)
    assert main(["reproduce", "table1", "--table-only", "--seeds", "0,1", "--runs-dir", str(tmp_path)]) == 0
    text = (tmp_path / "table1.md").read_text()
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| method |"))
    assert header.count("|") == 10 and "C10 LT-100" in header and "C100 Step-10" in header
    erm = next(line for line in lines if line.startswith("| ERM |"))
    assert "| 72.00 ± 2.83 (n=2) · paper 71.86 |" in erm
    assert "| — · paper 86.22 |" in erm
    assert "2 of 128 runs finished" in text
    assert len([line for line in lines if line.startswith("| ") and "paper" in line]) == 8
    assert "72.00 ± 2.83" in capsys.readouterr().out


def test_inat_table_shows_error(tmp_path):
    exp = get_experiment("inat")
    runs = enumerate_runs(exp, seeds=[0])
    fake_finished(tmp_path / runs[0].run_id, 70.0)
    _, png, text = rp.write_results(exp, runs, tmp_path)
    assert png is None
    assert "| LDAM-DRW | 30.00 (n=1) · paper 31.42 |" in text
    assert "top-1 error" in text


@pytest.mark.parametrize(("name", "default_row"), [("tau", "| τ = 0.5 | 64.50 ± 0.71 (n=2) · paper 79.76 |"),
                                                     ("kappa", "| κ = 3 | 66.50 ± 0.71 (n=2) · paper 79.76 |")])
def test_sweep_table_and_plot(tmp_path, name, default_row):
    exp = EXPERIMENTS[name]
    runs = enumerate_runs(exp, seeds=[0, 1])
    for k, spec in enumerate(runs[:-2]):  # the last value has no finished run: a gap in the plot, "—" in the table
        fake_finished(tmp_path / spec.run_id, 60.0 + k)
    md, png, text = rp.write_results(exp, runs, tmp_path)
    assert png is not None and png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
    assert f"{name}.png" in text and md.read_text() == text
    assert default_row in text
    assert "| — · paper — |" in text


# ------------------------------------------------------------------------------------------ with the real engine
@pytest.mark.slow
def test_real_engine_run_skip_and_resume(tmp_path):
    """A 1-epoch run through `python -m remixup train`; then skipped; then resumed (in-process) when unfinished."""
    pytest.importorskip("remixup.engine")
    from remixup.experiments import Column, Experiment, Row

    tiny = Experiment("tiny", "tiny", (Row("remix", "Remix"),), (Column("blobs", "longtail", 10, "blobs LT-10"),),
                      {("Remix", "blobs LT-10"): 90.0})
    runs = enumerate_runs(tiny, seeds=[0], epochs=1, overrides=["run.eval_every=1"])
    command = partial(rp.build_command, device="cpu")
    run_dir = tmp_path / runs[0].run_id
    result = rp.run_grid(runs, tmp_path, command=command, progress=False, echo=lambda msg: None)
    log = (tmp_path / rp.LOG_DIR / f"{runs[0].run_id}.log").read_text()
    assert result.finished == [runs[0].run_id], log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["method"] == "remix" and summary["dataset"] == "blobs" and summary["epochs"] == 1
    # finished: skipped
    assert rp.run_grid(runs, tmp_path, command=command, progress=False, echo=lambda m: None).skipped == [run_dir.name]
    # summary gone but checkpoint there: resumed with --resume (the engine accepts the same flags again)
    # (in this process, to save a second interpreter start: argv[3:] is what follows `python -m remixup`)
    (run_dir / "summary.json").unlink()
    calls: list[list[str]] = []

    def in_process(argv: list[str], log_file: Path) -> int:
        calls.append(argv)
        return main(argv[3:])

    result = rp.run_grid(runs, tmp_path, command=command, executor=in_process, progress=False, echo=lambda m: None)
    assert result.finished == [runs[0].run_id]
    assert calls[0][3] == "train" and "--resume" in calls[0]
    _, _, text = rp.write_results(tiny, runs, tmp_path)
    assert f"| Remix | {summary['top1']:.2f} (n=1) · paper 90.00 |" in text


def test_c10lt_and_sweep_tables():
    from remixup.methods import METHODS

    c10lt = get_experiment("c10lt")
    assert c10lt.recipe == "ldam" and [c.label for c in c10lt.columns] == ["C10 LT-100"]
    assert [r.method for r in c10lt.rows] == ["erm", "mixup", "remix", "drw", "remix-drw", "ldam-drw", "mixup-drw"]
    assert c10lt.paper[("Remix-DRW", "C10 LT-100")] == 79.76 and ("Mixup-DRW", "C10 LT-100") not in c10lt.paper
    # the full runs share no folder with Table 1 (other recipe) and each has its own
    ids = [r.run_id for r in enumerate_runs(c10lt, seeds=[0])]
    assert ids[4] == "cifar10-longtail100_remix-drw_ldam_s0-ss0" and len(set(ids)) == 7

    sweep = get_experiment("sweep")
    assert sorted(r.method for r in sweep.rows) == sorted(METHODS)  # every registry method, once
    assert [r.method for r in sweep.rows[:3]] == ["erm", "mixup", "remix"]
    assert sweep.paper[("DRW", "C10 LT-100")] == 58.1 and sweep.reference == "ref"


def test_sweep_table_names_its_reference(tmp_path):
    sweep = get_experiment("sweep")
    runs = enumerate_runs(sweep, seeds=[0], epochs=25)
    fake_finished(tmp_path / runs[0].run_id, 44.0)
    _, _, text = rp.write_results(sweep, runs, tmp_path)
    assert "| ERM | 44.00 (n=1) · ref 45.30 |" in text
    assert "conventional implementation" in text and f"1 of {len(runs)} runs finished" in text
    assert "Schedule scaled to 25 epochs (`--epochs 25`)" in text
    _, _, full = rp.write_results(sweep, enumerate_runs(sweep, seeds=[0]), tmp_path)
    assert "Schedule scaled" not in full
    _, _, same = rp.write_results(sweep, enumerate_runs(sweep, seeds=[0], epochs=200), tmp_path)  # the recipe's own length
    assert "Schedule scaled" not in same
    assert "| Focal | — · ref — |" in text


def test_rows_pick_part_of_a_grid(tmp_path, capsys):
    sweep = get_experiment("sweep")
    assert rp.select_rows(sweep, "erm, Remix-DRW,remix_drw") == ["ERM", "Remix-DRW"]
    assert rp.select_rows(get_experiment("kappa"), "κ = 3") == ["κ = 3"]
    with pytest.raises(ValueError, match="no row 'remixx'.*its rows: ERM, Mixup"):
        rp.select_rows(sweep, "erm,remixx")
    with pytest.raises(ValueError, match="names no row"):
        rp.select_rows(sweep, " , ")

    assert main(["reproduce", "sweep", "--dry-run", "--seeds", "0", "--epochs", "25", "--rows", "remix,erm",
                 "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(sweep.rows)} runs, 2 of them in the rows asked for" in out
    assert out.count("\n[") == 2 and "--method erm" in out and "--method remix " in out
    # the table still covers the whole grid
    fake_finished(tmp_path / enumerate_runs(sweep, seeds=[0], epochs=25)[0].run_id, 44.0)
    assert main(["reproduce", "sweep", "--table-only", "--seeds", "0", "--epochs", "25", "--rows", "remix",
                 "--runs-dir", str(tmp_path)]) == 0
    assert f"1 of {len(sweep.rows)} runs finished" in (tmp_path / "sweep.md").read_text()
    assert main(["reproduce", "sweep", "--dry-run", "--rows", "nope", "--runs-dir", str(tmp_path)]) == 2
    assert "`--rows`: table sweep has no row 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize(("method", "twin"), [("remix-drw", "remix"), ("mixup-drw", "mixup"), ("drw", "erm"),
                                              ("drs", "erm"), ("remix-drs", "remix"), ("remix", None), ("rw", None),
                                              ("remix-rw", None), ("remix-ldam-drw", None), ("ldam-drw", "ldam")])
def test_plain_twin(method, twin):
    assert rp.plain_twin(method) == twin


def test_fork_plan_of_c10lt():
    grid = enumerate_runs(get_experiment("c10lt"), seeds=[0, 1], epochs=90)
    plan = rp.plan_forks(grid)
    ids = {(s.method, s.seed): s.run_id for s in grid}
    assert plan.forks == {ids[(m, seed)]: (ids[(t, seed)], 72) for seed in (0, 1)
                          for m, t in (("remix-drw", "remix"), ("mixup-drw", "mixup"), ("drw", "erm"))}
    assert plan.keep == {ids[(t, seed)]: 72 for seed in (0, 1) for t in ("remix", "mixup", "erm")}
    ordered = rp.order_for_forks(grid, plan)
    assert sorted(s.run_id for s in ordered) == sorted(s.run_id for s in grid)
    assert all(ordered.index(s) >= len(grid) - len(plan.forks) for s in ordered if s.run_id in plan.forks)
    # without --epochs the recipe's own length (200) and deferral (160) are used
    full = rp.plan_forks(enumerate_runs(get_experiment("c10lt"), seeds=[0]))
    assert set(full.keep.values()) == {160}


def test_forking_command_forks_only_once_the_checkpoint_is_kept(tmp_path):
    grid = enumerate_runs(get_experiment("c10lt"), seeds=[0], epochs=90)
    plan = rp.plan_forks(grid)
    command = rp.forking_command(partial(rp.build_command, data_root="d"), plan, tmp_path)
    spec = {s.method: s for s in grid}
    twin = command(spec["remix"], tmp_path / spec["remix"].run_id, False)
    assert twin[-1] == "run.keep_every=72" and "--fork" not in twin
    deferred = spec["remix-drw"]
    assert "--fork" not in command(deferred, tmp_path / deferred.run_id, False)  # the twin has not kept it yet
    kept = RunFolder(tmp_path / spec["remix"].run_id).kept_checkpoint(72)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"x")
    argv = command(deferred, tmp_path / deferred.run_id, False)
    assert argv[argv.index("--fork") + 1] == str(kept) and argv[argv.index("--fork") - 1] == "train"
    assert "--fork" not in command(deferred, tmp_path / deferred.run_id, True)  # a resumed run has its own checkpoint
    assert "--fork" not in command(spec["ldam-drw"], tmp_path / "x", False) and not any(
        a.startswith("run.keep_every") for a in command(spec["ldam-drw"], tmp_path / "x", False))


@pytest.mark.slow
def test_fork_deferred_grid_with_the_real_engine(tmp_path):
    """blobs: Remix for 4 epochs keeps epoch 2; Remix-DRW (deferral at 2) then starts from it and ends as a run
    from scratch would, on one thread."""
    pytest.importorskip("remixup.engine")
    from remixup.experiments import Column, Experiment, Row

    tiny = Experiment("tiny", "tiny", (Row("remix-drw", "Remix-DRW"), Row("remix", "Remix")),
                      (Column("blobs", "longtail", 10, "blobs LT-10"),), {})
    runs = enumerate_runs(tiny, seeds=[0], epochs=4, overrides=["run.eval_every=1", "schedule.deferral_epoch=2",
                                                                "run.threads=1"])
    plan = rp.plan_forks(runs)
    calls: list[list[str]] = []

    def in_process(argv: list[str], log_file: Path) -> int:
        calls.append(argv)
        return main(argv[3:] + ["--no-progress"])

    command = rp.forking_command(partial(rp.build_command, device="cpu"), plan, tmp_path / "forked")
    result = rp.run_grid(rp.order_for_forks(runs, plan), tmp_path / "forked", command=command, executor=in_process,
                         progress=False, echo=lambda m: None)
    assert len(result.finished) == 2 and "--fork" in calls[1]
    deferred = next(s for s in runs if s.method == "remix-drw")
    forked = json.loads((tmp_path / "forked" / deferred.run_id / "summary.json").read_text())
    assert forked["forked_from"]["epoch"] == 2
    rp.run_grid([deferred], tmp_path / "whole", command=partial(rp.build_command, device="cpu"), executor=in_process,
                progress=False, echo=lambda m: None)
    whole = json.loads((tmp_path / "whole" / deferred.run_id / "summary.json").read_text())
    assert (forked["top1"], forked["per_class"], forked["train_loss"]) == (whole["top1"], whole["per_class"], whole["train_loss"])


def test_dry_run_shows_the_planned_forks(tmp_path, capsys):
    assert main(["reproduce", "c10lt", "--epochs", "90", "--seeds", "0", "--fork-deferred", "--dry-run",
                 "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 of them forked from a plain twin" in out
    lines = out.splitlines()
    assert lines[-2].split("--method ")[1].startswith(("drw", "remix-drw", "mixup-drw")) and "once that run has kept it" in lines[-2]
    assert sum("run.keep_every=72" in line for line in lines) == 3


def test_table_title_and_reference_follow_the_runs_data(tmp_path) -> None:
    """`--set data.dataset=digits` on a CIFAR table: the title and column name digits, and no CIFAR numbers appear."""
    sweep = get_experiment("sweep")
    _, _, text = rp.write_results(sweep, enumerate_runs(sweep, seeds=[0], epochs=25, overrides=["data.dataset=digits"]), tmp_path)
    assert "CIFAR" not in text and "digits LT-100, digits_cnn" in text.splitlines()[0] and "C10" not in text.splitlines()[0]
    assert "45.30" not in text and "are not shown" in text
    _, _, plain = rp.write_results(sweep, enumerate_runs(sweep, seeds=[0], epochs=25), tmp_path / "plain")
    assert plain.startswith(f"## {sweep.title}") and "ref 45.30" in plain
