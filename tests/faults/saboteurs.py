"""Faults made to order in real qemu processes (shared by the tests of tests/faults)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time


def qemu_pids(guest: str) -> set[int]:
    """The qemu processes whose `-name guest=...` matches the regular expression *guest* (from its start)."""
    out = subprocess.run(["pgrep", "-f", f"guest={guest}"], capture_output=True, text=True, check=False).stdout
    return {int(p) for p in out.split()}


class KillWhileStarting(threading.Thread):
    """Stops the first new qemu whose `-name guest=...` matches the regular expression *guest* as soon as it
    appears, before it greets libvirt (libvirt is then still starting the domain), and kills it *after* seconds
    later: qemu dies while libvirt starts the guest. `killed` holds its pid once done."""

    def __init__(self, guest: str, after: float = 0.5, within: float = 120.0) -> None:
        super().__init__(daemon=True)
        self.guest, self.after, self.within = guest, after, within
        self.before = qemu_pids(guest)
        self.killed: list[int] = []
        self._quit = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.within
        while not self._quit.is_set() and time.monotonic() < deadline:
            new = qemu_pids(self.guest) - self.before
            if new:
                pid = min(new)
                try:
                    os.kill(pid, signal.SIGSTOP)
                    time.sleep(self.after)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.killed.append(pid)
                return
            time.sleep(0.002)  # qemu greets libvirt within a fraction of a second: look often

    def __enter__(self) -> KillWhileStarting:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._quit.set()
        self.join(timeout=10)
