"""Turn the installed disk into the target's formats, and write the artifact directory atomically.

Every conversion is an argument list for a real tool (qemu-img, tar); `commands_for` returns them without
running anything so that they can be shown and tested. Everything is produced inside a hidden temporary
directory beside the final one and renamed into place at the end: a failed conversion or a full disk leaves
nothing half-written (docs/architecture.md, "Artifacts").
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import platform
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccis_workbench import __version__
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import DigestCache, nonzero_sha256, sha256_file
from ccis_workbench.core.manifest import Manifest
from ccis_workbench.core.monitor import Monitor

MIB = 1048576
CONVERTED = ("qcow2", "raw", "vmdk", "vhd", "gce-tar", "vagrant-libvirt", "ova")  # made by qemu-img (and tar)
Runner = Callable[[list[str]], str]
Digest = Callable[[Path], str]  # a file's sha256 (hex)


class ArtifactError(WorkbenchError):
    """A conversion failed or the artifact directory could not be written."""


def run_tool(argv: list[str]) -> str:
    """Run one tool (argument list, no shell); its stderr becomes the error message."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ArtifactError("Missing tool", f"{argv[0]} is not installed",
                            hint="apt-get install qemu-utils tar xz-utils") from None
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        text = msg[-1] if msg else f"exit status {proc.returncode}"
        if "No space left" in (proc.stderr or ""):
            raise ArtifactError("Artifact disk is full", text, hint="free space in the output directory")
        raise ArtifactError(f"{Path(argv[0]).name} failed", f"{' '.join(argv)}: {text}")
    return proc.stdout


def tar_fixed(epoch: int) -> list[str]:
    """tar options that make an archive depend on its members' content only: member times SOURCE_DATE_EPOCH,
    owner and group 0 by number (members are named on the command line, so their order is fixed too)."""
    return [f"--mtime=@{epoch}", "--owner=0", "--group=0", "--numeric-owner"]


def source_date_epoch(plan: Any) -> int:
    """The build's SOURCE_DATE_EPOCH: the rehearsal installer's kernel argument, else the environment's, else 0."""
    for arg in getattr(plan, "kernel_args", None) or []:
        if str(arg).startswith("rehearsal.source_date_epoch=") and str(arg).split("=", 1)[1].isdigit():
            return int(str(arg).split("=", 1)[1])
    given = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    return int(given) if given.isdigit() else 0


def commands_for(fmt: str, disk: str, dest: str, workdir: str, epoch: int = 0) -> list[list[str]]:
    """The tool invocations that make *dest* in format *fmt* from *disk* (a qcow2 or raw image).

    OVA, GCE and Vagrant need assembly beyond these commands (descriptor, metadata); see `Producer`. Their tar
    members carry *epoch* as their time (gzip, fed through a pipe, records none).
    """
    if fmt == "qcow2":
        return [["qemu-img", "convert", "-c", "-O", "qcow2", disk, dest]]
    if fmt == "raw":
        return [["qemu-img", "convert", "-O", "raw", disk, dest]]
    if fmt == "vmdk":
        return [["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", disk, dest]]
    if fmt == "vhd":
        return [["qemu-img", "convert", "-O", "vpc", "-o", "subformat=fixed,force_size", disk, dest]]
    if fmt == "gce-tar":
        raw = os.path.join(workdir, "disk.raw")
        return [["qemu-img", "convert", "-O", "raw", disk, raw],
                ["tar", "--format=oldgnu", "-Sczf", dest, *tar_fixed(epoch), "-C", workdir, "disk.raw"]]
    if fmt == "vagrant-libvirt":
        img = os.path.join(workdir, "box.img")
        return [["qemu-img", "convert", "-c", "-O", "qcow2", disk, img],
                ["tar", "-czf", dest, *tar_fixed(epoch), "-C", workdir, "metadata.json", "Vagrantfile", "box.img"]]
    if fmt == "ova":
        return [["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", disk,
                 os.path.join(workdir, "disk1.vmdk")],
                ["tar", "--format=ustar", "-cf", dest, *tar_fixed(epoch), "-C", workdir, "image.ovf", "image.mf",
                 "disk1.vmdk"]]
    raise ArtifactError("Unknown format", fmt)


def utc_now() -> str:
    """Now, as SPDX and SLSA write times: 2026-12-05T07:30:00Z."""
    import datetime

    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def checksum_text(files: list[Path], digest: Digest = sha256_file) -> str:
    """CentOS-style CHECKSUM: a `# name: N bytes` comment and `SHA256 (name) = hex` per file."""
    out = []
    for f in files:
        out.append(f"# {f.name}: {f.stat().st_size} bytes")
        out.append(f"SHA256 ({f.name}) = {digest(f)}")
    return "\n".join(out) + "\n"


def vagrant_metadata(virtual_size: int) -> dict[str, Any]:
    """metadata.json of a libvirt box: virtual_size in whole GB, rounded up."""
    return {"provider": "libvirt", "format": "qcow2", "virtual_size": max(1, -(-virtual_size // (1 << 30)))}


VAGRANTFILE = """# Vagrantfile shipped inside the box (ccis-workbench)
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.driver = "kvm"
  end
end
"""


def ovf_descriptor(name: str, vmdk: str, vmdk_size: int, capacity: int, memory_mb: int = 2048,
                   cpus: int = 2) -> str:
    """A minimal OVF 1.0 descriptor: one stream-optimised disk on a SCSI controller, one NIC."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData">
  <References>
    <File ovf:id="file1" ovf:href="{vmdk}" ovf:size="{vmdk_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disks</Info>
    <Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="{capacity}"
      ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
  </DiskSection>
  <NetworkSection>
    <Info>Networks</Info>
    <Network ovf:name="VM Network"><Description>The VM Network network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine built by ccis-workbench</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="80">
      <Info>The guest operating system</Info>
      <Description>Linux 64-bit</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:ElementName>{memory_mb} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory_mb}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def tar_end(path: Path) -> int:
    """Length of the tar archive at the start of *path* (a raw export disk with zeros after the archive)."""
    with tarfile.open(path, "r:") as tf:
        members = sum(1 for _ in tf)
        if not members:
            raise tarfile.ReadError("the export disk holds no tar archive (only zeros)")
        return tf.offset + 1024  # tarfile.offset is after the last member; two zero blocks end an archive


def write_rootfs_xz(export: Path, dest: Path, epoch: int = 0) -> None:
    """The tar at the start of the export disk, repacked into *dest* as .tar.xz (the zeros after it dropped):
    members in their stored order, with their stored owners (uid/gid/uname/gname), modes and content, and every
    time clamped to *epoch* (SOURCE_DATE_EPOCH), so that two builds of the same root give the same bytes."""
    try:
        tar_end(export)
    except tarfile.TarError as exc:
        raise ArtifactError("No root filesystem tar on the export disk", str(exc),
                            hint="the rootfs %post (added by the plan) did not run: see installer.log") from None
    try:
        with tarfile.open(export, "r|") as fin, lzma.open(dest, "wb", preset=6) as xz, \
                tarfile.open(fileobj=xz, mode="w|", format=tarfile.PAX_FORMAT) as fout:
            for member in fin:
                copy = member.replace(mtime=min(int(member.mtime), epoch), deep=True)
                copy.pax_headers = {k: v for k, v in member.pax_headers.items() if k not in ("atime", "ctime", "mtime")}
                fout.addfile(copy, fin.extractfile(member) if member.isreg() else None)
    except tarfile.TarError as exc:
        raise ArtifactError("Unreadable root filesystem tar on the export disk", str(exc), file=str(export)) from None


VHD_TIME_ZERO = 946684800  # 2000-01-01T00:00:00Z: VHD footers count seconds from there


def vhd_footer(footer: bytes, epoch: int, disk_uuid: bytes) -> bytes:
    """A VHD footer (512 bytes) with its time stamp set to *epoch* (clamped to what the field holds), its UUID
    to *disk_uuid*, and its checksum (one's complement of the byte sum without the checksum field) redone."""
    if len(footer) != 512 or footer[:8] != b"conectix":
        raise ArtifactError("Not a VHD", "the last 512 bytes are not a VHD footer (no 'conectix' cookie)")
    out = bytearray(footer)
    out[24:28] = struct.pack(">I", max(0, min(epoch - VHD_TIME_ZERO, 0xFFFFFFFF)))
    out[68:84] = disk_uuid
    out[64:68] = bytes(4)
    out[64:68] = struct.pack(">I", ~sum(out) & 0xFFFFFFFF)
    return bytes(out)


def make_vhd_reproducible(path: Path, epoch: int) -> None:
    """Replace what qemu-img puts in a VHD footer from the clock and a random source (creation time, UUID) by
    values from SOURCE_DATE_EPOCH and the disk's content: the UUID is made from a digest of the file's non-zero
    data taken with the footer's UUID zeroed. A dynamic VHD's copy of the footer at the start gets the same
    bytes."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(0)
        dynamic = size > 1024 and fh.read(8) == b"conectix"
        fh.seek(size - 512)
        footer = fh.read(512)

        def put(new: bytes) -> None:
            for where in (0, size - 512) if dynamic else (size - 512,):
                fh.seek(where)
                fh.write(new)
            fh.flush()

        put(vhd_footer(footer, epoch, bytes(16)))
        disk_uuid = uuid.UUID(bytes=nonzero_sha256(path, size - 512)[:16], version=5).bytes
        put(vhd_footer(footer, epoch, disk_uuid))


_CID = re.compile(rb"^CID=[0-9a-fA-F]{1,8}$", re.M)  # qemu-img writes it without leading zeros


def make_vmdk_reproducible(path: Path, epoch: int) -> None:
    """Replace the random content ID (CID) in a monolithic VMDK's descriptor by one made from the file's content
    and *epoch* (parentCID stays ffffffff: no parent). The descriptor keeps its place and length (zero-padded)."""
    with open(path, "r+b") as fh:
        head = fh.read(512)
        if head[:4] != b"KDMV":
            raise ArtifactError("Not a VMDK", f"{path.name} has no sparse extent header (KDMV)")
        offset, length = struct.unpack("<QQ", head[28:44])
        fh.seek(offset * 512)
        region = fh.read(length * 512)
        text = region.split(b"\0", 1)[0]
        if len(_CID.findall(text)) != 1 or b"parentCID=ffffffff" not in text:
            raise ArtifactError("Unexpected VMDK descriptor", f"{path.name}: no CID line, or a parent")

        def put(cid: str) -> None:
            new = _CID.sub(b"CID=" + cid.encode(), text)
            fh.seek(offset * 512)
            fh.write(new + bytes(len(region) - len(new)))
            fh.flush()

        if len(text) + 8 > len(region):
            raise ArtifactError("Unexpected VMDK descriptor", f"{path.name}: the descriptor fills its space")
        put("00000000")
        cid = hashlib.sha256(f"{epoch}:{sha256_file(path)}".encode()).hexdigest()[:8]
        put("fffffffe" if cid == "ffffffff" else cid)


def containerfile(rootfs_name: str, title: str) -> str:
    return (f"# {title}\nFROM scratch\nADD {rootfs_name} /\nLABEL org.opencontainers.image.title=\"{title}\"\n"
            "CMD [\"/bin/sh\"]\n")


def qemu_img_virtual_size(path: str, run: Runner = run_tool) -> int:
    info = json.loads(run(["qemu-img", "info", "--output=json", path]))
    return int(info["virtual-size"])


def tool_versions(run: Runner = run_tool) -> dict[str, str]:
    versions = {"ccis-workbench": __version__, "python": platform.python_version()}
    for name, argv in (("qemu-img", ["qemu-img", "--version"]), ("tar", ["tar", "--version"])):
        try:
            versions[name] = run(argv).splitlines()[0].strip()
        except WorkbenchError:
            versions[name] = "missing"
    return versions


@dataclass
class Producer:
    """Produces one build's artifact directory from the downloaded disk (and export disk).

    Each file is hashed once per build (a `DigestCache` shared by the manifest, the provenance subjects and
    CHECKSUM) unless *digest* gives another way to hash a file. Conversions run side by side, at most *jobs* at
    once (None: os.cpu_count())."""

    plan: Any  # BuildPlan
    monitor: Monitor = field(default_factory=Monitor)
    run: Runner = run_tool
    digest: Digest | None = None
    jobs: int | None = None

    def produce(self, disk: Path, *, export: Path | None, console_log: str, installer_log: str,
                packages: list[str], timings: dict[str, float], extra_manifest: dict[str, Any] | None = None) -> Path:
        """Write every artifact of the plan into a temporary directory, then rename it to plan.artifact_dir."""
        plan = self.plan
        final = Path(plan.artifact_dir)
        parent = final.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=parent))
        except OSError as exc:
            raise ArtifactError("Cannot create the artifact directory", exc.strerror or str(exc),
                                file=str(parent)) from None
        try:
            digest = self.digest if self.digest is not None else DigestCache()
            self._produce(tmp, disk, export, console_log, installer_log, packages, timings, extra_manifest or {},
                          digest)
            if final.exists():
                raise ArtifactError("Artifact directory exists", str(final), hint="remove it or use another --output")
            tmp.chmod(0o755)
            os.replace(tmp, final)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            title = "Artifact disk is full" if exc.errno == 28 else "Cannot write artifacts"
            raise ArtifactError(title, exc.strerror or str(exc), file=str(parent),
                                hint="free space there, or choose another --output") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _produce(self, out: Path, disk: Path, export: Path | None, console_log: str, installer_log: str,
                 packages: list[str], timings: dict[str, float], extra: dict[str, Any], digest: Digest) -> None:
        plan = self.plan
        vsize = qemu_img_virtual_size(str(disk), self.run)
        work = out / ".work"
        work.mkdir()
        slow = [(i, art) for i, art in enumerate(plan.artifacts) if art.kind in (*CONVERTED, "rootfs-tar")]
        for _, art in slow:
            if art.kind == "rootfs-tar" and export is None:
                raise ArtifactError("No export disk", "rootfs-tar needs the export volume")
        self._convert_all(out, work, slow, disk, export, vsize, timings)
        if self.monitor.cancelled():
            raise WorkbenchError("Cancelled", "artifact conversion cancelled")
        produced: list[Path] = []
        for art in plan.artifacts:
            dest = out / art.filename
            if art.kind in (*CONVERTED, "rootfs-tar"):
                produced.append(dest)
                continue
            started = time.monotonic()
            if art.kind == "containerfile":
                rootfs = next(a.filename for a in plan.artifacts if a.kind == "rootfs-tar")
                dest.write_text(containerfile(rootfs, f"{plan.profile} ({plan.release})"))
            elif art.kind == "kickstart":
                dest.write_text(plan.kickstart)
            elif art.kind == "console-log":
                dest.write_text(console_log)
            elif art.kind == "installer-log":
                dest.write_text(installer_log)
            elif art.kind == "packages":
                dest.write_text("".join(p + "\n" for p in packages))
            else:
                continue
            timings[f"artifact:{art.filename}"] = round(time.monotonic() - started, 3)
            produced.append(dest)
        shutil.rmtree(work)
        extra = dict(extra)
        if plan.source.is_rehearsal:
            # what the rehearsal stood in for, each with its layer file:line (the plan's provenance)
            from ccis_workbench.core.rehearsal_emulation import parse_emulated

            where = {e.line: e.origin for e in getattr(plan, "rehearsal_emulations", [])}
            extra["rehearsal_emulated"] = [dict(e.to_dict(), origin=where.get(e.line))
                                           for e in parse_emulated(console_log or installer_log)]
        manifest = Manifest(
            build_id=plan.build_id, profile=plan.profile, release=plan.release, target=plan.target,
            arch=plan.arch, kickstart_sha256=plan.kickstart_sha256, install_tree=plan.source.to_dict(),
            rehearsal=plan.source.is_rehearsal, domain=plan.name, uri=plan.options.uri,
            accel=plan.options.accel, domain_type=plan.domain_type, kernel_cmdline=plan.cmdline,
            disk_virtual_size=vsize, tool_versions=tool_versions(self.run), timings=timings,
            artifacts=[{"file": p.name, "size": p.stat().st_size, "sha256": digest(p)} for p in produced],
            choice=dict(plan.choice), extra=dict(extra),
            accel_fallback=plan.accel_fallback.to_dict() if getattr(plan, "accel_fallback", None) else None)
        produced.append(manifest.write(out))
        produced += self._evidence(out, produced, manifest, packages, timings, digest)
        (out / "CHECKSUM").write_text(checksum_text(produced, digest))
        if plan.sign_key:
            self._sign(out, plan.sign_key)

    def _evidence(self, out: Path, produced: list[Path], manifest: Manifest, packages: list[str],
                  timings: dict[str, float], digest: Digest = sha256_file) -> list[Path]:
        """The SBOM (SPDX 2.3, from the installed package list) and the provenance attestation (in-toto + SLSA),
        both covered by CHECKSUM."""
        import socket

        from ccis_workbench.core import provenance, sbom

        plan = self.plan
        images = [a.filename for a in plan.artifacts if a.kind in ("qcow2", "raw", "vmdk", "vhd", "gce-tar",
                                                                   "vagrant-libvirt", "ova", "rootfs-tar")]
        installed = sbom.parse_packages(packages, "packages", strict=False)
        doc = sbom.spdx_document(images[0] if images else plan.name, installed,
                                 created=plan.created, rehearsal=manifest.rehearsal,
                                 kickstart_sha256=plan.kickstart_sha256, tool=f"ccis-workbench-{__version__}")
        sbom_path = out / sbom.SBOM_NAME
        sbom_path.write_text(sbom.sbom_json(doc))
        subjects = {p.name: digest(p) for p in [*produced, sbom_path]}
        deps: list[dict[str, Any]] = [{"name": ".treeinfo", "uri": plan.source.location,
                                       "digest": {"sha256": plan.source.treeinfo.sha256},
                                       "annotations": plan.source.treeinfo.identity()}]
        for role, path in (("kernel", plan.source.kernel), ("initrd", plan.source.initrd)):
            if path and Path(path).is_file():
                deps.append({"name": role, "uri": str(path), "digest": {"sha256": digest(Path(path))}})
        st = provenance.statement(subjects=subjects, manifest=manifest.to_dict(), catalog=dict(plan.catalog),
                                  dependencies=deps, started=plan.created, finished=utc_now(),
                                  host=socket.gethostname())
        prov_path = out / provenance.PROVENANCE_NAME
        prov_path.write_text(provenance.statement_json(st))
        return [sbom_path, prov_path]

    def _sign(self, out: Path, key: str) -> None:
        """A detached, ASCII-armoured OpenPGP signature of CHECKSUM (CHECKSUM.asc), made by gpg."""
        self.monitor.stage("sign", f"CHECKSUM with key {key}")
        self.run(["gpg", "--batch", "--yes", "--local-user", key, "--armor", "--detach-sign", "--output",
                  str(out / "CHECKSUM.asc"), str(out / "CHECKSUM")])

    def _convert_all(self, out: Path, work: Path, slow: list[tuple[int, Any]], disk: Path, export: Path | None,
                     vsize: int, timings: dict[str, float]) -> None:
        """The conversions (and the rootfs repack) at once, as many as there are cores, each in its own work
        folder. The first failure or a cancel stops what has not started; what runs is waited for (its output
        lies in the temporary artifact directory, which the caller removes whole)."""
        if not slow:
            return
        took: dict[str, float] = {}

        def one(index: int, art: Any) -> None:
            dest = out / art.filename
            began = time.monotonic()
            if art.kind == "rootfs-tar":
                if export is None:
                    raise ArtifactError("No export disk", "rootfs-tar needs the export volume")
                write_rootfs_xz(export, dest, source_date_epoch(self.plan))
            else:
                folder = work / f"{index}-{art.kind}"
                folder.mkdir()
                self._convert(art.kind, disk, dest, folder, vsize)
                shutil.rmtree(folder)
            took[art.filename] = round(time.monotonic() - began, 3)

        workers = max(1, min(len(slow), self.jobs or os.cpu_count() or 1))
        with futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="convert") as pool:
            pending: set[futures.Future[None]] = set()
            for index, art in slow:
                kind = "rootfs" if art.kind == "rootfs-tar" else art.kind
                self.monitor.stage("convert", f"{kind}: {art.filename}")
                pending.add(pool.submit(one, index, art))
            try:
                while pending:
                    if self.monitor.cancelled():
                        raise WorkbenchError("Cancelled", "artifact conversion cancelled")
                    done, pending = futures.wait(pending, timeout=0.2, return_when=futures.FIRST_EXCEPTION)
                    for fut in done:
                        fut.result()
            except BaseException:
                for fut in pending:
                    fut.cancel()
                futures.wait(pending)
                raise
        for _, art in slow:
            timings[f"artifact:{art.filename}"] = took[art.filename]

    def _convert(self, fmt: str, disk: Path, dest: Path, work: Path, vsize: int) -> None:
        if fmt == "vhd" and vsize % MIB:
            # VHD for Azure-style imports must be a whole number of MiB: pad a raw copy first.
            raw = work / "padded.raw"
            self.run(["qemu-img", "convert", "-O", "raw", str(disk), str(raw)])
            self.run(["qemu-img", "resize", "-f", "raw", str(raw), str(-(-vsize // MIB) * MIB)])
            disk = raw
        if fmt == "vagrant-libvirt":
            (work / "metadata.json").write_text(json.dumps(vagrant_metadata(vsize)) + "\n")
            (work / "Vagrantfile").write_text(VAGRANTFILE)
        epoch = source_date_epoch(self.plan)
        cmds = commands_for(fmt, str(disk), str(dest), str(work), epoch)
        if fmt == "ova":
            self.run(cmds[0])
            vmdk = work / "disk1.vmdk"
            make_vmdk_reproducible(vmdk, epoch)
            # named after the artifact, not the build's domain (its build id would make each OVA different)
            ovf = ovf_descriptor(dest.name.removesuffix(".ova"), vmdk.name, vmdk.stat().st_size, vsize,
                                 self.plan.options.memory_mb, self.plan.options.vcpus)
            (work / "image.ovf").write_text(ovf)
            (work / "image.mf").write_text(f"SHA256(image.ovf)= {sha256_file(work / 'image.ovf')}\n"
                                           f"SHA256(disk1.vmdk)= {sha256_file(vmdk)}\n")
            self.run(cmds[1])
        else:
            for c in cmds:
                self.run(c)
        if fmt == "vmdk":
            make_vmdk_reproducible(dest, epoch)
        elif fmt == "vhd":
            make_vhd_reproducible(dest, epoch)
        for leftover in ("disk.raw", "box.img", "disk1.vmdk", "image.ovf", "image.mf", "padded.raw",
                         "metadata.json", "Vagrantfile"):
            (work / leftover).unlink(missing_ok=True)
