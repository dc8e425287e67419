"""Without Lightning installed, the integration says how to get it (this test runs whether or not it is installed)."""

from __future__ import annotations

import importlib
import sys

import pytest


def test_missing_lightning_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("lightning", "lightning.pytorch"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import lightning.pytorch` fail as if not installed
    monkeypatch.delitem(sys.modules, "remixup.integrations.lightning", raising=False)
    with pytest.raises(ImportError, match=r"needs Lightning: pip install 'remixup\[lightning\]'"):
        importlib.import_module("remixup.integrations.lightning")
