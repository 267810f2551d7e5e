"""Resumable, checksummed download (against a local HTTP server) and safe tar extraction."""

import hashlib
import io
import random
import tarfile

import pytest

import data.download
from data import DataError
from data.download import download, safe_extract
from tests.helpers import Server


def tar_gz(members):
    """Bytes of a .tar.gz holding ``members``: (name, bytes) files or (name, '->', target) links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member in members:
            info = tarfile.TarInfo(member[0])
            if len(member) == 3:
                info.type = tarfile.SYMTYPE if member[1] == "->" else tarfile.LNKTYPE
                info.linkname = member[2]
                tar.addfile(info)
            else:
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


CLIP = random.Random(0).randbytes(20_000)  # incompressible: the archive is > 20 kB
GOOD_ARCHIVE = tar_gz([("validation_list.txt", b"zero/a_nohash_0.wav\n"),
                       ("zero/a_nohash_0.wav", CLIP),
                       ("zero/alias.wav", "->", "a_nohash_0.wav")])


def sha256(payload):
    return hashlib.sha256(payload).hexdigest()


def test_download_resumes_a_partial_file_with_a_range_request(tmp_path):
    path = tmp_path / "archive.tar.gz"
    (tmp_path / "archive.tar.gz.part").write_bytes(GOOD_ARCHIVE[:1000])
    with Server(GOOD_ARCHIVE) as server:
        download(server.url, path, sha256(GOOD_ARCHIVE), progress=False)
    assert server.ranges == ["bytes=1000-"]
    assert path.read_bytes() == GOOD_ARCHIVE
    assert (tmp_path / "archive.tar.gz.sha256").read_text().split()[0] == sha256(GOOD_ARCHIVE)
    assert not (tmp_path / "archive.tar.gz.part").exists()


def test_download_restarts_when_the_server_ignores_the_range(tmp_path):
    path = tmp_path / "archive.tar.gz"
    (tmp_path / "archive.tar.gz.part").write_bytes(b"stale bytes from another file")
    with Server(GOOD_ARCHIVE, honour_range=False) as server:
        download(server.url, path, sha256(GOOD_ARCHIVE), progress=False)
    assert path.read_bytes() == GOOD_ARCHIVE


def test_download_resumes_after_the_connection_drops(tmp_path, monkeypatch):
    monkeypatch.setattr(data.download.time, "sleep", lambda seconds: None)
    path = tmp_path / "archive.tar.gz"
    with Server(GOOD_ARCHIVE, cut_first_response_at=7000) as server:
        download(server.url, path, sha256(GOOD_ARCHIVE), progress=False)
    assert server.ranges == [None, "bytes=7000-"]
    assert path.read_bytes() == GOOD_ARCHIVE


def test_checksum_mismatch_fails_and_deletes_the_bytes(tmp_path):
    path = tmp_path / "archive.tar.gz"
    with Server(GOOD_ARCHIVE) as server, pytest.raises(DataError, match="checksum mismatch"):
        download(server.url, path, "0" * 64, progress=False)
    assert not path.exists() and not (tmp_path / "archive.tar.gz.sha256").exists()


def test_missing_url_fails_at_once(tmp_path):
    with Server(GOOD_ARCHIVE) as server, pytest.raises(DataError, match="HTTP 404"):
        download(server.url.replace("archive", "nothing"), tmp_path / "x.tar.gz", "0" * 64,
                 progress=False)
    assert server.ranges == []


def test_safe_extract_writes_files_and_inner_links(tmp_path):
    archive = tmp_path / "good.tar.gz"
    archive.write_bytes(GOOD_ARCHIVE)
    dest = safe_extract(archive, tmp_path / "out", progress=False)
    assert (dest / "zero" / "a_nohash_0.wav").read_bytes() == CLIP
    assert (dest / "zero" / "alias.wav").resolve() == (dest / "zero" / "a_nohash_0.wav").resolve()
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize("members", [
    [("../evil.txt", b"x")],
    [("/tmp/evil_absolute.txt", b"x")],
    [("ok/../../evil.txt", b"x")],
    [("link", "->", "../../etc")],
    [("link", "->", "/etc/passwd")],
    [("hard", "hard", "../evil.txt")],
    [("up", "->", ".."), ("up/evil.txt", b"x")],  # writing through a link that leaves
], ids=["dotdot", "absolute", "nested-dotdot", "symlink-out", "symlink-absolute", "hardlink-out",
        "through-link"])
def test_safe_extract_rejects_a_malicious_archive(tmp_path, members):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(tar_gz([("fine.txt", b"ok")] + members))
    dest = tmp_path / "sub" / "out"
    with pytest.raises(DataError, match="unsafe archive member"):
        safe_extract(archive, dest, progress=False)
    assert not dest.exists() and not (tmp_path / "sub" / "out.partial").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["evil.tar.gz", "sub"]


def test_safe_extract_reports_a_corrupt_archive(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(GOOD_ARCHIVE[:len(GOOD_ARCHIVE) // 2])
    with pytest.raises(DataError, match="broken.tar.gz: cannot extract"):
        safe_extract(archive, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
