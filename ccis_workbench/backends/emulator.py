"""When the emulator itself fails: qemu dies under a running guest, or a TCG guest's kernel stops mid-boot.

Neither is the doing of the kickstart or the image: qemu 7.2's multi-threaded TCG has been seen to die with a
segfault in `memory_region_dispatch_write` (about once in a thousand guests on a loaded 2-core host), and a TCG
installer kernel to stop printing in the middle of its own boot. The build and the boot test say what happened,
destroy what is left and run again once (`HOST_FAULT_RESTARTS`); a second fault is reported as it is.

libvirt tells a dead emulator apart from a guest that powered off or was destroyed: the lifecycle event
STOPPED with detail FAILED ("the emulator died unexpectedly"). qemu's own log (on a local host, when this user can
read it) says how: `shutting down, reason=crashed` is a qemu killed by a signal.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import libvirt

from ccis_workbench.core.boottest_plan import is_local_uri

#: How many times one build or boot test runs again after an emulator fault.
HOST_FAULT_RESTARTS = 1
#: The STOPPED event's detail that means qemu died under the guest.
EMULATOR_DIED = "failed"

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
