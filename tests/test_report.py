"""`remixup report` on hand-written run folders: PNGs created and non-empty, Markdown summary, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from remixup.cli import main
from remixup.errors import UserError
from remixup.report import load_run, make_report, summary_table

COUNTS = [500, 300, 180, 108, 65, 39, 23, 14, 8, 5]


def write_run(folder: Path, *, method: str = "remix", mixing: bool = True, finished: bool = True,
              epochs: int = 4) -> Path:
    """A run folder with the files of the run-folder contract (docs/ARCHITECTURE.md)."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"method:\n  name: {method}\n")
    rows = []
    for e in range(epochs):
        row = {"epoch": e, "lr": 0.1, "train_loss": 2.0 - 0.3 * e, "train_acc": 20.0 + 10 * e,
               "lam_y_forced": (0.2 + 0.01 * e) if mixing else None, "images_per_s": 900.0, "time_s": 1.0}
        if e % 2 == 1 or e == epochs - 1:
            row.update(top1=30.0 + 8 * e, top5=80.0, balanced_acc=28.0 + 8 * e, many=60.0, medium=30.0, few=5.0)
        rows.append(row)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        confusion = [[(40 if i == j else 1) for j in range(10)] for i in range(10)]
        summary = {
            "top1": 61.5, "top5": 93.0, "balanced_acc": 61.5, "many": 90.0, "medium": 60.0, "few": 20.0,
            "per_class": [95.0, 90.0, 80.0, 75.0, 60.0, 55.0, 40.0, 30.0, 20.0, 10.0], "class_counts": COUNTS,
            "confusion": confusion, "lam_y_forced": 0.23 if mixing else None, "images_per_s": 912.3,
            "epochs": epochs, "method": method, "dataset": "digits", "imbalance": "longtail", "ratio": 100,
            "seed": 0, "subset_seed": 0, "wall_time_s": 12.0,
        }
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, path


@pytest.mark.slow
def test_single_run_report(tmp_path):
    run = write_run(tmp_path / "remix-run")
    report = make_report([run], tmp_path / "out")
    folder = tmp_path / "out" / "remix-run"
    for name in ("per_class.png", "curves.png", "lam_y_forced.png", "confusion.png"):
        assert_png(folder / name)
    text = report.read_text()
    assert "| remix-run | remix | digits longtail 100 | 61.50 | 93.00 | 61.50 | 90.00 | 60.00 | 20.00 | 0.230 |" in text
    for name in ("per_class", "curves", "lam_y_forced", "confusion"):
        assert f"(remix-run/{name}.png)" in text
    assert not list((tmp_path / "out").glob("compare_*"))  # one run: no comparison plots


@pytest.mark.slow
def test_many_runs_get_distinct_colours_and_a_legend_beside_the_plot(tmp_path):
    from remixup.report import _color, plot_curves

    grid = tmp_path / "grid"
    runs = [load_run(write_run(grid / f"r{k:02d}", method=f"m{k}")) for k in range(12)]
    colours = [_color(k, 12) for k in range(12)]
    assert len(set(colours)) == 12  # more than the 10 default colours: none repeats
    assert [_color(k, 3) for k in range(3)] == ["C0", "C1", "C2"]
    assert_png(plot_curves(runs, tmp_path / "curves_many.png"))
    assert_png(plot_curves(runs[:2], tmp_path / "curves_two.png"))
    make_report([r.path for r in runs], tmp_path / "rep", per_run=False)
    for name in ("compare_per_class.png", "compare_curves.png", "compare_lam_y_forced.png"):
        assert_png(tmp_path / "rep" / name)


@pytest.mark.slow
def test_several_runs_from_a_grid_folder(tmp_path, capsys):
    grid = tmp_path / "grid"
    write_run(grid / "a_remix", method="remix")
    write_run(grid / "b_erm", method="erm", mixing=False)
    write_run(grid / "c_killed", method="mixup", finished=False, epochs=2)
    (grid / "_logs").mkdir()  # not a run folder: ignored
    assert main(["report", str(grid), "--out", str(tmp_path / "rep")]) == 0
    assert "report:" in capsys.readouterr().out
    out = tmp_path / "rep"
    for name in ("compare_per_class.png", "compare_curves.png", "compare_lam_y_forced.png"):
        assert_png(out / name)
    assert not (out / "b_erm" / "lam_y_forced.png").exists()
    assert_png(out / "b_erm" / "confusion.png")
    assert_png(out / "c_killed" / "curves.png")
    assert not (out / "c_killed" / "per_class.png").exists()  # no final metrics for an unfinished run
    text = (out / "report.md").read_text()
    assert "| b_erm | erm |" in text and "| — |" in text  # erm has no λy-forced share
    assert "unfinished (last logged epoch 1)" in text
    assert "not a mixing method" in text
    assert "_logs" not in text


def test_truncated_metrics_line_is_ignored(tmp_path):
    run = write_run(tmp_path / "r", finished=False, epochs=3)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')  # killed mid-write
    assert [row["epoch"] for row in load_run(run).epochs] == [0, 1, 2]


def test_metrics_csv_fallback(tmp_path):
    run = tmp_path / "csvrun"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,train_loss,train_acc,top1\n0,2.0,10.0,\n1,1.5,20.5,33.0\n")
    r = load_run(run)
    assert r.epochs[1] == {"epoch": 1, "train_loss": 1.5, "train_acc": 20.5, "top1": 33.0}
    assert r.epochs[0]["top1"] is None
    assert "unfinished" in summary_table([r])
    make_report([run], tmp_path / "out")
    assert_png(tmp_path / "out" / "csvrun" / "curves.png")


def test_bad_inputs(tmp_path, capsys):
    with pytest.raises(UserError, match="not a folder"):
        make_report([tmp_path / "missing"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a run folder"):
        make_report([tmp_path / "empty"], tmp_path / "out")
    bad = write_run(tmp_path / "bad")
    (bad / "summary.json").write_text("{not json")
    assert main(["report", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("remixup: error:") and "summary.json is not valid JSON" in err and err.count("\n") == 1


@pytest.mark.slow
def test_legend_labels_are_short_and_unfinished_runs_know_their_method(tmp_path, capsys):
    from remixup.report import short_labels

    grid = tmp_path / "grid"
    write_run(grid / "s0_remix", method="remix")
    write_run(grid / "s1_remix", method="remix")
    write_run(grid / "s0_erm", method="erm", mixing=False)
    write_run(grid / "s0_mixup", method="mixup", finished=False, epochs=2)  # method from its config.yaml
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "metrics.csv").write_text("epoch,train_loss\n0,2.0\n")
    runs = [load_run(p) for p in sorted(grid.iterdir())] + [load_run(tmp_path / "bare")]
    assert [r.name for r in runs] == ["s0_erm", "s0_mixup", "s0_remix", "s1_remix", "bare"]
    assert short_labels(runs) == ["erm", "mixup", "remix (s0_remix)", "remix (s1_remix)", "bare"]

    assert main(["report", str(grid), "--out", str(tmp_path / "rep"), "--compare-only"]) == 0
    assert "(3 plots)" in capsys.readouterr().out
    out = tmp_path / "rep"
    assert sorted(p.name for p in out.iterdir()) == [
        "compare_curves.png", "compare_lam_y_forced.png", "compare_per_class.png", "report.md"]
    text = (out / "report.md").read_text()
    assert "| s0_mixup | mixup | — | unfinished (last logged epoch 1) |" in text
    assert "## " not in text.split("## All runs", 1)[1]  # no per-run sections


def test_a_forked_run_says_where_its_own_epochs_start(tmp_path):
    run = write_run(tmp_path / "drw")
    summary = json.loads((run / "summary.json").read_text())
    summary["forked_from"] = {"checkpoint": "twin/checkpoint_e002.pt", "epoch": 2, "wall_time_s": 2.0}
    (run / "summary.json").write_text(json.dumps(summary))
    table = summary_table([load_run(run), load_run(write_run(tmp_path / "plain"))])
    assert "| 0.230 | 4 (forked at 2) | 912 | 12 |" in table
    assert "| 0.230 | 4 | 912 | 12 |" in table
