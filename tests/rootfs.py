"""A tiny real container root file system for the container-check tests: the host's static busybox as /bin/sh
and friends, an os-release, an empty machine-id and a shadow file with root locked; packed as the build packs the
docker target's artifact (NAME.rootfs.tar.xz + a Containerfile beside it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

BUSYBOX = shutil.which("busybox")
APPLETS = ("sh", "ls", "wc", "cat", "stat", "find", "echo", "id", "grep", "sleep", "awk", "hostname", "touch")


def busybox_root(root: Path) -> None:
    """Lay the root file system out under *root*."""
    assert BUSYBOX is not None, "apt-get install busybox-static"
    (root / "bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "boot").mkdir()
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for a in APPLETS:
        (root / "bin" / a).symlink_to("busybox")
    (root / "etc" / "os-release").write_text('NAME="test rootfs"\nVERSION_ID="9"\n')
    (root / "etc" / "machine-id").write_text("")
    (root / "etc" / "shadow").write_text("root:!locked::0:99999:7:::\n")
    (root / "etc" / "shadow").chmod(0o600)


def busybox_rootfs_artifact(d: Path, name: str = "test") -> Path:
    """An artifact directory under *d* holding NAME.rootfs.tar.xz and its Containerfile; returns the tar."""
    busybox_root(d / "root")
    art = d / "artifact"
    art.mkdir()
    tar = art / f"{name}.rootfs.tar.xz"
    subprocess.run(["tar", "--numeric-owner", "-cJf", str(tar), "-C", str(d / "root"), "."], check=True)
    (art / "Containerfile").write_text(f"FROM scratch\nADD {tar.name} /\n")
    return tar
