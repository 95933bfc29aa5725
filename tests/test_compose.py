"""Merge rules, provenance and canonical output, on a private catalog whose every line is known."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.compose import Composer, choice
from ccis_workbench.core.ksparse import canonical


@pytest.fixture
def comp(mini_catalog: Path):
    cat = Catalog.load(mini_catalog)
    return Composer(cat).compose(cat.load_profile("p"))


def _line(comp, prefix: str):
    hits = [ln for ln in comp.lines if ln.text.startswith(prefix)]
    assert hits, f"no line starts with {prefix!r}"
    return hits[0]


def _source(root: Path, origin) -> str:
    return (root / origin.file).read_text().splitlines()[origin.line - 1]


def test_output_is_pykickstart_canonical(comp) -> None:
    body = comp.text.split("\n", 3)[3]
    assert body == canonical(comp.text, "RHEL9").split("\n", 2)[2]


def test_every_line_points_at_the_source_that_produced_it(comp, mini_catalog: Path) -> None:
    checked = 0
    for ln in comp.lines:
        if not ln.origins or ln.text.startswith("#") or not ln.text.strip():
            continue
        o = ln.origins[0]
        src = _source(mini_catalog, o)
        word = ln.text.split()[0].lstrip("-@%")
        if ln.text.startswith(("services", "bootloader")) or word in ("end",):
            continue
        # pykickstart writes `poweroff` as `shutdown` (the same action, KS_SHUTDOWN)
        spelled = {"shutdown": ("shutdown", "poweroff")}.get(word, (word.split("=")[0],))
        assert any(w in src for w in spelled), (ln.text, o, src)
        checked += 1
    assert checked > 40


def test_last_layer_wins_for_single_commands_and_says_so(comp) -> None:
    assert _line(comp, "timezone").text == "timezone Europe/Brussels --utc"
    assert _line(comp, "timezone").origin.file == "kickstarts/overlays/alpha.ks.j2"
    assert _line(comp, "selinux").text == "selinux --permissive"
    assert _line(comp, "selinux").origin.layer == "profile:p"
    subjects = {o.subject: o for o in comp.overrides}
    tz = subjects["command timezone"]
    assert tz.earlier.file == "kickstarts/baseline/centos-stream-9.ks.j2" and tz.later.layer == "overlay:alpha"
    assert "Europe/Brussels" in tz.new and "UTC" in tz.old
    assert subjects["command selinux"].later.file == "profiles/p.yaml"
    assert _line(comp, "timezone").overridden


def test_packages_merge_and_removals_are_reported(comp) -> None:
    pk = comp.handler.packages
    assert {"htop", "vim-enhanced", "cloud-init", "chrony"} <= set(pk.packageList)
    assert "tar" not in pk.packageList and "tar" in pk.excludedList
    removal = next(o for o in comp.overrides if o.subject == "package tar")
    assert removal.earlier.layer == "baseline" and removal.later.file == "profiles/p.yaml"
    htop = _line(comp, "htop")
    assert htop.origin.file == "kickstarts/overlays/alpha.yaml" and htop.origin.line == 3


def test_services_merge_additively_with_reported_flips(comp) -> None:
    svc = comp.handler.services
    assert "chronyd" in svc.disabled and "chronyd" not in svc.enabled
    assert {"sshd", "cloud-init"} <= set(svc.enabled)
    flip = next(o for o in comp.overrides if o.subject == "service chronyd")
    assert (flip.old, flip.new) == ("enabled", "disabled")


def test_kernel_arguments_merge_and_removal(comp) -> None:
    assert "quiet" in comp.kernel_args and "no_timer_check" not in comp.kernel_args
    assert "console=ttyS0,115200n8" in comp.kernel_args
    assert 'quiet' in comp.handler.bootloader.appendLine
    assert any(o.subject == "kernel argument no_timer_check" for o in comp.overrides)
    boot = _line(comp, "bootloader")
    assert {o.layer for o in boot.origins} >= {"baseline", "overlay:alpha"}


def test_scripts_run_in_layer_order(comp) -> None:
    layers = [ln.origin.layer for ln in comp.lines if ln.text.startswith("%post")]
    assert layers == ["baseline", "target:openstack", "overlay:alpha", "profile:p"]
    assert any("echo alpha node1.example.com" == ln.text for ln in comp.lines)
    assert _line(comp, "echo profile").origin.line == 11  # the block's third line in profiles/p.yaml


def test_storage_layout_is_replaced_as_a_unit(mini_catalog: Path) -> None:
    (mini_catalog / "kickstarts/overlays/beta.ks.j2").write_text("autopart --type=plain --nohome\n")
    cat = Catalog.load(mini_catalog)
    comp = Composer(cat).compose(choice("centos-stream-9", "openstack", ["beta"]))
    assert not comp.handler.partition.partitions and not comp.handler.reqpart.seen
    assert comp.handler.autopart.autopart
    assert any(o.subject == "storage layout" for o in comp.overrides)


def test_repeated_data_commands_replace_by_identity(mini_catalog: Path) -> None:
    (mini_catalog / "kickstarts/overlays/beta.ks.j2").write_text(
        'repo --name="CRB" --baseurl=http://127.0.0.1/crb/\nrepo --name="extra" --baseurl=http://127.0.0.1/x/\n')
    cat = Catalog.load(mini_catalog)
    comp = Composer(cat).compose(choice("centos-stream-9", "openstack", ["beta"]))
    repos = {r.name: r.baseurl for r in comp.handler.repo.repoList}
    assert repos["CRB"] == "http://127.0.0.1/crb/" and "extra" in repos and "AppStream" in repos
    assert any(o.subject == "repo" and "CRB" in o.old for o in comp.overrides)


def test_no_override_when_layers_agree(mini_catalog: Path) -> None:
    cat = Catalog.load(mini_catalog)
    comp = Composer(cat).compose(choice("centos-stream-9", "openstack"))
    assert comp.overrides == []


def test_baseline_alone(mini_catalog: Path) -> None:
    cat = Catalog.load(mini_catalog)
    base = Composer(cat).compose_baseline("centos-stream-9", {"arch": "aarch64"})
    assert base.target is None
    assert "/9-stream/BaseOS/aarch64/os/" in base.text
    assert "cloud-init" not in base.handler.packages.packageList


def test_run_last_script_follows_every_layer(mini_catalog: Path) -> None:
    seal = mini_catalog / "kickstarts/baseline/_seal.ks.j2"
    seal.write_text("# ccis: run-last\n" + seal.read_text())
    cat = Catalog.load(mini_catalog)
    comp = Composer(cat).compose(cat.load_profile("p"))
    posts = [ln for ln in comp.lines if ln.text.startswith("%post")]
    assert [ln.origin.layer for ln in posts] == ["target:openstack", "overlay:alpha", "profile:p", "baseline"]
    assert comp.text.rstrip().split("%packages")[0].rstrip().endswith("rm -f /var/tmp/zero\n%end".rstrip())


def test_yaml_can_unset_a_service(mini_catalog: Path) -> None:
    (mini_catalog / "kickstarts/overlays/beta.yaml").write_text(
        "name: beta\ntitle: Beta\nservices:\n  enabled: [-qemu-guest-agent]\n")
    cat = Catalog.load(mini_catalog)
    comp = Composer(cat).compose(choice("centos-stream-9", "openstack", ["beta"]))
    svc = comp.handler.services
    assert "qemu-guest-agent" not in svc.enabled + svc.disabled
    unset = next(o for o in comp.overrides if o.subject == "service qemu-guest-agent")
    assert (unset.old, unset.new) == ("enabled", "(unset)") and unset.later.line == 4


def test_bootloader_merges_option_by_option(mini_catalog: Path) -> None:
    (mini_catalog / "kickstarts/overlays/beta.ks.j2").write_text('bootloader --append="rd.shell=0"\n')
    cat = Catalog.load(mini_catalog)
    comp = Composer(cat).compose(choice("centos-stream-9", "openstack", ["beta"]))
    boot = comp.handler.bootloader
    assert boot.timeout == 1 and "rd.shell=0" in boot.appendLine and "no_timer_check" in boot.appendLine
    assert not [o for o in comp.overrides if o.subject.startswith("command bootloader")]
    (mini_catalog / "kickstarts/overlays/beta.ks.j2").write_text("bootloader --timeout=5\n")
    comp = Composer(Catalog.load(mini_catalog)).compose(choice("centos-stream-9", "openstack", ["beta"]))
    assert comp.handler.bootloader.timeout == 5
    assert [(o.old, o.new) for o in comp.overrides if o.subject == "command bootloader timeout"] == [("1", "5")]


def test_exclude_targets(mini_catalog: Path) -> None:
    from ccis_workbench.core.errors import CatalogError

    beta = mini_catalog / "kickstarts/overlays/beta.yaml"
    beta.write_text(beta.read_text() + "exclude_targets: [openstack]\n")
    cat = Catalog.load(mini_catalog)
    with pytest.raises(CatalogError) as err:
        Composer(cat).compose(choice("centos-stream-9", "openstack", ["beta"]))
    assert "every target but openstack" in err.value.hint


def _fingerprint(c) -> tuple:
    return (c.text, [(ln.text, [(o.layer, o.file, o.line) for o in ln.origins], ln.overridden) for ln in c.lines],
            [o.message() for o in c.overrides], [(m.severity, m.message, str(m.origin)) for m in c.messages],
            c.kernel_args)


def test_a_composer_reused_across_the_catalog_composes_each_profile_as_a_fresh_one() -> None:
    """A Composer keeps each layer's parse (core/compose.py: _parse_layer_text) and merges from it: nothing a
    composition does may leak into the next. Every shipped profile, and each with every overlay it accepts
    added, composed one after another by one Composer (twice round), equals the same composed by a new one."""
    root = Path(__file__).resolve().parents[1]
    cat = Catalog.load(root)
    shared = Composer(cat)
    profiles = [cat.load_profile(n) for n in cat.profile_names()]
    choices = list(profiles)
    for p in profiles[:8]:
        for name in cat.overlays:
            extra = choice(p.release, p.target, [*p.overlays, name], dict(p.variables), name=f"{p.name}+{name}")
            try:
                Composer(cat).resolve(extra)
            except Exception:  # noqa: BLE001 - the overlay does not apply to this profile: not a case
                continue
            choices.append(extra)
    assert len(choices) > len(profiles), "no overlay could be added to any profile: nothing to mix"
    for _ in range(2):
        for prof in choices:
            assert _fingerprint(shared.compose(prof)) == _fingerprint(Composer(cat).compose(prof)), prof.name
    assert shared._layer_parses, "the layer parses were not kept: the test exercised nothing"


def test_an_overlay_that_overrides_an_option_leaves_the_kept_layers_as_they_were(mini_catalog: Path) -> None:
    """The merge replaces an earlier layer's bootloader option in a copy: the earlier layer's kept parse (reused
    by the next composition of the same Composer) still says what its file says."""
    (mini_catalog / "kickstarts/overlays/beta.ks.j2").write_text("bootloader --timeout=5\n")
    cat = Catalog.load(mini_catalog)
    shared = Composer(cat)
    without = choice("centos-stream-9", "openstack", [])
    fresh = _fingerprint(Composer(cat).compose(without))
    shared.compose(without)
    assert shared.compose(choice("centos-stream-9", "openstack", ["beta"])).handler.bootloader.timeout == 5
    again = shared.compose(without)
    assert again.handler.bootloader.timeout == 1
    assert _fingerprint(again) == fresh
