"""The error panel and the status line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

if TYPE_CHECKING:
    from ccis_workbench.core.errors import WorkbenchError


def error_text(lead: str, error: WorkbenchError, *, sep: str = "\n") -> Text:
    """*error* as the screens show it: *lead* (bold red), title, file:line, message and hint, parts joined by
    *sep* ("\n" in panels, "  " on a one-line head)."""
    return Text.assemble((lead, "bold red"), (error.title, "bold"),
                         (f"  {error.location}" if error.location else "", "underline"), f"{sep}{error.message}",
                         (f"{sep}hint: {error.hint}" if error.hint else "", "italic"))


class ErrorPanel(Static):
    """Shows one WorkbenchError (title, file:line, message, hint); hidden when there is none."""

    DEFAULT_CSS = """
    ErrorPanel { display: none; height: auto; max-height: 8; border: round $error; padding: 0 1;
                 background: $error 10%; }
    ErrorPanel.-shown { display: block; }
    """

    def show_error(self, error: WorkbenchError, context: str = "") -> None:
        """Show *error*; *context* says what failed (e.g. 'Composing this choice failed')."""
        text = Text()
        text.append(f"{context}: " if context else "", style="bold")
        text.append(error.title, style="bold red")
        if error.location:
            text.append(f"  {error.location}", style="bold underline")
        text.append(f"\n{error.message}")
        if error.hint:
            text.append(f"\nhint: {error.hint}", style="italic")
        text.append("\nFix the file, then press ctrl+r to reload.", style="dim")
        self.border_title = "Error"
        self.update(text)
        self.add_class("-shown")

    def clear_error(self) -> None:
        self.update("")
        self.remove_class("-shown")

    @property
    def shown(self) -> bool:
        return self.has_class("-shown")


class StatusLine(Static):
    """One line: the libvirt connection and accelerator, then what the preview shows."""

    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    def set_parts(self, host: str, state: str) -> None:
        self.update(Text.assemble((host, ""), ("  │  ", "dim"), (state, "")))


class WorkbenchFooter(Footer):
    """The footer, compact below 100 columns (no padding around the keys, the palette key left to the help
    screen), so that at 80x24 every key that applies still shows."""

    def on_resize(self) -> None:
        narrow = self.size.width < 100
        self.compact = narrow
        self.show_command_palette = not narrow


def toggle_maximized(screen: Screen[Any], widget: Widget) -> None:
    """Give *widget* (a run's console) the whole screen, or give the screen back: at 80x24 the console of a
    build is otherwise 38x9."""
    if screen.maximized is widget:
        screen.minimize()
    else:
        screen.maximize(widget, container=False)
