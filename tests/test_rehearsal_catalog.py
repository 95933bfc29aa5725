"""The whole shipped catalog, proven offline on the rehearsal tree: every profile builds and passes
`boot-test --rehearsal`; what the rehearsal stands in for is listed (plan, console, manifest.json) with its layer
file:line; a genuinely broken %post --erroronfail still fails its build, naming the layer file:line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ccis_workbench.core.rehearsal_emulation import Emulation, located, parse_emulated, plan_emulations

REPO = Path(__file__).resolve().parents[1]
PROFILES = sorted(p.stem for p in (REPO / "profiles").glob("*.yaml"))
SMALL = ["--accel", "tcg", "--disk-size", "96M", "--memory", "512", "--quiet"]


# -- pure: what plan shows before anything runs ------------------------------------------------------------------

KS = """\
text
%post --nochroot --erroronfail
set -e
if command -v curl >/dev/null; then
    curl -fsSL -o /mnt/sysimage/tmp/x.rpm "https://example.org/x-1.0-1.el9.noarch.rpm"
fi
%end
%post --erroronfail
cat > /etc/yum.repos.d/x.repo <<'REPO'
[x]
baseurl=https://example.org/ && dnf install nothing
REPO
rpm -q cloud-init || rpm -Uvh /tmp/x.rpm
rpm --import /etc/pki/rpm-gpg/KEY; dnf -y install a b
python3 -c 'print(1)' >/dev/null 2>&1
# rpm --import in a comment is not run
%end
%post --interpreter=/usr/bin/python3
print("hello")
%end
"""


def test_plan_lists_each_emulated_command_with_its_line() -> None:
    got = [(e.line, e.command.split()[0], e.what.split(":")[0]) for e in plan_emulations(KS)]
    assert got == [
        (5, "curl", "fetch over the network"),
        (13, "rpm", "install the package(s)"),
        (14, "rpm", "import the signing key(s)"),
        (14, "dnf", "dnf install"),
        (15, "python3", "run python3"),
        (18, "%post", "skipped"),
    ], "rpm -q is honoured, heredoc bodies and comments are not commands"
    origins = {13: "kickstarts/overlays/x.ks.j2:7"}
    placed = located(plan_emulations(KS), lambda n: origins.get(n))
    assert placed[1].message().startswith("rehearsal emulated: rpm -Uvh /tmp/x.rpm "
                                          "(layer kickstarts/overlays/x.ks.j2:7)")
    assert placed[0].message().endswith("(no network in the rehearsal)") and "kickstart line 5" in placed[0].message()


def test_installer_lines_are_parsed_once_each() -> None:
    log = ("12:00:01,000 INFO anaconda:rehearsal: [3.1s] rehearsal emulated: rpm --import /k (kickstart line 14): "
           "import the signing key(s) /k (the rehearsal has no rpm database)\r\n"
           "rehearsal emulated: rpm --import /k (kickstart line 14): import the signing key(s) /k (the rehearsal has "
           "no rpm database)\nnoise\n")
    assert parse_emulated(log) == [Emulation(14, "rpm --import /k", "import the signing key(s) /k (the rehearsal has "
                                                                      "no rpm database)")]


# -- the catalog on the real libvirtd (TCG) ----------------------------------------------------------------------

def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccis_workbench", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env, check=False)


def _console_tail(cell: dict[str, Any]) -> str:
    """The last console lines a failed build kept (what CI prints is all there is to go on)."""
    console = Path(cell["logs"]) / "console.log" if cell.get("logs") else None
    if console is None or not console.exists():
        return ""
    return "\n  console: " + "\n  console: ".join(console.read_text(errors="replace").splitlines()[-15:])


@pytest.mark.libvirt
@pytest.mark.slow
def test_every_shipped_profile_builds_and_boot_tests_on_the_rehearsal(no_leftovers: str, tree_server: str,
                                                                       tmp_path: Path) -> None:
    """The whole catalog as one `matrix` run (two cells at a time on the one host, as a 2-core machine allows):
    every profile built (its target's formats) and boot-tested on the rehearsal tree; a second run reuses
    every cell from the cache."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"))
    out = tmp_path / "matrix"
    argv = ["matrix", "--tree", tree_server, "--rehearsal", "--accel", "tcg", "--disk-size", "96M", "--memory",
            "512", "--grow", "64", "--jobs", "2", "--quiet", "--json", "-o", str(out)]
    started = time.monotonic()
    run = _run(argv, env, 3000)
    total = time.monotonic() - started
    assert run.returncode in (0, 1), run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    cells = {c["profile"]: c for c in summary["cells"]}
    assert sorted(cells) == PROFILES
    failures = [f"{n}: {c['status']} at {c['stage']}: {c['reason']}{_console_tail(c)}" for n, c in cells.items()
                if c["status"] != "passed"]
    print(f"\n{len(PROFILES)} profiles in {total:.0f} s (matrix --jobs 2): " +
          ", ".join(f"{n} {c['build_seconds'] or 0:.0f}+{c['test_seconds'] or 0:.0f} s" for n, c in cells.items()))
    assert not failures, "\n\n".join(failures)
    assert run.returncode == 0
    for name, cell in cells.items():
        art = Path(cell["artifact"])
        manifest = json.loads((art / "manifest.json").read_text())
        assert manifest["rehearsal"] is True and cell["rehearsal"] is True
        for e in manifest.get("rehearsal_emulated", []):
            assert e["command"] and e["what"] and e["line"] > 0, e
        report = json.loads(Path(cell["report"]).read_text())
        assert report["passed"] is True, name
        if report["context"] == "vm":
            assert report["rehearsal"] is True, "the boot-test report of a rehearsal image says so"
        if name == "overlay-epel-ansible-stream10":
            emulated = manifest["rehearsal_emulated"]
            assert any(e["command"].startswith("rpm --import") and e["origin"] == "kickstarts/overlays/epel.ks.j2:36"
                       for e in emulated), emulated
            assert "rehearsal emulated: rpm --import" in (art / "console.log").read_text()
    grid = (out / "matrix.md").read_text()
    assert "REHEARSAL, not a CentOS build" in grid and grid.count(": pass (R)") == len(PROFILES)
    again = _run(argv, env, 600)
    assert again.returncode == 0, again.stderr[-3000:]
    counts = json.loads((out / "summary.json").read_text())["counts"]
    assert counts["cached"] == len(PROFILES) and counts["passed"] + counts["failed"] == 0, counts


@pytest.mark.libvirt
@pytest.mark.slow
def test_a_broken_post_fails_with_its_layer_file_and_line(no_leftovers: str, tree_server: str, mini_catalog: Path,
                                                          tmp_path: Path) -> None:
    ov = mini_catalog / "kickstarts/overlays"
    (ov / "broken.yaml").write_text("name: broken\ntitle: Broken\n")
    # a shell syntax error: a real installer fails the same way
    (ov / "broken.ks.j2").write_text("%post --erroronfail\nif true; then\n    echo unterminated\n%end\n")
    (mini_catalog / "profiles/broken-stream9.yaml").write_text(
        "name: broken-stream9\nrelease: centos-stream-9\ntarget: openstack\noverlays: [broken]\n"
        "variables:\n  disk_size: 2\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"))
    out = tmp_path / "art"
    b = _run(["--catalog", str(mini_catalog), "build", "broken-stream9", "--tree", tree_server, "--output", str(out),
              "--format", "qcow2", *SMALL], env, 400)
    assert b.returncode == 1, b.stderr[-2000:]
    assert "A %post script failed" in b.stderr
    assert "layer kickstarts/overlays/broken.ks.j2:1" in b.stderr, b.stderr[-2000:]
    assert not out.exists() or list(out.iterdir()) == []
