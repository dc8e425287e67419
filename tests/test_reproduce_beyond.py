"""`remixup reproduce beyond`: the grid (second stages after their first stage, SAM runs), --dry-run, fusing."""

from __future__ import annotations

from pathlib import Path

from remixup import reproduce as rp
from remixup.cli import main
from remixup.experiments import BEYOND, enumerate_runs, get_experiment


def test_the_grid() -> None:
    assert get_experiment("beyond") is BEYOND and BEYOND.recipe == "ldam"
    grid = enumerate_runs(BEYOND)
    assert len(grid) == 8 * 2 * 5  # rows x (C10, C100 LT-100) x 5 seeds
    ids = {spec.run_id for spec in grid}
    assert len(ids) == len(grid)
    seconds = [spec for spec in grid if spec.first_stage is not None]
    assert {s.row.stage2 for s in seconds} == {"crt", "mislas"} and len(seconds) == 2 * 2 * 5
    position = {spec.run_id: k for k, spec in enumerate(grid)}
    for spec in seconds:  # every second stage starts from a run of the grid that comes before it
        first = spec.first_stage
        assert first is not None and first.run_id in position and position[first.run_id] < position[spec.run_id]
        assert spec.run_id == f"{first.run_id}_{spec.row.stage2}"
    sam = {spec.row.label: spec.overrides for spec in grid if any("sam_rho" in o for o in spec.overrides)}
    assert sam == {"Remix + SAM": ("optim.sam_rho=0.05",), "LDAM-DRW + SAM": ("optim.sam_rho=0.8",)}


def test_second_stage_commands(tmp_path: Path) -> None:
    grid = enumerate_runs(BEYOND, seeds=[0], epochs=20)
    spec = next(s for s in grid if s.row.stage2 == "mislas")
    first = spec.first_stage
    assert first is not None
    argv = rp.build_command(spec, tmp_path / spec.run_id, True, device="cpu")
    at = argv.index("decouple")
    assert argv[at + 1] == str(tmp_path / first.run_id) and argv[argv.index("--method") + 1] == "mislas"
    assert argv[argv.index("--epochs") + 1] == "1" and argv[-1] == "--resume"  # 10 x 20/200 epochs
    # forks pass a second stage through; fusing puts second stages and SAM runs after the fused groups
    plan = rp.plan_forks(grid)
    assert spec.run_id not in plan.forks
    assert rp.forking_command(rp.build_command, plan, tmp_path)(spec, tmp_path / spec.run_id, False) == rp.build_command(
        spec, tmp_path / spec.run_id, False
    )
    # fusing: a SAM row fuses only with runs of its own rho; second stages run alone, after the fused groups
    five = enumerate_runs(BEYOND, epochs=20)
    groups = rp.fuse_groups(five, 8, rp.build_command, tmp_path)
    assert {tuple(sorted({s.row.label for s in g})) for g in groups if len(g) == 5} >= {("Remix + SAM",), ("LDAM-DRW + SAM",)}
    alone = [g for g in groups if g[0].row.stage2]
    assert len(alone) == 20 and all(len(g) == 1 for g in alone) and groups[-20:] == alone


def test_dry_run_lists_the_grid(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["reproduce", "beyond", "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == 80 and out.startswith("# beyond: 80 runs (8 rows x 2 columns x 5 seeds")
    assert sum(" decouple " in line for line in lines) == 20 and sum("optim.sam_rho=" in line for line in lines) == 20
    assert "# 0 done, 0 to resume, 80 to run" in out


def test_columns_overridden_alike_stay_apart() -> None:
    from remixup.tables import as_run

    grid = enumerate_runs(BEYOND, seeds=[0], overrides=["data.dataset=digits"])
    shown, changed = as_run(BEYOND, grid)
    assert len(set(changed.values())) == 2 and len({c.label for c in shown.columns}) == 2
    assert all(original in label for original, label in changed.items())
