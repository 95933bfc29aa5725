"""What boot-test is given: artifact kinds, the disk inside a Vagrant box or GCE tar (unpacked with the real tar,
checked with the real qemu-img), the kickstart user an image without a seed is logged into with, and the real
`vagrant box add` check on a small box made here."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.compose import Composer
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.testimage import artifact_kind, disk_for, find_artifact, kickstart_login, seed_for
from ccis_workbench.core.testspec import load_spec, select_checks

REPO = Path(__file__).resolve().parents[1]


def _qcow2(path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A Vagrant box laid out as the build writes it: metadata.json, Vagrantfile, box.img (a real qcow2)."""
    src = tmp_path / "src"
    src.mkdir()
    _qcow2(src / "box.img")
    (src / "metadata.json").write_text(json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": 1}))
    (src / "Vagrantfile").write_text("Vagrant.configure('2') do |config|\nend\n")
    out = tmp_path / "art" / "x.vagrant-libvirt.box"
    out.parent.mkdir()
    subprocess.run(["tar", "-czf", str(out), "-C", str(src), "metadata.json", "Vagrantfile", "box.img"], check=True)
    return out


def test_artifact_kinds_and_search_order(tmp_path: Path) -> None:
    assert artifact_kind(Path("a.qcow2")) == "disk" and artifact_kind(Path("a.raw")) == "disk"
    assert artifact_kind(Path("p.rootfs.tar.xz")) == "rootfs"
    assert artifact_kind(Path("p.vagrant-libvirt.box")) == "vagrant-box"
    assert artifact_kind(Path("p.tar.gz")) == "gce-tar"
    d = tmp_path / "build"
    d.mkdir()
    with pytest.raises(WorkbenchError) as err:
        find_artifact(d)
    assert err.value.title == "Nothing to test" and str(d) in str(err.value)
    (d / "p.tar.gz").write_bytes(b"")
    assert find_artifact(d).name == "p.tar.gz"
    (d / "p.qcow2").write_bytes(b"")
    assert find_artifact(d).name == "p.qcow2", "a plain disk wins: nothing to unpack"
    assert find_artifact(d, prefer="gce-tar").name == "p.tar.gz"


def test_disk_is_unpacked_from_a_box_and_removed_after(box: Path, tmp_path: Path) -> None:
    before = _sha(box)
    disk = disk_for(box, str(tmp_path))
    try:
        assert disk.kind == "vagrant-box" and disk.unpacked and disk.path.name == "box.img"
        assert disk.metadata == {"provider": "libvirt", "format": "qcow2", "virtual_size": 1}
        info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(disk.path)], capture_output=True,
                                         text=True, check=True).stdout)
        assert info["format"] == "qcow2" and info["virtual-size"] == 64 << 20
        assert disk.path.stat().st_mode & 0o004 and disk.path.parent.stat().st_mode & 0o001, "qemu must read it"
    finally:
        disk.cleanup()
    assert not disk.path.parent.exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith("ccis-boot-test-disk-")] == []
    assert _sha(box) == before, "the artifact is never written"


def test_disk_is_unpacked_sparse_from_a_gce_tar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    raw = src / "disk.raw"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(raw), "256M"], check=True)
    with open(raw, "r+b") as fh:  # an MBR boot signature, so it looks like a disk
        fh.seek(510)
        fh.write(b"\x55\xaa")
    gce = tmp_path / "p.tar.gz"
    subprocess.run(["tar", "--format=oldgnu", "-Sczf", str(gce), "-C", str(src), "disk.raw"], check=True)
    disk = disk_for(gce, str(tmp_path))
    try:
        assert disk.path.name == "disk.raw" and disk.path.stat().st_size == 256 << 20
        assert disk.path.stat().st_blocks * 512 < 1 << 20, "unpacked sparse (tar -S), not 256 MiB of zeros"
    finally:
        disk.cleanup()
    assert not disk.path.exists()


def test_packed_artifacts_without_their_disk_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "nodisk.tar.gz"
    with tarfile.open(bad, "w:gz") as tf:
        info = tarfile.TarInfo("README")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(WorkbenchError) as err:
        disk_for(bad, str(tmp_path))
    assert err.value.title == "No disk in the artifact" and "disk.raw" in err.value.message
    junk = tmp_path / "junk.vagrant-libvirt.box"
    junk.write_bytes(b"not a tar at all" * 10)
    with pytest.raises(WorkbenchError) as err:
        disk_for(junk, str(tmp_path))
    assert err.value.title == "Not a readable tar" and str(junk) in str(err.value)
    with pytest.raises(WorkbenchError) as err:
        disk_for(tmp_path / "x.rootfs.tar.xz")
    assert err.value.title == "A container image does not boot"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ccis-boot-test-disk-")] == []


def test_login_and_seed_for_images_without_a_seed() -> None:
    cat = Catalog.load(REPO)
    spec = load_spec(REPO)
    composer = Composer(cat)
    vagrant = composer.compose(cat.load_profile("vagrant-stream9"))
    assert kickstart_login(vagrant) == ("vagrant", "vagrant")
    gce = composer.compose(cat.load_profile("gce-stream9"))
    assert kickstart_login(gce) is None
    assert kickstart_login(composer.compose(cat.load_profile("openstack-stream9"))) is None
    plan = select_checks(spec, gce)
    assert seed_for(plan) == "none" and seed_for(plan, rehearsal=True) == "none"
    os_plan = select_checks(spec, composer.compose(cat.load_profile("openstack-stream9")))
    assert seed_for(os_plan) == "configdrive" and seed_for(os_plan, rehearsal=True) == "nocloud"
    assert seed_for(os_plan, "opennebula") == "opennebula"


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed (apt-get install vagrant "
                    "vagrant-libvirt): the vagrant box check did not run")
def test_vagrant_box_check_with_the_real_client(box: Path, tmp_path: Path) -> None:
    from ccis_workbench.backends.vagrant_check import CHECK_ID, check_vagrant_box

    home_before = sorted(Path("/tmp").glob("ccis-vagrant-home-*"))
    ok = check_vagrant_box(box, "ccis-unit-box")
    assert ok.id == CHECK_ID and ok.status == "passed", ok.output
    assert "ccis-unit-box (libvirt, 0)" in ok.output
    broken = tmp_path / "broken.box"
    broken.write_bytes(b"\x1f\x8b this is no gzip")
    bad = check_vagrant_box(broken, "ccis-unit-broken")
    assert bad.status == "failed" and bad.exit_status not in (0, None) and bad.output
    assert sorted(Path("/tmp").glob("ccis-vagrant-home-*")) == home_before, "the private VAGRANT_HOME is removed"
