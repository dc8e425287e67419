"""The demo tables in README.md and docs/demo.md are what `remixup demo` prints.

The demo is deterministic (one thread, CPU, seeded runs), so its record ``results/demo/demo.json`` (the ``demo.json``
that ``remixup demo`` writes) is the source of truth: the committed tables must equal the table built from it, and
one of its runs is trained again here and must give the recorded results. When a change of the training code moves
the numbers, rerun ``remixup demo --out demo-output --no-progress`` and commit its ``demo.json`` and printed table.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from remixup.demo import DemoSettings, demo_header, format_table
from remixup.engine import train

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((ROOT / "results" / "demo" / "demo.json").read_text(encoding="utf-8"))
FIELDS = ("top1", "top5", "balanced_acc", "many", "medium", "few", "per_class", "confusion", "class_counts", "lam_y_forced")


def test_the_record_is_of_the_default_demo() -> None:
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(DemoSettings()).items()}
    assert RECORD["settings"] == settings


def test_readme_and_demo_doc_show_the_recorded_table() -> None:
    settings = DemoSettings()
    table = format_table(RECORD["summaries"])
    printed = f"{demo_header(settings, RECORD['summaries'][settings.methods[0]][0]['class_counts'])}\n\n{table}"
    assert printed in (ROOT / "docs" / "demo.md").read_text(encoding="utf-8")  # "Output as printed"
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["remix-drw"])  # mixing, Remix labels and DRW: the most of the engine in one run
def test_a_demo_run_gives_the_recorded_result(method: str, tmp_path: Path) -> None:
    config = DemoSettings().config(method, 0, tmp_path / method)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = train(config)
    recorded = RECORD["summaries"][method][0]
    assert {k: summary[k] for k in FIELDS} == {k: recorded[k] for k in FIELDS}


def test_the_guide_names_every_registered_method() -> None:
    import re

    from remixup.methods import METHODS

    guide = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    assert f"`remixup methods` lists the {len(METHODS)} named methods" in guide
    section = guide.split("`remixup methods` lists", 1)[1].split("Case, spaces and underscores", 1)[0]
    assert set(re.findall(r"`([a-z0-9-]+)`", section)) == set(METHODS)


def test_the_digits_polarity_is_documented_where_users_look() -> None:
    """scikit-learn's digits are white ink on black; a black-on-white drawing is read wrongly, with confidence."""
    from remixup.data.registry import get_spec

    assert "white ink on black" in get_spec("digits").description  # `remixup data`, the guide's dataset table
    assert "white ink on a black background" in (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")
    assert "(white on black)" in (ROOT / "README.md").read_text(encoding="utf-8")
