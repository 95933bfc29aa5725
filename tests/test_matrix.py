"""`ccis-workbench matrix`: cell selection, cache keys, the Markdown grid (pure), and a real run on the rehearsal
tree: a cell built and boot-tested on libvirt, then reused from the cache with nothing rebuilt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ccis_workbench.core.catalog import Catalog
from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.flows.matrix import (
    CACHED,
    FAILED,
    PASSED,
    Cell,
    assign_hosts,
    cell_key,
    markdown_report,
    select_cells,
)

REPO = Path(__file__).resolve().parents[1]


def test_selection_by_glob_and_filters() -> None:
    cat = Catalog.load(REPO)
    names = [c.profile for c in select_cells(cat, ["overlay-*"], releases=["centos-stream-9"])]
    assert names and all(n.startswith("overlay-") and n.endswith("stream9") for n in names)
    epel = select_cells(cat, overlays=["epel"])
    assert epel and all("epel" in c.overlays for c in epel)
    assert {c.target for c in select_cells(cat, targets=["gce"])} == {"gce"}
    with pytest.raises(WorkbenchError, match="no profile matches"):
        select_cells(cat, ["no-such-*"])


def test_hosts_are_dealt_in_turn_and_keys_follow_what_decides_the_image() -> None:
    cells = [Cell(f"p{i}", "centos-stream-9", "openstack", []) for i in range(5)]
    assign_hosts(cells, ["qemu:///system", "qemu+tcp://127.0.0.1:16599/system"])
    assert [c.host[:6] for c in cells] == ["qemu:/", "qemu+t", "qemu:/", "qemu+t", "qemu:/"]
    tree = {"family": "CCIS Workbench rehearsal", "treeinfo_sha256": "a" * 64}
    k = cell_key("b" * 64, tree, {"accel": "tcg"})
    assert k == cell_key("b" * 64, dict(tree), {"accel": "tcg"})
    assert k != cell_key("c" * 64, tree, {"accel": "tcg"})
    assert k != cell_key("b" * 64, {**tree, "treeinfo_sha256": "d" * 64}, {"accel": "tcg"})
    assert k != cell_key("b" * 64, tree, {"accel": "kvm"})


def test_markdown_grid(tmp_path: Path) -> None:
    cells = [Cell("a", "centos-stream-9", "openstack", [], status=PASSED, junit=str(tmp_path / "a/junit.xml"),
                  rehearsal=True),
             Cell("b", "centos-stream-9", "gce", [], status=FAILED, reason="a | b"),
             Cell("c", "centos-7", "openstack", [], status=CACHED)]
    md = markdown_report(cells, tmp_path)
    assert "| release \\ target | gce | openstack |" in md
    assert "[a](a/junit.xml): pass (R)" in md and "[b](): **FAIL**" in md and "pass (cached)" in md
    assert "REHEARSAL, not a CentOS build" in md
    assert "a \\| b" in md


@pytest.mark.libvirt
@pytest.mark.slow
def test_matrix_runs_then_reuses_the_cache(no_leftovers: str, tree_server: str, tmp_path: Path) -> None:
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"), XDG_STATE_HOME=str(tmp_path / "state"))
    argv = [sys.executable, "-m", "ccis_workbench", "matrix", "openstack-stream9", "--tree", tree_server,
            "--hosts", no_leftovers, "--accel", "tcg", "--disk-size", "96M", "--memory", "512", "--grow", "64",
            "--rehearsal", "--quiet", "-o", str(tmp_path / "mx")]
    first = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((tmp_path / "mx/summary.json").read_text())
    assert summary["counts"]["passed"] == 1
    (cell,) = summary["cells"]
    assert cell["host"] == no_leftovers and Path(cell["junit"]).is_file() and cell["rehearsal"] is True
    assert "REHEARSAL, not a CentOS build" in Path(cell["junit"]).read_text()
    assert "openstack-stream9" in (tmp_path / "mx/matrix.md").read_text()
    second = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads((tmp_path / "mx/summary.json").read_text())
    assert again["counts"]["cached"] == 1 and again["counts"]["passed"] == 0
    assert len(list((tmp_path / "mx/openstack-stream9/artifacts").iterdir())) == 1, "nothing was rebuilt"


def test_a_message_said_while_the_table_runs_is_printed_above_it_not_under_it() -> None:
    """On a terminal the live table is redrawn over its own rows; a line written beside it (the signal handler's
    "SIGINT: cancelling") was drawn over by the next redraw, so the user never saw why the run stopped. What is
    said goes above the table, and later redraws go back over the table's rows only."""
    import io

    from ccis_workbench.cli.matrix_cmds import LiveTable

    cells = [Cell("aws-stream9", "centos-stream-9", "aws", [], host="qemu:///system")]
    out = io.StringIO()
    table = LiveTable(cells, out, tty=True)
    table.tick()
    table.say("\nSIGINT: cancelling: destroying the guest and removing its volumes")
    table.tick()
    table.tick()
    draws = out.getvalue().split("\x1b[2F")  # each redraw goes back up over the header and the one row
    assert len(draws) == 3, out.getvalue()
    assert "SIGINT" not in draws[0] and "SIGINT" not in draws[2]
    assert draws[1].startswith("\x1b[2KSIGINT: cancelling: destroying the guest")  # above the table, erased first
    assert draws[1].index("SIGINT") < draws[1].index("CELL")
    table.stop_event.set()  # once the table is done, a message goes straight to stderr
    table.say("late")
    assert "late" not in out.getvalue()
