"""qemu frozen as its guest starts: libvirt waits for qemu's answers with no time limit (the monitor's greeting in
`createXML`, then the resume), so a build or a boot test hung for ever, and SIGTERM did not get through.
`start_within` and `resume_within` destroy such a domain after their timeout and say the emulator froze; a qemu
that answers is resumed and left running. A real libvirtd and a real qemu (TCG): the test stops the qemu process
with SIGSTOP, as a wedged emulator would be, and nothing of it may be left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures_libvirt import libvirt_uri  # noqa: F401 (fixture)

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.libvirt

from ccis_workbench.backends.emulator import EmulatorFrozen, resume_within, start_within  # noqa: E402

PREFIX = "ccis-faulttest-frozen-"


def _qemu_pids(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"guest={name},"], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def _qemu_pid(name: str) -> int:
    pids = _qemu_pids(name)
    assert len(pids) == 1, f"one qemu for {name}, found {pids}"
    return pids[0]


def _xml(name: str) -> str:
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os><on_poweroff>destroy</on_poweroff></domain>"
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def paused(libvirt_uri: str) -> Iterator[tuple[Any, Any, int]]:  # noqa: F811
    """A small transient TCG domain started paused (no disk: SeaBIOS finds nothing to boot, which is enough), its
    connection and its qemu's pid; destroyed and its qemu continued or killed whatever happens."""
    name = PREFIX + uuid.uuid4().hex[:8]
    conn = libvirt.open(libvirt_uri)
    dom = conn.createXML(_xml(name), libvirt.VIR_DOMAIN_START_PAUSED)
    pid = _qemu_pid(name)
    try:
        yield conn, dom, pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(name).destroy()
        conn.close()
        assert (
            subprocess.run(["virsh", "-c", libvirt_uri, "domstate", name], capture_output=True, check=False).returncode
            != 0
        ), f"{name} was left behind"


def test_a_frozen_qemu_is_destroyed_and_said(paused: tuple[Any, Any, int]) -> None:
    conn, dom, pid = paused
    name = dom.name()
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    with pytest.raises(EmulatorFrozen) as raised:
        resume_within(dom, timeout=2)
    took = time.monotonic() - t0
    assert "did not answer libvirt's resume within 2s" in str(raised.value)
    assert "the domain was destroyed" in str(raised.value)
    assert took >= 2, took  # it waited for qemu first
    # the destroy has returned: the transient domain is gone and its qemu with it
    with pytest.raises(libvirt.libvirtError):
        conn.lookupByName(name)
    assert not _alive(pid)


def test_a_qemu_that_answers_is_resumed_and_left_running(paused: tuple[Any, Any, int]) -> None:
    _conn, dom, pid = paused
    resume_within(dom, timeout=1)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    time.sleep(2)  # past the timeout: the cancelled timer must not destroy a domain that answered
    assert dom.isActive() and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert _alive(pid)


def test_a_qemu_frozen_while_libvirt_starts_it_is_destroyed_and_said(libvirt_uri: str) -> None:  # noqa: F811
    """The qemu is stopped the moment it runs, while libvirt waits for its monitor (as seen by hand: the build sat
    in createXML for 15 minutes and SIGTERM did not end it). Should the stop come after libvirt's start, the resume
    meets the frozen qemu instead: either way the call gives up after its timeout and nothing is left."""
    name = PREFIX + uuid.uuid4().hex[:8]
    stopped: list[int] = []
    done = threading.Event()

    def freeze() -> None:
        while not done.is_set() and not stopped:
            for pid in _qemu_pids(name):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            time.sleep(0.002)

    freezer = threading.Thread(target=freeze, daemon=True)
    freezer.start()
    conn = libvirt.open(libvirt_uri)
    hit = "start"
    try:
        t0 = time.monotonic()
        with pytest.raises(EmulatorFrozen) as raised:
            dom = start_within(conn, _xml(name), libvirt.VIR_DOMAIN_START_PAUSED, name, timeout=3)
            hit = "resume"
            resume_within(dom, timeout=3)
        assert f"did not answer libvirt's {hit} within 3s" in str(raised.value), raised.value
        assert time.monotonic() - t0 < 60
        assert stopped and not _alive(stopped[0])
        with pytest.raises(libvirt.libvirtError):
            conn.lookupByName(name)
        print(f"the frozen qemu was met in libvirt's {hit}")
    finally:
        done.set()
        freezer.join()
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(libvirt.libvirtError):
            conn.lookupByName(name).destroy()
        conn.close()
