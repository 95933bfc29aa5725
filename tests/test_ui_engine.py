"""The UI's engine and capabilities without Textual running: overlay availability, analysis, review, profiles,
the libvirt check, and import hygiene (the UI does not import libvirt at import time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ccis_workbench.core.errors import CatalogError
from ccis_workbench.ui.capabilities import FixedCapabilities, HostStatus, LocalCapabilities
from ccis_workbench.ui.engine import Choice, Workbench, parse_list
from tests.test_ui_support import make_catalog


@pytest.fixture
def wb(tmp_path: Path) -> Workbench:
    return Workbench(make_catalog(tmp_path))


def test_overlay_states_give_short_reasons(wb: Workbench) -> None:
    ch = wb.default_choice()  # a new composition: no profile's description, variables or kickstart block
    assert (ch.release, ch.target, ch.overlays, ch.variables, ch.base) == ("centos-stream-9", "openstack", [], {},
                                                                           None)
    states = wb.overlay_states(ch)
    assert states == {"ui-alpha": "", "ui-beta": "", "ui-gamma": "needs ui-alpha first",
                      "ui-ten": "not for centos-stream-9"}
    ch.overlays = ["ui-alpha"]
    assert not ch.modified  # modified means "differs from the profile it was opened from": there is none
    states = wb.overlay_states(ch)
    assert states["ui-beta"] == "conflicts with ui-alpha" and states["ui-gamma"] == ""


def test_drop_inapplicable_after_a_target_change(wb: Workbench) -> None:
    ch = Choice("centos-stream-9", "openstack", ["ui-alpha", "ui-gamma"])
    (wb.root / "kickstarts/overlays/ui-alpha.yaml").write_text(
        (wb.root / "kickstarts/overlays/ui-alpha.yaml").read_text() + "targets: [openstack]\n")
    wb2 = Workbench(wb.root)
    ch.target = "ui-box"
    dropped = wb2.drop_inapplicable(ch)
    assert [name for name, _ in dropped] == ["ui-alpha", "ui-gamma"]
    assert "does not apply to target ui-box" in dropped[0][1]
    assert ch.overlays == []


def test_analyse_composes_lints_and_diffs_in_two_steps(wb: Workbench) -> None:
    ch = Choice("centos-stream-9", "openstack", ["ui-beta"])
    first = wb.preview(ch)
    assert first.composition is not None and not first.complete and first.findings is None
    full = wb.complete(first, ch)
    assert full.complete and full.findings is not None and full.diff is not None
    assert full.diff.mode == "baseline" and not full.diff.error
    assert "selinux changed: selinux --enforcing -> selinux --permissive" in full.diff.diff.semantic.summary_lines()
    bad = wb.analyse(Choice("centos-stream-9", "openstack", [], {"disk_size": "big"}))
    assert bad.composition is None and bad.error is not None and "disk_size" in bad.error.message
    nofile = wb.diff(full.composition, ch, "file", None, None)
    assert "no kickstart file chosen" in nofile.error
    noprofile = wb.diff(full.composition, ch, "profile", None, None)
    assert "no saved profile is open" in noprofile.error


def test_review_cells_say_why_not(wb: Workbench) -> None:
    cells = list(wb.review("ui-ten"))
    assert [(c.release, c.target) for c in cells] == [("centos-stream-9", "openstack"),
                                                      ("centos-stream-9", "ui-box")]
    assert all(not c.applicable and "does not support centos-stream-9" in c.reason for c in cells)
    gamma = list(wb.review("ui-gamma"))
    assert all(c.applicable and c.overlays == ["ui-alpha", "ui-gamma"] for c in gamma)
    assert all(c.diff_lines > 0 and c.lint_status() for c in gamma)


def test_profile_yaml_round_trips_and_validation(wb: Workbench) -> None:
    ch = Choice("centos-stream-9", "openstack", ["ui-alpha"], {"hostname": "box1", "extra_packages": ["vim"]})
    text = wb.profile_yaml(ch, "alpha-one", "a test")
    data = yaml.safe_load(text)
    assert data == {"name": "alpha-one", "description": "a test", "release": "centos-stream-9",
                    "target": "openstack", "overlays": ["ui-alpha"],
                    "variables": {"hostname": "box1", "extra_packages": ["vim"]}}
    path, checked = wb.validate_new_profile(ch, "alpha-one")
    assert path == wb.root / "profiles/alpha-one.yaml" and "alpha-one" in checked
    with pytest.raises(CatalogError, match="not a valid profile name"):
        wb.validate_new_profile(ch, "Alpha One")
    with pytest.raises(CatalogError):
        wb.validate_new_profile(Choice("centos-stream-9", "openstack", ["ui-ten"]), "ten")
    wb.save_profile(path, checked)
    loaded = wb.catalog.load_profile("alpha-one")
    assert loaded.overlays == ["ui-alpha"] and loaded.variables["hostname"] == "box1"
    # a profile with a kickstart block keeps it, as a literal block
    base = wb.catalog.parse_profile_text("name: k\nrelease: centos-stream-9\ntarget: openstack\n"
                                         "kickstart: |\n  # mine\n  rootpw --lock\n", "profiles/k.yaml")
    kept = wb.profile_yaml(Choice.from_profile(base))
    assert "kickstart: |\n  # mine\n  rootpw --lock\n" in kept


def test_parse_list() -> None:
    assert parse_list(" vim, -tar,  @core,,") == ["vim", "-tar", "@core"]
    assert parse_list("foo bar") == ["foo bar"]  # one item (that the core refuses), never two packages silently


def test_host_status_summaries() -> None:
    assert HostStatus("qemu:///system", None, "not checked", "tcg").summary() == \
        "libvirt qemu:///system: not checked · accel tcg"
    down = HostStatus("qemu+ssh://h/system", False, "libvirt-python not installed", "kvm")
    assert down.summary() == "libvirt qemu+ssh://h/system: unreachable: libvirt-python not installed · accel kvm"
    assert down.summary(short=True) == "qemu+ssh://h/system unreachable · kvm"
    caps = FixedCapabilities(down)
    assert caps.build_unavailable(down, "build") == \
        "build needs libvirt at qemu+ssh://h/system: libvirt-python not installed"
    assert "not been checked yet" in caps.build_unavailable(HostStatus("u", None, "checking…", "tcg"), "boot-test")


def test_local_capabilities_without_libvirt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt -> ImportError
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    monkeypatch.setenv("CCIS_WORKBENCH_ACCEL", "tcg")
    status = LocalCapabilities().check_host()
    assert status == HostStatus("test:///default", False, "libvirt-python not installed", "tcg")


def test_local_capabilities_with_libvirt_test_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("libvirt")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "test:///default")
    status = LocalCapabilities().check_host()
    assert status.reachable is True and status.detail.startswith("libvirt ")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu+unix:///system?socket=/nonexistent/sock")
    status = LocalCapabilities().check_host()
    assert status.reachable is False and status.detail


def test_ui_import_does_not_import_libvirt_or_pykickstart() -> None:
    # the core registers its light pykickstart.load shim on import, which imports pykickstart's (empty) package
    # root; what start-up must not pay for is libvirt and pykickstart's parser, version table and handlers
    code = ("import sys, ccis_workbench.ui.app; "
            "print(sorted(m for m in ('libvirt', 'pykickstart.parser', 'pykickstart.version', 'pykickstart.handlers')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
