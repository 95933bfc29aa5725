"""`verify`: is this image what its evidence says it is?

For a build's artifact folder, or a published folder (local or over HTTP): the OpenPGP signature of CHECKSUM
(against a keyring the user gives), every checksum, every SBOM and attestation present and well formed, the
attestation's subjects against the files, the attestation's kickstart against the kickstart shipped beside the
image, and (given the catalog) that composing the named profile at the named commit gives that same kickstart.
Each check is a line of the report; one failing check makes the whole verification fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import sha256_file

CHECKSUM = "CHECKSUM"
SIGNATURE = "CHECKSUM.asc"
#: Largest CHECKSUM, attestation or SBOM read (an image is large; its evidence is not).
MAX_EVIDENCE_BYTES = 64 << 20
#: Largest CHECKSUM or CHECKSUM.asc downloaded: a few lines per file of the folder.
MAX_CHECKSUM_BYTES = 1 << 20
#: Largest image (or any other file CHECKSUM lists that is not evidence) downloaded by `verify URL`: neither
#: CHECKSUM nor the attestation states a size, so this is the stated limit (the largest cloud image disk, raw).
MAX_IMAGE_BYTES = 64 << 30
#: Names of the evidence files (capped at MAX_EVIDENCE_BYTES when downloaded).
EVIDENCE_SUFFIXES = (".json", ".ks", ".txt", ".asc", ".sig")


@dataclass
class Finding:
    """One check: what, whether it holds, and the detail a reviewer reads."""

    check: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


@dataclass
class VerifyReport:
    """Every finding; `verified` when none failed. `signed` says whether a signature was checked."""

    source: str
    findings: list[Finding] = field(default_factory=list)
    signed: bool = False
    rehearsal: bool = False
    #: the signing key's fingerprint as gpgv named it ("" when unsigned or not said)
    key_id: str = ""

    @property
    def verified(self) -> bool:
        return all(f.ok for f in self.findings)

    def add(self, check: str, ok: bool, detail: str) -> None:
        self.findings.append(Finding(check, ok, detail))

    def summary(self) -> str:
        state = "VERIFIED" if self.verified else "NOT VERIFIED"
        sig = "signed" if self.signed else "unsigned"
        return f"{state} ({sig}{', REHEARSAL build: not CentOS' if self.rehearsal else ''}): {self.source}"

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "verified": self.verified, "signed": self.signed, "rehearsal": self.rehearsal,
                "findings": [f.to_dict() for f in self.findings]}


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another http(s) URL (urllib also follows ftp://; file:// it refuses with a
    traceback-shaped HTTPError): anything else is a WorkbenchError naming both URLs."""

    def http_error_302(self, req: Any, fp: Any, code: int, msg: str, headers: Any) -> Any:
        newurl = headers.get("location") or headers.get("uri") or ""
        scheme = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl)).scheme.lower()
        if scheme not in ("http", "https"):
            fp.close()
            shown = newurl.encode("unicode_escape").decode("ascii")[:200]
            raise WorkbenchError("Bad redirect", f"{req.full_url} redirects to {shown!r}: only http(s) is followed",
                                 hint="the server is broken or hostile: do not trust the folder")
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def download_limit(name: str, max_image_bytes: int = MAX_IMAGE_BYTES) -> int:
    """How many bytes `fetch` accepts for file *name*: CHECKSUM and its signature are small, evidence (an
    attestation, an SBOM, a kickstart, a manifest) is bounded by MAX_EVIDENCE_BYTES, anything else (an image) by
    *max_image_bytes*."""
    if name in (CHECKSUM, SIGNATURE):
        return MAX_CHECKSUM_BYTES
    if name.endswith(EVIDENCE_SUFFIXES):
        return MAX_EVIDENCE_BYTES
    return max_image_bytes


def fetch(url: str, dest: Path, *, keyring: str | None = None, max_image_bytes: int = MAX_IMAGE_BYTES,
          timeout: float = 60) -> Path:
    """Download a published folder's CHECKSUM (and signature) and every file it lists into *dest* (a private
    folder, made 0700). Each file is created new (O_EXCL, O_NOFOLLOW, 0600: nothing planted in *dest* is written
    through), its name must be a plain name of the folder (no `/`, `\\`, `..` or control characters), its size is
    capped (`download_limit`: a body that goes on past it, or a Content-Length over it, is an error and the part
    is removed), and redirects are followed to http(s) URLs only. *timeout* is per network operation."""
    base = url if url.endswith("/") else url + "/"
    if urllib.parse.urlsplit(base).scheme not in ("http", "https"):
        raise WorkbenchError("Bad URL", f"{url}: only http:// and https:// folders can be verified remotely",
                             hint="or give a local folder")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    opener = urllib.request.build_opener(_HttpOnlyRedirects())

    def get(name: str, required: bool) -> bool:
        why = _outside_name(name)
        if why:
            shown = name.encode("unicode_escape").decode("ascii")[:120]
            raise WorkbenchError("Bad CHECKSUM", f"file name {shown!r} {why}: not a plain name in this folder",
                                 file=url)
        limit = download_limit(name, max_image_bytes)
        path = dest / name
        try:
            with opener.open(base + urllib.parse.quote(name), timeout=timeout) as resp:
                declared = resp.headers.get("Content-Length")
                if declared is not None and declared.strip().isdigit() and int(declared) > limit:
                    raise _TooLarge(f"the server declares {int(declared)} bytes")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                try:
                    with os.fdopen(fd, "wb") as out:
                        _copy_capped(resp, out, limit)
                except BaseException:
                    path.unlink(missing_ok=True)
                    raise
            return True
        except _TooLarge as exc:
            raise WorkbenchError("Download too large", f"{base}{name}: {exc}, over the limit of {limit} bytes for "
                                 "this file", file=url, hint="the folder is broken or hostile: nothing was kept") \
                from None
        except FileExistsError:
            raise WorkbenchError("Cannot fetch", f"{path} exists already: each file is downloaded once into a new "
                                 "folder", file=url) from None
        except OSError as exc:  # urllib's HTTPError and URLError are OSErrors; so is a symlink met by O_NOFOLLOW
            if required:
                raise WorkbenchError("Cannot fetch", f"{base}{name}: {exc}", file=url) from None
            return False

    get(CHECKSUM, True)
    get(SIGNATURE, False)
    try:
        names = _parse_checksum(dest / CHECKSUM)
    except WorkbenchError as exc:
        if exc.location is not None:
            exc.location.file = base + CHECKSUM  # the published file, not the local copy
        raise
    for name in names:
        get(name, False)  # a missing file is a finding, not an error
    return dest


class _TooLarge(Exception):
    pass


def _copy_capped(src: Any, out: Any, limit: int, chunk: int = 1 << 20) -> None:
    """Copy *src* to *out*, at most *limit* bytes: one byte more is _TooLarge (an endless body stops here)."""
    total = 0
    while True:
        block = src.read(min(chunk, limit + 1 - total))
        if not block:
            return
        total += len(block)
        if total > limit:
            raise _TooLarge(f"the body goes on past {limit} bytes")
        out.write(block)


def _read_small(path: Path) -> str:
    if path.stat().st_size > MAX_EVIDENCE_BYTES:
        raise WorkbenchError("Evidence too large", f"over {MAX_EVIDENCE_BYTES >> 20} MiB", file=str(path))
    return path.read_text(encoding="utf-8", errors="replace")


def _outside_name(name: str) -> str | None:
    """Why a name listed in CHECKSUM is not a plain file name of its own folder, or None when it is."""
    if any(not c.isprintable() for c in name):
        return "holds control characters"
    if name.startswith("/"):
        return "is an absolute path"
    if ".." in name.replace("\\", "/").split("/"):
        return "climbs out of the folder with `..`"
    if "/" in name or "\\" in name:
        return "names a file in another folder"
    if name in ("", "."):
        return "is not a file name"
    return None


def _parse_checksum(path: Path) -> dict[str, str]:
    """CHECKSUM's `name -> sha256`; a name outside its own folder (absolute, `..`, a folder part, control
    characters) is an error naming the line: nothing outside the folder is ever hashed or fetched."""
    from ccis_workbench.core.propose import parse_checksum

    text = _read_small(path)
    sums = parse_checksum(text, str(path))
    for name in sums:
        why = _outside_name(name)
        if why:
            line = next((n for n, raw in enumerate(text.splitlines(), 1)
                         if raw.strip().startswith(f"SHA256 ({name}) = ")), 0)
            shown = name.encode("unicode_escape").decode("ascii")[:120]
            raise WorkbenchError("Bad CHECKSUM file", f"{shown!r} {why}: CHECKSUM lists files of its own folder only",
                                 file=str(path), line=line,
                                 hint="this CHECKSUM is broken or hostile: do not trust the folder")
    return sums


def verify_folder(folder: Path, *, keyring: str | None = None, catalog_root: Path | None = None,
                  source: str | None = None) -> VerifyReport:
    """Verify an artifact or published folder (see the module docstring)."""
    report = VerifyReport(source or str(folder))
    if not folder.is_dir():
        raise WorkbenchError("Not a folder", "verify takes a build's artifact folder or a published folder",
                             file=str(folder))
    checksum = folder / CHECKSUM
    if not checksum.is_file():
        report.add("checksum", False, "no CHECKSUM file: nothing ties these files together")
        return report
    sums = _parse_checksum(checksum)
    _signature(folder, keyring, report)
    actual: dict[str, str] = {}
    for name, want in sums.items():
        path = folder / name
        # a symlink may name another file of this folder (a published tree's `latest` names), nothing else
        outside = path.is_symlink() and path.resolve().parent != folder.resolve()
        if Path(name).name != name or not path.is_file() or outside:
            report.add(f"file {name}", False, "listed in CHECKSUM but missing (or not a plain file)")
            continue
        got = sha256_file(path)
        actual[name] = got
        report.add(f"file {name}", got == want, "sha256 matches CHECKSUM" if got == want else
                   f"sha256 {got} but CHECKSUM says {want}")
    for extra in sorted(p.name for p in folder.iterdir() if p.is_file()):
        if extra not in sums and extra not in (CHECKSUM, SIGNATURE):
            report.add(f"file {extra}", False, "not covered by CHECKSUM (added after the build was checksummed)")
    sboms = [n for n in sums if n.endswith("spdx.json")]
    attestations = [n for n in sums if n.endswith("provenance.intoto.json")]
    report.add("sbom", bool(sboms), ", ".join(sboms) if sboms else "no SBOM (*.spdx.json) listed in CHECKSUM")
    for name in sboms:
        if name in actual:
            _sbom(folder / name, report)
    report.add("attestation", bool(attestations), ", ".join(attestations) if attestations else
               "no provenance attestation (*.provenance.intoto.json) listed in CHECKSUM")
    for name in attestations:
        if name in actual:
            _attestation(folder, folder / name, actual, report, catalog_root)
    return report


def check_signature(folder: Path, keyring: str | None = None) -> tuple[bool, str]:
    """(good?, what gpgv said) for *folder*'s CHECKSUM.asc over its CHECKSUM (propose cross-checks evidence with
    it). No CHECKSUM.asc is not good: the caller asks only when one is there."""
    report = VerifyReport(str(folder))
    _signature(folder, keyring, report)
    return report.findings[0].ok and report.signed, report.findings[0].detail


def _signature(folder: Path, keyring: str | None, report: VerifyReport) -> None:
    sig = folder / SIGNATURE
    if not sig.is_file():
        report.add("signature", keyring is None, "unsigned: no CHECKSUM.asc" + (
            "" if keyring is None else " (a keyring was given: a signature was expected)"))
        return
    report.signed = True
    if shutil.which("gpgv") is None:
        report.add("signature", False, "gpgv is not installed: the signature cannot be checked")
        return
    argv = ["gpgv"] + (["--keyring", str(Path(keyring).resolve())] if keyring else []) + [str(sig),
                                                                                         str(folder / CHECKSUM)]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    good = next((ln for ln in lines if "Good signature" in ln), "")
    # gpgv says "using EDDSA key FINGERPRINT" before the verdict: the key id goes with the signer's name
    report.key_id = next((ln.rsplit(" key ", 1)[1].strip() for ln in lines if "using " in ln and " key " in ln), "")
    report.add("signature", proc.returncode == 0,
               good.split("gpgv: ", 1)[-1] + (f" (key {report.key_id})" if report.key_id else "")
               if proc.returncode == 0 else
               "BAD or unknown signature: " + ("; ".join(lines[-2:]) or f"gpgv exit {proc.returncode}"))


def _sbom(path: Path, report: VerifyReport) -> None:
    try:
        doc = json.loads(_read_small(path))
        ok = isinstance(doc, dict) and doc.get("spdxVersion") == "SPDX-2.3" and isinstance(doc.get("packages"), list)
        count = len(doc["packages"]) - 1 if ok else 0
        report.add(f"sbom {path.name}", ok, f"SPDX 2.3, {count} packages" if ok else "not an SPDX 2.3 document")
        report.rehearsal = report.rehearsal or "REHEARSAL" in str(doc.get("name", ""))
    except (ValueError, RecursionError) as exc:
        report.add(f"sbom {path.name}", False, f"not valid JSON: {exc}")


def _attestation(folder: Path, path: Path, actual: dict[str, str], report: VerifyReport,
                 catalog_root: Path | None) -> None:
    from ccis_workbench.core.provenance import check_statement

    try:
        st = json.loads(_read_small(path))
    except (ValueError, RecursionError) as exc:
        report.add(f"attestation {path.name}", False, f"not valid JSON: {exc}")
        return
    problems = check_statement(st, path.name)
    report.add(f"attestation {path.name}", not problems, "; ".join(problems) or "in-toto Statement v1, SLSA v1")
    if problems:
        return
    by_digest = {d: n for n, d in actual.items()}
    published = not (folder / "manifest.json").is_file()
    for s in st["subject"]:
        name, digest = s["name"], s["digest"]["sha256"]
        if actual.get(name) == digest or digest in by_digest:
            report.add(f"subject {name}", True, "present, sha256 matches")
        elif name in actual:
            report.add(f"subject {name}", False, f"the file's sha256 is {actual[name]}, the attestation says {digest}")
        elif not published:
            report.add(f"subject {name}", False, "attested but missing from the folder")
    params = st["predicate"]["buildDefinition"]["externalParameters"]
    report.rehearsal = report.rehearsal or bool(params.get("rehearsal"))
    ks_sha = (params.get("kickstart") or {}).get("sha256")
    shipped = [n for n in actual if n.endswith(".ks")]
    if shipped:
        ok = any(actual[n] == ks_sha for n in shipped)
        report.add("kickstart", ok, f"{shipped[0]} is the attested kickstart (sha256 {str(ks_sha)[:16]}…)" if ok
                   else f"the shipped kickstart's sha256 differs from the attested {ks_sha}")
    if catalog_root is not None:
        _recompose(catalog_root, params, ks_sha, report)


def _recompose(catalog_root: Path, params: dict[str, Any], ks_sha: str | None, report: VerifyReport) -> None:
    """Compose the attested profile from the catalog at the attested commit: the same kickstart?"""
    from ccis_workbench import gitops
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer, choice
    from ccis_workbench.core.plan import build_kickstart

    commit = (params.get("catalog") or {}).get("commit")
    if not commit:
        report.add("recompose", False, "the attestation names no catalog commit (built from outside git)")
        return
    with tempfile.TemporaryDirectory(prefix="ccis-verify-") as tmp:
        try:
            repo = gitops.toplevel(catalog_root)
            prefix = Path(catalog_root).resolve().relative_to(repo)
            archive = gitops.run_git(repo, ["archive", "--format=tar", commit, "--", str(prefix / "kickstarts"),
                                            str(prefix / "profiles")])
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True, capture_output=True)
            cat = Catalog.load(Path(tmp) / prefix)
            name = params.get("profile") or ""
            if name in cat.profile_names():
                profile = cat.load_profile(name)
            else:
                profile = choice(params["release"], params["target"], list(params.get("overlays") or []),
                                 dict(params.get("variables") or {}), name=name or None)
            text = Composer(cat).compose(profile).text
        except (WorkbenchError, subprocess.CalledProcessError, KeyError, ValueError) as exc:
            report.add("recompose", False, f"cannot compose the attested profile at {commit[:12]}: {exc}")
            return
    candidates = {hashlib.sha256(k.encode()).hexdigest() for k in (text, build_kickstart(text, ["rootfs-tar"]))}
    ok = ks_sha in candidates
    report.add("recompose", ok, f"profile {params.get('profile')} at {commit[:12]} composes to the attested "
               "kickstart" if ok else f"profile {params.get('profile')} at {commit[:12]} composes to a different "
               "kickstart than the one attested")


def verify(target: str, *, keyring: str | None = None, catalog_root: Path | None = None) -> VerifyReport:
    """Verify a local folder or an http(s) URL of one."""
    if "://" in target:
        with tempfile.TemporaryDirectory(prefix="ccis-verify-") as tmp:
            return verify_folder(fetch(target, Path(tmp) / "files"), keyring=keyring, catalog_root=catalog_root,
                                 source=target)
    return verify_folder(Path(target), keyring=keyring, catalog_root=catalog_root)
