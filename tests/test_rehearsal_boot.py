"""The rehearsal installer and the system it installs, run under plain qemu/TCG (no libvirt needed).

One install that succeeds, whose disk then boots through extlinux to a serial login and reads a NoCloud seed;
one install whose `%post --erroronfail` exits 1 and must fail the way anaconda does. The guest is watched
through its output (pexpect), never with sleeps."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ccis_workbench.core.failure import FailureDetector
from ccis_workbench.core.initrd import inject_kickstart

pexpect = pytest.importorskip("pexpect")
QEMU = shutil.which("qemu-system-x86_64")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(QEMU is None, reason="qemu-system-x86 not installed")]

KS_OK = """#version=RHEL9
text
network --bootproto=dhcp --hostname=rehearsal.example.com
rootpw --iscrypted --lock locked
bootloader --append="console=ttyS0,115200n8 no_timer_check"
part / --fstype="xfs" --grow --size=100
poweroff

%pre
echo pre-ran > /tmp/pre-marker
%end

%post --erroronfail --log=/root/ks-post.log
echo "post in chroot: $(cat /etc/os-release | head -n 1)"
test -d /etc/cloud/cloud.cfg.d
echo 'datasource_list: [ NoCloud ]' > /etc/cloud/cloud.cfg.d/90-test.cfg
restorecon -R /etc/cloud
%end

%post --nochroot
cp /tmp/pre-marker /mnt/sysimage/root/pre-marker
%end

%packages
@core
cloud-init
-plymouth
%end
"""

KS_FAIL = """#version=RHEL9
text
poweroff
%post --erroronfail
echo "about to fail"
exit 1
%end
%packages
@core
%end
"""


def install(tree: Path, ks: str, tmp: Path, extra: str = "") -> tuple[str, str, Path]:
    """Run the rehearsal installer on a fresh 96 MiB disk; return (console, installer log, disk)."""
    initrd = tmp / "initrd.img"
    inject_kickstart(tree / "images/pxeboot/initrd.img", ks, initrd)
    disk = tmp / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "96M"], check=True)
    log = tmp / "installer.log"
    proc = subprocess.run(
        [QEMU, "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-device", "virtio-rng-pci",
         "-kernel", str(tree / "images/pxeboot/vmlinuz"),
         "-initrd", str(initrd), "-append", f"console=ttyS0,115200n8 inst.ks=file:/ks.cfg inst.text quiet {extra}",
         "-drive", f"file={disk},if=virtio", "-device", "virtio-serial",
         "-chardev", f"file,id=log,path={log}", "-device",
         "virtserialport,chardev=log,name=org.fedoraproject.anaconda.log.0"],
        capture_output=True, text=True, timeout=240, check=False)
    return proc.stdout, log.read_text() if log.exists() else "", disk


def seed_iso(tmp: Path) -> Path:
    d = tmp / "seed"
    d.mkdir()
    (d / "meta-data").write_text("instance-id: iid-rehearsal-1\nlocal-hostname: seeded-host\n")
    (d / "user-data").write_text("#cloud-config\nuser: tester\npassword: s3cret-run-only\n")
    iso = tmp / "seed.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-V", "cidata", "-J", "-R", "-o", str(iso), str(d)], check=True,
                   capture_output=True)
    return iso


@pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso not installed")
def test_install_then_boot_the_installed_disk(rehearsal_tree: Path, tmp_path: Path) -> None:
    console, log, disk = install(rehearsal_tree, KS_OK, tmp_path)
    steps = ["Starting installer, one moment...", "Running pre-installation scripts", "Configuring storage",
             "Installing software", "Installing boot loader", "Running post-installation scripts",
             "Installation complete", "rehearsal: powering off (kickstart: poweroff)"]
    positions = [console.find(s) for s in steps]
    assert all(p >= 0 for p in positions), [s for s, p in zip(steps, positions, strict=True) if p < 0]
    assert positions == sorted(positions)
    assert "Traceback" not in console
    d = FailureDetector()
    d.feed("console", console)
    d.feed("installer-log", log)
    assert d.verdict() is not None and d.verdict().kind == "success"  # type: ignore[union-attr]
    assert d.packages == ["core-0-rehearsal.noarch", "cloud-init-0-rehearsal.noarch"]
    assert "post in chroot: NAME=\"CCIS Workbench rehearsal\"" in log
    subprocess.run(["qemu-img", "check", str(disk)], check=True, capture_output=True)

    # the installed disk boots by itself (BIOS -> extlinux MBR -> kernel + initramfs -> busybox init)
    child = pexpect.spawn(QEMU, ["-accel", "tcg", "-m", "512", "-nographic", "-no-reboot", "-device", "virtio-rng-pci",
                                 "-drive", f"file={disk},if=virtio,snapshot=on", "-cdrom", str(seed_iso(tmp_path))],
                          encoding="utf-8", timeout=120, codec_errors="replace")
    try:
        child.expect("CCIS Workbench rehearsal system")  # the extlinux menu label / kernel start
        child.expect(r"NoCloud seed on \S+: instance-id=iid-rehearsal-1")
        child.expect("password set for tester")
        child.expect("hostname seeded-host")
        child.expect("rehearsal-init: boot finished")
        child.expect("seeded-host login:")
    finally:
        child.terminate(force=True)


def test_post_erroronfail_failure(rehearsal_tree: Path, tmp_path: Path) -> None:
    console, log, _ = install(rehearsal_tree, KS_FAIL, tmp_path, "rehearsal.onerror=poweroff")
    assert "Error: %post script failed (kickstart line 4)" in console
    assert "Traceback (most recent call last):" in console
    assert "Installation complete" not in console and "powering off (kickstart" not in console
    assert "about to fail" in console + log
    d = FailureDetector()
    d.feed("console", console)
    v = d.verdict()
    assert v is not None and v.kind == "post-failed"
