"""Boot-test reports: JUnit XML that a JUnit reader accepts, JSON, the console log, the summary; no secrets."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.report import BootTestResult, CheckResult, clean_text, junit_xml, render_summary, write_reports


def _result(**kw) -> BootTestResult:
    r = BootTestResult(run_id="20260101-000000-abcd", label="openstack-stream9", image="/a/img.qcow2",
                       started="2026-01-01T00:00:00+00:00", uri="qemu:///system", domain="ccis-boottest-x",
                       domain_type="qemu", seed="nocloud", user="ccis-abc123", ending="completed",
                       ending_message="every check ran", boot_to_login=40.0, login_time=2.0, checks_time=5.0,
                       total_time=49.0, timings={"systemd": {"kernel": 3.2, "userspace": 30.1, "total": 33.3}})
    r.checks = [
        CheckResult("image.machine-id-unique", "machine-id is fresh", "spec", "cat /etc/machine-id",
                    "exit 0, output matches /^[0-9a-f]{32}$/", "passed", "ok", 0, "0123456789abcdef" * 2, 0.2,
                    "kickstarts/testspec.yaml:30"),
        CheckResult("derived.kernel-args", "kernel args", "derived", "cat /proc/cmdline",
                    "exit 0, output matches /^missing: 0$/", "failed", "output does not match /^missing: 0$/", 0,
                    "missing: console=ttyS0\nmissing: 1\x1b", 0.3, "kickstarts/testspec.yaml:119"),
        CheckResult("epel.archive", "EPEL 7 archive", "overlay", "grep baseurl", "exit 0", "skipped",
                    "only for centos-7"),
    ]
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_verdict_counts_and_overhead() -> None:
    r = _result()
    assert not r.passed and r.counts() == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    assert r.overhead == pytest.approx(2.0)
    r.checks[1].status = "passed"
    assert r.passed
    r.ending = "crashed"
    assert not r.passed, "a crashed guest never passes, whatever the checks said"


def test_junit_is_well_formed_and_counts_match() -> None:
    root = ET.fromstring(junit_xml(_result()))
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["boot-and-login", "image.machine-id-unique", "derived.kernel-args",
                                              "epel.archive"]
    assert suite.get("tests") == "4" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    failure = cases[2].find("failure")
    assert failure is not None and "does not match" in failure.get("message", "")
    assert "$ cat /proc/cmdline" in (failure.text or "") and "\x1b" not in (failure.text or "")
    assert cases[3].find("skipped") is not None
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["seed"] == "nocloud" and props["boot_to_login_seconds"] == "40.000"


def test_junit_failed_boot_is_a_failing_test_case() -> None:
    r = _result(ending="no-login", ending_message="no login prompt within 600 s", boot_to_login=None,
                console_log="[ 1.0] Linux version\nProbing EDD ... ok\n")
    r.checks = [CheckResult("a", "d", "spec", "c", "exit 0", "error", "not run: no login prompt within 600 s")]
    root = ET.fromstring(junit_xml(r))
    boot = root.find("testsuite/testcase[@name='boot-and-login']")
    assert boot is not None and boot.find("failure").get("type") == "no-login"
    assert "Probing EDD" in boot.find("failure").text
    assert root.find("testsuite/testcase[@name='a']/error") is not None
    assert root.find("testsuite").get("errors") == "1"


def test_summary_shows_failures_in_full() -> None:
    text = render_summary(_result())
    assert text.startswith("Boot test of openstack-stream9 (img.qcow2): FAILED: 1 passed, 1 failed")
    assert "boot to login prompt 40.0 s" in text and "systemd: kernel 3.2 s" in text
    assert "FAILED derived.kernel-args (kickstarts/testspec.yaml:119)" in text
    assert "  | missing: console=ttyS0" in text and "  $ cat /proc/cmdline" in text
    assert "  SKIP  epel.archive" in text


def test_write_reports_files_and_scrubs_secrets(tmp_path: Path) -> None:
    secret = "Sup3rSecretPassw0rd"
    r = _result(console_log=f"login ok\npassword was {secret}\n")
    r.checks[0].output = f"leaked {secret}"
    paths = write_reports(r, tmp_path / "out", secrets=[secret])
    assert set(paths) == {"json", "junit", "console", "summary"}
    for p in paths.values():
        assert secret not in p.read_text(), p.name
    data = json.loads(paths["json"].read_text())
    assert data["passed"] is False and data["counts"]["failed"] == 1 and "console_log" not in data
    assert "[redacted]" in paths["console"].read_text()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["console.log", "junit.xml", "report.json",
                                                                    "summary.txt"]


def test_write_reports_unwritable_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkbenchError, match="Cannot write the report"):
        write_reports(_result(), blocker / "out")


def test_clean_text_removes_escapes_and_carriage_returns() -> None:
    assert clean_text("\x1b[0;32m  OK  \x1b[0m] Started\r\nx\ry") == "  OK  ] Started\nx\ny"
