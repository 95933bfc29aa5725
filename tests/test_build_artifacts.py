"""Artifacts: every format made by the real tools, read back by the real tools (qemu-img, tar, sha256sum),
and written atomically (a failure or a full disk leaves nothing in the artifact directory)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from ccis_workbench.core.artifacts import (
    ArtifactError,
    Producer,
    checksum_text,
    commands_for,
    run_tool,
    tar_end,
    vagrant_metadata,
)
from ccis_workbench.core.installsource import from_dir
from ccis_workbench.core.plan import FORMAT_FILES, PlanOptions, make_plan

from .test_plan import composition, make_tree

ALL = ["qcow2", "raw", "vmdk", "vhd", "ova", "gce-tar", "vagrant-libvirt", "rootfs-tar"]


def qemu_info(path: Path) -> dict:
    return json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], capture_output=True,
                                     text=True, check=True).stdout)


@pytest.fixture
def disk(tmp_path: Path) -> Path:
    d = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(d), "64M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x61 0 1M", "-c", "write -P 0x62 32M 1M", str(d)], check=True,
                   capture_output=True)
    return d


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """A raw export disk as the rootfs %post leaves it: a tar at the start, zeros after."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("NAME=rehearsal\n")
    (root / "bin").mkdir()
    (root / "bin/sh").write_text("#!\n")
    raw = tmp_path / "export.raw"
    with tarfile.open(raw, "w", format=tarfile.USTAR_FORMAT) as tf:
        tf.add(root, arcname=".")
    with open(raw, "r+b") as fh:
        fh.seek(0, 2)
        fh.write(b"\0" * (4 << 20))
    return raw


def plan_for(tmp_path: Path, formats: list[str], out: str = "out") -> object:
    src = from_dir(make_tree(tmp_path / "tree"))
    opts = PlanOptions(accel="tcg", build_id="20260101-000000-abcd", output_dir=str(tmp_path / out),
                       disk_size_mb=64, memory_mb=512)
    return make_plan(composition(formats), "p", src, opts)


def produce(plan: object, disk: Path, export: Path | None, **kw: object) -> Path:
    return Producer(plan, **kw).produce(disk, export=export, console_log="console\n", installer_log="log\n",
                                        packages=["a-1.noarch", "b-2.noarch"], timings={"install": 1.0})


def test_every_format_passes_its_reader(tmp_path: Path, disk: Path, export: Path) -> None:
    plan = plan_for(tmp_path, ALL)
    out = produce(plan, disk, export)
    assert out == Path(plan.artifact_dir) and out.is_dir()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    f = {a.kind: out / a.filename for a in plan.artifacts}
    # qcow2, compressed, checks clean
    subprocess.run(["qemu-img", "check", str(f["qcow2"])], check=True, capture_output=True)
    assert qemu_info(f["qcow2"])["format"] == "qcow2"
    assert qemu_info(f["raw"])["virtual-size"] == 64 << 20
    vmdk = qemu_info(f["vmdk"])
    assert vmdk["format"] == "vmdk" and vmdk["format-specific"]["data"]["create-type"] == "streamOptimized"
    vhd = subprocess.run(["qemu-img", "info", "-f", "vpc", "--output=json", str(f["vhd"])], capture_output=True,
                         text=True, check=True)
    assert json.loads(vhd.stdout)["virtual-size"] % (1 << 20) == 0
    # the same data everywhere
    subprocess.run(["qemu-img", "compare", str(disk), str(f["qcow2"])], check=True, capture_output=True)
    subprocess.run(["qemu-img", "compare", "-F", "vmdk", str(disk), str(f["vmdk"])], check=True,
                   capture_output=True)
    # GCE: only disk.raw, in a gzip'd tar
    listing = subprocess.run(["tar", "-tzvf", str(f["gce-tar"])], capture_output=True, text=True, check=True).stdout
    assert [ln.split()[-1] for ln in listing.splitlines()] == ["disk.raw"]
    # Vagrant box
    names = subprocess.run(["tar", "-tzf", str(f["vagrant-libvirt"])], capture_output=True, text=True,
                           check=True).stdout.split()
    assert sorted(names) == ["Vagrantfile", "box.img", "metadata.json"]
    with tarfile.open(f["vagrant-libvirt"]) as tf:
        meta = json.load(tf.extractfile("metadata.json"))  # type: ignore[arg-type]
    assert meta == {"provider": "libvirt", "format": "qcow2", "virtual_size": 1}
    # OVA: the descriptor first, then the manifest, then the disk (USTAR)
    names = subprocess.run(["tar", "-tf", str(f["ova"])], capture_output=True, text=True, check=True).stdout.split()
    assert names == ["image.ovf", "image.mf", "disk1.vmdk"]
    with tarfile.open(f["ova"]) as tf:
        assert tf.format == tarfile.USTAR_FORMAT or all(m.name.isascii() for m in tf)
    # rootfs: the tar without the zeros, xz-compressed; a Containerfile that ADDs it
    names = subprocess.run(["tar", "-tJf", str(f["rootfs-tar"])], capture_output=True, text=True,
                           check=True).stdout.split()
    assert "./etc/os-release" in names and "./bin/sh" in names
    assert f"ADD {f['rootfs-tar'].name} /" in (out / "Containerfile").read_text()
    # CHECKSUM in the CentOS style, which sha256sum -c reads
    check = subprocess.run(["sha256sum", "-c", "CHECKSUM"], cwd=out, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert (out / "CHECKSUM").read_text().startswith(f"# {f['qcow2'].name}: ")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kickstart_sha256"] == plan.kickstart_sha256 and manifest["rehearsal"] is True
    assert {a["file"] for a in manifest["artifacts"]} >= {p.name for k, p in f.items()
                                                           if k not in ("manifest", "checksum")}
    assert "qemu-img" in manifest["tool_versions"] and manifest["timings"]["install"] == 1.0
    assert (out / "packages.txt").read_text() == "a-1.noarch\nb-2.noarch\n"


def test_failed_conversion_leaves_nothing(tmp_path: Path, disk: Path) -> None:
    plan = plan_for(tmp_path, ["qcow2", "vmdk"])
    calls: list[list[str]] = []

    def failing(argv: list[str]) -> str:
        calls.append(argv)
        if "vmdk" in argv:
            raise ArtifactError("qemu-img failed", "simulated")
        return run_tool(argv)

    with pytest.raises(ArtifactError, match="simulated"):
        produce(plan, disk, None, run=failing)
    assert any("vmdk" in c for c in calls)
    assert list((tmp_path / "out").iterdir()) == []


def test_rootfs_without_tar_is_explained(tmp_path: Path, disk: Path) -> None:
    plan = plan_for(tmp_path, ["rootfs-tar"])
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"\0" * 4096)
    with pytest.raises(ArtifactError, match="No root filesystem tar"):
        produce(plan, disk, empty)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_artifact_disk(tmp_path: Path, disk: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    try:
        src = from_dir(make_tree(tmp_path / "tree"))
        plan = make_plan(composition(["raw"]), "p", src, PlanOptions(accel="tcg", output_dir=str(small / "out"),
                                                                      disk_size_mb=64))
        with pytest.raises(ArtifactError) as ei:
            produce(plan, disk, None)
        assert "full" in ei.value.title.lower() or "No space" in ei.value.message
        assert list((small / "out").iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_existing_artifact_dir_is_not_overwritten(tmp_path: Path, disk: Path) -> None:
    plan = plan_for(tmp_path, ["qcow2"])
    Path(plan.artifact_dir).mkdir(parents=True)
    with pytest.raises(ArtifactError, match="exists"):
        produce(plan, disk, None)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [Path(plan.artifact_dir).name]


def test_commands_are_argument_lists() -> None:
    for fmt in FORMAT_FILES:
        if fmt == "rootfs-tar":
            continue
        for argv in commands_for(fmt, "in.qcow2", "out", "/w"):
            assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    assert commands_for("gce-tar", "d", "o.tar.gz", "/w")[1][:3] == ["tar", "--format=oldgnu", "-Sczf"]
    assert commands_for("vhd", "d", "o", "/w")[0][4:6] == ["-o", "subformat=fixed,force_size"]
    with pytest.raises(ArtifactError):
        commands_for("iso", "d", "o", "/w")


def test_small_helpers(tmp_path: Path, export: Path) -> None:
    assert vagrant_metadata(10 << 30)["virtual_size"] == 10
    assert vagrant_metadata((10 << 30) + 1)["virtual_size"] == 11
    a = tmp_path / "a"
    a.write_text("x")
    assert checksum_text([a]).splitlines() == [
        "# a: 1 bytes", "SHA256 (a) = 2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"]
    assert tar_end(export) % 512 == 0 and tar_end(export) < export.stat().st_size
    _ = SimpleNamespace
