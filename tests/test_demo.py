"""The embedded demo on a tiny budget: real runs, the table, the plot and the JSON record."""

import json

import pytest

from remixup.cli import main
from remixup.demo import DemoSettings, format_table, mean_std, run_demo

pytestmark = pytest.mark.slow  # every test here trains or spawns processes


def test_mean_std():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert mean_std([5.0]) == (5.0, 0.0)
    assert mean_std([None, None]) is None


def test_format_table_shows_mean_and_std_and_missing_groups():
    runs = {"erm": [{"top1": 80.0, "many": 90.0, "medium": None, "few": 10.0, "balanced_acc": 80.0},
                    {"top1": 82.0, "many": 92.0, "medium": None, "few": 14.0, "balanced_acc": 82.0}]}  # fmt: skip
    table = format_table(runs)
    assert "| erm | 81.0 ± 1.4 | 91.0 ± 1.4 | — | 12.0 ± 2.8 |" in table
    assert table.splitlines()[0] == "| method | overall | many-shot | medium-shot | few-shot |"


def test_run_demo_tiny(tmp_path):
    settings = DemoSettings(methods=("erm", "remix"), seeds=(0, 1), epochs=2)
    result = run_demo(tmp_path, settings, toy=False, progress=False)
    assert set(result.summaries) == {"erm", "remix"} and all(len(v) == 2 for v in result.summaries.values())
    assert (tmp_path / "per_class.png").stat().st_size > 10_000
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["summaries"]["remix"][0]["method"] == "remix"
    assert record["summaries"]["remix"][0]["lam_y_forced"] is not None
    assert "| remix |" in (tmp_path / "demo.md").read_text()
    # subset seed k goes with seed k: two seeds, two different long-tailed subsets are possible but counts agree
    assert result.summaries["erm"][0]["class_counts"] == [124, 80, 51, 33, 21, 14, 9, 5, 3, 2]


def test_demo_cli_rejects_bad_input(capsys):
    assert main(["demo", "--epochs", "1", "--no-toy", "--out", "unused"]) == 2
    assert "`epochs` of `demo` must be >= 2; got 1" in capsys.readouterr().err
