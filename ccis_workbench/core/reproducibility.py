"""Reproducibility: compare two builds of the same inputs and name why they differ (pure: no tools run here).

The flow (`flows.rebuild_check`) gathers facts about both builds (artifact sha256s, the raw disk's partition
table, the ext4 superblock and every file's content hash and inode fields, read with debugfs without mounting);
this module compares them and gives each difference a known cause (the usual suspects: timestamps, machine-id,
host keys, rpm database, logs, file-system UUID, container metadata) or none ("UNEXPLAINED"), and renders the
short table `rebuild-check` prints.
"""

from __future__ import annotations

import fnmatch
import re
import struct
from dataclasses import dataclass, field
from typing import Any

#: Artifacts that record a run rather than its result: they differ between two runs by nature.
RUN_RECORDS = {"console.log": "logs (wall-clock times, uptimes, the served tree's port)",
               "installer.log": "logs (wall-clock times, uptimes, the served tree's port)"}

#: Paths inside the root file system and the cause that makes them differ between builds.
SUSPECT_PATHS: list[tuple[str, str]] = [
    ("etc/machine-id", "machine-id"),
    ("var/lib/dbus/machine-id", "machine-id"),
    ("etc/ssh/ssh_host_*", "host keys"),
    ("var/lib/rpm", "rpm database"), ("var/lib/rpm/*", "rpm database"),
    ("var/lib/dnf", "rpm database"), ("var/lib/dnf/*", "rpm database"),
    ("var/lib/rehearsal/packages", "rpm database"),
    ("var/log", "logs"), ("var/log/*", "logs"), ("root/*.log", "logs"), ("tmp/*", "logs"),
    ("var/lib/systemd/random-seed", "random seed"),
    ("var/cache/*", "package cache"),
]

#: Inode fields and their cause.
FIELD_CAUSES = {"ctime": "timestamps", "atime": "timestamps", "mtime": "timestamps", "crtime": "timestamps",
                "generation": "inode generation numbers (random, chosen by the kernel for each new file)",
                "version": "inode change counters (i_version: the kernel counts the writes it made)",
                "inode": "file placement (inode numbers: the order files were created in)",
                "blocks": "file placement (block allocation by the kernel)"}

#: Superblock fields (debugfs `stats` names) and their cause.
SUPERBLOCK_CAUSES = {
    "Filesystem UUID": "file-system UUID", "Directory Hash Seed": "file-system UUID (directory hash seed)",
    "Filesystem created": "timestamps (superblock)", "Last mount time": "timestamps (superblock)",
    "Last write time": "timestamps (superblock)", "Last checked": "timestamps (superblock)",
    "Lifetime writes": "write counter (kilobytes the kernel wrote: depends on when writeback ran)",
    "Lifetime writes (KiB)": "write counter (kilobytes the kernel wrote: depends on when writeback ran)",
    "Free blocks": "file placement (block allocation by the kernel)",
    "Free inodes": "file placement (inode allocation by the kernel)",
    "Mount count": "mount history", "Journal sequence": "journal (transactions the kernel logged)",
    "Journal start": "journal (transactions the kernel logged)",
}

#: Artifact formats whose container has metadata of its own (qemu-img writes it).
CONTAINER_CAUSE = {"qcow2": "qcow2 container metadata", "vmdk": "vmdk container metadata (random CID)",
                   "vhd": "vhd container metadata (creation time, random UUID in the footer)",
                   "ova": "vmdk container metadata (random CID) inside the OVA",
                   "vagrant-libvirt": "tar/gzip container metadata (member times)",
                   "gce-tar": "tar/gzip container metadata (member times)",
                   "rootfs-tar": "tar container metadata (member times)"}

UNEXPLAINED = "UNEXPLAINED"


@dataclass
class Difference:
    """One thing that differs between the build and its rebuild."""

    item: str  # an artifact name, `disk: <part>`, or a path inside the root file system
    what: str  # what differs: sha256, content, mode, mtime, generation, Filesystem UUID ...
    cause: str  # a known cause, or UNEXPLAINED
    detail: str = ""
    expected: bool = False  # a record of the run (logs): it differs by nature, not a reproducibility defect

    @property
    def explained(self) -> bool:
        return self.cause != UNEXPLAINED

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "what": self.what, "cause": self.cause, "detail": self.detail,
                "expected": self.expected, "explained": self.explained}


@dataclass
class ArtifactResult:
    name: str
    first: str
    second: str | None  # None: the rebuild did not produce it

    @property
    def same(self) -> bool:
        return self.first == self.second


@dataclass
class RebuildReport:
    """The comparison of a build with its rebuild."""

    source: str
    rebuild_id: str = ""
    artifacts: list[ArtifactResult] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """Every artifact that is a result (not a log of the run) has the same sha256."""
        return all(a.same for a in self.artifacts if a.name not in RUN_RECORDS)

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if not d.explained]

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "rebuild_id": self.rebuild_id, "identical": self.identical,
                "artifacts": [{"file": a.name, "sha256": a.first, "rebuild_sha256": a.second, "same": a.same}
                              for a in self.artifacts],
                "differences": [d.to_dict() for d in self.differences], "notes": list(self.notes)}

    def render(self, limit: int = 5) -> str:
        """The artifact lines, then a short table of differences grouped by cause."""
        out = [f"rebuild of {self.source}" + (f" (rebuild {self.rebuild_id})" if self.rebuild_id else "")]
        for a in self.artifacts:
            state = "same" if a.same else ("MISSING in the rebuild" if a.second is None else "DIFFERS")
            tag = " (a log of the run)" if a.name in RUN_RECORDS and not a.same else ""
            out.append(f"  {state:7} {a.name}{tag}")
        if self.differences:
            out.append("")
            out.append(table(self.differences, limit))
        for note in self.notes:
            out.append(f"note: {note}")
        verdict = ("IDENTICAL: every image is bit-for-bit the same" if self.identical else
                   f"DIFFERENT: {len(self.differences)} difference(s), "
                   + (f"{len(self.unexplained)} UNEXPLAINED" if self.unexplained else "each with a known cause"))
        out.append(verdict)
        return "\n".join(out) + "\n"


def table(diffs: list[Difference], limit: int = 5) -> str:
    """`cause | count | items` rows, the causes in first-seen order; at most *limit* items named per cause."""
    groups: dict[str, list[Difference]] = {}
    for d in diffs:
        groups.setdefault(d.cause, []).append(d)
    rows = [("cause", "n", "what differs")]
    for cause, items in groups.items():
        names = [f"{d.item} ({d.what})" for d in items[:limit]]
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        rows.append((cause, str(len(items)), ", ".join(names) + more))
    width = max(len(r[0]) for r in rows)
    lines = [f"{r[0]:<{width}}  {r[1]:>4}  {r[2]}" for r in rows]
    lines.insert(1, "-" * min(120, width + 6 + max(len(r[2]) for r in rows)))
    return "\n".join(lines)


def path_cause(path: str) -> str | None:
    """The usual suspect a root file system path belongs to, or None."""
    p = path.strip("/")
    for pattern, cause in SUSPECT_PATHS:
        if fnmatch.fnmatchcase(p, pattern):
            return cause
    return None


@dataclass
class FileFacts:
    """What debugfs says about one path of the root file system (content hash for files, target for links)."""

    kind: str  # regular, directory, symlink, other
    mode: str = ""
    uid: str = ""
    gid: str = ""
    size: int = 0
    digest: str = ""  # sha256 of a regular file's content, the target of a link
    fields: dict[str, str] = field(default_factory=dict)  # inode, generation, ctime, atime, mtime, crtime


def compare_files(first: dict[str, FileFacts], second: dict[str, FileFacts]) -> list[Difference]:
    """Every path added, removed, or differing in content, owner, mode or inode fields, with its cause."""
    diffs: list[Difference] = []
    for path in sorted(set(first) | set(second)):
        a, b = first.get(path), second.get(path)
        suspect = path_cause(path)
        if a is None or b is None:
            diffs.append(Difference(path, "only in the rebuild" if a is None else "only in the build",
                                    suspect or UNEXPLAINED))
            continue
        if (a.kind, a.digest, a.size) != (b.kind, b.digest, b.size):
            what = "link target" if a.kind == "symlink" else "content"
            diffs.append(Difference(path, what, suspect or UNEXPLAINED,
                                    f"{a.size} -> {b.size} bytes" if a.size != b.size else ""))
        for attr in ("mode", "uid", "gid"):
            if getattr(a, attr) != getattr(b, attr):
                diffs.append(Difference(path, attr, suspect or UNEXPLAINED,
                                        f"{getattr(a, attr)} -> {getattr(b, attr)}"))
        for name in sorted(set(a.fields) | set(b.fields)):
            va, vb = a.fields.get(name), b.fields.get(name)
            if va != vb:
                cause = FIELD_CAUSES.get(name, UNEXPLAINED)
                if name == "blocks" and a.digest == b.digest:
                    cause = FIELD_CAUSES["blocks"]
                diffs.append(Difference(path, name, cause, f"{va} -> {vb}"))
    return diffs


def compare_superblocks(first: dict[str, str], second: dict[str, str]) -> list[Difference]:
    diffs = []
    for key in sorted(set(first) | set(second)):
        if first.get(key) != second.get(key):
            diffs.append(Difference("disk: ext4 superblock", key, SUPERBLOCK_CAUSES.get(key, UNEXPLAINED),
                                    f"{first.get(key)} -> {second.get(key)}"))
    return diffs


def block_difference(block: int, in_use: bool, inode: int | None, path: str | None) -> Difference:
    """What one differing block of the file system is, from debugfs `testb` and `icheck` (and `ncheck`)."""
    if inode == 8:
        return Difference("disk: ext4 journal", f"block {block}", "journal (transactions the kernel logged)")
    if inode is not None and inode >= 11:
        where = path or f"inode {inode}"
        return Difference(where, f"block {block}", path_cause(where.strip("/")) or
                          "file placement (an extent or directory block the kernel wrote)")
    if inode is not None:
        return Difference("disk: ext4 reserved inode", f"block {block} (inode {inode})", UNEXPLAINED)
    if not in_use:
        return Difference("disk: ext4 free space", f"block {block}", "free space holding data from the install "
                          "(not zeroed)")
    return Difference("disk: ext4 metadata", f"block {block}", UNEXPLAINED,
                      "group descriptors, bitmaps or inode tables (fields the comparison does not read)")


def parse_icheck(text: str) -> dict[int, int | None]:
    """block -> inode (None: no inode holds it) from `icheck` output."""
    out: dict[int, int | None] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 2 and parts[0].strip().isdigit():
            out[int(parts[0])] = int(parts[1]) if parts[1].strip().isdigit() else None
    return out


def parse_testb(text: str) -> dict[int, bool]:
    """block -> in use, from `testb` output lines ("Block N marked in use" / "Block N not in use")."""
    out: dict[int, bool] = {}
    for m in re.finditer(r"Block (\d+) (marked in use|not in use)", text):
        out[int(m.group(1))] = m.group(2) == "marked in use"
    return out


def parse_ncheck(text: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for line in text.splitlines():
        ino, _sep, path = line.partition("\t")
        if ino.strip().isdigit() and path:
            out.setdefault(int(ino), path.strip())
    return out


# -- reading what the tools print -------------------------------------------------------------------------------

def mbr_partitions(sector: bytes) -> list[tuple[int, int, int]]:
    """(type, first sector, sectors) of the MBR's primary partitions in use; [] when *sector* is no MBR."""
    if len(sector) < 512 or sector[510:512] != b"\x55\xaa":
        return []
    parts = []
    for i in range(4):
        entry = sector[446 + 16 * i: 462 + 16 * i]
        ptype = entry[4]
        start, count = struct.unpack("<II", entry[8:16])
        if ptype and count:
            parts.append((ptype, start, count))
    return parts


#: GPT partition type GUIDs of Linux file systems (on-disk byte order): "Linux filesystem data" and the
#: Discoverable Partitions Specification's x86-64 root.
GPT_LINUX_TYPES = {bytes.fromhex("af3dc60f838472478e793d69d8477de4"),
                   bytes.fromhex("e3bc684fcde8b14d96e7fbcaf984b709")}
#: How many sectors hold the protective MBR, the GPT header and 128 entries of 128 bytes.
GPT_HEAD_SECTORS = 34


@dataclass(frozen=True)
class Partition:
    """One partition of a disk: whether it holds a Linux file system, where it starts and how long it is."""

    linux: bool
    first_sector: int
    sectors: int


def disk_partitions(head: bytes) -> list[Partition]:
    """The partitions in use of a disk whose first sectors are *head*: GPT (behind its protective MBR) or MBR.

    [] when *head* holds neither. For GPT, *head* must reach the entries (GPT_HEAD_SECTORS sectors)."""
    mbr = mbr_partitions(head[:512])
    if not (len(mbr) == 1 and mbr[0][0] == 0xEE):
        return [Partition(ptype == 0x83, start, count) for ptype, start, count in mbr]
    if head[512:520] != b"EFI PART":
        return []
    entries_lba, count, size = struct.unpack_from("<QII", head, 512 + 72)
    parts = []
    for i in range(min(count, 128)):
        off = entries_lba * 512 + i * size
        entry = head[off: off + 128]
        if len(entry) < 128 or entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        parts.append(Partition(entry[:16] in GPT_LINUX_TYPES, first, last - first + 1))
    return parts


def compare_gpt(first: bytes, second: bytes) -> list[Difference]:
    """The GPT header and its entries (LBA 1 on), when the disks have one: identifiers and layout."""
    if first[512:520] != b"EFI PART" or second[512:520] != b"EFI PART":
        return []
    diffs = []
    if first[512 + 56: 512 + 72] != second[512 + 56: 512 + 72]:
        diffs.append(Difference("disk: GPT", "disk GUID", "partition table identifier (random unless fixed)",
                                f"{first[568:576].hex()} -> {second[568:576].hex()}"))
    ga, gb = disk_partitions(first), disk_partitions(second)
    if ga != gb:
        diffs.append(Difference("disk: GPT", "partition table", UNEXPLAINED, f"{ga} -> {gb}"))
    elif first[1024:] != second[1024:]:
        diffs.append(Difference("disk: GPT", "partition GUIDs or names",
                                "partition identifiers (random unless fixed)"))
    return diffs


def compare_mbr(first: bytes, second: bytes) -> list[Difference]:
    """The first sector: boot code, disk identifier, partition table."""
    diffs = []
    for what, lo, hi, cause in (("boot code", 0, 440, "boot loader (extlinux patches its block list into it)"),
                                ("disk identifier", 440, 444, "partition table identifier (random unless fixed)"),
                                ("partition table", 444, 512, UNEXPLAINED)):
        if first[lo:hi] != second[lo:hi]:
            diffs.append(Difference("disk: MBR", what, cause,
                                    f"{first[lo:hi].hex()[:16]} -> {second[lo:hi].hex()[:16]}"))
    return diffs


_STATS_KEYS = set(SUPERBLOCK_CAUSES) | {"Filesystem volume name", "Last mounted on", "Filesystem features",
                                        "Block size", "Block count", "Inode count", "Filesystem state", "Inode size"}


def raw_superblock_fields(sb: bytes) -> dict[str, str]:
    """Superblock fields debugfs prints rounded or not at all, from the superblock's 1024 bytes."""
    if len(sb) < 1024:
        return {}
    return {"Lifetime writes (KiB)": str(struct.unpack_from("<Q", sb, 0x178)[0])}


def parse_stats(text: str) -> dict[str, str]:
    """The superblock fields of `debugfs -R stats` (the per-group lines are left out)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in _STATS_KEYS:
            out[key.strip()] = value.strip()
    return out


_STAT_LINE = re.compile(r"^\s*(ctime|atime|mtime|crtime):\s*(0x[0-9a-f]+(?::[0-9a-f]+)?)", re.M)


def parse_inode_stat(text: str) -> dict[str, str]:
    """inode, generation and the four times (seconds:extra as debugfs prints them) of one `stat` output."""
    out: dict[str, str] = {}
    m = re.search(r"Inode:\s*(\d+)", text)
    if m:
        out["inode"] = m.group(1)
    for key, name in (("Generation", "generation"), ("Version", "version"), ("Flags", "flags"),
                      ("Links", "links"), ("Blockcount", "blockcount"), ("File ACL", "file acl")):
        m = re.search(rf"{key}:\s*(\S+)", text)
        if m:
            out[name] = m.group(1)
    for name, value in _STAT_LINE.findall(text):
        out[name] = value
    m = re.search(r"^(?:EXTENTS|BLOCKS):\s*\n(.*?)(?:\n\s*\n|\Z)", text, re.M | re.S)
    if m:
        out["blocks"] = " ".join(m.group(1).split())
    return out


def split_debugfs_stats(text: str, paths: list[str]) -> dict[str, str]:
    """Split the output of one debugfs run of `stat PATH` commands (echoed as `debugfs: stat PATH`) per path."""
    chunks: dict[str, str] = {}
    current: str | None = None
    buf: list[str] = []
    wanted = set(paths)
    for line in text.splitlines():
        if line.startswith("debugfs: stat "):
            if current is not None:
                chunks[current] = "\n".join(buf)
            name = line[len("debugfs: stat "):].strip().strip('"')
            current = name if name in wanted else None
            buf = []
        elif current is not None:
            buf.append(line)
    if current is not None:
        chunks[current] = "\n".join(buf)
    return chunks
