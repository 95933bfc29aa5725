"""The boot-test backend's parts that need no guest: parsers, console scanning and redaction, domain XML,
image checks with the real qemu-img, and the CLI's handling of arguments."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("libvirt")

from ccis_workbench.backends.boottest import (
    LOGIN_RE,
    BootTest,
    BootTestOptions,
    _Console,
    image_info,
    is_local_uri,
    parse_cloud_init_analyze,
    parse_systemd_analyze,
    readable_by_anyone,
)
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.model import Check
from ccis_workbench.core.monitor import RecordingMonitor


def test_parse_systemd_analyze() -> None:
    text = ("Startup finished in 3.512s (kernel) + 1.203s (initrd) + 1min 2.250s (userspace) = 1min 6.965s \n"
            "graphical.target reached after 1min 2.100s in userspace.\n")
    assert parse_systemd_analyze(text) == {"kernel": 3.512, "initrd": 1.203, "userspace": 62.25, "total": 66.965}
    assert parse_systemd_analyze("Bootup is not yet finished") == {}
    assert parse_systemd_analyze("Startup finished in 850ms (kernel) + 20.5s (userspace) = 21.350s")["kernel"] == 0.85


def test_parse_cloud_init_analyze() -> None:
    text = ("Finished stage: (init-local) 01.20000 seconds\nFinished stage: (init-network) 10.50000 seconds\n"
            "Finished stage: (modules-config) 03.00000 seconds\nFinished stage: (modules-final) 02.25000 seconds\n"
            "Total Time: 16.95000 seconds\n")
    assert parse_cloud_init_analyze(text) == {"init-local": 1.2, "init-network": 10.5, "modules-config": 3.0,
                                              "modules-final": 2.25, "total": 16.95}


def test_login_prompt_pattern() -> None:
    assert LOGIN_RE.search("\r\nDebian GNU/Linux 12 ccis-test ttyS0\r\n\r\nccis-test login: ")
    assert LOGIN_RE.search("localhost login:")
    assert LOGIN_RE.search("\n\rbusybox.example login: "), "a getty that writes \\n\\r"
    assert LOGIN_RE.search("\n\x1b[0mhost login: ")
    assert not LOGIN_RE.search("Started systemd-logind.service - User Login Management.")
    assert not LOGIN_RE.search("  last login: Mon")


def test_console_redacts_scans_and_forwards() -> None:
    mon = RecordingMonitor()
    con = _Console(mon, ["hunter2hunter2"])
    con.write("\x1b[0;32m  OK  \x1b[0m] Started\r\npassword hunter2hunter2\r\n")
    assert "hunter2hunter2" not in mon.text("console") and "[redacted]" in con.text()
    assert con.failure is None
    con.write("[  12.0] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n")
    assert con.failure is not None and con.failure[0] == "kernel-panic"
    con2 = _Console(mon, [])
    con2.write("You are in emergency mode. After logging in, type \"journalctl -xb\"\r\n")
    assert con2.failure is not None and con2.failure[0] == "emergency"
    con4 = _Console(mon, [])
    con4.write("localhost login: error: Disconnected from qemu:///system due to end of file")
    assert con4.disconnected, "virsh's own message, even mid-line and without a newline"
    con3 = _Console(mon, [])
    con3.write("partial line without newline: Kernel pa")
    assert con3.failure is None
    con3.write("nic - not syncing: x\n")
    assert con3.failure is not None, "a pattern split across two reads is still seen"


def test_uri_locality_and_readability(tmp_path: Path) -> None:
    assert is_local_uri("qemu:///system") and is_local_uri("qemu:///session")
    assert not is_local_uri("qemu+ssh://builder.example.com/system")
    f = tmp_path / "img"
    f.write_text("x")
    f.chmod(0o600)
    assert not readable_by_anyone(f)
    f.chmod(0o644)
    assert readable_by_anyone(f) == all(p.stat().st_mode & 0o001 for p in f.resolve().parents)


@pytest.mark.skipif(shutil.which("qemu-img") is None, reason="needs qemu-img (apt-get install qemu-utils)")
def test_image_info_with_the_real_qemu_img(tmp_path: Path) -> None:
    img = tmp_path / "a.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "64M"], check=True)
    info = image_info(img)
    assert info.format == "qcow2" and info.virtual_size == 64 << 20
    vmdk = tmp_path / "a.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "16M"], check=True)
    with pytest.raises(WorkbenchError, match="qcow2 or raw"):
        image_info(vmdk)
    with pytest.raises(WorkbenchError, match="does not exist"):
        image_info(tmp_path / "missing.qcow2")


def test_options_are_validated() -> None:
    for bad in (BootTestOptions(seed="floppy"), BootTestOptions(accel="xen"), BootTestOptions(memory_mb=64),
                BootTestOptions(grow_mib=-1)):
        with pytest.raises(WorkbenchError):
            bad.validate()


def test_domain_xml_boots_the_overlay_with_the_seed_cdrom() -> None:
    from ccis_workbench.core.boottest_plan import ImageInfo, plan_boot_test

    bt = BootTest("/x/img.qcow2", [Check("a", "d", "true")], BootTestOptions(run_id="20260101-000000-abcd"),
                  label="my profile")
    assert bt.name == "ccis-boottest-my-profile-20260101-000000-abcd"
    info = ImageInfo(Path("/x/img.qcow2"), "qcow2", 1 << 30)
    plan = plan_boot_test("/x/img.qcow2", [Check("a", "d", "true")], BootTestOptions(run_id="20260101-000000-abcd"),
                          label="my profile", info=info)
    assert plan.name == bt.name
    root = ET.fromstring(plan.domain_xml("qemu"))
    assert root.get("type") == "qemu" and root.find("cpu").get("mode") == "maximum"
    disks = root.findall("devices/disk")
    assert [(d.get("device"), d.find("target").get("bus")) for d in disks] == [("disk", "virtio"), ("cdrom", "ide")]
    assert disks[1].find("readonly") is not None and disks[1].find("source").get("volume") == f"{bt.name}-seed.iso"
    assert root.find("features/acpi") is not None, "without ACPI a poweroff never ends the domain"
    assert root.find("devices/serial") is not None and root.find("devices/interface").get("type") == "user"
    no_seed = plan_boot_test("/x/img.qcow2", [], BootTestOptions(run_id="20260101-000000-abcd", seed="none"),
                             label="my profile", info=info)
    kvm = ET.fromstring(no_seed.domain_xml("kvm"))
    assert kvm.find("cpu") is None and len(kvm.findall("devices/disk")) == 1


def test_cli_boot_test_without_image_or_profile_exits_2(cli, tmp_path: Path) -> None:
    res = cli("boot-test", str(tmp_path / "nothing.qcow2"))
    assert res.code == 2 and "neither an image file" in res.err
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    res = cli("boot-test", str(txt), "--profile", "openstack-stream9", "--accel", "tcg")
    assert res.code == 2 and "no MBR boot signature" in res.err, res.err
