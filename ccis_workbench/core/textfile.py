"""Reading user files safely: size cap, binary detection, UTF-8 only, clear errors."""

from __future__ import annotations

import os
from pathlib import Path

from ccis_workbench.core.errors import WorkbenchError

#: Kickstarts, fragments and profiles are small; anything larger is a mistake (a disk image, a log).
MAX_TEXT_BYTES = 1024 * 1024


def read_text(path: str | os.PathLike[str], *, what: str = "file") -> str:
    """Return the text of *path*, or raise a WorkbenchError naming the file and the problem."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_TEXT_BYTES + 1)
    except FileNotFoundError:
        raise WorkbenchError("File not found", f"the {what} does not exist", file=str(p),
                             hint="check the name and the current directory") from None
    except IsADirectoryError:
        raise WorkbenchError("Not a file", f"the {what} is a directory", file=str(p)) from None
    except PermissionError:
        raise WorkbenchError("File not readable", f"permission denied reading the {what}",
                             file=str(p), hint="check the file's permissions") from None
    except OSError as exc:
        raise WorkbenchError("File not readable", f"{exc.strerror or exc}", file=str(p)) from None
    if len(data) > MAX_TEXT_BYTES:
        raise WorkbenchError("File too large",
                             f"the {what} is over {MAX_TEXT_BYTES // 1024} KiB; it is not a text {what}",
                             file=str(p), hint="point at the kickstart or YAML file itself")
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise WorkbenchError("Binary file", f"the {what} contains a NUL byte; it is not text",
                             file=str(p), line=line)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise WorkbenchError("Not UTF-8", f"the {what} is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                             file=str(p), line=line, hint="save the file as UTF-8") from None
