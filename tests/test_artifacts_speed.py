"""The artifact stage made fast without changing what it writes: each artifact hashed once per build (the
manifest, the provenance subjects and CHECKSUM agree with hashlib over every byte), a changed file hashed again.
Real qemu-img conversions of a small sparse disk."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from ccis_workbench.core import provenance
from ccis_workbench.core.artifacts import (
    ArtifactError,
    Producer,
    make_vhd_reproducible,
    make_vmdk_reproducible,
    run_tool,
    write_rootfs_xz,
)
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.files import DigestCache, same_prefix, sha256_file
from ccis_workbench.core.installsource import from_dir
from ccis_workbench.core.monitor import RecordingMonitor
from ccis_workbench.core.plan import PlanOptions, make_plan

from .test_plan import composition, make_tree

MIB = 1 << 20
AWS = ["raw", "vmdk", "vhd"]


def full_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    """A 64 MiB qcow2 with data at a few odd places (most of it a hole once converted to raw)."""
    d = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d), "64M"], check=True)
    subprocess.run(
        ["qemu-io", "-c", "write -P 0x61 0 1M", "-c", "write -P 0x62 17M 64k", "-c", "write -P 0x63 40M 3M", str(d)],
        check=True,
        capture_output=True,
    )
    return d


def plan_for(tmp_path: Path, formats: list[str], out: str = "out", build_id: str = "20260101-000000-abcd") -> object:
    src = from_dir(make_tree(tmp_path / f"tree-{out}"))
    opts = PlanOptions(accel="tcg", build_id=build_id, output_dir=str(tmp_path / out), disk_size_mb=64, memory_mb=512)
    return make_plan(composition(formats), "p", src, opts)


def produce(plan: object, disk: Path, **kw: object) -> Path:
    return Producer(plan, **kw).produce(
        disk,
        export=None,
        console_log="console\n",
        installer_log="log\n",
        packages=["a-1.noarch"],
        timings={"install": 1.0},
    )


def read_digests(out: Path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    manifest = {a["file"]: a["sha256"] for a in json.loads((out / "manifest.json").read_text())["artifacts"]}
    st = json.loads((out / provenance.PROVENANCE_NAME).read_text())
    subjects = {s["name"]: s["digest"]["sha256"] for s in st["subject"]}
    checksum = {}
    for line in (out / "CHECKSUM").read_text().splitlines():
        if line.startswith("SHA256 ("):
            name, digest = line[len("SHA256 (") :].split(") = ")
            checksum[name] = digest
    return manifest, subjects, checksum


def test_manifest_provenance_and_checksum_agree_with_every_byte(tmp_path: Path, disk: Path) -> None:
    cache = DigestCache()
    out = produce(plan_for(tmp_path, AWS), disk, digest=cache)
    manifest, subjects, checksum = read_digests(out)
    images = {n for n in manifest if n.rsplit(".", 1)[-1] in ("raw", "vmdk", "vhd")}
    assert len(images) == 3
    for name in images:
        truth = full_sha256(out / name)
        assert manifest[name] == subjects[name] == checksum[name] == truth, name
    for name, digest in checksum.items():
        assert digest == full_sha256(out / name), name
    # every file hashed once: the images, the small text artifacts, manifest and SBOM (CHECKSUM reuses them all)
    assert cache.misses == len(checksum) + 2  # + the tree's kernel and initrd (provenance dependencies)
    # the fixed VHD continued the raw image's hash (its first bytes are the raw image): still hashlib's digest
    vhd = next(out / n for n in images if n.endswith(".vhd"))
    raw = next(out / n for n in images if n.endswith(".raw"))
    assert same_prefix(raw, vhd, raw.stat().st_size)
    assert vhd.stat().st_size == raw.stat().st_size + 512


def test_default_producer_hashes_the_same(tmp_path: Path, disk: Path) -> None:
    """No digest given: the Producer makes its own cache; the old way (a plain read per request) agrees."""
    from ccis_workbench.core.files import sha256_read

    for name, digest in (("new", None), ("old", sha256_read)):
        out = produce(plan_for(tmp_path, AWS, name), disk, digest=digest)
        _, subjects, checksum = read_digests(out)
        images = [n for n in checksum if n.rsplit(".", 1)[-1] in ("raw", "vmdk", "vhd")]
        assert len(images) == 3
        for n in checksum:
            assert checksum[n] == subjects.get(n, checksum[n]) == full_sha256(out / n), n


def test_a_changed_file_is_hashed_again(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"a" * 1000)
    cache = DigestCache()
    first = cache(f)
    assert cache(f) == first and cache.misses == 1
    st = f.stat()
    with open(f, "r+b") as fh:  # same size, same inode, other content, a new mtime
        fh.write(b"b")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    second = cache(f)
    assert second != first and second == full_sha256(f) and cache.misses == 2
    f2 = tmp_path / "f2"
    f2.write_bytes(f.read_bytes())
    os.replace(f2, f)  # replaced by another file (another inode)
    assert cache(f) == second and cache.misses == 3


def test_prefix_reuse_checks_the_content(tmp_path: Path) -> None:
    """A longer file continues a hashed file's state only when its first bytes really are that file."""
    base = tmp_path / "base.raw"
    with open(base, "wb") as fh:
        fh.truncate(8 * MIB)
        fh.seek(3 * MIB + 5)
        fh.write(b"data")
    same = tmp_path / "same.vhd"
    other = tmp_path / "other.vhd"
    for path, change in ((same, None), (other, 6 * MIB + 1)):
        with open(path, "wb") as fh:
            fh.truncate(8 * MIB)
            fh.seek(3 * MIB + 5)
            fh.write(b"data")
            if change is not None:  # one byte in what is a hole in base
                fh.seek(change)
                fh.write(b"\1")
            fh.seek(8 * MIB)
            fh.write(b"footer" * 85)
    cache = DigestCache()
    assert cache(base) == full_sha256(base)
    assert not same_prefix(base, other, 8 * MIB) and same_prefix(base, same, 8 * MIB)
    assert cache(other) == full_sha256(other)
    assert cache(same) == full_sha256(same)
    assert sha256_file(same) == full_sha256(same)


def converting(argv: list[str]) -> bool:
    return argv[:2] == ["qemu-img", "convert"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="conversions run side by side only with 2 cores or more")
def test_conversions_run_side_by_side_and_stay_sparse(tmp_path: Path, disk: Path) -> None:
    """Two conversions are running at the same moment (each waits at a barrier for another: run one after the
    other, the barrier would break), and the raw and fixed VHD outputs keep the disk's holes."""
    barrier = threading.Barrier(2, timeout=60)
    folders: list[str] = []

    def run(argv: list[str]) -> str:
        if converting(argv):
            folders.append(str(Path(argv[-1]).parent))
            barrier.wait()
        return run_tool(argv)

    out = produce(plan_for(tmp_path, [*AWS, "gce-tar"]), disk, run=run)
    assert not barrier.broken
    # gce-tar's intermediate disk.raw was made in a work folder of its own, removed afterwards
    assert any(Path(f).name.endswith("-gce-tar") and Path(f).parent.name == ".work" for f in folders), folders
    assert not (out / ".work").exists()
    for name in os.listdir(out):
        if name.endswith((".raw", ".vhd")):
            st = (out / name).stat()
            assert st.st_size >= 64 * MIB
            assert st.st_blocks * 512 < 16 * MIB, f"{name} lost its holes: {st.st_blocks * 512} bytes allocated"
    assert {n.rsplit(".", 1)[-1] for n in os.listdir(out)} >= {"raw", "vmdk", "vhd", "gz"}


def test_a_failure_while_others_run_leaves_nothing(tmp_path: Path, disk: Path) -> None:
    """The vmdk conversion fails while the raw one is still to write its output: the raw is waited for, then
    everything is removed."""
    failed = threading.Event()

    def run(argv: list[str]) -> str:
        if converting(argv) and "vmdk" in argv:
            failed.set()
            raise ArtifactError("qemu-img failed", "vmdk went wrong")
        if converting(argv) and "raw" in argv:
            assert failed.wait(60)
        return run_tool(argv)

    with pytest.raises(ArtifactError, match="vmdk went wrong"):
        produce(plan_for(tmp_path, AWS), disk, run=run)
    assert list((tmp_path / "out").iterdir()) == []


def test_cancel_during_conversions_leaves_nothing(tmp_path: Path, disk: Path) -> None:
    monitor = RecordingMonitor()

    def run(argv: list[str]) -> str:
        out = run_tool(argv)
        if converting(argv):
            monitor.cancel_event.set()
        return out

    with pytest.raises(WorkbenchError, match="cancelled"):
        produce(plan_for(tmp_path, AWS), disk, run=run, monitor=monitor)
    assert list((tmp_path / "out").iterdir()) == []
    assert monitor.stages().count("convert") == 3


EPOCH = 1767225600  # 2026-01-01T00:00:00Z


def test_vmdk_and_vhd_are_the_same_bytes_from_two_conversions(
    tmp_path: Path, disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds of the same disk: the vmdk (its CID), the fixed VHD (footer time stamp, UUID, checksum) and
    the OVA holding a vmdk come out identical, and every tool still reads them and finds the disk's content."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    outs = []
    for name, build_id in (("first", "20260101-000000-abcd"), ("second", "20260102-120000-ef01")):
        outs.append(produce(plan_for(tmp_path, [*AWS, "ova"], name, build_id), disk))
    first, second = outs
    images = sorted(n for n in os.listdir(first) if n.endswith((".raw", ".vmdk", ".vhd", ".ova")))
    assert len(images) == 4 and images == sorted(
        n for n in os.listdir(second) if n.endswith((".raw", ".vmdk", ".vhd", ".ova"))
    )
    for name in images:
        assert full_sha256(first / name) == full_sha256(second / name), name
    vmdk = next(first / n for n in images if n.endswith(".vmdk"))
    vhd = next(first / n for n in images if n.endswith(".vhd"))
    subprocess.run(["qemu-img", "check", "-f", "vmdk", str(vmdk)], check=True, capture_output=True)
    for image, fmt in ((vmdk, "vmdk"), (vhd, "vpc")):
        same = subprocess.run(
            ["qemu-img", "compare", "-f", "qcow2", "-F", fmt, str(disk), str(image)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert same.returncode == 0, same.stdout + same.stderr
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", "-f", fmt, str(image)], capture_output=True, text=True, check=True
            ).stdout
        )
        assert info["virtual-size"] == 64 * MIB
    descriptor = vmdk.read_bytes()[:4096]
    assert b"parentCID=ffffffff" in descriptor and b"CID=00000000" not in descriptor
    footer = vhd.read_bytes()[-512:]
    assert footer[:8] == b"conectix"
    assert int.from_bytes(footer[24:28], "big") == EPOCH - 946684800
    stored = int.from_bytes(footer[64:68], "big")
    assert stored == ~sum(footer[:64] + bytes(4) + footer[68:]) & 0xFFFFFFFF
    assert footer[68:84] != bytes(16)


def test_vhd_uuid_follows_the_content(tmp_path: Path) -> None:
    """The same content gives the same footer; other content another UUID; a dynamic VHD's two footers agree."""
    src = tmp_path / "d.raw"
    with open(src, "wb") as fh:
        fh.truncate(8 * MIB)
        fh.seek(3 * MIB)
        fh.write(b"one")
    footers = []
    for i, change in enumerate((None, None, b"two")):
        if change:
            with open(src, "r+b") as fh:
                fh.seek(3 * MIB)
                fh.write(change)
        for sub in ("fixed", "dynamic"):
            out = tmp_path / f"{i}-{sub}.vhd"
            subprocess.run(
                ["qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", f"subformat={sub}", str(src), str(out)],
                check=True,
            )
            make_vhd_reproducible(out, EPOCH)
            data = out.read_bytes()
            if sub == "dynamic":
                assert data[:512] == data[-512:]
            footers.append(data[-512:])
    assert footers[0][68:84] == footers[2][68:84] and footers[0] == footers[2]
    assert footers[1] == footers[3]
    assert footers[4][68:84] != footers[0][68:84]


def export_disk(path: Path, mtime: int, order: list[str]) -> Path:
    """A raw export disk like the rootfs %post writes: a GNU tar of a small root, then zeros."""
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for name in order:
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                body = None
            else:
                data = f"content of {name}\n".encode()
                info.size, info.mode = len(data), 0o644
                body = io.BytesIO(data)
            info.name = name.rstrip("/")
            info.mtime = 1000 if name == "etc/old" else mtime
            info.uid, info.gid, info.uname, info.gname = 1001, 1002, "builder", "wheel"
            tf.addfile(info, body)
    with open(path, "r+b") as fh:
        fh.seek(0, 2)
        fh.truncate(fh.tell() + 4 * MIB)
    return path


def test_rootfs_tar_is_the_same_bytes_from_two_exports_made_at_other_times(tmp_path: Path) -> None:
    order = ["etc/", "etc/os-release", "etc/old", "bin/", "bin/sh", "aaa"]
    a = export_disk(tmp_path / "a.raw", EPOCH + 5000, order)
    b = export_disk(tmp_path / "b.raw", EPOCH + 99999, order)
    assert a.read_bytes() != b.read_bytes()
    write_rootfs_xz(a, tmp_path / "a.tar.xz", EPOCH)
    write_rootfs_xz(b, tmp_path / "b.tar.xz", EPOCH)
    assert (tmp_path / "a.tar.xz").read_bytes() == (tmp_path / "b.tar.xz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.xz", "r:xz") as tf:
        members = tf.getmembers()
        assert [m.name for m in members] == [n.rstrip("/") for n in order]  # the stored order, not sorted
        assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(1001, 1002, "builder", "wheel")}
        assert {m.name: m.mtime for m in members}["etc/old"] == 1000  # older than the epoch: kept
        assert {m.mtime for m in members if m.name != "etc/old"} == {EPOCH}
        sh = tf.extractfile("bin/sh")
        assert sh is not None and sh.read() == b"content of bin/sh\n"
    listing = subprocess.run(
        ["tar", "-tJvf", str(tmp_path / "a.tar.xz")], capture_output=True, text=True, check=True
    ).stdout
    assert "builder/wheel" in listing and "bin/sh" in listing


def test_vmdk_cid_written_without_leading_zeros(tmp_path: Path, disk: Path) -> None:
    """qemu-img writes the CID as %x: a small random one is shorter than 8 digits (CID=7a2f0c1). Such a
    descriptor is handled too, and the result is the same as from a full-length CID."""
    results = []
    for short in (b"CID=7a2f0c1", b"CID=1"):
        vmdk = tmp_path / "d.vmdk"
        subprocess.run(
            ["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", str(disk), str(vmdk)], check=True
        )
        data = bytearray(vmdk.read_bytes())
        offset, length = (int.from_bytes(data[i : i + 8], "little") * 512 for i in (28, 36))
        text = bytes(data[offset : offset + length]).split(b"\0", 1)[0]
        at = text.index(b"\nCID=") + 1
        text = text[:at] + short + text[text.index(b"\n", at) :]
        data[offset : offset + length] = text + bytes(length - len(text))  # the descriptor keeps its space
        vmdk.write_bytes(bytes(data))
        assert subprocess.run(["qemu-img", "info", str(vmdk)], capture_output=True, check=False).returncode == 0
        make_vmdk_reproducible(vmdk, EPOCH)
        subprocess.run(["qemu-img", "check", "-f", "vmdk", str(vmdk)], check=True, capture_output=True)
        results.append(full_sha256(vmdk))
        vmdk.unlink()
    assert results[0] == results[1]
