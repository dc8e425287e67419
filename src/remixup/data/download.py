"""Opt-in download of archives with an MD5 check, and tar extraction that cannot escape its folder."""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from remixup._files import remove_stale_temps, temp_file
from remixup.errors import ChecksumError, DataError

# The official archives and their published MD5 sums (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR_ARCHIVES: dict[str, dict[str, str]] = {
    "cifar10": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "filename": "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "folder": "cifar-10-batches-py",
        "env": "REMIXUP_CIFAR10_URL",
    },
    "cifar100": {
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "filename": "cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "folder": "cifar-100-python",
        "env": "REMIXUP_CIFAR100_URL",
    },
}

_CHUNK = 1 << 20


def md5sum(path: str | Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: str | Path, *, md5: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` and verify its MD5; an existing ``dest`` with the right sum is reused.

    The bytes go to a new temporary file next to ``dest`` first (created exclusively, never through an existing
    file or link: :func:`remixup._files.temp_file`) and are renamed only after the checksum matches, so a failed or
    interrupted download never leaves a file that looks complete; temporary files of killed downloads are removed.

    Raises:
        ChecksumError: the downloaded (or cached) file does not match ``md5``.
        DataError: the server cannot be reached or answers with an error.
    """
    dest = Path(dest)
    if dest.exists():
        if md5sum(dest) == md5:
            return dest
        raise ChecksumError(f"{dest} exists but its MD5 is {md5sum(dest)}, expected {md5}; delete it and download again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest.parent)  # of downloads whose process is gone
    digest = hashlib.md5(usedforsecurity=False)
    part: Path | None = None
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            part, out = temp_file(dest)
            with out:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        if part is not None:
            part.unlink(missing_ok=True)
        raise DataError(f"cannot download {url}: {exc}; check the network or place the files in {dest.parent} yourself") from exc
    assert part is not None
    if digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"checksum mismatch for {dest.name} downloaded from {url}: MD5 {digest.hexdigest()}, expected {md5}; "
            "the download is corrupt or the mirror serves another file, try again or use the official URL"
        )
    os.replace(part, dest)
    return dest


def safe_extract(archive: str | Path, target: str | Path) -> None:
    """Extract a tar archive into ``target``, refusing any member that could write outside it.

    Every member is checked before anything is written: only regular files and folders are allowed (no symbolic
    or hard links, devices or FIFOs), and a member's resolved path must lie inside ``target`` (no absolute paths,
    no ``..``).

    Raises:
        DataError: a refused member (named in the message) or an unreadable archive.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    root = target.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"refusing to extract {archive}: member {m.name!r} is a link or special file")
                dest = (root / m.name).resolve()
                if os.path.isabs(m.name) or not dest.is_relative_to(root):
                    raise DataError(f"refusing to extract {archive}: member {m.name!r} would land outside {target}")
            if hasattr(tarfile, "data_filter"):  # Python ≥ 3.11.4: a second line of defence
                tar.extractall(root, members=members, filter="data")
            else:  # pragma: no cover
                tar.extractall(root, members=members)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(
            f"cannot extract {archive}: {exc}; the archive is truncated or corrupt, delete it and download again"
        ) from exc


def download_cifar(name: str, root: str | Path, *, url: str | None = None, md5: str | None = None) -> Path:
    """Download and extract the official CIFAR-10/100 python archive into ``root``; returns its folder.

    The URL is, in order: ``url``, the environment variable ``REMIXUP_CIFAR10_URL`` / ``REMIXUP_CIFAR100_URL``,
    the official address. The MD5 is the published one unless ``md5`` is given (for mirrors of other files, tests).
    """
    info = CIFAR_ARCHIVES[name]
    root = Path(root)
    folder = root / info["folder"]
    if folder.is_dir():
        return folder
    source = url or os.environ.get(info["env"]) or info["url"]
    archive = download_file(source, root / info["filename"], md5=md5 or info["md5"])
    safe_extract(archive, root)
    if not folder.is_dir():
        raise DataError(f"{archive} did not contain the folder {info['folder']}/; it is not the CIFAR python archive")
    return folder
