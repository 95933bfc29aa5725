"""The shipped catalog: every profile renders, matches its golden file and passes pykickstart's own
ksvalidator; every target composes on every release it claims; the CLI lists 4 releases and 11 targets.

Golden files: tests/golden/kickstarts/PROFILE.ks. Regenerate with CCIS_REGEN_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.compose import Composer, choice

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests/golden/kickstarts"
PROFILES = sorted(p.stem for p in (REPO / "profiles").glob("*.yaml"))
TARGETS = ("openstack", "cloudstack", "opennebula", "eucalyptus", "ovirt", "docker", "vagrant", "aws", "hpcloud",
           "gce", "brightbox")
RELEASES = ("centos-7", "centos-stream-8", "centos-stream-9", "centos-stream-10")


@pytest.fixture(scope="module")
def composer(catalog: Catalog) -> Composer:
    return Composer(catalog)


def _ksvalidate(ksvalidator: str, text: str, version: str, tmp_path: Path, name: str) -> None:
    ks = tmp_path / f"{name}.ks"
    ks.write_text(text)
    res = subprocess.run([sys.executable, ksvalidator, "-v", version, str(ks)], capture_output=True, text=True,
                         check=False)
    problems = [ln for ln in res.stdout.splitlines() if ln.strip() and not ln.startswith("Checking kickstart")]
    assert res.returncode == 0 and not problems, f"ksvalidator -v {version} {name}:\n{res.stdout}{res.stderr}"


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profile_renders_matches_golden_and_validates(name: str, catalog: Catalog, composer: Composer,
                                                               ksvalidator: str, tmp_path: Path) -> None:
    comp = composer.compose(catalog.load_profile(name))
    golden = GOLDEN / f"{name}.ks"
    if os.environ.get("CCIS_REGEN_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(comp.text)
    assert golden.exists(), f"no golden file for {name}: run CCIS_REGEN_GOLDEN=1 pytest {__file__}"
    assert comp.text == golden.read_text(), f"{name} renders differently from {golden} (regenerate and review)"
    _ksvalidate(ksvalidator, comp.text, comp.version, tmp_path, name)
    # ksflatten (what build systems run on a kickstart) accepts it and changes nothing but its own header
    ksflatten = str(Path(ksvalidator).with_name("ksflatten"))
    flat = tmp_path / f"{name}.flat.ks"
    res = subprocess.run([sys.executable, ksflatten, "-c", str(tmp_path / f"{name}.ks"), "-v", comp.version, "-o",
                          str(flat)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert flat.read_text().split("\n", 2)[2] == comp.text.split("\n", 3)[3]


def test_no_orphan_golden_files() -> None:
    orphans = sorted(p.stem for p in GOLDEN.glob("*.ks") if p.stem not in PROFILES)
    assert orphans == [], f"golden files without a profile: {orphans}"


def test_catalog_has_every_release_and_target(catalog: Catalog) -> None:
    assert sorted(catalog.releases) == sorted(RELEASES)
    assert sorted(catalog.targets) == sorted(TARGETS)
    assert len(catalog.overlays) >= 6


def test_every_target_has_a_profile_and_every_release_two(catalog: Catalog) -> None:
    profiles = [catalog.load_profile(n) for n in PROFILES]
    assert {p.target for p in profiles} >= set(TARGETS)
    for r in RELEASES:
        assert sum(p.release == r for p in profiles) >= 2, f"release {r} has fewer than two profiles"


@pytest.mark.parametrize("target", TARGETS)
def test_target_composes_on_every_release_it_supports(target: str, catalog: Catalog, composer: Composer,
                                                     ksvalidator: str, tmp_path: Path) -> None:
    t = catalog.targets[target]
    assert t.releases, f"{target} supports no release"
    assert t.checks, f"{target} declares no boot-test check"
    for release in t.releases:
        comp = composer.compose(choice(release, target))
        _ksvalidate(ksvalidator, comp.text, comp.version, tmp_path, f"{target}-{release}")


@pytest.mark.parametrize("overlay", sorted(p.stem for p in (REPO / "kickstarts/overlays").glob("*.yaml")))
def test_overlay_composes_where_it_applies(overlay: str, catalog: Catalog, composer: Composer) -> None:
    o = catalog.overlays[overlay]
    composed = 0
    for release in o.releases:
        for target in [t for t in catalog.targets if o.applies_to(t)]:
            t = catalog.targets[target]
            if release not in t.releases:
                continue
            overlays = [*o.requires, overlay]
            try:
                comp = composer.compose(choice(release, target, overlays))
            except Exception as exc:  # a conflict with the target's own agent is a legitimate refusal
                if "onflict" in str(exc):
                    continue
                raise
            assert f"overlay:{overlay}" in {layer.label for layer in comp.layers}
            composed += 1
    assert composed > 0, f"{overlay} applies nowhere"


def test_cli_lists(cli) -> None:
    res = cli("list", "targets")
    assert res.code == 0
    assert sorted(line.split()[0] for line in res.out.splitlines()) == sorted(TARGETS)
    res = cli("list", "releases")
    assert sorted(line.split()[0] for line in res.out.splitlines()) == sorted(RELEASES)
    import json

    res = cli("list", "profiles", "--json")
    assert {p["name"] for p in json.loads(res.out)} == set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_shipped_profile_lints_without_unwaived_errors_or_warnings(name: str, catalog: Catalog,
                                                                   composer: Composer) -> None:
    from ccis_workbench.core.lint import lint_composition

    findings = lint_composition(composer.compose(catalog.load_profile(name)), backend="libvirt")
    failing = [f"{f.id} {f.name} line {f.line}: {f.message}" for f in findings
               if f.severity in ("error", "warning") and not f.waived]
    assert failing == [], f"{name}:\n" + "\n".join(failing)
