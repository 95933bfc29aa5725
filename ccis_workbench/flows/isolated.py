"""Composing untrusted content in a worker process with resource limits.

A contributor's branch is untrusted: its fragments render in the bounded sandbox (core/render_limits.py), and
whatever gets past those checks (a builtin that is slow or large on an input the checks allowed) must not take
the workbench down. `IsolatedComposer` composes in a child process that limits itself before it reads anything:
an address-space limit (RLIMIT_AS: a MemoryError instead of the machine's memory) and, per composition, a CPU-time
limit (RLIMIT_CPU: SIGXCPU becomes a "took over N s" error at the template line it interrupted). The parent waits
at most a wall-clock time and kills a worker that does not answer. A worker that hit a limit or died is not
reused: the next composition starts a fresh one. Every failure is a WorkbenchError naming the fragment (and line,
when the worker could tell).

The worker is started in Python's isolated mode (-I) from a neutral directory, so that nothing in the catalog it
composes (a contributor's checkout of this repository contains a `ccis_workbench/` too) is ever imported. It
sends its results as pickles; the parent unpickles them with an allow-list (the core's dataclasses and plain
builtins, never a function), so a worker cannot make the parent call anything.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import gc
import importlib
import io
import math
import os
import pickle
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ccis_workbench.core import errors
from ccis_workbench.core.errors import WorkbenchError

_HEADER = struct.Struct(">I")
_MAX_FRAME = 64 * 1024 * 1024  # a composition pickles to about 50 KB
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


@dataclass(frozen=True)
class WorkerLimits:
    """What the worker may use. The defaults are stated in the README ("Limits")."""

    #: address space of the worker process (RLIMIT_AS), MiB: the worker itself needs about 150
    memory_mib: int = 1024
    #: CPU seconds per composition (RLIMIT_CPU, moved forward before each one)
    cpu_seconds: int = 10
    #: wall-clock seconds the parent waits for one composition before it kills the worker
    wall_seconds: float = 60.0
    #: wall-clock seconds per rendered layer inside the worker (core.render_limits.RenderLimits.max_seconds)
    render_seconds: float = 2.0


class IsolatedComposer:
    """Composes profiles of the catalog at *root* in a worker process, like core.compose.Composer.compose.

    Thread-safe (one composition at a time); close() it, or use it as a context manager (the worker also ends
    when this object is collected, and when the parent exits: it reads its requests from a pipe).
    """

    def __init__(self, root: str | Path, limits: WorkerLimits | None = None) -> None:
        self.root = Path(root).resolve()
        self.limits = limits or WorkerLimits()
        self._lock = threading.Lock()
        self._box: dict[str, subprocess.Popen[bytes] | None] = {"proc": None}
        self._finalizer = weakref.finalize(self, _stop, self._box)

    def __enter__(self) -> IsolatedComposer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            _stop(self._box)

    def compose(self, profile: Any) -> Any:
        """The core.compose.Composition of *profile* (a core.model.Profile), or a WorkbenchError."""
        with self._lock:
            proc = self._worker()
            where: str | None = None
            try:
                _write_frame(proc.stdin, ("compose", str(self.root), profile))  # type: ignore[arg-type]
            except OSError:
                pass  # the worker is gone: reading says how
            deadline = time.monotonic() + self.limits.wall_seconds
            while True:
                frame = _read_frame(proc.stdout, deadline)  # type: ignore[arg-type]
                if frame is None:
                    timed_out = time.monotonic() >= deadline
                    _stop(self._box)
                    raise self._died(profile, where, proc.returncode, timed_out)
                kind, value = frame
                if kind == "at":
                    where = str(value)
                    continue
                if kind == "ok":
                    return _restore(value)
                if kind == "error":
                    if value.get("fatal"):
                        _stop(self._box)  # a worker that hit a limit is not reused
                    raise _error_from(value, where or getattr(profile, "source", None))
                _stop(self._box)
                raise WorkbenchError("Composition failed", f"the composition worker sent {kind!r}")

    def _worker(self) -> subprocess.Popen[bytes]:
        proc = self._box["proc"]
        if proc is not None and proc.poll() is None:
            return proc
        code = (
            f"import sys; sys.path.insert(0, {_PACKAGE_PARENT!r}); from ccis_workbench.flows.isolated import "
            "worker_main; worker_main()"
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-I",
                "-c",
                code,
                str(self.limits.memory_mib),
                str(self.limits.cpu_seconds),
                repr(float(self.limits.render_seconds)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd="/",
            start_new_session=True,
        )
        self._box["proc"] = proc
        return proc

    def _died(self, profile: Any, where: str | None, status: int | None, timed_out: bool) -> WorkbenchError:
        lim = self.limits
        if timed_out:
            why = f"it did not finish in {lim.wall_seconds:g} s and was stopped"
        elif status == -signal.SIGXCPU:
            why = f"it took over {lim.cpu_seconds} s of CPU time"
        elif status == -signal.SIGKILL:
            why = f"it was killed (over {lim.memory_mib} MiB of memory or {lim.cpu_seconds} s of CPU time)"
        elif status is not None and status < 0:
            why = f"it was ended by signal {signal.Signals(-status).name}"
        else:
            why = f"the worker ended (exit status {status})"
        return WorkbenchError(
            "Composition failed",
            f"composing {getattr(profile, 'name', 'the profile')} failed: {why}",
            file=where or getattr(profile, "source", None),
            hint="the fragment named is too large or too slow to render; it is not composed in the workbench itself",
        )


def compose_isolated(catalog_root: str | Path, profile: Any, limits: WorkerLimits | None = None) -> Any:
    """Compose one profile of the catalog at *catalog_root* in a fresh worker (see IsolatedComposer)."""
    with IsolatedComposer(catalog_root, limits) as composer:
        return composer.compose(profile)


# -- the parent's side -------------------------------------------------------------------------------------------


def _stop(box: dict[str, subprocess.Popen[bytes] | None]) -> None:
    proc = box.get("proc")
    box["proc"] = None
    if proc is None:
        return
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _read_exact(fd: int, n: int, deadline: float) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, min(n - len(buf), 1 << 20))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _read_frame(stream: BinaryIO, deadline: float) -> tuple[str, Any] | None:
    """One frame from the worker, or None when it ended or did not answer by *deadline*."""
    fd = stream.fileno()
    head = _read_exact(fd, _HEADER.size, deadline)
    if head is None:
        return None
    (size,) = _HEADER.unpack(head)
    if size > _MAX_FRAME:
        return None
    body = _read_exact(fd, size, deadline)
    if body is None:
        return None
    try:
        kind, value = _ResultUnpickler(io.BytesIO(body)).load()
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, ImportError):
        return None
    return str(kind), value


_SAFE_BUILTINS = frozenset(
    {
        "set",
        "frozenset",
        "tuple",
        "list",
        "dict",
        "str",
        "bytes",
        "bytearray",
        "int",
        "float",
        "complex",
        "bool",
        "range",
        "slice",
    }
)
_SAFE_OTHERS = frozenset(
    {
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("collections", "OrderedDict"),
    }
)
_CORE_MODULE = re.compile(r"ccis_workbench\.core\.[a-z_]+")


class _ResultUnpickler(pickle.Unpickler):
    """Only data: the core's dataclasses and enums, and plain builtin types. Never a function or a method."""

    def find_class(self, module: str, name: str) -> Any:
        if "." not in name:
            if module == "builtins" and name in _SAFE_BUILTINS:
                return getattr(builtins, name)
            if (module, name) in _SAFE_OTHERS:
                return getattr(importlib.import_module(module), name)
            if _CORE_MODULE.fullmatch(module):
                obj = getattr(importlib.import_module(module), name, None)
                if isinstance(obj, type) and (dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum)):
                    return obj
        raise pickle.UnpicklingError(f"the composition worker sent {module}.{name}, which is not data")


def _restore(comp: Any) -> Any:
    """The worker leaves out pykickstart's objects (they do not pickle): parse the merged text again, as the
    composer's own last step does."""
    from ccis_workbench.core.ksparse import parse_text

    comp.parsed = parse_text(comp.text, comp.version)
    comp.handler = comp.parsed[0]
    return comp


def _error_dict(exc: WorkbenchError, fatal: bool = False) -> dict[str, Any]:
    loc = exc.location
    return {
        "kind": type(exc).__name__,
        "title": exc.title,
        "message": exc.message,
        "hint": exc.hint,
        "file": loc.file if loc else None,
        "line": loc.line if loc else 0,
        "fatal": fatal,
    }


def _error_from(d: dict[str, Any], where: str | None) -> WorkbenchError:
    """The worker's error; one it could not locate is placed at the fragment it was rendering (*where*)."""
    cls = getattr(errors, str(d.get("kind")), WorkbenchError)
    if not (isinstance(cls, type) and issubclass(cls, WorkbenchError)):
        cls = WorkbenchError
    return cls(
        str(d.get("title", "Composition failed")),
        str(d.get("message", "")),
        file=d.get("file") or where or None,
        line=int(d.get("line") or 0),
        hint=str(d.get("hint", "")),
    )


# -- the worker's side -------------------------------------------------------------------------------------------


def _write_frame(stream: BinaryIO, value: Any) -> None:
    body = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(body)) + body)
    stream.flush()


def _read_request(stream: BinaryIO) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    body = stream.read(size)
    return pickle.loads(body) if len(body) == size else None  # from the parent, which is trusted


def worker_main() -> None:
    """The worker process: limits itself, then composes what the parent asks, one request at a time.

    argv: memory (MiB), CPU seconds per composition and wall-clock seconds per rendered layer. Results go to
    the original stdout; anything a library prints goes to stderr (discarded by the parent), so it cannot corrupt
    the frames.
    """
    import resource

    memory = int(sys.argv[1]) * 1024 * 1024
    cpu = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer

    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.render_limits import LimitExceeded, RenderLimits
    from ccis_workbench.core.templates import FragmentRenderer

    render_limits = RenderLimits(max_seconds=float(sys.argv[3]))

    class ReportingRenderer(FragmentRenderer):
        """Tells the parent which fragment it starts, so that a worker that dies is reported at that file."""

        def render(self, name: str, context: Any) -> Any:
            _write_frame(out, ("at", name))
            return super().render(name, context)

    def over_cpu(signum: int, frame: Any) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        if hard == resource.RLIM_INFINITY or soft + 5 <= hard:
            resource.setrlimit(resource.RLIMIT_CPU, (soft + 5, hard))  # time to report, not to go on
        raise LimitExceeded(
            "Composition too slow",
            f"composing took over {cpu} s of CPU time",
            "a fragment renders in milliseconds; look for a loop or recursion that does not end",
        )

    signal.signal(signal.SIGXCPU, over_cpu)
    composers: dict[str, Composer] = {}
    failed = False
    while True:
        if failed:
            gc.collect()  # what the failed composition left in reference cycles (a MemoryError's frames: gigabytes)
        failed = True
        request = _read_request(requests)
        if request is None:
            return
        _, root, profile = request
        usage = resource.getrusage(resource.RUSAGE_SELF)
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = math.ceil(usage.ru_utime + usage.ru_stime) + cpu
        resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
        try:
            composer = composers.get(root)
            if composer is None:
                composer = Composer(Catalog.load(root))
                composer.renderer = ReportingRenderer(composer.catalog.root, render_limits)
                composers[root] = composer
            comp = composer.compose(profile)
            _write_frame(out, ("ok", dataclasses.replace(comp, handler=None, parsed=None)))
            failed = False
        except WorkbenchError as exc:
            # a worker interrupted by SIGXCPU is not reused (it may have stopped anywhere): the parent starts
            # another. A MemoryError is an ordinary exception: the worker goes on once what it interrupted is
            # freed (the failed render's frames are in reference cycles with its traceback: collected below).
            fatal = exc.title == "Composition too slow"
            _write_frame(out, ("error", _error_dict(exc, fatal=fatal)))
            if fatal:
                return
        except LimitExceeded as exc:
            _write_frame(out, ("error", _error_dict(WorkbenchError(exc.title, exc.message, hint=exc.hint), True)))
            return
        except MemoryError:
            _write_frame(
                out,
                (
                    "error",
                    _error_dict(
                        WorkbenchError(
                            "Composition too large",
                            f"composing ran out of memory (the limit is {sys.argv[1]} MiB)",
                            hint="a fragment renders a few kilobytes of kickstart",
                        )
                    ),
                ),
            )
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which shows it as the composition's error
            _write_frame(
                out,
                (
                    "error",
                    _error_dict(WorkbenchError("Composition failed", f"{type(exc).__name__}: {exc}"), fatal=True),
                ),
            )
            return
