"""A workbench killed with SIGKILL (no handler runs): the next build notices the dead owner's domain and volumes,
says so in one line, removes them and succeeds. A half-written download nobody holds is removed on the next run,
one a live download holds is not. Real libvirtd, real qemu (TCG), the rehearsal tree served on 127.0.0.1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.installsource import sweep_partial_downloads
from tests.fixtures_libvirt import leftovers

REPO = Path(__file__).resolve().parents[2]


def _build(tree: str, tmp_path: Path, out: str) -> list[str]:
    return [sys.executable, "-u", "-m", "ccis_workbench", "build", "openstack-stream9", "--tree", tree,
            "--output", str(tmp_path / out), "--accel", "tcg", "--disk-size", "96M", "--memory", "512"]


@pytest.mark.libvirt
@pytest.mark.slow
def test_next_build_removes_a_killed_builds_leftovers(libvirt_uri: str, tree_server: str, tmp_path: Path) -> None:
    # other sessions build on the same libvirtd meanwhile: only this test's runs are checked, by their build ids
    no_leftovers = libvirt_uri
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    before = set(leftovers(no_leftovers))
    proc = subprocess.Popen(_build(tree_server, tmp_path, "out1"), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the live console: the guest's domain exists once it prints
            if "Starting installer" in line or "Linux version" in line:
                break
        mine = [n for n in set(leftovers(no_leftovers)) - before if "openstack-stream9" in n]
        assert any(n for n in mine), "the killed build's domain never appeared"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    locks = list((tmp_path / "cache").rglob("locks/*.lock"))  # the killed run's stale lock names its build id
    assert len(locks) == 1, locks
    left = [n for n in leftovers(no_leftovers) if locks[0].stem in n]
    assert left, "SIGKILL left nothing: nothing to test"
    done = subprocess.run(_build(tree_server, tmp_path, "out2"), cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"removed the leftovers of a dead build (pid {proc.pid}):" in done.stderr, done.stderr[-3000:]
    second = re.search(r"domain (ccis-openstack-stream9-\S+)", done.stderr)
    assert second, done.stderr[-3000:]
    now = set(leftovers(no_leftovers))
    assert not set(left) & now
    assert not [n for n in now if n.startswith(second.group(1))]
    assert not list((tmp_path / "cache").rglob("locks/*.lock"))


def test_a_dead_runs_partial_download_goes_a_live_ones_stays(tmp_path: Path) -> None:
    folder = tmp_path / "cache" / "ccis-workbench" / "trees" / "x"
    folder.mkdir(parents=True)
    dead = folder / ".vmlinuz.abc.part"
    dead.write_bytes(b"half")
    live = folder / ".initrd.img.def.part"
    live.write_bytes(b"half")
    # a live download holds its .part file locked; another process here stands for it
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl,sys,time; f=open(sys.argv[1],'ab'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(live)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        removed = sweep_partial_downloads(tmp_path / "cache")
        assert removed == [dead]
        assert not dead.exists() and live.exists()
    finally:
        holder.kill()
        holder.wait()
    assert sweep_partial_downloads(tmp_path / "cache") == [live]


def test_a_download_being_written_is_never_swept(tmp_path: Path) -> None:
    """Cells of a matrix run side by side in one process: one writes the cache (a tree's .treeinfo, a kernel) while
    another's build starts and sweeps the dead runs' `.part` files. A `.part` file is held from the moment it
    exists, so the sweep can never take one being written (it used to: the writer then failed with "No such file
    or directory" on its rename)."""
    import threading

    from ccis_workbench.core.installsource import _keep, _write_new

    folder = tmp_path / "cache" / "ccis-workbench" / "trees" / "x"
    folder.mkdir(parents=True)
    stop, swept, errors = threading.Event(), [], []

    def sweep() -> None:
        while not stop.is_set():
            swept.extend(sweep_partial_downloads(tmp_path / "cache"))

    sweeper = threading.Thread(target=sweep)
    sweeper.start()
    try:
        for i in range(800):
            try:
                _write_new(folder / ".treeinfo", b"[general]\n" * 64)
                _keep(folder / "vmlinuz", folder, lambda out: out.write(b"k" * 4096), lambda _p: None)
            except Exception as exc:  # noqa: BLE001 - any failure of a write is the finding
                errors.append(f"write {i}: {exc!r}")
                break
    finally:
        stop.set()
        sweeper.join()
    assert not errors and not swept, (errors, swept[:3])
    assert (folder / ".treeinfo").read_bytes() == b"[general]\n" * 64 and not list(folder.glob(".*.part"))
