"""Messages that workers post to the screens (workers never touch widgets)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.message import Message

if TYPE_CHECKING:
    from ccis_workbench.core.errors import WorkbenchError
    from ccis_workbench.ui.capabilities import HostStatus
    from ccis_workbench.ui.engine import Analysis, ReviewCell, Workbench


class CatalogLoaded(Message):
    """The catalog under the root loaded (first start or reload)."""

    def __init__(self, workbench: Workbench) -> None:
        super().__init__()
        self.workbench = workbench


class CatalogFailed(Message):
    """Loading the catalog failed; *error* names the file and line."""

    def __init__(self, error: WorkbenchError) -> None:
        super().__init__()
        self.error = error


class Analysed(Message):
    """A choice was composed, linted and diffed (or failed with an error inside *analysis*)."""

    def __init__(self, generation: int, analysis: Analysis, overlay_states: dict[str, str], profile_yaml: str,
                 extra: dict[str, Any] | None = None, shown: Any = None) -> None:
        super().__init__()
        self.generation = generation
        self.analysis = analysis
        self.overlay_states = overlay_states
        self.profile_yaml = profile_yaml
        self.extra = extra or {}
        #: a threading.Event the screen sets once this preview is painted (the worker then lints and diffs)
        self.shown = shown


class PreviewUpdated(Message):
    """The preview shows a new composition (posted after the widgets changed; the benchmark waits for it)."""

    def __init__(self, generation: int, lines: int) -> None:
        super().__init__()
        self.generation = generation
        self.lines = lines


class HostChecked(Message):
    """The libvirt connection and accelerator were checked."""

    def __init__(self, status: HostStatus) -> None:
        super().__init__()
        self.status = status


class ReviewCellReady(Message):
    """One cell of the review matrix is computed."""

    def __init__(self, overlay: str, cell: ReviewCell) -> None:
        super().__init__()
        self.overlay = overlay
        self.cell = cell


class ReviewDone(Message):
    """Every cell of the review matrix for *overlay* is computed."""

    def __init__(self, overlay: str, cells: int) -> None:
        super().__init__()
        self.overlay = overlay
        self.cells = cells


class Unavailable(Message):
    """An action (build, boot-test) cannot run; *reason* says why."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__()
        self.action = action
        self.reason = reason


class ProfileSaved(Message):
    """A profile was written to *path*."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path


# -- build, boot test and propose screens (posted by their workers and by UIMonitor) ----------------------------


class RunStage(Message):
    """A long run (build or boot test) began a stage; *elapsed* is seconds since the run started."""

    def __init__(self, name: str, detail: str, elapsed: float) -> None:
        super().__init__()
        self.name = name
        self.detail = detail
        self.elapsed = elapsed


class RunOutput(Message):
    """A batch of raw text from one stream: channel 'console' or 'installer-log'."""

    def __init__(self, channel: str, text: str) -> None:
        super().__init__()
        self.channel = channel
        self.text = text


class RunNote(Message):
    """A sentence from the run: severity 'info', 'warning' or 'error'."""

    def __init__(self, severity: str, message: str, elapsed: float) -> None:
        super().__init__()
        self.severity = severity
        self.message = message
        self.elapsed = elapsed


class RunProgress(Message):
    """Progress inside the current stage (throttled)."""

    def __init__(self, done: float, total: float | None, unit: str) -> None:
        super().__init__()
        self.done = done
        self.total = total
        self.unit = unit


class BuildPlanned(Message):
    """The build plan for the screen's settings (or the error that prevented it)."""

    def __init__(self, plan: Any = None, error: WorkbenchError | None = None) -> None:
        super().__init__()
        self.plan = plan
        self.error = error


class BuildEnded(Message):
    """A build ended. status: success | failed | stalled | timeout | cancelled | crashed | lost | error.
    *result* is the backend's BuildResult (None on success or a WorkbenchError); *artifacts* the files made."""

    def __init__(self, status: str, title: str, message: str, *, hint: str = "", lines: list[str] | None = None,
                 artifact_dir: str | None = None, artifacts: list[str] | None = None, result: Any = None) -> None:
        super().__init__()
        self.status = status
        self.title = title
        self.message = message
        self.hint = hint
        self.lines = lines or []
        self.artifact_dir = artifact_dir
        self.artifacts = artifacts or []
        self.result = result


class CleanupVerified(Message):
    """After a cancel: which ccis- domains/volumes of the run are still there (empty: all removed)."""

    def __init__(self, run_id: str, remaining: list[str], seconds: float, error: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        self.remaining = remaining
        self.seconds = seconds
        self.error = error


class BootTestPrepared(Message):
    """The image and the checks that apply to it were resolved (or *error* says why not)."""

    def __init__(self, setup: Any = None, error: WorkbenchError | None = None) -> None:
        super().__init__()
        self.setup = setup
        self.error = error


class CheckUpdated(Message):
    """One boot-test check changed state live: running | passed | failed."""

    def __init__(self, check_id: str, status: str, reason: str = "") -> None:
        super().__init__()
        self.check_id = check_id
        self.status = status
        self.reason = reason


class BootTestEnded(Message):
    """A boot test ended: *result* is the BootTestResult (None when it could not run: see *error*). *cleaning*:
    the verdict came before the guest was destroyed, and BootTestCleanedUp follows when it is gone."""

    def __init__(self, result: Any = None, reports: dict[str, str] | None = None,
                 error: WorkbenchError | None = None, *, cleaning: bool = False) -> None:
        super().__init__()
        self.result = result
        self.reports = reports or {}
        self.error = error
        self.cleaning = cleaning


class BootTestCleanedUp(Message):
    """The boot test's worker is done: its guest destroyed and its volumes deleted (after BootTestEnded)."""


class EvidenceGathered(Message):
    """The propose screen's evidence and proposal preview (or the error that prevented them)."""

    def __init__(self, evidence: Any = None, proposal: Any = None, error: WorkbenchError | None = None) -> None:
        super().__init__()
        self.evidence = evidence
        self.proposal = proposal
        self.error = error


class ProposeDone(Message):
    """`propose` ran (dry run or real): *report* is its JSON report, *pr_text* the pull-request description."""

    def __init__(self, dry_run: bool, report: dict[str, Any] | None = None, pr_text: str = "",
                 error: WorkbenchError | None = None) -> None:
        super().__init__()
        self.dry_run = dry_run
        self.report = report or {}
        self.pr_text = pr_text
        self.error = error
