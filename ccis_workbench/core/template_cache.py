"""Compiled catalog templates kept between runs, as Python keeps .pyc files.

A cold `render` compiles its three or four templates (Jinja2's lexer, parser and code generator: about 15 ms);
loading the compiled code from here takes well under a millisecond.

One cache file holds the code Jinja2 made of one template *for one template id*: the provenance markers the
code prints carry the id the renderer gave the template (templates.py), so the id is part of the key and cached
code never credits its lines to another template. The file starts with a header: the format, a digest of what
shapes the generated code (templates.py: the sandbox, the code generator, the markers; render_limits.py; the
Python and Jinja2 versions) and the sha256 of the template's source. Any difference and the template is compiled
again, by the sandbox, exactly as without the cache; nothing from a catalog decides a file's name or content but
its source text, compiled by the sandbox.

The files live in the user's own cache directory ($XDG_CACHE_HOME/ccis-workbench/templates), which must be a
directory owned by the user and closed to others (mode 0700); they are written atomically and opened without
following links. Code compiled on the way to a composition that fails is not kept: bad input writes nothing. A
directory that cannot be used or written is no cache, never an error.
"""

from __future__ import annotations

import functools
import hashlib
import marshal
import os
import stat
import sys
import types
from collections.abc import Callable
from pathlib import Path

import jinja2
from jinja2.bccache import Bucket

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import write_bytes_atomic

_FORMAT = b"ccis-workbench template code 1\n"
#: A compiled fragment is a few tens of kilobytes; a file over this is not one of ours.
MAX_CODE_BYTES = 8 * 1024 * 1024


@functools.cache
def code_fingerprint() -> bytes:
    """What the generated code depends on besides the template: the modules that generate and bound it, and the
    Python and Jinja2 versions."""
    from ccis_workbench import __version__

    h = hashlib.sha256(f"{sys.version}\0{jinja2.__version__}\0{__version__}\0".encode())
    here = Path(__file__).resolve().parent
    for module in ("templates.py", "render_limits.py"):
        try:
            h.update((here / module).read_bytes())
        except OSError:  # installed without its sources: the version above stands for them
            h.update(f"{module} unreadable".encode())
    return h.hexdigest().encode()


class TemplateCodeCache(jinja2.BytecodeCache):
    """Jinja2's bytecode cache, keyed by template name, file, template id and code fingerprint (see the module
    docstring). *template_id* is the renderer's: it gives a template its id the first time it is asked."""

    def __init__(self, directory: Path, template_id: Callable[[str], int]) -> None:
        self.directory = directory
        self.template_id = template_id
        self._usable: bool | None = None
        self._pending: dict[Path, bytes] = {}

    def get_cache_key(self, name: str, filename: str | None = None) -> str:
        parts = (code_fingerprint(), name.encode(), (filename or "").encode(), str(self.template_id(name)).encode())
        return hashlib.sha256(b"\0".join(parts)).hexdigest()

    def get_source_checksum(self, source: str) -> str:
        return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()

    def _header(self, bucket: Bucket) -> bytes:
        return _FORMAT + code_fingerprint() + b"\n" + bucket.checksum.encode() + b"\n"

    def _path(self, bucket: Bucket) -> Path:
        return self.directory / f"{bucket.key}.code"

    def usable(self, *, create: bool = False) -> bool:
        """The directory exists (made when *create*), is a directory owned by this user, and is closed to
        others. Only *create* (a commit) closes the user's own open directory: reading changes nothing."""
        if self._usable is None or (create and not self._usable):
            try:
                if create:
                    self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                st = os.lstat(self.directory)
                if (create and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
                        and stat.S_IMODE(st.st_mode) & 0o077):
                    os.chmod(self.directory, 0o700)
                    st = os.lstat(self.directory)
                usable = (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
                          and not stat.S_IMODE(st.st_mode) & 0o077)
            except OSError:
                usable = False
            if usable or create:
                self._usable = usable  # a directory that is missing may be made later, by commit()
            return usable
        return self._usable

    def load_bytecode(self, bucket: Bucket) -> None:
        if not self.usable():
            return
        try:
            fd = os.open(self._path(bucket), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(MAX_CODE_BYTES + 1)
        except OSError:
            return
        finally:
            os.close(fd)
        head = self._header(bucket)
        if len(data) > MAX_CODE_BYTES or not data.startswith(head):
            return
        try:
            code = marshal.loads(data[len(head):])
        except (EOFError, ValueError, TypeError):
            return
        if isinstance(code, types.CodeType):
            bucket.code = code

    def dump_bytecode(self, bucket: Bucket) -> None:
        """Kept in memory until commit(): the composing that compiled it may still fail, and bad input writes
        nothing."""
        if bucket.code is not None:
            self._pending[self._path(bucket)] = self._header(bucket) + marshal.dumps(bucket.code)

    def discard(self) -> None:
        self._pending.clear()

    def commit(self) -> None:
        """Write what was compiled since the last commit (atomically; nothing when the directory is not usable)."""
        pending, self._pending = self._pending, {}
        if not pending or not self.usable(create=True):
            return
        for path, data in pending.items():
            try:
                write_bytes_atomic(path, data)
            except WorkbenchError:
                pass  # a full disk or a read-only home: compiled again next time

    def clear(self) -> None:
        if not self.directory.is_dir():
            return
        for path in self.directory.glob("*.code"):
            try:
                path.unlink()
            except OSError:
                pass
