"""A signal the kernel hands to a worker thread still cancels at once: Python runs the handler in the main thread,
which must not sit in an endless `Future.result()` or `Thread.join()` meanwhile (flows/signals.py).

Found by CI: `matrix --jobs 2` got SIGINT while two cells built, and both cells ended "passed" minutes later,
because the main thread waited in `f.result()` for the first cell and the handler ran only when that cell was done.
Here the signal is sent to the worker thread itself (`pthread_kill`), which makes that delivery certain. Nothing
boots: the cell runner is injected, the tree is a local directory."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from ccis_workbench.core.monitor import RecordingMonitor
from ccis_workbench.flows.signals import CELLS_STOPPING, cancel_on_signals, join

PATIENCE = 20.0  # seconds a worker waits for the cancel before it gives up and ends as if nothing happened


def _main_thread_waits_in(caller: str) -> bool:
    """Whether the main thread is in threading's wait for a lock (Condition.wait, Thread.join's), called from
    *caller* (so not, say, in Thread.start's wait for the worker to begin)."""
    import sys

    frame = sys._current_frames().get(threading.main_thread().ident)
    if frame is None or frame.f_code.co_name not in ("wait", "_wait_for_tstate_lock"):
        return False
    while frame is not None and frame.f_code.co_name != caller:
        frame = frame.f_back
    return frame is not None


def _signal_me_then_wait(monitor: RecordingMonitor, waiting_in: str) -> bool:
    """Once the main thread waits in *waiting_in* (for this thread, or for the future this thread fulfils), send
    SIGINT to this worker thread, then wait for the cancel; whether it came."""
    deadline = time.monotonic() + PATIENCE
    while not _main_thread_waits_in(waiting_in) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # from "in wait" to blocked in the lock below it
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    deadline = time.monotonic() + PATIENCE
    while not monitor.cancelled() and time.monotonic() < deadline:
        time.sleep(0.02)
    return monitor.cancelled()


def test_a_worker_threads_signal_cancels_a_running_matrix(tmp_path: Path) -> None:
    from ccis_workbench.core.catalog import Catalog
    from ccis_workbench.core.compose import Composer
    from ccis_workbench.flows.build import BuildRequest
    from ccis_workbench.flows.matrix import PASSED, SKIPPED, Cell, MatrixRequest, assign_hosts, run_matrix, select_cells
    from ccis_workbench.flows.test import BootRequest
    from tests.test_plan import make_tree
    from tests.test_ui_matrix_run import catalog_with_alpha_profiles

    cat = Catalog.load(catalog_with_alpha_profiles(tmp_path))
    req = MatrixRequest(
        build=BuildRequest(tree=str(make_tree(tmp_path / "tree"))), boot=BootRequest(), output=tmp_path / "mx", jobs=1
    )
    monitor = RecordingMonitor()
    heard: list[bool] = []

    def cell_runner(cell: Cell, catalog: Any, composer: Any, request: Any, mon: Any, *, on_stage: Any) -> None:
        on_stage("build")
        heard.append(_signal_me_then_wait(monitor, "run_matrix"))
        if heard[-1]:
            return  # as the real build does once cancelled: its guest gone, no image
        junit = request.output / cell.profile / "junit.xml"
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.write_text("<testsuites/>\n")
        cell.status, cell.junit = PASSED, str(junit)  # what a cell that never heard of the signal ends as

    said: list[str] = []
    cells = select_cells(cat, overlays=["ui-alpha"])
    assert len(cells) == 2
    assign_hosts(cells, ["qemu:///system"])
    with cancel_on_signals(monitor.cancel_event, said.append, stopping=CELLS_STOPPING) as stopped:
        result = run_matrix(cat, Composer(cat), cells, req, monitor, runner=cell_runner, reachable=lambda uri: True)
    assert stopped.signum == signal.SIGINT and said == [f"\nSIGINT: cancelling: {CELLS_STOPPING}"], said
    assert heard == [True], "the running cell never saw the cancel while it ran"
    assert result.counts[PASSED] == 0 and result.counts[SKIPPED] == 2, result.counts
    assert all(c.stage == "cancelled" for c in result.cells)
    assert not [c.profile for c in result.cells if (req.output / c.profile).exists()], "cancelled, yet kept"


def test_join_lets_a_worker_threads_signal_through() -> None:
    monitor = RecordingMonitor()
    heard: list[bool] = []
    worker = threading.Thread(target=lambda: heard.append(_signal_me_then_wait(monitor, "join")), name="worker")
    with cancel_on_signals(monitor.cancel_event, lambda _: None) as stopped:
        worker.start()
        join(worker)
    assert stopped.signum == signal.SIGINT
    assert heard == [True]
