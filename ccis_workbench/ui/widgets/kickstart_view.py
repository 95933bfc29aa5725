"""The merged kickstart: syntax highlighted, line numbers, a cursor line, and an optional provenance gutter.

A Line API widget (like toolong's log view): it renders only the visible lines, so a long kickstart scrolls
smoothly and replacing the content is cheap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

_OPTION = re.compile(r"(?<!\S)--?[A-Za-z][\w-]*")
_STRING = re.compile(r"\"[^\"]*\"|'[^']*'")
_SECTION = re.compile(r"^\s*%(packages|pre|post|pre-install|onerror|traceback|addon|anaconda|end)\b")


@dataclass
class ViewLine:
    """One displayed line: number, text, provenance label, overridden flag."""

    number: int
    text: str
    origin: str = ""
    overridden: bool = False
    #: made by a target, overlay or profile (not the release baseline, not the workbench's header)
    changed: bool = False


def classify(lines: list[str]) -> list[str]:
    """For each line: 'section' (a %header or %end), 'script' (inside %pre/%post), 'packages' or 'command'."""
    kinds = []
    inside = ""
    for t in lines:
        m = _SECTION.match(t)
        if m:
            kinds.append("section")
            inside = "" if m.group(1) == "end" else ("packages" if m.group(1) == "packages" else "script")
            continue
        kinds.append(inside or "command")
    return kinds


class KickstartView(ScrollView, can_focus=True):
    """Read-only kickstart viewer with a cursor line; posts CursorMoved."""

    COMPONENT_CLASSES = {
        "kickstart-view--number", "kickstart-view--comment", "kickstart-view--keyword", "kickstart-view--option",
        "kickstart-view--string", "kickstart-view--section", "kickstart-view--removed", "kickstart-view--cursor",
        "kickstart-view--origin", "kickstart-view--override",
    }
    DEFAULT_CSS = """
    KickstartView { background: $surface; }
    KickstartView > .kickstart-view--number { color: $text-muted; }
    KickstartView > .kickstart-view--comment { color: $text-muted; text-style: italic; }
    KickstartView > .kickstart-view--keyword { color: $accent; text-style: bold; }
    KickstartView > .kickstart-view--option { color: $text-primary; }
    KickstartView > .kickstart-view--string { color: $text-success; }
    KickstartView > .kickstart-view--section { color: $text-secondary; text-style: bold; }
    KickstartView > .kickstart-view--removed { color: $text-error; }
    KickstartView > .kickstart-view--cursor { background: $panel; }
    KickstartView:focus > .kickstart-view--cursor { background: $accent 30%; }
    KickstartView > .kickstart-view--origin { color: $text-muted; }
    KickstartView > .kickstart-view--override { color: $text-warning; text-style: bold; }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(1)", "First line", show=False),
        Binding("end", "jump(-1)", "Last line", show=False),
    ]

    cursor_line: reactive[int] = reactive(1)
    """The 1-based line the cursor is on (its provenance is shown below the view)."""
    show_provenance: reactive[bool] = reactive(False)
    """Show the layer file:line gutter beside each line."""

    class CursorMoved(Message):
        """The cursor moved to *line* (1-based)."""

        def __init__(self, view: KickstartView, line: int) -> None:
            super().__init__()
            self.view = view
            self.line = line

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._lines: list[ViewLine] = []
        self._kinds: list[str] = []
        self._max_width = 0
        self._origin_width = 0
        self._style_cache: dict[tuple[str, str, bool], Style] = {}

    # -- content -------------------------------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        return len(self._lines)

    def line_text(self, number: int) -> str:
        return self._lines[number - 1].text if 0 < number <= len(self._lines) else ""

    def set_lines(self, lines: list[ViewLine]) -> None:
        """Replace the content, keeping the cursor line where possible."""
        self._lines = lines
        self._kinds = classify([ln.text for ln in lines])
        self._max_width = max((len(ln.text) for ln in lines), default=0)
        self._origin_width = min(max((len(ln.origin) for ln in lines), default=0), 32)
        self.cursor_line = max(1, min(self.cursor_line, len(lines)))
        self._update_virtual_size()
        self.refresh()

    def _gutter_width(self) -> int:
        width = len(str(max(len(self._lines), 1))) + 1
        if self.show_provenance:
            width += self._origin_cap() + 3
        return width

    def _origin_cap(self) -> int:
        """The provenance column's width: at most a third of the view, so the kickstart stays readable."""
        view = self.scrollable_content_region.width or 120
        return max(8, min(self._origin_width, view // 3))

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self._gutter_width() + self._max_width + 1, len(self._lines))

    def on_resize(self) -> None:
        self._update_virtual_size()

    def watch_show_provenance(self) -> None:
        self._update_virtual_size()
        self.refresh()

    def watch_cursor_line(self, old: int, new: int) -> None:
        self.refresh()
        self.post_message(self.CursorMoved(self, new))

    # -- movement -------------------------------------------------------------------------------------------------

    def go_to_line(self, number: int) -> None:
        """Move the cursor to *number* and scroll it into view (near the top third)."""
        if not self._lines:
            return
        self.cursor_line = max(1, min(number, len(self._lines)))
        self._scroll_cursor(center=True)

    def _scroll_cursor(self, center: bool = False) -> None:
        y = self.cursor_line - 1
        if center:
            self.scroll_to(y=max(0, y - self.scrollable_content_region.height // 3), animate=False)
        else:
            self.scroll_to_region(Region(0, y, 1, 1), animate=False)

    def find(self, text: str, direction: int = 1) -> int | None:
        """Move to the next (or previous) line containing *text* (case-insensitive), from the cursor, wrapping;
        the line number, or None when no line has it."""
        needle = text.lower()
        return self._move_to(lambda ln: bool(needle) and needle in ln.text.lower(), direction)

    def next_changed(self, direction: int = 1) -> int | None:
        """Move to the next (or previous) line a target, overlay or profile made, wrapping."""
        return self._move_to(lambda ln: ln.changed, direction)

    def _move_to(self, wanted: Any, direction: int) -> int | None:
        n = len(self._lines)
        for step in range(1, n + 1):
            index = (self.cursor_line - 1 + direction * step) % n
            if wanted(self._lines[index]):
                self.go_to_line(index + 1)
                return index + 1
        return None

    def action_cursor(self, delta: int) -> None:
        if self._lines:
            self.cursor_line = max(1, min(self.cursor_line + delta, len(self._lines)))
            self._scroll_cursor()

    def action_page(self, direction: int) -> None:
        self.action_cursor(direction * max(1, self.scrollable_content_region.height - 1))

    def action_jump(self, where: int) -> None:
        if self._lines:
            self.cursor_line = 1 if where > 0 else len(self._lines)
            self._scroll_cursor()

    def on_click(self, event: Click) -> None:
        line = int(self.scroll_offset.y) + event.y + 1
        if 0 < line <= len(self._lines):
            self.cursor_line = line

    # -- rendering ------------------------------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        # full (not partial) styles: theme colours with alpha are blended against the background
        key = (name, self.app.theme, self.has_focus)
        style = self._style_cache.get(key)
        if style is None:
            full = self.get_component_rich_style(f"kickstart-view--{name}", partial=False)
            if name != "cursor":  # foreground only: the line's background (cursor or not) shows through
                full = Style(color=full.color, bold=full.bold, italic=full.italic, underline=full.underline)
            style = self._style_cache[key] = full
        return style

    def highlight(self, index: int, base: Style) -> Text:
        """The line at *index* as styled Text."""
        ln = self._lines[index]
        kind = self._kinds[index]
        # append, not Text(style=...): rich's Text.render drops the base style of a text without spans
        text = Text(no_wrap=True, end="")
        text.append(ln.text, base)
        stripped = ln.text.lstrip()
        if stripped.startswith("#"):
            text.stylize(self._style("comment"))
        elif kind == "section":
            m = _SECTION.match(ln.text)
            text.stylize(self._style("section"), 0, m.end() if m else len(ln.text))
            self._options(text, ln.text)
        elif kind == "packages":
            if stripped.startswith("-"):
                text.stylize(self._style("removed"))
            elif stripped.startswith("@"):
                text.stylize(self._style("keyword"))
        elif kind == "command" and stripped:
            first = len(ln.text) - len(stripped)
            text.stylize(self._style("keyword"), first, first + len(stripped.split()[0]))
            self._options(text, ln.text)
        return text

    def _options(self, text: Text, raw: str) -> None:
        for m in _OPTION.finditer(raw):
            text.stylize(self._style("option"), m.start(), m.end())
        for m in _STRING.finditer(raw):
            text.stylize(self._style("string"), m.start(), m.end())

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, base)
        ln = self._lines[index]
        if ln.number == self.cursor_line:
            base = base + self._style("cursor")
        console = self.app.console
        digits = len(str(max(len(self._lines), 1)))
        gutter = Text(end="")
        gutter.append(f"{ln.number:>{digits}} ", base + self._style("number"))
        if self.show_provenance:
            cap = self._origin_cap()
            origin = ln.origin if len(ln.origin) <= cap else "…" + ln.origin[-cap + 1:]
            mark = "!" if ln.overridden else " "
            gutter.append(mark, base + self._style("override"))
            gutter.append(f"{origin:<{cap}}", base + self._style("origin"))
            gutter.append(" │", base + self._style("number"))
        elif ln.overridden:
            gutter = Text(end="")
            gutter.append(f"{ln.number:>{digits}}", base + self._style("number"))
            gutter.append("!", base + self._style("override"))
        gutter_width = gutter.cell_len
        body = self.highlight(index, base)
        body_strip = Strip(list(body.render(console))).crop(scroll_x, scroll_x + max(0, width - gutter_width))
        strip = Strip.join([Strip(list(gutter.render(console))), body_strip])
        return strip.extend_cell_length(width, base).crop(0, width)
