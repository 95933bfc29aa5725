"""A real cloud-init guest for the boot-test suite: a small bootable Debian disk built with debootstrap.

CentOS images cannot be obtained where this project is tested, so the boot test proves itself on a guest built
from the host distribution's own packages: systemd, cloud-init, openssh-server, a Debian kernel, extlinux on an
MBR disk, a serial console on ttyS0. Like a cloud image it ships an empty machine-id, no SSH host keys and a
locked root, and cloud-init reads NoCloud, ConfigDrive or OpenNebula seeds.

The disk is cached under ~/.cache/ccis-workbench/guests/ (keyed by BUILDER_VERSION, the suite and the package
list); the .debs are kept in guests/debs so that a rebuild downloads nothing. Building needs root (debootstrap,
chroot, one loop mount for extlinux) and Debian's package mirror. Usage:

    python -m tests.guests.debian_cloud [--force]     # prints the path of the qcow2
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

#: Bump when the disk layout or configuration below changes (part of the cache key).
BUILDER_VERSION = "5"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
#: What the guest is made of, on top of debootstrap's minbase. python3-cffi-backend is named because
#: debootstrap's resolver does not follow the virtual package python3-cryptography depends on.
PACKAGES = ("systemd-sysv", "udev", "dbus", "linux-image-amd64", "cloud-init", "python3-cffi-backend",
            "openssh-server", "cloud-guest-utils", "fdisk", "e2fsprogs", "sudo", "ifupdown", "isc-dhcp-client")
#: Kernel modules the guest keeps (plus what they depend on); the other 3000 are deleted to keep the disk small.
MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_rng", "virtio_scsi", "virtio_balloon",
           "sr_mod", "cdrom", "isofs", "ext4", "vfat", "nls_cp437", "nls_iso8859-1", "nls_utf8", "ata_piix",
           "ata_generic", "sd_mod", "crc32c_generic", "autofs4", "binfmt_misc", "sch_fq_codel", "af_packet",
           "qemu_fw_cfg", "evdev", "serio_raw", "i2c_piix4", "button", "efi_pstore", "configfs", "loop")
APT_PACKAGES = ("debootstrap", "e2fsprogs", "fdisk", "extlinux", "syslinux-common", "qemu-utils", "kmod")
MBR_CANDIDATES = ("/usr/lib/EXTLINUX/mbr.bin", "/usr/lib/syslinux/mbr/mbr.bin")
#: The kernel command line of the guest: the serial console last, so /dev/console is ttyS0.
CMDLINE = "ro console=tty0 console=ttyS0,115200n8 net.ifnames=0"
GUEST_NAME = "debian-cloud"


class GuestBuildError(RuntimeError):
    """The guest could not be built; the message says which step and what to install."""


def cache_dir() -> Path:
    """~/.cache/ccis-workbench/guests (XDG_CACHE_HOME respected)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ccis-workbench" / "guests"


def cache_key() -> str:
    data = json.dumps([BUILDER_VERSION, SUITE, PACKAGES, MODULES, CMDLINE])
    return hashlib.sha256(data.encode()).hexdigest()[:12]


def image_path(cache: Path | None = None) -> Path:
    """Where the cached disk is (whether or not it exists yet)."""
    return (cache or cache_dir()) / f"{GUEST_NAME}-{SUITE}-{cache_key()}.qcow2"


def mirror() -> str:
    """$CCIS_DEBIAN_MIRROR, else Debian's own mirror."""
    return os.environ.get("CCIS_DEBIAN_MIRROR") or DEFAULT_MIRROR


def missing_tools() -> list[str]:
    """Host tools the build needs that are not installed (Debian package names)."""
    need = {"debootstrap": "debootstrap", "mke2fs": "e2fsprogs", "sfdisk": "fdisk", "extlinux": "extlinux",
            "qemu-img": "qemu-utils", "depmod": "kmod"}
    missing = [pkg for tool, pkg in need.items() if shutil.which(tool) is None
               and not Path("/usr/sbin", tool).exists() and not Path("/sbin", tool).exists()]
    if not any(Path(p).is_file() for p in MBR_CANDIDATES):
        missing.append("syslinux-common")
    return missing


def build_or_skip() -> Path:
    """The guest image for a test module's fixture: built (or taken from the cache), or the test skipped with
    what is missing (its tools, or root)."""
    import pytest

    if missing_tools():
        pytest.skip(f"apt-get install {' '.join(missing_tools())} to build the Debian guest")
    try:
        return build()
    except GuestBuildError as exc:
        if "needs root" in str(exc):
            pytest.skip(str(exc))
        raise


def build(cache: Path | None = None, *, force: bool = False, log: Callable[[str], None] | None = None) -> Path:
    """Return the cached guest disk, building it first when it is missing (or *force*)."""
    cache = cache or cache_dir()
    out = image_path(cache)
    say = log or (lambda _msg: None)
    if out.exists() and not force:
        return out
    if os.geteuid() != 0:
        raise GuestBuildError("building the Debian guest needs root (debootstrap, chroot, a loop mount)")
    missing = missing_tools()
    if missing:
        raise GuestBuildError(f"missing host tools: apt-get install {' '.join(missing)}")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a second caller then finds the disk
        if out.exists() and not force:
            return out
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
        try:
            _build(work, out, cache / "debs", say)
        finally:
            _unmount_all(work)
            shutil.rmtree(work, ignore_errors=True)
    return out


def _run(args: list[str], what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    except subprocess.CalledProcessError as exc:
        tail = "\n".join((exc.stderr or exc.stdout or "").strip().splitlines()[-15:])
        raise GuestBuildError(f"{what} failed (exit {exc.returncode}): {' '.join(args[:3])} ...\n{tail}") from None


def _build(work: Path, out: Path, debs: Path, say: Callable[[str], None]) -> None:
    root = work / "root"
    debs.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    say(f"debootstrap {SUITE} from {mirror()} (packages cached in {debs})")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", f"--cache-dir={debs}", SUITE,
          str(root), mirror()], "debootstrap")
    say(f"debootstrap done in {time.monotonic() - t0:.0f}s; configuring")
    kver = _kernel_version(root)
    fs_uuid = str(uuid.uuid4())
    _configure(root, kver, fs_uuid)
    _trim(root, kver)
    _chroot_initramfs(root, kver)
    raw = work / "disk.raw"
    size_mb = _disk_size_mb(root)
    say(f"writing a {size_mb} MiB disk (ext4 + extlinux)")
    _make_disk(root, raw, size_mb, fs_uuid, work / "mnt")
    tmp = out.with_name(f".{out.name}.tmp")
    _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(tmp)], "qemu-img convert")
    os.replace(tmp, out)
    for stale in out.parent.glob(f"{GUEST_NAME}-*.qcow2"):
        if stale != out:
            stale.unlink(missing_ok=True)  # an older builder's disk
    say(f"guest ready: {out} ({out.stat().st_size >> 20} MiB) in {time.monotonic() - t0:.0f}s")


def _kernel_version(root: Path) -> str:
    versions = sorted(p.name[len("vmlinuz-"):] for p in (root / "boot").glob("vmlinuz-*"))
    if not versions:
        raise GuestBuildError("debootstrap installed no kernel (linux-image-amd64)")
    return versions[-1]


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    p.chmod(mode)


def _configure(root: Path, kver: str, fs_uuid: str) -> None:
    """Make the tree a cloud image: fstab, boot loader config, network, cloud-init, and the seal."""
    _write(root, "/etc/fstab", f"UUID={fs_uuid} / ext4 rw,errors=remount-ro 0 1\n")
    _write(root, "/etc/hostname", f"{GUEST_NAME}\n")
    _write(root, "/etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {GUEST_NAME}\n::1 localhost ip6-localhost\n")
    _write(root, "/etc/network/interfaces", "auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n")
    (root / "etc/network/interfaces.d").mkdir(parents=True, exist_ok=True)
    _write(root, "/boot/extlinux/extlinux.conf",
           f"SERIAL 0 115200\nDEFAULT debian\nPROMPT 0\nTIMEOUT 1\n\nLABEL debian\n"
           f"  LINUX /boot/vmlinuz-{kver}\n  INITRD /boot/initrd.img-{kver}\n"
           f"  APPEND root=UUID={fs_uuid} {CMDLINE}\n")
    # cloud-init: the seeds the boot test gives, then None so it finishes without one
    _write(root, "/etc/cloud/cloud.cfg.d/90-ccis-datasource.cfg",
           "datasource_list: [ NoCloud, ConfigDrive, OpenNebula, None ]\n")
    # no `locales` package in a minimal guest: cloud-init's locale module would fail
    _write(root, "/etc/cloud/cloud.cfg.d/91-ccis-guest.cfg", "locale: false\n")
    # run cloud-init even if ds-identify finds no seed (it then says so in its status instead of staying off)
    _write(root, "/etc/cloud/ds-identify.cfg", "policy: search,found=all,maybe=all,notfound=enabled\n")
    # initramfs: only the listed modules (small, fast to unpack under TCG)
    _write(root, "/etc/initramfs-tools/conf.d/ccis.conf", "MODULES=list\nCOMPRESS=gzip\n")
    # the CD-ROM drivers too: cloud-init's ds-identify looks for the seed's label before udev loads modules
    _write(root, "/etc/initramfs-tools/modules", "virtio_pci\nvirtio_blk\next4\nata_piix\nsr_mod\nisofs\n")
    # the seal, as a cloud image's %post does: unique per instance, nothing baked in
    _write(root, "/etc/machine-id", "")
    dbus_id = root / "var/lib/dbus/machine-id"
    if dbus_id.exists() or dbus_id.is_symlink():
        dbus_id.unlink()
    dbus_id.parent.mkdir(parents=True, exist_ok=True)
    dbus_id.symlink_to("/etc/machine-id")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "var/lib/systemd/random-seed").unlink(missing_ok=True)
    shadow = root / "etc/shadow"
    shadow.write_text(re.sub(r"^root:[^:]*:", "root:*:", shadow.read_text(), flags=re.M))


def _trim(root: Path, kver: str) -> None:
    """Delete what a test guest never uses: docs, man pages, locales, apt lists, most kernel modules."""
    for rel in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists",
                "var/cache/apt", "var/cache/debconf/templates.dat-old", "var/log/bootstrap.log"):
        p = root / rel
        if p.is_dir():
            for child in p.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif p.exists():
            p.unlink()
    moddir = root / "usr/lib/modules" / kver
    deps: dict[str, list[str]] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, rest = line.partition(":")
        deps[path] = rest.split()
    by_name = {re.sub(r"\.ko(\.[a-z]+)?$", "", Path(p).name).replace("-", "_"): p for p in deps}
    keep: set[str] = set()
    todo = [by_name[m.replace("-", "_")] for m in MODULES if m.replace("-", "_") in by_name]
    while todo:
        p = todo.pop()
        if p not in keep:
            keep.add(p)
            todo.extend(deps.get(p, []))
    for p in deps:
        if p not in keep:
            (moddir / p).unlink(missing_ok=True)
    for d in sorted((moddir / "kernel").rglob("*"), key=lambda x: -len(x.parts)):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    _run(["depmod", "-b", str(root), kver], "depmod")


def _chroot_initramfs(root: Path, kver: str) -> None:
    """Rebuild the initramfs in the guest tree with the short module list (needs /proc in the chroot)."""
    proc = root / "proc"
    _run(["mount", "-t", "proc", "proc", str(proc)], "mount /proc for the chroot")
    try:
        _run(["chroot", str(root), "update-initramfs", "-u", "-k", kver], "update-initramfs",
             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"})
    finally:
        subprocess.run(["umount", str(proc)], check=False, capture_output=True)


def _disk_size_mb(root: Path) -> int:
    used = int(_run(["du", "-sxm", str(root)], "du").stdout.split()[0])
    return ((used * 5 // 4 + 256) + 63) // 64 * 64


def _make_disk(root: Path, raw: Path, size_mb: int, fs_uuid: str, mnt: Path) -> None:
    with open(raw, "wb") as fh:
        fh.truncate((size_mb + 1) * 1048576)
    _run(["sfdisk", "-q", str(raw)], "sfdisk", input="label: dos\nstart=2048, type=83, bootable\n")
    _run(["mke2fs", "-q", "-F", "-t", "ext4", "-O", "^64bit,^metadata_csum", "-E", "offset=1048576",
          "-L", "cloudimg-rootfs", "-U", fs_uuid, "-d", str(root), str(raw), f"{size_mb}M"], "mke2fs")
    mnt.mkdir(exist_ok=True)
    _run(["mount", "-o", "loop,offset=1048576", str(raw), str(mnt)], "loop mount of the new file system")
    try:
        _run(["extlinux", "--install", str(mnt / "boot/extlinux")], "extlinux --install")
    finally:
        _run(["umount", str(mnt)], "umount")
    mbr = next(Path(p) for p in MBR_CANDIDATES if Path(p).is_file()).read_bytes()[:440]
    with open(raw, "r+b") as fh:
        fh.write(mbr)


def _unmount_all(work: Path) -> None:
    """Unmount anything left under *work* after a failure (deepest first)."""
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return
    prefix = str(work.resolve())
    points = [m.split()[1] for m in mounts if len(m.split()) > 1 and m.split()[1].startswith(prefix)]
    for p in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", p], check=False, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when the cached disk exists")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        path = build(force=args.force, log=lambda m: print(f"[{time.monotonic() - t0:5.0f}s] {m}", file=sys.stderr))
    except GuestBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
