"""Build the REHEARSAL install tree from the host's Debian packages (docs/architecture.md, "The rehearsal tree").

Parts taken from the host: the kernel (`linux-image-amd64`: /boot/vmlinuz-VER and /lib/modules/VER), busybox
(`busybox-static`), extlinux and its MBRs (`extlinux`, `syslinux-common`: mbr.bin and gptmbr.bin), sfdisk, mke2fs,
debugfs, mkfs.fat (`dosfstools`) and mtools with their shared libraries, systemd-boot's EFI binary (`systemd-boot-efi`),
and the host's C compiler (`gcc`, `libc6-dev`), which builds the rehearsal system's small setuid sudo from
files/sudo.c as a static binary. Out of them come two initramfs images written with the project's own cpio
writer:

- the installer initrd (`images/pxeboot/initrd.img`): /init is the rehearsal installer (files/installer.sh), and
  it carries the payload it installs (the rehearsal system's root, with the same kernel and a small boot
  initramfs);
- the boot initramfs of the installed system (files/boot-init.sh): loads the disk modules, mounts root=LABEL=...

Hybrid BIOS + UEFI disks. When the kickstart has `part /boot/efi` (the official Stream 9/10 layout; the catalog
writes it for targets that claim UEFI), the installer partitions GPT: a 1 MiB BIOS boot partition, a 32 MiB EFI
system partition and the root with the legacy-BIOS-bootable attribute. BIOS path: syslinux's gptmbr.bin in the
first 440 bytes boots the partition with that attribute, where extlinux is installed as on an MBR disk. UEFI path:
systemd-boot as EFI/BOOT/BOOTX64.EFI on the ESP (the removable-media path firmware with no boot entry starts), a loader
entry with the same kernel, initrd and arguments as extlinux.conf, the kernel and initrd on the ESP. systemd-boot
is the simplest loader that works here: one small file and two text files, no image to assemble (GRUB's would need
grub-mkimage and modules), and it reads the FAT it sits on. The ESP is written with mkfs.fat and mtools without
being mounted: `mkfs.fat --invariant`, a volume id from SOURCE_DATE_EPOCH and mtools' SOURCE_DATE_EPOCH make it the
same bytes at every build. `reqpart` alone stays BIOS only (MBR), as anaconda's reqpart is on a BIOS-booted install.
Under UEFI the guest is a q35 machine with the seed on SATA, so `ahci` is among the boot modules.

The tree is cached under the user's cache directory, keyed by everything it is made of, so a second call
returns in milliseconds. Everything is labelled "rehearsal"; nothing claims to be CentOS.
"""

from __future__ import annotations

import configparser
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ccis_workbench.core.cachedir import cache_root
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.initrd import CpioEntry, write_cpio
from ccis_workbench.core.monitor import Monitor

#: Bumped whenever the layout of the tree changes (part of the cache key).
BUILDER_VERSION = "4"
RELEASE = "CCIS Workbench rehearsal 0.1"
FILES = Path(__file__).with_name("files")
#: Modules the installer and the installed system load (closure and order from modules.dep).
MODULES = ("virtio_pci", "virtio_rng", "virtio_blk", "virtio_console", "virtio_net", "virtio_scsi", "ext4",
           "crc32c_generic",
           "isofs", "sr_mod", "ata_piix", "ahci", "sd_mod", "vfat", "nls_cp437", "nls_iso8859-1")
#: What the installer itself needs (insmod is slow under TCG: no network, CD-ROM or SCSI for the installer).
INSTALLER_MODULES = ("virtio_pci", "virtio_rng", "virtio_blk", "virtio_console", "ext4", "crc32c_generic")
#: blkdiscard (util-linux): `-z` zeroes the root partition before it is sealed with a WRITE ZEROES request, which
#: qemu turns into zero clusters of the qcow2 (dd of 10 GiB of zeros made the volume 10 GiB, and took a minute)
TOOLS = ("/usr/sbin/sfdisk", "/usr/sbin/mke2fs", "/usr/bin/extlinux", "/usr/sbin/mkfs.fat", "/usr/bin/mtools",
         "/usr/sbin/blkdiscard", "/usr/sbin/debugfs")
#: mtools is one binary that acts as the command it is called as
MTOOLS_COMMANDS = ("mcopy", "mmd")
GCONV_DIR = "/usr/lib/x86_64-linux-gnu/gconv"
GCONV_FILES = ("gconv-modules", "gconv-modules.cache", "gconv-modules.d/gconv-modules-extra.conf", "IBM850.so")
MBR_CANDIDATES = ("/usr/lib/EXTLINUX/mbr.bin", "/usr/lib/syslinux/mbr/mbr.bin")
#: The UEFI boot loader of hybrid images: systemd-boot, as the removable-media path \EFI\BOOT\BOOTX64.EFI
EFI_LOADER_CANDIDATES = ("/usr/lib/systemd/boot/efi/systemd-bootx64.efi",)
#: Applets the rehearsal system provides itself (its own stand-ins win over busybox's).
OWN_COMMANDS = {"usr/bin/systemctl", "usr/bin/rpm", "bin/rpm", "usr/bin/install", "usr/bin/sudo", "bin/sudo"}
#: Tools of a real image that %post scripts call, provided by files/stub in the rehearsal system.
STUBS = ("restorecon", "fixfiles", "setfiles", "semanage", "setsebool", "dnf", "yum", "dracut", "grub2-mkconfig",
         "grub2-install", "grub2-probe", "grub2-mkrelpath", "parted",
         "update-crypto-policies", "authselect", "ssh-keygen", "visudo", "lsblk",
         "systemd-tmpfiles", "useradd", "usermod", "groupadd", "chage", "install", "curl", "growpart",
         "systemd-firstboot", "update-ca-trust", "firewall-offline-cmd", "alternatives", "depmod", "getent",
         "wget", "python", "python2", "python3", "perl", "sshd")
#: Stand-ins in the rehearsal installer's own environment (for %pre and %post --nochroot scripts): what such scripts
#: fetch or run there is recorded as emulated, like in the system (files/stub).
INSTALLER_STUBS = ("curl", "wget", "python3", "python", "dnf", "yum")
APT_HINT = ("apt-get install linux-image-amd64 busybox-static extlinux syslinux-common fdisk e2fsprogs gcc "
            "libc6-dev dosfstools mtools systemd-boot-efi")
#: The rehearsal system's sudo (files/sudo.c) is compiled on the host, statically linked against glibc's libc.a.
SUDO_HINT = "apt-get install gcc libc6-dev"
SUDO_CFLAGS = ("-static", "-Os", "-s", "-Wall")


@dataclass
class HostParts:
    """The host files the tree is made of."""

    kernel_version: str
    vmlinuz: Path
    modules_dir: Path
    busybox: Path
    tools: dict[str, Path]
    mbr: Path
    applets: list[str] = field(default_factory=list)
    #: systemd-boot's EFI binary (the ESP's BOOTX64.EFI) and syslinux's GPT MBR (the BIOS path of a GPT disk)
    efi_loader: Path | None = None
    gptmbr: Path | None = None
    #: the C compiler and the static C library the rehearsal sudo is built with
    cc: Path | None = None
    libc_a: Path | None = None

    def key(self) -> str:
        """A cache key over the builder, its scripts and the identity of every host part."""
        h = hashlib.sha256(BUILDER_VERSION.encode())
        for p in sorted(FILES.iterdir()):
            h.update(p.name.encode() + p.read_bytes())
        compiler = [p for p in (self.cc, self.libc_a) if p is not None]
        hybrid = [p for p in (self.efi_loader, self.gptmbr) if p is not None]
        for p in (self.vmlinuz, self.busybox, self.mbr, self.modules_dir / "modules.dep", *self.tools.values(),
                  *compiler, *hybrid):
            st = p.stat()
            h.update(f"{p}:{st.st_size}:{int(st.st_mtime)}".encode())
        h.update(",".join(MODULES + INSTALLER_MODULES + STUBS + INSTALLER_STUBS + SUDO_CFLAGS
                          + tuple(sorted(OWN_COMMANDS)) + MTOOLS_COMMANDS + GCONV_FILES).encode())
        return h.hexdigest()[:16]


def find_host_parts() -> HostParts:
    """Locate the kernel, modules, busybox and tools on the host, or say which packages to install."""
    kernels = []
    for vmlinuz in Path("/boot").glob("vmlinuz-*"):
        ver = vmlinuz.name[len("vmlinuz-"):]
        if (Path("/lib/modules") / ver / "modules.dep").is_file():
            kernels.append((vmlinuz.stat().st_mtime, ver, vmlinuz))
    if not kernels:
        raise WorkbenchError("No kernel for the rehearsal tree",
                             "no /boot/vmlinuz-VERSION with /lib/modules/VERSION/modules.dep on this host",
                             hint=APT_HINT)
    _, ver, vmlinuz = max(kernels)
    busybox = Path("/bin/busybox") if Path("/bin/busybox").exists() else Path("/usr/bin/busybox")
    if not busybox.exists() or _is_dynamic(busybox):
        raise WorkbenchError("No static busybox", "the rehearsal tree needs a statically linked busybox",
                             hint=APT_HINT)
    tools = {}
    for t in TOOLS:
        if not Path(t).exists():
            raise WorkbenchError("Missing tool for the rehearsal tree", f"{t} is not installed", hint=APT_HINT)
        tools[t] = Path(t)
    mbr = next((Path(m) for m in MBR_CANDIDATES if Path(m).exists()), None)
    if mbr is None:
        raise WorkbenchError("Missing extlinux MBR", "no mbr.bin from syslinux", hint=APT_HINT)
    gptmbr = mbr.with_name("gptmbr.bin")
    if not gptmbr.is_file():
        raise WorkbenchError("Missing extlinux GPT MBR", f"no {gptmbr} from syslinux", hint=APT_HINT)
    efi_loader = next((Path(m) for m in EFI_LOADER_CANDIDATES if Path(m).is_file()), None)
    if efi_loader is None:
        raise WorkbenchError("Missing UEFI boot loader", "no systemd-boot EFI binary (systemd-bootx64.efi): hybrid "
                             "BIOS + UEFI rehearsal images carry it on their EFI system partition", hint=APT_HINT)
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    cc, libc_a = find_compiler()
    return HostParts(ver, vmlinuz, Path("/lib/modules") / ver, busybox, tools, mbr, applets, cc=cc, libc_a=libc_a,
                     efi_loader=efi_loader, gptmbr=gptmbr)


def find_compiler() -> tuple[Path, Path]:
    """The host's gcc and glibc's static libc.a, which the rehearsal sudo is built with, or say what to install."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise WorkbenchError("No C compiler for the rehearsal tree",
                             "gcc is not installed: the rehearsal system's sudo is compiled from "
                             "ccis_workbench/rehearsal/files/sudo.c", hint=SUDO_HINT)
    try:
        out = subprocess.run([gcc, "-print-file-name=libc.a"], capture_output=True, text=True, check=False,
                             timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise WorkbenchError("No C compiler for the rehearsal tree", f"{gcc} does not run: {exc}",
                             hint=SUDO_HINT) from None
    libc_a = Path(out)
    if not libc_a.is_absolute() or not libc_a.is_file():
        raise WorkbenchError("No static C library for the rehearsal tree",
                             "glibc's libc.a (package libc6-dev) is missing: the rehearsal system's sudo is a "
                             "static binary", hint=SUDO_HINT)
    return Path(gcc), libc_a.resolve()


def compile_sudo(parts: HostParts, workdir: Path) -> bytes:
    """files/sudo.c compiled with the host's gcc as a static binary (installed setuid root in the rehearsal
    system as /usr/bin/sudo)."""
    cc = parts.cc or find_compiler()[0]
    out = workdir / "sudo"
    try:
        proc = subprocess.run([str(cc), *SUDO_CFLAGS, "-o", str(out), str(FILES / "sudo.c")],
                              capture_output=True, text=True, check=False, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise WorkbenchError("The rehearsal sudo did not compile", f"{cc}: {exc}", hint=SUDO_HINT) from None
    if proc.returncode != 0 or not out.is_file():
        raise WorkbenchError("The rehearsal sudo did not compile",
                             f"{cc} {' '.join(SUDO_CFLAGS)} files/sudo.c exited with {proc.returncode}: "
                             + proc.stderr.strip()[-2000:], hint=SUDO_HINT)
    if _is_dynamic(out):
        raise WorkbenchError("The rehearsal sudo is not static", f"{cc} made a dynamically linked binary",
                             hint=SUDO_HINT)
    return out.read_bytes()


def _is_dynamic(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    return b"ld-linux" in head


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep as {module name: [dependency .ko paths]}, plus the module's own path under key 'path:NAME'."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        path, sep, rest = line.partition(":")
        if not sep:
            continue
        deps[path] = rest.split()
    return deps


def module_name(path: str) -> str:
    """`kernel/fs/ext4/ext4.ko` -> `ext4` (dashes and underscores are the same for the kernel)."""
    return re.sub(r"\.ko(\.[gx]z|\.zst)?$", "", path.rsplit("/", 1)[-1]).replace("-", "_")


def module_order(modules_dep: str, wanted: tuple[str, ...] | list[str]) -> list[str]:
    """The .ko paths to insmod, dependencies first, for the *wanted* module names (absent ones are skipped:
    they are built into the kernel or missing on this architecture)."""
    deps = parse_modules_dep(modules_dep)
    by_name = {module_name(p): p for p in deps}
    order: list[str] = []
    seen: set[str] = set()

    def visit(path: str) -> None:
        if path in seen:
            return
        seen.add(path)
        # modules.dep lists the full closure; the last entries are the deepest, so visit them first.
        for d in reversed(deps.get(path, [])):
            visit(d)
        order.append(path)

    for name in wanted:
        p = by_name.get(name.replace("-", "_"))
        if p is not None:
            visit(p)
    return order


def shared_libraries(binary: Path) -> list[Path]:
    """The shared libraries *binary* needs (including the loader), from ldd."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False).stdout
    libs = []
    for line in out.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(Path(m.group(1)))
    return libs


class _Tree:
    """Collects cpio members by path; later additions replace earlier ones; parent directories are implied."""

    def __init__(self) -> None:
        self.members: dict[str, CpioEntry] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in self.members:
                self.members[d] = CpioEntry.directory(d)

    def add(self, entry: CpioEntry) -> None:
        name = entry.name.strip("/")
        self._parents(name)
        self.members[name] = CpioEntry(name, entry.mode, entry.data)

    def file(self, path: str, data: bytes, perm: int = 0o644) -> None:
        self.add(CpioEntry.file(path, data, perm))

    def host_file(self, path: str, src: Path, perm: int | None = None) -> None:
        real = src.resolve()
        mode = perm if perm is not None else stat.S_IMODE(real.stat().st_mode)
        self.file(path, real.read_bytes(), mode)

    def dirs(self, *paths: str) -> None:
        for p in paths:
            self.add(CpioEntry.directory(p))

    def symlink(self, path: str, target: str) -> None:
        self.add(CpioEntry.symlink(path, target))

    def entries(self) -> list[CpioEntry]:
        return [self.members[k] for k in sorted(self.members, key=lambda k: (k.count("/"), k))]

    def gz(self) -> bytes:
        raw = io.BytesIO()
        write_cpio(self.entries(), raw)
        return gzip.compress(raw.getvalue(), compresslevel=6, mtime=0)


def hide_applets(busybox: bytes, applets: list[str], hide: set[str]) -> tuple[bytes, list[str]]:
    """*busybox* with the applets named in *hide* renamed in its table of applet names; and those renamed.

    Debian's busybox-static is built with FEATURE_SH_STANDALONE: its shell runs an applet in preference to any
    command of the same name in PATH, so the rehearsal system's own `rpm` (and stubs such as `depmod`) would
    never run by name. Each hidden name keeps its length and its place in the sorted table (its last letters
    change, e.g. rpm -> rpl), so busybox's lookup of every other applet is unchanged. Returns *busybox* as it
    is when the table is not found (another busybox build).
    """
    table = b"\0".join(a.encode() for a in applets) + b"\0"
    start = busybox.find(b"\0" + table)
    if start < 0 or busybox.count(table) != 1:
        return busybox, []
    start += 1
    data = bytearray(busybox)
    names = [a.encode() for a in applets]
    taken = set(names)
    offset, hidden = start, []
    for i, name in enumerate(names):
        if name.decode() in hide:
            prev = names[i - 1] if i else b""
            nxt = names[i + 1] if i + 1 < len(names) else b"\xff"
            for pos in range(len(name) - 1, -1, -1):
                cand = next((c for c in (name[:pos] + bytes([name[pos] + d]) + name[pos + 1:] for d in (-1, 1))
                             if prev < c < nxt and c not in taken and 0x20 < c[pos] < 0x7f), None)
                if cand is not None:
                    data[offset:offset + len(name)] = cand
                    names[i] = cand
                    hidden.append(name.decode())
                    break
        offset += len(name) + 1
    return bytes(data), hidden


def _busybox(t: _Tree, parts: HostParts, prefix: str = "", skip: set[str] | None = None,
             hide: set[str] | None = None) -> None:
    if hide:
        data, _ = hide_applets(parts.busybox.resolve().read_bytes(), [a.rsplit("/", 1)[-1] for a in parts.applets],
                               hide)
        t.file(f"{prefix}bin/busybox", data, 0o755)
    else:
        t.host_file(f"{prefix}bin/busybox", parts.busybox, 0o755)
    for applet in parts.applets:
        if applet == "linuxrc" or applet == "bin/busybox" or (skip and applet in skip):
            continue
        t.symlink(prefix + applet, "/bin/busybox")


def _modules(t: _Tree, parts: HostParts, order: list[str], prefix: str = "") -> None:
    for rel in order:
        t.host_file(f"{prefix}lib/modules/{parts.kernel_version}/{rel}", parts.modules_dir / rel, 0o644)
    t.file(f"{prefix}etc/rehearsal/kver", parts.kernel_version.encode() + b"\n")
    t.file(f"{prefix}etc/rehearsal/modules", ("\n".join(order) + "\n").encode())
    t.file(f"{prefix}etc/rehearsal/release", RELEASE.encode() + b"\n")


def _base_dirs(t: _Tree, prefix: str = "") -> None:
    t.dirs(*(prefix + d for d in ("dev", "proc", "sys", "tmp", "run", "root", "mnt", "etc", "var/log",
                                  "var/tmp", "home", "boot")))
    t.add(CpioEntry.chardev(prefix + "dev/console", 5, 1))


def boot_initramfs(parts: HostParts, order: list[str]) -> bytes:
    """The installed system's initramfs: busybox, the modules, files/boot-init.sh as /init."""
    t = _Tree()
    _base_dirs(t)
    _busybox(t, parts)
    _modules(t, parts, order)
    t.file("init", (FILES / "boot-init.sh").read_bytes(), 0o755)
    return t.gz()


def installer_initrd(parts: HostParts, order: list[str], boot_img: bytes, sudo: bytes) -> bytes:
    """The installer initrd: the rehearsal installer as /init, its tools, and the system it installs."""
    t = _Tree()
    _base_dirs(t)
    _busybox(t, parts, hide=set(INSTALLER_STUBS))  # the stand-ins win over busybox's wget, even in its shell
    _modules(t, parts, order)
    libs: set[Path] = set()
    for dest, src in parts.tools.items():
        t.host_file(dest.lstrip("/"), src, 0o755)
        libs.update(shared_libraries(src))
    for lib in sorted(libs):
        t.host_file(str(lib).lstrip("/"), lib, 0o755)
        if lib.name.startswith("ld-linux"):
            t.host_file(f"lib/x86_64-linux-gnu/{lib.name}", lib, 0o755)
    if Path("/etc/mke2fs.conf").exists():
        t.host_file("etc/mke2fs.conf", Path("/etc/mke2fs.conf"), 0o644)
    t.host_file("usr/lib/EXTLINUX/mbr.bin", parts.mbr, 0o644)
    if parts.gptmbr is not None:
        t.host_file("usr/lib/EXTLINUX/gptmbr.bin", parts.gptmbr, 0o644)
    if parts.efi_loader is not None:
        t.host_file("usr/lib/rehearsal/BOOTX64.EFI", parts.efi_loader, 0o644)
    for name in MTOOLS_COMMANDS:
        t.symlink(f"usr/bin/{name}", "/usr/bin/mtools")
    # mtools converts FAT short names through iconv with its default code page (850): glibc's module for it
    for rel in GCONV_FILES:
        src = Path(GCONV_DIR) / rel
        if src.is_file():
            t.host_file(f"{GCONV_DIR.lstrip('/')}/{rel}", src, 0o644)
    t.file("init", (FILES / "installer.sh").read_bytes(), 0o755)
    t.file("usr/lib/rehearsal/stub", (FILES / "stub").read_bytes(), 0o755)
    for name in INSTALLER_STUBS:
        for d in ("usr/bin/", "usr/sbin/", "bin/", "sbin/"):
            t.members.pop(d + name, None)
        t.symlink(f"usr/sbin/{name}", "/usr/lib/rehearsal/stub")
    _payload(t, parts, boot_img, sudo)
    return t.gz()


def _payload(t: _Tree, parts: HostParts, boot_img: bytes, sudo: bytes) -> None:
    r = "payload/root/"
    _base_dirs(t, r)
    t.dirs(r + "root", r + "var/lib/rehearsal", r + "etc/init.d", r + "usr/lib/rehearsal")
    # the system's own commands and stubs must win over busybox's applets of the same name, even in its shell
    _busybox(t, parts, r, skip=OWN_COMMANDS, hide={c.rsplit("/", 1)[-1] for c in OWN_COMMANDS} | set(STUBS))
    t.host_file(r + "boot/vmlinuz", parts.vmlinuz, 0o644)
    t.file(r + "boot/initrd.img", boot_img, 0o600)
    t.file(r + "etc/init.d/rcS", (FILES / "rcS").read_bytes(), 0o755)
    t.file(r + "usr/lib/rehearsal/nocloud", (FILES / "nocloud").read_bytes(), 0o755)
    t.file(r + "usr/bin/systemctl", (FILES / "systemctl").read_bytes(), 0o755)
    t.file(r + "usr/bin/rpm", (FILES / "rpm").read_bytes(), 0o755)
    # setuid root: it grants root only to users a sudoers rule names (the NoCloud reader writes the seed's)
    t.file(r + "usr/bin/sudo", sudo, 0o4755)
    t.add(CpioEntry.directory(r + "etc/sudoers.d", 0o750))
    t.file(r + "usr/lib/rehearsal/stub", (FILES / "stub").read_bytes(), 0o755)
    for name in STUBS:
        for d in ("usr/bin/", "usr/sbin/", "bin/", "sbin/"):
            t.members.pop(r + d + name, None)  # the stub wins over a busybox applet of the same name
        t.symlink(f"{r}usr/sbin/{name}", "/usr/lib/rehearsal/stub")
    t.file(r + "etc/inittab", b"::sysinit:/etc/init.d/rcS\n"
           b"ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
           b"::ctrlaltdel:/sbin/reboot\n::shutdown:/bin/umount -a -r\n")
    t.file(r + "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    t.file(r + "etc/shadow", b"root:*:19000:0:99999:7:::\n", 0o600)
    t.file(r + "etc/group", b"root:x:0:\nwheel:x:10:\n")
    t.file(r + "etc/fstab", b"LABEL=rehearsal-root / ext4 defaults 0 1\n")
    t.file(r + "etc/issue", b"CCIS Workbench rehearsal system (not CentOS) \\n \\l\n\n")
    t.file(r + "etc/os-release", b'NAME="CCIS Workbench rehearsal"\nID=ccis-rehearsal\nVERSION_ID=0.1\n'
           b'PRETTY_NAME="CCIS Workbench rehearsal system (not CentOS)"\n')
    t.file(r + "etc/rehearsal-release", RELEASE.encode() + b" (not CentOS)\n")
    t.file(r + "etc/hostname", b"localhost.localdomain\n")
    t.file(r + "etc/shells", b"/bin/sh\n/bin/ash\n")


def treeinfo_text(checksums: dict[str, str], timestamp: int) -> str:
    """The `.treeinfo` of the rehearsal tree, in productmd's format."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp["header"] = {"type": "productmd.treeinfo", "version": "1.2"}
    cp["release"] = {"name": "CCIS Workbench rehearsal", "short": "Rehearsal", "version": "0.1",
                     "is_layered": "false"}
    cp["general"] = {"family": "CCIS Workbench rehearsal", "version": "0.1", "name": RELEASE, "arch": "x86_64",
                     "platforms": "x86_64,xen", "packagedir": "", "repository": ".", "timestamp": str(timestamp),
                     "variant": "BaseOS"}
    cp["tree"] = {"arch": "x86_64", "build_timestamp": str(timestamp), "platforms": "x86_64,xen",
                  "variants": "BaseOS"}
    cp["variant-BaseOS"] = {"id": "BaseOS", "name": "BaseOS", "type": "variant", "uid": "BaseOS",
                            "packages": "Packages", "repository": "."}
    cp["images-x86_64"] = {"kernel": "images/pxeboot/vmlinuz", "initrd": "images/pxeboot/initrd.img"}
    cp["images-xen"] = {"kernel": "images/pxeboot/vmlinuz", "initrd": "images/pxeboot/initrd.img"}
    cp["checksums"] = {k: f"sha256:{v}" for k, v in sorted(checksums.items())}
    out = io.StringIO()
    cp.write(out)
    return out.getvalue()


def pvh_kernel(parts: HostParts) -> bytes | None:
    """The kernel as an uncompressed ELF that qemu boots through its PVH entry point, or None.

    Under TCG a Debian bzImage spends about 7 s decompressing itself; qemu loads a PVH-capable vmlinux directly,
    so the rehearsal installer starts in about 2 s. Only for the tree's installer kernel: the installed system
    keeps the bzImage, which extlinux needs.
    """
    config = Path("/boot") / f"config-{parts.kernel_version}"
    try:
        if "CONFIG_PVH=y" not in config.read_text().splitlines():
            return None
    except OSError:
        return None
    data = parts.vmlinuz.read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        return None
    try:
        elf = lzma.LZMADecompressor().decompress(data[start:])
    except lzma.LZMAError:
        return None
    return elf if elf.startswith(b"\x7fELF") else None


def rehearsal_cache(root: Path | None = None) -> Path:
    return (root or cache_root()) / "rehearsal"


def build_tree(cache: Path | None = None, monitor: Monitor | None = None, force: bool = False) -> Path:
    """Return the directory of the rehearsal tree, building it into the cache when it is not there yet."""
    mon = monitor or Monitor()
    parts = find_host_parts()
    base = rehearsal_cache(cache)
    dest = base / parts.key()
    if (dest / ".treeinfo").is_file() and not force:
        return dest
    mon.stage("rehearsal-tree", f"building the rehearsal install tree from kernel {parts.kernel_version}")
    started = time.monotonic()
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=base))
    try:
        dep_text = (parts.modules_dir / "modules.dep").read_text()
        boot_img = boot_initramfs(parts, module_order(dep_text, MODULES))
        sudo = compile_sudo(parts, tmp)
        (tmp / "sudo").unlink()
        initrd = installer_initrd(parts, module_order(dep_text, INSTALLER_MODULES), boot_img, sudo)
        pxe = tmp / "images" / "pxeboot"
        pxe.mkdir(parents=True)
        elf = pvh_kernel(parts)
        if elf is not None:
            (pxe / "vmlinuz").write_bytes(elf)
        else:
            shutil.copyfile(parts.vmlinuz, pxe / "vmlinuz")
        (pxe / "initrd.img").write_bytes(initrd)
        sums = {f"images/pxeboot/{n}": hashlib.sha256((pxe / n).read_bytes()).hexdigest()
                for n in ("vmlinuz", "initrd.img")}
        (tmp / "README.rehearsal").write_text(
            f"{RELEASE}: an install tree built by CCIS Workbench from this host's kernel {parts.kernel_version}\n"
            "and busybox. Its installer is a rehearsal stand-in for anaconda; it installs no CentOS.\n"
            + ("images/pxeboot/vmlinuz is the uncompressed kernel (qemu boots it through PVH: fast under TCG).\n"
               if elf is not None else ""))
        # .treeinfo last: its presence marks a complete tree
        (tmp / ".treeinfo").write_text(treeinfo_text(sums, int(parts.vmlinuz.stat().st_mtime)))
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    mon.note("info", f"rehearsal tree built in {time.monotonic() - started:.1f}s: {dest}")
    return dest
