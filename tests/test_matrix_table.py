"""The matrix's live table: on a terminal (a pty, through pexpect) it is redrawn in place while a cell runs (cursor
up, erase line: the same rows again with a new stage or elapsed time); through a pipe, plain lines, one per change.
A real one-cell matrix on the rehearsal tree each time (libvirt, TCG)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.libvirt, pytest.mark.slow]


def _argv(tree: str, uri: str, out: Path) -> list[str]:
    return [sys.executable, "-m", "ccis_workbench", "matrix", "openstack-stream9", "--tree", tree, "--hosts", uri,
            "--accel", "tcg", "--disk-size", "96M", "--memory", "512", "--grow", "64", "--format", "qcow2",
            "--rehearsal", "-o", str(out)]


def _env(tmp_path: Path) -> dict[str, str]:
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"))


def test_plain_lines_through_a_pipe(no_leftovers: str, tree_server: str, tmp_path: Path) -> None:
    proc = subprocess.run(_argv(tree_server, no_leftovers, tmp_path / "mx"), cwd=REPO, capture_output=True,
                          text=True, env=_env(tmp_path), timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "\x1b[" not in proc.stdout
    lines = proc.stdout.splitlines()
    states = [m.group(1) for line in lines
              if (m := re.fullmatch(r"\[\d\d:\d\d\] openstack-stream9 on qemu:///system: (\S+).*", line))]
    assert states == ["build", "boot-test", "passed"], proc.stdout
    assert re.search(r": passed \(\d\d:\d\d\)$", lines[-1]), lines[-1]
    assert "== " in proc.stderr  # the builds' stage lines go on to stderr, as before


def test_redrawn_in_place_on_a_terminal(no_leftovers: str, tree_server: str, tmp_path: Path) -> None:
    pexpect = pytest.importorskip("pexpect")
    argv = _argv(tree_server, no_leftovers, tmp_path / "mx")
    child = pexpect.spawn(argv[0], argv[1:], cwd=str(REPO), env=_env(tmp_path), encoding="utf-8",
                          timeout=900, dimensions=(24, 120))
    child.expect(pexpect.EOF)
    child.close()
    text = child.before
    assert child.exitstatus == 0, text[-3000:]
    assert "CELL" in text and "ELAPSED" in text
    # every redraw after the first goes back up over the header and the row: ESC [ 2 F, then erases each line
    redraws = text.count("\x1b[2F")
    assert redraws >= 2, text[-2000:]
    assert text.count("CELL") == redraws + 1  # the table is never printed below itself, only over itself
    rows = re.findall(r"\x1b\[2Kopenstack-stream9\s+qemu:///system\s+(\S+)\s+(\d\d:\d\d)?", text)
    stages = [s for s, _ in rows]
    assert "build" in stages and "boot-test" in stages and stages[-1] == "passed", stages
    assert "== " not in text  # no stage lines scrolling the table away
