"""One error root for everything the user can get wrong.

The CLI prints a `WorkbenchError` as one panel on stderr and exits 2; the TUI shows it in an error panel.
Every error names the file and line when there is one, and says what to do.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Location:
    """A place in a file the user can open: path plus 1-based line (0 when unknown)."""

    file: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


class WorkbenchError(Exception):
    """Bad input or a failed operation, explained for a person.

    title: a short kind ("YAML syntax error"); message: what is wrong; hint: what to do.
    """

    exit_status = 2
    #: Where a failed operation kept its logs (a failed build's console and installer log), when it kept any.
    logs: str | None = None

    def __init__(self, title: str, message: str, *, file: str | None = None, line: int = 0,
                 hint: str = "") -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.location = Location(file, line) if file else None
        self.hint = hint

    def __str__(self) -> str:
        where = f"{self.location}: " if self.location else ""
        text = f"{where}{self.title}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.title,
            "message": self.message,
            "file": self.location.file if self.location else None,
            "line": self.location.line if self.location else None,
            "hint": self.hint,
        }


class CatalogError(WorkbenchError):
    """A catalog or profile file is malformed or inconsistent."""


class TemplateError(WorkbenchError):
    """A kickstart fragment template failed to render."""


class KickstartSyntaxError(WorkbenchError):
    """A layer or kickstart file is not valid kickstart for the release."""


class ValueRejected(WorkbenchError):
    """A profile value was refused before it could reach a template."""
