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
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.generation = generation
        self.analysis = analysis
        self.overlay_states = overlay_states
        self.profile_yaml = profile_yaml
        self.extra = extra or {}


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
