"""Small file helpers shared by the core: content hashes and atomic text writes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ccis_workbench.core.errors import WorkbenchError

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256 of a file, read in 1 MiB chunks (disk images are large)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_text_atomic(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> Path:
    """Write *text* to *path* through a temporary file in the same folder, renamed into place: a reader sees
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
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise WorkbenchError("Cannot write", exc.strerror or str(exc), file=str(target)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
