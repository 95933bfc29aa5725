"""libvirtd killed (SIGKILL, not restarted) in the middle of a build. The shared system daemon is never touched: the
test starts a private session daemon of its own (`libvirtd` run as a throwaway user, its XDG folders in a short
temporary folder), defines the workbench's pool there and builds through its socket. Once the guest's kernel prints,
that daemon is killed. The build must say libvirtd went away, naming the URI, exit 1, write no artifact, and not
leave the guest's qemu running (the workbench finds it on this host by the domain's UUID and kills it). The volumes
stay as files in the pool until libvirtd is back and `gc` runs (the hint says so); the test removes the folder."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("libvirt")
pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
USER = "ccis-fault"


def _pids_of(user: str) -> list[int]:
    out = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in out.split()]


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed qemu whose parent, the killed libvirtd, cannot reap it any more)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "?")
    return state not in ("Z", "X")


def _short_folder() -> Path:
    """/tmp/cXXXX: qemu's channel sockets go 95 bytes below it, a UNIX socket path holds at most 107."""
    while True:
        path = Path(f"/tmp/c{secrets.token_hex(2)}")
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            continue


@pytest.fixture
def session_daemon(libvirt_uri: str) -> Iterator[tuple[str, Path]]:
    """A libvirtd of its own (session mode, as USER): yields (its URI, its folder). Stopped and removed whatever
    happens: every process of USER is killed, the folder removed, the user deleted if this fixture made it."""
    if os.geteuid() != 0:
        pytest.skip("makes a throwaway user: needs root")
    made = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
        made = True
    # short: qemu's UNIX socket paths under the configuration folder must stay within 108 bytes
    top = _short_folder()
    daemon = None
    try:
        top.chmod(0o711)
        dirs = {k: top / k for k in ("r", "c", "k", "d", "pool")}
        for d in dirs.values():
            d.mkdir()
            shutil.chown(d, USER)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(top),
            "XDG_RUNTIME_DIR": str(dirs["r"]),
            "XDG_CONFIG_HOME": str(dirs["c"]),
            "XDG_CACHE_HOME": str(dirs["k"]),
            "XDG_DATA_HOME": str(dirs["d"]),
        }
        daemon = subprocess.Popen(
            ["runuser", "-u", USER, "--", "libvirtd", "--timeout", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sock = dirs["r"] / "libvirt" / "libvirt-sock"
        uri = f"qemu+unix:///session?socket={sock}"
        for _ in range(300):  # until it answers (bounded)
            if (
                sock.exists()
                and subprocess.run(["virsh", "-c", uri, "version"], capture_output=True, check=False).returncode == 0
            ):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the private libvirtd did not start")
        subprocess.run(
            ["virsh", "-c", uri, "pool-define-as", "ccis-workbench", "dir", "--target", str(dirs["pool"])],
            capture_output=True,
            check=True,
        )
        subprocess.run(["virsh", "-c", uri, "pool-start", "ccis-workbench"], capture_output=True, check=True)
        yield uri, top
    finally:
        for pid in _pids_of(USER):  # the daemon and any qemu it started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if daemon is not None:
            daemon.wait(timeout=30)
        for _ in range(50):
            if not _pids_of(USER):
                break
            time.sleep(0.1)
        shutil.rmtree(top, ignore_errors=True)
        if made:
            subprocess.run(["userdel", USER], capture_output=True, check=False)


def test_libvirtd_killed_mid_build_is_said_and_its_guest_does_not_run_on(
    session_daemon: tuple[str, Path], tree_server: str, tmp_path: Path
) -> None:
    uri, top = session_daemon
    out = tmp_path / "out"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "ccis_workbench",
            "build",
            "openstack-stream9",
            "--tree",
            tree_server,
            "--accel",
            "tcg",
            "--disk-size",
            "96M",
            "--memory",
            "512",
            "--format",
            "qcow2",
            "--uri",
            uri,
            "--output",
            str(out),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the live console: the guest's qemu runs once its kernel prints
            if "Linux version" in line:
                break
        else:
            pytest.fail(f"the guest never printed: {proc.communicate(timeout=60)[1][-3000:]}")
        qemus = [p for p in _pids_of(USER) if b"qemu" in Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")[0]]
        assert qemus, "no qemu of the private daemon runs: nothing to test"
        daemon = int((top / "r" / "libvirt" / "libvirtd.pid").read_text().strip())
        os.kill(daemon, signal.SIGKILL)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err[-3000:]
    assert "build lost: libvirtd went away" in err, err[-3000:]
    assert f"no connection to {uri}" in err, err[-3000:]
    assert "killed the guest's qemu that libvirtd left running (pid " in err, err[-3000:]
    assert "`ccis-workbench gc`" in err
    assert not [p for p in qemus if _running(p)], "the guest's qemu still runs"
    assert not out.exists() or not list(out.iterdir()), list(out.rglob("*"))
    assert not list((tmp_path / "cache").rglob("locks/*.lock"))
