"""The README's Python examples each run on their own, as written, and print the same thing every time."""

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
ENGINE_LOG = re.compile(r"^epoch +\d+/\d+ ")  # the engine's per-epoch line: it carries timings

pytestmark = pytest.mark.slow  # the last example trains


def _run(block: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})  # a fresh namespace: no shared names
    return "\n".join(line for line in out.getvalue().splitlines() if not ENGINE_LOG.match(line))


def test_there_are_examples() -> None:
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs_alone_and_deterministically(index: int) -> None:
    first = _run(BLOCKS[index])
    assert first.strip(), "every example prints what it computed"
    assert _run(BLOCKS[index]) == first
