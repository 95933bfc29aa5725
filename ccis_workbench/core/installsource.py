"""Install sources: an HTTP(S) install tree, a local tree directory, or a boot/DVD ISO.

Each is found through its `.treeinfo` (productmd format: [general]/[tree], [images-ARCH] kernel/initrd,
[stage2] mainimage, [checksums] sha256). Kernel and initrd of a URL tree are downloaded with progress into
the user's cache directory (`$XDG_CACHE_HOME/ccis-workbench`), verified against the `.treeinfo` checksums and
reused by the next build. An ISO is read with pycdlib (no mount, no root) and attached to the guest as a CD-ROM.

A tree, an ISO or a mirror may be hostile: every file name a `.treeinfo` gives is checked (relative, no `..`, no
control characters, a plain character set) before it is used, every file is kept inside its cache directory
(symlinks leading out are refused), and a download is written under a temporary name in its final folder and
renamed only once its checksum matched. Planning (`download=False`) reads nothing from the network: it
describes what a build would fetch, from the cache of an earlier build when there is one.
"""

from __future__ import annotations

import configparser
import contextlib
import fcntl
import functools
import hashlib
import http.client
import ipaddress
import os
import re
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.cachedir import cache_root
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import sha256_file
from ccis_workbench.core.monitor import Monitor

CHUNK = 1 << 20
#: The address of the host as seen from a guest on qemu's user-mode network (slirp).
USER_NET_HOST = "10.0.2.2"
#: The most a `.treeinfo` may weigh (real ones are a few KiB).
MAX_TREEINFO = 1 << 20
#: The most one kernel or initrd may weigh (CentOS initrds are about 150 MiB).
MAX_DOWNLOAD = 1 << 30
#: Checksum algorithms accepted from `[checksums]`, with their hex digest length.
ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
#: One component of a tree-relative file name.
_COMPONENT = re.compile(r"[A-Za-z0-9._+~@=,-]+")
#: Names the cache uses for its own files next to a kept one.
_RESERVED_SUFFIXES = (".part", ".verified")
PLAIN_HTTP_WARNING = (
    "plain HTTP install tree: its .treeinfo, kernel and initrd (and the checksums that vouch for "
    "them) travel unprotected, so anyone on the network path can change what is installed; "
    "prefer an https:// mirror"
)


@dataclass
class TreeInfo:
    """What a `.treeinfo` says about an install tree."""

    family: str
    version: str
    name: str
    arch: str
    kernel: str  # tree-relative path
    initrd: str
    stage2: str | None
    checksums: dict[str, tuple[str, str]]  # path -> (algorithm, hex)
    text: str
    sha256: str  # of the .treeinfo itself: the tree's identity

    @property
    def is_rehearsal(self) -> bool:
        return "rehearsal" in self.family.lower()

    def identity(self) -> dict[str, str]:
        return {
            "family": self.family,
            "version": self.version,
            "name": self.name,
            "arch": self.arch,
            "treeinfo_sha256": self.sha256,
        }


def shown(text: str, limit: int = 80) -> str:
    """*text* from outside, safe to print: control characters escaped, cut at *limit* characters."""
    out = "".join(
        c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text[:limit]
    )
    return out + ("..." if len(text) > limit else "")


def line_of(text: str, section: str, key: str) -> int:
    """The 1-based line of `key = ...` in [section] of INI *text* (0 when not found)."""
    current = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
        elif current == section and re.split(r"\s*[=:]", line, maxsplit=1)[0] == key:
            return n
    return 0


def unsafe_name(name: str) -> str | None:
    """Why *name* cannot be used as a tree-relative file name, or None when it can."""
    if not name:
        return "it is empty"
    if len(name) > 1024:
        return "it is longer than 1024 characters"
    if any(not c.isprintable() for c in name):
        return "it holds control characters"
    if name.startswith("/"):
        return "it is an absolute path"
    parts = name.split("/")
    if ".." in parts:
        return "a `..` component leaves the tree"
    if any(p in ("", ".") for p in parts):
        return "it has an empty or `.` component"
    for part in parts:
        if not _COMPONENT.fullmatch(part):
            return "it has characters other than A-Z a-z 0-9 . _ + ~ @ = , - and /"
    if parts[-1] == ".treeinfo" or parts[-1].endswith(_RESERVED_SUFFIXES):
        return "it names a file the workbench keeps for itself"
    return None


def parse_treeinfo(text: str, source: str, arch: str = "x86_64") -> TreeInfo:
    """Parse `.treeinfo` text; errors name *source* and the line. The file names it gives (kernel, initrd,
    stage2) are checked: a name that is absolute, climbs out with `..` or holds control characters is refused."""
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        cp.read_string(text, source)
    except configparser.Error as exc:
        line = getattr(exc, "lineno", 0) or 0
        message = shown(str(exc).splitlines()[0], 200)
        errors = getattr(exc, "errors", None)
        if errors:  # ParsingError: [(lineno, line text), ...]
            line, bad = errors[0]
            message = f"not a `key = value` line: {shown(bad.strip())}"
        raise WorkbenchError(
            ".treeinfo is not valid",
            message,
            file=source,
            line=line,
            hint="is this the root of an install tree (BaseOS/x86_64/os/)?",
        ) from None

    def get(section: str, key: str, default: str | None = None) -> str | None:
        return cp.get(section, key, fallback=default) if cp.has_section(section) else default

    images = f"images-{arch}"
    if not cp.has_section(images):
        raise WorkbenchError(
            ".treeinfo has no images for this architecture",
            f"no [{images}] section",
            file=source,
            hint=f"sections present: {shown(', '.join(cp.sections()), 200)}",
        )
    kernel, initrd = get(images, "kernel"), get(images, "initrd")
    if not kernel or not initrd:
        raise WorkbenchError(".treeinfo names no kernel/initrd", f"[{images}] needs kernel and initrd", file=source)
    stage2 = get("stage2", "mainimage")
    for section, key, value in (
        (images, "kernel", kernel),
        (images, "initrd", initrd),
        ("stage2", "mainimage", stage2),
    ):
        why = unsafe_name(value) if value is not None else None
        if why:
            raise WorkbenchError(
                "Unsafe file name in .treeinfo",
                f"[{section}] {key} = {shown(value or '')}: {why}",
                file=source,
                line=line_of(text, section, key),
                hint="a tree names its files relative to its root (images/pxeboot/vmlinuz); this "
                "tree is broken or hostile: do not use it",
            )
    if kernel == initrd:
        raise WorkbenchError(
            "Unsafe file name in .treeinfo",
            f"[{images}] kernel and initrd are both {shown(kernel)}",
            file=source,
            line=line_of(text, images, "initrd"),
        )
    checksums: dict[str, tuple[str, str]] = {}
    if cp.has_section("checksums"):
        for path, value in cp.items("checksums"):
            algo, sep, hexd = value.partition(":")
            if sep:
                checksums[path] = (algo.strip(), hexd.strip())
    family = get("release", "name") or get("general", "family") or "unknown"
    if get("general", "family"):
        family = get("general", "family") or family
    return TreeInfo(
        family=family,
        version=get("release", "version") or get("general", "version") or "",
        name=get("general", "name") or family,
        arch=get("tree", "arch") or get("general", "arch") or arch,
        kernel=kernel,
        initrd=initrd,
        stage2=stage2,
        checksums=checksums,
        text=text,
        sha256=hashlib.sha256(text.encode()).hexdigest(),
    )


@dataclass
class InstallSource:
    """A resolved install source: local copies of kernel and initrd plus what the guest is told."""

    kind: str  # "url" | "dir" | "iso"
    location: str  # URL, directory or ISO path
    treeinfo: TreeInfo
    kernel: Path
    initrd: Path
    iso: Path | None = None
    downloaded: int = 0  # bytes fetched for this build (0 when everything came from the cache)
    notes: list[str] = field(default_factory=list)
    #: a URL tree only described by a plan: its .treeinfo was neither fetched nor found in the cache
    unread: bool = False

    @property
    def is_rehearsal(self) -> bool:
        return self.treeinfo.is_rehearsal

    def repo_arg(self, network: str = "user") -> str:
        """The `inst.repo=` value the guest can use."""
        if self.kind == "iso":
            return "cdrom"
        if self.kind == "url":
            return guest_url(self.location, network)
        return "file://" + self.location  # a local tree is served to the guest by the build (see plan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "location": self.location,
            "kernel": str(self.kernel),
            "initrd": str(self.initrd),
            "iso": str(self.iso) if self.iso else None,
            "rehearsal": self.is_rehearsal,
            "tree": self.treeinfo.identity(),
            "downloaded": self.downloaded,
        }


def guest_url(url: str, network: str = "user") -> str:
    """*url* as a guest sees it: on user-mode networking the host's loopback is 10.0.2.2."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if not loopback or network != "user":
        return url
    netloc = USER_NET_HOST + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- checksums ---------------------------------------------------------------------------------------------------


def expected_checksum(info: TreeInfo, rel: str, source: str) -> tuple[str, str] | None:
    """(algorithm, hex) that .treeinfo's [checksums] gives for *rel*, None when it gives none; a checksum the
    workbench cannot verify (unknown algorithm, malformed digest) is an error naming its line."""
    given = info.checksums.get(rel)
    if given is None:
        return None
    algo, hexd = given[0].lower(), given[1].lower()
    size = ALGORITHMS.get(algo)
    if size is None or not re.fullmatch(f"[0-9a-f]{{{size}}}", hexd):
        why = (
            f"algorithm {shown(algo)!r} is not one of {', '.join(ALGORITHMS)}"
            if size is None
            else f"not a {algo} digest ({size} hex digits)"
        )
        raise WorkbenchError(
            "Unusable checksum in .treeinfo",
            f"[checksums] {rel}: {why}",
            file=source,
            line=line_of(info.text, "checksums", rel),
            hint="the tree is broken or hostile: use another mirror",
        )
    return algo, hexd


def _digest(path: Path, algo: str) -> str:
    if algo == "sha256":
        return sha256_file(path)
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify(info: TreeInfo, rel: str, path: Path, source: str) -> None:
    """*path* has the checksum .treeinfo gives for *rel* (when it gives one), else a WorkbenchError."""
    expected = expected_checksum(info, rel, source)
    if expected is None:
        return
    algo, hexd = expected
    actual = _digest(path, algo)
    if actual != hexd:
        raise WorkbenchError(
            "Checksum mismatch",
            f"{rel}: {algo} {actual} but .treeinfo says {hexd}",
            file=source,
            line=line_of(info.text, "checksums", rel),
            hint="the mirror may be syncing: retry later, or use another mirror",
        )


def _stamp_text(path: Path, digest: str) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {digest}\n"


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _mark_verified(path: Path, digest: str) -> None:
    """Remember that the cached *path* (size, mtime) has *digest*, so the next build need not hash 80 MB."""
    try:
        _write_new(_stamp(path), _stamp_text(path, digest).encode())
    except OSError:
        pass  # only a speed-up


def _regular(path: Path) -> bool:
    """A regular file itself, not a symlink to one."""
    return path.is_file() and not path.is_symlink()


def _matches(info: TreeInfo, rel: str, path: Path) -> bool:
    """Whether the cached *path* is the file .treeinfo names (checked by hash once, then by its stamp)."""
    algo_hex = info.checksums.get(rel)
    if not _regular(path):
        return False
    if algo_hex is None:
        return True
    algo, hexd = algo_hex[0].lower(), algo_hex[1].lower()
    if algo not in ALGORITHMS:
        return False
    try:
        stamp = _stamp(path)
        if _regular(stamp) and stamp.read_text() == _stamp_text(path, hexd):
            return True
    except OSError:
        pass
    if _digest(path, algo) != hexd:
        return False
    _mark_verified(path, hexd)
    return True


# -- the cache ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _folder_lock(folder: Path, how: int) -> Iterator[None]:
    """flock on *folder* itself: shared while a `.part` file is created and locked, exclusive while the sweep
    judges one (no extra file in the cache). A file system without flock on folders gets no lock (as before)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, how)
        yield
    finally:
        os.close(fd)


def _new_part(dest: Path) -> tuple[int, Path]:
    """A new `.part` file beside *dest*, open and locked: held by this run from the moment it exists, so that
    `sweep_partial_downloads` (run by any build that starts, maybe in another thread of this process) never takes
    it for a killed run's."""
    with _folder_lock(dest.parent, fcntl.LOCK_SH):
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            os.unlink(name)
            raise
    return fd, Path(name)


def _write_new(dest: Path, data: bytes, mode: int = 0o644) -> None:
    """Write *dest* through a locked temporary file in its folder, renamed over it (a symlink there is replaced,
    never followed)."""
    fd, tmp = _new_part(dest)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.chmod(tmp, mode)
            os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached_path(where: Path, rel: str, source: str, info: TreeInfo) -> Path:
    """Where the cache keeps *rel* of a tree cached in *where*: inside *where*, whatever symlinks the cache holds
    (one leading out is an error naming the .treeinfo line that named the file)."""
    root = where.resolve()
    dest = root / rel
    if not dest.parent.resolve().is_relative_to(root):
        key = "kernel" if rel == info.kernel else "initrd"
        raise WorkbenchError(
            "Unsafe path in the cache",
            f"{rel} would be written outside {root} (a symlink in the cache leads out)",
            file=source,
            line=line_of(info.text, f"images-{info.arch}", key),
            hint=f"remove {root} and retry",
        )
    return dest


def _keep(dest: Path, where: Path, write: Callable[[Any], None], check: Callable[[Path], None]) -> None:
    """Make *dest*: *write* fills an open temporary file in its folder, *check* vets it, then it is renamed into
    place. Nothing is left behind when either fails; the folder is checked to still lie inside *where*."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WorkbenchError(
            "Cannot write to the cache", f"{dest.parent}: {exc.strerror or exc}", file=str(where)
        ) from None
    if not dest.parent.resolve().is_relative_to(where.resolve()):
        raise WorkbenchError(
            "Unsafe path in the cache",
            f"{dest} would be written outside {where}",
            file=str(where),
            hint=f"remove {where} and retry",
        )
    try:
        fd, tmp = _new_part(dest)  # locked until it is renamed: one nobody holds is a killed run's
    except OSError as exc:
        raise WorkbenchError("Cannot write to the cache", f"{dest}: {exc.strerror or exc}", file=str(where)) from None
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            check(tmp)
            os.chmod(tmp, 0o644)  # a kernel and an initrd are no secrets (the kickstart goes into a private copy)
            os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise WorkbenchError("Cannot write to the cache", f"{dest}: {exc.strerror or exc}", file=str(where)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sweep_partial_downloads(root: Path | None = None) -> list[Path]:
    """Remove the `.part` files under the cache that no live download holds (a killed run's half-written files);
    the paths removed."""
    base = root or cache_root()
    removed: list[Path] = []
    if not base.is_dir():
        return removed
    for path in base.rglob(".*.part"):
        try:
            with _folder_lock(path.parent, fcntl.LOCK_EX):  # no writer between creating and locking its file
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink(missing_ok=True)
                    removed.append(path)
                finally:
                    os.close(fd)
        except OSError:
            continue  # a live download holds it, it is gone already, or it is not ours to remove
    return removed


# -- URL trees ---------------------------------------------------------------------------------------------------


def _open(url: str, headers: dict[str, str] | None = None) -> Any:
    """urlopen *url*; a redirect from https to plain http is refused."""
    resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30)
    final = resp.geturl()
    if urllib.parse.urlsplit(url).scheme == "https" and urllib.parse.urlsplit(final).scheme != "https":
        resp.close()
        raise WorkbenchError(
            "Insecure redirect",
            f"{url} redirects to {shown(final, 200)}",
            hint="an https:// tree must stay on https://",
        )
    return resp


def _fetch(url: str, what: str, limit: int = MAX_TREEINFO) -> bytes:
    try:
        with _open(url) as resp:
            data = bytes(resp.read(limit + 1))
    except urllib.error.HTTPError as exc:
        raise WorkbenchError(
            f"Cannot fetch {what}",
            f"{url}: HTTP {exc.code} {shown(str(exc.reason))}",
            hint="check the install tree URL (it must hold .treeinfo)",
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise WorkbenchError(
            f"Cannot fetch {what}",
            f"{url}: {shown(str(getattr(exc, 'reason', exc)), 200)}",
            hint="check the network, or use --tree DIR|ISO|rehearsal",
        ) from None
    if len(data) > limit:
        raise WorkbenchError(
            f"{what} is too large",
            f"{url}: more than {limit} bytes",
            hint="a .treeinfo is a few KiB: this is not an install tree",
        )
    return data


def _network_error(exc: BaseException, what: str, url: str) -> WorkbenchError:
    """A failed request, explained (the server's own words are escaped and cut short)."""
    if isinstance(exc, urllib.error.HTTPError):
        return WorkbenchError(what, f"{url}: HTTP {exc.code} {shown(str(exc.reason))}")
    return WorkbenchError(what, f"{url}: {shown(str(getattr(exc, 'reason', exc)), 200)}")


#: How many times a download cut short (connection closed mid-body, a short body) is tried in all.
DOWNLOAD_TRIES = 3


class _Interrupted(Exception):
    """A download cut short: worth another try."""

    def __init__(self, error: WorkbenchError) -> None:
        super().__init__(str(error))
        self.error = error


def _download(
    url: str,
    dest: Path,
    where: Path,
    monitor: Monitor,
    label: str,
    check: Callable[[Path], None],
    limit: int = MAX_DOWNLOAD,
) -> int:
    """Stream *url* into a temporary file next to *dest* reporting progress, *check* it, rename it to *dest*;
    return the byte count."""
    done = 0

    def attempt(out: Any) -> None:
        nonlocal done
        headers = {"Range": f"bytes={done}-"} if done else {}
        try:
            resp = _open(url, headers)
        except (OSError, http.client.HTTPException) as exc:
            raise _network_error(exc, f"Cannot download {label}", url) from None
        with resp:
            if done and not (resp.status == 206 and resp.headers.get("Content-Range", "").startswith(
                    f"bytes {done}-")):
                out.seek(0)  # the server cannot resume: start over
                out.truncate()
                done = 0
            total = resp.headers.get("Content-Length")
            total_n = done + float(total) if total and total.isdigit() else None
            monitor.stage("download", f"{label} from {url}")
            while True:
                try:
                    chunk = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _Interrupted(_network_error(exc, f"Cannot download {label}", url)) from None
                if not chunk:
                    break
                if monitor.cancelled():
                    raise WorkbenchError("Cancelled", f"download of {label} cancelled")
                done += len(chunk)
                if done > limit:
                    raise WorkbenchError(
                        f"{label} is too large",
                        f"{url}: more than {limit} bytes",
                        hint="the tree is broken or hostile: use another mirror",
                    )
                out.write(chunk)
                monitor.progress(done, total_n, "B")
            if total_n is not None and done < total_n:
                raise _Interrupted(WorkbenchError(f"Cannot download {label}",
                                                  f"{url}: the server sent {done} of {int(total_n)} bytes"))

    def write(out: Any) -> None:
        for n in range(1, DOWNLOAD_TRIES + 1):
            try:
                attempt(out)
                return
            except _Interrupted as exc:
                if n == DOWNLOAD_TRIES or monitor.cancelled():
                    err = exc.error
                    raise WorkbenchError(err.title, f"{err.message} (after {n} tries)",
                                         hint="the server or the network drops the connection: retry later, "
                                         "or use another mirror") from None
                monitor.note("warning", f"{exc.error.message}; retrying in {n} s ({n + 1} of {DOWNLOAD_TRIES}"
                             + (f", resuming at byte {done})" if done else ")"))
                time.sleep(n)  # a bounded backoff between tries: 1 s, 2 s

    _keep(dest, where, write, check)
    return done


def _plain_http(url: str) -> bool:
    return urllib.parse.urlsplit(url).scheme == "http"


def from_url(
    url: str, arch: str = "x86_64", monitor: Monitor | None = None, cache: Path | None = None, download: bool = True
) -> InstallSource:
    """Resolve an HTTP(S) tree: fetch .treeinfo, download kernel and initrd into the cache unless present.

    With download=False (`plan`) nothing is fetched: the tree is described from the .treeinfo an earlier build
    left in the cache, or as not read yet, with the cache paths the build would fill."""
    mon = monitor or Monitor()
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise WorkbenchError(
            "Unsupported install tree URL", shown(url, 200), hint="use http:// or https://, a DIR or an ISO"
        )
    base = url if url.endswith("/") else url + "/"
    ti_url = urllib.parse.urljoin(base, ".treeinfo")
    where = (cache or cache_root()) / "trees" / hashlib.sha256(base.encode()).hexdigest()[:16]
    if not download:
        src = _described(base, ti_url, arch, where)
    else:
        text = _fetch(ti_url, ".treeinfo").decode("utf-8", "replace")
        info = parse_treeinfo(text, ti_url, arch)
        if _plain_http(base):
            mon.note("warning", PLAIN_HTTP_WARNING)
        total = 0
        paths = {}
        for rel in (info.kernel, info.initrd):
            dest = cached_path(where, rel, ti_url, info)
            expected = expected_checksum(info, rel, ti_url)
            if not _matches(info, rel, dest):
                total += _download(
                    urllib.parse.urljoin(base, rel),
                    dest,
                    where.resolve(),
                    mon,
                    rel,
                    functools.partial(_verify, info, rel, source=ti_url),
                )
                if expected is not None:
                    _mark_verified(dest, expected[1])
            paths[rel] = dest
        try:
            _write_new(cached_path(where, ".treeinfo", ti_url, info), text.encode())
        except OSError as exc:
            raise WorkbenchError(
                "Cannot write to the cache", f"{where}: {exc.strerror or exc}", file=str(where)
            ) from None
        src = InstallSource("url", base, info, paths[info.kernel], paths[info.initrd], downloaded=total)
        if not total:
            src.notes.append(f"kernel and initrd reused from the cache ({where})")
    if _plain_http(base):
        src.notes.append(PLAIN_HTTP_WARNING)
    return src


def _described(base: str, ti_url: str, arch: str, where: Path) -> InstallSource:
    """A URL tree as a plan shows it, without a request: from the cache's .treeinfo (an earlier build's) when
    there is a usable one, else as unread."""
    cached = where / ".treeinfo"
    if _regular(cached) and cached.stat().st_size <= MAX_TREEINFO:
        try:
            info = parse_treeinfo(cached.read_text(encoding="utf-8", errors="replace"), str(cached), arch)
            paths = {rel: cached_path(where, rel, str(cached), info) for rel in (info.kernel, info.initrd)}
        except (WorkbenchError, OSError):
            pass  # an unusable cache entry: described as unread, the build fetches .treeinfo again
        else:
            src = InstallSource("url", base, info, paths[info.kernel], paths[info.initrd])
            have = all(_matches(info, rel, paths[rel]) for rel in (info.kernel, info.initrd))
            src.notes.append(
                f"plan fetched nothing: the tree is described by the .treeinfo an earlier build read "
                f"({cached}); a build reads {ti_url} again"
            )
            src.notes.append(
                "kernel and initrd are in the cache" if have else f"kernel and initrd will be downloaded into {where}"
            )
            return src
    info = TreeInfo(
        family="not read (plan fetches nothing)",
        version="",
        name="not read (plan fetches nothing)",
        arch=arch,
        kernel="images/pxeboot/vmlinuz",
        initrd="images/pxeboot/initrd.img",
        stage2=None,
        checksums={},
        text="",
        sha256="0" * 64,
    )
    src = InstallSource(
        "url", base, info, Path("(not downloaded)/vmlinuz"), Path("(not downloaded)/initrd.img"), unread=True
    )
    src.notes.append(
        f"plan fetched nothing: a build reads {ti_url}, then kernel and initrd will be downloaded into {where}"
    )
    return src


# -- local trees and ISOs ----------------------------------------------------------------------------------------


def from_dir(path: str | os.PathLike[str], arch: str = "x86_64") -> InstallSource:
    """A local tree directory holding .treeinfo (the files it names must lie inside it, symlinks resolved)."""
    root = Path(path).resolve()
    ti = root / ".treeinfo"
    if not ti.is_file():
        raise WorkbenchError(
            "Not an install tree",
            f"{root} has no .treeinfo",
            file=str(root),
            hint="give the directory that holds .treeinfo and images/",
        )
    if not ti.resolve().is_relative_to(root):
        raise WorkbenchError("Unsafe install tree", ".treeinfo is a symlink leading out of the tree", file=str(ti))
    if ti.stat().st_size > MAX_TREEINFO:
        raise WorkbenchError(
            ".treeinfo is too large",
            f"more than {MAX_TREEINFO} bytes",
            file=str(ti),
            hint="a .treeinfo is a few KiB: this is not an install tree",
        )
    text = ti.read_text(encoding="utf-8", errors="replace")
    info = parse_treeinfo(text, str(ti), arch)
    found = {}
    for key, rel in (("kernel", info.kernel), ("initrd", info.initrd)):
        line = line_of(text, f"images-{arch}", key)
        real = (root / rel).resolve()
        if not real.is_relative_to(root):
            raise WorkbenchError(
                "Unsafe install tree",
                f"{rel} named by .treeinfo is a symlink leading out of the tree",
                file=str(ti),
                line=line,
                hint="the tree is broken or hostile",
            )
        if not real.is_file():
            raise WorkbenchError(
                "Install tree is incomplete", f"{rel} named by .treeinfo is missing", file=str(ti), line=line
            )
        _verify(info, rel, real, str(ti))
        found[rel] = real
    return InstallSource("dir", str(root), info, found[info.kernel], found[info.initrd])


def _iso_read(iso: Any, path: str, out: Any = None) -> bytes | None:
    """Read a file from the ISO by its Rock Ridge/Joliet name, else its ISO 9660 name; into *out* (an open
    binary file, then b"" is returned) or into memory."""
    import io

    for kw, name in (("rr_path", path), ("joliet_path", path), ("iso_path", path.upper() + ";1")):
        try:
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, **{kw: name})
        except Exception:  # noqa: BLE001 (pycdlib raises PyCdlibInvalidInput/Exception for absent names)
            continue
        if out is None:
            return buf.getvalue()
        out.write(buf.getbuffer())
        return b""
    return None


def from_iso(path: str | os.PathLike[str], arch: str = "x86_64", cache: Path | None = None) -> InstallSource:
    """A boot or DVD ISO: read .treeinfo, kernel and initrd with pycdlib into the cache."""
    import pycdlib

    iso_path = Path(path).resolve()
    if not iso_path.is_file():
        raise WorkbenchError("ISO not found", str(iso_path), file=str(iso_path))
    iso = pycdlib.PyCdlib()
    try:
        iso.open(str(iso_path))
    except Exception as exc:  # noqa: BLE001 (pycdlib raises its own exception types)
        raise WorkbenchError("Not an ISO 9660 image", shown(str(exc), 200), file=str(iso_path)) from None
    try:
        raw = _iso_read(iso, "/.treeinfo")
        if raw is None:
            raise WorkbenchError(
                "ISO has no .treeinfo",
                "this ISO is not an installer image",
                file=str(iso_path),
                hint="use a CentOS boot.iso or DVD ISO",
            )
        if len(raw) > MAX_TREEINFO:
            raise WorkbenchError(
                ".treeinfo is too large", f"more than {MAX_TREEINFO} bytes", file=f"{iso_path}:/.treeinfo"
            )
        source = f"{iso_path}:/.treeinfo"
        info = parse_treeinfo(raw.decode("utf-8", "replace"), source, arch)
        st = iso_path.stat()
        key = hashlib.sha256(f"{iso_path}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]
        where = (cache or cache_root()) / "iso" / key
        paths = {}
        for name, rel in (("kernel", info.kernel), ("initrd", info.initrd)):
            dest = cached_path(where, rel, source, info)
            if not _matches(info, rel, dest):
                missing: list[str] = []

                def write(out: Any, rel: str = rel, missing: list[str] = missing) -> None:
                    if _iso_read(iso, "/" + rel, out) is None:
                        missing.append(rel)

                def check(tmp: Path, rel: str = rel, name: str = name, missing: list[str] = missing) -> None:
                    if missing:
                        raise WorkbenchError(
                            "ISO is incomplete",
                            f"{rel} named by .treeinfo is missing",
                            file=source,
                            line=line_of(info.text, f"images-{arch}", name),
                        )
                    _verify(info, rel, tmp, source)

                _keep(dest, where.resolve(), write, check)
                expected = expected_checksum(info, rel, source)
                if expected is not None:
                    _mark_verified(dest, expected[1])
            paths[rel] = dest
    finally:
        iso.close()
    return InstallSource("iso", str(iso_path), info, paths[info.kernel], paths[info.initrd], iso=iso_path)


def resolve(
    spec: str, arch: str = "x86_64", monitor: Monitor | None = None, cache: Path | None = None, download: bool = True
) -> InstallSource:
    """URL, directory or ISO path -> InstallSource (`rehearsal` is resolved by the caller to a directory)."""
    if "://" in spec:
        return from_url(spec, arch, monitor, cache, download)
    p = Path(spec)
    if p.is_dir():
        return from_dir(p, arch)
    if p.is_file():
        return from_iso(p, arch, cache)
    raise WorkbenchError(
        "Unknown install source",
        f"{shown(spec, 200)!r} is neither a URL, a directory nor an ISO file",
        hint="use --tree URL|DIR|ISO|rehearsal",
    )


def resolve_for_plan(
    spec: str, arch: str, monitor: Monitor | None = None, download: bool = False, instead: str = "--tree rehearsal"
) -> InstallSource:
    """resolve(); when only planning (no download) a URL tree is described without a request, and when nothing
    is known of it yet its note says plainly that a build needs it. *instead* names the way out."""
    src = resolve(spec, arch, monitor, download=download)
    if src.unread:
        src.notes.append(f"a build needs this tree (or {instead})")
    return src
