"""A run on a table predicts new rows with the preprocessing fitted on its training split (table.json), and a
table keeps its own class imbalance by default."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from remixup.cli import main

pd = pytest.importorskip("pandas", reason="tables need the optional extra remixup[tabular]")


def _rows(n_per_class: dict[str, int], seed: int = 0) -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    labels = [c for c, n in n_per_class.items() for _ in range(n)]
    centre = {c: k for k, c in enumerate(n_per_class)}
    return {
        "size": [round(float(rng.normal(3 * centre[c], 1.0)), 3) for c in labels],
        "colour": [("red", "green", "blue")[(centre[c] + int(rng.integers(2))) % 3] for c in labels],
        "label": labels,
    }


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One epoch on a small CSV through the CLI, without --imbalance or --recipe tabular."""
    folder = tmp_path_factory.mktemp("tabular-run")
    data = folder / "t.csv"
    pd.DataFrame(_rows({"a": 60, "b": 30, "c": 15})).to_csv(data, index=False)
    out = folder / "run"
    argv = ["train", "--dataset", f"tabular:{data}", "--method", "remix", "--epochs", "1", "--out", str(out), "--no-progress",
            "model.name=tabular_resnet", "optim.batch_size=16", "run.threads=1", "run.device=cpu"]  # fmt: skip
    stdout = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(stdout):
        assert main(argv) == 0
    return {"data": data, "out": out, "stdout": stdout.getvalue()}


@pytest.mark.slow
def test_a_table_keeps_its_own_imbalance_and_says_so_first(table_run: dict[str, Any]) -> None:
    first = table_run["stdout"].splitlines()[0]
    assert first.startswith(f"tabular:{table_run['data']}: the data's own class imbalance (data.imbalance=none)")
    summary = json.loads((table_run["out"] / "summary.json").read_text())
    assert summary["imbalance"] == "none" and summary["class_counts"] == [36, 19, 10]  # 60/30/15 less floor(25 %) and floor(15 %)
    for key in ("macro_f1", "macro_auprc", "val_balanced_acc", "val_macro_f1", "val_macro_auprc"):
        assert 0.0 <= summary[key] <= 100.0, key  # tables: macro-F1 and macro-AUPRC, on test and on validation


@pytest.mark.slow
def test_table_json_reproduces_the_training_features(table_run: dict[str, Any]) -> None:
    from remixup.data.table_preprocess import TablePreprocessor
    from remixup.data.table_sources import read_rows
    from remixup.data.tabular import load_table_splits

    pre = TablePreprocessor.from_json((table_run["out"] / "table.json").read_text())
    assert pre.classes == ["a", "b", "c"] and pre.label_column == "label"
    assert [c.name for c in pre.columns] == ["size", "colour"] and pre.columns[1].categories == ["blue", "green", "red"]
    x_all = pre.transform_rows(read_rows(table_run["data"]), "t.csv")
    splits = load_table_splits(f"tabular:{table_run['data']}")
    x_splits = np.concatenate([splits.x[s] for s in ("train", "val", "test")])
    assert x_all.shape == x_splits.shape
    key = lambda x: x[np.lexsort(x.T[::-1])]  # noqa: E731 -- the same rows in the same order
    np.testing.assert_array_equal(key(x_all), key(x_splits))


@pytest.mark.slow
def test_predict_csv_gives_a_class_and_every_probability_per_row(table_run: dict[str, Any], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from remixup import predict

    new = pd.DataFrame({"colour": ["red", "blue", ""], "size": ["0.1", "6.0", "?"], "extra": [1, 2, 3]})  # no label
    path = tmp_path / "new.csv"
    new.to_csv(path, index=False)
    assert main(["predict", str(table_run["out"]), str(path), "--device", "cpu", "--out", str(tmp_path / "p.csv")]) == 0
    lines = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text())))
    assert len(lines) == 3 and list(lines[0]) == ["input", "label", "class", "probability", "p_a", "p_b", "p_c"]
    for line in lines:
        probs = [float(line[f"p_{c}"]) for c in "abc"]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5) and line["class"] == "abc"[int(np.argmax(probs))]
    rows = predict(table_run["out"], new, device="cpu")  # the same from Python, with a DataFrame
    assert [r["class"] for r in rows] == [line["class"] for line in lines]
    assert rows[1]["probabilities"]["b"] == pytest.approx(float(lines[1]["p_b"]), abs=1e-6)


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("remixup: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.slow
@pytest.mark.parametrize(
    ("frame", "message"),
    [
        ({"Size": [1.0], "colour": ["red"]}, "no column 'size'; the model was trained on the columns size, colour"),
        ({"size": ["1.5", "big"], "colour": ["red", "red"]}, "column 'size' is numeric but row 2 holds 'big'"),
    ],
    ids=["renamed-column", "text-in-numeric"],
)
def test_predict_errors_are_one_line(table_run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     frame: dict[str, list[Any]], message: str) -> None:  # fmt: skip
    path = tmp_path / "bad.csv"
    pd.DataFrame(frame).to_csv(path, index=False)
    assert message in _one_line_error(capsys, ["predict", str(table_run["out"]), str(path), "--device", "cpu"])


@pytest.mark.slow
def test_an_unseen_category_encodes_as_zeros_with_a_note(table_run: dict[str, Any], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from remixup.data.table_preprocess import TablePreprocessor

    pre = TablePreprocessor.from_json((table_run["out"] / "table.json").read_text())
    x = pre.transform_rows({"size": np.array(["1"], dtype=object), "colour": np.array(["mauve"], dtype=object)}, "rows")
    assert x[0, 1:].tolist() == [0.0, 0.0, 0.0]
    assert "column 'colour': 1 row(s) hold a category not seen in training; it encodes as all zeros" in capsys.readouterr().err
    path = tmp_path / "bad.tsv"
    path.write_text("size\tcolour\n1\tmauve\n")
    assert main(["predict", str(table_run["out"]), str(path), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.count("\n") == 2  # header and one row


def test_table_json_errors(tmp_path: Path) -> None:
    from remixup.data.table_preprocess import TablePreprocessor
    from remixup.errors import DataError

    with pytest.raises(DataError, match="not a table preprocessing file"):
        TablePreprocessor.from_json(json.dumps({"format": 1, "columns": [{"name": "x"}]}))
    with pytest.raises(DataError, match="table preprocessing format 9 is not 1"):
        TablePreprocessor.from_json(json.dumps({"format": 9}))


# ------------------------------------------------------------------------------------- the default profile
def test_a_table_takes_no_profile_unless_one_is_named(tmp_path: Path) -> None:
    from remixup.config import build_config

    table = {"data.dataset": "tabular:claims.csv"}
    assert build_config("paper", values=table, validate=False).data.imbalance == "none"
    assert build_config("paper", values={"data.dataset": "cifar10"}, validate=False).data.imbalance == "longtail"
    named = build_config("paper", values={**table, "data.imbalance": "longtail"}, validate=False)
    assert named.data.imbalance == "longtail"
    assert build_config("paper", values=table, overrides=["data.imbalance=step"], validate=False).data.imbalance == "step"
    config_file = tmp_path / "c.yaml"
    config_file.write_text("data:\n  imbalance: longtail\n  ratio: 10\n")
    assert build_config(None, config_file=config_file, values=table, validate=False).data.imbalance == "longtail"


def test_data_command_takes_the_data_keys_of_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "d.csv"
    pd.DataFrame({**_rows({"a": 40, "b": 20}), "target": ["x", "y"] * 30}).to_csv(path, index=False)
    assert main(["data", "--dataset", f"tabular:{path}", "--json", "data.table_test_fraction=0.5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["imbalance"] == "none" and summary["counts"] == [14, 7]  # 40 - 20 - 6, 20 - 10 - 3
    assert main(["data", "--dataset", f"tabular:{path}", "--json", "data.label_column=target"]) == 0
    assert json.loads(capsys.readouterr().out)["classes"] == ["x", "y"]
    assert "remixup data takes data.* keys" in _one_line_error(capsys, ["data", "--dataset", f"tabular:{path}", "run.seed=1"])


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import remixup.data.table_sources as sources
    from remixup.commands.data import list_tables
    from remixup.errors import UserError

    monkeypatch.setattr(sources, "has_package_sets", lambda: False)
    with pytest.raises(UserError, match=r"pip install 'remixup\[tabular\]'"):
        sources.read_table("yeast")
    assert "pip install 'remixup[tabular]'" in list_tables().splitlines()[0]
