"""Install sources: an HTTP(S) install tree, a local tree directory, or a boot/DVD ISO.

Each is found through its `.treeinfo` (productmd format: [general]/[tree], [images-ARCH] kernel/initrd,
[stage2] mainimage, [checksums] sha256). Kernel and initrd of a URL tree are downloaded with progress into
the user's cache directory (`$XDG_CACHE_HOME/ccis-workbench`), verified against the `.treeinfo` checksums and
reused by the next build. An ISO is read with pycdlib (no mount, no root) and attached to the guest as a CD-ROM.
"""

from __future__ import annotations

import configparser
import hashlib
import ipaddress
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import sha256_file
from ccis_workbench.core.monitor import Monitor

CHUNK = 1 << 20
#: The address of the host as seen from a guest on qemu's user-mode network (slirp).
USER_NET_HOST = "10.0.2.2"


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/ccis-workbench`, else `~/.cache/ccis-workbench`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccis-workbench"


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
        return {"family": self.family, "version": self.version, "name": self.name, "arch": self.arch,
                "treeinfo_sha256": self.sha256}


def parse_treeinfo(text: str, source: str, arch: str = "x86_64") -> TreeInfo:
    """Parse `.treeinfo` text; errors name *source* and the line."""
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        cp.read_string(text, source)
    except configparser.Error as exc:
        line = getattr(exc, "lineno", 0) or 0
        message = str(exc).splitlines()[0]
        errors = getattr(exc, "errors", None)
        if errors:  # ParsingError: [(lineno, line text), ...]
            line, bad = errors[0]
            message = f"not a `key = value` line: {bad.strip()}"
        raise WorkbenchError(".treeinfo is not valid", message, file=source, line=line,
                             hint="is this the root of an install tree (BaseOS/x86_64/os/)?") from None

    def get(section: str, key: str, default: str | None = None) -> str | None:
        return cp.get(section, key, fallback=default) if cp.has_section(section) else default

    images = f"images-{arch}"
    if not cp.has_section(images):
        raise WorkbenchError(".treeinfo has no images for this architecture",
                             f"no [{images}] section", file=source,
                             hint=f"sections present: {', '.join(cp.sections())}")
    kernel, initrd = get(images, "kernel"), get(images, "initrd")
    if not kernel or not initrd:
        raise WorkbenchError(".treeinfo names no kernel/initrd", f"[{images}] needs kernel and initrd",
                             file=source)
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
        kernel=kernel, initrd=initrd, stage2=get("stage2", "mainimage"),
        checksums=checksums, text=text, sha256=hashlib.sha256(text.encode()).hexdigest())


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
        return {"kind": self.kind, "location": self.location, "kernel": str(self.kernel),
                "initrd": str(self.initrd), "iso": str(self.iso) if self.iso else None,
                "rehearsal": self.is_rehearsal, "tree": self.treeinfo.identity(), "downloaded": self.downloaded}


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


def _verify(info: TreeInfo, rel: str, path: Path, source: str) -> None:
    algo_hex = info.checksums.get(rel)
    if algo_hex is None:
        return
    algo, expected = algo_hex
    if algo != "sha256":
        return
    actual = sha256_file(path)
    if actual != expected:
        raise WorkbenchError("Checksum mismatch", f"{rel}: sha256 {actual} but .treeinfo says {expected}",
                             file=source, hint="the mirror may be syncing: retry later, or use another mirror")


def _stamp_text(path: Path, digest: str) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns} {digest}\n"


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _mark_verified(path: Path, digest: str) -> None:
    """Remember that the cached *path* (size, mtime) has *digest*, so the next build need not hash 80 MB."""
    try:
        _stamp(path).write_text(_stamp_text(path, digest))
    except OSError:
        pass  # only a speed-up


def _matches(info: TreeInfo, rel: str, path: Path) -> bool:
    """Whether the cached *path* is the file .treeinfo names (checked by hash once, then by its stamp)."""
    algo_hex = info.checksums.get(rel)
    if not path.is_file():
        return False
    if algo_hex is None or algo_hex[0] != "sha256":
        return True
    try:
        if _stamp(path).read_text() == _stamp_text(path, algo_hex[1]):
            return True
    except OSError:
        pass
    if sha256_file(path) != algo_hex[1]:
        return False
    _mark_verified(path, algo_hex[1])
    return True


def _fetch(url: str, what: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as exc:
        raise WorkbenchError(f"Cannot fetch {what}", f"{url}: HTTP {exc.code} {exc.reason}",
                             hint="check the install tree URL (it must hold .treeinfo)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WorkbenchError(f"Cannot fetch {what}", f"{url}: {reason}",
                             hint="check the network, or use --tree DIR|ISO|rehearsal") from None


def _download(url: str, dest: Path, monitor: Monitor, label: str) -> int:
    """Stream *url* into *dest* (through a .part file) reporting progress; return the byte count."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    done = 0
    try:
        with urllib.request.urlopen(url, timeout=30) as resp, open(part, "wb") as out:
            total = resp.headers.get("Content-Length")
            total_n = float(total) if total else None
            monitor.stage("download", f"{label} from {url}")
            while chunk := resp.read(CHUNK):
                if monitor.cancelled():
                    raise WorkbenchError("Cancelled", f"download of {label} cancelled")
                out.write(chunk)
                done += len(chunk)
                monitor.progress(done, total_n, "B")
        os.replace(part, dest)
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise WorkbenchError(f"Cannot download {label}", f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise WorkbenchError(f"Cannot download {label}", f"{url}: {getattr(exc, 'reason', exc)}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return done


def from_url(url: str, arch: str = "x86_64", monitor: Monitor | None = None, cache: Path | None = None,
             download: bool = True) -> InstallSource:
    """Resolve an HTTP(S) tree: fetch .treeinfo, download kernel and initrd into the cache unless present
    (with download=False, for `plan`, only .treeinfo is read and the cache paths are returned)."""
    mon = monitor or Monitor()
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise WorkbenchError("Unsupported install tree URL", url, hint="use http:// or https://, a DIR or an ISO")
    base = url if url.endswith("/") else url + "/"
    ti_url = urllib.parse.urljoin(base, ".treeinfo")
    text = _fetch(ti_url, ".treeinfo").decode("utf-8", "replace")
    info = parse_treeinfo(text, ti_url, arch)
    where = (cache or cache_root()) / "trees" / hashlib.sha256(base.encode()).hexdigest()[:16]
    total = 0
    paths = {}
    for rel in (info.kernel, info.initrd):
        dest = where / rel
        if not download:
            paths[rel] = dest
            continue
        if not _matches(info, rel, dest):
            total += _download(urllib.parse.urljoin(base, rel), dest, mon, rel)
            try:
                _verify(info, rel, dest, ti_url)
            except WorkbenchError:
                dest.unlink(missing_ok=True)
                raise
            if info.checksums.get(rel, ("", ""))[0] == "sha256":
                _mark_verified(dest, info.checksums[rel][1])
        paths[rel] = dest
    if download:
        (where / ".treeinfo").write_text(text)
    src = InstallSource("url", base, info, paths[info.kernel], paths[info.initrd], downloaded=total)
    if not download:
        cached = all(_matches(info, rel, paths[rel]) for rel in (info.kernel, info.initrd))
        src.notes.append("kernel and initrd are in the cache" if cached else
                         f"kernel and initrd will be downloaded into {where}")
    elif not total:
        src.notes.append(f"kernel and initrd reused from the cache ({where})")
    return src


def from_dir(path: str | os.PathLike[str], arch: str = "x86_64") -> InstallSource:
    """A local tree directory holding .treeinfo."""
    root = Path(path).resolve()
    ti = root / ".treeinfo"
    if not ti.is_file():
        raise WorkbenchError("Not an install tree", f"{root} has no .treeinfo", file=str(root),
                             hint="give the directory that holds .treeinfo and images/")
    info = parse_treeinfo(ti.read_text(encoding="utf-8", errors="replace"), str(ti), arch)
    for rel in (info.kernel, info.initrd):
        if not (root / rel).is_file():
            raise WorkbenchError("Install tree is incomplete", f"{rel} named by .treeinfo is missing", file=str(ti))
        _verify(info, rel, root / rel, str(ti))
    return InstallSource("dir", str(root), info, root / info.kernel, root / info.initrd)


def _iso_read(iso: Any, path: str) -> bytes | None:
    """Read a file from the ISO by its Rock Ridge/Joliet name, else its ISO 9660 name."""
    import io

    for kw, name in (("rr_path", path), ("joliet_path", path), ("iso_path", path.upper() + ";1")):
        try:
            buf = io.BytesIO()
            iso.get_file_from_iso_fp(buf, **{kw: name})
            return buf.getvalue()
        except Exception:  # noqa: BLE001 (pycdlib raises PyCdlibInvalidInput/Exception for absent names)
            continue
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
        raise WorkbenchError("Not an ISO 9660 image", str(exc), file=str(iso_path)) from None
    try:
        raw = _iso_read(iso, "/.treeinfo")
        if raw is None:
            raise WorkbenchError("ISO has no .treeinfo", "this ISO is not an installer image", file=str(iso_path),
                                 hint="use a CentOS boot.iso or DVD ISO")
        info = parse_treeinfo(raw.decode("utf-8", "replace"), f"{iso_path}:/.treeinfo", arch)
        st = iso_path.stat()
        key = hashlib.sha256(f"{iso_path}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:16]
        where = (cache or cache_root()) / "iso" / key
        paths = {}
        for rel in (info.kernel, info.initrd):
            dest = where / rel
            if not _matches(info, rel, dest):
                data = _iso_read(iso, "/" + rel)
                if data is None:
                    raise WorkbenchError("ISO is incomplete", f"{rel} named by .treeinfo is missing",
                                         file=str(iso_path))
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".part")
                tmp.write_bytes(data)
                os.replace(tmp, dest)
                _verify(info, rel, dest, f"{iso_path}:/.treeinfo")
            paths[rel] = dest
    finally:
        iso.close()
    return InstallSource("iso", str(iso_path), info, paths[info.kernel], paths[info.initrd], iso=iso_path)


def resolve(spec: str, arch: str = "x86_64", monitor: Monitor | None = None, cache: Path | None = None,
            download: bool = True) -> InstallSource:
    """URL, directory or ISO path -> InstallSource (`rehearsal` is resolved by the caller to a directory)."""
    if "://" in spec:
        return from_url(spec, arch, monitor, cache, download)
    p = Path(spec)
    if p.is_dir():
        return from_dir(p, arch)
    if p.is_file():
        return from_iso(p, arch, cache)
    raise WorkbenchError("Unknown install source", f"{spec!r} is neither a URL, a directory nor an ISO file",
                         hint="use --tree URL|DIR|ISO|rehearsal")


def resolve_for_plan(spec: str, arch: str, monitor: Monitor | None = None, download: bool = False,
                     instead: str = "--tree rehearsal") -> InstallSource:
    """resolve(); but when only planning (no download) and a URL tree cannot be reached, a placeholder source
    whose note says so plainly, so that the plan can still be shown offline. *instead* names the way out."""
    try:
        return resolve(spec, arch, monitor, download=download)
    except WorkbenchError as exc:
        if download or "://" not in spec:
            raise
        info = TreeInfo(family="unknown (tree not reachable)", version="", name=spec, arch=arch,
                        kernel="images/pxeboot/vmlinuz", initrd="images/pxeboot/initrd.img",
                        stage2=None, checksums={}, text="", sha256="0" * 64)
        src = InstallSource("url", spec, info, Path("(not downloaded)/vmlinuz"), Path("(not downloaded)/initrd.img"))
        src.notes.append(f"{exc.title}: {exc.message}; a build needs this tree (or {instead})")
        return src
