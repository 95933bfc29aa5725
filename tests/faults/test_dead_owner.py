"""A run killed with SIGKILL (no handler runs) leaves its guest and volumes; the next command that touches the pool
notices the dead owner (its lock names this host, nobody holds it, its pid is gone), says so and removes them:
the next `boot-test` after a killed boot test, `doctor` after a killed build. Real libvirtd, real qemu (TCG), the
rehearsal tree served on 127.0.0.1. Every run here has a private cache (locks) and temporary directory
(credentials), so other sessions' runs on the same libvirtd are never counted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_libvirt import leftovers

pytest.importorskip("libvirt")
pytestmark = [pytest.mark.libvirt, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), TMPDIR=str(tmp_path / "tmp"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-u", "-m", "ccis_workbench", *args]


def _build(tree: str, out: Path) -> list[str]:
    return _cli(
        "build",
        "openstack-stream9",
        "--tree",
        tree,
        "--output",
        str(out),
        "--accel",
        "tcg",
        "--disk-size",
        "96M",
        "--memory",
        "512",
        "--format",
        "qcow2",
    )


def _all_ccis(uri: str) -> set[str]:
    """Every ccis- domain and pool volume now, boot tests' included."""
    from ccis_workbench.backends.libvirt_build import connect, find_leftovers

    conn = connect(uri)
    try:
        return {item.name for item in find_leftovers(conn)}
    finally:
        conn.close()


def _remove_run(uri: str, run_id: str) -> list[str]:
    """Remove what is left of run *run_id* (only it: `gc` would also take other sessions' runs, whose locks are in
    their own caches); the names removed."""
    from ccis_workbench.backends.libvirt_build import DEFAULT_POOL, _remove_leftover, connect, find_leftovers

    conn = connect(uri)
    try:
        items = [i for i in find_leftovers(conn) if i.build_id == run_id]
        for it in items:
            _remove_leftover(conn, DEFAULT_POOL, it)
        return [i.name for i in items]
    finally:
        conn.close()


def _kill_when(proc: subprocess.Popen[str], marks: tuple[str, ...]) -> None:
    """Read the live console until one of *marks*, then SIGKILL the workbench (no handler runs)."""
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if any(m in line for m in marks):
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _stale_lock(tmp_path: Path) -> str:
    locks = list((tmp_path / "cache").rglob("locks/*.lock"))  # the killed run's stale lock names its run id
    assert len(locks) == 1, locks
    return locks[0].stem


def test_next_boot_test_removes_a_killed_boot_tests_leftovers(
    libvirt_uri: str, tree_server: str, tmp_path: Path
) -> None:
    env = _env(tmp_path)
    built = subprocess.run(
        _build(tree_server, tmp_path / "out"),
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    artifact = next(d for d in (tmp_path / "out").iterdir() if (d / "manifest.json").exists())
    test = _cli("boot-test", str(artifact), "--accel", "tcg")
    proc = subprocess.Popen(
        [*test, "-o", str(tmp_path / "report1")],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    _kill_when(proc, ("Linux version", "login:"))
    run_id = _stale_lock(tmp_path)
    left = {n for n in _all_ccis(libvirt_uri) if run_id in n}
    assert any(n.startswith("ccis-boottest-") for n in left), f"SIGKILL left no domain: nothing to test ({left})"
    assert list((tmp_path / "tmp").glob("ccis-boot-test-*")), "SIGKILL left no credentials: nothing to test"
    try:
        done = subprocess.run(
            [*test, "--quiet", "-o", str(tmp_path / "report2")],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
    finally:
        _remove_run(libvirt_uri, run_id)  # whatever the assertions say: nothing of it stays on the shared libvirtd
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"removed the leftovers of a dead boot test (pid {proc.pid}):" in done.stderr, done.stderr[-3000:]
    assert "removed the credentials of a dead boot test:" in done.stderr, done.stderr[-3000:]
    report = json.loads((tmp_path / "report2" / "report.json").read_text())
    assert report["passed"]
    now = _all_ccis(libvirt_uri)
    assert not left & now, f"the killed boot test's leftovers remain: {left & now}"
    assert not [n for n in now if report["run_id"] in n], "the second boot test left something"
    assert not list((tmp_path / "cache").rglob("locks/*.lock")), "a stale lock remains"
    assert not list((tmp_path / "tmp").glob("ccis-boot-test-*")), "a credentials directory remains"


def test_doctor_removes_a_killed_builds_leftovers_and_says_so(
    libvirt_uri: str, tree_server: str, tmp_path: Path
) -> None:
    from ccis_workbench.backends.libvirt_session import connect, hypervisor_key, record_verdict

    env = _env(tmp_path)
    # KVM guests hang on the CI hosts: doctor reads the recorded verdict instead of probing KVM with a guest
    conn = connect(libvirt_uri)
    try:
        key = hypervisor_key(conn)
    finally:
        conn.close()
    record_verdict(
        key, False, "no output from the running kernel within 15 s under KVM", tmp_path / "cache" / "ccis-workbench"
    )
    before = set(leftovers(libvirt_uri))
    proc = subprocess.Popen(
        _build(tree_server, tmp_path / "out"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    _kill_when(proc, ("Starting installer", "Linux version"))
    run_id = _stale_lock(tmp_path)
    left = {n for n in set(leftovers(libvirt_uri)) - before if run_id in n}
    assert left, "SIGKILL left nothing: nothing to test"
    try:
        done = subprocess.run(
            _cli("doctor", "--json"), cwd=REPO, capture_output=True, text=True, env=env, timeout=300, check=False
        )
    finally:
        _remove_run(libvirt_uri, run_id)
    checks = json.loads(done.stdout)
    said = [c for c in checks if c["name"] == "dead runs"]
    assert len(said) == 1 and said[0]["ok"], checks
    assert said[0]["message"].startswith(f"removed the leftovers of a dead build (pid {proc.pid}): "), said
    for name in left:
        assert name in said[0]["message"]
    # removing them is not a problem; the host's other checks decide the status (a TCG probe guest on a loaded
    # host may miss its window): 1 exactly when one of them failed
    failed = [c for c in checks if not c["ok"] and c["severity"] == "error"]
    assert done.returncode == (1 if failed else 0), (failed, done.stderr[-2000:])
    assert not left & _all_ccis(libvirt_uri)
    assert not list((tmp_path / "cache").rglob("locks/*.lock")), "a stale lock remains"


def test_the_tuis_host_check_removes_a_killed_builds_leftovers_and_says_so(
    libvirt_uri: str, tree_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The TUI's host check at start (LocalCapabilities, the real libvirtd) removes a killed build's leftovers and
    says so in a notification."""
    import asyncio

    from ccis_workbench.ui.app import WorkbenchApp
    from ccis_workbench.ui.capabilities import LocalCapabilities
    from tests.test_ui_support import settle

    env = _env(tmp_path)
    before = set(leftovers(libvirt_uri))
    proc = subprocess.Popen(
        _build(tree_server, tmp_path / "out"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    _kill_when(proc, ("Starting installer", "Linux version"))
    run_id = _stale_lock(tmp_path)
    left = {n for n in set(leftovers(libvirt_uri)) - before if run_id in n}
    assert left, "SIGKILL left nothing: nothing to test"
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])  # the killed build's locks
    monkeypatch.setenv("TMPDIR", env["TMPDIR"])
    monkeypatch.setenv("CCIS_WORKBENCH_URI", libvirt_uri)

    async def run() -> list[str]:
        app = WorkbenchApp(REPO, capabilities=LocalCapabilities(), profile="openstack-stream9")
        async with app.run_test(size=(120, 36)) as pilot:
            await settle(pilot)
            for _ in range(600):  # the host check runs in a worker thread after the first refresh
                if app.host_status.reachable is not None:
                    break
                await pilot.pause(0.1)
            await settle(pilot)
            assert app.host_status.reachable, app.host_status
            return [str(n.message) for n in app._notifications]

    try:
        notes = asyncio.run(run())
    finally:
        _remove_run(libvirt_uri, run_id)
    said = [n for n in notes if n.startswith(f"removed the leftovers of a dead build (pid {proc.pid}): ")]
    assert said, notes
    for name in left:
        assert name in said[0]
    assert not left & _all_ccis(libvirt_uri)
    assert not list((tmp_path / "cache").rglob("locks/*.lock")), "a stale lock remains"
