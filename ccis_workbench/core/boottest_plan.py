"""The boot-test plan: everything a boot test will do, computed without booting (`ccis-workbench boot-test --plan`).

The image (format and size, read with qemu-img), the volumes (a qcow2 overlay larger than the image, over the
artifact or over an uploaded copy of it; the seed CD-ROM), the seed's files (with the run's secrets shown as
placeholders: they are made when the test runs), the checks that will run and those skipped, and the transient
libvirt domain (XML). Like the build plan, the same object drives the real run: backends/boottest.py creates the
volumes the plan names and starts the domain it renders. Pure: no libvirt import.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import escape, quoteattr

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.model import Check
from ccis_workbench.core.plan import (
    DEFAULT_POOL,
    KVM_PROBE_WINDOW_BOOT,
    NAMESPACE,
    PREFIX,
    domain_type,
    new_build_id,
)
from ccis_workbench.core.seed import SEED_KINDS, VOLUME_LABELS, Credentials, SeedData, new_instance_id, seed_files
from ccis_workbench.core.testspec import CheckPlan, check_to_dict

DOMAIN_PREFIX = f"{PREFIX}boottest-"
#: Shown in the plan where the run's password and SSH key go (they are made when the test runs).
PASSWORD_PLACEHOLDER = "<per-run password>"
KEY_PLACEHOLDER = "<per-run ssh public key>"


@dataclass
class BootTestOptions:
    """How to run the boot test (CLI options and TUI settings)."""

    uri: str = "qemu:///system"
    accel: str = "auto"  # kvm | tcg | auto
    memory_mb: int = 1024
    vcpus: int = 2
    grow_mib: int = 1024
    login_timeout: float = 600.0
    inactivity_timeout: float = 300.0
    keep_on_failure: bool = False
    seed: str = "nocloud"  # nocloud | configdrive | opennebula | none
    hostname: str = "ccis-test"
    pool: str = DEFAULT_POOL
    pool_path: str | None = None
    network: str = "user"
    user: str | None = None  # None: a random ccis-XXXX
    run_id: str | None = None
    collect_timings: bool = True
    #: the image is the workbench's REHEARSAL system: its NoCloud reader takes the plain `user:`/`password:` form
    rehearsal: bool = False
    #: how to log in: "seed" (the per-run user the seed creates), "image" (*image_login*: a user the image itself
    #: has, e.g. Vagrant's vagrant/vagrant, for images that take no seed) or "none" (stop at the login prompt:
    #: the checks are skipped with *no_login_reason*)
    login: str = "seed"
    image_login: tuple[str, str] | None = None
    no_login_reason: str = "the image cannot be logged into here"
    #: "bios" (SeaBIOS, the pc machine) or "uefi" (OVMF on the q35 machine: the image must carry an EFI system
    #: partition with a boot loader); *firmware_path* is OVMF's combined image on the libvirt host
    firmware: str = "bios"
    firmware_path: str = ""

    def validate(self) -> None:
        if self.firmware not in FIRMWARES:
            raise WorkbenchError("Unknown firmware", self.firmware, hint="choose bios or uefi")
        if self.firmware == "uefi" and not self.firmware_path:
            raise WorkbenchError("No UEFI firmware", "a UEFI boot test needs OVMF on the libvirt host",
                                 hint="apt-get install ovmf (Debian, Ubuntu) or dnf install edk2-ovmf (Fedora, "
                                      "CentOS)")
        if self.seed not in (*SEED_KINDS, "none"):
            raise WorkbenchError("Unknown seed", self.seed, hint=f"choose {', '.join(SEED_KINDS)} or none")
        if self.accel not in ("kvm", "tcg", "auto"):
            raise WorkbenchError("Bad accelerator", self.accel, hint="choose kvm, tcg or auto")
        if self.memory_mb < 256:
            raise WorkbenchError("Too little memory", f"{self.memory_mb} MiB", hint="give at least 256 MiB")
        if self.grow_mib < 0:
            raise WorkbenchError("Bad --grow", f"{self.grow_mib} MiB", hint="0 or more MiB")
        if self.login not in ("seed", "image", "none"):
            raise WorkbenchError("Bad login mode", self.login, hint="seed, image or none")
        if self.login == "image" and not self.image_login:
            raise WorkbenchError("No login given", "login mode image needs a user and password")


#: The firmwares a boot test can start an image with.
FIRMWARES = ("bios", "uefi")
#: Where OVMF's combined (code and variables, no NVRAM file to clean up) image is installed, by distribution.
OVMF_PATHS = ("/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd", "/usr/share/edk2/ovmf/OVMF.fd",
              "/usr/share/edk2-ovmf/x64/OVMF.fd")


def find_ovmf(candidates: tuple[str, ...] = OVMF_PATHS) -> str:
    """The first OVMF image that exists on this host ("" when none does)."""
    return next((c for c in candidates if Path(c).is_file()), "")


@dataclass
class ImageInfo:
    path: Path
    format: str
    virtual_size: int


def image_info(path: Path) -> ImageInfo:
    """Format and virtual size of a disk image, from `qemu-img info` (the real tool)."""
    if not path.is_file():
        raise WorkbenchError("Image not found", "the image does not exist", file=str(path))
    qemu_img = shutil.which("qemu-img")
    if qemu_img is None:
        raise WorkbenchError(
            "qemu-img is missing", "the boot test reads the image with qemu-img", hint="apt-get install qemu-utils"
        )
    proc = subprocess.run(
        [qemu_img, "info", "--output=json", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise WorkbenchError(
            "Not a disk image",
            proc.stderr.strip() or "qemu-img cannot read it",
            file=str(path),
            hint="give a qcow2 or raw artifact",
        )
    data = json.loads(proc.stdout)
    fmt = data.get("format")
    if fmt not in ("qcow2", "raw"):
        raise WorkbenchError(
            "Unsupported image format",
            f"{fmt}: the boot test boots qcow2 or raw images",
            file=str(path),
            hint="boot-test the build's qcow2 (or raw) artifact",
        )
    if fmt == "raw":
        # qemu-img calls any file raw: a raw disk that boots has an MBR or protective-MBR boot signature
        with open(path, "rb") as fh:
            head = fh.read(512)
        if len(head) < 512 or head[510:512] != b"\x55\xaa":
            raise WorkbenchError(
                "Not a bootable disk image",
                "the file has no MBR boot signature (55 AA)",
                file=str(path),
                hint="give the build's qcow2 or raw disk artifact",
            )
    return ImageInfo(path.resolve(), fmt, int(data["virtual-size"]))


def is_local_uri(uri: str) -> bool:
    """qemu:///system and qemu:///session are local; qemu+ssh://host/system is not."""
    return not urlparse(uri).netloc


def readable_by_anyone(path: Path) -> bool:
    """Whether any local user (qemu's, libvirt-qemu) can read *path*: o+r on the file, o+x on every folder."""
    try:
        if not path.stat().st_mode & 0o004:
            return False
        return all(p.stat().st_mode & 0o001 for p in path.resolve().parents)
    except OSError:
        return False


def boot_test_name(label: str, run_id: str) -> str:
    """The domain's name: ccis-boottest-<label>-<run id> (the label made safe, at most 32 characters)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")[:32] or "image"
    return f"{DOMAIN_PREFIX}{safe}-{run_id}"


@dataclass
class BootVolume:
    """A volume the boot test creates in its pool (and deletes afterwards)."""

    role: str  # base (an uploaded copy of the image) | disk (the overlay) | seed
    name: str
    format: str
    capacity: int  # bytes; for base and seed: the size uploaded
    #: disk: the backing file (the image's path, or "{base}" for the uploaded copy's path) and its format
    backing: str | None = None
    backing_format: str | None = None
    upload: str | None = None  # base: the local file uploaded; seed: "seed ISO"

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.name,
            "format": self.format,
            "capacity": self.capacity,
            "backing": self.backing,
            "backing_format": self.backing_format,
            "upload": self.upload,
        }


@dataclass
class BootTestPlan:
    """Everything a boot test will do; `domain_xml()` renders its libvirt domain."""

    run_id: str
    name: str
    label: str
    image: ImageInfo
    options: BootTestOptions
    domain_type: str  # kvm | qemu
    volumes: list[BootVolume]
    user: str
    instance_id: str
    seed_files: dict[str, str] = field(default_factory=dict)  # path -> text, with placeholders for the secrets
    checks: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def volume(self, role: str) -> BootVolume | None:
        return next((v for v in self.volumes if v.role == role), None)

    def domain_xml(self, dtype: str | None = None) -> str:
        """The transient test domain: virtio disk, the seed on an IDE CD-ROM (every kernel has ata_piix),
        user-mode networking, serial console, ACPI so poweroff ends it. *dtype* overrides the plan's."""
        o = self.options
        dtype = dtype or self.domain_type
        meta = {
            "id": self.run_id,
            "kind": "boot-test",
            "label": self.label,
            "image": str(self.image.path),
            "seed": o.seed,
        }
        meta_xml = "".join(f"      <ccis:{k}>{escape(str(v))}</ccis:{k}>\n" for k, v in meta.items())
        meta_xml += "".join(f"      <ccis:volume>{escape(v.name)}</ccis:volume>\n" for v in self.volumes)
        disk = self.volume("disk")
        assert disk is not None
        seed_vol = self.volume("seed")
        uefi = o.firmware == "uefi"
        seed = ""
        if seed_vol is not None:
            # q35 has no IDE bus: the seed is a SATA CD-ROM there (ahci is in every kernel the SIG ships)
            seed = (
                f"    <disk type='volume' device='cdrom'>\n      <driver name='qemu' type='raw'/>\n"
                f"      <source pool={quoteattr(o.pool)} volume={quoteattr(seed_vol.name)}/>\n"
                f"      <target dev='{'sda' if uefi else 'hdc'}' bus='{'sata' if uefi else 'ide'}'/>\n"
                f"      <readonly/>\n    </disk>\n"
            )
        # UEFI: OVMF's combined image as a read-only ROM, so there is no NVRAM file to leave behind
        os_xml = (f"  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n"
                  f"    <loader readonly='yes' type='rom'>{escape(o.firmware_path)}</loader>\n"
                  f"    <boot dev='hd'/>\n  </os>\n" if uefi else
                  "  <os>\n    <type arch='x86_64' machine='pc'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n")
        nic = (
            "    <interface type='user'>\n      <model type='virtio'/>\n    </interface>\n"
            if o.network == "user"
            else f"    <interface type='network'>\n      <source network={quoteattr(o.network)}/>\n"
            f"      <model type='virtio'/>\n    </interface>\n"
        )
        cpu = "  <cpu mode='maximum' check='none'/>\n" if dtype == "qemu" else ""
        return (
            f"<domain type='{dtype}'>\n"
            f"  <name>{escape(self.name)}</name>\n"
            f"  <title>{escape(f'CCIS Workbench boot test of {self.label}')}</title>\n"
            f"  <description>Transient boot-test domain created by ccis-workbench; `ccis-workbench gc` removes "
            f"leftovers.</description>\n"
            f"  <metadata>\n    <ccis:boottest xmlns:ccis={quoteattr(NAMESPACE)}>\n{meta_xml}"
            f"    </ccis:boottest>\n  </metadata>\n"
            f"  <memory unit='MiB'>{o.memory_mb}</memory>\n"
            f"  <vcpu>{o.vcpus}</vcpu>\n"
            f"{os_xml}"
            f"  <features>\n    <acpi/>\n    <apic/>\n  </features>\n{cpu}"
            f"  <clock offset='utc'/>\n"
            f"  <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n"
            f"  <on_crash>destroy</on_crash>\n"
            f"  <devices>\n"
            f"    <disk type='volume' device='disk'>\n      <driver name='qemu' type='qcow2' cache='unsafe'/>\n"
            f"      <source pool={quoteattr(o.pool)} volume={quoteattr(disk.name)}/>\n"
            f"      <target dev='vda' bus='virtio'/>\n    </disk>\n"
            f"{seed}{nic}"
            f"    <serial type='pty'>\n      <target port='0'/>\n    </serial>\n"
            f"    <console type='pty'>\n      <target type='serial' port='0'/>\n    </console>\n"
            f"    <rng model='virtio'>\n      <backend model='random'>/dev/urandom</backend>\n    </rng>\n"
            f"    <memballoon model='none'/>\n"
            f"  </devices>\n"
            f"</domain>\n"
        )

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "run_id": self.run_id,
            "domain": self.name,
            "label": self.label,
            "image": {
                "path": str(self.image.path),
                "format": self.image.format,
                "virtual_size": self.image.virtual_size,
            },
            "uri": o.uri,
            "accel": o.accel,
            "firmware": o.firmware,
            "domain_type": self.domain_type,
            "pool": o.pool,
            "memory_mb": o.memory_mb,
            "vcpus": o.vcpus,
            "network": o.network,
            "timeouts": {"login": o.login_timeout, "inactivity": o.inactivity_timeout},
            "login": o.login,
            "user": self.user,
            "seed": {
                "kind": o.seed,
                "hostname": o.hostname,
                "instance_id": self.instance_id,
                "label": VOLUME_LABELS.get(o.seed),
                "files": dict(self.seed_files),
            },
            "volumes": [v.to_dict() for v in self.volumes],
            "checks": self.checks,
            "skipped": self.skipped,
            "domain_xml": self.domain_xml(),
            "notes": list(self.notes),
        }

    def render_text(self) -> str:
        """The plan as a person reads it."""
        o = self.options
        i = self.image
        accel = "KVM" if self.domain_type == "kvm" else "TCG"
        lines = [
            f"Boot-test plan {self.run_id} for {self.label}",
            "",
            f"Image: {i.path} ({i.format}, {i.virtual_size / 1048576:.0f} MiB); never written: the guest boots "
            f"an overlay {o.grow_mib} MiB larger",
            f"libvirt: {o.uri}, pool {o.pool}, domain {self.name} ({accel}, accel {o.accel}), "
            f"{o.memory_mb} MiB, {o.vcpus} vCPU, network {o.network}",
            f"Firmware: {'UEFI (OVMF ' + o.firmware_path + ', q35)' if o.firmware == 'uefi' else 'BIOS (SeaBIOS, pc)'}",
            f"Timeouts: login prompt within {o.login_timeout:.0f}s, {o.inactivity_timeout:.0f}s without console output",
            f"Login: {o.login}"
            + (
                f" as {self.user} (created by the seed; password and SSH key made per run)" if o.login == "seed" else ""
            ),
            "",
            "Volumes:",
        ]
        for v in self.volumes:
            extra = f" backed by {v.backing} ({v.backing_format})" if v.backing else ""
            extra += f" <- {v.upload}" if v.upload else ""
            lines.append(f"  {v.name:56} {v.format:5} {v.capacity / 1048576:>8.0f} MiB  {v.role}{extra}")
        if o.seed == "none":
            lines += ["", "Seed: none"]
        else:
            lines += [
                "",
                f"Seed: {o.seed} (volume label {VOLUME_LABELS.get(o.seed)}), instance-id "
                f"{self.instance_id}, hostname {o.hostname}",
            ]
            for path, text in self.seed_files.items():
                lines.append(f"  --- {path}")
                lines += [f"  {ln}" for ln in text.rstrip("\n").split("\n")]
        lines += ["", f"Checks ({len(self.checks)}):"]
        for c in self.checks:
            lines.append(f"  {c['id']:36} [{c.get('group', '')}] {c.get('description', '')}")
        if self.skipped:
            lines += ["", f"Skipped ({len(self.skipped)}):"]
            lines += [f"  {s['id']:36} {s['reason']}" for s in self.skipped]
        if self.notes:
            lines += ["", "Notes:"] + [f"  - {n}" for n in self.notes]
        lines += ["", "Domain XML:", self.domain_xml().rstrip()]
        return "\n".join(lines) + "\n"


def _checks(checks: CheckPlan | list[Check]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if isinstance(checks, CheckPlan):
        data = checks.to_dict()
        return list(data["checks"]), list(data["skipped"])
    return [{"group": c.origin.layer if c.origin else "custom", **check_to_dict(c)} for c in checks], []


def _placeholder_credentials(user: str) -> Credentials:
    return Credentials(
        user=user, password=PASSWORD_PLACEHOLDER, public_key=KEY_PLACEHOLDER, workdir=Path("."), private_key=Path(".")
    )


def plan_boot_test(
    image: str | Path,
    checks: CheckPlan | list[Check],
    options: BootTestOptions | None = None,
    *,
    label: str | None = None,
    info: ImageInfo | None = None,
    kvm_available: bool = False,
    kvm_works: bool | None = None,
    instance_id: str | None = None,
) -> BootTestPlan:
    """The plan of a boot test of *image* with *checks*, computed without libvirt (and without booting).

    *info* (default: read with qemu-img), *kvm_available* and *kvm_works* (what is known about KVM guests on the
    libvirt host: see core.plan.domain_type) decide the rest; *instance_id* is fixed in tests for golden files."""
    o = options or BootTestOptions()
    o.validate()
    path = Path(image)
    info = info or image_info(path)
    label = label or path.stem
    run_id = o.run_id or new_build_id()
    name = boot_test_name(label, run_id)
    if o.login == "image" and o.image_login:
        user = o.image_login[0]
    else:
        user = o.user or f"ccis-{secrets.token_hex(3)}"
    iid = instance_id or new_instance_id()
    volumes: list[BootVolume] = []
    notes: list[str] = []
    if is_local_uri(o.uri) and readable_by_anyone(info.path):
        backing = str(info.path)
    else:
        size = info.path.stat().st_size if info.path.exists() else info.virtual_size
        volumes.append(BootVolume("base", f"{name}-base.{info.format}", "raw", size, upload=str(info.path)))
        backing = "{base}"
        notes.append(
            "the image is uploaded into the pool for this run (a remote libvirt host, or a file qemu's "
            "user cannot read), and deleted afterwards"
        )
    capacity = info.virtual_size + o.grow_mib * 1048576
    volumes.append(BootVolume("disk", f"{name}-disk.qcow2", "qcow2", capacity, backing, info.format))
    files: dict[str, str] = {}
    if o.seed != "none":
        seed = SeedData(iid, o.hostname, _placeholder_credentials(user), legacy=o.rehearsal)
        files = {k: v.decode() for k, v in seed_files(o.seed, seed).items()}
        volumes.append(BootVolume("seed", f"{name}-seed.iso", "raw", 0, upload="seed ISO (made when the test runs)"))
    dtype = domain_type(o.accel, kvm_available, kvm_works)
    if dtype == "kvm" and o.accel == "auto":
        notes.append(
            f"accelerator auto -> kvm; if the kernel prints nothing on the console within "
            f"{KVM_PROBE_WINDOW_BOOT:.0f} s, the boot test restarts once under TCG"
        )
    elif o.accel == "auto" and kvm_available and kvm_works is False:
        notes.append("accelerator auto -> tcg: KVM guests did not run on this host before (recorded verdict)")
    selected, skipped = _checks(checks)
    return BootTestPlan(
        run_id=run_id,
        name=name,
        label=label,
        image=info,
        options=o,
        domain_type=dtype,
        volumes=volumes,
        user=user,
        instance_id=iid,
        seed_files=files,
        checks=selected,
        skipped=skipped,
        notes=notes,
    )
