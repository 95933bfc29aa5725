"""The review screen's matrix run: `m` asks (cells, hosts, rehearsal or not), then the cells fill live from the
flows' CellEvents; enter opens a cell's logs; `m` or escape cancels (asking first); `q` asks; the Markdown report's
path is shown at the end; 80x24 keeps the release column.

The pilot tests inject a stand-in matrix runner (no guest) that sends the same CellEvents as flows.matrix.run_matrix
one step at a time, as the test lets it. One test runs the real matrix (libvirt, TCG, the rehearsal tree) over one
small cell and checks that it ends passed and leaves no domain or volume."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, Static

from ccis_workbench.core.wording import counted
from ccis_workbench.flows.matrix import (
    BOOT_TESTING,
    BUILDING,
    PASSED,
    QUEUED,
    SKIPPED,
    Cell,
    CellEvent,
    MatrixResult,
    markdown_report,
)
from ccis_workbench.ui.app import Runners, WorkbenchApp
from ccis_workbench.ui.capabilities import FixedCapabilities, HostStatus
from ccis_workbench.ui.modals import ConfirmationModal
from ccis_workbench.ui.screens.review import CellLogsModal, MatrixSettings, ReviewScreen
from tests.test_ui_support import make_catalog, settle, sync

PROFILE = """\
name: {name}
description: a profile with ui-alpha for the matrix run
release: centos-stream-9
target: {target}
overlays: [ui-alpha]
variables:
  disk_size: 2
"""


def catalog_with_alpha_profiles(tmp_path: Path) -> Path:
    """The UI test catalog plus two profiles that use ui-alpha: one per target of centos-stream-9."""
    root = make_catalog(tmp_path)
    for name, target in (("alpha-openstack", "openstack"), ("alpha-box", "ui-box")):
        (root / "profiles" / f"{name}.yaml").write_text(PROFILE.format(name=name, target=target))
    return root


class SteppedRunner:
    """A stand-in for flows.matrix.run_matrix: the same CellEvents, each step only when the test releases one."""

    def __init__(self) -> None:
        self.steps = threading.Semaphore(0)
        self.calls: list[dict[str, Any]] = []
        self.finished = threading.Event()

    def _step(self, monitor: Any) -> bool:
        """Wait for the test's next step; False once the run is cancelled."""
        while not monitor.cancelled():
            if self.steps.acquire(timeout=0.05):
                return True
        return False

    def __call__(self, catalog: Any, composer: Any, cells: list[Cell], req: Any, monitor: Any, *,
                 on_event: Any) -> MatrixResult:
        self.calls.append({"cells": [c.profile for c in cells], "hosts": [c.host for c in cells], "req": req})
        req.output.mkdir(parents=True, exist_ok=True)
        for c in cells:
            on_event(CellEvent(c, QUEUED))
        for c in cells:
            folder = req.output / c.profile
            for stage, state, seconds in (("build", BUILDING, 0.0), ("boot-test", BOOT_TESTING, 12.0)):
                if not self._step(monitor):
                    break
                c.stage = stage
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{stage}.log").write_text(f"{c.profile}: {stage} console line\n")
                on_event(CellEvent(c, state, seconds))
            if monitor.cancelled():
                c.status, c.stage, c.reason = SKIPPED, "cancelled", "cancelled"
                import shutil

                shutil.rmtree(folder, ignore_errors=True)
                on_event(CellEvent(c, SKIPPED))
                continue
            if not self._step(monitor):
                c.status, c.stage, c.reason = SKIPPED, "cancelled", "cancelled"
                on_event(CellEvent(c, SKIPPED))
                continue
            c.status, c.stage = PASSED, "boot-test"
            on_event(CellEvent(c, PASSED, 31.0))
        counts = {s: sum(1 for c in cells if c.status == s) for s in ("passed", "cached", "failed", "skipped")}
        md = req.output / "matrix.md"
        md.write_text(markdown_report(cells, req.output))
        self.finished.set()
        return MatrixResult(cells, 42.0, md, req.output / "summary.json", counts)


def make_matrix_app(root: Path, runner: Any, output: Path) -> WorkbenchApp:
    app = WorkbenchApp(root, capabilities=FixedCapabilities(HostStatus("qemu:///system", True, "libvirt 9", "tcg")),
                       profile="openstack-stream9", runners=Runners(matrix=runner))
    app.matrix_settings = MatrixSettings(output=str(output), jobs=2)
    return app


async def wait_for(pilot: Any, condition: Any, what: str, seconds: float = 30.0) -> None:
    """Let the app run until *condition()* holds (a loaded machine may take a while; no timing is asserted)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await pilot.pause(0.05)


def cell_text(review: ReviewScreen, target: str) -> str:
    return str(review.query_one("#matrix", DataTable).get_cell("centos-stream-9", target))


async def open_review(app: WorkbenchApp, pilot: Any) -> ReviewScreen:
    await settle(pilot)
    app.open_review("ui-alpha")
    await settle(pilot)
    review = app.screen
    assert isinstance(review, ReviewScreen)
    await wait_for(pilot, lambda: review.done, "the review matrix computed")
    return review


async def start_run(pilot: Any, review: ReviewScreen) -> ConfirmationModal:
    await pilot.press("m")
    await pilot.pause()
    modal = review.app.screen
    assert isinstance(modal, ConfirmationModal), "m asks before it builds anything"
    return modal


@sync
async def test_m_asks_then_cells_fill_live_and_the_report_is_shown(tmp_path: Path) -> None:
    runner = SteppedRunner()
    app = make_matrix_app(catalog_with_alpha_profiles(tmp_path), runner, tmp_path / "mx")
    async with app.run_test(size=(120, 36)) as pilot:
        review = await open_review(app, pilot)
        modal = await start_run(pilot, review)
        q = modal.question
        assert counted(2, "cell") in q and "alpha-box" in q and "alpha-openstack" in q
        assert "qemu:///system" in q and "2 jobs per host" in q and "REHEARSAL" in q and "builds 2 images" in q
        await pilot.press("y")
        await wait_for(pilot, lambda: len(review.run_state) == 2, "both cells queued")
        assert review.running and runner.calls[0]["hosts"] == ["qemu:///system", "qemu:///system"]
        assert runner.calls[0]["req"].output == tmp_path / "mx" and runner.calls[0]["req"].jobs == 2
        assert "queued" in cell_text(review, "ui-box") and "queued" in cell_text(review, "openstack")
        # alpha-box (sorted first) builds, then boot-tests, then passes, while alpha-openstack waits
        runner.steps.release()
        await wait_for(pilot, lambda: "build" in cell_text(review, "ui-box"), "alpha-box building")
        assert "queued" in cell_text(review, "openstack")
        assert "0/2 done, 1 running" in str(review.query_one("#matrix-status", Static).render())
        runner.steps.release()
        await wait_for(pilot, lambda: "test" in cell_text(review, "ui-box"), "alpha-box boot-testing")
        assert "00:1" in cell_text(review, "ui-box"), "the elapsed time shows (12 s and counting)"
        runner.steps.release()
        await wait_for(pilot, lambda: "passed" in cell_text(review, "ui-box"), "alpha-box passed")
        assert "00:31" in cell_text(review, "ui-box")
        for _ in range(3):
            runner.steps.release()
        await wait_for(pilot, lambda: not review.running, "the run ended")
        assert "passed" in cell_text(review, "openstack")
        status = str(review.query_one("#matrix-status", Static).render())
        assert "2 passed" in status and str(tmp_path / "mx" / "matrix.md") in status
        assert (tmp_path / "mx" / "matrix.md").is_file()
        # enter on a cell opens its folder's logs
        table = review.query_one("#matrix", DataTable)
        table.move_cursor(row=0, column=table.get_column_index("ui-box"))
        await pilot.pause()
        assert "alpha-box on qemu:///system: passed" in str(review.query_one("#cell-detail", Static).render())
        await pilot.press("enter")
        await pilot.pause()
        logs = app.screen
        assert isinstance(logs, CellLogsModal)
        assert [p.name for p in logs.files] == ["boot-test.log", "build.log"]
        await wait_for(pilot, lambda: "alpha-box: boot-test console line" in "\n".join(
            logs.query_one("#cell-logs-text").lines), "the log shown")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is review


@sync
async def test_m_again_cancels_after_asking_and_nothing_is_left(tmp_path: Path) -> None:
    runner = SteppedRunner()
    app = make_matrix_app(catalog_with_alpha_profiles(tmp_path), runner, tmp_path / "mx")
    async with app.run_test(size=(120, 36)) as pilot:
        review = await open_review(app, pilot)
        await start_run(pilot, review)
        await pilot.press("y")
        runner.steps.release()
        await wait_for(pilot, lambda: "build" in cell_text(review, "ui-box"), "alpha-box building")
        assert (tmp_path / "mx" / "alpha-box").is_dir()
        # escape does not leave a running review: it asks to cancel; "keep running" keeps it going
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmationModal) and "Cancel the matrix run?" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is review and review.running and not review.monitor.cancelled()
        # m (now "Cancel run" in the footer) asks the same; yes stops every cell
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmationModal)
        await pilot.press("y")
        await wait_for(pilot, lambda: not review.running, "the run stopped")
        assert runner.finished.is_set()
        assert "cancelled" in cell_text(review, "ui-box") and "cancelled" in cell_text(review, "openstack")
        assert not (tmp_path / "mx" / "alpha-box").exists(), "a cancelled cell leaves no folder"
        assert review.run_result is not None and review.run_result.cancelled
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ReviewScreen), "once stopped, escape leaves the review"


@sync
async def test_q_during_a_run_asks_and_quitting_cancels_it(tmp_path: Path) -> None:
    runner = SteppedRunner()
    app = make_matrix_app(catalog_with_alpha_profiles(tmp_path), runner, tmp_path / "mx")
    async with app.run_test(size=(120, 36)) as pilot:
        review = await open_review(app, pilot)
        await start_run(pilot, review)
        await pilot.press("y")
        runner.steps.release()
        await wait_for(pilot, lambda: "build" in cell_text(review, "ui-box"), "alpha-box building")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmationModal) and "cancel the running matrix run" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.is_running and review.running
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
    assert runner.finished.wait(10), "the run saw the cancel and ended"
    assert not (tmp_path / "mx" / "alpha-box").exists()


@sync
async def test_80x24_keeps_the_release_column_and_the_run_keys(tmp_path: Path) -> None:
    from textual.widgets._footer import FooterKey

    runner = SteppedRunner()
    app = make_matrix_app(catalog_with_alpha_profiles(tmp_path), runner, tmp_path / "mx")
    async with app.run_test(size=(80, 24)) as pilot:
        review = await open_review(app, pilot)

        def footer() -> list[str]:
            return [k.description for k in app.screen.query(FooterKey) if k.region.area]

        def inside() -> None:
            for widget in list(review.children) + list(review.query(FooterKey)):
                if widget.display and widget.region.area:
                    r = widget.region
                    assert r.right <= 80 and r.bottom <= 24, f"{widget!r} at {r} is outside 80x24"

        assert "Run matrix" in footer()
        await start_run(pilot, review)
        await pilot.press("y")
        runner.steps.release()
        await wait_for(pilot, lambda: "build" in cell_text(review, "ui-box"), "alpha-box building")
        inside()
        assert "Cancel run" in footer() and "Run matrix" not in footer()
        table = review.query_one("#matrix", DataTable)
        table.move_cursor(row=0, column=table.get_column_index("ui-box"))
        await pilot.pause()
        # the release column stays at the left edge while the targets scroll
        assert table.fixed_columns == 1 and "centos-stream-9" in str(table.get_cell_at((0, 0)))
        status = review.query_one("#matrix-status", Static)
        assert status.region.area and status.region.bottom <= 23
        review.monitor.cancel_event.set()
        await wait_for(pilot, lambda: not review.running, "the run stopped")
        inside()


@sync
async def test_an_overlay_no_profile_uses_says_so_and_runs_nothing(tmp_path: Path) -> None:
    runner = SteppedRunner()
    app = make_matrix_app(make_catalog(tmp_path), runner, tmp_path / "mx")
    async with app.run_test(size=(120, 36)) as pilot:
        review = await open_review(app, pilot)
        await pilot.press("m")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmationModal) and not review.running and not runner.calls
        assert any("no profile matches" in n.message for n in app._notifications)


@sync
async def test_a_changed_target_runs_the_profiles_in_the_cells_it_affects(tmp_path: Path) -> None:
    import subprocess

    root = catalog_with_alpha_profiles(tmp_path)
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@example.com", "commit",
                                                 "-qm", "catalog"]):
        subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)
    frag = root / "kickstarts/targets/openstack.ks.j2"
    frag.write_text(frag.read_text().replace("%end", "echo reviewed-change\n%end", 1))
    runner = SteppedRunner()
    app = make_matrix_app(root, runner, tmp_path / "mx")
    async with app.run_test(size=(120, 36)) as pilot:
        await settle(pilot)
        app.open_review("changed:kickstarts/targets/openstack.ks.j2")
        await settle(pilot)
        review = app.screen
        assert isinstance(review, ReviewScreen)
        await wait_for(pilot, lambda: review.done, "the review of the change computed")
        modal = await start_run(pilot, review)
        # the openstack cell is affected: its profiles (whatever their overlays); ui-box's is not
        assert counted(2, "cell") in modal.question
        assert "alpha-openstack" in modal.question and "openstack-stream9" in modal.question
        assert "alpha-box" not in modal.question
        await pilot.press("n")
        await pilot.pause()
        assert not review.running and not runner.calls


# -- the flows' events ------------------------------------------------------------------------------------------------


def test_run_matrix_sends_each_cells_states_in_order(tmp_path: Path) -> None:
    """flows.matrix.run_matrix's CellEvents (what the review screen draws): queued, building, boot-testing, then the
    ending; a cell unchanged since a passing run is cached; once cancelled, waiting cells are skipped. The cell
    runner is injected (it only reports stages), the tree is a local directory: nothing boots."""
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.core.monitor import RecordingMonitor
    from ccis_workbench.flows.build import BuildRequest
    from ccis_workbench.flows.matrix import CACHED, FAILED, MatrixRequest, assign_hosts, run_matrix, select_cells
    from ccis_workbench.flows.test import BootRequest
    from tests.test_plan import make_tree

    cat = Catalog.load(catalog_with_alpha_profiles(tmp_path))
    tree = make_tree(tmp_path / "tree")
    req = MatrixRequest(build=BuildRequest(tree=str(tree)), boot=BootRequest(), output=tmp_path / "mx", jobs=1)
    kept_logs = tmp_path / "mx" / "alpha-openstack" / "logs"

    def cell_runner(cell: Cell, catalog: Any, composer: Any, request: Any, monitor: Any, *, on_stage: Any) -> None:
        on_stage("build")
        if cell.profile == "alpha-openstack":
            failed = WorkbenchError("Build failed", "the stand-in cell fails here")
            failed.logs = str(kept_logs)  # a failed build says where it kept its logs
            raise failed
        on_stage("boot-test")
        junit = request.output / cell.profile / "junit.xml"
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text("<testsuites/>\n")
        cell.status, cell.junit = PASSED, str(junit)

    def run(monitor: Any) -> dict[str, list[str]]:
        heard: dict[str, list[str]] = {}
        lock = threading.Lock()

        def on_event(event: CellEvent) -> None:
            with lock:
                heard.setdefault(event.cell.profile, []).append(event.state)

        cells = select_cells(cat, overlays=["ui-alpha"])
        assign_hosts(cells, ["qemu:///system"])
        run_matrix(cat, Composer(cat), cells, req, monitor, runner=cell_runner, reachable=lambda uri: True,
                   on_event=on_event)
        return heard

    assert run(RecordingMonitor()) == {"alpha-box": [QUEUED, BUILDING, BOOT_TESTING, PASSED],
                                       "alpha-openstack": [QUEUED, BUILDING, FAILED]}
    # the failed cell points at the logs its build kept, in summary.json and in matrix.md
    summary = {c["profile"]: c for c in json.loads((req.output / "summary.json").read_text())["cells"]}
    assert summary["alpha-openstack"]["logs"] == str(kept_logs) and summary["alpha-box"]["logs"] is None
    assert "logs: " in (req.output / "matrix.md").read_text()
    assert run(RecordingMonitor()) == {"alpha-box": [CACHED], "alpha-openstack": [QUEUED, BUILDING, FAILED]}
    cancelled = RecordingMonitor()
    cancelled.cancel_event.set()
    assert run(cancelled) == {"alpha-box": [CACHED], "alpha-openstack": [QUEUED, SKIPPED]}


# -- the real runner ------------------------------------------------------------------------------------------------


@pytest.mark.libvirt
@pytest.mark.slow
def test_real_matrix_run_from_the_review_screen_passes_and_leaves_nothing(no_leftovers: str, tree_server: str,
                                                                          tmp_path: Path) -> None:
    import asyncio
    import os

    root = make_catalog(tmp_path)
    (root / "profiles" / "alpha-openstack.yaml").write_text(PROFILE.format(name="alpha-openstack",
                                                                          target="openstack"))
    env_before = dict(os.environ)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    os.environ["XDG_STATE_HOME"] = str(tmp_path / "state")
    try:
        app = WorkbenchApp(root, capabilities=FixedCapabilities(HostStatus(no_leftovers, True, "libvirt", "tcg")),
                           profile="openstack-stream9")
        app.matrix_settings = MatrixSettings(tree=tree_server, hosts=no_leftovers, accel="tcg",
                                             output=str(tmp_path / "mx"), memory_mb=512, test_memory_mb=512,
                                             disk_size="96M", grow_mib=64, rehearsal_checks=True)

        async def run() -> ReviewScreen:
            async with app.run_test(size=(120, 36)) as pilot:
                review = await open_review(app, pilot)
                modal = await start_run(pilot, review)
                assert "alpha-openstack" in modal.question and no_leftovers in modal.question
                await pilot.press("y")
                seen: list[str] = []  # the grid cell's words as they changed (heard live)
                deadline = time.monotonic() + 900
                while review.running and time.monotonic() < deadline:
                    text = cell_text(review, "openstack").split(" ")[1] if review.run_state else ""
                    if text and (not seen or seen[-1] != text):
                        seen.append(text)
                    await pilot.pause(0.1)
                assert not review.running, f"the run did not end in 15 minutes: {seen}"
                assert review.run_result is not None, review.run_error
                (cell,) = review.run_result.cells
                assert cell.status == PASSED, cell.reason
                # heard live: the cell built, then boot-tested ("queued" lasts too short a time to be sampled)
                assert "build" in seen and "test" in seen[seen.index("build"):], seen
                assert "passed" in cell_text(review, "openstack")
                assert "1 passed" in str(review.query_one("#matrix-status", Static).render())
                return review

        try:
            review = asyncio.run(run())
        finally:
            app.cancel_running_work()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    from tests.fixtures_libvirt import left_behind

    assert left_behind(no_leftovers, "ccis-alpha-openstack") == [], "the cell's domain and volumes are gone"
    assert review.run_result is not None and review.run_result.markdown.is_file()
    assert "alpha-openstack" in review.run_result.markdown.read_text()
    assert review.run_state["alpha-openstack"][0] == PASSED
