"""The migration scripts of docs/dropin.md run: a timm-style loop and a torchvision-v2-style collate_fn, as Remix."""

from __future__ import annotations

import math
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def test_timm_style_script_trains_with_remix() -> None:
    result = runpy.run_path(str(EXAMPLES / "timm_style.py"))["main"](epochs=2)
    assert math.isfinite(result["loss"])
    assert result["forced_share"] > 0  # Remix moved some labels to the minority class
    assert result["train_accuracy"] > 0.5


@pytest.mark.parametrize("workers", [0, 2])
def test_torchvision_style_script_trains_with_remix(workers: int) -> None:
    result = runpy.run_path(str(EXAMPLES / "torchvision_style.py"))["main"](epochs=2, num_workers=workers)
    assert math.isfinite(result["loss"])
    assert result["distinct_targets"] == result["batches"] == 2 * 9  # no two batches drew alike, in workers too
    assert result["train_accuracy"] > 0.5


@pytest.mark.parametrize("name", ["timm_style.py", "torchvision_style.py"])
def test_docs_show_each_scripts_change(name: str) -> None:
    """The "after" lines of docs/dropin.md are the ones the script runs, and the "before" line is there as a comment."""
    docs = (ROOT / "docs" / "dropin.md").read_text()
    script = (EXAMPLES / name).read_text()
    assert f"examples/{name}" in docs
    before = {"timm_style.py": "# mixup_fn = Mixup(", "torchvision_style.py": "# cutmix_or_mixup = v2.RandomChoice("}[name]
    after = {"timm_style.py": "mixup_fn = RemixMixup(", "torchvision_style.py": "cutmix_or_mixup = RemixMixup("}[name]
    assert before in script and after in script
    assert after in docs and before.lstrip("# ") in docs
