"""Small file helpers shared by the core: content hashes and atomic text writes."""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError

_CHUNK = 1 << 20
# Holes are hashed from this many zeros at a time. SHA-256 cannot skip them (each block's state depends on the
# bytes before it), so the zeros are still hashed, only never read: 16 KiB to 1 MiB chunks measured the same
# (0.88 s per GiB on this kind of machine), larger chunks mean fewer Python calls.
_ZERO_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(_ZERO_CHUNK))

Seek = Callable[[int, int, int], int]


def data_segments(fd: int, size: int, seek: Seek = os.lseek) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is_data) runs covering bytes [0, size) of the open file *fd*: holes (which read as zeros)
    found with SEEK_DATA/SEEK_HOLE. A file system without them (EINVAL, EOPNOTSUPP) reports the rest as data."""
    pos = 0
    while pos < size:
        try:
            data = min(seek(fd, pos, os.SEEK_DATA), size)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos: the rest is a hole
                data = size
            elif exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield pos, size, True
                return
            else:
                raise
        if data > pos:
            yield pos, data, False
        if data >= size:
            return
        end = min(seek(fd, data, os.SEEK_HOLE), size)
        yield data, end, True
        pos = end


def _feed_zeros(h: Any, count: int) -> None:
    while count >= _ZERO_CHUNK:
        h.update(_ZEROS)
        count -= _ZERO_CHUNK
    if count:
        h.update(_ZEROS[:count])


def sha256_state(path: str | os.PathLike[str], h: Any = None, *, start: int = 0, seek: Seek = os.lseek) -> Any:
    """The sha256 object after feeding it bytes [start, EOF) of *path* (a fresh one when *h* is None).

    Every byte is hashed, but holes are not read: a sparse disk image (10 GiB virtual, a few MB of data) is
    hashed from a reused zero buffer, and only its data is read from disk. The object can be copied and fed
    more (a fixed VHD is a raw image plus a footer). *seek* is os.lseek; another one stands for a file system
    without SEEK_DATA."""
    h = hashlib.sha256() if h is None else h
    view = memoryview(bytearray(_CHUNK))
    with open(path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        size = os.fstat(fd).st_size
        for seg_start, seg_end, is_data in data_segments(fd, size, seek):
            pos = max(seg_start, start)
            if pos >= seg_end:
                continue
            if not is_data:
                _feed_zeros(h, seg_end - pos)
                continue
            fh.seek(pos)
            while pos < seg_end:
                n = fh.readinto(view[: min(_CHUNK, seg_end - pos)])
                if not n:
                    raise OSError(errno.EIO, f"{path} shrank while it was hashed")
                h.update(view[:n])
                pos += n
    return h


def sha256_file(path: str | os.PathLike[str], *, seek: Seek = os.lseek) -> str:
    """sha256 of a file, equal to `sha256sum`'s; the holes of a sparse file are hashed without reading them."""
    return str(sha256_state(path, seek=seek).hexdigest())


def sha256_read(path: str | os.PathLike[str]) -> str:
    """sha256 of a file read whole, holes included (the plain way, kept to measure the sparse one against)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def nonzero_sha256(path: str | os.PathLike[str], length: int, *, seek: Seek = os.lseek) -> bytes:
    """A digest of bytes [0, length) of *path* that reads only its data: sha256 over (offset, block) of every
    64 KiB block that is not all zeros. It depends on the content alone (not on where the file system keeps
    holes), and costs a read of the data, not a hash of every zero of a 10 GiB image."""
    block = 1 << 16
    zeros = bytes(block)
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        done = 0  # blocks before this are hashed (two data ranges can share a block)
        for start, end in _data_ranges(fd, min(length, os.fstat(fd).st_size), seek):
            pos = max(start - start % block, done)
            fh.seek(pos)
            while pos < end:
                data = fh.read(min(block, length - pos))
                if not data:
                    break
                if data != zeros[: len(data)]:
                    h.update(pos.to_bytes(8, "big") + len(data).to_bytes(4, "big"))
                    h.update(data)
                pos += len(data)
            done = pos
    return h.digest()


def _data_ranges(fd: int, size: int, seek: Seek) -> list[tuple[int, int]]:
    return [(a, b) for a, b, is_data in data_segments(fd, size, seek) if is_data]


def same_prefix(a: str | os.PathLike[str], b: str | os.PathLike[str], length: int, *, seek: Seek = os.lseek) -> bool:
    """Whether the first *length* bytes of *a* and *b* are equal, reading only where one of them has data
    (holes read as zeros in both): two 10 GiB sparse images are compared by reading their few MB of data."""
    with open(a, "rb", buffering=0) as fa, open(b, "rb", buffering=0) as fb:
        if min(os.fstat(fa.fileno()).st_size, os.fstat(fb.fileno()).st_size) < length:
            return False
        ranges = sorted(_data_ranges(fa.fileno(), length, seek) + _data_ranges(fb.fileno(), length, seek))
        pos = 0
        for start, end in ranges:
            start = max(start, pos)
            while start < end:
                n = min(_CHUNK, end - start)
                fa.seek(start)
                fb.seek(start)
                if fa.read(n) != fb.read(n):
                    return False
                start += n
            pos = max(pos, end)
    return True


class DigestCache:
    """sha256 of files, each computed once while it stays the same file with the same content: keyed by
    (path, size, mtime_ns, inode, device), so a file rewritten or replaced since is hashed again.

    A file whose first bytes are another hashed file's whole content (a fixed VHD is the raw image plus a
    512-byte footer) continues that file's hash instead of hashing those bytes again: the shared prefix is
    checked first by comparing the two files where they hold data (`same_prefix`). *misses* counts the files
    actually hashed."""

    _MIN_PREFIX = 1 << 20  # smaller files are cheaper to hash than to compare

    def __init__(self, *, seek: Seek = os.lseek) -> None:
        self._seek = seek
        self._states: dict[tuple[str, int, int, int, int], Any] = {}
        self.misses = 0

    @staticmethod
    def _key(path: str) -> tuple[str, int, int, int, int]:
        st = os.stat(path)
        return (path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)

    def __call__(self, path: str | os.PathLike[str]) -> str:
        return self.sha256(path)

    def sha256(self, path: str | os.PathLike[str]) -> str:
        name = os.path.abspath(path)
        key = self._key(name)
        state = self._states.get(key)
        if state is None:
            state = self._hash(name, key[1])
            self.misses += 1
            self._states = {k: v for k, v in self._states.items() if k[0] != name}
            self._states[key] = state
        return str(state.hexdigest())

    def _hash(self, name: str, size: int) -> Any:
        for key, state in sorted(self._states.items(), key=lambda kv: -kv[0][1]):
            other, other_size = key[0], key[1]
            if other == name or not self._MIN_PREFIX <= other_size <= size:
                continue
            try:
                if self._key(other) != key or not same_prefix(other, name, other_size, seek=self._seek):
                    continue
            except OSError:
                continue
            return sha256_state(name, state.copy(), start=other_size, seek=self._seek)
        return sha256_state(name, seek=self._seek)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    """Write *text* (UTF-8) to *path* atomically: write_bytes_atomic."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int | None = None) -> Path:
    """Write *data* to *path* through a temporary file in the same folder, renamed into place: a reader sees
    the old file or the whole new one, and a failure (full disk, no permission) leaves nothing behind.

    The temporary file has a random name and is created with O_CREAT|O_EXCL|O_NOFOLLOW (tempfile.mkstemp), so
    nothing planted in the folder (a symbolic link at a name someone could guess) is ever followed; the rename
    replaces a link at *path* itself instead of writing through it. It is created 0600; *mode* sets another."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    except OSError as exc:
        raise WorkbenchError("Cannot write", exc.strerror or str(exc), file=str(target)) from None
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WorkbenchError("Cannot write", exc.strerror or str(exc), file=str(target)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
