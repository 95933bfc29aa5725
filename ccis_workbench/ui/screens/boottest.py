"""The boot-test screen: pick an artifact, boot it with its seed, fill in the checks live beside the console.

The run is `run_artifact_test` (ccis_workbench.backends.artifact_test: disks boot on libvirt, container images
are checked in podman or a chroot) in a thread worker. The runner reports each check through the monitor's
structured `check(id, status, reason)`; `BootTestMonitor` turns those into `CheckUpdated` messages, and the final
result (authoritative) fills in the table at the end.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, DataTable, Header, Input, Label, Log, RichLog, Select, Static

from ccis_workbench.core.wording import counted
from ccis_workbench.flows.build import leftovers_of
from ccis_workbench.flows.settings import Settings
from ccis_workbench.flows.test import BootRequest, TestSetup, is_cancelled, prepare_test, report_dir, run_test
from ccis_workbench.ui.messages import (
    BootTestCleanedUp,
    BootTestEnded,
    BootTestPrepared,
    CheckUpdated,
    CleanupVerified,
    RunNote,
    RunOutput,
    RunStage,
)
from ccis_workbench.ui.paths import catalog_label, in_catalog, relative_hint
from ccis_workbench.ui.screens.build import ACCELS, CONSOLE_LINES, SEVERITY_STYLE, UIMonitor, elapsed_text
from ccis_workbench.ui.widgets.panels import WorkbenchFooter, error_text, toggle_maximized

if TYPE_CHECKING:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.core.monitor import Monitor
    from ccis_workbench.ui.engine import Choice, Workbench

#: The harness's own marker lines (`echo __CCIS_B3__` ...) are not the guest's output: hidden from the console pane.
HARNESS_MARKERS = re.compile(r'(?:echo )?__CCIS_(?:"")?[A-Z]+\d*(?:_(?:\d+|\$\?))?__;? ?')

STATUS_STYLE = {"pending": "dim", "running": "bold cyan", "passed": "green", "failed": "bold red",
                "error": "red", "skipped": "dim"}


@dataclass
class BootTestSettings:
    """The boot-test screen's settings (the CLI's boot-test options). None: the workbench's setting (flows.settings:
    environment, configuration file, default), the value the CLI would use."""

    accel: str | None = None
    memory_mb: int | None = None
    grow_mib: int | None = None
    login_timeout: float | None = None
    inactivity_timeout: float | None = None
    rehearsal: bool | None = None  # None: from the artifact's manifest
    output_dir: str | None = None  # None: beside the artifact (boot-test-ID), else ./boot-test-ID

    def request(self, defaults: Settings, uri: str, run_id: str | None = None) -> BootRequest:
        return BootRequest.from_settings(defaults, uri=uri, accel=self.accel, memory_mb=self.memory_mb,
                                         grow_mib=self.grow_mib, login_timeout=self.login_timeout,
                                         inactivity_timeout=self.inactivity_timeout, run_id=run_id)


class BootTestMonitor(UIMonitor):
    """UIMonitor that also turns the runner's structured check reports into CheckUpdated messages."""

    def check(self, check_id: str, status: str, reason: str) -> None:
        self.target.post_message(CheckUpdated(check_id, status, reason))


def prepare_boot_test(workbench: Workbench, ch: Choice, artifact: str, settings: BootTestSettings,
                      artifacts: Path) -> TestSetup:
    """The artifact and the checks that apply to it, through flows.test (the CLI's boot-test does the same); the
    current choice is used only when neither the artifact's manifest names a profile (blocking)."""
    return prepare_test(workbench.catalog, workbench.composer, artifact, fallback=ch.to_profile(),
                        rehearsal=settings.rehearsal, artifacts=artifacts)


class BootTestScreen(Screen[None]):
    """Boot an artifact with the seed its target expects; the checks fill in live; a summary at the end."""

    BINDINGS = [
        Binding("f4", "console", "Console", tooltip="Give the console the whole screen (f4 again: back)"),
        Binding("escape", "close", "Back", tooltip="Back to the compose view (cancel a running test first)"),
        Binding("ctrl+s,f2", "start", "Start", tooltip="Run the boot test", id="boottest.start"),
        Binding("ctrl+x,f3", "cancel", "Cancel", tooltip="Cancel: destroy the guest, remove its volumes",
                id="boottest.cancel"),
    ]

    def __init__(self, workbench: Workbench, ch: Choice, uri: str, settings: BootTestSettings | None = None, *,
                 artifact: str | None = None, defaults: Settings | None = None,
                 runner: Callable[[TestSetup, BootRequest, Monitor, Callable[[Any], None]], Any] | None = None,
                 leftovers: Callable[[str, str, str], list[str]] | None = None,
                 ids: Callable[[], str] | None = None, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.workbench = workbench
        self.choice = ch
        self.uri = uri
        self.defaults = defaults or Settings.load()
        self.settings = settings or BootTestSettings()
        self.artifact = artifact or ""
        #: runs the test (flows.test.run_test: it hands the verdict to its 4th argument before destroying the
        #: guest); tests inject endings a real guest cannot be made to produce
        self.runner = runner or run_test
        #: what of a run is left in libvirt after a cancel (flows.build.leftovers_of)
        self.leftovers = leftovers or leftovers_of
        #: each run's id (None: core.plan.new_build_id, the UTC time plus random hex)
        self.ids = ids
        #: what the run timer reads (seconds)
        self.clock = clock or time.monotonic
        self.setup: TestSetup | None = None
        self.setup_error: WorkbenchError | None = None
        self.monitor: BootTestMonitor | None = None
        self.running = False
        #: the verdict is shown and the worker still destroys the guest and deletes its volumes
        self.cleaning = False
        self.result: Any = None
        self.statuses: dict[str, str] = {}
        self.console_text: list[str] = []
        self.stage_name = ""
        self._done = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="boot-bar", classes="run-bar"):
            yield Label("Artifact", classes="bar-label")
            yield Input(self.artifact, id="boot-artifact", compact=True,
                        placeholder=f"disk image, artifact directory or profile ({relative_hint(self.workbench.root)})")
            yield Label("Accel", classes="bar-label")
            yield Select[str](ACCELS, value=self.settings.accel or self.defaults.accel, allow_blank=False,
                              id="boot-accel", compact=True)
            yield Button("Start", id="boot-start", variant="success", compact=True)
            yield Button("Cancel", id="boot-cancel", variant="error", compact=True, disabled=True)
        with Horizontal(id="boot-main", classes="run-main"):
            with Vertical(id="boot-checks-box"):
                table = DataTable(id="boot-checks", cursor_type="row", zebra_stripes=True)
                table.add_column("Status", key="status", width=8)
                table.add_column("Check", key="check")
                table.add_column("Result", key="reason")
                yield table
            with Vertical(id="boot-right"):
                yield Static("", id="boot-summary", classes="ending")
                yield Log(max_lines=CONSOLE_LINES, id="boot-console", auto_scroll=True)
        yield RichLog(id="boot-events", max_lines=500, wrap=True, markup=False)
        yield Static("", id="boot-status", classes="run-status")
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        self.title = f"CCIS Workbench · {catalog_label(self.workbench.root)}"
        self.sub_title = f"boot test: {self.choice.name}"
        self.query_one("#boot-checks-box").border_title = "Checks"
        self.query_one("#boot-console", Log).border_title = "Console"
        self.query_one("#boot-events", RichLog).border_title = "Stages and notes"
        self.set_interval(0.2, self._tick)
        self.request_setup()

    def on_unmount(self) -> None:
        if self.monitor is not None:
            self.monitor.cancel_event.set()

    # -- setup -------------------------------------------------------------------------------------------------

    def request_setup(self) -> None:
        """Resolve the artifact and its checks in a worker."""
        if self.running:
            return
        self.setup = None
        self.artifact = self.query_one("#boot-artifact", Input).value.strip()
        self.settings = replace(self.settings, accel=str(self.query_one("#boot-accel", Select).value))
        self._refresh_controls()
        self.prepare(self.artifact, self.settings)

    @work(thread=True, exclusive=True, exit_on_error=False, group="boottest-prepare",
          description="find the artifact and its checks")
    def prepare(self, artifact: str, settings: BootTestSettings) -> None:
        from ccis_workbench.core.errors import WorkbenchError

        try:
            self.post_message(BootTestPrepared(prepare_boot_test(self.workbench, self.choice,
                                                                 self.typed_artifact(artifact), settings,
                                                                 self.artifacts_dir())))
        except WorkbenchError as exc:
            self.post_message(BootTestPrepared(error=exc))

    @on(BootTestPrepared)
    def _prepared(self, message: BootTestPrepared) -> None:
        self.setup, self.setup_error = message.setup, message.error
        table = self.query_one("#boot-checks", DataTable)
        table.clear()
        self.statuses = {}
        summary = self.query_one("#boot-summary", Static)
        if message.error is not None:
            e = message.error
            summary.update(error_text("No boot test yet: ", e))
            summary.set_classes("ending -shown -bad")
        else:
            s = message.setup
            for sel in s.plan.selected:
                self.statuses[sel.check.id] = "pending"
                table.add_row(Text("pending", style=STATUS_STYLE["pending"]), sel.check.id,
                              Text(sel.check.description, style="dim"), key=sel.check.id)
            checks = counted(len(s.plan.selected), "check")
            summary.update(Text.assemble((f"{s.image.name}", "bold"), f": {checks}, seed {s.seed}\n",
                                         ("\n".join(s.notes), "dim")))
            summary.set_classes("ending -shown")
        self._refresh_controls()

    @on(Input.Submitted, "#boot-artifact")
    def _artifact_submitted(self) -> None:
        self.request_setup()

    @on(Select.Changed, "#boot-accel")
    def _accel_changed(self, event: Select.Changed) -> None:
        self.settings = replace(self.settings, accel=str(event.value))

    # -- run ---------------------------------------------------------------------------------------------------

    def action_start(self) -> None:
        if self.running or self.cleaning:
            return
        if self.setup is None:
            why = f"{self.setup_error.title}: {self.setup_error.message}" if self.setup_error else "not ready yet"
            self.notify(why, title="Cannot start the boot test", severity="warning")
            return
        from ccis_workbench.core.plan import new_build_id

        self.running = True
        self.result = None
        self.console_text = []
        self._done.clear()
        for check_id in self.statuses:
            self._set_status(check_id, "pending", "")
        self.query_one("#boot-console", Log).clear()
        self.query_one("#boot-events", RichLog).clear()
        self.monitor = BootTestMonitor(self, clock=self.clock)
        self.run_id = (self.ids or new_build_id)()
        self.stage_name = "starting"
        self._refresh_controls()
        self.run_test(self.setup, self.settings, self.monitor, self.run_id)

    @on(Button.Pressed, "#boot-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @work(thread=True, exclusive=True, exit_on_error=False, group="boottest", description="boot-test the image")
    def run_test(self, setup: TestSetup, settings: BootTestSettings, monitor: BootTestMonitor,
                 run_id: str) -> None:
        from ccis_workbench.core.errors import WorkbenchError
        from ccis_workbench.core.report import write_reports

        reported: list[bool] = []

        def report(result: Any, *, cleaning: bool = True) -> None:
            """The verdict, shown and written as soon as it is final: the guest is destroyed after it."""
            if reported:
                return
            monitor.flush()
            paths = {} if is_cancelled(result) else {  # a cancelled run is not evidence: no report is written
                k: str(v) for k, v in write_reports(result, report_dir(setup.image, result.run_id,
                                                                       settings.output_dir)).items()}
            reported.append(True)
            self.post_message(BootTestEnded(result, paths, cleaning=cleaning))

        try:
            try:
                result = self.runner(setup, settings.request(self.defaults, self.uri, run_id), monitor, report)
                monitor.flush()
                report(result, cleaning=False)  # a runner that only returns its result (nothing if reported)
            except WorkbenchError as exc:
                monitor.flush()
                if not reported:
                    reported.append(True)
                    self.post_message(BootTestEnded(error=exc))
                else:  # the verdict stands; what went wrong afterwards is said beside it
                    monitor.note("error", f"after the verdict: {exc.title}: {exc.message}")
                    monitor.flush()
        finally:
            self._done.set()
            self.post_message(BootTestCleanedUp())

    def artifacts_dir(self) -> Path:
        """Where a profile's builds are looked for: the artifacts setting, relative to the catalog root."""
        return Path(in_catalog(self.workbench.root, str(self.defaults.artifacts)))

    def typed_artifact(self, text: str) -> str:
        """The artifact field: a profile name as typed, a path relative to the catalog root."""
        text = text.strip()
        if not text or text in self.workbench.catalog.profile_names():
            return text
        return in_catalog(self.workbench.root, text)

    def action_console(self) -> None:
        toggle_maximized(self, self.query_one("#boot-console", Log))

    def action_cancel(self) -> None:
        if not self.running or self.monitor is None or self.monitor.cancel_event.is_set():
            return
        self._event("warning", "cancelling: destroying the guest and removing its volumes…", self.monitor.elapsed())
        self.cancel_test(self.monitor, self.run_id)

    @on(Button.Pressed, "#boot-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @work(thread=True, exclusive=True, exit_on_error=False, group="boottest-cancel",
          description="cancel the boot test")
    def cancel_test(self, monitor: BootTestMonitor, run_id: str) -> None:
        t0 = time.monotonic()
        monitor.cancel_event.set()
        self._done.wait(timeout=60)
        seconds = time.monotonic() - t0
        try:
            remaining = self.leftovers(self.uri, self.defaults.pool, run_id)
        except Exception as exc:  # noqa: BLE001 - the check is a courtesy: report why it could not run
            self.post_message(CleanupVerified(run_id, [], seconds, error=f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(CleanupVerified(run_id, remaining, seconds))

    # -- messages ----------------------------------------------------------------------------------------------

    def _event(self, severity: str, message: str, elapsed: float) -> None:
        self.query_one("#boot-events", RichLog).write(
            Text.assemble((f"[{elapsed_text(elapsed)}] ", "dim"), (message, SEVERITY_STYLE.get(severity, ""))))

    def _set_status(self, check_id: str, status: str, reason: str) -> None:
        table = self.query_one("#boot-checks", DataTable)
        if check_id not in self.statuses:
            self.statuses[check_id] = status
            table.add_row(Text(status, style=STATUS_STYLE.get(status, "")), check_id, reason, key=check_id)
            return
        self.statuses[check_id] = status
        table.update_cell(check_id, "status", Text(status, style=STATUS_STYLE.get(status, "")))
        if reason or status != "pending":
            table.update_cell(check_id, "reason", Text(reason or status, style="" if status != "failed" else "red"),
                              update_width=False)
        if status == "running":
            with_row = table.get_row_index(check_id)
            table.move_cursor(row=with_row)

    @on(CheckUpdated)
    def _check_updated(self, message: CheckUpdated) -> None:
        self._set_status(message.check_id, message.status, message.reason)

    @on(RunStage)
    def _stage(self, message: RunStage) -> None:
        self.stage_name = message.name
        self._event("info", f"== {message.name}" + (f": {message.detail}" if message.detail else ""),
                    message.elapsed)
        self._tick()

    @on(RunNote)
    def _note(self, message: RunNote) -> None:
        self._event(message.severity, message.message, message.elapsed)

    @on(RunOutput)
    def _output(self, message: RunOutput) -> None:
        self.console_text.append(message.text)
        shown = HARNESS_MARKERS.sub("", message.text.replace("\r\n", "\n").replace("\r", ""))
        self.query_one("#boot-console", Log).write(shown)

    @on(BootTestEnded)
    def _ended(self, message: BootTestEnded) -> None:
        from ccis_workbench.core.report import ENDINGS

        self.running = False
        self.cleaning = message.cleaning and not self._done.is_set()
        self.stage_name = "removing the guest" if self.cleaning else "ended"
        summary = self.query_one("#boot-summary", Static)
        if message.error is not None:
            e = message.error
            summary.update(error_text("✗ The boot test could not run: ", e))
            summary.set_classes("ending -shown -bad")
            self.notify(e.message, title=e.title, severity="error")
            self._refresh_controls()
            return
        r = message.result
        self.result = r
        if self.monitor is not None:
            self.monitor.stop_clock()
        for c in r.checks:
            self._set_status(c.id, c.status, c.reason)
        if is_cancelled(r):
            summary.update(Text.assemble(("■ Cancelled", "bold yellow"), f" — {r.label}: the guest was destroyed; no "
                                         "report written (a cancelled run is not evidence)"))
            summary.set_classes("ending -shown")
            self._event("warning", "boot test cancelled", self.monitor.elapsed() if self.monitor else 0.0)
            self._refresh_controls()
            return
        counts = r.counts()
        verdict = ("✓ PASSED", "bold green") if r.passed else ("✗ FAILED", "bold red")
        text = Text.assemble(verdict, f" — {r.label}: {counts['passed']} passed, {counts['failed']} failed, "
                             f"{counts['error']} not run, {counts['skipped']} skipped\n")
        text.append(f"ending: {r.ending} ({ENDINGS.get(r.ending, '')})", style="bold" if r.ending == "completed"
                    else "bold red")
        if r.ending != "completed" and r.ending_message:
            text.append(f": {r.ending_message}")
        times = [f"boot to login {r.boot_to_login:.1f} s" if r.boot_to_login is not None else "",
                 f"checks {r.checks_time:.1f} s" if r.checks_time is not None else "", f"total {r.total_time:.1f} s"]
        text.append("\n" + ", ".join(t for t in times if t))
        if message.reports:
            text.append(f"\nreports: {Path(message.reports.get('json', '')).parent}", style="dim")
        summary.update(text)
        summary.set_classes(f"ending -shown -{'ok' if r.passed else 'bad'}")
        self._event("info" if r.passed else "error", f"boot test {'passed' if r.passed else 'failed'}: {r.ending}",
                    self.monitor.elapsed() if self.monitor else 0.0)
        self.notify(f"{counts['passed']} passed, {counts['failed']} failed", title="Boot test "
                    + ("passed" if r.passed else "failed"), severity="information" if r.passed else "error")
        self._refresh_controls()

    @on(BootTestCleanedUp)
    def _cleaned_up(self) -> None:
        if self.cleaning:
            self.cleaning = False
            self.stage_name = "ended"
            self._refresh_controls()

    @on(CleanupVerified)
    def _verified(self, message: CleanupVerified) -> None:
        if message.error:
            self._event("warning", f"could not check libvirt for leftovers: {message.error}", 0.0)
        elif message.remaining:
            self._event("error", f"still present after cancel: {', '.join(message.remaining)}", 0.0)
        else:
            self._event("info", f"cancelled in {message.seconds:.1f} s: the guest and its volumes were removed "
                        "(checked in libvirt: none left)", self.monitor.elapsed() if self.monitor else 0.0)

    # -- controls ----------------------------------------------------------------------------------------------

    def _tick(self) -> None:
        if self.monitor is not None and self.running:
            self.monitor.flush()
        status = self.query_one("#boot-status", Static)
        done = sum(1 for s in self.statuses.values() if s in ("passed", "failed", "error", "skipped"))
        if self.running and self.monitor is not None:
            state = "cancelling" if self.monitor.cancel_event.is_set() else "running"
            status.update(f"{state} · stage {self.stage_name} · {elapsed_text(self.monitor.elapsed())} · checks "
                          f"{done}/{len(self.statuses)}   ctrl+x/f3 cancels")
        elif self.result is not None:
            after = "removing the guest and its volumes…" if self.cleaning else "f2 runs again · escape goes back"
            status.update(f"ended: {'passed' if self.result.passed else 'failed'} ({self.result.ending})   {after}")
        elif self.setup is not None:
            accel = self.settings.accel or self.defaults.accel
            status.update(f"ready: {self.setup.image.name} · {self.uri} · accel {accel}   f2/ctrl+s starts")
        else:
            status.update("choose an artifact (enter)")

    def _refresh_controls(self) -> None:
        busy = self.running or self.cleaning
        self.query_one("#boot-start", Button).disabled = busy or self.setup is None
        self.query_one("#boot-cancel", Button).disabled = not self.running
        self.query_one("#boot-artifact", Input).disabled = busy
        self.query_one("#boot-accel", Select).disabled = busy
        self.refresh_bindings()
        self._tick()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Footer shows Start when an artifact is ready and nothing runs, Cancel while a test runs."""
        if action == "start":
            return not self.running and not self.cleaning and self.setup is not None
        if action == "cancel":
            return self.running
        return True

    def action_close(self) -> None:
        if self.maximized is not None:  # escape first gives the screen back
            self.minimize()
            return
        if self.running:
            self.notify("a boot test is running: cancel it first (ctrl+x / f3)", title="Boot test running",
                        severity="warning")
            return
        self.app.pop_screen()
