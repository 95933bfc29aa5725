"""Rehearsal evidence can never pass for a CentOS build: the typed `rehearsal` field of a build manifest travels
into the boot-test report, JUnit, the propose evidence, the pull-request text and the commit message."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ccis_workbench.core import propose as prop
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.report import REHEARSAL_LABEL, BootTestResult, junit_xml, render_summary, write_reports

KS = "d" * 64


def _result(rehearsal: bool) -> BootTestResult:
    return BootTestResult(run_id="r1", label="openstack-stream9", image="/x/disk.qcow2", started="2026-12-05T08:00:00",
                          uri="qemu:///system", domain="ccis-test-r1", domain_type="qemu", seed="nocloud",
                          user="ccis-ab12", ending="completed", rehearsal=rehearsal)


def test_boot_test_report_and_junit_say_rehearsal(tmp_path: Path) -> None:
    suite = ET.fromstring(junit_xml(_result(True))).find("testsuite")
    assert suite is not None
    assert suite.get("name", "").startswith(f"{REHEARSAL_LABEL}: boot-test ")
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["rehearsal"] == "true"
    assert render_summary(_result(True)).startswith(REHEARSAL_LABEL)
    paths = write_reports(_result(True), tmp_path / "r")
    data = json.loads(paths["json"].read_text())
    assert data["rehearsal"] is True and data["rehearsal_label"] == REHEARSAL_LABEL

    real = ET.fromstring(junit_xml(_result(False))).find("testsuite")
    assert real is not None and real.get("name") == "boot-test openstack-stream9"
    assert {p.get("name"): p.get("value") for p in real.iter("property")}["rehearsal"] == "false"
    assert "REHEARSAL" not in render_summary(_result(False))


def _artifacts(folder: Path, *, manifest_rehearsal: object, report_rehearsal: object = None) -> Path:
    folder.mkdir(parents=True)
    image = folder / "disk.qcow2"
    image.write_bytes(b"QFI\xfb" + b"\0" * 512)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    # laid out as a build writes it, so that the evidence cross-checks: CHECKSUM covers the image and the manifest
    (folder / "manifest.json").write_text(json.dumps({"kickstart_sha256": KS, "rehearsal": manifest_rehearsal,
                                                      "artifacts": [{"file": "disk.qcow2", "sha256": digest}]}))
    manifest = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    (folder / "CHECKSUM").write_text(f"SHA256 (disk.qcow2) = {digest}\nSHA256 (manifest.json) = {manifest}\n")
    report: dict[str, object] = {"kickstart_sha256": KS, "passed": True, "image": "disk.qcow2"}
    if report_rehearsal is not None:
        report["rehearsal"] = report_rehearsal
    (folder / "boot-test.json").write_text(json.dumps(report))
    return folder


def _proposal(ev: prop.Evidence) -> prop.Proposal:
    return prop.Proposal(profile="p", description="", release="centos-stream-9", release_title="CentOS Stream 9",
                         target="openstack", overlays=[], arch="x86_64", tag="20261205",
                         branch="propose/p", kickstart_name="CentOS-Stream-9-x86_64-openstack-20261205.ks",
                         kickstart_text="text\n", evidence=ev, diff_summary=[], variables={}, version="RHEL9",
                         layer_files=[])


def test_rehearsal_evidence_is_refused_unless_allowed_then_labelled_everywhere(tmp_path: Path) -> None:
    ev = prop.Evidence(kickstart_sha256=KS, items=[])
    prop.artifact_evidence(ev, _artifacts(tmp_path / "art", manifest_rehearsal=True))
    assert [i.status for i in ev.items] == ["ok", "ok", "ok"]
    # the boot test of a rehearsal build's image is rehearsal evidence even when its report does not say so
    assert [i.rehearsal for i in ev.items] == [True, True, True]
    assert ev.rehearsal
    with pytest.raises(WorkbenchError, match="rehearsal") as exc:
        prop.refuse_rehearsal(ev)
    assert exc.value.exit_status == 2
    assert "--allow-rehearsal" in str(exc.value.hint)
    prop.refuse_rehearsal(ev, allow_rehearsal=True)

    p = _proposal(ev)
    pr = p.pr_description()
    assert pr.split("\n", 1)[0].startswith(f"> **{REHEARSAL_LABEL}.**"), "the first line is the banner"
    table = [ln for ln in pr.splitlines() if ln.startswith(("| Build manifest", "| Boot-test report"))]
    assert len(table) == 2 and all(REHEARSAL_LABEL in ln for ln in table)
    msg = p.commit_message()
    assert msg.splitlines()[2].startswith(REHEARSAL_LABEL)
    assert sum(REHEARSAL_LABEL in ln for ln in msg.splitlines() if ln.startswith("  ok")) == 3
    assert p.metadata()["rehearsal"] is True
    assert prop.REHEARSAL_LABEL == REHEARSAL_LABEL


def test_only_a_typed_true_is_rehearsal_and_real_evidence_has_no_banner(tmp_path: Path) -> None:
    ev = prop.Evidence(kickstart_sha256=KS, items=[])
    # a string "true" is not the typed field: not rehearsal here (the manifest reader rejects it as a bad type)
    prop.artifact_evidence(ev, _artifacts(tmp_path / "art", manifest_rehearsal=False))
    assert not ev.rehearsal
    prop.refuse_rehearsal(ev)
    p = _proposal(ev)
    assert "REHEARSAL" not in p.pr_description() and "REHEARSAL" not in p.commit_message()
    assert p.metadata()["rehearsal"] is False

    report_only = prop.Evidence(kickstart_sha256=KS, items=[])
    prop.artifact_evidence(report_only, _artifacts(tmp_path / "art2", manifest_rehearsal=False, report_rehearsal=True))
    assert [i.rehearsal for i in report_only.items] == [False, False, True]
    with pytest.raises(WorkbenchError):
        prop.refuse_rehearsal(report_only)


def test_stale_rehearsal_evidence_is_stale_not_rehearsal(tmp_path: Path) -> None:
    ev = prop.Evidence(kickstart_sha256="e" * 64, items=[])
    prop.artifact_evidence(ev, _artifacts(tmp_path / "art", manifest_rehearsal=True))
    assert [i.status for i in ev.items] == ["stale", "stale", "stale"]
    assert not ev.rehearsal, "stale evidence is refused as stale; it is not counted as rehearsal evidence"
