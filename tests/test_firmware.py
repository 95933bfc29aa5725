"""Firmware claims of targets (`firmware:` per release in the catalog) and `boot-test --firmware auto|bios|uefi|both`
without booting: validation with file:line, the plan follows the claim, several runs make one report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ccis_workbench.core.report import BootTestResult, CheckResult, junit_xml, render_summary
from ccis_workbench.flows.test import combine_firmware_runs

TARGET = "kickstarts/targets/openstack.yaml"


def _claim(root: Path, text: str) -> None:
    p = root / TARGET
    p.write_text(p.read_text() + text)


def _line_of(root: Path, needle: str) -> int:
    return next(i for i, ln in enumerate((root / TARGET).read_text().splitlines(), 1) if needle in ln)


@pytest.mark.parametrize(
    ("claim", "needle", "words"),
    [
        ("firmware:\n  centos-stream-9: [bios, coreboot]\n", "coreboot", "unknown firmware 'coreboot'"),
        ("firmware:\n  centos-stream-9: [uefi, uefi]\n", "[uefi, uefi]", "uefi is named twice"),
        ("firmware:\n  centos-stream-9: []\n", "centos-stream-9: []", "give a list"),
        ("firmware:\n  centos-stream-9: uefi\n", "centos-stream-9: uefi", "give a list"),
        ("firmware:\n  fedora-40: [bios]\n", "fedora-40", "not a release of this target"),
        ("firmware: [bios, uefi]\n", "firmware: [bios", "firmware"),
    ],
)
def test_bad_firmware_claim_names_file_and_line(cli, mini_catalog: Path, claim: str, needle: str, words: str) -> None:
    _claim(mini_catalog, claim)
    res = cli("render", "p", root=mini_catalog)
    assert res.code == 2, (res.code, res.out, res.err)
    assert "Traceback" not in res.err
    assert f"{TARGET}:{_line_of(mini_catalog, needle)}:" in res.err.splitlines()[0], res.err
    assert words.lower() in res.err.lower(), res.err


def test_claim_is_read_per_release(mini_catalog: Path) -> None:
    from ccis_workbench.core.catalog import Catalog

    _claim(mini_catalog, "firmware:\n  centos-stream-9: [bios, uefi]\n")
    target = Catalog.load(mini_catalog).targets["openstack"]
    assert target.firmwares("centos-stream-9") == ["bios", "uefi"]
    assert target.firmwares("centos-7") == ["bios"]  # a release it does not name: BIOS only


def _disk(path: Path) -> Path:
    """A raw disk image qemu-img reads, with an MBR boot signature (the plan boots nothing)."""
    data = bytearray(4 * 1048576)
    data[510:512] = b"\x55\xaa"
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("claim", "option", "expected"),
    [
        ("", None, ["bios"]),
        ("firmware:\n  centos-stream-9: [bios, uefi]\n", None, ["bios", "uefi"]),
        ("firmware:\n  centos-stream-9: [uefi]\n", None, ["uefi"]),
        ("firmware:\n  centos-stream-9: [bios, uefi]\n", "bios", ["bios"]),
        ("", "both", ["bios", "uefi"]),
    ],
)
def test_plan_follows_the_target_claim(
    cli, mini_catalog: Path, tmp_path: Path, claim: str, option: str | None, expected: list[str]
) -> None:
    _claim(mini_catalog, claim)
    image = _disk(tmp_path / "disk.raw")
    args = ["boot-test", str(image), "--profile", "p", "--plan", "--json"]
    res = cli(*args, *(["--firmware", option] if option else []), root=mini_catalog)
    if "uefi" in expected and "No UEFI firmware" in res.err:
        pytest.skip("OVMF is not installed on this host")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    plans = data["firmwares"] if "firmwares" in data else [data]
    assert [p["firmware"] for p in plans] == expected
    for p in plans:
        assert ("<loader readonly='yes' type='rom'>" in p["domain_xml"]) == (p["firmware"] == "uefi")


def _result(fw: str, ending: str = "completed", status: str = "passed") -> BootTestResult:
    r = BootTestResult(
        run_id=f"r-{fw}",
        label="openstack-stream9",
        image="/x/disk.qcow2",
        started="now",
        uri="qemu:///system",
        domain=f"ccis-boottest-{fw}",
        domain_type="qemu",
        seed="nocloud",
        user="u",
        ending=ending,
        ending_message="every check ran" if ending == "completed" else "UEFI found no boot loader on the image",
        total_time=10.0,
        console_log=f"{fw} console\n",
        notes=["REHEARSAL"],
        firmware=fw,
    )
    r.checks = [CheckResult("boot.login", "logged in", "spec", "true", "exit 0", status, "")]
    return r


def test_both_passes_only_if_both_pass_and_names_the_failed_firmware() -> None:
    ok = combine_firmware_runs([("bios", _result("bios")), ("uefi", _result("uefi"))], "--firmware both")
    assert ok.passed and ok.ending == "completed"
    assert [(c.firmware, c.id) for c in ok.checks] == [("bios", "boot.login"), ("uefi", "boot.login")]
    assert ok.total_time == 20.0
    assert [s["firmware"] for s in ok.sections] == ["bios", "uefi"]
    text = render_summary(ok)
    assert "== firmware bios: PASSED" in text and "== firmware uefi: PASSED" in text

    bad = combine_firmware_runs([("bios", _result("bios")), ("uefi", _result("uefi", "no-uefi-boot", "error"))])
    assert not bad.passed
    assert bad.ending == "no-uefi-boot"
    assert bad.ending_message.startswith("FAILED with uefi:")
    assert "bios" not in bad.ending_message.split(":")[0]
    text = render_summary(bad)
    assert "== firmware bios: PASSED" in text and "== firmware uefi: FAILED" in text
    assert bad.to_dict()["sections"][1]["ending"] == "no-uefi-boot"
    assert "===== firmware uefi =====" in bad.console_log
    junit = junit_xml(bad)
    assert 'classname="bios.checks.spec"' in junit and 'classname="uefi.checks.spec"' in junit

    check_failed = combine_firmware_runs([("bios", _result("bios", status="failed")), ("uefi", _result("uefi"))])
    assert not check_failed.passed and check_failed.ending == "completed"
    assert check_failed.ending_message == "FAILED with bios: bios: a check failed"


def test_shipped_claims_follow_the_official_images(catalog) -> None:
    targets = catalog.targets
    assert targets["openstack"].firmwares("centos-stream-9") == ["bios", "uefi"]
    assert targets["openstack"].firmwares("centos-stream-10") == ["bios", "uefi"]
    assert targets["aws"].firmwares("centos-stream-10") == ["bios", "uefi"]
    assert targets["aws"].firmwares("centos-stream-9") == ["bios"]  # the official Stream 9 ec2 file has no ESP
    assert targets["openstack"].firmwares("centos-7") == ["bios"]
    # Google's Stream images boot UEFI only (Shielded VM needs it); ours are hybrid, so BIOS VMs boot them too
    assert targets["gce"].firmwares("centos-stream-9") == targets["gce"].firmwares("centos-stream-10") == \
        ["bios", "uefi"]
    assert targets["gce"].firmwares("centos-7") == ["bios"]


@pytest.mark.parametrize(
    "name", ["openstack-stream9", "openstack-stream10", "aws-stream10", "aws-stream9", "vagrant-stream9", "gce-stream9",
             "gce-stream10"]
)
def test_hybrid_layout_exactly_where_uefi_is_claimed(catalog, name: str) -> None:
    from ccis_workbench.core.compose import Composer

    comp = Composer(catalog).compose(catalog.load_profile(name))
    lines = comp.text.splitlines()
    hybrid = "uefi" in comp.target.firmwares(comp.release.name)
    assert ('part biosboot --fstype="biosboot" --size=1' in lines) == hybrid
    assert ('part /boot/efi --fstype="efi" --size=200' in lines) == hybrid
    assert ("reqpart" in lines) == (not hybrid)
    assert {"grub2-efi-x64", "shim"} <= set(lines) if hybrid else not {"grub2-efi-x64", "shim"} & set(lines)
    assert any("disk_set pmbr_boot off" in ln for ln in lines) == hybrid


@pytest.mark.parametrize(("profile", "expected"), [("openstack-stream9", ["bios", "uefi"]), ("aws-stream9", ["bios"])])
def test_shipped_profile_default_firmware(cli, tmp_path: Path, profile: str, expected: list[str]) -> None:
    res = cli("boot-test", str(_disk(tmp_path / "disk.raw")), "--profile", profile, "--plan", "--json")
    assert res.code == 0, res.err
    data = json.loads(res.out)
    assert [p["firmware"] for p in data.get("firmwares", [data])] == expected
