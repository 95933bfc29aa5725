"""Sparse hashing (core/files.py): the sha256 of a file with holes, computed without reading the holes, equals
hashlib's over every byte and sha256sum's; a file system without SEEK_DATA falls back to reading."""

from __future__ import annotations

import errno
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from ccis_workbench.core import files

MIB = 1 << 20


def full_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sparse_file(path: Path, size: int, writes: list[tuple[int, bytes]]) -> Path:
    """A file made like a disk image: truncate to *size*, then data written at the given offsets."""
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, data in writes:
            fh.seek(offset)
            fh.write(data)
    return path


CASES = {
    "odd-offsets": (9 * MIB + 333, [(4097, b"x" * 5000), (3 * MIB + 17, os.urandom(70_001)), (8 * MIB + 1, b"\1")]),
    "hole-at-start-and-end": (6 * MIB, [(2 * MIB + 12345, os.urandom(MIB + 7))]),
    "data-at-start-hole-at-end": (5 * MIB + 1, [(0, os.urandom(100_000))]),
    "hole-at-start-data-at-end": (5 * MIB - 3, [(5 * MIB - 4100, os.urandom(4097))]),
    "only-a-hole": (3 * MIB + 511, []),
    "longer-than-the-zero-buffer": (7 * MIB + 5, [(MIB, b"a"), (6 * MIB + 4, b"b")]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sparse_file_hashes_like_every_byte(tmp_path: Path, name: str) -> None:
    size, writes = CASES[name]
    path = sparse_file(tmp_path / f"{name}.img", size, writes)
    assert path.stat().st_size == size
    expected = full_sha256(path)
    assert files.sha256_file(path) == expected
    assert files.sha256_read(path) == expected
    assert (
        subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
        == expected
    )


def test_the_holes_are_found(tmp_path: Path) -> None:
    """The file system here reports holes: otherwise the tests above would not exercise the sparse path."""
    path = sparse_file(tmp_path / "d.img", 8 * MIB, [(4 * MIB, b"data")])
    fd = os.open(path, os.O_RDONLY)
    try:
        segments = list(files.data_segments(fd, 8 * MIB))
    finally:
        os.close(fd)
    assert segments[0] == (0, segments[0][1], False) and segments[-1][2] is False
    assert any(is_data for _, _, is_data in segments)
    assert sum(end - start for start, end, is_data in segments if not is_data) >= 6 * MIB
    first_data = next(s for s in segments if s[2])
    assert first_data[0] <= 4 * MIB < first_data[1]


def test_file_without_holes_and_empty_file(tmp_path: Path) -> None:
    dense = tmp_path / "dense"
    dense.write_bytes(os.urandom(3 * MIB + 99))
    assert files.sha256_file(dense) == full_sha256(dense)
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert files.sha256_file(empty) == hashlib.sha256(b"").hexdigest()


def test_file_system_without_seek_data_falls_back_to_reading(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "d.img", 4 * MIB + 3, [(MIB + 1, b"payload")])
    asked: list[int] = []

    def no_seek_data(fd: int, pos: int, how: int) -> int:
        asked.append(how)
        if how in (os.SEEK_DATA, os.SEEK_HOLE):
            raise OSError(errno.EINVAL, "SEEK_DATA is not supported here")
        return os.lseek(fd, pos, how)

    fd = os.open(path, os.O_RDONLY)
    try:
        assert list(files.data_segments(fd, 4 * MIB + 3, no_seek_data)) == [(0, 4 * MIB + 3, True)]
    finally:
        os.close(fd)
    assert files.sha256_file(path, seek=no_seek_data) == full_sha256(path)
    assert os.SEEK_DATA in asked


def test_other_seek_errors_are_not_hidden(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "d.img", MIB, [])

    def broken(fd: int, pos: int, how: int) -> int:
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError, match="I/O error"):
        files.sha256_file(path, seek=broken)
