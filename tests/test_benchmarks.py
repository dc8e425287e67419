"""Benchmarks are code: they run (a CPU smoke run of each fails the suite when a variant fails), and they, like the
package itself, use only public names of remixup's modules."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
SRC = REPO / "src"


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def private_uses(path: Path, *, outside: bool) -> list[str]:
    """Where ``path`` uses a private (underscore) name of another remixup module: ``from remixup.x import _y``,
    ``import remixup.x as m`` then ``m._y``; for code outside the package (``outside``), private modules too."""
    tree = ast.parse(path.read_text(), filename=str(path))
    own = ".".join(path.relative_to(SRC).with_suffix("").parts) if not outside else ""
    modules: dict[str, str] = {}  # local name -> remixup module it is bound to
    found = []

    def where(node: ast.AST, what: str) -> None:
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        found.append(f"{shown}:{node.lineno}: {what}")  # type: ignore[attr-defined]

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "remixup":
            if outside and any(_private(part) for part in node.module.split(".")):
                where(node, f"from {node.module} import ... (a private module)")
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if _private(alias.name) and node.module != own.removesuffix(".__init__"):
                    where(node, f"from {node.module} import {alias.name}")
                elif _is_module(full):
                    modules[alias.asname or alias.name] = full
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "remixup":
                    if outside and any(_private(part) for part in alias.name.split(".")):
                        where(node, f"import {alias.name} (a private module)")
                    modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name):
            module = modules.get(node.value.id)
            if module is not None and module != own and not (outside is False and _is_module(f"{module}.{node.attr}")):
                where(node, f"{module}.{node.attr}")
    return found


def test_the_check_sees_private_names(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from remixup.fused import _train_epoch, train_fused\nfrom remixup import engine\nengine._helper()\n"
                   "import remixup._files as files\nfrom remixup._validation import check_number\n")  # fmt: skip
    found = private_uses(bad, outside=True)
    assert [f.split(": ", 1)[1] for f in found] == [
        "from remixup.fused import _train_epoch",
        "import remixup._files (a private module)",
        "from remixup._validation import ... (a private module)",
        "remixup.engine._helper",
    ]


def test_benchmarks_import_only_public_names() -> None:
    found = [f for path in sorted(BENCHMARKS.glob("*.py")) for f in private_uses(path, outside=True)]
    assert not found, "benchmarks use private names of remixup:\n" + "\n".join(found)


def test_the_package_uses_no_private_name_of_another_module() -> None:
    found = [f for path in sorted(SRC.rglob("*.py")) for f in private_uses(path, outside=False)]
    assert not found, "modules use private names of other modules:\n" + "\n".join(found)


def _bench(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OUT": str(tmp_path / "out")}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)


@pytest.mark.slow  # trains ResNet-32 for a few steps in a child process
def test_bench_gpu_tiny_runs_every_variant(tmp_path: Path) -> None:
    run = _bench([str(BENCHMARKS / "bench_gpu.py"), "--tiny", "--out", str(tmp_path / "out")], tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "FAILED" not in run.stdout and "failed:" not in (tmp_path / "out" / "results.md").read_text()
    for variant in ("a conventional fp32", "b remixup single fp32", "c single", "d fused K=2", "e fused 2 x remix-drw"):
        assert variant in run.stdout


@pytest.mark.slow  # trains ResNet-32 for a few steps in a child process
def test_bench_fused_cpu_smoke_runs_every_variant(tmp_path: Path) -> None:
    run = _bench([str(BENCHMARKS / "bench_fused_cpu.py"), "--smoke"], tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    for variant in ("| sequential |", "| fused, strategy=stack |", "| fused, strategy=loop"):
        assert variant in run.stdout
