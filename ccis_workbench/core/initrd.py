"""A newc cpio writer in pure Python, and the kickstart injection into a copy of an installer initrd.

The kernel unpacks every cpio archive concatenated in an initramfs, compressed or not, so appending a gzip'd
newc archive that holds `ks.cfg` puts the kickstart at `/ks.cfg` without touching the original initrd
(docs/hosts.md, "Serial console"; anaconda reads it with `inst.ks=file:/ks.cfg`). No `cpio` binary is involved.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ccis_workbench.core.errors import WorkbenchError

TRAILER = "TRAILER!!!"
_MAGIC = b"070701"


@dataclass(frozen=True)
class CpioEntry:
    """One member of a newc archive: path (no leading slash), mode (type + permission bits), data or link target."""

    name: str
    mode: int
    data: bytes = b""
    mtime: int = 0
    uid: int = 0
    gid: int = 0

    @classmethod
    def file(cls, name: str, data: bytes, perm: int = 0o644) -> CpioEntry:
        return cls(name, stat.S_IFREG | perm, data)

    @classmethod
    def directory(cls, name: str, perm: int = 0o755) -> CpioEntry:
        return cls(name, stat.S_IFDIR | perm)

    @classmethod
    def symlink(cls, name: str, target: str) -> CpioEntry:
        return cls(name, stat.S_IFLNK | 0o777, target.encode())

    @classmethod
    def chardev(cls, name: str, major: int, minor: int, perm: int = 0o600) -> CpioEntry:
        # newc keeps the device number in rdevmajor/rdevminor; encoded here in data as a marker
        return cls(name, stat.S_IFCHR | perm, f"{major}:{minor}".encode())


def _pad4(n: int) -> bytes:
    return b"\0" * ((4 - n % 4) % 4)


class CpioWriter:
    """Writes a newc ("070701") archive member by member to a binary stream.

    Inode numbers are assigned sequentially so that the archive is reproducible for identical input.
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._ino = 0x1000
        self._closed = False

    def _header(self, name: str, mode: int, size: int, mtime: int, uid: int, gid: int, nlink: int,
                rmaj: int = 0, rmin: int = 0) -> None:
        self._ino += 1
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, uid, gid, nlink, mtime, size, 0, 0, rmaj, rmin, len(encoded), 0)
        header = _MAGIC + b"".join(b"%08X" % f for f in fields)
        self.out.write(header)
        self.out.write(encoded)
        self.out.write(_pad4(len(header) + len(encoded)))

    def add(self, entry: CpioEntry) -> None:
        """Write one member."""
        name = entry.name.lstrip("/") or "."
        if "\0" in name:
            raise WorkbenchError("Bad initrd member", f"NUL in member name {name!r}")
        kind = stat.S_IFMT(entry.mode)
        if kind == stat.S_IFCHR or kind == stat.S_IFBLK:
            major, minor = (int(x) for x in entry.data.decode().split(":"))
            self._header(name, entry.mode, 0, entry.mtime, entry.uid, entry.gid, 1, major, minor)
            return
        nlink = 2 if kind == stat.S_IFDIR else 1
        data = b"" if kind == stat.S_IFDIR else entry.data
        self._header(name, entry.mode, len(data), entry.mtime, entry.uid, entry.gid, nlink)
        self.out.write(data)
        self.out.write(_pad4(len(data)))

    def close(self) -> None:
        """Write the trailer. The archive is complete after this."""
        if not self._closed:
            self._header(TRAILER, 0, 0, 0, 0, 0, 1)
            self._closed = True


def write_cpio(entries: Iterable[CpioEntry], out: BinaryIO) -> None:
    """Write *entries* as one complete newc archive to *out*."""
    w = CpioWriter(out)
    for e in entries:
        w.add(e)
    w.close()


def cpio_bytes(entries: Iterable[CpioEntry], compress: bool = True) -> bytes:
    """The newc archive of *entries*, gzip-compressed (mtime 0, reproducible) unless *compress* is False."""
    raw = io.BytesIO()
    write_cpio(entries, raw)
    if not compress:
        return raw.getvalue()
    return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def read_cpio(data: bytes) -> list[CpioEntry]:
    """Parse one uncompressed newc archive (up to its trailer): used by tests and by `plan` to show members."""
    entries: list[CpioEntry] = []
    pos = 0
    while True:
        if data[pos:pos + 6] != _MAGIC:
            raise WorkbenchError("Bad cpio archive", f"no newc magic at offset {pos}")
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, mtime, size, rmaj, rmin, namesize = f[1], f[2], f[3], f[5], f[6], f[9], f[10], f[11]
        name_start = pos + 110
        name = data[name_start:name_start + namesize - 1].decode()
        pos = name_start + namesize
        pos += (4 - pos % 4) % 4
        if name == TRAILER:
            return entries
        body = data[pos:pos + size]
        pos += size
        pos += (4 - pos % 4) % 4
        if stat.S_IFMT(mode) in (stat.S_IFCHR, stat.S_IFBLK):
            body = f"{rmaj}:{rmin}".encode()
        entries.append(CpioEntry(name, mode, body, mtime, uid, gid))


def kickstart_archive(ks_text: str, name: str = "ks.cfg") -> bytes:
    """A gzip'd newc archive holding the kickstart at /NAME (mode 0600: it may hold password hashes)."""
    return cpio_bytes([CpioEntry.file(name, ks_text.encode(), 0o600)])


def inject_kickstart(initrd: str | os.PathLike[str], ks_text: str, dest: str | os.PathLike[str],
                     name: str = "ks.cfg") -> str:
    """Copy *initrd* to *dest* with the kickstart appended as a cpio archive; return the sha256 of *dest*.

    The original is never modified. The copy is written beside *dest* and renamed into place.
    """
    src, target = Path(initrd), Path(dest)
    if not src.is_file():
        raise WorkbenchError("Missing initrd", f"{src} does not exist", file=str(src))
    tmp = target.with_name(f".{target.name}.part")
    digest = hashlib.sha256()
    try:
        with open(src, "rb") as fin:
            # private (0600): the copy holds the kickstart; O_NOFOLLOW: a link at the temporary name is refused
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as fout:
                os.fchmod(fd, 0o600)
                while chunk := fin.read(1 << 20):
                    digest.update(chunk)
                    fout.write(chunk)
                # The kernel requires each appended archive to start 4-byte aligned.
                pad = _pad4(fout.tell())
                extra = pad + kickstart_archive(ks_text, name)
                digest.update(extra)
                fout.write(extra)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkbenchError("Cannot write initrd", exc.strerror or str(exc), file=str(target)) from None
    return digest.hexdigest()

