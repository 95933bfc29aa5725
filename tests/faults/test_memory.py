"""A guest with too little memory. The build refuses less than 256 MiB before anything is made (bad input, exit 2,
naming the value and what to give); a guest that runs out of memory while it installs is recognised from the
kernel's console lines (the OOM killer, its panics, an initramfs that does not fit) and said as "The guest ran out
of memory" with the --memory it had, not as a generic stall."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.failure import FailureDetector

REPO = Path(__file__).resolve().parents[2]

# Console excerpts in the Linux kernel's own wording (printk formats of mm/oom_kill.c, init/initramfs.c,
# init/do_mounts.c and kernel/panic.c), in the order a guest prints them
INITRAMFS_DOES_NOT_FIT = """\
[    0.000000] Linux version 6.1.0-28-amd64 (debian-kernel@lists.debian.org)
[    0.912345] Trying to unpack rootfs image as initramfs...
[    1.234567] Initramfs unpacking failed: write error
[    1.301234] Freeing initrd memory: 65536K
[    2.345678] VFS: Cannot open root device "(null)" or unknown-block(0,0): error -6
[    2.345690] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)
"""
OOM_KILLER = """\
Running post-installation scripts
[   40.101010] awk invoked oom-killer: gfp_mask=0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP), order=0, oom_score_adj=0
[   40.101020] CPU: 0 PID: 812 Comm: awk Not tainted 6.1.0-28-amd64 #1  Debian 6.1.119-1
[   40.201030] Out of memory: Killed process 812 (awk) total-vm:245760kB, anon-rss:231424kB, file-rss:0kB
"""
NOTHING_TO_KILL = """\
[   61.000001] Out of memory and no killable processes...
[   61.000002] Kernel panic - not syncing: System is deadlocked on memory
"""


@pytest.mark.parametrize(
    "console",
    [INITRAMFS_DOES_NOT_FIT, OOM_KILLER, NOTHING_TO_KILL],
    ids=["initramfs-does-not-fit", "oom-killer", "nothing-to-kill"],
)
def test_running_out_of_memory_is_recognised_from_the_console(console: str) -> None:
    detector = FailureDetector()
    for i in range(0, len(console), 7):  # any chunking
        detector.feed("console", console[i : i + 7])
    verdict = detector.verdict()
    assert verdict is not None and verdict.kind == "oom", verdict
    assert "ran out of memory" in verdict.summary and "--memory" in verdict.summary
    # the first memory line is the cause shown, not the panic about the root file system that follows it
    assert any("memory" in line.lower() or "oom" in line for line in verdict.lines)


def test_a_plain_root_fs_panic_is_still_a_kernel_panic() -> None:
    detector = FailureDetector()
    detector.feed("console", "[  2.3] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n")
    assert detector.verdict() is not None and detector.verdict().kind == "kernel-panic"  # type: ignore[union-attr]


@pytest.mark.parametrize("memory", ["64", "48"])
def test_too_little_memory_is_refused_before_a_guest_is_made(memory: str, tree_server: str, tmp_path: Path) -> None:
    """No guest, nothing in libvirt: the value is refused while planning, with what to give instead."""
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(tmp_path))
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
            "--memory",
            memory,
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"error: Too little memory\n  {memory} MiB\n" in proc.stderr, proc.stderr[-2000:]
    assert "at least 256 MiB" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not list((tmp_path / "cache").rglob("locks/*.lock"))
    fetched = [p for p in (tmp_path / "cache").rglob("trees/**/*") if p.is_file()]
    assert not fetched, f"refused only after reading the install tree: {fetched}"
