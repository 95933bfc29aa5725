"""One small interface through which long-running work reports progress (docs/architecture.md, "Data flow").

The CLI prints it, the TUI posts it as messages, tests record it. Implementations must be thread-safe enough
for one producer thread: the TUI's implementation only calls `App.call_from_thread`/`post_message`.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO


class Monitor:
    """Receives stages, progress, console/log text and notes. The base class ignores everything."""

    def stage(self, name: str, detail: str = "") -> None:
        """A new stage began (e.g. 'download', 'install', 'convert')."""

    def progress(self, done: float, total: float | None = None, unit: str = "") -> None:
        """Progress inside the current stage; total None when unknown."""

    def output(self, channel: str, text: str) -> None:
        """Raw text from a stream: channel 'console' (serial) or 'installer-log' (virtio-serial)."""

    def note(self, severity: str, message: str) -> None:
        """A human sentence: severity 'info', 'warning' or 'error'."""

    def check(self, check_id: str, status: str, reason: str) -> None:
        """A test check started ('running') or finished: 'passed', 'failed', 'error' (not run) or 'skipped'."""

    def cancelled(self) -> bool:
        """True when the user asked to stop; long work polls this."""
        return False


@dataclass
class RecordingMonitor(Monitor):
    """Keeps everything it is told (tests, and the build's own timing record)."""

    events: list[tuple[float, str, tuple[object, ...]]] = field(default_factory=list)
    cancel_event: threading.Event = field(default_factory=threading.Event)

    def _add(self, kind: str, *args: object) -> None:
        self.events.append((time.monotonic(), kind, args))

    def stage(self, name: str, detail: str = "") -> None:
        self._add("stage", name, detail)

    def progress(self, done: float, total: float | None = None, unit: str = "") -> None:
        self._add("progress", done, total, unit)

    def output(self, channel: str, text: str) -> None:
        self._add("output", channel, text)

    def note(self, severity: str, message: str) -> None:
        self._add("note", severity, message)

    def check(self, check_id: str, status: str, reason: str) -> None:
        self._add("check", check_id, status, reason)

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def stages(self) -> list[str]:
        return [str(a[0]) for _, k, a in self.events if k == "stage"]

    def text(self, channel: str) -> str:
        return "".join(str(a[1]) for _, k, a in self.events if k == "output" and a[0] == channel)

    def notes(self) -> list[tuple[str, str]]:
        return [(str(a[0]), str(a[1])) for _, k, a in self.events if k == "note"]


@dataclass
class PrintMonitor(Monitor):
    """The CLI's monitor: stage lines with elapsed time on stderr, console text on stdout."""

    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    show_console: bool = True
    cancel_event: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def _elapsed(self) -> str:
        s = int(time.monotonic() - self.started)
        return f"{s // 60:02d}:{s % 60:02d}"

    def stage(self, name: str, detail: str = "") -> None:
        print(f"[{self._elapsed()}] == {name}{': ' + detail if detail else ''}", file=self.err, flush=True)

    def output(self, channel: str, text: str) -> None:
        if self.show_console and channel == "console":
            self.out.write(text)
            self.out.flush()

    def note(self, severity: str, message: str) -> None:
        print(f"[{self._elapsed()}] {severity}: {message}", file=self.err, flush=True)

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()
