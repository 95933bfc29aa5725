"""Propose: evidence tied to the kickstart's sha256, a branch + commit made without touching the user's checkout,
patches that `git am` applies to a fresh clone, and clear refusals (dirty tree, existing branch, missing/stale
evidence). Every repository here is a temporary one holding a copy of the test catalog."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccis_workbench.cli.main import main
from ccis_workbench.core import propose as prop
from ccis_workbench.core.errors import WorkbenchError

TAG = "20261126"
KS_NAME = f"CentOS-Stream-9-x86_64-openstack-{TAG}.ks"


def git(repo: Path, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


@pytest.fixture(autouse=True)
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A known identity, and no user/system git config leaking in."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (tmp_path / "gitconfig").write_text("[user]\n\tname = Test Proposer\n\temail = proposer@example.org\n"
                                        "[init]\n\tdefaultBranch = main\n")


@pytest.fixture
def upstream(mini_catalog: Path) -> Path:
    """The SIG's repository: the test catalog (kickstarts/, profiles/) committed on main."""
    git(mini_catalog, "init", "-q", "-b", "main")
    git(mini_catalog, "add", "-A")
    git(mini_catalog, "commit", "-q", "-m", "catalog")
    return mini_catalog


@pytest.fixture
def work(upstream: Path, tmp_path: Path) -> Path:
    """A contributor's clone of it."""
    dest = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(upstream), str(dest)], check=True, capture_output=True)
    return dest


def run(*args: str, repo: Path) -> int:
    return main(["--catalog", str(repo), *args])


def snapshot(repo: Path) -> tuple[str, str, str, str, str]:
    """What the user sees: branch, HEAD, status, staged diff and unstaged diff."""
    return (git(repo, "symbolic-ref", "HEAD"), git(repo, "rev-parse", "HEAD"),
            git(repo, "status", "--porcelain=v1", "--untracked-files=all"), git(repo, "diff", "--cached"),
            git(repo, "diff"))


def add_new_overlay_and_profile(repo: Path) -> None:
    """A contributor's prototype: a new overlay and a new profile using it, neither committed."""
    ov = repo / "kickstarts/overlays"
    (ov / "gamma.yaml").write_text("name: gamma\ntitle: Gamma\npackages: [tmux]\n")
    (ov / "gamma.ks.j2").write_text("%post\necho gamma\n%end\n")
    (repo / "profiles/q.yaml").write_text("name: q\ndescription: OpenStack with gamma\nrelease: centos-stream-9\n"
                                          "target: openstack\noverlays: [gamma]\nvariables:\n  disk_size: 12\n")


def composed_sha(repo: Path, profile: str) -> str:
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer

    cat = Catalog.load(repo)
    return prop.sha256_text(Composer(cat).compose(cat.load_profile(profile)).text)


def write_artifacts(folder: Path, ks_sha: str, *, boot_sha: str | None = None, passed: bool = True,
                    profile: str = "q") -> Path:
    """A build folder laid out as a build writes it: CHECKSUM covers the image and manifest.json, the manifest
    names the profile and lists the image with its sha256, the boot-test report names the image it booted."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "disk.qcow2"
    image.write_bytes(b"QFI\xfb" + b"\0" * 4096)
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps({"profile": profile, "kickstart_sha256": ks_sha,
                                                      "artifacts": [{"file": "disk.qcow2", "sha256": digest}]}))
    manifest_sha = hashlib.sha256((folder / "manifest.json").read_bytes()).hexdigest()
    (folder / "CHECKSUM").write_text(f"# CentOS style\nSHA256 (disk.qcow2) = {digest}\n"
                                     f"SHA256 (manifest.json) = {manifest_sha}\n")
    (folder / "boot-test.json").write_text(json.dumps({
        "kickstart_sha256": boot_sha or ks_sha, "passed": passed, "image": "disk.qcow2",
        "checks": [{"id": "baseline.sshd-active", "passed": passed}, {"id": "openstack.datasource", "passed": True}]}))
    return folder


# -- naming and pure parts -------------------------------------------------------------------------------------

def test_sig_names() -> None:
    assert prop.kickstart_name("centos-stream-9", "x86_64", "openstack", TAG) == KS_NAME
    assert prop.kickstart_name("centos-7", "x86_64", "openstack", "2009") == "CentOS-7-x86_64-openstack-2009.ks"
    assert prop.kickstart_name("centos-stream-10", "aarch64", "aws", "20260101.0") == \
        "CentOS-Stream-10-aarch64-aws-20260101.0.ks"
    import datetime as dt

    assert prop.default_tag(dt.date(2026, 1, 2)) == "20260102"
    with pytest.raises(WorkbenchError, match="tag"):
        prop.check_tag("2026-11-26")
    with pytest.raises(WorkbenchError):
        prop.check_tag("x/../y")


def test_checksum_parse_names_the_bad_line() -> None:
    good = "SHA256 (a.qcow2) = " + "a" * 64 + "\n"
    assert prop.parse_checksum(good) == {"a.qcow2": "a" * 64}
    with pytest.raises(WorkbenchError) as exc:
        prop.parse_checksum(good + "MD5 (a.qcow2) = abc\n", "art/CHECKSUM")
    assert exc.value.location is not None and exc.value.location.line == 2


def test_artifact_evidence_ok_stale_missing_and_failing(tmp_path: Path) -> None:
    ks = "a" * 64
    ev = prop.Evidence(kickstart_sha256=ks, items=[])
    prop.artifact_evidence(ev, write_artifacts(tmp_path / "ok", ks))
    assert [i.status for i in ev.items] == ["ok", "ok", "ok"]
    assert set(ev.files) == {"manifest.json", "CHECKSUM", "boot-test.json"}
    assert ev.items[0].sha256 == hashlib.sha256((tmp_path / "ok/manifest.json").read_bytes()).hexdigest()
    assert "2/2 check(s) passed" in ev.items[2].detail

    stale = prop.Evidence(kickstart_sha256=ks, items=[])
    prop.artifact_evidence(stale, write_artifacts(tmp_path / "stale", "b" * 64))
    assert [i.status for i in stale.items] == ["stale", "stale", "stale"]
    assert stale.files == {}, "stale evidence is never copied into a proposal"
    assert "b" * 64 in stale.items[0].detail

    missing = prop.Evidence(kickstart_sha256=ks, items=[])
    prop.artifact_evidence(missing, None)
    assert [i.status for i in missing.items] == ["missing", "missing", "missing"]
    assert len(missing.unmet()) == 3

    failing = prop.Evidence(kickstart_sha256=ks, items=[])
    prop.artifact_evidence(failing, write_artifacts(tmp_path / "failing", ks, passed=False))
    assert [i.status for i in failing.items] == ["ok", "ok", "failing"]
    assert failing.unmet() == [], "failing evidence is real evidence: shown, not refused"

    folder = write_artifacts(tmp_path / "bad", ks)
    (folder / "disk.qcow2").write_bytes(b"changed after the checksum was taken")
    tampered = prop.Evidence(kickstart_sha256=ks, items=[])
    prop.artifact_evidence(tampered, folder)
    assert [i.status for i in tampered.items] == ["unverified", "unverified", "unverified"]
    assert "disk.qcow2" in tampered.items[1].detail
    assert tampered.files == {} and len(tampered.unmet()) == 3, "what does not cross-check is treated as missing"


def test_boot_test_report_without_sha_is_tied_through_the_image(tmp_path: Path) -> None:
    """`ccis-workbench test` writes ARTIFACTS/boot-test-ID/report.json naming the image it booted."""
    ks = "c" * 64
    folder = write_artifacts(tmp_path / "art", ks)
    (folder / "boot-test.json").unlink()
    run_dir = folder / "boot-test-r1"
    run_dir.mkdir()
    report = {"run_id": "r1", "image": str(folder / "disk.qcow2"), "ending": "completed", "passed": True,
              "checks": [{"id": "a", "status": "passed"}, {"id": "b", "status": "skipped"}]}
    (run_dir / "report.json").write_text(json.dumps(report))
    ev = prop.Evidence(kickstart_sha256=ks, items=[])
    prop.artifact_evidence(ev, folder)
    boot = ev.items[2]
    assert boot.status == "ok" and "tested image disk.qcow2" in boot.detail, boot
    assert boot.source == str(run_dir / "report.json")

    report["image"] = str(tmp_path / "elsewhere.qcow2")
    (run_dir / "report.json").write_text(json.dumps(report))
    ev = prop.Evidence(kickstart_sha256=ks, items=[])
    prop.artifact_evidence(ev, folder)
    assert ev.items[2].status == "unverified" and "not a verified artifact" in ev.items[2].detail


def test_a_rootfs_build_kickstart_counts_as_this_kickstart() -> None:
    from types import SimpleNamespace

    from ccis_workbench.core.plan import ROOTFS_EXPORT_POST

    comp = SimpleNamespace(text="text\n", target=SimpleNamespace(formats=["rootfs-tar"]))
    accepted = prop.accepted_kickstarts(comp)
    assert prop.sha256_text("text\n") in accepted
    assert prop.sha256_text("text\n\n" + ROOTFS_EXPORT_POST) in accepted
    assert len(prop.accepted_kickstarts(SimpleNamespace(text="text\n", target=SimpleNamespace(formats=["qcow2"])))) == 1


# -- the whole flow --------------------------------------------------------------------------------------------

def test_patches_apply_to_a_fresh_clone_and_pr_lists_evidence(work: Path, upstream: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    add_new_overlay_and_profile(work)
    git(work, "add", "profiles/q.yaml")  # one staged, two untracked: both must survive untouched
    before = snapshot(work)
    ks_sha = composed_sha(work, "q")
    artifacts = write_artifacts(tmp_path / "artifacts", ks_sha)
    out = tmp_path / "out"

    rc = run("propose", "q", "--tag", TAG, "--artifacts", str(artifacts), "--output", str(out), repo=work)
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert snapshot(work) == before, "the user's branch, index and working tree are left as they were"

    branch = "propose/q"
    files = set(git(work, "diff", "--name-only", f"HEAD..{branch}").split())
    folder = "proposals/q"
    assert {"profiles/q.yaml", "kickstarts/overlays/gamma.yaml", "kickstarts/overlays/gamma.ks.j2",
            f"{folder}/{KS_NAME}", f"{folder}/{KS_NAME[:-3]}.json", f"{folder}/lint.json",
            f"{folder}/diff-baseline.json", f"{folder}/manifest.json", f"{folder}/CHECKSUM",
            f"{folder}/boot-test.json", f"{folder}/README.md", f"{folder}/{KS_NAME[:-3]}.koji.ks",
            f"{folder}/{KS_NAME[:-3]}.koji.ini"} == files
    ini = git(work, "show", f"{branch}:{folder}/{KS_NAME[:-3]}.koji.ini")
    assert f"kickstart = {folder}/{KS_NAME[:-3]}.koji.ks" in ini
    committed_ks = git(work, "show", f"{branch}:{folder}/{KS_NAME}")
    assert prop.sha256_text(committed_ks) == ks_sha, "the committed kickstart is the one the evidence is for"
    meta = json.loads(git(work, "show", f"{branch}:{folder}/{KS_NAME[:-3]}.json"))
    assert meta["kickstart_sha256"] == ks_sha and meta["overlays"] == ["gamma"] and meta["tag"] == TAG

    message = git(work, "log", "-1", "--format=%B", branch)
    assert message.startswith("Propose q: CentOS Stream 9 openstack + gamma (x86_64)")
    assert "package added: tmux" in message and ks_sha in message
    assert "kickstarts/overlays/gamma.yaml (new)" in message

    patches = sorted(out.glob("*.patch"))
    assert len(patches) == 1
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(upstream), str(fresh)], check=True, capture_output=True)
    am = subprocess.run(["git", "-C", str(fresh), "am", *map(str, patches)], capture_output=True, text=True,
                        check=False)
    assert am.returncode == 0, am.stderr
    assert git(fresh, "rev-parse", "HEAD^{tree}") == git(work, "rev-parse", f"{branch}^{{tree}}")

    pr = (out / "PULL_REQUEST.md").read_text()
    assert ks_sha in pr
    for name in ("lint.json", "diff-baseline.json", "manifest.json", "CHECKSUM", "boot-test.json"):
        digest = hashlib.sha256(subprocess.run(["git", "-C", str(work), "show", f"{branch}:{folder}/{name}"],
                                               capture_output=True, check=True).stdout).hexdigest()
        row = next(line for line in pr.splitlines() if f"`{folder}/{name}`" in line)
        assert f"`{digest}`" in row, row
        assert name == "lint.json" or "| ok |" in row, row  # lint's verdict belongs to the lint rules
    assert "MISSING" not in pr and "STALE" not in pr
    assert f"koji image-build --config {folder}/{KS_NAME[:-3]}.koji.ini --scratch" in pr
    assert git(work, "show", f"{branch}:{folder}/README.md") == pr


def test_missing_evidence_needs_consent_and_is_said_plainly(work: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(work)
    rc = run("propose", "p", "--tag", TAG, "--output", str(tmp_path / "out"), repo=work)
    err = capsys.readouterr().err
    assert rc == 2 and "Evidence missing or stale" in err and "--allow-missing" in err
    assert snapshot(work) == before and not git(work, "branch", "--list", "propose/*").strip()
    assert not (tmp_path / "out").exists()

    rc = run("propose", "p", "--tag", TAG, "--output", str(tmp_path / "out"), "--allow-missing", repo=work)
    assert rc == 0
    pr = (tmp_path / "out/PULL_REQUEST.md").read_text()
    assert re.search(r"\| Build manifest \| \*\*MISSING\*\* \| — \| — \|", pr)
    assert "Not all evidence is there" in pr
    assert "manifest.json" not in git(work, "ls-tree", "-r", "--name-only", "propose/p")


def test_an_overlay_not_for_publication_is_refused_with_its_file_and_line(work: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    ov = work / "kickstarts/overlays"
    (ov / "debugging.yaml").write_text("name: debugging\ntitle: Debugging (NOT for publication)\n"
                                       "packages: [strace]\npublishable: false\n")
    (work / "profiles/dbg.yaml").write_text("name: dbg\nrelease: centos-stream-9\ntarget: openstack\n"
                                            "overlays: [debugging]\n")
    before = snapshot(work)
    rc = run("propose", "dbg", "--tag", TAG, "--output", str(tmp_path / "out"), "--allow-missing", repo=work)
    err = capsys.readouterr().err
    assert rc == 2 and "kickstarts/overlays/debugging.yaml:4: Not for publication" in err
    assert "remove debugging from the profile's overlays" in err
    assert snapshot(work) == before and not (tmp_path / "out").exists()
    assert not git(work, "branch", "--list", "propose/*").strip()


def test_stale_evidence_is_shown_as_stale_and_not_committed(work: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    ks_sha = composed_sha(work, "p")
    old_sha = hashlib.sha256(b"an older kickstart").hexdigest()
    artifacts = write_artifacts(tmp_path / "artifacts", old_sha)
    rc = run("propose", "p", "--tag", TAG, "--artifacts", str(artifacts), "--output", str(tmp_path / "o1"),
             repo=work)
    printed = capsys.readouterr()
    assert rc == 2 and "STALE" in printed.out and "Build manifest stale" in printed.err
    assert not git(work, "branch", "--list", "propose/*").strip()

    rc = run("propose", "p", "--tag", TAG, "--artifacts", str(artifacts), "--output", str(tmp_path / "o2"),
             "--allow-missing", repo=work)
    assert rc == 0
    pr = (tmp_path / "o2/PULL_REQUEST.md").read_text()
    row = next(line for line in pr.splitlines() if line.startswith("| Build manifest |"))
    assert "**STALE**" in row and old_sha in row
    assert ks_sha in pr
    tree = git(work, "ls-tree", "-r", "--name-only", "propose/p")
    assert "proposals/p/manifest.json" not in tree and "proposals/p/boot-test.json" not in tree


def test_dirty_tree_is_refused_and_nothing_changes(work: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    baseline = work / "kickstarts/baseline/centos-stream-9.ks.j2"
    baseline.write_text(baseline.read_text() + "# a local experiment\n")
    before = snapshot(work)
    rc = run("propose", "p", "--tag", TAG, "--allow-missing", "--output", str(tmp_path / "out"), repo=work)
    err = capsys.readouterr().err
    assert rc == 2
    assert "Working tree not clean" in err and "kickstarts/baseline/centos-stream-9.ks.j2 (modified)" in err
    assert snapshot(work) == before
    assert baseline.read_text().endswith("# a local experiment\n")
    assert not git(work, "branch", "--list", "propose/*").strip() and not (tmp_path / "out").exists()

    git(work, "checkout", "--", "kickstarts/baseline/centos-stream-9.ks.j2")
    (work / "notes.txt").write_text("unrelated\n")
    rc = run("propose", "p", "--tag", TAG, "--allow-missing", "--output", str(tmp_path / "out"), repo=work)
    assert rc == 2 and "notes.txt (untracked)" in capsys.readouterr().err


def test_existing_branch_is_refused(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    git(work, "branch", "propose/p")
    tip = git(work, "rev-parse", "propose/p")
    before = snapshot(work)
    rc = run("propose", "p", "--tag", TAG, "--allow-missing", "--output", str(tmp_path / "out"), repo=work)
    err = capsys.readouterr().err
    assert rc == 2 and "Branch exists" in err and "--branch" in err
    assert git(work, "rev-parse", "propose/p") == tip and snapshot(work) == before
    assert not (tmp_path / "out").exists()

    rc = run("propose", "p", "--tag", TAG, "--allow-missing", "--output", str(tmp_path / "out"),
             "--branch", "propose/p-2", repo=work)
    assert rc == 0 and git(work, "rev-parse", "propose/p") == tip
    assert git(work, "rev-parse", "propose/p-2^") == git(work, "rev-parse", "HEAD")


def test_modified_target_rides_along_and_push_is_explicit(work: Path, upstream: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    target = work / "kickstarts/targets/openstack.yaml"
    target.write_text(target.read_text().replace("  - rsync\n", "  - rsync\n  - jq\n"))
    assert "jq" in target.read_text()
    rc = run("propose", "p", "--tag", TAG, "--allow-missing", "--output", str(tmp_path / "out"),
             "--push", "origin", repo=work)
    assert rc == 0, capsys.readouterr().err
    message = git(work, "log", "-1", "--format=%B", "propose/p")
    assert "kickstarts/targets/openstack.yaml (modified)" in message and "package added: jq" in message
    assert git(upstream, "rev-parse", "propose/p") == git(work, "rev-parse", "propose/p")
    assert git(work, "status", "--porcelain").strip() == "M kickstarts/targets/openstack.yaml"


def test_dry_run_writes_nothing(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(work)
    objects = sorted(p.name for p in (work / ".git/objects").iterdir())
    rc = run("propose", "p", "--tag", TAG, "--allow-missing", "--dry-run", "--json", repo=work)
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["dry_run"] and data["kickstart"] == f"proposals/p/{KS_NAME}"
    assert snapshot(work) == before and not git(work, "branch", "--list", "propose/*").strip()
    assert sorted(p.name for p in (work / ".git/objects").iterdir()) == objects


# -- a build over libvirt's remote protocol, proposed with its evidence -----------------------------------------

@pytest.fixture
def remote_uri() -> Iterator[str]:
    """qemu+tcp://127.0.0.1:PORT/system: libvirt's remote protocol over TCP on 127.0.0.1.

    The local libvirtd is left as it is (no listen_tcp, no restart): a forwarder thread carries the TCP
    connection to its root-only unix socket, where the daemon speaks the same RPC protocol.
    """
    pytest.importorskip("libvirt")
    if os.geteuid() != 0:
        pytest.skip("libvirt build tests run as root against qemu:///system")
    from tests.fixtures_libvirt import SOCKET, start_daemons

    start_daemons()
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(1 << 16):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return  # the listening socket was shut down
            daemon = socket.socket(socket.AF_UNIX)
            daemon.connect(str(SOCKET))
            threading.Thread(target=pump, args=(client, daemon), daemon=True).start()
            threading.Thread(target=pump, args=(daemon, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"qemu+tcp://127.0.0.1:{port}/system"
    finally:
        with contextlib.suppress(OSError):
            srv.shutdown(socket.SHUT_RDWR)
        srv.close()
        thread.join(timeout=10)


@pytest.mark.libvirt
@pytest.mark.slow
def test_build_over_the_remote_protocol_then_propose_it(remote_uri: str, work: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from tests.fixtures_libvirt import leftovers

    before = set(leftovers())
    (work / "profiles/remote.yaml").write_text("name: remote\nrelease: centos-stream-9\ntarget: openstack\n"
                                               "variables:\n  disk_size: 2\n")
    out = tmp_path / "artifacts"
    rc = run("build", "remote", "--tree", "rehearsal", "--uri", remote_uri, "--accel", "tcg", "--disk-size", "96M",
             "--memory", "512", "--format", "qcow2", "--output", str(out), "--quiet", repo=work)
    printed = capsys.readouterr()
    assert rc == 0, printed.err[-3000:]
    assert f"== connect: {remote_uri}" in printed.err + printed.out
    (art,) = list(out.iterdir())
    manifest = json.loads((art / "manifest.json").read_text())
    assert manifest["uri"] == remote_uri
    mine = [n for n in set(leftovers()) - before if "remote" in n]  # other sessions may build at the same time
    assert not mine, f"the remote build left behind: {mine}"

    # rehearsal evidence is refused, and nothing is written, unless allowed explicitly
    rc = run("propose", "remote", "--tag", TAG, "--artifacts", str(art), "--allow-missing",
             "--output", str(tmp_path / "out"), repo=work)
    printed = capsys.readouterr()
    assert rc == 2 and "Rehearsal evidence" in printed.err and "--allow-rehearsal" in printed.err
    assert not (tmp_path / "out").exists()
    rc = run("propose", "remote", "--tag", TAG, "--artifacts", str(art), "--allow-missing", "--allow-rehearsal",
             "--output", str(tmp_path / "out"), repo=work)
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    pr = (tmp_path / "out/PULL_REQUEST.md").read_text()
    assert "REHEARSAL, not a CentOS build" in pr.splitlines()[0]
    for title in ("Build manifest", "Artifact checksums (CHECKSUM)"):
        row = next(line for line in pr.splitlines() if line.startswith(f"| {title} |"))
        assert "| ok" in row and "REHEARSAL" in row, row
    assert manifest["kickstart_sha256"] == composed_sha(work, "remote")
    assert "proposals/remote/manifest.json" in git(work, "ls-tree", "-r", "--name-only", "propose/remote")
