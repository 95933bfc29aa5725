"""`rebuild-check` on real rehearsal builds (libvirtd, qemu TCG): a build of openstack-stream9 and its rebuild are
bit-for-bit the same image (only the logs of the run differ, and the report says why); a build with another
SOURCE_DATE_EPOCH differs inside the disk, and every difference is named with its cause (read with debugfs,
nothing mounted); a folder that is no build is bad input (exit 2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_libvirt import left_behind

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--accel", "tcg", "--disk-size", "96M", "--memory", "512", "--quiet"]
#: The frozen catalog's commit time: SOURCE_DATE_EPOCH of its rehearsal builds.
EPOCH = 1767225600  # 2026-01-01T00:00:00Z


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) \
        -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ccis_workbench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def frozen_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped catalog copied into a git repository whose one commit is dated EPOCH (others may edit the
    checkout's catalog while this runs; the build and its rebuild must compose the same kickstart)."""
    root = tmp_path_factory.mktemp("rcat") / "catalog"
    root.mkdir()
    for part in ("kickstarts", "profiles"):
        shutil.copytree(REPO / part, root / part)
    env = dict(os.environ, GIT_AUTHOR_DATE=f"@{EPOCH} +0000", GIT_COMMITTER_DATE=f"@{EPOCH} +0000")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=T", "-c", "user.email=t@example.com", "commit", "-q", "-m", "catalog"]):
        subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)
    return root


def build(catalog: Path, tree: Path, out: Path, env: dict[str, str]) -> Path:
    proc = cli("--catalog", str(catalog), "build", "openstack-stream9", "--tree", str(tree), *SMALL, "--output",
               str(out), cwd=out.parent, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (folder,) = list(out.iterdir())
    return folder


@pytest.fixture
def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    env["TMPDIR"] = str(tmp_path / "tmp")  # the rebuild's temporary folder: checked empty afterwards
    (tmp_path / "tmp").mkdir()
    return env


@pytest.mark.libvirt
@pytest.mark.slow
def test_rebuild_is_bit_for_bit_the_same(no_leftovers: str, rehearsal_tree: Path, frozen_catalog: Path,
                                         tmp_path: Path, clean_env: dict[str, str]) -> None:
    first = build(frozen_catalog, rehearsal_tree, tmp_path / "out", clean_env)
    manifest = json.loads((first / "manifest.json").read_text())
    assert f"rehearsal.source_date_epoch={EPOCH}" in manifest["kernel_cmdline"].split()

    proc = cli("--catalog", str(frozen_catalog), "rebuild-check", str(first), "--json", "--quiet", "--memory", "512",
               cwd=tmp_path, env=clean_env)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    diffs = report["differences"]
    # every difference has a known cause; the table names each differing artifact
    unexplained = [(d["item"], d["what"], d["detail"]) for d in diffs if not d["explained"]]
    assert not unexplained, unexplained
    items = {d["item"] for d in diffs}
    differing = {a["file"] for a in report["artifacts"] if not a["same"]}
    assert all(f in items for f in differing), (differing, diffs)
    by_file = {a["file"]: a for a in report["artifacts"]}
    image = "openstack-stream9-rehearsal.x86_64.qcow2"
    assert by_file[image]["same"], [d for d in diffs if not d["expected"]]
    assert by_file["openstack-stream9-rehearsal.x86_64.ks"]["same"] and by_file["packages.txt"]["same"]
    assert report["identical"] is True and proc.returncode == 0
    # the logs of the run differ by nature, and the report says so
    assert {d["item"] for d in diffs if d["expected"]} <= {"console.log", "installer.log"}
    assert all(d["cause"].startswith("logs") for d in diffs if d["expected"])

    # the text report: the artifacts, then the verdict
    text = cli("--catalog", str(frozen_catalog), "rebuild-check", str(first), "--quiet", "--memory", "512",
               cwd=tmp_path, env=clean_env)
    assert text.returncode == 0, text.stderr[-3000:]
    assert f"same    {image}" in text.stdout and "IDENTICAL" in text.stdout

    # the image's times are SOURCE_DATE_EPOCH, read without mounting
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(first / image), str(raw)], check=True)
    stat = subprocess.run(["debugfs", "-R", "stat /etc/hostname", f"{raw}?offset={root_offset(raw)}"],
                          capture_output=True, text=True, check=True).stdout
    assert f"mtime: {hex(EPOCH)}" in stat and f"ctime: {hex(EPOCH)}" in stat and "Generation: 0" in stat
    # nothing of the rebuilds is left: no temporary folder, no domain, no volume
    assert list((tmp_path / "tmp").iterdir()) == []
    assert left_behind(no_leftovers, "ccis-openstack-stream9-" + report["rebuild_id"]) == []


@pytest.mark.libvirt
@pytest.mark.slow
def test_differences_inside_the_disk_are_named(no_leftovers: str, rehearsal_tree: Path, frozen_catalog: Path,
                                               tmp_path: Path, clean_env: dict[str, str]) -> None:
    """Two builds with another SOURCE_DATE_EPOCH: the disks differ in times and file-system UUID, each named."""
    from ccis_workbench.core.reproducibility import RebuildReport
    from ccis_workbench.flows.rebuild_check import compare_folders

    first = build(frozen_catalog, rehearsal_tree, tmp_path / "one", clean_env)
    second = build(frozen_catalog, rehearsal_tree, tmp_path / "two", dict(clean_env, SOURCE_DATE_EPOCH="1700000000"))
    report = RebuildReport(str(first))
    work = tmp_path / "work"
    work.mkdir()
    compare_folders(first, second, report, work)
    assert not report.identical
    causes = {d.cause for d in report.differences}
    assert not report.unexplained, [d.to_dict() for d in report.unexplained]
    assert {"file-system UUID", "timestamps", "timestamps (superblock)"} <= causes, causes
    whats = {(d.item, d.what) for d in report.differences}
    assert ("disk: ext4 superblock", "Filesystem UUID") in whats and ("etc/hostname", "mtime") in whats
    text = report.render(limit=100000)
    assert "file-system UUID" in text and "etc/hostname (mtime)" in text and "DIFFERENT" in text
    assert list(work.iterdir()) == []  # the raw copies and dumps are removed

    # a catalog that no longer composes the kickstart built is not the same inputs: bad input, nothing built
    changed = tmp_path / "changed"
    shutil.copytree(first, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["kickstart_sha256"] = "0" * 64
    (changed / "manifest.json").write_text(json.dumps(manifest))
    proc = cli("--catalog", str(frozen_catalog), "rebuild-check", str(changed), cwd=tmp_path, env=clean_env)
    assert proc.returncode == 2 and "Not the same inputs" in proc.stderr, proc.stderr
    assert "== install" not in proc.stderr


def test_not_an_artifact_folder_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for target in (tmp_path / "empty", tmp_path / "missing"):
        proc = cli("rebuild-check", str(target), cwd=REPO, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Not an artifact folder" in proc.stderr and str(target) in proc.stderr
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad/manifest.json").write_text('{"profile": "p", "disk_virtual_size": "big"}\n')
    proc = cli("rebuild-check", str(tmp_path / "bad"), cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "manifest.json" in proc.stderr and "disk_virtual_size" in proc.stderr
    (tmp_path / "bad/manifest.json").write_text('{"profile": "p"}\n')
    proc = cli("rebuild-check", str(tmp_path / "bad"), cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "Not a build's manifest" in proc.stderr


def root_offset(raw: Path) -> int:
    """Where the root file system starts, as sfdisk reads the disk (MBR type 83 or GPT's Linux data type)."""
    table = json.loads(subprocess.run(["sfdisk", "-J", str(raw)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    (root,) = [p for p in table["partitions"] if p["type"] in ("83", "0FC63DAF-8483-4772-8E79-3D69D8477DE4")]
    return int(root["start"]) * table["sectorsize"]


@pytest.mark.parametrize("label", ["dos", "gpt"])
def test_the_root_partition_is_found_in_mbr_and_gpt_tables(label: str, tmp_path: Path) -> None:
    """The disk reader finds the Linux partition sfdisk wrote, behind an MBR or a GPT (the hybrid BIOS + UEFI
    layout: BIOS boot, ESP, root); a table that differs only in its disk GUID is named as an identifier."""
    from ccis_workbench.core.reproducibility import GPT_HEAD_SECTORS, compare_gpt, disk_partitions

    disk = tmp_path / "disk.raw"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    script = {"dos": "label: dos\nstart=2048, size=8192, type=c\nstart=10240, type=83\n",
              "gpt": "label: gpt\nlabel-id: CC150000-0000-4000-8000-000000000000\n"
                     "start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\n"
                     "start=4096, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\n"
                     "start=12288, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n"}[label]
    subprocess.run(["sfdisk", "-q", str(disk)], input=script, text=True, check=True, capture_output=True)
    head = disk.read_bytes()[:512 * GPT_HEAD_SECTORS]
    linux = [p for p in disk_partitions(head) if p.linux]
    assert len(linux) == 1 and linux[0].first_sector * 512 == root_offset(disk)
    assert len(disk_partitions(head)) == (2 if label == "dos" else 3)
    assert disk_partitions(bytes(512 * GPT_HEAD_SECTORS)) == []
    if label == "gpt":
        subprocess.run(["sfdisk", "-q", "--disk-id", str(disk), "CC150000-0000-4000-8000-0000000000FF"],
                       check=True, capture_output=True)
        other = disk.read_bytes()[:512 * GPT_HEAD_SECTORS]
        assert [(d.what, d.cause) for d in compare_gpt(head, other)] == \
            [("disk GUID", "partition table identifier (random unless fixed)")]
        assert compare_gpt(head, head) == []


def test_causes_of_differences() -> None:
    from ccis_workbench.core.reproducibility import UNEXPLAINED, FileFacts, compare_files, path_cause

    assert path_cause("etc/machine-id") == "machine-id"
    assert path_cause("etc/ssh/ssh_host_ed25519_key") == "host keys"
    assert path_cause("var/lib/rpm/rpmdb.sqlite") == "rpm database"
    assert path_cause("var/log/messages") == "logs" and path_cause("etc/hostname") is None
    a = {"etc/machine-id": FileFacts("regular", "0o444", "0", "0", 33, "x"),
         "etc/hostname": FileFacts("regular", "0o644", "0", "0", 6, "h", {"mtime": "0x1", "generation": "0"})}
    b = {"etc/machine-id": FileFacts("regular", "0o444", "0", "0", 33, "y"),
         "etc/hostname": FileFacts("regular", "0o644", "0", "0", 7, "g", {"mtime": "0x2", "generation": "5"})}
    got = {(d.item, d.what): d.cause for d in compare_files(a, b)}
    assert got[("etc/machine-id", "content")] == "machine-id"
    assert got[("etc/hostname", "content")] == UNEXPLAINED  # a file that should be the same is not: not excused
    assert got[("etc/hostname", "mtime")] == "timestamps"
    assert got[("etc/hostname", "generation")].startswith("inode generation")


@pytest.mark.libvirt
@pytest.mark.slow
def test_every_format_reproducible_or_named(no_leftovers: str, rehearsal_tree: Path, frozen_catalog: Path,
                                            tmp_path: Path, clean_env: dict[str, str]) -> None:
    """qcow2, raw, gce-tar, the Vagrant box, vmdk, vhd and ova are bit-for-bit the same (the VMDK CID and the VHD
    footer come from the epoch and the content); the rootfs tar's member times are clamped to the epoch: it is the
    same, or differs only in what the export stored (never in times)."""
    out = tmp_path / "out"
    fmts = ["qcow2", "raw", "vmdk", "vhd", "ova", "gce-tar", "vagrant-libvirt", "rootfs-tar"]
    proc = cli("--catalog", str(frozen_catalog), "build", "openstack-stream9", "--tree", str(rehearsal_tree), *SMALL,
               "--output", str(out), *[a for f in fmts for a in ("--format", f)], cwd=tmp_path, env=clean_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (first,) = list(out.iterdir())
    proc = cli("--catalog", str(frozen_catalog), "rebuild-check", str(first), "--json", "--quiet", "--memory", "512",
               cwd=tmp_path, env=clean_env)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: the rootfs tar differs (below)
    report = json.loads(proc.stdout)
    base = "openstack-stream9-rehearsal.x86_64"
    same = {a["file"] for a in report["artifacts"] if a["same"]}
    assert {f"{base}{s}" for s in (".qcow2", ".raw", ".tar.gz", ".vagrant-libvirt.box", ".vmdk", ".vhd",
                                    ".ova")} <= same
    assert all(d["explained"] for d in report["differences"]), report["differences"]
    assert not [d for d in report["differences"] if d["what"] == "mtime"], report["differences"]
    artifacts = {a["file"] for a in report["artifacts"]}
    unexpected = [d for d in report["differences"] if not d["expected"]]  # the logs of the run differ by nature
    assert {d["item"] for d in report["differences"] if d["expected"]} <= {"console.log", "installer.log"}
    assert {d["item"] for d in unexpected} & artifacts <= {f"{base}.rootfs.tar.xz"}
    assert (proc.returncode == 1) == bool(unexpected)
