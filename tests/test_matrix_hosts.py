"""The matrix over two libvirt hosts for real: `qemu:///system` and `qemu+tcp://127.0.0.1:PORT/system` reach the
same daemon through different endpoints (the TCP one is a forwarder to the daemon's unix socket, as in
tests/test_propose.py; the shared libvirtd is never restarted). Cells land on both; the TCP endpoint is killed
mid-run (its listener and every connection through it): the other cells finish, the lost host's cells fail with a
reason naming it, and nothing is left behind."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ccis_workbench.flows.signals import CELLS_STOPPING
from tests.fixtures_libvirt import URI

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


class Endpoint:
    """qemu+tcp://127.0.0.1:PORT/system forwarded to the local daemon's unix socket; kill() ends it for good."""

    def __init__(self, port: int = 0) -> None:
        from tests.fixtures_libvirt import SOCKET

        self.socket_path = str(SOCKET)
        self.srv = socket.create_server(("127.0.0.1", port))
        self.port = self.srv.getsockname()[1]
        self.uri = f"qemu+tcp://127.0.0.1:{self.port}/system"
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(1 << 16):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return  # killed
            daemon = socket.socket(socket.AF_UNIX)
            daemon.connect(self.socket_path)
            with self.lock:
                self.open += [client, daemon]
            threading.Thread(target=self._pump, args=(client, daemon), daemon=True).start()
            threading.Thread(target=self._pump, args=(daemon, client), daemon=True).start()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.srv.shutdown(socket.SHUT_RDWR)
        self.srv.close()
        with self.lock:
            for s in self.open:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
        self.thread.join(timeout=10)


@pytest.fixture
def endpoint(libvirt_uri: str) -> Iterator[Endpoint]:
    ep = Endpoint()
    try:
        yield ep
    finally:
        ep.kill()


def domains() -> list[str]:
    return subprocess.run(["virsh", "-c", URI, "list", "--name"], capture_output=True, text=True,
                          check=True).stdout.split()


def test_two_hosts_one_killed_mid_run(no_leftovers: str, new_leftovers: Callable[[], list[str]], endpoint: Endpoint,
                                      tree_server: str, tmp_path: Path) -> None:
    # sorted, dealt in turn: aws-stream9 and openstack-stream10 on the unix socket, cloudstack-stream9 and
    # openstack-stream9 through TCP; one job per host
    profiles = ["aws-stream9", "cloudstack-stream9", "openstack-stream10", "openstack-stream9"]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"))
    out = tmp_path / "mx"
    argv = [sys.executable, "-m", "ccis_workbench", "matrix", *profiles, "--tree", tree_server,
            "--hosts", f"{URI},{endpoint.uri}", "--jobs", "1", "--accel", "tcg", "--disk-size", "96M",
            "--memory", "512", "--grow", "64", "--format", "qcow2", "--rehearsal", "--quiet", "-o", str(out)]
    before = set(domains())  # other sessions may be building the same profiles
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # the TCP host's second cell starts once its first is done: then the endpoint goes away
        deadline = time.monotonic() + 900
        while not ((out / "cloudstack-stream9/boot-test").is_dir()
                   and any(d.startswith("ccis-openstack-stream9-") for d in set(domains()) - before)):
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the second TCP cell never started"
            time.sleep(0.5)
        endpoint.kill()
        _, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err[-3000:]
    cells = {c["profile"]: c for c in json.loads((out / "summary.json").read_text())["cells"]}
    assert {c["host"] for c in cells.values()} == {URI, endpoint.uri}
    for name in ("aws-stream9", "openstack-stream10"):
        assert cells[name]["host"] == URI, cells[name]
        assert cells[name]["status"] == "passed", cells[name]["reason"]
    assert cells["cloudstack-stream9"]["host"] == endpoint.uri
    assert cells["cloudstack-stream9"]["status"] == "passed", cells["cloudstack-stream9"]["reason"]
    lost = cells["openstack-stream9"]
    assert lost["host"] == endpoint.uri and lost["status"] == "failed"
    assert f"host {endpoint.uri} went away" in lost["reason"], lost["reason"]
    row = next(line for line in err.splitlines() if "openstack-stream9 " in line)
    assert row.split()[:3] == ["failed", "openstack-stream9", endpoint.uri] and "went away" in row, row
    assert "Traceback" not in err
    # the install domain went with its connection (libvirt's autodestroy); its volumes wait on the lost host,
    # as the reason says: the host comes back on the same port, and the command the reason names clears them
    gc = f"ccis-workbench gc --uri {endpoint.uri}"
    assert gc in lost["reason"]
    back = Endpoint(endpoint.port)
    try:
        done = subprocess.run([sys.executable, "-m", "ccis_workbench", *gc.split()[1:]], cwd=REPO,
                              capture_output=True, text=True, env=env, timeout=120, check=False)
    finally:
        back.kill()
    assert done.returncode == 0, done.stdout + done.stderr
    assert not [n for n in new_leftovers() if any(p in n for p in profiles)]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_every_cell_and_leaves_nothing(no_leftovers: str, new_leftovers: Callable[[], list[str]],
                                                      tree_server: str, tmp_path: Path, sig: signal.Signals) -> None:
    """--jobs 2: interrupted while two cells run, both stop, the third never starts, nothing stays on the host
    and no cell folder remains; exit status 128 + the signal (130 for Ctrl-C, 143 for SIGTERM)."""
    profiles = ["aws-stream9", "cloudstack-stream9", "openstack-stream10"]
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"))
    out = tmp_path / "mx"
    argv = [sys.executable, "-m", "ccis_workbench", "matrix", *profiles, "--tree", tree_server, "--hosts", URI,
            "--jobs", "2", "--accel", "tcg", "--disk-size", "96M", "--memory", "512", "--grow", "64",
            "--format", "qcow2", "--rehearsal", "--quiet", "-o", str(out)]
    before = set(domains())
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 600
        while len([d for d in set(domains()) - before if any(d.startswith(f"ccis-{p}-") for p in profiles)]) < 2:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "two cells never ran at once"
            time.sleep(0.2)
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, err[-3000:]
    assert f"{sig.name}: cancelling: {CELLS_STOPPING}" in err and "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["passed"] == 0 and summary["counts"]["skipped"] == len(profiles), summary["counts"]
    assert all(c["stage"] == "cancelled" for c in summary["cells"])
    assert not [p for p in profiles if (out / p).exists()], "a cancelled cell left its folder"
    assert not [d for d in set(domains()) - before if any(d.startswith(f"ccis-{p}-") for p in profiles)]
    assert not [n for n in new_leftovers() if any(p in n for p in profiles)]
