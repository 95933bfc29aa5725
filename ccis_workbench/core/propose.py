"""Propose a profile upstream: the evidence for its exact kickstart, SIG naming, commit message and PR text.

Pure: no git here (ccis_workbench/gitops.py does git). Evidence is tied to the kickstart by the sha256 of the
rendered text (`Composition.text`, UTF-8). Lint and the diff against the baseline are computed now, so they
always match; a build manifest (+ CHECKSUM) and a boot-test report come from an artifacts folder and match only
when their `kickstart_sha256` equals this kickstart's. Evidence that is missing or refers to another kickstart
(stale) is reported as such, never copied into the proposal as if it matched, and the caller decides.

Naming follows the SIG's published kickstarts: `CentOS-<release>-<arch>-<target>-<tag>.ks` where <release> is
spelled as in CentOS-Stream-9 / CentOS-7 (so CentOS-Stream-9-x86_64-openstack-20261126.ks).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench import __version__
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import sha256_file

#: Key every build manifest and boot-test report carries: sha256 of the kickstart text they were made from.
KICKSTART_SHA_KEY = "kickstart_sha256"
#: Where a profile's proposal lives in the repository.
PROPOSALS_DIR = "proposals"
MANIFEST_NAME = "manifest.json"
CHECKSUM_NAME = "CHECKSUM"
#: File names a boot-test report may have in an artifacts folder (first match wins; else any *.json with
#: kickstart_sha256 that looks like a test report).
BOOT_TEST_NAMES = ("boot-test.json", "boot-test-report.json", "boottest.json", "test-report.json", "report.json")

TAG_RX = re.compile(r"[0-9A-Za-z][0-9A-Za-z._]{0,63}")
_CHECKSUM_RX = re.compile(r"^SHA256 \((?P<file>[^)]+)\) = (?P<hex>[0-9a-fA-F]{64})$")

#: Evidence statuses. "missing", "stale" and "unverified" (present but it does not cross-check with the build's
#: own manifest, CHECKSUM and signature) need the user's explicit consent (--allow-missing).
OK, FAILING, STALE, MISSING, UNVERIFIED = "ok", "failing", "stale", "missing", "unverified"
#: Largest evidence JSON read (a manifest or a boot-test report is a few KiB; a bigger file is not one of ours).
MAX_EVIDENCE_JSON = 16 << 20
#: Checks a CHECKSUM.asc: (folder) -> (good?, what gpgv said). Injected by the flows (gpgv is a program).
SignatureCheck = Callable[[Path], tuple[bool, str]]
#: How the evidence, the pull-request text and the commit message name rehearsal evidence.
REHEARSAL_LABEL = "REHEARSAL, not a CentOS build"


# -- user text in the pull-request text and the commit message ------------------------------------------------
#
# Everything a contributor wrote (the description, names, titles, file names, fields read from evidence files)
# goes through these, so nothing they write can change the structure of the text around it: no HTML comment that
# hides the rows after it, no fake table or heading, no closing </details>, no link or image, no terminal escape.

#: Control characters (C0 but tab and newline, DEL, C1) and the Unicode line/paragraph separators and bidi
#: overrides that reorder what a reader sees: shown as escapes, never passed on.
_INVISIBLE_RX = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: ASCII punctuation with a meaning in (GitHub-flavoured) Markdown, backslash-escaped in inline text (`:` and `.`
#: too: they start GitHub's autolinks); `<`, `>` and `&` become entities (HTML).
_MD_PUNCT = frozenset("\\`*_{}[]()#+-.!|~:@$^=")
_BACKTICKS_RX = re.compile(r"`+")


def visible(text: Any, *, keep_newlines: bool = False) -> str:
    """*text* with every control character shown as an escape (`\\x1b`, `\\x00`...); newlines (and tabs) kept
    only when *keep_newlines*, else shown as `\\n`. CR+LF and lone CR count as newlines when kept."""
    s = str(text)
    if keep_newlines:
        s = s.replace("\r\n", "\n").replace("\r", "\n")
    else:
        s = s.replace("\n", "\\n").replace("\t", " ")

    def esc(m: re.Match[str]) -> str:
        c = ord(m.group(0))
        return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"

    return _INVISIBLE_RX.sub(esc, s)


def md_inline(text: Any) -> str:
    """User text as one line of literal Markdown text (also safe in a table cell): control characters and newlines
    shown as escapes, every Markdown metacharacter backslash-escaped, `<` `>` `&` as HTML entities."""
    out = []
    for c in visible(text):
        if c == "<":
            out.append("&lt;")
        elif c == ">":
            out.append("&gt;")
        elif c == "&":
            out.append("&amp;")
        elif c in _MD_PUNCT:
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


def md_code(text: Any, *, in_table: bool = False) -> str:
    """User text as a Markdown code span (literal: no HTML, no links, no emphasis), its backtick fence longer than
    any backtick run inside. In a table, text with `|` or a backslash is escaped text instead (GitHub splits cells
    before it reads code spans)."""
    s = visible(text)
    if in_table and ("|" in s or "\\" in s):
        return md_inline(text)  # GitHub ends a cell at a `|` after an escaped backslash, even in a code span
    fence = "`" * (max((len(m) for m in _BACKTICKS_RX.findall(s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or (s.startswith(" ") and s.endswith(" ") and s.strip()) \
        else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_block(text: Any) -> list[str]:
    """Multi-line user text as a fenced code block (lines of Markdown): the fence is longer than any backtick run
    in the text, so no line of it can close the block; control characters shown as escapes."""
    s = visible(text, keep_newlines=True).rstrip("\n")
    fence = "`" * max(3, max((len(m) for m in _BACKTICKS_RX.findall(s)), default=0) + 1)
    return [f"{fence}text", *s.split("\n"), fence]


def plain_line(text: Any) -> str:
    """User text as one line of a commit message: control characters and newlines shown as escapes."""
    return visible(text)


def quoted_lines(text: Any, prefix: str = "  > ") -> list[str]:
    """Multi-line user text for a commit message, every line behind *prefix*: it cannot pose as a section of the
    message, a `---` patch separator or a trailer; control characters shown as escapes."""
    s = visible(text, keep_newlines=True).replace("\t", " ").strip("\n")
    return [(prefix + line).rstrip() for line in s.split("\n")]


def sha256_text(text: str) -> str:
    """sha256 hex digest of *text* encoded as UTF-8 (how every kickstart sha256 in the workbench is taken)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_bytes(data: bytes) -> str:
    """sha256 hex digest of *data*."""
    return hashlib.sha256(data).hexdigest()


# -- naming ----------------------------------------------------------------------------------------------------

def release_spelling(release_name: str) -> str:
    """How the SIG spells a release in file names: centos-stream-9 -> 'Stream-9', centos-7 -> '7'."""
    m = re.fullmatch(r"centos-(stream-)?(\d+)", release_name)
    if not m:
        raise WorkbenchError("Unknown release", f"cannot name a kickstart for release {release_name!r}",
                             hint="release names look like centos-stream-9 or centos-7")
    return f"Stream-{m.group(2)}" if m.group(1) else m.group(2)


def release_major(release_name: str) -> int:
    """The major version of a release name: centos-stream-10 -> 10."""
    m = re.fullmatch(r"centos-(?:stream-)?(\d+)", release_name)
    if not m:
        raise WorkbenchError("Unknown release", f"no major version in release {release_name!r}")
    return int(m.group(1))


def default_tag(today: _dt.date | None = None) -> str:
    """The default tag: the date as YYYYMMDD (UTC today when not given)."""
    day = today or _dt.datetime.now(_dt.UTC).date()
    return day.strftime("%Y%m%d")


def check_tag(tag: str) -> str:
    """A tag goes into file names and koji's NVR: letters, digits, dots and underscores, no dash."""
    if not TAG_RX.fullmatch(tag):
        raise WorkbenchError("Bad tag", f"tag {tag!r} is not usable in a file name or a koji release",
                             hint="use letters, digits, '.' and '_' (no '-'), e.g. 20261126 or 20261126.1")
    return tag


def kickstart_name(release_name: str, arch: str, target: str, tag: str) -> str:
    """`CentOS-<release>-<arch>-<target>-<tag>.ks`, e.g. CentOS-Stream-9-x86_64-openstack-20261126.ks."""
    return f"CentOS-{release_spelling(release_name)}-{arch}-{target}-{check_tag(tag)}.ks"


def default_branch(profile_name: str) -> str:
    """The branch a proposal goes to unless --branch says otherwise: propose/<profile>."""
    return f"propose/{profile_name}"


# -- evidence --------------------------------------------------------------------------------------------------

@dataclass
class EvidenceItem:
    """One piece of evidence and whether it holds for this exact kickstart.

    status: ok | failing (real and matching, but it reports problems) | stale (made from another kickstart)
    | missing. *file* is its name inside proposals/<profile>/ when it is part of the proposal (never for
    stale or missing evidence); *sha256* is that file's sha256.
    """

    kind: str  # lint | diff | manifest | checksum | boot-test
    title: str
    status: str
    detail: str
    file: str | None = None
    sha256: str | None = None
    source: str | None = None  # where it was read from
    kickstart_sha256: str | None = None  # the kickstart it refers to (None when not applicable)
    #: made on the workbench's rehearsal system (a manifest's or report's typed `rehearsal` field), not CentOS
    rehearsal: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"kind": self.kind, "title": self.title, "status": self.status, "detail": self.detail,
                "file": self.file, "sha256": self.sha256, "source": self.source,
                "kickstart_sha256": self.kickstart_sha256, "rehearsal": self.rehearsal}

    @property
    def shown_status(self) -> str:
        """The status as the commit message and the PR text show it: rehearsal evidence always says so."""
        return f"{self.status} ({REHEARSAL_LABEL})" if self.rehearsal else self.status


@dataclass
class Evidence:
    """Every evidence item plus the files that go into proposals/<profile>/ (name -> bytes)."""

    kickstart_sha256: str
    items: list[EvidenceItem]
    files: dict[str, bytes] = field(default_factory=dict)
    diff_summary: list[str] = field(default_factory=list)  # the semantic summary against the baseline
    accepted: dict[str, str] = field(default_factory=dict)  # sha256 -> form of this kickstart it names
    #: the profile a build's manifest must name (None: not checked)
    profile: str | None = None

    def __post_init__(self) -> None:
        self.accepted.setdefault(self.kickstart_sha256, "this kickstart")

    def unmet(self) -> list[EvidenceItem]:
        """Missing, stale or unverified items: these need the user's explicit consent."""
        return [i for i in self.items if i.status in (STALE, MISSING, UNVERIFIED)]

    def rehearsal_items(self) -> list[EvidenceItem]:
        """Items that hold for this kickstart but were made on the rehearsal system, not on CentOS."""
        return [i for i in self.items if i.rehearsal and i.status in (OK, FAILING)]

    @property
    def rehearsal(self) -> bool:
        return bool(self.rehearsal_items())

    def add_file(self, item: EvidenceItem, name: str, data: bytes) -> None:
        """Put *data* into the proposal as *name* and record its sha256 on *item*."""
        self.files[name] = data
        item.file = name
        item.sha256 = sha256_bytes(data)


def _json_bytes(data: Any) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode("utf-8")


def lint_evidence(findings: list[Any], kickstart_sha: str, subject: str, backend: str) -> tuple[EvidenceItem, bytes]:
    """The lint report as evidence: ok when no unwaived error or warning remains, else failing."""
    counts = {s: sum(1 for f in findings if f.severity == s and not f.waived) for s in ("error", "warning", "info")}
    waived = sum(1 for f in findings if f.waived)
    status = FAILING if counts["error"] or counts["warning"] else OK
    detail = f"{counts['error']} error(s), {counts['warning']} warning(s), {counts['info']} note(s)" + \
        (f", {waived} waived" if waived else "") + f" (backend {backend})"
    report = {"subject": subject, KICKSTART_SHA_KEY: kickstart_sha, "backend": backend, "counts": counts,
              "waived": waived, "findings": [f.to_dict() for f in findings]}
    item = EvidenceItem("lint", "Lint report", status, detail, kickstart_sha256=kickstart_sha)
    return item, _json_bytes(report)


def diff_evidence(diff: Any, kickstart_sha: str, baseline_sha: str) -> tuple[EvidenceItem, bytes]:
    """The diff against the baseline as a JSON report: semantic summary, semantic details and the unified diff."""
    summary = diff.semantic.summary_lines()
    report = {KICKSTART_SHA_KEY: kickstart_sha, "baseline_sha256": baseline_sha, "a_label": diff.a_label,
              "b_label": diff.b_label, "summary": summary, "semantic": diff.semantic.to_dict(),
              "unified": diff.unified}
    n = len(summary)
    detail = f"{n} semantic change(s) against {diff.a_label}" if n else f"no semantic change against {diff.a_label}"
    item = EvidenceItem("diff", "Diff against the baseline", OK, detail, kickstart_sha256=kickstart_sha)
    return item, _json_bytes(report)


def _read_json(path: Path) -> tuple[Any, bytes]:
    try:
        if not path.is_file():
            raise WorkbenchError("Bad evidence file", "not a regular file", file=str(path))
        if path.stat().st_size > MAX_EVIDENCE_JSON:
            raise WorkbenchError("Bad evidence file", f"larger than {MAX_EVIDENCE_JSON >> 20} MiB: not evidence a "
                                 "build or a boot test wrote", file=str(path))
        data = path.read_bytes()
    except OSError as exc:
        raise WorkbenchError("Bad evidence file", f"cannot be read: {exc.strerror or exc}", file=str(path)) from None
    try:
        return json.loads(data.decode("utf-8")), data
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        line = getattr(exc, "lineno", 0)
        raise WorkbenchError("Bad evidence file", f"not valid JSON: {exc}", file=str(path), line=line,
                             hint="evidence files are written by `ccis-workbench build` and `test`") from None
    except RecursionError:
        raise WorkbenchError("Bad evidence file", "JSON nested too deeply", file=str(path),
                             hint="evidence files are written by `ccis-workbench build` and `test`") from None


def parse_checksum(text: str, filename: str = CHECKSUM_NAME) -> dict[str, str]:
    """Parse a CentOS-style CHECKSUM file (`SHA256 (file) = hex` lines; '#' comments and blanks ignored)."""
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _CHECKSUM_RX.match(s)
        if not m:
            raise WorkbenchError("Bad CHECKSUM file", f"line is not `SHA256 (file) = hex`: {s[:80]!r}",
                                 file=filename, line=n)
        out[m.group("file")] = m.group("hex").lower()
    return out


def _find_boot_test(artifacts: Path) -> Path | None:
    """A boot-test report in an artifacts folder: a known name, else the newest boot-test-*/report.json that
    `ccis-workbench test` writes beside a build, else a *.json whose name says test."""
    for name in BOOT_TEST_NAMES:
        if (artifacts / name).is_file():
            return artifacts / name
    runs = sorted((p for p in artifacts.glob("boot-test*/report.json") if p.is_file()),
                  key=lambda p: (p.stat().st_mtime, str(p)))
    if runs:
        return runs[-1]
    for path in sorted(artifacts.glob("*.json")):
        if path.name != MANIFEST_NAME and "test" in path.name.lower():
            return path
    return None


def _boot_test_summary(report: Any) -> tuple[bool | None, str]:
    """(passed?, one line) from a boot-test report, reading the common field spellings; None when unknown."""
    if not isinstance(report, dict):
        return None, "unreadable report"
    for key in ("passed", "ok", "success"):
        if isinstance(report.get(key), bool):
            verdict: bool | None = report[key]
            break
    else:
        status = str(report.get("status") or report.get("result") or report.get("verdict") or "").lower()
        verdict = True if status in ("passed", "pass", "ok", "success") else \
            False if status in ("failed", "fail", "error", "failure") else None
    checks = report.get("checks") or report.get("results")
    counted = ""
    if isinstance(checks, list) and checks:
        def passed(c: Any) -> bool:
            if not isinstance(c, dict):
                return False
            if isinstance(c.get("passed"), bool):
                return bool(c["passed"])
            return str(c.get("status") or c.get("result") or "").lower() in ("passed", "pass", "ok", "success")
        good = sum(1 for c in checks if passed(c))
        counted = f"{good}/{len(checks)} check(s) passed"
        if verdict is None:
            verdict = good == len(checks)
    word = {True: "passed", False: "FAILED", None: "verdict unknown"}[verdict]
    return verdict, f"{word}" + (f", {counted}" if counted else "")


def _matches(ev: Evidence, got: Any) -> str | None:
    """Which of this kickstart's forms *got* (a sha256 from a file) names, or None."""
    return ev.accepted.get(got) if isinstance(got, str) else None


def _stale_detail(got: Any) -> str:
    if not got:
        return f"has no {KICKSTART_SHA_KEY} field"
    if not (isinstance(got, str) and re.fullmatch(r"[0-9a-f]{64}", got)):  # a value from a file: shown, bounded
        text = repr(got)
        return f"its {KICKSTART_SHA_KEY} is not a sha256: {text[:80] + '…' if len(text) > 80 else text}"
    return f"made from kickstart sha256 {got}, not this one"


def refuse_rehearsal(ev: Evidence, allow_rehearsal: bool = False) -> None:
    """Rehearsal evidence (a busybox image's build or boot test) is refused unless *allow_rehearsal*: a
    WorkbenchError (exit status 2) naming each item; nothing is written before this is called."""
    items = ev.rehearsal_items()
    if items and not allow_rehearsal:
        raise WorkbenchError("Rehearsal evidence", "the build or boot-test evidence comes from the workbench's "
                             "rehearsal system, not from a CentOS build: " +
                             "; ".join(f"{i.title} ({i.source or i.file})" for i in items),
                             hint="build and boot-test on a CentOS install tree, or pass --allow-rehearsal: the "
                                  f"proposal then says \"{REHEARSAL_LABEL}\" in its evidence, its pull-request "
                                  "text and its commit message")


def _plain_file(folder: Path, name: str) -> Path | None:
    """*folder*/*name* when *name* is a plain file name and that is a regular file of the folder (a symlink may
    name another file of the same folder, nothing else); else None."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return None
    path = folder / name
    try:
        if not path.is_file() or (path.is_symlink() and path.resolve().parent != folder.resolve()):
            return None
    except OSError:
        return None
    return path


@dataclass
class _BuildCheck:
    """What cross-checking a build folder found: the files verified (name -> sha256) and the problems."""

    verified: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    signature: str = "unsigned (no CHECKSUM.asc)"
    images: list[str] = field(default_factory=list)  # the manifest's artifacts, verified


def _check_build(folder: Path, manifest: dict[str, Any], manifest_data: bytes, sums: dict[str, str] | None,
                 profile: str | None, verify_signature: SignatureCheck | None) -> _BuildCheck:
    """Cross-check a build's manifest against its CHECKSUM and files: every file CHECKSUM lists is here with that
    sha256, manifest.json itself is listed, the manifest names *profile* and lists artifacts that CHECKSUM covers
    with the same sha256, and a CHECKSUM.asc is a good signature (*verify_signature*, gpgv through the flows)."""
    out = _BuildCheck()
    if sums is None:
        out.problems.append(f"no {CHECKSUM_NAME}: nothing ties the manifest to any file")
        return out
    for name, want in sums.items():
        path = _plain_file(folder, name)
        if path is None:
            out.problems.append(f"{name!r} is listed in {CHECKSUM_NAME} but is not a file of the folder")
            continue
        got = sha256_file(path)
        if got != want:
            out.problems.append(f"{name}: sha256 {got[:16]}… but {CHECKSUM_NAME} says {want[:16]}…")
            continue
        out.verified[name] = got
    if sums.get(MANIFEST_NAME) != sha256_bytes(manifest_data):
        out.problems.append(f"{MANIFEST_NAME} is not covered by {CHECKSUM_NAME} (a build lists it there)")
    named = manifest.get("profile")
    if profile is not None and named != profile:
        out.problems.append(f"the manifest names profile {named!r}, not {profile!r}")
    arts = manifest.get("artifacts")
    if not isinstance(arts, list) or not arts:
        out.problems.append("the manifest lists no artifacts")
        arts = []
    for art in arts:
        art_name = art.get("file") if isinstance(art, dict) else None
        art_sha = art.get("sha256") if isinstance(art, dict) else None
        if not isinstance(art_name, str) or not isinstance(art_sha, str):
            out.problems.append("a manifest artifact has no file name and sha256")
        elif art_name not in out.verified:
            out.problems.append(f"artifact {art_name!r} is not a verified file of {CHECKSUM_NAME}")
        elif out.verified[art_name] != art_sha.lower():
            out.problems.append(f"artifact {art_name}: the manifest's sha256 differs from the file's")
        else:
            out.images.append(art_name)
    if (folder / "CHECKSUM.asc").exists():
        if verify_signature is None:
            out.problems.append("CHECKSUM.asc is there but its signature was not checked")
        else:
            good, said = verify_signature(folder)
            if good:
                out.signature = f"signature good: {said}"
            else:
                out.problems.append(f"CHECKSUM.asc: {said}")
    return out


def artifact_evidence(ev: Evidence, artifacts: Path | None, boot_test: Path | None = None, *,
                      verify_signature: SignatureCheck | None = None) -> None:
    """Add the build manifest, CHECKSUM and boot-test report from *artifacts* (and/or *boot_test*) to *ev*.

    Evidence is verified, not matched by a hash anyone can copy. The manifest is ok (and copied into the proposal
    with CHECKSUM) only when its kickstart_sha256 is one of `ev.accepted` AND it cross-checks with the build's own
    files (`_check_build`: CHECKSUM covers the manifest and every artifact the manifest lists, each file's sha256
    matches, the manifest names the profile, a CHECKSUM.asc verifies). A boot-test report is ok only when it names
    an image of that verified build (a file of the folder whose checksum matches) and, when it carries a
    kickstart_sha256, that is this kickstart's. Evidence of another kickstart is stale; evidence that does not
    cross-check is "unverified: <why>"; both are never copied and need --allow-missing.
    """
    where = "no artifacts folder given (--artifacts DIR)"
    manifest_item = EvidenceItem("manifest", "Build manifest", MISSING, where)
    checksum_item = EvidenceItem("checksum", "Artifact checksums (CHECKSUM)", MISSING, where)
    boot_item = EvidenceItem("boot-test", "Boot-test report", MISSING,
                             "no boot-test report (--artifacts DIR or --boot-test FILE)")
    build: _BuildCheck | None = None  # set when the manifest matches this kickstart and cross-checks
    if artifacts is not None:
        if not artifacts.is_dir():
            raise WorkbenchError("Artifacts not found", "not a folder", file=str(artifacts),
                                 hint="give the folder a build wrote (it holds manifest.json and CHECKSUM)")
        checksum_path = artifacts / CHECKSUM_NAME
        sums: dict[str, str] | None = None
        text = ""
        if checksum_path.exists():
            if not checksum_path.is_file() or checksum_path.stat().st_size > MAX_EVIDENCE_JSON:
                raise WorkbenchError("Bad CHECKSUM file", "not a regular file of a sane size", file=str(checksum_path))
            text = checksum_path.read_text(encoding="utf-8", errors="replace")
            sums = parse_checksum(text, str(checksum_path))
            checksum_item.source = str(checksum_path)
        else:
            checksum_item.detail = f"no {CHECKSUM_NAME} in {artifacts}"
        manifest_path = artifacts / MANIFEST_NAME
        if manifest_path.exists():
            manifest, data = _read_json(manifest_path)
            if not isinstance(manifest, dict):
                raise WorkbenchError("Bad manifest", "manifest.json must hold a JSON object", file=str(manifest_path))
            got = manifest.get(KICKSTART_SHA_KEY)
            manifest_item.source = str(manifest_path)
            manifest_item.kickstart_sha256 = got if isinstance(got, str) else None
            manifest_item.rehearsal = manifest.get("rehearsal") is True
            checksum_item.kickstart_sha256 = manifest_item.kickstart_sha256
            checksum_item.rehearsal = manifest_item.rehearsal
            form = _matches(ev, got)
            if not form:
                manifest_item.status = STALE
                manifest_item.detail = _stale_detail(got)
                if sums is not None:
                    checksum_item.status = STALE
                    checksum_item.detail = "belongs to a build whose manifest does not match this kickstart"
            else:
                check = _check_build(artifacts, manifest, data, sums, ev.profile, verify_signature)
                if check.problems:
                    why = "unverified: " + "; ".join(check.problems)
                    manifest_item.status = UNVERIFIED
                    manifest_item.detail = why
                    if sums is not None:
                        checksum_item.status = UNVERIFIED
                        checksum_item.detail = why
                else:
                    build = check
                    manifest_item.status = OK
                    manifest_item.detail = f"build of {form}, {len(check.images)} artifact(s), verified against " \
                        f"{CHECKSUM_NAME}; {check.signature}"
                    ev.add_file(manifest_item, MANIFEST_NAME, data)
                    checksum_item.status = OK
                    checksum_item.detail = f"{len(check.verified)} file(s), every sha256 verified here; " \
                        f"{check.signature}"
                    ev.add_file(checksum_item, CHECKSUM_NAME, text.encode("utf-8"))
        else:
            manifest_item.detail = f"no {MANIFEST_NAME} in {artifacts}"
            if sums is not None:
                checksum_item.status = UNVERIFIED
                checksum_item.detail = f"unverified: no {MANIFEST_NAME} ties these checksums to this kickstart"
        if boot_test is None:
            boot_test = _find_boot_test(artifacts)
            if boot_test is None:
                boot_item.detail = f"no boot-test report in {artifacts}"
    if boot_test is not None:
        if not boot_test.exists():
            raise WorkbenchError("Boot-test report not found", "no such file", file=str(boot_test))
        report, data = _read_json(boot_test)
        got = report.get(KICKSTART_SHA_KEY) if isinstance(report, dict) else None
        boot_item.source = str(boot_test)
        boot_item.kickstart_sha256 = got if isinstance(got, str) else None
        # a report that says so, or a boot test of the image of a matching rehearsal build
        boot_item.rehearsal = (isinstance(report, dict) and report.get("rehearsal") is True) or \
            (manifest_item.rehearsal and manifest_item.status == OK)
        if got is not None and not _matches(ev, got):
            boot_item.status = STALE
            boot_item.detail = _stale_detail(got)
        else:
            image_field = report.get("image") if isinstance(report, dict) else None
            why = ""
            image_name = ""
            if build is None:
                why = "no verified build of this kickstart to check it against (--artifacts DIR)"
            elif not isinstance(image_field, str) or not image_field:
                why = "the report names no image"
            else:
                image = Path(image_field)
                image = image if image.is_absolute() else boot_test.parent / image
                image_name = image.name
                try:
                    inside = image.resolve().parent == artifacts.resolve() if artifacts is not None else False
                except (OSError, RuntimeError):
                    inside = False
                if not inside or image_name not in build.images:
                    why = f"its image {image_field!r} is not a verified artifact of this build"
            if why:
                boot_item.status = UNVERIFIED
                boot_item.detail = f"unverified: {why}"
            else:
                verdict, line = _boot_test_summary(report)
                boot_item.status = FAILING if verdict is False else OK
                boot_item.detail = f"{line}; tested image {image_name} (sha256 verified against {CHECKSUM_NAME})"
                ev.add_file(boot_item, "boot-test.json", data)
    for item in (manifest_item, checksum_item, boot_item):
        if item.rehearsal and item.status in (OK, FAILING):
            item.detail = f"{REHEARSAL_LABEL}: {item.detail}"
    ev.items.extend([manifest_item, checksum_item, boot_item])


def accepted_kickstarts(comp: Any) -> dict[str, str]:
    """sha256 -> description of every form of this kickstart a build may have recorded: the composed text, and
    for a rootfs-tar target the build's text with the export %post the plan appends (core/plan.py)."""
    from ccis_workbench.core.plan import build_kickstart

    text = comp.text
    out = {sha256_text(text): "this kickstart"}
    target = getattr(comp, "target", None)
    built = build_kickstart(text, list(target.formats or []) if target is not None else [])
    out.setdefault(sha256_text(built), "this kickstart (+ the rootfs-tar export %post the build appends)")
    return out


def check_publishable(comp: Any) -> None:
    """Refuse a composition with an overlay marked `publishable: false` (debug-install): its image must never be
    proposed upstream."""
    for o in comp.overlays:
        if not getattr(o, "publishable", True):
            raise WorkbenchError("Not for publication", f"overlay {o.name} ({o.title}) makes images that must "
                                 "never be published, so this profile cannot be proposed", file=o.source,
                                 line=getattr(o, "publishable_line", 0),
                                 hint=f"remove {o.name} from the profile's overlays before proposing it")


def gather_evidence(comp: Any, baseline: Any, *, artifacts: Path | None = None, boot_test: Path | None = None,
                    backend: str = "libvirt", verify_signature: SignatureCheck | None = None) -> Evidence:
    """All evidence for *comp*'s exact kickstart: lint, diff against *baseline*, build and boot-test results."""
    check_publishable(comp)
    from ccis_workbench.core.diff import diff_compositions
    from ccis_workbench.core.lint import lint_composition

    ks = sha256_text(comp.text)
    ev = Evidence(kickstart_sha256=ks, items=[], accepted=accepted_kickstarts(comp), profile=comp.profile.name)
    item, data = lint_evidence(lint_composition(comp, backend=backend), ks, f"profile {comp.profile.name}", backend)
    ev.items.append(item)
    ev.add_file(item, "lint.json", data)
    diff = diff_compositions(baseline, comp)
    item, data = diff_evidence(diff, ks, sha256_text(baseline.text))
    ev.items.append(item)
    ev.add_file(item, "diff-baseline.json", data)
    ev.diff_summary = diff.semantic.summary_lines()
    artifact_evidence(ev, artifacts, boot_test, verify_signature=verify_signature)
    return ev


# -- the proposal ----------------------------------------------------------------------------------------------

@dataclass
class ChangedFile:
    """A repository file the proposal commits, and how it differs from the base: new | modified | unchanged."""

    path: str
    state: str
    #: the file differs from the base branch: a reviewer reads it as the contributor's, not the SIG's
    from_branch: bool = False


@dataclass
class Proposal:
    """Everything that goes into the commit, the commit message and the pull-request text."""

    profile: str
    description: str
    release: str
    release_title: str
    target: str
    overlays: list[str]
    arch: str
    tag: str
    branch: str
    kickstart_name: str
    kickstart_text: str
    evidence: Evidence
    diff_summary: list[str]
    variables: dict[str, Any]
    version: str  # pykickstart handler, e.g. RHEL9
    layer_files: list[str]  # repository paths of the catalog files the kickstart was made from
    changed: list[ChangedFile] = field(default_factory=list)  # catalog files this proposal commits
    #: repository paths of the layer files that differ from the base branch (trust labels: the contributor's)
    from_branch: list[str] = field(default_factory=list)
    #: what they were compared with ("3 catalog file(s) differ from origin/main (since abc)"), or why nothing was
    trust_note: str = ""
    extra_files: dict[str, bytes] = field(default_factory=dict)  # more files for the folder (koji config...)
    koji_command: list[str] | None = None  # how to build it in koji, run from the repository's top

    @property
    def folder(self) -> str:
        return f"{PROPOSALS_DIR}/{self.profile}"

    @property
    def kickstart_sha256(self) -> str:
        return self.evidence.kickstart_sha256

    @property
    def metadata_name(self) -> str:
        return self.kickstart_name[:-3] + ".json"

    def metadata(self) -> dict[str, Any]:
        """The .json beside the flattened kickstart."""
        return {"kickstart": self.kickstart_name, KICKSTART_SHA_KEY: self.kickstart_sha256,
                "profile": self.profile, "description": self.description, "release": self.release,
                "release_title": self.release_title, "pykickstart": self.version, "arch": self.arch,
                "target": self.target, "overlays": self.overlays, "variables": self.variables, "tag": self.tag,
                "layers": self.layer_files, "generated_by": f"ccis-workbench {__version__}",
                "rehearsal": self.evidence.rehearsal, "from_branch": self.from_branch_files(),
                "evidence": [{"kind": i.kind, "status": i.status, "file": i.file, "sha256": i.sha256,
                              "rehearsal": i.rehearsal} for i in self.evidence.items]}

    def from_branch_files(self) -> list[str]:
        """Every file of the proposal that comes from the branch: layer files that differ from the base branch and
        catalog files the commit adds or changes."""
        return sorted(set(self.from_branch) | {c.path for c in self.changed if c.from_branch})

    def is_from_branch(self, path: str) -> bool:
        return path in self.from_branch or any(c.path == path and c.from_branch for c in self.changed)

    def folder_files(self) -> dict[str, bytes]:
        """proposals/<profile>/NAME -> content: the kickstart, its metadata, the evidence and README.md."""
        files = {self.kickstart_name: self.kickstart_text.encode("utf-8"),
                 self.metadata_name: _json_bytes(self.metadata())}
        files.update(self.evidence.files)
        files.update(self.extra_files)
        files["README.md"] = self.pr_description().encode("utf-8")
        return {f"{self.folder}/{name}": data for name, data in files.items()}

    def subject(self) -> str:
        """The commit's subject line (at most 72 characters)."""
        overlays = f" + {', '.join(self.overlays)}" if self.overlays else ""
        text = plain_line(f"Propose {self.profile}: {self.release_title} {self.target}{overlays} ({self.arch})")
        return text if len(text) <= 72 else text[:71] + "…"

    def commit_message(self) -> str:
        """Subject line, then what the kickstart is, how it differs from the baseline, and its evidence.

        Every user-written value is one line with control characters shown as escapes; the description is quoted
        line by line, so it cannot pose as the evidence, a `---` patch separator or a trailer."""
        q = plain_line
        lines = [self.subject(), ""]
        if self.evidence.rehearsal:
            lines += [f"{REHEARSAL_LABEL}: the build/boot-test evidence below comes from the workbench's busybox",
                      "rehearsal system; it proves the workbench path, not this kickstart on CentOS.", ""]
        overlays = ", ".join(q(o) for o in self.overlays) or "none"
        lines.append(f"Profile {q(self.profile)}: release {q(self.release)}, target {q(self.target)}, "
                     f"overlays: {overlays}, arch {q(self.arch)}.")
        if self.description.strip():
            lines += ["Description (as the contributor wrote it):", *quoted_lines(self.description)]
        lines += ["", f"Flattened kickstart: {q(self.folder)}/{q(self.kickstart_name)}",
                  f"  sha256 {self.kickstart_sha256}", ""]
        if self.diff_summary:
            lines.append(f"Against the {q(self.release)} baseline:")
            lines += [f"  {q(s)}" for s in self.diff_summary]
        else:
            lines.append(f"No semantic change against the {q(self.release)} baseline.")
        lines += ["", "Evidence:"]
        for i in self.evidence.items:
            where = f"{q(i.file)} sha256 {i.sha256}" if i.file else q(i.detail)
            lines.append(f"  {i.shown_status:8} {i.title}: {where}")
            if i.file and i.detail:
                lines.append(f"           {q(i.detail)}")
        catalog = [c for c in self.changed if c.state != "unchanged"]
        if catalog:
            lines += ["", "Catalog files:"]
            lines += [f"  {q(c.path)} ({c.state}){' - from this branch' if c.from_branch else ''}" for c in catalog]
        ours = self.from_branch_files()
        if ours:
            lines += ["", "From this branch (the contributor's, not the SIG's" +
                      (f"; {q(self.trust_note)}" if self.trust_note else "") + "):"]
            lines += [f"  {q(f)}" for f in ours]
        return "\n".join(lines) + "\n"

    def pr_description(self) -> str:
        """The pull-request description in Markdown: what, why, against the baseline, evidence with sha256s.

        User-written text never reaches it raw: the description is a fenced block whose fence is longer than any
        backtick run in it, names and paths are code spans or escaped text (`md_inline`), so no `<!--`,
        `</details>`, table, heading, link or terminal escape a contributor writes changes its structure."""
        code, text = md_code, md_inline

        def cell_code(value: Any) -> str:
            return md_code(value, in_table=True)

        out = [f"# Profile {code(self.profile)}: {text(self.release_title)} · {text(self.target)} · "
               f"{text(self.arch)}", ""]
        if self.evidence.rehearsal:
            out = [f"> **{REHEARSAL_LABEL}.** The build and boot-test evidence of this proposal come from the "
                   "workbench's busybox rehearsal system: they prove the workbench path, not this kickstart on "
                   "CentOS.", "", *out]
        if self.description.strip():
            out += ["Description, as the contributor wrote it:", "", *md_block(self.description), ""]
        overlays_cell = ", ".join(cell_code(o) for o in self.overlays) or "none"
        out += ["| | |", "|---|---|",
                f"| Release | {cell_code(self.release)} ({text(self.release_title)}, pykickstart "
                f"{text(self.version)}) |",
                f"| Target | {cell_code(self.target)} |", f"| Overlays | {overlays_cell} |",
                f"| Arch | {cell_code(self.arch)} |",
                f"| Kickstart | {cell_code(f'{self.folder}/{self.kickstart_name}')} |",
                f"| Kickstart sha256 | `{self.kickstart_sha256}` |", ""]
        out += [f"## Against the {text(self.release)} baseline", ""]
        out += [f"- {text(s)}" for s in self.diff_summary] if self.diff_summary else ["No semantic change."]
        out += ["", "## Evidence", "",
                f"Every item below is checked against the kickstart sha256 `{self.kickstart_sha256}`.", "",
                "| Evidence | Status | File | sha256 | Detail |", "|---|---|---|---|---|"]
        for i in self.evidence.items:
            status = i.status if i.status == OK else f"**{i.status.upper()}**"
            if i.rehearsal:
                status += f" (**{REHEARSAL_LABEL}**)"
            file = cell_code(f"{self.folder}/{i.file}") if i.file else "—"
            digest = cell_code(i.sha256) if i.sha256 else "—"
            out.append(f"| {i.title} | {status} | {file} | {digest} | {text(i.detail)} |")
        unmet = self.evidence.unmet()
        if unmet:
            out += ["", "> **Not all evidence is there.** The proposer chose to propose anyway:"]
            for i in unmet:
                src = f" ({code(i.source)})" if i.source else ""
                out.append(f"> - {i.title}: {i.status}{src} — {text(i.detail)}")
        failing = [i for i in self.evidence.items if i.status == FAILING]
        if failing:
            out += ["", "> **Some evidence reports problems:** " +
                    "; ".join(f"{i.title}: {text(i.detail)}" for i in failing)]
        catalog = [c for c in self.changed if c.state != "unchanged"]
        if self.koji_command:
            out += ["", "## Build it in koji (CBS)", "",
                    "From the top of the repository (the config names its kickstart by that path):", "",
                    *md_block(" ".join(self.koji_command))]
        out += ["", "## Files", ""]
        out += [f"- {code(c.path)} ({c.state}){' — **from this branch**' if c.from_branch else ''}" for c in catalog]
        out += [f"- {code(self.folder + '/')} (flattened kickstart, metadata and evidence)", "",
                "Made from: " + ", ".join(code(f) + (" (**from this branch**)" if self.is_from_branch(f) else "")
                                          for f in self.layer_files) + "."]
        if self.from_branch_files():
            out += ["", "Files marked **from this branch** are the contributor's, not the SIG's: review them (and "
                    f"the check commands they declare) as untrusted. {text(self.trust_note)}"]
        out += ["", f"_Generated by ccis-workbench {__version__}._", ""]
        return "\n".join(out)


def layer_files(comp: Any) -> list[str]:
    """Catalog-relative files the composition was made from: declared sources and every file a line came from."""
    files: set[str] = set()
    for spec in [comp.release, comp.target, *comp.overlays]:
        if spec is None:
            continue
        for attr in ("source", "fragment", "baseline"):
            value = getattr(spec, attr, None)
            if value:
                files.add(str(value))
    if comp.profile.source:
        files.add(str(comp.profile.source))
    for line in comp.lines:
        for o in line.origins:
            if o.file and not o.file.startswith("<"):
                files.add(o.file)
    return sorted(files)


def proposable(path: str) -> bool:
    """Whether a catalog-relative file may ride along in a profile's proposal (profile, target, overlay files).

    Release facts and the baseline are the SIG's spec: a profile proposal does not change them.
    """
    return path.startswith(("profiles/", "kickstarts/targets/", "kickstarts/overlays/"))


def build_proposal(comp: Any, evidence: Evidence, *, tag: str, branch: str | None = None,
                   layer_paths: list[str] | None = None) -> Proposal:
    """A Proposal for a composed profile and its gathered evidence."""
    arch = str(comp.variables.get("arch", "x86_64"))
    name = kickstart_name(comp.release.name, arch, comp.target.name, tag)
    return Proposal(profile=comp.profile.name, description=comp.profile.description or "",
                    release=comp.release.name, release_title=comp.release.title, target=comp.target.name,
                    overlays=[o.name for o in comp.overlays], arch=arch, tag=tag,
                    branch=branch or default_branch(comp.profile.name), kickstart_name=name,
                    kickstart_text=comp.text, evidence=evidence,
                    diff_summary=list(evidence.diff_summary),
                    variables=dict(comp.variables), version=comp.version,
                    layer_files=layer_paths if layer_paths is not None else layer_files(comp))
