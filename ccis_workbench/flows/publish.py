"""`publish`: lay built images out the way cloud.centos.org does, with their evidence, locally or on a mirror.

    DEST/<release>/<arch>/images/CentOS-<Release>-<Target>-<YYYYMMDD>.<n>.<arch>.<ext>
                                 ... .spdx.json, .provenance.intoto.json, .ks beside each image
                                 CentOS-<Release>-<Target>-latest.<arch>.<ext>   (a symlink to the newest)
                                 CHECKSUM (+ CHECKSUM.asc): every file of the folder, signed when a key is set

Rehearsal builds are refused unless allowed, and then go under DEST/rehearsal/ only, named REHEARSAL-...: they
can never sit beside CentOS images. A published file is never overwritten (a regular file at a `latest` name
is a published file too: publish stops before writing anything). Only CHECKSUM, CHECKSUM.asc and the `latest`
symlinks are ever replaced.

DEST is a local folder, `rsync://HOST[:PORT]/MODULE/PATH` (an rsync daemon) or `[USER@]HOST:PATH` (ssh, with
rsync on the remote side). The layout is made by one piece of code: straight into a local DEST, or into a local
staging folder that mirrors what the remote folder holds (its names, from `rsync --list-only`, and its CHECKSUM
lines, so that the new combined CHECKSUM still lists the files already published), then transferred:

- local: each file is written under a temporary name and linked into place (a link never replaces a file);
  the `latest` symlinks then CHECKSUM (and its signature) are renamed over the old ones.
- ssh: everything is uploaded into `PATH/.publish-XXXXXX/` first; then one command (every path quoted with
  shlex.quote) checks with `test -e` that no new name exists, hard-links each new file into place (`ln`
  refuses to replace), and moves the `latest` symlinks, CHECKSUM and CHECKSUM.asc over the old ones (`mv -T`,
  a rename each). The staging folder is removed whatever happens.
- rsync daemon (no remote commands): two transfers with `--delay-updates` (each file lands in a hidden
  temporary folder and all of a transfer's files are renamed into place at its end). The first sends the new
  release's files with `--ignore-existing` (a second guard after the listing: a file that was skipped, because
  it appeared in between, stops the publish before anything else is sent); the second sends the `latest`
  symlinks, CHECKSUM and CHECKSUM.asc. What a reader may see: between the two transfers, the new release's
  files before CHECKSUM lists them (they are not `latest` yet, and the old CHECKSUM still verifies every file it
  lists); then, during the second transfer's renames (moments), a new CHECKSUM with the old signature.

Files of a remote folder that its CHECKSUM does not list cannot be hashed without downloading them: they stay
out of the new CHECKSUM. A signed remote folder is never made unsigned: publishing there needs a key. A signed
publish never vouches for lines it did not check: the lines kept from the mirror's CHECKSUM must carry a good
signature first (gpg --verify with the signer's keyring), else nothing is sent.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.manifest import Manifest

#: Image formats that are published (logs, manifests and kickstarts of the build stay in its folder).
IMAGE_SUFFIXES = (".qcow2", ".raw", ".vmdk", ".vhd", ".box", ".ova", ".tar.gz", ".tar.xz")
#: Names that are rewritten on every publish (everything else is written once).
INDEX_NAMES = ("CHECKSUM", "CHECKSUM.asc")
#: ssh's wait for a connection (seconds); rsync's I/O timeout (seconds without data).
CONNECT_TIMEOUT = 15
IO_TIMEOUT = 120
#: Largest CHECKSUM or CHECKSUM.asc fetched from a mirror.
MAX_INDEX_BYTES = 64 << 20

_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
_SSH_TARGET = re.compile(rf"^(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?(?P<host>{_HOST}):(?P<path>.*)$", re.S)


@dataclass
class Published:
    """What one publish wrote (*folder*: a local path, or the remote folder as an rsync or ssh address)."""

    folder: Path | str
    files: list[str] = field(default_factory=list)
    latest: list[str] = field(default_factory=list)
    signed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "files": self.files, "latest": self.latest, "signed": self.signed}


def release_title(release: str) -> str:
    """centos-stream-9 -> Stream-9, centos-7 -> 7 (CentOS's own file names)."""
    rest = release.removeprefix("centos-")
    return "Stream-" + rest.removeprefix("stream-") if rest.startswith("stream-") else rest


def _suffix(name: str) -> str:
    return next((s for s in IMAGE_SUFFIXES if name.endswith(s)), "")


# -- where to: a local folder, an rsync daemon, an ssh host -----------------------------------------------------


@dataclass
class Target:
    """A parsed `--to`: kind "local", "rsync" (daemon) or "ssh"; *path* is POSIX and relative to the module for
    rsync (may be empty), as given for ssh (relative paths start in the remote user's home)."""

    kind: str
    path: str
    host: str = ""
    port: int | None = None
    user: str = ""
    module: str = ""
    text: str = ""

    def address(self, rel: str = "") -> str:
        """The rsync address of *rel* under the target (a folder address ends with '/')."""
        tail = "/".join(p for p in (self.path.rstrip("/"), rel) if p)
        if self.kind == "rsync":
            port = f":{self.port}" if self.port else ""
            return f"rsync://{self.host}{port}/{self.module}/{tail}"
        return f"{self.user + '@' if self.user else ''}{self.host}:{tail or '.'}"


def _bad_target(text: str, why: str) -> WorkbenchError:
    shown = text.encode("unicode_escape").decode("ascii")[:200]
    return WorkbenchError(
        "Bad publish target",
        f"{shown!r}: {why}",
        file=shown,
        hint="--to DIR, --to rsync://HOST[:PORT]/MODULE/PATH or --to [USER@]HOST:PATH",
    )


def _check_remote_path(text: str, path: str) -> None:
    if any(not c.isprintable() for c in path):
        raise _bad_target(text, "the path holds control characters")
    if ".." in path.split("/"):
        raise _bad_target(text, "the path climbs with `..`")


def parse_target(text: str, *, port: int | None = None) -> Target:
    """`--to` as a Target. A colon before the first slash means ssh (as rsync and scp read it); `X://` must be
    rsync://; anything else is a local folder. Bad remote targets are WorkbenchErrors (exit status 2)."""
    if not text.strip():
        raise _bad_target(text, "empty")
    if port is not None and not 0 < port < 65536:
        raise _bad_target(text, f"port {port} is not 1-65535")
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if scheme:
        if scheme.group(1).lower() != "rsync":
            raise _bad_target(text, f"unknown scheme {scheme.group(1)!r}: rsync:// is the only URL publish writes to")
        parts = urllib.parse.urlsplit(text)
        if parts.query or parts.fragment or parts.username or parts.password:
            raise _bad_target(text, "an rsync URL is rsync://HOST[:PORT]/MODULE/PATH (no user, query or fragment)")
        try:
            url_port = parts.port
        except ValueError:
            raise _bad_target(text, "the port is not a number from 1 to 65535") from None
        host = parts.hostname or ""
        if not re.fullmatch(_HOST, host):
            raise _bad_target(text, "no host name (or not a plain host name)")
        module, _, path = parts.path.lstrip("/").partition("/")
        if not module or not re.fullmatch(r"[A-Za-z0-9._-]+", module) or module in (".", ".."):
            raise _bad_target(text, "no rsync module: the path must start with MODULE/")
        _check_remote_path(text, path)
        return Target("rsync", path.strip("/"), host=host, port=url_port or port, module=module, text=text)
    m = _SSH_TARGET.match(text)
    if m and "/" not in text.split(":", 1)[0]:
        path = m.group("path")
        if not path.strip():
            raise _bad_target(text, "empty remote path after HOST:")
        if path.startswith("~"):
            raise _bad_target(text, "`~` is not expanded (paths are quoted): give a path relative to the home folder")
        _check_remote_path(text, path)
        return Target("ssh", path, host=m.group("host"), port=port, user=m.group("user") or "", text=text)
    if ":" in text.split("/", 1)[0]:
        raise _bad_target(text, "looks like [USER@]HOST:PATH but the user or host name is not a plain name")
    return Target("local", text, text=text)


# -- the layout (one piece of code for every target) -------------------------------------------------------------


@dataclass
class Remote:
    """What a destination folder already holds: name -> kind ("f" file, "l" symlink, "d" folder), and its
    CHECKSUM's lines per name (kept for files that stay)."""

    names: dict[str, str] = field(default_factory=dict)
    sums: dict[str, list[str]] = field(default_factory=dict)
    #: local copies of its CHECKSUM and CHECKSUM.asc (None when it has none), and its address
    checksum: Path | None = None
    signature: Path | None = None
    where: str = ""


def _check_kept_lines(there: Remote) -> None:
    """Signing a CHECKSUM that keeps lines read from the mirror vouches for files this publish never hashed: the
    mirror's CHECKSUM must carry a good signature (gpg --verify, the signer's own keyring) first."""
    where = f"{there.where}/CHECKSUM"
    if there.checksum is None or there.signature is None:
        raise WorkbenchError(
            "Unsigned mirror folder",
            "its CHECKSUM lists files this publish cannot hash and carries "
            "no signature: signing the new CHECKSUM would vouch for them",
            file=where,
            hint="check that folder's files and sign its CHECKSUM first, or publish into a new folder",
        )
    proc = subprocess.run(["gpg", "--batch", "--verify", str(there.signature), str(there.checksum)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        raise WorkbenchError(
            "Bad signature on the mirror",
            "its CHECKSUM.asc does not verify with your keyring: "
            + ("; ".join(lines[-2:]) or f"gpg exit {proc.returncode}"),
            file=where,
            hint="the mirror's CHECKSUM changed after it was signed, or was signed by a key you do "
            "not have: check the folder before publishing into it",
        )


def checksum_blocks(text: str, source: str) -> dict[str, list[str]]:
    """A CHECKSUM's lines per file name: the `# name: N bytes` comment (when there) and the `SHA256` line."""
    from ccis_workbench.core.propose import parse_checksum

    sums = parse_checksum(text, source)  # a malformed line is an error naming it
    blocks: dict[str, list[str]] = {}
    for name, digest in sums.items():
        comment = next(
            (ln.strip() for ln in text.splitlines() if re.fullmatch(rf"#\s*{re.escape(name)}: \d+ bytes", ln.strip())),
            None,
        )
        blocks[name] = [*([comment] if comment else []), f"SHA256 ({name}) = {digest}"]
    return blocks


def _read_manifest(artifact_dir: Path, allow_rehearsal: bool) -> Manifest:
    manifest = Manifest.read(artifact_dir)
    if manifest.rehearsal and not allow_rehearsal:
        raise WorkbenchError(
            "Rehearsal build",
            "a REHEARSAL build is not CentOS and is not published beside CentOS images",
            file=str(artifact_dir),
            hint="--allow-rehearsal publishes it under rehearsal/ only, named REHEARSAL-...",
        )
    return manifest


def _already(where: str, why: str = "a published file is never overwritten") -> WorkbenchError:
    return WorkbenchError(
        "Already published", why, file=where, hint="publish a new build (a new date or serial is chosen for it)"
    )


def _link_or_copy(src: Path, dest: Path) -> None:
    """*src* to *dest* whole: a temporary name in dest's folder, then a link that refuses to replace."""
    tmp = dest.with_name(f".{dest.name}.partial")
    try:
        shutil.copyfile(src, tmp)
        os.link(tmp, dest)  # fails when dest exists: a published file is never replaced
    except FileExistsError:
        raise _already(str(dest)) from None
    finally:
        tmp.unlink(missing_ok=True)


def lay_out(
    artifact_dir: Path,
    top: Path,
    *,
    allow_rehearsal: bool = False,
    sign_key: str = "",
    remote: Callable[[str], Remote] | None = None,
) -> tuple[str, Published]:
    """Publish one build's artifact folder into the tree at *top*; returns (the folder's path under *top*,
    what was written). *remote*, given a folder's relative path, says what the real destination folder holds
    when *top* is a staging copy of it (None: *top* is the destination)."""
    from ccis_workbench.core.artifacts import checksum_text

    manifest = _read_manifest(artifact_dir, allow_rehearsal)
    images = [a["file"] for a in manifest.artifacts if isinstance(a.get("file"), str) and _suffix(a["file"])]
    if not images:
        raise WorkbenchError("Nothing to publish", "the build lists no image artifact", file=str(artifact_dir))
    rel = "/".join([*(["rehearsal"] if manifest.rehearsal else []), manifest.release, manifest.arch, "images"])
    if any(not re.fullmatch(r"[A-Za-z0-9._-]+", p) or p in (".", "..") for p in rel.split("/")):
        raise WorkbenchError(
            "Bad manifest",
            f"release {manifest.release!r} or arch {manifest.arch!r} is not a plain name",
            file=str(artifact_dir / "manifest.json"),
        )
    there = remote(rel) if remote else Remote()
    folder = top / rel
    folder.mkdir(parents=True, exist_ok=True)
    kinds = dict(there.names)
    for p in folder.iterdir():
        kinds[p.name] = "l" if p.is_symlink() else "d" if p.is_dir() else "f"
    date = (manifest.build_id or "")[:8] if re.match(r"\d{8}", manifest.build_id or "") else "00000000"
    prefix = (
        "REHEARSAL-" if manifest.rehearsal else ""
    ) + f"CentOS-{release_title(manifest.release)}-{manifest.target or 'image'}"
    serial = 0
    while any(n.startswith(f"{prefix}-{date}.{serial}.") for n in kinds):
        serial += 1
    ks = next((artifact_dir / a["file"] for a in manifest.artifacts if str(a.get("file", "")).endswith(".ks")), None)
    stem = f"{prefix}-{date}.{serial}.{manifest.arch}"
    plan: list[tuple[Path, str]] = []  # (source, published name)
    latest: list[tuple[str, str]] = []  # (latest name, image name)
    for image in images:
        ext = _suffix(image)
        plan.append((artifact_dir / image, f"{stem}{ext}"))
        for src, suffix in (
            (artifact_dir / "sbom.spdx.json", ".spdx.json"),
            (artifact_dir / "provenance.intoto.json", ".provenance.intoto.json"),
            (ks, ".ks"),
        ):
            if src is not None and src.is_file() and all(n != f"{stem}{suffix}" for _, n in plan):
                plan.append((src, f"{stem}{suffix}"))
        latest.append((f"{prefix}-latest.{manifest.arch}{ext}", f"{stem}{ext}"))
    # every check before the first write: a failed publish changes nothing
    for _, name in plan:
        if name in kinds:
            raise _already(f"{rel}/{name}")
    for name, _ in latest:
        if kinds.get(name, "l") != "l":
            raise _already(
                f"{rel}/{name}",
                "a regular file (not a `latest` symlink) holds this name: a published file is never overwritten",
            )
    for name in INDEX_NAMES:
        if kinds.get(name, "f") != "f":
            raise _already(f"{rel}/{name}", f"{name} is not a regular file here")
    if kinds.get("CHECKSUM.asc") == "f" and not sign_key:
        raise WorkbenchError(
            "Signed folder",
            "this folder's CHECKSUM is signed: publishing unsigned would leave it unsigned",
            file=rel,
            hint="--sign-key KEY (or the sign_key setting)",
        )
    out = Published(folder)
    for src, name in plan:
        _link_or_copy(src, folder / name)
        out.files.append(name)
    for name, image in latest:
        link = folder / name
        tmp_link = link.with_name(f".{link.name}.new")
        tmp_link.unlink(missing_ok=True)
        tmp_link.symlink_to(image)
        os.replace(tmp_link, link)  # the latest name moves to the new image in one step
        out.latest.append(name)
    local = sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in INDEX_NAMES
    )
    blocks = {p.name: checksum_text([p]).splitlines() for p in local}
    kept = [
        name
        for name, kind in there.names.items()  # files that stay on the remote side, as its CHECKSUM
        if kind in "fl" and name not in blocks and name in there.sums and not name.startswith(".")
    ]
    if kept and sign_key:
        _check_kept_lines(there)
    for name in kept:
        blocks[name] = there.sums[name]
    tmp = folder / ".CHECKSUM.new"
    tmp.write_text("".join(line + "\n" for name in sorted(blocks) for line in blocks[name]), encoding="utf-8")
    if sign_key:
        sig_tmp = folder / ".CHECKSUM.asc.new"
        proc = subprocess.run(
            [
                "gpg",
                "--batch",
                "--yes",
                "--local-user",
                sign_key,
                "--armor",
                "--detach-sign",
                "--output",
                str(sig_tmp),
                str(tmp),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise WorkbenchError(
                "Signing failed",
                proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"gpg exit {proc.returncode}",
                hint="check --sign-key and gpg's keyring",
            )
        os.replace(tmp, folder / "CHECKSUM")
        os.replace(sig_tmp, folder / "CHECKSUM.asc")
        out.signed = True
    else:
        os.replace(tmp, folder / "CHECKSUM")
        (folder / "CHECKSUM.asc").unlink(missing_ok=True)  # a stale signature would not match the new CHECKSUM
    return rel, out


def publish(artifact_dir: Path, dest: Path, *, allow_rehearsal: bool = False, sign_key: str = "") -> Published:
    """Publish one build's artifact folder into the local tree at *dest*."""
    return lay_out(artifact_dir, dest, allow_rehearsal=allow_rehearsal, sign_key=sign_key)[1]


# -- remote targets: list, stage, transfer ------------------------------------------------------------------------


class Transport:
    """rsync (and ssh) for one remote target. *ssh_key*, *ssh_options* (`-o` values): what ssh needs beyond the
    user's ssh config; BatchMode=yes (never a password prompt) and a connect timeout always."""

    def __init__(self, target: Target, *, ssh_key: str | None = None, ssh_options: tuple[str, ...] = ()) -> None:
        self.target = target
        self.ssh = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={CONNECT_TIMEOUT}"]
        for opt in ssh_options:
            if not re.fullmatch(r"[A-Za-z]+=\S.*", opt) or any(not c.isprintable() for c in opt):
                raise WorkbenchError("Bad ssh option", f"{opt!r} is not NAME=VALUE", hint="--ssh-option NAME=VALUE")
            self.ssh += ["-o", opt]
        if ssh_key:
            self.ssh += ["-i", ssh_key]
        if target.port and target.kind == "ssh":
            self.ssh += ["-p", str(target.port)]
        self.env = dict(os.environ, LC_ALL="C")

    def rsync(self, *args: str) -> subprocess.CompletedProcess[str]:
        base = ["rsync", f"--timeout={IO_TIMEOUT}"]
        if self.target.kind == "rsync":
            base.append(f"--contimeout={CONNECT_TIMEOUT}")
        else:
            base += ["-e", shlex.join(self.ssh)]
        return subprocess.run([*base, *args], capture_output=True, text=True, env=self.env, check=False)

    def remote(self, commands: list[list[str]]) -> subprocess.CompletedProcess[str]:
        """Run commands on the ssh host, one after the other while they succeed: each an argument list, every
        argument quoted (the remote side runs them through its shell)."""
        who = f"{self.target.user}@{self.target.host}" if self.target.user else self.target.host
        script = " && ".join(shlex.join(c) for c in commands)
        return subprocess.run(
            [*self.ssh, "--", who, script],
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
            timeout=CONNECT_TIMEOUT + IO_TIMEOUT,
        )

    def fail(self, what: str, proc: subprocess.CompletedProcess[str]) -> WorkbenchError:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return WorkbenchError(
            "Publish failed",
            f"{what}: {'; '.join(lines[-2:]) or f'exit {proc.returncode}'}",
            file=self.target.text,
            hint="check the address, the rsync module or ssh access (ssh runs with BatchMode=yes: a key, no password)",
        )

    def look(self, rel: str, scratch: Path) -> Remote:
        """What the remote folder *rel* holds (nothing when it does not exist yet), with its CHECKSUM lines."""
        proc = self.rsync("--list-only", self.target.address(rel) + "/")
        if proc.returncode != 0:
            if "No such file or directory" in proc.stderr:
                return Remote()
            raise self.fail(f"cannot list {self.target.address(rel)}", proc)
        found = Remote(where=self.target.address(rel))
        for line in proc.stdout.splitlines():
            fields = line.split(None, 4)
            if len(fields) < 5 or fields[4] == ".":
                continue
            kind = {"-": "f", "l": "l", "d": "d"}.get(fields[0][:1], "?")
            name = fields[4].split(" -> ", 1)[0] if kind == "l" else fields[4]
            found.names[name] = kind
        if found.names.get("CHECKSUM") == "f":
            scratch.mkdir(parents=True, exist_ok=True)
            here = Path(tempfile.mkdtemp(dir=scratch))
            for name in INDEX_NAMES:
                if found.names.get(name) != "f":
                    continue
                # --max-size: an index bigger than any CHECKSUM a publish writes is not downloaded at all
                proc = self.rsync(f"--max-size={MAX_INDEX_BYTES}", f"{found.where}/{name}", str(here / name))
                if proc.returncode != 0:
                    raise self.fail(f"cannot fetch {found.where}/{name}", proc)
                if not (here / name).is_file():
                    raise WorkbenchError("Bad CHECKSUM file", f"larger than {MAX_INDEX_BYTES >> 20} MiB",
                                         file=f"{found.where}/{name}")  # fmt: skip
            found.checksum = here / "CHECKSUM"
            found.signature = here / "CHECKSUM.asc" if (here / "CHECKSUM.asc").is_file() else None
            found.sums = checksum_blocks(found.checksum.read_text(encoding="utf-8", errors="replace"),
                                         f"{found.where}/CHECKSUM")  # fmt: skip
        return found

    def send(self, stage: Path, files: list[str], dest: str, *, keep_existing: bool) -> None:
        """rsync *files* (paths under *stage*) to *dest* with --delay-updates; with *keep_existing*,
        --ignore-existing and every file must have been sent (a skipped one existed: never overwritten); without
        it, --ignore-times: each file replaces the one there even when their sizes and mtimes agree (rsync's quick
        check would keep the old one: a CHECKSUM.asc is always the same size, and two publishes in one second
        give it the same mtime, so a new CHECKSUM went out with the old signature)."""
        listing = stage.parent / f"{stage.name}.files"
        listing.write_text("".join(f + "\n" for f in files), encoding="utf-8")
        proc = self.rsync(
            "-lt",
            "--itemize-changes",
            "--delay-updates",
            f"--files-from={listing}",
            "--ignore-existing" if keep_existing else "--ignore-times",
            f"{stage}/",
            dest,
        )
        if proc.returncode != 0:
            raise self.fail(f"rsync to {dest} failed", proc)
        if keep_existing:
            sent = {
                ln.split(" ", 1)[1].split(" -> ", 1)[0]
                for ln in proc.stdout.splitlines()
                if ln[:2] in ("<f", "cL") and " " in ln
            }
            skipped = [f for f in files if f not in sent]
            if skipped:
                raise _already(
                    f"{dest}{skipped[0]}",
                    "the file appeared on the mirror after it was listed; it was not "
                    "overwritten and nothing else was published",
                )


def publish_to(
    artifact_dirs: list[Path],
    to: str,
    *,
    allow_rehearsal: bool = False,
    sign_key: str = "",
    port: int | None = None,
    ssh_key: str | None = None,
    ssh_options: tuple[str, ...] = (),
) -> list[Published]:
    """Publish build folders to *to*: a local folder, rsync://HOST[:PORT]/MODULE/PATH or [USER@]HOST:PATH
    (see the module docstring for what each guarantees)."""
    target = parse_target(to, port=port)
    for d in artifact_dirs:  # every refusal before any network traffic
        _read_manifest(Path(d), allow_rehearsal)
    if target.kind == "local":
        return [publish(Path(d), Path(to), allow_rehearsal=allow_rehearsal, sign_key=sign_key) for d in artifact_dirs]
    if shutil.which("rsync") is None or (target.kind == "ssh" and shutil.which("ssh") is None):
        raise WorkbenchError(
            "Missing program",
            "publishing to a mirror needs rsync (and ssh for HOST:PATH)",
            hint="install rsync and openssh-client",
        )
    transport = Transport(target, ssh_key=ssh_key, ssh_options=ssh_options)
    with tempfile.TemporaryDirectory(prefix="ccis-publish-") as tmp:
        stage = Path(tmp) / "stage"
        stage.mkdir()
        seen: dict[str, Remote] = {}

        def remote(rel: str) -> Remote:
            if rel not in seen:
                seen[rel] = transport.look(rel, Path(tmp) / "prior")
            return seen[rel]

        done = [
            lay_out(Path(d), stage, allow_rehearsal=allow_rehearsal, sign_key=sign_key, remote=remote)
            for d in artifact_dirs
        ]
        new = [f"{rel}/{name}" for rel, p in done for name in p.files]
        index = sorted({f"{rel}/{name}" for rel, p in done for name in p.latest}) + sorted(
            {f"{rel}/{name}" for rel, _ in done for name in INDEX_NAMES if (stage / rel / name).is_file()}
        )
        if target.kind == "rsync":
            transport.send(stage, new, target.address().rstrip("/") + "/", keep_existing=True)
            transport.send(stage, index, target.address().rstrip("/") + "/", keep_existing=False)
        else:
            _ssh_commit(transport, stage, new, index)
    return [Published(target.address(rel), p.files, p.latest, p.signed) for rel, p in done]


def _ssh_commit(transport: Transport, stage: Path, new: list[str], index: list[str]) -> None:
    """Upload into ROOT/.publish-XXXXXX/, then link the new files and move the index names into place."""
    root = transport.target.path.rstrip("/") or "/"
    proc = transport.remote([["mkdir", "-p", "--", root], ["mktemp", "-d", "--", f"{root}/.publish-XXXXXX"]])
    staged = proc.stdout.strip()
    if proc.returncode != 0 or not staged or "\n" in staged:
        raise transport.fail(f"cannot make a staging folder in {root}", proc)
    try:
        who = f"{transport.target.user}@{transport.target.host}" if transport.target.user else transport.target.host
        transport.send(stage, new + index, f"{who}:{staged}/", keep_existing=True)
        commands: list[list[str]] = []
        for folder in sorted({str(PurePosixPath(f).parent) for f in new + index}):
            commands.append(["mkdir", "-p", "--", f"{root}/{folder}"])
        for f in new:
            commands.append(["test", "!", "-e", f"{root}/{f}"])
            commands.append(["test", "!", "-L", f"{root}/{f}"])
        commands += [["ln", "--", f"{staged}/{f}", f"{root}/{f}"] for f in new]  # ln never replaces a file
        commands += [["mv", "-f", "-T", "--", f"{staged}/{f}", f"{root}/{f}"] for f in index]
        proc = transport.remote(commands)
        if proc.returncode != 0:
            if not proc.stderr.strip():  # a `test` said no: a new name exists on the remote side
                raise _already(
                    transport.target.address(),
                    "a file of this release already exists on the remote side; nothing was published",
                )
            raise transport.fail("cannot move the release into place", proc)
    finally:
        try:
            transport.remote([["rm", "-rf", "--", staged]])
        except (OSError, subprocess.SubprocessError):
            pass  # the error that got here says more; a leftover .publish-* folder holds no published name
