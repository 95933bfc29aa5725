"""The CLI as a user runs it: output, JSON, exit statuses (0 clean, 1 findings/differences, 2 bad input)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path


def test_render_to_file_is_complete_and_matches_stdout(cli, mini_catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "ks.cfg"
    res = cli("render", "p", "-o", str(out), root=mini_catalog)
    assert res.code == 0, res.err
    assert "override: command timezone" in res.err
    assert out.read_text() == cli("render", "p", root=mini_catalog).out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["catalog", "ks.cfg"]  # no temporary file left


def test_render_ad_hoc_choice_with_set(cli, mini_catalog: Path) -> None:
    res = cli("render", "--release", "centos-stream-9", "--target", "openstack", "--overlay", "beta",
              "--set", "timezone=Europe/Brussels", "--set", "extra_packages=[htop]", root=mini_catalog)
    assert res.code == 0, res.err
    assert "timezone Europe/Brussels --utc" in res.out and "\nhtop\n" in res.out and "\n-rsync\n" in res.out


def test_blame_json_names_every_layer(cli, mini_catalog: Path) -> None:
    res = cli("blame", "p", "--json", root=mini_catalog)
    assert res.code == 0
    data = json.loads(res.out)
    layers = {o["layer"] for line in data["lines"] for o in line["origins"]}
    assert layers == {"baseline", "target:openstack", "overlay:alpha", "profile:p"}
    assert any(o["subject"] == "command selinux" for o in data["overrides"])
    text = cli("blame", "p", root=mini_catalog).out
    assert "kickstarts/overlays/alpha.ks.j2:1" in text and "override(s)" in text


def test_diff_against_baseline_exits_1_and_names_changes(cli, mini_catalog: Path) -> None:
    res = cli("diff", "p", root=mini_catalog)
    assert res.code == 1, res.err
    assert "htop" in res.out and "timezone" in res.out and res.out.count("\n+") > 5
    data = json.loads(cli("diff", "p", "--json", root=mini_catalog).out)
    assert "htop" in data["semantic"]["packages_added"]


def test_diff_identical_exits_0(cli, mini_catalog: Path, tmp_path: Path) -> None:
    out = tmp_path / "same.ks"
    cli("render", "p", "-o", str(out), root=mini_catalog)
    res = cli("diff", "p", "--against-file", str(out), root=mini_catalog)
    assert res.code == 0, res.out + res.err
    assert "no semantic difference" in res.out


def test_diff_against_git_revision(cli, mini_catalog: Path) -> None:
    def git(*a: str) -> None:
        subprocess.run(["git", *a], cwd=mini_catalog, check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    prof = mini_catalog / "profiles/p.yaml"
    prof.write_text(prof.read_text().replace("vim-enhanced", "emacs-nox"))
    res = cli("diff", "p", "--against-rev", "HEAD", "--json", root=mini_catalog)
    assert res.code == 1, res.err
    sem = json.loads(res.out)["semantic"]
    assert sem["packages_added"] == ["emacs-nox"] and sem["packages_removed"] == ["vim-enhanced"]
    bad = cli("diff", "p", "--against-rev", "nosuchrev", root=mini_catalog)
    assert bad.code == 2 and "Traceback" not in bad.err


def test_lint_profile_and_file(cli, mini_catalog: Path, tmp_path: Path) -> None:
    res = cli("lint", "p", "--json", root=mini_catalog)
    data = json.loads(res.out)
    assert res.code == (1 if data["failing"] else 0)
    ids = {f["id"] for f in data["findings"]}
    assert ids, "the profile sets SELinux permissive: lint must say something"
    ks = tmp_path / "plain.ks"
    ks.write_text("#version=RHEL9\nlang en_US.UTF-8\nrootpw --plaintext hunter2\nselinux --disabled\n")
    res = cli("lint", "--file", str(ks), root=mini_catalog)
    assert res.code == 1
    assert "error" in res.out


def test_usage_errors_exit_2(cli, mini_catalog: Path) -> None:
    assert cli("render", root=mini_catalog).code == 2
    assert cli("render", "p", "--release", "centos-stream-9", root=mini_catalog).code == 2
    assert cli("render", "p", "--set", "novalue", root=mini_catalog).code == 2
    assert cli("render", "p", "--set", "nosuchvar=1", root=mini_catalog).code == 2


def test_lint_rules_listing(cli) -> None:
    res = cli("lint", "--rules", "--json")
    assert res.code == 0
    rules = json.loads(res.out)
    assert len({r["id"] for r in rules}) == len(rules) > 20
    assert {"root-locked", "final-command", "serial-console"} <= {r["name"] for r in rules}
