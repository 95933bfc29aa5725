"""What the boot test is given, and how to get a bootable disk out of it.

An artifact is one of: a disk image (qcow2, raw), a container root file system (.rootfs.tar.xz: checked without
booting), a Vagrant box (.box: a tar holding box.img, a qcow2) or a GCE image (.tar.gz holding disk.raw). Boxes
and GCE tars are unpacked with the real `tar` into a private temporary directory that `TestDisk.cleanup` removes;
the artifact itself is never written.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.installsource import shown

#: artifact kind -> file name endings, in the order an artifact directory is searched
KINDS: dict[str, tuple[str, ...]] = {
    "disk": (".qcow2", ".raw"),
    "rootfs": (".rootfs.tar.xz", ".rootfs.tar"),
    "vagrant-box": (".box",),
    "gce-tar": (".tar.gz",),
}
#: the disk inside each packed kind
INNER_DISK = {"vagrant-box": "box.img", "gce-tar": "disk.raw"}


def artifact_kind(path: Path) -> str:
    """The kind of an artifact file, by its name (then, for a plain .tar, by its members)."""
    name = path.name.lower()
    for kind in ("rootfs", "vagrant-box", "gce-tar", "disk"):
        if name.endswith(KINDS[kind]):
            return kind
    return "disk"  # anything else: qemu-img decides whether it is a disk image


#: The first bytes of a qcow2 image.
QCOW2_MAGIC = b"QFI\xfb"


def check_disk_header(path: Path) -> None:
    """Refuse, before anything is prepared, a file the boot test would find is no disk: neither qcow2 (its magic)
    nor a raw disk with an MBR or protective-MBR boot signature (qemu-img calls any file raw). The same rule as
    the run's own `qemu-img info` check, read from the first sector only."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise WorkbenchError("Cannot read the image", exc.strerror or str(exc), file=str(path)) from None
    if head.startswith(QCOW2_MAGIC) or (len(head) == 512 and head[510:512] == b"\x55\xaa"):
        return
    raise WorkbenchError("Not a disk image", "no qcow2 header, and as a raw disk it has no MBR boot signature "
                         "(55 AA)", file=str(path),
                         hint="give the build's qcow2 or raw disk, its .box, GCE .tar.gz or rootfs tar, or its "
                         "artifact directory")


def find_artifact(d: Path, prefer: str | None = None) -> Path:
    """The artifact to test in a build's directory: of kind *prefer* when given, else the first kind found."""
    kinds = [prefer] if prefer else list(KINDS)
    for kind in kinds:
        for suffix in KINDS[kind]:
            found = sorted(p for p in d.glob(f"*{suffix}") if artifact_kind(p) == kind)
            if found:
                return found[0].resolve()
    wanted = ", ".join(s for k in kinds for s in KINDS[k])
    raise WorkbenchError(
        "Nothing to test",
        f"{d} holds no {wanted} artifact",
        file=str(d),
        hint="boot-test needs one of the build's formats: qcow2, raw, vagrant-libvirt, gce-tar or rootfs-tar",
    )


@dataclass
class TestDisk:
    """A bootable disk for the boot test; `unpacked` when it was taken out of a box or tar (then removed)."""

    path: Path
    source: Path
    kind: str
    unpacked: bool = False
    metadata: dict[str, Any] | None = None

    __test__ = False  # not a pytest class

    def cleanup(self) -> None:
        if self.unpacked:
            shutil.rmtree(self.path.parent, ignore_errors=True)
            self.unpacked = False


#: The most members a box or GCE tar may hold (the build writes two or three).
MAX_MEMBERS = 10_000
#: The most a box's metadata.json may weigh.
MAX_METADATA = 1 << 20


def _member_refused(member: tarfile.TarInfo) -> str | None:
    """Why an archive *member* may not be unpacked, or None: only plain files and folders, with relative names
    that stay inside the work folder, are."""
    name = member.name
    if any(not c.isprintable() for c in name):
        return "its name holds control characters"
    if name.startswith("/"):
        return "its name is an absolute path"
    if ".." in name.split("/"):
        return "its name climbs out with `..`"
    if member.issym():
        return f"it is a symbolic link (to {shown(member.linkname)!r})"
    if member.islnk():
        return f"it is a hard link (to {shown(member.linkname)!r})"
    if member.ischr() or member.isblk():
        return "it is a device"
    if member.isfifo():
        return "it is a FIFO"
    if not (member.isreg() or member.isdir()):
        return f"it is not a plain file or folder (tar type {member.type!r})"
    return None


def checked_members(artifact: Path) -> dict[str, tarfile.TarInfo]:
    """The members of a box or GCE tar by name (without a leading "./"), each checked first: a symlink, hard
    link, device, FIFO, absolute or `..` name is a WorkbenchError naming the archive and the member."""
    try:
        tf = tarfile.open(artifact, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise WorkbenchError("Not a readable tar", shown(str(exc), 200), file=str(artifact)) from None
    found: dict[str, tarfile.TarInfo] = {}
    with tf:
        try:
            while (member := tf.next()) is not None:
                if len(found) >= MAX_MEMBERS:
                    raise WorkbenchError(
                        "Unsafe archive",
                        f"{artifact.name} holds more than {MAX_MEMBERS} members",
                        file=str(artifact),
                        hint="a box or GCE tar holds a few files",
                    )
                why = _member_refused(member)
                name = member.name[2:] if member.name.startswith("./") else member.name
                name = name.rstrip("/") if member.isdir() else name
                if why is None and name in found and not member.isdir():
                    why = "its name appears twice"
                if why:
                    raise WorkbenchError(
                        "Unsafe archive member",
                        f"{shown(member.name)!r} in {artifact.name}: {why}",
                        file=str(artifact),
                        hint="a box or GCE tar holds plain files only; this one is broken or hostile: do not use it",
                    )
                found[name] = member
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise WorkbenchError("Not a readable tar", shown(str(exc), 200), file=str(artifact)) from None
    return found


def disk_for(artifact: Path, workdir: str | None = None) -> TestDisk:
    """A disk to boot from *artifact*: the file itself, or the disk unpacked from a Vagrant box or GCE tar (whose
    members are checked first: no links, devices, FIFOs, absolute or `..` names)."""
    kind = artifact_kind(artifact)
    if kind == "rootfs":
        raise WorkbenchError(
            "A container image does not boot",
            "a rootfs tar is checked as a container",
            file=str(artifact),
            hint="boot-test runs its checks in a container for rootfs tars",
        )
    if kind == "disk":
        return TestDisk(artifact, artifact, kind)
    inner = INNER_DISK[kind]
    members = checked_members(artifact)
    if inner not in members or not members[inner].isreg():
        raise WorkbenchError(
            "No disk in the artifact",
            f"{artifact.name} holds no {inner} (members: {', '.join(shown(n) for n in sorted(members)[:8]) or 'none'})",
            file=str(artifact),
        )
    meta = _metadata(artifact, members) if kind == "vagrant-box" else None
    try:
        tmp = Path(tempfile.mkdtemp(prefix="ccis-boot-test-disk-", dir=workdir))
    except OSError as exc:
        raise WorkbenchError(
            "Cannot unpack here",
            f"no private directory can be made: {exc.strerror or exc}",
            file=workdir or tempfile.gettempdir(),
            hint="give --workdir an existing, writable directory",
        ) from None
    tmp.chmod(0o755)  # qemu runs as another user on most hosts: it must reach the unpacked disk
    try:
        proc = subprocess.run(
            ["tar", "-xSf", str(artifact), "-C", str(tmp), "--no-same-owner", "--", members[inner].name],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        if proc.returncode != 0:
            msg = tool_message(proc.stderr, proc.returncode)
            raise WorkbenchError(
                "Cannot unpack the disk",
                msg,
                file=str(artifact),
                hint="free space in the temporary directory" if "space" in msg else "",
            )
        disk = tmp / inner
        # the mode is changed on the file itself, never through a link (O_NOFOLLOW: a link fails to open)
        try:
            fd = os.open(disk, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise WorkbenchError(
                "Cannot unpack the disk",
                f"{inner} is not a plain file once unpacked ({exc.strerror or exc})",
                file=str(artifact),
            ) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise WorkbenchError(
                    "Cannot unpack the disk", f"{inner} is not a plain file once unpacked", file=str(artifact)
                )
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        return TestDisk(disk, artifact, kind, unpacked=True, metadata=meta)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _metadata(artifact: Path, members: dict[str, tarfile.TarInfo]) -> dict[str, Any] | None:
    """A Vagrant box's metadata.json (checked: a plain file, at most MAX_METADATA bytes, JSON), or None."""
    member = members.get("metadata.json")
    if member is None:
        return None
    where = f"{artifact}:metadata.json"
    if not member.isreg() or member.size > MAX_METADATA:
        raise WorkbenchError(
            "Unusable box metadata", f"metadata.json is not a plain file of at most {MAX_METADATA} bytes", file=where
        )
    try:
        with tarfile.open(artifact, "r:*") as tf:
            fh = tf.extractfile(member)
            raw = fh.read(MAX_METADATA + 1) if fh is not None else b"{}"
        meta = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise WorkbenchError("Unusable box metadata", exc.msg, file=where, line=exc.lineno) from None
    except (UnicodeDecodeError, RecursionError, tarfile.TarError, OSError, EOFError) as exc:
        raise WorkbenchError("Unusable box metadata", shown(str(exc) or type(exc).__name__, 200), file=where) from None
    return meta if isinstance(meta, dict) else None


def tool_message(output: str, code: int | None) -> str:
    """What a failed tool said: the last line of its *output*, else its exit status."""
    return (output.strip().splitlines() or [f"exit status {code}"])[-1]


def tar_members(artifact: Path, *, title: str = "Not a readable tar", hint: str = "") -> list[str]:
    """The member names of a tar (any compression), listed with the real `tar`, as it prints them."""
    try:
        proc = subprocess.run(["tar", "-tf", str(artifact)], capture_output=True, text=True, timeout=600, check=False)
    except FileNotFoundError:
        raise WorkbenchError(
            "tar is missing", "tar lists and unpacks the artifact", hint="apt-get install tar xz-utils"
        ) from None
    if proc.returncode != 0:
        raise WorkbenchError(title, tool_message(proc.stderr, proc.returncode), file=str(artifact), hint=hint)
    return [n for n in proc.stdout.split("\n") if n]


def relative_names(names: list[str]) -> set[str]:
    """Member names without a leading "./"."""
    return {n[2:] if n.startswith("./") else n for n in names}


def kickstart_login(comp: Any) -> tuple[str, str] | None:
    """The first user the merged kickstart creates with a plaintext password (Vagrant's vagrant/vagrant), or None.

    Images without a seed (Vagrant) are logged into with it; such passwords are public conventions, not secrets.
    """
    for u in getattr(comp.handler.user, "userList", []):
        if getattr(u, "password", None) and not getattr(u, "isCrypted", False) and not getattr(u, "lock", False):
            return str(u.name), str(u.password)
    return None


def seed_for(plan: Any, requested: str = "auto", rehearsal: bool = False) -> str:
    """The seed to give: *requested*, or with "auto" the plan's; the REHEARSAL system reads NoCloud only."""
    if requested != "auto":
        return requested
    if rehearsal and plan.seed != "none":
        return "nocloud"
    return str(plan.seed)
