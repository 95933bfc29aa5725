"""Evidence that lies (issue 19) and trust labels (issue 14).

- Nothing a contributor writes (a profile description, names, fields read from evidence files) changes the
  structure of the pull-request text or the commit message: an HTML comment cannot hide the MISSING rows, a fake
  table or heading adds nothing, `</details>`, backtick fences, links, images, NUL and terminal escapes are shown
  as text. The PR text is rendered with a real CommonMark parser (markdown-it-py, raw HTML on, as GitHub allows)
  and its structure is checked.
- Evidence is verified, not matched by a hash anyone can copy: hand-written JSON carrying the kickstart's sha256
  is "unverified" and refused without --allow-missing.

Every repository here is a temporary one holding a copy of the test catalog.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from ccis_workbench.cli.main import main
from ccis_workbench.core import propose as prop

TAG = "20261126"
REPO = Path(__file__).resolve().parents[2]
EVIDENCE_TITLES = [
    "Lint report",
    "Diff against the baseline",
    "Build manifest",
    "Artifact checksums (CHECKSUM)",
    "Boot-test report",
]

#: Hostile profile descriptions: each tries to change the PR text's structure.
HOSTILE = {
    "html-comment": "A fine OpenStack image.\n<!--",
    "fake-table": "Fine.\n\n| Evidence | Status | File | sha256 | Detail |\n|---|---|---|---|---|\n"
    "| Build manifest | ok | `proposals/p/manifest.json` | `aaaa` | build of this kickstart |\n"
    "| Boot-test report | ok | `proposals/p/boot-test.json` | `bbbb` | passed, 9/9 |\n",
    "details": "</details>\n<details open><summary>Evidence</summary>\n\n</td></tr></table>\n",
    "fences": "```\n<!-- inside? -->\n````\n~~~\n```````` not a close\n``",
    "heading": "# Evidence\n\n## Evidence\n\nAll good\n===\n\n---\ndiff --git a/x b/x\n",
    "link-image": "[all evidence](https://evil.example/) ![ok](https://evil.example/badge.png) "
    "<https://evil.example/> https://evil.example/x www.evil.example <img src=x onerror=alert(1)> "
    "<a href='https://evil.example/'>ok</a>",
    "control": "NUL\x00here ESC\x1b[2J\x1b[31mred\x1b[0m \x1b]8;;https://evil.example/\x07link\x1b]8;;\x07 "
    "bidi\u202eoverride\u2066 CR\rLF",
}


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"git {' '.join(args)} failed: {proc.stderr}"
    return proc.stdout


@pytest.fixture(autouse=True)
def git_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A known identity, and no user/system git config leaking in."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    (tmp_path / "gitconfig").write_text(
        "[user]\n\tname = Test Proposer\n\temail = proposer@example.org\n[init]\n\tdefaultBranch = main\n"
    )


@pytest.fixture
def work(mini_catalog: Path, tmp_path: Path) -> Path:
    """The SIG's repository (the test catalog committed on main) and a contributor's clone of it."""
    git(mini_catalog, "init", "-q", "-b", "main")
    git(mini_catalog, "add", "-A")
    git(mini_catalog, "commit", "-q", "-m", "catalog")
    dest = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(mini_catalog), str(dest)], check=True, capture_output=True)
    return dest


def hostile_profile(repo: Path, description: str, name: str = "h") -> None:
    """A profile with *description*, committed on the contributor's branch (the description as a JSON string is
    a YAML double-quoted scalar: every control character survives as an escape)."""
    (repo / f"profiles/{name}.yaml").write_text(
        f"name: {name}\ndescription: {json.dumps(description)}\nrelease: centos-stream-9\ntarget: openstack\n"
    )
    git(repo, "add", f"profiles/{name}.yaml")
    git(repo, "commit", "-q", "-m", "a contributor's profile")


def render(markdown: str) -> str:
    """GitHub-like rendering: CommonMark with tables and raw HTML passed through."""
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


def tables(html: str) -> list[list[list[str]]]:
    """Every rendered table as rows of cell texts (tags stripped)."""
    out = []
    for table in re.findall(r"<table>(.*?)</table>", html, re.S):
        rows = []
        for row in re.findall(r"<tr>(.*?)</tr>", table, re.S):
            rows.append(
                [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            )
        out.append(rows)
    return out


def assert_structure(pr: str, description: str) -> None:
    """The PR text has exactly the structure the workbench gives it, whatever the description says."""
    html = render(pr)
    assert re.findall(r"<h1>", html) == ["<h1>"], "one heading of level 1: the workbench's"
    assert [h for h in re.findall(r"<h2>(.*?)</h2>", html)] == [
        "Against the centos-stream-9 baseline",
        "Evidence",
        "Build it in koji (CBS)",
        "Files",
    ]
    found = tables(html)
    assert len(found) == 2, "the facts table and the evidence table, nothing more"
    evidence = found[1]
    assert evidence[0] == ["Evidence", "Status", "File", "sha256", "Detail"]
    assert [r[0] for r in evidence[1:]] == EVIDENCE_TITLES
    assert [r[1] for r in evidence[3:]] == ["MISSING"] * 3, "the MISSING rows are there and say so"
    assert all(len(r) == 5 for r in evidence)
    assert "Not all evidence is there" in html
    for raw in ("<!--", "<details", "</details>", "<img", "<a ", "</td></tr></table>\n<", "\x1b", "\x00"):
        assert raw not in html, f"{raw!r} reached the rendered PR text"
    assert "\x1b" not in pr and "\x00" not in pr and "\u202e" not in pr
    # the description is shown, literally, in a code block
    block = re.search(
        r"Description, as the contributor wrote it:</p>\n<pre><code class=\"language-text\">(.*?)"
        r"</code></pre>",
        html,
        re.S,
    )
    assert block, html[:2000]
    shown = block.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&amp;", "&")
    assert shown.rstrip("\n") == prop.visible(description, keep_newlines=True).rstrip("\n")


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_user_text_cannot_change_the_pr_structure(case: str) -> None:
    """The PR text and the commit message of a proposal whose description (and names) are hostile."""
    description = HOSTILE[case]
    ev = prop.Evidence(kickstart_sha256="a" * 64, items=[])
    ev.items.append(prop.EvidenceItem("lint", "Lint report", prop.OK, "0 error(s)"))
    ev.items.append(prop.EvidenceItem("diff", "Diff against the baseline", prop.OK, "no semantic change"))
    prop.artifact_evidence(ev, None)
    proposal = prop.Proposal(
        profile="h",
        description=description,
        release="centos-stream-9",
        release_title="CentOS Stream 9",
        target="openstack",
        overlays=["x|y", "`z`"],
        arch="x86_64",
        tag=TAG,
        branch="propose/h",
        kickstart_name="k.ks",
        kickstart_text="text\n",
        evidence=ev,
        diff_summary=[description.splitlines()[0]],
        variables={},
        version="RHEL9",
        layer_files=["profiles/h.yaml", "a`b|c\\d.yaml"],
        changed=[prop.ChangedFile("profiles/<!--.yaml", "new")],
        koji_command=["koji", "image-build", "--config", "x.ini"],
    )
    assert_structure(proposal.pr_description(), description)
    message = proposal.commit_message()
    assert "\x1b" not in message and "\x00" not in message and "\r" not in message
    lines = message.splitlines()
    assert lines.count("Evidence:") == 1
    start = lines.index("Description (as the contributor wrote it):") + 1
    end = lines.index("", start)
    assert all(line.startswith("  >") for line in lines[start:end]), lines[start:end]
    assert not any(line.startswith(("---", "diff --git", "# ")) for line in lines)


@pytest.mark.parametrize("case", sorted(set(HOSTILE) - {"control"}))
def test_propose_with_a_hostile_description(
    work: Path, tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end: the PULL_REQUEST.md, the README.md committed with it and the commit message; `git am` of the
    patch on a fresh clone gives the same commit message (a `---` or `diff --git` line in the description would
    otherwise cut it)."""
    description = HOSTILE[case]
    hostile_profile(work, description)
    out = tmp_path / "out"
    rc = main(["--catalog", str(work), "propose", "h", "--tag", TAG, "--allow-missing", "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    pr = (out / "PULL_REQUEST.md").read_text(encoding="utf-8")
    assert_structure(pr, description)
    assert git(work, "show", "propose/h:proposals/h/README.md") == pr
    message = git(work, "log", "-1", "--format=%B", "propose/h")
    assert message.count("\nEvidence:\n") == 1
    fresh = tmp_path / "fresh"
    subprocess.run(["git", "clone", "-q", str(work), str(fresh)], check=True, capture_output=True)
    git(fresh, "am", *map(str, sorted(out.glob("*.patch"))))
    assert git(fresh, "log", "-1", "--format=%B") == message


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


def test_propose_cli_with_control_characters_in_the_description(work: Path, tmp_path: Path) -> None:
    """The real CLI in a subprocess, bounded in time and memory: NUL, ANSI and bidi characters in a description
    are either refused by the catalog (exit 2, the profile's file:line) or shown as escapes: never passed on to the
    terminal, the PR text or the commit. Nothing is written outside the output folder and the repository."""
    hostile_profile(work, HOSTILE["control"])
    out = tmp_path / "out"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if ".git" not in p.parts)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccis_workbench",
            "--catalog",
            str(work),
            "propose",
            "h",
            "--tag",
            TAG,
            "--allow-missing",
            "--output",
            str(out),
        ],
        capture_output=True,
        timeout=120,
        preexec_fn=_limits,
        cwd=tmp_path,
        env=dict(os.environ),
        check=False,
    )
    assert b"\x1b" not in proc.stdout + proc.stderr and b"\x00" not in proc.stdout + proc.stderr
    after = sorted(
        p.relative_to(tmp_path)
        for p in tmp_path.rglob("*")
        if ".git" not in p.parts and out not in p.parents and p != out
    )
    assert after == before, "nothing written outside the output folder"
    if proc.returncode == 2:  # the catalog refuses control characters: a message naming the profile file:line
        assert re.search(rb"profiles/h\.yaml:\d+:", proc.stderr), proc.stderr
        assert not out.exists()
        return
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    pr = (out / "PULL_REQUEST.md").read_text(encoding="utf-8")
    assert_structure(pr, HOSTILE["control"])
    assert "\\x1b[31mred" in pr and "\\x00" in pr
    message = git(work, "log", "-1", "--format=%B", "propose/h")
    assert "\x1b" not in message and "\x00" not in message and "\\x1b" in message


# -- evidence is verified, not matched by a hash anyone can copy ------------------------------------------------


def composed_sha(repo: Path, profile: str) -> str:
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer

    cat = Catalog.load(repo)
    return prop.sha256_text(Composer(cat).compose(cat.load_profile(profile)).text)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_folder(
    folder: Path,
    ks_sha: str,
    *,
    profile: str = "p",
    artifacts: list[str] | None = None,
    checksum_extra: str = "",
    manifest_in_checksum: bool = True,
) -> Path:
    """A folder laid out as a build writes it (an image, manifest.json naming the profile and listing the image,
    CHECKSUM covering both) and a boot-test report naming the image."""
    folder.mkdir(parents=True, exist_ok=True)
    image = folder / "disk.qcow2"
    image.write_bytes(b"QFI\xfb" + os.urandom(4096))
    names = ["disk.qcow2"] if artifacts is None else artifacts
    manifest = {
        "profile": profile,
        "kickstart_sha256": ks_sha,
        "artifacts": [{"file": n, "sha256": sha(folder / n)} for n in names if (folder / n).is_file()],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    lines = [f"SHA256 (disk.qcow2) = {sha(image)}"]
    if manifest_in_checksum:
        lines.append(f"SHA256 (manifest.json) = {sha(folder / 'manifest.json')}")
    (folder / "CHECKSUM").write_text("\n".join(lines) + "\n" + checksum_extra)
    (folder / "boot-test.json").write_text(
        json.dumps(
            {"image": "disk.qcow2", "passed": True, "ending": "completed", "checks": [{"id": "a", "status": "passed"}]}
        )
    )
    return folder


def evidence_for(
    folder: Path | None, ks_sha: str, *, boot_test: Path | None = None, keyring: str | None = None
) -> prop.Evidence:
    from ccis_workbench.flows.propose import signature_check

    ev = prop.Evidence(kickstart_sha256=ks_sha, items=[], profile="p")
    prop.artifact_evidence(ev, folder, boot_test, verify_signature=signature_check(keyring))
    return ev


def statuses(ev: prop.Evidence) -> list[str]:
    return [i.status for i in ev.items]


KS = "d" * 64


def test_a_consistent_build_folder_is_ok(tmp_path: Path) -> None:
    ev = evidence_for(build_folder(tmp_path / "b", KS), KS)
    assert statuses(ev) == ["ok", "ok", "ok"], [i.detail for i in ev.items]
    assert "unsigned" in ev.items[0].detail and "tested image disk.qcow2" in ev.items[2].detail
    assert set(ev.files) == {"manifest.json", "CHECKSUM", "boot-test.json"}


def test_hand_written_json_with_the_right_sha_is_unverified(tmp_path: Path) -> None:
    """Nothing built: a manifest and a boot-test report that only carry the kickstart's sha256."""
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"profile": "p", "kickstart_sha256": KS}))
    (folder / "boot-test.json").write_text(json.dumps({"kickstart_sha256": KS, "passed": True}))
    ev = evidence_for(folder, KS)
    assert statuses(ev) == ["unverified", "missing", "unverified"]
    assert ev.items[0].detail.startswith("unverified: no CHECKSUM")
    assert ev.files == {} and len(ev.unmet()) == 3
    # a boot-test report given alone, with no build to check it against
    ev = evidence_for(None, KS, boot_test=folder / "boot-test.json")
    assert statuses(ev) == ["missing", "missing", "unverified"]


def _tamper_image(f: Path) -> None:
    (f / "disk.qcow2").write_bytes(b"not the image that was checksummed")


def _outside_name(f: Path) -> None:
    secret = f.parent / "secret"
    secret.write_text("not part of the build\n")
    with (f / "CHECKSUM").open("a") as out:
        out.write(f"SHA256 (../secret) = {sha(secret)}\n")


def _symlink_out(f: Path) -> None:
    outside = f.parent / "elsewhere.qcow2"
    (f / "disk.qcow2").rename(outside)
    (f / "disk.qcow2").symlink_to(outside)


def _boot_test_other_image(f: Path) -> None:
    (f.parent / "other.qcow2").write_bytes(b"QFI\xfb")
    (f / "boot-test.json").write_text(json.dumps({"image": str(f.parent / "other.qcow2"), "passed": True}))


def _boot_test_no_image(f: Path) -> None:
    (f / "boot-test.json").write_text(json.dumps({"kickstart_sha256": KS, "passed": True}))


LIES = {
    "image changed after the checksum": (_tamper_image, [], "disk.qcow2: sha256"),
    "image missing": (lambda f: (f / "disk.qcow2").unlink(), [], "'disk.qcow2' is listed in CHECKSUM but is not"),
    "a CHECKSUM name outside the folder": (_outside_name, [], "'../secret' is listed in CHECKSUM but is not a file"),
    "an image symlinked from outside": (_symlink_out, [], "'disk.qcow2' is listed in CHECKSUM but is not a file"),
    "manifest not covered by CHECKSUM": (None, [{"manifest_in_checksum": False}], "manifest.json is not covered"),
    "manifest names another profile": (None, [{"profile": "other"}], "names profile 'other', not 'p'"),
    "manifest lists no artifacts": (None, [{"artifacts": []}], "lists no artifacts"),
    "a CHECKSUM.asc nobody can check": (
        lambda f: (f / "CHECKSUM.asc").write_text("not a signature\n"),
        [],
        "CHECKSUM.asc: BAD or unknown signature",
    ),
}


@pytest.mark.parametrize("case", sorted(LIES))
def test_evidence_that_does_not_cross_check_is_unverified(tmp_path: Path, case: str) -> None:
    tamper, kwargs, words = LIES[case]
    folder = build_folder(tmp_path / "b", KS, **(kwargs[0] if kwargs else {}))
    if tamper is not None:
        tamper(folder)
    ev = evidence_for(folder, KS)
    assert statuses(ev) == ["unverified", "unverified", "unverified"], [i.detail for i in ev.items]
    assert words in ev.items[0].detail, ev.items[0].detail
    assert ev.items[0].detail.startswith("unverified: ")
    assert ev.files == {}, "nothing that does not cross-check is copied into the proposal"


@pytest.mark.parametrize("tamper", [_boot_test_other_image, _boot_test_no_image])
def test_a_boot_test_report_must_name_a_verified_image(tmp_path: Path, tamper) -> None:
    folder = build_folder(tmp_path / "b", KS)
    tamper(folder)
    ev = evidence_for(folder, KS)
    assert statuses(ev) == ["ok", "ok", "unverified"], ev.items[2].detail
    assert "boot-test.json" not in ev.files


def gpg(home: Path, *args: str) -> str:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--yes", *args], capture_output=True, text=True, check=True
    ).stdout


def make_key(home: Path, uid: str) -> tuple[str, Path]:
    """A new signing key in *home*; (fingerprint, an exported public keyring for gpgv)."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg(home, "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never")
    fpr = next(
        line.split(":")[9]
        for line in gpg(home, "--with-colons", "--list-keys", uid).splitlines()
        if line.startswith("fpr:")
    )
    keyring = home / "pub.gpg"
    keyring.write_bytes(
        subprocess.run(["gpg", "--homedir", str(home), "--export", fpr], capture_output=True, check=True).stdout
    )
    return fpr, keyring


def test_a_signed_checksum_is_verified_with_gpgv(tmp_path: Path) -> None:
    """CHECKSUM.asc is checked by gpgv (the verify flow): good with the signer's keyring, unverified with another."""
    folder = build_folder(tmp_path / "b", KS)
    fpr, keyring = make_key(tmp_path / "signer", "CCIS Signer <signer@example.org>")
    _, other = make_key(tmp_path / "other", "Someone Else <else@example.org>")
    gpg(
        tmp_path / "signer",
        "--local-user",
        fpr,
        "--armor",
        "--detach-sign",
        "--output",
        str(folder / "CHECKSUM.asc"),
        str(folder / "CHECKSUM"),
    )
    ev = evidence_for(folder, KS, keyring=str(keyring))
    assert statuses(ev) == ["ok", "ok", "ok"], [i.detail for i in ev.items]
    assert "signature good" in ev.items[1].detail
    ev = evidence_for(folder, KS, keyring=str(other))
    assert statuses(ev) == ["unverified", "unverified", "unverified"]
    assert "CHECKSUM.asc: BAD or unknown signature" in ev.items[0].detail


def test_propose_refuses_hand_written_evidence(work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI: refused (exit 2, nothing written) without --allow-missing; with it, the PR text says UNVERIFIED
    and why, and no hand-written file is committed as evidence."""
    ks = composed_sha(work, "p")
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "manifest.json").write_text(
        json.dumps({"profile": "p", "kickstart_sha256": ks, "artifacts": [{"file": "disk.qcow2", "sha256": "0" * 64}]})
    )
    (folder / "boot-test.json").write_text(json.dumps({"kickstart_sha256": ks, "passed": True}))
    out = tmp_path / "out"
    rc = main(["--catalog", str(work), "propose", "p", "--tag", TAG, "--artifacts", str(folder), "--output", str(out)])
    printed = capsys.readouterr()
    assert rc == 2, printed.err
    assert "Build manifest unverified" in printed.err and "Boot-test report unverified" in printed.err
    assert "UNVERIFIED" in printed.out and "unverified: no CHECKSUM" in printed.out
    assert not out.exists() and not git(work, "branch", "--list", "propose/*").strip()

    rc = main(
        [
            "--catalog",
            str(work),
            "propose",
            "p",
            "--tag",
            TAG,
            "--artifacts",
            str(folder),
            "--output",
            str(out),
            "--allow-missing",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    evidence = tables(render((out / "PULL_REQUEST.md").read_text()))[1]
    rows = {r[0]: r for r in evidence[1:]}
    assert rows["Build manifest"][1] == "UNVERIFIED" and rows["Build manifest"][4].startswith("unverified: no CHECKSUM")
    assert rows["Boot-test report"][1] == "UNVERIFIED"
    tree = git(work, "ls-tree", "-r", "--name-only", "propose/p")
    assert "proposals/p/manifest.json" not in tree and "proposals/p/boot-test.json" not in tree


@pytest.mark.parametrize("kind", ["deep", "huge"])
def test_hostile_evidence_json_is_a_clear_error(work: Path, tmp_path: Path, kind: str) -> None:
    """Deeply nested or huge evidence JSON: exit 2 naming the file, bounded in time and memory, nothing written."""
    folder = tmp_path / "art"
    folder.mkdir()
    report = folder / "boot-test.json"
    if kind == "deep":
        report.write_text("[" * 200_000 + "]" * 200_000)
    else:
        with report.open("w") as f:
            f.write('{"passed": true, "pad": "')
            f.write("x" * (40 << 20))
            f.write('"}')
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccis_workbench",
            "--catalog",
            str(work),
            "propose",
            "p",
            "--tag",
            TAG,
            "--artifacts",
            str(folder),
            "--allow-missing",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limits,
        cwd=tmp_path,
        env=dict(os.environ),
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"{report}: Bad evidence file" in proc.stderr.splitlines()[0], proc.stderr
    assert not out.exists() and not git(work, "branch", "--list", "propose/*").strip()


# -- output paths that exist: a clear error, nothing overwritten ------------------------------------------------


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccis_workbench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limits,
        cwd=cwd,
        env=dict(os.environ),
        check=False,
    )


def _existing_file(tmp_path: Path) -> tuple[Path, Path]:
    f = tmp_path / "precious.txt"
    f.write_text("keep me\n")
    return f, f


def _symlink_to_file(tmp_path: Path) -> tuple[Path, Path]:
    f = tmp_path / "precious.txt"
    f.write_text("keep me\n")
    (tmp_path / "link").symlink_to(f)
    return tmp_path / "link", f


def _dangling_symlink(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    return tmp_path / "link", tmp_path / "link"


@pytest.mark.parametrize("make", [_existing_file, _symlink_to_file, _dangling_symlink])
def test_koji_output_that_is_a_file_is_refused(work: Path, tmp_path: Path, make) -> None:
    out, watched = make(tmp_path)
    before = watched.read_bytes() if watched.exists() else os.readlink(watched)
    proc = cli("--catalog", str(work), "koji", "p", "-o", str(out), "--tag", TAG, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines()[0] == f"error: {out}: Output is not a folder", proc.stderr
    assert (watched.read_bytes() if watched.exists() else os.readlink(watched)) == before
    assert not (tmp_path / "nowhere").exists()


def test_koji_never_overwrites_its_files(work: Path, tmp_path: Path) -> None:
    out = tmp_path / "koji"
    assert cli("--catalog", str(work), "koji", "p", "-o", str(out), "--tag", TAG, cwd=tmp_path).returncode == 0
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(files) == 2
    for p in out.iterdir():
        p.write_bytes(b"edited by hand\n")
    proc = cli("--catalog", str(work), "koji", "p", "-o", str(out), "--tag", TAG, cwd=tmp_path)
    assert proc.returncode == 2 and "Output exists" in proc.stderr and "would be overwritten" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == dict.fromkeys(files, b"edited by hand\n")
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary file left behind"


@pytest.mark.parametrize("make", [_existing_file, _symlink_to_file, _dangling_symlink])
def test_propose_output_that_is_a_file_is_refused(work: Path, tmp_path: Path, make) -> None:
    out, watched = make(tmp_path)
    before = watched.read_bytes() if watched.exists() else os.readlink(watched)
    proc = cli(
        "--catalog", str(work), "propose", "p", "--tag", TAG, "--allow-missing", "--output", str(out), cwd=tmp_path
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: {out}: Output is not a folder" in proc.stderr, proc.stderr
    assert (watched.read_bytes() if watched.exists() else os.readlink(watched)) == before
    assert not git(work, "branch", "--list", "propose/*").strip(), "no branch left behind"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")]


# -- trust labels: files from the contributor's branch (issue 14) -----------------------------------------------


@pytest.fixture
def contributor(mini_catalog: Path, tmp_path: Path) -> Path:
    """The SIG's repository (the test catalog plus the shipped docker target, committed on main) and a clone of it
    on a contributor's branch: a new overlay with a container check and a new profile, committed there, one
    overlay modified but not committed, one target file untracked."""
    for name in ("docker.yaml", "docker.ks.j2"):
        (mini_catalog / "kickstarts/targets" / name).write_bytes((REPO / "kickstarts/targets" / name).read_bytes())
    git(mini_catalog, "init", "-q", "-b", "main")
    git(mini_catalog, "add", "-A")
    git(mini_catalog, "commit", "-q", "-m", "catalog")
    dest = tmp_path / "contrib"
    subprocess.run(["git", "clone", "-q", str(mini_catalog), str(dest)], check=True, capture_output=True)
    git(dest, "checkout", "-q", "-b", "feature")
    (dest / "kickstarts/overlays/evil.yaml").write_text(
        "name: evil\ntitle: Evil\npackages: [tmux]\nchecks:\n"
        "  - id: evil.probe\n    description: looks harmless\n    command: echo from-the-branch > /probe; true\n"
        "    timeout: 20\n    runs_in: [vm, container]\n"
    )
    (dest / "profiles/box.yaml").write_text("name: box\nrelease: centos-stream-9\ntarget: docker\noverlays: [evil]\n")
    (dest / "profiles/q.yaml").write_text(
        "name: q\ndescription: OpenStack with evil\nrelease: centos-stream-9\ntarget: openstack\noverlays: [evil]\n"
    )
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "a contribution")
    return dest


def test_changed_catalog_files_against_the_base_branch(contributor: Path, tmp_path: Path) -> None:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.flows.trust import branch_changes, changed_catalog_files

    alpha = contributor / "kickstarts/overlays/alpha.yaml"
    alpha.write_text(alpha.read_text() + "# a local edit\n")
    (contributor / "kickstarts/targets/new.yaml").write_text("name: new\n")
    changed = changed_catalog_files(contributor)
    assert changed == {
        Path("kickstarts/overlays/evil.yaml"),
        Path("profiles/box.yaml"),
        Path("profiles/q.yaml"),
        Path("kickstarts/overlays/alpha.yaml"),
        Path("kickstarts/targets/new.yaml"),
    }
    changes = branch_changes(contributor)
    assert changes.base == "origin/HEAD" and changes.known
    assert changes.from_branch("profiles/q.yaml") and not changes.from_branch("kickstarts/targets/openstack.yaml")
    assert changes.from_branch("/etc/passwd") and changes.from_branch("../outside.yaml")
    # compared with the branch itself: no file comes from a branch (local edits are the user's own)
    assert changed_catalog_files(contributor, "feature") == set()
    with pytest.raises(WorkbenchError, match="does not name a commit"):
        changed_catalog_files(contributor, "--output=/tmp/x")
    # on the base branch itself, or outside git: nothing is labelled
    git(contributor, "checkout", "-q", "-f", "main")
    assert changed_catalog_files(contributor) == set()
    plain = tmp_path / "plain"
    plain.mkdir()
    assert changed_catalog_files(plain) == set() and not branch_changes(plain).known


def test_propose_marks_files_from_this_branch(
    contributor: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc = main(["--catalog", str(contributor), "propose", "q", "--tag", TAG, "--allow-missing", "--output", str(out)])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    assert "From this branch (3 catalog file(s) differ from origin/HEAD" in printed.out
    assert "  kickstarts/overlays/evil.yaml\n  profiles/q.yaml\n" in printed.out
    pr = (out / "PULL_REQUEST.md").read_text()
    made_from = next(line for line in pr.splitlines() if line.startswith("Made from: "))
    assert "`kickstarts/overlays/evil.yaml` (**from this branch**)" in made_from
    assert "`profiles/q.yaml` (**from this branch**)" in made_from
    assert "`kickstarts/targets/openstack.yaml`," in made_from or "`kickstarts/targets/openstack.yaml`." in made_from
    assert "are the contributor's, not the SIG's" in pr
    meta = json.loads(git(contributor, "show", f"propose/q:proposals/q/CentOS-Stream-9-x86_64-openstack-{TAG}.json"))
    assert meta["from_branch"] == ["kickstarts/overlays/evil.yaml", "profiles/q.yaml"]
    message = git(contributor, "log", "-1", "--format=%B", "propose/q")
    assert "From this branch (the contributor's, not the SIG's; 3 catalog file(s) differ from origin/HEAD" in message


def test_boot_test_prints_branch_checks_and_needs_trust_outside_a_vm(contributor: Path, tmp_path: Path) -> None:
    """A container image: the check command from the branch's overlay is printed before anything runs, and refused
    (exit 2, its file:line, nothing run, no report) without --trust-checks; with it, it runs in the container."""
    from tests.rootfs import busybox_rootfs_artifact

    tar = busybox_rootfs_artifact(tmp_path / "img")
    out = tmp_path / "report"
    args = (
        "--catalog",
        str(contributor),
        "boot-test",
        str(tar),
        "--profile",
        "box",
        "--container-runner",
        "chroot",
        "--workdir",
        str(tmp_path / "work"),
        "--quiet",
        "-o",
        str(out),
    )
    (tmp_path / "work").mkdir()
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "note: 1 check command(s) come from files changed on this branch" in proc.stderr
    assert "evil.probe  [kickstarts/overlays/evil.yaml:5, from this branch]" in proc.stderr
    assert "$ echo from-the-branch > /probe; true" in proc.stderr
    assert "error: kickstarts/overlays/evil.yaml:5: Untrusted check commands" in proc.stderr
    assert "--trust-checks" in proc.stderr
    assert not out.exists() and not Path("/probe").exists() and not list((tmp_path / "work").iterdir())
    # --plan runs nothing: it prints, and is not refused
    plan = cli(*args, "--plan", cwd=tmp_path)
    assert plan.returncode == 0 and "evil.probe  [kickstarts/overlays/evil.yaml:5" in plan.stderr

    proc = cli(*args, "--trust-checks", cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert {c["id"]: c["status"] for c in report["checks"]}["evil.probe"] == "passed"
    assert not Path("/probe").exists(), "the check ran in the container, not on the host"


# -- a real build's evidence (real libvirtd + qemu TCG, the rehearsal tree, a throwaway signing key) -------------

REAL = "evidreal"  # the profile name: every domain and volume of this build carries it


def _remove_mine(uri: str) -> None:
    """Remove the domains and ccis-workbench volumes of this test's build, whatever happened (only those: other
    sessions build at the same time)."""
    for name in subprocess.run(
        ["virsh", "-c", uri, "list", "--all", "--name"], capture_output=True, text=True, check=False
    ).stdout.split():
        if REAL in name:
            subprocess.run(["virsh", "-c", uri, "destroy", name], capture_output=True, check=False)
            subprocess.run(["virsh", "-c", uri, "undefine", name, "--nvram"], capture_output=True, check=False)
    for vol in subprocess.run(
        ["virsh", "-c", uri, "vol-list", "ccis-workbench"], capture_output=True, text=True, check=False
    ).stdout.split():
        if REAL in vol:
            subprocess.run(
                ["virsh", "-c", uri, "vol-delete", vol, "--pool", "ccis-workbench"], capture_output=True, check=False
            )


@pytest.mark.libvirt
@pytest.mark.slow
def test_a_real_signed_build_is_verified_and_a_tampered_copy_is_not(
    work: Path, tmp_path: Path, rehearsal_tree: Path, libvirt_uri: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ccis_workbench.core.report import BootTestResult, write_reports
    from tests.fixtures_libvirt import left_behind

    (work / f"profiles/{REAL}.yaml").write_text(f"name: {REAL}\nrelease: centos-stream-9\ntarget: openstack\n")
    git(work, "add", f"profiles/{REAL}.yaml")
    git(work, "commit", "-q", "-m", "a profile to build")
    fpr, keyring = make_key(tmp_path / "gnupg", "CCIS Evidence Signer <signer@example.org>")
    _, other = make_key(tmp_path / "other", "Someone Else <else@example.org>")
    env = dict(os.environ, GNUPGHOME=str(tmp_path / "gnupg"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ccis_workbench",
                "--catalog",
                str(work),
                "build",
                REAL,
                "--tree",
                str(rehearsal_tree),
                "--uri",
                libvirt_uri,
                "--accel",
                "tcg",
                "--disk-size",
                "96M",
                "--memory",
                "512",
                "--format",
                "qcow2",
                "--output",
                str(tmp_path / "builds"),
                "--sign-key",
                fpr,
                "--quiet",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        _remove_mine(libvirt_uri)
    assert not [n for n in left_behind(libvirt_uri, "ccis-") if REAL in n]
    (art,) = list((tmp_path / "builds").iterdir())
    assert (art / "CHECKSUM.asc").is_file()
    image = next(art.glob("*.qcow2"))
    # the report a boot test of this image writes beside it (core.report's own writer; nothing boots here)
    result = BootTestResult(
        run_id="r1",
        label=REAL,
        image=str(image),
        started="2026-12-05T10:00:00",
        uri=libvirt_uri,
        domain=f"ccis-boottest-{REAL}",
        domain_type="qemu",
        seed="nocloud",
        user="ccis-x",
        ending="completed",
        rehearsal=True,
    )
    write_reports(result, art / "boot-test-r1")

    def propose(folder: Path, keys: Path, out: str) -> tuple[int, str, str]:
        rc = main(
            [
                "--catalog",
                str(work),
                "propose",
                REAL,
                "--tag",
                TAG,
                "--artifacts",
                str(folder),
                "--keyring",
                str(keys),
                "--allow-rehearsal",
                "--output",
                str(tmp_path / out),
                "--branch",
                f"propose/{out}",
            ]
        )
        printed = capsys.readouterr()
        return rc, printed.out, printed.err

    rc, out, err = propose(art, keyring, "good")
    assert rc == 0, err
    rows = {r[0]: r for r in tables(render((tmp_path / "good/PULL_REQUEST.md").read_text()))[1][1:]}
    for title in ("Build manifest", "Artifact checksums (CHECKSUM)", "Boot-test report"):
        assert rows[title][1].startswith("ok"), rows[title]
    assert (
        "signature good" in rows["Build manifest"][4]
        and "every sha256 verified here" in rows["Artifact checksums (CHECKSUM)"][4]
    )
    assert f"tested image {image.name}" in rows["Boot-test report"][4]
    tree = git(work, "ls-tree", "-r", "--name-only", "propose/good")
    assert f"proposals/{REAL}/manifest.json" in tree and f"proposals/{REAL}/boot-test.json" in tree

    # signed by someone else's key: unverified, refused without --allow-missing, nothing written
    rc, out, err = propose(art, other, "otherkey")
    assert rc == 2 and "Build manifest unverified" in err and "BAD or unknown signature" in out
    assert not (tmp_path / "otherkey").exists()

    # a copy with one byte of the image flipped: unverified, refused
    copy = tmp_path / "tampered"
    shutil.copytree(art, copy, symlinks=True)
    (copy / "boot-test-r1/report.json").write_text(
        (copy / "boot-test-r1/report.json").read_text().replace(str(art), str(copy))
    )
    tampered = copy / image.name
    with tampered.open("r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    rc, out, err = propose(copy, keyring, "flipped")
    assert rc == 2 and "Artifact checksums (CHECKSUM) unverified" in err
    assert f"{image.name}: sha256" in out and not (tmp_path / "flipped").exists()


# -- property-based: the escaping holds for any text ------------------------------------------------------------

#: Text rich in what Markdown and HTML give a meaning to.
TOKENS = [
    *"`~*_[]()<>!#|\\-=+.:&;/\"' \n\tab1",
    "<!--",
    "-->",
    "</details>",
    "```",
    "http://",
    "www.",
    "\x1b",
    "\x00",
    "\r",
    "\u202e",
]
MARKUP = st.lists(st.sampled_from(TOKENS), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(MARKUP, MARKUP)
def test_escaped_text_is_one_literal_cell(a: str, b: str) -> None:
    """Two escaped values in a table row: always one row of exactly two cells, whose text is the value (control
    characters and newlines as escapes), with no HTML, link, image or emphasis made of it."""
    md = "| x | y |\n|---|---|\n" + f"| {prop.md_inline(a)} | {prop.md_code(b, in_table=True)} |\n"
    html = render(md)
    (table,) = tables(html)
    assert len(table) == 2 and len(table[1]) == 2, (md, html)
    for tag in ("<a ", "<img", "<em>", "<strong>", "<!--", "<details", "<h"):
        assert tag not in html.split("<tbody>", 1)[1], (md, html)
    unescape = {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&amp;": "&"}
    cell = table[1][0]
    for k, v in unescape.items():
        cell = cell.replace(k, v)
    assert cell == prop.visible(a).strip(), (md, html)


@settings(max_examples=300, deadline=None)
@given(MARKUP)
def test_a_fenced_block_holds_any_text(text: str) -> None:
    """md_block: one code block, then the document goes on; its content is the text as written (escapes shown)."""
    md = "\n".join(["before", "", *prop.md_block(text), "", "# after", ""])
    html = render(md)
    assert html.count("<pre>") == 1 and html.endswith("<h1>after</h1>\n"), (md, html)
    body = re.search(r"<pre><code class=\"language-text\">(.*?)</code></pre>", html, re.S)
    assert body, html
    shown = body.group(1)
    for k, v in {"&lt;": "<", "&gt;": ">", "&quot;": '"', "&amp;": "&"}.items():
        shown = shown.replace(k, v)
    assert shown.rstrip("\n") == prop.visible(text, keep_newlines=True).rstrip("\n")


def test_a_hostile_kickstart_sha256_field_is_shown_bounded_and_escaped(tmp_path: Path) -> None:
    folder = build_folder(tmp_path / "b", KS)
    (folder / "boot-test.json").write_text(
        json.dumps({"kickstart_sha256": "\x1b[2J| fake | row |\n" * 10000, "image": "disk.qcow2", "passed": True})
    )
    ev = evidence_for(folder, KS)
    boot = ev.items[2]
    assert boot.status == "stale" and len(boot.detail) < 200 and "\x1b" not in boot.detail
    assert "is not a sha256" in boot.detail and "boot-test.json" not in ev.files
