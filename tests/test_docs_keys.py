"""Every config key that README.md and the user docs (docs/*.md) name (``section.key``) exists in the config schema."""

from __future__ import annotations

import re
from pathlib import Path

from remixup.config import key_docs

ROOT = Path(__file__).resolve().parents[1]
KEYS = {k for k, *_ in key_docs()}
SECTIONS = sorted({k.split(".")[0] for k in KEYS})
# section.key not part of a longer dotted name, a path or a call: `data.split_seed`, run.threads=1
TOKEN = re.compile(r"(?<![\w./-])(?:" + "|".join(SECTIONS) + r")\.[a-z_][a-z0-9_]*\b(?![./\w(-])")
FILE_SUFFIXES = {"py", "md", "csv", "tsv", "json", "yaml", "png", "pt", "npz", "txt", "parquet"}


def named_keys(text: str) -> list[tuple[int, str]]:
    """(line, token) of each config-looking token; lines quoting an unknown-key error are skipped."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        if "unknown config key" in line:  # an example of the error message, typo included
            continue
        found += [(number, m.group(0)) for m in TOKEN.finditer(line) if m.group(0).split(".")[1] not in FILE_SUFFIXES]
    return found


def test_the_pattern_finds_keys_and_skips_code() -> None:
    assert named_keys("set `data.table_test_fraction` and run.threads=1") == [
        (1, "data.table_test_fraction"),
        (1, "run.threads"),
    ]
    assert named_keys("optimizer = SGD(model.parameters()); see mixing.py and src/run.py") == []


def test_every_config_key_in_the_docs_exists() -> None:
    # ARCHITECTURE.md maps the code (mixing.set_epoch is a method there), not the configuration
    files = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "ARCHITECTURE.md")]
    unknown = [f"{f.relative_to(ROOT)}:{line}: {key}" for f in files for line, key in named_keys(f.read_text("utf-8")) if key not in KEYS]
    assert not unknown, "keys the docs name but the config does not have:\n" + "\n".join(unknown)
