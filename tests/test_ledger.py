"""The fidelity ledger: schema errors with file:line, the keys of a semantic diff, explaining a diff against an
official kickstart (the facts in the ledger, or a kickstart written here that reproduces them), `diff --explain`
through the real CLI, and the lint rule for stale explanations."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core import ledger
from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.compose import Composer, choice
from ccis_workbench.core.diff import diff_texts
from ccis_workbench.core.errors import CatalogError, KickstartSyntaxError
from ccis_workbench.core.lint import lint_composition
from ccis_workbench.flows import review

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "lint"
#: profile -> a kickstart written here with the facts of the official one it follows (None: the ledger's facts only)
CHECKED = [
    ("openstack-stream9", "cloud-kvm-stream9.ks"),
    ("openstack-stream10", "cloud-kvm-stream10.ks"),
    ("aws-stream9", None),
    ("aws-stream10", None),
    ("vagrant-stream9", None),
    ("vagrant-stream10", None),
    ("docker-stream9", None),
    ("overlay-minimal-docker-stream10", None),
]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(REPO)


@pytest.fixture(scope="module")
def composer(catalog: Catalog) -> Composer:
    return Composer(catalog)


def copy_catalog(tmp_path: Path) -> Path:
    root = tmp_path / "cat"
    shutil.copytree(REPO / "kickstarts", root / "kickstarts")
    shutil.copytree(REPO / "profiles", root / "profiles")
    return root


def cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccis_workbench", *args], capture_output=True, text=True, cwd=cwd, check=False
    )


# -- keys ----------------------------------------------------------------------------------------------------------


def test_keys_of_every_kind_of_difference() -> None:
    a = (DATA / "cloud-kvm-stream9.ks").read_text()
    b = (
        a.replace("tcpdump\n", "")
        .replace("no_timer_check ", "")
        .replace("part /boot --fstype=xfs --label=boot --onpart=vda3", "part /boot --fstype=xfs --size=1024")
        .replace("firewall --enabled --service=ssh", "firewall --disabled")
        .replace("%end\n", "%end\n%post\necho extra\n%end\n", 1)
    )
    keys = [d.key for d in ledger.difference_keys(diff_texts(a, b, "RHEL9").semantic)]
    assert keys == [
        "package removed: tcpdump",
        "kernel argument removed: no_timer_check",
        "firewall changed",
        "part changed: /boot",
        "script added: %post #1",
    ], keys
    for k in keys:  # every key the diff makes is a key the ledger accepts
        assert ledger._check_key(k) is None, k


@pytest.mark.parametrize("key", ["package gone: x", "part changed /", "script changed: post", "", "kernel arg: x"])
def test_bad_keys_are_refused(key: str) -> None:
    assert ledger._check_key(key)


def test_globs_match_and_stale_is_what_matched_nothing() -> None:
    sd = diff_texts("%packages\ncockpit-ws\ncockpit-system\ntar\n%end\n", "%packages\ntar\n%end\n", "RHEL9").semantic
    own = [
        ledger.Explanation("package removed: cockpit-*", "no web console", "t.yaml", 3),
        ledger.Explanation("package removed: nfs-utils", "not needed", "t.yaml", 5),
    ]
    shared = [ledger.Explanation("timezone changed", "UTC", "r.yaml", 9)]
    out = ledger.explain(sd, own, shared=shared)
    assert [i.explanation.line for i in out.items if i.explanation] == [3, 3]
    assert out.unexplained == []
    assert [e.key for e in out.stale] == ["package removed: nfs-utils"]  # the shared one is never stale here


# -- schema -------------------------------------------------------------------------------------------------------


def _break(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        (
            '      - key: "package added: qemu-guest-agent"',
            '      - key: "package gone: qemu-guest-agent"',
            "not a semantic-diff key",
        ),
        ("      ref: 9140424d9ab05c0675091c9256d870fa70a7a2f4\n", "", "needs 'ref'"),
        ("  - release: centos-stream-10\n", "  - release: centos-stream-11\n", "is not one of"),
        (
            "        reason: the guest agent runs from the first boot (see its package)",
            "        reason: |\n          two\n          lines",
            "give one line",
        ),
        ('        - section: "%pre"\n', '        - section: "%prelude"\n', "is not one of"),
        (
            "    follows:\n      name: CentOS-Stream-9-kvm",
            "    folows:\n      name: CentOS-Stream-9-kvm",
            "Unknown key",
        ),
    ],
)
def test_bad_ledger_names_file_and_line(tmp_path: Path, old: str, new: str, what: str) -> None:
    root = copy_catalog(tmp_path)
    _break(root, "kickstarts/targets/openstack.yaml", old, new)
    with pytest.raises(CatalogError) as exc:
        Catalog.load(root)
    err = exc.value
    assert err.location.file == "kickstarts/targets/openstack.yaml"
    assert what in str(err)
    lines = (root / "kickstarts/targets/openstack.yaml").read_text().split("\n")
    assert err.location.line > 0 and lines[err.location.line - 1].strip(), err


def test_bad_release_ledger_names_file_and_line(tmp_path: Path) -> None:
    root = copy_catalog(tmp_path)
    _break(
        root,
        "kickstarts/releases/centos-stream-9.yaml",
        '    - key: "timezone changed"',
        '    - key: "timezone changed"\n      reasn: typo',
    )
    with pytest.raises(CatalogError) as exc:
        Catalog.load(root)
    assert exc.value.location.file == "kickstarts/releases/centos-stream-9.yaml"
    line = (root / "kickstarts/releases/centos-stream-9.yaml").read_text().split("\n")[exc.value.location.line - 1]
    assert "reasn" in line


def test_facts_that_are_not_kickstart_name_the_ledger_line(tmp_path: Path) -> None:
    root = copy_catalog(tmp_path)
    _break(
        root,
        "kickstarts/targets/openstack.yaml",
        "        - selinux --enforcing\n",
        "        - selinux --enforcing --sometimes\n",
    )
    cat = Catalog.load(root)
    comp = Composer(cat).compose(cat.load_profile("openstack-stream9"))
    with pytest.raises(KickstartSyntaxError) as exc:
        review.explain_differences(comp)
    lines = (root / "kickstarts/targets/openstack.yaml").read_text().split("\n")
    assert exc.value.location.file == "kickstarts/targets/openstack.yaml"
    assert "--sometimes" in lines[exc.value.location.line - 1]


# -- explaining the shipped profiles -----------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "official"), CHECKED)
def test_shipped_profile_has_no_unexplained_difference(
    catalog: Catalog, composer: Composer, profile: str, official: str | None
) -> None:
    comp = composer.compose(catalog.load_profile(profile))
    # the ledger's facts, and a kickstart written here with the same facts
    for path in (None, DATA / official) if official else (None,):
        result, explained = review.explain_differences(comp, path)
        assert explained.items, "the official kickstart and ours differ: the ledger must say how"
        assert [i.difference.summary for i in explained.unexplained] == []
        assert explained.stale == []
        assert not result.semantic.is_empty()


def test_release_explanations_each_explain_some_target(catalog: Catalog, composer: Composer) -> None:
    for release in ("centos-stream-9", "centos-stream-10"):
        used: set[int] = set()
        for target in catalog.targets.values():
            if ledger.entry_for(target, release) is None:
                continue
            comp = composer.compose(choice(release, target.name))
            _, explained = review.explain_differences(comp)
            used |= {id(i.explanation) for i in explained.explained}
        unused = [e.key for e in catalog.releases[release].fidelity if id(e) not in used]
        assert unused == [], f"{release}: shared explanations that explain nothing: {unused}"


def test_cli_explain_marks_and_exits(tmp_path: Path) -> None:
    res = cli("diff", "openstack-stream9", "--explain", "--against-file", str(DATA / "cloud-kvm-stream9.ks"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "UNEXPLAINED" not in res.stdout
    assert "explained    package removed: cockpit-ws\n             because kept out: no web console" in res.stdout
    assert "kickstarts/targets/openstack.yaml:" in res.stdout
    # a difference nobody wrote down: exit 1, named
    other = tmp_path / "official.ks"
    other.write_text((DATA / "cloud-kvm-stream9.ks").read_text().replace("\ntar\n", "\ntar\nmc\n"))
    res = cli("diff", "openstack-stream9", "--explain", "--against-file", str(other))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "UNEXPLAINED  package removed: mc" in res.stdout
    assert "1 unexplained" in res.stdout
    res = cli("diff", "openstack-stream9", "--explain", "--against-file", str(other), "--json")
    data = json.loads(res.stdout)
    assert res.returncode == 1 and [u["key"] for u in data["unexplained"]] == ["package removed: mc"]
    assert data["follows"]["name"] == "CentOS-Stream-9-kvm-x86_64.ks"
    # bad input: exit 2
    res = cli("diff", "openstack-stream9", "--explain", "--against-profile", "aws-stream9")
    assert res.returncode == 2, res.stdout + res.stderr


def test_cli_explain_without_a_ledger_is_bad_input() -> None:
    res = cli("diff", "ovirt-centos7", "--explain")
    assert res.returncode == 2, res.stdout + res.stderr
    assert "kickstarts/targets/ovirt.yaml" in res.stderr


# -- lint: stale explanations -----------------------------------------------------------------------------------


def test_lint_reports_a_stale_explanation_at_its_line(tmp_path: Path) -> None:
    root = copy_catalog(tmp_path)
    cat = Catalog.load(root)
    comp = Composer(cat).compose(cat.load_profile("openstack-stream9"))
    assert not [f for f in lint_composition(comp) if f.name == "fidelity-stale"]
    _break(
        root,
        "kickstarts/targets/openstack.yaml",
        '      - key: "package removed: tcpdump"',
        '      - key: "package removed: tcpdump"\n        reason: x\n      - key: "package removed: mc"',
    )
    cat = Catalog.load(root)
    comp = Composer(cat).compose(cat.load_profile("openstack-stream9"))
    stale = [f for f in lint_composition(comp) if f.name == "fidelity-stale"]
    assert len(stale) == 1 and "package removed: mc" in stale[0].message, stale
    lines = (root / "kickstarts/targets/openstack.yaml").read_text().split("\n")
    assert stale[0].origin.file == "kickstarts/targets/openstack.yaml"
    assert "package removed: mc" in lines[stale[0].origin.line - 1]


# -- ledgers against Google's and the SIG's own files (C7, Stream 8 openstack; gce on Stream 9) ---------------------

#: profile -> (ledger file, official file name, repository)
FOLLOWED = {
    "gce-stream10": (
        "kickstarts/targets/gce.yaml",
        "centos_stream_10.cfg",
        "https://github.com/GoogleCloudPlatform/compute-image-tools",
    ),
    "gce-stream9": (
        "kickstarts/targets/gce.yaml",
        "centos_stream_9.cfg",
        "https://github.com/GoogleCloudPlatform/compute-image-tools",
    ),
    "openstack-centos7": (
        "kickstarts/targets/openstack.yaml",
        "CentOS-7-x86_64-GenericCloud-201606-r1.ks",
        "https://github.com/CentOS/sig-cloud-instance-build",
    ),
}
#: the profiles FOLLOWED names that the catalog does not ship: written into tmp_path for the test
UNSHIPPED = {
    "openstack-centos7": "name: openstack-centos7\nrelease: centos-7\ntarget: openstack\nvariables:\n  timezone: UTC\n",
}


def _profile(profile: str, tmp_path: Path) -> str:
    if profile not in UNSHIPPED:
        return profile
    path = tmp_path / f"{profile}.yaml"
    path.write_text(UNSHIPPED[profile])
    return str(path)


@pytest.mark.parametrize("profile", sorted(FOLLOWED))
def test_followed_ledger_explains_every_difference(
    catalog: Catalog, composer: Composer, profile: str, tmp_path: Path
) -> None:
    """The facts recorded for the official file, diffed against the profile: every difference is explained, no
    explanation is stale, and lint stays quiet about the ledger (CCIS200, fidelity-stale)."""
    ledger_file, name, repository = FOLLOWED[profile]
    comp = composer.compose(catalog.load_profile(_profile(profile, tmp_path)))
    entry, _, _ = ledger.explanations_for(comp)
    assert entry is not None and entry.file == ledger_file
    _, explained = review.explain_differences(comp)
    assert explained.follows.name == name and explained.follows.repository == repository
    assert len(explained.follows.ref) == 40  # a commit, not a branch name
    assert explained.items, "the official file and ours differ: the ledger must say how"
    assert [i.difference.summary for i in explained.unexplained] == []
    assert explained.stale == []
    assert not [f for f in lint_composition(comp) if f.id == "CCIS200" or f.name == "fidelity-stale"]


@pytest.mark.parametrize("profile", sorted(FOLLOWED))
def test_followed_ledger_through_the_cli(profile: str, tmp_path: Path) -> None:
    res = cli("diff", _profile(profile, tmp_path), "--explain")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr
    assert "UNEXPLAINED" not in res.stdout and " 0 unexplained, 0 stale" in res.stdout
    assert f"follows {FOLLOWED[profile][1]} ({FOLLOWED[profile][2]} at " in res.stdout
