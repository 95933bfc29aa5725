"""When the emulator itself fails: qemu dies or freezes under a guest, or a TCG guest's kernel stops mid-boot.

Neither is the doing of the kickstart or the image: qemu 7.2's multi-threaded TCG has been seen to die with a
segfault in `memory_region_dispatch_write` (about once in a thousand guests on a loaded 2-core host), and a TCG
installer kernel to stop printing in the middle of its own boot. The build and the boot test say what happened,
destroy what is left and run again once (`HOST_FAULT_RESTARTS`); a second fault is reported as it is.

libvirt tells a dead emulator apart from a guest that powered off or was destroyed: the lifecycle event
STOPPED with detail FAILED ("the emulator died unexpectedly"). qemu's own log (on a local host, when this user can
read it) says how: `shutting down, reason=crashed` is a qemu killed by a signal.

qemu can also die while libvirt starts the guest, before it runs (under load that phase lasts seconds): libvirt's
`createXML` then fails with "qemu unexpectedly closed the monitor" and nothing of qemu's own after it
(`died_while_starting`), which is the same fault, not a domain qemu refused.

A qemu can also freeze without dying (stopped by a signal, or wedged before its first instruction), and libvirt
waits for its answer with no time limit: a frozen qemu hung the build for ever, in `createXML` (libvirt waiting
for the monitor's greeting) or in the resume, and not even SIGTERM got through (the call holds the main thread).
Starts and resumes go through `start_within` and `resume_within`, which destroy such a domain after
`QEMU_ANSWER_TIMEOUT` (libvirt kills the process before it waits for the job the call holds, so the destroy gets
through) and say the emulator froze.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlparse

import libvirt

from ccis_workbench.core.boottest_plan import is_local_uri

T = TypeVar("T")

#: What to do about an emulator fault that a restart did not cure.
FAULT_HINT = "build again; if it happens every time, look at qemu's log and the host's kernel log (dmesg)"
#: How many times one build or boot test runs again after an emulator fault.
HOST_FAULT_RESTARTS = 1
#: The STOPPED event's detail that means qemu died under the guest.
EMULATOR_DIED = "failed"
#: How long qemu may take to answer libvirt when a guest starts or resumes (it answers within a second or two,
#: even under TCG on a busy host) before it is taken for frozen.
QEMU_ANSWER_TIMEOUT = 60.0
#: Between two tries to destroy a frozen emulator's domain (libvirt may not have listed a starting one yet).
DESTROY_RETRY = 5.0


class EmulatorFrozen(Exception):
    """qemu did not answer libvirt in time; the domain was destroyed (the message says so)."""


def start_within(conn: Any, xml: str, flags: int, name: str, timeout: float = QEMU_ANSWER_TIMEOUT) -> Any:
    """`conn.createXML(xml, flags)` for domain *name*, but a qemu that freezes while libvirt starts it (libvirt
    waits for its monitor's greeting with no time limit) is destroyed after *timeout* seconds: EmulatorFrozen."""
    return _bounded(lambda: conn.createXML(xml, flags), lambda: conn.lookupByName(name).destroy(), timeout,
                    "start")


def resume_within(dom: Any, timeout: float = QEMU_ANSWER_TIMEOUT) -> None:
    """Resume the paused domain *dom*; a qemu that does not answer within *timeout* seconds is destroyed:
    EmulatorFrozen."""
    _bounded(dom.resume, dom.destroy, timeout, "resume")


def _bounded(call: Callable[[], T], destroy: Callable[[], object], timeout: float, what: str) -> T:
    """Run the libvirt *call*; if it has not returned after *timeout* seconds, a watchdog thread destroys the
    domain (libvirt kills its qemu before it waits for the job the call holds, so the destroy gets through, and
    the call returns with an error), trying again every DESTROY_RETRY seconds until the call has returned. Then
    EmulatorFrozen is raised. A call that fails by itself raises libvirt's error as it is."""
    done, fired = threading.Event(), threading.Event()

    def watchdog() -> None:
        if done.wait(timeout):
            return
        fired.set()
        while not done.is_set():
            with contextlib.suppress(libvirt.libvirtError):
                destroy()
            done.wait(DESTROY_RETRY)

    thread = threading.Thread(target=watchdog, name=f"qemu-watchdog-{what}", daemon=True)
    thread.start()
    result: Any = None
    try:
        result = call()
    except libvirt.libvirtError:
        if not fired.is_set():
            raise
    finally:
        done.set()
        thread.join()  # a destroy under way has returned: nothing of this domain runs on
    if fired.is_set():
        raise EmulatorFrozen(f"qemu, the emulator of the guest, did not answer libvirt's {what} within "
                             f"{timeout:.0f}s (frozen: stopped by a signal, or wedged); the domain was destroyed")
    return cast(T, result)


#: libvirt's words when the qemu it was starting went away; what qemu itself said, if anything, follows them.
_GONE_WHILE_STARTING = ("qemu unexpectedly closed the monitor", "End of file from qemu monitor",
                        "Unable to read from monitor", "process exited while connecting to monitor")


def died_while_starting(exc: Exception) -> bool:
    """Whether libvirt's error from starting a domain says its qemu went away without a word of its own: killed
    (a crash, the out-of-memory killer) while libvirt started it. A qemu that refuses the domain (a file it cannot
    open, an option it does not know) says why, and libvirt appends that; its warnings do not count as a reason."""
    message = str(exc).strip()
    for phrase in _GONE_WHILE_STARTING:
        if phrase in message:
            rest = message.split(phrase, 1)[1].strip(" :\n")
            own = [line for line in rest.splitlines() if line.strip() and "warning" not in line.lower()]
            return not own or own == ["Connection reset by peer"]
    return False


def death_while_starting(exc: Exception) -> str:
    """One sentence for `died_while_starting`: what died, when, and libvirt's words."""
    return f"qemu, the emulator of the guest, died while libvirt started it (libvirt: {str(exc).strip()[:300]})"


_STOP_DETAILS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: EMULATOR_DIED,
}


def stop_reason(detail: int) -> str:
    """The word for a STOPPED lifecycle event's *detail*."""
    return _STOP_DETAILS.get(detail, f"stopped ({detail})")


def qemu_log_path(uri: str, name: str) -> Path | None:
    """Where libvirt keeps the qemu log of domain *name* on this host (None for a remote URI)."""
    if not is_local_uri(uri):
        return None
    if urlparse(uri).path.rstrip("/") == "/session":
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return base / "libvirt" / "qemu" / "log" / f"{name}.log"
    return Path("/var/log/libvirt/qemu") / f"{name}.log"


def qemu_log_tail(uri: str, name: str, limit: int = 4) -> list[str]:
    """What qemu wrote after its command line in its newest run (the last *limit* lines, each at most 200
    characters); empty when the log is remote or unreadable."""
    path = qemu_log_path(uri, name)
    if path is None:
        return []
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = text.splitlines()
    start = max((i for i, line in enumerate(lines) if "starting up libvirt" in line), default=-1) + 1
    # the environment and command line follow "starting up": each of their lines but the last ends in a backslash
    while start < len(lines) and lines[start].rstrip().endswith("\\"):
        start += 1
    own = [line.strip()[:200] for line in lines[start + 1:] if line.strip()
           and not line.startswith("char device redirected")]
    return own[-limit:]


def emulator_death(uri: str, name: str) -> str:
    """One sentence: qemu died under domain *name*, with what its log says when it can be read."""
    tail = qemu_log_tail(uri, name)
    signal = any("reason=crashed" in line for line in tail)
    said = f"; qemu's log: {' | '.join(tail)}" if tail else ""
    how = " (killed by a signal: a crash of qemu, or the host's out-of-memory killer)" if signal else ""
    return f"qemu, the emulator running the guest, died unexpectedly{how}{said}"
