"""qemu frozen under a paused guest: libvirt waits for qemu's answer to a resume with no time limit, so a build or
a boot test would hang for ever. `resume_within` destroys such a domain after its timeout and says the emulator
froze; a qemu that answers is resumed and left running. A real libvirtd and a real qemu (TCG): the test stops the
qemu process with SIGSTOP, as a wedged emulator would be, and nothing of it may be left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fixtures_libvirt import libvirt_uri  # noqa: F401 (fixture)

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.libvirt

from ccis_workbench.backends.emulator import EmulatorFrozen, resume_within  # noqa: E402

PREFIX = "ccis-faulttest-frozen-"


def _qemu_pid(name: str) -> int:
    out = subprocess.run(["pgrep", "-f", f"guest={name},"], capture_output=True, text=True, check=False).stdout.split()
    assert len(out) == 1, f"one qemu for {name}, found {out}"
    return int(out[0])


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
    xml = (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os><on_poweroff>destroy</on_poweroff></domain>"
    )
    dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED)
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
