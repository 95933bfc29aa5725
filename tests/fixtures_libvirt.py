"""Fixtures for tests that need a real libvirtd with qemu (mark them `@pytest.mark.libvirt`).

There is no systemd on the CI machines: when `virsh -c qemu:///system version` fails, the session fixture
starts `virtlogd -d` and `libvirtd -d` itself (docs/hosts.md) and waits for the socket, without sleeping
blindly. Daemons it started are left running for the rest of the machine's life, as .ci/run does.
Wired in tests/conftest.py with `pytest_plugins = ["tests.fixtures_libvirt"]`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

URI = "qemu:///system"
#: Names of build domains/volumes (boot tests, ccis-boottest-*, run concurrently and police their own).
BUILDS = re.compile(r"^ccis-(?!boottest-)")
SOCKET = Path("/var/run/libvirt/libvirt-sock")


def _virsh_ok(uri: str = URI) -> bool:
    if not shutil.which("virsh"):
        return False
    proc = subprocess.run(["virsh", "-c", uri, "version"], capture_output=True, text=True, timeout=30,
                          check=False)
    return proc.returncode == 0


def start_daemons(uri: str = URI, wait: float = 30.0) -> None:
    """Start virtlogd and libvirtd by hand when the URI is not reachable (no systemd here)."""
    if _virsh_ok(uri):
        return
    for daemon in ("virtlogd", "libvirtd"):
        path = shutil.which(daemon) or f"/usr/sbin/{daemon}"
        if not os.path.exists(path):
            pytest.skip(f"{daemon} is not installed (apt-get install libvirt-daemon-system)")
        subprocess.run([path, "-d"], check=False, timeout=30)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if SOCKET.exists() and _virsh_ok(uri):
            return
        time.sleep(0.2)  # polling a daemon's startup, not synchronising test steps
    pytest.fail(f"libvirtd did not answer on {uri} within {wait:.0f}s")


@pytest.fixture(scope="session")
def libvirt_uri() -> str:
    """A reachable qemu:///system (daemons started when needed); skips without libvirt-python."""
    pytest.importorskip("libvirt")
    if os.geteuid() != 0:
        pytest.skip("libvirt build tests run as root against qemu:///system")
    start_daemons(URI)
    return URI


def left_behind(uri: str, prefix: str) -> list[str]:
    """Domains and ccis-workbench pool volumes whose name starts with *prefix* (one run's leftovers)."""
    doms = subprocess.run(["virsh", "-c", uri, "list", "--all", "--name"], capture_output=True, text=True,
                          check=True).stdout.split()
    vols = subprocess.run(["virsh", "-c", uri, "vol-list", "ccis-workbench"], capture_output=True, text=True,
                          check=False).stdout.split()
    return [n for n in doms + vols if n.startswith(prefix)]


def leftovers(uri: str = URI) -> list[str]:
    """Names of ccis- domains and volumes present now that belong to no live build (a build holding its lock,
    e.g. another test session's, is not a leftover)."""
    from ccis_workbench.backends.libvirt_build import connect, find_leftovers

    conn = connect(uri)
    try:
        return [item.name for item in find_leftovers(conn) if not item.live and BUILDS.match(item.name)]
    finally:
        conn.close()


def remove(uri: str, names: list[str]) -> None:
    """Destroy the named ccis- domains and delete the named volumes of the workbench's pool, as `gc` does."""
    from ccis_workbench.backends.libvirt_build import _remove_leftover, connect, find_leftovers
    from ccis_workbench.backends.libvirt_session import DEFAULT_POOL

    conn = connect(uri)
    try:
        for item in find_leftovers(conn):
            if item.name in names:
                _remove_leftover(conn, DEFAULT_POOL, item)
    finally:
        conn.close()


@pytest.fixture
def new_leftovers(libvirt_uri: str) -> Callable[[], list[str]]:
    """What `leftovers` finds now that was not there when the test began: what an earlier test left (and failed
    for) is not this test's failure too."""
    before = set(leftovers(libvirt_uri))
    return lambda: sorted(set(leftovers(libvirt_uri)) - before)


@pytest.fixture
def no_leftovers(libvirt_uri: str, new_leftovers: Callable[[], list[str]]) -> Iterator[str]:
    """Fails the test when it leaves a ccis- build domain or volume behind, and removes them: the next test starts
    from a clean pool (one failure is reported once, not again by every later test)."""
    yield libvirt_uri
    left = new_leftovers()
    if left:
        remove(libvirt_uri, left)
        pytest.fail(f"left behind: {left} (removed after this failure; `ccis-workbench gc` removes them)")


@pytest.fixture(scope="session")
def rehearsal_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rehearsal install tree, built once per session into a private cache."""
    from ccis_workbench.rehearsal.tree import build_tree

    return build_tree(cache=tmp_path_factory.mktemp("rehearsal-cache"))


@pytest.fixture
def tree_server(rehearsal_tree: Path) -> Iterator[str]:
    """The rehearsal tree served over HTTP on 127.0.0.1 for one test; yields its URL."""
    from ccis_workbench.rehearsal.httpserver import TreeServer

    with TreeServer(rehearsal_tree) as srv:
        yield srv.url
