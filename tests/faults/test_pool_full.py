"""A storage pool that fills: the workbench's volumes live in a separate dir pool (`ccis-fault-pool`) over a small
tmpfs defined for the test. Too small for the kernel and initrd, the upload fails; room for them but not for the
installed disk, qemu pauses the guest on its failing write. Either way the build says the pool is full (naming it
and its path), exits 1, and leaves no domain, volume, lock, temporary folder or partial artifact. Real libvirtd,
real qemu (TCG), the rehearsal tree served on 127.0.0.1; the pool is undefined and the tmpfs unmounted whatever
happens."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("libvirt")
pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
POOL = "ccis-fault-pool"
MIB = 1 << 20


def _virsh(uri: str, *args: str, check: bool = True) -> str:
    return subprocess.run(["virsh", "-c", uri, *args], capture_output=True, text=True, check=check).stdout


@pytest.fixture
def small_pool(libvirt_uri: str, tmp_path: Path) -> Iterator[tuple[Path, object]]:
    """Yields (its folder, a function that sizes its tmpfs in MiB). Removed whatever happens. The folder is not
    under tmp_path: qemu runs as its own user and cannot enter pytest's private temporary folders."""
    folder = Path(tempfile.mkdtemp(prefix="ccis-fault-pool-"))
    folder.chmod(0o711)
    if POOL in _virsh(libvirt_uri, "pool-list", "--all", "--name").split():
        pytest.fail(f"pool {POOL} already exists (a crashed earlier run?): `virsh pool-destroy/pool-undefine {POOL}`")

    def size(mib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={mib}m", str(folder)], check=True)

    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0711", "tmpfs", str(folder)], check=True)
    try:
        _virsh(libvirt_uri, "pool-define-as", POOL, "dir", "--target", str(folder))
        _virsh(libvirt_uri, "pool-start", POOL)
        yield folder, size
    finally:
        for vol in _virsh(libvirt_uri, "vol-list", POOL, check=False).splitlines()[2:]:
            if vol.split():
                _virsh(libvirt_uri, "vol-delete", "--pool", POOL, vol.split()[0], check=False)
        _virsh(libvirt_uri, "pool-destroy", POOL, check=False)
        _virsh(libvirt_uri, "pool-undefine", POOL, check=False)
        subprocess.run(["umount", str(folder)], check=False)
        folder.rmdir()


@pytest.mark.parametrize("room", ["none", "kernel-and-initrd"])
def test_a_full_pool_is_named_and_nothing_is_left(
    room: str, libvirt_uri: str, tree_server: str, rehearsal_tree: Path, small_pool: tuple[Path, object], tmp_path: Path
) -> None:
    folder, size = small_pool
    pxe = rehearsal_tree / "images" / "pxeboot"
    uploads = (pxe / "vmlinuz").stat().st_size + (pxe / "initrd.img").stat().st_size
    if room == "none":  # not even the kernel and the initrd fit
        size(max(1, uploads // MIB // 2))  # type: ignore[operator]
    else:  # they fit, with 16 MiB left: the installed disk (a 256 MiB qcow2, zeroed by the seal) does not
        size(uploads // MIB + 16)  # type: ignore[operator]
    out = tmp_path / "out"
    work = tmp_path / "tmp"
    work.mkdir()
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(work))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccis_workbench",
            "build",
            "openstack-stream9",
            "--tree",
            tree_server,
            "--accel",
            "tcg",
            "--disk-size",
            "256M",
            "--memory",
            "512",
            "--format",
            "qcow2",
            "--pool",
            POOL,
            "--output",
            str(out),
            "--quiet",
            "--inactivity-timeout",
            "240",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "build failed: The storage pool is full" in proc.stderr, proc.stderr[-3000:]
    assert f"no space left in pool {POOL} ({folder})" in proc.stderr, proc.stderr[-3000:]
    assert "No space left on device" in proc.stderr
    what = "-disk.qcow2" if room != "none" else "-initrd.img" if "-initrd.img:" in proc.stderr else "-vmlinuz"
    assert re.search(rf"for ccis-openstack-stream9-\S+{re.escape(what)}", proc.stderr), proc.stderr[-3000:]
    build_id = re.search(r"ccis-openstack-stream9-(\d{8}-\d{6}-[0-9a-f]{4})", proc.stderr)
    assert build_id, proc.stderr[-3000:]
    # nothing left: no domain, no volume, no lock, no temporary folder, no partial artifact
    assert not [d for d in _virsh(libvirt_uri, "list", "--all", "--name").split() if build_id.group(1) in d]
    assert _virsh(libvirt_uri, "vol-list", POOL).splitlines()[2:] in ([], [""])
    assert list(folder.iterdir()) == []
    assert not list((tmp_path / "cache").rglob("locks/*.lock"))
    assert not list(work.iterdir()), list(work.iterdir())
    assert not out.exists() or not list(out.iterdir()), list(out.rglob("*"))
