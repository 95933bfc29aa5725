"""The flows layer: one answer for both faces (settings, catalog discovery, the boot-test setup of an artifact, the
baseline diff, the propose draft), and the bugs the two copies had, each with a test that failed on the old code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.compose import Composer, choice
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.manifest import Manifest
from ccis_workbench.core.testspec import load_spec, select_checks
from ccis_workbench.flows.settings import SETTINGS, Settings, find_catalog
from ccis_workbench.flows.test import prepare_test

REPO = Path(__file__).resolve().parents[1]


# -- settings: one precedence, every setting from every source --------------------------------------------------

SAMPLES = {"uri": ("qemu+ssh://a/system", "qemu+ssh://b/system", "qemu+ssh://c/system"),
           "accel": ("tcg", "kvm", "auto"), "pool": ("p1", "p2", "p3"), "network": ("n1", "n2", "n3"),
           "memory_mb": (512, 768, 1536), "vcpus": (1, 3, 4), "test_memory_mb": (256, 384, 640),
           "artifacts": ("a1", "a2", "a3"), "inactivity_timeout": (11.0, 12.0, 13.0),
           "total_timeout": (21.0, 22.0, 23.0), "login_timeout": (31.0, 32.0, 33.0), "grow_mib": (64, 128, 256),
           "theme": ("textual-light", "nord", "gruvbox"), "sign_key": ("A1B2", "C3D4", "ops@example.org"),
           "hosts": ("qemu+ssh://a/system,qemu+ssh://b/system", "qemu:///system", "qemu+tcp://h:16509/system")}


def test_samples_cover_every_setting() -> None:
    assert set(SAMPLES) == set(SETTINGS)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_each_setting_from_each_source(name: str, tmp_path: Path) -> None:
    cli, env, conf = SAMPLES[name]
    var = SETTINGS[name].env[0]
    cfg = tmp_path / "config.toml"
    cfg.write_text(f"{name} = {json.dumps(conf)}\n")
    base = {"HOME": str(tmp_path)}
    assert Settings(environ=base, config_file=tmp_path / "none.toml").get(name) == SETTINGS[name].default
    s = Settings(environ=base, config_file=cfg)
    assert (s.get(name), s.source(name)) == (conf, f"config {cfg}")
    s = Settings(environ={**base, var: str(env)}, config_file=cfg)
    assert (s.get(name), s.source(name)) == (env, f"environment ${var}")
    s = Settings(environ={**base, var: str(env)}, config_file=cfg, overrides={name: cli})
    assert (s.get(name), s.source(name)) == (cli, "command line")


def test_bad_settings_name_their_source(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("accel = 'warp'\n")
    with pytest.raises(WorkbenchError) as err:
        Settings(environ={}, config_file=cfg)
    assert str(cfg) in str(err.value) and "choose one of auto, kvm, tcg" in err.value.message
    cfg.write_text("colour = 'red'\n")
    with pytest.raises(WorkbenchError, match="unknown setting 'colour'"):
        Settings(environ={}, config_file=cfg)
    cfg.write_text("memory_mb = [\n")
    with pytest.raises(WorkbenchError, match="Bad configuration file"):
        Settings(environ={}, config_file=cfg)
    with pytest.raises(WorkbenchError) as err:
        Settings(environ={"CCIS_WORKBENCH_VCPUS": "two"}, config_file=tmp_path / "none")
    assert err.value.location is not None and err.value.location.file == "$CCIS_WORKBENCH_VCPUS"


def test_config_command_shows_every_setting_and_its_source(tmp_path: Path) -> None:
    (tmp_path / "ccis-workbench").mkdir()
    (tmp_path / "ccis-workbench/config.toml").write_text("pool = 'from-config'\n")
    env = {"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path), "CCIS_WORKBENCH_URI": "test:///default",
           "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "ccis_workbench", "config", "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    rows = {r["name"]: r for r in data["settings"]}
    assert set(rows) == set(SETTINGS)
    assert rows["uri"]["value"] == "test:///default" and rows["uri"]["source"] == "environment $CCIS_WORKBENCH_URI"
    assert rows["pool"]["value"] == "from-config" and rows["pool"]["source"].startswith("config ")
    assert rows["accel"] == {**rows["accel"], "value": "auto", "source": "default"}
    assert data["catalog"] == {"path": str(REPO), "source": "working directory"}


# -- catalog discovery ----------------------------------------------------------------------------------------

def test_catalog_found_from_the_working_directory_like_git(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    for clone in (one, two):
        (clone / "kickstarts").mkdir(parents=True)
        (clone / "profiles/sub").mkdir(parents=True)
    s = Settings(environ={"CCIS_WORKBENCH_ROOT": str(REPO)}, config_file=tmp_path / "none")
    assert s.catalog_root(cwd=one / "profiles/sub").path == one.resolve()
    assert s.catalog_root(cwd=two).path == two.resolve()
    assert s.catalog_root(cwd=tmp_path).why == "environment $CCIS_WORKBENCH_ROOT"  # not inside a catalog
    assert s.catalog_root("elsewhere", cwd=one).path == Path("elsewhere")  # --catalog wins
    assert find_catalog(tmp_path) is None


def test_propose_in_each_clone_uses_that_clone(tmp_path: Path) -> None:
    """Two clones side by side: propose run inside each makes its branch in that clone, not in the checkout the
    package was installed from."""
    import shutil

    def git(repo: Path, *args: str) -> str:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout

    clones = []
    for name in ("one", "two"):
        clone = tmp_path / name
        shutil.copytree(REPO / "tests/data/mini_catalog", clone)
        (clone / "profiles").mkdir(exist_ok=True)
        (clone / "profiles" / f"p{name}.yaml").write_text(f"name: p{name}\nrelease: centos-stream-9\n"
                                                          "target: openstack\n")
        git(clone, "init", "-q", "-b", "main")
        git(clone, "-c", "user.name=T", "-c", "user.email=t@example.com", "add", "-A")
        git(clone, "-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", "catalog")
        clones.append(clone)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "GIT_AUTHOR_NAME": "T", "GIT_COMMITTER_NAME": "T",
           "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_EMAIL": "t@example.com"}
    for clone in clones:
        name = f"p{clone.name}"
        proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "propose", name, "--allow-missing",
                               "--tag", "20261205"], cwd=clone / "profiles", env=env, capture_output=True,
                              text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"propose/{name}" in git(clone, "branch", "--list", "propose/*")
    assert "propose/pone" not in git(clones[1], "branch", "--list")
    assert "propose/" not in subprocess.run(["git", "-C", str(REPO), "branch", "--list", "propose/p*"],
                                            capture_output=True, text=True, check=False).stdout


# -- manifest -------------------------------------------------------------------------------------------------

def test_manifest_is_typed(tmp_path: Path) -> None:
    m = Manifest.from_dict({"profile": "x", "rehearsal": False, "install_tree": {"name": "rehearsal-like name"},
                            "newer_field": [1]})
    assert m.rehearsal is False and m.extra == {"newer_field": [1]}
    assert m.to_dict()["newer_field"] == [1] and "path" not in m.to_dict()
    for bad in ({"rehearsal": "yes"}, {"rehearsal": 1}, {"disk_virtual_size": True}, {"artifacts": {}}):
        with pytest.raises(WorkbenchError, match="Bad manifest"):
            Manifest.from_dict(bad, "m.json")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(WorkbenchError) as err:
        Manifest.read(tmp_path)
    assert err.value.location is not None and err.value.location.file.endswith("manifest.json")
    m.write(tmp_path)
    assert Manifest.read(tmp_path).to_dict() == m.to_dict()


# -- boot-test setup: the same checks from both faces ----------------------------------------------------------

def _artifact(tmp_path: Path, manifest: dict) -> Path:
    d = tmp_path / "build"
    d.mkdir(parents=True)
    (d / "disk.qcow2").write_bytes(b"QFI\xfb" + bytes(508))  # a qcow2 header: nothing boots it
    (d / "manifest.json").write_text(json.dumps(manifest))
    return d


def test_real_image_is_not_taken_for_a_rehearsal_one(tmp_path: Path) -> None:
    """The old TUI searched the manifest's text for "rehearsal" (every manifest has that key): a real CentOS
    image got the rehearsal subset of checks in the TUI and all of them in the CLI."""
    cat = Catalog.load(REPO)
    d = _artifact(tmp_path, {"profile": "openstack-stream9", "rehearsal": False,
                             "install_tree": {"kind": "url", "url": "https://mirror.stream.centos.org/9-stream/"}})
    setup = prepare_test(cat, Composer(cat), str(d))
    comp = Composer(cat).compose(cat.load_profile("openstack-stream9"))
    full = select_checks(load_spec(cat.root), comp, rehearsal=False)
    assert setup.rehearsal is False
    assert [s.check.id for s in setup.plan.selected] == [s.check.id for s in full.selected]
    assert len(full.selected) > len(select_checks(load_spec(cat.root), comp, rehearsal=True).selected)
    d2 = tmp_path / "r"
    d2.mkdir()
    (d2 / "disk.qcow2").write_bytes(b"QFI\xfb")
    (d2 / "manifest.json").write_text(json.dumps({"profile": "openstack-stream9", "rehearsal": True}))
    assert prepare_test(cat, Composer(cat), str(d2)).rehearsal is True


def test_tui_boot_test_setup_equals_the_cli_one(tmp_path: Path) -> None:
    from ccis_workbench.ui.engine import Choice, Workbench
    from ccis_workbench.ui.screens.boottest import BootTestSettings, prepare_boot_test

    d = _artifact(tmp_path, {"profile": "openstack-stream9", "rehearsal": False})
    wb = Workbench(REPO)
    current = Choice("centos-stream-10", "aws", [], {})  # the TUI's current choice is not what was built
    tui = prepare_boot_test(wb, current, str(d), BootTestSettings(), tmp_path)
    cat = Catalog.load(REPO)
    cli = prepare_test(cat, Composer(cat), str(d))
    assert (tui.label, tui.rehearsal, tui.seed) == (cli.label, cli.rehearsal, cli.seed) == \
        ("openstack-stream9", False, cli.seed)
    assert [s.check.id for s in tui.plan.selected] == [s.check.id for s in cli.plan.selected]


def test_unsaved_choice_recorded_in_the_manifest_gives_its_checks(tmp_path: Path) -> None:
    cat = Catalog.load(REPO)
    d = _artifact(tmp_path, {"profile": "centos-stream-9-docker", "rehearsal": True,
                             "choice": {"release": "centos-stream-9", "target": "docker", "overlays": [],
                                        "variables": {}}})
    setup = prepare_test(cat, Composer(cat), str(d))
    assert setup.comp.target.name == "docker" and setup.plan.context == "container"
    with pytest.raises(WorkbenchError, match="cannot tell which profile"):
        prepare_test(cat, Composer(cat), str(_artifact(tmp_path / "x", {"profile": "nope"})))


def test_a_catalog_that_composes_another_kickstart_than_the_one_built_is_said(tmp_path: Path) -> None:
    """Checks derived from a catalog that no longer composes the built kickstart may not fit the image: said."""
    import hashlib

    cat = Catalog.load(REPO)
    text = Composer(cat).compose(cat.load_profile("openstack-stream9")).text
    same = _artifact(tmp_path / "same", {"profile": "openstack-stream9",
                                         "kickstart_sha256": hashlib.sha256(text.encode()).hexdigest()})
    assert not any("another kickstart" in n for n in prepare_test(cat, Composer(cat), str(same)).notes)
    other = _artifact(tmp_path / "other", {"profile": "openstack-stream9",
                                           "kickstart_sha256": hashlib.sha256(b"text\n").hexdigest()})
    notes = prepare_test(cat, Composer(cat), str(other)).notes
    assert any("composes openstack-stream9 to another kickstart" in n and "--catalog" in n for n in notes), notes


def test_a_file_that_is_no_disk_is_refused_before_anything_is_prepared(tmp_path: Path) -> None:
    """The TUI took /etc/passwd as an image (43 checks listed) and failed only on Start: both faces refuse it when
    it is chosen. A raw disk with a boot signature and a qcow2 header pass."""
    cat = Catalog.load(REPO)
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(WorkbenchError, match="Not a disk image") as info:
        prepare_test(cat, Composer(cat), str(text), profile=cat.load_profile("openstack-stream9"))
    assert str(info.value.location) == str(text) and "no MBR boot signature" in info.value.message
    raw = tmp_path / "disk.raw"
    raw.write_bytes(bytes(510) + b"\x55\xaa")
    assert prepare_test(cat, Composer(cat), str(raw), profile=cat.load_profile("openstack-stream9")).image == raw


def test_an_unsaved_choice_has_one_name_in_the_cli_and_the_tui() -> None:
    """The TUI called an unsaved choice RELEASE-TARGET whatever its overlays, the CLI RELEASE-TARGET+OVERLAY...:
    the same image was built under two names. Long names keep their start and a digest of the whole."""
    from ccis_workbench.core.plan import safe_name
    from ccis_workbench.ui.engine import Choice

    overlays = ["debug-install", "container-host"]
    tui = Choice("centos-stream-9", "openstack", list(overlays)).name
    assert tui == choice("centos-stream-9", "openstack", overlays).name == \
        "centos-stream-9-openstack+debug-install+container-host"
    short, shorter = safe_name(tui), safe_name("centos-stream-9-openstack+debug-install")
    assert len(short) <= 40 and short.startswith("centos-stream-9-openstack-debug") and "--" not in short
    assert short != shorter and safe_name("openstack-stream9") == "openstack-stream9"


# -- diff against the baseline: one meaning -------------------------------------------------------------------

def test_tui_baseline_diff_shows_the_profiles_own_timezone() -> None:
    """The old TUI diffed against the baseline layer rendered with the profile's variables, so a profile's time
    zone never showed; the CLI's `diff` did show it."""
    from ccis_workbench.flows.review import diff_against_baseline
    from ccis_workbench.ui.engine import Choice, Workbench

    wb = Workbench(REPO)
    ch = Choice("centos-stream-9", "openstack", [], {"timezone": "Europe/Brussels"})
    comp = wb.compose(ch)
    tui = wb.diff(comp, ch, "baseline", None, None)
    assert not tui.error and tui.diff is not None
    assert "Europe/Brussels" in tui.diff.unified
    cli = diff_against_baseline(wb.composer, comp)
    assert tui.diff.unified == cli.unified
    assert tui.diff.semantic.summary_lines() == cli.semantic.summary_lines()


def test_cli_and_tui_diff_agree_through_the_cli() -> None:
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "diff", "--release", "centos-stream-9",
                           "--target", "openstack", "--set", "timezone=Europe/Brussels", "--json"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr  # differs
    assert "Europe/Brussels" in json.loads(proc.stdout)["unified"]


def test_ad_hoc_choice_profile_name() -> None:
    assert choice("centos-stream-9", "openstack", ["epel"]).name == "centos-stream-9-openstack+epel"


def test_boot_test_plan_boots_nothing_and_shows_the_domain(tmp_path: Path) -> None:
    """`boot-test --plan`: the same setup as a run (checks from the manifest), the domain XML, volumes and seed
    with placeholders for the per-run secrets; no guest, no volume."""
    d = tmp_path / "build"
    d.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d / "disk.qcow2"), "64M"], check=True)
    (d / "manifest.json").write_text(json.dumps({"profile": "openstack-stream9", "rehearsal": False}))
    proc = subprocess.run([sys.executable, "-m", "ccis_workbench", "boot-test", str(d), "--plan", "--accel", "tcg"],
                          cwd=REPO, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "<domain type='qemu'>" in proc.stdout and "\nSeed: " in proc.stdout
    assert "checks of profile openstack-stream9" in proc.stderr
    assert "<per-run password>" in proc.stdout or "per run" in proc.stdout
