"""The accelerator that never hangs: the "kernel runs" detector, the accelerator choice, the verdict cache, the real
probe guest (`doctor`), and a build under `--accel auto` that restarts under TCG when its first guest stays silent.

KVM guests hang on this kind of host and cannot be made to hang on purpose, so the tests never use KVM: the
fallback is exercised with a TCG guest whose kernel is told to print nowhere on the serial console (its
`console=ttyS0` replaced by `console=tty0`), probed with a short window; the restart then runs the real plan."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ccis_workbench.core.plan import (
    KVM_PROBE_WINDOW,
    AccelFallback,
    domain_type,
    kernel_output_seen,
    probe_domain_xml,
)
from tests.fixtures_libvirt import left_behind
from tests.test_build_libvirt import plan_for, profile

#: What the serial console of a KVM guest on a hanging host shows: the real-mode setup stub, then nothing.
SETUP_STUB = (
    "\r\nProbing EDD (edd=off to disable)... ok\r\nDecompressing Linux... Parsing ELF... done.\r\n"
    "Booting the kernel.\r\n"
)


def test_detector_ignores_the_setup_stub_and_the_bios() -> None:
    assert not kernel_output_seen("")
    assert not kernel_output_seen(SETUP_STUB)
    assert not kernel_output_seen("SeaBIOS (version 1.16.2-debian-1.16.2-1)\r\nBooting from ROM...\r\n")
    assert not kernel_output_seen("[ccis-workbench] a note [1.5] \n")


def test_detector_sees_the_kernel_proper() -> None:
    assert kernel_output_seen(SETUP_STUB + "[    0.000000] Linux version 6.1.0-57-amd64 (debian-kernel@...")
    assert kernel_output_seen("Linux version 5.14.0-362.el9.x86_64 (mockbuild@...)")  # printk.time=0
    assert kernel_output_seen("\r\n[    1.234567] virtio_blk virtio1: [vda] 2097152 512-byte logical blocks\r\n")
    # a timestamp split across two reads is seen once the whole line is there
    assert not kernel_output_seen("[    0.00")
    assert kernel_output_seen("[    0.00" + "0000] Command line: console=ttyS0")


def test_auto_uses_kvm_unless_it_is_missing_or_known_not_to_run() -> None:
    assert domain_type("auto", True) == "kvm"
    assert domain_type("auto", True, kvm_works=True) == "kvm"
    assert domain_type("auto", True, kvm_works=False) == "qemu"
    assert domain_type("auto", False) == "qemu"
    # explicit choices keep today's behaviour, whatever is recorded
    assert domain_type("kvm", True, kvm_works=False) == "kvm"
    assert domain_type("tcg", True, kvm_works=True) == "qemu"
    assert 5 <= KVM_PROBE_WINDOW <= 30


def test_fallback_record_is_typed() -> None:
    fb = AccelFallback("no output from the running kernel within 15 s under KVM")
    assert fb.to_dict() == {"from": "kvm", "to": "tcg", "reason": fb.reason, "source": "probe"}
    assert fb.message().startswith("accelerator kvm -> tcg: ")


def test_probe_domain_passes_libvirt_schema(tmp_path: Path) -> None:
    import subprocess

    f = tmp_path / "probe.xml"
    f.write_text(probe_domain_xml("ccis-probe-tcg-x", "qemu", "/var/lib/libvirt/images/ccis-workbench/k"))
    proc = subprocess.run(["virt-xml-validate", str(f), "domain"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_verdict_cache_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("libvirt")
    from ccis_workbench.backends.libvirt_session import read_verdict, record_verdict

    key = "host qemu:///system qemu-7.2.22"
    assert read_verdict(key, tmp_path) is None
    v = record_verdict(key, False, "silent for 15 s", tmp_path)
    assert v is not None and not v.kvm_works
    back = read_verdict(key, tmp_path)
    assert back is not None and (back.kvm_works, back.reason) == (False, "silent for 15 s")
    assert "delete that file" in back.describe() and str(back.path) in back.describe()
    # another qemu version probes again
    assert read_verdict("host qemu:///system qemu-8.0.0", tmp_path) is None
    # a file that is not ours is no verdict (and is replaced on the next record)
    back.path.write_text("[not, a, dict]")
    assert read_verdict(key, tmp_path) is None
    assert record_verdict(key, True, "ran", tmp_path) is not None
    assert read_verdict(key, tmp_path).kvm_works  # type: ignore[union-attr]


@pytest.mark.libvirt
def test_probe_under_tcg_sees_the_kernel_and_leaves_nothing(libvirt_uri: str) -> None:
    from ccis_workbench.backends.libvirt_build import probe_accelerator
    from ccis_workbench.rehearsal.tree import find_host_parts

    res = probe_accelerator(libvirt_uri, "tcg", find_host_parts().vmlinuz)
    assert res.ran, res.message
    assert "Linux version" in res.console
    assert left_behind(libvirt_uri, "ccis-probe-") == []


@pytest.mark.libvirt
def test_probe_reports_a_silent_guest(libvirt_uri: str) -> None:
    """The detector decides: a guest whose output never satisfies it is reported silent after the window."""
    from ccis_workbench.backends.libvirt_build import probe_accelerator
    from ccis_workbench.rehearsal.tree import find_host_parts

    res = probe_accelerator(libvirt_uri, "tcg", find_host_parts().vmlinuz, window=3.0, detector=lambda _t: False)
    assert not res.ran
    assert "no kernel output within 3 s" in res.message or "ended without kernel output" in res.message
    assert left_behind(libvirt_uri, "ccis-probe-") == []


@pytest.mark.libvirt
def test_doctor_probes_tcg_with_a_real_guest(libvirt_uri: str, tmp_path: Path) -> None:
    from ccis_workbench.backends.libvirt_build import doctor

    checks = {c.name: c for c in doctor(libvirt_uri, output_dir=str(tmp_path), accels=("tcg",), cache=tmp_path)}
    assert checks["tcg"].ok and checks["tcg"].message.startswith("TCG guests run (the kernel ran after ")
    assert "kvm" not in checks
    assert left_behind(libvirt_uri, "ccis-probe-") == []


def _silent_first(plan):  # type: ignore[no-untyped-def]
    """The plan with its kernel printing on the VGA console only: the serial console stays silent."""
    args = ["console=tty0" if a.startswith("console=ttyS0") else a for a in plan.kernel_args]
    return dataclasses.replace(plan, kernel_args=args)


@pytest.mark.libvirt
@pytest.mark.slow
def test_silent_guest_restarts_under_tcg_once(
    no_leftovers: str, tree_server: str, mini_catalog: Path, tmp_path: Path
) -> None:
    from ccis_workbench.backends.libvirt_build import Build, KvmProbe
    from ccis_workbench.backends.libvirt_session import connect, hypervisor_key, read_verdict
    from ccis_workbench.core.monitor import RecordingMonitor
    from ccis_workbench.core.plan import under_tcg

    out = tmp_path / "artifacts"
    real = plan_for(mini_catalog, profile("fallback", "%post\necho hello\n%end"), tree_server, out, accel="auto")
    silent = _silent_first(real)
    restarted: list[str] = []

    def retry(plan, fallback):  # type: ignore[no-untyped-def]
        restarted.append(fallback.reason)
        return dataclasses.replace(under_tcg(plan, fallback), kernel_args=real.kernel_args)

    cache = tmp_path / "cache"
    probe = KvmProbe(window=4.0, retry=retry, applies=lambda _p: True, cache=cache)
    mon = RecordingMonitor()
    art = Build(silent, mon, kvm_probe=probe).run()

    assert len(restarted) == 1 and "within 4 s" in restarted[0]
    stages = mon.stages()
    assert stages.count("install") == 2 and stages.count("upload") == 2  # fresh volumes for the second attempt
    notes = [m for _s, m in mon.notes()]
    assert any("restarting the build under TCG" in m for m in notes), notes
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["accel_fallback"]["from"] == "kvm" and manifest["accel_fallback"]["to"] == "tcg"
    assert manifest["accel_fallback"]["source"] == "probe" and "within 4 s" in manifest["accel_fallback"]["reason"]
    assert manifest["domain_type"] == "qemu" and "kvm-probe" in manifest["timings"]
    console = (art / "console.log").read_text()
    assert console.startswith("[ccis-workbench] accelerator kvm -> tcg: ")
    assert console.count("Linux version") == 1 and "Installation complete" in console
    conn = connect(no_leftovers)
    try:
        key = hypervisor_key(conn)
    finally:
        conn.close()
    verdict = read_verdict(key, cache)
    assert verdict is not None and not verdict.kvm_works

    # the next build on this host goes straight to TCG, says why, and probes nothing
    restarted.clear()
    mon2 = RecordingMonitor()
    again = plan_for(mini_catalog, profile("fallback", "%post\necho hello\n%end"), tree_server, out, accel="auto")
    art2 = Build(_silent_first(again), mon2, kvm_probe=probe).run()
    assert len(restarted) == 1 and mon2.stages().count("install") == 1
    assert any("using TCG, not KVM: KVM guests do not run on this host" in m for _s, m in mon2.notes())
    m2 = json.loads((art2 / "manifest.json").read_text())
    assert m2["accel_fallback"]["source"] == "cached" and "kvm-probe" not in m2["timings"]
