"""The compose screen: choose on the left; preview (with provenance), diff, lint and profile YAML on the right."""

from __future__ import annotations

import asyncio
import re
import threading
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import (
    DataTable,
    Header,
    Input,
    Label,
    Select,
    SelectionList,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.selection_list import Selection
from textual.worker import get_current_worker

from ccis_workbench.core.wording import counted
from ccis_workbench.ui.messages import Analysed, CatalogFailed, CatalogLoaded, PreviewUpdated, ProfileSaved, Unavailable
from ccis_workbench.ui.modals import ConfirmationModal, OpenProfileModal, PathModal, SaveProfileModal, SaveRequest
from ccis_workbench.ui.paths import catalog_label
from ccis_workbench.ui.widgets.kickstart_view import KickstartView, ViewLine
from ccis_workbench.ui.widgets.panels import ErrorPanel, StatusLine, WorkbenchFooter
from ccis_workbench.ui.widgets.toggle_list import ToggleList

if TYPE_CHECKING:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.ui.app import WorkbenchApp
    from ccis_workbench.ui.engine import Analysis, Choice, Workbench

#: Variables edited with a text input: (name, placeholder).
TEXT_VARIABLES = (("disk_size", "10 (GiB)"), ("swap_size", "0 (MiB, 0: none)"), ("timezone", "UTC"),
                  ("locale", "en_US.UTF-8"), ("keyboard", "us"), ("hostname", "localhost.localdomain"),
                  ("extra_packages", "pkg, -pkg, @group"), ("extra_kernel_args", "quiet, -rhgb"))
TABS = ("preview", "diff", "lint", "profile")


class ComposeScreen(Screen[None]):
    """Pick release, target, overlays and variables; see the merged kickstart, its diff and its lint."""

    AUTO_FOCUS = None
    BINDINGS = [
        Binding("p", "show_tab('preview')", "Preview", show=False, id="tab.preview"),
        Binding("d", "show_tab('diff')", "Diff", show=False, id="tab.diff"),
        Binding("l", "show_tab('lint')", "Lint", show=False, id="tab.lint"),
        Binding("y", "show_tab('profile')", "YAML", show=False, id="tab.profile"),
        Binding("v", "toggle_provenance", "Provenance", tooltip="Show which layer file:line made each line"),
        Binding("m", "cycle_diff", "Mode", tooltip="Baseline, target alone, saved profile, file"),
        Binding("f", "diff_file", "File", tooltip="Diff against a kickstart file"),
        Binding("n", "new_composition", "New", show=False, tooltip="Start a new composition (no profile)"),
        Binding("o", "open_profile", "Open", tooltip="Open a saved profile"),
        Binding("s", "save_profile", "Save", tooltip="Save the choice as a new profile"),
        Binding("r", "review", "Review", tooltip="Review an overlay across releases and targets"),
        Binding("ctrl+r,f5", "reload", "Reload", show=False, tooltip="Reload the catalog from disk"),
        Binding("b", "build", "Build", tooltip="Build the image on libvirt"),
        Binding("x", "boot_test", "Test", tooltip="Boot-test an image against the test spec"),
        Binding("escape", "focus_preview", "Preview", show=False),
        Binding("slash", "search", "Search", show=False, tooltip="Find text in the preview"),
        Binding("right_square_bracket", "next_changed(1)", "Next change", show=False,
                tooltip="Next line a target, overlay or the profile made"),
        Binding("left_square_bracket", "next_changed(-1)", "Previous change", show=False),
    ]

    def __init__(self, initial_profile: str | None = None) -> None:
        super().__init__()
        self.initial_profile = initial_profile
        self.workbench: Workbench | None = None
        self.choice: Choice | None = None
        self.analysis: Analysis | None = None
        self.generation = 0
        self.diff_mode = "baseline"
        self.diff_file: str | None = None
        self.saved_profile: str | None = None  # path of the profile opened or saved (diff "against saved")
        self.overlay_states: dict[str, str] = {}
        self.catalog_error: WorkbenchError | None = None
        self._input_timer: Timer | None = None
        #: one rebuild of the overlay-variable inputs at a time (see _sync_overlay_variables)
        self._overlay_vars_lock = asyncio.Lock()
        self._profile_yaml = ""
        #: the last text searched for in the preview (`/` offers it again)
        self.last_search = ""
        #: the overlay-variable inputs wait for the next preview (see _sync_overlay_variables)
        self._overlay_vars_pending = False
        #: whether save was available when the bindings were last refreshed (None: not yet)
        self._could_save: bool | None = None

    @property
    def profile_yaml_text(self) -> str:
        """The YAML the Profile tab shows (what saving writes)."""
        return self._profile_yaml

    @property
    def wb_app(self) -> WorkbenchApp:
        return self.app  # type: ignore[return-value]

    # -- layout ------------------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        # The first frame is the frame of the screen (header, status line, footer); the chooser and the tabs
        # are mounted right after it (see on_mount), so the window appears as fast as a bare Textual app.
        yield Header()
        yield Horizontal(id="body")
        yield StatusLine(id="status")
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        self.update_status()
        self.call_after_refresh(self._build)

    async def _build(self) -> None:
        """After the first frame: mount the chooser and the tabs, then load the catalog (in a worker: it
        imports pykickstart)."""
        if self.wb_app.first_frame_drawn():
            return
        # The catalog loads (and its first choice composes) in a worker while the chooser and the tabs mount.
        self.load_catalog()
        # The chooser is disabled until the catalog is loaded: its lists are empty until then, so keys typed at
        # once (Tab Tab Space) would skip the empty overlay list and land in a field further down.
        await self.query_one("#body", Horizontal).mount_all([Sidebar(id="sidebar", disabled=True),
                                                             MainArea(id="main")])
        if self.workbench is None:
            self.query_one("#kickstart", KickstartView).loading = True
        self.update_status()

    # -- workers (they only post messages) ---------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="catalog", description="load the catalog")
    def load_catalog(self) -> None:
        from ccis_workbench.core.errors import WorkbenchError
        from ccis_workbench.ui.engine import Workbench

        try:
            workbench = Workbench(self.wb_app.catalog_root)
        except WorkbenchError as exc:
            self.post_message(CatalogFailed(exc))
            return
        if self.choice is None:
            # The first start: compose the choice the screen is about to show, here, before the screen hears of
            # the catalog (the preview's request then finds it in the workbench's cache). On the UI thread's side
            # this is the quiet time after mounting; composing after the message, the worker and the chooser's
            # first styling and painting took turns at the GIL.
            self._warm(workbench)
        self.post_message(CatalogLoaded(workbench))

    def _warm(self, workbench: Workbench) -> None:
        """Compose the first choice (see load_catalog) into *workbench*'s cache; errors are left for the
        preview's own request to report."""
        from ccis_workbench.core.errors import WorkbenchError
        from ccis_workbench.ui.engine import Choice

        try:
            ch = workbench.default_choice()
            if self.initial_profile:
                ch = Choice.from_profile(workbench.catalog.load_profile(self.initial_profile))
            workbench.preview(ch)
            workbench.overlay_states(ch)
        except WorkbenchError:
            pass
        import rich.syntax  # noqa: F401 - here, not in the UI thread's first show_profile (pygments: 10-70 ms)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compose", description="compose the choice")
    def analyse(self, generation: int, workbench: Workbench, ch: Choice, diff_mode: str, diff_file: str | None,
                saved: str | None) -> None:
        from ccis_workbench.core.errors import WorkbenchError
        from ccis_workbench.ui.engine import Analysis

        # Two steps: the preview as soon as the kickstart is composed, then lint and diff (slower) unless a
        # newer choice has cancelled this worker meanwhile. Lint and diff wait until the preview is painted:
        # run at once, they compete with the painting for the GIL.
        worker = get_current_worker()
        try:
            analysis = workbench.preview(ch)
            states = workbench.overlay_states(ch)
            yaml_text = workbench.profile_yaml(ch)
            shown = threading.Event()
            self.post_message(Analysed(generation, analysis, states, yaml_text, shown=shown))
            if analysis.composition is None or worker.is_cancelled:
                return
            shown.wait(0.5)  # bounded: a screen that never paints (suspended app) only delays lint by 0.5 s
            if worker.is_cancelled:
                return
            analysis = workbench.complete(analysis, ch, diff_mode, diff_file, saved)
        except Exception as exc:  # noqa: BLE001 - a bug, not bad input: show it in the error panel, stay up
            error = WorkbenchError("Internal error", f"{type(exc).__name__}: {exc}",
                                   hint="please report this with the profile that caused it")
            analysis, states, yaml_text = Analysis(key=ch.key(), error=error), self.overlay_states, ""
        if not worker.is_cancelled:
            self.post_message(Analysed(generation, analysis, states, yaml_text))

    def request_analysis(self) -> None:
        """Start composing the current choice; older results that arrive later are ignored."""
        if self.workbench is None or self.choice is None:
            return
        from copy import deepcopy

        self.generation += 1
        self.analyse(self.generation, self.workbench, deepcopy(self.choice), self.diff_mode, self.diff_file,
                     self.saved_profile)

    # -- catalog -----------------------------------------------------------------------------------------------

    @on(CatalogLoaded)
    def _catalog_loaded(self, message: CatalogLoaded) -> None:
        from ccis_workbench.core.errors import WorkbenchError
        from ccis_workbench.ui.engine import Choice

        reloading = self.workbench is not None
        self.workbench = message.workbench
        self._could_save = None  # the next preview refreshes the bindings (review depends on the catalog too)
        sidebar = self.query_one("#sidebar", Sidebar)
        if sidebar.disabled:
            sidebar.disabled = False
            if self.focused is None or self.focused is self.query_one("#kickstart", KickstartView):
                self.query_one("#release", Select).focus()
        self.catalog_error = None
        self.query_one("#error-panel", ErrorPanel).clear_error()
        if self.choice is None:
            self.choice = self.workbench.default_choice()
            if self.initial_profile:
                try:
                    self.choice = Choice.from_profile(self.workbench.catalog.load_profile(self.initial_profile))
                    self.saved_profile = str(self.workbench.catalog.profile_path(self.initial_profile))
                except WorkbenchError as exc:
                    self.query_one("#error-panel", ErrorPanel).show_error(exc, "Opening the profile failed")
            if self.choice.base and self.choice.base.source and not self.saved_profile:
                self.saved_profile = str(self.workbench.root / self.choice.base.source)
        self.sync_widgets()
        self.request_analysis()
        if reloading:
            self.notify("Catalog reloaded from disk", title="Reload")

    @on(CatalogFailed)
    def _catalog_failed(self, message: CatalogFailed) -> None:
        self.catalog_error = message.error
        context = "Loading the catalog failed" + (" (showing the last good catalog)" if self.workbench else "")
        self.query_one("#error-panel", ErrorPanel).show_error(message.error, context)
        self.query_one("#kickstart", KickstartView).loading = False
        self.notify(str(message.error.message), title=message.error.title, severity="error")
        self.update_status()

    # -- keeping the chooser in step with the choice ------------------------------------------------------------

    def sync_widgets(self) -> None:
        """Set every chooser widget from self.choice without posting change events."""
        wb, ch = self.workbench, self.choice
        if wb is None or ch is None:
            return
        with self.prevent(Select.Changed, SelectionList.SelectedChanged, Input.Changed):
            release = self.query_one("#release", Select)
            release.set_options([(r.title, r.name) for r in wb.catalog.releases.values()])
            if ch.release in wb.catalog.releases:
                release.value = ch.release
            self._sync_targets()
            self._sync_overlays(self.overlay_states or {o: "" for o in wb.catalog.overlays})
            self._sync_arch()
            for name, _ in TEXT_VARIABLES:
                self.query_one(f"#var-{name}", Input).value = _as_text(ch.variables.get(name))
        self._sync_overlay_variables()
        self._update_title()

    def _sync_overlay_variables(self) -> None:
        """One input per variable the chosen overlays declare (e.g. container_user); drop the values of
        overlays no longer chosen (the core refuses unknown variables).

        Removing widgets completes later than the call that asks for it, so mounting the new inputs at once
        collided with the old ones (the same ids) when a second overlay with variables was chosen. The inputs
        are rebuilt in one async task at a time (a lock), each from the choice as it then is: the last one
        leaves the inputs the choice needs, however fast the user toggles.

        Every caller then asks for a new preview: the inputs are rebuilt once that preview is shown (see
        _analysed), so that unmounting and mounting them does not hold up the composing worker (the GIL)."""
        wb, ch = self.workbench, self.choice
        if wb is None or ch is None:
            return
        rules = wb.catalog.variable_rules([wb.catalog.overlays[o] for o in ch.overlays if o in wb.catalog.overlays])
        for key in [k for k in ch.variables if k not in rules]:
            del ch.variables[key]
        self._overlay_vars_pending = True

    def _start_overlay_variables_rebuild(self) -> None:
        self._overlay_vars_pending = False
        self.run_worker(self._rebuild_overlay_variables(), group="overlay-variables",
                        description="show the overlays' variables", exit_on_error=False)

    async def _rebuild_overlay_variables(self) -> None:
        async with self._overlay_vars_lock:
            wb, ch = self.workbench, self.choice
            if wb is None or ch is None:
                return
            specs = [v for o in ch.overlays if o in wb.catalog.overlays
                     for v in wb.catalog.overlays[o].variables.values()]
            box = self.query_one("#overlay-vars", Vertical)
            wanted = [f"ovar-{v.name}" for v in specs]
            if [w.id for w in box.query(Input)] == wanted:
                return
            await box.remove_children()
            widgets: list[Label | Input] = []
            if specs:
                widgets.append(Label("Overlay variables", classes="field-label section"))
            for v in specs:
                default = _as_text(v.default) or "(empty)"
                widgets.append(Label(f"{v.name} ({v.type})", classes="var-label"))
                widgets.append(Input(_as_text(ch.variables.get(v.name)), id=f"ovar-{v.name}", placeholder=default,
                                     classes="var-input", compact=True, tooltip=v.description or None))
            with self.prevent(Input.Changed):
                await box.mount_all(widgets)

    def _sync_targets(self) -> None:
        wb, ch = self.workbench, self.choice
        assert wb is not None and ch is not None
        target = self.query_one("#target", Select)
        options = [(wb.catalog.targets[n].title, n) for n, why in wb.targets_for(ch.release).items() if not why]
        with self.prevent(Select.Changed):
            target.set_options(options or [("(no target supports this release)", "")])
            if ch.target in [v for _, v in options]:
                target.value = ch.target

    def _sync_arch(self) -> None:
        wb, ch = self.workbench, self.choice
        assert wb is not None and ch is not None
        arches = list(wb.catalog.releases[ch.release].arches) if ch.release in wb.catalog.releases else []
        if ch.target in wb.catalog.targets:
            arches = [a for a in arches if a in wb.catalog.targets[ch.target].arches]
        arch = self.query_one("#var-arch", Select)
        with self.prevent(Select.Changed):
            arch.set_options([(a, a) for a in arches] or [("(no common arch)", "")])
            current = ch.variables.get("arch", "x86_64")
            if current in arches:
                arch.value = current

    def _sync_overlays(self, states: dict[str, str], selection: bool = True) -> None:
        """Show each overlay's availability; with *selection*, also set the ticks from the choice (only when
        the choice was replaced: after a user's toggle the list is ahead of the choice until its message
        arrives)."""
        wb, ch = self.workbench, self.choice
        assert wb is not None and ch is not None
        sl = self.query_one("#overlays", SelectionList)
        names = sorted(wb.catalog.overlays)

        def prompt(name: str) -> Text:
            # Unavailable overlays stay reachable (not disabled): the cursor used to skip them, so the next space
            # toggled another overlay than the one the user looked at, and their reasons could not be read at
            # 80x24. They are dimmed, and choosing one says why it cannot be added (see _overlays_changed).
            if not states.get(name):
                return Text(name)
            return Text.assemble((name, "dim"), (f" — {states[name]}", "dim italic"))

        with self.prevent(SelectionList.SelectedChanged):
            if [sl.get_option_at_index(i).id for i in range(sl.option_count)] == names:
                # Same overlays: update in place, so the highlight and scroll stay where the user is.
                for i, name in enumerate(names):
                    option = sl.get_option_at_index(i)
                    if str(option.prompt) != str(prompt(name)):
                        sl.replace_option_prompt_at_index(i, prompt(name))
                    if selection and (name in sl.selected) != (name in ch.overlays):
                        sl.toggle(name)
            else:
                highlighted = sl.highlighted
                sl.clear_options()
                sl.add_options([Selection(prompt(n), n, n in ch.overlays, id=n) for n in names])
                if highlighted is not None and names:
                    sl.highlighted = min(highlighted, len(names) - 1)
            if sl.highlighted is None:
                # a keyboard user's first space must toggle something: start on the first available overlay
                sl.highlighted = next((i for i, n in enumerate(names) if not states.get(n)), None)
        self.overlay_states = dict(states)
        self._overlay_info(sl.highlighted)

    def _overlay_info(self, index: int | None) -> None:
        wb = self.workbench
        info = self.query_one("#overlay-info", Static)
        sl = self.query_one("#overlays", SelectionList)
        if wb is None or index is None or index >= sl.option_count:
            info.update("" if wb is None or wb.catalog.overlays else "no overlays in the catalog")
            return
        name = sl.get_option_at_index(index).value
        o = wb.catalog.overlays.get(name)
        if o is None:
            return
        why = self.overlay_states.get(name, "")
        text = Text(o.title, style="bold")
        if why:
            text.append(f"\nunavailable: {why}", style="italic")
        if o.requires:
            text.append(f"\nrequires: {', '.join(o.requires)}")
        if o.conflicts:
            text.append(f"\nconflicts: {', '.join(o.conflicts)}")
        info.update(text)

    def _update_title(self) -> None:
        ch = self.choice
        if ch is None:
            return
        self.title = f"CCIS Workbench · {catalog_label(self.workbench.root)}" if self.workbench else "CCIS Workbench"
        name = f"{ch.name}{' (modified)' if ch.modified else ''}" if ch.base else "new composition"
        self.sub_title = f"{name}: {ch.release} · {ch.target}" + (f" + {', '.join(ch.overlays)}" if ch.overlays
                                                                  else "")

    # -- chooser events ----------------------------------------------------------------------------------------

    @on(Select.Changed, "#release")
    def _release_changed(self, event: Select.Changed) -> None:
        if self.choice is None or self.workbench is None or event.value in (Select.NULL, ""):
            return
        self.choice.release = str(event.value)
        supported = [n for n, why in self.workbench.targets_for(self.choice.release).items() if not why]
        if self.choice.target not in supported and supported:
            self.notify(f"target {self.choice.target} does not support {self.choice.release}: using "
                        f"{supported[0]}", title="Target changed", severity="warning")
            self.choice.target = supported[0]
        self._choice_moved()

    @on(Select.Changed, "#target")
    def _target_changed(self, event: Select.Changed) -> None:
        if self.choice is None or event.value in (Select.NULL, ""):
            return
        self.choice.target = str(event.value)
        self._choice_moved()

    def _choice_moved(self) -> None:
        assert self.choice is not None and self.workbench is not None
        for name, why in self.workbench.drop_inapplicable(self.choice):
            self.notify(f"overlay {name} removed: {why}", title="Overlay removed", severity="warning")
        self._sync_overlay_variables()
        self._sync_targets()
        self._sync_arch()
        self._update_title()
        self.request_analysis()

    @on(Select.Changed, "#var-arch")
    def _arch_changed(self, event: Select.Changed) -> None:
        if self.choice is None or event.value in (Select.NULL, ""):
            return
        self.choice.variables["arch"] = str(event.value)
        self.request_analysis()

    @on(SelectionList.SelectedChanged, "#overlays")
    def _overlays_changed(self, event: SelectionList.SelectedChanged) -> None:
        if self.choice is None:
            return
        sl = event.selection_list
        refused = [o for o in sl.selected if o not in self.choice.overlays and self.overlay_states.get(o)]
        for name in refused:
            with self.prevent(SelectionList.SelectedChanged):
                sl.deselect(name)
            self.notify(f"{name} cannot be added: {self.overlay_states[name]}", title="Overlay unavailable",
                        severity="warning")
        if refused and set(sl.selected) == set(self.choice.overlays):
            return
        selected = list(sl.selected)
        order = [o for o in self.choice.overlays if o in selected]
        order += [o for o in selected if o not in order]
        self.choice.overlays = order
        self._sync_overlay_variables()
        self._update_title()
        self.request_analysis()

    def toggle_overlay(self, name: str) -> None:
        """Add or remove overlay *name* (the palette's "overlay: add/remove")."""
        self.query_one("#overlays", SelectionList).toggle(name)

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100, "-narrow")
        self.update_status()

    @on(SelectionList.SelectionHighlighted, "#overlays")
    def _overlay_highlighted(self, event: SelectionList.SelectionHighlighted) -> None:
        self._overlay_info(event.selection_index)

    @on(Input.Changed, ".var-input")
    def _variable_changed(self, event: Input.Changed) -> None:
        """A typed value is checked with the core's own rule for that variable: a wrong one marks the field and
        says what belongs there (the choice keeps its last good value); a right one recomposes."""
        from ccis_workbench.core.errors import ValueRejected
        from ccis_workbench.core.values import check_value
        from ccis_workbench.ui.engine import field_value

        if self.choice is None or event.input.id is None or self.workbench is None:
            return
        name = event.input.id.split("-", 1)[1]
        cat = self.workbench.catalog
        rule = cat.variable_rules([cat.overlays[o] for o in self.choice.overlays if o in cat.overlays]).get(name)
        raw = event.value.strip()
        problem = ""
        if not raw:
            self.choice.variables.pop(name, None)
        elif rule is not None:
            try:
                self.choice.variables[name] = check_value(name, field_value(raw, rule.type), rule, "", 0)
            except ValueRejected as exc:
                problem = f"{exc.message}\nexpected: {exc.hint}" if exc.hint else exc.message
        self._show_field_problem(event.input, problem)
        if problem:
            return
        if self._input_timer is not None:
            self._input_timer.stop()
        # Typing: compose once the keys pause briefly, not on every key.
        self._input_timer = self.set_timer(0.12, self.request_analysis)

    def _show_field_problem(self, field: Input, problem: str) -> None:
        """Mark *field* invalid and say why under it (or clear both)."""
        field.set_class(bool(problem), "-invalid")
        hint_id = f"hint-{field.id}"
        existing = self.query(f"#{hint_id}")
        if not problem:
            existing.remove()
            return
        if existing:
            existing.first(Static).update(problem)
        else:
            field.parent.mount(Static(problem, id=hint_id, classes="field-problem"), after=field)  # type: ignore[union-attr]

    # -- results -----------------------------------------------------------------------------------------------

    @on(Analysed)
    def _analysed(self, message: Analysed) -> None:
        if message.shown is not None:
            self.call_after_refresh(message.shown.set)  # the worker's lint and diff wait for this paint
        if message.generation != self.generation:
            return  # a newer choice is being composed
        a = message.analysis
        view = self.query_one("#kickstart", KickstartView)
        if a.complete and a.composition is not None:
            # second step: lint and diff for the composition already shown
            self.analysis = a
            self._show_lint(a)
            self._show_diff(a)
            self.update_status()
            return
        self.analysis = a
        view.loading = False
        if message.overlay_states != self.overlay_states:
            self._sync_overlays(message.overlay_states, selection=False)
        panel = self.query_one("#error-panel", ErrorPanel)
        if a.error is not None:
            panel.show_error(a.error, "Composing this choice failed")
        elif self.catalog_error is None:
            panel.clear_error()
        if a.composition is not None:
            comp = a.composition
            lines = [ViewLine(ln.number, ln.text,
                              _short_origin(ln.origins[0]) if ln.origins else "",
                              ln.overridden, changed=any(o.layer != "baseline" for o in ln.origins))
                     for ln in comp.lines]
            view.set_lines(lines)
            self._show_origin(view.cursor_line)
        self._profile_yaml = message.profile_yaml
        self.show_profile()
        self.update_status()
        # The footer is rebuilt on every refresh_bindings (all its keys unmounted and mounted again): only when
        # what check_action reads (save: does the choice compose) changed, not on every keystroke's preview.
        can_save = a.error is None
        if can_save != self._could_save:
            self._could_save = can_save
            self.refresh_bindings()
        self.post_message(PreviewUpdated(message.generation, view.line_count))
        if self._overlay_vars_pending:
            self._start_overlay_variables_rebuild()
        if a.composition is not None:
            self.wb_app.preview_ready()

    def _show_origin(self, number: int) -> None:
        detail = self.query_one("#origin-detail", Static)
        a = self.analysis
        if a is None or a.composition is None or not 0 < number <= len(a.composition.lines):
            detail.update("")
            return
        line = a.composition.lines[number - 1]
        text = Text(f"line {number}: ", style="bold")
        if not line.origins:
            text.append("generated by the workbench (header or blank line)", style="dim")
        seen = set()
        for o in line.origins:
            if (o.file, o.line) in seen:
                continue
            seen.add((o.file, o.line))
            text.append(f"{o.layer} ", style="bold")
            text.append(f"{o}  ")
        keys = seen
        for ov in a.composition.overrides:
            if (ov.later.file, ov.later.line) in keys or (ov.earlier.file, ov.earlier.line) in keys:
                text.append(f"\n! {ov.message()}", style="bold yellow")
        detail.update(text)

    @on(KickstartView.CursorMoved)
    def _cursor_moved(self, event: KickstartView.CursorMoved) -> None:
        self._show_origin(event.line)

    def _show_lint(self, a: Analysis) -> None:
        table = self.query_one("#findings", DataTable)
        table.clear()
        self._finding_rows: dict[str, tuple[int, str]] = {}
        detail = self.query_one("#finding-detail", Static)
        comp = a.composition
        assert comp is not None
        for i, f in enumerate(a.findings or []):
            sev = f.severity + (" (waived)" if getattr(f, "waived", None) else "")
            style = {"error": "bold red", "warning": "yellow"}.get(f.severity, "")
            key = f"f{i}"
            table.add_row(Text(sev, style=style), f.id, str(f.line or ""), f.message, key=key)
            origin = f" — from {f.origin.layer} {f.origin}" if getattr(f, "origin", None) else ""
            waived = f"\nwaived: {f.waived}" if getattr(f, "waived", None) else ""
            self._finding_rows[key] = (f.line or 0, f"{f.id}: {f.explanation or f.message}{origin}{waived}")
        for i, ov in enumerate(comp.overrides):
            matches = [ln for ln in comp.lines
                       if any((o.file, o.line) == (ov.later.file, ov.later.line) for o in ln.origins)]
            if not matches:  # a removal: the line the earlier layer wrote
                matches = [ln for ln in comp.lines
                           if any((o.file, o.line) == (ov.earlier.file, ov.earlier.line) for o in ln.origins)]
            line = override_line(ov.subject, matches)
            key = f"o{i}"
            table.add_row(Text("override", style="cyan"), "layer.override", str(line or ""),
                          f"{ov.subject}: {ov.later.layer} overrides {ov.earlier.layer}", key=key)
            self._finding_rows[key] = (line, ov.message())
        if a.lint_error:
            detail.update(Text(a.lint_error, style="italic"))
        elif not table.row_count:
            detail.update("No findings and no overrides.")
        else:
            self._finding_detail(table.cursor_row)

    def _finding_detail(self, row: int) -> None:
        table = self.query_one("#findings", DataTable)
        if not table.row_count or row >= table.row_count:
            return
        key = table.coordinate_to_cell_key((row, 0)).row_key.value or ""
        line, explanation = self._finding_rows.get(key, (0, ""))
        where = f"line {line} — enter jumps there\n" if line else ""
        self.query_one("#finding-detail", Static).update(Text(where + explanation))

    @on(DataTable.RowHighlighted, "#findings")
    def _finding_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._finding_detail(event.cursor_row)

    @on(DataTable.RowSelected, "#findings")
    def _finding_selected(self, event: DataTable.RowSelected) -> None:
        line, _ = self._finding_rows.get(event.row_key.value or "", (0, ""))
        if line:
            self.jump_to_line(line)

    def jump_to_line(self, line: int) -> None:
        """Show the preview with the cursor on *line*."""
        self.query_one("#tabs", TabbedContent).active = "preview"
        view = self.query_one("#kickstart", KickstartView)
        view.go_to_line(line)
        view.focus()

    def _show_diff(self, a: Analysis) -> None:
        from ccis_workbench.ui.engine import DIFF_MODES

        d = a.diff
        titles = dict(DIFF_MODES)
        mode = self.query_one("#diff-mode", Static)
        summary = self.query_one("#diff-summary", Static)
        body = self.query_one("#diff-text", Static)
        mode.update(Text.assemble(("Diff ", "bold"), (titles.get(self.diff_mode, self.diff_mode), "bold"),
                                  (f"   {d.label if d and not d.error else ''}", "dim"),
                                  ("   m: change, f: file", "dim")))
        if d is None or d.error or d.diff is None:
            summary.update(Text(d.error if d else "", style="italic"))
            body.update("")
            return
        sem = d.diff.semantic
        lines = sem.summary_lines() if not sem.is_empty() else ["no change in meaning"]
        summary.update(Text("\n".join(lines)))
        text = Text()
        for ln in d.diff.unified.splitlines():
            if ln.startswith(("+++", "---")):
                text.append(ln + "\n", style="bold")
            elif ln.startswith("@@"):
                text.append(ln + "\n", style="cyan")
            elif ln.startswith("+"):
                text.append(ln + "\n", style="green")
            elif ln.startswith("-"):
                text.append(ln + "\n", style="red")
            else:
                text.append(ln + "\n")
        body.update(text if d.diff.unified.strip() else Text("the texts are identical", style="italic"))

    def show_profile(self) -> None:
        ch = self.choice
        source = self.query_one("#profile-source", Static)
        if ch is None:
            return
        opened = f"opened from {ch.base.source}" if ch.base and ch.base.source else "not saved yet"
        source.update(Text.assemble(("Profile YAML of the current choice", "bold"), (f"  ({opened}; s saves it "
                                                                                     "as a new profile)", "dim")))
        from rich.syntax import Syntax  # pygments: not needed for the first frame

        theme = "ansi_dark" if self.app.current_theme.dark else "ansi_light"
        self.query_one("#profile-yaml", Static).update(
            Syntax(self._profile_yaml, "yaml", theme=theme, line_numbers=True, background_color="default"))

    def update_status(self) -> None:
        """Refresh the status line (host status from the app, counts from the last analysis)."""
        status = self.query_one("#status", StatusLine)
        host = self.wb_app.host_status.summary(short=self.size.width < 100)
        a = self.analysis
        if self.workbench is None:
            state = "catalog failed to load" if self.catalog_error else "loading the catalog…"
        elif a is None:
            state = "composing…"
        elif a.error is not None:
            state = f"error: {a.error.title}"
        elif not a.complete:
            state = "linting…"
        else:
            assert a.composition is not None
            counts = {"error": 0, "warning": 0}
            for f in a.findings or []:
                if f.severity in counts and not getattr(f, "waived", None):
                    counts[f.severity] += 1
            lint = "lint n/a" if a.findings is None else f"lint {counts['error']}E {counts['warning']}W"
            state = f"{counted(len(a.composition.overrides), 'override')} · {lint}"
        status.set_parts(state, host)

    # -- actions -----------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Footer shows only the keys that apply now."""
        try:
            tab = self.query_one("#tabs", TabbedContent).active
        except NoMatches:  # before the screen is composed
            tab = "preview"
        if action == "toggle_provenance":
            return tab == "preview"
        if action in ("cycle_diff", "diff_file"):
            return tab == "diff"
        if action == "save_profile":
            return None if self.analysis is None or self.analysis.error is not None else True
        if action == "review":
            return bool(self.workbench and self.workbench.catalog.overlays)
        return True

    @on(TabbedContent.TabActivated)
    def _tab_changed(self) -> None:
        self.refresh_bindings()

    def action_show_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        if tab == "preview":
            self.query_one("#kickstart", KickstartView).focus()
        elif tab == "lint":
            self.query_one("#findings", DataTable).focus()
        self.refresh_bindings()

    def action_search(self) -> None:
        """Ask for text and move the preview's cursor to the next line holding it (`/` again finds the next)."""

        def chosen(text: str | None) -> None:
            if not text:
                return
            self.last_search = text
            self.action_show_tab("preview")
            line = self.query_one("#kickstart", KickstartView).find(text)
            if line is None:
                self.notify(f"no line holds {text!r}", title="Search", severity="warning")

        self.app.push_screen(PathModal("Find in the preview (enter: next match):", self.last_search,
                                       placeholder="text, e.g. cloud-init"), chosen)

    def action_next_changed(self, direction: int) -> None:
        self.action_show_tab("preview")
        if self.query_one("#kickstart", KickstartView).next_changed(direction) is None:
            self.notify("every line comes from the release baseline", title="No change")

    def action_focus_preview(self) -> None:
        self.action_show_tab("preview")

    def action_toggle_provenance(self) -> None:
        view = self.query_one("#kickstart", KickstartView)
        view.show_provenance = not view.show_provenance

    def set_diff_mode(self, mode: str) -> None:
        self.diff_mode = mode
        self.query_one("#tabs", TabbedContent).active = "diff"
        self.request_analysis()

    def action_cycle_diff(self) -> None:
        from ccis_workbench.ui.engine import DIFF_MODES

        keys = [k for k, _ in DIFF_MODES]
        self.set_diff_mode(keys[(keys.index(self.diff_mode) + 1) % len(keys)])

    def action_diff_file(self) -> None:
        def chosen(path: str | None) -> None:
            if path:
                self.diff_file = path
                self.set_diff_mode("file")

        self.app.push_screen(PathModal("Diff the current kickstart against this file:", self.diff_file or ""),
                             chosen)

    def action_open_profile(self) -> None:
        if self.workbench is None:
            return
        self.app.push_screen(OpenProfileModal(self.workbench.catalog.profile_names()), self.open_profile)

    def open_profile(self, name: str | None) -> None:
        """Load profile *name* (a name or a path) into the chooser."""
        from ccis_workbench.core.errors import WorkbenchError
        from ccis_workbench.ui.engine import Choice

        if not name or self.workbench is None:
            return
        try:
            profile = self.workbench.catalog.load_profile(name)
        except WorkbenchError as exc:
            self.query_one("#error-panel", ErrorPanel).show_error(exc, "Opening the profile failed")
            self.notify(exc.message, title=exc.title, severity="error")
            return
        self.set_choice(Choice.from_profile(profile))
        self.saved_profile = str(self.workbench.catalog.profile_path(name))
        self.notify(f"{profile.name} ({profile.source})", title="Profile opened")

    def has_unsaved_changes(self) -> bool:
        """A profile changed since it was opened or saved, or a new composition with overlays or variables."""
        ch = self.choice
        if ch is None:
            return False
        return ch.modified if ch.base is not None else bool(ch.overlays or ch.variables)

    def action_new_composition(self) -> None:
        """Start over from a new composition (no profile's description, variables or kickstart block)."""
        if self.workbench is None:
            return
        self.saved_profile = None
        self.set_choice(self.workbench.default_choice())
        self.notify("a new composition: pick a release, a target and overlays", title="New")

    def set_choice(self, ch: Choice) -> None:
        """Replace the whole choice (opening a profile, or a review cell) and recompose."""
        self.choice = ch
        self.overlay_states = {}
        self.sync_widgets()
        self.request_analysis()

    def action_save_profile(self, name: str = "", description: str = "", error: str = "") -> None:
        if self.workbench is None or self.choice is None:
            return
        ch = self.choice
        derived = "-".join([ch.target, ch.release.replace("centos-", ""), *ch.overlays])
        default = name or (f"{ch.name}-copy" if ch.base and not ch.modified else derived)
        desc = description or (ch.base.description if ch.base else "")
        self.app.push_screen(SaveProfileModal(default, desc, error), self._save_requested)

    def _save_requested(self, request: SaveRequest | None) -> None:
        from ccis_workbench.core.errors import WorkbenchError

        if request is None or self.workbench is None or self.choice is None:
            return
        try:
            path, text = self.workbench.validate_new_profile(self.choice, request.name, request.description)
        except WorkbenchError as exc:
            where = f"{exc.location}: " if exc.location else ""
            self.action_save_profile(request.name, request.description,
                                     f"{where}{exc.title}: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint
                                                                            else ""))
            return
        if path.exists():
            def confirmed(yes: bool | None) -> None:
                if yes:
                    self._write_profile(path, text)
                else:
                    self.notify("Nothing written", title="Save cancelled")

            self.app.push_screen(ConfirmationModal(f"{self.workbench.catalog.rel(path)} exists. Overwrite it?",
                                                   yes="Overwrite", no="Keep it"), confirmed)
            return
        self._write_profile(path, text)

    def _write_profile(self, path: Any, text: str) -> None:
        from ccis_workbench.core.errors import WorkbenchError
        from ccis_workbench.ui.engine import Choice

        assert self.workbench is not None
        try:
            self.workbench.save_profile(path, text)
            profile = self.workbench.catalog.load_profile(str(path))
        except (OSError, WorkbenchError) as exc:
            self.notify(str(exc), title="Save failed", severity="error")
            return
        self.saved_profile = str(path)
        self.choice = Choice.from_profile(profile)
        self._update_title()
        self.request_analysis()
        self.notify(f"wrote {self.workbench.catalog.rel(path)}", title="Profile saved")
        self.post_message(ProfileSaved(str(path)))

    def action_review(self) -> None:
        self.wb_app.open_review(self.choice.overlays[-1] if self.choice and self.choice.overlays else None)

    def action_reload(self) -> None:
        self.notify("Reloading the catalog…", title="Reload")
        self.load_catalog()

    def action_build(self) -> None:
        self.wb_app.open_build()

    def action_boot_test(self) -> None:
        self.wb_app.open_boot_test()

    def explain_unavailable(self, action: str) -> None:
        """Say why *action* ('build', 'boot-test') cannot run here (libvirt missing, unreachable...)."""
        reason = self.wb_app.capabilities.build_unavailable(self.wb_app.host_status, action)
        if reason:
            self.notify(reason, title=f"{action.capitalize()} unavailable", severity="warning")
            self.post_message(Unavailable(action, reason))


class Sidebar(VerticalScroll):
    """The chooser: release, target, overlays and variables."""

    def compose(self) -> ComposeResult:
        yield Label("Release", classes="field-label")
        yield Select[str]([("…", "")], id="release", allow_blank=False, compact=True)
        yield Label("Target", classes="field-label")
        yield Select[str]([("…", "")], id="target", allow_blank=False, compact=True)
        yield Label("Overlays", classes="field-label")
        yield ToggleList(id="overlays", compact=True)
        yield Static("", id="overlay-info")
        yield Label("Variables", classes="field-label section")
        yield Label("arch", classes="var-label")
        yield Select[str]([("…", "")], id="var-arch", allow_blank=False, compact=True)
        for name, placeholder in TEXT_VARIABLES:
            yield Label(name, classes="var-label")
            yield Input(id=f"var-{name}", placeholder=placeholder, classes="var-input", compact=True)
        yield Vertical(id="overlay-vars")


class MainArea(Vertical):
    """The error panel and the tabs: preview, diff, lint, profile YAML."""

    def compose(self) -> ComposeResult:
        yield ErrorPanel(id="error-panel")
        with TabbedContent(id="tabs", initial="preview"):
            with TabPane("Preview", id="preview"):
                yield KickstartView(id="kickstart")
                yield Static("", id="origin-detail")
            with TabPane("Diff", id="diff"):
                yield Static("", id="diff-mode")
                with VerticalScroll(id="diff-scroll"):
                    yield Static("", id="diff-summary")
                    yield Static("", id="diff-text")
            with TabPane("Lint", id="lint"):
                table = DataTable(id="findings", cursor_type="row", zebra_stripes=True)
                table.add_columns("Severity", "Id", "Line", "Message")
                yield table
                yield Static("", id="finding-detail")
            with TabPane("Profile", id="profile"):
                yield Static("", id="profile-source")
                with VerticalScroll(id="profile-scroll"):
                    yield Static("", id="profile-yaml")


def override_line(subject: str, matches: list[Any]) -> int:
    """The preview line an override finding jumps to, among the lines its layer line produced: the one that
    names the overridden thing (`-rsync` for "package rsync": a YAML list on one line produces several
    packages with the same origin), else the first line that is not a comment."""
    name = subject.split()[-1] if subject.split() else ""
    named = [ln for ln in matches
             if name and (ln.text.strip().lstrip("-") == name or name in re.split(r"[\s=,]+", ln.text))]
    for group in (named, [ln for ln in matches if not ln.text.lstrip().startswith("#")], matches):
        if group:
            return int(group[0].number)
    return 0


def _as_text(value: Any) -> str:
    """A variable's value as the text of its input."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _short_origin(origin: Any) -> str:
    """'ui-alpha.ks.j2:2' for the gutter (the line below the preview shows the layer and full path)."""
    name = str(origin.file).rsplit("/", 1)[-1]
    return f"{name}:{origin.line}" if origin.line else name
