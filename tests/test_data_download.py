"""Download with MD5 check and safe extraction, against archives served from 127.0.0.1 (never the internet)."""

from __future__ import annotations

import functools
import hashlib
import io
import tarfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from remixup.data import download_cifar, download_file, load_dataset, md5sum, safe_extract
from remixup.errors import ChecksumError, DataError


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder): a local HTTP server on 127.0.0.1 for the duration of one test."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _cifar10_archive(path: Path) -> str:
    """A tiny archive in the official layout (cifar-10-batches-py/...), returns its MD5."""
    import pickle

    y = np.repeat(np.arange(10), 1)
    batch = {b"data": np.zeros((10, 3072), np.uint8), b"labels": y.tolist()}
    blob = pickle.dumps(batch, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            _add_bytes(tar, f"cifar-10-batches-py/{name}", blob)
    return md5sum(path)


def test_good_archive_downloads_verifies_and_loads(server: tuple[str, Path], tmp_path: Path) -> None:
    url, served = server
    md5 = _cifar10_archive(served / "good.tar.gz")
    root = tmp_path / "root"
    folder = download_cifar("cifar10", root, url=f"{url}/good.tar.gz", md5=md5)
    assert folder == root / "cifar-10-batches-py" and (folder / "test_batch").is_file()
    assert not list(root.glob("*.part"))
    ds = load_dataset("cifar10", root, train=True)
    assert len(ds) == 50 and ds.class_counts.tolist() == [5] * 10


def test_corrupted_archive_is_a_checksum_error(server: tuple[str, Path], tmp_path: Path) -> None:
    url, served = server
    md5 = _cifar10_archive(served / "good.tar.gz")
    data = bytearray((served / "good.tar.gz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (served / "bad.tar.gz").write_bytes(bytes(data))
    root = tmp_path / "root"
    with pytest.raises(ChecksumError, match=r"checksum mismatch for cifar-10-python.tar.gz downloaded from .*bad.tar.gz: MD5 [0-9a-f]{32}, expected " + md5):
        download_cifar("cifar10", root, url=f"{url}/bad.tar.gz", md5=md5)
    assert not any(root.iterdir())  # no partial file left behind


def test_env_url_with_official_md5_refuses_other_bytes(server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, served = server
    _cifar10_archive(served / "mirror.tar.gz")
    monkeypatch.setenv("REMIXUP_CIFAR10_URL", f"{url}/mirror.tar.gz")
    with pytest.raises(ChecksumError, match=r"expected c58f30108f718f92721af3b95e74349a"):
        load_dataset("cifar10", tmp_path, train=True, download=True)


def test_unreachable_or_missing_url(server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DataError, match=r"cannot download .*missing.tar.gz: HTTP Error 404"):
        download_file(f"{url}/missing.tar.gz", tmp_path / "x.tar.gz", md5="0" * 32)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink"])
def test_malicious_archive_is_refused(server: tuple[str, Path], tmp_path: Path, kind: str) -> None:
    url, served = server
    archive = served / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add_bytes(tar, "cifar-10-batches-py/data_batch_1", b"fine")
        if kind == "dotdot":
            _add_bytes(tar, "cifar-10-batches-py/../../escaped.txt", b"owned")
        elif kind == "absolute":
            _add_bytes(tar, str(tmp_path / "escaped.txt"), b"owned")
        else:
            link = tarfile.TarInfo("cifar-10-batches-py/link")
            link.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            link.linkname = str(tmp_path / "escaped.txt")
            tar.addfile(link)
    root = tmp_path / "root"
    with pytest.raises(DataError, match=r"refusing to extract .*cifar-10-python.tar.gz: member .* (would land outside|is a link)"):
        download_cifar("cifar10", root, url=f"{url}/evil.tar.gz", md5=md5sum(archive))
    assert not (tmp_path / "escaped.txt").exists()
    assert not (root / "cifar-10-batches-py").exists()  # nothing extracted at all


def test_truncated_archive_and_cached_file(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    _cifar10_archive(archive)
    archive.write_bytes(archive.read_bytes()[:100])
    with pytest.raises(DataError, match=r"cannot extract .*a.tar.gz: .*truncated or corrupt"):
        safe_extract(archive, tmp_path / "out")
    with pytest.raises(ChecksumError, match=r"a.tar.gz exists but its MD5 is .*delete it and download again"):
        download_file("http://127.0.0.1:9/never", archive, md5="0" * 32)
    assert download_file("http://127.0.0.1:9/never", archive, md5=hashlib.md5(archive.read_bytes()).hexdigest()) == archive


def test_a_link_planted_at_the_download_temp_name_is_not_written_through(server: tuple[str, Path], tmp_path: Path) -> None:
    url, served = server
    md5 = _cifar10_archive(served / "good.tar.gz")
    root = tmp_path / "root"
    root.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (root / "cifar-10-python.tar.gz.part").symlink_to(victim)  # the name the download once wrote through
    download_file(f"{url}/good.tar.gz", root / "cifar-10-python.tar.gz", md5=md5)
    assert victim.read_text() == "precious"
    assert md5sum(root / "cifar-10-python.tar.gz") == md5
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-python.tar.gz", "cifar-10-python.tar.gz.part"]  # no temp left
