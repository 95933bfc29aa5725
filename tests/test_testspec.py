"""The image test spec: loading, selection per composition, derived checks (run in a real shell), judging."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.compose import Composer, choice
from ccis_workbench.core.errors import CatalogError
from ccis_workbench.core.model import Check
from ccis_workbench.core.testspec import (
    DERIVED_KINDS,
    GROUPS,
    evaluate,
    filter_plan,
    load_spec,
    select_checks,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return Catalog.load(REPO)


@pytest.fixture(scope="module")
def spec():
    return load_spec(REPO)


def _plan(cat: Catalog, spec, release: str, target: str, overlays: list[str] | None = None, **kw):
    comp = Composer(cat).compose(choice(release, target, overlays or [], {}))
    return comp, select_checks(spec, comp, **kw)


def _by_id(plan) -> dict:
    return {s.check.id: s for s in plan.selected}


def test_shipped_spec_defines_every_derived_kind(spec) -> None:
    assert spec.source == "kickstarts/testspec.yaml"
    assert set(spec.derived) == set(DERIVED_KINDS)
    assert {"image.seeded-user", "image.root-grown", "cloud-init.finished"} <= {c.id for c in spec.checks}
    assert spec.rehearsal


def test_openstack_profile_gathers_every_group_in_order(cat, spec) -> None:
    comp = Composer(cat).compose(cat.load_profile("openstack-stream9"))
    plan = select_checks(spec, comp)
    groups = [s.group for s in plan.selected]
    assert groups == sorted(groups, key=GROUPS.index), "checks run in group order"
    counts = plan.group_counts()
    assert counts["spec"] and counts["baseline"] and counts["target"] and counts["derived"]
    assert plan.agent == "cloud-init" and plan.seed == "configdrive"
    ids = _by_id(plan)
    assert len(ids) == len(plan.selected), "ids are unique after selection"
    # every release check and target check is there unless filtered by release/target
    for c in comp.release.checks + comp.target.checks:
        assert c.id in ids or any(sk.id == c.id for sk, _ in plan.skipped)


def test_derived_checks_follow_the_merged_kickstart(cat, spec) -> None:
    comp, plan = _plan(cat, spec, "centos-stream-9", "openstack")
    d = _by_id(plan)
    h = comp.handler
    assert d["derived.packages-installed"].items == h.packages.packageList
    assert "cloud-init" in d["derived.packages-installed"].items
    assert "plymouth" in d["derived.packages-removed"].items
    assert "console=ttyS0,115200n8" in d["derived.kernel-args"].items
    assert "console=ttyS0,115200n8" in d["derived.kernel-args"].check.command
    assert d["derived.services-enabled"].items == list(h.services.enabled)
    assert d["derived.services-disabled"].items == list(h.services.disabled)
    assert d["derived.selinux"].check.output == "^Enforcing$"
    assert d["derived.root-locked"].check.id == "derived.root-locked"
    # the datasource expectation matches the very line the kickstart writes, and not a different list
    line = next(t for t in comp.text.splitlines() if t.startswith("datasource_list:"))
    assert evaluate(d["derived.datasource"].check, 0, line + "\n")[0]
    assert not evaluate(d["derived.datasource"].check, 0, "datasource_list: [ NoCloud, None ]\n")[0]
    assert all(s.check.origin.layer == "derived" for s in plan.selected if s.group == "derived")


def test_profile_variables_reach_derived_checks(cat, spec) -> None:
    prof = choice("centos-stream-9", "openstack", [], {"extra_packages": ["htop", "-tar"],
                                                       "extra_kernel_args": ["quiet"]})
    plan = select_checks(spec, Composer(cat).compose(prof))
    d = _by_id(plan)
    assert "htop" in d["derived.packages-installed"].items
    assert "tar" in d["derived.packages-removed"].items and "tar" not in d["derived.packages-installed"].items
    assert "quiet" in d["derived.kernel-args"].items


def test_one_context_overlay_changes_agent_seed_and_checks(cat, spec) -> None:
    _, plan = _plan(cat, spec, "centos-stream-9", "openstack", ["one-context"])
    assert plan.agent == "one-context" and plan.seed == "opennebula"
    ids = _by_id(plan)
    assert "one-context.finished" in ids and "one-context.installed" in ids
    assert "cloud-init.finished" not in ids and "derived.datasource" not in ids
    assert ("cloud-init.finished", "only for agent cloud-init") in [(c.id, w) for c, w in plan.skipped]
    assert "cloud-init-local" in ids["derived.services-disabled"].items


def test_local_nocloud_overlay_selects_a_nocloud_seed(cat, spec) -> None:
    _, plan = _plan(cat, spec, "centos-stream-9", "openstack", ["local-nocloud"])
    assert plan.seed == "nocloud"
    assert "NoCloud" in _by_id(plan)["derived.datasource"].check.output


def test_release_filter_skips_with_a_reason(cat, spec) -> None:
    _, plan = _plan(cat, spec, "centos-stream-9", "openstack", ["ansible-ready"])
    assert "ansible-ready.python" in _by_id(plan)
    assert ("ansible-ready.python311", "only for centos-stream-8") in [(c.id, w) for c, w in plan.skipped]
    _, plan8 = _plan(cat, spec, "centos-stream-8", "openstack", ["ansible-ready"])
    assert "ansible-ready.python311" in _by_id(plan8)


def test_profile_check_replaces_a_target_check_with_the_same_id(cat, spec) -> None:
    text = ("name: mine\nrelease: centos-stream-9\ntarget: openstack\nchecks:\n"
            "  - id: openstack.default-user\n    description: our own default user\n"
            "    command: getent passwd ours\n    output: '^ours:'\n")
    prof = cat.parse_profile_text(text, "profiles/mine.yaml")
    plan = select_checks(spec, Composer(cat).compose(prof))
    chosen = _by_id(plan)["openstack.default-user"]
    assert chosen.group == "profile" and chosen.check.command == "getent passwd ours"
    assert [(old.origin.layer, new.origin.layer) for old, new in plan.replaced] == [("target:openstack", "profile")]


def test_rehearsal_and_only_skip_filters(cat, spec) -> None:
    _, full = _plan(cat, spec, "centos-stream-9", "openstack")
    _, reh = _plan(cat, spec, "centos-stream-9", "openstack", rehearsal=True)
    assert 0 < len(reh.selected) < len(full.selected)
    assert all(any(fnmatch.fnmatchcase(s.check.id, p) for p in spec.rehearsal) for s in reh.selected)
    assert "baseline.selinux-enforcing" in [c.id for c, _ in reh.skipped]
    only = filter_plan(full, only=["derived.*"], skip=["derived.selinux"])
    assert {s.group for s in only.selected} == {"derived"}
    assert "derived.selinux" not in _by_id(only)


def test_baseline_composition_has_no_target_checks(cat, spec) -> None:
    comp = Composer(cat).compose_baseline("centos-stream-9")
    plan = select_checks(spec, comp)
    assert plan.target is None
    assert plan.group_counts()["target"] == 0 and plan.agent == "none"
    assert "image.root-grown" not in _by_id(plan)  # only for images with a first-boot agent


# -- judging ----------------------------------------------------------------------------------------------------

def test_evaluate_exit_status_output_and_timeout() -> None:
    c = Check(id="x", description="d", command="c", exit_status=0, output="^enabled$", timeout=5)
    assert evaluate(c, 0, "enabled\r\n") == (True, "ok")
    assert evaluate(c, 0, "foo\nenabled\nbar") == (True, "ok"), "^ and $ match at line ends"
    ok, why = evaluate(c, 1, "enabled")
    assert not ok and "exit status 1, expected 0" in why
    ok, why = evaluate(c, 0, "disabled")
    assert not ok and "does not match" in why
    ok, why = evaluate(c, None, "")
    assert not ok and "within 5 s" in why
    assert evaluate(Check("y", "d", "c", exit_status=1), 1, "anything")[0]


# -- derived commands really work in a shell ---------------------------------------------------------------------

def _stub(dir_: Path, name: str, body: str) -> None:
    p = dir_ / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)


def _run_in_sh(command: str, bin_dir: Path) -> tuple[int, str]:
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LC_ALL": "C"}
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs /bin/sh")
def test_derived_package_and_service_commands_in_a_real_shell(cat, spec, tmp_path: Path) -> None:
    prof = choice("centos-stream-9", "openstack", [], {"extra_packages": ["htop", "-tar", "-iwl*-firmware"]})
    plan = select_checks(spec, Composer(cat).compose(prof))
    d = _by_id(plan)
    installed = set(d["derived.packages-installed"].items)
    # an rpm that knows every package the kickstart installs but htop, and has one iwl firmware
    _stub(tmp_path, "rpm", 'if [ "$1" = -qa ]; then case "$2" in iwl*) echo iwl7260-firmware-1.0;; esac; exit 0; fi\n'
          'case " ' + " ".join(sorted(installed - {"htop"})) + ' " in *" $2 "*) echo "$2-1.0"; exit 0;; esac\n'
          'echo "package $2 is not installed"; exit 1\n')
    code, out = _run_in_sh(d["derived.packages-installed"].check.command, tmp_path)
    assert (code, evaluate(d["derived.packages-installed"].check, code, out)[0]) == (0, False)
    assert "not installed: htop" in out and "missing: 1" in out
    code, out = _run_in_sh(d["derived.packages-removed"].check.command, tmp_path)
    assert "installed: iwl7260-firmware-1.0" in out and not evaluate(d["derived.packages-removed"].check, code, out)[0]

    _stub(tmp_path, "systemctl", 'case "$2" in kdump) echo disabled; exit 1;; sshd) echo alias;; '
          'qemu-guest-agent) echo disabled; exit 1;; *) echo enabled;; esac\n')
    code, out = _run_in_sh(d["derived.services-enabled"].check.command, tmp_path)
    assert "qemu-guest-agent: disabled" in out and "not enabled: 1" in out
    assert not evaluate(d["derived.services-enabled"].check, code, out)[0]
    code, out = _run_in_sh(d["derived.services-disabled"].check.command, tmp_path)
    assert evaluate(d["derived.services-disabled"].check, code, out) == (True, "ok"), out


def test_derived_kernel_args_command_reads_proc_cmdline(cat, spec) -> None:
    comp, plan = _plan(cat, spec, "centos-stream-9", "openstack")
    chk = _by_id(plan)["derived.kernel-args"].check
    code, out = _run_in_sh(chk.command, Path("/nonexistent"))
    host = Path("/proc/cmdline").read_text().split()
    missing = [a for a in comp.kernel_args if a not in host]
    assert f"missing: {len(missing)}" in out
    assert evaluate(chk, code, out)[0] == (not missing)


# -- bad spec files ---------------------------------------------------------------------------------------------

def _spec_root(tmp_path: Path, text: str) -> Path:
    (tmp_path / "kickstarts").mkdir(exist_ok=True)
    (tmp_path / "kickstarts/testspec.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, line, words", [
    ("version: 1\nchecks:\n  - id: a\n    description: d\n    command: c\n    outptu: x\n", 6, "outptu"),
    ("version: 1\nchecks:\n  - id: a\n    description: d\n    command: c\n    output: '('\n", 3, "regular expr"),
    ("version: 1\nchecks:\n  - {id: a, description: d, command: c}\n  - {id: a, description: e, command: c}\n",
     4, "appears twice"),
    ("version: 1\nderived:\n  packages-wanted:\n    description: d\n    command: c {items}\n", 3, "kind"),
    ("version: 1\nderived:\n  packages-installed:\n    description: d\n    command: rpm -q\n", 3, "{items}"),
    ("version: 2\n", 1, "version"),
    ("version: 1\nagents:\n  cloud-unit:\n    - {id: a, description: d, command: c}\n", 3, "cloud-unit"),
    ("version: 1\nrehearsal: ['a b']\n", 2, "pattern"),
])
def test_bad_spec_names_file_and_line(tmp_path: Path, text: str, line: int, words: str) -> None:
    with pytest.raises(CatalogError) as err:
        load_spec(_spec_root(tmp_path, text))
    assert err.value.location is not None and err.value.location.line == line, str(err.value)
    assert words in str(err.value)


def test_missing_spec_file_is_an_empty_spec(tmp_path: Path) -> None:
    spec = load_spec(tmp_path)
    assert spec.source is None and not spec.checks and not spec.derived


# -- the CLI ----------------------------------------------------------------------------------------------------

def test_cli_spec_prints_groups_and_json(cli) -> None:
    res = cli("spec", "openstack-stream9")
    assert res.code == 0, res.err
    assert "== release baseline" in res.out and "== derived from the merged kickstart" in res.out
    assert "baseline.root-locked" in res.out and "expect exit 0" in res.out
    data = json.loads(cli("spec", "openstack-stream9", "--json").out)
    assert data["agent"] == "cloud-init" and data["seed"] == "configdrive"
    assert {c["group"] for c in data["checks"]} >= {"spec", "baseline", "target", "derived"}
    first = data["checks"][0]
    assert {"id", "description", "command", "exit", "output", "timeout", "origin", "releases", "targets"} <= set(first)


def test_cli_spec_bad_profile_exits_2(cli) -> None:
    res = cli("spec", "no-such-profile")
    assert res.code == 2 and "no-such-profile" in res.err


# -- where checks run (runs_in) and which agent they need (agents) -------------------------------------------------

def test_docker_images_are_checked_as_containers_with_container_checks_only(cat, spec) -> None:
    _, plan = _plan(cat, spec, "centos-stream-9", "docker")
    assert plan.context == "container" and plan.seed == "none"
    ids = set(_by_id(plan))
    assert {"baseline.os-release", "baseline.root-locked", "docker.no-kernel", "derived.packages-installed"} <= ids
    assert all("container" in s.check.runs_in for s in plan.selected)
    why = {c.id: w for c, w in plan.skipped}
    assert why["baseline.sshd-active"] == why["image.seeded-user"] == \
        "needs a booted guest (the image is checked as a container)"
    assert "derived.kernel-args" not in ids and "derived.selinux" not in ids
    # a disk target is a VM: the container-only docker checks never reach it, the shared ones do
    _, vm = _plan(cat, spec, "centos-stream-9", "openstack")
    assert vm.context == "vm" and {"baseline.os-release", "baseline.sshd-active"} <= set(_by_id(vm))


def test_target_checks_can_name_the_agent_they_need(cat, spec) -> None:
    """one-context replaces cloud-init on openstack: the target's cloud-init checks are skipped, its others run."""
    _, plan = _plan(cat, spec, "centos-stream-9", "openstack", ["one-context"])
    assert plan.agent == "one-context"
    why = {c.id: w for c, w in plan.skipped}
    assert why["openstack.default-user"] == "only for agent cloud-init"
    assert "openstack.qemu-guest-agent" in _by_id(plan) and "one-context.finished" in _by_id(plan)
    _, plain = _plan(cat, spec, "centos-stream-9", "openstack")
    assert "openstack.default-user" in _by_id(plain)


def test_a_container_target_check_that_cannot_run_is_a_catalog_error(mini_catalog: Path) -> None:
    t = mini_catalog / "kickstarts/targets/openstack.yaml"
    text = t.read_text().replace("formats: [qcow2]", "formats: [rootfs-tar]")
    t.write_text(text)
    line = text.splitlines().index("  - id: openstack.datasource") + 1
    with pytest.raises(CatalogError) as err:
        Catalog.load(mini_catalog)
    assert err.value.title == "Check never runs" and err.value.location is not None
    assert err.value.location.line == line and "runs_in: [container]" in str(err.value)
    t.write_text(text.replace('    output: "ConfigDrive"', '    output: "ConfigDrive"\n    runs_in: []', 1))
    with pytest.raises(CatalogError) as err:
        Catalog.load(mini_catalog)
    assert "runs_in is empty" in str(err.value)


def test_cli_spec_of_a_docker_profile_says_nothing_boots(cli) -> None:
    res = cli("spec", "docker-stream9")
    assert res.code == 0 and "checked as a container" in res.out and "seed" not in res.out.splitlines()[1]
    data = json.loads(cli("spec", "docker-stream9", "--json").out)
    assert data["context"] == "container"
    assert all("container" in c["runs_in"] for c in data["checks"])
