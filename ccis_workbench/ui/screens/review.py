"""Review mode: one overlay against every release x target — applicable or why not, lint status, diff size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Header, Label, Select, Static

from ccis_workbench.core.wording import counted
from ccis_workbench.flows.trust import FROM_BRANCH, changed_catalog_files
from ccis_workbench.ui.messages import ReviewCellReady, ReviewDone
from ccis_workbench.ui.paths import catalog_label
from ccis_workbench.ui.widgets.panels import WorkbenchFooter

if TYPE_CHECKING:
    from ccis_workbench.ui.app import WorkbenchApp
    from ccis_workbench.ui.engine import ReviewCell, Workbench


#: Prefix of a review subject that is a changed catalog file rather than an overlay.
CHANGED = "changed:"


class ReviewScreen(Screen[None]):
    """A matrix: rows are releases, columns targets; enter opens the cell in the compose view."""

    BINDINGS = [
        Binding("escape,c", "close", "Compose", tooltip="Back to the compose view"),
        Binding("enter", "open_cell", "Open cell", tooltip="Open this release + target in the compose view"),
        Binding("o", "choose_overlay", "Overlay", tooltip="Choose the overlay to review"),
    ]

    def __init__(self, workbench: Workbench, overlay: str | None = None) -> None:
        super().__init__()
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
        yield WorkbenchFooter()

    def _overlay_from_branch(self, name: str) -> bool:
        return any(p.startswith(f"kickstarts/overlays/{name}.") for p in self.from_branch)

    def on_mount(self) -> None:
        self.title = f"CCIS Workbench · {catalog_label(self.workbench.root)}"
        self.sub_title = "review"
        self.start()
        self.query_one("#matrix", DataTable).focus()

    def start(self) -> None:
        """(Re)build the empty matrix and compute it in a worker."""
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

    @on(DataTable.CellHighlighted)
    def _detail(self) -> None:
        c = self._current()
        detail = self.query_one("#cell-detail", Static)
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
        self.overlay = str(event.value)
        self.start()

    def action_choose_overlay(self) -> None:
        select = self.query_one("#review-overlay", Select)
        select.focus()
        select.expanded = True

    def action_close(self) -> None:
        self.app.pop_screen()
