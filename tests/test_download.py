"""Downloads and archives: checksums, resumable .part files, safe extraction."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from fakes import make_tar, make_zip, tar_with_member

import canetlib.data.download as dl
from canetlib.data.archive import (
    UnsafeArchiveError,
    ensure_dataset,
    extract_archive,
    is_extracted,
)
from canetlib.data.download import (
    ChecksumError,
    DownloadError,
    RemoteFile,
    download_url,
    file_digest,
    verify_checksum,
)

PAYLOAD = bytes(range(256)) * 4000  # about 1 MB, a little under one chunk boundary


@pytest.fixture()
def source(tmp_path: Path) -> Path:
    path = tmp_path / "served" / "data.bin"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def spy_offsets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the byte offset of every transfer download_url opens."""
    offsets: list[int] = []
    real = dl._open_stream

    def spy(url: str, offset: int, timeout: float):  # type: ignore[no-untyped-def]
        offsets.append(offset)
        return real(url, offset, timeout)

    monkeypatch.setattr(dl, "_open_stream", spy)
    return offsets


# --------------------------------------------------------------------------- download


def test_download_verifies_and_renames(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "data.bin"
    assert download_url(source.as_uri(), dest, md5=md5(PAYLOAD), progress=False) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("data.bin.part").exists()
    source.unlink()  # already there and verified: nothing is fetched
    assert download_url(source.as_uri(), dest, md5=md5(PAYLOAD), progress=False) == dest


def test_checksum_mismatch_names_the_file(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out" / "data.bin"
    with pytest.raises(ChecksumError) as err:
        download_url(source.as_uri(), dest, md5="0" * 32, progress=False)
    assert "data.bin" in str(err.value) and "0" * 32 in str(err.value)
    assert isinstance(err.value, ValueError)
    assert not dest.exists() and not dest.with_name("data.bin.part").exists()
    dest.write_bytes(b"tampered")
    with pytest.raises(ChecksumError, match="data.bin"):
        download_url(source.as_uri(), dest, md5=md5(PAYLOAD), progress=False)


def test_verify_checksum_sha256(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc")
    verify_checksum(path, sha256=hashlib.sha256(b"abc").hexdigest(), md5=md5(b"abc"))
    with pytest.raises(ChecksumError, match="f.txt"):
        verify_checksum(path, sha256="f" * 64)


def test_partial_file_is_resumed(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(PAYLOAD[:300_000])
    offsets = spy_offsets(monkeypatch)
    download_url(source.as_uri(), dest, md5=md5(PAYLOAD), progress=False)
    assert offsets == [300_000]
    assert dest.read_bytes() == PAYLOAD


def test_bad_partial_file_is_replaced(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(b"\xff" * 300_000)  # wrong bytes
    offsets = spy_offsets(monkeypatch)
    download_url(source.as_uri(), dest, md5=md5(PAYLOAD), progress=False)
    assert offsets == [300_000, 0]  # resumed, failed the checksum, started over
    assert dest.read_bytes() == PAYLOAD


def test_overlong_partial_file_is_replaced(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(PAYLOAD + b"extra")
    download_url(source.as_uri(), dest, progress=False)
    assert dest.read_bytes() == PAYLOAD


class FakeResponse(io.BytesIO):
    """Just enough of an HTTP response for download_url."""

    def __init__(self, body: bytes, status: int, headers: dict[str, str]) -> None:
        super().__init__(body)
        self.status = status
        self.headers = headers


def fake_server(
    requests: list[dict[str, str]], honour_range: bool, truncate: int = 0
) -> Callable[[urllib.request.Request, float], FakeResponse]:
    """A stand-in for ``_http_open`` serving PAYLOAD, optionally honouring Range."""

    def open_(request: urllib.request.Request, timeout: float) -> FakeResponse:
        headers = dict(request.header_items())
        requests.append(headers)
        start = int(headers["Range"].split("=")[1].rstrip("-")) if "Range" in headers else 0
        if start and honour_range:
            body = PAYLOAD[start:]
            return FakeResponse(
                body[: len(body) - truncate],
                206,
                {
                    "Content-Length": str(len(body)),
                    "Content-Range": f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}",
                },
            )
        return FakeResponse(
            PAYLOAD[: len(PAYLOAD) - truncate], 200, {"Content-Length": str(len(PAYLOAD))}
        )

    return open_


@pytest.mark.parametrize("honour_range", [True, False])
def test_http_range_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, honour_range: bool
) -> None:
    requests: list[dict[str, str]] = []
    monkeypatch.setattr(dl, "_http_open", fake_server(requests, honour_range))
    dest = tmp_path / "data.bin"
    dest.with_name("data.bin.part").write_bytes(PAYLOAD[:1000])
    download_url("https://example.org/data.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD  # appended (206) or rewritten (200)
    assert requests[0]["Range"] == "bytes=1000-"


def test_http_truncated_transfer_keeps_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests: list[dict[str, str]] = []
    monkeypatch.setattr(dl, "_http_open", fake_server(requests, True, truncate=10))
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match="resume"):
        download_url("http://example.org/data.bin", dest, progress=False)
    assert dest.with_name("data.bin.part").stat().st_size == len(PAYLOAD) - 10
    monkeypatch.setattr(dl, "_http_open", fake_server(requests, True))
    download_url("http://example.org/data.bin", dest, md5=md5(PAYLOAD), progress=False)
    assert requests[-1]["Range"] == f"bytes={len(PAYLOAD) - 10}-"
    assert dest.read_bytes() == PAYLOAD


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="scheme"):
        download_url("ftp://example.org/x", tmp_path / "x", progress=False)


# --------------------------------------------------------------------------- extraction


def _tree(root: Path) -> Path:
    (root / "top" / "sub").mkdir(parents=True)
    (root / "top" / "a.txt").write_text("a")
    (root / "top" / "sub" / "b.txt").write_text("b")
    return root


@pytest.mark.parametrize("name", ["bundle.tar", "bundle.tgz", "bundle.zip"])
def test_extract_tar_tgz_zip_once(tmp_path: Path, name: str) -> None:
    src = _tree(tmp_path / "src")
    archive = tmp_path / name
    make_zip(src, archive) if name.endswith(".zip") else make_tar(src, archive)
    dest = tmp_path / "dest"
    extract_archive(archive, dest, progress=False)
    assert (dest / "top" / "sub" / "b.txt").read_text() == "b"
    assert is_extracted(name, dest)
    (dest / "top" / "a.txt").write_text("changed")
    extract_archive(archive, dest, progress=False)  # marker: not unpacked again
    assert (dest / "top" / "a.txt").read_text() == "changed"


@pytest.mark.parametrize("member", ["../evil.txt", "ok/../../evil.txt", "/tmp/canetlib-evil.txt"])
def test_tar_path_traversal_is_refused(tmp_path: Path, member: str) -> None:
    archive = tar_with_member(tmp_path / "bad.tar", member)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="bad.tar"):
        extract_archive(archive, dest, progress=False)
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/canetlib-evil.txt").exists()
    assert not is_extracted("bad.tar", dest)


def test_tar_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    archive = tar_with_member(tmp_path / "link.tar", "ok/escape", symlink_to="../../outside")
    with pytest.raises(UnsafeArchiveError, match="outside"):
        extract_archive(archive, tmp_path / "dest", progress=False)
    assert not (tmp_path / "dest" / "ok" / "escape").exists()


def test_zip_path_traversal_is_refused_before_writing(tmp_path: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("fine.txt", "fine")
        zf.writestr("../evil.txt", "evil")
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match="evil"):
        extract_archive(archive, dest, progress=False)
    assert not (dest / "fine.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="junk.tar"):
        extract_archive(junk, tmp_path / "dest", progress=False)
    assert not tarfile.is_tarfile(junk)  # junk to the tar reader too, not a refused tar
    assert not is_extracted("junk.tar", tmp_path / "dest")  # a failure marks nothing done
    with pytest.raises(FileNotFoundError, match="absent.tar"):
        extract_archive(tmp_path / "absent.tar", tmp_path / "dest", progress=False)
    assert not is_extracted("absent.tar", tmp_path / "dest")


def test_ensure_dataset_fetches_once_then_trusts_the_folder(tmp_path: Path) -> None:
    archive = make_tar(_tree(tmp_path / "src"), tmp_path / "pack.tar")
    remote = RemoteFile(archive.as_uri(), "pack.tar", md5=file_digest(archive))
    root = tmp_path / "root"
    assert ensure_dataset(remote, root / "top", root, progress=False) == root / "top"
    assert (root / "downloads" / "pack.tar").is_file() and is_extracted("pack.tar", root)
    (root / "top" / "a.txt").write_text("mine")
    archive.unlink()  # present data: nothing is fetched or unpacked again
    ensure_dataset(remote, root / "top", root, progress=False)
    assert (root / "top" / "a.txt").read_text() == "mine"
    with pytest.raises(FileNotFoundError, match="missing"):
        ensure_dataset(remote, root / "absent", root, progress=False)
