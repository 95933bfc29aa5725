"""The rehearsal install tree: built from the host's kernel and busybox, cached, labelled rehearsal.

Needs the Debian packages linux-image-amd64, busybox-static, extlinux, syslinux-common (skips without them)."""

from __future__ import annotations

import gzip
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.initrd import read_cpio
from ccis_workbench.core.installsource import from_dir
from ccis_workbench.rehearsal import tree as tree_mod
from ccis_workbench.rehearsal.tree import (
    FILES,
    SUDO_HINT,
    build_tree,
    compile_sudo,
    find_compiler,
    find_host_parts,
    hide_applets,
    module_order,
    pvh_kernel,
)

FAKE_DEP = """kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko \
kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/fs/nls/nls_iso8859-1.ko:
"""


def host_parts_or_skip() -> None:
    try:
        find_host_parts()
    except WorkbenchError as exc:
        pytest.skip(f"{exc.title}: {exc.hint}")


def test_module_order_puts_dependencies_first() -> None:
    order = module_order(FAKE_DEP, ["virtio_blk", "ext4", "virtio_pci", "nls_iso8859-1", "not_there"])
    names = [p.rsplit("/", 1)[-1] for p in order]
    assert names.index("virtio.ko") < names.index("virtio_blk.ko")
    assert names.index("virtio_ring.ko") < names.index("virtio_blk.ko")
    assert names.index("jbd2.ko") < names.index("ext4.ko") and names.index("crc16.ko") < names.index("ext4.ko")
    assert "nls_iso8859-1.ko" in names  # dash and underscore are the same module name
    assert len(names) == len(set(names))  # each module once


@pytest.mark.parametrize("script", ["installer.sh", "boot-init.sh", "rcS", "nocloud", "systemctl", "rpm", "stub"])
def test_scripts_parse_with_busybox_sh(script: str) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox not installed")
    proc = subprocess.run([busybox, "sh", "-n", str(FILES / script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_tree_is_complete_verified_and_labelled(rehearsal_tree: Path) -> None:
    host_parts_or_skip()
    src = from_dir(rehearsal_tree)  # verifies the .treeinfo checksums
    assert src.is_rehearsal and src.treeinfo.family == "CCIS Workbench rehearsal"
    text = (rehearsal_tree / ".treeinfo").read_text()
    assert "CentOS" not in text
    assert set(src.treeinfo.checksums) == {"images/pxeboot/vmlinuz", "images/pxeboot/initrd.img"}
    assert "installs no CentOS" in (rehearsal_tree / "README.rehearsal").read_text()
    kernel = (rehearsal_tree / "images/pxeboot/vmlinuz").read_bytes()
    if pvh_kernel(find_host_parts()) is not None:  # qemu boots the uncompressed kernel through PVH
        assert kernel.startswith(b"\x7fELF")
    else:
        assert kernel == find_host_parts().vmlinuz.read_bytes()


def test_installer_initrd_content(rehearsal_tree: Path) -> None:
    host_parts_or_skip()
    parts = find_host_parts()
    members = {e.name: e for e in read_cpio(gzip.decompress((rehearsal_tree / "images/pxeboot/initrd.img")
                                                             .read_bytes()))}
    init = members["init"]
    assert init.data == (FILES / "installer.sh").read_bytes() and init.mode & stat.S_IXUSR
    assert stat.S_ISCHR(members["dev/console"].mode)
    for needed in ("bin/busybox", "usr/sbin/sfdisk", "usr/sbin/mke2fs", "usr/bin/extlinux",
                   "lib64/ld-linux-x86-64.so.2", "usr/lib/EXTLINUX/mbr.bin", "etc/rehearsal/kver"):
        assert needed in members, needed
    assert members["bin/sh"].data == b"/bin/busybox"
    order = members["etc/rehearsal/modules"].data.decode().split()
    for rel in order:
        assert f"lib/modules/{parts.kernel_version}/{rel}" in members
    short = [p.rsplit("/", 1)[-1] for p in order]
    assert short.index("jbd2.ko") < short.index("ext4.ko") and short.index("virtio.ko") < short.index("virtio_blk.ko")
    # the payload: the same kernel, a boot initramfs whose /init mounts root=, a busybox system with stand-ins
    assert members["payload/root/boot/vmlinuz"].data == parts.vmlinuz.read_bytes()
    boot = {e.name: e for e in read_cpio(gzip.decompress(members["payload/root/boot/initrd.img"].data))}
    assert boot["init"].data == (FILES / "boot-init.sh").read_bytes()
    assert members["payload/root/usr/sbin/restorecon"].data == b"/usr/lib/rehearsal/stub"
    assert b"not CentOS" in members["payload/root/etc/os-release"].data
    assert b"ttyS0" in members["payload/root/etc/inittab"].data
    sudo = members["payload/root/usr/bin/sudo"]
    assert stat.S_IMODE(sudo.mode) == 0o4755 and sudo.uid == 0 and sudo.data.startswith(b"\x7fELF")
    assert "payload/root/bin/rpm" not in members
    assert members["payload/root/usr/bin/rpm"].data == (FILES / "rpm").read_bytes()


def test_second_build_is_reused(rehearsal_tree: Path) -> None:
    host_parts_or_skip()
    cache = rehearsal_tree.parent.parent
    mtime = (rehearsal_tree / "images/pxeboot/initrd.img").stat().st_mtime_ns
    t = time.monotonic()
    again = build_tree(cache=cache)
    assert again == rehearsal_tree
    assert (again / "images/pxeboot/initrd.img").stat().st_mtime_ns == mtime
    assert time.monotonic() - t < 5  # generous bound: a reuse only hashes a few small files
    assert not [p for p in rehearsal_tree.parent.iterdir() if p.name.startswith(".build-")]


# -- the rehearsal sudo (compiled on the host, part of the cache key); busybox applets that shadow our commands

def test_sudo_compiles_cleanly_as_a_static_binary(tmp_path: Path) -> None:
    try:
        parts = find_host_parts()
    except WorkbenchError as exc:
        pytest.skip(f"{exc.title}: {exc.hint}")
    data = compile_sudo(parts, tmp_path)
    assert data.startswith(b"\x7fELF") and b"ld-linux" not in data[:65536]
    warnings = subprocess.run([str(parts.cc), "-fsyntax-only", "-Wall", "-Wextra", "-Werror", str(FILES / "sudo.c")],
                              capture_output=True, text=True, check=False)
    assert warnings.returncode == 0, warnings.stderr


def test_missing_gcc_names_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc on PATH
    with pytest.raises(WorkbenchError) as err:
        find_compiler()
    assert "gcc" in err.value.message and err.value.hint == SUDO_HINT == "apt-get install gcc libc6-dev"
    with pytest.raises(WorkbenchError) as err2:  # the tree builder stops with a clear error, whatever is missing
        build_tree(cache=tmp_path / "cache")
    assert "gcc libc6-dev" in err2.value.hint
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob(".treeinfo"))


def test_missing_libc_a_names_the_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "gcc"
    fake.write_text("#!/bin/sh\necho libc.a\n")  # what gcc -print-file-name=libc.a prints without libc6-dev
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(WorkbenchError) as err:
        find_compiler()
    assert "libc.a" in err.value.message and "libc6-dev" in err.value.message and err.value.hint == SUDO_HINT


def test_cache_key_covers_sudo_c_and_the_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        parts = find_host_parts()
    except WorkbenchError as exc:
        pytest.skip(f"{exc.title}: {exc.hint}")
    assert tree_mod.BUILDER_VERSION != "2"
    before = parts.key()
    files = tmp_path / "files"
    shutil.copytree(FILES, files)
    with (files / "sudo.c").open("a") as fh:
        fh.write("/* changed */\n")
    monkeypatch.setattr(tree_mod, "FILES", files)
    assert parts.key() != before


def test_hide_applets_renames_in_place_keeping_the_table_sorted() -> None:
    names = ["[", "depmod", "devmem", "route", "rpm", "rpm2cpio", "zcip"]
    blob = b"head\0" + b"\0".join(n.encode() for n in names) + b"\0tail"
    out, hidden = hide_applets(blob, names, {"rpm", "depmod", "not-an-applet"})
    assert hidden == ["depmod", "rpm"] and len(out) == len(blob)
    table = out[5:-4].split(b"\0")[:-1]
    assert b"rpm" not in table and b"depmod" not in table and table == sorted(table)
    assert table[names.index("rpm2cpio")] == b"rpm2cpio" and len(table) == len(names)
    assert hide_applets(b"no table here", names, {"rpm"}) == (b"no table here", [])
