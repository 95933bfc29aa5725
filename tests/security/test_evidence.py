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

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
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
