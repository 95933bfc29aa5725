"""qemu can die while libvirt starts a guest, before the guest runs (killed, a crash, the out-of-memory killer):
under load that phase lasts seconds. libvirt's `createXML` then fails, and the build and the boot test must take
it for the emulator's fault (run again once), not for a domain qemu refused (which says why). The words are
libvirt's own: a real qemu is stopped as it appears and killed, on a real libvirtd; a qemu given an option it does
not know refuses the domain for real."""

from __future__ import annotations

import uuid

import pytest

from ccis_workbench.backends.emulator import death_while_starting, died_while_starting
from tests.faults.saboteurs import KillWhileStarting


def _domain(name: str, extra: str = "") -> str:
    return (f"<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><name>{name}</name>"
            "<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
            f"<devices><serial type='pty'/></devices>{extra}</domain>")


def _start(uri: str, xml: str) -> Exception | None:
    import libvirt

    conn = libvirt.open(uri)
    try:
        dom = conn.createXML(xml, libvirt.VIR_DOMAIN_START_PAUSED | libvirt.VIR_DOMAIN_START_AUTODESTROY)
        dom.destroy()
        return None
    except libvirt.libvirtError as exc:
        return exc
    finally:
        conn.close()


@pytest.mark.libvirt
def test_a_qemu_killed_while_libvirt_starts_it_is_told_apart_from_one_that_refuses(libvirt_uri: str) -> None:
    name = f"ccistest-gone-{uuid.uuid4().hex[:8]}"
    with KillWhileStarting(f"{name},") as saboteur:
        gone = _start(libvirt_uri, _domain(name))
    killed = saboteur.killed
    assert killed, "the qemu was never seen: nothing was tested"
    assert gone is not None, "the domain started although its qemu was killed"
    assert died_while_starting(gone), str(gone)
    assert "died while libvirt started it" in death_while_starting(gone)

    refused = _start(libvirt_uri, _domain(f"ccistest-refused-{uuid.uuid4().hex[:8]}",
                                          "<qemu:commandline><qemu:arg value='-no-such-option'/></qemu:commandline>"))
    assert refused is not None and "no-such-option" in str(refused), refused
    assert not died_while_starting(refused), str(refused)


@pytest.mark.parametrize(("message", "died"), [
    ("internal error: qemu unexpectedly closed the monitor", True),
    ("Unable to read from monitor: Connection reset by peer", True),
    ("internal error: End of file from qemu monitor", True),
    ("internal error: qemu unexpectedly closed the monitor: 2026-12-06T10:00:00.000000Z qemu-system-x86_64: "
     "warning: host doesn't support requested feature: CPUID.80000001H:ECX.svm [bit 2]", True),
    ("internal error: qemu unexpectedly closed the monitor: 2026-12-06T10:00:00.000000Z qemu-system-x86_64: "
     "-drive file=/x.qcow2: Could not open '/x.qcow2': Permission denied", False),
    ("internal error: process exited while connecting to monitor: qemu-system-x86_64: -no-such-option: invalid "
     "option", False),
    ("Cannot access storage file '/var/lib/x.qcow2': No such file or directory", False),
    ("invalid argument: could not find capabilities for domaintype=kvm", False),
])
def test_which_start_errors_are_a_dead_emulator(message: str, died: bool) -> None:
    assert died_while_starting(Exception(message)) is died
