"""The artifact stage made fast without changing what it writes: each artifact hashed once per build (the
manifest, the provenance subjects and CHECKSUM agree with hashlib over every byte), a changed file hashed again.
Real qemu-img conversions of a small sparse disk."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from pathlib import Path

import pytest

from ccis_workbench.core import provenance
from ccis_workbench.core.artifacts import ArtifactError, Producer, run_tool
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


def plan_for(tmp_path: Path, formats: list[str], out: str = "out") -> object:
    src = from_dir(make_tree(tmp_path / f"tree-{out}"))
    opts = PlanOptions(
        accel="tcg", build_id="20260101-000000-abcd", output_dir=str(tmp_path / out), disk_size_mb=64, memory_mb=512
    )
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
