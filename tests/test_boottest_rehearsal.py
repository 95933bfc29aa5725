"""The boot test on the REHEARSAL image, end to end on real libvirtd + qemu/TCG.

The workbench builds openstack-stream9 from its hermetic rehearsal tree (`build --tree rehearsal`), then
boot-tests the artifact directory: the manifest names the profile and says "rehearsal", so only the checks the
rehearsal system can answer run, with a NoCloud seed its reader understands. They must pass (exit 0). A second
run adds a check made to fail: the run fails (exit 1) with a readable report. Nothing is left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_libvirt import left_behind, libvirt_uri  # noqa: F401 (fixture)

pytest.importorskip("libvirt")
pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccis_workbench", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def _build(profile: str, out: Path) -> Path:
    res = _cli("build", profile, "--tree", "rehearsal", "--accel", "tcg", "--disk-size", "256M",
               "--format", "qcow2", "--output", str(out), "--quiet")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    dirs = [d for d in out.iterdir() if (d / "manifest.json").exists()]
    assert len(dirs) == 1, list(out.iterdir())
    return dirs[0]


@pytest.fixture(scope="module")
def rehearsal_artifact(tmp_path_factory: pytest.TempPathFactory, libvirt_uri: str) -> Path:  # noqa: F811
    """openstack-stream9: its target claims BIOS and UEFI, so the image is hybrid and boot-test boots it both ways."""
    return _build("openstack-stream9", tmp_path_factory.mktemp("rehearsal-artifacts"))


@pytest.fixture(scope="module")
def bios_only_artifact(tmp_path_factory: pytest.TempPathFactory, libvirt_uri: str) -> Path:  # noqa: F811
    """aws-stream9: the official ec2 image of Stream 9 has no EFI system partition, and neither has ours."""
    return _build("aws-stream9", tmp_path_factory.mktemp("bios-only-artifacts"))


def test_rehearsal_image_passes_the_checks_it_can_answer(rehearsal_artifact: Path, libvirt_uri: str,  # noqa: F811
                                                         tmp_path: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in rehearsal_artifact.iterdir()}
    out = tmp_path / "report"
    res = _cli("boot-test", str(rehearsal_artifact), "--accel", "tcg", "--quiet", "-o", str(out))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "REHEARSAL image" in res.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["ending"] == "completed" and report["seed"] == "nocloud"
    ran = {c["id"]: c["status"] for c in report["checks"] if c["status"] != "skipped"}
    assert {"cloud-init.seed-read", "image.seeded-user", "derived.kernel-args"} <= set(ran)
    assert set(ran.values()) == {"passed"}
    assert "baseline.selinux-enforcing" in {c["id"] for c in report["checks"] if c["status"] == "skipped"}
    assert report["boot_to_login"] > 0
    # the report was written as soon as the last boot's checks were done, before its guest was destroyed: its
    # timings hold the moment it was reported and nothing of the cleanup that came after
    timings = report["timings"]
    last = timings["harness"] if "harness" in timings else timings[report["firmware"].split("+")[-1]]["harness"]
    assert "reported" in last and "cleanup" not in last, last
    assert "image verification:" in " ".join(report["notes"]), report["notes"]
    assert left_behind(libvirt_uri, report["domain"]) == []
    assert {p.name: p.stat().st_mtime_ns for p in rehearsal_artifact.iterdir()} == before, "artifact untouched"


def test_rehearsal_image_with_a_failing_check_fails_readably(rehearsal_artifact: Path, libvirt_uri: str,  # noqa: F811
                                                             tmp_path: Path) -> None:
    from ccis_workbench.backends.boottest import BootTestOptions, run_boot_test
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.model import Check
    from ccis_workbench.core.report import render_summary
    from ccis_workbench.core.testspec import SelectedCheck, load_spec, select_checks

    cat = Catalog.load(REPO)
    plan = select_checks(load_spec(REPO), Composer(cat).compose(cat.load_profile("openstack-stream9")),
                         rehearsal=True)
    plan.selected.append(SelectedCheck(Check("profile.hostname", "made to fail: the hostname is not this",
                                             "hostname", output="^not-this-host$", timeout=20), "profile"))
    image = next(rehearsal_artifact.glob("*.qcow2"))
    result = run_boot_test(image, plan, BootTestOptions(uri=libvirt_uri, accel="tcg", seed="nocloud",
                                                        rehearsal=True, hostname="rehearsal-host"),
                           label="rehearsal")
    assert result.ending == "completed", result.ending_message
    assert not result.passed
    failed = [c for c in result.checks if c.status == "failed"]
    assert [c.id for c in failed] == ["profile.hostname"]
    assert failed[0].output.strip() == "rehearsal-host", "the seed's hostname was applied"
    summary = render_summary(result)
    first, second = summary.splitlines()[:2]
    assert first.startswith("REHEARSAL") and "FAILED: " in second
    assert "FAILED profile.hostname" in summary and "expected: exit 0, output matches /^not-this-host$/" in summary
    assert "  | rehearsal-host" in summary
    assert left_behind(libvirt_uri, result.domain) == []


def test_keep_on_failure_keeps_the_guest_and_says_how_to_reach_it(rehearsal_artifact: Path,
                                                                   libvirt_uri: str) -> None:  # noqa: F811
    from ccis_workbench.backends.boottest import BootTestOptions, run_boot_test
    from ccis_workbench.core.model import Check

    image = next(rehearsal_artifact.glob("*.qcow2"))
    result = run_boot_test(image, [Check("must.fail", "made to fail", "false")],
                           BootTestOptions(uri=libvirt_uri, accel="tcg", seed="nocloud", rehearsal=True,
                                           keep_on_failure=True), label="rehearsal-keep")
    try:
        assert not result.passed and result.kept_domain == result.domain
        assert result.kept_credentials and Path(result.kept_credentials, "password").stat().st_mode & 0o077 == 0
        state = subprocess.run(["virsh", "-c", libvirt_uri, "domstate", result.domain], capture_output=True,
                               text=True, check=False).stdout.strip()
        assert state == "running"
        assert Path(result.kept_credentials, "password").read_text().strip() not in json.dumps(result.to_dict())
    finally:
        subprocess.run(["virsh", "-c", libvirt_uri, "destroy", result.domain], capture_output=True, check=False)
        for vol in left_behind(libvirt_uri, result.domain):
            subprocess.run(["virsh", "-c", libvirt_uri, "vol-delete", "--pool", "ccis-workbench", vol],
                           capture_output=True, check=False)
        if result.kept_credentials:
            import shutil

            shutil.rmtree(result.kept_credentials, ignore_errors=True)
    assert left_behind(libvirt_uri, result.domain) == []


def test_a_gce_tar_boots_to_its_login_prompt_and_says_why_no_check_ran(rehearsal_artifact: Path,
                                                                      libvirt_uri: str,  # noqa: F811
                                                                      tmp_path: Path) -> None:
    """A GCE image (disk.raw in a sparse tar.gz) takes no seed and its kickstart has no user with a password: the
    boot test unpacks the disk, boots it to the login prompt, then stops and says why; the tar is not written."""
    work = tmp_path / "gce"
    work.mkdir()
    image = next(rehearsal_artifact.glob("*.qcow2"))
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(work / "disk.raw")], check=True)
    art = tmp_path / "art"
    art.mkdir()
    gce = art / "rehearsal.tar.gz"
    subprocess.run(["tar", "--format=oldgnu", "-Sczf", str(gce), "-C", str(work), "disk.raw"], check=True)
    before = gce.stat().st_mtime_ns
    out = tmp_path / "report"
    res = _cli("boot-test", str(gce), "--profile", "gce-stream9", "--accel", "tcg", "--quiet", "-o", str(out),
               "--workdir", str(tmp_path), "--firmware", "bios")  # one boot: gce claims both on Stream 9
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["ending"] == "completed" and report["seed"] == "none" and report["boot_to_login"] > 0
    assert report["image"] == str(gce)
    reasons = {c["reason"] for c in report["checks"] if c["status"] == "skipped"}
    assert any("creates no user with a plaintext password" in r for r in reasons)
    assert not [c for c in report["checks"] if c["status"] in ("passed", "failed")], "no check could run"
    assert any("no check ran" in n for n in report["notes"])
    assert gce.stat().st_mtime_ns == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ccis-boot-test-disk-")] == []
    assert left_behind(libvirt_uri, report["domain"]) == []


def test_a_silent_first_guest_restarts_the_boot_test_under_tcg(rehearsal_artifact: Path, libvirt_uri: str,  # noqa: F811
                                                               tmp_path: Path) -> None:
    """The KVM fallback of a boot test, without KVM (it hangs on these hosts): the probe is told that the first
    guest's console shows no running kernel (an injected detector that never sees one) with a 3 s window; the
    guest is destroyed, its volumes deleted, and the same boot test runs again under TCG and completes."""
    from ccis_workbench.backends.boottest import BootProbe, BootTest, BootTestOptions
    from ccis_workbench.core.model import Check
    from ccis_workbench.core.monitor import RecordingMonitor

    image = next(rehearsal_artifact.glob("*.qcow2"))
    probe = BootProbe(window=3.0, detector=lambda _text: False, applies=lambda _o, _dtype: True, cache=tmp_path)
    mon = RecordingMonitor()
    bt = BootTest(image, [Check("image.true", "the shell answers", "true")],
                  BootTestOptions(uri=libvirt_uri, accel="tcg", seed="nocloud", rehearsal=True), mon,
                  label="rehearsal-fallback", kvm_probe=probe)
    result = bt.run()
    assert result.ending == "completed" and result.passed, result.ending_message
    assert [c.status for c in result.checks] == ["passed"]
    assert any(n.startswith("accelerator kvm -> tcg: the KVM guest printed no output") for n in result.notes)
    assert "kvm-probe" in result.timings["harness"] and result.domain_type == "qemu"
    assert result.console_log.startswith("[ccis-workbench] accelerator kvm -> tcg")
    assert mon.stages().count("boot") == 2
    assert any("restarting the boot test under TCG" in m for _s, m in mon.notes())
    assert bt.fallback is not None and bt.fallback.to_dict()["from"] == "kvm"
    assert '"kvm_works": false' in (tmp_path / "accel-verdicts.json").read_text()  # remembered for this host
    assert left_behind(libvirt_uri, result.domain) == []


def test_a_bios_only_image_under_uefi_fails_at_once_and_says_why(bios_only_artifact: Path, libvirt_uri: str,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    """`boot-test --firmware uefi` boots OVMF; a BIOS-only image has no EFI system partition, so OVMF falls back
    to its shell: the run ends there (not after the inactivity timeout) naming the cause, and leaves nothing."""
    out = tmp_path / "report"
    res = _cli("boot-test", str(bios_only_artifact), "--accel", "tcg", "--firmware", "uefi", "--quiet", "-o",
               str(out), timeout=300)
    assert res.returncode == 1, res.stdout[-3000:] + res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["ending"] == "no-uefi-boot", report["ending_message"]
    assert "no EFI system partition" in report["ending_message"]
    assert "EFI Internal Shell" in (out / "console.log").read_text()
    assert left_behind(libvirt_uri, report["domain"]) == []
