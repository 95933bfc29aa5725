"""The build screen: the plan first (like `ccis-workbench plan`), then the build with its live console.

The build runs in a thread worker (`Build(plan, monitor).run()` from ccis_workbench.backends.libvirt_build).
`UIMonitor` is the backend's Monitor for the UI: it batches console and installer-log text and posts messages
(toolong's idea); it never touches a widget. Cancel sets the monitor's cancel event from its own worker group,
waits for the build to clean up, then checks libvirt for anything of this build that is left.
"""

from __future__ import annotations

import math
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
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.message_pump import MessagePump
from textual.screen import Screen
from textual.widgets import Button, Header, Input, Label, Log, RichLog, Select, Static

from ccis_workbench.core.monitor import Monitor
from ccis_workbench.flows.build import (
    REHEARSAL,
    BuildRequest,
    BuildRunner,
    leftovers_of,
    plan_build,
    plan_for_run,
    run_build,
)
from ccis_workbench.flows.settings import ACCELS as ACCEL_NAMES
from ccis_workbench.flows.settings import Settings
from ccis_workbench.ui.messages import (
    BuildEnded,
    BuildPlanned,
    CleanupVerified,
    RunNote,
    RunOutput,
    RunProgress,
    RunStage,
)
from ccis_workbench.ui.paths import catalog_label, in_catalog, relative_hint
from ccis_workbench.ui.widgets.panels import WorkbenchFooter, error_text, toggle_maximized

if TYPE_CHECKING:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.ui.app import WorkbenchApp
    from ccis_workbench.ui.engine import Choice, Workbench

#: Tree kinds the screen offers: (title, key).
TREES = (("rehearsal (offline, not CentOS)", "rehearsal"), ("install tree URL", "url"), ("local tree directory",
                                                                                          "dir"))
#: The accelerator choices: auto (KVM only when KVM guests really run here, else TCG), kvm, tcg.
ACCELS = tuple((name, name) for name in ACCEL_NAMES)
#: Lines kept in the console pane (the full log is saved with the artifacts).
CONSOLE_LINES = 5000
SEVERITY_STYLE = {"info": "", "warning": "yellow", "error": "bold red"}


def elapsed_text(seconds: float) -> str:
    """mm:ss (or h:mm:ss) for the status line."""
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class UIMonitor(Monitor):
    """The backend's Monitor for the TUI: batches stream text and posts messages to *target*.

    Called from the build's threads (the worker and the console readers); it only appends under a lock and
    calls `post_message`, which is thread-safe. Text is flushed at most every *interval* seconds by the
    producer, and by the screen's timer (`flush()`), so a quiet guest's last line still shows.
    """

    def __init__(self, target: MessagePump, interval: float = 0.1, progress_interval: float = 0.25, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.target = target
        self.interval = interval
        self.progress_interval = progress_interval
        self.clock = clock
        self.cancel_event = threading.Event()
        self.started = clock()
        #: elapsed seconds when the run ended (the timer stops there); None while it runs
        self.stopped_at: float | None = None
        self._lock = threading.Lock()
        self._pending: dict[str, list[str]] = {}
        # -inf, not 0.0: the clock may start near zero (time.monotonic() on a host up for minutes), and the first
        # output must show at once
        self._last_flush = -math.inf
        self._last_progress = -math.inf

    def elapsed(self) -> float:
        return self.stopped_at if self.stopped_at is not None else self.clock() - self.started

    def stop_clock(self) -> None:
        """The run ended: elapsed() stays at this value."""
        if self.stopped_at is None:
            self.stopped_at = self.clock() - self.started

    def stage(self, name: str, detail: str = "") -> None:
        self.flush()
        self.target.post_message(RunStage(name, detail, self.elapsed()))

    def progress(self, done: float, total: float | None = None, unit: str = "") -> None:
        now = self.clock()
        if now - self._last_progress >= self.progress_interval or (total is not None and done >= total):
            self._last_progress = now
            self.target.post_message(RunProgress(done, total, unit))

    def output(self, channel: str, text: str) -> None:
        with self._lock:
            self._pending.setdefault(channel, []).append(text)
            due = self.clock() - self._last_flush >= self.interval
        if due:
            self.flush()

    def note(self, severity: str, message: str) -> None:
        self.flush()
        self.target.post_message(RunNote(severity, message, self.elapsed()))

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def flush(self) -> None:
        """Post what has accumulated, one message per channel (safe from any thread)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = self.clock()
        for channel, parts in pending.items():
            if parts:
                self.target.post_message(RunOutput(channel, "".join(parts)))


class ArtifactsVerified(Message):
    """`verify` ran on a finished build's artifact folder: its report (flows.verify.VerifyReport), or the error
    that stopped it."""

    def __init__(self, artifact_dir: str, report: Any = None, error: WorkbenchError | None = None) -> None:
        super().__init__()
        self.artifact_dir = artifact_dir
        self.report = report
        self.error = error


def verify_artifacts(folder: Path, catalog_root: Path) -> Any:
    """flows.verify on a build's folder, as `ccis-workbench verify` runs it: the signature (gpgv's keyring), every
    checksum, the SBOM and the attestation; the attested profile is composed again when the catalog is a git
    repository (the attestation names its commit; outside git there is nothing to compose it at)."""
    from ccis_workbench.flows.build import catalog_state
    from ccis_workbench.flows.verify import verify_folder

    recompose = catalog_root if catalog_state(catalog_root).get("commit") else None
    return verify_folder(folder, catalog_root=recompose)


@dataclass
class BuildSettings:
    """What the build screen's controls choose (the CLI's build options). None: the workbench's setting
    (flows.settings: environment, configuration file, default), the same value the CLI would use."""

    tree: str = "rehearsal"  # rehearsal | url | dir
    location: str = ""  # the URL (empty: the release's tree URL) or the directory
    accel: str | None = None
    memory_mb: int | None = None
    disk_size: str = ""  # e.g. 96M or 10G; empty: the profile's disk_size
    output_dir: str | None = None
    inactivity_timeout: float | None = None
    total_timeout: float | None = None
    rehearsal_cache: str | None = None  # where the rehearsal tree is built (None: the user's cache)

    def request(self, defaults: Settings, uri: str, build_id: str | None = None,
                catalog_root: str | None = None) -> BuildRequest:
        """The flows' BuildRequest for these controls (the CLI builds the same from its options)."""
        from ccis_workbench.core.errors import WorkbenchError

        location = self.location.strip()
        if self.tree == "rehearsal":
            tree: str | None = REHEARSAL
        elif self.tree == "url":
            tree = location or None
        else:
            if not location:
                raise WorkbenchError("No tree directory", "choose the directory that holds .treeinfo",
                                     hint="or pick the rehearsal tree")
            tree = location
        return BuildRequest.from_settings(
            defaults, tree=tree, uri=uri, accel=self.accel, memory_mb=self.memory_mb,
            disk_size=self.disk_size.strip() or None, output=self.output_dir,
            inactivity_timeout=self.inactivity_timeout, total_timeout=self.total_timeout, build_id=build_id,
            rehearsal_cache=self.rehearsal_cache, catalog_root=catalog_root)


def make_build_plan(workbench: Workbench, ch: Choice, settings: BuildSettings, defaults: Settings, uri: str,
                    monitor: Monitor | None = None, *, download: bool = False, build_id: str | None = None) -> Any:
    """The BuildPlan for a choice, through flows.build (blocking: builds the rehearsal tree, reads a URL's
    .treeinfo). Without *download*, an unreachable URL still gives a plan that says so, as `plan` does.
    *build_id*: the plan's build id (None: a new one, core.plan.new_build_id)."""
    return plan_build(workbench.compose(ch), settings.request(defaults, uri, build_id=build_id,
                                                              catalog_root=str(workbench.root)),
                      monitor, download=download, name=ch.name)


class BuildScreen(Screen[None]):
    """Plan, then build the current choice on libvirt with the live console; each ending said plainly."""

    BINDINGS = [
        Binding("f4", "console", "Console", tooltip="Give the console the whole screen (f4 again: back)"),
        Binding("escape", "close", "Back", tooltip="Back to the compose view (cancel a running build first)"),
        Binding("ctrl+s,f2", "start", "Start", tooltip="Run the build", id="build.start"),
        Binding("ctrl+x,f3", "cancel", "Cancel", tooltip="Cancel: destroy the domain, remove its volumes",
                id="build.cancel"),
        Binding("ctrl+r,f5", "replan", "Re-plan", tooltip="Compute the plan again from the settings"),
    ]

    def __init__(self, workbench: Workbench, ch: Choice, uri: str, settings: BuildSettings | None = None, *,
                 defaults: Settings | None = None, runner: BuildRunner | None = None,
                 leftovers: Callable[[str, str, str], list[str]] | None = None,
                 ids: Callable[[], str] | None = None, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.workbench = workbench
        self.choice = ch
        self.uri = uri
        self.defaults = defaults or Settings.load()
        self.settings = settings or BuildSettings()
        #: runs a plan: the libvirt backend (flows.build.run_build); tests inject endings it cannot produce
        self.runner = runner or run_build
        #: each plan's build id (None: core.plan.new_build_id, the UTC time plus random hex)
        self.ids = ids
        #: what the run timer reads (seconds)
        self.clock = clock or time.monotonic
        #: what of a run is left in libvirt after a cancel (flows.build.leftovers_of)
        self.leftovers = leftovers or leftovers_of
        self.plan: Any = None
        self.plan_error: WorkbenchError | None = None
        self.monitor: UIMonitor | None = None
        self.running = False
        self.ended: BuildEnded | None = None
        #: what `verify` said of the last successful build's folder (a VerifyReport or a WorkbenchError; None
        #: while it runs)
        self.verification: Any = None
        self.stage_name = ""
        self.console_text: list[str] = []  # everything the console pane received (tests read it)
        self.run_warnings: list[str] = []  # the warnings of the current run, repeated in its ending
        self._build_done = threading.Event()
        self._generation = 0
        self._ended_build_id: str | None = None

    @property
    def wb_app(self) -> WorkbenchApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        s = self.settings
        yield Header()
        # two rows, so that the controls fit 80 columns
        with Horizontal(id="build-bar", classes="run-bar -tight"):
            yield Label("Tree", classes="bar-label")
            yield Select[str](TREES, value=s.tree, allow_blank=False, id="build-tree", compact=True)
            yield Input(s.location, id="build-location", placeholder="URL or directory", compact=True)
            yield Button("Start", id="build-start", variant="success", compact=True)
            yield Button("Cancel", id="build-cancel", variant="error", compact=True, disabled=True)
        with Horizontal(id="build-bar2", classes="run-bar"):
            yield Label("Accel", classes="bar-label")
            yield Select[str](ACCELS, value=s.accel or self.defaults.accel, allow_blank=False, id="build-accel",
                              compact=True)
            yield Label("Disk", classes="bar-label")
            yield Input(s.disk_size, id="build-disk", placeholder="profile's", compact=True)
            yield Label("Output", classes="bar-label")
            yield Input(s.output_dir or self.defaults.artifacts, id="build-output", compact=True,
                        placeholder=f"artifacts ({relative_hint(self.workbench.root)})")
        with Horizontal(id="build-main", classes="run-main"):
            with VerticalScroll(id="build-plan-scroll"):
                yield Static("computing the plan…", id="build-plan")
            with Vertical(id="build-right"):
                yield Static("", id="build-ending", classes="ending")
                yield Log(max_lines=CONSOLE_LINES, id="build-console", auto_scroll=True)
        yield RichLog(id="build-events", max_lines=500, wrap=True, markup=False)
        yield Static("", id="build-status", classes="run-status")
        yield WorkbenchFooter()

    def on_mount(self) -> None:
        self.title = f"CCIS Workbench · {catalog_label(self.workbench.root)}"
        self.sub_title = f"build: {self.choice.name}"
        self.query_one("#build-console", Log).border_title = "Console"
        self.query_one("#build-plan-scroll").border_title = "Plan"
        self.query_one("#build-events", RichLog).border_title = "Stages and notes"
        self._sync_location()
        self.set_interval(0.2, self._tick)
        self.request_plan()

    def on_unmount(self) -> None:
        # leaving (or quitting) with a build running: cancel it so the worker thread ends and cleans up
        if self.monitor is not None:
            self.monitor.cancel_event.set()

    # -- settings ----------------------------------------------------------------------------------------------

    def read_settings(self) -> BuildSettings:
        """The settings as the controls show them."""
        tree = self.query_one("#build-tree", Select).value
        accel = self.query_one("#build-accel", Select).value
        return replace(self.settings, tree=str(tree), accel=str(accel),
                       location=self.query_one("#build-location", Input).value.strip(),
                       disk_size=self.query_one("#build-disk", Input).value.strip(),
                       output_dir=in_catalog(self.workbench.root, self.query_one("#build-output", Input).value)
                       or None)

    def _sync_location(self) -> None:
        tree = self.query_one("#build-tree", Select).value
        field = self.query_one("#build-location", Input)
        field.disabled = tree == "rehearsal"
        field.placeholder = {"url": "the release's tree URL", "dir": "/path/to/tree (holds .treeinfo)"}.get(
            str(tree), "built from the host's packages")

    @on(Select.Changed, "#build-tree")
    def _tree_changed(self) -> None:
        self._sync_location()
        self.request_plan()

    @on(Select.Changed, "#build-accel")
    def _accel_changed(self) -> None:
        self.request_plan()

    @on(Input.Submitted)
    def _input_submitted(self) -> None:
        self.request_plan()

    # -- plan --------------------------------------------------------------------------------------------------

    def request_plan(self) -> None:
        """Compute the plan for the current settings in a worker (never while a build runs)."""
        if self.running or not self.is_mounted:
            return
        self.settings = self.read_settings()
        self._generation += 1
        self.plan = None
        if self.ended is not None:
            # the previous run's result belongs to the previous plan
            self.ended = None
            ending = self.query_one("#build-ending", Static)
            ending.update("")
            ending.set_classes("ending")
        self.query_one("#build-plan", Static).update(Text("computing the plan…", style="italic"))
        self._refresh_controls()
        self.compute_plan(self._generation, self.settings)

    @work(thread=True, exclusive=True, exit_on_error=False, group="build-plan", description="plan the build")
    def compute_plan(self, generation: int, settings: BuildSettings) -> None:
        from ccis_workbench.core.errors import WorkbenchError

        try:
            plan = make_build_plan(self.workbench, self.choice, settings, self.defaults, self.uri,
                                   UIMonitor(self, clock=self.clock),
                                   build_id=self.ids() if self.ids is not None else None)
        except WorkbenchError as exc:
            self.post_message(BuildPlanned(error=exc))
            return
        if generation == self._generation:
            self.post_message(BuildPlanned(plan))

    @on(BuildPlanned)
    def _planned(self, message: BuildPlanned) -> None:
        view = self.query_one("#build-plan", Static)
        self.plan, self.plan_error = message.plan, message.error
        if message.error is not None:
            e = message.error
            view.update(error_text("The build cannot be planned: ", e))
        else:
            view.update(Text(message.plan.render_text()))
        self._refresh_controls()

    # -- run ---------------------------------------------------------------------------------------------------

    def action_start(self) -> None:
        if self.running:
            self.notify("a build is already running", title="Build", severity="warning")
            return
        if self.ended is not None and self.plan is not None and self.plan.build_id == self._ended_build_id:
            # "build again": a plan's build id names its artifact folder, so a new run needs a new plan
            self.notify("planning a new build (a new build id) first; press f2 again when the plan is shown",
                        title="Build again")
            self.request_plan()
            return
        if self.plan is None:
            reason = f"{self.plan_error.title}: {self.plan_error.message}" if self.plan_error else "the plan is " \
                "not ready yet"
            self.notify(reason, title="Cannot start the build", severity="warning")
            return
        self.running = True
        self.ended = None
        self._ended_build_id = self.plan.build_id
        self.console_text = []
        self.run_warnings = []
        self._build_done.clear()
        self.query_one("#build-console", Log).clear()
        self.query_one("#build-events", RichLog).clear()
        ending = self.query_one("#build-ending", Static)
        ending.update("")
        ending.set_classes("ending")
        self.monitor = UIMonitor(self, clock=self.clock)
        self.stage_name = "starting"
        self._event("info", f"build {self.plan.build_id} of {self.choice.name}: {self.plan.source.kind} tree, "
                            f"accel {self.plan.options.accel}", 0.0)
        self._refresh_controls()
        self.query_one("#build-console", Log).focus()
        self.run_build(self.plan, self.settings, self.monitor)

    @on(Button.Pressed, "#build-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @work(thread=True, exclusive=True, exit_on_error=False, group="build", description="build the image")
    def run_build(self, shown_plan: Any, settings: BuildSettings, monitor: UIMonitor) -> None:
        from ccis_workbench.core.errors import WorkbenchError

        try:
            try:
                # the plan view reads only a URL tree's .treeinfo; the build needs the kernel and initrd cached
                plan = plan_for_run(shown_plan, self.workbench.compose(self.choice),
                                    settings.request(self.defaults, self.uri, catalog_root=str(self.workbench.root)),
                                    monitor)
                out = self.runner(plan, monitor)
            except WorkbenchError as exc:
                monitor.flush()
                result = getattr(exc, "result", None)
                if result is not None:
                    self.post_message(BuildEnded(result.status, result.title, result.message, hint=result.hint,
                                                 lines=list(result.lines), result=result))
                else:
                    self.post_message(BuildEnded("error", exc.title, exc.message, hint=exc.hint or ""))
                return
            monitor.flush()
            files = sorted(p.name for p in Path(out).iterdir()) if Path(out).is_dir() else []
            self.post_message(BuildEnded("success", "Build succeeded", f"artifacts in {out}", artifact_dir=str(out),
                                         artifacts=files))
        finally:
            self._build_done.set()

    def action_console(self) -> None:
        toggle_maximized(self, self.query_one("#build-console", Log))

    def action_cancel(self) -> None:
        if not self.running or self.monitor is None:
            return
        if self.monitor.cancel_event.is_set():
            self.notify("already cancelling", title="Build")
            return
        self._event("warning", "cancelling: destroying the domain and removing its volumes…",
                    self.monitor.elapsed())
        self.cancel_build(self.monitor, self.plan.build_id if self.plan else "", self.plan)

    @on(Button.Pressed, "#build-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    @work(thread=True, exclusive=True, exit_on_error=False, group="build-cancel", description="cancel the build")
    def cancel_build(self, monitor: UIMonitor, build_id: str, plan: Any) -> None:
        """Set the cancel event, wait for the build to clean up, then look for anything of it left in libvirt."""
        t0 = time.monotonic()
        monitor.cancel_event.set()
        self._build_done.wait(timeout=60)
        seconds = time.monotonic() - t0
        if plan is None:
            self.post_message(CleanupVerified(build_id, [], seconds))
            return
        try:
            remaining = self.leftovers(plan.options.uri, plan.options.pool, build_id)
        except Exception as exc:  # noqa: BLE001 - the check is a courtesy: report why it could not run
            self.post_message(CleanupVerified(build_id, [], seconds, error=f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(CleanupVerified(build_id, remaining, seconds))

    # -- messages from the run ---------------------------------------------------------------------------------

    def _event(self, severity: str, message: str, elapsed: float) -> None:
        style = SEVERITY_STYLE.get(severity, "")
        self.query_one("#build-events", RichLog).write(
            Text.assemble((f"[{elapsed_text(elapsed)}] ", "dim"), (message, style)))

    @on(RunStage)
    def _stage(self, message: RunStage) -> None:
        self.stage_name = message.name
        self._progress_text = ""
        self._event("info", f"== {message.name}" + (f": {message.detail}" if message.detail else ""),
                    message.elapsed)
        self._tick()

    @on(RunNote)
    def _note(self, message: RunNote) -> None:
        self._event(message.severity, f"{message.severity}: {message.message}", message.elapsed)
        if message.severity == "warning":  # kept for the ending: at 80x24 the events scroll them away
            self.run_warnings.append(message.message)

    @on(RunProgress)
    def _progress(self, message: RunProgress) -> None:
        self._progress_text = _progress_text(message)
        self._tick()

    @on(RunOutput)
    def _output(self, message: RunOutput) -> None:
        if message.channel == "console":
            self.console_text.append(message.text)
            self.query_one("#build-console", Log).write(message.text.replace("\r\n", "\n").replace("\r", ""))

    @on(BuildEnded)
    def _ended(self, message: BuildEnded) -> None:
        self.running = False
        self.ended = message
        self.stage_name = message.status
        if self.monitor is not None:
            self.monitor.stop_clock()
        self.verification = None
        if message.status == "success" and message.artifact_dir:
            self.wb_app.last_artifact_dir = message.artifact_dir
            self.run_verify(message.artifact_dir)
        elapsed = self.monitor.elapsed() if self.monitor else 0.0
        severity = {"success": "info", "cancelled": "warning"}.get(message.status, "error")
        self._event(severity, f"{message.title}: {message.message}", elapsed)
        ending = self.query_one("#build-ending", Static)
        ending.update(ending_text(message, self.verification, self.run_warnings))
        ending.set_classes(f"ending -shown -{'ok' if message.status == 'success' else 'bad'}")
        self._refresh_controls()
        severity = "information" if message.status == "success" else "warning" if message.status == "cancelled" \
            else "error"
        self.notify(message.message, title=message.title, severity=severity, timeout=8)

    @work(thread=True, exclusive=True, exit_on_error=False, group="build-verify", description="verify the artifacts")
    def run_verify(self, artifact_dir: str) -> None:
        from ccis_workbench.core.errors import WorkbenchError

        try:
            report = verify_artifacts(Path(artifact_dir), Path(self.workbench.root))
        except WorkbenchError as exc:
            self.post_message(ArtifactsVerified(artifact_dir, error=exc))
            return
        self.post_message(ArtifactsVerified(artifact_dir, report))

    @on(ArtifactsVerified)
    def _artifacts_verified(self, message: ArtifactsVerified) -> None:
        if self.ended is None or self.ended.artifact_dir != message.artifact_dir:
            return  # a newer plan or run replaced that result
        self.verification = message.error if message.error is not None else message.report
        good = message.report is not None and message.report.verified
        ending = self.query_one("#build-ending", Static)
        ending.update(ending_text(self.ended, self.verification, self.run_warnings))
        ending.set_classes(f"ending -shown -{'ok' if good else 'bad'}")
        elapsed = self.monitor.elapsed() if self.monitor else 0.0
        if message.error is not None:
            self._event("error", f"verify could not run: {message.error.title}: {message.error.message}", elapsed)
        else:
            self._event("info" if good else "error", "verify: " + verify_line(message.report).plain, elapsed)

    @on(CleanupVerified)
    def _verified(self, message: CleanupVerified) -> None:
        if message.error:
            text = f"could not check libvirt for leftovers: {message.error}"
            severity = "warning"
        elif message.remaining:
            text = (f"still present after cancel: {', '.join(message.remaining)} "
                    "(`ccis-workbench gc` removes them)")
            severity = "error"
        else:
            text = (f"cancelled in {message.seconds:.1f} s: the domain and volumes of build {message.run_id} "
                    "were removed (checked in libvirt: none left)")
            severity = "info"
        self._event(severity, text, self.monitor.elapsed() if self.monitor else 0.0)
        ending = self.query_one("#build-ending", Static)
        if self.ended is not None:
            ending.update(Text.assemble(ending_text(self.ended, self.verification, self.run_warnings),
                                        ("\n" + text, "bold" if not message.remaining else "bold red")))

    # -- controls and status -----------------------------------------------------------------------------------

    _progress_text = ""

    def _tick(self) -> None:
        if self.monitor is not None and self.running:
            self.monitor.flush()
        status = self.query_one("#build-status", Static)
        if self.running and self.monitor is not None:
            extra = f" · {self._progress_text}" if self._progress_text else ""
            state = "cancelling" if self.monitor.cancel_event.is_set() else "running"
            status.update(f"{state} · stage {self.stage_name} · {elapsed_text(self.monitor.elapsed())}{extra}"
                          f"   ctrl+x/f3 cancels")
        elif self.ended is not None:
            status.update(f"ended: {self.ended.status} · {elapsed_text(self.monitor.elapsed() if self.monitor else 0)}"
                          "   f2 builds again · escape goes back")
        elif self.plan is not None:
            status.update(f"ready: {self.plan.name} · {self.uri} · accel {self.plan.options.accel}   "
                          "f2/ctrl+s starts the build")
        elif self.plan_error is not None:
            status.update("the plan has an error: change the settings (enter re-plans)")
        else:
            status.update("planning…")

    def _refresh_controls(self) -> None:
        self.query_one("#build-start", Button).disabled = self.running or self.plan is None
        self.query_one("#build-cancel", Button).disabled = not self.running
        for sel in ("#build-tree", "#build-accel", "#build-location", "#build-disk", "#build-output"):
            self.query_one(sel).disabled = self.running or (sel == "#build-location" and
                                                            self.settings.tree == "rehearsal")
        self.refresh_bindings()
        self._tick()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Footer shows Start when a plan is ready and nothing runs, Cancel while a build runs."""
        if action == "start":
            return not self.running and self.plan is not None
        if action == "cancel":
            return self.running
        if action == "replan":
            return not self.running
        return True

    def action_replan(self) -> None:
        self.request_plan()

    def action_close(self) -> None:
        if self.maximized is not None:  # escape first gives the screen back
            self.minimize()
            return
        if self.running:
            self.notify("a build is running: cancel it first (ctrl+x / f3)", title="Build running",
                        severity="warning")
            return
        self.app.pop_screen()


def _found(report: Any, prefix: str) -> list[Any]:
    return [f for f in report.findings if f.check == prefix or f.check.startswith(prefix + " ")]


def evidence_text(files: list[str], verification: Any = None) -> Text:
    """What `verify` said, then the signature, SBOM and attestation, one line each (the verdict first: a small
    terminal shows the top of the box): from the file names while `verify` runs, then from its report."""
    import re

    from ccis_workbench.flows.verify import VerifyReport

    text = Text()
    if not isinstance(verification, VerifyReport):
        signed = "CHECKSUM.asc" in files
        if verification is None:
            text.append_text(Text.assemble(("verify: ", "bold"), ("checking…", "italic"), "\n"))
        else:  # the error that stopped it
            text.append_text(Text.assemble(("verify: ", "bold"), (f"could not run: {verification.title}: "
                                                                 f"{verification.message}", "bold red"), "\n"))
        text.append("signature: ", style="bold")
        text.append("signed (CHECKSUM.asc)\n" if signed else "UNSIGNED (no signing key)\n",
                    style="" if signed else "yellow")
        sboms = [n for n in files if n.endswith("spdx.json")]
        attestations = [n for n in files if n.endswith("provenance.intoto.json")]
        text.append_text(Text.assemble(("SBOM: ", "bold"), ", ".join(sboms) or ("none", "yellow"), "\n"))
        text.append_text(Text.assemble(("attestation: ", "bold"), ", ".join(attestations) or ("none", "yellow"),
                                       "\n"))
        return text
    r = verification
    text.append_text(Text.assemble(("verify: ", "bold"), verify_line(r), "\n"))
    sig = next(iter(_found(r, "signature")), None)
    text.append("signature: ", style="bold")
    if not r.signed:
        text.append("UNSIGNED (no CHECKSUM.asc: no signing key was set)\n", style="yellow")
    elif sig is not None and sig.ok:
        signer = re.search(r'from "(.+?)"', sig.detail)
        text.append(f"✓ signed, key {r.key_id[-16:] or '(not named)'}" + (f", {signer.group(1)}" if signer else "")
                    + "\n", style="green")
    else:
        text.append(f"✗ BAD: {sig.detail if sig else 'not checked'}\n", style="bold red")
    for label, prefix in (("SBOM", "sbom"), ("attestation", "attestation")):
        named = [f for f in _found(r, prefix) if f.check != prefix] or _found(r, prefix)
        text.append(f"{label}: ", style="bold")
        if not named:
            text.append("none\n", style="yellow")
        for f in named:
            name = f.check.split(" ", 1)[1] if " " in f.check else ""
            text.append(f"{name + ', ' if name else ''}{f.detail}\n", style="" if f.ok else "bold red")
    return text


def verify_line(report: Any) -> Text:
    """VERIFIED, or NOT VERIFIED with every failed check and why."""
    if report.verified:
        return Text.assemble(("✓ VERIFIED", "bold green"), f" ({'signed' if report.signed else 'unsigned'}"
                             f"{', REHEARSAL build: not CentOS' if report.rehearsal else ''})")
    failed = "; ".join(f"{f.check}: {f.detail}" for f in report.findings if not f.ok)
    return Text.assemble(("✗ NOT VERIFIED", "bold red"), f": {failed}")


def _progress_text(m: RunProgress) -> str:
    if m.unit == "B":
        done = f"{m.done / 1048576:.1f} MiB"
        return f"{done} of {m.total / 1048576:.1f} MiB" if m.total else done
    return f"{m.done:.0f}/{m.total:.0f} {m.unit}" if m.total else f"{m.done:.0f} {m.unit}"


def ending_text(m: BuildEnded, verification: Any = None, warnings: list[str] | None = None) -> Text:
    """The ending, stated plainly: success with its evidence (signature, SBOM, attestation), what `verify` said of
    the folder (*verification*: a VerifyReport, a WorkbenchError, or None while it runs) and the files; or what
    went wrong with its lines and hint. The run's *warnings* (a restart under TCG or after an emulator fault, ...)
    follow the headline: the events pane has scrolled them away by the end of a build."""
    if m.status == "success":
        text = Text.assemble(("✓ Build succeeded", "bold green"), f" — artifacts in {m.artifact_dir}\n")
        text.append_text(warnings_text(warnings))
        text.append_text(evidence_text(m.artifacts, verification))
        text.append("files:\n", style="dim")
        for name in m.artifacts:
            text.append(f"  {name}\n")
        return text
    head = {"failed": "✗ Installer failure", "stalled": "✗ Stalled", "timeout": "✗ Time limit",
            "cancelled": "■ Cancelled", "crashed": "✗ Guest stopped", "lost": "✗ libvirtd lost",
            "error": "✗ Build error"}.get(m.status, f"✗ {m.status}")
    text = Text.assemble((head, "bold red" if m.status != "cancelled" else "bold yellow"),
                         (f": {m.title}\n", "bold"), f"{m.message}\n")
    text.append_text(warnings_text(warnings))
    for line in m.lines:
        text.append(f"  | {line}\n", style="red")
    if m.hint:
        text.append(f"hint: {m.hint}\n", style="italic")
    return text


def warnings_text(warnings: list[str] | None) -> Text:
    """One line per warning of the run (each cut at 300 characters), or nothing."""
    text = Text()
    for w in warnings or []:
        text.append("! ", style="bold yellow")
        text.append((w if len(w) <= 300 else w[:299] + "…") + "\n", style="yellow")
    return text
