"""The build plan: kernel command line, domain XML (golden file, checked by libvirt's own schema validator),
volumes and artifacts. Regenerate the golden files with CCIS_REGEN_GOLDEN=1."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.installsource import from_dir
from ccis_workbench.core.ksparse import parse_text
from ccis_workbench.core.plan import (
    LOG_CHANNEL,
    NAMESPACE,
    PREFIX,
    ROOTFS_EXPORT_POST,
    PlanOptions,
    domain_type,
    make_plan,
    parse_size_mb,
)

GOLDEN = Path(__file__).parent / "golden"
KS = "#version=RHEL9\ntext\npoweroff\nrootpw --lock\n%packages\n@core\n%end\n"


def make_tree(root: Path, family: str = "CCIS Workbench rehearsal") -> Path:
    pxe = root / "images/pxeboot"
    pxe.mkdir(parents=True)
    (pxe / "vmlinuz").write_bytes(b"kernel" * 100)
    (pxe / "initrd.img").write_bytes(b"initrd" * 100)
    sums = {n: hashlib.sha256((pxe / n).read_bytes()).hexdigest() for n in ("vmlinuz", "initrd.img")}
    (root / ".treeinfo").write_text(
        f"[general]\nfamily = {family}\nversion = 0.1\nname = {family} 0.1\narch = x86_64\n\n"
        "[tree]\narch = x86_64\n\n[images-x86_64]\nkernel = images/pxeboot/vmlinuz\n"
        "initrd = images/pxeboot/initrd.img\n\n[checksums]\n"
        f"images/pxeboot/vmlinuz = sha256:{sums['vmlinuz']}\nimages/pxeboot/initrd.img = sha256:{sums['initrd.img']}\n")
    return root


def composition(formats: list[str] | None = None, text: str = KS) -> SimpleNamespace:
    return SimpleNamespace(text=text, variables={"disk_size": 10, "arch": "x86_64"},
                           release=SimpleNamespace(name="centos-stream-9"),
                           target=SimpleNamespace(name="openstack", formats=formats or ["qcow2"]))


def fixed_options(**kw: object) -> PlanOptions:
    base: dict[str, object] = {"accel": "tcg", "build_id": "20260101-000000-abcd",
                               "created": "2026-01-01T00:00:00+00:00",
                               "pool_path": "/var/lib/libvirt/images/ccis-workbench", "disk_size_mb": 256,
                               "memory_mb": 1024}
    base.update(kw)
    return PlanOptions(**base)  # type: ignore[arg-type]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CCIS_REGEN_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with CCIS_REGEN_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from the golden file (CCIS_REGEN_GOLDEN=1 to accept)"


def test_domain_xml_golden_tcg(tmp_path: Path) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    plan = make_plan(composition(), "openstack-stream9", src, fixed_options())
    check_golden("domain-openstack-tcg.xml", plan.domain_xml())


def test_domain_xml_golden_all_formats_network(tmp_path: Path) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    plan = make_plan(composition(["qcow2", "rootfs-tar"]), "docker-stream9", src,
                     fixed_options(accel="kvm", network="default", uri="qemu:///session"))
    check_golden("domain-docker-kvm-network.xml", plan.domain_xml())


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None, reason="libvirt-clients not installed")
def test_domain_xml_passes_libvirt_schema(tmp_path: Path) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    for opts, fmts in ((fixed_options(), ["qcow2"]), (fixed_options(accel="kvm", network="default"),
                                                         ["qcow2", "rootfs-tar"])):
        plan = make_plan(composition(fmts), "p", src, opts)
        f = tmp_path / "domain.xml"
        f.write_text(plan.domain_xml({"kernel": "/k", "initrd": "/i"}))
        proc = subprocess.run(["virt-xml-validate", str(f), "domain"], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr + proc.stdout


def test_domain_xml_content(tmp_path: Path) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    plan = make_plan(composition(), "openstack-stream9", src, fixed_options())
    root = ET.fromstring(plan.domain_xml({"kernel": "/pool/k", "initrd": "/pool/i"}))
    assert root.get("type") == "qemu"
    assert root.findtext("name", "").startswith(PREFIX)
    assert root.find("features/acpi") is not None  # without it poweroff never ends the domain
    assert root.findtext("os/kernel") == "/pool/k" and root.findtext("os/initrd") == "/pool/i"
    cmdline = root.findtext("os/cmdline", "")
    assert cmdline.split()[:1] == ["inst.ks=file:/ks.cfg"]
    assert "console=ttyS0,115200n8" in cmdline.split() and "inst.text" in cmdline.split()
    assert root.find("devices/interface[@type='user']") is not None
    chan = root.find("devices/channel/target")
    assert chan is not None and chan.get("name") == LOG_CHANNEL
    assert root.find("devices/serial/log") is not None  # system URI: virtlogd keeps the console too
    meta = root.find(f"metadata/{{{NAMESPACE}}}build")
    assert meta is not None
    assert meta.findtext(f"{{{NAMESPACE}}}kickstart-sha256") == hashlib.sha256(KS.encode()).hexdigest()
    vols = [v.text for v in meta.findall(f"{{{NAMESPACE}}}volume")]
    assert vols == [v.name for v in plan.volumes] and all(v.startswith(plan.name) for v in vols)
    for ending in ("on_poweroff", "on_reboot", "on_crash"):
        assert root.findtext(ending) == "destroy"


def test_accelerator_choice() -> None:
    assert domain_type("tcg", True) == "qemu"
    assert domain_type("kvm", False) == "kvm"
    assert domain_type("auto", True) == "kvm"
    assert domain_type("auto", False) == "qemu"


def test_auto_kvm_plan_says_how_to_fall_back(tmp_path: Path) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    plan = make_plan(composition(), "p", src, fixed_options(accel="auto"), kvm_available=True)
    assert plan.domain_type == "kvm"
    assert any("restarts once under TCG" in n for n in plan.notes)
    known = make_plan(composition(), "p", src, fixed_options(accel="auto"), kvm_available=True, kvm_works=False)
    assert known.domain_type == "qemu" and any("recorded verdict" in n for n in known.notes)
    assert known.accel_fallback is not None and known.accel_fallback.to_dict()["source"] == "cached"
    assert known.to_dict()["accel_fallback"]["to"] == "tcg" and plan.accel_fallback is None


def test_url_tree_repo_arg_rewritten_for_user_network(tmp_path: Path) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    src.kind, src.location = "url", "http://127.0.0.1:8123/tree/"
    plan = make_plan(composition(), "p", src, fixed_options())
    assert "inst.repo=http://10.0.2.2:8123/tree/" in plan.kernel_args
    src.location = "https://mirror.stream.centos.org/9-stream/BaseOS/x86_64/os/"
    plan = make_plan(composition(), "p", src, fixed_options())
    assert f"inst.repo={src.location}" in plan.kernel_args


def test_volumes_and_artifacts(tmp_path: Path) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    fmts = ["qcow2", "raw", "vmdk", "vhd", "ova", "gce-tar", "vagrant-libvirt", "rootfs-tar"]
    plan = make_plan(composition(fmts), "all", src, fixed_options(disk_size_mb=None))
    roles = {v.role: v for v in plan.volumes}
    assert set(roles) == {"kernel", "initrd", "disk", "export"}
    assert roles["disk"].format == "qcow2" and roles["disk"].capacity == 10 * 1024 ** 3  # profile disk_size
    names = [a.filename for a in plan.artifacts]
    assert names[:8] == ["all-rehearsal.x86_64" + s for s in (".qcow2", ".raw", ".vmdk", ".vhd", ".ova", ".tar.gz",
                                                            ".vagrant-libvirt.box", ".rootfs.tar.xz")]
    assert {"Containerfile", "CHECKSUM", "manifest.json", "console.log", "installer.log", "packages.txt"} <= set(names)
    # the rootfs export %post is appended, and the result is still valid kickstart for the release
    assert plan.kickstart.endswith(ROOTFS_EXPORT_POST)
    _, messages = parse_text(plan.kickstart, "RHEL9")
    assert not [m for m in messages if m.severity == "error"]


def test_plan_text_and_dict(tmp_path: Path) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    plan = make_plan(composition(), "p", src, fixed_options())
    text = plan.render_text()
    assert "REHEARSAL tree: not CentOS" in text and "<domain type='qemu'>" in text
    d = plan.to_dict()
    assert d["source"]["rehearsal"] is True and d["domain"] == plan.name and d["kernel_cmdline"] == plan.cmdline


@pytest.mark.parametrize(("text", "mib"), [("256M", 256), ("10G", 10240), ("1024", 1024), ("2GiB", 2048)])
def test_parse_size(text: str, mib: int) -> None:
    assert parse_size_mb(text) == mib


@pytest.mark.parametrize("kw", [{"accel": "xen"}, {"memory_mb": 16}, {"disk_size_mb": 1},
                                {"extra_kernel_args": ["a'b"]}, {"formats": ["iso9660"]}])
def test_bad_options(tmp_path: Path, kw: dict[str, object]) -> None:
    src = from_dir(make_tree(tmp_path / "tree"))
    with pytest.raises(WorkbenchError):
        make_plan(composition(), "p", src, fixed_options(**kw))


def test_bad_size() -> None:
    with pytest.raises(WorkbenchError, match="Bad size"):
        parse_size_mb("ten gigs")


@pytest.mark.skipif(shutil.which("xorriso") is None, reason="xorriso not installed")
def test_iso_source_is_uploaded_and_attached_as_cdrom(tmp_path: Path) -> None:
    from ccis_workbench.core.installsource import from_iso

    tree = make_tree(tmp_path / "tree", family="Test ISO")
    iso = tmp_path / "boot.iso"
    subprocess.run(["xorriso", "-as", "mkisofs", "-R", "-J", "-o", str(iso), str(tree)], check=True,
                   capture_output=True)
    plan = make_plan(composition(), "p", from_iso(iso, cache=tmp_path / "cache"), fixed_options())
    vol = plan.volume("iso")
    assert vol is not None and vol.upload == str(iso.resolve()) and vol.capacity == iso.stat().st_size
    assert "inst.repo=cdrom" in plan.kernel_args
    root = ET.fromstring(plan.domain_xml())
    cdrom = root.find("devices/disk[@device='cdrom']")
    assert cdrom is not None and cdrom.find("readonly") is not None
    assert cdrom.find("source").get("volume") == vol.name  # type: ignore[union-attr]
    if shutil.which("virt-xml-validate"):
        f = tmp_path / "d.xml"
        f.write_text(plan.domain_xml())
        subprocess.run(["virt-xml-validate", str(f), "domain"], check=True, capture_output=True)
