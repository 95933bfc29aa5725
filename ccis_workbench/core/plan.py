"""The build plan: everything a build will do, computed without running anything (`ccis-workbench plan`).

Install source, installer kernel command line, the transient libvirt domain (XML), the storage volumes, and the
artifacts to produce. Like virtinst's `start_install(dry=True)`, the same object drives the real build: the
backend only fills in the volume paths libvirt gives it. Pure: no libvirt import.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.installsource import InstallSource

PREFIX = "ccis-"
NAMESPACE = "https://sigs.centos.org/cloud/ccis-workbench/1"
LOG_CHANNEL = "org.fedoraproject.anaconda.log.0"
DEFAULT_POOL = "ccis-workbench"
ACCELS = ("kvm", "tcg", "auto")
#: format -> (artifact file suffix, description)
FORMAT_FILES: dict[str, tuple[str, str]] = {
    "qcow2": (".qcow2", "qcow2, compressed"),
    "raw": (".raw", "raw disk image"),
    "vmdk": (".vmdk", "VMDK, stream-optimised"),
    "vhd": (".vhd", "VHD, fixed size (rounded up to 1 MiB)"),
    "ova": (".ova", "OVA: OVF descriptor + manifest + stream-optimised VMDK"),
    "gce-tar": (".tar.gz", "GCE image: disk.raw in a gzip'd tar (oldgnu, sparse)"),
    "vagrant-libvirt": (".vagrant-libvirt.box", "Vagrant box for the libvirt provider"),
    "rootfs-tar": (".rootfs.tar.xz", "container root filesystem tar + Containerfile"),
}
#: The %post the workbench appends when a rootfs tar is wanted: tar the installed root onto the export disk.
ROOTFS_EXPORT_POST = """%post --nochroot --erroronfail
# added by ccis-workbench: export the installed root as a tar onto the second disk (/dev/vdb), without the
# kernel-managed mount points and /boot (portable between GNU tar in anaconda and busybox tar)
cd /mnt/sysimage && tar -cf /dev/vdb $(ls -A | grep -v -x -E 'proc|sys|dev|run|boot|lost\\+found')
%end
"""
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class PlanOptions:
    """Choices the user makes on the command line (or in the TUI's build screen)."""

    uri: str = "qemu:///system"
    accel: str = "auto"  # kvm | tcg | auto
    memory_mb: int = 2048
    vcpus: int = 2
    disk_size_mb: int | None = None  # None: the profile's disk_size (GiB)
    network: str = "user"  # "user" or the name of a libvirt network
    pool: str = DEFAULT_POOL
    pool_path: str | None = None  # None: libvirt's images dir + /ccis-workbench
    inactivity_timeout: float = 300.0
    total_timeout: float = 3600.0
    extra_kernel_args: list[str] = field(default_factory=list)
    formats: list[str] | None = None  # None: the target's formats
    output_dir: str = "artifacts"
    build_id: str | None = None
    created: str | None = None  # ISO time; fixed in tests for golden files

    def validate(self) -> None:
        if self.accel not in ACCELS:
            raise WorkbenchError("Bad accelerator", f"--accel {self.accel}: choose kvm, tcg or auto")
        if self.memory_mb < 256:
            raise WorkbenchError("Too little memory", f"{self.memory_mb} MiB", hint="give at least 256 MiB "
                                 "(a real CentOS installer wants 2048)")
        if self.disk_size_mb is not None and self.disk_size_mb < 32:
            raise WorkbenchError("Disk too small", f"{self.disk_size_mb} MiB", hint="give at least 32 MiB")
        for arg in self.extra_kernel_args:
            if any(c in arg for c in "\n\r\0'\"<>&"):
                raise WorkbenchError("Bad kernel argument", repr(arg), hint="no quotes, newlines or markup")
        for f in self.formats or []:
            if f not in FORMAT_FILES:
                raise WorkbenchError("Unknown format", f, hint=f"known formats: {', '.join(FORMAT_FILES)}")


@dataclass
class VolumeSpec:
    """A storage volume the build creates in its pool (and deletes afterwards)."""

    role: str  # kernel | initrd | disk | iso | export
    name: str
    format: str  # raw | qcow2
    capacity: int  # bytes
    upload: str | None = None  # local file uploaded into the volume

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name, "format": self.format, "capacity": self.capacity,
                "upload": self.upload}


@dataclass
class ArtifactSpec:
    kind: str  # a format, or kickstart/console-log/installer-log/packages/manifest/checksum/containerfile
    filename: str
    description: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "filename": self.filename, "description": self.description}


@dataclass
class BuildPlan:
    """Everything `build` will do; `domain_xml()` renders the libvirt domain for given volume paths."""

    build_id: str
    name: str  # domain name: ccis-<profile>-<id>
    profile: str
    release: str
    target: str
    arch: str
    kickstart: str  # exactly what goes into the initrd
    source: InstallSource
    kernel_args: list[str]
    domain_type: str  # kvm | qemu
    options: PlanOptions
    volumes: list[VolumeSpec]
    artifacts: list[ArtifactSpec]
    artifact_dir: str
    created: str
    notes: list[str] = field(default_factory=list)
    #: The composition's choice (release, target, overlays, variables): recorded in manifest.json, so a boot test
    #: of an image built from an unsaved choice applies that choice's checks, from either face.
    choice: dict[str, Any] = field(default_factory=dict)
    #: The catalog the kickstart was composed from: {"path", "commit", "dirty"} (for the provenance attestation).
    catalog: dict[str, Any] = field(default_factory=dict)
    #: OpenPGP key (id, fingerprint or user id) that signs CHECKSUM and the attestation; None: unsigned.
    sign_key: str | None = None
    #: Set when `--accel auto` left KVM for TCG (see `under_tcg`).
    accel_fallback: AccelFallback | None = None
    #: On the rehearsal tree: the %pre/%post commands the rehearsal will stand in for, each with its layer
    #: file:line (ccis_workbench.core.rehearsal_emulation.Emulation); empty for a CentOS tree.
    rehearsal_emulations: list[Any] = field(default_factory=list)
    #: kickstart line -> the layer file:line it came from (the composition's provenance), for failure messages
    kickstart_origins: dict[int, str] = field(default_factory=dict)

    @property
    def kickstart_sha256(self) -> str:
        return hashlib.sha256(self.kickstart.encode()).hexdigest()

    def volume(self, role: str) -> VolumeSpec | None:
        return next((v for v in self.volumes if v.role == role), None)

    @property
    def formats(self) -> list[str]:
        return [a.kind for a in self.artifacts if a.kind in FORMAT_FILES]

    @property
    def cmdline(self) -> str:
        return " ".join(self.kernel_args)

    def default_paths(self) -> dict[str, str]:
        base = self.options.pool_path or default_pool_path(self.options.uri)
        return {v.role: f"{base}/{v.name}" for v in self.volumes}

    def serial_log_path(self) -> str | None:
        """Where libvirt (virtlogd) keeps the serial console, on the libvirt host (system URIs only)."""
        if self.options.uri.split("?")[0].endswith("/system"):
            return f"/var/log/libvirt/qemu/{self.name}-serial.log"
        return None

    @property
    def machine(self) -> str:
        """The install domain's machine: q35 without an HPET, as virt-install makes it (under TCG the guest's
        kernel ran about 1 s longer on `pc`, bench_build.py); `pc` for CentOS 7, whose installer predates q35
        support."""
        return "pc" if self.release == "centos-7" else "q35"

    def domain_xml(self, paths: dict[str, str] | None = None, extra_metadata: dict[str, str] | None = None) -> str:
        """The transient domain: direct kernel boot, virtio disk, serial console with a log file, the installer
        log on a virtio-serial channel, ACPI (so poweroff ends the domain), every ending destroys it."""
        p = paths or self.default_paths()
        o = self.options
        meta = {"id": self.build_id, "profile": self.profile, "release": self.release, "target": self.target,
                "kickstart-sha256": self.kickstart_sha256, "created": self.created,
                "tree": self.source.treeinfo.name, **(extra_metadata or {})}
        meta_xml = "".join(f"      <ccis:{k}>{escape(str(v))}</ccis:{k}>\n" for k, v in meta.items())
        meta_xml += "".join(f"      <ccis:volume role={quoteattr(v.role)}>{escape(v.name)}</ccis:volume>\n"
                            for v in self.volumes)
        disks = []
        disk = self.volume("disk")
        if disk:
            disks.append(_disk_xml(o.pool, disk.name, "disk", "qcow2", "vda", "virtio"))
        export = self.volume("export")
        if export:
            disks.append(_disk_xml(o.pool, export.name, "disk", "raw", "vdb", "virtio"))
        iso = self.volume("iso")
        if iso:
            dev, bus = ("hdc", "ide") if self.machine == "pc" else ("sdc", "sata")  # q35 has no IDE
            disks.append(_disk_xml(o.pool, iso.name, "cdrom", "raw", dev, bus, readonly=True))
        if o.network == "user":
            nic = "    <interface type='user'>\n      <model type='virtio'/>\n    </interface>\n"
        else:
            nic = (f"    <interface type='network'>\n      <source network={quoteattr(o.network)}/>\n"
                   f"      <model type='virtio'/>\n    </interface>\n")
        log = self.serial_log_path()
        serial_log = f"      <log file={quoteattr(log)} append='off'/>\n" if log else ""
        title = f"CCIS Workbench build of {self.profile}" + (" (rehearsal tree)" if self.source.is_rehearsal
                                                              else "")
        return (
            f"<domain type='{self.domain_type}'>\n"
            f"  <name>{escape(self.name)}</name>\n"
            f"  <title>{escape(title)}</title>\n"
            f"  <description>Transient install domain created by ccis-workbench; `ccis-workbench gc` removes "
            f"leftovers.</description>\n"
            f"  <metadata>\n"
            f"    <ccis:build xmlns:ccis={quoteattr(NAMESPACE)}>\n{meta_xml}"
            f"    </ccis:build>\n"
            f"  </metadata>\n"
            f"  <memory unit='MiB'>{o.memory_mb}</memory>\n"
            f"  <vcpu>{o.vcpus}</vcpu>\n"
            f"  <os>\n"
            f"    <type arch='{self.arch}' machine='{self.machine}'>hvm</type>\n"
            f"    <kernel>{escape(p['kernel'])}</kernel>\n"
            f"    <initrd>{escape(p['initrd'])}</initrd>\n"
            f"    <cmdline>{escape(self.cmdline)}</cmdline>\n"
            f"  </os>\n"
            f"  <features>\n    <acpi/>\n    <apic/>\n  </features>\n"
            f"  <clock offset='utc'>\n    <timer name='hpet' present='no'/>\n  </clock>\n"
            f"  <on_poweroff>destroy</on_poweroff>\n"
            f"  <on_reboot>destroy</on_reboot>\n"
            f"  <on_crash>destroy</on_crash>\n"
            f"  <devices>\n"
            f"{''.join(disks)}{nic}"
            f"    <serial type='pty'>\n{serial_log}      <target port='0'/>\n    </serial>\n"
            f"    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n"
            f"    <channel type='unix'>\n      <source mode='bind'/>\n"
            f"      <target type='virtio' name='{LOG_CHANNEL}'/>\n    </channel>\n"
            f"    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n"
            f"    <memballoon model='none'/>\n"
            f"  </devices>\n"
            f"</domain>\n")

    def to_dict(self) -> dict[str, Any]:
        return {
            "build_id": self.build_id, "domain": self.name, "profile": self.profile, "release": self.release,
            "target": self.target, "arch": self.arch, "uri": self.options.uri, "accel": self.options.accel,
            "domain_type": self.domain_type, "source": self.source.to_dict(), "kernel_cmdline": self.cmdline,
            "kickstart_sha256": self.kickstart_sha256, "volumes": [v.to_dict() for v in self.volumes],
            "artifacts": [a.to_dict() for a in self.artifacts], "artifact_dir": self.artifact_dir,
            "timeouts": {"inactivity": self.options.inactivity_timeout, "total": self.options.total_timeout},
            "domain_xml": self.domain_xml(), "notes": self.notes,
            "accel_fallback": self.accel_fallback.to_dict() if self.accel_fallback else None,
        }

    def render_text(self) -> str:
        """The plan as a person reads it."""
        s = self.source
        lines = [f"Build plan {self.build_id} for {self.profile} ({self.release}, target {self.target}, {self.arch})",
                 "",
                 f"Install source: {s.kind} {s.location}",
                 f"  tree: {s.treeinfo.name} (.treeinfo sha256 {s.treeinfo.sha256[:16]})"
                 + ("  [REHEARSAL tree: not CentOS]" if s.is_rehearsal else ""),
                 f"  kernel: {s.kernel}", f"  initrd: {s.initrd} (+ ks.cfg appended as a cpio archive)",
                 "", f"Kernel command line: {self.cmdline}", "",
                 f"libvirt: {self.options.uri}, pool {self.options.pool}, domain {self.name} "
                 f"(type {self.domain_type}, accel {self.options.accel}), {self.options.memory_mb} MiB, "
                 f"{self.options.vcpus} vCPU, network {self.options.network}",
                 f"Timeouts: {self.options.inactivity_timeout:.0f}s without output, "
                 f"{self.options.total_timeout:.0f}s in all", "", "Volumes:"]
        for v in self.volumes:
            size = f"{v.capacity / 1048576:.0f} MiB"
            lines.append(f"  {v.name:48} {v.format:5} {size:>10}  {v.role}"
                         + (f" <- {v.upload}" if v.upload else ""))
        lines += ["", f"Artifacts into {self.artifact_dir}/ (written atomically):"]
        for a in self.artifacts:
            lines.append(f"  {a.filename:48} {a.description}")
        if self.notes:
            lines += ["", "Notes:"] + [f"  - {n}" for n in self.notes]
        if self.rehearsal_emulations:
            lines += ["", "The rehearsal system stands in for (recorded, not faked; a CentOS build runs them):"]
            lines += [f"  - {e.message()}" for e in self.rehearsal_emulations]
        lines += ["", "Domain XML:", self.domain_xml().rstrip()]
        return "\n".join(lines) + "\n"


def _disk_xml(pool: str, volume: str, device: str, fmt: str, dev: str, bus: str, readonly: bool = False) -> str:
    cache = " cache='unsafe'" if device == "disk" else ""
    ro = "      <readonly/>\n" if readonly else ""
    return (f"    <disk type='volume' device='{device}'>\n"
            f"      <driver name='qemu' type='{fmt}'{cache}/>\n"
            f"      <source pool={quoteattr(pool)} volume={quoteattr(volume)}/>\n"
            f"      <target dev='{dev}' bus='{bus}'/>\n{ro}"
            f"    </disk>\n")


def default_pool_path(uri: str) -> str:
    """libvirt's default images directory for *uri*, plus /ccis-workbench."""
    if uri.split("?")[0].endswith("/session"):
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        return f"{base}/libvirt/images/{DEFAULT_POOL}"
    return f"/var/lib/libvirt/images/{DEFAULT_POOL}"


def safe_name(profile_name: str, limit: int = 40) -> str:
    """*profile_name* as the domain and the artifact folder spell it: letters, digits, '_', '.' and '-', at most
    *limit* characters. A longer name keeps its start and ends in 8 hex digits of the whole name's digest, so two
    long names that share their start (one overlay more or less) stay apart."""
    safe = _NAME_OK.sub("-", profile_name).strip("-") or "build"
    if len(safe) <= limit:
        return safe
    digest = hashlib.sha256(profile_name.encode()).hexdigest()[:8]
    return f"{safe[:limit - 9].rstrip('-.')}-{digest}"


def new_build_id(now: _dt.datetime | None = None) -> str:
    """A short id: UTC time plus random hex (sortable, unique enough for one host)."""
    t = now or _dt.datetime.now(_dt.UTC)
    return t.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


def domain_type(accel: str, kvm_available: bool, kvm_works: bool | None = None) -> str:
    """libvirt domain type for the accelerator: kvm, or qemu (TCG). auto picks kvm when the host offers it and
    KVM guests are not known not to run here (*kvm_works* False: a recorded verdict, see `AccelFallback`)."""
    if accel == "kvm":
        return "kvm"
    if accel == "tcg":
        return "qemu"
    return "kvm" if kvm_available and kvm_works is not False else "qemu"


#: How long a KVM guest under `--accel auto` may run without the kernel proper printing on the serial console
#: before it is judged hung and the run restarts under TCG. A running kernel prints "Linux version" within a
#: second or two (about 1 s under TCG here, less under KVM); the rest is margin for a loaded 2-core host and for
#: qemu's own start. A host whose KVM guests hang pays this once: the verdict is remembered.
KVM_PROBE_WINDOW = 15.0
#: The same for a boot test: the image's boot loader (a menu timeout of a few seconds) comes before the kernel.
KVM_PROBE_WINDOW_BOOT = 30.0
#: Output of the kernel proper: its banner, or a printk timestamp at the start of a line. The real-mode setup
#: stub's lines ("Probing EDD (edd=off to disable)... ok", "Decompressing Linux...", "Booting the kernel.")
#: appear even when the kernel then hangs, so they do not count.
KERNEL_OUTPUT_RE = re.compile(r"Linux version \d|(?m:^[^\S\n]*\[\s*\d+\.\d{3,}\] )")


def kernel_output_seen(console_text: str) -> bool:
    """Whether *console_text* holds output of the running kernel (not only the setup stub's or the BIOS')."""
    return KERNEL_OUTPUT_RE.search(console_text.replace("\r", "")) is not None


@dataclass
class AccelFallback:
    """A run under `--accel auto` that left KVM for TCG, and why (recorded in the manifest and the report)."""

    reason: str
    from_accel: str = "kvm"
    to_accel: str = "tcg"
    #: "probe": this run's KVM guest stayed silent; "cached": an earlier run's verdict for this host
    source: str = "probe"

    def to_dict(self) -> dict[str, str]:
        return {"from": self.from_accel, "to": self.to_accel, "reason": self.reason, "source": self.source}

    def message(self) -> str:
        return f"accelerator {self.from_accel} -> {self.to_accel}: {self.reason}"


#: The kernel command line of the accelerator probe: kernel messages on the serial console, and no root file
#: system, so the kernel panics and `panic=-1` reboots at once, which ends the domain (on_reboot destroy).
PROBE_CMDLINE = "console=ttyS0,115200n8 panic=-1"


def probe_domain_xml(name: str, dtype: str, kernel_path: str, memory_mb: int = 256) -> str:
    """A tiny transient domain that boots *kernel_path* with no disk and no network: does a guest run at all?"""
    return (f"<domain type={quoteattr(dtype)}>\n"
            f"  <name>{escape(name)}</name>\n"
            f"  <title>CCIS Workbench accelerator probe</title>\n"
            f"  <memory unit='MiB'>{memory_mb}</memory>\n"
            f"  <vcpu>1</vcpu>\n"
            f"  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n"
            f"    <kernel>{escape(kernel_path)}</kernel>\n"
            f"    <cmdline>{escape(PROBE_CMDLINE)}</cmdline>\n  </os>\n"
            f"  <features>\n    <acpi/>\n    <apic/>\n  </features>\n"
            f"  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>destroy</on_reboot>\n"
            f"  <on_crash>destroy</on_crash>\n"
            f"  <devices>\n"
            f"    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n"
            f"    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n"
            f"    <memballoon model='none'/>\n"
            f"  </devices>\n"
            f"</domain>\n")


def under_tcg(plan: BuildPlan, fallback: AccelFallback) -> BuildPlan:
    """The same plan (same build id, names, volumes and kickstart) with a TCG domain, noting why."""
    return dataclasses.replace(plan, domain_type="qemu", notes=[*plan.notes, fallback.message()],
                               accel_fallback=fallback)


def parse_size_mb(text: str) -> int:
    """'256M', '10G', '1024' (MiB) -> MiB."""
    m = re.fullmatch(r"\s*(\d+)\s*([MmGg](?:i?B)?)?\s*", text)
    if not m:
        raise WorkbenchError("Bad size", repr(text), hint="for example 256M or 10G")
    n = int(m.group(1))
    unit = (m.group(2) or "M")[0].upper()
    return n * 1024 if unit == "G" else n


def installer_kernel_args(source: InstallSource, network: str, extra: list[str] | None = None) -> list[str]:
    """inst.ks=file:/ks.cfg, inst.repo= (a URL tree, `cdrom` for an ISO, the served tree for a local dir),
    console=ttyS0,115200n8, inst.text, then the user's extra arguments."""
    args = ["inst.ks=file:/ks.cfg"]
    if source.kind == "dir":
        args.append("inst.repo=http://{served}/")  # replaced by the backend with the served address
    else:
        args.append(f"inst.repo={source.repo_arg(network)}")
    args += ["console=ttyS0,115200n8", "inst.text"]
    args += list(extra or [])
    return args


def build_kickstart(text: str, formats: list[str]) -> str:
    """The kickstart a build hands the installer for *formats*: the composed *text*, plus the export %post when a
    rootfs tar is wanted (propose recognises both forms as this kickstart)."""
    if "rootfs-tar" in formats:
        return text.rstrip("\n") + "\n\n" + ROOTFS_EXPORT_POST
    return text


def make_plan(composition: Any, profile_name: str, source: InstallSource, options: PlanOptions,
              kvm_available: bool = False, arch: str = "x86_64", kvm_works: bool | None = None) -> BuildPlan:
    """Assemble the plan from a Composition (ccis_workbench.core.compose) and a resolved install source.

    *kvm_works*: what is known about KVM guests on the libvirt host (None: not known; False: a recorded verdict
    says they hang, so auto plans TCG)."""
    options.validate()
    target = composition.target
    release = composition.release
    formats = list(options.formats if options.formats is not None else (target.formats if target else ["qcow2"]))
    if not formats:
        formats = ["qcow2"]
    build_id = options.build_id or new_build_id()
    safe_profile = safe_name(profile_name)
    name = f"{PREFIX}{safe_profile}-{build_id}"
    kickstart = build_kickstart(composition.text, formats)
    notes: list[str] = []
    if "rootfs-tar" in formats:
        notes.append("a %post --nochroot is appended to tar the installed root onto a second disk (rootfs-tar)")
    if source.kind == "dir":
        notes.append("the local tree is served over HTTP on 127.0.0.1 during the build; a guest on user-mode "
                     "networking reaches it at 10.0.2.2 ({served} in the command line)")
    if source.is_rehearsal:
        notes.append("REHEARSAL tree: the installer is the workbench's stand-in; the image is a busybox rehearsal "
                     "system, not CentOS")
    disk_mb = options.disk_size_mb
    if disk_mb is None:
        gib = composition.variables.get("disk_size", 10) if hasattr(composition, "variables") else 10
        disk_mb = int(gib) * 1024
    volumes = [
        VolumeSpec("kernel", f"{name}-vmlinuz", "raw", _size(source.kernel), str(source.kernel)),
        VolumeSpec("initrd", f"{name}-initrd.img", "raw", 0, None),  # size known once the kickstart is appended
        VolumeSpec("disk", f"{name}-disk.qcow2", "qcow2", disk_mb * 1048576),
    ]
    if "rootfs-tar" in formats:
        volumes.append(VolumeSpec("export", f"{name}-export.raw", "raw", disk_mb * 1048576))
    if source.iso is not None:
        volumes.append(VolumeSpec("iso", f"{name}-install.iso", "raw", _size(source.iso), str(source.iso)))
    base = f"{safe_profile}{'-rehearsal' if source.is_rehearsal else ''}.{arch}"
    artifacts = [ArtifactSpec(f, base + FORMAT_FILES[f][0], FORMAT_FILES[f][1]) for f in formats]
    if "rootfs-tar" in formats:
        artifacts.append(ArtifactSpec("containerfile", "Containerfile", "FROM scratch + ADD the rootfs tar"))
    artifacts += [
        ArtifactSpec("kickstart", f"{base}.ks", "the flattened kickstart the installer read"),
        ArtifactSpec("console-log", "console.log", "serial console of the install"),
        ArtifactSpec("installer-log", "installer.log", f"installer log ({LOG_CHANNEL})"),
        ArtifactSpec("packages", "packages.txt", "installed package list (from the installer log)"),
        ArtifactSpec("manifest", "manifest.json", "profile, kickstart sha256, tree identity, tool versions, "
                     "timings"),
        ArtifactSpec("checksum", "CHECKSUM", "SHA256 (file) = hex, CentOS style"),
    ]
    created = options.created or _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    dtype = domain_type(options.accel, kvm_available, kvm_works)
    if dtype == "kvm" and options.accel == "auto":
        notes.append(f"accelerator auto -> kvm; if the kernel prints nothing on the console within "
                     f"{KVM_PROBE_WINDOW:.0f} s, the build restarts once under TCG")
    fallback = None
    if options.accel == "auto" and kvm_available and kvm_works is False:
        fallback = AccelFallback("KVM guests did not run on this host before (recorded verdict)", source="cached")
        notes.append(fallback.message())
    origin_of = getattr(composition, "origin_of", lambda _n: None)
    origins = {n: str(o) for n in range(1, len(getattr(composition, "lines", [])) + 1)
               if (o := origin_of(n)) is not None}
    emulations: list[Any] = []
    if source.is_rehearsal:
        from ccis_workbench.core.rehearsal_emulation import located, plan_emulations

        emulations = located(plan_emulations(kickstart), origin_of)
    return BuildPlan(
        build_id=build_id, name=name, profile=profile_name, release=release.name, target=target.name if target
        else "", arch=arch, kickstart=kickstart, source=source,
        kernel_args=installer_kernel_args(source, options.network, options.extra_kernel_args),
        domain_type=dtype, options=options, volumes=volumes, artifacts=artifacts,
        artifact_dir=os.path.join(options.output_dir, f"{safe_profile}-{build_id}"), created=created,
        notes=notes, accel_fallback=fallback, rehearsal_emulations=emulations,
        kickstart_origins=origins)


def _size(path: Any) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
