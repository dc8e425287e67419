"""Move a tabular grid between machines: the finished groups' rows in one small ``.tar.gz``.

A group of ``remixup reproduce tabular`` is finished when its folder holds no ``.claim`` (a worker removes its claim
only after every run of the group is done and its checkpoints are deleted). What the report reads of a finished
group is its rows: each network run's ``row.json`` and the boosted tree's ``boosted.json``. :func:`pack` writes
those, and the grid's wall-time record ``_grid_time.json``, into an archive of a few kilobytes per group;
:func:`unpack` puts them into another runs folder, where the grid skips those groups and the report counts them.

    remixup reproduce tabular --pack grid.tar.gz --runs-dir runs/tabular     # on the first machine
    remixup reproduce tabular --unpack grid.tar.gz --runs-dir runs/tabular   # on the next one, then run the grid
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path, PurePosixPath

from remixup.errors import UserError
from remixup.tabular_report import CLAIM, HGB_FILE, ROW, TIMING

__all__ = ["pack", "unpack"]


def _finished_files(runs_dir: Path) -> list[Path]:
    """The row files of every finished group under ``runs_dir`` (relative paths, sorted)."""
    files: list[Path] = []
    for group in sorted(p for p in runs_dir.glob("*/seed*") if p.is_dir()):
        if (group / CLAIM).exists():
            continue  # being run, or stopped mid-way: its rows are not final as a group
        rows = sorted(group.glob(f"*/{ROW}")) + sorted(group.glob(HGB_FILE))
        files += [p.relative_to(runs_dir) for p in rows]
    return files


def pack(runs_dir: Path, path: Path) -> int:
    """Write the rows of every finished group under ``runs_dir`` (and ``_grid_time.json``) to the ``.tar.gz``
    ``path``; return the number of groups packed. Member times are fixed, so the same rows give the same bytes."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"--runs-dir {runs_dir}: no such folder; give the runs folder of a tabular grid")
    files = _finished_files(runs_dir)
    if not files:
        raise UserError(f"--runs-dir {runs_dir}: no finished group to pack; run the grid first")
    if (runs_dir / TIMING).is_file():
        files.append(Path(TIMING))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for rel in files:
            data = (runs_dir / rel).read_bytes()
            info = tarfile.TarInfo(rel.as_posix())
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(path)
    return len({rel.parts[:2] for rel in files if len(rel.parts) > 1})


def _merge_timing(old: list[dict[str, object]], new: list[dict[str, object]]) -> list[dict[str, object]]:
    """The grid sessions of both records, each once, in time order."""
    seen = {json.dumps(s, sort_keys=True) for s in old}
    merged = old + [s for s in new if json.dumps(s, sort_keys=True) not in seen]
    return sorted(merged, key=lambda s: str(s.get("start", "")))


def unpack(path: Path, runs_dir: Path) -> int:
    """Put the rows of the archive ``path`` (written by :func:`pack`) into ``runs_dir``; return the number of groups.

    A row that is already there with other contents is refused (one line) and nothing is written; the grids'
    wall-time records are merged."""
    path, runs_dir = Path(path), Path(runs_dir)
    if not path.is_file():
        raise UserError(f"--unpack {path}: no such file")
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"--unpack {path}: not an archive written by --pack ({exc})") from None
    writes: dict[Path, bytes] = {}
    timing: list[dict[str, object]] | None = None
    for name, data in members.items():
        parts = PurePosixPath(name).parts
        if name == TIMING:
            timing = json.loads(data)
            continue
        ok_row = len(parts) == 4 and parts[3] == ROW
        ok_hgb = len(parts) == 3 and parts[2] == HGB_FILE
        if not (ok_row or ok_hgb) or not parts[1].startswith("seed") or ".." in parts or name.startswith("/"):
            raise UserError(f"--unpack {path}: unexpected member {name!r}; give an archive written by --pack")
        target = runs_dir.joinpath(*parts)
        if target.is_file() and target.read_bytes() != data:
            raise UserError(f"--unpack {path}: {target} exists with other contents; unpack into another --runs-dir")
        writes[target] = data
    from remixup._files import atomic_write

    for target, data in writes.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
    if timing is not None:
        here = runs_dir / TIMING
        old = json.loads(here.read_text(encoding="utf-8")) if here.is_file() else []
        atomic_write(here, json.dumps(_merge_timing(old, timing), indent=1) + "\n")
    return len({PurePosixPath(n).parts[:2] for n in members if n != TIMING})
