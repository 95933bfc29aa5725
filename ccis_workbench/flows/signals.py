"""Signals end a run the way Ctrl-C does: SIGINT, SIGTERM (`timeout`, `kill`, CI runners, service managers) and
SIGHUP (a closed terminal, a dropped SSH connection) set the monitor's cancel event, so the running build, boot
test or container check destroys its guest and removes its volumes before it returns. A second signal while that
cleanup runs is reported and ignored: aborting the cleanup is what leaves volumes behind.

The exit status after a signal is 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).

Python runs a signal's handler in the main thread, between two of its bytecodes. The kernel may hand a process's
signal to any of its threads (a build's or a cell's, busy in libvirt); a main thread blocked in `Future.result()`
or `Thread.join()` is then not woken, and the handler waits for the whole wait, so the cancel comes too late
(a matrix's running cells ended passing after Ctrl-C). A flow whose main thread waits for its workers waits
through `wait_for` and `join`, in slices after each of which the pending handler runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from dataclasses import dataclass
from types import FrameType
from typing import Any

CANCEL_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
WAIT_SLICE = 0.2  # seconds: at most this long between a signal and its handler while the main thread waits
#: What a cancelled build, boot test or container check does (said after "SIGINT: cancelling: ").
GUEST_STOPPING = "destroying the guest and removing its volumes"
#: What a cancelled matrix does.
CELLS_STOPPING = "every running cell destroys its guests and removes its volumes; waiting cells do not start"


@dataclass
class SignalState:
    """Which signal (if any) cancelled the run."""

    signum: int | None = None

    @property
    def exit_status(self) -> int | None:
        return 128 + self.signum if self.signum is not None else None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextlib.contextmanager
def cancel_on_signals(cancel_event: threading.Event, say: Callable[[str], Any], *,
                      stopping: str = GUEST_STOPPING) -> Iterator[SignalState]:
    """While the block runs, the cancel signals set *cancel_event* and are told through *say*, with *stopping*
    (what the cancel does now) after "cancelling: ".

    Outside the main thread (where Python cannot install handlers) this does nothing but yield the state."""
    state = SignalState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if state.signum is None:
            state.signum = signum
            cancel_event.set()
            say(f"\n{name}: cancelling: {stopping}")
        else:
            say(f"\n{name}: still cleaning up; the cleanup goes on (it is what keeps libvirt clean)")

    previous = {s: signal.signal(s, handler) for s in CANCEL_SIGNALS}
    try:
        yield state
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def wait_for(pending: Iterable[futures.Future[Any]]) -> None:
    """Wait until every future is done, in slices of WAIT_SLICE (see the module's docstring); their results and
    exceptions are left to the caller."""
    left = set(pending)
    while left:
        _, left = futures.wait(left, timeout=WAIT_SLICE)


def join(thread: threading.Thread) -> None:
    """`thread.join()`, in slices of WAIT_SLICE (see the module's docstring)."""
    while thread.is_alive():
        thread.join(WAIT_SLICE)
