"""The CCIS Workbench terminal UI: `WorkbenchApp` and `run_app` (what `ccis-workbench` with no command runs).

Blocking work (loading the catalog, composing, the review matrix, checking libvirt) runs in thread workers that
post messages; handlers on the main thread update widgets. The host capabilities object is passed in, so tests
and the screenshot script decide what the status line reports.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from ccis_workbench.ui.capabilities import Capabilities, HostStatus, LocalCapabilities
from ccis_workbench.ui.messages import HostChecked
from ccis_workbench.ui.modals import ConfirmationModal, HelpScreen
from ccis_workbench.ui.screens.compose import ComposeScreen
from ccis_workbench.ui.themes import DARK, LIGHT, workbench_themes


@dataclass(frozen=True)
class Runners:
    """What the build and boot-test screens run; None: the real backends (libvirt through the flows). A
    presenter's or a test's stand-ins are passed here, never switched on inside the screens."""

    build: Callable[..., Any] | None = None
    #: (setup, request, monitor, on_result) -> result, as flows.test.run_test: on_result gets the verdict before
    #: the guest is destroyed (a stand-in may only return it)
    boot_test: Callable[..., Any] | None = None
    leftovers: Callable[[str, str, str], list[str]] | None = None
    #: the review screen's matrix run (None: flows.matrix.run_matrix, builds and boot tests on libvirt)
    matrix: Callable[..., Any] | None = None
    #: new build and boot-test run ids (None: core.plan.new_build_id, the UTC time plus random hex)
    ids: Callable[[], str] | None = None
    #: the clock the run timers read, in seconds (None: time.monotonic)
    clock: Callable[[], float] | None = None
    #: today's date, the propose screen's default tag (None: the UTC date now)
    today: Callable[[], Any] | None = None


class WorkbenchApp(App[int]):
    """Compose, preview, diff, lint and review kickstarts from the catalog."""

    CSS_PATH = "workbench.tcss"
    TITLE = "CCIS Workbench"
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help", id="app.help", tooltip="Keys and the flow"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False, id="app.theme"),
        Binding("u", "open_propose", "Propose", id="app.propose",
                tooltip="Propose the profile upstream with its evidence"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    host_status: reactive[HostStatus] = reactive(HostStatus("qemu:///system", None, "checking…", "tcg"),
                                                 init=False)
    """The libvirt connection and accelerator as last checked (shown in the status line)."""

    def __init__(self, catalog_root: str | Path | None = None, *, capabilities: Capabilities | None = None,
                 profile: str | None = None, theme: str | None = None,
                 on_first_frame: Callable[[WorkbenchApp], bool] | None = None,
                 on_preview_ready: Callable[[WorkbenchApp], None] | None = None,
                 runners: Runners | None = None) -> None:
        super().__init__()
        #: what the build and boot-test screens run (default: the libvirt backends through the flows)
        self.runners = runners or Runners()
        self.catalog_root = catalog_root
        #: called after the first frame; returning True ends the app there (benchmarks/bench_tui.py)
        self.on_first_frame = on_first_frame
        #: called each time a preview is shown (benchmarks/bench_tui.py times the first one)
        self.on_preview_ready = on_preview_ready
        self._host_check_started = False
        self.capabilities = capabilities or LocalCapabilities()
        self.initial_profile = profile
        self.set_reactive(WorkbenchApp.host_status, self.capabilities.initial_status())
        #: The artifact directory of the last successful build in this session (the boot-test screen's default).
        self.last_artifact_dir: str | None = None
        #: The build screen's initial settings (tests and the screenshot script choose a small, fast build).
        self.build_settings: Any = None
        #: The boot-test screen's initial settings.
        self.boot_test_settings: Any = None
        #: The review screen's matrix run settings (None: the rehearsal tree and the workbench's settings).
        self.matrix_settings: Any = None
        for t in workbench_themes():
            self.register_theme(t)
        self.theme = theme if theme in self.available_themes else DARK

    #: Where the last unhandled error's traceback was saved (None: no crash).
    crash_report: Path | None = None

    def _handle_exception(self, error: Exception) -> None:
        """An unhandled error: save the traceback and the current choice to a file first, so nothing the user
        composed is lost, then let Textual end the app (return code 1) as it does."""
        with contextlib.suppress(Exception):  # saving must never hide the original error
            self.crash_report = save_crash_report(error, self._current_choice_yaml())
        super()._handle_exception(error)

    def _current_choice_yaml(self) -> str:
        compose = next((s for s in self.screen_stack if isinstance(s, ComposeScreen)), None)
        if compose is None or compose.workbench is None or compose.choice is None:
            return ""
        return compose.workbench.profile_yaml(compose.choice)

    def on_mount(self) -> None:
        self._exit_on_signals()
        self.push_screen(ComposeScreen(self.initial_profile))
        # The host check (libvirt-python, a connection, the leftovers of dead runs: 60-150 ms of CPU) waits for the
        # first preview: at start it took turns at the GIL with loading the catalog and composing. A catalog that
        # fails to load, or loads slowly, does not hold it back more than 2 s.
        self.set_timer(2.0, self._first_host_check)

    def _first_host_check(self) -> None:
        if not self._host_check_started:
            self._host_check_started = True
            self.check_host()

    def _exit_on_signals(self) -> None:
        """SIGTERM (`kill`, a service manager) and SIGHUP (a closed terminal, a dropped SSH connection) end the app
        the way quitting does: the screens unmount, a running build or boot test is cancelled, and the process
        waits for its cleanup (guest destroyed, volumes removed) before it exits with 128 + the signal."""
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
                loop.add_signal_handler(sig, self._stop_on_signal, 128 + int(sig))

    def _stop_on_signal(self, return_code: int) -> None:
        self.cancel_running_work()
        self.exit(None, return_code)

    def cancel_running_work(self) -> None:
        """Cancel every build or boot test a screen runs (their workers then clean up; the process waits for
        them before it exits)."""
        for screen in self.screen_stack:
            monitor = getattr(screen, "monitor", None)
            if monitor is not None and hasattr(monitor, "cancel_event"):
                monitor.cancel_event.set()

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = True) -> None:
        """Notifications show their text as written: messages carry file names, values and catalog text, and
        Textual markup in them (`[`...`]`) would be taken as styling, or fail to render."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    #: Where the palette's "Screenshot" saves (default: the working directory; the folder is created).
    screenshot_dir: Path | None = None

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """Save an SVG of the screen into `screenshot_dir` (default: the working directory) and say where;
        Textual's default (`~/Downloads`) often does not exist, and its failure named no path."""
        import datetime

        folder = Path(path) if path else (self.screenshot_dir or Path.cwd())
        name = filename or f"ccis-workbench-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.svg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = self.save_screenshot(name, str(folder))
        except OSError as exc:
            self.notify(f"could not save into {folder}: {exc.strerror or exc}", title="Screenshot", severity="error")
            return None
        self.notify(f"saved {saved}", title="Screenshot")
        return saved

    def running_work(self) -> list[str]:
        """What a quit would cancel: "build", "boot test" (screens with a run in progress)."""
        names = {"BuildScreen": "build", "BootTestScreen": "boot test", "ReviewScreen": "matrix run"}
        running = [s for s in self.screen_stack if getattr(s, "running", False)]
        return [names.get(type(s).__name__, type(s).__name__) for s in running]

    async def action_quit(self) -> None:
        """Quit; ask first when that would cancel a running build or boot test, or drop an unsaved composition."""
        lost = [f"cancel the running {w} (its guest and volumes are removed)" for w in self.running_work()]
        compose = next((s for s in self.screen_stack if isinstance(s, ComposeScreen)), None)
        if compose is not None and compose.has_unsaved_changes():
            lost.append("lose the unsaved composition (s saves it as a profile)")
        if not lost:
            self.exit()
            return
        if isinstance(self.screen, ConfirmationModal):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_running_work()
                self.exit()

        self.push_screen(ConfirmationModal("Quit? This will " + " and ".join(lost) + ".", yes="Quit",
                                           no="Stay"), answered)

    def first_frame_drawn(self) -> bool:
        """Called by the compose screen after its first frame: the injected `on_first_frame` (benchmarks time the
        start with it) says whether the app stops there."""
        return bool(self.on_first_frame(self)) if self.on_first_frame is not None else False

    def preview_ready(self) -> None:
        """Called when a preview is shown: the injected `on_preview_ready`, if any; the first starts the host
        check (see on_mount)."""
        if self.on_preview_ready is not None:
            self.on_preview_ready(self)
        if self.return_code is None:  # an injected callback may have ended the app
            self._first_host_check()

    @property
    def compose_screen(self) -> ComposeScreen:
        """The compose screen (always at the bottom of the stack)."""
        return next(s for s in self.screen_stack if isinstance(s, ComposeScreen))

    # -- host check ----------------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="host", description="check the libvirt host")
    def check_host(self) -> None:
        self.post_message(HostChecked(self.capabilities.check_host()))

    @on(HostChecked)
    def _host_checked(self, message: HostChecked) -> None:
        self.host_status = message.status
        for note in message.status.notes:  # e.g. "removed the leftovers of a dead build (pid N): ..."
            self.notify(note, title="Leftovers of a killed run", severity="warning", timeout=15)

    def watch_host_status(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ComposeScreen):
                screen.update_status()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        """One place that turns an unexpected worker error into a notification (the app stays up)."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(f"{type(error).__name__}: {error}", title=f"{event.worker.description or 'work'} failed",
                        severity="error", timeout=10)

    # -- navigation ----------------------------------------------------------------------------------------------

    def open_review(self, overlay: str | None = None) -> None:
        """Show the review matrix for *overlay* (default: the first overlay)."""
        from ccis_workbench.ui.screens.review import ReviewScreen

        compose = self.compose_screen
        if compose.workbench is None:
            self.notify("the catalog is not loaded yet", title="Review unavailable", severity="warning")
            return
        if not compose.workbench.catalog.overlays:
            self.notify("the catalog has no overlays to review", title="Review unavailable", severity="warning")
            return
        self.push_screen(ReviewScreen(compose.workbench, overlay, settings=self.matrix_settings,
                                      runner=self.runners.matrix))

    def open_in_compose(self, release: str, target: str, overlays: list[str]) -> None:
        """Leave review mode with this release + target + overlays in the compose view."""
        from ccis_workbench.ui.engine import Choice

        while not isinstance(self.screen, ComposeScreen):
            self.pop_screen()
        compose = self.compose_screen
        compose.saved_profile = None  # a review cell is a new composition: no earlier profile's variables
        compose.set_choice(Choice(release, target, list(overlays)))
        compose.action_show_tab("preview")

    def _composed_choice(self, what: str) -> tuple[Any, Any] | None:
        """(workbench, copy of the choice) when the current choice composes; else say why and return None."""
        from copy import deepcopy

        compose = self.compose_screen
        if compose.workbench is None or compose.choice is None:
            self.notify("the catalog is not loaded yet", title=f"{what} unavailable", severity="warning")
            return None
        if compose.analysis is not None and compose.analysis.error is not None:
            self.notify(f"the choice does not compose: {compose.analysis.error.title}", title=f"{what} unavailable",
                        severity="warning")
            return None
        return compose.workbench, deepcopy(compose.choice)

    def open_build(self) -> None:
        """Show the build screen for the current choice (explains instead when libvirt is not usable)."""
        reason = self.capabilities.build_unavailable(self.host_status, "build")
        if reason:
            self.compose_screen.explain_unavailable("build")
            return
        got = self._composed_choice("Build")
        if got is not None:
            from ccis_workbench.ui.screens.build import BuildScreen

            self.push_screen(BuildScreen(got[0], got[1], self.host_status.uri, self.build_settings,
                                         runner=self.runners.build, leftovers=self.runners.leftovers,
                                         ids=self.runners.ids, clock=self.runners.clock))

    def open_boot_test(self) -> None:
        """Show the boot-test screen (the last build's artifact preselected)."""
        reason = self.capabilities.build_unavailable(self.host_status, "boot-test")
        if reason:
            self.compose_screen.explain_unavailable("boot-test")
            return
        got = self._composed_choice("Boot test")
        if got is not None:
            from ccis_workbench.ui.screens.boottest import BootTestScreen

            self.push_screen(BootTestScreen(got[0], got[1], self.host_status.uri, self.boot_test_settings,
                                            artifact=self.last_artifact_dir,
                                            runner=self.runners.boot_test, leftovers=self.runners.leftovers,
                                            ids=self.runners.ids, clock=self.runners.clock))

    def action_open_propose(self) -> None:
        """Show the propose screen for the current profile."""
        got = self._composed_choice("Propose")
        if got is not None:
            from ccis_workbench.ui.screens.propose import ProposeScreen

            self.push_screen(ProposeScreen(got[0], got[1], artifacts=self.last_artifact_dir, today=self.runners.today))

    # -- actions ---------------------------------------------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.current_theme.dark else DARK

    def watch_theme(self) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, ComposeScreen) and screen.is_mounted and screen.choice is not None:
                screen.show_profile()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette: commands for the current state, titles namespaced ("view: …", "profile: …")."""
        yield from super().get_system_commands(screen)
        compose = next((s for s in self.screen_stack if isinstance(s, ComposeScreen)), None)
        if compose is None or compose.workbench is None:
            yield SystemCommand("catalog: reload", "Reload the catalog from disk",
                                lambda: compose.action_reload() if compose else None)
            return
        from ccis_workbench.ui.engine import DIFF_MODES

        c = compose
        yield SystemCommand("help: keys and flow", "Show the help screen", self.action_help)
        for tab, title in (("preview", "preview"), ("diff", "diff"), ("lint", "lint findings"),
                           ("profile", "profile YAML")):
            yield SystemCommand(f"view: {title}", f"Show the {title} tab", lambda t=tab: c.action_show_tab(t))
        yield SystemCommand("view: toggle provenance", "Show which layer file:line produced each line",
                            lambda: (c.action_show_tab("preview"), c.action_toggle_provenance()))
        for key, title in DIFF_MODES:
            if key == "file":
                yield SystemCommand("diff: against a kickstart file…", "Choose a file to diff against",
                                    c.action_diff_file)
            else:
                yield SystemCommand(f"diff: {title}", f"Diff the current kickstart {title}",
                                    lambda k=key: c.set_diff_mode(k))
        yield SystemCommand("profile: new composition", "Start over without a profile", c.action_new_composition)
        yield SystemCommand("profile: open…", "Open a saved profile", c.action_open_profile)
        if c.analysis is not None and c.analysis.error is None:
            yield SystemCommand("profile: save as new…", "Save the current choice as a new profile",
                                c.action_save_profile)
        if c.choice is not None:
            for name, why in sorted(c.overlay_states.items()):
                if name in c.choice.overlays:
                    yield SystemCommand(f"overlay: remove {name}", f"Remove overlay {name} from the choice",
                                        lambda n=name: c.toggle_overlay(n))
                elif not why:
                    yield SystemCommand(f"overlay: add {name}", f"Add overlay {name} to the choice",
                                        lambda n=name: c.toggle_overlay(n))
        for name in sorted(c.workbench.catalog.overlays):
            yield SystemCommand(f"review: overlay {name}", f"Matrix of releases x targets for {name}",
                                lambda n=name: self.open_review(n))
        yield SystemCommand("catalog: reload", "Reload the catalog from disk (after fixing a file)",
                            c.action_reload)
        for action in ("build", "boot-test"):
            reason = self.capabilities.build_unavailable(self.host_status, action)
            yield SystemCommand(f"{action}: run" + (" (unavailable)" if reason else ""), reason or action,
                                self.open_build if action == "build" else self.open_boot_test)
        yield SystemCommand("propose: upstream with evidence", "Evidence, tag and branch, then a dry run or a commit",
                            self.action_open_propose)
        yield SystemCommand("host: check libvirt again", "Re-check the libvirt connection", self.check_host)


def save_crash_report(error: BaseException, choice_yaml: str, folder: Path | None = None) -> Path:
    """Write the traceback and the choice in use to `$XDG_STATE_HOME/ccis-workbench/crash-TIME.txt`."""
    import datetime
    import traceback

    base = folder or Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "ccis-workbench"
    base.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = base / f"crash-{stamp}-{os.getpid()}.txt"
    text = "".join(traceback.format_exception(error))
    if choice_yaml:
        text += "\n# The choice in use (save it as profiles/NAME.yaml to keep it):\n" + choice_yaml
    path.write_text(text, encoding="utf-8")
    return path


def run_app(catalog_root: str | None = None) -> int:
    """Run the TUI on the catalog at *catalog_root* (default: $CCIS_WORKBENCH_ROOT or this checkout)."""
    from ccis_workbench.flows.settings import Settings

    theme = str(Settings.load().theme or "")
    app = WorkbenchApp(catalog_root, capabilities=LocalCapabilities(), theme=theme or None)
    if theme and app.theme != theme:
        print(f"ccis-workbench: unknown theme {theme!r} (CCIS_WORKBENCH_THEME or the config file); using {DARK}. "
              f"Themes: {', '.join(sorted(app.available_themes))}", file=sys.stderr)
    result = app.run()
    if app.crash_report is not None:
        print(f"ccis-workbench: the terminal UI stopped on an unexpected error; the traceback and the last choice "
              f"are saved in {app.crash_report}", file=sys.stderr)
    # an unhandled error ends the app with return code 1: never exit 0 after a crash
    return int(app.return_code or result or 0)
