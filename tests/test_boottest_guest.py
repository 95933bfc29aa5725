"""The boot test against a real cloud-init guest on real libvirtd + qemu/TCG.

The guest is the Debian disk tests/guests/debian_cloud.py builds (systemd, cloud-init 22.4, openssh-server,
extlinux; cached under ~/.cache/ccis-workbench/guests). It gets the same seeds a CentOS image gets, and the
checks of the real spec that make sense on it: cloud-init finished and read the seed, the seeded user logs in,
the root file system grew, machine-id and host keys are fresh, no unit failed. A check made to fail, and one
that outruns its timeout, must fail the run with a readable report. The endings are proven too: cancel, no
login prompt in time, a guest that dies under the harness. After each run: no domain, no volume, no secret in
any report, and the image untouched.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.fixtures_libvirt import left_behind, libvirt_uri  # noqa: F401 (fixture)

pytest.importorskip("libvirt")
pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

from ccis_workbench.backends.boottest import BootTestOptions, run_boot_test  # noqa: E402
from ccis_workbench.core.catalog import Catalog  # noqa: E402
from ccis_workbench.core.compose import Composer  # noqa: E402
from ccis_workbench.core.model import Check  # noqa: E402
from ccis_workbench.core.monitor import RecordingMonitor  # noqa: E402
from ccis_workbench.core.report import render_summary, write_reports  # noqa: E402
from ccis_workbench.core.testspec import load_spec, select_checks  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
#: Checks of the shipped spec (profile openstack-stream9) that a Debian cloud-init guest can pass.
REAL_CHECKS = ("cloud-init.finished", "cloud-init.seed-read", "cloud-init.ssh-key", "image.seeded-user",
               "image.machine-id-unique", "image.root-grown", "baseline.root-locked", "baseline.machine-id",
               "baseline.host-keys-fresh", "baseline.serial-console", "baseline.no-failed-units",
               "derived.root-locked")


@pytest.fixture(scope="module")
def debian_guest() -> Path:
    from tests.guests.debian_cloud import build_or_skip

    return build_or_skip()


@pytest.fixture(scope="module")
def spec_checks() -> dict[str, Check]:
    cat = Catalog.load(REPO)
    plan = select_checks(load_spec(REPO), Composer(cat).compose(cat.load_profile("openstack-stream9")))
    return {s.check.id: s.check for s in plan.selected}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _opts(uri: str, **kw) -> BootTestOptions:
    base = dict(uri=uri, accel="tcg", seed="nocloud", login_timeout=420, inactivity_timeout=240, memory_mb=1024)
    base.update(kw)
    return BootTestOptions(**base)


def test_real_cloud_init_guest_passes_the_spec_checks_and_a_failing_check_fails_the_run(
        debian_guest: Path, spec_checks: dict[str, Check], libvirt_uri: str, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    import ccis_workbench.backends.boottest as bt

    made = []
    real = bt.make_credentials
    monkeypatch.setattr(bt, "make_credentials", lambda user=None: made.append(real(user)) or made[-1])
    before = (_sha256(debian_guest), debian_guest.stat().st_mtime_ns)
    checks = [spec_checks[i] for i in REAL_CHECKS]
    checks.insert(4, Check("probe.must-fail", "this guest is not CentOS Stream, so this check must fail",
                           "grep '^NAME=' /etc/os-release", output='^NAME="CentOS Stream"$', timeout=30))
    checks.insert(5, Check("probe.timeout", "a check that outruns its timeout", "sleep 60", timeout=3))
    mon = RecordingMonitor()
    result = run_boot_test(debian_guest, checks, _opts(libvirt_uri), mon, label="debian-cloud")
    summary = render_summary(result)
    assert result.ending == "completed", summary
    status = {c.id: c for c in result.checks}
    for cid in REAL_CHECKS:
        assert status[cid].status == "passed", f"{cid}: {status[cid].reason}\n{status[cid].output}\n{summary}"
    assert status["probe.must-fail"].status == "failed"
    assert "does not match" in status["probe.must-fail"].reason and 'NAME="Debian' in status["probe.must-fail"].output
    assert status["probe.timeout"].status == "failed" and "no answer within 3 s" in status["probe.timeout"].reason
    assert status["image.seeded-user"].output.strip().endswith(result.user), "the shell resynchronised"
    assert not result.passed
    assert result.boot_to_login and result.boot_to_login > 1 and result.login_time is not None
    assert result.timings.get("systemd", {}).get("total", 0) > 0
    assert result.timings.get("cloud-init", {}).get("total", 0) > 0
    assert "cloud-init" in result.console_log.lower() and "login:" in result.console_log

    paths = write_reports(result, tmp_path / "report")
    junit = ET.parse(paths["junit"]).getroot().find("testsuite")
    assert junit.get("failures") == "2" and junit.get("errors") == "0"
    data = json.loads(paths["json"].read_text())
    assert data["passed"] is False and data["counts"]["failed"] == 2
    text = paths["summary"].read_text()
    assert "FAILED probe.must-fail" in text and 'expected: exit 0, output matches /^NAME="CentOS Stream"$/' in text

    # the per-run password never reached a report, the console log or what the monitor was told
    password = made[0].password
    assert password not in result.console_log
    for p in paths.values():
        assert password not in p.read_text(), p.name
    told = "".join(str(a) for _, _, args in mon.events for a in args)
    assert password not in told and mon.text("console"), "the console was streamed live, redacted"
    assert not made[0].workdir.exists(), "the private key was deleted"
    # nothing left behind, and the artifact is exactly what it was
    assert left_behind(libvirt_uri, result.domain) == []
    assert (_sha256(debian_guest), debian_guest.stat().st_mtime_ns) == before


def test_configdrive_seed_through_the_cli(debian_guest: Path, libvirt_uri: str, tmp_path: Path) -> None:  # noqa: F811
    """The CLI as a user runs it: the openstack target's ConfigDrive seed, the spec's checks (--only), a
    profile-added check that fails, exit status 1, reports on disk. BIOS only: the openstack target claims UEFI
    too, and a second boot of the Debian guest under OVMF would test the firmware, not the seed."""
    prof = tmp_path / "debian-openstack.yaml"
    prof.write_text("name: debian-openstack\nrelease: centos-stream-9\ntarget: openstack\nchecks:\n"
                    "  - id: profile.os-is-centos\n    description: made to fail on a Debian guest\n"
                    "    command: grep '^ID=' /etc/os-release\n    output: '^ID=\"centos\"$'\n")
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "ccis_workbench", "boot-test", str(debian_guest), "--profile",
                          str(prof), "--accel", "tcg", "--firmware", "bios", "--quiet", "--only",
                          "cloud-init.finished", "--only",
                          "cloud-init.seed-read", "--only", "image.seeded-user", "--only",
                          "openstack.datasource-used", "--only", "profile.*", "-o", str(out)],
                         capture_output=True, text=True, timeout=900, cwd=REPO, check=False)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAILED profile.os-is-centos" in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["seed"] == "configdrive" and report["ending"] == "completed"
    status = {c["id"]: c["status"] for c in report["checks"]}
    assert status["openstack.datasource-used"] == "passed", "cloud-init read the config-2 drive"
    assert status["cloud-init.seed-read"] == "passed" and status["profile.os-is-centos"] == "failed"
    assert sorted(p.name for p in out.iterdir()) == ["console.log", "junit.xml", "report.json", "summary.txt"]
    assert left_behind(libvirt_uri, report["domain"]) == []


class _CancelAt(RecordingMonitor):
    """Asks to cancel as soon as the boot stage starts."""

    def stage(self, name: str, detail: str = "") -> None:
        super().stage(name, detail)
        if name == "boot":
            self.cancel_event.set()


class _KillAt(RecordingMonitor):
    """Destroys the domain behind the harness's back once the boot stage starts (a guest that dies)."""

    def __init__(self, uri: str) -> None:
        super().__init__()
        self.uri = uri

    def stage(self, name: str, detail: str = "") -> None:
        super().stage(name, detail)
        if name == "boot":
            domain = detail.split(" ", 1)[0]
            threading.Thread(target=subprocess.run, args=(["virsh", "-c", self.uri, "destroy", domain],),
                             kwargs={"capture_output": True}).start()


@pytest.mark.parametrize("case", ["cancel", "no-login", "killed"])
def test_endings_leave_nothing_behind(debian_guest: Path, libvirt_uri: str, case: str) -> None:  # noqa: F811
    checks = [Check("never.runs", "d", "true")]
    if case == "cancel":
        mon: RecordingMonitor = _CancelAt()
        opts = _opts(libvirt_uri)
    elif case == "no-login":
        mon, opts = RecordingMonitor(), _opts(libvirt_uri, login_timeout=4)
    else:
        mon, opts = _KillAt(libvirt_uri), _opts(libvirt_uri)
    result = run_boot_test(debian_guest, checks, opts, mon, label=f"ending-{case}")
    expected = {"cancel": "cancelled", "no-login": "no-login", "killed": "crashed"}[case]
    assert result.ending == expected, result.ending_message
    assert not result.passed
    assert result.checks[0].status == "error" and result.checks[0].reason.startswith("not run: ")
    assert left_behind(libvirt_uri, result.domain) == []
    if case == "no-login":
        assert "no login prompt within 4 s" in result.ending_message
    if case == "killed":
        assert "stopped" in result.ending_message
    if case == "cancel":
        assert result.total_time < 30
