"""The boot-test plan (core/boottest_plan.py): domain XML (golden files, checked by libvirt's own schema validator),
volumes, seed and checks, computed without libvirt and without booting. Regenerate the golden files with
CCIS_REGEN_GOLDEN=1 (as the build plan's)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.boottest_plan import (
    KEY_PLACEHOLDER,
    PASSWORD_PLACEHOLDER,
    BootTestOptions,
    ImageInfo,
    plan_boot_test,
)
from ccis_workbench.core.model import Check
from tests.test_plan import check_golden

RUN_ID = "20260101-000000-abcd"
CHECKS = [
    Check("image.hostname", "the seed's hostname is set", "hostname", output="ccis-test"),
    Check("image.root-grown", "the root file system grew", "df -m /"),
]


def public_image(_tmp_path: Path) -> ImageInfo:
    """A file every local user can read, so the overlay is backed by it directly (the plan only stats it; pytest's
    own temporary folders are private)."""
    p = Path("/etc/os-release").resolve()
    assert p.stat().st_mode & 0o004
    return ImageInfo(p, "qcow2", 256 << 20)


def fixed_plan(info: ImageInfo, **kw: object):  # type: ignore[no-untyped-def]
    opts: dict[str, object] = {"run_id": RUN_ID, "accel": "tcg", "user": "ccis-test1", "memory_mb": 1024}
    opts.update(kw)
    return plan_boot_test(
        info.path,
        CHECKS,
        BootTestOptions(**opts),
        label="openstack-stream9",  # type: ignore[arg-type]
        info=info,
        instance_id="iid-ccis-000000000000",
    )


def golden_info() -> ImageInfo:
    """A path that is not on this machine (not readable by anyone): the plan uploads a copy; fixed for the golden."""
    return ImageInfo(Path("/nonexistent/artifacts/openstack-stream9.x86_64.qcow2"), "qcow2", 256 << 20)


def test_domain_xml_golden_nocloud_tcg() -> None:
    check_golden("boottest-domain-openstack-tcg.xml", fixed_plan(golden_info()).domain_xml())


def test_domain_xml_golden_configdrive_kvm_network() -> None:
    plan = fixed_plan(golden_info(), seed="configdrive", accel="kvm", network="default", uri="qemu:///session")
    check_golden("boottest-domain-configdrive-kvm-network.xml", plan.domain_xml())


def test_domain_xml_golden_uefi() -> None:
    """UEFI: q35, OVMF's combined image as a read-only ROM (no NVRAM file to leave behind), the seed on SATA."""
    plan = fixed_plan(golden_info(), firmware="uefi", firmware_path="/usr/share/ovmf/OVMF.fd")
    xml = plan.domain_xml()
    assert "machine='q35'" in xml and "<loader readonly='yes' type='rom'>/usr/share/ovmf/OVMF.fd</loader>" in xml
    assert "bus='sata'" in xml and "bus='ide'" not in xml and "nvram" not in xml
    check_golden("boottest-domain-openstack-uefi.xml", xml)
    assert "Firmware: UEFI (OVMF /usr/share/ovmf/OVMF.fd, q35)" in plan.render_text()


def test_uefi_without_ovmf_is_a_clear_error() -> None:
    from ccis_workbench.core.boottest_plan import find_ovmf
    from ccis_workbench.core.errors import WorkbenchError

    assert find_ovmf(("/nonexistent/OVMF.fd",)) == ""
    with pytest.raises(WorkbenchError, match="needs OVMF"):
        BootTestOptions(firmware="uefi", firmware_path="").validate()
    with pytest.raises(WorkbenchError, match="Unknown firmware"):
        BootTestOptions(firmware="coreboot").validate()


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="libvirt-clients not installed")
def test_domain_xml_passes_libvirt_schema(tmp_path: Path) -> None:
    for kw in (
        {},
        {"firmware": "uefi", "firmware_path": "/usr/share/ovmf/OVMF.fd"},
        {"seed": "configdrive", "accel": "kvm", "network": "default"},
        {"seed": "none"},
        {"seed": "opennebula", "accel": "auto"},
    ):
        plan = fixed_plan(golden_info(), **kw)
        f = tmp_path / "domain.xml"
        f.write_text(plan.domain_xml())
        proc = subprocess.run(["virt-xml-validate", str(f), "domain"], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, (kw, proc.stderr + proc.stdout)


def test_volumes_overlay_backed_by_a_readable_image(tmp_path: Path) -> None:
    info = public_image(tmp_path)
    plan = fixed_plan(info, grow_mib=512)
    assert [v.role for v in plan.volumes] == ["disk", "seed"]
    disk = plan.volume("disk")
    assert disk is not None and disk.backing == str(info.path) and disk.backing_format == "qcow2"
    assert disk.capacity == (256 + 512) << 20 and disk.name == f"ccis-boottest-openstack-stream9-{RUN_ID}-disk.qcow2"


def test_volumes_upload_a_copy_for_a_remote_host_or_an_unreadable_image(tmp_path: Path) -> None:
    info = public_image(tmp_path)
    remote = fixed_plan(info, uri="qemu+ssh://builder.example.org/system")
    assert [v.role for v in remote.volumes] == ["base", "disk", "seed"]
    assert remote.volume("disk").backing == "{base}"  # type: ignore[union-attr]
    assert remote.volume("base").upload == str(info.path)  # type: ignore[union-attr]
    assert any("uploaded into the pool" in n for n in remote.notes)
    assert [v.role for v in fixed_plan(golden_info()).volumes] == ["base", "disk", "seed"]


def test_seed_files_show_placeholders_never_secrets(tmp_path: Path) -> None:
    plan = fixed_plan(public_image(tmp_path))
    files = plan.seed_files
    assert set(files) == {"meta-data", "user-data"}
    assert "instance-id: iid-ccis-000000000000" in files["meta-data"]
    assert PASSWORD_PLACEHOLDER in files["user-data"] and KEY_PLACEHOLDER in files["user-data"]
    assert "name: ccis-test1" in files["user-data"]
    cd = fixed_plan(public_image(tmp_path), seed="configdrive").seed_files
    assert set(cd) == {"openstack/latest/meta_data.json", "openstack/latest/user_data"}
    assert fixed_plan(public_image(tmp_path), seed="none").seed_files == {}


def test_to_dict_and_text_name_everything(tmp_path: Path) -> None:
    plan = fixed_plan(public_image(tmp_path))
    d = plan.to_dict()
    assert d["domain"] == plan.name and d["domain_type"] == "qemu" and d["seed"]["kind"] == "nocloud"
    assert [c["id"] for c in d["checks"]] == ["image.hostname", "image.root-grown"]
    assert d["domain_xml"] == plan.domain_xml() and d["user"] == "ccis-test1"
    text = plan.render_text()
    for needle in (
        plan.name,
        "Volumes:",
        "Seed: nocloud",
        "--- user-data",
        "Checks (2):",
        "image.root-grown",
        "Domain XML:",
        "<domain type='qemu'>",
    ):
        assert needle in text, needle


def test_accelerator_choice_in_the_plan(tmp_path: Path) -> None:
    info = public_image(tmp_path)
    auto = plan_boot_test(info.path, CHECKS, BootTestOptions(run_id=RUN_ID), info=info, kvm_available=True)
    assert auto.domain_type == "kvm" and any("restarts once under TCG" in n for n in auto.notes)
    known = plan_boot_test(
        info.path, CHECKS, BootTestOptions(run_id=RUN_ID), info=info, kvm_available=True, kvm_works=False
    )
    assert known.domain_type == "qemu" and any("recorded verdict" in n for n in known.notes)


def test_the_plan_module_imports_no_libvirt() -> None:
    code = (
        "import sys; import ccis_workbench.core.boottest_plan; assert 'libvirt' not in sys.modules, 'libvirt imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
