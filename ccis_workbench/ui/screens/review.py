"""Review mode: one overlay against every release x target — applicable or why not, lint status, diff size.

`m` runs the matrix (flows/matrix.py, the same run as `ccis-workbench matrix`) over the catalog's profiles in the
cells shown: those that use the overlay, or for a changed file those in the cells it affects. The run goes in a
thread worker; its CellEvents come back as messages and fill the cells live (queued, building, boot-testing, then
passed, failed, cached or skipped, with elapsed time). `m` or escape again cancels it (asking first): every
running cell removes its guest and volumes, waiting cells do not start, a stopped cell's folder goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Header, Label, Log, OptionList, Select, Static

from ccis_workbench.core.errors import WorkbenchError
from ccis_workbench.core.monitor import Monitor
from ccis_workbench.core.wording import counted
from ccis_workbench.flows.matrix import (
    BOOT_TESTING,
    BUILDING,
    CACHED,
    FAILED,
    PASSED,
    QUEUED,
    SKIPPED,
    Cell,
    CellEvent,
    MatrixRequest,
    MatrixResult,
    assign_hosts,
    run_matrix,
    select_cells,
)
from ccis_workbench.flows.trust import FROM_BRANCH, changed_catalog_files
from ccis_workbench.ui.messages import ReviewCellReady, ReviewDone
from ccis_workbench.ui.modals import ConfirmationModal
from ccis_workbench.ui.paths import catalog_label, in_catalog
from ccis_workbench.ui.widgets.panels import WorkbenchFooter

if TYPE_CHECKING:
    from ccis_workbench.ui.app import WorkbenchApp
    from ccis_workbench.ui.engine import ReviewCell, Workbench


#: Prefix of a review subject that is a changed catalog file rather than an overlay.
CHANGED = "changed:"

#: How a matrix cell's state shows in the grid: (mark, word, style).
RUN_MARKS = {QUEUED: ("…", "queued", "dim"), BUILDING: ("⚙", "build", "bold cyan"),
             BOOT_TESTING: ("⚙", "test", "bold magenta"), PASSED: ("✓", "passed", "bold green"),
             FAILED: ("✗", "failed", "bold red"), CACHED: ("✓", "cached", "green"), SKIPPED: ("–", "skipped", "dim")}


@dataclass
class MatrixSettings:
    """What a matrix run from the review screen uses; None: the workbench's setting, as `ccis-workbench matrix`
    would take it (hosts: the hosts setting, else the libvirt URI the app uses)."""

    tree: str = "rehearsal"  # "rehearsal" (offline, not CentOS), a tree URL, a directory or an ISO
    accel: str | None = None
    hosts: str | None = None  # libvirt URIs, comma-separated
    jobs: int = 1  # cells at a time on each host
    output: str = "matrix"  # relative: under the catalog
    memory_mb: int | None = None
    test_memory_mb: int | None = None
    disk_size: str | None = None
    grow_mib: int | None = None
    rehearsal_checks: bool | None = None  # None: the manifest's rehearsal field decides
    rehearsal_cache: str | None = None  # where the rehearsal tree is built (None: the user's cache)

    def hosts_for(self, defaults: Any, uri: str) -> list[str]:
        return [h.strip() for h in (self.hosts or defaults.hosts or uri).split(",") if h.strip()]

    def request(self, defaults: Any, hosts: list[str], catalog_root: Path) -> MatrixRequest:
        """The flows' MatrixRequest (the CLI builds the same from its options)."""
        from ccis_workbench.flows.build import REHEARSAL, BuildRequest
        from ccis_workbench.flows.test import BootRequest

        tree = REHEARSAL if self.tree.strip() in ("", REHEARSAL) else self.tree.strip()
        build = BuildRequest.from_settings(defaults, tree=tree, uri=hosts[0], accel=self.accel,
                                           memory_mb=self.memory_mb, disk_size=self.disk_size,
                                           rehearsal_cache=self.rehearsal_cache, catalog_root=str(catalog_root))
        boot = BootRequest.from_settings(defaults, uri=hosts[0], grow_mib=self.grow_mib,
                                         memory_mb=self.test_memory_mb)
        return MatrixRequest(build=build, boot=boot, output=Path(in_catalog(catalog_root, self.output or "matrix")),
                             jobs=max(1, self.jobs), rehearsal_checks=self.rehearsal_checks)


#: Runs the matrix: flows.matrix.run_matrix(catalog, composer, cells, request, monitor, on_event=...) ->
#: MatrixResult. A presenter's or a test's stand-in is injected through WorkbenchApp(runners=Runners(matrix=...)).
MatrixRunner = Callable[..., MatrixResult]


class MatrixCellChanged(Message):
    """A matrix cell changed state (posted from the run's threads)."""

    def __init__(self, event: CellEvent) -> None:
        super().__init__()
        self.event = event


class MatrixEnded(Message):
    """The matrix run returned (*result*) or could not run (*error*)."""

    def __init__(self, result: MatrixResult | None, error: str = "") -> None:
        super().__init__()
        self.result = result
        self.error = error


class _RunMonitor(Monitor):
    """The run's monitor: quiet (each cell's logs are in its folder), cancelled by the screen."""

    def __init__(self) -> None:
        self.cancel_event = threading.Event()

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


def matrix_cells(catalog: Any, subject: str, shown: dict[tuple[str, str], Any]) -> list[Cell]:
    """The matrix cells for what the review shows: the profiles that use the overlay (`matrix --overlay NAME`),
    or, for a changed file, the profiles in the cells the change affects or breaks (those using the changed
    overlay, when the file is an overlay's). Raises WorkbenchError when no profile is there."""
    if not subject.startswith(CHANGED):
        return select_cells(catalog, overlays=[subject])
    path = subject[len(CHANGED):]
    overlay = Path(path).name.split(".")[0] if path.startswith("kickstarts/overlays/") else ""
    cells = select_cells(catalog, overlays=[overlay] if overlay in catalog.overlays else None)
    kept = [c for c in cells if (r := shown.get((c.release, c.target))) is not None
            and (r.broken or (r.applicable and r.affected))]
    if not kept:
        raise WorkbenchError("No cells", f"no profile of the catalog is in a cell the change to {path} affects")
    return kept


def _tail(path: Path, limit: int = 65536) -> str:
    """The end of a log file as text (at most *limit* bytes)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
    return "".join(ch for ch in text if ch in "\n\t" or ch.isprintable())


class CellLogsModal(ModalScreen[None]):
    """A matrix cell's folder (each profile's, in the run's output): its files, the chosen one's end shown."""

    DEFAULT_CSS = """
    CellLogsModal { align: center middle; }
    #cell-logs { width: 90%; height: 90%; padding: 0 1; border: thick $primary; background: $surface; }
    #cell-logs-head { height: auto; max-height: 6; }
    #cell-logs-files { height: auto; max-height: 6; }
    #cell-logs-text { height: 1fr; }
    """

    BINDINGS = [Binding("escape", "dismiss_logs", "Close")]

    def __init__(self, cells: list[Cell], states: dict[str, str], output: Path) -> None:
        super().__init__()
        self.cells = cells
        self.states = states
        self.output = output
        self.files: list[Path] = []
        for c in cells:
            folder = output / c.profile
            if folder.is_dir():
                self.files += sorted(p for p in folder.rglob("*") if p.is_file())[:200]

    def compose(self) -> ComposeResult:
        with Vertical(id="cell-logs", classes="dialog"):
            head = Text()
            for c in self.cells:
                head.append(f"{c.profile}", style="bold")
                head.append(f" on {c.host}: {self.states.get(c.profile, c.stage)}")
                head.append(f"  {self.output / c.profile}\n", style="dim")
                if c.reason:
                    head.append(f"  {c.reason}\n", style="red")
            if not self.files:
                head.append("no logs yet: the cell has not written its folder (or a cancel removed it)", style="italic")
            yield Static(head, id="cell-logs-head")
            yield OptionList(*[str(p.relative_to(self.output)) for p in self.files], id="cell-logs-files")
            yield Log(id="cell-logs-text", max_lines=2000)

    def on_mount(self) -> None:
        files = self.query_one("#cell-logs-files", OptionList)
        if self.files:
            # the most telling file first: a log (console, installer) when there is one
            logs = [i for i, p in enumerate(self.files) if p.suffix == ".log"]
            files.highlighted = logs[0] if logs else 0
            files.focus()

    @on(OptionList.OptionHighlighted, "#cell-logs-files")
    def _show(self, event: OptionList.OptionHighlighted) -> None:
        log = self.query_one("#cell-logs-text", Log)
        log.clear()
        log.write(_tail(self.files[event.option_index]))

    def action_dismiss_logs(self) -> None:
        self.dismiss(None)


class ReviewScreen(Screen[None]):
    """A matrix: rows are releases, columns targets; enter opens the cell in the compose view."""

    DEFAULT_CSS = """
    #matrix-status { height: auto; max-height: 2; padding: 0 1; }
    """

    BINDINGS = [
        Binding("escape,c", "close", "Compose", tooltip="Back to the compose view (asks first while a run goes)"),
        Binding("enter", "open_cell", "Open cell", tooltip="Open this release + target in the compose view (after a "
                "matrix run: the cell's logs)"),
        Binding("o", "choose_overlay", "Overlay", tooltip="Choose the overlay to review"),
        Binding("m", "matrix", "Run matrix", tooltip="Build and boot-test the profiles in these cells (asks first)"),
        Binding("m", "cancel_matrix", "Cancel run", tooltip="Stop every cell: guests and volumes removed (asks "
                "first)"),
    ]

    def __init__(self, workbench: Workbench, overlay: str | None = None, *, settings: MatrixSettings | None = None,
                 runner: MatrixRunner | None = None, defaults: Any = None) -> None:
        super().__init__()
        #: the matrix run's settings (None: MatrixSettings(): rehearsal tree, the workbench's settings)
        self.matrix_settings = settings or MatrixSettings()
        #: runs the matrix: flows.matrix.run_matrix; tests and presenters inject a stand-in
        self.matrix_runner: MatrixRunner = runner or run_matrix
        #: the workbench's settings (None: flows.settings.Settings.load() when a run starts)
        self.defaults = defaults
        #: the last matrix run: its cells, each profile's state and (seconds, when heard), its output, its result
        self.run_cells: list[Cell] = []
        self.run_state: dict[str, tuple[str, float, float]] = {}
        self.run_output: Path | None = None
        self.run_result: MatrixResult | None = None
        self.run_error = ""
        self.run_started = 0.0
        self.monitor: _RunMonitor | None = None
        self.running = False
        self._run_done = threading.Event()
        self.workbench = workbench
        #: What is reviewed: an overlay name, or CHANGED + a catalog file that differs from git HEAD.
        self.overlay = overlay or next(iter(sorted(workbench.catalog.overlays)), "")
        self.changed = workbench.changed_fragments()
        #: catalog files that differ from the base branch: what a reviewer is looking at is the contributor's
        self.from_branch = {p.as_posix() for p in changed_catalog_files(workbench.root)}
        self.cells: dict[tuple[str, str], ReviewCell] = {}
        self.done = False

    @property
    def wb_app(self) -> WorkbenchApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="review-bar"):
            yield Label("Overlay ", id="overlay-label")
            options = [(n + (f"  ({FROM_BRANCH})" if self._overlay_from_branch(n) else ""), n)
                       for n in sorted(self.workbench.catalog.overlays)]
            options += [(f"changed: {p}" + (f"  ({FROM_BRANCH})" if p in self.from_branch else ""), CHANGED + p)
                        for p in self.changed]
            yield Select[str](options, id="review-overlay",
                              value=self.overlay if self.overlay else Select.NULL, allow_blank=False
                              if self.workbench.catalog.overlays else True)
            yield Static("", id="review-progress")
        # the release column stays while the targets scroll sideways (at 80x24 five of eleven fit)
        yield DataTable(id="matrix", cursor_type="cell", fixed_columns=1)
        yield Static("", id="cell-detail")
        yield Static(Text("✓ applies (colour: lint; ± lines changed)  ✗ does not apply  enter: open in compose",
                          style="dim"), id="review-legend")
        yield Static("", id="matrix-status")
        yield WorkbenchFooter()

    def _overlay_from_branch(self, name: str) -> bool:
        return any(p.startswith(f"kickstarts/overlays/{name}.") for p in self.from_branch)

    def on_mount(self) -> None:
        self.title = f"CCIS Workbench · {catalog_label(self.workbench.root)}"
        self.sub_title = "review"
        self.start()
        self.query_one("#matrix", DataTable).focus()
        self.set_interval(1.0, self._tick_run)

    def on_unmount(self) -> None:
        # leaving (or quitting) with a matrix run going: cancel it so its threads end and clean up
        if self.monitor is not None:
            self.monitor.cancel_event.set()

    def start(self) -> None:
        """(Re)build the empty matrix and compute it in a worker."""
        self.run_cells, self.run_state, self.run_result, self.run_error = [], {}, None, ""
        self.query_one("#matrix-status", Static).update("")
        table = self.query_one("#matrix", DataTable)
        table.clear(columns=True)
        self.cells = {}
        self.done = False
        cat = self.workbench.catalog
        table.add_column("release", key="release")
        for t in sorted(cat.targets):
            table.add_column(t, key=t)
        for r in cat.releases:
            table.add_row(r, *["…" for _ in cat.targets], key=r)
        self.sub_title = (f"review: change to {self.overlay[len(CHANGED):]} (against git HEAD)"
                          if self.overlay.startswith(CHANGED) else f"review: overlay {self.overlay}")
        total = len(cat.releases) * len(cat.targets)
        self.query_one("#review-progress", Static).update(f"  computing 0/{total}")
        if cat.targets:
            table.move_cursor(row=0, column=1)
        if self.overlay:
            self.compute(self.overlay)

    @work(thread=True, exclusive=True, exit_on_error=False, group="review", description="review matrix")
    def compute(self, overlay: str) -> None:
        n = 0
        cells = self.workbench.review_change(overlay[len(CHANGED):]) if overlay.startswith(CHANGED) \
            else self.workbench.review(overlay)
        for cell in cells:
            n += 1
            self.post_message(ReviewCellReady(overlay, cell))
        self.post_message(ReviewDone(overlay, n))

    @on(ReviewCellReady)
    def _cell(self, message: ReviewCellReady) -> None:
        if message.overlay != self.overlay:
            return
        c = message.cell
        self.cells[(c.release, c.target)] = c
        if self._grid_cells(c.release, c.target):
            return  # the matrix run's state shows there
        if c.applicable and not c.affected:
            text = Text("= unchanged", style="dim")
        elif c.applicable:
            style = "red" if c.errors else ("yellow" if c.warnings else "green")
            # narrow: the lint status shows as the colour of the mark alone, so more targets fit
            status = "" if self.size.width < 100 and not (c.errors or c.warnings) else f"{c.lint_status()} "
            text = Text.assemble(("✓ ", style), (status, style), (f"±{c.diff_lines} ", "dim"))
        elif c.broken:
            text = Text("✗ breaks", style="bold red")
        else:
            text = Text("✗ n/a", style="dim")
        self.query_one("#matrix", DataTable).update_cell(c.release, c.target, text, update_width=True)
        total = len(self.workbench.catalog.releases) * len(self.workbench.catalog.targets)
        self.query_one("#review-progress", Static).update(f"  computing {len(self.cells)}/{total}")
        self._detail()

    @on(ReviewDone)
    def _done(self, message: ReviewDone) -> None:
        if message.overlay != self.overlay:
            return
        self.done = True
        ok = sum(1 for c in self.cells.values() if c.applicable)
        self.query_one("#review-progress", Static).update(f"  {ok} of {message.cells} combinations apply")

    def _current(self) -> ReviewCell | None:
        table = self.query_one("#matrix", DataTable)
        if not table.row_count:
            return None
        row, col = table.cursor_coordinate
        keys = table.coordinate_to_cell_key((row, max(col, 1)))
        return self.cells.get((str(keys.row_key.value), str(keys.column_key.value)))

    def _current_key(self) -> tuple[str, str] | None:
        table = self.query_one("#matrix", DataTable)
        if not table.row_count:
            return None
        row, col = table.cursor_coordinate
        keys = table.coordinate_to_cell_key((row, max(col, 1)))
        return str(keys.row_key.value), str(keys.column_key.value)

    @on(DataTable.CellHighlighted)
    def _detail(self) -> None:
        detail = self.query_one("#cell-detail", Static)
        key = self._current_key()
        run = self._grid_cells(*key) if key else []
        if run:
            text = Text()
            for i, m in enumerate(run):
                text.append(("\n" if i else "") + f"{m.profile}", style="bold")
                text.append(f" on {m.host}: {self._state_words(m)}" + (f" — {m.reason}" if m.reason else ""))
            text.append("  enter: logs", style="dim")
            detail.update(text)
            return
        c = self._current()
        if c is None:
            detail.update("")
            return
        head = f"{c.release} + {c.target}" + (f" + {', '.join(c.overlays)}" if c.overlays else "") + ": "
        if self.overlay.startswith(CHANGED):
            if c.broken:
                detail.update(Text.assemble((head, "bold"), ("the change breaks it: ", "bold red"), (c.reason, "")))
            elif not c.applicable:
                detail.update(Text.assemble((head, "bold"), ("does not apply: ", "bold red"), (c.reason, "")))
            elif not c.affected:
                detail.update(Text.assemble((head, "bold"), ("the change leaves this kickstart as it was", "")))
            else:
                detail.update(Text.assemble((head, "bold"), (f"the change moves {counted(c.diff_lines, 'line')}; lint "
                                                             f"{c.lint_status()}", "")))
            return
        if c.applicable:
            detail.update(Text.assemble((head, "bold"), (f"applies; lint {c.lint_status()}; the overlay changes "
                                                         f"{counted(c.diff_lines, 'line')} of the kickstart", "")))
        else:
            detail.update(Text.assemble((head, "bold"), ("does not apply: ", "bold red"), (c.reason, "")))

    @on(DataTable.CellSelected)
    def _selected(self) -> None:
        self.action_open_cell()

    def action_open_cell(self) -> None:
        key = self._current_key()
        run = self._grid_cells(*key) if key else []
        if run and self.run_output is not None:
            states = {m.profile: self._state_words(m) for m in run}
            self.app.push_screen(CellLogsModal(run, states, self.run_output))
            return
        if self.running:
            self.notify("a matrix run is going: cancel it (m) before leaving the review", title="Matrix run",
                        severity="warning")
            return
        c = self._current()
        if c is None:
            return
        if not c.applicable:
            self.notify(c.reason, title="Does not apply", severity="warning")
            return
        self.wb_app.open_in_compose(c.release, c.target, c.overlays)

    @on(Select.Changed, "#review-overlay")
    def _overlay_changed(self, event: Select.Changed) -> None:
        if event.value is Select.NULL or event.value == self.overlay:
            return
        if self.running:
            self.notify("a matrix run is going: cancel it (m) before reviewing something else", title="Matrix run",
                        severity="warning")
            event.select.value = self.overlay
            return
        self.overlay = str(event.value)
        self.start()

    def action_choose_overlay(self) -> None:
        if self.running:
            self.notify("a matrix run is going: cancel it (m) before reviewing something else", title="Matrix run",
                        severity="warning")
            return
        select = self.query_one("#review-overlay", Select)
        select.focus()
        select.expanded = True

    def action_close(self) -> None:
        if self.running:
            self.action_cancel_matrix()
            return
        self.app.pop_screen()

    # -- the matrix run --------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The footer shows "Run matrix" when nothing runs, "Cancel run" while a run goes (both on m)."""
        if action == "matrix":
            return not self.running
        if action == "cancel_matrix":
            return self.running
        return True

    def _grid_cells(self, release: str, target: str) -> list[Cell]:
        return [c for c in self.run_cells if c.release == release and c.target == target]

    def _elapsed(self, cell: Cell) -> float:
        state, seconds, heard = self.run_state.get(cell.profile, (QUEUED, 0.0, 0.0))
        return seconds + (time.monotonic() - heard if state in (BUILDING, BOOT_TESTING) else 0.0)

    def _state_words(self, cell: Cell) -> str:
        from ccis_workbench.ui.screens.build import elapsed_text

        state = self.run_state.get(cell.profile, (QUEUED, 0.0, 0.0))[0]
        words = {BUILDING: "building", BOOT_TESTING: "boot-testing"}.get(state, state)
        if state == SKIPPED and cell.stage == "cancelled":
            words = "cancelled"
        return words + (f" {elapsed_text(self._elapsed(cell))}" if state not in (QUEUED, CACHED) else "")

    def _paint_run_cell(self, release: str, target: str) -> None:
        from ccis_workbench.ui.screens.build import elapsed_text

        run = self._grid_cells(release, target)
        if not run:
            return
        text = Text()
        for m in run:
            state = self.run_state.get(m.profile, (QUEUED, 0.0, 0.0))[0]
            mark, word, style = RUN_MARKS.get(state, ("?", state, ""))
            if m.stage == "cancelled":
                word = "cancelled"
            text.append(mark, style=style)
        if len(run) == 1:
            text.append(f" {word}", style=style)
        times = [self._elapsed(m) for m in run
                 if self.run_state.get(m.profile, (QUEUED,))[0] not in (QUEUED, CACHED)]
        if times:
            text.append(f" {elapsed_text(max(times))}", style="dim")
        self.query_one("#matrix", DataTable).update_cell(release, target, text, update_width=True)

    def _tick_run(self) -> None:
        """Once a second while a run goes: the running cells' elapsed time and the status line."""
        if not self.running:
            return
        for release, target in {(c.release, c.target) for c in self.run_cells
                                if self.run_state.get(c.profile, (QUEUED,))[0] in (BUILDING, BOOT_TESTING)}:
            self._paint_run_cell(release, target)
        self._run_status()

    def _run_status(self) -> None:
        from ccis_workbench.ui.screens.build import elapsed_text

        status = self.query_one("#matrix-status", Static)
        if self.running:
            states = [self.run_state.get(c.profile, (QUEUED,))[0] for c in self.run_cells]
            done = sum(1 for s in states if s in (PASSED, FAILED, CACHED, SKIPPED))
            going = sum(1 for s in states if s in (BUILDING, BOOT_TESTING))
            cancelling = self.monitor is not None and self.monitor.cancel_event.is_set()
            head = "matrix cancelling: stopping every cell" if cancelling else \
                f"matrix run: {done}/{len(self.run_cells)} done, {going} running"
            if not self.run_state:
                head += " (preparing the install tree)"
            status.update(Text.assemble((head, "bold"), f" · {elapsed_text(time.monotonic() - self.run_started)}",
                                        ("   m cancels", "dim")))
            return
        if self.run_error:
            status.update(Text.assemble(("matrix run failed: ", "bold red"), self.run_error))
            return
        r = self.run_result
        if r is None:
            return
        counts = ", ".join(f"{n} {k}" for k, n in r.counts.items() if n)
        style = "bold green" if r.ok else "bold red"
        status.update(Text.assemble((("✓ " if r.ok else "✗ ") + f"matrix: {counts}", style),
                                    f" in {elapsed_text(r.seconds)} · report {r.markdown}"))

    def action_matrix(self) -> None:
        """Ask, then run the matrix over the profiles in the cells shown."""
        from ccis_workbench.flows.build import REHEARSAL
        from ccis_workbench.flows.settings import Settings

        if self.running or isinstance(self.app.screen, ModalScreen):
            return
        if self.overlay.startswith(CHANGED) and not self.done:
            self.notify("the review is still computing which cells the change affects", title="Matrix run",
                        severity="warning")
            return
        try:
            defaults = self.defaults or Settings.load()
            cells = matrix_cells(self.workbench.catalog, self.overlay, self.cells)
            hosts = self.matrix_settings.hosts_for(defaults, self.wb_app.host_status.uri)
            assign_hosts(cells, hosts)
            req = self.matrix_settings.request(defaults, hosts, self.workbench.root)
        except WorkbenchError as exc:
            hint = " (the matrix builds the catalog's profiles: save one with this overlay first)" \
                if exc.title == "No cells" else ""
            self.notify(f"{exc.message}{hint}", title=f"Matrix run: {exc.title}", severity="warning")
            return
        s = self.matrix_settings
        rehearsal = req.build.tree == REHEARSAL
        names = ", ".join(c.profile for c in cells[:6]) + (f" and {len(cells) - 6} more" if len(cells) > 6 else "")
        question = (f"Run the matrix over {counted(len(cells), 'cell')} ({names})?\n\n"
                    f"It builds {counted(len(cells), 'image')} and boot-tests each on "
                    f"{counted(len(hosts), 'host')}: {', '.join(hosts)} ({counted(s.jobs, 'job')} per host, accel "
                    f"{req.build.accel}), " + ("on the REHEARSAL tree (busybox, offline: not a CentOS build)"
                                               if rehearsal else f"from the install tree {req.build.tree}")
                    + f".\nCells unchanged since a passing run are reused. Results: {req.output}")

        def answered(yes: bool | None) -> None:
            if yes and not self.running:
                self._start_run(cells, req)

        self.app.push_screen(ConfirmationModal(question, yes="Run", no="Back"), answered)

    def _start_run(self, cells: list[Cell], req: MatrixRequest) -> None:
        self.run_cells, self.run_state, self.run_result, self.run_error = cells, {}, None, ""
        self.run_output = req.output
        self.run_started = time.monotonic()
        self.monitor = _RunMonitor()
        self.running = True
        self._run_done.clear()
        for key in {(c.release, c.target) for c in cells}:
            self._paint_run_cell(*key)
        self.refresh_bindings()
        self._run_status()
        self._detail()
        self.run_the_matrix(cells, req, self.monitor)

    @work(thread=True, exclusive=True, exit_on_error=False, group="matrix-run", description="matrix run")
    def run_the_matrix(self, cells: list[Cell], req: MatrixRequest, monitor: _RunMonitor) -> None:
        from ccis_workbench.core.compose import Composer

        catalog = self.workbench.catalog
        try:
            result = self.matrix_runner(catalog, Composer(catalog), cells, req, monitor,
                                        on_event=lambda event: self.post_message(MatrixCellChanged(event)))
        except WorkbenchError as exc:
            self.post_message(MatrixEnded(None, f"{exc.title}: {exc.message}"))
        except Exception as exc:  # noqa: BLE001 - said in the status line; the app stays up
            self.post_message(MatrixEnded(None, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(MatrixEnded(result))
        finally:
            self._run_done.set()

    @on(MatrixCellChanged)
    def _run_cell_changed(self, message: MatrixCellChanged) -> None:
        e = message.event
        if e.cell not in self.run_cells:
            return
        self.run_state[e.cell.profile] = (e.state, e.seconds, time.monotonic())
        self._paint_run_cell(e.cell.release, e.cell.target)
        self._run_status()
        key = self._current_key()
        if key == (e.cell.release, e.cell.target):
            self._detail()

    @on(MatrixEnded)
    def _run_ended(self, message: MatrixEnded) -> None:
        self.running = False
        self.run_result, self.run_error = message.result, message.error
        if message.result is not None:
            for c in message.result.cells:  # a runner that sent no ending for a cell: its status is the ending
                state = self.run_state.get(c.profile, (QUEUED, 0.0, 0.0))[0]
                if state in (QUEUED, BUILDING, BOOT_TESTING):
                    self.run_state[c.profile] = (c.status, self._elapsed(c), time.monotonic())
            for key in {(c.release, c.target) for c in self.run_cells}:
                self._paint_run_cell(*key)
        self.refresh_bindings()
        self._run_status()
        self._detail()
        r = message.result
        if r is None:
            self.notify(message.error, title="Matrix run failed", severity="error", timeout=10)
        elif r.cancelled:
            self.notify(f"stopped: running cells removed their guests and volumes, waiting cells did not start; "
                        f"report {r.markdown}", title="Matrix run cancelled", severity="warning", timeout=10)
        else:
            self.notify(f"report {r.markdown}", title="Matrix run passed" if r.ok else "Matrix run: cells failed",
                        severity="information" if r.ok else "error", timeout=10)

    def action_cancel_matrix(self) -> None:
        """Ask, then stop every cell."""
        if not self.running or self.monitor is None or isinstance(self.app.screen, ModalScreen):
            return
        if self.monitor.cancel_event.is_set():
            self.notify("already cancelling: every running cell is removing its guest and volumes",
                        title="Matrix run")
            return
        monitor = self.monitor

        def answered(yes: bool | None) -> None:
            if yes:
                monitor.cancel_event.set()
                self._run_status()

        self.app.push_screen(ConfirmationModal("Cancel the matrix run? Every running cell stops and removes its "
                                               "guest and volumes; waiting cells do not start.",
                                               yes="Cancel the run", no="Keep running"), answered)
