"""Reading user files safely: regular files only, size cap, binary detection, UTF-8 only, clear errors.

Catalog files are untrusted input (reviewers run contributors' branches): a FIFO, a device or a socket in place
of a YAML file or a fragment would hang or never end, so anything but a regular file is refused by name before
it is opened for reading (and checked again on the open descriptor, which is opened non-blocking).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from ccis_workbench.core.errors import WorkbenchError

#: Kickstarts, fragments and profiles are small; anything larger is a mistake (a disk image, a log).
MAX_TEXT_BYTES = 1024 * 1024

#: Characters no catalog or kickstart text needs and that can hide or forge what a reader sees: C0 controls but
#: tab and newline (this includes the provenance marker bytes \x1e and \x1f, ESC and CR), DEL, C1 controls, and
#: the Unicode bidirectional overrides and isolates.
CONTROL_RX = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def describe_char(ch: str) -> str:
    """A control character as a reader can see it: backslash, x, two hex digits (or u and four)."""
    return f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}"


def find_control(text: str) -> tuple[int, int, str] | None:
    """(1-based line, 1-based column, character) of the first control character of *text*, or None."""
    m = CONTROL_RX.search(text)
    if m is None:
        return None
    start = text.rfind("\n", 0, m.start()) + 1
    return text.count("\n", 0, m.start()) + 1, m.start() - start + 1, m.group()


def refuse_controls(text: str, file: str, *, what: str = "file") -> None:
    """Raise a WorkbenchError at file:line (column in the message) when *text* holds a control character."""
    found = find_control(text)
    if found is None:
        return
    line, column, ch = found
    hint = "save the file with Unix line endings (\\n)" if ch == "\r" else "remove the character"
    raise WorkbenchError("Control character", f"the {what} contains the control character {describe_char(ch)} "
                         f"at line {line}, column {column}; only tab and newline are allowed", file=file, line=line,
                         hint=hint)


def file_kind(mode: int) -> str:
    """What a file of this st_mode is, in words ("a regular file", "a FIFO (named pipe)", ...)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _not_regular(p: Path, what: str, mode: int) -> WorkbenchError:
    return WorkbenchError("Not a file", f"the {what} is {file_kind(mode)}, not a regular file",
                          file=str(p), hint=f"point at the {what} itself (a plain file)")


def require_regular(path: str | os.PathLike[str], *, what: str = "file") -> None:
    """Raise a WorkbenchError naming *path* when it exists and is not a regular file (FIFO, device, socket,
    directory); a missing file passes (the caller decides what missing means)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise WorkbenchError("File not readable", f"{exc.strerror or exc}", file=str(p)) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(p, what, st.st_mode)


def is_lexically_within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether *path* names a place under *root* as written (symbolic links not followed): a file of the
    catalog, as opposed to a file the user named elsewhere."""
    return Path(os.path.abspath(path)).is_relative_to(Path(os.path.abspath(root)))


def require_within(path: str | os.PathLike[str], root: str | os.PathLike[str], *, what: str = "file") -> Path:
    """The real path of *path*, which must resolve inside the catalog *root*; a symbolic link (or `..`) that
    leads out of it is refused by name, without reading anything from where it leads."""
    p = Path(path)
    real = Path(os.path.realpath(p))
    if not real.is_relative_to(Path(os.path.realpath(root))):
        raise WorkbenchError("Outside the catalog", f"the {what} leads outside the catalog (a symbolic link or "
                             "'..'); it is not read", file=str(p),
                             hint="catalog files must be plain files inside the catalog")
    return real


def read_bytes_capped(path: str | os.PathLike[str], *, what: str = "file", limit: int = MAX_TEXT_BYTES,
                      within: str | os.PathLike[str] | None = None) -> bytes:
    """The bytes of the regular file *path*, at most *limit* of them; anything else is a WorkbenchError naming
    the file: missing, unreadable, not a regular file (never opened for reading, so a FIFO cannot hang), larger
    than *limit*, or (given the catalog root *within*) leading outside the catalog (never opened)."""
    p = Path(path)
    target = p
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
    if within is not None:
        target = require_within(p, within, what=what)
        flags |= os.O_NOFOLLOW  # the resolved path has no link left; one planted since is refused
    try:
        st = os.stat(target)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(p, what, st.st_mode)
        fd = os.open(target, flags)
    except FileNotFoundError:
        raise WorkbenchError("File not found", f"the {what} does not exist", file=str(p),
                             hint="check the name and the current directory") from None
    except PermissionError:
        raise WorkbenchError("File not readable", f"permission denied reading the {what}",
                             file=str(p), hint="check the file's permissions") from None
    except OSError as exc:
        raise WorkbenchError("File not readable", f"{exc.strerror or exc}", file=str(p)) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())  # the file opened may not be the one checked (replaced in between)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(p, what, st.st_mode)
        if st.st_size > limit:
            raise _too_large(p, what, limit)
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise WorkbenchError("File not readable", f"{exc.strerror or exc}", file=str(p)) from None
    if len(data) > limit:
        raise _too_large(p, what, limit)
    return data


def _too_large(p: Path, what: str, limit: int) -> WorkbenchError:
    return WorkbenchError("File too large", f"the {what} is over {limit // 1024} KiB; it is not a text {what}",
                          file=str(p), hint="point at the kickstart or YAML file itself")


def read_text(path: str | os.PathLike[str], *, what: str = "file",
              within: str | os.PathLike[str] | None = None) -> str:
    """Return the text of *path*, or raise a WorkbenchError naming the file and the problem. Given the catalog
    root *within*, the file must resolve inside it (see require_within). Text with a control character other
    than tab and newline is refused at its line and column (see CONTROL_RX)."""
    p = Path(path)
    data = read_bytes_capped(p, what=what, within=within)
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise WorkbenchError("Binary file", f"the {what} contains a NUL byte; it is not text",
                             file=str(p), line=line)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise WorkbenchError("Not UTF-8", f"the {what} is not valid UTF-8 (byte 0x{data[exc.start]:02x})",
                             file=str(p), line=line, hint="save the file as UTF-8") from None
    refuse_controls(text, str(p), what=what)
    return text
