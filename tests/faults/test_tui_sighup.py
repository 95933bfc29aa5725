"""The TUI sent SIGHUP (a dropped SSH connection, a closed terminal) during a build: exit status 129, the guest
destroyed and its volumes removed. The app runs in a pty (pexpect) on a copy of the catalog; the build screen (`b`)
starts with ctrl+s under TCG (CCIS_WORKBENCH_ACCEL) on the rehearsal tree; the signal comes from this process."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pexpect
import pytest

from tests.fixtures_libvirt import leftovers

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


def _domains(uri: str) -> set[str]:
    return {n for n in leftovers(uri) if not n.endswith((".qcow2", ".img", ".iso", ".raw")) and "vmlinuz" not in n}


def test_sighup_to_the_tui_during_a_build_leaves_nothing(libvirt_uri: str, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    for part in ("kickstarts", "profiles"):
        shutil.copytree(REPO / part, catalog / part)
    env = dict(os.environ, CCIS_WORKBENCH_ACCEL="tcg", XDG_CACHE_HOME=str(tmp_path / "cache"), TERM="xterm-256color",
               CCIS_WORKBENCH_ARTIFACTS=str(tmp_path / "out"))
    before = _domains(libvirt_uri)
    app = pexpect.spawn(sys.executable, ["-m", "ccis_workbench", "--catalog", str(catalog)], cwd=str(tmp_path),
                        env=env, dimensions=(36, 120), encoding="utf-8", timeout=30)
    seen = ""
    mine: set[str] = set()
    try:
        app.expect("openstack", timeout=60)  # the compose screen is up
        time.sleep(2)  # its first render settles before the key
        app.send("b")
        app.expect("ready: ccis-", timeout=120)  # the plan is made: ctrl+s before this does nothing
        time.sleep(1)
        app.send("\x13")  # ctrl+s: start
        for _ in range(240):  # up to 2 minutes for this run's domain to appear (the rehearsal tree is built first)
            try:
                seen += app.read_nonblocking(1 << 16, timeout=0.5)
            except pexpect.TIMEOUT:
                pass
            mine = _domains(libvirt_uri) - before
            if mine:
                break
        assert mine, "no domain of this run appeared; the screen showed:\n" + seen[-3000:]
        app.kill(signal.SIGHUP)
        app.expect(pexpect.EOF, timeout=120)
    finally:
        app.close(force=True)
    assert app.exitstatus == 129, (app.exitstatus, app.signalstatus, seen[-2000:])
    now = leftovers(libvirt_uri)
    assert not [n for n in now if any(n.startswith(d) for d in mine)]
