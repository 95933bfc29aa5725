"""`rebuild-check ARTIFACT_DIR`: build the same inputs again and compare, naming what differs and why.

The inputs come from the artifact's manifest.json: the profile (or the recorded choice), the install tree, the
formats (from the artifact names), the disk size, the accelerator actually used and the extra kernel arguments
(among them the rehearsal's `rehearsal.source_date_epoch=`). The rebuild goes into a temporary folder removed at
every ending (the libvirt build removes its own domain and volumes). When an image differs, both are converted to
raw and read without mounting: the MBR, then the ext4 root file system with debugfs (`stats`, `rdump`, `stat` of
every path), and each difference gets its cause (core.reproducibility).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ccis_workbench.core import reproducibility as rep
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import sha256_file
from ccis_workbench.core.manifest import MANIFEST_NAME, Manifest
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.flows.build import REHEARSAL, BuildRequest

#: Installer kernel arguments every plan has (core.plan.installer_kernel_args); the rest were extra.
STANDARD_ARGS = ("inst.ks=", "inst.repo=", "console=ttyS0,115200n8", "inst.text")
#: Disk formats read inside (through qemu-img), and where the disk is inside the tar-based ones.
DISK_FORMATS = {".qcow2": "qcow2", ".raw": "raw", ".vmdk": "vmdk", ".vhd": "vhd"}
TAR_DISKS = {".tar.gz": ("gce-tar", "disk.raw"), ".vagrant-libvirt.box": ("vagrant-libvirt", "box.img"),
             ".ova": ("ova", "disk1.vmdk")}


#: qemu-img's name of the disk inside each format.
INNER_FORMAT = {"qcow2": "qcow2", "raw": "raw", "vmdk": "vmdk", "vhd": "vpc", "gce-tar": "raw",
                "vagrant-libvirt": "qcow2", "ova": "vmdk"}


def inputs_of(manifest: Manifest, folder: Path) -> dict[str, Any]:
    """What the rebuild needs, from the manifest (a missing field is bad input naming manifest.json)."""
    where = str(folder / MANIFEST_NAME)
    if not manifest.release or not manifest.target or not manifest.artifacts:
        raise WorkbenchError("Not a build's manifest", "it names no release, target or artifacts", file=where,
                             hint="rebuild-check takes a folder `ccis-workbench build` wrote")
    from ccis_workbench.core.plan import FORMAT_FILES

    names = [str(a.get("file", "")) for a in manifest.artifacts if isinstance(a, dict)]
    formats: list[str] = []
    for n in names:  # the longest suffix wins: `.rootfs.tar.xz` is not `.tar.gz`'s, `.vagrant-libvirt.box` ...
        hits = sorted((len(suffix), fmt) for fmt, (suffix, _d) in FORMAT_FILES.items() if n.endswith(suffix))
        if hits and hits[-1][1] not in formats:
            formats.append(hits[-1][1])
    tree = manifest.install_tree or {}
    location = str(tree.get("location") or "")
    if manifest.rehearsal:
        spec = location if location and Path(location, ".treeinfo").is_file() else REHEARSAL
    else:
        spec = str(tree.get("iso") or location)
    if not spec:
        raise WorkbenchError("Not a build's manifest", "it names no install tree", file=where)
    extra = [a for a in manifest.kernel_cmdline.split() if not a.startswith(STANDARD_ARGS)]
    accel = "tcg" if manifest.domain_type == "qemu" else (manifest.domain_type or manifest.accel or "auto")
    size = manifest.disk_virtual_size
    return {"tree": spec, "formats": formats, "kernel_args": extra, "accel": accel,
            "disk_size": f"{size // 1048576}M" if size else None}


def compositions_of(manifest: Manifest, catalog_root: Path) -> list[Any]:
    """What the build may have been made from, in order: the profile by name when the catalog has it, then the
    recorded choice (release, target, overlays, variables: a profile changed by --set, or never saved)."""
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer, choice

    cat = Catalog.load(catalog_root)
    composer = Composer(cat)
    found = []
    if manifest.profile in cat.profile_names():
        found.append(composer.compose(cat.load_profile(manifest.profile)))
    ch = manifest.choice or {}
    found.append(composer.compose(choice(ch.get("release", manifest.release), ch.get("target", manifest.target),
                                         list(ch.get("overlays") or []), dict(ch.get("variables") or {}),
                                         name=manifest.profile or None)))
    return found


def rebuild_check(folder: Path, *, catalog_root: Path, request: BuildRequest, monitor: Monitor | None = None,
                  workdir: Path | None = None) -> rep.RebuildReport:
    """Rebuild *folder*'s inputs into a temporary folder, compare, remove the rebuild; the report."""
    from ccis_workbench.core.plan import build_kickstart
    from ccis_workbench.flows.build import plan_build, run_build

    mon = monitor or Monitor()
    if not folder.is_dir() or not (folder / MANIFEST_NAME).is_file():
        raise WorkbenchError("Not an artifact folder", "no manifest.json here: rebuild-check takes a folder "
                             "`ccis-workbench build` wrote", file=str(folder))
    manifest = Manifest.read(folder)
    inputs = inputs_of(manifest, folder)
    comp = next((c for c in compositions_of(manifest, catalog_root) if hashlib.sha256(
        build_kickstart(c.text, inputs["formats"]).encode()).hexdigest() == manifest.kickstart_sha256), None)
    if comp is None:
        raise WorkbenchError("Not the same inputs", f"the catalog now composes {manifest.profile or 'this choice'} "
                             "to another kickstart than the one built (kickstart_sha256)", file=str(folder /
                                                                                                  MANIFEST_NAME),
                             hint="check out the catalog commit the build was made from (see "
                             "provenance.intoto.json), then run rebuild-check again")
    report = rep.RebuildReport(str(folder))
    tmp = Path(tempfile.mkdtemp(prefix="ccis-rebuild-", dir=workdir))
    try:
        req = BuildRequest(**{**request.__dict__, "tree": inputs["tree"], "formats": inputs["formats"],
                              "kernel_args": inputs["kernel_args"], "disk_size": inputs["disk_size"],
                              "accel": request.accel if request.accel != "auto" else inputs["accel"],
                              "output": str(tmp / "out"), "sign_key": "", "build_id": None,
                              "catalog_root": str(catalog_root)})
        plan = plan_build(comp, req, mon, download=True, name=manifest.profile or None)
        report.rebuild_id = plan.build_id
        if plan.cmdline.split()[2:] != manifest.kernel_cmdline.split()[2:]:
            report.notes.append(f"kernel command line differs: {plan.cmdline!r} (build: "
                                f"{manifest.kernel_cmdline!r})")
        again = run_build(plan, mon)
        mon.stage("compare", f"{folder.name} with the rebuild")
        again_manifest = Manifest.read(again)
        if (again_manifest.install_tree.get("tree") or {}).get("treeinfo_sha256") != \
                (manifest.install_tree.get("tree") or {}).get("treeinfo_sha256"):
            report.notes.append("the install tree differs from the build's (.treeinfo sha256): a changed tree "
                                "changes the image")
        compare_folders(folder, again, report, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def compare_folders(first: Path, second: Path, report: rep.RebuildReport, work: Path) -> None:
    """Artifact sha256s (from the first build's manifest), then the inside of every image that differs."""
    listed = [a for a in Manifest.read(first).artifacts if isinstance(a, dict) and a.get("file")]
    for art in listed:
        name = str(art["file"])
        other = second / name
        result = rep.ArtifactResult(name, str(art.get("sha256", "")), sha256_file(other) if other.is_file() else None)
        report.artifacts.append(result)
        if result.same:
            continue
        if result.second is None:
            report.differences.append(rep.Difference(name, "missing from the rebuild", rep.UNEXPLAINED))
        elif name in rep.RUN_RECORDS:
            report.differences.append(rep.Difference(name, "sha256", rep.RUN_RECORDS[name], expected=True))
        else:
            report.differences.extend(compare_image(first / name, other, work))


def _kind(name: str) -> tuple[str, str | None] | None:
    """(format, member holding the disk or None) of an image artifact name; None for other files."""
    for suffix, (fmt, member) in TAR_DISKS.items():
        if name.endswith(suffix) and not name.endswith(".rootfs.tar.gz"):
            return fmt, member
    for suffix, fmt in DISK_FORMATS.items():
        if name.endswith(suffix):
            return fmt, None
    if name.endswith(".rootfs.tar.xz"):
        return "rootfs-tar", None
    return None


def compare_image(first: Path, second: Path, work: Path) -> list[rep.Difference]:
    """What differs between two images of the same name: container, MBR, ext4 superblock, files."""
    kind = _kind(first.name)
    if kind is None:
        return [rep.Difference(first.name, "sha256", rep.path_cause(first.name) or rep.UNEXPLAINED)]
    fmt, member = kind
    if fmt == "rootfs-tar":
        return _compare_rootfs(first, second)
    raws = []
    for i, image in enumerate((first, second)):
        raw = work / f"cmp-{i}.raw"
        src = image
        if member:
            src = work / f"cmp-{i}-{member}"
            _run(["tar", "-xOf", str(image), member], stdout=src)
        # the format is named, never probed (a fixed VHD probes as raw, its footer read as disk)
        _run(["qemu-img", "convert", "-f", INNER_FORMAT[fmt], "-O", "raw", str(src), str(raw)])
        if src != image:
            src.unlink()
        raws.append(raw)
    try:
        if _same_file(raws[0], raws[1]):
            return [rep.Difference(first.name, "container", rep.CONTAINER_CAUSE.get(fmt, rep.UNEXPLAINED),
                                   "the disks inside are bit-for-bit the same")]
        return compare_raw(raws[0], raws[1], work, label=first.name)
    finally:
        for r in raws:
            r.unlink(missing_ok=True)


def compare_raw(first: Path, second: Path, work: Path, *, label: str) -> list[rep.Difference]:
    with open(first, "rb") as fa, open(second, "rb") as fb:
        head_a, head_b = fa.read(512 * rep.GPT_HEAD_SECTORS), fb.read(512 * rep.GPT_HEAD_SECTORS)
    diffs = rep.compare_mbr(head_a[:512], head_b[:512]) + rep.compare_gpt(head_a, head_b)
    parts = rep.disk_partitions(head_a)
    linux = [p for p in parts if p.linux]
    if not linux or rep.disk_partitions(head_b) != parts:
        diffs.append(rep.Difference(label, "disk", rep.UNEXPLAINED, "no ext4 partition to read, or partition "
                                    "tables that differ"))
        return diffs
    offset = linux[0].first_sector * 512
    sides = []
    for i, raw in enumerate((first, second)):
        device = f"{raw}?offset={offset}"
        stats = rep.parse_stats(_debugfs(device, ["stats"]))
        with open(raw, "rb") as f:
            f.seek(offset + 1024)
            stats.update(rep.raw_superblock_fields(f.read(1024)))
        sides.append((stats, read_files(device, work / f"rdump-{i}")))
    diffs += rep.compare_superblocks(sides[0][0], sides[1][0])
    diffs += rep.compare_files(sides[0][1], sides[1][1])
    if not diffs:
        stats = sides[0][0]
        diffs += locate_blocks(first, second, offset, int(stats.get("Block size", "1024") or 1024),
                               int(stats.get("Block count", "0") or 0), label)
    return diffs


#: At most this many differing blocks are looked up (the table names a handful per cause anyway).
MAX_BLOCKS = 512


def locate_blocks(first: Path, second: Path, offset: int, block_size: int, count: int,
                  label: str) -> list[rep.Difference]:
    """The files and the superblock are the same, yet the disks differ: which blocks, and what holds them."""
    blocks: list[int] = []
    outside = 0
    with open(first, "rb") as fa, open(second, "rb") as fb:
        if fa.read(offset) != fb.read(offset):
            outside += 1
        n = 0
        while len(blocks) < MAX_BLOCKS and n < count:
            x, y = fa.read(block_size), fb.read(block_size)
            if not x and not y:
                break
            if x != y:
                blocks.append(n)
            n += 1
        fa.seek(offset + count * block_size)
        fb.seek(offset + count * block_size)
        after = not _same_stream(fa, fb)
    diffs = []
    if outside:
        diffs.append(rep.Difference(label, "bytes before the partition", rep.UNEXPLAINED))
    if after:
        diffs.append(rep.Difference(label, "bytes after the file system", rep.UNEXPLAINED))
    if not blocks:
        return diffs
    device = f"{first}?offset={offset}"
    nums = " ".join(str(b) for b in blocks)
    used = rep.parse_testb(_debugfs(device, [f"testb {b}" for b in blocks]))
    owners = rep.parse_icheck(_debugfs(device, [f"icheck {nums}"]))
    inodes = sorted({i for i in owners.values() if i is not None and i >= 11})
    paths = rep.parse_ncheck(_debugfs(device, [f"ncheck {' '.join(map(str, inodes))}"])) if inodes else {}
    for b in blocks:
        ino = owners.get(b)
        diffs.append(rep.block_difference(b, used.get(b, True), ino, paths.get(ino) if ino else None))
    return diffs


def read_files(device: str, dest: Path) -> dict[str, rep.FileFacts]:
    """Every path of the ext4 file system on *device* (`image?offset=N`): rdump for content, one debugfs run of
    `stat` for inode fields. Nothing is mounted."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    _debugfs(device, [f"rdump / {dest}"])
    root = dest / ""
    facts: dict[str, rep.FileFacts] = {"/": rep.FileFacts("directory")}  # the root directory itself
    try:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in sorted(dirnames + filenames):
                full = Path(dirpath, name)
                rel = str(full.relative_to(root))
                st = full.lstat()
                if full.is_symlink():
                    kind, digest, size = "symlink", os.readlink(full), 0
                elif full.is_dir():
                    kind, digest, size = "directory", "", 0
                elif full.is_file():
                    kind, digest, size = "regular", sha256_file(full), st.st_size
                else:
                    kind, digest, size = "other", "", 0
                facts[rel] = rep.FileFacts(kind, oct(st.st_mode & 0o7777), str(st.st_uid), str(st.st_gid), size,
                                           digest)
        paths = sorted(facts)
        absolute = {p: "/" + p.lstrip("/") for p in paths}
        text = _debugfs(device, [f'stat "{absolute[p]}"' for p in paths])
        chunks = rep.split_debugfs_stats(text, list(absolute.values()))
        for p in paths:
            facts[p].fields = rep.parse_inode_stat(chunks.get(absolute[p], ""))
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    return facts


def _compare_rootfs(first: Path, second: Path) -> list[rep.Difference]:
    import tarfile

    def members(path: Path) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        with tarfile.open(path, "r:xz") as tf:
            for m in tf:
                data = tf.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
                out[m.name] = (str(m.type), oct(m.mode), str(m.uid), str(m.gid), m.linkname,
                               hashlib.sha256(data).hexdigest(), str(int(m.mtime)))
        return out

    a, b = members(first), members(second)
    diffs = []
    for name in sorted(set(a) | set(b)):
        if a.get(name) == b.get(name):
            continue
        suspect = rep.path_cause(name)
        if name not in a or name not in b:
            diffs.append(rep.Difference(name, "only in one", suspect or rep.UNEXPLAINED))
        elif a[name][:6] == b[name][:6]:
            diffs.append(rep.Difference(name, "mtime", "timestamps", f"{a[name][6]} -> {b[name][6]}"))
        else:
            diffs.append(rep.Difference(name, "content", suspect or rep.UNEXPLAINED))
    return diffs or [rep.Difference(first.name, "container", rep.CONTAINER_CAUSE["rootfs-tar"])]


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return _same_stream(fa, fb)


def _same_stream(fa: Any, fb: Any) -> bool:
    while True:
        x, y = fa.read(1 << 20), fb.read(1 << 20)
        if x != y:
            return False
        if not x:
            return True


def _debugfs(device: str, commands: list[str]) -> str:
    """Run debugfs read-only with *commands* (one process; a command file when there are many)."""
    with tempfile.NamedTemporaryFile("w", prefix="ccis-debugfs-", suffix=".cmd", delete=False) as f:
        f.write("\n".join(commands) + "\n")
        cmdfile = f.name
    try:
        proc = subprocess.run(["debugfs", "-f", cmdfile, device], capture_output=True, text=True, check=False,
                              errors="replace")
    except FileNotFoundError:
        raise WorkbenchError("Missing tool", "debugfs is not installed", hint="apt-get install e2fsprogs") from None
    finally:
        os.unlink(cmdfile)
    if proc.returncode != 0:
        raise WorkbenchError("debugfs failed", (proc.stderr.strip().splitlines() or ["?"])[-1], file=device)
    return proc.stdout


def _run(argv: list[str], stdout: Path | None = None) -> None:
    try:
        if stdout is not None:
            with open(stdout, "wb") as out:
                proc = subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, check=False)
        else:
            proc = subprocess.run(argv, capture_output=True, check=False)
    except FileNotFoundError:
        raise WorkbenchError("Missing tool", f"{argv[0]} is not installed",
                             hint="apt-get install qemu-utils tar") from None
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        raise WorkbenchError(f"{argv[0]} failed", f"{' '.join(argv)}: {err[-1] if err else proc.returncode}")
