"""Hybrid BIOS + UEFI rehearsal images, end to end on real libvirtd + qemu/TCG + OVMF.

A profile whose kickstart asks for an EFI system partition (`part /boot/efi`) is built from the rehearsal tree: the
disk is GPT (BIOS boot partition, ESP with systemd-boot, root with the legacy-BIOS-bootable attribute), the same
bytes at every build, and `boot-test --firmware both` passes with SeaBIOS and with OVMF, each in its own domain.
A BIOS-only image fails `--firmware both`, naming UEFI. Every domain and volume of these runs is removed whatever
happens (the profiles are named fwtest-*, so that leftovers of this file are found by name).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccis_workbench.core.boottest_plan import find_ovmf
from ccis_workbench.core.reproducibility import RebuildReport
from ccis_workbench.flows.rebuild_check import compare_folders
from tests.fixtures_libvirt import left_behind, libvirt_uri  # noqa: F401 (fixture)

pytest.importorskip("libvirt")
pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
PREFIXES = ("ccis-fwtest-", "ccis-boottest-fwtest-")
EPOCH = "1700000000"

HYBRID = """name: fwtest-hybrid
release: centos-stream-9
target: openstack
kickstart: |
  part biosboot --fstype=biosboot --size=1
  part /boot/efi --fstype=efi --size=200
  part / --fstype=xfs --size=8000 --grow
"""
BIOS_ONLY = """name: fwtest-bios
release: centos-stream-9
target: openstack
kickstart: |
  reqpart
  part / --fstype=xfs --size=8000 --grow
"""


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    return subprocess.run(
        [sys.executable, "-m", "ccis_workbench", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        check=False,
    )


def _remove_ours(uri: str) -> None:
    """Destroy and undefine this file's domains, delete its volumes (names fwtest-*), whatever state they are in."""
    for prefix in PREFIXES:
        for name in left_behind(uri, prefix):
            for cmd in (
                ["destroy", name],
                ["undefine", name, "--nvram"],
                ["undefine", name],
                ["vol-delete", name, "--pool", "ccis-workbench"],
            ):
                subprocess.run(["virsh", "-c", uri, *cmd], capture_output=True, check=False, timeout=60)


@pytest.fixture(scope="module")
def cleanup(libvirt_uri: str) -> Iterator[str]:  # noqa: F811
    yield libvirt_uri
    _remove_ours(libvirt_uri)


def _build(profile_text: str, name: str, out: Path) -> Path:
    profile = out / f"{name}.yaml"
    profile.write_text(profile_text)
    res = _cli(
        "build",
        str(profile),
        "--tree",
        "rehearsal",
        "--accel",
        "tcg",
        "--disk-size",
        "256M",
        "--format",
        "qcow2",
        "--output",
        str(out / "artifacts"),
        "--quiet",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    dirs = [d for d in (out / "artifacts").iterdir() if (d / "manifest.json").exists()]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory, cleanup: str) -> Path:
    if not find_ovmf():
        pytest.skip("OVMF is not installed (apt-get install ovmf)")
    return _build(HYBRID, "fwtest-hybrid", tmp_path_factory.mktemp("hybrid"))


def test_shipped_stream9_hybrid_profile_passes_both_by_default(tmp_path: Path, cleanup: str) -> None:
    """openstack-stream9 claims [bios, uefi]: its rehearsal image boots both ways, and boot-test without --firmware
    boots it with both."""
    if not find_ovmf():
        pytest.skip("OVMF is not installed (apt-get install ovmf)")
    out = tmp_path / "artifacts"
    res = _cli(
        "build",
        "openstack-stream9",
        "--tree",
        "rehearsal",
        "--accel",
        "tcg",
        "--disk-size",
        "256M",
        "--format",
        "qcow2",
        "--output",
        str(out),
        "--quiet",
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (artifact,) = [d for d in out.iterdir() if (d / "manifest.json").exists()]
    report_dir = tmp_path / "report"
    res = _cli("boot-test", str(artifact), "--rehearsal", "--accel", "tcg", "--quiet", "-o", str(report_dir))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert report["passed"] and report["firmware"] == "bios+uefi"
    assert "what target openstack claims on centos-stream-9" in report["notes"][0]
    assert [(s["firmware"], s["passed"]) for s in report["sections"]] == [("bios", True), ("uefi", True)]
    for section in report["sections"]:
        assert left_behind(cleanup, section["domain"]) == []
    shutil.rmtree(out, ignore_errors=True)


def _raw(artifact: Path, dest: Path) -> Path:
    image = next(artifact.glob("*.qcow2"))
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(dest)], check=True, timeout=120)
    return dest


def test_hybrid_disk_is_gpt_with_bios_and_uefi_paths(hybrid: Path, tmp_path: Path) -> None:
    raw = _raw(hybrid, tmp_path / "disk.raw")
    table = json.loads(
        subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True, text=True, check=True, timeout=60).stdout
    )["partitiontable"]
    assert table["label"] == "gpt"
    parts = table["partitions"]
    assert [p["type"] for p in parts] == [
        "21686148-6449-6E6F-744E-656564454649",  # BIOS boot
        "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",  # EFI system partition
        "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    ]  # Linux root
    assert "LegacyBIOSBootable" in parts[2].get("attrs", "")
    gptmbr = Path("/usr/lib/EXTLINUX/gptmbr.bin").read_bytes()[:440]
    assert raw.read_bytes()[:440] == gptmbr, "the BIOS path starts with syslinux's gptmbr.bin"
    esp = f"{raw}@@{parts[1]['start'] * 512}"
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    loader = subprocess.run(
        ["mtype", "-i", esp, "::loader/entries/rehearsal.conf"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout
    assert "linux /vmlinuz" in loader and "root=LABEL=rehearsal-root" in loader and "console=ttyS0" in loader
    efi = tmp_path / "BOOTX64.EFI"
    subprocess.run(["mcopy", "-i", esp, "::EFI/BOOT/BOOTX64.EFI", str(efi)], check=True, env=env, timeout=60)
    assert efi.read_bytes() == Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi").read_bytes()


def test_hybrid_image_is_reproducible(hybrid: Path, tmp_path: Path) -> None:
    again = _build(HYBRID, "fwtest-hybrid", tmp_path)

    def digest(d: Path) -> str:
        return hashlib.sha256(next(d.glob("*.qcow2")).read_bytes()).hexdigest()

    if digest(again) != digest(hybrid):
        report = RebuildReport(str(hybrid))
        compare_folders(hybrid, again, report, tmp_path)
        pytest.fail("two builds at the same SOURCE_DATE_EPOCH gave different hybrid disks:\n" + report.render(limit=20))


def test_hybrid_image_passes_both_firmwares(hybrid: Path, cleanup: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = _cli(
        "boot-test", str(hybrid), "--rehearsal", "--firmware", "both", "--accel", "tcg", "--quiet", "-o", str(out)
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["firmware"] == "bios+uefi"
    assert [(s["firmware"], s["passed"], s["ending"]) for s in report["sections"]] == [
        ("bios", True, "completed"),
        ("uefi", True, "completed"),
    ]
    ran = {(c["firmware"], c["id"]) for c in report["checks"] if c["status"] == "passed"}
    assert {("bios", "image.seeded-user"), ("uefi", "image.seeded-user")} <= ran
    assert "== firmware bios: PASSED" in res.stdout and "== firmware uefi: PASSED" in res.stdout
    for section in report["sections"]:
        assert left_behind(cleanup, section["domain"]) == []


def test_bios_only_image_fails_both_naming_uefi(tmp_path: Path, cleanup: str) -> None:
    if not find_ovmf():
        pytest.skip("OVMF is not installed (apt-get install ovmf)")
    artifact = _build(BIOS_ONLY, "fwtest-bios", tmp_path)
    out = tmp_path / "report"
    res = _cli(
        "boot-test", str(artifact), "--rehearsal", "--firmware", "both", "--accel", "tcg", "--quiet", "-o", str(out)
    )
    assert res.returncode == 1, res.stdout[-4000:] + res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert not report["passed"]
    assert report["ending"] == "no-uefi-boot"
    assert report["ending_message"].startswith("FAILED with uefi:"), report["ending_message"]
    assert [(s["firmware"], s["passed"]) for s in report["sections"]] == [("bios", True), ("uefi", False)]
    assert "== firmware uefi: FAILED" in res.stdout and "UEFI" in res.stdout
    for section in report["sections"]:
        assert left_behind(cleanup, section["domain"]) == []
    shutil.rmtree(tmp_path / "artifacts", ignore_errors=True)
